//! Breakers per (backend, model).

use std::{fmt, sync::Arc};

use streamgate_core::{keyed::KeyedMap, BackendId};

use crate::{config::Settings, Breaker};

/// One [`Breaker`] per model of a backend, made on first use with the
/// registry's settings. Clones share the breakers.
///
/// Built with [`BreakerBuilder::build_registry`](crate::BreakerBuilder::build_registry).
/// Model names come from callers, so the registry keeps at most
/// [`model_cap`](crate::BreakerBuilder::model_cap) breakers of their own
/// (default [`DEFAULT_MODEL_CAP`](streamgate_core::keyed::DEFAULT_MODEL_CAP),
/// 32); every model first seen past the cap shares one breaker, reported
/// under the model [`OTHER_MODEL`](streamgate_core::keyed::OTHER_MODEL).
/// A lookup of a known model takes a read lock (or none, when the same
/// thread asked last) and does not allocate.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    backend: BackendId,
    settings: Arc<Settings>,
    breakers: KeyedMap<Breaker>,
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("backend", &self.inner.backend)
            .field("models", &self.inner.breakers.len())
            .finish()
    }
}

impl BreakerRegistry {
    pub(crate) fn from_settings(backend: BackendId, settings: Settings, model_cap: usize) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                backend,
                settings: Arc::new(settings),
                breakers: KeyedMap::new(model_cap),
            }),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &BackendId {
        &self.inner.backend
    }

    /// The breaker of `model`, made closed on first use (past the cap, the
    /// shared breaker of every further model).
    pub fn get(&self, model: &str) -> Breaker {
        let inner = &self.inner;
        Breaker::clone(
            &inner
                .breakers
                .get_or_insert_with(&inner.backend, model, |backend, key| {
                    Breaker::from_settings(
                        backend.clone(),
                        Some(key.as_ref().into()),
                        inner.settings.clone(),
                    )
                }),
        )
    }

    /// The sink of the registry's breakers.
    pub(crate) fn sink(&self) -> Option<&dyn streamgate_core::MetricsSink> {
        self.inner.settings.sink.as_deref()
    }

    /// How many breakers the registry holds (at most the cap plus one).
    pub fn len(&self) -> usize {
        self.inner.breakers.len()
    }

    /// Whether no breaker was made yet.
    pub fn is_empty(&self) -> bool {
        self.inner.breakers.is_empty()
    }

    /// Every breaker made so far, by model name.
    pub fn breakers(&self) -> Vec<(String, Breaker)> {
        self.inner
            .breakers
            .entries()
            .into_iter()
            .map(|(_, model, breaker)| (model.to_string(), Breaker::clone(&breaker)))
            .collect()
    }
}
