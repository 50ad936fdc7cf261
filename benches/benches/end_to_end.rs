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
// Setup that cannot work is a broken benchmark: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Response;
use streamgate_benches::{cpu, request};
use streamgate_core::{BoxError, MetricsSink};
use streamgate_mock::{MockConfig, MockServer, Plan, DEFAULT_MODEL};
use streamgate_providers::{openai::OpenAiChat, ChatChunk, ChatRequest};
use tokio::runtime::Runtime;
use tower::Service;

mod common;
use common::{full_stack, tracker};

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

/// One round: `STREAMS` streams at once, each drained to the end.
async fn round<S, B, E>(service: &S) -> u64
where
    S: Service<ChatRequest, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: futures_core::Stream<Item = Result<ChatChunk, E>> + Send,
    E: Into<BoxError>,
{
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

fn rounds<S, B, E>(rt: &Runtime, service: &S, iters: u64)
where
    S: Service<ChatRequest, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: futures_core::Stream<Item = Result<ChatChunk, E>> + Send,
    E: Into<BoxError>,
{
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

    let client_cpu = || cpu::threads(CLIENT_THREADS).unwrap_or(Duration::ZERO);
    let mut cpu_group = c.benchmark_group("end_to_end_cpu");
    cpu_group
        .sample_size(10)
        .throughput(Throughput::Elements(STREAMS as u64 * TOKENS));
    cpu_group.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let before = client_cpu();
            rounds(rt, &setup.bare, iters);
            client_cpu().saturating_sub(before)
        })
    });
    cpu_group.bench_function("full_stack", |b| {
        b.iter_custom(|iters| {
            let before = client_cpu();
            rounds(rt, &stacked, iters);
            client_cpu().saturating_sub(before)
        })
    });
    cpu_group.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
