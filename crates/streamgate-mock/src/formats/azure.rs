//! Azure OpenAI chat completions: OpenAI's stream with Azure's additions (a
//! `prompt_filter_results` chunk before the first content, `content_filter_results` on
//! choices, a `content_filter` finish reason as its in-band failure) and its rate-limit
//! headers (`x-ratelimit-{limit,remaining}-{requests,tokens}`, no reset times).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{data_frame, insert_header, openai::OpenAi, Dialect, ErrorCause, StreamMeta};
use crate::plan::KeepAlive;
use crate::ratelimit::QuotaReport;

pub(crate) struct Azure;

fn filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

impl Dialect for Azure {
    fn content_type(&self) -> &'static str {
        OpenAi.content_type()
    }

    fn preamble(&self, meta: &StreamMeta) -> Vec<Bytes> {
        let filter = data_frame(&json!({
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results()}],
        }));
        let mut frames = vec![filter];
        frames.extend(OpenAi.preamble(meta));
        frames
    }

    fn keep_alive(&self, meta: &StreamMeta, kind: KeepAlive) -> Option<Bytes> {
        OpenAi.keep_alive(meta, kind)
    }

    fn content(&self, meta: &StreamMeta, index: u64, last: bool) -> Bytes {
        OpenAi.content(meta, index, last)
    }

    fn error_event(&self, meta: &StreamMeta) -> Bytes {
        data_frame(&json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "model": meta.model,
            "choices": [{
                "index": 0,
                "delta": {},
                "finish_reason": "content_filter",
                "content_filter_results": {"hate": {"filtered": true, "severity": "high"}},
            }],
        }))
    }

    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        OpenAi.epilogue(meta, output_tokens)
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        meta: &StreamMeta,
        retry_after: Option<Duration>,
    ) -> Value {
        OpenAi.error_body(status, cause, meta, retry_after)
    }

    fn quota_headers(
        &self,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
        _now: SystemTime,
        headers: &mut HeaderMap,
    ) {
        for (budget, [limit, remaining]) in [
            (
                quota.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                ],
            ),
            (
                quota.tokens,
                ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"],
            ),
        ] {
            if let Some(b) = budget {
                insert_header(headers, limit, b.limit);
                insert_header(headers, remaining, b.remaining);
            }
        }
        if let Some(after) = retry_after {
            insert_header(headers, "retry-after-ms", after.as_millis());
            insert_header(headers, "retry-after", super::retry_after_secs(after));
        }
    }

    fn request_id_header(&self) -> Option<&'static str> {
        Some("apim-request-id")
    }
}
