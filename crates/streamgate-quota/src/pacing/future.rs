use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use pin_project::pin_project;
use streamgate_core::{emit, BackendId, BoxError, Event, LlmRequest, SharedSink};
use tokio::time::Instant;
use tower_service::Service;

/// The response future of [`Pacing`](super::Pacing): waits for the
/// limiters, then calls the inner service.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct PacingFuture<S: Service<Req>, Req> {
    #[pin]
    state: State<S, Req>,
}

/// A request's wait for the limiters ([`Limiters::wait`](super::pacer::Limiters::wait)), boxed once.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

#[pin_project(project = StateProj)]
enum State<S: Service<Req>, Req> {
    Waiting {
        service: Option<S>,
        request: Option<Req>,
        wait: Wait,
        started: Instant,
        backend: BackendId,
        sink: SharedSink,
    },
    Calling(#[pin] S::Future),
}

impl<S: Service<Req>, Req> PacingFuture<S, Req> {
    /// A request the limiters admitted at once: the inner call.
    pub(crate) fn called(call: S::Future) -> Self {
        Self {
            state: State::Calling(call),
        }
    }

    /// A request that must wait from `started` for the limiters (`wait`,
    /// made by [`Limiters::wait`](super::pacer::Limiters::wait)), then calls the readied `service`.
    pub(crate) fn waiting(
        service: S,
        request: Req,
        wait: Wait,
        started: Instant,
        backend: BackendId,
        sink: SharedSink,
    ) -> Self {
        Self {
            state: State::Waiting {
                service: Some(service),
                request: Some(request),
                wait,
                started,
                backend,
                sink,
            },
        }
    }
}

/// Reports a wait that began at `started` and just ended.
pub(super) fn throttled(sink: &SharedSink, backend: &BackendId, model: &str, started: Instant) {
    emit(sink, || Event::Throttled {
        backend,
        model,
        waited: started.elapsed(),
    });
}

impl<S, Req> Future for PacingFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: LlmRequest,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let call = match this.state.as_mut().project() {
                StateProj::Calling(future) => return future.poll(cx).map_err(Into::into),
                StateProj::Waiting {
                    service,
                    request,
                    wait,
                    started,
                    backend,
                    sink,
                } => {
                    ready!(wait.as_mut().poll(cx));
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        return Poll::Ready(Err("pacing future polled after completion".into()));
                    };
                    throttled(sink, backend, request.model(), *started);
                    service.call(request)
                }
            };
            this.state.set(State::Calling(call));
        }
    }
}
