//! The server's own rate limiter: requests and tokens per minute over a sliding window.
//!
//! Pure bookkeeping with `now` passed in, so it is tested without a server or a clock.
//! Usage is kept in slots of [`SLOT`] (at most 600 of them), which bounds memory at
//! any request rate and makes every reset time exact to within one slot.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The length of the sliding window, as for the providers' per-minute limits.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The granularity of the window.
const SLOT: Duration = Duration::from_millis(100);

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    Requests,
    Tokens,
}

/// A refusal: which limit, and the numbers a provider puts in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitExceeded {
    pub(crate) kind: LimitKind,
    pub(crate) limit: u64,
    pub(crate) used: u64,
    pub(crate) requested: u64,
}

/// The configured limits; `None` means unlimited and unreported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) requests_per_minute: Option<u64>,
    pub(crate) tokens_per_minute: Option<u64>,
}

/// One limit as the providers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Time until the oldest usage counted against this limit leaves the window, that
    /// is until `remaining` next grows; zero when nothing is counted.
    pub(crate) reset: Duration,
}

/// Everything the rate-limit headers of one response say. Token budgets share the
/// TPM limit: `tokens` counts input and output, the other two count one direction each
/// (Anthropic reports all three).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QuotaReport {
    pub(crate) requests: Option<Budget>,
    pub(crate) tokens: Option<Budget>,
    pub(crate) input_tokens: Option<Budget>,
    pub(crate) output_tokens: Option<Budget>,
}

impl QuotaReport {
    /// The report for a scripted 429: the request budget is spent until `retry_after`.
    pub(crate) fn requests_exhausted(mut self, limit: u64, retry_after: Duration) -> Self {
        self.requests = Some(Budget {
            limit,
            remaining: 0,
            reset: retry_after,
        });
        self
    }
}

/// The limiter's answer to a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Counted in the window; the report includes it.
    Admitted(QuotaReport),
    /// Over a limit; nothing was counted.
    Limited {
        report: QuotaReport,
        exceeded: LimitExceeded,
        /// When enough usage will have left the window for this request to fit.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: Instant,
    requests: u64,
    input: u64,
    output: u64,
}

/// Sliding-window usage with optional limits.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Limits,
    slots: VecDeque<Slot>,
}

impl RateLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            slots: VecDeque::new(),
        }
    }

    /// Admits a request that brings `input_tokens`, or says which limit it exceeds.
    /// A request is over the TPM limit when the window's tokens plus its input would
    /// exceed it (output is unknown up front and charged as it streams).
    pub(crate) fn admit(&mut self, now: Instant, input_tokens: u64) -> Admission {
        self.prune(now);
        if let Some(limit) = self.limits.requests_per_minute {
            let used = self.sum(|s| s.requests);
            if used + 1 > limit {
                return self.limited(now, LimitKind::Requests, limit, used, 1);
            }
        }
        if let Some(limit) = self.limits.tokens_per_minute {
            let used = self.sum(|s| s.input + s.output);
            if used.saturating_add(input_tokens) > limit {
                return self.limited(now, LimitKind::Tokens, limit, used, input_tokens);
            }
        }
        self.add(now, 1, input_tokens, 0);
        Admission::Admitted(self.report(now))
    }

    /// Charges output tokens as they are streamed.
    pub(crate) fn record_output(&mut self, now: Instant, tokens: u64) {
        self.prune(now);
        self.add(now, 0, 0, tokens);
    }

    /// Input plus output tokens in the window ending at `now`.
    pub(crate) fn tokens_in_window(&mut self, now: Instant) -> u64 {
        self.prune(now);
        self.sum(|s| s.input + s.output)
    }

    /// The current state of every configured limit.
    pub(crate) fn report(&mut self, now: Instant) -> QuotaReport {
        self.prune(now);
        let budget = |limit: Option<u64>, count: &dyn Fn(&Slot) -> u64| {
            limit.map(|limit| Budget {
                limit,
                remaining: limit.saturating_sub(self.sum(count)),
                reset: self
                    .time_until_freed(now, count, 1)
                    .unwrap_or(Duration::ZERO),
            })
        };
        let tpm = self.limits.tokens_per_minute;
        QuotaReport {
            requests: budget(self.limits.requests_per_minute, &|s| s.requests),
            tokens: budget(tpm, &|s| s.input + s.output),
            input_tokens: budget(tpm, &|s| s.input),
            output_tokens: budget(tpm, &|s| s.output),
        }
    }

    /// Configured limits, for reporting a scripted 429.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    fn limited(
        &mut self,
        now: Instant,
        kind: LimitKind,
        limit: u64,
        used: u64,
        requested: u64,
    ) -> Admission {
        let excess = (used.saturating_add(requested)).saturating_sub(limit);
        let count = |s: &Slot| match kind {
            LimitKind::Requests => s.requests,
            LimitKind::Tokens => s.input + s.output,
        };
        // A request larger than the whole limit never fits; a full window is the
        // honest "not before" we can give.
        let retry_after = self.time_until_freed(now, &count, excess).unwrap_or(WINDOW);
        Admission::Limited {
            report: self.report(now),
            exceeded: LimitExceeded {
                kind,
                limit,
                used,
                requested,
            },
            retry_after,
        }
    }

    /// How long until at least `amount` units of `count` have left the window.
    fn time_until_freed(
        &self,
        now: Instant,
        count: &dyn Fn(&Slot) -> u64,
        amount: u64,
    ) -> Option<Duration> {
        let mut freed = 0u64;
        for slot in &self.slots {
            freed = freed.saturating_add(count(slot));
            if freed >= amount && freed > 0 {
                return Some((slot.start + WINDOW).saturating_duration_since(now));
            }
        }
        None
    }

    fn sum(&self, count: impl Fn(&Slot) -> u64) -> u64 {
        self.slots.iter().map(count).fold(0, u64::saturating_add)
    }

    fn add(&mut self, now: Instant, requests: u64, input: u64, output: u64) {
        match self.slots.back_mut() {
            Some(last) if now.saturating_duration_since(last.start) < SLOT => {
                last.requests += requests;
                last.input += input;
                last.output += output;
            }
            _ => self.slots.push_back(Slot {
                start: now,
                requests,
                input,
                output,
            }),
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(first) = self.slots.front() {
            if first.start + WINDOW <= now {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limiter(rpm: Option<u64>, tpm: Option<u64>) -> RateLimiter {
        RateLimiter::new(Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn unlimited_reports_nothing_but_still_measures_tokens() {
        let mut rl = limiter(None, None);
        let t0 = Instant::now();
        assert_eq!(
            rl.admit(t0, 100),
            Admission::Admitted(QuotaReport::default())
        );
        rl.record_output(t0 + secs(1), 20);
        assert_eq!(rl.tokens_in_window(t0 + secs(2)), 120);
        assert_eq!(rl.tokens_in_window(t0 + secs(61)), 0);
    }

    #[test]
    fn request_limit_counts_the_admitted_request_and_resets_when_the_oldest_leaves() {
        let mut rl = limiter(Some(2), None);
        let t0 = Instant::now();
        rl.admit(t0, 0);
        let Admission::Admitted(report) = rl.admit(t0 + secs(10), 0) else {
            panic!("second request is within the limit");
        };
        let requests = report.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (2, 0));
        assert_eq!(requests.reset, secs(50));
    }

    #[test]
    fn request_over_the_limit_is_refused_until_a_slot_frees() {
        let mut rl = limiter(Some(1), None);
        let t0 = Instant::now();
        rl.admit(t0, 0);
        match rl.admit(t0 + secs(15), 0) {
            Admission::Limited {
                exceeded,
                retry_after,
                ..
            } => {
                assert_eq!(exceeded.kind, LimitKind::Requests);
                assert_eq!(exceeded.used, 1);
                assert_eq!(retry_after, secs(45));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A refused request is not counted, and the window slides.
        assert!(matches!(rl.admit(t0 + secs(60), 0), Admission::Admitted(_)));
    }

    #[test]
    fn token_limit_waits_until_enough_tokens_have_left() {
        let mut rl = limiter(None, Some(100));
        let t0 = Instant::now();
        rl.admit(t0, 30);
        rl.record_output(t0 + secs(20), 50);
        // 80 used; 40 more needs 20 freed: the input at t0 is not enough alone (30),
        // the output at t0+20 s is.
        match rl.admit(t0 + secs(30), 40) {
            Admission::Limited {
                exceeded,
                retry_after,
                ..
            } => {
                assert_eq!(exceeded.kind, LimitKind::Tokens);
                assert_eq!(retry_after, secs(30));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        match rl.admit(t0 + secs(30), 10) {
            Admission::Admitted(report) => {
                let tokens = report.tokens.unwrap();
                assert_eq!((tokens.remaining, tokens.reset), (10, secs(30)));
                assert_eq!(report.input_tokens.unwrap().remaining, 60);
                assert_eq!(report.output_tokens.unwrap().remaining, 50);
            }
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn request_larger_than_the_limit_is_told_to_wait_a_full_window() {
        let mut rl = limiter(None, Some(10));
        match rl.admit(Instant::now(), 11) {
            Admission::Limited { retry_after, .. } => assert_eq!(retry_after, WINDOW),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn memory_is_bounded_by_the_slot_count() {
        let mut rl = limiter(None, None);
        let t0 = Instant::now();
        for ms in 0..120_000 {
            rl.record_output(t0 + Duration::from_millis(ms), 1);
        }
        assert!(rl.slots.len() <= (WINDOW.as_millis() / SLOT.as_millis()) as usize);
    }
}
