//! The background job the writer thread runs: roll finished hours up into
//! the `hourly` table, and apply retention.

use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection};

use crate::row::epoch_ms;

/// One hour in milliseconds.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// How long after an hour ends it is rolled up: 10 minutes, so that a
/// request which started in it and is still streaming when the hour ends is
/// stored before its hour is summed. Until then the hour is read from raw rows.
pub const ROLLUP_GRACE: Duration = Duration::from_secs(600);

/// How much to keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
}

/// The first instant not yet rolled up at `now`: the start of the hour that
/// contains `now − grace`.
pub(crate) fn rollup_target(now_ms: i64) -> i64 {
    let grace = i64::try_from(ROLLUP_GRACE.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(grace).div_euclid(HOUR_MS) * HOUR_MS
}

/// Rolls up every hour that ended more than [`ROLLUP_GRACE`] before `now`
/// and has not been rolled up, then deletes what retention no longer keeps.
/// Returns the rows deleted and how far the rollup now reaches.
pub(crate) fn run(
    conn: &mut Connection,
    now: SystemTime,
    retention: &Retention,
) -> rusqlite::Result<(u64, i64)> {
    let now_ms = epoch_ms(now);
    let tx = conn.transaction()?;
    let rolled: i64 = tx.query_row("SELECT rolled_until_ms FROM rollup_state", [], |r| r.get(0))?;
    let target = rollup_target(now_ms);
    if target > rolled {
        tx.execute(
            "INSERT INTO hourly (hour_ms, backend, provider, model, outcome, class,
                input_category, output_category, requests, input_tokens, output_tokens,
                duration_ms_sum, decode_samples, decode_tokens_per_sec_sum)
             SELECT (started_at_ms / 3600000) * 3600000, backend, provider, model, outcome,
                coalesce(class, ''), input_category, output_category, count(*),
                total(coalesce(input_tokens, 0)), total(output_tokens), total(duration_ms),
                count(decode_tokens_per_sec), total(decode_tokens_per_sec)
             FROM requests
             WHERE started_at_ms >= ?1 AND started_at_ms < ?2
             GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
             ON CONFLICT DO UPDATE SET
                requests = requests + excluded.requests,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                duration_ms_sum = duration_ms_sum + excluded.duration_ms_sum,
                decode_samples = decode_samples + excluded.decode_samples,
                decode_tokens_per_sec_sum =
                    decode_tokens_per_sec_sum + excluded.decode_tokens_per_sec_sum",
            params![rolled, target],
        )?;
        tx.execute(
            "UPDATE rollup_state SET rolled_until_ms = ?1",
            params![target],
        )?;
    }
    let max_age = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(max_age);
    let mut pruned = 0;
    pruned += tx.execute(
        "DELETE FROM requests WHERE started_at_ms < ?1",
        params![cutoff],
    )?;
    pruned += tx.execute("DELETE FROM events WHERE at_ms < ?1", params![cutoff])?;
    pruned += tx.execute("DELETE FROM hourly WHERE hour_ms < ?1", params![cutoff])?;
    let keep = i64::try_from(retention.max_rows).unwrap_or(i64::MAX);
    // Row ids grow with insertion, so the lowest ids are the oldest rows.
    pruned += tx.execute(
        "DELETE FROM requests WHERE id <= (SELECT id FROM requests ORDER BY id DESC
            LIMIT 1 OFFSET ?1)",
        params![keep],
    )?;
    tx.commit()?;
    Ok((pruned as u64, target.max(rolled)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rollup_target_waits_out_the_grace_after_an_hour() {
        let hour = HOUR_MS;
        // Five minutes into hour 10: hour 9 is still within its grace.
        assert_eq!(rollup_target(10 * hour + 300_000), 9 * hour);
        // Eleven minutes in: hour 9 is final.
        assert_eq!(rollup_target(10 * hour + 660_000), 10 * hour);
        assert_eq!(rollup_target(0), -hour);
    }
}
