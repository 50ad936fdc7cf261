//! The guard, its service and response future, and the ticket that reconciles.

use std::sync::Arc;

use http::response::Parts;
use streamgate_core::{
    emit,
    guard::{Call, End, Guard, GuardFuture, GuardService, Now, Refusal, Ticket},
    state::{Confirmation, Reserve, SharedTpm, StateKey, TpmGrant},
    BackendId, Chunk, Event, RejectReason, Rejected, SharedSink, Usage,
};

use super::layer::Shared;
use crate::meter::Reservation;

/// The TPM budget gate around one backend's service. Made by
/// [`TpmLayer`](super::TpmLayer): a guard layer of a [`TpmGuard`].
pub type Tpm<S> = GuardService<S, TpmGuard>;

/// The TPM budget gate as a [`Guard`].
///
/// `admit` reserves the request's estimate against the budget; a refusal
/// resolves at once to [`Rejected`] without calling the inner service. With
/// a shared budget ([`TpmLayerBuilder::shared`](super::TpmLayerBuilder::shared)),
/// what the local meter admitted is then reserved in the shared state, whose
/// answer the layer awaits (bounded by the implementation) before calling.
/// The reservations are reconciled when the stream ends (see
/// [`TpmObserver`]).
#[derive(Clone, Debug)]
pub struct TpmGuard {
    pub(crate) shared: Arc<Shared>,
}

impl Guard for TpmGuard {
    type Ticket = TpmObserver;

    fn admit(&mut self, call: &Call<'_>) -> Result<TpmObserver, Refusal<'_>> {
        let shared = &*self.shared;
        let now = call.now();
        let model = call.model();
        let estimate = call.estimate();
        let meter = shared.meters.meter(model);
        let reservation = match meter.try_reserve_owned(now, estimate, shared.max_tokens_per_minute)
        {
            Ok(reservation) => reservation,
            Err(exceeded) => return Err(refusal(shared, exceeded.retry_after)),
        };
        let (grant, confirm) = match shared.max_tokens_per_minute {
            None => (None, None),
            Some(limit) => {
                let key = StateKey::new(&shared.backend, model);
                match shared.state.reserve(key, estimate, limit) {
                    Reserve::Granted(grant) => (Some(grant), None),
                    Reserve::Refused(over) => {
                        // Nothing was used: release the local reservation.
                        reservation.settle(now, 0);
                        return Err(refusal(shared, over.retry_after));
                    }
                    Reserve::Confirm(grant, answer) => {
                        let backend = shared.backend.clone();
                        let model = model.to_owned();
                        let sink = shared.sink.clone();
                        let confirm: Confirmation = Box::pin(async move {
                            let over = match answer.await {
                                Ok(()) => return Ok(()),
                                Err(over) => over,
                            };
                            Err(rejection(&sink, &backend, &model, over.retry_after))
                        });
                        (Some(grant), Some(confirm))
                    }
                }
            }
        };
        // A grant of the in-process state (id 0) has nothing to reconcile.
        // A remote one is boxed: the observer travels with the response
        // through every layer, and only fleets pay for the bigger grant.
        let shared_grant = grant.filter(|grant| grant.id != 0).map(|grant| {
            Box::new(SharedGrant {
                state: Arc::clone(&shared.state),
                backend: shared.backend.clone(),
                model: model.into(),
                grant,
            })
        });
        Ok(TpmObserver {
            reservation: Some(reservation),
            shared: shared_grant,
            confirm,
            estimate,
            usage: None,
            streamed: 0,
            responded: false,
        })
    }
}

/// A refusal of the local budget (or of the shared one, answered at once).
fn refusal(shared: &Shared, retry_after: Option<std::time::Duration>) -> Refusal<'_> {
    let rejected = Rejected::new(shared.backend.clone(), RejectReason::TpmBudget)
        .with_retry_after(retry_after);
    Refusal::new(rejected, shared.sink.as_deref())
}

/// Emits the refusal of the shared budget and builds its error.
fn rejection(
    sink: &SharedSink,
    backend: &BackendId,
    model: &str,
    retry_after: Option<std::time::Duration>,
) -> Rejected {
    emit(sink, || Event::Rejected {
        backend,
        model,
        reason: RejectReason::TpmBudget,
        retry_after,
    });
    Rejected::new(backend.clone(), RejectReason::TpmBudget).with_retry_after(retry_after)
}

/// A reservation in shared state, reconciled at the end.
#[derive(Debug)]
struct SharedGrant {
    state: Arc<dyn SharedTpm>,
    backend: BackendId,
    model: Box<str>,
    grant: TpmGrant,
}

/// The response future of [`Tpm`] for inner service `S` and request `Req`:
/// an immediate rejection, or the observed inner call.
pub type TpmFuture<S, Req> = GuardFuture<S, Req, TpmObserver>;

/// Follows one admitted request and settles its reservation when it ends.
///
/// Tokens recorded at the end:
/// - the provider's usage (input + output), merged over the stream, when
///   reported;
/// - otherwise the estimate plus the output tokens streamed: without a
///   report the estimate is the only figure for the prompt, and counting
///   the output on top never under-counts;
/// - nothing if the request failed before any response (a refused HTTP
///   request is not billed);
/// - at least the estimate if the caller dropped the request (the provider
///   has likely billed the prompt already).
pub struct TpmObserver {
    reservation: Option<Reservation>,
    shared: Option<Box<SharedGrant>>,
    confirm: Option<Confirmation>,
    estimate: u64,
    usage: Option<Usage>,
    streamed: u64,
    responded: bool,
}

impl std::fmt::Debug for TpmObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmObserver")
            .field("reservation", &self.reservation)
            .field("shared", &self.shared)
            .field("estimate", &self.estimate)
            .field("usage", &self.usage)
            .field("streamed", &self.streamed)
            .field("responded", &self.responded)
            .finish_non_exhaustive()
    }
}

impl TpmObserver {
    fn used(&self) -> u64 {
        match self.usage {
            Some(usage) if usage.total() > 0 => usage.total(),
            _ => self.estimate.saturating_add(self.streamed),
        }
    }
}

impl Ticket for TpmObserver {
    fn confirmation(&mut self) -> Option<Confirmation> {
        self.confirm.take()
    }

    fn on_head(&mut self, _head: &Parts) {
        self.responded = true;
    }

    #[inline]
    fn on_chunk<C: Chunk>(&mut self, chunk: &C, _now: &Now) {
        Usage::merge_option(&mut self.usage, chunk.usage());
        self.streamed = self.streamed.saturating_add(chunk.counted_output_tokens());
    }

    fn on_end(mut self, end: End<'_>, now: &Now) {
        let now = now.get();
        let used = match end {
            End::Dropped => self.used().max(self.estimate),
            End::Complete => self.used(),
            // Failed before any response: a refused HTTP request is not
            // billed.
            End::Failed { .. } | End::Cut { .. } | End::Refused(_) if !self.responded => 0,
            End::Failed { .. } | End::Cut { .. } | End::Refused(_) => self.used(),
        };
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(now, used);
        }
        if let Some(shared) = self.shared.take() {
            let key = StateKey::new(&shared.backend, &shared.model);
            shared.state.reconcile(key, shared.grant, used);
        }
    }
}
