//! Sliding TPM meter, TPM budget gate, and a failover router with routing
//! strategies for LLM backends.
//!
//! - [`TpmMeter`]: tokens and requests per minute over a sliding 60 s window
//!   of one-second buckets, with reservations for requests in flight
//!   ([`TpmMeter`] documents the exact window).
//! - [`TpmLayer`]: per backend, a *budget* gate (a maximum TPM: reserve the
//!   estimate at admission, reconcile with real usage at the end): a
//!   [`GuardLayer`](streamgate_core::guard::GuardLayer) of a [`TpmGuard`]
//!   ([`TpmLayer::into_guard`] to fuse it with other guards).
//! - [`Failover`]: backends ordered by a [`Strategy`] and the scoreboard,
//!   tried until one commits a stream;
//!   refusals skipped, retryable failures retried or failed over before the
//!   first content, a [`FailoverError`](streamgate_core::FailoverError)
//!   listing every attempt when none works.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use futures::{stream, StreamExt};
//! use streamgate_core::{BoxError, Chunk, LlmRequest};
//! use streamgate_failover::{Failover, TpmLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! #[derive(Clone)]
//! struct Prompt { model: String, tokens: u64 }
//!
//! impl LlmRequest for Prompt {
//!     fn model(&self) -> &str { &self.model }
//!     fn estimated_tokens(&self) -> u64 { self.tokens }
//! }
//!
//! struct Text(&'static str);
//! impl Chunk for Text {}
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Stands in for a provider client: any streaming tower service.
//! let client = |reply: &'static str| {
//!     service_fn(move |_: Prompt| async move {
//!         let body = stream::iter([Ok::<_, BoxError>(Text(reply))]);
//!         Ok::<_, BoxError>(http::Response::new(body))
//!     })
//! };
//!
//! let primary = TpmLayer::builder("primary")
//!     .max_tokens_per_minute(30_000)
//!     .build()?;
//! let fallback = TpmLayer::builder("fallback").build()?;
//! let router = Failover::builder()
//!     .service("primary", primary.layer(client("from primary")))
//!     .service("fallback", fallback.layer(client("from fallback")))
//!     .first_content_timeout(Duration::from_secs(10))
//!     .build()?;
//!
//! // 40 000 estimated tokens do not fit the primary's budget.
//! let prompt = Prompt { model: "gpt-4o".into(), tokens: 40_000 };
//! let response = router.oneshot(prompt).await?;
//! let first = response.into_body().next().await.transpose()?;
//! assert_eq!(first.map(|text| text.0), Some("from fallback"));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod failover;
mod meter;
mod tpm;

mod error;

pub use error::ConfigError;
pub use failover::{
    Abandoned, Backoff, ContextLengthPolicy, Continuation, ContinuationLog, Continued, Failover,
    FailoverBody, FailoverBuilder, FailoverFuture, FailoverReport, Hedge, HedgeDelay, SlowStart,
    Strategy, ThroughputProbe, DEFAULT_HEDGE_BUDGET, DEFAULT_HEDGE_FLOOR,
    DEFAULT_HEDGE_MIN_SAMPLES, DEFAULT_HEDGE_PERCENTILE, HEDGE_BURST, MAX_BACKOFF_DELAY,
    MAX_CONTINUATIONS, MAX_PREFILL_BYTES,
};
pub use meter::{
    BudgetExceeded, Reservation, TpmMeter, TpmRegistry, TpmSnapshot, MAX_MODELS, WINDOW,
};
pub use tpm::{Tpm, TpmFuture, TpmGuard, TpmLayer, TpmLayerBuilder, TpmObserver};
