//! The scoreboard: what a router needs to know of each backend × model,
//! published by the layers and read before a backend is called.
//!
//! A [`Scoreboard`] is a [`MetricsSink`]: the layers of a backend publish to
//! it through the events they already emit, so nothing new runs per chunk
//! and a layer of the program's own that emits events joins in. From them
//! it keeps, per backend × model:
//!
//! - **availability**: until when a gate refuses (`Rejected` with a retry
//!   time, an exhausted `QuotaUpdate`), one entry per gate (breaker, quota,
//!   TPM budget) so one gate admitting again never hides another's refusal;
//!   a breaker transition out of open clears the breaker's entry;
//! - **in flight**: requests started (`RequestStarted`) and not yet
//!   `Completed`;
//! - **time to first content**: a moving average of the times the
//!   `FirstContent` events report, the newest sample weighing
//!   [`EWMA_WEIGHT`]. It learns when the content arrives, not when the
//!   stream ends, so a long answer does not hide a backend's latency while
//!   it streams. An average no sample refreshes fades ([`TTFC_DECAY`]), so
//!   a backend that stopped being chosen is tried again and judged afresh;
//! - **decode throughput**: output tokens over streaming time (first content
//!   to end) of the last [`THROUGHPUT_SAMPLES`] streams younger than
//!   [`THROUGHPUT_SAMPLE_TTL`], judged once [`MIN_THROUGHPUT_SAMPLES`] are
//!   there, against the backend's minimum if it has one
//!   ([`Scoreboard::min_throughput`]);
//! - **failure rate**: a moving average (weight [`EWMA_WEIGHT`]) of failed
//!   outcomes (errors of the backend's making, timeouts, truncations; not
//!   client errors or cancellations);
//! - **late**: the backend's last attempt was cut by its first-content
//!   deadline. It stays late until it delivers first content again or for
//!   [`DEFAULT_LATE_FOR`] (see [`Scoreboard::late_for`]), whichever comes
//!   first, so a silent backend costs callers its deadline once, not on
//!   every request until its breaker has counted enough failures.
//!
//! The router skips a backend the board says is unavailable without
//! calling it, and orders *deprioritised* ones (late, or below their
//! minimum throughput) after the others: they are never excluded, so the
//! last option is always tried.
//!
//! State lives in core's bounded [`KeyedMap`]: model names past its cap share
//! the [`OTHER_MODEL`](crate::keyed::OTHER_MODEL) entry. Each entry has its
//! own small lock, taken a few times per request, never per chunk.
//!
//! ```
//! use std::time::Duration;
//! use streamgate_core::{scoreboard::Scoreboard, BackendId, Event, MetricsSink, RejectReason};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let board = Scoreboard::new();
//! let backend = BackendId::new("openai");
//! board.record(&Event::Rejected {
//!     backend: &backend,
//!     model: "gpt-4o",
//!     reason: RejectReason::CircuitOpen,
//!     retry_after: Some(Duration::from_secs(30)),
//! });
//! let now = tokio::time::Instant::now();
//! let score = board.view(&backend, "gpt-4o", now);
//! assert_eq!(score.refused_by, Some(RejectReason::CircuitOpen));
//! assert!(!board.view(&backend, "gpt-4o", now + Duration::from_secs(30)).is_unavailable());
//! # }
//! ```

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    keyed::{KeyedMap, DEFAULT_MODEL_CAP},
    BackendId, BreakerState, ErrorClass, Event, MetricsSink, Outcome, QuotaState, RejectReason,
    RequestRecord, TimeoutKind,
};

/// The weight of the newest sample in the board's moving averages (time to
/// first content, failure rate): a quarter, so about the last eight samples
/// decide.
pub const EWMA_WEIGHT: f64 = 0.25;

/// How fast an average of time to first content that no new sample
/// refreshes fades: the view reports it times `exp(-age / TTFC_DECAY)`,
/// `age` the time since its last sample. A backend the router stopped
/// choosing (one sample that happened to be slow, or a slow spell that
/// ended) thus looks faster as time passes and is chosen again, and its
/// next sample judges it afresh, instead of one old figure keeping it out
/// for good. 10 s: a backend three times slower than the others is
/// retried about every 11 s; one equally fast is back within a second.
pub const TTFC_DECAY: Duration = Duration::from_secs(10);

/// How long a backend stays late after a first-content timeout, unless it
/// delivers first content in time sooner: 30 s, the breaker's default open
/// wait.
pub const DEFAULT_LATE_FOR: Duration = Duration::from_secs(30);

/// How many recent streams the throughput rule judges.
pub const THROUGHPUT_SAMPLES: usize = 10;

/// How many fresh streams the throughput rule needs before it judges.
pub const MIN_THROUGHPUT_SAMPLES: usize = 3;

/// How long a throughput sample counts: old evidence is forgotten, so a
/// backend judged slow is judged afresh once it has served again.
pub const THROUGHPUT_SAMPLE_TTL: Duration = Duration::from_secs(300);

/// How many recent times to first content the board keeps per backend ×
/// model for [`Scoreboard::ttfc_quantile`].
pub const TTFC_SAMPLES: usize = 32;

/// The gates whose refusals the board keeps apart.
const GATES: usize = 3;

fn gate(reason: RejectReason) -> usize {
    match reason {
        RejectReason::CircuitOpen => 0,
        RejectReason::QuotaExhausted => 1,
        RejectReason::TpmBudget => 2,
    }
}

/// What routing needs to know of each backend × model. See the
/// [module docs](self).
///
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Scoreboard {
    inner: Arc<Board>,
}

struct Board {
    scores: KeyedMap<Mutex<Score>>,
    late_for: Duration,
    /// Minimum decode throughput per backend, in output tokens per minute.
    min_throughput: RwLock<HashMap<BackendId, u64>>,
}

impl std::fmt::Debug for Scoreboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoreboard")
            .field("entries", &self.inner.scores.len())
            .field("late_for", &self.inner.late_for)
            .finish_non_exhaustive()
    }
}

impl Default for Scoreboard {
    fn default() -> Self {
        Self::new()
    }
}

/// One backend × model's state.
#[derive(Debug, Default)]
struct Score {
    refused: [Option<(Instant, RejectReason)>; GATES],
    in_flight: u32,
    ttfc: Option<f64>,
    /// When `ttfc` last took a sample.
    ttfc_at: Option<Instant>,
    ttfc_samples: u64,
    /// The last [`TTFC_SAMPLES`] times to first content, oldest overwritten.
    ttfc_recent: [Duration; TTFC_SAMPLES],
    failure_rate: f64,
    outcomes: u64,
    late_until: Option<Instant>,
    throughput: [Option<Sample>; THROUGHPUT_SAMPLES],
    next_sample: usize,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    tokens: u64,
    streaming: Duration,
}

/// One backend × model as the board sees it at one instant.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ScoreView {
    /// The gate refusing until the latest time, if any refuses.
    pub refused_by: Option<RejectReason>,
    /// When every gate is expected to admit again, if one refuses.
    pub retry_at: Option<Instant>,
    /// Requests started and not yet finished.
    pub in_flight: u32,
    /// The moving average of the time to first content, faded by the time
    /// since its last sample (see [`TTFC_DECAY`]); `None` before the first
    /// sample.
    pub time_to_first_content: Option<Duration>,
    /// How many first-content times the average has seen.
    pub ttfc_samples: u64,
    /// Output tokens per minute of streaming time over the fresh samples;
    /// `None` with fewer than [`MIN_THROUGHPUT_SAMPLES`].
    pub tokens_per_minute: Option<f64>,
    /// The moving average of failed outcomes, 0 to 1.
    pub failure_rate: f64,
    /// Cut by its first-content deadline and not in time since.
    pub late: bool,
    /// Below its minimum throughput.
    pub slow: bool,
}

impl ScoreView {
    /// Whether a gate is known to refuse: the router skips it uncalled.
    pub fn is_unavailable(&self) -> bool {
        self.refused_by.is_some()
    }

    /// Whether the router orders it after the others (late or slow).
    pub fn is_deprioritised(&self) -> bool {
        self.late || self.slow
    }

    /// How long until every gate admits again, measured from `now`.
    pub fn retry_after(&self, now: Instant) -> Option<Duration> {
        self.retry_at.map(|at| at.saturating_duration_since(now))
    }
}

impl Scoreboard {
    /// An empty board keeping up to [`DEFAULT_MODEL_CAP`] models per
    /// backend, with [`DEFAULT_LATE_FOR`].
    pub fn new() -> Self {
        Self::with_settings(DEFAULT_MODEL_CAP, DEFAULT_LATE_FOR)
    }

    /// An empty board keeping up to `model_cap` models per backend (the rest
    /// share one entry), a backend staying late for `late_for` after a
    /// first-content timeout.
    pub fn with_settings(model_cap: usize, late_for: Duration) -> Self {
        Self {
            inner: Arc::new(Board {
                scores: KeyedMap::new(model_cap),
                late_for,
                min_throughput: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// How long a backend stays late after a first-content timeout.
    pub fn late_for(&self) -> Duration {
        self.inner.late_for
    }

    /// How many backend × model entries the board holds, shared `_OTHER`
    /// ones included: at most the model cap plus one per backend.
    pub fn len(&self) -> usize {
        self.inner.scores.len()
    }

    /// Whether the board holds no entry yet.
    pub fn is_empty(&self) -> bool {
        self.inner.scores.is_empty()
    }

    /// Sets `backend`'s minimum decode throughput in output tokens per
    /// minute of streaming time: below it (over at least
    /// [`MIN_THROUGHPUT_SAMPLES`] recent streams) the backend is slow and
    /// ordered after the others.
    pub fn min_throughput(&self, backend: &BackendId, tokens_per_minute: u64) {
        self.inner
            .min_throughput
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(backend.clone(), tokens_per_minute);
    }

    /// Marks `backend` × `model` late: its attempt was cut by a first-content
    /// deadline that no layer of its own reported (a router's deadline).
    pub fn mark_late(&self, backend: &BackendId, model: &str) {
        let until = crate::time::instant_after(Instant::now(), self.inner.late_for);
        self.update(backend, model, |score| score.late_until = Some(until));
    }

    /// `backend` × `model` as of `now`.
    pub fn view(&self, backend: &BackendId, model: &str, now: Instant) -> ScoreView {
        let min = self
            .inner
            .min_throughput
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(backend)
            .copied();
        let entry = self.entry(backend, model);
        let score = entry.lock().unwrap_or_else(PoisonError::into_inner);
        let refusing = score
            .refused
            .iter()
            .flatten()
            .filter(|(until, _)| *until > now)
            .max_by_key(|(until, _)| *until);
        let tokens_per_minute = score.tokens_per_minute(now);
        ScoreView {
            refused_by: refusing.map(|(_, reason)| *reason),
            retry_at: refusing.map(|(until, _)| *until),
            in_flight: score.in_flight,
            time_to_first_content: score.ttfc.map(|avg| {
                let age = score
                    .ttfc_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                let fade = (-age.as_secs_f64() / TTFC_DECAY.as_secs_f64()).exp();
                Duration::from_secs_f64(avg * fade)
            }),
            ttfc_samples: score.ttfc_samples,
            tokens_per_minute,
            failure_rate: score.failure_rate,
            late: score.late_until.is_some_and(|until| until > now),
            slow: matches!((min, tokens_per_minute), (Some(min), Some(rate)) if rate < min as f64),
        }
    }

    /// The `q` quantile (0 to 1, nearest rank) of `backend` × `model`'s last
    /// [`TTFC_SAMPLES`] times to first content, or `None` with fewer than
    /// `min_samples` of them.
    pub fn ttfc_quantile(
        &self,
        backend: &BackendId,
        model: &str,
        q: f64,
        min_samples: usize,
    ) -> Option<Duration> {
        let entry = self.entry(backend, model);
        let score = entry.lock().unwrap_or_else(PoisonError::into_inner);
        let n = usize::try_from(score.ttfc_samples)
            .unwrap_or(usize::MAX)
            .min(TTFC_SAMPLES);
        if n == 0 || n < min_samples {
            return None;
        }
        let mut recent = score.ttfc_recent;
        drop(score);
        let recent = &mut recent[..n];
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(*recent.select_nth_unstable(rank).1)
    }

    fn entry(&self, backend: &BackendId, model: &str) -> Arc<Mutex<Score>> {
        self.inner
            .scores
            .get_or_insert_with(backend, model, new_score)
    }

    fn update(&self, backend: &BackendId, model: &str, f: impl FnOnce(&mut Score)) {
        self.inner.scores.with(backend, model, new_score, |entry| {
            f(&mut entry.lock().unwrap_or_else(PoisonError::into_inner));
        });
    }

    /// Clears the breaker's refusal of every model of `backend`.
    fn clear_breaker(&self, backend: &BackendId) {
        for (b, _, entry) in self.inner.scores.entries() {
            if b == *backend {
                entry.lock().unwrap_or_else(PoisonError::into_inner).refused[0] = None;
            }
        }
    }
}

impl Score {
    fn first_content(&mut self, ttfc: Duration, now: Instant) {
        self.ttfc_at = Some(now);
        let sample = ttfc.as_secs_f64();
        self.ttfc = Some(match self.ttfc {
            None => sample,
            Some(avg) => avg + EWMA_WEIGHT * (sample - avg),
        });
        self.ttfc_recent[(self.ttfc_samples % TTFC_SAMPLES as u64) as usize] = ttfc;
        self.ttfc_samples = self.ttfc_samples.saturating_add(1);
        self.late_until = None;
    }

    fn refuse(&mut self, reason: RejectReason, until: Instant) {
        self.refused[gate(reason)] = Some((until, reason));
    }

    fn complete(&mut self, record: &RequestRecord<'_>, now: Instant, late_for: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let failed = match record.outcome {
            Outcome::Success => Some(false),
            Outcome::Failed(class) => is_backend_fault(class).then_some(true),
            Outcome::TimedOut(kind) => {
                if kind == TimeoutKind::FirstContent {
                    self.late_until = Some(crate::time::instant_after(now, late_for));
                }
                Some(true)
            }
            Outcome::Truncated => Some(true),
            Outcome::Cancelled => None,
        };
        if let Some(failed) = failed {
            let sample = if failed { 1.0 } else { 0.0 };
            self.failure_rate = if self.outcomes == 0 {
                sample
            } else {
                self.failure_rate + EWMA_WEIGHT * (sample - self.failure_rate)
            };
            self.outcomes = self.outcomes.saturating_add(1);
        }
        if let Some(streaming) = record.output_duration.filter(|d| !d.is_zero()) {
            let tokens = record.output_tokens();
            if tokens > 0 {
                self.throughput[self.next_sample] = Some(Sample {
                    at: now,
                    tokens,
                    streaming,
                });
                self.next_sample = (self.next_sample + 1) % THROUGHPUT_SAMPLES;
            }
        }
    }

    fn tokens_per_minute(&self, now: Instant) -> Option<f64> {
        let (mut count, mut tokens, mut streaming) = (0, 0u64, Duration::ZERO);
        for sample in self.throughput.iter().flatten() {
            if now.saturating_duration_since(sample.at) < THROUGHPUT_SAMPLE_TTL {
                count += 1;
                tokens = tokens.saturating_add(sample.tokens);
                streaming = streaming.saturating_add(sample.streaming);
            }
        }
        (count >= MIN_THROUGHPUT_SAMPLES && !streaming.is_zero())
            .then(|| tokens as f64 * 60.0 / streaming.as_secs_f64())
    }
}

/// Whether a failure of `class` says something about the backend (not the
/// caller's request, not a refusal).
fn is_backend_fault(class: ErrorClass) -> bool {
    !matches!(
        class,
        ErrorClass::Client
            | ErrorClass::ContentFilter
            | ErrorClass::ContextLength
            | ErrorClass::Cancelled
            | ErrorClass::Rejected
    )
}

impl MetricsSink for Scoreboard {
    fn record(&self, event: &Event<'_>) {
        match event {
            Event::RequestStarted { backend, model, .. } => self.update(backend, model, |score| {
                score.in_flight = score.in_flight.saturating_add(1);
            }),
            Event::FirstContent {
                backend,
                model,
                after,
            } => {
                let now = Instant::now();
                self.update(backend, model, |score| score.first_content(*after, now));
            }
            Event::Completed(record) => {
                let (now, late_for) = (record.ended, self.inner.late_for);
                self.update(record.backend, record.model, |score| {
                    score.complete(record, now, late_for);
                });
            }
            Event::Rejected {
                backend,
                model,
                reason,
                retry_after: Some(after),
            } => {
                let until = crate::time::instant_after(Instant::now(), *after);
                self.update(backend, model, |score| score.refuse(*reason, until));
            }
            Event::BreakerTransition {
                backend, model, to, ..
            } if !matches!(to, BreakerState::Open | BreakerState::ForcedOpen) => match model {
                Some(model) => self.update(backend, model, |score| score.refused[0] = None),
                None => self.clear_breaker(backend),
            },
            Event::QuotaUpdate {
                backend,
                model,
                state,
                exhausted_for,
                ..
            } => {
                let now = Instant::now();
                self.update(backend, model, |score| match (state, exhausted_for) {
                    (QuotaState::Exhausted, Some(wait)) => {
                        score.refuse(
                            RejectReason::QuotaExhausted,
                            crate::time::instant_after(now, *wait),
                        );
                    }
                    _ => score.refused[1] = None,
                });
            }
            _ => {}
        }
    }
}

/// A key's score before any event.
fn new_score(_: &BackendId, _: &Arc<str>) -> Mutex<Score> {
    Mutex::new(Score::default())
}

#[cfg(test)]
mod tests;
