//! Amazon Bedrock `ConverseStream`: binary AWS event-stream frames (prelude, headers,
//! JSON payload, CRC32s, written by the AWS codec), `messageStop` as the terminal
//! marker and a `metadata` event with the usage after it.

use std::time::{Duration, SystemTime};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{insert_header, token_text, Dialect, ErrorCause, StreamMeta};
use crate::plan::KeepAlive;
use crate::ratelimit::QuotaReport;

pub(crate) struct Bedrock;

/// One frame with the headers every Bedrock message carries.
fn message(kind: (&'static str, &'static str), name: &str, payload: &Value) -> Bytes {
    let (type_header, message_type) = kind;
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.into()),
        ))
        .add_header(Header::new(
            type_header,
            HeaderValue::String(name.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    // Our own small frames always fit the codec's limits; an empty body would only
    // show up as a truncated stream.
    let _ = write_message_to(&message, &mut out);
    Bytes::from(out)
}

fn event(name: &str, payload: &Value) -> Bytes {
    message((":event-type", "event"), name, payload)
}

/// The exception name Bedrock sends for an HTTP status (`x-amzn-errortype`).
fn exception_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

impl Dialect for Bedrock {
    fn content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn preamble(&self, _meta: &StreamMeta) -> Vec<Bytes> {
        vec![event("messageStart", &json!({"role": "assistant"}))]
    }

    fn keep_alive(&self, _meta: &StreamMeta, _kind: KeepAlive) -> Option<Bytes> {
        None
    }

    fn content(&self, _meta: &StreamMeta, index: u64, _last: bool) -> Bytes {
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": token_text(index)}}),
        )
    }

    fn error_event(&self, meta: &StreamMeta) -> Bytes {
        // The plan's error body picks the exception: `{"exceptionType": …, "message": …}`.
        let planned = meta.error_body.as_ref();
        let name = planned
            .and_then(|b| b.get("exceptionType"))
            .and_then(Value::as_str)
            .unwrap_or("modelStreamErrorException");
        let text = planned
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("The model encountered an error while streaming.");
        message(
            (":exception-type", "exception"),
            name,
            &json!({ "message": text }),
        )
    }

    fn epilogue(&self, meta: &StreamMeta, output_tokens: u64) -> Vec<Bytes> {
        // Bedrock's inputTokens excludes the prompt cache.
        let uncached = meta.input_tokens.saturating_sub(meta.cached_input_tokens);
        let mut usage = json!({
            "inputTokens": uncached,
            "outputTokens": output_tokens,
            "totalTokens": meta.input_tokens + output_tokens,
        });
        if meta.cached_input_tokens > 0 {
            usage["cacheReadInputTokens"] = json!(meta.cached_input_tokens);
            usage["cacheWriteInputTokens"] = json!(0);
        }
        vec![
            event("contentBlockStop", &json!({"contentBlockIndex": 0})),
            event("messageStop", &json!({"stopReason": "end_turn"})),
            event(
                "metadata",
                &json!({"usage": usage, "metrics": {"latencyMs": 42}}),
            ),
        ]
    }

    fn error_body(
        &self,
        status: StatusCode,
        cause: ErrorCause,
        _meta: &StreamMeta,
        _retry_after: Option<Duration>,
    ) -> Value {
        let message = match (cause, status.as_u16()) {
            (ErrorCause::InvalidJson, _) => {
                "Malformed input request, please reformat your input and try again."
            }
            (_, 429) => "Too many requests, please wait before trying again.",
            (_, 503) => "Bedrock is unable to process your request.",
            (_, 400) => "The provided request is not valid.",
            (_, 403) => "You don't have access to the model with the specified model ID.",
            (_, 404) => "The provided model identifier is invalid.",
            _ => "The server encountered an internal error.",
        };
        json!({ "message": message })
    }

    fn error_headers(&self, status: StatusCode, headers: &mut HeaderMap) {
        insert_header(
            headers,
            "x-amzn-errortype",
            format!(
                "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                exception_for(status)
            ),
        );
    }

    fn quota_headers(
        &self,
        _quota: &QuotaReport,
        _retry_after: Option<Duration>,
        _now: SystemTime,
        _headers: &mut HeaderMap,
    ) {
        // Bedrock sends no rate-limit headers, not even on a throttled request.
    }

    fn request_id_header(&self) -> Option<&'static str> {
        Some("x-amzn-requestid")
    }
}
