//! Over real HTTP: mock backends of different speeds, measured through the
//! OpenAI client, are ranked fastest first.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate_core::LlmRequest;
use streamgate_metrics::{InputSize, MetricsLayer, PerformanceTracker};
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use tower::{Layer, ServiceExt};

const SAMPLES: u64 = 5;

async fn backend(chunk_delay: Duration) -> MockServer {
    MockServer::start(
        MockConfig::new().with_plan(
            Plan::new()
                .with_output_tokens(12)
                .with_chunk_delay(chunk_delay),
        ),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_ranks_real_backends_by_measured_speed() {
    let tracker = Arc::new(
        PerformanceTracker::builder()
            .min_samples(SAMPLES)
            .build()
            .unwrap(),
    );
    let fast = backend(Duration::from_millis(1)).await;
    let medium = backend(Duration::from_millis(6)).await;
    let slow = backend(Duration::from_millis(15)).await;
    let request = ChatRequest::new("gpt-4o-mini").with_user("Say hi");
    let category = InputSize::from_estimate(request.estimated_tokens());

    for (name, server) in [("slow", &slow), ("fast", &fast), ("medium", &medium)] {
        let client = OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .api_key("test")
            .build()
            .unwrap()
            .with_include_usage(true);
        let service = MetricsLayer::new(name, tracker.clone()).layer(client);
        for _ in 0..SAMPLES {
            let response = service.clone().oneshot(request.clone()).await.unwrap();
            let items: Vec<_> = response.into_body().collect().await;
            assert!(items.iter().all(Result::is_ok));
        }
    }

    let snapshot = tracker.snapshot();
    for name in ["fast", "medium", "slow"] {
        let key = snapshot.key(name, "gpt-4o-mini").unwrap();
        assert_eq!(key.successes, SAMPLES, "{snapshot}");
        // The mock reports usage: 12 output tokens per request.
        assert_eq!(key.usage.output_tokens, 12 * SAMPLES, "{snapshot}");
    }
    let recommendation = tracker.recommend(category).unwrap();
    let order: Vec<&str> = recommendation
        .candidates
        .iter()
        .map(|c| c.backend.as_str())
        .collect();
    assert_eq!(order, ["fast", "medium", "slow"], "{snapshot}");
    assert_eq!(recommendation.backend.as_str(), "fast");
    assert_eq!(recommendation.evidence.samples, SAMPLES);
    assert_eq!(recommendation.evidence.failure_rate, 0.0);
}
