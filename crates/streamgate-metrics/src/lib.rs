//! Metrics for streaming LLM calls: a measuring layer, an in-memory performance tracker and sinks.
