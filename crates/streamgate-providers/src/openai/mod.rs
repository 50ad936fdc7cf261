//! OpenAI: Chat Completions (and compatible servers) and Responses.

mod azure;
mod chat;
mod responses;

pub use azure::{AzureBuilder, AzureOpenAi, AZURE_API_VERSION};
pub use chat::{ChatParser, ChatStream, OpenAiChat};
pub use responses::{OpenAiResponses, ResponsesParser, ResponsesStream};
