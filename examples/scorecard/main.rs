//! The fault scorecard: each fault a provider can throw, met once through
//! the bare client and once through the default `Backends` stack (a faulty
//! primary, a healthy fallback), in the same run, over loopback HTTP; then
//! each mid-stream fault with continuation off and on.
//!
//! ```text
//! cargo xtask scorecard                                 # full run, writes SCORECARD.md
//! cargo run --example scorecard -- --quick --check SCORECARD.md
//! ```
//!
//! `--quick` divides every delay and deadline by 10; the outcomes are the
//! same at either scale, so `--check` fails if any scenario's outcome
//! differs from the committed table.

use std::{
    fmt::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use futures::StreamExt;
use streamgate::mock::{expected_text, KeepAlive, MockConfig, MockServer, Plan, RateLimitHeaders};
use streamgate::prelude::*;
use streamgate::providers::{openai::OpenAiChat, ChatChunk, ChatRequest};
use tower::ServiceExt;

/// Output tokens of every healthy answer.
const TOKENS: u64 = 8;

/// Times of the full run; `--quick` divides them.
struct Scale(u32);

impl Scale {
    fn d(&self, ms: u64) -> Duration {
        Duration::from_millis(ms) / self.0
    }
}

/// One fault of the primary.
struct Scenario {
    name: &'static str,
    primary: fn(&Scale) -> MockConfig,
}

fn plan(plan: Plan) -> MockConfig {
    MockConfig::new().with_plan(plan.with_output_tokens(TOKENS))
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "healthy",
            primary: |_| plan(Plan::new()),
        },
        Scenario {
            name: "429 with retry-after",
            primary: |_| {
                plan(
                    Plan::new()
                        .fail_with_status(429)
                        .with_retry_after(Duration::from_secs(30)),
                )
            },
        },
        Scenario {
            name: "429 without retry-after",
            primary: |_| plan(Plan::new().fail_with_status(429)),
        },
        Scenario {
            name: "500",
            primary: |_| plan(Plan::new().fail_with_status(500)),
        },
        Scenario {
            name: "503 overloaded",
            primary: |_| plan(Plan::new().fail_with_status(503)),
        },
        Scenario {
            name: "529 overloaded",
            primary: |_| plan(Plan::new().fail_with_status(529)),
        },
        Scenario {
            name: "silent upstream",
            primary: |_| plan(Plan::new().with_header_delay(Duration::from_secs(3600))),
        },
        Scenario {
            name: "first content after 20 s (10 s deadline)",
            primary: |s| plan(Plan::new().with_first_content_delay(s.d(20_000))),
        },
        Scenario {
            name: "keep-alives only",
            primary: |s| {
                plan(
                    Plan::new()
                        .with_keep_alive(s.d(1_000), KeepAlive::Comment)
                        .stall_after(0),
                )
            },
        },
        Scenario {
            name: "cut mid-stream",
            primary: |_| plan(Plan::new().disconnect_after(3)),
        },
        Scenario {
            name: "stall mid-stream",
            primary: |_| plan(Plan::new().stall_after(3)),
        },
        Scenario {
            name: "error event inside HTTP 200",
            primary: |_| plan(Plan::new().error_after(0)),
        },
        Scenario {
            name: "malformed SSE",
            primary: |_| plan(Plan::new().malformed_after(0)),
        },
        Scenario {
            name: "quota headers say exhausted",
            primary: |_| {
                plan(Plan::new())
                    .with_requests_per_minute(1)
                    .with_rate_limit_headers(RateLimitHeaders::Dialect)
            },
        },
    ]
}

/// What the caller got.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    /// The exact answer, each part once.
    Full,
    Error(String),
    TruncatedAsSuccess,
    /// A clean end with text that is not the answer (a part repeated or lost).
    WrongText,
    Hung,
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full => f.write_str("full answer"),
            Self::Error(class) => write!(f, "error ({class})"),
            Self::TruncatedAsSuccess => f.write_str("truncated as success"),
            Self::WrongText => f.write_str("wrong text as success"),
            Self::Hung => f.write_str("no answer (cut by the scorecard)"),
        }
    }
}

struct Row {
    scenario: &'static str,
    stack: &'static str,
    got: Got,
    ttfc: Option<Duration>,
    total: Duration,
    upstream: u64,
    disconnected: &'static str,
}

fn client(server: &MockServer) -> Result<OpenAiChat, BoxError> {
    Ok(OpenAiChat::builder()
        .base_url(format!("{}/v1", server.url()))
        .api_key("sk-scorecard")
        .build()?)
}

fn request() -> ChatRequest {
    ChatRequest::new("mock-model").with_user("tell me something")
}

/// Sends one request and reads it to the end, within `cap`.
async fn call<S, B, E>(service: S, cap: Duration) -> (Got, Option<Duration>, Duration)
where
    S: tower::Service<ChatRequest, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: futures::Stream<Item = Result<ChatChunk, E>> + Unpin,
    E: Into<BoxError>,
{
    let started = Instant::now();
    let mut ttfc = None;
    let run = async {
        let response = service.oneshot(request()).await.map_err(Into::into)?;
        let mut body = response.into_body();
        let mut text = String::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Into::into)?;
            if ttfc.is_none() && !chunk.text.is_empty() {
                ttfc = Some(started.elapsed());
            }
            text.push_str(&chunk.text);
        }
        Ok::<_, BoxError>(text)
    };
    let got = match tokio::time::timeout(cap, run).await {
        Err(_) => Got::Hung,
        Ok(Ok(text)) if text == expected_text(TOKENS) => Got::Full,
        Ok(Ok(text)) if expected_text(TOKENS).starts_with(&text) => Got::TruncatedAsSuccess,
        Ok(Ok(_)) => Got::WrongText,
        Ok(Err(error)) => Got::Error(classify(&*error).as_str().to_owned()),
    };
    (got, ttfc, started.elapsed())
}

async fn settle() {
    // Lets the servers notice a closed connection before they are read.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn run_scenario(scenario: &Scenario, scale: &Scale) -> Result<[Row; 2], BoxError> {
    let first_content = scale.d(10_000);
    let cap = scale.d(30_000);

    // The bare client.
    let primary = MockServer::start((scenario.primary)(scale)).await?;
    if scenario.name == "quota headers say exhausted" {
        // The one request of the minute is spent already.
        let _ = call(client(&primary)?, cap).await;
    }
    let before = primary.served();
    let (got, ttfc, total) = call(client(&primary)?, cap).await;
    settle().await;
    let bare = Row {
        scenario: scenario.name,
        stack: "bare client",
        disconnected: disconnected(primary.disconnects() > 0),
        got,
        ttfc,
        total,
        upstream: primary.served() - before,
    };

    // The default stack: a faulty primary, a healthy fallback.
    let primary = MockServer::start((scenario.primary)(scale)).await?;
    let fallback = MockServer::start(plan(Plan::new())).await?;
    let router = Backends::new()
        .backend(
            Backend::new("primary", client(&primary)?)
                .first_content_timeout(first_content)
                .idle_timeout(scale.d(5_000)),
        )
        .backend(Backend::new("fallback", client(&fallback)?).first_content_timeout(first_content))
        .build()?;
    if scenario.name == "quota headers say exhausted" {
        // The first answer's headers say the minute's one request is spent.
        let _ = call(router.clone(), cap).await;
    }
    let before = primary.served() + fallback.served();
    let (got, ttfc, total) = call(router, cap).await;
    settle().await;
    let stack = Row {
        scenario: scenario.name,
        stack: "Backends",
        disconnected: disconnected(primary.disconnects() > 0),
        got,
        ttfc,
        total,
        upstream: primary.served() + fallback.served() - before,
    };
    Ok([bare, stack])
}

fn disconnected(closed: bool) -> &'static str {
    if closed {
        "yes"
    } else {
        "no (nothing to abandon)"
    }
}

/// A fault after the first content, met with continuation off and on.
struct MidStream {
    name: &'static str,
    primary: Plan,
    /// Whether the fallback continues from the prefill (else it answers
    /// from the start, as a server that ignores it).
    honours: bool,
}

fn mid_stream() -> Vec<MidStream> {
    vec![
        MidStream {
            name: "cut mid-stream",
            primary: Plan::new().disconnect_after(3),
            honours: true,
        },
        MidStream {
            name: "stall mid-stream",
            primary: Plan::new().stall_after(3),
            honours: true,
        },
        MidStream {
            name: "error event after content",
            primary: Plan::new().error_after(3),
            honours: true,
        },
        MidStream {
            name: "cut mid-stream, fallback ignores the prefill",
            primary: Plan::new().disconnect_after(3),
            honours: false,
        },
    ]
}

/// One continuation row: what the caller got, its total time, upstream calls.
struct ContinuationRow {
    fault: &'static str,
    on: bool,
    got: Got,
    total: Duration,
    upstream: u64,
}

async fn continuation(
    fault: &MidStream,
    on: bool,
    scale: &Scale,
) -> Result<ContinuationRow, BoxError> {
    let primary = MockServer::start(plan(fault.primary.clone())).await?;
    let healthy = if fault.honours {
        Plan::new().honouring_prefill()
    } else {
        Plan::new()
    };
    let fallback = MockServer::start(plan(healthy)).await?;
    let first_content = scale.d(10_000);
    let router = Backends::new()
        .backend(
            Backend::new("primary", client(&primary)?)
                .first_content_timeout(first_content)
                .idle_timeout(scale.d(5_000)),
        )
        .backend(
            Backend::new("fallback", client(&fallback)?)
                .first_content_timeout(first_content)
                .continuation(Prefill::AssistantPrefix),
        )
        .failover(move |f| {
            if on {
                f.continuation(Continuation::new())
            } else {
                f
            }
        })
        .build()?;
    let (got, _, total) = call(router, scale.d(30_000)).await;
    settle().await;
    Ok(ContinuationRow {
        fault: fault.name,
        on,
        got,
        total,
        upstream: primary.served() + fallback.served(),
    })
}

fn continuation_table(rows: &[ContinuationRow]) -> String {
    let mut out = String::from(
        "| fault after 3 of 8 tokens | continuation | what the caller got | total time | upstream calls |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ms | {} |",
            row.fault,
            if row.on { "on" } else { "off" },
            row.got,
            row.total.as_millis(),
            row.upstream,
        );
    }
    out
}

/// The p99 of `samples` (nearest rank).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1) - 1;
    samples[rank]
}

/// Time to first content over `n` sequential requests through `service`.
async fn ttfcs<S, B, E>(service: S, n: usize, cap: Duration) -> Vec<Duration>
where
    S: tower::Service<ChatRequest, Response = http::Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: futures::Stream<Item = Result<ChatChunk, E>> + Unpin,
    E: Into<BoxError>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, ttfc, total) = call(service.clone(), cap).await;
        out.push(ttfc.unwrap_or(total));
    }
    out
}

/// A primary whose every tenth request takes 5 s to first content.
fn heavy_tailed(scale: &Scale) -> MockConfig {
    let slow = scale.d(5_000);
    let fast = scale.d(200);
    plan(Plan::new().with_first_content_delay(fast)).with_script(move |info| {
        let delay = if info.index % 10 == 9 { slow } else { fast };
        Plan::new()
            .with_first_content_delay(delay)
            .with_output_tokens(TOKENS)
    })
}

async fn hedging(scale: &Scale, n: usize) -> Result<String, BoxError> {
    let cap = scale.d(30_000);
    let delay = scale.d(500);
    let healthy_plan = || plan(Plan::new().with_first_content_delay(scale.d(200)));
    let fallback_alone = MockServer::start(healthy_plan()).await?;
    let healthy_p99 = p99(&mut ttfcs(client(&fallback_alone)?, n, cap).await);

    let mut out = String::new();
    for hedged in [false, true] {
        let primary = MockServer::start(heavy_tailed(scale)).await?;
        let fallback = MockServer::start(healthy_plan()).await?;
        let router = Backends::new()
            .backend(Backend::new("primary", client(&primary)?))
            .backend(Backend::new("fallback", client(&fallback)?))
            .failover(move |f| {
                if hedged {
                    f.hedge(Hedge::after(delay).budget(0.12))
                } else {
                    f
                }
            })
            .build()?;
        let p = p99(&mut ttfcs(router, n, cap).await);
        let upstream = primary.served() + fallback.served();
        let extra = (upstream as f64 - n as f64) / n as f64 * 100.0;
        let _ = writeln!(
            out,
            "| {} | {} ms | {} | {:.0} % |",
            if hedged {
                "hedged after 500 ms (budget 12 %)"
            } else {
                "not hedged"
            },
            p.as_millis(),
            upstream,
            extra,
        );
    }
    let bound = (delay + healthy_p99).mul_f64(1.1);
    Ok(format!(
        "| primary | caller p99 time to first content | upstream requests | extra |\n|---|---|---|---|\n{out}\n\
         {n} sequential requests; every tenth takes 5 s to first content on the primary, the others 200 ms. \
         The healthy fallback alone: p99 {} ms, so the bound for the hedged p99 (delay + that p99 + 10 %) is {} ms.\n",
        healthy_p99.as_millis(),
        bound.as_millis(),
    ))
}

async fn spread(n: usize) -> Result<String, BoxError> {
    let cap = Duration::from_secs(30);
    let mut out =
        String::from("| backends | strategy | share of requests (a / b / c) |\n|---|---|---|\n");
    for (label, slow_c) in [("3 equal", false), ("c 3× slower to first content", true)] {
        for strategy in [
            Strategy::RoundRobin,
            Strategy::PowerOfTwoChoices,
            Strategy::LeastTimeToFirstContent,
        ] {
            if !slow_c && strategy == Strategy::LeastTimeToFirstContent {
                continue;
            }
            if slow_c && strategy == Strategy::RoundRobin {
                continue;
            }
            let servers = [
                MockServer::start(plan(
                    Plan::new().with_first_content_delay(Duration::from_millis(20)),
                ))
                .await?,
                MockServer::start(plan(
                    Plan::new().with_first_content_delay(Duration::from_millis(20)),
                ))
                .await?,
                MockServer::start(plan(Plan::new().with_first_content_delay(
                    Duration::from_millis(if slow_c { 60 } else { 20 }),
                )))
                .await?,
            ];
            let strategy_name = strategy.as_str();
            let router = Backends::new()
                .backend(Backend::new("a", client(&servers[0])?))
                .backend(Backend::new("b", client(&servers[1])?))
                .backend(Backend::new("c", client(&servers[2])?))
                .failover(move |f| f.strategy(strategy))
                .build()?;
            // Eight callers at once, as P2C's in-flight term expects.
            futures::stream::iter(0..n)
                .for_each_concurrent(8, |_| {
                    let router = router.clone();
                    async move {
                        let _ = call(router, cap).await;
                    }
                })
                .await;
            let shares: Vec<String> = servers
                .iter()
                .map(|s| format!("{:.0} %", s.served() as f64 * 100.0 / n as f64))
                .collect();
            let _ = writeln!(
                out,
                "| {label} | {strategy_name} | {} |",
                shares.join(" / ")
            );
        }
    }
    Ok(out)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | stack | what the caller got | caller time to first content | total time | upstream calls | abandoned attempt disconnected |\n|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.stack,
            row.got,
            row.ttfc.map_or_else(|| "-".to_owned(), ms),
            ms(row.total),
            row.upstream,
            row.disconnected,
        );
    }
    out
}

/// The (scenario, stack or continuation, what the caller got) triples of
/// the fault and continuation tables (7 and 5 columns).
fn outcomes(markdown: &str) -> Vec<(String, String, String)> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| ") && matches!(line.matches('|').count(), 6 | 8))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .filter(|(.., got)| got != "what the caller got")
        .collect()
}

async fn main_async(
    quick: bool,
    write: Option<String>,
    check: Option<String>,
) -> Result<(), String> {
    let scale = Scale(if quick { 10 } else { 1 });
    let mut rows = Vec::new();
    for scenario in scenarios() {
        eprintln!("scenario: {}", scenario.name);
        rows.extend(
            run_scenario(&scenario, &scale)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut continued = Vec::new();
    for fault in mid_stream() {
        for on in [false, true] {
            eprintln!(
                "continuation {}: {}",
                if on { "on" } else { "off" },
                fault.name
            );
            continued.push(
                continuation(&fault, on, &scale)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let faults = table(&rows);
    let continuations = continuation_table(&continued);
    print!("{faults}\n{continuations}");
    if let Some(path) = check {
        let committed = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let (want, got) = (
            outcomes(&committed),
            outcomes(&format!("{faults}\n{continuations}")),
        );
        let diffs: Vec<String> = want
            .iter()
            .filter(|w| !got.contains(w))
            .map(|(s, stack, g)| {
                let now = got
                    .iter()
                    .find(|(s2, st2, _)| s2 == s && st2 == stack)
                    .map_or("missing", |(_, _, g2)| g2.as_str());
                format!("{s} / {stack}: {g} in {path}, {now} now")
            })
            .collect();
        if want.is_empty() || !diffs.is_empty() {
            return Err(format!(
                "scorecard outcomes changed:\n  {}",
                diffs.join("\n  ")
            ));
        }
        eprintln!("scorecard: {} outcomes as committed", want.len());
    }
    if let Some(path) = write {
        let n = if quick { 50 } else { 200 };
        let hedge = hedging(&scale, n).await.map_err(|e| e.to_string())?;
        let n_spread = if quick { 60 } else { 300 };
        let spread = spread(n_spread).await.map_err(|e| e.to_string())?;
        let doc = format!(
            "# Fault scorecard\n\n\
             Written by `cargo xtask scorecard` (`cargo run --release --example scorecard -- --write SCORECARD.md`); \
             CI runs `--quick --check` and fails if an outcome changes. Over loopback HTTP against the mock \
             provider, OpenAI streaming format, {TOKENS}-token answers. `Backends`: the faulty primary and a \
             healthy fallback, each with a 10 s first-content deadline, the primary with a 5 s idle deadline; \
             every other setting is the default. The bare client is the same `OpenAiChat` alone.\n\n\
             ## Faults\n\n{faults}\n\
             A fault after the first content (cut, stall) reaches the caller as an error item: the stream is \
             committed. With continuation on, the router continues it on the fallback:\n\n\
             ## Continuation\n\n{continuations}\n\
             The same stack, the fallback declared able to continue (`Prefill::AssistantPrefix`) and \
             honouring the prefill unless the row says it ignores it; `on` is \
             `.failover(|f| f.continuation(Continuation::new()))`. \"full answer\" is the exact text with \
             no part twice; the upstream calls count both backends.\n\n\
             ## Hedging a heavy-tailed primary\n\n{hedge}\n\
             ## Load spread\n\n{spread}\n\
             {n_spread} requests from eight concurrent callers; the shares are of requests served \
             (a backend's first requests explore it while it has no sample).\n"
        );
        std::fs::write(&path, doc).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut quick, mut write, mut check) = (false, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--write" => write = args.next(),
            "--check" => check = args.next(),
            other => {
                eprintln!("unknown argument {other}\nusage: scorecard [--quick] [--write PATH] [--check PATH]");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scorecard: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(quick, write, check)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scorecard: {error}");
            ExitCode::FAILURE
        }
    }
}
