//! What every adapter shares: base URL, headers (with the API key marked
//! sensitive), the HTTP client, and sending one streaming request.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use streamgate_core::{redact::redact, BoxError, ProviderError};

use crate::{
    auth::{Authorize, TokenCache, TokenProvider},
    errors::{http_error, transport_error, ERROR_BODY_READ_LIMIT},
    ndjson::NdjsonDecoder,
    sse::{SseDecoder, DEFAULT_MAX_SIZE},
    stream::{EventParser, Framing, LineParser, ProviderStream},
};

/// The response future every adapter returns (`D` is the framing: SSE
/// unless the provider streams NDJSON).
pub type ResponseFuture<P, D = SseDecoder> =
    Pin<Box<dyn Future<Output = Result<Response<ProviderStream<P, D>>, BoxError>> + Send>>;

/// A configuration mistake, found by a builder's `build()`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is not an absolute `http` or `https` URL (as given, with
    /// credentials in it [redacted](streamgate_core::redact)).
    InvalidBaseUrl(String),
    /// A header name or value is not valid HTTP (the value is not shown: it
    /// may be a key).
    InvalidHeader(String),
    /// The HTTP client could not be built.
    HttpClient(reqwest::Error),
    /// A setting the client cannot work without was not given and has no
    /// default (e.g. the AWS region, or credentials).
    Missing(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBaseUrl(url) => write!(f, "invalid base url {url:?}"),
            Self::InvalidHeader(name) => write!(f, "invalid header {name:?}"),
            Self::HttpClient(_) => f.write_str("cannot build http client"),
            Self::Missing(what) => write!(f, "missing {what}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::HttpClient(e) => Some(e),
            _ => None,
        }
    }
}

/// Provider defaults for the shared [`ClientBuilder`]; implemented by each
/// client of this crate (and by a user's own adapter built on [`Endpoint`]).
pub trait Provider: Sized {
    /// Where requests go unless the builder says otherwise.
    const DEFAULT_BASE_URL: &'static str;
    /// The header carrying the API key, and its value for `key`.
    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError>;
    /// Headers every request of this provider carries.
    fn default_headers(_headers: &mut HeaderMap) {}
    /// The error for an HTTP error status, from the (bounded) body: by
    /// default [`errors::http_error`](crate::errors::http_error).
    fn http_error(
        status: StatusCode,
        headers: HeaderMap,
        body: &[u8],
        secrets: &[&str],
    ) -> ProviderError {
        http_error(status, headers, body, secrets)
    }
    /// Builds the client.
    fn from_endpoint(endpoint: Endpoint) -> Self;
}

/// The shared part of every client. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    base_url: String,
    headers: HeaderMap,
    /// The API key and the auth header's value, redacted from errors.
    secrets: Vec<String>,
    http: reqwest::Client,
    max_line: usize,
    max_event: usize,
    /// Per-request credentials: a refreshed bearer token, a SigV4 signature.
    authorize: Option<Arc<dyn Authorize>>,
    http_error: fn(StatusCode, HeaderMap, &[u8], &[&str]) -> ProviderError,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be keys: names only.
        let names: Vec<&str> = self.inner.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("Endpoint")
            .field("base_url", &self.inner.redact(&self.inner.base_url))
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

impl EndpointInner {
    fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        redact(text, &secrets)
    }
}

impl Endpoint {
    /// The base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The bound on one event (or frame), in bytes.
    #[cfg(feature = "bedrock")]
    pub(crate) fn max_event(&self) -> usize {
        self.inner.max_event
    }

    /// Sends `body` as a JSON POST to `base_url + path` and returns the
    /// streaming response, or a [`ProviderError`] for an error status
    /// (status, all headers, a bounded excerpt of the body) or a transport
    /// failure.
    pub fn send<P>(&self, path: &str, body: Vec<u8>, parser: P) -> ResponseFuture<P>
    where
        P: EventParser + Send + Unpin + 'static,
    {
        let decoder = SseDecoder::with_limits(self.inner.max_line, self.inner.max_event);
        self.send_framed(path, body, parser, decoder)
    }

    /// [`send`](Self::send) for a provider that streams newline-delimited
    /// JSON: a line is an event, so it is bounded by the smaller of the
    /// builder's line and event bounds.
    pub fn send_ndjson<P>(
        &self,
        path: &str,
        body: Vec<u8>,
        parser: P,
    ) -> ResponseFuture<P, NdjsonDecoder>
    where
        P: LineParser + Send + Unpin + 'static,
    {
        let decoder = NdjsonDecoder::with_limit(self.inner.max_line.min(self.inner.max_event));
        self.send_framed(path, body, parser, decoder)
    }

    /// Sends with any framing `decoder` (Bedrock's binary event stream).
    pub(crate) fn send_framed<P, D>(
        &self,
        path: &str,
        body: Vec<u8>,
        parser: P,
        decoder: D,
    ) -> ResponseFuture<P, D>
    where
        P: Send + Unpin + 'static,
        D: Framing<P> + Send + Unpin + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let url = format!("{}{}", inner.base_url, path);
        Box::pin(async move {
            let mut headers = inner.headers.clone();
            if let Some(authorize) = &inner.authorize {
                authorize.authorize(&url, &body, &mut headers).await?;
            }
            let response = inner
                .http
                .post(url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| transport_error(Box::new(e)))?;
            let status = response.status();
            if !status.is_success() {
                if let (StatusCode::UNAUTHORIZED, Some(authorize)) = (status, &inner.authorize) {
                    authorize.unauthorized().await;
                }
                let headers = response.headers().clone();
                let body = read_bounded(response).await;
                let secrets: Vec<&str> = inner.secrets.iter().map(String::as_str).collect();
                return Err((inner.http_error)(status, headers, &body, &secrets).into());
            }
            let mut builder = Response::builder()
                .status(status)
                .version(response.version());
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = ProviderStream::with_decoder(parser, response.bytes_stream(), decoder);
            builder
                .body(body)
                .map_err(|e| -> BoxError { transport_error(Box::new(e)).into() })
        })
    }
}

/// Reads at most [`ERROR_BODY_READ_LIMIT`] bytes of an error body; a
/// transport error while reading keeps what arrived.
async fn read_bounded(mut response: reqwest::Response) -> Bytes {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_READ_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Bytes::from(body)
}

/// Builds any of this crate's clients: `OpenAiChat::builder()`,
/// `Anthropic::builder()`, ….
///
/// Defaults: the provider's public base URL, no API key (for local
/// OpenAI-compatible servers), a new `reqwest` client (see
/// [`http_client`](Self::http_client)), and a 1 MiB bound on SSE lines and
/// events.
///
/// # TLS
///
/// The client this builder creates uses rustls, with the crypto provider
/// the program installed as the process default
/// (`rustls::crypto::CryptoProvider::install_default`) if it did, else
/// aws-lc-rs, reqwest's default. Building one installs nothing process-wide,
/// and this crate enables no TLS feature beyond reqwest's default TLS, so
/// depending on it leaves the program's other `reqwest` and `rustls` clients
/// as they were: there is nothing to set up. For another TLS setup (native
/// TLS, custom roots, a proxy), pass your own client to
/// [`http_client`](Self::http_client).
pub struct ClientBuilder<P> {
    base_url: Option<String>,
    api_key: Option<String>,
    auth: Option<(String, String)>,
    headers: Vec<(String, String)>,
    http: Option<reqwest::Client>,
    connect_timeout: Option<Duration>,
    max_line: usize,
    max_event: usize,
    authorize: Option<Arc<dyn Authorize>>,
    _provider: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for ClientBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets = self.secrets();
        f.debug_struct("ClientBuilder")
            .field(
                "base_url",
                &self.base_url.as_deref().map(|url| redact(url, &secrets)),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("auth_header", &self.auth.as_ref().map(|(name, _)| name))
            .field("per_request_auth", &self.authorize.is_some())
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<P> ClientBuilder<P> {
    fn secrets(&self) -> Vec<&str> {
        self.api_key
            .iter()
            .map(String::as_str)
            .chain(self.auth.iter().map(|(_, value)| value.as_str()))
            .collect()
    }
}

impl<P: Provider> Default for ClientBuilder<P> {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            auth: None,
            headers: Vec::new(),
            http: None,
            connect_timeout: None,
            max_line: DEFAULT_MAX_SIZE,
            max_event: DEFAULT_MAX_SIZE,
            authorize: None,
            _provider: PhantomData,
        }
    }
}

impl<P: Provider> ClientBuilder<P> {
    /// Where requests go, e.g. `http://127.0.0.1:8080/v1` for a local
    /// OpenAI-compatible server (a trailing slash is ignored).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The API key, sent in the provider's usual header (OpenAI
    /// `Authorization: Bearer`, Anthropic `x-api-key`, Gemini
    /// `x-goog-api-key`). Never shown in `Debug` output or errors.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sends the key in another header, verbatim (e.g. Azure OpenAI's
    /// `api-key`). Replaces [`api_key`](Self::api_key); also sensitive.
    #[must_use]
    pub fn auth_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.auth = Some((name.into(), value.into()));
        self
    }

    /// Sends `Authorization: Bearer TOKEN` with a token from `provider`,
    /// asked again once the token is within
    /// [`REFRESH_MARGIN`](crate::auth::REFRESH_MARGIN) of its expiry (or
    /// after a 401), and shared by all requests until then (Vertex AI,
    /// Azure OpenAI with Entra ID, a gateway with short-lived tokens).
    /// Replaces [`api_key`](Self::api_key) and [`auth_header`](Self::auth_header).
    /// Tokens never appear in `Debug` output or errors.
    #[must_use]
    pub fn bearer_token_provider(self, provider: impl TokenProvider + 'static) -> Self {
        self.authorizer(Arc::new(TokenCache::new(provider)))
    }

    /// Credentials computed for each request (a token, a signature).
    pub(crate) fn authorizer(mut self, authorize: Arc<dyn Authorize>) -> Self {
        self.authorize = Some(authorize);
        self
    }

    /// A further header on every request (e.g. `OpenAI-Organization`,
    /// `HTTP-Referer` for OpenRouter).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Uses this `reqwest` client (its TLS, proxy and pool settings) instead
    /// of a new one.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Connect timeout of the client this builder creates (ignored with
    /// [`http_client`](Self::http_client)). Stream deadlines belong to the
    /// timeout layer.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Bounds on one SSE line and one event, in bytes (default 1 MiB each).
    /// For NDJSON streams a line is an event, bounded by the smaller.
    #[must_use]
    pub fn max_event_size(mut self, max_line: usize, max_event: usize) -> Self {
        self.max_line = max_line;
        self.max_event = max_event;
        self
    }

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<P, ConfigError> {
        let secrets: Vec<String> = self.secrets().into_iter().map(str::to_owned).collect();
        let invalid_url = |url: &str| {
            let known: Vec<&str> = secrets.iter().map(String::as_str).collect();
            ConfigError::InvalidBaseUrl(redact(url, &known).into_owned())
        };
        let base_url = self
            .base_url
            .unwrap_or_else(|| P::DEFAULT_BASE_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let parsed: http::Uri = base_url.parse().map_err(|_| invalid_url(&base_url))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(invalid_url(&base_url));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        P::default_headers(&mut headers);
        for (name, value) in &self.headers {
            let (name, value) = header_pair(name, value)?;
            headers.append(name, value);
        }
        let auth = match (&self.auth, &self.api_key, &self.authorize) {
            (_, _, Some(_)) | (None, None, None) => None,
            (Some((name, value)), _, None) => Some(header_pair(name, value)?),
            (None, Some(key), None) => Some(P::auth_header(key)?),
        };
        if let Some((name, mut value)) = auth {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = match self.http {
            Some(http) => http,
            None => default_http_client(self.connect_timeout)?,
        };
        Ok(P::from_endpoint(Endpoint {
            inner: Arc::new(EndpointInner {
                base_url,
                headers,
                secrets,
                http,
                max_line: self.max_line,
                max_event: self.max_event,
                authorize: self.authorize,
                http_error: P::http_error,
            }),
        }))
    }
}

/// The HTTP client the builders create: rustls (even where the program's
/// reqwest features add native TLS) with the process's crypto provider, else
/// aws-lc-rs; nothing is installed process-wide.
pub(crate) fn default_http_client(
    connect_timeout: Option<Duration>,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder().tls_backend_rustls();
    if let Some(timeout) = connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    builder.build().map_err(ConfigError::HttpClient)
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let header_name =
        HeaderName::try_from(name).map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
    let header_value =
        HeaderValue::try_from(value).map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
    Ok((header_name, header_value))
}

/// `Authorization: Bearer KEY`, for OpenAI and compatible servers (and
/// proxies in front of Ollama).
#[cfg(any(feature = "openai", feature = "ollama", feature = "bedrock"))]
pub(crate) fn bearer(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value = HeaderValue::try_from(format!("Bearer {key}"))
        .map_err(|_| ConfigError::InvalidHeader(header::AUTHORIZATION.to_string()))?;
    Ok((header::AUTHORIZATION, value))
}

/// `NAME: KEY`.
#[cfg(any(feature = "anthropic", feature = "gemini", feature = "openai"))]
pub(crate) fn key_header(
    name: &'static str,
    key: &str,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value =
        HeaderValue::try_from(key).map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
    Ok((HeaderName::from_static(name), value))
}

/// The [`ClientBuilder`] settings a cloud client's own builder passes on:
/// `http_client`, `connect_timeout`, `header`, `max_event_size`, forwarded
/// to the `ClientBuilder` in field `$client`.
#[cfg(any(feature = "openai", feature = "gemini", feature = "bedrock"))]
macro_rules! forward_client_options {
    ($client:ident) => {
        /// Uses this `reqwest` client (its TLS, proxy and pool settings); see
        /// [`ClientBuilder::http_client`](crate::ClientBuilder::http_client).
        #[must_use]
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.$client = self.$client.http_client(client);
            self
        }

        /// Connect timeout of the client this builder creates; see
        /// [`ClientBuilder::connect_timeout`](crate::ClientBuilder::connect_timeout).
        #[must_use]
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.$client = self.$client.connect_timeout(timeout);
            self
        }

        /// A further header on every request; see
        /// [`ClientBuilder::header`](crate::ClientBuilder::header).
        #[must_use]
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.$client = self.$client.header(name, value);
            self
        }

        /// Bounds on one line and one event (or frame), in bytes; see
        /// [`ClientBuilder::max_event_size`](crate::ClientBuilder::max_event_size).
        #[must_use]
        pub fn max_event_size(mut self, max_line: usize, max_event: usize) -> Self {
            self.$client = self.$client.max_event_size(max_line, max_event);
            self
        }
    };
}
#[cfg(any(feature = "openai", feature = "gemini", feature = "bedrock"))]
pub(crate) use forward_client_options;

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// model id (`anthropic.claude-…-v1:0`, an ARN with `/`) is one path
/// segment whatever it contains.
#[cfg(any(feature = "openai", feature = "gemini", feature = "bedrock"))]
pub(crate) fn encode_segment(segment: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(all(test, feature = "openai"))]
mod tests {
    use crate::openai::OpenAiChat;

    const KEY: &str = "sk-secret-987654321";

    #[test]
    fn a_key_in_the_base_url_or_auth_never_reaches_debug_or_errors() {
        let builder = OpenAiChat::builder()
            .base_url(format!("https://user:{KEY}@example.test/v1?key={KEY}"))
            .api_key(KEY)
            .auth_header("api-key", KEY);
        let debug = format!("{builder:?}");
        assert!(!debug.contains(KEY), "{debug}");
        let client = builder.build().map(|c| format!("{c:?}"));
        assert!(client.is_ok_and(|c| !c.contains(KEY)));

        let err = OpenAiChat::builder()
            .base_url(format!("ftp://example.test/?key={KEY}"))
            .api_key(KEY)
            .build()
            .err();
        let rendered = err.map(|e| format!("{e} {e:?}")).unwrap_or_default();
        assert!(rendered.contains("invalid base url"), "{rendered}");
        assert!(!rendered.contains(KEY), "{rendered}");
        let err = OpenAiChat::builder()
            .base_url(format!("not a url {KEY}"))
            .api_key(KEY)
            .build()
            .err();
        let rendered = err.map(|e| format!("{e} {e:?}")).unwrap_or_default();
        assert!(!rendered.contains(KEY), "{rendered}");
    }
}
