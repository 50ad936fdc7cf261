//! The `Backend` and `Backends` builders on paused time: the layers are
//! stacked in the recommended order, configured from one place, and report
//! to one sink.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate::breaker::OpenWait;
use streamgate::core::keyed::DEFAULT_MODEL_CAP;
use streamgate::core::scoreboard::Scoreboard;
use streamgate::core::testing::{Script, ScriptedService, TestChunk, TestRequest};
use streamgate::core::{BreakerState, TimeoutKind};
use streamgate::prelude::*;
use streamgate::quota::QuotaInfo;
use tower::ServiceExt;

const MODEL: &str = "gpt-4o-mini";

/// Sends one request and reads the stream to its end; the error of the call
/// or of the stream, if any.
async fn send(
    service: &BoxStreamingService<TestRequest, TestChunk>,
    request: TestRequest,
) -> Result<(), BoxError> {
    let response = service.clone().oneshot(request).await?;
    let mut body = response.into_body();
    while let Some(item) = body.next().await {
        item?;
    }
    Ok(())
}

fn rejected_reason(error: &BoxError) -> Option<RejectReason> {
    error.downcast_ref::<Rejected>().map(|r| r.reason)
}

fn breaker_opening_on_first_failure(name: &str) -> Breaker {
    Breaker::builder(name)
        .without_failures_within()
        .consecutive_failures(1)
        .open_wait(OpenWait::Fixed(Duration::from_secs(10)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn quota_rejection_never_reaches_the_breaker_so_it_takes_no_probe() {
    let breaker = breaker_opening_on_first_failure("a");
    let quota = QuotaTracker::new();
    let client = ScriptedService::new(Script::new().text("ok"))
        .then(Script::new().fail_call(ErrorClass::Server));
    let service = Backend::new("a", client.clone())
        .circuit_breaker(breaker.clone())
        .quota(quota.clone())
        .build()
        .unwrap();

    // One server error opens the breaker for 10 s.
    assert!(send(&service, TestRequest::new(MODEL)).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);

    // Past the wait, the next call would be the half-open probe. The quota
    // is exhausted meanwhile, so the quota gate refuses first...
    tokio::time::advance(Duration::from_secs(11)).await;
    let info = QuotaInfo {
        retry_after: Some(Duration::from_secs(5)),
        ..QuotaInfo::default()
    };
    quota.observe_rate_limited(
        &BackendId::new("a"),
        MODEL,
        &info,
        tokio::time::Instant::now(),
    );
    let error = send(&service, TestRequest::new(MODEL)).await.unwrap_err();
    assert_eq!(rejected_reason(&error), Some(RejectReason::QuotaExhausted));

    // ...and the breaker never saw that call: its circuit is still open (it
    // turns half-open only when a call reaches it; `state()` already reads
    // half-open, as the next call would find it), no probe was taken, the
    // client was not called.
    assert_eq!(breaker.snapshot().circuit, BreakerState::Open);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(client.probe().calls(), 1);

    // Once the quota resets, the probe goes through and closes the breaker.
    tokio::time::advance(Duration::from_secs(6)).await;
    send(&service, TestRequest::new(MODEL)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(client.probe().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_refuses_without_calling_and_metrics_counts_a_rejection() {
    let tracker = Arc::new(PerformanceTracker::new());
    let client = ScriptedService::new(Script::new().text("ok"))
        .then(Script::new().fail_call(ErrorClass::Overloaded));
    let service = Backend::new("a", client.clone())
        .circuit_breaker_with(|b| b.without_failures_within().consecutive_failures(1))
        .metrics(tracker.clone())
        .build()
        .unwrap();

    assert!(send(&service, TestRequest::new(MODEL)).await.is_err());
    let error = send(&service, TestRequest::new(MODEL)).await.unwrap_err();
    assert_eq!(rejected_reason(&error), Some(RejectReason::CircuitOpen));
    assert_eq!(client.probe().calls(), 1);

    let snapshot = tracker.snapshot();
    let key = snapshot.key("a", MODEL).unwrap();
    assert_eq!(
        key.requests, 1,
        "a refusal is not a request to the provider"
    );
    assert_eq!(key.failures.get("overloaded"), Some(&1));
    assert_eq!(key.rejections.get("circuit_open"), Some(&1));
    // The breaker configured through the builder reports to the same sink.
    assert_eq!(snapshot.breakers.len(), 1);
    assert_eq!(snapshot.breakers[0].state, BreakerState::Open);
}

/// With or without pacing, the breaker is fused into the gates' guard layer
/// (with pacing, behind it). Both shapes count alike.
#[tokio::test(start_paused = true)]
async fn with_or_without_pacing_the_stack_counts_successes_failures_and_refusals_alike() {
    let mut seen = Vec::new();
    for paced in [false, true] {
        let tracker = Arc::new(PerformanceTracker::new());
        let client = ScriptedService::new(Script::new().text("ok"))
            .then(Script::new().text("ok"))
            .then(Script::new().fail_call(ErrorClass::Overloaded));
        let mut backend = Backend::new("a", client.clone())
            .circuit_breaker_with(|b| b.without_failures_within().consecutive_failures(1))
            .tpm_budget(1_000_000)
            .metrics(tracker.clone());
        if paced {
            backend = backend.pacing(|p| p.requests_per_minute(6_000));
        }
        let service = backend.build().unwrap();

        send(&service, TestRequest::new(MODEL)).await.unwrap();
        assert!(send(&service, TestRequest::new(MODEL)).await.is_err());
        let error = send(&service, TestRequest::new(MODEL)).await.unwrap_err();
        assert_eq!(rejected_reason(&error), Some(RejectReason::CircuitOpen));

        let snapshot = tracker.snapshot();
        let key = snapshot.key("a", MODEL).unwrap();
        assert_eq!(key.requests, 2, "paced: {paced}");
        assert_eq!(key.successes, 1, "paced: {paced}");
        assert_eq!(key.failures.get("overloaded"), Some(&1), "paced: {paced}");
        assert_eq!(
            key.rejections.get("circuit_open"),
            Some(&1),
            "paced: {paced}"
        );
        assert_eq!(client.probe().calls(), 2, "paced: {paced}");
        seen.push((
            key.requests,
            key.successes,
            key.failures.clone(),
            key.rejections.clone(),
            snapshot.breakers[0].state,
        ));
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test(start_paused = true)]
async fn metrics_sees_a_timeout_as_an_outcome_and_the_breaker_counts_it() {
    let tracker = Arc::new(PerformanceTracker::new());
    let breaker = breaker_opening_on_first_failure("a");
    let client = ScriptedService::new(Script::new().meta("role").stall());
    let service = Backend::new("a", client.clone())
        .first_content_timeout(Duration::from_secs(2))
        .circuit_breaker(breaker.clone())
        .metrics(tracker.clone())
        .build()
        .unwrap();

    let error = send(&service, TestRequest::new(MODEL)).await.unwrap_err();
    let timeout = error.downcast_ref::<StreamTimeout>().unwrap();
    assert_eq!(timeout.kind, TimeoutKind::FirstContent);

    let snapshot = tracker.snapshot();
    let key = snapshot.key("a", MODEL).unwrap();
    assert_eq!(key.timeouts.first_content, 1);
    assert_eq!(key.requests, 1);
    assert_eq!(breaker.state(), BreakerState::Open);
    // The timeout cancelled the request by dropping it.
    assert_eq!(client.probe().bodies_dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn tpm_budget_refuses_what_does_not_fit_before_any_other_layer() {
    let tracker = Arc::new(PerformanceTracker::new());
    let client = ScriptedService::new(Script::new().text("ok"));
    let service = Backend::new("a", client.clone())
        .tpm_budget(1_000)
        .metrics(tracker.clone())
        .build()
        .unwrap();

    send(&service, TestRequest::new(MODEL).with_estimate(400))
        .await
        .unwrap();
    let error = send(&service, TestRequest::new(MODEL).with_estimate(5_000))
        .await
        .unwrap_err();
    assert_eq!(rejected_reason(&error), Some(RejectReason::TpmBudget));
    assert_eq!(client.probe().calls(), 1);
    let snapshot = tracker.snapshot();
    assert_eq!(
        snapshot
            .key("a", MODEL)
            .unwrap()
            .rejections
            .get("tpm_budget"),
        Some(&1)
    );
}

#[tokio::test(start_paused = true)]
async fn pacing_waits_instead_of_failing_and_reports_the_wait() {
    let tracker = Arc::new(PerformanceTracker::new());
    let client = ScriptedService::new(Script::new().text("ok"));
    let service = Backend::new("a", client.clone())
        .pacing(|p| p.requests_per_minute(60).request_burst(1))
        .metrics(tracker.clone())
        .build()
        .unwrap();

    send(&service, TestRequest::new(MODEL)).await.unwrap();
    let started = tokio::time::Instant::now();
    send(&service, TestRequest::new(MODEL)).await.unwrap();
    assert!(started.elapsed() > Duration::ZERO, "the second call waited");
    assert_eq!(client.probe().calls(), 2);
    let session = tracker.snapshot().session;
    assert_eq!(session.throttled, 1);
    assert!(session.throttle_wait_secs > 0.0);
}

/// Pacing waits before the breaker is asked: a request that waits past the
/// end of an open wait is let through as the half-open probe, where asking
/// the breaker first would have refused it while still open.
#[tokio::test(start_paused = true)]
async fn a_paced_request_is_asked_of_the_breaker_after_its_wait() {
    let client = ScriptedService::new(Script::new().text("ok"))
        .then(Script::new().fail_call(ErrorClass::Overloaded));
    let breaker = Breaker::builder("a")
        .without_failures_within()
        .consecutive_failures(1)
        .open_wait(OpenWait::Fixed(Duration::from_secs(1)))
        .build()
        .unwrap();
    let service = Backend::new("a", client.clone())
        .circuit_breaker(breaker.clone())
        // Burst 1, refill 59 a minute: the second request waits 60/59 s.
        .pacing(|p| p.requests_per_minute(60).request_burst(1))
        .build()
        .unwrap();

    assert!(send(&service, TestRequest::new(MODEL)).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    let started = tokio::time::Instant::now();
    send(&service, TestRequest::new(MODEL))
        .await
        .expect("admitted as the probe after the wait");
    assert!(started.elapsed() >= Duration::from_secs(60) / 59);
    assert_eq!(client.probe().calls(), 2);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn backends_fail_over_and_share_the_sink() {
    let tracker = Arc::new(PerformanceTracker::new());
    let primary = ScriptedService::new(Script::new().fail_call(ErrorClass::Overloaded));
    let secondary = ScriptedService::new(Script::new().text("ok"));
    let router = Backends::new()
        .backend(Backend::new("primary", primary.clone()))
        .backend(Backend::new("secondary", secondary.clone()))
        .metrics(tracker.clone())
        .build()
        .unwrap();

    let response = router.oneshot(TestRequest::new(MODEL)).await.unwrap();
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.served_by.as_str(), "secondary");
    assert_eq!(report.skipped[0].class, ErrorClass::Overloaded);
    drop(response);

    let snapshot = tracker.snapshot();
    let primary_key = snapshot.key("primary", MODEL).unwrap();
    assert_eq!(primary_key.failures.get("overloaded"), Some(&1));
    assert_eq!(primary_key.failovers, 1);
    assert_eq!(snapshot.key("secondary", MODEL).unwrap().requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_backend_is_ordered_after_one_without_a_minimum() {
    // 4 tokens over 3 s of streaming: 80 tokens per minute, far below 1 000.
    let slow = ScriptedService::new(
        Script::new()
            .text("first")
            .tokens(3, Duration::from_secs(1)),
    );
    let fast = ScriptedService::new(Script::new().text("ok"));
    let router = Backends::new()
        .backend(Backend::new("slow", slow.clone()).min_throughput(1_000))
        .backend(Backend::new("fast", fast.clone()))
        .build()
        .unwrap();

    let mut served = Vec::new();
    for _ in 0..4 {
        let response = router
            .clone()
            .oneshot(TestRequest::new(MODEL))
            .await
            .unwrap();
        let report = response
            .extensions()
            .get::<FailoverReport>()
            .unwrap()
            .clone();
        let _: Vec<_> = response.into_body().collect().await;
        served.push(report.served_by.to_string());
    }
    // Three samples make it judgeable; the fourth request goes elsewhere.
    assert_eq!(served, ["slow", "slow", "slow", "fast"]);
    assert_eq!(slow.probe().calls(), 3);
    // What the board measured through the backend's own layers.
    let score =
        router
            .scoreboard()
            .view(&BackendId::new("slow"), MODEL, tokio::time::Instant::now());
    assert_eq!(score.tokens_per_minute, Some(80.0));
    assert!(score.slow);
    assert_eq!(score.in_flight, 0);
}

#[test]
fn settings_that_cannot_work_are_refused_with_the_backend_named() {
    let client = || ScriptedService::new(Script::new());
    let build = |b: Backend<ScriptedService, TestRequest>| b.build().map(|_| ()).unwrap_err();

    let error = build(Backend::new("a", client()).idle_timeout(Duration::from_secs(1)));
    assert!(matches!(
        error,
        BuildError::MissingFirstContentTimeout { .. }
    ));
    assert_eq!(error.backend().map(BackendId::as_str), Some("a"));

    let error = build(Backend::new("z", client()).min_throughput(0));
    assert_eq!(
        error.to_string(),
        "backend z: minimum throughput must be above 0 tokens per minute"
    );

    let error = build(Backend::new("b", client()).first_content_timeout(Duration::ZERO));
    assert!(matches!(error, BuildError::Timeout { .. }));
    assert!(std::error::Error::source(&error).is_some());
    assert!(error.to_string().starts_with("backend b: "), "{error}");

    let error = build(
        Backend::new("c", client())
            .circuit_breaker_with(|b| b.open_wait(OpenWait::Fixed(Duration::ZERO))),
    );
    assert!(matches!(error, BuildError::Breaker { .. }));

    let error = build(Backend::new("d", client()).pacing(|p| p.requests_per_minute(0)));
    assert!(matches!(error, BuildError::Quota { .. }));

    let error = build(Backend::new("e", client()).tpm_budget(0));
    assert!(matches!(error, BuildError::Tpm { .. }));

    let error = Backends::<TestRequest, TestChunk>::new()
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::Failover { .. }));
    assert_eq!(error.backend(), None);

    let error = Backends::<TestRequest, TestChunk>::new()
        .backend(Backend::new("same", client()))
        .backend(Backend::new("same", client()))
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::Failover { .. }));
}

#[tokio::test(start_paused = true)]
async fn the_routers_deadline_opens_the_breaker_of_a_silent_backend() {
    let silent = ScriptedService::new(Script::new().stall_call());
    let healthy = ScriptedService::new(Script::new().text("ok"));
    let tracker = Arc::new(PerformanceTracker::new());
    let breaker = Breaker::new("silent");
    // Late for 10 s after each cut: three cuts fit the breaker's 60 s window.
    let board = Scoreboard::with_settings(DEFAULT_MODEL_CAP, Duration::from_secs(10));
    let router = Backends::new()
        .backend(Backend::new("silent", silent.clone()).circuit_breaker(breaker.clone()))
        .backend(Backend::new("healthy", healthy.clone()))
        .metrics(tracker.clone())
        .scoreboard(&board)
        .failover(|f| f.first_content_timeout(Duration::from_secs(2)))
        .build()
        .unwrap();

    // The default breaker opens after 3 failures within 60 s: each cut
    // attempt is a first-content timeout to it, not a silent drop. A cut
    // costs one caller the deadline: while the backend is late, the
    // requests after it go to the healthy one at once.
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let response = router
            .clone()
            .oneshot(TestRequest::new(MODEL))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let report = response.extensions().get::<FailoverReport>().unwrap();
        assert_eq!(report.served_by.as_str(), "healthy");
        assert_eq!(report.skipped[0].class, ErrorClass::Timeout);
        drop(response);
        for _ in 0..2 {
            let started = tokio::time::Instant::now();
            let response = router
                .clone()
                .oneshot(TestRequest::new(MODEL))
                .await
                .unwrap();
            assert_eq!(started.elapsed(), Duration::ZERO);
            let report = response.extensions().get::<FailoverReport>().unwrap();
            assert_eq!(report.served_by.as_str(), "healthy");
            assert!(report.skipped.is_empty());
        }
        tokio::time::advance(board.late_for()).await;
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(silent.probe().calls(), 3);

    // Now the silent backend is skipped at once, without calling it.
    let started = tokio::time::Instant::now();
    let response = router
        .clone()
        .oneshot(TestRequest::new(MODEL))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.skipped[0].rejected, Some(RejectReason::CircuitOpen));
    assert_eq!(silent.probe().calls(), 3);

    // Metrics recorded the cut attempts as timeouts, not cancellations.
    let snapshot = tracker.snapshot();
    let stats = snapshot.key("silent", MODEL).unwrap();
    assert_eq!(stats.timeouts.first_content, 3);
    assert_eq!(stats.cancellations, 0);
}

#[tokio::test(start_paused = true)]
async fn the_last_remaining_attempt_gets_the_extra_time_from_its_own_stack() {
    let slow = ScriptedService::new(Script::new().wait(Duration::from_secs(3)).text("late"));
    let router = Backends::new()
        .backend(Backend::new("only", slow.clone()))
        .failover(|f| {
            f.first_content_timeout(Duration::from_secs(2))
                .last_attempt_extra(Duration::from_secs(2))
        })
        .build()
        .unwrap();
    // 3 s to first content: over the 2 s deadline, within 2 s + 2 s extra.
    let started = tokio::time::Instant::now();
    send_failover(&router).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    let slower = ScriptedService::new(Script::new().wait(Duration::from_secs(5)).text("late"));
    let router = Backends::new()
        .backend(Backend::new("only", slower.clone()))
        .failover(|f| {
            f.first_content_timeout(Duration::from_secs(2))
                .last_attempt_extra(Duration::from_secs(2))
        })
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = send_failover(&router).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert_eq!(classify(&*err), ErrorClass::Timeout);
}

async fn send_failover(router: &Failover<TestRequest, TestChunk>) -> Result<(), BoxError> {
    let response = router.clone().oneshot(TestRequest::new(MODEL)).await?;
    let mut body = response.into_body();
    while let Some(item) = body.next().await {
        item?;
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_tpm_gate_and_the_tracker_report_one_tokens_per_minute() {
    let tracker = Arc::new(PerformanceTracker::new());
    let tpm = TpmLayer::builder("a")
        .max_tokens_per_minute(1_000_000)
        .build()
        .unwrap();
    let client = ScriptedService::new(Script::new().text("ok").usage(Usage::new(90, 10)));
    let service = tower::ServiceBuilder::new()
        .layer(tpm.clone())
        .layer(MetricsLayer::new("a", tracker.clone()))
        .service(client);
    let both = |tracker: &PerformanceTracker| {
        let key = tracker
            .snapshot()
            .key("a", MODEL)
            .unwrap()
            .tokens_per_minute;
        (
            tpm.snapshot(MODEL, tokio::time::Instant::now())
                .tokens_per_minute,
            key,
        )
    };
    let mut seen = Vec::new();
    for advance in [0, 30, 30, 1, 30] {
        tokio::time::advance(Duration::from_secs(advance)).await;
        let response = service
            .clone()
            .oneshot(TestRequest::new(MODEL))
            .await
            .unwrap();
        response.into_body().for_each(|_| async {}).await;
        seen.push(both(&tracker));
    }
    // At 60 s the first request still counts (the current second plus the
    // 60 before it); at 61 s it has left both windows.
    assert_eq!(
        seen,
        [(100, 100), (200, 200), (300, 300), (300, 300), (300, 300)]
    );
}
