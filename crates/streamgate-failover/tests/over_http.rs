//! The router over real HTTP: three mock providers behind the OpenAI Chat
//! client, each with a first-content timeout and a TPM meter. The first
//! starts answering 429 with rate-limit headers, the second stalls before
//! its first token, the third works: every request is served by the third
//! within the first-content deadline plus a small overhead, and the report
//! says why the others were skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{drain, expect_err, sink, Seen};
use streamgate_core::{ErrorClass, FailoverError};
use streamgate_failover::{Failover, FailoverReport, Hedge, ThroughputProbe, TpmLayer};
use streamgate_mock::{expected_text, KeepAlive, MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_timeout::FirstChunkTimeoutLayer;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const DEADLINE: Duration = Duration::from_millis(300);
/// Time allowed beyond the deadline for the 429, the third backend's answer
/// and scheduling on a busy machine; a bound, not a measurement.
const OVERHEAD: Duration = Duration::from_millis(700);
/// How long a test waits for the server to notice; a bound, not a measurement.
const NOTICE: Duration = Duration::from_secs(5);
const TOKENS: u64 = 5;

fn client(server: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-test")
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new("mock-model").with_user("say something")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_stalled_backends_are_skipped_and_the_third_serves() {
    // One good answer, then 429s that ask the client to come back in 30 s.
    let limited = MockServer::start(
        MockConfig::new()
            .with_sequence([Plan::new().with_output_tokens(TOKENS)])
            .with_plan(
                Plan::new()
                    .fail_with_status(429)
                    .with_retry_after(Duration::from_secs(30)),
            ),
    )
    .await
    .unwrap();
    // Headers and keep-alives, but never a token.
    let stalled = MockServer::start_with_plan(
        Plan::new()
            .with_keep_alive(Duration::from_millis(50), KeepAlive::default())
            .stall_after(0),
    )
    .await
    .unwrap();
    let healthy = MockServer::start_with_plan(Plan::new().with_output_tokens(TOKENS))
        .await
        .unwrap();

    let timeout = FirstChunkTimeoutLayer::new(DEADLINE).unwrap();
    let meters: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|name| TpmLayer::builder(*name).build().unwrap())
        .collect();
    let (events, sink) = sink();
    let router = Failover::builder()
        .service("one", meters[0].layer(timeout.layer(client(&limited))))
        .service("two", meters[1].layer(timeout.layer(client(&stalled))))
        .service("three", meters[2].layer(timeout.layer(client(&healthy))))
        .sink(sink)
        .build()
        .unwrap();

    // Warm up: the first backend still works.
    let response = router.clone().oneshot(request()).await.unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .cloned()
        .unwrap();
    assert_eq!(report.served_by.as_str(), "one");
    assert!(report.skipped.is_empty());
    drain(response.into_body()).await;

    let mut worst = Duration::ZERO;
    for i in 0..5u64 {
        let start = Instant::now();
        let response = router.clone().oneshot(request()).await.unwrap();
        let committed = start.elapsed();
        worst = worst.max(committed);
        assert!(
            committed >= DEADLINE,
            "the stalled backend had its full deadline"
        );
        assert!(
            committed < DEADLINE + OVERHEAD,
            "request {i} committed after {committed:?}"
        );

        let report = response
            .extensions()
            .get::<FailoverReport>()
            .cloned()
            .unwrap();
        assert_eq!(report.served_by.as_str(), "three");
        let skipped: Vec<_> = report
            .skipped
            .iter()
            .map(|a| (a.backend.as_str(), a.class, a.retry_after))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "one",
                    ErrorClass::RateLimited,
                    Some(Duration::from_secs(30))
                ),
                ("two", ErrorClass::Timeout, None),
            ]
        );
        assert_eq!(report.skipped[1].message, "no content within 300 ms");

        let text: String = drain(response.into_body())
            .await
            .into_iter()
            .map(|chunk| chunk.unwrap().text)
            .collect();
        assert_eq!(text, expected_text(TOKENS));

        // The stalled backend really saw its connection closed.
        tokio::time::timeout(NOTICE, stalled.wait_for_disconnect(i))
            .await
            .expect("the stalled server never saw the client leave");
    }
    println!("worst time to commit through the third backend: {worst:?}");
    assert_eq!(healthy.served(), 5);

    let failovers: Vec<_> = events
        .seen()
        .into_iter()
        .filter(|e| matches!(e, Seen::Failover { .. }))
        .collect();
    assert_eq!(failovers.len(), 10);
    assert_eq!(
        failovers[..2],
        [
            Seen::Failover {
                from: "one".into(),
                to: Some("two".into()),
                reason: ErrorClass::RateLimited
            },
            Seen::Failover {
                from: "two".into(),
                to: Some("three".into()),
                reason: ErrorClass::Timeout
            },
        ]
    );
    // The meters saw what each backend served: the healthy one's usage.
    let three = meters[2].snapshot("mock-model", Instant::now());
    assert_eq!(three.requests_per_minute, 5);
    assert_eq!(three.reserved, 0);
    assert!(three.tokens_per_minute >= 5 * TOKENS);

    // When the third fails too, the error tells a person why each was
    // given up.
    healthy.set_plan(Plan::new().fail_with_status(500));
    let err = expect_err(router.oneshot(request()).await);
    let failover = err.downcast_ref::<FailoverError>().unwrap();
    assert_eq!(
        failover
            .attempts
            .iter()
            .map(|a| (a.backend.as_str(), a.class))
            .collect::<Vec<_>>(),
        [
            ("one", ErrorClass::RateLimited),
            ("two", ErrorClass::Timeout),
            ("three", ErrorClass::Server),
        ]
    );
    let message = err.to_string();
    assert!(
        message.starts_with("all 3 backends failed: one rate limited: "),
        "{message}"
    );
    assert!(
        message.contains("(retry in 30 s), two timeout: no content within 300 ms, three server: ")
    );
}

#[tokio::test]
async fn over_http_a_hedge_wins_and_the_slow_first_choice_is_disconnected() {
    // The first choice takes far longer to its first content than the
    // hedge delay plus the second's whole answer.
    let slow = MockServer::start_with_plan(
        Plan::new()
            .with_first_content_delay(Duration::from_secs(30))
            .with_output_tokens(TOKENS),
    )
    .await
    .unwrap();
    let fast = MockServer::start_with_plan(Plan::new().with_output_tokens(TOKENS))
        .await
        .unwrap();
    let (events, sink) = sink();
    let router = Failover::builder()
        .service("slow", client(&slow))
        .service("fast", client(&fast))
        .hedge(Hedge::after(Duration::from_millis(50)).budget(1.0))
        .sink(sink)
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .cloned()
        .unwrap();
    assert_eq!(report.served_by.as_str(), "fast");
    assert_eq!(report.skipped[0].class, ErrorClass::Cancelled);
    let text: String = drain(response.into_body())
        .await
        .into_iter()
        .map(|chunk| chunk.unwrap().text)
        .collect();
    assert_eq!(text, expected_text(TOKENS));
    // The provider of the losing attempt saw its connection closed.
    tokio::time::timeout(NOTICE, slow.wait_for_disconnect(0))
        .await
        .expect("the slow server never saw the client leave");
    assert_eq!((slow.served(), fast.served()), (1, 1));
    assert!(events.seen().contains(&Seen::Hedge {
        primary: "slow".into(),
        hedge: "fast".into(),
        stage: streamgate_core::HedgeStage::Won,
        estimated_tokens: streamgate_core::LlmRequest::estimated_tokens(&request()),
    }));
}

#[tokio::test]
async fn over_http_a_slow_start_is_disconnected_and_the_next_backend_serves() {
    // A token every 2 s after the first: far below the probe's floor.
    let slow = MockServer::start_with_plan(
        Plan::new()
            .with_chunk_delay(Duration::from_secs(2))
            .with_output_tokens(TOKENS),
    )
    .await
    .unwrap();
    let fast = MockServer::start_with_plan(Plan::new().with_output_tokens(TOKENS))
        .await
        .unwrap();
    let router = Failover::builder()
        .service("slow", client(&slow))
        .service("fast", client(&fast))
        .throughput_probe(
            "slow",
            ThroughputProbe::new(3, Duration::from_millis(100), 20.0),
        )
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .cloned()
        .unwrap();
    assert_eq!(report.served_by.as_str(), "fast");
    assert!(
        report.skipped[0].message.starts_with("slow start"),
        "{}",
        report.skipped[0].message
    );
    let text: String = drain(response.into_body())
        .await
        .into_iter()
        .map(|chunk| chunk.unwrap().text)
        .collect();
    assert_eq!(text, expected_text(TOKENS));
    tokio::time::timeout(NOTICE, slow.wait_for_disconnect(0))
        .await
        .expect("the slow server never saw the client leave");
}
