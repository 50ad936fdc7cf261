//! Which deadline applies when: pure arithmetic on instants, no tower or
//! timer types, so the rules are tested on their own.

use std::time::Duration;

use streamgate_core::{StreamTimeout, TimeoutKind};
use tokio::time::Instant;

use super::TimeoutConfig;

/// One armed deadline: when it expires and what to report then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// When it expires.
    pub(crate) at: Instant,
    /// Which deadline it is.
    pub(crate) kind: TimeoutKind,
    /// The configured duration, for the error.
    pub(crate) after: Duration,
}

impl Deadline {
    fn new(kind: TimeoutKind, from: Instant, after: Duration) -> Self {
        Self {
            at: add(from, after),
            kind,
            after,
        }
    }

    /// The error to report when it expires.
    pub(crate) fn error(&self) -> StreamTimeout {
        StreamTimeout {
            kind: self.kind,
            after: self.after,
        }
    }

    /// The earlier of two deadlines; on a tie the first one given.
    fn earliest(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) if other.at < self.at => other,
            _ => self,
        }
    }
}

/// The deadlines of one request, fixed when it is called. Small (the
/// configuration and the start), since the response carries it until its
/// first wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    config: TimeoutConfig,
    start: Instant,
}

impl Schedule {
    /// The deadlines of a request called at `start`.
    pub(crate) fn new(config: TimeoutConfig, start: Instant) -> Self {
        Self { config, start }
    }

    /// The total deadline, if one is configured.
    fn total(&self) -> Option<Deadline> {
        self.config
            .total()
            .map(|after| Deadline::new(TimeoutKind::Total, self.start, after))
    }

    /// The deadline until the first content chunk: the first-content one,
    /// unless the total deadline is earlier. Pings and other non-content
    /// chunks never move it.
    pub(crate) fn before_content(&self) -> Deadline {
        Deadline::new(
            TimeoutKind::FirstContent,
            self.start,
            self.config.first_content(),
        )
        .earliest(self.total())
    }

    /// The deadline while waiting for more after a content chunk was handed
    /// out at `now`: the idle gap, unless the total deadline is earlier.
    /// `None` when neither is configured.
    pub(crate) fn after_content(&self, now: Instant) -> Option<Deadline> {
        match self.config.idle() {
            Some(gap) => Some(Deadline::new(TimeoutKind::Idle, now, gap).earliest(self.total())),
            None => self.total(),
        }
    }

    /// Whether anything is enforced after the first content.
    pub(crate) fn watches_body(&self) -> bool {
        self.config.idle().is_some() || self.config.total().is_some()
    }
}

/// `from + after`, saturating to a far-future instant instead of panicking
/// when a configured duration is too large to represent.
fn add(from: Instant, after: Duration) -> Instant {
    streamgate_core::time::instant_after(from, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(first: u64, idle: Option<u64>, total: Option<u64>) -> TimeoutConfig {
        let mut builder = TimeoutConfig::builder(ms(first));
        if let Some(idle) = idle {
            builder = builder.idle(ms(idle));
        }
        if let Some(total) = total {
            builder = builder.total(ms(total));
        }
        match builder.build() {
            Ok(config) => config,
            Err(e) => panic!("test config rejected: {e}"),
        }
    }

    #[test]
    fn first_content_deadline_counts_from_call() {
        let start = Instant::now();
        let schedule = Schedule::new(config(200, None, None), start);
        let deadline = schedule.before_content();
        assert_eq!(deadline.at, start + ms(200));
        assert_eq!(
            deadline.error(),
            StreamTimeout {
                kind: TimeoutKind::FirstContent,
                after: ms(200)
            }
        );
    }

    #[test]
    fn total_equal_to_first_content_reports_first_content() {
        let start = Instant::now();
        let schedule = Schedule::new(config(200, None, Some(200)), start);
        assert_eq!(schedule.before_content().kind, TimeoutKind::FirstContent);
    }

    #[test]
    fn idle_gap_restarts_from_each_content_chunk() {
        let start = Instant::now();
        let schedule = Schedule::new(config(200, Some(50), None), start);
        let first = schedule.after_content(start + ms(120));
        let later = schedule.after_content(start + ms(400));
        assert_eq!(
            first.map(|d| (d.at, d.kind)),
            Some((start + ms(170), TimeoutKind::Idle))
        );
        assert_eq!(later.map(|d| d.at), Some(start + ms(450)));
    }

    #[test]
    fn total_deadline_wins_once_it_is_nearer_than_the_idle_gap() {
        let start = Instant::now();
        let schedule = Schedule::new(config(200, Some(50), Some(1000)), start);
        let early = schedule.after_content(start + ms(300));
        let late = schedule.after_content(start + ms(980));
        assert_eq!(early.map(|d| d.kind), Some(TimeoutKind::Idle));
        assert_eq!(
            late.map(|d| (d.at, d.kind, d.after)),
            Some((start + ms(1000), TimeoutKind::Total, ms(1000)))
        );
    }

    #[test]
    fn body_is_unwatched_without_idle_or_total() {
        let start = Instant::now();
        let schedule = Schedule::new(config(200, None, None), start);
        assert!(!schedule.watches_body());
        assert_eq!(schedule.after_content(start), None);
        let schedule = Schedule::new(config(200, None, Some(300)), start);
        assert!(schedule.watches_body());
        assert_eq!(
            schedule.after_content(start + ms(250)).map(|d| d.at),
            Some(start + ms(300))
        );
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let start = Instant::now();
        let config = TimeoutConfig::builder(Duration::MAX)
            .idle(Duration::MAX)
            .build();
        let Ok(config) = config else {
            panic!("rejected")
        };
        let schedule = Schedule::new(config, start);
        assert!(schedule.before_content().at > start + Duration::from_secs(86_400 * 365));
        assert!(schedule.after_content(start).is_some_and(|d| d.at > start));
    }
}
