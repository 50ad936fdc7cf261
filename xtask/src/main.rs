//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: everything CI checks (format, lints, tests and doc
//!   tests, benchmark build, fuzz targets compile, provider conformance,
//!   and the dependent-program check of `tests/dependent`).
//! - `cargo xtask conformance [--fixtures DIR]`: the provider parsers against
//!   recorded wire samples.
//! - `cargo xtask demo [ARGS]`: the demo, in release mode.
//! - `cargo xtask bench`: runs the benchmarks and writes `BENCHMARKS.md`.
//! - `cargo xtask scorecard`: runs every fault scenario through the bare
//!   client and the default stack, and writes `SCORECARD.md` (CI runs a
//!   quick mode and fails if an outcome changes).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

const USAGE: &str =
    "usage: cargo xtask <ci | conformance [--fixtures DIR] | demo [ARGS] | bench | scorecard>";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("conformance") => conformance(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("scorecard") => cargo(&[
            "run",
            "--release",
            "--example",
            "scorecard",
            "--",
            "--write",
            "SCORECARD.md",
        ]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this package's directory).
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo(args: &[&str]) -> Result<(), String> {
    run(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}").replace('"', "");
    eprintln!("\n==> {shown}");
    let status = command
        .current_dir(root())
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    run(
        Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    cargo(&["bench", "--workspace", "--no-run"])?;
    // The fuzz targets live outside the workspace and need nightly to run;
    // on stable CI keeps them compiling.
    // Without default features the check skips building libFuzzer itself.
    cargo(&[
        "check",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bins",
        "--no-default-features",
    ])?;
    conformance(&[])?;
    dependent()?;
    // Every fault scenario, at a tenth of the delays: the outcomes must be
    // the ones SCORECARD.md records.
    cargo(&[
        "run",
        "--example",
        "scorecard",
        "--",
        "--quick",
        "--check",
        "SCORECARD.md",
    ])?;
    // `rediss://` without the `tls` feature (the workspace run has it on).
    cargo(&["test", "-p", "streamgate-redis", "--test", "tls"])?;
    // Last, so the test summary closes the output.
    cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"])
}

/// The tests of `tests/dependent`, a program outside the workspace that
/// depends on the facade and on plain `reqwest` and `rustls`: with reqwest's
/// default features and without them. It shares the workspace's target
/// directory, so the dependencies built for the workspace are reused.
fn dependent() -> Result<(), String> {
    let manifest = root().join("tests/dependent/Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let target = target.to_string_lossy().into_owned();
    let test = [
        "test",
        "--manifest-path",
        &manifest,
        "--target-dir",
        &target,
    ];
    cargo(&test)?;
    cargo(&[&test[..], &["--no-default-features"]].concat())
}

fn conformance(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [] => root().join("../shared/fixtures"),
        [flag, dir] if flag == "--fixtures" => PathBuf::from(dir),
        _ => return Err(USAGE.to_string()),
    };
    if !dir.is_dir() {
        if args.is_empty() && env::var_os("CI").is_none() {
            eprintln!(
                "\n==> conformance skipped: no recorded samples at {} (pass --fixtures DIR)",
                dir.display()
            );
            return Ok(());
        }
        return Err(format!("no fixtures directory at {}", dir.display()));
    }
    let dir = dir.to_string_lossy().into_owned();
    cargo(&[
        "run",
        "--quiet",
        "--package",
        "streamgate-providers",
        "--features",
        "conformance",
        "--example",
        "conformance",
        "--",
        &dir,
    ])
}

fn demo(args: &[String]) -> Result<(), String> {
    let mut full = vec!["run", "--release", "--example", "demo", "--"];
    full.extend(args.iter().map(String::as_str));
    cargo(&full)
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut full = vec![
        "run",
        "--release",
        "--package",
        "streamgate-benches",
        "--bin",
        "bench-report",
        "--",
    ];
    full.extend(args.iter().map(String::as_str));
    cargo(&full)
}
