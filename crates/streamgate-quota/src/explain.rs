//! What streamgate makes of a response's rate-limit information: the
//! functions the `explain` example calls (the command line itself, its
//! flags and output framing, lives in the example), usable from code and
//! tests. An [`Explanation`] serialises to the example's `--json` output
//! and displays as its text output.
//!
//! Input is either raw HTTP (an optional `HTTP/1.1 429` status line, `Name:
//! value` header lines, then an optional body after a blank line; a new
//! status line starts the next response), or a JSON array of
//! `{"status": 429, "headers": {"name": "value" | ["v1", "v2"]}, "body": "…",
//! "now": "RFC 3339"}` objects (`body` and `now` optional). `now` defaults to
//! the `date` header, else the current time.
//!
//! ```
//! use streamgate_quota::explain;
//!
//! let input = "HTTP/1.1 429 Too Many Requests\nretry-after: 20\n";
//! let out = explain::explain_all(&explain::read_raw(input).unwrap());
//! assert_eq!(out[0].state, "exhausted");
//! assert_eq!(out[0].retry_after_ms, Some(20_000));
//! assert_eq!(out[0].exhausted_for_ms, Some(20_000));
//! ```

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use streamgate_core::{BackendId, DisplayDuration};

use crate::{
    parse::{value, LimitKind},
    tracker::ceil_ms,
    ExhaustReason, Limit, QuotaInfo, QuotaStatus, QuotaTracker,
};

/// One response to explain.
#[derive(Clone, Debug)]
pub struct Input {
    /// The status (200 when the raw input has no status line).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The time the response was received.
    pub now: SystemTime,
}

/// Input that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError(String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for InputError {}

fn default_now(headers: &HeaderMap) -> SystemTime {
    headers
        .get(http::header::DATE)
        .and_then(|d| value::http_date(d.as_bytes()))
        .unwrap_or_else(SystemTime::now)
}

/// Reads raw responses.
pub fn read_raw(input: &str) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    let mut current: Option<(StatusCode, HeaderMap, Option<String>)> = None;
    for (n, line) in input.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with("HTTP/") {
            if let Some(done) = current.take() {
                out.push(done);
            }
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| InputError(format!("line {}: bad status line: {line}", n + 1)))?;
            current = Some((status, HeaderMap::new(), None));
            continue;
        }
        let (_, headers, body) =
            current.get_or_insert_with(|| (StatusCode::OK, HeaderMap::new(), None));
        if let Some(body) = body {
            body.push_str(line);
            body.push('\n');
        } else if line.trim().is_empty() {
            *body = Some(String::new());
        } else {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| InputError(format!("line {}: not a header: {line}", n + 1)))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| InputError(format!("line {}: bad header name: {name}", n + 1)))?;
            let value = HeaderValue::from_bytes(value.trim().as_bytes())
                .map_err(|_| InputError(format!("line {}: bad header value", n + 1)))?;
            headers.append(name, value);
        }
    }
    out.extend(current);
    Ok(out
        .into_iter()
        .map(|(status, headers, body)| Input {
            status,
            now: default_now(&headers),
            body: body
                .map(|b| b.trim_end().to_owned().into_bytes())
                .filter(|b| !b.is_empty()),
            headers,
        })
        .collect())
}

/// Reads a JSON array of responses.
pub fn read_json(input: &str) -> Result<Vec<Input>, InputError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(input)
        .map_err(|e| InputError(format!("expected a JSON array of responses: {e}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let err = |what: &str| InputError(format!("response {}: {what}", i + 1));
            let status = match item.get("status") {
                None => StatusCode::OK,
                Some(s) => s
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or_else(|| err("status must be an HTTP status code"))?,
            };
            let mut headers = HeaderMap::new();
            if let Some(map) = item.get("headers") {
                let map = map
                    .as_object()
                    .ok_or_else(|| err("headers must be an object"))?;
                for (name, values) in map {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| err(&format!("bad header name {name:?}")))?;
                    let values: Vec<&serde_json::Value> = match values {
                        serde_json::Value::Array(vs) => vs.iter().collect(),
                        v => vec![v],
                    };
                    for v in values {
                        let text = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Number(n) => n.to_string(),
                            _ => return Err(err("header values must be strings")),
                        };
                        let value = HeaderValue::from_bytes(text.as_bytes())
                            .map_err(|_| err(&format!("bad value for {name}")))?;
                        headers.append(name.clone(), value);
                    }
                }
            }
            let body = match item.get("body") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone().into_bytes()),
                Some(other) => Some(other.to_string().into_bytes()),
            };
            let now = match item.get("now") {
                None | Some(serde_json::Value::Null) => default_now(&headers),
                Some(v) => v
                    .as_str()
                    .and_then(|s| value::rfc3339(s.as_bytes()))
                    .ok_or_else(|| err("now must be an RFC 3339 timestamp"))?,
            };
            Ok(Input {
                status,
                headers,
                body,
                now,
            })
        })
        .collect()
}

/// One limit of the input/output split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitLimit {
    /// The limit.
    pub limit: Option<u64>,
    /// What is left (negative when the provider reports the window
    /// oversubscribed).
    pub remaining: Option<i64>,
    /// Until it resets, in whole milliseconds rounded up.
    pub reset_after_ms: Option<u64>,
}

impl From<&Limit> for SplitLimit {
    fn from(l: &Limit) -> Self {
        Self {
            limit: l.limit,
            remaining: l.remaining,
            reset_after_ms: l.reset_after.map(ceil_ms),
        }
    }
}

/// Details beyond the common fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extra {
    /// Anthropic's input-token limit.
    pub input_tokens: Option<SplitLimit>,
    /// Anthropic's output-token limit.
    pub output_tokens: Option<SplitLimit>,
    /// The request limit's window in seconds, when the scheme says.
    pub requests_window_s: Option<u64>,
    /// The token limit's window in seconds, when the scheme says.
    pub tokens_window_s: Option<u64>,
    /// Which schemes were recognised.
    pub schemes: Vec<&'static str>,
    /// OpenAI's "Request too large": about this request only.
    pub request_too_large: bool,
    /// Every limit beside the primary figures (other windows and scopes).
    pub windows: Vec<WindowExplanation>,
    /// What the request cost in tokens, when the provider says (Mistral).
    pub tokens_query_cost: Option<u64>,
}

/// One limit beside the primary figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WindowExplanation {
    /// What it counts: `requests`, `tokens`, `input_tokens`, `output_tokens`.
    pub kind: LimitKind,
    /// Its name (`requests-day`, `tokens-month`, `project-tokens`, …).
    pub name: &'static str,
    /// Its window in seconds, when known.
    pub window_s: Option<u64>,
    /// The figures.
    #[serde(flatten)]
    pub limit: SplitLimit,
}

/// What streamgate makes of one response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The status.
    pub status: u16,
    /// Requests left (the primary figure; negative when oversubscribed).
    pub remaining_requests: Option<i64>,
    /// Tokens left (the combined limit, where the provider sends one).
    pub remaining_tokens: Option<i64>,
    /// The request limit.
    pub limit_requests: Option<u64>,
    /// The token limit (combined).
    pub limit_tokens: Option<u64>,
    /// Until the request limit resets.
    pub reset_requests_after_ms: Option<u64>,
    /// Until the token limit resets.
    pub reset_tokens_after_ms: Option<u64>,
    /// When the provider says to retry.
    pub retry_after_ms: Option<u64>,
    /// The provider's `x-should-retry`.
    pub should_retry: Option<bool>,
    /// The input/output split and other details.
    pub extra: Extra,
    /// The tracker's verdict: `available`, `tracking` or `exhausted`.
    pub state: &'static str,
    /// For how long the backend would be skipped.
    pub exhausted_for_ms: Option<u64>,
    /// Why.
    pub reason: Option<&'static str>,
    /// One line for people.
    pub explanation: String,
}

/// Explains one response.
pub fn explain(input: &Input) -> Explanation {
    let info = QuotaInfo::parse(
        input.status,
        &input.headers,
        input.body.as_deref(),
        input.now,
    );
    let tracker = QuotaTracker::new();
    let backend = BackendId::new("explain");
    let at = tokio::time::Instant::now();
    let status = tracker.observe(&backend, "", &info, at);
    let (exhausted_for, reason) = match status {
        QuotaStatus::Exhausted { until, reason } => (Some(until - at), Some(reason)),
        _ => (None, None),
    };
    let ms = |d: Option<Duration>| d.map(ceil_ms);
    let split = |l: &Limit| l.is_known().then(|| SplitLimit::from(l));
    let window = |l: &Limit| l.window.map(|w| w.as_secs());
    Explanation {
        status: input.status.as_u16(),
        remaining_requests: info.requests.remaining,
        remaining_tokens: info.tokens.remaining,
        limit_requests: info.requests.limit,
        limit_tokens: info.tokens.limit,
        reset_requests_after_ms: ms(info.requests.reset_after),
        reset_tokens_after_ms: ms(info.tokens.reset_after),
        retry_after_ms: ms(info.retry_after),
        should_retry: info.should_retry,
        extra: Extra {
            input_tokens: split(&info.input_tokens),
            output_tokens: split(&info.output_tokens),
            requests_window_s: window(&info.requests),
            tokens_window_s: window(&info.tokens),
            schemes: info.schemes.names().collect(),
            request_too_large: info.request_too_large,
            windows: info
                .windows
                .iter()
                .map(|w| WindowExplanation {
                    kind: w.kind,
                    name: w.name,
                    window_s: window(&w.limit),
                    limit: SplitLimit::from(&w.limit),
                })
                .collect(),
            tokens_query_cost: info.tokens_query_cost,
        },
        state: status.state().as_str(),
        exhausted_for_ms: ms(exhausted_for),
        reason: reason.map(|r| r.as_str()),
        explanation: sentence(&info, status, exhausted_for),
    }
}

fn sentence(info: &QuotaInfo, status: QuotaStatus, exhausted_for: Option<Duration>) -> String {
    let left = |what: &str, l: &Limit| {
        l.remaining.map(|r| match l.limit {
            Some(limit) => format!("{r} of {limit} {what} left"),
            None => format!("{r} {what} left"),
        })
    };
    let counts: Vec<String> = [
        left("requests", &info.requests),
        left("tokens", &info.tokens),
        left("input tokens", &info.input_tokens),
        left("output tokens", &info.output_tokens),
    ]
    .into_iter()
    .flatten()
    .collect();
    let schemes: Vec<&str> = info.schemes.names().collect();
    let from = if schemes.is_empty() {
        String::new()
    } else {
        format!(" (from {} headers)", schemes.join(", "))
    };
    match status {
        QuotaStatus::Exhausted { reason, .. } => {
            let for_ = DisplayDuration(exhausted_for.unwrap_or_default());
            let why = match (reason, info.is_rate_limited(), info.retry_after) {
                (ExhaustReason::NoAllowance, _, _) => {
                    "the key has no allowance at all, not an empty window: the long zero-allowance cooldown"
                        .to_owned()
                }
                (_, true, Some(after)) => {
                    format!("HTTP 429 with retry-after {}", DisplayDuration(after))
                }
                (_, true, None) => {
                    "HTTP 429 without retry information, default cooldown".to_owned()
                }
                (_, false, _) => counts.join(", "),
            };
            if why.is_empty() {
                format!("skipped for {for_}: {reason}{from}")
            } else {
                format!("skipped for {for_}: {reason} ({why}){from}")
            }
        }
        QuotaStatus::Tracking if counts.is_empty() => {
            format!("usable: limits known, nothing exhausted{from}")
        }
        QuotaStatus::Tracking => format!("usable: {}{from}", counts.join(", ")),
        QuotaStatus::Available if info.request_too_large => {
            "usable: this one request is larger than the whole limit; other requests are not affected".to_owned()
        }
        QuotaStatus::Available => "usable: no rate-limit information".to_owned(),
    }
}

/// Explains every response, in order.
pub fn explain_all(inputs: &[Input]) -> Vec<Explanation> {
    inputs.iter().map(explain).collect()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }
        let dur = |v: Option<u64>| {
            v.map_or_else(
                || "-".to_owned(),
                |ms| DisplayDuration(Duration::from_millis(ms)).to_string(),
            )
        };
        writeln!(f, "HTTP {}: {}", self.status, self.explanation)?;
        writeln!(
            f,
            "  requests: {} left of {}, reset in {}",
            opt(self.remaining_requests),
            opt(self.limit_requests),
            dur(self.reset_requests_after_ms)
        )?;
        writeln!(
            f,
            "  tokens:   {} left of {}, reset in {}",
            opt(self.remaining_tokens),
            opt(self.limit_tokens),
            dur(self.reset_tokens_after_ms)
        )?;
        for (name, split) in [
            ("input", &self.extra.input_tokens),
            ("output", &self.extra.output_tokens),
        ] {
            if let Some(s) = split {
                writeln!(
                    f,
                    "  {name} tokens: {} left of {}, reset in {}",
                    opt(s.remaining),
                    opt(s.limit),
                    dur(s.reset_after_ms)
                )?;
            }
        }
        writeln!(f, "  retry after: {}", dur(self.retry_after_ms))?;
        match (self.reason, self.exhausted_for_ms) {
            (Some(reason), Some(ms)) => writeln!(
                f,
                "  verdict: {} for {} ({reason})",
                self.state,
                dur(Some(ms))
            ),
            _ => writeln!(f, "  verdict: {}", self.state),
        }
    }
}

#[cfg(test)]
mod tests;
