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
    sse::{SseDecoder, SseEvent},
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

/// A provider's event grammar: turns decoded SSE events into chunks and says
/// whether the end of input was clean.
///
/// Implemented by each adapter's parser; public so the conformance runner
/// and users with their own providers can drive a [`ProviderStream`].
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

type Item<C> = Option<Result<C, ProviderError>>;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A stream of chunks decoded from a provider's SSE byte stream.
///
/// Yields each chunk as its event completes; ends cleanly only after the
/// provider's terminal marker. A stream that ends without it yields one
/// `Truncated` error; an in-band error event, a malformed payload or a
/// transport failure yields one error. After an error the stream ends and
/// the connection is dropped. `Unpin` (the byte stream is boxed once per
/// request) and allocation-free per chunk apart from the chunk itself.
pub struct ProviderStream<P> {
    inner: Option<ByteStream>,
    pending: Bytes,
    decoder: SseDecoder,
    parser: P,
    done: bool,
}

impl<P> fmt::Debug for ProviderStream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderStream")
            .field("pending", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<P: EventParser> ProviderStream<P> {
    /// Decodes `bytes` with `parser`, using a default [`SseDecoder`].
    pub fn new<S, E>(parser: P, bytes: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self::with_decoder(parser, bytes, SseDecoder::new())
    }

    /// Decodes `bytes` with `parser` and a configured decoder (limits).
    pub fn with_decoder<S, E>(parser: P, bytes: S, decoder: SseDecoder) -> Self
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

    fn finish_with(&mut self, error: ProviderError) -> Poll<Item<P::Chunk>> {
        self.done = true;
        // Dropping the body closes the connection at once.
        self.inner = None;
        Poll::Ready(Some(Err(error)))
    }

    fn step(
        &mut self,
        step: Result<Step<P::Chunk>, ProviderError>,
    ) -> Option<Poll<Item<P::Chunk>>> {
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

impl<P> Stream for ProviderStream<P>
where
    P: EventParser + Unpin,
{
    type Item = Result<P::Chunk, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.pending.is_empty() {
                let mut input = &this.pending[..];
                let before = input.len();
                let step = match this.decoder.decode(&mut input) {
                    Ok(Some(event)) => Some(this.parser.parse(&event)),
                    Ok(None) => None,
                    Err(error) => Some(Err(sse_error(error))),
                };
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
                    let step = match this.decoder.finish() {
                        // A cut-off last event that does not parse is a
                        // truncation, not a malformed stream.
                        Ok(Some(event)) => Some(this.parser.parse(&event).map_err(|error| {
                            if is_malformed_json(&error) {
                                this.parser.truncated().with_source(error)
                            } else {
                                error
                            }
                        })),
                        Ok(None) => None,
                        Err(error) => Some(Err(sse_error(error))),
                    };
                    if let Some(step) = step {
                        if let Some(ready) = this.step(step) {
                            // A chunk from the unterminated last event: the
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
                    let error = this.parser.truncated();
                    return this.finish_with(error);
                }
            }
        }
    }
}

fn is_malformed_json(error: &ProviderError) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.is::<serde_json::Error>())
}

fn sse_error(error: crate::sse::SseError) -> ProviderError {
    ProviderError::new(ErrorClass::Server, "malformed event stream from provider")
        .in_band()
        .with_source(error)
}

#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use futures_util::{FutureExt, StreamExt};

    /// Runs `parser` over `pieces` delivered as separate network reads.
    pub(crate) fn run<P>(parser: P, pieces: &[&[u8]]) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: EventParser + Unpin + Send + 'static,
    {
        let owned: Vec<Result<Bytes, std::io::Error>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let stream = ProviderStream::new(parser, futures_util::stream::iter(owned));
        stream
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("in-memory stream is ready")
    }

    /// The same, with the input split at every byte boundary in turn; all
    /// splits must agree with the whole.
    pub(crate) fn run_split<P>(
        make: impl Fn() -> P,
        input: &[u8],
    ) -> Vec<Result<P::Chunk, ProviderError>>
    where
        P: EventParser + Unpin + Send + 'static,
        P::Chunk: PartialEq + fmt::Debug,
    {
        let whole = run(make(), &[input]);
        for cut in 0..input.len() {
            let split = run(make(), &[&input[..cut], &input[cut..]]);
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
