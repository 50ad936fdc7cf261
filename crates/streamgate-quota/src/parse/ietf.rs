//! The IETF `RateLimit` / `RateLimit-Policy` fields
//! (draft-ietf-httpapi-ratelimit-headers), in the forms the drafts have used:
//!
//! - drafts up to 06: separate `RateLimit-Limit`, `RateLimit-Remaining`,
//!   `RateLimit-Reset` (delay seconds) — read by the caller as plain numbers;
//! - draft 07: `RateLimit: limit=100, remaining=50, reset=50` (a dictionary)
//!   with `RateLimit-Policy: 100;w=60` (a list of integers with a window);
//! - draft 08 and later: `RateLimit-Policy: "day";q=1000;w=86400` and
//!   `RateLimit: "day";r=50;t=30` (lists of named items with parameters).
//!
//! Quota units (`qu`) other than `requests` (the default) are ignored,
//! except `tokens`, which is not in the draft but is what an LLM gateway
//! would send and maps onto the token limit.

use std::time::Duration;

use super::value::{count, seconds, trim};

/// What a policy or a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Requests,
    Tokens,
}

/// The strictest item of the `RateLimit` field for one unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) limit: Option<u64>,
    pub(crate) remaining: Option<u64>,
    pub(crate) reset: Option<Duration>,
    pub(crate) window: Option<Duration>,
}

impl Item {
    /// Whether `self` is stricter than `other`: less remaining, or the same
    /// remaining for longer, then the smaller limit, then the shorter
    /// window. Items without a remaining count lose. A total order, so the
    /// strictest item does not depend on the order members were sent in.
    fn stricter_than(&self, other: &Item) -> bool {
        self.strictness() < other.strictness()
    }

    fn strictness(&self) -> impl Ord {
        (
            self.remaining.is_none(),
            self.remaining,
            std::cmp::Reverse(self.reset),
            self.limit.is_none(),
            self.limit,
            self.window.is_none(),
            self.window,
        )
    }
}

/// The most members read from all `RateLimit` values together, and again
/// from all `RateLimit-Policy` values: real servers send a handful, and the
/// cap bounds the work one response can cause (each limit item looks its
/// policy up among at most this many).
pub const MAX_MEMBERS: usize = 64;

/// Splits on `sep` outside double quotes.
fn split_outside_quotes(bytes: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut i = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            if quoted {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => quoted = false,
                    _ => {}
                }
            } else if b == b'"' {
                quoted = true;
            } else if b == sep {
                let piece = &bytes[start..i - 1];
                start = i;
                return Some(trim(piece));
            }
        }
        done = true;
        Some(trim(&bytes[start..]))
    })
    .filter(|piece| !piece.is_empty())
}

/// `"name"` → `name`; a token stays as it is.
fn unquote(bytes: &[u8]) -> &[u8] {
    match bytes {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

/// The value of parameter `key` of a member (`item;key=value;...`).
fn param<'a>(member: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    split_outside_quotes(member, b';').skip(1).find_map(|p| {
        let (k, v) = split_once(p, b'=')?;
        (trim(k) == key).then(|| unquote(trim(v)))
    })
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|b| *b == sep)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

fn unit_of(member: &[u8]) -> Option<Unit> {
    match param(member, b"qu") {
        None | Some(b"requests") => Some(Unit::Requests),
        Some(b"tokens") => Some(Unit::Tokens),
        Some(_) => None,
    }
}

/// The first piece of a member (its bare item, or `key=value` in a
/// dictionary).
fn head(member: &[u8]) -> &[u8] {
    split_outside_quotes(member, b';').next().unwrap_or(&[])
}

/// One `RateLimit-Policy` member, read once.
struct Policy<'a> {
    name: &'a [u8],
    unit: Option<Unit>,
    quota: Option<u64>,
    window: Option<Duration>,
    /// Draft 07 policies are a bare integer limit.
    bare_limit: Option<u64>,
}

/// Reads the `RateLimit` values against the `RateLimit-Policy` values seen,
/// and returns the strictest item for each unit. At most [`MAX_MEMBERS`]
/// members of each field are read, so the work is linear in the input.
pub(crate) fn parse<'a>(
    ratelimit: impl Iterator<Item = &'a [u8]>,
    policies: &[&'a [u8]],
) -> (Option<Item>, Option<Item>) {
    let mut requests: Option<Item> = None;
    let mut tokens: Option<Item> = None;
    let mut keep = |unit: Unit, item: Item| {
        let slot = match unit {
            Unit::Requests => &mut requests,
            Unit::Tokens => &mut tokens,
        };
        if slot.as_ref().is_none_or(|old| item.stricter_than(old)) {
            *slot = Some(item);
        }
    };
    let policies: Vec<Policy<'a>> = policies
        .iter()
        .flat_map(|p| split_outside_quotes(p, b','))
        .take(MAX_MEMBERS)
        .map(|p| Policy {
            name: unquote(head(p)),
            unit: unit_of(p),
            quota: param(p, b"q").and_then(count),
            window: param(p, b"w").and_then(seconds),
            bare_limit: count(head(p)),
        })
        .collect();

    let mut dict = Item::default();
    let mut is_dict = false;
    let members = ratelimit
        .flat_map(|value| split_outside_quotes(value, b','))
        .take(MAX_MEMBERS);
    for member in members {
        let first = head(member);
        match split_once(first, b'=') {
            // Draft 07 dictionary member: `limit=100`. A repeated key keeps
            // the stricter value, whatever the order.
            Some((key, v)) if !first.starts_with(b"\"") => {
                is_dict = true;
                match trim(key) {
                    b"limit" => dict.limit = min_some(dict.limit, count(v)),
                    b"remaining" => dict.remaining = min_some(dict.remaining, count(v)),
                    b"reset" => dict.reset = dict.reset.max(seconds(v)),
                    _ => {}
                }
            }
            // Draft 08+ list item: `"name";r=50;t=30`.
            _ => {
                let name = unquote(first);
                let policy = lookup(&policies, name);
                let Some(unit) = policy.map_or(Some(Unit::Requests), |p| p.unit) else {
                    continue;
                };
                keep(
                    unit,
                    Item {
                        limit: policy.and_then(|p| p.quota),
                        remaining: param(member, b"r").and_then(count),
                        reset: param(member, b"t").and_then(seconds),
                        window: policy.and_then(|p| p.window),
                    },
                );
            }
        }
    }
    if is_dict {
        // Draft 07 policies are `limit;w=window`: the one whose limit
        // matches, else the first.
        // Draft 07 policies are `limit;w=window`: the shortest window of
        // those whose limit matches, else of those with the smallest limit
        // (the strictest reading, whatever the order they were sent in).
        let bare = |limit: Option<u64>| {
            policies
                .iter()
                .filter(move |p| p.bare_limit.is_some() && p.bare_limit == limit)
                .filter_map(|p| p.window)
                .min()
        };
        let smallest = policies.iter().filter_map(|p| p.bare_limit).min();
        dict.window = dict
            .limit
            .and_then(|l| bare(Some(l)))
            .or_else(|| bare(smallest));
        keep(Unit::Requests, dict);
    }
    (requests, tokens)
}

/// The policy named `name`. When several share the name, the strictest
/// reading of them: the smallest quota and window, and no unit when they
/// disagree on it.
fn lookup(policies: &[Policy<'_>], name: &[u8]) -> Option<Found> {
    policies
        .iter()
        .filter(|p| p.name == name)
        .fold(None, |found: Option<Found>, p| {
            Some(match found {
                None => Found {
                    unit: p.unit,
                    quota: p.quota,
                    window: p.window,
                },
                Some(f) => Found {
                    unit: if f.unit == p.unit { f.unit } else { None },
                    quota: min_some(f.quota, p.quota),
                    window: match (f.window, p.window) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                },
            })
        })
}

#[derive(Clone, Copy)]
struct Found {
    unit: Option<Unit>,
    quota: Option<u64>,
    window: Option<Duration>,
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn draft_07_dictionary_with_policy_window() {
        let (req, tok) = parse(
            [&b"limit=100, remaining=50, reset=30"[..]].into_iter(),
            &[b"10;w=1, 100;w=60"],
        );
        assert_eq!(
            req,
            Some(Item {
                limit: Some(100),
                remaining: Some(50),
                reset: secs(30),
                window: secs(60),
            })
        );
        assert_eq!(tok, None);
    }

    #[test]
    fn draft_08_named_items_pick_the_strictest_per_unit() {
        let (req, tok) = parse(
            [&br#""minute";r=0;t=12, "day";r=900;t=40000, "tpm";r=5000;t=3"#[..]].into_iter(),
            &[br#""minute";q=60;w=60, "day";q=1000;w=86400, "tpm";q=90000;w=60;qu="tokens""#],
        );
        assert_eq!(
            req,
            Some(Item {
                limit: Some(60),
                remaining: Some(0),
                reset: secs(12),
                window: secs(60),
            })
        );
        assert_eq!(tok.and_then(|t| t.remaining), Some(5000));
        assert_eq!(tok.and_then(|t| t.limit), Some(90000));
    }

    #[test]
    fn unknown_units_and_garbage_are_ignored() {
        let (req, tok) = parse(
            [&br#""bytes";r=0;t=5, "x";r=-1;t=abc"#[..]].into_iter(),
            &[br#""bytes";q=100;w=60;qu="content-bytes""#],
        );
        assert_eq!(
            req,
            Some(Item {
                limit: None,
                remaining: None,
                reset: None,
                window: None,
            })
        );
        assert_eq!(tok, None);
        let (req, _) = parse([&b"\"unterminated;r=3"[..]].into_iter(), &[]);
        assert_eq!(req.and_then(|r| r.remaining), None);
    }

    #[test]
    fn many_members_are_read_up_to_the_cap_in_linear_time() {
        let items: Vec<String> = (0..20_000).map(|i| format!("\"p{i}\";r={i};t=5")).collect();
        let policy: Vec<String> = (0..20_000)
            .map(|i| format!("\"p{i}\";q=100;w=60"))
            .collect();
        let (items, policy) = (items.join(","), policy.join(","));
        let (req, _) = parse([items.as_bytes()].into_iter(), &[policy.as_bytes()]);
        // Member 0 (r=0) is within the cap and the strictest.
        assert_eq!(req.and_then(|r| r.remaining), Some(0));
        assert_eq!(req.and_then(|r| r.limit), Some(100));
    }

    #[test]
    fn the_strictest_item_does_not_depend_on_member_order() {
        let a = br#""minute";r=5;t=10"#;
        let b = br#""day";r=5;t=10"#;
        let policy: &[&[u8]] = &[br#""minute";q=60;w=60, "day";q=1000;w=86400"#];
        let one = [&a[..], &b[..]].join(&b","[..]);
        let two = [&b[..], &a[..]].join(&b","[..]);
        let first = parse([one.as_slice()].into_iter(), policy);
        let second = parse([two.as_slice()].into_iter(), policy);
        assert_eq!(first, second);
        assert_eq!(first.0.and_then(|r| r.limit), Some(60));
    }
}
