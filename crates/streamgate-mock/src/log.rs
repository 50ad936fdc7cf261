//! What the server observed: one [`RequestLog`] per request, and the guard that
//! notices when a client goes away.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::formats::Provider;
use crate::ratelimit::{Admission, Limits, QuotaReport, RateLimiter};

/// A request as the server received it; what a [script](crate::MockConfig::with_script)
/// sees to choose a plan.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestInfo {
    /// Position in arrival order, from 0.
    pub index: u64,
    /// The API the path belongs to.
    pub provider: Provider,
    /// The path and query string.
    pub path: String,
    /// The model: from the body (`model`) for OpenAI and Anthropic, from the path for
    /// Gemini; `mock-model` when absent.
    pub model: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The JSON body (`Null` when the body was empty).
    pub body: serde_json::Value,
    /// Input token estimate: the body length in bytes divided by 4, rounded up (the
    /// usual rule of thumb for English text).
    pub estimated_input_tokens: u64,
}

/// Everything the server recorded about one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestLog {
    /// The request itself.
    pub request: RequestInfo,
    /// The status answered, `None` while the headers are still being delayed (or if
    /// the client left before they were sent).
    pub status: Option<StatusCode>,
    /// Input tokens reported in the usage (the plan's override or the estimate), and
    /// charged to the rate limiter if the stream was admitted.
    pub input_tokens: u64,
    /// Content chunks handed to the connection.
    pub chunks_sent: u64,
    /// Output tokens handed to the connection (one per content chunk).
    pub tokens_sent: u64,
    /// When the request arrived.
    pub started_at: Instant,
    /// When the server finished its plan: the whole stream, an error response, or a
    /// scripted fault that ends the stream (including an abort), or the server shutting
    /// down. `None` while streaming, and for a stall until shutdown.
    pub ended_at: Option<Instant>,
    /// When the server saw the client go away before the plan was finished (the
    /// response body was dropped early), `None` if it did not.
    pub disconnected_at: Option<Instant>,
}

impl RequestLog {
    /// Whether the client went away before the server finished its plan.
    pub fn client_disconnected(&self) -> bool {
        self.disconnected_at.is_some()
    }

    /// Whether the response is over, one way or the other.
    pub fn is_over(&self) -> bool {
        self.ended_at.is_some() || self.disconnected_at.is_some()
    }
}

/// Shared record of every request, plus the rate-limit window (kept under the same
/// lock because output tokens count against both).
#[derive(Debug)]
pub(crate) struct Recorder {
    state: Mutex<State>,
    /// Bumped on every change, so waiters re-check without missing an update.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    logs: Vec<RequestLog>,
    limiter: RateLimiter,
    tokens_served: u64,
}

impl Recorder {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            state: Mutex::new(State {
                logs: Vec::new(),
                limiter: RateLimiter::new(limits),
                tokens_served: 0,
            }),
            changed: watch::Sender::new(0),
        }
    }

    /// The lock survives a panic elsewhere: the data is counters and logs, always
    /// consistent between statements, so a poisoned lock is still usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let result = change(&mut self.state());
        self.changed
            .send_modify(|version| *version = version.wrapping_add(1));
        result
    }

    fn update_log(&self, index: u64, change: impl FnOnce(&mut RequestLog)) {
        self.update(|state| {
            if let Some(log) = usize::try_from(index)
                .ok()
                .and_then(|i| state.logs.get_mut(i))
            {
                change(log);
            }
        });
    }

    /// Registers a new request, giving it the next index.
    pub(crate) fn begin(self: &Arc<Self>, mut request: RequestInfo) -> (RequestInfo, StreamGuard) {
        let started_at = Instant::now();
        let request = self.update(|state| {
            request.index = state.logs.len() as u64;
            state.logs.push(RequestLog {
                request: request.clone(),
                status: None,
                input_tokens: request.estimated_input_tokens,
                chunks_sent: 0,
                tokens_sent: 0,
                started_at,
                ended_at: None,
                disconnected_at: None,
            });
            request
        });
        let guard = StreamGuard {
            recorder: Arc::clone(self),
            index: request.index,
            ended: false,
        };
        (request, guard)
    }

    pub(crate) fn admit(&self, input_tokens: u64) -> Admission {
        self.update(|state| state.limiter.admit(Instant::now(), input_tokens))
    }

    pub(crate) fn limits(&self) -> Limits {
        self.state().limiter.limits()
    }

    pub(crate) fn quota_report(&self) -> QuotaReport {
        self.state().limiter.report(Instant::now())
    }

    pub(crate) fn requests(&self) -> Vec<RequestLog> {
        self.state().logs.clone()
    }

    pub(crate) fn request(&self, index: u64) -> Option<RequestLog> {
        let index = usize::try_from(index).ok()?;
        self.state().logs.get(index).cloned()
    }

    pub(crate) fn count(&self, counted: impl Fn(&RequestLog) -> bool) -> u64 {
        self.state().logs.iter().filter(|log| counted(log)).count() as u64
    }

    pub(crate) fn tokens_served(&self) -> u64 {
        self.state().tokens_served
    }

    pub(crate) fn tokens_per_minute(&self) -> u64 {
        self.state().limiter.tokens_in_window(Instant::now())
    }

    /// Resolves once `ready` holds for the logs, checking after every change.
    pub(crate) async fn wait_until<T>(
        &self,
        mut ready: impl FnMut(&[RequestLog]) -> Option<T>,
    ) -> T {
        // Subscribing before the first check means no change can slip in between.
        let mut changes = self.changed.subscribe();
        loop {
            if let Some(found) = ready(&self.state().logs) {
                return found;
            }
            // The sender lives as long as `self`, so this cannot fail while we wait.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Lives inside a response (first the handler, then the body stream). Dropped before
/// [`end`](Self::end) means the connection let go of the response early: hyper drops
/// the body when the client disconnects, and the handler when the client leaves
/// before the headers.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    recorder: Arc<Recorder>,
    index: u64,
    ended: bool,
}

impl StreamGuard {
    pub(crate) fn set_status(&self, status: StatusCode, input_tokens: u64) {
        self.recorder.update_log(self.index, |log| {
            log.status = Some(status);
            log.input_tokens = input_tokens;
        });
    }

    /// Records one content chunk of one token handed to the connection.
    pub(crate) fn content_sent(&self) {
        let now = Instant::now();
        self.recorder.update(|state| {
            state.tokens_served += 1;
            state.limiter.record_output(now, 1);
            if let Some(log) = usize::try_from(self.index)
                .ok()
                .and_then(|i| state.logs.get_mut(i))
            {
                log.chunks_sent += 1;
                log.tokens_sent += 1;
            }
        });
    }

    /// The server is done with this response by its own choice.
    pub(crate) fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            let now = Instant::now();
            self.recorder
                .update_log(self.index, |log| log.ended_at = Some(now));
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.ended {
            let now = Instant::now();
            self.recorder
                .update_log(self.index, |log| log.disconnected_at = Some(now));
        }
    }
}
