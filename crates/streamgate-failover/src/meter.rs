//! The sliding tokens-per-minute window: pure, with the clock as a parameter.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use streamgate_core::{keyed::KeyedMap, window::SlidingWindow, BackendId};
use tokio::time::Instant;

/// The nominal length of the window.
pub const WINDOW: Duration = streamgate_core::window::WINDOW;

/// What a [`TpmMeter`] holds at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpmSnapshot {
    /// Tokens recorded in the window.
    pub tokens_per_minute: u64,
    /// Requests admitted in the window.
    pub requests_per_minute: u64,
    /// Tokens reserved by requests still in flight.
    pub reserved: u64,
}

/// Admitting the tokens would exceed the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// When enough of the window will have expired to admit the same
    /// request, if expiry alone can make room (it cannot when the estimate
    /// plus the reservations in flight are over the budget by themselves).
    pub retry_after: Option<Duration>,
}

/// Core's sliding window, the origin its seconds count from, and the
/// reservations in flight. Not thread-safe; [`TpmMeter`] wraps it.
#[derive(Clone, Debug)]
struct Ring {
    origin: Option<Instant>,
    window: SlidingWindow,
    reserved: u64,
}

impl Ring {
    const fn new() -> Self {
        Self {
            origin: None,
            window: SlidingWindow::new(),
            reserved: 0,
        }
    }

    /// The second of `now` since the origin (the first instant seen); an
    /// instant before the newest second lands in it.
    fn second(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        now.saturating_duration_since(origin).as_secs()
    }

    /// `(tokens, requests)` in the window at `now`, moving it there.
    fn totals(&mut self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        self.totals_at(second)
    }

    /// `(tokens, requests)` in the window at `second`, moving it there.
    fn totals_at(&mut self, second: u64) -> (u64, u64) {
        self.window.advance(second);
        self.window.totals(second)
    }

    fn add(&mut self, now: Instant, tokens: u64, requests: u64) {
        let second = self.second(now);
        self.window.add(second, tokens, requests);
    }

    /// How long until expiry frees `need` tokens of the window, oldest
    /// second first. `None` if the whole window holds fewer.
    fn time_to_free(&self, now: Instant, need: u64) -> Option<Duration> {
        let origin = self.origin?;
        let second = self.window.freed_by(need)?;
        let expires = origin + Duration::from_secs(second);
        Some(expires.saturating_duration_since(now))
    }
}

/// Tokens and requests per minute over a sliding window, with reservations
/// for requests in flight.
///
/// # Window semantics
///
/// Time is cut into whole seconds counted from the first instant the meter
/// sees (its *origin*), not from the wall clock's minutes, so the window
/// slides by one second at a time and never resets at a minute boundary.
/// Tokens recorded during second `s` count while the current second `n`
/// satisfies `n - s <= 60`: the window is the current, partial second plus
/// the 60 whole seconds before it. So a recorded token is counted for at
/// least 60 s and less than 61 s. The meter never under-counts the last
/// 60 s; it over-counts by at most what was recorded in the one second just
/// before them, which for a budget gate is the safe side.
///
/// These are the semantics of core's [`SlidingWindow`] (the tracker's
/// tokens per minute use the same one): 61 one-second slots with running
/// totals, so recording and reading are O(1), memory is constant, and each
/// operation is one short critical section.
///
/// Every method takes `now`, so the arithmetic is tested on any clock.
/// Thread-safe: each call is one short critical section, and
/// [`try_reserve`](Self::try_reserve) checks and reserves in the same one, so
/// concurrent requests cannot all slip under a budget.
#[derive(Debug)]
pub struct TpmMeter {
    ring: Mutex<Ring>,
}

impl Default for TpmMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl TpmMeter {
    /// An empty meter; its origin is the first instant it is given.
    pub const fn new() -> Self {
        Self {
            ring: Mutex::new(Ring::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent after every statement that can panic
        // (none can), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `tokens` used at `now`.
    pub fn record_tokens(&self, now: Instant, tokens: u64) {
        self.lock().add(now, tokens, 0);
    }

    /// Records one request made at `now`.
    pub fn record_request(&self, now: Instant) {
        self.lock().add(now, 0, 1);
    }

    /// Tokens recorded in the window ending at `now`.
    pub fn tokens_per_minute(&self, now: Instant) -> u64 {
        self.lock().totals(now).0
    }

    /// Requests recorded in the window ending at `now`.
    pub fn requests_per_minute(&self, now: Instant) -> u64 {
        self.lock().totals(now).1
    }

    /// Tokens reserved by requests in flight.
    pub fn reserved(&self) -> u64 {
        self.lock().reserved
    }

    /// Window totals and reservations at `now`.
    pub fn snapshot(&self, now: Instant) -> TpmSnapshot {
        let mut ring = self.lock();
        let (tokens_per_minute, requests_per_minute) = ring.totals(now);
        TpmSnapshot {
            tokens_per_minute,
            requests_per_minute,
            reserved: ring.reserved,
        }
    }

    /// Admits a request expected to use `tokens`: if `limit` is set, only
    /// when window usage + reservations + `tokens` does not exceed it. On
    /// admission the tokens are reserved and the request is counted; the
    /// returned [`Reservation`] settles them with the real usage.
    pub fn try_reserve(
        self: &Arc<Self>,
        now: Instant,
        tokens: u64,
        limit: Option<u64>,
    ) -> Result<Reservation, BudgetExceeded> {
        self.reserve(now, tokens, limit)?;
        Ok(Reservation {
            meter: Arc::clone(self),
            tokens,
            settled: false,
        })
    }

    /// [`try_reserve`](Self::try_reserve) on a handle the caller gives up,
    /// which the reservation keeps: one reference count update less.
    pub(crate) fn try_reserve_owned(
        self: Arc<Self>,
        now: Instant,
        tokens: u64,
        limit: Option<u64>,
    ) -> Result<Reservation, BudgetExceeded> {
        self.reserve(now, tokens, limit)?;
        Ok(Reservation {
            meter: self,
            tokens,
            settled: false,
        })
    }

    fn reserve(&self, now: Instant, tokens: u64, limit: Option<u64>) -> Result<(), BudgetExceeded> {
        let mut ring = self.lock();
        // One conversion of `now` for the check and the count.
        let second = ring.second(now);
        let (used, _) = ring.totals_at(second);
        if let Some(limit) = limit {
            let wanted = used.saturating_add(ring.reserved).saturating_add(tokens);
            if wanted > limit {
                return Err(BudgetExceeded {
                    retry_after: ring.time_to_free(now, wanted - limit),
                });
            }
        }
        ring.reserved = ring.reserved.saturating_add(tokens);
        ring.window.add(second, 0, 1);
        Ok(())
    }

    fn settle(&self, now: Instant, reserved: u64, used: u64) {
        let mut ring = self.lock();
        ring.reserved = ring.reserved.saturating_sub(reserved);
        ring.add(now, used, 0);
    }
}

/// Tokens held for a request in flight.
///
/// [`settle`](Self::settle) it with the real usage when the stream ends;
/// dropped unsettled (a cancelled request), it records its estimate, since
/// the provider has likely billed for the prompt already.
#[derive(Debug)]
#[must_use = "a reservation records its estimate when dropped"]
pub struct Reservation {
    meter: Arc<TpmMeter>,
    tokens: u64,
    settled: bool,
}

impl Reservation {
    /// The tokens reserved.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Releases the reservation and records `used` tokens at `now`.
    pub fn settle(mut self, now: Instant, used: u64) {
        self.settled = true;
        self.meter.settle(now, self.tokens, used);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.meter.settle(Instant::now(), self.tokens, self.tokens);
        }
    }
}

/// The largest number of models a [`TpmRegistry`] keeps apart; further
/// models share one overflow meter, so outside input cannot grow memory
/// without bound.
pub const MAX_MODELS: usize = 64;

/// Meters keyed by model, for budgets that providers apply per model.
///
/// Kept in core's bounded [`KeyedMap`]: at most [`MAX_MODELS`] models get a
/// meter of their own, every further model shares one (under
/// [`OTHER_MODEL`](streamgate_core::keyed::OTHER_MODEL)). A lookup of a
/// known model takes a read lock, or none when the same thread asked last.
#[derive(Debug)]
pub struct TpmRegistry {
    models: KeyedMap<TpmMeter>,
    /// The map keys by backend too; a registry serves one.
    backend: BackendId,
}

impl Default for TpmRegistry {
    fn default() -> Self {
        Self {
            models: KeyedMap::new(MAX_MODELS),
            backend: BackendId::new(""),
        }
    }
}

impl TpmRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The meter of `model`, if it has one of its own.
    pub fn get(&self, model: &str) -> Option<Arc<TpmMeter>> {
        self.models.get(&self.backend, model)
    }

    /// The meter of `model`, created on first use (the shared overflow
    /// meter once [`MAX_MODELS`] models are known).
    pub fn meter(&self, model: &str) -> Arc<TpmMeter> {
        self.models
            .get_or_insert_with(&self.backend, model, |_, _| TpmMeter::new())
    }

    /// How many meters the registry holds (at most [`MAX_MODELS`] + 1).
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no meter was made yet.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn tokens_count_for_at_least_60_and_less_than_61_seconds() {
        let t0 = Instant::now();
        let meter = TpmMeter::new();
        meter.record_tokens(t0, 0); // origin
        meter.record_tokens(t0 + secs(10.9), 100);
        assert_eq!(meter.tokens_per_minute(t0 + secs(10.9)), 100);
        // 60 s after it was recorded it still counts...
        assert_eq!(meter.tokens_per_minute(t0 + secs(70.9)), 100);
        // ...until the second 61 s after its own second starts.
        assert_eq!(meter.tokens_per_minute(t0 + secs(70.999)), 100);
        assert_eq!(meter.tokens_per_minute(t0 + secs(71.0)), 0);
    }

    #[test]
    fn window_slides_per_second_instead_of_resetting_each_minute() {
        let t0 = Instant::now();
        let meter = TpmMeter::new();
        meter.record_tokens(t0, 0);
        meter.record_tokens(t0 + secs(50.0), 10);
        meter.record_tokens(t0 + secs(59.5), 20);
        // A clock-aligned minute would reset at 60 s; the window does not.
        assert_eq!(meter.tokens_per_minute(t0 + secs(60.0)), 30);
        assert_eq!(meter.tokens_per_minute(t0 + secs(100.0)), 30);
        // The older bucket decays first, then the newer one.
        assert_eq!(meter.tokens_per_minute(t0 + secs(111.0)), 20);
        assert_eq!(meter.tokens_per_minute(t0 + secs(120.0)), 0);
    }

    #[test]
    fn window_decays_bucket_by_bucket() {
        let t0 = Instant::now();
        let meter = TpmMeter::new();
        for s in 0..60 {
            meter.record_tokens(t0 + Duration::from_secs(s), 1);
        }
        assert_eq!(meter.tokens_per_minute(t0 + secs(59.5)), 60);
        assert_eq!(meter.tokens_per_minute(t0 + secs(60.5)), 60);
        for k in 1..=60u64 {
            let now = t0 + Duration::from_secs(60 + k);
            assert_eq!(meter.tokens_per_minute(now), 60 - k, "after {k} s");
        }
    }

    #[test]
    fn a_long_silence_clears_the_whole_ring() {
        let t0 = Instant::now();
        let meter = TpmMeter::new();
        meter.record_tokens(t0, 500);
        meter.record_request(t0);
        assert_eq!(meter.tokens_per_minute(t0 + secs(3600.0)), 0);
        assert_eq!(meter.requests_per_minute(t0 + secs(3600.0)), 0);
        meter.record_tokens(t0 + secs(3600.0), 7);
        assert_eq!(meter.tokens_per_minute(t0 + secs(3600.5)), 7);
    }

    #[test]
    fn an_instant_before_the_newest_bucket_lands_in_it() {
        let t0 = Instant::now();
        let meter = TpmMeter::new();
        meter.record_tokens(t0 + secs(30.0), 1);
        meter.record_tokens(t0 + secs(5.0), 2);
        assert_eq!(meter.tokens_per_minute(t0 + secs(90.5)), 3);
        assert_eq!(meter.tokens_per_minute(t0 + secs(91.0)), 0);
    }

    #[test]
    fn requests_per_minute_counts_admissions() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        for i in 0..5 {
            let r = meter.try_reserve(t0 + secs(i as f64), 10, None).unwrap();
            r.settle(t0 + secs(i as f64), 10);
        }
        assert_eq!(meter.requests_per_minute(t0 + secs(60.0)), 5);
        assert_eq!(meter.requests_per_minute(t0 + secs(61.0)), 4);
        assert_eq!(meter.tokens_per_minute(t0 + secs(61.0)), 40);
    }

    #[test]
    fn budget_counts_usage_reservations_and_the_estimate() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        meter.record_tokens(t0, 400);
        let held = meter.try_reserve(t0, 300, Some(1000)).unwrap();
        assert_eq!(meter.reserved(), 300);
        // 400 + 300 + 300 = 1000: exactly at the budget is admitted.
        let at_limit = meter.try_reserve(t0, 300, Some(1000)).unwrap();
        let over = meter.try_reserve(t0, 1, Some(1000)).unwrap_err();
        // Expiry of the 400 tokens at 61 s makes room for one more token.
        assert_eq!(over.retry_after, Some(Duration::from_secs(61)));
        at_limit.settle(t0, 300);
        held.settle(t0, 300);
        assert_eq!(meter.reserved(), 0);
    }

    #[test]
    fn retry_after_is_when_enough_old_buckets_have_expired() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        meter.record_tokens(t0, 0);
        meter.record_tokens(t0 + secs(10.2), 100);
        meter.record_tokens(t0 + secs(20.7), 100);
        meter.record_tokens(t0 + secs(30.0), 100);
        let now = t0 + secs(40.5);
        // Need 150 freed: the buckets of seconds 10 and 20 must expire,
        // which happens when second 81 starts.
        let err = meter.try_reserve(now, 150, Some(300)).unwrap_err();
        assert_eq!(err.retry_after, Some(secs(81.0 - 40.5)));
        // Retrying then succeeds.
        assert!(meter.try_reserve(t0 + secs(81.0), 150, Some(300)).is_ok());
    }

    #[test]
    fn reservations_alone_over_budget_give_no_retry_time() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        let _held = meter.try_reserve(t0, 900, Some(1000)).unwrap();
        let err = meter.try_reserve(t0, 200, Some(1000)).unwrap_err();
        assert_eq!(err.retry_after, None);
        let err = meter.try_reserve(t0, 5000, Some(1000)).unwrap_err();
        assert_eq!(err.retry_after, None);
    }

    #[test]
    fn settling_replaces_the_estimate_with_real_usage() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        let r = meter.try_reserve(t0, 500, Some(1000)).unwrap();
        assert_eq!(meter.snapshot(t0).reserved, 500);
        assert_eq!(meter.tokens_per_minute(t0), 0);
        r.settle(t0 + secs(2.0), 120);
        assert_eq!(
            meter.snapshot(t0 + secs(2.0)),
            TpmSnapshot {
                tokens_per_minute: 120,
                requests_per_minute: 1,
                reserved: 0
            }
        );
        // The settled usage sits in the bucket of the settling second.
        assert_eq!(meter.tokens_per_minute(t0 + secs(62.9)), 120);
        assert_eq!(meter.tokens_per_minute(t0 + secs(63.0)), 0);
    }

    #[test]
    fn a_dropped_reservation_keeps_its_estimate() {
        let t0 = Instant::now();
        let meter = Arc::new(TpmMeter::new());
        let r = meter.try_reserve(t0, 250, None).unwrap();
        assert_eq!(r.tokens(), 250);
        drop(r);
        assert_eq!(meter.reserved(), 0);
        assert_eq!(meter.tokens_per_minute(Instant::now()), 250);
    }

    #[test]
    fn registry_keeps_models_apart_and_bounds_their_number() {
        let registry = TpmRegistry::new();
        let a = registry.meter("gpt-4o");
        let b = registry.meter("gpt-4o-mini");
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &registry.meter("gpt-4o")));
        assert!(registry.get("unknown").is_none());
        for i in 0..MAX_MODELS {
            let _ = registry.meter(&format!("m{i}"));
        }
        let x = registry.meter("one-too-many");
        let y = registry.meter("two-too-many");
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(registry.len(), MAX_MODELS + 1);
    }
}
