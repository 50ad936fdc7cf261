//! The commit-at-first-content primitive.
//!
//! [`Commit`] drives a response future, then polls the body until the first
//! content chunk (or the end of the stream) before it resolves. Chunks that
//! come before the content (role-only chunks, pings, `message_start`) are
//! held and replayed by [`Replay`], so the caller loses nothing. An error
//! before the first content becomes the future's `Err`, which is what lets a
//! failover layer retry elsewhere before the caller has seen a single token.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures_core::Stream;
use http::{response::Parts, Response};
use pin_project::pin_project;

use crate::{BoxError, Chunk};

/// Resolves with the response once the stream is committed.
///
/// [`Commit`] drives a response future, then polls the body until the first
/// content chunk (or the end of the stream) before it resolves. Chunks that
/// come before the content (role-only chunks, pings, `message_start`) are
/// held and replayed by [`Replay`], so the caller loses nothing. An error
/// before the first content becomes the future's `Err`, which is what lets a
/// failover layer retry elsewhere before the caller has seen a single token.
///
/// Created with [`Commit::new`]. The body must be `Unpin` because it is handed
/// over inside the response (box a `!Unpin` body with `Box::pin`).
///
/// Allocates nothing when at most one chunk comes before the first content
/// (a role-only chunk, say); otherwise one buffer per request holds the
/// chunks before it.
#[pin_project(project = CommitProj)]
#[must_use = "futures do nothing unless polled"]
pub struct Commit<F, B, C> {
    #[pin]
    future: Option<F>,
    draining: Option<Draining<B, C>>,
}

struct Draining<B, C> {
    parts: Parts,
    body: B,
    held: Held<C>,
}

/// The chunks held before the first content, in order. The first one is
/// kept inline: most streams open with exactly one non-content chunk (a
/// role or `message_start`), and holding it should not allocate.
#[derive(Debug)]
struct Held<C> {
    first: Option<C>,
    rest: VecDeque<C>,
}

impl<C> Held<C> {
    const fn new() -> Self {
        Self {
            first: None,
            rest: VecDeque::new(),
        }
    }

    fn push_back(&mut self, chunk: C) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(chunk);
        } else {
            self.rest.push_back(chunk);
        }
    }

    fn pop_front(&mut self) -> Option<C> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }
}

impl<F, B, C> Commit<F, B, C> {
    /// Commits the response that `future` produces.
    pub fn new(future: F) -> Self {
        Self {
            future: Some(future),
            draining: None,
        }
    }

    /// Whether the inner future has produced its response headers and the
    /// body is being read for the first content.
    pub fn has_response(&self) -> bool {
        self.draining.is_some()
    }

    /// Whether any chunk arrived yet.
    pub fn has_chunks(&self) -> bool {
        self.draining.as_ref().is_some_and(|d| !d.held.is_empty())
    }
}

impl<F, FE, B, C, E> Future for Commit<F, B, C>
where
    F: Future<Output = Result<Response<B>, FE>>,
    FE: Into<BoxError>,
    B: Stream<Item = Result<C, E>> + Unpin,
    E: Into<BoxError>,
    C: Chunk,
{
    type Output = Result<Response<Replay<B, C>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(future) = this.future.as_mut().as_pin_mut() {
            let response = ready!(future.poll(cx)).map_err(Into::into)?;
            // The inner future is done: drop it now rather than with `self`.
            this.future.set(None);
            let (parts, body) = response.into_parts();
            *this.draining = Some(Draining {
                parts,
                body,
                held: Held::new(),
            });
        }
        let Some(draining) = this.draining.as_mut() else {
            return Poll::Ready(Err("commit future polled after completion".into()));
        };
        let first = loop {
            match ready!(Pin::new(&mut draining.body).poll_next(cx)) {
                Some(Ok(chunk)) if chunk.is_content() => break Some(chunk),
                Some(Ok(chunk)) => draining.held.push_back(chunk),
                Some(Err(error)) => {
                    *this.draining = None;
                    return Poll::Ready(Err(error.into()));
                }
                None => break None,
            }
        };
        match this.draining.take() {
            Some(draining) => Poll::Ready(Ok(draining.into_response(first))),
            None => Poll::Ready(Err("commit future polled after completion".into())),
        }
    }
}

impl<B, C> Draining<B, C> {
    fn into_response(self, first: Option<C>) -> Response<Replay<B, C>> {
        let ended = first.is_none();
        let body = Replay {
            held: self.held,
            first,
            body: self.body,
            ended,
            through: false,
        };
        Response::from_parts(self.parts, body)
    }
}

/// A body that first replays the chunks held while committing, then the
/// first content chunk, then continues with the inner body.
#[pin_project]
#[derive(Debug)]
pub struct Replay<B, C> {
    held: Held<C>,
    first: Option<C>,
    #[pin]
    body: B,
    /// The inner body already ended while committing.
    ended: bool,
    /// Nothing is left to replay and the inner body has not ended: every
    /// poll goes straight to it.
    through: bool,
}

impl<B, C> Replay<B, C> {
    /// A body with nothing held (for a response that was not committed).
    pub fn passthrough(body: B) -> Self {
        Self {
            held: Held::new(),
            first: None,
            body,
            ended: false,
            through: true,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }

    /// Replays `chunks` after whatever is still to be replayed and before
    /// the rest of the inner body: for chunks read from this body and held
    /// back (a throughput probe before commit, say). `ended` says the inner
    /// body has already ended, so it is not polled again.
    pub fn hold_back(&mut self, chunks: impl IntoIterator<Item = C>, ended: bool) {
        if let Some(first) = self.first.take() {
            self.held.push_back(first);
        }
        for chunk in chunks {
            self.held.push_back(chunk);
        }
        self.ended |= ended;
        self.through = false;
    }
}

impl<B, C, E> Stream for Replay<B, C>
where
    B: Stream<Item = Result<C, E>>,
{
    type Item = Result<C, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.through {
            return this.body.poll_next(cx);
        }
        if let Some(chunk) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(chunk) = this.first.take() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        *this.through = true;
        this.body.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let replayed = self.held.len() + usize::from(self.first.is_some());
        if self.ended {
            return (replayed, Some(replayed));
        }
        let (lo, hi) = self.body.size_hint();
        (
            lo.saturating_add(replayed),
            hi.and_then(|h| h.checked_add(replayed)),
        )
    }
}
