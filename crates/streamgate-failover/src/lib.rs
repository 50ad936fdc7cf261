//! Sliding TPM meter, TPM budget and minimum-throughput gates, and a failover router for LLM backends.
