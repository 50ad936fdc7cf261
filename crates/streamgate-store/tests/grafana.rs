//! The Grafana dashboard in `docs/grafana/streamgate.json` queries only
//! series that the `metrics` sink really exports through the Prometheus
//! exporter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::Value;
use streamgate_core::{
    BackendId, BreakerState, ErrorClass, Event, MetricsSink, Outcome, QuotaState, RejectReason,
    RequestRecord, Usage,
};
use streamgate_metrics::{names, MetricsFacadeSink};

const DASHBOARD: &str = include_str!("../../../docs/grafana/streamgate.json");

/// One scrape after every kind of event went through the sink.
fn scrape() -> String {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in names::HISTOGRAM_BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .unwrap();
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        MetricsFacadeSink::describe();
        let sink = MetricsFacadeSink::new();
        let a = BackendId::new("a");
        let b = BackendId::new("b");
        let ok = RequestRecord {
            backend: &a,
            model: "m",
            started_at: SystemTime::now(),
            estimated_tokens: 10,
            time_to_first_chunk: Some(Duration::from_millis(100)),
            time_to_first_content: Some(Duration::from_millis(120)),
            duration: Duration::from_millis(900),
            ended: tokio::time::Instant::now(),
            output_duration: Some(Duration::from_millis(780)),
            usage: Some(Usage::new(10, 40)),
            streamed_output_tokens: 40,
            burst_tokens_per_sec: Some(60.0),
            chunks: 40,
            outcome: Outcome::Success,
        };
        let failed = RequestRecord {
            outcome: Outcome::Failed(ErrorClass::Overloaded),
            ..ok.clone()
        };
        for event in [
            Event::Completed(&ok),
            Event::Completed(&failed),
            Event::Rejected {
                backend: &a,
                model: "m",
                reason: RejectReason::QuotaExhausted,
                retry_after: None,
            },
            Event::BreakerTransition {
                backend: &a,
                model: None,
                from: BreakerState::Closed,
                to: BreakerState::Open,
                wait_capped: false,
            },
            Event::QuotaUpdate {
                backend: &a,
                model: "m",
                state: QuotaState::Tracking,
                exhausted_for: None,
                remaining_requests: Some(5),
                remaining_tokens: Some(500),
                wait_capped: false,
            },
            Event::Throttled {
                backend: &a,
                model: "m",
                waited: Duration::from_millis(30),
            },
            Event::Failover {
                from: &a,
                to: Some(&b),
                model: "m",
                reason: ErrorClass::Overloaded,
            },
        ] {
            sink.record(&event);
        }
    });
    handle.render()
}

/// Series name → every label name it was exported with.
fn exported(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let end = line.find(['{', ' ']).unwrap();
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            for pair in rest[..rest.find('}').unwrap()].split(',') {
                labels.insert(pair.split('=').next().unwrap().to_owned());
            }
        }
    }
    series
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metrics an expression selects, each with the labels its matcher
/// names, and the labels it groups by.
fn parse(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut grouping) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            // Skip string literals (matcher values, legend templates).
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if word == "by" || word == "without" {
            let open = i + chars[i..].iter().position(|&c| c == '(').unwrap();
            let close = open + chars[open..].iter().position(|&c| c == ')').unwrap();
            let list: String = chars[open + 1..close].iter().collect();
            grouping.extend(list.split(',').map(|l| l.trim().to_owned()));
            i = close + 1;
        } else if word.starts_with("gen_ai_") || word.starts_with("streamgate_") {
            let mut labels = Vec::new();
            if chars.get(i) == Some(&'{') {
                let close = i + chars[i..].iter().position(|&c| c == '}').unwrap();
                let matchers: String = chars[i + 1..close].iter().collect();
                let mut in_string = false;
                let mut name = String::new();
                for c in matchers.chars() {
                    match c {
                        '"' => in_string = !in_string,
                        '=' | '!' | '~' if !in_string => {
                            if !name.trim().is_empty() {
                                labels.push(name.trim().to_owned());
                            }
                            name.clear();
                        }
                        ',' if !in_string => name.clear(),
                        c if !in_string => name.push(c),
                        _ => {}
                    }
                }
                i = close + 1;
            }
            metrics.push((word, labels));
        }
    }
    (metrics, grouping)
}

fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            out.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["query"]["query"].as_str() {
            // label_values(metric{...}, label): the label is grouped on.
            let inner = q
                .strip_prefix("label_values(")
                .unwrap()
                .strip_suffix(')')
                .unwrap();
            let (selector, label) = inner.rsplit_once(',').unwrap();
            out.push(format!("sum by ({}) ({selector})", label.trim()));
        }
    }
    out
}

#[test]
fn every_grafana_query_names_a_series_the_metrics_sink_exports() {
    let series = exported(&scrape());
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = BTreeSet::new();
    for expr in &queries {
        let (metrics, grouping) = parse(expr);
        assert!(!metrics.is_empty(), "no streamgate series in {expr}");
        let mut available: BTreeSet<String> = ["le".to_owned()].into();
        for (metric, labels) in &metrics {
            let Some(known) = series.get(metric) else {
                panic!(
                    "{metric} is not exported (in {expr}); exported: {:?}",
                    series.keys()
                );
            };
            for label in labels {
                assert!(
                    known.contains(label),
                    "{metric} has no label {label} (in {expr})"
                );
            }
            available.extend(known.iter().cloned());
            used.insert(metric.clone());
        }
        for label in &grouping {
            assert!(
                available.contains(label),
                "no series has label {label} (in {expr})"
            );
        }
    }
    // The dashboard covers what the issue asks for.
    for family in [
        "gen_ai_client_operation_time_to_first_chunk_bucket",
        "gen_ai_client_token_usage_sum",
        "gen_ai_client_operation_time_per_output_chunk_count",
        "gen_ai_client_operation_duration_count",
        "streamgate_breaker_transitions",
        "streamgate_quota_remaining_requests",
        "streamgate_quota_remaining_tokens",
        "streamgate_failovers",
        "streamgate_rejections",
        "streamgate_throttle_wait_sum",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

#[test]
fn the_checker_catches_a_series_that_does_not_exist() {
    let series = exported(&scrape());
    let (metrics, _) =
        parse(r#"rate(gen_ai_client_tokens_per_second{gen_ai_provider_name="a"}[5m])"#);
    assert_eq!(metrics[0].0, "gen_ai_client_tokens_per_second");
    assert!(!series.contains_key(&metrics[0].0));
    let (metrics, grouping) = parse(
        r#"sum by (le, gen_ai_provider_name) (rate(streamgate_throttle_wait_bucket{gen_ai_request_model=~"$m"}[1m]))"#,
    );
    assert_eq!(metrics[0].1, ["gen_ai_request_model"]);
    assert_eq!(grouping, ["le", "gen_ai_provider_name"]);
}
