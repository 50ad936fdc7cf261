//! OpenAI Chat Completions streaming, and every server that speaks it.

use std::{
    borrow::Cow,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, Prefill, ProviderError, Usage};
use tower_service::Service;

use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{bearer, ClientBuilder, ConfigError, Endpoint, Provider, ResponseFuture},
    errors::{error_details, in_band_error, malformed},
    request::{ChatRequest, Role},
    sse::SseEvent,
    stream::{EventParser, ProviderStream, Step},
};

/// The body of an [`OpenAiChat`] response.
pub type ChatStream = ProviderStream<ChatParser>;

/// A streaming OpenAI Chat Completions client as a
/// `tower::Service<ChatRequest>`.
///
/// Also for Azure OpenAI (`auth_header("api-key", key)` and the deployment
/// URL as base), Groq, OpenRouter, Mistral, Together, Fireworks, DeepSeek,
/// vLLM and other compatible servers through the base URL.
///
/// Sends `stream: true` and `stream_options.include_usage: true` (unless
/// turned off), POSTs to `{base_url}/chat/completions`. The response
/// resolves once headers arrive; an error status becomes a
/// [`ProviderError`] (as a [`BoxError`]).
#[derive(Clone, Debug)]
pub struct OpenAiChat {
    endpoint: Endpoint,
    include_usage: bool,
}

impl Provider for OpenAiChat {
    const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        bearer(key)
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            include_usage: true,
        }
    }
}

impl OpenAiChat {
    /// A builder: base URL, API key, headers, HTTP client.
    pub fn builder() -> ClientBuilder<Self> {
        ClientBuilder::default()
    }

    /// Whether to ask for the usage chunk (`stream_options.include_usage`,
    /// default true). Some older compatible servers reject the option.
    #[must_use]
    pub fn with_include_usage(mut self, include_usage: bool) -> Self {
        self.include_usage = include_usage;
        self
    }

    /// The shared endpoint (for clients on other paths: Azure).
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The request body this client sends for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let last = request.messages.len().saturating_sub(1);
        let prefix = request.prefill == Some(Prefill::AssistantPrefix);
        let messages: Vec<Value> = request
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                // Prefix completion: the model continues this message.
                if prefix && i == last && m.role == Role::Assistant {
                    json!({"role": m.role.as_str(), "content": m.content, "prefix": true})
                } else {
                    json!({"role": m.role.as_str(), "content": m.content})
                }
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.as_str()));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), Value::Bool(true));
        if self.include_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        if let Some(max_tokens) = request.max_tokens {
            body.insert("max_tokens".into(), Value::from(max_tokens));
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), Value::from(temperature));
        }
        request.finish_body(body)
    }
}

impl Service<ChatRequest> for OpenAiChat {
    type Response = Response<ChatStream>;
    type Error = BoxError;
    type Future = ResponseFuture<ChatParser>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // A JSON value always serialises; `Display` writes it compactly.
        let body = self.body(&request).to_string().into_bytes();
        self.endpoint
            .send("/chat/completions", body, ChatParser::default())
    }
}

/// The Chat Completions event grammar: `data: {chunk}` events, in-band
/// `data: {"error": …}`, and `data: [DONE]` as the terminal marker.
#[derive(Debug, Default)]
pub struct ChatParser {
    model_seen: bool,
    /// Azure: a `content_filter` finish reason is an error.
    filter_is_error: bool,
}

impl ChatParser {
    /// The grammar with Azure's reading of a `content_filter` finish
    /// reason: the output was cut by the content filter, a
    /// `content_filter` error rather than a clean end.
    pub fn azure() -> Self {
        Self {
            filter_is_error: true,
            ..Self::default()
        }
    }
}

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_filter_results: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek and vLLM.
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// OpenAI usage: prompt includes cached, completion includes reasoning.
#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<ReasoningDetails>,
}

#[derive(Deserialize)]
pub(crate) struct CachedDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn to_usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0),
            cached_input_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

impl EventParser for ChatParser {
    type Chunk = ChatChunk;

    fn parse(&mut self, event: &SseEvent<'_>) -> Result<Step<ChatChunk>, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done(None));
        }
        if data.is_empty() {
            return Ok(Step::Skip);
        }
        let wire: WireChunk<'_> =
            serde_json::from_str(data).map_err(|e| malformed("chat completion chunk", e))?;
        if let Some(error) = &wire.error {
            let details = error_details(&json!({ "error": error })).unwrap_or_default();
            return Err(in_band_error(details));
        }
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        if !self.model_seen {
            if let Some(model) = wire.model.as_deref().filter(|m| !m.is_empty()) {
                chunk.model = Some(model.to_owned());
                self.model_seen = true;
            }
        }
        chunk.usage = wire.usage.as_ref().map(WireUsage::to_usage);
        // Several choices (n > 1) are folded into one chunk: text is
        // appended in choice order, tool calls keep their own indexes.
        for choice in wire.choices {
            if let Some(reason) = choice.finish_reason {
                chunk.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else { continue };
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                append(&mut chunk.text, text);
            }
            for text in [delta.reasoning_content, delta.reasoning]
                .into_iter()
                .flatten()
            {
                append(&mut chunk.reasoning, text);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                chunk.tool_calls.push(ToolCallDelta {
                    index: call.index,
                    id: call.id,
                    name,
                    arguments,
                });
            }
        }
        if self.filter_is_error && chunk.finish_reason.as_deref() == Some("content_filter") {
            return Err(ProviderError::new(
                streamgate_core::ErrorClass::ContentFilter,
                "output stopped by the content filter",
            )
            .with_code("content_filter")
            .in_band());
        }
        use streamgate_core::Chunk as _;
        if !chunk.is_content() {
            chunk.kind = if chunk.usage.is_some() {
                ChunkKind::Usage
            } else if wire.prompt_filter_results.is_some() {
                ChunkKind::Filter
            } else if chunk.finish_reason.is_some() {
                ChunkKind::Stop
            } else {
                ChunkKind::Start
            };
        }
        Ok(Step::Chunk(chunk))
    }

    fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before data: [DONE]").in_band()
    }
}

/// Appends without copying when the target is still empty.
fn append(target: &mut String, text: String) {
    if target.is_empty() {
        *target = text;
    } else {
        target.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::stream::test_support::{run, run_split};
    use streamgate_core::{Chunk, ErrorClass};

    const TEXT: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,\"total_tokens\":21,",
        "\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":5}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn chunks(items: Vec<Result<ChatChunk, ProviderError>>) -> Vec<ChatChunk> {
        items.into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn role_only_chunk_is_not_content_and_usage_comes_from_the_final_chunk() {
        let items = chunks(run_split(ChatParser::default, TEXT.as_bytes()));
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].kind, ChunkKind::Start);
        assert!(!items[0].is_content());
        assert_eq!(items[0].model.as_deref(), Some("gpt-test"));
        assert_eq!(items[1].text, "Hel");
        assert!(items[1].is_content());
        assert_eq!(items[1].model, None, "model only once");
        assert_eq!(items[3].kind, ChunkKind::Stop);
        assert_eq!(items[3].finish_reason.as_deref(), Some("stop"));
        assert_eq!(items[4].kind, ChunkKind::Usage);
        assert_eq!(
            items[4].usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 9,
                cached_input_tokens: 4,
                reasoning_tokens: 5
            })
        );
    }

    #[test]
    fn missing_done_is_a_truncated_error_item() {
        let cut = TEXT.find("data: [DONE]").unwrap();
        let items = run(ChatParser::default(), &[&TEXT.as_bytes()[..cut]]);
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Truncated);
        assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    }

    #[test]
    fn connection_closed_mid_event_is_truncated() {
        let cut = TEXT.find("\"Hel").unwrap();
        let items = run(ChatParser::default(), &[&TEXT.as_bytes()[..cut]]);
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1].as_ref().unwrap_err().class(),
            ErrorClass::Truncated
        );
    }

    #[test]
    fn in_band_error_before_content_ends_the_stream_with_its_class() {
        let input = b"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\ndata: [DONE]\n\n";
        let items = run(ChatParser::default(), &[input]);
        assert_eq!(items.len(), 1);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Server);
        assert_eq!(err.code(), Some("server_error"));
        assert!(err.is_in_band());
    }

    #[test]
    fn in_band_error_after_content_follows_the_content() {
        let input = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
        );
        let items = run(ChatParser::default(), &[input.as_bytes()]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().text, "partial");
        assert_eq!(
            items[1].as_ref().unwrap_err().class(),
            ErrorClass::RateLimited
        );
    }

    #[test]
    fn azure_filter_chunk_is_not_content() {
        let input = concat!(
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n",
            "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"model\":\"gpt-5\"}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"index\":0}]}\n\n",
            "data: [DONE]\n\n",
        );
        let items = chunks(run(ChatParser::default(), &[input.as_bytes()]));
        assert_eq!(items[0].kind, ChunkKind::Filter);
        assert!(!items[0].is_content());
        assert!(!items[1].is_content());
        assert_eq!(
            items[1].model.as_deref(),
            Some("gpt-5"),
            "empty model skipped"
        );
        assert!(items[2].is_content());
    }

    #[test]
    fn azure_content_filter_finish_reason_is_a_content_filter_error() {
        let input = concat!(
            "data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"index\":0}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\",\"index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":true,\"severity\":\"high\"}}}]}\n\n",
            "data: [DONE]\n\n",
        );
        let items = run(ChatParser::azure(), &[input.as_bytes()]);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().kind, ChunkKind::Filter);
        assert!(items[1].as_ref().unwrap().is_content());
        let err = items[2].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::ContentFilter);
        assert_eq!(err.code(), Some("content_filter"));
        // Plain OpenAI keeps reading it as a finish reason.
        let items = run(ChatParser::default(), &[input.as_bytes()]);
        assert_eq!(items[2].as_ref().unwrap().kind, ChunkKind::Stop);
    }

    #[test]
    fn tool_call_deltas_are_content_even_with_empty_arguments() {
        let input = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\"\"}}]}}]}\n\n",
            "data: [DONE]\n\n",
        );
        let items = chunks(run(ChatParser::default(), &[input.as_bytes()]));
        assert!(items[0].is_content());
        assert_eq!(items[0].tool_calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(items[1].tool_calls[0].arguments, "{\"city\"");
    }

    #[test]
    fn json_of_the_wrong_shape_is_a_typed_error() {
        for data in [
            "[1,2]",
            "{\"choices\": 3}",
            "not json",
            "{\"choices\":[{\"delta\":{\"content\":7}}]}",
        ] {
            let input = format!("data: {data}\n\n");
            let items = run(ChatParser::default(), &[input.as_bytes()]);
            assert_eq!(items.len(), 1, "{data}");
            let err = items[0].as_ref().unwrap_err();
            assert_eq!(err.class(), ErrorClass::Server, "{data}");
            assert!(std::error::Error::source(err).is_some());
        }
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let items = run(
            ChatParser::default(),
            &[b"data: {\"choices\":[]}\n\ndata: \xc3\x28\n\n"],
        );
        assert_eq!(items.len(), 2);
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Server);
        let source = std::error::Error::source(err).unwrap();
        assert!(source.is::<crate::sse::SseError>());
    }

    #[test]
    fn ten_megabyte_line_is_a_typed_error_not_unbounded_memory() {
        let piece = vec![b'x'; 1024 * 1024];
        let mut pieces: Vec<&[u8]> = vec![b"data: "];
        pieces.extend(std::iter::repeat_n(&piece[..], 10));
        let items = run(ChatParser::default(), &pieces);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().class(), ErrorClass::Server);
    }

    #[test]
    fn a_prefix_continuation_marks_only_the_final_assistant_message() {
        use streamgate_core::Continuable;
        let client = OpenAiChat::builder().api_key("sk-secret").build().unwrap();
        let request = ChatRequest::new("deepseek-chat").with_user("hi");
        let body = client.body(
            &request
                .continued("Hello ", Prefill::AssistantPrefix)
                .unwrap(),
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello ", "prefix": true}
            ])
        );
        let vllm = client.body(
            &request
                .continued("Hello ", Prefill::ContinueFinalMessage)
                .unwrap(),
        );
        assert_eq!(
            vllm["messages"][1],
            json!({"role": "assistant", "content": "Hello "})
        );
        assert_eq!(vllm["continue_final_message"], json!(true));
        assert_eq!(vllm["add_generation_prompt"], json!(false));
    }

    #[test]
    fn body_sets_stream_and_usage_options_and_passes_extras_through() {
        let client = OpenAiChat::builder().api_key("sk-secret").build().unwrap();
        let request = ChatRequest::new("gpt-4o-mini")
            .with_system("be brief")
            .with_user("hi")
            .with_max_tokens(5)
            .with_tools(json!([{"type": "function", "function": {"name": "f"}}]))
            .with_extra("top_p", json!(0.5));
        let body = client.body(&request);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        assert_eq!(body["messages"][0]["role"], json!("system"));
        assert_eq!(body["max_tokens"], json!(5));
        assert_eq!(body["tools"][0]["function"]["name"], json!("f"));
        assert_eq!(body["top_p"], json!(0.5));
        let without = client.with_include_usage(false).body(&request);
        assert!(without.get("stream_options").is_none());
    }

    #[test]
    fn api_key_never_appears_in_debug_output() {
        let builder = OpenAiChat::builder().api_key("sk-secret-123");
        assert!(!format!("{builder:?}").contains("sk-secret-123"));
        let client = builder.build().unwrap();
        assert!(!format!("{client:?}").contains("sk-secret-123"));
        let azure = OpenAiChat::builder()
            .auth_header("api-key", "azure-secret-456")
            .build()
            .unwrap();
        assert!(!format!("{azure:?}").contains("azure-secret-456"));
    }

    #[test]
    fn invalid_base_url_is_a_config_error() {
        assert!(matches!(
            OpenAiChat::builder().base_url("not a url").build(),
            Err(ConfigError::InvalidBaseUrl(_))
        ));
        assert!(matches!(
            OpenAiChat::builder().base_url("ftp://host/v1").build(),
            Err(ConfigError::InvalidBaseUrl(_))
        ));
    }
}
