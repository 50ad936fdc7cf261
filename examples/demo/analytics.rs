//! `--store`, `--dashboard` and `--report`: the run's requests kept in
//! SQLite, a live dashboard page, and the same page as a static file.

use std::{path::Path, sync::Arc};

use streamgate::metrics::Fanout;
use streamgate::prelude::*;
use streamgate::store::{
    dashboard::{self, Dashboard, Params},
    Store,
};

/// The store, and the dashboard serving it, when asked for.
pub struct Analytics {
    store: Store,
    tracker: Arc<PerformanceTracker>,
}

impl Analytics {
    /// Opens the store at `path`, naming each backend's provider.
    pub fn open(path: &Path, tracker: Arc<PerformanceTracker>) -> Result<Self, BoxError> {
        let store = Store::builder(path)
            .provider("fast", "openai")
            .provider("bursty", "anthropic")
            .provider("steady", "gemini")
            .build()?;
        Ok(Self { store, tracker })
    }

    /// The sink the stack reports to: the tracker and the store.
    pub fn sink(&self) -> Arc<dyn MetricsSink> {
        Arc::new(
            Fanout::new()
                .with(self.tracker.clone())
                .with(Arc::new(self.store.clone())),
        )
    }

    fn dashboard(&self) -> Dashboard {
        Dashboard::new(self.store.clone()).tracker(self.tracker.clone())
    }

    /// Serves the dashboard on `addr` in the background; returns its URL.
    pub async fn serve(&self, addr: &str) -> Result<String, BoxError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}/dashboard", listener.local_addr()?);
        let router = self.dashboard().router();
        tokio::spawn(async move {
            if let Err(error) = dashboard::serve(listener, router).await {
                eprintln!("dashboard stopped: {error}");
            }
        });
        Ok(url)
    }

    /// Waits for the store to write everything, then writes the static
    /// report to `path` if asked for.
    pub async fn finish(&self, report: Option<&str>) -> Result<(), BoxError> {
        self.store.flush().await;
        let stats = self.store.stats();
        println!(
            "store {}: {} requests and {} events written, {} dropped",
            self.store.path().display(),
            stats.written_requests,
            stats.written_events,
            stats.dropped
        );
        if let Some(path) = report {
            let data = self.dashboard().data(&Params::default())?;
            std::fs::write(path, Dashboard::static_page(&data)?)?;
            println!("report written to {path}");
        }
        Ok(())
    }
}
