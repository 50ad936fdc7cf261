//! Each provider's framing, exactly as a client parses it.

use std::time::Duration;

use serde_json::json;
use streamgate_mock::{expected_text, KeepAlive, MockServer, Plan, Provider};

use crate::support::{
    client, header, openai_body, parse_ndjson, parse_sse, send, GEMINI_MODEL, OLLAMA_MODEL,
};

#[tokio::test]
async fn openai_stream_has_role_chunk_deltas_finish_usage_and_done() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(3))
        .await
        .unwrap();
    let response = send(&server, Provider::OpenAi).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    let events = parse_sse(&response.text().await.unwrap(), "\n\n");

    assert_eq!(events.len(), 1 + 3 + 1 + 1 + 1);
    assert!(events.iter().all(|e| e.name.is_none() && !e.comment));
    let role = events[0].json();
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(role["model"], "gpt-4o-mini");
    assert_eq!(
        role["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(role["choices"][0]["finish_reason"], json!(null));

    let text: String = events[1..4]
        .iter()
        .map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, expected_text(3));
    assert_eq!(events[4].json()["choices"][0]["finish_reason"], "stop");

    let input = server.request(0).unwrap().input_tokens;
    let expected_input = (openai_body(true).to_string().len() as u64).div_ceil(4);
    assert_eq!(
        input, expected_input,
        "input is estimated as body length / 4"
    );
    let usage = events[5].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], input);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["total_tokens"], input + 3);
    assert_eq!(events[6].data, "[DONE]");
}

#[tokio::test]
async fn openai_usage_chunk_only_when_asked_for() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(2))
        .await
        .unwrap();
    let response = client()
        .post(server.endpoint(Provider::OpenAi, "gpt-4o"))
        .body(openai_body(false).to_string())
        .send()
        .await
        .unwrap();
    let events = parse_sse(&response.text().await.unwrap(), "\n\n");
    assert!(events
        .iter()
        .all(|e| e.data == "[DONE]" || e.json().get("usage").is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert_eq!(events.len(), 1 + 2 + 1 + 1);
}

#[tokio::test]
async fn openai_path_without_v1_prefix_is_served_too() {
    let server = MockServer::start(Default::default()).await.unwrap();
    let response = client()
        .post(format!("{}/chat/completions", server.url()))
        .body(openai_body(false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests()[0].request.provider, Provider::OpenAi);
}

#[tokio::test]
async fn anthropic_stream_follows_the_messages_event_sequence() {
    let plan = Plan::new()
        .with_output_tokens(2)
        .with_input_tokens(100)
        .with_cached_input_tokens(40);
    let server = MockServer::start_with_plan(plan).await.unwrap();
    let response = send(&server, Provider::Anthropic).await;
    assert_eq!(response.status(), 200);
    let events = parse_sse(&response.text().await.unwrap(), "\n\n");
    let names: Vec<_> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    // Every data payload names its own type, as the real API does.
    for event in &events {
        assert_eq!(event.json()["type"], event.name.as_deref().unwrap());
    }
    let usage = &events[0].json()["message"]["usage"];
    assert_eq!(
        usage["input_tokens"], 60,
        "cache reads are not part of input_tokens"
    );
    assert_eq!(usage["cache_read_input_tokens"], 40);
    assert_eq!(usage["output_tokens"], 1);
    assert_eq!(events[0].json()["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(
        events[3].json()["delta"],
        json!({"type": "text_delta", "text": "tok0 "})
    );
    assert_eq!(events[6].json()["usage"]["output_tokens"], 2);
    assert_eq!(events[6].json()["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn gemini_stream_uses_crlf_framing_and_ends_with_finish_reason() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(3))
        .await
        .unwrap();
    let response = send(&server, Provider::Gemini).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        !body.replace("\r\n", "").contains('\n'),
        "every line ends in CRLF"
    );
    let events = parse_sse(&body, "\r\n\r\n");
    assert_eq!(events.len(), 3);

    let chunks: Vec<_> = events.iter().map(|e| e.json()).collect();
    let text: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, expected_text(3));
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["candidates"][0]["content"]["role"], "model");
        assert_eq!(chunk["modelVersion"], GEMINI_MODEL);
        assert_eq!(chunk["usageMetadata"]["candidatesTokenCount"], i as u64 + 1);
        let finish = &chunk["candidates"][0]["finishReason"];
        assert_eq!(finish.as_str(), (i == 2).then_some("STOP"));
    }
    let log = server.request(0).unwrap();
    assert_eq!(log.request.model, GEMINI_MODEL);
    assert_eq!(
        chunks[2]["usageMetadata"]["totalTokenCount"],
        log.input_tokens + 3
    );
}

#[tokio::test]
async fn gemini_unknown_method_is_not_found() {
    let server = MockServer::start(Default::default()).await.unwrap();
    let url = format!("{}/v1beta/models/{GEMINI_MODEL}:countTokens", server.url());
    let response = client().post(url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(server.served(), 0);
}

#[tokio::test]
async fn keep_alives_fill_the_wait_for_first_content() {
    let plan = Plan::new()
        .with_output_tokens(1)
        .with_first_content_delay(Duration::from_millis(30))
        .with_keep_alive(Duration::from_millis(10), KeepAlive::Comment);
    let server = MockServer::start_with_plan(plan.clone()).await.unwrap();

    let openai = parse_sse(
        &send(&server, Provider::OpenAi).await.text().await.unwrap(),
        "\n\n",
    );
    assert_eq!(openai.iter().filter(|e| e.comment).count(), 2);
    assert!(
        openai[1].comment && openai[2].comment,
        "between the role chunk and the content"
    );

    let anthropic = parse_sse(
        &send(&server, Provider::Anthropic)
            .await
            .text()
            .await
            .unwrap(),
        "\n\n",
    );
    let pings = anthropic
        .iter()
        .filter(|e| e.name.as_deref() == Some("ping"))
        .count();
    assert_eq!(pings, 1 + 2, "the opening ping plus one per interval");

    server.set_plan(plan.with_keep_alive(Duration::from_millis(10), KeepAlive::RoleChunk));
    let role_chunks = parse_sse(
        &send(&server, Provider::OpenAi).await.text().await.unwrap(),
        "\n\n",
    );
    let roles = role_chunks
        .iter()
        .filter(|e| e.data != "[DONE]" && e.json()["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(roles, 1 + 2);
}

#[tokio::test]
async fn request_that_is_not_json_gets_a_provider_style_400() {
    let server = MockServer::start(Default::default()).await.unwrap();
    let response = client()
        .post(server.endpoint(Provider::Anthropic, "m"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn ollama_stream_is_ndjson_lines_ending_with_a_done_line_with_counts() {
    let plan = Plan::new().with_output_tokens(3).with_input_tokens(21);
    let server = MockServer::start_with_plan(plan).await.unwrap();
    let response = send(&server, Provider::Ollama).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/x-ndjson");
    let lines = parse_ndjson(&response.text().await.unwrap());
    assert_eq!(lines.len(), 3 + 1);
    let text: String = lines[..3]
        .iter()
        .map(|line| {
            assert_eq!(line["done"], false);
            assert_eq!(line["model"], OLLAMA_MODEL);
            assert_eq!(line["message"]["role"], "assistant");
            line["message"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, expected_text(3));
    let done = &lines[3];
    assert_eq!(done["done"], true);
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["prompt_eval_count"], 21);
    assert_eq!(done["eval_count"], 3);
    assert!(done["eval_duration"].as_u64().unwrap() > 0, "nanoseconds");
    let created = done["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    let log = server.request(0).unwrap();
    assert_eq!(log.request.provider, Provider::Ollama);
    assert_eq!(log.request.model, OLLAMA_MODEL);
}

#[tokio::test]
async fn ollama_in_band_error_is_an_error_line_without_a_done_line() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(5).error_after(2))
        .await
        .unwrap();
    let response = send(&server, Provider::Ollama).await;
    assert_eq!(response.status(), 200);
    let lines = parse_ndjson(&response.text().await.unwrap());
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        json!({"error": "an error was encountered while running the model"})
    );
    assert!(lines.iter().all(|line| line["done"] != true));
}

#[tokio::test]
async fn ollama_missing_model_is_a_404_with_an_error_string() {
    let server = MockServer::start_with_plan(Plan::new().fail_with_status(404))
        .await
        .unwrap();
    let response = send(&server, Provider::Ollama).await;
    assert_eq!(response.status(), 404);
    assert_eq!(header(&response, "content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error": format!("model \"{OLLAMA_MODEL}\" not found, try pulling it first")})
    );
}

#[tokio::test]
async fn ollama_without_terminal_marker_has_no_done_line() {
    let server = MockServer::start_with_plan(Plan::new().with_output_tokens(3).truncate_after(2))
        .await
        .unwrap();
    let lines = parse_ndjson(&send(&server, Provider::Ollama).await.text().await.unwrap());
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|line| line["done"] == false));
}
