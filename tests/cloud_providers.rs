//! The cloud clients behind `Backend` and the failover router, over real
//! HTTP against the mock server: they fail over and serve like the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use streamgate::mock::{expected_text, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{
    auth::BearerToken,
    bedrock::{Bedrock, Credentials},
    gemini::Gemini,
    openai::AzureOpenAi,
    ChatChunk, ChatRequest,
};
use tower::ServiceExt;

fn bedrock(server: &MockServer) -> Bedrock {
    Bedrock::builder()
        .region("us-east-1")
        .endpoint_url(server.url())
        .credentials(Credentials::new("AKID", "secret", None, None, "test"))
        .build()
        .unwrap()
}

async fn served_text(router: &Failover<ChatRequest, ChatChunk>) -> (FailoverReport, String) {
    let request = ChatRequest::new("anthropic.claude-3-haiku-20240307-v1:0").with_user("hello");
    let response = router.clone().oneshot(request).await.unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .cloned()
        .unwrap();
    let mut text = String::new();
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        text.push_str(&chunk.unwrap().text);
    }
    (report, text)
}

#[tokio::test]
async fn a_throttled_bedrock_fails_over_to_azure_then_vertex_serves_when_azure_is_down() {
    let throttled = MockServer::start_with_plan(
        Plan::new()
            .with_output_tokens(3)
            .error_after(0)
            .with_error_body(
                json!({"exceptionType": "throttlingException", "message": "slow down"}),
            ),
    )
    .await
    .unwrap();
    let azure = MockServer::start_with_plan(Plan::new().with_output_tokens(4))
        .await
        .unwrap();
    let vertex = MockServer::start_with_plan(Plan::new().with_output_tokens(5))
        .await
        .unwrap();
    let router = Backends::new()
        .backend(
            Backend::new("bedrock", bedrock(&throttled))
                .first_content_timeout(Duration::from_secs(10)),
        )
        .backend(
            Backend::new(
                "azure",
                AzureOpenAi::builder(azure.url())
                    .deployment("gpt-4o")
                    .api_key("k")
                    .build()
                    .unwrap(),
            )
            .first_content_timeout(Duration::from_secs(10)),
        )
        .backend(
            Backend::new(
                "vertex",
                Gemini::vertex("p", "us-central1")
                    .base_url(vertex.url())
                    .token_provider(|| async { Ok(BearerToken::new("t")) })
                    .build()
                    .unwrap(),
            )
            .map_request(|r: ChatRequest| r.with_model("gemini-2.5-flash"))
            .first_content_timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();

    // The exception came before the first token: the caller never sees it.
    let (report, text) = served_text(&router).await;
    assert_eq!(report.served_by.as_str(), "azure");
    assert_eq!(report.skipped[0].class, ErrorClass::RateLimited);
    assert_eq!(text, expected_text(4));

    azure.set_plan(Plan::new().fail_with_status(503));
    let (report, text) = served_text(&router).await;
    assert_eq!(report.served_by.as_str(), "vertex");
    assert_eq!(text, expected_text(5));
    assert_eq!(vertex.served(), 1);
}

#[tokio::test]
async fn bedrock_serves_through_a_backend_with_usage_reported_to_the_tracker() {
    let server =
        MockServer::start_with_plan(Plan::new().with_output_tokens(6).with_input_tokens(20))
            .await
            .unwrap();
    let tracker = std::sync::Arc::new(PerformanceTracker::new());
    let router = Backends::new()
        .backend(
            Backend::new("bedrock", bedrock(&server))
                .first_content_timeout(Duration::from_secs(10)),
        )
        .metrics(tracker.clone())
        .build()
        .unwrap();
    let (report, text) = served_text(&router).await;
    assert_eq!(report.served_by.as_str(), "bedrock");
    assert_eq!(text, expected_text(6));
    let snapshot = tracker.snapshot();
    let key = snapshot
        .key("bedrock", "anthropic.claude-3-haiku-20240307-v1:0")
        .unwrap();
    assert_eq!(key.successes, 1);
    assert_eq!(key.usage.input_tokens, 20);
    assert_eq!(key.usage.output_tokens, 6);
}
