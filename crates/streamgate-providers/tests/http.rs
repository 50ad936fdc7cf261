//! Every adapter end-to-end over real HTTP against the mock provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use streamgate_core::{
    boxed, classify, BoxError, BoxStreamingService, Chunk, ErrorClass, ProviderError,
    StreamTimeout, TimeoutKind, Usage,
};
use streamgate_mock::{expected_text, MockServer, Plan, Provider};
use streamgate_providers::{
    anthropic::Anthropic, gemini::Gemini, ollama::Ollama, openai::OpenAiChat, ChatChunk,
    ChatRequest,
};
use streamgate_timeout::FirstChunkTimeoutLayer;
use tower::{Layer, ServiceExt};

const PROVIDERS: [Provider; 4] = [
    Provider::OpenAi,
    Provider::Anthropic,
    Provider::Gemini,
    Provider::Ollama,
];
const MODEL: &str = "test-model";

fn client(provider: Provider, server: &MockServer) -> BoxStreamingService<ChatRequest, ChatChunk> {
    let url = server.url();
    match provider {
        Provider::OpenAi => boxed(
            OpenAiChat::builder()
                .base_url(format!("{url}/v1"))
                .api_key("secret-key-1")
                .build()
                .unwrap(),
        ),
        Provider::Anthropic => boxed(
            Anthropic::builder()
                .base_url(format!("{url}/v1"))
                .api_key("secret-key-2")
                .build()
                .unwrap(),
        ),
        Provider::Gemini => boxed(
            Gemini::builder()
                .base_url(format!("{url}/v1beta"))
                .api_key("secret-key-3")
                .build()
                .unwrap(),
        ),
        Provider::Ollama => boxed(Ollama::builder().base_url(url).build().unwrap()),
        other => panic!("no adapter for {other:?}"),
    }
}

fn request() -> ChatRequest {
    ChatRequest::new(MODEL).with_user("hello")
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
    service: BoxStreamingService<ChatRequest, ChatChunk>,
) -> (Vec<ChatChunk>, Option<BoxError>) {
    let response = service.oneshot(request()).await.unwrap();
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

#[tokio::test]
async fn each_adapter_streams_the_whole_answer_with_usage() {
    for provider in PROVIDERS {
        let server = start(Plan::new().with_output_tokens(5).with_input_tokens(11)).await;
        let (chunks, error) = drain(client(provider, &server)).await;
        assert!(error.is_none(), "{provider:?}: {error:?}");
        assert_eq!(text(&chunks), expected_text(5), "{provider:?}");
        let first_content = chunks.iter().position(Chunk::is_content).unwrap();
        assert!(
            chunks[..first_content].iter().all(|c| !c.is_content()),
            "{provider:?}"
        );
        let mut usage = None;
        for chunk in &chunks {
            Usage::merge_option(&mut usage, chunk.usage());
        }
        let usage = usage.unwrap_or_else(|| panic!("{provider:?}: no usage"));
        assert_eq!(usage.input_tokens, 11, "{provider:?}");
        assert_eq!(usage.output_tokens, 5, "{provider:?}");
        // The request reached the mock with our headers, key included.
        let log = server.wait_for_end(0).await;
        assert_eq!(log.request.model, MODEL, "{provider:?}");
        assert!(!log.client_disconnected(), "{provider:?}");
    }
}

#[tokio::test]
async fn http_error_status_keeps_status_headers_body_and_class() {
    let cases = [
        (Provider::OpenAi, 429, ErrorClass::RateLimited),
        (Provider::OpenAi, 500, ErrorClass::Server),
        (Provider::Anthropic, 529, ErrorClass::Overloaded),
        (Provider::Anthropic, 429, ErrorClass::RateLimited),
        (Provider::Gemini, 503, ErrorClass::Overloaded),
        (Provider::Gemini, 429, ErrorClass::RateLimited),
        (Provider::Ollama, 404, ErrorClass::Client),
        (Provider::Ollama, 429, ErrorClass::RateLimited),
        (Provider::Ollama, 503, ErrorClass::Overloaded),
        (Provider::Ollama, 500, ErrorClass::Server),
    ];
    for (provider, status, class) in cases {
        let server = start(
            Plan::new()
                .fail_with_status(status)
                .with_retry_after(Duration::from_secs(3)),
        )
        .await;
        let error = client(provider, &server)
            .oneshot(request())
            .await
            .err()
            .unwrap_or_else(|| panic!("{provider:?} {status}: no error"));
        let error = provider_error(&error);
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(error.class(), class, "{provider:?} {status}: {error}");
        assert!(error.body_excerpt().is_some_and(|b| !b.is_empty()));
        assert!(!error.headers().is_empty());
        // Gemini says when to retry only in a 429's RetryInfo, never in headers.
        if status == 429 || provider != Provider::Gemini {
            assert_eq!(
                error.retry_after(),
                Some(Duration::from_secs(3)),
                "{provider:?} {status}"
            );
        }
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("secret-key"), "no key in {shown}");
    }
}

#[tokio::test]
async fn every_providers_overload_response_is_overloaded_over_http() {
    let openai_overloaded = serde_json::json!({"error": {
        "message": "The server is overloaded or not ready yet.",
        "type": "server_error", "param": null, "code": null
    }});
    let cases = [
        // The mock's own bodies: OpenAI's says `server_error`.
        (Provider::OpenAi, 503, None),
        (Provider::Anthropic, 529, None),
        (Provider::Gemini, 503, None),
        (Provider::Ollama, 503, None),
        (Provider::OpenAi, 503, Some(openai_overloaded)),
    ];
    for (provider, status, body) in cases {
        let mut plan = Plan::new().fail_with_status(status);
        if let Some(body) = body {
            plan = plan.with_error_body(body);
        }
        let server = start(plan).await;
        let error = client(provider, &server)
            .oneshot(request())
            .await
            .err()
            .unwrap_or_else(|| panic!("{provider:?} {status}: no error"));
        let error = provider_error(&error);
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(
            error.class(),
            ErrorClass::Overloaded,
            "{provider:?} {status}: {error}"
        );
    }
    // Anthropic's overload inside a 200 stream.
    let server = start(Plan::new().error_after(2)).await;
    let (chunks, error) = drain(client(Provider::Anthropic, &server)).await;
    assert!(!chunks.is_empty());
    let error = error.expect("an in-band error");
    assert_eq!(classify(&*error), ErrorClass::Overloaded, "{error}");
}

#[tokio::test]
async fn in_band_error_after_content_is_an_error_item_after_the_content() {
    for provider in PROVIDERS {
        let server = start(Plan::new().with_output_tokens(5).error_after(2)).await;
        let (chunks, error) = drain(client(provider, &server)).await;
        assert_eq!(text(&chunks), expected_text(2), "{provider:?}");
        let error = error.unwrap_or_else(|| panic!("{provider:?}: clean end"));
        assert!(provider_error(&error).is_in_band(), "{provider:?}");
        assert!(classify(&*error).is_retryable(), "{provider:?}: {error}");
    }
}

#[tokio::test]
async fn stream_without_terminal_marker_ends_in_truncated_not_success() {
    for provider in PROVIDERS {
        let server = start(Plan::new().with_output_tokens(5).truncate_after(3)).await;
        let (chunks, error) = drain(client(provider, &server)).await;
        assert_eq!(text(&chunks), expected_text(3), "{provider:?}");
        let error = error.unwrap_or_else(|| panic!("{provider:?}: clean end"));
        assert_eq!(
            classify(&*error),
            ErrorClass::Truncated,
            "{provider:?}: {error}"
        );
    }
}

#[tokio::test]
async fn abrupt_disconnect_is_a_network_error_item() {
    for provider in PROVIDERS {
        let server = start(Plan::new().with_output_tokens(5).disconnect_after(2)).await;
        let (chunks, error) = drain(client(provider, &server)).await;
        assert_eq!(text(&chunks), expected_text(2), "{provider:?}");
        let error = error.unwrap_or_else(|| panic!("{provider:?}: clean end"));
        let class = classify(&*error);
        assert!(
            matches!(class, ErrorClass::Network | ErrorClass::Truncated),
            "{provider:?}: {class} {error}"
        );
        assert!(class.is_retryable());
    }
}

#[tokio::test]
async fn stall_after_content_times_out_in_the_timeout_layer_and_closes_the_connection() {
    for provider in PROVIDERS {
        let server = start(Plan::new().with_output_tokens(5).stall_after(1)).await;
        let layer = FirstChunkTimeoutLayer::builder(Duration::from_secs(5))
            .idle(Duration::from_millis(50))
            .build()
            .unwrap();
        let service = boxed(layer.layer(client(provider, &server)));
        let (chunks, error) = drain(service).await;
        assert_eq!(text(&chunks), expected_text(1), "{provider:?}");
        let error = error.unwrap_or_else(|| panic!("{provider:?}: clean end"));
        let timeout = error
            .downcast_ref::<StreamTimeout>()
            .unwrap_or_else(|| panic!("{provider:?}: {error}"));
        assert_eq!(timeout.kind, TimeoutKind::Idle);
        let log = server.wait_for_disconnect(0).await;
        assert!(log.client_disconnected(), "{provider:?}");
    }
}

#[tokio::test]
async fn stall_before_content_fails_the_response_future_in_the_timeout_layer() {
    for provider in PROVIDERS {
        let server = start(Plan::new().stall_after(0)).await;
        let layer = FirstChunkTimeoutLayer::new(Duration::from_millis(50)).unwrap();
        let error = layer
            .layer(client(provider, &server))
            .oneshot(request())
            .await
            .err()
            .unwrap_or_else(|| panic!("{provider:?}: no timeout"));
        let timeout = error
            .downcast_ref::<StreamTimeout>()
            .unwrap_or_else(|| panic!("{provider:?}: {error}"));
        assert_eq!(timeout.kind, TimeoutKind::FirstContent);
        server.wait_for_disconnect(0).await;
    }
}

#[tokio::test]
async fn connection_refused_is_a_network_error_with_its_source() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let service = OpenAiChat::builder()
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .build()
        .unwrap();
    let error = service.oneshot(request()).await.err().unwrap();
    assert_eq!(classify(&*error), ErrorClass::Network);
    assert!(std::error::Error::source(provider_error(&error)).is_some());
}

#[tokio::test]
async fn ollama_sends_its_native_chat_body_and_the_bearer_for_a_proxy() {
    let server = start(Plan::new().with_output_tokens(2)).await;
    let client = Ollama::builder()
        .base_url(server.url())
        .bearer("proxy-token-1")
        .build()
        .unwrap();
    let request = request().with_max_tokens(7).with_temperature(0.25);
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "not SSE"
    );
    let chunks: Vec<ChatChunk> = response
        .into_body()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(text(&chunks), expected_text(2));
    let done = chunks.last().unwrap();
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));
    let log = server.wait_for_end(0).await;
    assert_eq!(log.request.path, "/api/chat");
    assert_eq!(log.request.headers["authorization"], "Bearer proxy-token-1");
    assert_eq!(log.request.headers["accept"], "application/x-ndjson");
    let body = &log.request.body;
    assert_eq!(body["stream"], serde_json::json!(true));
    assert_eq!(body["options"]["num_predict"], serde_json::json!(7));
    assert_eq!(body["options"]["temperature"], serde_json::json!(0.25));
    assert_eq!(body["messages"][0]["content"], serde_json::json!("hello"));
}

#[tokio::test]
async fn ollama_missing_model_is_a_client_error_with_the_servers_message() {
    let server = start(Plan::new().fail_with_status(404)).await;
    let error = client(Provider::Ollama, &server)
        .oneshot(request())
        .await
        .err()
        .unwrap();
    let error = provider_error(&error);
    assert_eq!(error.class(), ErrorClass::Client);
    assert!(!error.class().is_retryable());
    assert_eq!(
        error.message(),
        format!("model \"{MODEL}\" not found, try pulling it first")
    );
    assert!(!error.is_in_band());
}
