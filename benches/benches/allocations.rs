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
    backend_build, breaker, full_stack, pacing_layer, runtime, timeout_layer, tpm_layer, tracker,
    Pace,
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

/// How the client answers.
#[derive(Clone, Copy)]
enum Answers {
    /// Every chunk ready at once.
    Ready,
    /// `Pending` before every chunk, as a socket does: what a layer
    /// allocates only when something waits shows here. Reported as
    /// `<name>_pending`.
    Pending,
}

fn report<S, B, E>(name: &str, answers: Answers, make: impl Fn(BareService) -> S)
where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    let (name, client): (String, fn(u32) -> BareService) = match answers {
        Answers::Ready => (name.to_owned(), BareService::new),
        Answers::Pending => (
            format!("{name}_pending"),
            BareService::pending_between_chunks,
        ),
    };
    let short = per_request(make(client(SHORT)));
    let long = per_request(make(client(LONG)));
    let per_chunk = (long - short) / f64::from(LONG - SHORT);
    println!("allocations\t{name}\t{short:.3}\t{per_chunk:.4}");
}

fn main() {
    let rt = runtime();
    let _enter = rt.enter();

    report("bare", Answers::Ready, |c| c);
    report("timeout", Answers::Ready, |c| timeout_layer().layer(c));
    report("breaker_closed", Answers::Ready, |c| {
        CircuitBreakerLayer::new(breaker("b")).layer(c)
    });
    report("quota", Answers::Ready, |c| {
        QuotaLayer::new(BackendId::new("b"), QuotaTracker::new()).layer(c)
    });
    report("pacing", Answers::Ready, |c| pacing_layer("b").layer(c));
    report("tpm_budget", Answers::Ready, |c| tpm_layer("b").layer(c));
    report("metrics_tracker", Answers::Ready, |c| {
        MetricsLayer::new("b", tracker()).layer(c)
    });
    report("metrics_noop", Answers::Ready, |c| {
        MetricsLayer::new("b", Arc::new(NoopSink)).layer(c)
    });
    report("full_stack", Answers::Ready, |c| {
        full_stack("b", c, tracker())
    });
    report("backend_build", Answers::Ready, |c| {
        backend_build("b", c, tracker(), Pace::FarLimits)
    });
    report("backend_build_unpaced", Answers::Ready, |c| {
        backend_build("b", c, tracker(), Pace::Off)
    });
    report("timeout", Answers::Pending, |c| timeout_layer().layer(c));
    report("full_stack", Answers::Pending, |c| {
        full_stack("b", c, tracker())
    });
    report("backend_build", Answers::Pending, |c| {
        backend_build("b", c, tracker(), Pace::FarLimits)
    });
    report("failover_full_stack", Answers::Ready, |c| {
        let sink: Arc<dyn MetricsSink> = tracker();
        Failover::builder()
            .service("primary", full_stack("primary", c, sink.clone()))
            .service("fallback", full_stack("fallback", c, sink.clone()))
            .sink(sink)
            .build()
            .expect("failover")
    });
}
