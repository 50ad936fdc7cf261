//! Which backend to use for an input size, and why.

use std::{error::Error, fmt};

use serde::Serialize;
use streamgate_core::BackendId;

use super::size::InputSize;

/// The numbers a recommendation rests on, for one backend × model in one
/// input-size category.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Evidence {
    /// Successful requests with a throughput sample.
    pub samples: u64,
    /// Median end-to-end tokens per second.
    pub p50_tokens_per_sec: f64,
    /// 10th percentile: the speed nine requests in ten beat.
    pub p10_tokens_per_sec: f64,
    /// Failures (errors, timeouts, truncations) over judged requests.
    pub failure_rate: f64,
    /// What candidates are ranked by: `p50 × (1 − failure_rate)`, the
    /// expected useful throughput.
    pub score: f64,
}

/// One backend × model considered for a recommendation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// The backend.
    pub backend: BackendId,
    /// The model.
    pub model: String,
    /// Its numbers.
    pub evidence: Evidence,
    /// Whether it had enough samples to be ranked.
    pub eligible: bool,
}

/// The best backend for an input size, with the evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// The input-size category asked about.
    pub category: InputSize,
    /// The best backend.
    pub backend: BackendId,
    /// The model it was measured with.
    pub model: String,
    /// Why.
    pub evidence: Evidence,
    /// Every candidate, best first (ineligible ones last).
    pub candidates: Vec<Candidate>,
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.evidence;
        write!(
            f,
            "{} ({}) for {} inputs: p50 {:.1} tok/s, p10 {:.1} tok/s, {:.1}% failures over {} samples",
            self.backend,
            self.model,
            self.category.range(),
            e.p50_tokens_per_sec,
            e.p10_tokens_per_sec,
            e.failure_rate * 100.0,
            e.samples
        )
    }
}

/// No backend has enough samples in the category to recommend one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotEnoughSamples {
    /// The category asked about.
    pub category: InputSize,
    /// Samples a candidate needs.
    pub required: u64,
    /// The most samples any candidate has.
    pub best: u64,
}

impl fmt::Display for NotEnoughSamples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough samples to recommend a backend for {} inputs: best has {}, need {}",
            self.category.range(),
            self.best,
            self.required
        )
    }
}

impl Error for NotEnoughSamples {}

/// Ranks `candidates` (best first) and picks the best eligible one.
pub(crate) fn rank(
    category: InputSize,
    required: u64,
    mut candidates: Vec<Candidate>,
) -> Result<Recommendation, NotEnoughSamples> {
    candidates.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.evidence.score.total_cmp(&a.evidence.score))
            .then(
                b.evidence
                    .p10_tokens_per_sec
                    .total_cmp(&a.evidence.p10_tokens_per_sec),
            )
            .then_with(|| (&a.backend, &a.model).cmp(&(&b.backend, &b.model)))
    });
    match candidates.first() {
        Some(best) if best.eligible => Ok(Recommendation {
            category,
            backend: best.backend.clone(),
            model: best.model.clone(),
            evidence: best.evidence,
            candidates: candidates.clone(),
        }),
        _ => Err(NotEnoughSamples {
            category,
            required,
            best: candidates
                .iter()
                .map(|c| c.evidence.samples)
                .max()
                .unwrap_or(0),
        }),
    }
}
