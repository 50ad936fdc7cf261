//! The layer and the guard.

use streamgate_core::{
    guard::{Call, Guard, GuardLayer, Refusal},
    BackendId,
};
use tower_layer::Layer;

use crate::{Breaker, BreakerRegistry, CircuitBreaker, Permit};

/// Guards a streaming service with a circuit breaker that judges the whole
/// stream (see the [crate docs](crate)): a [`GuardLayer`] of a
/// [`BreakerGuard`].
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    layer: GuardLayer<BreakerGuard>,
}

impl CircuitBreakerLayer {
    /// Every call goes through `breaker` (keep a clone to watch or steer it).
    pub fn new(breaker: Breaker) -> Self {
        BreakerGuard::new(breaker).into()
    }

    /// Each call goes through its model's breaker in `registry`.
    pub fn per_model(registry: BreakerRegistry) -> Self {
        BreakerGuard::per_model(registry).into()
    }

    /// The guard, to fuse it with others into one
    /// [`GuardLayer`].
    pub fn into_guard(self) -> BreakerGuard {
        self.layer.into_guard()
    }
}

impl From<BreakerGuard> for CircuitBreakerLayer {
    fn from(guard: BreakerGuard) -> Self {
        Self {
            layer: GuardLayer::new(guard.backend().clone(), guard),
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.layer.layer(inner)
    }
}

/// The circuit breaker as a [`Guard`]: admits through the breaker (or its
/// model's breaker in a registry); the [`Permit`] records the outcome.
#[derive(Clone, Debug)]
pub struct BreakerGuard {
    scope: Scope,
}

/// Which breaker a call goes through.
#[derive(Clone, Debug)]
enum Scope {
    /// One breaker for the backend.
    Backend(Breaker),
    /// One per model.
    PerModel(BreakerRegistry),
}

impl BreakerGuard {
    /// Every call goes through `breaker`.
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

    /// The backend guarded.
    pub fn backend(&self) -> &BackendId {
        match &self.scope {
            Scope::Backend(breaker) => breaker.backend(),
            Scope::PerModel(registry) => registry.backend(),
        }
    }
}

impl Guard for BreakerGuard {
    type Ticket = Permit;

    #[inline]
    fn admit(&mut self, call: &Call<'_>) -> Result<Permit, Refusal<'_>> {
        let now = || call.now();
        match &self.scope {
            Scope::Backend(breaker) => breaker
                .acquire(call.model(), now)
                .map_err(|rejected| Refusal::new(rejected, breaker.sink())),
            Scope::PerModel(registry) => registry
                .get(call.model())
                .acquire(call.model(), now)
                .map_err(|rejected| Refusal::new(rejected, registry.sink())),
        }
    }
}
