//! Rate-limit header families other than the dialect's own, so a test can
//! meet each scheme a client may see (see [`RateLimitHeaders`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::{json, Value};

use crate::formats::{insert_header, retry_after_secs};
use crate::ratelimit::{Budget, QuotaReport};

/// Which family of rate-limit headers the server reports its limits in
/// (set with [`MockConfig::with_rate_limit_headers`](crate::MockConfig::with_rate_limit_headers)).
/// Every family also sends `retry-after` on a 429. Resets are written in
/// each family's own format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// The provider dialect's own headers (OpenAI's for OpenAI-style
    /// routes, Anthropic's for Anthropic, none for Gemini and Ollama).
    #[default]
    Dialect,
    /// Mistral: `x-ratelimit-{limit,remaining}-req-minute` and
    /// `x-ratelimit-{limit,remaining}-tokens-minute`, without resets.
    Mistral,
    /// Mistral's 2024 family: `ratelimitbysize-{limit,remaining,reset}`
    /// for tokens, reset in delta seconds.
    MistralBySize,
    /// Together: `x-ratelimit-{limit,remaining,reset}` for requests (reset
    /// in delta seconds) and `x-tokenlimit-{limit,remaining}` for tokens.
    Together,
    /// Cohere trial keys: `x-trial-endpoint-call-{limit,remaining}` for
    /// requests and `x-endpoint-monthly-call-limit` (1000), on every
    /// response including errors.
    Cohere,
    /// OpenRouter: no rate-limit headers; a 429's JSON body carries
    /// `error.metadata.headers` with `X-RateLimit-{Limit,Remaining,Reset}`
    /// (reset in epoch milliseconds).
    OpenRouterBody,
    /// Cerebras: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}-minute`,
    /// reset in float seconds.
    Cerebras,
    /// IETF: `RateLimit-Policy: "rpm";q=…;w=60, "tpm";q=…;w=60;qu="tokens"`
    /// and `RateLimit: "rpm";r=…;t=…, "tpm";r=…;t=…`.
    Ietf,
}

/// Whole seconds, rounded up.
fn secs(d: Duration) -> u64 {
    retry_after_secs(d)
}

impl RateLimitHeaders {
    /// Writes `quota` in this family. Returns `false` for
    /// [`Dialect`](Self::Dialect): the dialect writes its own.
    pub(crate) fn write(
        self,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
        headers: &mut HeaderMap,
    ) -> bool {
        let (requests, tokens) = (quota.requests, quota.tokens);
        fn pair(
            headers: &mut HeaderMap,
            budget: Option<Budget>,
            [limit, remaining]: [&'static str; 2],
        ) -> Option<Budget> {
            if let Some(b) = budget {
                insert_header(headers, limit, b.limit);
                insert_header(headers, remaining, b.remaining);
            }
            budget
        }
        match self {
            Self::Dialect => return false,
            Self::Mistral => {
                pair(
                    headers,
                    requests,
                    [
                        "x-ratelimit-limit-req-minute",
                        "x-ratelimit-remaining-req-minute",
                    ],
                );
                pair(
                    headers,
                    tokens,
                    [
                        "x-ratelimit-limit-tokens-minute",
                        "x-ratelimit-remaining-tokens-minute",
                    ],
                );
            }
            Self::MistralBySize => {
                if let Some(b) = pair(
                    headers,
                    tokens,
                    ["ratelimitbysize-limit", "ratelimitbysize-remaining"],
                ) {
                    insert_header(headers, "ratelimitbysize-reset", secs(b.reset));
                }
            }
            Self::Together => {
                if let Some(b) = pair(
                    headers,
                    requests,
                    ["x-ratelimit-limit", "x-ratelimit-remaining"],
                ) {
                    insert_header(headers, "x-ratelimit-reset", secs(b.reset));
                }
                pair(
                    headers,
                    tokens,
                    ["x-tokenlimit-limit", "x-tokenlimit-remaining"],
                );
            }
            Self::Cohere => {
                pair(
                    headers,
                    requests,
                    [
                        "x-trial-endpoint-call-limit",
                        "x-trial-endpoint-call-remaining",
                    ],
                );
                insert_header(headers, "x-endpoint-monthly-call-limit", 1000);
            }
            Self::OpenRouterBody => {}
            Self::Cerebras => {
                for (budget, names) in [
                    (
                        requests,
                        [
                            "x-ratelimit-limit-requests-minute",
                            "x-ratelimit-remaining-requests-minute",
                            "x-ratelimit-reset-requests-minute",
                        ],
                    ),
                    (
                        tokens,
                        [
                            "x-ratelimit-limit-tokens-minute",
                            "x-ratelimit-remaining-tokens-minute",
                            "x-ratelimit-reset-tokens-minute",
                        ],
                    ),
                ] {
                    if let Some(b) = budget {
                        insert_header(headers, names[0], b.limit);
                        insert_header(headers, names[1], b.remaining);
                        insert_header(headers, names[2], format!("{:.3}", b.reset.as_secs_f64()));
                    }
                }
            }
            Self::Ietf => {
                let mut policy = Vec::new();
                let mut items = Vec::new();
                for (name, budget, unit) in
                    [("rpm", requests, ""), ("tpm", tokens, ";qu=\"tokens\"")]
                {
                    if let Some(b) = budget {
                        policy.push(format!("\"{name}\";q={};w=60{unit}", b.limit));
                        items.push(format!("\"{name}\";r={};t={}", b.remaining, secs(b.reset)));
                    }
                }
                if !policy.is_empty() {
                    insert_header(headers, "ratelimit-policy", policy.join(", "));
                    insert_header(headers, "ratelimit", items.join(", "));
                }
            }
        }
        if let Some(after) = retry_after {
            insert_header(headers, "retry-after", retry_after_secs(after));
        }
        true
    }

    /// Adds the family's limits to a 429 body (OpenRouter copies its
    /// headers into `error.metadata.headers`).
    pub(crate) fn write_body(self, quota: &QuotaReport, now: SystemTime, body: &mut Value) {
        if self != Self::OpenRouterBody {
            return;
        }
        let Some(b) = quota.requests else {
            return;
        };
        let reset_ms = (now + b.reset)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let headers = json!({
            "X-RateLimit-Limit": b.limit.to_string(),
            "X-RateLimit-Remaining": b.remaining.to_string(),
            "X-RateLimit-Reset": reset_ms.to_string(),
        });
        if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
            let metadata = error.entry("metadata").or_insert_with(|| json!({}));
            if let Some(metadata) = metadata.as_object_mut() {
                metadata.insert("headers".to_owned(), headers);
            }
        } else if let Some(object) = body.as_object_mut() {
            object.insert(
                "error".to_owned(),
                json!({"code": 429, "message": "Rate limit exceeded", "metadata": {"headers": headers}}),
            );
        }
    }
}
