//! Three backends through the `Backends` builder: one rate-limited, one
//! stalling, one healthy. Each request shows who served it and what was
//! skipped on the way.
//!
//! `cargo run --example failover`

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate::mock::{MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{openai::OpenAiChat, ChatRequest};
use tower::ServiceExt;

async fn mock(config: MockConfig) -> Result<(MockServer, OpenAiChat), BoxError> {
    let server = MockServer::start(config).await?;
    let client = OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .build()?;
    Ok((server, client))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Two requests a minute, then 429 with rate-limit headers.
    let (_limited, limited_client) = mock(MockConfig::new().with_requests_per_minute(2)).await?;
    // Accepts the request, then sends only keep-alives.
    let (_stalling, stalling_client) = mock(
        MockConfig::new().with_plan(
            Plan::new()
                .with_keep_alive(Duration::from_millis(100), Default::default())
                .stall_after(0),
        ),
    )
    .await?;
    let (_healthy, healthy_client) = mock(MockConfig::new()).await?;

    let tracker = Arc::new(PerformanceTracker::new());
    let router = Backends::new()
        .backend(
            Backend::new("limited", limited_client).first_content_timeout(Duration::from_secs(2)),
        )
        .backend(
            Backend::new("stalling", stalling_client)
                .first_content_timeout(Duration::from_millis(500))
                // Two failures within a minute take it out for 30 s.
                .circuit_breaker_with(|b| b.failures_within(2, Duration::from_secs(60))),
        )
        .backend(
            Backend::new("healthy", healthy_client).first_content_timeout(Duration::from_secs(2)),
        )
        .metrics(tracker.clone())
        .build()?;

    for i in 1..=6 {
        let started = tokio::time::Instant::now();
        let response = router
            .clone()
            .oneshot(ChatRequest::new("gpt-4o-mini").with_user("hello"))
            .await?;
        let report = response
            .extensions()
            .get::<FailoverReport>()
            .cloned()
            .ok_or("the router always reports")?;
        let chunks: Vec<_> = response.into_body().collect().await;
        let ok = chunks.iter().all(Result::is_ok);
        println!(
            "request {i}: served by {} in {} ms ({}), skipped: {}",
            report.served_by,
            started.elapsed().as_millis(),
            if ok { "complete" } else { "failed mid-stream" },
            if report.skipped.is_empty() {
                "nothing".to_owned()
            } else {
                report
                    .skipped
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        );
    }
    println!("\n{}", tracker.snapshot());
    Ok(())
}
