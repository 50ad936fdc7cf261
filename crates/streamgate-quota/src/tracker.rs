//! The quota tracker: what is known about each (backend, model), and
//! whether it may be called now.
//!
//! Pure bookkeeping: every method takes `now`, nothing sleeps, and there are
//! no tower types here. [`QuotaLayer`](crate::QuotaLayer) connects it to
//! requests.
//!
//! # States
//!
//! - **Available**: nothing is known (never observed, or evicted).
//! - **Tracking**: limits or remaining counts are known and none is at zero.
//! - **Exhausted { until, reason }**: calls are refused until `until`.
//!
//! # Rules
//!
//! - A remaining count of zero (requests, tokens, or Anthropic's input or
//!   output tokens) exhausts the key until the latest reset among the
//!   depleted limits; without a reset, for the default cooldown.
//! - A 429 (or an in-band rate-limit error) exhausts the key until the
//!   later of its `retry-after` (a floor) and the latest reset among depleted
//!   limits; with neither, for the default cooldown. OpenAI's "Request too large" 429 is about one request
//!   and exhausts nothing.
//! - A cooldown is never shorter than the minimum cooldown (so never zero); a
//!   later, longer one extends it; a shorter one never shortens it.
//! - A remaining count is only believed until its reset (or, without a
//!   reset, for the freshness TTL): after that it is stale and ignored.
//! - Optionally (*predictive*), a request whose token estimate exceeds the
//!   fresh remaining tokens (the stricter of combined, input and output) is
//!   refused until that limit resets, without changing the key's state.
//!
//! # Memory
//!
//! At most [`max_keys`](QuotaTrackerBuilder::max_keys) keys are kept. When a
//! new key would exceed the cap, one key is evicted: the least recently
//! observed key that is not exhausted, or, when every key is exhausted, the
//! one whose exhaustion ends first. An evicted key is Available again.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::Duration,
};

use serde::Serialize;
use streamgate_core::{emit, BackendId, Event, QuotaState, SharedSink};
use tokio::time::Instant;

use crate::parse::{Limit, QuotaInfo};

/// Why a key is exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExhaustReason {
    /// No requests left in the window.
    RequestsDepleted,
    /// No tokens left in the window.
    TokensDepleted,
    /// No input tokens left (Anthropic).
    InputTokensDepleted,
    /// No output tokens left (Anthropic).
    OutputTokensDepleted,
    /// The provider answered 429 or sent a rate-limit error.
    RateLimited,
    /// The request's estimate exceeds the tokens left (predictive check; the
    /// key itself stays Tracking).
    InsufficientTokens,
}

impl ExhaustReason {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestsDepleted => "requests_depleted",
            Self::TokensDepleted => "tokens_depleted",
            Self::InputTokensDepleted => "input_tokens_depleted",
            Self::OutputTokensDepleted => "output_tokens_depleted",
            Self::RateLimited => "rate_limited",
            Self::InsufficientTokens => "insufficient_tokens",
        }
    }
}

impl fmt::Display for ExhaustReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RequestsDepleted => "no requests left",
            Self::TokensDepleted => "no tokens left",
            Self::InputTokensDepleted => "no input tokens left",
            Self::OutputTokensDepleted => "no output tokens left",
            Self::RateLimited => "rate limited",
            Self::InsufficientTokens => "fewer tokens left than the request needs",
        })
    }
}

/// A key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaStatus {
    /// Nothing is known.
    Available,
    /// Limits are known and none is exhausted.
    Tracking,
    /// Refused until `until`.
    Exhausted {
        /// When calls may resume (tokio time).
        until: Instant,
        /// Why.
        reason: ExhaustReason,
    },
}

impl QuotaStatus {
    /// The state as events report it.
    pub fn state(&self) -> QuotaState {
        match self {
            Self::Available => QuotaState::Available,
            Self::Tracking => QuotaState::Tracking,
            Self::Exhausted { .. } => QuotaState::Exhausted,
        }
    }

    /// How long it stays exhausted from `now`; `None` when not exhausted.
    pub fn exhausted_for(&self, now: Instant) -> Option<Duration> {
        match self {
            Self::Exhausted { until, .. } => Some(until.saturating_duration_since(now)),
            _ => None,
        }
    }
}

/// A refused admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// How long until the tracker expects to admit again.
    pub retry_after: Duration,
    /// Why.
    pub reason: ExhaustReason,
}

/// A builder's value was out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for ConfigError {}

impl ConfigError {
    pub(crate) fn new(message: &'static str) -> Self {
        Self(message)
    }
}

/// Limits learned from headers, for pacing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedLimits {
    /// Requests per window.
    pub requests: Option<(u64, Duration)>,
    /// Tokens (combined) per window.
    pub tokens: Option<(u64, Duration)>,
}

/// One key as [`QuotaTracker::snapshot`] shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeySnapshot {
    /// The backend.
    pub backend: BackendId,
    /// The model.
    pub model: String,
    /// `available`, `tracking` or `exhausted`.
    pub state: QuotaState,
    /// Why it is exhausted.
    pub reason: Option<ExhaustReason>,
    /// For how long, rounded up to whole milliseconds.
    pub exhausted_for_ms: Option<u64>,
    /// Fresh remaining requests.
    pub remaining_requests: Option<u64>,
    /// Fresh remaining tokens: the stricter of combined, input and output.
    pub remaining_tokens: Option<u64>,
    /// The request limit.
    pub limit_requests: Option<u64>,
    /// The token limit (combined).
    pub limit_tokens: Option<u64>,
}

const REQUESTS: usize = 0;
const TOKENS: usize = 1;
const INPUT: usize = 2;
const OUTPUT: usize = 3;
const DEPLETED: [ExhaustReason; 4] = [
    ExhaustReason::RequestsDepleted,
    ExhaustReason::TokensDepleted,
    ExhaustReason::InputTokensDepleted,
    ExhaustReason::OutputTokensDepleted,
];

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    limit: Option<u64>,
    window: Option<Duration>,
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// The remaining count is believed until then.
    fresh_until: Option<Instant>,
}

impl Bucket {
    fn fresh_remaining(&self, now: Instant) -> Option<u64> {
        match self.fresh_until {
            Some(t) if now < t => self.remaining,
            _ => None,
        }
    }

    fn learn(&mut self, limit: &Limit, now: Instant, ttl: Duration) {
        if limit.limit.is_some() {
            self.limit = limit.limit;
        }
        if limit.window.is_some() {
            self.window = limit.window;
        }
        if let Some(reset) = limit.reset_after {
            self.reset_at = Some(now + reset);
        }
        if let Some(remaining) = limit.remaining {
            self.remaining = Some(remaining);
            self.fresh_until = Some(match limit.reset_after {
                Some(reset) => now + reset,
                None => now + ttl,
            });
        }
    }
}

#[derive(Debug)]
struct Entry {
    buckets: [Bucket; 4],
    exhausted: Option<(Instant, ExhaustReason)>,
    last_seen: Instant,
    known: bool,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            buckets: [Bucket::default(); 4],
            exhausted: None,
            last_seen: now,
            known: false,
        }
    }

    fn status(&self, now: Instant) -> QuotaStatus {
        match self.exhausted {
            Some((until, reason)) if now < until => QuotaStatus::Exhausted { until, reason },
            _ if self.known => QuotaStatus::Tracking,
            _ => QuotaStatus::Available,
        }
    }

    fn remaining_tokens(&self, now: Instant) -> Option<(u64, usize)> {
        [TOKENS, INPUT, OUTPUT]
            .into_iter()
            .filter_map(|i| self.buckets[i].fresh_remaining(now).map(|r| (r, i)))
            .min_by_key(|(r, _)| *r)
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    default_cooldown: Duration,
    min_cooldown: Duration,
    freshness: Duration,
    max_keys: usize,
    predictive: bool,
}

/// Builds a [`QuotaTracker`].
#[derive(Clone)]
pub struct QuotaTrackerBuilder {
    config: Config,
    sink: SharedSink,
}

const DEFAULT_CONFIG: Config = Config {
    default_cooldown: Duration::from_secs(10),
    min_cooldown: Duration::from_millis(100),
    freshness: Duration::from_secs(60),
    max_keys: 4096,
    predictive: false,
};

impl Default for QuotaTrackerBuilder {
    fn default() -> Self {
        Self {
            config: DEFAULT_CONFIG,
            sink: None,
        }
    }
}

impl QuotaTrackerBuilder {
    /// How long a 429 without any retry information (or a zero remaining
    /// count without a reset) exhausts a key. Default 10 s: short enough that
    /// a backend without rate-limit headers comes back soon, long enough
    /// that it is not hammered while its per-minute window drains.
    #[must_use]
    pub fn default_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.default_cooldown = cooldown;
        self
    }

    /// The shortest exhaustion, so a `retry-after: 0` or a reset that is
    /// already due never means "retry at once". Default 100 ms, below
    /// every reset providers usually send.
    #[must_use]
    pub fn min_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.min_cooldown = cooldown;
        self
    }

    /// How long a remaining count without a reset time is believed.
    /// Default 60 s, the usual window.
    #[must_use]
    pub fn freshness(mut self, ttl: Duration) -> Self {
        self.config.freshness = ttl;
        self
    }

    /// The most (backend, model) keys kept. Default 4096.
    #[must_use]
    pub fn max_keys(mut self, max: usize) -> Self {
        self.config.max_keys = max;
        self
    }

    /// Refuse a request whose token estimate exceeds the tokens known to be
    /// left. Off by default: estimates are rough, and the provider may
    /// still accept.
    #[must_use]
    pub fn predictive(mut self, enabled: bool) -> Self {
        self.config.predictive = enabled;
        self
    }

    /// Reports every change of a key's state, exhaustion or remaining
    /// counts as [`Event::QuotaUpdate`].
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn streamgate_core::MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<QuotaTracker, ConfigError> {
        let c = self.config;
        if c.max_keys == 0 {
            return Err(ConfigError("max keys must be at least 1"));
        }
        if c.min_cooldown.is_zero() {
            return Err(ConfigError("minimum cooldown must not be zero"));
        }
        if c.default_cooldown < c.min_cooldown {
            return Err(ConfigError(
                "default cooldown must not be below the minimum cooldown",
            ));
        }
        if c.freshness.is_zero() {
            return Err(ConfigError("freshness must not be zero"));
        }
        Ok(QuotaTracker::from_parts(c, self.sink))
    }
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<BackendId, HashMap<Box<str>, Entry>>,
    len: usize,
}

impl Keys {
    fn get(&self, backend: &BackendId, model: &str) -> Option<&Entry> {
        self.map.get(backend)?.get(model)
    }

    fn get_mut(&mut self, backend: &BackendId, model: &str) -> Option<&mut Entry> {
        self.map.get_mut(backend)?.get_mut(model)
    }

    fn evict_one(&mut self, now: Instant) {
        let victim = self
            .map
            .iter()
            .flat_map(|(b, models)| models.iter().map(move |(m, e)| (b, m, e)))
            .min_by_key(|(_, _, e)| match e.exhausted {
                Some((until, _)) if now < until => (1, until),
                _ => (0, e.last_seen),
            })
            .map(|(b, m, _)| (b.clone(), m.clone()));
        if let Some((backend, model)) = victim {
            if let Some(models) = self.map.get_mut(&backend) {
                models.remove(&model);
                self.len -= 1;
                if models.is_empty() {
                    self.map.remove(&backend);
                }
            }
        }
    }

    fn entry(&mut self, backend: &BackendId, model: &str, now: Instant, cap: usize) -> &mut Entry {
        if self.get(backend, model).is_none() {
            while self.len >= cap {
                self.evict_one(now);
            }
            self.len += 1;
        }
        self.map
            .entry(backend.clone())
            .or_default()
            .entry(Box::from(model))
            .or_insert_with(|| Entry::new(now))
    }
}

struct Inner {
    config: Config,
    sink: SharedSink,
    keys: RwLock<Keys>,
    /// Set once the first key is created (keys are only ever replaced, never
    /// all removed), so that checks against a tracker that has learned
    /// nothing skip the lock and the lookups.
    populated: AtomicBool,
}

/// What each (backend, model) has left, learned from responses. Cheap to
/// clone; clones share state.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::{HeaderMap, StatusCode};
/// use streamgate_core::BackendId;
/// use streamgate_quota::{QuotaInfo, QuotaStatus, QuotaTracker};
/// use tokio::time::Instant;
///
/// let tracker = QuotaTracker::builder().build().unwrap();
/// let backend = BackendId::new("openai");
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "1.5s".parse().unwrap());
/// let info = QuotaInfo::parse(StatusCode::OK, &headers, None, SystemTime::now());
///
/// let now = Instant::now();
/// tracker.observe(&backend, "gpt-4o", &info, now);
/// let refusal = tracker.check(&backend, "gpt-4o", 0, now).unwrap_err();
/// assert_eq!(refusal.retry_after, Duration::from_millis(1500));
/// assert!(tracker.check(&backend, "gpt-4o", 0, now + Duration::from_millis(1500)).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct QuotaTracker {
    inner: Arc<Inner>,
}

impl Default for QuotaTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl QuotaTracker {
    /// A tracker with the defaults (see [`QuotaTrackerBuilder`]).
    pub fn new() -> Self {
        Self::from_parts(DEFAULT_CONFIG, None)
    }

    fn from_parts(config: Config, sink: SharedSink) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                sink,
                keys: RwLock::new(Keys::default()),
                populated: AtomicBool::new(false),
            }),
        }
    }

    /// Configures a tracker.
    pub fn builder() -> QuotaTrackerBuilder {
        QuotaTrackerBuilder::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Keys> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Keys> {
        self.inner.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request for `model` with `estimated_tokens` may be sent to
    /// `backend` now. A read lock and no allocation for a known key.
    pub fn check(
        &self,
        backend: &BackendId,
        model: &str,
        estimated_tokens: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.inner.populated.load(Ordering::Acquire) {
            return Ok(());
        }
        let expired = {
            let keys = self.read();
            let Some(entry) = keys.get(backend, model) else {
                return Ok(());
            };
            if let Some((until, reason)) = entry.exhausted {
                if now < until {
                    return Err(Refusal {
                        retry_after: until - now,
                        reason,
                    });
                }
            }
            self.predict(entry, estimated_tokens, now)?;
            entry.exhausted.is_some()
        };
        if expired {
            self.expire(backend, model, now);
        }
        Ok(())
    }

    fn predict(&self, entry: &Entry, estimate: u64, now: Instant) -> Result<(), Refusal> {
        if !self.inner.config.predictive || estimate == 0 {
            return Ok(());
        }
        match entry.remaining_tokens(now) {
            Some((remaining, i)) if remaining < estimate => {
                let until = entry.buckets[i]
                    .fresh_until
                    .unwrap_or(now + self.inner.config.default_cooldown);
                Err(Refusal {
                    retry_after: until.saturating_duration_since(now),
                    reason: ExhaustReason::InsufficientTokens,
                })
            }
            _ => Ok(()),
        }
    }

    /// Clears an exhaustion that has run out, and reports it.
    fn expire(&self, backend: &BackendId, model: &str, now: Instant) {
        let update = {
            let mut keys = self.write();
            let Some(entry) = keys.get_mut(backend, model) else {
                return;
            };
            match entry.exhausted {
                Some((until, _)) if now >= until => {
                    entry.exhausted = None;
                    Some(self.update_of(entry, now))
                }
                _ => None,
            }
        };
        if let Some(update) = update {
            self.report(backend, model, update);
        }
    }

    /// Learns from one response (or error). Returns the key's new status.
    pub fn observe(
        &self,
        backend: &BackendId,
        model: &str,
        info: &QuotaInfo,
        now: Instant,
    ) -> QuotaStatus {
        let rate_limited = info.is_rate_limited();
        self.observe_with(backend, model, info, rate_limited, now)
    }

    /// Learns from a rate-limit error reported without a 429 status (an
    /// in-band error event): like a 429.
    pub fn observe_rate_limited(
        &self,
        backend: &BackendId,
        model: &str,
        info: &QuotaInfo,
        now: Instant,
    ) -> QuotaStatus {
        self.observe_with(backend, model, info, true, now)
    }

    fn observe_with(
        &self,
        backend: &BackendId,
        model: &str,
        info: &QuotaInfo,
        rate_limited: bool,
        now: Instant,
    ) -> QuotaStatus {
        let c = self.inner.config;
        let has_limits = [
            &info.requests,
            &info.tokens,
            &info.input_tokens,
            &info.output_tokens,
        ]
        .iter()
        .any(|l| l.is_known());
        if !has_limits && !rate_limited {
            // Nothing to learn: do not create a key for it, nor take the
            // write lock.
            return self.status(backend, model, now);
        }
        let (status, update) = {
            let mut keys = self.write();
            let entry = keys.entry(backend, model, now, c.max_keys);
            if !self.inner.populated.load(Ordering::Relaxed) {
                self.inner.populated.store(true, Ordering::Release);
            }
            let before = self.update_of(entry, now);
            entry.last_seen = now;
            entry.known |= has_limits;
            let limits = [
                &info.requests,
                &info.tokens,
                &info.input_tokens,
                &info.output_tokens,
            ];
            for (bucket, limit) in entry.buckets.iter_mut().zip(limits) {
                bucket.learn(limit, now, c.freshness);
            }

            // The latest reset among fresh depleted limits of this response,
            // and whether any of them has no reset time at all.
            let mut candidate: Option<(Instant, ExhaustReason)> = None;
            let mut depleted_without_reset = None;
            for (i, limit) in limits.iter().enumerate() {
                if !limit.is_depleted() {
                    continue;
                }
                match limit.reset_after {
                    Some(reset) if reset.is_zero() => {} // already reset: stale
                    Some(reset) => {
                        let until = now + reset;
                        if candidate.is_none_or(|(u, _)| until > u) {
                            candidate = Some((until, DEPLETED[i]));
                        }
                    }
                    None => depleted_without_reset = Some(DEPLETED[i]),
                }
            }
            if rate_limited && !info.request_too_large {
                // Retry-After is a floor under what the depleted limits say.
                let until = match (info.retry_after.map(|after| now + after), candidate) {
                    (Some(floor), Some((reset, _))) => floor.max(reset),
                    (Some(floor), None) => floor,
                    (None, Some((reset, _))) => reset,
                    (None, None) => now + c.default_cooldown,
                };
                candidate = Some((until, ExhaustReason::RateLimited));
            } else if let (None, Some(reason)) = (candidate, depleted_without_reset) {
                candidate = Some((now + c.default_cooldown, reason));
            }
            let mut extended = false;
            if let Some((until, reason)) = candidate {
                let until = until.max(now + c.min_cooldown);
                match entry.exhausted {
                    Some((old, _)) if now < old && until <= old => {}
                    _ => {
                        extended = true;
                        entry.exhausted = Some((until, reason));
                    }
                }
            } else if entry.exhausted.is_some_and(|(until, _)| now >= until) {
                entry.exhausted = None;
            }
            let after = self.update_of(entry, now);
            // Counts matter to whoever displays them, so a response that only
            // moves `remaining` is reported too (once per response, never per
            // chunk).
            let changed = after.state != before.state
                || extended
                || after.remaining_requests != before.remaining_requests
                || after.remaining_tokens != before.remaining_tokens;
            (entry.status(now), changed.then_some(after))
        };
        if let Some(update) = update {
            self.report(backend, model, update);
        }
        status
    }

    fn update_of(&self, entry: &Entry, now: Instant) -> Update {
        let status = entry.status(now);
        Update {
            state: status.state(),
            exhausted_for: status.exhausted_for(now),
            remaining_requests: entry.buckets[REQUESTS].fresh_remaining(now),
            remaining_tokens: entry.remaining_tokens(now).map(|(r, _)| r),
        }
    }

    fn report(&self, backend: &BackendId, model: &str, update: Update) {
        emit(&self.inner.sink, || Event::QuotaUpdate {
            backend,
            model,
            state: update.state,
            exhausted_for: update.exhausted_for,
            remaining_requests: update.remaining_requests,
            remaining_tokens: update.remaining_tokens,
        });
    }

    /// The state of one key.
    pub fn status(&self, backend: &BackendId, model: &str, now: Instant) -> QuotaStatus {
        self.read()
            .get(backend, model)
            .map_or(QuotaStatus::Available, |e| e.status(now))
    }

    /// Limits learned from headers for one key, with their windows, for
    /// pacing. Only limits whose window the scheme states are returned.
    pub fn learned_limits(&self, backend: &BackendId, model: &str) -> LearnedLimits {
        let keys = self.read();
        let Some(entry) = keys.get(backend, model) else {
            return LearnedLimits::default();
        };
        let of = |b: &Bucket| Some((b.limit?, b.window?));
        LearnedLimits {
            requests: of(&entry.buckets[REQUESTS]),
            tokens: of(&entry.buckets[TOKENS]),
        }
    }

    /// Every key's state, for display, sorted by backend then model.
    pub fn snapshot(&self, now: Instant) -> Vec<KeySnapshot> {
        let keys = self.read();
        let mut out: Vec<KeySnapshot> = keys
            .map
            .iter()
            .flat_map(|(b, models)| models.iter().map(move |(m, e)| (b, m, e)))
            .map(|(backend, model, entry)| {
                let status = entry.status(now);
                KeySnapshot {
                    backend: backend.clone(),
                    model: model.to_string(),
                    state: status.state(),
                    reason: match status {
                        QuotaStatus::Exhausted { reason, .. } => Some(reason),
                        _ => None,
                    },
                    exhausted_for_ms: status.exhausted_for(now).map(ceil_ms),
                    remaining_requests: entry.buckets[REQUESTS].fresh_remaining(now),
                    remaining_tokens: entry.remaining_tokens(now).map(|(r, _)| r),
                    limit_requests: entry.buckets[REQUESTS].limit,
                    limit_tokens: entry.buckets[TOKENS].limit,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.backend, &a.model).cmp(&(&b.backend, &b.model)));
        out
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for QuotaTrackerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaTrackerBuilder")
            .field("config", &self.config)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaTracker")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Whole milliseconds, rounded up.
pub(crate) fn ceil_ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

struct Update {
    state: QuotaState,
    exhausted_for: Option<Duration>,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
}

#[cfg(test)]
mod tests;
