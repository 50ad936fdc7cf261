//! Property tests of every parser a provider's bytes reach: the SSE and
//! NDJSON decoders, each adapter's chunk parser and the error-body parsers.
//! They never panic, give the same result however the bytes are split into
//! network reads, and round-trip where the format allows.
//!
//! The case budget is fixed (`CASES` per property) so CI time stays flat,
//! and no failure-persistence files are written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm};
use serde_json::{json, Value};
use streamgate_core::ProviderError;
use streamgate_providers::{
    anthropic::MessagesParser,
    errors::{error_details, http_error, in_band_error},
    gemini::GenerateParser,
    ndjson::NdjsonDecoder,
    ollama::OllamaParser,
    openai::{ChatParser, ResponsesParser},
    sse::SseDecoder,
    ChatChunk, EventParser, Framing, LineParser, ProviderStream,
};

/// Cases per property: a few thousand, a few seconds of CPU in all.
const CASES: u32 = 2_000;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        // ChaCha is slow unoptimised: XorShift keeps a debug run in seconds.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    }
}

/// An event's type, data, last id and retry, owned.
type OwnedEvent = (Option<String>, String, Option<String>, Option<Duration>);

/// What an SSE decoder made of a whole input: owned events, then the error
/// that stopped it, if any.
#[derive(Debug, PartialEq)]
struct SseOutcome {
    events: Vec<OwnedEvent>,
    error: Option<String>,
}

fn decode_sse(decoder: &mut SseDecoder, pieces: &[&[u8]]) -> SseOutcome {
    let mut outcome = SseOutcome {
        events: Vec::new(),
        error: None,
    };
    for piece in pieces {
        let mut input = *piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(e)) => outcome.events.push((
                    e.event.map(str::to_owned),
                    e.data.to_owned(),
                    e.id.map(str::to_owned),
                    e.retry,
                )),
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error.to_string());
                    return outcome;
                }
            }
        }
    }
    match decoder.finish() {
        Ok(Some(e)) => outcome.events.push((
            e.event.map(str::to_owned),
            e.data.to_owned(),
            e.id.map(str::to_owned),
            e.retry,
        )),
        Ok(None) => {}
        Err(error) => outcome.error = Some(error.to_string()),
    }
    outcome
}

#[derive(Debug, PartialEq)]
struct LineOutcome {
    lines: Vec<String>,
    error: Option<String>,
}

fn decode_ndjson(decoder: &mut NdjsonDecoder, pieces: &[&[u8]]) -> LineOutcome {
    let mut outcome = LineOutcome {
        lines: Vec::new(),
        error: None,
    };
    for piece in pieces {
        let mut input = *piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(line)) => outcome.lines.push(line.to_owned()),
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error.to_string());
                    return outcome;
                }
            }
        }
    }
    match decoder.finish() {
        Ok(Some(line)) => outcome.lines.push(line.to_owned()),
        Ok(None) => {}
        Err(error) => outcome.error = Some(error.to_string()),
    }
    outcome
}

/// `input` cut at the (sorted, deduplicated) positions in `cuts`.
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces.push(&input[start..]);
    pieces
}

/// A chunk or the class and message of the error, comparable across runs.
type Item = Result<ChatChunk, (streamgate_core::ErrorClass, String)>;

fn run_stream<P, D>(parser: P, decoder: D, pieces: &[&[u8]]) -> Vec<Item>
where
    P: Unpin + Send + 'static,
    D: Framing<P, Chunk = ChatChunk> + Unpin + Send + 'static,
{
    let owned: Vec<Result<Bytes, std::io::Error>> = pieces
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    let stream = ProviderStream::with_decoder(parser, futures::stream::iter(owned), decoder);
    stream
        .map(|item| item.map_err(|e: ProviderError| (e.class(), e.to_string())))
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready")
}

fn sse_items<P>(make: impl Fn() -> P, input: &[u8], cuts: &[usize]) -> (Vec<Item>, Vec<Item>)
where
    P: EventParser<Chunk = ChatChunk> + Unpin + Send + 'static,
{
    let whole = run_stream(make(), SseDecoder::with_limits(512, 2048), &[input]);
    let split = run_stream(
        make(),
        SseDecoder::with_limits(512, 2048),
        &split(input, cuts),
    );
    (whole, split)
}

fn line_items<P>(make: impl Fn() -> P, input: &[u8], cuts: &[usize]) -> (Vec<Item>, Vec<Item>)
where
    P: LineParser<Chunk = ChatChunk> + Unpin + Send + 'static,
{
    let whole = run_stream(make(), NdjsonDecoder::with_limit(1024), &[input]);
    let split = run_stream(make(), NdjsonDecoder::with_limit(1024), &split(input, cuts));
    (whole, split)
}

/// Bytes that look like a stream often enough to reach the parsers: SSE
/// field names, separators and JSON punctuation, mixed with anything.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"".to_vec()),
        Just(b"\"}".to_vec()),
        (1u32..26).prop_map(|n| "9".repeat(n as usize).into_bytes()),
        any::<u8>().prop_map(|b| vec![b]),
        text(8).prop_map(String::into_bytes),
    ];
    prop::collection::vec(token, 0..64).prop_map(|parts| parts.concat())
}

/// JSON values built from the keys and values providers use, so parsers see
/// nearly valid chunks, errors and usage with hostile numbers.
fn provider_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "type",
        "object",
        "id",
        "model",
        "choices",
        "delta",
        "content",
        "role",
        "text",
        "index",
        "finish_reason",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "prompt_tokens_details",
        "cached_tokens",
        "completion_tokens_details",
        "reasoning_tokens",
        "tool_calls",
        "function",
        "arguments",
        "name",
        "error",
        "message",
        "code",
        "status",
        "details",
        "retryDelay",
        "candidates",
        "parts",
        "thought",
        "usageMetadata",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "cachedContentTokenCount",
        "finishReason",
        "promptFeedback",
        "blockReason",
        "content_block",
        "partial_json",
        "stop_reason",
        "thinking",
        "done",
        "done_reason",
        "prompt_eval_count",
        "eval_count",
        "response",
        "output_index",
        "item",
        "sequence_number",
    ]);
    let word = prop::sample::select(vec![
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "tool_use",
        "text",
        "error",
        "overloaded_error",
        "response.output_text.delta",
        "response.completed",
        "response.failed",
        "response.created",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "function_call",
        "stop",
        "STOP",
        "SAFETY",
        "RESOURCE_EXHAUSTED",
        "assistant",
        "1e400s",
        "99999999999999999999999s",
        "-5s",
        "0.5s",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        word.prop_map(|w| json!(w)),
        text(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A stream of `data:` events (with an `event:` line for the Anthropic and
/// Responses shapes) carrying provider-like JSON.
fn json_sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let event = (
        prop::option::of(prop::sample::select(vec![
            "message_start",
            "content_block_delta",
            "message_delta",
            "message_stop",
            "error",
            "ping",
            "response.output_text.delta",
            "response.completed",
            "response.failed",
        ])),
        provider_json(),
        prop::bool::weighted(0.05),
    );
    (prop::collection::vec(event, 0..8), any::<bool>()).prop_map(|(events, done)| {
        let mut out = String::new();
        for (name, value, raw_done) in events {
            if let Some(name) = name {
                out.push_str(&format!("event: {name}\n"));
            }
            if raw_done {
                out.push_str("data: [DONE]\n\n");
            } else {
                out.push_str(&format!("data: {value}\n\n"));
            }
        }
        if done {
            out.push_str("data: [DONE]\n\n");
        }
        out.into_bytes()
    })
}

fn json_lines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(provider_json(), 0..8).prop_map(|values| {
        values
            .iter()
            .map(|v| format!("{v}\n"))
            .collect::<String>()
            .into_bytes()
    })
}

/// Any text of up to `max` characters (cheaper to generate than a regex).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..6)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sse_decoder_gives_the_same_result_for_any_split(
        input in prop_oneof![sse_bytes(), prop::collection::vec(any::<u8>(), 0..256)],
        cuts in cuts(),
        small in any::<bool>(),
    ) {
        let make = || if small { SseDecoder::with_limits(16, 32) } else { SseDecoder::new() };
        let whole = decode_sse(&mut make(), &[&input]);
        let pieces = split(&input, &cuts);
        prop_assert_eq!(decode_sse(&mut make(), &pieces), whole);
    }

    #[test]
    fn sse_events_round_trip(
        events in prop::collection::vec(
            (
                prop::option::of("[a-z.]{1,12}"),
                prop::collection::vec("[^\r\n]{0,16}", 1..4),
                prop::option::of("[a-zA-Z0-9]{1,8}"),
            ),
            0..6,
        ),
        cuts in cuts(),
    ) {
        let mut text = String::new();
        for (event, data, id) in &events {
            if let Some(event) = event {
                text.push_str(&format!("event: {event}\n"));
            }
            if let Some(id) = id {
                text.push_str(&format!("id: {id}\n"));
            }
            for line in data {
                text.push_str(&format!("data: {line}\n"));
            }
            text.push('\n');
        }
        let decoded = decode_sse(&mut SseDecoder::new(), &split(text.as_bytes(), &cuts));
        prop_assert_eq!(decoded.error, None);
        prop_assert_eq!(decoded.events.len(), events.len());
        let mut last_id = None;
        for ((event, data, id), got) in events.iter().zip(&decoded.events) {
            if id.is_some() {
                last_id = id.clone();
            }
            prop_assert_eq!(&got.0, event);
            prop_assert_eq!(&got.1, &data.join("\n"));
            prop_assert_eq!(&got.2, &last_id);
        }
    }

    #[test]
    fn ndjson_decoder_gives_the_same_result_for_any_split(
        input in prop_oneof![json_lines(), sse_bytes(), prop::collection::vec(any::<u8>(), 0..256)],
        cuts in cuts(),
        small in any::<bool>(),
    ) {
        let make = || if small { NdjsonDecoder::with_limit(24) } else { NdjsonDecoder::new() };
        let whole = decode_ndjson(&mut make(), &[&input]);
        prop_assert_eq!(decode_ndjson(&mut make(), &split(&input, &cuts)), whole);
    }

    #[test]
    fn ndjson_lines_round_trip(
        lines in prop::collection::vec("[^\r\n\u{feff}]*[^\r\n \t\u{feff}]", 0..8),
        crlf in any::<bool>(),
        cuts in cuts(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        let decoded = decode_ndjson(&mut NdjsonDecoder::new(), &split(text.as_bytes(), &cuts));
        prop_assert_eq!(decoded.error, None);
        let want: Vec<String> = lines
            .iter()
            .map(|l| l.trim_ascii().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        prop_assert_eq!(decoded.lines, want);
    }

    #[test]
    fn openai_chat_parser_never_panics_and_ignores_the_split(
        input in prop_oneof![json_sse_stream(), sse_bytes()],
        cuts in cuts(),
    ) {
        let (whole, split) = sse_items(ChatParser::default, &input, &cuts);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn openai_responses_parser_never_panics_and_ignores_the_split(
        input in prop_oneof![json_sse_stream(), sse_bytes()],
        cuts in cuts(),
    ) {
        let (whole, split) = sse_items(ResponsesParser::default, &input, &cuts);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn anthropic_parser_never_panics_and_ignores_the_split(
        input in prop_oneof![json_sse_stream(), sse_bytes()],
        cuts in cuts(),
    ) {
        let (whole, split) = sse_items(MessagesParser::default, &input, &cuts);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn gemini_parser_never_panics_and_ignores_the_split(
        input in prop_oneof![json_sse_stream(), sse_bytes()],
        cuts in cuts(),
    ) {
        let (whole, split) = sse_items(GenerateParser::default, &input, &cuts);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn ollama_parser_never_panics_and_ignores_the_split(
        input in prop_oneof![json_lines(), sse_bytes()],
        cuts in cuts(),
    ) {
        let (whole, split) = line_items(OllamaParser::default, &input, &cuts);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn error_body_parsers_never_panic_on_any_json_or_bytes(
        value in provider_json(),
        raw in prop::collection::vec(any::<u8>(), 0..128),
        status in 400u16..600,
        retry_after in prop::option::of(prop_oneof![
            "[0-9]{1,30}(\\.[0-9]{0,5})?",
            "-?[0-9]{1,5}e[0-9]{1,4}",
            Just("inf".to_owned()),
            Just("NaN".to_owned()),
            text(10),
        ]),
        header in prop::sample::select(vec!["retry-after", "retry-after-ms"]),
    ) {
        if let Some(details) = error_details(&value) {
            let error = in_band_error(details);
            let _ = (error.to_string(), format!("{error:?}"));
        }
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header, value);
        }
        let status = StatusCode::from_u16(status).unwrap();
        for body in [value.to_string().into_bytes(), raw] {
            let error = http_error(status, headers.clone(), &body, &[]);
            let _ = (error.to_string(), format!("{error:?}"), error.retry_after());
        }
    }

    #[test]
    fn a_known_key_never_survives_an_error_body(
        before in text(40),
        after in text(40),
        pad in 0usize..4096,
        wrap in any::<bool>(),
    ) {
        let key = "sk-live-Zx81Hq0pp2";
        let text = format!("{}{before}{key}{after}", "x".repeat(pad));
        let body = if wrap {
            json!({"error": {"message": text, "code": key}}).to_string()
        } else {
            text
        };
        let error = http_error(StatusCode::UNAUTHORIZED, HeaderMap::new(), body.as_bytes(), &[key]);
        for rendering in [
            error.to_string(),
            format!("{error:?}"),
            error.body_excerpt().unwrap_or_default().to_owned(),
        ] {
            prop_assert!(!rendering.contains(key), "{}", rendering);
        }
    }
}
