//! The sink and the queries, on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{failure, hours_ago, success, TempDir};
use rusqlite::Connection;
use streamgate_core::{
    BackendId, BreakerState, ErrorClass, Event, MetricsSink, QuotaState, RejectReason,
};
use streamgate_metrics::InputSize;
use streamgate_store::{Filter, Metric, OutcomeKind, QueryError, Store, TimeRange, MAX_RANGE};

fn last_day() -> TimeRange {
    TimeRange::last(Duration::from_secs(86_400)).unwrap()
}

fn count(path: &std::path::Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn percentiles_are_exact_with_linear_interpolation_and_honour_every_filter() {
    let dir = TempDir::new("percentiles");
    let store = Store::builder(dir.db())
        .provider("a", "openai")
        .provider("b", "anthropic")
        .build()
        .unwrap();
    let (a, b) = (BackendId::new("a"), BackendId::new("b"));
    let now = SystemTime::now();
    // Backend a, model m, small inputs: decode 10, 20, 30, 40 tok/s.
    for tps in [10.0, 20.0, 30.0, 40.0] {
        store.record(&Event::Completed(&success(
            &a, "m", now, 2_000, 101, tps, 100,
        )));
    }
    // Backend b, model m, tiny inputs, long outputs.
    for tps in [100.0, 200.0] {
        store.record(&Event::Completed(&success(
            &b, "m", now, 500, 5_000, tps, 300,
        )));
    }
    // A failure on a: not in the throughput percentiles unless asked for.
    store.record(&Event::Completed(&failure(
        &a,
        "m",
        now,
        2_000,
        ErrorClass::Server,
    )));
    store.flush().await;

    let decode = |filter: &Filter| {
        store
            .percentiles(
                filter,
                Metric::DecodeTokensPerSec,
                &[0.0, 10.0, 50.0, 100.0],
            )
            .unwrap()
    };
    let a_only = decode(&Filter::new(last_day()).backend("a"));
    assert_eq!(a_only.samples, 4);
    let a_got: Vec<f64> = a_only.percentiles.iter().map(|p| p.value).collect();
    // numpy.percentile([10, 20, 30, 40], [0, 10, 50, 100]) = 10, 13, 25, 40
    for (got, want) in a_got.iter().zip([10.0, 13.0, 25.0, 40.0]) {
        assert!((got - want).abs() < 1e-6, "{a_got:?}");
    }
    assert_eq!(
        decode(&Filter::new(last_day()).provider("anthropic")).samples,
        2
    );
    assert_eq!(decode(&Filter::new(last_day()).model("m")).samples, 6);
    assert_eq!(decode(&Filter::new(last_day()).model("other")).samples, 0);
    assert_eq!(
        decode(&Filter::new(last_day()).input_category(InputSize::Tiny)).samples,
        2
    );
    assert_eq!(
        decode(&Filter::new(last_day()).output_category(InputSize::Medium)).samples,
        2
    );
    assert_eq!(
        decode(&Filter::new(last_day()).output_category(InputSize::Tiny)).samples,
        4
    );
    let failed = store
        .percentiles(
            &Filter::new(last_day()).outcome(OutcomeKind::Failed),
            Metric::Duration,
            &[50.0],
        )
        .unwrap();
    assert_eq!(failed.samples, 1);
    assert_eq!(failed.get(50.0), Some(40.0));
    // Time to first content counts every request that got content.
    let ttfc = store
        .percentiles(
            &Filter::new(last_day()),
            Metric::TimeToFirstContent,
            &[50.0],
        )
        .unwrap();
    assert_eq!(ttfc.samples, 6);
    assert_eq!(ttfc.get(50.0), Some(100.0));
    // A range that ends before now holds nothing.
    let past = TimeRange::new(hours_ago(48), hours_ago(24)).unwrap();
    assert_eq!(decode(&Filter::new(past)).samples, 0);
}

#[test]
fn a_range_longer_than_thirty_days_is_a_typed_error_not_a_truncation() {
    let now = SystemTime::now();
    let long = TimeRange::new(now - MAX_RANGE - Duration::from_secs(1), now);
    assert!(matches!(long, Err(QueryError::RangeTooLong { max, .. }) if max == MAX_RANGE));
    assert!(matches!(
        TimeRange::last(Duration::from_secs(31 * 86_400)),
        Err(QueryError::RangeTooLong { .. })
    ));
    assert!(matches!(
        TimeRange::new(now, now - Duration::from_secs(1)),
        Err(QueryError::RangeInverted)
    ));
    assert!(TimeRange::new(now - MAX_RANGE, now).is_ok());
    assert_eq!(
        QueryError::RangeTooLong {
            requested: Duration::from_secs(45 * 86_400),
            max: MAX_RANGE
        }
        .to_string(),
        "time range of 45.0 days is longer than the 30 days allowed"
    );
}

#[tokio::test]
async fn bad_percentiles_are_refused() {
    let dir = TempDir::new("bad-percentiles");
    let store = Store::open(dir.db()).unwrap();
    let filter = Filter::new(last_day());
    for bad in [&[][..], &[100.5][..], &[f64::NAN][..]] {
        assert!(matches!(
            store.percentiles(&filter, Metric::Duration, bad),
            Err(QueryError::BadPercentile(_))
        ));
    }
}

#[tokio::test]
async fn counts_group_by_backend_model_and_category_with_rejections_and_waits_from_events() {
    let dir = TempDir::new("groups");
    let store = Store::open(dir.db()).unwrap();
    let (a, b) = (BackendId::new("a"), BackendId::new("b"));
    let now = SystemTime::now();
    for _ in 0..3 {
        store.record(&Event::Completed(&success(
            &a, "m1", now, 500, 50, 50.0, 100,
        )));
    }
    store.record(&Event::Completed(&failure(
        &a,
        "m1",
        now,
        500,
        ErrorClass::Overloaded,
    )));
    store.record(&Event::Completed(&success(
        &b, "m2", now, 5_000, 50, 80.0, 100,
    )));
    for _ in 0..2 {
        store.record(&Event::Rejected {
            backend: &a,
            model: "m1",
            reason: RejectReason::CircuitOpen,
            retry_after: Some(Duration::from_secs(3)),
        });
    }
    store.record(&Event::Throttled {
        backend: &b,
        model: "m2",
        waited: Duration::from_millis(250),
    });
    store.flush().await;

    let report = store.throughput(&Filter::new(last_day()), &[50.0]).unwrap();
    assert_eq!(report.summary.counts.requests, 5);
    assert_eq!(report.summary.counts.successes, 4);
    assert_eq!(
        report.summary.counts.rejections.get("circuit_open"),
        Some(&2)
    );
    let a_m1 = report
        .by_backend_model
        .iter()
        .find(|g| g.backend.as_deref() == Some("a") && g.model.as_deref() == Some("m1"))
        .unwrap();
    assert_eq!(a_m1.counts.requests, 4);
    assert_eq!(a_m1.counts.failures.get("overloaded"), Some(&1));
    assert!((a_m1.counts.failure_rate - 0.25).abs() < 1e-9);
    assert_eq!(a_m1.counts.rejections.get("circuit_open"), Some(&2));
    let b_m2 = report
        .by_backend_model
        .iter()
        .find(|g| g.backend.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(b_m2.counts.throttled, 1);
    assert!((b_m2.counts.throttle_wait_ms - 250.0).abs() < 1e-6);
    assert_eq!(report.by_backend.len(), 2);
    assert_eq!(report.by_model.len(), 2);
    let categories: Vec<_> = report
        .by_input_category
        .iter()
        .map(|g| (g.input_category.unwrap(), g.counts.requests))
        .collect();
    assert_eq!(categories, [(InputSize::Tiny, 4), (InputSize::Medium, 1)]);
    let cell = report
        .cells
        .iter()
        .find(|c| c.backend.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(cell.input_category, Some(InputSize::Medium));
    let p50 = cell.decode_tokens_per_sec.get(50.0).unwrap();
    assert!((p50 - 80.0).abs() < 1e-6, "{p50}");
    // The current hour comes from raw rows.
    assert_eq!(report.hourly.len(), 1);
    assert_eq!(report.hourly[0].requests, 5);
    assert!(!report.hourly[0].from_rollup);
}

#[tokio::test]
async fn gates_and_trackers_are_stored_as_events() {
    let dir = TempDir::new("events");
    let store = Store::open(dir.db()).unwrap();
    let a = BackendId::new("a");
    store.record(&Event::BreakerTransition {
        backend: &a,
        model: None,
        from: BreakerState::Closed,
        to: BreakerState::Open,
        wait_capped: false,
    });
    store.record(&Event::QuotaUpdate {
        backend: &a,
        model: "m",
        state: QuotaState::Exhausted,
        exhausted_for: Some(Duration::from_secs(20)),
        remaining_requests: Some(0),
        remaining_tokens: Some(1_000),
        wait_capped: false,
    });
    store.record(&Event::Rejected {
        backend: &a,
        model: "m",
        reason: RejectReason::QuotaExhausted,
        retry_after: Some(Duration::from_secs(20)),
    });
    store.record(&Event::Throttled {
        backend: &a,
        model: "m",
        waited: Duration::from_millis(5),
    });
    // Starts are not kept: the completed record has everything.
    store.record(&Event::RequestStarted {
        backend: &a,
        model: "m",
        estimated_tokens: 3,
    });
    store.flush().await;
    let conn = Connection::open(dir.db()).unwrap();
    let row: (String, String) = conn
        .query_row(
            "SELECT from_state, to_state FROM events WHERE kind = 'breaker'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row, ("closed".into(), "open".into()));
    let quota: (String, f64, i64, i64) = conn
        .query_row(
            "SELECT quota_state, exhausted_for_ms, remaining_requests, remaining_tokens
             FROM events WHERE kind = 'quota'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(quota, ("exhausted".into(), 20_000.0, 0, 1_000));
    let rejected: (String, f64) = conn
        .query_row(
            "SELECT reason, retry_after_ms FROM events WHERE kind = 'rejected'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rejected, ("quota_exhausted".into(), 20_000.0));
    let waited: f64 = conn
        .query_row(
            "SELECT waited_ms FROM events WHERE kind = 'throttled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(waited, 5.0);
    assert_eq!(count(&dir.db(), "SELECT count(*) FROM events"), 4);
    assert_eq!(store.stats().written_events, 4);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_reports_the_drop_as_an_event() {
    let dir = TempDir::new("overflow");
    // One record per transaction: the writer holds at most one record while
    // it waits, so at most three are accepted however the threads interleave.
    let store = Store::builder(dir.db())
        .queue_capacity(2)
        .batch_size(1)
        .build()
        .unwrap();
    let a = BackendId::new("a");
    let now = SystemTime::now();
    // Another connection holds the write lock: the writer waits in its
    // transaction, so the queue behind it fills up.
    let blocker = Connection::open(dir.db()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sent = 50;
    for _ in 0..sent {
        store.record(&Event::Completed(&success(&a, "m", now, 10, 10, 10.0, 10)));
    }
    let stats = store.stats();
    assert_eq!(stats.accepted + stats.dropped, sent);
    assert!(stats.dropped >= sent - 3, "{stats:?}");
    blocker.execute_batch("COMMIT").unwrap();
    // The next write carries the drop report.
    store.record(&Event::Completed(&success(&a, "m", now, 10, 10, 10.0, 10)));
    store.flush().await;
    let stats = store.stats();
    assert_eq!(stats.written_requests, stats.accepted);
    assert_eq!(
        count(&dir.db(), "SELECT count(*) FROM requests") as u64,
        stats.accepted
    );
    assert_eq!(
        count(
            &dir.db(),
            "SELECT coalesce(sum(count), 0) FROM events WHERE kind = 'dropped'"
        ) as u64,
        stats.dropped
    );
}

#[tokio::test]
async fn dropping_the_store_writes_everything_queued() {
    let dir = TempDir::new("shutdown");
    let a = BackendId::new("a");
    let now = SystemTime::now();
    {
        let store = Store::open(dir.db()).unwrap();
        for _ in 0..5_000 {
            store.record(&Event::Completed(&success(&a, "m", now, 10, 10, 10.0, 10)));
        }
        assert_eq!(store.stats().dropped, 0);
    }
    assert_eq!(count(&dir.db(), "SELECT count(*) FROM requests"), 5_000);
    // Reopening keeps the rows and the schema.
    let store = Store::open(dir.db()).unwrap();
    let filter = Filter::new(last_day());
    assert_eq!(
        store
            .percentiles(&filter, Metric::Duration, &[50.0])
            .unwrap()
            .samples,
        5_000
    );
}

#[tokio::test]
async fn the_maintenance_job_runs_by_itself_rolling_up_finished_hours() {
    let dir = TempDir::new("rollup");
    let store = Store::builder(dir.db())
        .maintenance_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    let a = BackendId::new("a");
    for hours in [3, 3, 2] {
        store.record(&Event::Completed(&success(
            &a,
            "m",
            hours_ago(hours),
            10,
            11,
            10.0,
            10,
        )));
    }
    store.record(&Event::Completed(&success(
        &a,
        "m",
        SystemTime::now(),
        10,
        11,
        20.0,
        10,
    )));
    store.flush().await;
    // Nobody calls the job: it runs on its own schedule.
    let runs = store.stats().maintenance_runs;
    store.maintained(runs + 2).await;
    assert!(count(&dir.db(), "SELECT count(*) FROM hourly") >= 2);
    let buckets = store.hourly(&Filter::new(last_day())).unwrap();
    let rolled: Vec<_> = buckets.iter().filter(|b| b.from_rollup).collect();
    let raw: Vec<_> = buckets.iter().filter(|b| !b.from_rollup).collect();
    assert_eq!(rolled.iter().map(|b| b.requests).sum::<u64>(), 3);
    assert_eq!(rolled.len(), 2);
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].requests, 1);
    let mean = raw[0].mean_decode_tokens_per_sec.unwrap();
    assert!((mean - 20.0).abs() < 1e-6, "{mean}");
    // Buckets are in time order and do not overlap.
    assert!(buckets.windows(2).all(|w| w[0].hour_ms < w[1].hour_ms));
}

#[tokio::test]
async fn retention_deletes_rows_past_the_age_and_past_the_row_count() {
    let dir = TempDir::new("retention");
    let store = Store::builder(dir.db())
        .maintenance_interval(Duration::from_millis(5))
        .max_age(Duration::from_secs(2 * 86_400))
        .max_rows(3)
        .build()
        .unwrap();
    let a = BackendId::new("a");
    store.record(&Event::Completed(&success(
        &a,
        "old",
        hours_ago(72),
        10,
        10,
        10.0,
        10,
    )));
    for _ in 0..5 {
        store.record(&Event::Completed(&success(
            &a,
            "new",
            hours_ago(1),
            10,
            10,
            10.0,
            10,
        )));
    }
    store.flush().await;
    let runs = store.stats().maintenance_runs;
    store.maintained(runs + 2).await;
    assert_eq!(count(&dir.db(), "SELECT count(*) FROM requests"), 3);
    assert_eq!(
        count(
            &dir.db(),
            "SELECT count(*) FROM requests WHERE model = 'old'"
        ),
        0
    );
    assert!(store.stats().pruned_rows >= 3);
}

#[tokio::test]
async fn recommendations_judge_by_the_low_tail_and_refuse_without_enough_samples() {
    let dir = TempDir::new("recommend");
    let store = Store::open(dir.db()).unwrap();
    let (spiky, steady, rare) = (
        BackendId::new("spiky"),
        BackendId::new("steady"),
        BackendId::new("rare"),
    );
    let now = SystemTime::now();
    // Spiky: a fast median but a slow tail. Steady: slower median, no tail.
    for i in 0..20 {
        let tps = if i < 6 { 5.0 } else { 200.0 };
        store.record(&Event::Completed(&success(
            &spiky, "m", now, 2_000, 101, tps, 10,
        )));
        store.record(&Event::Completed(&success(
            &steady, "m", now, 2_000, 101, 60.0, 10,
        )));
    }
    // Rare: the fastest of all, with too few samples to judge.
    for _ in 0..3 {
        store.record(&Event::Completed(&success(
            &rare, "m", now, 2_000, 101, 900.0, 10,
        )));
    }
    // Tiny inputs have too few samples from anyone.
    for _ in 0..3 {
        store.record(&Event::Completed(&success(
            &steady, "m", now, 10, 101, 60.0, 10,
        )));
    }
    store.flush().await;
    let recs = store.recommend(&Filter::new(last_day()), 10).unwrap();
    let small = recs
        .categories
        .iter()
        .find(|c| c.category == InputSize::Small)
        .unwrap();
    let best = small.best.as_ref().unwrap();
    assert_eq!(best.backend, "steady");
    assert_eq!(best.evidence.samples, 20);
    let spiky_candidate = small
        .candidates
        .iter()
        .find(|c| c.backend == "spiky")
        .unwrap();
    assert!(spiky_candidate.evidence.p50_tokens_per_sec > best.evidence.p50_tokens_per_sec);
    let rare_candidate = small
        .candidates
        .iter()
        .find(|c| c.backend == "rare")
        .unwrap();
    assert!(!rare_candidate.eligible);
    let tiny = recs
        .categories
        .iter()
        .find(|c| c.category == InputSize::Tiny)
        .unwrap();
    assert!(tiny.best.is_none());
    assert!(tiny
        .refused
        .as_deref()
        .unwrap()
        .contains("not enough samples"));
    assert!(store.recommend(&Filter::new(last_day()), 0).is_err());
}

#[test]
fn a_bad_configuration_is_refused_before_anything_is_opened() {
    let dir = TempDir::new("config");
    for builder in [
        Store::builder(dir.db()).queue_capacity(0),
        Store::builder(dir.db()).batch_size(0),
        Store::builder(dir.db()).max_rows(0),
        Store::builder(dir.db()).max_age(Duration::from_secs(60)),
        Store::builder(dir.db()).maintenance_interval(Duration::ZERO),
    ] {
        assert!(matches!(
            builder.build(),
            Err(streamgate_store::StoreError::Config(_))
        ));
    }
    assert!(!dir.db().exists());
}

#[test]
fn a_file_that_is_not_a_database_is_a_typed_error() {
    let dir = TempDir::new("garbage");
    std::fs::write(
        dir.db(),
        b"this is not a sqlite database, not even close......",
    )
    .unwrap();
    assert!(matches!(
        Store::open(dir.db()),
        Err(streamgate_store::StoreError::Sqlite(_))
    ));
}
