//! The service, its response future and the stream observer that reconciles.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::{response::Parts, Response};
use streamgate_core::{
    emit, BoxError, Chunk, EndObserver, Event, Gated, LlmRequest, ObservedBody, ReadyCall,
    RejectReason, Rejected, StreamEnd, StreamObserver, Usage,
};
use tokio::time::Instant;
use tower_service::Service;

use super::layer::Shared;
use crate::meter::Reservation;

/// The TPM budget gate around one backend's service. Made by
/// [`TpmLayer`](super::TpmLayer).
///
/// `call` reserves the request's estimate against the budget; a refusal resolves at once to
/// [`Rejected`] without calling the inner service. The reservation is
/// reconciled when the stream ends (see [`TpmObserver`]).
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
    type Future = TpmFuture<ReadyCall<S, Req>>;

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
        let observer = TpmObserver {
            reservation: Some(reservation),
            estimate,
            usage: None,
            streamed: 0,
            responded: false,
        };
        TpmFuture::call_when_ready(&mut self.inner, request, observer)
    }
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
    }
}
