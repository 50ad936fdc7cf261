//! Rate-limit information from response headers and error bodies, in every
//! scheme LLM providers use, read into one [`QuotaInfo`].
//!
//! # What each scheme gives
//!
//! | scheme | headers | reset format |
//! |---|---|---|
//! | OpenAI, Azure, Groq | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, also `-project-{requests,tokens}` and `-tokens_usage_based` | Go duration (`6m0s`, `1m26.4s`, `172.8ms`) or bare seconds |
//! | Anthropic | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | RFC 3339 time |
//! | Cerebras | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}-{minute,day}` | float seconds |
//! | Mistral | `x-ratelimit-{limit,remaining,reset}-{req,tokens}-{minute,hour,day,month}`, `x-ratelimit-tokens-query-cost` | seconds |
//! | Mistral (2024) | `ratelimitbysize-{limit,remaining,reset,query-cost}` and the same with `x-` | delta seconds |
//! | OpenRouter | `x-ratelimit-{limit,remaining,reset}` as headers, or inside a 429 body's `error.metadata.headers` | epoch milliseconds |
//! | Together | `x-ratelimit-{limit,remaining,reset}` (requests), `x-tokenlimit-{limit,remaining}` (tokens) | delta seconds |
//! | Cohere (trial keys) | `x-trial-endpoint-call-{limit,remaining}`, `x-endpoint-monthly-call-limit` (also on a 400) | |
//! | IETF | `ratelimit`, `ratelimit-policy`, `ratelimit-{limit,remaining,reset}` | delay seconds |
//! | all | `retry-after` (seconds or HTTP-date), `retry-after-ms`, `x-should-retry` | |
//! | Gemini | `RetryInfo.retryDelay` in a 429 body (`"34.4s"`) | protobuf duration |
//!
//! # Rules
//!
//! - Names are matched exactly (case-insensitive: `http` lower-cases them),
//!   never by prefix: `x-ratelimit-remaining-requests`, `…-requests-day`,
//!   `…-tokens-minute`, `…-tokens_usage_based` and `…-project-tokens` are
//!   different limits. Values are read as bytes, so a `µs` unit or a stray
//!   non-ASCII byte is no problem.
//! - Every limit is kept with its window (minute, hour, day, month; a month
//!   counts as [`MONTH`], 30 days). The *primary* figure of each kind
//!   ([`QuotaInfo::requests`], [`tokens`](QuotaInfo::tokens), …) is the
//!   provider's canonical unsuffixed header when one is present, else the
//!   limit with the shortest window; every other limit is in
//!   [`QuotaInfo::windows`]. Neither depends on the order headers arrive in.
//! - Counts are kept signed as sent. A negative *limit* (Azure's `-1`)
//!   means "not tracked": that limit's limit and remaining count are both
//!   unknown. A negative *remaining* count (Azure, when a window is
//!   oversubscribed) is real and kept; see [`Limit::scheduled_remaining`].
//! - A limit of `0` is kept: it means the key has no allowance at all
//!   ([`Limit::is_zero_allowance`]).
//! - Durations are rounded *up* to whole milliseconds, so nobody comes back
//!   early. A reset time already in the past, and a negative reset duration
//!   (`-1.5s`, `-5`), give a zero reset. A negative `retry-after` is not
//!   understood (RFC 9110 delay-seconds are digits only).
//! - Anything else that is not a number, overflows, or is otherwise not
//!   understood is ignored: the field stays `None`. Nothing is ever made up
//!   from a value that was not understood, and no value can make the parse
//!   panic or take more than linear time.
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
//! - A body is read only when it is at most [`MAX_BODY`] bytes, and at most
//!   [`MAX_BODY_HEADERS`] headers copied into it are read.

mod ietf;
pub(crate) mod value;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde::Serialize;

pub use ietf::MAX_MEMBERS as MAX_IETF_MEMBERS;

/// A minute, the window of most providers' limits.
pub const MINUTE: Duration = Duration::from_secs(60);
/// An hour.
pub const HOUR: Duration = Duration::from_secs(3600);
/// A day, the window of Groq's request limit and the `-day` headers.
pub const DAY: Duration = Duration::from_secs(86_400);
/// A month as the `-month` headers' window: 30 days. Nominal: a calendar
/// month may be longer, and the provider's reset, when sent, is what counts.
pub const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// The largest error body read for rate-limit information, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// The most headers read from a body's `error.metadata.headers`.
pub const MAX_BODY_HEADERS: usize = 64;

/// One limit as a provider reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// The limit per window. `Some(0)`: no allowance at all.
    pub limit: Option<u64>,
    /// What is left of it, signed as sent: negative when the provider
    /// reports the window oversubscribed (Azure).
    pub remaining: Option<i64>,
    /// Time until it is replenished (fully, for OpenAI and Anthropic; until
    /// the window rolls, for others). Zero when the reset is already past.
    pub reset_after: Option<Duration>,
    /// The window the limit applies to, when the scheme says (a minute for
    /// OpenAI, Anthropic and `-minute` names, a day for Groq requests and
    /// `-day` names, `w=` for IETF policies).
    pub window: Option<Duration>,
}

impl Limit {
    /// Whether anything at all is known.
    pub fn is_known(&self) -> bool {
        self.limit.is_some() || self.remaining.is_some() || self.reset_after.is_some()
    }

    /// Whether the remaining count is exactly zero. A negative count is
    /// not depletion: the provider still accepted the request it came with.
    pub fn is_depleted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Whether the limit is zero: the key has no allowance for this at all
    /// (a free tier without this model), which no waiting within a window
    /// changes.
    pub fn is_zero_allowance(&self) -> bool {
        self.limit == Some(0)
    }

    /// The remaining count for scheduling: a negative count is zero.
    pub fn scheduled_remaining(&self) -> Option<u64> {
        self.remaining.map(|r| u64::try_from(r).unwrap_or(0))
    }

    fn add_limit(&mut self, v: Option<u64>) {
        if let Some(v) = v {
            self.limit = Some(self.limit.map_or(v, |old| old.min(v)));
        }
    }

    fn add_remaining(&mut self, v: Option<i64>) {
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

    /// Folds `other` in with the duplicate rule.
    fn absorb(&mut self, other: &Limit) {
        self.add_limit(other.limit);
        self.add_remaining(other.remaining);
        self.add_reset(other.reset_after);
        self.add_window(other.window);
    }
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Requests.
    Requests,
    /// Tokens, input and output together.
    Tokens,
    /// Input tokens (Anthropic).
    InputTokens,
    /// Output tokens (Anthropic).
    OutputTokens,
}

impl LimitKind {
    /// Every kind, in a fixed order.
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Requests,
        LimitKind::Tokens,
        LimitKind::InputTokens,
        LimitKind::OutputTokens,
    ];
}

/// A limit beside the primary figure of its kind: another window, or
/// another scope (`project-tokens`, `tokens_usage_based`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WindowLimit {
    /// What it counts.
    pub kind: LimitKind,
    /// The limit's name: the header-name part that tells it apart
    /// (`requests-day`, `tokens-month`, `project-tokens`, …).
    pub name: &'static str,
    /// The figures.
    pub limit: Limit,
}

/// Which schemes a response used, for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schemes(u16);

impl Schemes {
    /// OpenAI-style `x-ratelimit-*-{requests,tokens}` (also Azure, Groq).
    pub const OPENAI: Self = Self(1);
    /// Anthropic `anthropic-ratelimit-*`.
    pub const ANTHROPIC: Self = Self(1 << 1);
    /// Cerebras `x-ratelimit-*-{requests,tokens}-{minute,day}`.
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
    /// Mistral: `-req-` and `-month` names, the query cost, or the 2024
    /// `ratelimitbysize-*` family.
    pub const MISTRAL: Self = Self(1 << 8);
    /// Together: `x-tokenlimit-*` beside `x-ratelimit-*`.
    pub const TOGETHER: Self = Self(1 << 9);
    /// Cohere trial-key headers.
    pub const COHERE: Self = Self(1 << 10);

    const NAMES: [(Self, &'static str); 11] = [
        (Self::OPENAI, "openai"),
        (Self::ANTHROPIC, "anthropic"),
        (Self::CEREBRAS, "cerebras"),
        (Self::OPENROUTER, "openrouter"),
        (Self::IETF, "ietf"),
        (Self::RETRY_AFTER, "retry-after"),
        (Self::GEMINI, "gemini"),
        (Self::GROQ, "groq"),
        (Self::MISTRAL, "mistral"),
        (Self::TOGETHER, "together"),
        (Self::COHERE, "cohere"),
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

    fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
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
    /// Requests per window: the primary request limit.
    pub requests: Limit,
    /// Tokens per window, input and output together: the primary token
    /// limit.
    pub tokens: Limit,
    /// Input tokens per window (Anthropic).
    pub input_tokens: Limit,
    /// Output tokens per window (Anthropic).
    pub output_tokens: Limit,
    /// Every other limit: other windows and scopes, in a fixed order. Each
    /// also gates when exhausted.
    pub windows: Vec<WindowLimit>,
    /// What this request cost in tokens, when the provider says (Mistral).
    pub tokens_query_cost: Option<u64>,
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

    /// Reads what a JSON error body alone says (the body-aware entry point
    /// beside [`from_headers`](Self::from_headers)): Gemini `RetryInfo`,
    /// OpenRouter's `error.metadata.headers`, OpenAI's "Request too large".
    pub fn from_body(body: &[u8], now: SystemTime) -> Self {
        let mut info = Self::default();
        info.add_body(body, now);
        info
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
                    || name.starts_with("x-tokenlimit-")
                    || name.starts_with("x-trial-endpoint-call-")
                    || name == "x-endpoint-monthly-call-limit"
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
            && self.windows.is_empty()
            && self.tokens_query_cost.is_none()
            && self.retry_after.is_none()
            && self.should_retry.is_none()
    }

    /// The token limits, combined first, then input and output.
    pub fn token_limits(&self) -> [&Limit; 3] {
        [&self.tokens, &self.input_tokens, &self.output_tokens]
    }

    /// The primary limit of `kind`.
    pub fn primary(&self, kind: LimitKind) -> &Limit {
        match kind {
            LimitKind::Requests => &self.requests,
            LimitKind::Tokens => &self.tokens,
            LimitKind::InputTokens => &self.input_tokens,
            LimitKind::OutputTokens => &self.output_tokens,
        }
    }

    fn primary_mut(&mut self, kind: LimitKind) -> &mut Limit {
        match kind {
            LimitKind::Requests => &mut self.requests,
            LimitKind::Tokens => &mut self.tokens,
            LimitKind::InputTokens => &mut self.input_tokens,
            LimitKind::OutputTokens => &mut self.output_tokens,
        }
    }

    /// Every known limit with its kind: the primary figures first, then the
    /// other windows.
    pub fn all_limits(&self) -> impl Iterator<Item = (LimitKind, &Limit)> {
        LimitKind::ALL
            .into_iter()
            .map(|kind| (kind, self.primary(kind)))
            .chain(self.windows.iter().map(|w| (w.kind, &w.limit)))
            .filter(|(_, limit)| limit.is_known())
    }

    /// Adds what a JSON error body says. Anything that is not JSON, not a
    /// known shape, or longer than [`MAX_BODY`], adds nothing.
    pub fn add_body(&mut self, body: &[u8], now: SystemTime) {
        if body.len() > MAX_BODY {
            return;
        }
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
                    .take(MAX_BODY_HEADERS)
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
            for detail in details.iter().take(MAX_BODY_HEADERS) {
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
        for kind in LimitKind::ALL {
            let theirs = *other.primary(kind);
            self.primary_mut(kind).absorb(&theirs);
        }
        for window in &other.windows {
            match self
                .windows
                .iter_mut()
                .find(|w| w.kind == window.kind && w.name == window.name)
            {
                Some(mine) => mine.limit.absorb(&window.limit),
                None => self.windows.push(*window),
            }
        }
        self.windows.sort_by_key(|w| slot_index(w.name));
        self.tokens_query_cost = max_some(self.tokens_query_cost, other.tokens_query_cost);
        self.retry_after = self.retry_after.max(other.retry_after);
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

fn max_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.max(b)
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

/// How a reset value is written.
#[derive(Clone, Copy)]
enum ResetFormat {
    /// A Go duration or bare seconds.
    Go,
    /// Seconds, possibly fractional.
    Seconds,
    /// RFC 3339 time.
    Rfc3339,
    /// Epoch milliseconds, epoch seconds, or delay seconds, by magnitude.
    EpochOrDelay,
}

impl ResetFormat {
    fn read(self, bytes: &[u8], now: SystemTime) -> Option<Duration> {
        match self {
            Self::Go => value::reset_with_sign(bytes, value::go_duration),
            Self::Seconds => value::reset_with_sign(bytes, value::seconds),
            Self::Rfc3339 => value::rfc3339(bytes).and_then(|at| value::until(at, now)),
            Self::EpochOrDelay => value::epoch_or_delay(bytes, now),
        }
    }
}

/// One limit the parser knows by name.
struct SlotSpec {
    kind: LimitKind,
    name: &'static str,
    window: Option<Duration>,
    /// A provider's unsuffixed headline figure for its kind.
    canonical: bool,
}

const fn slot(
    kind: LimitKind,
    name: &'static str,
    window: Option<Duration>,
    canonical: bool,
) -> SlotSpec {
    SlotSpec {
        kind,
        name,
        window,
        canonical,
    }
}

use LimitKind::{InputTokens as In, OutputTokens as Out, Requests as Req, Tokens as Tok};

const OPENAI_REQUESTS: usize = 0;
const OPENAI_TOKENS: usize = 1;
const ANTHROPIC_REQUESTS: usize = 2;
const ANTHROPIC_TOKENS: usize = 3;
const ANTHROPIC_INPUT: usize = 4;
const ANTHROPIC_OUTPUT: usize = 5;
const PLAIN_REQUESTS: usize = 6;
const TOGETHER_TOKENS: usize = 7;
const BY_SIZE_TOKENS: usize = 8;
const COHERE_TRIAL: usize = 9;
const IETF_REQUESTS: usize = 10;
const IETF_TOKENS: usize = 11;
const REQUESTS_MINUTE: usize = 12;
const TOKENS_MINUTE: usize = 16;
const PROJECT_REQUESTS: usize = 20;
const PROJECT_TOKENS: usize = 21;
const TOKENS_USAGE_BASED: usize = 22;
const COHERE_MONTHLY: usize = 23;
const SLOT_COUNT: usize = 24;

/// Every limit the parser knows, in the order [`QuotaInfo::windows`] lists
/// them. `REQUESTS_MINUTE + i` and `TOKENS_MINUTE + i` are the windows of
/// [`WINDOWS`] in order.
const SLOTS: [SlotSpec; SLOT_COUNT] = [
    slot(Req, "requests", Some(MINUTE), true),
    slot(Tok, "tokens", Some(MINUTE), true),
    slot(Req, "anthropic-requests", Some(MINUTE), true),
    slot(Tok, "anthropic-tokens", Some(MINUTE), true),
    slot(In, "anthropic-input-tokens", Some(MINUTE), true),
    slot(Out, "anthropic-output-tokens", Some(MINUTE), true),
    slot(Req, "x-ratelimit", None, true),
    slot(Tok, "x-tokenlimit", None, true),
    slot(Tok, "ratelimitbysize", Some(MINUTE), true),
    slot(Req, "trial-endpoint-call", Some(MINUTE), true),
    slot(Req, "ietf-requests", None, true),
    slot(Tok, "ietf-tokens", None, true),
    slot(Req, "requests-minute", Some(MINUTE), false),
    slot(Req, "requests-hour", Some(HOUR), false),
    slot(Req, "requests-day", Some(DAY), false),
    slot(Req, "requests-month", Some(MONTH), false),
    slot(Tok, "tokens-minute", Some(MINUTE), false),
    slot(Tok, "tokens-hour", Some(HOUR), false),
    slot(Tok, "tokens-day", Some(DAY), false),
    slot(Tok, "tokens-month", Some(MONTH), false),
    slot(Req, "project-requests", Some(MINUTE), false),
    slot(Tok, "project-tokens", Some(MINUTE), false),
    slot(Tok, "tokens_usage_based", Some(MINUTE), false),
    slot(Req, "endpoint-monthly-call", Some(MONTH), false),
];

/// The window suffixes of `x-ratelimit-*-{kind}-{window}`, in slot order.
const WINDOWS: [&str; 4] = ["minute", "hour", "day", "month"];

fn slot_index(name: &str) -> usize {
    SLOTS
        .iter()
        .position(|s| s.name == name)
        .unwrap_or(SLOT_COUNT)
}

/// What the parser has read for one slot.
#[derive(Clone, Copy, Default)]
struct SlotState {
    limit: Limit,
    /// A negative limit was sent: the limit is not tracked.
    untracked: bool,
}

struct Parser<'a> {
    now: SystemTime,
    slots: [SlotState; SLOT_COUNT],
    query_cost: Option<u64>,
    retry_after: Option<Duration>,
    retry_after_ms: Option<Duration>,
    should_retry: Option<bool>,
    body_retry: Option<Duration>,
    ietf: Vec<&'a [u8]>,
    ietf_policy: Vec<&'a [u8]>,
    schemes: Schemes,
    groq: bool,
    /// `-minute`/`-day` names that are Cerebras's unless Mistral's own
    /// names say otherwise.
    windowed: bool,
}

impl<'a> Parser<'a> {
    fn new(now: SystemTime) -> Self {
        Self {
            now,
            slots: [SlotState::default(); SLOT_COUNT],
            query_cost: None,
            retry_after: None,
            retry_after_ms: None,
            should_retry: None,
            body_retry: None,
            ietf: Vec::new(),
            ietf_policy: Vec::new(),
            schemes: Schemes::default(),
            groq: false,
            windowed: false,
        }
    }

    /// Sets `field` of slot `index` from each comma-separated member of
    /// `value`.
    fn numbers(&mut self, index: usize, field: Field, value: &[u8], reset: ResetFormat) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        for member in value::members(value) {
            match field {
                Field::Limit => match value::count(member) {
                    Some(n) => slot.limit.add_limit(Some(n)),
                    // Any negative limit (Azure's `-1`): not tracked.
                    None => slot.untracked |= value::signed_count(member).is_some(),
                },
                Field::Remaining => slot.limit.add_remaining(value::signed_count(member)),
                Field::Reset => slot.limit.add_reset(reset.read(member, now)),
            }
        }
    }

    fn query_cost(&mut self, value: &[u8]) {
        self.schemes.insert(Schemes::MISTRAL);
        for member in value::members(value) {
            self.query_cost = max_some(self.query_cost, value::count(member));
        }
    }

    fn header(&mut self, name: &str, value: &'a [u8]) {
        if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
            self.anthropic(rest, value);
        } else if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            self.x_ratelimit(rest, value);
        } else if let Some(rest) = name.strip_prefix("x-tokenlimit-") {
            let Some(field) = field_of(rest) else {
                return;
            };
            self.schemes.insert(Schemes::TOGETHER);
            self.numbers(TOGETHER_TOKENS, field, value, ResetFormat::Seconds);
        } else if let Some(rest) = name
            .strip_prefix("ratelimitbysize-")
            .or_else(|| name.strip_prefix("x-ratelimitbysize-"))
        {
            if rest == "query-cost" {
                self.query_cost(value);
                return;
            }
            let Some(field) = field_of(rest) else {
                return;
            };
            self.schemes.insert(Schemes::MISTRAL);
            self.numbers(BY_SIZE_TOKENS, field, value, ResetFormat::Seconds);
        } else if name.starts_with("x-groq-") {
            self.groq = true;
        } else {
            self.other(name, value);
        }
    }

    fn other(&mut self, name: &str, value: &'a [u8]) {
        match name {
            "x-trial-endpoint-call-limit" | "x-trial-endpoint-call-remaining" => {
                self.schemes.insert(Schemes::COHERE);
                let field = if name.ends_with("limit") {
                    Field::Limit
                } else {
                    Field::Remaining
                };
                self.numbers(COHERE_TRIAL, field, value, ResetFormat::Seconds);
            }
            "x-endpoint-monthly-call-limit" => {
                self.schemes.insert(Schemes::COHERE);
                self.numbers(COHERE_MONTHLY, Field::Limit, value, ResetFormat::Seconds);
            }
            "retry-after" => {
                self.schemes.insert(Schemes::RETRY_AFTER);
                // An HTTP-date has a comma of its own: no member split.
                let v = value::seconds(value)
                    .or_else(|| value::http_date(value).and_then(|at| value::until(at, self.now)));
                self.retry_after = self.retry_after.max(v);
            }
            "retry-after-ms" => {
                self.schemes.insert(Schemes::RETRY_AFTER);
                for member in value::members(value) {
                    self.retry_after_ms =
                        self.retry_after_ms.max(value::decimal(member, 1_000_000));
                }
            }
            "x-should-retry" => {
                self.schemes.insert(Schemes::RETRY_AFTER);
                if let Some(v) = value::boolean(value) {
                    self.should_retry = Some(self.should_retry.map_or(v, |o| o && v));
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
                if let Some(field) = name.strip_prefix("ratelimit-").and_then(field_of) {
                    self.numbers(IETF_REQUESTS, field, value, ResetFormat::Seconds);
                }
            }
            _ => {}
        }
    }

    fn anthropic(&mut self, rest: &str, value: &[u8]) {
        let Some((which, field)) = rest.rsplit_once('-') else {
            return;
        };
        let index = match which {
            "requests" => ANTHROPIC_REQUESTS,
            "tokens" => ANTHROPIC_TOKENS,
            "input-tokens" => ANTHROPIC_INPUT,
            "output-tokens" => ANTHROPIC_OUTPUT,
            _ => return,
        };
        let Some(field) = field_of(field) else {
            return;
        };
        self.schemes.insert(Schemes::ANTHROPIC);
        self.numbers(index, field, value, ResetFormat::Rfc3339);
    }

    fn x_ratelimit(&mut self, rest: &str, value: &[u8]) {
        if rest == "tokens-query-cost" {
            self.query_cost(value);
            return;
        }
        let (field, what) = match rest.split_once('-') {
            Some((field, what)) => (field_of(field), what),
            None => {
                // OpenRouter and Together: no suffix, requests; the reset
                // is epoch milliseconds (OpenRouter) or delta seconds
                // (Together), told apart by magnitude.
                if let Some(field) = field_of(rest) {
                    self.schemes.insert(Schemes::OPENROUTER);
                    self.numbers(PLAIN_REQUESTS, field, value, ResetFormat::EpochOrDelay);
                }
                return;
            }
        };
        let Some(field) = field else {
            return;
        };
        let (index, scheme) = match what {
            "requests" => (OPENAI_REQUESTS, Schemes::OPENAI),
            "tokens" => (OPENAI_TOKENS, Schemes::OPENAI),
            "project-requests" => (PROJECT_REQUESTS, Schemes::OPENAI),
            "project-tokens" => (PROJECT_TOKENS, Schemes::OPENAI),
            "tokens_usage_based" => (TOKENS_USAGE_BASED, Schemes::OPENAI),
            _ => {
                let Some((kind, window)) = what.rsplit_once('-') else {
                    return;
                };
                let Some(w) = WINDOWS.iter().position(|n| *n == window) else {
                    return;
                };
                let (base, mistral) = match kind {
                    "requests" => (REQUESTS_MINUTE, false),
                    "req" => (REQUESTS_MINUTE, true),
                    "tokens" => (TOKENS_MINUTE, false),
                    _ => return,
                };
                if mistral || window == "month" {
                    self.schemes.insert(Schemes::MISTRAL);
                } else {
                    self.windowed = true;
                }
                (base + w, Schemes::default())
            }
        };
        self.schemes.insert(scheme);
        self.numbers(index, field, value, ResetFormat::Go);
    }

    fn finish(mut self) -> QuotaInfo {
        if !self.ietf.is_empty() {
            let (requests, tokens) = ietf::parse(self.ietf.iter().copied(), &self.ietf_policy);
            for (index, item) in [(IETF_REQUESTS, requests), (IETF_TOKENS, tokens)] {
                if let (Some(item), Some(slot)) = (item, self.slots.get_mut(index)) {
                    slot.limit.add_limit(item.limit);
                    slot.limit
                        .add_remaining(item.remaining.and_then(|r| i64::try_from(r).ok()));
                    slot.limit.add_reset(item.reset);
                    slot.limit.add_window(item.window);
                }
            }
        }
        if self.windowed && !self.schemes.contains(Schemes::MISTRAL) {
            self.schemes.insert(Schemes::CEREBRAS);
        }
        if self.schemes.contains(Schemes::TOGETHER) {
            // Together's unsuffixed names are its own, not OpenRouter's.
            self.schemes.remove(Schemes::OPENROUTER);
        }
        let mut limits = [Limit::default(); SLOT_COUNT];
        for ((limit, state), spec) in limits.iter_mut().zip(&self.slots).zip(&SLOTS) {
            *limit = state.limit;
            if state.untracked {
                limit.limit = None;
                limit.remaining = None;
            }
            limit.add_window(spec.window);
        }
        if self.groq {
            self.schemes.insert(Schemes::GROQ);
            if let Some(requests) = limits.get_mut(OPENAI_REQUESTS) {
                if self.schemes.contains(Schemes::OPENAI) && requests.is_known() {
                    requests.window = Some(DAY);
                }
            }
        }

        let mut info = QuotaInfo::default();
        for kind in LimitKind::ALL {
            let of_kind = || {
                SLOTS
                    .iter()
                    .zip(&limits)
                    .enumerate()
                    .filter(move |(_, (spec, limit))| spec.kind == kind && limit.is_known())
            };
            let has_canonical = of_kind().any(|(_, (spec, _))| spec.canonical);
            // Without a canonical figure, the shortest window is primary
            // (ties: the first in slot order; no window counts as longest).
            let shortest = if has_canonical {
                None
            } else {
                of_kind()
                    .min_by_key(|(i, (_, limit))| (limit.window.is_none(), limit.window, *i))
                    .map(|(i, _)| i)
            };
            let primary = info.primary_mut(kind);
            for (i, (spec, limit)) in of_kind() {
                if spec.canonical || shortest == Some(i) {
                    primary.absorb(limit);
                }
            }
            for (i, (spec, limit)) in of_kind() {
                if !spec.canonical && shortest != Some(i) {
                    info.windows.push(WindowLimit {
                        kind,
                        name: spec.name,
                        limit: *limit,
                    });
                }
            }
        }
        info.windows.sort_by_key(|w| slot_index(w.name));
        info.tokens_query_cost = self.query_cost;
        info.should_retry = self.should_retry;
        info.retry_after = match (self.retry_after_ms, self.retry_after, self.body_retry) {
            (Some(ms), _, _) => Some(ms),
            (None, a, b) => a.max(b),
        };
        info.schemes = self.schemes;
        info
    }
}

fn field_of(name: &str) -> Option<Field> {
    match name {
        "limit" => Some(Field::Limit),
        "remaining" => Some(Field::Remaining),
        "reset" => Some(Field::Reset),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
