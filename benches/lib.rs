//! Shared helpers for the streamgate benchmarks.
