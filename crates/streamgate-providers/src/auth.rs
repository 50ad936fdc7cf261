//! Credentials computed for each request: bearer tokens from a provider
//! closure, cached until they are about to expire.
//!
//! [`ClientBuilder::bearer_token_provider`](crate::ClientBuilder::bearer_token_provider)
//! takes any [`TokenProvider`]: an async closure returning a
//! [`BearerToken`], or a blocking one through [`sync_token_provider`]. The
//! token is fetched on the first request, shared by every request after it,
//! and fetched again once it is within [`REFRESH_MARGIN`] of its expiry (on
//! tokio time) or after the provider answered 401. One refresh runs at a
//! time; requests arriving meanwhile wait for it.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use http::{header, HeaderMap, HeaderValue};
use streamgate_core::{BoxError, ErrorClass, ProviderError};
use tokio::{sync::Mutex, time::Instant};

/// How long before its expiry a token is replaced, so that no request
/// leaves with a token that lapses on the way (one minute, as Google's and
/// Azure's client libraries do).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The future a [`TokenProvider`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<BearerToken, BoxError>> + Send + 'a>>;

/// An access token and how long it stays valid. Never shown in `Debug`.
#[derive(Clone)]
pub struct BearerToken {
    token: String,
    expires_in: Option<Duration>,
}

impl BearerToken {
    /// A token that does not expire (until a 401 says otherwise).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            expires_in: None,
        }
    }

    /// The token is valid for `lifetime` from now (OAuth's `expires_in`).
    #[must_use]
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Where bearer tokens come from: implemented by every
/// `Fn() -> impl Future<Output = Result<BearerToken, BoxError>>` (wrap a
/// `gcp_auth` or `azure_identity` credential in one).
pub trait TokenProvider: Send + Sync {
    /// A fresh token.
    fn token(&self) -> TokenFuture<'_>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<BearerToken, BoxError>> + Send + 'static,
{
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(self())
    }
}

/// A [`TokenProvider`] from a blocking closure (one that reads a file or an
/// environment variable, say). It runs on the request's task.
pub fn sync_token_provider<F>(provider: F) -> impl TokenProvider
where
    F: Fn() -> Result<BearerToken, BoxError> + Send + Sync,
{
    move || std::future::ready(provider())
}

/// The future an [`Authorize`] returns.
pub(crate) type AuthorizeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), ProviderError>> + Send + 'a>>;

/// Adds a request's credentials to its headers just before it is sent.
pub(crate) trait Authorize: Send + Sync {
    /// Adds the credentials for a POST of `body` to `url`.
    fn authorize<'a>(
        &'a self,
        url: &'a str,
        body: &'a [u8],
        headers: &'a mut HeaderMap,
    ) -> AuthorizeFuture<'a>;

    /// The provider answered 401: forget what is cached.
    fn unauthorized(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// The error when credentials cannot be had: retryable, since another
/// backend (or a later try) may have them. The cause is attached.
pub(crate) fn credentials_error(source: impl Into<BoxError>) -> ProviderError {
    ProviderError::new(
        ErrorClass::Network,
        "cannot obtain credentials for provider",
    )
    .with_source(source)
}

struct Cached {
    header: HeaderValue,
    /// When to fetch again; `None` keeps the token until a 401.
    refresh_at: Option<Instant>,
}

/// A [`TokenProvider`] behind a cache: the `Authorization` header for
/// every request.
pub(crate) struct TokenCache {
    provider: Box<dyn TokenProvider>,
    cached: Mutex<Option<Cached>>,
}

impl TokenCache {
    pub(crate) fn new(provider: impl TokenProvider + 'static) -> Self {
        Self {
            provider: Box::new(provider),
            cached: Mutex::new(None),
        }
    }

    async fn header(&self) -> Result<HeaderValue, ProviderError> {
        // Held across the refresh: concurrent requests share one fetch.
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref() {
            if entry.refresh_at.is_none_or(|at| Instant::now() < at) {
                return Ok(entry.header.clone());
            }
        }
        let token = self.provider.token().await.map_err(credentials_error)?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.token))
            .map_err(|_| credentials_error("token is not a valid header value"))?;
        header.set_sensitive(true);
        let refresh_at = token.expires_in.and_then(|lifetime| {
            Instant::now().checked_add(lifetime.saturating_sub(REFRESH_MARGIN))
        });
        *cached = Some(Cached {
            header: header.clone(),
            refresh_at,
        });
        Ok(header)
    }
}

impl Authorize for TokenCache {
    fn authorize<'a>(
        &'a self,
        _url: &'a str,
        _body: &'a [u8],
        headers: &'a mut HeaderMap,
    ) -> AuthorizeFuture<'a> {
        Box::pin(async move {
            let value = self.header().await?;
            headers.insert(header::AUTHORIZATION, value);
            Ok(())
        })
    }

    fn unauthorized(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            *self.cached.lock().await = None;
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use super::*;

    fn counting(lifetime: Duration) -> (Arc<AtomicU32>, TokenCache) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let cache = TokenCache::new(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok(BearerToken::new(format!("token-{n}")).with_expires_in(lifetime)) }
        });
        (calls, cache)
    }

    async fn bearer(cache: &TokenCache) -> String {
        let mut headers = HeaderMap::new();
        cache.authorize("", b"", &mut headers).await.unwrap();
        headers[header::AUTHORIZATION].to_str().unwrap().to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_reused_until_the_refresh_margin_then_fetched_again() {
        let (calls, cache) = counting(Duration::from_secs(3600));
        assert_eq!(bearer(&cache).await, "Bearer token-0");
        tokio::time::advance(Duration::from_secs(3600) - REFRESH_MARGIN - Duration::from_secs(1))
            .await;
        assert_eq!(bearer(&cache).await, "Bearer token-0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(bearer(&cache).await, "Bearer token-1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_forgets_the_token_and_concurrent_requests_share_one_fetch() {
        let (calls, cache) = counting(Duration::from_secs(3600));
        let (a, b) = tokio::join!(bearer(&cache), bearer(&cache));
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("Bearer token-0", "Bearer token-0")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.unauthorized().await;
        assert_eq!(bearer(&cache).await, "Bearer token-1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_provider_is_a_retryable_error_without_the_token_in_it() {
        let cache = TokenCache::new(sync_token_provider(|| Err("metadata server down".into())));
        let mut headers = HeaderMap::new();
        let err = cache.authorize("", b"", &mut headers).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Network);
        assert!(err.class().is_retryable());
        assert!(headers.is_empty());
        let token = BearerToken::new("ya29.secret").with_expires_in(Duration::from_secs(1));
        assert!(!format!("{token:?}").contains("ya29.secret"));
    }
}
