//! [`Backend`]: one backend's layers, stacked in the recommended order from
//! one name.

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use futures_core::Stream;
use http::Response;
use streamgate_breaker::{
    Breaker, BreakerBuilder, BreakerGuard, BreakerRegistry, CircuitBreakerLayer,
};
use streamgate_core::{
    guard::GuardLayer, state::SharedState, BackendId, BoxError, BoxStreamingService, Chunk, LlmRequest,
    MetricsSink, Prefill, SharedSink,
};
use streamgate_core::scoreboard::Scoreboard;
use streamgate_failover::{ThroughputProbe, TpmGuard, TpmLayer};
use streamgate_metrics::{Fanout, Measure, MetricsLayer};
use streamgate_quota::{
    PacedGuard, PacingLayer, PacingLayerBuilder, QuotaGuard, QuotaLayer, QuotaTracker,
};
use streamgate_timeout::{FirstChunkTimeoutLayer, TimeoutConfig};
use tower::{util::MapRequestLayer, Layer};
use tower_service::Service;

use crate::{
    optional::{apply, apply_same},
    BuildError,
};

type Configure<B> = Box<dyn FnOnce(B) -> B + Send>;
type MapRequest<Req> = Arc<dyn Fn(Req) -> Req + Send + Sync>;

enum BreakerChoice {
    Default,
    Off,
    Handle(Breaker),
    PerModel(BreakerRegistry),
    Configure(Configure<BreakerBuilder>),
}

enum QuotaChoice {
    Default,
    Off,
    Tracker(QuotaTracker),
}

/// One backend: a streaming client and the layers around it, stacked in the
/// recommended order (outermost first):
///
/// | layer | on by default | what it does |
/// |---|---|---|
/// | metrics | with [`metrics`](Self::metrics) | measures TTFT, tokens/s, usage and the outcome as the caller sees it |
/// | TPM | with [`tpm_budget`](Self::tpm_budget) | refuses work over a tokens-per-minute budget |
/// | quota | yes | learns the provider's rate-limit headers; refuses while the quota is known to be exhausted |
/// | pacing | with [`pacing`](Self::pacing) | waits (never fails) to stay under requests/tokens per minute |
/// | breaker | yes: 3 failures in 60 s open it for 30 s | refuses while the backend keeps failing; judges the whole stream |
/// | timeout | with [`first_content_timeout`](Self::first_content_timeout) | cancels a request whose first content, next chunk or end is late |
///
/// Metrics, TPM, quota and the breaker are [guards](streamgate_core::guard)
/// fused into one [`GuardLayer`] (admitted in that order, one response
/// future and one body wrapper for the four). Pacing joins them as a guard
/// in front of the breaker ([`PacingLayer::guard`]): a call that must wait
/// is asked of the breaker only after the wait, so a paced request never
/// holds a probe while it waits. The timeout (it cuts) is a layer of its
/// own.
///
/// Why this order: the cheap declarative gates (TPM, quota) refuse before
/// the breaker, so a refused request never takes a half-open probe; pacing
/// waits only for requests the gates admit and never while holding a probe;
/// the timeout is innermost, so it measures the provider and every layer
/// above sees a timeout as an ordinary failure.
///
/// [`build`](Self::build) returns a boxed, cloneable service; several
/// backends go behind one failover router with [`Backends`](crate::Backends).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use streamgate::prelude::*;
/// use streamgate::core::testing::{Script, ScriptedService, TestRequest};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// let tracker = Arc::new(PerformanceTracker::new());
/// let client = ScriptedService::new(Script::new().text("hello"));
/// let service = Backend::new("openai", client)
///     .first_content_timeout(Duration::from_secs(20))
///     .tpm_budget(30_000)
///     .metrics(tracker.clone())
///     .build()?;
/// let response = service.oneshot(TestRequest::new("gpt-4o-mini")).await?;
/// # drop(response);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Backend<S, Req> {
    id: BackendId,
    client: S,
    first_content: Option<Duration>,
    idle: Option<Duration>,
    total: Option<Duration>,
    breaker: BreakerChoice,
    quota: QuotaChoice,
    pacing: Option<Configure<PacingLayerBuilder>>,
    tpm_budget: Option<u64>,
    min_throughput: Option<u64>,
    scoreboard: Option<Scoreboard>,
    probe: Option<ThroughputProbe>,
    continues: Option<Prefill>,
    sink: SharedSink,
    shared: SharedState,
    map_request: Option<MapRequest<Req>>,
    _request: PhantomData<fn(Req)>,
}

impl<S, Req> fmt::Debug for Backend<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("first_content", &self.first_content)
            .field("idle", &self.idle)
            .field("total", &self.total)
            .field("tpm_budget", &self.tpm_budget)
            .field("min_throughput", &self.min_throughput)
            .finish_non_exhaustive()
    }
}

impl<S, Req> Backend<S, Req> {
    /// A backend called `id` around `client`: any
    /// `Service<Req, Response = http::Response<B>>` whose body `B` is an
    /// `Unpin` stream of `Result<C: Chunk, E>` (`Box::pin` it otherwise).
    ///
    /// By default it gets the quota gate (learning from the provider's
    /// headers) and a circuit breaker with [`Breaker::new`]'s settings;
    /// everything else is off until configured.
    pub fn new(id: impl Into<BackendId>, client: S) -> Self {
        Self {
            id: id.into(),
            client,
            first_content: None,
            idle: None,
            total: None,
            breaker: BreakerChoice::Default,
            quota: QuotaChoice::Default,
            pacing: None,
            tpm_budget: None,
            min_throughput: None,
            scoreboard: None,
            probe: None,
            continues: None,
            sink: None,
            shared: SharedState::new(),
            map_request: None,
            _request: PhantomData,
        }
    }

    /// The backend's name.
    pub fn id(&self) -> &BackendId {
        &self.id
    }

    /// Adds the timeout layer: the first content chunk must arrive within
    /// `after` of the call (pings and role-only chunks do not count). No
    /// default: how long a first token may take depends on the model and the
    /// prompt.
    pub fn first_content_timeout(mut self, after: Duration) -> Self {
        self.first_content = Some(after);
        self
    }

    /// The longest gap between two content chunks (needs
    /// [`first_content_timeout`](Self::first_content_timeout)).
    pub fn idle_timeout(mut self, gap: Duration) -> Self {
        self.idle = Some(gap);
        self
    }

    /// The longest whole stream (needs
    /// [`first_content_timeout`](Self::first_content_timeout)).
    pub fn total_timeout(mut self, limit: Duration) -> Self {
        self.total = Some(limit);
        self
    }

    /// Uses this breaker handle (keep a clone to read its state or steer it).
    /// Its settings and sink are its own.
    pub fn circuit_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = BreakerChoice::Handle(breaker);
        self
    }

    /// One breaker per model from `registry` (built with
    /// [`BreakerBuilder::build_registry`], which caps the models that get
    /// their own, [`BreakerBuilder::model_cap`]) instead of one for the
    /// backend. Its settings and sink are its own.
    pub fn circuit_breaker_per_model(mut self, registry: BreakerRegistry) -> Self {
        self.breaker = BreakerChoice::PerModel(registry);
        self
    }

    /// Tunes the default breaker: `configure` gets a [`BreakerBuilder`] for
    /// this backend (with the backend's sink) and returns it changed.
    pub fn circuit_breaker_with(
        mut self,
        configure: impl FnOnce(BreakerBuilder) -> BreakerBuilder + Send + 'static,
    ) -> Self {
        self.breaker = BreakerChoice::Configure(Box::new(configure));
        self
    }

    /// Removes the circuit breaker.
    pub fn without_circuit_breaker(mut self) -> Self {
        self.breaker = BreakerChoice::Off;
        self
    }

    /// Records quota into `tracker` (share one tracker between backends, or
    /// keep a clone to read it). Its sink is its own; the default tracker
    /// reports to the backend's sink.
    pub fn quota(mut self, tracker: QuotaTracker) -> Self {
        self.quota = QuotaChoice::Tracker(tracker);
        self
    }

    /// Removes the quota gate.
    pub fn without_quota(mut self) -> Self {
        self.quota = QuotaChoice::Off;
        self
    }

    /// Adds pacing: `configure` gets a [`PacingLayerBuilder`] for this
    /// backend (with its sink, and adopting the limits the quota tracker
    /// learns from headers when the quota gate is on) and sets the limits,
    /// e.g. `|p| p.requests_per_minute(500).tokens_per_minute(30_000)`.
    pub fn pacing(
        mut self,
        configure: impl FnOnce(PacingLayerBuilder) -> PacingLayerBuilder + Send + 'static,
    ) -> Self {
        self.pacing = Some(Box::new(configure));
        self
    }

    /// Adds the TPM budget gate: a request is admitted only if the tokens of
    /// the last minute, plus those reserved by requests in flight, plus its
    /// estimate stay within `tokens_per_minute`.
    pub fn tpm_budget(mut self, tokens_per_minute: u64) -> Self {
        self.tpm_budget = Some(tokens_per_minute);
        self
    }

    /// The minimum decode throughput, in output tokens per minute of
    /// streaming time: below it (over at least
    /// [`MIN_THROUGHPUT_SAMPLES`](streamgate_core::scoreboard::MIN_THROUGHPUT_SAMPLES)
    /// recent streams) the router's scoreboard marks the backend slow, and
    /// the router tries it after the others, never refusing it outright.
    /// It takes effect in a router: [`Backends`](crate::Backends), or with
    /// [`scoreboard`](Self::scoreboard).
    pub fn min_throughput(mut self, tokens_per_minute: u64) -> Self {
        self.min_throughput = Some(tokens_per_minute);
        self
    }

    /// Behind a router ([`Backends`](crate::Backends)), holds this backend's
    /// stream for a few chunks or milliseconds after its first content and
    /// fails over if it decodes slower than the probe's floor while another
    /// backend is left (see [`ThroughputProbe`]). The caller's first token
    /// comes up to the probe's window later. Off by default.
    pub fn throughput_probe(mut self, probe: ThroughputProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The throughput probe, for the router.
    pub(crate) fn probe(&self) -> Option<ThroughputProbe> {
        self.probe
    }

    /// Behind a router ([`Backends`](crate::Backends)) with
    /// [continuation](streamgate_failover::Continuation) on, this backend
    /// may continue another backend's stream that failed after content,
    /// sent the text so far as a prefill per `how` (e.g.
    /// [`Prefill::FinalAssistant`] for Anthropic). Without it, the backend
    /// is never chosen to continue.
    pub fn continuation(mut self, how: Prefill) -> Self {
        self.continues = Some(how);
        self
    }

    /// How it continues, for the router.
    pub(crate) fn continues(&self) -> Option<Prefill> {
        self.continues
    }

    /// Publishes this backend's events (requests, first content, outcomes,
    /// throughput, refusals, breaker and quota state) to `scoreboard`, the
    /// one its router reads, and sets its
    /// [`min_throughput`](Self::min_throughput) there. [`Backends`](crate::Backends)
    /// does this with its own board.
    pub fn scoreboard(mut self, scoreboard: &Scoreboard) -> Self {
        self.scoreboard = Some(scoreboard.clone());
        self
    }

    /// Adds the metrics layer, reporting to `sink`; every other layer of this
    /// backend reports its events (rejections, breaker transitions, quota
    /// updates, waits) there too.
    pub fn metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Changes every request before any layer sees it, e.g. to give it this
    /// provider's model name when the backends of one router serve the same
    /// logical model under different names. Every layer (quota, metrics, …)
    /// then keys on the changed request.
    pub fn map_request(mut self, map: impl Fn(Req) -> Req + Send + Sync + 'static) -> Self {
        self.map_request = Some(Arc::new(map));
        self
    }

    /// How this backend renames a request's model, if it maps requests.
    pub(crate) fn model_mapping(&self) -> Option<MapRequest<Req>> {
        self.map_request.clone()
    }

    /// Fills in what a [`Backends`](crate::Backends) shares: its sink when
    /// the backend has none, and its scoreboard.
    pub(crate) fn with_shared(mut self, sink: &SharedSink, scoreboard: &Scoreboard) -> Self {
        if self.sink.is_none() {
            self.sink.clone_from(sink);
        }
        if self.scoreboard.is_none() {
            self.scoreboard = Some(scoreboard.clone());
        }
        self
    }

    /// Shares this backend's TPM budget, quota knowledge and breaker state
    /// with the other replicas of a fleet through `state` (for example a
    /// `streamgate::redis::Fleet`), for the layers this backend builds
    /// itself (a [`QuotaTracker`] or [`Breaker`] passed in keeps its own
    /// settings: give it `.shared(..)` when building it).
    pub fn shared_state(mut self, state: impl AsRef<SharedState>) -> Self {
        self.shared = state.as_ref().clone();
        self
    }

    /// Checks every setting and stacks the layers around the client.
    pub fn build<B, C, E>(self) -> Result<BoxStreamingService<Req, C>, BuildError>
    where
        S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Stream<Item = Result<C, E>> + Unpin + Send + 'static,
        E: Into<BoxError> + 'static,
        C: Chunk + Send + 'static,
        Req: LlmRequest + Send + 'static,
    {
        Ok(self.stacks(None, Duration::ZERO)?.service)
    }

    /// Stacks the layers for a router whose first-content deadline is
    /// `router_first` (used when this backend sets none) and whose last
    /// remaining attempt gets `extra` time: with a deadline, the stack owns
    /// it (its timeout layer is innermost, so every layer sees a cut attempt
    /// as a timeout), and a second stack sharing every layer's state carries
    /// the extended deadline.
    pub(crate) fn stacks<B, C, E>(
        self,
        router_first: Option<Duration>,
        extra: Duration,
    ) -> Result<Stacks<Req, C>, BuildError>
    where
        S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Stream<Item = Result<C, E>> + Unpin + Send + 'static,
        E: Into<BoxError> + 'static,
        C: Chunk + Send + 'static,
        Req: LlmRequest + Send + 'static,
    {
        let id = self.id;
        if self.min_throughput == Some(0) {
            return Err(BuildError::ZeroMinThroughput { backend: id });
        }
        // The scoreboard hears every event of every layer, beside the
        // backend's own sink.
        let sink = match self.scoreboard {
            None => self.sink,
            Some(board) => {
                if let Some(min) = self.min_throughput {
                    board.min_throughput(&id, min);
                }
                let board: Arc<dyn MetricsSink> = Arc::new(board);
                Some(match self.sink {
                    Some(own) => Arc::new(Fanout::new().with(own).with(board)),
                    None => board,
                })
            }
        };

        let timeout_layer = |first: Duration| {
            let mut config = TimeoutConfig::builder(first);
            if let Some(idle) = self.idle {
                config = config.idle(idle);
            }
            if let Some(total) = self.total {
                config = config.total(total);
            }
            config
                .build()
                .map(FirstChunkTimeoutLayer::from_config)
                .map_err(|source| BuildError::Timeout {
                    backend: id.clone(),
                    source,
                })
        };
        let first = self.first_content.or(router_first);
        let (timeout, extended) = match (first, self.idle, self.total) {
            (None, None, None) => (None, None),
            (None, _, _) => {
                return Err(BuildError::MissingFirstContentTimeout {
                    backend: id.clone(),
                })
            }
            (Some(first), _, _) => {
                let extended = if extra.is_zero() {
                    None
                } else {
                    Some(timeout_layer(first.saturating_add(extra))?)
                };
                (Some(timeout_layer(first)?), extended)
            }
        };

        let breaker_error = |source| BuildError::Breaker {
            backend: id.clone(),
            source,
        };
        let shared = self.shared;
        let with_sink = |builder: BreakerBuilder| {
            let builder = match &shared.breaker {
                Some(state) => builder.shared(state.clone()),
                None => builder,
            };
            match &sink {
                Some(sink) => builder.sink(sink.clone()),
                None => builder,
            }
        };
        let breaker = match self.breaker {
            BreakerChoice::Off => None,
            BreakerChoice::PerModel(registry) => Some(CircuitBreakerLayer::per_model(registry)),
            BreakerChoice::Handle(breaker) => Some(CircuitBreakerLayer::new(breaker)),
            BreakerChoice::Default => Some(CircuitBreakerLayer::new(
                with_sink(Breaker::builder(id.clone()))
                    .build()
                    .map_err(breaker_error)?,
            )),
            BreakerChoice::Configure(configure) => Some(CircuitBreakerLayer::new(
                configure(with_sink(Breaker::builder(id.clone())))
                    .build()
                    .map_err(breaker_error)?,
            )),
        };

        let quota_error = |source| BuildError::Quota {
            backend: id.clone(),
            source,
        };
        let tracker = match self.quota {
            QuotaChoice::Off => None,
            QuotaChoice::Tracker(tracker) => Some(tracker),
            QuotaChoice::Default => {
                let mut builder = QuotaTracker::builder();
                if let Some(state) = &shared.quota {
                    builder = builder.shared(state.clone());
                }
                if let Some(sink) = &sink {
                    builder = builder.sink(sink.clone());
                }
                Some(builder.build().map_err(quota_error)?)
            }
        };
        let quota = tracker.clone().map(|tracker| {
            let mut layer = QuotaLayer::builder(id.clone()).tracker(tracker);
            if let Some(sink) = &sink {
                layer = layer.sink(sink.clone());
            }
            layer.build()
        });
        let quota = quota.transpose().map_err(quota_error)?;

        let pacing = match self.pacing {
            None => None,
            Some(configure) => {
                let mut builder = PacingLayer::builder(id.clone());
                if let Some(tracker) = &tracker {
                    builder = builder.adopt_learned(tracker.clone());
                }
                if let Some(sink) = &sink {
                    builder = builder.sink(sink.clone());
                }
                Some(configure(builder).build().map_err(quota_error)?)
            }
        };

        let tpm = if let Some(budget) = self.tpm_budget {
            let mut builder = TpmLayer::builder(id.clone()).max_tokens_per_minute(budget);
            if let Some(state) = &shared.tpm {
                builder = builder.shared(state.clone());
            }
            if let Some(sink) = &sink {
                builder = builder.sink(sink.clone());
            }
            Some(builder.build().map_err(|source| BuildError::Tpm {
                backend: id.clone(),
                source,
            })?)
        } else {
            None
        };

        let metrics = sink.map(|sink| MetricsLayer::new(id.clone(), sink));
        // One guard layer for metrics, TPM, quota and the breaker, in the
        // stack's order: one future and one body wrapper for the four, each
        // chunk read once. With pacing, the breaker sits behind it in the
        // same place: a call that must wait is asked of the breaker only
        // after the wait (a paced request must not hold a probe).
        let metrics = metrics.map(MetricsLayer::into_guard);
        let tpm = tpm.map(TpmLayer::into_guard);
        let quota = quota.map(QuotaLayer::into_guard);
        let breaker = breaker.map(CircuitBreakerLayer::into_guard);
        let map_request = self
            .map_request
            .map(|map| MapRequestLayer::new(move |request: Req| map(request)));

        // Innermost first: the order of the table above, read upwards. Both
        // stacks share every layer's state; only the deadline differs.
        // Always a guard layer, even with nothing in it: each place of the
        // stack then has one type, and no body needs a wrapper per optional
        // layer (an empty guard only delegates).
        let client = self.client;
        let layers = match pacing {
            Some(pacing) => Layers::Paced(GuardLayer::new(
                id.clone(),
                (metrics, tpm, quota, pacing.guard(breaker)),
            )),
            None => Layers::Fused(GuardLayer::new(id.clone(), (metrics, tpm, quota, breaker))),
        };
        let stack = |timeout: Option<FirstChunkTimeoutLayer>| {
            let service = apply(timeout, client.clone());
            // One allocation per request, shared by the future and the body.
            match &layers {
                Layers::Paced(guards) => {
                    let service = guards.layer(service);
                    streamgate_core::boxed(apply_same(map_request.clone(), service))
                }
                Layers::Fused(guards) => {
                    let service = guards.layer(service);
                    streamgate_core::boxed(apply_same(map_request.clone(), service))
                }
            }
        };
        let owns_deadline = timeout.is_some();
        let service = stack(timeout);
        let extended = extended.map(|layer| stack(Some(layer)));
        Ok(Stacks {
            service,
            deadline: owns_deadline.then_some(extended),
        })
    }
}

/// Which of a layer's settings a [`Backend`] was given.
#[cfg(feature = "config")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Given {
    /// The layer with its defaults.
    Default,
    /// No layer.
    Off,
    /// Settings (or a handle) given by the program.
    Custom,
}

/// The settings a [`Backend`] holds as data, for
/// [`Backends::effective_config`](crate::Backends::effective_config).
#[cfg(feature = "config")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) first_content: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) total: Option<Duration>,
    pub(crate) tpm_budget: Option<u64>,
    pub(crate) min_throughput: Option<u64>,
    pub(crate) probe: Option<ThroughputProbe>,
    pub(crate) continues: Option<Prefill>,
    pub(crate) breaker: Given,
    pub(crate) quota: Given,
    pub(crate) pacing: bool,
    pub(crate) shared: bool,
}

#[cfg(feature = "config")]
impl<S, Req> Backend<S, Req> {
    /// What this backend was given, as data.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            first_content: self.first_content,
            idle: self.idle,
            total: self.total,
            tpm_budget: self.tpm_budget,
            min_throughput: self.min_throughput,
            probe: self.probe,
            continues: self.continues,
            breaker: match self.breaker {
                BreakerChoice::Default => Given::Default,
                BreakerChoice::Off => Given::Off,
                _ => Given::Custom,
            },
            quota: match self.quota {
                QuotaChoice::Default => Given::Default,
                QuotaChoice::Off => Given::Off,
                QuotaChoice::Tracker(_) => Given::Custom,
            },
            pacing: self.pacing.is_some(),
            shared: self.shared.tpm.is_some()
                || self.shared.quota.is_some()
                || self.shared.breaker.is_some(),
        }
    }
}

/// The guards of a built stack, by whether it paces.
enum Layers {
    /// Pacing between the gates and the breaker, in the same layer.
    Paced(GuardLayer<Paced>),
    /// Nothing between them.
    Fused(GuardLayer<Fused>),
}

/// The gates, then the breaker.
type Fused = (
    Option<Measure>,
    Option<TpmGuard>,
    Option<QuotaGuard>,
    Option<BreakerGuard>,
);

/// The gates, then pacing in front of the breaker.
type Paced = (
    Option<Measure>,
    Option<TpmGuard>,
    Option<QuotaGuard>,
    PacedGuard<Option<BreakerGuard>>,
);

/// A backend's stacks for a router (see [`Backend::stacks`]).
pub(crate) struct Stacks<Req, C> {
    pub(crate) service: BoxStreamingService<Req, C>,
    /// `Some` when the stack owns its first-content deadline, with the
    /// stack for the last remaining attempt when it gets extra time.
    pub(crate) deadline: Option<Option<BoxStreamingService<Req, C>>>,
}
