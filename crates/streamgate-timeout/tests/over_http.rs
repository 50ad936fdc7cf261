//! The layer over real HTTP: the OpenAI Chat client against the mock server,
//! on real time with small numbers. Proves that a timeout really closes the
//! connection (the server sees the client leave) and that keep-alive chunks
//! on the wire do not extend the first-content deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::StreamExt;
use streamgate_core::{BoxError, Chunk};
use streamgate_mock::{KeepAlive, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_timeout::{FirstChunkTimeoutLayer, StreamTimeout, TimeoutKind};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const DEADLINE: Duration = Duration::from_millis(200);
/// How long a test waits for the server to notice; a bound, not a measurement.
const NOTICE: Duration = Duration::from_secs(5);

fn client(server: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-test")
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new("mock-model").with_user("say something")
}

fn timeout_of(result: Result<impl Sized, BoxError>) -> StreamTimeout {
    match result {
        Ok(_) => panic!("expected a timeout, the stream committed"),
        Err(error) => match error.downcast_ref::<StreamTimeout>() {
            Some(timeout) => *timeout,
            None => panic!("expected a timeout, got: {error}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_before_content_times_out_and_the_server_sees_the_disconnect() {
    let server = MockServer::start_with_plan(Plan::new().stall_after(0))
        .await
        .unwrap();
    let service = FirstChunkTimeoutLayer::new(DEADLINE)
        .unwrap()
        .layer(client(&server));
    let start = Instant::now();

    let timeout = timeout_of(service.oneshot(request()).await);
    let timed_out_at = Instant::now();

    assert_eq!(
        timeout,
        StreamTimeout {
            kind: TimeoutKind::FirstContent,
            after: DEADLINE
        }
    );
    assert!(timed_out_at - start >= DEADLINE);
    let log = tokio::time::timeout(NOTICE, server.wait_for_disconnect(0))
        .await
        .expect("the server never saw the client leave");
    assert_eq!(log.chunks_sent, 0);
    let seen_at = log.disconnected_at.unwrap();
    // Signed: the drop happens before the error is returned, so on another
    // thread the server may notice before the caller resumes.
    let gap_ms = if seen_at >= timed_out_at {
        (seen_at - timed_out_at).as_secs_f64() * 1000.0
    } else {
        -(timed_out_at - seen_at).as_secs_f64() * 1000.0
    };
    eprintln!(
        "first-content timeout after {:.1} ms; server saw the disconnect {gap_ms:+.3} ms after the caller got the error ({:.1} ms after call)",
        (timed_out_at - start).as_secs_f64() * 1000.0,
        (seen_at - start).as_secs_f64() * 1000.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_time_out_and_the_server_sees_the_client_leave() {
    let server =
        MockServer::start_with_plan(Plan::new().with_header_delay(Duration::from_secs(30)))
            .await
            .unwrap();
    let service = FirstChunkTimeoutLayer::new(DEADLINE)
        .unwrap()
        .layer(client(&server));
    let start = Instant::now();

    let timeout = timeout_of(service.oneshot(request()).await);

    assert_eq!(timeout.kind, TimeoutKind::FirstContent);
    assert!(start.elapsed() >= DEADLINE);
    let log = tokio::time::timeout(NOTICE, server.wait_for_disconnect(0))
        .await
        .expect("the server never saw the client leave");
    assert_eq!(log.status, None, "left before the headers were sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_chunks_on_the_wire_do_not_reset_the_deadline() {
    // Role-only chunks every 20 ms reach the layer as non-content chunks;
    // SSE comment keep-alives are dropped by the parser and never reach it.
    for keep_alive in [KeepAlive::RoleChunk, KeepAlive::Comment] {
        let server = MockServer::start_with_plan(
            Plan::new()
                .with_first_content_delay(Duration::from_secs(30))
                .with_keep_alive(Duration::from_millis(20), keep_alive),
        )
        .await
        .unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let counted = client(&server).map_response(move |response| {
            let counter = counter.clone();
            response.map(|body| {
                body.inspect(move |item| {
                    if item.as_ref().is_ok_and(|chunk| !chunk.is_content()) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
        });
        let service = FirstChunkTimeoutLayer::new(DEADLINE)
            .unwrap()
            .layer(counted);
        let start = Instant::now();

        let timeout = timeout_of(service.oneshot(request()).await);

        assert_eq!(timeout.kind, TimeoutKind::FirstContent, "{keep_alive:?}");
        assert!(start.elapsed() >= DEADLINE);
        if keep_alive == KeepAlive::RoleChunk {
            // The opening role chunk plus keep-alives.
            assert!(
                seen.load(Ordering::Relaxed) > 2,
                "keep-alives reached the layer"
            );
        }
        tokio::time::timeout(NOTICE, server.wait_for_disconnect(0))
            .await
            .expect("the server never saw the client leave");
        eprintln!(
            "{keep_alive:?}: timed out after {:.1} ms with {} non-content chunks seen",
            start.elapsed().as_secs_f64() * 1000.0,
            seen.load(Ordering::Relaxed)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_in_time_over_http_streams_to_the_end() {
    let server = MockServer::start_with_plan(
        Plan::new()
            .with_output_tokens(5)
            .with_first_content_delay(Duration::from_millis(20))
            .with_chunk_delay(Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let layer = FirstChunkTimeoutLayer::builder(DEADLINE)
        .idle(DEADLINE)
        .build()
        .unwrap();
    let service = layer.layer(client(&server));

    let response = service.oneshot(request()).await.unwrap();
    let chunks: Vec<_> = response.into_body().collect().await;

    let text: String = chunks
        .iter()
        .map(|c| c.as_ref().map(|c| c.text.as_str()).unwrap())
        .collect();
    assert_eq!(text, streamgate_mock::expected_text(5));
    let log = tokio::time::timeout(NOTICE, server.wait_for_end(0))
        .await
        .unwrap();
    assert!(!log.client_disconnected());
    assert_eq!(log.tokens_sent, 5);
}
