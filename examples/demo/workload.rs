//! The callers: concurrent tasks sending prompts of mixed sizes through the
//! router and reading every stream to its end, with a progress line.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use futures::StreamExt;
use streamgate::prelude::*;
use streamgate::providers::{ChatChunk, ChatRequest};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::personalities::dice;

/// What the callers saw.
#[derive(Debug, Default)]
pub struct Callers {
    /// Requests sent.
    pub requests: u64,
    /// Streams read to their clean end.
    pub succeeded: u64,
    /// Requests that ended in an error the caller saw.
    pub failed: u64,
    /// Succeeded after at least one backend was skipped.
    pub failed_over: u64,
    /// Content chunks received.
    pub chunks: u64,
    /// Which backend served, how often.
    pub served_by: BTreeMap<String, u64>,
    /// The first few errors callers saw.
    pub errors: Vec<String>,
    /// How long the workload ran.
    pub elapsed: Duration,
}

#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    failed_over: AtomicU64,
    chunks: AtomicU64,
    served_by: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, error: &BoxError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        if errors.len() < 5 {
            errors.push(error.to_string());
        }
    }
}

/// A prompt of about `tokens` tokens (four bytes each).
fn prompt(tokens: u64) -> String {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog while the river runs. ";
    let bytes = usize::try_from(tokens * 4).unwrap_or(usize::MAX);
    TEXT.chars().cycle().take(bytes).collect()
}

/// Mixed input sizes: most prompts are short, some are long.
fn request(index: u64) -> ChatRequest {
    let roll = dice(index, 3);
    let tokens = match roll % 100 {
        0..=59 => 100 + roll / 100 % 800,
        60..=89 => 1_000 + roll / 100 % 2_900,
        _ => 4_000 + roll / 100 % 8_000,
    };
    ChatRequest::new("chat")
        .with_system("You are brief.")
        .with_user(prompt(tokens))
}

/// Sends requests from `concurrency` callers for `duration`, then waits for
/// the streams in flight to finish.
pub async fn run(
    router: Failover<ChatRequest, ChatChunk>,
    concurrency: usize,
    duration: Duration,
) -> Callers {
    let shared = Arc::new(Shared::default());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;

    let progress = tokio::spawn(progress(shared.clone(), start, duration));
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (router, shared, next) = (router.clone(), shared.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    call(&router, &shared, index).await;
                    // A caller thinks for up to 100 ms before the next prompt.
                    tokio::time::sleep(Duration::from_millis(dice(index, 5) % 100)).await;
                }
            })
        })
        .collect();
    for caller in callers {
        // A caller task only ends by finishing its loop.
        let _ = caller.await;
    }
    progress.abort();
    let _ = progress.await;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let served_by = std::mem::take(
        &mut *shared
            .served_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(PoisonError::into_inner));
    Callers {
        requests: load(&shared.requests),
        succeeded: load(&shared.succeeded),
        failed: load(&shared.failed),
        failed_over: load(&shared.failed_over),
        chunks: load(&shared.chunks),
        served_by,
        errors,
        elapsed: start.elapsed(),
    }
}

/// One request, read to the end of its stream.
async fn call(router: &Failover<ChatRequest, ChatChunk>, shared: &Shared, index: u64) {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let response = match router.clone().oneshot(request(index)).await {
        Ok(response) => response,
        Err(error) => return shared.fail(&error),
    };
    let report = response.extensions().get::<FailoverReport>().cloned();
    let mut body = response.into_body();
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) if chunk.is_content() => {
                shared.chunks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(error) => return shared.fail(&error),
        }
    }
    shared.succeeded.fetch_add(1, Ordering::Relaxed);
    if let Some(report) = report {
        if !report.skipped.is_empty() {
            shared.failed_over.fetch_add(1, Ordering::Relaxed);
        }
        *shared
            .served_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(report.served_by.to_string())
            .or_default() += 1;
    }
}

/// A progress line on stderr, redrawn four times a second on a terminal
/// (a new line every five seconds otherwise).
async fn progress(shared: Arc<Shared>, start: Instant, duration: Duration) {
    const WIDTH: usize = 30;
    let terminal = std::io::stderr().is_terminal();
    let (every, end) = if terminal {
        (Duration::from_millis(250), "")
    } else {
        (Duration::from_secs(5), "\n")
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().min(duration);
        let done = (elapsed.as_secs_f64() / duration.as_secs_f64() * WIDTH as f64) as usize;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let line = format!(
            "\r[{}{}] {:>5.1}/{:.0} s  {} requests  {} failed  {} failed over  {end}",
            "#".repeat(done.min(WIDTH)),
            ".".repeat(WIDTH - done.min(WIDTH)),
            elapsed.as_secs_f64(),
            duration.as_secs_f64(),
            load(&shared.requests),
            load(&shared.failed),
            load(&shared.failed_over),
        );
        let mut stderr = std::io::stderr();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }
}
