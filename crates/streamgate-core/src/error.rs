//! The error vocabulary every layer shares.
//!
//! Layers return [`BoxError`] (tower's convention); callers and other layers
//! downcast, or ask [`classify`](crate::classify) for an [`ErrorClass`].

use std::{error::Error, fmt, time::Duration};

use http::{HeaderMap, StatusCode};

use crate::{redact::redact_owned, BackendId, ErrorClass};

/// A type-erased error, as tower uses them.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// The largest body excerpt a [`ProviderError`] keeps, in bytes.
pub const BODY_EXCERPT_LIMIT: usize = 2048;

/// A provider said no: an HTTP error status, an error event inside an HTTP 200
/// stream, or a stream that ended without the provider's terminal marker
/// (class [`ErrorClass::Truncated`]).
///
/// Made by provider adapters; layers read it through its accessors and
/// [`classify`](crate::classify).
pub struct ProviderError {
    class: ErrorClass,
    in_band: bool,
    message: String,
    /// Rarely set, so kept behind one box: a `Result<Chunk, ProviderError>`
    /// on the hot path stays small.
    details: Option<Box<Details>>,
}

#[derive(Default)]
struct Details {
    status: Option<StatusCode>,
    headers: HeaderMap,
    code: Option<String>,
    retry_after: Option<Duration>,
    body_excerpt: Option<String>,
    source: Option<BoxError>,
}

impl ProviderError {
    /// An error of `class` with a human-readable message (credentials in it
    /// are [redacted](crate::redact)).
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            in_band: false,
            message: redact_owned(message.into(), &[]),
            details: None,
        }
    }

    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    /// The stream ended without the provider's terminal marker.
    pub fn truncated(detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::Truncated, detail)
    }

    /// Sets the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.details().status = Some(status);
        self
    }

    /// Keeps the response headers (rate-limit headers live there).
    #[must_use]
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.details().headers = headers;
        self
    }

    /// The provider's own error type or code, e.g. `insufficient_quota` or
    /// `overloaded_error` (credentials in it are [redacted](crate::redact)).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.details().code = Some(redact_owned(code.into(), &[]));
        self
    }

    /// When the provider says to try again.
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.details().retry_after = Some(after);
        self
    }

    /// Keeps at most [`BODY_EXCERPT_LIMIT`] bytes of the body (cut on a
    /// character boundary, invalid UTF-8 replaced), with credentials
    /// [redacted](crate::redact) before the cut so no part of one survives.
    #[must_use]
    pub fn with_body_excerpt(self, body: &[u8]) -> Self {
        self.with_redacted_body_excerpt(body, &[])
    }

    /// [`with_body_excerpt`](Self::with_body_excerpt), also removing the
    /// `known` secrets (the client's API key) wherever they appear.
    #[must_use]
    pub fn with_redacted_body_excerpt(mut self, body: &[u8], known: &[&str]) -> Self {
        let text = redact_owned(String::from_utf8_lossy(body).into_owned(), known);
        let mut cut = text.len().min(BODY_EXCERPT_LIMIT);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut excerpt = text[..cut].to_owned();
        if cut < text.len() {
            excerpt.push('…');
        }
        self.details().body_excerpt = Some(excerpt);
        self
    }

    /// Removes the `known` secrets (the client's API key) from the message,
    /// the code and the body excerpt.
    #[must_use]
    pub fn redact_known(mut self, known: &[&str]) -> Self {
        self.message = redact_owned(std::mem::take(&mut self.message), known);
        if let Some(details) = self.details.as_deref_mut() {
            details.code = details.code.take().map(|c| redact_owned(c, known));
            details.body_excerpt = details.body_excerpt.take().map(|b| redact_owned(b, known));
        }
        self
    }

    /// Marks the error as reported inside a stream (e.g. an SSE `error` event
    /// in an HTTP 200) rather than as an HTTP status.
    #[must_use]
    pub fn in_band(mut self) -> Self {
        self.in_band = true;
        self
    }

    /// The underlying cause (a transport error, a JSON error).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.details().source = Some(source.into());
        self
    }

    /// How layers should treat this error.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The provider's message, or ours for truncation and transport errors.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, when the error came as one.
    pub fn status(&self) -> Option<StatusCode> {
        self.details.as_ref().and_then(|d| d.status)
    }

    /// The response headers (empty for in-band errors without headers).
    pub fn headers(&self) -> &HeaderMap {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        match &self.details {
            Some(details) => &details.headers,
            None => EMPTY.get_or_init(HeaderMap::new),
        }
    }

    /// The provider's error type or code.
    pub fn code(&self) -> Option<&str> {
        self.details.as_ref().and_then(|d| d.code.as_deref())
    }

    /// When the provider says to try again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.details.as_ref().and_then(|d| d.retry_after)
    }

    /// The first bytes of the error body.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(|d| d.body_excerpt.as_deref())
    }

    /// Whether the error arrived inside the stream.
    pub fn is_in_band(&self) -> bool {
        self.in_band
    }
}

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderError")
            .field("class", &self.class)
            .field("status", &self.status())
            .field("code", &self.code())
            .field("message", &self.message)
            .field("retry_after", &self.retry_after())
            .field("in_band", &self.in_band)
            .field("body_excerpt", &self.body_excerpt())
            .field(
                "source",
                &self.details.as_ref().and_then(|d| d.source.as_ref()),
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(status) => write!(f, "provider error {}", status.as_u16())?,
            None if self.in_band => f.write_str("provider error in stream")?,
            None => f.write_str("provider error")?,
        }
        if let Some(code) = self.code() {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Error for ProviderError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.details
            .as_ref()
            .and_then(|d| d.source.as_deref())
            .map(|e| e as &(dyn Error + 'static))
    }
}

/// Which deadline of a stream expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// No content arrived within the first-content deadline (from `call()`).
    FirstContent,
    /// The gap between two content chunks was too long.
    Idle,
    /// The whole stream took too long.
    Total,
}

impl TimeoutKind {
    /// A short snake_case name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstContent => "first_content",
            Self::Idle => "idle",
            Self::Total => "total",
        }
    }
}

/// A stream deadline expired; the request was cancelled by dropping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamTimeout {
    /// Which deadline.
    pub kind: TimeoutKind,
    /// The configured deadline that expired.
    pub after: Duration,
}

impl fmt::Display for StreamTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TimeoutKind::FirstContent => "no content within",
            TimeoutKind::Idle => "no content for",
            TimeoutKind::Total => "stream not finished within",
        };
        write!(f, "{what} {}", DisplayDuration(self.after))
    }
}

impl Error for StreamTimeout {}

/// Why a gate refused a request without calling the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// The circuit breaker is open (or half-open with every probe taken).
    CircuitOpen,
    /// The provider's quota is known to be exhausted.
    QuotaExhausted,
    /// Admitting the request would exceed the configured TPM budget.
    TpmBudget,
}

impl RejectReason {
    /// A short snake_case name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::QuotaExhausted => "quota_exhausted",
            Self::TpmBudget => "tpm_budget",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CircuitOpen => "circuit open",
            Self::QuotaExhausted => "quota exhausted",
            Self::TpmBudget => "over TPM budget",
        })
    }
}

/// A gate said no without calling the backend. Cheap, and never counted as a
/// backend failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The backend whose gate refused.
    pub backend: BackendId,
    /// Which gate and why.
    pub reason: RejectReason,
    /// When the gate expects to admit again, if known.
    pub retry_after: Option<Duration>,
}

impl Rejected {
    /// A rejection without a known retry time.
    pub fn new(backend: BackendId, reason: RejectReason) -> Self {
        Self {
            backend,
            reason,
            retry_after: None,
        }
    }

    /// Sets when the gate expects to admit again.
    #[must_use]
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend, self.reason)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry in {})", DisplayDuration(after))?;
        }
        Ok(())
    }
}

impl Error for Rejected {}

/// The caller dropped the request, or a layer gave it up on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request cancelled")
    }
}

impl Error for Cancelled {}

/// One try of one backend, as [`FailoverError`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The backend tried.
    pub backend: BackendId,
    /// How its answer was classified.
    pub class: ErrorClass,
    /// Set when a gate refused without calling the backend.
    pub rejected: Option<RejectReason>,
    /// The error's message.
    pub message: String,
    /// When the backend may be tried again, if known.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rejected {
            Some(reason) => write!(f, "{} {reason}", self.backend)?,
            None => write!(f, "{} {}: {}", self.backend, self.class, self.message)?,
        }
        if let Some(after) = self.retry_after {
            write!(f, " (retry in {})", DisplayDuration(after))?;
        }
        Ok(())
    }
}

/// Every backend was tried, or refused, and none produced a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverError {
    /// Every attempt in order, with its backend and class.
    pub attempts: Vec<Attempt>,
    /// The earliest time any backend expects to admit again.
    pub retry_after: Option<Duration>,
}

impl FailoverError {
    /// Whether no backend was called at all (every one was rejected by a
    /// gate): "none available" rather than "all failed".
    pub fn all_rejected(&self) -> bool {
        self.attempts.iter().all(|a| a.rejected.is_some())
    }

    /// The number of distinct backends among the attempts.
    pub fn backend_count(&self) -> usize {
        let mut seen: Vec<&BackendId> = Vec::with_capacity(self.attempts.len());
        for attempt in &self.attempts {
            if !seen.contains(&&attempt.backend) {
                seen.push(&attempt.backend);
            }
        }
        seen.len()
    }
}

impl fmt::Display for FailoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.backend_count();
        match (self.attempts.is_empty(), self.all_rejected(), n) {
            (true, _, _) => f.write_str("no backends configured")?,
            (false, true, 1) => f.write_str("the only backend is unavailable: ")?,
            (false, true, _) => write!(f, "all {n} backends unavailable: ")?,
            (false, false, 1) => f.write_str("the only backend failed: ")?,
            (false, false, _) => write!(f, "all {n} backends failed: ")?,
        }
        for (i, attempt) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{attempt}")?;
        }
        Ok(())
    }
}

impl Error for FailoverError {}

/// Formats a duration the way people read it: `850 ms`, `12 s`, `2.5 s`, `3 min 5 s`.
#[derive(Clone, Copy, Debug)]
pub struct DisplayDuration(pub Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1000 {
            if d.as_nanos() > 0 && ms == 0 {
                return write!(f, "{} µs", d.as_micros());
            }
            return write!(f, "{ms} ms");
        }
        let secs = d.as_secs();
        if secs >= 60 {
            let (m, s) = (secs / 60, secs % 60);
            return if s == 0 {
                write!(f, "{m} min")
            } else {
                write!(f, "{m} min {s} s")
            };
        }
        if ms % 1000 == 0 {
            write!(f, "{secs} s")
        } else {
            write!(f, "{:.1} s", d.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_stays_small_for_results_on_the_hot_path() {
        assert!(std::mem::size_of::<ProviderError>() <= 48);
        let bare = ProviderError::new(ErrorClass::Server, "x");
        assert!(bare.headers().is_empty());
        assert_eq!(bare.status(), None);
    }

    #[test]
    fn a_key_in_message_code_or_body_never_reaches_any_rendering() {
        let key = "sk-test-0123456789";
        // The key straddles the excerpt limit: no prefix of it may survive.
        let mut body = vec![b'x'; BODY_EXCERPT_LIMIT - 5];
        body.extend_from_slice(format!(" {key} Bearer {key}").as_bytes());
        let e = ProviderError::new(ErrorClass::Client, format!("bad key {key}"))
            .with_code(format!("x-api-key: {key}"))
            .with_redacted_body_excerpt(&body, &[key])
            .redact_known(&[key]);
        for text in [
            format!("{e}"),
            format!("{e:?}"),
            e.body_excerpt().unwrap_or_default().to_owned(),
        ] {
            assert!(!text.contains("sk-test"), "{text}");
        }
        assert!(e.body_excerpt().unwrap_or_default().ends_with('…'));
        let patterned = ProviderError::new(ErrorClass::Client, format!("Bearer {key}"));
        assert_eq!(patterned.message(), "Bearer <redacted>");
    }

    #[test]
    fn body_excerpt_is_bounded_and_lossy() {
        let body = vec![b'x'; BODY_EXCERPT_LIMIT * 3];
        let e = ProviderError::new(ErrorClass::Server, "boom").with_body_excerpt(&body);
        let excerpt = e.body_excerpt().unwrap_or_default();
        assert!(excerpt.len() <= BODY_EXCERPT_LIMIT + '…'.len_utf8());
        assert!(excerpt.ends_with('…'));

        let e = ProviderError::new(ErrorClass::Server, "boom").with_body_excerpt(b"\xff\xfeok");
        assert_eq!(e.body_excerpt(), Some("\u{fffd}\u{fffd}ok"));
    }

    #[test]
    fn provider_error_display_names_status_code_and_message() {
        let e = ProviderError::new(ErrorClass::RateLimited, "slow down")
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_code("rate_limit_exceeded");
        assert_eq!(
            e.to_string(),
            "provider error 429 (rate_limit_exceeded): slow down"
        );
        let e = ProviderError::new(ErrorClass::Overloaded, "Overloaded").in_band();
        assert_eq!(e.to_string(), "provider error in stream: Overloaded");
    }

    #[test]
    fn failover_error_tells_unavailable_from_failed() {
        let rejected = |name: &str, reason, secs| Attempt {
            backend: BackendId::new(name),
            class: ErrorClass::Rejected,
            rejected: Some(reason),
            message: String::new(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        let err = FailoverError {
            attempts: vec![
                rejected("openai", RejectReason::CircuitOpen, 12),
                rejected("anthropic", RejectReason::QuotaExhausted, 40),
            ],
            retry_after: Some(Duration::from_secs(12)),
        };
        assert!(err.all_rejected());
        assert_eq!(
            err.to_string(),
            "all 2 backends unavailable: openai circuit open (retry in 12 s), \
             anthropic quota exhausted (retry in 40 s)"
        );

        let mut failed = err.clone();
        failed.attempts.push(Attempt {
            backend: BackendId::new("gemini"),
            class: ErrorClass::Server,
            rejected: None,
            message: "internal error".into(),
            retry_after: None,
        });
        assert!(!failed.all_rejected());
        assert!(failed.to_string().starts_with("all 3 backends failed: "));
        assert!(failed
            .to_string()
            .ends_with("gemini server: internal error"));
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        let s = |d| DisplayDuration(d).to_string();
        assert_eq!(s(Duration::from_millis(850)), "850 ms");
        assert_eq!(s(Duration::from_secs(12)), "12 s");
        assert_eq!(s(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(s(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(s(Duration::from_secs(120)), "2 min");
        assert_eq!(s(Duration::from_micros(20)), "20 µs");
        assert_eq!(s(Duration::ZERO), "0 ms");
    }

    #[test]
    fn timeout_display_says_which_deadline() {
        let t = StreamTimeout {
            kind: TimeoutKind::FirstContent,
            after: Duration::from_millis(200),
        };
        assert_eq!(t.to_string(), "no content within 200 ms");
    }
}
