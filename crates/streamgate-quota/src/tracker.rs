//! The quota tracker: what is known about each (backend, model), and
//! whether it may be called now.
//!
//! Pure bookkeeping: every method takes `now`, nothing sleeps, and there are
//! no tower types here. [`QuotaLayer`](crate::QuotaLayer) connects it to
//! requests.
//!
//! # States
//!
//! - **Available**: nothing is known (never observed).
//! - **Tracking**: limits or remaining counts are known and none is at zero.
//! - **Exhausted { until, reason }**: calls are refused until `until`.
//!
//! # Rules
//!
//! - A remaining count of zero (requests, tokens, or Anthropic's input or
//!   output tokens, in the primary figure or in any other
//!   [window](crate::QuotaInfo::windows)) exhausts the key until the latest
//!   reset among the depleted limits; without a reset, for the default
//!   cooldown. A *negative* remaining count (Azure, oversubscribed) is
//!   reported as 0 left but exhausts nothing on its own: the provider still
//!   accepted the request it came with.
//! - A limit of zero means the key has no allowance at all (a free tier
//!   without this model): the key is exhausted for the
//!   [zero-allowance cooldown](QuotaTrackerBuilder::zero_allowance_cooldown)
//!   (default 1 hour) with reason [`ExhaustReason::NoAllowance`], so it is
//!   not retried in a loop.
//! - Every wait a provider asks for (`retry-after`, a reset) is honoured up
//!   to [`max_wait`](QuotaTrackerBuilder::max_wait) (default 1 hour); a
//!   longer one is cut to it, and the [`Event::QuotaUpdate`] says so
//!   (`wait_capped`).
//! - A 429 (or an in-band rate-limit error) exhausts the key until the
//!   later of its `retry-after` (a floor) and the latest reset among depleted
//!   limits; with neither, for the default cooldown. OpenAI's "Request too large" 429 is about one request
//!   and exhausts nothing.
//! - A cooldown is never shorter than the minimum cooldown (so never zero); a
//!   later, longer one extends it; a shorter one never shortens it.
//! - A remaining count is only believed until its reset (or, without a
//!   reset, for the freshness TTL): after that it is stale and ignored.
//! - Optionally (*predictive*), a request whose token estimate exceeds the
//!   fresh remaining tokens (the stricter of combined, input and output,
//!   less the estimates in flight) is refused until that limit resets,
//!   without changing the key's state.
//!
//! # In flight
//!
//! [`QuotaTracker::admit`] counts each admitted request (and its token
//! estimate) until its [`InFlight`] guard is dropped, which the caller does
//! once the response's headers have been observed, or when the request
//! fails or is cancelled. While headers last said `remaining: 5`, at most 5
//! requests are admitted before an answer brings fresh figures; the rest
//! are refused with [`ExhaustReason::InFlight`]. Fresh headers replace the
//! baseline; the requests still unanswered keep counting against it (the
//! provider may not have seen them yet), which errs on the side of not
//! sending. A negative remaining count (see above) does not gate.
//!
//! With [shared state](QuotaTrackerBuilder::shared), every replica tells
//! the others how many requests (and estimated tokens) it has in flight
//! for a key, and each counts the others' requests against the same
//! remaining figures: four replicas that last read `remaining: 5` admit 5
//! between them, not 20. The others' counts are read from the shared
//! state's local answer (no remote call at admission) and written behind
//! the request; they are shared for keys this replica tracks (it has
//! observed headers for them), as the local count is.
//!
//! # Memory
//!
//! Keys live in core's bounded [`KeyedMap`]: at most
//! [`model_cap`](QuotaTrackerBuilder::model_cap) models per backend
//! (default [`DEFAULT_MODEL_CAP`], 32) get a key of their own; every model
//! first seen past the cap shares one key, reported under the model
//! [`OTHER_MODEL`](streamgate_core::keyed::OTHER_MODEL). Model names come
//! from callers, so made-up names cannot grow memory, and a new key costs
//! O(1): nothing is ever evicted or scanned. What one overflow model learns
//! (a 429, a depleted limit) gates every overflow model of that backend:
//! sharing errs on the side of not sending. Each key has its own lock, so
//! requests for different keys never wait for each other.

use std::{
    error::Error,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::Duration,
};

use serde::Serialize;
use streamgate_core::{
    emit,
    keyed::{KeyedMap, DEFAULT_MODEL_CAP},
    state::{InProcess, SharedQuota, StateKey},
    BackendId, Event, QuotaState, SharedSink,
};
use tokio::time::Instant;

use crate::parse::{Limit, LimitKind, QuotaInfo};

mod in_flight;

pub use in_flight::InFlight;
use in_flight::Pending;

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
    /// A limit is zero: the key has no allowance for this model at all.
    NoAllowance,
    /// What is left is taken by requests in flight (the key itself stays
    /// Tracking).
    InFlight,
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
            Self::NoAllowance => "no_allowance",
            Self::InFlight => "in_flight",
        }
    }

    /// The reason [`as_str`](Self::as_str) names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::RequestsDepleted,
            Self::TokensDepleted,
            Self::InputTokensDepleted,
            Self::OutputTokensDepleted,
            Self::RateLimited,
            Self::InsufficientTokens,
            Self::NoAllowance,
            Self::InFlight,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == name)
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
            Self::NoAllowance => "no allowance for this model (limit 0)",
            Self::InFlight => "what is left is taken by requests in flight",
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
const DEPLETED: [ExhaustReason; 4] = [
    ExhaustReason::RequestsDepleted,
    ExhaustReason::TokensDepleted,
    ExhaustReason::InputTokensDepleted,
    ExhaustReason::OutputTokensDepleted,
];

fn index_of(kind: LimitKind) -> usize {
    match kind {
        LimitKind::Requests => 0,
        LimitKind::Tokens => 1,
        LimitKind::InputTokens => 2,
        LimitKind::OutputTokens => 3,
    }
}

/// `now + d`, saturating far in the future instead of panicking. Every
/// duration added is capped well below the point where this matters.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_DURATION))
        .unwrap_or(now)
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    limit: Option<u64>,
    window: Option<Duration>,
    /// Signed as sent.
    remaining: Option<i64>,
    reset_at: Option<Instant>,
    /// The remaining count is believed until then.
    fresh_until: Option<Instant>,
}

impl Bucket {
    fn fresh_remaining(&self, now: Instant) -> Option<i64> {
        match self.fresh_until {
            Some(t) if now < t => self.remaining,
            _ => None,
        }
    }

    /// Learns `limit`; `reset` is its reset already capped.
    fn learn(&mut self, limit: &Limit, reset: Option<Duration>, now: Instant, ttl: Duration) {
        if limit.limit.is_some() {
            self.limit = limit.limit;
        }
        if limit.window.is_some() {
            self.window = limit.window;
        }
        if let Some(reset) = reset {
            self.reset_at = Some(later(now, reset));
        }
        if let Some(remaining) = limit.remaining {
            self.remaining = Some(remaining);
            self.fresh_until = Some(later(now, reset.unwrap_or(ttl)));
        }
    }
}

/// A fresh remaining count and until when it is believed.
#[derive(Clone, Copy)]
struct Left {
    remaining: i64,
    fresh_until: Instant,
}

impl Left {
    /// The count for scheduling: a negative count is zero.
    fn scheduled(self) -> u64 {
        u64::try_from(self.remaining).unwrap_or(0)
    }
}

#[derive(Debug)]
struct Entry {
    buckets: [Bucket; 4],
    /// Limits beside the primary figures, by kind and name. Names come from
    /// the parser's fixed table, so this holds at most a few dozen.
    windows: Vec<(LimitKind, &'static str, Bucket)>,
    exhausted: Option<(Instant, ExhaustReason)>,
    known: bool,
    pending: Arc<Pending>,
}

impl Entry {
    fn new(pending: Option<Pending>) -> Self {
        Self {
            buckets: [Bucket::default(); 4],
            windows: Vec::new(),
            exhausted: None,
            known: false,
            pending: Arc::new(pending.unwrap_or_default()),
        }
    }

    fn status(&self, now: Instant) -> QuotaStatus {
        match self.exhausted {
            Some((until, reason)) if now < until => QuotaStatus::Exhausted { until, reason },
            _ if self.known => QuotaStatus::Tracking,
            _ => QuotaStatus::Available,
        }
    }

    fn bucket_mut(&mut self, kind: LimitKind, window: Option<&'static str>) -> &mut Bucket {
        let Some(name) = window else {
            return &mut self.buckets[index_of(kind)];
        };
        let i = match self
            .windows
            .iter()
            .position(|(k, n, _)| *k == kind && *n == name)
        {
            Some(i) => i,
            None => {
                self.windows.push((kind, name, Bucket::default()));
                self.windows.len() - 1
            }
        };
        &mut self.windows[i].2
    }

    /// The strictest fresh remaining count among `kinds`, every window
    /// included.
    fn left(&self, kinds: &[LimitKind], now: Instant) -> Option<Left> {
        let primaries = kinds.iter().map(|k| &self.buckets[index_of(*k)]);
        let windows = self
            .windows
            .iter()
            .filter(|(k, _, _)| kinds.contains(k))
            .map(|(_, _, b)| b);
        primaries
            .chain(windows)
            .filter_map(|b| {
                Some(Left {
                    remaining: b.fresh_remaining(now)?,
                    fresh_until: b.fresh_until?,
                })
            })
            .min_by_key(|l| (l.remaining, std::cmp::Reverse(l.fresh_until)))
    }

    fn requests_left(&self, now: Instant) -> Option<Left> {
        self.left(&[LimitKind::Requests], now)
    }

    fn tokens_left(&self, now: Instant) -> Option<Left> {
        self.left(
            &[
                LimitKind::Tokens,
                LimitKind::InputTokens,
                LimitKind::OutputTokens,
            ],
            now,
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    default_cooldown: Duration,
    min_cooldown: Duration,
    zero_allowance_cooldown: Duration,
    max_wait: Duration,
    freshness: Duration,
    model_cap: usize,
    predictive: bool,
}

/// Builds a [`QuotaTracker`].
#[derive(Clone)]
pub struct QuotaTrackerBuilder {
    config: Config,
    sink: SharedSink,
    shared: Option<Arc<dyn SharedQuota>>,
}

/// The longest duration any setting of the builder accepts: a year. Longer
/// values are refused by [`QuotaTrackerBuilder::build`], so that no
/// `now + duration` can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

const DEFAULT_CONFIG: Config = Config {
    default_cooldown: Duration::from_secs(10),
    min_cooldown: Duration::from_millis(100),
    zero_allowance_cooldown: Duration::from_secs(3600),
    max_wait: Duration::from_secs(3600),
    freshness: Duration::from_secs(60),
    model_cap: DEFAULT_MODEL_CAP,
    predictive: false,
};

impl Default for QuotaTrackerBuilder {
    fn default() -> Self {
        Self {
            config: DEFAULT_CONFIG,
            sink: None,
            shared: None,
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

    /// How long a limit of zero (no allowance for this model at all)
    /// exhausts a key. Default 1 hour: waiting within a window cannot give
    /// an allowance, so the key is asked again only rarely, in case the
    /// account was upgraded.
    #[must_use]
    pub fn zero_allowance_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.zero_allowance_cooldown = cooldown;
        self
    }

    /// The longest provider-supplied wait honoured (`retry-after`, a reset
    /// time): a longer one is cut to this, and the update event says so.
    /// Default 1 hour: no per-minute or per-hour limit needs more, and one
    /// hostile or broken response (`retry-after: 999999999`) cannot take a
    /// backend out for decades.
    #[must_use]
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.config.max_wait = max;
        self
    }

    /// How long a remaining count without a reset time is believed.
    /// Default 60 s, the usual window.
    #[must_use]
    pub fn freshness(mut self, ttl: Duration) -> Self {
        self.config.freshness = ttl;
        self
    }

    /// The most models per backend that get a key of their own (default
    /// [`DEFAULT_MODEL_CAP`], 32, as for the breaker registry and the
    /// metrics tracker; at least 1); every further model of that backend
    /// shares one key, reported under the model `_OTHER`. Model names come
    /// from callers, so made-up names cannot grow memory, and a new key
    /// costs O(1) (nothing is evicted). What one model past the cap learns
    /// (a 429, a depleted limit) gates every model past it on that backend.
    #[must_use]
    pub fn model_cap(mut self, cap: usize) -> Self {
        self.config.model_cap = cap;
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

    /// Shares what the tracker learns with other replicas through `state`
    /// (for example `streamgate-redis`): an exhaustion learned here is
    /// published with its reset, and one learned by another replica
    /// refuses here too until its reset; requests in flight here count
    /// against the remaining figures of the other replicas, and theirs
    /// here (see [`QuotaTracker::admit`]). Without it the knowledge is
    /// this process's alone ([`InProcess`]).
    #[must_use]
    pub fn shared(mut self, state: Arc<dyn SharedQuota>) -> Self {
        self.shared = Some(state);
        self
    }

    /// Checks the configuration: no duration may exceed [`MAX_DURATION`],
    /// and none of the cooldowns or the maximum wait may be below the
    /// minimum cooldown.
    pub fn build(self) -> Result<QuotaTracker, ConfigError> {
        let c = self.config;
        if c.model_cap == 0 {
            return Err(ConfigError("model cap must be at least 1"));
        }
        if c.min_cooldown.is_zero() {
            return Err(ConfigError("minimum cooldown must not be zero"));
        }
        let durations = [
            (
                c.default_cooldown,
                "default cooldown must be at most a year",
            ),
            (c.min_cooldown, "minimum cooldown must be at most a year"),
            (
                c.zero_allowance_cooldown,
                "zero-allowance cooldown must be at most a year",
            ),
            (c.max_wait, "maximum wait must be at most a year"),
            (c.freshness, "freshness must be at most a year"),
        ];
        for (d, message) in durations {
            if d > MAX_DURATION {
                return Err(ConfigError(message));
            }
        }
        if c.default_cooldown < c.min_cooldown {
            return Err(ConfigError(
                "default cooldown must not be below the minimum cooldown",
            ));
        }
        if c.zero_allowance_cooldown < c.min_cooldown {
            return Err(ConfigError(
                "zero-allowance cooldown must not be below the minimum cooldown",
            ));
        }
        if c.max_wait < c.min_cooldown {
            return Err(ConfigError(
                "maximum wait must not be below the minimum cooldown",
            ));
        }
        if c.freshness.is_zero() {
            return Err(ConfigError("freshness must not be zero"));
        }
        let mut tracker = QuotaTracker::from_parts(c, self.sink);
        if let (Some(shared), Some(inner)) = (self.shared, Arc::get_mut(&mut tracker.inner)) {
            inner.shared = shared;
            inner.sharing = true;
        }
        Ok(tracker)
    }
}

/// One key: the model it is stored under, and its state.
struct Slot {
    /// The model, or `_OTHER` for the key shared past the cap.
    model: Arc<str>,
    entry: RwLock<Entry>,
}

impl Slot {
    fn read(&self) -> RwLockReadGuard<'_, Entry> {
        // Nothing under the lock can leave it inconsistent: recover from poison.
        self.entry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entry> {
        self.entry.write().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    config: Config,
    sink: SharedSink,
    keys: KeyedMap<Slot>,
    /// Set once the first key is created (keys are never removed), so that
    /// checks against a tracker that has learned nothing skip the lookups.
    populated: AtomicBool,
    /// What the replicas of a fleet agree on; [`InProcess`] by default.
    shared: Arc<dyn SharedQuota>,
    /// Whether `shared` was given (in-flight counts are then shared too).
    sharing: bool,
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
                keys: KeyedMap::new(config.model_cap),
                populated: AtomicBool::new(false),
                shared: Arc::new(InProcess),
                sharing: false,
            }),
        }
    }

    /// Configures a tracker.
    pub fn builder() -> QuotaTrackerBuilder {
        QuotaTrackerBuilder::default()
    }

    /// The key `backend` × `model` is kept under, if there is one yet.
    fn find(&self, backend: &BackendId, model: &str) -> Option<Arc<Slot>> {
        self.inner.keys.find(backend, model)
    }

    /// Whether a request for `model` with `estimated_tokens` may be sent to
    /// `backend` now, counting the requests in flight but without adding
    /// this one (see [`admit`](Self::admit)). Read locks and no allocation
    /// for a known key.
    pub fn check(
        &self,
        backend: &BackendId,
        model: &str,
        estimated_tokens: u64,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.admit_with(backend, model, estimated_tokens, now, false)
            .map(InFlight::release)
    }

    /// Admits a request for `model` with `estimated_tokens` to `backend`
    /// now, or says why not. An admitted request counts against what the
    /// key's last headers said was left (requests and tokens) until the
    /// returned guard is dropped: drop it once the response's headers have
    /// been observed, or when the request ends without them. A read lock,
    /// a few atomic operations and no allocation for a known key; a key
    /// never observed admits everything uncounted. A model past the
    /// [cap](QuotaTrackerBuilder::model_cap) is judged by the shared key.
    ///
    /// With [shared state](QuotaTrackerBuilder::shared), the requests the
    /// other replicas have in flight for the key count against the same
    /// figures, and this one is added to what they see (written behind,
    /// never awaited) until the guard is dropped.
    pub fn admit(
        &self,
        backend: &BackendId,
        model: &str,
        estimated_tokens: u64,
        now: Instant,
    ) -> Result<InFlight, Refusal> {
        self.admit_with(backend, model, estimated_tokens, now, true)
    }

    /// [`admit`](Self::admit); `publish`: tell the other replicas.
    fn admit_with(
        &self,
        backend: &BackendId,
        model: &str,
        estimated_tokens: u64,
        now: Instant,
        publish: bool,
    ) -> Result<InFlight, Refusal> {
        // What another replica learned, from the shared state's local answer.
        if let Some(exhaustion) = self
            .inner
            .shared
            .exhausted_until(StateKey::new(backend, model), now)
        {
            if now < exhaustion.until {
                return Err(Refusal {
                    retry_after: exhaustion.until - now,
                    reason: ExhaustReason::from_name(&exhaustion.reason)
                        .unwrap_or(ExhaustReason::RateLimited),
                });
            }
        }
        if !self.inner.populated.load(Ordering::Acquire) {
            return Ok(InFlight::untracked());
        }
        let Some(slot) = self.find(backend, model) else {
            return Ok(InFlight::untracked());
        };
        let (admitted, expired) = {
            let entry = slot.read();
            if let Some((until, reason)) = entry.exhausted {
                if now < until {
                    return Err(Refusal {
                        retry_after: until - now,
                        reason,
                    });
                }
            }
            (
                self.reserve(&entry, estimated_tokens, now, publish)?,
                entry.exhausted.is_some(),
            )
        };
        if expired {
            self.expire(backend, &slot, now);
        }
        Ok(admitted)
    }

    /// Counts one request against the fresh remaining counts, or refuses.
    fn reserve(
        &self,
        entry: &Entry,
        estimate: u64,
        now: Instant,
        publish: bool,
    ) -> Result<InFlight, Refusal> {
        let c = &self.inner.config;
        let refuse = |left: Left, reason| Refusal {
            retry_after: left
                .fresh_until
                .saturating_duration_since(now)
                .max(c.min_cooldown),
            reason,
        };
        let pending = &entry.pending;
        // A negative count does not gate (see the module docs).
        let requests = entry.requests_left(now).filter(|l| l.remaining >= 0);
        let tokens = entry.tokens_left(now).filter(|l| l.remaining >= 0);
        // What the other replicas have in flight counts against the same
        // figures: the provider answers them from the same quota.
        let (other_requests, other_tokens) = if requests.is_some() || tokens.is_some() {
            pending.others()
        } else {
            (0, 0)
        };
        let requests_left = requests.map(|l| l.scheduled().saturating_sub(other_requests));
        let tokens_left = tokens.map(|l| l.scheduled().saturating_sub(other_tokens));
        if let (Some(left), Some(tokens_left)) = (tokens, tokens_left) {
            let available = tokens_left.saturating_sub(pending.tokens());
            if c.predictive && estimate > 0 && available < estimate {
                return Err(Refusal {
                    retry_after: left.fresh_until.saturating_duration_since(now),
                    reason: ExhaustReason::InsufficientTokens,
                });
            }
        }
        if !pending.take_request(requests_left) {
            return Err(requests.map_or(
                Refusal {
                    retry_after: c.min_cooldown,
                    reason: ExhaustReason::InFlight,
                },
                |l| refuse(l, ExhaustReason::InFlight),
            ));
        }
        if !pending.take_tokens(estimate, tokens_left, c.predictive) {
            pending.release(1, 0);
            return Err(tokens.map_or(
                Refusal {
                    retry_after: c.min_cooldown,
                    reason: ExhaustReason::InFlight,
                },
                |l| refuse(l, ExhaustReason::InFlight),
            ));
        }
        if publish {
            pending.admitted(estimate);
        }
        Ok(InFlight::counted(entry.pending.clone(), estimate, publish))
    }

    /// Clears an exhaustion that has run out, and reports it.
    fn expire(&self, backend: &BackendId, slot: &Slot, now: Instant) {
        let update = {
            let mut entry = slot.write();
            match entry.exhausted {
                Some((until, _)) if now >= until => {
                    entry.exhausted = None;
                    Some(self.update_of(&entry, now, false))
                }
                _ => None,
            }
        };
        if let Some(update) = update {
            self.report(backend, &slot.model, update);
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
        let has_limits = info.all_limits().next().is_some();
        if !has_limits && !rate_limited {
            // Nothing to learn: do not create a key for it, nor take the
            // write lock.
            return self.status(backend, model, now);
        }
        let mut capped = false;
        let mut cap = |d: Duration| {
            if d > c.max_wait {
                capped = true;
                c.max_wait
            } else {
                d
            }
        };
        let slot = self
            .inner
            .keys
            .get_or_insert_with(backend, model, |backend, key| Slot {
                model: key.clone(),
                entry: RwLock::new(Entry::new(self.inner.sharing.then(|| {
                    Pending::shared(Arc::clone(&self.inner.shared), backend.clone(), key.clone())
                }))),
            });
        if !self.inner.populated.load(Ordering::Relaxed) {
            self.inner.populated.store(true, Ordering::Release);
        }
        let (status, update) = {
            let mut guard = slot.write();
            let entry = &mut *guard;
            let before = self.update_of(entry, now, false);
            entry.known |= has_limits;

            // The latest reset among fresh depleted limits of this response,
            // whether any of them has no reset time at all, and whether any
            // limit is zero.
            let mut candidate: Option<(Instant, ExhaustReason)> = None;
            let mut depleted_without_reset = None;
            let mut zero_allowance = false;
            let primaries = LimitKind::ALL.map(|k| (k, None, info.primary(k)));
            let windows = info
                .windows
                .iter()
                .map(|w| (w.kind, Some(w.name), &w.limit));
            for (kind, name, limit) in primaries.into_iter().chain(windows) {
                if !limit.is_known() {
                    continue;
                }
                let reset = limit.reset_after.map(&mut cap);
                entry
                    .bucket_mut(kind, name)
                    .learn(limit, reset, now, c.freshness);
                zero_allowance |= limit.is_zero_allowance();
                if !limit.is_depleted() {
                    continue;
                }
                let reason = DEPLETED[index_of(kind)];
                match reset {
                    Some(reset) if reset.is_zero() => {} // already reset: stale
                    Some(reset) => {
                        let until = later(now, reset);
                        if candidate.is_none_or(|(u, _)| until > u) {
                            candidate = Some((until, reason));
                        }
                    }
                    None => depleted_without_reset = Some(reason),
                }
            }
            if rate_limited && !info.request_too_large {
                // Retry-After is a floor under what the depleted limits say.
                let floor = info.retry_after.map(|after| later(now, cap(after)));
                let until = match (floor, candidate) {
                    (Some(floor), Some((reset, _))) => floor.max(reset),
                    (Some(floor), None) => floor,
                    (None, Some((reset, _))) => reset,
                    (None, None) => later(now, c.default_cooldown),
                };
                candidate = Some((until, ExhaustReason::RateLimited));
            } else if let (None, Some(reason)) = (candidate, depleted_without_reset) {
                candidate = Some((later(now, c.default_cooldown), reason));
            }
            if zero_allowance {
                let until = later(now, c.zero_allowance_cooldown);
                if candidate.is_none_or(|(u, _)| until >= u) {
                    candidate = Some((until, ExhaustReason::NoAllowance));
                }
            }
            let mut extended = false;
            if let Some((until, reason)) = candidate {
                let until = until.max(later(now, c.min_cooldown));
                match entry.exhausted {
                    Some((old, _)) if now < old && until <= old => {}
                    _ => {
                        extended = true;
                        entry.exhausted = Some((until, reason));
                        // Written behind; never awaited.
                        self.inner.shared.learn(
                            StateKey::new(backend, model),
                            until,
                            reason.as_str(),
                        );
                    }
                }
            } else if entry.exhausted.is_some_and(|(until, _)| now >= until) {
                entry.exhausted = None;
            }
            let after = self.update_of(entry, now, capped);
            // Counts matter to whoever displays them, so a response that only
            // moves `remaining` is reported too (once per response, never per
            // chunk).
            let changed = after.state != before.state
                || extended
                || capped
                || after.remaining_requests != before.remaining_requests
                || after.remaining_tokens != before.remaining_tokens;
            (entry.status(now), changed.then_some(after))
        };
        if let Some(update) = update {
            self.report(backend, &slot.model, update);
        }
        status
    }

    fn update_of(&self, entry: &Entry, now: Instant, wait_capped: bool) -> Update {
        let status = entry.status(now);
        Update {
            state: status.state(),
            exhausted_for: status.exhausted_for(now),
            remaining_requests: entry.requests_left(now).map(Left::scheduled),
            remaining_tokens: entry.tokens_left(now).map(Left::scheduled),
            wait_capped,
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
            wait_capped: update.wait_capped,
        });
    }

    /// The state of one key (for a model past the cap, of the shared key).
    pub fn status(&self, backend: &BackendId, model: &str, now: Instant) -> QuotaStatus {
        self.find(backend, model)
            .map_or(QuotaStatus::Available, |slot| slot.read().status(now))
    }

    /// How many requests of one key are admitted and not yet answered, and
    /// their token estimates.
    pub fn in_flight(&self, backend: &BackendId, model: &str) -> (u64, u64) {
        self.find(backend, model).map_or((0, 0), |slot| {
            let entry = slot.read();
            (entry.pending.requests(), entry.pending.tokens())
        })
    }

    /// Limits learned from headers for one key, with their windows, for
    /// pacing. Only limits whose window the scheme states are returned.
    pub fn learned_limits(&self, backend: &BackendId, model: &str) -> LearnedLimits {
        let Some(slot) = self.find(backend, model) else {
            return LearnedLimits::default();
        };
        let entry = slot.read();
        let of = |b: &Bucket| Some((b.limit?, b.window?));
        LearnedLimits {
            requests: of(&entry.buckets[REQUESTS]),
            tokens: of(&entry.buckets[index_of(LimitKind::Tokens)]),
        }
    }

    /// Every key's state, for display, sorted by backend then model.
    pub fn snapshot(&self, now: Instant) -> Vec<KeySnapshot> {
        // `entries` comes sorted by backend then model.
        self.inner
            .keys
            .entries()
            .into_iter()
            .map(|(backend, model, slot)| {
                let entry = slot.read();
                let status = entry.status(now);
                KeySnapshot {
                    backend,
                    model: model.to_string(),
                    state: status.state(),
                    reason: match status {
                        QuotaStatus::Exhausted { reason, .. } => Some(reason),
                        _ => None,
                    },
                    exhausted_for_ms: status.exhausted_for(now).map(ceil_ms),
                    remaining_requests: entry.requests_left(now).map(Left::scheduled),
                    remaining_tokens: entry.tokens_left(now).map(Left::scheduled),
                    limit_requests: entry.buckets[REQUESTS].limit,
                    limit_tokens: entry.buckets[index_of(LimitKind::Tokens)].limit,
                }
            })
            .collect()
    }

    /// The most models per backend with a key of their own
    /// ([`QuotaTrackerBuilder::model_cap`]).
    pub fn model_cap(&self) -> usize {
        self.inner.config.model_cap
    }

    /// How many keys are tracked, shared `_OTHER` keys included: at most
    /// the [model cap](QuotaTrackerBuilder::model_cap) plus one per backend.
    pub fn len(&self) -> usize {
        self.inner.keys.len()
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
            .field("shared", &self.shared)
            .finish()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuotaTracker")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .field("shared", &self.shared)
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
    wait_capped: bool,
}

#[cfg(test)]
mod tests;
