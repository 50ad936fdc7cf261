//! Configuring the router.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};

use streamgate_core::scoreboard::Scoreboard;
use streamgate_core::{
    boxed, BackendId, BoxError, BoxStreamingService, Classifier, Continuable, DefaultClassifier,
    MetricsSink, Prefill, SharedSink,
};
use tower_service::Service;

use super::{
    backoff::{Jitter, MAX_BACKOFF_DELAY},
    continuation::{Continuation, Continues},
    hedge::{Hedge, HedgeBudget},
    probe::ThroughputProbe,
    service::{Inner, Member, ModelOf, SessionKey},
    Backoff, Failover, Strategy,
};
use crate::ConfigError;

/// The most retries of one backend a router may be configured with.
const MAX_RETRIES: u32 = 10;

/// What to do when a backend says the prompt does not fit its context
/// window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextLengthPolicy {
    /// Try the next backend, which may serve a model with a larger window
    /// (the default).
    #[default]
    NextBackend,
    /// Stop and return the error.
    Stop,
}

/// Configures a [`Failover`] router. Backends are tried in the order they
/// are added.
#[must_use]
pub struct FailoverBuilder<Req, C> {
    backends: Vec<Member<Req, C>>,
    retries: u32,
    backoff: Backoff,
    context_length: ContextLengthPolicy,
    wait_when_unavailable: Option<Duration>,
    first_content_timeout: Option<Duration>,
    last_attempt_extra: Duration,
    classifier: Arc<dyn Classifier>,
    sink: SharedSink,
    strategy: Strategy,
    scoreboard: Option<Scoreboard>,
    session_key: Option<SessionKey<Req>>,
    model_of: Vec<(BackendId, ModelOf<Req>)>,
    hedge: Option<Hedge>,
    probes: Vec<(BackendId, ThroughputProbe)>,
    continuation: Option<Continues<Req>>,
    continues: Vec<(BackendId, Prefill)>,
}

impl<Req, C> std::fmt::Debug for FailoverBuilder<Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverBuilder")
            .field(
                "backends",
                &self.backends.iter().map(|m| &m.id).collect::<Vec<_>>(),
            )
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("context_length", &self.context_length)
            .field("wait_when_unavailable", &self.wait_when_unavailable)
            .field("first_content_timeout", &self.first_content_timeout)
            .field("last_attempt_extra", &self.last_attempt_extra)
            .field("strategy", &self.strategy)
            .field("hedge", &self.hedge)
            .field(
                "continuation",
                &self.continuation.as_ref().map(|c| c.settings),
            )
            .field("continues", &self.continues)
            .finish_non_exhaustive()
    }
}

impl<Req, C> Default for FailoverBuilder<Req, C> {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            retries: 0,
            backoff: Backoff::default(),
            context_length: ContextLengthPolicy::default(),
            wait_when_unavailable: None,
            first_content_timeout: None,
            last_attempt_extra: Duration::ZERO,
            classifier: Arc::new(DefaultClassifier),
            sink: None,
            strategy: Strategy::default(),
            scoreboard: None,
            session_key: None,
            model_of: Vec::new(),
            hedge: None,
            probes: Vec::new(),
            continuation: None,
            continues: Vec::new(),
        }
    }
}

impl<Req: 'static, C: 'static> FailoverBuilder<Req, C> {
    /// Adds a backend already boxed with [`boxed`].
    pub fn backend(
        mut self,
        id: impl Into<BackendId>,
        service: BoxStreamingService<Req, C>,
    ) -> Self {
        self.backends.push(Member {
            id: id.into(),
            service,
            deadline: None,
            model: None,
            probe: None,
            continues: None,
        });
        self
    }

    /// Adds a backend whose stack owns its first-content deadline: a
    /// `FirstChunkTimeoutLayer` innermost in `service`, so that every layer
    /// of the stack (breaker, quota, metrics, …) sees an attempt cut by the
    /// deadline as a timeout. The router never races such a backend with
    /// [`first_content_timeout`](Self::first_content_timeout); for the last
    /// remaining attempt it calls `extended` instead, when given: the same
    /// stack (sharing its state) whose deadline includes the
    /// [last-attempt extra time](Self::last_attempt_extra).
    ///
    /// `streamgate::Backends` adds every backend with a deadline this way.
    pub fn backend_with_deadline(
        mut self,
        id: impl Into<BackendId>,
        service: BoxStreamingService<Req, C>,
        extended: Option<BoxStreamingService<Req, C>>,
    ) -> Self {
        self.backends.push(Member {
            id: id.into(),
            service,
            deadline: Some(extended),
            model: None,
            probe: None,
            continues: None,
        });
        self
    }

    /// Adds a backend, boxing its service (typically the backend's stack of
    /// layers around its client).
    pub fn service<S, B, E>(self, id: impl Into<BackendId>, service: S) -> Self
    where
        S: Service<Req, Response = http::Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: futures_core::Stream<Item = Result<C, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.backend(id, boxed(service))
    }

    /// Retries of the same backend on a retryable failure before the stream
    /// is committed, before moving on (default 0: move on at once, since
    /// another backend is usually the quickest retry; at most 10).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The delays between retries of the same backend (default
    /// [`Backoff::default`]); its `max` and `max_retry_after` must be at
    /// most [`MAX_BACKOFF_DELAY`](super::MAX_BACKOFF_DELAY) (1 hour), so no
    /// retry sleeps for ever.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// What a context-length error does (default: next backend).
    pub fn context_length(mut self, policy: ContextLengthPolicy) -> Self {
        self.context_length = policy;
        self
    }

    /// When every backend refuses (no backend was called), waits for the
    /// earliest time one expects to admit again, then tries again, as long
    /// as the total wait stays within `max` (at most 1 hour; reported as a
    /// `Throttled` event). Default: no waiting; fail at once with the
    /// attempts.
    pub fn wait_when_unavailable(mut self, max: Duration) -> Self {
        self.wait_when_unavailable = Some(max);
        self
    }

    /// A deadline from each attempt's start to its first content chunk;
    /// on expiry the attempt is dropped (cancelling it) and counts as a
    /// timeout. Default: none (rely on each backend's timeout layer).
    pub fn first_content_timeout(mut self, after: Duration) -> Self {
        self.first_content_timeout = Some(after);
        self
    }

    /// Extra first-content time for the last remaining attempt, which has
    /// nowhere to fail over to (default none). Only with
    /// [`first_content_timeout`](Self::first_content_timeout); the sum
    /// saturates, so `Duration::MAX` means "no deadline for the last one".
    /// A backend added with [`backend_with_deadline`](Self::backend_with_deadline)
    /// gets it from its `extended` stack.
    pub fn last_attempt_extra(mut self, extra: Duration) -> Self {
        self.last_attempt_extra = extra;
        self
    }

    /// The classification policy (default [`DefaultClassifier`]).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Reports `Failover` and `Throttled` events to `sink`, and a `Rejected`
    /// event for each backend skipped because the scoreboard knew its gate
    /// refuses (as the gate itself would have reported).
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// How each request orders the backends (default [`Strategy::Ordered`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Reads (and records refusals and deadline cuts into) `scoreboard`
    /// instead of a board of the router's own. Give the same board to the
    /// backends' layers as their sink (`streamgate::Backends` does), so the
    /// router also knows what they observe: breaker transitions, quota,
    /// time to first content, throughput, requests in flight.
    pub fn scoreboard(mut self, scoreboard: &Scoreboard) -> Self {
        self.scoreboard = Some(scoreboard.clone());
        self
    }

    /// The session key of a request, for [`Strategy::Sticky`]: requests
    /// with equal keys start at the same backend; `None` routes in order.
    pub fn session_key<K: Hash>(
        mut self,
        key: impl Fn(&Req) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        self.session_key = Some(Arc::new(move |request: &Req| {
            key(request).map(|key| {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish()
            })
        }));
        self
    }

    /// Tells the router how backend `id`'s stack renames a request's model
    /// (e.g. `streamgate::Backend::map_request`), so the scoreboard is read
    /// under the name that backend's layers report.
    pub fn model_of(
        mut self,
        id: impl Into<BackendId>,
        model: impl Fn(&Req) -> String + Send + Sync + 'static,
    ) -> Self {
        self.model_of.push((id.into(), Arc::new(model)));
        self
    }

    /// Probes backend `id`'s decode rate before committing its stream (opt
    /// in; default: commit at the first content). See [`ThroughputProbe`].
    pub fn throughput_probe(mut self, id: impl Into<BackendId>, probe: ThroughputProbe) -> Self {
        self.probes.push((id.into(), probe));
        self
    }

    /// Declares that backend `id` can continue another backend's failed
    /// stream, and how its API takes the partial answer (see
    /// [`continuation`](Self::continuation)). A backend without one is
    /// never chosen to continue.
    pub fn continues_with(mut self, id: impl Into<BackendId>, how: Prefill) -> Self {
        self.continues.push((id.into(), how));
        self
    }

    /// Continues a stream that fails after content on another backend
    /// (opt in; default: the failure is the stream's `Err` item). See
    /// [`Continuation`].
    pub fn continuation(mut self, continuation: Continuation) -> Self
    where
        Req: Continuable,
    {
        self.continuation = Some(Continues {
            settings: continuation,
            continued: Arc::new(|request: &Req, partial: &str, how| {
                request.continued(partial, how)
            }),
        });
        self
    }

    /// Hedges slow first choices (default: never). See [`Hedge`].
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// The first-content deadline set with
    /// [`first_content_timeout`](Self::first_content_timeout), if any.
    pub fn configured_first_content_timeout(&self) -> Option<Duration> {
        self.first_content_timeout
    }

    /// The extra time set with [`last_attempt_extra`](Self::last_attempt_extra).
    pub fn configured_last_attempt_extra(&self) -> Duration {
        self.last_attempt_extra
    }

    /// Checks the settings and builds the router.
    pub fn build(self) -> Result<Failover<Req, C>, ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::new("at least one backend is needed"));
        }
        for (i, member) in self.backends.iter().enumerate() {
            if self.backends[..i].iter().any(|other| other.id == member.id) {
                return Err(ConfigError::new("backend names must be unique"));
            }
        }
        if self.retries > MAX_RETRIES {
            return Err(ConfigError::new("retries must be at most 10"));
        }
        if self.backoff.base > self.backoff.max {
            return Err(ConfigError::new("backoff base must not exceed its maximum"));
        }
        // A retry must never sleep for ever: an infinite base (or maximum)
        // is refused rather than honoured.
        if self.backoff.max > MAX_BACKOFF_DELAY || self.backoff.max_retry_after > MAX_BACKOFF_DELAY
        {
            return Err(ConfigError::new(
                "backoff maximum and max retry-after must be at most 1 hour",
            ));
        }
        if self
            .wait_when_unavailable
            .is_some_and(|max| max > MAX_BACKOFF_DELAY)
        {
            return Err(ConfigError::new(
                "wait when unavailable must be at most 1 hour",
            ));
        }
        if self.first_content_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("first-content timeout must be above 0"));
        }
        if !self.last_attempt_extra.is_zero() && self.first_content_timeout.is_none() {
            return Err(ConfigError::new(
                "last-attempt extra time needs a first-content timeout",
            ));
        }
        if let Strategy::Weighted(weights) = &self.strategy {
            if weights.len() != self.backends.len() {
                return Err(ConfigError::new(format!(
                    "weighted strategy has {} weights for {} backends",
                    weights.len(),
                    self.backends.len()
                )));
            }
            if weights.iter().all(|&w| w == 0) {
                return Err(ConfigError::new(
                    "weighted strategy needs at least one weight above 0",
                ));
            }
        }
        if self.strategy == Strategy::Sticky && self.session_key.is_none() {
            return Err(ConfigError::new(
                "sticky strategy needs a session key (FailoverBuilder::session_key)",
            ));
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate()?;
        }
        let mut backends = self.backends;
        for (id, model) in self.model_of {
            let Some(member) = backends.iter_mut().find(|m| m.id == id) else {
                return Err(ConfigError::new(format!(
                    "model mapping for unknown backend {id}"
                )));
            };
            member.model = Some(model);
        }
        for (id, probe) in self.probes {
            probe.validate()?;
            let Some(member) = backends.iter_mut().find(|m| m.id == id) else {
                return Err(ConfigError::new(format!(
                    "throughput probe for unknown backend {id}"
                )));
            };
            member.probe = Some(probe);
        }
        if let Some(continuation) = &self.continuation {
            continuation.settings.validate()?;
        }
        for (id, how) in self.continues {
            let Some(member) = backends.iter_mut().find(|m| m.id == id) else {
                return Err(ConfigError::new(format!(
                    "continuation mechanism for unknown backend {id}"
                )));
            };
            member.continues = Some(how);
        }
        Ok(Failover {
            inner: Arc::new(Inner {
                ids: backends.iter().map(|member| member.id.clone()).collect(),
                backends,
                retries: self.retries,
                backoff: self.backoff,
                context_length: self.context_length,
                wait_when_unavailable: self.wait_when_unavailable,
                first_content_timeout: self.first_content_timeout,
                last_attempt_extra: self.last_attempt_extra,
                classifier: self.classifier,
                sink: self.sink,
                jitter: Jitter::new(),
                strategy: self.strategy,
                scoreboard: self.scoreboard.unwrap_or_default(),
                session_key: self.session_key,
                turn: AtomicUsize::new(0),
                hedge_budget: HedgeBudget::new(self.hedge.map_or(0.0, |h| h.budget)),
                hedge: self.hedge,
                continuation: self.continuation,
            }),
        })
    }
}
