//! Replicas sharing state through a real `redis-server` (started by each
//! test on a free loopback port), against the mock provider over loopback
//! HTTP. Each replica is an independent stack with its own local state and
//! its own `Fleet` connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{eventually, RedisServer};
use futures::StreamExt;
use http::StatusCode;
use streamgate_breaker::{Breaker, OpenWait};
use streamgate_core::{
    state::{Reserve, StateKey},
    BackendId, BoxError, Event, MetricsSink, RejectReason, Rejected,
};
use streamgate_failover::TpmLayer;
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_quota::{QuotaLayer, QuotaTracker};
use streamgate_redis::Fleet;
use tower::{Layer, ServiceExt};

const REPLICAS: usize = 4;
const BUDGET: u64 = 1_000;
/// Each request: 20 input tokens charged at admission, 30 output tokens
/// streamed; the estimate (max tokens plus the prompt) covers both.
const INPUT: u64 = 20;
const OUTPUT: u64 = 30;
/// A bound for a loopback Redis on a loaded machine, not a measurement: a
/// test must not fall back to local state by accident.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Counts the shared-state events.
#[derive(Default)]
struct Events {
    degraded: Mutex<Vec<String>>,
    restored: Mutex<u64>,
}

impl MetricsSink for Events {
    fn record(&self, event: &Event<'_>) {
        match event {
            Event::SharedStateDegraded { error, .. } => {
                self.degraded.lock().unwrap().push((*error).to_owned());
            }
            Event::SharedStateRestored { .. } => *self.restored.lock().unwrap() += 1,
            _ => {}
        }
    }
}

fn client(mock: &MockServer) -> OpenAiChat {
    OpenAiChat::builder()
        .base_url(format!("{}/v1", mock.url()))
        .api_key("sk-test-fleet")
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new("gpt-4o-mini")
        .with_user("hi")
        .with_max_tokens((INPUT + OUTPUT) as u32)
}

/// A fleet member on `redis`, with its own connection.
async fn fleet(redis: &RedisServer, prefix: &str, events: &Arc<Events>) -> Fleet {
    let fleet = Fleet::builder(redis.url())
        .prefix(prefix)
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .sink(events.clone())
        .build()
        .unwrap();
    tokio::time::timeout(TIMEOUT * 5, fleet.connected())
        .await
        .expect("the fleet connects");
    fleet
}

/// Sends one request through `service` and reads the whole stream.
async fn send<S>(service: S) -> Result<u64, BoxError>
where
    S: tower::Service<ChatRequest, Error = BoxError>,
    S::Response: IntoBody,
{
    let response = service.oneshot(request()).await?;
    let mut chunks = 0;
    let mut body = response.into_stream();
    while let Some(chunk) = body.next().await {
        chunk?;
        chunks += 1;
    }
    Ok(chunks)
}

/// The streamed body of any layer's response.
trait IntoBody {
    fn into_stream(self) -> futures::stream::BoxStream<'static, Result<(), BoxError>>;
}

impl<B, C, E> IntoBody for http::Response<B>
where
    B: futures::Stream<Item = Result<C, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn into_stream(self) -> futures::stream::BoxStream<'static, Result<(), BoxError>> {
        self.into_body()
            .map(|item| item.map(|_| ()).map_err(Into::into))
            .boxed()
    }
}

fn rejection(error: &BoxError) -> Option<RejectReason> {
    error.downcast_ref::<Rejected>().map(|r| r.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_share_one_budget_without_an_upstream_429() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start(
        MockConfig::new().with_tokens_per_minute(BUDGET).with_plan(
            Plan::new()
                .with_input_tokens(INPUT)
                .with_output_tokens(OUTPUT),
        ),
    )
    .await
    .unwrap();
    let events = Arc::new(Events::default());
    let mut workers = Vec::new();
    let mut fleets = Vec::new();
    for _ in 0..REPLICAS {
        let fleet = fleet(&redis, "budget", &events).await;
        let layer = TpmLayer::builder("openai")
            .max_tokens_per_minute(BUDGET)
            .shared(fleet.tpm())
            .build()
            .unwrap();
        let service = layer.layer(client(&mock));
        // Two callers per replica, each until the budget refuses it three
        // times in a row (after letting the reconciles land).
        for _ in 0..2 {
            let service = service.clone();
            let fleet = fleet.clone();
            workers.push(tokio::spawn(async move {
                let mut refusals = 0;
                while refusals < 3 {
                    match send(service.clone()).await {
                        Ok(_) => refusals = 0,
                        Err(error) => {
                            assert_eq!(rejection(&error), Some(RejectReason::TpmBudget), "{error}");
                            refusals += 1;
                            fleet.flush().await;
                        }
                    }
                }
            }));
        }
        fleets.push(fleet);
    }
    for worker in workers {
        worker.await.unwrap();
    }

    let log = mock.requests();
    let limited = log
        .iter()
        .filter(|r| r.status == Some(StatusCode::TOO_MANY_REQUESTS))
        .count();
    assert_eq!(limited, 0, "no request met the provider's limit");
    let used: u64 = log.iter().map(|r| r.input_tokens + r.tokens_sent).sum();
    assert!(
        used * 10 >= BUDGET * 9,
        "at least 90 % of the budget was used: {used}"
    );
    assert!(used <= BUDGET, "the fleet stayed within the budget: {used}");
    let shared = fleets[0]
        .tpm_use(&BackendId::new("openai"), "gpt-4o-mini")
        .await
        .unwrap();
    assert_eq!(shared, used, "the shared window holds what was used");
    for fleet in &fleets {
        assert_eq!(
            fleet.stats().local_decisions,
            0,
            "every admission was shared"
        );
    }
    assert!(events.degraded.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_reservations_come_back_after_their_ttl() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let events = Arc::new(Events::default());
    let backend = BackendId::new("openai");
    let key = StateKey::new(&backend, "m");
    let survivor = fleet(&redis, "ttl", &events).await;
    {
        // A replica reserves most of the budget, then dies without
        // reconciling.
        let doomed = Fleet::builder(redis.url())
            .prefix("ttl")
            .timeout(TIMEOUT)
            .reservation_ttl(Duration::from_millis(50))
            .build()
            .unwrap();
        doomed.connected().await;
        let Reserve::Confirm(_, answer) = doomed.tpm().reserve(key, 800, BUDGET) else {
            panic!("a connected fleet asks redis");
        };
        answer.await.unwrap();
    }
    let tpm = survivor.tpm();
    let Reserve::Confirm(_, answer) = tpm.reserve(key, 300, BUDGET) else {
        panic!("a connected fleet asks redis");
    };
    assert!(answer.await.is_err(), "the dead replica's share is held");
    // Its share comes back when the reservation's TTL runs out.
    let mut freed = false;
    for _ in 0..2_000 {
        if survivor.tpm_use(&backend, "m").await == Some(0) {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(freed, "the reservation expired");
    let Reserve::Confirm(grant, answer) = tpm.reserve(key, 300, BUDGET) else {
        panic!("a connected fleet asks redis");
    };
    assert!(answer.await.is_ok(), "the share came back");
    tpm.reconcile(key, grant, 300);
    survivor.flush().await;
    assert_eq!(survivor.tpm_use(&backend, "m").await, Some(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replicas_429_stops_the_others_before_they_call() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start_with_plan(
        Plan::new()
            .fail_with_status(429)
            .with_retry_after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let events = Arc::new(Events::default());
    let backend = BackendId::new("openai");
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let fleet = fleet(&redis, "quota", &events).await;
        let tracker = QuotaTracker::builder()
            .shared(fleet.quota())
            .build()
            .unwrap();
        let layer = QuotaLayer::builder("openai")
            .tracker(tracker.clone())
            .build()
            .unwrap();
        replicas.push((fleet, tracker, layer.layer(client(&mock))));
    }

    let error = send(replicas[0].2.clone()).await.unwrap_err();
    assert_eq!(rejection(&error), None, "the first replica called: {error}");
    assert_eq!(mock.requests().len(), 1);

    let now = tokio::time::Instant::now;
    for (_, tracker, _) in &replicas[1..] {
        eventually("the other replicas learn of the 429", || {
            tracker.check(&backend, "gpt-4o-mini", 0, now()).is_err()
        })
        .await;
    }
    for (_, _, service) in &replicas[1..] {
        let error = send(service.clone()).await.unwrap_err();
        assert_eq!(rejection(&error), Some(RejectReason::QuotaExhausted));
    }
    assert_eq!(mock.requests().len(), 1, "no other replica called");

    // A replica that starts later reads the stored fact when it connects.
    let late = fleet(&redis, "quota", &events).await;
    let tracker = QuotaTracker::builder()
        .shared(late.quota())
        .build()
        .unwrap();
    let refusal = tracker
        .check(&backend, "gpt-4o-mini", 0, now())
        .unwrap_err();
    assert!(refusal.retry_after > Duration::from_secs(20));
    assert!(refusal.retry_after <= Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_probes_a_half_open_backend() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start_with_plan(Plan::new().fail_with_status(500))
        .await
        .unwrap();
    let events = Arc::new(Events::default());
    let open = Duration::from_millis(30);
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let fleet = fleet(&redis, "breaker", &events).await;
        let breaker = Breaker::builder("openai")
            .consecutive_failures(1)
            .open_wait(OpenWait::Fixed(open))
            .minimum_open(open)
            .shared(fleet.breaker())
            .build()
            .unwrap();
        replicas.push((fleet, breaker.clone(), breaker.layer().layer(client(&mock))));
    }

    // One replica meets the failure and opens; the others learn of it and
    // refuse without calling.
    send(replicas[0].2.clone()).await.unwrap_err();
    assert_eq!(mock.requests().len(), 1);
    for (_, _, service) in &replicas[1..] {
        let mut refused = false;
        for _ in 0..2_000 {
            match send(service.clone()).await {
                Err(error) if rejection(&error) == Some(RejectReason::CircuitOpen) => {
                    refused = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        assert!(refused, "the open reached every replica");
    }
    let calls_while_open = mock.requests().len();

    // Once the wait is over, the backend answers slowly, and every replica
    // tries at once: one probe is sent.
    mock.set_plan(
        Plan::new()
            .with_output_tokens(3)
            .with_first_content_delay(Duration::from_millis(50)),
    );
    tokio::time::sleep(open).await;
    let results =
        futures::future::join_all(replicas.iter().map(|(_, _, service)| send(service.clone())))
            .await;
    let probes = mock.requests().len() - calls_while_open;
    assert_eq!(probes, 1, "exactly one replica probed");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(rejection(error), Some(RejectReason::CircuitOpen));
    }

    // The probe succeeded: the circuit is closed for every replica.
    for (fleet, _, _) in &replicas {
        fleet.flush().await;
    }
    for (_, _, service) in &replicas {
        let mut served = false;
        for _ in 0..2_000 {
            if send(service.clone()).await.is_ok() {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(served, "the probe's outcome closed the circuit for all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_no_request_and_sharing_resumes() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start_with_plan(Plan::new().with_output_tokens(2))
        .await
        .unwrap();
    let events = Arc::new(Events::default());
    let fleet = fleet(&redis, "outage", &events).await;
    let layer = TpmLayer::builder("openai")
        .max_tokens_per_minute(1_000_000)
        .shared(fleet.tpm())
        .build()
        .unwrap();
    let service = layer.layer(client(&mock));
    for _ in 0..3 {
        send(service.clone()).await.unwrap();
    }

    redis.kill();
    for _ in 0..10 {
        // Bounded, so a hang fails the test instead of blocking it.
        let result = tokio::time::timeout(TIMEOUT * 5, send(service.clone()))
            .await
            .expect("no request hangs");
        result.expect("no request fails because redis is gone");
    }
    eventually("the outage is reported", || {
        !events.degraded.lock().unwrap().is_empty()
    })
    .await;
    assert!(!fleet.is_connected());
    assert!(
        fleet.stats().local_decisions > 0,
        "admission fell back to local state"
    );

    redis.restart().await;
    tokio::time::timeout(TIMEOUT * 5, fleet.connected())
        .await
        .expect("the fleet reconnects");
    eventually("the recovery is reported", || {
        *events.restored.lock().unwrap() == 1
    })
    .await;
    let before = fleet.stats().local_decisions;
    send(service.clone()).await.unwrap();
    fleet.flush().await;
    assert_eq!(fleet.stats().local_decisions, before, "sharing resumed");
    let shared = fleet
        .tpm_use(&BackendId::new("openai"), "gpt-4o-mini")
        .await
        .unwrap();
    assert!(shared > 0, "the restarted redis holds the new use");
    assert_eq!(
        events.degraded.lock().unwrap().len(),
        1,
        "one event per outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_redacted_everywhere() {
    let Some(redis) = RedisServer::start_with_password(Some("hunter2-fleet")).await else {
        return;
    };
    let events = Arc::new(Events::default());
    let fleet = fleet(&redis, "secret", &events).await;
    assert!(!format!("{fleet:?}").contains("hunter2"));
    assert!(!fleet.url().contains("hunter2"));
    assert!(!format!("{:?}", Fleet::builder(redis.url())).contains("hunter2"));
    assert!(!format!("{:?}", fleet.state()).contains("hunter2"));

    // A wrong password: the outage it causes says so without the secret.
    let wrong = redis.url().replace("hunter2-fleet", "wrong-secret-9");
    let rejected = Fleet::builder(wrong)
        .timeout(TIMEOUT)
        .sink(events.clone())
        .build()
        .unwrap();
    eventually("the failed connection is reported", || {
        !events.degraded.lock().unwrap().is_empty()
    })
    .await;
    for error in events.degraded.lock().unwrap().iter() {
        assert!(!error.contains("wrong-secret-9"), "{error}");
    }
    assert!(!rejected.is_connected());
    let error = Fleet::builder("redis://:hunter2-fleet@127.0.0.1:notaport/")
        .build()
        .map(|_| ())
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(!format!("{error:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backend_option_shares_every_layer() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start_with_plan(
        Plan::new()
            .with_input_tokens(INPUT)
            .with_output_tokens(OUTPUT),
    )
    .await
    .unwrap();
    let events = Arc::new(Events::default());
    // Two replicas, each built as a program would, with one option added.
    let mut services = Vec::new();
    for _ in 0..2 {
        let fleet = fleet(&redis, "backend", &events).await;
        let service = streamgate::Backend::new("openai", client(&mock))
            .first_content_timeout(Duration::from_secs(20))
            .tpm_budget(120)
            .shared_state(&fleet)
            .build()
            .unwrap();
        services.push((fleet, service));
    }
    // One request's estimate fits in 120 tokens twice over, not three times.
    let mut served = 0;
    let mut refused = 0;
    for (fleet, service) in services.iter().chain(services.iter()) {
        match send(service.clone()).await {
            Ok(_) => served += 1,
            Err(error) => {
                assert_eq!(rejection(&error), Some(RejectReason::TpmBudget), "{error}");
                refused += 1;
            }
        }
        fleet.flush().await;
    }
    assert_eq!(served, 2, "the two replicas share one budget");
    assert_eq!(refused, 2);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_never_holds_a_request_past_the_timeout() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockServer::start_with_plan(Plan::new().with_output_tokens(2))
        .await
        .unwrap();
    let events = Arc::new(Events::default());
    let fleet = Fleet::builder(redis.url())
        .prefix("slow")
        .timeout(Duration::from_millis(20))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .sink(events.clone())
        .build()
        .unwrap();
    fleet.connected().await;
    let layer = TpmLayer::builder("openai")
        .max_tokens_per_minute(1_000_000)
        .shared(fleet.tpm())
        .build()
        .unwrap();
    let service = layer.layer(client(&mock));
    send(service.clone()).await.unwrap();

    // The server blocks for half a second; requests go on meanwhile and
    // end while it still sleeps: admission waited at most the timeout.
    let url = redis.url();
    let asleep = tokio::spawn(async move {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.5")
            .query_async::<()>(&mut conn)
            .await
    });
    while events.degraded.lock().unwrap().is_empty() {
        send(service.clone())
            .await
            .expect("a slow redis fails no request");
        assert!(!asleep.is_finished(), "the request never waited for redis");
    }
    assert!(fleet.stats().local_decisions > 0);
    asleep.await.unwrap().unwrap();
    tokio::time::timeout(TIMEOUT * 5, fleet.connected())
        .await
        .expect("sharing resumes once redis answers");
    let error = &events.degraded.lock().unwrap()[0];
    assert!(error.contains("timed out"), "{error}");
}
