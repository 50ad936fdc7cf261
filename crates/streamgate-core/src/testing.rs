//! Test support (feature `testing`): a scripted streaming service on tokio
//! time, with simple chunk and request types, so every layer can be tested on
//! paused time with exact expectations.
//!
//! ```
//! use std::time::Duration;
//! use streamgate_core::testing::{Script, ScriptedService, TestRequest};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let service = ScriptedService::new(
//!     Script::new()
//!         .headers_after(Duration::from_millis(50))
//!         .meta("role")
//!         .wait(Duration::from_millis(100))
//!         .text("hello"),
//! );
//! let response = service.clone().oneshot(TestRequest::new("m")).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(service.probe().calls(), 1);
//! # }
//! ```

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_core::Stream;
use http::Response;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::{BoxError, Chunk, Continuable, ErrorClass, LlmRequest, Prefill, ProviderError, Usage};

/// A chunk for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestChunk {
    /// A non-content chunk (role-only, ping, `message_start`), with a label.
    Meta(&'static str),
    /// A content chunk of one token.
    Text(&'static str),
    /// A content chunk of `n` tokens.
    Tokens(u64),
    /// A non-content chunk reporting usage.
    Usage(Usage),
}

impl Chunk for TestChunk {
    fn is_content(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Tokens(_))
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Self::Usage(usage) => Some(*usage),
            _ => None,
        }
    }

    fn output_tokens(&self) -> Option<u64> {
        match self {
            Self::Text(_) => Some(1),
            Self::Tokens(n) => Some(*n),
            _ => None,
        }
    }

    /// A `Tokens` chunk has no text to give.
    fn content_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Tokens(_) => None,
            Self::Meta(_) | Self::Usage(_) => Some(""),
        }
    }

    fn strip_text_prefix(&mut self, bytes: usize) -> bool {
        match self {
            Self::Text(text) => match Some(*text).and_then(|t: &'static str| t.get(bytes..)) {
                Some(rest) => {
                    *text = rest;
                    true
                }
                None => false,
            },
            _ => bytes == 0,
        }
    }
}

/// A request for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRequest {
    /// The model.
    pub model: String,
    /// The token estimate.
    pub estimated_tokens: u64,
    /// The assistant prefill and how it is sent, set by
    /// [`Continuable::continued`].
    pub prefill: Option<(String, Prefill)>,
}

impl TestRequest {
    /// A request for `model` with no token estimate.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            estimated_tokens: 0,
            prefill: None,
        }
    }

    /// Sets the token estimate.
    #[must_use]
    pub fn with_estimate(mut self, tokens: u64) -> Self {
        self.estimated_tokens = tokens;
        self
    }
}

/// Appends to the prefill already there, if any (as a request that ends in
/// an assistant message would), with [`Prefill::text`] applied.
impl Continuable for TestRequest {
    fn continued(&self, partial: &str, how: Prefill) -> Option<Self> {
        let mut text = self
            .prefill
            .as_ref()
            .map(|(text, _)| text.clone())
            .unwrap_or_default();
        text.push_str(partial);
        let text = how.text(&text).to_owned();
        Some(Self {
            prefill: Some((text, how)),
            ..self.clone()
        })
    }
}

impl LlmRequest for TestRequest {
    fn model(&self) -> &str {
        &self.model
    }

    fn estimated_tokens(&self) -> u64 {
        self.estimated_tokens
    }
}

/// One step of a scripted stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Wait on tokio time.
    Wait(Duration),
    /// Yield a chunk.
    Chunk(TestChunk),
    /// Yield a [`ProviderError`] of this class as an error item.
    Fail(ErrorClass),
    /// Never yield again.
    Stall,
}

/// What one call of a [`ScriptedService`] does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    header_delay: Duration,
    call_error: Option<ErrorClass>,
    retry_after: Option<Duration>,
    stall_call: bool,
    steps: Vec<Step>,
}

impl Script {
    /// Headers at once, then an empty stream that ends cleanly.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits before the response future resolves.
    #[must_use]
    pub fn headers_after(mut self, delay: Duration) -> Self {
        self.header_delay = delay;
        self
    }

    /// The response future fails with a [`ProviderError`] of `class` (after
    /// the header delay).
    #[must_use]
    pub fn fail_call(mut self, class: ErrorClass) -> Self {
        self.call_error = Some(class);
        self
    }

    /// Scripted errors (of the call and of the stream) carry this
    /// retry-after, as a provider's 429 would.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The response future never resolves.
    #[must_use]
    pub fn stall_call(mut self) -> Self {
        self.stall_call = true;
        self
    }

    /// Appends a step.
    #[must_use]
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Waits before the next step.
    #[must_use]
    pub fn wait(self, delay: Duration) -> Self {
        self.step(Step::Wait(delay))
    }

    /// Yields a non-content chunk.
    #[must_use]
    pub fn meta(self, label: &'static str) -> Self {
        self.step(Step::Chunk(TestChunk::Meta(label)))
    }

    /// Yields a one-token content chunk.
    #[must_use]
    pub fn text(self, text: &'static str) -> Self {
        self.step(Step::Chunk(TestChunk::Text(text)))
    }

    /// Yields `n` one-token content chunks, each after `every`.
    #[must_use]
    pub fn tokens(mut self, n: usize, every: Duration) -> Self {
        for _ in 0..n {
            if !every.is_zero() {
                self = self.wait(every);
            }
            self = self.text("tok");
        }
        self
    }

    /// Yields a usage chunk.
    #[must_use]
    pub fn usage(self, usage: Usage) -> Self {
        self.step(Step::Chunk(TestChunk::Usage(usage)))
    }

    /// Yields an error item of `class`.
    #[must_use]
    pub fn fail(self, class: ErrorClass) -> Self {
        self.step(Step::Fail(class))
    }

    /// Stops yielding forever.
    #[must_use]
    pub fn stall(self) -> Self {
        self.step(Step::Stall)
    }
}

/// Counts what happened to a [`ScriptedService`]'s calls, futures and bodies.
#[derive(Default)]
pub struct Probe {
    calls: AtomicUsize,
    futures_dropped: AtomicUsize,
    bodies_dropped: AtomicUsize,
    bodies_completed: AtomicUsize,
    last_drop: Mutex<Option<Instant>>,
}

impl Probe {
    /// Calls made.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Response futures dropped before they resolved.
    pub fn futures_dropped(&self) -> usize {
        self.futures_dropped.load(Ordering::SeqCst)
    }

    /// Bodies dropped before their end.
    pub fn bodies_dropped(&self) -> usize {
        self.bodies_dropped.load(Ordering::SeqCst)
    }

    /// Bodies read to their end.
    pub fn bodies_completed(&self) -> usize {
        self.bodies_completed.load(Ordering::SeqCst)
    }

    /// When a future or body was last dropped early (tokio time).
    pub fn last_drop_at(&self) -> Option<Instant> {
        *self.last_drop.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dropped(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        *self.last_drop.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("calls", &self.calls())
            .field("futures_dropped", &self.futures_dropped())
            .field("bodies_dropped", &self.bodies_dropped())
            .field("bodies_completed", &self.bodies_completed())
            .finish()
    }
}

struct Shared {
    queue: Mutex<VecDeque<Script>>,
    default: Script,
    probe: Probe,
    /// While set, `poll_ready` stays pending (and keeps the waker here).
    not_ready: Mutex<Option<Option<std::task::Waker>>>,
}

/// A streaming service that follows [`Script`]s on tokio time: queued ones
/// first, in order, then the default for every further call. Clones share
/// the queue and the [`Probe`].
#[derive(Clone)]
pub struct ScriptedService {
    shared: Arc<Shared>,
}

impl ScriptedService {
    /// A service that runs `default` for every call.
    pub fn new(default: Script) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                default,
                probe: Probe::default(),
                not_ready: Mutex::new(None),
            }),
        }
    }

    /// Makes `poll_ready` stay pending (`true`) until called again with
    /// `false`, to test that gates refuse without waiting for readiness.
    pub fn hold_readiness(&self, hold: bool) {
        let mut state = self
            .shared
            .not_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::replace(&mut *state, hold.then_some(None));
        if let Some(Some(waker)) = previous {
            waker.wake();
        }
    }

    /// Queues `script` for the next call that has no earlier queued script.
    #[must_use]
    pub fn then(self, script: Script) -> Self {
        self.push(script);
        self
    }

    /// Queues `script` (through a shared handle).
    pub fn push(&self, script: Script) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(script);
    }

    /// What happened so far.
    pub fn probe(&self) -> &Probe {
        &self.shared.probe
    }
}

impl fmt::Debug for ScriptedService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedService")
            .field("probe", &self.shared.probe)
            .finish_non_exhaustive()
    }
}

impl<Req> Service<Req> for ScriptedService {
    type Response = Response<ScriptBody>;
    type Error = BoxError;
    type Future = ScriptFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut state = self
            .shared
            .not_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            Some(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, _request: Req) -> Self::Future {
        self.shared.probe.calls.fetch_add(1, Ordering::SeqCst);
        let script = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(|| self.shared.default.clone());
        ScriptFuture {
            sleep: Box::pin(tokio::time::sleep(script.header_delay)),
            script: Some(script),
            shared: self.shared.clone(),
        }
    }
}

/// The response future of a [`ScriptedService`].
pub struct ScriptFuture {
    sleep: Pin<Box<Sleep>>,
    script: Option<Script>,
    shared: Arc<Shared>,
}

impl Future for ScriptFuture {
    type Output = Result<Response<ScriptBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.script.as_ref().is_some_and(|s| s.stall_call) {
            return Poll::Pending;
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let Some(script) = self.script.take() else {
            return Poll::Ready(Err("scripted future polled after completion".into()));
        };
        if let Some(class) = script.call_error {
            let error = scripted_error(class, "scripted call failure", script.retry_after);
            return Poll::Ready(Err(error.into()));
        }
        Poll::Ready(Ok(Response::new(ScriptBody {
            retry_after: script.retry_after,
            steps: script.steps.into_iter(),
            sleep: None,
            shared: self.shared.clone(),
            finished: false,
        })))
    }
}

fn scripted_error(
    class: ErrorClass,
    message: &str,
    retry_after: Option<Duration>,
) -> ProviderError {
    let error = ProviderError::new(class, message);
    match retry_after {
        Some(after) => error.with_retry_after(after),
        None => error,
    }
}

impl fmt::Debug for ScriptFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptFuture").finish_non_exhaustive()
    }
}

impl Drop for ScriptFuture {
    fn drop(&mut self) {
        if self.script.is_some() {
            self.shared
                .probe
                .dropped(&self.shared.probe.futures_dropped);
        }
    }
}

/// The body of a [`ScriptedService`] response.
pub struct ScriptBody {
    retry_after: Option<Duration>,
    steps: std::vec::IntoIter<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Stream for ScriptBody {
    type Item = Result<TestChunk, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.steps.next() {
                Some(Step::Wait(delay)) => self.sleep = Some(Box::pin(tokio::time::sleep(delay))),
                Some(Step::Chunk(chunk)) => return Poll::Ready(Some(Ok(chunk))),
                Some(Step::Fail(class)) => {
                    let error = scripted_error(class, "scripted stream failure", self.retry_after)
                        .in_band();
                    return Poll::Ready(Some(Err(error.into())));
                }
                Some(Step::Stall) => {
                    // Put the stall back so every later poll stalls too.
                    self.steps = vec![Step::Stall].into_iter();
                    return Poll::Pending;
                }
                None => {
                    if !self.finished {
                        self.finished = true;
                        self.shared
                            .probe
                            .bodies_completed
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl fmt::Debug for ScriptBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptBody")
            .field("steps_left", &self.steps.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Drop for ScriptBody {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.probe.dropped(&self.shared.probe.bodies_dropped);
        }
    }
}

/// A finished request's record with nothing measured yet: a test sets the
/// fields it needs with struct update syntax, e.g.
/// `RequestRecord { time_to_first_content: Some(ttfc), ..record(&b, "m", Outcome::Success) }`.
pub fn record<'a>(
    backend: &'a crate::BackendId,
    model: &'a str,
    outcome: crate::Outcome,
) -> crate::RequestRecord<'a> {
    crate::RequestRecord {
        backend,
        model,
        started_at: std::time::SystemTime::UNIX_EPOCH,
        estimated_tokens: 0,
        time_to_first_chunk: None,
        time_to_first_content: None,
        duration: Duration::ZERO,
        ended: tokio::time::Instant::now(),
        output_duration: None,
        usage: None,
        streamed_output_tokens: 0,
        burst_tokens_per_sec: None,
        chunks: 0,
        outcome,
    }
}

/// Tells `sink` what a measuring layer tells it of a request that ended
/// as `record` says: `RequestStarted`, `FirstContent` if it had content,
/// then `Completed`.
pub fn replay(sink: &dyn crate::MetricsSink, record: &crate::RequestRecord<'_>) {
    sink.record(&crate::Event::RequestStarted {
        backend: record.backend,
        model: record.model,
        estimated_tokens: record.estimated_tokens,
    });
    if let Some(after) = record.time_to_first_content {
        sink.record(&crate::Event::FirstContent {
            backend: record.backend,
            model: record.model,
            after,
        });
    }
    sink.record(&crate::Event::Completed(record));
}
