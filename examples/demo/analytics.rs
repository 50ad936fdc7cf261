//! `--store`, `--dashboard` and `--report`: the run's requests kept in
//! SQLite, a live dashboard page, and the same page as a static file.

use std::sync::Arc;

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
    /// The store the configuration opened (the backends report to it and
    /// to the tracker).
    pub fn new(store: Store, tracker: Arc<PerformanceTracker>) -> Self {
        Self { store, tracker }
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
