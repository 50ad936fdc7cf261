//! Retry delays: exponential backoff with jitter, and Retry-After honoured
//! up to a cap. Pure; the randomness comes from a tiny lock-free generator.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How long to wait before trying the same backend again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry, doubled for each later one.
    pub base: Duration,
    /// The longest computed delay.
    pub max: Duration,
    /// The longest Retry-After worth waiting for on the same backend; a
    /// longer one moves on to the next backend instead.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    /// 250 ms doubling up to 4 s; Retry-After honoured up to 10 s. Short,
    /// because another backend is usually a quicker retry than waiting.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// The longest [`Backoff::max`] and [`Backoff::max_retry_after`] a router
/// accepts: a retry of the same backend never sleeps longer than this.
pub const MAX_BACKOFF_DELAY: Duration = Duration::from_secs(3600);

impl Backoff {
    /// The delay before retry number `retry` (0 for the first), given the
    /// provider's Retry-After and a uniform random `unit` in `[0, 1)`;
    /// `None` when the provider asks for longer than `max_retry_after`.
    ///
    /// With a Retry-After the delay is that time plus up to 10 % of it, so
    /// retries do not all land at the same instant; without one it is
    /// "equal jitter": half of `min(max, base·2^retry)` fixed, half random.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        let unit = unit.clamp(0.0, 1.0);
        if let Some(after) = retry_after {
            if after > self.max_retry_after {
                return None;
            }
            // Saturating: a configured `max_retry_after` of `Duration::MAX`
            // must not overflow on a provider's huge Retry-After.
            return Some(after.saturating_add(after.mul_f64(0.1 * unit)));
        }
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = exp / 2;
        Some(half + (exp - half).mul_f64(unit))
    }
}

/// A tiny generator (SplitMix64 over an atomic counter) for jitter: good
/// enough to spread retries, lock-free, and no dependency.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: AtomicU64,
}

impl Jitter {
    /// Seeded from the standard library's per-process random hash keys.
    pub(crate) fn new() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self::with_seed(hasher.finish())
    }

    pub(crate) const fn with_seed(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits make an exact double in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_delay_doubles_up_to_the_cap_with_equal_jitter() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, None, 0.0), Some(MS(125)));
        let almost = b.delay(0, None, 0.999_999).unwrap_or_default();
        assert!(almost > MS(249) && almost < MS(250));
        assert_eq!(b.delay(1, None, 0.0), Some(MS(250)));
        assert_eq!(b.delay(2, None, 0.5), Some(MS(750)));
        assert_eq!(b.delay(10, None, 0.0), Some(MS(2000)));
        assert_eq!(b.delay(u32::MAX, None, 0.0), Some(MS(2000)));
        let top = b.delay(3, None, 0.999).unwrap_or_default();
        assert!(top > MS(1000) && top < MS(2000));
    }

    #[test]
    fn retry_after_is_honoured_with_a_little_jitter_up_to_a_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, Some(MS(3000)), 0.0), Some(MS(3000)));
        assert_eq!(b.delay(5, Some(MS(3000)), 0.5), Some(MS(3150)));
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(10)), 0.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(b.delay(0, Some(MS(10_001)), 0.0), None);
    }

    #[test]
    fn huge_settings_and_retry_after_never_overflow() {
        let b = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
            max_retry_after: Duration::MAX,
        };
        assert_eq!(b.delay(0, Some(Duration::MAX), 0.9), Some(Duration::MAX));
        assert!(b.delay(40, None, 0.9).is_some());
    }

    #[test]
    fn jitter_is_uniform_enough_and_in_range() {
        let jitter = Jitter::with_seed(42);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let u = jitter.unit();
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for count in buckets {
            assert!((800..1200).contains(&count), "{buckets:?}");
        }
        let a = Jitter::new().unit();
        let b = Jitter::new().unit();
        assert_ne!(a, b, "two generators are seeded differently");
    }
}
