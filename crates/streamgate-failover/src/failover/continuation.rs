//! Mid-stream continuation: a committed stream that fails after content is
//! continued on another backend from the text received so far, and the
//! two streams are spliced into the one the caller reads.
//!
//! # The overlap rule
//!
//! Let *R* be the text the caller has received and *N* the text of the
//! continuing stream so far (held back, unseen by the caller, until the
//! rule decides):
//!
//! 1. *N* starts with the whole of *R*: the backend ignored the prefill and
//!    answered from the start. *R* is dropped from *N*; the rest goes on.
//! 2. *N* is still a prefix of *R*: undecided, read more (the continuing
//!    stream ending here is undecidable).
//! 3. *N* and *R* differ within *R*'s first word (up to and including its
//!    first character that is not alphanumeric): the backend continued.
//!    *N* goes on as it is, less the whitespace left out of the prefill
//!    when *N* starts with it ([`Prefill::text`]: Anthropic refuses a
//!    prefill that ends in whitespace).
//! 4. Otherwise (*N* repeats at least *R*'s first word, then differs): the
//!    overlap cannot be established. The continuation is abandoned and the
//!    caller gets the original error item.
//!
//! The rule favours never showing text twice over continuing: an honoured
//! prefill whose continuation happens to begin with the answer's first
//! word is abandoned (rule 4) or, if it begins with the whole received
//! text, taken as a repeat (rule 1). Text without separators (CJK) is one
//! word: a regenerated answer that shares a first part of it and then
//! differs is taken as a continuation.
//!
//! # The mechanisms
//!
//! The request type adds the prefill ([`Continuable`](streamgate_core::Continuable));
//! a backend declares how it takes one ([`Prefill`]), as its provider
//! documents it:
//!
//! | [`Prefill`] | provider | documented at | refused by |
//! |---|---|---|---|
//! | `FinalAssistant` | Anthropic Messages | <https://platform.claude.com/docs/en/build-with-claude/prompt-engineering/prefill-claudes-response> | a prefill ending in whitespace (left out here); extended thinking; Claude 4.6 and later (<https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-6#prefill-removal>) |
//! | `AssistantPrefix` | DeepSeek (beta base URL), Mistral | <https://api-docs.deepseek.com/guides/chat_prefix_completion>, <https://docs.mistral.ai/api/> | DeepSeek's non-beta base URL |
//! | `ContinueFinalMessage` | vLLM | <https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html> | `add_generation_prompt: true` (sent false) |
//! | `ModelTurn` | Gemini | <https://ai.google.dev/gemini-api/docs/latest-model> | Gemini 3.6 Flash, 3.5 Flash-Lite and later |
//!
//! A refusal is a continuing attempt that fails before content: the next
//! able backend is tried, or the caller gets the original error. None of
//! these resumes a partial tool call (tool arguments go back only whole),
//! so a stream that carried one is never continued. A server that
//! repeats the prefill in its answer, or ignores it, is what the overlap
//! rule is for.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{ready, Context, Poll},
    time::Duration,
};

use futures_core::Stream;
use http::Response;
use streamgate_core::{
    emit, BackendId, BoxBody, BoxError, Chunk, Event, LlmRequest, Prefill, Replay, Usage,
};
use tokio::time::Instant;

use super::service::{commit, plan, Inner, Step};
use crate::ConfigError;

/// The most continuations per request a router may be configured with.
pub const MAX_CONTINUATIONS: u32 = 8;

/// The most text the router keeps for a prefill (1 MiB): a stream that
/// failed after more is not continued.
pub const MAX_PREFILL_BYTES: usize = 1 << 20;

/// Mid-stream continuation settings (opt in with
/// [`FailoverBuilder::continuation`](super::FailoverBuilder::continuation)).
///
/// When a committed stream fails with a retryable class (network cut,
/// truncation, idle timeout, an in-band overloaded or server error after
/// content), the router sends the same request with the text received so far
/// as an assistant prefill to the strategy's next available backend that
/// declares a [`Prefill`] mechanism
/// ([`continues_with`](super::FailoverBuilder::continues_with)), within that
/// backend's first-content deadline, and splices its stream onto the
/// caller's: one stream, no gap, no text twice (see the overlap rule on
/// [`Failover`](crate::Failover)).
///
/// Never continued: a stream that carried a tool call or reasoning (no
/// provider resumes partial tool arguments from a prefill), one that failed
/// with a class that is not retryable, one whose text passed
/// [`MAX_PREFILL_BYTES`].
///
/// ```
/// use std::time::Duration;
/// use streamgate_failover::Continuation;
///
/// // Up to two continuations, none started 60 s after the request.
/// let continuation = Continuation::new().max(2).total(Duration::from_secs(60));
/// # let _ = continuation;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub(crate) max: u32,
    pub(crate) total: Option<Duration>,
}

impl Default for Continuation {
    fn default() -> Self {
        Self::new()
    }
}

impl Continuation {
    /// One continuation per request, no total deadline.
    pub fn new() -> Self {
        Self {
            max: 1,
            total: None,
        }
    }

    /// Continuations per request, each counting one backend tried (1 to
    /// [`MAX_CONTINUATIONS`]; default 1).
    pub fn max(mut self, max: u32) -> Self {
        self.max = max;
        self
    }

    /// The request's total time, from the router's call: no continuation
    /// starts after it, and a continuing backend's first-content deadline
    /// is cut to what is left (default: none).
    pub fn total(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_CONTINUATIONS).contains(&self.max) {
            return Err(ConfigError::new(format!(
                "continuation max must be 1 to {MAX_CONTINUATIONS}"
            )));
        }
        if self.total.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("continuation total must be above 0"));
        }
        Ok(())
    }
}

/// Makes a request continue from a partial answer (`Continuable::continued`).
pub(crate) type ContinueFn<Req> = Arc<dyn Fn(&Req, &str, Prefill) -> Option<Req> + Send + Sync>;

/// The router's continuation settings with the request's way to continue.
pub(crate) struct Continues<Req> {
    pub(crate) settings: Continuation,
    pub(crate) continued: ContinueFn<Req>,
}

/// Why a failed stream was not continued (see [`ContinuationLog::abandoned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Abandoned {
    /// The stream carried a tool call.
    ToolCall,
    /// The stream carried content other than text (reasoning, or a chunk
    /// type that does not expose its text).
    NotText,
    /// The error's class is not retryable.
    NotRetryable,
    /// The received text passed [`MAX_PREFILL_BYTES`].
    TooLong,
    /// Every continuation allowed was used.
    MaxReached,
    /// The total deadline had passed.
    Deadline,
    /// No other available backend declares a way to continue.
    NoBackend,
    /// The continuing backend failed before its text could be spliced.
    Failed,
    /// The overlap between the received and the new text could not be
    /// established.
    OverlapUnknown,
}

impl Abandoned {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToolCall => "tool_call",
            Self::NotText => "not_text",
            Self::NotRetryable => "not_retryable",
            Self::TooLong => "too_long",
            Self::MaxReached => "max_reached",
            Self::Deadline => "deadline",
            Self::NoBackend => "no_backend",
            Self::Failed => "failed",
            Self::OverlapUnknown => "overlap_unknown",
        }
    }
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One continuation that was spliced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Continued {
    /// The backend whose stream failed.
    pub from: BackendId,
    /// The backend that continued it.
    pub to: BackendId,
    /// Output tokens the caller had received before.
    pub tokens_before: u64,
    /// Bytes of text the continuing backend repeated, dropped (overlap
    /// rules 1 and 3).
    pub dropped_bytes: usize,
}

#[derive(Debug, Default)]
struct LogState {
    continued: Vec<Continued>,
    /// Each attempt's usage, merged over its reports.
    usage: Vec<Option<Usage>>,
    abandoned: Option<Abandoned>,
}

/// What continuation did for one response: in the extensions of every
/// response of a router with continuation on, a shared handle the caller
/// keeps (clone it out of the extensions) and reads after the stream
/// ended.
#[derive(Clone, Debug, Default)]
pub struct ContinuationLog {
    state: Arc<Mutex<LogState>>,
}

impl ContinuationLog {
    fn with<T>(&self, f: impl FnOnce(&mut LogState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The continuations spliced, in order.
    pub fn continued(&self) -> Vec<Continued> {
        self.with(|s| s.continued.clone())
    }

    /// Why the last failure was not continued, if one was not.
    pub fn abandoned(&self) -> Option<Abandoned> {
        self.with(|s| s.abandoned)
    }

    /// The sum of every attempt's usage (each attempt's reports merged):
    /// what the stream was billed, the prefill counted as input of the
    /// continuing attempt. `None` when no attempt reported usage.
    pub fn usage(&self) -> Option<Usage> {
        self.with(|s| {
            s.usage
                .iter()
                .flatten()
                .copied()
                .reduce(Usage::saturating_add)
        })
    }

    fn observe(&self, usage: Option<Usage>) {
        if usage.is_some() {
            self.with(|s| match s.usage.last_mut() {
                Some(acc) => Usage::merge_option(acc, usage),
                None => s.usage.push(usage),
            });
        }
    }
}

/// What a continuing attempt commits to.
type Committed<C> = Response<Replay<BoxBody<C>, C>>;
type CommitFuture<C> = Pin<Box<dyn Future<Output = Result<Committed<C>, BoxError>> + Send>>;

/// The part of [`FailoverBody`](super::FailoverBody) that splices; erased
/// so the body stays generic over the chunk only.
pub(crate) trait Splicing<C>: Send {
    fn poll_next(
        &mut self,
        body: &mut Replay<BoxBody<C>, C>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<C, BoxError>>>;
}

enum State<C> {
    /// Passing the current attempt's stream through.
    Streaming,
    /// A continuing attempt is on its way to its first content.
    Starting {
        error: BoxError,
        to: usize,
        tail: usize,
        future: CommitFuture<C>,
    },
    /// The continuing stream is held until the overlap rule decides.
    Aligning {
        error: BoxError,
        to: usize,
        tail: usize,
        held: Vec<C>,
        text: String,
    },
    /// A final error was given: the stream is over.
    Done,
}

/// The splicing state of one response.
pub(crate) struct Splice<Req, C> {
    inner: Arc<Inner<Req, C>>,
    request: Req,
    log: ContinuationLog,
    /// Backends tried for this stream.
    used: Vec<usize>,
    /// The backend whose stream the caller is reading.
    current: usize,
    deadline: Option<Instant>,
    left: u32,
    received: String,
    tokens: u64,
    /// Set once the stream carried content other than text.
    not_text: Option<Abandoned>,
    state: State<C>,
}

impl<Req, C> Splice<Req, C>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    /// The splice for a stream `served_by` committed, or `None` when the
    /// router does not continue.
    pub(crate) fn new(
        inner: &Arc<Inner<Req, C>>,
        request: &Req,
        served_by: usize,
        started: Instant,
    ) -> Option<(Self, ContinuationLog)> {
        let settings = inner.continuation.as_ref()?.settings;
        let log = ContinuationLog::default();
        let splice = Self {
            inner: Arc::clone(inner),
            request: request.clone(),
            log: log.clone(),
            used: vec![served_by],
            current: served_by,
            deadline: settings.total.map(|total| started + total),
            left: settings.max,
            received: String::new(),
            tokens: 0,
            not_text: None,
            state: State::Streaming,
        };
        Some((splice, log))
    }

    /// Records a chunk the caller gets.
    fn observe(&mut self, chunk: &C) {
        self.log.observe(chunk.usage());
        if !chunk.is_content() || self.not_text.is_some() {
            return;
        }
        self.tokens = self
            .tokens
            .saturating_add(chunk.output_tokens().unwrap_or(1));
        match chunk.content_text() {
            _ if chunk.is_tool_call() => self.not_text = Some(Abandoned::ToolCall),
            None => self.not_text = Some(Abandoned::NotText),
            Some(text) if self.received.len() + text.len() > MAX_PREFILL_BYTES => {
                // Stop copying: this stream will not be continued.
                self.not_text = Some(Abandoned::TooLong);
                self.received = String::new();
            }
            Some(text) => self.received.push_str(text),
        }
    }

    /// The current stream failed with `error`: starts a continuation, or
    /// gives the error back to be yielded.
    fn begin(&mut self, error: BoxError) -> Result<(), BoxError> {
        let reason = if let Some(reason) = self.not_text {
            Some(reason)
        } else if !self.inner.classifier.classify(&*error).is_retryable() {
            Some(Abandoned::NotRetryable)
        } else if self.left == 0 {
            Some(Abandoned::MaxReached)
        } else if self.deadline.is_some_and(|at| Instant::now() >= at) {
            Some(Abandoned::Deadline)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(self.abandon(reason, error));
        }
        match self.start() {
            Some((to, tail, future)) => {
                self.left -= 1;
                self.state = State::Starting {
                    error,
                    to,
                    tail,
                    future,
                };
                Ok(())
            }
            None => Err(self.abandon(Abandoned::NoBackend, error)),
        }
    }

    /// A continuing attempt failed before its text was spliced: the next
    /// one, if any is left.
    fn retry(&mut self, error: BoxError) -> Result<(), BoxError> {
        if self.left == 0 {
            return Err(self.abandon(Abandoned::Failed, error));
        }
        self.begin(error)
    }

    fn abandon(&mut self, reason: Abandoned, error: BoxError) -> BoxError {
        self.log.with(|s| s.abandoned = Some(reason));
        self.state = State::Done;
        error
    }

    /// The strategy's next available backend that can continue, its
    /// prefilled request sent: the backend, the bytes of whitespace left
    /// out of the prefill, and its commit.
    fn start(&mut self) -> Option<(usize, usize, CommitFuture<C>)> {
        let continues = self.inner.continuation.as_ref()?;
        let now = Instant::now();
        let left = self.deadline.map(|at| at.saturating_duration_since(now));
        for step in plan(&self.inner, &self.request) {
            let Step::Call(i) = step else { continue };
            let member = &self.inner.backends[i];
            let Some(how) = member.continues.filter(|_| !self.used.contains(&i)) else {
                continue;
            };
            let Some(request) = (continues.continued)(&self.request, &self.received, how) else {
                continue;
            };
            // A stack that owns its first-content deadline keeps it; the
            // total deadline may cut it shorter.
            let own = match member.deadline {
                Some(_) => None,
                None => self.inner.first_content_timeout,
            };
            let deadline = match (own, left) {
                (Some(own), Some(left)) => Some(own.min(left)),
                (own, left) => own.or(left),
            };
            let tail = self.received.len() - how.text(&self.received).len();
            self.used.push(i);
            let future = Box::pin(commit(member.service.call_clone(request), deadline, None));
            return Some((i, tail, future));
        }
        None
    }

    /// The overlap rule decided: splices the held chunks, less `drop`
    /// bytes of text, onto the caller's stream.
    fn splice(
        &mut self,
        body: &mut Replay<BoxBody<C>, C>,
        to: usize,
        held: Vec<C>,
        drop: usize,
        ended: bool,
    ) -> Result<(), Abandoned> {
        // The continuing attempt's usage from here on.
        self.log.with(|s| s.usage.push(None));
        let mut rest = drop;
        let mut kept = Vec::with_capacity(held.len());
        for mut chunk in held {
            self.log.observe(chunk.usage());
            if rest > 0 && chunk.is_content() {
                let len = chunk.content_text().map_or(0, str::len);
                let cut = rest.min(len);
                if !chunk.strip_text_prefix(cut) {
                    return Err(Abandoned::OverlapUnknown);
                }
                rest -= cut;
                // Wholly repeated: nothing left to give.
                if !chunk.is_content() && chunk.usage().is_none() {
                    continue;
                }
            }
            kept.push(chunk);
        }
        body.hold_back(kept, ended);
        let from = std::mem::replace(&mut self.current, to);
        let (from, to) = (&self.inner.backends[from].id, &self.inner.backends[to].id);
        emit(&self.inner.sink, || Event::Continuation {
            from,
            to,
            model: self.request.model(),
            tokens_before: self.tokens,
        });
        let record = Continued {
            from: from.clone(),
            to: to.clone(),
            tokens_before: self.tokens,
            dropped_bytes: drop,
        };
        self.log.with(|s| s.continued.push(record));
        Ok(())
    }
}

/// What the overlap rule says (see the module docs above).
#[derive(Debug, PartialEq, Eq)]
enum Overlap {
    Undecided,
    /// Splice, dropping this many bytes of the new text.
    Drop(usize),
    Unknown,
}

/// The overlap rule: `received` was given, less its last `tail` bytes
/// (whitespace), as the prefill; `new` is the continuing text so far.
fn overlap(received: &str, tail: usize, new: &str, ended: bool) -> Overlap {
    if new.starts_with(received) {
        return Overlap::Drop(received.len());
    }
    if received.starts_with(new) {
        return match (ended, new.is_empty()) {
            (false, _) => Overlap::Undecided,
            (true, true) => Overlap::Drop(0),
            (true, false) => Overlap::Unknown,
        };
    }
    // The first word of the received text: up to its first character that
    // is not alphanumeric, that character included.
    let first_word = received
        .char_indices()
        .find(|(_, c)| !c.is_alphanumeric())
        .map_or(received.len(), |(i, c)| i + c.len_utf8());
    let common: usize = received
        .chars()
        .zip(new.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    if common < first_word {
        let left_out = received.get(received.len() - tail..).unwrap_or("");
        let drop = if !left_out.is_empty() && new.starts_with(left_out) {
            left_out.len()
        } else {
            0
        };
        return Overlap::Drop(drop);
    }
    Overlap::Unknown
}

impl<Req, C> Splicing<C> for Splice<Req, C>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    fn poll_next(
        &mut self,
        body: &mut Replay<BoxBody<C>, C>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<C, BoxError>>> {
        loop {
            // Taken out and put back unless it changes.
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Streaming => {
                    let next = Pin::new(&mut *body).poll_next(cx);
                    self.state = State::Streaming;
                    match ready!(next) {
                        Some(Ok(chunk)) => {
                            self.observe(&chunk);
                            return Poll::Ready(Some(Ok(chunk)));
                        }
                        Some(Err(error)) => {
                            if let Err(error) = self.begin(error) {
                                return Poll::Ready(Some(Err(error)));
                            }
                        }
                        None => return Poll::Ready(None),
                    }
                }
                State::Starting {
                    error,
                    to,
                    tail,
                    mut future,
                } => match future.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = State::Starting {
                            error,
                            to,
                            tail,
                            future,
                        };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(response)) => {
                        *body = response.into_body();
                        self.state = State::Aligning {
                            error,
                            to,
                            tail,
                            held: Vec::new(),
                            text: String::new(),
                        };
                    }
                    // Failed before content: the next one may do.
                    Poll::Ready(Err(_)) => {
                        if let Err(error) = self.retry(error) {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
                State::Aligning {
                    error,
                    to,
                    tail,
                    mut held,
                    mut text,
                } => {
                    let ended = match Pin::new(&mut *body).poll_next(cx) {
                        Poll::Pending => {
                            self.state = State::Aligning {
                                error,
                                to,
                                tail,
                                held,
                                text,
                            };
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(chunk))) => {
                            if chunk.is_content() {
                                match chunk.content_text() {
                                    Some(t) if !chunk.is_tool_call() => text.push_str(t),
                                    _ => {
                                        let error = self.abandon(Abandoned::OverlapUnknown, error);
                                        return Poll::Ready(Some(Err(error)));
                                    }
                                }
                            }
                            held.push(chunk);
                            false
                        }
                        // The continuing stream failed too, unseen: the
                        // next one may do.
                        Poll::Ready(Some(Err(_))) => {
                            if let Err(error) = self.retry(error) {
                                return Poll::Ready(Some(Err(error)));
                            }
                            continue;
                        }
                        Poll::Ready(None) => true,
                    };
                    match overlap(&self.received, tail, &text, ended) {
                        Overlap::Undecided => {
                            self.state = State::Aligning {
                                error,
                                to,
                                tail,
                                held,
                                text,
                            };
                        }
                        Overlap::Unknown => {
                            let error = self.abandon(Abandoned::OverlapUnknown, error);
                            return Poll::Ready(Some(Err(error)));
                        }
                        Overlap::Drop(drop) => {
                            self.state = State::Streaming;
                            if let Err(reason) = self.splice(body, to, held, drop, ended) {
                                return Poll::Ready(Some(Err(self.abandon(reason, error))));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_of_the_whole_received_text_is_dropped() {
        assert_eq!(
            overlap("Hello wor", 0, "Hello world", false),
            Overlap::Drop(9)
        );
    }

    #[test]
    fn a_prefix_of_the_received_text_is_undecided_until_it_ends() {
        assert_eq!(overlap("Hello wor", 0, "Hel", false), Overlap::Undecided);
        assert_eq!(overlap("Hello wor", 0, "Hel", true), Overlap::Unknown);
        assert_eq!(overlap("Hello wor", 0, "", true), Overlap::Drop(0));
    }

    #[test]
    fn a_different_first_character_continues() {
        assert_eq!(overlap("Hello wor", 0, "ld!", false), Overlap::Drop(0));
    }

    #[test]
    fn whitespace_left_out_of_the_prefill_is_not_repeated() {
        assert_eq!(overlap("Hello ", 1, " world", false), Overlap::Drop(1));
        assert_eq!(overlap("Hello ", 1, "world", false), Overlap::Drop(0));
    }

    #[test]
    fn a_continuation_that_shares_only_part_of_the_first_word_continues() {
        assert_eq!(overlap("tok0 tok1 ", 0, "tok2 ", false), Overlap::Drop(0));
        assert_eq!(overlap("tok0 tok1 ", 1, " tok2", false), Overlap::Drop(1));
    }

    #[test]
    fn a_partial_repeat_that_differs_is_unknown() {
        assert_eq!(
            overlap("Hello world", 0, "Hello there", false),
            Overlap::Unknown
        );
    }

    #[test]
    fn multibyte_text_never_splits_a_character() {
        assert_eq!(overlap("héllo ", 1, " wörld", false), Overlap::Drop(1));
        assert_eq!(overlap("é", 0, "èa", false), Overlap::Drop(0));
    }
}
