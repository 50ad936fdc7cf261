//! One classification of failures that the breaker, failover and metrics share.
//!
//! How an HTTP status and a provider's body error type combine into one class
//! is written down on [`ErrorClass`] ("Status and body").

use std::{error::Error, fmt, time::Duration};

use http::StatusCode;

use crate::{Cancelled, FailoverError, ProviderError, Rejected, StreamTimeout};

/// What kind of failure an error is, independent of which layer or provider
/// produced it.
///
/// # Status and body
///
/// A provider's HTTP error carries two opinions: the status and the error
/// type in its body. Adapters combine them once, when they build the
/// [`ProviderError`], in this order (the first rule that matches decides):
///
/// 1. A body that says the request cannot succeed, whatever the status (no
///    quota or billing left, context length, content filter, one request
///    above the whole per-minute limit): [`ErrorClass::Client`],
///    [`ErrorClass::ContextLength`], [`ErrorClass::ContentFilter`]. Retrying
///    would fail the same way, so this beats even a 429.
/// 2. A body type naming a transient condition: rate limited (OpenAI
///    `rate_limit_exceeded`, Anthropic `rate_limit_error`, Gemini
///    `RESOURCE_EXHAUSTED`) or overloaded (Anthropic `overloaded_error`,
///    Gemini `UNAVAILABLE`).
/// 3. A status naming the condition ([`ErrorClass::from_status`]: 429,
///    503, 529, 408, 504). It beats the generic body types below: OpenAI and
///    Azure send their 503s with `type: server_error`, and such a response
///    is [`ErrorClass::Overloaded`], not [`ErrorClass::Server`].
/// 4. An overload said only in words (a message containing "overloaded"),
///    on a 5xx or inside a stream.
/// 5. A generic body type (`server_error`, `api_error`, `INTERNAL`,
///    `invalid_request_error`, …).
/// 6. The status alone: other 5xx [`ErrorClass::Server`], other 4xx
///    [`ErrorClass::Client`]; an unrecognised error inside a stream (no
///    status) is [`ErrorClass::Server`].
///
/// An error event inside a stream has no status, so rules 1, 2, 4 and 5
/// decide it: Anthropic's in-band `overloaded_error` is overloaded like its
/// 529. [`classify`] then only reads the class the adapter chose.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// The provider asked us to slow down (HTTP 429, `rate_limit_exceeded`).
    RateLimited,
    /// The provider is overloaded (Anthropic 529, `overloaded_error`, HTTP 503).
    Overloaded,
    /// A server-side error (HTTP 5xx, `server_error`).
    Server,
    /// A deadline expired.
    Timeout,
    /// The connection failed or broke.
    Network,
    /// The request itself is wrong (HTTP 4xx, bad key, no quota left on the
    /// account): another try will fail the same way.
    Client,
    /// The prompt does not fit the model's context window.
    ContextLength,
    /// The provider's content filter refused.
    ContentFilter,
    /// The stream ended without the provider's terminal marker.
    Truncated,
    /// A gate refused without calling the backend.
    Rejected,
    /// The caller gave up.
    Cancelled,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 12] = [
        Self::RateLimited,
        Self::Overloaded,
        Self::Server,
        Self::Timeout,
        Self::Network,
        Self::Client,
        Self::ContextLength,
        Self::ContentFilter,
        Self::Truncated,
        Self::Rejected,
        Self::Cancelled,
        Self::Other,
    ];

    /// A short snake_case name, used as the `error.type` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Client => "client",
            Self::ContextLength => "context_length",
            Self::ContentFilter => "content_filter",
            Self::Truncated => "truncated",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Other => "other",
        }
    }

    /// Whether the same request may succeed if sent again (here or on another
    /// backend): rate limits, overload, server errors, timeouts, network
    /// errors and truncation.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Overloaded
                | Self::Server
                | Self::Timeout
                | Self::Network
                | Self::Truncated
        )
    }

    /// The usual class of an HTTP error status, before a provider's error
    /// type refines it: 429 rate limited; 503 and 529 overloaded; 408 and 504
    /// timeout; other 5xx server; other 4xx client.
    ///
    /// The first three name a condition and beat a generic body type such as
    /// `server_error`; the last two yield to any body type (see
    /// [`ErrorClass`](ErrorClass#status-and-body)).
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            429 => Self::RateLimited,
            503 | 529 => Self::Overloaded,
            408 | 504 => Self::Timeout,
            500..=599 => Self::Server,
            400..=499 => Self::Client,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RateLimited => "rate limited",
            Self::ContextLength => "context length",
            Self::ContentFilter => "content filter",
            other => other.as_str(),
        })
    }
}

/// Classifies an error by walking its `source()` chain; the outermost error
/// streamgate knows decides.
///
/// Known types: [`ProviderError`] (its class), [`StreamTimeout`],
/// `tokio::time::error::Elapsed` (timeout), [`Rejected`], [`Cancelled`],
/// [`FailoverError`] (rejected when no backend was called, else the class of
/// the last backend's failure), `std::io::Error` (timeout for `TimedOut`,
/// else network). Anything else is [`ErrorClass::Other`]. A provider error's
/// class was fixed by its adapter from status and body, in the precedence
/// [`ErrorClass`] describes.
pub fn classify(error: &(dyn Error + 'static)) -> ErrorClass {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(class) = classify_one(err) {
            return class;
        }
        current = err.source();
    }
    ErrorClass::Other
}

fn classify_one(err: &(dyn Error + 'static)) -> Option<ErrorClass> {
    if let Some(e) = err.downcast_ref::<ProviderError>() {
        return Some(e.class());
    }
    if err.is::<StreamTimeout>() || err.is::<tokio::time::error::Elapsed>() {
        return Some(ErrorClass::Timeout);
    }
    if err.is::<Rejected>() {
        return Some(ErrorClass::Rejected);
    }
    if err.is::<Cancelled>() {
        return Some(ErrorClass::Cancelled);
    }
    if let Some(e) = err.downcast_ref::<FailoverError>() {
        if e.all_rejected() {
            return Some(ErrorClass::Rejected);
        }
        return e
            .attempts
            .iter()
            .rev()
            .find(|a| a.rejected.is_none())
            .map(|a| a.class);
    }
    if let Some(e) = err.downcast_ref::<std::io::Error>() {
        return Some(match e.kind() {
            std::io::ErrorKind::TimedOut => ErrorClass::Timeout,
            _ => ErrorClass::Network,
        });
    }
    None
}

/// When the error says to try again, walking the `source()` chain:
/// a [`ProviderError`]'s retry-after, a [`Rejected`]'s or a
/// [`FailoverError`]'s.
pub fn retry_after(error: &(dyn Error + 'static)) -> Option<Duration> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(e) = err.downcast_ref::<ProviderError>() {
            return e.retry_after();
        }
        if let Some(e) = err.downcast_ref::<Rejected>() {
            return e.retry_after;
        }
        if let Some(e) = err.downcast_ref::<FailoverError>() {
            return e.retry_after;
        }
        current = err.source();
    }
    None
}

/// A classification policy: layers that judge errors take one so users can
/// override the default.
///
/// Closures `Fn(&(dyn Error + 'static)) -> ErrorClass` implement it; wrap
/// [`classify`] to change only some cases.
pub trait Classifier: Send + Sync + 'static {
    /// The class of `error`.
    fn classify(&self, error: &(dyn Error + 'static)) -> ErrorClass;
}

/// The default policy: [`classify`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl Classifier for DefaultClassifier {
    fn classify(&self, error: &(dyn Error + 'static)) -> ErrorClass {
        classify(error)
    }
}

impl<F> Classifier for F
where
    F: Fn(&(dyn Error + 'static)) -> ErrorClass + Send + Sync + 'static,
{
    fn classify(&self, error: &(dyn Error + 'static)) -> ErrorClass {
        self(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attempt, BackendId, BoxError, RejectReason, TimeoutKind};

    /// An error of a type streamgate does not know, wrapping another.
    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    fn class_of(err: impl Into<BoxError>) -> ErrorClass {
        let err: BoxError = err.into();
        classify(&*err)
    }

    fn timeout() -> StreamTimeout {
        StreamTimeout {
            kind: TimeoutKind::Idle,
            after: Duration::from_secs(1),
        }
    }

    #[test]
    fn each_error_type_lands_in_its_class() {
        for class in ErrorClass::ALL {
            assert_eq!(class_of(ProviderError::new(class, "x")), class);
        }
        assert_eq!(class_of(timeout()), ErrorClass::Timeout);
        assert_eq!(
            class_of(Rejected::new(BackendId::new("a"), RejectReason::TpmBudget)),
            ErrorClass::Rejected
        );
        assert_eq!(class_of(Cancelled), ErrorClass::Cancelled);
        assert_eq!(
            class_of(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            ErrorClass::Network
        );
        assert_eq!(
            class_of(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
        assert_eq!(class_of("some string error"), ErrorClass::Other);
    }

    #[test]
    fn wrapped_errors_are_classified_through_the_source_chain() {
        assert_eq!(class_of(Wrapper(Box::new(timeout()))), ErrorClass::Timeout);
        assert_eq!(
            class_of(Wrapper(Box::new(Wrapper(Box::new(
                ProviderError::truncated("eof")
            ))))),
            ErrorClass::Truncated
        );
        // The outermost known type decides: a provider error caused by an
        // I/O error is still the provider's class.
        let err = ProviderError::new(ErrorClass::Overloaded, "busy")
            .with_source(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(class_of(Wrapper(Box::new(err))), ErrorClass::Overloaded);
    }

    #[test]
    fn tokio_elapsed_is_a_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string());
        let Ok(rt) = rt else { panic!("runtime") };
        let elapsed = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>()).await
        });
        let Err(elapsed) = elapsed else {
            panic!("pending never finishes")
        };
        assert_eq!(class_of(elapsed), ErrorClass::Timeout);
    }

    #[test]
    fn failover_error_is_rejected_only_when_no_backend_was_called() {
        let rejected = Attempt {
            backend: BackendId::new("a"),
            class: ErrorClass::Rejected,
            rejected: Some(RejectReason::CircuitOpen),
            message: String::new(),
            retry_after: None,
        };
        let failed = Attempt {
            backend: BackendId::new("b"),
            class: ErrorClass::Overloaded,
            rejected: None,
            message: "busy".into(),
            retry_after: None,
        };
        let none_available = FailoverError {
            attempts: vec![rejected.clone()],
            retry_after: None,
        };
        assert_eq!(class_of(none_available), ErrorClass::Rejected);
        let all_failed = FailoverError {
            attempts: vec![failed, rejected],
            retry_after: None,
        };
        assert_eq!(class_of(all_failed), ErrorClass::Overloaded);
    }

    #[test]
    fn retry_after_is_found_through_wrappers() {
        let err = ProviderError::new(ErrorClass::RateLimited, "slow down")
            .with_retry_after(Duration::from_secs(7));
        let err: BoxError = Box::new(Wrapper(Box::new(err)));
        assert_eq!(retry_after(&*err), Some(Duration::from_secs(7)));
        let err: BoxError = Box::new(timeout());
        assert_eq!(retry_after(&*err), None);
    }

    #[test]
    fn status_codes_map_to_their_usual_class() {
        let c = |n| ErrorClass::from_status(StatusCode::from_u16(n).unwrap_or_default());
        assert_eq!(c(429), ErrorClass::RateLimited);
        assert_eq!(c(529), ErrorClass::Overloaded);
        assert_eq!(c(503), ErrorClass::Overloaded);
        assert_eq!(c(500), ErrorClass::Server);
        assert_eq!(c(504), ErrorClass::Timeout);
        assert_eq!(c(401), ErrorClass::Client);
    }

    #[test]
    fn closures_override_the_policy() {
        let policy = |e: &(dyn Error + 'static)| match classify(e) {
            ErrorClass::RateLimited => ErrorClass::Server,
            other => other,
        };
        let err: BoxError = Box::new(ProviderError::new(ErrorClass::RateLimited, "x"));
        assert_eq!(Classifier::classify(&policy, &*err), ErrorClass::Server);
        assert_eq!(DefaultClassifier.classify(&*err), ErrorClass::RateLimited);
    }

    #[test]
    fn retryable_classes() {
        let retryable: Vec<_> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorClass::RateLimited,
                ErrorClass::Overloaded,
                ErrorClass::Server,
                ErrorClass::Timeout,
                ErrorClass::Network,
                ErrorClass::Truncated
            ]
        );
    }
}
