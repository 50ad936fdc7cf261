#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::*;

/// 2025-01-01T12:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_732_800)
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

fn parse(pairs: &[(&str, &[u8])]) -> QuotaInfo {
    QuotaInfo::from_headers(&headers(pairs), now())
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[test]
fn openai_headers_with_go_durations() {
    let info = parse(&[
        ("x-ratelimit-limit-requests", b"5000"),
        ("x-ratelimit-remaining-requests", b"4999"),
        ("x-ratelimit-reset-requests", b"12ms"),
        ("x-ratelimit-limit-tokens", b"800000"),
        ("x-ratelimit-remaining-tokens", b"799372"),
        ("x-ratelimit-reset-tokens", b"47.088ms"),
    ]);
    assert_eq!(
        info.requests,
        Limit {
            limit: Some(5000),
            remaining: Some(4999),
            reset_after: ms(12),
            window: Some(MINUTE),
        }
    );
    assert_eq!(info.tokens.remaining, Some(799_372));
    assert_eq!(info.tokens.reset_after, ms(48));
    assert!(info.schemes.contains(Schemes::OPENAI));
    assert!(!info.schemes.contains(Schemes::GROQ));
}

#[test]
fn header_names_are_case_insensitive() {
    let info = parse(&[
        ("X-RateLimit-Remaining-Tokens", b"10"),
        ("Anthropic-RateLimit-Requests-Remaining", b"3"),
        ("Retry-After", b"2"),
    ]);
    assert_eq!(info.tokens.remaining, Some(10));
    assert_eq!(info.requests.remaining, Some(3));
    assert_eq!(info.retry_after, ms(2000));
}

#[test]
fn groq_request_limit_is_per_day() {
    let info = parse(&[
        ("x-groq-region", b"us-east-1"),
        ("x-ratelimit-limit-requests", b"14400"),
        ("x-ratelimit-remaining-requests", b"14370"),
        ("x-ratelimit-reset-requests", b"2m59.56s"),
        ("x-ratelimit-limit-tokens", b"18000"),
        ("x-ratelimit-reset-tokens", b"7.66s"),
    ]);
    assert_eq!(info.requests.window, Some(DAY));
    assert_eq!(info.requests.reset_after, ms(179_560));
    assert_eq!(info.tokens.window, Some(MINUTE));
    assert_eq!(info.tokens.reset_after, ms(7660));
    assert!(info.schemes.contains(Schemes::GROQ));
}

#[test]
fn azure_minus_one_and_negative_remaining_give_none() {
    let info = parse(&[
        ("x-ratelimit-remaining-requests", b"-1"),
        ("x-ratelimit-remaining-tokens", b"-2048"),
        ("x-ratelimit-limit-tokens", b"not a number"),
        ("x-ratelimit-reset-tokens", b"-3s"),
    ]);
    assert_eq!(info.requests.remaining, None);
    assert_eq!(info.tokens.remaining, None);
    assert_eq!(info.tokens.limit, None);
    assert_eq!(info.tokens.reset_after, None);
}

#[test]
fn anthropic_rfc3339_resets_and_token_split() {
    let info = parse(&[
        ("anthropic-ratelimit-requests-limit", b"50"),
        ("anthropic-ratelimit-requests-remaining", b"49"),
        (
            "anthropic-ratelimit-requests-reset",
            b"2025-01-01T12:00:01Z",
        ),
        ("anthropic-ratelimit-tokens-limit", b"90000"),
        ("anthropic-ratelimit-tokens-remaining", b"51000"),
        (
            "anthropic-ratelimit-tokens-reset",
            b"2025-01-01T14:00:30.5+02:00",
        ),
        ("anthropic-ratelimit-input-tokens-limit", b"40000"),
        ("anthropic-ratelimit-input-tokens-remaining", b"0"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            b"2025-01-01T12:00:42Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", b"8000"),
        ("anthropic-ratelimit-output-tokens-remaining", b"8000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            b"2025-01-01T11:59:00Z",
        ),
    ]);
    assert_eq!(info.requests.reset_after, ms(1000));
    assert_eq!(info.tokens.remaining, Some(51_000));
    assert_eq!(info.tokens.reset_after, ms(30_500));
    assert_eq!(info.input_tokens.remaining, Some(0));
    assert_eq!(info.input_tokens.reset_after, ms(42_000));
    // A reset in the past is zero, not negative and not dropped.
    assert_eq!(info.output_tokens.reset_after, ms(0));
    assert!(info.input_tokens.is_depleted());
    assert!(info.schemes.contains(Schemes::ANTHROPIC));
}

#[test]
fn anthropic_garbage_reset_gives_none() {
    let info = parse(&[
        ("anthropic-ratelimit-tokens-reset", b"tomorrow"),
        ("anthropic-ratelimit-tokens-remaining", b"12.5"),
        ("anthropic-ratelimit-unknown-limit", b"5"),
    ]);
    assert_eq!(info.tokens.reset_after, None);
    assert_eq!(info.tokens.remaining, None);
}

#[test]
fn cerebras_per_minute_and_per_day_float_seconds() {
    let info = parse(&[
        ("x-ratelimit-limit-requests-day", b"14400"),
        ("x-ratelimit-remaining-requests-day", b"14399"),
        ("x-ratelimit-reset-requests-day", b"33011.382867"),
        ("x-ratelimit-limit-tokens-minute", b"60000"),
        ("x-ratelimit-remaining-tokens-minute", b"0"),
        ("x-ratelimit-reset-tokens-minute", b"11.382867"),
    ]);
    assert_eq!(info.requests.window, Some(DAY));
    assert_eq!(info.requests.reset_after, ms(33_011_383));
    assert_eq!(info.tokens.window, Some(MINUTE));
    assert_eq!(info.tokens.reset_after, ms(11_383));
    assert!(info.tokens.is_depleted());
    assert!(info.schemes.contains(Schemes::CEREBRAS));
}

#[test]
fn openrouter_epoch_millisecond_reset() {
    let reset = b"1735732815250"; // now + 15.25 s
    let info = parse(&[
        ("X-RateLimit-Limit", b"20"),
        ("X-RateLimit-Remaining", b"0"),
        ("X-RateLimit-Reset", reset),
    ]);
    assert_eq!(info.requests.limit, Some(20));
    assert_eq!(info.requests.remaining, Some(0));
    assert_eq!(info.requests.reset_after, ms(15_250));
    assert!(info.schemes.contains(Schemes::OPENROUTER));
}

#[test]
fn openrouter_headers_copied_into_the_error_body() {
    let body = br#"{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min.","metadata":{"headers":{"X-RateLimit-Limit":"20","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1735732860000"},"provider_name":null}},"user_id":"u"}"#;
    let info = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        Some(body),
        now(),
    );
    assert!(info.is_rate_limited());
    assert_eq!(info.requests.remaining, Some(0));
    assert_eq!(info.requests.reset_after, ms(60_000));
    assert!(info.schemes.contains(Schemes::OPENROUTER));
}

#[test]
fn ietf_separate_fields_of_early_drafts() {
    let info = parse(&[
        ("RateLimit-Limit", b"100"),
        ("RateLimit-Remaining", b"0"),
        ("RateLimit-Reset", b"30"),
    ]);
    assert_eq!(info.requests.limit, Some(100));
    assert_eq!(info.requests.remaining, Some(0));
    assert_eq!(info.requests.reset_after, ms(30_000));
    assert!(info.schemes.contains(Schemes::IETF));
}

#[test]
fn ietf_structured_fields() {
    let info = parse(&[
        ("RateLimit", b"limit=100, remaining=50, reset=5"),
        ("RateLimit-Policy", b"100;w=60"),
    ]);
    assert_eq!(info.requests.remaining, Some(50));
    assert_eq!(info.requests.reset_after, ms(5000));
    assert_eq!(info.requests.window, Some(MINUTE));

    let info = parse(&[
        (
            "RateLimit-Policy",
            br#""tpm";q=90000;w=60;qu="tokens", "rpm";q=60;w=60"#,
        ),
        ("RateLimit", br#""tpm";r=0;t=7, "rpm";r=59;t=1"#),
    ]);
    assert_eq!(info.tokens.limit, Some(90_000));
    assert_eq!(info.tokens.remaining, Some(0));
    assert_eq!(info.tokens.reset_after, ms(7000));
    assert_eq!(info.requests.remaining, Some(59));
}

#[test]
fn retry_after_seconds_and_all_three_http_date_formats() {
    assert_eq!(parse(&[("retry-after", b"20")]).retry_after, ms(20_000));
    assert_eq!(parse(&[("retry-after", b"0")]).retry_after, ms(0));
    for date in [
        &b"Wed, 01 Jan 2025 12:00:30 GMT"[..],
        b"Wednesday, 01-Jan-25 12:00:30 GMT",
        b"Wed Jan  1 12:00:30 2025",
    ] {
        assert_eq!(
            parse(&[("retry-after", date)]).retry_after,
            ms(30_000),
            "{}",
            String::from_utf8_lossy(date)
        );
    }
    // In the past: zero.
    assert_eq!(
        parse(&[("retry-after", b"Tue, 31 Dec 2024 12:00:00 GMT")]).retry_after,
        ms(0)
    );
    assert_eq!(parse(&[("retry-after", b"-5")]).retry_after, None);
    assert_eq!(parse(&[("retry-after", b"soon")]).retry_after, None);
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let info = parse(&[("retry-after", b"1"), ("retry-after-ms", b"174.2")]);
    assert_eq!(info.retry_after, ms(175));
}

#[test]
fn should_retry_hint() {
    assert_eq!(
        parse(&[("x-should-retry", b"false")]).should_retry,
        Some(false)
    );
    assert_eq!(
        parse(&[("x-should-retry", b"TRUE")]).should_retry,
        Some(true)
    );
    assert_eq!(parse(&[("x-should-retry", b"maybe")]).should_retry, None);
    // Repeated: any "false" wins.
    let info = parse(&[("x-should-retry", b"true"), ("x-should-retry", b"false")]);
    assert_eq!(info.should_retry, Some(false));
}

#[test]
fn gemini_retry_delay_from_a_429_body() {
    let body = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12.000000001s"}]}}"#;
    let info = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        Some(body),
        now(),
    );
    assert_eq!(info.retry_after, ms(12_001));
    assert!(info.schemes.contains(Schemes::GEMINI));

    // Streamed errors come wrapped in an array.
    let body = br#"[{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}]"#;
    let info = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        Some(body),
        now(),
    );
    assert_eq!(info.retry_after, ms(7000));
}

#[test]
fn non_json_or_unknown_bodies_add_nothing() {
    for body in [
        &b"<html>rate limited</html>"[..],
        b"{}",
        b"[]",
        b"{\"error\":5}",
        b"\xff",
    ] {
        let info = QuotaInfo::parse(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            Some(body),
            now(),
        );
        assert!(info.is_empty(), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn request_too_large_is_flagged() {
    let body = br#"{"error":{"message":"Request too large for m in organization o on tokens per min (TPM): Limit 100, Requested 150.","type":"tokens","code":"rate_limit_exceeded"}}"#;
    let info = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        Some(body),
        now(),
    );
    assert!(info.request_too_large);
}

#[test]
fn repeated_headers_take_min_remaining_and_max_reset() {
    let info = parse(&[
        ("x-ratelimit-remaining-tokens", b"500"),
        ("x-ratelimit-remaining-tokens", b"20"),
        ("x-ratelimit-reset-tokens", b"1s"),
        ("x-ratelimit-reset-tokens", b"6s"),
        ("x-ratelimit-limit-tokens", b"1000, 900"),
        ("retry-after", b"3"),
        ("retry-after", b"9"),
    ]);
    assert_eq!(info.tokens.remaining, Some(20));
    assert_eq!(info.tokens.reset_after, ms(6000));
    assert_eq!(info.tokens.limit, Some(900));
    assert_eq!(info.retry_after, ms(9000));
}

#[test]
fn garbage_members_of_a_repeated_header_are_skipped() {
    let info = parse(&[
        ("x-ratelimit-remaining-tokens", b"junk"),
        ("x-ratelimit-remaining-tokens", b"40"),
        ("x-ratelimit-reset-tokens", b"-1, 2s"),
    ]);
    assert_eq!(info.tokens.remaining, Some(40));
    assert_eq!(info.tokens.reset_after, ms(2000));
}

#[test]
fn non_ascii_values_never_panic() {
    let info = parse(&[
        ("x-ratelimit-reset-tokens", "3µs".as_bytes()),
        ("x-ratelimit-reset-requests", b"\xff\xfe"),
        (
            "anthropic-ratelimit-tokens-reset",
            "2025-01-01T12:00:00Ω".as_bytes(),
        ),
        ("retry-after", b"\x80"),
        ("ratelimit", b"\"\xe2\x82\xac\";r=1"),
    ]);
    assert_eq!(info.tokens.reset_after, ms(1));
    assert_eq!(info.requests.reset_after, None);
    assert_eq!(info.retry_after, None);
}

#[test]
fn empty_headers_give_empty_info() {
    let info = parse(&[("content-type", b"text/event-stream")]);
    assert!(info.is_empty());
    assert!(info.schemes.is_empty());
}
