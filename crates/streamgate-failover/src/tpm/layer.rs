//! The layer and its builder.

use std::{sync::Arc, time::Duration};

use streamgate_core::{
    state::{InProcess, SharedTpm},
    BackendId, MetricsSink, SharedSink,
};
use tokio::time::Instant;
use tower_layer::Layer;

use super::Tpm;
use crate::{
    meter::{TpmMeter, TpmRegistry, TpmSnapshot},
    throughput::{ThroughputGroup, ThroughputPolicy, ThroughputTracker},
    ConfigError,
};

/// The most samples a backend may keep for its throughput judgement.
const MAX_SAMPLES_LIMIT: usize = 1024;

/// Applies [`Tpm`]: a TPM budget gate and a minimum-throughput gate for one
/// backend. Build it with [`TpmLayer::builder`]; clones share the meters.
#[derive(Clone, Debug)]
pub struct TpmLayer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) enum Meters {
    Backend(Arc<TpmMeter>),
    PerModel(TpmRegistry),
}

impl Meters {
    pub(crate) fn meter(&self, model: &str) -> Arc<TpmMeter> {
        match self {
            Self::Backend(meter) => Arc::clone(meter),
            Self::PerModel(registry) => registry.meter(model),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) backend: BackendId,
    pub(crate) max_tokens_per_minute: Option<u64>,
    pub(crate) meters: Meters,
    pub(crate) throughput: Arc<ThroughputTracker>,
    pub(crate) group: Option<ThroughputGroup>,
    pub(crate) sink: SharedSink,
    /// What the replicas of a fleet agree on; [`InProcess`] by default.
    pub(crate) state: Arc<dyn SharedTpm>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("backend", &self.backend)
            .field("max_tokens_per_minute", &self.max_tokens_per_minute)
            .field("meters", &self.meters)
            .field("throughput", &self.throughput)
            .field("sink", &self.sink.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl TpmLayer {
    /// Starts configuring the layer of `backend`.
    pub fn builder(backend: impl Into<BackendId>) -> TpmLayerBuilder {
        TpmLayerBuilder {
            backend: backend.into(),
            max_tokens_per_minute: None,
            per_model: false,
            policy: ThroughputPolicy::default(),
            group: None,
            sink: None,
            state: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &BackendId {
        &self.shared.backend
    }

    /// Tokens and requests in the window ending at `now`, and reservations
    /// in flight, for `model` (the model is ignored unless the layer keeps
    /// meters per model).
    pub fn snapshot(&self, model: &str, now: Instant) -> TpmSnapshot {
        match &self.shared.meters {
            Meters::Backend(meter) => meter.snapshot(now),
            Meters::PerModel(registry) => registry
                .get(model)
                .map(|meter| meter.snapshot(now))
                .unwrap_or_default(),
        }
    }

    /// The backend's throughput samples.
    pub fn throughput(&self) -> &Arc<ThroughputTracker> {
        &self.shared.throughput
    }
}

impl<S> Layer<S> for TpmLayer {
    type Service = Tpm<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tpm {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Configures a [`TpmLayer`]. Every gate is off until configured; without
/// any, the layer only meters.
#[derive(Clone)]
#[must_use]
pub struct TpmLayerBuilder {
    backend: BackendId,
    max_tokens_per_minute: Option<u64>,
    per_model: bool,
    policy: ThroughputPolicy,
    group: Option<ThroughputGroup>,
    sink: SharedSink,
    state: Option<Arc<dyn SharedTpm>>,
}

impl std::fmt::Debug for TpmLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmLayerBuilder")
            .field("backend", &self.backend)
            .field("max_tokens_per_minute", &self.max_tokens_per_minute)
            .field("per_model", &self.per_model)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TpmLayerBuilder {
    /// The budget gate: admit a request only if the tokens in the window,
    /// plus those reserved by requests in flight, plus its estimate do not
    /// exceed `tokens` (e.g. the provider's TPM limit, or a share of it).
    pub fn max_tokens_per_minute(mut self, tokens: u64) -> Self {
        self.max_tokens_per_minute = Some(tokens);
        self
    }

    /// Keeps one meter (and budget) per model instead of one per backend,
    /// as providers whose limits are per model need.
    pub fn per_model(mut self) -> Self {
        self.per_model = true;
        self
    }

    /// The minimum-throughput gate: output tokens per minute of streaming
    /// time below which the backend is slow and refuses work while another
    /// member of its [`group`](Self::group) is not slow.
    pub fn min_throughput(mut self, tokens_per_minute: u64) -> Self {
        self.policy.min_tokens_per_minute = Some(tokens_per_minute);
        self
    }

    /// Samples needed before the backend can be judged slow (default 3).
    pub fn min_samples(mut self, samples: usize) -> Self {
        self.policy.min_samples = samples;
        self
    }

    /// Recent samples kept and judged (default 10).
    pub fn max_samples(mut self, samples: usize) -> Self {
        self.policy.max_samples = samples;
        self
    }

    /// How long a sample counts (default 5 minutes), so a slow backend is
    /// tried again once its evidence is old.
    pub fn sample_ttl(mut self, ttl: Duration) -> Self {
        self.policy.sample_ttl = ttl;
        self
    }

    /// Joins the group of interchangeable backends; the minimum-throughput
    /// gate refuses only while another member is not slow. Without a
    /// group, the gate only measures.
    pub fn group(mut self, group: &ThroughputGroup) -> Self {
        self.group = Some(group.clone());
        self
    }

    /// Reports rejections to `sink`.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Shares the budget with other replicas through `state` (for
    /// example `streamgate-redis`): a request the local meter admits is
    /// also reserved in the shared window, and refused when the fleet's
    /// use is over the maximum. Without it the budget is this process's
    /// alone ([`InProcess`]).
    pub fn shared(mut self, state: Arc<dyn SharedTpm>) -> Self {
        self.state = Some(state);
        self
    }

    /// Checks the settings and builds the layer (joining the group, if
    /// any).
    pub fn build(self) -> Result<TpmLayer, ConfigError> {
        if self.max_tokens_per_minute == Some(0) {
            return Err(ConfigError::new("max tokens per minute must be above 0"));
        }
        if self.policy.min_tokens_per_minute == Some(0) {
            return Err(ConfigError::new("minimum throughput must be above 0"));
        }
        if self.policy.min_samples == 0 {
            return Err(ConfigError::new("minimum samples must be at least 1"));
        }
        if self.policy.max_samples < self.policy.min_samples {
            return Err(ConfigError::new(
                "max samples must be at least the minimum samples",
            ));
        }
        if self.policy.max_samples > MAX_SAMPLES_LIMIT {
            return Err(ConfigError::new("max samples must be at most 1024"));
        }
        if self.policy.sample_ttl.is_zero() {
            return Err(ConfigError::new("sample ttl must be above 0"));
        }
        let throughput = Arc::new(ThroughputTracker::new(self.backend.clone(), self.policy));
        if let Some(group) = &self.group {
            group.join(Arc::clone(&throughput));
        }
        let meters = if self.per_model {
            Meters::PerModel(TpmRegistry::new())
        } else {
            Meters::Backend(Arc::new(TpmMeter::new()))
        };
        Ok(TpmLayer {
            shared: Arc::new(Shared {
                backend: self.backend,
                max_tokens_per_minute: self.max_tokens_per_minute,
                meters,
                throughput,
                group: self.group,
                sink: self.sink,
                state: self.state.unwrap_or_else(|| Arc::new(InProcess)),
            }),
        })
    }
}
