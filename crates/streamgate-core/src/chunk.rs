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

    /// The visible text of this chunk when that is all the content it
    /// carries (`Some("")` for a chunk without content); `None` when it
    /// carries content that is not plain text (a tool-call or reasoning
    /// delta) or its type does not say (the default).
    ///
    /// Mid-stream continuation only resumes a stream whose content so far
    /// was all text: that text becomes the assistant prefill.
    fn content_text(&self) -> Option<&str> {
        None
    }

    /// Whether this chunk carries a tool call's name or arguments. A stream
    /// that did is never continued (default `false`).
    fn is_tool_call(&self) -> bool {
        false
    }

    /// Removes the first `bytes` bytes of this chunk's text, when `bytes`
    /// is at most its length and on a character boundary, and says whether
    /// it did (default: never). Continuation uses it to drop text a
    /// continuing backend repeated.
    fn strip_text_prefix(&mut self, bytes: usize) -> bool {
        let _ = bytes;
        false
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
    fn content_text(&self) -> Option<&str> {
        (**self).content_text()
    }
    fn is_tool_call(&self) -> bool {
        (**self).is_tool_call()
    }
    fn strip_text_prefix(&mut self, bytes: usize) -> bool {
        (**self).strip_text_prefix(bytes)
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

/// How a backend continues a partial answer given as an assistant prefill
/// (see [`Continuable`]).
///
/// Each mechanism as its provider documents it. Whether a model accepts a
/// prefill is the model's, not the wire format's: declare a mechanism only
/// for a backend whose models accept it. A backend that refuses the prefill
/// (a 400) fails before content, which the router treats as a continuation
/// that failed: the next able backend is tried, or the caller gets the
/// original error. No mechanism resumes a partial tool call: Anthropic
/// `tool_use` input, OpenAI-compatible `tool_calls` and Gemini
/// `functionCall` arguments are sent back only whole, and a prefill is text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prefill {
    /// A final `assistant` message is continued as it is (Anthropic
    /// Messages). Anthropic refuses a final assistant message that ends in
    /// whitespace, so the trailing whitespace is left out of the prefill,
    /// and does not allow a prefill with extended thinking
    /// (<https://platform.claude.com/docs/en/build-with-claude/prompt-engineering/prefill-claudes-response>).
    /// Claude 4.6 and later models refuse any prefill with a 400
    /// (<https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-6#prefill-removal>):
    /// declare it only for a backend serving earlier models.
    FinalAssistant,
    /// The final `assistant` message is marked `"prefix": true`
    /// (OpenAI-compatible servers with prefix completion): DeepSeek, on its
    /// beta base URL `https://api.deepseek.com/beta` only
    /// (<https://api-docs.deepseek.com/guides/chat_prefix_completion>), and
    /// Mistral (`prefix` on an assistant message,
    /// <https://docs.mistral.ai/api/>).
    AssistantPrefix,
    /// The body gets `"continue_final_message": true` and
    /// `"add_generation_prompt": false` (the two cannot both be true, and the
    /// second defaults to true), so the chat template leaves the final
    /// assistant message open (vLLM's OpenAI-compatible server, extra
    /// parameters of the Chat API:
    /// <https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html>).
    ContinueFinalMessage,
    /// A final `model` turn in `contents` (Gemini). Gemini 3.6 Flash,
    /// Gemini 3.5 Flash-Lite and every later model refuse a request that ends
    /// with a model turn (a 400)
    /// (<https://ai.google.dev/gemini-api/docs/latest-model>): declare it
    /// only for a backend serving earlier models.
    ModelTurn,
}

impl Prefill {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FinalAssistant => "final_assistant",
            Self::AssistantPrefix => "assistant_prefix",
            Self::ContinueFinalMessage => "continue_final_message",
            Self::ModelTurn => "model_turn",
        }
    }

    /// The prefill as sent for `partial`: what the provider accepts as
    /// the final assistant text.
    pub fn text(self, partial: &str) -> &str {
        match self {
            Self::FinalAssistant => partial.trim_end(),
            _ => partial,
        }
    }
}

/// A request that can be sent again with part of its answer as an
/// assistant prefill, for mid-stream continuation.
pub trait Continuable: LlmRequest {
    /// The same request, its answer so far being `partial`, for a backend
    /// that continues per `how`; `None` when it cannot be expressed (the
    /// router then does not continue on that backend).
    fn continued(&self, partial: &str, how: Prefill) -> Option<Self>;
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
