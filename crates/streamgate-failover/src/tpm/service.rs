//! The service, its response future and the stream observer that reconciles.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::{response::Parts, Response};
use streamgate_core::{
    emit,
    state::{Reserve, SharedTpm, StateKey, TpmGrant},
    BackendId, BoxError, Chunk, ConfirmedCall, EndObserver, Event, Gated, LlmRequest, ObservedBody,
    RejectReason, Rejected, SharedSink, StreamEnd, StreamObserver, Usage,
};
use tokio::time::Instant;
use tower_service::Service;

use super::layer::Shared;
use crate::meter::Reservation;

/// The TPM budget gate around one backend's service. Made by
/// [`TpmLayer`](super::TpmLayer).
///
/// `call` reserves the request's estimate against the budget; a refusal resolves at once to
/// [`Rejected`] without calling the inner service. With a shared budget
/// ([`TpmLayerBuilder::shared`](super::TpmLayerBuilder::shared)), what the
/// local meter admitted is then reserved in the shared state, whose answer
/// the future awaits (bounded by the implementation) before calling. The
/// reservations are reconciled when the stream ends (see [`TpmObserver`]).
#[derive(Clone, Debug)]
pub struct Tpm<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S, Req, B, C, E> Service<Req> for Tpm<S>
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
    Req: LlmRequest,
{
    type Response = Response<ObservedBody<B, TpmObserver>>;
    type Error = BoxError;
    type Future = TpmFuture<ConfirmedCall<S, Req>>;

    /// Always ready: the inner service is readied inside the response
    /// future of an admitted request, so a refusal never waits for it.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &*self.shared;
        let now = Instant::now();
        let estimate = request.estimated_tokens();
        let meter = shared.meters.meter(request.model());
        let reservation = match meter.try_reserve_owned(now, estimate, shared.max_tokens_per_minute)
        {
            Ok(reservation) => reservation,
            Err(exceeded) => {
                return reject(
                    shared,
                    request.model(),
                    RejectReason::TpmBudget,
                    exceeded.retry_after,
                )
            }
        };
        let (grant, confirm) = match shared.max_tokens_per_minute {
            None => (None, None),
            Some(limit) => {
                let key = StateKey::new(&shared.backend, request.model());
                match shared.state.reserve(key, estimate, limit) {
                    Reserve::Granted(grant) => (Some(grant), None),
                    Reserve::Refused(over) => {
                        // Nothing was used: release the local reservation.
                        reservation.settle(now, 0);
                        return reject(
                            shared,
                            request.model(),
                            RejectReason::TpmBudget,
                            over.retry_after,
                        );
                    }
                    Reserve::Confirm(grant, answer) => {
                        let backend = shared.backend.clone();
                        let model = request.model().to_owned();
                        let sink = shared.sink.clone();
                        let confirm: streamgate_core::state::Confirmation = Box::pin(async move {
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
        let shared_grant = grant
            .filter(|grant| grant.id != 0)
            .map(|grant| SharedGrant {
                state: Arc::clone(&shared.state),
                backend: shared.backend.clone(),
                model: request.model().into(),
                grant,
            });
        let observer = TpmObserver {
            reservation: Some(reservation),
            shared: shared_grant,
            estimate,
            usage: None,
            streamed: 0,
            responded: false,
        };
        TpmFuture::call_when_confirmed(&mut self.inner, request, observer, confirm)
    }
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

fn reject<F>(
    shared: &Shared,
    model: &str,
    reason: RejectReason,
    retry_after: Option<std::time::Duration>,
) -> TpmFuture<F> {
    emit(&shared.sink, || Event::Rejected {
        backend: &shared.backend,
        model,
        reason,
        retry_after,
    });
    TpmFuture::rejected(Rejected::new(shared.backend.clone(), reason).with_retry_after(retry_after))
}

/// The response future of [`Tpm`]: an immediate rejection, or the observed
/// inner call.
pub type TpmFuture<F> = Gated<F, TpmObserver>;

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
#[derive(Debug)]
pub struct TpmObserver {
    reservation: Option<Reservation>,
    shared: Option<SharedGrant>,
    estimate: u64,
    usage: Option<Usage>,
    streamed: u64,
    responded: bool,
}

impl TpmObserver {
    fn used(&self) -> u64 {
        match self.usage {
            Some(usage) if usage.total() > 0 => usage.total(),
            _ => self.estimate.saturating_add(self.streamed),
        }
    }
}

impl<C: Chunk> StreamObserver<C> for TpmObserver {
    fn on_response(&mut self, _parts: &Parts) {
        self.responded = true;
    }

    fn on_chunk(&mut self, chunk: &C) {
        Usage::merge_option(&mut self.usage, chunk.usage());
        self.streamed = self.streamed.saturating_add(chunk.counted_output_tokens());
    }
}

impl EndObserver for TpmObserver {
    fn on_end(mut self, end: StreamEnd<'_>) {
        let now = Instant::now();
        let used = match end {
            StreamEnd::Failed(_) if !self.responded => 0,
            StreamEnd::Dropped => self.used().max(self.estimate),
            StreamEnd::Complete | StreamEnd::Failed(_) => self.used(),
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
