//! Input-size categories: one table of boundaries.

use std::fmt;

use serde::Serialize;

/// The boundaries (in estimated tokens, from
/// [`LlmRequest::estimated_tokens`](streamgate_core::LlmRequest::estimated_tokens))
/// between the input-size categories: below 1k, 1k–4k, 4k–16k, 16k–64k, and
/// 64k or more. Each boundary belongs to the category above it. An estimate
/// of 0 means "unknown" and gets its own category.
pub const INPUT_SIZE_BOUNDARIES: [u64; 4] = [1_000, 4_000, 16_000, 64_000];

/// How large a request's input is, by its token estimate; see
/// [`INPUT_SIZE_BOUNDARIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSize {
    /// No estimate (0).
    Unknown,
    /// Below the first boundary (1 to 999 tokens).
    Tiny,
    /// 1k to 4k tokens.
    Small,
    /// 4k to 16k tokens.
    Medium,
    /// 16k to 64k tokens.
    Large,
    /// 64k tokens or more.
    Huge,
}

impl InputSize {
    /// Every category, smallest first.
    pub const ALL: [InputSize; 6] = [
        Self::Unknown,
        Self::Tiny,
        Self::Small,
        Self::Medium,
        Self::Large,
        Self::Huge,
    ];

    /// The category of a request estimated at `tokens`.
    pub fn from_estimate(tokens: u64) -> Self {
        if tokens == 0 {
            return Self::Unknown;
        }
        match INPUT_SIZE_BOUNDARIES.iter().position(|&b| tokens < b) {
            Some(0) => Self::Tiny,
            Some(1) => Self::Small,
            Some(2) => Self::Medium,
            Some(_) => Self::Large,
            None => Self::Huge,
        }
    }

    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Tiny => "tiny",
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
            Self::Huge => "huge",
        }
    }

    /// The range of estimates, for display (`1k-4k`).
    pub fn range(self) -> &'static str {
        match self {
            Self::Unknown => "?",
            Self::Tiny => "<1k",
            Self::Small => "1k-4k",
            Self::Medium => "4k-16k",
            Self::Large => "16k-64k",
            Self::Huge => ">=64k",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for InputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_belong_to_the_category_above() {
        assert_eq!(InputSize::from_estimate(0), InputSize::Unknown);
        assert_eq!(InputSize::from_estimate(1), InputSize::Tiny);
        assert_eq!(InputSize::from_estimate(999), InputSize::Tiny);
        assert_eq!(InputSize::from_estimate(1_000), InputSize::Small);
        assert_eq!(InputSize::from_estimate(3_999), InputSize::Small);
        assert_eq!(InputSize::from_estimate(4_000), InputSize::Medium);
        assert_eq!(InputSize::from_estimate(16_000), InputSize::Large);
        assert_eq!(InputSize::from_estimate(63_999), InputSize::Large);
        assert_eq!(InputSize::from_estimate(64_000), InputSize::Huge);
        assert_eq!(InputSize::from_estimate(u64::MAX), InputSize::Huge);
        for (i, size) in InputSize::ALL.iter().enumerate() {
            assert_eq!(size.index(), i);
        }
    }
}
