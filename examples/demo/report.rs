//! The end-of-run report: per backend, the session, the recommendation per
//! input size and a one-line verdict.

use std::{collections::BTreeMap, fmt};

use streamgate::core::Usage;
use streamgate::metrics::{
    InputSize, KeySnapshot, Percentiles, PerformanceTracker, Recommendation, TrackerSnapshot,
};
use streamgate::quota::KeySnapshot as QuotaKey;

use crate::{workload::Callers, Args};

/// A backend in failover order, with what its mock stands for.
pub struct BackendRow {
    /// Its name.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// The personality of the mock it is pointed at.
    pub personality: &'static str,
}

/// Everything printed at the end.
pub struct Report<'a> {
    args: &'a Args,
    backends: &'a [BackendRow],
    snapshot: &'a TrackerSnapshot,
    quota: &'a [QuotaKey],
    callers: &'a Callers,
    recommendations: Vec<Recommendation>,
}

/// One backend's keys folded together (the demo uses one model, but a
/// backend may serve several).
#[derive(Default)]
struct Row {
    requests: u64,
    successes: u64,
    failures: BTreeMap<&'static str, u64>,
    rejections: BTreeMap<&'static str, u64>,
    failovers: u64,
    ttfc: Option<Percentiles>,
    decode: Option<Percentiles>,
}

fn row(keys: &[&KeySnapshot]) -> Row {
    let mut row = Row::default();
    for k in keys {
        row.requests += k.requests;
        row.successes += k.successes;
        for (class, n) in &k.failures {
            *row.failures.entry(class).or_default() += n;
        }
        for (kind, n) in [
            ("timeout", k.timeouts.sum()),
            ("truncated", k.truncations),
            ("cancelled", k.cancellations),
        ] {
            if n > 0 {
                *row.failures.entry(kind).or_default() += n;
            }
        }
        for (reason, n) in &k.rejections {
            *row.rejections.entry(reason).or_default() += n;
        }
        row.failovers += k.failovers;
        row.ttfc = row.ttfc.or(k.time_to_first_content_ms);
        row.decode = row.decode.or(k.decode_tokens_per_sec);
    }
    row
}

/// What the quota tracker knows of a backend: `exhausted for 52 s`,
/// `tracking: 12/150 requests left`, or `no headers`.
fn quota_state(keys: &[&QuotaKey]) -> String {
    let Some(q) = keys.first() else {
        return "no limits seen".into();
    };
    match (q.exhausted_for_ms, q.remaining_requests, q.limit_requests) {
        (Some(ms), ..) => format!(
            "{} ({}) for {:.0} s",
            q.state.as_str(),
            q.reason.map_or("429", |r| r.as_str()),
            ms as f64 / 1000.0
        ),
        (None, Some(left), Some(limit)) => {
            format!("{}: {left}/{limit} requests left", q.state.as_str())
        }
        _ => q.state.as_str().to_owned(),
    }
}

/// `total (a 3, b 2)`, or `0`.
fn breakdown(counts: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = counts.values().sum();
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

/// `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Writes `rows` as columns padded to the widest cell; the first
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
        let mut line = String::from(" ");
        for (c, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            line.push_str("  ");
            if c < text_columns {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

impl<'a> Report<'a> {
    /// Gathers the report.
    pub fn new(
        args: &'a Args,
        backends: &'a [BackendRow],
        snapshot: &'a TrackerSnapshot,
        quota: &'a [QuotaKey],
        tracker: &PerformanceTracker,
        callers: &'a Callers,
    ) -> Self {
        let recommendations = InputSize::ALL
            .into_iter()
            .filter_map(|size| tracker.recommend(size).ok())
            .collect();
        Self {
            args,
            backends,
            snapshot,
            quota,
            callers,
            recommendations,
        }
    }

    /// `1,200 requests, 0 failed to the caller, 214 failed over`.
    pub fn verdict(&self) -> String {
        let c = self.callers;
        format!(
            "{} requests, {} failed to the caller, {} failed over",
            thousands(c.requests),
            thousands(c.failed),
            thousands(c.failed_over)
        )
    }

    /// The report as JSON: the callers' view, the tracker's snapshot and the
    /// recommendations.
    pub fn json(&self) -> serde_json::Result<String> {
        let c = self.callers;
        serde_json::to_string_pretty(&serde_json::json!({
            "duration_secs": c.elapsed.as_secs_f64(),
            "concurrency": self.args.concurrency,
            "verdict": self.verdict(),
            "callers": {
                "requests": c.requests,
                "succeeded": c.succeeded,
                "failed": c.failed,
                "failed_over": c.failed_over,
                "content_chunks": c.chunks,
                "served_by": c.served_by,
                "errors": c.errors,
            },
            "snapshot": self.snapshot,
            "quota": self.quota,
            "recommendations": self.recommendations,
        }))
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot;
        writeln!(f)?;
        writeln!(f, "Backends, in failover order")?;
        let mut rows = vec![[
            "backend",
            "provider",
            "personality",
            "requests",
            "ok",
            "failed (by class)",
            "rejected (by reason)",
            "failed over",
            "TTFC p50/p95",
            "tok/s p50/p10",
            "breaker",
            "quota",
        ]
        .map(String::from)
        .to_vec()];
        for backend in self.backends {
            let name = backend.name.as_str();
            let keys: Vec<&KeySnapshot> = s
                .keys
                .iter()
                .filter(|k| k.backend.as_str() == name)
                .collect();
            let r = row(&keys);
            let quota: Vec<&QuotaKey> = self
                .quota
                .iter()
                .filter(|k| k.backend.as_str() == name)
                .collect();
            let breaker = s
                .breakers
                .iter()
                .find(|b| b.backend.as_str() == name)
                .map_or_else(
                    || "closed".to_owned(),
                    |b| format!("{} ({} changes)", b.state, b.transitions),
                );
            rows.push(vec![
                name.into(),
                backend.provider.clone(),
                backend.personality.into(),
                thousands(r.requests),
                thousands(r.successes),
                breakdown(&r.failures),
                breakdown(&r.rejections),
                thousands(r.failovers),
                r.ttfc
                    .map_or("-".into(), |p| format!("{:.0}/{:.0} ms", p.p50, p.p95)),
                r.decode
                    .map_or("-".into(), |p| format!("{:.0}/{:.0}", p.p50, p.p10)),
                breaker,
                quota_state(&quota),
            ]);
        }
        table(f, &rows, 3)?;
        writeln!(
            f,
            "  requests reached the provider; rejected = refused by a gate without calling it; \
             failed over = the router moved on to the next backend"
        )?;

        let session = &s.session;
        let usage = Usage {
            input_tokens: session.input_tokens,
            output_tokens: session.output_tokens,
            cached_input_tokens: session.cached_input_tokens,
            reasoning_tokens: session.reasoning_tokens,
        };
        writeln!(f)?;
        writeln!(
            f,
            "Session: {} tokens ({} in, {} out) over {} provider calls; {} gate refusals; \
             pacing made {} requests wait {:.1} s in all",
            thousands(usage.total()),
            thousands(usage.input_tokens),
            thousands(usage.output_tokens),
            thousands(session.requests),
            thousands(session.rejections),
            thousands(session.throttled),
            session.throttle_wait_secs
        )?;
        let served: Vec<String> = self
            .callers
            .served_by
            .iter()
            .map(|(backend, n)| format!("{backend} {}", thousands(*n)))
            .collect();
        writeln!(f, "Served by: {}", served.join(", "))?;

        writeln!(f)?;
        writeln!(
            f,
            "Recommendation per input size (end-to-end tok/s, discounted by failures)"
        )?;
        if self.recommendations.is_empty() {
            writeln!(f, "  not enough samples yet; run longer")?;
        }
        for r in &self.recommendations {
            let e = &r.evidence;
            let others: Vec<String> = r
                .candidates
                .iter()
                .filter(|c| c.eligible && c.backend != r.backend)
                .map(|c| format!("{} {:.0}", c.backend, c.evidence.score))
                .collect();
            writeln!(
                f,
                "  {:>7} tokens: {:<7} p50 {:>4.0} tok/s, p10 {:>4.0}, {:>4.1}% failed, {:>3} samples{}",
                r.category.range(),
                r.backend.as_str(),
                e.p50_tokens_per_sec,
                e.p10_tokens_per_sec,
                e.failure_rate * 100.0,
                e.samples,
                if others.is_empty() {
                    String::new()
                } else {
                    format!("  (then {})", others.join(", "))
                }
            )?;
        }

        writeln!(f)?;
        if !self.callers.errors.is_empty() {
            writeln!(f, "First errors callers saw:")?;
            for error in &self.callers.errors {
                writeln!(f, "  {error}")?;
            }
        }
        write!(
            f,
            "Verdict: {} (in {:.1} s, {} callers)",
            self.verdict(),
            self.callers.elapsed.as_secs_f64(),
            self.args.concurrency
        )
    }
}
