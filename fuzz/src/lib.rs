//! The bodies of the fuzz targets: each takes the fuzzer's bytes, drives one
//! entry point, and panics only when a property fails (the same result for
//! any split of the input into network reads; no key survives redaction).
//! Parsers must never panic on their own.

use bytes::Bytes;
use futures::{executor::block_on, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use streamgate_core::{redact::redact, ErrorClass, ProviderError};
use streamgate_providers::{
    errors::{error_details, http_error, in_band_error},
    ndjson::NdjsonDecoder,
    sse::SseDecoder,
    ChatChunk, Framing, ProviderStream,
};

/// The first byte picks where to split the rest in two.
fn cut(data: &[u8]) -> (&[u8], usize) {
    match data.split_first() {
        Some((first, rest)) => (rest, usize::from(*first) % (rest.len() + 1)),
        None => (data, 0),
    }
}

type Item = Result<ChatChunk, (ErrorClass, String)>;

fn run<P, D>(parser: P, decoder: D, pieces: &[&[u8]]) -> Vec<Item>
where
    P: Unpin + Send + 'static,
    D: Framing<P, Chunk = ChatChunk> + Unpin + Send + 'static,
{
    let owned: Vec<Result<Bytes, std::io::Error>> = pieces
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    let stream = ProviderStream::with_decoder(parser, futures::stream::iter(owned), decoder);
    block_on(
        stream
            .map(|item| item.map_err(|e: ProviderError| (e.class(), e.to_string())))
            .collect(),
    )
}

/// An SSE parser over the input whole and split: the same items.
pub fn sse_parser<P, F>(make: F, data: &[u8])
where
    F: Fn() -> P,
    P: Unpin + Send + 'static,
    SseDecoder: Framing<P, Chunk = ChatChunk>,
{
    let (input, at) = cut(data);
    let whole = run(make(), SseDecoder::with_limits(4096, 16_384), &[input]);
    let split = run(
        make(),
        SseDecoder::with_limits(4096, 16_384),
        &[&input[..at], &input[at..]],
    );
    assert_eq!(whole, split, "split at {at}");
}

/// An NDJSON parser over the input whole and split: the same items.
pub fn ndjson_parser<P, F>(make: F, data: &[u8])
where
    F: Fn() -> P,
    P: Unpin + Send + 'static,
    NdjsonDecoder: Framing<P, Chunk = ChatChunk>,
{
    let (input, at) = cut(data);
    let whole = run(make(), NdjsonDecoder::with_limit(4096), &[input]);
    let split = run(
        make(),
        NdjsonDecoder::with_limit(4096),
        &[&input[..at], &input[at..]],
    );
    assert_eq!(whole, split, "split at {at}");
}

/// The SSE decoder on its own, whole and split.
pub fn sse_decoder(data: &[u8]) {
    fn decode(pieces: &[&[u8]]) -> (Vec<(Option<String>, String)>, Option<String>) {
        let mut decoder = SseDecoder::with_limits(64, 256);
        let mut events = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(e)) => events.push((e.event.map(str::to_owned), e.data.to_owned())),
                    Ok(None) => break,
                    Err(error) => return (events, Some(error.to_string())),
                }
            }
        }
        match decoder.finish() {
            Ok(Some(e)) => events.push((e.event.map(str::to_owned), e.data.to_owned())),
            Ok(None) => {}
            Err(error) => return (events, Some(error.to_string())),
        }
        (events, None)
    }
    let (input, at) = cut(data);
    assert_eq!(decode(&[input]), decode(&[&input[..at], &input[at..]]));
}

/// The NDJSON decoder on its own, whole and split.
pub fn ndjson_decoder(data: &[u8]) {
    fn decode(pieces: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut decoder = NdjsonDecoder::with_limit(64);
        let mut lines = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(line)) => lines.push(line.to_owned()),
                    Ok(None) => break,
                    Err(error) => return (lines, Some(error.to_string())),
                }
            }
        }
        match decoder.finish() {
            Ok(Some(line)) => lines.push(line.to_owned()),
            Ok(None) => {}
            Err(error) => return (lines, Some(error.to_string())),
        }
        (lines, None)
    }
    let (input, at) = cut(data);
    assert_eq!(decode(&[input]), decode(&[&input[..at], &input[at..]]));
}

/// The error-body parsers: an HTTP error from the bytes (the first line as
/// a `retry-after` value), and an in-band error from the JSON, if any.
pub fn error_body(data: &[u8]) {
    const KEY: &str = "sk-fuzz-known-key";
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(header) {
        headers.insert("retry-after", value.clone());
        headers.insert("retry-after-ms", value);
    }
    let error = http_error(StatusCode::TOO_MANY_REQUESTS, headers, body, &[KEY]);
    for text in [
        error.to_string(),
        format!("{error:?}"),
        error.body_excerpt().unwrap_or_default().to_owned(),
    ] {
        assert!(!text.contains(KEY), "{text}");
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(details) = error_details(&value) {
            let error = in_band_error(details);
            let _ = (error.to_string(), error.retry_after());
        }
    }
}

/// The redactor: a known key placed in the text never survives, and the
/// result is valid wherever the key is cut.
pub fn redaction(data: &[u8]) {
    const KEY: &str = "sk-fuzz-0123456789";
    let (rest, at) = cut(data);
    let text = String::from_utf8_lossy(rest);
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let with_key = format!("{}{KEY}{}", &text[..at], &text[at..]);
    let redacted = redact(&with_key, &[KEY]);
    assert!(!redacted.contains(KEY), "{redacted}");
}
