//! The layer.

use std::time::Duration;

use tower_layer::Layer;

use super::{ConfigError, FirstChunkTimeout, TimeoutConfig, TimeoutConfigBuilder};

/// Wraps streaming services in [`FirstChunkTimeout`]; see the
/// [crate docs](crate) for the rules.
///
/// ```
/// use std::time::Duration;
/// use streamgate_timeout::FirstChunkTimeoutLayer;
///
/// # fn main() -> Result<(), streamgate_timeout::ConfigError> {
/// let layer = FirstChunkTimeoutLayer::builder(Duration::from_secs(10))
///     .idle(Duration::from_secs(30))
///     .total(Duration::from_secs(300))
///     .build()?;
/// assert_eq!(layer.config().idle(), Some(Duration::from_secs(30)));
/// // Only a first-content deadline:
/// let layer = FirstChunkTimeoutLayer::new(Duration::from_secs(10))?;
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstChunkTimeoutLayer {
    config: TimeoutConfig,
}

impl FirstChunkTimeoutLayer {
    /// A layer whose first content must arrive within `first_content` of
    /// `call()`, with no idle or total deadline. Fails if `first_content`
    /// is zero.
    pub fn new(first_content: Duration) -> Result<Self, ConfigError> {
        Self::builder(first_content).build()
    }

    /// Configures a layer whose first content must arrive within
    /// `first_content` of `call()`; [`build`](FirstChunkTimeoutLayerBuilder::build)
    /// validates every deadline at once.
    pub fn builder(first_content: Duration) -> FirstChunkTimeoutLayerBuilder {
        FirstChunkTimeoutLayerBuilder {
            config: TimeoutConfig::builder(first_content),
        }
    }

    /// A layer with an already validated config.
    pub fn from_config(config: TimeoutConfig) -> Self {
        Self { config }
    }

    /// The deadlines this layer enforces.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }
}

/// Configures a [`FirstChunkTimeoutLayer`] (see
/// [`FirstChunkTimeoutLayer::builder`]).
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct FirstChunkTimeoutLayerBuilder {
    config: TimeoutConfigBuilder,
}

impl FirstChunkTimeoutLayerBuilder {
    /// Also limits the gap between two content chunks after the first.
    pub fn idle(mut self, gap: Duration) -> Self {
        self.config = self.config.idle(gap);
        self
    }

    /// Validates the deadlines (none zero, the total not shorter than the
    /// first-content deadline) and builds the layer.
    pub fn build(self) -> Result<FirstChunkTimeoutLayer, ConfigError> {
        self.config.build().map(FirstChunkTimeoutLayer::from_config)
    }

    /// Also limits the whole stream, from `call()` to its end (at least the
    /// first-content deadline).
    pub fn total(mut self, limit: Duration) -> Self {
        self.config = self.config.total(limit);
        self
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
        assert_eq!(
            FirstChunkTimeoutLayer::builder(ms(200))
                .idle(Duration::ZERO)
                .build(),
            Err(ConfigError::ZeroDuration {
                setting: Setting::Idle
            })
        );
        assert_eq!(
            FirstChunkTimeoutLayer::builder(ms(200))
                .total(ms(100))
                .build(),
            Err(ConfigError::TotalShorterThanFirstContent {
                total: ms(100),
                first_content: ms(200)
            })
        );
    }

    #[test]
    fn layer_builder_keeps_every_setting() {
        let layer = FirstChunkTimeoutLayer::builder(ms(200))
            .idle(ms(50))
            .total(ms(900))
            .build();
        let expected = TimeoutConfig::builder(ms(200))
            .idle(ms(50))
            .total(ms(900))
            .build()
            .map(FirstChunkTimeoutLayer::from);
        assert_eq!(layer, expected);
        assert!(expected.is_ok());
    }
}
