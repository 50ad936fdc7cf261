//! An incremental, bounded Server-Sent Events decoder.
//!
//! Pure: no I/O, no async. Feed it bytes as they arrive and take events out;
//! it follows the WHATWG `text/event-stream` rules with three additions that
//! provider streams need:
//!
//! - a last event without its closing blank line is still dispatched by
//!   [`SseDecoder::finish`] (some providers close the connection right after
//!   the final `data:` line);
//! - invalid UTF-8 is an [`SseError`], not silently replaced, so a corrupted
//!   stream is never mistaken for text;
//! - a line longer than [`SseDecoder::max_line`] or an event larger than
//!   [`SseDecoder::max_event`] is an [`SseError`], so a hostile or broken peer
//!   cannot make the decoder buffer without bound.
//!
//! Events borrow the decoder's buffers, so decoding allocates nothing per
//! event once the buffers have grown to the stream's usual event size.
//!
//! ```
//! use streamgate_providers::sse::SseDecoder;
//!
//! let mut decoder = SseDecoder::new();
//! let mut input: &[u8] = b"event: ping\r\ndata: {}\r\n\r\ndata: a\ndata: b\n\n";
//! let first = decoder.decode(&mut input).unwrap().unwrap();
//! assert_eq!((first.event, first.data), (Some("ping"), "{}"));
//! let second = decoder.decode(&mut input).unwrap().unwrap();
//! assert_eq!(second.data, "a\nb");
//! assert!(decoder.decode(&mut input).unwrap().is_none());
//! assert!(decoder.finish().unwrap().is_none());
//! ```

use std::{fmt, time::Duration};

use crate::lines::{LineError, LineSplitter};

/// The default bound on one line and on one event: 1 MiB.
///
/// Real provider events are a few kilobytes; a megabyte leaves room for a
/// large tool-call argument or a base64 image part while still bounding
/// memory per stream.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;

/// One dispatched event, borrowing the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, if the block had one (`None` means the default
    /// type, `message`).
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
    /// The last event id seen on the stream so far (ids persist across
    /// events, as the specification says).
    pub id: Option<&'a str>,
    /// A `retry:` field in this block, as the reconnection delay.
    pub retry: Option<Duration>,
}

/// Why the decoder gave up on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// A line was not valid UTF-8.
    InvalidUtf8 {
        /// Byte offset of the line in the stream.
        offset: u64,
    },
    /// A line was longer than the configured maximum.
    LineTooLong {
        /// The maximum, in bytes.
        limit: usize,
    },
    /// An event's data was larger than the configured maximum.
    EventTooLarge {
        /// The maximum, in bytes.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 { offset } => {
                write!(f, "invalid utf-8 in event stream line at byte {offset}")
            }
            Self::LineTooLong { limit } => {
                write!(f, "event stream line longer than {limit} bytes")
            }
            Self::EventTooLarge { limit } => {
                write!(f, "event stream event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// The incremental decoder. See the [module docs](self).
#[derive(Debug)]
pub struct SseDecoder {
    lines: LineSplitter,
    block: Block,
    failed: Option<SseError>,
}

/// The fields of the event being assembled.
#[derive(Debug)]
struct Block {
    max_event: usize,
    data: String,
    has_data: bool,
    event: String,
    has_event: bool,
    id: String,
    has_id: bool,
    retry: Option<Duration>,
    /// The buffers still hold the event returned last; clear before reuse.
    dispatched: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the default bounds ([`DEFAULT_MAX_SIZE`] for lines and
    /// events).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE)
    }

    /// A decoder with explicit bounds on one line and on one event's data, in
    /// bytes (each at least 1).
    pub fn with_limits(max_line: usize, max_event: usize) -> Self {
        Self {
            lines: LineSplitter::new(max_line),
            block: Block {
                max_event: max_event.max(1),
                data: String::new(),
                has_data: false,
                event: String::new(),
                has_event: false,
                id: String::new(),
                has_id: false,
                retry: None,
                dispatched: false,
            },
            failed: None,
        }
    }

    /// The bound on one line, in bytes.
    pub fn max_line(&self) -> usize {
        self.lines.max_line()
    }

    /// The bound on one event's data, in bytes.
    pub fn max_event(&self) -> usize {
        self.block.max_event
    }

    /// Consumes bytes from the front of `input` until one event is complete
    /// and returns it, or consumes all of `input` and returns `Ok(None)`.
    ///
    /// Call again with the rest of `input` (and then with new input) until it
    /// returns `Ok(None)`. After an error the decoder stays failed.
    pub fn decode<'s>(&'s mut self, input: &mut &[u8]) -> Result<Option<SseEvent<'s>>, SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.block.clear_dispatched();
        match self.decode_inner(input) {
            Ok(true) => Ok(Some(self.block.current())),
            Ok(false) => Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// The input ended: processes a final line without a line ending and
    /// dispatches a final event without its closing blank line.
    pub fn finish(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.block.clear_dispatched();
        match self.finish_inner() {
            Ok(true) => Ok(Some(self.block.current())),
            Ok(false) => Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Whether a partial line or an undispatched event is buffered (at the
    /// end of input this means the last event was not terminated).
    pub fn has_pending(&self) -> bool {
        self.lines.has_partial() || (self.block.has_data && !self.block.dispatched)
    }

    /// Returns `Ok(true)` when an event was dispatched into the buffers.
    fn decode_inner(&mut self, input: &mut &[u8]) -> Result<bool, SseError> {
        let max_line = self.lines.max_line();
        while !input.is_empty() {
            let (consumed, line) = self
                .lines
                .next_line(input, false)
                .map_err(|e| SseError::from_line(e, max_line))?;
            let dispatched = match line {
                Some(line) => self.block.process_line(line.text)?,
                None => false,
            };
            *input = &input[consumed..];
            if dispatched {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn finish_inner(&mut self) -> Result<bool, SseError> {
        let max_line = self.lines.max_line();
        let line = self
            .lines
            .finish()
            .map_err(|e| SseError::from_line(e, max_line))?;
        if let Some(line) = line {
            if self.block.process_line(line.text)? {
                return Ok(true);
            }
        }
        if self.block.has_data {
            self.block.dispatched = true;
            self.block.strip_final_newline();
            return Ok(true);
        }
        Ok(false)
    }
}

impl SseError {
    fn from_line(error: LineError, limit: usize) -> Self {
        match error {
            LineError::InvalidUtf8(offset) => Self::InvalidUtf8 { offset },
            LineError::TooLong => Self::LineTooLong { limit },
        }
    }
}

impl Block {
    fn clear_dispatched(&mut self) {
        if self.dispatched {
            self.dispatched = false;
            self.data.clear();
            self.has_data = false;
            self.event.clear();
            self.has_event = false;
            self.retry = None;
        }
    }

    fn current(&self) -> SseEvent<'_> {
        SseEvent {
            event: self.has_event.then_some(self.event.as_str()),
            data: &self.data,
            id: self.has_id.then_some(self.id.as_str()),
            retry: self.retry,
        }
    }

    /// Handles one complete line (without its ending); `Ok(true)` when it
    /// dispatched an event.
    fn process_line(&mut self, line: &str) -> Result<bool, SseError> {
        if line.is_empty() {
            if !self.has_data {
                // A block without data dispatches nothing, per the specification.
                self.event.clear();
                self.has_event = false;
                self.retry = None;
                return Ok(false);
            }
            self.strip_final_newline();
            self.dispatched = true;
            return Ok(true);
        }
        if line.starts_with(':') {
            return Ok(false);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event,
                    });
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
            "id" if !value.contains('\0') => {
                self.id.clear();
                self.id.push_str(value);
                self.has_id = true;
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse::<u64>().ok().map(Duration::from_millis);
            }
            _ => {}
        }
        Ok(false)
    }

    fn strip_final_newline(&mut self) {
        if self.data.ends_with('\n') {
            self.data.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Decodes `chunks` fed one after another, collecting (event, data).
    fn decode_all(decoder: &mut SseDecoder, chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while let Some(ev) = decoder.decode(&mut input).unwrap() {
                out.push((ev.event.map(str::to_owned), ev.data.to_owned()));
            }
            assert!(input.is_empty());
        }
        if let Some(ev) = decoder.finish().unwrap() {
            out.push((ev.event.map(str::to_owned), ev.data.to_owned()));
        }
        out
    }

    fn data_only(events: Vec<(Option<String>, String)>) -> Vec<String> {
        events.into_iter().map(|(_, d)| d).collect()
    }

    #[test]
    fn lf_crlf_and_cr_line_endings_give_the_same_events() {
        for ending in ["\n", "\r\n", "\r"] {
            let text = format!(
                "event: a{e}data: 1{e}data: 2{e}{e}data: 3{e}{e}",
                e = ending
            );
            let events = decode_all(&mut SseDecoder::new(), &[text.as_bytes()]);
            assert_eq!(
                events,
                vec![(Some("a".into()), "1\n2".into()), (None, "3".into())],
                "ending {ending:?}"
            );
        }
    }

    #[test]
    fn crlf_split_between_inputs_is_one_line_ending() {
        let mut decoder = SseDecoder::new();
        let events = decode_all(&mut decoder, &[b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"]);
        assert_eq!(data_only(events), vec!["x", "y"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text =
            b"event: message_start\r\ndata: {\"a\":  1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
        let whole = decode_all(&mut SseDecoder::new(), &[text]);
        for cut in 0..text.len() {
            let split = decode_all(&mut SseDecoder::new(), &[&text[..cut], &text[cut..]]);
            assert_eq!(split, whole, "cut at {cut}");
        }
        // And byte by byte.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(decode_all(&mut SseDecoder::new(), &bytes), whole);
    }

    #[test]
    fn comments_are_ignored_and_dispatch_nothing() {
        let events = decode_all(
            &mut SseDecoder::new(),
            &[b": OPENROUTER PROCESSING\n\n: ping\ndata: x\n\n"],
        );
        assert_eq!(data_only(events), vec!["x"]);
    }

    #[test]
    fn missing_final_blank_line_still_dispatches_the_last_event() {
        let mut decoder = SseDecoder::new();
        let mut input: &[u8] = b"data: a\n\nevent: message_stop\ndata: {}";
        assert_eq!(decoder.decode(&mut input).unwrap().unwrap().data, "a");
        assert!(decoder.decode(&mut input).unwrap().is_none());
        assert!(decoder.has_pending());
        let last = decoder.finish().unwrap().unwrap();
        assert_eq!((last.event, last.data), (Some("message_stop"), "{}"));
    }

    #[test]
    fn block_without_data_dispatches_nothing() {
        let events = decode_all(&mut SseDecoder::new(), &[b"event: x\n\ndata: y\n\n"]);
        assert_eq!(events, vec![(None, "y".into())]);
    }

    #[test]
    fn id_persists_and_retry_is_per_event() {
        let mut decoder = SseDecoder::new();
        let mut input: &[u8] = b"id: 7\nretry: 1500\ndata: a\n\nretry: x\ndata: b\n\n";
        let first = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(first.id, Some("7"));
        assert_eq!(first.retry, Some(Duration::from_millis(1500)));
        let second = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(second.id, Some("7"));
        assert_eq!(second.retry, None);
    }

    #[test]
    fn field_without_colon_and_value_without_space() {
        let events = decode_all(&mut SseDecoder::new(), &[b"data\ndata:x\ndata:  y\n\n"]);
        assert_eq!(data_only(events), vec!["\nx\n y"]);
    }

    #[test]
    fn leading_bom_is_skipped() {
        let events = decode_all(&mut SseDecoder::new(), &["\u{feff}data: x\n\n".as_bytes()]);
        assert_eq!(data_only(events), vec!["x"]);
    }

    #[test]
    fn invalid_utf8_is_a_typed_error_and_sticks() {
        let mut decoder = SseDecoder::new();
        let mut input: &[u8] = b"data: ok\n\ndata: \xff\xfe\n\n";
        assert!(decoder.decode(&mut input).unwrap().is_some());
        let err = decoder.decode(&mut input).unwrap_err();
        assert_eq!(err, SseError::InvalidUtf8 { offset: 10 });
        assert_eq!(decoder.decode(&mut &b"data: x\n\n"[..]).unwrap_err(), err);
        assert_eq!(decoder.finish().unwrap_err(), err);
    }

    #[test]
    fn ten_megabyte_line_is_rejected_without_buffering_it() {
        let mut decoder = SseDecoder::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut first: &[u8] = b"data: ";
        assert!(decoder.decode(&mut first).unwrap().is_none());
        let mut fed = 0usize;
        let err = loop {
            let mut input = &chunk[..];
            match decoder.decode(&mut input) {
                Ok(None) => fed += chunk.len(),
                Ok(Some(_)) => panic!("no event expected"),
                Err(err) => break err,
            }
            assert!(fed < 10 * 1024 * 1024, "never rejected");
        };
        assert_eq!(
            err,
            SseError::LineTooLong {
                limit: DEFAULT_MAX_SIZE
            }
        );
        assert!(decoder.lines.buf.capacity() <= 2 * DEFAULT_MAX_SIZE);
    }

    #[test]
    fn a_long_line_inside_one_input_is_rejected() {
        let mut decoder = SseDecoder::with_limits(16, 1024);
        let mut input: &[u8] = b"data: 0123456789abcdef\n\n";
        assert_eq!(
            decoder.decode(&mut input).unwrap_err(),
            SseError::LineTooLong { limit: 16 }
        );
    }

    #[test]
    fn many_data_lines_are_bounded_by_the_event_limit() {
        let mut decoder = SseDecoder::with_limits(64, 32);
        let mut input: &[u8] = b"data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n";
        assert_eq!(
            decoder.decode(&mut input).unwrap_err(),
            SseError::EventTooLarge { limit: 32 }
        );
    }

    #[test]
    fn buffers_are_reused_between_events() {
        let mut decoder = SseDecoder::new();
        let mut input: &[u8] = b"data: aaaaaaaaaaaaaaaa\n\ndata: b\n\n";
        assert!(decoder.decode(&mut input).unwrap().is_some());
        let cap = decoder.block.data.capacity();
        assert_eq!(decoder.decode(&mut input).unwrap().unwrap().data, "b");
        assert_eq!(decoder.block.data.capacity(), cap);
    }
}
