//! `[router]`: the failover router, as [`FailoverBuilder`] sets it.

use std::{fmt, time::Duration};

use serde::{
    de::{self, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};
use streamgate_failover::{
    Backoff, ContextLengthPolicy, Continuation, FailoverBuilder, Hedge, Strategy,
};
use streamgate_failover::{
    DEFAULT_HEDGE_BUDGET, DEFAULT_HEDGE_FLOOR, DEFAULT_HEDGE_MIN_SAMPLES, DEFAULT_HEDGE_PERCENTILE,
};
use streamgate_providers::ChatRequest;

use super::{
    value::{format_duration, optional_duration},
    ConfigError,
};

/// The router in front of the backends: each key is the
/// [`FailoverBuilder`] method of the same name, and an absent key keeps the
/// builder's default (no retries of the same backend, no waiting when every
/// backend refuses, no deadline of its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouterConfig {
    /// How each request orders the backends (default `ordered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyConfig>,
    /// With the `sticky` strategy, the request field that holds the
    /// session key: a field of the request body beside the messages
    /// ([`ChatRequest::extra`]), dotted into objects, e.g. `"user"`,
    /// `"metadata.session_id"` or `"metadata.user_id"`. A string or number
    /// there is the key; a request without one is routed in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Mid-stream continuation (default: off): a stream that fails after
    /// content continues on a backend that declares a `continuation`
    /// mechanism. `continuation = {}` turns it on with the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation: Option<ContinuationConfig>,
    /// Hedging of a slow first choice (default: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
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

/// How each request orders the backends ([`Strategy`]): `"ordered"`,
/// `"round_robin"`, `"least_time_to_first_content"`,
/// `"power_of_two_choices"`, `"sticky"` (with
/// [`session_key`](RouterConfig::session_key)), or `{ weighted = [3, 1, 1] }`
/// (one weight per backend, in order).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StrategyConfig {
    /// The order of the backends: a waterfall.
    Ordered,
    /// Each request starts at the next backend in turn.
    RoundRobin,
    /// The first choice drawn by weight.
    Weighted(Vec<u32>),
    /// The lowest moving average of time to first content first.
    LeastTimeToFirstContent,
    /// The cheaper of two random backends first.
    PowerOfTwoChoices,
    /// Requests of one session start at the same backend.
    Sticky,
}

impl Serialize for StrategyConfig {
    /// A name, or a one-key table for `weighted`: a form every format reads
    /// back (YAML would otherwise write a tag).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Weighted(weights) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("weighted", weights)?;
                map.end()
            }
            other => serializer.serialize_str(other.strategy().as_str()),
        }
    }
}

impl StrategyConfig {
    fn strategy(&self) -> Strategy {
        match self {
            Self::Ordered => Strategy::Ordered,
            Self::RoundRobin => Strategy::RoundRobin,
            Self::Weighted(weights) => Strategy::Weighted(weights.clone()),
            Self::LeastTimeToFirstContent => Strategy::LeastTimeToFirstContent,
            Self::PowerOfTwoChoices => Strategy::PowerOfTwoChoices,
            Self::Sticky => Strategy::Sticky,
        }
    }
}

/// Hedging ([`Hedge`]): `hedge = { delay = "2s", budget = 0.05 }` for a
/// fixed delay, `hedge = { delay = "learned", percentile = 0.95 }` for a
/// percentile of the first choice's time to first content.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeConfig {
    /// A duration, or `"learned"`.
    pub delay: HedgeDelayConfig,
    /// The share of requests that may be hedged, in (0, 1] (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    /// A learned delay's percentile, in (0, 1) (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// A learned delay's shortest value (default 100 ms).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub floor: Option<Duration>,
    /// Samples a learned delay needs first (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<usize>,
}

/// When the router hedges: after a fixed delay, or a learned one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HedgeDelayConfig {
    /// Always this long.
    Fixed(Duration),
    /// A percentile of the first choice's recent times to first content.
    Learned,
}

const LEARNED: &str = "learned";

impl Serialize for HedgeDelayConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(delay) => serializer.serialize_str(&format_duration(*delay)),
            Self::Learned => serializer.serialize_str(LEARNED),
        }
    }
}

impl<'de> Deserialize<'de> for HedgeDelayConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DelayVisitor;

        impl Visitor<'_> for DelayVisitor {
            type Value = HedgeDelayConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"2s\", or \"learned\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == LEARNED {
                    return Ok(HedgeDelayConfig::Learned);
                }
                super::value::duration::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(HedgeDelayConfig::Fixed)
            }
        }

        deserializer.deserialize_str(DelayVisitor)
    }
}

impl HedgeConfig {
    fn hedge(&self) -> Hedge {
        let mut hedge = match self.delay {
            HedgeDelayConfig::Fixed(delay) => Hedge::after(delay),
            HedgeDelayConfig::Learned => Hedge::learned(),
        };
        if let Some(p) = self.percentile {
            hedge = hedge.percentile(p);
        }
        if let Some(floor) = self.floor {
            hedge = hedge.floor(floor);
        }
        if let Some(n) = self.min_samples {
            hedge = hedge.min_samples(n);
        }
        if let Some(budget) = self.budget {
            hedge = hedge.budget(budget);
        }
        hedge
    }

    fn effective(&self) -> Self {
        let learned = self.delay == HedgeDelayConfig::Learned;
        Self {
            delay: self.delay,
            budget: Some(self.budget.unwrap_or(DEFAULT_HEDGE_BUDGET)),
            percentile: learned.then(|| self.percentile.unwrap_or(DEFAULT_HEDGE_PERCENTILE)),
            floor: learned.then(|| self.floor.unwrap_or(DEFAULT_HEDGE_FLOOR)),
            min_samples: learned.then(|| self.min_samples.unwrap_or(DEFAULT_HEDGE_MIN_SAMPLES)),
        }
    }

    /// The learned delay's keys mean nothing with a fixed one.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let HedgeDelayConfig::Fixed(_) = self.delay {
            for (key, given) in [
                ("percentile", self.percentile.is_some()),
                ("floor", self.floor.is_some()),
                ("min_samples", self.min_samples.is_some()),
            ] {
                if given {
                    return Err(ConfigError::new(
                        format!("router.hedge.{key}"),
                        "only with delay = \"learned\"",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `continuation = { max = 2, total = "1m" }` ([`Continuation`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ContinuationConfig {
    /// Continuations per request (1 to
    /// [`MAX_CONTINUATIONS`](streamgate_failover::MAX_CONTINUATIONS);
    /// default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// The request's total time: no continuation starts after it (default:
    /// none).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
}

impl ContinuationConfig {
    fn continuation(&self) -> Continuation {
        let mut continuation = Continuation::new();
        if let Some(max) = self.max {
            continuation = continuation.max(max);
        }
        if let Some(total) = self.total {
            continuation = continuation.total(total);
        }
        continuation
    }

    fn effective(&self) -> Self {
        Self {
            max: Some(self.max.unwrap_or(1)),
            total: self.total,
        }
    }
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
    pub fn configure<C: 'static>(
        &self,
        mut builder: FailoverBuilder<ChatRequest, C>,
    ) -> FailoverBuilder<ChatRequest, C> {
        if let Some(strategy) = &self.strategy {
            builder = builder.strategy(strategy.strategy());
        }
        if let Some(path) = &self.session_key {
            let path: Vec<String> = path.split('.').map(str::to_owned).collect();
            builder = builder.session_key(move |request: &ChatRequest| session_key(request, &path));
        }
        if let Some(hedge) = &self.hedge {
            builder = builder.hedge(hedge.hedge());
        }
        if let Some(continuation) = &self.continuation {
            builder = builder.continuation(continuation.continuation());
        }
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

    /// Checks what the router's builder cannot see: that a session key
    /// goes with the sticky strategy, and the hedge's keys.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let sticky = self.strategy == Some(StrategyConfig::Sticky);
        match &self.session_key {
            None if sticky => {
                return Err(ConfigError::new(
                    "router.session_key",
                    "the sticky strategy needs the request field that holds the session \
                     key, e.g. \"user\" or \"metadata.session_id\"",
                ))
            }
            Some(_) if !sticky => {
                return Err(ConfigError::new(
                    "router.session_key",
                    "only with strategy = \"sticky\"",
                ))
            }
            Some(path) if path.split('.').any(str::is_empty) => {
                return Err(ConfigError::new(
                    "router.session_key",
                    format!(
                        "{path:?} is not a field path; write e.g. \"user\" or \
                         \"metadata.session_id\""
                    ),
                ))
            }
            _ => {}
        }
        if let Some(hedge) = &self.hedge {
            hedge.check()?;
        }
        Ok(())
    }

    /// Every key filled in with the builder's defaults (the ones that are
    /// off by default stay absent).
    pub fn effective(&self) -> Self {
        let backoff = self.backoff.unwrap_or_default().backoff();
        Self {
            strategy: Some(self.strategy.clone().unwrap_or(StrategyConfig::Ordered)),
            session_key: self.session_key.clone(),
            continuation: self
                .continuation
                .as_ref()
                .map(ContinuationConfig::effective),
            hedge: self.hedge.as_ref().map(HedgeConfig::effective),
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
            ("weighted strategy", "router.strategy"),
            ("hedge budget", "router.hedge.budget"),
            ("hedge delay", "router.hedge.delay"),
            ("hedge percentile", "router.hedge.percentile"),
            ("hedge floor", "router.hedge.floor"),
            ("hedge min samples", "router.hedge.min_samples"),
            ("continuation max", "router.continuation.max"),
            ("continuation total", "router.continuation.total"),
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

/// The session key at `path` in the request's extra body fields: a string,
/// or a number's text; anything else (or nothing) is no key.
fn session_key(request: &ChatRequest, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = request.extra.get(first)?;
    for field in rest {
        value = value.get(field)?;
    }
    match value {
        serde_json::Value::String(key) => Some(key.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl fmt::Display for RouterConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(extra: serde_json::Value, path: &str) -> Option<String> {
        let mut request = ChatRequest::new("m");
        if let serde_json::Value::Object(fields) = extra {
            request.extra = fields;
        }
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        session_key(&request, &path)
    }

    #[test]
    fn a_session_key_is_a_string_or_number_at_its_path_in_the_body_fields() {
        let body = serde_json::json!({
            "user": "alice",
            "metadata": { "session_id": "s-1", "tenant": { "id": 7 }, "flag": true },
        });
        assert_eq!(key(body.clone(), "user").as_deref(), Some("alice"));
        assert_eq!(
            key(body.clone(), "metadata.session_id").as_deref(),
            Some("s-1")
        );
        assert_eq!(
            key(body.clone(), "metadata.tenant.id").as_deref(),
            Some("7")
        );
        // Anything else is no key: the request is routed in order.
        assert_eq!(key(body.clone(), "metadata.flag"), None);
        assert_eq!(key(body.clone(), "metadata"), None);
        assert_eq!(key(body.clone(), "metadata.missing"), None);
        assert_eq!(key(body, "user.name"), None);
        assert_eq!(key(serde_json::json!({}), "user"), None);
    }
}
