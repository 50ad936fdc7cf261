//! The layer.

use std::time::Duration;

use tower_layer::Layer;

use super::{ConfigError, FirstChunkTimeout, TimeoutConfig, TimeoutConfigBuilder};

/// Wraps streaming services in [`FirstChunkTimeout`]; see the
/// [module docs](super) for the rules.
///
/// ```
/// use std::time::Duration;
/// use streamgate_timeout::FirstChunkTimeoutLayer;
///
/// # fn main() -> Result<(), streamgate_timeout::ConfigError> {
/// let layer = FirstChunkTimeoutLayer::new(Duration::from_secs(10))?
///     .idle(Duration::from_secs(30))?
///     .total(Duration::from_secs(300))?;
/// assert_eq!(layer.config().idle(), Some(Duration::from_secs(30)));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstChunkTimeoutLayer {
    config: TimeoutConfig,
}

impl FirstChunkTimeoutLayer {
    /// A layer whose first content must arrive within `first_content` of
    /// `call()`. Fails if `first_content` is zero.
    pub fn new(first_content: Duration) -> Result<Self, ConfigError> {
        TimeoutConfig::builder(first_content)
            .build()
            .map(Self::from_config)
    }

    /// Also limits the gap between two content chunks after the first.
    /// Fails if `gap` is zero.
    pub fn idle(self, gap: Duration) -> Result<Self, ConfigError> {
        self.rebuild(|builder| builder.idle(gap))
    }

    /// Also limits the whole stream, from `call()` to its end. Fails if
    /// `limit` is zero or shorter than the first-content deadline.
    pub fn total(self, limit: Duration) -> Result<Self, ConfigError> {
        self.rebuild(|builder| builder.total(limit))
    }

    /// A layer with an already validated config.
    pub fn from_config(config: TimeoutConfig) -> Self {
        Self { config }
    }

    /// The deadlines this layer enforces.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    fn rebuild(
        self,
        change: impl FnOnce(TimeoutConfigBuilder) -> TimeoutConfigBuilder,
    ) -> Result<Self, ConfigError> {
        change(self.config.to_builder())
            .build()
            .map(Self::from_config)
    }
}

impl From<TimeoutConfig> for FirstChunkTimeoutLayer {
    fn from(config: TimeoutConfig) -> Self {
        Self::from_config(config)
    }
}

impl<S> Layer<S> for FirstChunkTimeoutLayer {
    type Service = FirstChunkTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FirstChunkTimeout::new(inner, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Setting;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn layer_rejects_zero_and_inconsistent_deadlines() {
        assert_eq!(
            FirstChunkTimeoutLayer::new(Duration::ZERO),
            Err(ConfigError::ZeroDuration {
                setting: Setting::FirstContent
            })
        );
        let layer = FirstChunkTimeoutLayer::new(ms(200));
        assert_eq!(
            layer.and_then(|l| l.idle(Duration::ZERO)),
            Err(ConfigError::ZeroDuration {
                setting: Setting::Idle
            })
        );
        assert_eq!(
            FirstChunkTimeoutLayer::new(ms(200)).and_then(|l| l.total(ms(100))),
            Err(ConfigError::TotalShorterThanFirstContent {
                total: ms(100),
                first_content: ms(200)
            })
        );
    }

    #[test]
    fn layer_methods_keep_earlier_settings() {
        let layer = FirstChunkTimeoutLayer::new(ms(200))
            .and_then(|l| l.idle(ms(50)))
            .and_then(|l| l.total(ms(900)));
        let expected = TimeoutConfig::builder(ms(200))
            .idle(ms(50))
            .total(ms(900))
            .build()
            .map(FirstChunkTimeoutLayer::from);
        assert_eq!(layer, expected);
        assert!(expected.is_ok());
    }
}
