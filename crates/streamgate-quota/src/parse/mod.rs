//! Rate-limit information from response headers and error bodies, in every
//! scheme LLM providers use, read into one [`QuotaInfo`].
//!
//! # What each scheme gives
//!
//! | scheme | headers | reset format |
//! |---|---|---|
//! | OpenAI, Azure, Groq | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` | Go duration (`6m0s`, `1m26.4s`, `172.8ms`) or bare seconds |
//! | Anthropic | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | RFC 3339 time |
//! | Cerebras | `x-ratelimit-{limit,remaining,reset}-{requests-day,tokens-minute}` (and `-minute`/`-day` of each) | float seconds |
//! | OpenRouter | `x-ratelimit-{limit,remaining,reset}` (also copied into the 429 body's `error.metadata.headers`) | epoch milliseconds |
//! | IETF | `ratelimit`, `ratelimit-policy`, `ratelimit-{limit,remaining,reset}` | delay seconds |
//! | all | `retry-after` (seconds or HTTP-date), `retry-after-ms`, `x-should-retry` | |
//! | Gemini | `RetryInfo.retryDelay` in a 429 body (`"34.4s"`) | protobuf duration |
//!
//! # Rules
//!
//! - Names are case-insensitive (`http` lower-cases them); values are read
//!   as bytes, so a `µs` unit or a stray non-ASCII byte is no problem.
//! - Durations are rounded *up* to whole milliseconds, so nobody comes back
//!   early. A reset time already in the past gives a zero reset.
//! - A value that is negative (Azure's `-1`), not a number, overflows, or is
//!   otherwise not understood is ignored: the field stays `None`. Nothing is
//!   ever made up from a value that was not understood.
//! - A header sent more than once (or one value with comma-separated
//!   members) keeps the *smallest* limit and remaining count and the
//!   *largest* reset and retry-after: the stricter reading. Garbage members
//!   are skipped; the others still count.
//! - `retry-after-ms` wins over `retry-after` when both are sent (it is the
//!   same instruction with more precision); otherwise the larger of
//!   `retry-after` and a body's `retryDelay` is kept.
//! - Groq reuses OpenAI's names but its request limit is per *day*: when a
//!   `x-groq-*` header is present, [`QuotaInfo::requests`] gets a one-day
//!   [`window`](Limit::window).

mod ietf;
pub(crate) mod value;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde::Serialize;

/// A minute, the window of most providers' limits.
pub const MINUTE: Duration = Duration::from_secs(60);
/// A day, the window of Groq's request limit and Cerebras's `-day` headers.
pub const DAY: Duration = Duration::from_secs(86_400);

/// One limit as a provider reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// The limit per window.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// Time until it is replenished (fully, for OpenAI and Anthropic; until
    /// the window rolls, for others). Zero when the reset is already past.
    pub reset_after: Option<Duration>,
    /// The window the limit applies to, when the scheme says (a minute for
    /// OpenAI, Anthropic and Cerebras `-minute`, a day for Groq requests and
    /// Cerebras `-day`, `w=` for IETF policies).
    pub window: Option<Duration>,
}

impl Limit {
    /// Whether anything at all is known.
    pub fn is_known(&self) -> bool {
        self.limit.is_some() || self.remaining.is_some() || self.reset_after.is_some()
    }

    /// Whether the remaining count is zero.
    pub fn is_depleted(&self) -> bool {
        self.remaining == Some(0)
    }

    fn add_limit(&mut self, v: Option<u64>) {
        if let Some(v) = v {
            self.limit = Some(self.limit.map_or(v, |old| old.min(v)));
        }
    }

    fn add_remaining(&mut self, v: Option<u64>) {
        if let Some(v) = v {
            self.remaining = Some(self.remaining.map_or(v, |old| old.min(v)));
        }
    }

    fn add_reset(&mut self, v: Option<Duration>) {
        if let Some(v) = v {
            self.reset_after = Some(self.reset_after.map_or(v, |old| old.max(v)));
        }
    }

    fn add_window(&mut self, v: Option<Duration>) {
        if self.window.is_none() {
            self.window = v;
        }
    }
}

/// Which schemes a response used, for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schemes(u16);

impl Schemes {
    /// OpenAI-style `x-ratelimit-*-{requests,tokens}` (also Azure, Groq).
    pub const OPENAI: Self = Self(1);
    /// Anthropic `anthropic-ratelimit-*`.
    pub const ANTHROPIC: Self = Self(1 << 1);
    /// Cerebras `x-ratelimit-*-{minute,day}`.
    pub const CEREBRAS: Self = Self(1 << 2);
    /// OpenRouter `x-ratelimit-{limit,remaining,reset}`.
    pub const OPENROUTER: Self = Self(1 << 3);
    /// IETF `RateLimit` / `RateLimit-Policy`.
    pub const IETF: Self = Self(1 << 4);
    /// `retry-after`, `retry-after-ms`, `x-should-retry`.
    pub const RETRY_AFTER: Self = Self(1 << 5);
    /// Gemini `RetryInfo` in the body.
    pub const GEMINI: Self = Self(1 << 6);
    /// Groq (seen through its `x-groq-*` headers).
    pub const GROQ: Self = Self(1 << 7);

    const NAMES: [(Self, &'static str); 8] = [
        (Self::OPENAI, "openai"),
        (Self::ANTHROPIC, "anthropic"),
        (Self::CEREBRAS, "cerebras"),
        (Self::OPENROUTER, "openrouter"),
        (Self::IETF, "ietf"),
        (Self::RETRY_AFTER, "retry-after"),
        (Self::GEMINI, "gemini"),
        (Self::GROQ, "groq"),
    ];

    /// Whether every scheme of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether none was seen.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the schemes seen, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(s, _)| self.contains(*s))
            .map(|(_, name)| name)
    }

    fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

impl Serialize for Schemes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

/// Everything a response said about quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QuotaInfo {
    /// The response status, when parsed from a response.
    #[serde(serialize_with = "status_code")]
    pub status: Option<StatusCode>,
    /// Requests per window.
    pub requests: Limit,
    /// Tokens per window, input and output together.
    pub tokens: Limit,
    /// Input tokens per window (Anthropic).
    pub input_tokens: Limit,
    /// Output tokens per window (Anthropic).
    pub output_tokens: Limit,
    /// When the provider says to try again.
    pub retry_after: Option<Duration>,
    /// The provider's own `x-should-retry` hint.
    pub should_retry: Option<bool>,
    /// The body said this one request is larger than the whole limit
    /// (OpenAI's "Request too large"): retrying it cannot help, and it says
    /// nothing about other requests.
    pub request_too_large: bool,
    /// Which schemes were seen.
    pub schemes: Schemes,
}

fn status_code<S: serde::Serializer>(
    status: &Option<StatusCode>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match status {
        Some(s) => serializer.serialize_some(&s.as_u16()),
        None => serializer.serialize_none(),
    }
}

impl QuotaInfo {
    /// Reads every rate-limit scheme from `headers`, and from `body` when it
    /// is a JSON error body (Gemini `RetryInfo`, OpenRouter's copied
    /// headers). `now` turns absolute reset times into durations.
    pub fn parse(
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        now: SystemTime,
    ) -> Self {
        let mut info = Self::from_headers(headers, now);
        info.status = Some(status);
        if let Some(body) = body {
            info.add_body(body, now);
        }
        info
    }

    /// Reads every rate-limit scheme from `headers` alone.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Self {
        let mut parser = Parser::new(now);
        for (name, value) in headers {
            parser.header(name.as_str(), value.as_bytes());
        }
        parser.finish()
    }

    /// Whether a response with this status and these headers may say
    /// anything about quota: a 429, or a header name any scheme reads. A
    /// cheap, conservative pre-check that lets the common response skip
    /// the parse.
    pub(crate) fn may_have_quota(status: StatusCode, headers: &HeaderMap) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS
            || headers.keys().any(|name| {
                let name = name.as_str();
                name.contains("ratelimit")
                    || name.starts_with("retry-after")
                    || name == "x-should-retry"
                    || name.starts_with("x-groq-")
            })
    }

    /// Whether the response was an HTTP 429.
    pub fn is_rate_limited(&self) -> bool {
        self.status == Some(StatusCode::TOO_MANY_REQUESTS)
    }

    /// Whether nothing about quota was found.
    pub fn is_empty(&self) -> bool {
        !self.requests.is_known()
            && !self.tokens.is_known()
            && !self.input_tokens.is_known()
            && !self.output_tokens.is_known()
            && self.retry_after.is_none()
            && self.should_retry.is_none()
    }

    /// The token limits, combined first, then input and output.
    pub fn token_limits(&self) -> [&Limit; 3] {
        [&self.tokens, &self.input_tokens, &self.output_tokens]
    }

    /// Adds what a JSON error body says. Anything that is not JSON, or not a
    /// known shape, adds nothing.
    pub fn add_body(&mut self, body: &[u8], now: SystemTime) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        // Gemini wraps streamed errors in an array.
        let json = match &json {
            serde_json::Value::Array(items) => match items.first() {
                Some(first) => first,
                None => return,
            },
            other => other,
        };
        let Some(error) = json.get("error") else {
            return;
        };
        // OpenRouter copies its rate-limit headers into the body.
        let copied: Vec<(String, String)> = error
            .get("metadata")
            .and_then(|m| m.get("headers"))
            .and_then(|h| h.as_object())
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(name, value)| {
                        let value = match value {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Number(n) => n.to_string(),
                            _ => return None,
                        };
                        Some((name.to_ascii_lowercase(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut parser = Parser::new(now);
        for (name, value) in &copied {
            parser.header(name, value.as_bytes());
        }
        if let Some(details) = error.get("details").and_then(|d| d.as_array()) {
            for detail in details {
                let is_retry_info = detail
                    .get("@type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"));
                if is_retry_info {
                    if let Some(delay) = detail.get("retryDelay").and_then(proto_duration) {
                        parser.schemes.insert(Schemes::GEMINI);
                        parser.body_retry = Some(parser.body_retry.map_or(delay, |d| d.max(delay)));
                    }
                }
            }
        }
        if error
            .get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.starts_with("Request too large"))
        {
            self.request_too_large = true;
        }
        let extra = parser.finish();
        self.merge(&extra);
    }

    /// Folds `other` into `self` with the duplicate rule: smallest limit and
    /// remaining, largest reset and retry-after.
    pub fn merge(&mut self, other: &QuotaInfo) {
        let pairs = [
            (&mut self.requests, &other.requests),
            (&mut self.tokens, &other.tokens),
            (&mut self.input_tokens, &other.input_tokens),
            (&mut self.output_tokens, &other.output_tokens),
        ];
        for (mine, theirs) in pairs {
            mine.add_limit(theirs.limit);
            mine.add_remaining(theirs.remaining);
            mine.add_reset(theirs.reset_after);
            mine.add_window(theirs.window);
        }
        if let Some(r) = other.retry_after {
            self.retry_after = Some(self.retry_after.map_or(r, |old| old.max(r)));
        }
        self.should_retry = match (self.should_retry, other.should_retry) {
            // Any "do not retry" wins.
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        };
        self.request_too_large |= other.request_too_large;
        self.schemes.insert(other.schemes);
        if self.status.is_none() {
            self.status = other.status;
        }
    }
}

/// A protobuf `Duration` as JSON: `"34.4s"`, or `{"seconds": 34, "nanos": …}`.
fn proto_duration(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::String(s) => value::seconds(s.as_bytes().strip_suffix(b"s")?),
        serde_json::Value::Object(o) => {
            let secs = o.get("seconds").map_or(Some(0), json_u64)?;
            let nanos = o.get("nanos").map_or(Some(0), json_u64)?;
            value::ceil_ms(u128::from(secs) * 1_000_000_000 + u128::from(nanos))
        }
        _ => None,
    }
}

fn json_u64(v: &serde_json::Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| value::count(s.as_bytes())))
}

/// Which field of a limit a header sets.
#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

/// Which limit.
#[derive(Clone, Copy)]
enum Which {
    Requests,
    Tokens,
    Input,
    Output,
}

struct Parser<'a> {
    now: SystemTime,
    info: QuotaInfo,
    retry_after: Option<Duration>,
    retry_after_ms: Option<Duration>,
    body_retry: Option<Duration>,
    ietf: Vec<&'a [u8]>,
    ietf_policy: Vec<&'a [u8]>,
    schemes: Schemes,
    groq: bool,
}

impl<'a> Parser<'a> {
    fn new(now: SystemTime) -> Self {
        Self {
            now,
            info: QuotaInfo::default(),
            retry_after: None,
            retry_after_ms: None,
            body_retry: None,
            ietf: Vec::new(),
            ietf_policy: Vec::new(),
            schemes: Schemes::default(),
            groq: false,
        }
    }

    fn limit(&mut self, which: Which) -> &mut Limit {
        match which {
            Which::Requests => &mut self.info.requests,
            Which::Tokens => &mut self.info.tokens,
            Which::Input => &mut self.info.input_tokens,
            Which::Output => &mut self.info.output_tokens,
        }
    }

    /// Sets `field` of `which` from each comma-separated member of `value`.
    fn numbers(
        &mut self,
        which: Which,
        field: Field,
        value: &[u8],
        window: Option<Duration>,
        reset: fn(&[u8], SystemTime) -> Option<Duration>,
    ) {
        let now = self.now;
        let limit = self.limit(which);
        let mut any = false;
        for member in value::members(value) {
            match field {
                Field::Limit => limit.add_limit(value::count(member)),
                Field::Remaining => limit.add_remaining(value::count(member)),
                Field::Reset => limit.add_reset(reset(member, now)),
            }
            any = true;
        }
        if any {
            limit.add_window(window);
        }
    }

    fn header(&mut self, name: &str, value: &'a [u8]) {
        if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
            self.anthropic(rest, value);
        } else if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            self.x_ratelimit(rest, value);
        } else if name.starts_with("x-groq-") {
            self.groq = true;
        } else {
            match name {
                "retry-after" => {
                    self.schemes.insert(Schemes::RETRY_AFTER);
                    // An HTTP-date has a comma of its own: no member split.
                    let v = value::seconds(value).or_else(|| {
                        value::http_date(value).and_then(|at| value::until(at, self.now))
                    });
                    if let Some(v) = v {
                        self.retry_after = Some(self.retry_after.map_or(v, |old| old.max(v)));
                    }
                }
                "retry-after-ms" => {
                    self.schemes.insert(Schemes::RETRY_AFTER);
                    for member in value::members(value) {
                        if let Some(v) = value::decimal(member, 1_000_000) {
                            self.retry_after_ms =
                                Some(self.retry_after_ms.map_or(v, |old| old.max(v)));
                        }
                    }
                }
                "x-should-retry" => {
                    self.schemes.insert(Schemes::RETRY_AFTER);
                    if let Some(v) = value::boolean(value) {
                        self.info.should_retry = Some(self.info.should_retry.map_or(v, |o| o && v));
                    }
                }
                "ratelimit" => {
                    self.schemes.insert(Schemes::IETF);
                    self.ietf.push(value);
                }
                "ratelimit-policy" => {
                    self.schemes.insert(Schemes::IETF);
                    self.ietf_policy.push(value);
                }
                "ratelimit-limit" | "ratelimit-remaining" | "ratelimit-reset" => {
                    self.schemes.insert(Schemes::IETF);
                    let field = match name {
                        "ratelimit-limit" => Field::Limit,
                        "ratelimit-remaining" => Field::Remaining,
                        _ => Field::Reset,
                    };
                    self.numbers(Which::Requests, field, value, None, |v, _| {
                        value::seconds(v)
                    });
                }
                _ => {}
            }
        }
    }

    fn anthropic(&mut self, rest: &str, value: &[u8]) {
        let Some((which, field)) = rest.rsplit_once('-') else {
            return;
        };
        let which = match which {
            "requests" => Which::Requests,
            "tokens" => Which::Tokens,
            "input-tokens" => Which::Input,
            "output-tokens" => Which::Output,
            _ => return,
        };
        let field = match field {
            "limit" => Field::Limit,
            "remaining" => Field::Remaining,
            "reset" => Field::Reset,
            _ => return,
        };
        self.schemes.insert(Schemes::ANTHROPIC);
        self.numbers(which, field, value, Some(MINUTE), |v, now| {
            value::rfc3339(v).and_then(|at| value::until(at, now))
        });
    }

    fn x_ratelimit(&mut self, rest: &str, value: &[u8]) {
        let (field, what) = match rest.split_once('-') {
            Some(("limit", what)) => (Field::Limit, what),
            Some(("remaining", what)) => (Field::Remaining, what),
            Some(("reset", what)) => (Field::Reset, what),
            None => {
                // OpenRouter: no suffix, reset in epoch milliseconds.
                let field = match rest {
                    "limit" => Field::Limit,
                    "remaining" => Field::Remaining,
                    "reset" => Field::Reset,
                    _ => return,
                };
                self.schemes.insert(Schemes::OPENROUTER);
                self.numbers(Which::Requests, field, value, None, value::epoch_or_delay);
                return;
            }
            Some(_) => return,
        };
        match what {
            "requests" | "tokens" => {
                self.schemes.insert(Schemes::OPENAI);
                let which = if what == "requests" {
                    Which::Requests
                } else {
                    Which::Tokens
                };
                // Groq's request window is fixed up in `finish`, once all
                // headers have been seen.
                self.numbers(which, field, value, Some(MINUTE), |v, _| {
                    value::go_duration(v)
                });
            }
            "requests-minute" | "requests-day" | "tokens-minute" | "tokens-day" => {
                self.schemes.insert(Schemes::CEREBRAS);
                let (which, window) = match what {
                    "requests-minute" => (Which::Requests, MINUTE),
                    "requests-day" => (Which::Requests, DAY),
                    "tokens-minute" => (Which::Tokens, MINUTE),
                    _ => (Which::Tokens, DAY),
                };
                self.numbers(which, field, value, Some(window), |v, _| value::seconds(v));
            }
            _ => {}
        }
    }

    fn finish(mut self) -> QuotaInfo {
        if !self.ietf.is_empty() {
            let (requests, tokens) = ietf::parse(self.ietf.iter().copied(), &self.ietf_policy);
            for (which, item) in [(Which::Requests, requests), (Which::Tokens, tokens)] {
                if let Some(item) = item {
                    let limit = self.limit(which);
                    limit.add_limit(item.limit);
                    limit.add_remaining(item.remaining);
                    limit.add_reset(item.reset);
                    limit.add_window(item.window);
                }
            }
        }
        if self.groq {
            self.schemes.insert(Schemes::GROQ);
            if self.schemes.contains(Schemes::OPENAI) && self.info.requests.is_known() {
                self.info.requests.window = Some(DAY);
            }
        }
        self.info.retry_after = match (self.retry_after_ms, self.retry_after, self.body_retry) {
            (Some(ms), _, _) => Some(ms),
            (None, a, b) => a.max(b),
        };
        self.info.schemes.insert(self.schemes);
        self.info
    }
}

#[cfg(test)]
mod tests;
