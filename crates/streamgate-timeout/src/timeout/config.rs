//! The deadlines of a [`FirstChunkTimeoutLayer`](super::FirstChunkTimeoutLayer),
//! validated once.

use std::{error::Error, fmt, time::Duration};

use streamgate_core::DisplayDuration;

/// The deadlines one layer enforces. Made by [`TimeoutConfig::builder`] (or
/// [`FirstChunkTimeoutLayer::new`](super::FirstChunkTimeoutLayer::new)), so
/// every value in it has been validated.
///
/// There are no defaults: how long a provider may take to its first token
/// depends on the model and the prompt size, so the first-content deadline
/// is always given, and the idle and total deadlines are off unless set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutConfig {
    first_content: Duration,
    idle: Option<Duration>,
    total: Option<Duration>,
}

impl TimeoutConfig {
    /// Starts a config whose first content must arrive within
    /// `first_content` of `call()`.
    pub fn builder(first_content: Duration) -> TimeoutConfigBuilder {
        TimeoutConfigBuilder {
            first_content,
            idle: None,
            total: None,
        }
    }

    /// The longest time from `call()` to the first content chunk.
    pub fn first_content(&self) -> Duration {
        self.first_content
    }

    /// The longest gap between two content chunks after the first, if set.
    pub fn idle(&self) -> Option<Duration> {
        self.idle
    }

    /// The longest time from `call()` to the end of the stream, if set.
    pub fn total(&self) -> Option<Duration> {
        self.total
    }
}

/// Collects the deadlines of a [`TimeoutConfig`]; [`build`](Self::build)
/// validates them.
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TimeoutConfigBuilder {
    first_content: Duration,
    idle: Option<Duration>,
    total: Option<Duration>,
}

impl TimeoutConfigBuilder {
    /// Sets the longest gap between two content chunks after the first.
    /// Non-content chunks (pings, usage) do not restart it.
    pub fn idle(mut self, gap: Duration) -> Self {
        self.idle = Some(gap);
        self
    }

    /// Sets the longest time from `call()` to the end of the stream.
    pub fn total(mut self, limit: Duration) -> Self {
        self.total = Some(limit);
        self
    }

    /// Validates the deadlines: none may be zero, and the total deadline may
    /// not be shorter than the first-content deadline (it would make the
    /// first-content deadline meaningless).
    pub fn build(self) -> Result<TimeoutConfig, ConfigError> {
        if self.first_content.is_zero() {
            return Err(ConfigError::ZeroDuration {
                setting: Setting::FirstContent,
            });
        }
        if self.idle.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration {
                setting: Setting::Idle,
            });
        }
        if let Some(total) = self.total {
            if total.is_zero() {
                return Err(ConfigError::ZeroDuration {
                    setting: Setting::Total,
                });
            }
            if total < self.first_content {
                return Err(ConfigError::TotalShorterThanFirstContent {
                    total,
                    first_content: self.first_content,
                });
            }
        }
        Ok(TimeoutConfig {
            first_content: self.first_content,
            idle: self.idle,
            total: self.total,
        })
    }
}

/// One of the deadlines, named in a [`ConfigError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    /// The first-content deadline.
    FirstContent,
    /// The idle gap between content chunks.
    Idle,
    /// The total deadline.
    Total,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstContent => "first-content deadline",
            Self::Idle => "idle deadline",
            Self::Total => "total deadline",
        })
    }
}

/// A timeout configuration that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A deadline of zero would fail every request.
    ZeroDuration {
        /// Which deadline.
        setting: Setting,
    },
    /// The total deadline would always expire before the first-content one.
    TotalShorterThanFirstContent {
        /// The total deadline given.
        total: Duration,
        /// The first-content deadline given.
        first_content: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroDuration { setting } => write!(f, "{setting} must be greater than zero"),
            Self::TotalShorterThanFirstContent {
                total,
                first_content,
            } => write!(
                f,
                "total deadline ({}) is shorter than the first-content deadline ({})",
                DisplayDuration(*total),
                DisplayDuration(*first_content)
            ),
        }
    }
}

impl Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn zero_deadlines_are_rejected_by_name() {
        let zero = |setting| Err(ConfigError::ZeroDuration { setting });
        assert_eq!(
            TimeoutConfig::builder(Duration::ZERO).build(),
            zero(Setting::FirstContent)
        );
        assert_eq!(
            TimeoutConfig::builder(ms(1)).idle(Duration::ZERO).build(),
            zero(Setting::Idle)
        );
        assert_eq!(
            TimeoutConfig::builder(ms(1)).total(Duration::ZERO).build(),
            zero(Setting::Total)
        );
    }

    #[test]
    fn total_shorter_than_first_content_is_rejected() {
        let err = TimeoutConfig::builder(ms(500)).total(ms(200)).build();
        assert_eq!(
            err,
            Err(ConfigError::TotalShorterThanFirstContent {
                total: ms(200),
                first_content: ms(500)
            })
        );
        let Err(err) = err else { panic!("accepted") };
        assert_eq!(
            err.to_string(),
            "total deadline (200 ms) is shorter than the first-content deadline (500 ms)"
        );
    }

    #[test]
    fn valid_config_keeps_every_deadline() {
        let config = TimeoutConfig::builder(ms(200))
            .idle(ms(50))
            .total(ms(200))
            .build();
        let Ok(config) = config else {
            panic!("valid config rejected: {config:?}")
        };
        assert_eq!(config.first_content(), ms(200));
        assert_eq!(config.idle(), Some(ms(50)));
        assert_eq!(config.total(), Some(ms(200)));
        assert_eq!(
            ConfigError::ZeroDuration {
                setting: Setting::Idle
            }
            .to_string(),
            "idle deadline must be greater than zero"
        );
    }
}
