//! A chaos soak over loopback: three mock backends whose plans mix every
//! fault the mock can inject, 32 concurrent callers through one `Backends`
//! router with random cancellation, a few seconds of faults, then none.
//!
//! It checks what must hold under any interleaving: exact accounting per
//! backend, no stream that ends cleanly with a short text, nothing left in
//! flight, and every breaker closing again once the faults stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use streamgate::breaker::OpenWait;
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
/// How long the faults last.
const CHAOS: Duration = Duration::from_secs(4);
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
    // Half the requests meet a fault.
    match roll % 32 {
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
    MockServer::start(MockConfig::new().with_script(move |request| {
        if faults.load(Ordering::SeqCst) {
            chaos_plan(mix(seed ^ request.index))
        } else {
            healthy()
        }
    }))
    .await
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
                    .build()
                    .unwrap(),
            ),
        ),
    ]
}

fn stack(
    id: &'static str,
    client: BoxStreamingService<ChatRequest, ChatChunk>,
    breaker: &Breaker,
) -> Backend<BoxStreamingService<ChatRequest, ChatChunk>, ChatRequest> {
    Backend::new(id, client)
        .first_content_timeout(Duration::from_millis(400))
        .idle_timeout(Duration::from_millis(300))
        .total_timeout(Duration::from_secs(5))
        .circuit_breaker(breaker.clone())
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
    let breakers: Vec<Breaker> = ["openai", "anthropic", "gemini"]
        .into_iter()
        .map(|id| {
            Breaker::builder(id)
                .failures_within(4, Duration::from_millis(500))
                .open_wait(OpenWait::Fixed(Duration::from_millis(250)))
                .sink(tracker.clone())
                .build()
                .unwrap()
        })
        .collect();
    let mut backends = Backends::new();
    for ((id, client), breaker) in clients(&servers).into_iter().zip(&breakers) {
        backends = backends.backend(stack(id, client, breaker));
    }
    let router = backends
        .metrics(tracker.clone())
        .failover(|f| f.wait_when_unavailable(Duration::from_secs(1)))
        .build()
        .unwrap();

    let seen = Arc::new(Seen::default());
    let until = Instant::now() + CHAOS;
    let tasks: Vec<_> = (0..CALLERS as u64)
        .map(|i| tokio::spawn(caller(router.clone(), mix(i + 1), until, Arc::clone(&seen))))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // Faults stop. Each breaker is driven by calls through its own backend
    // (the same breaker handle) until it closes.
    faults.store(false, Ordering::SeqCst);
    let direct: Vec<_> = clients(&servers)
        .into_iter()
        .zip(&breakers)
        .map(|((id, client), breaker)| stack(id, client, breaker).build().unwrap())
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
    // The faults were really exercised, and seen by the callers.
    assert!(timeouts > 0 && truncations > 0 && failed > 0 && cancellations > 0);
    assert!(seen.clean.load(Ordering::Relaxed) > 0);
    assert!(seen.failed.load(Ordering::Relaxed) > 0);
    assert!(seen.cancelled.load(Ordering::Relaxed) > 0);
    let served: u64 = servers.iter().map(MockServer::served).sum();
    assert!(served > CALLERS as u64);
    for server in servers {
        server.shutdown().await;
    }
}
