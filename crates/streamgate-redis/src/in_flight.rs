//! Requests in flight, per replica: this replica's own counts (written
//! behind the requests and refreshed before they expire) and the other
//! replicas' (a mirror fed by what they publish).
//!
//! Each replica writes its *absolute* count of a key under a key of its own
//! (`PREFIX:inflight:{backend/model}:REPLICA`) with a TTL, and publishes it.
//! Writing the count rather than each change makes a lost or repeated
//! write harmless, and many changes while one write waits collapse into
//! that one write. A replica that dies stops refreshing, so its count
//! expires from Redis and from every mirror after the TTL.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

use tokio::time::Instant;

use crate::mirror::MAX_FACTS;

/// This replica's requests and token estimates in flight for one key.
#[derive(Debug)]
pub(crate) struct Count {
    pub(crate) backend: Box<str>,
    pub(crate) model: Box<str>,
    requests: AtomicI64,
    tokens: AtomicI64,
    /// A write of this count is waiting in the queue: further changes are
    /// carried by it.
    queued: AtomicBool,
}

impl Count {
    fn new(backend: &str, model: &str) -> Self {
        Self {
            backend: backend.into(),
            model: model.into(),
            requests: AtomicI64::new(0),
            tokens: AtomicI64::new(0),
            queued: AtomicBool::new(false),
        }
    }

    pub(crate) fn add(&self, requests: i64, tokens: i64) {
        self.requests.fetch_add(requests, Ordering::AcqRel);
        self.tokens.fetch_add(tokens, Ordering::AcqRel);
    }

    /// The count now (never below zero).
    pub(crate) fn read(&self) -> (u64, u64) {
        let positive = |n: i64| u64::try_from(n).unwrap_or(0);
        (
            positive(self.requests.load(Ordering::Acquire)),
            positive(self.tokens.load(Ordering::Acquire)),
        )
    }

    /// Claims the next write: `false` if one is already queued.
    pub(crate) fn claim_write(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// The queued write is being made (or was dropped): a change from now
    /// on needs a write of its own.
    pub(crate) fn unclaim_write(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

/// One other replica's count of a key, until it expires.
#[derive(Debug, Clone, Copy)]
struct Peer {
    replica: u64,
    requests: u64,
    tokens: u64,
    until: Instant,
}

/// By backend then model, so a lookup borrows both names.
type ByKey<T> = HashMap<Box<str>, HashMap<Box<str>, T>>;

#[derive(Debug, Default)]
struct Peers {
    by_key: ByKey<Vec<Peer>>,
    len: usize,
}

#[derive(Debug, Default)]
struct Own {
    by_key: ByKey<Arc<Count>>,
    len: usize,
}

/// The in-flight counts of a fleet member. Both maps hold at most
/// [`MAX_FACTS`] entries: names come from requests and from other
/// replicas' messages, both outside input.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    own: Mutex<Own>,
    others: Mutex<Peers>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// This replica's count of (backend, model), made on first use; `None`
    /// past the cap (that key is then not shared).
    pub(crate) fn own(&self, backend: &str, model: &str) -> Option<Arc<Count>> {
        let mut own = lock(&self.own);
        if let Some(count) = own.by_key.get(backend).and_then(|m| m.get(model)) {
            return Some(Arc::clone(count));
        }
        if own.len >= MAX_FACTS {
            return None;
        }
        let count = Arc::new(Count::new(backend, model));
        own.by_key
            .entry(backend.into())
            .or_default()
            .insert(model.into(), Arc::clone(&count));
        own.len += 1;
        Some(count)
    }

    /// This replica's counts; with `idle`, those at zero too.
    pub(crate) fn own_counts(&self, idle: bool) -> Vec<Arc<Count>> {
        let own = lock(&self.own);
        own.by_key
            .values()
            .flat_map(HashMap::values)
            .filter(|count| idle || count.read() != (0, 0))
            .cloned()
            .collect()
    }

    /// The other replicas' live counts of (backend, model), summed.
    pub(crate) fn others(&self, backend: &str, model: &str) -> (u64, u64) {
        let peers = lock(&self.others);
        if peers.len == 0 {
            return (0, 0);
        }
        let Some(list) = peers.by_key.get(backend).and_then(|m| m.get(model)) else {
            return (0, 0);
        };
        let now = Instant::now();
        list.iter()
            .filter(|peer| peer.until > now)
            .fold((0, 0), |(requests, tokens), peer| {
                (
                    requests.saturating_add(peer.requests),
                    tokens.saturating_add(peer.tokens),
                )
            })
    }

    /// Keeps what `replica` said it has in flight for (backend, model)
    /// until `until`; a count of zero forgets it.
    pub(crate) fn set_other(
        &self,
        backend: &str,
        model: &str,
        replica: u64,
        (requests, tokens): (u64, u64),
        until: Instant,
    ) {
        let mut peers = lock(&self.others);
        let Peers { by_key, len } = &mut *peers;
        if (requests, tokens) == (0, 0) {
            if let Some(list) = by_key.get_mut(backend).and_then(|m| m.get_mut(model)) {
                let before = list.len();
                list.retain(|peer| peer.replica != replica);
                *len -= before - list.len();
            }
            return;
        }
        let peer = Peer {
            replica,
            requests,
            tokens,
            until,
        };
        if let Some(list) = by_key.get_mut(backend).and_then(|m| m.get_mut(model)) {
            if let Some(known) = list.iter_mut().find(|p| p.replica == replica) {
                *known = peer;
                return;
            }
        }
        if *len >= MAX_FACTS {
            let now = Instant::now();
            for models in by_key.values_mut() {
                for list in models.values_mut() {
                    let before = list.len();
                    list.retain(|peer| peer.until > now);
                    *len -= before - list.len();
                }
                models.retain(|_, list| !list.is_empty());
            }
            by_key.retain(|_, models| !models.is_empty());
            if *len >= MAX_FACTS {
                return;
            }
        }
        by_key
            .entry(backend.into())
            .or_default()
            .entry(model.into())
            .or_default()
            .push(peer);
        *len += 1;
    }

    /// Forgets every other replica's count (shared state is unreachable:
    /// decide from local counts alone).
    pub(crate) fn clear_others(&self) {
        *lock(&self.others) = Peers::default();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn other_replicas_counts_add_up_until_they_expire_or_reach_zero() {
        let in_flight = InFlight::default();
        let now = Instant::now();
        in_flight.set_other("b", "m", 1, (2, 200), now + Duration::from_secs(1));
        in_flight.set_other("b", "m", 2, (1, 50), now + Duration::from_secs(3));
        assert_eq!(in_flight.others("b", "m"), (3, 250));
        assert_eq!(in_flight.others("b", "other"), (0, 0));
        // A newer count replaces the replica's last one.
        in_flight.set_other("b", "m", 1, (1, 100), now + Duration::from_secs(1));
        assert_eq!(in_flight.others("b", "m"), (2, 150));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(in_flight.others("b", "m"), (1, 50), "replica 1 expired");
        in_flight.set_other("b", "m", 2, (0, 0), now + Duration::from_secs(3));
        assert_eq!(in_flight.others("b", "m"), (0, 0));
        in_flight.set_other("b", "m", 3, (4, 0), now + Duration::from_secs(9));
        in_flight.clear_others();
        assert_eq!(in_flight.others("b", "m"), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn both_maps_stop_growing_at_their_cap() {
        let in_flight = InFlight::default();
        let until = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_FACTS + 10 {
            in_flight.set_other("b", &i.to_string(), 1, (1, 0), until);
            assert_eq!(in_flight.own("b", &i.to_string()).is_some(), i < MAX_FACTS);
        }
        assert_eq!(lock(&in_flight.others).len, MAX_FACTS);
        assert_eq!(in_flight.others("b", &MAX_FACTS.to_string()), (0, 0));
        assert_eq!(lock(&in_flight.own).len, MAX_FACTS);
    }

    #[test]
    fn a_count_is_never_read_below_zero_and_one_write_carries_many_changes() {
        let count = Count::new("b", "m");
        count.add(-1, -10);
        assert_eq!(count.read(), (0, 0));
        count.add(3, 40);
        assert_eq!(count.read(), (2, 30));
        assert!(count.claim_write());
        assert!(!count.claim_write(), "one write is already queued");
        count.unclaim_write();
        assert!(count.claim_write());
    }
}
