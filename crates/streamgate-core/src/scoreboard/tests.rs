#![allow(clippy::unwrap_used, clippy::float_cmp)]

use super::*;
use crate::testing::record;

fn backend() -> BackendId {
    BackendId::new("b")
}

fn completed(
    board: &Scoreboard,
    outcome: Outcome,
    ttfc_ms: Option<u64>,
    tokens: u64,
    output_ms: Option<u64>,
) {
    let backend = backend();
    crate::testing::replay(
        board,
        &RequestRecord {
            time_to_first_content: ttfc_ms.map(Duration::from_millis),
            duration: Duration::from_secs(1),
            output_duration: output_ms.map(Duration::from_millis),
            streamed_output_tokens: tokens,
            chunks: tokens,
            ..record(&backend, "m", outcome)
        },
    );
}

fn view(board: &Scoreboard) -> ScoreView {
    board.view(&backend(), "m", Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_new_backend_is_available_with_nothing_known() {
    let score = view(&Scoreboard::new());
    assert!(!score.is_unavailable());
    assert!(!score.is_deprioritised());
    assert_eq!(score.in_flight, 0);
    assert_eq!(score.time_to_first_content, None);
    assert_eq!(score.tokens_per_minute, None);
}

#[tokio::test(start_paused = true)]
async fn each_gate_refuses_until_its_own_time() {
    let board = Scoreboard::new();
    let b = backend();
    for (reason, secs) in [
        (RejectReason::CircuitOpen, 30),
        (RejectReason::TpmBudget, 10),
    ] {
        board.record(&Event::Rejected {
            backend: &b,
            model: "m",
            reason,
            retry_after: Some(Duration::from_secs(secs)),
        });
    }
    let now = Instant::now();
    let score = board.view(&b, "m", now);
    assert_eq!(score.refused_by, Some(RejectReason::CircuitOpen));
    assert_eq!(score.retry_after(now), Some(Duration::from_secs(30)));
    // The breaker closing clears its refusal, not the TPM gate's.
    board.record(&Event::BreakerTransition {
        backend: &b,
        model: None,
        from: BreakerState::HalfOpen,
        to: BreakerState::Closed,
        wait_capped: false,
    });
    let score = board.view(&b, "m", now);
    assert_eq!(score.refused_by, Some(RejectReason::TpmBudget));
    assert_eq!(score.retry_after(now), Some(Duration::from_secs(10)));
    assert!(!board
        .view(&b, "m", now + Duration::from_secs(10))
        .is_unavailable());
    // Another model of the backend was never refused.
    assert!(!board.view(&b, "other", now).is_unavailable());
}

#[tokio::test(start_paused = true)]
async fn a_rejection_without_a_retry_time_marks_nothing() {
    let board = Scoreboard::new();
    board.record(&Event::Rejected {
        backend: &backend(),
        model: "m",
        reason: RejectReason::CircuitOpen,
        retry_after: None,
    });
    assert!(!view(&board).is_unavailable());
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_quota_refuses_until_its_reset_and_fresh_headers_clear_it() {
    let board = Scoreboard::new();
    let b = backend();
    let update = |state, exhausted_for| Event::QuotaUpdate {
        backend: &b,
        model: "m",
        state,
        exhausted_for,
        remaining_requests: None,
        remaining_tokens: None,
        wait_capped: false,
    };
    board.record(&update(QuotaState::Exhausted, Some(Duration::from_secs(7))));
    let now = Instant::now();
    assert_eq!(view(&board).refused_by, Some(RejectReason::QuotaExhausted));
    assert_eq!(view(&board).retry_after(now), Some(Duration::from_secs(7)));
    board.record(&update(QuotaState::Tracking, None));
    assert!(!view(&board).is_unavailable());
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_time_saturates_instead_of_panicking() {
    let board = Scoreboard::new();
    board.record(&Event::Rejected {
        backend: &backend(),
        model: "m",
        reason: RejectReason::CircuitOpen,
        retry_after: Some(Duration::MAX),
    });
    assert!(view(&board).is_unavailable());
}

#[tokio::test(start_paused = true)]
async fn in_flight_counts_started_minus_completed() {
    let board = Scoreboard::new();
    let b = backend();
    for _ in 0..3 {
        board.record(&Event::RequestStarted {
            backend: &b,
            model: "m",
            estimated_tokens: 1,
        });
    }
    assert_eq!(view(&board).in_flight, 3);
    completed(&board, Outcome::Success, Some(100), 0, None);
    // `completed` starts one and ends one.
    assert_eq!(view(&board).in_flight, 3);
}

#[tokio::test(start_paused = true)]
async fn time_to_first_content_is_a_moving_average_with_a_quarter_weight() {
    let board = Scoreboard::new();
    completed(&board, Outcome::Success, Some(1000), 0, None);
    assert_eq!(
        view(&board).time_to_first_content,
        Some(Duration::from_secs(1))
    );
    completed(&board, Outcome::Success, Some(2000), 0, None);
    // 1 s + 0.25 × (2 s − 1 s)
    assert_eq!(
        view(&board).time_to_first_content,
        Some(Duration::from_millis(1250))
    );
    assert_eq!(view(&board).ttfc_samples, 2);
}

#[tokio::test(start_paused = true)]
async fn a_first_content_timeout_makes_a_backend_late_until_it_answers_in_time() {
    let board = Scoreboard::new();
    completed(
        &board,
        Outcome::TimedOut(TimeoutKind::FirstContent),
        None,
        0,
        None,
    );
    assert!(view(&board).late);
    assert!(view(&board).is_deprioritised());
    completed(&board, Outcome::Success, Some(200), 0, None);
    assert!(!view(&board).late);
}

#[tokio::test(start_paused = true)]
async fn lateness_expires_on_its_own() {
    let board = Scoreboard::with_settings(4, Duration::from_secs(5));
    board.mark_late(&backend(), "m");
    let now = Instant::now();
    assert!(
        board
            .view(&backend(), "m", now + Duration::from_millis(4999))
            .late
    );
    assert!(
        !board
            .view(&backend(), "m", now + Duration::from_secs(5))
            .late
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_counts_backend_faults_but_not_client_errors_or_cancellations() {
    let board = Scoreboard::new();
    completed(&board, Outcome::Failed(ErrorClass::Server), None, 0, None);
    assert_eq!(view(&board).failure_rate, 1.0);
    completed(&board, Outcome::Failed(ErrorClass::Client), None, 0, None);
    completed(&board, Outcome::Cancelled, None, 0, None);
    assert_eq!(view(&board).failure_rate, 1.0);
    completed(&board, Outcome::Success, Some(10), 0, None);
    assert_eq!(view(&board).failure_rate, 0.75);
}

#[tokio::test(start_paused = true)]
async fn a_backend_below_its_minimum_throughput_is_slow_after_enough_samples() {
    let board = Scoreboard::new();
    board.min_throughput(&backend(), 600);
    // 5 tokens per second of streaming: 300 per minute.
    completed(&board, Outcome::Success, Some(10), 5, Some(1000));
    completed(&board, Outcome::Success, Some(10), 5, Some(1000));
    assert!(!view(&board).slow, "two samples are not enough");
    completed(&board, Outcome::Success, Some(10), 5, Some(1000));
    let score = view(&board);
    assert_eq!(score.tokens_per_minute, Some(300.0));
    assert!(score.slow);
    // Old evidence is forgotten.
    let later = Instant::now() + THROUGHPUT_SAMPLE_TTL;
    assert!(!board.view(&backend(), "m", later).slow);
}

#[tokio::test(start_paused = true)]
async fn throughput_is_tokens_over_streaming_time_of_the_last_samples() {
    let board = Scoreboard::new();
    for _ in 0..THROUGHPUT_SAMPLES {
        completed(&board, Outcome::Success, Some(10), 1, Some(1000));
    }
    assert_eq!(view(&board).tokens_per_minute, Some(60.0));
    // Ten faster streams replace every slow one.
    for _ in 0..THROUGHPUT_SAMPLES {
        completed(&board, Outcome::Success, Some(10), 10, Some(1000));
    }
    assert_eq!(view(&board).tokens_per_minute, Some(600.0));
    // Empty or instant streams say nothing.
    completed(&board, Outcome::Success, Some(10), 0, Some(1000));
    completed(&board, Outcome::Success, Some(10), 10, Some(0));
    assert_eq!(view(&board).tokens_per_minute, Some(600.0));
}

#[tokio::test(start_paused = true)]
async fn without_a_minimum_a_backend_is_never_slow() {
    let board = Scoreboard::new();
    for _ in 0..5 {
        completed(&board, Outcome::Success, Some(10), 1, Some(60_000));
    }
    assert!(!view(&board).slow);
}

#[tokio::test(start_paused = true)]
async fn hostile_model_names_share_one_entry_past_the_cap() {
    let board = Scoreboard::with_settings(2, DEFAULT_LATE_FOR);
    let b = backend();
    for i in 0..1000 {
        board.record(&Event::RequestStarted {
            backend: &b,
            model: &format!("model-{i}"),
            estimated_tokens: 1,
        });
    }
    assert_eq!(board.inner.scores.len(), 3);
    // The 998 folded models count as in flight under one entry.
    assert_eq!(board.view(&b, "model-999", Instant::now()).in_flight, 998);
}

#[tokio::test(start_paused = true)]
async fn ttfc_quantiles_use_the_last_samples_by_nearest_rank() {
    let board = Scoreboard::new();
    let b = backend();
    assert_eq!(board.ttfc_quantile(&b, "m", 0.95, 1), None);
    for ms in 1..=20 {
        completed(&board, Outcome::Success, Some(ms * 10), 0, None);
    }
    assert_eq!(
        board.ttfc_quantile(&b, "m", 0.95, 21),
        None,
        "too few samples"
    );
    // Nearest rank of 20 samples: p95 is the 19th, p50 the 10th.
    assert_eq!(
        board.ttfc_quantile(&b, "m", 0.95, 20),
        Some(Duration::from_millis(190))
    );
    assert_eq!(
        board.ttfc_quantile(&b, "m", 0.5, 1),
        Some(Duration::from_millis(100))
    );
    // Only the last 32 count: 32 fast samples push the slow ones out.
    for _ in 0..TTFC_SAMPLES {
        completed(&board, Outcome::Success, Some(5), 0, None);
    }
    assert_eq!(
        board.ttfc_quantile(&b, "m", 1.0, 1),
        Some(Duration::from_millis(5))
    );
}

#[tokio::test(start_paused = true)]
async fn an_average_no_sample_refreshes_fades_so_the_backend_is_tried_again() {
    let board = Scoreboard::new();
    completed(&board, Outcome::Success, Some(300), 0, None);
    assert_eq!(
        view(&board).time_to_first_content,
        Some(Duration::from_millis(300))
    );
    // One decay time later: e⁻¹ of it.
    tokio::time::advance(TTFC_DECAY).await;
    let faded = view(&board).time_to_first_content.unwrap();
    assert_eq!(faded.as_millis(), (300.0 * (-1.0f64).exp()) as u128);
    // A new sample refreshes it: the average of the old figure and the new
    // one, unfaded.
    completed(&board, Outcome::Success, Some(100), 0, None);
    assert_eq!(
        view(&board).time_to_first_content,
        Some(Duration::from_millis(250))
    );
}
