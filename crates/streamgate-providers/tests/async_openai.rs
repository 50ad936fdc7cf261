//! The async-openai bridge end-to-end over real HTTP against the mock provider.
#![cfg(feature = "async-openai")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_openai::{
    config::OpenAIConfig,
    middleware::ReqwestService,
    types::chat::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs},
    Client,
};
use futures::StreamExt;
use streamgate_core::{
    boxed, classify, BoxError, BoxStreamingService, Chunk, ErrorClass, LlmRequest, ProviderError,
    StreamTimeout, TimeoutKind, Usage,
};
use streamgate_mock::{expected_text, MockConfig, MockServer, Plan};
use streamgate_providers::{
    async_openai::{AsyncOpenAiChat, AsyncOpenAiRequest},
    ChatChunk, ChatRequest,
};
use streamgate_timeout::FirstChunkTimeoutLayer;
use tower::{Layer, ServiceExt};

const MODEL: &str = "test-model";

fn config(server: &MockServer) -> OpenAIConfig {
    OpenAIConfig::new()
        .with_api_base(format!("{}/v1", server.url()))
        .with_api_key("secret-key-9")
}

/// The bridge owning its transport: real status and headers, no retries.
fn owned(server: &MockServer) -> AsyncOpenAiChat<OpenAIConfig> {
    AsyncOpenAiChat::with_config(config(server)).unwrap()
}

/// A user's own client, wrapped as it is (here without async-openai's
/// retry layer, so a 429 is not retried behind the test's back).
fn wrapped(server: &MockServer) -> AsyncOpenAiChat<OpenAIConfig> {
    let client = Client::with_config(config(server))
        .with_http_service(ReqwestService::new(reqwest::Client::new()));
    AsyncOpenAiChat::new(client)
}

fn openai_request() -> AsyncOpenAiRequest {
    CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hello")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
        .into()
}

async fn start(plan: Plan) -> MockServer {
    MockServer::start_with_plan(plan).await.unwrap()
}

fn provider_error(error: &BoxError) -> &ProviderError {
    error
        .downcast_ref::<ProviderError>()
        .unwrap_or_else(|| panic!("not a provider error: {error:?}"))
}

/// Collects the body: the chunks before the first error, and that error.
async fn drain(
    service: BoxStreamingService<AsyncOpenAiRequest, ChatChunk>,
) -> (Vec<ChatChunk>, Option<BoxError>) {
    let response = service.oneshot(openai_request()).await.unwrap();
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(error) => {
                assert!(body.next().await.is_none(), "nothing after an error");
                return (chunks, Some(error));
            }
        }
    }
    (chunks, None)
}

fn text(chunks: &[ChatChunk]) -> String {
    chunks.iter().map(|c| c.text.as_str()).collect()
}

fn total_usage(chunks: &[ChatChunk]) -> Option<Usage> {
    let mut usage = None;
    for chunk in chunks {
        Usage::merge_option(&mut usage, chunk.usage());
    }
    usage
}

#[tokio::test]
async fn async_openai_request_streams_the_whole_answer_with_usage() {
    for owns_transport in [true, false] {
        let server = start(Plan::new().with_output_tokens(5).with_input_tokens(11)).await;
        let service = if owns_transport {
            owned(&server)
        } else {
            wrapped(&server)
        };
        let (chunks, error) = drain(boxed(service)).await;
        assert!(error.is_none(), "{owns_transport}: {error:?}");
        assert_eq!(text(&chunks), expected_text(5));
        // The role-only first chunk is held back from content.
        assert!(!chunks[0].is_content());
        assert_eq!(chunks[0].model.as_deref(), Some(MODEL));
        assert!(chunks[1].is_content());
        let usage = total_usage(&chunks).expect("usage chunk");
        assert_eq!((usage.input_tokens, usage.output_tokens), (11, 5));
        assert!(chunks
            .iter()
            .any(|c| c.finish_reason.as_deref() == Some("stop")));
        let log = server.wait_for_end(0).await;
        assert_eq!(log.request.body["stream"], true);
        assert_eq!(log.request.body["stream_options"]["include_usage"], true);
        assert!(!log.client_disconnected());
    }
}

#[tokio::test]
async fn owned_transport_keeps_status_and_rate_limit_headers() {
    let server = MockServer::start(
        MockConfig::new()
            .with_requests_per_minute(100)
            .with_plan(Plan::new().with_output_tokens(2)),
    )
    .await
    .unwrap();
    let response = owned(&server).oneshot(openai_request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .contains_key("x-ratelimit-remaining-requests"));
    let wrapped = wrapped(&server).oneshot(openai_request()).await.unwrap();
    // async-openai exposes no headers of its own client's streams.
    assert!(wrapped.headers().is_empty());
}

#[tokio::test]
async fn chat_request_goes_through_async_openai_with_the_same_estimate() {
    let server = start(Plan::new().with_output_tokens(3)).await;
    let request = ChatRequest::new(MODEL)
        .with_system("be brief")
        .with_user("hello")
        .with_max_tokens(50)
        .with_extra("top_p", serde_json::json!(0.5));
    let response = owned(&server).oneshot(request.clone()).await.unwrap();
    let chunks: Vec<ChatChunk> = response
        .into_body()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(text(&chunks), expected_text(3));
    let log = server.wait_for_end(0).await;
    assert_eq!(log.request.body["messages"][0]["role"], "system");
    assert_eq!(log.request.body["max_tokens"], 50);
    assert_eq!(log.request.body["top_p"], 0.5);

    let openai: AsyncOpenAiRequest = serde_json::from_value::<
        async_openai::types::chat::CreateChatCompletionRequest,
    >(log.request.body.clone())
    .unwrap()
    .into();
    assert_eq!(openai.estimated_tokens(), request.estimated_tokens());
    assert_eq!(openai.model(), MODEL);
}

#[tokio::test]
async fn in_band_error_becomes_a_provider_error_item_after_the_content() {
    let server = start(Plan::new().with_output_tokens(5).error_after(2)).await;
    let (chunks, error) = drain(boxed(owned(&server))).await;
    assert_eq!(text(&chunks), expected_text(2));
    let error = error.expect("an error item");
    let error = provider_error(&error);
    assert!(error.is_in_band());
    assert_eq!(error.class(), ErrorClass::Server);
    assert_eq!(error.code(), Some("server_error"));
    // Dropping the stream after the error closes the connection.
    server.wait_until(|logs| logs[0].is_over()).await;
}

#[tokio::test]
async fn status_429_is_rate_limited() {
    let plan = Plan::new()
        .fail_with_status(429)
        .with_retry_after(Duration::from_secs(3));
    let server = start(plan).await;
    let error = owned(&server)
        .oneshot(openai_request())
        .await
        .err()
        .unwrap();
    let error = provider_error(&error);
    assert_eq!(error.class(), ErrorClass::RateLimited);
    assert_eq!(error.status().map(|s| s.as_u16()), Some(429));
    assert_eq!(error.code(), Some("rate_limit_exceeded"));
    // The owned transport keeps the headers, so Retry-After is known.
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert!(!error.headers().is_empty());
    assert_eq!(server.served(), 1, "no retries behind the layers");

    let error = wrapped(&server)
        .oneshot(openai_request())
        .await
        .err()
        .unwrap();
    let error = provider_error(&error);
    assert_eq!(error.class(), ErrorClass::RateLimited);
    assert_eq!(
        error.retry_after(),
        None,
        "no headers through a plain client"
    );
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("secret-key"), "no key in {shown}");
}

#[tokio::test]
async fn server_error_status_keeps_the_raw_body_and_class() {
    let server = start(Plan::new().fail_with_status(500)).await;
    let error = wrapped(&server)
        .oneshot(openai_request())
        .await
        .err()
        .unwrap();
    let error = provider_error(&error);
    assert_eq!(error.class(), ErrorClass::Server);
    assert_eq!(error.status().map(|s| s.as_u16()), Some(500));
    assert!(error
        .body_excerpt()
        .is_some_and(|b| b.contains("server_error")));
}

#[tokio::test]
async fn stream_that_ends_before_a_finish_reason_is_truncated() {
    let server = start(Plan::new().with_output_tokens(5).truncate_after(3)).await;
    let (chunks, error) = drain(boxed(owned(&server))).await;
    assert_eq!(text(&chunks), expected_text(3));
    let error = error.expect("truncated, not a clean end");
    assert_eq!(classify(&*error), ErrorClass::Truncated);
}

#[tokio::test]
async fn abrupt_disconnect_is_a_retryable_network_error_item() {
    let server = start(Plan::new().with_output_tokens(5).disconnect_after(2)).await;
    let (chunks, error) = drain(boxed(owned(&server))).await;
    assert_eq!(text(&chunks), expected_text(2));
    let error = error.expect("an error item");
    let class = classify(&*error);
    assert!(
        matches!(class, ErrorClass::Network | ErrorClass::Truncated),
        "{class} {error}"
    );
}

#[tokio::test]
async fn stall_before_content_times_out_in_the_timeout_layer_and_disconnects() {
    let server = start(Plan::new().stall_after(0)).await;
    let layer = FirstChunkTimeoutLayer::new(Duration::from_millis(50)).unwrap();
    let Err(error) = layer.layer(owned(&server)).oneshot(openai_request()).await else {
        panic!("no timeout");
    };
    let timeout = error
        .downcast_ref::<StreamTimeout>()
        .unwrap_or_else(|| panic!("{error}"));
    assert_eq!(timeout.kind, TimeoutKind::FirstContent);
    let log = server.wait_for_disconnect(0).await;
    assert!(log.client_disconnected());
}

#[tokio::test]
async fn stall_after_content_times_out_idle_and_disconnects() {
    let server = start(Plan::new().with_output_tokens(5).stall_after(1)).await;
    let layer = FirstChunkTimeoutLayer::builder(Duration::from_secs(5))
        .idle(Duration::from_millis(50))
        .build()
        .unwrap();
    let (chunks, error) = drain(boxed(layer.layer(wrapped(&server)))).await;
    assert_eq!(text(&chunks), expected_text(1));
    let error = error.expect("a timeout");
    let timeout = error
        .downcast_ref::<StreamTimeout>()
        .unwrap_or_else(|| panic!("{error}"));
    assert_eq!(timeout.kind, TimeoutKind::Idle);
    assert!(server.wait_for_disconnect(0).await.client_disconnected());
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = OpenAIConfig::new().with_api_base(format!("http://127.0.0.1:{port}/v1"));
    let service = AsyncOpenAiChat::with_config(config).unwrap();
    let error = service.oneshot(openai_request()).await.err().unwrap();
    assert_eq!(classify(&*error), ErrorClass::Network);
}

#[test]
fn debug_output_hides_the_key() {
    let config = OpenAIConfig::new().with_api_key("secret-key-7");
    let shown = format!("{:?}", AsyncOpenAiChat::with_config(config).unwrap());
    assert!(!shown.contains("secret-key"), "{shown}");
    assert!(shown.contains("api.openai.com"), "{shown}");
}

/// Every rendering of an error: itself and each cause, shown and debugged,
/// and the message, code and body excerpt of any provider error.
fn renderings(error: &BoxError) -> Vec<String> {
    let mut out = vec![format!("{error}"), format!("{error:?}")];
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
    while let Some(err) = current {
        out.push(err.to_string());
        out.push(format!("{err:?}"));
        if let Some(provider) = err.downcast_ref::<ProviderError>() {
            out.push(provider.message().to_owned());
            out.push(provider.code().unwrap_or_default().to_owned());
            out.push(provider.body_excerpt().unwrap_or_default().to_owned());
        }
        current = err.source();
    }
    out
}

#[tokio::test]
async fn a_key_echoed_in_an_error_body_never_reaches_an_error() {
    // Not a pattern the redactor knows by itself: only the bridge knows it.
    const KEY: &str = "secret-key-9";
    let echo = serde_json::json!({
        "error": {
            "message": format!("Incorrect API key provided: {KEY}"),
            "type": "invalid_request_error",
            "code": KEY,
        },
        "echo": format!("{KEY}"),
    });
    // 401: async-openai reads the JSON; 502: it keeps the raw body.
    for status in [401, 502] {
        for owns_transport in [true, false] {
            let server = start(
                Plan::new()
                    .fail_with_status(status)
                    .with_error_body(echo.clone()),
            )
            .await;
            let service = if owns_transport {
                owned(&server)
            } else {
                wrapped(&server)
            };
            let error = service.oneshot(openai_request()).await.unwrap_err();
            let seen = renderings(&error);
            assert!(
                seen.iter().any(|text| text.contains("<redacted>")),
                "{status} {owns_transport}: {seen:?}"
            );
            for text in &seen {
                assert!(
                    !text.contains(KEY),
                    "{status} {owns_transport}: leaked the key: {text}"
                );
            }
        }
    }
}
