//! The failover router: ordered backends, tried until one commits a stream.
//!
//! [`Failover`] holds backends in priority order (a waterfall), each a boxed
//! streaming service, typically the backend's own stack of layers around
//! its client (see [`boxed`](streamgate_core::boxed)). Each request is tried
//! backend by backend; an attempt ends when the stream is *committed* (its
//! first content chunk arrived, see [`Commit`](streamgate_core::Commit)) or
//! fails before that:
//!
//! - [`Rejected`](streamgate_core::Rejected) (a gate refused without calling
//!   the backend): skipped at once, no penalty, no retry;
//! - a retryable class (rate limited, overloaded, server, timeout, network,
//!   truncated): retried on the same backend up to
//!   [`retries`](FailoverBuilder::retries) times after a [`Backoff`] delay
//!   (Retry-After honoured up to a cap; a longer one moves on at once), then
//!   the next backend;
//! - client errors, content-filter refusals and cancellations: stop, and
//!   that error is returned as is (another backend would refuse the same
//!   way);
//! - context length: the next backend or stop, per [`ContextLengthPolicy`];
//! - anything else: the next backend, without retrying.
//!
//! **After commit there is no failover**, unless continuation is on (below).
//! The caller may already have shown tokens; a later failure reaches it as
//! an `Err` item of the [`FailoverBody`], never as a clean end.
//!
//! # Strategies and the scoreboard
//!
//! A [`Strategy`] orders the backends for each request (ordered by
//! default; round-robin, weighted, least time to first content, power of
//! two choices, sticky per session). The router then reads its
//! [`Scoreboard`](streamgate_core::scoreboard::Scoreboard): a backend whose
//! gate is known to refuse is skipped without a call (recorded as a
//! rejected attempt, with its retry time), and a deprioritised one (late
//! to first content, or below its minimum throughput) is tried after the
//! others. Slowness only ever deprioritises, so the pool never empties.
//!
//! # Hedging
//!
//! With [`hedge`](FailoverBuilder::hedge), a first choice that has produced
//! no content after a delay (fixed, or a learned percentile of its time to
//! first content) gets company: the same request starts on the next
//! available choice, the first to produce content is committed and the
//! other is dropped (its request cancelled, recorded as cancelled, listed in
//! the report). A budget caps the share of hedged requests. See [`Hedge`].
//!
//! # Throughput probe
//!
//! With [`throughput_probe`](FailoverBuilder::throughput_probe), a backend's
//! stream is held for a few chunks or milliseconds after its first content;
//! if it decodes slower than a floor and another backend is left, it is
//! dropped and the router fails over ([`SlowStart`]). See
//! [`ThroughputProbe`].
//!
//! # Mid-stream continuation
//!
//! With [`continuation`](FailoverBuilder::continuation) (opt in), a
//! committed stream that fails with a retryable class is continued: the
//! same request, the text received so far as an assistant prefill
//! ([`Continuable`](streamgate_core::Continuable)), goes to the
//! strategy's next available backend that declares a
//! [`Prefill`](streamgate_core::Prefill) mechanism
//! ([`continues_with`](FailoverBuilder::continues_with)), within its
//! first-content deadline, and its stream is spliced onto the caller's
//! [`FailoverBody`]. Text the new backend repeats is dropped by an overlap
//! rule; when the overlap cannot be established, or the stream carried a
//! tool call, the original error item stands. Emits `Continuation { from,
//! to, model, tokens_before }`; the response carries a [`ContinuationLog`].
//! See [`Continuation`].
//!
//! The overlap rule: let *R* be the text the caller received and *N* the
//! continuing stream's text so far, held back until the rule decides.
//! *N* starting with the whole of *R* is a repeat (the prefill was
//! ignored): *R* is dropped from it. *N* still a prefix of *R*: read more.
//! *N* differing from *R* within *R*'s first word (up to its first
//! character that is not alphanumeric): a continuation, passed on (less
//! the whitespace left out of an Anthropic prefill, when *N* starts with
//! it). Otherwise (*N* repeats at least *R*'s first word, then differs):
//! unknown, abandoned.
//!
//! When every backend refused (none was called), the router can wait for
//! the earliest `retry_after` and try again, up to a total wait
//! ([`wait_when_unavailable`](FailoverBuilder::wait_when_unavailable),
//! reported as a `Throttled` event). Otherwise it fails with a
//! [`FailoverError`](streamgate_core::FailoverError) listing every attempt,
//! e.g. "all 3 backends unavailable: openai circuit open (retry in 12 s), …".
//!
//! # One first-content deadline
//!
//! Each attempt has one first-content deadline, and the last remaining
//! attempt (the last backend's last try, when no slow backend waits for the
//! last-resort pass) may get extra time
//! ([`last_attempt_extra`](FailoverBuilder::last_attempt_extra)). Who owns
//! it depends on how the backend was added:
//!
//! - [`backend_with_deadline`](FailoverBuilder::backend_with_deadline)
//!   (what `streamgate::Backends` does): the stack's own
//!   `FirstChunkTimeoutLayer`, innermost, cuts the attempt, so the breaker,
//!   the quota and TPM gates and metrics all see a cut attempt as a
//!   timeout (a silent backend opens its breaker). For the last remaining
//!   attempt the router calls the backend's `extended` stack, whose deadline
//!   includes the extra time. The router never races such a backend.
//! - [`backend`](FailoverBuilder::backend) /
//!   [`service`](FailoverBuilder::service): the router races the attempt
//!   against [`first_content_timeout`](FailoverBuilder::first_content_timeout)
//!   (plus the extra time for the last attempt) and drops it on expiry.
//!   The layers inside see that drop as a cancellation, not as a timeout,
//!   so prefer a timeout layer in the stack and `backend_with_deadline`.
//!
//! Emits `Failover { from, to, reason }` when it moves on from a backend, and
//! puts a [`FailoverReport`] (who served, and every attempt skipped before)
//! in the response's extensions.

mod backoff;
mod body;
mod builder;
mod continuation;
mod hedge;
mod probe;
mod service;
mod strategy;

pub use backoff::{Backoff, MAX_BACKOFF_DELAY};
pub use body::FailoverBody;
pub use builder::{ContextLengthPolicy, FailoverBuilder};
pub use continuation::{
    Abandoned, Continuation, ContinuationLog, Continued, MAX_CONTINUATIONS, MAX_PREFILL_BYTES,
};
pub use hedge::{
    Hedge, HedgeDelay, DEFAULT_HEDGE_BUDGET, DEFAULT_HEDGE_FLOOR, DEFAULT_HEDGE_MIN_SAMPLES,
    DEFAULT_HEDGE_PERCENTILE, HEDGE_BURST,
};
pub use probe::{SlowStart, ThroughputProbe};
pub use service::{Failover, FailoverFuture, FailoverReport};
pub use strategy::Strategy;
