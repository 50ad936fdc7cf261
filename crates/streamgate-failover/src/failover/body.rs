//! The router's response body.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use pin_project::pin_project;
use streamgate_core::{BoxBody, BoxError, Replay};

/// The body of the attempt that committed: the chunks held before the first
/// content, replayed, then the backend's stream as it comes.
///
/// After commit there is no failover: a failure of the stream is an `Err`
/// item, never a clean end. Wraps without buffering or allocating per chunk.
#[pin_project]
pub struct FailoverBody<C> {
    #[pin]
    inner: Replay<BoxBody<C>, C>,
}

impl<C> FailoverBody<C> {
    pub(crate) fn new(inner: Replay<BoxBody<C>, C>) -> Self {
        Self { inner }
    }
}

impl<C> std::fmt::Debug for FailoverBody<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverBody").finish_non_exhaustive()
    }
}

impl<C> Stream for FailoverBody<C> {
    type Item = Result<C, BoxError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
