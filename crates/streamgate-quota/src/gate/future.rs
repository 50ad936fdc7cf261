//! The response future.

use streamgate_core::Gated;

use super::QuotaObserver;

/// The response future of [`Quota`](super::Quota): an immediate rejection,
/// or the observed inner call.
pub type ResponseFuture<F> = Gated<F, QuotaObserver>;
