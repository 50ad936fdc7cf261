#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{task::noop_waker_ref, StreamExt};
use tower::{Service, ServiceExt};

use super::{boxed, BoxStreamingService};
use crate::testing::{Script, ScriptedService, TestChunk, TestRequest};
use crate::{ErrorClass, ProviderError};

fn service(script: Script) -> (ScriptedService, BoxStreamingService<TestRequest, TestChunk>) {
    let client = ScriptedService::new(script);
    (client.clone(), boxed(client))
}

#[tokio::test(start_paused = true)]
async fn the_head_waits_for_the_client_and_the_body_streams_every_chunk() {
    let (client, service) = service(
        Script::new()
            .headers_after(Duration::from_millis(40))
            .meta("role")
            .wait(Duration::from_millis(10))
            .text("a")
            .text("b"),
    );
    let start = tokio::time::Instant::now();
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    assert_eq!(response.status(), 200);
    let chunks: Vec<TestChunk> = response
        .into_body()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(
        chunks,
        [
            TestChunk::Meta("role"),
            TestChunk::Text("a"),
            TestChunk::Text("b")
        ]
    );
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(client.probe().bodies_completed(), 1);
    assert_eq!(client.probe().futures_dropped(), 0);
    assert_eq!(client.probe().bodies_dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_keeps_its_error() {
    let (client, service) = service(Script::new().fail_call(ErrorClass::RateLimited));
    let Err(error) = service.oneshot(TestRequest::new("m")).await else {
        panic!("the scripted call must fail");
    };
    let error = error
        .downcast_ref::<ProviderError>()
        .expect("the client's own error, not a wrapper");
    assert_eq!(error.class(), ErrorClass::RateLimited);
    assert_eq!(client.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_in_the_body_reaches_the_caller_and_the_stream_goes_on() {
    let (_, service) = service(Script::new().text("a").fail(ErrorClass::Server).text("b"));
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let items: Vec<_> = response.into_body().collect().await;
    assert_eq!(items.len(), 3);
    let error = items[1].as_ref().unwrap_err();
    assert_eq!(
        error.downcast_ref::<ProviderError>().map(|e| e.class()),
        Some(ErrorClass::Server)
    );
    assert_eq!(items[2].as_ref().unwrap(), &TestChunk::Text("b"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_or_the_body_drops_the_client_s() {
    let (client, mut service) = service(
        Script::new()
            .headers_after(Duration::from_secs(1))
            .text("a")
            .stall(),
    );
    let mut future = Box::pin(service.call(TestRequest::new("m")));
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    drop(future);
    assert_eq!(client.probe().futures_dropped(), 1);

    let response = service.call(TestRequest::new("m")).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(body.next().await.unwrap().unwrap(), TestChunk::Text("a"));
    drop(body);
    assert_eq!(client.probe().bodies_dropped(), 1);
    assert_eq!(
        client.probe().futures_dropped(),
        1,
        "the head was taken, not dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_client_s() {
    let (client, service) = service(Script::new().text("a"));
    client.hold_readiness(true);
    let mut clone = service.clone();
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(clone.poll_ready(&mut cx).is_pending());
    client.hold_readiness(false);
    assert!(matches!(clone.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert!(format!("{service:?}").starts_with("BoxStreamingService"));
}

#[tokio::test(start_paused = true)]
async fn a_future_polled_after_it_completed_errs_instead_of_panicking() {
    let (_, mut service) = service(Script::new().text("a"));
    let mut future = service.call(TestRequest::new("m"));
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(matches!(
        Pin::new(&mut future).poll(&mut cx),
        Poll::Ready(Ok(_))
    ));
    let again = Pin::new(&mut future).poll(&mut cx);
    let Poll::Ready(Err(error)) = again else {
        panic!("a second poll must end in an error");
    };
    assert!(error.to_string().contains("after it completed"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn call_clone_readies_its_clone_inside_the_future() {
    let (client, service) = service(Script::new().meta("role").text("a"));
    client.hold_readiness(true);
    let mut future = Box::pin(service.call_clone(TestRequest::new("m")));
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert_eq!(client.probe().calls(), 0, "not called before it is ready");
    client.hold_readiness(false);
    let response = future.await.unwrap();
    assert_eq!(client.probe().calls(), 1);
    let chunks: Vec<TestChunk> = response
        .into_body()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(chunks, [TestChunk::Meta("role"), TestChunk::Text("a")]);
    assert_eq!(client.probe().bodies_completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn call_clone_dropped_before_readiness_never_calls() {
    let (client, service) = service(Script::new().text("a"));
    client.hold_readiness(true);
    let mut future = Box::pin(service.call_clone(TestRequest::new("m")));
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    drop(future);
    client.hold_readiness(false);
    assert_eq!(client.probe().calls(), 0);
    assert_eq!(client.probe().futures_dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn call_clone_keeps_the_client_s_timing_and_error() {
    let (client, service) = service(
        Script::new()
            .headers_after(Duration::from_millis(30))
            .fail_call(ErrorClass::Overloaded),
    );
    let start = tokio::time::Instant::now();
    let Err(error) = service.call_clone(TestRequest::new("m")).await else {
        panic!("the scripted call must fail");
    };
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(
        error.downcast_ref::<ProviderError>().map(|e| e.class()),
        Some(ErrorClass::Overloaded)
    );
    assert_eq!(client.probe().calls(), 1);
}
