//! From a [`Config`] to the `Backends` builder chain: the sinks, the quota
//! trackers, each backend's client and layers, and the router; and the
//! same chain over stand-in clients to validate a configuration.

use std::{
    fmt,
    future::{ready, Ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;
use http::Response;
use streamgate_core::{BackendId, BoxError, MetricsSink};
use streamgate_metrics::{Fanout, MetricsFacadeSink, PerformanceTracker, TracingSink};
use streamgate_providers::{ChatChunk, ChatRequest};
use streamgate_quota::QuotaTracker;
use tower_service::Service;

use super::{BackendConfig, Config, ConfigError, ProviderKind, QuotaConfig, RouterConfig, Toggle};
use crate::{Backend, Backends, BuildError};

type Secrets = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a [`Config`] builds besides the router, for the program to keep:
/// the performance tracker, the store, the Redis fleet and each backend's
/// quota tracker (to read them), and where secrets (API keys, the Redis
/// URL) are read from.
///
/// [`Backends::from_config`](crate::Backends::from_config) makes one and
/// drops it; make it yourself to keep the handles:
///
/// ```
/// use streamgate::config::{Config, Runtime};
/// use streamgate::Backends;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml_str(r#"
///     metrics = { tracker = true }
///     [[backends]]
///     name = "local"
///     provider = "ollama"
/// "#)?;
/// let runtime = Runtime::new(&config)?;
/// let router = Backends::from_config_with(&config, &runtime)?.build()?;
/// let tracker = runtime.tracker().expect("the config asks for one");
/// # drop((router, tracker));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    sink: Option<Arc<dyn MetricsSink>>,
    tracker: Option<Arc<PerformanceTracker>>,
    #[cfg(feature = "store")]
    store: Option<streamgate_store::Store>,
    #[cfg(feature = "redis")]
    fleet: Option<streamgate_redis::Fleet>,
    quota: Vec<(BackendId, QuotaTracker)>,
    secrets: Secrets,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("sink", &self.sink.is_some())
            .field("tracker", &self.tracker.is_some())
            .field("shared_state", &self.has_fleet())
            .field(
                "quota",
                &self.quota.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn from_environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Runtime {
    /// Validates `config`, then makes its sinks (opening the store, if
    /// any), the Redis fleet of a `[shared_state]` section and a quota
    /// tracker for each backend with the quota gate. Secrets are read from
    /// the process environment (see [`with_secrets`](Self::with_secrets)).
    ///
    /// With `[shared_state]`, call it inside a tokio runtime: the fleet
    /// starts connecting in the background at once (and decides locally
    /// until connected), so no Redis needs to be reachable yet.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Self::with_secrets(config, from_environment)
    }

    /// [`new`](Self::new), reading each secret (the API keys, the Redis
    /// URL) with `lookup`, given the variable's name, instead of from the
    /// process environment: a secret manager, or a test.
    pub fn with_secrets(
        config: &Config,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let secrets: Secrets = Arc::new(lookup);
        config.validate()?;
        let metrics = config.metrics.effective();
        let cap = metrics
            .model_cap
            .unwrap_or(streamgate_metrics::names::DEFAULT_MODEL_CAP);
        let mut sinks: Vec<Arc<dyn MetricsSink>> = Vec::new();
        let tracker = if metrics.tracker == Some(true) {
            let mut builder = PerformanceTracker::builder().model_cap(cap);
            if let Some(samples) = metrics.tracker_min_samples {
                builder = builder.min_samples(samples);
            }
            let tracker = Arc::new(builder.build().map_err(|e| tracker_error(&e))?);
            sinks.push(tracker.clone());
            Some(tracker)
        } else {
            None
        };
        if metrics.prometheus == Some(true) {
            sinks.push(Arc::new(MetricsFacadeSink::with_model_cap(cap)));
        }
        if metrics.tracing == Some(true) {
            sinks.push(Arc::new(TracingSink::new()));
        }
        #[cfg(feature = "opentelemetry")]
        if metrics.opentelemetry == Some(true) {
            let name = metrics
                .opentelemetry_meter
                .clone()
                .unwrap_or_else(|| super::DEFAULT_METER.to_owned());
            let meter = opentelemetry::global::meter_with_scope(
                opentelemetry::InstrumentationScope::builder(name).build(),
            );
            sinks.push(Arc::new(
                streamgate_metrics::OpenTelemetrySink::with_model_cap(&meter, cap),
            ));
        }
        #[cfg(feature = "store")]
        let store = match &config.store {
            None => None,
            Some(store) => {
                let mut builder = store.configure(streamgate_store::Store::builder(&store.path));
                for backend in &config.backends {
                    builder = builder.provider(backend.name.clone(), backend.provider.as_str());
                }
                let store = builder.build().map_err(|e| store_error(&e))?;
                sinks.push(Arc::new(store.clone()));
                Some(store)
            }
        };
        let sink: Option<Arc<dyn MetricsSink>> = match sinks.len() {
            0 => None,
            1 => sinks.pop(),
            _ => Some(Arc::new(
                sinks
                    .into_iter()
                    .fold(Fanout::new(), |fanout, sink| fanout.with(sink)),
            )),
        };
        #[cfg(feature = "redis")]
        let fleet = match &config.shared_state {
            None => None,
            Some(shared) => Some(fleet(shared, &secrets, sink.as_ref())?),
        };
        let mut runtime = Self {
            sink,
            tracker,
            #[cfg(feature = "store")]
            store,
            #[cfg(feature = "redis")]
            fleet,
            quota: Vec::new(),
            secrets,
        };
        runtime.quota = quota_trackers(config, &runtime)?;
        Ok(runtime)
    }

    /// The sink every backend and the router report to, if any.
    pub fn sink(&self) -> Option<&Arc<dyn MetricsSink>> {
        self.sink.as_ref()
    }

    /// The performance tracker, with `metrics.tracker = true`.
    pub fn tracker(&self) -> Option<&Arc<PerformanceTracker>> {
        self.tracker.as_ref()
    }

    /// The analytics store, with a `[store]` section.
    #[cfg(feature = "store")]
    pub fn store(&self) -> Option<&streamgate_store::Store> {
        self.store.as_ref()
    }

    /// The Redis fleet of the `[shared_state]` section (its connection
    /// and counters).
    #[cfg(feature = "redis")]
    pub fn fleet(&self) -> Option<&streamgate_redis::Fleet> {
        self.fleet.as_ref()
    }

    fn has_fleet(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.fleet.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The shared state `backend` uses, if any.
    #[cfg(feature = "redis")]
    fn shared_for(&self, backend: &BackendConfig) -> Option<&streamgate_redis::Fleet> {
        self.fleet
            .as_ref()
            .filter(|_| backend.shared_state != Some(false))
    }

    /// The quota tracker of the backend called `backend`, unless its quota
    /// gate is off.
    pub fn quota(&self, backend: &str) -> Option<&QuotaTracker> {
        self.quota
            .iter()
            .find(|(id, _)| id.as_str() == backend)
            .map(|(_, tracker)| tracker)
    }

    /// Every backend's quota tracker, in the configuration's order.
    pub fn quota_trackers(&self) -> impl Iterator<Item = (&BackendId, &QuotaTracker)> {
        self.quota.iter().map(|(id, tracker)| (id, tracker))
    }

    fn secret(&self, backend: &BackendConfig, path: &str) -> Result<Option<String>, ConfigError> {
        let Some(name) = backend.key_variable() else {
            return Ok(None);
        };
        read_secret(&self.secrets, name, &format!("{path}.api_key_env")).map(Some)
    }
}

/// The secret in variable `name`; an error at `at` naming the variable
/// (never its value) when it is unset or empty.
fn read_secret(secrets: &Secrets, name: &str, at: &str) -> Result<String, ConfigError> {
    match secrets(name) {
        None => Err(ConfigError::new(
            at,
            format!("environment variable {name} is not set"),
        )),
        Some(value) if value.trim().is_empty() => Err(ConfigError::new(
            at,
            format!("environment variable {name} is empty"),
        )),
        Some(value) => Ok(value),
    }
}

/// The fleet of `[shared_state]`, on the URL its variable holds.
#[cfg(feature = "redis")]
fn fleet(
    shared: &super::SharedStateConfig,
    secrets: &Secrets,
    sink: Option<&Arc<dyn MetricsSink>>,
) -> Result<streamgate_redis::Fleet, ConfigError> {
    let name = shared.url_variable();
    let url = read_secret(secrets, name, "shared_state.redis_url_env")?;
    let mut builder = shared.configure(streamgate_redis::Fleet::builder(url));
    if let Some(sink) = sink {
        builder = builder.sink(sink.clone());
    }
    builder.build().map_err(|error| {
        // The fleet's errors hold no password (it redacts them).
        let message = error.to_string();
        if message.starts_with("invalid redis url") {
            ConfigError::new(
                "shared_state.redis_url_env",
                format!("the value of {name}: {message}"),
            )
        } else if message.contains("tokio runtime") {
            ConfigError::new(
                "shared_state",
                "needs a tokio runtime: build the router inside one",
            )
        } else {
            ConfigError::new("shared_state", message)
        }
    })
}

fn tracker_error(error: &streamgate_metrics::ConfigError) -> ConfigError {
    let message = error.to_string();
    let key = if message.starts_with("model cap") {
        "metrics.model_cap"
    } else {
        "metrics.tracker_min_samples"
    };
    ConfigError::new(key, message)
}

#[cfg(feature = "store")]
fn store_error(error: &streamgate_store::StoreError) -> ConfigError {
    let message = error.to_string();
    let key = [
        ("queue capacity", "store.queue_capacity"),
        ("batch size", "store.batch_size"),
        ("maintenance interval", "store.maintenance_interval"),
        ("maximum age", "store.max_age"),
        ("maximum rows", "store.max_rows"),
    ]
    .iter()
    .find(|(words, _)| match error {
        streamgate_store::StoreError::Config(e) => e.to_string().starts_with(words),
        _ => false,
    })
    .map_or("store.path", |(_, key)| key);
    ConfigError::new(key, message)
}

/// A quota tracker for each backend whose gate is on, reporting to the
/// runtime's sink and sharing through its fleet as the `Backend` builder's
/// default tracker does.
fn quota_trackers(
    config: &Config,
    runtime: &Runtime,
) -> Result<Vec<(BackendId, QuotaTracker)>, ConfigError> {
    let mut trackers = Vec::new();
    for (i, backend) in config.backends.iter().enumerate() {
        let settings = match &backend.quota {
            Some(Toggle::Off) => continue,
            Some(Toggle::On(settings)) => settings.clone(),
            None => QuotaConfig::default(),
        };
        let mut builder = QuotaTracker::builder();
        if let Some(sink) = &runtime.sink {
            builder = builder.sink(sink.clone());
        }
        #[cfg(feature = "redis")]
        if let Some(fleet) = runtime.shared_for(backend) {
            builder = builder.shared(fleet.quota());
        }
        let tracker = settings.build(&format!("backends[{i}].quota"), builder)?;
        trackers.push((BackendId::new(backend.name.as_str()), tracker));
    }
    Ok(trackers)
}

/// Checks `config` by building its router over stand-in clients: every
/// builder applies its own rules, and their errors are given the path of
/// the setting.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    config.router.check()?;
    if let Some(shared) = &config.shared_state {
        shared.check()?;
    }
    for (i, backend) in config.backends.iter().enumerate() {
        let path = format!("backends[{i}]");
        backend.check(&path)?;
        if let Some(probe) = &backend.throughput_probe {
            check_probe(&format!("{path}.throughput_probe"), probe)?;
        }
        if backend.shared_state.is_some() && config.shared_state.is_none() {
            return Err(ConfigError::new(
                format!("{path}.shared_state"),
                "only with a [shared_state] section",
            ));
        }
        if config.backends[..i].iter().any(|b| b.name == backend.name) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("backend names must be unique ({:?} is taken)", backend.name),
            ));
        }
    }
    if config.router.continuation.is_some()
        && config.backends.iter().all(|b| b.continuation.is_none())
    {
        return Err(ConfigError::new(
            "router.continuation",
            "no backend can continue a stream: give the ones that can a `continuation` \
             mechanism, e.g. continuation = \"final_assistant\"",
        ));
    }
    if config.metrics.opentelemetry == Some(true) && !cfg!(feature = "opentelemetry") {
        return Err(ConfigError::new(
            "metrics.opentelemetry",
            "needs the `opentelemetry` feature",
        ));
    }
    if config.store.is_some() && !cfg!(feature = "store") {
        return Err(ConfigError::new("store", "needs the `store` feature"));
    }
    let metrics = config.metrics.effective();
    let mut tracker = PerformanceTracker::builder();
    if let Some(cap) = metrics.model_cap {
        tracker = tracker.model_cap(cap);
    }
    if let Some(samples) = metrics.tracker_min_samples {
        tracker = tracker.min_samples(samples);
    }
    tracker.build().map_err(|e| tracker_error(&e))?;
    let mut runtime = Runtime {
        sink: None,
        tracker: None,
        #[cfg(feature = "store")]
        store: None,
        #[cfg(feature = "redis")]
        fleet: None,
        quota: Vec::new(),
        secrets: Arc::new(|_| None),
    };
    runtime.quota = quota_trackers(config, &runtime)?;
    let mut backends = Backends::new();
    for backend in &config.backends {
        backends = backends.backend(layers(backend, &runtime, Unreachable));
    }
    let router = config.router.clone();
    backends
        .failover(move |f| router.configure(f))
        .build()
        .map(drop)
        .map_err(|error| explain(config, &error))
}

/// Checks a probe with the router's own rules, on a router of one
/// stand-in backend, so the error names this backend's probe.
fn check_probe(path: &str, probe: &super::ProbeConfig) -> Result<(), ConfigError> {
    streamgate_failover::Failover::<ChatRequest, ChatChunk>::builder()
        .service("probe", Unreachable)
        .throughput_probe("probe", probe.probe())
        .build()
        .map(drop)
        .map_err(|error| {
            let message = error.message();
            let key = if message.starts_with("probe chunks") {
                ".chunks"
            } else if message.starts_with("probe window") {
                ".window"
            } else if message.starts_with("probe floor") {
                ".min_tokens_per_sec"
            } else {
                ""
            };
            ConfigError::new(format!("{path}{key}"), message)
        })
}

/// The `Backends` chain for `config`, with the real clients.
pub(crate) fn assemble(
    config: &Config,
    runtime: &Runtime,
) -> Result<Backends<ChatRequest, ChatChunk>, ConfigError> {
    config.validate()?;
    let mut backends = Backends::new();
    for (i, backend) in config.backends.iter().enumerate() {
        backends = with_client(backends, backend, &format!("backends[{i}]"), runtime)?;
    }
    if let Some(sink) = &runtime.sink {
        backends = backends.metrics(sink.clone());
    }
    let router = config.router.clone();
    Ok(backends.failover(move |f| router.configure(f)))
}

/// One backend's `Backend` builder calls around `client`.
fn layers<S>(config: &BackendConfig, runtime: &Runtime, client: S) -> Backend<S, ChatRequest> {
    let mut backend = Backend::new(config.name.as_str(), client);
    if let Some(after) = config.first_content_timeout {
        backend = backend.first_content_timeout(after);
    }
    if let Some(gap) = config.idle_timeout {
        backend = backend.idle_timeout(gap);
    }
    if let Some(limit) = config.total_timeout {
        backend = backend.total_timeout(limit);
    }
    match &config.breaker {
        None => {}
        Some(Toggle::Off) => backend = backend.without_circuit_breaker(),
        Some(Toggle::On(settings)) => {
            let settings = settings.clone();
            backend = backend.circuit_breaker_with(move |b| settings.configure(b));
        }
    }
    match runtime.quota(&config.name) {
        Some(tracker) => backend = backend.quota(tracker.clone()),
        None => backend = backend.without_quota(),
    }
    #[cfg(feature = "redis")]
    if let Some(fleet) = runtime.shared_for(config) {
        backend = backend.shared_state(fleet);
    }
    if let Some(pacing) = &config.pacing {
        let pacing = pacing.clone();
        backend = backend.pacing(move |p| pacing.configure(p));
    }
    if let Some(budget) = config.tpm_budget {
        backend = backend.tpm_budget(budget);
    }
    if let Some(min) = config.min_throughput {
        backend = backend.min_throughput(min);
    }
    if let Some(probe) = &config.throughput_probe {
        backend = backend.throughput_probe(probe.probe());
    }
    if let Some(how) = config.continuation {
        backend = backend.continuation(how.prefill());
    }
    if !config.models.is_empty() {
        let models = config.models.clone();
        backend = backend.map_request(move |mut request: ChatRequest| {
            if let Some(model) = models.get(&request.model).or_else(|| models.get("*")) {
                request.model.clone_from(model);
            }
            request
        });
    }
    backend
}

/// Builds the provider client of `config` and adds the backend.
fn with_client(
    backends: Backends<ChatRequest, ChatChunk>,
    config: &BackendConfig,
    path: &str,
    runtime: &Runtime,
) -> Result<Backends<ChatRequest, ChatChunk>, ConfigError> {
    use streamgate_providers::{anthropic::Anthropic, gemini::Gemini, ollama::Ollama, openai};

    let key = runtime.secret(config, path)?;
    let failed = |error: streamgate_providers::ConfigError| client_error(config, path, &error);
    // The options every client builder has, applied the same way.
    macro_rules! common {
        ($builder:expr) => {{
            let mut builder = $builder;
            if let Some(key) = &key {
                builder = builder.api_key(key.as_str());
            }
            if let Some(timeout) = config.connect_timeout {
                builder = builder.connect_timeout(timeout);
            }
            builder
        }};
    }
    macro_rules! with_url {
        ($builder:expr) => {{
            let mut builder = $builder;
            if let Some(url) = &config.base_url {
                builder = builder.base_url(url.as_str());
            }
            common!(builder)
        }};
    }
    match config.provider {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            let client = with_url!(openai::OpenAiChat::builder())
                .build()
                .map_err(failed)?;
            let client = client.with_include_usage(config.include_usage.unwrap_or(true));
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::OpenAiResponses => {
            let client = with_url!(openai::OpenAiResponses::builder())
                .build()
                .map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::Azure => {
            let endpoint = config.base_url.clone().unwrap_or_default();
            let mut builder = common!(openai::AzureOpenAi::builder(endpoint));
            if let Some(deployment) = &config.deployment {
                builder = builder.deployment(deployment.as_str());
            }
            if let Some(version) = &config.api_version {
                builder = builder.api_version(version.as_str());
            }
            let client = builder.build().map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::Anthropic => {
            let client = with_url!(Anthropic::builder()).build().map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::Gemini => {
            let client = with_url!(Gemini::builder()).build().map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::Vertex => {
            let project = config.project.clone().unwrap_or_default();
            let location = config.location.clone().unwrap_or_default();
            let client = with_url!(Gemini::vertex(project, location))
                .build()
                .map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        ProviderKind::Ollama => {
            let client = with_url!(Ollama::builder()).build().map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        #[cfg(feature = "bedrock")]
        ProviderKind::Bedrock => {
            use streamgate_providers::bedrock::Bedrock;
            let mut builder = common!(Bedrock::builder());
            if let Some(region) = &config.region {
                builder = builder.region(region.as_str());
            }
            if let Some(url) = &config.base_url {
                builder = builder.endpoint_url(url.as_str());
            }
            let client = builder.build().map_err(failed)?;
            Ok(backends.backend(layers(config, runtime, client)))
        }
        #[cfg(not(feature = "bedrock"))]
        ProviderKind::Bedrock => Err(ConfigError::new(
            format!("{path}.provider"),
            "bedrock needs the `bedrock` feature",
        )),
    }
}

/// A client builder's error at the key it is about; never the key itself.
fn client_error(
    config: &BackendConfig,
    path: &str,
    error: &streamgate_providers::ConfigError,
) -> ConfigError {
    use streamgate_providers::ConfigError as E;
    let key = match error {
        E::InvalidBaseUrl(_) if config.provider == ProviderKind::Vertex => {
            if config.base_url.is_some() {
                "base_url"
            } else {
                "location"
            }
        }
        E::InvalidBaseUrl(_)
            if config.provider == ProviderKind::Bedrock && config.base_url.is_none() =>
        {
            "region"
        }
        E::InvalidBaseUrl(_) => "base_url",
        E::InvalidHeader(_) => {
            return ConfigError::new(
                format!("{path}.api_key_env"),
                format!(
                    "the key in {} is not a valid header value",
                    config.key_variable().unwrap_or("the variable")
                ),
            )
        }
        E::Missing(what) if what.contains("region") => "region",
        E::Missing(_) => "api_key_env",
        _ => "provider",
    };
    ConfigError::new(format!("{path}.{key}"), error.to_string())
}

/// A `Backends::build` error at the setting it is about.
fn explain(config: &Config, error: &BuildError) -> ConfigError {
    let at = |backend: &BackendId| {
        config
            .backends
            .iter()
            .position(|b| b.name == backend.as_str())
            .map_or_else(|| "backends".to_owned(), |i| format!("backends[{i}]"))
    };
    let find = |backend: &BackendId| config.backends.iter().find(|b| b.name == backend.as_str());
    match error {
        BuildError::Timeout { backend, source } => {
            use streamgate_timeout::{ConfigError as T, Setting};
            let own_first = find(backend).is_some_and(|b| b.first_content_timeout.is_some());
            let key = match source {
                T::ZeroDuration {
                    setting: Setting::FirstContent,
                } if !own_first => {
                    return ConfigError::new("router.first_content_timeout", source.to_string())
                }
                T::ZeroDuration {
                    setting: Setting::FirstContent,
                } => "first_content_timeout",
                T::ZeroDuration {
                    setting: Setting::Idle,
                } => "idle_timeout",
                _ => "total_timeout",
            };
            ConfigError::new(format!("{}.{key}", at(backend)), source.to_string())
        }
        BuildError::ZeroMinThroughput { backend } => ConfigError::new(
            format!("{}.min_throughput", at(backend)),
            "minimum throughput must be above 0 tokens per minute",
        ),
        BuildError::MissingFirstContentTimeout { backend } => ConfigError::new(
            format!("{}.first_content_timeout", at(backend)),
            "idle and total timeouts need a first-content timeout (here or in [router])",
        ),
        BuildError::Breaker { backend, source } => {
            let path = format!("{}.breaker", at(backend));
            match find(backend)
                .and_then(|b| b.breaker.as_ref())
                .and_then(Toggle::as_on)
            {
                Some(breaker) => breaker.explain(&path, source),
                None => ConfigError::new(path, source.to_string()),
            }
        }
        BuildError::Quota { backend, source } => {
            // The trackers are built (and checked) before; this is pacing.
            ConfigError::new(format!("{}.pacing", at(backend)), source.to_string())
        }
        BuildError::Tpm { backend, source } => {
            ConfigError::new(format!("{}.tpm_budget", at(backend)), source.message())
        }
        BuildError::Failover { source } => RouterConfig::explain(source),
    }
}

/// The client of a backend under validation: never called.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unreachable;

/// The body of [`Unreachable`]: ends at once.
#[derive(Debug)]
pub(crate) struct NoBody;

impl Stream for NoBody {
    type Item = Result<ChatChunk, BoxError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

impl Service<ChatRequest> for Unreachable {
    type Response = Response<NoBody>;
    type Error = BoxError;
    type Future = Ready<Result<Response<NoBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: ChatRequest) -> Self::Future {
        ready(Err("a configuration check has no client".into()))
    }
}
