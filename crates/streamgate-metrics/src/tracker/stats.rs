//! The statistics of one backend × model, with no locking and no clock:
//! the tracker feeds it `now`.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use streamgate_core::window::SlidingWindow;
use streamgate_core::{
    ErrorClass, Outcome, QuotaState, RejectReason, RequestRecord, TimeoutKind, Usage,
};
use tokio::time::Instant;

use super::{
    size::InputSize,
    snapshot::{CategorySnapshot, KeySnapshot, Percentiles, QuotaSnapshot, TimeoutCounts},
};

/// Significant decimal digits the histograms keep: 1% resolution, which
/// keeps each histogram at a few kilobytes.
pub(crate) const SIGNIFICANT_DIGITS: u8 = 2;
/// Durations are stored in microseconds, up to one hour.
const MAX_MICROS: u64 = 3_600_000_000;
/// Throughput is stored in thousandths of a token per second, up to a
/// million tokens per second.
const MAX_MILLI_RATE: u64 = 1_000_000_000;

/// A bounded histogram of durations or rates.
#[derive(Clone, Debug)]
pub(crate) struct Hist {
    histogram: Histogram<u64>,
    /// The unit values are scaled by when stored.
    scale: f64,
}

impl Hist {
    #[allow(clippy::expect_used)] // constant bounds, exercised by every test
    fn new(max: u64, scale: f64) -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            scale,
        }
    }

    /// Durations, reported in milliseconds.
    pub(crate) fn millis() -> Self {
        Self::new(MAX_MICROS, 1_000.0)
    }

    /// Tokens per second.
    pub(crate) fn rate() -> Self {
        Self::new(MAX_MILLI_RATE, 1_000.0)
    }

    pub(crate) fn record_duration(&mut self, d: Duration) {
        self.histogram
            .saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn record_rate(&mut self, tokens_per_sec: f64) {
        if tokens_per_sec.is_finite() && tokens_per_sec >= 0.0 {
            // Rounded half up by adding one half before the truncating cast
            // (`f64::round` is a library call on every request). The two
            // differ only on exact halves' neighbours in the last bit and on
            // values above 2^52, by one unit, where the histogram resolves
            // two significant digits; the cast saturates.
            self.histogram
                .saturating_record((tokens_per_sec * 1_000.0 + 0.5) as u64);
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at `quantile` (nearest rank), in the reported unit.
    pub(crate) fn quantile(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / self.scale
    }

    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        (!self.histogram.is_empty()).then(|| Percentiles {
            count: self.histogram.len(),
            p10: self.quantile(0.10),
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: self.histogram.max() as f64 / self.scale,
        })
    }
}

/// Throughput and reliability of one input-size category.
#[derive(Clone, Debug)]
pub(crate) struct CategoryStats {
    pub(crate) end_to_end: Hist,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
}

impl CategoryStats {
    pub(crate) fn failure_rate(&self) -> f64 {
        let judged = self.successes + self.failures;
        if judged == 0 {
            0.0
        } else {
            self.failures as f64 / judged as f64
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Quota {
    state: QuotaState,
    exhausted_until: Option<Instant>,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
}

/// Everything known about one backend × model.
#[derive(Debug)]
pub(crate) struct KeyStats {
    /// Kept in the tracker's entry as an atomic; copied here when the
    /// entry is locked for a snapshot.
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) requests: u64,
    pub(crate) successes: u64,
    pub(crate) failures: Vec<(ErrorClass, u64)>,
    pub(crate) timeouts: [u64; 3],
    pub(crate) cancellations: u64,
    pub(crate) truncations: u64,
    pub(crate) rejections: Vec<(RejectReason, u64)>,
    pub(crate) failovers: u64,
    pub(crate) continuations: u64,
    pub(crate) throttled: u64,
    pub(crate) throttle_wait: Duration,
    pub(crate) usage: Usage,
    time_to_first_content: Hist,
    duration: Hist,
    decode: Hist,
    end_to_end: Hist,
    pub(crate) categories: [Option<Box<CategoryStats>>; 6],
    /// Tokens and requests per minute: core's one window, as the TPM
    /// meter counts them.
    rate: SlidingWindow,
    quota: Option<Quota>,
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

/// Output tokens to count when the provider reported none: the streamed
/// estimate.
pub(crate) fn counted_usage(record: &RequestRecord<'_>) -> Usage {
    let mut usage = record.usage.unwrap_or_default();
    if usage.output_tokens == 0 {
        usage.output_tokens = record.streamed_output_tokens;
    }
    usage
}

impl KeyStats {
    pub(crate) fn new() -> Self {
        Self {
            started: 0,
            finished: 0,
            requests: 0,
            successes: 0,
            failures: Vec::new(),
            timeouts: [0; 3],
            cancellations: 0,
            truncations: 0,
            rejections: Vec::new(),
            failovers: 0,
            continuations: 0,
            throttled: 0,
            throttle_wait: Duration::ZERO,
            usage: Usage::default(),
            time_to_first_content: Hist::millis(),
            duration: Hist::millis(),
            decode: Hist::rate(),
            end_to_end: Hist::rate(),
            categories: Default::default(),
            rate: SlidingWindow::new(),
            quota: None,
        }
    }

    /// A finished request, at `second` of the tracker's clock. Requests a
    /// gate refused (class `Rejected`) end the in-flight count but are
    /// otherwise counted by the gate's own rejection event.
    pub(crate) fn completed(&mut self, record: &RequestRecord<'_>, second: u64) {
        self.finished += 1;
        if !crate::sinks::is_operation(record) {
            return;
        }
        self.requests += 1;
        let category_failed = match record.outcome {
            Outcome::Success => {
                self.successes += 1;
                Some(false)
            }
            Outcome::Failed(class) => {
                bump(&mut self.failures, class);
                Some(true)
            }
            Outcome::TimedOut(kind) => {
                self.timeouts[timeout_index(kind)] += 1;
                Some(true)
            }
            Outcome::Truncated => {
                self.truncations += 1;
                Some(true)
            }
            Outcome::Cancelled => {
                self.cancellations += 1;
                None
            }
        };
        let usage = counted_usage(record);
        add_usage(&mut self.usage, usage);
        self.rate.add(second, usage.total(), 1);
        if let Some(ttfc) = record.time_to_first_content {
            self.time_to_first_content.record_duration(ttfc);
        }
        let size = InputSize::from_estimate(record.estimated_tokens);
        let end_to_end = record.end_to_end_tokens_per_sec();
        if record.outcome.is_success() {
            self.duration.record_duration(record.duration);
            if let Some(rate) = record.decode_tokens_per_sec() {
                self.decode.record_rate(rate);
            }
            if let Some(rate) = end_to_end {
                self.end_to_end.record_rate(rate);
            }
        }
        if let Some(failed) = category_failed {
            let category = self.categories[size.index()].get_or_insert_with(|| {
                Box::new(CategoryStats {
                    end_to_end: Hist::rate(),
                    successes: 0,
                    failures: 0,
                })
            });
            if failed {
                category.failures += 1;
            } else {
                category.successes += 1;
                if let Some(rate) = end_to_end {
                    category.end_to_end.record_rate(rate);
                }
            }
        }
    }

    pub(crate) fn rejected(&mut self, reason: RejectReason) {
        bump(&mut self.rejections, reason);
    }

    pub(crate) fn throttled(&mut self, waited: Duration) {
        self.throttled += 1;
        self.throttle_wait = self.throttle_wait.saturating_add(waited);
    }

    pub(crate) fn quota(
        &mut self,
        now: Instant,
        state: QuotaState,
        exhausted_for: Option<Duration>,
        remaining_requests: Option<u64>,
        remaining_tokens: Option<u64>,
    ) {
        self.quota = Some(Quota {
            state,
            // A provider's wait may be huge: saturate, never overflow.
            exhausted_until: exhausted_for.map(|d| streamgate_core::time::instant_after(now, d)),
            remaining_requests,
            remaining_tokens,
        });
    }

    pub(crate) fn category(&self, size: InputSize) -> Option<&CategoryStats> {
        self.categories[size.index()].as_deref()
    }

    pub(crate) fn snapshot(
        &self,
        backend: &streamgate_core::BackendId,
        model: &str,
        now: Instant,
        second: u64,
    ) -> KeySnapshot {
        let (tpm, rpm) = self.rate.totals(second);
        let failures: BTreeMap<&'static str, u64> = self
            .failures
            .iter()
            .map(|(c, n)| (c.as_str(), *n))
            .collect();
        KeySnapshot {
            backend: backend.clone(),
            model: model.to_owned(),
            in_flight: self.started.saturating_sub(self.finished),
            requests: self.requests,
            successes: self.successes,
            failed: failures.values().sum(),
            failures,
            timeouts: TimeoutCounts {
                first_content: self.timeouts[0],
                idle: self.timeouts[1],
                total: self.timeouts[2],
            },
            cancellations: self.cancellations,
            truncations: self.truncations,
            rejections: self
                .rejections
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            failovers: self.failovers,
            continuations: self.continuations,
            throttled: self.throttled,
            throttle_wait_secs: self.throttle_wait.as_secs_f64(),
            usage: self.usage,
            tokens_per_minute: tpm,
            requests_per_minute: rpm,
            time_to_first_content_ms: self.time_to_first_content.percentiles(),
            duration_ms: self.duration.percentiles(),
            decode_tokens_per_sec: self.decode.percentiles(),
            end_to_end_tokens_per_sec: self.end_to_end.percentiles(),
            input_sizes: InputSize::ALL
                .iter()
                .filter_map(|&size| {
                    let c = self.category(size)?;
                    Some(CategorySnapshot {
                        category: size,
                        successes: c.successes,
                        failures: c.failures,
                        failure_rate: c.failure_rate(),
                        end_to_end_tokens_per_sec: c.end_to_end.percentiles(),
                    })
                })
                .collect(),
            quota: self.quota.map(|q| QuotaSnapshot {
                state: q.state,
                exhausted_for_secs: q
                    .exhausted_until
                    .map(|until| until.saturating_duration_since(now).as_secs_f64()),
                remaining_requests: q.remaining_requests,
                remaining_tokens: q.remaining_tokens,
            }),
        }
    }
}

fn timeout_index(kind: TimeoutKind) -> usize {
    match kind {
        TimeoutKind::FirstContent => 0,
        TimeoutKind::Idle => 1,
        TimeoutKind::Total => 2,
    }
}

/// Adds a request's usage to a running total (sums, unlike
/// [`Usage::merge`], which folds reports of one request).
pub(crate) fn add_usage(total: &mut Usage, usage: Usage) {
    *total = total.saturating_add(usage);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentile, the definition the histogram follows.
    fn brute_force(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_match_a_brute_force_computation_within_resolution() {
        // A deterministic spread of durations from 0.2 ms to several seconds.
        let mut values: Vec<u64> = (1..=997u64)
            .map(|i| (i * i * 7919) % 5_000_000 + 200)
            .collect();
        let mut hist = Hist::millis();
        for &v in &values {
            hist.record_duration(Duration::from_micros(v));
        }
        values.sort_unstable();
        let p = hist.percentiles().unwrap_or_else(|| panic!("no samples"));
        assert_eq!(p.count, 997);
        for (q, got) in [
            (0.10, p.p10),
            (0.5, p.p50),
            (0.95, p.p95),
            (0.99, p.p99),
            (1.0, p.max),
        ] {
            let want = brute_force(&values, q) as f64 / 1_000.0;
            // The histogram reports the top of the bucket holding the value:
            // never below it, and within its 1% resolution above it.
            assert!(got >= want, "q{q}: {got} < {want}");
            assert!((got - want) / want <= 0.01, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn rates_keep_fractions() {
        let mut hist = Hist::rate();
        hist.record_rate(5.5);
        assert!((hist.quantile(0.5) - 5.5).abs() / 5.5 <= 0.01);
        hist.record_rate(f64::NAN);
        hist.record_rate(-1.0);
        assert_eq!(hist.len(), 1);
    }

    #[test]
    fn rates_round_to_the_nearest_thousandth_and_saturate() {
        // Values this small are stored exactly: the rounding is visible.
        for (rate, stored) in [(0.0014, 1), (0.0016, 2), (0.0024, 2), (0.0996, 100)] {
            let mut hist = Hist::rate();
            hist.record_rate(rate);
            assert_eq!(hist.histogram.max(), stored, "{rate}");
        }
        let mut hist = Hist::rate();
        hist.record_rate(f64::MAX);
        assert_eq!(hist.len(), 1);
        assert!(hist.quantile(1.0) > 0.0);
    }
}
