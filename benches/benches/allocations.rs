//! Allocations per request and per chunk, counted by a global allocator.
//!
//! Not a timing benchmark: counts are exact, so one pass is enough. Its own
//! binary, so the counter never slows the timing benchmarks. Prints one line
//! per service: `allocations<TAB>name<TAB>per request<TAB>per chunk`, where
//! per chunk is the difference between a 1,000-token and a 4-token answer
//! divided by the 996 extra chunks. `<name>_pending` is the same service on
//! a stream that answers `Pending` before every chunk.
// Setup that cannot work is a broken benchmark: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use http::Response;
use streamgate_benches::{drive, BareService, BenchChunk, BenchRequest, CountingAllocator};
use streamgate_breaker::CircuitBreakerLayer;
use streamgate_core::{BackendId, BoxError, MetricsSink, NoopSink};
use streamgate_failover::Failover;
use streamgate_metrics::MetricsLayer;
use streamgate_quota::{QuotaLayer, QuotaTracker};
use tower::{Layer, Service};

mod common;
use common::{
    backend_build, backend_build_unpaced, breaker, full_stack, pacing_layer, runtime,
    timeout_layer, tpm_layer, tracker,
};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

const SHORT: u32 = 4;
const LONG: u32 = 1_000;
const REQUESTS: u64 = 1_000;

/// Average allocations per request over [`REQUESTS`] requests, after a few
/// to warm up (first-use allocations such as a tracker's new key).
fn per_request<S, B, E>(mut service: S) -> f64
where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    for _ in 0..10 {
        drive(&mut service, BenchRequest::new()).expect("warm-up request");
    }
    let before = ALLOCATOR.allocations();
    for _ in 0..REQUESTS {
        drive(&mut service, BenchRequest::new()).expect("request");
    }
    (ALLOCATOR.allocations() - before) as f64 / REQUESTS as f64
}

fn report<S, B, E>(name: &str, make: impl Fn(BareService) -> S)
where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    report_with(name, BareService::new, make);
}

/// The same on the stream that answers `Pending` before every chunk, as a
/// socket does: what a layer allocates only when something waits shows
/// here. Reported as `<name>_pending`.
fn report_pending<S, B, E>(name: &str, make: impl Fn(BareService) -> S)
where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    report_with(
        &format!("{name}_pending"),
        BareService::pending_between_chunks,
        make,
    );
}

fn report_with<S, B, E>(
    name: &str,
    client: impl Fn(u32) -> BareService,
    make: impl Fn(BareService) -> S,
) where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    let short = per_request(make(client(SHORT)));
    let long = per_request(make(client(LONG)));
    let per_chunk = (long - short) / f64::from(LONG - SHORT);
    println!("allocations\t{name}\t{short:.3}\t{per_chunk:.4}");
}

fn main() {
    let rt = runtime();
    let _enter = rt.enter();

    report("bare", |c| c);
    report("timeout", |c| timeout_layer().layer(c));
    report("breaker_closed", |c| {
        CircuitBreakerLayer::new(breaker("b")).layer(c)
    });
    report("quota", |c| {
        QuotaLayer::new(BackendId::new("b"), QuotaTracker::new()).layer(c)
    });
    report("pacing", |c| pacing_layer("b").layer(c));
    report("tpm_budget", |c| tpm_layer("b").layer(c));
    report("metrics_tracker", |c| {
        MetricsLayer::new("b", tracker()).layer(c)
    });
    report("metrics_noop", |c| {
        MetricsLayer::new("b", Arc::new(NoopSink)).layer(c)
    });
    report("full_stack", |c| full_stack("b", c, tracker()));
    report("backend_build", |c| backend_build("b", c, tracker()));
    report("backend_build_unpaced", |c| {
        backend_build_unpaced("b", c, tracker())
    });
    report_pending("timeout", |c| timeout_layer().layer(c));
    report_pending("full_stack", |c| full_stack("b", c, tracker()));
    report_pending("backend_build", |c| backend_build("b", c, tracker()));
    report("failover_full_stack", |c| {
        let sink: Arc<dyn MetricsSink> = tracker();
        Failover::builder()
            .service("primary", full_stack("primary", c, sink.clone()))
            .service("fallback", full_stack("fallback", c, sink.clone()))
            .sink(sink)
            .build()
            .expect("failover")
    });
}
