//! The body every adapter returns: bytes in, chunks out.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_util::TryStreamExt;
use streamgate_core::{BoxError, ErrorClass, ProviderError};

use crate::{
    errors::transport_error,
    ndjson::{NdjsonDecoder, NdjsonError},
    sse::{SseDecoder, SseError, SseEvent},
};

/// What a parser made of one event.
#[derive(Debug)]
pub enum Step<C> {
    /// Nothing for the caller (a comment-like event, an ignored type).
    Skip,
    /// A chunk for the caller.
    Chunk(C),
    /// The provider's terminal marker, with a last chunk if the event carried
    /// one: the stream ends cleanly after it.
    Done(Option<C>),
}

/// A provider's event grammar over Server-Sent Events: turns decoded SSE
/// events into chunks and says whether the end of input was clean.
///
/// Implemented by each SSE adapter's parser; public so the conformance
/// runner and users with their own providers can drive a [`ProviderStream`].
pub trait EventParser {
    /// The chunk type yielded.
    type Chunk;

    /// Handles one event. An `Err` ends the stream after it is yielded
    /// (in-band provider errors, malformed payloads).
    fn parse(&mut self, event: &SseEvent<'_>) -> Result<Step<Self::Chunk>, ProviderError>;

    /// The input ended before a [`Step::Done`]: the error to report
    /// (normally [`ProviderError::truncated`]).
    fn truncated(&mut self) -> ProviderError;
}

/// A provider's grammar over newline-delimited JSON (one JSON text per
/// line, as Ollama streams): the [`EventParser`] of NDJSON streams.
pub trait LineParser {
    /// The chunk type yielded.
    type Chunk;

    /// Handles one non-blank line (without its line ending). An `Err` ends
    /// the stream after it is yielded (in-band provider errors, malformed
    /// payloads).
    fn parse_line(&mut self, line: &str) -> Result<Step<Self::Chunk>, ProviderError>;

    /// The input ended before a [`Step::Done`]: the error to report
    /// (normally [`ProviderError::truncated`]).
    fn truncated(&mut self) -> ProviderError;
}

/// How a byte stream is cut into frames for a parser `P`: implemented by
/// [`SseDecoder`] for every [`EventParser`] and by [`NdjsonDecoder`] for
/// every [`LineParser`], so one [`ProviderStream`] serves both framings.
pub trait Framing<P> {
    /// The chunk type the parser yields.
    type Chunk;

    /// Consumes bytes from the front of `input` until one frame is complete
    /// and returns what the parser made of it, or consumes all of `input`
    /// and returns `None`. A framing error (invalid UTF-8, an oversized
    /// line) is returned as a [`ProviderError`] with the typed cause as its
    /// source.
    fn decode(
        &mut self,
        parser: &mut P,
        input: &mut &[u8],
    ) -> Option<Result<Step<Self::Chunk>, ProviderError>>;

    /// The input ended: parses a last frame that was not terminated.
    fn finish(&mut self, parser: &mut P) -> Option<Result<Step<Self::Chunk>, ProviderError>>;

    /// The parser's error for input that ended before its terminal marker.
    fn truncated(&mut self, parser: &mut P) -> ProviderError;
}

impl<P: EventParser> Framing<P> for SseDecoder {
    type Chunk = P::Chunk;

    fn decode(
        &mut self,
        parser: &mut P,
        input: &mut &[u8],
    ) -> Option<Result<Step<P::Chunk>, ProviderError>> {
        match SseDecoder::decode(self, input) {
            Ok(Some(event)) => Some(parser.parse(&event)),
            Ok(None) => None,
            Err(error) => Some(Err(sse_error(error))),
        }
    }

    fn finish(&mut self, parser: &mut P) -> Option<Result<Step<P::Chunk>, ProviderError>> {
        match SseDecoder::finish(self) {
            Ok(Some(event)) => Some(parser.parse(&event)),
            Ok(None) => None,
            Err(error) => Some(Err(sse_error(error))),
        }
    }

    fn truncated(&mut self, parser: &mut P) -> ProviderError {
        parser.truncated()
    }
}

impl<P: LineParser> Framing<P> for NdjsonDecoder {
    type Chunk = P::Chunk;

    fn decode(
        &mut self,
        parser: &mut P,
        input: &mut &[u8],
    ) -> Option<Result<Step<P::Chunk>, ProviderError>> {
        match NdjsonDecoder::decode(self, input) {
            Ok(Some(line)) => Some(parser.parse_line(line)),
            Ok(None) => None,
            Err(error) => Some(Err(ndjson_error(error))),
        }
    }

    fn finish(&mut self, parser: &mut P) -> Option<Result<Step<P::Chunk>, ProviderError>> {
        match NdjsonDecoder::finish(self) {
            Ok(Some(line)) => Some(parser.parse_line(line)),
            Ok(None) => None,
            Err(error) => Some(Err(ndjson_error(error))),
        }
    }

    fn truncated(&mut self, parser: &mut P) -> ProviderError {
        parser.truncated()
    }
}

type Item<C> = Option<Result<C, ProviderError>>;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A stream of chunks decoded from a provider's byte stream: SSE by default
/// (`D` = [`SseDecoder`]), or NDJSON (`D` = [`NdjsonDecoder`]).
///
/// Yields each chunk as its event completes; ends cleanly only after the
/// provider's terminal marker. A stream that ends without it yields one
/// `Truncated` error; an in-band error event, a malformed payload or a
/// transport failure yields one error. After an error the stream ends and
/// the connection is dropped. `Unpin` (the byte stream is boxed once per
/// request) and allocation-free per chunk apart from the chunk itself.
pub struct ProviderStream<P, D = SseDecoder> {
    inner: Option<ByteStream>,
    pending: Bytes,
    decoder: D,
    parser: P,
    done: bool,
}

impl<P, D> fmt::Debug for ProviderStream<P, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderStream")
            .field("pending", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<P: EventParser> ProviderStream<P> {
    /// Decodes SSE `bytes` with `parser`, using a default [`SseDecoder`].
    pub fn new<S, E>(parser: P, bytes: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self::with_decoder(parser, bytes, SseDecoder::new())
    }
}

impl<P: LineParser> ProviderStream<P, NdjsonDecoder> {
    /// Decodes NDJSON `bytes` with `parser`, using a default
    /// [`NdjsonDecoder`].
    pub fn ndjson<S, E>(parser: P, bytes: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self::with_decoder(parser, bytes, NdjsonDecoder::new())
    }
}

impl<P, D: Framing<P>> ProviderStream<P, D> {
    /// Decodes `bytes` with `parser` and a configured decoder (limits).
    pub fn with_decoder<S, E>(parser: P, bytes: S, decoder: D) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self {
            inner: Some(Box::pin(TryStreamExt::map_err(bytes, Into::into))),
            pending: Bytes::new(),
            decoder,
            parser,
            done: false,
        }
    }

    fn finish_with(&mut self, error: ProviderError) -> Poll<Item<D::Chunk>> {
        self.done = true;
        // Dropping the body closes the connection at once.
        self.inner = None;
        Poll::Ready(Some(Err(error)))
    }

    fn step(
        &mut self,
        step: Result<Step<D::Chunk>, ProviderError>,
    ) -> Option<Poll<Item<D::Chunk>>> {
        match step {
            Ok(Step::Skip) => None,
            Ok(Step::Chunk(chunk)) => Some(Poll::Ready(Some(Ok(chunk)))),
            Ok(Step::Done(last)) => {
                self.done = true;
                self.inner = None;
                Some(Poll::Ready(last.map(Ok)))
            }
            Err(error) => Some(self.finish_with(error)),
        }
    }
}

impl<P, D> Stream for ProviderStream<P, D>
where
    P: Unpin,
    D: Framing<P> + Unpin,
{
    type Item = Result<D::Chunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() {
                let mut input = &this.pending[..];
                let before = input.len();
                let step = this.decoder.decode(&mut this.parser, &mut input);
                let consumed = before - input.len();
                this.pending.advance(consumed);
                if let Some(step) = step {
                    if let Some(ready) = this.step(step) {
                        return ready;
                    }
                }
                continue;
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => this.pending = bytes,
                Poll::Ready(Some(Err(error))) => return this.finish_with(transport_error(error)),
                Poll::Ready(None) => {
                    this.inner = None;
                    // A cut-off last frame that does not parse is a
                    // truncation, not a malformed stream.
                    let step = this.decoder.finish(&mut this.parser).map(|step| {
                        step.map_err(|error| {
                            if is_malformed_json(&error) {
                                this.decoder.truncated(&mut this.parser).with_source(error)
                            } else {
                                error
                            }
                        })
                    });
                    if let Some(step) = step {
                        if let Some(ready) = this.step(step) {
                            // A chunk from the unterminated last frame: the
                            // next poll reports the truncation, if any.
                            if !this.done {
                                this.inner = Some(Box::pin(futures_util::stream::empty()));
                            }
                            return ready;
                        }
                    }
                    if this.done {
                        return Poll::Ready(None);
                    }
                    let error = this.decoder.truncated(&mut this.parser);
                    return this.finish_with(error);
                }
            }
        }
    }
}

fn is_malformed_json(error: &ProviderError) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.is::<serde_json::Error>())
}

fn sse_error(error: SseError) -> ProviderError {
    ProviderError::new(ErrorClass::Server, "malformed event stream from provider")
        .in_band()
        .with_source(error)
}

fn ndjson_error(error: NdjsonError) -> ProviderError {
    ProviderError::new(ErrorClass::Server, "malformed ndjson stream from provider")
        .in_band()
        .with_source(error)
}

#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use futures_util::{FutureExt, StreamExt};

    /// Runs `parser` over SSE `pieces` delivered as separate network reads.
    #[cfg_attr(
        not(any(feature = "openai", feature = "anthropic", feature = "gemini")),
        allow(dead_code)
    )]
    pub(crate) fn run<P>(parser: P, pieces: &[&[u8]]) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: EventParser + Unpin + Send + 'static,
    {
        run_with(parser, SseDecoder::new(), pieces)
    }

    /// Runs `parser` over NDJSON `pieces` delivered as separate network reads.
    #[cfg_attr(not(feature = "ollama"), allow(dead_code))]
    pub(crate) fn run_lines<P>(parser: P, pieces: &[&[u8]]) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: LineParser + Unpin + Send + 'static,
    {
        run_with(parser, NdjsonDecoder::new(), pieces)
    }

    #[cfg_attr(
        not(any(
            feature = "openai",
            feature = "anthropic",
            feature = "gemini",
            feature = "ollama"
        )),
        allow(dead_code)
    )]
    pub(crate) fn run_with<P, D>(
        parser: P,
        decoder: D,
        pieces: &[&[u8]],
    ) -> Vec<Result<D::Chunk, ProviderError>>
    where
        P: Unpin + Send + 'static,
        D: Framing<P> + Unpin + Send + 'static,
    {
        let owned: Vec<Result<Bytes, std::io::Error>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let stream =
            ProviderStream::with_decoder(parser, futures_util::stream::iter(owned), decoder);
        stream
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("in-memory stream is ready")
    }

    /// [`run`] with the input split at every byte boundary in turn; all
    /// splits must agree with the whole.
    #[cfg_attr(
        not(any(feature = "openai", feature = "anthropic", feature = "gemini")),
        allow(dead_code)
    )]
    pub(crate) fn run_split<P>(
        make: impl Fn() -> P,
        input: &[u8],
    ) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: EventParser + Unpin + Send + 'static,
        P::Chunk: PartialEq + fmt::Debug,
    {
        split_with(|| (make(), SseDecoder::new()), input)
    }

    /// [`run_lines`] with the input split at every byte boundary in turn.
    #[cfg_attr(not(feature = "ollama"), allow(dead_code))]
    pub(crate) fn run_lines_split<P>(
        make: impl Fn() -> P,
        input: &[u8],
    ) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: LineParser + Unpin + Send + 'static,
        P::Chunk: PartialEq + fmt::Debug,
    {
        split_with(|| (make(), NdjsonDecoder::new()), input)
    }

    #[cfg_attr(
        not(any(
            feature = "openai",
            feature = "anthropic",
            feature = "gemini",
            feature = "ollama"
        )),
        allow(dead_code)
    )]
    pub(crate) fn split_with<P, D>(
        make: impl Fn() -> (P, D),
        input: &[u8],
    ) -> Vec<Result<D::Chunk, ProviderError>>
    where
        P: Unpin + Send + 'static,
        D: Framing<P> + Unpin + Send + 'static,
        D::Chunk: PartialEq + fmt::Debug,
    {
        let (parser, decoder) = make();
        let whole = run_with(parser, decoder, &[input]);
        for cut in 0..input.len() {
            let (parser, decoder) = make();
            let split = run_with(parser, decoder, &[&input[..cut], &input[cut..]]);
            assert_eq!(split.len(), whole.len(), "cut at {cut}");
            for (a, b) in split.iter().zip(&whole) {
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "cut at {cut}"),
                    (Err(a), Err(b)) => assert_eq!(a.class(), b.class(), "cut at {cut}"),
                    _ => panic!("cut at {cut}: {a:?} vs {b:?}"),
                }
            }
        }
        whole
    }
}
