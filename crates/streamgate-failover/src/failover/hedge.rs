//! Hedging on first content: when the first choice is slow to produce
//! content, the same request starts on the next choice, and the first of
//! the two to produce content wins.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use streamgate_core::{scoreboard::TTFC_SAMPLES, BackendId};

use crate::ConfigError;

/// The default percentile of a learned hedge delay.
pub const DEFAULT_HEDGE_PERCENTILE: f64 = 0.95;

/// The default shortest learned hedge delay.
pub const DEFAULT_HEDGE_FLOOR: Duration = Duration::from_millis(100);

/// The default number of first-content samples a learned delay needs.
pub const DEFAULT_HEDGE_MIN_SAMPLES: usize = 20;

/// The default share of requests that may be hedged.
pub const DEFAULT_HEDGE_BUDGET: f64 = 0.10;

/// How many unused hedges the budget saves up, at most.
pub const HEDGE_BURST: u32 = 10;

/// When the router hedges, and how often it may.
///
/// After the delay with no content from the first choice, the router starts
/// the same request on the strategy's next available choice (never on a
/// backend the scoreboard knows to be refusing). The first attempt to
/// produce content is committed; the other is dropped at once, which
/// cancels its request (the provider sees the disconnect) and releases its
/// reservations and any half-open probe, and it counts as cancelled, never
/// as a failure. An attempt that fails before content does not fail the
/// request while the other runs. A request is hedged at most once.
///
/// The budget is a token bucket: each request adds `budget` of a hedge (up
/// to [`HEDGE_BURST`] saved), each hedge spends one, so over time at most
/// that share of requests is hedged and a slow provider cannot double the
/// load.
///
/// ```
/// use std::time::Duration;
/// use streamgate_failover::Hedge;
///
/// // After 2 s without content, at most 5 % of requests.
/// let fixed = Hedge::after(Duration::from_secs(2)).budget(0.05);
/// // After the first choice's p95 time to first content (at least 250 ms,
/// // once it has 20 samples).
/// let learned = Hedge::learned().floor(Duration::from_millis(250));
/// # let _ = (fixed, learned);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Hedge {
    pub(crate) delay: HedgeDelay,
    pub(crate) budget: f64,
}

/// How long the router waits for first content before it hedges.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// Always this long.
    Fixed(Duration),
    /// A percentile of the first choice's recent times to first content
    /// (its last [`TTFC_SAMPLES`] on the scoreboard), never below `floor`.
    /// Until the first choice has `min_samples` samples it is not hedged.
    Learned {
        /// The percentile, in (0, 1).
        percentile: f64,
        /// The shortest delay.
        floor: Duration,
        /// Samples needed first (at most [`TTFC_SAMPLES`]).
        min_samples: usize,
    },
}

impl Hedge {
    /// Hedges after a fixed `delay`, with the default budget (10 %).
    pub fn after(delay: Duration) -> Self {
        Self {
            delay: HedgeDelay::Fixed(delay),
            budget: DEFAULT_HEDGE_BUDGET,
        }
    }

    /// Hedges after the first choice's p95 time to first content, at least
    /// 100 ms, once it has 20 samples, with the default budget (10 %).
    pub fn learned() -> Self {
        Self {
            delay: HedgeDelay::Learned {
                percentile: DEFAULT_HEDGE_PERCENTILE,
                floor: DEFAULT_HEDGE_FLOOR,
                min_samples: DEFAULT_HEDGE_MIN_SAMPLES,
            },
            budget: DEFAULT_HEDGE_BUDGET,
        }
    }

    /// The percentile of a learned delay (ignored for a fixed one).
    pub fn percentile(mut self, p: f64) -> Self {
        if let HedgeDelay::Learned { percentile, .. } = &mut self.delay {
            *percentile = p;
        }
        self
    }

    /// The shortest learned delay (ignored for a fixed one).
    pub fn floor(mut self, shortest: Duration) -> Self {
        if let HedgeDelay::Learned { floor, .. } = &mut self.delay {
            *floor = shortest;
        }
        self
    }

    /// Samples a learned delay needs (ignored for a fixed one).
    pub fn min_samples(mut self, samples: usize) -> Self {
        if let HedgeDelay::Learned { min_samples, .. } = &mut self.delay {
            *min_samples = samples;
        }
        self
    }

    /// The share of requests that may be hedged, in (0, 1] (default 0.1).
    pub fn budget(mut self, share: f64) -> Self {
        self.budget = share;
        self
    }

    /// The delay setting.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }

    /// The share of requests that may be hedged.
    pub fn budget_share(&self) -> f64 {
        self.budget
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return Err(ConfigError::new(format!(
                "hedge budget {} is not a share in (0, 1]",
                self.budget
            )));
        }
        match self.delay {
            HedgeDelay::Fixed(delay) if delay.is_zero() => {
                Err(ConfigError::new("hedge delay must be above 0"))
            }
            HedgeDelay::Learned {
                percentile,
                floor,
                min_samples,
            } => {
                if !(percentile > 0.0 && percentile < 1.0) {
                    Err(ConfigError::new(format!(
                        "hedge percentile {percentile} is not a fraction in (0, 1)"
                    )))
                } else if floor.is_zero() {
                    Err(ConfigError::new("hedge floor must be above 0"))
                } else if min_samples == 0 || min_samples > TTFC_SAMPLES {
                    Err(ConfigError::new(format!(
                        "hedge min samples must be between 1 and {TTFC_SAMPLES}"
                    )))
                } else {
                    Ok(())
                }
            }
            HedgeDelay::Fixed(_) => Ok(()),
        }
    }

    /// The delay before hedging a request first sent to `backend`, if it
    /// is to be hedged.
    pub(crate) fn delay_for(
        &self,
        board: &streamgate_core::scoreboard::Scoreboard,
        backend: &BackendId,
        model: &str,
    ) -> Option<Duration> {
        match self.delay {
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Learned {
                percentile,
                floor,
                min_samples,
            } => board
                .ttfc_quantile(backend, model, percentile, min_samples)
                .map(|learned| learned.max(floor)),
        }
    }
}

/// Thousandths of a hedge: the budget's unit.
const MILLI: u64 = 1000;

/// The token bucket of [`Hedge::budget`].
#[derive(Debug)]
pub(crate) struct HedgeBudget {
    deposit: u64,
    balance: AtomicU64,
}

impl HedgeBudget {
    pub(crate) fn new(share: f64) -> Self {
        Self {
            deposit: ((share.clamp(0.0, 1.0) * MILLI as f64) as u64).max(1),
            balance: AtomicU64::new(0),
        }
    }

    /// One request came in.
    pub(crate) fn deposit(&self) {
        let cap = u64::from(HEDGE_BURST) * MILLI;
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_add(self.deposit).min(cap))
            });
    }

    /// Takes one hedge if the budget has it.
    pub(crate) fn try_take(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_budget_allows_its_share_of_requests_and_saves_a_burst() {
        let budget = HedgeBudget::new(0.1);
        let mut hedged = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.try_take() {
                hedged += 1;
            }
        }
        assert_eq!(hedged, 100);
        // Unused, it saves at most HEDGE_BURST hedges.
        for _ in 0..1000 {
            budget.deposit();
        }
        let saved = std::iter::from_fn(|| budget.try_take().then_some(())).count();
        assert_eq!(saved, HEDGE_BURST as usize);
    }

    #[test]
    fn settings_out_of_range_are_refused_with_what_is_wrong() {
        let err = |h: Hedge| h.validate().unwrap_err().to_string();
        assert_eq!(
            err(Hedge::after(Duration::from_secs(1)).budget(10.0)),
            "invalid configuration: hedge budget 10 is not a share in (0, 1]"
        );
        assert!(err(Hedge::after(Duration::ZERO)).contains("delay must be above 0"));
        assert!(err(Hedge::learned().percentile(95.0)).contains("percentile 95 is not a fraction"));
        assert!(err(Hedge::learned().floor(Duration::ZERO)).contains("floor"));
        assert!(err(Hedge::learned().min_samples(33)).contains("between 1 and 32"));
        assert!(Hedge::learned().validate().is_ok());
    }
}
