//! Breakers per (backend, model).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use streamgate_core::BackendId;

use crate::{config::Settings, Breaker};

/// One [`Breaker`] per model of a backend, made on first use with the
/// registry's settings. Clones share the breakers.
///
/// Built with [`BreakerBuilder::build_registry`](crate::BreakerBuilder::build_registry).
/// A lookup takes a read lock and does not allocate once the model's
/// breaker exists.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    backend: BackendId,
    settings: Arc<Settings>,
    breakers: RwLock<HashMap<Box<str>, Breaker>>,
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("backend", &self.inner.backend)
            .field("models", &self.breakers().len())
            .finish()
    }
}

impl BreakerRegistry {
    pub(crate) fn from_settings(backend: BackendId, settings: Settings) -> Self {
        Self {
            inner: Arc::new(RegistryInner {
                backend,
                settings: Arc::new(settings),
                breakers: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &BackendId {
        &self.inner.backend
    }

    /// The breaker of `model`, made closed on first use.
    pub fn get(&self, model: &str) -> Breaker {
        {
            let breakers = self
                .inner
                .breakers
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(breaker) = breakers.get(model) {
                return breaker.clone();
            }
        }
        let mut breakers = self
            .inner
            .breakers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        breakers
            .entry(model.into())
            .or_insert_with(|| {
                Breaker::from_settings(
                    self.inner.backend.clone(),
                    Some(model.into()),
                    self.inner.settings.clone(),
                )
            })
            .clone()
    }

    /// Every breaker made so far, by model name.
    pub fn breakers(&self) -> Vec<(String, Breaker)> {
        let breakers = self
            .inner
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = breakers
            .iter()
            .map(|(model, breaker)| (model.to_string(), breaker.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
