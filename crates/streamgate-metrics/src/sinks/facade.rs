//! A sink for the `metrics` facade, with the OpenTelemetry GenAI names.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Label, Unit};
use streamgate_core::{BackendId, Event, HedgeStage, MetricsSink, RequestRecord};

use super::{
    is_operation, outcome_slot, reject_slot, time_per_output_chunk, OUTCOME_SLOTS, REJECT_SLOTS,
};
use streamgate_core::keyed::KeyedMap;

use crate::names;

/// Records events through the [`metrics`] facade, under the names in
/// [`names`]: whichever recorder is installed (Prometheus, StatsD, …)
/// exports them.
///
/// Handles are registered once per backend × model and reused, so a
/// request costs no allocation after the first of its key. They bind to the
/// recorder installed when they are first used: install the recorder before
/// recording. Models past the cap fold into [`OTHER_MODEL`](names::OTHER_MODEL).
/// A request a gate refused is counted in [`REJECTIONS`](names::REJECTIONS)
/// only, never as an operation (see the crate docs, "Rejections").
///
/// ```
/// use std::sync::Arc;
/// use streamgate_metrics::{MetricsFacadeSink, MetricsLayer};
///
/// MetricsFacadeSink::describe();
/// let layer = MetricsLayer::new("openai", Arc::new(MetricsFacadeSink::new()));
/// # let _ = layer;
/// ```
pub struct MetricsFacadeSink {
    keys: KeyedMap<KeyHandles>,
}

struct KeyHandles {
    labels: [Label; 3],
    duration_ok: Histogram,
    duration_failed: [OnceLock<Histogram>; OUTCOME_SLOTS],
    time_to_first_chunk: Histogram,
    time_per_output_chunk: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
    rejections: [OnceLock<Counter>; REJECT_SLOTS],
    throttle_wait: Histogram,
    quota_requests: Gauge,
    quota_tokens: Gauge,
}

impl KeyHandles {
    fn new(backend: &BackendId, model: &Arc<str>) -> Self {
        let labels = [
            Label::from_static_parts(names::OPERATION_NAME, names::OPERATION_CHAT),
            Label::new(names::PROVIDER_NAME, backend.to_string()),
            Label::new(names::REQUEST_MODEL, model.to_string()),
        ];
        let with = |extra: Label| {
            let mut all = labels.to_vec();
            all.push(extra);
            all
        };
        Self {
            duration_ok: metrics::histogram!(names::CLIENT_OPERATION_DURATION, labels.to_vec()),
            duration_failed: Default::default(),
            time_to_first_chunk: metrics::histogram!(
                names::CLIENT_TIME_TO_FIRST_CHUNK,
                labels.to_vec()
            ),
            time_per_output_chunk: metrics::histogram!(
                names::CLIENT_TIME_PER_OUTPUT_CHUNK,
                labels.to_vec()
            ),
            input_tokens: metrics::histogram!(
                names::CLIENT_TOKEN_USAGE,
                with(Label::from_static_parts(
                    names::TOKEN_TYPE,
                    names::TOKEN_TYPE_INPUT
                ))
            ),
            output_tokens: metrics::histogram!(
                names::CLIENT_TOKEN_USAGE,
                with(Label::from_static_parts(
                    names::TOKEN_TYPE,
                    names::TOKEN_TYPE_OUTPUT
                ))
            ),
            rejections: Default::default(),
            throttle_wait: metrics::histogram!(names::THROTTLE_WAIT, labels.to_vec()),
            quota_requests: metrics::gauge!(names::QUOTA_REMAINING_REQUESTS, labels.to_vec()),
            quota_tokens: metrics::gauge!(names::QUOTA_REMAINING_TOKENS, labels.to_vec()),
            labels,
        }
    }

    fn with(&self, extra: impl IntoIterator<Item = Label>) -> Vec<Label> {
        self.labels.iter().cloned().chain(extra).collect()
    }

    fn completed(&self, record: &RequestRecord<'_>) {
        let duration = match outcome_slot(record.outcome) {
            None => &self.duration_ok,
            Some(slot) => self.duration_failed[slot].get_or_init(|| {
                metrics::histogram!(
                    names::CLIENT_OPERATION_DURATION,
                    self.with([Label::from_static_parts(
                        names::ERROR_TYPE,
                        record.outcome.as_str()
                    )])
                )
            }),
        };
        duration.record(record.duration.as_secs_f64());
        if let Some(ttfc) = record.time_to_first_chunk {
            self.time_to_first_chunk.record(ttfc.as_secs_f64());
        }
        if let Some(per_chunk) = time_per_output_chunk(record) {
            self.time_per_output_chunk.record(per_chunk);
        }
        if let Some(usage) = record.usage {
            self.input_tokens.record(usage.input_tokens as f64);
            self.output_tokens.record(usage.output_tokens as f64);
        }
    }
}

impl Default for MetricsFacadeSink {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MetricsFacadeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsFacadeSink").finish_non_exhaustive()
    }
}

impl MetricsFacadeSink {
    /// A sink keeping [`DEFAULT_MODEL_CAP`](names::DEFAULT_MODEL_CAP) models
    /// per backend.
    pub fn new() -> Self {
        Self::with_model_cap(names::DEFAULT_MODEL_CAP)
    }

    /// A sink keeping `cap` models per backend before folding into
    /// [`OTHER_MODEL`](names::OTHER_MODEL) (at least 1).
    pub fn with_model_cap(cap: usize) -> Self {
        Self {
            keys: KeyedMap::new(cap.max(1)),
        }
    }

    /// Registers units and descriptions of every metric with the installed
    /// recorder.
    pub fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_histogram!(
            names::CLIENT_OPERATION_DURATION,
            Unit::Seconds,
            "GenAI operation duration"
        );
        describe_histogram!(
            names::CLIENT_TOKEN_USAGE,
            Unit::Count,
            "Number of input and output tokens used"
        );
        describe_histogram!(
            names::CLIENT_TIME_TO_FIRST_CHUNK,
            Unit::Seconds,
            "Time to receive the first chunk of a streaming response"
        );
        describe_histogram!(
            names::CLIENT_TIME_PER_OUTPUT_CHUNK,
            Unit::Seconds,
            "Time per output chunk after the first content"
        );
        describe_counter!(
            names::REJECTIONS,
            Unit::Count,
            "Requests a gate refused without calling the backend"
        );
        describe_counter!(
            names::BREAKER_TRANSITIONS,
            Unit::Count,
            "Circuit breaker state changes"
        );
        describe_counter!(
            names::FAILOVERS,
            Unit::Count,
            "Times failover gave up on a backend"
        );
        describe_histogram!(
            names::THROTTLE_WAIT,
            Unit::Seconds,
            "Time requests waited to stay under a rate"
        );
        describe_gauge!(
            names::QUOTA_REMAINING_REQUESTS,
            Unit::Count,
            "Requests left in the provider's quota window"
        );
        describe_gauge!(
            names::QUOTA_REMAINING_TOKENS,
            Unit::Count,
            "Tokens left in the provider's quota window"
        );
    }

    /// Runs `f` on the handles of `backend` × `model`, borrowed (see
    /// [`KeyedMap::with`]).
    fn with_key<R>(&self, backend: &BackendId, model: &str, f: impl FnOnce(&KeyHandles) -> R) -> R {
        self.keys.with(backend, model, KeyHandles::new, f)
    }
}

impl MetricsSink for MetricsFacadeSink {
    fn record(&self, event: &Event<'_>) {
        match event {
            Event::Completed(record) if is_operation(record) => {
                self.with_key(record.backend, record.model, |key| key.completed(record));
            }
            Event::Rejected {
                backend,
                model,
                reason,
                ..
            } => {
                self.with_key(backend, model, |key| {
                    key.rejections[reject_slot(*reason)]
                        .get_or_init(|| {
                            metrics::counter!(
                                names::REJECTIONS,
                                key.with([Label::from_static_parts(
                                    names::REJECT_REASON,
                                    reason.as_str()
                                )])
                            )
                        })
                        .increment(1);
                });
            }
            Event::Throttled {
                backend,
                model,
                waited,
            } => {
                self.with_key(backend, model, |key| {
                    key.throttle_wait.record(waited.as_secs_f64());
                });
            }
            Event::QuotaUpdate {
                backend,
                model,
                remaining_requests,
                remaining_tokens,
                ..
            } => {
                self.with_key(backend, model, |key| {
                    if let Some(n) = remaining_requests {
                        key.quota_requests.set(*n as f64);
                    }
                    if let Some(n) = remaining_tokens {
                        key.quota_tokens.set(*n as f64);
                    }
                });
            }
            // Transitions and failovers are rare: registering on the spot is
            // cheaper than keeping a handle for every combination.
            Event::BreakerTransition {
                backend,
                model,
                from,
                to,
                ..
            } => {
                let mut labels = vec![
                    Label::new(names::PROVIDER_NAME, backend.to_string()),
                    Label::from_static_parts(names::BREAKER_FROM, from.as_str()),
                    Label::from_static_parts(names::BREAKER_TO, to.as_str()),
                ];
                if let Some(model) = model {
                    labels.push(self.with_key(backend, model, |key| key.labels[2].clone()));
                }
                metrics::counter!(names::BREAKER_TRANSITIONS, labels).increment(1);
            }
            Event::Failover {
                from,
                to,
                model,
                reason,
            } => {
                let to = to.map_or_else(|| "none".to_owned(), ToString::to_string);
                let labels = self.with_key(from, model, |key| {
                    key.with([
                        Label::from_static_parts(names::ERROR_TYPE, reason.as_str()),
                        Label::new(names::FAILOVER_TO, to),
                    ])
                });
                metrics::counter!(names::FAILOVERS, labels).increment(1);
            }
            Event::Hedge {
                hedge,
                model,
                stage,
                estimated_tokens,
                ..
            } => {
                self.with_key(hedge, model, |key| {
                    metrics::counter!(
                        names::HEDGES,
                        key.with([Label::from_static_parts(names::HEDGE_STAGE, stage.as_str())])
                    )
                    .increment(1);
                    if *stage == HedgeStage::Started {
                        metrics::counter!(names::HEDGE_TOKENS, key.labels.to_vec())
                            .increment(*estimated_tokens);
                    }
                });
            }
            Event::Continuation {
                from, to, model, ..
            } => {
                let labels = self.with_key(from, model, |key| {
                    key.with([Label::new(names::FAILOVER_TO, to.to_string())])
                });
                metrics::counter!(names::CONTINUATIONS, labels).increment(1);
            }
            _ => {}
        }
    }
}
