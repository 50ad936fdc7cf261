//! Gemini `streamGenerateContent?alt=sse`.

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, ErrorClass, ProviderError, Usage};
use tower_service::Service;

use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{
        encode_segment, key_header, ClientBuilder, ConfigError, Endpoint, Provider, ResponseFuture,
    },
    errors::{error_details, in_band_error, malformed},
    request::{ChatRequest, Role},
    sse::SseEvent,
    stream::{EventParser, ProviderStream, Step},
};

/// The body of a [`Gemini`] response.
pub type GenerateStream = ProviderStream<GenerateParser>;

/// A streaming Gemini client as a `tower::Service<ChatRequest>`.
///
/// POSTs to `{base_url}/models/{model}:streamGenerateContent?alt=sse` with
/// `x-goog-api-key`; system messages go to `systemInstruction`, the
/// assistant role is sent as `model`, `max_tokens` and `temperature` go to
/// `generationConfig`.
#[derive(Clone, Debug)]
pub struct Gemini {
    endpoint: Endpoint,
}

impl Provider for Gemini {
    const DEFAULT_BASE_URL: &'static str = "https://generativelanguage.googleapis.com/v1beta";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        key_header("x-goog-api-key", key)
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Gemini {
    /// A builder: base URL, API key, headers, HTTP client.
    pub fn builder() -> ClientBuilder<Self> {
        ClientBuilder::default()
    }

    /// The request body this client sends for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut system = Vec::new();
        let mut contents = Vec::with_capacity(request.messages.len());
        for message in &request.messages {
            let part = json!({"text": message.content});
            match message.role {
                Role::System => system.push(part),
                Role::Assistant => contents.push(json!({"role": "model", "parts": [part]})),
                _ => contents.push(json!({"role": "user", "parts": [part]})),
            }
        }
        let mut body = Map::new();
        body.insert("contents".into(), Value::Array(contents));
        if !system.is_empty() {
            body.insert("systemInstruction".into(), json!({"parts": system}));
        }
        let mut config = Map::new();
        if let Some(max_tokens) = request.max_tokens {
            config.insert("maxOutputTokens".into(), Value::from(max_tokens));
        }
        if let Some(temperature) = request.temperature {
            config.insert("temperature".into(), Value::from(temperature));
        }
        if !config.is_empty() {
            body.insert("generationConfig".into(), Value::Object(config));
        }
        request.finish_body(body)
    }
}

impl Service<ChatRequest> for Gemini {
    type Response = Response<GenerateStream>;
    type Error = BoxError;
    type Future = ResponseFuture<GenerateParser>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // The model is one path segment whatever the caller passed.
        let path = format!(
            "/models/{}:streamGenerateContent?alt=sse",
            encode_segment(&request.model)
        );
        let body = self.body(&request).to_string().into_bytes();
        self.endpoint.send(&path, body, GenerateParser::default())
    }
}

/// The Gemini event grammar: every `data:` event is a
/// `GenerateContentResponse` with cumulative `usageMetadata`; a candidate's
/// `finishReason` is the only terminal marker; `{"error": …}` is an in-band
/// error; `promptFeedback.blockReason` is a content-filter error.
#[derive(Debug, Default)]
pub struct GenerateParser {
    model_seen: bool,
    /// The last cumulative output count, to report per-delta counts.
    last_output: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<WireFeedback>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

/// Gemini usage: output is `candidatesTokenCount + thoughtsTokenCount`;
/// `promptTokenCount` already includes `cachedContentTokenCount`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        Usage {
            input_tokens: self.prompt_token_count.unwrap_or(0),
            output_tokens: self
                .candidates_token_count
                .unwrap_or(0)
                .saturating_add(thoughts),
            cached_input_tokens: self.cached_content_token_count.unwrap_or(0),
            reasoning_tokens: thoughts,
        }
    }
}

impl EventParser for GenerateParser {
    type Chunk = ChatChunk;

    fn parse(&mut self, event: &SseEvent<'_>) -> Result<Step<ChatChunk>, ProviderError> {
        let wire: Wire =
            serde_json::from_str(event.data).map_err(|e| malformed("gemini response", e))?;
        if let Some(error) = &wire.error {
            let details = error_details(&json!({ "error": error })).unwrap_or_default();
            return Err(in_band_error(details));
        }
        if let Some(reason) = wire.prompt_feedback.and_then(|f| f.block_reason) {
            return Err(ProviderError::new(
                ErrorClass::ContentFilter,
                format!("prompt blocked: {reason}"),
            )
            .with_code(reason)
            .in_band());
        }
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        if !self.model_seen {
            chunk.model = wire.model_version;
            self.model_seen = chunk.model.is_some();
        }
        if let Some(usage) = &wire.usage_metadata {
            let usage = usage.to_usage();
            if wire
                .usage_metadata
                .as_ref()
                .is_some_and(|u| u.candidates_token_count.is_some())
            {
                if let Some(last) = self.last_output {
                    chunk.reported_output_tokens = Some(usage.output_tokens.saturating_sub(last));
                }
                self.last_output = Some(usage.output_tokens);
            }
            chunk.usage = Some(usage);
        }
        let mut finished = !wire.candidates.is_empty();
        let mut call_index = 0u32;
        for candidate in wire.candidates {
            finished &= candidate.finish_reason.is_some();
            if let Some(reason) = candidate.finish_reason {
                chunk.finish_reason = Some(reason);
            }
            for part in candidate.content.into_iter().flat_map(|c| c.parts) {
                if let Some(text) = part.text {
                    let target = if part.thought {
                        &mut chunk.reasoning
                    } else {
                        &mut chunk.text
                    };
                    target.push_str(&text);
                }
                if let Some(call) = part.function_call {
                    chunk.tool_calls.push(ToolCallDelta {
                        index: call_index,
                        id: call.id,
                        name: call.name,
                        arguments: call.args.map(|a| a.to_string()).unwrap_or_default(),
                    });
                    call_index += 1;
                }
            }
        }
        use streamgate_core::Chunk as _;
        if !chunk.is_content() {
            chunk.kind = if chunk.usage.is_some() {
                ChunkKind::Usage
            } else {
                ChunkKind::Other
            };
        }
        if finished {
            return Ok(Step::Done(Some(chunk)));
        }
        Ok(Step::Chunk(chunk))
    }

    fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before a finishReason").in_band()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::stream::test_support::{run, run_split};
    use streamgate_core::Chunk;

    const THINKING: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me\",\"thought\":true}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":9,\"totalTokenCount\":9},\"modelVersion\":\"gemini-test\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Three\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":40,\"totalTokenCount\":51}}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" r's.\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":40,\"cachedContentTokenCount\":4,\"totalTokenCount\":54}}\r\n\r\n",
    );

    #[test]
    fn usage_near_u64_max_saturates_instead_of_overflowing() {
        let input = format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"a\"}}]}}}}],\"usageMetadata\":{{\"candidatesTokenCount\":{max},\"thoughtsTokenCount\":{max}}}}}\n\n",
            max = u64::MAX
        );
        let items = run(GenerateParser::default(), &[input.as_bytes()]);
        let usage = items[0].as_ref().ok().and_then(Chunk::usage);
        assert_eq!(usage.map(|u| u.output_tokens), Some(u64::MAX));
    }

    #[test]
    fn crlf_stream_with_cumulative_usage_and_thoughts_in_output() {
        let items: Vec<ChatChunk> = run_split(GenerateParser::default, THINKING.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].reasoning, "Let me");
        assert!(items[0].is_content());
        assert_eq!(items[0].model.as_deref(), Some("gemini-test"));
        assert_eq!(items[1].text, "Three");
        assert_eq!(items[2].finish_reason.as_deref(), Some("STOP"));
        let mut usage = None;
        for chunk in &items {
            Usage::merge_option(&mut usage, chunk.usage());
        }
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 9,
                output_tokens: 45,
                cached_input_tokens: 4,
                reasoning_tokens: 40
            })
        );
        // The delta between cumulative reports is the provider's own count.
        assert_eq!(items[2].output_tokens(), Some(3));
    }

    #[test]
    fn stream_without_finish_reason_is_truncated() {
        let cut = THINKING.rfind("data:").unwrap();
        let items = run(GenerateParser::default(), &[&THINKING.as_bytes()[..cut]]);
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[2].as_ref().unwrap_err().class(),
            ErrorClass::Truncated
        );
    }

    #[test]
    fn in_band_error_and_blocked_prompt_are_errors() {
        let input = b"data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
        let items = run(GenerateParser::default(), &[input]);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Overloaded);
        assert_eq!(err.code(), Some("UNAVAILABLE"));

        let blocked = b"data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\r\n\r\n";
        let items = run(GenerateParser::default(), &[blocked]);
        assert_eq!(
            items[0].as_ref().unwrap_err().class(),
            ErrorClass::ContentFilter
        );
    }

    #[test]
    fn function_call_parts_are_tool_calls() {
        let input = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}}}]},\"finishReason\":\"STOP\"}]}\r\n\r\n";
        let items = run(GenerateParser::default(), &[input]);
        let chunk = items[0].as_ref().unwrap();
        assert_eq!(chunk.tool_calls[0].name.as_deref(), Some("f"));
        assert_eq!(chunk.tool_calls[0].arguments, "{\"a\":1}");
    }

    #[test]
    fn body_maps_roles_system_and_generation_config() {
        let client = Gemini::builder().api_key("k").build().unwrap();
        let body = client.body(
            &ChatRequest::new("gemini")
                .with_system("s")
                .with_user("u")
                .with_assistant("a")
                .with_max_tokens(7),
        );
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], json!("s"));
        assert_eq!(body["contents"][1]["role"], json!("model"));
        assert_eq!(body["generationConfig"]["maxOutputTokens"], json!(7));
    }
}
