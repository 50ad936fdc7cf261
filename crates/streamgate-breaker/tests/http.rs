//! The layer over real HTTP: the mock provider and the OpenAI Chat client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{run, Recorder};
use streamgate_breaker::{Breaker, OpenWait};
use streamgate_core::{classify, BreakerState, ErrorClass, RejectReason, Rejected};
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use tower::Layer;

const MODEL: &str = "gpt-4o-mini";

async fn client(config: MockConfig) -> (MockServer, OpenAiChat) {
    let server = MockServer::start(config).await.unwrap();
    let client = OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-test")
        .build()
        .unwrap();
    (server, client)
}

fn request() -> ChatRequest {
    ChatRequest::new(MODEL).with_user("hi")
}

fn healthy() -> Plan {
    Plan::new().with_output_tokens(5)
}

#[tokio::test]
async fn a_backend_that_fails_mid_stream_after_some_tokens_opens_the_breaker() {
    let (server, client) = client(MockConfig::new().with_plan(healthy().error_after(7))).await;
    let breaker = Breaker::new("mock");
    let mut service = breaker.layer().layer(client);
    for _ in 0..3 {
        // Headers are 200 and seven tokens arrive before the error event.
        let err = run(&mut service, request()).await.unwrap_err();
        assert_eq!(classify(&*err), ErrorClass::Server);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = run(&mut service, request()).await.unwrap_err();
    let rejected = err.downcast_ref::<Rejected>().unwrap();
    assert_eq!(rejected.reason, RejectReason::CircuitOpen);
    assert_eq!(server.served(), 3);
}

#[tokio::test]
async fn a_stream_cut_short_or_disconnected_counts_as_a_failure() {
    let (server, client) = client(
        MockConfig::new()
            .with_sequence([healthy().truncate_after(3), healthy().disconnect_after(3)]),
    )
    .await;
    let breaker = Breaker::builder("mock")
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(client);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorClass::Truncated);
    assert_eq!(breaker.snapshot().consecutive_failures, 1);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorClass::Network);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(server.served(), 2);
}

#[tokio::test]
async fn a_backend_that_recovers_closes_the_breaker() {
    let (server, client) = client(
        MockConfig::new()
            .with_sequence([healthy().error_after(2), Plan::new().fail_with_status(500)])
            .with_plan(healthy()),
    )
    .await;
    let sink = Recorder::new();
    let breaker = Breaker::builder("mock")
        .consecutive_failures(1)
        .open_wait(OpenWait::Fixed(Duration::from_millis(20)))
        // Below the 1 s default, so the test waits only milliseconds.
        .minimum_open(Duration::from_millis(20))
        .sink(sink.clone())
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(client);
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(25)).await;
    // The first probe gets a 500: open again.
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(25)).await;
    // The backend has recovered: the probe's whole stream succeeds.
    let chunks = run(&mut service, request()).await.unwrap();
    assert!(chunks >= 5);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(server.served(), 3);
    use BreakerState::*;
    assert_eq!(
        sink.transitions(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[tokio::test]
async fn a_rate_limited_backend_opens_until_its_retry_after() {
    let (_server, client) = client(
        MockConfig::new().with_plan(
            Plan::new()
                .fail_with_status(429)
                .with_retry_after(Duration::from_secs(20)),
        ),
    )
    .await;
    let breaker = Breaker::new("mock");
    let mut service = breaker.layer().layer(client);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorClass::RateLimited);
    // Open for the provider's 20 s, not the default 30 s wait (less the
    // real time since the error was recorded).
    let open_for = breaker.snapshot().open_for.unwrap();
    assert!(open_for <= Duration::from_secs(20));
    assert!(open_for > Duration::from_secs(19));
}
