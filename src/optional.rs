//! A layer that may be absent, without boxing: the builder's stack has a
//! fixed order, and each place holds either the layered service or the bare
//! one. How the two arms' responses become one type is the place's
//! [`Join`]: a layer that leaves the response as it is (pacing, request
//! mapping) needs nothing; one that wraps the body (the timeout) joins the
//! two bodies in an [`EitherBody`].

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use pin_project::pin_project;
use streamgate_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// How the responses of the two arms of an [`Optional`] become one type.
pub(crate) trait Join<RA, RB> {
    /// The response of the place.
    type Output;
    /// The layered arm's response.
    fn on(response: RA) -> Self::Output;
    /// The bare arm's response.
    fn off(response: RB) -> Self::Output;
}

/// Both arms answer the same response: it is passed on as it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Same;

impl<R> Join<R, R> for Same {
    type Output = R;
    fn on(response: R) -> R {
        response
    }
    fn off(response: R) -> R {
        response
    }
}

/// The arms answer different bodies: joined in an [`EitherBody`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bodies;

impl<BA, BB> Join<Response<BA>, Response<BB>> for Bodies {
    type Output = Response<EitherBody<BA, BB>>;
    fn on(response: Response<BA>) -> Self::Output {
        response.map(EitherBody::On)
    }
    fn off(response: Response<BB>) -> Self::Output {
        response.map(EitherBody::Off)
    }
}

/// `On` when the layer is configured, `Off` when the inner service stands
/// alone; `J` joins their responses.
#[derive(Debug)]
pub(crate) enum Optional<A, B, J> {
    On(A, PhantomData<J>),
    Off(B, PhantomData<J>),
}

impl<A: Clone, B: Clone, J> Clone for Optional<A, B, J> {
    fn clone(&self) -> Self {
        match self {
            Self::On(a, _) => Self::On(a.clone(), PhantomData),
            Self::Off(b, _) => Self::Off(b.clone(), PhantomData),
        }
    }
}

/// Wraps `inner` in `layer` when there is one; the body becomes an
/// [`EitherBody`].
pub(crate) fn apply<L: Layer<S>, S>(layer: Option<L>, inner: S) -> Optional<L::Service, S, Bodies> {
    place(layer, inner)
}

/// Wraps `inner` in `layer` when there is one, for a layer that leaves the
/// response as it is.
pub(crate) fn apply_same<L: Layer<S>, S>(
    layer: Option<L>,
    inner: S,
) -> Optional<L::Service, S, Same> {
    place(layer, inner)
}

fn place<L: Layer<S>, S, J>(layer: Option<L>, inner: S) -> Optional<L::Service, S, J> {
    match layer {
        Some(layer) => Optional::On(layer.layer(inner), PhantomData),
        None => Optional::Off(inner, PhantomData),
    }
}

impl<A, B, J, Req> Service<Req> for Optional<A, B, J>
where
    A: Service<Req>,
    A::Error: Into<BoxError>,
    B: Service<Req>,
    B::Error: Into<BoxError>,
    J: Join<A::Response, B::Response>,
{
    type Response = J::Output;
    type Error = BoxError;
    type Future = EitherFuture<A::Future, B::Future, J>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(a, _) => a.poll_ready(cx).map_err(Into::into),
            Self::Off(b, _) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(a, _) => EitherFuture::On(a.call(request), PhantomData),
            Self::Off(b, _) => EitherFuture::Off(b.call(request), PhantomData),
        }
    }
}

/// The response future of [`Optional`].
#[pin_project(project = EitherFutureProj)]
pub(crate) enum EitherFuture<FA, FB, J> {
    On(#[pin] FA, PhantomData<J>),
    Off(#[pin] FB, PhantomData<J>),
}

impl<FA, FB, J, RA, RB, EA, EB> Future for EitherFuture<FA, FB, J>
where
    FA: Future<Output = Result<RA, EA>>,
    FB: Future<Output = Result<RB, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
    J: Join<RA, RB>,
{
    type Output = Result<J::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherFutureProj::On(f, _) => f.poll(cx).map(|r| r.map(J::on).map_err(Into::into)),
            EitherFutureProj::Off(f, _) => f.poll(cx).map(|r| r.map(J::off).map_err(Into::into)),
        }
    }
}

/// The body of an [`Optional`] joined by [`Bodies`]: `Unpin` whenever both
/// arms are; items of either arm with their errors as [`BoxError`].
#[pin_project(project = EitherBodyProj)]
pub(crate) enum EitherBody<BA, BB> {
    On(#[pin] BA),
    Off(#[pin] BB),
}

impl<BA, BB, C, EA, EB> Stream for EitherBody<BA, BB>
where
    BA: Stream<Item = Result<C, EA>>,
    BB: Stream<Item = Result<C, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Item = Result<C, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            EitherBodyProj::On(b) => b
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(Into::into))),
            EitherBodyProj::Off(b) => b
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(Into::into))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::On(b) => b.size_hint(),
            Self::Off(b) => b.size_hint(),
        }
    }
}
