//! The connection, its health, the write-behind queue and the mirrors.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError, RwLock, Weak,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Script};
use streamgate_core::{
    emit, redact::redact_owned, state::SharedState, Event, MetricsSink, SharedSink,
};
use tokio::{
    sync::{mpsc, watch, Notify},
    time::Instant,
};

use crate::{
    in_flight::{Count, InFlight},
    mirror::Mirror,
    scripts,
    shared::Shared,
};

/// Slots in the shared window: the current one plus the 60 before it, as
/// in core's window that the local meter and the tracker count on.
pub(crate) const SLOTS: u64 = streamgate_core::window::SLOTS as u64;

/// The longest model name kept in a key; longer names are cut (a request's
/// model is outside input).
const MAX_NAME: usize = 200;

/// Why a [`Fleet`] could not be built. Holds no credential.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetError(String);

impl FleetError {
    fn new(message: impl Into<String>, known: &[&str]) -> Self {
        Self(redact_owned(message.into(), known))
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FleetError").field(&self.0).finish()
    }
}

impl std::error::Error for FleetError {}

/// What a [`Fleet`] counted since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Whether shared state is reachable now.
    pub connected: bool,
    /// Outages (each emitted one `SharedStateDegraded`).
    pub outages: u64,
    /// Writes (reconciles, published facts) not made: the queue was full,
    /// or shared state was unreachable.
    pub dropped_writes: u64,
    /// Admissions decided from local state alone because shared state was
    /// unreachable or slower than the timeout.
    pub local_decisions: u64,
    /// Round trips to Redis made for requests: admissions (TPM
    /// reservations, probe leases), written-behind writes (each one round
    /// trip, however many commands it pipelines) and
    /// [`Fleet::tpm_use`]. Connecting and reading back stored facts are
    /// not counted.
    pub round_trips: u64,
}

/// Configures a [`Fleet`]; see each setting for its default.
#[derive(Clone)]
#[must_use]
pub struct FleetBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
    window: Duration,
    reservation_ttl: Duration,
    in_flight_ttl: Duration,
    queue_capacity: usize,
    backoff: (Duration, Duration),
    sink: SharedSink,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("url", &redact_owned(self.url.clone(), &[]))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("window", &self.window)
            .field("reservation_ttl", &self.reservation_ttl)
            .field("in_flight_ttl", &self.in_flight_ttl)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// The namespace of every key and of the channel (default
    /// `streamgate`): replicas that share state use the same one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most any Redis operation may take (default 5 ms, for Redis on
    /// the same network); past it the replica decides locally and the
    /// state is degraded until a reconnect succeeds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most a connection attempt may take (default 100 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The length of the shared TPM window (default 60 s, the local
    /// meter's); it slides in steps of 1/60 of it. Shorter windows are for
    /// tests.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a reservation holds without its reconcile (default 10
    /// minutes, above any stream's length): the share of a replica that
    /// died while holding it comes back after this.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// How long this replica's in-flight counts hold in shared state
    /// without a refresh (default 10 s): it refreshes them every third of
    /// it while they are above zero, so the counts of a replica that died
    /// disappear from every other replica after at most this.
    pub fn in_flight_ttl(mut self, ttl: Duration) -> Self {
        self.in_flight_ttl = ttl;
        self
    }

    /// How many writes may wait for the writer (default 1024); when full,
    /// a write is dropped and counted, never waited for.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The first and the longest wait between reconnect attempts (default
    /// 10 ms, doubling up to 1 s).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max);
        self
    }

    /// Reports `SharedStateDegraded` and `SharedStateRestored` to `sink`.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Checks the settings and starts connecting in the background: the
    /// fleet is usable at once and decides locally until connected (see
    /// [`Fleet::connected`]). Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Fleet, FleetError> {
        check_tls(&self.url)?;
        let client = Client::open(self.url.as_str())
            .map_err(|e| FleetError::new(format!("invalid redis url: {e}"), &[&self.url]))?;
        let password = client.get_connection_info().redis.password.clone();
        let known: Vec<&str> = password.iter().map(String::as_str).collect();
        if let redis::ConnectionAddr::TcpTls { insecure: true, .. } =
            client.get_connection_info().addr
        {
            return Err(FleetError::new(
                "an unverified tls connection (#insecure) is not supported: \
                 trust the server's certificate authority instead (SSL_CERT_FILE)",
                &[],
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| FleetError::new("a fleet must be built inside a tokio runtime", &[]))?;
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(FleetError::new("timeouts must be above 0", &[]));
        }
        if self.window < Duration::from_millis(60) {
            return Err(FleetError::new("the window must be at least 60 ms", &[]));
        }
        if self.reservation_ttl < Duration::from_millis(1) {
            return Err(FleetError::new(
                "the reservation ttl must be at least 1 ms",
                &[],
            ));
        }
        if self.in_flight_ttl < Duration::from_millis(30) {
            return Err(FleetError::new(
                "the in-flight ttl must be at least 30 ms",
                &[],
            ));
        }
        if self.queue_capacity == 0 {
            return Err(FleetError::new("the queue capacity must be above 0", &[]));
        }
        if self.backoff.0.is_zero() || self.backoff.1 < self.backoff.0 {
            return Err(FleetError::new(
                "backoff must be above 0 and its maximum at least its first wait",
                &[],
            ));
        }
        if self.prefix.is_empty() {
            return Err(FleetError::new("the key prefix must not be empty", &[]));
        }
        let url = redact_owned(self.url.clone(), &known);
        let (writes, queue) = mpsc::channel(self.queue_capacity);
        let (up_tx, _) = watch::channel(false);
        let (shutdown, _) = watch::channel(());
        let slot_ms = (self.window.as_millis() / 60).max(1) as u64;
        let inner = Arc::new(Inner {
            channel: format!("{}:events", self.prefix),
            prefix: self.prefix,
            url,
            password,
            client,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            slot_ms,
            reservation_ttl_ms: self.reservation_ttl.as_millis().max(1) as u64,
            in_flight_ttl: self.in_flight_ttl,
            in_flight: InFlight::default(),
            restored: Arc::new(Notify::new()),
            round_trips: AtomicU64::new(0),
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            up_watch: up_tx,
            degraded_since: Mutex::new(Some(Instant::now())),
            reported: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            writes,
            shutdown,
            replica: replica_id(),
            next_id: AtomicU64::new(1),
            reserve: Script::new(scripts::RESERVE),
            reconcile: Script::new(scripts::RECONCILE),
            current: Script::new(scripts::CURRENT),
            quota: Mirror::new(),
            open: Mirror::new(),
            outages: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            local: AtomicU64::new(0),
            sink: self.sink,
        });
        runtime.spawn(supervise(
            Arc::downgrade(&inner),
            Arc::clone(&inner.wake),
            inner.shutdown.subscribe(),
        ));
        runtime.spawn(write_behind(Arc::downgrade(&inner), queue));
        runtime.spawn(refresh_in_flight(
            Arc::downgrade(&inner),
            Arc::clone(&inner.restored),
            inner.shutdown.subscribe(),
        ));
        let shared = Arc::new(Shared(Arc::clone(&inner)));
        let state = SharedState::new()
            .with_tpm(shared.clone())
            .with_quota(shared.clone())
            .with_breaker(shared);
        Ok(Fleet { inner, state })
    }
}

/// State shared with the other replicas through one Redis: see the
/// [crate docs](crate). Cheap to clone; the background tasks end when the
/// last clone (and every layer holding its state) is dropped.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
    state: SharedState,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Fleet {
    /// Configures a fleet on the Redis at `url`
    /// (`redis://[[user]:password@]host:port/db`, or `rediss://` for TLS
    /// with the `tls` feature: see the [crate docs](crate#tls)).
    pub fn builder(url: impl Into<String>) -> FleetBuilder {
        FleetBuilder {
            url: url.into(),
            prefix: "streamgate".to_owned(),
            timeout: Duration::from_millis(5),
            connect_timeout: Duration::from_millis(100),
            window: Duration::from_secs(60),
            reservation_ttl: Duration::from_secs(600),
            in_flight_ttl: Duration::from_secs(10),
            queue_capacity: 1024,
            backoff: (Duration::from_millis(10), Duration::from_secs(1)),
            sink: None,
        }
    }

    /// Every concern at once, for `Backend::shared_state` or each layer's
    /// `shared(..)`.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// The shared TPM budget, for `TpmLayer::builder(..).shared(..)`.
    pub fn tpm(&self) -> Arc<dyn streamgate_core::state::SharedTpm> {
        Arc::new(Shared(Arc::clone(&self.inner)))
    }

    /// The shared quota knowledge, for `QuotaTracker::builder().shared(..)`.
    pub fn quota(&self) -> Arc<dyn streamgate_core::state::SharedQuota> {
        Arc::new(Shared(Arc::clone(&self.inner)))
    }

    /// The shared breaker state, for `Breaker::builder(..).shared(..)`.
    pub fn breaker(&self) -> Arc<dyn streamgate_core::state::SharedBreaker> {
        Arc::new(Shared(Arc::clone(&self.inner)))
    }

    /// The URL, with its password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Waits until shared state is reachable.
    pub async fn connected(&self) {
        let mut up = self.inner.up_watch.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = up.wait_for(|up| *up).await;
    }

    /// Whether shared state is reachable now.
    pub fn is_connected(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Counters since the fleet was built.
    pub fn stats(&self) -> FleetStats {
        FleetStats {
            connected: self.is_connected(),
            outages: self.inner.outages.load(Ordering::Relaxed),
            dropped_writes: self.inner.dropped.load(Ordering::Relaxed),
            local_decisions: self.inner.local.load(Ordering::Relaxed),
            round_trips: self.inner.round_trips.load(Ordering::Relaxed),
        }
    }

    /// The shared TPM use of `model` on `backend` (the window's tokens plus
    /// live reservations): one round trip, `None` when unreachable.
    pub async fn tpm_use(&self, backend: &streamgate_core::BackendId, model: &str) -> Option<u64> {
        let fleet = &self.inner;
        let mut conn = fleet.connection()?;
        let keys =
            crate::shared::tpm_keys(fleet, streamgate_core::state::StateKey::new(backend, model));
        let mut call = fleet.current.prepare_invoke();
        call.key(&keys[0]).key(&keys[1]).key(&keys[2]);
        call.arg(fleet.slot_ms).arg(SLOTS);
        fleet.round_trip();
        match tokio::time::timeout(fleet.timeout, call.invoke_async::<u64>(&mut conn)).await {
            Ok(Ok(total)) => Some(total),
            _ => None,
        }
    }

    /// Waits until every write queued so far was made (or dropped).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.inner.writes.send(Write::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl AsRef<SharedState> for Fleet {
    fn as_ref(&self) -> &SharedState {
        &self.state
    }
}

/// One write behind the requests.
pub(crate) enum Write {
    /// Drops a reservation and records its use.
    Reconcile {
        keys: [String; 3],
        id: String,
        used: u64,
    },
    /// Commands made in one round trip.
    Pipeline(redis::Pipeline),
    /// Stores and publishes this replica's in-flight count of a key, as it
    /// is when written.
    InFlight(Arc<Count>),
    /// Answers when everything before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct Inner {
    pub(crate) prefix: String,
    pub(crate) channel: String,
    url: String,
    password: Option<String>,
    client: Client,
    pub(crate) timeout: Duration,
    connect_timeout: Duration,
    backoff: (Duration, Duration),
    pub(crate) slot_ms: u64,
    pub(crate) reservation_ttl_ms: u64,
    pub(crate) in_flight_ttl: Duration,
    pub(crate) in_flight: InFlight,
    /// Wakes the refresher when sharing resumes.
    restored: Arc<Notify>,
    round_trips: AtomicU64,
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    up_watch: watch::Sender<bool>,
    degraded_since: Mutex<Option<Instant>>,
    reported: AtomicBool,
    wake: Arc<Notify>,
    writes: mpsc::Sender<Write>,
    shutdown: watch::Sender<()>,
    pub(crate) replica: u64,
    pub(crate) next_id: AtomicU64,
    pub(crate) reserve: Script,
    pub(crate) reconcile: Script,
    pub(crate) current: Script,
    pub(crate) quota: Mirror<Arc<str>>,
    /// Open-until times, kept through the half-open time.
    pub(crate) open: Mirror<Instant>,
    outages: AtomicU64,
    dropped: AtomicU64,
    local: AtomicU64,
    sink: SharedSink,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("connected", &self.up.load(Ordering::Relaxed))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The connection, while shared state is reachable.
    pub(crate) fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts a round trip made for requests.
    pub(crate) fn round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an admission decided locally.
    pub(crate) fn decided_locally(&self) {
        self.local.fetch_add(1, Ordering::Relaxed);
    }

    /// Shared state failed (`error`): decide locally, report the outage
    /// once, and let the supervisor reconnect.
    pub(crate) fn degrade(&self, error: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            *self.conn.write().unwrap_or_else(PoisonError::into_inner) = None;
            *self
                .degraded_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            self.up_watch.send_replace(false);
            // What the others have in flight is unknown from now on.
            self.in_flight.clear_others();
            self.report_degraded(error);
            self.wake.notify_one();
        }
    }

    fn report_degraded(&self, error: &str) {
        if !self.reported.swap(true, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            let known: Vec<&str> = self.password.iter().map(String::as_str).collect();
            let error = redact_owned(error.to_owned(), &known);
            emit(&self.sink, || Event::SharedStateDegraded {
                store: "redis",
                error: &error,
            });
        }
    }

    fn restore(&self, conn: MultiplexedConnection) {
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        let since = self
            .degraded_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.up.store(true, Ordering::Release);
        self.up_watch.send_replace(true);
        self.restored.notify_one();
        if self.reported.swap(false, Ordering::AcqRel) {
            let after = since.map_or(Duration::ZERO, |since| since.elapsed());
            emit(&self.sink, || Event::SharedStateRestored {
                store: "redis",
                after,
            });
        }
    }

    /// Queues `write` without waiting; counts it when the queue is full or
    /// shared state is unreachable.
    pub(crate) fn write_behind(&self, write: Write) -> bool {
        if !self.up.load(Ordering::Acquire) || self.writes.try_send(write).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a write of `count` unless one is queued already (it will
    /// carry this change too).
    pub(crate) fn write_in_flight(&self, count: &Arc<Count>) {
        if count.claim_write() && !self.write_behind(Write::InFlight(Arc::clone(count))) {
            count.unclaim_write();
        }
    }

    /// `PREFIX:KIND:{backend/model}` (the braces keep a key family in one
    /// cluster slot).
    pub(crate) fn key(&self, kind: &str, backend: &str, model: &str) -> String {
        format!("{}:{kind}:{{{}/{}}}", self.prefix, cut(backend), cut(model))
    }

    /// A reservation id unique across replicas.
    pub(crate) fn reservation(&self, id: u64) -> String {
        format!("{:016x}-{id}", self.replica)
    }
}

/// Whether `url` asks for TLS (`rediss://`, `valkeys://`).
fn is_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

/// A TLS URL needs the `tls` feature, and a process-wide rustls crypto
/// provider: the client builds its TLS configuration from it when it
/// connects, and panics without one. Checked here, so the program gets an
/// error instead.
fn check_tls(url: &str) -> Result<(), FleetError> {
    if !is_tls(url) {
        return Ok(());
    }
    #[cfg(not(feature = "tls"))]
    {
        Err(FleetError::new(
            "a rediss:// url needs tls: enable the `tls` feature of streamgate-redis \
             (`redis-tls` of streamgate)",
            &[],
        ))
    }
    #[cfg(feature = "tls")]
    {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(FleetError::new(
                "a rediss:// url needs a process-wide rustls crypto provider: \
                 install one with rustls::crypto::CryptoProvider::install_default \
                 before building the fleet",
                &[],
            ));
        }
        Ok(())
    }
}

fn cut(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Distinguishes this replica's reservations and messages from others'.
fn replica_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Connects, reconnects with backoff after every failure, and runs the
/// subscription that fills the mirrors. Ends with the fleet.
async fn supervise(inner: Weak<Inner>, wake: Arc<Notify>, mut shutdown: watch::Receiver<()>) {
    let mut wait = None;
    loop {
        if let Some(wait) = wait {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
        let Some(fleet) = inner.upgrade() else { return };
        let connected = connect(&fleet).await;
        let backoff = fleet.backoff;
        match connected {
            Ok((conn, pubsub)) => {
                fleet.restore(conn);
                // Holds no strong handle while it waits, so the fleet can end.
                drop(fleet);
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(fleet) = inner.upgrade() else { return };
                            match message {
                                Some(message) => crate::shared::on_message(&fleet, message.get_payload_bytes()),
                                None => {
                                    fleet.degrade("the subscription ended: connection lost");
                                    break;
                                }
                            }
                        }
                        _ = wake.notified() => {
                            let Some(fleet) = inner.upgrade() else { return };
                            if !fleet.up.load(Ordering::Acquire) {
                                break;
                            }
                        }
                        _ = shutdown.changed() => return,
                    }
                }
                wait = Some(backoff.0);
            }
            Err(error) => {
                fleet.report_degraded(&error);
                drop(fleet);
                wait = Some(wait.map_or(backoff.0, |w: Duration| (w * 2).min(backoff.1)));
            }
        }
    }
}

async fn connect(fleet: &Inner) -> Result<(MultiplexedConnection, redis::aio::PubSub), String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(fleet.connect_timeout)
        .set_response_timeout(fleet.timeout);
    let attempt = async {
        let mut conn = fleet
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        let mut pubsub = fleet.client.get_async_pubsub().await?;
        pubsub.subscribe(&fleet.channel).await?;
        crate::shared::seed(fleet, &mut conn).await?;
        Ok::<_, redis::RedisError>((conn, pubsub))
    };
    match tokio::time::timeout(fleet.connect_timeout + fleet.timeout * 4, attempt).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(error)) => Err(format!("cannot reach {}: {error}", fleet.url)),
        Err(_) => Err(format!("cannot reach {}: timed out", fleet.url)),
    }
}

/// Makes the queued writes in order, each bounded by the timeout. Ends
/// with the fleet.
async fn write_behind(inner: Weak<Inner>, mut queue: mpsc::Receiver<Write>) {
    while let Some(write) = queue.recv().await {
        let Some(fleet) = inner.upgrade() else { return };
        let result = match write {
            Write::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Write::Reconcile { keys, id, used } => {
                let Some(mut conn) = fleet.connection() else {
                    fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                fleet.round_trip();
                let mut call = fleet.reconcile.prepare_invoke();
                call.key(&keys[0]).key(&keys[1]).key(&keys[2]);
                call.arg(used).arg(id).arg(fleet.slot_ms).arg(SLOTS);
                tokio::time::timeout(fleet.timeout, call.invoke_async::<()>(&mut conn)).await
            }
            Write::Pipeline(pipe) => {
                let Some(mut conn) = fleet.connection() else {
                    fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                fleet.round_trip();
                tokio::time::timeout(fleet.timeout, pipe.query_async::<()>(&mut conn)).await
            }
            Write::InFlight(count) => {
                // Changes from here on queue a write of their own.
                count.unclaim_write();
                let Some(mut conn) = fleet.connection() else {
                    fleet.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let pipe = crate::shared::in_flight(&fleet, &count);
                fleet.round_trip();
                tokio::time::timeout(fleet.timeout, pipe.query_async::<()>(&mut conn)).await
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => fleet.degrade(&error.to_string()),
            Err(_) => fleet.degrade("a write timed out"),
        }
    }
}

/// Refreshes this replica's non-zero in-flight counts every third of their
/// TTL, and writes every count when sharing resumes (the others forgot
/// them, or Redis lost them). Ends with the fleet.
async fn refresh_in_flight(
    inner: Weak<Inner>,
    restored: Arc<Notify>,
    mut shutdown: watch::Receiver<()>,
) {
    let Some(period) = inner.upgrade().map(|fleet| fleet.in_flight_ttl / 3) else {
        return;
    };
    loop {
        let idle = tokio::select! {
            _ = tokio::time::sleep(period) => false,
            _ = restored.notified() => true,
            _ = shutdown.changed() => return,
        };
        let Some(fleet) = inner.upgrade() else { return };
        for count in fleet.in_flight.own_counts(idle) {
            fleet.write_in_flight(&count);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the supervisor; the writer ends with the queue.
        self.shutdown.send_replace(());
    }
}
