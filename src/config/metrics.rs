//! `[metrics]` and `[store]`: where the events of every layer go.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::value::optional_duration;

/// The sinks every backend and the router report to. All off by default,
/// as without `Backends::metrics`; with any sink on, every backend gets the
/// measuring layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The in-memory `PerformanceTracker` (percentiles, recommendations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker: Option<bool>,
    /// Samples a candidate needs before the tracker recommends it (default
    /// `streamgate::metrics::DEFAULT_MIN_SAMPLES`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker_min_samples: Option<u64>,
    /// The `metrics` facade sink (`MetricsFacadeSink`): Prometheus and any
    /// other exporter the program installs (the library installs none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<bool>,
    /// The `tracing` sink: one event per request, rejection and transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<bool>,
    /// The OpenTelemetry sink on the global meter provider the program set
    /// (feature `opentelemetry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opentelemetry: Option<bool>,
    /// The name of the OpenTelemetry meter (default `streamgate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opentelemetry_meter: Option<String>,
    /// Distinct models each sink keeps per backend before folding the rest
    /// into `_OTHER` (default 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_cap: Option<usize>,
}

/// The default OpenTelemetry meter name.
pub const DEFAULT_METER: &str = "streamgate";

impl MetricsConfig {
    /// Every key filled in with its default.
    pub fn effective(&self) -> Self {
        Self {
            tracker: Some(self.tracker.unwrap_or(false)),
            tracker_min_samples: Some(
                self.tracker_min_samples
                    .unwrap_or(streamgate_metrics::DEFAULT_MIN_SAMPLES),
            ),
            prometheus: Some(self.prometheus.unwrap_or(false)),
            tracing: Some(self.tracing.unwrap_or(false)),
            opentelemetry: Some(self.opentelemetry.unwrap_or(false)),
            opentelemetry_meter: Some(
                self.opentelemetry_meter
                    .clone()
                    .unwrap_or_else(|| DEFAULT_METER.to_owned()),
            ),
            model_cap: Some(
                self.model_cap
                    .unwrap_or(streamgate_metrics::names::DEFAULT_MODEL_CAP),
            ),
        }
    }

    /// Whether any sink is on.
    pub fn any(&self) -> bool {
        [
            self.tracker,
            self.prometheus,
            self.tracing,
            self.opentelemetry,
        ]
        .iter()
        .any(|on| on.unwrap_or(false))
    }
}

impl fmt::Display for MetricsConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}

/// The SQLite analytics store (feature `store`): every finished request
/// kept, with percentile queries; each key is the `StoreBuilder` method of
/// the same name. The provider of each backend is taken from its
/// `provider`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// Messages the queue holds before records are dropped (default
    /// 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
    /// Records written per transaction at most (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// How often finished hours are rolled up and retention applied
    /// (default 1 min).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub maintenance_interval: Option<Duration>,
    /// Rows older than this are deleted (default 31 days).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    /// At most this many request rows are kept (default 5 000 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
}

impl StoreConfig {
    /// A store at `path` with the builder's defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_capacity: None,
            batch_size: None,
            maintenance_interval: None,
            max_age: None,
            max_rows: None,
        }
    }

    /// Sets every key that is present on `builder`.
    #[cfg(feature = "store")]
    pub fn configure(
        &self,
        mut builder: streamgate_store::StoreBuilder,
    ) -> streamgate_store::StoreBuilder {
        if let Some(n) = self.queue_capacity {
            builder = builder.queue_capacity(n);
        }
        if let Some(n) = self.batch_size {
            builder = builder.batch_size(n);
        }
        if let Some(d) = self.maintenance_interval {
            builder = builder.maintenance_interval(d);
        }
        if let Some(d) = self.max_age {
            builder = builder.max_age(d);
        }
        if let Some(n) = self.max_rows {
            builder = builder.max_rows(n);
        }
        builder
    }

    /// Every key filled in with the store's defaults.
    pub fn effective(&self) -> Self {
        Self {
            path: self.path.clone(),
            queue_capacity: Some(self.queue_capacity.unwrap_or(10_000)),
            batch_size: Some(self.batch_size.unwrap_or(1_024)),
            maintenance_interval: Some(
                self.maintenance_interval.unwrap_or(Duration::from_secs(60)),
            ),
            max_age: Some(self.max_age.unwrap_or(Duration::from_secs(31 * 86_400))),
            max_rows: Some(self.max_rows.unwrap_or(5_000_000)),
        }
    }
}

impl fmt::Display for StoreConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
