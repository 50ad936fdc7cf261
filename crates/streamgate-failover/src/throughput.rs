//! The minimum-throughput gate's state: recent throughput samples of one
//! backend, the group of backends that can stand in for each other, and the
//! last-resort mark a router puts on a call that must not be turned away.
//!
//! # Why a group and a mark
//!
//! A slow backend is only *deprioritised*: it refuses work while some other
//! backend can take it, never when it is the last option. Two pieces make
//! that hold:
//!
//! - a [`ThroughputGroup`] that the `TpmLayer`s of all interchangeable
//!   backends join. A slow backend rejects only while some *other* member
//!   is not slow, so if every backend is slow, none rejects;
//! - the [`last_resort`] mark. Another member may be fast yet unavailable
//!   for a reason the group cannot see (its circuit is open, its quota is
//!   gone). The failover router therefore calls every backend that refused
//!   as slow once more, inside [`last_resort`], after every other backend
//!   refused or failed; a marked call is never refused as slow.
//!
//! The mark is a thread-local flag set for the duration of a synchronous
//! `call`, so it reaches the gate when the gate's `call` runs inside the
//! router's (true for stacks of streamgate layers and boxed services; not
//! through a layer that calls its inner service later from a spawned task,
//! such as `tower::buffer`).

use std::{
    cell::Cell,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use streamgate_core::BackendId;
use tokio::time::Instant;

thread_local! {
    static LAST_RESORT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (typically a backend's `call`) marked as a last-resort attempt:
/// a minimum-throughput gate reached from inside `f` does not refuse it.
pub fn last_resort<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            LAST_RESORT.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(LAST_RESORT.with(|flag| flag.replace(true)));
    f()
}

/// Whether the current call runs inside [`last_resort`].
pub fn is_last_resort() -> bool {
    LAST_RESORT.with(Cell::get)
}

/// The minimum-throughput settings of one backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThroughputPolicy {
    /// Output tokens per minute of streaming time below which the backend
    /// is slow. `None`: never slow (the backend still counts as an
    /// available member of its group).
    pub min_tokens_per_minute: Option<u64>,
    /// Samples needed before the backend can be judged at all.
    pub min_samples: usize,
    /// How many recent samples are kept and judged.
    pub max_samples: usize,
    /// Samples older than this are forgotten, so a backend judged slow
    /// (and hence sent no traffic) is tried again once its evidence is old.
    pub sample_ttl: Duration,
}

impl Default for ThroughputPolicy {
    /// No minimum; 3 of the last 10 samples, each kept for 5 minutes.
    fn default() -> Self {
        Self {
            min_tokens_per_minute: None,
            min_samples: 3,
            max_samples: 10,
            sample_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    tokens: u64,
    streaming: Duration,
}

/// Recent throughput samples of one backend.
///
/// A sample is one completed stream: its output tokens and its *streaming
/// time*, from the first content chunk to the end of the stream (the time
/// to first content is the timeout layer's business, and would make every
/// short answer look slow). The measured rate is the sum of tokens over the
/// sum of streaming time of the fresh samples, so long streams weigh more
/// than short ones and no single tiny sample decides.
#[derive(Debug)]
pub struct ThroughputTracker {
    backend: BackendId,
    policy: ThroughputPolicy,
    samples: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    buf: Vec<Sample>,
    next: usize,
}

impl ThroughputTracker {
    /// A tracker for `backend` that keeps `policy.max_samples` samples
    /// (up to 64 allocated here, more as they arrive).
    pub fn new(backend: BackendId, policy: ThroughputPolicy) -> Self {
        Self {
            backend,
            samples: Mutex::new(Ring {
                // Grown on demand past a small start: a huge `max_samples`
                // must not allocate (or abort) up front.
                buf: Vec::with_capacity(policy.max_samples.min(64)),
                next: 0,
            }),
            policy,
        }
    }

    /// The backend tracked.
    pub fn backend(&self) -> &BackendId {
        &self.backend
    }

    /// The policy.
    pub fn policy(&self) -> &ThroughputPolicy {
        &self.policy
    }

    /// Records a completed stream of `tokens` output tokens over `streaming`
    /// time, ending at `now`. Empty or instantaneous streams say nothing
    /// about speed and are ignored.
    pub fn record(&self, now: Instant, tokens: u64, streaming: Duration) {
        if tokens == 0 || streaming.is_zero() || self.policy.max_samples == 0 {
            return;
        }
        let sample = Sample {
            at: now,
            tokens,
            streaming,
        };
        let mut ring = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.buf.len() < self.policy.max_samples {
            ring.buf.push(sample);
        } else {
            let next = ring.next;
            ring.buf[next] = sample;
        }
        ring.next = (ring.next + 1) % self.policy.max_samples;
    }

    /// Output tokens per minute of streaming time over the fresh samples at
    /// `now`, or `None` with fewer than `min_samples` of them.
    pub fn tokens_per_minute(&self, now: Instant) -> Option<f64> {
        let ring = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut count, mut tokens, mut streaming) = (0usize, 0u64, Duration::ZERO);
        for sample in &ring.buf {
            if now.saturating_duration_since(sample.at) < self.policy.sample_ttl {
                count += 1;
                tokens = tokens.saturating_add(sample.tokens);
                streaming = streaming.saturating_add(sample.streaming);
            }
        }
        drop(ring);
        if count < self.policy.min_samples.max(1) || streaming.is_zero() {
            return None;
        }
        Some(tokens as f64 * 60.0 / streaming.as_secs_f64())
    }

    /// Whether the backend measures below its minimum at `now`. Never with
    /// too few samples or without a minimum.
    pub fn is_slow(&self, now: Instant) -> bool {
        let Some(min) = self.policy.min_tokens_per_minute else {
            return false;
        };
        self.tokens_per_minute(now)
            .is_some_and(|measured| measured < min as f64)
    }
}

/// Backends that can stand in for each other: a slow member refuses work
/// only while another member is not slow. See the [module docs](self).
///
/// Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct ThroughputGroup {
    members: Arc<RwLock<Vec<Arc<ThroughputTracker>>>>,
}

impl ThroughputGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member.
    pub fn join(&self, member: Arc<ThroughputTracker>) {
        self.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(member);
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some member other than `me` is not slow at `now`.
    pub fn other_member_is_fast(&self, me: &Arc<ThroughputTracker>, now: Instant) -> bool {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|m| !Arc::ptr_eq(m, me) && !m.is_slow(now))
    }
}

/// The minimum-throughput verdict for a call to `me` at `now`: refuse only
/// if `me` is slow, the call is not a last resort, and another member of
/// `group` is not slow.
pub(crate) fn should_refuse_as_slow(
    me: &Arc<ThroughputTracker>,
    group: Option<&ThroughputGroup>,
    now: Instant,
) -> bool {
    let Some(group) = group else {
        return false;
    };
    me.is_slow(now) && !is_last_resort() && group.other_member_is_fast(me, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tracker(name: &str, min: Option<u64>) -> Arc<ThroughputTracker> {
        Arc::new(ThroughputTracker::new(
            BackendId::new(name),
            ThroughputPolicy {
                min_tokens_per_minute: min,
                min_samples: 3,
                max_samples: 4,
                sample_ttl: Duration::from_secs(300),
            },
        ))
    }

    #[test]
    fn with_no_samples_a_backend_is_never_slow() {
        let t = tracker("a", Some(1_000_000));
        assert_eq!(t.tokens_per_minute(Instant::now()), None);
        assert!(!t.is_slow(Instant::now()));
        t.record(Instant::now(), 1, Duration::from_secs(60));
        t.record(Instant::now(), 1, Duration::from_secs(60));
        assert!(!t.is_slow(Instant::now()), "two samples are not enough");
        t.record(Instant::now(), 1, Duration::from_secs(60));
        assert!(t.is_slow(Instant::now()));
    }

    #[test]
    fn rate_is_tokens_over_streaming_time_of_fresh_samples() {
        let now = Instant::now();
        let t = tracker("a", Some(600));
        t.record(now, 10, Duration::from_secs(1)); // 600/min
        t.record(now, 30, Duration::from_secs(1)); // 1800/min
        t.record(now, 20, Duration::from_secs(4)); // 300/min
                                                   // (10 + 30 + 20) tokens over 6 s = 600 per minute: not below 600.
        assert_eq!(t.tokens_per_minute(now), Some(600.0));
        assert!(!t.is_slow(now));
        // The ring keeps 4: a fifth sample replaces the oldest.
        t.record(now, 1, Duration::from_secs(1));
        t.record(now, 1, Duration::from_secs(1));
        // Now 30 + 20 + 1 + 1 = 52 tokens over 7 s.
        let rate = t.tokens_per_minute(now).unwrap();
        assert!((rate - 52.0 * 60.0 / 7.0).abs() < 1e-9);
        assert!(t.is_slow(now));
    }

    #[test]
    fn slowness_expires_with_its_samples() {
        let now = Instant::now();
        let t = tracker("a", Some(600));
        for _ in 0..3 {
            t.record(now, 1, Duration::from_secs(10));
        }
        assert!(t.is_slow(now + Duration::from_secs(299)));
        assert!(!t.is_slow(now + Duration::from_secs(300)));
    }

    #[test]
    fn empty_or_instant_streams_are_not_samples() {
        let now = Instant::now();
        let t = tracker("a", Some(600));
        for _ in 0..5 {
            t.record(now, 0, Duration::from_secs(10));
            t.record(now, 10, Duration::ZERO);
        }
        assert_eq!(t.tokens_per_minute(now), None);
    }

    fn make_slow(t: &ThroughputTracker, now: Instant) {
        for _ in 0..3 {
            t.record(now, 1, Duration::from_secs(60));
        }
    }

    #[test]
    fn a_slow_member_refuses_only_while_another_is_fast() {
        let now = Instant::now();
        let (a, b) = (tracker("a", Some(600)), tracker("b", Some(600)));
        let group = ThroughputGroup::new();
        group.join(a.clone());
        group.join(b.clone());
        make_slow(&a, now);
        assert!(should_refuse_as_slow(&a, Some(&group), now));
        assert!(!should_refuse_as_slow(&b, Some(&group), now));
        // Every member slow: nobody refuses, the pool never empties.
        make_slow(&b, now);
        assert!(!should_refuse_as_slow(&a, Some(&group), now));
        assert!(!should_refuse_as_slow(&b, Some(&group), now));
    }

    #[test]
    fn without_a_group_or_as_last_resort_nothing_is_refused() {
        let now = Instant::now();
        let (a, b) = (tracker("a", Some(600)), tracker("b", None));
        make_slow(&a, now);
        assert!(!should_refuse_as_slow(&a, None, now));
        let group = ThroughputGroup::new();
        group.join(a.clone());
        group.join(b);
        assert!(should_refuse_as_slow(&a, Some(&group), now));
        assert!(last_resort(|| !should_refuse_as_slow(
            &a,
            Some(&group),
            now
        )));
        // The mark ends with the call.
        assert!(!is_last_resort());
        assert!(should_refuse_as_slow(&a, Some(&group), now));
    }
}
