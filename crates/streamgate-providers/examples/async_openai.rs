//! Streams one answer through async-openai, with a first-content timeout
//! around it, keeping async-openai's own request types.
//!
//! With `OPENAI_API_KEY` and `OPENAI_BASE_URL` set (e.g.
//! `https://api.openai.com/v1`), it talks to that server; `OPENAI_MODEL`
//! picks the model (default `gpt-4o-mini`). Without them it starts the mock
//! provider on loopback and streams from it.
//!
//! `cargo run -p streamgate-providers --features async-openai --example async_openai`

use std::{io::Write, time::Duration};

use async_openai::{
    config::OpenAIConfig,
    types::chat::{
        ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
        CreateChatCompletionRequestArgs,
    },
};
use futures::StreamExt;
use streamgate_core::{BoxError, Chunk, Usage};
use streamgate_mock::{MockServer, Plan};
use streamgate_providers::async_openai::{AsyncOpenAiChat, AsyncOpenAiRequest};
use streamgate_timeout::FirstChunkTimeoutLayer;
use tower::{Layer, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let key = std::env::var("OPENAI_API_KEY").ok();
    let base = std::env::var("OPENAI_BASE_URL").ok();
    // Keeps the mock alive for the whole run when it is used.
    let mut mock = None;
    let (config, model) = match (key, base) {
        (Some(key), Some(base)) => {
            println!("streaming from {base}");
            let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            (
                OpenAIConfig::new().with_api_base(base).with_api_key(key),
                model,
            )
        }
        _ => {
            let server = MockServer::start_with_plan(Plan::new().with_output_tokens(12)).await?;
            let base = format!("{}/v1", server.url());
            println!("OPENAI_API_KEY / OPENAI_BASE_URL not set: streaming from a mock at {base}");
            mock = Some(server);
            (
                OpenAIConfig::new().with_api_base(base),
                "mock-model".to_owned(),
            )
        }
    };

    // The bridge sends through its own transport (no hidden retries, real
    // status and headers); `AsyncOpenAiChat::new(client)` wraps an existing
    // client instead.
    let client = FirstChunkTimeoutLayer::new(Duration::from_secs(30))?
        .layer(AsyncOpenAiChat::with_config(config)?);

    let request = CreateChatCompletionRequestArgs::default()
        .model(model)
        .max_completion_tokens(100_u32)
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("You are brief.")
                .build()?
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Name three rivers.")
                .build()?
                .into(),
        ])
        .build()?;
    let response = client.oneshot(AsyncOpenAiRequest::new(request)).await?;
    let mut body = response.into_body();
    let mut usage = None;
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if chunk.is_content() {
            write!(stdout, "{}", chunk.text)?;
            stdout.flush()?;
        }
        Usage::merge_option(&mut usage, chunk.usage());
    }
    println!();
    if let Some(usage) = usage {
        println!(
            "usage: {} input, {} output tokens",
            usage.input_tokens, usage.output_tokens
        );
    }
    drop(mock);
    Ok(())
}
