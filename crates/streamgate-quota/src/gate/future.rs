//! The response future.

use streamgate_core::guard::GuardFuture;

use super::QuotaObserver;

/// The response future of [`Quota`](super::Quota) for inner service `S`
/// and request `Req`: an immediate rejection, or the observed inner call.
pub type ResponseFuture<S, Req> = GuardFuture<S, Req, QuotaObserver>;
