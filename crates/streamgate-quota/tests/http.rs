//! The quota and pacing layers over real HTTP, against the mock provider
//! enforcing a tokens-per-minute limit, with the OpenAI Chat client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use streamgate_core::{
    guard::GuardLayer, BackendId, BoxError, Event, MetricsSink, ProviderError, Rejected,
};
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_quota::{PacingLayer, QuotaLayer, QuotaTracker};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MODEL: &str = "gpt-test";
const TPM: u64 = 1000;

/// Every request costs exactly 100 tokens at the mock (50 in, 50 out), and
/// its estimate is exactly 100: 184 bytes of text (46 tokens), 4 of framing
/// and 50 of `max_tokens`.
fn request() -> ChatRequest {
    ChatRequest::new(MODEL)
        .with_user("x".repeat(184))
        .with_max_tokens(50)
}

fn plan() -> Plan {
    Plan::new().with_input_tokens(50).with_output_tokens(50)
}

fn client(server: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-test")
        .build()
        .unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    completed: u64,
    http_429: u64,
    rejected: u64,
}

/// Sends `attempts` requests one after another, reading each stream to its
/// end, and counts what became of them. It never waits: the point is what a
/// gate does once the provider's headers say the window is full, not how
/// the window refills.
async fn workload<S, B, E>(mut service: S, attempts: u64) -> Counts
where
    S: Service<ChatRequest, Response = http::Response<B>, Error = BoxError>,
    B: futures::Stream<Item = Result<streamgate_providers::ChatChunk, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut counts = Counts::default();
    for _ in 0..attempts {
        let result = ServiceExt::<ChatRequest>::ready(&mut service)
            .await
            .unwrap()
            .call(request())
            .await;
        match result {
            Ok(response) => {
                let mut body = response.into_body();
                while let Some(item) = body.next().await {
                    item.unwrap();
                }
                counts.completed += 1;
            }
            Err(error) => {
                if error.downcast_ref::<Rejected>().is_some() {
                    counts.rejected += 1;
                } else if let Some(p) = error.downcast_ref::<ProviderError>() {
                    assert_eq!(p.status().map(|s| s.as_u16()), Some(429), "{p}");
                    counts.http_429 += 1;
                } else {
                    panic!("unexpected error: {error}");
                }
            }
        }
    }
    counts
}

/// On paused time, tokio jumps the clock to the next timer whenever every
/// task waits, including while bytes are in flight on a loopback socket; with
/// only long timers pending (connection pools, rate-limit waits) one such
/// jump can skip a whole rate-limit window. A 5 ms ticker bounds each jump,
/// so virtual time still runs far faster than real time but requests do not
/// appear minutes apart.
fn bound_clock_jumps() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

async fn limited_server() -> MockServer {
    MockServer::start(
        MockConfig::new()
            .with_tokens_per_minute(TPM)
            .with_plan(plan()),
    )
    .await
    .unwrap()
}

// Real time: the workload never needs the mock's 60 s window to roll, so
// it finishes in well under a second and does not depend on how fast the
// clock runs against socket I/O.
#[tokio::test]
async fn quota_layer_avoids_429s_that_a_bare_client_runs_into() {
    // 1,000 TPM and 100 tokens a request: ten fit, the next five do not.
    const ATTEMPTS: u64 = 15;
    let server = limited_server().await;
    let bare = workload(client(&server).map_err(Into::<BoxError>::into), ATTEMPTS).await;
    server.shutdown().await;

    // With the layer, each response's headers teach the tracker how much is
    // left; the predictive check holds back what no longer fits.
    let server = limited_server().await;
    let tracker = QuotaTracker::builder().predictive(true).build().unwrap();
    let gated = QuotaLayer::new(BackendId::new("mock"), tracker.clone()).layer(client(&server));
    let with_quota = workload(gated, ATTEMPTS).await;
    let sent_with_quota = server.requests().len();
    server.shutdown().await;

    println!(
        "{ATTEMPTS} streams at {TPM} TPM: without the quota layer {} HTTP 429s; with it {} HTTP \
         429s and {} local rejections",
        bare.http_429, with_quota.http_429, with_quota.rejected
    );
    assert_eq!(bare.completed, 10, "{bare:?}");
    assert_eq!(bare.http_429, 5, "{bare:?}");
    assert_eq!(with_quota.completed, 10, "{with_quota:?}");
    assert_eq!(with_quota.http_429, 0, "{with_quota:?}");
    assert_eq!(with_quota.rejected, 5, "{with_quota:?}");
    // The rejected ones never reached the provider.
    assert_eq!(sent_with_quota, 10);
}

#[derive(Default)]
struct Throttles(AtomicU64);

impl MetricsSink for Throttles {
    fn record(&self, event: &Event<'_>) {
        if let Event::Throttled { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const PACED_TPM: u32 = 600;

async fn unlimited_server() -> MockServer {
    MockServer::start(MockConfig::new().with_plan(plan()))
        .await
        .unwrap()
}

fn paced_600_tpm(throttles: &Arc<Throttles>) -> PacingLayer {
    PacingLayer::builder(BackendId::new("mock"))
        .tokens_per_minute(PACED_TPM)
        .token_burst(100)
        .sink(throttles.clone())
        .build()
        .unwrap()
}

/// Three workers send through `service` as fast as pacing lets them for
/// three minutes; checks the mock's observed tokens per minute.
async fn paced_workload<S, B, C, E>(
    how: &str,
    server: &MockServer,
    throttles: &Throttles,
    service: S,
) where
    S: Service<ChatRequest, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: futures::Stream<Item = Result<C, E>> + Unpin,
    E: std::fmt::Debug,
{
    let ticker = bound_clock_jumps();
    let start = Instant::now();
    let peak = Arc::new(AtomicU64::new(0));
    let worker = |service: S| {
        let peak = peak.clone();
        async move {
            while start.elapsed() < Duration::from_secs(180) {
                let response = service.clone().oneshot(request()).await.unwrap();
                let mut body = response.into_body();
                while let Some(item) = body.next().await {
                    item.unwrap();
                }
                peak.fetch_max(server.tokens_per_minute(), Ordering::Relaxed);
            }
        }
    };
    futures::future::join3(
        worker(service.clone()),
        worker(service.clone()),
        worker(service.clone()),
    )
    .await;
    let peak = peak.load(Ordering::Relaxed);
    let served = server.requests().len() as u64 * 100;
    println!(
        "{how}, paced at {PACED_TPM} TPM for 3 min: peak {peak} tokens in any observed minute, \
         {served} tokens in total, {} waits",
        throttles.0.load(Ordering::Relaxed)
    );
    assert!(peak <= u64::from(PACED_TPM), "peak {peak}");
    // Not starved either: the sustained rate is limit − burst per minute.
    assert!(served >= 3 * 500, "served {served}");
    assert!(throttles.0.load(Ordering::Relaxed) > 0);
    ticker.abort();
}

#[tokio::test(start_paused = true)]
async fn pacing_keeps_the_observed_tokens_per_minute_under_the_limit() {
    let server = unlimited_server().await;
    let throttles = Arc::new(Throttles::default());
    let service = paced_600_tpm(&throttles).layer(client(&server));
    paced_workload("as a layer", &server, &throttles, service).await;
    server.shutdown().await;
}

/// The same through pacing as a guard, fused with the quota guard behind it
/// in one guard layer.
#[tokio::test(start_paused = true)]
async fn pacing_as_a_guard_keeps_the_observed_tokens_per_minute_under_the_limit() {
    let server = unlimited_server().await;
    let throttles = Arc::new(Throttles::default());
    let quota = QuotaLayer::new(BackendId::new("mock"), QuotaTracker::new()).into_guard();
    let guard = paced_600_tpm(&throttles).guard(quota);
    let service = GuardLayer::new("mock", guard).layer(client(&server));
    paced_workload("as a guard", &server, &throttles, service).await;
    server.shutdown().await;
}
