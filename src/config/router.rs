//! `[router]`: the failover router, as [`FailoverBuilder`] sets it.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use streamgate_failover::{Backoff, ContextLengthPolicy, FailoverBuilder};

use super::{value::optional_duration, ConfigError};

/// The router in front of the backends: each key is the
/// [`FailoverBuilder`] method of the same name, and an absent key keeps the
/// builder's default (no retries of the same backend, no waiting when every
/// backend refuses, no deadline of its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Retries of the same backend before moving on (default 0, at most
    /// 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The delays between retries of the same backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffConfig>,
    /// What a context-length error does: `next_backend` (the default) or
    /// `stop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_length: Option<ContextLength>,
    /// When every backend refuses, wait up to this long for the first to
    /// admit again (default: no waiting).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub wait_when_unavailable: Option<Duration>,
    /// The first-content deadline of every backend that sets none.
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub first_content_timeout: Option<Duration>,
    /// Extra first-content time for the last remaining attempt (default
    /// none; needs `first_content_timeout`).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub last_attempt_extra: Option<Duration>,
}

/// `backoff = { base = "250ms", max = "4s", max_retry_after = "10s" }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The delay before the first retry, doubled for each later one
    /// (default 250 ms).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub base: Option<Duration>,
    /// The longest computed delay (default 4 s).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
    /// The longest `Retry-After` worth waiting for on the same backend
    /// (default 10 s).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Duration>,
}

/// What a context-length error does ([`ContextLengthPolicy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextLength {
    /// Try the next backend.
    NextBackend,
    /// Stop and return the error.
    Stop,
}

impl BackoffConfig {
    fn backoff(&self) -> Backoff {
        let default = Backoff::default();
        Backoff {
            base: self.base.unwrap_or(default.base),
            max: self.max.unwrap_or(default.max),
            max_retry_after: self.max_retry_after.unwrap_or(default.max_retry_after),
        }
    }
}

impl RouterConfig {
    /// Sets every key that is present on `builder`: what
    /// `Backends::failover` is given.
    pub fn configure<Req: 'static, C: 'static>(
        &self,
        mut builder: FailoverBuilder<Req, C>,
    ) -> FailoverBuilder<Req, C> {
        if let Some(n) = self.retries {
            builder = builder.retries(n);
        }
        if let Some(backoff) = &self.backoff {
            builder = builder.backoff(backoff.backoff());
        }
        if let Some(policy) = self.context_length {
            builder = builder.context_length(match policy {
                ContextLength::NextBackend => ContextLengthPolicy::NextBackend,
                ContextLength::Stop => ContextLengthPolicy::Stop,
            });
        }
        if let Some(max) = self.wait_when_unavailable {
            builder = builder.wait_when_unavailable(max);
        }
        if let Some(after) = self.first_content_timeout {
            builder = builder.first_content_timeout(after);
        }
        if let Some(extra) = self.last_attempt_extra {
            builder = builder.last_attempt_extra(extra);
        }
        builder
    }

    /// Every key filled in with the builder's defaults (the ones that are
    /// off by default stay absent).
    pub fn effective(&self) -> Self {
        let backoff = self.backoff.unwrap_or_default().backoff();
        Self {
            retries: Some(self.retries.unwrap_or(0)),
            backoff: Some(BackoffConfig {
                base: Some(backoff.base),
                max: Some(backoff.max),
                max_retry_after: Some(backoff.max_retry_after),
            }),
            context_length: Some(self.context_length.unwrap_or(ContextLength::NextBackend)),
            wait_when_unavailable: self.wait_when_unavailable,
            first_content_timeout: self.first_content_timeout,
            last_attempt_extra: Some(self.last_attempt_extra.unwrap_or(Duration::ZERO)),
        }
    }

    /// The router's message at the key it is about.
    pub(crate) fn explain(error: &streamgate_failover::ConfigError) -> ConfigError {
        let message = error.message();
        let key = [
            ("retries", "router.retries"),
            ("backoff base", "router.backoff.base"),
            ("backoff", "router.backoff"),
            ("wait when unavailable", "router.wait_when_unavailable"),
            ("first-content timeout", "router.first_content_timeout"),
            ("last-attempt extra", "router.last_attempt_extra"),
            ("at least one backend", "backends"),
        ]
        .iter()
        .find(|(words, _)| message.starts_with(words))
        .map_or("router", |(_, key)| key);
        ConfigError::new(key, message)
    }
}

impl fmt::Display for RouterConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
