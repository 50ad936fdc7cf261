//! Requests in flight shared across replicas through a real `redis-server`
//! (started by each test on a free loopback port): each replica is a quota
//! tracker of its own on a `Fleet` connection of its own, alone or behind a
//! `QuotaLayer` over the mock provider on loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{eventually, RedisServer};
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use streamgate_core::{state::StateKey, BackendId, RejectReason, Rejected};
use streamgate_mock::{MockConfig, MockServer, Plan};
use streamgate_providers::{openai::OpenAiChat, ChatRequest};
use streamgate_quota::{ExhaustReason, InFlight, QuotaInfo, QuotaLayer, QuotaTracker};
use streamgate_redis::Fleet;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// A bound for a loopback Redis on a loaded machine, not a measurement.
const TIMEOUT: Duration = Duration::from_secs(2);
const MODEL: &str = "gpt-4o-mini";

async fn fleet(url: &str, prefix: &str, in_flight_ttl: Duration) -> Fleet {
    let fleet = Fleet::builder(url)
        .prefix(prefix)
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .in_flight_ttl(in_flight_ttl)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .unwrap();
    tokio::time::timeout(TIMEOUT * 5, fleet.connected())
        .await
        .expect("the fleet connects");
    fleet
}

/// A tracker that shares through `fleet` and has read `remaining` requests
/// (resetting in a minute) from a response.
fn tracker(fleet: &Fleet, backend: &BackendId, remaining: u64) -> QuotaTracker {
    let tracker = QuotaTracker::builder()
        .shared(fleet.quota())
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining-requests",
        remaining.to_string().parse().unwrap(),
    );
    headers.insert("x-ratelimit-reset-requests", "60s".parse().unwrap());
    let info = QuotaInfo::parse(StatusCode::OK, &headers, None, SystemTime::now());
    tracker.observe(backend, MODEL, &info, Instant::now());
    tracker
}

fn admit(tracker: &QuotaTracker, backend: &BackendId) -> Result<InFlight, ExhaustReason> {
    tracker
        .admit(backend, MODEL, 10, Instant::now())
        .map_err(|refusal| refusal.reason)
}

/// What `fleet` knows the other replicas have in flight.
fn others(fleet: &Fleet, backend: &BackendId) -> (u64, u64) {
    fleet
        .quota()
        .others_in_flight(StateKey::new(backend, MODEL))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_one_replica_count_at_the_others() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = BackendId::new("openai");
    let mut replicas = Vec::new();
    for _ in 0..4 {
        let fleet = fleet(&redis.url(), "shared", Duration::from_secs(10)).await;
        let tracker = tracker(&fleet, &backend, 4);
        replicas.push((fleet, tracker));
    }

    // The first replica sends three of the four requests the key has left.
    let held: Vec<_> = (0..3)
        .map(|_| admit(&replicas[0].1, &backend).unwrap())
        .collect();
    replicas[0].0.flush().await;
    for (fleet, _) in &replicas[1..] {
        eventually("the others see three in flight", || {
            others(fleet, &backend) == (3, 30)
        })
        .await;
    }
    // The second replica may send the fourth, and nobody a fifth.
    let fourth = admit(&replicas[1].1, &backend).unwrap();
    assert_eq!(
        admit(&replicas[1].1, &backend).unwrap_err(),
        ExhaustReason::InFlight
    );
    replicas[1].0.flush().await;
    for (fleet, tracker) in &replicas[2..] {
        eventually("the others see four in flight", || {
            others(fleet, &backend) == (4, 40)
        })
        .await;
        assert_eq!(
            admit(tracker, &backend).unwrap_err(),
            ExhaustReason::InFlight
        );
    }
    // The first replica hears of the fourth the same way, not at once.
    eventually("the first replica sees the fourth in flight", || {
        others(&replicas[0].0, &backend) == (1, 10)
    })
    .await;

    // A replica that connects now reads the stored counts at once.
    let late = fleet(&redis.url(), "shared", Duration::from_secs(10)).await;
    assert_eq!(others(&late, &backend), (4, 40));

    // Answered: the first replica's three come back to everyone.
    drop(held);
    replicas[0].0.flush().await;
    eventually("the others see one in flight", || {
        others(&replicas[2].0, &backend) == (1, 10)
    })
    .await;
    let three: Vec<_> = (0..3)
        .map(|_| admit(&replicas[2].1, &backend).unwrap())
        .collect();
    drop((three, fourth));
    for (fleet, _) in &replicas[1..] {
        fleet.flush().await;
    }
    for (fleet, _) in &replicas {
        eventually("nothing is in flight anywhere", || {
            others(fleet, &backend) == (0, 0)
        })
        .await;
    }
    for (i, (fleet, _)) in replicas.iter().enumerate() {
        assert_eq!(fleet.stats().dropped_writes, 0);
        // The last replica was only ever refused: it wrote nothing.
        assert_eq!(fleet.stats().round_trips > 0, i < 3, "replica {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_in_flight_count_expires_at_the_others() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = BackendId::new("openai");
    let ttl = Duration::from_millis(300);
    let survivor = fleet(&redis.url(), "dead", ttl).await;
    let survivor_tracker = tracker(&survivor, &backend, 3);

    // A replica in a runtime of its own (its process) takes two requests
    // and dies holding them: its tasks stop, nothing is released.
    let (admitted, admitted_rx) = tokio::sync::oneshot::channel::<Fleet>();
    let (die, dying) = tokio::sync::oneshot::channel::<()>();
    let url = redis.url();
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let fleet = fleet(&url, "dead", ttl).await;
            let backend = BackendId::new("openai");
            let tracker = tracker(&fleet, &backend, 3);
            for _ in 0..2 {
                std::mem::forget(admit(&tracker, &backend).unwrap());
            }
            fleet.flush().await;
            admitted.send(fleet.clone()).unwrap();
            // Alive (and refreshing its count) until told to die.
            let _ = dying.await;
        });
        drop(runtime);
    });
    let doomed_fleet = admitted_rx.await.unwrap();
    eventually("the survivor sees the two in flight", || {
        others(&survivor, &backend) == (2, 20)
    })
    .await;
    // Alive, the replica keeps its count past the TTL by refreshing it.
    let written = doomed_fleet.stats().round_trips;
    eventually("the count is refreshed past its ttl", || {
        doomed_fleet.stats().round_trips >= written + 4
    })
    .await;
    assert_eq!(others(&survivor, &backend), (2, 20), "refreshed");
    let one = admit(&survivor_tracker, &backend).unwrap();
    assert_eq!(
        admit(&survivor_tracker, &backend).unwrap_err(),
        ExhaustReason::InFlight
    );

    die.send(()).unwrap();
    doomed.join().unwrap();
    eventually("the dead replica's count expires", || {
        others(&survivor, &backend) == (0, 0)
    })
    .await;
    let more: Vec<_> = (0..2)
        .map(|_| admit(&survivor_tracker, &backend).unwrap())
        .collect();
    assert_eq!(
        admit(&survivor_tracker, &backend).unwrap_err(),
        ExhaustReason::InFlight
    );
    drop((one, more));
    survivor.flush().await;
    // Redis let the dead replica's stored count go too, and the survivor's
    // is deleted at zero.
    let keys = redis.command(&["KEYS", "dead:inflight:*"]).await.unwrap();
    assert_eq!(keys, redis::Value::Array(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_forgets_the_others_counts_and_a_reconnect_republishes_ours() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = BackendId::new("openai");
    let a = fleet(&redis.url(), "outage", Duration::from_secs(10)).await;
    let b = fleet(&redis.url(), "outage", Duration::from_secs(10)).await;
    let a_tracker = tracker(&a, &backend, 5);
    let b_tracker = tracker(&b, &backend, 5);
    let held = admit(&a_tracker, &backend).unwrap();
    a.flush().await;
    eventually("b sees a's request", || others(&b, &backend) == (1, 10)).await;

    redis.kill();
    eventually("b notices the outage", || !b.is_connected()).await;
    assert_eq!(
        others(&b, &backend),
        (0, 0),
        "unreachable: local counts alone"
    );
    let during: Vec<_> = (0..5)
        .map(|_| admit(&b_tracker, &backend).unwrap())
        .collect();
    drop(during);

    // The restarted server lost everything; each replica writes its own
    // counts again as soon as it is back.
    redis.restart().await;
    for fleet in [&a, &b] {
        tokio::time::timeout(TIMEOUT * 5, fleet.connected())
            .await
            .expect("the fleet reconnects");
    }
    eventually("b sees a's request again", || {
        others(&b, &backend) == (1, 10)
    })
    .await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_replica_refuses_what_another_has_in_flight_without_calling() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Six requests a minute, reported in the headers; a request saying
    // "hold" gets its headers only after a minute (it stays in flight).
    let mock = MockServer::start(MockConfig::new().with_requests_per_minute(6).with_script(
        |info| {
            let plan = Plan::new().with_output_tokens(2);
            if info.body.to_string().contains("hold") {
                plan.with_header_delay(Duration::from_secs(60))
            } else {
                plan
            }
        },
    ))
    .await
    .unwrap();
    let client = OpenAiChat::builder()
        .base_url(format!("{}/v1", mock.url()))
        .api_key("sk-test-in-flight")
        .build()
        .unwrap();
    let backend = BackendId::new("openai");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let fleet = fleet(&redis.url(), "http", Duration::from_secs(10)).await;
        let tracker = QuotaTracker::builder()
            .shared(fleet.quota())
            .build()
            .unwrap();
        let layer = QuotaLayer::builder("openai")
            .tracker(tracker.clone())
            .build()
            .unwrap();
        replicas.push((fleet, tracker, layer.layer(client.clone())));
    }
    let send = |i: usize, text: &'static str| {
        let service = replicas[i].2.clone();
        async move {
            let request = ChatRequest::new(MODEL).with_user(text);
            let response = service.oneshot(request).await?;
            let mut body = response.into_body();
            while let Some(chunk) = body.next().await {
                chunk?;
            }
            Ok::<_, streamgate_core::BoxError>(())
        }
    };
    // Each replica learns the key: A reads 5 left, B 4.
    send(0, "hi").await.unwrap();
    send(1, "hi").await.unwrap();
    assert_eq!(replicas[1].1.in_flight(&backend, MODEL), (0, 0));

    // A sends four that stay unanswered: all B thinks is left.
    let held: Vec<_> = (0..4).map(|_| tokio::spawn(send(0, "hold"))).collect();
    eventually("the provider holds four", || mock.requests().len() == 6).await;
    replicas[0].0.flush().await;
    eventually("B sees A's four in flight", || {
        others(&replicas[1].0, &backend).0 == 4
    })
    .await;
    let error = send(1, "hi").await.unwrap_err();
    let rejected = error
        .downcast_ref::<Rejected>()
        .expect("refused by the gate");
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(mock.requests().len(), 6, "B did not call");

    // A's requests end (cancelled): B's share comes back.
    for task in &held {
        task.abort();
    }
    eventually("B sees nothing in flight", || {
        others(&replicas[1].0, &backend).0 == 0
    })
    .await;
    assert!(replicas[1]
        .1
        .check(&backend, MODEL, 0, Instant::now())
        .is_ok());
}
