//! A chaos soak over loopback: three mock backends whose plans mix every
//! fault the mock can inject, 32 concurrent callers through one `Backends`
//! router with random cancellation, a few seconds of faults, then none.
//!
//! It checks what must hold under any interleaving: exact accounting per
//! backend, no stream that ends cleanly with a short text, nothing left in
//! flight (no request, no half-open probe, no quota or TPM reservation),
//! every breaker closing again once the faults stop, the runtime's task
//! count back where it started after every round of callers (exactly: the
//! clients keep no idle connection), and the process's resident memory flat
//! across the second half of the rounds (Linux only; a slack far below what
//! a few KiB kept per request would add).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use streamgate::breaker::OpenWait;
use streamgate::core::BackendId;
use streamgate::core::BreakerState;
use streamgate::mock::{expected_text, KeepAlive, MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{
    anthropic::Anthropic, gemini::Gemini, openai::OpenAiChat, ChatChunk, ChatRequest,
};
use tokio::time::Instant;
use tower::ServiceExt;

/// Output tokens of every plan: a clean end must carry exactly this text.
const TOKENS: u64 = 8;
const CALLERS: usize = 32;
/// The faults last this many rounds of callers; after each round, once at
/// rest, the task count must be back where it started, and memory must not
/// grow across the second half.
const ROUNDS: u32 = 6;
/// How long the callers of one round go on.
const ROUND: Duration = Duration::from_secs(3);
/// The longest the tasks of ended calls may take to wind down.
const SETTLE: Duration = Duration::from_secs(10);
/// The longest the breakers may take to close once the faults stop.
const RECOVERY: Duration = Duration::from_secs(20);

/// SplitMix64: deterministic per seed, no dependency.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn healthy() -> Plan {
    Plan::new().with_output_tokens(TOKENS)
}

/// Every fault the mock can inject, and healthy variants, by `roll`.
fn chaos_plan(roll: u64) -> Plan {
    let ms = Duration::from_millis;
    // A quarter of the requests meet a fault: enough to keep the breakers
    // opening, few enough that most calls are served.
    match roll % 56 {
        0 => Plan::new().fail_with_status(500),
        1 => Plan::new().fail_with_status(503),
        2 => Plan::new().fail_with_status(529),
        3 => Plan::new()
            .fail_with_status(429)
            .with_retry_after(ms(1_000)),
        4 => healthy().error_after(3),
        5 => healthy().stall_after(2),
        6 => healthy().disconnect_after(4),
        7 => healthy().truncate_after(5),
        8 => healthy().without_terminal_marker(),
        9 => healthy().with_header_delay(ms(600)),
        10 => healthy().with_first_content_delay(ms(600)),
        11 => healthy()
            .with_keep_alive(ms(40), KeepAlive::Comment)
            .with_first_content_delay(ms(120)),
        12 => healthy()
            .with_keep_alive(ms(40), KeepAlive::RoleChunk)
            .with_first_content_delay(ms(120)),
        13 => healthy().with_chunk_delay(ms(5)),
        _ => healthy(),
    }
}

async fn mock(seed: u64, faults: &Arc<AtomicBool>) -> MockServer {
    let faults = Arc::clone(faults);
    // A short request log: the soak measures the library, not the mock.
    MockServer::start(
        MockConfig::new()
            .with_request_log_capacity(16)
            .with_script(move |request| {
                if faults.load(Ordering::SeqCst) {
                    chaos_plan(mix(seed ^ request.index))
                } else {
                    healthy()
                }
            }),
    )
    .await
    .unwrap()
}

/// A client that keeps no idle connection, so that once every call has
/// ended no connection task is left: the task count at rest is exact.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn clients(
    servers: &[MockServer],
) -> Vec<(&'static str, BoxStreamingService<ChatRequest, ChatChunk>)> {
    vec![
        (
            "openai",
            boxed(
                OpenAiChat::builder()
                    .base_url(format!("{}/v1", servers[0].url()))
                    .api_key("k")
                    .http_client(unpooled())
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "anthropic",
            boxed(
                Anthropic::builder()
                    .base_url(format!("{}/v1", servers[1].url()))
                    .api_key("k")
                    .http_client(unpooled())
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "gemini",
            boxed(
                Gemini::builder()
                    .base_url(format!("{}/v1beta", servers[2].url()))
                    .api_key("k")
                    .http_client(unpooled())
                    .build()
                    .unwrap(),
            ),
        ),
    ]
}

/// The state each backend's stack keeps, shared by its router stack and
/// its direct one, read at the end for leaks.
struct Gates {
    breaker: Breaker,
    quota: QuotaTracker,
    /// Innermost, around the client: it reserves every request's estimate
    /// (the budget never refuses) and must give each reservation back,
    /// however the request ends.
    tpm: TpmLayer,
}

fn stack(
    id: &'static str,
    client: BoxStreamingService<ChatRequest, ChatChunk>,
    gates: &Gates,
) -> Backend<BoxStreamingService<ChatRequest, ChatChunk>, ChatRequest> {
    Backend::new(id, boxed(tower::Layer::layer(&gates.tpm, client)))
        .first_content_timeout(Duration::from_millis(400))
        .idle_timeout(Duration::from_millis(300))
        .total_timeout(Duration::from_secs(5))
        .circuit_breaker(gates.breaker.clone())
        .quota(gates.quota.clone())
}

/// Tasks alive in the runtime (tokio's stable runtime metrics).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The process's resident memory in KiB, where the platform says (Linux).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Requests the mock servers answered so far.
fn served(servers: &[MockServer]) -> u64 {
    servers.iter().map(MockServer::served).sum()
}

/// What the callers saw.
#[derive(Default)]
struct Seen {
    clean: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
}

/// One caller: requests until `until`, sometimes dropping the call before
/// its first content or the stream part-way.
async fn caller(
    router: Failover<ChatRequest, ChatChunk>,
    seed: u64,
    until: Instant,
    seen: Arc<Seen>,
) {
    let mut state = seed;
    let mut roll = || {
        state = mix(state);
        state
    };
    while Instant::now() < until {
        let request = ChatRequest::new("mock-model").with_user("hello");
        let call = router.clone().oneshot(request);
        let response = if roll() % 10 == 0 {
            // Cancel the call itself after up to 300 ms.
            let after = Duration::from_millis(roll() % 300);
            match tokio::time::timeout(after, call).await {
                Ok(result) => result,
                Err(_) => {
                    seen.cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            call.await
        };
        let Ok(response) = response else {
            seen.failed.fetch_add(1, Ordering::Relaxed);
            // Every backend refused or failed: a short pause, not a spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let drop_after = (roll() % 8 == 0).then(|| roll() % TOKENS);
        let mut body = response.into_body();
        let mut text = String::new();
        let mut chunks = 0;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    text.push_str(&chunk.text);
                    chunks += 1;
                    if drop_after == Some(chunks) {
                        seen.cancelled.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                Some(Err(_)) => {
                    seen.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                None => {
                    assert_eq!(text, expected_text(TOKENS), "a clean end with a short text");
                    seen.clean.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_exact_accounting_and_every_breaker_recovers() {
    let faults = Arc::new(AtomicBool::new(true));
    let mut servers = Vec::new();
    for seed in [11, 22, 33] {
        servers.push(mock(seed, &faults).await);
    }
    let tracker = Arc::new(PerformanceTracker::new());
    let quota = QuotaTracker::builder()
        .sink(tracker.clone())
        .build()
        .unwrap();
    let gates: Vec<Gates> = ["openai", "anthropic", "gemini"]
        .into_iter()
        .map(|id| Gates {
            breaker: Breaker::builder(id)
                .failures_within(4, Duration::from_millis(500))
                .open_wait(OpenWait::Fixed(Duration::from_millis(250)))
                .sink(tracker.clone())
                .build()
                .unwrap(),
            quota: quota.clone(),
            tpm: TpmLayer::builder(id)
                .max_tokens_per_minute(u64::MAX / 4)
                .build()
                .unwrap(),
        })
        .collect();
    let breakers: Vec<Breaker> = gates.iter().map(|g| g.breaker.clone()).collect();
    let mut backends = Backends::new();
    for ((id, client), gates) in clients(&servers).into_iter().zip(&gates) {
        backends = backends.backend(stack(id, client, gates));
    }
    let router = backends
        .metrics(tracker.clone())
        .failover(|f| f.wait_when_unavailable(Duration::from_secs(1)))
        .build()
        .unwrap();

    let seen = Arc::new(Seen::default());
    let at_rest = alive_tasks();
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        let until = Instant::now() + ROUND;
        let tasks: Vec<_> = (0..CALLERS as u64)
            .map(|i| {
                let seed = mix(u64::from(round) << 32 | (i + 1));
                tokio::spawn(caller(router.clone(), seed, until, Arc::clone(&seen)))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Connections close a moment after their calls end: wait for the
        // tasks to wind down (bounded, so a leak fails instead of hanging).
        let mut waited = Duration::ZERO;
        while alive_tasks() > at_rest && waited < SETTLE {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
        assert_eq!(
            alive_tasks(),
            at_rest,
            "tasks left alive after round {round} ({} requests served)",
            served(&servers)
        );
        rss.push((resident_kib(), served(&servers)));
    }
    // Memory across the second half: from the end of the middle round to
    // the end of the last, at rest both times.
    let half = ROUNDS as usize / 2 - 1;
    if let ((Some(before), served_before), (Some(after), served_after)) =
        (rss[half], rss[ROUNDS as usize - 1])
    {
        let requests = served_after - served_before;
        // 4 MiB, some ten times what the allocator's own drift has been:
        // keeping ~10 KiB per request would exceed it.
        assert!(
            requests > 300,
            "too few requests ({requests}) to see a leak"
        );
        assert!(
            after <= before + 4 * 1024,
            "resident memory grew from {before} KiB to {after} KiB over {requests} requests"
        );
    }

    // Faults stop. Each breaker is driven by calls through its own backend
    // (the same breaker handle) until it closes.
    faults.store(false, Ordering::SeqCst);
    let direct: Vec<_> = clients(&servers)
        .into_iter()
        .zip(&gates)
        .map(|((id, client), gates)| stack(id, client, gates).build().unwrap())
        .collect();
    let deadline = Instant::now() + RECOVERY;
    while breakers.iter().any(|b| b.state() != BreakerState::Closed) {
        assert!(
            Instant::now() < deadline,
            "breakers did not recover: {:?}",
            breakers.iter().map(Breaker::state).collect::<Vec<_>>()
        );
        for (service, breaker) in direct.iter().zip(&breakers) {
            if breaker.state() != BreakerState::Closed {
                let request = ChatRequest::new("mock-model").with_user("hello");
                if let Ok(response) = service.clone().oneshot(request).await {
                    let _ = response.into_body().collect::<Vec<_>>().await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With every breaker closed and no faults, the router serves in full.
    for _ in 0..5 {
        let request = ChatRequest::new("mock-model").with_user("hello");
        let response = router.clone().oneshot(request).await.unwrap();
        let mut text = String::new();
        let mut body = response.into_body();
        while let Some(chunk) = body.next().await {
            text.push_str(&chunk.unwrap().text);
        }
        assert_eq!(text, expected_text(TOKENS));
    }

    let snapshot = tracker.snapshot();
    let (mut timeouts, mut truncations, mut failed, mut cancellations) = (0, 0, 0, 0);
    for id in ["openai", "anthropic", "gemini"] {
        let keys: Vec<_> = snapshot
            .keys
            .iter()
            .filter(|k| k.backend.as_str() == id)
            .collect();
        assert!(!keys.is_empty(), "{id} got no traffic");
        for key in keys {
            assert_eq!(key.in_flight, 0, "{id}: a request left in flight");
            assert_eq!(
                key.requests,
                key.successes
                    + key.failed
                    + key.timeouts.sum()
                    + key.cancellations
                    + key.truncations,
                "{id}: {key:?}"
            );
            timeouts += key.timeouts.sum();
            truncations += key.truncations;
            failed += key.failed;
            cancellations += key.cancellations;
        }
    }
    // The breakers really opened, and all ended closed.
    assert!(snapshot.breakers.iter().any(|b| b.transitions >= 3));
    for breaker in &snapshot.breakers {
        assert_eq!(breaker.state, BreakerState::Closed, "{breaker:?}");
    }
    // Nothing held: no probe, no quota admission, no TPM reservation.
    let now = Instant::now();
    for gates in &gates {
        let id = gates.breaker.backend().clone();
        assert_eq!(gates.breaker.snapshot().probes_in_flight, 0, "{id}");
        assert_eq!(
            gates.quota.in_flight(&BackendId::clone(&id), "mock-model"),
            (0, 0),
            "{id}"
        );
        let tpm = gates.tpm.snapshot("mock-model", now);
        assert_eq!(tpm.reserved, 0, "{id}: {tpm:?}");
        assert!(tpm.requests_per_minute > 0, "{id}: {tpm:?}");
    }
    // The faults were really exercised, and seen by the callers.
    assert!(timeouts > 0 && truncations > 0 && failed > 0 && cancellations > 0);
    assert!(seen.clean.load(Ordering::Relaxed) > 0);
    assert!(seen.failed.load(Ordering::Relaxed) > 0);
    assert!(seen.cancelled.load(Ordering::Relaxed) > 0);
    assert!(served(&servers) > CALLERS as u64);
    for server in servers {
        server.shutdown().await;
    }
}
