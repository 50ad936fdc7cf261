//! The TPM gates of one backend: a budget (maximum tokens per minute) and a
//! minimum throughput.
//!
//! [`TpmLayer`] wraps a backend's service in [`Tpm`]. On `call`:
//!
//! 1. **Minimum throughput.** If the backend measures below its minimum
//!    output tokens per minute of streaming time (over enough recent
//!    samples), and another member of its
//!    [`ThroughputGroup`](crate::ThroughputGroup) is not slow, and the call
//!    is not a [`last_resort`](crate::last_resort), it is refused with
//!    [`RejectReason::SlowBackend`](streamgate_core::RejectReason). With no
//!    samples a backend is never slow; it is never the reason every backend
//!    is unavailable.
//! 2. **Budget.** The request's estimate is reserved in the backend's (or
//!    model's) [`TpmMeter`](crate::TpmMeter) if the window's usage plus the
//!    reservations plus the estimate stay within the maximum, in one
//!    critical section, so
//!    concurrent requests cannot all slip under it. Otherwise it is refused
//!    with [`RejectReason::TpmBudget`](streamgate_core::RejectReason) and
//!    the time when the window will have room.
//!
//! When the stream ends the reservation is replaced by the real usage (see
//! [`TpmObserver`]).

mod layer;
mod service;

pub use layer::{TpmLayer, TpmLayerBuilder};
pub use service::{Tpm, TpmFuture, TpmObserver};
