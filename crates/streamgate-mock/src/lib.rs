//! A scripted mock LLM provider server on loopback speaking OpenAI, Anthropic and Gemini streaming formats.
