//! The one bounded map of per-(backend, model) state, used by every
//! structure that keys by model: the metrics sinks, the in-memory tracker,
//! the per-model breaker registry, the TPM registry, the quota tracker and
//! pacing's learned limits.
//!
//! Model names come from callers and are untrusted, so the number of
//! distinct models kept per backend has a cap ([`DEFAULT_MODEL_CAP`] unless
//! configured). A model first seen past the cap shares one entry stored
//! under [`OTHER_MODEL`]: memory stays bounded whatever names arrive, no
//! entry is ever evicted (an entry handed out stays valid), and inserting
//! is O(1).

use std::{
    any::Any,
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock,
    },
};

use crate::BackendId;

/// The model name under which every model past a map's cap is kept.
pub const OTHER_MODEL: &str = "_OTHER";

/// The default cap on distinct models per backend, not counting
/// [`OTHER_MODEL`]: 32, well above the handful of models a deployment uses,
/// low enough that hostile model names cannot grow memory.
pub const DEFAULT_MODEL_CAP: usize = 32;

/// The entries of one backend, by model.
type Models<V> = HashMap<Arc<str>, Arc<V>>;

/// Entries keyed by backend, then model. Lookups of known keys take only the
/// read lock, so many tasks recording at once do not queue behind each other;
/// the write lock is taken once per new key.
pub struct KeyedMap<V> {
    cap: usize,
    /// Tells this map's entries apart from other maps' in the per-thread
    /// cache; never reused, unlike an address.
    id: u64,
    inner: RwLock<HashMap<BackendId, Models<V>>>,
}

/// Source of [`KeyedMap`] ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Slots in the per-thread cache, chosen by map and backend: the few maps
/// (sinks) of a stack each keep their most recent entry, and a router's
/// backends do not take each other's slot in a map they share.
const CACHE_SLOTS: usize = 8;
const _: () = assert!(CACHE_SLOTS.is_power_of_two());

/// One map's most recent lookup on this thread.
struct Cached {
    map: u64,
    backend: BackendId,
    /// The model the entry is stored under; only a request naming exactly
    /// this model hits (models folded into `_OTHER` always take the map).
    model: Arc<str>,
    entry: Arc<dyn Any + Send + Sync>,
}

thread_local! {
    /// The entry each of the last few maps handed out on this thread: a
    /// steady stream of events for one key skips the lock and both hash
    /// lookups, since an entry, once made, is never replaced or removed.
    static CACHE: RefCell<[Option<Cached>; CACHE_SLOTS]> = const { RefCell::new([const { None }; CACHE_SLOTS]) };
}

impl<V> std::fmt::Debug for KeyedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KeyedMap")
            .field("cap", &self.cap)
            .field("entries", &map.values().map(HashMap::len).sum::<usize>())
            .finish()
    }
}

impl<V: Send + Sync + 'static> KeyedMap<V> {
    /// A map keeping at most `cap` distinct models per backend (plus
    /// [`OTHER_MODEL`]); a `cap` of 0 counts as 1.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inner: RwLock::new(HashMap::new()),
        }
    }

    /// The entry for `backend` × `model`, created by `make` (given the model
    /// name it is stored under) if it is new. Past the cap, a new model shares
    /// the [`OTHER_MODEL`] entry.
    pub fn get_or_insert_with(
        &self,
        backend: &BackendId,
        model: &str,
        make: impl FnOnce(&BackendId, &Arc<str>) -> V,
    ) -> Arc<V> {
        if let Some(entry) = self.cached(backend, model) {
            return entry;
        }
        self.uncached(backend, model, make)
    }

    /// A lookup that missed this thread's cache: from the map, then
    /// remembered.
    fn uncached(
        &self,
        backend: &BackendId,
        model: &str,
        make: impl FnOnce(&BackendId, &Arc<str>) -> V,
    ) -> Arc<V> {
        let (key, entry) = self.lookup(backend, model, make);
        if *key == *model {
            // Only after the lookup: `make` may record into another map.
            self.remember(backend, key, &entry);
        }
        entry
    }

    /// Runs `f` on the entry for `backend` × `model`, made by `make` if it is
    /// new, exactly as [`get_or_insert_with`](Self::get_or_insert_with)
    /// would find it. For a use that does not keep the entry: when this
    /// thread looked the same key up last, `f` borrows the entry from the
    /// per-thread cache and its reference count is not touched, so threads
    /// recording for one key do not pass that count's cache line back and
    /// forth. Inside `f`, lookups in other maps work but are not cached.
    pub fn with<R>(
        &self,
        backend: &BackendId,
        model: &str,
        make: impl FnOnce(&BackendId, &Arc<str>) -> V,
        f: impl FnOnce(&V) -> R,
    ) -> R {
        let slot = self.cache_slot(backend);
        let mut f = Some(f);
        let hit = CACHE
            .try_with(|cache| {
                let cache = cache.try_borrow().ok()?;
                let cached = cache[slot].as_ref()?;
                if cached.map != self.id || cached.backend != *backend || *cached.model != *model {
                    return None;
                }
                let entry = cached.entry.downcast_ref::<V>()?;
                f.take().map(|f| f(entry))
            })
            .ok()
            .flatten();
        match (hit, f) {
            (Some(out), _) => out,
            (None, Some(f)) => f(&self.uncached(backend, model, make)),
            // `f` is taken only where it runs, and then there is an answer.
            (None, None) => unreachable!("a cached lookup ran its closure and lost the answer"),
        }
    }

    /// The entry [`get_or_insert_with`](Self::get_or_insert_with) would hand
    /// out for `backend` × `model`, without making one: the model's own, or,
    /// for a model that would fold into it, the shared [`OTHER_MODEL`]
    /// entry. `None` when neither exists yet. A read lock (or none, when the
    /// same thread asked last) and no allocation.
    pub fn find(&self, backend: &BackendId, model: &str) -> Option<Arc<V>> {
        if let Some(entry) = self.cached(backend, model) {
            return Some(entry);
        }
        let (key, entry) = {
            let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            let models = map.get(backend)?;
            match models.get_key_value(model) {
                Some((key, entry)) => (key.clone(), entry.clone()),
                None if real_models(models) >= self.cap => {
                    return models.get(OTHER_MODEL).cloned();
                }
                None => return None,
            }
        };
        self.remember(backend, key, &entry);
        Some(entry)
    }

    /// Where this map's entry for `backend` is cached: a multiplicative
    /// hash of the map's id and the backend name's address (a clone of an
    /// id shares it; another id with the same name may take another slot,
    /// which only costs a miss, since a hit compares the names).
    fn cache_slot(&self, backend: &BackendId) -> usize {
        const SLOT_BITS: u32 = CACHE_SLOTS.trailing_zeros();
        let key = self.id ^ (backend.addr() >> 4);
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (u64::BITS - SLOT_BITS)) as usize
    }

    /// This thread's most recent entry of this map, if it is `backend` ×
    /// `model`'s own.
    fn cached(&self, backend: &BackendId, model: &str) -> Option<Arc<V>> {
        let slot = self.cache_slot(backend);
        CACHE
            .try_with(|cache| {
                // `try_`: dropping an evicted entry must never panic here.
                let cache = cache.try_borrow().ok()?;
                let cached = cache[slot].as_ref()?;
                if cached.map == self.id && cached.backend == *backend && *cached.model == *model {
                    cached.entry.clone().downcast::<V>().ok()
                } else {
                    None
                }
            })
            .ok()
            .flatten()
    }

    /// Keeps `entry`, stored under `model`, as this thread's most recent.
    fn remember(&self, backend: &BackendId, model: Arc<str>, entry: &Arc<V>) {
        let slot = self.cache_slot(backend);
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache[slot] = Some(Cached {
                    map: self.id,
                    backend: backend.clone(),
                    model,
                    entry: entry.clone(),
                });
            }
        });
    }

    /// The entry and the model it is stored under, from the map.
    fn lookup(
        &self,
        backend: &BackendId,
        model: &str,
        make: impl FnOnce(&BackendId, &Arc<str>) -> V,
    ) -> (Arc<str>, Arc<V>) {
        {
            let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(models) = map.get(backend) {
                if let Some((key, entry)) = models.get_key_value(model) {
                    return (key.clone(), entry.clone());
                }
                if real_models(models) >= self.cap {
                    if let Some((key, entry)) = models.get_key_value(OTHER_MODEL) {
                        return (key.clone(), entry.clone());
                    }
                }
            }
        }
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let models = map.entry(backend.clone()).or_default();
        if let Some((key, entry)) = models.get_key_value(model) {
            return (key.clone(), entry.clone());
        }
        let key: Arc<str> = if real_models(models) >= self.cap {
            Arc::from(OTHER_MODEL)
        } else {
            Arc::from(model)
        };
        let entry = models
            .entry(key.clone())
            .or_insert_with(|| Arc::new(make(backend, &key)))
            .clone();
        (key, entry)
    }

    /// The entry of `backend` × `model` if that model has one of its own
    /// (never the shared [`OTHER_MODEL`] entry, unless asked for by name).
    pub fn get(&self, backend: &BackendId, model: &str) -> Option<Arc<V>> {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        map.get(backend)?.get(model).cloned()
    }

    /// How many entries the map holds, [`OTHER_MODEL`] ones included.
    pub fn len(&self) -> usize {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(HashMap::len).sum()
    }

    /// Whether the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap on distinct models per backend.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Every entry, sorted by backend then model.
    pub fn entries(&self) -> Vec<(BackendId, Arc<str>, Arc<V>)> {
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
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn each_map_hands_out_its_own_entries_on_one_thread() {
        let b = BackendId::new("b");
        // More maps than cache slots, looked up in turn, so slots are shared
        // and overwritten.
        let maps: Vec<KeyedMap<usize>> =
            (0..CACHE_SLOTS * 2 + 1).map(|_| KeyedMap::new(4)).collect();
        for _ in 0..3 {
            for (i, map) in maps.iter().enumerate() {
                assert_eq!(*map.get_or_insert_with(&b, "m", |_, _| i), i);
                assert_eq!(*map.get_or_insert_with(&b, "n", |_, _| i + 100), i + 100);
            }
        }
        // A repeated lookup returns the very entry the map holds.
        let first = maps[0].get_or_insert_with(&b, "m", |_, _| 0);
        let again = maps[0].get_or_insert_with(&b, "m", |_, _| 0);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(&first, &maps[0].entries()[0].2));
    }

    #[test]
    fn a_router_s_backends_keep_their_own_cached_entries_in_one_map() {
        let map = KeyedMap::<AtomicU64>::new(4);
        let make = |_: &BackendId, _: &Arc<str>| AtomicU64::new(0);
        let a = BackendId::new("a");
        // Another backend whose entry is cached in another slot.
        let candidates: Vec<BackendId> = (0..64).map(|i| BackendId::new(format!("b{i}"))).collect();
        let b = candidates
            .iter()
            .find(|b| map.cache_slot(b) != map.cache_slot(&a))
            .expect("64 names cannot all share one of 8 slots");
        let (ea, eb) = (
            map.get_or_insert_with(&a, "m", make),
            map.get_or_insert_with(b, "m", make),
        );
        // Alternating, each is borrowed from the thread's cache: the map,
        // the cache and the handle above hold it, and no lookup's clone.
        for _ in 0..3 {
            map.with(&a, "m", make, |_| assert_eq!(Arc::strong_count(&ea), 3));
            map.with(b, "m", make, |_| assert_eq!(Arc::strong_count(&eb), 3));
        }
    }

    #[test]
    fn with_borrows_the_entry_a_lookup_hands_out() {
        let map = KeyedMap::<AtomicU64>::new(1);
        let other = KeyedMap::<usize>::new(4);
        let b = BackendId::new("b");
        let make = |_: &BackendId, _: &Arc<str>| AtomicU64::new(0);
        // A miss makes the entry; the next call hits the thread's cache.
        for _ in 0..3 {
            map.with(&b, "m", make, |n| n.fetch_add(1, Ordering::Relaxed));
        }
        let entry = map.get_or_insert_with(&b, "m", make);
        assert_eq!(entry.load(Ordering::Relaxed), 3);
        // Borrowed, not cloned: the map, the thread's cache and `entry`.
        map.with(&b, "m", make, |_| assert_eq!(Arc::strong_count(&entry), 3));
        // Past the cap, the shared entry, as a lookup would give.
        map.with(&b, "m2", make, |n| n.fetch_add(10, Ordering::Relaxed));
        map.with(&b, "m3", make, |n| n.fetch_add(10, Ordering::Relaxed));
        assert_eq!(
            map.get(&b, OTHER_MODEL).map(|n| n.load(Ordering::Relaxed)),
            Some(20)
        );
        // Lookups in another map inside the closure still answer.
        let inner = map.with(&b, "m", make, |_| {
            *other.get_or_insert_with(&b, "m", |_, _| 7)
        });
        assert_eq!(inner, 7);
        assert_eq!(map.with(&b, "m", make, |n| n.load(Ordering::Relaxed)), 3);
    }

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

    #[test]
    fn find_hands_out_what_a_lookup_would_without_making_an_entry() {
        let map = KeyedMap::<String>::new(1);
        let b = BackendId::new("b");
        let make = |_: &BackendId, m: &Arc<str>| m.to_string();
        assert!(map.find(&b, "m1").is_none());
        map.get_or_insert_with(&b, "m1", make);
        assert_eq!(
            map.find(&b, "m1").as_deref().map(String::as_str),
            Some("m1")
        );
        // At the cap, before the overflow entry exists: nothing.
        assert!(map.find(&b, "m2").is_none());
        map.get_or_insert_with(&b, "m2", make);
        assert_eq!(
            map.find(&b, "m3").as_deref().map(String::as_str),
            Some(OTHER_MODEL)
        );
        assert_eq!(map.len(), 2);
        assert!(map.find(&BackendId::new("c"), "m1").is_none());
    }

    #[test]
    fn a_hundred_thousand_hostile_model_names_stay_at_the_cap() {
        let map = KeyedMap::<u8>::new(DEFAULT_MODEL_CAP);
        let b = BackendId::new("b");
        for i in 0..100_000 {
            map.get_or_insert_with(&b, &format!("model-{i}"), |_, _| 0);
        }
        assert_eq!(map.len(), DEFAULT_MODEL_CAP + 1);
    }
}
