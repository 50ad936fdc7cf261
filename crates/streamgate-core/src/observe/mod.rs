//! Watching a response and its stream to the end: the plumbing under
//! [`GuardLayer`](crate::guard::GuardLayer), not part of the public API (a
//! layer that learns from outcomes is a [`Guard`](crate::guard::Guard)).
//!
//! [`Observed`] wraps a response future; when it resolves, its body is
//! wrapped in an [`ObservedBody`]. The [`StreamObserver`] sees the response
//! head, every chunk, and exactly one end: complete, failed, or dropped.

use std::{
    error::Error,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures_core::Stream;
use http::{response::Parts, Response};
use pin_project::{pin_project, pinned_drop};

use crate::{BoxError, Rejected};

#[cfg(test)]
mod tests;

/// How an observed request ended.
#[derive(Debug, Clone, Copy)]
pub enum StreamEnd<'a> {
    /// The stream ended cleanly.
    Complete,
    /// The response future failed, or the stream yielded an error item.
    Failed(&'a (dyn Error + 'static)),
    /// The caller dropped the future or the body before the end.
    Dropped,
}

/// The end of one observed request. Split from [`StreamObserver`] so that
/// drop, which cannot name the chunk type, can report it.
pub trait EndObserver: Sized {
    /// The request ended. Called exactly once, from the future or the body.
    fn on_end(self, end: StreamEnd<'_>);
}

/// Callbacks for one request; both default to doing nothing.
pub trait StreamObserver<C>: EndObserver {
    /// The response head arrived (status and headers).
    fn on_response(&mut self, _parts: &Parts) {}

    /// A chunk is about to be handed to the caller.
    fn on_chunk(&mut self, _chunk: &C) {}
}

/// A response future whose outcome is reported to an observer.
///
/// [`Observed`] wraps a response future; when it resolves, its body is
/// wrapped in an [`ObservedBody`]. The [`StreamObserver`] sees the response
/// head, every chunk, and exactly one end: complete, failed, or dropped.
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct Observed<F, O: EndObserver> {
    #[pin]
    future: F,
    observer: Option<O>,
}

impl<F, O: EndObserver> Observed<F, O> {
    /// Observes the response `future` produces.
    pub fn new(future: F, observer: O) -> Self {
        Self {
            future,
            observer: Some(observer),
        }
    }
}

impl<F, FE, B, C, E, O> Future for Observed<F, O>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    O: StreamObserver<C>,
{
    type Output = Result<Response<ObservedBody<B, O>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        let Some(mut observer) = this.observer.take() else {
            return Poll::Ready(Err("observed future polled after completion".into()));
        };
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                observer.on_response(&parts);
                let body = ObservedBody {
                    body,
                    observer: Some(observer),
                };
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
            Err(error) => {
                let error = error.into();
                observer.on_end(StreamEnd::Failed(&*error));
                Poll::Ready(Err(error))
            }
        }
    }
}

#[pinned_drop]
impl<F, O: EndObserver> PinnedDrop for Observed<F, O> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(observer) = self.project().observer.take() {
            observer.on_end(StreamEnd::Dropped);
        }
    }
}

impl<F, O: EndObserver> std::fmt::Debug for Observed<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("finished", &self.observer.is_none())
            .finish_non_exhaustive()
    }
}

/// A body whose chunks and end are reported to an observer.
#[pin_project(PinnedDrop)]
pub struct ObservedBody<B, O: EndObserver> {
    #[pin]
    body: B,
    observer: Option<O>,
}

impl<B, O: EndObserver> ObservedBody<B, O> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }
}

impl<B, C, E, O> Stream for ObservedBody<B, O>
where
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    O: StreamObserver<C>,
{
    type Item = Result<C, BoxError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match ready!(this.body.poll_next(cx)) {
            Some(Ok(chunk)) => {
                if let Some(observer) = this.observer.as_mut() {
                    observer.on_chunk(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(error)) => {
                let error = error.into();
                if let Some(observer) = this.observer.take() {
                    observer.on_end(StreamEnd::Failed(&*error));
                }
                Poll::Ready(Some(Err(error)))
            }
            None => {
                if let Some(observer) = this.observer.take() {
                    observer.on_end(StreamEnd::Complete);
                }
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.body.size_hint()
    }
}

impl<B: std::fmt::Debug, O: EndObserver> std::fmt::Debug for ObservedBody<B, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("body", &self.body)
            .field("finished", &self.observer.is_none())
            .finish()
    }
}

#[pinned_drop]
impl<B, O: EndObserver> PinnedDrop for ObservedBody<B, O> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(observer) = self.project().observer.take() {
            observer.on_end(StreamEnd::Dropped);
        }
    }
}

/// The inner call of an admitted gate request: the inner service's own
/// future when it was ready at once, else a clone of the service readied
/// inside this future and then called.
///
/// Gates answer `poll_ready` at once and await the inner service's
/// readiness only for requests they admit, so a refusal (an open breaker, an
/// exhausted quota) never waits for a backend that is not ready.
#[pin_project(project = ReadyCallProj)]
#[must_use = "futures do nothing unless polled"]
pub enum ReadyCall<S: tower::Service<Req>, Req> {
    /// The service was ready: its call.
    Called(#[pin] S::Future),
    /// The service was not ready: a clone, readied, then called.
    Waiting(#[pin] tower::util::Oneshot<S, Req>),
}

impl<S: tower::Service<Req>, Req> Future for ReadyCall<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadyCallProj::Called(future) => future.poll(cx),
            ReadyCallProj::Waiting(future) => future.poll(cx),
        }
    }
}

impl<S: tower::Service<Req>, Req> std::fmt::Debug for ReadyCall<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Called(_) => "ReadyCall::Called",
            Self::Waiting(_) => "ReadyCall::Waiting",
        })
    }
}

/// The inner call of a gate request admitted locally that shared state must
/// still confirm (see [`state`](crate::state)): the confirmation is awaited,
/// then the service is readied and called; a refusal fails the call with
/// its [`Rejected`] without touching the service.
#[pin_project(project = ConfirmedCallProj)]
#[must_use = "futures do nothing unless polled"]
pub enum ConfirmedCall<S: tower::Service<Req>, Req> {
    /// Nothing to confirm, or confirmed: the call.
    Call(#[pin] ReadyCall<S, Req>),
    /// Waiting for the confirmation.
    Confirming {
        /// Resolves to `Ok` to go ahead.
        confirm: crate::state::Confirmation,
        /// The service and the request, until confirmed.
        call: Option<(S, Req)>,
    },
}

impl<S: tower::Service<Req>, Req> Future for ConfirmedCall<S, Req>
where
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        use tower::ServiceExt;
        loop {
            match self.as_mut().project() {
                ConfirmedCallProj::Call(call) => return call.poll(cx).map_err(Into::into),
                ConfirmedCallProj::Confirming { confirm, call } => {
                    let answer = ready!(confirm.as_mut().poll(cx));
                    let Some((service, request)) = call.take() else {
                        return Poll::Ready(Err("gate future polled after completion".into()));
                    };
                    if let Err(rejected) = answer {
                        return Poll::Ready(Err(rejected.into()));
                    }
                    self.set(Self::Call(ReadyCall::Waiting(service.oneshot(request))));
                }
            }
        }
    }
}

impl<S: tower::Service<Req>, Req> std::fmt::Debug for ConfirmedCall<S, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call(call) => call.fmt(f),
            Self::Confirming { .. } => f.write_str("ConfirmedCall::Confirming"),
        }
    }
}

/// The response future of a gate layer (breaker, quota, TPM): a rejection
/// that resolves at once without touching the inner service, or the inner
/// call, observed to its end.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct Gated<F, O: EndObserver> {
    #[pin]
    state: GatedState<F, O>,
}

#[pin_project(project = GatedProj)]
enum GatedState<F, O: EndObserver> {
    Rejected(Option<Rejected>),
    Admitted(#[pin] Observed<F, O>),
}

impl<F, O: EndObserver> Gated<F, O> {
    /// A future that fails at once with `rejected`.
    pub fn rejected(rejected: Rejected) -> Self {
        Self {
            state: GatedState::Rejected(Some(rejected)),
        }
    }

    /// The inner call `future`, reported to `observer`.
    pub fn admitted(future: F, observer: O) -> Self {
        Self {
            state: GatedState::Admitted(Observed::new(future, observer)),
        }
    }

    /// Whether the gate refused.
    pub fn is_rejected(&self) -> bool {
        matches!(self.state, GatedState::Rejected(_))
    }
}

impl<S, Req, O> Gated<ReadyCall<S, Req>, O>
where
    S: tower::Service<Req> + Clone,
    O: EndObserver,
{
    /// Admits `request` and reports the call to `observer`. A `service`
    /// that is ready now is called now; otherwise a clone of it is readied
    /// inside the future, then called. The gate itself never waits, so it
    /// is always ready.
    pub fn call_when_ready(service: &mut S, request: Req, observer: O) -> Self {
        use tower::ServiceExt;
        // Asking without a waker is enough: when the answer is "not yet",
        // the clone is asked again, with the caller's waker, inside the
        // future.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let call = match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => ReadyCall::Called(service.call(request)),
            // Not ready, or failing: the clone reports the failure.
            _ => ReadyCall::Waiting(service.clone().oneshot(request)),
        };
        Self::admitted(call, observer)
    }
}

impl<S, Req, O> Gated<ConfirmedCall<S, Req>, O>
where
    S: tower::Service<Req> + Clone,
    O: EndObserver,
{
    /// Like [`call_when_ready`](Gated::call_when_ready), after `confirm`
    /// (if any) resolves to `Ok`; a refusal fails the call with its
    /// [`Rejected`], and `observer` sees it as a failure before any
    /// response.
    pub fn call_when_confirmed(
        service: &mut S,
        request: Req,
        observer: O,
        confirm: Option<crate::state::Confirmation>,
    ) -> Self {
        match confirm {
            None => {
                use tower::ServiceExt;
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let call = match service.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => ReadyCall::Called(service.call(request)),
                    _ => ReadyCall::Waiting(service.clone().oneshot(request)),
                };
                Self::admitted(ConfirmedCall::Call(call), observer)
            }
            Some(confirm) => Self::admitted(
                ConfirmedCall::Confirming {
                    confirm,
                    call: Some((service.clone(), request)),
                },
                observer,
            ),
        }
    }
}

impl<F, O: EndObserver> std::fmt::Debug for Gated<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            GatedState::Rejected(rejected) => {
                f.debug_tuple("Gated::Rejected").field(rejected).finish()
            }
            GatedState::Admitted(_) => f.write_str("Gated::Admitted"),
        }
    }
}

impl<F, FE, B, C, E, O> Future for Gated<F, O>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    O: StreamObserver<C>,
{
    type Output = Result<Response<ObservedBody<B, O>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            GatedProj::Admitted(future) => future.poll(cx),
            GatedProj::Rejected(rejected) => Poll::Ready(Err(match rejected.take() {
                Some(rejected) => rejected.into(),
                None => "gate future polled after completion".into(),
            })),
        }
    }
}
