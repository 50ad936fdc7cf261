//! What the server records, above all that it sees a client go away.

use std::time::Duration;

use streamgate_mock::{MockConfig, MockServer, Plan, Provider};
use tokio::time::timeout;

use crate::support::{client, openai_body, read_until, send, PATIENCE};

#[tokio::test]
async fn client_dropping_the_stream_is_seen_by_the_server() {
    let plan = Plan::new()
        .with_output_tokens(100)
        .with_chunk_delay(Duration::from_millis(10));
    let server = MockServer::start_with_plan(plan).await.unwrap();
    let mut response = send(&server, Provider::OpenAi).await;
    read_until(&mut response, "\"content\":\"tok", 2).await;
    drop(response);

    let log = timeout(PATIENCE, server.wait_for_disconnect(0))
        .await
        .expect("disconnect seen");
    assert!(log.client_disconnected());
    assert!(log.ended_at.is_none(), "the plan was not finished");
    assert!((2..100).contains(&log.tokens_sent), "{}", log.tokens_sent);
    assert!(log.disconnected_at.unwrap() >= log.started_at);
    assert_eq!(server.disconnects(), 1);
}

#[tokio::test]
async fn client_leaving_a_stalled_stream_is_seen_by_the_server() {
    let server = MockServer::start_with_plan(Plan::new().stall_after(1))
        .await
        .unwrap();
    let mut response = send(&server, Provider::Anthropic).await;
    read_until(&mut response, "content_block_delta", 1).await;
    drop(response);
    let log = timeout(PATIENCE, server.wait_for_disconnect(0))
        .await
        .expect("disconnect seen");
    assert_eq!(log.tokens_sent, 1);
}

#[tokio::test]
async fn client_giving_up_before_the_headers_is_seen_by_the_server() {
    let server =
        MockServer::start_with_plan(Plan::new().with_header_delay(Duration::from_secs(30)))
            .await
            .unwrap();
    let request = client()
        .post(server.endpoint(Provider::Gemini, "gemini-2.0-flash"))
        .body("{}")
        .send();
    let waiting = tokio::spawn(request);
    timeout(PATIENCE, server.wait_for_request(0)).await.unwrap();
    waiting.abort();

    let log = timeout(PATIENCE, server.wait_for_disconnect(0))
        .await
        .expect("disconnect seen");
    assert_eq!(log.status, None, "no headers were sent");
}

#[tokio::test]
async fn a_complete_stream_is_logged_with_its_counts() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(4))
        .await
        .unwrap();
    let response = client()
        .post(server.endpoint(Provider::OpenAi, "ignored"))
        .header("authorization", "Bearer sk-test")
        .body(r#"{"model":"gpt-4.1","stream":true}"#)
        .send()
        .await
        .unwrap();
    response.text().await.unwrap();

    let log = timeout(PATIENCE, server.wait_for_end(0)).await.unwrap();
    assert_eq!(log.request.index, 0);
    assert_eq!(log.request.provider, Provider::OpenAi);
    assert_eq!(log.request.path, "/v1/chat/completions");
    assert_eq!(log.request.model, "gpt-4.1");
    assert_eq!(log.request.headers["authorization"], "Bearer sk-test");
    assert_eq!(log.request.body["stream"], true);
    assert_eq!(log.status.map(|s| s.as_u16()), Some(200));
    assert_eq!((log.chunks_sent, log.tokens_sent), (4, 4));
    assert!(log.ended_at.is_some() && !log.client_disconnected());
    assert_eq!(server.tokens_served(), 4);
    assert_eq!(server.tokens_per_minute(), log.input_tokens + 4);
}

#[tokio::test]
async fn wait_until_sees_requests_arrive() {
    let server =
        MockServer::start_with_plan(Plan::new().with_header_delay(Duration::from_millis(10)))
            .await
            .unwrap();
    let url = server.endpoint(Provider::Anthropic, "m");
    let requests: Vec<_> = (0..3)
        .map(|_| tokio::spawn(client().post(url.clone()).body("{}").send()))
        .collect();
    timeout(PATIENCE, server.wait_until(|logs| logs.len() == 3))
        .await
        .unwrap();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn the_request_log_is_a_ring_while_counts_stay_exact() {
    let server = MockServer::start(MockConfig::new().with_request_log_capacity(3))
        .await
        .unwrap();
    for _ in 0..5 {
        let response = send(&server, Provider::OpenAi).await;
        response.bytes().await.unwrap();
    }
    assert_eq!(server.served(), 5);
    let kept: Vec<u64> = server.requests().iter().map(|r| r.request.index).collect();
    assert_eq!(kept, [2, 3, 4]);
    assert!(server.request(1).is_none());
    assert_eq!(server.request(4).map(|r| r.request.index), Some(4));
    let last = tokio::time::timeout(PATIENCE, server.wait_for_end(4))
        .await
        .unwrap();
    assert_eq!(last.request.index, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn request_debug_redacts_credentials() {
    let server = MockServer::start_with_plan(Plan::new()).await.unwrap();
    let key = "sk-mock-secret-42";
    let response = client()
        .post(format!(
            "{}?key={key}",
            server.endpoint(Provider::OpenAi, "gpt-4o-mini")
        ))
        .header("authorization", format!("Bearer {key}"))
        .header("x-api-key", key)
        .header("x-goog-api-key", key)
        .header("api-key", key)
        .header("x-custom", format!("token Bearer {key}"))
        .body(openai_body(true).to_string())
        .send()
        .await
        .unwrap();
    response.bytes().await.unwrap();
    let log = tokio::time::timeout(PATIENCE, server.wait_for_end(0))
        .await
        .unwrap();
    let debug = format!("{log:?} {:?}", server.requests());
    assert!(!debug.contains(key), "{debug}");
    assert!(debug.contains("x-goog-api-key"), "{debug}");
    assert!(log.request.headers.get("x-api-key").is_some());
    server.shutdown().await;
}
