//! `[backends.breaker]`: the circuit breaker, as [`BreakerBuilder`] sets it.

use std::{fmt, time::Duration};

use serde::{
    de::{self, value::MapAccessDeserializer, MapAccess, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};
use streamgate_breaker::{
    BreakerBuilder, OpenWait, DEFAULT_COUNTED, DEFAULT_HALF_OPEN_MAX_WAIT, DEFAULT_MAX_WAIT,
    DEFAULT_MINIMUM_OPEN,
};
use streamgate_core::ErrorClass;

use super::{
    value::{duration, optional_duration, optional_toggle_duration, Toggle},
    ConfigError,
};

/// The circuit breaker of one backend: each key is the [`BreakerBuilder`]
/// method of the same name, and an absent key keeps the builder's default
/// (3 failures within 60 s open it for 30 s, then 1 probe).
///
/// ```toml
/// failures_within = { failures = 3, window = "60s" }
/// failure_rate = 0.5
/// minimum_calls = 10
/// count_window = 100
/// open_wait = { initial = "1s", multiplier = 2.0, max = "1m" }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Opens when this many failures happen within the window (default 3
    /// within 60 s); `"off"` turns the trigger off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures_within: Option<Toggle<FailuresWithin>>,
    /// Opens after this many failures in a row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Opens when at least this fraction of the window's calls failed (above
    /// 0, at most 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Opens when at least `rate` of the window's calls had their first
    /// content later than `threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<SlowCallRate>,
    /// Calls the window holds before a rate is judged (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_calls: Option<u32>,
    /// The rate triggers read the last this many calls (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_window: Option<u32>,
    /// The rate triggers read the calls of this many last seconds instead
    /// (whole seconds, e.g. `"60s"`).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub time_window: Option<Duration>,
    /// How long it stays open: a fixed `"30s"` (the default) or a growing
    /// `{ initial, multiplier, max }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_wait: Option<OpenWaitConfig>,
    /// Probes let through when half-open (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
    /// The longest it stays half-open without a verdict (default 120 s);
    /// `"off"` lets a probe run as long as it takes.
    #[serde(
        default,
        with = "optional_toggle_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub half_open_max_wait: Option<Toggle<Duration>>,
    /// The shortest open, whatever a `Retry-After` says (default 1 s).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub minimum_open: Option<Duration>,
    /// The longest wait a provider's `Retry-After` or reset may ask of the
    /// breaker; longer ones are cut to it (default 1 h).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_wait: Option<Duration>,
    /// Whether an error that says when to retry opens exactly until then
    /// (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub honor_retry_after: Option<bool>,
    /// Exactly these error classes count as failures (default: server,
    /// overloaded, timeout, network, truncated, other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted_classes: Option<Vec<ErrorClass>>,
}

/// `failures_within = { failures = 3, window = "60s" }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresWithin {
    /// How many failures.
    pub failures: u32,
    /// Within how long (the first and the last at most this far apart).
    #[serde(with = "duration")]
    pub window: Duration,
}

/// `slow_call_rate = { rate = 0.5, threshold = "5s" }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowCallRate {
    /// The fraction of slow calls that opens the breaker.
    pub rate: f64,
    /// A call whose first content comes later than this is slow.
    #[serde(with = "duration")]
    pub threshold: Duration,
}

/// How long the breaker stays open: a string for a fixed wait (`"30s"`),
/// a table for a growing one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpenWaitConfig {
    /// Always the same wait.
    Fixed(Duration),
    /// `initial`, times `multiplier` for each further open, at most `max`.
    Exponential(ExponentialWait),
}

/// `open_wait = { initial = "1s", multiplier = 2.0, max = "1m" }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialWait {
    /// The first wait.
    #[serde(with = "duration")]
    pub initial: Duration,
    /// The factor per further open (default 2).
    #[serde(default = "two")]
    pub multiplier: f64,
    /// The longest wait.
    #[serde(with = "duration")]
    pub max: Duration,
}

fn two() -> f64 {
    2.0
}

impl OpenWaitConfig {
    fn to_open_wait(self) -> OpenWait {
        match self {
            Self::Fixed(wait) => OpenWait::Fixed(wait),
            Self::Exponential(e) => OpenWait::Exponential {
                initial: e.initial,
                multiplier: e.multiplier,
                max: e.max,
            },
        }
    }
}

impl Serialize for OpenWaitConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(wait) => duration::serialize(wait, serializer),
            Self::Exponential(e) => e.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for OpenWaitConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WaitVisitor;

        impl<'de> Visitor<'de> for WaitVisitor {
            type Value = OpenWaitConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", or { initial, multiplier, max }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                duration::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(OpenWaitConfig::Fixed)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ExponentialWait::deserialize(MapAccessDeserializer::new(map))
                    .map(OpenWaitConfig::Exponential)
            }
        }

        deserializer.deserialize_any(WaitVisitor)
    }
}

impl BreakerConfig {
    /// Sets every key that is present on `builder` (the builder's defaults
    /// stay for the others): what `Backend::circuit_breaker_with` is given.
    pub fn configure(&self, mut builder: BreakerBuilder) -> BreakerBuilder {
        match self.failures_within {
            None => {}
            Some(Toggle::Off) => builder = builder.without_failures_within(),
            Some(Toggle::On(f)) => builder = builder.failures_within(f.failures, f.window),
        }
        if let Some(n) = self.consecutive_failures {
            builder = builder.consecutive_failures(n);
        }
        if let Some(rate) = self.failure_rate {
            builder = builder.failure_rate(rate);
        }
        if let Some(slow) = self.slow_call_rate {
            builder = builder.slow_call_rate(slow.rate, slow.threshold);
        }
        if let Some(n) = self.minimum_calls {
            builder = builder.minimum_calls(n);
        }
        if let Some(n) = self.count_window {
            builder = builder.count_window(n);
        }
        if let Some(window) = self.time_window {
            let secs = u32::try_from(window.as_secs()).unwrap_or(u32::MAX);
            builder = builder.time_window(secs);
        }
        if let Some(wait) = self.open_wait {
            builder = builder.open_wait(wait.to_open_wait());
        }
        if let Some(n) = self.half_open_probes {
            builder = builder.half_open_probes(n);
        }
        match self.half_open_max_wait {
            None => {}
            Some(Toggle::Off) => builder = builder.without_half_open_max_wait(),
            Some(Toggle::On(wait)) => builder = builder.half_open_max_wait(wait),
        }
        if let Some(wait) = self.minimum_open {
            builder = builder.minimum_open(wait);
        }
        if let Some(wait) = self.max_wait {
            builder = builder.max_wait(wait);
        }
        if let Some(honor) = self.honor_retry_after {
            builder = builder.honor_retry_after(honor);
        }
        if let Some(classes) = &self.counted_classes {
            builder = builder.counted_classes(classes.iter().copied());
        }
        builder
    }

    /// Every key filled in: the given ones, and the builder's defaults for
    /// the rest (a rate trigger not given stays off).
    pub fn effective(&self) -> Self {
        let window_given = self.count_window.is_some() || self.time_window.is_some();
        Self {
            failures_within: Some(self.failures_within.unwrap_or(Toggle::On(FailuresWithin {
                failures: 3,
                window: Duration::from_secs(60),
            }))),
            consecutive_failures: self.consecutive_failures,
            failure_rate: self.failure_rate,
            slow_call_rate: self.slow_call_rate,
            minimum_calls: Some(self.minimum_calls.unwrap_or(10)),
            count_window: if window_given {
                self.count_window
            } else {
                Some(100)
            },
            time_window: self.time_window,
            open_wait: Some(
                self.open_wait
                    .unwrap_or(OpenWaitConfig::Fixed(Duration::from_secs(30))),
            ),
            half_open_probes: Some(self.half_open_probes.unwrap_or(1)),
            half_open_max_wait: Some(
                self.half_open_max_wait
                    .unwrap_or(Toggle::On(DEFAULT_HALF_OPEN_MAX_WAIT)),
            ),
            minimum_open: Some(self.minimum_open.unwrap_or(DEFAULT_MINIMUM_OPEN)),
            max_wait: Some(self.max_wait.unwrap_or(DEFAULT_MAX_WAIT)),
            honor_retry_after: Some(self.honor_retry_after.unwrap_or(true)),
            counted_classes: Some(
                self.counted_classes
                    .clone()
                    .unwrap_or_else(|| DEFAULT_COUNTED.to_vec()),
            ),
        }
    }

    /// Checks what the builder cannot see: one window kind, whole seconds.
    pub(crate) fn check(&self, path: &str) -> Result<(), ConfigError> {
        if self.count_window.is_some() && self.time_window.is_some() {
            return Err(ConfigError::new(
                format!("{path}.time_window"),
                "give count_window or time_window, not both",
            ));
        }
        if let Some(window) = self.time_window {
            if window.subsec_nanos() != 0 {
                return Err(ConfigError::new(
                    format!("{path}.time_window"),
                    "must be whole seconds",
                ));
            }
        }
        Ok(())
    }

    /// The builder's error, at the key it names, with the value given.
    pub(crate) fn explain(
        &self,
        path: &str,
        error: &streamgate_breaker::ConfigError,
    ) -> ConfigError {
        let setting = error.setting();
        let text = error.to_string();
        let prefix = format!("invalid circuit breaker setting {setting}: ");
        let reason = text.strip_prefix(&prefix).unwrap_or(&text);
        let value = match setting {
            "failure_rate" => self.failure_rate.map(|v| v.to_string()),
            "slow_call_rate" if reason.contains("fraction") => {
                self.slow_call_rate.map(|v| v.rate.to_string())
            }
            "minimum_calls" => self.minimum_calls.map(|v| v.to_string()),
            "count_window" => self.count_window.map(|v| v.to_string()),
            "consecutive_failures" => self.consecutive_failures.map(|v| v.to_string()),
            "half_open_probes" => self.half_open_probes.map(|v| v.to_string()),
            _ => None,
        };
        let message = match value {
            Some(value) => format!("{value}: {reason}"),
            None => reason.to_owned(),
        };
        ConfigError::new(format!("{path}.{setting}"), message)
    }
}

impl fmt::Display for BreakerConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
