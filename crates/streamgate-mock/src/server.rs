//! The HTTP server: routes, handlers, and the body stream that plays a [`Wire`].

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{MockConfig, Plans};
use crate::families::RateLimitHeaders;
use crate::formats::{insert_header, Dialect, ErrorCause, Provider, StreamMeta};
use crate::log::{Recorder, RequestInfo, RequestLog, StreamGuard};
use crate::plan::Plan;
use crate::ratelimit::{Admission, QuotaReport};
use crate::wire::{Step, Wire};

/// The model name used when a request does not name one.
pub const DEFAULT_MODEL: &str = "mock-model";

/// The request limit a scripted 429 reports when no
/// [RPM limit](MockConfig::with_requests_per_minute) is configured.
pub const DEFAULT_REPORTED_RPM: u64 = 60;

/// A mock LLM provider listening on `127.0.0.1` on a free port.
///
/// It serves all four formats at once, on their real paths (see [`Provider::path`]).
/// Dropping it (or calling [`shutdown`](Self::shutdown)) stops accepting connections
/// and ends the streams in flight, stalled ones included, with an aborted body.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// What every handler shares.
struct Shared {
    recorder: Arc<Recorder>,
    plans: Plans,
    headers: RateLimitHeaders,
    /// Turns `true` when the server shuts down; streams in flight abort on it.
    shutdown: watch::Receiver<bool>,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(config: MockConfig) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            recorder: Arc::new(Recorder::new(config.limits, config.log_capacity)),
            plans: Plans::new(&config),
            headers: config.headers,
            shutdown: stopping.clone(),
        });
        let app = router(Arc::clone(&shared));
        let mut signal = stopping;
        let task = tokio::spawn(async move {
            let stopped = async move {
                // An error means the sender is gone, which is a shutdown too.
                let _ = signal.wait_for(|stop| *stop).await;
            };
            // `serve` only returns once shut down; there is nobody left to report to.
            // Each event is written as it happens, as a provider's server
            // does: without `TCP_NODELAY` a small write waits for the
            // client's delayed ACK, tens of milliseconds on loopback.
            let listener = listener.tap_io(|tcp| {
                // Only a latency setting: the stream works without it.
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }

    /// Starts a server that answers every request with `plan`.
    pub async fn start_with_plan(plan: Plan) -> io::Result<Self> {
        Self::start(MockConfig::new().with_plan(plan)).await
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, such as `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of `provider`'s streaming endpoint for `model`.
    pub fn endpoint(&self, provider: Provider, model: &str) -> String {
        format!("{}{}", self.url(), provider.path(model))
    }

    /// Queues a plan for the next request not yet served (after any plans queued before).
    pub fn push_plan(&self, plan: Plan) {
        self.shared.plans.push(plan);
    }

    /// Replaces the default plan, for requests that no queued plan or script covers.
    pub fn set_plan(&self, plan: Plan) {
        self.shared.plans.set_default(plan);
    }

    /// The requests received so far, in arrival order: the most recent
    /// [`REQUEST_LOG_CAPACITY`](crate::REQUEST_LOG_CAPACITY) (or the configured
    /// capacity) of them.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.recorder.requests()
    }

    /// The request with this index, if it has arrived and is still kept.
    pub fn request(&self, index: u64) -> Option<RequestLog> {
        self.shared.recorder.request(index)
    }

    /// The number of requests received (on the providers' paths), including those
    /// no longer kept in the log.
    pub fn served(&self) -> u64 {
        self.shared.recorder.received()
    }

    /// The number of requests whose client went away before the server was done,
    /// including those no longer kept in the log.
    pub fn disconnects(&self) -> u64 {
        self.shared.recorder.disconnects()
    }

    /// Output tokens handed to connections, over all requests.
    pub fn tokens_served(&self) -> u64 {
        self.shared.recorder.tokens_served()
    }

    /// Input plus output tokens in the last 60 s, as the rate limiter counts them.
    pub fn tokens_per_minute(&self) -> u64 {
        self.shared.recorder.tokens_per_minute()
    }

    /// Waits until `ready` holds for the request logs. Checks again after every
    /// change (a request arriving, a chunk sent, a stream ending), so it is exact and
    /// costs nothing while nothing happens. Wrap it in a timeout in tests.
    pub async fn wait_until(&self, mut ready: impl FnMut(&[RequestLog]) -> bool) {
        self.shared
            .recorder
            .wait_until(|logs, _| ready(logs).then_some(()))
            .await;
    }

    /// Waits until request `index` has arrived.
    pub async fn wait_for_request(&self, index: u64) -> RequestLog {
        self.wait_for_log(index, |_| true).await
    }

    /// Waits until the server has seen the client of request `index` go away before
    /// the response was finished. This is how a test proves that dropping a stream
    /// really closed the connection. Wrap it in a timeout: it waits forever otherwise.
    pub async fn wait_for_disconnect(&self, index: u64) -> RequestLog {
        self.wait_for_log(index, RequestLog::client_disconnected)
            .await
    }

    /// Waits until request `index` is over: finished by the server or left by the client.
    pub async fn wait_for_end(&self, index: u64) -> RequestLog {
        self.wait_for_log(index, RequestLog::is_over).await
    }

    async fn wait_for_log(&self, index: u64, ready: impl Fn(&RequestLog) -> bool) -> RequestLog {
        self.shared
            .recorder
            .wait_until(|logs, first| {
                let position = usize::try_from(index.checked_sub(first)?).ok()?;
                logs.get(position).filter(|log| ready(log)).cloned()
            })
            .await
    }

    /// Stops the server and waits until it has closed its connections.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            // A join error means the task panicked or was cancelled; either way it is over.
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        // The real path is `/v1beta/models/{model}:streamGenerateContent`; a route
        // segment cannot hold a parameter and a literal, so the handler splits it.
        .route("/v1beta/models/{*rest}", post(gemini))
        .route("/v1/models/{*rest}", post(gemini))
        .route("/api/chat", post(ollama))
        .route(
            "/model/{model}/converse-stream",
            model_in_path(Provider::Bedrock),
        )
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            model_in_path(Provider::Azure),
        )
        .route(
            "/openai/v1/chat/completions",
            model_in_body(Provider::Azure),
        )
        .route("/v1/projects/{*rest}", post(vertex))
        .with_state(shared)
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, Provider::OpenAi, None, &uri, headers, body).await
}

async fn anthropic(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, Provider::Anthropic, None, &uri, headers, body).await
}

async fn ollama(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, Provider::Ollama, None, &uri, headers, body).await
}

/// The route of `provider` whose one path parameter names the model (Bedrock's model
/// id, Azure's deployment; the body's `model` is then ignored, as upstream).
fn model_in_path(provider: Provider) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              Path(model): Path<String>,
              uri: Uri,
              headers: HeaderMap,
              body: Bytes| async move {
            respond(&shared, provider, Some(model), &uri, headers, body).await
        },
    )
}

/// The route of `provider` whose body names the model.
fn model_in_body(provider: Provider) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            respond(&shared, provider, None, &uri, headers, body).await
        },
    )
}

/// `{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent`.
async fn vertex(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let one_segment = |s: &&str| !s.is_empty() && !s.contains('/');
    let model = rest
        .split_once("/locations/")
        .filter(|(project, _)| one_segment(project))
        .and_then(|(_, rest)| rest.split_once("/publishers/google/models/"))
        .filter(|(location, _)| one_segment(location))
        .and_then(|(_, method)| streaming_model(method));
    match model {
        Some(model) => {
            let model = Some(model.to_owned());
            respond(&shared, Provider::Vertex, model, &uri, headers, body).await
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The model of `{model}:streamGenerateContent`, Gemini's streaming method.
fn streaming_model(method: &str) -> Option<&str> {
    match method.split_once(':') {
        Some((model, "streamGenerateContent")) if !model.is_empty() && !model.contains('/') => {
            Some(model)
        }
        _ => None,
    }
}

async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match streaming_model(&rest) {
        Some(model) => {
            let model = model.to_owned();
            respond(&shared, Provider::Gemini, Some(model), &uri, headers, body).await
        }
        // Only streaming is mocked; anything else is an unknown method, as upstream.
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Handles one request of any provider: record it, pick its plan, answer.
/// How many leading tokens of the answer the request's final assistant
/// message (or Gemini `model` turn) holds, trailing whitespace optional;
/// 0 when it holds none or something else.
fn prefilled_tokens(body: &Value, output_tokens: u64) -> u64 {
    let last_text = |list: &str, role: &str, text: fn(&Value) -> Option<&str>| {
        body.get(list)
            .and_then(Value::as_array)
            .and_then(|items| items.last())
            .filter(|item| item.get("role").and_then(Value::as_str) == Some(role))
            .and_then(text)
    };
    let prefill = last_text("messages", "assistant", |m| {
        m.get("content").and_then(Value::as_str)
    })
    .or_else(|| {
        last_text("contents", "model", |c| {
            c.pointer("/parts/0/text").and_then(Value::as_str)
        })
    });
    let Some(prefill) = prefill.filter(|p| !p.is_empty()) else {
        return 0;
    };
    let mut text = String::new();
    for k in 1..=output_tokens {
        text.push_str(&crate::formats::token_text(k - 1));
        if text.len() > prefill.len() + 1 {
            break;
        }
        if text == prefill || text.trim_end() == prefill {
            return k;
        }
    }
    0
}

async fn respond(
    shared: &Shared,
    provider: Provider,
    path_model: Option<String>,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(&body)
    };
    let valid_json = json.is_ok();
    let json = json.unwrap_or(Value::Null);
    let model = path_model
        .or_else(|| json.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let request = RequestInfo {
        index: 0, // assigned by the recorder
        provider,
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path(), |pq| pq.as_str())
            .to_owned(),
        model,
        headers,
        body: json,
        estimated_input_tokens: (body.len() as u64).div_ceil(4),
    };
    // From here on, the guard notices if the client leaves (hyper drops this future).
    let (request, mut guard) = shared.recorder.begin(request);
    let mut plan = shared.plans.plan_for(&request);
    if plan.honour_prefill {
        plan.start_token = prefilled_tokens(&request.body, plan.output_tokens);
    }

    let mut shutdown = shared.shutdown.clone();
    if !sleep_unless_shutdown(plan.header_delay, &mut shutdown).await {
        guard.end();
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }

    let input_tokens = plan.input_tokens.unwrap_or(request.estimated_input_tokens);
    let meta = stream_meta(&request, &plan, input_tokens);
    let reply = Reply {
        dialect: provider.dialect(),
        family: shared.headers,
        meta,
        guard,
        error_body: plan.error_body.clone(),
    };
    if !valid_json {
        return reply.error(
            StatusCode::BAD_REQUEST,
            ErrorCause::InvalidJson,
            None,
            shared.recorder.quota_report(),
        );
    }
    if let Some(status) = plan.http_error() {
        let mut quota = shared.recorder.quota_report();
        if let (429, Some(after)) = (status.as_u16(), plan.retry_after) {
            let limit = shared
                .recorder
                .limits()
                .requests_per_minute
                .unwrap_or(DEFAULT_REPORTED_RPM);
            quota = quota.requests_exhausted(limit, after);
        }
        return reply.error(status, ErrorCause::Scripted, plan.retry_after, quota);
    }
    match shared.recorder.admit(input_tokens) {
        Admission::Limited {
            report,
            exceeded,
            retry_after,
        } => reply.error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCause::RateLimited(exceeded),
            Some(retry_after),
            report,
        ),
        Admission::Admitted(report) => reply.stream(plan, report, shutdown),
    }
}

fn stream_meta(request: &RequestInfo, plan: &Plan, input_tokens: u64) -> StreamMeta {
    let id = match request.provider {
        Provider::OpenAi => format!("chatcmpl-mock{}", request.index),
        Provider::Anthropic => format!("msg_mock{}", request.index),
        _ => format!("mock{}", request.index),
    };
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    StreamMeta {
        id,
        model: request.model.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        input_tokens,
        cached_input_tokens: plan.cached_input_tokens.min(input_tokens),
        include_usage,
        error_body: plan.error_body.clone(),
    }
}

/// The answer to one request, in the provider's dialect.
struct Reply {
    dialect: &'static dyn Dialect,
    /// The rate-limit header family, when not the dialect's own.
    family: RateLimitHeaders,
    meta: StreamMeta,
    guard: StreamGuard,
    /// The plan's replacement for the dialect's error body.
    error_body: Option<Value>,
}

impl Reply {
    fn headers(
        &self,
        content_type: &'static str,
        quota: &QuotaReport,
        retry_after: Option<Duration>,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(name) = self.dialect.request_id_header() {
            insert_header(&mut headers, name, &self.meta.id);
        }
        if !self.family.write(quota, retry_after, &mut headers) {
            self.dialect
                .quota_headers(quota, retry_after, SystemTime::now(), &mut headers);
        }
        headers
    }

    fn error(
        mut self,
        status: StatusCode,
        cause: ErrorCause,
        retry_after: Option<Duration>,
        quota: QuotaReport,
    ) -> Response {
        let mut headers = self.headers("application/json", &quota, retry_after);
        self.dialect.error_headers(status, &mut headers);
        let mut body = match (cause, self.error_body.take()) {
            (ErrorCause::Scripted, Some(body)) => body,
            _ => self
                .dialect
                .error_body(status, cause, &self.meta, retry_after),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.family.write_body(&quota, SystemTime::now(), &mut body);
        }
        self.guard.set_status(status, self.meta.input_tokens);
        self.guard.end();
        (status, headers, body.to_string()).into_response()
    }

    fn stream(self, plan: Plan, quota: QuotaReport, shutdown: watch::Receiver<bool>) -> Response {
        let mut headers = self.headers(self.dialect.content_type(), &quota, None);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        self.guard
            .set_status(StatusCode::OK, self.meta.input_tokens);
        let playing = Playing {
            wire: Wire::new(self.dialect, self.meta, plan),
            guard: self.guard,
            shutdown,
        };
        (StatusCode::OK, headers, Body::from_stream(play(playing))).into_response()
    }
}

/// A stream being played onto a connection.
struct Playing {
    wire: Wire,
    guard: StreamGuard,
    shutdown: watch::Receiver<bool>,
}

/// Plays the wire steps as a body. The guard travels inside the stream's state, so
/// when hyper drops the body because the client went away, the guard records it.
fn play(playing: Playing) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures::stream::unfold(Some(playing), |state| async move {
        let mut playing = state?;
        loop {
            match playing.wire.next() {
                None => {
                    playing.guard.end();
                    return None;
                }
                Some(Step::Sleep(duration)) => {
                    if !sleep_unless_shutdown(duration, &mut playing.shutdown).await {
                        playing.guard.end();
                        return Some((Err(aborted("server shutting down")), None));
                    }
                }
                Some(Step::Frame(frame)) => return Some((Ok(frame), Some(playing))),
                Some(Step::Content(frame)) => {
                    playing.guard.content_sent();
                    return Some((Ok(frame), Some(playing)));
                }
                Some(Step::Stall) => {
                    // Stalled until the client leaves (the body is dropped while we
                    // wait here) or the server shuts down.
                    let _ = playing.shutdown.wait_for(|stop| *stop).await;
                    playing.guard.end();
                    return Some((Err(aborted("server shutting down")), None));
                }
                Some(Step::Abort) => {
                    // Pending once first, so hyper flushes what was already sent:
                    // a body error closes the connection at once, buffer and all.
                    tokio::task::yield_now().await;
                    // A body error makes hyper close the connection without the final
                    // chunk of the chunked encoding: the client sees a broken body.
                    playing.guard.end();
                    return Some((Err(aborted("scripted disconnect")), None));
                }
            }
        }
    })
}

fn aborted(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, why)
}

/// Sleeps on tokio time; `false` if the server started shutting down first.
async fn sleep_unless_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if duration.is_zero() {
        return !*shutdown.borrow();
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::prefilled_tokens;

    #[test]
    fn a_prefill_of_whole_tokens_is_counted_and_anything_else_is_not() {
        let openai = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "tok0 tok1 "}
        ]});
        assert_eq!(prefilled_tokens(&openai, 8), 2);
        let trimmed = json!({"messages": [{"role": "assistant", "content": "tok0 tok1"}]});
        assert_eq!(prefilled_tokens(&trimmed, 8), 2);
        let gemini = json!({"contents": [{"role": "model", "parts": [{"text": "tok0 "}]}]});
        assert_eq!(prefilled_tokens(&gemini, 8), 1);
        let other = json!({"messages": [{"role": "assistant", "content": "tok0 tok"}]});
        assert_eq!(prefilled_tokens(&other, 8), 0);
        let user_last = json!({"messages": [{"role": "user", "content": "tok0 "}]});
        assert_eq!(prefilled_tokens(&user_last, 8), 0);
    }
}
