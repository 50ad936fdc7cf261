//! Properties of the rate-limit parser over generated header sets: header
//! order and letter case never change the parse, the body-copied headers
//! read like real ones, and no input panics. A fixed case budget keeps each
//! property to well under a second of CPU.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use streamgate_quota::QuotaInfo;

const CASES: u32 = 2000;

/// Every header name a scheme reads, and a few near misses.
const NAMES: &[&str] = &[
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-remaining-requests-day",
    "x-ratelimit-reset-requests-day",
    "x-ratelimit-remaining-requests-minute",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-tokens-minute",
    "x-ratelimit-reset-tokens-minute",
    "x-ratelimit-remaining-tokens-month",
    "x-ratelimit-limit-req-minute",
    "x-ratelimit-remaining-req-minute",
    "x-ratelimit-tokens-query-cost",
    "x-ratelimit-remaining-tokens_usage_based",
    "x-ratelimit-remaining-project-tokens",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-tokenlimit-limit",
    "x-tokenlimit-remaining",
    "ratelimitbysize-limit",
    "ratelimitbysize-remaining",
    "ratelimitbysize-reset",
    "x-ratelimitbysize-query-cost",
    "x-trial-endpoint-call-limit",
    "x-trial-endpoint-call-remaining",
    "x-endpoint-monthly-call-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-output-tokens-limit",
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-remaining",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-groq-region",
    "x-ratelimit-remaining-requestsx",
    "x-ratelimit-remaining-req",
];

/// Values in every shape the schemes use, signs and garbage included.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        (-3i64..3).prop_map(|n| n.to_string()),
        (0u64..5000, 0u32..1000).prop_map(|(s, f)| format!("{s}.{f}")),
        (0u64..90, 0u64..60).prop_map(|(m, s)| format!("{m}m{s}s")),
        (0u64..999).prop_map(|n| format!("{n}ms")),
        (0u64..999).prop_map(|n| format!("-{n}.5s")),
        (0u64..120_000).prop_map(|n| (1_735_732_800_000 + n).to_string()),
        (0u64..59).prop_map(|s| format!("2025-01-01T12:00:{s:02}Z")),
        (0u64..100, 0u64..100).prop_map(|(r, t)| format!("\"rpm\";r={r};t={t}")),
        (0u64..100, 0u64..100).prop_map(|(q, w)| format!("\"rpm\";q={q};w={w}")),
        (0u64..100, 0u64..100).prop_map(|(a, b)| format!("limit={a}, remaining={b}")),
        (0u64..100, 0u64..100).prop_map(|(a, b)| format!("{a}, {b}")),
        Just("true".to_owned()),
        Just("FALSE".to_owned()),
        Just("Wed, 01 Jan 2025 12:00:30 GMT".to_owned()),
        Just("99999999999999999999999".to_owned()),
        prop::collection::vec(32u8..127, 0..12)
            .prop_map(|b| b.into_iter().map(char::from).collect()),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((prop::sample::select(NAMES), value()), 0..16)
}

/// The pairs, reordered by `perm` and with each name's letters in the case
/// `upper` says.
fn variant(
    pairs: &[(&'static str, String)],
    perm: &[usize],
    upper: &[bool],
) -> Vec<(String, String)> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|i| perm.get(*i).copied().unwrap_or(0));
    order
        .into_iter()
        .map(|i| {
            let (name, value) = &pairs[i];
            let name: String = name
                .chars()
                .enumerate()
                .map(|(k, c)| {
                    if upper.get(k % upper.len().max(1)).copied().unwrap_or(false) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            (name, value.clone())
        })
        .collect()
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// An OpenRouter-style 429 body carrying the pairs (one value per name: a
/// JSON object cannot repeat a key).
fn body(pairs: &[(String, String)]) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({"error": {"code": 429, "metadata": {"headers": headers}}})
        .to_string()
        .into_bytes()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_732_800)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn header_order_and_case_never_change_the_parse(
        pairs in pairs(),
        perm in prop::collection::vec(any::<usize>(), 16),
        upper in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let plain: Vec<(String, String)> =
            pairs.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
        let reference = QuotaInfo::from_headers(&header_map(&plain), now());
        let shuffled = variant(&pairs, &perm, &upper);
        prop_assert_eq!(&QuotaInfo::from_headers(&header_map(&shuffled), now()), &reference);
    }

    #[test]
    fn body_copied_headers_read_like_headers_in_any_order_and_case(
        pairs in pairs(),
        perm in prop::collection::vec(any::<usize>(), 16),
        upper in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        // One value per name, as a JSON object holds them.
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<(&'static str, String)> =
            pairs.into_iter().filter(|(n, _)| seen.insert(*n)).collect();
        let plain: Vec<(String, String)> =
            unique.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
        let from_headers = QuotaInfo::from_headers(&header_map(&plain), now());
        let shuffled = variant(&unique, &perm, &upper);
        let from_body = QuotaInfo::from_body(&body(&shuffled), now());
        prop_assert_eq!(&from_body, &from_headers);
    }

    #[test]
    fn arbitrary_values_never_panic(
        pairs in prop::collection::vec(
            (prop::sample::select(NAMES), prop::collection::vec(32u8..=255, 0..64)),
            0..16,
        ),
        body_bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut map = HeaderMap::new();
        for (name, bytes) in &pairs {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        let info = QuotaInfo::parse(http::StatusCode::TOO_MANY_REQUESTS, &map, Some(&body_bytes), now());
        // Whatever was read is within what any value could say.
        for (_, limit) in info.all_limits() {
            prop_assert!(limit.reset_after.is_none_or(|d| d.as_millis() <= u128::from(u64::MAX)));
        }
    }
}
