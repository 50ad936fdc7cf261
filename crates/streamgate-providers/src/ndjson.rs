//! An incremental, bounded newline-delimited JSON (`application/x-ndjson`)
//! line decoder, for providers that stream one JSON object per line (Ollama).
//!
//! Pure: no I/O, no async, and no JSON parsing: it hands out the text of each
//! non-blank line, which the adapter's [`LineParser`](crate::LineParser)
//! reads. It shares the line splitting of the [SSE decoder](crate::sse), so
//! it has the same guarantees:
//!
//! - lines end at LF or CRLF (a lone CR also ends a line: a JSON text cannot
//!   contain one outside insignificant whitespace);
//! - a last line without its line ending is still returned by
//!   [`NdjsonDecoder::finish`];
//! - invalid UTF-8 is an [`NdjsonError`], not silently replaced;
//! - a line longer than [`NdjsonDecoder::max_line`] is an [`NdjsonError`], so
//!   a hostile or broken peer cannot make the decoder buffer without bound.
//!
//! A line inside one network read is returned borrowed from it; only a line
//! split across reads is copied.
//!
//! ```
//! use streamgate_providers::ndjson::NdjsonDecoder;
//!
//! let mut decoder = NdjsonDecoder::new();
//! let mut input: &[u8] = b"{\"done\":false}\r\n\n{\"done\":";
//! assert_eq!(decoder.decode(&mut input).unwrap(), Some("{\"done\":false}"));
//! assert_eq!(decoder.decode(&mut input).unwrap(), None);
//! let mut more: &[u8] = b"true}";
//! assert_eq!(decoder.decode(&mut more).unwrap(), None);
//! assert_eq!(decoder.finish().unwrap(), Some("{\"done\":true}"));
//! ```

use std::fmt;

use crate::{
    lines::{LineError, LineSplitter},
    sse::DEFAULT_MAX_SIZE,
};

/// Why the decoder gave up on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NdjsonError {
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
}

impl fmt::Display for NdjsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 { offset } => {
                write!(f, "invalid utf-8 in ndjson line at byte {offset}")
            }
            Self::LineTooLong { limit } => write!(f, "ndjson line longer than {limit} bytes"),
        }
    }
}

impl std::error::Error for NdjsonError {}

/// The incremental decoder. See the [module docs](self).
#[derive(Debug)]
pub struct NdjsonDecoder {
    lines: LineSplitter,
    failed: Option<NdjsonError>,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonDecoder {
    /// A decoder bounding lines at [`DEFAULT_MAX_SIZE`] (1 MiB, as for SSE).
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_SIZE)
    }

    /// A decoder bounding one line at `max_line` bytes (at least 1).
    pub fn with_limit(max_line: usize) -> Self {
        Self {
            lines: LineSplitter::new(max_line),
            failed: None,
        }
    }

    /// The bound on one line, in bytes.
    pub fn max_line(&self) -> usize {
        self.lines.max_line()
    }

    /// Consumes bytes from the front of `input` until one non-blank line is
    /// complete and returns it (without surrounding whitespace), or consumes
    /// all of `input` and returns `Ok(None)`.
    ///
    /// Call again with the rest of `input` (and then with new input) until it
    /// returns `Ok(None)`. After an error the decoder stays failed.
    pub fn decode<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<&'s str>, NdjsonError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let limit = self.lines.max_line();
        let rest: &'i [u8] = input;
        match self.lines.next_line(rest, true) {
            Ok((consumed, line)) => {
                *input = &rest[consumed..];
                // ASCII whitespace, as the blank-line rule: a line of other
                // whitespace is a line, not a blank.
                Ok(line.map(|line| line.text.trim_ascii()))
            }
            Err(error) => {
                let error = NdjsonError::from_line(error, limit);
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// The input ended: returns a last line that had no line ending.
    pub fn finish(&mut self) -> Result<Option<&str>, NdjsonError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let limit = self.lines.max_line();
        match self.lines.finish() {
            Ok(line) => Ok(line
                .map(|line| line.text.trim_ascii())
                .filter(|t| !t.is_empty())),
            Err(error) => {
                let error = NdjsonError::from_line(error, limit);
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Whether a partial line is buffered (at the end of input this means
    /// the last line was not terminated).
    pub fn has_pending(&self) -> bool {
        self.lines.has_partial()
    }
}

impl NdjsonError {
    fn from_line(error: LineError, limit: usize) -> Self {
        match error {
            LineError::InvalidUtf8(offset) => Self::InvalidUtf8 { offset },
            LineError::TooLong => Self::LineTooLong { limit },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn decode_all(decoder: &mut NdjsonDecoder, inputs: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for input in inputs {
            let mut input = *input;
            while let Some(line) = decoder.decode(&mut input).unwrap() {
                out.push(line.to_owned());
            }
            assert!(input.is_empty());
        }
        if let Some(line) = decoder.finish().unwrap() {
            out.push(line.to_owned());
        }
        out
    }

    #[test]
    fn lf_and_crlf_lines_blank_lines_skipped_at_every_split_point() {
        let text = b"{\"a\":1}\r\n\r\n  \n{\"b\":2}\n{\"c\":3}";
        let whole = decode_all(&mut NdjsonDecoder::new(), &[text]);
        assert_eq!(whole, [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        for cut in 0..text.len() {
            let split = decode_all(&mut NdjsonDecoder::new(), &[&text[..cut], &text[cut..]]);
            assert_eq!(split, whole, "cut at {cut}");
        }
    }

    #[test]
    fn unterminated_last_line_is_pending_until_finish() {
        let mut decoder = NdjsonDecoder::new();
        let mut input: &[u8] = b"{\"done\":tr";
        assert_eq!(decoder.decode(&mut input).unwrap(), None);
        assert!(decoder.has_pending());
        let mut more: &[u8] = b"ue}";
        assert_eq!(decoder.decode(&mut more).unwrap(), None);
        assert_eq!(decoder.finish().unwrap(), Some("{\"done\":true}"));
    }

    #[test]
    fn invalid_utf8_is_a_typed_error_and_sticks() {
        let mut decoder = NdjsonDecoder::new();
        let mut input: &[u8] = b"{}\n{\"a\":\"\xff\"}\n";
        assert_eq!(decoder.decode(&mut input).unwrap(), Some("{}"));
        let err = decoder.decode(&mut input).unwrap_err();
        assert_eq!(err, NdjsonError::InvalidUtf8 { offset: 3 });
        assert_eq!(decoder.decode(&mut &b"{}\n"[..]).unwrap_err(), err);
        assert_eq!(decoder.finish().unwrap_err(), err);
    }

    #[test]
    fn ten_megabyte_line_is_rejected_without_buffering_it() {
        let mut decoder = NdjsonDecoder::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut fed = 0usize;
        let err = loop {
            let mut input = &chunk[..];
            match decoder.decode(&mut input) {
                Ok(None) => fed += chunk.len(),
                Ok(Some(_)) => panic!("no line expected"),
                Err(err) => break err,
            }
            assert!(fed < 10 * 1024 * 1024, "never rejected");
        };
        assert_eq!(
            err,
            NdjsonError::LineTooLong {
                limit: DEFAULT_MAX_SIZE
            }
        );
        assert!(decoder.lines.buf.capacity() <= 2 * DEFAULT_MAX_SIZE);
    }

    #[test]
    fn a_long_line_inside_one_input_is_rejected() {
        let mut decoder = NdjsonDecoder::with_limit(8);
        let mut input: &[u8] = b"{\"a\":\"0123456789\"}\n";
        assert_eq!(
            decoder.decode(&mut input).unwrap_err(),
            NdjsonError::LineTooLong { limit: 8 }
        );
    }
}
