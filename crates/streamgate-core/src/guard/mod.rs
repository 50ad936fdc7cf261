//! Guards: admission and observation of a call as pure state with hooks.
//!
//! A [`Guard`] knows nothing of tower. For each [`Call`] (backend, model,
//! token estimate, the time) it answers [`admit`](Guard::admit) with a
//! [`Ticket`] or a [`Refusal`]. The ticket then sees the response head,
//! every chunk (with one [`Now`] read at most once per chunk, whoever asks
//! first, for every guard), and exactly one [`End`]: complete, failed with
//! its class, cut by a deadline, refused further down, or dropped.
//!
//! Guards compose as tuples (up to four) and as `Option` (`None` admits
//! everything and watches nothing): a tuple admits in order, and when a
//! later guard refuses, the earlier tickets end at once as
//! [`End::Refused`], which releases what they hold (a half-open probe, a
//! reservation) just as dropping them would, while a measuring guard still
//! records the refusal.
//!
//! [`GuardLayer`] is the one tower layer for every guard: one response
//! future, one body wrapper, one place that reports a refusal as
//! [`Event::Rejected`] (a refusal that shared state gives later, through a
//! [`Ticket::confirmation`], is reported by the guard whose confirmation it
//! is, once). When any guard of the layer
//! may refuse ([`Guard::gates`]), the service is always ready and readies
//! the inner service only for the calls it admits, so a refusal never waits
//! for a backend that is not ready; a layer of observers only delegates
//! readiness.
//!
//! # Example
//!
//! A guard that admits at most `limit` calls in flight:
//!
//! ```
//! use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
//! use streamgate_core::guard::{Call, End, Guard, GuardLayer, Now, Refusal, Ticket};
//! use streamgate_core::{RejectReason, Rejected};
//!
//! #[derive(Clone)]
//! struct InFlight { count: Arc<AtomicUsize>, limit: usize }
//!
//! struct Slot(Arc<AtomicUsize>);
//!
//! impl Ticket for Slot {
//!     fn on_end(self, _end: End<'_>, _now: &Now) {}
//! }
//!
//! impl Drop for Slot {
//!     fn drop(&mut self) { self.0.fetch_sub(1, Ordering::Relaxed); }
//! }
//!
//! impl Guard for InFlight {
//!     type Ticket = Slot;
//!     fn admit(&mut self, call: &Call<'_>) -> Result<Slot, Refusal<'_>> {
//!         if self.count.fetch_add(1, Ordering::Relaxed) >= self.limit {
//!             self.count.fetch_sub(1, Ordering::Relaxed);
//!             let rejected = Rejected::new(call.backend().clone(), RejectReason::TpmBudget);
//!             return Err(Refusal::new(rejected, None));
//!         }
//!         Ok(Slot(self.count.clone()))
//!     }
//! }
//!
//! let layer = GuardLayer::new("openai", InFlight { count: Arc::default(), limit: 8 });
//! # let _ = layer;
//! ```

mod layer;
#[cfg(test)]
mod tests;

use std::{cell::OnceCell, error::Error, fmt};

use http::response::Parts;
use tokio::time::Instant;

use crate::{
    classify, state::Confirmation, BackendId, Chunk, ErrorClass, Event, LlmRequest, MetricsSink,
    Rejected, StreamEnd, StreamTimeout,
};

pub use layer::{Admitted, GuardBody, GuardFuture, GuardLayer, GuardService};

/// The time, read at most once and only when a guard asks.
#[derive(Default)]
pub struct Now(OnceCell<Instant>);

impl Now {
    /// Not read yet.
    pub fn new() -> Self {
        Self(OnceCell::new())
    }

    /// Already read: `now`.
    pub fn at(now: Instant) -> Self {
        Self(OnceCell::from(now))
    }

    /// The time: read on the first call, the same on every later one.
    #[inline]
    pub fn get(&self) -> Instant {
        *self.0.get_or_init(Instant::now)
    }
}

impl fmt::Debug for Now {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Now").field(&self.0.get()).finish()
    }
}

/// The request's estimate, behind a reference that needs no type parameter.
trait Estimate {
    fn estimate(&self) -> u64;
}

impl<R: LlmRequest> Estimate for R {
    fn estimate(&self) -> u64 {
        self.estimated_tokens()
    }
}

/// What a guard knows of a call when it decides: the backend, the model,
/// the token estimate (computed once, on first use, for every guard of a
/// layer) and the time (read once, on first use).
pub struct Call<'a> {
    backend: &'a BackendId,
    model: &'a str,
    request: Option<&'a dyn Estimate>,
    estimate: OnceCell<u64>,
    now: Now,
}

impl<'a> Call<'a> {
    /// A call of `request` to `backend`, now.
    pub fn new<R: LlmRequest>(backend: &'a BackendId, request: &'a R) -> Self {
        Self {
            backend,
            model: request.model(),
            request: Some(request),
            estimate: OnceCell::new(),
            now: Now::new(),
        }
    }

    /// A call of `model` to `backend` estimated at `estimate` tokens, at
    /// `now` (for tests and for guards used without a layer).
    pub fn at(backend: &'a BackendId, model: &'a str, estimate: u64, now: Instant) -> Self {
        Self {
            backend,
            model,
            request: None,
            estimate: OnceCell::from(estimate),
            now: Now::at(now),
        }
    }

    /// The backend called.
    pub fn backend(&self) -> &'a BackendId {
        self.backend
    }

    /// The model asked for.
    pub fn model(&self) -> &'a str {
        self.model
    }

    /// The request's token estimate ([`LlmRequest::estimated_tokens`]).
    #[inline]
    pub fn estimate(&self) -> u64 {
        *self
            .estimate
            .get_or_init(|| self.request.map_or(0, Estimate::estimate))
    }

    /// When the call is made.
    #[inline]
    pub fn now(&self) -> Instant {
        self.now.get()
    }
}

impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("backend", self.backend)
            .field("model", &self.model)
            .field("estimate", &self.estimate.get())
            .finish_non_exhaustive()
    }
}

/// How a call ended, as every ticket of it sees it.
#[derive(Clone, Copy, Debug)]
pub enum End<'a> {
    /// The stream ended cleanly.
    Complete,
    /// The response future failed, or the stream yielded an error item.
    Failed {
        /// The error.
        error: &'a (dyn Error + 'static),
        /// Its class by [`classify`] (a guard with its own
        /// [`Classifier`](crate::Classifier) asks it about `error`).
        class: ErrorClass,
    },
    /// A deadline cut the call: a [`StreamTimeout`] in the error's chain.
    Cut {
        /// The error.
        error: &'a (dyn Error + 'static),
        /// Which deadline.
        timeout: &'a StreamTimeout,
    },
    /// A gate refused the call: a later guard of the same layer, or a gate
    /// further down (the error is a [`Rejected`]).
    Refused(&'a Rejected),
    /// The caller dropped the future or the body before the end.
    Dropped,
}

impl<'a> End<'a> {
    /// The end a failure with `error` is.
    pub fn of_error(error: &'a (dyn Error + 'static)) -> Self {
        if let Some(rejected) = error.downcast_ref::<Rejected>() {
            return Self::Refused(rejected);
        }
        let mut current = Some(error);
        while let Some(err) = current {
            if let Some(timeout) = err.downcast_ref::<StreamTimeout>() {
                return Self::Cut { error, timeout };
            }
            current = err.source();
        }
        Self::Failed {
            error,
            class: classify(error),
        }
    }

    /// The error of a failed, cut or refused call.
    pub fn error(&self) -> Option<&'a (dyn Error + 'static)> {
        match *self {
            Self::Failed { error, .. } | Self::Cut { error, .. } => Some(error),
            Self::Refused(rejected) => Some(rejected),
            Self::Complete | Self::Dropped => None,
        }
    }
}

impl<'a> From<StreamEnd<'a>> for End<'a> {
    fn from(end: StreamEnd<'a>) -> Self {
        match end {
            StreamEnd::Complete => Self::Complete,
            StreamEnd::Failed(error) => Self::of_error(error),
            StreamEnd::Dropped => Self::Dropped,
        }
    }
}

/// A guard's refusal: the [`Rejected`] the caller gets, and the sink that
/// hears of it as [`Event::Rejected`] (reported once, by the layer).
pub struct Refusal<'g> {
    rejected: Rejected,
    sink: Option<&'g dyn MetricsSink>,
}

impl<'g> Refusal<'g> {
    /// Refuses with `rejected`, reported to `sink`.
    pub fn new(rejected: Rejected, sink: Option<&'g dyn MetricsSink>) -> Self {
        Self { rejected, sink }
    }

    /// What the caller gets.
    pub fn rejected(&self) -> &Rejected {
        &self.rejected
    }

    /// The rejection, reported or not.
    pub fn into_rejected(self) -> Rejected {
        self.rejected
    }

    /// Reports the refusal of `call` to the sink, once.
    pub fn report(&mut self, call: &Call<'_>) {
        if let Some(sink) = self.sink.take() {
            sink.record(&Event::Rejected {
                backend: &self.rejected.backend,
                model: call.model(),
                reason: self.rejected.reason,
                retry_after: self.rejected.retry_after,
            });
        }
    }
}

impl fmt::Debug for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("rejected", &self.rejected)
            .field("reported", &self.sink.is_none())
            .finish()
    }
}

/// One admitted call, as one guard follows it.
///
/// Dropping a ticket without an end is allowed (a tuple does it for the
/// tickets that come after a refusal is known); guards release what a ticket
/// holds in `Drop` so that this and every end leave no trace.
pub trait Ticket {
    /// State that must confirm the admission (see [`state`](crate::state)):
    /// the layer awaits it before calling. Asked once, right after `admit`.
    fn confirmation(&mut self) -> Option<Confirmation> {
        None
    }

    /// The response head arrived.
    fn on_head(&mut self, _head: &Parts) {}

    /// A chunk is about to be handed to the caller, at `now`.
    fn on_chunk<C: Chunk>(&mut self, _chunk: &C, _now: &Now) {}

    /// The call ended, at `now` (read at most once for every ticket of the
    /// layer). Called at most once, and exactly once for a call the layer
    /// made.
    fn on_end(self, end: End<'_>, now: &Now);
}

/// Admission and observation for a backend (see the [module docs](self)).
pub trait Guard {
    /// What follows an admitted call.
    type Ticket: Ticket;

    /// Whether this guard may refuse. A layer of guards that never refuse
    /// delegates readiness to the inner service instead of readying it per
    /// call.
    fn gates(&self) -> bool {
        true
    }

    /// Admits `call`, or refuses it.
    fn admit(&mut self, call: &Call<'_>) -> Result<Self::Ticket, Refusal<'_>>;
}

impl<T: Ticket> Ticket for Option<T> {
    fn confirmation(&mut self) -> Option<Confirmation> {
        self.as_mut().and_then(Ticket::confirmation)
    }

    #[inline]
    fn on_head(&mut self, head: &Parts) {
        if let Some(ticket) = self {
            ticket.on_head(head);
        }
    }

    #[inline]
    fn on_chunk<C: Chunk>(&mut self, chunk: &C, now: &Now) {
        if let Some(ticket) = self {
            ticket.on_chunk(chunk, now);
        }
    }

    #[inline]
    fn on_end(self, end: End<'_>, now: &Now) {
        if let Some(ticket) = self {
            ticket.on_end(end, now);
        }
    }
}

impl<G: Guard> Guard for Option<G> {
    type Ticket = Option<G::Ticket>;
    fn gates(&self) -> bool {
        self.as_ref().is_some_and(Guard::gates)
    }

    #[inline]
    fn admit(&mut self, call: &Call<'_>) -> Result<Self::Ticket, Refusal<'_>> {
        match self {
            Some(guard) => guard.admit(call).map(Some),
            None => Ok(None),
        }
    }
}

/// Both confirmations, one after the other.
fn chain(first: Option<Confirmation>, then: Option<Confirmation>) -> Option<Confirmation> {
    match (first, then) {
        (None, only) | (only, None) => only,
        (Some(first), Some(then)) => Some(Box::pin(async move {
            first.await?;
            then.await
        })),
    }
}

macro_rules! tuple {
    ($($guard:ident $ticket:ident $index:tt),+) => {
        impl<$($ticket: Ticket),+> Ticket for ($($ticket,)+) {
            fn confirmation(&mut self) -> Option<Confirmation> {
                let mut confirm = None;
                $(confirm = chain(confirm, self.$index.confirmation());)+
                confirm
            }

            #[inline]
            fn on_head(&mut self, head: &Parts) {
                $(self.$index.on_head(head);)+
            }

            #[inline]
            fn on_chunk<C: Chunk>(&mut self, chunk: &C, now: &Now) {
                $(self.$index.on_chunk(chunk, now);)+
            }

            #[inline]
            fn on_end(self, end: End<'_>, now: &Now) {
                $(self.$index.on_end(end, now);)+
            }
        }

        impl<$($guard: Guard),+> Guard for ($($guard,)+) {
            type Ticket = ($($guard::Ticket,)+);
            fn gates(&self) -> bool {
                $(self.$index.gates())||+
            }

            #[inline]
            fn admit(&mut self, call: &Call<'_>) -> Result<Self::Ticket, Refusal<'_>> {
                tuple!(@admit self, call, (); $($index $ticket),+)
            }
        }
    };
    // Admits the guards in order; on a refusal, reports it, then ends the
    // tickets admitted so far as refused, in order.
    (@admit $self:ident, $call:ident, ($($done:ident)*); $index:tt $ticket:ident $(, $rest:tt $rest_ticket:ident)*) => {{
        #[allow(non_snake_case)]
        let $ticket = match $self.$index.admit($call) {
            Ok(ticket) => ticket,
            Err(mut refusal) => {
                refusal.report($call);
                tuple!(@release refusal, $call, $($done)*);
                return Err(refusal);
            }
        };
        tuple!(@admit $self, $call, ($($done)* $ticket); $($rest $rest_ticket),*)
    }};
    (@admit $self:ident, $call:ident, ($($done:ident)*); ) => {
        Ok(($($done,)*))
    };
    (@release $refusal:ident, $call:ident, ) => {};
    (@release $refusal:ident, $call:ident, $($done:ident)+) => {
        $($done.on_end(End::Refused($refusal.rejected()), &$call.now);)+
    };
}

tuple!(A TA 0);
tuple!(A TA 0, B TB 1);
tuple!(A TA 0, B TB 1, C TC 2);
tuple!(A TA 0, B TB 1, C TC 2, D TD 3);
