//! Ollama's native `/api/chat` streaming: newline-delimited JSON, one object per
//! line, ending with a `"done": true` line that carries the token counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::anthropic::rfc3339;
use super::{insert_header, retry_after_secs, token_text, Dialect, ErrorCause, StreamMeta};
use crate::plan::KeepAlive;
use crate::ratelimit::QuotaReport;

pub(crate) struct Ollama;

/// Nominal time per output token for the done line's durations (Ollama reports them
/// in nanoseconds); the values are plausible, not measured.
const NANOS_PER_TOKEN: u64 = 20_000_000;

/// `{json}\n`, the NDJSON framing.
fn line(json: &Value) -> Bytes {
    Bytes::from(format!("{json}\n"))
}

fn created_at(meta: &StreamMeta) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(meta.created))
}

impl Dialect for Ollama {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn preamble(&self, _meta: &StreamMeta) -> Vec<Bytes> {
        // The first line already carries the first token.
        Vec::new()
    }

    fn keep_alive(&self, _meta: &StreamMeta, _kind: KeepAlive) -> Option<Bytes> {
        // Ollama sends nothing while the model loads or thinks.
        None
    }

    fn content(&self, meta: &StreamMeta, index: u64, _last: bool) -> Bytes {
        line(&json!({
            "model": meta.model,
            "created_at": created_at(meta),
            "message": {"role": "assistant", "content": token_text(index)},
            "done": false,
        }))
    }

    fn error_event(&self, _meta: &StreamMeta) -> Bytes {
        // Inside a 200 the error is a bare `{"error": "..."}` line and no done line follows.
        line(&json!({"error": "an error was encountered while running the model"}))
    }

    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        let eval = output_tokens * NANOS_PER_TOKEN;
        let prompt_eval = meta.input_tokens * NANOS_PER_TOKEN / 10;
        vec![line(&json!({
            "model": meta.model,
            "created_at": created_at(meta),
            "message": {"role": "assistant", "content": ""},
            "done_reason": "stop",
            "done": true,
            "total_duration": eval + prompt_eval,
            "load_duration": 0,
            "prompt_eval_count": meta.input_tokens,
            "prompt_eval_duration": prompt_eval,
            "eval_count": output_tokens,
            "eval_duration": eval,
        }))]
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        meta: &StreamMeta,
        _retry_after: Option<Duration>,
    ) -> Value {
        let message = match (cause, status.as_u16()) {
            (ErrorCause::InvalidJson, _) => {
                "invalid character 'o' in literal null (expecting 'u')".to_owned()
            }
            (_, 404) => format!("model \"{}\" not found, try pulling it first", meta.model),
            (_, 429) => "too many requests".to_owned(),
            (_, 503) => {
                "server busy, please try again.  maximum pending requests exceeded".to_owned()
            }
            (_, 400) => "invalid request".to_owned(),
            (_, s) if s >= 500 => "an error was encountered while running the model".to_owned(),
            (_, _) => format!("request failed with status {}", status.as_u16()),
        };
        json!({ "error": message })
    }

    fn quota_headers(
        &self,
        _quota: &QuotaReport,
        retry_after: Option<Duration>,
        _now: SystemTime,
        headers: &mut HeaderMap,
    ) {
        // Ollama reports no rate limits; `retry-after` only when the plan sets one, as
        // a proxy in front of it would.
        if let Some(after) = retry_after {
            insert_header(headers, "retry-after", retry_after_secs(after));
        }
    }

    fn request_id_header(&self) -> Option<&'static str> {
        None
    }
}
