//! The router's response body.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use streamgate_core::{BoxBody, BoxError, Replay};

use super::continuation::Splicing;

/// The body of the attempt that committed: the chunks held before the first
/// content, replayed, then the backend's stream as it comes.
///
/// Without [continuation](super::FailoverBuilder::continuation), a failure
/// of the stream is an `Err` item, never a clean end; with it, a failure
/// after content may be continued on another backend and spliced in (the
/// caller sees one stream), or else is the `Err` item. Without
/// continuation it wraps without buffering or allocating per chunk; with
/// it, it keeps a copy of the text the caller received (up to
/// [`MAX_PREFILL_BYTES`](crate::MAX_PREFILL_BYTES)) for the prefill.
pub struct FailoverBody<C> {
    inner: Replay<BoxBody<C>, C>,
    splice: Option<Box<dyn Splicing<C>>>,
}

impl<C> FailoverBody<C> {
    pub(crate) fn new(inner: Replay<BoxBody<C>, C>) -> Self {
        Self {
            inner,
            splice: None,
        }
    }

    pub(crate) fn splicing(mut self, splice: Box<dyn Splicing<C>>) -> Self {
        self.splice = Some(splice);
        self
    }
}

impl<C> std::fmt::Debug for FailoverBody<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverBody")
            .field("continues", &self.splice.is_some())
            .finish_non_exhaustive()
    }
}

impl<C> Stream for FailoverBody<C> {
    type Item = Result<C, BoxError>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match &mut this.splice {
            None => Pin::new(&mut this.inner).poll_next(cx),
            Some(splice) => splice.poll_next(&mut this.inner, cx),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.splice {
            None => self.inner.size_hint(),
            // A continuation may add to it.
            Some(_) => (self.inner.size_hint().0, None),
        }
    }
}
