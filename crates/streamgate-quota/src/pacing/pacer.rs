//! The pacing arithmetic: GCRA limiters sized so that no window ever sees
//! more than the limit.
//!
//! A limit of `L` per window `W` with burst `b` becomes a GCRA that holds at
//! most `b` cells and refills `L − b` cells per `W`. Whatever the arrival
//! pattern, the cells admitted in any span of `W` are at most
//! `b + (L − b) = L`, which is what a provider's sliding window counts. The
//! price is a sustained rate of `L − b` per window, hence a small default
//! burst (a tenth of the limit). When `b == L` the refill is `L` and the
//! bound becomes `2L`.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use streamgate_core::{keyed::KeyedMap, time::instant_after, BackendId};
use tokio::time::Instant;

use super::gcra::Gcra;
use crate::{tracker::ConfigError, LearnedLimits, QuotaTracker};

/// Learned limits with a window longer than this are not paced on (a
/// per-day request limit says nothing about the next minute).
const LONGEST_PACED_WINDOW: Duration = Duration::from_secs(3600);

/// One paced limit: `limit` per `window`, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) limit: u32,
    pub(crate) window: Duration,
    pub(crate) burst: Option<u32>,
}

impl Spec {
    fn burst(&self) -> u32 {
        self.burst
            .unwrap_or(self.limit / 10)
            .clamp(1, self.limit.max(1))
    }

    /// Per second, for choosing the stricter of two specs.
    fn rate(&self) -> f64 {
        f64::from(self.limit) / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn build(&self, origin: Instant) -> Result<Limiter, ConfigError> {
        let burst = self.burst();
        let refill = match self.limit.saturating_sub(burst) {
            0 => self.limit,
            n => n,
        };
        let period = self.window / refill.max(1);
        if period.is_zero() {
            return Err(ConfigError::new("limit too high for its window"));
        }
        if burst == 0 {
            return Err(ConfigError::new("burst must be at least 1"));
        }
        Ok(Limiter(Gcra::new(period, burst, origin)))
    }

    fn stricter(a: Option<Spec>, b: Option<Spec>) -> Option<Spec> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.rate() < a.rate() { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn from_learned(learned: Option<(u64, Duration)>, burst: Option<u32>) -> Option<Spec> {
        let (limit, window) = learned?;
        if window.is_zero() || window > LONGEST_PACED_WINDOW || limit == 0 {
            return None;
        }
        Some(Spec {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            window,
            burst,
        })
    }
}

pub(crate) struct Limiter(Gcra);

impl Limiter {
    /// Takes `cells` at `now` (clamped to the burst, so a request larger
    /// than the burst waits at most one refill of the whole burst instead
    /// of forever), or says how long to wait before trying again.
    fn try_take(&self, cells: u64, t0: u64) -> Result<(), Duration> {
        let cells = u32::try_from(cells).unwrap_or(u32::MAX);
        self.0.try_take_at(cells, t0)
    }
}

/// The limiters for one key, with one origin: a request converts the time
/// once for both.
pub(crate) struct Limiters {
    requests: Option<Limiter>,
    tokens: Option<Limiter>,
}

/// Which limiter a request waits on next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Requests,
    Tokens,
    Done,
}

impl Limiters {
    fn new(requests: Option<Spec>, tokens: Option<Spec>) -> Result<Self, ConfigError> {
        let origin = Instant::now();
        Ok(Self {
            requests: requests.map(|s| s.build(origin)).transpose()?,
            tokens: tokens.map(|s| s.build(origin)).transpose()?,
        })
    }

    /// Advances `stage` as far as the limits allow at `now` (one clock read
    /// for both limiters); `Err` says how long to wait before trying the
    /// current stage again.
    pub(crate) fn advance(
        &self,
        stage: &mut Stage,
        tokens: u64,
        now: Instant,
    ) -> Result<(), Duration> {
        // Both limiters count from the same origin.
        let mut t0 = None;
        let mut at = |l: &Limiter| *t0.get_or_insert_with(|| l.0.nanos(now));
        loop {
            match *stage {
                Stage::Requests => {
                    if let Some(l) = &self.requests {
                        l.try_take(1, at(l))?;
                    }
                    *stage = Stage::Tokens;
                }
                Stage::Tokens => {
                    if let (Some(l), true) = (&self.tokens, tokens > 0) {
                        l.try_take(tokens, at(l))?;
                    }
                    *stage = Stage::Done;
                }
                Stage::Done => return Ok(()),
            }
        }
    }

    /// Sleeps on tokio time until the limiters admit `tokens` from `stage`
    /// on: the wait of a request they did not admit at once.
    pub(crate) async fn wait(self: Arc<Self>, mut stage: Stage, tokens: u64) {
        loop {
            let now = Instant::now();
            match self.advance(&mut stage, tokens, now) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep_until(instant_after(now, wait)).await,
            }
        }
    }
}

/// For one model: the limits learned, and the limiters built from them.
type Learned = RwLock<(LearnedLimits, Arc<Limiters>)>;

/// Pacing for one backend: the configured limits, and optionally the
/// limits its responses announce, per model.
pub(crate) struct Pacer {
    requests: Option<Spec>,
    tokens: Option<Spec>,
    configured: Arc<Limiters>,
    tracker: Option<QuotaTracker>,
    /// By model, with the tracker's cap: a model past it shares the
    /// limiters of the tracker's shared key, whose limits it also reads.
    learned: KeyedMap<Learned>,
}

impl Pacer {
    pub(crate) fn new(
        requests: Option<Spec>,
        tokens: Option<Spec>,
        tracker: Option<QuotaTracker>,
    ) -> Result<Self, ConfigError> {
        let cap = tracker.as_ref().map_or(
            streamgate_core::keyed::DEFAULT_MODEL_CAP,
            QuotaTracker::model_cap,
        );
        Ok(Self {
            requests,
            tokens,
            configured: Arc::new(Limiters::new(requests, tokens)?),
            tracker,
            learned: KeyedMap::new(cap),
        })
    }

    /// The limiters a request for `model` waits on: the configured ones,
    /// or, once the tracker has learned limits for the key, the stricter of
    /// configured and learned for each dimension.
    pub(crate) fn limiters(&self, backend: &BackendId, model: &str) -> Arc<Limiters> {
        let Some(tracker) = &self.tracker else {
            return self.configured.clone();
        };
        let learned = tracker.learned_limits(backend, model);
        if learned == LearnedLimits::default() {
            return self.configured.clone();
        }
        let cached = self.learned.find(backend, model);
        if let Some(cached) = &cached {
            let (seen, limiters) = &*cached.read().unwrap_or_else(|e| e.into_inner());
            if *seen == learned {
                return limiters.clone();
            }
        }
        let burst = |s: Option<Spec>| s.and_then(|s| s.burst);
        let requests = Spec::stricter(
            self.requests,
            Spec::from_learned(learned.requests, burst(self.requests)),
        );
        let tokens = Spec::stricter(
            self.tokens,
            Spec::from_learned(learned.tokens, burst(self.tokens)),
        );
        let Ok(limiters) = Limiters::new(requests, tokens) else {
            return self.configured.clone();
        };
        let limiters = Arc::new(limiters);
        let slot = cached.unwrap_or_else(|| {
            self.learned.get_or_insert_with(backend, model, |_, _| {
                RwLock::new((learned, limiters.clone()))
            })
        });
        *slot.write().unwrap_or_else(|e| e.into_inner()) = (learned, limiters.clone());
        limiters
    }

    /// How many models have limiters built from learned limits (at most
    /// the tracker's model cap plus one per backend).
    pub(crate) fn learned_len(&self) -> usize {
        self.learned.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(limit: u32, burst: Option<u32>) -> Spec {
        Spec {
            limit,
            window: Duration::from_secs(60),
            burst,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let limiters = Limiters::new(None, Some(spec(1000, Some(100)))).unwrap();
        // Greedy: take 50 tokens whenever allowed, for three minutes, and
        // count what was admitted in every 60 s span.
        let start = tokio::time::Instant::now();
        let mut admitted: Vec<(Duration, u64)> = Vec::new();
        while start.elapsed() < Duration::from_secs(180) {
            let mut stage = Stage::Requests;
            match limiters.advance(&mut stage, 50, tokio::time::Instant::now()) {
                Ok(()) => admitted.push((start.elapsed(), 50)),
                Err(wait) => tokio::time::advance(wait).await,
            }
        }
        for (i, (t0, _)) in admitted.iter().enumerate() {
            let in_window: u64 = admitted[i..]
                .iter()
                .take_while(|(t, _)| *t < *t0 + Duration::from_secs(60))
                .map(|(_, n)| n)
                .sum();
            assert!(
                in_window <= 1000,
                "{in_window} tokens in the window from {t0:?}"
            );
        }
        // And it is not starved: at least the sustained rate over 3 min.
        let total: u64 = admitted.iter().map(|(_, n)| n).sum();
        assert!(total >= 3 * 900, "{total}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_burst_waits_for_the_whole_burst_not_forever() {
        let limiters = Limiters::new(None, Some(spec(600, Some(60)))).unwrap();
        let mut stage = Stage::Requests;
        assert_eq!(
            limiters.advance(&mut stage, 10_000, tokio::time::Instant::now()),
            Ok(())
        );
        let mut stage = Stage::Requests;
        // The burst is empty: refilling 60 cells at 540/min takes 60/9 s.
        let wait = limiters
            .advance(&mut stage, 10_000, tokio::time::Instant::now())
            .unwrap_err();
        assert!(wait <= Duration::from_secs(7), "{wait:?}");
        assert_eq!(stage, Stage::Tokens);
    }

    #[test]
    fn stricter_spec_is_the_lower_rate() {
        let per_minute = spec(600, None);
        let per_second = Spec {
            limit: 5,
            window: Duration::from_secs(1),
            burst: None,
        };
        assert_eq!(
            Spec::stricter(Some(per_minute), Some(per_second)),
            Some(per_second)
        );
        assert_eq!(Spec::stricter(None, Some(per_minute)), Some(per_minute));
        assert_eq!(
            Spec::from_learned(Some((14_400, crate::parse::DAY)), None),
            None
        );
    }
}
