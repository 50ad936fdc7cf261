//! What every adapter shares: base URL, headers (with the API key marked
//! sensitive), the HTTP client, and sending one streaming request.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response};
use streamgate_core::{redact::redact, BoxError};

use crate::{
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBaseUrl(url) => write!(f, "invalid base url {url:?}"),
            Self::InvalidHeader(name) => write!(f, "invalid header {name:?}"),
            Self::HttpClient(_) => f.write_str("cannot build http client"),
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

    /// Sends `body` as a JSON POST to `base_url + path` and returns the
    /// streaming response, or a [`ProviderError`](streamgate_core::ProviderError) for an error status
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

    fn send_framed<P, D>(
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
            let response = inner
                .http
                .post(url)
                .headers(inner.headers.clone())
                .body(body)
                .send()
                .await
                .map_err(|e| transport_error(Box::new(e)))?;
            let status = response.status();
            if !status.is_success() {
                let headers = response.headers().clone();
                let body = read_bounded(response).await;
                let secrets: Vec<&str> = inner.secrets.iter().map(String::as_str).collect();
                return Err(http_error(status, headers, &body, &secrets).into());
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
/// OpenAI-compatible servers), a new `reqwest` client with rustls and the
/// `ring` crypto provider, and a 1 MiB bound on SSE lines and events.
pub struct ClientBuilder<P> {
    base_url: Option<String>,
    api_key: Option<String>,
    auth: Option<(String, String)>,
    headers: Vec<(String, String)>,
    http: Option<reqwest::Client>,
    connect_timeout: Option<Duration>,
    max_line: usize,
    max_event: usize,
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

    /// A further header on every request (e.g. `OpenAI-Organization`,
    /// `HTTP-Referer` for OpenRouter).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Uses this `reqwest` client (its TLS, proxy and pool settings).
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
        let auth = match (&self.auth, &self.api_key) {
            (Some((name, value)), _) => Some(header_pair(name, value)?),
            (None, Some(key)) => Some(P::auth_header(key)?),
            (None, None) => None,
        };
        if let Some((name, mut value)) = auth {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = match self.http {
            Some(http) => http,
            None => {
                // reqwest is built without a crypto provider; install ring as
                // the process default unless the program already chose one.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = reqwest::Client::builder();
                if let Some(timeout) = self.connect_timeout {
                    builder = builder.connect_timeout(timeout);
                }
                builder.build().map_err(ConfigError::HttpClient)?
            }
        };
        Ok(P::from_endpoint(Endpoint {
            inner: Arc::new(EndpointInner {
                base_url,
                headers,
                secrets,
                http,
                max_line: self.max_line,
                max_event: self.max_event,
            }),
        }))
    }
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
#[cfg(any(feature = "openai", feature = "ollama"))]
pub(crate) fn bearer(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value = HeaderValue::try_from(format!("Bearer {key}"))
        .map_err(|_| ConfigError::InvalidHeader(header::AUTHORIZATION.to_string()))?;
    Ok((header::AUTHORIZATION, value))
}

/// `NAME: KEY`.
#[cfg(any(feature = "anthropic", feature = "gemini"))]
pub(crate) fn key_header(
    name: &'static str,
    key: &str,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let value =
        HeaderValue::try_from(key).map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
    Ok((HeaderName::from_static(name), value))
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
