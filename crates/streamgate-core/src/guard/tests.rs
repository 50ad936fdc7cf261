#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use tower::{Layer, Service, ServiceExt};

use super::{Call, End, Guard, GuardLayer, Now, Refusal, Ticket};
use crate::{
    testing::{Script, ScriptedService, TestRequest},
    BackendId, Chunk, ErrorClass, Event, MetricsSink, RejectReason, Rejected,
};

/// What the test guards did, in order, as `name:what`.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    fn ends(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}:end:");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

/// Logs admissions, heads, chunks and ends; refuses when told to; a held
/// "reservation" is released on drop and logged.
#[derive(Clone)]
struct Recorder {
    name: &'static str,
    refuse: bool,
    log: Log,
    sink: Option<Arc<Events>>,
}

impl Recorder {
    fn new(name: &'static str, log: &Log) -> Self {
        Self {
            name,
            refuse: false,
            log: log.clone(),
            sink: None,
        }
    }

    fn refusing(mut self) -> Self {
        self.refuse = true;
        self
    }
}

struct Held {
    name: &'static str,
    log: Log,
    chunks: u64,
}

impl Ticket for Held {
    fn on_head(&mut self, _head: &http::response::Parts) {
        self.log.push(format!("{}:head", self.name));
    }

    fn on_chunk<C: Chunk>(&mut self, _chunk: &C, _now: &Now) {
        self.chunks += 1;
    }

    fn on_end(self, end: End<'_>, _now: &Now) {
        let what = match end {
            End::Complete => "complete".to_owned(),
            End::Failed { class, .. } => format!("failed {}", class.as_str()),
            End::Cut { timeout, .. } => format!("cut {}", timeout.kind.as_str()),
            End::Refused(rejected) => format!("refused {}", rejected.reason.as_str()),
            End::Dropped => "dropped".to_owned(),
        };
        self.log.push(format!(
            "{}:end:{what} after {} chunks",
            self.name, self.chunks
        ));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.log.push(format!("{}:released", self.name));
    }
}

impl Guard for Recorder {
    type Ticket = Held;

    fn admit(&mut self, call: &Call<'_>) -> Result<Held, Refusal<'_>> {
        self.log.push(format!("{}:admit", self.name));
        if self.refuse {
            let rejected = Rejected::new(call.backend().clone(), RejectReason::QuotaExhausted)
                .with_retry_after(Some(Duration::from_secs(3)));
            return Err(Refusal::new(
                rejected,
                self.sink.as_deref().map(|s| s as &dyn MetricsSink),
            ));
        }
        Ok(Held {
            name: self.name,
            log: self.log.clone(),
            chunks: 0,
        })
    }
}

/// An observer that never refuses.
#[derive(Clone)]
struct Watcher(Recorder);

impl Guard for Watcher {
    type Ticket = Held;
    fn gates(&self) -> bool {
        false
    }

    fn admit(&mut self, call: &Call<'_>) -> Result<Held, Refusal<'_>> {
        self.0.admit(call)
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl MetricsSink for Events {
    fn record(&self, event: &Event<'_>) {
        if let Event::Rejected {
            backend,
            model,
            reason,
            retry_after,
        } = event
        {
            self.0.lock().unwrap().push(format!(
                "{backend} {model} {} {retry_after:?}",
                reason.as_str()
            ));
        }
    }
}

fn backend() -> BackendId {
    BackendId::new("openai")
}

#[tokio::test(start_paused = true)]
async fn a_tuple_admits_in_order_and_sees_every_hook_once() {
    let log = Log::default();
    let guard = (Recorder::new("a", &log), Recorder::new("b", &log));
    let client = ScriptedService::new(Script::new().text("one").text("two"));
    let service = GuardLayer::new(backend(), guard).layer(client.clone());
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let chunks: Vec<_> = response.into_body().collect().await;
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        log.take(),
        [
            "a:admit",
            "b:admit",
            "a:head",
            "b:head",
            "a:end:complete after 2 chunks",
            "a:released",
            "b:end:complete after 2 chunks",
            "b:released",
        ]
    );
    assert_eq!(client.probe().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_later_refusal_releases_the_earlier_ticket_and_never_calls() {
    let log = Log::default();
    let sink = Arc::new(Events::default());
    let mut refusing = Recorder::new("b", &log).refusing();
    refusing.sink = Some(sink.clone());
    let guard = (Recorder::new("a", &log), refusing, Recorder::new("c", &log));
    let client = ScriptedService::new(Script::new().text("never"));
    let mut service = GuardLayer::new(backend(), guard).layer(client.clone());
    let error = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"))
        .await
        .unwrap_err();
    let rejected = error.downcast_ref::<Rejected>().expect("a rejection");
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(rejected.retry_after, Some(Duration::from_secs(3)));
    // `c` is never asked; `a` ends as refused and is released at once.
    assert_eq!(
        log.take(),
        [
            "a:admit",
            "b:admit",
            "a:end:refused quota_exhausted after 0 chunks",
            "a:released",
        ]
    );
    assert_eq!(client.probe().calls(), 0);
    // Reported once, by the layer.
    assert_eq!(
        *sink.0.lock().unwrap(),
        ["openai m quota_exhausted Some(3s)"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusing_layer_does_not_wait_for_the_inner_readiness() {
    let log = Log::default();
    let client = ScriptedService::new(Script::new().text("never"));
    client.hold_readiness(true);
    let mut service =
        GuardLayer::new(backend(), Recorder::new("a", &log).refusing()).layer(client.clone());
    // Ready at once though the client is not, and the refusal resolves now.
    let error = futures::FutureExt::now_or_never(async {
        ServiceExt::<TestRequest>::ready(&mut service)
            .await
            .unwrap()
            .call(TestRequest::new("m"))
            .await
    })
    .expect("resolves without waiting")
    .unwrap_err();
    assert!(error.is::<Rejected>());
    assert_eq!(client.probe().calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_observer_layer_delegates_readiness() {
    let log = Log::default();
    let client = ScriptedService::new(Script::new().text("hi"));
    client.hold_readiness(true);
    let mut service = GuardLayer::new(backend(), Watcher(Recorder::new("w", &log))).layer(client);
    let ready = futures::FutureExt::now_or_never(ServiceExt::<TestRequest>::ready(&mut service));
    assert!(ready.is_none(), "waits for the inner service");
    // An absent gate beside an observer does not gate either; a present
    // one does.
    let client = ScriptedService::new(Script::new().text("hi"));
    client.hold_readiness(true);
    let watcher = Watcher(Recorder::new("w", &log));
    let mut absent =
        GuardLayer::new(backend(), (watcher.clone(), None::<Recorder>)).layer(client.clone());
    let ready = futures::FutureExt::now_or_never(ServiceExt::<TestRequest>::ready(&mut absent));
    assert!(ready.is_none(), "waits for the inner service");
    let mut present =
        GuardLayer::new(backend(), (watcher, Some(Recorder::new("g", &log)))).layer(client);
    let ready = futures::FutureExt::now_or_never(ServiceExt::<TestRequest>::ready(&mut present));
    assert!(ready.is_some(), "ready at once");
}

#[tokio::test(start_paused = true)]
async fn every_end_is_reported_exactly_once() {
    struct Case {
        script: Script,
        drop_after: Option<usize>,
        expected: &'static str,
    }
    let cases = [
        Case {
            script: Script::new().text("a").text("b"),
            drop_after: None,
            expected: "complete after 2 chunks",
        },
        Case {
            script: Script::new().text("a").fail(ErrorClass::Server),
            drop_after: None,
            expected: "failed server after 1 chunks",
        },
        Case {
            script: Script::new().fail_call(ErrorClass::Overloaded),
            drop_after: None,
            expected: "failed overloaded after 0 chunks",
        },
        Case {
            script: Script::new().text("a").text("b").text("c"),
            drop_after: Some(1),
            expected: "dropped after 1 chunks",
        },
    ];
    for case in cases {
        let log = Log::default();
        let client = ScriptedService::new(case.script);
        let service = GuardLayer::new(backend(), Recorder::new("g", &log)).layer(client);
        if let Ok(response) = service.oneshot(TestRequest::new("m")).await {
            let mut body = response.into_body();
            let mut seen = 0;
            while let Some(item) = body.next().await {
                if item.is_err() {
                    break;
                }
                seen += 1;
                if Some(seen) == case.drop_after {
                    break;
                }
            }
            drop(body);
        }
        assert_eq!(log.ends("g"), [format!("g:end:{}", case.expected)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_cut_ends_as_cut_for_every_guard_and_once() {
    use crate::{StreamTimeout, TimeoutKind};
    // A stream whose second item is a first-content deadline's error, as
    // the timeout layer below a guard yields it.
    let log = Log::default();
    let guard = (Recorder::new("a", &log), Recorder::new("b", &log));
    let service =
        GuardLayer::new(backend(), guard).layer(tower::service_fn(|_request: TestRequest| async {
            let items: Vec<Result<crate::testing::TestChunk, crate::BoxError>> = vec![
                Ok(crate::testing::TestChunk::Meta("ping")),
                Err(StreamTimeout {
                    kind: TimeoutKind::FirstContent,
                    after: Duration::from_secs(5),
                }
                .into()),
            ];
            Ok::<_, crate::BoxError>(http::Response::new(futures::stream::iter(items)))
        }));
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let items: Vec<_> = response.into_body().collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(log.ends("a"), ["a:end:cut first_content after 1 chunks"]);
    assert_eq!(log.ends("b"), ["b:end:cut first_content after 1 chunks"]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_ends_the_tickets_once_as_dropped() {
    let log = Log::default();
    let client = ScriptedService::new(Script::new().stall_call());
    let mut service = GuardLayer::new(
        backend(),
        (Recorder::new("a", &log), Recorder::new("b", &log)),
    )
    .layer(client);
    let future = ServiceExt::<TestRequest>::ready(&mut service)
        .await
        .unwrap()
        .call(TestRequest::new("m"));
    let mut future = Box::pin(future);
    assert!(futures::FutureExt::now_or_never(future.as_mut()).is_none());
    drop(future);
    assert_eq!(log.ends("a"), ["a:end:dropped after 0 chunks"]);
    assert_eq!(log.ends("b"), ["b:end:dropped after 0 chunks"]);
}

#[tokio::test(start_paused = true)]
async fn every_guard_sees_the_same_time_for_a_chunk() {
    /// Keeps each chunk's time where the test can read it.
    #[derive(Clone, Default)]
    struct Times(Arc<Mutex<Vec<tokio::time::Instant>>>);
    struct Timed(Times);
    impl Ticket for Timed {
        fn on_chunk<C: Chunk>(&mut self, _chunk: &C, now: &Now) {
            self.0 .0.lock().unwrap().push(now.get());
        }
        fn on_end(self, _end: End<'_>, _now: &Now) {}
    }
    #[derive(Clone)]
    struct Timing(Times);
    impl Guard for Timing {
        type Ticket = Timed;
        fn gates(&self) -> bool {
            false
        }
        fn admit(&mut self, _call: &Call<'_>) -> Result<Timed, Refusal<'_>> {
            Ok(Timed(self.0.clone()))
        }
    }
    let (first, second) = (Times::default(), Times::default());
    let client = ScriptedService::new(
        Script::new()
            .text("a")
            .wait(Duration::from_millis(250))
            .text("b"),
    );
    let service =
        GuardLayer::new(backend(), (Timing(first.clone()), Timing(second.clone()))).layer(client);
    let start = tokio::time::Instant::now();
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let _: Vec<_> = response.into_body().collect().await;
    let first = first.0.lock().unwrap().clone();
    assert_eq!(first, *second.0.lock().unwrap());
    assert_eq!(first.len(), 2);
    assert_eq!(first[1] - first[0], Duration::from_millis(250));
    assert!(first[0] >= start);
}

#[test]
fn a_call_reads_the_estimate_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static ESTIMATES: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone)]
    struct Counted;
    impl crate::LlmRequest for Counted {
        fn model(&self) -> &str {
            "m"
        }
        fn estimated_tokens(&self) -> u64 {
            ESTIMATES.fetch_add(1, Ordering::Relaxed);
            42
        }
    }
    let backend = backend();
    let call = Call::new(&backend, &Counted);
    assert_eq!(ESTIMATES.load(Ordering::Relaxed), 0, "lazy");
    assert_eq!(call.estimate(), 42);
    assert_eq!(call.estimate(), 42);
    assert_eq!(ESTIMATES.load(Ordering::Relaxed), 1);
    assert_eq!(call.model(), "m");
}
