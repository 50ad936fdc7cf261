//! Turning outside numbers into times without panicking.
//!
//! A provider's `retry-after: 1e300`, a `retryDelay` of `99999999999999999999s`
//! or a configured `Duration::MAX` must never reach
//! [`Duration::from_secs_f64`] or `Instant + Duration`, which panic on
//! overflow. Every layer converts through these functions instead.

use std::time::Duration;

use tokio::time::Instant;

/// How far "never" is when an instant would overflow: about 30 years, as
/// tokio uses for the same purpose.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `secs` seconds as a [`Duration`], saturating at [`Duration::MAX`] for a
/// value too large to represent (including `+inf`); `None` for a negative
/// number or NaN. Never panics.
///
/// ```
/// use std::time::Duration;
/// use streamgate_core::time::duration_from_secs_f64;
///
/// assert_eq!(duration_from_secs_f64(1.5), Some(Duration::from_millis(1500)));
/// assert_eq!(duration_from_secs_f64(1e300), Some(Duration::MAX));
/// assert_eq!(duration_from_secs_f64(-1.0), None);
/// assert_eq!(duration_from_secs_f64(f64::NAN), None);
/// ```
pub fn duration_from_secs_f64(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `millis` milliseconds as a [`Duration`], with the rules of
/// [`duration_from_secs_f64`].
pub fn duration_from_millis_f64(millis: f64) -> Option<Duration> {
    duration_from_secs_f64(millis / 1000.0)
}

/// `from + after`, saturating to [`FAR_FUTURE`] from `from` (or `from`
/// itself if even that overflows) instead of panicking when `after` is too
/// large to represent as an instant.
pub fn instant_after(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(after.min(FAR_FUTURE)))
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_seconds_saturate_instead_of_panicking() {
        assert_eq!(duration_from_secs_f64(f64::MAX), Some(Duration::MAX));
        assert_eq!(duration_from_secs_f64(f64::INFINITY), Some(Duration::MAX));
        assert_eq!(duration_from_secs_f64(1.9e19), Some(Duration::MAX));
        assert_eq!(
            duration_from_millis_f64(1e25),
            Some(Duration::MAX),
            "1e25 ms is above u64 seconds"
        );
    }

    #[test]
    fn negative_and_nan_are_rejected() {
        assert_eq!(duration_from_secs_f64(-0.5), None);
        assert_eq!(duration_from_secs_f64(f64::NEG_INFINITY), None);
        assert_eq!(duration_from_millis_f64(f64::NAN), None);
    }

    #[test]
    fn ordinary_values_are_exact() {
        assert_eq!(duration_from_secs_f64(0.0), Some(Duration::ZERO));
        assert_eq!(
            duration_from_millis_f64(250.0),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn instant_after_a_huge_duration_is_far_but_finite() {
        let now = Instant::now();
        assert_eq!(
            instant_after(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        let never = instant_after(now, Duration::MAX);
        assert!(never >= now + Duration::from_secs(86_400 * 365));
    }
}
