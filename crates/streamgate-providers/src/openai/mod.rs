//! OpenAI: Chat Completions (and compatible servers) and Responses.

mod chat;
mod responses;

pub use chat::{ChatParser, ChatStream, OpenAiChat};
pub use responses::{OpenAiResponses, ResponsesParser, ResponsesStream};
