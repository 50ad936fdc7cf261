//! Server configuration and the choice of a plan for each request.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::families::RateLimitHeaders;
use crate::log::{RequestInfo, REQUEST_LOG_CAPACITY};
use crate::plan::Plan;
use crate::ratelimit::Limits;

type ScriptFn = dyn Fn(&RequestInfo) -> Plan + Send + Sync;

/// How a [`MockServer`](crate::MockServer) answers: which plan each request gets, and
/// the optional rate limits it enforces.
///
/// Each request takes the first plan that applies:
/// 1. the next plan of the [sequence](Self::with_sequence) (each used once, in order,
///    including plans queued later with [`MockServer::push_plan`](crate::MockServer::push_plan));
/// 2. the [script](Self::with_script), if any;
/// 3. the [default plan](Self::with_plan), a healthy stream unless set.
#[derive(Clone)]
pub struct MockConfig {
    pub(crate) default_plan: Plan,
    pub(crate) sequence: Vec<Plan>,
    pub(crate) script: Option<Arc<ScriptFn>>,
    pub(crate) limits: Limits,
    pub(crate) headers: RateLimitHeaders,
    pub(crate) log_capacity: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            default_plan: Plan::default(),
            sequence: Vec::new(),
            script: None,
            limits: Limits::default(),
            headers: RateLimitHeaders::default(),
            log_capacity: REQUEST_LOG_CAPACITY,
        }
    }
}

impl MockConfig {
    /// Healthy streams for every request, no rate limits, the last
    /// [`REQUEST_LOG_CAPACITY`] requests kept in the log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the last `requests` request logs (at least 1; default
    /// [`REQUEST_LOG_CAPACITY`]); older ones are dropped, counts stay exact.
    pub fn with_request_log_capacity(mut self, requests: usize) -> Self {
        self.log_capacity = requests.max(1);
        self
    }

    /// The plan for every request that the sequence and script leave over.
    pub fn with_plan(mut self, plan: Plan) -> Self {
        self.default_plan = plan;
        self
    }

    /// Plans for the first requests, one each, in arrival order.
    pub fn with_sequence(mut self, plans: impl IntoIterator<Item = Plan>) -> Self {
        self.sequence.extend(plans);
        self
    }

    /// Chooses the plan from the request (its index, model, headers or body) once the
    /// sequence is used up.
    pub fn with_script(
        mut self,
        script: impl Fn(&RequestInfo) -> Plan + Send + Sync + 'static,
    ) -> Self {
        self.script = Some(Arc::new(script));
        self
    }

    /// Enforces a requests-per-minute limit over a sliding 60 s window and reports it
    /// in every response's rate-limit headers. Only streamed responses count.
    pub fn with_requests_per_minute(mut self, limit: u64) -> Self {
        self.limits.requests_per_minute = Some(limit);
        self
    }

    /// Enforces a tokens-per-minute limit (input estimate plus output tokens streamed)
    /// over a sliding 60 s window and reports it in every response's rate-limit
    /// headers. A request is refused when the window's tokens plus its input exceed it.
    pub fn with_tokens_per_minute(mut self, limit: u64) -> Self {
        self.limits.tokens_per_minute = Some(limit);
        self
    }

    /// Reports the rate limits in another provider's header family instead
    /// of the dialect's own (see [`RateLimitHeaders`]).
    pub fn with_rate_limit_headers(mut self, family: RateLimitHeaders) -> Self {
        self.headers = family;
        self
    }
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("default_plan", &self.default_plan)
            .field("sequence", &self.sequence)
            .field(
                "script",
                &self.script.as_ref().map(|_| "Fn(&RequestInfo) -> Plan"),
            )
            .field("limits", &self.limits)
            .field("headers", &self.headers)
            .field("log_capacity", &self.log_capacity)
            .finish()
    }
}

/// The live plan source of a running server; it can be changed while serving.
pub(crate) struct Plans {
    queue: Mutex<Queue>,
    script: Option<Arc<ScriptFn>>,
}

struct Queue {
    default: Plan,
    next: VecDeque<Plan>,
}

impl Plans {
    pub(crate) fn new(config: &MockConfig) -> Self {
        Self {
            queue: Mutex::new(Queue {
                default: config.default_plan.clone(),
                next: config.sequence.iter().cloned().collect(),
            }),
            script: config.script.clone(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A poisoned queue is still a valid queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn plan_for(&self, request: &RequestInfo) -> Plan {
        if let Some(plan) = self.queue().next.pop_front() {
            return plan;
        }
        match &self.script {
            // Called outside the lock: it is user code and may take its time.
            Some(script) => script(request),
            None => self.queue().default.clone(),
        }
    }

    pub(crate) fn push(&self, plan: Plan) {
        self.queue().next.push_back(plan);
    }

    pub(crate) fn set_default(&self, plan: Plan) {
        self.queue().default = plan;
    }
}
