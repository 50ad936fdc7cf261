//! Hedging on first content, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{drain, sink, Seen};
use streamgate_core::{
    scoreboard::Scoreboard,
    testing::{record, replay, Script, ScriptedService, TestChunk, TestRequest},
    BackendId, ErrorClass, Event, HedgeStage, MetricsSink, Outcome, RejectReason, RequestRecord,
};
use streamgate_failover::{Failover, FailoverReport, Hedge};
use tokio::time::Instant;
use tower::ServiceExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn after(ms: u64, text: &'static str) -> ScriptedService {
    ScriptedService::new(Script::new().wait(MS(ms)).text(text))
}

fn request() -> TestRequest {
    TestRequest::new("m")
}

fn hedged(
    primary: &ScriptedService,
    fallback: &ScriptedService,
    hedge: Hedge,
) -> Failover<TestRequest, TestChunk> {
    Failover::builder()
        .service("primary", primary.clone())
        .service("fallback", fallback.clone())
        .hedge(hedge)
        .build()
        .unwrap()
}

fn hedge_events(seen: &[Seen]) -> Vec<HedgeStage> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Hedge { stage, .. } => Some(*stage),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_choice_is_hedged_and_the_first_content_wins() {
    let (primary, fallback) = (after(5_000, "slow"), after(100, "fast"));
    let (events, sink) = sink();
    let router = Failover::builder()
        .service("primary", primary.clone())
        .service("fallback", fallback.clone())
        .hedge(Hedge::after(MS(1_000)).budget(1.0))
        .sink(sink)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request().with_estimate(250)).await.unwrap();
    // The hedge started at 1 s and had content 100 ms later.
    assert_eq!(started.elapsed(), MS(1_100));
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    assert_eq!(report.served_by.as_str(), "fallback");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].backend.as_str(), "primary");
    assert_eq!(report.skipped[0].class, ErrorClass::Cancelled);
    assert!(
        report.skipped[0].message.contains("hedged"),
        "{}",
        report.skipped[0].message
    );
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("fast"))]
    );
    // The loser was dropped at once: its request is cancelled.
    assert_eq!(primary.probe().bodies_dropped(), 1);
    assert_eq!(primary.probe().last_drop_at(), Some(started + MS(1_100)));
    assert_eq!(
        hedge_events(&events.seen()),
        [HedgeStage::Started, HedgeStage::Won]
    );
    // Each hedge event carries what the extra attempt sent again.
    assert!(events.seen().iter().any(|s| matches!(
        s,
        Seen::Hedge {
            primary,
            hedge,
            stage: HedgeStage::Started,
            estimated_tokens: 250,
        } if primary == "primary" && hedge == "fallback"
    )));
}

#[tokio::test(start_paused = true)]
async fn the_primary_wins_when_it_produces_content_first() {
    let (primary, fallback) = (after(1_500, "primary"), after(2_000, "fallback"));
    let (events, sink) = sink();
    let router = Failover::builder()
        .service("primary", primary.clone())
        .service("fallback", fallback.clone())
        .hedge(Hedge::after(MS(1_000)).budget(1.0))
        .sink(sink)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), MS(1_500));
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    assert_eq!(report.served_by.as_str(), "primary");
    assert_eq!(report.skipped[0].backend.as_str(), "fallback");
    assert_eq!(report.skipped[0].class, ErrorClass::Cancelled);
    assert_eq!(fallback.probe().bodies_dropped(), 1);
    assert_eq!(
        hedge_events(&events.seen()),
        [HedgeStage::Started, HedgeStage::Lost]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_of_one_attempt_does_not_fail_the_request_while_the_other_runs() {
    let primary = ScriptedService::new(
        Script::new()
            .headers_after(MS(1_200))
            .fail_call(ErrorClass::Server),
    );
    let fallback = after(2_000, "fallback");
    let router = hedged(&primary, &fallback, Hedge::after(MS(1_000)).budget(1.0));
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    // Served by the hedge, which started at 1 s and had content at 3 s.
    assert_eq!(started.elapsed(), MS(3_000));
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    assert_eq!(report.served_by.as_str(), "fallback");
    assert_eq!(report.skipped[0].class, ErrorClass::Server);
    assert_eq!(fallback.probe().bodies_dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_choice_is_never_hedged() {
    let (primary, fallback) = (after(200, "primary"), after(100, "fallback"));
    let router = hedged(&primary, &fallback, Hedge::after(MS(1_000)).budget(1.0));
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        response
            .extensions()
            .get::<FailoverReport>()
            .unwrap()
            .served_by
            .as_str(),
        "primary"
    );
    assert_eq!(fallback.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_the_share_of_hedged_requests() {
    let (primary, fallback) = (after(2_000, "slow"), after(10, "fast"));
    let router = hedged(&primary, &fallback, Hedge::after(MS(1_000)).budget(0.1));
    for _ in 0..50 {
        let response = router.clone().oneshot(request()).await.unwrap();
        drain(response.into_body()).await;
    }
    // One hedge per ten requests.
    assert_eq!(fallback.probe().calls(), 5);
    assert_eq!(primary.probe().calls(), 50);
    assert_eq!(primary.probe().bodies_dropped(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_never_goes_to_a_backend_the_scoreboard_knows_is_refusing() {
    let (primary, fallback) = (after(2_000, "slow"), after(10, "fast"));
    let board = Scoreboard::new();
    board.record(&Event::Rejected {
        backend: &BackendId::new("fallback"),
        model: "m",
        reason: RejectReason::QuotaExhausted,
        retry_after: Some(Duration::from_secs(60)),
    });
    let router = Failover::builder()
        .service("primary", primary.clone())
        .service("fallback", fallback.clone())
        .hedge(Hedge::after(MS(1_000)).budget(1.0))
        .scoreboard(&board)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), MS(2_000));
    assert_eq!(fallback.probe().calls(), 0);
    drop(response);
}

#[tokio::test(start_paused = true)]
async fn a_learned_delay_waits_for_samples_then_hedges_at_the_percentile() {
    let board = Scoreboard::new();
    let (primary, fallback) = (after(2_000, "slow"), after(10, "fast"));
    let router = Failover::builder()
        .service("primary", primary.clone())
        .service("fallback", fallback.clone())
        .hedge(Hedge::learned().min_samples(20).budget(1.0))
        .scoreboard(&board)
        .build()
        .unwrap();
    // No samples: no hedge, the primary takes its 2 s.
    let started = Instant::now();
    drain(router.clone().oneshot(request()).await.unwrap().into_body()).await;
    assert_eq!(started.elapsed(), MS(2_000));
    assert_eq!(fallback.probe().calls(), 0);
    // Twenty first contents between 10 and 200 ms: p95 is 190 ms.
    let primary_id = BackendId::new("primary");
    for k in 1..=20 {
        replay(
            &board,
            &RequestRecord {
                time_to_first_content: Some(MS(k * 10)),
                duration: MS(k * 10),
                chunks: 1,
                ..record(&primary_id, "m", Outcome::Success)
            },
        );
    }
    let started = Instant::now();
    drain(router.oneshot(request()).await.unwrap().into_body()).await;
    assert_eq!(started.elapsed(), MS(190 + 10));
    assert_eq!(fallback.probe().calls(), 1);
}

#[test]
fn hedge_settings_are_validated_by_the_router() {
    let err = Failover::<TestRequest, TestChunk>::builder()
        .service("a", after(1, "a"))
        .hedge(Hedge::learned().percentile(1.5))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("percentile 1.5"), "{err}");
}
