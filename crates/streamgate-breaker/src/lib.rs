//! A circuit breaker tower layer that judges the whole LLM stream.
