//! A sink for an OpenTelemetry meter (feature `opentelemetry`).

use std::sync::{Arc, OnceLock};

use opentelemetry::{
    metrics::{Counter, Gauge, Histogram, Meter},
    KeyValue, StringValue,
};
use streamgate_core::{BackendId, Event, HedgeStage, MetricsSink, RequestRecord};

use super::{is_operation, outcome_slot, time_per_output_chunk};
use streamgate_core::keyed::KeyedMap;

use crate::names;

/// Records events through an OpenTelemetry [`Meter`], as the GenAI semantic
/// conventions describe, with their recommended bucket boundaries, plus the
/// streamgate instruments in [`names`].
///
/// Attribute sets are built once per backend × model and shared, so a
/// request clones a few reference counts and allocates nothing after the
/// first of its key. Models past the cap fold into
/// [`OTHER_MODEL`](names::OTHER_MODEL). A request a gate refused is counted
/// in [`REJECTIONS`](names::REJECTIONS) only, never as an operation (see the
/// crate docs, "Rejections").
pub struct OpenTelemetrySink {
    instruments: Instruments,
    keys: KeyedMap<KeyAttributes>,
}

struct Instruments {
    duration: Histogram<f64>,
    token_usage: Histogram<u64>,
    time_to_first_chunk: Histogram<f64>,
    time_per_output_chunk: Histogram<f64>,
    rejections: Counter<u64>,
    breaker_transitions: Counter<u64>,
    failovers: Counter<u64>,
    hedges: Counter<u64>,
    hedge_tokens: Counter<u64>,
    continuations: Counter<u64>,
    throttle_wait: Histogram<f64>,
    quota_requests: Gauge<u64>,
    quota_tokens: Gauge<u64>,
}

struct KeyAttributes {
    base: [KeyValue; 3],
    error_types: [OnceLock<KeyValue>; super::OUTCOME_SLOTS],
}

impl KeyAttributes {
    fn new(backend: &BackendId, model: &Arc<str>) -> Self {
        Self {
            base: [
                KeyValue::new(names::OPERATION_NAME, names::OPERATION_CHAT),
                KeyValue::new(names::PROVIDER_NAME, StringValue::from(backend.to_string())),
                KeyValue::new(names::REQUEST_MODEL, StringValue::from(model.clone())),
            ],
            error_types: Default::default(),
        }
    }

    fn plus(&self, extra: KeyValue) -> [KeyValue; 4] {
        let [a, b, c] = self.base.clone();
        [a, b, c, extra]
    }
}

impl std::fmt::Debug for OpenTelemetrySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTelemetrySink").finish_non_exhaustive()
    }
}

impl OpenTelemetrySink {
    /// Creates the instruments on `meter`, keeping
    /// [`DEFAULT_MODEL_CAP`](names::DEFAULT_MODEL_CAP) models per backend.
    pub fn new(meter: &Meter) -> Self {
        Self::with_model_cap(meter, names::DEFAULT_MODEL_CAP)
    }

    /// Like [`new`](Self::new), keeping `cap` models per backend (at least 1).
    pub fn with_model_cap(meter: &Meter, cap: usize) -> Self {
        let seconds = |name: &'static str, description: &'static str, bounds: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(bounds.to_vec())
                .build()
        };
        Self {
            instruments: Instruments {
                duration: seconds(
                    names::CLIENT_OPERATION_DURATION,
                    "GenAI operation duration",
                    &names::DURATION_BUCKETS,
                ),
                token_usage: meter
                    .u64_histogram(names::CLIENT_TOKEN_USAGE)
                    .with_unit("{token}")
                    .with_description("Number of input and output tokens used")
                    .with_boundaries(names::TOKEN_USAGE_BUCKETS.to_vec())
                    .build(),
                time_to_first_chunk: seconds(
                    names::CLIENT_TIME_TO_FIRST_CHUNK,
                    "Time to receive the first chunk of a streaming response",
                    &names::TIME_TO_FIRST_CHUNK_BUCKETS,
                ),
                time_per_output_chunk: seconds(
                    names::CLIENT_TIME_PER_OUTPUT_CHUNK,
                    "Time per output chunk after the first content",
                    &names::TIME_PER_OUTPUT_CHUNK_BUCKETS,
                ),
                rejections: meter
                    .u64_counter(names::REJECTIONS)
                    .with_unit("{request}")
                    .build(),
                breaker_transitions: meter
                    .u64_counter(names::BREAKER_TRANSITIONS)
                    .with_unit("{transition}")
                    .build(),
                failovers: meter
                    .u64_counter(names::FAILOVERS)
                    .with_unit("{failover}")
                    .build(),
                hedges: meter
                    .u64_counter(names::HEDGES)
                    .with_unit("{hedge}")
                    .build(),
                hedge_tokens: meter
                    .u64_counter(names::HEDGE_TOKENS)
                    .with_unit("{token}")
                    .build(),
                continuations: meter
                    .u64_counter(names::CONTINUATIONS)
                    .with_unit("{continuation}")
                    .build(),
                throttle_wait: seconds(
                    names::THROTTLE_WAIT,
                    "Time requests waited to stay under a rate",
                    &names::THROTTLE_WAIT_BUCKETS,
                ),
                quota_requests: meter
                    .u64_gauge(names::QUOTA_REMAINING_REQUESTS)
                    .with_unit("{request}")
                    .build(),
                quota_tokens: meter
                    .u64_gauge(names::QUOTA_REMAINING_TOKENS)
                    .with_unit("{token}")
                    .build(),
            },
            keys: KeyedMap::new(cap.max(1)),
        }
    }

    /// Runs `f` on the attributes of `backend` × `model`, borrowed (see
    /// [`KeyedMap::with`]).
    fn with_key<R>(
        &self,
        backend: &BackendId,
        model: &str,
        f: impl FnOnce(&KeyAttributes) -> R,
    ) -> R {
        self.keys.with(backend, model, KeyAttributes::new, f)
    }

    fn completed(&self, record: &RequestRecord<'_>) {
        self.with_key(record.backend, record.model, |key| {
            self.completed_for(key, record);
        });
    }

    fn completed_for(&self, key: &KeyAttributes, record: &RequestRecord<'_>) {
        let i = &self.instruments;
        match outcome_slot(record.outcome) {
            None => i.duration.record(record.duration.as_secs_f64(), &key.base),
            Some(slot) => {
                let error = key.error_types[slot]
                    .get_or_init(|| KeyValue::new(names::ERROR_TYPE, record.outcome.as_str()))
                    .clone();
                i.duration
                    .record(record.duration.as_secs_f64(), &key.plus(error));
            }
        }
        if let Some(ttfc) = record.time_to_first_chunk {
            i.time_to_first_chunk.record(ttfc.as_secs_f64(), &key.base);
        }
        if let Some(per_chunk) = time_per_output_chunk(record) {
            i.time_per_output_chunk.record(per_chunk, &key.base);
        }
        if let Some(usage) = record.usage {
            let input = KeyValue::new(names::TOKEN_TYPE, names::TOKEN_TYPE_INPUT);
            let output = KeyValue::new(names::TOKEN_TYPE, names::TOKEN_TYPE_OUTPUT);
            i.token_usage.record(usage.input_tokens, &key.plus(input));
            i.token_usage.record(usage.output_tokens, &key.plus(output));
        }
    }
}

impl MetricsSink for OpenTelemetrySink {
    fn record(&self, event: &Event<'_>) {
        let i = &self.instruments;
        match event {
            Event::Completed(record) if is_operation(record) => self.completed(record),
            Event::Rejected {
                backend,
                model,
                reason,
                ..
            } => {
                self.with_key(backend, model, |key| {
                    i.rejections.add(
                        1,
                        &key.plus(KeyValue::new(names::REJECT_REASON, reason.as_str())),
                    );
                });
            }
            Event::Throttled {
                backend,
                model,
                waited,
            } => {
                self.with_key(backend, model, |key| {
                    i.throttle_wait.record(waited.as_secs_f64(), &key.base);
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
                        i.quota_requests.record(*n, &key.base);
                    }
                    if let Some(n) = remaining_tokens {
                        i.quota_tokens.record(*n, &key.base);
                    }
                });
            }
            Event::BreakerTransition {
                backend,
                model,
                from,
                to,
                ..
            } => {
                let mut attributes = vec![
                    KeyValue::new(names::PROVIDER_NAME, StringValue::from(backend.to_string())),
                    KeyValue::new(names::BREAKER_FROM, from.as_str()),
                    KeyValue::new(names::BREAKER_TO, to.as_str()),
                ];
                if let Some(model) = model {
                    attributes.push(self.with_key(backend, model, |key| key.base[2].clone()));
                }
                i.breaker_transitions.add(1, &attributes);
            }
            Event::Failover {
                from,
                to,
                model,
                reason,
            } => {
                let [a, b, c] = self.with_key(from, model, |key| key.base.clone());
                let to = to.map_or_else(|| "none".to_owned(), ToString::to_string);
                i.failovers.add(
                    1,
                    &[
                        a,
                        b,
                        c,
                        KeyValue::new(names::ERROR_TYPE, reason.as_str()),
                        KeyValue::new(names::FAILOVER_TO, to),
                    ],
                );
            }
            Event::Hedge {
                hedge,
                model,
                stage,
                estimated_tokens,
                ..
            } => {
                let base = self.with_key(hedge, model, |key| key.base.clone());
                if *stage == HedgeStage::Started {
                    i.hedge_tokens.add(*estimated_tokens, &base);
                }
                let [a, b, c] = base;
                i.hedges.add(
                    1,
                    &[a, b, c, KeyValue::new(names::HEDGE_STAGE, stage.as_str())],
                );
            }
            Event::Continuation {
                from, to, model, ..
            } => {
                let [a, b, c] = self.with_key(from, model, |key| key.base.clone());
                i.continuations.add(
                    1,
                    &[a, b, c, KeyValue::new(names::FAILOVER_TO, to.to_string())],
                );
            }
            _ => {}
        }
    }
}
