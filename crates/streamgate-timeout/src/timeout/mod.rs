//! First-content, idle and total deadlines for a streaming service.
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
//! One boxed tokio `Sleep` per request, reset in place for the idle and
//! total deadlines; no task is spawned and nothing is allocated per chunk.
//! Until the first content the chunks before it are held in one small
//! buffer (see [`Commit`](streamgate_core::Commit)); when the first chunk is
//! content nothing is held.
//!
//! # Requirements
//!
//! The inner body must be `Unpin` (box a `!Unpin` stream with `Box::pin`);
//! the body this layer returns is then `Unpin` too, so layers above can
//! commit it again.

mod body;
mod config;
mod deadline;
mod future;
mod layer;
mod service;

pub use body::TimeoutBody;
pub use config::{ConfigError, Setting, TimeoutConfig, TimeoutConfigBuilder};
pub use future::ResponseFuture;
pub use layer::{FirstChunkTimeoutLayer, FirstChunkTimeoutLayerBuilder};
pub use service::FirstChunkTimeout;
