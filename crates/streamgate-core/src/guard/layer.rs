//! The one layer, service, future and body for every guard.

use std::{
    fmt,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::{response::Parts, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Call, End, Guard, Now, Ticket};
use crate::{
    BackendId, BoxError, Chunk, ConfirmedCall, EndObserver, Gated, LlmRequest, ObservedBody,
    ReadyCall, StreamEnd, StreamObserver,
};

/// Runs guard `G` around a streaming service (see the [module docs](super)).
#[derive(Clone)]
pub struct GuardLayer<G> {
    backend: BackendId,
    guard: G,
}

impl<G> GuardLayer<G> {
    /// Guards the calls to `backend` with `guard` (a tuple for several).
    pub fn new(backend: impl Into<BackendId>, guard: G) -> Self {
        Self {
            backend: backend.into(),
            guard,
        }
    }

    /// The backend guarded.
    pub fn backend(&self) -> &BackendId {
        &self.backend
    }

    /// The guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The guard, unwrapped (to fuse it with others into one layer).
    pub fn into_guard(self) -> G {
        self.guard
    }
}

impl<G: fmt::Debug> fmt::Debug for GuardLayer<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardLayer")
            .field("backend", &self.backend)
            .field("guard", &self.guard)
            .finish()
    }
}

impl<S, G: Clone> Layer<S> for GuardLayer<G> {
    type Service = GuardService<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            backend: self.backend.clone(),
            guard: self.guard.clone(),
        }
    }
}

/// A streaming service behind guard `G`; made by [`GuardLayer`].
///
/// With a guard that may refuse, `poll_ready` is always ready and `call`
/// asks the guard first: a refusal resolves at once to
/// [`Rejected`](crate::Rejected) without readying or calling the inner
/// service; an admitted call is made at once when the inner service is
/// ready, or readies a clone of it inside the future. Observers alone
/// delegate `poll_ready` and call the inner service directly.
#[derive(Clone)]
pub struct GuardService<S, G> {
    inner: S,
    backend: BackendId,
    guard: G,
}

impl<S, G> GuardService<S, G> {
    /// The guard.
    pub fn guard(&self) -> &G {
        &self.guard
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

impl<S: fmt::Debug, G: fmt::Debug> fmt::Debug for GuardService<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardService")
            .field("inner", &self.inner)
            .field("backend", &self.backend)
            .field("guard", &self.guard)
            .finish()
    }
}

/// The response future of a [`GuardService`]: a refusal that resolves at
/// once, or the inner call followed to its end.
pub type GuardFuture<S, Req, T> = Gated<ConfirmedCall<S, Req>, Admitted<T>>;

/// The body of a guarded response: the inner body, its chunks and its end
/// shown to the ticket. `Unpin` when the inner body is.
pub type GuardBody<B, T> = ObservedBody<B, Admitted<T>>;

impl<S, G, Req, B, C, E> Service<Req> for GuardService<S, G>
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
    Req: LlmRequest,
    G: Guard,
{
    type Response = Response<GuardBody<B, G::Ticket>>;
    type Error = BoxError;
    type Future = GuardFuture<S, Req, G::Ticket>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.guard.gates() {
            // The inner service is readied inside the response future of an
            // admitted call, so a refusal never waits for it.
            Poll::Ready(Ok(()))
        } else {
            self.inner.poll_ready(cx).map_err(Into::into)
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let call = Call::new(&self.backend, &request);
        let mut ticket = match self.guard.admit(&call) {
            Ok(ticket) => ticket,
            Err(mut refusal) => {
                refusal.report(&call);
                return Gated::rejected(refusal.into_rejected());
            }
        };
        let confirm = ticket.confirmation();
        if self.guard.gates() || confirm.is_some() {
            Gated::call_when_confirmed(&mut self.inner, request, Admitted(ticket), confirm)
        } else {
            let call = ReadyCall::Called(self.inner.call(request));
            Gated::admitted(ConfirmedCall::Call(call), Admitted(ticket))
        }
    }
}

/// A ticket as the observer of its call's future and body: turns the
/// stream's events into the ticket's hooks, with one [`Now`] per chunk.
pub struct Admitted<T>(T);

impl<T> Admitted<T> {
    /// The ticket.
    pub fn ticket(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Admitted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admitted")
    }
}

impl<T: Ticket> EndObserver for Admitted<T> {
    #[inline]
    fn on_end(self, end: StreamEnd<'_>) {
        self.0.on_end(End::from(end), &Now::new());
    }
}

impl<T: Ticket, C: Chunk> StreamObserver<C> for Admitted<T> {
    #[inline]
    fn on_response(&mut self, parts: &Parts) {
        self.0.on_head(parts);
    }

    #[inline]
    fn on_chunk(&mut self, chunk: &C) {
        self.0.on_chunk(chunk, &Now::new());
    }
}
