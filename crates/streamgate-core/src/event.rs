//! What layers observe, and the sink trait that receives it.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{BackendId, ErrorClass, RejectReason, TimeoutKind, Usage};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Outcome {
    /// The stream ended cleanly with the provider's terminal marker.
    Success,
    /// It failed, before or after the first content.
    Failed(ErrorClass),
    /// A deadline expired.
    TimedOut(TimeoutKind),
    /// The caller dropped the request or the stream.
    Cancelled,
    /// The stream ended without the provider's terminal marker.
    Truncated,
}

impl Outcome {
    /// The outcome of a failure of `class`: timeouts, truncation and
    /// cancellation get their own variants.
    pub fn from_class(class: ErrorClass, timeout: Option<TimeoutKind>) -> Self {
        match (class, timeout) {
            (_, Some(kind)) => Self::TimedOut(kind),
            (ErrorClass::Truncated, None) => Self::Truncated,
            (ErrorClass::Cancelled, None) => Self::Cancelled,
            (class, None) => Self::Failed(class),
        }
    }

    /// The outcome of a request that failed with `error`, whose class the
    /// caller's policy decided: a [`StreamTimeout`](crate::StreamTimeout)
    /// anywhere in the chain gives [`Outcome::TimedOut`] with its kind.
    pub fn from_error(error: &(dyn std::error::Error + 'static), class: ErrorClass) -> Self {
        let mut current = Some(error);
        while let Some(err) = current {
            if let Some(timeout) = err.downcast_ref::<crate::StreamTimeout>() {
                return Self::TimedOut(timeout.kind);
            }
            current = err.source();
        }
        Self::from_class(class, None)
    }

    /// Whether this is a success.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    /// A short snake_case name for metrics labels (`success`, `timeout`, or
    /// the failure class).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed(class) => class.as_str(),
            Self::TimedOut(_) => "timeout",
            Self::Cancelled => "cancelled",
            Self::Truncated => "truncated",
        }
    }
}

/// Everything measured about one finished request (see [`Event::Completed`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord<'a> {
    /// The backend that served it.
    pub backend: &'a BackendId,
    /// The model requested.
    pub model: &'a str,
    /// Wall-clock start, for display and export.
    pub started_at: SystemTime,
    /// The request's own token estimate (input-size categories use it).
    pub estimated_tokens: u64,
    /// From `call()` to the first chunk of any kind.
    pub time_to_first_chunk: Option<Duration>,
    /// From `call()` to the first content chunk.
    pub time_to_first_content: Option<Duration>,
    /// From `call()` to the end (or the drop).
    pub duration: Duration,
    /// When it ended (the instant `duration` runs to), on tokio's clock: a
    /// sink that keeps time windows needs no clock reading of its own.
    pub ended: tokio::time::Instant,
    /// From the first content chunk to the last chunk with content or
    /// output tokens (a trailing usage report or finish marker is not
    /// output).
    pub output_duration: Option<Duration>,
    /// Merged provider-reported usage, if any was reported.
    pub usage: Option<Usage>,
    /// Sum of the chunks' [`output_tokens`](crate::Chunk::output_tokens)
    /// (reported or estimated per delta).
    pub streamed_output_tokens: u64,
    /// The most output tokens seen in any one-second window of the stream.
    pub burst_tokens_per_sec: Option<f64>,
    /// Chunks received.
    pub chunks: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl RequestRecord<'_> {
    /// Output tokens: provider-reported when known, else the streamed estimate.
    pub fn output_tokens(&self) -> u64 {
        match self.usage {
            Some(u) if u.output_tokens > 0 => u.output_tokens,
            _ => self.streamed_output_tokens,
        }
    }

    /// Decode speed: `(output − 1) / output duration`, the rate after the
    /// first token. `None` with fewer than two tokens or no output time.
    pub fn decode_tokens_per_sec(&self) -> Option<f64> {
        let out = self.output_tokens();
        let secs = self.output_duration?.as_secs_f64();
        (out >= 2 && secs > 0.0).then(|| (out - 1) as f64 / secs)
    }

    /// End-to-end speed: `output / duration`. `None` with no output or no time.
    pub fn end_to_end_tokens_per_sec(&self) -> Option<f64> {
        let out = self.output_tokens();
        let secs = self.duration.as_secs_f64();
        (out >= 1 && secs > 0.0).then(|| out as f64 / secs)
    }
}

/// A circuit breaker's state, as events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls pass; outcomes are recorded.
    Closed,
    /// Calls are rejected until the wait ends.
    Open,
    /// A limited number of probes pass.
    HalfOpen,
    /// Held open by the operator.
    ForcedOpen,
    /// Everything passes; nothing is recorded.
    Disabled,
    /// Outcomes are recorded and transitions reported, but nothing is rejected.
    MetricsOnly,
}

impl BreakerState {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quota tracker's verdict for one key, as events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaState {
    /// Nothing is known.
    Available,
    /// Limits are known and not exhausted.
    Tracking,
    /// Out of quota until the reset.
    Exhausted,
}

impl QuotaState {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Tracking => "tracking",
            Self::Exhausted => "exhausted",
        }
    }
}

impl fmt::Display for QuotaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a hedged request went (see [`Event::Hedge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HedgeStage {
    /// The hedge attempt was started.
    Started,
    /// The hedge produced content first; the primary attempt was dropped.
    Won,
    /// The primary produced content first; the hedge attempt was dropped.
    Lost,
}

impl HedgeStage {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }
}

impl fmt::Display for HedgeStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a layer observed. Borrowed, so emitting one allocates nothing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A request was sent to the backend.
    RequestStarted {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// The request's token estimate.
        estimated_tokens: u64,
    },
    /// The first chunk of any kind arrived.
    FirstChunk {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// Time since `call()`.
        after: Duration,
    },
    /// The first content chunk arrived: the stream is committed.
    FirstContent {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// Time since `call()`.
        after: Duration,
    },
    /// A request finished, one way or another. Exactly one per started request.
    Completed(&'a RequestRecord<'a>),
    /// A gate refused a request without calling the backend.
    Rejected {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// Which gate.
        reason: RejectReason,
        /// When it expects to admit again.
        retry_after: Option<Duration>,
    },
    /// A circuit breaker changed state.
    BreakerTransition {
        /// The backend.
        backend: &'a BackendId,
        /// The model, when the breaker is scoped per model.
        model: Option<&'a str>,
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
        /// The breaker opened for less than a provider asked (a
        /// `Retry-After` or reset beyond the breaker's maximum wait, cut to
        /// it). Always false for other transitions.
        wait_capped: bool,
    },
    /// A quota tracker learned something that changed a key's state or counts.
    QuotaUpdate {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// The new state.
        state: QuotaState,
        /// How long it stays exhausted, when exhausted.
        exhausted_for: Option<Duration>,
        /// Requests left, when known.
        remaining_requests: Option<u64>,
        /// Tokens left, when known.
        remaining_tokens: Option<u64>,
        /// A wait the provider asked for was longer than the tracker honours
        /// and was cut to its maximum.
        wait_capped: bool,
    },
    /// A request waited to stay under a rate (pacing, or failover waiting for
    /// a backend to admit again).
    Throttled {
        /// The backend.
        backend: &'a BackendId,
        /// The model.
        model: &'a str,
        /// How long it waited.
        waited: Duration,
    },
    /// The router hedged a request: `primary` had produced no content
    /// after `after`, so the same request started on `hedge`; then one of
    /// them won (the other was dropped, and counts as cancelled, never as a
    /// failure).
    Hedge {
        /// The attempt that started first.
        primary: &'a BackendId,
        /// The attempt started after the delay.
        hedge: &'a BackendId,
        /// The model.
        model: &'a str,
        /// Started, won or lost.
        stage: HedgeStage,
        /// The hedge delay.
        after: Duration,
        /// The request's token estimate: what the extra attempt sent, and
        /// what a provider bills for its prompt even when the attempt is
        /// dropped. Reported with every stage; count it once, at `Started`.
        estimated_tokens: u64,
    },
    /// A committed stream failed after content and `to` continued it from
    /// the text received so far (the caller saw one stream).
    Continuation {
        /// The backend whose stream failed.
        from: &'a BackendId,
        /// The backend that continued it.
        to: &'a BackendId,
        /// The model.
        model: &'a str,
        /// Output tokens the caller had received before the failure.
        tokens_before: u64,
    },
    /// Failover moved on from one backend.
    Failover {
        /// The backend given up on.
        from: &'a BackendId,
        /// The next backend to try, if any.
        to: Option<&'a BackendId>,
        /// The model.
        model: &'a str,
        /// Why.
        reason: ErrorClass,
    },
    /// State shared with other replicas (see [`state`](crate::state)) could
    /// not be reached: this replica decides from its local state alone
    /// until it is back. Emitted once per outage, when it starts.
    SharedStateDegraded {
        /// Which store (`redis`).
        store: &'static str,
        /// What went wrong, with credentials redacted.
        error: &'a str,
    },
    /// Shared state is reachable again after [`Event::SharedStateDegraded`];
    /// sharing resumed.
    SharedStateRestored {
        /// Which store (`redis`).
        store: &'static str,
        /// How long it was degraded.
        after: Duration,
    },
}

/// Receives [`Event`]s. Every layer accepts an optional `Arc<dyn MetricsSink>`.
///
/// `record` runs inline on the request path: it must not block, and should
/// not allocate for events it sees often. A sink that writes somewhere slow
/// queues and does the work on its own task; [`flush`](Self::flush) lets
/// callers wait for it.
#[async_trait::async_trait]
pub trait MetricsSink: Send + Sync + 'static {
    /// Takes one event.
    fn record(&self, event: &Event<'_>);

    /// Waits until everything recorded so far has been written out. The
    /// default does nothing.
    async fn flush(&self) {}
}

/// A sink that drops every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopSink;

impl MetricsSink for NoopSink {
    #[inline]
    fn record(&self, _event: &Event<'_>) {}
}

#[async_trait::async_trait]
impl<S: MetricsSink + ?Sized> MetricsSink for Arc<S> {
    #[inline]
    fn record(&self, event: &Event<'_>) {
        (**self).record(event);
    }

    async fn flush(&self) {
        (**self).flush().await;
    }
}

/// The sink a layer holds: shared, and optional so layers built without one
/// pay a single branch.
pub type SharedSink = Option<Arc<dyn MetricsSink>>;

/// Records `event` in `sink` if there is one. The event is built lazily, so a
/// layer without a sink does no work at all.
#[inline]
pub fn emit<'a>(sink: &SharedSink, event: impl FnOnce() -> Event<'a>) {
    if let Some(sink) = sink {
        sink.record(&event());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        usage: Option<Usage>,
        streamed: u64,
        duration_ms: u64,
        output_ms: Option<u64>,
    ) -> RequestRecord<'static> {
        static BACKEND: std::sync::OnceLock<BackendId> = std::sync::OnceLock::new();
        RequestRecord {
            backend: BACKEND.get_or_init(|| BackendId::new("b")),
            model: "m",
            started_at: SystemTime::UNIX_EPOCH,
            estimated_tokens: 0,
            time_to_first_chunk: None,
            time_to_first_content: None,
            duration: Duration::from_millis(duration_ms),
            ended: tokio::time::Instant::now(),
            output_duration: output_ms.map(Duration::from_millis),
            usage,
            streamed_output_tokens: streamed,
            burst_tokens_per_sec: None,
            chunks: 0,
            outcome: Outcome::Success,
        }
    }

    #[test]
    fn throughput_formulas() {
        let r = record(Some(Usage::new(10, 11)), 3, 2000, Some(1000));
        assert_eq!(r.output_tokens(), 11);
        assert_eq!(r.decode_tokens_per_sec(), Some(10.0));
        assert_eq!(r.end_to_end_tokens_per_sec(), Some(5.5));
    }

    #[test]
    fn throughput_with_one_or_zero_tokens() {
        let one = record(None, 1, 500, Some(0));
        assert_eq!(one.decode_tokens_per_sec(), None);
        assert_eq!(one.end_to_end_tokens_per_sec(), Some(2.0));
        let zero = record(Some(Usage::new(5, 0)), 0, 500, None);
        assert_eq!(zero.decode_tokens_per_sec(), None);
        assert_eq!(zero.end_to_end_tokens_per_sec(), None);
    }

    #[test]
    fn outcome_from_class() {
        assert_eq!(
            Outcome::from_class(ErrorClass::Server, None),
            Outcome::Failed(ErrorClass::Server)
        );
        assert_eq!(
            Outcome::from_class(ErrorClass::Truncated, None),
            Outcome::Truncated
        );
        assert_eq!(
            Outcome::from_class(ErrorClass::Timeout, Some(TimeoutKind::Idle)),
            Outcome::TimedOut(TimeoutKind::Idle)
        );
    }
}
