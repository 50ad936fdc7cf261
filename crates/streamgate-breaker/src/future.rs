//! The response future and body.

use streamgate_core::guard::{GuardBody, GuardFuture};

use crate::Permit;

/// The body of a guarded response: the inner body, observed until its end.
/// `Unpin` when the inner body is.
pub type ResponseBody<B> = GuardBody<B, Permit>;

/// The response future of [`CircuitBreaker`](crate::CircuitBreaker) for
/// inner service `S` and request `Req`: the inner call observed, or a
/// rejection that resolves at once.
pub type ResponseFuture<S, Req> = GuardFuture<S, Req, Permit>;
