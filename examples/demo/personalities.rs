//! The three mock providers of the demo and their personalities.

use std::time::Duration;

use streamgate::mock::{KeepAlive, MockConfig, MockServer, Plan, RequestInfo};
use tokio::time::Instant;

/// What each mock stands for, in the order the backends get them.
pub const DESCRIPTIONS: [&str; 3] = [
    "fast, rate-limited",
    "overloaded in bursts",
    "slow but steady",
];

/// Requests per minute the fast provider allows (its headers say so).
pub const FAST_RPM: u64 = 150;
/// Tokens per minute the fast provider allows.
pub const FAST_TPM: u64 = 1_000_000;
/// How often the bursty provider is overloaded, and for how long.
pub const BURST_EVERY: Duration = Duration::from_secs(5);
/// The length of one overload burst.
pub const BURST_LENGTH: Duration = Duration::from_millis(1_500);

/// A cheap, deterministic hash of a request's index: the same run gets the
/// same faults.
pub fn dice(index: u64, salt: u64) -> u64 {
    let mut z = index
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Between 20 and 79 output tokens.
fn answer_length(info: &RequestInfo) -> u64 {
    20 + dice(info.index, 7) % 60
}

/// OpenAI format. Quick to answer and quick to stream, but rate-limited:
/// real `x-ratelimit-*` headers on every response, a 429 with `retry-after`
/// once the minute's requests or tokens are spent.
pub async fn fast() -> std::io::Result<MockServer> {
    MockServer::start(
        MockConfig::new()
            .with_requests_per_minute(FAST_RPM)
            .with_tokens_per_minute(FAST_TPM)
            .with_script(|info| {
                Plan::new()
                    .with_header_delay(Duration::from_millis(15))
                    .with_output_tokens(answer_length(info))
                    .with_chunk_delay(Duration::from_millis(3))
            }),
    )
    .await
}

/// Anthropic format. Overloaded in bursts: for 1.5 s in every 5 s,
/// most requests get a 529 or an in-band `overloaded_error` event inside
/// the HTTP 200 stream; the rest of the time a few streams still fail
/// before their first token or go quiet (pings only).
pub async fn bursty() -> std::io::Result<MockServer> {
    let start = Instant::now();
    MockServer::start(MockConfig::new().with_script(move |info| {
        let healthy = Plan::new()
            .with_header_delay(Duration::from_millis(40))
            .with_output_tokens(answer_length(info))
            .with_chunk_delay(Duration::from_millis(8));
        let phase = start.elapsed().as_millis() % BURST_EVERY.as_millis();
        let in_burst = phase >= (BURST_EVERY - BURST_LENGTH).as_millis();
        let roll = dice(info.index, 11) % 100;
        if in_burst {
            match roll {
                0..=39 => Plan::new()
                    .with_header_delay(Duration::from_millis(30))
                    .fail_with_status(529),
                // The error arrives as an SSE event after `message_start`,
                // before any content: still early enough to fail over.
                40..=69 => healthy.error_after(0),
                _ => healthy,
            }
        } else {
            match roll {
                0..=3 => healthy.error_after(0),
                4..=5 => healthy
                    .with_keep_alive(Duration::from_millis(200), KeepAlive::Comment)
                    .stall_after(0),
                _ => healthy,
            }
        }
    }))
    .await
}

/// Gemini format. Slow to start and slow to stream, and never fails.
pub async fn steady() -> std::io::Result<MockServer> {
    MockServer::start(MockConfig::new().with_script(|info| {
        Plan::new()
            .with_header_delay(Duration::from_millis(200))
            .with_first_content_delay(Duration::from_millis(100))
            .with_output_tokens(answer_length(info))
            .with_chunk_delay(Duration::from_millis(25))
    }))
    .await
}
