//! Shared state on Redis, measured once: what a fleet costs at admission
//! beside the local-only stack, how many Redis round trips a request makes,
//! and four replicas sharing one budget against a provider that enforces it.
//!
//! `cargo bench -p streamgate-benches --bench fleet` (needs `redis-server`
//! on the path: started on a free loopback port and stopped at the end).
//!
//! - **Admission**: the full per-backend stack (`Backend` with a TPM budget,
//!   quota tracker and breaker) over an in-memory client that answers at
//!   once with rate-limit headers (so the quota key is tracked and its
//!   in-flight count shared), one request at a time; the time from `call`
//!   until the response is out of the stack, then the body is drained.
//!   Local only, then with `shared_state(&fleet)` on a loopback Redis.
//! - **Round trips**: the fleet's own count (`FleetStats::round_trips`) and
//!   the commands Redis executed (`INFO commandstats`), per request.
//! - **Four replicas**: four independent stacks, each with its own fleet
//!   connection, two callers each, against the mock provider enforcing
//!   1,000 TPM, each caller until it is refused three times in a row; then
//!   the same without shared state.
// Setup that cannot work is a broken measurement: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    future::{ready, Ready},
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use streamgate::Backend;
use streamgate_benches::{BareService, BenchChunk, BenchRequest, BenchStream};
use streamgate_core::BoxStreamingService;
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_redis::Fleet;
use tower::{Service, ServiceExt};

const WARM_UP: usize = 1_000;
const REQUESTS: usize = 10_000;
const BUDGET: u64 = 1_000;

/// The bare client, answering with OpenAI's rate-limit headers.
#[derive(Clone, Copy)]
struct Headed(BareService);

impl<Req> Service<Req> for Headed {
    type Response = Response<BenchStream>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Ok(mut response) = self.0.call(req).into_inner();
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-ratelimit-limit-requests", "1000000"),
            ("x-ratelimit-remaining-requests", "999999"),
            ("x-ratelimit-reset-requests", "60s"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        ready(Ok(response))
    }
}

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(Self { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Commands executed so far, from `INFO commandstats` (the `INFO`
    /// itself excluded).
    async fn commands(&self) -> u64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
            .filter_map(|line| {
                let calls = line.split("calls=").nth(1)?;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fleet(redis: &Redis, prefix: &str) -> Fleet {
    let fleet = Fleet::builder(redis.url())
        .prefix(prefix)
        // Loopback on a busy 2-core machine: a bound that keeps every
        // admission shared, so what is measured is the shared path.
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    fleet.connected().await;
    fleet
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Admission latencies of `REQUESTS` requests through `service`, sorted.
async fn admissions(service: &mut BoxStreamingService<BenchRequest, BenchChunk>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(REQUESTS);
    for i in 0..WARM_UP + REQUESTS {
        let started = Instant::now();
        let response = service
            .ready()
            .await
            .unwrap()
            .call(BenchRequest::new())
            .await
            .unwrap();
        let admitted = started.elapsed();
        let mut body = response.into_body();
        while body.next().await.is_some() {}
        if i >= WARM_UP {
            times.push(admitted);
        }
    }
    times.sort();
    times
}

fn row(name: &str, times: &[Duration]) {
    println!(
        "| {name} | {:.1} µs | {:.1} µs | {:.1} µs |",
        percentile(times, 0.5).as_secs_f64() * 1e6,
        percentile(times, 0.99).as_secs_f64() * 1e6,
        percentile(times, 0.999).as_secs_f64() * 1e6,
    );
}

async fn latency(redis: &Redis) {
    let mut local = Backend::new("openai", Headed(BareService::new(8)))
        .tpm_budget(u64::MAX / 4)
        .build()
        .unwrap();
    let local_times = admissions(&mut local).await;

    let fleet = fleet(redis, "latency").await;
    let mut shared = Backend::new("openai", Headed(BareService::new(8)))
        .tpm_budget(u64::MAX / 4)
        .shared_state(&fleet)
        .build()
        .unwrap();
    let (trips, commands) = (fleet.stats().round_trips, redis.commands().await);
    let shared_times = admissions(&mut shared).await;
    fleet.flush().await;
    let stats = fleet.stats();
    let trips = stats.round_trips - trips;
    let commands = redis.commands().await - commands;
    // The warm-up requests are in the counts.
    let requests = (WARM_UP + REQUESTS) as f64;

    println!("| stack | p50 | p99 | p99.9 |");
    println!("|---|---:|---:|---:|");
    row("full stack, local state only", &local_times);
    row(
        "full stack, `shared_state(&fleet)` on loopback Redis",
        &shared_times,
    );
    println!();
    println!(
        "round trips per request: {:.2} (commands executed by Redis: {:.2}); \
         admissions decided locally: {}; writes dropped: {}",
        trips as f64 / requests,
        commands as f64 / requests,
        stats.local_decisions,
        stats.dropped_writes,
    );
}

fn client(mock: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", mock.url()))
        .api_key("sk-bench-fleet")
        .build()
        .unwrap()
}

/// Four replicas, two callers each, until each caller is refused three
/// times in a row. Returns (tokens served, upstream 429s, requests sent).
async fn four_replicas(redis: &Redis, shared: bool) -> (u64, usize, usize) {
    let mock = MockServer::start(
        MockConfig::new()
            .with_tokens_per_minute(BUDGET)
            .with_plan(Plan::new().with_input_tokens(20).with_output_tokens(30)),
    )
    .await
    .unwrap();
    let mut workers = Vec::new();
    let mut fleets = Vec::new();
    for _ in 0..4 {
        let mut backend = Backend::new("openai", client(&mock))
            .first_content_timeout(Duration::from_secs(20))
            .tpm_budget(BUDGET);
        if shared {
            let fleet = fleet(redis, "replicas").await;
            backend = backend.shared_state(&fleet);
            fleets.push(fleet);
        }
        let service = backend.build().unwrap();
        for _ in 0..2 {
            let service = service.clone();
            let fleet = fleets.last().cloned();
            workers.push(tokio::spawn(async move {
                let mut refusals = 0;
                while refusals < 3 {
                    let request = ChatRequest::new("gpt-4o-mini")
                        .with_user("hi")
                        .with_max_tokens(50);
                    let outcome = match service.clone().oneshot(request).await {
                        Ok(response) => {
                            let mut body = response.into_body();
                            let mut failed = false;
                            while let Some(chunk) = body.next().await {
                                failed |= chunk.is_err();
                            }
                            !failed
                        }
                        Err(_) => false,
                    };
                    if outcome {
                        refusals = 0;
                    } else {
                        refusals += 1;
                        if let Some(fleet) = &fleet {
                            fleet.flush().await;
                        }
                    }
                }
            }));
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let log = mock.requests();
    let limited = log
        .iter()
        .filter(|r| r.status == Some(StatusCode::TOO_MANY_REQUESTS))
        .count();
    let used = log.iter().map(|r| r.input_tokens + r.tokens_sent).sum();
    (used, limited, log.len())
}

fn main() {
    let Some(redis) = Redis::start() else {
        eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "## Admission latency ({REQUESTS} requests, one at a time, after {WARM_UP} warm-up)"
        );
        println!();
        latency(&redis).await;
        println!();
        println!("## Four replicas, one {BUDGET} TPM budget, a provider enforcing {BUDGET} TPM");
        println!();
        println!("| state | tokens served | budget used | upstream 429s | upstream requests |");
        println!("|---|---:|---:|---:|---:|");
        for shared in [true, false] {
            let (used, limited, sent) = four_replicas(&redis, shared).await;
            println!(
                "| {} | {used} | {:.1} % | {limited} | {sent} |",
                if shared {
                    "shared on Redis"
                } else {
                    "local only"
                },
                used as f64 * 100.0 / BUDGET as f64,
            );
        }
    });
}
