//! The TPM budget gate of one backend.

mod layer;
mod service;

pub use layer::{TpmLayer, TpmLayerBuilder};
pub use service::{Tpm, TpmFuture, TpmGuard, TpmObserver};
