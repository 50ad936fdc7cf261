//! The response future.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use pin_project::pin_project;
use streamgate_core::{BoxError, Chunk, Observed, ObservedBody, Rejected};

use crate::Permit;

/// The body of a guarded response: the inner body, observed until its end.
/// `Unpin` when the inner body is.
pub type ResponseBody<B> = ObservedBody<B, Permit>;

/// The response future of [`CircuitBreaker`](crate::CircuitBreaker): the
/// inner future observed, or a rejection that resolves at once.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Called(#[pin] Observed<F, Permit>),
    Rejected(Option<Rejected>),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: Observed<F, Permit>) -> Self {
        Self {
            kind: Kind::Called(future),
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        Self {
            kind: Kind::Rejected(Some(rejected)),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called(_) => f.write_str("ResponseFuture::Called"),
            Kind::Rejected(r) => f.debug_tuple("ResponseFuture::Rejected").field(r).finish(),
        }
    }
}

impl<F, FE, B, C, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called(future) => future.poll(cx),
            KindProj::Rejected(rejected) => Poll::Ready(Err(match rejected.take() {
                Some(rejected) => rejected.into(),
                None => "circuit breaker future polled after completion".into(),
            })),
        }
    }
}
