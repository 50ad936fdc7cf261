//! Stacks shared by the benchmark binaries.
// Each binary uses a different part of this module.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use streamgate_benches::{BareService, BenchChunk, BenchRequest};
use streamgate_breaker::{Breaker, BreakerGuard, CircuitBreakerLayer};
use streamgate_core::{
    guard::{GuardLayer, GuardService},
    BackendId, MetricsSink,
};
use streamgate_failover::{Failover, Strategy, TpmGuard, TpmLayer};
use streamgate_metrics::{Measure, MetricsLayer, PerformanceTracker};
use streamgate_quota::{PacedGuard, PacingLayer, QuotaGuard, QuotaLayer, QuotaTracker};
use streamgate_timeout::{FirstChunkTimeout, FirstChunkTimeoutLayer};
use tower::Layer;

pub const MODEL: &str = "gpt-4o-mini";

/// The guards `Backend` fuses when it paces, in order.
pub type Gates = (
    Option<Measure>,
    Option<TpmGuard>,
    Option<QuotaGuard>,
    PacedGuard<Option<BreakerGuard>>,
);

/// The recommended per-backend stack, outermost first, as `Backend` builds
/// it (unboxed): metrics, TPM, quota, pacing and the breaker fused in one
/// guard layer, the timeout.
pub type FullStack<S> = GuardService<FirstChunkTimeout<S>, Gates>;

pub fn runtime() -> tokio::runtime::Runtime {
    // Timeouts and pacing read tokio time and register sleeps, which needs a
    // runtime with a timer on the thread; nothing ever waits on it.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

pub fn timeout_layer() -> FirstChunkTimeoutLayer {
    FirstChunkTimeoutLayer::builder(Duration::from_secs(30))
        .idle(Duration::from_secs(30))
        .build()
        .expect("timeout config")
}

pub fn breaker(name: &str) -> Breaker {
    Breaker::builder(name).build().expect("breaker config")
}

pub fn pacing_layer(name: &str) -> PacingLayer {
    // Limits far away: the fast path (no wait) is what is measured.
    PacingLayer::builder(BackendId::new(name))
        .requests_per_minute(u32::MAX)
        .request_burst(u32::MAX)
        .tokens_per_minute(u32::MAX)
        .token_burst(u32::MAX)
        .build()
        .expect("pacing config")
}

pub fn tpm_layer(name: &str) -> TpmLayer {
    TpmLayer::builder(name)
        .max_tokens_per_minute(u64::MAX / 4)
        .build()
        .expect("tpm config")
}

/// The full per-backend stack, every layer reporting to `sink`.
pub fn full_stack<S>(name: &str, client: S, sink: Arc<dyn MetricsSink>) -> FullStack<S> {
    let backend = BackendId::new(name);
    let breaker = Breaker::builder(name)
        .sink(sink.clone())
        .build()
        .expect("breaker config");
    let tracker = QuotaTracker::builder()
        .sink(sink.clone())
        .build()
        .expect("quota config");
    let pacing = PacingLayer::builder(backend.clone())
        .requests_per_minute(u32::MAX)
        .request_burst(u32::MAX)
        .tokens_per_minute(u32::MAX)
        .token_burst(u32::MAX)
        .sink(sink.clone())
        .build()
        .expect("pacing config");
    let tpm = TpmLayer::builder(name)
        .max_tokens_per_minute(u64::MAX / 4)
        .sink(sink.clone())
        .build()
        .expect("tpm config");
    let inner = timeout_layer().layer(client);
    let quota = QuotaLayer::builder(backend.clone())
        .tracker(tracker)
        .sink(sink.clone())
        .build()
        .expect("quota config");
    let gates = (
        Some(MetricsLayer::new(name, sink).into_guard()),
        Some(tpm.into_guard()),
        Some(quota.into_guard()),
        pacing.guard(Some(CircuitBreakerLayer::new(breaker).into_guard())),
    );
    GuardLayer::new(backend, gates).layer(inner)
}

/// Whether [`backend_build`] paces.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Pacing with limits far away, as [`full_stack`] has it.
    FarLimits,
    /// No pacing, as `Backend` builds by default: the breaker then shares
    /// the gates' guard layer.
    Off,
}

/// What `streamgate::Backend::build` returns for the same settings as
/// [`full_stack`] (`Pace::FarLimits`): every layer fused and boxed, as a
/// program gets it.
pub fn backend_build<S>(
    name: &str,
    client: S,
    sink: Arc<dyn MetricsSink>,
    pace: Pace,
) -> streamgate_core::BoxStreamingService<BenchRequest, BenchChunk>
where
    S: tower::Service<BenchRequest, Response = http::Response<streamgate_benches::BenchStream>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<streamgate_core::BoxError>,
    S::Future: Send + 'static,
{
    let backend = streamgate::Backend::new(name, client)
        .first_content_timeout(Duration::from_secs(30))
        .idle_timeout(Duration::from_secs(30))
        .tpm_budget(u64::MAX / 4)
        .metrics(sink);
    let backend = match pace {
        Pace::FarLimits => backend.pacing(|p| {
            p.requests_per_minute(u32::MAX)
                .request_burst(u32::MAX)
                .tokens_per_minute(u32::MAX)
                .token_burst(u32::MAX)
        }),
        Pace::Off => backend,
    };
    backend.build().expect("backend config")
}

pub fn tracker() -> Arc<PerformanceTracker> {
    Arc::new(PerformanceTracker::new())
}

pub fn failover(tokens: u32) -> Failover<BenchRequest, BenchChunk> {
    failover_with(tokens, Strategy::Ordered)
}

/// [`failover`] with another routing strategy.
pub fn failover_with(tokens: u32, strategy: Strategy) -> Failover<BenchRequest, BenchChunk> {
    let sink: Arc<dyn MetricsSink> = tracker();
    Failover::builder()
        .strategy(strategy)
        .service(
            "primary",
            full_stack("primary", BareService::new(tokens), sink.clone()),
        )
        .service(
            "fallback",
            full_stack("fallback", BareService::new(tokens), sink.clone()),
        )
        .sink(sink)
        .build()
        .expect("failover config")
}
