//! The OpenTelemetry sink, read back through the SDK's in-memory exporter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{
    data::{AggregatedMetrics, HistogramDataPoint, MetricData},
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
};
use streamgate_core::{
    BackendId, ErrorClass, Event, MetricsSink, Outcome, RejectReason, RequestRecord, Usage,
};
use streamgate_metrics::{names, OpenTelemetrySink};

fn record<'a>(backend: &'a BackendId, model: &'a str, outcome: Outcome) -> RequestRecord<'a> {
    RequestRecord {
        backend,
        model,
        started_at: SystemTime::UNIX_EPOCH,
        estimated_tokens: 10,
        time_to_first_chunk: Some(Duration::from_millis(150)),
        time_to_first_content: Some(Duration::from_millis(200)),
        duration: Duration::from_millis(1_200),
        ended: tokio::time::Instant::now(),
        output_duration: Some(Duration::from_millis(1_000)),
        usage: Some(Usage::new(40, 11)),
        streamed_output_tokens: 11,
        burst_tokens_per_sec: Some(10.0),
        chunks: 11,
        outcome,
    }
}

fn attr(point: &HistogramDataPoint<f64>, key: &str) -> Option<String> {
    point
        .attributes()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[test]
fn records_the_gen_ai_instruments_with_semconv_buckets() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let sink = OpenTelemetrySink::with_model_cap(&provider.meter("streamgate"), 2);
    let backend = BackendId::new("openai");
    sink.record(&Event::Completed(&record(
        &backend,
        "gpt-4o",
        Outcome::Success,
    )));
    sink.record(&Event::Completed(&record(
        &backend,
        "gpt-4o",
        Outcome::Failed(ErrorClass::Server),
    )));
    for model in ["m2", "m3", "m4"] {
        sink.record(&Event::Completed(&record(
            &backend,
            model,
            Outcome::Success,
        )));
    }
    sink.record(&Event::Rejected {
        backend: &backend,
        model: "gpt-4o",
        reason: RejectReason::QuotaExhausted,
        retry_after: None,
    });
    provider.force_flush().unwrap();

    let metrics = exporter.get_finished_metrics().unwrap();
    let all: Vec<_> = metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .collect();
    let find = |name: &str| *all.iter().find(|m| m.name() == name).unwrap();

    let duration = find(names::CLIENT_OPERATION_DURATION);
    assert_eq!(duration.unit(), "s");
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
        panic!("duration is not an f64 histogram");
    };
    let points: Vec<_> = histogram.data_points().collect();
    let ok = points
        .iter()
        .find(|p| {
            attr(p, names::REQUEST_MODEL).as_deref() == Some("gpt-4o")
                && attr(p, names::ERROR_TYPE).is_none()
        })
        .unwrap();
    assert_eq!(ok.count(), 1);
    assert_eq!(ok.bounds().collect::<Vec<_>>(), names::DURATION_BUCKETS);
    assert_eq!(attr(ok, names::PROVIDER_NAME).as_deref(), Some("openai"));
    assert_eq!(attr(ok, names::OPERATION_NAME).as_deref(), Some("chat"));
    assert!(points
        .iter()
        .any(|p| attr(p, names::ERROR_TYPE).as_deref() == Some("server")));
    // Cap 2: gpt-4o and m2 keep their names, m3 and m4 share _OTHER.
    let other = points
        .iter()
        .find(|p| attr(p, names::REQUEST_MODEL).as_deref() == Some(names::OTHER_MODEL))
        .unwrap();
    assert_eq!(other.count(), 2);

    let per_chunk = find(names::CLIENT_TIME_PER_OUTPUT_CHUNK);
    let AggregatedMetrics::F64(MetricData::Histogram(h)) = per_chunk.data() else {
        panic!("time per output chunk is not an f64 histogram");
    };
    let p = h.data_points().next().unwrap();
    assert_eq!(
        p.bounds().collect::<Vec<_>>(),
        names::TIME_PER_OUTPUT_CHUNK_BUCKETS
    );
    // 1 s of output over 10 gaps.
    assert!((p.sum() / p.count() as f64 - 0.1).abs() < 1e-9);

    let tokens = find(names::CLIENT_TOKEN_USAGE);
    let AggregatedMetrics::U64(MetricData::Histogram(h)) = tokens.data() else {
        panic!("token usage is not a u64 histogram");
    };
    let input: u64 = h
        .data_points()
        .filter(|p| {
            p.attributes()
                .any(|kv| kv.key.as_str() == names::TOKEN_TYPE && kv.value.as_str() == "input")
        })
        .map(|p| p.sum())
        .sum();
    assert_eq!(input, 5 * 40);
    let first = h.data_points().next().unwrap();
    assert_eq!(
        first.bounds().collect::<Vec<_>>(),
        names::TOKEN_USAGE_BUCKETS
    );

    let rejections = find(names::REJECTIONS);
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = rejections.data() else {
        panic!("rejections is not a u64 sum");
    };
    let point = sum.data_points().next().unwrap();
    assert_eq!(point.value(), 1);
    assert!(point.attributes().any(
        |kv| kv.key.as_str() == names::REJECT_REASON && kv.value.as_str() == "quota_exhausted"
    ));
}

#[test]
fn a_refusal_is_a_rejection_and_not_an_operation() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let sink = OpenTelemetrySink::new(&provider.meter("streamgate"));
    let backend = BackendId::new("openai");
    // The gate's rejection, then a measuring layer above it ending the same
    // request as rejected; then one real operation.
    sink.record(&Event::Rejected {
        backend: &backend,
        model: "gpt-4o",
        reason: RejectReason::CircuitOpen,
        retry_after: None,
    });
    sink.record(&Event::Completed(&record(
        &backend,
        "gpt-4o",
        Outcome::Failed(ErrorClass::Rejected),
    )));
    sink.record(&Event::Completed(&record(
        &backend,
        "gpt-4o",
        Outcome::Success,
    )));
    provider.force_flush().unwrap();

    let metrics = exporter.get_finished_metrics().unwrap();
    let all: Vec<_> = metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .collect();
    let find = |name: &str| *all.iter().find(|m| m.name() == name).unwrap();

    for name in [
        names::CLIENT_OPERATION_DURATION,
        names::CLIENT_TIME_TO_FIRST_CHUNK,
    ] {
        let AggregatedMetrics::F64(MetricData::Histogram(h)) = find(name).data() else {
            panic!("{name} is not an f64 histogram");
        };
        let points: Vec<_> = h.data_points().collect();
        assert!(points
            .iter()
            .all(|p| attr(p, names::ERROR_TYPE).as_deref() != Some("rejected")));
        assert_eq!(
            points.iter().map(|p| p.count()).sum::<u64>(),
            1,
            "{name}: only the real operation"
        );
    }
    let AggregatedMetrics::U64(MetricData::Histogram(tokens)) =
        find(names::CLIENT_TOKEN_USAGE).data()
    else {
        panic!("token usage is not a u64 histogram");
    };
    assert_eq!(tokens.data_points().map(|p| p.count()).sum::<u64>(), 2);

    let AggregatedMetrics::U64(MetricData::Sum(sum)) = find(names::REJECTIONS).data() else {
        panic!("rejections is not a u64 sum");
    };
    let points: Vec<_> = sum.data_points().collect();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value(), 1);
    assert!(points[0]
        .attributes()
        .any(|kv| kv.key.as_str() == names::REJECT_REASON && kv.value.as_str() == "circuit_open"));
}
