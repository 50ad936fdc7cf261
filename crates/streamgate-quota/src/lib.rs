//! Quota awareness for LLM backends: read the rate-limit information
//! providers send, take a backend out of rotation *before* it answers 429,
//! use it again exactly when its quota resets, and pace calls to stay under
//! requests and tokens per minute.
//!
//! - [`QuotaInfo::parse`]: every rate-limit scheme in one struct (OpenAI,
//!   Azure, Groq, Anthropic, OpenRouter headers and 429 bodies, Cerebras,
//!   Mistral, Together, Cohere trial keys, IETF `RateLimit`, `retry-after`,
//!   Gemini `RetryInfo`), each window kept; see [`parse`] for the rules.
//! - [`QuotaTracker`]: Available / Tracking / Exhausted per (backend, model),
//!   pure and driven by `now`, with in-flight accounting
//!   ([`QuotaTracker::admit`] and its [`InFlight`] guard).
//! - [`QuotaLayer`]: refuses with
//!   [`Rejected`](streamgate_core::Rejected)`{ reason: QuotaExhausted }`
//!   before calling, and learns from every response and error: a
//!   [`GuardLayer`](streamgate_core::guard::GuardLayer) of a [`QuotaGuard`]
//!   ([`QuotaLayer::into_guard`] to fuse it with other guards).
//! - [`PacingLayer`]: waits (never fails) to stay under configured or learned
//!   limits, token-weighted by the request's estimate.
//! - [`explain`]: what streamgate makes of a response: the functions the
//!   `explain` example (the command line) calls, and checks use.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use streamgate_core::{testing::{Script, ScriptedService, TestRequest}, BackendId, Rejected};
//! use streamgate_quota::{PacingLayer, QuotaInfo, QuotaLayer, QuotaTracker};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let backend = BackendId::new("openai");
//! let tracker = QuotaTracker::new();
//! let client = ScriptedService::new(Script::new().text("hello"));
//! let service = ServiceBuilder::new()
//!     .layer(QuotaLayer::new(backend.clone(), tracker.clone()))
//!     .layer(
//!         PacingLayer::builder(backend.clone())
//!             .tokens_per_minute(30_000)
//!             .adopt_learned(tracker.clone())
//!             .build()?,
//!     )
//!     .service(client);
//!
//! // A 429 with `retry-after: 20` seen on an earlier call...
//! let mut info = QuotaInfo::default();
//! info.retry_after = Some(Duration::from_secs(20));
//! tracker.observe_rate_limited(&backend, "gpt-4o", &info, tokio::time::Instant::now());
//!
//! // ...keeps the backend out of rotation for 20 s, without calling it.
//! let err = service.oneshot(TestRequest::new("gpt-4o").with_estimate(500)).await.err().unwrap();
//! let rejected = err.downcast_ref::<Rejected>().unwrap();
//! assert_eq!(rejected.retry_after, Some(Duration::from_secs(20)));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod explain;
mod gate;
pub mod pacing;
pub mod parse;
mod tracker;

pub use gate::{Quota, QuotaGuard, QuotaLayer, QuotaLayerBuilder, QuotaObserver, ResponseFuture};
pub use pacing::{Paced, PacedGuard, Pacing, PacingLayer, PacingLayerBuilder};
pub use parse::{Limit, LimitKind, QuotaInfo, Schemes, WindowLimit};
pub use tracker::{
    ConfigError, ExhaustReason, InFlight, KeySnapshot, LearnedLimits, QuotaStatus, QuotaTracker,
    QuotaTrackerBuilder, Refusal, MAX_DURATION,
};
