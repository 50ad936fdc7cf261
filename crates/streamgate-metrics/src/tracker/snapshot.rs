//! What [`PerformanceTracker::snapshot`](super::PerformanceTracker::snapshot)
//! returns: serialisable, and printable as an aligned text table.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;
use streamgate_core::{BackendId, BreakerState, QuotaState, Usage};

use super::size::InputSize;

/// Percentiles of one histogram, nearest-rank, within the histograms' 1%
/// resolution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// 10th percentile: the low tail of a throughput.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Timeouts by which deadline expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeoutCounts {
    /// No content within the first-content deadline.
    pub first_content: u64,
    /// Too long a gap between content chunks.
    pub idle: u64,
    /// The whole stream took too long.
    pub total: u64,
}

impl TimeoutCounts {
    /// All timeouts.
    pub fn sum(&self) -> u64 {
        self.first_content + self.idle + self.total
    }
}

/// Throughput and reliability of one input-size category of one key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CategorySnapshot {
    /// The category.
    pub category: InputSize,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed, timed out or were truncated.
    pub failures: u64,
    /// `failures / (successes + failures)`; cancellations are not judged.
    pub failure_rate: f64,
    /// End-to-end tokens per second of the successful requests.
    pub end_to_end_tokens_per_sec: Option<Percentiles>,
}

/// The latest quota state of one key.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QuotaSnapshot {
    /// The tracker's verdict.
    pub state: QuotaState,
    /// Seconds left until an exhausted quota resets.
    pub exhausted_for_secs: Option<f64>,
    /// Requests left, when known.
    pub remaining_requests: Option<u64>,
    /// Tokens left, when known.
    pub remaining_tokens: Option<u64>,
}

/// Everything known about one backend × model.
///
/// `requests == successes + failed + timeouts.sum() + cancellations +
/// truncations`, exactly. Requests refused by a gate are in `rejections`
/// only.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeySnapshot {
    /// The backend.
    pub backend: BackendId,
    /// The model (or `_OTHER` past the cardinality cap).
    pub model: String,
    /// Started and not finished yet.
    pub in_flight: u64,
    /// Finished requests.
    pub requests: u64,
    /// Finished cleanly.
    pub successes: u64,
    /// Failed, all classes.
    pub failed: u64,
    /// Failed, by error class.
    pub failures: BTreeMap<&'static str, u64>,
    /// Timed out, by deadline.
    pub timeouts: TimeoutCounts,
    /// Dropped by the caller.
    pub cancellations: u64,
    /// Ended without the provider's terminal marker.
    pub truncations: u64,
    /// Refused by a gate, by reason.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Times failover gave up on this backend for this model.
    pub failovers: u64,
    /// Times a stream of this backend failed after content and was
    /// continued on another backend.
    pub continuations: u64,
    /// Requests that waited to stay under a rate.
    pub throttled: u64,
    /// Total time waited, in seconds.
    pub throttle_wait_secs: f64,
    /// Token usage summed over requests (output falls back to the streamed
    /// estimate when the provider reported none).
    pub usage: Usage,
    /// Tokens (input + output) of the requests finished in the last 60 s.
    pub tokens_per_minute: u64,
    /// Requests finished in the last 60 s.
    pub requests_per_minute: u64,
    /// Time to first content (all requests that got content), milliseconds.
    pub time_to_first_content_ms: Option<Percentiles>,
    /// Duration of successful requests, milliseconds.
    pub duration_ms: Option<Percentiles>,
    /// Decode tokens per second of successful requests.
    pub decode_tokens_per_sec: Option<Percentiles>,
    /// End-to-end tokens per second of successful requests.
    pub end_to_end_tokens_per_sec: Option<Percentiles>,
    /// Per input-size category, for the categories seen.
    pub input_sizes: Vec<CategorySnapshot>,
    /// The latest quota update.
    pub quota: Option<QuotaSnapshot>,
}

/// The latest state of one circuit breaker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerSnapshot {
    /// The backend.
    pub backend: BackendId,
    /// The model, for breakers scoped per model.
    pub model: Option<String>,
    /// The state after the latest transition.
    pub state: BreakerState,
    /// Transitions seen.
    pub transitions: u64,
}

/// Token usage and waiting of the whole session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SessionSnapshot {
    /// Finished requests (rejections excluded).
    pub requests: u64,
    /// Input tokens, cached ones included.
    pub input_tokens: u64,
    /// Output tokens, reasoning ones included.
    pub output_tokens: u64,
    /// Part of the input served from the provider's cache.
    pub cached_input_tokens: u64,
    /// Part of the output spent on reasoning.
    pub reasoning_tokens: u64,
    /// `input_tokens + output_tokens`: cached and reasoning tokens are inside
    /// those two and are not added again.
    pub total_tokens: u64,
    /// Requests refused by a gate.
    pub rejections: u64,
    /// Requests that waited to stay under a rate.
    pub throttled: u64,
    /// Total time waited, in seconds.
    pub throttle_wait_secs: f64,
    /// Hedged requests: started, and which attempt produced content first.
    pub hedges: HedgeCounts,
    /// Streams that failed after content and were continued on another
    /// backend.
    pub continuations: u64,
}

/// How many requests the router hedged, and how the hedges went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HedgeCounts {
    /// Hedges started.
    pub started: u64,
    /// The hedge produced content first.
    pub won: u64,
    /// The first choice produced content first.
    pub lost: u64,
    /// The token estimates of the requests the hedges sent again: the
    /// prompt tokens the extra attempts cost.
    pub extra_tokens: u64,
}

/// A point-in-time copy of a [`PerformanceTracker`](super::PerformanceTracker).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackerSnapshot {
    /// The whole session.
    pub session: SessionSnapshot,
    /// Per backend × model, sorted.
    pub keys: Vec<KeySnapshot>,
    /// Per breaker, sorted.
    pub breakers: Vec<BreakerSnapshot>,
}

impl TrackerSnapshot {
    /// The entry for `backend` × `model`.
    pub fn key(&self, backend: &str, model: &str) -> Option<&KeySnapshot> {
        self.keys
            .iter()
            .find(|k| k.backend.as_str() == backend && k.model == model)
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_owned(),
    }
}

/// Writes `rows` as columns padded to their widest cell: the first
/// `text_columns` left-aligned, the rest right-aligned.
fn table(f: &mut fmt::Formatter<'_>, rows: &[Vec<String>], text_columns: usize) -> fmt::Result {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c < text_columns {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

impl fmt::Display for TrackerSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "backend", "model", "req", "ok", "fail", "t/o", "cancel", "trunc", "rej", "ttfc p50",
            "ttfc p95", "dur p50", "dec p50", "e2e p50", "e2e p10", "tpm", "rpm", "quota",
        ];
        let mut rows = vec![header.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()];
        for k in &self.keys {
            let p = |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| num(p.as_ref().map(f));
            rows.push(vec![
                k.backend.to_string(),
                k.model.clone(),
                k.requests.to_string(),
                k.successes.to_string(),
                k.failed.to_string(),
                k.timeouts.sum().to_string(),
                k.cancellations.to_string(),
                k.truncations.to_string(),
                k.rejections.values().sum::<u64>().to_string(),
                p(&k.time_to_first_content_ms, |p| p.p50),
                p(&k.time_to_first_content_ms, |p| p.p95),
                p(&k.duration_ms, |p| p.p50),
                p(&k.decode_tokens_per_sec, |p| p.p50),
                p(&k.end_to_end_tokens_per_sec, |p| p.p50),
                p(&k.end_to_end_tokens_per_sec, |p| p.p10),
                k.tokens_per_minute.to_string(),
                k.requests_per_minute.to_string(),
                k.quota.map_or("-", |q| q.state.as_str()).to_owned(),
            ]);
        }
        table(f, &rows, 2)?;
        let s = &self.session;
        writeln!(
            f,
            "session: {} requests, tokens in {} (cached {}) out {} (reasoning {}) total {}, \
             {} rejected, throttled {} times for {:.3} s",
            s.requests,
            s.input_tokens,
            s.cached_input_tokens,
            s.output_tokens,
            s.reasoning_tokens,
            s.total_tokens,
            s.rejections,
            s.throttled,
            s.throttle_wait_secs
        )?;
        let mut sizes = vec![[
            "backend", "model", "input", "n", "e2e p10", "e2e p50", "e2e p95", "fail%",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect::<Vec<_>>()];
        for k in &self.keys {
            for c in &k.input_sizes {
                let e = c.end_to_end_tokens_per_sec.as_ref();
                sizes.push(vec![
                    k.backend.to_string(),
                    k.model.clone(),
                    c.category.range().to_owned(),
                    e.map_or(0, |e| e.count).to_string(),
                    num(e.map(|e| e.p10)),
                    num(e.map(|e| e.p50)),
                    num(e.map(|e| e.p95)),
                    format!("{:.1}", c.failure_rate * 100.0),
                ]);
            }
        }
        if sizes.len() > 1 {
            table(f, &sizes, 3)?;
        }
        for b in &self.breakers {
            writeln!(
                f,
                "breaker {}{}{}: {} ({} transitions)",
                b.backend,
                if b.model.is_some() { "/" } else { "" },
                b.model.as_deref().unwrap_or(""),
                b.state,
                b.transitions
            )?;
        }
        Ok(())
    }
}
