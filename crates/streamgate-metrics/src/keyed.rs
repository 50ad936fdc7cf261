//! A read-mostly map of per-(backend, model) entries with a cap on distinct
//! models, shared by every sink that keys by model.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use streamgate_core::BackendId;

use crate::names::OTHER_MODEL;

/// The entries of one backend, by model.
type Models<V> = HashMap<Arc<str>, Arc<V>>;

/// Entries keyed by backend, then model. Lookups of known keys take only the
/// read lock, so many tasks recording at once do not queue behind each other;
/// the write lock is taken once per new key.
pub(crate) struct KeyedMap<V> {
    cap: usize,
    inner: RwLock<HashMap<BackendId, Models<V>>>,
}

impl<V> KeyedMap<V> {
    /// A map keeping at most `cap` distinct models per backend (plus
    /// [`OTHER_MODEL`]).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: RwLock::new(HashMap::new()),
        }
    }

    /// The entry for `backend` × `model`, created by `make` (given the model
    /// name it is stored under) if it is new. Past the cap, a new model shares
    /// the [`OTHER_MODEL`] entry.
    pub(crate) fn get_or_insert_with(
        &self,
        backend: &BackendId,
        model: &str,
        make: impl FnOnce(&BackendId, &Arc<str>) -> V,
    ) -> Arc<V> {
        {
            let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(models) = map.get(backend) {
                if let Some(entry) = models.get(model) {
                    return entry.clone();
                }
                if real_models(models) >= self.cap {
                    if let Some(entry) = models.get(OTHER_MODEL) {
                        return entry.clone();
                    }
                }
            }
        }
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let models = map.entry(backend.clone()).or_default();
        if let Some(entry) = models.get(model) {
            return entry.clone();
        }
        let key: Arc<str> = if real_models(models) >= self.cap {
            Arc::from(OTHER_MODEL)
        } else {
            Arc::from(model)
        };
        models
            .entry(key.clone())
            .or_insert_with(|| Arc::new(make(backend, &key)))
            .clone()
    }

    /// Every entry, sorted by backend then model.
    pub(crate) fn entries(&self) -> Vec<(BackendId, Arc<str>, Arc<V>)> {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = map
            .iter()
            .flat_map(|(backend, models)| {
                models
                    .iter()
                    .map(move |(model, entry)| (backend.clone(), model.clone(), entry.clone()))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

fn real_models<V>(models: &HashMap<Arc<str>, V>) -> usize {
    models.len() - usize::from(models.contains_key(OTHER_MODEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_past_the_cap_fold_into_other() {
        let map = KeyedMap::<String>::new(2);
        let b = BackendId::new("b");
        let make = |_: &BackendId, m: &Arc<str>| m.to_string();
        assert_eq!(*map.get_or_insert_with(&b, "m1", make), "m1");
        assert_eq!(*map.get_or_insert_with(&b, "m2", make), "m2");
        assert_eq!(*map.get_or_insert_with(&b, "m3", make), OTHER_MODEL);
        assert_eq!(*map.get_or_insert_with(&b, "m4", make), OTHER_MODEL);
        // Known models keep their own entry after the cap is reached.
        assert_eq!(*map.get_or_insert_with(&b, "m1", make), "m1");
        // The cap is per backend.
        let c = BackendId::new("c");
        assert_eq!(*map.get_or_insert_with(&c, "m3", make), "m3");
        let names: Vec<_> = map.entries().iter().map(|e| e.1.to_string()).collect();
        assert_eq!(names, ["_OTHER", "m1", "m2", "m3"]);
    }
}
