use std::{error::Error, time::SystemTime};

use http::{response::Parts, StatusCode};
use streamgate_core::{
    classify,
    guard::{Call, End, Guard, GuardService, Now, Refusal, Ticket},
    BackendId, ErrorClass, ProviderError, RejectReason, Rejected, SharedSink,
};
use tokio::time::Instant;

use crate::{InFlight, QuotaInfo, QuotaTracker};

/// The service [`QuotaLayer`](super::QuotaLayer) makes: a guard layer of
/// a [`QuotaGuard`].
pub type Quota<S> = GuardService<S, QuotaGuard>;

/// The quota gate as a [`Guard`]: refuses a call whose key the tracker
/// knows to be exhausted; its [`QuotaObserver`] learns from the answer.
#[derive(Clone)]
pub struct QuotaGuard {
    tracker: QuotaTracker,
    sink: SharedSink,
}

impl QuotaGuard {
    /// Gates on what `tracker` knows, reporting refusals to `sink`.
    pub fn new(tracker: QuotaTracker, sink: SharedSink) -> Self {
        Self { tracker, sink }
    }

    /// The tracker.
    pub fn tracker(&self) -> &QuotaTracker {
        &self.tracker
    }
}

impl std::fmt::Debug for QuotaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaGuard")
            .field("tracker", &self.tracker)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Guard for QuotaGuard {
    type Ticket = QuotaObserver;

    #[inline]
    fn admit(&mut self, call: &Call<'_>) -> Result<QuotaObserver, Refusal<'_>> {
        let backend = call.backend();
        let model = call.model();
        match self
            .tracker
            .admit(backend, model, call.estimate(), call.now())
        {
            Ok(in_flight) => Ok(QuotaObserver {
                tracker: self.tracker.clone(),
                backend: backend.clone(),
                model: ModelName::new(model),
                in_flight: Some(in_flight),
            }),
            Err(refusal) => {
                let rejected = Rejected::new(backend.clone(), RejectReason::QuotaExhausted)
                    .with_retry_after(Some(refusal.retry_after));
                Err(Refusal::new(rejected, self.sink.as_deref()))
            }
        }
    }
}

/// Feeds one request's response head and errors to the tracker.
#[derive(Debug)]
pub struct QuotaObserver {
    tracker: QuotaTracker,
    backend: BackendId,
    model: ModelName,
    /// Counts the request against the key's remaining quota until its
    /// response head has been observed, or the request ends without one.
    in_flight: Option<InFlight>,
}

/// Longest model name kept inline; longer names are boxed.
const INLINE_MODEL: usize = 46;

/// The request's model name, owned without an allocation for names of
/// usual length (`gpt-4o-mini`, `claude-3-5-sonnet-20241022`): the observer
/// lives as long as the request, and a `String` per request would be the
/// layer's only allocation.
#[derive(Clone)]
enum ModelName {
    Inline { len: u8, bytes: [u8; INLINE_MODEL] },
    Boxed(Box<str>),
}

impl ModelName {
    fn new(model: &str) -> Self {
        match u8::try_from(model.len()) {
            Ok(len) if model.len() <= INLINE_MODEL => {
                let mut bytes = [0; INLINE_MODEL];
                bytes[..model.len()].copy_from_slice(model.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Boxed(model.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole, so always valid UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Boxed(model) => model,
        }
    }
}

impl std::fmt::Debug for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl QuotaObserver {
    fn learn_from_error(&self, error: &(dyn Error + 'static), now: &Now) {
        let mut current = Some(error);
        while let Some(err) = current {
            if let Some(e) = err.downcast_ref::<ProviderError>() {
                self.learn_from_provider_error(e, classify(error), now.get());
                return;
            }
            current = err.source();
        }
    }

    fn learn_from_provider_error(&self, e: &ProviderError, class: ErrorClass, now: Instant) {
        let status = e.status().unwrap_or(StatusCode::OK);
        let body = e.body_excerpt().map(str::as_bytes);
        let mut info = QuotaInfo::parse(status, e.headers(), body, SystemTime::now());
        if info.retry_after.is_none() {
            info.retry_after = e.retry_after();
        }
        let rate_limited = e.class() == ErrorClass::RateLimited || class == ErrorClass::RateLimited;
        if rate_limited && !info.is_rate_limited() {
            self.tracker
                .observe_rate_limited(&self.backend, self.model.as_str(), &info, now);
        } else {
            self.tracker
                .observe(&self.backend, self.model.as_str(), &info, now);
        }
    }
}

impl Ticket for QuotaObserver {
    fn on_end(self, end: End<'_>, now: &Now) {
        if let Some(error) = end.error() {
            self.learn_from_error(error, now);
        }
    }

    fn on_head(&mut self, parts: &Parts) {
        // Most responses carry nothing to learn (no rate-limit headers, not
        // a 429): skip the parse, both clocks and the tracker.
        if QuotaInfo::may_have_quota(parts.status, &parts.headers) {
            let info = QuotaInfo::parse(parts.status, &parts.headers, None, SystemTime::now());
            self.tracker
                .observe(&self.backend, self.model.as_str(), &info, Instant::now());
        }
        // Answered: the fresh figures (if any) now count this request.
        self.in_flight = None;
    }
}
