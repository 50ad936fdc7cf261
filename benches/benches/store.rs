//! The analytics store: insert throughput on the writer thread, and
//! percentile queries over 30 days of 1,000,000 stored requests.
//!
//! The database is built once under the target directory (20 backends ×
//! models over 30 days, 1,000,000 rows) and reused by later runs. Group
//! `store_insert` records batches of 10,000 finished requests and waits for
//! the writer to commit them (criterion's throughput is records per
//! second), and group `store_insert_writer_cpu` times the same work by the
//! writer thread's CPU time (what it sustains on a busy machine); group `store_query` asks for p50/p95/p99 of one model (200,000
//! of the rows) over the whole 30 days, and for the full grouped report of
//! the same filter.
// Setup that cannot work is a broken benchmark: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use streamgate_benches::cpu;
use streamgate_core::{BackendId, Event, MetricsSink, Outcome, RequestRecord, Usage};
use streamgate_store::{Filter, Metric, Store, TimeRange, MAX_RANGE};
use tokio::runtime::Runtime;

const ROWS: u64 = 1_000_000;
const BATCH: u64 = 10_000;
const BACKENDS: [&str; 4] = ["openai", "anthropic", "gemini", "groq"];
/// The writer thread's name as the kernel keeps it (15 bytes).
const WRITER_THREAD: &str = "streamgate-stor";
const MODELS: [&str; 5] = ["model-a", "model-b", "model-c", "model-d", "model-e"];

fn record<'a>(backend: &'a BackendId, i: u64, started_at: SystemTime) -> RequestRecord<'a> {
    // Deterministic spread of speeds and sizes.
    let output = 50 + (i * 37) % 900;
    let decode = 20.0 + ((i * 7_919) % 2_000) as f64 / 10.0;
    let ttfc = Duration::from_millis(100 + (i * 13) % 1_500);
    let output_duration = Duration::from_secs_f64((output - 1) as f64 / decode);
    RequestRecord {
        backend,
        model: MODELS[(i / 4 % 5) as usize],
        started_at,
        estimated_tokens: 100 + (i * 101) % 20_000,
        time_to_first_chunk: Some(ttfc / 2),
        time_to_first_content: Some(ttfc),
        duration: ttfc + output_duration,
        ended: tokio::time::Instant::now(),
        output_duration: Some(output_duration),
        usage: Some(Usage::new(1_000, output)),
        streamed_output_tokens: output,
        burst_tokens_per_sec: Some(decode * 1.3),
        chunks: output,
        outcome: if i.is_multiple_of(50) {
            Outcome::Failed(streamgate_core::ErrorClass::Overloaded)
        } else {
            Outcome::Success
        },
    }
}

fn database(rt: &Runtime) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("million.db");
    let done = dir.join("million.done");
    if done.exists() {
        return path;
    }
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path).unwrap();
    let backends: Vec<BackendId> = BACKENDS.iter().map(|b| BackendId::new(*b)).collect();
    let start = SystemTime::now() - MAX_RANGE + Duration::from_secs(3_600);
    let step = (MAX_RANGE - Duration::from_secs(7_200)).as_millis() as u64 / ROWS;
    let began = Instant::now();
    for chunk in 0..ROWS / BATCH {
        for j in 0..BATCH {
            let i = chunk * BATCH + j;
            let at = start + Duration::from_millis(i * step);
            let backend = &backends[(i % 4) as usize];
            store.record(&Event::Completed(&record(backend, i, at)));
        }
        rt.block_on(store.flush());
    }
    let stats = store.stats();
    assert_eq!(stats.written_requests, ROWS, "{stats:?}");
    eprintln!(
        "store: wrote {ROWS} rows in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    drop(store);
    std::fs::write(done, b"").unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = database(&rt);
    let store = Store::open(&path).unwrap();
    let now = SystemTime::now();
    let filter = Filter::new(TimeRange::new(now - MAX_RANGE, now).unwrap()).model("model-c");

    let mut query = c.benchmark_group("store_query");
    query.sample_size(10);
    query.measurement_time(Duration::from_secs(10));
    query.bench_function("p50_p95_p99_decode_one_model_30_days_1m_rows", |b| {
        b.iter(|| {
            let d = store
                .percentiles(&filter, Metric::DecodeTokensPerSec, &[50.0, 95.0, 99.0])
                .unwrap();
            assert!(d.samples > 150_000);
            d
        })
    });
    query.bench_function("full_report_one_model_30_days_1m_rows", |b| {
        b.iter(|| store.throughput(&filter, &[50.0, 95.0, 99.0]).unwrap())
    });
    query.finish();

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    let insert_path = dir.join("insert.db");
    let _ = std::fs::remove_file(&insert_path);
    let insert = Store::builder(&insert_path)
        .queue_capacity(BATCH as usize)
        .build()
        .unwrap();
    let backend = BackendId::new("openai");
    let mut group = c.benchmark_group("store_insert");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH));
    let mut i = 0;
    let batch = |i: &mut u64| {
        for _ in 0..BATCH {
            *i += 1;
            // Requests start in time order, a millisecond apart.
            let at = now + Duration::from_millis(*i);
            insert.record(&Event::Completed(&record(&backend, *i, at)));
        }
        rt.block_on(insert.flush());
    };
    group.bench_function("record_and_flush_10k_requests", |b| {
        b.iter(|| batch(&mut i))
    });
    group.finish();

    // The same work, timed by the writer thread's own CPU time: what the
    // writer can sustain, whatever else the machine is doing.
    let mut group = c.benchmark_group("store_insert_writer_cpu");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("record_and_flush_10k_requests", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = cpu::threads(WRITER_THREAD).unwrap();
                batch(&mut i);
                total += cpu::threads(WRITER_THREAD).unwrap().saturating_sub(before);
            }
            total
        })
    });
    group.finish();
    assert_eq!(insert.stats().dropped, 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
