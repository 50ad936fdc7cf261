//! The throughput probe before commit, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::drain;
use streamgate_core::testing::{Script, ScriptedService, TestChunk, TestRequest};
use streamgate_failover::{Failover, FailoverReport, ThroughputProbe};
use tokio::time::Instant;
use tower::ServiceExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Four chunks after the first, or 500 ms; below 5 tokens per second fails over.
fn probe() -> ThroughputProbe {
    ThroughputProbe::new(4, MS(500), 5.0)
}

fn request() -> TestRequest {
    TestRequest::new("m")
}

#[tokio::test(start_paused = true)]
async fn a_slow_start_is_dropped_and_the_next_backend_serves() {
    // First content at once, then one token a second.
    let slow = ScriptedService::new(Script::new().text("first").tokens(5, MS(1_000)));
    let fast = ScriptedService::new(Script::new().meta("role").text("hello").tokens(3, MS(10)));
    let router = Failover::builder()
        .service("slow", slow.clone())
        .service("fast", fast.clone())
        .throughput_probe("slow", probe())
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    // The probe's whole window on the slow one, then the fast one commits.
    assert_eq!(started.elapsed(), MS(500));
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    assert_eq!(report.served_by.as_str(), "fast");
    assert_eq!(
        report.skipped[0].message,
        "slow start: 0.0 tokens/s over 500 ms, below the probe's floor of 5 tokens/s"
    );
    assert_eq!(slow.probe().bodies_dropped(), 1);
    assert_eq!(
        drain(response.into_body()).await,
        [
            Ok(TestChunk::Meta("role")),
            Ok(TestChunk::Text("hello")),
            Ok(TestChunk::Text("tok")),
            Ok(TestChunk::Text("tok")),
            Ok(TestChunk::Text("tok")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_start_is_committed_with_every_held_chunk_replayed_in_order() {
    let fast = ScriptedService::new(Script::new().meta("role").text("first").tokens(6, MS(10)));
    let other = ScriptedService::new(Script::new().text("other"));
    let router = Failover::builder()
        .service("fast", fast.clone())
        .service("other", other.clone())
        .throughput_probe("fast", probe())
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    // Held for four chunks after the first: 40 ms at 100 tokens per second.
    assert_eq!(started.elapsed(), MS(40));
    let mut expected = vec![Ok(TestChunk::Meta("role")), Ok(TestChunk::Text("first"))];
    expected.extend((0..6).map(|_| Ok(TestChunk::Text("tok"))));
    assert_eq!(drain(response.into_body()).await, expected);
    assert_eq!(other.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_during_the_probe_is_committed_whole() {
    let short = ScriptedService::new(Script::new().text("only"));
    let other = ScriptedService::new(Script::new().text("other"));
    let router = Failover::builder()
        .service("short", short.clone())
        .service("other", other.clone())
        .throughput_probe("short", probe())
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("only"))]
    );
    assert_eq!(other.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_last_remaining_attempt_is_never_probed() {
    let slow = ScriptedService::new(Script::new().text("first").tokens(2, MS(1_000)));
    let router = Failover::builder()
        .service("slow", slow.clone())
        .throughput_probe("slow", probe())
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(drain(response.into_body()).await.len(), 3);
}

#[test]
fn probe_settings_are_validated() {
    let err = |p: ThroughputProbe| {
        Failover::<TestRequest, TestChunk>::builder()
            .service("a", ScriptedService::new(Script::new()))
            .throughput_probe("a", p)
            .build()
            .unwrap_err()
            .to_string()
    };
    assert!(err(ThroughputProbe::new(0, MS(1), 1.0)).contains("at least 1"));
    assert!(err(ThroughputProbe::new(1, Duration::ZERO, 1.0)).contains("window"));
    assert!(err(ThroughputProbe::new(1, MS(1), f64::NAN)).contains("floor NaN"));
    let unknown = Failover::<TestRequest, TestChunk>::builder()
        .service("a", ScriptedService::new(Script::new()))
        .throughput_probe("b", probe())
        .build()
        .unwrap_err();
    assert!(unknown.to_string().contains("unknown backend b"));
}
