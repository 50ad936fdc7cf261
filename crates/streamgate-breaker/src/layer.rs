//! The layer.

use tower_layer::Layer;

use crate::{Breaker, BreakerRegistry, CircuitBreaker};

/// Guards a streaming service with a circuit breaker that judges the whole
/// stream (see the [crate docs](crate)).
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    scope: Scope,
}

/// Which breaker a call goes through.
#[derive(Clone, Debug)]
pub(crate) enum Scope {
    /// One breaker for the backend.
    Backend(Breaker),
    /// One per model.
    PerModel(BreakerRegistry),
}

impl CircuitBreakerLayer {
    /// Every call goes through `breaker` (keep a clone to watch or steer it).
    pub fn new(breaker: Breaker) -> Self {
        Self {
            scope: Scope::Backend(breaker),
        }
    }

    /// Each call goes through its model's breaker in `registry`.
    pub fn per_model(registry: BreakerRegistry) -> Self {
        Self {
            scope: Scope::PerModel(registry),
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.scope.clone())
    }
}
