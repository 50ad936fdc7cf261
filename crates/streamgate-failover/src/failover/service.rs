//! The router and the attempt loop.

use std::{
    error::Error,
    future::poll_fn,
    future::Future,
    pin::pin,
    pin::Pin,
    sync::{atomic::AtomicUsize, Arc},
    task::{Context, Poll},
    time::Duration,
};

use http::Response;
use smallvec::{smallvec, SmallVec};
use streamgate_core::scoreboard::{ScoreView, Scoreboard};
use streamgate_core::{
    emit, Attempt, BackendId, BoxBody, BoxError, BoxResponseFuture, BoxStreamingService, Chunk,
    Classifier, Commit, ErrorClass, Event, FailoverError, HedgeStage, LlmRequest, MetricsSink,
    Prefill, RejectReason, Rejected, Replay, SharedSink, StreamTimeout, TimeoutKind,
};
use tokio::time::Instant;
use tower_service::Service;

use super::{
    backoff::Jitter,
    continuation::{Continues, Splice},
    hedge::{Hedge, HedgeBudget},
    probe::ThroughputProbe,
    strategy::{Inputs, Strategy},
    Backoff, ContextLengthPolicy, FailoverBody, FailoverBuilder,
};

/// The shortest wait between two rounds when every backend refused, so a
/// gate that says "retry in 0 s" cannot make the router spin.
const MIN_ROUND_WAIT: Duration = Duration::from_millis(10);

/// Which backend served a response and why the ones before it were skipped;
/// the router puts it in the response's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverReport {
    /// The backend whose stream this is.
    pub served_by: BackendId,
    /// The strategy that ordered the backends ([`Strategy::as_str`]).
    pub strategy: &'static str,
    /// Every attempt that did not commit, in order (empty when the first
    /// backend served at once), with why: the error, the gate that refused,
    /// or the scoreboard's knowledge of a refusing gate (no call made).
    pub skipped: Vec<Attempt>,
}

/// The response future of [`Failover`]: one allocation per request.
pub type FailoverFuture<C> =
    Pin<Box<dyn Future<Output = Result<Response<FailoverBody<C>>, BoxError>> + Send + 'static>>;

/// Tries backends, ordered by a [`Strategy`] and the scoreboard, until one
/// commits a stream.
///
/// [`Failover`] holds backends in priority order (a waterfall), each a boxed
/// streaming service, typically the backend's own stack of layers around
/// its client (see [`boxed`](streamgate_core::boxed)). Each request is tried
/// backend by backend; an attempt ends when the stream is *committed* (its
/// first content chunk arrived, see [`Commit`](streamgate_core::Commit)) or
/// fails before that:
///
/// - [`Rejected`](streamgate_core::Rejected) (a gate refused without calling
///   the backend): skipped at once, no penalty, no retry;
/// - a retryable class (rate limited, overloaded, server, timeout, network,
///   truncated): retried on the same backend up to
///   [`retries`](FailoverBuilder::retries) times after a [`Backoff`] delay
///   (Retry-After honoured up to a cap; a longer one moves on at once), then
///   the next backend;
/// - client errors, content-filter refusals and cancellations: stop, and
///   that error is returned as is (another backend would refuse the same
///   way);
/// - context length: the next backend or stop, per [`ContextLengthPolicy`];
/// - anything else: the next backend, without retrying.
///
/// **After commit there is no failover**, unless continuation is on (below).
/// The caller may already have shown tokens; a later failure reaches it as
/// an `Err` item of the [`FailoverBody`], never as a clean end.
///
/// # Strategies and the scoreboard
///
/// A [`Strategy`] orders the backends for each request (ordered by
/// default; round-robin, weighted, least time to first content, power of
/// two choices, sticky per session). The router then reads its
/// [`Scoreboard`](streamgate_core::scoreboard::Scoreboard): a backend whose
/// gate is known to refuse is skipped without a call (recorded as a
/// rejected attempt, with its retry time), and a deprioritised one (late
/// to first content, or below its minimum throughput) is tried after the
/// others. Slowness only ever deprioritises, so the pool never empties.
///
/// # Hedging
///
/// With [`hedge`](FailoverBuilder::hedge), a first choice that has produced
/// no content after a delay (fixed, or a learned percentile of its time to
/// first content) gets company: the same request starts on the next
/// available choice, the first to produce content is committed and the
/// other is dropped (its request cancelled, recorded as cancelled, listed in
/// the report). A budget caps the share of hedged requests. See [`Hedge`].
///
/// # Throughput probe
///
/// With [`throughput_probe`](FailoverBuilder::throughput_probe), a backend's
/// stream is held for a few chunks or milliseconds after its first content;
/// if it decodes slower than a floor and another backend is left, it is
/// dropped and the router fails over ([`SlowStart`](crate::SlowStart)). See
/// [`ThroughputProbe`].
///
/// # Mid-stream continuation
///
/// With [`continuation`](FailoverBuilder::continuation) (opt in), a
/// committed stream that fails with a retryable class is continued: the
/// same request, the text received so far as an assistant prefill
/// ([`Continuable`](streamgate_core::Continuable)), goes to the
/// strategy's next available backend that declares a
/// [`Prefill`](streamgate_core::Prefill) mechanism
/// ([`continues_with`](FailoverBuilder::continues_with)), within its
/// first-content deadline, and its stream is spliced onto the caller's
/// [`FailoverBody`]. Text the new backend repeats is dropped by an overlap
/// rule; when the overlap cannot be established, or the stream carried a
/// tool call, the original error item stands. Emits `Continuation { from,
/// to, model, tokens_before }`; the response carries a
/// [`ContinuationLog`](crate::ContinuationLog). See
/// [`Continuation`](crate::Continuation).
///
/// The overlap rule: let *R* be the text the caller received and *N* the
/// continuing stream's text so far, held back until the rule decides.
/// *N* starting with the whole of *R* is a repeat (the prefill was
/// ignored): *R* is dropped from it. *N* still a prefix of *R*: read more.
/// *N* differing from *R* within *R*'s first word (up to its first
/// character that is not alphanumeric): a continuation, passed on (less
/// the whitespace left out of an Anthropic prefill, when *N* starts with
/// it). Otherwise (*N* repeats at least *R*'s first word, then differs):
/// unknown, abandoned.
///
/// When every backend refused (none was called), the router can wait for
/// the earliest `retry_after` and try again, up to a total wait
/// ([`wait_when_unavailable`](FailoverBuilder::wait_when_unavailable),
/// reported as a `Throttled` event). Otherwise it fails with a
/// [`FailoverError`](streamgate_core::FailoverError) listing every attempt,
/// e.g. "all 3 backends unavailable: openai circuit open (retry in 12 s), …".
///
/// # One first-content deadline
///
/// Each attempt has one first-content deadline, and the last remaining
/// attempt (the last backend's last try, when no slow backend waits for the
/// last-resort pass) may get extra time
/// ([`last_attempt_extra`](FailoverBuilder::last_attempt_extra)). Who owns
/// it depends on how the backend was added:
///
/// - [`backend_with_deadline`](FailoverBuilder::backend_with_deadline)
///   (what `streamgate::Backends` does): the stack's own
///   `FirstChunkTimeoutLayer`, innermost, cuts the attempt, so the breaker,
///   the quota and TPM gates and metrics all see a cut attempt as a
///   timeout (a silent backend opens its breaker). For the last remaining
///   attempt the router calls the backend's `extended` stack, whose deadline
///   includes the extra time. The router never races such a backend.
/// - [`backend`](FailoverBuilder::backend) /
///   [`service`](FailoverBuilder::service): the router races the attempt
///   against [`first_content_timeout`](FailoverBuilder::first_content_timeout)
///   (plus the extra time for the last attempt) and drops it on expiry.
///   The layers inside see that drop as a cancellation, not as a timeout,
///   so prefer a timeout layer in the stack and `backend_with_deadline`.
///
/// Emits `Failover { from, to, reason }` when it moves on from a backend, and
/// puts a [`FailoverReport`] (who served, and every attempt skipped before)
/// in the response's extensions.
///
/// Cheap to clone (shared). Always ready: each backend is readied inside
/// the response future, just before it is tried.
pub struct Failover<Req, C> {
    pub(crate) inner: Arc<Inner<Req, C>>,
}

/// One backend of the router.
pub(crate) struct Member<Req, C> {
    pub(crate) id: BackendId,
    pub(crate) service: BoxStreamingService<Req, C>,
    /// `Some` when the stack owns its first-content deadline (the router
    /// does not race it), with the stack to call for the last remaining
    /// attempt, if it has a longer deadline.
    pub(crate) deadline: Option<Option<BoxStreamingService<Req, C>>>,
    /// How the backend's stack renames a request's model, so the scoreboard
    /// is read under the name its layers report.
    pub(crate) model: Option<ModelOf<Req>>,
    /// Looks at the decode rate before committing, unless last.
    pub(crate) probe: Option<ThroughputProbe>,
    /// How it continues another backend's failed stream, if it can.
    pub(crate) continues: Option<Prefill>,
}

/// A request's model as one backend's layers see it.
pub(crate) type ModelOf<Req> = Arc<dyn Fn(&Req) -> String + Send + Sync>;

/// A request's session key, hashed.
pub(crate) type SessionKey<Req> = Arc<dyn Fn(&Req) -> Option<u64> + Send + Sync>;

pub(crate) struct Inner<Req, C> {
    pub(crate) backends: Vec<Member<Req, C>>,
    /// The backends' names, in order, for the strategy.
    pub(crate) ids: Vec<BackendId>,
    pub(crate) retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) context_length: ContextLengthPolicy,
    pub(crate) wait_when_unavailable: Option<Duration>,
    pub(crate) first_content_timeout: Option<Duration>,
    pub(crate) last_attempt_extra: Duration,
    pub(crate) classifier: Arc<dyn Classifier>,
    pub(crate) sink: SharedSink,
    pub(crate) jitter: Jitter,
    pub(crate) strategy: Strategy,
    pub(crate) scoreboard: Scoreboard,
    pub(crate) session_key: Option<SessionKey<Req>>,
    /// Round-robin's next start.
    pub(crate) turn: AtomicUsize,
    pub(crate) hedge: Option<Hedge>,
    pub(crate) hedge_budget: HedgeBudget,
    pub(crate) continuation: Option<Continues<Req>>,
}

impl<Req, C> Clone for Failover<Req, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Req, C> std::fmt::Debug for Failover<Req, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("backends", &self.backends().collect::<Vec<_>>())
            .field("retries", &self.inner.retries)
            .finish_non_exhaustive()
    }
}

impl<Req: 'static, C: 'static> Failover<Req, C> {
    /// Starts configuring a router.
    pub fn builder() -> FailoverBuilder<Req, C> {
        FailoverBuilder::default()
    }
}

impl<Req, C> Failover<Req, C> {
    /// The backends, in the order they were added.
    pub fn backends(&self) -> impl Iterator<Item = &BackendId> {
        self.inner.backends.iter().map(|m| &m.id)
    }

    /// The strategy ordering each request's backends.
    pub fn strategy(&self) -> &Strategy {
        &self.inner.strategy
    }

    /// The scoreboard the router reads.
    pub fn scoreboard(&self) -> &Scoreboard {
        &self.inner.scoreboard
    }
}

impl<Req, C> Service<Req> for Failover<Req, C>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    type Response = Response<FailoverBody<C>>;
    type Error = BoxError;
    type Future = FailoverFuture<C>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        Box::pin(run(Arc::clone(&self.inner), request))
    }
}

/// What became of one backend.
enum Verdict<C> {
    /// It committed a stream.
    Served(Response<FailoverBody<C>>),
    /// Stop trying: return this error.
    Stop(BoxError),
    /// Move on. `called` is false when a gate refused without calling it.
    Next { called: bool, class: ErrorClass },
}

/// One backend in a request's plan.
pub(crate) enum Step {
    /// The scoreboard says a gate refuses: skipped without a call.
    Skip(usize, RejectReason, Option<Duration>),
    /// Called.
    Call(usize),
}

async fn run<Req, C>(
    inner: Arc<Inner<Req, C>>,
    request: Req,
) -> Result<Response<FailoverBody<C>>, BoxError>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    let started = Instant::now();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut waited = Duration::ZERO;
    if inner.hedge.is_some() {
        inner.hedge_budget.deposit();
    }
    loop {
        let round_start = attempts.len();
        let mut called_any = false;
        let plan = plan(&inner, &request);
        let calls: SmallVec<[usize; INLINE_BACKENDS]> = plan
            .iter()
            .filter_map(|step| match *step {
                Step::Call(i) => Some(i),
                Step::Skip(..) => None,
            })
            .collect();
        // Skipped backends come first in the plan: report them, each
        // pointing at the next backend of the plan.
        for (k, step) in plan.iter().enumerate() {
            let Step::Skip(i, reason, retry_after) = *step else {
                continue;
            };
            // The gate's refusal, known before the call: reported as the
            // gate would have.
            emit(&inner.sink, || Event::Rejected {
                backend: &inner.backends[i].id,
                model: request.model(),
                reason,
                retry_after,
            });
            let rejected =
                Rejected::new(inner.backends[i].id.clone(), reason).with_retry_after(retry_after);
            attempts.push(Attempt {
                backend: rejected.backend.clone(),
                class: ErrorClass::Rejected,
                rejected: Some(reason),
                message: rejected.to_string(),
                retry_after,
            });
            let to = plan.get(k + 1).map(|step| match *step {
                Step::Skip(i, ..) | Step::Call(i) => i,
            });
            failover_event(&inner, i, to, request.model(), ErrorClass::Rejected);
        }
        let mut c = 0;
        let mut hedged = false;
        while c < calls.len() {
            let i = calls[c];
            let hedge = match (&inner.hedge, calls.get(c + 1)) {
                (Some(hedge), Some(&j)) if !hedged => hedge
                    .delay_for(&inner.scoreboard, &inner.backends[i].id, request.model())
                    .map(|delay| (j, delay)),
                _ => None,
            };
            let (verdicts, consumed) = match hedge {
                None => {
                    let last = c + 1 == calls.len();
                    (smallvec![try_backend(&inner, i, &request, last).await], 1)
                }
                Some((j, delay)) => {
                    hedged = true;
                    let last = c + 2 == calls.len();
                    hedged_pair(&inner, (i, j), &request, last, delay).await
                }
            };
            for (i, verdict, tried) in verdicts {
                attempts.extend(tried);
                let class = match verdict {
                    Verdict::Served(response) => {
                        let response = report(&inner, i, response, attempts);
                        return Ok(continuable(&inner, &request, i, started, response));
                    }
                    Verdict::Stop(error) => return Err(error),
                    Verdict::Next { called, class } => {
                        called_any |= called;
                        class
                    }
                };
                let next = calls.get(c + consumed).copied();
                failover_event(&inner, i, next, request.model(), class);
            }
            c += consumed;
        }
        let round = &attempts[round_start..];
        let earliest = round
            .iter()
            .filter(|a| a.retry_after.is_some())
            .min_by_key(|a| a.retry_after);
        let retry_after = earliest.and_then(|a| a.retry_after);
        if !called_any {
            if let (Some(max), Some(attempt)) = (inner.wait_when_unavailable, earliest) {
                let wait = retry_after.unwrap_or_default().max(MIN_ROUND_WAIT);
                if waited.saturating_add(wait) <= max {
                    emit(&inner.sink, || Event::Throttled {
                        backend: &attempt.backend,
                        model: request.model(),
                        waited: wait,
                    });
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    continue;
                }
            }
        }
        return Err(FailoverError {
            attempts,
            retry_after,
        }
        .into());
    }
}

/// The order of one round: the strategy's, then the scoreboard's say. Known
/// refusals are skipped first (no call), then the available backends are
/// called, deprioritised ones (late, slow) last.
pub(crate) fn plan<Req: LlmRequest, C>(inner: &Inner<Req, C>, request: &Req) -> Plan {
    let now = Instant::now();
    let scores: SmallVec<[ScoreView; INLINE_BACKENDS]> = inner
        .backends
        .iter()
        .map(|member| match &member.model {
            Some(model_of) => inner.scoreboard.view(&member.id, &model_of(request), now),
            None => inner.scoreboard.view(&member.id, request.model(), now),
        })
        .collect();
    let order = inner.strategy.order(&Inputs {
        ids: &inner.ids,
        scores: &scores,
        turn: &inner.turn,
        rng: &inner.jitter,
        session: inner.session_key.as_ref().and_then(|key| key(request)),
    });
    let mut plan = Plan::new();
    plan.extend(order.iter().filter_map(|&i| {
        let score = &scores[i];
        score
            .refused_by
            .map(|reason| Step::Skip(i, reason, score.retry_after(now)))
    }));
    for deprioritised in [false, true] {
        plan.extend(
            order
                .iter()
                .filter(|&&i| {
                    !scores[i].is_unavailable() && scores[i].is_deprioritised() == deprioritised
                })
                .map(|&i| Step::Call(i)),
        );
    }
    plan
}

fn report<Req, C>(
    inner: &Inner<Req, C>,
    i: usize,
    mut response: Response<FailoverBody<C>>,
    skipped: Vec<Attempt>,
) -> Response<FailoverBody<C>> {
    response.extensions_mut().insert(FailoverReport {
        served_by: inner.backends[i].id.clone(),
        strategy: inner.strategy.as_str(),
        skipped,
    });
    response
}

/// With continuation on, the body splices a continuation when the stream
/// fails after content, and the response carries its log.
fn continuable<Req, C>(
    inner: &Arc<Inner<Req, C>>,
    request: &Req,
    i: usize,
    started: Instant,
    mut response: Response<FailoverBody<C>>,
) -> Response<FailoverBody<C>>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    if let Some((splice, log)) = Splice::new(inner, request, i, started) {
        response.extensions_mut().insert(log);
        response = response.map(|body| body.splicing(Box::new(splice)));
    }
    response
}

fn failover_event<Req, C>(
    inner: &Inner<Req, C>,
    from: usize,
    to: Option<usize>,
    model: &str,
    reason: ErrorClass,
) {
    emit(&inner.sink, || Event::Failover {
        from: &inner.backends[from].id,
        to: to.map(|to| &inner.backends[to].id),
        model,
        reason,
    });
}

/// What trying one backend came to, with the attempts it made.
type Tried<C> = (usize, Verdict<C>, Vec<Attempt>);

/// What one step of the router tried: one backend, or a hedged pair.
type Tries<C> = SmallVec<[Tried<C>; 2]>;

/// Per-request lists of backend indexes and steps: inline up to this many
/// backends, so routing allocates nothing for them.
pub(crate) const INLINE_BACKENDS: usize = 8;

/// The steps of one round.
pub(crate) type Plan = SmallVec<[Step; INLINE_BACKENDS]>;

/// Tries backend `i`, with retries, and records every attempt.
async fn try_backend<Req, C>(
    inner: &Inner<Req, C>,
    i: usize,
    request: &Req,
    last_backend: bool,
) -> Tried<C>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    let mut attempts = Vec::new();
    let verdict = try_backend_into(inner, i, request, last_backend, &mut attempts).await;
    (i, verdict, attempts)
}

async fn try_backend_into<Req, C>(
    inner: &Inner<Req, C>,
    i: usize,
    request: &Req,
    last_backend: bool,
    attempts: &mut Vec<Attempt>,
) -> Verdict<C>
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    let member = &inner.backends[i];
    let id = &member.id;
    let mut retry = 0;
    loop {
        let last_try = retry >= inner.retries;
        let last_attempt = last_backend && last_try;
        // A stack that owns its deadline is never raced: its timeout layer
        // cuts the attempt, and every layer in it sees the timeout.
        let (service, deadline) = match &member.deadline {
            Some(extended) => (
                extended
                    .as_ref()
                    .filter(|_| last_attempt)
                    .unwrap_or(&member.service),
                None,
            ),
            None => (
                &member.service,
                inner.first_content_timeout.map(|after| {
                    if last_attempt {
                        after.saturating_add(inner.last_attempt_extra)
                    } else {
                        after
                    }
                }),
            ),
        };
        let probe = member.probe.as_ref().filter(|_| !last_attempt);
        let error = match attempt(service.call_clone(request.clone()), deadline, probe).await {
            Ok(response) => return Verdict::Served(response),
            Err(error) => error,
        };
        if let Some(rejected) = find::<Rejected>(&*error) {
            attempts.push(Attempt {
                backend: id.clone(),
                class: ErrorClass::Rejected,
                rejected: Some(rejected.reason),
                message: rejected.to_string(),
                retry_after: rejected.retry_after,
            });
            // The next request skips it without a call, even when the gate
            // reports to a sink of its own.
            inner.scoreboard.record(&Event::Rejected {
                backend: id,
                model: request.model(),
                reason: rejected.reason,
                retry_after: rejected.retry_after,
            });
            return Verdict::Next {
                called: false,
                class: ErrorClass::Rejected,
            };
        }
        if deadline.is_some() && is_first_content_timeout(&*error) {
            // Cut by this router's own deadline: the layers inside saw a
            // drop, so the scoreboard hears it from here.
            inner.scoreboard.mark_late(id, request.model());
        }
        let class = inner.classifier.classify(&*error);
        let retry_after = streamgate_core::retry_after(&*error);
        attempts.push(Attempt {
            backend: id.clone(),
            class,
            rejected: None,
            message: error.to_string(),
            retry_after,
        });
        match class {
            ErrorClass::Client | ErrorClass::ContentFilter | ErrorClass::Cancelled => {
                return Verdict::Stop(error)
            }
            ErrorClass::ContextLength => {
                return match inner.context_length {
                    ContextLengthPolicy::Stop => Verdict::Stop(error),
                    ContextLengthPolicy::NextBackend => Verdict::Next {
                        called: true,
                        class,
                    },
                };
            }
            // A nested router whose backends all refused: a refusal too.
            ErrorClass::Rejected => {
                return Verdict::Next {
                    called: false,
                    class,
                }
            }
            class if class.is_retryable() && !last_try => {
                match inner.backoff.delay(retry, retry_after, inner.jitter.unit()) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        retry += 1;
                    }
                    // The provider asks for longer than is worth waiting.
                    None => {
                        return Verdict::Next {
                            called: true,
                            class,
                        }
                    }
                }
            }
            // Retryable with no retry left, or unknown: another backend
            // may well succeed.
            class => {
                return Verdict::Next {
                    called: true,
                    class,
                }
            }
        }
    }
}

/// Backends `i` then, after `delay` without content from it, `j` as well:
/// the first to commit wins and the other is dropped. Returns what became
/// of each backend tried, in the order they finished, and how many of the
/// two were used (1 when `i` settled before the delay, or the budget had no
/// hedge left).
async fn hedged_pair<Req, C>(
    inner: &Inner<Req, C>,
    (i, j): (usize, usize),
    request: &Req,
    j_is_last: bool,
    delay: Duration,
) -> (Tries<C>, usize)
where
    Req: LlmRequest + Send + Sync + 'static,
    C: Chunk + Send + 'static,
{
    let mut primary = pin!(try_backend(inner, i, request, false));
    let mut timer = pin!(tokio::time::sleep(delay));
    let settled = poll_fn(|cx| {
        if let Poll::Ready(tried) = primary.as_mut().poll(cx) {
            return Poll::Ready(Some(tried));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await;
    if let Some(tried) = settled {
        return (smallvec![tried], 1);
    }
    if !inner.hedge_budget.try_take() {
        return (smallvec![primary.await], 1);
    }
    let (first, second) = (&inner.backends[i].id, &inner.backends[j].id);
    let estimated_tokens = request.estimated_tokens();
    let hedge_event = |stage| {
        emit(&inner.sink, || Event::Hedge {
            primary: first,
            hedge: second,
            model: request.model(),
            stage,
            after: delay,
            estimated_tokens,
        });
    };
    hedge_event(HedgeStage::Started);
    let mut hedge = pin!(try_backend(inner, j, request, j_is_last));
    let (winner, other) = poll_fn(|cx| {
        if let Poll::Ready(tried) = primary.as_mut().poll(cx) {
            return Poll::Ready((tried, false));
        }
        hedge.as_mut().poll(cx).map(|tried| (tried, true))
    })
    .await;
    let (done, hedge_finished) = (winner, other);
    let cancelled = |k: usize| Attempt {
        backend: inner.backends[k].id.clone(),
        class: ErrorClass::Cancelled,
        rejected: None,
        message: format!(
            "{} cancelled: the other hedged attempt produced content first",
            inner.backends[k].id
        ),
        retry_after: None,
    };
    match done.1 {
        // Content first: the other attempt is dropped (with its request)
        // when this function returns.
        Verdict::Served(_) => {
            let loser = if hedge_finished { i } else { j };
            hedge_event(if hedge_finished {
                HedgeStage::Won
            } else {
                HedgeStage::Lost
            });
            let (k, verdict, mut tried) = done;
            tried.push(cancelled(loser));
            (smallvec![(k, verdict, tried)], 2)
        }
        Verdict::Stop(_) => (smallvec![done], 2),
        // Failed before content: the other one goes on alone.
        Verdict::Next { .. } => {
            let rest = if hedge_finished {
                primary.await
            } else {
                hedge.await
            };
            (smallvec![done, rest], 2)
        }
    }
}

/// One call of one backend, up to its commit (first content) or its
/// first-content deadline.
async fn attempt<C>(
    call: BoxResponseFuture<C>,
    deadline: Option<Duration>,
    probe: Option<&ThroughputProbe>,
) -> Result<Response<FailoverBody<C>>, BoxError>
where
    C: Chunk + Send + 'static,
{
    let response = commit(call, deadline, probe).await?;
    Ok(response.map(FailoverBody::new))
}

/// [`attempt`]'s commit, for a continuation too. `call` is a backend's
/// [`call_clone`](BoxStreamingService::call_clone): it readies the backend
/// inside, under the same deadline.
pub(crate) async fn commit<C>(
    call: BoxResponseFuture<C>,
    deadline: Option<Duration>,
    probe: Option<&ThroughputProbe>,
) -> Result<Response<Replay<BoxBody<C>, C>>, BoxError>
where
    C: Chunk + Send + 'static,
{
    let committed = async move {
        let response = Commit::new(call).await?;
        match probe {
            Some(probe) => probe.run(response).await,
            None => Ok(response),
        }
    };
    match deadline {
        None => committed.await,
        // Dropping `committed` on expiry drops the backend's future or body,
        // which cancels the request.
        Some(after) => match tokio::time::timeout(after, committed).await {
            Ok(result) => result,
            Err(_) => Err(StreamTimeout {
                kind: TimeoutKind::FirstContent,
                after,
            }
            .into()),
        },
    }
}

/// The first error of type `T` in `error`'s source chain.
fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// Whether `error` is a first-content timeout.
fn is_first_content_timeout(error: &(dyn Error + 'static)) -> bool {
    find::<StreamTimeout>(error).is_some_and(|timeout| timeout.kind == TimeoutKind::FirstContent)
}
