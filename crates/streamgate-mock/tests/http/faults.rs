//! Scripted faults as a client meets them.

use std::time::Duration;

use serde_json::Value;
use streamgate_mock::{KeepAlive, MockConfig, MockServer, Plan, Provider};

use crate::support::{header, parse_sse, read_until, send, PATIENCE};

async fn error_json(response: reqwest::Response) -> Value {
    assert_eq!(header(&response, "content-type"), "application/json");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn scripted_429_carries_each_providers_headers_and_body() {
    let limited = Plan::new()
        .fail_with_status(429)
        .with_retry_after(Duration::from_secs(7));
    let server = MockServer::start_with_plan(limited).await.unwrap();

    let openai = send(&server, Provider::OpenAi).await;
    assert_eq!(openai.status(), 429);
    assert_eq!(header(&openai, "retry-after"), "7");
    assert_eq!(header(&openai, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&openai, "x-ratelimit-reset-requests"), "7s");
    assert_eq!(header(&openai, "x-ratelimit-limit-requests"), "60");
    assert_eq!(
        error_json(openai).await["error"]["code"],
        "rate_limit_exceeded"
    );

    let anthropic = send(&server, Provider::Anthropic).await;
    assert_eq!(anthropic.status(), 429);
    assert_eq!(header(&anthropic, "retry-after"), "7");
    assert_eq!(
        header(&anthropic, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    let reset = header(&anthropic, "anthropic-ratelimit-requests-reset");
    assert!(
        reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T',
        "{reset}"
    );
    let body = error_json(anthropic).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let gemini = send(&server, Provider::Gemini).await;
    assert_eq!(gemini.status(), 429);
    assert!(
        gemini.headers().get("retry-after").is_none(),
        "Gemini says it in the body"
    );
    let body = error_json(gemini).await;
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    let details = body["error"]["details"].as_array().unwrap();
    let retry = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .unwrap();
    assert_eq!(retry["retryDelay"], "7s");
    assert!(details
        .iter()
        .any(|d| d["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"));
}

#[tokio::test]
async fn server_errors_have_realistic_bodies() {
    let server = MockServer::start(MockConfig::new().with_sequence([
        Plan::new().fail_with_status(529),
        Plan::new().fail_with_status(500),
        Plan::new().fail_with_status(503),
    ]))
    .await
    .unwrap();

    let overloaded = send(&server, Provider::Anthropic).await;
    assert_eq!(overloaded.status().as_u16(), 529);
    assert!(overloaded.headers().get("retry-after").is_none());
    assert_eq!(
        error_json(overloaded).await["error"]["type"],
        "overloaded_error"
    );

    let internal = send(&server, Provider::OpenAi).await;
    assert_eq!(internal.status(), 500);
    assert_eq!(error_json(internal).await["error"]["type"], "server_error");

    let unavailable = send(&server, Provider::Gemini).await;
    assert_eq!(unavailable.status(), 503);
    assert_eq!(
        error_json(unavailable).await["error"]["status"],
        "UNAVAILABLE"
    );

    // The sequence is used up: back to the default, a healthy stream.
    assert_eq!(send(&server, Provider::OpenAi).await.status(), 200);
    let statuses: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.status.unwrap().as_u16())
        .collect();
    assert_eq!(statuses, [529, 500, 503, 200]);
}

#[tokio::test]
async fn scripted_error_body_can_be_replaced() {
    let body = serde_json::json!({"error": {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }});
    let plan = Plan::new()
        .fail_with_status(400)
        .with_error_body(body.clone());
    let server = MockServer::start_with_plan(plan).await.unwrap();
    let response = send(&server, Provider::OpenAi).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_json(response).await, body);
}

#[tokio::test]
async fn in_band_error_arrives_inside_a_200_stream() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(5).error_after(2))
        .await
        .unwrap();

    let openai = send(&server, Provider::OpenAi).await;
    assert_eq!(openai.status(), 200);
    let events = parse_sse(&openai.text().await.unwrap(), "\n\n");
    assert_eq!(
        events.len(),
        1 + 2 + 1,
        "role chunk, two deltas, the error; no [DONE]"
    );
    let error = events[3].json();
    assert_eq!(error["error"]["type"], "server_error");

    let anthropic = send(&server, Provider::Anthropic).await;
    let events = parse_sse(&anthropic.text().await.unwrap(), "\n\n");
    let last = events.last().unwrap();
    assert_eq!(last.name.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["type"], "overloaded_error");
    assert_eq!(last.json()["error"]["message"], "Overloaded");
    assert!(events
        .iter()
        .all(|e| e.name.as_deref() != Some("message_stop")));
}

#[tokio::test]
async fn stream_without_terminal_marker_closes_cleanly() {
    let server =
        MockServer::start_with_plan(Plan::new().with_output_tokens(3).without_terminal_marker())
            .await
            .unwrap();
    let openai = parse_sse(
        &send(&server, Provider::OpenAi).await.text().await.unwrap(),
        "\n\n",
    );
    assert_eq!(openai.len(), 1 + 3);
    assert!(openai.iter().all(|e| e.data != "[DONE]"));

    let anthropic = parse_sse(
        &send(&server, Provider::Anthropic)
            .await
            .text()
            .await
            .unwrap(),
        "\n\n",
    );
    assert_eq!(
        anthropic.last().unwrap().name.as_deref(),
        Some("content_block_delta")
    );

    let gemini = parse_sse(
        &send(&server, Provider::Gemini).await.text().await.unwrap(),
        "\r\n\r\n",
    );
    assert_eq!(gemini.len(), 3);
    assert!(gemini
        .iter()
        .all(|e| e.json()["candidates"][0].get("finishReason").is_none()));

    let logs = server.requests();
    assert!(logs
        .iter()
        .all(|log| log.ended_at.is_some() && !log.client_disconnected()));
}

#[tokio::test]
async fn scripted_disconnect_breaks_the_body() {
    let server =
        MockServer::start_with_plan(Plan::new().with_output_tokens(10).disconnect_after(2))
            .await
            .unwrap();
    let mut response = send(&server, Provider::OpenAi).await;
    assert_eq!(response.status(), 200);
    let mut received = String::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => panic!("the body ended cleanly: {received:?}"),
            Err(error) => break error,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    assert_eq!(received.matches("\"content\":\"tok").count(), 2);
    assert!(!received.contains("[DONE]"));

    let log = server.wait_for_end(0).await;
    assert_eq!(log.tokens_sent, 2);
    assert!(log.ended_at.is_some());
    assert!(
        !log.client_disconnected(),
        "the server cut it, not the client"
    );
}

#[tokio::test]
async fn stalled_stream_sends_nothing_more() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(10).stall_after(2))
        .await
        .unwrap();
    let mut response = send(&server, Provider::OpenAi).await;
    read_until(&mut response, "\"content\":\"tok", 2).await;
    let next = tokio::time::timeout(Duration::from_millis(30), response.chunk()).await;
    assert!(next.is_err(), "nothing after the stall: {next:?}");
    assert_eq!(server.request(0).unwrap().ended_at, None);
}

#[tokio::test]
async fn stall_with_keep_alive_still_pings() {
    let plan = Plan::new()
        .stall_after(0)
        .with_keep_alive(Duration::from_millis(5), KeepAlive::Comment);
    let server = MockServer::start_with_plan(plan).await.unwrap();
    let mut response = send(&server, Provider::Anthropic).await;
    // Opening ping, then at least two keep-alive pings, and never any content.
    let seen = read_until(&mut response, "event: ping", 3).await;
    assert!(!seen.contains("content_block_delta"));
}

#[tokio::test]
async fn shutdown_ends_stalled_streams() {
    let server = MockServer::start_with_plan(Plan::new().stall_after(0))
        .await
        .unwrap();
    let mut response = send(&server, Provider::OpenAi).await;
    read_until(&mut response, "\"role\"", 1).await;
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown does not wait for stalls");
    let rest = tokio::time::timeout(PATIENCE, response.chunk())
        .await
        .expect("the body ends");
    assert!(rest.is_err(), "an aborted body, not a clean end: {rest:?}");
}

#[tokio::test]
async fn script_chooses_the_plan_from_the_request() {
    let config = MockConfig::new().with_script(|request| {
        if request.model.contains("flaky") {
            Plan::new().fail_with_status(503)
        } else {
            Plan::new().with_output_tokens(1)
        }
    });
    let server = MockServer::start(config).await.unwrap();
    let flaky = crate::support::client()
        .post(server.endpoint(Provider::Gemini, "flaky-model"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(flaky.status(), 503);
    assert_eq!(send(&server, Provider::Gemini).await.status(), 200);

    // A queued plan goes before the script.
    server.push_plan(Plan::new().fail_with_status(500));
    assert_eq!(send(&server, Provider::Gemini).await.status(), 500);
    assert_eq!(send(&server, Provider::Gemini).await.status(), 200);
}
