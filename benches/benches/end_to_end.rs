//! End to end over loopback HTTP: the OpenAI Chat client against the mock
//! provider, `STREAMS` concurrent streams of `TOKENS` tokens per round, with
//! and without the full per-backend stack.
//!
//! The mock server runs on its own runtime (threads `sg-mock`), the client
//! on another (threads `sg-client`), so the client's CPU time can be read
//! apart from the server's. Group `end_to_end_wall` reports wall time per
//! round; group `end_to_end_cpu` reports the client threads' CPU time per
//! round (criterion shows it as a time; it is CPU time, read from `/proc`,
//! see [`streamgate_benches::cpu`]).
//!
//! Group `end_to_end_paired` runs each layer alone and the full stack in
//! alternation with the bare client, one bare round and one stacked round
//! per pair (the order swapping every pair), and prints each one's client
//! CPU overhead as the median of the pairs' ratios with its 95 % interval
//! ([`streamgate_benches::paired`]). The two groups above run minutes apart,
//! so a drift of the machine's speed between them shows as overhead; within
//! a pair it touches both rounds alike. Criterion reports that group's time
//! as the CPU time of one pair. The lines are also written to the file
//! named by `STREAMGATE_PAIRED_OUT`, if set (as `bench-report` does).
// Setup that cannot work is a broken benchmark: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion, Throughput,
};
use http::Response;
use streamgate_benches::{
    cpu,
    paired::{self, PairedOverhead},
    request,
};
use streamgate_breaker::CircuitBreakerLayer;
use streamgate_core::{BackendId, BoxError, MetricsSink};
use streamgate_metrics::MetricsLayer;
use streamgate_mock::{MockConfig, MockServer, Plan, DEFAULT_MODEL};
use streamgate_providers::{openai::OpenAiChat, ChatChunk, ChatRequest};
use streamgate_quota::{QuotaLayer, QuotaTracker};
use tokio::runtime::Runtime;
use tower::{Layer, Service};

mod common;
use common::{breaker, full_stack, pacing_layer, timeout_layer, tpm_layer, tracker};

/// Concurrent streams per round.
const STREAMS: usize = 8;
/// Tokens per stream.
const TOKENS: u64 = 200;
const CLIENT_THREADS: &str = "sg-client";

struct Setup {
    client_rt: Runtime,
    // Kept alive: dropping them stops the server.
    _server: MockServer,
    _server_rt: Runtime,
    bare: OpenAiChat,
}

fn setup() -> Setup {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sg-mock")
        .enable_all()
        .build()
        .expect("server runtime");
    // Limits far above what the run uses, so that the mock sends rate-limit
    // headers on every response and the quota layer has something to learn.
    let config = MockConfig::new()
        .with_requests_per_minute(100_000_000)
        .with_tokens_per_minute(100_000_000_000)
        .with_plan(Plan::new().with_output_tokens(TOKENS));
    let server = server_rt
        .block_on(MockServer::start(config))
        .expect("mock server");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .expect("client runtime");
    let bare = OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-bench")
        .build()
        .expect("openai client")
        .with_include_usage(true);
    Setup {
        client_rt,
        _server: server,
        _server_rt: server_rt,
        bare,
    }
}

/// What a round drives: a chat service, cloned per stream, whose body
/// streams chunks.
trait ChatService:
    Service<ChatRequest, Response = Response<Self::Body>, Error: Into<BoxError>, Future: Send>
    + Clone
    + Send
    + 'static
{
    type Body: futures_core::Stream<Item = Result<ChatChunk, Self::BodyError>> + Send;
    type BodyError: Into<BoxError>;
}

impl<S, B, E> ChatService for S
where
    S: Service<ChatRequest, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: futures_core::Stream<Item = Result<ChatChunk, E>> + Send,
    E: Into<BoxError>,
{
    type Body = B;
    type BodyError = E;
}

/// One round: `STREAMS` streams at once, each drained to the end.
async fn round<S: ChatService>(service: &S) -> u64 {
    let tasks: Vec<_> = (0..STREAMS)
        .map(|_| {
            let mut service = service.clone();
            tokio::spawn(async move {
                let prompt = ChatRequest::new(DEFAULT_MODEL).with_user("Say hi");
                request(&mut service, prompt).await.expect("stream")
            })
        })
        .collect();
    let mut chunks = 0;
    for task in tasks {
        chunks += task.await.expect("task");
    }
    chunks
}

/// CPU time of the client's runtime threads so far.
fn client_cpu() -> Duration {
    cpu::threads(CLIENT_THREADS).unwrap_or(Duration::ZERO)
}

/// The client CPU time of `iters` rounds of `service`.
fn rounds_cpu<S: ChatService>(rt: &Runtime, service: &S, iters: u64) -> Duration {
    let before = client_cpu();
    rounds(rt, service, iters);
    client_cpu().saturating_sub(before)
}

fn rounds<S: ChatService>(rt: &Runtime, service: &S, iters: u64) {
    rt.block_on(async {
        for _ in 0..iters {
            std::hint::black_box(round(service).await);
        }
    });
}

fn end_to_end(c: &mut Criterion) {
    let setup = setup();
    let sink: Arc<dyn MetricsSink> = tracker();
    let stacked = full_stack("openai", setup.bare.clone(), sink);
    let rt = &setup.client_rt;

    // Check both serve whole streams before measuring.
    let chunks = rt.block_on(round(&setup.bare));
    assert!(chunks >= STREAMS as u64 * TOKENS, "bare: {chunks} chunks");
    let chunks = rt.block_on(round(&stacked));
    assert!(chunks >= STREAMS as u64 * TOKENS, "stack: {chunks} chunks");

    let mut wall = c.benchmark_group("end_to_end_wall");
    wall.sample_size(10)
        .throughput(Throughput::Elements(STREAMS as u64 * TOKENS));
    wall.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rounds(rt, &setup.bare, iters);
            start.elapsed()
        })
    });
    wall.bench_function("full_stack", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rounds(rt, &stacked, iters);
            start.elapsed()
        })
    });
    wall.finish();

    let mut cpu_group = c.benchmark_group("end_to_end_cpu");
    cpu_group
        .sample_size(10)
        .throughput(Throughput::Elements(STREAMS as u64 * TOKENS));
    cpu_group.bench_function("bare", |b| {
        b.iter_custom(|iters| rounds_cpu(rt, &setup.bare, iters))
    });
    cpu_group.bench_function("full_stack", |b| {
        b.iter_custom(|iters| rounds_cpu(rt, &stacked, iters))
    });
    cpu_group.finish();

    let bare = &setup.bare;
    let mut group = c.benchmark_group("end_to_end_paired");
    group.sample_size(10);
    let layer_sink: Arc<dyn MetricsSink> = tracker();
    let results = [
        // A control: the bare client against itself should come out near 0.
        paired_bench(&mut group, "bare", rt, bare, bare),
        paired_bench(
            &mut group,
            "timeout",
            rt,
            bare,
            &timeout_layer().layer(bare.clone()),
        ),
        paired_bench(
            &mut group,
            "breaker_closed",
            rt,
            bare,
            &CircuitBreakerLayer::new(breaker("openai")).layer(bare.clone()),
        ),
        paired_bench(
            &mut group,
            "quota",
            rt,
            bare,
            &QuotaLayer::new(BackendId::new("openai"), QuotaTracker::new()).layer(bare.clone()),
        ),
        paired_bench(
            &mut group,
            "pacing",
            rt,
            bare,
            &pacing_layer("openai").layer(bare.clone()),
        ),
        paired_bench(
            &mut group,
            "tpm_budget",
            rt,
            bare,
            &tpm_layer("openai").layer(bare.clone()),
        ),
        paired_bench(
            &mut group,
            "metrics_tracker",
            rt,
            bare,
            &MetricsLayer::new("openai", layer_sink).layer(bare.clone()),
        ),
        paired_bench(&mut group, "full_stack", rt, bare, &stacked),
    ];
    group.finish();
    report_pairs(&results);
}

/// Benchmark `end_to_end_paired/<id>`: pairs of bare and `stacked` rounds,
/// the order swapping every pair. Returns every pair criterion ran, warm-up
/// included (each pair compares two rounds made under the same conditions,
/// warm or not), as (bare, stacked) client CPU seconds.
fn paired_bench<'a, S: ChatService>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &'a str,
    rt: &Runtime,
    bare: &OpenAiChat,
    stacked: &S,
) -> (&'a str, Vec<(f64, f64)>) {
    let mut pairs = Vec::new();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let (bare, stack) = if i % 2 == 0 {
                    let bare = rounds_cpu(rt, bare, 1);
                    (bare, rounds_cpu(rt, stacked, 1))
                } else {
                    let stack = rounds_cpu(rt, stacked, 1);
                    (rounds_cpu(rt, bare, 1), stack)
                };
                spent += bare + stack;
                pairs.push((bare.as_secs_f64(), stack.as_secs_f64()));
            }
            spent
        })
    });
    (id, pairs)
}

/// Prints each paired overhead (and writes the lines where
/// [`paired::OUT_VAR`] says); nothing for a benchmark that did not run
/// (filtered out, or listed only).
fn report_pairs(results: &[(&str, Vec<(f64, f64)>)]) {
    let mut lines = String::new();
    for (id, pairs) in results {
        let Some(overhead) = PairedOverhead::from_pairs(pairs) else {
            if !pairs.is_empty() {
                eprintln!(
                    "end_to_end_paired/{id}: {} pairs are too few to summarise",
                    pairs.len()
                );
            }
            continue;
        };
        let p = overhead.percent;
        println!(
            "end_to_end_paired/{id}: {:+.1} % client CPU over bare (95 % interval {:+.1} % to {:+.1} %, {} pairs)",
            p.median, p.low, p.high, overhead.pairs
        );
        lines.push_str(&overhead.line(id));
        lines.push('\n');
    }
    if let Some(path) = std::env::var_os(paired::OUT_VAR).filter(|_| !lines.is_empty()) {
        std::fs::write(&path, lines)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.to_string_lossy()));
    }
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
