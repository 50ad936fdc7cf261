//! The stack around real providers, from environment variables, with
//! failover between the ones you configure (in this order):
//!
//! | provider | key | optional |
//! |---|---|---|
//! | OpenAI or any OpenAI-compatible server | `OPENAI_API_KEY` | `OPENAI_BASE_URL` (default `https://api.openai.com/v1`), `OPENAI_MODEL` (default `gpt-4o-mini`) |
//! | Anthropic | `ANTHROPIC_API_KEY` | `ANTHROPIC_MODEL` (default `claude-haiku-4-5`) |
//! | Gemini | `GEMINI_API_KEY` | `GEMINI_MODEL` (default `gemini-2.5-flash`) |
//!
//! With none of them set it streams from a local mock provider instead, and
//! says so.
//!
//! ```text
//! OPENAI_API_KEY=sk-... cargo run --example real_provider -- "Name three rivers."
//! ```

use std::{env, io::Write, sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate::mock::{MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{
    anthropic::Anthropic, gemini::Gemini, openai::OpenAiChat, ChatChunk, ChatRequest,
};
use tower::ServiceExt;

/// Gives a request this provider's model name.
fn model(name: String) -> impl Fn(ChatRequest) -> ChatRequest + Send + Sync + 'static {
    move |mut request: ChatRequest| {
        request.model.clone_from(&name);
        request
    }
}

/// The same layers for every provider: a generous first-content deadline
/// (real models can think for a while), an idle deadline, and the defaults
/// (quota gate, circuit breaker).
fn stack<S>(name: &str, client: S) -> Backend<S, ChatRequest> {
    Backend::new(name, client)
        .first_content_timeout(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(30))
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let prompt = env::args()
        .nth(1)
        .unwrap_or_else(|| "Name three rivers.".into());
    let tracker = Arc::new(PerformanceTracker::new());
    let mut backends = Backends::<ChatRequest, ChatChunk>::new().metrics(tracker.clone());
    let mut names = Vec::new();

    if let Some(key) = var("OPENAI_API_KEY") {
        let mut builder = OpenAiChat::builder().api_key(key);
        if let Some(base) = var("OPENAI_BASE_URL") {
            builder = builder.base_url(base);
        }
        let name = var("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".into());
        backends = backends.backend(stack("openai", builder.build()?).map_request(model(name)));
        names.push("openai");
    }
    if let Some(key) = var("ANTHROPIC_API_KEY") {
        let client = Anthropic::builder().api_key(key).build()?;
        let name = var("ANTHROPIC_MODEL").unwrap_or_else(|| "claude-haiku-4-5".into());
        backends = backends.backend(stack("anthropic", client).map_request(model(name)));
        names.push("anthropic");
    }
    if let Some(key) = var("GEMINI_API_KEY") {
        let client = Gemini::builder().api_key(key).build()?;
        let name = var("GEMINI_MODEL").unwrap_or_else(|| "gemini-2.5-flash".into());
        backends = backends.backend(stack("gemini", client).map_request(model(name)));
        names.push("gemini");
    }

    // Kept alive until the end when used.
    let mut mock = None;
    if names.is_empty() {
        let server = MockServer::start_with_plan(
            Plan::new()
                .with_output_tokens(12)
                .with_chunk_delay(Duration::from_millis(20)),
        )
        .await?;
        println!(
            "No OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY set: \
             streaming from a local mock provider at {} instead.\n",
            server.url()
        );
        let client = OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()?;
        backends = backends.backend(stack("mock", client));
        mock = Some(server);
    } else {
        println!("Backends, in failover order: {}\n", names.join(", "));
    }

    let router = backends.build()?;
    let request = ChatRequest::new("chat")
        .with_system("You are brief.")
        .with_user(prompt)
        .with_max_tokens(300);
    let response = router.oneshot(request).await?;
    if let Some(report) = response.extensions().get::<FailoverReport>() {
        for skipped in &report.skipped {
            println!("(skipped {skipped})");
        }
        println!("[{}]", report.served_by);
    }
    let mut body = response.into_body();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        write!(stdout, "{}", chunk?.text)?;
        stdout.flush()?;
    }
    println!("\n\n{}", tracker.snapshot());
    drop(mock);
    Ok(())
}
