//! The chunk type every adapter yields.

use std::time::Duration;

use streamgate_core::{Chunk, Usage};

/// What a provider event was, normalised across providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChunkKind {
    /// The stream opened: OpenAI's role-only first chunk, Anthropic
    /// `message_start` / `content_block_start`, Responses `response.created`.
    Start,
    /// A text, reasoning or tool-call delta.
    #[default]
    Delta,
    /// A keep-alive (Anthropic `ping`).
    Ping,
    /// A content-filter annotation without content (Azure's
    /// `prompt_filter_results` chunk).
    Filter,
    /// A usage report without content (OpenAI's final `choices: []` chunk,
    /// Anthropic `message_delta`, Responses `response.completed`).
    Usage,
    /// The provider's end-of-message event (Anthropic `message_stop`).
    Stop,
    /// Any other event the adapter passes along (Responses lifecycle events).
    Other,
}

/// A partial tool call: the arguments arrive as string fragments keyed by
/// `index`; `id` and `name` come with the first fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Which tool call of the message this fragment belongs to.
    pub index: u32,
    /// The call id, on the first fragment.
    pub id: Option<String>,
    /// The function name, on the first fragment.
    pub name: Option<String>,
    /// A fragment of the JSON arguments (may be empty on the first one).
    pub arguments: String,
}

/// One streamed item from any adapter in this crate.
///
/// The same type for every provider, so backends of different providers can
/// sit behind one failover router.
///
/// [`Chunk::is_content`] is true when the chunk carries text, reasoning or a
/// tool-call delta (even one whose arguments are still empty: it names the
/// call). Role-only chunks, filter annotations, pings, `message_start` and
/// lifecycle events are not content.
///
/// [`Chunk::output_tokens`] is the provider's own count for this delta when
/// the adapter can derive it (Gemini's cumulative `candidatesTokenCount`
/// differences), otherwise an estimate: the delta's UTF-8 length divided by
/// four, rounded up, and at least one for a content chunk (providers send
/// roughly one token per delta). Reported [`usage`](Chunk::usage) always wins
/// for totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatChunk {
    /// What the provider event was.
    pub kind: ChunkKind,
    /// Visible text in this delta.
    pub text: String,
    /// Reasoning / thinking text in this delta.
    pub reasoning: String,
    /// Tool-call fragments in this delta.
    pub tool_calls: Vec<ToolCallDelta>,
    /// Usage reported in this chunk (cumulative; merge with [`Usage::merge`]).
    pub usage: Option<Usage>,
    /// Why generation stopped, on the chunk that says so.
    pub finish_reason: Option<String>,
    /// The model that answered, on the first chunk that names it.
    pub model: Option<String>,
    /// The provider's count of output tokens in this delta, when known.
    pub reported_output_tokens: Option<u64>,
    /// The provider's own measure of the request's latency, on the chunk
    /// that reports it (Bedrock `metadata.metrics.latencyMs`).
    pub provider_latency: Option<Duration>,
}

impl ChatChunk {
    /// An empty chunk of `kind`.
    pub fn new(kind: ChunkKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// A text delta.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::new(ChunkKind::Delta)
        }
    }

    /// The estimate used when the provider reports no per-delta count: UTF-8
    /// bytes of text, reasoning and tool arguments divided by four, rounded
    /// up, at least one for a content chunk and zero otherwise.
    pub fn estimated_output_tokens(&self) -> u64 {
        if !self.is_content() {
            return 0;
        }
        let bytes = self.text.len()
            + self.reasoning.len()
            + self
                .tool_calls
                .iter()
                .map(|call| call.arguments.len())
                .sum::<usize>();
        (bytes as u64).div_ceil(4).max(1)
    }
}

impl Chunk for ChatChunk {
    fn is_content(&self) -> bool {
        !self.text.is_empty() || !self.reasoning.is_empty() || !self.tool_calls.is_empty()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn output_tokens(&self) -> Option<u64> {
        if let Some(reported) = self.reported_output_tokens {
            return Some(reported);
        }
        self.is_content().then(|| self.estimated_output_tokens())
    }

    /// The text, unless the chunk carries reasoning or tool-call deltas.
    fn content_text(&self) -> Option<&str> {
        (self.reasoning.is_empty() && self.tool_calls.is_empty()).then_some(self.text.as_str())
    }

    fn is_tool_call(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    fn strip_text_prefix(&mut self, bytes: usize) -> bool {
        if !self.text.is_char_boundary(bytes) {
            return false;
        }
        self.text.drain(..bytes);
        // The estimate follows the text that is left.
        self.reported_output_tokens = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_text_chunks_are_not_content() {
        assert!(!ChatChunk::new(ChunkKind::Start).is_content());
        assert!(!ChatChunk::text("").is_content());
        assert!(ChatChunk::text("a").is_content());
    }

    #[test]
    fn tool_call_with_empty_arguments_is_content() {
        let mut chunk = ChatChunk::new(ChunkKind::Delta);
        chunk.tool_calls.push(ToolCallDelta {
            index: 0,
            id: Some("call_1".into()),
            name: Some("get_weather".into()),
            arguments: String::new(),
        });
        assert!(chunk.is_content());
        assert_eq!(chunk.output_tokens(), Some(1));
    }

    #[test]
    fn output_tokens_estimates_four_bytes_per_token_unless_reported() {
        assert_eq!(ChatChunk::text("abcdefghi").output_tokens(), Some(3));
        assert_eq!(ChatChunk::new(ChunkKind::Ping).output_tokens(), None);
        let mut reported = ChatChunk::text("abcdefghi");
        reported.reported_output_tokens = Some(7);
        assert_eq!(reported.output_tokens(), Some(7));
    }
}
