//! A scripted mock LLM provider: a real HTTP server on loopback that speaks the
//! OpenAI, Anthropic, Gemini and Ollama streaming formats and injects the faults you
//! plan.
//!
//! ```
//! use std::time::Duration;
//! use streamgate_mock::{MockConfig, MockServer, Plan, Provider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The first request is refused as overloaded; later ones stream 5 tokens, 1 ms apart.
//! let server = MockServer::start(
//!     MockConfig::new()
//!         .with_sequence([Plan::new().fail_with_status(529)])
//!         .with_plan(Plan::new().with_output_tokens(5).with_chunk_delay(Duration::from_millis(1))),
//! )
//! .await?;
//!
//! let url = server.endpoint(Provider::Anthropic, "claude-sonnet-4-5");
//! let body = r#"{"model":"claude-sonnet-4-5","stream":true,"messages":[]}"#;
//! let client = reqwest::Client::new();
//! let refused = client.post(&url).body(body).send().await?;
//! assert_eq!(refused.status().as_u16(), 529);
//!
//! let streamed = client.post(&url).body(body).send().await?.text().await?;
//! assert!(streamed.contains("event: message_stop"));
//! assert_eq!(server.tokens_served(), 5);
//! # Ok(())
//! # }
//! ```
//!
//! # Formats
//!
//! One server answers all four APIs on their real paths ([`Provider::path`]):
//!
//! - **OpenAI** Chat Completions, `POST /v1/chat/completions` (or `/chat/completions`):
//!   a role-only chunk, one `chat.completion.chunk` per token, a chunk with
//!   `finish_reason: "stop"`, a usage chunk (`"choices": []`) when the request sets
//!   `stream_options.include_usage`, then `data: [DONE]`.
//! - **Anthropic** Messages, `POST /v1/messages`: `message_start` (with input and
//!   cache-read tokens), `content_block_start`, `ping`, one `content_block_delta` per
//!   token, `content_block_stop`, `message_delta` (cumulative output tokens),
//!   `message_stop`.
//! - **Gemini**, `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`:
//!   CRLF-framed `data:` events with cumulative `usageMetadata`; the last one carries
//!   `finishReason: "STOP"`, the stream's only terminal marker.
//! - **Ollama** native chat, `POST /api/chat`: not SSE but newline-delimited JSON
//!   (`application/x-ndjson`), one `{"model","created_at","message":{"role":
//!   "assistant","content"},"done":false}` line per token, then a `"done": true` line
//!   with `done_reason`, `prompt_eval_count` (input), `eval_count` (output) and
//!   durations in nanoseconds: the terminal marker. Errors, HTTP or in-band, are
//!   `{"error": "..."}` (a 404 says the model was not found). Ollama has no
//!   keep-alive, so a planned keep-alive sends nothing and a stall is silent; it sends
//!   no rate-limit headers either (only `retry-after` when the plan sets one).
//!
//! - **Bedrock** `ConverseStream`, `POST /model/{model}/converse-stream`: binary AWS
//!   event-stream frames with valid CRCs (`application/vnd.amazon.eventstream`):
//!   `messageStart`, one `contentBlockDelta` per token, `contentBlockStop`,
//!   `messageStop` (the terminal marker), then `metadata` with the usage. An in-band
//!   error is an exception frame (`modelStreamErrorException` unless the plan's
//!   [error body](Plan::with_error_body) names another); HTTP errors carry
//!   `x-amzn-errortype`. No rate-limit headers, as upstream.
//! - **Azure OpenAI**, `POST /openai/deployments/{deployment}/chat/completions` or
//!   `/openai/v1/chat/completions`: OpenAI's stream after a `prompt_filter_results`
//!   chunk; its in-band error is a `content_filter` finish reason; rate limits in
//!   `x-ratelimit-{limit,remaining}-{requests,tokens}` without reset times, and
//!   `retry-after-ms` on a 429.
//! - **Vertex AI**, `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:streamGenerateContent`:
//!   the Gemini stream.
//!
//! Token `i` is the text `tok{i} ` ([`expected_text`] gives a whole answer). Input
//! tokens are estimated as the request body's length in bytes divided by 4, unless the
//! plan [sets them](Plan::with_input_tokens). Every response is a stream whatever
//! the request says (`stream: false` is not mocked), and a body that is not JSON gets
//! a 400 in the provider's format.
//!
//! # Plans and faults
//!
//! A [`Plan`] scripts one response: header delay, first-content delay with
//! keep-alives, inter-chunk delay, length, and at most one fault — an HTTP error with
//! the provider's body and headers, an in-band error event (for Ollama an `{"error"}`
//! line), a stall, an abrupt disconnect, or a stream without its terminal marker
//! (for Ollama, no done line). [`MockConfig`] says which
//! plan each request gets: a sequence, a script, then a default. All delays are tokio
//! sleeps, so they follow paused time.
//!
//! # Rate limits
//!
//! With [`MockConfig::with_requests_per_minute`] or
//! [`with_tokens_per_minute`](MockConfig::with_tokens_per_minute), the server enforces
//! the limit over a sliding 60 s window, answers 429 in the provider's format when it
//! is exceeded, and reports the limit, remaining amount and reset on every response:
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for OpenAI (Go-style
//! durations), `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*`
//! for Anthropic (RFC 3339 times) and `retry-after` on a 429. Gemini sends no such
//! headers, as upstream; its 429 body carries a `RetryInfo` and a `QuotaFailure`.
//! Ollama sends none either; its 429 is `{"error": "too many requests"}` with
//! `retry-after`.
//!
//! # Observation
//!
//! The server records a [`RequestLog`] per request: what was asked, the status, the
//! chunks and tokens sent, and when it ended or when the client went away. A client
//! disconnect is seen the moment hyper drops the response body (or, before the
//! headers, the handler), so [`MockServer::wait_for_disconnect`] proves that a client
//! really closed its connection.

mod config;
mod families;
mod formats;
mod log;
mod plan;
mod ratelimit;
mod server;
mod wire;

pub use config::MockConfig;
pub use families::RateLimitHeaders;
pub use formats::{expected_text, token_text, Provider};
pub use log::{RequestInfo, RequestLog, REQUEST_LOG_CAPACITY};
pub use plan::{KeepAlive, Plan, DEFAULT_OUTPUT_TOKENS};
pub use server::{MockServer, DEFAULT_MODEL, DEFAULT_REPORTED_RPM};
