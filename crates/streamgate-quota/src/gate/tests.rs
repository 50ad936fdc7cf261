#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use streamgate_core::{
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    BackendId, BoxError, ErrorClass, Event, MetricsSink, ProviderError, RejectReason, Rejected,
};
use tower::{service_fn, Layer, ServiceExt};

use super::QuotaLayer;
use crate::{ExhaustReason, QuotaStatus, QuotaTracker};

#[derive(Default)]
struct Rejections(Mutex<Vec<Option<Duration>>>);

impl MetricsSink for Rejections {
    fn record(&self, event: &Event<'_>) {
        if let Event::Rejected {
            reason: RejectReason::QuotaExhausted,
            retry_after,
            ..
        } = event
        {
            self.0.lock().unwrap().push(*retry_after);
        }
    }
}

type Body = futures::stream::Iter<std::vec::IntoIter<Result<TestChunk, BoxError>>>;

/// A service answering every call with `headers` and one content chunk.
fn with_headers(
    pairs: &'static [(&'static str, &'static str)],
) -> impl tower::Service<TestRequest, Response = Response<Body>, Error = BoxError, Future = impl Send>
       + Clone {
    service_fn(move |_req: TestRequest| async move {
        let mut response = Response::new(futures::stream::iter(vec![Ok(TestChunk::Text("hi"))]));
        for (name, value) in pairs {
            response
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        Ok::<_, BoxError>(response)
    })
}

fn backend() -> BackendId {
    BackendId::new("openai")
}

#[tokio::test(start_paused = true)]
async fn exhausted_key_is_rejected_without_calling_the_backend() {
    let tracker = QuotaTracker::new();
    let sink = Arc::new(Rejections::default());
    let inner = ScriptedService::new(Script::new().text("hi"));
    let service = QuotaLayer::builder(backend())
        .tracker(tracker.clone())
        .sink(sink.clone())
        .build()
        .unwrap()
        .layer(inner.clone());
    tracker.observe_rate_limited(
        &backend(),
        "m",
        &crate::QuotaInfo {
            retry_after: Some(Duration::from_secs(20)),
            ..Default::default()
        },
        tokio::time::Instant::now(),
    );

    let err = service
        .clone()
        .oneshot(TestRequest::new("m"))
        .await
        .map(|_| ())
        .expect_err("an error");
    let rejected = err.downcast_ref::<Rejected>().expect("a rejection");
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(20)));
    assert_eq!(inner.probe().calls(), 0);
    assert_eq!(*sink.0.lock().unwrap(), vec![Some(Duration::from_secs(20))]);

    // Another model of the same backend still passes.
    service.oneshot(TestRequest::new("other")).await.unwrap();
    assert_eq!(inner.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_remaining_in_headers_gates_until_the_reset() {
    let tracker = QuotaTracker::new();
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(with_headers(&[
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "2s"),
    ]));
    let response = service
        .clone()
        .oneshot(TestRequest::new("m"))
        .await
        .unwrap();
    let chunks: Vec<_> = response.into_body().collect().await;
    assert_eq!(chunks.len(), 1);

    let err = service
        .clone()
        .oneshot(TestRequest::new("m"))
        .await
        .map(|_| ())
        .expect_err("an error");
    assert_eq!(
        err.downcast_ref::<Rejected>().unwrap().retry_after,
        Some(Duration::from_secs(2))
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(service.oneshot(TestRequest::new("m")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn learns_from_a_provider_error_with_headers_and_body() {
    let tracker = QuotaTracker::new();
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(service_fn(
        |_req: TestRequest| async move {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-remaining-tokens", HeaderValue::from_static("0"));
            let body = br#"{"error":{"code":429,"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34.4s"}]}}"#;
            Err::<Response<Body>, BoxError>(
                ProviderError::new(ErrorClass::RateLimited, "slow down")
                    .with_status(StatusCode::TOO_MANY_REQUESTS)
                    .with_headers(headers)
                    .with_body_excerpt(body)
                    .into(),
            )
        },
    ));
    let err = service
        .clone()
        .oneshot(TestRequest::new("m"))
        .await
        .map(|_| ())
        .expect_err("an error");
    assert!(err.downcast_ref::<ProviderError>().is_some());
    let now = tokio::time::Instant::now();
    assert_eq!(
        tracker.status(&backend(), "m", now),
        QuotaStatus::Exhausted {
            until: now + Duration::from_millis(34_400),
            reason: ExhaustReason::RateLimited,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn provider_retry_after_is_used_when_headers_have_none() {
    let tracker = QuotaTracker::new();
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(service_fn(
        |_req: TestRequest| async move {
            Err::<Response<Body>, BoxError>(
                ProviderError::new(ErrorClass::RateLimited, "slow down")
                    .with_status(StatusCode::TOO_MANY_REQUESTS)
                    .with_retry_after(Duration::from_secs(3))
                    .into(),
            )
        },
    ));
    let _ = service.oneshot(TestRequest::new("m")).await;
    let refusal = tracker
        .check(&backend(), "m", 0, tokio::time::Instant::now())
        .unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn in_band_rate_limit_error_in_the_stream_exhausts_the_key() {
    let tracker = QuotaTracker::builder()
        .default_cooldown(Duration::from_secs(5))
        .build()
        .unwrap();
    let inner = ScriptedService::new(Script::new().text("a").fail(ErrorClass::RateLimited));
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(inner);
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let items: Vec<_> = response.into_body().collect().await;
    assert!(items.last().unwrap().is_err());
    let refusal = tracker
        .check(&backend(), "m", 0, tokio::time::Instant::now())
        .unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(5));
    assert_eq!(refusal.reason, ExhaustReason::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn other_failures_do_not_exhaust() {
    let tracker = QuotaTracker::new();
    let inner = ScriptedService::new(Script::new().fail_call(ErrorClass::Server));
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(inner);
    assert!(service.oneshot(TestRequest::new("m")).await.is_err());
    assert_eq!(
        tracker.status(&backend(), "m", tokio::time::Instant::now()),
        QuotaStatus::Available
    );
}

#[test]
fn body_is_unpin_when_the_inner_body_is() {
    fn assert_unpin<T: Unpin>() {}
    assert_unpin::<streamgate_core::guard::GuardBody<Body, super::QuotaObserver>>();
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_key_is_refused_at_once_while_the_backend_is_never_ready() {
    let tracker = QuotaTracker::new();
    let inner = ScriptedService::new(Script::new().text("hi"));
    inner.hold_readiness(true);
    let service = QuotaLayer::new(backend(), tracker.clone()).layer(inner.clone());
    tracker.observe_rate_limited(
        &backend(),
        "m",
        &crate::QuotaInfo {
            retry_after: Some(Duration::from_secs(20)),
            ..Default::default()
        },
        tokio::time::Instant::now(),
    );

    let err = service
        .oneshot(TestRequest::new("m"))
        .now_or_never()
        .expect("refused without waiting for readiness")
        .map(|_| ())
        .expect_err("a rejection");
    let rejected = err.downcast_ref::<Rejected>().expect("a rejection");
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(inner.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_are_counted_until_answered_or_dropped() {
    let tracker = QuotaTracker::new();
    let inner = ScriptedService::new(Script::new().text("hi"));
    let mut service = QuotaLayer::new(backend(), tracker.clone()).layer(inner.clone());
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("2"),
    );
    headers.insert(
        "x-ratelimit-reset-requests",
        HeaderValue::from_static("20s"),
    );
    let info = crate::QuotaInfo::from_headers(&headers, std::time::SystemTime::now());
    tracker.observe(&backend(), "m", &info, tokio::time::Instant::now());

    use tower::Service;
    let first = service.call(TestRequest::new("m"));
    let second = service.call(TestRequest::new("m"));
    assert_eq!(tracker.in_flight(&backend(), "m"), (2, 0));
    let err = service
        .call(TestRequest::new("m"))
        .await
        .map(|_| ())
        .expect_err("refused");
    let rejected = err.downcast_ref::<Rejected>().unwrap();
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(20)));

    // A cancelled request stops counting; an answered one too.
    drop(first);
    assert_eq!(tracker.in_flight(&backend(), "m"), (1, 0));
    let response = second.await.unwrap();
    assert_eq!(tracker.in_flight(&backend(), "m"), (0, 0));
    drop(response);
    service.call(TestRequest::new("m")).await.unwrap();
    // The refused call never reached the inner service.
    assert_eq!(inner.probe().calls(), 3);
}
