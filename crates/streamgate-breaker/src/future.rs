//! The response future and body.

use streamgate_core::{Gated, ObservedBody};

use crate::Permit;

/// The body of a guarded response: the inner body, observed until its end.
/// `Unpin` when the inner body is.
pub type ResponseBody<B> = ObservedBody<B, Permit>;

/// The response future of [`CircuitBreaker`](crate::CircuitBreaker): the
/// inner future observed, or a rejection that resolves at once.
pub type ResponseFuture<F> = Gated<F, Permit>;
