//! The request type every adapter accepts.

use serde_json::{Map, Value};
use streamgate_core::{Continuable, LlmRequest, Prefill};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Instructions (OpenAI `system`, Anthropic `system`, Gemini
    /// `systemInstruction`).
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The OpenAI / Anthropic spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message of `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A streaming chat request, translated by each adapter into its provider's
/// wire shape (OpenAI `messages`, Responses `input`, Anthropic `messages` +
/// `system`, Gemini `contents` + `systemInstruction`).
///
/// One type for every provider so that backends of different providers can
/// sit behind one failover router. `tools` and `extra` are passed through
/// as JSON in the provider's own shape.
///
/// # Token estimate
///
/// [`LlmRequest::estimated_tokens`] is: the UTF-8 bytes of every message and
/// of the serialised `tools` divided by four (rounded up), plus four tokens
/// of framing per message, plus `max_tokens` when set (providers count the
/// requested output against the TPM limit at admission). It is an estimate
/// for admission only; reported usage replaces it at the end of the stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The model, e.g. `gpt-4o-mini`, `claude-sonnet-4-5`, `gemini-2.5-flash`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Maximum output tokens. Anthropic requires one; its adapter sends
    /// 4096 when unset.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Tool definitions in the provider's own JSON shape, passed through.
    pub tools: Option<Value>,
    /// Further top-level fields merged into the request body as they are
    /// (e.g. `response_format`, `reasoning`, `top_p`).
    pub extra: Map<String, Value>,
    /// The final assistant message is a prefill the model continues, sent
    /// per this mechanism: the OpenAI Chat adapter marks it `"prefix":
    /// true` for [`Prefill::AssistantPrefix`]; the other mechanisms need
    /// no mark. Set by [`Continuable::continued`].
    pub prefill: Option<Prefill>,
}

impl ChatRequest {
    /// A request for `model` with no messages yet.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            messages: Vec::new(),
            max_tokens: None,
            temperature: None,
            tools: None,
            extra: Map::new(),
            prefill: None,
        }
    }

    /// Appends a message.
    #[must_use]
    pub fn with_message(mut self, role: Role, content: impl Into<String>) -> Self {
        self.messages.push(Message::new(role, content));
        self
    }

    /// Appends a system message.
    #[must_use]
    pub fn with_system(self, content: impl Into<String>) -> Self {
        self.with_message(Role::System, content)
    }

    /// Appends a user message.
    #[must_use]
    pub fn with_user(self, content: impl Into<String>) -> Self {
        self.with_message(Role::User, content)
    }

    /// Appends an assistant message.
    #[must_use]
    pub fn with_assistant(self, content: impl Into<String>) -> Self {
        self.with_message(Role::Assistant, content)
    }

    /// Sends the same request to another model (e.g. the name a backend
    /// knows it by).
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the maximum output tokens.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the tool definitions (provider JSON shape).
    #[must_use]
    pub fn with_tools(mut self, tools: Value) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sets a further top-level body field.
    #[must_use]
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// Adds the tools and the extra fields (which win) to a body object.
    #[cfg_attr(
        not(any(
            feature = "openai",
            feature = "anthropic",
            feature = "gemini",
            feature = "ollama",
            feature = "async-openai"
        )),
        allow(dead_code)
    )]
    pub(crate) fn finish_body(&self, mut body: Map<String, Value>) -> Value {
        // Every provider takes tools under the same key, passed through as
        // given; extra fields go last so they can override anything.
        if let Some(tools) = &self.tools {
            body.insert("tools".into(), tools.clone());
        }
        for (key, value) in &self.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

/// The partial answer becomes the final assistant message (appended to one
/// the request already ends with), as [`Prefill::text`] gives it; then:
///
/// | [`Prefill`] | the body |
/// |---|---|
/// | `FinalAssistant` (Anthropic) | the final `assistant` message, trailing whitespace left out |
/// | `AssistantPrefix` (DeepSeek, Mistral) | the final `assistant` message with `"prefix": true` |
/// | `ContinueFinalMessage` (vLLM) | `"continue_final_message": true, "add_generation_prompt": false` |
/// | `ModelTurn` (Gemini) | a final `model` turn in `contents` |
///
/// Each variant of [`Prefill`] links its provider's documentation and says
/// which models refuse it.
impl Continuable for ChatRequest {
    fn continued(&self, partial: &str, how: Prefill) -> Option<Self> {
        let mut request = self.clone();
        let mut text = match request.messages.last() {
            Some(last) if last.role == Role::Assistant => request
                .messages
                .pop()
                .map(|m| m.content)
                .unwrap_or_default(),
            _ => String::new(),
        };
        text.push_str(partial);
        let text = how.text(&text);
        if text.is_empty() {
            return Some(self.clone());
        }
        request.messages.push(Message::new(Role::Assistant, text));
        request.prefill = Some(how);
        if how == Prefill::ContinueFinalMessage {
            request
                .extra
                .insert("continue_final_message".into(), Value::Bool(true));
            request
                .extra
                .insert("add_generation_prompt".into(), Value::Bool(false));
        }
        Some(request)
    }
}

impl LlmRequest for ChatRequest {
    fn model(&self) -> &str {
        &self.model
    }

    fn estimated_tokens(&self) -> u64 {
        let text: usize = self.messages.iter().map(|m| m.content.len()).sum();
        let tools = self.tools.as_ref().map_or(0, |t| t.to_string().len());
        let framing = 4 * self.messages.len() as u64;
        ((text + tools) as u64).div_ceil(4) + framing + u64::from(self.max_tokens.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_extends_a_final_assistant_message_or_adds_one() {
        let request = ChatRequest::new("m").with_user("hi");
        let Some(continued) = request.continued("Hello ", Prefill::FinalAssistant) else {
            panic!("a chat request always continues");
        };
        // Anthropic refuses a final assistant message ending in whitespace.
        assert_eq!(
            continued.messages[1],
            Message::new(Role::Assistant, "Hello")
        );
        assert_eq!(continued.prefill, Some(Prefill::FinalAssistant));
        let Some(again) = continued.continued(" world", Prefill::ModelTurn) else {
            panic!("a chat request always continues");
        };
        assert_eq!(again.messages.len(), 2);
        assert_eq!(again.messages[1].content, "Hello world");
        // Nothing to prefill: the request as it was.
        assert_eq!(
            request.continued("  ", Prefill::FinalAssistant),
            Some(request)
        );
    }

    #[test]
    fn estimate_counts_text_framing_tools_and_max_tokens() {
        let request = ChatRequest::new("m")
            .with_system("12345678")
            .with_user("1234")
            .with_max_tokens(100);
        // (8 + 4) / 4 = 3, plus 2 * 4 framing, plus 100.
        assert_eq!(request.estimated_tokens(), 111);
        let with_tools = request.with_tools(serde_json::json!(["abcd"]));
        // `["abcd"]` is 8 bytes: (12 + 8) / 4 = 5.
        assert_eq!(with_tools.estimated_tokens(), 113);
        assert_eq!(with_tools.model(), "m");
    }
}
