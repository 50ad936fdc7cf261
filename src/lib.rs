//! streamgate: tower middleware that makes streaming LLM clients dependable.
//!
//! This facade re-exports the workspace's crates:
//!
//! - [`core`]: the shared contract (chunks, requests, usage, errors and their
//!   classification, metrics events, the commit-at-first-content primitive);
//! - [`timeout`]: first-content, idle and total deadlines that cancel by drop.
//!
//! The most used names are in [`prelude`].

pub use streamgate_core as core;
pub use streamgate_timeout as timeout;

/// The names most programs need.
pub mod prelude {
    pub use streamgate_core::{
        classify, BackendId, BoxError, Chunk, ErrorClass, FailoverError, LlmRequest,
        MetricsSink, ProviderError, Rejected, StreamTimeout, Usage,
    };
}
