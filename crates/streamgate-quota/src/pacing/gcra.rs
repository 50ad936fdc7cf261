//! The generic cell rate algorithm, on one atomic and a time the caller
//! reads: a request's limiters share one clock read.
//!
//! A limiter emits one cell every `period` and holds at most `burst` cells.
//! Its state is the theoretical arrival time (TAT) of the next cell, counted
//! in nanoseconds from the limiter's origin. Taking `n` cells at `t0` is
//! allowed when `TAT + (n − 1)·period − (burst − 1)·period ≤ t0`, and moves
//! the TAT to `max(TAT, t0) + n·period`; otherwise the difference is the
//! wait. This is the algorithm `governor` implements (the same test and
//! update), without its clock: the caller passes the time in.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// One limiter: `burst` cells at most, one more every `period`.
#[derive(Debug)]
pub(crate) struct Gcra {
    origin: Instant,
    /// Nanoseconds per cell, at least 1.
    period: u64,
    /// How far the TAT may run ahead of now: `(burst − 1)·period`.
    tolerance: u64,
    burst: u32,
    /// The theoretical arrival time of the next cell, in nanoseconds since
    /// `origin`.
    tat: AtomicU64,
}

impl Gcra {
    /// A full limiter at `origin`: `burst` (at least 1) cells at once, one
    /// more every `period`.
    pub(crate) fn new(period: Duration, burst: u32, origin: Instant) -> Self {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
        let burst = burst.max(1);
        Self {
            origin,
            period,
            tolerance: period.saturating_mul(u64::from(burst - 1)),
            burst,
            tat: AtomicU64::new(0),
        }
    }

    /// [`try_take_at`](Self::try_take_at) at the instant `now`.
    #[cfg(test)]
    pub(crate) fn try_take(&self, cells: u32, now: Instant) -> Result<(), Duration> {
        self.try_take_at(cells, self.nanos(now))
    }

    /// `now` in nanoseconds since the origin (an instant before it counts
    /// as the origin), as [`try_take_at`](Self::try_take_at) takes it.
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes `cells` at `t0` nanoseconds since the origin (0 counts as 1,
    /// more than the burst as the burst), or says how long to wait before
    /// they are there. Limiters with one origin share one conversion of the
    /// time ([`nanos`](Self::nanos)).
    pub(crate) fn try_take_at(&self, cells: u32, t0: u64) -> Result<(), Duration> {
        let extra = self
            .period
            .saturating_mul(u64::from(cells.clamp(1, self.burst) - 1));
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let earliest = tat.saturating_add(extra).saturating_sub(self.tolerance);
            if t0 < earliest {
                return Err(Duration::from_nanos(earliest - t0));
            }
            let next = tat
                .max(t0)
                .saturating_add(self.period)
                .saturating_add(extra);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now_tat) => tat = now_tat,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_limiter_gives_its_burst_then_one_cell_per_period() {
        let origin = Instant::now();
        let gcra = Gcra::new(10 * MS, 3, origin);
        for _ in 0..3 {
            assert_eq!(gcra.try_take(1, origin), Ok(()));
        }
        assert_eq!(gcra.try_take(1, origin), Err(10 * MS));
        assert_eq!(gcra.try_take(1, origin + 4 * MS), Err(6 * MS));
        assert_eq!(gcra.try_take(1, origin + 10 * MS), Ok(()));
        assert_eq!(gcra.try_take(1, origin + 10 * MS), Err(10 * MS));
    }

    #[test]
    fn several_cells_wait_for_all_of_them_and_a_refusal_takes_nothing() {
        let origin = Instant::now();
        let gcra = Gcra::new(10 * MS, 4, origin);
        assert_eq!(gcra.try_take(3, origin), Ok(()));
        // One cell left: three more need two periods.
        assert_eq!(gcra.try_take(3, origin), Err(20 * MS));
        assert_eq!(gcra.try_take(1, origin), Ok(()));
        assert_eq!(gcra.try_take(4, origin + 40 * MS), Ok(()));
    }

    #[test]
    fn asks_beyond_the_burst_count_as_the_burst_and_idle_time_never_banks_more() {
        let origin = Instant::now();
        let gcra = Gcra::new(10 * MS, 2, origin);
        assert_eq!(gcra.try_take(u32::MAX, origin), Ok(()));
        assert_eq!(gcra.try_take(u32::MAX, origin), Err(20 * MS));
        // An hour idle refills the burst, not an hour of cells.
        let later = origin + Duration::from_secs(3600);
        assert_eq!(gcra.try_take(2, later), Ok(()));
        assert_eq!(gcra.try_take(1, later), Err(10 * MS));
    }

    #[test]
    fn a_time_before_the_origin_counts_as_the_origin() {
        let origin = Instant::now() + Duration::from_secs(1);
        let gcra = Gcra::new(10 * MS, 1, origin);
        assert_eq!(gcra.try_take(1, Instant::now()), Ok(()));
        assert_eq!(gcra.try_take(1, origin), Err(10 * MS));
    }

    #[test]
    fn extreme_settings_saturate_instead_of_overflowing() {
        let origin = Instant::now();
        let slow = Gcra::new(Duration::MAX, 1, origin);
        assert_eq!(slow.try_take(1, origin), Ok(()));
        assert_eq!(
            slow.try_take(1, origin),
            Err(Duration::from_nanos(u64::MAX))
        );
        let wide = Gcra::new(Duration::MAX, u32::MAX, origin);
        assert_eq!(wide.try_take(u32::MAX, origin), Ok(()));
        assert_eq!(
            wide.try_take(u32::MAX, origin),
            Ok(()),
            "everything saturates"
        );
        // A zero period is one nanosecond, a zero burst one cell.
        let fast = Gcra::new(Duration::ZERO, 0, origin);
        assert_eq!(fast.try_take(5, origin), Ok(()));
        assert_eq!(fast.try_take(1, origin), Err(Duration::from_nanos(1)));
    }

    proptest::proptest! {
        /// The same answers as `governor` (the reference implementation
        /// of the algorithm) for any settings and any arrivals.
        #[test]
        fn answers_as_governor_does(
            period_us in 1u64..100_000,
            burst in 1u32..50,
            steps in proptest::collection::vec((0u64..200_000, 1u32..60), 1..60),
        ) {
            use governor::{clock::FakeRelativeClock, Quota, RateLimiter};
            use std::num::NonZeroU32;

            let period = Duration::from_micros(period_us);
            let clock = FakeRelativeClock::default();
            let quota = Quota::with_period(period)
                .unwrap()
                .allow_burst(NonZeroU32::new(burst).unwrap());
            let reference = RateLimiter::direct_with_clock(quota, clock.clone());
            let origin = Instant::now();
            let ours = Gcra::new(period, burst, origin);
            let mut elapsed = Duration::ZERO;
            for (advance_us, cells) in steps {
                let advance = Duration::from_micros(advance_us);
                clock.advance(advance);
                elapsed += advance;
                let cells = cells.min(burst);
                let expected = match reference.check_n(NonZeroU32::new(cells).unwrap()) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(not_until)) => {
                        use governor::clock::Clock;
                        Err(not_until.wait_time_from(clock.now()))
                    }
                    Err(_) => unreachable!("cells are clamped to the burst"),
                };
                proptest::prop_assert_eq!(ours.try_take(cells, origin + elapsed), expected);
            }
        }
    }
}
