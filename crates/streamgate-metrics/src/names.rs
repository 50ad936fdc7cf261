//! Every metric and attribute name the sinks use, in one place.
//!
//! The `gen_ai.*` names and bucket boundaries follow the OpenTelemetry
//! semantic conventions for generative AI client metrics. The `streamgate.*`
//! names are this project's own, for what those conventions do not cover
//! (rejections, breaker transitions, failovers, throttling, quota).
//!
//! Prometheus renders dots as underscores: `gen_ai.client.operation.duration`
//! is scraped as `gen_ai_client_operation_duration_bucket`, `_sum` and
//! `_count`, with labels such as `gen_ai_provider_name`.

/// Histogram (seconds): the whole operation, from `call()` to the end of the
/// stream. Carries `error.type` when the request did not succeed. A request
/// a gate refused is not an operation: it is in [`REJECTIONS`] only, so
/// `error.type` is never `rejected` here.
pub const CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Histogram (`{token}`): input and output tokens per request, told apart by
/// [`TOKEN_TYPE`]. Recorded only when the provider reported usage.
pub const CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Histogram (seconds): from `call()` to the first chunk of any kind.
pub const CLIENT_TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// Histogram (seconds): the mean gap between chunks after the first content
/// chunk, recorded once per request (output duration divided by the chunks
/// after the first).
pub const CLIENT_TIME_PER_OUTPUT_CHUNK: &str = "gen_ai.client.operation.time_per_output_chunk";

/// Counter: requests a gate refused without calling the backend, by
/// [`REJECT_REASON`]. Counted from the gate's own report, once per refusal;
/// such requests are in no `gen_ai.*` metric.
pub const REJECTIONS: &str = "streamgate.rejections";
/// Counter: circuit breaker state changes, by [`BREAKER_FROM`] and
/// [`BREAKER_TO`].
pub const BREAKER_TRANSITIONS: &str = "streamgate.breaker.transitions";
/// Counter: times failover gave up on a backend, by `error.type` and
/// [`FAILOVER_TO`].
pub const FAILOVERS: &str = "streamgate.failovers";
/// Counter: hedges of a slow first choice, by [`HEDGE_STAGE`] (`started`,
/// `won`: the hedge produced content first, `lost`: the first choice did),
/// labelled with the hedge's backend and model.
pub const HEDGES: &str = "streamgate.hedges";
/// Counter: streams that failed after content and were continued on
/// another backend, by [`FAILOVER_TO`] (the continuing backend), labelled
/// with the failed stream's backend and model.
pub const CONTINUATIONS: &str = "streamgate.continuations";
/// Counter (`{token}`): the token estimates of the requests hedges sent
/// again (what the extra attempts cost in prompt tokens), labelled with
/// the hedge's backend and model.
pub const HEDGE_TOKENS: &str = "streamgate.hedge.tokens";
/// Attribute: how a hedge went.
pub const HEDGE_STAGE: &str = "streamgate.hedge.stage";
/// Histogram (seconds): how long requests waited to stay under a rate.
pub const THROTTLE_WAIT: &str = "streamgate.throttle.wait";
/// Gauge (`{request}`): requests left in the provider's current quota window.
pub const QUOTA_REMAINING_REQUESTS: &str = "streamgate.quota.remaining_requests";
/// Gauge (`{token}`): tokens left in the provider's current quota window.
pub const QUOTA_REMAINING_TOKENS: &str = "streamgate.quota.remaining_tokens";

/// Attribute: the operation; always [`OPERATION_CHAT`] here.
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
/// The value of [`OPERATION_NAME`]: streaming chat completions.
pub const OPERATION_CHAT: &str = "chat";
/// Attribute: the provider. streamgate reports the [`BackendId`] here, so two
/// accounts of one provider stay apart.
///
/// [`BackendId`]: streamgate_core::BackendId
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Attribute: the model requested, folded into [`OTHER_MODEL`] past the
/// cardinality cap.
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// Attribute: `input` or `output` on [`CLIENT_TOKEN_USAGE`].
pub const TOKEN_TYPE: &str = "gen_ai.token.type";
/// The [`TOKEN_TYPE`] of prompt tokens.
pub const TOKEN_TYPE_INPUT: &str = "input";
/// The [`TOKEN_TYPE`] of completion tokens.
pub const TOKEN_TYPE_OUTPUT: &str = "output";
/// Attribute: why a request did not succeed (the outcome's snake_case name:
/// an error class, `timeout`, `cancelled` or `truncated`).
pub const ERROR_TYPE: &str = "error.type";
/// Attribute: which gate refused (`circuit_open`, `quota_exhausted`, …).
pub const REJECT_REASON: &str = "streamgate.reject.reason";
/// Attribute: the breaker state before a transition.
pub const BREAKER_FROM: &str = "streamgate.breaker.from";
/// Attribute: the breaker state after a transition.
pub const BREAKER_TO: &str = "streamgate.breaker.to";
/// Attribute: the backend failover moved on to (`none` when it was the last).
pub const FAILOVER_TO: &str = "streamgate.failover.to";

/// The model name that every model past the cardinality cap is folded into.
///
/// Model names come from requests and may be chosen by whoever sends them, so
/// every sink that keys by model keeps at most a fixed number of distinct
/// names per backend (see [`DEFAULT_MODEL_CAP`]) and records the rest here.
pub const OTHER_MODEL: &str = streamgate_core::keyed::OTHER_MODEL;

/// Distinct model names kept per backend before folding into
/// [`OTHER_MODEL`]: 32, well above the handful of models a deployment uses,
/// and small enough that a flood of made-up names stays cheap.
pub const DEFAULT_MODEL_CAP: usize = streamgate_core::keyed::DEFAULT_MODEL_CAP;

/// Bucket boundaries (seconds) for [`CLIENT_OPERATION_DURATION`], from the
/// semantic conventions.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Bucket boundaries (seconds) for [`CLIENT_TIME_TO_FIRST_CHUNK`], from the
/// semantic conventions (the same as the duration's).
pub const TIME_TO_FIRST_CHUNK_BUCKETS: [f64; 14] = DURATION_BUCKETS;
/// Bucket boundaries (seconds) for [`CLIENT_TIME_PER_OUTPUT_CHUNK`], from the
/// semantic conventions.
pub const TIME_PER_OUTPUT_CHUNK_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// Bucket boundaries (tokens) for [`CLIENT_TOKEN_USAGE`], from the semantic
/// conventions.
pub const TOKEN_USAGE_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// Bucket boundaries (seconds) for [`THROTTLE_WAIT`]: the duration buckets.
pub const THROTTLE_WAIT_BUCKETS: [f64; 14] = DURATION_BUCKETS;

/// Every histogram name with its bucket boundaries, for exporters that take
/// boundaries per metric (such as `metrics-exporter-prometheus`).
pub const HISTOGRAM_BUCKETS: [(&str, &[f64]); 5] = [
    (CLIENT_OPERATION_DURATION, &DURATION_BUCKETS),
    (CLIENT_TOKEN_USAGE, &TOKEN_USAGE_BUCKETS),
    (CLIENT_TIME_TO_FIRST_CHUNK, &TIME_TO_FIRST_CHUNK_BUCKETS),
    (CLIENT_TIME_PER_OUTPUT_CHUNK, &TIME_PER_OUTPUT_CHUNK_BUCKETS),
    (THROTTLE_WAIT, &THROTTLE_WAIT_BUCKETS),
];
