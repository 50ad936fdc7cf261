//! What each streamgate layer costs on top of an in-memory client, next to
//! the peer crates doing the same work, all in one criterion run so that
//! the ratios hold on a noisy machine.
//!
//! Groups (each benchmark is one whole request: ready, call, resolve, drain):
//! - `per_request`: the bare client, each layer alone, the full per-backend
//!   stack, the full stack under `Failover`, and the peers.
//! - `per_chunk`: a 1,000-token stream, bare and through the full stack.
//! - `rejection`: an open breaker and an exhausted quota refusing.
//! - `contention`: the bare client and the full stack from 1 and 2 threads.
//!
//! `cargo run --release -p streamgate-benches --bin bench-report` runs this
//! and writes the ratios to `BENCHMARKS.md`.
// Setup that cannot work is a broken benchmark: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    convert::Infallible,
    future::Ready,
    hint::black_box,
    num::NonZeroU32,
    sync::{Arc, Barrier},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::Response;
use streamgate_benches::{drive, BareService, BenchChunk, BenchRequest, BenchStream};
use streamgate_breaker::{Breaker, CircuitBreakerLayer, OpenWait};
use streamgate_core::{
    BackendId, BoxError, ErrorClass, NoopSink, ProviderError, RejectReason, Rejected,
};
use streamgate_metrics::MetricsLayer;
use streamgate_quota::{QuotaInfo, QuotaLayer, QuotaTracker};
use tower::{Layer, Service, ServiceExt};

mod common;
use common::{
    backend_build, breaker, failover, failover_with, full_stack, pacing_layer, runtime,
    timeout_layer, tpm_layer, tracker, Pace, MODEL,
};
use streamgate_failover::Strategy;

/// Text chunks per answer in the per-request benchmarks (plus a role and a
/// usage chunk: six chunks in all).
const SHORT: u32 = 4;
/// Text chunks per answer in the per-chunk benchmarks.
const LONG: u32 = 1_000;

/// failsafe's breaker around the response future: what its tower-less API
/// covers.
#[derive(Clone)]
struct FailsafeService<B> {
    inner: BareService,
    breaker: B,
}

impl<B: failsafe::futures::CircuitBreaker> Service<BenchRequest> for FailsafeService<B> {
    type Response = Response<BenchStream>;
    type Error = failsafe::Error<Infallible>;
    type Future = failsafe::futures::ResponseFuture<
        Ready<Result<Response<BenchStream>, Infallible>>,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BenchRequest) -> Self::Future {
        self.breaker
            .call(Service::<BenchRequest>::call(&mut self.inner, request))
    }
}

type DirectLimiter = governor::DefaultDirectRateLimiter;

/// governor's direct limiters checked before the call: the same work as our
/// pacing's fast path (one request cell, then the estimate in token cells).
#[derive(Clone)]
struct GovernorService {
    inner: BareService,
    requests: Arc<DirectLimiter>,
    tokens: Arc<DirectLimiter>,
}

impl GovernorService {
    fn new(inner: BareService) -> Self {
        let quota = governor::Quota::per_minute(NonZeroU32::MAX);
        Self {
            inner,
            requests: Arc::new(governor::RateLimiter::direct(quota)),
            tokens: Arc::new(governor::RateLimiter::direct(quota)),
        }
    }
}

impl Service<BenchRequest> for GovernorService {
    type Response = Response<BenchStream>;
    type Error = BoxError;
    type Future = Ready<Result<Response<BenchStream>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BenchRequest) -> Self::Future {
        let cells = NonZeroU32::new(request.estimated_tokens as u32);
        let admitted = self.requests.check().is_ok()
            && cells.is_none_or(|n| matches!(self.tokens.check_n(n), Ok(Ok(()))));
        std::future::ready(if admitted {
            Service::<BenchRequest>::call(&mut self.inner, request)
                .into_inner()
                .map_err(Into::into)
        } else {
            Err("rate limited".into())
        })
    }
}

fn bench_one<S, B, E>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut service: S,
) where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    // Fail before measuring if the stack does not serve the request.
    let chunks = drive(&mut service, BenchRequest::new()).expect(name);
    assert!(chunks > 0, "{name}: no chunks");
    group.bench_function(name, |b| {
        b.iter(|| black_box(drive(&mut service, black_box(BenchRequest::new())).expect("served")))
    });
}

/// The request of the pacing benchmarks, ours and `governor`'s: a 10-token
/// estimate. The highest limit the limiters take is `u32::MAX` per minute
/// (72 million tokens a second); at 100 tokens, a limiter alone serving
/// five million requests a second would empty its burst within the run
/// and make requests wait. Taking 10 cells costs what taking 100 does (one
/// compare-and-swap).
fn paced(request: BenchRequest) -> BenchRequest {
    BenchRequest {
        estimated_tokens: 10,
        ..request
    }
}

fn per_request(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let client = BareService::new(SHORT);
    let mut group = c.benchmark_group("per_request");
    group.throughput(Throughput::Elements(1));

    bench_one(&mut group, "bare", client);
    bench_one(&mut group, "timeout", timeout_layer().layer(client));
    bench_one(
        &mut group,
        "breaker_closed",
        CircuitBreakerLayer::new(breaker("b")).layer(client),
    );
    bench_one(
        &mut group,
        "quota",
        QuotaLayer::new(BackendId::new("b"), QuotaTracker::new()).layer(client),
    );
    bench_one(
        &mut group,
        "pacing",
        pacing_layer("b").layer(client).map_request(paced),
    );
    bench_one(&mut group, "tpm_budget", tpm_layer("b").layer(client));
    bench_one(
        &mut group,
        "metrics_tracker",
        MetricsLayer::new("b", tracker()).layer(client),
    );
    bench_one(
        &mut group,
        "metrics_noop",
        MetricsLayer::new("b", Arc::new(NoopSink)).layer(client),
    );
    bench_one(&mut group, "full_stack", full_stack("b", client, tracker()));
    bench_one(
        &mut group,
        "backend_build",
        backend_build("b", client, tracker(), Pace::FarLimits),
    );
    bench_one(
        &mut group,
        "backend_build_unpaced",
        backend_build("b", client, tracker(), Pace::Off),
    );
    bench_one(&mut group, "failover_full_stack", failover(SHORT));
    // Each strategy's cost per request above the ordered router.
    for strategy in [
        Strategy::RoundRobin,
        Strategy::LeastTimeToFirstContent,
        Strategy::PowerOfTwoChoices,
    ] {
        let name = format!("failover_{}", strategy.as_str());
        bench_one(&mut group, &name, failover_with(SHORT, strategy));
    }

    // Peers on the same work.
    bench_one(
        &mut group,
        "peer_tower_timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(30)).layer(client),
    );
    let resilience = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("tower-resilience config");
    bench_one(
        &mut group,
        "peer_tower_resilience_breaker",
        resilience.layer(client),
    );
    bench_one(
        &mut group,
        "peer_failsafe_breaker",
        FailsafeService {
            inner: client,
            breaker: failsafe::Config::new().build(),
        },
    );
    bench_one(
        &mut group,
        "peer_governor_check",
        GovernorService::new(client).map_request(paced),
    );
    group.finish();
}

fn per_chunk(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let client = BareService::new(LONG);
    let mut group = c.benchmark_group("per_chunk");
    group.throughput(Throughput::Elements(client.chunks_per_response()));
    bench_one(&mut group, "bare_1000", client);
    bench_one(
        &mut group,
        "full_stack_1000",
        full_stack("b", client, tracker()),
    );
    bench_one(
        &mut group,
        "backend_build_1000",
        backend_build("b", client, tracker(), Pace::FarLimits),
    );
    // Each layer alone, to see where the per-chunk cost of the stack goes.
    bench_one(&mut group, "timeout_1000", timeout_layer().layer(client));
    bench_one(
        &mut group,
        "breaker_closed_1000",
        CircuitBreakerLayer::new(breaker("b")).layer(client),
    );
    bench_one(
        &mut group,
        "quota_1000",
        QuotaLayer::new(BackendId::new("b"), QuotaTracker::new()).layer(client),
    );
    bench_one(&mut group, "pacing_1000", pacing_layer("b").layer(client));
    bench_one(&mut group, "tpm_budget_1000", tpm_layer("b").layer(client));
    bench_one(
        &mut group,
        "metrics_tracker_1000",
        MetricsLayer::new("b", tracker()).layer(client),
    );
    group.finish();

    // A stream that answers `Pending` before every chunk, as a socket does:
    // what the layers do when a chunk is not ready at once (timers, wakers)
    // is paid here and not in the always-ready stream above.
    // The short stream too, so that the report can take the per-request
    // cost out of the per-chunk one as it does for the ready stream.
    let mut group = c.benchmark_group("per_chunk_pending");
    for tokens in [SHORT, LONG] {
        let client = BareService::pending_between_chunks(tokens);
        bench_one(&mut group, &format!("bare_{tokens}"), client);
        bench_one(
            &mut group,
            &format!("full_stack_{tokens}"),
            full_stack("b", client, tracker()),
        );
        bench_one(
            &mut group,
            &format!("backend_build_{tokens}"),
            backend_build("b", client, tracker(), Pace::FarLimits),
        );
        bench_one(
            &mut group,
            &format!("timeout_{tokens}"),
            timeout_layer().layer(client),
        );
        bench_one(
            &mut group,
            &format!("metrics_tracker_{tokens}"),
            MetricsLayer::new("b", tracker()).layer(client),
        );
    }
    group.finish();
}

/// Why `service` refused a request, if it did.
fn rejection_reason<S, B, E>(service: &mut S) -> Option<RejectReason>
where
    S: Service<BenchRequest, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    let error = drive(service, BenchRequest::new()).err()?;
    error.downcast_ref::<Rejected>().map(|r| r.reason)
}

fn rejection(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let client = BareService::new(SHORT);
    let mut group = c.benchmark_group("rejection");

    // A breaker opened the ordinary way: one counted failure, open an hour.
    let open = Breaker::builder("b")
        .consecutive_failures(1)
        .open_wait(OpenWait::Fixed(Duration::from_secs(3600)))
        .build()
        .expect("breaker config");
    let permit = open.try_acquire().expect("closed breaker admits");
    permit.failure(&ProviderError::new(ErrorClass::Server, "boom"));
    let mut service = CircuitBreakerLayer::new(open).layer(client);
    assert_eq!(
        rejection_reason(&mut service),
        Some(RejectReason::CircuitOpen)
    );
    group.bench_function("breaker_open", |b| {
        b.iter(|| {
            black_box(drive(&mut service, black_box(BenchRequest::new())).expect_err("rejected"))
        })
    });

    let backend = BackendId::new("b");
    let tracker = QuotaTracker::new();
    let info = QuotaInfo {
        retry_after: Some(Duration::from_secs(3600)),
        ..QuotaInfo::default()
    };
    tracker.observe_rate_limited(&backend, MODEL, &info, tokio::time::Instant::now());
    let mut service = QuotaLayer::new(backend, tracker).layer(client);
    assert_eq!(
        rejection_reason(&mut service),
        Some(RejectReason::QuotaExhausted)
    );
    group.bench_function("quota_exhausted", |b| {
        b.iter(|| {
            black_box(drive(&mut service, black_box(BenchRequest::new())).expect_err("rejected"))
        })
    });
    group.finish();
}

/// `iters` requests on each of `threads` threads at once: the wall time
/// from the first thread's start to the last thread's end.
fn run_threads<S, B, E>(service: &S, threads: usize, iters: u64) -> Duration
where
    S: Service<BenchRequest, Response = Response<B>> + Clone + Send,
    S::Error: Into<BoxError>,
    B: futures_core::Stream<Item = Result<BenchChunk, E>>,
    E: Into<BoxError>,
{
    let start_line = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut service = service.clone();
                let start_line = &start_line;
                scope.spawn(move || {
                    let rt = runtime();
                    let _enter = rt.enter();
                    start_line.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(
                            drive(&mut service, black_box(BenchRequest::new())).expect("served"),
                        );
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<(Instant, Instant)> = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect();
        let first = spans.iter().map(|s| s.0).min();
        let last = spans.iter().map(|s| s.1).max();
        first.zip(last).map_or(Duration::ZERO, |(a, b)| b - a)
    })
}

fn contention(c: &mut Criterion) {
    let client = BareService::new(SHORT);
    let stack = full_stack("b", client, tracker());
    let mut group = c.benchmark_group("contention");
    for threads in [1, 2] {
        // Time per round: one request on each thread.
        group.bench_with_input(
            BenchmarkId::new("bare", format!("{threads}_threads")),
            &threads,
            |b, &t| b.iter_custom(|iters| run_threads(&client, t, iters)),
        );
        group.bench_with_input(
            BenchmarkId::new("full_stack", format!("{threads}_threads")),
            &threads,
            |b, &t| b.iter_custom(|iters| run_threads(&stack, t, iters)),
        );
    }
    group.finish();
}

criterion_group!(benches, per_request, per_chunk, rejection, contention);
criterion_main!(benches);
