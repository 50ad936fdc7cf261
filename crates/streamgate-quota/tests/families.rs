//! Every rate-limit header family over real HTTP: the mock provider reports
//! its limits in each family, and the quota layer stops before the
//! provider would refuse. Also the in-flight accounting under 50
//! concurrent requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use streamgate_core::{BackendId, BoxError, ProviderError, Rejected};
use streamgate_mock::{MockConfig, MockServer, Plan, RateLimitHeaders};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_quota::{QuotaLayer, QuotaTracker};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MODEL: &str = "gpt-test";

/// Exactly 100 tokens at the mock (50 in, 50 out) and an estimate of
/// exactly 100 (184 bytes of text, 4 of framing, 50 of `max_tokens`).
fn request() -> ChatRequest {
    ChatRequest::new(MODEL)
        .with_user("x".repeat(184))
        .with_max_tokens(50)
}

fn plan() -> Plan {
    Plan::new().with_input_tokens(50).with_output_tokens(50)
}

fn client(server: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-test")
        .build()
        .unwrap()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    completed: u64,
    http_429: u64,
    rejected: u64,
}

impl Counts {
    fn add(&mut self, result: Result<http::Response<impl futures::Stream>, BoxError>) {
        match result {
            Ok(_) => self.completed += 1,
            Err(error) => {
                if error.downcast_ref::<Rejected>().is_some() {
                    self.rejected += 1;
                } else if let Some(p) = error.downcast_ref::<ProviderError>() {
                    assert_eq!(p.status().map(|s| s.as_u16()), Some(429), "{p}");
                    self.http_429 += 1;
                } else {
                    panic!("unexpected error: {error}");
                }
            }
        }
    }
}

/// Sends `attempts` requests one after another, reading each stream to its
/// end.
async fn sequential<S, B, E>(mut service: S, attempts: u64) -> Counts
where
    S: Service<ChatRequest, Response = http::Response<B>, Error = BoxError>,
    B: futures::Stream<Item = Result<streamgate_providers::ChatChunk, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut counts = Counts::default();
    for _ in 0..attempts {
        let result = ServiceExt::<ChatRequest>::ready(&mut service)
            .await
            .unwrap()
            .call(request())
            .await;
        let result = match result {
            Ok(response) => {
                let (parts, mut body) = response.into_parts();
                while let Some(item) = body.next().await {
                    item.unwrap();
                }
                Ok(http::Response::from_parts(
                    parts,
                    futures::stream::empty::<()>(),
                ))
            }
            Err(e) => Err(e),
        };
        counts.add(result);
    }
    counts
}

async fn gated_run(config: MockConfig, tracker: QuotaTracker, attempts: u64) -> (Counts, usize) {
    let server = MockServer::start(config.with_plan(plan())).await.unwrap();
    let gated = QuotaLayer::new(BackendId::new("mock"), tracker).layer(client(&server));
    let counts = sequential(gated, attempts).await;
    let sent = server.requests().len();
    server.shutdown().await;
    (counts, sent)
}

const REQUEST_FAMILIES: [RateLimitHeaders; 6] = [
    RateLimitHeaders::Dialect,
    RateLimitHeaders::Mistral,
    RateLimitHeaders::Together,
    RateLimitHeaders::Cohere,
    RateLimitHeaders::Cerebras,
    RateLimitHeaders::Ietf,
];

// Real time: no request waits for the mock's window to roll.
#[tokio::test]
async fn every_request_limit_family_stops_the_gate_before_a_429() {
    for family in REQUEST_FAMILIES {
        let config = MockConfig::new()
            .with_requests_per_minute(3)
            .with_rate_limit_headers(family);
        let (counts, sent) = gated_run(config, QuotaTracker::new(), 6).await;
        let expected = Counts {
            completed: 3,
            http_429: 0,
            rejected: 3,
        };
        assert_eq!(counts, expected, "{family:?}");
        assert_eq!(sent, 3, "{family:?}");
    }
}

const TOKEN_FAMILIES: [RateLimitHeaders; 6] = [
    RateLimitHeaders::Dialect,
    RateLimitHeaders::Mistral,
    RateLimitHeaders::MistralBySize,
    RateLimitHeaders::Together,
    RateLimitHeaders::Cerebras,
    RateLimitHeaders::Ietf,
];

#[tokio::test]
async fn every_token_limit_family_stops_the_gate_before_a_429() {
    for family in TOKEN_FAMILIES {
        // 1,000 TPM and 100 tokens a request: ten fit.
        let config = MockConfig::new()
            .with_tokens_per_minute(1000)
            .with_rate_limit_headers(family);
        let tracker = QuotaTracker::builder().predictive(true).build().unwrap();
        let (counts, sent) = gated_run(config, tracker, 15).await;
        let expected = Counts {
            completed: 10,
            http_429: 0,
            rejected: 5,
        };
        assert_eq!(counts, expected, "{family:?}");
        assert_eq!(sent, 10, "{family:?}");
    }
}

#[tokio::test]
async fn openrouter_limits_in_the_429_body_keep_the_key_out_until_their_reset() {
    let config = MockConfig::new()
        .with_requests_per_minute(2)
        .with_rate_limit_headers(RateLimitHeaders::OpenRouterBody);
    let tracker = QuotaTracker::new();
    let (counts, sent) = gated_run(config, tracker.clone(), 6).await;
    // No headers: the first 429 is unavoidable, and the only one.
    assert_eq!(
        counts,
        Counts {
            completed: 2,
            http_429: 1,
            rejected: 3,
        }
    );
    assert_eq!(sent, 3);
    // What the tracker knows came from the body alone.
    let key = &tracker.snapshot(Instant::now())[0];
    assert_eq!(key.limit_requests, Some(2));
    assert_eq!(key.remaining_requests, Some(0));
}

#[tokio::test]
async fn cohere_trial_headers_are_learned_from_a_400() {
    let server = MockServer::start(
        MockConfig::new()
            .with_requests_per_minute(40)
            .with_rate_limit_headers(RateLimitHeaders::Cohere)
            .with_plan(Plan::new().fail_with_status(400)),
    )
    .await
    .unwrap();
    let tracker = QuotaTracker::new();
    let gated = QuotaLayer::new(BackendId::new("mock"), tracker.clone()).layer(client(&server));
    let error = gated.oneshot(request()).await.map(|_| ()).unwrap_err();
    assert!(error.downcast_ref::<ProviderError>().is_some());
    server.shutdown().await;
    let key = &tracker.snapshot(Instant::now())[0];
    assert_eq!(key.limit_requests, Some(40));
    assert_eq!(key.remaining_requests, Some(40));
}

#[tokio::test]
async fn fifty_concurrent_requests_against_five_remaining_send_exactly_five() {
    // Six a minute: one request to learn the headers, then five remain.
    let server = MockServer::start(
        MockConfig::new()
            .with_requests_per_minute(6)
            .with_plan(plan()),
    )
    .await
    .unwrap();
    let tracker = QuotaTracker::new();
    let mut service =
        QuotaLayer::new(BackendId::new("mock"), tracker.clone()).layer(client(&server));
    let first = sequential(&mut service, 1).await;
    assert_eq!(first.completed, 1);

    // All fifty are in flight at once: admitted (or refused) at `call`,
    // then driven together.
    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut service = service.clone();
        ServiceExt::<ChatRequest>::ready(&mut service)
            .await
            .unwrap();
        calls.push(service.call(request()));
    }
    let mut counts = Counts::default();
    for result in futures::future::join_all(calls).await {
        counts.add(result);
    }
    let sent = server.requests().len() - 1;
    server.shutdown().await;
    println!("50 concurrent requests, 5 remaining: {counts:?}, {sent} reached the provider");
    assert_eq!(
        counts,
        Counts {
            completed: 5,
            http_429: 0,
            rejected: 45,
        }
    );
    assert_eq!(sent, 5);
    assert_eq!(tracker.in_flight(&BackendId::new("mock"), MODEL), (0, 0));
}
