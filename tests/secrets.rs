//! A known API key, echoed back by a provider's 401 and put in a base URL,
//! never appears in anything the library renders: errors (`Display`, `Debug`,
//! each cause, the body excerpt), metrics events, builder and client
//! `Debug`, `InvalidBaseUrl`, or the mock's request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use streamgate::core::{BoxError, Event, MetricsSink, ProviderError};
use streamgate::mock::{MockServer, Plan, Provider};
use streamgate::prelude::*;
use streamgate::providers::{
    anthropic::Anthropic, gemini::Gemini, ollama::Ollama, openai::OpenAiChat, ChatChunk,
    ChatRequest,
};
use tower::ServiceExt;

const KEY: &str = "sk-e2e-secret-5f3a9c77";

/// Every event, rendered with `Debug` as a log line would be.
#[derive(Default)]
struct Rendered(Mutex<Vec<String>>);

impl MetricsSink for Rendered {
    fn record(&self, event: &Event<'_>) {
        self.0.lock().unwrap().push(format!("{event:?}"));
    }
}

/// A 401 whose body echoes the key in every way providers (or proxies) do.
fn echoing_401() -> Plan {
    Plan::new().fail_with_status(401).with_error_body(json!({
        "error": {
            "message": format!("Incorrect API key provided: {KEY}. Bearer {KEY}"),
            "type": "invalid_request_error",
            "code": KEY,
        },
        "request": {"headers": {"authorization": format!("Bearer {KEY}"), "x-api-key": KEY}},
        "url": format!("https://api.example/v1?alt=sse&key={KEY}"),
    }))
}

fn client(provider: Provider, server: &MockServer) -> BoxStreamingService<ChatRequest, ChatChunk> {
    let url = server.url();
    match provider {
        Provider::OpenAi => boxed(
            OpenAiChat::builder()
                .base_url(format!("{url}/v1"))
                .api_key(KEY)
                .build()
                .unwrap(),
        ),
        Provider::Anthropic => boxed(
            Anthropic::builder()
                .base_url(format!("{url}/v1"))
                .api_key(KEY)
                .build()
                .unwrap(),
        ),
        Provider::Gemini => boxed(
            Gemini::builder()
                .base_url(format!("{url}/v1beta"))
                .api_key(KEY)
                .build()
                .unwrap(),
        ),
        _ => boxed(
            Ollama::builder()
                .base_url(url)
                .api_key(KEY)
                .build()
                .unwrap(),
        ),
    }
}

/// Every rendering of an error: itself and each cause, shown and debugged,
/// and the body excerpt of any provider error in the chain.
fn renderings(error: &BoxError) -> Vec<String> {
    let mut out = vec![format!("{error}"), format!("{error:?}")];
    let mut current: Option<&(dyn Error + 'static)> = Some(&**error);
    while let Some(err) = current {
        out.push(err.to_string());
        out.push(format!("{err:?}"));
        if let Some(provider) = err.downcast_ref::<ProviderError>() {
            out.push(provider.body_excerpt().unwrap_or_default().to_owned());
            out.push(provider.message().to_owned());
        }
        current = err.source();
    }
    out
}

#[tokio::test]
async fn an_echoed_key_never_reaches_errors_events_or_the_mock_log() {
    for provider in [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Ollama,
    ] {
        let server = MockServer::start_with_plan(echoing_401()).await.unwrap();
        let events = Arc::new(Rendered::default());
        let router = Backends::new()
            .backend(
                Backend::new("only", client(provider, &server))
                    .first_content_timeout(Duration::from_secs(10)),
            )
            .metrics(events.clone())
            .build()
            .unwrap();
        let error = match router
            .oneshot(ChatRequest::new("mock-model").with_user("hello"))
            .await
        {
            Ok(_) => panic!("{provider:?}: a 401 must fail"),
            Err(error) => error,
        };
        let mut seen = renderings(&error);
        assert!(
            seen.iter().any(|text| text.contains("<redacted>")),
            "{provider:?}: {seen:?}"
        );
        seen.extend(events.0.lock().unwrap().iter().cloned());
        assert!(events.0.lock().unwrap().len() > 1, "{provider:?}: events");
        seen.push(format!("{:?}", server.requests()));
        assert_eq!(server.served(), 1);
        for text in &seen {
            assert!(!text.contains(KEY), "{provider:?} leaked the key: {text}");
        }
        server.shutdown().await;
    }
}

#[test]
fn a_key_in_a_base_url_never_reaches_builder_debug_or_config_errors() {
    let builder = OpenAiChat::builder()
        .base_url(format!("https://proxy.example/v1?key={KEY}"))
        .api_key(KEY);
    let mut seen = vec![format!("{builder:?}")];
    let client = builder.build().unwrap();
    seen.push(format!("{client:?}"));
    let backend = Backend::<_, ChatRequest>::new("b", client);
    seen.push(format!("{:?}", backend.id()));
    let invalid = Gemini::builder()
        .base_url(format!("ftp://{KEY}@proxy.example/?key={KEY}"))
        .api_key(KEY)
        .build()
        .err()
        .unwrap();
    seen.push(format!("{invalid} {invalid:?}"));
    for text in &seen {
        assert!(!text.contains(KEY), "leaked the key: {text}");
    }
}
