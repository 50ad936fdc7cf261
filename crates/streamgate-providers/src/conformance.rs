//! Runs every adapter's parser over recorded wire samples and compares what
//! it finds with each sample's `NAME.expected.json` sidecar.
//!
//! A sample is `NAME.sse` (a stream), `NAME.ndjson` (a newline-delimited JSON
//! stream) or `NAME.json` (an HTTP error body). The sidecar says which
//! provider recorded it and what a correct parser must find: for streams the
//! event count, the index of the first data and first content event, the
//! event carrying the final usage and the usage itself, the terminal marker's
//! index, and the error (index and type); for error bodies the status, the
//! provider's error type, whether it is retryable and any retry delay.
//!
//! NDJSON samples are counted by non-blank line. Bedrock samples are its
//! events decoded to one `{"<eventType>": payload}` object per line (the
//! binary framing is not recorded); they go through the same event mapping
//! as the live client ([`ConverseParser::parse_json_event`]), and the event
//! that sets [`ConverseParser::stopped`] is the terminal marker. Samples of
//! providers without an adapter here are listed as unsupported, never as
//! passed.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use serde_json::Value;
use streamgate_core::{Chunk, ProviderError, Usage};

use crate::{
    anthropic::MessagesParser,
    bedrock::ConverseParser,
    chunk::{ChatChunk, ChunkKind},
    errors::http_error,
    gemini::GenerateParser,
    ndjson::NdjsonDecoder,
    ollama::OllamaParser,
    openai::{ChatParser, ResponsesParser},
    sse::SseDecoder,
    stream::{EventParser, LineParser, Step},
};

/// What happened to one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Everything the sidecar states was found.
    Pass,
    /// The mismatches, one per differing field.
    Fail(Vec<String>),
    /// No adapter for this sample's provider or format.
    Unsupported(String),
}

/// One sample's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleResult {
    /// The sample's file name.
    pub name: String,
    /// What happened.
    pub outcome: SampleOutcome,
}

/// The result of a run: one line per sample when displayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every sample, in file-name order.
    pub samples: Vec<SampleResult>,
}

impl Report {
    /// True when no sample failed (unsupported samples do not fail, and are
    /// not counted as passed either).
    pub fn passed(&self) -> bool {
        !self
            .samples
            .iter()
            .any(|s| matches!(s.outcome, SampleOutcome::Fail(_)))
    }

    fn count(&self, f: impl Fn(&SampleOutcome) -> bool) -> usize {
        self.samples.iter().filter(|s| f(&s.outcome)).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for sample in &self.samples {
            match &sample.outcome {
                SampleOutcome::Pass => writeln!(f, "PASS        {}", sample.name)?,
                SampleOutcome::Fail(why) => {
                    writeln!(f, "FAIL        {}: {}", sample.name, why.join("; "))?
                }
                SampleOutcome::Unsupported(why) => {
                    writeln!(f, "UNSUPPORTED {}: {why}", sample.name)?
                }
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} unsupported",
            self.count(|o| *o == SampleOutcome::Pass),
            self.count(|o| matches!(o, SampleOutcome::Fail(_))),
            self.count(|o| matches!(o, SampleOutcome::Unsupported(_))),
        )
    }
}

/// Checks every sample in `dir` against its sidecar.
///
/// Fails only when the directory or a file cannot be read; a sample without
/// a readable sidecar is a failed sample.
pub fn run(dir: &Path) -> std::io::Result<Report> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut report = Report::default();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if name.ends_with(".expected.json") {
            continue;
        }
        let Some(stem) = [".sse", ".ndjson", ".json"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
        else {
            continue;
        };
        let sidecar_path = dir.join(format!("{stem}.expected.json"));
        let outcome = match fs::read(&sidecar_path) {
            Err(_) => SampleOutcome::Fail(vec!["no readable .expected.json sidecar".into()]),
            Ok(sidecar) => match serde_json::from_slice::<Value>(&sidecar) {
                Err(e) => SampleOutcome::Fail(vec![format!("sidecar is not json: {e}")]),
                Ok(expected) => check(&name, &fs::read(&path)?, &expected),
            },
        };
        report.samples.push(SampleResult { name, outcome });
    }
    Ok(report)
}

/// Which parser reads a sample.
enum Adapter {
    Chat,
    AzureChat,
    Responses,
    Messages,
    Gemini,
    Ollama,
    Bedrock,
}

fn adapter_for(name: &str, expected: &Value) -> Result<Adapter, String> {
    let provider = expected["provider"].as_str().unwrap_or_default();
    let api = expected["api"].as_str().unwrap_or_default();
    match provider {
        "openai" | "azure.ai.openai"
            if name.contains("responses") || api.starts_with("responses") =>
        {
            Ok(Adapter::Responses)
        }
        "openai" => Ok(Adapter::Chat),
        "azure.ai.openai" => Ok(Adapter::AzureChat),
        "anthropic" => Ok(Adapter::Messages),
        "gcp.gemini" => Ok(Adapter::Gemini),
        "ollama" => Ok(Adapter::Ollama),
        "aws.bedrock" => Ok(Adapter::Bedrock),
        other => Err(format!("no adapter for provider {other:?}")),
    }
}

fn check(name: &str, sample: &[u8], expected: &Value) -> SampleOutcome {
    let format = expected["format"].as_str().unwrap_or_default();
    if format.starts_with("json") {
        return match adapter_for(name, expected) {
            Ok(_) => outcome(check_error_body(sample, expected)),
            Err(why) => SampleOutcome::Unsupported(why),
        };
    }
    let adapter = match adapter_for(name, expected) {
        Ok(adapter) => adapter,
        Err(why) => return SampleOutcome::Unsupported(why),
    };
    let found = match (format, adapter) {
        ("sse", Adapter::Chat) => scan(ChatParser::default(), sample),
        ("sse", Adapter::AzureChat) => scan(ChatParser::azure(), sample),
        ("sse", Adapter::Responses) => scan(ResponsesParser::default(), sample),
        ("sse", Adapter::Messages) => scan(MessagesParser::default(), sample),
        ("sse", Adapter::Gemini) => scan(GenerateParser::default(), sample),
        ("ndjson", Adapter::Ollama) => scan_lines(OllamaParser::default(), sample),
        ("ndjson", Adapter::Bedrock) => scan_lines(DecodedBedrock::default(), sample),
        _ => return SampleOutcome::Unsupported(format!("no adapter for format {format:?}")),
    };
    match found {
        Ok(found) => outcome(compare_stream(&found, expected)),
        Err(why) => SampleOutcome::Fail(vec![why]),
    }
}

fn outcome(mismatches: Vec<String>) -> SampleOutcome {
    if mismatches.is_empty() {
        SampleOutcome::Pass
    } else {
        SampleOutcome::Fail(mismatches)
    }
}

fn check_error_body(body: &[u8], expected: &Value) -> Vec<String> {
    let mut mismatches = Vec::new();
    let Some(status) = expected["http_status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
    else {
        return vec!["sidecar has no valid http_status".into()];
    };
    let error = http_error(status, http::HeaderMap::new(), body, &[]);
    if let Some(kind) = expected["error_type"].as_str() {
        if error.code() != Some(kind) {
            mismatches.push(format!("error type {:?}, expected {kind:?}", error.code()));
        }
    }
    if let Some(retryable) = expected["retryable"].as_bool() {
        if error.class().is_retryable() != retryable {
            mismatches.push(format!(
                "class {} (retryable {}), expected retryable {retryable}",
                error.class(),
                error.class().is_retryable()
            ));
        }
    }
    if let Some(seconds) = expected["retry_delay_seconds"].as_f64() {
        let want = streamgate_core::time::duration_from_secs_f64(seconds);
        if error.retry_after() != want {
            mismatches.push(format!(
                "retry after {:?}, expected {want:?}",
                error.retry_after()
            ));
        }
    }
    mismatches
}

/// What a parser found in a stream sample.
#[derive(Debug, Default)]
struct Found {
    event_count: u64,
    first_data: Option<u64>,
    first_content: Option<u64>,
    usage_event: Option<u64>,
    usage: Option<Usage>,
    terminal: Option<u64>,
    error: Option<(u64, ProviderError)>,
    last_unterminated: bool,
    model: Option<String>,
}

/// Events after the first error are still parsed, only to find a terminal
/// marker (a stream that reports `error` and then `response.failed`).
fn scan<P: EventParser<Chunk = ChatChunk>>(mut parser: P, sample: &[u8]) -> Result<Found, String> {
    let mut decoder = SseDecoder::new();
    let mut found = Found::default();
    let mut input = sample;
    let mut index = 0u64;
    loop {
        let (step, name_is_failed) = match decoder.decode(&mut input) {
            Ok(Some(event)) => (parser.parse(&event), event.event == Some("response.failed")),
            Ok(None) => match decoder.finish() {
                Ok(Some(event)) => {
                    found.last_unterminated = true;
                    (parser.parse(&event), event.event == Some("response.failed"))
                }
                Ok(None) => break,
                Err(e) => return Err(format!("decoder failed at end: {e}")),
            },
            Err(e) => return Err(format!("decoder failed at event {index}: {e}")),
        };
        record(&mut found, index, step, name_is_failed);
        index += 1;
    }
    Ok(found)
}

/// [`scan`] for NDJSON: one event per non-blank line.
fn scan_lines<P: LineParser<Chunk = ChatChunk>>(
    mut parser: P,
    sample: &[u8],
) -> Result<Found, String> {
    let mut decoder = NdjsonDecoder::new();
    let mut found = Found::default();
    let mut input = sample;
    let mut index = 0u64;
    loop {
        let step = match decoder.decode(&mut input) {
            Ok(Some(line)) => parser.parse_line(line),
            Ok(None) => match decoder.finish() {
                Ok(Some(line)) => {
                    found.last_unterminated = true;
                    parser.parse_line(line)
                }
                Ok(None) => break,
                Err(e) => return Err(format!("decoder failed at end: {e}")),
            },
            Err(e) => return Err(format!("decoder failed at line {index}: {e}")),
        };
        record(&mut found, index, step, false);
        index += 1;
    }
    Ok(found)
}

/// Bedrock's decoded events as lines: the live mapping, with the event at
/// which the parser saw `messageStop` reported as the terminal marker (the
/// live stream reads on to the `metadata` after it).
#[derive(Default)]
struct DecodedBedrock(ConverseParser);

impl LineParser for DecodedBedrock {
    type Chunk = ChatChunk;

    fn parse_line(&mut self, line: &str) -> Result<Step<ChatChunk>, ProviderError> {
        let before = self.0.stopped();
        match self.0.parse_json_event(line)? {
            Step::Chunk(chunk) if !before && self.0.stopped() => Ok(Step::Done(Some(chunk))),
            step => Ok(step),
        }
    }

    fn truncated(&mut self) -> ProviderError {
        self.0.truncated()
    }
}

/// What event `index` contributed.
fn record(
    found: &mut Found,
    index: u64,
    step: Result<Step<ChatChunk>, ProviderError>,
    name_is_failed: bool,
) {
    found.event_count += 1;
    found.first_data.get_or_insert(index);
    let errored = found.error.is_some();
    match step {
        Ok(Step::Skip) => {}
        Ok(Step::Chunk(chunk)) if !errored => observe(found, index, &chunk),
        Ok(Step::Done(chunk)) => {
            found.terminal.get_or_insert(index);
            if let (Some(chunk), false) = (chunk, errored) {
                observe(found, index, &chunk);
            }
        }
        Ok(Step::Chunk(_)) => {}
        Err(error) => {
            if errored && name_is_failed {
                found.terminal.get_or_insert(index);
            }
            if !errored {
                found.error = Some((index, error));
            }
        }
    }
}

fn observe(found: &mut Found, index: u64, chunk: &ChatChunk) {
    if chunk.is_content() {
        found.first_content.get_or_insert(index);
    }
    if let Some(usage) = chunk.usage() {
        Usage::merge_option(&mut found.usage, Some(usage));
        // A start event's usage (Anthropic `message_start`) is the opening
        // report, not the final one.
        if chunk.kind != ChunkKind::Start {
            found.usage_event = Some(index);
        }
    }
    if found.model.is_none() {
        found.model.clone_from(&chunk.model);
    }
}

fn compare_stream(found: &Found, expected: &Value) -> Vec<String> {
    let mut m = Vec::new();
    let mut index = |field: &str, got: Option<u64>| {
        let want = expected[field].as_u64();
        if expected.get(field).is_some() && got != want {
            m.push(format!("{field} {got:?}, expected {want:?}"));
        }
    };
    index("first_data_event_index", found.first_data);
    index("first_content_event_index", found.first_content);
    index("usage_event_index", found.usage_event);
    if let Some(count) = expected["event_count"].as_u64() {
        if found.event_count != count {
            m.push(format!(
                "event_count {}, expected {count}",
                found.event_count
            ));
        }
    }
    let want_terminal = expected["terminal"]["event_index"].as_u64();
    if found.terminal != want_terminal {
        m.push(format!(
            "terminal {:?}, expected {want_terminal:?}",
            found.terminal
        ));
    }
    if let Some(unterminated) = expected["last_event_unterminated"].as_bool() {
        if found.last_unterminated != unterminated {
            m.push(format!(
                "last event unterminated {}, expected {unterminated}",
                found.last_unterminated
            ));
        }
    }
    compare_usage(found.usage, &expected["expected_usage"], &mut m);
    // A stream without error and without terminal would end in a truncation error.
    let ends_in_error = found.error.is_some() || found.terminal.is_none();
    if let Some(want) = expected["ends_in_error"].as_bool() {
        if ends_in_error != want {
            m.push(format!("ends in error {ends_in_error}, expected {want}"));
        }
    }
    let want_error = &expected["error"];
    match (&found.error, want_error.is_object()) {
        (Some((at, error)), true) => {
            if let Some(want) = want_error["event_index"].as_u64() {
                if *at != want {
                    m.push(format!("error at event {at}, expected {want}"));
                }
            }
            let want_code = want_error["code"].as_str().or(want_error["type"].as_str());
            if want_code.is_some() && error.code() != want_code {
                m.push(format!(
                    "error code {:?}, expected {want_code:?}",
                    error.code()
                ));
            }
            if let Some(message) = want_error["message"].as_str() {
                if error.message() != message {
                    m.push(format!(
                        "error message {:?}, expected {message:?}",
                        error.message()
                    ));
                }
            }
        }
        (Some((at, error)), false) => m.push(format!("unexpected error at event {at}: {error}")),
        (None, true) => m.push("expected an error, found none".into()),
        (None, false) => {}
    }
    if let Some(model) = expected["response_model"].as_str() {
        if found.model.as_deref() != Some(model) {
            m.push(format!("model {:?}, expected {model:?}", found.model));
        }
    }
    m
}

fn compare_usage(got: Option<Usage>, want: &Value, m: &mut Vec<String>) {
    if !want.is_object() {
        if got.is_some() {
            m.push(format!("usage {got:?}, expected none"));
        }
        return;
    }
    let Some(got) = got else {
        m.push("no usage found".into());
        return;
    };
    let fields = [
        ("input_tokens", got.input_tokens),
        ("output_tokens", got.output_tokens),
        ("total_tokens", got.total()),
        ("cache_read_input_tokens", got.cached_input_tokens),
        ("reasoning_output_tokens", got.reasoning_tokens),
    ];
    for (field, value) in fields {
        if let Some(want) = want[field].as_u64() {
            if value != want {
                m.push(format!("usage {field} {value}, expected {want}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "streamgate-conformance-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn own_samples_pass_mismatches_fail_and_unknown_providers_are_unsupported() {
        let dir = temp_dir("own");
        fs::write(
            dir.join("chat.sse"),
            "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        )
        .unwrap();
        let good = serde_json::json!({
            "provider": "openai", "format": "sse", "event_count": 4,
            "first_data_event_index": 0, "first_content_event_index": 1, "usage_event_index": 2,
            "expected_usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
            "terminal": {"kind": "data: [DONE]", "event_index": 3},
            "ends_in_error": false, "error": null, "last_event_unterminated": false, "response_model": "m"
        });
        fs::write(dir.join("chat.expected.json"), good.to_string()).unwrap();
        let mut bad = good.clone();
        bad["first_content_event_index"] = serde_json::json!(0);
        fs::copy(dir.join("chat.sse"), dir.join("chat-bad.sse")).unwrap();
        fs::write(dir.join("chat-bad.expected.json"), bad.to_string()).unwrap();
        fs::write(dir.join("other.ndjson"), "{}\n").unwrap();
        fs::write(
            dir.join("other.expected.json"),
            serde_json::json!({"provider": "example.unknown", "format": "ndjson"}).to_string(),
        )
        .unwrap();
        fs::write(
            dir.join("local.ndjson"),
            "{\"model\":\"m\",\"response\":\"x\",\"done\":false}\n\n{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}",
        )
        .unwrap();
        fs::write(
            dir.join("local.expected.json"),
            serde_json::json!({
                "provider": "ollama", "format": "ndjson", "event_count": 2,
                "first_data_event_index": 0, "first_content_event_index": 0, "usage_event_index": 1,
                "expected_usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
                "terminal": {"kind": "done:true", "event_index": 1},
                "ends_in_error": false, "error": null, "last_event_unterminated": true, "response_model": "m"
            })
            .to_string(),
        )
        .unwrap();
        fs::write(
            dir.join("converse.ndjson"),
            concat!(
                "{\"messageStart\":{\"role\":\"assistant\"}}\n",
                "{\"contentBlockDelta\":{\"contentBlockIndex\":0,\"delta\":{\"text\":\"x\"}}}\n",
                "{\"messageStop\":{\"stopReason\":\"end_turn\"}}\n",
                "{\"metadata\":{\"usage\":{\"inputTokens\":3,\"outputTokens\":1,\"cacheReadInputTokens\":2}}}\n",
            ),
        )
        .unwrap();
        fs::write(
            dir.join("converse.expected.json"),
            serde_json::json!({
                "provider": "aws.bedrock", "format": "ndjson", "event_count": 4,
                "first_data_event_index": 0, "first_content_event_index": 1, "usage_event_index": 3,
                "expected_usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "cache_read_input_tokens": 2},
                "terminal": {"kind": "messageStop", "event_index": 2},
                "ends_in_error": false, "error": null, "last_event_unterminated": false
            })
            .to_string(),
        )
        .unwrap();
        fs::write(
            dir.join("quota.json"),
            r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota","message":"no"}}"#,
        )
        .unwrap();
        fs::write(
            dir.join("quota.expected.json"),
            serde_json::json!({"provider": "openai", "format": "json (HTTP error response body)", "http_status": 429, "error_type": "insufficient_quota", "retryable": false}).to_string(),
        )
        .unwrap();

        let report = run(&dir).unwrap();
        let text = report.to_string();
        assert!(!report.passed(), "{text}");
        assert!(text.contains("PASS        chat.sse"), "{text}");
        assert!(
            text.contains(
                "FAIL        chat-bad.sse: first_content_event_index Some(1), expected Some(0)"
            ),
            "{text}"
        );
        assert!(text.contains("UNSUPPORTED other.ndjson"), "{text}");
        assert!(text.contains("PASS        local.ndjson"), "{text}");
        assert!(text.contains("PASS        quota.json"), "{text}");
        assert!(text.contains("PASS        converse.ndjson"), "{text}");
        assert!(
            text.ends_with("4 passed, 1 failed, 1 unsupported"),
            "{text}"
        );

        fs::remove_file(dir.join("chat-bad.sse")).unwrap();
        assert!(run(&dir).unwrap().passed());
        let _ = fs::remove_dir_all(&dir);
    }
}
