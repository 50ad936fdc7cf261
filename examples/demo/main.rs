//! The streamgate demo: three mock providers with different personalities,
//! one failover stack in front of them, a concurrent workload, and a report.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --duration 8 --concurrency 24 --json demo.json
//! cargo run --release --example demo -- --store demo.db --dashboard 127.0.0.1:8080 --report report.html
//! ```
//!
//! Nothing to set up: the providers are mock servers on loopback, speaking
//! the real OpenAI, Anthropic and Gemini streaming formats over HTTP.

mod analytics;
mod personalities;
mod report;
mod workload;

use std::{process::ExitCode, sync::Arc, time::Duration};

use streamgate::breaker::OpenWait;
use streamgate::prelude::*;
use streamgate::providers::{
    anthropic::Anthropic, gemini::Gemini, openai::OpenAiChat, ChatRequest,
};

/// Output tokens per minute of streaming time below which a backend is
/// "slow" and used only when the others are not available.
const MIN_THROUGHPUT: u64 = 3_000;

/// The command line.
#[derive(Debug)]
struct Args {
    duration: Duration,
    concurrency: usize,
    json: Option<String>,
    store: Option<String>,
    dashboard: Option<String>,
    report: Option<String>,
}

const USAGE: &str = "usage: demo [--duration SECS] [--concurrency N] [--json PATH]
            [--store PATH] [--dashboard ADDR] [--report PATH]

  --duration SECS    how long callers keep sending (default 20)
  --concurrency N    callers sending at once (default 16)
  --json PATH        also write the final snapshot as JSON to PATH
  --store PATH       keep every request in the SQLite file PATH
  --dashboard ADDR   serve the dashboard on ADDR (e.g. 127.0.0.1:8080) and
                     keep serving after the run until Ctrl-C (needs --store)
  --report PATH      write the dashboard as a static HTML file (needs --store)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(20),
        concurrency: 16,
        json: None,
        store: None,
        dashboard: None,
        report: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => {
                let secs: f64 = value()?
                    .parse()
                    .map_err(|_| "--duration takes a number of seconds".to_owned())?;
                if !(1.0..=3600.0).contains(&secs) {
                    return Err("--duration must be between 1 and 3600 seconds".into());
                }
                args.duration = Duration::from_secs_f64(secs);
            }
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=512).contains(n))
                    .ok_or("--concurrency takes a number from 1 to 512")?;
            }
            "--json" => args.json = Some(value()?),
            "--store" => args.store = Some(value()?),
            "--dashboard" => args.dashboard = Some(value()?),
            "--report" => args.report = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    if args.store.is_none() && (args.dashboard.is_some() || args.report.is_some()) {
        return Err("--dashboard and --report need --store PATH".into());
    }
    Ok(args)
}

/// Gives a request this provider's model name: callers ask for one logical
/// model, each provider serves its own.
fn model(name: &'static str) -> impl Fn(ChatRequest) -> ChatRequest + Send + Sync + 'static {
    move |mut request: ChatRequest| {
        request.model = name.to_owned();
        request
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let fast = personalities::fast().await?;
    let bursty = personalities::bursty().await?;
    let steady = personalities::steady().await?;

    let tracker = Arc::new(PerformanceTracker::new());
    let analytics = match &args.store {
        Some(path) => Some(analytics::Analytics::open(path.as_ref(), tracker.clone())?),
        None => None,
    };
    let sink = analytics
        .as_ref()
        .map_or_else(|| -> Arc<dyn MetricsSink> { tracker.clone() }, |a| a.sink());
    if let (Some(analytics), Some(addr)) = (&analytics, &args.dashboard) {
        println!("dashboard: {}", analytics.serve(addr).await?);
    }
    // One quota tracker for all three backends (keyed by backend and model),
    // kept here to show its state at the end.
    let quota = QuotaTracker::builder().sink(sink.clone()).build()?;
    // A budget of tokens per minute for the bursty provider, sized to run
    // out about two thirds into the run (the window is a minute long).
    let bursty_budget = (args.duration.as_secs_f64() * 15_000.0) as u64;
    let router = Backends::new()
        // 1st choice: quick, but its quota runs out. The quota gate reads
        // its rate-limit headers and stops calling it once they say the
        // minute's requests are spent.
        .backend(
            Backend::new(
                "fast",
                OpenAiChat::builder()
                    .base_url(format!("{}/v1", fast.url()))
                    .build()?,
            )
            .map_request(model("gpt-4o-mini"))
            .first_content_timeout(Duration::from_secs(2))
            .idle_timeout(Duration::from_secs(5))
            .quota(quota.clone())
            .min_throughput(MIN_THROUGHPUT),
        )
        // 2nd: overloaded in bursts. Three failures in a row open its
        // breaker for 1 s; a single probe then decides. Its TPM budget
        // refuses what would exceed it.
        .backend(
            Backend::new(
                "bursty",
                Anthropic::builder()
                    .base_url(format!("{}/v1", bursty.url()))
                    .api_key("demo")
                    .build()?,
            )
            .map_request(model("claude-haiku-4-5"))
            .first_content_timeout(Duration::from_millis(1_500))
            .idle_timeout(Duration::from_secs(5))
            .circuit_breaker_with(|b| {
                b.without_failures_within()
                    .consecutive_failures(3)
                    .open_wait(OpenWait::Fixed(Duration::from_secs(1)))
            })
            .quota(quota.clone())
            .tpm_budget(bursty_budget)
            .min_throughput(MIN_THROUGHPUT),
        )
        // Last: slow but steady, paced to 360 requests a minute (6 at once,
        // then one every 167 ms).
        .backend(
            Backend::new(
                "steady",
                Gemini::builder()
                    .base_url(format!("{}/v1beta", steady.url()))
                    .api_key("demo")
                    .build()?,
            )
            .map_request(model("gemini-2.5-flash"))
            .first_content_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(10))
            .quota(quota.clone())
            .pacing(|p| p.requests_per_minute(360).request_burst(6))
            .min_throughput(MIN_THROUGHPUT),
        )
        .metrics(sink)
        // If every backend refuses at once, wait for the first to come back.
        .failover(|f| f.wait_when_unavailable(Duration::from_secs(15)))
        .build()?;

    eprintln!(
        "streamgate demo: {} concurrent callers for {:.0} s against three mock providers \
         (fast {}, bursty {}, steady {})",
        args.concurrency,
        args.duration.as_secs_f64(),
        fast.url(),
        bursty.url(),
        steady.url()
    );
    let callers = workload::run(router, args.concurrency, args.duration).await;

    let snapshot = tracker.snapshot();
    let quota = quota.snapshot(tokio::time::Instant::now());
    let report = report::Report::new(&args, &snapshot, &quota, &tracker, &callers);
    println!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()?)?;
        println!("snapshot written to {path}");
    }
    if let Some(analytics) = &analytics {
        analytics.finish(args.report.as_deref()).await?;
        if args.dashboard.is_some() {
            println!("the dashboard keeps serving; Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
        }
    }
    drop((fast, bursty, steady));
    Ok(())
}
