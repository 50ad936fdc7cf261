//! Helpers shared by the HTTP tests: a client, requests and a small SSE parser.

use std::time::Duration;

use serde_json::{json, Value};
use streamgate_mock::{MockServer, Provider};

/// Generous upper bound for things that take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn openai_body(include_usage: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": {"include_usage": include_usage},
        "messages": [{"role": "user", "content": "Say something."}],
    })
}

pub fn anthropic_body() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "stream": true,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Say something."}],
    })
}

pub fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Say something."}]}]})
}

pub const GEMINI_MODEL: &str = "gemini-2.0-flash";

pub const OLLAMA_MODEL: &str = "llama3.2";

pub fn ollama_body() -> Value {
    json!({
        "model": OLLAMA_MODEL,
        "stream": true,
        "messages": [{"role": "user", "content": "Say something."}],
        "options": {"num_predict": 256},
    })
}

/// Splits an NDJSON body into its JSON lines, checking that every line is terminated.
pub fn parse_ndjson(body: &str) -> Vec<Value> {
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "unterminated line in {body:?}"
    );
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Sends the usual request for `provider`.
pub async fn send(server: &MockServer, provider: Provider) -> reqwest::Response {
    let (model, body) = match provider {
        Provider::OpenAi => ("gpt-4o-mini", openai_body(true)),
        Provider::Anthropic => ("claude-sonnet-4-5", anthropic_body()),
        Provider::Ollama => (OLLAMA_MODEL, ollama_body()),
        _ => (GEMINI_MODEL, gemini_body()),
    };
    client()
        .post(server.endpoint(provider, model))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// One SSE event: its `event:` name (if any), its `data:` and whether it is a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
    pub comment: bool,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// Splits a body into events on `separator` (`"\n\n"` or `"\r\n\r\n"`), checking that
/// nothing follows the last separator.
pub fn parse_sse(body: &str, separator: &str) -> Vec<Event> {
    let line_end = if separator == "\r\n\r\n" {
        "\r\n"
    } else {
        "\n"
    };
    assert!(
        body.is_empty() || body.ends_with(separator),
        "unterminated event in {body:?}"
    );
    body.split(separator)
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut event = Event {
                name: None,
                data: String::new(),
                comment: false,
            };
            for line in block.split(line_end) {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                } else if line.starts_with(':') {
                    event.comment = true;
                } else {
                    panic!("unexpected line {line:?}");
                }
            }
            event
        })
        .collect()
}

/// Reads the response until `count` content chunks have arrived, counting occurrences
/// of `marker` in the bytes received so far.
pub async fn read_until(response: &mut reqwest::Response, marker: &str, count: usize) -> String {
    let mut seen = String::new();
    while seen.matches(marker).count() < count {
        let chunk = tokio::time::timeout(PATIENCE, response.chunk())
            .await
            .expect("chunk in time")
            .expect("body readable")
            .expect("body not over");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}
