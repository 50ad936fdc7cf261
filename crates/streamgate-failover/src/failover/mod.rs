//! The router: strategies, hedging, the probe, and the attempt loop.

mod backoff;
mod body;
mod builder;
mod continuation;
mod hedge;
mod probe;
mod service;
mod strategy;

pub use backoff::{Backoff, MAX_BACKOFF_DELAY};
pub use body::FailoverBody;
pub use builder::{ContextLengthPolicy, FailoverBuilder};
pub use continuation::{
    Abandoned, Continuation, ContinuationLog, Continued, MAX_CONTINUATIONS, MAX_PREFILL_BYTES,
};
pub use hedge::{
    Hedge, HedgeDelay, DEFAULT_HEDGE_BUDGET, DEFAULT_HEDGE_FLOOR, DEFAULT_HEDGE_MIN_SAMPLES,
    DEFAULT_HEDGE_PERCENTILE, HEDGE_BURST,
};
pub use probe::{SlowStart, ThroughputProbe};
pub use service::{Failover, FailoverFuture, FailoverReport};
pub use strategy::Strategy;
