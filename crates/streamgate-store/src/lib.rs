//! Throughput analytics that last: every finished request kept in SQLite,
//! exact percentile queries over it, recommendations per input size, and
//! (feature `dashboard`) a JSON API with a dashboard page.
//!
//! [`Store`] is a [`MetricsSink`](streamgate_core::MetricsSink): hand it to
//! the layers (or to `Backends::metrics`) like any other sink. Recording
//! never blocks a request: events go through a bounded queue to one writer
//! thread that inserts them in batched transactions (WAL mode); when the
//! queue is full they are dropped and counted. Rejections, breaker
//! transitions, quota updates, throttle waits and failovers are kept as
//! events beside the requests. The writer also runs the maintenance job:
//! finished hours are rolled up into an `hourly` table, and rows past the
//! configured age or row count are deleted.
//!
//! Percentiles are exact, computed over the stored rows by linear
//! interpolation between the closest ranks (numpy's default; see
//! [`percentile`]). A query covers at most [`MAX_RANGE`] (30 days); asking
//! for more is an error, not a truncation.
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::{Duration, SystemTime}};
//! use streamgate_core::{BackendId, Event, MetricsSink, Outcome, RequestRecord, Usage};
//! use streamgate_store::{Filter, Metric, Store, TimeRange};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("streamgate-store-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let store = Store::builder(dir.join("analytics.db"))
//!     .provider("openai-eu", "openai")
//!     .build()?;
//!
//! let backend = BackendId::new("openai-eu");
//! for output_ms in [1_000, 2_000, 4_000] {
//!     store.record(&Event::Completed(&RequestRecord {
//!         backend: &backend,
//!         model: "gpt-4o",
//!         started_at: SystemTime::now(),
//!         estimated_tokens: 1_500,
//!         time_to_first_chunk: Some(Duration::from_millis(200)),
//!         time_to_first_content: Some(Duration::from_millis(250)),
//!         duration: Duration::from_millis(250 + output_ms),
//!         ended: tokio::time::Instant::now(),
//!         output_duration: Some(Duration::from_millis(output_ms)),
//!         usage: Some(Usage::new(1_500, 101)),
//!         streamed_output_tokens: 101,
//!         burst_tokens_per_sec: Some(120.0),
//!         chunks: 101,
//!         outcome: Outcome::Success,
//!     }));
//! }
//! store.flush().await;
//!
//! let filter = Filter::new(TimeRange::last(Duration::from_secs(3_600))?).model("gpt-4o");
//! let decode = store.percentiles(&filter, Metric::DecodeTokensPerSec, &[50.0, 99.0])?;
//! assert_eq!(decode.samples, 3);
//! assert_eq!(decode.get(50.0), Some(50.0)); // 100 tokens in 2 s
//! # drop(store); std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "dashboard")]
pub mod dashboard;
mod error;
mod maintenance;
mod percentile;
mod query;
mod recommend;
mod row;
mod schema;
mod store;

pub use error::{ConfigError, QueryError, StoreError};
pub use maintenance::ROLLUP_GRACE;
pub use percentile::{percentile, MAX_PERCENTILES};
pub use query::{
    parse_category, Counts, Distribution, Filter, Group, HourBucket, Metric, OutcomeKind,
    PercentileValue, ThroughputReport, TimeRange, MAX_RANGE,
};
pub use recommend::{
    Candidate, CategoryRecommendation, Evidence, Recommendations, DEFAULT_MIN_SAMPLES,
};
pub use schema::SCHEMA_VERSION;
pub use store::{
    Store, StoreBuilder, StoreStats, DEFAULT_BATCH_SIZE, DEFAULT_MAINTENANCE_INTERVAL,
    DEFAULT_MAX_AGE, DEFAULT_MAX_ROWS, DEFAULT_QUEUE_CAPACITY,
};
