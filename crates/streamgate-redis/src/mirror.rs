//! What other replicas published, kept in process so that admission reads
//! it without a remote call.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use tokio::time::Instant;

/// The most (backend, model) facts a mirror keeps: further facts are not
/// kept until expired ones make room (published names are outside input).
pub(crate) const MAX_FACTS: usize = 4096;

/// Facts of type `T` that expire, by backend then model (so a lookup
/// borrows both names and allocates nothing).
#[derive(Debug)]
pub(crate) struct Mirror<T> {
    facts: Mutex<Facts<T>>,
}

/// The facts of one backend's models, with when each expires.
type Models<T> = HashMap<Box<str>, (Instant, T)>;

#[derive(Debug)]
struct Facts<T> {
    by_backend: HashMap<Box<str>, Models<T>>,
    len: usize,
}

impl<T: Clone> Mirror<T> {
    pub(crate) fn new() -> Self {
        Self {
            facts: Mutex::new(Facts {
                by_backend: HashMap::new(),
                len: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Facts<T>> {
        self.facts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fact about (backend, model) if it holds at `now` (read only
    /// when there is a fact).
    pub(crate) fn get(
        &self,
        backend: &str,
        model: &str,
        now: impl FnOnce() -> Instant,
    ) -> Option<(Instant, T)> {
        let facts = self.lock();
        if facts.len == 0 {
            return None;
        }
        let (until, fact) = facts.by_backend.get(backend)?.get(model)?;
        (*until > now()).then(|| (*until, fact.clone()))
    }

    /// Keeps `fact` about (backend, model) until `until`.
    pub(crate) fn insert(&self, backend: &str, model: &str, until: Instant, fact: T) {
        let mut facts = self.lock();
        if facts.len >= MAX_FACTS {
            facts.purge(Instant::now());
        }
        let Facts { by_backend, len } = &mut *facts;
        let models = by_backend.entry(backend.into()).or_default();
        if let Some(entry) = models.get_mut(model) {
            *entry = (until, fact);
        } else if *len < MAX_FACTS {
            models.insert(model.into(), (until, fact));
            *len += 1;
        }
    }

    /// Forgets the fact about (backend, model).
    pub(crate) fn remove(&self, backend: &str, model: &str) {
        let mut facts = self.lock();
        let Facts { by_backend, len } = &mut *facts;
        if let Some(models) = by_backend.get_mut(backend) {
            if models.remove(model).is_some() {
                *len -= 1;
            }
        }
    }
}

impl<T> Facts<T> {
    fn purge(&mut self, now: Instant) {
        let mut removed = 0;
        for models in self.by_backend.values_mut() {
            let before = models.len();
            models.retain(|_, (until, _)| *until > now);
            removed += before - models.len();
        }
        self.by_backend.retain(|_, models| !models.is_empty());
        self.len -= removed;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fact_holds_until_it_expires_and_can_be_removed() {
        let now = Instant::now();
        let mirror = Mirror::new();
        mirror.insert("b", "m", now + Duration::from_secs(2), 7);
        assert_eq!(
            mirror.get("b", "m", || now),
            Some((now + Duration::from_secs(2), 7))
        );
        assert_eq!(mirror.get("b", "other", || now), None);
        assert_eq!(mirror.get("b", "m", || now + Duration::from_secs(2)), None);
        mirror.remove("b", "m");
        assert_eq!(mirror.get("b", "m", || now), None);
    }

    #[test]
    fn the_mirror_stops_growing_at_its_cap() {
        let now = Instant::now();
        let mirror = Mirror::new();
        for i in 0..MAX_FACTS + 10 {
            mirror.insert("b", &i.to_string(), now + Duration::from_secs(60), ());
        }
        assert_eq!(mirror.lock().len, MAX_FACTS);
        assert!(mirror.get("b", &MAX_FACTS.to_string(), || now).is_none());
    }
}
