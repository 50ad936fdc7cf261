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
