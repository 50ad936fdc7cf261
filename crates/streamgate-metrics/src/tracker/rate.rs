//! Requests and tokens per minute over a sliding window of one-second slots.

/// One second of the window.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The second this slot holds, plus one (0 = never used).
    second: u64,
    tokens: u64,
    requests: u64,
}

/// The last 60 seconds, in 60 one-second slots: constant memory, O(1)
/// recording. `second` counts whole seconds from any fixed origin.
#[derive(Clone, Debug)]
pub(crate) struct RateWindow {
    slots: [Slot; 60],
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            slots: [Slot::default(); 60],
        }
    }
}

impl RateWindow {
    /// One request that used `tokens`, finished in `second`.
    pub(crate) fn record(&mut self, second: u64, tokens: u64) {
        let slot = &mut self.slots[(second % 60) as usize];
        if slot.second != second + 1 {
            *slot = Slot {
                second: second + 1,
                ..Slot::default()
            };
        }
        slot.tokens = slot.tokens.saturating_add(tokens);
        slot.requests += 1;
    }

    /// `(tokens, requests)` in the 60 seconds ending with `second`.
    pub(crate) fn per_minute(&self, second: u64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|s| s.second != 0 && s.second <= second + 1 && s.second + 60 > second + 1)
            .fold((0, 0), |(t, r), s| {
                (t.saturating_add(s.tokens), r + s.requests)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_sixty_seconds_only() {
        let mut w = RateWindow::default();
        w.record(0, 100);
        w.record(30, 50);
        w.record(59, 10);
        assert_eq!(w.per_minute(59), (160, 3));
        assert_eq!(w.per_minute(60), (60, 2));
        // Slot reuse: second 61 lands where second 1 would.
        w.record(61, 5);
        assert_eq!(w.per_minute(61), (65, 3));
        assert_eq!(w.per_minute(200), (0, 0));
    }
}
