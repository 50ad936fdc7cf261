//! The state traits on Redis.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use redis::aio::MultiplexedConnection;
use streamgate_core::state::{
    Exhaustion, OverBudget, Probe, Reserve, SharedBreaker, SharedQuota, SharedTpm, StateKey,
    TpmGrant,
};
use tokio::time::Instant;

use crate::{
    fleet::{Inner, Write, SLOTS},
    in_flight::Count,
};

/// Separates the fields of a published message (never in a sane name).
const SEP: char = '\u{1f}';

/// The longest wait a published fact is kept for: a day. A provider's
/// reset beyond it is cut, so outside input cannot pin a key for years.
const MAX_FACT: Duration = Duration::from_secs(86_400);

/// The state traits, on one fleet's connection.
#[derive(Debug)]
pub(crate) struct Shared(pub(crate) Arc<Inner>);

pub(crate) fn tpm_keys(fleet: &Inner, key: StateKey<'_>) -> [String; 3] {
    let backend = key.backend.as_str();
    [
        fleet.key("tpm", backend, key.model) + ":use",
        fleet.key("tpm", backend, key.model) + ":expiry",
        fleet.key("tpm", backend, key.model) + ":held",
    ]
}

fn ttl_ms(until: Instant) -> u64 {
    let ttl = until
        .saturating_duration_since(Instant::now())
        .min(MAX_FACT);
    (ttl.as_millis() as u64).max(1)
}

impl SharedTpm for Shared {
    fn reserve(&self, key: StateKey<'_>, tokens: u64, limit: u64) -> Reserve {
        let fleet = &self.0;
        let Some(mut conn) = fleet.connection() else {
            // Local state already admitted it: that is the answer.
            fleet.decided_locally();
            return Reserve::Granted(TpmGrant { id: 0, tokens });
        };
        let id = fleet.next_id.fetch_add(1, Ordering::Relaxed);
        let keys = tpm_keys(fleet, key);
        let member = fleet.reservation(id);
        let fleet = Arc::clone(fleet);
        let answer = Box::pin(async move {
            let mut call = fleet.reserve.prepare_invoke();
            call.key(&keys[0]).key(&keys[1]).key(&keys[2]);
            call.arg(tokens)
                .arg(limit)
                .arg(fleet.slot_ms)
                .arg(SLOTS)
                .arg(fleet.reservation_ttl_ms)
                .arg(member);
            fleet.round_trip();
            let reply =
                tokio::time::timeout(fleet.timeout, call.invoke_async::<(i64, i64)>(&mut conn))
                    .await;
            match reply {
                Ok(Ok((1, _))) => Ok(()),
                Ok(Ok((_, retry_ms))) => Err(OverBudget {
                    retry_after: u64::try_from(retry_ms).ok().map(Duration::from_millis),
                }),
                Ok(Err(error)) => {
                    fleet.degrade(&error.to_string());
                    fleet.decided_locally();
                    Ok(())
                }
                Err(_) => {
                    fleet.degrade("a reservation timed out");
                    fleet.decided_locally();
                    Ok(())
                }
            }
        });
        Reserve::Confirm(TpmGrant { id, tokens }, answer)
    }

    fn reconcile(&self, key: StateKey<'_>, grant: TpmGrant, used: u64) {
        if grant.id == 0 {
            return;
        }
        let fleet = &self.0;
        fleet.write_behind(Write::Reconcile {
            keys: tpm_keys(fleet, key),
            id: fleet.reservation(grant.id),
            used,
        });
    }

    fn current(&self, _key: StateKey<'_>) -> Option<u64> {
        // Reading it is a round trip; `Fleet::tpm_use` makes it.
        None
    }
}

impl SharedQuota for Shared {
    fn exhausted_until(&self, key: StateKey<'_>, now: Instant) -> Option<Exhaustion> {
        self.0
            .quota
            .get(key.backend.as_str(), key.model, || now)
            .map(|(until, reason)| Exhaustion { until, reason })
    }

    fn learn(&self, key: StateKey<'_>, until: Instant, reason: &str) {
        let fleet = &self.0;
        let ttl = ttl_ms(until);
        let backend = key.backend.as_str();
        let value = format!("{backend}{SEP}{reason}{SEP}{}", key.model);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(fleet.key("quota", backend, key.model))
            .arg(&value)
            .arg("PX")
            .arg(ttl)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&fleet.channel)
            .arg(format!("q{SEP}{:x}{SEP}{ttl}{SEP}{value}", fleet.replica))
            .ignore();
        fleet.write_behind(Write::Pipeline(pipe));
    }

    fn add_in_flight(&self, key: StateKey<'_>, requests: i64, tokens: i64) {
        let fleet = &self.0;
        if let Some(count) = fleet.in_flight.own(key.backend.as_str(), key.model) {
            count.add(requests, tokens);
            fleet.write_in_flight(&count);
        }
    }

    fn others_in_flight(&self, key: StateKey<'_>) -> (u64, u64) {
        self.0.in_flight.others(key.backend.as_str(), key.model)
    }
}

impl SharedBreaker for Shared {
    fn open_until(&self, key: StateKey<'_>) -> Option<Instant> {
        self.0
            .open
            .get(key.backend.as_str(), key.model, Instant::now)
            .map(|(_, until)| until)
    }

    fn publish_open(&self, key: StateKey<'_>, until: Instant, probe_within: Duration) {
        let fleet = &self.0;
        let mut pipe = redis::pipe();
        open(fleet, &mut pipe, key, until, probe_within);
        fleet.write_behind(Write::Pipeline(pipe));
    }

    fn take_probe(&self, key: StateKey<'_>, ttl: Duration) -> Probe {
        let fleet = &self.0;
        let Some(mut conn) = fleet.connection() else {
            fleet.decided_locally();
            return Probe::Granted;
        };
        let lease = fleet.key("probe", key.backend.as_str(), key.model);
        let ttl = (ttl.min(MAX_FACT).as_millis() as u64).max(1);
        let fleet = Arc::clone(fleet);
        Probe::Confirm(Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(lease)
                .arg(format!("{:x}", fleet.replica))
                .arg("NX")
                .arg("PX")
                .arg(ttl);
            fleet.round_trip();
            let reply =
                tokio::time::timeout(fleet.timeout, set.query_async::<Option<String>>(&mut conn))
                    .await;
            match reply {
                Ok(Ok(reply)) => reply.is_some(),
                Ok(Err(error)) => {
                    fleet.degrade(&error.to_string());
                    fleet.decided_locally();
                    true
                }
                Err(_) => {
                    fleet.degrade("a probe lease timed out");
                    fleet.decided_locally();
                    true
                }
            }
        }))
    }

    fn publish_outcome(&self, key: StateKey<'_>, reopened: Option<(Instant, Duration)>) {
        let fleet = &self.0;
        let backend = key.backend.as_str();
        let mut pipe = redis::pipe();
        match reopened {
            Some((until, probe_within)) => open(fleet, &mut pipe, key, until, probe_within),
            None => {
                // Our own message is not read back: forget the open here.
                fleet.open.remove(backend, key.model);
                pipe.cmd("DEL")
                    .arg(fleet.key("open", backend, key.model))
                    .ignore();
                pipe.cmd("PUBLISH")
                    .arg(&fleet.channel)
                    .arg(format!(
                        "c{SEP}{:x}{SEP}0{SEP}{backend}{SEP}{}",
                        fleet.replica, key.model
                    ))
                    .ignore();
            }
        }
        release(fleet, &mut pipe, key);
        fleet.write_behind(Write::Pipeline(pipe));
    }

    fn release_probe(&self, key: StateKey<'_>) {
        let fleet = &self.0;
        let mut pipe = redis::pipe();
        release(fleet, &mut pipe, key);
        fleet.write_behind(Write::Pipeline(pipe));
    }
}

/// Stores this replica's count of a key as it is now (deleted at zero)
/// with the in-flight TTL, and publishes it.
pub(crate) fn in_flight(fleet: &Inner, count: &Count) -> redis::Pipeline {
    let (requests, tokens) = count.read();
    let (backend, model) = (&*count.backend, &*count.model);
    let key = format!(
        "{}:{:x}",
        fleet.key("inflight", backend, model),
        fleet.replica
    );
    let value = format!(
        "{:x}{SEP}{requests}{SEP}{tokens}{SEP}{backend}{SEP}{model}",
        fleet.replica
    );
    let mut pipe = redis::pipe();
    let ttl = if (requests, tokens) == (0, 0) {
        pipe.cmd("DEL").arg(&key).ignore();
        0
    } else {
        let ttl = (fleet.in_flight_ttl.min(MAX_FACT).as_millis() as u64).max(1);
        pipe.cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("PX")
            .arg(ttl)
            .ignore();
        ttl
    };
    pipe.cmd("PUBLISH")
        .arg(&fleet.channel)
        .arg(format!("i{SEP}{:x}{SEP}{ttl}{SEP}{value}", fleet.replica))
        .ignore();
    pipe
}

/// Deletes the probe lease if this replica holds it.
fn release(fleet: &Inner, pipe: &mut redis::Pipeline, key: StateKey<'_>) {
    pipe.cmd("EVAL")
        .arg(crate::scripts::RELEASE)
        .arg(1)
        .arg(fleet.key("probe", key.backend.as_str(), key.model))
        .arg(format!("{:x}", fleet.replica))
        .ignore();
}

/// Stores and publishes an open until `until`, kept `probe_within` longer
/// (the half-open time): the total TTL, and the hold inside the value.
fn open(
    fleet: &Inner,
    pipe: &mut redis::Pipeline,
    key: StateKey<'_>,
    until: Instant,
    probe_within: Duration,
) {
    let hold = (probe_within.min(MAX_FACT).as_millis() as u64).max(1);
    let ttl = ttl_ms(until).saturating_add(hold);
    let backend = key.backend.as_str();
    let value = format!("{hold}{SEP}{backend}{SEP}{}", key.model);
    pipe.cmd("SET")
        .arg(fleet.key("open", backend, key.model))
        .arg(&value)
        .arg("PX")
        .arg(ttl)
        .ignore();
    pipe.cmd("PUBLISH")
        .arg(&fleet.channel)
        .arg(format!("o{SEP}{:x}{SEP}{ttl}{SEP}{value}", fleet.replica))
        .ignore();
}

/// Takes a message another replica published. Outside input: anything
/// malformed is ignored.
pub(crate) fn on_message(fleet: &Inner, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let mut fields = text.splitn(4, SEP);
    let (Some(kind), Some(replica), Some(ttl), Some(rest)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    if u64::from_str_radix(replica, 16) == Ok(fleet.replica) {
        return;
    }
    let Ok(ttl) = ttl.parse::<u64>() else { return };
    let until = Instant::now() + Duration::from_millis(ttl).min(MAX_FACT);
    remember(fleet, kind, until, rest);
}

/// Keeps the fact `value` (as stored: backend, [reason,] model) of `kind`.
fn remember(fleet: &Inner, kind: &str, until: Instant, value: &str) {
    match kind {
        "q" | "quota" => {
            let mut fields = value.splitn(3, SEP);
            if let (Some(backend), Some(reason), Some(model)) =
                (fields.next(), fields.next(), fields.next())
            {
                fleet.quota.insert(backend, model, until, reason.into());
            }
        }
        "o" | "open" => {
            let mut fields = value.splitn(3, SEP);
            if let (Some(Ok(hold)), Some(backend), Some(model)) = (
                fields.next().map(str::parse::<u64>),
                fields.next(),
                fields.next(),
            ) {
                let open_until = until
                    .checked_sub(Duration::from_millis(hold))
                    .unwrap_or(until);
                fleet.open.insert(backend, model, until, open_until);
            }
        }
        "i" | "inflight" => {
            let mut fields = value.splitn(5, SEP);
            let (Some(replica), Some(requests), Some(tokens), Some(backend), Some(model)) = (
                fields.next().map(|r| u64::from_str_radix(r, 16)),
                fields.next().map(str::parse::<u64>),
                fields.next().map(str::parse::<u64>),
                fields.next(),
                fields.next(),
            ) else {
                return;
            };
            if let (Ok(replica), Ok(requests), Ok(tokens)) = (replica, requests, tokens) {
                if replica != fleet.replica {
                    fleet
                        .in_flight
                        .set_other(backend, model, replica, (requests, tokens), until);
                }
            }
        }
        "c" => {
            if let Some((backend, model)) = value.split_once(SEP) {
                fleet.open.remove(backend, model);
            }
        }
        _ => {}
    }
}

/// The most keys of each kind read when (re)connecting.
const MAX_SEEDED: usize = 1024;

/// Reads what is already stored (facts published while this replica was
/// away), so a replica that starts or reconnects knows them at once.
pub(crate) async fn seed(
    fleet: &Inner,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    for kind in ["quota", "open", "inflight"] {
        let pattern = format!("{}:{kind}:*", fleet.prefix);
        let mut cursor = 0u64;
        let mut seen = 0usize;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(256)
                .query_async(conn)
                .await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
                }
                let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
                for pair in replies.chunks_exact(2) {
                    let value = redis::from_redis_value::<Option<String>>(&pair[0]);
                    let ttl = redis::from_redis_value::<i64>(&pair[1]);
                    if let (Ok(Some(value)), Ok(Ok(ttl))) = (value, ttl.map(u64::try_from)) {
                        let until = Instant::now() + Duration::from_millis(ttl).min(MAX_FACT);
                        remember(fleet, kind, until, &value);
                    }
                }
            }
            seen += keys.len();
            cursor = next;
            if cursor == 0 || seen >= MAX_SEEDED {
                break;
            }
        }
    }
    Ok(())
}
