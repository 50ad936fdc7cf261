//! The timeout layer, its service, future and body.

mod body;
mod config;
mod deadline;
mod future;
mod layer;
mod service;
mod timer;

pub use body::TimeoutBody;
pub use config::{ConfigError, Setting, TimeoutConfig, TimeoutConfigBuilder};
pub use future::ResponseFuture;
pub use layer::{FirstChunkTimeoutLayer, FirstChunkTimeoutLayerBuilder};
pub use service::FirstChunkTimeout;
