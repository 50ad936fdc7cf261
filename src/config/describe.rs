//! From a `Backends` chain back to the configuration that builds it:
//! [`Backends::effective_config`](crate::Backends::effective_config).

use streamgate_core::BackendId;

use super::{BackendConfig, Config, ConfigError, PrefillConfig, ProbeConfig, Toggle};
use crate::backend::{Given, Settings};

/// Backend `i` of a chain made from `source`: what its `Backend` builder
/// holds, and from `source` what the builder cannot tell.
pub(crate) fn describe_backend(
    source: &Config,
    i: usize,
    id: &BackendId,
    settings: &Settings,
) -> Result<BackendConfig, ConfigError> {
    let path = format!("backends[{i}]");
    let Some(given) = source.backends.iter().find(|b| b.name == id.as_str()) else {
        return Err(ConfigError::new(
            path,
            format!("backend {id:?} was added in code: its provider and client are not known"),
        ));
    };
    let in_code = |key: &str| {
        ConfigError::new(
            format!("{path}.{key}"),
            "set in code: its settings are not known",
        )
    };
    let mut backend = given.clone();
    backend.first_content_timeout = settings.first_content;
    backend.idle_timeout = settings.idle;
    backend.total_timeout = settings.total;
    backend.tpm_budget = settings.tpm_budget;
    backend.min_throughput = settings.min_throughput;
    backend.throughput_probe = settings.probe.map(|probe| ProbeConfig {
        chunks: probe.chunks(),
        window: probe.window(),
        min_tokens_per_sec: probe.min_tokens_per_sec(),
    });
    backend.continuation = match settings.continues {
        None => None,
        Some(how) => Some(PrefillConfig::of(how).ok_or_else(|| in_code("continuation"))?),
    };
    backend.breaker = match (settings.breaker, &given.breaker) {
        (Given::Off, _) => Some(Toggle::Off),
        (Given::Default, _) => None,
        (Given::Custom, Some(Toggle::On(breaker))) => Some(Toggle::On(breaker.clone())),
        (Given::Custom, _) => return Err(in_code("breaker")),
    };
    // The configuration gives every backend with the quota gate a tracker
    // of its own, built from its section (or the defaults).
    backend.quota = match (settings.quota, &given.quota) {
        (Given::Off, _) => Some(Toggle::Off),
        (Given::Custom, Some(Toggle::On(quota))) => Some(Toggle::On(quota.clone())),
        (Given::Custom, None) | (Given::Default, _) => None,
        (Given::Custom, Some(Toggle::Off)) => return Err(in_code("quota")),
    };
    backend.pacing = match (settings.pacing, &given.pacing) {
        (false, _) => None,
        (true, Some(pacing)) => Some(pacing.clone()),
        (true, None) => return Err(in_code("pacing")),
    };
    backend.shared_state = match (settings.shared, &source.shared_state) {
        (true, Some(_)) => Some(true),
        (false, Some(_)) => Some(false),
        (false, None) => None,
        (true, None) => return Err(in_code("shared_state")),
    };
    Ok(backend)
}

/// The whole configuration of a chain made from `source` whose backends
/// are `backends`, every default filled in.
pub(crate) fn describe(source: &Config, backends: Vec<BackendConfig>) -> Config {
    Config {
        router: source.router.clone(),
        metrics: source.metrics.clone(),
        store: source.store.clone(),
        shared_state: source.shared_state.clone(),
        backends,
    }
    .effective()
}
