//! The service.

use streamgate_core::guard::GuardService;

use crate::BreakerGuard;

/// A streaming service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` is always ready. `call` asks the breaker: when it refuses,
/// the future resolves at once to [`Rejected`](streamgate_core::Rejected)
/// with reason `CircuitOpen`, without polling or calling the inner service,
/// so an open breaker refuses even while its backend is not ready. An
/// admitted call is made at once when the inner service is ready, or
/// readies a clone of it inside the future.
pub type CircuitBreaker<S> = GuardService<S, BreakerGuard>;
