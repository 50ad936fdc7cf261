//! Metrics for streaming LLM calls: a measuring layer, an in-memory
//! performance tracker, and sinks for `metrics` (Prometheus), OpenTelemetry
//! and `tracing`.
//!
//! [`MetricsLayer`] measures each request (time to first chunk and first
//! content, duration, output duration, decode, end-to-end and burst tokens
//! per second, usage, chunks, outcome) and reports it as
//! [`Event`](streamgate_core::Event)s to any
//! [`MetricsSink`](streamgate_core::MetricsSink). [`PerformanceTracker`] is
//! the embedded default sink; [`MetricsFacadeSink`], `OpenTelemetrySink`
//! (feature `opentelemetry`) and [`TracingSink`] export to the ecosystem, and
//! [`Fanout`] sends to several at once. Metric names live in [`names`].
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use streamgate_core::testing::{Script, ScriptedService, TestRequest};
//! use streamgate_metrics::{MetricsLayer, PerformanceTracker};
//! use futures::StreamExt;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let tracker = Arc::new(PerformanceTracker::new());
//! let client = ScriptedService::new(
//!     Script::new().wait(Duration::from_millis(200)).tokens(5, Duration::from_millis(100)),
//! );
//! let service = MetricsLayer::new("openai", tracker.clone()).layer(client);
//!
//! let response = service.oneshot(TestRequest::new("gpt-4o")).await.unwrap();
//! let chunks: Vec<_> = response.into_body().collect().await;
//! assert_eq!(chunks.len(), 5);
//!
//! let snapshot = tracker.snapshot();
//! let key = snapshot.key("openai", "gpt-4o").unwrap();
//! assert_eq!(key.successes, 1);
//! println!("{snapshot}");
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod layer;
pub mod names;
mod sinks;
mod tracker;

pub use layer::{
    MetricsFuture, MetricsLayer, MetricsLayerBuilder, MetricsObserver, MetricsService,
};
#[cfg(feature = "opentelemetry")]
pub use sinks::OpenTelemetrySink;
pub use sinks::{Fanout, MetricsFacadeSink, TracingSink};
pub use tracker::{
    BreakerSnapshot, Candidate, CategorySnapshot, ConfigError, Evidence, InputSize, KeySnapshot,
    NotEnoughSamples, Percentiles, PerformanceTracker, PerformanceTrackerBuilder, QuotaSnapshot,
    Recommendation, SessionSnapshot, TimeoutCounts, TrackerSnapshot, DEFAULT_MIN_SAMPLES,
    INPUT_SIZE_BOUNDARIES,
};
