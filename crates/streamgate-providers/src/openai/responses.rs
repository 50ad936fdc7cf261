//! OpenAI Responses streaming.

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, ProviderError};
use tower_service::Service;

use super::chat::WireUsage;
use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{bearer, ClientBuilder, ConfigError, Endpoint, Provider, ResponseFuture},
    errors::{error_details, in_band_error, malformed, ErrorDetails},
    request::ChatRequest,
    sse::SseEvent,
    stream::{EventParser, ProviderStream, Step},
};

/// The body of an [`OpenAiResponses`] response.
pub type ResponsesStream = ProviderStream<ResponsesParser>;

/// A streaming OpenAI Responses client as a `tower::Service<ChatRequest>`.
///
/// POSTs to `{base_url}/responses` with `stream: true`; messages become
/// `input` items, `max_tokens` becomes `max_output_tokens`.
#[derive(Clone, Debug)]
pub struct OpenAiResponses {
    endpoint: Endpoint,
}

impl Provider for OpenAiResponses {
    const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        bearer(key)
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl OpenAiResponses {
    /// A builder: base URL, API key, headers, HTTP client.
    pub fn builder() -> ClientBuilder<Self> {
        ClientBuilder::default()
    }

    /// The request body this client sends for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let input: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.as_str()));
        body.insert("input".into(), Value::Array(input));
        body.insert("stream".into(), Value::Bool(true));
        if let Some(max_tokens) = request.max_tokens {
            body.insert("max_output_tokens".into(), Value::from(max_tokens));
        }
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), Value::from(temperature));
        }
        request.finish_body(body)
    }
}

impl Service<ChatRequest> for OpenAiResponses {
    type Response = Response<ResponsesStream>;
    type Error = BoxError;
    type Future = ResponseFuture<ResponsesParser>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // A JSON value always serialises; `Display` writes it compactly.
        let body = self.body(&request).to_string().into_bytes();
        self.endpoint
            .send("/responses", body, ResponsesParser::default())
    }
}

/// The Responses event grammar. Content: `response.output_text.delta`,
/// refusal and reasoning deltas, function-call items and their argument
/// deltas. Terminal: `response.completed` (usage) or `response.incomplete`.
/// Errors: `error` (flat or nested) and `response.failed`.
#[derive(Debug, Default)]
pub struct ResponsesParser {
    _private: (),
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    output_index: u32,
    #[serde(default)]
    item: Option<WireItem>,
    #[serde(default)]
    response: Option<WireResponse>,
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    incomplete_details: Option<Value>,
}

impl EventParser for ResponsesParser {
    type Chunk = ChatChunk;

    fn parse(&mut self, event: &SseEvent<'_>) -> Result<Step<ChatChunk>, ProviderError> {
        let wire: Wire =
            serde_json::from_str(event.data).map_err(|e| malformed("responses event", e))?;
        let kind = if wire.kind.is_empty() {
            event.event.unwrap_or_default()
        } else {
            wire.kind.as_str()
        };
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                chunk.text = wire.delta.unwrap_or_default();
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                chunk.reasoning = wire.delta.unwrap_or_default();
            }
            "response.function_call_arguments.delta" => chunk.tool_calls.push(ToolCallDelta {
                index: wire.output_index,
                arguments: wire.delta.unwrap_or_default(),
                ..ToolCallDelta::default()
            }),
            "response.output_item.added" => match wire.item {
                Some(item) if item.kind == "function_call" => {
                    chunk.tool_calls.push(ToolCallDelta {
                        index: wire.output_index,
                        id: item.call_id,
                        name: item.name,
                        arguments: String::new(),
                    })
                }
                _ => chunk.kind = ChunkKind::Other,
            },
            "response.created" => {
                chunk.kind = ChunkKind::Start;
                chunk.model = wire.response.and_then(|r| r.model);
            }
            "response.completed" | "response.incomplete" => {
                chunk.kind = ChunkKind::Usage;
                if let Some(response) = wire.response {
                    chunk.usage = response.usage.as_ref().map(WireUsage::to_usage);
                    if kind == "response.incomplete" {
                        let reason = response
                            .incomplete_details
                            .as_ref()
                            .and_then(|d| d.get("reason"))
                            .and_then(Value::as_str)
                            .unwrap_or("incomplete");
                        chunk.finish_reason = Some(reason.to_owned());
                    } else {
                        chunk.finish_reason = Some("completed".to_owned());
                    }
                }
                return Ok(Step::Done(Some(chunk)));
            }
            "error" => {
                let value: Value =
                    serde_json::from_str(event.data).map_err(|e| malformed("error event", e))?;
                return Err(in_band_error(flat_or_nested(&value)));
            }
            "response.failed" => {
                let error = wire
                    .response
                    .and_then(|r| r.error)
                    .map(|e| error_details(&json!({ "error": e })).unwrap_or_default())
                    .unwrap_or_default();
                return Err(in_band_error(error));
            }
            _ => chunk.kind = ChunkKind::Other,
        }
        Ok(Step::Chunk(chunk))
    }

    fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before response.completed").in_band()
    }
}

/// `{"type":"error","code","message"}` or `{"type":"error","error":{…}}`.
fn flat_or_nested(value: &Value) -> ErrorDetails {
    match value.get("error") {
        Some(Value::Object(_)) => error_details(value).unwrap_or_default(),
        _ => {
            let mut details = error_details(&json!({ "error": value })).unwrap_or_default();
            // The flat shape's `type` is the event type, not the error's.
            details.kind = None;
            if details.code.as_deref() == Some("error") {
                details.code = None;
            }
            details
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::stream::test_support::{run, run_split};
    use streamgate_core::{Chunk, ErrorClass, Usage};

    const TEXT: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-test\",\"usage\":null}}\n\n",
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"reasoning\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-test\",\"usage\":{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":3},\"output_tokens\":20,\"output_tokens_details\":{\"reasoning_tokens\":8},\"total_tokens\":30}}}\n\n",
    );

    #[test]
    fn text_delta_is_first_content_and_completed_carries_usage() {
        let items: Vec<ChatChunk> = run_split(ResponsesParser::default, TEXT.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(items.len(), 4);
        assert!(!items[0].is_content() && !items[1].is_content());
        assert_eq!(items[0].model.as_deref(), Some("gpt-test"));
        assert!(items[2].is_content());
        assert_eq!(
            items[3].usage,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 20,
                cached_input_tokens: 3,
                reasoning_tokens: 8
            })
        );
    }

    #[test]
    fn flat_and_nested_error_events_and_failed_response_are_errors() {
        let flat = b"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}\n\n";
        let err = run(ResponsesParser::default(), &[flat])
            .remove(0)
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Server);
        assert_eq!(err.code(), Some("server_error"));

        let nested = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached\"}}\n\n";
        let err = run(ResponsesParser::default(), &[nested])
            .remove(0)
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::RateLimited);
        assert_eq!(err.code(), Some("rate_limit_exceeded"));

        let failed = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"failed\"}}}\n\n";
        let err = run(ResponsesParser::default(), &[failed])
            .remove(0)
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Server);
        assert!(err.is_in_band());
    }

    #[test]
    fn missing_completed_is_truncated() {
        let cut = TEXT.find("event: response.completed").unwrap();
        let items = run(ResponsesParser::default(), &[&TEXT.as_bytes()[..cut]]);
        assert_eq!(
            items.last().unwrap().as_ref().unwrap_err().class(),
            ErrorClass::Truncated
        );
    }

    #[test]
    fn function_call_item_and_argument_deltas_are_content() {
        let input = concat!(
            "data: {\"type\":\"response.output_item.added\",\"output_index\":2,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"\"}}\n\n",
            "data: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":2,\"delta\":\"{}\"}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{}}\n\n",
        );
        let items = run(ResponsesParser::default(), &[input.as_bytes()]);
        let first = items[0].as_ref().unwrap();
        assert!(first.is_content());
        assert_eq!(first.tool_calls[0].name.as_deref(), Some("f"));
        assert_eq!(items[1].as_ref().unwrap().tool_calls[0].arguments, "{}");
        assert_eq!(items.len(), 3);
    }
}
