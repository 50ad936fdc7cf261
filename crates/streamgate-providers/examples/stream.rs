//! Streams one answer from an OpenAI-compatible endpoint.
//!
//! With `OPENAI_API_KEY` and `OPENAI_BASE_URL` set (e.g.
//! `https://api.openai.com/v1`), it talks to that server; `OPENAI_MODEL`
//! picks the model (default `gpt-4o-mini`). Without them it starts the mock
//! provider on loopback and streams from it.
//!
//! `cargo run -p streamgate-providers --example stream`

use std::io::Write;

use futures::StreamExt;
use streamgate_core::{BoxError, Chunk, Usage};
use streamgate_mock::{MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let key = std::env::var("OPENAI_API_KEY").ok();
    let base = std::env::var("OPENAI_BASE_URL").ok();
    // Keeps the mock alive for the whole run when it is used.
    let mut mock = None;
    let (client, model) = match (key, base) {
        (Some(key), Some(base)) => {
            println!("streaming from {base}");
            let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            (
                OpenAiChat::builder().base_url(base).api_key(key).build()?,
                model,
            )
        }
        _ => {
            let server = MockServer::start_with_plan(Plan::new().with_output_tokens(12)).await?;
            let base = format!("{}/v1", server.url());
            println!("OPENAI_API_KEY / OPENAI_BASE_URL not set: streaming from a mock at {base}");
            mock = Some(server);
            (
                OpenAiChat::builder().base_url(base).build()?,
                "mock-model".to_owned(),
            )
        }
    };

    let request = ChatRequest::new(model)
        .with_system("You are brief.")
        .with_user("Name three rivers.")
        .with_max_tokens(100);
    let response = client.oneshot(request).await?;
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
