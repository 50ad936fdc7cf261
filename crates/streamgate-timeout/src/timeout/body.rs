//! The response body: replays the chunks held until the first content, then
//! enforces the idle and total deadlines.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use pin_project::pin_project;
use streamgate_core::{BoxError, Chunk, Replay};
use tokio::time::{Instant, Sleep};

use super::deadline::{Deadline, Schedule};

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
    timer: Option<Timer>,
}

struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// The deadline in force: what expires, and what is reported then.
    deadline: Deadline,
    /// Where `sleep` is set. Never later than `deadline`: when content moves
    /// the deadline later, the sleep is left where it was and moved on when
    /// it fires (see `poll_expired`), so a steady stream costs no timer
    /// update per chunk.
    armed_at: Instant,
    schedule: Schedule,
    /// A content chunk was handed out since the deadline was last moved; the
    /// idle gap restarts at the next wait. Moving it lazily (only when the
    /// inner stream is pending) keeps back-to-back chunks free of timer work.
    rearm: bool,
}

impl<B, C> TimeoutBody<B, C> {
    pub(crate) fn new(
        body: Replay<B, C>,
        schedule: Schedule,
        sleep: Option<Pin<Box<Sleep>>>,
    ) -> Self {
        let timer = match sleep {
            Some(sleep) if schedule.watches_body() => Some(Timer {
                sleep,
                deadline: schedule.before_content(),
                armed_at: schedule.before_content().at,
                schedule,
                // The first content just arrived.
                rearm: true,
            }),
            _ => None,
        };
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

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(timer) = this.timer.as_mut() {
                    timer.rearm |= chunk.is_content();
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
                let error = timer.deadline.error();
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

impl Timer {
    /// Moves the deadline after content if needed, then polls the sleep.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.rearm {
            self.rearm = false;
            if let Some(next) = self.schedule.after_content(Instant::now()) {
                self.deadline = next;
                if next.at < self.armed_at {
                    // Earlier (an idle gap shorter than the first-content
                    // wait): the sleep must move now.
                    self.arm(next.at);
                }
            }
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.armed_at >= self.deadline.at {
                return true;
            }
            // The sleep fired at an older, earlier deadline: move it on to
            // the one in force and wait again.
            self.arm(self.deadline.at);
        }
    }

    /// Sets the sleep to `at`, in place: no allocation.
    fn arm(&mut self, at: Instant) {
        self.armed_at = at;
        self.sleep.as_mut().reset(at);
    }
}

impl<B: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for TimeoutBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutBody")
            .field("inner", &self.inner)
            .field("deadline", &self.timer.as_ref().map(|t| t.deadline))
            .finish()
    }
}
