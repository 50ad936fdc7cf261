//! What the writer thread receives: owned copies of the events worth keeping,
//! made on the request path with as little work as possible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Statement, Transaction};
use streamgate_core::{BackendId, Event, Outcome, RequestRecord};
use streamgate_metrics::InputSize;

use crate::maintenance::HOUR_MS;

/// Milliseconds since the Unix epoch; times before it are 0, times past
/// `i64::MAX` ms saturate.
pub(crate) fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// SQLite integers are signed: counts past `i64::MAX` saturate.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Longest model name stored: 256 bytes; longer names (they come from
/// callers) are cut at a character boundary.
pub(crate) const MAX_NAME_LEN: usize = 256;

fn capped(name: &str) -> Box<str> {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].into()
}

/// The outcome's kind as stored in the `outcome` column.
pub(crate) fn outcome_kind(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failed(_) => "failed",
        Outcome::TimedOut(_) => "timed_out",
        Outcome::Cancelled => "cancelled",
        Outcome::Truncated => "truncated",
    }
}

/// One finished request, owned.
#[derive(Debug)]
pub(crate) struct RequestRow {
    started_at_ms: i64,
    pub(crate) backend: BackendId,
    model: Box<str>,
    outcome: Outcome,
    time_to_first_chunk: Option<Duration>,
    time_to_first_content: Option<Duration>,
    duration: Duration,
    output_duration: Option<Duration>,
    estimated_tokens: u64,
    usage: Option<streamgate_core::Usage>,
    output_tokens: u64,
    streamed_output_tokens: u64,
    chunks: u64,
    decode: Option<f64>,
    end_to_end: Option<f64>,
    burst: Option<f64>,
}

impl RequestRow {
    pub(crate) fn new(record: &RequestRecord<'_>) -> Self {
        Self {
            started_at_ms: epoch_ms(record.started_at),
            backend: record.backend.clone(),
            model: capped(record.model),
            outcome: record.outcome,
            time_to_first_chunk: record.time_to_first_chunk,
            time_to_first_content: record.time_to_first_content,
            duration: record.duration,
            output_duration: record.output_duration,
            estimated_tokens: record.estimated_tokens,
            usage: record.usage,
            output_tokens: record.output_tokens(),
            streamed_output_tokens: record.streamed_output_tokens,
            chunks: record.chunks,
            decode: record.decode_tokens_per_sec(),
            end_to_end: record.end_to_end_tokens_per_sec(),
            burst: record.burst_tokens_per_sec,
        }
    }

    pub(crate) const INSERT: &'static str = "INSERT INTO requests (
            started_at_ms, backend, provider, model, outcome, class, timeout_kind,
            time_to_first_chunk_ms, time_to_first_content_ms, duration_ms, output_duration_ms,
            estimated_tokens, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
            streamed_output_tokens, chunks, decode_tokens_per_sec, end_to_end_tokens_per_sec,
            burst_tokens_per_sec, input_category, output_category)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23)";

    /// Inserts the row with `stmt`, prepared from [`Self::INSERT`] once per
    /// batch.
    pub(crate) fn insert(&self, stmt: &mut Statement<'_>, provider: &str) -> rusqlite::Result<()> {
        let class = self.class();
        let timeout_kind = match self.outcome {
            Outcome::TimedOut(kind) => Some(kind.as_str()),
            _ => None,
        };
        stmt.execute(params![
            self.started_at_ms,
            self.backend.as_str(),
            provider,
            &*self.model,
            outcome_kind(self.outcome),
            class,
            timeout_kind,
            self.time_to_first_chunk.map(ms),
            self.time_to_first_content.map(ms),
            ms(self.duration),
            self.output_duration.map(ms),
            int(self.estimated_tokens),
            self.usage.map(|u| int(u.input_tokens)),
            int(self.output_tokens),
            self.usage.map(|u| int(u.cached_input_tokens)),
            self.usage.map(|u| int(u.reasoning_tokens)),
            int(self.streamed_output_tokens),
            int(self.chunks),
            self.decode,
            self.end_to_end,
            self.burst,
            InputSize::from_estimate(self.estimated_tokens).as_str(),
            InputSize::from_estimate(self.output_tokens).as_str(),
        ])?;
        Ok(())
    }
}

impl RequestRow {
    /// When it started, milliseconds since the Unix epoch.
    pub(crate) fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }

    /// Adds this row to its hour in the `hourly` table: for a row that
    /// arrives after its hour was rolled up (a long request, or a clock
    /// that was behind), so the rollup stays equal to the raw rows.
    pub(crate) fn add_to_hourly(
        &self,
        tx: &Transaction<'_>,
        provider: &str,
    ) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO hourly (hour_ms, backend, provider, model, outcome, class,
                input_category, output_category, requests, input_tokens, output_tokens,
                duration_ms_sum, decode_samples, decode_tokens_per_sec_sum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO UPDATE SET
                requests = requests + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                duration_ms_sum = duration_ms_sum + excluded.duration_ms_sum,
                decode_samples = decode_samples + excluded.decode_samples,
                decode_tokens_per_sec_sum =
                    decode_tokens_per_sec_sum + excluded.decode_tokens_per_sec_sum",
        )?;
        stmt.execute(params![
            self.started_at_ms.div_euclid(HOUR_MS) * HOUR_MS,
            self.backend.as_str(),
            provider,
            &*self.model,
            outcome_kind(self.outcome),
            self.class().unwrap_or(""),
            InputSize::from_estimate(self.estimated_tokens).as_str(),
            InputSize::from_estimate(self.output_tokens).as_str(),
            self.usage.map_or(0, |u| int(u.input_tokens)),
            int(self.output_tokens),
            ms(self.duration),
            i64::from(self.decode.is_some()),
            self.decode.unwrap_or(0.0),
        ])?;
        Ok(())
    }

    fn class(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Success => None,
            Outcome::Failed(class) => Some(class.as_str()),
            Outcome::TimedOut(_) => Some("timeout"),
            Outcome::Cancelled => Some("cancelled"),
            Outcome::Truncated => Some("truncated"),
        }
    }
}

/// One event other than a request, owned.
#[derive(Debug, Default)]
pub(crate) struct EventRow {
    at_ms: i64,
    kind: &'static str,
    backend: Option<BackendId>,
    model: Option<Box<str>>,
    reason: Option<&'static str>,
    retry_after: Option<Duration>,
    from_state: Option<Box<str>>,
    to_state: Option<Box<str>>,
    quota_state: Option<&'static str>,
    exhausted_for: Option<Duration>,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
    waited: Option<Duration>,
    count: Option<u64>,
}

/// What the `kind` column says for each kind of event.
pub(crate) mod kind {
    /// A gate refused a request.
    pub const REJECTED: &str = "rejected";
    /// A breaker changed state.
    pub const BREAKER: &str = "breaker";
    /// A quota tracker learned something.
    pub const QUOTA: &str = "quota";
    /// A request waited to stay under a rate.
    pub const THROTTLED: &str = "throttled";
    /// Failover moved on from a backend.
    pub const FAILOVER: &str = "failover";
    /// The store's queue was full and records were dropped.
    pub const DROPPED: &str = "dropped";
}

impl EventRow {
    /// The row for `event`, or `None` for events the store does not keep
    /// (starts and first chunks are inside the completed record).
    pub(crate) fn new(event: &Event<'_>, now: SystemTime) -> Option<Self> {
        let at_ms = epoch_ms(now);
        let row = match event {
            Event::Rejected {
                backend,
                model,
                reason,
                retry_after,
            } => Self {
                at_ms,
                kind: kind::REJECTED,
                backend: Some((*backend).clone()),
                model: Some(capped(model)),
                reason: Some(reason.as_str()),
                retry_after: *retry_after,
                ..Self::default()
            },
            Event::BreakerTransition {
                backend,
                model,
                from,
                to,
                // Not stored yet, as for quota updates.
                wait_capped: _,
            } => Self {
                at_ms,
                kind: kind::BREAKER,
                backend: Some((*backend).clone()),
                model: model.map(capped),
                from_state: Some(from.as_str().into()),
                to_state: Some(to.as_str().into()),
                ..Self::default()
            },
            Event::QuotaUpdate {
                backend,
                model,
                state,
                exhausted_for,
                remaining_requests,
                remaining_tokens,
                // Not stored yet: the cap is visible in `exhausted_for`.
                wait_capped: _,
            } => Self {
                at_ms,
                kind: kind::QUOTA,
                backend: Some((*backend).clone()),
                model: Some(capped(model)),
                quota_state: Some(state.as_str()),
                exhausted_for: *exhausted_for,
                remaining_requests: *remaining_requests,
                remaining_tokens: *remaining_tokens,
                ..Self::default()
            },
            Event::Throttled {
                backend,
                model,
                waited,
            } => Self {
                at_ms,
                kind: kind::THROTTLED,
                backend: Some((*backend).clone()),
                model: Some(capped(model)),
                waited: Some(*waited),
                ..Self::default()
            },
            Event::Failover {
                from,
                to,
                model,
                reason,
            } => Self {
                at_ms,
                kind: kind::FAILOVER,
                backend: Some((*from).clone()),
                model: Some(capped(model)),
                reason: Some(reason.as_str()),
                to_state: to.map(|t| t.as_str().into()),
                ..Self::default()
            },
            _ => return None,
        };
        Some(row)
    }

    /// The event saying `count` records were dropped since the last one.
    pub(crate) fn dropped(count: u64, now: SystemTime) -> Self {
        Self {
            at_ms: epoch_ms(now),
            kind: kind::DROPPED,
            count: Some(count),
            ..Self::default()
        }
    }

    pub(crate) const INSERT: &'static str =
        "INSERT INTO events (at_ms, kind, backend, model, reason, retry_after_ms, from_state,
                to_state, quota_state, exhausted_for_ms, remaining_requests, remaining_tokens,
                waited_ms, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

    /// Inserts the row with `stmt`, prepared from [`Self::INSERT`].
    pub(crate) fn insert(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.execute(params![
            self.at_ms,
            self.kind,
            self.backend.as_ref().map(BackendId::as_str),
            self.model.as_deref(),
            self.reason,
            self.retry_after.map(ms),
            self.from_state.as_deref(),
            self.to_state.as_deref(),
            self.quota_state,
            self.exhausted_for.map(ms),
            self.remaining_requests.map(int),
            self.remaining_tokens.map(int),
            self.waited.map(ms),
            self.count.map(int),
        ])?;
        Ok(())
    }
}

/// A message to the writer thread.
#[derive(Debug)]
pub(crate) enum Message {
    Request(Box<RequestRow>),
    Event(Box<EventRow>),
    /// The store is closing: write what is queued, then stop.
    Close,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_NAME_LEN);
        assert_eq!(cut.chars().count(), MAX_NAME_LEN / 2);
        assert_eq!(&*capped("gpt-4o"), "gpt-4o");
    }
}
