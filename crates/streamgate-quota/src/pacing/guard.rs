//! Pacing as a guard in front of another guard, for one fused guard layer.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use http::response::Parts;
use streamgate_core::{
    guard::{Call, End, Guard, Now, Refusal, Ticket},
    state::Confirmation,
    Chunk, SharedSink,
};
use tokio::time::Instant;

use super::{
    future::throttled,
    pacer::{Pacer, Stage},
};

/// Pacing in front of guard `G` (the breaker, in `Backend`), as one guard:
/// made by [`PacingLayer::guard`](super::PacingLayer::guard).
///
/// A call the limiters admit at once goes straight on to `G`. A call that
/// must wait is admitted with a [confirmation](Ticket::confirmation) that
/// waits for the limiters, reports the wait as
/// [`Event::Throttled`](streamgate_core::Event::Throttled), and only then
/// asks `G`: a waiting call holds nothing of `G` (no half-open probe), and a
/// refusal by `G` after the wait fails the call with its `Rejected`, reported
/// once. This is what [`PacingLayer`](super::PacingLayer) above a guard
/// layer of `G` does, in one layer: one response future and one body wrapper
/// instead of two. Pacing never refuses, so this guard gates only if `G`
/// does.
#[derive(Clone)]
pub struct PacedGuard<G> {
    pacer: Arc<Pacer>,
    sink: SharedSink,
    then: G,
}

impl<G> PacedGuard<G> {
    pub(super) fn new(pacer: Arc<Pacer>, sink: SharedSink, then: G) -> Self {
        Self { pacer, sink, then }
    }

    /// The guard asked after the wait.
    pub fn then(&self) -> &G {
        &self.then
    }
}

impl<G: fmt::Debug> fmt::Debug for PacedGuard<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacedGuard")
            .field("then", &self.then)
            .finish_non_exhaustive()
    }
}

impl<G> Guard for PacedGuard<G>
where
    G: Guard + Clone + Send + 'static,
    G::Ticket: Send + 'static,
{
    type Ticket = Paced<G::Ticket>;

    fn gates(&self) -> bool {
        self.then.gates()
    }

    #[inline]
    fn admit(&mut self, call: &Call<'_>) -> Result<Self::Ticket, Refusal<'_>> {
        let limiters = self.pacer.limiters(call.backend(), call.model());
        let mut stage = Stage::Requests;
        let started = call.now();
        if limiters
            .advance(&mut stage, call.estimate(), started)
            .is_ok()
        {
            return self
                .then
                .admit(call)
                .map(|ticket| Paced(State::Admitted(ticket)));
        }
        // The wait, then `G`, in the confirmation: everything it needs is
        // owned. Only this path allocates: the confirmation, the model
        // name and the slot for `G`'s ticket.
        let slot: Arc<Mutex<Option<G::Ticket>>> = Arc::default();
        let filled = slot.clone();
        let mut then = self.then.clone();
        let sink = self.sink.clone();
        let backend = call.backend().clone();
        let model: Arc<str> = Arc::from(call.model());
        let estimate = call.estimate();
        let confirm: Confirmation = Box::pin(async move {
            limiters.wait(stage, estimate).await;
            throttled(&sink, &backend, &model, started);
            let confirm = {
                let call = Call::at(&backend, &model, estimate, Instant::now());
                let mut ticket = match then.admit(&call) {
                    Ok(ticket) => ticket,
                    Err(mut refusal) => {
                        refusal.report(&call);
                        return Err(refusal.into_rejected());
                    }
                };
                let confirm = ticket.confirmation();
                // In the slot before `G`'s own confirmation is awaited: if
                // that refuses, the layer ends the ticket as refused.
                *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticket);
                confirm
            };
            match confirm {
                Some(confirm) => confirm.await,
                None => Ok(()),
            }
        });
        Ok(Paced(State::Waiting {
            slot,
            confirm: Some(confirm),
        }))
    }
}

/// The ticket of a [`PacedGuard`]: `G`'s ticket, taken at admission or
/// after the wait.
pub struct Paced<T>(State<T>);

enum State<T> {
    /// Admitted at once, or after the wait: `G`'s ticket.
    Admitted(T),
    /// Waiting for the limiters: `G`'s ticket lands in the slot once `G`
    /// admits, after the wait.
    Waiting {
        /// Where the confirmation puts `G`'s ticket.
        slot: Arc<Mutex<Option<T>>>,
        /// The wait and `G`'s admission, until the layer takes it.
        confirm: Option<Confirmation>,
    },
    /// Waited, and `G` never admitted (the call was dropped or refused).
    Nothing,
}

impl<T> Paced<T> {
    /// `G`'s ticket: a match for one taken at admission; one taken after
    /// the wait is moved out of its slot the first time a hook asks.
    #[inline]
    fn ticket(&mut self) -> Option<&mut T> {
        if let State::Waiting { .. } = self.0 {
            self.settle();
        }
        match &mut self.0 {
            State::Admitted(ticket) => Some(ticket),
            State::Waiting { .. } | State::Nothing => None,
        }
    }

    /// Moves `G`'s ticket out of the slot (only the confirmation, which
    /// has ended once a hook runs, fills it).
    #[cold]
    #[inline(never)]
    fn settle(&mut self) {
        if let State::Waiting { slot, .. } = &self.0 {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            self.0 = taken.map_or(State::Nothing, State::Admitted);
        }
    }
}

impl<T> fmt::Debug for Paced<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            State::Admitted(_) => "Paced::Admitted",
            State::Waiting { .. } => "Paced::Waiting",
            State::Nothing => "Paced::Nothing",
        })
    }
}

impl<T: Ticket> Ticket for Paced<T> {
    fn confirmation(&mut self) -> Option<Confirmation> {
        match &mut self.0 {
            State::Admitted(ticket) => ticket.confirmation(),
            State::Waiting { confirm, .. } => confirm.take(),
            State::Nothing => None,
        }
    }

    #[inline]
    fn on_head(&mut self, head: &Parts) {
        if let Some(ticket) = self.ticket() {
            ticket.on_head(head);
        }
    }

    #[inline]
    fn on_chunk<C: Chunk>(&mut self, chunk: &C, now: &Now) {
        if let Some(ticket) = self.ticket() {
            ticket.on_chunk(chunk, now);
        }
    }

    fn on_end(mut self, end: End<'_>, now: &Now) {
        self.ticket();
        if let State::Admitted(ticket) = self.0 {
            ticket.on_end(end, now);
        }
    }
}
