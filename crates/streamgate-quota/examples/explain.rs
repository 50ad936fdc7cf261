//! Says what streamgate makes of rate-limit headers: run it when a backend
//! was skipped and you want to know why.
//!
//! ```text
//! $ printf 'HTTP/1.1 429\nretry-after: 20\nx-ratelimit-remaining-tokens: 0\n' \
//!     | cargo run -q -p streamgate-quota --example explain
//! HTTP 429: skipped for 20 s: rate limited (HTTP 429 with retry-after 20 s) (from openai, retry-after headers)
//!   ...
//!
//! $ echo '[{"status":200,"headers":{"x-ratelimit-remaining-requests":"0","x-ratelimit-reset-requests":"1.5s"}}]' \
//!     | cargo run -q -p streamgate-quota --example explain -- --json
//! {"status":200,"remaining_requests":0,...,"state":"exhausted","exhausted_for_ms":1500,...}
//! ```
//!
//! Input on stdin: raw `Name: value` header lines (optionally a first
//! `HTTP/1.1 429` status line, and a body after a blank line; another status
//! line starts the next response), or with `--json` a JSON array of
//! `{"status", "headers", "body", "now"}` objects. Output: one explanation
//! per response, as text or (with `--json`) one JSON object per line.

use std::io::Read;

use streamgate_quota::explain::{explain_all, read_json, read_raw, Explanation, InputError};

/// One JSON object per line with `json`, else the text form, a blank line
/// between responses.
fn render(explanations: &[Explanation], json: bool) -> String {
    let mut out = String::new();
    for (i, e) in explanations.iter().enumerate() {
        if json {
            out.push_str(
                &serde_json::to_string(e).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}")),
            );
            out.push('\n');
        } else {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&e.to_string());
        }
    }
    out
}

fn run(input: &str, json: bool) -> Result<String, InputError> {
    let inputs = if json {
        read_json(input)?
    } else {
        read_raw(input)?
    };
    Ok(render(&explain_all(&inputs), json))
}

fn main() {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("explain: cannot read stdin: {e}");
        std::process::exit(2);
    }
    match run(&input, json) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("explain: {e}");
            std::process::exit(1);
        }
    }
}
