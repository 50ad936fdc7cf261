//! The four wire dialects: how each provider frames events, errors and rate limits.
//!
//! A dialect only turns values into bytes and headers; when to send what is decided
//! by [`crate::wire`], and the transport lives in [`crate::server`].

mod anthropic;
mod azure;
mod bedrock;
mod gemini;
mod ollama;
mod openai;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::plan::KeepAlive;
use crate::ratelimit::{LimitExceeded, QuotaReport};

/// The provider API a request was addressed to, chosen by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// OpenAI Chat Completions: `POST /v1/chat/completions` (or `/chat/completions`).
    OpenAi,
    /// Anthropic Messages: `POST /v1/messages`.
    Anthropic,
    /// Gemini: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`.
    Gemini,
    /// Ollama's native chat API: `POST /api/chat`, newline-delimited JSON.
    Ollama,
    /// Amazon Bedrock `ConverseStream`: `POST /model/{model}/converse-stream`,
    /// binary AWS event-stream frames.
    Bedrock,
    /// Azure OpenAI chat completions: `POST /openai/deployments/{deployment}/chat/completions`
    /// (or `/openai/v1/chat/completions`), OpenAI's stream with content-filter results.
    Azure,
    /// Gemini on Vertex AI: `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent?alt=sse`.
    Vertex,
}

impl Provider {
    /// The path and query a streaming request for `model` goes to.
    ///
    /// Only Gemini puts the model in the path; the others read it from the body.
    pub fn path(self, model: &str) -> String {
        match self {
            Provider::OpenAi => "/v1/chat/completions".to_owned(),
            Provider::Anthropic => "/v1/messages".to_owned(),
            Provider::Gemini => format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
            Provider::Ollama => "/api/chat".to_owned(),
            Provider::Bedrock => format!("/model/{model}/converse-stream"),
            Provider::Azure => {
                format!("/openai/deployments/{model}/chat/completions?api-version=2024-10-21")
            }
            Provider::Vertex => format!(
                "/v1/projects/mock-project/locations/us-central1/publishers/google/models/{model}:streamGenerateContent?alt=sse"
            ),
        }
    }

    /// A short lowercase name: `openai`, `anthropic`, `gemini`, `ollama`, `bedrock`,
    /// `azure` or `vertex`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Ollama => "ollama",
            Provider::Bedrock => "bedrock",
            Provider::Azure => "azure",
            Provider::Vertex => "vertex",
        }
    }

    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Provider::OpenAi => &openai::OpenAi,
            Provider::Anthropic => &anthropic::Anthropic,
            Provider::Gemini | Provider::Vertex => &gemini::Gemini,
            Provider::Ollama => &ollama::Ollama,
            Provider::Bedrock => &bedrock::Bedrock,
            Provider::Azure => &azure::Azure,
        }
    }
}

/// The text of output token `index`: `tok0 `, `tok1 `, …
pub fn token_text(index: u64) -> String {
    format!("tok{index} ")
}

/// The whole text a complete stream of `output_tokens` tokens carries, for asserting
/// on what a client assembled.
pub fn expected_text(output_tokens: u64) -> String {
    (0..output_tokens).map(token_text).collect()
}

/// What every frame of one response needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct StreamMeta {
    /// Response id in the provider's style (`chatcmpl-…`, `msg_…`).
    pub(crate) id: String,
    pub(crate) model: String,
    /// Unix seconds, for OpenAI's `created`.
    pub(crate) created: u64,
    /// Input tokens including the cached ones.
    pub(crate) input_tokens: u64,
    /// The part of `input_tokens` read from cache.
    pub(crate) cached_input_tokens: u64,
    /// OpenAI only: the request asked for `stream_options.include_usage`.
    pub(crate) include_usage: bool,
    /// The plan's error body, which also picks Bedrock's in-stream exception.
    pub(crate) error_body: Option<Value>,
}

/// Why the server answers with an error instead of a stream.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ErrorCause {
    /// The plan said so.
    Scripted,
    /// The server's own rate limit was exceeded.
    RateLimited(LimitExceeded),
    /// The request body was not valid JSON.
    InvalidJson,
}

/// One provider's wire format. Frames are complete SSE events (or NDJSON lines),
/// terminator included.
pub(crate) trait Dialect: Sync {
    /// The response `content-type` of a stream.
    fn content_type(&self) -> &'static str;

    /// Events before the first content chunk (not content themselves).
    fn preamble(&self, meta: &StreamMeta) -> Vec<Bytes>;

    /// One keep-alive frame, or `None` if the provider never sends any.
    fn keep_alive(&self, meta: &StreamMeta, kind: KeepAlive) -> Option<Bytes>;

    /// Content chunk `index` (one token); `last` marks the final one of a complete
    /// stream, for providers that put the finish reason on it.
    fn content(&self, meta: &StreamMeta, index: u64, last: bool) -> Bytes;

    /// The in-band error event sent inside an HTTP 200 stream.
    fn error_event(&self, meta: &StreamMeta) -> Bytes;

    /// Events after the last content chunk, terminal marker included.
    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes>;

    /// The JSON body of an error response.
    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        meta: &StreamMeta,
        retry_after: Option<Duration>,
    ) -> Value;

    /// Adds the provider's rate-limit headers and `retry-after` (if it sends one).
    fn quota_headers(
        &self,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
        now: SystemTime,
        headers: &mut HeaderMap,
    );

    /// Adds the headers of an HTTP error response beyond the rate-limit ones (Bedrock's
    /// `x-amzn-errortype`).
    fn error_headers(&self, _status: StatusCode, _headers: &mut HeaderMap) {}

    /// The name of the header that carries the response id, if the provider sends one.
    fn request_id_header(&self) -> Option<&'static str>;
}

/// `data: {json}\n\n`, the OpenAI framing.
pub(crate) fn data_frame(json: &Value) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// `event: {name}\ndata: {json}\n\n`, the Anthropic framing.
pub(crate) fn event_frame(name: &str, json: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// `data: {json}\r\n\r\n`, the Gemini framing (the real API uses CRLF).
pub(crate) fn crlf_data_frame(json: &Value) -> Bytes {
    Bytes::from(format!("data: {json}\r\n\r\n"))
}

/// Inserts a header whose value we formatted ourselves; a value that is somehow not a
/// valid header is skipped rather than failing the response.
pub(crate) fn insert_header(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::try_from(value.to_string()) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// `retry-after` in whole seconds, rounded up so a client never comes back early.
pub(crate) fn retry_after_secs(after: Duration) -> u64 {
    after.as_secs() + u64::from(after.subsec_nanos() > 0)
}
