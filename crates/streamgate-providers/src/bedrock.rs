//! Amazon Bedrock `ConverseStream`: SigV4-signed requests, and responses in
//! the binary AWS event stream (`application/vnd.amazon.eventstream`).
//!
//! # The stream
//!
//! Each frame (prelude, headers, payload, CRC32s) is checked and decoded by
//! the AWS event-stream codec (`aws-smithy-eventstream`); a frame with a bad
//! CRC, bad lengths or headers is a [`EventStreamError`] inside a
//! `ProviderError` of class `server`, never a panic. A frame is bounded by
//! the builder's event bound (1 MiB by default): a prelude announcing more
//! is refused before anything is buffered.
//!
//! Events (`:message-type: event`, by `:event-type`):
//!
//! | event | chunk |
//! |---|---|
//! | `messageStart` | [`ChunkKind::Start`], not content |
//! | `contentBlockStart` with `toolUse` | a tool-call delta with its id and name (content) |
//! | `contentBlockDelta` | text, reasoning (`reasoningContent.text`) or tool-call arguments (`toolUse.input`); a signature-only delta is [`ChunkKind::Other`] |
//! | `contentBlockStop` | [`ChunkKind::Other`] |
//! | `messageStop` | [`ChunkKind::Stop`] with the `stopReason`: the terminal marker |
//! | `metadata` | [`ChunkKind::Usage`]: usage and `metrics.latencyMs` |
//!
//! `metadata` comes *after* `messageStop`, so the stream does not end at the
//! marker: it ends at `metadata`, or cleanly at the end of input once the
//! marker was seen. Input that ends before it is a `truncated` error item.
//! A `stopReason` of `content_filtered` or `guardrail_intervened` is a
//! `content_filter` error. Usage: `inputTokens` excludes the prompt cache,
//! so input is `inputTokens + cacheReadInputTokens + cacheWriteInputTokens`,
//! cached input is `cacheReadInputTokens`.
//!
//! # Errors
//!
//! Exceptions in the stream (`:message-type: exception`, by
//! `:exception-type`) and HTTP errors before it (by the `x-amzn-errortype`
//! header, message from the JSON body) get the same classes:
//!
//! | exception | class |
//! |---|---|
//! | `throttlingException` | `rate_limited`, no reset known (the quota layer cools down) |
//! | `serviceUnavailableException`, `modelNotReadyException` | `overloaded` |
//! | `internalServerException`, `modelStreamErrorException`, `modelErrorException` | `server` |
//! | `modelTimeoutException` | `timeout` |
//! | `validationException` | `context_length` when the input is too long, else `client` |
//! | `accessDeniedException`, `resourceNotFoundException`, `serviceQuotaExceededException`, signature and token errors | `client` |
//! | anything else | by HTTP status (`server` inside a stream) |

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

/// The AWS credentials and the provider trait `aws-config` implements,
/// re-exported so a program without `aws-config` can name them.
pub use aws_credential_types::{provider::ProvideCredentials, Credentials};
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use aws_smithy_types::event_stream::Message;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use streamgate_core::{BoxError, Chunk as _, ErrorClass, ProviderError, Usage};
use tower_service::Service;

use crate::{
    auth::{credentials_error, Authorize, AuthorizeFuture},
    chunk::{ChatChunk, ChunkKind, ToolCallDelta},
    client::{
        bearer, encode_segment, forward_client_options, ClientBuilder, ConfigError, Endpoint,
        Provider, ResponseFuture,
    },
    errors::{class_of, http_error, malformed, ErrorDetails},
    request::{ChatRequest, Role},
    sse::DEFAULT_MAX_SIZE,
    stream::{Framing, ProviderStream, Step},
};

/// The SigV4 service name of the Bedrock runtime.
pub const SIGNING_NAME: &str = "bedrock";

/// The prelude's first field, the frame's total length (big-endian u32).
const FRAME_HEADER: usize = 4;

/// The body of a [`Bedrock`] response.
pub type ConverseStream = ProviderStream<ConverseParser, EventStreamDecoder>;

/// A streaming Amazon Bedrock `ConverseStream` client as a
/// `tower::Service<ChatRequest>`.
///
/// POSTs to `{endpoint}/model/{modelId}/converse-stream` (the model id,
/// an inference profile or an ARN, percent-encoded), signed with SigV4 for
/// service `bedrock`, or with a Bedrock API key as a bearer token. System
/// messages go to `system`, `max_tokens` and `temperature` to
/// `inferenceConfig`, `tools` to `toolConfig.tools`; extra fields are merged
/// into the body as they are.
#[derive(Clone, Debug)]
pub struct Bedrock {
    endpoint: Endpoint,
}

impl Provider for Bedrock {
    /// Replaced by the regional endpoint when the builder knows the region.
    const DEFAULT_BASE_URL: &'static str = "https://bedrock-runtime.us-east-1.amazonaws.com";

    /// A Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`): `Authorization: Bearer`.
    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        bearer(key)
    }

    fn default_headers(headers: &mut HeaderMap) {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
    }

    fn http_error(
        status: StatusCode,
        headers: HeaderMap,
        body: &[u8],
        secrets: &[&str],
    ) -> ProviderError {
        bedrock_http_error(status, headers, body, secrets)
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl Bedrock {
    /// A builder: region, credentials, endpoint, HTTP client.
    pub fn builder() -> BedrockBuilder {
        BedrockBuilder::default()
    }

    /// The request body this client sends for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut system = Vec::new();
        let mut messages = Vec::with_capacity(request.messages.len());
        for message in &request.messages {
            let content = json!([{"text": message.content}]);
            match message.role {
                Role::System => system.push(json!({"text": message.content})),
                Role::Assistant => {
                    messages.push(json!({"role": "assistant", "content": content}));
                }
                _ => messages.push(json!({"role": "user", "content": content})),
            }
        }
        let mut body = Map::new();
        body.insert("messages".into(), Value::Array(messages));
        if !system.is_empty() {
            body.insert("system".into(), Value::Array(system));
        }
        let mut config = Map::new();
        if let Some(max_tokens) = request.max_tokens {
            config.insert("maxTokens".into(), Value::from(max_tokens));
        }
        if let Some(temperature) = request.temperature {
            config.insert("temperature".into(), Value::from(temperature));
        }
        if !config.is_empty() {
            body.insert("inferenceConfig".into(), Value::Object(config));
        }
        if let Some(tools) = &request.tools {
            body.insert("toolConfig".into(), json!({ "tools": tools }));
        }
        for (key, value) in &request.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl Service<ChatRequest> for Bedrock {
    type Response = Response<ConverseStream>;
    type Error = BoxError;
    type Future = ResponseFuture<ConverseParser, EventStreamDecoder>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let path = format!("/model/{}/converse-stream", encode_segment(&request.model));
        let body = self.body(&request).to_string().into_bytes();
        let decoder = EventStreamDecoder::with_limit(self.endpoint.max_event());
        self.endpoint
            .send_framed(&path, body, ConverseParser::default(), decoder)
    }
}

/// Builds a [`Bedrock`] client.
///
/// Defaults: the region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), the
/// endpoint `https://bedrock-runtime.{region}.amazonaws.com`, credentials
/// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`
/// (read once, by `build()`), and the shared client defaults of
/// [`ClientBuilder`].
#[derive(Default)]
pub struct BedrockBuilder {
    client: ClientBuilder<Bedrock>,
    region: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<Arc<dyn ProvideCredentials>>,
    api_key: bool,
}

impl fmt::Debug for BedrockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockBuilder")
            .field("client", &self.client)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl BedrockBuilder {
    /// The AWS region, e.g. `us-east-1`: where requests go and what they are
    /// signed for.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends requests here instead of the regional endpoint (a VPC
    /// endpoint, a proxy, or the mock server in tests). Still signed for
    /// the region.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Signs with these credentials.
    #[must_use]
    pub fn credentials(self, credentials: Credentials) -> Self {
        self.credentials_provider(credentials)
    }

    /// Signs with credentials from `provider`, asked for every request: an
    /// `aws-config` provider (`sdk_config.credentials_provider()`, which
    /// caches and refreshes on its own) or a closure through
    /// `aws_credential_types::provider::future` and
    /// `aws_credential_types::credential_fn::provide_credentials_fn`.
    #[must_use]
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(Arc::new(provider));
        self
    }

    /// A Bedrock API key, sent as `Authorization: Bearer` instead of a
    /// signature.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.client = self.client.api_key(key);
        self.api_key = true;
        self
    }

    forward_client_options!(client);

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<Bedrock, ConfigError> {
        let region = match self.region {
            Some(region) => region,
            None => env_var("AWS_REGION")
                .or_else(|| env_var("AWS_DEFAULT_REGION"))
                .ok_or(ConfigError::Missing("aws region (set one, or AWS_REGION)"))?,
        };
        let valid_region = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let url = self
            .endpoint_url
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        if !valid_region {
            return Err(ConfigError::InvalidBaseUrl(url));
        }
        let mut client = self.client.base_url(url);
        if !self.api_key {
            let credentials = match self.credentials {
                Some(credentials) => credentials,
                None => Arc::new(env_credentials().ok_or(ConfigError::Missing(
                    "aws credentials (set them, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                ))?),
            };
            client = client.authorizer(Arc::new(Signer {
                region,
                credentials,
            }));
        }
        client.build()
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_credentials() -> Option<Credentials> {
    Some(Credentials::new(
        env_var("AWS_ACCESS_KEY_ID")?,
        env_var("AWS_SECRET_ACCESS_KEY")?,
        env_var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// Signs each request with SigV4 (headers `authorization`, `x-amz-date`
/// and, with a session token, `x-amz-security-token`, all marked
/// sensitive).
struct Signer {
    region: String,
    credentials: Arc<dyn ProvideCredentials>,
}

impl Authorize for Signer {
    fn authorize<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
        headers: &'a mut HeaderMap,
    ) -> AuthorizeFuture<'a> {
        Box::pin(async move {
            let credentials = self
                .credentials
                .provide_credentials()
                .await
                .map_err(credentials_error)?;
            let identity = credentials.into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name(SIGNING_NAME)
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(credentials_error)?
                .into();
            let signed: Vec<(&str, &str)> = headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
                .collect();
            let request =
                SignableRequest::new("POST", url, signed.into_iter(), SignableBody::Bytes(body))
                    .map_err(credentials_error)?;
            let (instructions, _signature) = sign(request, &params)
                .map_err(credentials_error)?
                .into_parts();
            let (signature_headers, _params) = instructions.into_parts();
            for signature_header in signature_headers {
                let name = HeaderName::from_static(signature_header.name());
                let mut value = HeaderValue::try_from(signature_header.value())
                    .map_err(|_| credentials_error("signature is not a valid header value"))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            Ok(())
        })
    }
}

/// Why a Bedrock event stream could not be decoded.
#[derive(Debug)]
#[non_exhaustive]
pub enum EventStreamError {
    /// The codec refused a frame: a prelude or message CRC mismatch, bad
    /// lengths, a bad header.
    Frame(aws_smithy_eventstream::error::Error),
    /// A frame announced more bytes than the bound.
    TooLarge {
        /// The length the prelude announced.
        length: u64,
        /// The bound.
        max: usize,
    },
    /// A frame too short to hold a prelude and a CRC.
    TooShort(u64),
    /// A message without a header the protocol requires.
    MissingHeader(&'static str),
}

impl fmt::Display for EventStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(_) => f.write_str("invalid event stream frame"),
            Self::TooLarge { length, max } => {
                write!(f, "event stream frame of {length} bytes exceeds {max}")
            }
            Self::TooShort(length) => {
                write!(f, "event stream frame of {length} bytes is too short")
            }
            Self::MissingHeader(name) => write!(f, "event stream message without {name} header"),
        }
    }
}

impl std::error::Error for EventStreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame(e) => Some(e),
            _ => None,
        }
    }
}

fn frame_error(error: EventStreamError) -> ProviderError {
    ProviderError::new(ErrorClass::Server, "malformed event stream from provider")
        .in_band()
        .with_source(error)
}

/// Cuts a byte stream into AWS event-stream messages, each checked by the
/// AWS codec.
///
/// A frame that arrives whole in one read is decoded in place; one split
/// across reads is gathered in a buffer that is reused (it grows to the
/// largest frame seen, at most the bound).
#[derive(Debug)]
pub struct EventStreamDecoder {
    partial: Vec<u8>,
    max_frame: usize,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_SIZE)
    }
}

impl EventStreamDecoder {
    /// A decoder with a bound of `max_frame` bytes per frame.
    pub fn with_limit(max_frame: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_frame,
        }
    }

    fn frame_len(&self, prefix: &[u8]) -> Result<usize, EventStreamError> {
        let mut length = [0u8; FRAME_HEADER];
        length.copy_from_slice(&prefix[..FRAME_HEADER]);
        let length = u32::from_be_bytes(length);
        // Prelude (12 bytes) and message CRC (4).
        if length < 16 {
            return Err(EventStreamError::TooShort(length.into()));
        }
        match usize::try_from(length) {
            Ok(length) if length <= self.max_frame => Ok(length),
            _ => Err(EventStreamError::TooLarge {
                length: length.into(),
                max: self.max_frame,
            }),
        }
    }

    /// Consumes bytes from the front of `input` until a message is complete
    /// and returns it, or consumes all of `input` and returns `None`.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Message>, EventStreamError> {
        if self.partial.is_empty() && input.len() >= FRAME_HEADER {
            let length = self.frame_len(input)?;
            if let Some((frame, rest)) = input.split_at_checked(length) {
                *input = rest;
                return read_frame(frame).map(Some);
            }
        }
        loop {
            let need = match self.partial.get(..FRAME_HEADER) {
                Some(prefix) => self.frame_len(prefix)?,
                None => FRAME_HEADER,
            };
            if self.partial.len() == need {
                let message = read_frame(&self.partial);
                self.partial.clear();
                return message.map(Some);
            }
            if input.is_empty() {
                return Ok(None);
            }
            let take = (need - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            *input = &input[take..];
        }
    }

    /// Whether part of a frame is buffered (input that ends now was cut).
    pub fn has_partial_frame(&self) -> bool {
        !self.partial.is_empty()
    }
}

fn read_frame(frame: &[u8]) -> Result<Message, EventStreamError> {
    aws_smithy_eventstream::frame::read_message_from(frame).map_err(EventStreamError::Frame)
}

impl Framing<ConverseParser> for EventStreamDecoder {
    type Chunk = ChatChunk;

    fn decode(
        &mut self,
        parser: &mut ConverseParser,
        input: &mut &[u8],
    ) -> Option<Result<Step<ChatChunk>, ProviderError>> {
        match EventStreamDecoder::decode(self, input) {
            Ok(Some(message)) => Some(parser.parse_message(&message)),
            Ok(None) => None,
            Err(error) => Some(Err(frame_error(error))),
        }
    }

    fn finish(
        &mut self,
        parser: &mut ConverseParser,
    ) -> Option<Result<Step<ChatChunk>, ProviderError>> {
        // The marker was seen: the end of input is the clean end, even if
        // the metadata after it was cut off.
        if parser.stopped() {
            return Some(Ok(Step::Done(None)));
        }
        None
    }

    fn truncated(&mut self, parser: &mut ConverseParser) -> ProviderError {
        parser.truncated()
    }
}

/// The `ConverseStream` event grammar (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct ConverseParser {
    stopped: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    content_block_index: u32,
    #[serde(default)]
    start: Option<WireStart>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    metrics: Option<WireMetrics>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStart {
    #[serde(default)]
    tool_use: Option<WireToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolStart {
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<WireToolDelta>,
    #[serde(default)]
    reasoning_content: Option<WireReasoning>,
}

#[derive(Deserialize)]
struct WireToolDelta {
    #[serde(default)]
    input: Option<String>,
}

#[derive(Deserialize)]
struct WireReasoning {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_write_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMetrics {
    #[serde(default)]
    latency_ms: Option<u64>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cached)
                .saturating_add(self.cache_write_input_tokens.unwrap_or(0)),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: cached,
            reasoning_tokens: 0,
        }
    }
}

impl ConverseParser {
    /// Whether `messageStop`, the terminal marker, has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn parse_message(&mut self, message: &Message) -> Result<Step<ChatChunk>, ProviderError> {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|value| value.as_str())
        };
        let payload = message.payload();
        match header(":message-type") {
            Some("event") => match header(":event-type") {
                Some(kind) => self.parse_event(kind, payload),
                None => Err(frame_error(EventStreamError::MissingHeader(":event-type"))),
            },
            Some("exception") => {
                let kind = header(":exception-type").unwrap_or("unknownException");
                Err(self.parse_exception(kind, payload))
            }
            Some("error") => {
                let code = header(":error-code").unwrap_or("unknownError");
                let text = header(":error-message").unwrap_or_default();
                Err(exception_error(code, text.to_owned(), None).in_band())
            }
            _ => Err(frame_error(EventStreamError::MissingHeader(
                ":message-type",
            ))),
        }
    }

    /// Handles one event: its `:event-type` and JSON payload.
    pub fn parse_event(
        &mut self,
        event_type: &str,
        payload: &[u8],
    ) -> Result<Step<ChatChunk>, ProviderError> {
        let known = matches!(
            event_type,
            "messageStart"
                | "contentBlockStart"
                | "contentBlockDelta"
                | "contentBlockStop"
                | "messageStop"
                | "metadata"
        );
        if !known {
            return Ok(Step::Skip);
        }
        let wire: Wire =
            serde_json::from_slice(payload).map_err(|e| malformed("converse stream event", e))?;
        let index = wire.content_block_index;
        let mut chunk = ChatChunk::new(ChunkKind::Other);
        match event_type {
            "messageStart" => chunk.kind = ChunkKind::Start,
            "contentBlockStart" => {
                chunk.kind = ChunkKind::Start;
                if let Some(tool) = wire.start.and_then(|s| s.tool_use) {
                    chunk.kind = ChunkKind::Delta;
                    chunk.tool_calls.push(ToolCallDelta {
                        index,
                        id: tool.tool_use_id,
                        name: tool.name,
                        arguments: String::new(),
                    });
                }
            }
            "contentBlockDelta" => {
                if let Some(delta) = wire.delta {
                    chunk.text = delta.text.unwrap_or_default();
                    chunk.reasoning = delta
                        .reasoning_content
                        .and_then(|r| r.text)
                        .unwrap_or_default();
                    if let Some(arguments) = delta.tool_use.and_then(|t| t.input) {
                        chunk.tool_calls.push(ToolCallDelta {
                            index,
                            id: None,
                            name: None,
                            arguments,
                        });
                    }
                }
                if chunk.is_content() {
                    chunk.kind = ChunkKind::Delta;
                }
            }
            "messageStop" => {
                self.stopped = true;
                let reason = wire.stop_reason.unwrap_or_default();
                if matches!(reason.as_str(), "content_filtered" | "guardrail_intervened") {
                    return Err(ProviderError::new(
                        ErrorClass::ContentFilter,
                        format!("generation stopped: {reason}"),
                    )
                    .with_code(reason)
                    .in_band());
                }
                chunk.kind = ChunkKind::Stop;
                chunk.finish_reason = Some(reason).filter(|r| !r.is_empty());
            }
            "metadata" => {
                chunk.kind = ChunkKind::Usage;
                chunk.usage = wire.usage.as_ref().map(WireUsage::to_usage);
                chunk.provider_latency = wire
                    .metrics
                    .and_then(|m| m.latency_ms)
                    .map(Duration::from_millis);
                if self.stopped {
                    // The last event: no need to wait for the end of input.
                    return Ok(Step::Done(Some(chunk)));
                }
            }
            // contentBlockStop
            _ => {}
        }
        Ok(Step::Chunk(chunk))
    }

    /// The error for an exception in the stream: its `:exception-type`
    /// (`throttlingException`, …) and JSON payload (`{"message": …}`).
    pub fn parse_exception(&mut self, exception_type: &str, payload: &[u8]) -> ProviderError {
        let message = serde_json::from_slice::<Wire>(payload)
            .ok()
            .and_then(|w| w.message)
            .unwrap_or_default();
        exception_error(exception_type, message, None).in_band()
    }

    /// Handles one event in its decoded JSON form, `{"<eventType>": payload}`
    /// (how the AWS SDKs log events and how recorded samples store them);
    /// a key ending in `Exception` is an exception.
    pub fn parse_json_event(&mut self, line: &str) -> Result<Step<ChatChunk>, ProviderError> {
        let value: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| malformed("converse stream event", e))?;
        let Some((kind, payload)) = value.iter().next().filter(|_| value.len() == 1) else {
            return Err(malformed(
                "converse stream event",
                "expected one event type per object",
            ));
        };
        // A parsed JSON value always serialises.
        let payload = serde_json::to_vec(payload).unwrap_or_default();
        if kind.ends_with("Exception") {
            return Err(self.parse_exception(kind, &payload));
        }
        self.parse_event(kind, &payload)
    }

    /// The error for input that ended before `messageStop`.
    pub fn truncated(&mut self) -> ProviderError {
        ProviderError::truncated("stream ended before messageStop").in_band()
    }
}

/// The class of a Bedrock exception by name (`ThrottlingException` in the
/// `x-amzn-errortype` header, `throttlingException` in the stream).
fn exception_class(code: &str, message: &str, status: Option<StatusCode>) -> ErrorClass {
    let name = code.to_ascii_lowercase();
    match name.trim_end_matches("exception") {
        "throttling" => ErrorClass::RateLimited,
        "serviceunavailable" | "modelnotready" => ErrorClass::Overloaded,
        "internalserver" | "modelstreamerror" | "modelerror" => ErrorClass::Server,
        "modeltimeout" => ErrorClass::Timeout,
        "validation" => {
            let lower = message.to_ascii_lowercase();
            let details = ErrorDetails {
                message: message.to_owned(),
                ..ErrorDetails::default()
            };
            if lower.contains("too long")
                || lower.contains("too many input tokens")
                || class_of(Some(StatusCode::BAD_REQUEST), &details) == ErrorClass::ContextLength
            {
                ErrorClass::ContextLength
            } else {
                ErrorClass::Client
            }
        }
        "accessdenied"
        | "resourcenotfound"
        | "servicequotaexceeded"
        | "unrecognizedclient"
        | "invalidsignature"
        | "incompletesignature"
        | "expiredtoken"
        | "missingauthenticationtoken" => ErrorClass::Client,
        _ => status.map_or(ErrorClass::Server, ErrorClass::from_status),
    }
}

fn exception_error(code: &str, message: String, status: Option<StatusCode>) -> ProviderError {
    let class = exception_class(code, &message, status);
    let message = if message.is_empty() {
        code.to_owned()
    } else {
        message
    };
    ProviderError::new(class, message).with_code(code)
}

/// An HTTP error from Bedrock: the exception name from `x-amzn-errortype`
/// (`ThrottlingException:http://…` → `ThrottlingException`), the message
/// from the JSON body. Throttling carries no retry delay: Bedrock sends none.
/// `secrets` (the client's credentials) are redacted as in
/// [`http_error`].
pub fn bedrock_http_error(
    status: StatusCode,
    headers: HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> ProviderError {
    let code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(':').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let Some(code) = code else {
        return http_error(status, headers, body, secrets);
    };
    let message = http_error(status, HeaderMap::new(), body, secrets)
        .message()
        .to_owned();
    let class = exception_class(&code, &message, Some(status));
    ProviderError::new(class, message)
        .with_code(code)
        .with_status(status)
        .with_redacted_body_excerpt(body, secrets)
        .with_headers(headers)
}

#[cfg(test)]
mod tests;
