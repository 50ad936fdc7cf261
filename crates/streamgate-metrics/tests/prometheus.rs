//! The Prometheus example's endpoint, scraped over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[allow(dead_code, unused_imports)]
#[path = "../examples/prometheus.rs"]
mod example;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use streamgate_metrics::MetricsFacadeSink;

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_endpoint_has_the_gen_ai_series_with_their_labels() {
    let addr = free_port();
    example::install(addr).unwrap();
    example::send_traffic(Arc::new(MetricsFacadeSink::new())).await;

    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(response) = example::scrape(addr).await {
            if response.contains("gen_ai_client_operation_duration") {
                body = response;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let has = |needle: &str| body.lines().any(|l| l.contains(needle));
    let quick = r#"gen_ai_operation_name="chat",gen_ai_provider_name="quick",gen_ai_request_model="gpt-4o-mini""#;
    // Durations of the three successes, with the semantic-convention buckets.
    assert!(
        has(&format!(
            r#"gen_ai_client_operation_duration_bucket{{{quick},le="+Inf"}} 3"#
        )),
        "{body}"
    );
    assert!(
        has(&format!(
            "gen_ai_client_operation_duration_count{{{quick}}} 3"
        )),
        "{body}"
    );
    // The slow backend's failed call carries error.type.
    assert!(has(r#"error_type="overloaded""#), "{body}");
    assert!(
        has(&format!(
            r#"gen_ai_client_token_usage_sum{{{quick},gen_ai_token_type="output"}} 15"#
        )),
        "{body}"
    );
    assert!(
        has("gen_ai_client_operation_time_to_first_chunk_bucket"),
        "{body}"
    );
    assert!(
        has("gen_ai_client_operation_time_per_output_chunk_bucket"),
        "{body}"
    );
    assert!(has(r#"le="81.92""#), "{body}");
}
