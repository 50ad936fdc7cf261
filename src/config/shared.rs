//! `[shared_state]`: TPM budgets, quota knowledge and breaker state shared
//! with the other replicas through one Redis (feature `redis`), as
//! `streamgate::redis::FleetBuilder` sets it.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    value::{duration, optional_duration},
    ConfigError,
};

/// The variable the Redis URL is read from unless `redis_url_env` names
/// another.
pub const DEFAULT_REDIS_URL_ENV: &str = "REDIS_URL";

/// The Redis every replica shares its state through: each key is the
/// `FleetBuilder` method of the same name, and an absent key keeps the
/// builder's default. Every backend shares its TPM budget, quota
/// knowledge and breaker state unless it sets `shared_state = false`.
///
/// The URL is never in the file (it may hold a password):
/// `redis_url_env` names the environment variable that holds it, read
/// when the router is built.
///
/// ```toml
/// [shared_state]
/// redis_url_env = "REDIS_URL"
/// prefix = "gateway"
/// timeout = "5ms"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SharedStateConfig {
    /// The environment variable holding the `redis://` URL (default
    /// `REDIS_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url_env: Option<String>,
    /// The namespace of every key (default `streamgate`): replicas that
    /// share state use the same one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The most any Redis operation may take before the replica decides
    /// locally (default 5 ms).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The most a connection attempt may take (default 100 ms).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// The length of the shared TPM window (default 60 s, at least 60 ms).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// How long a reservation holds without its reconcile (default 10 min).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub reservation_ttl: Option<Duration>,
    /// Writes that may wait for the writer before one is dropped (default
    /// 1024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<usize>,
    /// The waits between reconnect attempts (default 10 ms, doubling up to
    /// 1 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<ReconnectBackoff>,
}

/// `backoff = { first = "10ms", max = "1s" }`: the first wait between
/// reconnect attempts, doubled up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectBackoff {
    /// The first wait.
    #[serde(with = "duration")]
    pub first: Duration,
    /// The longest wait.
    #[serde(with = "duration")]
    pub max: Duration,
}

// `FleetBuilder`'s defaults, written out because the file is read (and
// printed) without the `redis` feature too; a test compares them with the
// builder's own.
const PREFIX: &str = "streamgate";
const TIMEOUT: Duration = Duration::from_millis(5);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_secs(60);
const RESERVATION_TTL: Duration = Duration::from_secs(600);
const QUEUE_CAPACITY: usize = 1024;
const BACKOFF: ReconnectBackoff = ReconnectBackoff {
    first: Duration::from_millis(10),
    max: Duration::from_secs(1),
};

impl SharedStateConfig {
    /// The variable the URL is read from.
    pub fn url_variable(&self) -> &str {
        self.redis_url_env
            .as_deref()
            .unwrap_or(DEFAULT_REDIS_URL_ENV)
    }

    /// Every key filled in with the builder's defaults.
    pub fn effective(&self) -> Self {
        Self {
            redis_url_env: Some(self.url_variable().to_owned()),
            prefix: Some(self.prefix.clone().unwrap_or_else(|| PREFIX.to_owned())),
            timeout: Some(self.timeout.unwrap_or(TIMEOUT)),
            connect_timeout: Some(self.connect_timeout.unwrap_or(CONNECT_TIMEOUT)),
            window: Some(self.window.unwrap_or(WINDOW)),
            reservation_ttl: Some(self.reservation_ttl.unwrap_or(RESERVATION_TTL)),
            queue_capacity: Some(self.queue_capacity.unwrap_or(QUEUE_CAPACITY)),
            backoff: Some(self.backoff.unwrap_or(BACKOFF)),
        }
    }

    /// Sets every key that is present on `builder` (the URL is the
    /// builder's own).
    #[cfg(feature = "redis")]
    pub fn configure(
        &self,
        mut builder: streamgate_redis::FleetBuilder,
    ) -> streamgate_redis::FleetBuilder {
        if let Some(prefix) = &self.prefix {
            builder = builder.prefix(prefix.as_str());
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(window) = self.window {
            builder = builder.window(window);
        }
        if let Some(ttl) = self.reservation_ttl {
            builder = builder.reservation_ttl(ttl);
        }
        if let Some(capacity) = self.queue_capacity {
            builder = builder.queue_capacity(capacity);
        }
        if let Some(backoff) = self.backoff {
            builder = builder.backoff(backoff.first, backoff.max);
        }
        builder
    }

    /// Checks the settings by the fleet builder's rules: its `build` needs
    /// the URL and a runtime, and starts connecting, so a file is checked
    /// here without either.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: &str| {
            Err(ConfigError::new(format!("shared_state.{key}"), message))
        };
        if !cfg!(feature = "redis") {
            return Err(ConfigError::new(
                "shared_state",
                "needs the `redis` feature (streamgate = { features = [\"redis\"] })",
            ));
        }
        if !super::backend::is_variable_name(self.url_variable()) {
            return err(
                "redis_url_env",
                "must be the name of an environment variable, not the url",
            );
        }
        if self.prefix.as_deref() == Some("") {
            return err("prefix", "the key prefix must not be empty");
        }
        for (key, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return err(key, "must be above 0");
            }
        }
        if self.window.is_some_and(|w| w < Duration::from_millis(60)) {
            return err("window", "must be at least 60ms");
        }
        if self
            .reservation_ttl
            .is_some_and(|t| t < Duration::from_millis(1))
        {
            return err("reservation_ttl", "must be at least 1ms");
        }
        if self.queue_capacity == Some(0) {
            return err("queue_capacity", "must be above 0");
        }
        if let Some(backoff) = self.backoff {
            if backoff.first.is_zero() {
                return err("backoff.first", "must be above 0");
            }
            if backoff.max < backoff.first {
                return err("backoff.max", "must be at least the first wait");
            }
        }
        Ok(())
    }
}

impl fmt::Display for SharedStateConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
