#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::FutureExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::atomic::Ordering;
use streamgate_core::{
    guard::{Call, End, Guard, GuardLayer, GuardService, Now, Refusal, Ticket},
    testing::{Script, ScriptedService, TestRequest},
    BackendId, Event, MetricsSink, RejectReason, Rejected,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::{PacedGuard, PacingLayer};
use crate::{QuotaInfo, QuotaTracker};

/// What a sink heard: one value from each event that has one.
struct Heard<T>(Mutex<Vec<T>>, fn(&Event<'_>) -> Option<T>);

impl<T: Send + 'static> MetricsSink for Heard<T> {
    fn record(&self, event: &Event<'_>) {
        if let Some(value) = (self.1)(event) {
            self.0.lock().unwrap().push(value);
        }
    }
}

/// The waits reported.
type Waits = Heard<Duration>;

fn waits() -> Arc<Waits> {
    Arc::new(Heard(Mutex::default(), |event| match event {
        Event::Throttled { waited, .. } => Some(*waited),
        _ => None,
    }))
}

fn backend() -> BackendId {
    BackendId::new("b")
}

/// Sends `requests` one after another; returns when each call reached the
/// backend, relative to the start.
async fn send_all<S>(service: &mut S, requests: Vec<TestRequest>) -> Vec<Duration>
where
    S: Service<TestRequest> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    let mut at = Vec::new();
    for request in requests {
        let _ = service.clone().oneshot(request).await;
        at.push(start.elapsed());
    }
    at
}

/// A client behind pacing of 10 requests a minute, one at once, whose
/// waits are reported to `waits`.
fn ten_a_minute_one_at_once(
    waits: &Arc<Waits>,
) -> (ScriptedService, super::Pacing<ScriptedService>) {
    let inner = ScriptedService::new(Script::new().text("x"));
    (inner.clone(), ten_a_minute(waits).layer(inner))
}

/// Pacing of 10 requests a minute, one at once, reporting to `waits`.
fn ten_a_minute(waits: &Arc<Waits>) -> PacingLayer {
    PacingLayer::builder(backend())
        .requests_per_minute(10)
        .request_burst(1)
        .sink(waits.clone())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_wait_instead_of_failing_and_each_wait_is_reported() {
    let waits = waits();
    let (inner, mut service) = ten_a_minute_one_at_once(&waits);
    let at = send_all(&mut service, vec![TestRequest::new("m"); 3]).await;
    // Burst 1, refill 9 per minute: one every 6.67 s after the first.
    let period = Duration::from_secs(60) / 9;
    assert_eq!(at[0], Duration::ZERO);
    assert!(
        at[1] >= period && at[1] < period + Duration::from_millis(1),
        "{at:?}"
    );
    assert!(
        at[2] >= 2 * period && at[2] < 2 * period + Duration::from_millis(1),
        "{at:?}"
    );
    assert_eq!(inner.probe().calls(), 3);
    let waits = waits.0.lock().unwrap().clone();
    assert_eq!(waits.len(), 2);
    assert_eq!(waits[0], at[1]);
}

#[tokio::test(start_paused = true)]
async fn waits_are_weighted_by_the_token_estimate() {
    let layer = PacingLayer::builder(backend())
        .tokens_per_minute(1000)
        .token_burst(500)
        .build()
        .unwrap();
    let inner = ScriptedService::new(Script::new().text("x"));
    let mut service = layer.layer(inner);
    let at = send_all(
        &mut service,
        vec![
            TestRequest::new("m").with_estimate(500),
            TestRequest::new("m").with_estimate(50),
            TestRequest::new("m").with_estimate(0),
        ],
    )
    .await;
    // The burst is spent; 50 tokens at 500 per minute take 6 s. A request
    // without an estimate takes no tokens.
    assert_eq!(at[0], Duration::ZERO);
    assert!(
        at[1] >= Duration::from_secs(6) && at[1] < Duration::from_millis(6001),
        "{at:?}"
    );
    assert_eq!(at[2], at[1]);
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_burst_is_clamped_and_goes_through() {
    let layer = PacingLayer::builder(backend())
        .tokens_per_minute(100)
        .build()
        .unwrap();
    let mut service = layer.layer(ScriptedService::new(Script::new().text("x")));
    let at = send_all(
        &mut service,
        vec![
            TestRequest::new("m").with_estimate(1_000_000),
            TestRequest::new("m").with_estimate(1_000_000),
        ],
    )
    .await;
    // Burst 10 (a tenth), refill 90 per minute: the second waits 10/90 min.
    assert_eq!(at[0], Duration::ZERO);
    assert!(at[1] <= Duration::from_secs(7), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_request_never_calls_the_backend() {
    let layer = PacingLayer::builder(backend())
        .requests_per_minute(2)
        .request_burst(1)
        .build()
        .unwrap();
    let inner = ScriptedService::new(Script::new().text("x"));
    let mut service = layer.layer(inner.clone());
    ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap();
    let _ = service.call(TestRequest::new("m")).await;
    ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap();
    let mut waiting = service.call(TestRequest::new("m"));
    assert!((&mut waiting).now_or_never().is_none());
    drop(waiting);
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(inner.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn adopts_limits_learned_from_headers() {
    let tracker = QuotaTracker::new();
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-tokens", HeaderValue::from_static("600"));
    let info = QuotaInfo::parse(StatusCode::OK, &headers, None, std::time::SystemTime::now());
    tracker.observe(&backend(), "m", &info, Instant::now());

    let layer = PacingLayer::builder(backend())
        .adopt_learned(tracker)
        .build()
        .unwrap();
    let mut service = layer.layer(ScriptedService::new(Script::new().text("x")));
    let at = send_all(
        &mut service,
        vec![
            TestRequest::new("m").with_estimate(60),
            TestRequest::new("m").with_estimate(60),
            // No limits learned for this model: not paced.
            TestRequest::new("other").with_estimate(60_000),
        ],
    )
    .await;
    // Learned 600/min: burst 60, refill 540/min, so 60 tokens take 6.67 s.
    assert_eq!(at[0], Duration::ZERO);
    let refill = Duration::from_secs(60) / 9;
    assert!(
        at[1] >= refill && at[1] < refill + Duration::from_millis(1),
        "{at:?}"
    );
    assert_eq!(at[2], at[1]);
}

#[tokio::test(start_paused = true)]
async fn learned_limiters_stay_at_the_trackers_cap_whatever_the_model_names() {
    let tracker = QuotaTracker::builder().model_cap(4).build().unwrap();
    let layer = PacingLayer::builder(backend())
        .adopt_learned(tracker.clone())
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-tokens", HeaderValue::from_static("600"));
    let info = QuotaInfo::parse(StatusCode::OK, &headers, None, std::time::SystemTime::now());
    let service = layer.layer(ScriptedService::new(Script::new().text("x")));
    for i in 0..10_000 {
        let model = format!("model-{i}");
        tracker.observe(&backend(), &model, &info, Instant::now());
        let _ = service.clone().oneshot(TestRequest::new(model)).await;
    }
    assert_eq!(tracker.len(), 5);
    assert_eq!(layer.learned_models(), 5);
}

#[test]
fn builder_validates_once() {
    let b = || PacingLayer::builder(backend());
    assert!(b().build().is_err());
    assert!(b().tokens_per_minute(0).build().is_err());
    assert!(b().tokens_per_minute(10).token_burst(11).build().is_err());
    assert!(b().request_burst(1).build().is_err());
    assert!(b().tokens_per_minute(10).token_burst(10).build().is_ok());
    assert!(b().adopt_learned(QuotaTracker::new()).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_admitted_request_is_called_at_call_and_a_paced_one_from_its_future() {
    let waits = waits();
    let (inner, mut service) = ten_a_minute_one_at_once(&waits);

    // The burst admits the first at once: the inner call is made in `call`.
    let first = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    assert_eq!(inner.probe().calls(), 1);
    first.await.unwrap();

    // The second must wait: nothing reaches the inner service until its
    // future has waited out the refill, which counts from the call.
    let second = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    assert_eq!(inner.probe().calls(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let start = Instant::now();
    second.await.unwrap();
    assert_eq!(inner.probe().calls(), 2);
    let period = Duration::from_secs(60) / 9;
    let waited = Duration::from_secs(2) + start.elapsed();
    assert!(
        waited >= period && waited < period + Duration::from_millis(1),
        "{waited:?}"
    );
    assert_eq!(waits.0.lock().unwrap().clone(), [waited]);
}

/// A guard behind pacing: counts its admissions and the ends its tickets
/// see, and refuses everything once `refuse` is set.
#[derive(Clone, Default)]
struct Behind {
    admitted: Arc<std::sync::atomic::AtomicUsize>,
    ends: Arc<Mutex<Vec<&'static str>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    /// Where its refusals are reported.
    sink: Option<Arc<dyn MetricsSink>>,
}

struct BehindTicket(Arc<Mutex<Vec<&'static str>>>);

impl Ticket for BehindTicket {
    fn on_end(self, end: End<'_>, _now: &Now) {
        self.0.lock().unwrap().push(match end {
            End::Complete => "complete",
            End::Failed { .. } => "failed",
            End::Cut { .. } => "cut",
            End::Refused(_) => "refused",
            End::Dropped => "dropped",
        });
    }
}

impl Guard for Behind {
    type Ticket = BehindTicket;

    fn admit(&mut self, call: &Call<'_>) -> Result<BehindTicket, Refusal<'_>> {
        if self.refuse.load(Ordering::Relaxed) {
            let rejected = Rejected::new(call.backend().clone(), RejectReason::CircuitOpen);
            return Err(Refusal::new(rejected, self.sink.as_deref()));
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(BehindTicket(self.ends.clone()))
    }
}

impl Behind {
    fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }
}

/// The refusals reported.
fn rejections() -> Arc<Heard<RejectReason>> {
    Arc::new(Heard(Mutex::default(), |event| match event {
        Event::Rejected { reason, .. } => Some(*reason),
        _ => None,
    }))
}

/// A scripted client behind one guard layer of pacing and a [`Behind`].
type PacedService = GuardService<ScriptedService, PacedGuard<Behind>>;

/// Pacing of 10 requests a minute, one at once, in front of `behind`, in
/// one guard layer over a scripted client.
fn paced_guard_layer(waits: &Arc<Waits>, behind: &Behind) -> (ScriptedService, PacedService) {
    let pacing = ten_a_minute(waits);
    let inner = ScriptedService::new(Script::new().text("x"));
    let layer = GuardLayer::new(backend(), pacing.guard(behind.clone()));
    (inner.clone(), layer.layer(inner))
}

/// Drains a response to its end.
async fn drain<B: futures::Stream + Unpin>(response: http::Response<B>) {
    use futures::StreamExt;
    let mut body = response.into_body();
    while body.next().await.is_some() {}
}

/// Sends one request through `service` to its end, then calls a second,
/// which must wait: its future, not yet polled.
async fn second_call(service: &mut PacedService) -> <PacedService as Service<TestRequest>>::Future {
    let first = ServiceExt::<TestRequest>::ready(&mut *service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    drain(first.await.unwrap()).await;
    ServiceExt::<TestRequest>::ready(&mut *service)
        .await
        .unwrap()
        .call(TestRequest::new("m"))
}

#[tokio::test(start_paused = true)]
async fn as_a_guard_it_waits_like_the_layer_and_asks_the_next_guard_only_after_the_wait() {
    let waits = waits();
    let behind = Behind::default();
    let (inner, mut service) = paced_guard_layer(&waits, &behind);
    let start = Instant::now();

    // Admitted at once: the next guard is asked in `call`.
    let first = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    assert_eq!(behind.admitted(), 1);
    drain(first.await.unwrap()).await;

    // Must wait: the next guard is not asked while it waits.
    let mut second = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    assert!((&mut second).now_or_never().is_none());
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!((&mut second).now_or_never().is_none());
    assert_eq!(behind.admitted(), 1, "asked while waiting");
    assert_eq!(inner.probe().calls(), 1);

    let response = second.await.unwrap();
    let period = Duration::from_secs(60) / 9;
    let waited = start.elapsed();
    assert!(
        waited >= period && waited < period + Duration::from_millis(1),
        "{waited:?}"
    );
    assert_eq!(behind.admitted(), 2);
    assert_eq!(inner.probe().calls(), 2);
    drain(response).await;
    // The ticket taken after the wait sees its call to the end, as the one
    // taken at once does.
    assert_eq!(*behind.ends.lock().unwrap(), ["complete", "complete"]);
    let waits = waits.0.lock().unwrap().clone();
    assert_eq!(waits, [waited]);
}

#[tokio::test(start_paused = true)]
async fn as_a_guard_a_request_dropped_while_waiting_takes_nothing_of_the_next_guard() {
    let waits = waits();
    let behind = Behind::default();
    let (inner, mut service) = paced_guard_layer(&waits, &behind);
    let mut waiting = second_call(&mut service).await;
    assert!((&mut waiting).now_or_never().is_none());
    drop(waiting);
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(behind.admitted(), 1);
    assert_eq!(inner.probe().calls(), 1);
    assert_eq!(*behind.ends.lock().unwrap(), ["complete"]);
    assert!(waits.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn as_a_guard_a_refusal_after_the_wait_fails_the_call_and_is_reported_once() {
    let rejections = rejections();
    let behind = Behind {
        sink: Some(rejections.clone()),
        ..Behind::default()
    };
    let (inner, mut service) = paced_guard_layer(&waits(), &behind);
    let waiting = second_call(&mut service).await;
    behind.refuse.store(true, Ordering::Relaxed);
    let error = waiting.await.expect_err("refused after the wait");
    let rejected = error.downcast_ref::<Rejected>().expect("a Rejected");
    assert_eq!(rejected.reason, RejectReason::CircuitOpen);
    assert_eq!(*rejections.0.lock().unwrap(), [RejectReason::CircuitOpen]);
    assert_eq!(
        inner.probe().calls(),
        1,
        "a refused call reaches no backend"
    );
    assert_eq!(behind.admitted(), 1);
    assert_eq!(*behind.ends.lock().unwrap(), ["complete"]);
}
