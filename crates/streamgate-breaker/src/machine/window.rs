//! Sliding windows of recent outcomes, updated with atomics only.
//!
//! Both windows keep three counts — calls, failures and slow calls — so the
//! rate triggers can read them together.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Calls, failures and slow calls currently in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The window behind the rate triggers.
#[derive(Debug)]
pub(crate) enum Window {
    /// The last N calls.
    Count(CountWindow),
    /// N one-second buckets.
    Time(TimeWindow),
}

impl Window {
    /// Records one call that ended in second `sec` (seconds since the
    /// breaker was created).
    #[inline]
    pub(crate) fn record(&self, sec: u64, failure: bool, slow: bool) {
        match self {
            Self::Count(w) => w.record(failure, slow),
            Self::Time(w) => w.record(sec, failure, slow),
        }
    }

    /// What the window holds at second `sec`.
    pub(crate) fn counts(&self, sec: u64) -> Counts {
        match self {
            Self::Count(w) => w.counts(),
            Self::Time(w) => w.counts(sec),
        }
    }

    /// Forgets everything.
    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

/// Bits per lane of the count window's packed counter. Lanes are decoded
/// as signed so that a transiently negative lane (a slot overwritten before
/// the writer that filled it added its own delta) never corrupts its
/// neighbours.
const LANE_BITS: u32 = 21;

/// The largest count window: one lane must hold it as a positive signed value.
pub(crate) const MAX_COUNT_WINDOW: u32 = 100_000;

/// The last N calls: a ring of one-byte outcomes and one packed counter that
/// always equals the sum of the ring (each slot swap adds exactly its delta).
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: AtomicU64,
    packed: AtomicU64,
}

/// Slot codes: bit 0 = a call, bit 1 = failed, bit 2 = slow.
fn code(failure: bool, slow: bool) -> u8 {
    1 | (u8::from(failure) << 1) | (u8::from(slow) << 2)
}

fn lanes(code: u8) -> u64 {
    let lane = |bit: u8| u64::from((code >> bit) & 1) << (LANE_BITS * u32::from(bit));
    lane(0) | lane(1) | lane(2)
}

fn decode(mut packed: u64) -> Counts {
    let mut out = [0u64; 3];
    for lane in &mut out {
        let shift = 64 - LANE_BITS;
        let value = ((packed << shift) as i64) >> shift;
        packed = packed.wrapping_sub(value as u64) >> LANE_BITS;
        *lane = u64::try_from(value).unwrap_or(0);
    }
    Counts {
        calls: out[0],
        failures: out[1],
        slow: out[2],
    }
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            slots: (0..size.max(1)).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU64::new(0),
            packed: AtomicU64::new(0),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) {
        let new = code(failure, slow);
        let index = self.head.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64;
        let Some(slot) = self.slots.get(index as usize) else {
            return;
        };
        let old = slot.swap(new, Ordering::AcqRel);
        // A healthy steady state overwrites success with success: no update.
        if old != new {
            self.packed
                .fetch_add(lanes(new).wrapping_sub(lanes(old)), Ordering::AcqRel);
        }
    }

    fn counts(&self) -> Counts {
        decode(self.packed.load(Ordering::Acquire))
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            if old != 0 {
                self.packed
                    .fetch_add(0u64.wrapping_sub(lanes(old)), Ordering::AcqRel);
            }
        }
    }
}

/// The largest time window, in one-second buckets.
pub(crate) const MAX_TIME_WINDOW: u32 = 3600;

/// Per-bucket lane width: counts in one second saturate at 8191.
const BUCKET_LANE_BITS: u32 = 13;
const BUCKET_LANE_MAX: u64 = (1 << BUCKET_LANE_BITS) - 1;
const STAMP_SHIFT: u32 = 3 * BUCKET_LANE_BITS;
const STAMP_MASK: u64 = (1 << (64 - STAMP_SHIFT)) - 1;

/// N one-second buckets, each one `AtomicU64`: a stamp (the second it
/// holds, plus one, so zero means empty) and three 13-bit counts, updated
/// with a compare-and-swap that also recycles a stale bucket.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[AtomicU64]>,
}

fn stamp_of(sec: u64) -> u64 {
    sec.wrapping_add(1) & STAMP_MASK
}

fn bucket_lane(bucket: u64, lane: u32) -> u64 {
    (bucket >> (lane * BUCKET_LANE_BITS)) & BUCKET_LANE_MAX
}

impl TimeWindow {
    pub(crate) fn new(seconds: u32) -> Self {
        Self {
            buckets: (0..seconds.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    fn record(&self, sec: u64, failure: bool, slow: bool) {
        let stamp = stamp_of(sec);
        let index = sec % self.buckets.len() as u64;
        let Some(bucket) = self.buckets.get(index as usize) else {
            return;
        };
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let base = if current >> STAMP_SHIFT == stamp {
                current
            } else {
                stamp << STAMP_SHIFT
            };
            let add = |value: u64, lane: u32, yes: bool| {
                if yes && bucket_lane(value, lane) < BUCKET_LANE_MAX {
                    value + (1 << (lane * BUCKET_LANE_BITS))
                } else {
                    value
                }
            };
            let new = add(add(add(base, 0, true), 1, failure), 2, slow);
            if new == current {
                return;
            }
            match bucket.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn counts(&self, sec: u64) -> Counts {
        let now = stamp_of(sec);
        let len = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let value = bucket.load(Ordering::Acquire);
            let stamp = value >> STAMP_SHIFT;
            if stamp == 0 || (now.wrapping_sub(stamp) & STAMP_MASK) >= len {
                continue;
            }
            counts.calls += bucket_lane(value, 0);
            counts.failures += bucket_lane(value, 1);
            counts.slow += bucket_lane(value, 2);
        }
        counts
    }

    fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(calls: u64, failures: u64, slow: u64) -> Counts {
        Counts {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn count_window_keeps_only_the_last_n_calls() {
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(true, false);
        }
        assert_eq!(w.counts(), counts(4, 4, 0));
        w.record(false, true);
        w.record(false, false);
        assert_eq!(w.counts(), counts(4, 2, 1));
        for _ in 0..4 {
            w.record(false, false);
        }
        assert_eq!(w.counts(), counts(4, 0, 0));
    }

    #[test]
    fn count_window_reset_empties_it() {
        let w = CountWindow::new(3);
        w.record(true, true);
        w.record(false, false);
        w.reset();
        assert_eq!(w.counts(), counts(0, 0, 0));
        w.record(true, false);
        assert_eq!(w.counts(), counts(1, 1, 0));
    }

    #[test]
    fn negative_lanes_decode_without_touching_their_neighbours() {
        // A slot swapped out before its writer added it: the failure lane
        // is transiently -1 while the others are positive.
        let packed = 2u64
            .wrapping_sub(1 << LANE_BITS)
            .wrapping_add(1 << (2 * LANE_BITS));
        assert_eq!(decode(packed), counts(2, 0, 1));
    }

    #[test]
    fn time_buckets_expire() {
        let w = TimeWindow::new(60);
        w.record(0, true, false);
        w.record(0, true, false);
        w.record(59, false, false);
        assert_eq!(w.counts(59), counts(3, 2, 0));
        // Second 0 leaves the window at second 60.
        assert_eq!(w.counts(60), counts(1, 0, 0));
        // Its bucket is recycled by a call in second 60.
        w.record(60, false, true);
        assert_eq!(w.counts(60), counts(2, 0, 1));
        assert_eq!(w.counts(200), counts(0, 0, 0));
    }

    #[test]
    fn time_bucket_counts_saturate() {
        let w = TimeWindow::new(1);
        for _ in 0..(BUCKET_LANE_MAX + 5) {
            w.record(3, true, false);
        }
        assert_eq!(w.counts(3), counts(BUCKET_LANE_MAX, BUCKET_LANE_MAX, 0));
    }
}
