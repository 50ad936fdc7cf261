//! The service.

use std::task::{Context, Poll};

use futures_core::Stream;
use http::Response;
use streamgate_core::{BoxError, Chunk, ConfirmedCall, LlmRequest};
use tower_service::Service;

use crate::{layer::Scope, ResponseBody, ResponseFuture};

/// A streaming service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` is always ready. `call` asks the breaker: when it refuses,
/// the future resolves at once to [`Rejected`](streamgate_core::Rejected)
/// with reason `CircuitOpen`, without polling or calling the inner service,
/// so an open breaker refuses even while its backend is not ready. An
/// admitted call readies a clone of the inner service inside the future,
/// then calls it.
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    scope: Scope,
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, scope: Scope) -> Self {
        Self { inner, scope }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B, C, E> Service<Req> for CircuitBreaker<S>
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
    Req: LlmRequest,
{
    type Response = Response<ResponseBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<ConfirmedCall<S, Req>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let admission = match &self.scope {
            Scope::Backend(breaker) => breaker.acquire(request.model()),
            Scope::PerModel(registry) => registry.get(request.model()).acquire(request.model()),
        };
        match admission {
            Ok((permit, confirm)) => {
                ResponseFuture::call_when_confirmed(&mut self.inner, request, permit, confirm)
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
