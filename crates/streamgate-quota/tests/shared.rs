//! The quota tracker with shared state (a scripted `SharedQuota`), on
//! paused time: what it learns is published with its reset, and what
//! another replica learned refuses here until the reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use http::{HeaderMap, StatusCode};
use streamgate_core::{
    state::{Exhaustion, SharedQuota, StateKey},
    BackendId,
};
use streamgate_quota::{ExhaustReason, QuotaInfo, QuotaTracker};
use tokio::time::{advance, Instant};

#[derive(Debug, Default)]
struct Fleet {
    elsewhere: Mutex<Option<Exhaustion>>,
    learned: Mutex<Vec<(String, Instant, String)>>,
}

impl SharedQuota for Fleet {
    fn exhausted_until(&self, _key: StateKey<'_>, _now: Instant) -> Option<Exhaustion> {
        self.elsewhere.lock().unwrap().clone()
    }

    fn learn(&self, key: StateKey<'_>, until: Instant, reason: &str) {
        self.learned
            .lock()
            .unwrap()
            .push((key.model.to_owned(), until, reason.to_owned()));
    }

    fn add_in_flight(&self, _key: StateKey<'_>, _requests: i64, _tokens: i64) {}

    fn others_in_flight(&self, _key: StateKey<'_>) -> (u64, u64) {
        (0, 0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_is_published_with_its_reset() {
    let fleet = Arc::new(Fleet::default());
    let tracker = QuotaTracker::builder()
        .shared(fleet.clone())
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "30".parse().unwrap());
    let info = QuotaInfo::parse(
        StatusCode::TOO_MANY_REQUESTS,
        &headers,
        None,
        SystemTime::now(),
    );
    let now = Instant::now();
    tracker.observe(&BackendId::new("a"), "m", &info, now);
    assert_eq!(
        *fleet.learned.lock().unwrap(),
        [(
            "m".to_owned(),
            now + Duration::from_secs(30),
            "rate_limited".to_owned()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn an_exhaustion_learned_elsewhere_refuses_here_until_its_reset() {
    let fleet = Arc::new(Fleet::default());
    let tracker = QuotaTracker::builder()
        .shared(fleet.clone())
        .build()
        .unwrap();
    let backend = BackendId::new("a");
    let now = Instant::now();
    assert!(tracker.check(&backend, "m", 0, now).is_ok());
    *fleet.elsewhere.lock().unwrap() = Some(Exhaustion {
        until: now + Duration::from_secs(5),
        reason: "requests_depleted".into(),
    });
    let refusal = tracker.check(&backend, "m", 0, now).unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(5));
    assert_eq!(refusal.reason, ExhaustReason::RequestsDepleted);
    advance(Duration::from_secs(5)).await;
    assert!(tracker.check(&backend, "m", 0, Instant::now()).is_ok());
    assert!(
        fleet.learned.lock().unwrap().is_empty(),
        "nothing learned here"
    );
}
