//! First-content, idle and total deadlines for streaming tower services,
//! cancelling by drop.
//!
//! An LLM provider that accepted a request may still take minutes to send its
//! first token, or send only keep-alive pings. [`FirstChunkTimeoutLayer`]
//! gives the first *content* a deadline that starts at `call()` and that
//! pings cannot extend; optionally it also bounds the gap between content
//! chunks and the whole stream. When a deadline expires the inner request is
//! dropped (the connection closes) and the caller gets a typed
//! [`StreamTimeout`].
//!
//! # Example
//!
//! Wrap any service that returns an `http::Response` whose body is a stream
//! of `Result<YourChunk, YourError>`:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use futures::{stream, StreamExt};
//! use streamgate_core::{BoxError, Chunk};
//! use streamgate_timeout::{FirstChunkTimeoutLayer, StreamTimeout, TimeoutKind};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! /// What your client yields. Only content counts for the deadline.
//! #[derive(Debug, PartialEq)]
//! enum Delta {
//!     Role,
//!     Text(String),
//! }
//!
//! impl Chunk for Delta {
//!     fn is_content(&self) -> bool {
//!         matches!(self, Delta::Text(_))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // Your streaming client; the body must be `Unpin` (else `Box::pin` it).
//! let client = service_fn(|prompt: String| async move {
//!     let body = stream::iter([Ok::<_, Infallible>(Delta::Role), Ok(Delta::Text(prompt))]);
//!     Ok::<_, Infallible>(http::Response::new(body))
//! });
//!
//! let service = ServiceBuilder::new()
//!     .layer(
//!         FirstChunkTimeoutLayer::builder(Duration::from_secs(10))
//!             .idle(Duration::from_secs(30))
//!             .build()?,
//!     )
//!     .service(client);
//!
//! let response = service.oneshot("hello".to_string()).await?;
//! let chunks: Vec<_> = response.into_body().collect().await;
//! assert_eq!(chunks.len(), 2); // the role chunk is replayed, then the text
//!
//! // A provider that only ever sends pings times out, with a typed error.
//! let silent = service_fn(|_: String| async {
//!     let pings = stream::iter([Ok::<_, Infallible>(Delta::Role)]).chain(stream::pending());
//!     Ok::<_, Infallible>(http::Response::new(pings))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(FirstChunkTimeoutLayer::new(Duration::from_secs(10))?)
//!     .service(silent);
//! let Err(error) = service.oneshot("hello".to_string()).await else {
//!     panic!("pings must not count as content");
//! };
//! let timeout = error.downcast_ref::<StreamTimeout>();
//! assert_eq!(timeout.map(|t| t.kind), Some(TimeoutKind::FirstContent));
//! # Ok(())
//! # }
//! ```
//!
//! See the [`timeout`] module for the exact rules.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod timeout;

pub use streamgate_core::{StreamTimeout, TimeoutKind};
pub use timeout::{
    ConfigError, FirstChunkTimeout, FirstChunkTimeoutLayer, FirstChunkTimeoutLayerBuilder,
    ResponseFuture, Setting, TimeoutBody, TimeoutConfig, TimeoutConfigBuilder,
};
