//! The best backend × model per input size, from stored history.

use serde::Serialize;
use streamgate_metrics::InputSize;

use crate::{
    percentile::validate,
    query::{scan, Filter, Group},
    QueryError, Store,
};

/// Samples a candidate needs by default before it is recommended: 20, so
/// that its 10th percentile rests on two requests or more.
pub const DEFAULT_MIN_SAMPLES: u64 = 20;

/// What a recommendation rests on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    /// Successful requests with an end-to-end speed.
    pub samples: u64,
    /// Median end-to-end tokens per second.
    pub p50_tokens_per_sec: f64,
    /// 10th percentile: the slow tail a caller must plan for.
    pub p10_tokens_per_sec: f64,
    /// Failed, timed-out or truncated share of the judged requests.
    pub failure_rate: f64,
    /// `p10 × (1 − failure rate)`: what ranks candidates.
    pub score: f64,
}

/// One backend × model considered for a category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// The backend.
    pub backend: String,
    /// The model.
    pub model: String,
    /// Its numbers.
    pub evidence: Evidence,
    /// Whether it has the minimum number of samples.
    pub eligible: bool,
}

/// The verdict for one input size category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CategoryRecommendation {
    /// The category.
    pub category: InputSize,
    /// Its range of token estimates, for display (`1k-4k`).
    pub range: &'static str,
    /// The best eligible candidate, if any has enough samples.
    pub best: Option<Candidate>,
    /// Why there is none, when there is none.
    pub refused: Option<String>,
    /// Every candidate, best first (eligible ones before the others).
    pub candidates: Vec<Candidate>,
}

/// What [`Store::recommend`] returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendations {
    /// The filter as applied.
    pub filter: Filter,
    /// Samples a candidate needed.
    pub min_samples: u64,
    /// Per category seen, smallest first.
    pub categories: Vec<CategoryRecommendation>,
}

fn candidate(cell: &Group, min_samples: u64) -> Option<Candidate> {
    let e2e = &cell.end_to_end_tokens_per_sec;
    let p50 = e2e.get(50.0).unwrap_or(0.0);
    let p10 = e2e.get(10.0).unwrap_or(0.0);
    let failure_rate = cell.counts.failure_rate;
    Some(Candidate {
        backend: cell.backend.clone()?,
        model: cell.model.clone()?,
        evidence: Evidence {
            samples: e2e.samples,
            p50_tokens_per_sec: p50,
            p10_tokens_per_sec: p10,
            failure_rate,
            score: p10 * (1.0 - failure_rate),
        },
        eligible: e2e.samples >= min_samples,
    })
}

impl Store {
    /// For each input size category seen in `filter`'s requests, the best
    /// backend × model by end-to-end tokens per second.
    ///
    /// Speed is judged by the low tail: candidates rank by their 10th
    /// percentile discounted by their failure rate, so a backend that is
    /// sometimes very fast but often slow does not win on its good days, and
    /// a fast upper tail is never held against anyone. A candidate needs
    /// `min_samples` successful requests in the category (at least 1); when
    /// none has them the category is refused, with the reason.
    pub fn recommend(
        &self,
        filter: &Filter,
        min_samples: u64,
    ) -> Result<Recommendations, QueryError> {
        if min_samples == 0 {
            return Err(QueryError::BadFilter(
                "minimum samples must be at least 1".into(),
            ));
        }
        let ps = [10.0, 50.0];
        validate(&ps)?;
        let report = self.read(|conn| scan(conn, filter, &ps))?;
        let mut categories = Vec::new();
        for category in InputSize::ALL {
            let mut candidates: Vec<Candidate> = report
                .cells
                .iter()
                .filter(|c| c.input_category == Some(category))
                .filter_map(|c| candidate(c, min_samples))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_by(|a, b| {
                b.eligible
                    .cmp(&a.eligible)
                    .then(b.evidence.score.total_cmp(&a.evidence.score))
                    .then(
                        b.evidence
                            .p50_tokens_per_sec
                            .total_cmp(&a.evidence.p50_tokens_per_sec),
                    )
            });
            let best = candidates.first().filter(|c| c.eligible).cloned();
            let refused = best.is_none().then(|| {
                let most = candidates
                    .iter()
                    .map(|c| c.evidence.samples)
                    .max()
                    .unwrap_or(0);
                format!("not enough samples: the most any candidate has is {most}, {min_samples} needed")
            });
            categories.push(CategoryRecommendation {
                category,
                range: category.range(),
                best,
                refused,
                candidates,
            });
        }
        Ok(Recommendations {
            filter: filter.clone(),
            min_samples,
            categories,
        })
    }
}
