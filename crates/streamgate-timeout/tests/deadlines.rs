//! The layer's deadlines on paused tokio time, against a scripted service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use http::Response;
use streamgate_core::{
    classify,
    testing::{Script, ScriptBody, ScriptedService, TestChunk, TestRequest},
    BoxError, Chunk, ErrorClass, ProviderError, Usage,
};
use streamgate_timeout::{
    FirstChunkTimeoutLayer, StreamTimeout, TimeoutBody, TimeoutConfig, TimeoutKind,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type Body = TimeoutBody<ScriptBody, TestChunk>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn layer(first: u64, idle: Option<u64>, total: Option<u64>) -> FirstChunkTimeoutLayer {
    let mut builder = TimeoutConfig::builder(ms(first));
    if let Some(idle) = idle {
        builder = builder.idle(ms(idle));
    }
    if let Some(total) = total {
        builder = builder.total(ms(total));
    }
    FirstChunkTimeoutLayer::from_config(builder.build().unwrap())
}

async fn call(
    layer: FirstChunkTimeoutLayer,
    inner: &ScriptedService,
) -> Result<Response<Body>, BoxError> {
    layer
        .layer(inner.clone())
        .oneshot(TestRequest::new("model"))
        .await
}

/// The error of a call that must fail (the scripted body has no `Debug`, so
/// `unwrap_err` is not available).
fn failed<T>(result: Result<T, BoxError>) -> BoxError {
    match result {
        Ok(_) => panic!("the call succeeded"),
        Err(error) => error,
    }
}

fn timeout_of(error: &BoxError) -> Option<StreamTimeout> {
    error.downcast_ref::<StreamTimeout>().copied()
}

/// The item a body yields when its `kind` deadline of `after` ms cuts it.
fn cut(kind: TimeoutKind, after: u64) -> Result<TestChunk, Option<StreamTimeout>> {
    Err(Some(StreamTimeout {
        kind,
        after: ms(after),
    }))
}

/// Every item of a body, errors rendered as their timeout (or `None`).
async fn drain(body: &mut Body) -> Vec<Result<TestChunk, Option<StreamTimeout>>> {
    let mut items = Vec::new();
    while let Some(item) = body.next().await {
        items.push(item.map_err(|e| timeout_of(&e)));
    }
    items
}

#[tokio::test(start_paused = true)]
async fn pre_content_chunks_are_replayed_in_order_with_their_usage() {
    let prompt_usage = Usage::new(12, 0);
    let final_usage = Usage::new(12, 2);
    let inner = ScriptedService::new(
        Script::new()
            .headers_after(ms(20))
            .meta("role")
            .usage(prompt_usage)
            .wait(ms(50))
            .meta("ping")
            .wait(ms(50))
            .text("hello")
            .text("world")
            .usage(final_usage),
    );
    let start = Instant::now();

    let response = call(layer(200, Some(100), Some(1000)), &inner)
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(120), "commits at the first content");
    let mut body = response.into_body();
    let items = drain(&mut body).await;

    assert_eq!(
        items,
        [
            Ok(TestChunk::Meta("role")),
            Ok(TestChunk::Usage(prompt_usage)),
            Ok(TestChunk::Meta("ping")),
            Ok(TestChunk::Text("hello")),
            Ok(TestChunk::Text("world")),
            Ok(TestChunk::Usage(final_usage)),
        ]
    );
    let mut usage = None;
    for chunk in items.iter().flatten() {
        Usage::merge_option(&mut usage, chunk.usage());
    }
    assert_eq!(usage, Some(final_usage));
    assert_eq!(inner.probe().bodies_completed(), 1);
    assert_eq!(inner.probe().bodies_dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn ping_only_stream_times_out_at_the_first_content_deadline() {
    let mut script = Script::new().headers_after(ms(10)).meta("role");
    for _ in 0..20 {
        script = script.wait(ms(30)).meta("ping");
    }
    let inner = ScriptedService::new(script.stall());
    let start = Instant::now();

    let error = failed(call(layer(200, None, None), &inner).await);

    assert_eq!(
        timeout_of(&error),
        Some(StreamTimeout {
            kind: TimeoutKind::FirstContent,
            after: ms(200)
        })
    );
    assert_eq!(start.elapsed(), ms(200), "pings must not move the deadline");
    assert_eq!(classify(&*error), ErrorClass::Timeout);
}

#[tokio::test(start_paused = true)]
async fn fast_headers_with_late_content_time_out_and_drop_the_body() {
    let inner = ScriptedService::new(
        Script::new()
            .headers_after(ms(5))
            .meta("role")
            .wait(ms(300))
            .text("too late"),
    );
    let start = Instant::now();

    let error = failed(call(layer(200, None, None), &inner).await);

    assert_eq!(
        timeout_of(&error).map(|t| t.kind),
        Some(TimeoutKind::FirstContent)
    );
    let probe = inner.probe();
    assert_eq!(probe.bodies_dropped(), 1);
    assert_eq!(probe.futures_dropped(), 0);
    assert_eq!(probe.last_drop_at(), Some(start + ms(200)));
}

#[tokio::test(start_paused = true)]
async fn content_in_time_is_not_a_timeout() {
    let inner = ScriptedService::new(
        Script::new()
            .headers_after(ms(50))
            .meta("role")
            .wait(ms(100))
            .text("first")
            // Gaps far longer than the first-content deadline are fine
            // when no idle deadline is set.
            .tokens(3, ms(500)),
    );
    let start = Instant::now();

    let response = call(layer(200, None, None), &inner).await.unwrap();
    assert_eq!(start.elapsed(), ms(150));
    let items = drain(&mut response.into_body()).await;

    assert_eq!(items.len(), 5);
    assert!(items.iter().all(Result::is_ok));
    assert_eq!(start.elapsed(), ms(1650));
    assert_eq!(inner.probe().bodies_completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn content_arriving_exactly_at_the_deadline_is_not_a_timeout() {
    let inner = ScriptedService::new(Script::new().wait(ms(200)).text("just in time"));

    let response = call(layer(200, None, None), &inner).await;

    assert!(response.is_ok(), "ready content wins over the deadline");
}

#[tokio::test(start_paused = true)]
async fn idle_deadline_fires_after_the_last_content_and_ignores_pings() {
    let inner = ScriptedService::new(
        Script::new()
            .wait(ms(50))
            .text("a")
            .wait(ms(80))
            .text("b")
            // Pings after content do not restart the idle gap either.
            .wait(ms(30))
            .meta("ping")
            .wait(ms(30))
            .meta("ping")
            .wait(ms(30))
            .meta("ping")
            .stall(),
    );
    let start = Instant::now();

    let response = call(layer(200, Some(100), None), &inner).await.unwrap();
    let mut body = response.into_body();
    let items = drain(&mut body).await;

    assert_eq!(
        items,
        [
            Ok(TestChunk::Text("a")),
            Ok(TestChunk::Text("b")),
            Ok(TestChunk::Meta("ping")),
            Ok(TestChunk::Meta("ping")),
            Ok(TestChunk::Meta("ping")),
            cut(TimeoutKind::Idle, 100),
        ]
    );
    assert_eq!(inner.probe().last_drop_at(), Some(start + ms(230)));
    assert_eq!(inner.probe().bodies_dropped(), 1);
    assert!(body.next().await.is_none(), "the body ends after a timeout");
}

#[tokio::test(start_paused = true)]
async fn total_deadline_fires_mid_stream_at_its_instant() {
    let inner = ScriptedService::new(Script::new().tokens(100, ms(40)));
    let start = Instant::now();

    let response = call(layer(200, Some(100), Some(500)), &inner)
        .await
        .unwrap();
    let items = drain(&mut response.into_body()).await;

    let (last, chunks) = items.split_last().unwrap();
    assert_eq!(chunks.len(), 12, "tokens at 40, 80, … 480 ms");
    assert!(chunks.iter().all(Result::is_ok));
    assert_eq!(last, &cut(TimeoutKind::Total, 500));
    assert_eq!(inner.probe().last_drop_at(), Some(start + ms(500)));
    assert_eq!(inner.probe().bodies_dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn stalled_response_future_times_out_and_is_dropped_at_the_deadline() {
    let inner = ScriptedService::new(Script::new().stall_call());
    let start = Instant::now();

    let error = failed(call(layer(200, None, Some(1000)), &inner).await);

    assert_eq!(
        timeout_of(&error).map(|t| t.kind),
        Some(TimeoutKind::FirstContent)
    );
    let probe = inner.probe();
    assert_eq!(probe.futures_dropped(), 1);
    assert_eq!(probe.bodies_dropped(), 0);
    assert_eq!(probe.last_drop_at(), Some(start + ms(200)));
}

#[tokio::test(start_paused = true)]
async fn error_before_content_passes_through_as_the_inner_error() {
    let inner = ScriptedService::new(
        Script::new()
            .headers_after(ms(10))
            .fail_call(ErrorClass::RateLimited),
    )
    .then(
        Script::new()
            .meta("role")
            .wait(ms(20))
            .fail(ErrorClass::Overloaded),
    );
    let start = Instant::now();

    let in_stream = failed(call(layer(200, None, None), &inner).await);
    assert_eq!(start.elapsed(), ms(20));
    let at_call = failed(call(layer(200, None, None), &inner).await);
    assert_eq!(start.elapsed(), ms(30));

    for (error, class) in [
        (in_stream, ErrorClass::Overloaded),
        (at_call, ErrorClass::RateLimited),
    ] {
        assert!(timeout_of(&error).is_none());
        let provider = error
            .downcast_ref::<ProviderError>()
            .expect("the inner error");
        assert_eq!(provider.class(), class);
    }
}

#[tokio::test(start_paused = true)]
async fn error_after_content_is_an_item_not_a_timeout() {
    let inner = ScriptedService::new(Script::new().text("a").fail(ErrorClass::Server));

    let response = call(layer(200, Some(100), None), &inner).await.unwrap();
    let mut body = response.into_body();

    assert_eq!(body.next().await.unwrap().unwrap(), TestChunk::Text("a"));
    let error = body.next().await.unwrap().unwrap_err();
    assert_eq!(classify(&*error), ErrorClass::Server);
    assert!(timeout_of(&error).is_none());
}

#[tokio::test(start_paused = true)]
async fn without_idle_or_total_a_committed_stream_is_never_cut() {
    let inner = ScriptedService::new(Script::new().text("a").stall());

    let response = call(layer(200, None, None), &inner).await.unwrap();
    let mut body = response.into_body();
    assert!(body.next().await.is_some());

    let waited = tokio::time::timeout(Duration::from_secs(3600), body.next()).await;
    assert!(waited.is_err(), "still waiting after an hour");
    assert_eq!(inner.probe().bodies_dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn time_the_caller_spends_between_polls_is_not_idle_time() {
    let inner = ScriptedService::new(Script::new().text("a").text("b").text("c"));

    let response = call(layer(200, Some(100), None), &inner).await.unwrap();
    let mut body = response.into_body();
    let mut items = Vec::new();
    while let Some(item) = body.next().await {
        items.push(item.map_err(|e| e.to_string()));
        // A slow consumer: five idle gaps between reads.
        tokio::time::sleep(ms(500)).await;
    }

    assert_eq!(items.len(), 3);
    assert!(items.iter().all(Result::is_ok), "{items:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_drops_the_inner_request() {
    let inner = ScriptedService::new(Script::new().stall_call());
    let start = Instant::now();

    let waited = tokio::time::timeout(ms(50), call(layer(200, None, None), &inner)).await;

    assert!(waited.is_err());
    assert_eq!(inner.probe().futures_dropped(), 1);
    assert_eq!(inner.probe().last_drop_at(), Some(start + ms(50)));
}

#[tokio::test(start_paused = true)]
async fn the_body_is_unpin_so_timeouts_stack() {
    fn assert_unpin<T: Unpin>() {}
    assert_unpin::<Body>();

    // An outer layer commits the inner layer's (already committed) body
    // again; the inner, shorter deadline is the one that fires.
    let inner = ScriptedService::new(Script::new().meta("role").stall());
    let stacked = layer(500, None, None).layer(layer(200, None, None).layer(inner.clone()));
    let start = Instant::now();

    let error = failed(stacked.oneshot(TestRequest::new("model")).await);

    assert_eq!(timeout_of(&error).map(|t| t.after), Some(ms(200)));
    assert_eq!(start.elapsed(), ms(200));
}

#[tokio::test(start_paused = true)]
async fn inner_request_is_dropped_before_the_error_is_returned() {
    let inner =
        ScriptedService::new(Script::new().stall_call()).then(Script::new().text("a").stall());
    let mut service = layer(200, Some(100), None).layer(inner.clone());
    let mut call = || {
        ServiceExt::<TestRequest>::ready(&mut service)
            .now_or_never()
            .expect("always ready")
            .unwrap()
            .call(TestRequest::new("model"))
    };

    // Keep our futures and bodies alive: only the layer may drop the inner ones.
    let mut committed = call();
    let mut body = (&mut committed).await.unwrap().into_body();
    let mut stalled = call();

    let error = failed((&mut stalled).await);
    assert_eq!(
        timeout_of(&error).map(|t| t.kind),
        Some(TimeoutKind::FirstContent)
    );
    assert_eq!(inner.probe().futures_dropped(), 1);

    assert!(body.next().await.unwrap().is_ok());
    let error = body.next().await.unwrap().unwrap_err();
    assert_eq!(timeout_of(&error).map(|t| t.kind), Some(TimeoutKind::Idle));
    assert_eq!(inner.probe().bodies_dropped(), 1);
    drop((committed, stalled, body));
}

#[tokio::test(start_paused = true)]
async fn steady_content_just_inside_the_idle_gap_never_times_out_then_a_stall_does_exactly() {
    // Each gap is 90 ms under a 100 ms idle limit: the timer set at an older
    // deadline fires, finds the deadline moved on, and waits again — ten
    // times — without ever reporting a timeout; then the stall expires
    // exactly one idle gap after the last content.
    let mut script = Script::new().wait(ms(10)).text("first");
    for _ in 0..10 {
        script = script.wait(ms(90)).text("tok");
    }
    let inner = ScriptedService::new(script.stall());
    let start = Instant::now();

    let response = call(layer(1000, Some(100), None), &inner).await.unwrap();
    let mut body = response.into_body();
    let items = drain(&mut body).await;

    assert_eq!(items.len(), 12);
    assert!(items[..11].iter().all(Result::is_ok), "{items:?}");
    assert_eq!(items[11], cut(TimeoutKind::Idle, 100));
    // Last content at 10 + 10 × 90 = 910 ms; idle expiry 100 ms later.
    assert_eq!(inner.probe().last_drop_at(), Some(start + ms(1010)));
}

#[tokio::test(start_paused = true)]
async fn a_body_polled_by_another_task_is_still_woken_by_its_deadline() {
    let inner = ScriptedService::new(Script::new().text("a").stall());
    let response = call(layer(200, Some(100), None), &inner).await.unwrap();
    let mut body = response.into_body();
    assert!(body.next().await.unwrap().is_ok());
    let start = Instant::now();

    // A first wait under a waker nobody listens to, as when a body moves
    // between tasks; the timer must wake whichever task polls it next.
    let mut elsewhere = std::task::Context::from_waker(futures::task::noop_waker_ref());
    assert!(body.poll_next_unpin(&mut elsewhere).is_pending());
    let item = tokio::time::timeout(ms(1_000), body.next())
        .await
        .expect("the idle deadline wakes the task polling now");

    let error = item.unwrap().unwrap_err();
    assert_eq!(timeout_of(&error).map(|t| t.kind), Some(TimeoutKind::Idle));
    assert_eq!(start.elapsed(), ms(100));
}

#[tokio::test(start_paused = true)]
async fn the_first_content_deadline_counts_from_the_call_even_when_the_first_wait_is_later() {
    let inner = ScriptedService::new(Script::new().stall_call());
    let start = Instant::now();

    // The timer is made at the first wait, here 150 ms after the call.
    let mut service = layer(200, None, None).layer(inner.clone());
    let future = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("model"));
    tokio::time::advance(ms(150)).await;
    let error = failed(future.await);

    assert_eq!(
        timeout_of(&error).map(|t| t.kind),
        Some(TimeoutKind::FirstContent)
    );
    assert_eq!(inner.probe().last_drop_at(), Some(start + ms(200)));
}

#[tokio::test(start_paused = true)]
async fn an_answer_ready_at_once_still_has_its_idle_and_total_deadlines() {
    // Nothing waits before the first content, so the first timer is made
    // in the body.
    let idle = ScriptedService::new(Script::new().text("a").wait(ms(60)).text("b").stall());
    let total = ScriptedService::new(Script::new().text("a").wait(ms(500)).text("b"));
    let start = Instant::now();

    let response = call(layer(200, Some(100), None), &idle).await.unwrap();
    let items = drain(&mut response.into_body()).await;
    assert_eq!(
        items,
        [
            Ok(TestChunk::Text("a")),
            Ok(TestChunk::Text("b")),
            cut(TimeoutKind::Idle, 100),
        ]
    );
    assert_eq!(idle.probe().last_drop_at(), Some(start + ms(160)));

    let start = Instant::now();
    let response = call(layer(200, None, Some(300)), &total).await.unwrap();
    let items = drain(&mut response.into_body()).await;
    assert_eq!(
        items,
        [Ok(TestChunk::Text("a")), cut(TimeoutKind::Total, 300)]
    );
    assert_eq!(total.probe().last_drop_at(), Some(start + ms(300)));
}
