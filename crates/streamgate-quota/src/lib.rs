//! Rate-limit header parsing, quota tracking and pacing for LLM backends.
