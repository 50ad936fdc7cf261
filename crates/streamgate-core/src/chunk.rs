//! What layers need to know about a stream's items and a request.

use crate::Usage;

/// One item of a provider's stream, as the layers see it.
///
/// Every method has a default, so a type that only carries text needs an
/// empty `impl Chunk for MyChunk {}` (every item is then content).
pub trait Chunk {
    /// Whether this chunk carries content the caller is waiting for (text,
    /// reasoning or tool-call deltas). Role-only chunks, keep-alives, pings,
    /// content-filter annotations and `message_start` are not content.
    ///
    /// The first content chunk *commits* the stream: before it, a failure can
    /// still be retried elsewhere without the caller noticing.
    fn is_content(&self) -> bool {
        true
    }

    /// Usage reported in this chunk, if any. Reports are cumulative; layers
    /// merge them with [`Usage::merge`].
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// Output tokens in *this* delta, reported or estimated; used for live and
    /// burst throughput. Reported usage always wins for totals.
    fn output_tokens(&self) -> Option<u64> {
        None
    }
}

impl<C: Chunk + ?Sized> Chunk for Box<C> {
    fn is_content(&self) -> bool {
        (**self).is_content()
    }
    fn usage(&self) -> Option<Usage> {
        (**self).usage()
    }
    fn output_tokens(&self) -> Option<u64> {
        (**self).output_tokens()
    }
}

/// What layers need to know about a request.
///
/// `Clone` because failover and retries send the same request again.
pub trait LlmRequest: Clone {
    /// The model asked for; part of every quota, breaker and metrics key.
    fn model(&self) -> &str;

    /// Tokens this request is expected to consume (prompt plus expected
    /// output), used for TPM admission and pacing. Defaults to 0 (unknown).
    fn estimated_tokens(&self) -> u64 {
        0
    }
}
