//! The TPM budget gate of one backend.
//!
//! [`TpmLayer`] wraps a backend's service in [`Tpm`]. On `call`, the
//! request's estimate is reserved in the backend's (or model's)
//! [`TpmMeter`](crate::TpmMeter) if the window's usage plus the
//! reservations plus the estimate stay within the maximum, in one critical
//! section, so concurrent requests cannot all slip under it. Otherwise it is
//! refused with [`RejectReason::TpmBudget`](streamgate_core::RejectReason)
//! and the time when the window will have room.
//!
//! (A minimum *throughput* is not a gate: it is an ordering rule of the
//! router's scoreboard, see `streamgate_core::scoreboard`.)
//!
//! When the stream ends the reservation is replaced by the real usage (see
//! [`TpmObserver`]).

mod layer;
mod service;

pub use layer::{TpmLayer, TpmLayerBuilder};
pub use service::{Tpm, TpmFuture, TpmObserver};
