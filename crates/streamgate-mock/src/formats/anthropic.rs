//! Anthropic Messages streaming (named SSE events from `message_start` to `message_stop`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{
    event_frame, insert_header, retry_after_secs, token_text, Dialect, ErrorCause, StreamMeta,
};
use crate::plan::KeepAlive;
use crate::ratelimit::{Budget, LimitExceeded, LimitKind, QuotaReport};

pub(crate) struct Anthropic;

fn ping() -> Bytes {
    event_frame("ping", &json!({"type": "ping"}))
}

impl Dialect for Anthropic {
    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }

    fn preamble(&self, meta: &StreamMeta) -> Vec<Bytes> {
        let cached = meta.cached_input_tokens.min(meta.input_tokens);
        let start = json!({
            "type": "message_start",
            "message": {
                "id": meta.id,
                "type": "message",
                "role": "assistant",
                "model": meta.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                // Anthropic's input_tokens excludes the tokens read from cache.
                "usage": {
                    "input_tokens": meta.input_tokens - cached,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": cached,
                    "output_tokens": 1,
                },
            },
        });
        let block_start = json!({
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        });
        vec![
            event_frame("message_start", &start),
            event_frame("content_block_start", &block_start),
            ping(),
        ]
    }

    fn keep_alive(&self, _meta: &StreamMeta, _kind: KeepAlive) -> Option<Bytes> {
        Some(ping())
    }

    fn content(&self, _meta: &StreamMeta, index: u64, _last: bool) -> Bytes {
        let delta = json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": token_text(index)},
        });
        event_frame("content_block_delta", &delta)
    }

    fn error_event(&self, _meta: &StreamMeta) -> Bytes {
        event_frame("error", &error_json("overloaded_error", "Overloaded"))
    }

    fn epilogue(&self, _meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
        });
        vec![
            event_frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            event_frame("message_delta", &delta),
            event_frame("message_stop", &json!({"type": "message_stop"})),
        ]
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        _meta: &StreamMeta,
        _retry_after: Option<Duration>,
    ) -> Value {
        match cause {
            ErrorCause::RateLimited(LimitExceeded { kind, limit, .. }) => {
                let unit = match kind {
                    LimitKind::Requests => "requests",
                    LimitKind::Tokens => "input tokens",
                };
                let message = format!(
                    "This request would exceed the rate limit for your organization (org-mock) of {limit} {unit} per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
                );
                error_json("rate_limit_error", &message)
            }
            ErrorCause::InvalidJson => error_json(
                "invalid_request_error",
                "The request body is not valid JSON.",
            ),
            ErrorCause::Scripted => {
                let (kind, message) = match status.as_u16() {
                    400 => ("invalid_request_error", "Invalid request."),
                    401 => ("authentication_error", "invalid x-api-key"),
                    403 => (
                        "permission_error",
                        "Your API key does not have permission to use the specified resource.",
                    ),
                    404 => (
                        "not_found_error",
                        "The requested resource could not be found.",
                    ),
                    413 => (
                        "request_too_large",
                        "Request exceeds the maximum allowed number of bytes.",
                    ),
                    429 => (
                        "rate_limit_error",
                        "Number of requests has exceeded your rate limit.",
                    ),
                    529 => ("overloaded_error", "Overloaded"),
                    _ => ("api_error", "Internal server error"),
                };
                error_json(kind, message)
            }
        }
    }

    fn quota_headers(
        &self,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
        now: SystemTime,
        headers: &mut HeaderMap,
    ) {
        let mut budget = |budget: Option<Budget>, [limit, remaining, reset]: [&'static str; 3]| {
            if let Some(b) = budget {
                insert_header(headers, limit, b.limit);
                insert_header(headers, remaining, b.remaining);
                insert_header(headers, reset, rfc3339(now + b.reset));
            }
        };
        budget(
            quota.requests,
            [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
        );
        budget(
            quota.tokens,
            [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
        );
        budget(
            quota.input_tokens,
            [
                "anthropic-ratelimit-input-tokens-limit",
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ],
        );
        budget(
            quota.output_tokens,
            [
                "anthropic-ratelimit-output-tokens-limit",
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ],
        );
        if let Some(after) = retry_after {
            insert_header(headers, "retry-after", retry_after_secs(after));
        }
    }

    fn request_id_header(&self) -> Option<&'static str> {
        Some("request-id")
    }
}

fn error_json(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// `2025-01-31T12:00:07Z`: RFC 3339 in UTC with whole seconds, rounded up so that a
/// client never comes back before the reset.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_and_rounds_up() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let at = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
        assert_eq!(rfc3339(at), "2024-02-29T12:34:57Z");
        let end_of_century = UNIX_EPOCH + Duration::from_secs(4_107_542_399);
        assert_eq!(rfc3339(end_of_century), "2100-02-28T23:59:59Z");
    }
}
