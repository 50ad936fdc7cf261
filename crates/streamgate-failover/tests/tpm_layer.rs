//! The TPM gates around a scripted backend, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{drain, expect_err, sink, Seen};
use futures::{FutureExt, StreamExt};
use streamgate_core::{
    testing::{Script, ScriptedService, TestRequest},
    BoxError, ErrorClass, RejectReason, Rejected, Usage,
};
use streamgate_failover::{TpmLayer, TpmSnapshot};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn rejected(error: &BoxError) -> &Rejected {
    error.downcast_ref::<Rejected>().expect("a rejection")
}

#[tokio::test(start_paused = true)]
async fn budget_reserves_the_estimate_and_reconciles_with_reported_usage() {
    let backend = ScriptedService::new(
        Script::new()
            .wait(MS(500))
            .text("hi")
            .usage(Usage::new(300, 200)),
    );
    let (events, sink) = sink();
    let layer = TpmLayer::builder("a")
        .max_tokens_per_minute(1000)
        .sink(sink)
        .build()
        .unwrap();
    let mut svc = layer.layer(backend.clone());
    let t0 = Instant::now();

    let response = ServiceExt::<TestRequest>::ready(&mut svc)
        .await
        .unwrap()
        .call(TestRequest::new("m").with_estimate(600))
        .await
        .unwrap();
    // In flight: the estimate is reserved, nothing is counted yet.
    assert_eq!(
        layer.snapshot("m", Instant::now()),
        TpmSnapshot {
            tokens_per_minute: 0,
            requests_per_minute: 1,
            reserved: 600
        }
    );
    // A second request that would exceed the budget together with the
    // reservation is refused without calling the backend.
    let err = expect_err(svc.call(TestRequest::new("m").with_estimate(600)).await);
    assert_eq!(rejected(&err).reason, RejectReason::TpmBudget);
    // Expiry cannot free what is only reserved: no retry time is known.
    assert_eq!(rejected(&err).retry_after, None);
    assert_eq!(backend.probe().calls(), 1);
    assert_eq!(
        events.seen(),
        [Seen::Rejected {
            backend: "a".into(),
            reason: RejectReason::TpmBudget
        }]
    );

    let items = drain(response.into_body()).await;
    assert_eq!(items.len(), 2);
    // The stream ended: the reservation became the reported 500 tokens.
    assert_eq!(
        layer.snapshot("m", Instant::now()),
        TpmSnapshot {
            tokens_per_minute: 500,
            requests_per_minute: 1,
            reserved: 0
        }
    );

    // 500 used + 500 estimate fits exactly; one more token does not, and
    // the rejection says when the used 500 leave the window.
    let ok = svc.call(TestRequest::new("m").with_estimate(500)).await;
    assert!(ok.is_ok());
    drop(ok);
    tokio::time::advance(MS(2_000)).await;
    let err = expect_err(svc.call(TestRequest::new("m").with_estimate(1)).await);
    let retry_after = rejected(&err).retry_after.unwrap();
    // The usage was recorded in the window's second 0 (at 0.5 s) and so
    // counts until the start of second 61; the dropped response kept its
    // estimate, recorded at the same second.
    assert_eq!(Instant::now() - t0, MS(2_500));
    assert_eq!(retry_after, MS(61_000 - 2_500));
    tokio::time::advance(retry_after).await;
    assert!(svc
        .call(TestRequest::new("m").with_estimate(1000))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn without_reported_usage_the_estimate_plus_streamed_output_is_recorded() {
    let backend = ScriptedService::new(Script::new().tokens(5, MS(100)));
    let layer = TpmLayer::builder("a").build().unwrap();
    let svc = layer.layer(backend);
    let response = svc
        .oneshot(TestRequest::new("m").with_estimate(100))
        .await
        .unwrap();
    drain(response.into_body()).await;
    assert_eq!(layer.snapshot("m", Instant::now()).tokens_per_minute, 105);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_stream_keeps_its_estimate() {
    let backend = ScriptedService::new(Script::new().tokens(50, MS(100)));
    let layer = TpmLayer::builder("a").build().unwrap();
    let svc = layer.layer(backend.clone());
    let response = svc
        .oneshot(TestRequest::new("m").with_estimate(400))
        .await
        .unwrap();
    let mut body = response.into_body();
    for _ in 0..3 {
        body.next().await.unwrap().unwrap();
    }
    drop(body);
    assert_eq!(backend.probe().bodies_dropped(), 1);
    assert_eq!(
        layer.snapshot("m", Instant::now()),
        TpmSnapshot {
            tokens_per_minute: 403,
            requests_per_minute: 1,
            reserved: 0
        }
    );

    // Dropped before the response: the estimate alone.
    let layer = TpmLayer::builder("a").build().unwrap();
    let svc = layer.layer(ScriptedService::new(Script::new().stall_call()));
    let future = svc.oneshot(TestRequest::new("m").with_estimate(70));
    assert!(future.now_or_never().is_none());
    assert_eq!(layer.snapshot("m", Instant::now()).tokens_per_minute, 70);
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_by_the_provider_records_no_tokens() {
    let backend = ScriptedService::new(Script::new().fail_call(ErrorClass::RateLimited));
    let layer = TpmLayer::builder("a")
        .max_tokens_per_minute(1000)
        .build()
        .unwrap();
    let err = expect_err(
        layer
            .layer(backend)
            .oneshot(TestRequest::new("m").with_estimate(900))
            .await,
    );
    assert_eq!(streamgate_core::classify(&*err), ErrorClass::RateLimited);
    assert_eq!(
        layer.snapshot("m", Instant::now()),
        TpmSnapshot {
            tokens_per_minute: 0,
            requests_per_minute: 1,
            reserved: 0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn per_model_meters_keep_separate_budgets() {
    let backend = ScriptedService::new(Script::new().stall_call());
    let layer = TpmLayer::builder("a")
        .max_tokens_per_minute(100)
        .per_model()
        .build()
        .unwrap();
    let mut svc = layer.layer(backend);
    let _a = svc.call(TestRequest::new("gpt-4o").with_estimate(100));
    let _b = svc.call(TestRequest::new("gpt-4o-mini").with_estimate(100));
    let err = expect_err(svc.call(TestRequest::new("gpt-4o").with_estimate(1)).await);
    assert_eq!(rejected(&err).reason, RejectReason::TpmBudget);
    assert_eq!(layer.snapshot("gpt-4o", Instant::now()).reserved, 100);
    assert_eq!(layer.snapshot("gpt-4o-mini", Instant::now()).reserved, 100);
    assert_eq!(
        layer.snapshot("unknown", Instant::now()),
        TpmSnapshot::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_cannot_all_slip_under_the_budget() {
    // Requests stay in flight (the backend never answers), so only the
    // reservations hold the budget: exactly 1000 / 10 = 100 may pass.
    let backend = ScriptedService::new(Script::new().stall_call());
    let layer = TpmLayer::builder("a")
        .max_tokens_per_minute(1000)
        .build()
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(400));
    let tasks: Vec<_> = (0..400)
        .map(|_| {
            let mut svc = layer.layer(backend.clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let future = svc.call(TestRequest::new("m").with_estimate(10));
                let mut future = Box::pin(future);
                // A refusal resolves at once; an admitted request is pending.
                match (&mut future).now_or_never() {
                    Some(result) => {
                        let err = expect_err(result);
                        assert_eq!(rejected(&err).reason, RejectReason::TpmBudget);
                        None
                    }
                    None => Some(future),
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        if let Some(future) = task.await.unwrap() {
            admitted.push(future);
        }
    }
    assert_eq!(admitted.len(), 100);
    assert_eq!(backend.probe().calls(), 100);
    assert_eq!(layer.snapshot("m", Instant::now()).reserved, 1000);
    drop(admitted);
    // Cancelled, they keep their estimates.
    let snapshot = layer.snapshot("m", Instant::now());
    assert_eq!(snapshot.reserved, 0);
    assert_eq!(snapshot.tokens_per_minute, 1000);
}

#[test]
fn builder_rejects_settings_that_cannot_work() {
    let err = |b: streamgate_failover::TpmLayerBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(TpmLayer::builder("a").max_tokens_per_minute(0)),
        "invalid configuration: max tokens per minute must be above 0"
    );
}

#[tokio::test(start_paused = true)]
async fn an_over_budget_request_is_refused_at_once_while_the_backend_is_never_ready() {
    let backend = ScriptedService::new(Script::new().text("hi"));
    backend.hold_readiness(true);
    let layer = TpmLayer::builder("a")
        .max_tokens_per_minute(1000)
        .build()
        .unwrap();
    let svc = layer.layer(backend.clone());

    let err = expect_err(
        svc.oneshot(TestRequest::new("m").with_estimate(5_000))
            .now_or_never()
            .expect("refused without waiting for readiness"),
    );
    assert_eq!(rejected(&err).reason, RejectReason::TpmBudget);
    assert_eq!(backend.probe().calls(), 0);
}
