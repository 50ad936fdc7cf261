//! The layer and its builder.

use std::sync::Arc;

use streamgate_core::{
    guard::GuardLayer,
    state::{InProcess, SharedTpm},
    BackendId, MetricsSink, SharedSink,
};
use tokio::time::Instant;
use tower_layer::Layer;

use super::{Tpm, TpmGuard};
use crate::{
    meter::{TpmMeter, TpmRegistry, TpmSnapshot},
    ConfigError,
};

/// Applies [`Tpm`]: the TPM budget gate of one backend, a
/// [`GuardLayer`] of a [`TpmGuard`]. Build it with
/// [`TpmLayer::builder`]; clones share the meters.
///
/// [`TpmLayer`] wraps a backend's service in [`Tpm`]. On admission, the
/// request's estimate is reserved in the backend's (or model's)
/// [`TpmMeter`](crate::TpmMeter) if the window's usage plus the
/// reservations plus the estimate stay within the maximum, in one critical
/// section, so concurrent requests cannot all slip under it. Otherwise it is
/// refused with [`RejectReason::TpmBudget`](streamgate_core::RejectReason)
/// and the time when the window will have room.
///
/// (A minimum *throughput* is not a gate: it is an ordering rule of the
/// router's scoreboard, see `streamgate_core::scoreboard`.)
///
/// When the stream ends the reservation is replaced by the real usage (see
/// [`TpmObserver`](crate::TpmObserver)).
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

    /// How many TPM meters the layer keeps: 1 for the backend, or, with
    /// [`per_model`](TpmLayerBuilder::per_model), one per model up to
    /// [`MAX_MODELS`](crate::meter::MAX_MODELS) plus the shared overflow
    /// meter.
    pub fn meters(&self) -> usize {
        match &self.shared.meters {
            Meters::Backend(_) => 1,
            Meters::PerModel(registry) => registry.len(),
        }
    }
}

impl TpmLayer {
    /// The guard, to fuse it with others into one [`GuardLayer`].
    pub fn into_guard(self) -> TpmGuard {
        TpmGuard {
            shared: self.shared,
        }
    }
}

impl<S> Layer<S> for TpmLayer {
    type Service = Tpm<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardLayer::new(self.shared.backend.clone(), self.clone().into_guard()).layer(inner)
    }
}

/// Configures a [`TpmLayer`]. Without a budget the layer only meters.
#[derive(Clone)]
#[must_use]
pub struct TpmLayerBuilder {
    backend: BackendId,
    max_tokens_per_minute: Option<u64>,
    per_model: bool,
    sink: SharedSink,
    state: Option<Arc<dyn SharedTpm>>,
}

impl std::fmt::Debug for TpmLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmLayerBuilder")
            .field("backend", &self.backend)
            .field("max_tokens_per_minute", &self.max_tokens_per_minute)
            .field("per_model", &self.per_model)
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

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<TpmLayer, ConfigError> {
        if self.max_tokens_per_minute == Some(0) {
            return Err(ConfigError::new("max tokens per minute must be above 0"));
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
                sink: self.sink,
                state: self.state.unwrap_or_else(|| Arc::new(InProcess)),
            }),
        })
    }
}
