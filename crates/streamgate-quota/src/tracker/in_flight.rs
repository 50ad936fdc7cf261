//! Requests admitted but not yet answered, counted against what the last
//! headers said was left.
//!
//! Each tracked key has one [`Pending`] pair of counters, shared by
//! [`Arc`] with the [`InFlight`] guards of its requests, so releasing a
//! guard is two atomic subtractions: no lock and no lookup.
//!
//! With [shared state](crate::QuotaTrackerBuilder::shared), the key's
//! counters also carry the handle and the key's names, so that admitting
//! and releasing a request tell the other replicas (never awaited), and
//! admission counts theirs against the same remaining figures.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use streamgate_core::{
    state::{SharedQuota, StateKey},
    BackendId,
};

/// The admitted-but-unanswered requests of one key and their token
/// estimates.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    requests: AtomicU64,
    tokens: AtomicU64,
    shared: Option<Fleet>,
}

/// Where a key's in-flight counts are shared, and under which names.
#[derive(Debug)]
struct Fleet {
    state: Arc<dyn SharedQuota>,
    backend: BackendId,
    model: Arc<str>,
}

impl Fleet {
    fn add(&self, requests: i64, tokens: u64) {
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let tokens = if requests < 0 { -tokens } else { tokens };
        self.state
            .add_in_flight(StateKey::new(&self.backend, &self.model), requests, tokens);
    }
}

impl Pending {
    /// Counters whose changes are also shared through `state` under
    /// `backend` × `model` (the key's own name: `_OTHER` past the cap).
    pub(crate) fn shared(state: Arc<dyn SharedQuota>, backend: BackendId, model: Arc<str>) -> Self {
        Self {
            shared: Some(Fleet {
                state,
                backend,
                model,
            }),
            ..Self::default()
        }
    }

    /// The requests and token estimates the *other* replicas have in
    /// flight, as last known locally; `(0, 0)` without shared state.
    pub(crate) fn others(&self) -> (u64, u64) {
        self.shared.as_ref().map_or((0, 0), |fleet| {
            fleet
                .state
                .others_in_flight(StateKey::new(&fleet.backend, &fleet.model))
        })
    }

    /// Tells the other replicas that one more request with `tokens` is in
    /// flight here (after it was counted locally).
    pub(crate) fn admitted(&self, tokens: u64) {
        if let Some(fleet) = &self.shared {
            fleet.add(1, tokens);
        }
    }

    /// Requests in flight.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// Token estimates in flight.
    pub(crate) fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Acquire)
    }

    /// Counts one more request if fewer than `left` are in flight (`None`:
    /// no limit known). Atomic, so concurrent callers cannot all slip under
    /// the same `left`.
    pub(crate) fn take_request(&self, left: Option<u64>) -> bool {
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match left {
                Some(left) if n >= left => None,
                _ => Some(n.saturating_add(1)),
            })
            .is_ok()
    }

    /// Counts `estimate` more tokens if what is in flight leaves any of
    /// `left` (`None`: no limit known); with `whole`, only if all of
    /// `estimate` fits.
    pub(crate) fn take_tokens(&self, estimate: u64, left: Option<u64>, whole: bool) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match left {
                Some(left) if n >= left => None,
                Some(left) if whole && n.saturating_add(estimate) > left => None,
                _ => Some(n.saturating_add(estimate)),
            })
            .is_ok()
    }

    pub(crate) fn release(&self, requests: u64, tokens: u64) {
        for (counter, n) in [(&self.requests, requests), (&self.tokens, tokens)] {
            if n > 0 {
                // Saturating: a release never wraps the counter.
                let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    Some(c.saturating_sub(n))
                });
            }
        }
    }
}

/// One admitted request, counted against its key's remaining quota until
/// it is answered. Returned by
/// [`QuotaTracker::admit`](crate::QuotaTracker::admit); dropping it (or
/// [`release`](Self::release)) stops counting it. Hold it until the
/// response's headers have been [observed](crate::QuotaTracker::observe),
/// or until the request fails or is cancelled.
#[derive(Debug)]
#[must_use = "dropping the guard at once stops counting the request"]
pub struct InFlight {
    pending: Option<Arc<Pending>>,
    tokens: u64,
    /// Whether the other replicas were told (and must be told the end).
    published: bool,
}

impl InFlight {
    /// A guard for a request that is not counted (its key is unknown).
    pub(crate) fn untracked() -> Self {
        Self {
            pending: None,
            tokens: 0,
            published: false,
        }
    }

    pub(crate) fn counted(pending: Arc<Pending>, tokens: u64, published: bool) -> Self {
        Self {
            pending: Some(pending),
            tokens,
            published,
        }
    }

    /// Whether the request is counted against a known remaining quota.
    pub fn is_counted(&self) -> bool {
        self.pending.is_some()
    }

    /// Stops counting the request: it was answered.
    pub fn release(self) {}
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.release(1, self.tokens);
            if let (true, Some(fleet)) = (self.published, &pending.shared) {
                fleet.add(-1, self.tokens);
            }
        }
    }
}
