use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use pin_project::pin_project;
use streamgate_core::{
    emit, time::instant_after, BackendId, BoxError, Event, LlmRequest, SharedSink,
};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::pacer::{Limiters, Stage};

/// The response future of [`Pacing`](super::Pacing): waits for the
/// limiters, then calls the inner service.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct PacingFuture<S: Service<Req>, Req> {
    #[pin]
    state: State<S, Req>,
}

#[pin_project(project = StateProj)]
enum State<S: Service<Req>, Req> {
    Waiting {
        service: Option<S>,
        request: Option<Req>,
        limiters: Arc<Limiters>,
        stage: Stage,
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
        started: Option<Instant>,
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

    /// A request that must wait from `started` for the limiters, from
    /// `stage` on, then calls the readied `service`.
    pub(crate) fn waiting(
        service: S,
        request: Req,
        limiters: Arc<Limiters>,
        stage: Stage,
        started: Instant,
        backend: BackendId,
        sink: SharedSink,
    ) -> Self {
        Self {
            state: State::Waiting {
                service: Some(service),
                request: Some(request),
                limiters,
                stage,
                sleep: None,
                armed: false,
                started: Some(started),
                backend,
                sink,
            },
        }
    }
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
                    limiters,
                    stage,
                    sleep,
                    armed,
                    started,
                    backend,
                    sink,
                } => {
                    if *armed {
                        if let Some(timer) = sleep.as_mut() {
                            ready!(timer.as_mut().poll(cx));
                        }
                        *armed = false;
                    }
                    let tokens = request.as_ref().map_or(0, LlmRequest::estimated_tokens);
                    let now = Instant::now();
                    match limiters.advance(stage, tokens, now) {
                        Err(wait) => {
                            started.get_or_insert(now);
                            // One boxed timer per waiting request, reset on later waits.
                            let deadline = instant_after(now, wait);
                            match sleep.as_mut() {
                                Some(timer) => timer.as_mut().reset(deadline),
                                None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                            }
                            *armed = true;
                            continue;
                        }
                        Ok(()) => {
                            let (Some(mut service), Some(request)) =
                                (service.take(), request.take())
                            else {
                                return Poll::Ready(Err(
                                    "pacing future polled after completion".into()
                                ));
                            };
                            if let Some(started) = started {
                                emit(sink, || Event::Throttled {
                                    backend,
                                    model: request.model(),
                                    waited: started.elapsed(),
                                });
                            }
                            service.call(request)
                        }
                    }
                }
            };
            this.state.set(State::Calling(call));
        }
    }
}
