//! The performance tracker: counts, percentiles, recommendations, snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use streamgate_core::{
    testing::{Script, ScriptedService, TestRequest},
    BackendId, BreakerState, ErrorClass, Event, MetricsSink, Outcome, QuotaState, RejectReason,
    RequestRecord, TimeoutKind, Usage,
};
use streamgate_metrics::{names, InputSize, MetricsLayer, PerformanceTracker};
use tower::{Layer, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Records a finished request of `output` tokens over `duration_ms`.
fn complete(
    tracker: &PerformanceTracker,
    backend: &BackendId,
    model: &str,
    estimate: u64,
    output: u64,
    duration_ms: u64,
    outcome: Outcome,
) {
    let record = RequestRecord {
        backend,
        model,
        started_at: SystemTime::UNIX_EPOCH,
        estimated_tokens: estimate,
        time_to_first_chunk: Some(ms(10)),
        time_to_first_content: Some(ms(20)),
        duration: ms(duration_ms),
        ended: tokio::time::Instant::now(),
        output_duration: Some(ms(duration_ms.saturating_sub(20))),
        usage: Some(Usage::new(estimate, output)),
        streamed_output_tokens: output,
        burst_tokens_per_sec: None,
        chunks: output,
        outcome,
    };
    tracker.record(&Event::Completed(&record));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_add_up_exactly_under_concurrency() {
    let tracker = Arc::new(PerformanceTracker::new());
    let layer = MetricsLayer::new("b", tracker.clone());
    let ok = layer.layer(ScriptedService::new(
        Script::new().text("a").text("b").usage(Usage::new(3, 2)),
    ));
    let failing = layer.layer(ScriptedService::new(
        Script::new().text("a").fail(ErrorClass::Server),
    ));
    let truncated = layer.layer(ScriptedService::new(
        Script::new().text("a").fail(ErrorClass::Truncated),
    ));
    let stalling = layer.layer(ScriptedService::new(Script::new().text("a").stall()));

    let mut tasks = Vec::new();
    for task in 0..8 {
        let (ok, failing, truncated, stalling) = (
            ok.clone(),
            failing.clone(),
            truncated.clone(),
            stalling.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let request = TestRequest::new("m");
                match (task + i) % 4 {
                    0 => drain(ok.clone().oneshot(request).await.unwrap().into_body()).await,
                    1 => drain(failing.clone().oneshot(request).await.unwrap().into_body()).await,
                    2 => {
                        drain(
                            truncated
                                .clone()
                                .oneshot(request)
                                .await
                                .unwrap()
                                .into_body(),
                        )
                        .await
                    }
                    _ => {
                        // Read the first chunk, then give up on the stalled stream.
                        let mut body = stalling.clone().oneshot(request).await.unwrap().into_body();
                        body.next().await.unwrap().unwrap();
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let snapshot = tracker.snapshot();
    let key = snapshot.key("b", "m").unwrap();
    assert_eq!(key.requests, 320);
    assert_eq!(
        key.requests,
        key.successes + key.failed + key.timeouts.sum() + key.cancellations + key.truncations
    );
    assert_eq!(key.successes, 80);
    assert_eq!(key.failures.get("server"), Some(&80));
    assert_eq!(key.truncations, 80);
    assert_eq!(key.cancellations, 80);
    assert_eq!(key.in_flight, 0);
    assert_eq!(snapshot.session.requests, 320);
    // Usage: 80 successes reported (3, 2); 160 others streamed one token each.
    assert_eq!(snapshot.session.input_tokens, 240);
    assert_eq!(snapshot.session.output_tokens, 160 + 240);
    assert_eq!(snapshot.session.total_tokens, 240 + 400);
}

async fn drain<S: futures::Stream + Unpin>(mut body: S) {
    while body.next().await.is_some() {}
}

#[tokio::test(start_paused = true)]
async fn percentiles_follow_the_recorded_durations() {
    let tracker = PerformanceTracker::new();
    let backend = BackendId::new("b");
    // Durations 1..=100 ms: nearest-rank p50 = 50, p95 = 95, p99 = 99.
    for d in 1..=100 {
        complete(&tracker, &backend, "m", 10, 10, d, Outcome::Success);
    }
    let snapshot = tracker.snapshot();
    let p = snapshot.key("b", "m").unwrap().duration_ms.unwrap();
    assert_eq!(p.count, 100);
    for (got, want) in [(p.p50, 50.0), (p.p95, 95.0), (p.p99, 99.0), (p.max, 100.0)] {
        assert!(
            got >= want && (got - want) / want <= 0.01,
            "{got} vs {want}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rejected_requests_are_counted_only_as_rejections() {
    let tracker = PerformanceTracker::new();
    let backend = BackendId::new("b");
    tracker.record(&Event::Rejected {
        backend: &backend,
        model: "m",
        reason: RejectReason::CircuitOpen,
        retry_after: Some(ms(500)),
    });
    // A layer above the gate sees the rejection as a failed request.
    complete(
        &tracker,
        &backend,
        "m",
        0,
        0,
        0,
        Outcome::Failed(ErrorClass::Rejected),
    );
    complete(
        &tracker,
        &backend,
        "m",
        0,
        5,
        100,
        Outcome::TimedOut(TimeoutKind::Idle),
    );
    let snapshot = tracker.snapshot();
    let key = snapshot.key("b", "m").unwrap();
    assert_eq!(key.rejections.get("circuit_open"), Some(&1));
    assert_eq!(key.requests, 1);
    assert_eq!(key.timeouts.idle, 1);
    assert_eq!(snapshot.session.rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_breaker_quota_and_failover_events_are_kept() {
    let tracker = PerformanceTracker::new();
    let a = BackendId::new("a");
    let b = BackendId::new("b");
    for waited in [ms(200), ms(300)] {
        tracker.record(&Event::Throttled {
            backend: &a,
            model: "m",
            waited,
        });
    }
    tracker.record(&Event::BreakerTransition {
        backend: &a,
        model: None,
        from: BreakerState::Closed,
        to: BreakerState::Open,
        wait_capped: false,
    });
    tracker.record(&Event::BreakerTransition {
        backend: &a,
        model: None,
        from: BreakerState::Open,
        to: BreakerState::HalfOpen,
        wait_capped: false,
    });
    tracker.record(&Event::QuotaUpdate {
        backend: &a,
        model: "m",
        state: QuotaState::Exhausted,
        exhausted_for: Some(Duration::from_secs(30)),
        remaining_requests: Some(0),
        remaining_tokens: Some(1200),
        wait_capped: false,
    });
    tracker.record(&Event::Failover {
        from: &a,
        to: Some(&b),
        model: "m",
        reason: ErrorClass::Overloaded,
    });
    tokio::time::advance(Duration::from_secs(10)).await;
    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.session.throttled, 2);
    assert_eq!(snapshot.session.throttle_wait_secs, 0.5);
    let key = snapshot.key("a", "m").unwrap();
    assert_eq!(key.throttled, 2);
    assert_eq!(key.failovers, 1);
    let quota = key.quota.unwrap();
    assert_eq!(quota.state, QuotaState::Exhausted);
    assert_eq!(quota.exhausted_for_secs, Some(20.0));
    assert_eq!(quota.remaining_tokens, Some(1200));
    assert_eq!(snapshot.breakers.len(), 1);
    assert_eq!(snapshot.breakers[0].state, BreakerState::HalfOpen);
    assert_eq!(snapshot.breakers[0].transitions, 2);
}

#[tokio::test(start_paused = true)]
async fn tokens_and_requests_per_minute_slide() {
    let tracker = PerformanceTracker::new();
    let backend = BackendId::new("b");
    complete(&tracker, &backend, "m", 100, 50, 10, Outcome::Success);
    tokio::time::advance(Duration::from_secs(30)).await;
    complete(&tracker, &backend, "m", 10, 5, 10, Outcome::Success);
    let key = tracker.snapshot().keys[0].clone();
    assert_eq!((key.tokens_per_minute, key.requests_per_minute), (165, 2));
    tokio::time::advance(Duration::from_secs(31)).await;
    let key = tracker.snapshot().keys[0].clone();
    assert_eq!((key.tokens_per_minute, key.requests_per_minute), (15, 1));
}

#[tokio::test(start_paused = true)]
async fn recommendation_refuses_with_too_few_samples() {
    let tracker = PerformanceTracker::builder()
        .min_samples(5)
        .build()
        .unwrap();
    let backend = BackendId::new("b");
    for _ in 0..4 {
        complete(&tracker, &backend, "m", 2_000, 100, 1_000, Outcome::Success);
    }
    let refusal = tracker.recommend(InputSize::Small).unwrap_err();
    assert_eq!((refusal.required, refusal.best), (5, 4));
    assert!(refusal.to_string().contains("not enough samples"));
    // Another category has nothing at all.
    assert_eq!(tracker.recommend(InputSize::Huge).unwrap_err().best, 0);
    complete(&tracker, &backend, "m", 2_000, 100, 1_000, Outcome::Success);
    let recommendation = tracker.recommend(InputSize::Small).unwrap();
    assert_eq!(recommendation.backend.as_str(), "b");
    assert_eq!(recommendation.evidence.samples, 5);
}

#[tokio::test(start_paused = true)]
async fn recommendation_weighs_speed_against_failures_per_input_size() {
    let tracker = PerformanceTracker::builder()
        .min_samples(10)
        .build()
        .unwrap();
    let fast = BackendId::new("fast");
    let flaky = BackendId::new("flaky");
    let slow = BackendId::new("slow");
    for _ in 0..20 {
        // Small inputs: fast does 100 tok/s, flaky 150 tok/s but fails half the time.
        complete(&tracker, &fast, "m", 2_000, 100, 1_000, Outcome::Success);
        complete(&tracker, &flaky, "m", 2_000, 150, 1_000, Outcome::Success);
        complete(
            &tracker,
            &flaky,
            "m",
            2_000,
            0,
            1_000,
            Outcome::Failed(ErrorClass::Server),
        );
        // Large inputs: slow is the only one measured enough.
        complete(&tracker, &slow, "m", 20_000, 40, 1_000, Outcome::Success);
    }
    complete(&tracker, &fast, "m", 20_000, 400, 1_000, Outcome::Success);

    let small = tracker.recommend(InputSize::Small).unwrap();
    assert_eq!(small.backend.as_str(), "fast");
    assert_eq!(small.candidates.len(), 2);
    let flaky_evidence = small.candidates[1].evidence;
    assert_eq!(flaky_evidence.failure_rate, 0.5);
    assert!((small.evidence.p50_tokens_per_sec - 100.0).abs() <= 1.0);
    assert!(small.to_string().starts_with("fast (m) for 1k-4k inputs"));

    let large = tracker.recommend(InputSize::Large).unwrap();
    assert_eq!(large.backend.as_str(), "slow");
    assert!(!large.candidates[1].eligible);
    assert!(tracker
        .recommend_for_model(InputSize::Small, "other")
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn models_past_the_cap_fold_into_other() {
    let tracker = PerformanceTracker::builder().model_cap(2).build().unwrap();
    let backend = BackendId::new("b");
    for model in ["a", "b", "c", "d", "a"] {
        complete(&tracker, &backend, model, 0, 1, 10, Outcome::Success);
    }
    let snapshot = tracker.snapshot();
    let models: Vec<_> = snapshot
        .keys
        .iter()
        .map(|k| (k.model.as_str(), k.requests))
        .collect();
    assert_eq!(models, [(names::OTHER_MODEL, 2), ("a", 2), ("b", 1)]);
}

#[tokio::test(start_paused = true)]
async fn snapshot_serialises_and_prints_an_aligned_table() {
    let tracker = PerformanceTracker::new();
    let backend = BackendId::new("openai-eu");
    complete(
        &tracker,
        &backend,
        "gpt-4o",
        1_500,
        100,
        2_000,
        Outcome::Success,
    );
    complete(
        &tracker,
        &BackendId::new("b"),
        "m",
        0,
        1,
        10,
        Outcome::Cancelled,
    );
    let snapshot = tracker.snapshot();
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["keys"][1]["backend"], "openai-eu");
    assert_eq!(json["keys"][1]["successes"], 1);
    assert_eq!(json["keys"][1]["input_sizes"][0]["category"], "small");
    assert_eq!(json["session"]["total_tokens"], 1_601);

    let text = tracker.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("backend"), "{text}");
    println!("{text}");
    // Numbers are right-aligned: each row's request count ends where "req" does.
    let end = lines[0].find("req").unwrap() + 3;
    assert_eq!(&lines[1][end - 1..=end], "1 ", "{text}");
    assert_eq!(&lines[2][end - 1..=end], "1 ", "{text}");
    assert!(lines[2].starts_with("openai-eu  gpt-4o"), "{text}");
    assert!(text.contains("session: 2 requests"), "{text}");
}

#[test]
fn builder_rejects_unusable_configuration() {
    assert!(PerformanceTracker::builder().model_cap(0).build().is_err());
    assert!(PerformanceTracker::builder()
        .min_samples(0)
        .build()
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn a_request_counts_in_the_minute_it_ended_not_when_the_event_is_heard() {
    let tracker = PerformanceTracker::new();
    let backend = BackendId::new("b");
    let ended = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(45)).await;
    // Heard 45 s after it ended: 15 s later it is out of the minute.
    let record = RequestRecord {
        ended,
        usage: Some(Usage::new(100, 50)),
        ..streamgate_core::testing::record(&backend, "m", Outcome::Success)
    };
    tracker.record(&Event::Completed(&record));
    let key = tracker.snapshot().keys[0].clone();
    assert_eq!((key.tokens_per_minute, key.requests_per_minute), (150, 1));
    tokio::time::advance(Duration::from_secs(16)).await;
    let key = tracker.snapshot().keys[0].clone();
    assert_eq!((key.tokens_per_minute, key.requests_per_minute), (0, 0));
}
