//! The measuring layer.
//!
//! [`MetricsLayer`] measures each request where it sits in the stack: placed
//! outermost it sees what the caller sees (including time spent in the layers
//! below it, such as pacing); placed right above the client it measures the
//! provider alone.
//!
//! Per request it emits [`Event::RequestStarted`] at `call()`,
//! [`Event::FirstChunk`] and [`Event::FirstContent`] as they arrive, and
//! exactly one [`Event::Completed`] with a [`RequestRecord`], including when
//! the caller drops the future or the stream (outcome cancelled).
//!
//! [`Event::RequestStarted`]: streamgate_core::Event::RequestStarted
//! [`Event::FirstChunk`]: streamgate_core::Event::FirstChunk
//! [`Event::FirstContent`]: streamgate_core::Event::FirstContent
//! [`Event::Completed`]: streamgate_core::Event::Completed
//! [`RequestRecord`]: streamgate_core::RequestRecord

pub(crate) mod measure;
mod service;

use std::sync::Arc;

use streamgate_core::{guard::GuardLayer, BackendId, Classifier, DefaultClassifier, MetricsSink};
use tower_layer::Layer;

pub use service::{Measure, MetricsFuture, MetricsObserver, MetricsService};

/// Measures every request of one backend and reports it to a sink: a
/// [`GuardLayer`] of a [`Measure`].
///
/// ```
/// use std::sync::Arc;
/// use streamgate_metrics::{MetricsLayer, PerformanceTracker};
///
/// let tracker = Arc::new(PerformanceTracker::new());
/// let layer = MetricsLayer::new("openai", tracker.clone());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) backend: BackendId,
    pub(crate) sink: Arc<dyn MetricsSink>,
    pub(crate) classifier: Arc<dyn Classifier>,
}

impl MetricsLayer {
    /// Measures requests to `backend` and records them in `sink`, with the
    /// default classification.
    pub fn new(backend: impl Into<BackendId>, sink: Arc<dyn MetricsSink>) -> Self {
        Self::from_parts(backend.into(), sink, Arc::new(DefaultClassifier))
    }

    /// Configures a layer for `backend`: a [`sink`](MetricsLayerBuilder::sink)
    /// is required, the classifier is optional.
    pub fn builder(backend: impl Into<BackendId>) -> MetricsLayerBuilder {
        MetricsLayerBuilder {
            backend: backend.into(),
            sink: None,
            classifier: Arc::new(DefaultClassifier),
        }
    }

    fn from_parts(
        backend: BackendId,
        sink: Arc<dyn MetricsSink>,
        classifier: Arc<dyn Classifier>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                sink,
                classifier,
            }),
        }
    }

    /// The backend measured.
    pub fn backend(&self) -> &BackendId {
        &self.shared.backend
    }

    /// The guard, to fuse it with others into one [`GuardLayer`].
    pub fn into_guard(self) -> Measure {
        Measure::new(self.shared)
    }
}

/// Configures a [`MetricsLayer`] (see [`MetricsLayer::builder`]).
#[must_use = "a builder does nothing until `build` is called"]
pub struct MetricsLayerBuilder {
    backend: BackendId,
    sink: Option<Arc<dyn MetricsSink>>,
    classifier: Arc<dyn Classifier>,
}

impl std::fmt::Debug for MetricsLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayerBuilder")
            .field("backend", &self.backend)
            .field("sink", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl MetricsLayerBuilder {
    /// Where the measurements go (required).
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Classifies failures with `classifier` instead of
    /// [`classify`](streamgate_core::classify).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Builds the layer; fails without a sink.
    pub fn build(self) -> Result<MetricsLayer, crate::ConfigError> {
        let sink = self
            .sink
            .ok_or(crate::ConfigError::new("a metrics layer needs a sink"))?;
        Ok(MetricsLayer::from_parts(
            self.backend,
            sink,
            self.classifier,
        ))
    }
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("backend", &self.shared.backend)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardLayer::new(self.shared.backend.clone(), self.clone().into_guard()).layer(inner)
    }
}
