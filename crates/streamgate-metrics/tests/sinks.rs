//! The `metrics` facade sink, the tracing sink and fan-out.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use streamgate_core::{
    BackendId, BreakerState, ErrorClass, Event, HedgeStage, MetricsSink, Outcome, RejectReason,
    RequestRecord, Usage,
};
use streamgate_metrics::{names, Fanout, MetricsFacadeSink, PerformanceTracker, TracingSink};

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

#[test]
fn facade_sink_records_gen_ai_names_labels_and_folds_models() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sink = MetricsFacadeSink::with_model_cap(1);
    let backend = BackendId::new("openai");
    metrics::with_local_recorder(&recorder, || {
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
        sink.record(&Event::Completed(&record(
            &backend,
            "made-up-1",
            Outcome::Success,
        )));
        sink.record(&Event::Completed(&record(
            &backend,
            "made-up-2",
            Outcome::Success,
        )));
        sink.record(&Event::Rejected {
            backend: &backend,
            model: "gpt-4o",
            reason: RejectReason::CircuitOpen,
            retry_after: None,
        });
        sink.record(&Event::BreakerTransition {
            backend: &backend,
            model: None,
            from: BreakerState::Closed,
            to: BreakerState::Open,
            wait_capped: false,
        });
        sink.record(&Event::Failover {
            from: &backend,
            to: None,
            model: "gpt-4o",
            reason: ErrorClass::Overloaded,
        });
        sink.record(&Event::Throttled {
            backend: &backend,
            model: "gpt-4o",
            waited: Duration::from_millis(250),
        });
    });
    let entries = snapshotter.snapshot().into_vec();
    let find = |name: &str, labels: &[(&str, &str)]| {
        entries
            .iter()
            .filter(|(key, ..)| key.key().name() == name)
            .find(|(key, ..)| {
                labels
                    .iter()
                    .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(key, _, _, value)| (key.key().labels().count(), value))
    };
    let ok = find(
        names::CLIENT_OPERATION_DURATION,
        &[
            (names::PROVIDER_NAME, "openai"),
            (names::REQUEST_MODEL, "gpt-4o"),
        ],
    )
    .unwrap();
    assert_eq!(ok.0, 3, "success has no error.type");
    assert!(matches!(ok.1, DebugValue::Histogram(v) if v.len() == 1 && v[0].into_inner() == 1.2));
    let failed = find(
        names::CLIENT_OPERATION_DURATION,
        &[(names::ERROR_TYPE, "server")],
    )
    .unwrap();
    assert_eq!(failed.0, 4);
    let other = find(
        names::CLIENT_OPERATION_DURATION,
        &[(names::REQUEST_MODEL, names::OTHER_MODEL)],
    )
    .unwrap();
    assert!(matches!(other.1, DebugValue::Histogram(v) if v.len() == 2));
    assert!(find(
        names::CLIENT_OPERATION_DURATION,
        &[(names::REQUEST_MODEL, "made-up-1")]
    )
    .is_none());
    let output = find(
        names::CLIENT_TOKEN_USAGE,
        &[
            (names::TOKEN_TYPE, "output"),
            (names::REQUEST_MODEL, "gpt-4o"),
        ],
    )
    .unwrap();
    assert!(
        matches!(output.1, DebugValue::Histogram(v) if v.iter().all(|x| x.into_inner() == 11.0))
    );
    let ttfc = find(names::CLIENT_TIME_TO_FIRST_CHUNK, &[]).unwrap();
    assert!(matches!(ttfc.1, DebugValue::Histogram(v) if v[0].into_inner() == 0.15));
    assert!(matches!(
        find(names::REJECTIONS, &[(names::REJECT_REASON, "circuit_open")])
            .unwrap()
            .1,
        DebugValue::Counter(1)
    ));
    assert!(matches!(
        find(names::BREAKER_TRANSITIONS, &[(names::BREAKER_TO, "open")])
            .unwrap()
            .1,
        DebugValue::Counter(1)
    ));
    assert!(matches!(
        find(
            names::FAILOVERS,
            &[
                (names::FAILOVER_TO, "none"),
                (names::ERROR_TYPE, "overloaded")
            ]
        )
        .unwrap()
        .1,
        DebugValue::Counter(1)
    ));
    assert!(find(names::THROTTLE_WAIT, &[]).is_some());
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn tracing_sink_writes_structured_events() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let backend = BackendId::new("openai");
    tracing::subscriber::with_default(subscriber, || {
        let sink = TracingSink::new();
        sink.record(&Event::Completed(&record(
            &backend,
            "gpt-4o",
            Outcome::Success,
        )));
        sink.record(&Event::Completed(&record(
            &backend,
            "gpt-4o",
            Outcome::Truncated,
        )));
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("request completed"),
        "{text}"
    );
    assert!(
        lines[0].contains("outcome=\"success\"") || lines[0].contains("outcome=success"),
        "{text}"
    );
    assert!(lines[0].contains("output_tokens=11"), "{text}");
    assert!(lines[0].contains("decode_tokens_per_sec=10"), "{text}");
    assert!(
        lines[1].contains("WARN") && lines[1].contains("truncated"),
        "{text}"
    );
}

#[test]
fn fanout_sends_every_event_to_every_sink() {
    let a = Arc::new(PerformanceTracker::new());
    let b = Arc::new(PerformanceTracker::new());
    let fanout = Fanout::new().with(a.clone()).with(b.clone());
    let backend = BackendId::new("x");
    fanout.record(&Event::Completed(&record(&backend, "m", Outcome::Success)));
    assert_eq!(a.snapshot().session.requests, 1);
    assert_eq!(b.snapshot().session.requests, 1);
    assert!(!fanout.is_empty());
}

/// What a refused request produces when a measuring layer sits above the
/// gate: the gate's rejection, then the layer's record of a request that
/// failed as rejected. One real operation follows.
fn refusal_then_operation(sink: &dyn MetricsSink, backend: &BackendId) {
    sink.record(&Event::Rejected {
        backend,
        model: "gpt-4o",
        reason: RejectReason::QuotaExhausted,
        retry_after: Some(Duration::from_secs(3)),
    });
    sink.record(&Event::Completed(&record(
        backend,
        "gpt-4o",
        Outcome::Failed(ErrorClass::Rejected),
    )));
    sink.record(&Event::Completed(&record(
        backend,
        "gpt-4o",
        Outcome::Success,
    )));
}

#[test]
fn facade_sink_counts_a_refusal_as_a_rejection_and_not_as_an_operation() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sink = MetricsFacadeSink::new();
    let backend = BackendId::new("openai");
    metrics::with_local_recorder(&recorder, || refusal_then_operation(&sink, &backend));
    let entries = snapshotter.snapshot().into_vec();
    let label = |key: &metrics_util::CompositeKey, name: &str| {
        key.key()
            .labels()
            .find(|l| l.key() == name)
            .map(|l| l.value().to_owned())
    };
    let mut durations = 0;
    let mut rejections = Vec::new();
    for (key, _, _, value) in &entries {
        let name = key.key().name();
        if name.starts_with("gen_ai.") {
            assert_ne!(label(key, names::ERROR_TYPE).as_deref(), Some("rejected"));
        }
        match (name, value) {
            (names::CLIENT_OPERATION_DURATION, DebugValue::Histogram(v)) => durations += v.len(),
            (names::CLIENT_TOKEN_USAGE, DebugValue::Histogram(v)) => assert_eq!(v.len(), 1),
            (names::REJECTIONS, DebugValue::Counter(n)) => {
                rejections.push((label(key, names::REJECT_REASON), *n));
            }
            _ => {}
        }
    }
    assert_eq!(durations, 1, "only the real operation is timed");
    assert_eq!(rejections, [(Some("quota_exhausted".to_owned()), 1)]);
}

#[test]
fn tracing_sink_writes_a_refusal_once_as_rejected() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let backend = BackendId::new("openai");
    tracing::subscriber::with_default(subscriber, || {
        refusal_then_operation(&TracingSink::new(), &backend);
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("request rejected") && lines[0].contains("quota_exhausted"),
        "{text}"
    );
    assert!(
        lines[1].contains("request completed") && lines[1].contains("success"),
        "{text}"
    );
    assert!(!text.contains("outcome=\"rejected\""), "{text}");
    assert!(!text.contains("outcome=rejected"), "{text}");
}

#[test]
fn tracker_and_facade_agree_on_requests_and_rejections() {
    let tracker = Arc::new(PerformanceTracker::new());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let facade = Arc::new(MetricsFacadeSink::new());
    let fanout = Fanout::new().with(tracker.clone()).with(facade);
    let backend = BackendId::new("openai");
    metrics::with_local_recorder(&recorder, || {
        refusal_then_operation(&fanout, &backend);
        refusal_then_operation(&fanout, &backend);
    });
    let snapshot = tracker.snapshot();
    let entries = snapshotter.snapshot().into_vec();
    let durations: usize = entries
        .iter()
        .filter(|(key, ..)| key.key().name() == names::CLIENT_OPERATION_DURATION)
        .map(|(.., value)| match value {
            DebugValue::Histogram(v) => v.len(),
            _ => 0,
        })
        .sum();
    let rejections: u64 = entries
        .iter()
        .filter(|(key, ..)| key.key().name() == names::REJECTIONS)
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(snapshot.session.requests, 2);
    assert_eq!(durations as u64, snapshot.session.requests);
    assert_eq!(snapshot.session.rejections, 2);
    assert_eq!(rejections, snapshot.session.rejections);
    let key = snapshot.key("openai", "gpt-4o").unwrap();
    assert_eq!(key.requests, 2);
    assert_eq!(key.rejections.get("quota_exhausted"), Some(&2));
}

/// One hedge that won and one that lost, for a request estimated at
/// `tokens`.
fn two_hedges(sink: &dyn MetricsSink, tokens: u64) {
    let (primary, hedge) = (BackendId::new("primary"), BackendId::new("fallback"));
    for outcome in [HedgeStage::Won, HedgeStage::Lost] {
        for stage in [HedgeStage::Started, outcome] {
            sink.record(&Event::Hedge {
                primary: &primary,
                hedge: &hedge,
                model: "gpt-4o",
                stage,
                after: Duration::from_millis(300),
                estimated_tokens: tokens,
            });
        }
    }
}

#[test]
fn hedges_are_counted_by_stage_with_the_tokens_they_sent_again() {
    let tracker = Arc::new(PerformanceTracker::new());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let fanout = Fanout::new()
        .with(tracker.clone())
        .with(Arc::new(MetricsFacadeSink::new()));
    metrics::with_local_recorder(&recorder, || two_hedges(&fanout, 120));

    let hedges = tracker.snapshot().session.hedges;
    assert_eq!(
        (hedges.started, hedges.won, hedges.lost, hedges.extra_tokens),
        (2, 1, 1, 240)
    );
    let mut stages = Vec::new();
    let mut tokens = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let backend = key
            .key()
            .labels()
            .find(|l| l.key() == names::PROVIDER_NAME)
            .map(|l| l.value().to_owned());
        match (key.key().name(), value) {
            (names::HEDGES, DebugValue::Counter(n)) => {
                let stage = key
                    .key()
                    .labels()
                    .find(|l| l.key() == names::HEDGE_STAGE)
                    .map(|l| l.value().to_owned());
                stages.push((stage.unwrap(), n));
            }
            (names::HEDGE_TOKENS, DebugValue::Counter(n)) => tokens.push((backend, n)),
            _ => {}
        }
    }
    stages.sort();
    assert_eq!(
        stages,
        [
            ("lost".to_owned(), 1),
            ("started".to_owned(), 2),
            ("won".to_owned(), 1)
        ]
    );
    assert_eq!(tokens, [(Some("fallback".to_owned()), 240)]);
}
