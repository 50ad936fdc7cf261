//! A layer that may be absent, without boxing: the builder's stack has a
//! fixed order, and each place holds either the layered service or the bare
//! one. Both arms' bodies are mapped to `BoxError` items, so the layers
//! above see one body type whichever arm is taken.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use pin_project::pin_project;
use streamgate_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// `On` when the layer is configured, `Off` when the inner service stands
/// alone.
#[derive(Clone, Debug)]
pub(crate) enum Optional<A, B> {
    On(A),
    Off(B),
}

/// Wraps `inner` in `layer` when there is one.
pub(crate) fn apply<L: Layer<S>, S>(layer: Option<L>, inner: S) -> Optional<L::Service, S> {
    match layer {
        Some(layer) => Optional::On(layer.layer(inner)),
        None => Optional::Off(inner),
    }
}

impl<A, B, Req, BA, BB, C, EA, EB> Service<Req> for Optional<A, B>
where
    A: Service<Req, Response = Response<BA>>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = Response<BB>>,
    B::Error: Into<BoxError>,
    BA: Stream<Item = Result<C, EA>>,
    BB: Stream<Item = Result<C, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Response = Response<EitherBody<BA, BB>>;
    type Error = BoxError;
    type Future = EitherFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(a) => a.poll_ready(cx).map_err(Into::into),
            Self::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(a) => EitherFuture::On(a.call(request)),
            Self::Off(b) => EitherFuture::Off(b.call(request)),
        }
    }
}

/// The response future of [`Optional`].
#[pin_project(project = EitherFutureProj)]
pub(crate) enum EitherFuture<FA, FB> {
    On(#[pin] FA),
    Off(#[pin] FB),
}

impl<FA, FB, BA, BB, EA, EB> Future for EitherFuture<FA, FB>
where
    FA: Future<Output = Result<Response<BA>, EA>>,
    FB: Future<Output = Result<Response<BB>, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<Response<EitherBody<BA, BB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EitherFutureProj::On(f) => f
                .poll(cx)
                .map(|r| r.map(|res| res.map(EitherBody::On)).map_err(Into::into)),
            EitherFutureProj::Off(f) => f
                .poll(cx)
                .map(|r| r.map(|res| res.map(EitherBody::Off)).map_err(Into::into)),
        }
    }
}

/// The body of [`Optional`]: `Unpin` whenever both arms are.
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

/// A layer that may be absent and leaves the response as it is (pacing,
/// request mapping): both arms answer the inner service's response, so no
/// body wrapper is needed.
#[derive(Clone, Debug)]
pub(crate) enum Passthrough<A, B> {
    On(A),
    Off(B),
}

/// Wraps `inner` in `layer` when there is one; the response is the inner
/// service's either way.
pub(crate) fn apply_same<L: Layer<S>, S>(layer: Option<L>, inner: S) -> Passthrough<L::Service, S> {
    match layer {
        Some(layer) => Passthrough::On(layer.layer(inner)),
        None => Passthrough::Off(inner),
    }
}

impl<A, B, Req, R> Service<Req> for Passthrough<A, B>
where
    A: Service<Req, Response = R>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = R>,
    B::Error: Into<BoxError>,
{
    type Response = R;
    type Error = BoxError;
    type Future = PassthroughFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(a) => a.poll_ready(cx).map_err(Into::into),
            Self::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(a) => PassthroughFuture::On(a.call(request)),
            Self::Off(b) => PassthroughFuture::Off(b.call(request)),
        }
    }
}

/// The response future of [`Passthrough`].
#[pin_project(project = PassthroughFutureProj)]
pub(crate) enum PassthroughFuture<FA, FB> {
    On(#[pin] FA),
    Off(#[pin] FB),
}

impl<FA, FB, R, EA, EB> Future for PassthroughFuture<FA, FB>
where
    FA: Future<Output = Result<R, EA>>,
    FB: Future<Output = Result<R, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PassthroughFutureProj::On(f) => f.poll(cx).map_err(Into::into),
            PassthroughFutureProj::Off(f) => f.poll(cx).map_err(Into::into),
        }
    }
}
