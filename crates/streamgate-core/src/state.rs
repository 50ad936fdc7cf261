//! The state that must agree across the replicas of a fleet, behind one
//! small trait per concern.
//!
//! Each gate keeps its own state in process (the TPM meter, the quota
//! tracker, the breaker's window) and decides from it first. What replicas
//! sharing one provider key must also agree on goes through these traits:
//!
//! - [`SharedTpm`]: reserve a request's estimate against a budget at
//!   admission, reconcile it with the real usage at the end, read the
//!   current use;
//! - [`SharedQuota`]: what a provider said a (backend, model) is exhausted
//!   until, and why; what this replica learned; requests in flight;
//! - [`SharedBreaker`]: the open-until time, a half-open probe lease with a
//!   TTL, and the probe's outcome.
//!
//! [`InProcess`] implements all three for a single process (the default of
//! every layer): the process is the whole fleet, so everything it decided
//! locally already agrees and every call answers at once. A remote
//! implementation (such as `streamgate-redis`) plugs in through each
//! layer's `shared(..)` option, or all at once with [`SharedState`].
//!
//! # The hot path
//!
//! Only two questions need the other replicas' answer before a request is
//! sent: whether the shared TPM budget has room ([`SharedTpm::reserve`]) and
//! whether this replica may take the half-open probe
//! ([`SharedBreaker::take_probe`]). Both return an answer that is either
//! ready or a [`StateFuture`] to await, so an implementation that knows the
//! answer locally (always, for [`InProcess`]) costs no await and no
//! allocation. Everything else is read from local state or a local mirror
//! (`exhausted_until`, `open_until`) or written behind the request
//! (`reconcile`, `learn`, `publish_*`) and never awaited.
//!
//! Keys are a [`StateKey`]: the backend's name and the model, never an API
//! key.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::BackendId;

/// A remote answer to await: boxed, so the traits stay dyn-compatible.
pub type StateFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A gate's pending admission: `Ok` to call, or the refusal (see
/// [`Ticket::confirmation`](crate::guard::Ticket::confirmation)).
pub type Confirmation = StateFuture<Result<(), crate::Rejected>>;

/// Whose state: a backend and a model. Carries no credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateKey<'a> {
    /// The backend's name.
    pub backend: &'a BackendId,
    /// The model.
    pub model: &'a str,
}

impl<'a> StateKey<'a> {
    /// The key of `model` on `backend`.
    pub fn new(backend: &'a BackendId, model: &'a str) -> Self {
        Self { backend, model }
    }
}

/// The shared TPM budget has no room for a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// When the shared window expects room again, if known.
    pub retry_after: Option<Duration>,
}

/// Tokens reserved in shared state for one request; give it back to
/// [`SharedTpm::reconcile`] when the request ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpmGrant {
    /// Identifies the reservation in the shared state (unique per
    /// implementation instance); 0 for [`InProcess`].
    pub id: u64,
    /// The tokens reserved.
    pub tokens: u64,
}

/// The answer of [`SharedTpm::reserve`].
#[must_use = "a grant must be reconciled"]
pub enum Reserve {
    /// Reserved; nothing to wait for.
    Granted(TpmGrant),
    /// No room; the request is refused.
    Refused(OverBudget),
    /// Reserved if the future says so. The grant is reconciled either way
    /// (reconciling a reservation that was refused is harmless), so a
    /// request dropped while waiting still releases it.
    Confirm(TpmGrant, StateFuture<Result<(), OverBudget>>),
}

impl fmt::Debug for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Granted(grant) => f.debug_tuple("Granted").field(grant).finish(),
            Self::Refused(over) => f.debug_tuple("Refused").field(over).finish(),
            Self::Confirm(grant, _) => f.debug_tuple("Confirm").field(grant).finish(),
        }
    }
}

/// A TPM budget that replicas share.
///
/// The layer calls it after its local meter admitted the request, so local
/// state answers first and a request over the local budget never costs a
/// remote call. The shared window must have the local meter's semantics: a
/// token counts for at least the window's length and less than one second
/// (or one slot) more.
pub trait SharedTpm: Send + Sync + fmt::Debug + 'static {
    /// Reserves `tokens` for `key` if the shared window's use, plus the
    /// reservations in flight, plus `tokens` stay within `limit`.
    fn reserve(&self, key: StateKey<'_>, tokens: u64, limit: u64) -> Reserve;

    /// Replaces the reservation of `grant` by `used` tokens. Never awaited:
    /// a remote implementation writes it behind the request.
    fn reconcile(&self, key: StateKey<'_>, grant: TpmGrant, used: u64);

    /// The shared use (window plus reservations) last known for `key`, if
    /// this implementation knows more than the local meter.
    fn current(&self, key: StateKey<'_>) -> Option<u64>;
}

/// What a replica learned: `key` is out of quota until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhaustion {
    /// Until when (on this process's clock).
    pub until: Instant,
    /// Why, as the quota tracker names its reasons (`requests`, `tokens`,
    /// `rate_limited`, ...).
    pub reason: Arc<str>,
}

/// Quota knowledge that replicas share.
pub trait SharedQuota: Send + Sync + fmt::Debug + 'static {
    /// What another replica learned about `key`, if it is exhausted at
    /// `now`. Answered locally (a remote implementation keeps a mirror).
    fn exhausted_until(&self, key: StateKey<'_>, now: Instant) -> Option<Exhaustion>;

    /// Tells the other replicas that `key` is exhausted until `until`, for
    /// `reason`. Never awaited; kept only until `until`.
    fn learn(&self, key: StateKey<'_>, until: Instant, reason: &str);

    /// Adds `requests` and `tokens` (negative to release) to the shared
    /// in-flight counts of `key`. Never awaited.
    fn add_in_flight(&self, key: StateKey<'_>, requests: i64, tokens: i64);

    /// The in-flight requests and tokens of the *other* replicas last known
    /// for `key`.
    fn others_in_flight(&self, key: StateKey<'_>) -> (u64, u64);
}

/// The answer of [`SharedBreaker::take_probe`].
#[must_use = "a granted probe lease must be settled with `publish_outcome`"]
pub enum Probe {
    /// This replica holds the lease.
    Granted,
    /// Another replica probes; refuse.
    Taken,
    /// Held if the future resolves to `true`.
    Confirm(StateFuture<bool>),
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Granted => "Granted",
            Self::Taken => "Taken",
            Self::Confirm(_) => "Confirm",
        })
    }
}

/// Circuit-breaker state that replicas share: the open-until time and one
/// half-open probe for the whole fleet. Each replica keeps counting its own
/// outcomes (the window stays local: it needs every call's outcome, which
/// would cost a remote write per request, and a failing provider shows in
/// every replica's window anyway).
pub trait SharedBreaker: Send + Sync + fmt::Debug + 'static {
    /// Until when another replica opened `key`. Kept after that instant,
    /// while the fleet is half-open (until a probe's outcome is published,
    /// or for the `probe_within` given to [`publish_open`](Self::publish_open)),
    /// so that every replica then probes through the lease. Answered
    /// locally; the caller compares it with its own clock, so an
    /// implementation that knows nothing costs no clock read.
    fn open_until(&self, key: StateKey<'_>) -> Option<Instant>;

    /// Tells the other replicas that this replica opened `key` until
    /// `until`, then lets probes through for at most `probe_within`. Never
    /// awaited.
    fn publish_open(&self, key: StateKey<'_>, until: Instant, probe_within: Duration);

    /// Takes the fleet's half-open probe lease of `key` for at most `ttl`
    /// (it expires by itself if this replica dies while probing).
    fn take_probe(&self, key: StateKey<'_>, ttl: Duration) -> Probe;

    /// Publishes the probe's outcome and releases this replica's lease:
    /// `None` closes `key` for every replica, `Some((until, probe_within))`
    /// reopens it as [`publish_open`](Self::publish_open) does. Never
    /// awaited.
    fn publish_outcome(&self, key: StateKey<'_>, reopened: Option<(Instant, Duration)>);

    /// Releases this replica's probe lease without an outcome (the probe
    /// was cancelled, or ended in an error that says nothing about the
    /// backend), so another replica may probe. Never awaited.
    fn release_probe(&self, key: StateKey<'_>);
}

/// The single-process implementation of every state trait, and the default
/// of every layer: this process is the whole fleet, so what it decided
/// locally is already agreed. Every call answers at once and does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl SharedTpm for InProcess {
    #[inline]
    fn reserve(&self, _key: StateKey<'_>, tokens: u64, _limit: u64) -> Reserve {
        Reserve::Granted(TpmGrant { id: 0, tokens })
    }

    #[inline]
    fn reconcile(&self, _key: StateKey<'_>, _grant: TpmGrant, _used: u64) {}

    #[inline]
    fn current(&self, _key: StateKey<'_>) -> Option<u64> {
        None
    }
}

impl SharedQuota for InProcess {
    #[inline]
    fn exhausted_until(&self, _key: StateKey<'_>, _now: Instant) -> Option<Exhaustion> {
        None
    }

    #[inline]
    fn learn(&self, _key: StateKey<'_>, _until: Instant, _reason: &str) {}

    #[inline]
    fn add_in_flight(&self, _key: StateKey<'_>, _requests: i64, _tokens: i64) {}

    #[inline]
    fn others_in_flight(&self, _key: StateKey<'_>) -> (u64, u64) {
        (0, 0)
    }
}

impl SharedBreaker for InProcess {
    #[inline]
    fn open_until(&self, _key: StateKey<'_>) -> Option<Instant> {
        None
    }

    #[inline]
    fn publish_open(&self, _key: StateKey<'_>, _until: Instant, _probe_within: Duration) {}

    #[inline]
    fn take_probe(&self, _key: StateKey<'_>, _ttl: Duration) -> Probe {
        Probe::Granted
    }

    #[inline]
    fn publish_outcome(&self, _key: StateKey<'_>, _reopened: Option<(Instant, Duration)>) {}

    #[inline]
    fn release_probe(&self, _key: StateKey<'_>) {}
}

/// One handle on every shared concern, for building many layers (or a
/// whole `streamgate::Backend`) on the same fleet state. Concerns left
/// unset stay [`InProcess`].
#[derive(Clone, Default)]
pub struct SharedState {
    /// The shared TPM budget, if any.
    pub tpm: Option<Arc<dyn SharedTpm>>,
    /// The shared quota knowledge, if any.
    pub quota: Option<Arc<dyn SharedQuota>>,
    /// The shared breaker state, if any.
    pub breaker: Option<Arc<dyn SharedBreaker>>,
}

impl SharedState {
    /// Nothing shared: every concern stays in process.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shares the TPM budget through `tpm`.
    pub fn with_tpm(mut self, tpm: Arc<dyn SharedTpm>) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Shares quota knowledge through `quota`.
    pub fn with_quota(mut self, quota: Arc<dyn SharedQuota>) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Shares breaker state through `breaker`.
    pub fn with_breaker(mut self, breaker: Arc<dyn SharedBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }
}

impl AsRef<SharedState> for SharedState {
    fn as_ref(&self) -> &SharedState {
        self
    }
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("tpm", &self.tpm)
            .field("quota", &self.quota)
            .field("breaker", &self.breaker)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_answers_at_once_and_shares_nothing() {
        let backend = BackendId::new("b");
        let key = StateKey::new(&backend, "m");
        let tpm: Arc<dyn SharedTpm> = Arc::new(InProcess);
        assert!(matches!(
            tpm.reserve(key, 7, 10),
            Reserve::Granted(TpmGrant { tokens: 7, .. })
        ));
        assert_eq!(tpm.current(key), None);
        let quota: Arc<dyn SharedQuota> = Arc::new(InProcess);
        quota.learn(key, Instant::now() + Duration::from_secs(5), "requests");
        assert_eq!(quota.exhausted_until(key, Instant::now()), None);
        let breaker: Arc<dyn SharedBreaker> = Arc::new(InProcess);
        assert!(matches!(
            breaker.take_probe(key, Duration::from_secs(1)),
            Probe::Granted
        ));
        assert_eq!(breaker.open_until(key), None);
    }
}
