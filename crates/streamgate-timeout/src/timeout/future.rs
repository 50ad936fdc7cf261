//! The response future: resolves at the first content chunk, or fails with
//! the first-content deadline.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use pin_project::pin_project;
use streamgate_core::{BoxError, Chunk, Commit};

use super::{timer::LazyTimer, TimeoutBody};

/// The response future of [`FirstChunkTimeout`](super::FirstChunkTimeout).
///
/// Resolves once the first content chunk has arrived (the chunks before it
/// are replayed by the body), with the inner error if the inner service fails
/// first, or with a [`StreamTimeout`](streamgate_core::StreamTimeout) of kind
/// `FirstContent` (or `Total`) when the deadline expires first. On expiry the
/// inner future or body is dropped before the error is returned.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F, B, C> {
    #[pin]
    commit: Option<Commit<F, B, C>>,
    /// Handed to the body on commit, so one timer serves the whole request.
    timer: Option<LazyTimer>,
}

impl<F, B, C> ResponseFuture<F, B, C> {
    pub(crate) fn new(future: F, timer: LazyTimer) -> Self {
        Self {
            commit: Some(Commit::new(future)),
            timer: Some(timer),
        }
    }
}

impl<F, FE, B, C, E> Future for ResponseFuture<F, B, C>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>> + Unpin,
    E: Into<BoxError>,
    C: Chunk,
{
    type Output = Result<Response<TimeoutBody<B, C>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(commit) = this.commit.as_mut().as_pin_mut() else {
            return Poll::Ready(Err("timeout future polled after completion".into()));
        };
        // The inner side goes first: content that is ready at the deadline
        // instant still wins.
        if let Poll::Ready(result) = commit.poll(cx) {
            this.commit.set(None);
            let response = result?;
            let timer = this.timer.take();
            return Poll::Ready(Ok(response.map(|body| TimeoutBody::new(body, timer))));
        }
        let Some(timer) = this.timer.as_mut() else {
            return Poll::Pending;
        };
        if timer.poll_sleep(cx) {
            // Cancel first: dropping the inner future or body closes the
            // connection, so the provider stops before the caller hears of it.
            let error = timer.error();
            this.commit.set(None);
            *this.timer = None;
            return Poll::Ready(Err(error.into()));
        }
        Poll::Pending
    }
}
