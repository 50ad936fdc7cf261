//! Runs the streamgate benchmarks and writes `BENCHMARKS.md`.
//!
//! ```text
//! bench-report [--quick] [--no-run] [--out FILE] [-- CRITERION ARGS]
//! ```
//!
//! - `--quick`: short criterion settings (1 s warm-up, 2 s measurement):
//!   enough for ratios, noisier medians.
//! - `--no-run`: write the report from the results of an earlier run.
//! - `--out FILE`: where to write (default: `BENCHMARKS.md` at the root).
//!
//! Results are read from criterion's `estimates.json` files under the target
//! directory (`CARGO_TARGET_DIR`, else `target/` at the root).

use std::{
    collections::BTreeMap,
    env, fmt, fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::SystemTime,
};

use serde_json::Value;
use streamgate_benches::paired::{self, PairedOverhead};

const USAGE: &str = "usage: bench-report [--quick] [--no-run] [--out FILE] [-- CRITERION ARGS]";
const QUICK: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "2"];
/// Text chunks per answer in the short and long in-memory streams (each has
/// a role and a usage chunk on top); must match `benches/overhead.rs`.
const SHORT_TOKENS: f64 = 4.0;
const LONG_TOKENS: f64 = 1_000.0;
/// Tokens per round in the end-to-end benchmark (8 streams of 200).
const E2E_SHAPE: &str = "8 concurrent streams of 200 tokens";
const ALLOCATIONS_FILE: &str = "streamgate-allocations.tsv";
/// Where the end-to-end benchmark writes its paired overheads (it is told
/// through [`paired::OUT_VAR`]).
const PAIRED_FILE: &str = "streamgate-paired.tsv";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench-report: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    quick: bool,
    no_run: bool,
    out: PathBuf,
    criterion: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        no_run: false,
        out: root().join("BENCHMARKS.md"),
        criterion: Vec::new(),
    };
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-run" => options.no_run = true,
            "--out" => options.out = args.next().ok_or(USAGE)?.into(),
            "--" => options.criterion.extend(args.by_ref()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The workspace root (this package lives in `benches/` under it).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

fn run() -> Result<(), String> {
    let options = parse_args()?;
    let mut criterion_args: Vec<String> = Vec::new();
    if options.quick {
        criterion_args.extend(QUICK.iter().map(|s| s.to_string()));
    }
    criterion_args.extend(options.criterion.iter().cloned());
    let criterion_dir = target_dir().join("criterion");
    let mut commands = Vec::new();

    if !options.no_run {
        // A run that skips the paired group must not report an older one's.
        let paired_file = criterion_dir.join(PAIRED_FILE);
        if paired_file.exists() {
            fs::remove_file(&paired_file)
                .map_err(|e| format!("cannot remove {}: {e}", paired_file.display()))?;
        }
        for bench in ["overhead", "end_to_end"] {
            let mut args = vec!["bench", "-p", "streamgate-benches", "--bench", bench];
            if !criterion_args.is_empty() {
                args.push("--");
                args.extend(criterion_args.iter().map(String::as_str));
            }
            commands.push(cargo_with(&args, false, Some((paired::OUT_VAR, &paired_file)))?.0);
        }
        let (shown, out) = cargo(
            &[
                "bench",
                "-p",
                "streamgate-benches",
                "--bench",
                "allocations",
            ],
            true,
        )?;
        commands.push(shown);
        fs::create_dir_all(&criterion_dir).map_err(|e| e.to_string())?;
        fs::write(criterion_dir.join(ALLOCATIONS_FILE), out).map_err(|e| e.to_string())?;
    } else {
        for bench in ["overhead", "end_to_end"] {
            let mut shown = format!("cargo bench -p streamgate-benches --bench {bench}");
            if !criterion_args.is_empty() {
                shown.push_str(" -- ");
                shown.push_str(&criterion_args.join(" "));
            }
            commands.push(shown);
        }
        commands.push("cargo bench -p streamgate-benches --bench allocations".into());
    }

    let results = Results::load(&criterion_dir)?;
    let report = render(&results, &commands, options.quick);
    fs::write(&options.out, report)
        .map_err(|e| format!("cannot write {}: {e}", options.out.display()))?;
    eprintln!("bench-report: wrote {}", options.out.display());
    Ok(())
}

/// Runs cargo at the root; returns the command as shown and, when
/// `capture`, its standard output.
fn cargo(args: &[&str], capture: bool) -> Result<(String, String), String> {
    cargo_with(args, capture, None)
}

/// [`cargo`], with `var` set in its environment.
fn cargo_with(
    args: &[&str],
    capture: bool,
    var: Option<(&str, &Path)>,
) -> Result<(String, String), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown = format!("cargo {}", args.join(" "));
    eprintln!("\n==> {shown}");
    let mut command = Command::new(cargo);
    command.args(args).current_dir(root());
    if let Some((name, value)) = var {
        command.env(name, value);
    }
    if capture {
        command.stdout(Stdio::piped());
    }
    let output = command
        .spawn()
        .and_then(|child| child.wait_with_output())
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !output.status.success() {
        return Err(format!("`{shown}` failed: {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if capture {
        print!("{stdout}");
    }
    Ok((shown, stdout))
}

/// A criterion median with the 95 % confidence interval around it, in ns.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    median: f64,
    low: f64,
    high: f64,
}

struct Allocations {
    per_request: f64,
    per_chunk: f64,
}

struct Results {
    estimates: BTreeMap<String, Estimate>,
    allocations: BTreeMap<String, Allocations>,
    /// End-to-end client CPU overheads from interleaved pairs, by layer.
    paired: BTreeMap<String, PairedOverhead>,
}

impl Results {
    fn load(dir: &Path) -> Result<Self, String> {
        let mut estimates = BTreeMap::new();
        collect(dir, dir, &mut estimates);
        if estimates.is_empty() {
            return Err(format!("no criterion results under {}", dir.display()));
        }
        let mut allocations = BTreeMap::new();
        if let Ok(text) = fs::read_to_string(dir.join(ALLOCATIONS_FILE)) {
            for line in text.lines() {
                let fields: Vec<&str> = line.split('\t').collect();
                if let ["allocations", name, per_request, per_chunk] = fields[..] {
                    if let (Ok(per_request), Ok(per_chunk)) =
                        (per_request.parse(), per_chunk.parse())
                    {
                        allocations.insert(
                            name.to_string(),
                            Allocations {
                                per_request,
                                per_chunk,
                            },
                        );
                    }
                }
            }
        }
        let paired = fs::read_to_string(dir.join(PAIRED_FILE))
            .map(|text| text.lines().filter_map(PairedOverhead::parse).collect())
            .unwrap_or_default();
        Ok(Self {
            estimates,
            allocations,
            paired,
        })
    }

    fn get(&self, id: &str) -> Option<Estimate> {
        self.estimates.get(id).copied()
    }

    fn median(&self, id: &str) -> Option<f64> {
        self.get(id).map(|e| e.median)
    }
}

/// Finds every `<id>/new/estimates.json` below `dir`, keyed by `<id>`.
fn collect(base: &Path, dir: &Path, out: &mut BTreeMap<String, Estimate>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let estimates = path.join("estimates.json");
            if let Some(estimate) = read_estimate(&estimates) {
                if let Some(id) = dir.strip_prefix(base).ok().and_then(|p| p.to_str()) {
                    out.insert(id.replace('\\', "/"), estimate);
                }
            }
        } else if path
            .file_name()
            .is_some_and(|n| n != "report" && n != "base")
        {
            collect(base, &path, out);
        }
    }
}

fn read_estimate(path: &Path) -> Option<Estimate> {
    let json: Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
    let median = json.get("median")?;
    let interval = median.get("confidence_interval")?;
    Some(Estimate {
        median: median.get("point_estimate")?.as_f64()?,
        low: interval.get("lower_bound")?.as_f64()?,
        high: interval.get("upper_bound")?.as_f64()?,
    })
}

/// A duration in ns, shown in a readable unit.
struct Time(f64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns.abs() >= 1e9 {
            write!(f, "{:.2} s", ns / 1e9)
        } else if ns.abs() >= 1e6 {
            write!(f, "{:.2} ms", ns / 1e6)
        } else if ns.abs() >= 1e4 {
            write!(f, "{:.1} µs", ns / 1e3)
        } else if ns.abs() >= 1e3 {
            write!(f, "{:.2} µs", ns / 1e3)
        } else {
            write!(f, "{ns:.1} ns")
        }
    }
}

fn range(e: Estimate) -> String {
    format!("{} – {}", Time(e.low), Time(e.high))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

const PER_REQUEST: [(&str, &str); 15] = [
    ("bare", "bare in-memory client"),
    ("timeout", "first-content + idle timeout"),
    ("breaker_closed", "circuit breaker, closed"),
    ("quota", "quota gate + learner (nothing learned)"),
    ("pacing", "pacing (limits far away)"),
    ("tpm_budget", "TPM budget gate"),
    (
        "metrics_tracker",
        "metrics → in-memory `PerformanceTracker`",
    ),
    ("metrics_noop", "metrics → `NoopSink`"),
    ("full_stack", "full per-backend stack"),
    (
        "backend_build",
        "the same from `Backend::build` (fused, boxed)",
    ),
    ("backend_build_unpaced", "`Backend::build` without pacing"),
    ("failover_full_stack", "`Failover` over two full stacks"),
    ("failover_round_robin", "the same, `Strategy::RoundRobin`"),
    (
        "failover_least_time_to_first_content",
        "the same, `Strategy::LeastTimeToFirstContent`",
    ),
    (
        "failover_power_of_two_choices",
        "the same, `Strategy::PowerOfTwoChoices`",
    ),
];

/// (ours, theirs, what the comparison covers)
const PEERS: [(&str, &str, &str); 4] = [
    (
        "timeout",
        "peer_tower_timeout",
        "`tower::timeout::Timeout` (30 s); it covers the response future only, ours also the first content and idle gaps of the body",
    ),
    (
        "breaker_closed",
        "peer_tower_resilience_breaker",
        "tower-resilience 0.13 circuit breaker, closed (default config); judges the response future only",
    ),
    (
        "breaker_closed",
        "peer_failsafe_breaker",
        "failsafe 1.3 breaker around the response future (default config)",
    ),
    (
        "pacing",
        "peer_governor_check",
        "`governor` 0.10 direct limiters: one request cell + the estimate in token cells, no waiting",
    ),
];

fn render(r: &Results, commands: &[String], quick: bool) -> String {
    let mut md = String::new();
    let mut line = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    let bare = r.median("per_request/bare");
    let overhead = |id: &str| -> Option<f64> { Some(r.median(id)? - bare?) };

    line("# Benchmarks");
    line("");
    line("What each streamgate layer costs on top of a streaming client, next to peer crates doing the");
    line("same work, per chunk, when rejecting, under contention, and end to end over loopback HTTP.");
    line("Every number below comes from one run of `cargo xtask bench`; ratios are taken within that run,");
    line("which is what keeps them meaningful on a busy machine where absolute times drift.");
    line("");
    line("## Machine and run");
    line("");
    line(&format!(
        "- CPU: {} ({} cores available)",
        cpu_model(),
        cores()
    ));
    line(&format!(
        "- OS: Linux {}",
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
    ));
    line(&format!("- Toolchain: {}", rustc_version()));
    line(&format!("- Date (UTC): {}", today()));
    line(&format!(
        "- Settings: {}",
        if quick {
            "`--quick` (criterion warm-up 1 s, measurement 2 s per benchmark)"
        } else {
            "criterion defaults (warm-up 3 s, measurement 5 s per benchmark; 10 samples end to end)"
        }
    ));
    // The load the run ended under, which moves absolute times (ratios
    // within the run are what stay comparable).
    let load = read_trimmed("/proc/loadavg")
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    line(&format!(
        "- Load average (1 min) when the benchmarks ended: {load}; absolute times move with the \
         machine's load, so compare ratios."
    ));
    line("");
    line("Reproduce with `cargo xtask bench` (add `--quick` for short settings). It ran:");
    line("");
    line("```text");
    for command in commands {
        line(command);
    }
    line("```");
    line("");
    line("Medians are criterion's; the range is the 95 % confidence interval of the median.");
    line("");

    // Targets first: the summary a reader wants.
    line("## Where we stand against the targets");
    line("");
    line("| target | before: one layer per gate | measured | |");
    line("|---|---|---|---|");
    let full = overhead("per_request/full_stack");
    let built = overhead("per_request/backend_build");
    line(&format!(
        "| full per-backend stack ≤ 1 µs per request above bare | 2.16 µs | {} (`Backend::build`: {}) | {} |",
        full.map_or("—".into(), |v| Time(v).to_string()),
        built.map_or("—".into(), |v| Time(v).to_string()),
        verdict(full.zip(built).map(|(f, b)| f.max(b) <= 1_000.0))
    ));
    let marginal = marginal_chunk(r);
    line(&format!(
        "| ≤ 25 ns per chunk above bare, ready stream | 59.7 ns | {} | {} |",
        marginal.map_or("—".into(), |v| Time(v).to_string()),
        verdict(marginal.map(|v| v <= 25.0))
    ));
    let pending = marginal_pending_of(r, "full_stack");
    line(&format!(
        "| ≤ 25 ns per chunk above bare, stream pending before every chunk | ≈ 162 ns | {} | {} |",
        pending.map_or("—".into(), |v| Time(v).to_string()),
        verdict(pending.map(|v| v <= 25.0))
    ));
    let request_allocs = |id: &str| r.allocations.get(id).map(|a| a.per_request);
    let (stack_allocs, built_allocs) = (
        request_allocs("full_stack"),
        request_allocs("backend_build"),
    );
    // A socket waits, so the pending stream counts too: what a layer
    // allocates only at a wait is still paid over a network.
    let (stack_pending, built_pending) = (
        request_allocs("full_stack_pending"),
        request_allocs("backend_build_pending"),
    );
    let allocs = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
    line(&format!(
        "| ≤ 1 allocation per request | — | {} (`Backend::build`: {}); pending stream {} ({}) | {} |",
        allocs(stack_allocs),
        allocs(built_allocs),
        allocs(stack_pending),
        allocs(built_pending),
        verdict(
            [stack_allocs, built_allocs, stack_pending, built_pending]
                .into_iter()
                .try_fold(0.0_f64, |worst, v| v.map(|v| worst.max(v)))
                .map(|worst| worst <= 1.0005)
        )
    ));
    let chunk_allocs = r.allocations.get("full_stack").map(|a| a.per_chunk);
    line(&format!(
        "| 0 allocations per chunk (full stack) | 0.000 | {} | {} |",
        chunk_allocs.map_or("—".into(), |v| format!("{v:.3}")),
        verdict(chunk_allocs.map(|v| v < 0.0005))
    ));
    let ours_breaker = overhead("per_request/breaker_closed");
    let theirs_breaker = overhead("per_request/peer_tower_resilience_breaker");
    let breaker_ratio = ours_breaker
        .zip(theirs_breaker)
        .filter(|(_, t)| *t > 0.0)
        .map(|(o, t)| o / t);
    line(&format!(
        "| closed breaker ≤ ½ the per-call cost of tower-resilience's | 145.2 ns vs 382.6 ns (0.380×) | {} | {} |",
        match (ours_breaker, theirs_breaker) {
            (Some(o), Some(t)) if t > 0.0 => format!("{} vs {} ({:.3}×)", Time(o), Time(t), o / t),
            _ => "—".into(),
        },
        verdict(breaker_ratio.map(|v| v <= 0.5))
    ));
    line(&e2e_target_row(r));
    for (id, what, before) in [
        ("rejection/breaker_open", "open breaker", "156.0 ns"),
        ("rejection/quota_exhausted", "exhausted quota", "183.1 ns"),
    ] {
        let v = r.median(id);
        line(&format!(
            "| rejection ≤ 100 ns ({what}) | {before} | {} | {} |",
            v.map_or("—".into(), |v| Time(v).to_string()),
            verdict(v.map(|v| v <= 100.0))
        ));
    }
    line("");
    line("Per-call costs are medians minus the bare client's median in the same run. A cost below the");
    line("noise of the bare client (a few ns) can come out slightly negative. \"Before\" is the last run");
    line("of version 1's shape, where metrics, TPM, quota and the breaker each wrapped the future and");
    line("the body; the machine is shared, so figures between runs move by several percent.");
    // The before run's bare client and full stack, to compare like with like
    // when the machine was busier or quieter in this run.
    const BEFORE_BARE_REQUEST: f64 = 62.6;
    const BEFORE_FULL_REQUEST: f64 = 2_220.0;
    const BEFORE_BARE_CHUNK: f64 = 2.3;
    const BEFORE_FULL_CHUNK: f64 = 63.8;
    if let (Some(bare), Some(full)) = (
        r.median("per_request/bare"),
        r.median("per_request/full_stack"),
    ) {
        let per_chunk = |id: &str| {
            r.median(&format!("per_chunk/{id}_1000"))
                .map(|t| t / (LONG_TOKENS + 2.0))
        };
        line("");
        line(&format!(
            "In this run the bare client took {} per request (before: {}). As multiples of the bare \
             client, which the machine's load affects alike, the full stack went from {:.1}× to {:.1}× \
             per request{}.",
            Time(bare),
            Time(BEFORE_BARE_REQUEST),
            BEFORE_FULL_REQUEST / BEFORE_BARE_REQUEST,
            full / bare,
            match (per_chunk("bare"), per_chunk("full_stack")) {
                (Some(b), Some(f)) if b > 0.0 => format!(
                    " and from {:.1}× to {:.1}× per chunk of the 1,000-chunk stream",
                    BEFORE_FULL_CHUNK / BEFORE_BARE_CHUNK,
                    f / b
                ),
                _ => String::new(),
            }
        ));
    }
    line("");

    line("## Per request");
    line("");
    line("One request: ready, call, resolve the response, drain the body. The in-memory client answers");
    line("at once with a role chunk, 4 text chunks and a usage chunk, and allocates nothing.");
    line("");
    line("| service | median | range | above bare | ratio to bare | allocations / request |");
    line("|---|---:|---|---:|---:|---:|");
    for (id, name) in PER_REQUEST {
        let key = format!("per_request/{id}");
        let Some(e) = r.get(&key) else {
            line(&format!("| {name} | not measured | | | | |"));
            continue;
        };
        let allocs = r
            .allocations
            .get(id)
            .map_or("—".into(), |a| format!("{:.2}", a.per_request));
        line(&format!(
            "| {name} | {} | {} | {} | {} | {allocs} |",
            Time(e.median),
            range(e),
            overhead(&key).map_or("—".into(), |v| Time(v).to_string()),
            bare.map_or("—".into(), |b| ratio(e.median, b)),
        ));
    }
    line("");
    line("The full stack is what `Backend` stacks, unboxed, outermost first: one guard layer for metrics");
    line(
        "(with the in-memory tracker), TPM budget, quota, and pacing in front of the breaker; the",
    );
    line("timeout; everything reports to the tracker. `Failover` boxes each backend's stack (one");
    line("allocation per request, shared by the future and the body) and serves from the first.");
    line("");

    line("## Peers on the same work");
    line("");
    line("| ours | theirs | ours above bare | theirs above bare | ours / theirs (cost) | ours / theirs (total) |");
    line("|---|---|---:|---:|---:|---:|");
    for (ours, theirs, what) in PEERS {
        let o = overhead(&format!("per_request/{ours}"));
        let t = overhead(&format!("per_request/{theirs}"));
        let (om, tm) = (
            r.median(&format!("per_request/{ours}")),
            r.median(&format!("per_request/{theirs}")),
        );
        line(&format!(
            "| `{ours}` | {what} | {} | {} | {} | {} |",
            o.map_or("—".into(), |v| Time(v).to_string()),
            t.map_or("—".into(), |v| Time(v).to_string()),
            o.zip(t).map_or("—".into(), |(o, t)| ratio(o, t)),
            om.zip(tm).map_or("—".into(), |(o, t)| ratio(o, t)),
        ));
    }
    line("");
    line("Ours also do more than the peers: the breaker judges the stream's end rather than the headers,");
    line("the timeout watches the body, and pacing looks up learned per-model limits.");
    line("Pacing and `governor` are measured on a request estimated at 10 tokens rather than 100: at");
    line("their highest limit (`u32::MAX` tokens a minute) a limiter alone, serving millions of requests");
    line("a second, would otherwise empty its burst within the run; taking 10 cells costs what 100 do.");
    line("");

    line("## Per chunk");
    line("");
    line("A stream of 1,000 text chunks (plus a role and a usage chunk).");
    line("");
    line("| service | median per request | range | per chunk | allocations / chunk |");
    line("|---|---:|---|---:|---:|");
    for (id, name, alloc_id) in [
        ("bare_1000", "bare", "bare"),
        ("full_stack_1000", "full stack", "full_stack"),
    ] {
        let Some(e) = r.get(&format!("per_chunk/{id}")) else {
            line(&format!("| {name} | not measured | | | |"));
            continue;
        };
        let allocs = r
            .allocations
            .get(alloc_id)
            .map_or("—".into(), |a| format!("{:.3}", a.per_chunk));
        line(&format!(
            "| {name} | {} | {} | {} | {allocs} |",
            Time(e.median),
            range(e),
            Time(e.median / (LONG_TOKENS + 2.0)),
        ));
    }
    line("");
    if let Some(m) = marginal {
        line(&format!(
            "Cost per chunk above bare, with the per-request cost taken out (the long stream's extra time over \
             the short one, stack minus bare, over the 996 extra chunks): **{}**.",
            Time(m)
        ));
        line("");
    }

    line("Where it goes: each layer alone, cost per chunk above bare with its per-request cost taken out");
    line("the same way.");
    line("");
    line("| layer | per chunk above bare |");
    line("|---|---:|");
    for (id, name) in PER_REQUEST {
        if matches!(id, "bare" | "metrics_noop" | "backend_build_unpaced")
            || id.starts_with("failover_")
        {
            continue;
        }
        let cost = marginal_chunk_of(r, id);
        line(&format!(
            "| {name} | {} |",
            cost.map_or("not measured".into(), |v| Time(v).to_string())
        ));
    }
    line("");

    line("### The stream pending before every chunk");
    line("");
    line(
        "The same 1,000 chunks, each after one `Pending` (the stream wakes its task at once), as a",
    );
    line("socket delivers one frame per read: what the layers do on a wait (the timeout's idle");
    line(
        "deadline, which reads the clock once per wait after content) is paid here and not above.",
    );
    line("Per chunk above bare, with the per-request cost taken out the same way (the 4-chunk");
    line("pending stream is the short one).");
    line("");
    line("| service | median, 1,000 chunks | per chunk above bare |");
    line("|---|---:|---:|");
    for (id, name) in [
        ("bare", "bare"),
        ("timeout", "first-content + idle timeout"),
        (
            "metrics_tracker",
            "metrics → in-memory `PerformanceTracker`",
        ),
        ("full_stack", "full per-backend stack"),
        ("backend_build", "`Backend::build` (boxed)"),
    ] {
        let Some(e) = r.get(&format!("per_chunk_pending/{id}_1000")) else {
            line(&format!("| {name} | not measured | |"));
            continue;
        };
        let cost = if id == "bare" {
            Some(0.0)
        } else {
            marginal_pending_of(r, id)
        };
        line(&format!(
            "| {name} | {} | {} |",
            Time(e.median),
            cost.map_or("—".into(), |v| Time(v).to_string())
        ));
    }
    line("");

    line("## Rejections");
    line("");
    line("A gate refusing without calling the client; the time includes boxing the `Rejected` error.");
    line("");
    line("| gate | median | range | vs a served request through the full stack |");
    line("|---|---:|---|---:|");
    let served = r.median("per_request/full_stack");
    for (id, name) in [
        ("breaker_open", "open breaker"),
        ("quota_exhausted", "exhausted quota"),
    ] {
        let Some(e) = r.get(&format!("rejection/{id}")) else {
            line(&format!("| {name} | not measured | | |"));
            continue;
        };
        line(&format!(
            "| {name} | {} | {} | {} |",
            Time(e.median),
            range(e),
            served.map_or("—".into(), |s| ratio(e.median, s))
        ));
    }
    line("");

    line("## Contention");
    line("");
    line("The same service (shared breaker, quota tracker, TPM meter, pacer and metrics tracker) driven");
    line("from 1 and 2 threads; one round is one request on each thread. Throughput ratio = 2 × t(1) / t(2):");
    line("2.00× is perfect scaling. The bare client shows what the machine itself allows.");
    line("");
    line("| service | 1 thread, per round | 2 threads, per round | throughput ratio |");
    line("|---|---:|---:|---:|");
    let mut scaling = BTreeMap::new();
    for (id, name) in [("bare", "bare"), ("full_stack", "full stack")] {
        let one = r.get(&format!("contention/{id}/1_threads"));
        let two = r.get(&format!("contention/{id}/2_threads"));
        let scale = one.zip(two).map(|(a, b)| 2.0 * a.median / b.median);
        if let Some(s) = scale {
            scaling.insert(id, s);
        }
        line(&format!(
            "| {name} | {} | {} | {} |",
            one.map_or("—".into(), |e| Time(e.median).to_string()),
            two.map_or("—".into(), |e| Time(e.median).to_string()),
            scale.map_or("—".into(), |s| format!("{s:.2}×")),
        ));
    }
    line("");
    if let (Some(b), Some(f)) = (scaling.get("bare"), scaling.get("full_stack")) {
        line(&format!(
            "The full stack scales to {:.0} % of what the bare client reaches on this machine.",
            100.0 * f / b
        ));
        if *b < 1.5 {
            line("The bare client itself did not scale to two threads in this run: the machine did not");
            line("have two free cores, so these ratios say little about locks; rerun on a quiet machine.");
        }
        line("");
    }

    line("## End to end over loopback HTTP");
    line("");
    line(&format!(
        "The OpenAI Chat client against the mock provider (`streamgate-mock`) on loopback, {E2E_SHAPE} per"
    ));
    line("round, with and without the full stack. The server runs on its own runtime thread; CPU time is");
    line(if streamgate_benches::cpu::precise() {
        "the client runtime's threads only, read from `/proc/self/task/*/schedstat` (nanoseconds)."
    } else {
        "the client runtime's threads only, read from `/proc/self/task/*/stat` (10 ms ticks: noisy)."
    });
    line("The mock sends rate-limit headers, so the quota layer parses them on every response. Wall time");
    line("is bound by the single-threaded mock server, as it would be by a real provider.");
    line("");
    line("| measure | bare, per round | full stack, per round | overhead |");
    line("|---|---:|---:|---:|");
    for (group, name) in [
        ("end_to_end_wall", "wall time"),
        ("end_to_end_cpu", "client CPU time"),
    ] {
        let b = r.get(&format!("{group}/bare"));
        let f = r.get(&format!("{group}/full_stack"));
        line(&format!(
            "| {name} | {} | {} | {} |",
            b.map_or("—".into(), |e| format!(
                "{} ({})",
                Time(e.median),
                range(e)
            )),
            f.map_or("—".into(), |e| format!(
                "{} ({})",
                Time(e.median),
                range(e)
            )),
            e2e_overhead(r, group).map_or("—".into(), |v| format!("{v:+.1} %")),
        ));
    }
    line("");
    if !r.paired.is_empty() {
        line(
            "Those rows come from separate runs of the two services, minutes apart: a drift of the",
        );
        line("machine's speed between them shows as overhead. The rows below run each layer alone, and the");
        line("full stack, in alternation with the bare client (`end_to_end_paired`): one bare round and one");
        line("stacked round per pair, the order swapping every pair, so a drift touches both alike. Each");
        line("overhead is the median of the pairs' client CPU ratios, with a distribution-free 95 % interval");
        line("of that median.");
        line("");
        line("| service | client CPU over bare | 95 % interval | pairs |");
        line("|---|---:|---|---:|");
        for (id, name) in PER_REQUEST {
            let name = match id {
                "bare" => "the bare client against itself (a control: near 0)",
                _ => name,
            };
            if let Some(o) = r.paired.get(id) {
                let p = o.percent;
                line(&format!(
                    "| {name} | {:+.1} % | {:+.1} % to {:+.1} % | {} |",
                    p.median, p.low, p.high, o.pairs
                ));
            }
        }
        line("");
    }
    line("## Allocations");
    line("");
    line("Counted by a global allocator in a binary of its own (`benches/allocations.rs`), averaged over");
    line(
        "1,000 requests after a warm-up; per chunk = (1,000-token answer − 4-token answer) / 996.",
    );
    line("");
    line("| service | per request | per chunk |");
    line("|---|---:|---:|");
    for (id, name) in PER_REQUEST {
        if let Some(a) = r.allocations.get(id) {
            line(&format!(
                "| {name} | {:.2} | {:.3} |",
                a.per_request, a.per_chunk
            ));
        }
        if let Some(a) = r.allocations.get(&format!("{id}_pending")) {
            line(&format!(
                "| {name}, stream pending before every chunk | {:.2} | {:.3} |",
                a.per_request, a.per_chunk
            ));
        }
    }
    line("");
    md
}

/// The same on the stream that answers `Pending` before every chunk:
/// `per_chunk_pending/<id>_1000` against `per_chunk_pending/<id>_4`.
fn marginal_pending_of(r: &Results, id: &str) -> Option<f64> {
    let long = r.median(&format!("per_chunk_pending/{id}_1000"))?;
    let short = r.median(&format!("per_chunk_pending/{id}_4"))?;
    let bare = r.median("per_chunk_pending/bare_1000")? - r.median("per_chunk_pending/bare_4")?;
    Some((long - short - bare) / (LONG_TOKENS - SHORT_TOKENS))
}

/// Per-chunk cost of the full stack above bare, with per-request costs
/// taken out by differencing the long and the short stream.
fn marginal_chunk(r: &Results) -> Option<f64> {
    marginal_chunk_of(r, "full_stack")
}

/// The same for the service measured as `per_request/<id>` and
/// `per_chunk/<id>_1000`.
fn marginal_chunk_of(r: &Results, id: &str) -> Option<f64> {
    let long = r.median(&format!("per_chunk/{id}_1000"))?;
    let short = r.median(&format!("per_request/{id}"))?;
    let bare = r.median("per_chunk/bare_1000")? - r.median("per_request/bare")?;
    Some((long - short - bare) / (LONG_TOKENS - SHORT_TOKENS))
}

/// The end-to-end CPU target's row of the targets table: from the
/// interleaved pairs when they ran, with a verdict only when the whole
/// interval is on one side of the target; else from the two separate groups.
fn e2e_target_row(r: &Results) -> String {
    const TARGET: f64 = 3.0;
    let (measured, verdict) = match r.paired.get("full_stack") {
        Some(o) => {
            let p = o.percent;
            let verdict = if p.high <= TARGET {
                "met"
            } else if p.low > TARGET {
                "**not met**"
            } else {
                "undecided: the interval spans 3 %"
            };
            (
                format!(
                    "{:+.1} % (95 % interval {:+.1} % to {:+.1} %, {} interleaved pairs)",
                    p.median, p.low, p.high, o.pairs
                ),
                verdict,
            )
        }
        None => {
            let cpu = e2e_overhead(r, "end_to_end_cpu");
            (
                cpu.map_or("—".into(), |v| format!("{v:+.1} % (separate runs)")),
                verdict(cpu.map(|v| v <= TARGET)),
            )
        }
    };
    format!("| end-to-end CPU overhead of the full stack ≤ 3 % | +7.5 % | {measured} | {verdict} |")
}

fn e2e_overhead(r: &Results, group: &str) -> Option<f64> {
    let bare = r.median(&format!("{group}/bare"))?;
    let full = r.median(&format!("{group}/full_stack"))?;
    (bare > 0.0).then(|| 100.0 * (full - bare) / bare)
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn rustc_version() -> String {
    Command::new(env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Today's date from the system clock, as `YYYY-MM-DD`.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn times_pick_a_readable_unit() {
        assert_eq!(Time(12.34).to_string(), "12.3 ns");
        assert_eq!(Time(1_500.0).to_string(), "1.50 µs");
        assert_eq!(Time(2_500_000.0).to_string(), "2.50 ms");
    }

    #[test]
    fn the_end_to_end_verdict_needs_the_whole_interval_on_one_side() {
        let with = |median, low, high| {
            let percent = paired::MedianInterval { median, low, high };
            Results {
                estimates: BTreeMap::new(),
                allocations: BTreeMap::new(),
                paired: BTreeMap::from([(
                    "full_stack".to_string(),
                    PairedOverhead {
                        pairs: 400,
                        percent,
                    },
                )]),
            }
        };
        let row = e2e_target_row(&with(10.2, 9.6, 10.7));
        assert!(
            row.contains("+10.2 % (95 % interval +9.6 % to +10.7 %, 400 interleaved pairs)"),
            "{row}"
        );
        assert!(row.ends_with("| **not met** |"), "{row}");
        assert!(e2e_target_row(&with(2.0, 1.5, 2.9)).ends_with("| met |"));
        assert!(
            e2e_target_row(&with(2.8, 2.1, 3.4)).ends_with("| undecided: the interval spans 3 % |")
        );
        let none = Results {
            estimates: BTreeMap::new(),
            allocations: BTreeMap::new(),
            paired: BTreeMap::new(),
        };
        assert!(e2e_target_row(&none).ends_with("| — | not measured |"));
    }

    #[test]
    fn marginal_chunk_cost_takes_out_per_request_cost() {
        let e = |median| Estimate {
            median,
            low: median,
            high: median,
        };
        let estimates = BTreeMap::from([
            ("per_request/bare".to_string(), e(100.0)),
            ("per_request/full_stack".to_string(), e(600.0)),
            ("per_chunk/bare_1000".to_string(), e(100.0 + 996.0 * 5.0)),
            (
                "per_chunk/full_stack_1000".to_string(),
                e(600.0 + 996.0 * 15.0),
            ),
        ]);
        let r = Results {
            estimates,
            allocations: BTreeMap::new(),
            paired: BTreeMap::new(),
        };
        let m = marginal_chunk(&r).unwrap_or(f64::NAN);
        assert!((m - 10.0).abs() < 1e-9, "{m}");
    }
}
