//! Anthropic Messages streaming.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, Chunk as _, ProviderError, Usage};
use tower_service::Service;

use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{key_header, ClientBuilder, ConfigError, Endpoint, Provider, ResponseFuture},
    errors::{error_details, in_band_error, malformed},
    request::{ChatRequest, Role},
    sse::SseEvent,
    stream::{EventParser, ProviderStream, Step},
};

/// The `anthropic-version` header sent unless the builder sets another.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` sent when the request has none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The body of an [`Anthropic`] response.
pub type MessagesStream = ProviderStream<MessagesParser>;

/// A streaming Anthropic Messages client as a `tower::Service<ChatRequest>`.
///
/// POSTs to `{base_url}/messages` with `x-api-key` and `anthropic-version`;
/// system messages go to `system`.
#[derive(Clone, Debug)]
pub struct Anthropic {
    endpoint: Endpoint,
}

impl Provider for Anthropic {
    const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com/v1";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        key_header("x-api-key", key)
    }

    fn default_headers(headers: &mut HeaderMap) {
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Anthropic {
    /// A builder: base URL, API key, headers, HTTP client.
    pub fn builder() -> ClientBuilder<Self> {
        ClientBuilder::default()
    }

    /// The request body this client sends for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut system = String::new();
        let mut messages = Vec::with_capacity(request.messages.len());
        for message in &request.messages {
            match message.role {
                Role::System => {
                    if !system.is_empty() {
                        system.push('\n');
                    }
                    system.push_str(&message.content);
                }
                role => messages.push(json!({"role": role.as_str(), "content": message.content})),
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.as_str()));
        body.insert("messages".into(), Value::Array(messages));
        body.insert(
            "max_tokens".into(),
            Value::from(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        );
        body.insert("stream".into(), Value::Bool(true));
        if !system.is_empty() {
            body.insert("system".into(), Value::String(system));
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), Value::from(temperature));
        }
        request.finish_body(body)
    }
}

impl Service<ChatRequest> for Anthropic {
    type Response = Response<MessagesStream>;
    type Error = BoxError;
    type Future = ResponseFuture<MessagesParser>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // A JSON value always serialises; `Display` writes it compactly.
        let body = self.body(&request).to_string().into_bytes();
        self.endpoint
            .send("/messages", body, MessagesParser::default())
    }
}

/// The Messages event grammar: `message_start`, `content_block_*`, `ping`,
/// `message_delta`, `message_stop` (terminal) and `error`.
#[derive(Debug, Default)]
pub struct MessagesParser {
    /// A tool-use block opened but not yet given its first argument delta.
    pending_call: Option<(u32, Option<String>, Option<String>)>,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    index: u32,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    content_block: Option<WireBlock>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Anthropic usage: `input_tokens` excludes the cache, so input is
/// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`.
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cached)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0)),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: cached,
            reasoning_tokens: 0,
        }
    }
}

impl EventParser for MessagesParser {
    type Chunk = ChatChunk;

    fn parse(&mut self, event: &SseEvent<'_>) -> Result<Step<ChatChunk>, ProviderError> {
        let value_error = |data: &str| -> ProviderError {
            let details = serde_json::from_str::<Value>(data)
                .ok()
                .as_ref()
                .and_then(error_details)
                .unwrap_or_default();
            in_band_error(details)
        };
        if event.event == Some("error") {
            return Err(value_error(event.data));
        }
        let wire: Wire =
            serde_json::from_str(event.data).map_err(|e| malformed("messages event", e))?;
        let mut chunk = ChatChunk::new(ChunkKind::Other);
        match wire.kind.as_str() {
            "message_start" => {
                chunk.kind = ChunkKind::Start;
                if let Some(message) = wire.message {
                    chunk.model = message.model;
                    chunk.usage = message.usage.as_ref().map(WireUsage::to_usage);
                }
            }
            "content_block_start" => {
                // Not content yet: the call's id and name ride on its first
                // argument delta, which is.
                chunk.kind = ChunkKind::Start;
                if let Some(block) = wire.content_block {
                    match block.kind.as_str() {
                        "tool_use" | "server_tool_use" => {
                            self.pending_call = Some((wire.index, block.id, block.name));
                        }
                        _ => chunk.text = block.text.unwrap_or_default(),
                    }
                }
            }
            "content_block_delta" => {
                chunk.kind = ChunkKind::Delta;
                if let Some(delta) = wire.delta {
                    chunk.text = delta.text.unwrap_or_default();
                    chunk.reasoning = delta.thinking.unwrap_or_default();
                    if let Some(arguments) = delta.partial_json {
                        let (id, name) = match self.pending_call.take() {
                            Some((index, id, name)) if index == wire.index => (id, name),
                            other => {
                                self.pending_call = other;
                                (None, None)
                            }
                        };
                        chunk.tool_calls.push(ToolCallDelta {
                            index: wire.index,
                            id,
                            name,
                            arguments,
                        });
                    }
                }
                if !chunk.is_content() {
                    // Signature deltas and empty fragments.
                    chunk.kind = ChunkKind::Other;
                }
            }
            "content_block_stop" => chunk.kind = ChunkKind::Other,
            "ping" => chunk.kind = ChunkKind::Ping,
            "message_delta" => {
                chunk.kind = ChunkKind::Usage;
                chunk.usage = wire.usage.as_ref().map(WireUsage::to_usage);
                chunk.finish_reason = wire.delta.and_then(|d| d.stop_reason);
            }
            "message_stop" => return Ok(Step::Done(Some(ChatChunk::new(ChunkKind::Stop)))),
            "error" => return Err(value_error(event.data)),
            _ => return Ok(Step::Skip),
        }
        Ok(Step::Chunk(chunk))
    }

    fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before message_stop").in_band()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::stream::test_support::{run, run_split};
    use streamgate_core::{Chunk, ErrorClass};

    const CACHED: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"claude-test\",\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}   }\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}         \n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":42}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}",
    );

    #[test]
    fn usage_near_u64_max_saturates_instead_of_overflowing() {
        let input = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":{max},\"cache_read_input_tokens\":{max},\"cache_creation_input_tokens\":5}}}}}}\n\n",
            max = u64::MAX
        );
        let items = run(MessagesParser::default(), &[input.as_bytes()]);
        let usage = items[0].as_ref().ok().and_then(Chunk::usage);
        assert_eq!(usage.map(|u| u.input_tokens), Some(u64::MAX));
    }

    #[test]
    fn padded_json_without_final_blank_line_and_cumulative_usage() {
        let items: Vec<ChatChunk> = run_split(MessagesParser::default, CACHED.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let kinds: Vec<ChunkKind> = items.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ChunkKind::Start,
                ChunkKind::Start,
                ChunkKind::Ping,
                ChunkKind::Delta,
                ChunkKind::Other,
                ChunkKind::Usage,
                ChunkKind::Stop
            ]
        );
        let first_content = items.iter().position(Chunk::is_content);
        assert_eq!(first_content, Some(3));
        let mut usage = None;
        for chunk in &items {
            Usage::merge_option(&mut usage, chunk.usage());
        }
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 2105,
                output_tokens: 42,
                cached_input_tokens: 2000,
                reasoning_tokens: 0
            })
        );
        assert_eq!(items[0].model.as_deref(), Some("claude-test"));
        assert_eq!(items[5].finish_reason.as_deref(), Some("end_turn"));
    }

    #[test]
    fn missing_message_stop_is_truncated() {
        let cut = CACHED.find("event: message_stop").unwrap();
        let items = run(MessagesParser::default(), &[&CACHED.as_bytes()[..cut]]);
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.class(), ErrorClass::Truncated);
    }

    #[test]
    fn overloaded_error_event_is_overloaded_before_and_after_content() {
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"details\":null,\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let items = run(MessagesParser::default(), &[error.as_bytes()]);
        assert_eq!(items.len(), 1);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Overloaded);
        assert_eq!(err.code(), Some("overloaded_error"));
        assert!(err.is_in_band());

        let cut = CACHED.find("event: content_block_stop").unwrap();
        let mut input = CACHED.as_bytes()[..cut].to_vec();
        input.extend_from_slice(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\n",
        );
        let items = run(MessagesParser::default(), &[&input]);
        assert_eq!(items.len(), 5);
        assert!(items[3].as_ref().unwrap().is_content());
        assert_eq!(items[4].as_ref().unwrap_err().class(), ErrorClass::Server);
    }

    #[test]
    fn tool_use_block_start_is_not_content_but_its_first_json_delta_is() {
        let input = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"ci\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"abc\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let items: Vec<ChatChunk> = run(MessagesParser::default(), &[input.as_bytes()])
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(!items[0].is_content());
        assert!(items[1].is_content());
        assert_eq!(items[1].tool_calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(items[1].tool_calls[0].id.as_deref(), Some("toolu_1"));
        assert_eq!(items[1].tool_calls[0].arguments, "{\"ci");
        assert_eq!(items[1].tool_calls[0].index, 1);
        assert!(!items[2].is_content(), "signature delta is not content");
    }

    #[test]
    fn system_messages_go_to_system_and_max_tokens_has_a_default() {
        let client = Anthropic::builder().api_key("k").build().unwrap();
        let body = client.body(
            &ChatRequest::new("claude")
                .with_system("a")
                .with_system("b")
                .with_user("hi"),
        );
        assert_eq!(body["system"], json!("a\nb"));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["max_tokens"], json!(DEFAULT_MAX_TOKENS));
        assert_eq!(body["stream"], json!(true));
    }
}
