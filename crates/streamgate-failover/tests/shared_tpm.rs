//! The TPM gate with a shared budget (a scripted `SharedTpm`), on paused
//! time: local state answers first, a shared refusal calls nothing and
//! releases the local reservation, a grant is reconciled with the usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use streamgate_core::{
    state::{OverBudget, Reserve, SharedTpm, StateKey, TpmGrant},
    testing::{Script, ScriptedService, TestRequest},
    BoxError, RejectReason, Rejected, Usage,
};
use streamgate_failover::TpmLayer;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// How the scripted fleet answers a reservation.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Now,
    NoRoom,
    /// After a remote round trip of this long: room or not.
    After(Duration, bool),
}

#[derive(Debug)]
struct Fleet {
    answer: Answer,
    reserved: Mutex<Vec<(String, u64, u64)>>,
    reconciled: Mutex<Vec<(TpmGrant, u64)>>,
}

impl Fleet {
    fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            answer,
            reserved: Mutex::default(),
            reconciled: Mutex::default(),
        })
    }
}

impl SharedTpm for Fleet {
    fn reserve(&self, key: StateKey<'_>, tokens: u64, limit: u64) -> Reserve {
        self.reserved
            .lock()
            .unwrap()
            .push((key.model.to_owned(), tokens, limit));
        let grant = TpmGrant { id: 7, tokens };
        let over = OverBudget {
            retry_after: Some(Duration::from_secs(3)),
        };
        match self.answer {
            Answer::Now => Reserve::Granted(grant),
            Answer::NoRoom => Reserve::Refused(over),
            Answer::After(delay, room) => Reserve::Confirm(
                grant,
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    if room {
                        Ok(())
                    } else {
                        Err(over)
                    }
                }),
            ),
        }
    }

    fn reconcile(&self, _key: StateKey<'_>, grant: TpmGrant, used: u64) {
        self.reconciled.lock().unwrap().push((grant, used));
    }

    fn current(&self, _key: StateKey<'_>) -> Option<u64> {
        None
    }
}

fn layer(fleet: &Arc<Fleet>) -> TpmLayer {
    TpmLayer::builder("a")
        .max_tokens_per_minute(1_000)
        .shared(fleet.clone())
        .build()
        .unwrap()
}

fn backend() -> ScriptedService {
    ScriptedService::new(Script::new().text("hi").usage(Usage::new(300, 200)))
}

async fn send<S, B, C>(service: S, estimate: u64) -> Result<(), BoxError>
where
    S: tower::Service<TestRequest, Response = http::Response<B>, Error = BoxError>,
    B: futures::Stream<Item = Result<C, BoxError>> + Unpin,
{
    let response = service
        .oneshot(TestRequest::new("m").with_estimate(estimate))
        .await?;
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        chunk?;
    }
    Ok(())
}

fn reason(error: &BoxError) -> RejectReason {
    error
        .downcast_ref::<Rejected>()
        .expect("a rejection")
        .reason
}

#[tokio::test(start_paused = true)]
async fn a_shared_grant_after_a_round_trip_is_reconciled_with_the_usage() {
    let fleet = Fleet::new(Answer::After(Duration::from_millis(2), true));
    let backend = backend();
    let layer = layer(&fleet);
    send(layer.layer(backend.clone()), 600).await.unwrap();
    assert_eq!(backend.probe().calls(), 1);
    assert_eq!(
        *fleet.reserved.lock().unwrap(),
        [("m".to_owned(), 600, 1_000)]
    );
    assert_eq!(
        *fleet.reconciled.lock().unwrap(),
        [(TpmGrant { id: 7, tokens: 600 }, 500)]
    );
    assert_eq!(layer.snapshot("m", Instant::now()).tokens_per_minute, 500);
}

#[tokio::test(start_paused = true)]
async fn a_shared_refusal_calls_nothing_and_releases_the_local_reservation() {
    for answer in [
        Answer::NoRoom,
        Answer::After(Duration::from_millis(2), false),
    ] {
        let fleet = Fleet::new(answer);
        let backend = backend();
        let layer = layer(&fleet);
        let error = send(layer.layer(backend.clone()), 600).await.unwrap_err();
        assert_eq!(reason(&error), RejectReason::TpmBudget, "{answer:?}");
        let retry = error.downcast_ref::<Rejected>().unwrap().retry_after;
        assert_eq!(retry, Some(Duration::from_secs(3)), "{answer:?}");
        assert_eq!(backend.probe().calls(), 0, "{answer:?}");
        let local = layer.snapshot("m", Instant::now());
        assert_eq!(
            (local.reserved, local.tokens_per_minute),
            (0, 0),
            "{answer:?}"
        );
        // A refusal after the round trip reconciles its grant with nothing.
        let reconciled = fleet.reconciled.lock().unwrap().clone();
        match answer {
            Answer::NoRoom => assert!(reconciled.is_empty()),
            _ => assert_eq!(reconciled, [(TpmGrant { id: 7, tokens: 600 }, 0)]),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_local_meter_answers_before_the_shared_budget() {
    let fleet = Fleet::new(Answer::Now);
    let backend = backend();
    let layer = layer(&fleet);
    let error = send(layer.layer(backend.clone()), 1_500).await.unwrap_err();
    assert_eq!(reason(&error), RejectReason::TpmBudget);
    assert!(fleet.reserved.lock().unwrap().is_empty(), "no remote call");
    assert_eq!(backend.probe().calls(), 0);
}
