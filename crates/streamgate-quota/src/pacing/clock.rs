//! A `governor` clock on tokio time, so pacing follows paused time in tests
//! and waits with tokio timers.

use std::{ops::Add, time::Duration};

use governor::{
    clock::{Clock, ReasonablyRealtime, Reference},
    nanos::Nanos,
};

/// A [`tokio::time::Instant`] as a `governor` clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(pub tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

/// `governor`'s clock reading [`tokio::time::Instant::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> Self::Instant {
        TokioInstant(tokio::time::Instant::now())
    }
}

impl ReasonablyRealtime for TokioClock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock;
        let start = clock.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let later = clock.now();
        assert_eq!(
            Duration::from(later.duration_since(start)),
            Duration::from_millis(1500)
        );
        assert_eq!(Duration::from(start.duration_since(later)), Duration::ZERO);
        assert_eq!(
            later.saturating_sub(Nanos::from(Duration::from_millis(500))),
            start + Nanos::from(Duration::from_secs(1))
        );
    }
}
