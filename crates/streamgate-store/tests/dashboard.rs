//! The JSON API over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{get, seeded, TempDir};
use serde_json::Value;
use streamgate_store::dashboard::{serve, Dashboard};

async fn start(dashboard: Dashboard) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, dashboard.router()));
    addr
}

fn group<'a>(groups: &'a Value, backend: &str) -> &'a Value {
    groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["backend"] == backend)
        .unwrap()
}

fn p(dist: &Value, at: f64) -> f64 {
    dist["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["p"].as_f64() == Some(at))
        .unwrap()["value"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn throughput_answers_with_groups_percentiles_and_the_filter_as_applied() {
    let dir = TempDir::new("api-throughput");
    let (store, tracker) = seeded(&dir).await;
    let addr = start(Dashboard::new(store).tracker(tracker)).await;

    let (status, body) = get(addr, "/api/analytics/throughput?percentiles=50,90").await;
    assert_eq!(status, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["summary"]["counts"]["requests"], 10);
    assert_eq!(t["percentiles"], serde_json::json!([50.0, 90.0]));
    let fast = group(&t["by_backend_model"], "fast");
    assert_eq!(fast["model"], "gpt-4o-mini");
    assert!((p(&fast["decode_tokens_per_sec"], 50.0) - 210.0).abs() < 1e-6);
    let slow = group(&t["by_backend"], "slow");
    assert_eq!(slow["counts"]["failures"]["server"], 1);
    assert_eq!(t["by_input_category"].as_array().unwrap().len(), 2);
    assert_eq!(t["hourly"][0]["requests"], 10);

    let (_, body) = get(
        addr,
        "/api/analytics/throughput?provider=gemini&input=small&outcome=success",
    )
    .await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["summary"]["counts"]["requests"], 3);
    assert_eq!(t["filter"]["provider"], "gemini");
    assert_eq!(t["filter"]["input_category"], "small");
    assert_eq!(t["filter"]["outcome"], "success");
}

#[tokio::test]
async fn bad_parameters_and_long_ranges_are_400s_with_a_reason() {
    let dir = TempDir::new("api-errors");
    let (store, _tracker) = seeded(&dir).await;
    let addr = start(Dashboard::new(store)).await;
    for (path, reason) in [
        (
            "/api/analytics/throughput?hours=800",
            "longer than the 30 days",
        ),
        (
            "/api/analytics/throughput?from=10&to=5",
            "ends before it starts",
        ),
        (
            "/api/analytics/throughput?percentiles=50,abc",
            "not a number",
        ),
        (
            "/api/analytics/throughput?percentiles=101",
            "not between 0 and 100",
        ),
        ("/api/analytics/throughput?outcome=great", "outcome must be"),
        (
            "/api/analytics/recommendations?input=enormous",
            "size category",
        ),
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(reason),
            "{path}: {body}"
        );
    }
    let long = format!("/api/analytics/throughput?model={}", "m".repeat(300));
    assert_eq!(get(addr, &long).await.0, 400);
}

#[tokio::test]
async fn recommendations_and_state_are_served() {
    let dir = TempDir::new("api-recs");
    let (store, tracker) = seeded(&dir).await;
    let addr = start(Dashboard::new(store).tracker(tracker).min_samples(3)).await;

    let (status, body) = get(addr, "/api/analytics/recommendations").await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let small = r["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "small")
        .unwrap();
    assert_eq!(small["best"]["backend"], "fast");
    assert_eq!(small["best"]["evidence"]["samples"], 4);
    let tiny = r["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "tiny")
        .unwrap();
    assert!(tiny["best"].is_null());
    assert!(tiny["refused"]
        .as_str()
        .unwrap()
        .contains("not enough samples"));

    let (status, body) = get(addr, "/api/state").await;
    assert_eq!(status, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["tracked"], true);
    let slow = group(&s["backends"], "slow");
    assert_eq!(slow["breaker"], "open");
    let fast = group(&s["backends"], "fast");
    assert_eq!(fast["models"][0]["quota"]["state"], "exhausted");
    assert_eq!(fast["models"][0]["quota"]["remaining_tokens"], 5_000);
    assert!(fast["tokens_per_minute"].as_u64().unwrap() > 0);
    assert_eq!(s["store"]["written_requests"], 10);

    let (status, page) = get(addr, "/dashboard").await;
    assert_eq!(status, 200);
    assert!(page.starts_with("<!doctype html>"));
    // Self-contained: nothing is loaded from elsewhere.
    for outside in ["src=", "href=", "<link", "@import", "url("] {
        assert!(!page.contains(outside), "{outside}");
    }
}

#[tokio::test]
async fn a_static_report_embeds_the_data_and_cannot_be_broken_out_of() {
    let dir = TempDir::new("api-static");
    let (store, tracker) = seeded(&dir).await;
    let a = streamgate_core::BackendId::new("</script><b>x");
    let record = common::success(&a, "m", std::time::SystemTime::now(), 10, 11, 10.0, 10);
    streamgate_core::MetricsSink::record(&store, &streamgate_core::Event::Completed(&record));
    streamgate_core::MetricsSink::flush(&store).await;
    let dashboard = Dashboard::new(store).tracker(tracker);
    let data = dashboard.data(&Default::default()).unwrap();
    let html = Dashboard::static_page(&data).unwrap();
    assert!(!html.contains("/*EMBEDDED*/null"));
    assert!(html.contains("\"gpt-4o-mini\""));
    assert_eq!(html.matches("</script>").count(), 1);
}
