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
fn azure_minus_one_limit_means_not_tracked() {
    let info = parse(&[
        ("x-ratelimit-limit-requests", b"-1"),
        ("x-ratelimit-remaining-requests", b"-1"),
        ("x-ratelimit-limit-tokens", b"not a number"),
        ("x-ratelimit-remaining-tokens", b"120000"),
    ]);
    // Limit -1: limit and remaining both unknown, whatever remaining says.
    assert_eq!(info.requests.limit, None);
    assert_eq!(info.requests.remaining, None);
    assert!(!info.requests.is_known());
    assert_eq!(info.tokens.limit, None);
    assert_eq!(info.tokens.remaining, Some(120_000));
    // The same whichever header comes first.
    let reversed = parse(&[
        ("x-ratelimit-remaining-requests", b"-1"),
        ("x-ratelimit-limit-requests", b"-1"),
        ("x-ratelimit-remaining-tokens", b"120000"),
        ("x-ratelimit-limit-tokens", b"not a number"),
    ]);
    assert_eq!(info, reversed);
}

#[test]
fn azure_negative_remaining_is_kept_and_scheduled_as_zero() {
    let info = parse(&[
        ("x-ratelimit-limit-tokens", b"30000"),
        ("x-ratelimit-remaining-tokens", b"-2048"),
        ("x-ratelimit-reset-tokens", b"-3s"),
    ]);
    assert_eq!(info.tokens.remaining, Some(-2048));
    assert_eq!(info.tokens.scheduled_remaining(), Some(0));
    assert!(!info.tokens.is_depleted());
    assert_eq!(info.tokens.limit, Some(30_000));
    // A negative reset already happened.
    assert_eq!(info.tokens.reset_after, ms(0));
}

#[test]
fn negative_reset_durations_are_zero_but_negative_retry_after_is_invalid() {
    let info = parse(&[
        ("x-ratelimit-reset-requests", b"-1.5s"),
        ("x-ratelimit-reset-tokens-minute", b"-5"),
        ("x-ratelimit-reset", b"-5"),
        ("retry-after", b"-5"),
        ("retry-after-ms", b"-100"),
    ]);
    assert_eq!(info.requests.reset_after, ms(0));
    assert_eq!(info.tokens.reset_after, ms(0));
    assert_eq!(info.retry_after, None);
}

#[test]
fn zero_limit_is_kept_as_zero_allowance() {
    let info = parse(&[
        ("x-ratelimit-limit-requests", b"0"),
        ("x-ratelimit-remaining-requests", b"0"),
    ]);
    assert_eq!(info.requests.limit, Some(0));
    assert!(info.requests.is_zero_allowance());
    assert!(!info.tokens.is_zero_allowance());
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
fn mistral_minute_and_month_windows_with_query_cost() {
    let info = parse(&[
        ("x-ratelimit-limit-req-minute", b"60"),
        ("x-ratelimit-remaining-req-minute", b"59"),
        ("x-ratelimit-limit-tokens-minute", b"500000"),
        ("x-ratelimit-remaining-tokens-minute", b"499877"),
        ("x-ratelimit-limit-tokens-month", b"1000000000"),
        ("x-ratelimit-remaining-tokens-month", b"999000123"),
        ("x-ratelimit-tokens-query-cost", b"123"),
    ]);
    assert_eq!(info.requests.limit, Some(60));
    assert_eq!(info.requests.remaining, Some(59));
    assert_eq!(info.requests.window, Some(MINUTE));
    // The shortest window is the primary token figure...
    assert_eq!(info.tokens.remaining, Some(499_877));
    assert_eq!(info.tokens.window, Some(MINUTE));
    // ...and the month is kept beside it.
    assert_eq!(
        info.windows,
        vec![WindowLimit {
            kind: LimitKind::Tokens,
            name: "tokens-month",
            limit: Limit {
                limit: Some(1_000_000_000),
                remaining: Some(999_000_123),
                reset_after: None,
                window: Some(MONTH),
            },
        }]
    );
    assert_eq!(info.tokens_query_cost, Some(123));
    assert!(info.schemes.contains(Schemes::MISTRAL));
    assert!(!info.schemes.contains(Schemes::CEREBRAS));
    // `req` is Mistral's word; `requests-minute` is a different header name
    // for the same window, not a prefix match of anything.
    assert!(parse(&[("x-ratelimit-remaining-reqs-minute", b"1")]).is_empty());
    assert!(parse(&[("x-ratelimit-remaining-req", b"1")]).is_empty());
}

#[test]
fn mistral_2024_ratelimitbysize_family_in_delta_seconds() {
    for prefix in ["ratelimitbysize", "x-ratelimitbysize"] {
        let name = |field: &str| format!("{prefix}-{field}");
        let (limit, remaining, reset, cost) = (
            name("limit"),
            name("remaining"),
            name("reset"),
            name("query-cost"),
        );
        let info = parse(&[
            (limit.as_str(), b"500000"),
            (remaining.as_str(), b"0"),
            (reset.as_str(), b"23"),
            (cost.as_str(), b"1200"),
        ]);
        assert_eq!(
            info.tokens,
            Limit {
                limit: Some(500_000),
                remaining: Some(0),
                reset_after: ms(23_000),
                window: Some(MINUTE),
            },
            "{prefix}"
        );
        assert_eq!(info.tokens_query_cost, Some(1200));
        assert!(info.schemes.contains(Schemes::MISTRAL));
    }
}

#[test]
fn together_requests_and_tokens() {
    let info = parse(&[
        ("x-ratelimit-limit", b"600"),
        ("x-ratelimit-remaining", b"598"),
        ("x-ratelimit-reset", b"1"),
        ("x-tokenlimit-limit", b"180000"),
        ("x-tokenlimit-remaining", b"179400"),
    ]);
    assert_eq!(info.requests.limit, Some(600));
    assert_eq!(info.requests.remaining, Some(598));
    assert_eq!(info.requests.reset_after, ms(1000));
    assert_eq!(info.tokens.limit, Some(180_000));
    assert_eq!(info.tokens.remaining, Some(179_400));
    assert!(info.schemes.contains(Schemes::TOGETHER));
    assert!(!info.schemes.contains(Schemes::OPENROUTER));
}

#[test]
fn cohere_trial_headers_also_on_a_400() {
    let headers = headers(&[
        ("x-endpoint-monthly-call-limit", b"1000"),
        ("x-trial-endpoint-call-limit", b"20"),
        ("x-trial-endpoint-call-remaining", b"0"),
    ]);
    let info = QuotaInfo::parse(StatusCode::BAD_REQUEST, &headers, None, now());
    assert_eq!(info.requests.limit, Some(20));
    assert_eq!(info.requests.remaining, Some(0));
    assert_eq!(info.requests.window, Some(MINUTE));
    assert_eq!(info.windows.len(), 1);
    assert_eq!(info.windows[0].name, "endpoint-monthly-call");
    assert_eq!(info.windows[0].limit.limit, Some(1000));
    assert_eq!(info.windows[0].limit.window, Some(MONTH));
    assert!(info.schemes.contains(Schemes::COHERE));
    assert!(QuotaInfo::may_have_quota(StatusCode::BAD_REQUEST, &headers));
}

#[test]
fn openrouter_limits_only_in_the_429_body_with_numbers_and_any_case() {
    let body = br#"{"error":{"code":429,"message":"Rate limit exceeded","metadata":{"headers":{"x-ratelimit-limit":20,"X-RATELIMIT-REMAINING":"0","X-RateLimit-Reset":1735732842000}}}}"#;
    let info = QuotaInfo::from_body(body, now());
    assert_eq!(info.requests.limit, Some(20));
    assert_eq!(info.requests.remaining, Some(0));
    assert_eq!(info.requests.reset_after, ms(42_000));
    assert!(info.schemes.contains(Schemes::OPENROUTER));
    // Headers and body together: the stricter reading of both.
    let with_headers = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[("x-ratelimit-remaining", b"3"), ("retry-after", b"5")]),
        Some(body),
        now(),
    );
    assert_eq!(with_headers.requests.remaining, Some(0));
    assert_eq!(with_headers.retry_after, ms(5000));
}

#[test]
fn oversized_bodies_are_not_read() {
    let mut body =
        br#"{"error":{"metadata":{"headers":{"X-RateLimit-Remaining":"0"}}},"pad":""#.to_vec();
    body.resize(MAX_BODY + 1, b' ');
    body.extend_from_slice(br#""}"#);
    assert!(QuotaInfo::from_body(&body, now()).is_empty());
}

#[test]
fn every_window_is_kept_whatever_the_header_order() {
    let pairs: [(&str, &[u8]); 6] = [
        ("x-ratelimit-limit-requests-day", b"14400"),
        ("x-ratelimit-remaining-requests-day", b"14000"),
        ("x-ratelimit-reset-requests-day", b"3600"),
        ("x-ratelimit-limit-requests-minute", b"30"),
        ("x-ratelimit-remaining-requests-minute", b"0"),
        ("x-ratelimit-reset-requests-minute", b"12.5"),
    ];
    let forward = parse(&pairs);
    let mut reversed = pairs;
    reversed.reverse();
    assert_eq!(forward, parse(&reversed));
    // The minute is primary (shortest window), the day is kept beside it.
    assert_eq!(forward.requests.limit, Some(30));
    assert_eq!(forward.requests.remaining, Some(0));
    assert_eq!(forward.requests.reset_after, ms(12_500));
    assert_eq!(forward.windows.len(), 1);
    assert_eq!(forward.windows[0].name, "requests-day");
    assert_eq!(forward.windows[0].limit.remaining, Some(14_000));
    assert_eq!(forward.windows[0].limit.window, Some(DAY));
}

#[test]
fn canonical_unsuffixed_figure_is_primary_and_other_scopes_are_kept() {
    let pairs: [(&str, &[u8]); 7] = [
        ("x-ratelimit-remaining-tokens_usage_based", b"159976"),
        ("x-ratelimit-remaining-project-tokens", b"900"),
        ("x-ratelimit-remaining-tokens-day", b"5"),
        ("x-ratelimit-remaining-tokens", b"159000"),
        ("x-ratelimit-limit-tokens", b"160000"),
        ("x-ratelimit-remaining-requests-day", b"70"),
        ("x-ratelimit-remaining-requests", b"4999"),
    ];
    let info = parse(&pairs);
    assert_eq!(info.tokens.remaining, Some(159_000));
    assert_eq!(info.tokens.limit, Some(160_000));
    assert_eq!(info.requests.remaining, Some(4999));
    let names: Vec<&str> = info.windows.iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "requests-day",
            "tokens-day",
            "project-tokens",
            "tokens_usage_based"
        ]
    );
    let mut reversed = pairs;
    reversed.reverse();
    assert_eq!(info, parse(&reversed));
}

#[test]
fn huge_values_never_panic_and_are_rejected_or_kept_exactly() {
    let info = parse(&[
        ("retry-after", b"99999999999999999999999999"),
        ("retry-after-ms", b"1e400"),
        ("x-ratelimit-reset-tokens", b"99999999999999999999h"),
        ("x-ratelimit-remaining-tokens", b"-99999999999999999999"),
        ("x-ratelimit-limit-requests", b"18446744073709551615"),
        ("x-ratelimit-reset", b"18446744073709551615"),
        (
            "anthropic-ratelimit-requests-reset",
            b"9999-12-31T23:59:59Z",
        ),
    ]);
    assert_eq!(info.retry_after, None);
    assert_eq!(info.tokens.reset_after, None);
    assert_eq!(info.tokens.remaining, None);
    assert_eq!(info.requests.limit, Some(u64::MAX));
    assert!(info.requests.reset_after.is_some());
}

#[test]
fn empty_headers_give_empty_info() {
    let info = parse(&[("content-type", b"text/event-stream")]);
    assert!(info.is_empty());
    assert!(info.schemes.is_empty());
}
