//! OpenAI Chat Completions streaming (`chat.completion.chunk` events and `[DONE]`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{
    data_frame, insert_header, retry_after_secs, token_text, Dialect, ErrorCause, StreamMeta,
};
use crate::plan::KeepAlive;
use crate::ratelimit::{Budget, LimitExceeded, LimitKind, QuotaReport};

pub(crate) struct OpenAi;

impl OpenAi {
    /// A chunk with the fields every chunk shares around `choices`.
    fn chunk(meta: &StreamMeta, choices: Value) -> Value {
        let mut chunk = json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": choices,
        });
        // With include_usage the real API adds `"usage": null` to every chunk but the last.
        if meta.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn role_chunk(meta: &StreamMeta) -> Bytes {
        let choices = json!([{
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": null,
        }]);
        data_frame(&Self::chunk(meta, choices))
    }
}

impl Dialect for OpenAi {
    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }

    fn preamble(&self, meta: &StreamMeta) -> Vec<Bytes> {
        vec![Self::role_chunk(meta)]
    }

    fn keep_alive(&self, meta: &StreamMeta, kind: KeepAlive) -> Option<Bytes> {
        Some(match kind {
            KeepAlive::Comment => Bytes::from_static(b": keep-alive\n\n"),
            KeepAlive::RoleChunk => Self::role_chunk(meta),
        })
    }

    fn content(&self, meta: &StreamMeta, index: u64, _last: bool) -> Bytes {
        let choices = json!([{
            "index": 0,
            "delta": {"content": token_text(index)},
            "finish_reason": null,
        }]);
        data_frame(&Self::chunk(meta, choices))
    }

    fn error_event(&self, _meta: &StreamMeta) -> Bytes {
        data_frame(&json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": null,
            "code": null,
        }}))
    }

    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        let finish = json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]);
        let mut frames = vec![data_frame(&Self::chunk(meta, finish))];
        if meta.include_usage {
            let mut usage = Self::chunk(meta, json!([]));
            usage["usage"] = json!({
                "prompt_tokens": meta.input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": meta.input_tokens + output_tokens,
                "prompt_tokens_details": {"cached_tokens": meta.cached_input_tokens},
                "completion_tokens_details": {"reasoning_tokens": 0},
            });
            frames.push(data_frame(&usage));
        }
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        frames
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        meta: &StreamMeta,
        retry_after: Option<Duration>,
    ) -> Value {
        let (message, kind, code) = match (cause, status.as_u16()) {
            (
                ErrorCause::RateLimited(LimitExceeded {
                    kind,
                    limit,
                    used,
                    requested,
                }),
                _,
            ) => {
                let (unit, kind) = match kind {
                    LimitKind::Requests => ("requests per min (RPM)", "requests"),
                    LimitKind::Tokens => ("tokens per min (TPM)", "tokens"),
                };
                let wait = retry_after
                    .map(go_duration)
                    .unwrap_or_else(|| "a moment".to_owned());
                let message = format!(
                    "Rate limit reached for {} in organization org-mock on {unit}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait}.",
                    meta.model
                );
                (message, kind, Value::from("rate_limit_exceeded"))
            }
            (ErrorCause::InvalidJson, _) => (
                "We could not parse the JSON body of your request.".to_owned(),
                "invalid_request_error",
                Value::Null,
            ),
            (ErrorCause::Scripted, 429) => (
                format!(
                    "Rate limit reached for {} in organization org-mock on requests per min (RPM).",
                    meta.model
                ),
                "requests",
                Value::from("rate_limit_exceeded"),
            ),
            (ErrorCause::Scripted, 401) => (
                "Incorrect API key provided.".to_owned(),
                "invalid_request_error",
                Value::from("invalid_api_key"),
            ),
            (ErrorCause::Scripted, 503) => (
                "The engine is currently overloaded, please try again later".to_owned(),
                "server_error",
                Value::Null,
            ),
            (ErrorCause::Scripted, s) if s >= 500 => (
                "The server had an error while processing your request. Sorry about that!"
                    .to_owned(),
                "server_error",
                Value::Null,
            ),
            (ErrorCause::Scripted, _) => (
                format!("Request failed with status {status}."),
                "invalid_request_error",
                Value::Null,
            ),
        };
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }

    fn quota_headers(
        &self,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
        _now: SystemTime,
        headers: &mut HeaderMap,
    ) {
        let mut budget = |budget: Option<Budget>, [limit, remaining, reset]: [&'static str; 3]| {
            if let Some(b) = budget {
                insert_header(headers, limit, b.limit);
                insert_header(headers, remaining, b.remaining);
                insert_header(headers, reset, go_duration(b.reset));
            }
        };
        budget(
            quota.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        );
        budget(
            quota.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        );
        if let Some(after) = retry_after {
            insert_header(headers, "retry-after", retry_after_secs(after));
        }
    }

    fn request_id_header(&self) -> Option<&'static str> {
        Some("x-request-id")
    }
}

/// A duration the way OpenAI's reset headers write it (Go's `time.Duration` format):
/// `6m0s`, `1m26.4s`, `1.5s`, `20ms`. Below one second it is whole milliseconds,
/// rounded up so that a client never retries early.
pub(crate) fn go_duration(d: Duration) -> String {
    let millis = d.as_nanos().div_ceil(1_000_000);
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let seconds = if rest % 1000 == 0 {
        format!("{}", rest / 1000)
    } else {
        let fraction = format!("{:03}", rest % 1000);
        format!("{}.{}", rest / 1000, fraction.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_matches_openai_header_style() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(300)), "1ms");
        assert_eq!(go_duration(ms(20)), "20ms");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(7000)), "7s");
        assert_eq!(go_duration(ms(86_400)), "1m26.4s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_600_250)), "1h0m0.25s");
    }
}
