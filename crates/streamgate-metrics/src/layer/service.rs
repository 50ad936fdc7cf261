//! The guard that measures, and its ticket.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use streamgate_core::{
    guard::{Call, End, Guard, GuardFuture, GuardService, Now, Refusal, Ticket},
    Chunk, Event, Outcome,
};
use tokio::time::Instant;

use super::{measure::Measurement, Shared};

/// The response future of a [`MetricsService`] for inner service `S` and
/// request `Req`.
pub type MetricsFuture<S, Req> = GuardFuture<S, Req, MetricsObserver>;

/// A service that measures every request it forwards. Made by
/// [`MetricsLayer`](super::MetricsLayer): a guard layer of a [`Measure`].
/// It never refuses: `poll_ready` is the inner service's.
pub type MetricsService<S> = GuardService<S, Measure>;

/// The measuring half of metrics as a [`Guard`] that never refuses: emits
/// [`Event::RequestStarted`] on admission, the first chunk and first content
/// as they arrive, and one [`Event::Completed`] at the end.
pub struct Measure {
    shared: Arc<Shared>,
    /// The model of the previous request, reused when the next names the same
    /// one so a steady stream of requests allocates no model name.
    last_model: Option<Arc<str>>,
    /// A monotonic instant and the wall clock read with it, to place a
    /// request's start on the wall clock without reading it per request.
    anchor: Option<(Instant, SystemTime)>,
}

/// How long a wall-clock anchor serves before it is read again, which
/// bounds how far the derived start can drift from the wall clock (clock
/// adjustments, suspend) to what the clocks drift apart in this time.
const ANCHOR_REFRESH: Duration = Duration::from_secs(1);

impl Measure {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            last_model: None,
            anchor: None,
        }
    }

    /// The wall-clock time of `now`.
    fn wall_clock(&mut self, now: Instant) -> SystemTime {
        if let Some((at, wall)) = self.anchor {
            if let Some(since) = now.checked_duration_since(at) {
                if let Some(wall) = wall.checked_add(since).filter(|_| since < ANCHOR_REFRESH) {
                    return wall;
                }
            }
        }
        let wall = SystemTime::now();
        self.anchor = Some((now, wall));
        wall
    }

    fn model(&mut self, model: &str) -> Arc<str> {
        match &self.last_model {
            Some(last) if **last == *model => last.clone(),
            _ => {
                let fresh: Arc<str> = Arc::from(model);
                self.last_model = Some(fresh.clone());
                fresh
            }
        }
    }
}

impl Clone for Measure {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            last_model: self.last_model.clone(),
            anchor: self.anchor,
        }
    }
}

impl fmt::Debug for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measure")
            .field("backend", &self.shared.backend)
            .finish_non_exhaustive()
    }
}

impl Guard for Measure {
    type Ticket = MetricsObserver;
    fn gates(&self) -> bool {
        false
    }

    fn admit(&mut self, call: &Call<'_>) -> Result<MetricsObserver, Refusal<'_>> {
        let model = self.model(call.model());
        let estimated_tokens = call.estimate();
        self.shared.sink.record(&Event::RequestStarted {
            backend: &self.shared.backend,
            model: &model,
            estimated_tokens,
        });
        let now = call.now();
        let started_at = self.wall_clock(now);
        let measurement = Measurement::start(now, started_at, estimated_tokens);
        Ok(MetricsObserver {
            shared: self.shared.clone(),
            model,
            measurement,
        })
    }
}

/// Measures one request; reports its end exactly once.
pub struct MetricsObserver {
    shared: Arc<Shared>,
    model: Arc<str>,
    measurement: Measurement,
}

impl fmt::Debug for MetricsObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsObserver")
            .field("backend", &self.shared.backend)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Ticket for MetricsObserver {
    fn on_end(self, end: End<'_>, now: &Now) {
        let outcome = match end {
            End::Complete => Outcome::Success,
            End::Dropped => Outcome::Cancelled,
            End::Failed { error, .. } | End::Cut { error, .. } => {
                Outcome::from_error(error, self.shared.classifier.classify(error))
            }
            End::Refused(rejected) => {
                Outcome::from_error(rejected, self.shared.classifier.classify(rejected))
            }
        };
        let record = self
            .measurement
            .record(&self.shared.backend, &self.model, now.get(), outcome);
        self.shared.sink.record(&Event::Completed(&record));
    }

    #[inline]
    fn on_chunk<C: Chunk>(&mut self, chunk: &C, now: &Now) {
        let firsts = self.measurement.chunk(
            || now.get(),
            chunk.is_content(),
            chunk.usage(),
            Some(chunk.counted_output_tokens()),
        );
        if let Some(after) = firsts.chunk {
            self.shared.sink.record(&Event::FirstChunk {
                backend: &self.shared.backend,
                model: &self.model,
                after,
            });
        }
        if let Some(after) = firsts.content {
            self.shared.sink.record(&Event::FirstContent {
                backend: &self.shared.backend,
                model: &self.model,
                after,
            });
        }
    }
}
