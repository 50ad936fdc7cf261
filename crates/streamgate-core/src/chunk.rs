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

    /// The output tokens every layer counts for this chunk, so that the TPM
    /// budget, metrics and the throughput probe agree: its
    /// [`output_tokens`](Self::output_tokens) when it says, otherwise one
    /// for a content chunk (the usual size of a streamed delta) and none for
    /// anything else.
    fn counted_output_tokens(&self) -> u64 {
        self.output_tokens()
            .unwrap_or_else(|| u64::from(self.is_content()))
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain(bool);
    impl Chunk for Plain {
        fn is_content(&self) -> bool {
            self.0
        }
    }

    struct Counted(u64);
    impl Chunk for Counted {
        fn output_tokens(&self) -> Option<u64> {
            Some(self.0)
        }
    }

    #[test]
    fn a_content_chunk_without_a_count_counts_as_one_token_and_anything_else_as_none() {
        assert_eq!(Plain(true).counted_output_tokens(), 1);
        assert_eq!(Plain(false).counted_output_tokens(), 0);
        // A count wins, content or not.
        assert_eq!(Counted(7).counted_output_tokens(), 7);
        assert_eq!(Box::new(Plain(true)).counted_output_tokens(), 1);
    }
}
