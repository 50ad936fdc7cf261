//! What both orders of the dependent check share: one call through a
//! streamgate client and one through a plain `reqwest` client, both to the
//! mock provider on loopback (plain HTTP: the point is building the clients,
//! which is where a missing crypto provider panics).

use futures::StreamExt;
use streamgate::mock::{MockServer, Plan, Provider};
use streamgate::providers::{openai::OpenAiChat, ChatRequest};
use tower::ServiceExt;

/// The model every request names.
pub const MODEL: &str = "gpt-4o-mini";

/// A mock server that streams five tokens.
pub async fn mock() -> MockServer {
    MockServer::start_with_plan(Plan::new().with_output_tokens(5))
        .await
        .expect("mock server starts on loopback")
}

/// A streamgate client for `server`.
pub fn streamgate_client(server: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("test-key")
        .build()
        .expect("streamgate client builds")
}

/// Streams one answer through `client` and returns its text.
pub async fn streamgate_call(client: OpenAiChat) -> String {
    let response = client
        .oneshot(ChatRequest::new(MODEL).with_user("hello"))
        .await
        .expect("streamgate call succeeds");
    let mut body = response.into_body();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&chunk.expect("chunk").text);
    }
    text
}

/// Sends the OpenAI request through a plain `reqwest` client and returns the
/// status and the body.
pub async fn plain_call(client: &reqwest::Client, server: &MockServer) -> (u16, String) {
    let body = format!(
        r#"{{"model":"{MODEL}","stream":true,"messages":[{{"role":"user","content":"hello"}}]}}"#
    );
    let response = client
        .post(server.endpoint(Provider::OpenAi, MODEL))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("plain call succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.expect("plain body"))
}

/// A rustls client configuration built the default way, as a crate using
/// rustls directly (not through reqwest) would: it panics when the crate
/// features leave the crypto provider ambiguous or missing, and otherwise
/// installs the one they name as the process default.
pub fn default_rustls_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// No crate of streamgate's installed a process-wide crypto provider.
pub fn no_process_provider() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_none()
}
