//! Many tasks on a multi-thread runtime racing one breaker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use streamgate_breaker::{Breaker, Permit};
use streamgate_core::{
    testing::{Script, ScriptedService, TestRequest},
    BreakerState, ErrorClass, ProviderError,
};
use tokio::sync::Barrier;
use tower::{Layer, Service, ServiceExt};

const TASKS: usize = 64;
const PROBES: u32 = 3;

/// A breaker that is open with a 1 ms wait, and has waited it out.
async fn half_open_soon() -> Breaker {
    let breaker = Breaker::builder("b")
        .consecutive_failures(1)
        .open_wait(streamgate_breaker::OpenWait::Fixed(Duration::from_millis(
            1,
        )))
        .half_open_probes(PROBES)
        // Below the 1 s default, so the test waits only milliseconds.
        .minimum_open(Duration::from_millis(1))
        .build()
        .unwrap();
    let error = ProviderError::new(ErrorClass::Server, "down");
    breaker.try_acquire().unwrap().failure(&error);
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(2)).await;
    breaker
}

/// Every task takes its own clone of the handle and tries at the same time.
async fn race(breaker: &Breaker) -> Vec<Permit> {
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (breaker, barrier) = (breaker.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                breaker.try_acquire().ok()
            })
        })
        .collect();
    let mut permits = Vec::new();
    for task in tasks {
        permits.extend(task.await.unwrap());
    }
    permits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_get_exactly_the_permitted_probes_and_clones_share_them() {
    let breaker = half_open_soon().await;
    for _ in 0..20 {
        let permits = race(&breaker).await;
        assert_eq!(permits.len(), PROBES as usize);
        assert!(permits.iter().all(Permit::is_probe));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.snapshot().probes_in_flight, PROBES);
        // Dropped unused: the places go back, nothing is recorded.
        drop(permits);
        assert_eq!(breaker.snapshot().probes_in_flight, 0);
    }
    let mut permits = race(&breaker).await;
    let last = permits.pop().unwrap();
    for permit in permits {
        permit.success();
    }
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    last.success();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_calls_through_the_layer_reach_the_backend_exactly_probes_times() {
    let breaker = half_open_soon().await;
    let inner = ScriptedService::new(Script::new().stall_call());
    let service = breaker.layer().layer(inner.clone());
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (mut service, barrier) = (service.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let future = ServiceExt::<TestRequest>::ready(&mut service)
                    .await
                    .unwrap()
                    .call(TestRequest::new("m"));
                // Rejections resolve at once; probes stall. Keep the
                // probes alive until every task has tried.
                let mut future = Box::pin(future);
                let rejected = (&mut future).now_or_never().is_some();
                barrier.wait().await;
                rejected
            })
        })
        .collect();
    let mut rejected = 0;
    for task in tasks {
        rejected += usize::from(task.await.unwrap());
    }
    assert_eq!(rejected, TASKS - PROBES as usize);
    assert_eq!(inner.probe().calls(), PROBES as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_outcomes_are_all_counted_in_the_window() {
    let breaker = Breaker::builder("b")
        .failure_rate(1.0)
        .count_window(100_000)
        .minimum_calls(100_000)
        .without_failures_within()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                let error = ProviderError::new(ErrorClass::Server, "down");
                for i in 0..1_000 {
                    let permit = breaker.try_acquire().unwrap();
                    if i % 4 == 0 {
                        permit.failure(&error);
                    } else {
                        permit.success();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (8_000, 2_000));
    assert_eq!(snapshot.state, BreakerState::Closed);
}
