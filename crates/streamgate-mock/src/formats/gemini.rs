//! Gemini `streamGenerateContent?alt=sse`: CRLF-framed `data:` events, and no terminal
//! marker other than the `finishReason` of the last chunk.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{crlf_data_frame, retry_after_secs, token_text, Dialect, ErrorCause, StreamMeta};
use crate::plan::KeepAlive;
use crate::ratelimit::{LimitExceeded, LimitKind, QuotaReport};

pub(crate) struct Gemini;

impl Gemini {
    fn chunk(meta: &StreamMeta, text: String, output_tokens: u64, finish: bool) -> Bytes {
        let mut candidate = json!({
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        });
        if finish {
            candidate["finishReason"] = json!("STOP");
        }
        let mut usage = json!({
            "promptTokenCount": meta.input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": meta.input_tokens + output_tokens,
        });
        if meta.cached_input_tokens > 0 {
            usage["cachedContentTokenCount"] =
                json!(meta.cached_input_tokens.min(meta.input_tokens));
        }
        crlf_data_frame(&json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": meta.model,
            "responseId": meta.id,
        }))
    }
}

impl Dialect for Gemini {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn preamble(&self, _meta: &StreamMeta) -> Vec<Bytes> {
        Vec::new()
    }

    fn keep_alive(&self, _meta: &StreamMeta, _kind: KeepAlive) -> Option<Bytes> {
        None
    }

    fn content(&self, meta: &StreamMeta, index: u64, last: bool) -> Bytes {
        // Gemini's usage counts are cumulative and ride on every chunk.
        Self::chunk(meta, token_text(index), index + 1, last)
    }

    fn error_event(&self, _meta: &StreamMeta) -> Bytes {
        crlf_data_frame(&json!({"error": {
            "code": 500,
            "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            "status": "INTERNAL",
        }}))
    }

    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        // The finish reason rides on the last content chunk; an empty answer still
        // needs one chunk to carry it.
        if output_tokens == 0 {
            vec![Self::chunk(meta, String::new(), 0, true)]
        } else {
            Vec::new()
        }
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        meta: &StreamMeta,
        retry_after: Option<Duration>,
    ) -> Value {
        let code = status.as_u16();
        let (grpc_status, message) = match (cause, code) {
            (ErrorCause::InvalidJson, _) => ("INVALID_ARGUMENT", "Invalid JSON payload received."),
            (_, 400) => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            (_, 403) => ("PERMISSION_DENIED", "The caller does not have permission"),
            (_, 404) => ("NOT_FOUND", "Requested entity was not found."),
            (_, 429) => (
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
            ),
            (_, 503) => (
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
            ),
            (_, 504) => (
                "DEADLINE_EXCEEDED",
                "Deadline expired before operation could complete.",
            ),
            (_, _) => ("INTERNAL", "An internal error has occurred."),
        };
        let mut error = json!({"code": code, "message": message, "status": grpc_status});
        if code == 429 {
            error["details"] = quota_details(cause, meta, retry_after);
        }
        json!({ "error": error })
    }

    fn quota_headers(
        &self,
        _quota: &QuotaReport,
        _retry_after: Option<Duration>,
        _now: SystemTime,
        _headers: &mut HeaderMap,
    ) {
        // The real API sends no rate-limit headers; the retry delay is in the 429 body.
    }

    fn request_id_header(&self) -> Option<&'static str> {
        // The id travels in the body (`responseId`).
        None
    }
}

/// The `details` of a 429: which quota ran out (`QuotaFailure`) and, when known, when
/// to retry (`RetryInfo`, seconds rounded up as in `"7s"`).
fn quota_details(cause: ErrorCause, meta: &StreamMeta, retry_after: Option<Duration>) -> Value {
    let (metric, quota_id, value) = match cause {
        ErrorCause::RateLimited(LimitExceeded {
            kind: LimitKind::Tokens,
            limit,
            ..
        }) => (
            "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            limit,
        ),
        ErrorCause::RateLimited(LimitExceeded { limit, .. }) => (
            "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            limit,
        ),
        _ => (
            "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            15,
        ),
    };
    let mut details = vec![
        json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": metric,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": meta.model},
                "quotaValue": value.to_string(),
            }],
        }),
        json!({
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{
                "description": "Learn more about Gemini API quotas",
                "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
            }],
        }),
    ];
    if let Some(after) = retry_after {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{}s", retry_after_secs(after)),
        }));
    }
    Value::Array(details)
}
