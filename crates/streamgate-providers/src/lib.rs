//! Streaming LLM provider clients (OpenAI, Anthropic, Gemini, OpenAI-compatible) as tower services.
