//! What is measured about one request, fed with `now`; no tower types.

use std::time::{Duration, SystemTime};

use streamgate_core::{BackendId, Outcome, RequestRecord, Usage};
use tokio::time::Instant;

/// Slots in the burst window; with [`BURST_SLOT_NANOS`] they cover one second.
const BURST_SLOTS: usize = 10;
/// The width of one burst slot, in nanoseconds (100 ms).
const BURST_SLOT_NANOS: u32 = 100_000_000;
/// Burst slots per second.
const SLOTS_PER_SEC: u64 = 1_000_000_000 / BURST_SLOT_NANOS as u64;

/// The most output tokens seen in any one-second window of a stream, on a
/// fixed ring of ten 100 ms slots: windows start on slot boundaries (counted
/// from `call()`), so the window is exact to 100 ms. No allocation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BurstWindow {
    /// Tokens per slot. 32 bits (saturating) keep the measurement small,
    /// and it is moved with the response future and body.
    slots: [u32; BURST_SLOTS],
    /// The slot (counted from the start) the ring's head is in.
    current: u64,
    /// Tokens in the ten slots ending at `current`.
    sum: u64,
    max: u64,
}

impl BurstWindow {
    /// Adds `tokens` that arrived `elapsed` after the start.
    pub(crate) fn record(&mut self, elapsed: Duration, tokens: u64) {
        // Integer seconds and a 32-bit division: no 128-bit arithmetic per
        // token.
        let slot = elapsed
            .as_secs()
            .saturating_mul(SLOTS_PER_SEC)
            .saturating_add(u64::from(elapsed.subsec_nanos() / BURST_SLOT_NANOS));
        if slot > self.current {
            if slot - self.current >= BURST_SLOTS as u64 {
                self.slots = [0; BURST_SLOTS];
                self.sum = 0;
            } else {
                for s in self.current + 1..=slot {
                    let i = (s % BURST_SLOTS as u64) as usize;
                    self.sum -= u64::from(self.slots[i]);
                    self.slots[i] = 0;
                }
            }
            self.current = slot;
        }
        self.add(tokens);
    }

    /// Adds `tokens` to the current slot.
    #[inline]
    pub(crate) fn add(&mut self, tokens: u64) {
        let i = (self.current % BURST_SLOTS as u64) as usize;
        let before = self.slots[i];
        let after = before.saturating_add(u32::try_from(tokens).unwrap_or(u32::MAX));
        self.slots[i] = after;
        // At most ten full slots: the sum cannot overflow.
        self.sum += u64::from(after - before);
        self.max = self.max.max(self.sum);
    }

    /// When the current slot ends, counted from the start.
    fn slot_end(&self) -> Duration {
        let next = self.current.saturating_add(1);
        // `next % SLOTS_PER_SEC` is below 10: the product fits in u32.
        Duration::new(
            next / SLOTS_PER_SEC,
            (next % SLOTS_PER_SEC) as u32 * BURST_SLOT_NANOS,
        )
    }

    /// The most tokens in one window, as tokens per second; `None` before any
    /// token.
    pub(crate) fn tokens_per_sec(&self) -> Option<f64> {
        (self.max > 0).then_some(self.max as f64)
    }
}

/// Which "first" a chunk was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Firsts {
    /// The first chunk of any kind, with the time since the start.
    pub(crate) chunk: Option<Duration>,
    /// The first content chunk, with the time since the start.
    pub(crate) content: Option<Duration>,
}

/// Everything measured about one request so far.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    start: Instant,
    started_at: SystemTime,
    estimated_tokens: u64,
    first_chunk: Option<Duration>,
    first_content: Option<Duration>,
    /// The last chunk with content or output tokens, kept as an instant:
    /// the elapsed time is only needed at the end.
    last_chunk: Option<Instant>,
    usage: Option<Usage>,
    streamed_output_tokens: u64,
    chunks: u64,
    burst: BurstWindow,
    /// When the burst window's current slot ends: tokens before it go
    /// straight into that slot, so most chunks need no elapsed time.
    burst_slot_end: Instant,
}

/// When `burst`'s current slot ends, for a request started at `start`; the
/// start itself if that is past the clock's range, so that every token
/// then takes the exact path.
fn slot_end(start: Instant, burst: &BurstWindow) -> Instant {
    start.checked_add(burst.slot_end()).unwrap_or(start)
}

impl Measurement {
    /// A request sent at `now` (`started_at` on the wall clock).
    pub(crate) fn start(now: Instant, started_at: SystemTime, estimated_tokens: u64) -> Self {
        Self {
            start: now,
            started_at,
            estimated_tokens,
            first_chunk: None,
            first_content: None,
            last_chunk: None,
            usage: None,
            streamed_output_tokens: 0,
            chunks: 0,
            burst: BurstWindow::default(),
            burst_slot_end: slot_end(now, &BurstWindow::default()),
        }
    }

    /// A chunk arrived; `now` reads the time, only when the chunk needs it:
    /// the first chunk, the first content, and chunks that carry content or
    /// output tokens (the output's end and the burst window). A chunk with
    /// none of these (a trailing usage report, a finish marker) is counted
    /// without reading the clock.
    #[inline]
    pub(crate) fn chunk(
        &mut self,
        now: impl FnOnce() -> Instant,
        is_content: bool,
        usage: Option<Usage>,
        output_tokens: Option<u64>,
    ) -> Firsts {
        let mut firsts = Firsts::default();
        self.chunks += 1;
        Usage::merge_option(&mut self.usage, usage);
        let tokens = output_tokens.unwrap_or(0);
        // Output: it ends the output duration and enters the burst window.
        let output = is_content || tokens > 0;
        let first = self.first_chunk.is_none() || (is_content && self.first_content.is_none());
        if !first && !output {
            return firsts;
        }
        let now = now();
        if first {
            let elapsed = now.saturating_duration_since(self.start);
            if self.first_chunk.is_none() {
                self.first_chunk = Some(elapsed);
                firsts.chunk = Some(elapsed);
            }
            if is_content && self.first_content.is_none() {
                self.first_content = Some(elapsed);
                firsts.content = Some(elapsed);
            }
        }
        if !output {
            return firsts;
        }
        self.last_chunk = Some(now);
        if tokens > 0 {
            self.streamed_output_tokens = self.streamed_output_tokens.saturating_add(tokens);
            if now < self.burst_slot_end {
                self.burst.add(tokens);
            } else {
                self.burst
                    .record(now.saturating_duration_since(self.start), tokens);
                self.burst_slot_end = slot_end(self.start, &self.burst);
            }
        }
        firsts
    }

    /// The record of a request that ended at `now` with `outcome`.
    pub(crate) fn record<'a>(
        &self,
        backend: &'a BackendId,
        model: &'a str,
        now: Instant,
        outcome: Outcome,
    ) -> RequestRecord<'a> {
        let output_duration = match (self.first_content, self.last_chunk) {
            (Some(first), Some(last)) => Some(
                last.saturating_duration_since(self.start)
                    .saturating_sub(first),
            ),
            _ => None,
        };
        RequestRecord {
            backend,
            model,
            started_at: self.started_at,
            estimated_tokens: self.estimated_tokens,
            time_to_first_chunk: self.first_chunk,
            time_to_first_content: self.first_content,
            duration: now.saturating_duration_since(self.start),
            ended: now,
            output_duration,
            usage: self.usage,
            streamed_output_tokens: self.streamed_output_tokens,
            burst_tokens_per_sec: self.burst.tokens_per_sec(),
            chunks: self.chunks,
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_is_the_most_tokens_in_one_second() {
        let mut w = BurstWindow::default();
        // 5 tokens in the first second, then 8 within 0.9 s, then a slow tail.
        for t in [0, 200, 400, 600, 800] {
            w.record(ms(t), 1);
        }
        for t in 0..8 {
            w.record(ms(1500 + t * 100), 1);
        }
        w.record(ms(5000), 1);
        assert_eq!(w.tokens_per_sec(), Some(8.0));
    }

    #[test]
    fn burst_window_slides_and_forgets_old_slots() {
        let mut w = BurstWindow::default();
        w.record(ms(0), 3);
        w.record(ms(950), 3); // same window: 6
        w.record(ms(1000), 3); // slot 10 evicts slot 0: 6
        assert_eq!(w.tokens_per_sec(), Some(6.0));
        w.record(ms(1050), 1); // 7
        assert_eq!(w.tokens_per_sec(), Some(7.0));
        w.record(ms(60_000), 2); // long gap clears everything
        assert_eq!(w.tokens_per_sec(), Some(7.0));
    }

    #[test]
    fn measurement_burst_matches_the_window_fed_every_token() {
        let start = Instant::now();
        let mut m = Measurement::start(start, SystemTime::UNIX_EPOCH, 0);
        let mut w = BurstWindow::default();
        // Irregular gaps, on and across slot boundaries, and a long pause.
        let mut t = 0;
        for i in 0..400u64 {
            t += match i % 7 {
                0 => 100,
                1 => 0,
                2 => 37,
                3 => 99,
                4 => 1,
                5 if i % 50 == 5 => 2_500,
                _ => 13,
            };
            let tokens = 1 + i % 3;
            m.chunk(|| start + ms(t), true, None, Some(tokens));
            w.record(ms(t), tokens);
        }
        let backend = BackendId::new("b");
        let r = m.record(&backend, "m", start + ms(t), Outcome::Success);
        assert_eq!(r.burst_tokens_per_sec, w.tokens_per_sec());
        assert!(r.burst_tokens_per_sec.is_some());
    }

    #[test]
    fn burst_is_none_without_tokens() {
        assert_eq!(BurstWindow::default().tokens_per_sec(), None);
    }

    #[test]
    fn first_chunk_and_first_content_are_reported_once() {
        let start = Instant::now();
        let mut m = Measurement::start(start, SystemTime::UNIX_EPOCH, 7);
        let f = m.chunk(|| start + ms(10), false, None, None);
        assert_eq!(
            f,
            Firsts {
                chunk: Some(ms(10)),
                content: None
            }
        );
        let f = m.chunk(|| start + ms(30), true, None, Some(1));
        assert_eq!(
            f,
            Firsts {
                chunk: None,
                content: Some(ms(30))
            }
        );
        let f = m.chunk(|| start + ms(50), true, None, Some(1));
        assert_eq!(f, Firsts::default());
        let backend = BackendId::new("b");
        let r = m.record(&backend, "m", start + ms(70), Outcome::Success);
        assert_eq!(r.duration, ms(70));
        assert_eq!(r.output_duration, Some(ms(20)));
        assert_eq!(r.chunks, 3);
        assert_eq!(r.streamed_output_tokens, 2);
        assert_eq!(r.estimated_tokens, 7);
    }

    #[test]
    fn a_chunk_without_content_or_tokens_after_the_first_reads_no_clock() {
        let start = Instant::now();
        let mut m = Measurement::start(start, SystemTime::UNIX_EPOCH, 0);
        m.chunk(|| start + ms(10), false, None, None);
        m.chunk(|| start + ms(20), true, None, Some(3));
        // A finish marker and a usage report: counted, merged, not timed.
        let untimed = || -> Instant { panic!("read the clock for an untimed chunk") };
        m.chunk(untimed, false, None, Some(0));
        m.chunk(untimed, false, Some(Usage::new(4, 3)), None);
        let backend = BackendId::new("b");
        let r = m.record(&backend, "m", start + ms(900), Outcome::Success);
        assert_eq!(r.chunks, 4);
        assert_eq!(r.usage, Some(Usage::new(4, 3)));
        // The output ends with its last tokens, not with the usage report.
        assert_eq!(r.output_duration, Some(Duration::ZERO));
    }
}
