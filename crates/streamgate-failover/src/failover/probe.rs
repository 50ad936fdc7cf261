//! The throughput probe: a look at the decode rate before a stream is
//! committed to the caller.

use std::{error::Error, fmt, time::Duration};

use futures_core::Stream;
use http::Response;
use streamgate_core::{BoxBody, BoxError, Chunk, Replay};
use tokio::time::Instant;

use crate::ConfigError;

/// Holds the first moments of a backend's stream before the router commits
/// it: up to `chunks` content chunks after the first, or `window`, whichever
/// comes first. If the content tokens over that span (a chunk without a
/// count is one token) arrive slower than `min_tokens_per_sec` and another
/// backend is left to try, the attempt is dropped (its request cancelled)
/// and the router fails over, recording it as [`SlowStart`]; otherwise
/// everything held is replayed, nothing lost or repeated.
///
/// The cost: the caller's first token comes up to `window` later. The last
/// remaining attempt is never probed.
///
/// ```
/// use std::time::Duration;
/// use streamgate_failover::ThroughputProbe;
///
/// // Eight chunks or 500 ms; slower than 20 tokens per second fails over.
/// let probe = ThroughputProbe::new(8, Duration::from_millis(500), 20.0);
/// # let _ = probe;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThroughputProbe {
    pub(crate) chunks: usize,
    pub(crate) window: Duration,
    pub(crate) min_tokens_per_sec: f64,
}

impl ThroughputProbe {
    /// Holds up to `chunks` content chunks after the first, or `window`;
    /// below `min_tokens_per_sec`, fails over.
    pub fn new(chunks: usize, window: Duration, min_tokens_per_sec: f64) -> Self {
        Self {
            chunks,
            window,
            min_tokens_per_sec,
        }
    }

    /// Content chunks held after the first, at most.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// How long the stream is held, at most.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The slowest acceptable start, in tokens per second.
    pub fn min_tokens_per_sec(&self) -> f64 {
        self.min_tokens_per_sec
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.chunks == 0 {
            return Err(ConfigError::new("probe chunks must be at least 1"));
        }
        if self.window.is_zero() || self.window > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "probe window must be above 0 and at most 60 s",
            ));
        }
        if !(self.min_tokens_per_sec.is_finite() && self.min_tokens_per_sec > 0.0) {
            return Err(ConfigError::new(format!(
                "probe floor {} is not a positive number of tokens per second",
                self.min_tokens_per_sec
            )));
        }
        Ok(())
    }

    /// Reads `response` for the probe's span, then either gives it back
    /// with everything it read held for replay, or fails with [`SlowStart`].
    pub(crate) async fn run<C: Chunk>(
        &self,
        response: Response<Replay<BoxBody<C>, C>>,
    ) -> Result<Response<Replay<BoxBody<C>, C>>, BoxError> {
        let (parts, mut body) = response.into_parts();
        let started = Instant::now();
        let deadline = started + self.window;
        let mut held = Vec::new();
        let (mut content, mut tokens, mut ended) = (0usize, 0u64, false);
        // The first content chunk is what committed; count what follows it.
        let mut seen_first = false;
        while content < self.chunks {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx));
            match tokio::time::timeout_at(deadline, next).await {
                Err(_) => break,
                Ok(None) => {
                    ended = true;
                    break;
                }
                // Before the caller saw anything: the router may still fail
                // over.
                Ok(Some(Err(error))) => return Err(error),
                Ok(Some(Ok(chunk))) => {
                    if chunk.is_content() {
                        if seen_first {
                            content += 1;
                            tokens = tokens.saturating_add(chunk.counted_output_tokens());
                        }
                        seen_first = true;
                    }
                    held.push(chunk);
                }
            }
        }
        let span = started.elapsed();
        // An ended stream, or one that filled the probe at once, is fast.
        if !ended && !span.is_zero() {
            let rate = tokens as f64 / span.as_secs_f64();
            if rate < self.min_tokens_per_sec {
                return Err(SlowStart {
                    tokens_per_sec: rate,
                    floor: self.min_tokens_per_sec,
                    over: span,
                }
                .into());
            }
        }
        body.hold_back(held, ended);
        Ok(Response::from_parts(parts, body))
    }
}

/// A stream whose first moments came slower than its backend's
/// [`ThroughputProbe`] floor; the router dropped it and failed over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    /// Content tokens per second over the probe's span.
    pub tokens_per_sec: f64,
    /// The probe's floor.
    pub floor: f64,
    /// How long the probe looked.
    pub over: Duration,
}

impl fmt::Display for SlowStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slow start: {:.1} tokens/s over {} ms, below the probe's floor of {} tokens/s",
            self.tokens_per_sec,
            self.over.as_millis(),
            self.floor
        )
    }
}

impl Error for SlowStart {}
