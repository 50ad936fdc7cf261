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
//! The layer is a [`GuardLayer`](streamgate_core::guard::GuardLayer) of
//! [`Measure`], a guard that never refuses (so readiness stays the inner
//! service's); [`MetricsLayer::into_guard`] hands it to a guard layer that
//! fuses it with gates, as `Backend` does with TPM and quota.
//!
//! # Rejections
//!
//! Every sink follows one rule: a request a gate refused (an open breaker,
//! an exhausted quota, a TPM budget, a slow backend) is not an operation,
//! because it never reached the provider. It is counted once, from the
//! gate's own [`Event::Rejected`](streamgate_core::Event::Rejected), with its
//! reason: in the [`PerformanceTracker`]'s rejection counts (per key and for
//! the session), in the [`names::REJECTIONS`] counter (label
//! [`names::REJECT_REASON`]) of [`MetricsFacadeSink`] and
//! `OpenTelemetrySink`, and as one "request rejected" event of
//! [`TracingSink`]. A measuring layer above the gate also ends that request,
//! as [`Outcome::Failed`](streamgate_core::Outcome::Failed)`(`[`ErrorClass::Rejected`](streamgate_core::ErrorClass::Rejected)`)`:
//! the sinks leave such a record out of requests, failures, durations,
//! tokens and time to first chunk (the tracker only ends its in-flight
//! count), so no `gen_ai.*` metric has `error.type = rejected`. Give the
//! gates the same sink as the measuring layer, or their refusals are not
//! counted at all.
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
    Measure, MetricsFuture, MetricsLayer, MetricsLayerBuilder, MetricsObserver, MetricsService,
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
