//! [`PacingLayer`]: keeps a backend under its requests and tokens per minute
//! by *waiting*, never by failing.
//!
//! Each request first takes one cell from the request limiter, then
//! [`estimated_tokens`](streamgate_core::LlmRequest::estimated_tokens)
//! cells from the token limiter (a request with no estimate takes none).
//! A request the limiters admit is called at once, in `call`. When a
//! limiter is empty the request sleeps on tokio time until it refills, then
//! calls the inner service; the time spent (from `call`) is reported as
//! [`Event::Throttled`](streamgate_core::Event::Throttled). Dropping the
//! future while it waits takes nothing more.
//!
//! The limiters are GCRA on tokio time (so they follow paused time in
//! tests), one atomic each and one clock read per request for both, sized
//! so that no span of one window ever admits more than the limit; see
//! [`PacingLayerBuilder::token_burst`] for the price and for what happens
//! to requests larger than the burst.
//!
//! With [`adopt_learned`](PacingLayerBuilder::adopt_learned), the limits a
//! [`QuotaTracker`] has learned from the backend's headers (for example
//! `x-ratelimit-limit-tokens`, per minute) are paced on per model, together
//! with the configured ones: the stricter of the two wins. Limits whose
//! window is unknown or longer than an hour (Groq's per-day request limit)
//! are not adopted. The limiters built from learned limits are kept per
//! model with the tracker's [model cap](crate::QuotaTrackerBuilder::model_cap):
//! a model past it paces on the tracker's shared `_OTHER` key
//! ([`PacingLayer::learned_models`]).
//!
//! [`PacingLayer::guard`] makes the same pacing a guard in front of another
//! guard (the breaker, in `Backend`), to fuse it with the gates into one
//! [`GuardLayer`](streamgate_core::guard::GuardLayer): the other guard is
//! asked only once the wait is over, so a waiting request holds nothing of
//! it (see [`PacedGuard`]).

mod future;
mod gcra;
mod guard;
mod pacer;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use streamgate_core::{BackendId, BoxError, LlmRequest, MetricsSink, SharedSink};
use tower_layer::Layer;
use tower_service::Service;

pub use future::PacingFuture;
pub use guard::{Paced, PacedGuard};

use crate::{tracker::ConfigError, QuotaTracker};
use pacer::{Pacer, Spec, Stage};

const MINUTE: Duration = Duration::from_secs(60);

/// Paces calls to one backend.
#[derive(Clone)]
pub struct PacingLayer {
    backend: BackendId,
    pacer: Arc<Pacer>,
    sink: SharedSink,
}

impl PacingLayer {
    /// Configures pacing for `backend`.
    pub fn builder(backend: BackendId) -> PacingLayerBuilder {
        PacingLayerBuilder {
            backend,
            requests_per_minute: None,
            tokens_per_minute: None,
            request_burst: None,
            token_burst: None,
            tracker: None,
            sink: None,
        }
    }

    /// How many models pace on limiters built from learned limits, shared
    /// `_OTHER` ones included: at most the tracker's model cap plus one per
    /// backend, whatever model names arrive.
    pub fn learned_models(&self) -> usize {
        self.pacer.learned_len()
    }

    /// This pacing as a guard in front of `then` (say the breaker's
    /// `streamgate_breaker::BreakerGuard`), to fuse into one
    /// [`GuardLayer`](streamgate_core::guard::GuardLayer) with the gates
    /// that come before it: the same waits and events as this layer above a
    /// guard layer of `then`, in one response future and one body wrapper
    /// (see [`PacedGuard`]). The limits are looked up for the guard layer's
    /// backend.
    pub fn guard<G>(&self, then: G) -> PacedGuard<G> {
        PacedGuard::new(self.pacer.clone(), self.sink.clone(), then)
    }
}

impl std::fmt::Debug for PacingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacingLayer")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for PacingLayer {
    type Service = Pacing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Pacing {
            inner,
            backend: self.backend.clone(),
            pacer: self.pacer.clone(),
            sink: self.sink.clone(),
        }
    }
}

/// Builds a [`PacingLayer`].
pub struct PacingLayerBuilder {
    backend: BackendId,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
    request_burst: Option<u32>,
    token_burst: Option<u32>,
    tracker: Option<QuotaTracker>,
    sink: SharedSink,
}

impl std::fmt::Debug for PacingLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacingLayerBuilder")
            .field("backend", &self.backend)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("request_burst", &self.request_burst)
            .field("token_burst", &self.token_burst)
            .finish_non_exhaustive()
    }
}

impl PacingLayerBuilder {
    /// At most this many requests in any minute.
    #[must_use]
    pub fn requests_per_minute(mut self, limit: u32) -> Self {
        self.requests_per_minute = Some(limit);
        self
    }

    /// At most this many estimated tokens in any minute.
    #[must_use]
    pub fn tokens_per_minute(mut self, limit: u32) -> Self {
        self.tokens_per_minute = Some(limit);
        self
    }

    /// Requests that may go at once after a quiet spell. Default: a tenth
    /// of the limit (at least 1).
    #[must_use]
    pub fn request_burst(mut self, burst: u32) -> Self {
        self.request_burst = Some(burst);
        self
    }

    /// Tokens that may go at once after a quiet spell. Default: a tenth of
    /// the limit (at least 1).
    ///
    /// The limiter refills `limit − burst` per minute so that no minute ever
    /// sees more than the limit; a larger burst allows bigger bursts and a
    /// lower sustained rate. A request whose estimate exceeds the burst is
    /// charged the whole burst (it can never hold more), so it waits at most
    /// one refill of the burst instead of forever; such requests can make a
    /// minute exceed the limit by the difference, so set the burst to at
    /// least your largest request.
    #[must_use]
    pub fn token_burst(mut self, burst: u32) -> Self {
        self.token_burst = Some(burst);
        self
    }

    /// Also paces on the limits `tracker` learns from this backend's
    /// headers (per model, the stricter of learned and configured).
    #[must_use]
    pub fn adopt_learned(mut self, tracker: QuotaTracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Reports every wait as [`Event::Throttled`](streamgate_core::Event::Throttled).
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Checks the configuration: at least one limit (or a tracker to learn
    /// from), limits of at least 1, bursts between 1 and the limit.
    pub fn build(self) -> Result<PacingLayer, ConfigError> {
        let spec = |limit: Option<u32>, burst: Option<u32>| -> Result<Option<Spec>, ConfigError> {
            let Some(limit) = limit else {
                return if burst.is_some() {
                    Err(ConfigError::new("a burst needs a limit"))
                } else {
                    Ok(None)
                };
            };
            if limit == 0 {
                return Err(ConfigError::new("limits must be at least 1"));
            }
            if burst.is_some_and(|b| b == 0 || b > limit) {
                return Err(ConfigError::new("burst must be between 1 and the limit"));
            }
            Ok(Some(Spec {
                limit,
                window: MINUTE,
                burst,
            }))
        };
        let requests = spec(self.requests_per_minute, self.request_burst)?;
        let tokens = spec(self.tokens_per_minute, self.token_burst)?;
        if requests.is_none() && tokens.is_none() && self.tracker.is_none() {
            return Err(ConfigError::new(
                "pacing needs a requests or tokens limit, or a tracker to learn them from",
            ));
        }
        Ok(PacingLayer {
            backend: self.backend,
            pacer: Arc::new(Pacer::new(requests, tokens, self.tracker)?),
            sink: self.sink,
        })
    }
}

/// The service [`PacingLayer`] makes.
#[derive(Clone)]
pub struct Pacing<S> {
    inner: S,
    backend: BackendId,
    pacer: Arc<Pacer>,
    sink: SharedSink,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Pacing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing")
            .field("inner", &self.inner)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Service<Req> for Pacing<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: LlmRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PacingFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let limiters = self.pacer.limiters(&self.backend, request.model());
        let mut stage = Stage::Requests;
        let now = tokio::time::Instant::now();
        let tokens = request.estimated_tokens();
        if limiters.advance(&mut stage, tokens, now).is_ok() {
            // Admitted now: the readied service is called now, with nothing
            // cloned for a wait that will not happen.
            return PacingFuture::called(self.inner.call(request));
        }
        // The readied service goes into the future; a clone stays here.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        PacingFuture::waiting(
            service,
            request,
            Box::pin(limiters.wait(stage, tokens)),
            now,
            self.backend.clone(),
            self.sink.clone(),
        )
    }
}

#[cfg(test)]
mod tests;
