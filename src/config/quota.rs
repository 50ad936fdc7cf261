//! `[backends.quota]` and `[backends.pacing]`: the quota tracker
//! ([`QuotaTrackerBuilder`]) and pacing ([`PacingLayerBuilder`]).

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use streamgate_quota::{PacingLayerBuilder, QuotaTracker, QuotaTrackerBuilder};

use super::{value::optional_duration, ConfigError};

/// The quota tracker of one backend (learning the provider's rate-limit
/// headers and refusing while a quota is known to be spent): each key is
/// the [`QuotaTrackerBuilder`] method of the same name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// How long a 429 without retry information exhausts a key (default
    /// 10 s).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub default_cooldown: Option<Duration>,
    /// The shortest exhaustion (default 100 ms).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub min_cooldown: Option<Duration>,
    /// How long a limit of zero exhausts a key (default 1 h).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub zero_allowance_cooldown: Option<Duration>,
    /// The longest provider-supplied wait honoured (default 1 h).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<Duration>,
    /// How long a remaining count without a reset time is believed
    /// (default 60 s).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Duration>,
    /// Distinct models kept per backend; further models share one key
    /// (default 32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_cap: Option<usize>,
    /// Refuse a request whose estimate exceeds the tokens known to be left
    /// (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictive: Option<bool>,
}

impl QuotaConfig {
    /// Sets every key that is present on `builder`.
    pub fn configure(&self, mut builder: QuotaTrackerBuilder) -> QuotaTrackerBuilder {
        if let Some(d) = self.default_cooldown {
            builder = builder.default_cooldown(d);
        }
        if let Some(d) = self.min_cooldown {
            builder = builder.min_cooldown(d);
        }
        if let Some(d) = self.zero_allowance_cooldown {
            builder = builder.zero_allowance_cooldown(d);
        }
        if let Some(d) = self.max_wait {
            builder = builder.max_wait(d);
        }
        if let Some(d) = self.freshness {
            builder = builder.freshness(d);
        }
        if let Some(n) = self.model_cap {
            builder = builder.model_cap(n);
        }
        if let Some(on) = self.predictive {
            builder = builder.predictive(on);
        }
        builder
    }

    /// Every key filled in with the builder's documented defaults.
    pub fn effective(&self) -> Self {
        Self {
            default_cooldown: Some(self.default_cooldown.unwrap_or(Duration::from_secs(10))),
            min_cooldown: Some(self.min_cooldown.unwrap_or(Duration::from_millis(100))),
            zero_allowance_cooldown: Some(
                self.zero_allowance_cooldown
                    .unwrap_or(Duration::from_secs(3600)),
            ),
            max_wait: Some(self.max_wait.unwrap_or(Duration::from_secs(3600))),
            freshness: Some(self.freshness.unwrap_or(Duration::from_secs(60))),
            model_cap: Some(
                self.model_cap
                    .unwrap_or(streamgate_core::keyed::DEFAULT_MODEL_CAP),
            ),
            predictive: Some(self.predictive.unwrap_or(false)),
        }
    }

    /// Builds the tracker; the builder's message at the key it is about.
    pub(crate) fn build(
        &self,
        path: &str,
        builder: QuotaTrackerBuilder,
    ) -> Result<QuotaTracker, ConfigError> {
        self.configure(builder).build().map_err(|error| {
            let message = error.to_string();
            // The tracker's messages start with the setting's name.
            let key = [
                ("default cooldown", "default_cooldown"),
                ("minimum cooldown", "min_cooldown"),
                ("zero-allowance cooldown", "zero_allowance_cooldown"),
                ("maximum wait", "max_wait"),
                ("freshness", "freshness"),
                ("model cap", "model_cap"),
            ]
            .iter()
            .find(|(words, _)| message.starts_with(words))
            .map_or(String::new(), |(_, key)| format!(".{key}"));
            ConfigError::new(format!("{path}{key}"), message)
        })
    }
}

impl fmt::Display for QuotaConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}

/// Pacing of one backend: waits (never fails) to stay under requests and
/// tokens per minute; each key is the [`PacingLayerBuilder`] method of the
/// same name. With the quota gate on, pacing also adopts the limits the
/// tracker learns from the provider's headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PacingConfig {
    /// At most this many requests in any minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// At most this many estimated tokens in any minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Requests that may go at once after a quiet spell (default a tenth of
    /// the limit, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_burst: Option<u32>,
    /// Tokens that may go at once after a quiet spell (default a tenth of
    /// the limit, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_burst: Option<u32>,
}

impl PacingConfig {
    /// Sets every key that is present on `builder`: what `Backend::pacing`
    /// is given.
    pub fn configure(&self, mut builder: PacingLayerBuilder) -> PacingLayerBuilder {
        if let Some(n) = self.requests_per_minute {
            builder = builder.requests_per_minute(n);
        }
        if let Some(n) = self.tokens_per_minute {
            builder = builder.tokens_per_minute(n);
        }
        if let Some(n) = self.request_burst {
            builder = builder.request_burst(n);
        }
        if let Some(n) = self.token_burst {
            builder = builder.token_burst(n);
        }
        builder
    }

    /// Every key filled in: a burst not given is the builder's default for
    /// its limit (a tenth, at least 1).
    pub fn effective(&self) -> Self {
        let burst = |limit: Option<u32>, burst: Option<u32>| {
            burst.or_else(|| limit.map(|limit| (limit / 10).max(1)))
        };
        Self {
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            request_burst: burst(self.requests_per_minute, self.request_burst),
            token_burst: burst(self.tokens_per_minute, self.token_burst),
        }
    }
}

impl fmt::Display for PacingConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
