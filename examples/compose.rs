//! The layers stacked by hand with `tower::ServiceBuilder` around one
//! client: what `Backend` does for you, spelled out. Runs against a mock
//! provider on loopback that sends real rate-limit headers.
//!
//! `cargo run --example compose`

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate::breaker::{Breaker, CircuitBreakerLayer};
use streamgate::failover::TpmLayer;
use streamgate::metrics::{MetricsLayer, PerformanceTracker};
use streamgate::mock::{MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{openai::OpenAiChat, ChatRequest};
use streamgate::quota::{PacingLayer, QuotaLayer, QuotaTracker};
use streamgate::timeout::FirstChunkTimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A provider allowing 20 requests a minute, and saying so in its headers.
    let mock = MockServer::start(
        MockConfig::new().with_requests_per_minute(20).with_plan(
            Plan::new()
                .with_output_tokens(8)
                .with_chunk_delay(Duration::from_millis(5)),
        ),
    )
    .await?;
    let client = OpenAiChat::builder()
        .base_url(format!("{}/v1", mock.url()))
        .build()?;

    let backend = BackendId::new("openai");
    let tracker = Arc::new(PerformanceTracker::new());
    let quota = QuotaTracker::builder().sink(tracker.clone()).build()?;
    let breaker = Breaker::builder(backend.clone())
        .sink(tracker.clone())
        .build()?;

    // Outermost first, the recommended order: every layer reports to one sink.
    let service = ServiceBuilder::new()
        .layer(MetricsLayer::new(backend.clone(), tracker.clone()))
        .layer(
            TpmLayer::builder(backend.clone())
                .max_tokens_per_minute(30_000)
                .sink(tracker.clone())
                .build()?,
        )
        .layer(
            QuotaLayer::builder(backend.clone())
                .tracker(quota.clone())
                .sink(tracker.clone())
                .build()?,
        )
        .layer(
            PacingLayer::builder(backend.clone())
                .requests_per_minute(600)
                .adopt_learned(quota.clone())
                .sink(tracker.clone())
                .build()?,
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .layer(
            FirstChunkTimeoutLayer::builder(Duration::from_secs(10))
                .idle(Duration::from_secs(30))
                .build()?,
        )
        .service(client);

    for i in 1..=3 {
        let request = ChatRequest::new("gpt-4o-mini").with_user(format!("question {i}"));
        let response = service.clone().oneshot(request).await?;
        let mut body = response.into_body();
        let mut text = String::new();
        while let Some(chunk) = body.next().await {
            text.push_str(&chunk?.text);
        }
        println!("answer {i}: {}", text.trim_end());
    }

    println!("\nbreaker: {}", breaker.state());
    for key in quota.snapshot(tokio::time::Instant::now()) {
        println!(
            "quota {} / {}: {}, {} of {} requests left",
            key.backend,
            key.model,
            key.state.as_str(),
            key.remaining_requests.map_or("?".into(), |n| n.to_string()),
            key.limit_requests.map_or("?".into(), |n| n.to_string()),
        );
    }
    println!("\n{}", tracker.snapshot());
    Ok(())
}
