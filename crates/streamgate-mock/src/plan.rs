//! What the server does with one request: timings, length and the fault to inject.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

/// Output tokens a [`Plan`] streams unless told otherwise.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 10;

/// How an OpenAI-format stream fills a wait before the first content chunk.
///
/// Anthropic-format streams always send `event: ping`, the way the real API does;
/// Gemini- and Ollama-format streams send nothing, because the real APIs have no
/// keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepAlive {
    /// An SSE comment line, `: keep-alive`, which SSE parsers skip.
    #[default]
    Comment,
    /// A role-only chunk (`"delta":{"role":"assistant","content":""}`): valid JSON
    /// that carries no content, which is what some OpenAI-compatible servers send.
    RoleChunk,
}

/// The one fault a plan injects. Chunk counts are content chunks (one token each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer with this status and the provider's error body instead of a stream.
    Http(StatusCode),
    /// Send the provider's in-band error event after this many content chunks, then close.
    ErrorEvent { after_chunks: u64 },
    /// Send nothing more (keep-alives excepted) after this many content chunks.
    Stall { after_chunks: u64 },
    /// Abort the connection after this many content chunks, mid chunked encoding.
    Disconnect { after_chunks: u64 },
    /// Close cleanly after this many content chunks without the terminal marker.
    Truncate { after_chunks: u64 },
    /// Send a frame that is not valid in the dialect after this many content chunks, then close.
    Malformed { after_chunks: u64 },
}

impl Fault {
    /// The content chunk index at which an in-stream fault strikes.
    pub(crate) fn strikes_at(self) -> Option<u64> {
        match self {
            Fault::Http(_) => None,
            Fault::ErrorEvent { after_chunks }
            | Fault::Stall { after_chunks }
            | Fault::Disconnect { after_chunks }
            | Fault::Truncate { after_chunks }
            | Fault::Malformed { after_chunks } => Some(after_chunks),
        }
    }
}

/// A script for one response: delays, length and at most one fault.
///
/// Every delay is a `tokio::time` sleep, so plans behave the same on paused time.
/// Building a plan never fails; the last fault set wins. Faults counted in content
/// chunks (one token each) strike after the last one when the count is past the end.
///
/// ```
/// use std::time::Duration;
/// use streamgate_mock::Plan;
///
/// // 20 tokens, 5 ms apart, after a 50 ms wait filled with keep-alives every 10 ms.
/// let slow_start = Plan::new()
///     .with_output_tokens(20)
///     .with_chunk_delay(Duration::from_millis(5))
///     .with_first_content_delay(Duration::from_millis(50))
///     .with_keep_alive(Duration::from_millis(10), Default::default());
///
/// // The connection drops after three tokens.
/// let flaky = Plan::new().disconnect_after(3);
///
/// // A 429 that asks the client to come back in 7 seconds.
/// let limited = Plan::new().fail_with_status(429).with_retry_after(Duration::from_secs(7));
/// # let _ = (slow_start, flaky, limited);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub(crate) header_delay: Duration,
    pub(crate) first_content_delay: Duration,
    pub(crate) keep_alive: Option<(Duration, KeepAlive)>,
    pub(crate) chunk_delay: Duration,
    pub(crate) output_tokens: u64,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) cached_input_tokens: u64,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) error_body: Option<Value>,
    pub(crate) fault: Option<Fault>,
    pub(crate) honour_prefill: bool,
    /// The first token streamed: past a prefill the plan honours.
    pub(crate) start_token: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Self::new()
    }
}

impl Plan {
    /// A healthy stream of [`DEFAULT_OUTPUT_TOKENS`] tokens with no delays.
    pub fn new() -> Self {
        Self {
            header_delay: Duration::ZERO,
            first_content_delay: Duration::ZERO,
            keep_alive: None,
            chunk_delay: Duration::ZERO,
            output_tokens: DEFAULT_OUTPUT_TOKENS,
            input_tokens: None,
            cached_input_tokens: 0,
            retry_after: None,
            error_body: None,
            fault: None,
            honour_prefill: false,
            start_token: 0,
        }
    }

    /// Continues a prefilled answer: when the conversation ends in an
    /// assistant message (a `model` turn for Gemini) holding the first `k`
    /// tokens of the answer (its trailing whitespace may be left out), the
    /// stream starts at token `k`. Without it the mock answers from the
    /// start, as a server that ignores the prefill.
    pub fn honouring_prefill(mut self) -> Self {
        self.honour_prefill = true;
        self
    }

    /// Waits this long before sending the response headers (a slow connect or queue).
    pub fn with_header_delay(mut self, delay: Duration) -> Self {
        self.header_delay = delay;
        self
    }

    /// Waits this long between the stream's opening events and the first content chunk.
    pub fn with_first_content_delay(mut self, delay: Duration) -> Self {
        self.first_content_delay = delay;
        self
    }

    /// Sends a keep-alive every `interval` while waiting for the first content and
    /// while stalled. A zero interval turns keep-alives off.
    pub fn with_keep_alive(mut self, interval: Duration, kind: KeepAlive) -> Self {
        self.keep_alive = (!interval.is_zero()).then_some((interval, kind));
        self
    }

    /// Waits this long between consecutive content chunks.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Streams this many output tokens, one per content chunk: `tok0 `, `tok1 `, …
    /// (see [`expected_text`](crate::expected_text)).
    pub fn with_output_tokens(mut self, tokens: u64) -> Self {
        self.output_tokens = tokens;
        self
    }

    /// Reports (and charges against the TPM limit) this many input tokens instead of
    /// the estimate from the request body.
    pub fn with_input_tokens(mut self, tokens: u64) -> Self {
        self.input_tokens = Some(tokens);
        self
    }

    /// Reports this many of the input tokens as read from the provider's prompt cache.
    /// They are capped at the input token count.
    pub fn with_cached_input_tokens(mut self, tokens: u64) -> Self {
        self.cached_input_tokens = tokens;
        self
    }

    /// Adds `retry-after` (and, for a 429, rate-limit headers showing an exhausted
    /// request budget until then; for Gemini, a `RetryInfo` detail) to an error response.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Replaces the provider-style JSON body of an HTTP error, for errors the mock
    /// does not model (a context-length 400, a content-filter refusal, …). For
    /// Bedrock it also picks the exception an [`error_after`](Self::error_after)
    /// sends: `{"exceptionType": "throttlingException", "message": "…"}` (by
    /// default `modelStreamErrorException`).
    pub fn with_error_body(mut self, body: Value) -> Self {
        self.error_body = Some(body);
        self
    }

    /// Answers with this HTTP status and the provider's JSON error body instead of a
    /// stream: 429, 500, 503, Anthropic's 529, or any 4xx. A code outside 100..=999
    /// is treated as 500.
    pub fn fail_with_status(mut self, status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.fault = Some(Fault::Http(status));
        self
    }

    /// Sends the provider's in-band error event after `chunks` content chunks, inside
    /// the HTTP 200 stream, then closes the stream cleanly.
    pub fn error_after(mut self, chunks: u64) -> Self {
        self.fault = Some(Fault::ErrorEvent {
            after_chunks: chunks,
        });
        self
    }

    /// Goes silent after `chunks` content chunks (0: before the first) and never
    /// finishes; keep-alives, if configured, continue. The stream ends when the client
    /// leaves or the server shuts down.
    pub fn stall_after(mut self, chunks: u64) -> Self {
        self.fault = Some(Fault::Stall {
            after_chunks: chunks,
        });
        self
    }

    /// Aborts the connection after `chunks` content chunks: no terminal marker and no
    /// final chunk of the chunked encoding, so the client sees a body error.
    pub fn disconnect_after(mut self, chunks: u64) -> Self {
        self.fault = Some(Fault::Disconnect {
            after_chunks: chunks,
        });
        self
    }

    /// Closes the stream cleanly after `chunks` content chunks, without the closing
    /// events and terminal marker (`[DONE]`, `message_stop`, `finishReason`, Ollama's
    /// `"done": true` line).
    pub fn truncate_after(mut self, chunks: u64) -> Self {
        self.fault = Some(Fault::Truncate {
            after_chunks: chunks,
        });
        self
    }

    /// Sends a frame no parser of the dialect accepts (an event whose data is
    /// not JSON) after `chunks` content chunks, then closes the stream.
    pub fn malformed_after(mut self, chunks: u64) -> Self {
        self.fault = Some(Fault::Malformed {
            after_chunks: chunks,
        });
        self
    }

    /// Streams all the content, then closes cleanly without the closing events and
    /// terminal marker. Same as `truncate_after(u64::MAX)`.
    pub fn without_terminal_marker(self) -> Self {
        self.truncate_after(u64::MAX)
    }

    /// The HTTP error status this plan answers with, if it fails before streaming.
    pub fn http_error(&self) -> Option<StatusCode> {
        match self.fault {
            Some(Fault::Http(status)) => Some(status),
            _ => None,
        }
    }

    /// The number of output tokens a complete stream carries.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_fault_wins() {
        let plan = Plan::new().fail_with_status(429).stall_after(2);
        assert_eq!(plan.fault, Some(Fault::Stall { after_chunks: 2 }));
        assert_eq!(plan.http_error(), None);
    }

    #[test]
    fn invalid_status_becomes_internal_server_error() {
        assert_eq!(
            Plan::new().fail_with_status(42).http_error(),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(
            Plan::new()
                .fail_with_status(529)
                .http_error()
                .map(|s| s.as_u16()),
            Some(529)
        );
    }

    #[test]
    fn zero_keep_alive_interval_turns_keep_alive_off() {
        let plan = Plan::new().with_keep_alive(Duration::ZERO, KeepAlive::Comment);
        assert_eq!(plan.keep_alive, None);
    }
}
