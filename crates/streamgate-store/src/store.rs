//! The sink: a bounded queue in front of one writer thread.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use streamgate_core::{ErrorClass, Event, MetricsSink, Outcome};
use tokio::sync::watch;

use crate::{
    maintenance,
    row::{EventRow, Message, RequestRow},
    schema, ConfigError, QueryError, StoreError,
};

/// Messages the queue holds by default: 10,000. Each slot is one pointer
/// (the record itself is boxed), so a full queue costs about 2 MB of records;
/// at the writer's rate that is well under a second of backlog.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Records written per transaction at most: 1,024.
pub const DEFAULT_BATCH_SIZE: usize = 1_024;
/// How often the writer rolls up hours and applies retention: every 60 s.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// How long rows are kept by default: 31 days, the longest range a query
/// may ask for ([`MAX_RANGE`](crate::MAX_RANGE)) and a day more.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(31 * 86_400);
/// How many request rows are kept by default: 5,000,000 (about 1 GB with
/// indexes); the oldest go first.
pub const DEFAULT_MAX_ROWS: u64 = 5_000_000;

/// Configures a [`Store`]; see [`Store::builder`].
#[derive(Clone, Debug)]
pub struct StoreBuilder {
    path: PathBuf,
    queue_capacity: usize,
    batch_size: usize,
    maintenance_interval: Duration,
    max_age: Duration,
    max_rows: u64,
    providers: HashMap<Box<str>, Arc<str>>,
}

impl StoreBuilder {
    /// Messages the queue holds before records are dropped (default
    /// [`DEFAULT_QUEUE_CAPACITY`]).
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Records written per transaction at most (default [`DEFAULT_BATCH_SIZE`]).
    #[must_use]
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// How often the writer rolls up finished hours and applies retention
    /// (default [`DEFAULT_MAINTENANCE_INTERVAL`]; at least 1 ms).
    #[must_use]
    pub fn maintenance_interval(mut self, every: Duration) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Rows (requests, events, hourly rollups) older than this are deleted
    /// (default [`DEFAULT_MAX_AGE`]; at least one hour).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// At most this many request rows are kept, the newest (default
    /// [`DEFAULT_MAX_ROWS`]; at least 1).
    #[must_use]
    pub fn max_rows(mut self, rows: u64) -> Self {
        self.max_rows = rows;
        self
    }

    /// Names the provider behind `backend` (the `provider` column and
    /// filter). A backend without one is stored with its own name as the
    /// provider, as the `metrics` sink reports it.
    #[must_use]
    pub fn provider(mut self, backend: impl Into<String>, provider: impl Into<String>) -> Self {
        let provider: String = provider.into();
        self.providers
            .insert(backend.into().into_boxed_str(), Arc::from(provider));
        self
    }

    /// Opens (or creates) the database, applies the missing migrations and
    /// starts the writer thread.
    pub fn build(self) -> Result<Store, StoreError> {
        if self.queue_capacity == 0 {
            return Err(ConfigError("queue capacity must be at least 1").into());
        }
        if self.batch_size == 0 {
            return Err(ConfigError("batch size must be at least 1").into());
        }
        if self.maintenance_interval < Duration::from_millis(1) {
            return Err(ConfigError("maintenance interval must be at least 1 ms").into());
        }
        if self.max_age < Duration::from_secs(3_600) {
            return Err(ConfigError("maximum age must be at least one hour").into());
        }
        if self.max_rows == 0 {
            return Err(ConfigError("maximum rows must be at least 1").into());
        }
        let mut conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL lets readers work while the writer commits; NORMAL sync is
        // durable across a crash of the program (not of the machine).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // 32 MB of page cache keeps the index pages that inserts touch hot.
        conn.pragma_update(None, "cache_size", -32_768)?;
        schema::migrate(&mut conn)?;

        let (tx, rx) = mpsc::sync_channel(self.queue_capacity);
        let shared = Arc::new(Counters::default());
        let (processed_tx, processed) = watch::channel(0);
        let (maintained_tx, maintained) = watch::channel(0);
        let writer = Writer {
            conn,
            shared: shared.clone(),
            providers: self.providers,
            batch_size: self.batch_size,
            processed: 0,
            processed_tx,
            maintained_tx,
            interval: self.maintenance_interval,
            retention: maintenance::Retention {
                max_age: self.max_age,
                max_rows: self.max_rows,
            },
            rolled_until_ms: 0,
        };
        let thread = std::thread::Builder::new()
            .name("streamgate-store".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::Thread)?;
        Ok(Store {
            inner: Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
                shared,
                processed,
                maintained,
                readers: Mutex::new(Vec::new()),
                path: self.path,
                queue_capacity: self.queue_capacity,
            }),
        })
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    written_requests: AtomicU64,
    written_events: AtomicU64,
    write_errors: AtomicU64,
    maintenance_runs: AtomicU64,
    pruned_rows: AtomicU64,
}

/// What the store has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Records and events taken into the queue.
    pub accepted: u64,
    /// Records and events dropped because the queue was full.
    pub dropped: u64,
    /// Request rows written.
    pub written_requests: u64,
    /// Event rows written (drop reports included).
    pub written_events: u64,
    /// Records lost to a failed write (SQLite refused a transaction).
    pub write_errors: u64,
    /// Times the maintenance job (hourly rollup and retention) ran.
    pub maintenance_runs: u64,
    /// Rows deleted by retention.
    pub pruned_rows: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
}

struct Inner {
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Counters>,
    processed: watch::Receiver<u64>,
    maintained: watch::Receiver<u64>,
    /// Read connections, reused; WAL lets them read while the writer writes.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    queue_capacity: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Waits for room if the queue is full: the writer is draining it.
            let _ = tx.send(Message::Close);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The analytics store: a [`MetricsSink`] that keeps every finished request
/// (and every rejection, breaker transition, quota update, throttle wait and
/// failover) in SQLite, and answers queries over them.
///
/// `record` never blocks: it copies the event into a bounded queue that one
/// writer thread drains, writing batches in transactions. When the queue is
/// full the event is dropped and counted ([`StoreStats::dropped`]); the
/// writer also stores each drop count as a `dropped` event.
/// [`flush`](MetricsSink::flush) waits until everything recorded before it
/// is written, and dropping the last handle writes what is queued and stops
/// the thread (blocking until it has), so a program that flushes (or drops the store) before it
/// exits loses nothing.
///
/// Clones share one database and one writer. Model names are stored up to
/// 256 bytes.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Store {
    /// Configures a store writing to the SQLite file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            path: path.as_ref().to_path_buf(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            batch_size: DEFAULT_BATCH_SIZE,
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
            max_age: DEFAULT_MAX_AGE,
            max_rows: DEFAULT_MAX_ROWS,
            providers: HashMap::new(),
        }
    }

    /// A store at `path` with the default configuration.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder(path).build()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What the store has done so far.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.shared;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            accepted: load(&c.accepted),
            dropped: load(&c.dropped),
            written_requests: load(&c.written_requests),
            written_events: load(&c.written_events),
            write_errors: load(&c.write_errors),
            maintenance_runs: load(&c.maintenance_runs),
            pruned_rows: load(&c.pruned_rows),
            queue_capacity: self.inner.queue_capacity as u64,
        }
    }

    /// Waits until the maintenance job has run at least `runs` times in all
    /// (it runs once when the store opens, then every
    /// [`maintenance_interval`](StoreBuilder::maintenance_interval)).
    pub async fn maintained(&self, runs: u64) {
        let mut rx = self.inner.maintained.clone();
        let _ = rx.wait_for(|n| *n >= runs).await;
    }

    fn send(&self, message: Message) {
        let Some(tx) = &self.inner.tx else { return };
        match tx.try_send(message) {
            Ok(()) => {
                self.inner.shared.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` on a read connection from the pool (opening one if none is
    /// free).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        let mut readers = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A few idle connections are enough; more concurrent readers open
        // their own and close them after.
        if readers.len() < 4 {
            readers.push(conn);
        }
        result
    }
}

#[async_trait::async_trait]
impl MetricsSink for Store {
    fn record(&self, event: &Event<'_>) {
        let message = match event {
            // A refusal arrives as its `Rejected` event; its completion
            // record holds no measurement.
            Event::Completed(record) if record.outcome == Outcome::Failed(ErrorClass::Rejected) => {
                return
            }
            Event::Completed(record) => Message::Request(Box::new(RequestRow::new(record))),
            other => match EventRow::new(other, SystemTime::now()) {
                Some(row) => Message::Event(Box::new(row)),
                None => return,
            },
        };
        self.send(message);
    }

    /// Waits until every record accepted before the call is written (or
    /// failed to write, see [`StoreStats::write_errors`]).
    async fn flush(&self) {
        let target = self.inner.shared.accepted.load(Ordering::Relaxed);
        let mut rx = self.inner.processed.clone();
        // An error means the writer is gone: nothing more will be written.
        let _ = rx.wait_for(|n| *n >= target).await;
    }
}

struct Writer {
    conn: Connection,
    shared: Arc<Counters>,
    providers: HashMap<Box<str>, Arc<str>>,
    batch_size: usize,
    processed: u64,
    processed_tx: watch::Sender<u64>,
    maintained_tx: watch::Sender<u64>,
    interval: Duration,
    retention: maintenance::Retention,
    /// Rows that started before this go into `hourly` as they are written.
    rolled_until_ms: i64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut next_maintenance = Instant::now();
        let mut reported_drops = 0;
        loop {
            if Instant::now() >= next_maintenance {
                self.maintain();
                next_maintenance = Instant::now() + self.interval;
            }
            let wait = next_maintenance.saturating_duration_since(Instant::now());
            let mut closing = false;
            match rx.recv_timeout(wait) {
                Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => closing = true,
                Ok(message) => batch.push(message),
                Err(RecvTimeoutError::Timeout) => {}
            }
            while !closing {
                if batch.len() >= self.batch_size {
                    self.write(&mut batch, &mut reported_drops);
                }
                match rx.try_recv() {
                    Ok(Message::Close) => closing = true,
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            self.write(&mut batch, &mut reported_drops);
            if closing {
                // Nothing can be sent any more: the last handle is gone.
                while let Ok(message) = rx.try_recv() {
                    if !matches!(message, Message::Close) {
                        batch.push(message);
                    }
                    if batch.len() >= self.batch_size {
                        self.write(&mut batch, &mut reported_drops);
                    }
                }
                self.write(&mut batch, &mut reported_drops);
                return;
            }
        }
    }

    /// Writes `batch` (and a drop report, if records were dropped since the
    /// last one) in one transaction.
    fn write(&mut self, batch: &mut Vec<Message>, reported_drops: &mut u64) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let new_drops = dropped.saturating_sub(*reported_drops);
        if batch.is_empty() && new_drops == 0 {
            return;
        }
        let result = insert_batch(
            &mut self.conn,
            &self.providers,
            self.rolled_until_ms,
            batch,
            new_drops,
        );
        let n = batch.len() as u64;
        match result {
            Ok((requests, events)) => {
                *reported_drops = dropped;
                let c = &self.shared;
                c.written_requests.fetch_add(requests, Ordering::Relaxed);
                c.written_events.fetch_add(events, Ordering::Relaxed);
            }
            Err(error) => {
                self.shared.write_errors.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(%error, records = n, "streamgate store: a batch was not written");
            }
        }
        batch.clear();
        self.processed += n;
        self.processed_tx.send_replace(self.processed);
    }

    fn maintain(&mut self) {
        match maintenance::run(&mut self.conn, SystemTime::now(), &self.retention) {
            Ok((pruned, rolled_until)) => {
                self.shared.pruned_rows.fetch_add(pruned, Ordering::Relaxed);
                self.rolled_until_ms = rolled_until;
            }
            Err(error) => {
                tracing::warn!(%error, "streamgate store: maintenance failed");
            }
        }
        let runs = self.shared.maintenance_runs.fetch_add(1, Ordering::Relaxed) + 1;
        self.maintained_tx.send_replace(runs);
    }
}

/// Inserts `batch` and, when `new_drops > 0`, a drop report, in one
/// transaction. Returns the request and event rows written.
fn insert_batch(
    conn: &mut Connection,
    providers: &HashMap<Box<str>, Arc<str>>,
    rolled_until_ms: i64,
    batch: &[Message],
    new_drops: u64,
) -> rusqlite::Result<(u64, u64)> {
    let (mut requests, mut events) = (0, 0);
    let tx = conn.transaction()?;
    let mut insert_request = tx.prepare_cached(RequestRow::INSERT)?;
    let mut insert_event = tx.prepare_cached(EventRow::INSERT)?;
    for message in batch {
        match message {
            Message::Request(row) => {
                let provider = providers
                    .get(row.backend.as_str())
                    .map_or(row.backend.as_str(), |p| p);
                row.insert(&mut insert_request, provider)?;
                if row.started_at_ms() < rolled_until_ms {
                    row.add_to_hourly(&tx, provider)?;
                }
                requests += 1;
            }
            Message::Event(row) => {
                row.insert(&mut insert_event)?;
                events += 1;
            }
            Message::Close => {}
        }
    }
    if new_drops > 0 {
        EventRow::dropped(new_drops, SystemTime::now()).insert(&mut insert_event)?;
        events += 1;
    }
    drop((insert_request, insert_event));
    tx.commit()?;
    Ok((requests, events))
}
