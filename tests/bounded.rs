//! Model names come from callers: 100,000 made-up ones driven through a
//! whole `Backend` stack (metrics, TPM, quota, pacing, a breaker per model,
//! timeout, the scoreboard) leave every per-model structure at its cap, on
//! paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use streamgate::core::keyed::{DEFAULT_MODEL_CAP, OTHER_MODEL};
use streamgate::core::scoreboard::Scoreboard;
use streamgate::core::testing::{Script, ScriptedService, TestRequest};
use streamgate::failover::MAX_MODELS;
use streamgate::prelude::*;
use tower::{Layer, ServiceExt};

const NAMES: usize = 100_000;

/// Every tenth call is a 429 that says "retry in 1 ms", so the quota
/// tracker learns a key and the model's breaker opens (for its minimum).
fn script(i: usize) -> Script {
    if i % 10 == 0 {
        Script::new()
            .fail_call(ErrorClass::RateLimited)
            .retry_after(Duration::from_millis(1))
    } else {
        Script::new().meta("role").text("ok")
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hundred_thousand_model_names_leave_every_keyed_structure_at_its_cap() {
    let metrics = Arc::new(PerformanceTracker::new());
    let quota = QuotaTracker::builder()
        .sink(metrics.clone())
        .build()
        .unwrap();
    let breakers = Breaker::builder("b")
        .sink(metrics.clone())
        .build_registry()
        .unwrap();
    let board = Scoreboard::new();
    let client = ScriptedService::new(Script::new().meta("role").text("ok"));
    let service = Backend::new("b", client.clone())
        .first_content_timeout(Duration::from_secs(10))
        .tpm_budget(u64::MAX / 4)
        .quota(quota.clone())
        .pacing(|p| p.requests_per_minute(u32::MAX / 2))
        .circuit_breaker_per_model(breakers.clone())
        .metrics(metrics.clone())
        .scoreboard(&board)
        .build()
        .unwrap();
    // A per-model TPM meter registry, around the same client.
    let tpm = TpmLayer::builder("b").per_model().build().unwrap();
    let metered = tpm.layer(client.clone());

    let (mut served, mut failed) = (0, 0);
    for i in 0..NAMES {
        let model = format!("model-{i}");
        client.push(script(i));
        match service
            .clone()
            .oneshot(TestRequest::new(model.clone()))
            .await
        {
            Ok(response) => {
                let body: Vec<_> = response.into_body().collect().await;
                assert!(body.iter().all(Result::is_ok));
                served += 1;
            }
            Err(_) => failed += 1,
        }
        if i % 10 == 0 {
            // Past every cooldown and the breaker's minimum open.
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let _ = metered.clone().oneshot(TestRequest::new(model)).await;
    }
    // Only the scripted 429s failed, and nothing was refused: every model
    // was really driven through every layer.
    assert_eq!((served, failed), (NAMES - NAMES / 10, NAMES / 10));

    let at_cap = DEFAULT_MODEL_CAP + 1;
    assert_eq!(breakers.len(), at_cap);
    assert_eq!(quota.len(), at_cap);
    assert_eq!(metrics.len(), at_cap);
    assert_eq!(board.len(), at_cap);
    assert_eq!(tpm.meters(), MAX_MODELS + 1);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.keys.len(), at_cap);
    assert!(
        snapshot.breakers.len() <= at_cap,
        "{}",
        snapshot.breakers.len()
    );
    assert!(breakers
        .breakers()
        .iter()
        .any(|(model, _)| model == OTHER_MODEL));
    assert!(quota
        .snapshot(tokio::time::Instant::now())
        .iter()
        .any(|key| key.model == OTHER_MODEL));
    // Accounting stays exact under the fold: every request is counted once.
    let requests: u64 = snapshot.keys.iter().map(|k| k.requests).sum();
    let rejected: u64 = snapshot
        .keys
        .iter()
        .flat_map(|k| k.rejections.values())
        .sum();
    assert_eq!((requests, rejected), (NAMES as u64, 0));
}
