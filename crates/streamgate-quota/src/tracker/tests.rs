#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use streamgate_core::{BackendId, Event, MetricsSink, QuotaState};
use tokio::time::Instant;

use super::*;
use crate::QuotaInfo;

#[derive(Default)]
struct Events(Mutex<Vec<(QuotaState, Option<Duration>)>>);

impl MetricsSink for Events {
    fn record(&self, event: &Event<'_>) {
        if let Event::QuotaUpdate {
            state,
            exhausted_for,
            ..
        } = event
        {
            self.0.lock().unwrap().push((*state, *exhausted_for));
        }
    }
}

impl Events {
    fn take(&self) -> Vec<(QuotaState, Option<Duration>)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn info(status: u16, pairs: &[(&str, &str)]) -> QuotaInfo {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    QuotaInfo::parse(
        StatusCode::from_u16(status).unwrap(),
        &map,
        None,
        SystemTime::now(),
    )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn setup() -> (QuotaTracker, Arc<Events>, BackendId) {
    let events = Arc::new(Events::default());
    let tracker = QuotaTracker::builder()
        .sink(events.clone())
        .build()
        .unwrap();
    (tracker, events, BackendId::new("openai"))
}

#[tokio::test(start_paused = true)]
async fn unknown_key_is_available_and_admitted() {
    let (tracker, events, b) = setup();
    let now = Instant::now();
    assert_eq!(tracker.status(&b, "m", now), QuotaStatus::Available);
    assert!(tracker.check(&b, "m", 1_000_000, now).is_ok());
    // A response without rate-limit headers creates no key.
    tracker.observe(&b, "m", &info(200, &[("content-type", "x")]), now);
    assert!(tracker.is_empty());
    assert!(events.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn headers_with_quota_left_move_the_key_to_tracking() {
    let (tracker, events, b) = setup();
    let now = Instant::now();
    let status = tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-tokens", "500"),
                ("x-ratelimit-reset-tokens", "6s"),
            ],
        ),
        now,
    );
    assert_eq!(status, QuotaStatus::Tracking);
    assert_eq!(events.take(), vec![(QuotaState::Tracking, None)]);
    // Same state, fewer tokens left: reported, so displays stay current.
    let fewer = info(200, &[("x-ratelimit-remaining-tokens", "400")]);
    tracker.observe(&b, "m", &fewer, now);
    assert_eq!(events.take(), vec![(QuotaState::Tracking, None)]);
    // Nothing changed at all: no event.
    tracker.observe(&b, "m", &fewer, now);
    assert!(events.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn zero_remaining_exhausts_until_the_reset_then_admits_again() {
    let (tracker, events, b) = setup();
    let start = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1m26.4s"),
            ],
        ),
        start,
    );
    assert_eq!(
        tracker.status(&b, "m", start),
        QuotaStatus::Exhausted {
            until: start + ms(86_400),
            reason: ExhaustReason::RequestsDepleted,
        }
    );
    assert_eq!(
        events.take(),
        vec![(QuotaState::Exhausted, Some(ms(86_400)))]
    );
    tokio::time::advance(secs(80)).await;
    let refusal = tracker.check(&b, "m", 0, Instant::now()).unwrap_err();
    assert_eq!(refusal.retry_after, ms(6_400));
    assert_eq!(refusal.reason, ExhaustReason::RequestsDepleted);
    // Other models of the same backend are not affected.
    assert!(tracker.check(&b, "other", 0, Instant::now()).is_ok());

    tokio::time::advance(ms(6_400)).await;
    assert!(tracker.check(&b, "m", 0, Instant::now()).is_ok());
    assert_eq!(
        tracker.status(&b, "m", Instant::now()),
        QuotaStatus::Tracking
    );
    assert_eq!(events.take(), vec![(QuotaState::Tracking, None)]);
}

#[tokio::test(start_paused = true)]
async fn both_limits_at_zero_take_the_later_reset() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "2s"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "9s"),
            ],
        ),
        now,
    );
    assert_eq!(
        tracker.status(&b, "m", now),
        QuotaStatus::Exhausted {
            until: now + secs(9),
            reason: ExhaustReason::TokensDepleted,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn anthropic_input_tokens_at_zero_exhaust_despite_tokens_left() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let mut i = QuotaInfo::default();
    i.tokens.remaining = Some(50_000);
    i.tokens.reset_after = Some(secs(10));
    i.input_tokens.remaining = Some(0);
    i.input_tokens.reset_after = Some(secs(30));
    tracker.observe(&b, "claude", &i, now);
    assert_eq!(
        tracker.status(&b, "claude", now),
        QuotaStatus::Exhausted {
            until: now + secs(30),
            reason: ExhaustReason::InputTokensDepleted,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_exhausts_until_retry_after() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(&b, "m", &info(429, &[("retry-after", "20")]), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now),
        Err(Refusal {
            retry_after: secs(20),
            reason: ExhaustReason::RateLimited,
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_information_uses_the_default_cooldown() {
    let events = Arc::new(Events::default());
    let tracker = QuotaTracker::builder()
        .default_cooldown(secs(7))
        .sink(events.clone())
        .build()
        .unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    tracker.observe(&b, "m", &info(429, &[]), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(7)
    );
    assert_eq!(events.take(), vec![(QuotaState::Exhausted, Some(secs(7)))]);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_uses_the_depleted_reset() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            429,
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "3s"),
                ("x-ratelimit-remaining-requests", "10"),
                ("x-ratelimit-reset-requests", "50s"),
            ],
        ),
        now,
    );
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(3)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_under_a_later_depleted_reset() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            429,
            &[
                ("retry-after", "2"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "8s"),
            ],
        ),
        now,
    );
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(8)
    );
    tracker.observe(
        &b,
        "n",
        &info(
            429,
            &[
                ("retry-after", "30"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "8s"),
            ],
        ),
        now,
    );
    assert_eq!(
        tracker.check(&b, "n", 0, now).unwrap_err().retry_after,
        secs(30)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_a_depleted_limit_without_a_reset() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let i = info(
        429,
        &[
            ("retry-after", "3"),
            ("x-ratelimit-remaining-requests", "0"),
        ],
    );
    tracker.observe(&b, "m", &i, now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(3)
    );
    // Without a 429, a zero without a reset exhausts for the default cooldown.
    let i = info(200, &[("x-ratelimit-remaining-requests", "0")]);
    tracker.observe(&b, "n", &i, now);
    assert_eq!(
        tracker.check(&b, "n", 0, now).unwrap_err().retry_after,
        secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_retry_after_still_cools_down_for_the_minimum() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(&b, "m", &info(429, &[("retry-after", "0")]), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        ms(100)
    );
}

#[tokio::test(start_paused = true)]
async fn a_longer_cooldown_extends_and_a_shorter_one_never_shortens() {
    let (tracker, events, b) = setup();
    let start = Instant::now();
    tracker.observe(&b, "m", &info(429, &[("retry-after", "10")]), start);
    tokio::time::advance(secs(1)).await;
    let now = Instant::now();
    // Shorter: 2 s from now ends before the 9 s left.
    tracker.observe(&b, "m", &info(429, &[("retry-after", "2")]), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(9)
    );
    // A success with quota left (a request in flight before) does not shorten it.
    tracker.observe(
        &b,
        "m",
        &info(200, &[("x-ratelimit-remaining-requests", "50")]),
        now,
    );
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(9)
    );
    // Longer: extends.
    tracker.observe(&b, "m", &info(429, &[("retry-after", "30")]), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(30)
    );
    assert_eq!(
        events.take(),
        vec![
            (QuotaState::Exhausted, Some(secs(10))),
            // The success reported a count; the cooldown still holds.
            (QuotaState::Exhausted, Some(secs(9))),
            (QuotaState::Exhausted, Some(secs(30))),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stale_information_is_dropped() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    // A reset already past: the zero is stale on arrival.
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "0s"),
            ],
        ),
        now,
    );
    assert_eq!(tracker.status(&b, "m", now), QuotaStatus::Tracking);

    // Counts are believed until their reset only.
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-tokens", "12"),
                ("x-ratelimit-reset-tokens", "5s"),
            ],
        ),
        now,
    );
    assert_eq!(tracker.snapshot(now)[0].remaining_tokens, Some(12));
    tokio::time::advance(secs(5)).await;
    assert_eq!(tracker.snapshot(Instant::now())[0].remaining_tokens, None);
}

#[tokio::test(start_paused = true)]
async fn predictive_check_refuses_requests_larger_than_what_is_left() {
    let tracker = QuotaTracker::builder().predictive(true).build().unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    let mut i = QuotaInfo::default();
    i.tokens.remaining = Some(1000);
    i.tokens.reset_after = Some(secs(20));
    i.output_tokens.remaining = Some(300);
    i.output_tokens.reset_after = Some(secs(4));
    tracker.observe(&b, "m", &i, now);
    assert!(tracker.check(&b, "m", 300, now).is_ok());
    // The stricter of combined and output tokens decides.
    assert_eq!(
        tracker.check(&b, "m", 301, now),
        Err(Refusal {
            retry_after: secs(4),
            reason: ExhaustReason::InsufficientTokens,
        })
    );
    // The key itself is not exhausted.
    assert_eq!(tracker.status(&b, "m", now), QuotaStatus::Tracking);
    // Off by default.
    let plain = QuotaTracker::new();
    plain.observe(&b, "m", &i, now);
    assert!(plain.check(&b, "m", 5000, now).is_ok());
}

#[tokio::test(start_paused = true)]
async fn request_too_large_exhausts_nothing() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let mut i = info(429, &[("x-ratelimit-remaining-tokens", "20000")]);
    i.request_too_large = true;
    tracker.observe(&b, "m", &i, now);
    assert_eq!(tracker.status(&b, "m", now), QuotaStatus::Tracking);
}

#[tokio::test(start_paused = true)]
async fn in_band_rate_limit_is_treated_like_a_429() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe_rate_limited(&b, "m", &QuotaInfo::default(), now);
    assert_eq!(
        tracker.check(&b, "m", 0, now).unwrap_err().retry_after,
        secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn models_past_the_cap_share_one_key_and_known_models_keep_theirs() {
    let events = Arc::new(Events::default());
    let tracker = QuotaTracker::builder()
        .model_cap(2)
        .sink(events.clone())
        .build()
        .unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    let tracking = info(200, &[("x-ratelimit-remaining-requests", "5")]);
    tracker.observe(&b, "exhausted", &info(429, &[("retry-after", "60")]), now);
    tracker.observe(&b, "tracked", &tracking, now);
    // Past the cap: a 429 for one made-up model gates every other one...
    tracker.observe(&b, "extra-1", &info(429, &[("retry-after", "30")]), now);
    assert_eq!(tracker.len(), 3);
    let refusal = tracker.check(&b, "extra-2", 0, now).unwrap_err();
    assert_eq!(refusal.retry_after, secs(30));
    // ...but never the models with a key of their own.
    assert!(tracker.check(&b, "exhausted", 0, now).is_err());
    assert_eq!(tracker.status(&b, "tracked", now), QuotaStatus::Tracking);
    assert!(tracker.check(&b, "tracked", 0, now).is_ok());
    let models: Vec<String> = tracker.snapshot(now).into_iter().map(|k| k.model).collect();
    assert_eq!(models, ["_OTHER", "exhausted", "tracked"]);
    // The cap is per backend.
    let c = BackendId::new("c");
    assert_eq!(tracker.status(&c, "extra-2", now), QuotaStatus::Available);
    assert!(tracker.check(&c, "extra-2", 0, now).is_ok());
    let _ = events.take();
}

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_model_names_keep_the_tracker_at_its_cap() {
    let events = Arc::new(ModelNames::default());
    let tracker = QuotaTracker::builder()
        .sink(events.clone())
        .build()
        .unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    let tracking = info(200, &[("x-ratelimit-remaining-requests", "5")]);
    for i in 0..100_000 {
        let model = format!("model-{i}");
        tracker.observe(&b, &model, &tracking, now);
        drop(tracker.admit(&b, &model, 0, now).unwrap());
    }
    assert_eq!(tracker.len(), streamgate_core::keyed::DEFAULT_MODEL_CAP + 1);
    assert_eq!(tracker.snapshot(now).len(), tracker.len());
    // Updates of the shared key are reported under its name, not under
    // each made-up one.
    let names = events.0.lock().unwrap();
    assert!(names.len() <= streamgate_core::keyed::DEFAULT_MODEL_CAP + 1);
    assert!(names.contains("_OTHER"));
}

/// The model names update events were reported under.
#[derive(Default)]
struct ModelNames(Mutex<std::collections::BTreeSet<String>>);

impl MetricsSink for ModelNames {
    fn record(&self, event: &Event<'_>) {
        if let Event::QuotaUpdate { model, .. } = event {
            self.0.lock().unwrap().insert((*model).to_owned());
        }
    }
}

#[test]
fn builder_rejects_invalid_values() {
    assert!(QuotaTracker::builder().model_cap(0).build().is_err());
    assert!(QuotaTracker::builder()
        .min_cooldown(Duration::ZERO)
        .build()
        .is_err());
    assert!(QuotaTracker::builder()
        .default_cooldown(ms(10))
        .min_cooldown(ms(20))
        .build()
        .is_err());
    let err = QuotaTracker::builder().model_cap(0).build().unwrap_err();
    assert_eq!(err.to_string(), "model cap must be at least 1");
}

#[test]
fn learned_limits_need_a_known_window() {
    let tracker = QuotaTracker::new();
    let b = BackendId::new("b");
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-limit-tokens", "30000"),
                ("x-ratelimit-limit", "20"),
            ],
        ),
        now,
    );
    assert_eq!(
        tracker.learned_limits(&b, "m"),
        LearnedLimits {
            requests: None,
            tokens: Some((30_000, crate::parse::MINUTE)),
        }
    );
}

#[derive(Default)]
struct Capped(Mutex<Vec<bool>>);

impl MetricsSink for Capped {
    fn record(&self, event: &Event<'_>) {
        if let Event::QuotaUpdate { wait_capped, .. } = event {
            self.0.lock().unwrap().push(*wait_capped);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_capped_at_the_maximum_wait_and_the_event_says_so() {
    let sink = Arc::new(Capped::default());
    let tracker = QuotaTracker::builder().sink(sink.clone()).build().unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    let status = tracker.observe(&b, "m", &info(429, &[("retry-after", "999999999")]), now);
    assert_eq!(status.exhausted_for(now), Some(secs(3600)));
    assert_eq!(*sink.0.lock().unwrap(), vec![true]);

    // A wait within the cap is honoured exactly and not flagged.
    let tracker = QuotaTracker::builder()
        .max_wait(secs(30))
        .sink(sink.clone())
        .build()
        .unwrap();
    let status = tracker.observe(&b, "m", &info(429, &[("retry-after", "20")]), now);
    assert_eq!(status.exhausted_for(now), Some(secs(20)));
    let status = tracker.observe(&b, "n", &info(429, &[("retry-after", "31")]), now);
    assert_eq!(status.exhausted_for(now), Some(secs(30)));
    assert_eq!(*sink.0.lock().unwrap(), vec![true, false, true]);
}

#[tokio::test(start_paused = true)]
async fn a_reset_centuries_away_neither_panics_nor_outlasts_the_cap() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    // Epoch milliseconds near the end of u64: a reset in the year 584 million.
    let status = tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "18446744073709551615"),
            ],
        ),
        now,
    );
    assert_eq!(status.exhausted_for(now), Some(secs(3600)));
    assert!(tracker.check(&b, "m", 0, now + secs(3600)).is_ok());
}

#[test]
fn builder_refuses_durations_that_would_overflow_later() {
    let cases: [(QuotaTrackerBuilder, &str); 5] = [
        (
            QuotaTracker::builder().default_cooldown(Duration::MAX),
            "default cooldown must be at most a year",
        ),
        (
            QuotaTracker::builder().min_cooldown(Duration::MAX),
            "minimum cooldown must be at most a year",
        ),
        (
            QuotaTracker::builder().zero_allowance_cooldown(Duration::MAX),
            "zero-allowance cooldown must be at most a year",
        ),
        (
            QuotaTracker::builder().max_wait(Duration::MAX),
            "maximum wait must be at most a year",
        ),
        (
            QuotaTracker::builder().freshness(Duration::MAX),
            "freshness must be at most a year",
        ),
    ];
    for (builder, message) in cases {
        assert_eq!(builder.build().unwrap_err().to_string(), message);
    }
    assert_eq!(
        QuotaTracker::builder()
            .max_wait(ms(50))
            .build()
            .unwrap_err()
            .to_string(),
        "maximum wait must not be below the minimum cooldown"
    );
    // The largest accepted values work on the first request.
    let tracker = QuotaTracker::builder()
        .default_cooldown(MAX_DURATION)
        .min_cooldown(MAX_DURATION)
        .zero_allowance_cooldown(MAX_DURATION)
        .max_wait(MAX_DURATION)
        .freshness(MAX_DURATION)
        .build()
        .unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    tracker.observe(&b, "m", &info(429, &[]), now);
    assert!(tracker.check(&b, "m", 0, now).is_err());
}

#[tokio::test(start_paused = true)]
async fn zero_allowance_exhausts_for_the_long_cooldown_with_its_own_reason() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let zero = info(
        200,
        &[
            ("x-ratelimit-limit-tokens", "0"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1s"),
        ],
    );
    assert_eq!(
        tracker.observe(&b, "m", &zero, now),
        QuotaStatus::Exhausted {
            until: now + secs(3600),
            reason: ExhaustReason::NoAllowance,
        }
    );
    let refusal = tracker.check(&b, "m", 0, now + secs(2)).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::NoAllowance);
    assert_eq!(refusal.retry_after, secs(3598));
    assert_eq!(
        ExhaustReason::NoAllowance.to_string(),
        "no allowance for this model (limit 0)"
    );

    let tracker = QuotaTracker::builder()
        .zero_allowance_cooldown(secs(600))
        .build()
        .unwrap();
    let cohere = info(400, &[("x-endpoint-monthly-call-limit", "0")]);
    assert_eq!(
        tracker.observe(&b, "m", &cohere, now).exhausted_for(now),
        Some(secs(600))
    );
}

#[tokio::test(start_paused = true)]
async fn negative_remaining_is_zero_left_but_no_refusal() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let azure = info(
        200,
        &[
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "-2048"),
            ("x-ratelimit-remaining-requests", "-3"),
        ],
    );
    assert_eq!(tracker.observe(&b, "m", &azure, now), QuotaStatus::Tracking);
    for _ in 0..10 {
        tracker.admit(&b, "m", 500, now).unwrap().release();
    }
    let snapshot = tracker.snapshot(now);
    assert_eq!(snapshot[0].remaining_tokens, Some(0));
    assert_eq!(snapshot[0].remaining_requests, Some(0));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_longer_window_gates_beside_a_healthy_minute() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let cerebras = info(
        200,
        &[
            ("x-ratelimit-remaining-requests-minute", "29"),
            ("x-ratelimit-reset-requests-minute", "30"),
            ("x-ratelimit-remaining-requests-day", "0"),
            ("x-ratelimit-reset-requests-day", "1800"),
        ],
    );
    assert_eq!(
        tracker.observe(&b, "m", &cerebras, now),
        QuotaStatus::Exhausted {
            until: now + secs(1800),
            reason: ExhaustReason::RequestsDepleted,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_count_against_the_remaining_until_released() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "5"),
                ("x-ratelimit-reset-requests", "30s"),
            ],
        ),
        now,
    );
    let mut guards: Vec<InFlight> = (0..5)
        .map(|_| tracker.admit(&b, "m", 0, now).unwrap())
        .collect();
    assert!(guards.iter().all(InFlight::is_counted));
    assert_eq!(tracker.in_flight(&b, "m"), (5, 0));
    let refusal = tracker.admit(&b, "m", 0, now).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::InFlight);
    assert_eq!(refusal.retry_after, secs(30));
    // `check` counts the requests in flight too, without adding one.
    assert!(tracker.check(&b, "m", 0, now).is_err());
    // The key itself is not exhausted.
    assert_eq!(tracker.status(&b, "m", now), QuotaStatus::Tracking);

    // One answered (or dropped): one more may go.
    guards.pop();
    let next = tracker.admit(&b, "m", 0, now).unwrap();
    assert!(tracker.admit(&b, "m", 0, now).is_err());

    // Fresh headers replace the baseline; the unanswered still count.
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "7"),
                ("x-ratelimit-reset-requests", "30s"),
            ],
        ),
        now + secs(1),
    );
    let later = now + secs(1);
    let a = tracker.admit(&b, "m", 0, later).unwrap();
    let c = tracker.admit(&b, "m", 0, later).unwrap();
    assert!(tracker.admit(&b, "m", 0, later).is_err());
    drop((guards, next, a, c));
    assert_eq!(tracker.in_flight(&b, "m"), (0, 0));

    // Once the baseline is stale, nothing gates.
    let stale = now + secs(31);
    let many: Vec<InFlight> = (0..20)
        .map(|_| tracker.admit(&b, "m", 0, stale).unwrap())
        .collect();
    assert_eq!(tracker.in_flight(&b, "m"), (20, 0));
    drop(many);
}

#[tokio::test(start_paused = true)]
async fn in_flight_token_estimates_count_against_the_remaining_tokens() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let headers = info(
        200,
        &[
            ("x-ratelimit-remaining-tokens", "1000"),
            ("x-ratelimit-reset-tokens", "6s"),
        ],
    );
    tracker.observe(&b, "m", &headers, now);
    let first = tracker.admit(&b, "m", 600, now).unwrap();
    // Not predictive: admitted while any of the tokens is unclaimed.
    let second = tracker.admit(&b, "m", 600, now).unwrap();
    assert_eq!(tracker.in_flight(&b, "m"), (2, 1200));
    let refusal = tracker.admit(&b, "m", 1, now).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::InFlight);
    assert_eq!(refusal.retry_after, secs(6));
    // A refusal on tokens does not keep the request counted.
    assert_eq!(tracker.in_flight(&b, "m"), (2, 1200));
    drop((first, second));

    // Predictive: only if the whole estimate fits beside what is in flight.
    let tracker = QuotaTracker::builder().predictive(true).build().unwrap();
    tracker.observe(&b, "m", &headers, now);
    let _first = tracker.admit(&b, "m", 600, now).unwrap();
    let refusal = tracker.admit(&b, "m", 600, now).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::InsufficientTokens);
    assert!(tracker.admit(&b, "m", 400, now).is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_unknown_key_admits_uncounted() {
    let (tracker, _, b) = setup();
    let now = Instant::now();
    let guard = tracker.admit(&b, "m", 10, now).unwrap();
    assert!(!guard.is_counted());
    tracker.observe(
        &b,
        "other",
        &info(200, &[("x-ratelimit-remaining-requests", "1")]),
        now,
    );
    assert!(!tracker.admit(&b, "m", 10, now).unwrap().is_counted());
}

#[test]
fn concurrent_admissions_never_exceed_the_remaining() {
    let tracker = QuotaTracker::new();
    let b = BackendId::new("b");
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "5"),
                ("x-ratelimit-reset-requests", "60s"),
            ],
        ),
        now,
    );
    let barrier = std::sync::Barrier::new(50);
    let guards = Mutex::new(Vec::new());
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..50 {
            scope.spawn(|| {
                barrier.wait();
                match tracker.admit(&b, "m", 0, now) {
                    Ok(guard) => guards.lock().unwrap().push(guard),
                    Err(_) => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(guards.lock().unwrap().len(), 5);
    assert_eq!(refused.into_inner(), 45);
}

#[tokio::test(start_paused = true)]
async fn overflow_models_count_in_flight_against_the_shared_key() {
    let tracker = QuotaTracker::builder().model_cap(1).build().unwrap();
    let b = BackendId::new("b");
    let now = Instant::now();
    let one = info(
        200,
        &[
            ("x-ratelimit-remaining-requests", "1"),
            ("x-ratelimit-reset-requests", "60s"),
        ],
    );
    tracker.observe(&b, "m", &one, now);
    tracker.observe(&b, "other", &one, now);
    let guard = tracker.admit(&b, "other", 0, now).unwrap();
    assert!(guard.is_counted());
    // Another overflow model finds the one request left taken.
    assert!(tracker.admit(&b, "third", 0, now).is_err());
    assert_eq!(tracker.in_flight(&b, "third"), (1, 0));
    // The model with its own key is not affected.
    assert!(tracker.admit(&b, "m", 0, now).is_ok());
    drop(guard);
    assert!(tracker.admit(&b, "third", 0, now).is_ok());
}

/// Shared state that says what the other replicas have in flight, and
/// records what this replica tells them.
#[derive(Debug, Default)]
struct OtherReplicas {
    others: Mutex<(u64, u64)>,
    told: Mutex<Vec<(String, i64, i64)>>,
}

impl SharedQuota for OtherReplicas {
    fn exhausted_until(
        &self,
        _key: StateKey<'_>,
        _now: Instant,
    ) -> Option<streamgate_core::state::Exhaustion> {
        None
    }

    fn learn(&self, _key: StateKey<'_>, _until: Instant, _reason: &str) {}

    fn add_in_flight(&self, key: StateKey<'_>, requests: i64, tokens: i64) {
        self.told
            .lock()
            .unwrap()
            .push((key.model.to_owned(), requests, tokens));
    }

    fn others_in_flight(&self, _key: StateKey<'_>) -> (u64, u64) {
        *self.others.lock().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn other_replicas_in_flight_count_against_the_same_remaining() {
    let fleet = Arc::new(OtherReplicas::default());
    let tracker = QuotaTracker::builder()
        .predictive(true)
        .shared(fleet.clone())
        .build()
        .unwrap();
    let b = BackendId::new("openai");
    let now = Instant::now();
    tracker.observe(
        &b,
        "m",
        &info(
            200,
            &[
                ("x-ratelimit-remaining-requests", "3"),
                ("x-ratelimit-reset-requests", "20s"),
                ("x-ratelimit-remaining-tokens", "1000"),
                ("x-ratelimit-reset-tokens", "6s"),
            ],
        ),
        now,
    );
    // Two requests in flight elsewhere leave one of the three here.
    *fleet.others.lock().unwrap() = (2, 300);
    let first = tracker.admit(&b, "m", 100, now).unwrap();
    let refusal = tracker.admit(&b, "m", 100, now).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::InFlight);
    assert_eq!(refusal.retry_after, secs(20));
    // The others' tokens count against the remaining tokens as well.
    *fleet.others.lock().unwrap() = (0, 800);
    let refusal = tracker.admit(&b, "m", 150, now).unwrap_err();
    assert_eq!(refusal.reason, ExhaustReason::InsufficientTokens);
    let second = tracker.admit(&b, "m", 50, now).unwrap();

    // Each admission and each end is told once; `check` tells nothing.
    assert!(tracker.check(&b, "m", 10, now).is_ok());
    drop((first, second));
    assert_eq!(
        *fleet.told.lock().unwrap(),
        [
            ("m".to_owned(), 1, 100),
            ("m".to_owned(), 1, 50),
            ("m".to_owned(), -1, -100),
            ("m".to_owned(), -1, -50),
        ]
    );
    // The others gone, the three requests are this replica's again.
    *fleet.others.lock().unwrap() = (0, 0);
    let guards: Vec<_> = (0..3)
        .map(|_| tracker.admit(&b, "m", 0, now).unwrap())
        .collect();
    assert!(tracker.admit(&b, "m", 0, now).is_err());
    drop(guards);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_key_tells_the_other_replicas_nothing() {
    // Uncounted here, so not counted elsewhere either.
    let fleet = Arc::new(OtherReplicas::default());
    let tracker = QuotaTracker::builder()
        .shared(fleet.clone())
        .build()
        .unwrap();
    let b = BackendId::new("openai");
    *fleet.others.lock().unwrap() = (100, 0);
    let guard = tracker.admit(&b, "m", 10, Instant::now()).unwrap();
    assert!(!guard.is_counted());
    drop(guard);
    assert!(fleet.told.lock().unwrap().is_empty());
}
