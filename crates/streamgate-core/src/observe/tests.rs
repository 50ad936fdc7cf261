#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{EndObserver, Observed, StreamEnd, StreamObserver};
use crate::{
    classify,
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    ErrorClass,
};
use futures::StreamExt;
use tower::ServiceExt;

#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Response(u16),
    Chunk(TestChunk),
    Complete,
    Failed(ErrorClass),
    Dropped,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }
}

impl EndObserver for Recorder {
    fn on_end(self, end: StreamEnd<'_>) {
        self.push(match end {
            StreamEnd::Complete => Seen::Complete,
            StreamEnd::Failed(error) => Seen::Failed(classify(error)),
            StreamEnd::Dropped => Seen::Dropped,
        });
    }
}

impl StreamObserver<TestChunk> for Recorder {
    fn on_response(&mut self, parts: &http::response::Parts) {
        self.push(Seen::Response(parts.status.as_u16()));
    }
    fn on_chunk(&mut self, chunk: &TestChunk) {
        self.push(Seen::Chunk(chunk.clone()));
    }
}

async fn observe(script: Script, read: usize) -> Vec<Seen> {
    let recorder = Recorder::default();
    let service = ScriptedService::new(script);
    let observed = Observed::new(service.oneshot(TestRequest::new("m")), recorder.clone());
    if let Ok(response) = observed.await {
        let mut body = response.into_body();
        for _ in 0..read {
            if body.next().await.is_none() {
                break;
            }
        }
    }
    recorder.seen()
}

#[tokio::test(start_paused = true)]
async fn clean_end_is_reported_once_after_every_chunk() {
    let seen = observe(Script::new().meta("role").text("a"), 10).await;
    assert_eq!(
        seen,
        vec![
            Seen::Response(200),
            Seen::Chunk(TestChunk::Meta("role")),
            Seen::Chunk(TestChunk::Text("a")),
            Seen::Complete,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn error_item_ends_the_observation_with_its_class() {
    let seen = observe(
        Script::new()
            .text("a")
            .fail(ErrorClass::Truncated)
            .text("b"),
        10,
    )
    .await;
    assert_eq!(
        seen,
        vec![
            Seen::Response(200),
            Seen::Chunk(TestChunk::Text("a")),
            Seen::Failed(ErrorClass::Truncated),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failed_call_is_reported_from_the_future() {
    let seen = observe(Script::new().fail_call(ErrorClass::Server), 10).await;
    assert_eq!(seen, vec![Seen::Failed(ErrorClass::Server)]);
}

#[tokio::test(start_paused = true)]
async fn dropped_body_is_reported_as_dropped() {
    let seen = observe(Script::new().text("a").text("b"), 1).await;
    assert_eq!(
        seen,
        vec![
            Seen::Response(200),
            Seen::Chunk(TestChunk::Text("a")),
            Seen::Dropped
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_future_is_reported_as_dropped() {
    let recorder = Recorder::default();
    let service = ScriptedService::new(
        Script::new()
            .headers_after(Duration::from_secs(1))
            .text("a"),
    );
    let observed = Observed::new(service.oneshot(TestRequest::new("m")), recorder.clone());
    assert!(tokio::time::timeout(Duration::from_millis(10), observed)
        .await
        .is_err());
    assert_eq!(recorder.seen(), vec![Seen::Dropped]);
}
