//! The service, and the observer that measures one request.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use futures_core::Stream;
use http::Response;
use streamgate_core::{
    BoxError, Chunk, EndObserver, Event, LlmRequest, Observed, ObservedBody, Outcome, StreamEnd,
    StreamObserver,
};
use tokio::time::Instant;
use tower_service::Service;

use super::{measure::Measurement, Shared};

/// The response future of a [`MetricsService`].
pub type MetricsFuture<F> = Observed<F, MetricsObserver>;

/// A service that measures every request it forwards. Made by
/// [`MetricsLayer`](super::MetricsLayer).
pub struct MetricsService<S> {
    inner: S,
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

impl<S> MetricsService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
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

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
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

impl<S: Clone> Clone for MetricsService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            last_model: self.last_model.clone(),
            anchor: self.anchor,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MetricsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .field("backend", &self.shared.backend)
            .finish_non_exhaustive()
    }
}

impl<S, Req, B, C, E> Service<Req> for MetricsService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
    Req: LlmRequest,
{
    type Response = Response<ObservedBody<B, MetricsObserver>>;
    type Error = BoxError;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let model = self.model(request.model());
        let estimated_tokens = request.estimated_tokens();
        self.shared.sink.record(&Event::RequestStarted {
            backend: &self.shared.backend,
            model: &model,
            estimated_tokens,
        });
        let now = Instant::now();
        let started_at = self.wall_clock(now);
        let measurement = Measurement::start(now, started_at, estimated_tokens);
        let observer = MetricsObserver {
            shared: self.shared.clone(),
            model,
            measurement,
        };
        Observed::new(self.inner.call(request), observer)
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

impl EndObserver for MetricsObserver {
    fn on_end(self, end: StreamEnd<'_>) {
        let outcome = match end {
            StreamEnd::Complete => Outcome::Success,
            StreamEnd::Failed(error) => {
                Outcome::from_error(error, self.shared.classifier.classify(error))
            }
            StreamEnd::Dropped => Outcome::Cancelled,
        };
        let record =
            self.measurement
                .record(&self.shared.backend, &self.model, Instant::now(), outcome);
        self.shared.sink.record(&Event::Completed(&record));
    }
}

impl<C: Chunk> StreamObserver<C> for MetricsObserver {
    fn on_chunk(&mut self, chunk: &C) {
        let firsts = self.measurement.chunk(
            Instant::now(),
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
