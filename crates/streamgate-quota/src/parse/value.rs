//! Single header values: counts, durations and timestamps, read from bytes.
//!
//! Every function returns `None` for anything it does not fully understand;
//! none of them panics or guesses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NANOS_PER_MS: u128 = 1_000_000;

/// Trims ASCII whitespace from both ends.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// The comma-separated members of a value (a header repeated on one line).
pub(crate) fn members(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b',')
        .map(trim)
        .filter(|m| !m.is_empty())
}

/// A non-negative integer count. Signs, fractions and overflow give `None`
/// (Azure's `-1` means "unknown", not zero).
pub(crate) fn count(bytes: &[u8]) -> Option<u64> {
    let bytes = trim(bytes);
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A signed integer count as sent (`-1`, `0`, `42`). A `+`, fractions and
/// anything beyond `i64` give `None`.
pub(crate) fn signed_count(bytes: &[u8]) -> Option<i64> {
    let bytes = trim(bytes);
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let magnitude = i64::try_from(count(digits)?).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A reset duration read by `parse`, where a leading `-` (`-1.5s`, `-5`)
/// means the reset already happened: zero. The rest must still be a valid
/// value, so `-abc` stays `None`.
pub(crate) fn reset_with_sign(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> Option<Duration>,
) -> Option<Duration> {
    match trim(bytes).split_first() {
        Some((b'-', rest)) => parse(rest).map(|_| Duration::ZERO),
        _ => parse(bytes),
    }
}

/// Whole nanoseconds rounded up to whole milliseconds.
pub(crate) fn ceil_ms(nanos: u128) -> Option<Duration> {
    let ms = nanos.div_ceil(NANOS_PER_MS);
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A non-negative decimal number (`12`, `0.5`, `86.4`) times `unit_nanos`,
/// in nanoseconds rounded up. Returns the nanoseconds and the bytes after the
/// number.
fn decimal_nanos(bytes: &[u8], unit_nanos: u128) -> Option<(u128, &[u8])> {
    let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int_part, rest) = bytes.split_at(int_len);
    let (frac_part, rest) = match rest.split_first() {
        Some((b'.', after)) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            after.split_at(n)
        }
        _ => (&rest[..0], rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut int: u128 = 0;
    for d in int_part {
        int = int.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let mut nanos = int.checked_mul(unit_nanos)?;
    // Digits beyond 18 cannot change the result by a nanosecond of any unit we
    // accept, except to round it up, which `extra` keeps.
    let kept = &frac_part[..frac_part.len().min(18)];
    let extra = frac_part[kept.len()..].iter().any(|d| *d != b'0');
    if !kept.is_empty() {
        let mut frac: u128 = 0;
        for d in kept {
            frac = frac * 10 + u128::from(d - b'0');
        }
        let scale = 10u128.pow(kept.len() as u32);
        let part = frac.checked_mul(unit_nanos)?.div_ceil(scale);
        nanos = nanos.checked_add(part)?;
    }
    if extra {
        nanos = nanos.checked_add(1)?;
    }
    Some((nanos, rest))
}

/// A non-negative decimal number of `unit_nanos`, the whole value, rounded
/// up to whole milliseconds: float seconds (`11.38`), `retry-after-ms`.
pub(crate) fn decimal(bytes: &[u8], unit_nanos: u128) -> Option<Duration> {
    match decimal_nanos(trim(bytes), unit_nanos)? {
        (nanos, []) => ceil_ms(nanos),
        _ => None,
    }
}

/// Seconds, possibly fractional.
pub(crate) fn seconds(bytes: &[u8]) -> Option<Duration> {
    decimal(bytes, 1_000_000_000)
}

/// A Go `time.Duration` string as OpenAI, Azure and Groq send it (`6m0s`,
/// `1m26.4s`, `172.799999ms`, `20ms`, `0s`, `1h2m`, `3µs`), or bare seconds
/// (`20`, `0.5`). Rounded up to whole milliseconds. A sign gives `None`.
pub(crate) fn go_duration(bytes: &[u8]) -> Option<Duration> {
    let mut rest = trim(bytes);
    if rest.is_empty() {
        return None;
    }
    if rest.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return seconds(rest);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Find the unit after the number first, so the number is scaled by it.
        let num_len = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let after = &rest[num_len..];
        let (unit, unit_len) = go_unit(after)?;
        let (nanos, leftover) = decimal_nanos(&rest[..num_len], unit)?;
        if !leftover.is_empty() {
            return None;
        }
        total = total.checked_add(nanos)?;
        rest = &after[unit_len..];
    }
    ceil_ms(total)
}

/// The unit at the start of `bytes`, in nanoseconds, and its length.
fn go_unit(bytes: &[u8]) -> Option<(u128, usize)> {
    const UNITS: [(&[u8], u128); 8] = [
        (b"ns", 1),
        (b"us", 1_000),
        ("µs".as_bytes(), 1_000), // U+00B5 MICRO SIGN
        ("μs".as_bytes(), 1_000), // U+03BC GREEK SMALL LETTER MU
        (b"ms", 1_000_000),
        (b"s", 1_000_000_000),
        (b"m", 60_000_000_000),
        (b"h", 3_600_000_000_000),
    ];
    // Longest match first: `ms` before `m`, `ns`/`us` before `s`.
    UNITS
        .iter()
        .filter(|(name, _)| bytes.starts_with(name))
        .max_by_key(|(name, _)| name.len())
        .map(|(name, nanos)| (*nanos, name.len()))
}

/// How long from `now` until `at`; zero when `at` is already past.
pub(crate) fn until(at: SystemTime, now: SystemTime) -> Option<Duration> {
    match at.duration_since(now) {
        Ok(d) => ceil_ms(d.as_nanos()),
        Err(_) => Some(Duration::ZERO),
    }
}

/// An RFC 3339 timestamp (`2025-01-01T12:00:30Z`, `…30.5+02:00`, lowercase
/// `t`/`z` or a space separator accepted), strict about every field.
pub(crate) fn rfc3339(bytes: &[u8]) -> Option<SystemTime> {
    let b = trim(bytes);
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let at = |i: usize| b.get(i).copied();
    if at(4)? != b'-' || at(7)? != b'-' || !matches!(at(10)?, b'T' | b't' | b' ') {
        return None;
    }
    if at(13)? != b':' || at(16)? != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it reads as the first second of the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_nanos: u64 = 0;
    if at(i) == Some(b'.') {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (k, d) in b[i + 1..i + 1 + digits].iter().enumerate().take(9) {
            frac_nanos += u64::from(d - b'0') * 10u64.pow(8 - k as u32);
        }
        i += 1 + digits;
    }
    let offset_secs = match at(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && at(i + 3)? == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, frac_nanos as u32))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An HTTP-date in any of the three formats HTTP allows (IMF-fixdate,
/// RFC 850, asctime).
pub(crate) fn http_date(bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(trim(bytes)).ok()?;
    httpdate::parse_http_date(text).ok()
}

/// `true`/`false`, any case.
pub(crate) fn boolean(bytes: &[u8]) -> Option<bool> {
    let b = trim(bytes);
    if b.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if b.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// A reset that may be an absolute epoch time or a delay, as the
/// `X-RateLimit-Reset` family sends it: at least 10^12 is epoch
/// milliseconds (OpenRouter), at least 10^9 epoch seconds (GitHub style),
/// anything smaller a delay in seconds.
pub(crate) fn epoch_or_delay(bytes: &[u8], now: SystemTime) -> Option<Duration> {
    reset_with_sign(bytes, |b| epoch_or_delay_unsigned(b, now))
}

fn epoch_or_delay_unsigned(bytes: &[u8], now: SystemTime) -> Option<Duration> {
    let b = trim(bytes);
    if let Some(n) = count(b) {
        if n >= 1_000_000_000_000 {
            return until(UNIX_EPOCH.checked_add(Duration::from_millis(n))?, now);
        }
        if n >= 1_000_000_000 {
            return until(UNIX_EPOCH.checked_add(Duration::from_secs(n))?, now);
        }
    }
    seconds(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn go_durations_in_every_shape_openai_sends() {
        assert_eq!(go_duration(b"6m0s"), ms(360_000));
        assert_eq!(go_duration(b"1m26.4s"), ms(86_400));
        assert_eq!(go_duration(b"172.799999ms"), ms(173));
        assert_eq!(go_duration(b"20ms"), ms(20));
        assert_eq!(go_duration(b"0s"), ms(0));
        assert_eq!(go_duration(b"1h2m3s"), ms(3_723_000));
        assert_eq!(go_duration(b" 7s "), ms(7_000));
        assert_eq!(go_duration(b"20"), ms(20_000));
        assert_eq!(go_duration(b"0.25"), ms(250));
    }

    #[test]
    fn sub_millisecond_units_round_up_to_one_millisecond() {
        assert_eq!(go_duration("3µs".as_bytes()), ms(1));
        assert_eq!(go_duration("3μs".as_bytes()), ms(1));
        assert_eq!(go_duration(b"3us"), ms(1));
        assert_eq!(go_duration(b"1ns"), ms(1));
        assert_eq!(go_duration(b"1000000ns"), ms(1));
        assert_eq!(go_duration(b"1000001ns"), ms(2));
        assert_eq!(go_duration(b"1.0000001ms"), ms(2));
    }

    #[test]
    fn go_duration_garbage_is_none() {
        for bad in [
            &b""[..],
            b"-1",
            b"-5s",
            b"+5s",
            b"5x",
            b"s",
            b"5s5",
            b"1..2s",
            b"nan",
            b"99999999999999999999999999999999999h",
            b"\xff\xfe",
        ] {
            assert_eq!(go_duration(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn counts_reject_signs_fractions_and_overflow() {
        assert_eq!(count(b"42"), Some(42));
        assert_eq!(count(b" 0 "), Some(0));
        assert_eq!(count(b"-1"), None);
        assert_eq!(count(b"+1"), None);
        assert_eq!(count(b"1.5"), None);
        assert_eq!(count(b"18446744073709551616"), None);
        assert_eq!(count(b""), None);
    }

    #[test]
    fn signed_counts_keep_their_sign() {
        assert_eq!(signed_count(b"-1"), Some(-1));
        assert_eq!(signed_count(b" -2048 "), Some(-2048));
        assert_eq!(signed_count(b"0"), Some(0));
        assert_eq!(signed_count(b"-0"), Some(0));
        assert_eq!(signed_count(b"+1"), None);
        assert_eq!(signed_count(b"--1"), None);
        assert_eq!(signed_count(b"-"), None);
        assert_eq!(signed_count(b"9223372036854775808"), None);
        assert_eq!(signed_count(b"-9223372036854775807"), Some(-i64::MAX));
    }

    #[test]
    fn negative_resets_mean_already_reset() {
        assert_eq!(reset_with_sign(b"-1.5s", go_duration), ms(0));
        assert_eq!(reset_with_sign(b" -5 ", seconds), ms(0));
        assert_eq!(reset_with_sign(b"-abc", seconds), None);
        assert_eq!(reset_with_sign(b"--5", seconds), None);
        assert_eq!(reset_with_sign(b"5", seconds), ms(5000));
    }

    #[test]
    fn float_seconds_round_up() {
        assert_eq!(seconds(b"11.382867"), ms(11_383));
        assert_eq!(seconds(b"33011.382867"), ms(33_011_383));
        assert_eq!(seconds(b".5"), ms(500));
        assert_eq!(seconds(b"1e3"), None);
        assert_eq!(seconds(b"-0.5"), None);
        assert_eq!(decimal(b"174.2", 1_000_000), ms(175));
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let base = UNIX_EPOCH + Duration::from_secs(1_735_732_800); // 2025-01-01T12:00:00Z
        assert_eq!(rfc3339(b"2025-01-01T12:00:00Z"), Some(base));
        assert_eq!(rfc3339(b"2025-01-01t12:00:00z"), Some(base));
        assert_eq!(rfc3339(b"2025-01-01T14:00:00+02:00"), Some(base));
        assert_eq!(rfc3339(b"2025-01-01T07:30:00-04:30"), Some(base));
        assert_eq!(
            rfc3339(b"2025-01-01T12:00:00.25Z"),
            Some(base + Duration::from_millis(250))
        );
        assert_eq!(
            rfc3339(b"2024-02-29T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        for bad in [
            &b"2025-01-01 12:00:00"[..],
            b"2025-13-01T00:00:00Z",
            b"2023-02-29T00:00:00Z",
            b"2025-01-01T24:00:00Z",
            b"2025-01-01T12:00:00+2:00",
            b"2025-01-01T12:00:00.Z",
            b"2025-01-01T12:00:00Zjunk",
            b"2025-1-01T12:00:00Z",
            b"1700000000",
        ] {
            assert_eq!(rfc3339(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(at));
        assert_eq!(http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(at));
        assert_eq!(http_date(b"Sun Nov  6 08:49:37 1994"), Some(at));
        assert_eq!(http_date(b"yesterday"), None);
    }

    #[test]
    fn epoch_resets_by_magnitude() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(epoch_or_delay(b"1700000012500", now), ms(12_500));
        assert_eq!(epoch_or_delay(b"1700000030", now), ms(30_000));
        assert_eq!(epoch_or_delay(b"30", now), ms(30_000));
        assert_eq!(epoch_or_delay(b"1600000000000", now), ms(0));
        assert_eq!(epoch_or_delay(b"-30", now), ms(0));
        assert_eq!(epoch_or_delay(b"-x", now), None);
    }

    #[test]
    fn until_past_is_zero_and_future_rounds_up() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(until(UNIX_EPOCH, now), ms(0));
        assert_eq!(until(now + Duration::from_micros(1), now), ms(1));
    }
}
