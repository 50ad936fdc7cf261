//! The failover router over scripted backends, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{drain, expect_err, sink, RefuseUntil, Seen, WithRetryAfter};
use streamgate_core::{
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    BoxError, ErrorClass, FailoverError, ProviderError, RejectReason,
};
use streamgate_failover::{
    Backoff, ContextLengthPolicy, Failover, FailoverBuilder, FailoverReport, ThroughputGroup,
    TpmLayer,
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
            RefuseUntil {
                backend: "a".into(),
                reason: RejectReason::QuotaExhausted,
                until: Some(start + Duration::from_secs(5)),
                inner: ok(),
            },
        )
        .service(
            "b",
            RefuseUntil {
                backend: "b".into(),
                reason: RejectReason::CircuitOpen,
                until: Some(start + Duration::from_secs(2)),
                inner: b.clone(),
            },
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
            RefuseUntil {
                backend: "a".into(),
                reason: RejectReason::QuotaExhausted,
                until: Some(Instant::now() + Duration::from_secs(30)),
                inner: ok(),
            },
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

/// 3 tokens over 2 s of streaming: 90 output tokens per minute.
fn slow_backend() -> ScriptedService {
    ScriptedService::new(Script::new().tokens(3, Duration::from_secs(1)))
}

#[tokio::test(start_paused = true)]
async fn a_slow_backend_is_tried_last_and_never_empties_the_pool() {
    let group = ThroughputGroup::new();
    let gate = |name: &str| {
        TpmLayer::builder(name)
            .min_throughput(600)
            .min_samples(1)
            .group(&group)
            .build()
            .unwrap()
    };
    let (slow_gate, fast_gate) = (gate("slow"), gate("fast"));
    let slow = slow_backend();
    // Make the first backend measurably slow.
    let response = slow_gate
        .layer(slow.clone())
        .oneshot(request())
        .await
        .unwrap();
    drain(response.into_body()).await;
    assert!(slow_gate.throughput().is_slow(Instant::now()));

    // The second backend's own circuit is open: the group cannot see that.
    let fast_inner = ScriptedService::new(Script::new().text("fast"));
    let breaker = RefuseUntil::always("fast", RejectReason::CircuitOpen, fast_inner.clone());
    let router = Failover::builder()
        .service("slow", slow_gate.layer(slow.clone()))
        .service("fast", fast_gate.layer(breaker))
        .build()
        .unwrap();
    let response = router.clone().oneshot(request()).await.unwrap();
    assert_eq!(drain(response.into_body()).await.len(), 3);
    assert_eq!(
        slow.probe().calls(),
        2,
        "served by the slow backend as a last resort"
    );

    // When the other backend works, the slow one is skipped.
    let fast = ScriptedService::new(Script::new().text("fast"));
    let router = Failover::builder()
        .service("slow", slow_gate.layer(slow.clone()))
        .service("fast", gate("fast2").layer(fast.clone()))
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert_eq!(
        drain(response.into_body()).await,
        [Ok(TestChunk::Text("fast"))]
    );
    assert_eq!((slow.probe().calls(), fast.probe().calls()), (2, 1));
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
