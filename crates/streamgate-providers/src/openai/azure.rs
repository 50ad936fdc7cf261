//! Azure OpenAI chat completions: deployments and the v1 API.

use std::{
    fmt,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Response};
use serde_json::Value;
use streamgate_core::BoxError;
use tower_service::Service;

use super::{ChatParser, ChatStream, OpenAiChat};
use crate::{
    auth::TokenProvider,
    client::{
        encode_segment, forward_client_options, key_header, ClientBuilder, ConfigError, Endpoint,
        Provider, ResponseFuture,
    },
    request::ChatRequest,
};

/// The `api-version` sent to deployment URLs unless the builder sets
/// another (the latest GA version when this crate was written).
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// A streaming Azure OpenAI client as a `tower::Service<ChatRequest>`.
///
/// With a [deployment](AzureBuilder::deployment) it POSTs to
/// `{resource}/openai/deployments/{deployment}/chat/completions?api-version=…`
/// (the request's model is then only in the body, which Azure ignores);
/// without one, to the v1 API, `{resource}/openai/v1/chat/completions`,
/// where the request's model names the deployment. The body and the stream
/// are OpenAI's, with Azure's additions: the `prompt_filter_results` chunk
/// before the first content is a [`ChunkKind::Filter`](crate::ChunkKind::Filter)
/// chunk, and a `content_filter` finish reason is a `content_filter` error.
/// Azure's `x-ratelimit-*` headers are read by the quota layer like OpenAI's.
#[derive(Clone, Debug)]
pub struct AzureOpenAi {
    chat: OpenAiChat,
    path: String,
}

impl Provider for AzureOpenAi {
    /// Placeholder: the builder requires the resource's endpoint.
    const DEFAULT_BASE_URL: &'static str = "https://example.openai.azure.com";

    fn auth_header(key: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
        key_header("api-key", key)
    }

    fn from_endpoint(endpoint: Endpoint) -> Self {
        Self {
            chat: OpenAiChat::from_endpoint(endpoint),
            path: String::new(),
        }
    }
}

impl AzureOpenAi {
    /// A builder for the resource at `endpoint`, e.g.
    /// `https://my-resource.openai.azure.com`.
    pub fn builder(endpoint: impl Into<String>) -> AzureBuilder {
        AzureBuilder {
            client: ClientBuilder::default().base_url(endpoint),
            deployment: None,
            api_version: AZURE_API_VERSION.to_owned(),
        }
    }

    /// The request body this client sends for `request` (OpenAI's).
    pub fn body(&self, request: &ChatRequest) -> Value {
        self.chat.body(request)
    }
}

impl Service<ChatRequest> for AzureOpenAi {
    type Response = Response<ChatStream>;
    type Error = BoxError;
    type Future = ResponseFuture<ChatParser>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let body = self.body(&request).to_string().into_bytes();
        self.chat
            .endpoint()
            .send(&self.path, body, ChatParser::azure())
    }
}

/// Builds an [`AzureOpenAi`] client: the resource endpoint, a deployment
/// (or the v1 API), an `api-key` or Entra ID tokens.
pub struct AzureBuilder {
    client: ClientBuilder<AzureOpenAi>,
    deployment: Option<String>,
    api_version: String,
}

impl fmt::Debug for AzureBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBuilder")
            .field("client", &self.client)
            .field("deployment", &self.deployment)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl AzureBuilder {
    /// Sends every request to this deployment's URL.
    #[must_use]
    pub fn deployment(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }

    /// The `api-version` of deployment URLs (default [`AZURE_API_VERSION`];
    /// the v1 API takes none).
    #[must_use]
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// The resource key, sent in `api-key`. Never shown in `Debug` output
    /// or errors.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.client = self.client.api_key(key);
        self
    }

    /// Microsoft Entra ID tokens (scope
    /// `https://cognitiveservices.azure.com/.default`) as `Authorization:
    /// Bearer`, refreshed as [`auth`](crate::auth) describes. Replaces
    /// [`api_key`](Self::api_key).
    #[must_use]
    pub fn token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.client = self.client.bearer_token_provider(provider);
        self
    }

    forward_client_options!(client);

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<AzureOpenAi, ConfigError> {
        let mut client = self.client.build()?;
        client.path = match &self.deployment {
            Some(deployment) => format!(
                "/openai/deployments/{}/chat/completions?api-version={}",
                encode_segment(deployment),
                encode_segment(&self.api_version)
            ),
            None => "/openai/v1/chat/completions".to_owned(),
        };
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn deployment_and_v1_paths() {
        let deployed = AzureOpenAi::builder("https://r.openai.azure.com/")
            .deployment("gpt-4o/../x")
            .api_key("k")
            .build()
            .unwrap();
        assert_eq!(
            deployed.path,
            "/openai/deployments/gpt-4o%2F..%2Fx/chat/completions?api-version=2024-10-21"
        );
        let v1 = AzureOpenAi::builder("https://r.openai.azure.com")
            .api_key("k")
            .build()
            .unwrap();
        assert_eq!(v1.path, "/openai/v1/chat/completions");
    }

    #[test]
    fn the_key_never_appears_in_debug_output() {
        let builder = AzureOpenAi::builder("https://r.openai.azure.com").api_key("azure-key-789");
        assert!(!format!("{builder:?}").contains("azure-key-789"));
        assert!(!format!("{:?}", builder.build().unwrap()).contains("azure-key-789"));
    }
}
