//! Declarative configuration: a whole router (every backend, its layers and
//! the failover router, the metrics sinks, the analytics store and the
//! state shared with other replicas) from one TOML, YAML or JSON file
//! (feature `config`).
//!
//! Each section mirrors a builder, key for key: `[[backends]]` is
//! [`Backend`](crate::Backend) (timeouts, `tpm_budget`, `min_throughput`)
//! plus the provider client, `[backends.breaker]` is
//! [`BreakerBuilder`](crate::breaker::BreakerBuilder), `[backends.quota]` is
//! [`QuotaTrackerBuilder`](crate::quota::QuotaTrackerBuilder),
//! `[backends.pacing]` is [`PacingLayerBuilder`](crate::quota::PacingLayerBuilder),
//! `[router]` is [`FailoverBuilder`](crate::failover::FailoverBuilder)
//! (strategy, hedging, retries, deadlines), `[metrics]` picks the sinks,
//! `[store]` is the analytics store's builder and `[shared_state]` the
//! Redis fleet's (feature `redis`). An
//! absent key keeps the builder's default, and
//! [`Backends::from_config`](crate::Backends::from_config) makes the same
//! calls the builder chain would.
//!
//! - Durations are human strings: `"250ms"`, `"20s"`, `"1m30s"`.
//! - Settings that are on by default (the breaker, the quota gate, the
//!   breaker's "3 failures within 60 s" trigger, its half-open limit) are
//!   turned off with `"off"`.
//! - Secrets are never in the file: `api_key_env` names the environment
//!   variable of a key, `shared_state.redis_url_env` that of the Redis URL,
//!   read when the router is built; an unset or empty variable is an error
//!   naming it.
//! - The sticky strategy takes its session key from a field of the request
//!   body: `router.session_key = "metadata.session_id"`.
//! - Mistakes are found once, when the file is loaded, by the builders' own
//!   checks, and reported with the path of the setting:
//!   `backends[1].breaker.failure_rate: 150: must be a fraction above 0 and at most 1`.
//!   Unknown keys are errors, with a "did you mean" when a known key is
//!   close.
//! - [`Backends::effective_config`](crate::Backends::effective_config)
//!   reads back what a chain made from a file runs with, every default
//!   filled in ([`Config::effective`] does it from the file alone), and
//!   `Display` prints it (as TOML; [`Config::to_yaml`] and
//!   [`Config::to_json`] for the other formats), so what a router runs with
//!   can be read, and loaded again to the same router.
//!
//! ```
//! use streamgate::config::Config;
//! use streamgate::Backends;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml_str(r#"
//!     [router]
//!     retries = 1
//!
//!     [[backends]]
//!     name = "local"
//!     provider = "ollama"
//!     first_content_timeout = "20s"
//!     models = { "*" = "llama3.2" }
//!
//!     [[backends]]
//!     name = "backup"
//!     provider = "openai-compatible"
//!     base_url = "http://127.0.0.1:8000/v1"
//!     breaker = { consecutive_failures = 3, open_wait = "10s" }
//! "#)?;
//! let backends = Backends::from_config(&config)?;
//! println!("{}", backends.effective_config()?); // every setting, with the defaults that apply
//! let router = backends.build()?;
//! # drop(router);
//!
//! let typo = Config::from_toml_str("[router]\nretires = 1\n").unwrap_err();
//! assert_eq!(typo.to_string(), "router.retires: unknown key `retires` (did you mean `retries`?)");
//! # Ok(()) }
//! ```

mod backend;
mod breaker;
mod build;
mod describe;
mod error;
mod metrics;
mod quota;
mod router;
mod shared;
mod value;

use std::{fmt, path::Path};

use serde::{Deserialize, Serialize};

pub use backend::{BackendConfig, PrefillConfig, ProbeConfig, ProviderKind};
pub use breaker::{BreakerConfig, ExponentialWait, FailuresWithin, OpenWaitConfig, SlowCallRate};
pub use build::Runtime;
pub use error::ConfigError;
pub use metrics::{MetricsConfig, StoreConfig, DEFAULT_METER};
pub use quota::{PacingConfig, QuotaConfig};
pub use router::{
    BackoffConfig, ContextLength, ContinuationConfig, HedgeConfig, HedgeDelayConfig, RouterConfig,
    StrategyConfig,
};
pub use shared::{ReconnectBackoff, SharedStateConfig, DEFAULT_REDIS_URL_ENV};
pub use value::Toggle;

pub(crate) use build::assemble;
pub(crate) use describe::{describe, describe_backend};

/// A whole router: the backends in priority order, the router's settings,
/// the metrics sinks and the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The failover router.
    #[serde(default, skip_serializing_if = "is_default")]
    pub router: RouterConfig,
    /// Where every layer's events go.
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics: MetricsConfig,
    /// The SQLite analytics store (feature `store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
    /// State shared with the other replicas on Redis (feature `redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_state: Option<SharedStateConfig>,
    /// The backends, tried in this order.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The formats a configuration is read and printed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name's extension says (`.toml`, `.yaml`/`.yml`,
    /// `.json`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

impl Config {
    /// A configuration of these backends, everything else at its default.
    pub fn new(backends: Vec<BackendConfig>) -> Self {
        Self {
            router: RouterConfig::default(),
            metrics: MetricsConfig::default(),
            store: None,
            shared_state: None,
            backends,
        }
    }

    /// Reads and validates a configuration in `format`.
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        let syntax = |name: &str, error: &dyn fmt::Display| {
            ConfigError::new("", format!("invalid {name}: {error}"))
        };
        // Every format is read into one tree first, so that the three give
        // the same errors (and paths) for the same mistakes.
        let tree: serde_json::Value = match format {
            Format::Toml => toml::from_str(text).map_err(|e| syntax("TOML", &e))?,
            Format::Yaml => yaml_serde::from_str(text).map_err(|e| syntax("YAML", &e))?,
            Format::Json => serde_json::from_str(text).map_err(|e| syntax("JSON", &e))?,
        };
        let config: Self = serde_path_to_error::deserialize(tree).map_err(|error| {
            let path = error.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = error.into_inner().to_string();
            let message = error::explain_unknown(&message).unwrap_or(message);
            ConfigError::new(path, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Format::Toml)
    }

    /// Reads and validates a YAML configuration.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Format::Yaml)
    }

    /// Reads and validates a JSON configuration.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Format::Json)
    }

    /// Reads and validates the file at `path`, in the format its extension
    /// says.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| {
            ConfigError::new(
                "",
                format!(
                    "{}: the extension must be .toml, .yaml, .yml or .json",
                    path.display()
                ),
            )
        })?;
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new("", format!("cannot read {}: {error}", path.display()))
        })?;
        Self::parse(&text, format)
    }

    /// Checks every setting with the builders' own rules, without reading
    /// any key or opening any file. The loaders call it; call it after
    /// changing a configuration in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        build::validate(self)
    }

    /// Every setting, with the defaults that apply filled in: what the
    /// router built from this configuration runs with. Settings that are
    /// off unless given (an idle timeout, a failure-rate trigger, pacing)
    /// stay absent. Loading it again builds the same router.
    pub fn effective(&self) -> Self {
        Self {
            router: self.router.effective(),
            metrics: self.metrics.effective(),
            store: self.store.as_ref().map(StoreConfig::effective),
            shared_state: self.shared_state.as_ref().map(SharedStateConfig::effective),
            backends: self
                .backends
                .iter()
                .map(|backend| {
                    let mut effective = backend.effective();
                    if self.shared_state.is_some() {
                        effective.shared_state = Some(backend.shared_state.unwrap_or(true));
                    }
                    effective
                })
                .collect(),
        }
    }

    /// This configuration as TOML (as given; [`effective`](Self::effective)
    /// first for the defaults too).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::new("", e.to_string()))
    }

    /// This configuration as YAML.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        yaml_serde::to_string(self).map_err(|e| ConfigError::new("", e.to_string()))
    }

    /// This configuration as JSON.
    pub fn to_json(&self) -> Result<String, ConfigError> {
        serde_json::to_string_pretty(self).map_err(|e| ConfigError::new("", e.to_string()))
    }

    /// The backend called `name`.
    pub fn backend_mut(&mut self, name: &str) -> Option<&mut BackendConfig> {
        self.backends.iter_mut().find(|b| b.name == name)
    }
}

impl fmt::Display for Config {
    /// The effective configuration, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print_toml(&self.effective(), f)
    }
}

/// Writes `value` as TOML.
fn print_toml<T: Serialize>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let text = toml::to_string(value).map_err(|_| fmt::Error)?;
    f.write_str(&text)
}
