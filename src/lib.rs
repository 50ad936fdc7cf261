//! streamgate: tower middleware that makes streaming LLM clients dependable.
//!
//! Wrap any streaming provider client and get, per backend, a first-content
//! timeout that really cancels, a circuit breaker that judges the whole
//! stream, quota awareness from the providers' rate-limit headers, pacing,
//! TPM gates, metrics, and a failover router over several backends.
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use streamgate::prelude::*;
//! use streamgate::mock::{MockServer, Plan};
//! use streamgate::providers::{openai::OpenAiChat, ChatRequest};
//! use futures::StreamExt;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let mock = MockServer::start_with_plan(Plan::new().with_output_tokens(5)).await?;
//! let client = OpenAiChat::builder().base_url(format!("{}/v1", mock.url())).build()?;
//!
//! let tracker = Arc::new(PerformanceTracker::new());
//! let service = Backend::new("openai", client)
//!     .first_content_timeout(Duration::from_secs(20))
//!     .metrics(tracker.clone())
//!     .build()?;
//!
//! let response = service.oneshot(ChatRequest::new("gpt-4o-mini").with_user("hi")).await?;
//! let chunks: Vec<_> = response.into_body().collect().await;
//! assert!(chunks.iter().all(Result::is_ok));
//! assert_eq!(tracker.snapshot().session.output_tokens, 5);
//! # Ok(())
//! # }
//! ```
//!
//! # What is here
//!
//! - [`Backend`] stacks one backend's layers in the recommended order
//!   (metrics, TPM, quota, pacing, breaker, timeout; see its docs for the
//!   defaults) and returns a boxed service; [`Backends`] puts several behind
//!   a failover router, sharing a sink and a scoreboard. Both are
//!   plain tower: `ServiceBuilder` with the layers of the modules below
//!   works the same way.
//! - Each concern is a module re-exporting its crate, behind a feature of
//!   the same name (all on by default unless noted):
//!   - [`core`]: the shared contract: chunks, requests, usage, errors and
//!     [`classify`](core::classify), metrics events (always present);
//!   - [`timeout`]: first-content, idle and total deadlines;
//!   - [`breaker`]: the circuit breaker;
//!   - [`quota`]: rate-limit headers, the quota gate and pacing;
//!   - [`failover`]: the TPM meter and gates, and the failover router;
//!   - [`metrics`]: the measuring layer, the in-memory
//!     [`PerformanceTracker`](metrics::PerformanceTracker) and the sinks for
//!     `metrics` (Prometheus), `tracing` and, with the `opentelemetry`
//!     feature (off by default), OpenTelemetry;
//!   - [`providers`]: OpenAI, Azure OpenAI, Anthropic, Gemini (also on
//!     Vertex AI) and Ollama streaming clients, and with the `bedrock`
//!     feature (off by default) Amazon Bedrock;
//!   - `mock` (feature `mock`, off by default): a mock provider server on
//!     loopback, for tests and demos;
//!   - `redis` (feature `redis`, off by default): TPM budgets, quota
//!     knowledge, in-flight counts and breaker state shared across
//!     replicas on Redis ([`Backend::shared_state`] takes its fleet);
//!     `rediss://` URLs with the `redis-tls` feature.
//! - [`prelude`]: the names most programs need.
//!
//! [`Backend`] and [`Backends`] need the `timeout`, `breaker`, `quota`,
//! `failover` and `metrics` features.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![forbid(unsafe_code)]

pub use streamgate_core as core;

#[cfg(feature = "breaker")]
pub use streamgate_breaker as breaker;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "failover")]
pub use streamgate_failover as failover;
#[cfg(feature = "metrics")]
pub use streamgate_metrics as metrics;
#[cfg(feature = "mock")]
pub use streamgate_mock as mock;
#[cfg(feature = "providers")]
pub use streamgate_providers as providers;
#[cfg(feature = "quota")]
pub use streamgate_quota as quota;
#[cfg(feature = "redis")]
pub use streamgate_redis as redis;
#[cfg(feature = "store")]
pub use streamgate_store as store;
#[cfg(feature = "timeout")]
pub use streamgate_timeout as timeout;

/// Items that need every layer crate: the builders.
macro_rules! with_every_layer {
    ($($item:item)*) => {$(
        #[cfg(all(
            feature = "timeout",
            feature = "breaker",
            feature = "quota",
            feature = "failover",
            feature = "metrics"
        ))]
        $item
    )*};
}

with_every_layer! {
    mod backend;
    mod backends;
    mod error;
    mod optional;
    pub use backend::Backend;
    pub use backends::Backends;
    pub use error::BuildError;
}

/// The names most programs need: `use streamgate::prelude::*;`.
pub mod prelude {
    pub use streamgate_core::{
        boxed, classify, BackendId, BoxError, BoxStreamingService, Chunk, Continuable, ErrorClass,
        FailoverError, LlmRequest, MetricsSink, Prefill, ProviderError, RejectReason, Rejected,
        StreamTimeout, Usage,
    };

    with_every_layer! {
        pub use crate::{Backend, Backends, BuildError};
    }
    #[cfg(feature = "breaker")]
    pub use streamgate_breaker::{Breaker, CircuitBreakerLayer};
    #[cfg(feature = "failover")]
    pub use streamgate_failover::{
        Continuation, ContinuationLog, Failover, FailoverReport, Hedge, Strategy, ThroughputProbe,
        TpmLayer,
    };
    #[cfg(feature = "metrics")]
    pub use streamgate_metrics::{MetricsLayer, PerformanceTracker};
    #[cfg(feature = "quota")]
    pub use streamgate_quota::{PacingLayer, QuotaLayer, QuotaTracker};
    #[cfg(feature = "timeout")]
    pub use streamgate_timeout::FirstChunkTimeoutLayer;
}

/// The README's code blocks, compiled and run as doc tests so they cannot
/// go stale (with the `bedrock`, `config` and `redis` features too: blocks
/// use them).
#[cfg(all(
    doctest,
    feature = "default",
    feature = "bedrock",
    feature = "config",
    feature = "redis"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
