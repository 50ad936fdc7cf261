//! The embedded default sink: per backend × model statistics in memory.

mod recommend;
mod size;
mod snapshot;
mod stats;

use std::{
    error::Error,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use streamgate_core::{BackendId, BreakerState, Event, HedgeStage, MetricsSink};
use tokio::time::Instant;

pub use recommend::{Candidate, Evidence, NotEnoughSamples, Recommendation};
pub use size::{InputSize, INPUT_SIZE_BOUNDARIES};
pub use snapshot::{
    BreakerSnapshot, CategorySnapshot, HedgeCounts, KeySnapshot, Percentiles, QuotaSnapshot,
    SessionSnapshot, TimeoutCounts, TrackerSnapshot,
};

use streamgate_core::keyed::KeyedMap;

use crate::names;
use stats::{counted_usage, KeyStats};

/// Samples a candidate needs before [`PerformanceTracker::recommend`] ranks
/// it: 10, so that its 10th percentile is not a single request.
pub const DEFAULT_MIN_SAMPLES: u64 = 10;

/// A configuration value that cannot work.
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

/// Builds a [`PerformanceTracker`].
#[derive(Clone, Debug)]
pub struct PerformanceTrackerBuilder {
    model_cap: usize,
    min_samples: u64,
}

impl PerformanceTrackerBuilder {
    /// Distinct models kept per backend before folding into `_OTHER`
    /// (default [`DEFAULT_MODEL_CAP`](names::DEFAULT_MODEL_CAP)).
    #[must_use]
    pub fn model_cap(mut self, cap: usize) -> Self {
        self.model_cap = cap;
        self
    }

    /// Samples a candidate needs before it is recommended (default
    /// [`DEFAULT_MIN_SAMPLES`]).
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// The tracker, if the configuration works.
    pub fn build(self) -> Result<PerformanceTracker, ConfigError> {
        if self.model_cap == 0 {
            return Err(ConfigError("model cap must be at least 1"));
        }
        if self.min_samples == 0 {
            return Err(ConfigError("minimum samples must be at least 1"));
        }
        Ok(PerformanceTracker {
            min_samples: self.min_samples,
            origin: Instant::now(),
            keys: KeyedMap::new(self.model_cap),
            session: Session::default(),
            breakers: Mutex::new(Vec::new()),
        })
    }
}

#[derive(Default)]
struct Session {
    requests: AtomicU64,
    input: AtomicU64,
    output: AtomicU64,
    cached: AtomicU64,
    reasoning: AtomicU64,
    rejections: AtomicU64,
    throttled: AtomicU64,
    throttle_wait_nanos: AtomicU64,
    hedges: [AtomicU64; 3],
    hedge_tokens: AtomicU64,
    continuations: AtomicU64,
}

/// One backend × model: the statistics behind their short lock, and the
/// started count beside it so that a request's start takes no lock.
struct KeyEntry {
    started: AtomicU64,
    stats: Mutex<KeyStats>,
}

impl KeyEntry {
    fn new() -> Self {
        Self {
            started: AtomicU64::new(0),
            stats: Mutex::new(KeyStats::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyStats> {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        // Read after `finished` is stable under the lock: a request starts
        // before it finishes, so in-flight never counts one twice.
        stats.started = self.started.load(Ordering::Relaxed);
        stats
    }
}

struct BreakerEntry {
    backend: BackendId,
    model: Option<Arc<str>>,
    state: BreakerState,
    transitions: u64,
}

/// The in-memory sink that answers: how fast is each backend and model, how
/// much did this session use, how long did we wait, which backend is best for
/// my input size.
///
/// Keyed by backend × model; models past the cap fold into
/// [`OTHER_MODEL`](names::OTHER_MODEL). Recording takes the read side of a
/// map lock and then the one key's own short lock, so tasks recording for
/// different keys never wait for each other, and session totals are atomics.
/// Histograms are bounded (1% resolution), so memory per key is fixed.
///
/// Requests are counted when they finish ([`Event::Completed`]); requests
/// refused by a gate count only under rejections. Throughput histograms
/// (duration, decode and end-to-end tokens per second, per input size) hold
/// successful requests only; time to first content holds every request that
/// got content.
///
/// ```
/// use streamgate_metrics::{InputSize, PerformanceTracker};
///
/// let tracker = PerformanceTracker::new();
/// let snapshot = tracker.snapshot();
/// assert_eq!(snapshot.session.requests, 0);
/// assert!(tracker.recommend(InputSize::Small).is_err());
/// println!("{tracker}");
/// ```
pub struct PerformanceTracker {
    min_samples: u64,
    origin: Instant,
    keys: KeyedMap<KeyEntry>,
    session: Session,
    /// Breaker transitions are rare, so one lock serves them all.
    breakers: Mutex<Vec<BreakerEntry>>,
}

impl Default for PerformanceTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PerformanceTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerformanceTracker")
            .field("min_samples", &self.min_samples)
            .finish_non_exhaustive()
    }
}

impl PerformanceTracker {
    /// A tracker with the default configuration.
    pub fn new() -> Self {
        Self {
            min_samples: DEFAULT_MIN_SAMPLES,
            origin: Instant::now(),
            keys: KeyedMap::new(names::DEFAULT_MODEL_CAP),
            session: Session::default(),
            breakers: Mutex::new(Vec::new()),
        }
    }

    /// Configures a tracker.
    pub fn builder() -> PerformanceTrackerBuilder {
        PerformanceTrackerBuilder {
            model_cap: names::DEFAULT_MODEL_CAP,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Runs `f` on the entry of `backend` × `model`, borrowed (see
    /// [`KeyedMap::with`](streamgate_core::keyed::KeyedMap::with)).
    fn with_entry<R>(&self, backend: &BackendId, model: &str, f: impl FnOnce(&KeyEntry) -> R) -> R {
        self.keys.with(backend, model, |_, _| KeyEntry::new(), f)
    }

    fn with_key(&self, backend: &BackendId, model: &str, f: impl FnOnce(&mut KeyStats)) {
        self.with_entry(backend, model, |entry| {
            f(&mut entry.stats.lock().unwrap_or_else(PoisonError::into_inner));
        });
    }

    /// How many (backend, model) keys the tracker holds, shared `_OTHER`
    /// ones included: at most the [model cap](PerformanceTrackerBuilder::model_cap)
    /// plus one per backend.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the tracker has seen no key yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A copy of everything, now.
    pub fn snapshot(&self) -> TrackerSnapshot {
        let now = Instant::now();
        let second = self.second(now);
        let keys = self
            .keys
            .entries()
            .into_iter()
            .map(|(backend, model, entry)| {
                let stats = entry.lock();
                stats.snapshot(&backend, &model, now, second)
            })
            .collect();
        let mut breakers: Vec<BreakerSnapshot> = self
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|b| BreakerSnapshot {
                backend: b.backend.clone(),
                model: b.model.as_deref().map(str::to_owned),
                state: b.state,
                transitions: b.transitions,
            })
            .collect();
        breakers.sort_by(|a, b| (&a.backend, &a.model).cmp(&(&b.backend, &b.model)));
        let s = &self.session;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (input, output) = (load(&s.input), load(&s.output));
        TrackerSnapshot {
            session: SessionSnapshot {
                requests: load(&s.requests),
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: load(&s.cached),
                reasoning_tokens: load(&s.reasoning),
                total_tokens: input.saturating_add(output),
                rejections: load(&s.rejections),
                throttled: load(&s.throttled),
                throttle_wait_secs: Duration::from_nanos(load(&s.throttle_wait_nanos))
                    .as_secs_f64(),
                hedges: HedgeCounts {
                    started: load(&s.hedges[0]),
                    won: load(&s.hedges[1]),
                    lost: load(&s.hedges[2]),
                    extra_tokens: load(&s.hedge_tokens),
                },
                continuations: load(&s.continuations),
            },
            keys,
            breakers,
        }
    }

    /// The best backend × model for requests of `category`, ranked by
    /// end-to-end tokens per second discounted by failure rate (see
    /// [`Evidence::score`]). Refuses when no candidate has the minimum number
    /// of samples.
    pub fn recommend(&self, category: InputSize) -> Result<Recommendation, NotEnoughSamples> {
        self.recommend_where(category, |_| true)
    }

    /// Like [`recommend`](Self::recommend), among the backends serving `model`.
    pub fn recommend_for_model(
        &self,
        category: InputSize,
        model: &str,
    ) -> Result<Recommendation, NotEnoughSamples> {
        self.recommend_where(category, |m| m == model)
    }

    fn recommend_where(
        &self,
        category: InputSize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Recommendation, NotEnoughSamples> {
        let candidates = self
            .keys
            .entries()
            .into_iter()
            .filter(|(_, model, _)| keep(model))
            .filter_map(|(backend, model, entry)| {
                let stats = entry.stats.lock().unwrap_or_else(PoisonError::into_inner);
                let c = stats.category(category)?;
                let samples = c.end_to_end.len();
                let (p50, p10) = if samples == 0 {
                    (0.0, 0.0)
                } else {
                    (c.end_to_end.quantile(0.5), c.end_to_end.quantile(0.1))
                };
                let failure_rate = c.failure_rate();
                Some(Candidate {
                    backend,
                    model: model.to_string(),
                    evidence: Evidence {
                        samples,
                        p50_tokens_per_sec: p50,
                        p10_tokens_per_sec: p10,
                        failure_rate,
                        score: p50 * (1.0 - failure_rate),
                    },
                    eligible: samples >= self.min_samples,
                })
            })
            .collect();
        recommend::rank(category, self.min_samples, candidates)
    }

    fn breaker(&self, backend: &BackendId, model: Option<&str>, to: BreakerState) {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = breakers
            .iter_mut()
            .find(|b| b.backend == *backend && b.model.as_deref() == model)
        {
            entry.state = to;
            entry.transitions += 1;
            return;
        }
        // Per-model breakers are keyed by request models: bound them too.
        let model = model.map(|m| {
            let per_backend = breakers
                .iter()
                .filter(|b| b.backend == *backend && b.model.is_some())
                .count();
            if per_backend >= self.keys.cap() {
                Arc::from(names::OTHER_MODEL)
            } else {
                Arc::from(m)
            }
        });
        if let Some(entry) = breakers
            .iter_mut()
            .find(|b| b.backend == *backend && b.model == model)
        {
            entry.state = to;
            entry.transitions += 1;
            return;
        }
        breakers.push(BreakerEntry {
            backend: backend.clone(),
            model,
            state: to,
            transitions: 1,
        });
    }
}

impl MetricsSink for PerformanceTracker {
    fn record(&self, event: &Event<'_>) {
        match event {
            Event::RequestStarted { backend, model, .. } => {
                self.with_entry(backend, model, |entry| {
                    entry.started.fetch_add(1, Ordering::Relaxed);
                });
            }
            Event::Completed(record) => {
                let second = self.second(record.ended);
                self.with_key(record.backend, record.model, |k| {
                    k.completed(record, second)
                });
                if crate::sinks::is_operation(record) {
                    let s = &self.session;
                    let total = counted_usage(record);
                    s.requests.fetch_add(1, Ordering::Relaxed);
                    s.input.fetch_add(total.input_tokens, Ordering::Relaxed);
                    s.output.fetch_add(total.output_tokens, Ordering::Relaxed);
                    s.cached
                        .fetch_add(total.cached_input_tokens, Ordering::Relaxed);
                    s.reasoning
                        .fetch_add(total.reasoning_tokens, Ordering::Relaxed);
                }
            }
            Event::Rejected {
                backend,
                model,
                reason,
                ..
            } => {
                self.with_key(backend, model, |k| k.rejected(*reason));
                self.session.rejections.fetch_add(1, Ordering::Relaxed);
            }
            Event::BreakerTransition {
                backend, model, to, ..
            } => {
                self.breaker(backend, *model, *to);
            }
            Event::QuotaUpdate {
                backend,
                model,
                state,
                exhausted_for,
                remaining_requests,
                remaining_tokens,
                ..
            } => {
                let now = Instant::now();
                self.with_key(backend, model, |k| {
                    k.quota(
                        now,
                        *state,
                        *exhausted_for,
                        *remaining_requests,
                        *remaining_tokens,
                    );
                });
            }
            Event::Throttled {
                backend,
                model,
                waited,
            } => {
                self.with_key(backend, model, |k| k.throttled(*waited));
                self.session.throttled.fetch_add(1, Ordering::Relaxed);
                let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                self.session
                    .throttle_wait_nanos
                    .fetch_add(nanos, Ordering::Relaxed);
            }
            Event::Failover { from, model, .. } => {
                self.with_key(from, model, |k| k.failovers += 1);
            }
            Event::Hedge {
                stage,
                estimated_tokens,
                ..
            } => {
                let slot = match stage {
                    HedgeStage::Started => {
                        self.session
                            .hedge_tokens
                            .fetch_add(*estimated_tokens, Ordering::Relaxed);
                        0
                    }
                    HedgeStage::Won => 1,
                    _ => 2,
                };
                self.session.hedges[slot].fetch_add(1, Ordering::Relaxed);
            }
            Event::Continuation { from, model, .. } => {
                self.with_key(from, model, |k| k.continuations += 1);
                self.session.continuations.fetch_add(1, Ordering::Relaxed);
            }
            // First chunk and first content are part of the completed record.
            _ => {}
        }
    }
}

impl fmt::Display for PerformanceTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.snapshot(), f)
    }
}
