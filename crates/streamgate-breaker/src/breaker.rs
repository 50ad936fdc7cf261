//! The shared breaker handle and its RAII permit.

use std::{cell::OnceCell, error::Error, fmt, sync::Arc, time::Duration};

use streamgate_core::{
    emit,
    guard::{End, Now, Ticket as GuardTicket},
    retry_after,
    state::{Confirmation, Probe, StateKey},
    BackendId, BreakerState, Chunk, ErrorClass, Event, MetricsSink, RejectReason, Rejected,
};
use tokio::time::Instant;

use crate::{
    config::{BreakerBuilder, Settings},
    machine::{Admission, Machine, Ticket, Transition, Verdict},
    CircuitBreakerLayer,
};

/// A circuit breaker for one backend (or one model of a backend).
///
/// Clones share one state, so the handle kept by the application and the
/// layers stacked with it see and change the same circuit.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    machine: Machine,
    settings: Arc<Settings>,
    backend: BackendId,
    model: Option<Box<str>>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("backend", &self.inner.backend)
            .field("model", &self.inner.model)
            .field("state", &self.state())
            .finish()
    }
}

/// What a breaker holds at one moment (see [`Breaker::snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The reported state ([`Breaker::state`]).
    pub state: BreakerState,
    /// The circuit's own state, which metrics-only mode keeps running
    /// (closed, open or half-open; forced open or disabled otherwise).
    pub circuit: BreakerState,
    /// Calls in the window of the rate triggers (0 without a rate trigger).
    pub calls: u64,
    /// Failed calls in that window.
    pub failures: u64,
    /// Slow calls in that window.
    pub slow_calls: u64,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
    /// Opens since the last close (what a growing wait grows with).
    pub opens: u32,
    /// While open: how long until probes are let through.
    pub open_for: Option<Duration>,
    /// While open: the wait a provider asked for was longer than
    /// [`max_wait`](crate::BreakerBuilder::max_wait) and was cut to it.
    pub wait_capped: bool,
    /// While half-open: probes admitted and not yet ended.
    pub probes_in_flight: u32,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// The share of calls in the window that failed, from 0 to 1 (`None`
    /// without a rate trigger or while the window is empty).
    pub failure_rate: Option<f64>,
    /// The share of calls in the window that were slow, from 0 to 1 (`None`
    /// without a rate trigger or while the window is empty).
    pub slow_call_rate: Option<f64>,
    /// Whether the window holds the minimum number of calls, so that the
    /// rates are judged.
    pub minimum_calls_reached: bool,
}

impl Breaker {
    /// A breaker for `backend` with the default settings (see
    /// [`BreakerBuilder`]): 3 failures within 60 s open it for 30 s, then one
    /// probe decides.
    pub fn new(backend: impl Into<BackendId>) -> Self {
        let (backend, settings) = BreakerBuilder::new(backend.into()).into_settings();
        Self::from_settings(backend, None, Arc::new(settings))
    }

    /// Configures a breaker for `backend`.
    pub fn builder(backend: impl Into<BackendId>) -> BreakerBuilder {
        BreakerBuilder::new(backend.into())
    }

    pub(crate) fn from_settings(
        backend: BackendId,
        model: Option<Box<str>>,
        settings: Arc<Settings>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                machine: Machine::new(settings.machine.clone(), Instant::now()),
                settings,
                backend,
                model,
            }),
        }
    }

    /// A layer that guards a service with this breaker.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// The backend.
    pub fn backend(&self) -> &BackendId {
        &self.inner.backend
    }

    /// The model, for a breaker from a per-model [`BreakerRegistry`](crate::BreakerRegistry).
    pub fn model(&self) -> Option<&str> {
        self.inner.model.as_deref()
    }

    /// The current state, as the next call would find it: an open breaker
    /// whose wait has ended reads [`HalfOpen`](BreakerState::HalfOpen) (it
    /// lets a probe through), although the transition itself is made, and
    /// reported, by that call.
    pub fn state(&self) -> BreakerState {
        self.inner.machine.state_at(Instant::now())
    }

    /// State and counts now.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.inner.machine.snapshot(Instant::now());
        let share = |part: u64| {
            // Counts stay far below 2^52, so the ratio is exact enough.
            #[allow(clippy::cast_precision_loss)]
            (s.counts.calls > 0).then(|| part as f64 / s.counts.calls as f64)
        };
        Snapshot {
            failure_rate: share(s.counts.failures),
            slow_call_rate: share(s.counts.slow),
            minimum_calls_reached: s.counts.calls >= u64::from(s.minimum_calls),
            state: s.state,
            circuit: s.circuit,
            calls: s.counts.calls,
            failures: s.counts.failures,
            slow_calls: s.counts.slow,
            consecutive_failures: s.consecutive_failures,
            opens: s.opens,
            open_for: s.open_for,
            wait_capped: s.wait_capped,
            probes_in_flight: s.probes_in_flight,
            rejected: s.rejected,
        }
    }

    /// Holds the breaker open until [`reset`](Self::reset); it never turns
    /// half-open by itself. Calls in flight record nothing.
    pub fn force_open(&self) {
        let transition = self.inner.machine.force_open();
        self.report(transition);
    }

    /// Lets every call through and records nothing until [`reset`](Self::reset).
    pub fn disable(&self) {
        let transition = self.inner.machine.disable();
        self.report(transition);
    }

    /// Keeps recording outcomes and reporting transitions, but never rejects,
    /// until [`reset`](Self::reset). Calls the circuit would have rejected
    /// pass without being recorded and without a rejection event.
    pub fn metrics_only(&self) {
        let transition = self.inner.machine.metrics_only();
        self.report(transition);
    }

    /// Back to closed with an empty window, from any state or mode.
    pub fn reset(&self) {
        let transition = self.inner.machine.reset();
        self.report(transition);
    }

    /// Asks to send one call. The permit records the call's outcome when told
    /// ([`Permit::success`], [`Permit::failure`]) or, as the layer does, when
    /// the observed stream ends; dropped unused, it records nothing and gives
    /// a half-open probe's place to the next call.
    ///
    /// With [shared](BreakerBuilder::shared) state, an open published by
    /// another replica refuses here too; a probe takes the fleet's lease
    /// only if the shared state answers at once (the layer awaits it).
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let model = self.model().unwrap_or("");
        let clock = OnceCell::new();
        self.acquire(model, || *clock.get_or_init(Instant::now))
            .map(|mut permit| {
                permit.confirm = None;
                permit
            })
            .inspect_err(|rejected| self.report_rejected(model, rejected))
    }

    /// The sink that hears of this breaker's refusals and transitions.
    pub(crate) fn sink(&self) -> Option<&dyn MetricsSink> {
        self.inner.settings.sink.as_deref()
    }

    /// The shared state's key of this breaker: the backend, and the model
    /// of a per-model breaker ("" for a breaker of the whole backend).
    fn key(&self) -> StateKey<'_> {
        StateKey::new(
            &self.inner.backend,
            self.inner.model.as_deref().unwrap_or(""),
        )
    }

    /// Admission for a call of `model` at `now` (read only if needed), with
    /// the fleet's answer to await in the permit when this call would probe.
    /// A refusal is not reported here: the caller reports it.
    #[inline]
    pub(crate) fn acquire(
        &self,
        model: &str,
        now: impl Fn() -> Instant + Copy,
    ) -> Result<Permit, Rejected> {
        let shared = &self.inner.settings.shared;
        // Another replica opened the circuit: refused while it is open, a
        // probe through the fleet's lease once it is half-open.
        let mut fleet_probe = false;
        if let Some(until) = shared.open_until(self.key()) {
            let passes = matches!(
                self.inner.machine.state_at(now()),
                BreakerState::Disabled | BreakerState::MetricsOnly
            );
            if !passes {
                if until > now() {
                    return Err(self.rejection(Some(until - now())));
                }
                fleet_probe = true;
            }
        }
        let (admission, transition) = self.inner.machine.admit_with(now);
        self.report(transition);
        match admission {
            Admission::Admit(ticket) => {
                let mut permit = Permit {
                    breaker: self.clone(),
                    ticket,
                    started: self.inner.settings.slow_threshold.map(|_| now()),
                    slow: None,
                    done: false,
                    fleet_probe: fleet_probe && !matches!(ticket, Ticket::Probe(_)),
                    lease: false,
                    confirm: None,
                };
                if !permit.is_probe() && !permit.fleet_probe {
                    return Ok(permit);
                }
                permit.lease = true;
                match shared.take_probe(self.key(), self.inner.settings.probe_lease) {
                    Probe::Granted => Ok(permit),
                    // Dropping the permit frees its probe place.
                    Probe::Taken => {
                        permit.lease = false;
                        Err(self.rejection(None))
                    }
                    Probe::Confirm(answer) => {
                        let breaker = self.clone();
                        let model: Box<str> = model.into();
                        let confirm: Confirmation = Box::pin(async move {
                            if answer.await {
                                Ok(())
                            } else {
                                let rejected = breaker.rejection(None);
                                breaker.report_rejected(&model, &rejected);
                                Err(rejected)
                            }
                        });
                        permit.confirm = Some(confirm);
                        Ok(permit)
                    }
                }
            }
            Admission::Reject { retry_after } => Err(self.rejection(retry_after)),
        }
    }

    fn rejection(&self, retry_after: Option<Duration>) -> Rejected {
        Rejected::new(self.inner.backend.clone(), RejectReason::CircuitOpen)
            .with_retry_after(retry_after)
    }

    /// Reports a refusal that no layer reports (a direct
    /// [`try_acquire`](Self::try_acquire), a fleet's late answer).
    fn report_rejected(&self, model: &str, rejected: &Rejected) {
        emit(&self.inner.settings.sink, || Event::Rejected {
            backend: &self.inner.backend,
            model,
            reason: rejected.reason,
            retry_after: rejected.retry_after,
        });
    }

    /// Reports a transition, if there was one: the check is inlined, the
    /// report (rare) is not.
    #[inline]
    fn report(&self, transition: Option<Transition>) {
        if let Some(transition) = transition {
            self.report_transition(transition);
        }
    }

    #[cold]
    #[inline(never)]
    fn report_transition(&self, transition: Transition) {
        let Transition {
            from,
            to,
            wait_capped,
        } = transition;
        emit(&self.inner.settings.sink, || Event::BreakerTransition {
            backend: &self.inner.backend,
            model: self.model(),
            from,
            to,
            wait_capped,
        });
        self.publish(from, to);
    }

    /// Tells the other replicas of an open, or of a probe's outcome.
    fn publish(&self, from: BreakerState, to: BreakerState) {
        let shared = &self.inner.settings.shared;
        match (from, to) {
            (_, BreakerState::Open) => {
                let now = Instant::now();
                let open_for = self.inner.machine.snapshot(now).open_for;
                let until = streamgate_core::time::instant_after(now, open_for.unwrap_or_default());
                let probe_within = self.inner.settings.probe_lease;
                if from == BreakerState::HalfOpen {
                    shared.publish_outcome(self.key(), Some((until, probe_within)));
                } else {
                    shared.publish_open(self.key(), until, probe_within);
                }
            }
            (BreakerState::HalfOpen, BreakerState::Closed) => {
                shared.publish_outcome(self.key(), None);
            }
            _ => {}
        }
    }

    /// What an error means to this breaker.
    fn verdict(&self, error: &(dyn Error + 'static)) -> Verdict {
        let settings = &self.inner.settings;
        let class = settings.classifier.classify(error);
        let hint = || {
            settings
                .honor_retry_after
                .then(|| retry_after(error))
                .flatten()
        };
        if class == ErrorClass::RateLimited {
            if let Some(until) = hint() {
                return Verdict::OpenUntil(until);
            }
        }
        if settings.counted.contains(class) {
            Verdict::Failure {
                retry_after: hint(),
            }
        } else {
            Verdict::Ignore
        }
    }
}

/// Admission of one call. Records the call's outcome once; dropped without
/// an outcome it records nothing (a cancelled call says nothing about the
/// backend) and frees its half-open probe place.
///
/// It is also the breaker's [`Ticket`](streamgate_core::guard::Ticket) in
/// the layer: a clean end is a success, an error (from the future or as a
/// stream item, a deadline's cut, a refusal further down) is judged by its
/// class, a drop records nothing.
#[must_use = "a permit dropped at once records nothing"]
pub struct Permit {
    breaker: Breaker,
    ticket: Ticket,
    /// When the call started, if slow calls are tracked.
    started: Option<Instant>,
    /// Whether the first content was slow, once it arrived.
    slow: Option<bool>,
    done: bool,
    /// A probe for the fleet while this replica's own circuit is closed
    /// (another replica opened it): its outcome is published here.
    fleet_probe: bool,
    /// Whether this call holds (or asked for) the fleet's probe lease.
    lease: bool,
    /// The fleet's answer to this probe, for the layer to await.
    confirm: Option<Confirmation>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("backend", self.breaker.backend())
            .field("probe", &self.is_probe())
            .finish()
    }
}

impl Permit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(self.ticket, Ticket::Probe(_))
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.finish(Verdict::Success, &Now::new());
    }

    /// The call failed with `error`; its class decides what that means.
    pub fn failure(mut self, error: &(dyn Error + 'static)) {
        let verdict = self.breaker.verdict(error);
        self.finish(verdict, &Now::new());
    }

    /// Marks when the first content arrived, for the slow-call check.
    #[inline]
    fn first_content(&mut self, now: Instant) {
        if let (Some(started), None) = (self.started, self.slow) {
            self.slow = Some(self.is_slow_at(started, now));
        }
    }

    fn is_slow_at(&self, started: Instant, now: Instant) -> bool {
        self.breaker
            .inner
            .settings
            .slow_threshold
            .is_some_and(|threshold| now.saturating_duration_since(started) > threshold)
    }

    #[inline]
    /// Records `verdict`; `now` is read only if the state needs the time,
    /// and shared with the other guards of the layer.
    fn finish(&mut self, verdict: Verdict, now: &Now) {
        self.done = true;
        if matches!(self.ticket, Ticket::Passthrough | Ticket::Shadow) {
            return;
        }
        let machine = &self.breaker.inner.machine;
        if verdict == Verdict::Ignore {
            machine.release(self.ticket);
            self.release_lease();
            return;
        }
        let now = || now.get();
        // A call that never produced content is slow if it took that long.
        let slow = match (self.slow, self.started) {
            (Some(slow), _) => slow,
            (None, Some(started)) => self.is_slow_at(started, now()),
            (None, None) => false,
        };
        let transition = machine.record_with(self.ticket, verdict, slow, now);
        self.breaker.report(transition);
        if self.fleet_probe && self.lease {
            // This replica's circuit was closed: publish the outcome here.
            let settings = &self.breaker.inner.settings;
            let key = self.breaker.key();
            if verdict == Verdict::Success {
                settings.shared.publish_outcome(key, None);
            } else if transition.is_none_or(|t| t.to != BreakerState::Open) {
                let wait = settings
                    .machine
                    .open_wait
                    .wait(1)
                    .max(settings.machine.minimum_open);
                let until = streamgate_core::time::instant_after(now(), wait);
                settings
                    .shared
                    .publish_outcome(key, Some((until, settings.probe_lease)));
            }
        }
        self.lease = false;
    }

    /// Gives the fleet's probe lease back without an outcome.
    fn release_lease(&mut self) {
        if std::mem::take(&mut self.lease) {
            self.breaker
                .inner
                .settings
                .shared
                .release_probe(self.breaker.key());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.breaker.inner.machine.release(self.ticket);
            self.release_lease();
        }
    }
}

impl GuardTicket for Permit {
    fn confirmation(&mut self) -> Option<Confirmation> {
        self.confirm.take()
    }

    #[inline]
    fn on_chunk<C: Chunk>(&mut self, chunk: &C, now: &Now) {
        if self.started.is_some() && self.slow.is_none() && chunk.is_content() {
            self.first_content(now.get());
        }
    }

    fn on_end(mut self, end: End<'_>, now: &Now) {
        match end.error() {
            None if matches!(end, End::Complete) => self.finish(Verdict::Success, now),
            // Drop releases.
            None => {}
            Some(error) => {
                let verdict = self.breaker.verdict(error);
                self.finish(verdict, now);
            }
        }
    }
}
