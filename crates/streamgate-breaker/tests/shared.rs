//! The breaker with shared state (a scripted `SharedBreaker`), on paused
//! time: an open published elsewhere refuses here, a half-open call takes
//! the fleet's probe lease, and opens and outcomes are published.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use streamgate_breaker::{Breaker, OpenWait};
use streamgate_core::{
    state::{Probe, SharedBreaker, StateKey},
    testing::{Script, ScriptedService, TestRequest},
    BoxError, ErrorClass, RejectReason, Rejected,
};
use tokio::time::{advance, Instant};
use tower::{Layer, ServiceExt};

#[derive(Debug, Default)]
struct Fleet {
    open_until: Mutex<Option<Instant>>,
    lease_free: Mutex<bool>,
    leases_asked: Mutex<u32>,
    opens: Mutex<Vec<(String, Instant)>>,
    outcomes: Mutex<Vec<Option<Instant>>>,
}

impl SharedBreaker for Fleet {
    fn open_until(&self, _key: StateKey<'_>) -> Option<Instant> {
        *self.open_until.lock().unwrap()
    }

    fn publish_open(&self, key: StateKey<'_>, until: Instant, _probe_within: Duration) {
        self.opens
            .lock()
            .unwrap()
            .push((key.backend.as_str().to_owned(), until));
    }

    fn take_probe(&self, _key: StateKey<'_>, _ttl: Duration) -> Probe {
        *self.leases_asked.lock().unwrap() += 1;
        let free = *self.lease_free.lock().unwrap();
        // Answered after a round trip, as a remote store would.
        Probe::Confirm(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            free
        }))
    }

    fn publish_outcome(&self, _key: StateKey<'_>, reopened: Option<(Instant, Duration)>) {
        self.outcomes
            .lock()
            .unwrap()
            .push(reopened.map(|(until, _)| until));
    }

    fn release_probe(&self, _key: StateKey<'_>) {}
}

const WAIT: Duration = Duration::from_secs(2);

fn breaker(fleet: &Arc<Fleet>) -> Breaker {
    Breaker::builder("a")
        .consecutive_failures(1)
        .open_wait(OpenWait::Fixed(WAIT))
        .shared(fleet.clone())
        .build()
        .unwrap()
}

async fn send(backend: &ScriptedService, breaker: &Breaker) -> Result<(), BoxError> {
    let response = breaker
        .layer()
        .layer(backend.clone())
        .oneshot(TestRequest::new("m"))
        .await?;
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        chunk?;
    }
    Ok(())
}

fn rejected(error: &BoxError) -> &Rejected {
    error.downcast_ref::<Rejected>().expect("a rejection")
}

#[tokio::test(start_paused = true)]
async fn an_open_published_elsewhere_refuses_here_without_calling() {
    let fleet = Arc::new(Fleet::default());
    *fleet.open_until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(5));
    let backend = ScriptedService::new(Script::new().text("hi"));
    let breaker = breaker(&fleet);
    let error = send(&backend, &breaker).await.unwrap_err();
    assert_eq!(rejected(&error).reason, RejectReason::CircuitOpen);
    assert_eq!(rejected(&error).retry_after, Some(Duration::from_secs(5)));
    assert_eq!(backend.probe().calls(), 0);

    // Once it is over, the fleet is half-open: this replica (closed
    // itself) probes only through the lease, and publishes the outcome.
    advance(Duration::from_secs(5)).await;
    let error = send(&backend, &breaker).await.unwrap_err();
    assert_eq!(
        rejected(&error).reason,
        RejectReason::CircuitOpen,
        "lease taken"
    );
    assert_eq!(backend.probe().calls(), 0);
    *fleet.lease_free.lock().unwrap() = true;
    send(&backend, &breaker).await.unwrap();
    assert_eq!(backend.probe().calls(), 1);
    assert_eq!(*fleet.outcomes.lock().unwrap(), [None], "closed for all");
}

#[tokio::test(start_paused = true)]
async fn opens_are_published_and_a_half_open_probe_needs_the_lease() {
    let fleet = Arc::new(Fleet::default());
    let backend = ScriptedService::new(Script::new().text("hi"))
        .then(Script::new().fail_call(ErrorClass::Server));
    let breaker = breaker(&fleet);
    send(&backend, &breaker).await.unwrap_err();
    let opened_at = Instant::now();
    assert_eq!(
        *fleet.opens.lock().unwrap(),
        [("a".to_owned(), opened_at + WAIT)],
        "the open is published with its end"
    );
    assert_eq!(
        *fleet.leases_asked.lock().unwrap(),
        0,
        "closed calls take no lease"
    );

    advance(WAIT).await;
    let error = send(&backend, &breaker).await.unwrap_err();
    assert_eq!(rejected(&error).reason, RejectReason::CircuitOpen);
    assert_eq!(backend.probe().calls(), 1, "another replica probes");
    *fleet.lease_free.lock().unwrap() = true;
    send(&backend, &breaker).await.unwrap();
    assert_eq!(backend.probe().calls(), 2);
    assert_eq!(*fleet.leases_asked.lock().unwrap(), 2);
    assert_eq!(*fleet.outcomes.lock().unwrap(), [None]);
}
