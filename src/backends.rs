//! [`Backends`]: several [`Backend`]s behind one failover router.

use std::{fmt, sync::Arc, time::Duration};

use futures_core::Stream;
use http::Response;
use streamgate_core::{
    BackendId, BoxError, Chunk, LlmRequest, MetricsSink, Prefill, SharedSink,
};
use streamgate_core::scoreboard::Scoreboard;
use streamgate_failover::{Failover, FailoverBuilder, ThroughputProbe};
use tower_service::Service;

use crate::{backend::Stacks, Backend, BuildError};

type Pending<Req, C> = Box<
    dyn FnOnce(&SharedSink, &Scoreboard, Option<Duration>, Duration) -> Result<Stacks<Req, C>, BuildError>
        + Send,
>;

/// A request's model as one backend's layers report it.
type ModelOf<Req> = Arc<dyn Fn(&Req) -> String + Send + Sync>;

struct Entry<Req, C> {
    id: BackendId,
    /// The model the backend's layers report for a request, when it maps
    /// requests.
    model_of: Option<ModelOf<Req>>,
    probe: Option<ThroughputProbe>,
    continues: Option<Prefill>,
    #[cfg(feature = "config")]
    settings: crate::backend::Settings,
    build: Pending<Req, C>,
}

type ConfigureFailover<Req, C> = Box<dyn FnOnce(FailoverBuilder<Req, C>) -> FailoverBuilder<Req, C> + Send>;

/// Backends in priority order, each stacked by its [`Backend`] builder, behind
/// one [`Failover`] router.
///
/// What the backends share:
/// - the sink given to [`metrics`](Self::metrics), for every backend that
///   has none of its own, and for the router's failover and wait events;
/// - one [`Scoreboard`]: every backend's layers publish to it and the
///   router reads it, so a backend whose breaker is open or whose quota is
///   spent is skipped without a call, one cut by its first-content deadline
///   or below its [`min_throughput`](Backend::min_throughput) is tried after
///   the others, and the routing [strategies](streamgate_failover::Strategy)
///   see each backend's time to first content and requests in flight.
///
/// The router keeps the failover crate's defaults (the ordered strategy, no
/// retries of the same backend, no waiting when every backend refuses, no
/// deadline of its own) unless changed with [`failover`](Self::failover).
///
/// ```
/// use std::time::Duration;
/// use streamgate::prelude::*;
/// use streamgate::core::testing::{Script, ScriptedService, TestRequest};
/// use streamgate::core::ErrorClass;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), BoxError> {
/// let overloaded = ScriptedService::new(Script::new().fail_call(ErrorClass::Overloaded));
/// let healthy = ScriptedService::new(Script::new().text("hello"));
/// let router = Backends::new()
///     .backend(Backend::new("primary", overloaded))
///     .backend(Backend::new("secondary", healthy))
///     .failover(|f| f.retries(1))
///     .build()?;
/// let response = router.oneshot(TestRequest::new("gpt-4o-mini")).await?;
/// let report = response.extensions().get::<FailoverReport>().unwrap();
/// assert_eq!(report.served_by.as_str(), "secondary");
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Backends<Req, C> {
    entries: Vec<Entry<Req, C>>,
    sink: SharedSink,
    scoreboard: Scoreboard,
    configure: Option<ConfigureFailover<Req, C>>,
    /// The configuration this chain was made from, if any.
    #[cfg(feature = "config")]
    source: Option<Arc<crate::config::Config>>,
    /// The first section of `source` replaced in code since.
    #[cfg(feature = "config")]
    replaced: Option<&'static str>,
}

impl<Req, C> fmt::Debug for Backends<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field(
                "backends",
                &self.entries.iter().map(|e| &e.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<Req, C> Default for Backends<Req, C> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            sink: None,
            scoreboard: Scoreboard::new(),
            configure: None,
            #[cfg(feature = "config")]
            source: None,
            #[cfg(feature = "config")]
            replaced: None,
        }
    }
}

impl<Req: 'static, C: 'static> Backends<Req, C> {
    /// No backends yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend; backends are tried in the order they are added.
    pub fn backend<S, B, E>(mut self, backend: Backend<S, Req>) -> Self
    where
        S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Stream<Item = Result<C, E>> + Unpin + Send + 'static,
        E: Into<BoxError> + 'static,
        C: Chunk + Send,
        Req: LlmRequest + Send,
    {
        self.entries.push(Entry {
            id: backend.id().clone(),
            probe: backend.probe(),
            continues: backend.continues(),
            #[cfg(feature = "config")]
            settings: backend.settings(),
            model_of: backend.model_mapping().map(|map| {
                Arc::new(move |request: &Req| map(request.clone()).model().to_owned())
                    as ModelOf<Req>
            }),
            build: Box::new(move |sink, scoreboard, first, extra| {
                backend.with_shared(sink, scoreboard).stacks(first, extra)
            }),
        });
        self
    }

    /// Reports every backend's events (unless it has its own sink) and the
    /// router's to `sink`, e.g. an `Arc<PerformanceTracker>`.
    pub fn metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        #[cfg(feature = "config")]
        self.changed_in_code("metrics");
        self
    }

    /// Uses `scoreboard` instead of a board of the router's own, e.g. to
    /// read it elsewhere, or to share it with backends outside this router.
    pub fn scoreboard(mut self, scoreboard: &Scoreboard) -> Self {
        self.scoreboard = scoreboard.clone();
        self
    }

    /// Configures the router: `configure` gets the [`FailoverBuilder`] (with
    /// the sink) and returns it changed, e.g.
    /// `|f| f.retries(1).wait_when_unavailable(Duration::from_secs(5))`.
    ///
    /// The router's [`first_content_timeout`](FailoverBuilder::first_content_timeout)
    /// becomes the deadline of every backend that sets none, and its
    /// [`last_attempt_extra`](FailoverBuilder::last_attempt_extra) extends
    /// the deadline of the last remaining attempt; both are enforced by each
    /// backend's own timeout layer, so the breaker and metrics see an
    /// attempt cut by the deadline as a timeout. Backends added inside
    /// `configure` come before the ones added with [`backend`](Self::backend).
    pub fn failover(
        mut self,
        configure: impl FnOnce(FailoverBuilder<Req, C>) -> FailoverBuilder<Req, C> + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        #[cfg(feature = "config")]
        self.changed_in_code("router");
        self
    }

    /// Builds every backend's stack, then the router.
    pub fn build(self) -> Result<Failover<Req, C>, BuildError> {
        let mut router = Failover::builder().scoreboard(&self.scoreboard);
        if let Some(sink) = &self.sink {
            router = router.sink(sink.clone());
        }
        // The router's settings first: its first-content deadline and the
        // last attempt's extra time go into each backend's own timeout
        // layer, so one mechanism cuts an attempt and every layer sees it.
        if let Some(configure) = self.configure {
            router = configure(router);
        }
        let first = router.configured_first_content_timeout();
        let extra = router.configured_last_attempt_extra();
        for entry in self.entries {
            let stacks = (entry.build)(&self.sink, &self.scoreboard, first, extra)?;
            if let Some(probe) = entry.probe {
                router = router.throughput_probe(entry.id.clone(), probe);
            }
            if let Some(how) = entry.continues {
                router = router.continues_with(entry.id.clone(), how);
            }
            if let Some(model_of) = entry.model_of {
                // The backend's layers report the mapped model: read the
                // scoreboard under the same name.
                router = router.model_of(entry.id.clone(), move |request: &Req| model_of(request));
            }
            router = match stacks.deadline {
                Some(extended) => router.backend_with_deadline(entry.id, stacks.service, extended),
                None => router.backend(entry.id, stacks.service),
            };
        }
        router
            .build()
            .map_err(|source| BuildError::Failover { source })
    }
}

#[cfg(feature = "config")]
impl Backends<streamgate_providers::ChatRequest, streamgate_providers::ChatChunk> {
    /// The builder chain `config` describes: each backend's client and
    /// layers, the sinks and the router, as the methods of the same names
    /// would set them (see [`config`](crate::config)). Keys (and a
    /// `[shared_state]` section's Redis URL) are read from the environment
    /// now; `build()` then cannot fail on a setting, since the
    /// configuration was checked by the same builders when loaded. With
    /// `[shared_state]`, call it inside a tokio runtime (see
    /// [`Runtime::new`](crate::config::Runtime::new)).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        let runtime = crate::config::Runtime::new(config)?;
        Self::from_config_with(config, &runtime)
    }

    /// [`from_config`](Self::from_config) with the sinks, trackers and key
    /// lookup of `runtime`, which the program keeps to read them.
    pub fn from_config_with(
        config: &crate::config::Config,
        runtime: &crate::config::Runtime,
    ) -> Result<Self, crate::config::ConfigError> {
        let mut backends = crate::config::assemble(config, runtime)?;
        backends.source = Some(Arc::new(config.clone()));
        Ok(backends)
    }
}

#[cfg(feature = "config")]
impl<Req, C> Backends<Req, C> {
    /// Notes that `section` of the configuration this chain was made from
    /// no longer describes it.
    fn changed_in_code(&mut self, section: &'static str) {
        if self.source.is_some() && self.replaced.is_none() {
            self.replaced = Some(section);
        }
    }

    /// Every setting this chain builds with, the defaults that apply
    /// filled in, as the configuration that builds it again (`Display`
    /// prints it as TOML). What each [`Backend`] builder holds (its
    /// deadlines, budgets, probe, and which layers are on) is read from
    /// the builder; what a builder cannot tell (the provider client, the
    /// breaker, quota and pacing sections, the router, the sinks) from the
    /// configuration the chain was made from.
    ///
    /// An error for a chain made in code, or for a backend, the router or
    /// the sink set in code since: their settings are the program's own.
    pub fn effective_config(&self) -> Result<crate::config::Config, crate::config::ConfigError> {
        if let Some(section) = self.replaced {
            return Err(crate::config::ConfigError::new(
                section,
                "replaced in code: its settings are not known",
            ));
        }
        let source = self.source.as_deref().ok_or_else(|| {
            crate::config::ConfigError::new(
                "",
                "this chain was made in code: only a chain from `Backends::from_config` \
                 describes its backends",
            )
        })?;
        let backends = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| crate::config::describe_backend(source, i, &entry.id, &entry.settings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::config::describe(source, backends))
    }
}
