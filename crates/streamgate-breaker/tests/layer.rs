//! The layer on paused time, against the scripted service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{error::Error, time::Duration};

use common::{run, Recorder, Seen};
use futures::{stream, FutureExt};
use http::Response;
use streamgate_breaker::{Breaker, CircuitBreakerLayer, OpenWait, ResponseBody};
use streamgate_core::{
    classify,
    testing::{Script, ScriptBody, ScriptedService, TestChunk, TestRequest},
    BackendId, BoxError, BreakerState, ErrorClass, ProviderError, RejectReason, Rejected,
    StreamTimeout, TimeoutKind,
};
use tokio::time::{advance, sleep};
use tower::{service_fn, Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

fn request() -> TestRequest {
    TestRequest::new("m")
}

fn ten_tokens_then(class: ErrorClass) -> Script {
    Script::new().meta("role").tokens(10, MS).fail(class)
}

fn healthy() -> Script {
    Script::new().meta("role").tokens(3, MS)
}

fn rejection(err: &BoxError) -> &Rejected {
    err.downcast_ref::<Rejected>().expect("a rejection")
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_ten_tokens_counts_as_a_failure() {
    let inner = ScriptedService::new(ten_tokens_then(ErrorClass::Server));
    let breaker = Breaker::new("b");
    let mut service = breaker.layer().layer(inner.clone());
    for _ in 0..2 {
        assert!(run(&mut service, request()).await.is_err());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
    // Every response future resolved fine; the third stream's failure after
    // ten tokens is the third failure within 60 s.
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorClass::Server);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(inner.probe().calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_rejects_in_call_without_calling_the_inner_service() {
    let inner = ScriptedService::new(Script::new().fail_call(ErrorClass::Overloaded));
    let sink = Recorder::new();
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(inner.probe().calls(), 1);
    sink.take();

    advance(Duration::from_secs(10)).await;
    // poll_ready never reports the open circuit.
    assert!(ServiceExt::<TestRequest>::ready(&mut service).await.is_ok());
    let Err(err) = service
        .call(request())
        .now_or_never()
        .expect("resolves at once")
    else {
        panic!("admitted")
    };
    let rejected = rejection(&err);
    assert_eq!(rejected.reason, RejectReason::CircuitOpen);
    assert_eq!(rejected.backend, BackendId::new("b"));
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(20)));
    assert_eq!(classify(&*err), ErrorClass::Rejected);
    assert_eq!(inner.probe().calls(), 1);
    assert_eq!(
        sink.take(),
        [Seen::Rejected("m".into(), Some(Duration::from_secs(20)))]
    );
}

#[tokio::test(start_paused = true)]
async fn errors_before_the_first_content_are_recorded_from_the_future() {
    let inner = ScriptedService::new(
        Script::new()
            .headers_after(Duration::from_millis(200))
            .fail_call(ErrorClass::Server),
    );
    let breaker = Breaker::builder("b")
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.snapshot().consecutive_failures, 1);
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_records_nothing() {
    let inner = ScriptedService::new(Script::new().meta("role").tokens(2, MS).stall());
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    // Drop the future before the headers, then a body mid-stream.
    let pending = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(request());
    drop(pending);
    let response = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    let mut body = response.into_body();
    futures::StreamExt::next(&mut body).await.unwrap().unwrap();
    drop(body);
    assert_eq!(inner.probe().bodies_dropped(), 1);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.consecutive_failures, 0);
}

/// Opens `breaker` through `service` with one failing call, then waits out
/// the 30 s open wait.
async fn open_then_wait<S>(service: &mut S, breaker: &Breaker)
where
    S: Service<TestRequest, Response = Response<ResponseBody<ScriptBody>>, Error = BoxError>,
{
    assert!(run(service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_releases_its_place() {
    let inner = ScriptedService::new(healthy())
        .then(Script::new().fail_call(ErrorClass::Server))
        .then(Script::new().stall_call());
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    open_then_wait(&mut service, &breaker).await;

    let probe = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(request());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).retry_after, None);
    drop(probe);
    // The dropped probe recorded nothing; the next call is the probe now.
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(inner.probe().calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_probe_rejected_by_another_gate_releases_its_place() {
    let gate_says_no = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let inner = {
        let (gate_says_no, calls) = (gate_says_no.clone(), calls.clone());
        service_fn(move |_: TestRequest| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let no = gate_says_no.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    return Err(BoxError::from(ProviderError::new(
                        ErrorClass::Server,
                        "boom",
                    )));
                }
                if no {
                    return Err(
                        Rejected::new(BackendId::new("b"), RejectReason::QuotaExhausted).into(),
                    );
                }
                let body = stream::iter([Ok::<_, BoxError>(TestChunk::Text("hi"))]);
                Ok(Response::new(body))
            }
        })
    };
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    assert!(run(&mut service, request()).await.is_err());
    advance(Duration::from_secs(30)).await;

    gate_says_no.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).reason, RejectReason::QuotaExhausted);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    gate_says_no.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(run(&mut service, request()).await.unwrap(), 1);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_recovers_closes_it_and_transitions_are_reported() {
    let inner = ScriptedService::new(healthy())
        .then(ten_tokens_then(ErrorClass::Overloaded))
        .then(ten_tokens_then(ErrorClass::Overloaded));
    let sink = Recorder::new();
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    open_then_wait(&mut service, &breaker).await;
    // The probe fails mid-stream too: open again for the full wait.
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.snapshot().open_for, Some(Duration::from_secs(30)));
    advance(Duration::from_secs(30)).await;
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
    use BreakerState::*;
    assert_eq!(
        sink.transitions(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_first_content_opens_it_although_every_stream_succeeds() {
    let slow = Script::new()
        .meta("role")
        .wait(Duration::from_millis(2_001))
        .text("late");
    let fast = Script::new().text("quick");
    let inner = ScriptedService::new(fast).then(slow.clone()).then(slow);
    let breaker = Breaker::builder("b")
        .failure_rate(0.5)
        .slow_call_rate(0.5, Duration::from_secs(2))
        .minimum_calls(3)
        .count_window(10)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    assert_eq!(run(&mut service, request()).await.unwrap(), 2);
    assert_eq!(run(&mut service, request()).await.unwrap(), 2);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(run(&mut service, request()).await.unwrap(), 1);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!((snapshot.failures, snapshot.slow_calls), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn content_at_exactly_the_slow_threshold_is_not_slow() {
    let inner = ScriptedService::new(Script::new().wait(Duration::from_secs(2)).text("x"));
    let breaker = Breaker::builder("b")
        .slow_call_rate(1.0, Duration::from_secs(2))
        .minimum_calls(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    run(&mut service, request()).await.unwrap();
    assert_eq!(breaker.snapshot().slow_calls, 0);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

fn rate_limited(reset: Option<Duration>) -> BoxError {
    let mut err = ProviderError::new(ErrorClass::RateLimited, "slow down")
        .with_status(http::StatusCode::TOO_MANY_REQUESTS);
    if let Some(reset) = reset {
        err = err.with_retry_after(reset);
    }
    err.into()
}

fn failing_with(
    make: fn() -> BoxError,
) -> impl Service<
    TestRequest,
    Response = Response<stream::Empty<Result<TestChunk, BoxError>>>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |_: TestRequest| async move { Err(make()) })
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_with_a_reset_opens_exactly_until_then() {
    let breaker = Breaker::new("b");
    let mut service = breaker
        .layer()
        .layer(failing_with(|| rate_limited(Some(Duration::from_secs(17)))));
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    // Within the maximum wait: honoured as asked, and not flagged.
    assert!(!breaker.snapshot().wait_capped);
    advance(Duration::from_millis(16_999)).await;
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).retry_after, Some(MS));
    advance(MS).await;
    // The probe goes through (and is rate limited again).
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(classify(&*err), ErrorClass::RateLimited);
    assert_eq!(breaker.snapshot().open_for, Some(Duration::from_secs(17)));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_without_a_reset_does_not_count() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(failing_with(|| rate_limited(None)));
    for _ in 0..5 {
        assert!(run(&mut service, request()).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn honoring_retry_after_can_be_turned_off() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .honor_retry_after(false)
        .count_class(ErrorClass::RateLimited, true)
        .build()
        .unwrap();
    let mut service = breaker
        .layer()
        .layer(failing_with(|| rate_limited(Some(Duration::from_secs(17)))));
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.snapshot().open_for, Some(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn client_errors_do_not_count_and_timeouts_do() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(failing_with(|| {
        ProviderError::new(ErrorClass::ContextLength, "too long").into()
    }));
    for _ in 0..3 {
        assert!(run(&mut service, request()).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Closed);

    let mut service = breaker.layer().layer(failing_with(|| {
        StreamTimeout {
            kind: TimeoutKind::FirstContent,
            after: Duration::from_secs(5),
        }
        .into()
    }));
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_classifier_override_decides_what_counts() {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .classifier(|e: &(dyn Error + 'static)| match classify(e) {
            ErrorClass::Server => ErrorClass::Client,
            other => other,
        })
        .build()
        .unwrap();
    let inner = ScriptedService::new(ten_tokens_then(ErrorClass::Server));
    let mut service = breaker.layer().layer(inner);
    assert!(run(&mut service, request()).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_without_a_retry_time_and_never_probes() {
    let inner = ScriptedService::new(healthy());
    let breaker = Breaker::new("b");
    let mut service = breaker.layer().layer(inner.clone());
    breaker.force_open();
    advance(Duration::from_secs(3_600)).await;
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).retry_after, None);
    assert_eq!(breaker.state(), BreakerState::ForcedOpen);
    assert_eq!(inner.probe().calls(), 0);
    breaker.reset();
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn disabled_passes_everything_and_metrics_only_never_rejects() {
    let inner = ScriptedService::new(ten_tokens_then(ErrorClass::Server));
    let sink = Recorder::new();
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());

    breaker.disable();
    for _ in 0..3 {
        assert!(run(&mut service, request()).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Disabled);
    assert_eq!(breaker.snapshot().consecutive_failures, 0);

    breaker.metrics_only();
    for _ in 0..3 {
        let err = run(&mut service, request()).await.unwrap_err();
        assert_eq!(classify(&*err), ErrorClass::Server);
    }
    assert_eq!(inner.probe().calls(), 6);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.state, snapshot.circuit),
        (BreakerState::MetricsOnly, BreakerState::Open)
    );
    assert_eq!(snapshot.rejected, 0);
    use BreakerState::*;
    assert_eq!(
        sink.take(),
        [
            Seen::Transition(None, Closed, Disabled),
            Seen::Transition(None, Disabled, MetricsOnly),
            Seen::Transition(None, Closed, Open),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn open_wait_grows_while_probes_keep_failing() {
    let inner = ScriptedService::new(Script::new().fail_call(ErrorClass::Server));
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .open_wait(OpenWait::doubling(
            Duration::from_secs(1),
            Duration::from_secs(8),
        ))
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner);
    let mut waits = Vec::new();
    for _ in 0..5 {
        assert!(run(&mut service, request()).await.is_err());
        let wait = breaker.snapshot().open_for.unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
    }
    assert_eq!(waits, [1, 2, 4, 8, 8]);
}

#[tokio::test(start_paused = true)]
async fn per_model_breakers_are_independent() {
    let inner = ScriptedService::new(healthy()).then(Script::new().fail_call(ErrorClass::Server));
    let sink = Recorder::new();
    let registry = Breaker::builder("b")
        .consecutive_failures(1)
        .sink(sink.clone())
        .build_registry()
        .unwrap();
    let mut service = CircuitBreakerLayer::per_model(registry.clone()).layer(inner);
    assert!(run(&mut service, TestRequest::new("gpt-a")).await.is_err());
    assert_eq!(
        run(&mut service, TestRequest::new("gpt-b")).await.unwrap(),
        4
    );
    assert_eq!(registry.get("gpt-a").state(), BreakerState::Open);
    assert_eq!(registry.get("gpt-b").state(), BreakerState::Closed);
    assert!(run(&mut service, TestRequest::new("gpt-a")).await.is_err());
    let models: Vec<_> = registry.breakers().into_iter().map(|(m, _)| m).collect();
    assert_eq!(models, ["gpt-a", "gpt-b"]);
    assert_eq!(
        sink.take(),
        [
            Seen::Transition(
                Some("gpt-a".into()),
                BreakerState::Closed,
                BreakerState::Open
            ),
            // gpt-b's three tokens took 3 ms of the 30 s.
            Seen::Rejected("gpt-a".into(), Some(Duration::from_millis(29_997))),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_handle_and_the_service_share_one_state() {
    let inner = ScriptedService::new(Script::new().fail_call(ErrorClass::Server));
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    let mut one = layer.layer(inner.clone());
    let mut two = one.clone();
    assert!(run(&mut one, request()).await.is_err());
    let err = run(&mut two, request()).await.unwrap_err();
    assert_eq!(rejection(&err).reason, RejectReason::CircuitOpen);
    let handle = breaker.clone();
    handle.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    sleep(MS).await;
}

#[test]
fn the_body_is_unpin_when_the_inner_body_is() {
    fn unpin<T: Unpin>() {}
    unpin::<ResponseBody<ScriptBody>>();
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_at_once_while_its_backend_is_never_ready() {
    let inner = ScriptedService::new(healthy());
    inner.hold_readiness(true);
    let breaker = Breaker::new("a");
    let service = CircuitBreakerLayer::new(breaker.clone()).layer(inner.clone());
    breaker.force_open();

    // `oneshot` awaits the gate's readiness, then calls: the refusal must not
    // wait for the inner service, whose readiness never comes.
    let err = service
        .clone()
        .oneshot(request())
        .now_or_never()
        .expect("refused without waiting for readiness")
        .map(|_| ())
        .expect_err("a rejection");
    assert_eq!(rejection(&err).reason, RejectReason::CircuitOpen);
    assert_eq!(inner.probe().calls(), 0);

    // Admitted calls wait for the inner service to become ready.
    breaker.reset();
    let mut call = Box::pin(service.oneshot(request()));
    assert!((&mut call).now_or_never().is_none());
    inner.hold_readiness(false);
    let body = call.await.expect("served once ready").into_body();
    drop(body);
    assert_eq!(inner.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_defaults_a_hung_probe_frees_the_half_open_state_after_the_max_wait() {
    let inner = ScriptedService::new(healthy())
        .then(Script::new().fail_call(ErrorClass::Server))
        .then(Script::new().fail_call(ErrorClass::Server))
        .then(Script::new().fail_call(ErrorClass::Server))
        .then(Script::new().stall_call());
    let breaker = Breaker::new("b");
    let mut service = breaker.layer().layer(inner.clone());
    for _ in 0..3 {
        run(&mut service, request()).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(Duration::from_secs(30)).await;
    // The wait is over: the next call will be a probe.
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let mut prober = service.clone();
    let hung = tokio::spawn(async move { run(&mut prober, request()).await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(breaker.snapshot().probes_in_flight, 1);

    // While the probe hangs, other calls are refused...
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).reason, RejectReason::CircuitOpen);
    // ...until the default maximum half-open wait has passed: the breaker
    // reopens for its wait, then lets a new probe through.
    advance(streamgate_breaker::DEFAULT_HALF_OPEN_MAX_WAIT).await;
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).reason, RejectReason::CircuitOpen);
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(Duration::from_secs(30)).await;
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
    assert_eq!(breaker.state(), BreakerState::Closed);
    hung.abort();
}

#[tokio::test(start_paused = true)]
async fn a_tripping_error_with_retry_after_zero_opens_for_the_minimum() {
    let inner = ScriptedService::new(healthy()).then(
        Script::new()
            .fail_call(ErrorClass::Server)
            .retry_after(Duration::ZERO),
    );
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    run(&mut service, request()).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        breaker.snapshot().open_for,
        Some(streamgate_breaker::DEFAULT_MINIMUM_OPEN)
    );
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(rejection(&err).reason, RejectReason::CircuitOpen);
    assert_eq!(inner.probe().calls(), 1);
    advance(streamgate_breaker::DEFAULT_MINIMUM_OPEN).await;
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_reports_the_window_rates() {
    let inner = ScriptedService::new(healthy()).then(Script::new().fail_call(ErrorClass::Server));
    let breaker = Breaker::builder("b")
        .without_failures_within()
        .slow_call_rate(1.0, Duration::from_secs(5))
        .minimum_calls(4)
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    let empty = breaker.snapshot();
    assert_eq!(empty.failure_rate, None);
    assert!(!empty.minimum_calls_reached);
    run(&mut service, request()).await.unwrap_err();
    for _ in 0..3 {
        run(&mut service, request()).await.unwrap();
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.calls, 4);
    assert_eq!(snapshot.failure_rate, Some(0.25));
    assert_eq!(snapshot.slow_call_rate, Some(0.0));
    assert!(snapshot.minimum_calls_reached);
}

#[tokio::test(start_paused = true)]
async fn hostile_model_names_share_one_breaker_past_the_cap() {
    let registry = Breaker::builder("b").model_cap(4).build_registry().unwrap();
    let mut service =
        CircuitBreakerLayer::per_model(registry.clone()).layer(ScriptedService::new(healthy()));
    for i in 0..1_000 {
        run(&mut service, TestRequest::new(format!("model-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(registry.len(), 5);
    let models: Vec<String> = registry.breakers().into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        models,
        ["_OTHER", "model-0", "model-1", "model-2", "model-3"]
    );
    // Known models keep their own breaker.
    assert_eq!(registry.get("model-2").model(), Some("model-2"));
    assert_eq!(registry.get("model-999").model(), Some("_OTHER"));
}

/// Keeps whether each opening transition said its wait was capped.
#[derive(Default)]
struct CappedOpens(std::sync::Mutex<Vec<bool>>);

impl streamgate_core::MetricsSink for CappedOpens {
    fn record(&self, event: &streamgate_core::Event<'_>) {
        if let streamgate_core::Event::BreakerTransition {
            to: BreakerState::Open,
            wait_capped,
            ..
        } = event
        {
            self.0.lock().unwrap().push(*wait_capped);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_reset_of_decades_opens_for_the_max_wait_and_says_so() {
    let opens = std::sync::Arc::new(CappedOpens::default());
    let breaker = Breaker::builder("b").sink(opens.clone()).build().unwrap();
    // 999999999 s: a hostile or broken `retry-after`.
    let mut service = breaker.layer().layer(failing_with(|| {
        rate_limited(Some(Duration::from_secs(999_999_999)))
    }));
    run(&mut service, request()).await.unwrap_err();
    let snapshot = breaker.snapshot();
    assert_eq!(
        snapshot.open_for,
        Some(streamgate_breaker::DEFAULT_MAX_WAIT)
    );
    assert!(snapshot.wait_capped);
    let err = run(&mut service, request()).await.unwrap_err();
    assert_eq!(
        rejection(&err).retry_after,
        Some(streamgate_breaker::DEFAULT_MAX_WAIT)
    );
    assert_eq!(*opens.0.lock().unwrap(), [true]);
    // An hour later the backend gets its probe.
    advance(streamgate_breaker::DEFAULT_MAX_WAIT).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_tripping_error_with_a_huge_retry_after_is_capped_at_the_configured_max() {
    let opens = std::sync::Arc::new(CappedOpens::default());
    let inner = ScriptedService::new(healthy()).then(
        Script::new()
            .fail_call(ErrorClass::Server)
            .retry_after(Duration::from_secs(u64::MAX)),
    );
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .max_wait(Duration::from_secs(90))
        .open_wait(OpenWait::Fixed(Duration::from_secs(5)))
        .sink(opens.clone())
        .build()
        .unwrap();
    let mut service = breaker.layer().layer(inner.clone());
    run(&mut service, request()).await.unwrap_err();
    assert_eq!(breaker.snapshot().open_for, Some(Duration::from_secs(90)));
    assert!(breaker.snapshot().wait_capped);
    advance(Duration::from_secs(90)).await;
    // The probe succeeds and closes it; the flag goes with the open.
    assert_eq!(run(&mut service, request()).await.unwrap(), 4);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(!breaker.snapshot().wait_capped);
    assert_eq!(*opens.0.lock().unwrap(), [true]);
}

#[test]
fn a_max_wait_below_the_minimum_open_is_refused() {
    let err = Breaker::builder("b")
        .minimum_open(Duration::from_secs(2))
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "max_wait");
}
