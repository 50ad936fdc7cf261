//! Shared helpers: temporary database files and records.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use streamgate_core::{BackendId, ErrorClass, Outcome, RequestRecord, Usage};

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "streamgate-store-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("store.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A successful request: `output` tokens decoded at `decode_tps` after a
/// first content at `ttfc_ms`.
pub fn success<'a>(
    backend: &'a BackendId,
    model: &'static str,
    started_at: SystemTime,
    estimated: u64,
    output: u64,
    decode_tps: f64,
    ttfc_ms: u64,
) -> RequestRecord<'a> {
    let output_duration = Duration::from_secs_f64((output - 1) as f64 / decode_tps);
    let ttfc = Duration::from_millis(ttfc_ms);
    RequestRecord {
        backend,
        model,
        started_at,
        estimated_tokens: estimated,
        time_to_first_chunk: Some(ttfc / 2),
        time_to_first_content: Some(ttfc),
        duration: ttfc + output_duration,
        ended: tokio::time::Instant::now(),
        output_duration: Some(output_duration),
        usage: Some(Usage::new(estimated, output)),
        streamed_output_tokens: output,
        burst_tokens_per_sec: Some(decode_tps * 1.5),
        chunks: output,
        outcome: Outcome::Success,
    }
}

/// A request that failed with `class` before any content.
pub fn failure<'a>(
    backend: &'a BackendId,
    model: &'static str,
    started_at: SystemTime,
    estimated: u64,
    class: ErrorClass,
) -> RequestRecord<'a> {
    RequestRecord {
        backend,
        model,
        started_at,
        estimated_tokens: estimated,
        time_to_first_chunk: None,
        time_to_first_content: None,
        duration: Duration::from_millis(40),
        ended: tokio::time::Instant::now(),
        output_duration: None,
        usage: None,
        streamed_output_tokens: 0,
        burst_tokens_per_sec: None,
        chunks: 0,
        outcome: Outcome::Failed(class),
    }
}

pub fn hours_ago(hours: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(hours * 3_600)
}

/// A store and a tracker seeded with known records:
///
/// | backend × model | input | decode tok/s | TTFC |
/// |---|---|---|---|
/// | fast × gpt-4o-mini | small (2,000) | 200, 220, 240, 260 | 100 ms |
/// | fast × gpt-4o-mini | tiny (500) | 180, 200 | 100 ms |
/// | slow × gemini-2.5-flash | small (2,000) | 30, 40, 50, and one server failure | 400 ms |
///
/// The tracker saw slow's breaker open and fast's quota run out (0
/// requests, 5,000 tokens left).
pub async fn seeded(
    dir: &TempDir,
) -> (
    streamgate_store::Store,
    std::sync::Arc<streamgate_metrics::PerformanceTracker>,
) {
    use streamgate_core::{BreakerState, Event, MetricsSink, QuotaState};

    let store = streamgate_store::Store::builder(dir.db())
        .provider("fast", "openai")
        .provider("slow", "gemini")
        .build()
        .unwrap();
    let tracker = std::sync::Arc::new(streamgate_metrics::PerformanceTracker::new());
    let fast = BackendId::new("fast");
    let slow = BackendId::new("slow");
    let now = SystemTime::now();
    let mut records = Vec::new();
    for tps in [200.0, 220.0, 240.0, 260.0] {
        records.push(success(&fast, "gpt-4o-mini", now, 2_000, 201, tps, 100));
    }
    for tps in [180.0, 200.0] {
        records.push(success(&fast, "gpt-4o-mini", now, 500, 201, tps, 100));
    }
    for tps in [30.0, 40.0, 50.0] {
        records.push(success(
            &slow,
            "gemini-2.5-flash",
            now,
            2_000,
            201,
            tps,
            400,
        ));
    }
    records.push(failure(
        &slow,
        "gemini-2.5-flash",
        now,
        2_000,
        ErrorClass::Server,
    ));
    let events: Vec<Event<'_>> = records.iter().map(Event::Completed).collect();
    let transition = Event::BreakerTransition {
        backend: &slow,
        model: None,
        from: BreakerState::Closed,
        to: BreakerState::Open,
        wait_capped: false,
    };
    let quota = Event::QuotaUpdate {
        backend: &fast,
        model: "gpt-4o-mini",
        state: QuotaState::Exhausted,
        exhausted_for: Some(Duration::from_secs(30)),
        remaining_requests: Some(0),
        remaining_tokens: Some(5_000),
        wait_capped: false,
    };
    for event in events.iter().chain([&transition, &quota]) {
        store.record(event);
        tracker.record(event);
    }
    store.flush().await;
    (store, tracker)
}

/// A GET over a plain TCP connection; returns status and body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}
