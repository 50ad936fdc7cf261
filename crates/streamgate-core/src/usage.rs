//! Token usage as providers report it.

use serde::{Deserialize, Serialize};

/// Token counts for one request.
///
/// Follows the OpenTelemetry GenAI convention: `input_tokens` *includes*
/// `cached_input_tokens`, and `output_tokens` *includes* `reasoning_tokens`.
/// The two detail fields are breakdowns, never added on top.
///
/// Providers report cumulative counts (Anthropic restates input in
/// `message_delta`, Gemini repeats `usageMetadata` on every chunk), so the
/// right way to combine two reports is a field-wise maximum: see
/// [`Usage::merge`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub output_tokens: u64,
    /// Part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Part of `output_tokens` spent on hidden reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage with only input and output counts.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Folds a later (cumulative) report into this one: field-wise maximum.
    pub fn merge(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.max(other.input_tokens);
        self.output_tokens = self.output_tokens.max(other.output_tokens);
        self.cached_input_tokens = self.cached_input_tokens.max(other.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.max(other.reasoning_tokens);
    }

    /// [`merge`](Self::merge) by value.
    #[must_use]
    pub fn merged(mut self, other: Usage) -> Usage {
        self.merge(other);
        self
    }

    /// `input_tokens + output_tokens` (saturating).
    ///
    /// Cached and reasoning tokens are already inside those two, so they are
    /// not added again. This is what providers bill against a TPM limit.
    pub const fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The field-wise sum of two requests' usage, saturating at `u64::MAX`
    /// (provider counts are untrusted: a sum never wraps or panics). For
    /// totals over many requests; reports of one request
    /// [`merge`](Self::merge) instead.
    #[must_use]
    pub const fn saturating_add(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_add(other.cached_input_tokens),
            reasoning_tokens: self.reasoning_tokens.saturating_add(other.reasoning_tokens),
        }
    }

    /// Merges an optional report into an optional accumulator.
    pub fn merge_option(acc: &mut Option<Usage>, report: Option<Usage>) {
        if let Some(report) = report {
            match acc {
                Some(acc) => acc.merge(report),
                None => *acc = Some(report),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_field_wise_max_so_cumulative_reports_never_go_back() {
        let start = Usage {
            input_tokens: 100,
            output_tokens: 1,
            cached_input_tokens: 80,
            reasoning_tokens: 0,
        };
        let delta = Usage {
            input_tokens: 0,
            output_tokens: 42,
            cached_input_tokens: 0,
            reasoning_tokens: 10,
        };
        let merged = start.merged(delta);
        assert_eq!(
            merged,
            Usage {
                input_tokens: 100,
                output_tokens: 42,
                cached_input_tokens: 80,
                reasoning_tokens: 10,
            }
        );
        assert_eq!(merged.total(), 142);
    }

    #[test]
    fn total_does_not_double_count_cached_or_reasoning() {
        let u = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 7,
            reasoning_tokens: 3,
        };
        assert_eq!(u.total(), 15);
    }

    #[test]
    fn total_saturates() {
        assert_eq!(Usage::new(u64::MAX, 1).total(), u64::MAX);
    }

    #[test]
    fn saturating_add_sums_field_wise_and_never_wraps() {
        let a = Usage {
            input_tokens: u64::MAX - 1,
            output_tokens: 2,
            cached_input_tokens: u64::MAX,
            reasoning_tokens: 1,
        };
        let b = Usage {
            input_tokens: 5,
            output_tokens: 3,
            cached_input_tokens: 1,
            reasoning_tokens: 1,
        };
        assert_eq!(
            a.saturating_add(b),
            Usage {
                input_tokens: u64::MAX,
                output_tokens: 5,
                cached_input_tokens: u64::MAX,
                reasoning_tokens: 2,
            }
        );
    }

    #[test]
    fn merge_option_keeps_first_report_and_merges_later_ones() {
        let mut acc = None;
        Usage::merge_option(&mut acc, None);
        assert_eq!(acc, None);
        Usage::merge_option(&mut acc, Some(Usage::new(3, 0)));
        Usage::merge_option(&mut acc, Some(Usage::new(0, 9)));
        assert_eq!(acc, Some(Usage::new(3, 9)));
    }
}
