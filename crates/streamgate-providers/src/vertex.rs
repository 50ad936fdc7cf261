//! Gemini on Vertex AI: the [`Gemini`] client and parser on Vertex's
//! paths, with a bearer token from your provider.
//!
//! `Gemini::vertex(project, location)` builds a [`Gemini`] that POSTs to
//!
//! ```text
//! https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent?alt=sse
//! ```
//!
//! or, for location `global`, the same path on
//! `https://aiplatform.googleapis.com`. Requests carry `Authorization:
//! Bearer` with a token from [`VertexBuilder::token_provider`] (refreshed
//! as [`auth`](crate::auth) describes), or an express-mode API key in
//! `x-goog-api-key`. The stream is Gemini's, read by the same parser.
//!
//! ```no_run
//! use std::time::Duration;
//! use streamgate_providers::{auth::BearerToken, gemini::Gemini};
//!
//! # fn main() -> Result<(), streamgate_providers::ConfigError> {
//! let client = Gemini::vertex("my-project", "us-central1")
//!     .token_provider(|| async {
//!         // e.g. gcp_auth's `provider.token(&[scope]).await`
//!         Ok(BearerToken::new("ya29....").with_expires_in(Duration::from_secs(3600)))
//!     })
//!     .build()?;
//! # drop(client); Ok(()) }
//! ```

use std::fmt;

use crate::{
    auth::TokenProvider,
    client::{encode_segment, forward_client_options, ClientBuilder, ConfigError},
    gemini::Gemini,
};

/// The location whose endpoint has no regional prefix.
pub const GLOBAL: &str = "global";

/// Builds a [`Gemini`] client for Vertex AI; see the [module docs](self).
pub struct VertexBuilder {
    client: ClientBuilder<Gemini>,
    project: String,
    location: String,
    base_url: Option<String>,
    credentials: bool,
}

impl fmt::Debug for VertexBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexBuilder")
            .field("client", &self.client)
            .field("project", &self.project)
            .field("location", &self.location)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Gemini {
    /// A builder for Gemini on Vertex AI in `project` and `location`
    /// (`us-central1`, `europe-west4`, … or [`GLOBAL`]).
    pub fn vertex(project: impl Into<String>, location: impl Into<String>) -> VertexBuilder {
        VertexBuilder {
            client: ClientBuilder::default(),
            project: project.into(),
            location: location.into(),
            base_url: None,
            credentials: false,
        }
    }
}

impl VertexBuilder {
    /// Bearer tokens (OAuth access tokens of a service account or the
    /// metadata server) from `provider`, cached until they near expiry.
    #[must_use]
    pub fn token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.client = self.client.bearer_token_provider(provider);
        self.credentials = true;
        self
    }

    /// An express-mode API key instead of a token (`x-goog-api-key`).
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.client = self.client.api_key(key);
        self.credentials = true;
        self
    }

    /// Where the `/v1/projects/…` path is appended instead of the
    /// location's endpoint (a private endpoint, a proxy, the mock server).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    forward_client_options!(client);

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<Gemini, ConfigError> {
        let location_ok = !self.location.is_empty()
            && self
                .location
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let host = match self.base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.location == GLOBAL => "https://aiplatform.googleapis.com".to_owned(),
            None => format!("https://{}-aiplatform.googleapis.com", self.location),
        };
        if !location_ok || self.project.is_empty() {
            return Err(ConfigError::InvalidBaseUrl(host));
        }
        if !self.credentials {
            return Err(ConfigError::Missing(
                "vertex ai credentials (a token provider or an api key)",
            ));
        }
        let base_url = format!(
            "{host}/v1/projects/{}/locations/{}/publishers/google",
            encode_segment(&self.project),
            self.location
        );
        self.client.base_url(base_url).build()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::auth::BearerToken;

    fn token() -> impl TokenProvider {
        || async { Ok(BearerToken::new("ya29.secret-token")) }
    }

    #[test]
    fn regional_and_global_endpoints_carry_project_and_location() {
        let regional = Gemini::vertex("my-project", "us-central1")
            .token_provider(token())
            .build()
            .unwrap();
        assert!(format!("{regional:?}").contains(
            "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google"
        ));
        let global = Gemini::vertex("p", GLOBAL).api_key("k").build().unwrap();
        assert!(format!("{global:?}").contains(
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google"
        ));
    }

    #[test]
    fn hostile_locations_and_missing_credentials_are_config_errors() {
        for location in ["evil.com/x", "US", "", "a b"] {
            assert!(
                matches!(
                    Gemini::vertex("p", location).api_key("k").build(),
                    Err(ConfigError::InvalidBaseUrl(_))
                ),
                "{location:?}"
            );
        }
        assert!(matches!(
            Gemini::vertex("p", "us-east1").build(),
            Err(ConfigError::Missing(_))
        ));
        let builder = Gemini::vertex("p", "us-east1").api_key("AIza-secret");
        assert!(!format!("{builder:?}").contains("AIza-secret"));
    }
}
