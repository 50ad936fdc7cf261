//! One stack, three places for its metrics, switched by a flag: the
//! in-memory tracker (a table at the end), Prometheus (a scrape endpoint) or
//! `tracing` (one log line per event). Only the sink changes.
//!
//! ```text
//! cargo run --example swap_metrics                                  # in-memory tracker
//! cargo run --example swap_metrics -- --sink prometheus [--serve]   # scrape URL printed
//! cargo run --example swap_metrics -- --sink tracing                # log lines
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use streamgate::metrics::{names, MetricsFacadeSink, PerformanceTracker, TracingSink};
use streamgate::mock::{MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{openai::OpenAiChat, ChatRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const USAGE: &str =
    "usage: swap_metrics [--sink memory|prometheus|tracing] [--port PORT] [--serve]";

/// Sends a few requests through one backend's stack reporting to `sink`;
/// every third one is refused by the provider as overloaded.
async fn traffic(sink: Arc<dyn MetricsSink>) -> Result<(), BoxError> {
    let mock = MockServer::start(MockConfig::new().with_script(|info| {
        let plan = Plan::new()
            .with_output_tokens(12)
            .with_chunk_delay(Duration::from_millis(5));
        if info.index % 3 == 2 {
            plan.fail_with_status(503)
        } else {
            plan
        }
    }))
    .await?;
    let client = OpenAiChat::builder()
        .base_url(format!("{}/v1", mock.url()))
        .build()?;
    let service = Backend::new("openai", client)
        .first_content_timeout(Duration::from_secs(10))
        .metrics(sink)
        .build()?;
    for _ in 0..6 {
        let request = ChatRequest::new("gpt-4o-mini").with_user("hello");
        if let Ok(response) = service.clone().oneshot(request).await {
            let _: Vec<_> = response.into_body().collect().await;
        }
    }
    Ok(())
}

/// Fetches `/metrics` over plain HTTP/1.1.
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (mut sink, mut port, mut serve) = ("memory".to_owned(), 9464_u16, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sink" => sink = args.next().ok_or(USAGE)?,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).ok_or(USAGE)?,
            "--serve" => serve = true,
            _ => return Err(USAGE.into()),
        }
    }

    match sink.as_str() {
        "memory" => {
            let tracker = Arc::new(PerformanceTracker::new());
            traffic(tracker.clone()).await?;
            println!("{}", tracker.snapshot());
        }
        "prometheus" => {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut builder = PrometheusBuilder::new().with_http_listener(addr);
            // The OpenTelemetry GenAI bucket boundaries for each histogram.
            for (name, buckets) in names::HISTOGRAM_BUCKETS {
                builder =
                    builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
            }
            builder.install()?;
            MetricsFacadeSink::describe();
            traffic(Arc::new(MetricsFacadeSink::new())).await?;
            println!("scrape http://{addr}/metrics\n");
            let body = scrape(addr).await?;
            // Histogram buckets left out, to keep the output short.
            let lines = body.lines().filter(|l| {
                (l.starts_with("gen_ai") || l.starts_with("streamgate")) && !l.contains("_bucket")
            });
            for line in lines {
                println!("{line}");
            }
            if serve {
                println!("\nserving http://{addr}/metrics; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        "tracing" => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "streamgate=debug,info".into()),
                )
                .init();
            traffic(Arc::new(TracingSink::new())).await?;
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}
