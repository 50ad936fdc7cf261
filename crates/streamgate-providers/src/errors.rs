//! Turning provider error bodies, in-band error events and transport
//! failures into [`ProviderError`]s with the right [`ErrorClass`].

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use streamgate_core::{
    time::{duration_from_millis_f64, duration_from_secs_f64},
    BoxError, ErrorClass, ProviderError,
};

/// The most bytes of an HTTP error body read before giving up on the rest:
/// enough for any provider's JSON error, small enough to bound memory.
pub const ERROR_BODY_READ_LIMIT: usize = 64 * 1024;

/// What a provider's error JSON said, in one shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorDetails {
    /// The provider's error type or code as this crate reports it
    /// ([`ProviderError::code`]): OpenAI's `code` when present, else its
    /// `type`; Anthropic's `error.type`; Gemini's `error.status`.
    pub code: Option<String>,
    /// The provider's error type when it differs from `code` (OpenAI `type`).
    pub kind: Option<String>,
    /// The provider's message.
    pub message: String,
    /// Gemini's `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
}

/// Reads an error object in any of the shapes providers use:
/// `{"error": {...}}` (OpenAI, Anthropic body, Gemini), a bare
/// `{"type","code","message"}` (Responses `error` event), or
/// `{"error": "text"}` (some compatible servers).
pub fn error_details(value: &Value) -> Option<ErrorDetails> {
    let error = match value.get("error") {
        Some(Value::String(message)) => {
            return Some(ErrorDetails {
                message: message.clone(),
                ..ErrorDetails::default()
            })
        }
        Some(error @ Value::Object(_)) => error,
        _ if value.get("message").is_some() => value,
        _ => return None,
    };
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = text("type");
    // Gemini: `status` is the string code, `code` the HTTP number.
    let code = text("status")
        .or_else(|| text("code"))
        .or_else(|| kind.clone());
    let retry_delay = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|details| {
            details.iter().find_map(|d| {
                d.get("retryDelay")
                    .and_then(Value::as_str)
                    .and_then(parse_seconds)
            })
        });
    Some(ErrorDetails {
        code,
        kind,
        message: text("message").unwrap_or_default(),
        retry_delay,
    })
}

/// Parses a protobuf duration such as `34.4s` or `3s`; one too long to
/// represent saturates at [`Duration::MAX`] (the layers that honour it cap
/// it), a negative one is ignored.
fn parse_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    duration_from_secs_f64(seconds)
}

/// The class of an error from its HTTP status (`None` for an error inside a
/// stream) and what the provider's body said, in this order of precedence
/// (the first rule that matches decides; see the `classify` module of
/// `streamgate-core` for why):
///
/// 1. **A request that cannot succeed**, whatever the status: no quota or
///    billing left (`insufficient_quota`), a context-length error, a
///    content filter, a single request above the whole per-minute limit
///    ("request too large"): client, context length or content filter.
/// 2. **A specific transient type in the body**: rate limited
///    (`rate_limit_exceeded`, `rate_limit_error`, `RESOURCE_EXHAUSTED`) or
///    overloaded (`overloaded_error`, `UNAVAILABLE`, `engine_overloaded`,
///    `service_unavailable`).
/// 3. **A specific status**: 429 rate limited, 503 and 529 overloaded, 408
///    and 504 timeout ([`ErrorClass::from_status`]). These beat the generic
///    body types below, so OpenAI's and Azure's 503 with `server_error` is
///    overloaded, not server.
/// 4. **An overload said in words**: a message containing "overloaded" on a
///    5xx or inside a stream (an in-band `server_error` saying "The server
///    is overloaded").
/// 5. **A generic type in the body**: `server_error`, `api_error`,
///    `INTERNAL` server; `timeout`, `DEADLINE_EXCEEDED` timeout;
///    `invalid_request_error`, `authentication_error`, `INVALID_ARGUMENT`
///    and the like client.
/// 6. **The status alone** (other 5xx server, other 4xx client), and an
///    unrecognised error inside a stream is server.
pub fn class_of(status: Option<StatusCode>, details: &ErrorDetails) -> ErrorClass {
    let code = details.code.as_deref().unwrap_or_default();
    let kind = details.kind.as_deref().unwrap_or_default();
    let message = details.message.to_ascii_lowercase();
    let any = |names: &[&str]| names.iter().any(|n| code == *n || kind == *n);
    // 1. Another try fails the same way.
    if any(&["insufficient_quota", "billing_hard_limit_reached"]) {
        return ErrorClass::Client;
    }
    if any(&["context_length_exceeded", "string_above_max_length"])
        || message.contains("context length")
        || message.contains("context window")
        || message.contains("maximum context")
        || message.contains("prompt is too long")
    {
        return ErrorClass::ContextLength;
    }
    if any(&["content_filter", "content_policy_violation"]) || code == "SAFETY" {
        return ErrorClass::ContentFilter;
    }
    // A single request above the whole per-minute limit never fits: retrying
    // the same backend cannot help.
    if message.starts_with("request too large") {
        return ErrorClass::Client;
    }
    // 2. The body names the transient condition.
    if any(&[
        "rate_limit_exceeded",
        "rate_limit_error",
        "RESOURCE_EXHAUSTED",
    ]) {
        return ErrorClass::RateLimited;
    }
    if any(&[
        "overloaded_error",
        "UNAVAILABLE",
        "engine_overloaded",
        "service_unavailable",
        "ServiceUnavailable",
    ]) {
        return ErrorClass::Overloaded;
    }
    // 3. A status that names the condition beats a generic body type.
    if let Some(status) = status {
        let class = ErrorClass::from_status(status);
        if matches!(
            class,
            ErrorClass::RateLimited | ErrorClass::Overloaded | ErrorClass::Timeout
        ) {
            return class;
        }
    }
    // 4. Without a telling status, the words can (not on a 4xx: the
    // request was refused for what it is).
    if message.contains("overloaded") && status.is_none_or(|s| s.is_server_error()) {
        return ErrorClass::Overloaded;
    }
    // 5. Generic body types.
    if any(&["server_error", "api_error", "INTERNAL"]) {
        return ErrorClass::Server;
    }
    if any(&["timeout", "DEADLINE_EXCEEDED"]) {
        return ErrorClass::Timeout;
    }
    if any(&[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
    ]) {
        return ErrorClass::Client;
    }
    // 6. The status alone.
    match status {
        Some(status) => ErrorClass::from_status(status),
        // An unrecognised error inside a stream: the provider failed mid-way.
        None => ErrorClass::Server,
    }
}

/// The error for an HTTP error status, from the (already bounded) body.
/// `secrets` (the client's API key) are [redacted](streamgate_core::redact)
/// from the message and the body excerpt, as are credential patterns.
pub fn http_error(
    status: StatusCode,
    headers: HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> ProviderError {
    let details = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(error_details)
        .unwrap_or_default();
    let class = class_of(Some(status), &details);
    let message = if details.message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error status")
            .to_ascii_lowercase()
    } else {
        details.message.clone()
    };
    let retry_after = details.retry_delay.or_else(|| header_retry_after(&headers));
    let mut error = ProviderError::new(class, message)
        .with_status(status)
        .with_redacted_body_excerpt(body, secrets)
        .with_headers(headers);
    if let Some(code) = details.code {
        error = error.with_code(code);
    }
    if let Some(after) = retry_after {
        error = error.with_retry_after(after);
    }
    error.redact_known(secrets)
}

/// The error for an error object inside a stream.
pub fn in_band_error(details: ErrorDetails) -> ProviderError {
    let class = class_of(None, &details);
    let message = if details.message.is_empty() {
        "error event in stream".to_owned()
    } else {
        details.message
    };
    let mut error = ProviderError::new(class, message).in_band();
    if let Some(code) = details.code {
        error = error.with_code(code);
    }
    if let Some(after) = details.retry_delay {
        error = error.with_retry_after(after);
    }
    error
}

/// `retry-after-ms`, then `retry-after` in seconds. (HTTP-date values are
/// left to the quota layer, which has a clock.) A value too large to
/// represent saturates at [`Duration::MAX`]; a negative one is ignored.
fn header_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number =
        |name: &str| -> Option<f64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    number("retry-after-ms")
        .and_then(duration_from_millis_f64)
        .or_else(|| number("retry-after").and_then(duration_from_secs_f64))
}

/// A payload that is not the JSON the adapter expects.
pub fn malformed(what: &str, source: impl Into<BoxError>) -> ProviderError {
    ProviderError::new(
        ErrorClass::Server,
        format!("malformed {what} in provider stream"),
    )
    .in_band()
    .with_source(source)
}

/// A transport failure: class timeout when the transport says so, else
/// network, with the cause attached (a `reqwest` error without its URL,
/// which may carry a key).
pub fn transport_error(source: BoxError) -> ProviderError {
    let source = match source.downcast::<reqwest::Error>() {
        Ok(error) => Box::new(error.without_url()) as BoxError,
        Err(other) => other,
    };
    let timed_out = source
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_timeout)
        || source
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
    let (class, message) = if timed_out {
        (ErrorClass::Timeout, "request timed out")
    } else {
        (ErrorClass::Network, "connection to provider failed")
    };
    ProviderError::new(class, message).with_source(source)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn details(value: Value) -> ErrorDetails {
        error_details(&value).unwrap()
    }

    #[test]
    fn openai_insufficient_quota_429_is_not_retryable() {
        let body = json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}});
        let err = http_error(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(err.class(), ErrorClass::Client);
        assert_eq!(err.code(), Some("insufficient_quota"));
        assert!(err.body_excerpt().unwrap().contains("current quota"));
    }

    #[test]
    fn openai_rate_limit_429_is_retryable_with_retry_after_header() {
        let body = json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}});
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        let err = http_error(
            StatusCode::TOO_MANY_REQUESTS,
            headers,
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(err.class(), ErrorClass::RateLimited);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(err.headers().len(), 1);
    }

    #[test]
    fn request_larger_than_the_whole_limit_is_a_client_error() {
        let d = details(
            json!({"error": {"message": "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 31538.", "type": "tokens", "code": "rate_limit_exceeded"}}),
        );
        assert_eq!(
            class_of(Some(StatusCode::TOO_MANY_REQUESTS), &d),
            ErrorClass::Client
        );
    }

    #[test]
    fn anthropic_529_and_overloaded_error_are_overloaded() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let err = http_error(
            StatusCode::from_u16(529).unwrap(),
            HeaderMap::new(),
            body,
            &[],
        );
        assert_eq!(err.class(), ErrorClass::Overloaded);
        assert_eq!(err.code(), Some("overloaded_error"));
    }

    #[test]
    fn context_length_and_content_filter_get_their_classes() {
        let ctx = details(
            json!({"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
        );
        assert_eq!(
            class_of(Some(StatusCode::BAD_REQUEST), &ctx),
            ErrorClass::ContextLength
        );
        let anthropic = details(
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
        );
        assert_eq!(class_of(None, &anthropic), ErrorClass::ContextLength);
        let filter = details(
            json!({"error": {"message": "filtered", "type": null, "code": "content_filter"}}),
        );
        assert_eq!(class_of(None, &filter), ErrorClass::ContentFilter);
    }

    #[test]
    fn gemini_retry_info_becomes_retry_after() {
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}
        ]}});
        let err = http_error(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(err.class(), ErrorClass::RateLimited);
        assert_eq!(err.code(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(err.retry_after(), Some(Duration::from_millis(12_500)));
    }

    #[test]
    fn non_json_error_body_falls_back_to_status() {
        let err = http_error(
            StatusCode::BAD_GATEWAY,
            HeaderMap::new(),
            b"<html>bad gateway</html>",
            &[],
        );
        assert_eq!(err.class(), ErrorClass::Server);
        assert_eq!(err.message(), "bad gateway");
        assert_eq!(err.body_excerpt(), Some("<html>bad gateway</html>"));
    }

    #[test]
    fn unknown_in_band_error_is_a_server_error() {
        let err = in_band_error(details(json!({"error": {"message": "boom"}})));
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(err.is_in_band());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (http::HeaderName::from_static(name), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn retry_after_beyond_u64_seconds_saturates_instead_of_panicking() {
        for (name, value) in [
            ("retry-after", "1e300"),
            ("retry-after", "18446744073709551616"),
            ("retry-after", "inf"),
            ("retry-after-ms", "1e30"),
        ] {
            let err = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                headers(&[(name, value)]),
                b"",
                &[],
            );
            assert_eq!(err.retry_after(), Some(Duration::MAX), "{name}: {value}");
        }
    }

    #[test]
    fn negative_or_nan_retry_after_is_ignored() {
        for value in ["-1", "NaN", "-inf"] {
            let err = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                headers(&[("retry-after", value)]),
                b"",
                &[],
            );
            assert_eq!(err.retry_after(), None, "{value}");
        }
    }

    #[test]
    fn huge_gemini_retry_delay_saturates_on_both_paths() {
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "99999999999999999999999s"}
        ]}});
        let err = http_error(
            StatusCode::TOO_MANY_REQUESTS,
            HeaderMap::new(),
            body.to_string().as_bytes(),
            &[],
        );
        assert_eq!(err.retry_after(), Some(Duration::MAX));
        let in_band = in_band_error(details(body));
        assert_eq!(in_band.retry_after(), Some(Duration::MAX));
        assert_eq!(parse_seconds("-3s"), None);
    }

    #[test]
    fn an_echoed_key_is_redacted_from_message_and_excerpt() {
        let key = "sk-proj-abcdefghijklmnop";
        let body = json!({"error": {"message": format!("Incorrect API key provided: {key}."), "type": "invalid_request_error", "code": "invalid_api_key"}});
        let err = http_error(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            body.to_string().as_bytes(),
            &[key],
        );
        for text in [
            err.to_string(),
            format!("{err:?}"),
            err.body_excerpt().unwrap_or_default().to_owned(),
        ] {
            assert!(!text.contains(key), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn transport_errors_are_network_or_timeout() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(transport_error(Box::new(io)).class(), ErrorClass::Timeout);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = transport_error(Box::new(io));
        assert_eq!(err.class(), ErrorClass::Network);
        assert!(std::error::Error::source(&err).is_some());
    }
}
