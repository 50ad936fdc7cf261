//! Ollama's native streaming API (`POST /api/chat`): newline-delimited
//! JSON, not SSE.

use std::{
    borrow::Cow,
    task::{Context, Poll},
};

use http::{header, HeaderMap, HeaderName, HeaderValue, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, Chunk as _, ProviderError, Usage};
use tower_service::Service;

use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{bearer, ClientBuilder, ConfigError, Endpoint, Provider, ResponseFuture},
    errors::{error_details, in_band_error, malformed},
    ndjson::NdjsonDecoder,
    request::ChatRequest,
    stream::{LineParser, ProviderStream, Step},
};

/// The body of an [`Ollama`] response.
pub type OllamaStream = ProviderStream<OllamaParser, NdjsonDecoder>;

/// A streaming Ollama chat client as a `tower::Service<ChatRequest>`.
///
/// POSTs `{"model", "messages", "stream": true, "options": {"num_predict",
/// "temperature"}}` (and `tools` when set) to `{base_url}/api/chat`, and
/// reads the `application/x-ndjson` answer: one JSON object per line, the
/// last with `"done": true` and the token counts. The base URL defaults to
/// `http://localhost:11434`, where a local Ollama listens. Ollama has no
/// authentication; [`ClientBuilder::bearer`] adds an
/// `Authorization: Bearer` header for a proxy in front of it.
///
/// An HTTP error status becomes a [`ProviderError`] (as a [`BoxError`]):
/// Ollama's `{"error": "..."}` body gives the message, the status the class
/// (404 model not found: client; 429 rate limited; 503 overloaded; other
/// 5xx server).
///
/// ```no_run
/// use streamgate_providers::{ollama::Ollama, ChatRequest};
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = Ollama::builder().build()?;
/// let response = client.oneshot(ChatRequest::new("llama3.2").with_user("hi")).await?;
/// # let _ = response;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Ollama {
    endpoint: Endpoint,
}

impl Provider for Ollama {
    const DEFAULT_BASE_URL: &'static str = "http://localhost:11434";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        bearer(key)
    }

    fn default_headers(headers: &mut HeaderMap) {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-ndjson"),
        );
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl ClientBuilder<Ollama> {
    /// Sends `Authorization: Bearer TOKEN`, for a proxy in front of Ollama
    /// (Ollama itself has no authentication). The same as
    /// [`api_key`](Self::api_key): never shown in `Debug` output or errors.
    #[must_use]
    pub fn bearer(self, token: impl Into<String>) -> Self {
        self.api_key(token)
    }
}

impl Ollama {
    /// A builder: base URL (default `http://localhost:11434`), optional
    /// bearer token, headers, HTTP client.
    pub fn builder() -> ClientBuilder<Self> {
        ClientBuilder::default()
    }

    /// The request body this client sends for `request`: `max_tokens`
    /// becomes `options.num_predict`, `temperature` `options.temperature`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.as_str()));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), Value::Bool(true));
        let mut options = Map::new();
        if let Some(max_tokens) = request.max_tokens {
            options.insert("num_predict".into(), Value::from(max_tokens));
        }
        if let Some(temperature) = request.temperature {
            options.insert("temperature".into(), Value::from(temperature));
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        request.finish_body(body)
    }
}

impl Service<ChatRequest> for Ollama {
    type Response = Response<OllamaStream>;
    type Error = BoxError;
    type Future = ResponseFuture<OllamaParser, NdjsonDecoder>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // A JSON value always serialises; `Display` writes it compactly.
        let body = self.body(&request).to_string().into_bytes();
        self.endpoint
            .send_ndjson("/api/chat", body, OllamaParser::default())
    }
}

/// The Ollama line grammar, for `/api/chat` and `/api/generate` alike.
///
/// - `{"message": {"content", "thinking", "tool_calls"}, "done": false}`
///   (chat) or `{"response", "thinking", "done": false}` (generate): a delta;
///   content when the text, thinking or tool calls are non-empty.
/// - `{"done": true, "done_reason", "prompt_eval_count", "eval_count", …}`:
///   the terminal marker, yielded as a last chunk with the finish reason and
///   usage (input = `prompt_eval_count`, output = `eval_count`).
/// - `{"error": "..."}`: an in-band error, class server unless the message
///   says otherwise (context length, …).
///
/// A line that is not such an object (not JSON, or without `done`) is a
/// malformed-payload error.
#[derive(Debug, Default)]
pub struct OllamaParser {
    model_seen: bool,
    lines_seen: bool,
    tool_calls_seen: u32,
}

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<WireMessage>,
    /// `/api/generate`.
    #[serde(default)]
    response: Option<String>,
    /// `/api/generate` with `think`.
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    /// A JSON object, complete in one line (Ollama does not stream
    /// arguments in fragments).
    #[serde(default)]
    arguments: Option<Value>,
}

/// The line had none of the fields every Ollama line carries.
#[derive(Debug)]
struct MissingDone;

impl std::fmt::Display for MissingDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("line has neither \"done\" nor \"error\"")
    }
}

impl std::error::Error for MissingDone {}

impl LineParser for OllamaParser {
    type Chunk = ChatChunk;

    fn parse_line(&mut self, line: &str) -> Result<Step<ChatChunk>, ProviderError> {
        let wire: WireLine<'_> =
            serde_json::from_str(line).map_err(|e| malformed("ollama stream line", e))?;
        if let Some(error) = &wire.error {
            let details = error_details(&json!({ "error": error })).unwrap_or_default();
            return Err(in_band_error(details));
        }
        let Some(done) = wire.done else {
            return Err(malformed("ollama stream line", MissingDone));
        };
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        if !self.model_seen {
            if let Some(model) = wire.model.as_deref().filter(|m| !m.is_empty()) {
                chunk.model = Some(model.to_owned());
                self.model_seen = true;
            }
        }
        if let Some(text) = wire.response {
            chunk.text = text;
        }
        if let Some(thinking) = wire.thinking {
            chunk.reasoning = thinking;
        }
        if let Some(message) = wire.message {
            if let Some(text) = message.content {
                append(&mut chunk.text, text);
            }
            if let Some(thinking) = message.thinking {
                append(&mut chunk.reasoning, thinking);
            }
            for call in message.tool_calls.into_iter().flatten() {
                let (index, name, arguments) = match call.function {
                    Some(f) => (f.index, f.name, f.arguments),
                    None => (None, None, None),
                };
                // Each call arrives whole; without an index from the
                // server, calls are numbered in arrival order.
                let index = index.unwrap_or(self.tool_calls_seen);
                self.tool_calls_seen = self.tool_calls_seen.max(index.saturating_add(1));
                let arguments = match arguments {
                    Some(Value::String(text)) => text,
                    Some(Value::Null) | None => String::new(),
                    Some(object) => object.to_string(),
                };
                chunk.tool_calls.push(ToolCallDelta {
                    index,
                    id: call.id,
                    name,
                    arguments,
                });
            }
        }
        let first = !self.lines_seen;
        self.lines_seen = true;
        if done {
            chunk.finish_reason = wire.done_reason;
            if wire.prompt_eval_count.is_some() || wire.eval_count.is_some() {
                chunk.usage = Some(Usage {
                    input_tokens: wire.prompt_eval_count.unwrap_or(0),
                    output_tokens: wire.eval_count.unwrap_or(0),
                    ..Usage::default()
                });
            }
            if !chunk.is_content() {
                chunk.kind = if chunk.usage.is_some() {
                    ChunkKind::Usage
                } else {
                    ChunkKind::Stop
                };
            }
            return Ok(Step::Done(Some(chunk)));
        }
        if !chunk.is_content() {
            chunk.kind = if first {
                ChunkKind::Start
            } else {
                ChunkKind::Other
            };
        }
        Ok(Step::Chunk(chunk))
    }

    fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before a line with \"done\": true").in_band()
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
    use crate::{
        ndjson::NdjsonError,
        sse::DEFAULT_MAX_SIZE,
        stream::test_support::{run_lines, run_lines_split},
    };
    use streamgate_core::{Chunk, ErrorClass};

    const CHAT: &str = concat!(
        "{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":false}\n",
        "{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\"},\"done\":false}\n",
        "{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
        "{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n",
        "{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:02Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,",
        "\"total_duration\":900000000,\"load_duration\":1000000,\"prompt_eval_count\":12,\"prompt_eval_duration\":2000000,\"eval_count\":3,\"eval_duration\":800000000}\n",
    );

    const GENERATE: &str = concat!(
        "{\"model\":\"gen-test\",\"created_at\":\"2025-01-01T00:00:00Z\",\"response\":\"Once\",\"done\":false}\n",
        "{\"model\":\"gen-test\",\"created_at\":\"2025-01-01T00:00:00Z\",\"response\":\" upon\",\"done\":false}\n",
        "{\"model\":\"gen-test\",\"created_at\":\"2025-01-01T00:00:01Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"length\",\"context\":[1,2,3],\"prompt_eval_count\":5,\"eval_count\":2}\n",
    );

    fn chunks(items: Vec<Result<ChatChunk, ProviderError>>) -> Vec<ChatChunk> {
        items.into_iter().map(Result::unwrap).collect()
    }

    fn last_error(items: &[Result<ChatChunk, ProviderError>]) -> &ProviderError {
        items.last().unwrap().as_ref().unwrap_err()
    }

    #[test]
    fn chat_lines_stream_text_and_the_done_line_carries_usage() {
        let items = chunks(run_lines_split(OllamaParser::default, CHAT.as_bytes()));
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].kind, ChunkKind::Start);
        assert!(!items[0].is_content());
        assert_eq!(items[0].model.as_deref(), Some("llama-test"));
        assert_eq!(items[1].reasoning, "hmm");
        assert!(items[1].is_content(), "thinking is content");
        assert_eq!(items[2].text, "Hel");
        assert_eq!(items[2].model, None, "model only once");
        assert_eq!(items[3].text, "lo");
        let done = &items[4];
        assert_eq!(done.kind, ChunkKind::Usage);
        assert!(!done.is_content());
        assert_eq!(done.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            done.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 3,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn generate_lines_use_response_and_end_at_done() {
        let items = chunks(run_lines_split(OllamaParser::default, GENERATE.as_bytes()));
        let text: String = items.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(text, "Once upon");
        assert!(items[0].is_content());
        assert_eq!(items[0].model.as_deref(), Some("gen-test"));
        let done = items.last().unwrap();
        assert_eq!(done.finish_reason.as_deref(), Some("length"));
        assert_eq!(
            done.usage.map(|u| (u.input_tokens, u.output_tokens)),
            Some((5, 2))
        );
    }

    #[test]
    fn done_line_without_counts_has_no_usage_and_is_a_stop() {
        let input = b"{\"response\":\"x\",\"done\":false}\n{\"response\":\"\",\"done\":true}\n";
        let items = chunks(run_lines(OllamaParser::default(), &[input]));
        assert_eq!(items[1].kind, ChunkKind::Stop);
        assert_eq!(items[1].usage, None);
    }

    #[test]
    fn in_band_error_before_content_is_the_only_item_and_a_server_error() {
        let input = b"{\"error\":\"an error was encountered while running the model\"}\n";
        let items = run_lines(OllamaParser::default(), &[input]);
        assert_eq!(items.len(), 1);
        let err = last_error(&items);
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(err.is_in_band());
        assert_eq!(
            err.message(),
            "an error was encountered while running the model"
        );
    }

    #[test]
    fn in_band_error_after_content_follows_the_content_and_ends_the_stream() {
        let input = concat!(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"partial\"},\"done\":false}\n",
            "{\"error\":\"the input length exceeds the context length\"}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"never\"},\"done\":false}\n",
        );
        let items = run_lines(OllamaParser::default(), &[input.as_bytes()]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().unwrap().text, "partial");
        assert_eq!(
            last_error(&items).class(),
            ErrorClass::ContextLength,
            "the message decides the class"
        );
    }

    #[test]
    fn missing_done_line_is_a_truncated_error_item() {
        let cut = CHAT
            .find("{\"model\":\"llama-test\",\"created_at\":\"2025-01-01T00:00:02Z\"")
            .unwrap();
        let items = run_lines(OllamaParser::default(), &[&CHAT.as_bytes()[..cut]]);
        assert_eq!(items.len(), 5);
        assert!(items[..4].iter().all(Result::is_ok));
        let err = last_error(&items);
        assert_eq!(err.class(), ErrorClass::Truncated);
        assert!(err.is_in_band());
    }

    #[test]
    fn connection_closed_mid_line_is_truncated() {
        let cut = CHAT.find("\"Hel").unwrap();
        let items = run_lines(OllamaParser::default(), &[&CHAT.as_bytes()[..cut]]);
        assert_eq!(items.len(), 3);
        assert_eq!(last_error(&items).class(), ErrorClass::Truncated);
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let input =
            b"{\"response\":\"ok\",\"done\":false}\n{\"response\":\"\xc3\x28\",\"done\":false}\n";
        let items = run_lines(OllamaParser::default(), &[input]);
        assert_eq!(items.len(), 2);
        let err = last_error(&items);
        assert_eq!(err.class(), ErrorClass::Server);
        let source = std::error::Error::source(err).unwrap();
        assert!(matches!(
            source.downcast_ref::<NdjsonError>(),
            Some(NdjsonError::InvalidUtf8 { offset: 31 })
        ));
    }

    #[test]
    fn ten_megabyte_line_is_a_typed_error_not_a_buffer() {
        let opening = b"{\"response\":\"".to_vec();
        let piece = vec![b'a'; 1024 * 1024];
        let mut pieces: Vec<&[u8]> = vec![&opening];
        pieces.extend(std::iter::repeat_n(&piece[..], 10));
        let items = run_lines(OllamaParser::default(), &pieces);
        assert_eq!(items.len(), 1);
        let err = last_error(&items);
        let source = std::error::Error::source(err).unwrap();
        assert_eq!(
            source.downcast_ref::<NdjsonError>(),
            Some(&NdjsonError::LineTooLong {
                limit: DEFAULT_MAX_SIZE
            })
        );
    }

    #[test]
    fn wrong_shape_json_is_a_typed_error() {
        for line in [
            "{\"message\":\"not an object\",\"done\":false}",
            "{\"done\":\"yes\"}",
            "[1,2,3]",
            "{\"model\":\"m\"}",
        ] {
            let input = format!("{line}\n");
            let items = run_lines(OllamaParser::default(), &[input.as_bytes()]);
            assert_eq!(items.len(), 1, "{line}");
            let err = last_error(&items);
            assert_eq!(err.class(), ErrorClass::Server, "{line}");
            assert!(err.message().starts_with("malformed"), "{line}: {err}");
            assert!(std::error::Error::source(err).is_some(), "{line}");
        }
    }

    #[test]
    fn tool_calls_are_content_with_their_arguments_as_json_text() {
        let input = concat!(
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[",
            "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}},",
            "{\"id\":\"call_2\",\"function\":{\"index\":5,\"name\":\"get_time\",\"arguments\":{}}}]},\"done\":false}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}\n",
            "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n",
        );
        let items = chunks(run_lines(OllamaParser::default(), &[input.as_bytes()]));
        let calls = &items[0].tool_calls;
        assert!(items[0].is_content());
        assert_eq!(calls[0].index, 0);
        assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].index, 5);
        assert_eq!(calls[1].id.as_deref(), Some("call_2"));
        assert_eq!(items[1].tool_calls[0].index, 6, "numbered after the last");
    }

    #[test]
    fn body_has_model_messages_stream_and_options() {
        let client = Ollama::builder().build().unwrap();
        let request = ChatRequest::new("llama3.2")
            .with_system("be brief")
            .with_user("hi")
            .with_max_tokens(64)
            .with_temperature(0.5)
            .with_extra("keep_alive", json!("5m"));
        let body = client.body(&request);
        assert_eq!(body["model"], json!("llama3.2"));
        assert_eq!(body["stream"], json!(true));
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(body["messages"][1]["role"], json!("user"));
        assert_eq!(body["options"]["num_predict"], json!(64));
        assert_eq!(body["options"]["temperature"], json!(0.5));
        assert_eq!(body["keep_alive"], json!("5m"));
        let plain = client.body(&ChatRequest::new("m").with_user("x"));
        assert!(plain.get("options").is_none());
    }

    #[test]
    fn defaults_to_local_ollama_without_auth_and_hides_the_bearer() {
        let local = Ollama::builder().build().unwrap();
        assert_eq!(local.endpoint.base_url(), "http://localhost:11434");
        assert!(!format!("{local:?}").contains("authorization"));
        let builder = Ollama::builder()
            .base_url("https://proxy.example/ollama/")
            .bearer("tok-secret-789");
        assert!(!format!("{builder:?}").contains("tok-secret-789"));
        let proxied = builder.build().unwrap();
        assert_eq!(proxied.endpoint.base_url(), "https://proxy.example/ollama");
        assert!(!format!("{proxied:?}").contains("tok-secret-789"));
        assert!(format!("{proxied:?}").contains("authorization"));
    }
}
