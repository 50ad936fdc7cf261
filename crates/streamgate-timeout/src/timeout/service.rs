//! The service: starts the deadlines at `call()`.

use std::task::{Context, Poll};

use futures_core::Stream;
use http::Response;
use streamgate_core::{BoxError, Chunk};
use tokio::time::Instant;
use tower_service::Service;

use super::{deadline::Schedule, timer::LazyTimer, ResponseFuture, TimeoutBody, TimeoutConfig};

/// Enforces a first-content deadline (and optionally idle and total
/// deadlines) on a streaming service. Made by
/// [`FirstChunkTimeoutLayer`](super::FirstChunkTimeoutLayer) or
/// [`FirstChunkTimeout::new`]; see the [crate docs](crate) for the rules.
#[derive(Clone, Debug)]
pub struct FirstChunkTimeout<S> {
    inner: S,
    config: TimeoutConfig,
}

impl<S> FirstChunkTimeout<S> {
    /// Wraps `inner` with the deadlines in `config`.
    pub fn new(inner: S, config: TimeoutConfig) -> Self {
        Self { inner, config }
    }

    /// The deadlines enforced.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, B, C, E> Service<Req> for FirstChunkTimeout<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>> + Unpin,
    E: Into<BoxError>,
    C: Chunk,
{
    type Response = Response<TimeoutBody<B, C>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // Before the inner call: whatever it does synchronously counts too.
        let schedule = Schedule::new(self.config, Instant::now());
        // The timer is made (one allocation) at the first wait, if any;
        // later deadlines reset it.
        let timer = LazyTimer::new(schedule);
        ResponseFuture::new(self.inner.call(request), timer)
    }
}
