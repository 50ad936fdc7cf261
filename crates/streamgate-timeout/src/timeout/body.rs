//! The response body: replays the chunks held until the first content, then
//! enforces the idle and total deadlines.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use pin_project::pin_project;
use streamgate_core::{BoxError, Chunk, Replay};

use super::timer::LazyTimer;

/// The body of a [`FirstChunkTimeout`](super::FirstChunkTimeout) response.
///
/// Yields the chunks that came before the first content (in order), the
/// first content chunk, then the rest of the inner stream, with errors
/// converted to [`BoxError`]. When an idle or total deadline expires while
/// waiting for the inner stream, the inner body is dropped, one
/// [`StreamTimeout`](streamgate_core::StreamTimeout) error item is yielded,
/// and the body ends.
///
/// `Unpin` whenever the inner body is.
#[pin_project]
pub struct TimeoutBody<B, C> {
    #[pin]
    inner: Option<Replay<B, C>>,
    /// `None` when neither an idle nor a total deadline is configured.
    timer: Option<LazyTimer>,
}

impl<B, C> TimeoutBody<B, C> {
    pub(crate) fn new(body: Replay<B, C>, timer: Option<LazyTimer>) -> Self {
        let timer = timer.filter(LazyTimer::watches_body).map(|mut timer| {
            // The first content just arrived.
            timer.content();
            timer
        });
        Self {
            inner: Some(body),
            timer,
        }
    }
}

impl<B, C, E> Stream for TimeoutBody<B, C>
where
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
{
    type Item = Result<C, BoxError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(timer) = this.timer.as_mut() {
                    if chunk.is_content() {
                        timer.content();
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.inner.set(None);
                *this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(timer) = this.timer.as_mut() else {
                    return Poll::Pending;
                };
                if !timer.poll_expired(cx) {
                    return Poll::Pending;
                }
                let error = timer.error();
                // Cancel first, then report; the body ends after this item.
                this.inner.set(None);
                *this.timer = None;
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            // One more item may be a timeout error.
            Some(inner) => {
                let (lo, hi) = inner.size_hint();
                (lo, hi.and_then(|h| h.checked_add(1)))
            }
            None => (0, Some(0)),
        }
    }
}

impl<B: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for TimeoutBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutBody")
            .field("inner", &self.inner)
            .field(
                "deadline",
                &self.timer.as_ref().and_then(LazyTimer::deadline),
            )
            .finish()
    }
}
