#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use streamgate_core::BreakerState;
use tokio::time::Instant;

use super::*;
use crate::config::{OpenWait, WindowKind};

const WAIT: Duration = Duration::from_secs(30);

fn config() -> MachineConfig {
    MachineConfig {
        window: WindowKind::Count(10),
        failure_rate: None,
        slow_rate: None,
        minimum_calls: 1,
        consecutive_failures: None,
        failures_within: None,
        open_wait: OpenWait::Fixed(WAIT),
        probes: 1,
        half_open_max_wait: None,
        minimum_open: Duration::from_millis(1),
        max_wait: Duration::from_secs(3600),
        slow_probe_fails: false,
    }
}

/// A machine on a fake clock that starts at `t0`.
struct Test {
    m: Machine,
    t0: Instant,
}

impl Test {
    fn new(config: MachineConfig) -> Self {
        let t0 = Instant::now();
        Self {
            m: Machine::new(config, t0),
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn admit(&self, ms: u64) -> Ticket {
        match self.m.admit(self.at(ms)).0 {
            Admission::Admit(ticket) => ticket,
            Admission::Reject { .. } => panic!("rejected at {ms} ms"),
        }
    }

    fn rejected_for(&self, ms: u64) -> Option<Option<Duration>> {
        match self.m.admit(self.at(ms)).0 {
            Admission::Admit(_) => None,
            Admission::Reject { retry_after } => Some(retry_after),
        }
    }

    fn call(&self, ms: u64, verdict: Verdict, slow: bool) -> Option<Transition> {
        let ticket = self.admit(ms);
        self.m.record(ticket, verdict, slow, self.at(ms))
    }

    fn ok(&self, ms: u64) -> Option<Transition> {
        self.call(ms, Verdict::Success, false)
    }

    fn fail(&self, ms: u64) -> Option<Transition> {
        self.call(ms, FAIL, false)
    }

    fn state(&self) -> BreakerState {
        self.m.state_at(self.t0)
    }

    fn open_for(&self, ms: u64) -> Option<Duration> {
        self.m.snapshot(self.at(ms)).open_for
    }
}

const FAIL: Verdict = Verdict::Failure { retry_after: None };

fn opened() -> Option<Transition> {
    Some(Transition {
        from: BreakerState::Closed,
        to: BreakerState::Open,
        wait_capped: false,
    })
}

fn moved(from: BreakerState, to: BreakerState) -> Option<Transition> {
    Some(Transition {
        from,
        to,
        wait_capped: false,
    })
}

/// Opens a fresh machine (consecutive-failure trigger of 1) at `ms`.
fn open_at(config: MachineConfig, ms: u64) -> Test {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        ..config
    });
    assert_eq!(t.fail(ms), opened());
    t
}

#[test]
fn failure_rate_threshold_is_crossed_only_after_the_minimum_calls() {
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    // 100 % failures, but too few calls to judge.
    assert_eq!(t.fail(0), None);
    assert_eq!(t.fail(1), None);
    assert_eq!(t.fail(2), None);
    assert_eq!(t.state(), BreakerState::Closed);
    // The fourth call makes the window count: 3 of 4 failed.
    assert_eq!(t.ok(3), opened());
    assert_eq!(t.rejected_for(3), Some(Some(WAIT)));
}

#[test]
fn failure_rate_threshold_is_inclusive() {
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    assert_eq!(t.ok(0), None);
    assert_eq!(t.fail(1), None);
    assert_eq!(t.ok(2), None);
    // Exactly 50 % of 4.
    assert_eq!(t.fail(3), opened());

    // 30 % of 10 is exactly 3 failures, without floating-point drift.
    let t = Test::new(MachineConfig {
        failure_rate: Some(3_000),
        minimum_calls: 10,
        ..config()
    });
    for ms in 0..7 {
        assert_eq!(t.ok(ms), None);
    }
    assert_eq!(t.fail(7), None);
    assert_eq!(t.fail(8), None);
    assert_eq!(t.fail(9), opened());
}

#[test]
fn rate_below_the_threshold_stays_closed() {
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    for ms in 0..3 {
        assert_eq!(t.ok(ms), None);
    }
    // 1 of 4, then 2 of 5: under 50 %.
    assert_eq!(t.fail(3), None);
    assert_eq!(t.fail(4), None);
    assert_eq!(t.state(), BreakerState::Closed);
}

#[test]
fn slow_calls_open_it_although_the_failure_rate_is_low() {
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        slow_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    assert_eq!(t.call(0, Verdict::Success, true), None);
    assert_eq!(t.ok(1), None);
    assert_eq!(t.call(2, Verdict::Success, true), None);
    // No failure at all; 2 of 4 calls were slow.
    assert_eq!(t.ok(3), opened());
    let snapshot = t.m.snapshot(t.at(3));
    assert_eq!((snapshot.counts.failures, snapshot.counts.slow), (0, 2));
}

#[test]
fn open_turns_half_open_only_after_the_wait() {
    let t = open_at(config(), 0);
    let wait_ms = WAIT.as_millis() as u64;
    assert_eq!(
        t.rejected_for(wait_ms - 1),
        Some(Some(Duration::from_millis(1)))
    );
    assert_eq!(t.state(), BreakerState::Open);
    let (admission, transition) = t.m.admit(t.at(wait_ms));
    assert!(matches!(admission, Admission::Admit(Ticket::Probe(_))));
    assert_eq!(
        transition,
        moved(BreakerState::Open, BreakerState::HalfOpen)
    );
    assert_eq!(t.state(), BreakerState::HalfOpen);
}

#[test]
fn half_open_admits_exactly_the_permitted_probes_and_a_released_one_admits_another() {
    let t = open_at(
        MachineConfig {
            probes: 2,
            ..config()
        },
        0,
    );
    let after = WAIT.as_millis() as u64;
    let first = t.admit(after);
    let _second = t.admit(after);
    assert_eq!(t.rejected_for(after), Some(None));
    assert_eq!(t.rejected_for(after + 5), Some(None));
    t.m.release(first);
    let third = t.admit(after + 10);
    assert!(matches!(third, Ticket::Probe(_)));
    assert_eq!(t.rejected_for(after + 10), Some(None));
    assert_eq!(t.m.snapshot(t.at(after + 10)).probes_in_flight, 2);
}

#[test]
fn a_failing_probe_reopens_even_after_other_probes_succeeded() {
    let t = open_at(
        MachineConfig {
            probes: 3,
            ..config()
        },
        0,
    );
    let after = WAIT.as_millis() as u64;
    let probes = [t.admit(after), t.admit(after), t.admit(after)];
    let now = t.at(after + 100);
    assert_eq!(t.m.record(probes[0], Verdict::Success, false, now), None);
    assert_eq!(t.m.record(probes[1], Verdict::Success, false, now), None);
    assert_eq!(
        t.m.record(probes[2], FAIL, false, now),
        moved(BreakerState::HalfOpen, BreakerState::Open)
    );
    assert_eq!(t.open_for(after + 100), Some(WAIT));
}

#[test]
fn the_permitted_probe_successes_close_it_and_reset_the_window() {
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        minimum_calls: 2,
        consecutive_failures: Some(3),
        probes: 2,
        ..config()
    });
    assert_eq!(t.ok(0), None);
    assert_eq!(t.fail(1), opened());
    let after = 1 + WAIT.as_millis() as u64;
    let probes = [t.admit(after), t.admit(after)];
    let now = t.at(after + 50);
    assert_eq!(t.m.record(probes[0], Verdict::Success, false, now), None);
    assert_eq!(t.state(), BreakerState::HalfOpen);
    assert_eq!(
        t.m.record(probes[1], Verdict::Success, false, now),
        moved(BreakerState::HalfOpen, BreakerState::Closed)
    );
    let snapshot = t.m.snapshot(now);
    assert_eq!(snapshot.counts, Counts::default());
    assert_eq!((snapshot.consecutive_failures, snapshot.opens), (0, 0));
    // The old failure is gone: one new failure alone is 100 % of 1 call,
    // below the minimum of 2.
    assert_eq!(t.fail(after + 60), None);
    assert_eq!(t.state(), BreakerState::Closed);
}

#[test]
fn ignored_errors_release_the_probe_and_change_nothing() {
    let t = open_at(config(), 0);
    let after = WAIT.as_millis() as u64;
    let probe = t.admit(after);
    assert_eq!(t.m.record(probe, Verdict::Ignore, false, t.at(after)), None);
    assert_eq!(t.state(), BreakerState::HalfOpen);
    assert!(matches!(t.admit(after + 1), Ticket::Probe(_)));

    // While closed, an ignored error neither counts nor breaks a streak.
    let t = Test::new(MachineConfig {
        failure_rate: Some(5_000),
        consecutive_failures: Some(2),
        minimum_calls: 1,
        ..config()
    });
    assert_eq!(t.ok(0), None);
    assert_eq!(t.call(1, Verdict::Ignore, false), None);
    let snapshot = t.m.snapshot(t.at(1));
    assert_eq!((snapshot.counts.calls, snapshot.counts.failures), (1, 0));
}

#[test]
fn forced_open_never_moves_to_half_open() {
    let t = Test::new(config());
    assert_eq!(
        t.m.force_open(),
        moved(BreakerState::Closed, BreakerState::ForcedOpen)
    );
    assert_eq!(t.rejected_for(0), Some(None));
    assert_eq!(t.rejected_for(86_400_000), Some(None));
    assert_eq!(t.state(), BreakerState::ForcedOpen);
    assert_eq!(
        t.m.reset(),
        moved(BreakerState::ForcedOpen, BreakerState::Closed)
    );
    assert!(matches!(t.admit(86_400_001), Ticket::Normal(_)));
}

#[test]
fn disabled_lets_everything_pass_and_records_nothing() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        failure_rate: Some(100),
        ..config()
    });
    assert_eq!(
        t.m.disable(),
        moved(BreakerState::Closed, BreakerState::Disabled)
    );
    for ms in 0..5 {
        assert_eq!(t.admit(ms), Ticket::Passthrough);
        assert_eq!(t.fail(ms), None);
    }
    let snapshot = t.m.snapshot(t.at(5));
    assert_eq!(snapshot.counts, Counts::default());
    assert_eq!(snapshot.consecutive_failures, 0);
}

#[test]
fn metrics_only_records_and_reports_but_never_rejects() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(2),
        ..config()
    });
    assert_eq!(
        t.m.metrics_only(),
        moved(BreakerState::Closed, BreakerState::MetricsOnly)
    );
    assert_eq!(t.fail(0), None);
    // The circuit opens and says so, while the mode stays metrics-only.
    assert_eq!(t.fail(1), opened());
    assert_eq!(t.state(), BreakerState::MetricsOnly);
    assert_eq!(t.m.snapshot(t.at(1)).circuit, BreakerState::Open);
    // What it would reject passes, unrecorded.
    assert_eq!(t.admit(2), Ticket::Shadow);
    assert_eq!(t.m.snapshot(t.at(2)).rejected, 0);
    // After the wait the probe is judged as usual and closes it.
    let after = 1 + WAIT.as_millis() as u64;
    let probe = t.admit(after);
    assert!(matches!(probe, Ticket::Probe(_)));
    assert_eq!(t.admit(after), Ticket::Shadow);
    assert_eq!(
        t.m.record(probe, Verdict::Success, false, t.at(after)),
        moved(BreakerState::HalfOpen, BreakerState::Closed)
    );
    assert_eq!(
        t.m.reset(),
        moved(BreakerState::MetricsOnly, BreakerState::Closed)
    );
}

#[test]
fn open_wait_grows_with_each_reopen_and_starts_over_after_a_close() {
    let t = open_at(
        MachineConfig {
            open_wait: OpenWait::doubling(Duration::from_secs(1), Duration::from_secs(4)),
            ..config()
        },
        0,
    );
    assert_eq!(t.open_for(0), Some(Duration::from_secs(1)));
    let mut now = 0;
    for expected in [2, 4, 4] {
        now += 10_000;
        let probe = t.admit(now);
        t.m.record(probe, FAIL, false, t.at(now));
        assert_eq!(t.open_for(now), Some(Duration::from_secs(expected)));
    }
    now += 10_000;
    let probe = t.admit(now);
    t.m.record(probe, Verdict::Success, false, t.at(now));
    assert_eq!(t.state(), BreakerState::Closed);
    assert_eq!(t.fail(now), opened());
    assert_eq!(t.open_for(now), Some(Duration::from_secs(1)));
}

#[test]
fn rate_limit_reset_opens_exactly_until_then() {
    let t = Test::new(config());
    let reset = Duration::from_secs(17);
    assert_eq!(t.call(0, Verdict::OpenUntil(reset), false), opened());
    assert_eq!(t.rejected_for(16_999), Some(Some(Duration::from_millis(1))));
    assert!(matches!(t.admit(17_000), Ticket::Probe(_)));
}

#[test]
fn a_tripping_error_that_says_when_to_retry_opens_until_then() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        ..config()
    });
    let failure = Verdict::Failure {
        retry_after: Some(Duration::from_secs(5)),
    };
    assert_eq!(t.call(0, failure, false), opened());
    assert_eq!(t.open_for(0), Some(Duration::from_secs(5)));
}

#[test]
fn a_rate_limited_probe_reopens_until_the_reset() {
    let t = open_at(config(), 0);
    let after = WAIT.as_millis() as u64;
    let probe = t.admit(after);
    let reset = Duration::from_secs(90);
    assert_eq!(
        t.m.record(probe, Verdict::OpenUntil(reset), false, t.at(after)),
        moved(BreakerState::HalfOpen, BreakerState::Open)
    );
    assert_eq!(t.open_for(after), Some(reset));
}

#[test]
fn count_window_keeps_only_the_last_n_calls() {
    let t = Test::new(MachineConfig {
        window: WindowKind::Count(4),
        failure_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    for ms in 0..6 {
        assert_eq!(t.ok(ms), None);
    }
    assert_eq!(t.fail(6), None);
    // 2 of the last 4 failed (2 of all 8 would be 25 %).
    assert_eq!(t.fail(7), opened());
}

#[test]
fn time_buckets_expire() {
    let t = Test::new(MachineConfig {
        window: WindowKind::Time(10),
        failure_rate: Some(5_000),
        minimum_calls: 2,
        ..config()
    });
    assert_eq!(t.fail(0), None);
    // Ten seconds later the first failure has left the window: 1 of 3.
    assert_eq!(t.ok(10_000), None);
    assert_eq!(t.ok(10_001), None);
    assert_eq!(t.fail(10_002), None);
    assert_eq!(t.state(), BreakerState::Closed);
    // A second failure in the window makes it 2 of 4.
    assert_eq!(t.fail(19_999), opened());
}

#[test]
fn consecutive_failures_are_reset_by_a_success() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(3),
        ..config()
    });
    assert_eq!(t.fail(0), None);
    assert_eq!(t.fail(1), None);
    assert_eq!(t.ok(2), None);
    assert_eq!(t.fail(3), None);
    assert_eq!(t.fail(4), None);
    assert_eq!(t.m.snapshot(t.at(4)).consecutive_failures, 2);
    assert_eq!(t.fail(5), opened());
}

#[test]
fn k_failures_within_the_window_open_it() {
    let t = Test::new(MachineConfig {
        failures_within: Some((3, Duration::from_secs(60))),
        ..config()
    });
    assert_eq!(t.fail(0), None);
    assert_eq!(t.fail(30_000), None);
    // 0 s and 60.001 s are more than 60 s apart.
    assert_eq!(t.fail(60_001), None);
    // 30 s to 90 s: exactly 60 s apart, inclusive.
    assert_eq!(t.fail(90_000), opened());
}

#[test]
fn half_open_max_wait_reopens_and_voids_the_late_probe() {
    let t = open_at(
        MachineConfig {
            half_open_max_wait: Some(Duration::from_secs(10)),
            ..config()
        },
        0,
    );
    let after = WAIT.as_millis() as u64;
    let late = t.admit(after);
    assert_eq!(t.rejected_for(after + 9_999), Some(None));
    let (admission, transition) = t.m.admit(t.at(after + 10_000));
    assert_eq!(
        admission,
        Admission::Reject {
            retry_after: Some(WAIT)
        }
    );
    assert_eq!(
        transition,
        moved(BreakerState::HalfOpen, BreakerState::Open)
    );
    // The late probe's success says nothing about the new open period.
    assert_eq!(
        t.m.record(late, Verdict::Success, false, t.at(after + 10_001)),
        None
    );
    assert_eq!(t.state(), BreakerState::Open);
}

#[test]
fn outcomes_of_calls_admitted_before_a_transition_are_ignored() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        ..config()
    });
    let old = t.admit(0);
    assert_eq!(t.fail(1), opened());
    assert_eq!(t.m.record(old, FAIL, false, t.at(2)), None);
    let after = 1 + WAIT.as_millis() as u64;
    let probe = t.admit(after);
    assert_eq!(
        t.m.record(probe, Verdict::Success, false, t.at(after)),
        moved(BreakerState::HalfOpen, BreakerState::Closed)
    );
    // Still from the first closed period: ignored.
    assert_eq!(t.m.record(old, FAIL, false, t.at(after + 1)), None);
    assert_eq!(t.state(), BreakerState::Closed);
}

#[test]
fn a_slow_probe_counts_as_failed_when_slow_calls_are_tracked() {
    let t = open_at(
        MachineConfig {
            slow_rate: Some(5_000),
            slow_probe_fails: true,
            ..config()
        },
        0,
    );
    let after = WAIT.as_millis() as u64;
    let probe = t.admit(after);
    assert_eq!(
        t.m.record(probe, Verdict::Success, true, t.at(after)),
        moved(BreakerState::HalfOpen, BreakerState::Open)
    );
}

#[test]
fn a_success_after_old_successes_left_a_time_window_opens_when_the_rate_is_over() {
    let t = Test::new(MachineConfig {
        window: WindowKind::Time(10),
        failure_rate: Some(5_000),
        minimum_calls: 5,
        ..config()
    });
    for ms in 0..5 {
        assert_eq!(t.ok(ms), None);
    }
    // 4 failures of 9 calls: 44 %, under the 50 % threshold.
    for ms in 5_000..5_004 {
        assert_eq!(t.fail(ms), None);
    }
    assert_eq!(t.state(), BreakerState::Closed);
    // At 10.5 s the five successes have left the window: 4 failures remain,
    // and this success makes 4 of 5 (80 %) with the minimum reached.
    assert_eq!(t.ok(10_500), opened());
}

#[test]
fn a_success_on_a_count_window_never_opens_it() {
    let t = Test::new(MachineConfig {
        window: WindowKind::Count(4),
        failure_rate: Some(5_000),
        minimum_calls: 4,
        ..config()
    });
    assert_eq!(t.fail(0), None);
    assert_eq!(t.fail(1), None);
    assert_eq!(t.fail(2), None);
    // 3 of 4 failed once this success fills the window: the minimum is
    // reached with the rate over, so this is the call that opens it.
    assert_eq!(t.ok(3), opened());
    t.m.reset();
    for ms in 10..14 {
        assert_eq!(t.ok(ms), None);
    }
}

#[test]
fn a_retry_after_of_zero_opens_for_the_minimum_open() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        minimum_open: Duration::from_secs(1),
        ..config()
    });
    let opened_now = t.call(
        0,
        Verdict::Failure {
            retry_after: Some(Duration::ZERO),
        },
        false,
    );
    assert_eq!(opened_now, opened());
    assert_eq!(t.open_for(0), Some(Duration::from_secs(1)));
    assert_eq!(t.rejected_for(999), Some(Some(Duration::from_millis(1))));
    assert!(t.rejected_for(1_000).is_none());
}

#[test]
fn open_until_zero_from_a_rate_limit_also_opens_for_the_minimum() {
    let t = Test::new(MachineConfig {
        minimum_open: Duration::from_secs(2),
        ..config()
    });
    assert_eq!(
        t.call(0, Verdict::OpenUntil(Duration::ZERO), false),
        opened()
    );
    assert_eq!(t.open_for(0), Some(Duration::from_secs(2)));
}

#[test]
fn state_reads_half_open_once_the_open_wait_has_ended() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        ..config()
    });
    assert_eq!(t.fail(0), opened());
    assert_eq!(t.m.state_at(t.at(29_999)), BreakerState::Open);
    // No call has arrived, yet the next one would be a probe.
    assert_eq!(t.m.state_at(t.at(30_000)), BreakerState::HalfOpen);
    assert_eq!(t.m.snapshot(t.at(30_000)).state, BreakerState::HalfOpen);
    // A forced-open breaker never reads half-open.
    t.m.force_open();
    assert_eq!(t.m.state_at(t.at(90_000)), BreakerState::ForcedOpen);
}

#[test]
fn a_provider_wait_beyond_the_max_wait_is_cut_to_it_and_flagged() {
    let t = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        max_wait: Duration::from_secs(60),
        ..config()
    });
    let decades = Duration::from_secs(999_999_999);
    assert_eq!(
        t.call(0, Verdict::OpenUntil(decades), false),
        Some(Transition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            wait_capped: true,
        })
    );
    assert_eq!(t.open_for(0), Some(Duration::from_secs(60)));
    assert!(t.m.snapshot(t.at(0)).wait_capped);
    // The probe fails with a wait within the cap: honoured, not flagged.
    let probe = t.admit(60_000);
    let reopened = t.m.record(
        probe,
        Verdict::Failure {
            retry_after: Some(Duration::from_secs(5)),
        },
        false,
        t.at(60_000),
    );
    assert_eq!(reopened, moved(BreakerState::HalfOpen, BreakerState::Open));
    assert_eq!(t.open_for(60_000), Some(Duration::from_secs(5)));
    assert!(!t.m.snapshot(t.at(60_000)).wait_capped);
    // A configured open wait is the user's: never cut.
    let long = Test::new(MachineConfig {
        consecutive_failures: Some(1),
        open_wait: OpenWait::Fixed(Duration::from_secs(7200)),
        max_wait: Duration::from_secs(60),
        ..config()
    });
    assert_eq!(long.fail(0), opened());
    assert_eq!(long.open_for(0), Some(Duration::from_secs(7200)));
}
