//! The breaker's state machine, free of tower types.
//!
//! Every method takes `now`, so the whole machine is tested on a fake clock.
//! The closed state's admission is one atomic load and recording a success is
//! a few more; a short mutex guards transitions, the half-open probes and the
//! failure path.

mod window;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use streamgate_core::BreakerState;
use tokio::time::Instant;

use window::{CountWindow, Counts, TimeWindow, Window};
pub(crate) use window::{MAX_COUNT_WINDOW, MAX_TIME_WINDOW};

use crate::config::{OpenWait, WindowKind};

/// The machine's settings, validated by the builder.
#[derive(Clone, Debug)]
pub(crate) struct MachineConfig {
    pub(crate) window: WindowKind,
    /// Failure-rate threshold in hundredths of a percent.
    pub(crate) failure_rate: Option<u32>,
    /// Slow-call-rate threshold in hundredths of a percent.
    pub(crate) slow_rate: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failures_within: Option<(u32, Duration)>,
    pub(crate) open_wait: OpenWait,
    pub(crate) probes: u32,
    pub(crate) half_open_max_wait: Option<Duration>,
    /// The shortest open: no wait, not even a provider's `Retry-After: 0`,
    /// opens for less.
    pub(crate) minimum_open: Duration,
    /// The longest provider-supplied wait honoured; a longer one is cut to
    /// this.
    pub(crate) max_wait: Duration,
    /// A slow probe reopens (only when slow calls are tracked).
    pub(crate) slow_probe_fails: bool,
}

impl MachineConfig {
    fn uses_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_rate.is_some()
    }

    /// Whether old outcomes leave the window with time, so that a rate can
    /// rise without a new failure.
    fn window_drifts(&self) -> bool {
        self.uses_window() && matches!(self.window, WindowKind::Time(_))
    }
}

/// What a call was admitted as; decides what its outcome may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// The breaker is disabled: nothing is recorded.
    Passthrough,
    /// Admitted while closed, in this generation.
    Normal(u64),
    /// A half-open probe of this generation.
    Probe(u64),
    /// Metrics-only mode let through a call the breaker would have rejected.
    Shadow,
}

/// What a call's end means to the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It succeeded.
    Success,
    /// It failed in a class that counts; an error that said when to retry
    /// may open exactly until then.
    Failure { retry_after: Option<Duration> },
    /// The provider said when it resets: open until then.
    OpenUntil(Duration),
    /// It says nothing about the backend: record nothing.
    Ignore,
}

/// Whether a call may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It may, as this.
    Admit(Ticket),
    /// It may not; try again after this long, if known.
    Reject { retry_after: Option<Duration> },
}

/// A change of the reported state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    /// The transition opened the circuit for less than the provider asked
    /// (cut to the maximum wait).
    pub(crate) wait_capped: bool,
}

/// What the machine holds right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MachineSnapshot {
    pub(crate) state: BreakerState,
    pub(crate) circuit: BreakerState,
    pub(crate) counts: Counts,
    pub(crate) consecutive_failures: u32,
    pub(crate) opens: u32,
    pub(crate) open_for: Option<Duration>,
    pub(crate) wait_capped: bool,
    pub(crate) probes_in_flight: u32,
    pub(crate) rejected: u64,
    pub(crate) minimum_calls: u32,
}

// The packed state word: generation << 8 | metrics-only bit | tag.
const TAG_MASK: u64 = 0x7;
const METRICS_ONLY: u64 = 0x8;
const GEN_SHIFT: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum Tag {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    Disabled = 4,
}

impl Tag {
    fn of(word: u64) -> Self {
        match word & TAG_MASK {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }

    fn state(self) -> BreakerState {
        match self {
            Self::Closed => BreakerState::Closed,
            Self::Open => BreakerState::Open,
            Self::HalfOpen => BreakerState::HalfOpen,
            Self::ForcedOpen => BreakerState::ForcedOpen,
            Self::Disabled => BreakerState::Disabled,
        }
    }
}

fn generation(word: u64) -> u64 {
    word >> GEN_SHIFT
}

fn reported(word: u64) -> BreakerState {
    if word & METRICS_ONLY != 0 {
        BreakerState::MetricsOnly
    } else {
        Tag::of(word).state()
    }
}

/// What only changes under the lock.
#[derive(Debug)]
struct Guarded {
    /// Opens since the last close, for a growing wait.
    opens: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    half_open_since: Instant,
    /// The last K failures' times, for "K failures within a window".
    recent_failures: VecDeque<Instant>,
    /// The current open's wait is a provider's, cut to the maximum wait.
    wait_capped: bool,
}

/// The circuit breaker state machine.
#[derive(Debug)]
pub(crate) struct Machine {
    config: MachineConfig,
    epoch: Instant,
    state: AtomicU64,
    /// Nanoseconds since `epoch` at which the open wait ends.
    open_until: AtomicU64,
    consecutive: AtomicU32,
    rejected: AtomicU64,
    /// A rate was at its threshold but the window held too few calls: the
    /// next success may be the call that makes it count.
    warming: AtomicBool,
    window: Option<Window>,
    guarded: Mutex<Guarded>,
}

impl Machine {
    /// A closed machine whose clock starts at `now`.
    pub(crate) fn new(config: MachineConfig, now: Instant) -> Self {
        let window = config.uses_window().then(|| match config.window {
            WindowKind::Count(n) => Window::Count(CountWindow::new(n)),
            WindowKind::Time(n) => Window::Time(TimeWindow::new(n)),
        });
        let capacity = config.failures_within.map_or(0, |(k, _)| k as usize);
        Self {
            epoch: now,
            state: AtomicU64::new(Tag::Closed as u64),
            open_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            warming: AtomicBool::new(false),
            window,
            guarded: Mutex::new(Guarded {
                opens: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                half_open_since: now,
                recent_failures: VecDeque::with_capacity(capacity),
                wait_capped: false,
            }),
            config,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    fn lock(&self) -> MutexGuard<'_, Guarded> {
        // Nothing under the lock can leave it inconsistent: recover from poison.
        self.guarded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as a call at `now` would find it: an open circuit whose
    /// wait has ended reads as half-open, although it turns half-open only
    /// when the next call arrives.
    pub(crate) fn state_at(&self, now: Instant) -> BreakerState {
        let word = self.state.load(Ordering::Acquire);
        if word & METRICS_ONLY == 0
            && Tag::of(word) == Tag::Open
            && self.nanos(now) >= self.open_until.load(Ordering::Acquire)
        {
            return BreakerState::HalfOpen;
        }
        reported(word)
    }

    /// Decides whether a call may go ahead at `now`.
    #[cfg(test)]
    pub(crate) fn admit(&self, now: Instant) -> (Admission, Option<Transition>) {
        self.admit_with(|| now)
    }

    /// [`admit`](Self::admit), reading the clock only when the state needs
    /// it: a closed circuit admits on one atomic load.
    #[inline]
    pub(crate) fn admit_with(&self, now: impl Fn() -> Instant) -> (Admission, Option<Transition>) {
        let word = self.state.load(Ordering::Acquire);
        match Tag::of(word) {
            Tag::Closed => (Admission::Admit(Ticket::Normal(generation(word))), None),
            Tag::Disabled => (Admission::Admit(Ticket::Passthrough), None),
            Tag::Open => {
                let now = now();
                let until = self.open_until.load(Ordering::Acquire);
                let at = self.nanos(now);
                if at < until {
                    (
                        self.reject(word, Some(Duration::from_nanos(until - at))),
                        None,
                    )
                } else {
                    self.admit_locked(now)
                }
            }
            Tag::ForcedOpen => (self.reject(word, None), None),
            Tag::HalfOpen => self.admit_locked(now()),
        }
    }

    fn reject(&self, word: u64, retry_after: Option<Duration>) -> Admission {
        if word & METRICS_ONLY != 0 {
            return Admission::Admit(Ticket::Shadow);
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Admission::Reject { retry_after }
    }

    /// The slow path of admission: open → half-open, and the probes.
    fn admit_locked(&self, now: Instant) -> (Admission, Option<Transition>) {
        let mut guarded = self.lock();
        let word = self.state.load(Ordering::Acquire);
        let mut transition = None;
        match Tag::of(word) {
            Tag::Closed => return (Admission::Admit(Ticket::Normal(generation(word))), None),
            Tag::Disabled => return (Admission::Admit(Ticket::Passthrough), None),
            Tag::ForcedOpen => return (self.reject(word, None), None),
            Tag::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                let at = self.nanos(now);
                if at < until {
                    return (
                        self.reject(word, Some(Duration::from_nanos(until - at))),
                        None,
                    );
                }
                guarded.probes_in_flight = 0;
                guarded.probe_successes = 0;
                guarded.half_open_since = now;
                transition = Some(self.set_tag(Tag::HalfOpen));
            }
            Tag::HalfOpen => {
                if let Some(max) = self.config.half_open_max_wait {
                    if now.saturating_duration_since(guarded.half_open_since) >= max {
                        // No verdict in time: reopen rather than close on no
                        // evidence; the stale probes' permits are void.
                        let (transition, wait) = self.open(&mut guarded, now, None);
                        let word = self.state.load(Ordering::Acquire);
                        return (self.reject(word, Some(wait)), Some(transition));
                    }
                }
            }
        }
        let word = self.state.load(Ordering::Acquire);
        if guarded.probes_in_flight + guarded.probe_successes < self.config.probes {
            guarded.probes_in_flight += 1;
            (
                Admission::Admit(Ticket::Probe(generation(word))),
                transition,
            )
        } else {
            (self.reject(word, None), transition)
        }
    }

    /// Records how a call admitted as `ticket` ended at `now`. `slow` says
    /// whether its first content came later than the slow-call threshold.
    #[cfg(test)]
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        verdict: Verdict,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        self.record_with(ticket, verdict, slow, || now)
    }

    /// [`record`](Self::record), reading the clock only when the outcome
    /// needs it: a success in a closed circuit without a rate window needs
    /// none.
    #[inline]
    pub(crate) fn record_with(
        &self,
        ticket: Ticket,
        verdict: Verdict,
        slow: bool,
        now: impl Fn() -> Instant,
    ) -> Option<Transition> {
        match ticket {
            Ticket::Passthrough | Ticket::Shadow => None,
            Ticket::Normal(gen) => self.record_closed(gen, verdict, slow, now),
            Ticket::Probe(gen) => self.record_probe(gen, verdict, slow, now()),
        }
    }

    fn is_current(&self, gen: u64, tag: Tag) -> bool {
        let word = self.state.load(Ordering::Acquire);
        generation(word) == gen && Tag::of(word) == tag
    }

    #[inline]
    fn record_closed(
        &self,
        gen: u64,
        verdict: Verdict,
        slow: bool,
        now: impl Fn() -> Instant,
    ) -> Option<Transition> {
        // Outcomes of calls admitted before a transition say nothing about
        // the state that followed.
        if !self.is_current(gen, Tag::Closed) {
            return None;
        }
        if verdict == Verdict::Ignore {
            return None;
        }
        if verdict == Verdict::Success {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            let checks_rates = (slow && self.config.slow_rate.is_some())
                || self.warming.load(Ordering::Relaxed)
                || self.config.window_drifts();
            if self.window.is_none() && !checks_rates {
                return None;
            }
        }
        self.record_closed_at(gen, verdict, slow, now())
    }

    fn record_closed_at(
        &self,
        gen: u64,
        verdict: Verdict,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        match verdict {
            Verdict::Ignore => None,
            Verdict::Success => {
                if let Some(window) = &self.window {
                    window.record(self.second(now), false, slow);
                }
                // A plain success only lowers the rates, unless it brings
                // the window up to its minimum while a rate is over, or old
                // successes left a time window since the last check (the
                // rate rose with no new failure). Checking reads the window
                // without the lock; only opening takes it.
                let check = (slow && self.config.slow_rate.is_some())
                    || self.warming.load(Ordering::Relaxed)
                    || self.config.window_drifts();
                if check && self.rates_trip(now) {
                    let mut guarded = self.lock();
                    if self.is_current(gen, Tag::Closed) && self.rates_trip(now) {
                        return Some(self.open(&mut guarded, now, None).0);
                    }
                }
                None
            }
            Verdict::Failure { retry_after } => {
                let consecutive = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if let Some(window) = &self.window {
                    window.record(self.second(now), true, slow);
                }
                let mut guarded = self.lock();
                if !self.is_current(gen, Tag::Closed) {
                    return None;
                }
                let mut trip = self
                    .config
                    .consecutive_failures
                    .is_some_and(|n| consecutive >= n);
                if let Some((k, within)) = self.config.failures_within {
                    let recent = &mut guarded.recent_failures;
                    if recent.len() >= k as usize {
                        recent.pop_front();
                    }
                    recent.push_back(now);
                    trip |= recent.len() >= k as usize
                        && recent
                            .front()
                            .is_some_and(|first| now.saturating_duration_since(*first) <= within);
                }
                trip |= self.rates_trip(now);
                trip.then(|| self.open(&mut guarded, now, retry_after).0)
            }
            Verdict::OpenUntil(until) => {
                let mut guarded = self.lock();
                self.is_current(gen, Tag::Closed)
                    .then(|| self.open(&mut guarded, now, Some(until)).0)
            }
        }
    }

    /// Whether the window's rates reached a threshold (inclusive).
    fn rates_trip(&self, now: Instant) -> bool {
        let Some(window) = &self.window else {
            return false;
        };
        let counts = window.counts(self.second(now));
        if counts.calls == 0 {
            self.warming.store(false, Ordering::Relaxed);
            return false;
        }
        let reached =
            |part: u64, threshold: u32| part * 10_000 >= counts.calls * u64::from(threshold);
        let over = self
            .config
            .failure_rate
            .is_some_and(|t| reached(counts.failures, t))
            || self
                .config
                .slow_rate
                .is_some_and(|t| reached(counts.slow, t));
        let enough = counts.calls >= u64::from(self.config.minimum_calls);
        self.warming.store(over && !enough, Ordering::Relaxed);
        over && enough
    }

    fn record_probe(
        &self,
        gen: u64,
        verdict: Verdict,
        slow: bool,
        now: Instant,
    ) -> Option<Transition> {
        let mut guarded = self.lock();
        if !self.is_current(gen, Tag::HalfOpen) {
            return None;
        }
        guarded.probes_in_flight = guarded.probes_in_flight.saturating_sub(1);
        match verdict {
            Verdict::Ignore => None,
            Verdict::Success if !(slow && self.config.slow_probe_fails) => {
                guarded.probe_successes += 1;
                (guarded.probe_successes >= self.config.probes).then(|| self.close(&mut guarded))
            }
            // Any failing probe reopens, whatever the others do.
            Verdict::Success => Some(self.open(&mut guarded, now, None).0),
            Verdict::Failure { retry_after } => Some(self.open(&mut guarded, now, retry_after).0),
            Verdict::OpenUntil(until) => Some(self.open(&mut guarded, now, Some(until)).0),
        }
    }

    /// Gives back an admission whose call recorded nothing (dropped, or
    /// rejected by another gate): a probe's place goes to the next call.
    pub(crate) fn release(&self, ticket: Ticket) {
        if let Ticket::Probe(gen) = ticket {
            let mut guarded = self.lock();
            if self.is_current(gen, Tag::HalfOpen) {
                guarded.probes_in_flight = guarded.probes_in_flight.saturating_sub(1);
            }
        }
    }

    /// Sets the tag with a new generation, keeping the metrics-only bit.
    /// Called with the lock held.
    fn set_tag(&self, tag: Tag) -> Transition {
        let word = self.state.load(Ordering::Acquire);
        let next = ((generation(word) + 1) << GEN_SHIFT) | (word & METRICS_ONLY) | tag as u64;
        self.state.store(next, Ordering::Release);
        Transition {
            from: Tag::of(word).state(),
            to: tag.state(),
            wait_capped: false,
        }
    }

    /// Opens for the configured wait, or exactly `until` (a provider's
    /// wait) when given, cut to the maximum wait; never for less than the
    /// minimum open.
    fn open(
        &self,
        guarded: &mut Guarded,
        now: Instant,
        until: Option<Duration>,
    ) -> (Transition, Duration) {
        guarded.opens = guarded.opens.saturating_add(1);
        let max = self.config.max_wait;
        let (wait, capped) = match until {
            Some(asked) if asked > max => (max, true),
            Some(asked) => (asked, false),
            None => (self.config.open_wait.wait(guarded.opens), false),
        };
        let wait = wait.max(self.config.minimum_open);
        guarded.wait_capped = capped;
        let at = self
            .nanos(now)
            .saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.open_until.store(at, Ordering::Release);
        let transition = Transition {
            wait_capped: capped,
            ..self.set_tag(Tag::Open)
        };
        (transition, wait)
    }

    fn clear(&self, guarded: &mut Guarded) {
        if let Some(window) = &self.window {
            window.reset();
        }
        self.consecutive.store(0, Ordering::Release);
        self.warming.store(false, Ordering::Relaxed);
        guarded.recent_failures.clear();
        guarded.wait_capped = false;
        guarded.opens = 0;
        guarded.probes_in_flight = 0;
        guarded.probe_successes = 0;
    }

    fn close(&self, guarded: &mut Guarded) -> Transition {
        self.clear(guarded);
        self.set_tag(Tag::Closed)
    }

    /// Replaces the state word under the lock, reporting the change of the
    /// reported state.
    fn set_mode(&self, tag: Tag, metrics_only: bool) -> Option<Transition> {
        let word = self.state.load(Ordering::Acquire);
        let bit = if metrics_only { METRICS_ONLY } else { 0 };
        let next = ((generation(word) + 1) << GEN_SHIFT) | bit | tag as u64;
        self.state.store(next, Ordering::Release);
        let (from, to) = (reported(word), reported(next));
        (from != to).then_some(Transition {
            from,
            to,
            wait_capped: false,
        })
    }

    /// Holds the breaker open until [`reset`](Self::reset): it never turns
    /// half-open by itself.
    pub(crate) fn force_open(&self) -> Option<Transition> {
        let _guarded = self.lock();
        self.set_mode(Tag::ForcedOpen, false)
    }

    /// Lets everything pass and records nothing until [`reset`](Self::reset).
    pub(crate) fn disable(&self) -> Option<Transition> {
        let _guarded = self.lock();
        self.set_mode(Tag::Disabled, false)
    }

    /// Keeps judging and reporting transitions but never rejects. The
    /// circuit keeps its state unless it was forced open or disabled, in
    /// which case it starts closed.
    pub(crate) fn metrics_only(&self) -> Option<Transition> {
        let mut guarded = self.lock();
        let word = self.state.load(Ordering::Acquire);
        match Tag::of(word) {
            Tag::ForcedOpen | Tag::Disabled => {
                self.clear(&mut guarded);
                self.set_mode(Tag::Closed, true)
            }
            tag if word & METRICS_ONLY == 0 => {
                // Same generation: calls in flight still count.
                self.state.store(word | METRICS_ONLY, Ordering::Release);
                Some(Transition {
                    from: tag.state(),
                    to: BreakerState::MetricsOnly,
                    wait_capped: false,
                })
            }
            _ => None,
        }
    }

    /// Back to closed with an empty window, whatever the state or mode.
    pub(crate) fn reset(&self) -> Option<Transition> {
        let mut guarded = self.lock();
        self.clear(&mut guarded);
        self.set_mode(Tag::Closed, false)
    }

    /// Counts and state at `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> MachineSnapshot {
        let guarded = self.lock();
        let word = self.state.load(Ordering::Acquire);
        let tag = Tag::of(word);
        let open_for = (tag == Tag::Open).then(|| {
            let until = self.open_until.load(Ordering::Acquire);
            Duration::from_nanos(until.saturating_sub(self.nanos(now)))
        });
        MachineSnapshot {
            state: self.state_at(now),
            circuit: tag.state(),
            counts: self
                .window
                .as_ref()
                .map(|w| w.counts(self.second(now)))
                .unwrap_or_default(),
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            opens: guarded.opens,
            open_for,
            wait_capped: tag == Tag::Open && guarded.wait_capped,
            probes_in_flight: if tag == Tag::HalfOpen {
                guarded.probes_in_flight
            } else {
                0
            },
            rejected: self.rejected.load(Ordering::Relaxed),
            minimum_calls: self.config.minimum_calls,
        }
    }
}

#[cfg(test)]
mod tests;
