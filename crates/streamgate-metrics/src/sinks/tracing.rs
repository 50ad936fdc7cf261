//! A sink that writes structured `tracing` events.

use streamgate_core::{Event, MetricsSink};

use super::is_operation;

/// The target of every event this sink writes.
pub const TARGET: &str = "streamgate::metrics";

/// Writes each event as a structured [`tracing`] event under the target
/// `streamgate::metrics`: completed requests at `INFO` (`WARN` when they did
/// not succeed), rejections, breaker transitions and failovers at `WARN`,
/// everything else at `DEBUG`. Durations are in milliseconds. A request a
/// gate refused is written once, as "request rejected" with its reason, not
/// also as a completed request (see the crate docs, "Rejections").
///
/// ```
/// use std::sync::Arc;
/// use streamgate_metrics::{MetricsLayer, TracingSink};
///
/// let layer = MetricsLayer::new("openai", Arc::new(TracingSink::new()));
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink {
    _private: (),
}

impl TracingSink {
    /// A tracing sink.
    pub fn new() -> Self {
        Self::default()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

impl MetricsSink for TracingSink {
    fn record(&self, event: &Event<'_>) {
        match event {
            Event::RequestStarted {
                backend,
                model,
                estimated_tokens,
            } => {
                tracing::debug!(target: TARGET, backend = backend.as_str(), model, estimated_tokens, "request started");
            }
            Event::FirstChunk {
                backend,
                model,
                after,
            } => {
                tracing::debug!(target: TARGET, backend = backend.as_str(), model, after_ms = ms(*after), "first chunk");
            }
            Event::FirstContent {
                backend,
                model,
                after,
            } => {
                tracing::debug!(target: TARGET, backend = backend.as_str(), model, after_ms = ms(*after), "first content");
            }
            Event::Completed(r) if is_operation(r) => {
                let usage = r.usage.unwrap_or_default();
                macro_rules! completed {
                    ($level:expr) => {
                        tracing::event!(
                            target: TARGET,
                            $level,
                            backend = r.backend.as_str(),
                            model = r.model,
                            outcome = r.outcome.as_str(),
                            estimated_tokens = r.estimated_tokens,
                            time_to_first_chunk_ms = r.time_to_first_chunk.map(ms),
                            time_to_first_content_ms = r.time_to_first_content.map(ms),
                            duration_ms = ms(r.duration),
                            output_duration_ms = r.output_duration.map(ms),
                            input_tokens = usage.input_tokens,
                            output_tokens = r.output_tokens(),
                            cached_input_tokens = usage.cached_input_tokens,
                            reasoning_tokens = usage.reasoning_tokens,
                            usage_reported = r.usage.is_some(),
                            decode_tokens_per_sec = r.decode_tokens_per_sec(),
                            end_to_end_tokens_per_sec = r.end_to_end_tokens_per_sec(),
                            burst_tokens_per_sec = r.burst_tokens_per_sec,
                            chunks = r.chunks,
                            "request completed"
                        )
                    };
                }
                if r.outcome.is_success() {
                    completed!(tracing::Level::INFO);
                } else {
                    completed!(tracing::Level::WARN);
                }
            }
            Event::Rejected {
                backend,
                model,
                reason,
                retry_after,
            } => {
                tracing::warn!(target: TARGET, backend = backend.as_str(), model, reason = reason.as_str(), retry_after_ms = retry_after.map(ms), "request rejected");
            }
            Event::BreakerTransition {
                backend,
                model,
                from,
                to,
                wait_capped,
            } => {
                tracing::warn!(target: TARGET, backend = backend.as_str(), model = *model, from = from.as_str(), to = to.as_str(), wait_capped, "breaker transition");
            }
            Event::QuotaUpdate {
                backend,
                model,
                state,
                exhausted_for,
                remaining_requests,
                remaining_tokens,
                ..
            } => {
                tracing::debug!(target: TARGET, backend = backend.as_str(), model, state = state.as_str(), exhausted_for_ms = exhausted_for.map(ms), remaining_requests = *remaining_requests, remaining_tokens = *remaining_tokens, "quota update");
            }
            Event::Throttled {
                backend,
                model,
                waited,
            } => {
                tracing::debug!(target: TARGET, backend = backend.as_str(), model, waited_ms = ms(*waited), "throttled");
            }
            Event::Failover {
                from,
                to,
                model,
                reason,
            } => {
                tracing::warn!(target: TARGET, from = from.as_str(), to = to.map(|t| t.as_str()), model, reason = reason.as_str(), "failover");
            }
            Event::SharedStateDegraded { store, error } => {
                tracing::warn!(target: TARGET, store = *store, error = *error, "shared state degraded: deciding from local state");
            }
            Event::SharedStateRestored { store, after } => {
                tracing::info!(target: TARGET, store = *store, after_ms = ms(*after), "shared state restored");
            }
            Event::Hedge {
                primary,
                hedge,
                model,
                stage,
                after,
                estimated_tokens,
            } => {
                tracing::debug!(target: TARGET, primary = primary.as_str(), hedge = hedge.as_str(), model, stage = stage.as_str(), after_ms = ms(*after), estimated_tokens, "hedge");
            }
            Event::Continuation {
                from,
                to,
                model,
                tokens_before,
            } => {
                tracing::warn!(target: TARGET, from = from.as_str(), to = to.as_str(), model, tokens_before, "continuation");
            }
            _ => {}
        }
    }
}
