//! TPM budgets, quota knowledge and breaker state shared across the
//! replicas of a fleet, on Redis (or Valkey).
//!
//! A [`Fleet`] is one connection to one Redis, shared by every layer of a
//! process. It implements the state traits of
//! [`streamgate_core::state`], so the replicas that share a provider key
//! act as one:
//!
//! - **TPM budget** ([`SharedTpm`]): a request the local meter admits is
//!   reserved in a shared sliding window by one Lua script (one round trip,
//!   atomic across replicas, on the server's clock), and reconciled with
//!   the real usage when it ends. Reservations carry a TTL, so those of a
//!   replica that dies expire.
//! - **Quota** ([`SharedQuota`]): when a replica learns that a (backend,
//!   model) is exhausted (a 429, a zero `remaining`), it stores the fact
//!   with the reset as its TTL and publishes it; every replica keeps a
//!   mirror, so the others refuse before they call. Each replica also
//!   writes how many requests (and estimated tokens) it has in flight per
//!   key, and the quota tracker counts the others' against the remaining
//!   figures it read: replicas that last read `remaining: 5` send 5
//!   between them. A count is this replica's own key with a TTL
//!   ([`FleetBuilder::in_flight_ttl`], default 10 s) that it refreshes
//!   while the count is above zero, so the count of a replica that dies
//!   expires.
//! - **Breaker** ([`SharedBreaker`]): the open-until time is stored and
//!   published the same way; the half-open probe is a lease taken with
//!   `SET NX PX`, so exactly one replica probes, and its outcome closes or
//!   reopens the circuit for all. Each replica's counting window stays
//!   local (see [`SharedBreaker`]).
//!
//! # The hot path never depends on Redis
//!
//! Local state answers first: a request the local gates refuse costs no
//! remote call. Admission costs at most one round trip (the TPM
//! reservation, or the probe lease of a half-open breaker), bounded by
//! [`FleetBuilder::timeout`] (default 5 ms). Reconciles and published facts
//! (and in-flight counts: one write carries every change made while it
//! waited) go through a bounded queue written by a task of their own
//! ([`FleetBuilder::queue_capacity`]; overflow is counted in
//! [`FleetStats::dropped_writes`], never blocking). On a timeout or a lost
//! connection the replica decides from local state alone, emits
//! [`Event::SharedStateDegraded`](streamgate_core::Event::SharedStateDegraded)
//! once, reconnects with backoff, and emits `SharedStateRestored` when
//! sharing resumes. While degraded, the other replicas' in-flight counts
//! are forgotten (local counts alone decide); on reconnecting, a replica
//! writes its own again. [`FleetStats::round_trips`] counts the round
//! trips made for requests.
//!
//! Keys are `PREFIX:tpm:{backend/model}:…`, `PREFIX:quota:…`,
//! `PREFIX:open:…`, `PREFIX:probe:…`, `PREFIX:inflight:…:REPLICA` (the prefix is
//! [`FleetBuilder::prefix`], default `streamgate`); they hold backend and
//! model names, never an API key. The `redis://` URL is a secret when it
//! has a password: it is redacted in every `Debug` and error.
//!
//! # TLS
//!
//! With the `tls` feature (`redis-tls` of `streamgate`), `rediss://` and
//! `valkeys://` URLs connect over TLS, verifying the server against the
//! system's roots (`SSL_CERT_FILE` or `SSL_CERT_DIR` name others). The
//! feature brings rustls without a crypto provider feature, so depending on
//! it changes no other crate's rustls; the program installs the
//! process-wide provider, once, before building the fleet:
//!
//! ```no_run
//! # use streamgate_redis::Fleet;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! rustls::crypto::aws_lc_rs::default_provider()
//!     .install_default()
//!     .expect("no other provider was installed");
//! let fleet = Fleet::builder("rediss://:secret@redis.internal:6380/").build()?;
//! # drop(fleet);
//! # Ok(())
//! # }
//! ```
//!
//! Without a provider, [`FleetBuilder::build`] returns an error saying so
//! (the client would panic when connecting); without the feature, a
//! `rediss://` URL is refused with the feature to enable. Unverified TLS
//! (`#insecure`) is refused.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use streamgate_failover::TpmLayer;
//! use streamgate_redis::Fleet;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fleet = Fleet::builder("redis://:secret@127.0.0.1:6379/").build()?;
//! // Every replica that builds its layer like this shares one budget.
//! let tpm = TpmLayer::builder("openai")
//!     .max_tokens_per_minute(30_000)
//!     .shared(fleet.tpm())
//!     .build()?;
//! # drop(tpm);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod fleet;
mod in_flight;
mod mirror;
mod scripts;
mod shared;

pub use fleet::{Fleet, FleetBuilder, FleetError, FleetStats};
pub use streamgate_core::state::{SharedBreaker, SharedQuota, SharedState, SharedTpm};
