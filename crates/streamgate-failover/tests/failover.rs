//! The failover router over scripted backends, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{drain, expect_err, sink, RefuseUntil, Seen, WithRetryAfter};
use streamgate_core::{
    scoreboard::Scoreboard,
    testing::{record, replay, Script, ScriptedService, TestChunk, TestRequest},
    BackendId, BoxError, ErrorClass, Event, FailoverError, LlmRequest, MetricsSink, Outcome,
    ProviderError, RejectReason, RequestRecord,
};
use streamgate_failover::{
    Backoff, ContextLengthPolicy, Failover, FailoverBuilder, FailoverReport, Strategy, TpmLayer,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const MS: fn(u64) -> Duration = Duration::from_millis;

type Builder = FailoverBuilder<TestRequest, TestChunk>;

fn ok() -> ScriptedService {
    ScriptedService::new(Script::new().meta("role").text("hello"))
}

fn failing(class: ErrorClass) -> ScriptedService {
    ScriptedService::new(Script::new().fail_call(class))
}

fn request() -> TestRequest {
    TestRequest::new("m").with_estimate(100)
}

fn failover_error(error: &BoxError) -> &FailoverError {
    error
        .downcast_ref::<FailoverError>()
        .expect("a failover error")
}

#[tokio::test(start_paused = true)]
async fn tries_backends_in_order_and_serves_from_the_first_that_commits() {
    let (a, b, c) = (failing(ErrorClass::Server), ok(), ok());
    let (events, sink) = sink();
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .service("c", c.clone())
        .sink(sink)
        .build()
        .unwrap();
    assert_eq!(
        router.backends().map(|b| b.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let response = router.oneshot(request()).await.unwrap();
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.served_by.as_str(), "b");
    assert_eq!(
        report
            .skipped
            .iter()
            .map(|a| (a.backend.as_str(), a.class))
            .collect::<Vec<_>>(),
        [("a", ErrorClass::Server)]
    );
    let items = drain(response.into_body()).await;
    // The held role chunk is replayed before the content.
    assert_eq!(
        items,
        [Ok(TestChunk::Meta("role")), Ok(TestChunk::Text("hello"))]
    );
    assert_eq!(
        (a.probe().calls(), b.probe().calls(), c.probe().calls()),
        (1, 1, 0)
    );
    assert_eq!(
        events.seen(),
        [Seen::Failover {
            from: "a".into(),
            to: Some("b".into()),
            reason: ErrorClass::Server
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejected_backend_is_skipped_without_calling_it() {
    let a = ScriptedService::new(Script::new().text("never"));
    let budget = TpmLayer::builder("a")
        .max_tokens_per_minute(10)
        .build()
        .unwrap();
    let (events, sink) = sink();
    let router = Builder::default()
        .service("a", budget.layer(a.clone()))
        .service("b", ok())
        .retries(3)
        .sink(sink)
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(router.oneshot(request()).await.is_ok());
    assert_eq!(a.probe().calls(), 0);
    // No retry and no backoff for a refusal.
    assert_eq!(Instant::now(), started);
    assert_eq!(
        events.seen(),
        [Seen::Failover {
            from: "a".into(),
            to: Some("b".into()),
            reason: ErrorClass::Rejected
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_the_same_backend_honouring_retry_after() {
    let a = ScriptedService::new(Script::new().text("a"))
        .then(Script::new().fail_call(ErrorClass::RateLimited))
        .then(Script::new().fail_call(ErrorClass::RateLimited));
    let b = ok();
    let router = Builder::default()
        .service(
            "a",
            WithRetryAfter {
                inner: a.clone(),
                after: Duration::from_secs(2),
            },
        )
        .service("b", b.clone())
        .retries(2)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("a"))]
    );
    assert_eq!((a.probe().calls(), b.probe().calls()), (3, 0));
    // Two waits of the provider's 2 s, each with at most 10 % jitter.
    let waited = Instant::now() - started;
    assert!(
        waited >= Duration::from_secs(4) && waited <= MS(4_400),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_moves_on_at_once() {
    let a = failing(ErrorClass::RateLimited);
    let router = Builder::default()
        .service(
            "a",
            WithRetryAfter {
                inner: a.clone(),
                after: Duration::from_secs(60),
            },
        )
        .service("b", ok())
        .retries(3)
        .backoff(Backoff {
            max_retry_after: Duration::from_secs(5),
            ..Backoff::default()
        })
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(router.oneshot(request()).await.is_ok());
    assert_eq!(a.probe().calls(), 1);
    assert_eq!(Instant::now(), started);
}

#[tokio::test(start_paused = true)]
async fn retries_without_retry_after_back_off_exponentially_then_move_on() {
    let a = failing(ErrorClass::Overloaded);
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", ok())
        .retries(2)
        .backoff(Backoff {
            base: MS(100),
            max: Duration::from_secs(1),
            ..Backoff::default()
        })
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(router.oneshot(request()).await.is_ok());
    assert_eq!(a.probe().calls(), 3);
    // Equal jitter: 50..100 ms, then 100..200 ms.
    let waited = Instant::now() - started;
    assert!(waited >= MS(150) && waited <= MS(300), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_error_stops_and_is_returned_as_is() {
    let (a, b) = (failing(ErrorClass::Client), ok());
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .retries(3)
        .build()
        .unwrap();
    let err = expect_err(router.oneshot(request()).await);
    let provider = err
        .downcast_ref::<ProviderError>()
        .expect("the provider's error");
    assert_eq!(provider.class(), ErrorClass::Client);
    assert_eq!((a.probe().calls(), b.probe().calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_content_filter_refusal_stops() {
    let b = ok();
    let router = Builder::default()
        .service("a", failing(ErrorClass::ContentFilter))
        .service("b", b.clone())
        .build()
        .unwrap();
    let err = expect_err(router.oneshot(request()).await);
    assert_eq!(streamgate_core::classify(&*err), ErrorClass::ContentFilter);
    assert_eq!(b.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn context_length_moves_on_or_stops_per_policy() {
    let b = ok();
    let next = Builder::default()
        .service("a", failing(ErrorClass::ContextLength))
        .service("b", b.clone())
        .build()
        .unwrap();
    assert!(next.oneshot(request()).await.is_ok());
    assert_eq!(b.probe().calls(), 1);

    let b = ok();
    let stop = Builder::default()
        .service("a", failing(ErrorClass::ContextLength))
        .service("b", b.clone())
        .context_length(ContextLengthPolicy::Stop)
        .build()
        .unwrap();
    let err = expect_err(stop.oneshot(request()).await);
    assert_eq!(streamgate_core::classify(&*err), ErrorClass::ContextLength);
    assert_eq!(b.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_first_content_fails_over_even_after_headers() {
    let a = ScriptedService::new(
        Script::new()
            .meta("role")
            .wait(MS(100))
            .fail(ErrorClass::Overloaded),
    );
    let b = ok();
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    // Only b's chunks reach the caller; a's held role chunk is gone.
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Meta("role")), Ok(TestChunk::Text("hello"))]
    );
    assert_eq!(b.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_commit_is_an_error_item_not_a_failover() {
    let a = ScriptedService::new(
        Script::new()
            .text("partial")
            .wait(MS(100))
            .fail(ErrorClass::Server),
    );
    let b = ok();
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .retries(2)
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("partial")), Err(ErrorClass::Server)]
    );
    assert_eq!((a.probe().calls(), b.probe().calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_backend_refuses_the_error_lists_each_with_its_retry_time() {
    let router = Builder::default()
        .service(
            "openai",
            RefuseUntil::always("openai", RejectReason::CircuitOpen, ok()),
        )
        .service(
            "anthropic",
            RefuseUntil::always("anthropic", RejectReason::QuotaExhausted, ok()),
        )
        .service(
            "gemini",
            TpmLayer::builder("gemini")
                .max_tokens_per_minute(10)
                .build()
                .unwrap()
                .layer(ok()),
        )
        .build()
        .unwrap();
    let err = expect_err(router.oneshot(request()).await);
    let failover = failover_error(&err);
    assert!(failover.all_rejected());
    assert_eq!(failover.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(
        err.to_string(),
        "all 3 backends unavailable: openai circuit open (retry in 12 s), \
         anthropic quota exhausted (retry in 12 s), gemini over TPM budget"
    );
    assert_eq!(streamgate_core::classify(&*err), ErrorClass::Rejected);
}

#[tokio::test(start_paused = true)]
async fn when_backends_fail_the_error_says_why_each_was_given_up() {
    let router = Builder::default()
        .service("a", failing(ErrorClass::Server))
        .service(
            "b",
            RefuseUntil::always("b", RejectReason::CircuitOpen, ok()),
        )
        .service("c", failing(ErrorClass::Overloaded))
        .build()
        .unwrap();
    let err = expect_err(router.oneshot(request()).await);
    let failover = failover_error(&err);
    assert!(!failover.all_rejected());
    let classes: Vec<_> = failover.attempts.iter().map(|a| a.class).collect();
    assert_eq!(
        classes,
        [
            ErrorClass::Server,
            ErrorClass::Rejected,
            ErrorClass::Overloaded
        ]
    );
    assert!(err
        .to_string()
        .starts_with("all 3 backends failed: a server: "));
    // The class of the last real failure.
    assert_eq!(streamgate_core::classify(&*err), ErrorClass::Overloaded);
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_earliest_retry_after_when_every_backend_refuses() {
    let start = Instant::now();
    let (events, sink) = sink();
    let b = ok();
    let router = Builder::default()
        .service(
            "a",
            RefuseUntil::until(
                "a",
                RejectReason::QuotaExhausted,
                start + Duration::from_secs(5),
                ok(),
            ),
        )
        .service(
            "b",
            RefuseUntil::until(
                "b",
                RejectReason::CircuitOpen,
                start + Duration::from_secs(2),
                b.clone(),
            ),
        )
        .wait_when_unavailable(Duration::from_secs(3))
        .sink(sink)
        .build()
        .unwrap();
    assert!(router.clone().oneshot(request()).await.is_ok());
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    assert_eq!(b.probe().calls(), 1);
    assert!(events.seen().contains(&Seen::Throttled {
        backend: "b".into(),
        waited: Duration::from_secs(2)
    }));

    // A wait beyond the maximum is not taken.
    let router = Builder::default()
        .service(
            "a",
            RefuseUntil::until(
                "a",
                RejectReason::QuotaExhausted,
                Instant::now() + Duration::from_secs(30),
                ok(),
            ),
        )
        .wait_when_unavailable(Duration::from_secs(3))
        .build()
        .unwrap();
    let before = Instant::now();
    let err = expect_err(router.oneshot(request()).await);
    assert!(failover_error(&err).all_rejected());
    assert_eq!(Instant::now(), before);
}

#[tokio::test(start_paused = true)]
async fn first_content_deadline_fails_over_and_the_last_attempt_gets_extra_time() {
    let stalls = || ScriptedService::new(Script::new().meta("role").stall());
    let late = || ScriptedService::new(Script::new().wait(MS(1_500)).text("late"));

    let (a, b) = (stalls(), late());
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .first_content_timeout(Duration::from_secs(1))
        .last_attempt_extra(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Instant::now();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(Instant::now() - start, MS(2_500));
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("late"))]
    );
    // The stalled attempt was cancelled by dropping its body at 1 s.
    assert_eq!(a.probe().bodies_dropped(), 1);
    assert_eq!(
        a.probe().last_drop_at(),
        Some(start + Duration::from_secs(1))
    );

    // Without the extra time the late backend misses the deadline too.
    let router = Builder::default()
        .service("a", stalls())
        .service("b", late())
        .first_content_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = expect_err(router.oneshot(request()).await);
    let failover = failover_error(&err);
    assert_eq!(
        failover
            .attempts
            .iter()
            .map(|a| a.class)
            .collect::<Vec<_>>(),
        [ErrorClass::Timeout, ErrorClass::Timeout]
    );
    assert_eq!(failover.attempts[1].message, "no content within 1 s");
}

/// Tells `board` that `backend` streamed `tokens` output tokens in `secs`
/// seconds after a first content after `ttfc_ms`, `n` times.
fn streamed(board: &Scoreboard, backend: &str, n: usize, ttfc_ms: u64, tokens: u64, secs: u64) {
    let backend = BackendId::new(backend);
    for _ in 0..n {
        replay(
            board,
            &RequestRecord {
                time_to_first_content: Some(MS(ttfc_ms)),
                duration: Duration::from_secs(secs),
                output_duration: Some(Duration::from_secs(secs)),
                streamed_output_tokens: tokens,
                chunks: tokens,
                ..record(&backend, "m", Outcome::Success)
            },
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_backend_is_tried_last_and_never_empties_the_pool() {
    let board = Scoreboard::new();
    board.min_throughput(&BackendId::new("slow"), 600);
    // Three streams of 3 tokens in 2 s: 90 tokens per minute.
    streamed(&board, "slow", 3, 10, 3, 2);
    assert!(
        board
            .view(&BackendId::new("slow"), "m", Instant::now())
            .slow
    );

    // The other backend's own circuit is open: the slow one still serves.
    let slow = ok();
    let fast_inner = ok();
    let breaker = RefuseUntil::always("fast", RejectReason::CircuitOpen, fast_inner.clone());
    let router = Failover::builder()
        .service("slow", slow.clone())
        .service("fast", breaker)
        .scoreboard(&board)
        .build()
        .unwrap();
    let response = router.clone().oneshot(request()).await.unwrap();
    let report = response.extensions().get::<FailoverReport>().unwrap();
    assert_eq!(report.served_by.as_str(), "slow");
    assert_eq!(report.skipped[0].rejected, Some(RejectReason::CircuitOpen));
    assert_eq!(drain(response.into_body()).await.len(), 2);
    assert_eq!((slow.probe().calls(), fast_inner.probe().calls()), (1, 0));

    // Once the other backend's circuit would admit again (the board heard
    // its refusal: retry in 12 s) and it works, it goes first and the slow
    // one is not called at all.
    tokio::time::advance(Duration::from_secs(12)).await;
    let fast = ok();
    let router = Failover::builder()
        .service("slow", slow.clone())
        .service("fast", fast.clone())
        .scoreboard(&board)
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        response
            .extensions()
            .get::<FailoverReport>()
            .unwrap()
            .served_by
            .as_str(),
        "fast"
    );
    assert_eq!((slow.probe().calls(), fast.probe().calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn when_every_backend_is_slow_the_order_stands() {
    let board = Scoreboard::new();
    for name in ["a", "b"] {
        board.min_throughput(&BackendId::new(name), 600);
        streamed(&board, name, 3, 10, 3, 2);
    }
    let (a, b) = (ok(), ok());
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .scoreboard(&board)
        .build()
        .unwrap();
    drain(router.oneshot(request()).await.unwrap().into_body()).await;
    assert_eq!((a.probe().calls(), b.probe().calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_refusing_backend_is_skipped_uncalled_until_its_retry_time() {
    let refused = ScriptedService::new(Script::new().text("after"));
    let refusing = RefuseUntil::until(
        "a",
        RejectReason::QuotaExhausted,
        Instant::now() + Duration::from_secs(20),
        refused.clone(),
    );
    let b = ok();
    let router = Builder::default()
        .service("a", refusing.clone())
        .service("b", b.clone())
        .build()
        .unwrap();
    // The first request meets the refusal; the router remembers it.
    let response = router.clone().oneshot(request()).await.unwrap();
    drain(response.into_body()).await;
    assert_eq!(refusing.refusals(), 1);
    // The next ones skip `a` without calling it, and say why.
    tokio::time::advance(Duration::from_secs(5)).await;
    let response = router.clone().oneshot(request()).await.unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    drain(response.into_body()).await;
    assert_eq!(refusing.refusals(), 1);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        report.skipped[0].rejected,
        Some(RejectReason::QuotaExhausted)
    );
    assert_eq!(report.skipped[0].retry_after, Some(Duration::from_secs(15)));
    assert_eq!(
        report.skipped[0].message,
        "a quota exhausted (retry in 15 s)"
    );
    // Once the retry time has passed, `a` is called again.
    tokio::time::advance(Duration::from_secs(15)).await;
    let response = router.oneshot(request()).await.unwrap();
    drain(response.into_body()).await;
    assert_eq!((refusing.refusals(), refused.probe().calls()), (1, 1));
    assert_eq!(b.probe().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_backend_cut_by_the_router_deadline_goes_last_until_it_answers_in_time() {
    let silent = ScriptedService::new(Script::new().wait(Duration::from_secs(60)).text("late"));
    let b = ok();
    let router = Builder::default()
        .service("silent", silent.clone())
        .service("b", b.clone())
        .first_content_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request()).await.unwrap();
    drain(response.into_body()).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "the deadline, once"
    );
    // The next requests go to `b` first, at once.
    for _ in 0..3 {
        let started = Instant::now();
        let response = router.clone().oneshot(request()).await.unwrap();
        assert_eq!(
            response
                .extensions()
                .get::<FailoverReport>()
                .unwrap()
                .served_by
                .as_str(),
            "b"
        );
        drain(response.into_body()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    assert_eq!((silent.probe().calls(), b.probe().calls()), (1, 4));
    let late = router
        .scoreboard()
        .view(&BackendId::new("silent"), "m", Instant::now());
    assert!(late.late);
    // After the board's late period it is tried first again.
    tokio::time::advance(router.scoreboard().late_for()).await;
    let response = router.oneshot(request());
    tokio::time::advance(Duration::from_secs(2)).await;
    drain(response.await.unwrap().into_body()).await;
    assert_eq!(silent.probe().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn round_robin_spreads_requests_evenly_and_reports_the_strategy() {
    let backends = [ok(), ok(), ok()];
    let router = Builder::default()
        .service("a", backends[0].clone())
        .service("b", backends[1].clone())
        .service("c", backends[2].clone())
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap();
    for _ in 0..30 {
        let response = router.clone().oneshot(request()).await.unwrap();
        assert_eq!(
            response
                .extensions()
                .get::<FailoverReport>()
                .unwrap()
                .strategy,
            "round_robin"
        );
        drain(response.into_body()).await;
    }
    let calls: Vec<_> = backends.iter().map(|b| b.probe().calls()).collect();
    assert_eq!(calls, [10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn round_robin_fails_over_to_the_next_in_turn() {
    let (a, b, c) = (failing(ErrorClass::Server), ok(), ok());
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .service("c", c.clone())
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..3 {
        let response = router.clone().oneshot(request()).await.unwrap();
        served.push(
            response
                .extensions()
                .get::<FailoverReport>()
                .unwrap()
                .served_by
                .clone(),
        );
        drain(response.into_body()).await;
    }
    assert_eq!(
        served.iter().map(BackendId::as_str).collect::<Vec<_>>(),
        ["b", "b", "c"]
    );
}

#[tokio::test(start_paused = true)]
async fn least_ttfc_prefers_the_backend_that_answers_first() {
    let board = Scoreboard::new();
    streamed(&board, "a", 1, 900, 10, 1);
    streamed(&board, "b", 1, 300, 10, 1);
    let (a, b) = (ok(), ok());
    let router = Builder::default()
        .service("a", a.clone())
        .service("b", b.clone())
        .strategy(Strategy::LeastTimeToFirstContent)
        .scoreboard(&board)
        .build()
        .unwrap();
    for _ in 0..5 {
        drain(router.clone().oneshot(request()).await.unwrap().into_body()).await;
    }
    assert_eq!((a.probe().calls(), b.probe().calls()), (0, 5));
}

#[tokio::test(start_paused = true)]
async fn sticky_keeps_a_session_on_its_backend_and_falls_back_while_it_refuses() {
    let backends = [ok(), ok(), ok()];
    let router = Builder::default()
        .service("a", backends[0].clone())
        .service("b", backends[1].clone())
        .service("c", backends[2].clone())
        .strategy(Strategy::Sticky)
        .session_key(|request: &TestRequest| Some(request.model().to_owned()))
        .build()
        .unwrap();
    let served_by = |model: &'static str| {
        let router = router.clone();
        async move {
            let response = router.oneshot(TestRequest::new(model)).await.unwrap();
            let by = response
                .extensions()
                .get::<FailoverReport>()
                .unwrap()
                .served_by
                .clone();
            drain(response.into_body()).await;
            by
        }
    };
    let home = served_by("session-1").await;
    for _ in 0..5 {
        assert_eq!(served_by("session-1").await, home);
    }
    // Its backend refuses for a while: the session falls back, then returns.
    router.scoreboard().record(&Event::Rejected {
        backend: &home,
        model: "session-1",
        reason: RejectReason::CircuitOpen,
        retry_after: Some(Duration::from_secs(30)),
    });
    let fallback = served_by("session-1").await;
    assert_ne!(fallback, home);
    assert_eq!(served_by("session-1").await, fallback);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(served_by("session-1").await, home);
}

#[test]
fn strategies_that_need_more_settings_say_so() {
    let err = |b: Builder| b.build().unwrap_err().to_string();
    let two = || Builder::default().service("a", ok()).service("b", ok());
    assert!(err(two().strategy(Strategy::Weighted(vec![1]))).contains("1 weights for 2 backends"));
    assert!(err(two().strategy(Strategy::Weighted(vec![0, 0]))).contains("at least one weight"));
    assert!(err(two().strategy(Strategy::Sticky)).contains("session key"));
    assert!(
        err(two().model_of("zz", |r: &TestRequest| r.model().to_owned()))
            .contains("unknown backend zz")
    );
}

#[test]
fn builder_rejects_settings_that_cannot_work() {
    let err = |b: Builder| b.build().unwrap_err().to_string();
    assert!(err(Builder::default()).contains("at least one backend"));
    assert!(err(Builder::default().service("a", ok()).service("a", ok())).contains("unique"));
    assert!(err(Builder::default().service("a", ok()).retries(11)).contains("retries"));
    assert!(err(Builder::default()
        .service("a", ok())
        .last_attempt_extra(MS(1)))
    .contains("first-content timeout"));
    assert!(err(Builder::default()
        .service("a", ok())
        .first_content_timeout(Duration::ZERO))
    .contains("above 0"));
}

#[tokio::test(start_paused = true)]
async fn a_last_attempt_extra_of_duration_max_means_no_deadline_instead_of_a_panic() {
    let late = ScriptedService::new(Script::new().wait(MS(1_500)).text("late"));
    let router = Builder::default()
        .service("only", late)
        .first_content_timeout(Duration::from_secs(1))
        .last_attempt_extra(Duration::MAX)
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("late"))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_after_some_waiting_gives_up_instead_of_overflowing() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use streamgate_core::{testing::ScriptBody, Rejected};

    let calls = Arc::new(AtomicU32::new(0));
    let refusing = {
        let calls = Arc::clone(&calls);
        tower::service_fn(move |_request: TestRequest| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let retry_after = if call == 0 { MS(2_000) } else { Duration::MAX };
            async move {
                Err::<http::Response<ScriptBody>, BoxError>(
                    Rejected::new("a".into(), RejectReason::QuotaExhausted)
                        .with_retry_after(Some(retry_after))
                        .into(),
                )
            }
        })
    };
    let router = Builder::default()
        .service("a", refusing)
        .wait_when_unavailable(Duration::from_secs(3))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = expect_err(router.oneshot(request()).await);
    assert!(failover_error(&err).all_rejected());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(Instant::now() - start, MS(2_000));
}

#[test]
fn builder_refuses_a_backoff_or_wait_that_could_sleep_for_ever() {
    let err = |b: Builder| b.build().unwrap_err().to_string();
    let infinite = Backoff {
        base: Duration::MAX,
        max: Duration::MAX,
        max_retry_after: Duration::from_secs(10),
    };
    assert!(err(Builder::default().service("a", ok()).backoff(infinite)).contains("at most 1 hour"));
    let patient = Backoff {
        max_retry_after: Duration::MAX,
        ..Backoff::default()
    };
    assert!(err(Builder::default().service("a", ok()).backoff(patient)).contains("at most 1 hour"));
    assert!(err(Builder::default()
        .service("a", ok())
        .wait_when_unavailable(Duration::MAX))
    .contains("at most 1 hour"));
    let hour = Backoff {
        base: Duration::from_secs(1),
        max: streamgate_failover::MAX_BACKOFF_DELAY,
        max_retry_after: streamgate_failover::MAX_BACKOFF_DELAY,
    };
    assert!(Builder::default()
        .service("a", ok())
        .backoff(hour)
        .build()
        .is_ok());
}
