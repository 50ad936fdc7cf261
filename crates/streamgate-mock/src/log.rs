//! What the server observed: one [`RequestLog`] per request, and the guard that
//! notices when a client goes away.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::formats::Provider;
use crate::ratelimit::{Admission, Limits, QuotaReport, RateLimiter};

/// How many [`RequestLog`]s a server keeps by default: the most recent 10,000
/// requests (older ones are dropped, oldest first), so a long soak measures the
/// library rather than the mock. Counts such as [`MockServer::served`] stay exact.
/// Change it with [`MockConfig::with_request_log_capacity`].
///
/// [`MockServer::served`]: crate::MockServer::served
/// [`MockConfig::with_request_log_capacity`]: crate::MockConfig::with_request_log_capacity
pub const REQUEST_LOG_CAPACITY: usize = 10_000;

/// Header names whose values are credentials: shown as `<redacted>` by `Debug`.
const SENSITIVE_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
];

/// A request as the server received it; what a [script](crate::MockConfig::with_script)
/// sees to choose a plan.
///
/// Its `Debug` output redacts credentials: the values of `authorization`,
/// `x-api-key`, `x-goog-api-key` and `api-key` headers (and any header marked
/// sensitive), and `key=` query parameters in the path.
#[derive(Clone)]
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

impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if value.is_sensitive() || SENSITIVE_HEADERS.contains(&name.as_str()) {
                    streamgate_core::redact::REDACTED.to_owned()
                } else {
                    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    streamgate_core::redact::redact_owned(text, &[])
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("RequestInfo")
            .field("index", &self.index)
            .field("provider", &self.provider)
            .field("path", &streamgate_core::redact::redact(&self.path, &[]))
            .field("model", &self.model)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("estimated_input_tokens", &self.estimated_input_tokens)
            .finish()
    }
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
    /// The most recent requests, at most `capacity`; the first has index `evicted`.
    logs: VecDeque<RequestLog>,
    capacity: usize,
    /// Requests dropped from the front of `logs`.
    evicted: u64,
    /// Every request received, kept or not.
    received: u64,
    /// Every client that went away early, kept or not.
    disconnects: u64,
    limiter: RateLimiter,
    tokens_served: u64,
}

impl State {
    fn log_mut(&mut self, index: u64) -> Option<&mut RequestLog> {
        let position = usize::try_from(index.checked_sub(self.evicted)?).ok()?;
        self.logs.get_mut(position)
    }
}

impl Recorder {
    pub(crate) fn new(limits: Limits, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                logs: VecDeque::new(),
                capacity: capacity.max(1),
                evicted: 0,
                received: 0,
                disconnects: 0,
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
            if let Some(log) = state.log_mut(index) {
                change(log);
            }
        });
    }

    /// Registers a new request, giving it the next index.
    pub(crate) fn begin(self: &Arc<Self>, mut request: RequestInfo) -> (RequestInfo, StreamGuard) {
        let started_at = Instant::now();
        let request = self.update(|state| {
            request.index = state.received;
            state.received += 1;
            if state.logs.len() >= state.capacity {
                state.logs.pop_front();
                state.evicted += 1;
            }
            state.logs.push_back(RequestLog {
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
        self.state().logs.iter().cloned().collect()
    }

    pub(crate) fn request(&self, index: u64) -> Option<RequestLog> {
        self.state().log_mut(index).map(|log| log.clone())
    }

    /// Requests received, including those no longer kept.
    pub(crate) fn received(&self) -> u64 {
        self.state().received
    }

    /// Clients that went away early, including requests no longer kept.
    pub(crate) fn disconnects(&self) -> u64 {
        self.state().disconnects
    }

    pub(crate) fn tokens_served(&self) -> u64 {
        self.state().tokens_served
    }

    pub(crate) fn tokens_per_minute(&self) -> u64 {
        self.state().limiter.tokens_in_window(Instant::now())
    }

    /// Resolves once `ready` holds for the kept logs (the first of which has the
    /// index given as the second argument), checking after every change.
    pub(crate) async fn wait_until<T>(
        &self,
        mut ready: impl FnMut(&[RequestLog], u64) -> Option<T>,
    ) -> T {
        // Subscribing before the first check means no change can slip in between.
        let mut changes = self.changed.subscribe();
        loop {
            let found = {
                let mut state = self.state();
                let first = state.evicted;
                ready(state.logs.make_contiguous(), first)
            };
            if let Some(found) = found {
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
            if let Some(log) = state.log_mut(self.index) {
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
            let index = self.index;
            self.recorder.update(|state| {
                state.disconnects += 1;
                if let Some(log) = state.log_mut(index) {
                    log.disconnected_at = Some(now);
                }
            });
        }
    }
}
