//! The one sliding window of tokens and requests per minute.
//!
//! Every "per minute" figure of the workspace (the TPM budget gate's meter,
//! the tracker's tokens and requests per minute, and the shared window a
//! fleet keeps in Redis) counts on these semantics, so "current TPM" is one
//! number everywhere:
//!
//! Time is cut into whole seconds counted from an origin the owner chooses
//! (the clock is a parameter: every method takes the second). What was
//! added during second `s` counts while the current second `n` satisfies
//! `n - s <= 60`: the window is the current, partial second plus the 60
//! whole seconds before it, [`SLOTS`] one-second slots. So an added token
//! is counted for at least 60 s and less than 61 s: the window never
//! under-counts the last minute, and over-counts by at most what was added
//! in the one second just before it, which for a budget is the safe side.
//! It slides by one second at a time and never resets at a minute boundary.
//!
//! Memory is constant, adding is O(1) (moving forward clears at most
//! [`SLOTS`] slots once) and reading is O(1) at the newest second, at most
//! [`SLOTS`] steps at a later one. Not thread-safe: an owner puts it behind
//! its own lock.
//!
//! ```
//! use streamgate_core::window::SlidingWindow;
//!
//! let mut window = SlidingWindow::new();
//! window.add(0, 100, 1);
//! window.add(30, 50, 1);
//! assert_eq!(window.totals(60), (150, 2));
//! // Second 0 leaves the window when second 61 starts.
//! assert_eq!(window.totals(61), (50, 1));
//! ```

use std::time::Duration;

/// Slots in the window: the current second plus the 60 before it.
pub const SLOTS: usize = 61;

/// The nominal length of the window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Tokens and requests over the last minute, in one-second slots (see the
/// [module docs](self) for the exact semantics).
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    /// The second of the newest slot.
    head: u64,
    tokens: [u64; SLOTS],
    requests: [u64; SLOTS],
    total_tokens: u64,
    total_requests: u64,
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self::new()
    }
}

const fn slot(second: u64) -> usize {
    (second % SLOTS as u64) as usize
}

impl SlidingWindow {
    /// An empty window at second 0.
    pub const fn new() -> Self {
        Self {
            head: 0,
            tokens: [0; SLOTS],
            requests: [0; SLOTS],
            total_tokens: 0,
            total_requests: 0,
        }
    }

    /// Moves the window to `second`, expiring what left it. A second
    /// before the newest one changes nothing (late additions land in the
    /// newest slot).
    pub fn advance(&mut self, second: u64) {
        if second <= self.head {
            return;
        }
        let steps = (second - self.head).min(SLOTS as u64);
        for step in 1..=steps {
            let i = slot(self.head + step);
            self.total_tokens = self.total_tokens.saturating_sub(self.tokens[i]);
            self.total_requests = self.total_requests.saturating_sub(self.requests[i]);
            self.tokens[i] = 0;
            self.requests[i] = 0;
        }
        self.head = second;
    }

    /// Adds `tokens` and `requests` in `second` (or in the newest slot, if
    /// `second` is before it). Saturates rather than overflows.
    pub fn add(&mut self, second: u64, tokens: u64, requests: u64) {
        self.advance(second);
        let i = slot(self.head);
        self.tokens[i] = self.tokens[i].saturating_add(tokens);
        self.requests[i] = self.requests[i].saturating_add(requests);
        self.total_tokens = self.total_tokens.saturating_add(tokens);
        self.total_requests = self.total_requests.saturating_add(requests);
    }

    /// `(tokens, requests)` in the window as of `second`, without moving it.
    pub fn totals(&self, second: u64) -> (u64, u64) {
        let (mut tokens, mut requests) = (self.total_tokens, self.total_requests);
        if second > self.head {
            let steps = (second - self.head).min(SLOTS as u64);
            for step in 1..=steps {
                let i = slot(self.head + step);
                tokens = tokens.saturating_sub(self.tokens[i]);
                requests = requests.saturating_sub(self.requests[i]);
            }
        }
        (tokens, requests)
    }

    /// The first second at which expiry alone has freed at least `need` of
    /// the tokens in the window at its newest second, oldest slot first;
    /// `None` if the window holds fewer.
    pub fn freed_by(&self, need: u64) -> Option<u64> {
        let oldest = self.head.saturating_sub(SLOTS as u64 - 1);
        let mut freed = 0u64;
        for second in oldest..=self.head {
            freed = freed.saturating_add(self.tokens[slot(second)]);
            if freed >= need {
                // Second `s` leaves the window when second `s + 61` starts.
                return Some(second + SLOTS as u64);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counts_the_current_second_and_the_sixty_before_it() {
        let mut w = SlidingWindow::new();
        w.add(0, 100, 1);
        w.add(30, 50, 1);
        w.add(59, 10, 1);
        assert_eq!(w.totals(59), (160, 3));
        assert_eq!(w.totals(60), (160, 3));
        assert_eq!(w.totals(61), (60, 2));
        // Slot reuse: second 61 lands where second 0 was.
        w.add(61, 5, 1);
        assert_eq!(w.totals(61), (65, 3));
        assert_eq!(w.totals(200), (0, 0));
    }

    #[test]
    fn a_late_addition_lands_in_the_newest_slot() {
        let mut w = SlidingWindow::new();
        w.add(10, 1, 1);
        w.add(3, 2, 1);
        assert_eq!(w.totals(70), (3, 2));
        assert_eq!(w.totals(71), (0, 0));
    }

    #[test]
    fn a_long_silence_clears_everything() {
        let mut w = SlidingWindow::new();
        for s in 0..61 {
            w.add(s, 1, 1);
        }
        w.advance(10_000);
        assert_eq!(w.totals(10_000), (0, 0));
        assert_eq!(w.freed_by(1), None);
    }

    #[test]
    fn freed_by_names_the_second_the_oldest_tokens_leave() {
        let mut w = SlidingWindow::new();
        w.add(5, 30, 1);
        w.add(20, 30, 1);
        assert_eq!(w.freed_by(30), Some(66));
        assert_eq!(w.freed_by(31), Some(81));
        assert_eq!(w.freed_by(61), None);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut w = SlidingWindow::new();
        w.add(0, u64::MAX, 1);
        w.add(0, u64::MAX, 1);
        w.add(1, u64::MAX, 1);
        assert_eq!(w.totals(1).0, u64::MAX);
        assert_eq!(w.totals(62), (0, 0));
        w.advance(1_000);
        assert_eq!(w.totals(1_000), (0, 0));
    }

    proptest! {
        /// Against a brute-force count over every addition ever made.
        #[test]
        fn totals_match_a_brute_force_count(
            steps in proptest::collection::vec((0u64..5, 0u64..1_000), 1..200),
            probe in 0u64..100,
        ) {
            let mut w = SlidingWindow::new();
            let mut added = Vec::new();
            let mut second = 0;
            for (gap, tokens) in steps {
                second += gap;
                w.add(second, tokens, 1);
                added.push((second, tokens));
            }
            let at = second + probe;
            let live = added.iter().filter(|(s, _)| at - s <= 60);
            let expected = live.fold((0, 0), |(t, r), (_, n)| (t + n, r + 1));
            prop_assert_eq!(w.totals(at), expected);
        }
    }
}
