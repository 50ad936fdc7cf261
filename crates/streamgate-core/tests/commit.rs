#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures::StreamExt;
use streamgate_core::{
    classify,
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    Chunk, Commit, ErrorClass, Usage,
};
use tokio::time::Instant;
use tower::ServiceExt;

const MS: Duration = Duration::from_millis(1);

async fn commit(script: Script) -> (ScriptedService, Result<Vec<TestChunk>, ErrorClass>, Instant) {
    let service = ScriptedService::new(script);
    let response = Commit::new(service.clone().oneshot(TestRequest::new("m"))).await;
    let committed_at = Instant::now();
    let result = match response {
        Ok(response) => {
            let chunks: Vec<_> = response.into_body().collect().await;
            Ok(chunks.into_iter().map(|c| c.unwrap()).collect())
        }
        Err(error) => Err(classify(&*error)),
    };
    (service, result, committed_at)
}

#[tokio::test(start_paused = true)]
async fn pre_content_chunks_are_replayed_in_order_with_their_usage() {
    let start = Instant::now();
    let script = Script::new()
        .headers_after(10 * MS)
        .meta("role")
        .wait(20 * MS)
        .usage(Usage::new(12, 0))
        .meta("ping")
        .wait(30 * MS)
        .text("hello")
        .wait(40 * MS)
        .text("world");
    let (_, chunks, committed_at) = commit(script).await;
    // The future resolved at the first content, not at the headers.
    assert_eq!(committed_at - start, 60 * MS);
    let chunks = chunks.unwrap();
    assert_eq!(
        chunks,
        vec![
            TestChunk::Meta("role"),
            TestChunk::Usage(Usage::new(12, 0)),
            TestChunk::Meta("ping"),
            TestChunk::Text("hello"),
            TestChunk::Text("world"),
        ]
    );
    let usage = chunks.iter().filter_map(Chunk::usage).next();
    assert_eq!(usage, Some(Usage::new(12, 0)));
}

#[tokio::test(start_paused = true)]
async fn error_before_content_is_the_future_error() {
    let script = Script::new()
        .meta("role")
        .fail(ErrorClass::Overloaded)
        .text("never");
    let (service, result, _) = commit(script).await;
    assert_eq!(result, Err(ErrorClass::Overloaded));
    // The body was given up with the error, not read to its end.
    assert_eq!(service.probe().bodies_dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn call_error_is_the_future_error() {
    let (_, result, _) = commit(Script::new().fail_call(ErrorClass::RateLimited)).await;
    assert_eq!(result, Err(ErrorClass::RateLimited));
}

#[tokio::test(start_paused = true)]
async fn error_after_content_is_an_item_not_the_future_error() {
    let service = ScriptedService::new(Script::new().text("a").fail(ErrorClass::Server));
    let response = Commit::new(service.oneshot(TestRequest::new("m")))
        .await
        .unwrap();
    let items: Vec<_> = response.into_body().collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap(), &TestChunk::Text("a"));
    assert_eq!(
        classify(&**items[1].as_ref().unwrap_err()),
        ErrorClass::Server
    );
}

#[tokio::test(start_paused = true)]
async fn stream_without_content_commits_at_its_end_and_replays_everything() {
    let script = Script::new().meta("role").usage(Usage::new(3, 0));
    let (service, chunks, _) = commit(script).await;
    assert_eq!(
        chunks.unwrap(),
        vec![TestChunk::Meta("role"), TestChunk::Usage(Usage::new(3, 0))]
    );
    assert_eq!(service.probe().bodies_completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_commit_future_drops_the_inner_future_or_body() {
    let service = ScriptedService::new(Script::new().headers_after(50 * MS).text("x"));
    let commit = Commit::new(service.clone().oneshot(TestRequest::new("m")));
    let _ = tokio::time::timeout(10 * MS, commit).await;
    assert_eq!(service.probe().futures_dropped(), 1);

    let service = ScriptedService::new(Script::new().meta("role").stall());
    let commit = Commit::new(service.clone().oneshot(TestRequest::new("m")));
    let _ = tokio::time::timeout(10 * MS, commit).await;
    assert_eq!(service.probe().bodies_dropped(), 1);
}

/// A body read straight through, then given chunks to hold back: they come
/// next, before the rest of the inner body.
#[tokio::test(start_paused = true)]
async fn chunks_held_back_after_reading_straight_through_come_before_the_rest() {
    let service = ScriptedService::new(Script::new().text("a").text("b").text("c"));
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let mut body = streamgate_core::Replay::passthrough(response.into_body());
    assert_eq!(body.next().await.unwrap().unwrap(), TestChunk::Text("a"));
    assert_eq!(body.next().await.unwrap().unwrap(), TestChunk::Text("b"));
    body.hold_back([TestChunk::Text("b"), TestChunk::Meta("kept")], false);
    let rest: Vec<_> = body.map(|c| c.unwrap()).collect().await;
    assert_eq!(
        rest,
        [
            TestChunk::Text("b"),
            TestChunk::Meta("kept"),
            TestChunk::Text("c")
        ]
    );
}

/// Held back with `ended`: the held chunks, then the end, without polling
/// the inner body again.
#[tokio::test(start_paused = true)]
async fn chunks_held_back_with_ended_are_the_last_items() {
    let service = ScriptedService::new(Script::new().text("a").text("never read"));
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let mut body = streamgate_core::Replay::passthrough(response.into_body());
    assert_eq!(body.next().await.unwrap().unwrap(), TestChunk::Text("a"));
    body.hold_back([TestChunk::Text("a")], true);
    let rest: Vec<_> = body.map(|c| c.unwrap()).collect().await;
    assert_eq!(rest, [TestChunk::Text("a")]);
}
