use std::{
    error::Error,
    task::{Context, Poll},
    time::SystemTime,
};

use futures_core::Stream;
use http::{response::Parts, Response, StatusCode};
use streamgate_core::{
    classify, emit, BackendId, BoxError, Chunk, EndObserver, ErrorClass, Event, LlmRequest,
    ProviderError, ReadyCall, RejectReason, Rejected, SharedSink, StreamEnd, StreamObserver,
};
use tokio::time::Instant;
use tower_service::Service;

use super::ResponseFuture;
use crate::{InFlight, QuotaInfo, QuotaTracker};

/// The service [`QuotaLayer`](super::QuotaLayer) makes.
#[derive(Clone)]
pub struct Quota<S> {
    inner: S,
    backend: BackendId,
    tracker: QuotaTracker,
    sink: SharedSink,
}

impl<S> Quota<S> {
    pub(crate) fn new(
        inner: S,
        backend: BackendId,
        tracker: QuotaTracker,
        sink: SharedSink,
    ) -> Self {
        Self {
            inner,
            backend,
            tracker,
            sink,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Quota<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("inner", &self.inner)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<S, Req, B, C, E> Service<Req> for Quota<S>
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
    C: Chunk,
    Req: LlmRequest,
{
    type Response = Response<streamgate_core::ObservedBody<B, QuotaObserver>>;
    type Error = BoxError;
    type Future = ResponseFuture<ReadyCall<S, Req>>;

    /// Always ready: the inner service is readied inside the response
    /// future of an admitted request, so a refusal never waits for it.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let model = request.model();
        let now = Instant::now();
        let admitted = self
            .tracker
            .admit(&self.backend, model, request.estimated_tokens(), now);
        let in_flight = match admitted {
            Ok(in_flight) => in_flight,
            Err(refusal) => {
                emit(&self.sink, || Event::Rejected {
                    backend: &self.backend,
                    model,
                    reason: RejectReason::QuotaExhausted,
                    retry_after: Some(refusal.retry_after),
                });
                let rejected = Rejected::new(self.backend.clone(), RejectReason::QuotaExhausted)
                    .with_retry_after(Some(refusal.retry_after));
                return ResponseFuture::rejected(rejected);
            }
        };
        let observer = QuotaObserver {
            tracker: self.tracker.clone(),
            backend: self.backend.clone(),
            model: ModelName::new(model),
            in_flight: Some(in_flight),
        };
        ResponseFuture::call_when_ready(&mut self.inner, request, observer)
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
    fn learn_from_error(&self, error: &(dyn Error + 'static)) {
        let mut current = Some(error);
        while let Some(err) = current {
            if let Some(e) = err.downcast_ref::<ProviderError>() {
                self.learn_from_provider_error(e, classify(error));
                return;
            }
            current = err.source();
        }
    }

    fn learn_from_provider_error(&self, e: &ProviderError, class: ErrorClass) {
        let status = e.status().unwrap_or(StatusCode::OK);
        let body = e.body_excerpt().map(str::as_bytes);
        let mut info = QuotaInfo::parse(status, e.headers(), body, SystemTime::now());
        if info.retry_after.is_none() {
            info.retry_after = e.retry_after();
        }
        let now = Instant::now();
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

impl EndObserver for QuotaObserver {
    fn on_end(self, end: StreamEnd<'_>) {
        if let StreamEnd::Failed(error) = end {
            self.learn_from_error(error);
        }
    }
}

impl<C> StreamObserver<C> for QuotaObserver {
    fn on_response(&mut self, parts: &Parts) {
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
