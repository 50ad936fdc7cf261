//! Type-erased streaming services, for routers that hold different clients.
//!
//! A [`BoxStreamingService`] costs one allocation per request: the boxed
//! call holds the inner service's response future and, once the head has
//! arrived, its body, in the same place; the [`BoxBody`] it hands out is
//! that allocation. (Boxing the future and the body apart, as
//! `tower::util::BoxCloneSyncService` with a boxed body does, costs two.)

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use http::{response::Parts, Response};
use tower::Service;

use crate::BoxError;

/// A boxed stream of chunks.
pub type BoxBody<C> = Pin<Box<dyn Stream<Item = Result<C, BoxError>> + Send + 'static>>;

/// A boxed, cloneable streaming service: what a failover router holds when
/// its backends are different client types or stacks.
///
/// Build one with [`boxed`]. Each request allocates once: its response
/// future and its body share one box.
pub struct BoxStreamingService<Req, C> {
    inner: Box<dyn Erased<Req, C>>,
}

/// The response future of a [`BoxStreamingService`]; its response's body
/// is the same allocation.
pub struct BoxResponseFuture<C> {
    call: Option<Pin<Box<dyn Call<C> + Send>>>,
}

/// Boxes a streaming service and its body into a [`BoxStreamingService`].
///
/// Costs one allocation per request, shared by the response future and the
/// body. The body's errors are converted to [`BoxError`] as they come.
///
/// ```
/// use futures::StreamExt;
/// use streamgate_core::testing::{Script, ScriptedService, TestChunk, TestRequest};
/// use streamgate_core::{boxed, BoxStreamingService};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let client = ScriptedService::new(Script::new().meta("role").text("hi"));
/// let service: BoxStreamingService<TestRequest, TestChunk> = boxed(client);
/// let response = service.oneshot(TestRequest::new("m")).await.unwrap();
/// let chunks: Vec<_> = response.into_body().collect().await;
/// assert_eq!(chunks.len(), 2);
/// assert_eq!(chunks[1].as_ref().unwrap(), &TestChunk::Text("hi"));
/// # }
/// ```
pub fn boxed<S, Req, B, C, E>(service: S) -> BoxStreamingService<Req, C>
where
    S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Stream<Item = Result<C, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    C: 'static,
    Req: 'static,
{
    BoxStreamingService {
        inner: Box::new(service),
    }
}

impl<Req, C> Service<Req> for BoxStreamingService<Req, C> {
    type Response = Response<BoxBody<C>>;
    type Error = BoxError;
    type Future = BoxResponseFuture<C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> BoxResponseFuture<C> {
        BoxResponseFuture {
            call: Some(self.inner.call(request)),
        }
    }
}

impl<Req: Send, C> BoxStreamingService<Req, C> {
    /// Readies a clone of this service and calls it with `request`, all
    /// inside the returned future, as `self.clone().oneshot(request)`
    /// would, with no box for the clone: the clone lives in the request's
    /// one allocation until it is called. For a router that calls shared
    /// services from `&self`.
    ///
    /// ```
    /// use streamgate_core::testing::{Script, ScriptedService, TestRequest};
    /// use streamgate_core::boxed;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let client = ScriptedService::new(Script::new().text("hi"));
    /// let service = boxed(client.clone());
    /// let response = service.call_clone(TestRequest::new("m")).await.unwrap();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(client.probe().calls(), 1);
    /// # }
    /// ```
    pub fn call_clone(&self, request: Req) -> BoxResponseFuture<C> {
        BoxResponseFuture {
            call: Some(self.inner.call_clone(request)),
        }
    }
}

impl<Req, C> Clone for BoxStreamingService<Req, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_box(),
        }
    }
}

impl<Req, C> fmt::Debug for BoxStreamingService<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxStreamingService")
            .finish_non_exhaustive()
    }
}

impl<C> Future for BoxResponseFuture<C> {
    type Output = Result<Response<BoxBody<C>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(mut call) = self.call.take() else {
            return Poll::Ready(Err(POLLED_AFTER_COMPLETION.into()));
        };
        match call.as_mut().poll_head(cx) {
            Poll::Pending => {
                self.call = Some(call);
                Poll::Pending
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // The call now holds the body: it is the body.
            Poll::Ready(Ok(parts)) => Poll::Ready(Ok(Response::from_parts(parts, call))),
        }
    }
}

impl<C> fmt::Debug for BoxResponseFuture<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxResponseFuture")
            .field("done", &self.call.is_none())
            .finish()
    }
}

/// A service behind the box: cloneable into another box, and calling into
/// one allocation.
trait Erased<Req, C>: Send + Sync {
    fn clone_box(&self) -> Box<dyn Erased<Req, C>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn call(&mut self, request: Req) -> Pin<Box<dyn Call<C> + Send>>;
    fn call_clone(&self, request: Req) -> Pin<Box<dyn Call<C> + Send>>
    where
        Req: Send;
}

impl<S, Req, B, C, E> Erased<Req, C> for S
where
    S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Stream<Item = Result<C, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    C: 'static,
    Req: 'static,
{
    fn clone_box(&self) -> Box<dyn Erased<Req, C>> {
        Box::new(self.clone())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(self, cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Pin<Box<dyn Call<C> + Send>> {
        Box::pin(CallState::<S::Future, B>::Calling {
            future: Service::call(self, request),
        })
    }

    fn call_clone(&self, request: Req) -> Pin<Box<dyn Call<C> + Send>>
    where
        Req: Send,
    {
        Box::pin(Oneshot::<S, Req, B>::Readying {
            service: self.clone(),
            request: Some(request),
        })
    }
}

/// One request behind the box: first its head, then its body.
trait Call<C>: Stream<Item = Result<C, BoxError>> + Send {
    /// Polls for the response's head; once it is ready, the call is the
    /// body.
    fn poll_head(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Parts, BoxError>>;
}

#[pin_project::pin_project(project = CallProj)]
enum CallState<F, B> {
    Calling {
        #[pin]
        future: F,
    },
    Streaming {
        #[pin]
        body: B,
    },
    /// The response future failed (or, for a call made with
    /// `call_clone`, readiness did).
    Done,
}

impl<F, B, C, E, FE> Call<C> for CallState<F, B>
where
    F: Future<Output = Result<Response<B>, FE>> + Send,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>> + Send,
    E: Into<BoxError>,
{
    fn poll_head(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Parts, BoxError>> {
        let CallProj::Calling { future } = self.as_mut().project() else {
            return Poll::Ready(Err(POLLED_AFTER_COMPLETION.into()));
        };
        match future.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                self.set(CallState::Done);
                Poll::Ready(Err(error.into()))
            }
            Poll::Ready(Ok(response)) => {
                let (parts, body) = response.into_parts();
                self.set(CallState::Streaming { body });
                Poll::Ready(Ok(parts))
            }
        }
    }
}

impl<F, B, C, E> Stream for CallState<F, B>
where
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    type Item = Result<C, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            CallProj::Streaming { body } => body
                .poll_next(cx)
                .map(|item| item.map(|r| r.map_err(Into::into))),
            // Only a body is ever handed out as a stream.
            CallProj::Calling { .. } | CallProj::Done => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            CallState::Streaming { body } => body.size_hint(),
            CallState::Calling { .. } | CallState::Done => (0, Some(0)),
        }
    }
}

/// A clone of a service readied, then called and streamed in one place:
/// the state behind [`BoxStreamingService::call_clone`].
#[pin_project::pin_project(project = OneshotProj)]
enum Oneshot<S: Service<Req>, Req, B> {
    Readying {
        service: S,
        request: Option<Req>,
    },
    /// Called: the call's future, then its body.
    Called(#[pin] CallState<S::Future, B>),
}

impl<S, Req, B, C, E> Call<C> for Oneshot<S, Req, B>
where
    S: Service<Req, Response = Response<B>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send,
    B: Stream<Item = Result<C, E>> + Send,
    E: Into<BoxError>,
{
    fn poll_head(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Parts, BoxError>> {
        if let OneshotProj::Readying { service, request } = self.as_mut().project() {
            let ready = ready!(service.poll_ready(cx));
            let call = match (ready, request.take()) {
                (Ok(()), Some(request)) => CallState::Calling {
                    future: service.call(request),
                },
                (Err(error), _) => {
                    self.set(Oneshot::Called(CallState::Done));
                    return Poll::Ready(Err(error.into()));
                }
                // Only after a completed readying, which leaves this state.
                (Ok(()), None) => CallState::Done,
            };
            // The clone is dropped once called, as tower's `Oneshot` does.
            self.set(Oneshot::Called(call));
        }
        match self.project() {
            OneshotProj::Called(call) => call.poll_head(cx),
            OneshotProj::Readying { .. } => Poll::Ready(Err(POLLED_AFTER_COMPLETION.into())),
        }
    }
}

impl<S, Req, B, C, E> Stream for Oneshot<S, Req, B>
where
    S: Service<Req>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    type Item = Result<C, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            OneshotProj::Called(call) => call.poll_next(cx),
            // Only a body is ever handed out as a stream.
            OneshotProj::Readying { .. } => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Oneshot::Called(call) => call.size_hint(),
            Oneshot::Readying { .. } => (0, Some(0)),
        }
    }
}

/// What a call says when polled again after it completed.
const POLLED_AFTER_COMPLETION: &str = "a streaming response future was polled after it completed";

#[cfg(test)]
mod tests;
