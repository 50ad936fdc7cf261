//! The streamgate demo: three mock providers with different personalities,
//! one failover stack in front of them, a concurrent workload, and a report.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --duration 8 --concurrency 24 --json demo.json
//! cargo run --release --example demo -- --store demo.db --dashboard 127.0.0.1:8080 --report report.html
//! cargo run --release --example demo -- --config my-gateway.toml --print-config
//! ```
//!
//! Nothing to set up: the providers are mock servers on loopback, speaking
//! the real OpenAI, Anthropic and Gemini streaming formats over HTTP. The
//! three backends come from `examples/demo.toml`; `--config FILE` runs your
//! own file instead, against the same mocks: each backend's `base_url` is
//! replaced by a mock's (the first backend gets the fast mock, the second
//! the bursty one, the third the steady one, then round again), and every
//! key variable is answered with a dummy key, so no real provider is called.

mod analytics;
mod personalities;
mod report;
mod workload;

use std::{process::ExitCode, time::Duration};

use streamgate::config::{Config, ProviderKind, Runtime, StoreConfig, Toggle};
use streamgate::mock::MockServer;
use streamgate::prelude::*;

/// The demo's three backends, shipped beside it.
const DEMO_CONFIG: &str = include_str!("../demo.toml");

/// The variable every backend's key is read from when run against the
/// mocks; the demo answers it with a dummy key.
const MOCK_KEY_VARIABLE: &str = "STREAMGATE_DEMO_KEY";

/// The command line.
#[derive(Debug)]
struct Args {
    duration: Duration,
    concurrency: usize,
    json: Option<String>,
    store: Option<String>,
    dashboard: Option<String>,
    report: Option<String>,
    config: Option<String>,
    print_config: bool,
}

const USAGE: &str = "usage: demo [--duration SECS] [--concurrency N] [--json PATH]
            [--store PATH] [--dashboard ADDR] [--report PATH]
            [--config FILE] [--print-config]

  --duration SECS    how long callers keep sending (default 20)
  --concurrency N    callers sending at once (default 16)
  --json PATH        also write the final snapshot as JSON to PATH
  --store PATH       keep every request in the SQLite file PATH
  --dashboard ADDR   serve the dashboard on ADDR (e.g. 127.0.0.1:8080) and
                     keep serving after the run until Ctrl-C (needs --store)
  --report PATH      write the dashboard as a static HTML file (needs --store)
  --config FILE      run the backends of FILE (.toml, .yaml or .json) against
                     the mocks instead of examples/demo.toml
  --print-config     print the configuration that runs, every default
                     filled in, and exit";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(20),
        concurrency: 16,
        json: None,
        store: None,
        dashboard: None,
        report: None,
        config: None,
        print_config: false,
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
            "--config" => args.config = Some(value()?),
            "--print-config" => args.print_config = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    if args.store.is_none() && (args.dashboard.is_some() || args.report.is_some()) {
        return Err("--dashboard and --report need --store PATH".into());
    }
    Ok(args)
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

/// The base URL at which `mock` serves `provider`'s API, or why it
/// cannot.
fn mock_base_url(provider: ProviderKind, mock: &MockServer) -> Result<String, String> {
    let url = mock.url();
    Ok(match provider {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Anthropic => {
            format!("{url}/v1")
        }
        ProviderKind::Gemini => format!("{url}/v1beta"),
        ProviderKind::Azure
        | ProviderKind::Vertex
        | ProviderKind::Ollama
        | ProviderKind::Bedrock => url,
        other => return Err(format!("the mock does not speak the {other} api")),
    })
}

/// The configuration to run: the shipped one or the user's, pointed at the
/// mocks, with the tracker on (the report reads it) and the store if asked.
fn load_config(args: &Args, mocks: &[&MockServer; 3]) -> Result<Config, BoxError> {
    let mut config = match &args.config {
        Some(path) => Config::from_path(path)?,
        None => Config::from_toml_str(DEMO_CONFIG)?,
    };
    for (i, backend) in config.backends.iter_mut().enumerate() {
        let mock = mocks[i % mocks.len()];
        backend.base_url = Some(
            mock_base_url(backend.provider, mock)
                .map_err(|why| format!("backend {}: {why}", backend.name))?,
        );
        backend.api_key_env = Some(Toggle::On(MOCK_KEY_VARIABLE.to_owned()));
        if backend.provider == ProviderKind::Bedrock && backend.region.is_none() {
            backend.region = Some("us-east-1".to_owned());
        }
    }
    config.metrics.tracker = Some(true);
    if let Some(path) = &args.store {
        config.store = Some(StoreConfig::new(path));
    }
    config.validate()?;
    Ok(config)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let fast = personalities::fast().await?;
    let bursty = personalities::bursty().await?;
    let steady = personalities::steady().await?;

    let config = load_config(&args, &[&fast, &bursty, &steady])?;
    // Every key variable gets a dummy key; a Redis URL (a file's
    // `[shared_state]`, with the `redis` feature) is read from the
    // environment.
    let redis_url = config
        .shared_state
        .as_ref()
        .map(|shared| shared.url_variable().to_owned());
    let runtime = Runtime::with_secrets(&config, move |name| {
        if redis_url.as_deref() == Some(name) {
            std::env::var(name).ok()
        } else {
            Some("demo".to_owned())
        }
    })?;
    let backends = Backends::from_config_with(&config, &runtime)?;
    if args.print_config {
        // What the built chain runs with, read back from it.
        print!("{}", backends.effective_config()?);
        return Ok(());
    }
    let tracker = runtime
        .tracker()
        .cloned()
        .ok_or("the demo's configuration turns the tracker on")?;
    let analytics = runtime
        .store()
        .map(|store| analytics::Analytics::new(store.clone(), tracker.clone()));
    if let (Some(analytics), Some(addr)) = (&analytics, &args.dashboard) {
        println!("dashboard: {}", analytics.serve(addr).await?);
    }
    let router = backends.build()?;

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
    let now = tokio::time::Instant::now();
    let quota: Vec<_> = runtime
        .quota_trackers()
        .flat_map(|(_, tracker)| tracker.snapshot(now))
        .collect();
    let backends: Vec<report::BackendRow> = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| report::BackendRow {
            name: b.name.clone(),
            provider: b.provider.to_string(),
            personality: personalities::DESCRIPTIONS[i % personalities::DESCRIPTIONS.len()],
        })
        .collect();
    let report = report::Report::new(&args, &backends, &snapshot, &quota, &tracker, &callers);
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
