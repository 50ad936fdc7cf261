//! The server's own rate limits, enforced and reported like the providers do.

use serde_json::Value;
use streamgate_mock::{MockConfig, MockServer, Plan, Provider};

use crate::support::{header, send};

#[tokio::test]
async fn every_response_reports_the_request_budget_and_the_excess_gets_a_429() {
    let server = MockServer::start(MockConfig::new().with_requests_per_minute(2))
        .await
        .unwrap();

    let first = send(&server, Provider::OpenAi).await;
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
    let reset = header(&first, "x-ratelimit-reset-requests");
    assert!(
        reset.ends_with('s') && reset != "0s",
        "the window resets in about a minute: {reset}"
    );
    assert!(
        first.headers().get("x-ratelimit-limit-tokens").is_none(),
        "no TPM limit configured"
    );
    first.text().await.unwrap();

    let second = send(&server, Provider::Anthropic).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "anthropic-ratelimit-requests-limit"), "2");
    assert_eq!(
        header(&second, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    second.text().await.unwrap();

    let refused = send(&server, Provider::OpenAi).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!(
        (59..=60).contains(&retry_after),
        "until the first request leaves: {retry_after}"
    );
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");

    let gemini = send(&server, Provider::Gemini).await;
    assert_eq!(gemini.status(), 429);
    let body: Value = serde_json::from_str(&gemini.text().await.unwrap()).unwrap();
    let details = body["error"]["details"].as_array().unwrap();
    assert!(details
        .iter()
        .any(|d| d["retryDelay"].as_str().is_some_and(|s| s.ends_with('s'))));

    assert_eq!(server.served(), 4, "refused requests are logged too");
}

#[tokio::test]
async fn token_limit_counts_input_and_streamed_output() {
    let plan = Plan::new().with_input_tokens(20).with_output_tokens(10);
    let config = MockConfig::new().with_plan(plan).with_tokens_per_minute(60);
    let server = MockServer::start(config).await.unwrap();

    let first = send(&server, Provider::Anthropic).await;
    assert_eq!(header(&first, "anthropic-ratelimit-tokens-remaining"), "40");
    assert_eq!(
        header(&first, "anthropic-ratelimit-input-tokens-remaining"),
        "40"
    );
    assert_eq!(
        header(&first, "anthropic-ratelimit-output-tokens-remaining"),
        "60"
    );
    first.text().await.unwrap();
    assert_eq!(server.tokens_per_minute(), 30);

    let second = send(&server, Provider::OpenAi).await;
    assert_eq!(header(&second, "x-ratelimit-limit-tokens"), "60");
    assert_eq!(header(&second, "x-ratelimit-remaining-tokens"), "10");
    second.text().await.unwrap();

    // 60 used: the next 20 input tokens do not fit.
    let refused = send(&server, Provider::Anthropic).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "anthropic-ratelimit-tokens-remaining"),
        "0"
    );
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        server.tokens_per_minute(),
        60,
        "a refused request costs nothing"
    );
}
