//! [`QuotaLayer`]: refuses calls to a backend whose quota is known to be
//! exhausted, and learns from every response and error.
//!
//! Before calling, the layer asks its [`QuotaTracker`] (a read lock; no
//! allocation). When the key is exhausted, the call resolves at once to
//! [`Rejected`](streamgate_core::Rejected) with reason
//! [`QuotaExhausted`](streamgate_core::RejectReason::QuotaExhausted) and the
//! time left, without readying or calling the inner service.
//!
//! After calling, it learns from:
//! - the headers of every response (a 200 carries the remaining counts);
//! - every [`ProviderError`](streamgate_core::ProviderError) in the error's
//!   source chain, from the response future or from the stream: its status,
//!   headers and body excerpt are parsed like a response, its own
//!   `retry_after` is used when the headers give none, and an error
//!   classified [`RateLimited`](streamgate_core::ErrorClass::RateLimited)
//!   without a 429 status (an in-band error event) counts as a 429.

mod future;
mod service;

use std::sync::Arc;
use streamgate_core::{guard::GuardLayer, BackendId, MetricsSink, SharedSink};
use tower_layer::Layer;

pub use future::ResponseFuture;
pub use service::{Quota, QuotaGuard, QuotaObserver};

use crate::QuotaTracker;

/// Gates a backend on its known quota and learns from its answers: a
/// [`GuardLayer`] of a [`QuotaGuard`].
#[derive(Clone)]
pub struct QuotaLayer {
    layer: GuardLayer<QuotaGuard>,
}

impl QuotaLayer {
    /// A layer for `backend` that records into `tracker` (which may be
    /// shared with other layers and with a pacing layer).
    pub fn new(backend: impl Into<BackendId>, tracker: QuotaTracker) -> Self {
        Self {
            layer: GuardLayer::new(backend, QuotaGuard::new(tracker, None)),
        }
    }

    /// Configures a layer for `backend`: the tracker (default: a new
    /// [`QuotaTracker`] with default settings) and a sink for rejections.
    pub fn builder(backend: impl Into<BackendId>) -> QuotaLayerBuilder {
        QuotaLayerBuilder {
            backend: backend.into(),
            tracker: None,
            sink: None,
        }
    }

    /// The tracker.
    pub fn tracker(&self) -> &QuotaTracker {
        self.layer.guard().tracker()
    }

    /// The backend gated.
    pub fn backend(&self) -> &BackendId {
        self.layer.backend()
    }

    /// The guard, to fuse it with others into one [`GuardLayer`].
    pub fn into_guard(self) -> QuotaGuard {
        self.layer.into_guard()
    }
}

/// Configures a [`QuotaLayer`] (see [`QuotaLayer::builder`]).
#[must_use = "a builder does nothing until `build` is called"]
pub struct QuotaLayerBuilder {
    backend: BackendId,
    tracker: Option<QuotaTracker>,
    sink: SharedSink,
}

impl std::fmt::Debug for QuotaLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLayerBuilder")
            .field("backend", &self.backend)
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl QuotaLayerBuilder {
    /// Records into `tracker` (share one tracker between layers, or keep a
    /// clone to read it).
    pub fn tracker(mut self, tracker: QuotaTracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Reports rejections as [`Event::Rejected`](streamgate_core::Event::Rejected).
    /// State changes are reported by the tracker's own sink.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Builds the layer.
    pub fn build(self) -> Result<QuotaLayer, crate::ConfigError> {
        let tracker = match self.tracker {
            Some(tracker) => tracker,
            None => QuotaTracker::builder().build()?,
        };
        Ok(QuotaLayer {
            layer: GuardLayer::new(self.backend, QuotaGuard::new(tracker, self.sink)),
        })
    }
}

impl std::fmt::Debug for QuotaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLayer")
            .field("backend", self.backend())
            .field("tracker", self.tracker())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = Quota<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.layer.layer(inner)
    }
}

#[cfg(test)]
mod tests;
