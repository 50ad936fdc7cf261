//! The bounded, UTF-8-checking line splitter under both stream decoders
//! ([`SseDecoder`](crate::sse::SseDecoder) and
//! [`NdjsonDecoder`](crate::ndjson::NdjsonDecoder)).
//!
//! Lines end at LF, CRLF or a lone CR (a CRLF split between two inputs is one
//! ending). A complete line inside one input is returned borrowed from it; only
//! a line that spans inputs is copied, into a buffer bounded by the line limit,
//! so a peer that never sends a line ending cannot make it grow without bound.

/// Why the splitter gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineError {
    /// A line was not valid UTF-8; the byte offset of the line in the stream.
    InvalidUtf8(u64),
    /// A line was longer than the limit.
    TooLong,
}

/// One complete line, without its ending.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    pub(crate) text: &'a str,
}

#[derive(Debug)]
pub(crate) struct LineSplitter {
    max_line: usize,
    /// A partial line carried between inputs, or (when `returned`) the line
    /// handed out last.
    pub(crate) buf: Vec<u8>,
    returned: bool,
    /// The last input ended in CR: a leading LF of the next one belongs to it.
    skip_lf: bool,
    /// Bytes consumed so far (for error offsets).
    offset: u64,
}

impl LineSplitter {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            buf: Vec::new(),
            returned: false,
            skip_lf: false,
            offset: 0,
        }
    }

    pub(crate) fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether a partial line is buffered.
    pub(crate) fn has_partial(&self) -> bool {
        !self.returned && !self.buf.is_empty()
    }

    fn reuse_buffer(&mut self) {
        if self.returned {
            self.returned = false;
            self.buf.clear();
        }
    }

    /// Takes the next complete line from the front of `input`: returns how
    /// many bytes it consumed and the line, or consumes all of `input` into
    /// the partial-line buffer and returns no line. With `skip_blank`, lines
    /// of only ASCII whitespace are consumed and never returned.
    pub(crate) fn next_line<'a>(
        &'a mut self,
        input: &'a [u8],
        skip_blank: bool,
    ) -> Result<(usize, Option<Line<'a>>), LineError> {
        self.reuse_buffer();
        let mut start = 0;
        loop {
            if self.skip_lf && start < input.len() {
                self.skip_lf = false;
                if input[start] == b'\n' {
                    start += 1;
                    self.offset += 1;
                }
            }
            let rest = &input[start..];
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buf.len() + rest.len() > self.max_line {
                    return Err(LineError::TooLong);
                }
                self.buf.extend_from_slice(rest);
                self.offset += rest.len() as u64;
                return Ok((input.len(), None));
            };
            if self.buf.len() + end > self.max_line {
                return Err(LineError::TooLong);
            }
            self.skip_lf = rest[end] == b'\r';
            let line_offset = self.offset.saturating_sub(self.buf.len() as u64);
            self.offset += end as u64 + 1;
            let consumed = start + end + 1;
            if skip_blank
                && self.buf.iter().all(u8::is_ascii_whitespace)
                && rest[..end].iter().all(u8::is_ascii_whitespace)
            {
                self.buf.clear();
                start = consumed;
                continue;
            }
            let bytes = if self.buf.is_empty() {
                // Fast path: the whole line is in the input, no copy.
                &rest[..end]
            } else {
                self.buf.extend_from_slice(&rest[..end]);
                self.returned = true;
                &self.buf[..]
            };
            return Ok((consumed, Some(line(bytes, line_offset)?)));
        }
    }

    /// The input ended: the buffered partial line, if any, as the last line.
    pub(crate) fn finish(&mut self) -> Result<Option<Line<'_>>, LineError> {
        self.reuse_buffer();
        if self.buf.is_empty() {
            return Ok(None);
        }
        let line_offset = self.offset.saturating_sub(self.buf.len() as u64);
        self.returned = true;
        Ok(Some(line(&self.buf, line_offset)?))
    }
}

fn line(bytes: &[u8], offset: u64) -> Result<Line<'_>, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::InvalidUtf8(offset))?;
    // A byte order mark may open a stream; it is not part of the first line.
    let text = if offset == 0 {
        text.strip_prefix('\u{feff}').unwrap_or(text)
    } else {
        text
    };
    Ok(Line { text })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn split(splitter: &mut LineSplitter, inputs: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for input in inputs {
            let mut input = *input;
            while !input.is_empty() {
                let (consumed, line) = splitter.next_line(input, false).unwrap();
                if let Some(line) = line {
                    out.push(line.text.to_owned());
                }
                input = &input[consumed..];
            }
        }
        if let Some(line) = splitter.finish().unwrap() {
            out.push(line.text.to_owned());
        }
        out
    }

    #[test]
    fn every_line_ending_and_every_split_point_give_the_same_lines() {
        let text = b"a\r\nbb\rccc\n\nd";
        let whole = split(&mut LineSplitter::new(64), &[text]);
        assert_eq!(whole, ["a", "bb", "ccc", "", "d"]);
        for cut in 0..text.len() {
            let parts = split(&mut LineSplitter::new(64), &[&text[..cut], &text[cut..]]);
            assert_eq!(parts, whole, "cut at {cut}");
        }
    }

    #[test]
    fn blank_lines_are_skipped_when_asked_even_across_inputs() {
        let mut splitter = LineSplitter::new(64);
        let (consumed, line) = splitter.next_line(b" \r\n\n  ", true).unwrap();
        assert_eq!((consumed, line.map(|l| l.text)), (6, None));
        let (consumed, line) = splitter.next_line(b"\n{}\n", true).unwrap();
        assert_eq!((consumed, line.map(|l| l.text)), (4, Some("{}")));
    }

    #[test]
    fn a_line_spanning_inputs_is_bounded() {
        let mut splitter = LineSplitter::new(4);
        assert!(splitter.next_line(b"abc", false).unwrap().1.is_none());
        assert_eq!(
            splitter.next_line(b"de\n", false).unwrap_err(),
            LineError::TooLong
        );
    }

    #[test]
    fn invalid_utf8_reports_the_offset_of_its_line() {
        let mut splitter = LineSplitter::new(64);
        let (consumed, _) = splitter.next_line(b"ok\n\xff\n", false).unwrap();
        assert_eq!(
            splitter
                .next_line(&b"ok\n\xff\n"[consumed..], false)
                .unwrap_err(),
            LineError::InvalidUtf8(3)
        );
    }
}
