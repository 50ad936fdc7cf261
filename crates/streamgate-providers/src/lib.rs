//! Streaming LLM provider clients (OpenAI, Anthropic, Gemini, Ollama, OpenAI-compatible) as tower services.
//!
//! The adapters, each behind a feature of the same name (all on by default):
//!
//! - `openai`: [`openai::OpenAiChat`] (Chat Completions, and every
//!   OpenAI-compatible server: Azure, Groq, OpenRouter, Mistral, vLLM, …) and
//!   [`openai::OpenAiResponses`] (the Responses API), over SSE;
//! - `anthropic`: [`anthropic::Anthropic`] (Messages), over SSE;
//! - `gemini`: [`gemini::Gemini`] (`streamGenerateContent`), over SSE;
//! - `ollama`: [`ollama::Ollama`] (native `/api/chat`), over newline-delimited
//!   JSON; its parser also reads `/api/generate` lines;
//! - `bedrock` (off by default): `bedrock::Bedrock` (Amazon Bedrock
//!   `ConverseStream`), SigV4-signed, over the binary AWS event stream.
//!
//! Cloud deployments of the same models: [`openai::AzureOpenAi`] (Azure
//! OpenAI deployments and the v1 API, with `api-key` or Entra ID tokens),
//! `Gemini::vertex` (Gemini on Vertex AI, see [`vertex`]), and Bedrock.
//! Short-lived tokens come from a [`auth::TokenProvider`], refreshed before
//! they expire.
//!
//! Each client is a `tower::Service<`[`ChatRequest`]`>` whose response is an
//! [`http::Response`] with a [`ProviderStream`] body: a
//! `Stream<Item = Result<`[`ChatChunk`]`, ProviderError>>` that is `Unpin` and
//! `Send`, so every streamgate layer can wrap it. All clients share the
//! request and chunk types, so backends of different providers can sit behind
//! one failover router.
//!
//! - HTTP error statuses become a [`ProviderError`](streamgate_core::ProviderError)
//!   with the status, every header, a bounded body excerpt and the provider's
//!   error type mapped to an [`ErrorClass`](streamgate_core::ErrorClass).
//! - Error events inside an HTTP 200 become an error item; a stream that ends
//!   without the provider's terminal marker yields a `Truncated` error item,
//!   never a clean end.
//! - The SSE decoder ([`sse`]) and the NDJSON decoder ([`ndjson`]) are
//!   incremental and bounded, and share one line splitter (limits, UTF-8
//!   checks). [`ProviderStream`] drives either through [`Framing`]: an
//!   [`EventParser`] reads SSE events, a [`LineParser`] NDJSON lines.
//! - With the `async-openai` feature, the `async_openai` module wraps the
//!   async-openai client's chat completion stream as a service of the same
//!   shape, for programs that keep that client and its request types.
//!
//! # Example
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use streamgate_providers::{openai::OpenAiChat, ChatRequest};
//! use tower::ServiceExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = OpenAiChat::builder()
//!     .base_url("http://127.0.0.1:8080/v1")
//!     .api_key("sk-...")
//!     .build()?;
//! let request = ChatRequest::new("gpt-4o-mini").with_user("Say hi");
//! let response = client.oneshot(request).await?;
//! let mut body = response.into_body();
//! while let Some(chunk) = body.next().await {
//!     print!("{}", chunk?.text);
//! }
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
// `ProviderError` (from core, 200+ bytes) is the error type of the whole
// contract; errors are the cold path, so it is returned unboxed like the
// body items that carry it.
#![allow(clippy::result_large_err)]

#[cfg(feature = "anthropic")]
pub mod anthropic;
#[cfg(feature = "async-openai")]
pub mod async_openai;
pub mod auth;
#[cfg(feature = "bedrock")]
pub mod bedrock;
mod chunk;
pub mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod errors;
#[cfg(feature = "gemini")]
pub mod gemini;
mod lines;
pub mod ndjson;
#[cfg(feature = "ollama")]
pub mod ollama;
#[cfg(feature = "openai")]
pub mod openai;
mod request;
pub mod sse;
mod stream;
#[cfg(feature = "gemini")]
pub mod vertex;

pub use chunk::{ChatChunk, ChunkKind, ToolCallDelta};
pub use client::{ClientBuilder, ConfigError, Endpoint};
pub use request::{ChatRequest, Message, Role};
pub use stream::{EventParser, Framing, LineParser, ProviderStream, Step};
