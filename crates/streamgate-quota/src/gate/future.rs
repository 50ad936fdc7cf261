use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use pin_project::pin_project;
use streamgate_core::{BoxError, Observed, ObservedBody, Rejected};

use super::QuotaObserver;

/// The response future of [`Quota`](super::Quota): an immediate rejection,
/// or the observed inner call.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Rejected(Option<Rejected>),
    Called(#[pin] Observed<F, QuotaObserver>),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected(rejected: Rejected) -> Self {
        Self {
            kind: Kind::Rejected(Some(rejected)),
        }
    }

    pub(crate) fn called(future: Observed<F, QuotaObserver>) -> Self {
        Self {
            kind: Kind::Called(future),
        }
    }
}

impl<F, FE, B, C, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ObservedBody<B, QuotaObserver>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected(rejected) => Poll::Ready(Err(match rejected.take() {
                Some(rejected) => rejected.into(),
                None => "quota future polled after completion".into(),
            })),
            KindProj::Called(future) => future.poll(cx),
        }
    }
}
