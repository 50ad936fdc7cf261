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
//! # The rules
//!
//! - **First content.** The deadline starts when [`FirstChunkTimeout`] is
//!   *called*, not when headers arrive, so it covers connecting, the
//!   provider's queueing and the headers. It ends at the first chunk whose
//!   [`Chunk::is_content`](streamgate_core::Chunk::is_content) is true.
//!   Non-content chunks (OpenAI's role-only chunk, Anthropic's
//!   `message_start` and `ping`, keep-alives) never reset it, so a stream of
//!   pings still times out. They are held and replayed by the body in order,
//!   usage reports included, so nothing is lost.
//! - **Idle** (optional). After the first content, the longest wait for the
//!   next content chunk. It is measured while the caller waits on the body:
//!   time the caller spends between polls does not count.
//! - **Total** (optional). From `call()` to the end of the stream. It may not
//!   be shorter than the first-content deadline; if it is the nearer deadline
//!   before the first content, it is the one reported.
//!
//! # What happens on expiry
//!
//! The inner response future or body is dropped first — for an HTTP client
//! that closes the connection, so the provider stops generating — and only
//! then is the error returned: a
//! [`StreamTimeout { kind, after }`](streamgate_core::StreamTimeout).
//! Before the first content it is the response future's `Err`, so a
//! failover layer above can still try another backend; after it, it is one
//! `Err` item of the body, after which the body ends. Errors of the inner
//! service pass through unchanged (as [`BoxError`](streamgate_core::BoxError)).
//!
//! This layer emits no metrics events of its own: a timeout is an ordinary
//! failure to the layers above, and the metrics layer records it as "timed
//! out (kind)" because [`classify`](streamgate_core::classify) maps
//! `StreamTimeout` to [`ErrorClass::Timeout`](streamgate_core::ErrorClass::Timeout).
//! It therefore takes neither a backend name nor a sink.
//!
//! # Cost
//!
//! At most one allocation per request: a tokio `Sleep` boxed with its
//! deadlines, made at the request's first wait (set where it would have
//! been at `call()`) and reset in place for the idle and total deadlines, so
//! the response future and the body carry a pointer. A response over a
//! socket waits for its head and makes it there; an answer that is ready
//! whenever it is polled makes none. No task is spawned and nothing is
//! allocated per chunk. A wait polls the sleep only when the task's waker
//! changed; otherwise it asks whether the sleep has fired. A wait after
//! content reads the clock once (the idle gap restarts there).
//! Until the first content the chunks before it are held in one small
//! buffer (see [`Commit`](streamgate_core::Commit)); when the first chunk is
//! content nothing is held.
//!
//! # Requirements
//!
//! The inner body must be `Unpin` (box a `!Unpin` stream with `Box::pin`);
//! the body this layer returns is then `Unpin` too, so layers above can
//! commit it again.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod timeout;

pub use streamgate_core::{StreamTimeout, TimeoutKind};
pub use timeout::{
    ConfigError, FirstChunkTimeout, FirstChunkTimeoutLayer, FirstChunkTimeoutLayerBuilder,
    ResponseFuture, Setting, TimeoutBody, TimeoutConfig, TimeoutConfigBuilder,
};
