//! A circuit breaker tower layer that judges the whole LLM stream.
//!
//! Other breakers record a success when the response headers arrive, so a
//! stream that dies after ten tokens looks healthy. [`CircuitBreakerLayer`]
//! records the outcome when the stream *ends*: a clean end is a success; an
//! error item, a timeout or a truncation is a failure when its class counts;
//! a request the caller drops records nothing.
//!
//! - States closed, open and half-open, steered through the shared
//!   [`Breaker`] handle: [`force_open`](Breaker::force_open),
//!   [`disable`](Breaker::disable), [`metrics_only`](Breaker::metrics_only),
//!   [`reset`](Breaker::reset).
//! - Triggers ([`BreakerBuilder`]): K failures within a time window (default
//!   3 in 60 s, open 30 s, one probe: the defaults of the system this
//!   replaces), consecutive failures, failure rate and slow-call rate over a
//!   count window (last N calls) or a time window (N one-second buckets).
//! - Open for a fixed or growing [`OpenWait`], or exactly until the reset a
//!   rate-limit error carries, up to [`BreakerBuilder::max_wait`] (1 hour).
//! - Half-open lets exactly the permitted probes through, even under
//!   contention; any failing probe reopens; a probe that is dropped or
//!   rejected by another gate frees its place and records nothing.
//! - An open circuit rejects in `call` with
//!   [`Rejected`](streamgate_core::Rejected) (`CircuitOpen`, with the time
//!   left) without calling the inner service.
//! - The layer is a [`GuardLayer`](streamgate_core::guard::GuardLayer) of a
//!   [`BreakerGuard`] ([`CircuitBreakerLayer::into_guard`] to fuse it with
//!   other guards); the [`Permit`] is its ticket.
//! - Transitions and rejections go to the optional
//!   [`MetricsSink`](streamgate_core::MetricsSink).
//!
//! While closed, admitting a call and recording its success take a few atomic
//! operations, with no lock and no allocation; a short mutex guards only
//! failures, transitions and the half-open probes.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use streamgate_breaker::{Breaker, CircuitBreakerLayer, OpenWait};
//! use streamgate_core::BreakerState;
//!
//! # fn main() -> Result<(), streamgate_breaker::ConfigError> {
//! let breaker = Breaker::builder("openai")
//!     .failure_rate(0.5)
//!     .minimum_calls(10)
//!     .count_window(20)
//!     .open_wait(OpenWait::doubling(Duration::from_secs(5), Duration::from_secs(120)))
//!     .build()?;
//! // Stack it on a client: `ServiceBuilder::new().layer(layer).service(client)`.
//! let layer = CircuitBreakerLayer::new(breaker.clone());
//! # let _ = layer;
//! assert_eq!(breaker.state(), BreakerState::Closed);
//!
//! // The handle steers every clone of the layer.
//! breaker.force_open();
//! assert_eq!(breaker.state(), BreakerState::ForcedOpen);
//! assert!(breaker.try_acquire().is_err());
//! breaker.reset();
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod breaker;
mod config;
mod future;
mod layer;
mod machine;
mod registry;
mod service;

pub use breaker::{Breaker, Permit, Snapshot};
pub use config::{
    BreakerBuilder, ConfigError, OpenWait, DEFAULT_COUNTED, DEFAULT_HALF_OPEN_MAX_WAIT,
    DEFAULT_MAX_WAIT, DEFAULT_MINIMUM_OPEN,
};
pub use future::{ResponseBody, ResponseFuture};
pub use layer::{BreakerGuard, CircuitBreakerLayer};
pub use registry::BreakerRegistry;
pub use service::CircuitBreaker;
