#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;

fn run_json(input: Value) -> Vec<Value> {
    let inputs = read_json(&input.to_string()).unwrap();
    explain_all(&inputs)
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

#[test]
fn json_vectors_round_trip() {
    let out = run_json(json!([
        {
            "status": 200,
            "headers": {
                "x-ratelimit-limit-requests": "5000",
                "x-ratelimit-remaining-requests": "4999",
                "x-ratelimit-reset-requests": "12ms",
                "x-ratelimit-limit-tokens": "800000",
                "x-ratelimit-remaining-tokens": "799372",
                "x-ratelimit-reset-tokens": "47.0001ms"
            }
        },
        {
            "status": 429,
            "headers": {"retry-after": "20", "x-ratelimit-remaining-tokens": ["500", "0"]},
            "now": "2025-01-01T12:00:00Z"
        },
        {
            "status": 200,
            "headers": {
                "anthropic-ratelimit-tokens-limit": "90000",
                "anthropic-ratelimit-tokens-remaining": "51000",
                "anthropic-ratelimit-tokens-reset": "2025-01-01T12:00:30Z",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": "2025-01-01T12:00:42.0001+00:00",
                "anthropic-ratelimit-output-tokens-reset": "2025-01-01T11:00:00Z"
            },
            "now": "2025-01-01T12:00:00Z"
        },
        {
            "status": 429,
            "headers": {},
            "body": "{\"error\":{\"code\":429,\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"34.4s\"}]}}"
        },
        {"status": 200, "headers": {"content-type": "text/event-stream"}}
    ]));
    assert_eq!(out.len(), 5);

    let openai = &out[0];
    assert_eq!(openai["remaining_requests"], 4999);
    assert_eq!(openai["limit_tokens"], 800_000);
    assert_eq!(openai["reset_requests_after_ms"], 12);
    assert_eq!(openai["reset_tokens_after_ms"], 48);
    assert_eq!(openai["retry_after_ms"], Value::Null);
    assert_eq!(openai["state"], "tracking");
    assert_eq!(openai["exhausted_for_ms"], Value::Null);
    assert_eq!(openai["extra"]["schemes"], json!(["openai"]));

    let limited = &out[1];
    assert_eq!(limited["remaining_tokens"], 0);
    assert_eq!(limited["retry_after_ms"], 20_000);
    assert_eq!(limited["state"], "exhausted");
    assert_eq!(limited["exhausted_for_ms"], 20_000);
    assert_eq!(limited["reason"], "rate_limited");

    let anthropic = &out[2];
    assert_eq!(anthropic["remaining_tokens"], 51_000);
    assert_eq!(anthropic["reset_tokens_after_ms"], 30_000);
    assert_eq!(anthropic["extra"]["input_tokens"]["remaining"], 0);
    assert_eq!(anthropic["extra"]["input_tokens"]["reset_after_ms"], 42_001);
    assert_eq!(anthropic["extra"]["output_tokens"]["reset_after_ms"], 0);
    assert_eq!(anthropic["state"], "exhausted");
    assert_eq!(anthropic["reason"], "input_tokens_depleted");
    assert_eq!(anthropic["exhausted_for_ms"], 42_001);

    let gemini = &out[3];
    assert_eq!(gemini["retry_after_ms"], 34_400);
    assert_eq!(gemini["exhausted_for_ms"], 34_400);

    let nothing = &out[4];
    assert_eq!(nothing["state"], "available");
    assert_eq!(nothing["explanation"], "usable: no rate-limit information");
}

#[test]
fn now_defaults_to_the_date_header() {
    let out = run_json(json!([{
        "status": 200,
        "headers": {
            "date": "Wed, 01 Jan 2025 12:00:00 GMT",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2025-01-01T12:00:05Z"
        }
    }]));
    assert_eq!(out[0]["reset_requests_after_ms"], 5000);
    assert_eq!(out[0]["exhausted_for_ms"], 5000);
    assert_eq!(out[0]["reason"], "requests_depleted");
}

#[test]
fn raw_header_lines_with_status_and_body() {
    let input = "HTTP/1.1 429 Too Many Requests\r\n\
                 Retry-After: 3\r\n\
                 X-RateLimit-Remaining-Requests: 0\r\n\
                 \r\n\
                 {\"error\":{\"message\":\"slow down\"}}\r\n\
                 HTTP/2 200\n\
                 x-ratelimit-remaining-tokens: 10\n";
    let inputs = read_raw(input).unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(
        inputs[0].body.as_deref(),
        Some(&b"{\"error\":{\"message\":\"slow down\"}}"[..])
    );
    let out = explain_all(&inputs);
    assert_eq!(out[0].status, 429);
    assert_eq!(out[0].retry_after_ms, Some(3000));
    assert_eq!(out[0].exhausted_for_ms, Some(3000));
    assert_eq!(out[1].remaining_tokens, Some(10));
    assert_eq!(out[1].state, "tracking");

    let text = out[0].to_string();
    assert!(
        text.starts_with("HTTP 429: skipped for 3 s: rate limited (HTTP 429 with retry-after 3 s)"),
        "{text}"
    );
    assert!(
        text.contains("verdict: exhausted for 3 s (rate_limited)"),
        "{text}"
    );
}

#[test]
fn raw_lines_without_status_are_one_200_response() {
    let inputs = read_raw("x-ratelimit-remaining-requests: 7\n").unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].status, StatusCode::OK);
}

#[test]
fn bad_input_is_reported_not_panicked_on() {
    assert!(read_raw("HTTP/1.1 abc\n").is_err());
    assert!(read_raw("no colon here\n").is_err());
    assert!(read_json("{}").is_err());
    assert!(read_json(r#"[{"status": 1000}]"#).is_err());
    assert!(read_json(r#"[{"now": "yesterday"}]"#).is_err());
    assert!(read_json(r#"[{"headers": {"a": {"b": 1}}}]"#).is_err());
    let err = read_raw("no colon here\n").unwrap_err();
    assert_eq!(err.to_string(), "line 1: not a header: no colon here");
}

#[test]
fn json_keeps_every_window_the_query_cost_and_a_zero_allowance_reason() {
    let out = run_json(json!([
        {
            "status": 200,
            "headers": {
                "x-ratelimit-limit-req-minute": "60",
                "x-ratelimit-remaining-req-minute": "59",
                "x-ratelimit-remaining-tokens-minute": "4000",
                "x-ratelimit-remaining-tokens-month": "900000",
                "x-ratelimit-tokens-query-cost": "12"
            }
        },
        {"status": 200, "headers": {"x-ratelimit-limit-tokens": "0"}}
    ]));
    let mistral = &out[0];
    assert_eq!(mistral["remaining_requests"], 59);
    assert_eq!(mistral["remaining_tokens"], 4000);
    assert_eq!(mistral["extra"]["schemes"], json!(["mistral"]));
    assert_eq!(mistral["extra"]["tokens_query_cost"], 12);
    assert_eq!(
        mistral["extra"]["windows"],
        json!([{
            "kind": "tokens",
            "name": "tokens-month",
            "window_s": 2_592_000,
            "limit": null,
            "remaining": 900_000,
            "reset_after_ms": null
        }])
    );
    let zero = &out[1];
    assert_eq!(zero["state"], "exhausted");
    assert_eq!(zero["reason"], "no_allowance");
    assert_eq!(zero["exhausted_for_ms"], 3_600_000);
    let sentence = zero["explanation"].as_str().unwrap();
    assert!(sentence.contains("no allowance"), "{sentence}");
}
