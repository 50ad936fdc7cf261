//! The dashboard page in a real browser: headless Chromium loads it from a
//! server on loopback, runs its JavaScript, and the rendered DOM must show
//! the seeded data. CI installs Chromium (`.ci/run`); set `CHROMIUM` to use
//! another binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, process::Command};

use common::{seeded, TempDir};
use streamgate_store::{
    dashboard::{serve, Dashboard},
    Store,
};

fn chromium() -> String {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&binary).exists(),
        "the browser test needs Chromium at {binary} (apt-get install chromium, or set CHROMIUM)"
    );
    binary
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
fn browse(url: &str, extra: &[String]) -> String {
    let profile = TempDir::new("chromium-profile");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn dump(url: &str) -> String {
    browse(url, &["--dump-dom".to_owned()])
}

async fn start(dashboard: Dashboard) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, dashboard.router()));
    format!("http://{addr}/dashboard")
}

/// The text of the first `<td>` after `anchor` whose `data-metric` is `metric`.
fn metric_after<'a>(dom: &'a str, anchor: &str, metric: &str) -> &'a str {
    let start = dom
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor} not in the page"));
    let rest = &dom[start..];
    let needle = format!("data-metric=\"{metric}\">");
    let at = rest.find(&needle).unwrap() + needle.len();
    let end = rest[at..].find('<').unwrap();
    &rest[at..at + end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_seeded_heatmap_percentiles_and_live_state() {
    let dir = TempDir::new("browser");
    let (store, tracker) = seeded(&dir).await;
    let url = start(Dashboard::new(store).tracker(tracker).min_samples(3)).await;

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || dump(&url)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page never rendered:\n{dom}"
    );
    assert!(dom.contains("id=\"empty\" class=\"empty hidden\""));

    // Heatmap cells: p50 decode tokens/s per backend × model × input size.
    for (backend, model, category, p50) in [
        ("fast", "gpt-4o-mini", "small", "230.0"),
        ("fast", "gpt-4o-mini", "tiny", "190.0"),
        ("slow", "gemini-2.5-flash", "small", "40.0"),
    ] {
        let cell = format!(
            "data-backend=\"{backend}\" data-model=\"{model}\" data-category=\"{category}\" data-p50=\"{p50}\""
        );
        assert!(dom.contains(&cell), "no heatmap cell {cell}");
    }
    // slow has no tiny requests: its cell is drawn empty.
    assert!(dom.contains(
        "data-backend=\"slow\" data-model=\"gemini-2.5-flash\" data-category=\"tiny\" data-p50=\"\""
    ));
    assert!(dom.contains("≥ 200"), "the legend names the thresholds");

    // Percentile tables.
    let fast = "data-key=\"fast/gpt-4o-mini\"";
    let slow = "data-key=\"slow/gemini-2.5-flash\"";
    assert_eq!(metric_after(&dom, fast, "decode_p50"), "210");
    assert_eq!(metric_after(&dom, fast, "ttfc_p50"), "100");
    assert_eq!(metric_after(&dom, fast, "requests"), "6");
    assert_eq!(metric_after(&dom, slow, "decode_p50"), "40.0");
    assert_eq!(metric_after(&dom, slow, "ttfc_p50"), "400");
    assert_eq!(metric_after(&dom, slow, "failure"), "25.0%");
    assert_eq!(metric_after(&dom, "data-key=\"1k-4k\"", "requests"), "8");

    // Live state: slow's breaker is open, fast's quota is exhausted.
    assert!(dom.contains("data-breaker=\"open\""));
    let fast_state = &dom[dom.find("<tr data-backend=\"fast\"").unwrap()..];
    assert!(fast_state.contains("data-quota=\"exhausted\""));
    assert_eq!(metric_after(fast_state, "", "remaining_tokens"), "5000");
    // Recommendations: fast for 1k-4k inputs; too few tiny samples.
    assert!(dom.contains("data-best=\"fast/gpt-4o-mini\""));
    assert!(dom.contains("data-refused=\"true\""));

    // A screenshot, for the README.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            browse(
                &url,
                &[
                    format!("--screenshot={}", shot.display()),
                    "--window-size=1600,1400".to_owned(),
                ],
            )
        }
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    if let Ok(copy) = std::env::var("STREAMGATE_SCREENSHOT") {
        std::fs::copy(&shot, copy).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_says_so_instead_of_showing_zeros() {
    let dir = TempDir::new("browser-empty");
    let store = Store::open(dir.db()).unwrap();
    let url = start(Dashboard::new(store)).await;
    let dom = tokio::task::spawn_blocking(move || dump(&url))
        .await
        .unwrap();
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page never rendered:\n{dom}"
    );
    assert!(dom.contains("id=\"empty\" class=\"empty\""));
    assert!(dom.contains("No requests stored in this range yet"));
    assert!(dom.contains("id=\"analytics\" class=\"hidden\""));
    assert!(!dom.contains("class=\"cell\""));
    assert!(dom.contains("No live tracker attached."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_report_renders_without_a_server() {
    let dir = TempDir::new("browser-static");
    let (store, tracker) = seeded(&dir).await;
    let dashboard = Dashboard::new(store).tracker(tracker);
    let html = Dashboard::static_page(&dashboard.data(&Default::default()).unwrap()).unwrap();
    let file = dir.0.join("report.html");
    std::fs::write(&file, html).unwrap();
    let url = format!("file://{}", file.display());
    let dom = tokio::task::spawn_blocking(move || dump(&url))
        .await
        .unwrap();
    assert!(dom.contains("static report"));
    assert!(dom.contains(
        "data-backend=\"fast\" data-model=\"gpt-4o-mini\" data-category=\"small\" data-p50=\"230.0\""
    ));
    assert!(dom.contains("data-breaker=\"open\""));
}
