//! The shared contract of streamgate.
//!
//! Every streamgate layer wraps a *streaming service*: a
//! [`tower::Service`](tower_service::Service) whose response is an
//! [`http::Response`] with a body that is a `Stream<Item = Result<C, E>>`,
//! where `C` implements [`Chunk`] and `E: Into<BoxError>`. This crate holds
//! what the layers share:
//!
//! - the request and chunk traits ([`LlmRequest`], [`Chunk`]) and [`Usage`];
//! - [`BackendId`], the name every layer reports under;
//! - the error vocabulary ([`ProviderError`], [`StreamTimeout`],
//!   [`Rejected`], [`FailoverError`]) and one [`classify`] for all of them;
//! - metrics [`Event`]s and the [`MetricsSink`] trait;
//! - [`guard`]s: admission and observation of a call as pure state with
//!   hooks, composed as tuples behind one [`GuardLayer`](guard::GuardLayer);
//! - the commit-at-first-content primitive ([`Commit`], [`Replay`]);
//! - the [`scoreboard`]: what a router knows of each backend × model,
//!   published by the layers' events;
//! - the untrusted-input helpers: [`time`] (outside numbers to durations and
//!   instants without panicking) and [`redact`] (credentials out of text);
//! - [`state`]: what replicas of a fleet must agree on (TPM budget, quota,
//!   breaker), behind one small trait per concern.
//!
//! # Example
//!
//! Make your own types usable with every layer, and classify what fails:
//!
//! ```
//! use streamgate_core::{classify, BoxError, Chunk, ErrorClass, LlmRequest, ProviderError, Usage};
//!
//! #[derive(Clone)]
//! struct Prompt { model: String, text: String }
//!
//! impl LlmRequest for Prompt {
//!     fn model(&self) -> &str { &self.model }
//!     // About four characters per token.
//!     fn estimated_tokens(&self) -> u64 { self.text.len() as u64 / 4 }
//! }
//!
//! enum Delta { Role, Text(String), Done(Usage) }
//!
//! impl Chunk for Delta {
//!     fn is_content(&self) -> bool { matches!(self, Delta::Text(_)) }
//!     fn usage(&self) -> Option<Usage> {
//!         match self { Delta::Done(u) => Some(*u), _ => None }
//!     }
//! }
//!
//! let err: BoxError = ProviderError::new(ErrorClass::Overloaded, "try later").into();
//! assert_eq!(classify(&*err), ErrorClass::Overloaded);
//! assert!(classify(&*err).is_retryable());
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod backend;
mod chunk;
mod classify;
mod commit;
mod error;
mod event;
pub mod guard;
pub mod keyed;
mod observe;
pub mod redact;
pub mod scoreboard;
mod service;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
mod usage;
pub mod window;

pub use backend::BackendId;
pub use chunk::{Chunk, Continuable, LlmRequest, Prefill};
pub use classify::{classify, retry_after, Classifier, DefaultClassifier, ErrorClass};
pub use commit::{Commit, Replay};
pub use error::{
    Attempt, BoxError, Cancelled, DisplayDuration, FailoverError, ProviderError, RejectReason,
    Rejected, StreamTimeout, TimeoutKind, BODY_EXCERPT_LIMIT,
};
pub use event::{
    emit, BreakerState, Event, HedgeStage, MetricsSink, NoopSink, Outcome, QuotaState,
    RequestRecord, SharedSink,
};
pub(crate) use observe::{
    ConfirmedCall, EndObserver, Gated, ObservedBody, ReadyCall, StreamEnd, StreamObserver,
};
pub use service::{boxed, BoxBody, BoxResponseFuture, BoxStreamingService};
pub use usage::Usage;
