//! A bridge for the [`async-openai`](::async_openai) client: its chat
//! completion stream as a service of this crate, so programs that already use
//! async-openai get the streamgate layers without switching clients.
//!
//! [`AsyncOpenAiChat`] is a `tower::Service` for [`AsyncOpenAiRequest`] (an
//! async-openai [`CreateChatCompletionRequest`] with a token estimate) and for
//! this crate's [`ChatRequest`]. Its response is an [`http::Response`] whose
//! body, [`AsyncOpenAiStream`], yields [`ChatChunk`]s like every other adapter:
//! the role-only first chunk is not content, usage comes from the final
//! `choices: []` chunk, tool-call deltas are content.
//!
//! # What async-openai gives the bridge, and what it does not
//!
//! - **End of stream.** async-openai ends its stream at `data: [DONE]` *and*
//!   when the connection closes cleanly without it, with nothing to tell the
//!   two apart. The bridge therefore ends cleanly only after a chunk that
//!   carried a `finish_reason` (every OpenAI-compatible server sends one
//!   before `[DONE]`); a stream that ends before any yields a `Truncated`
//!   error item. A stream cut between the `finish_reason` chunk and the usage
//!   chunk looks complete. [`AsyncOpenAiChat::with_require_finish_reason`]
//!   turns the rule off for servers that never send a finish reason.
//! - **Status and headers.** async-openai does not expose the response of a
//!   stream. A client wrapped with [`AsyncOpenAiChat::new`] therefore
//!   answers `200 OK` with no headers, and its error statuses carry no
//!   headers: quota learning from rate-limit headers and `Retry-After` are
//!   unavailable. A bridge built with [`AsyncOpenAiChat::with_config`] (or
//!   [`with_http_client`](AsyncOpenAiChat::with_http_client)) sends through
//!   its own transport service and keeps the real status and every header,
//!   on responses and on errors.
//! - **Retries.** async-openai's default client retries 429, 5xx and connect
//!   errors itself (up to 3 times, with backoff). Behind a circuit breaker or
//!   a failover router that hides failures and adds delay, so
//!   [`AsyncOpenAiChat::with_config`] builds a client *without* those
//!   retries; [`AsyncOpenAiChat::new`] keeps the client exactly as given.
//! - **Wire shape.** async-openai's chunk type requires `id`, `created`,
//!   `object` and `model`, and has no field for DeepSeek/vLLM
//!   `reasoning_content` or Azure's `prompt_filter_results`: a chunk missing
//!   a required field is a malformed-chunk error, and reasoning deltas of
//!   those servers are dropped. Use [`crate::openai::OpenAiChat`] for them.
//! - **Errors.** HTTP errors, in-band `data: {"error": …}` events and
//!   transport failures become [`ProviderError`]s classified by the same
//!   rules as this crate's own clients ([`crate::errors`]). The client's
//!   credentials (the values of its config's `authorization`, `api-key`,
//!   `x-api-key` and `x-goog-api-key` headers) and the usual credential
//!   patterns are [redacted](streamgate_core::redact) from every error: its
//!   message, code, body excerpt and the text of its causes (async-openai's
//!   own errors are kept as that text only).
//!
//! Dropping the response future cancels the request; dropping the body
//! closes the connection (async-openai's reader task sees the receiver go
//! away and drops the response).

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{ready, Context, Poll},
};

use ::async_openai::{
    config::Config,
    error::{ApiErrorResponse, OpenAIError, StreamError, WrappedError},
    middleware::{HttpRequestFactory, ReqwestService},
    types::chat::{
        ChatCompletionResponseStream, ChatCompletionStreamOptions, CompletionUsage,
        CreateChatCompletionRequest, CreateChatCompletionStreamResponse, FinishReason,
    },
    Client,
};
use futures_core::Stream;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Map, Value};
use streamgate_core::{
    classify, redact::redact_owned, BoxError, Chunk, ErrorClass, LlmRequest, ProviderError, Usage,
};
use tower_service::Service;

use crate::{
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::ConfigError,
    errors::{error_details, http_error, in_band_error, malformed, transport_error},
    request::ChatRequest,
};

/// The response future of [`AsyncOpenAiChat`].
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<AsyncOpenAiStream>, BoxError>> + Send>>;

/// An async-openai [`CreateChatCompletionRequest`] with what the layers need:
/// the model and a token estimate, computed once.
///
/// # Token estimate
///
/// The UTF-8 bytes of every string in the messages except their roles, plus
/// the serialised `tools`, divided by four (rounded up), plus four tokens of
/// framing per message, plus `max_completion_tokens` (else `max_tokens`) when
/// set: the same rule as [`ChatRequest`], so both give the same estimate for
/// the same conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct AsyncOpenAiRequest {
    request: CreateChatCompletionRequest,
    estimate: u64,
}

impl AsyncOpenAiRequest {
    /// Wraps `request` and computes its estimate.
    pub fn new(request: CreateChatCompletionRequest) -> Self {
        let estimate = estimate(&request);
        Self { request, estimate }
    }

    /// The async-openai request.
    pub fn request(&self) -> &CreateChatCompletionRequest {
        &self.request
    }

    /// Unwraps the async-openai request.
    pub fn into_inner(self) -> CreateChatCompletionRequest {
        self.request
    }
}

impl From<CreateChatCompletionRequest> for AsyncOpenAiRequest {
    fn from(request: CreateChatCompletionRequest) -> Self {
        Self::new(request)
    }
}

impl LlmRequest for AsyncOpenAiRequest {
    fn model(&self) -> &str {
        &self.request.model
    }

    fn estimated_tokens(&self) -> u64 {
        self.estimate
    }
}

fn estimate(request: &CreateChatCompletionRequest) -> u64 {
    let text = serde_json::to_value(&request.messages).map_or(0, |v| string_bytes(&v, false));
    let tools = request
        .tools
        .as_ref()
        .and_then(|tools| serde_json::to_string(tools).ok())
        .map_or(0, |tools| tools.len());
    let framing = 4 * request.messages.len() as u64;
    let max_tokens = request.max_completion_tokens.or({
        #[allow(deprecated)]
        request.max_tokens
    });
    ((text + tools) as u64).div_ceil(4) + framing + u64::from(max_tokens.unwrap_or(0))
}

/// Bytes of the string values in `value`, roles left out.
fn string_bytes(value: &Value, is_role: bool) -> usize {
    match value {
        Value::String(text) if !is_role => text.len(),
        Value::Array(items) => items.iter().map(|v| string_bytes(v, false)).sum(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, v)| string_bytes(v, key == "role"))
            .sum(),
        _ => 0,
    }
}

/// An async-openai [`Client`] as a streaming `tower::Service`.
///
/// Sends `stream: true` and, unless the request sets `stream_options` itself
/// or [`with_include_usage(false)`](Self::with_include_usage) says otherwise,
/// `stream_options.include_usage: true`. See the [module docs](self) for
/// what async-openai does and does not expose.
pub struct AsyncOpenAiChat<C: Config> {
    client: Client<C>,
    /// Set when the bridge owns the transport: each call then sends through a
    /// service that records the status and headers.
    http: Option<reqwest::Client>,
    /// The config's credentials, removed from every error.
    secrets: Secrets,
    include_usage: bool,
    require_finish_reason: bool,
}

impl<C: Config + Clone> Clone for AsyncOpenAiChat<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            http: self.http.clone(),
            secrets: self.secrets.clone(),
            include_usage: self.include_usage,
            require_finish_reason: self.require_finish_reason,
        }
    }
}

impl<C: Config> fmt::Debug for AsyncOpenAiChat<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config holds the key: the base URL only.
        f.debug_struct("AsyncOpenAiChat")
            .field("api_base", &self.client.config().api_base())
            .field("owns_transport", &self.http.is_some())
            .field("include_usage", &self.include_usage)
            .field("require_finish_reason", &self.require_finish_reason)
            .finish_non_exhaustive()
    }
}

impl<C: Config + Clone> AsyncOpenAiChat<C> {
    /// Wraps `client` exactly as it is: its retry policy and middleware are
    /// kept, and responses carry no status or headers (async-openai does not
    /// expose them).
    pub fn new(client: Client<C>) -> Self {
        Self {
            secrets: Secrets::of(client.config()),
            client,
            http: None,
            include_usage: true,
            require_finish_reason: true,
        }
    }

    /// A bridge for `config` with a new HTTP client (the one
    /// [`ClientBuilder`](crate::ClientBuilder) creates: rustls, nothing
    /// installed process-wide), without async-openai's retries, keeping the
    /// real status and headers on responses and errors.
    pub fn with_config(config: C) -> Result<Self, ConfigError> {
        let http = crate::client::default_http_client(None)?;
        Ok(Self::with_http_client(config, http))
    }

    /// Like [`with_config`](Self::with_config), sending through `http`.
    pub fn with_http_client(config: C, http: reqwest::Client) -> Self {
        Self {
            secrets: Secrets::of(&config),
            client: Client::build(http.clone(), config),
            http: Some(http),
            include_usage: true,
            require_finish_reason: true,
        }
    }

    /// Whether to ask for the usage chunk when the request does not set
    /// `stream_options` (default true).
    #[must_use]
    pub fn with_include_usage(mut self, include_usage: bool) -> Self {
        self.include_usage = include_usage;
        self
    }

    /// Whether a stream that ends before any chunk with a `finish_reason` is
    /// `Truncated` (default true; see the [module docs](self)).
    #[must_use]
    pub fn with_require_finish_reason(mut self, require: bool) -> Self {
        self.require_finish_reason = require;
        self
    }

    /// The async-openai client.
    pub fn client(&self) -> &Client<C> {
        &self.client
    }
}

impl<C> Service<AsyncOpenAiRequest> for AsyncOpenAiChat<C>
where
    C: Config + Clone + 'static,
{
    type Response = Response<AsyncOpenAiStream>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: AsyncOpenAiRequest) -> Self::Future {
        let mut request = request.into_inner();
        // Also with async-openai's `byot` feature, which leaves `stream` alone.
        request.stream = Some(true);
        if self.include_usage && request.stream_options.is_none() {
            request.stream_options = Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..ChatCompletionStreamOptions::default()
            });
        }
        let (client, seen) = match &self.http {
            Some(http) => {
                let seen = Arc::new(OnceLock::new());
                let transport = Recording {
                    inner: ReqwestService::new(http.clone()),
                    seen: Arc::clone(&seen),
                };
                (self.client.clone().with_http_service(transport), Some(seen))
            }
            None => (self.client.clone(), None),
        };
        let require_finish_reason = self.require_finish_reason;
        let secrets = self.secrets.clone();
        Box::pin(async move {
            let result = client.chat().create_stream(request).await;
            let seen = seen.as_deref().and_then(OnceLock::get);
            match result {
                Ok(stream) => {
                    let mut response = Response::new(AsyncOpenAiStream {
                        inner: Some(stream),
                        secrets,
                        require_finish_reason,
                        finished: false,
                        model_seen: false,
                    });
                    if let Some((status, headers)) = seen {
                        *response.status_mut() = *status;
                        *response.headers_mut() = headers.clone();
                    }
                    Ok(response)
                }
                Err(error) => Err(request_error(error, seen, &secrets.refs()).into()),
            }
        })
    }
}

impl<C> Service<ChatRequest> for AsyncOpenAiChat<C>
where
    C: Config + Clone + 'static,
{
    type Response = Response<AsyncOpenAiStream>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Self as Service<AsyncOpenAiRequest>>::poll_ready(self, cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        match to_async_openai(&request) {
            Ok(request) => self.call(AsyncOpenAiRequest::new(request)),
            Err(error) => Box::pin(std::future::ready(Err(error.into()))),
        }
    }
}

/// The same body [`crate::openai::OpenAiChat`] sends, read into
/// async-openai's request type: `extra` fields that type knows
/// (`response_format`, `top_p`, …) are kept, others are dropped.
fn to_async_openai(request: &ChatRequest) -> Result<CreateChatCompletionRequest, ProviderError> {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), Value::from(request.model.as_str()));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(max_tokens) = request.max_tokens {
        body.insert("max_tokens".into(), Value::from(max_tokens));
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), Value::from(temperature));
    }
    serde_json::from_value(request.finish_body(body)).map_err(|error| {
        ProviderError::new(
            ErrorClass::Client,
            "request does not fit async-openai's chat completion request",
        )
        .with_source(error)
    })
}

/// async-openai's transport with the status and headers of the response
/// recorded for the one call it serves.
#[derive(Clone)]
struct Recording {
    inner: ReqwestService,
    seen: Arc<OnceLock<(StatusCode, HeaderMap)>>,
}

type RecordingFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl Service<HttpRequestFactory> for Recording {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = RecordingFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let response = self.inner.call(request);
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            let response = response.await?;
            let _ = seen.set((response.status(), response.headers().clone()));
            Ok(response)
        })
    }
}

/// The credentials of an async-openai config: the values of the headers it
/// sends them in (the token after the scheme of `authorization`). Shared by
/// every clone of the bridge and its streams.
#[derive(Clone, Default)]
struct Secrets(Arc<[Box<str>]>);

impl Secrets {
    fn of<C: Config>(config: &C) -> Self {
        let headers = config.headers();
        let secrets: Vec<Box<str>> = headers
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                let secret = match name.as_str() {
                    "authorization" | "proxy-authorization" => {
                        value.split_once(' ').map_or(value, |(_, token)| token)
                    }
                    "api-key" | "x-api-key" | "x-goog-api-key" => value,
                    _ => return None,
                }
                .trim();
                (!secret.is_empty()).then(|| secret.into())
            })
            .collect();
        Self(secrets.into())
    }

    fn refs(&self) -> Vec<&str> {
        self.0.iter().map(AsRef::as_ref).collect()
    }
}

/// The text of an error from async-openai or below it, and of its causes,
/// with the credentials removed: what is shown is all that is kept.
struct Cause(String);

impl Cause {
    fn of(error: &(dyn Error + 'static), secrets: &[&str]) -> BoxError {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Box::new(Self(redact_owned(text, secrets)))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cause").field(&self.0).finish()
    }
}

impl Error for Cause {}

/// The error of the response future: before any chunk.
fn request_error(
    error: OpenAIError,
    seen: Option<&(StatusCode, HeaderMap)>,
    secrets: &[&str],
) -> ProviderError {
    let headers = || seen.map(|(_, headers)| headers.clone()).unwrap_or_default();
    let error = match error {
        OpenAIError::ApiError(response) => api_error(response, headers(), secrets),
        // async-openai could not read an error body as OpenAI's error JSON;
        // only the recorded status says what it was.
        OpenAIError::JSONDeserialize(source, body) => match seen {
            Some((status, headers)) if !status.is_success() => {
                http_error(*status, headers.clone(), body.as_bytes(), secrets)
            }
            _ => ProviderError::new(ErrorClass::Other, "unreadable error response")
                .with_redacted_body_excerpt(body.as_bytes(), secrets)
                .with_source(Cause::of(&source, secrets)),
        },
        other => common_error(other, secrets),
    };
    error.redact_known(secrets)
}

/// An HTTP error status, mapped by this crate's rules from the body
/// async-openai read.
fn api_error(response: ApiErrorResponse, headers: HeaderMap, secrets: &[&str]) -> ProviderError {
    let ApiErrorResponse {
        status_code,
        api_error,
    } = response;
    // For 5xx async-openai keeps the raw body as the message.
    let raw = status_code.is_server_error()
        && api_error.r#type.is_none()
        && api_error.code.is_none()
        && api_error.param.is_none();
    let body = if raw {
        api_error.message.into_bytes()
    } else {
        serde_json::to_vec(&WrappedError { error: api_error }).unwrap_or_default()
    };
    http_error(status_code, headers, &body, secrets)
}

/// An error item of the stream.
fn stream_error(error: OpenAIError, secrets: &[&str]) -> ProviderError {
    let error = match error {
        // async-openai reads `data: {"error": …}` as a chunk that failed to
        // deserialize: look at the payload before calling it malformed.
        OpenAIError::JSONDeserialize(source, payload) => {
            match serde_json::from_str::<Value>(&payload) {
                Ok(value) if value.get("error").is_some_and(|e| !e.is_null()) => {
                    in_band_error(error_details(&value).unwrap_or_default())
                }
                _ => malformed("chat completion chunk", Cause::of(&source, secrets)),
            }
        }
        other => common_error(other, secrets),
    };
    error.redact_known(secrets)
}

fn common_error(error: OpenAIError, secrets: &[&str]) -> ProviderError {
    match error {
        // Without its URL (see `transport_error`), and kept as a `reqwest`
        // error so timeouts stay timeouts.
        OpenAIError::Reqwest(source) => transport_error(Box::new(source)),
        OpenAIError::ApiError(response) => api_error(response, HeaderMap::new(), secrets),
        OpenAIError::StreamError(ref stream) => match &**stream {
            // eventsource-stream's transport errors arrive as text
            // ("Transport error: …", which may name the URL); UTF-8 and
            // parse errors are the provider's fault.
            StreamError::EventStream(text)
                if !text.starts_with("UTF8 error") && !text.starts_with("Parse error") =>
            {
                transport_error(Cause::of(&error, secrets))
            }
            _ => malformed("event stream", Cause::of(&error, secrets)),
        },
        OpenAIError::InvalidArgument(message) => {
            ProviderError::new(ErrorClass::Client, message.to_ascii_lowercase())
        }
        OpenAIError::Boxed(source) => {
            ProviderError::new(classify(&*source), "async-openai middleware failed")
                .with_source(Cause::of(&*source, secrets))
        }
        other => ProviderError::new(ErrorClass::Other, "async-openai request failed")
            .with_source(Cause::of(&other, secrets)),
    }
}

/// The body of an [`AsyncOpenAiChat`] response: async-openai's chunk stream
/// as [`ChatChunk`]s.
///
/// After an error item the stream ends and the connection is dropped. A
/// clean end before any `finish_reason` is a `Truncated` error item (see the
/// [module docs](self)). `Unpin` and `Send`.
pub struct AsyncOpenAiStream {
    inner: Option<ChatCompletionResponseStream>,
    secrets: Secrets,
    require_finish_reason: bool,
    finished: bool,
    model_seen: bool,
}

impl fmt::Debug for AsyncOpenAiStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncOpenAiStream")
            .field("done", &self.inner.is_none())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl AsyncOpenAiStream {
    fn chunk(&mut self, response: CreateChatCompletionStreamResponse) -> ChatChunk {
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        if !self.model_seen && !response.model.is_empty() {
            chunk.model = Some(response.model);
            self.model_seen = true;
        }
        chunk.usage = response.usage.as_ref().map(usage);
        let no_choices = response.choices.is_empty();
        // Several choices (n > 1) are folded into one chunk, as the OpenAI
        // client does.
        for choice in response.choices {
            if let Some(reason) = choice.finish_reason {
                chunk.finish_reason = Some(finish_reason(reason).to_owned());
                self.finished = true;
            }
            let delta = choice.delta;
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                chunk.text.push_str(&text);
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
        if !chunk.is_content() {
            chunk.kind = if chunk.usage.is_some() {
                ChunkKind::Usage
            } else if chunk.finish_reason.is_some() {
                ChunkKind::Stop
            } else if no_choices {
                // Azure's content-filter chunk (its annotations are not in
                // async-openai's type).
                ChunkKind::Filter
            } else {
                ChunkKind::Start
            };
        }
        chunk
    }
}

impl Stream for AsyncOpenAiStream {
    type Item = Result<ChatChunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = ready!(inner.as_mut().poll_next(cx));
        Poll::Ready(match item {
            Some(Ok(response)) => Some(Ok(this.chunk(response))),
            Some(Err(error)) => {
                // Dropping the receiver makes async-openai's reader task drop
                // the connection.
                this.inner = None;
                Some(Err(stream_error(error, &this.secrets.refs())))
            }
            None => {
                this.inner = None;
                (this.require_finish_reason && !this.finished).then(|| {
                    Err(ProviderError::truncated("stream ended before a finish_reason").in_band())
                })
            }
        })
    }
}

fn usage(usage: &CompletionUsage) -> Usage {
    Usage {
        input_tokens: u64::from(usage.prompt_tokens),
        output_tokens: u64::from(usage.completion_tokens),
        cached_input_tokens: usage
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .map_or(0, u64::from),
        reasoning_tokens: usage
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .map_or(0, u64::from),
    }
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use futures::{executor::block_on, stream, StreamExt};

    type Item = Result<CreateChatCompletionStreamResponse, OpenAIError>;

    fn wire(choices: Value, usage: Value) -> Item {
        Ok(serde_json::from_value(json!({
            "id": "c1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-test", "choices": choices, "usage": usage,
        }))
        .unwrap())
    }

    fn run(items: Vec<Item>) -> Vec<Result<ChatChunk, ProviderError>> {
        let body = AsyncOpenAiStream {
            inner: Some(Box::pin(stream::iter(items))),
            secrets: Secrets::default(),
            require_finish_reason: true,
            finished: false,
            model_seen: false,
        };
        block_on(body.collect())
    }

    fn deserialize_error(payload: &str) -> OpenAIError {
        let source = serde_json::from_str::<CreateChatCompletionStreamResponse>(payload)
            .err()
            .unwrap();
        OpenAIError::JSONDeserialize(source, payload.to_owned())
    }

    #[test]
    fn role_tool_call_finish_and_usage_chunks_map_like_the_openai_client() {
        let items = run(vec![
            wire(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
                Value::Null,
            ),
            wire(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}}]),
                Value::Null,
            ),
            wire(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}}]),
                Value::Null,
            ),
            wire(
                json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
                Value::Null,
            ),
            wire(
                json!([]),
                json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
                    "prompt_tokens_details": {"cached_tokens": 4},
                    "completion_tokens_details": {"reasoning_tokens": 5}}),
            ),
        ]);
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].kind, ChunkKind::Start);
        assert!(!chunks[0].is_content());
        assert_eq!(chunks[0].model.as_deref(), Some("gpt-test"));
        assert_eq!(chunks[1].model, None, "model only on the first chunk");
        assert!(chunks[1].is_content());
        assert_eq!(chunks[1].tool_calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(chunks[2].tool_calls[0].arguments, "{\"city\"");
        assert_eq!(chunks[3].kind, ChunkKind::Stop);
        assert_eq!(chunks[3].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(chunks[4].kind, ChunkKind::Usage);
        assert_eq!(
            chunks[4].usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 9,
                cached_input_tokens: 4,
                reasoning_tokens: 5,
            })
        );
    }

    #[test]
    fn choiceless_chunk_without_usage_is_a_filter_annotation() {
        let items = run(vec![
            wire(json!([]), Value::Null),
            wire(
                json!([{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]),
                Value::Null,
            ),
        ]);
        assert_eq!(items[0].as_ref().unwrap().kind, ChunkKind::Filter);
        assert_eq!(items[1].as_ref().unwrap().text, "hi");
        assert_eq!(items.len(), 2, "clean end after a finish_reason");
    }

    #[test]
    fn clean_end_without_finish_reason_is_truncated_unless_turned_off() {
        let content = || {
            wire(
                json!([{"index": 0, "delta": {"content": "a"}}]),
                Value::Null,
            )
        };
        let items = run(vec![content()]);
        assert_eq!(items.len(), 2);
        let error = items[1].as_ref().unwrap_err();
        assert_eq!(error.class(), ErrorClass::Truncated);

        let body = AsyncOpenAiStream {
            inner: Some(Box::pin(stream::iter(vec![content()]))),
            secrets: Secrets::default(),
            require_finish_reason: false,
            finished: false,
            model_seen: false,
        };
        let items: Vec<_> = block_on(body.collect());
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn in_band_error_payload_is_a_classified_error_and_ends_the_stream() {
        let payload = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        let items = run(vec![
            Err(deserialize_error(payload)),
            wire(
                json!([{"index": 0, "delta": {"content": "late"}}]),
                Value::Null,
            ),
        ]);
        assert_eq!(items.len(), 1, "nothing after an error");
        let error = items[0].as_ref().unwrap_err();
        assert_eq!(error.class(), ErrorClass::ContextLength);
        assert_eq!(error.code(), Some("context_length_exceeded"));
        assert!(error.is_in_band());
    }

    #[test]
    fn chunk_of_the_wrong_shape_is_malformed() {
        let error = stream_error(deserialize_error(r#"{"choices": 3}"#), &[]);
        assert_eq!(error.class(), ErrorClass::Server);
        assert!(error.message().contains("malformed"));
    }

    #[test]
    fn event_stream_transport_errors_are_network_and_parse_errors_malformed() {
        let stream_failure = |text: &str| {
            OpenAIError::StreamError(Box::new(StreamError::EventStream(text.to_owned())))
        };
        let error = stream_error(stream_failure("Transport error: connection reset"), &[]);
        assert_eq!(error.class(), ErrorClass::Network);
        assert!(std::error::Error::source(&error).is_some());
        let error = stream_error(stream_failure("UTF8 error: invalid utf-8 sequence"), &[]);
        assert_eq!(error.class(), ErrorClass::Server);
        assert!(error.message().contains("malformed"));
    }

    #[test]
    fn api_errors_use_the_crate_rules_for_type_and_code() {
        let quota = ApiErrorResponse {
            status_code: StatusCode::TOO_MANY_REQUESTS,
            api_error: serde_json::from_value(json!({"message": "You exceeded your current quota",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}))
            .unwrap(),
        };
        let error = request_error(OpenAIError::ApiError(quota), None, &[]);
        assert_eq!(error.class(), ErrorClass::Client, "quota is not retryable");
        assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));

        // For 5xx async-openai keeps the raw body as the message.
        let overloaded = ApiErrorResponse {
            status_code: StatusCode::SERVICE_UNAVAILABLE,
            api_error: serde_json::from_value(json!({
                "message": r#"{"error":{"message":"overloaded","type":"engine_overloaded"}}"#
            }))
            .unwrap(),
        };
        let error = request_error(OpenAIError::ApiError(overloaded), None, &[]);
        assert_eq!(error.class(), ErrorClass::Overloaded);
        assert_eq!(error.code(), Some("engine_overloaded"));
    }

    #[test]
    fn unreadable_error_body_uses_the_recorded_status() {
        let source = serde_json::from_str::<Value>("<html>").err().unwrap();
        let seen = (StatusCode::TOO_MANY_REQUESTS, HeaderMap::new());
        let error = request_error(
            OpenAIError::JSONDeserialize(source, "<html>".into()),
            Some(&seen),
            &[],
        );
        assert_eq!(error.class(), ErrorClass::RateLimited);
        assert_eq!(error.body_excerpt(), Some("<html>"));
    }

    /// Every rendering of an error and of each of its causes.
    fn renderings(error: &ProviderError) -> Vec<String> {
        let mut out = vec![
            error.message().to_owned(),
            error.code().unwrap_or_default().to_owned(),
            error.body_excerpt().unwrap_or_default().to_owned(),
        ];
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(err) = current {
            out.push(err.to_string());
            out.push(format!("{err:?}"));
            current = err.source();
        }
        out
    }

    #[test]
    fn the_configs_key_never_reaches_an_error_of_any_path() {
        use ::async_openai::config::{AzureConfig, OpenAIConfig};
        // Not a pattern the redactor knows: only knowing the key removes it.
        const KEY: &str = "plainkey0123456789abcdef";
        let openai = Secrets::of(&OpenAIConfig::new().with_api_key(KEY));
        let azure = Secrets::of(&AzureConfig::new().with_api_key(KEY));
        for secrets in [openai, azure] {
            let secrets = secrets.refs();
            assert_eq!(secrets, [KEY]);
            let echo = format!("invalid key {KEY}");
            let api = |status| ApiErrorResponse {
                status_code: status,
                api_error: serde_json::from_value(
                    json!({"message": echo, "type": "invalid_request_error", "code": KEY}),
                )
                .unwrap(),
            };
            let unreadable = || {
                let source = serde_json::from_str::<Value>(&format!("\"{KEY}"))
                    .err()
                    .unwrap();
                OpenAIError::JSONDeserialize(source, format!("<html>{KEY}</html>"))
            };
            let seen = (StatusCode::UNAUTHORIZED, HeaderMap::new());
            let stream_failure =
                |text: String| OpenAIError::StreamError(Box::new(StreamError::EventStream(text)));
            let errors = [
                request_error(
                    OpenAIError::ApiError(api(StatusCode::UNAUTHORIZED)),
                    None,
                    &secrets,
                ),
                request_error(
                    OpenAIError::ApiError(api(StatusCode::BAD_GATEWAY)),
                    None,
                    &secrets,
                ),
                request_error(unreadable(), Some(&seen), &secrets),
                request_error(unreadable(), None, &secrets),
                request_error(OpenAIError::InvalidArgument(echo.clone()), None, &secrets),
                request_error(OpenAIError::Boxed(echo.clone().into()), None, &secrets),
                request_error(OpenAIError::FileSaveError(echo.clone()), None, &secrets),
                stream_error(
                    deserialize_error(&format!(r#"{{"choices": "{KEY}"}}"#)),
                    &secrets,
                ),
                stream_error(
                    deserialize_error(&format!(
                        r#"{{"error": {{"message": "{echo}", "code": "{KEY}"}}}}"#
                    )),
                    &secrets,
                ),
                stream_error(
                    stream_failure(format!("Transport error: for url (https://h/?k={KEY})")),
                    &secrets,
                ),
                stream_error(stream_failure(format!("Parse error: {KEY}")), &secrets),
            ];
            for error in &errors {
                let seen = renderings(error);
                assert!(
                    seen.iter()
                        .any(|text| text.contains(streamgate_core::redact::REDACTED)),
                    "{seen:?}"
                );
                for text in seen {
                    assert!(!text.contains(KEY), "leaked the key: {text}");
                }
            }
        }
    }

    #[test]
    fn request_that_does_not_fit_async_openai_types_is_a_client_error() {
        let request = ChatRequest::new("m")
            .with_user("hi")
            .with_tools(json!("not a list"));
        let error = to_async_openai(&request).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Client);
    }

    #[test]
    fn estimate_leaves_roles_out_and_counts_max_completion_tokens() {
        let request: CreateChatCompletionRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "system", "content": "12345678"}, {"role": "user", "content": "1234"}],
            "max_completion_tokens": 100,
        }))
        .unwrap();
        // (8 + 4) / 4 = 3, plus 2 * 4 framing, plus 100: as for ChatRequest.
        assert_eq!(AsyncOpenAiRequest::new(request).estimated_tokens(), 111);
    }
}
