//! Exposes streamgate's metrics for Prometheus on loopback, with the
//! OpenTelemetry GenAI bucket boundaries.
//!
//! ```text
//! cargo run -p streamgate-metrics --example prometheus            # print one scrape
//! cargo run -p streamgate-metrics --example prometheus -- --serve # keep serving on :9464
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use streamgate_core::{
    testing::{Script, ScriptedService, TestRequest},
    ErrorClass, MetricsSink,
};
use streamgate_metrics::{names, MetricsFacadeSink, MetricsLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt};

/// Installs the Prometheus recorder, serving `/metrics` on `addr`, with the
/// semantic-convention buckets for every streamgate histogram.
pub fn install(addr: SocketAddr) -> Result<(), BuildError> {
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for (name, buckets) in names::HISTOGRAM_BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    builder.install()?;
    MetricsFacadeSink::describe();
    Ok(())
}

/// Sends a few requests to two stand-in backends, one quick and one slow
/// (and failing once), measured into `sink`.
pub async fn send_traffic(sink: Arc<dyn MetricsSink>) {
    let quick = ScriptedService::new(
        Script::new()
            .headers_after(Duration::from_millis(20))
            .tokens(5, Duration::from_millis(2))
            .usage(streamgate_core::Usage::new(12, 5)),
    );
    let slow = ScriptedService::new(
        Script::new()
            .headers_after(Duration::from_millis(60))
            .tokens(5, Duration::from_millis(10))
            .usage(streamgate_core::Usage::new(12, 5)),
    )
    .then(Script::new().fail_call(ErrorClass::Overloaded));
    for (name, client) in [("quick", quick), ("slow", slow)] {
        let service = MetricsLayer::new(name, sink.clone()).layer(client);
        for _ in 0..3 {
            if let Ok(response) = service
                .clone()
                .oneshot(TestRequest::new("gpt-4o-mini"))
                .await
            {
                let _ = response.into_body().collect::<Vec<_>>().await;
            }
        }
    }
}

/// Fetches `/metrics` from `addr` over plain HTTP/1.1.
pub async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[allow(dead_code)] // The scrape test includes this file and has its own main.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9464));
    install(addr)?;
    send_traffic(Arc::new(MetricsFacadeSink::new())).await;
    if std::env::args().any(|a| a == "--serve") {
        println!("serving http://{addr}/metrics; stop with Ctrl-C");
        std::future::pending::<()>().await;
    }
    print!("{}", scrape(addr).await?);
    Ok(())
}
