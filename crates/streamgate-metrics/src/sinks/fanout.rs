//! Sending every event to several sinks.

use std::sync::Arc;

use streamgate_core::{Event, MetricsSink};

/// Records every event in each of its sinks, in order.
///
/// ```
/// use std::sync::Arc;
/// use streamgate_metrics::{Fanout, PerformanceTracker, TracingSink};
///
/// let tracker = Arc::new(PerformanceTracker::new());
/// let sink = Fanout::new().with(tracker.clone()).with(Arc::new(TracingSink::new()));
/// assert_eq!(sink.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Fanout {
    sinks: Vec<Arc<dyn MetricsSink>>,
}

impl Fanout {
    /// A fan-out to no sink yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    #[must_use]
    pub fn with(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Sinks held.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether it holds no sink.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl FromIterator<Arc<dyn MetricsSink>> for Fanout {
    fn from_iter<I: IntoIterator<Item = Arc<dyn MetricsSink>>>(iter: I) -> Self {
        Self {
            sinks: iter.into_iter().collect(),
        }
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl MetricsSink for Fanout {
    fn record(&self, event: &Event<'_>) {
        for sink in &self.sinks {
            sink.record(event);
        }
    }

    async fn flush(&self) {
        for sink in &self.sinks {
            sink.flush().await;
        }
    }
}
