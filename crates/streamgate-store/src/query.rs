//! The query API: filters, percentiles, grouped counts, hourly buckets.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rusqlite::{
    types::{Type, Value},
    Connection, Row,
};
use serde::Serialize;
use streamgate_metrics::InputSize;

use crate::{
    maintenance::HOUR_MS,
    percentile::{percentile, validate},
    row::epoch_ms,
    QueryError, Store,
};

/// The longest time range a query may cover: 30 days. A longer one is a
/// [`QueryError::RangeTooLong`], never silently cut.
pub const MAX_RANGE: Duration = Duration::from_secs(30 * 86_400);

/// A half-open span of wall-clock time, `[from, to)`, at most [`MAX_RANGE`]
/// long. Requests are placed in time by when they started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    /// Start, milliseconds since the Unix epoch (inclusive).
    pub from_ms: i64,
    /// End, milliseconds since the Unix epoch (exclusive).
    pub to_ms: i64,
}

impl TimeRange {
    /// `[from, to)`, if it is at most [`MAX_RANGE`] long and not inverted.
    pub fn new(from: SystemTime, to: SystemTime) -> Result<Self, QueryError> {
        Self::from_epoch_ms(epoch_ms(from), epoch_ms(to))
    }

    /// The same, from milliseconds since the Unix epoch.
    pub fn from_epoch_ms(from_ms: i64, to_ms: i64) -> Result<Self, QueryError> {
        if to_ms < from_ms {
            return Err(QueryError::RangeInverted);
        }
        let span = Duration::from_millis(to_ms.abs_diff(from_ms));
        if span > MAX_RANGE {
            return Err(QueryError::RangeTooLong {
                requested: span,
                max: MAX_RANGE,
            });
        }
        Ok(Self { from_ms, to_ms })
    }

    /// The `span` up to now.
    pub fn last(span: Duration) -> Result<Self, QueryError> {
        if span > MAX_RANGE {
            return Err(QueryError::RangeTooLong {
                requested: span,
                max: MAX_RANGE,
            });
        }
        let now = SystemTime::now();
        let from = now.checked_sub(span).unwrap_or(UNIX_EPOCH);
        // The end is exclusive: one millisecond on, so "now" is inside.
        Self::from_epoch_ms(epoch_ms(from), epoch_ms(now).saturating_add(1))
    }
}

/// How a request ended, as the `outcome` filter and column name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Ended cleanly.
    Success,
    /// Failed (the class says how).
    Failed,
    /// A deadline expired.
    TimedOut,
    /// The caller dropped it.
    Cancelled,
    /// Ended without the provider's terminal marker.
    Truncated,
}

impl OutcomeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Truncated => "truncated",
        }
    }
}

impl FromStr for OutcomeKind {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "success" => Self::Success,
            "failed" => Self::Failed,
            "timed_out" => Self::TimedOut,
            "cancelled" => Self::Cancelled,
            "truncated" => Self::Truncated,
            _ => {
                return Err(QueryError::BadFilter(
                    "outcome must be success, failed, timed_out, cancelled or truncated".into(),
                ))
            }
        })
    }
}

/// The size category named `name` (`tiny`, `small`, …, as
/// [`InputSize::as_str`] writes it).
pub fn parse_category(name: &str) -> Result<InputSize, QueryError> {
    InputSize::ALL
        .into_iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| {
            QueryError::BadFilter(
                "a size category is one of unknown, tiny, small, medium, large, huge".into(),
            )
        })
}

/// Which requests a query looks at. Every field but the range is optional.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Filter {
    /// When they started.
    pub range: TimeRange,
    /// Served by this backend.
    pub backend: Option<String>,
    /// Of this provider (see [`StoreBuilder::provider`](crate::StoreBuilder::provider)).
    pub provider: Option<String>,
    /// For this model.
    pub model: Option<String>,
    /// Ended this way.
    pub outcome: Option<OutcomeKind>,
    /// Input of this size (from the request's token estimate).
    pub input_category: Option<InputSize>,
    /// Output of this size (same boundaries, applied to output tokens).
    pub output_category: Option<InputSize>,
}

impl Filter {
    /// Every request in `range`.
    pub fn new(range: TimeRange) -> Self {
        Self {
            range,
            backend: None,
            provider: None,
            model: None,
            outcome: None,
            input_category: None,
            output_category: None,
        }
    }

    /// Only `backend`.
    #[must_use]
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    /// Only `provider`.
    #[must_use]
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Only `model`.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Only requests that ended this way.
    #[must_use]
    pub fn outcome(mut self, outcome: OutcomeKind) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Only inputs of this size.
    #[must_use]
    pub fn input_category(mut self, category: InputSize) -> Self {
        self.input_category = Some(category);
        self
    }

    /// Only outputs of this size.
    #[must_use]
    pub fn output_category(mut self, category: InputSize) -> Self {
        self.output_category = Some(category);
        self
    }

    /// The `WHERE` clause over a table whose time column is `time`, with
    /// its parameters, starting at `from_ms` instead of the range's start.
    fn clause(&self, time: &str, from_ms: i64, to_ms: i64) -> (String, Vec<Value>) {
        let mut sql = format!("{time} >= ?1 AND {time} < ?2");
        let mut params = vec![Value::Integer(from_ms), Value::Integer(to_ms)];
        let mut add = |column: &str, value: Option<&str>| {
            if let Some(value) = value {
                params.push(Value::Text(value.to_owned()));
                sql.push_str(&format!(" AND {column} = ?{}", params.len()));
            }
        };
        add("backend", self.backend.as_deref());
        add("provider", self.provider.as_deref());
        add("model", self.model.as_deref());
        add("outcome", self.outcome.map(OutcomeKind::as_str));
        add("input_category", self.input_category.map(InputSize::as_str));
        add(
            "output_category",
            self.output_category.map(InputSize::as_str),
        );
        (sql, params)
    }
}

/// What a percentile query measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// From `call()` to the first content chunk, milliseconds. Every request
    /// that got content counts.
    TimeToFirstContent,
    /// `(output − 1) / output duration`, tokens per second.
    DecodeTokensPerSec,
    /// `output / duration`, tokens per second.
    EndToEndTokensPerSec,
    /// From `call()` to the end, milliseconds.
    Duration,
}

impl Metric {
    fn column(self) -> &'static str {
        match self {
            Self::TimeToFirstContent => "time_to_first_content_ms",
            Self::DecodeTokensPerSec => "decode_tokens_per_sec",
            Self::EndToEndTokensPerSec => "end_to_end_tokens_per_sec",
            Self::Duration => "duration_ms",
        }
    }

    /// Whether, with no outcome filter, only successful requests count:
    /// true for throughput and duration (a timeout's duration is its
    /// deadline, not the backend's speed), as the in-memory tracker does.
    fn successes_only(self) -> bool {
        !matches!(self, Self::TimeToFirstContent)
    }
}

/// One percentile of a [`Distribution`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PercentileValue {
    /// Which percentile (0 to 100).
    pub p: f64,
    /// Its value.
    pub value: f64,
}

/// Exact percentiles of one metric over the matching requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Requests with a value.
    pub samples: u64,
    /// The percentiles asked for, in the order asked; empty without samples.
    pub percentiles: Vec<PercentileValue>,
}

impl Distribution {
    fn of(mut values: Vec<f64>, ps: &[f64]) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_unstable_by(f64::total_cmp);
        Self {
            samples: values.len() as u64,
            percentiles: ps
                .iter()
                .filter_map(|&p| {
                    Some(PercentileValue {
                        p,
                        value: percentile(&values, p)?,
                    })
                })
                .collect(),
        }
    }

    /// The value of percentile `p`, if it was asked for and there are samples.
    pub fn get(&self, p: f64) -> Option<f64> {
        self.percentiles.iter().find(|v| v.p == p).map(|v| v.value)
    }
}

/// Counts and rates of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Finished requests (refusals are in `rejections`).
    pub requests: u64,
    /// Ended cleanly.
    pub successes: u64,
    /// Failed, by error class (`timeout` and `truncated` included).
    pub failures: BTreeMap<String, u64>,
    /// Timed out, by deadline.
    pub timeouts: BTreeMap<String, u64>,
    /// Dropped by the caller.
    pub cancelled: u64,
    /// `failures / (requests − cancelled)`: cancellations are not judged.
    pub failure_rate: f64,
    /// Refused by a gate, by reason (filtered by time, backend, provider and
    /// model only: a refusal has no outcome or size).
    pub rejections: BTreeMap<String, u64>,
    /// Requests that waited to stay under a rate.
    pub throttled: u64,
    /// Total time waited, milliseconds.
    pub throttle_wait_ms: f64,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens (reported, else streamed estimates).
    pub output_tokens: u64,
}

/// One group of a [`ThroughputReport`]: counts and the four distributions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Group {
    /// The backend, when grouped by it.
    pub backend: Option<String>,
    /// The model, when grouped by it.
    pub model: Option<String>,
    /// The input size, when grouped by it.
    pub input_category: Option<InputSize>,
    /// Counts and rates.
    pub counts: Counts,
    /// Time to first content, milliseconds (every request that got content).
    pub time_to_first_content_ms: Distribution,
    /// Decode tokens per second (successes, unless an outcome is filtered).
    pub decode_tokens_per_sec: Distribution,
    /// End-to-end tokens per second (likewise).
    pub end_to_end_tokens_per_sec: Distribution,
    /// Duration, milliseconds (likewise).
    pub duration_ms: Distribution,
}

/// One hour of counts for charts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HourBucket {
    /// Start of the hour, milliseconds since the Unix epoch.
    pub hour_ms: i64,
    /// Finished requests.
    pub requests: u64,
    /// Ended cleanly.
    pub successes: u64,
    /// Failed, timed out or truncated.
    pub failures: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Mean decode tokens per second of the requests that have one.
    pub mean_decode_tokens_per_sec: Option<f64>,
    /// Read from the pre-aggregated `hourly` table (true) or from raw rows
    /// (false: the current hour, and hours still within the rollup grace).
    pub from_rollup: bool,
}

/// What [`Store::throughput`] returns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThroughputReport {
    /// The filter as applied.
    pub filter: Filter,
    /// The percentiles computed.
    pub percentiles: Vec<f64>,
    /// Everything matching.
    pub summary: Group,
    /// Per backend.
    pub by_backend: Vec<Group>,
    /// Per model.
    pub by_model: Vec<Group>,
    /// Per backend × model.
    pub by_backend_model: Vec<Group>,
    /// Per input size category.
    pub by_input_category: Vec<Group>,
    /// Per backend × model × input size category: the heatmap's cells.
    pub cells: Vec<Group>,
    /// Hourly counts across the range.
    pub hourly: Vec<HourBucket>,
}

impl ThroughputReport {
    /// Whether no request matched.
    pub fn is_empty(&self) -> bool {
        self.summary.counts.requests == 0
    }
}

#[derive(Default)]
struct Acc {
    counts: Counts,
    failed: u64,
    ttfc: Vec<f64>,
    decode: Vec<f64>,
    end_to_end: Vec<f64>,
    duration: Vec<f64>,
}

struct Scanned<'r> {
    outcome: &'r str,
    class: Option<&'r str>,
    timeout_kind: Option<&'r str>,
    ttfc: Option<f64>,
    decode: Option<f64>,
    end_to_end: Option<f64>,
    duration: f64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Acc {
    fn add(&mut self, r: &Scanned<'_>, all_outcomes: bool) {
        let c = &mut self.counts;
        c.requests += 1;
        c.input_tokens = c.input_tokens.saturating_add(r.input_tokens);
        c.output_tokens = c.output_tokens.saturating_add(r.output_tokens);
        let success = r.outcome == "success";
        match r.outcome {
            "success" => c.successes += 1,
            "cancelled" => c.cancelled += 1,
            _ => {
                self.failed += 1;
                *c.failures
                    .entry(r.class.unwrap_or("other").to_owned())
                    .or_default() += 1;
                if let Some(kind) = r.timeout_kind {
                    *c.timeouts.entry(kind.to_owned()).or_default() += 1;
                }
            }
        }
        if let Some(v) = r.ttfc {
            self.ttfc.push(v);
        }
        if success || all_outcomes {
            self.decode.extend(r.decode);
            self.end_to_end.extend(r.end_to_end);
            self.duration.push(r.duration);
        }
    }

    fn finish(
        mut self,
        ps: &[f64],
        key: (Option<String>, Option<String>, Option<InputSize>),
    ) -> Group {
        let judged = self.counts.requests - self.counts.cancelled;
        self.counts.failure_rate = if judged == 0 {
            0.0
        } else {
            self.failed as f64 / judged as f64
        };
        Group {
            backend: key.0,
            model: key.1,
            input_category: key.2,
            counts: self.counts,
            time_to_first_content_ms: Distribution::of(self.ttfc, ps),
            decode_tokens_per_sec: Distribution::of(self.decode, ps),
            end_to_end_tokens_per_sec: Distribution::of(self.end_to_end, ps),
            duration_ms: Distribution::of(self.duration, ps),
        }
    }
}

fn category_index(name: &str) -> usize {
    InputSize::ALL
        .iter()
        .position(|c| c.as_str() == name)
        .unwrap_or(0)
}

fn text<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    row.get_ref(i)?
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn u(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, Option<i64>>(i)?.map_or(0, |v| v.max(0) as u64))
}

/// Interns strings so that grouping compares small integers.
#[derive(Default)]
struct Names {
    ids: HashMap<String, usize>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }
}

impl Store {
    /// Exact percentiles `ps` (each 0 to 100; see [`percentile`]) of
    /// `metric` over the requests `filter` selects. With no outcome in the
    /// filter, throughput and duration count successful requests only.
    ///
    /// [`percentile`]: crate::percentile
    pub fn percentiles(
        &self,
        filter: &Filter,
        metric: Metric,
        ps: &[f64],
    ) -> Result<Distribution, QueryError> {
        validate(ps)?;
        self.read(|conn| {
            let (mut clause, params) =
                filter.clause("started_at_ms", filter.range.from_ms, filter.range.to_ms);
            if filter.outcome.is_none() && metric.successes_only() {
                clause.push_str(" AND outcome = 'success'");
            }
            let column = metric.column();
            let sql =
                format!("SELECT {column} FROM requests WHERE {clause} AND {column} IS NOT NULL");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let mut values = Vec::new();
            while let Some(row) = rows.next()? {
                values.push(row.get::<_, f64>(0)?);
            }
            Ok(Distribution::of(values, ps))
        })
    }

    /// Counts, rates and percentiles `ps` of the requests `filter` selects:
    /// in all, per backend, per model, per backend × model, per input size
    /// category and per backend × model × input size; and hourly buckets.
    pub fn throughput(&self, filter: &Filter, ps: &[f64]) -> Result<ThroughputReport, QueryError> {
        validate(ps)?;
        self.read(|conn| {
            let mut report = scan(conn, filter, ps)?;
            report.hourly = hourly(conn, filter)?;
            Ok(report)
        })
    }

    /// Hourly buckets of the requests `filter` selects, covering every
    /// whole hour that overlaps its range: finished hours from the
    /// pre-aggregated table, the rest from raw rows.
    pub fn hourly(&self, filter: &Filter) -> Result<Vec<HourBucket>, QueryError> {
        self.read(|conn| hourly(conn, filter))
    }
}

pub(crate) fn scan(
    conn: &Connection,
    filter: &Filter,
    ps: &[f64],
) -> Result<ThroughputReport, QueryError> {
    let (clause, params) = filter.clause("started_at_ms", filter.range.from_ms, filter.range.to_ms);
    let sql = format!(
        "SELECT backend, model, input_category, outcome, class, timeout_kind,
            time_to_first_content_ms, decode_tokens_per_sec, end_to_end_tokens_per_sec,
            duration_ms, input_tokens, output_tokens
         FROM requests WHERE {clause}"
    );
    let all_outcomes = filter.outcome.is_some();
    let mut backends = Names::default();
    let mut models = Names::default();
    let mut summary = Acc::default();
    let mut by_backend: HashMap<usize, Acc> = HashMap::new();
    let mut by_model: HashMap<usize, Acc> = HashMap::new();
    let mut by_pair: HashMap<(usize, usize), Acc> = HashMap::new();
    let mut by_category: HashMap<usize, Acc> = HashMap::new();
    let mut cells: HashMap<(usize, usize, usize), Acc> = HashMap::new();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        let b = backends.id(text(row, 0)?.unwrap_or_default());
        let m = models.id(text(row, 1)?.unwrap_or_default());
        let cat = category_index(text(row, 2)?.unwrap_or_default());
        let scanned = Scanned {
            outcome: text(row, 3)?.unwrap_or_default(),
            class: text(row, 4)?,
            timeout_kind: text(row, 5)?,
            ttfc: row.get(6)?,
            decode: row.get(7)?,
            end_to_end: row.get(8)?,
            duration: row.get(9)?,
            input_tokens: u(row, 10)?,
            output_tokens: u(row, 11)?,
        };
        summary.add(&scanned, all_outcomes);
        by_backend.entry(b).or_default().add(&scanned, all_outcomes);
        by_model.entry(m).or_default().add(&scanned, all_outcomes);
        by_pair
            .entry((b, m))
            .or_default()
            .add(&scanned, all_outcomes);
        by_category
            .entry(cat)
            .or_default()
            .add(&scanned, all_outcomes);
        cells
            .entry((b, m, cat))
            .or_default()
            .add(&scanned, all_outcomes);
    }
    drop(rows);

    // Refusals and waits come from events, which know backend and model.
    let events = events(conn, filter)?;
    for ((backend, model), e) in &events {
        let b = backends.ids.get(backend.as_str()).copied();
        let m = models.ids.get(model.as_str()).copied();
        merge_events(&mut summary.counts, e);
        let b = b.unwrap_or_else(|| backends.id(backend));
        let m = m.unwrap_or_else(|| models.id(model));
        merge_events(&mut by_backend.entry(b).or_default().counts, e);
        merge_events(&mut by_model.entry(m).or_default().counts, e);
        merge_events(&mut by_pair.entry((b, m)).or_default().counts, e);
    }

    let name = |names: &Names, id: usize| names.names.get(id).cloned();
    let mut by_backend: Vec<Group> = by_backend
        .into_iter()
        .map(|(b, acc)| acc.finish(ps, (name(&backends, b), None, None)))
        .collect();
    let mut by_model: Vec<Group> = by_model
        .into_iter()
        .map(|(m, acc)| acc.finish(ps, (None, name(&models, m), None)))
        .collect();
    let mut by_backend_model: Vec<Group> = by_pair
        .into_iter()
        .map(|((b, m), acc)| acc.finish(ps, (name(&backends, b), name(&models, m), None)))
        .collect();
    let mut by_input_category: Vec<Group> = by_category
        .into_iter()
        .map(|(c, acc)| acc.finish(ps, (None, None, Some(InputSize::ALL[c]))))
        .collect();
    let mut cells: Vec<Group> = cells
        .into_iter()
        .map(|((b, m, c), acc)| {
            acc.finish(
                ps,
                (
                    name(&backends, b),
                    name(&models, m),
                    Some(InputSize::ALL[c]),
                ),
            )
        })
        .collect();
    let order = |g: &Group| (g.backend.clone(), g.model.clone(), g.input_category);
    for groups in [
        &mut by_backend,
        &mut by_model,
        &mut by_backend_model,
        &mut by_input_category,
        &mut cells,
    ] {
        groups.sort_by_key(order);
    }
    Ok(ThroughputReport {
        filter: filter.clone(),
        percentiles: ps.to_vec(),
        summary: summary.finish(ps, (None, None, None)),
        by_backend,
        by_model,
        by_backend_model,
        by_input_category,
        cells,
        hourly: Vec::new(),
    })
}

#[derive(Default)]
struct EventCounts {
    rejections: BTreeMap<String, u64>,
    throttled: u64,
    throttle_wait_ms: f64,
}

fn merge_events(counts: &mut Counts, e: &EventCounts) {
    for (reason, n) in &e.rejections {
        *counts.rejections.entry(reason.clone()).or_default() += n;
    }
    counts.throttled += e.throttled;
    counts.throttle_wait_ms += e.throttle_wait_ms;
}

fn events(
    conn: &Connection,
    filter: &Filter,
) -> Result<BTreeMap<(String, String), EventCounts>, QueryError> {
    let mut sql = String::from(
        "SELECT backend, model, kind, reason, count(*), total(waited_ms) FROM events
         WHERE at_ms >= ?1 AND at_ms < ?2 AND kind IN ('rejected', 'throttled')",
    );
    let mut params = vec![
        Value::Integer(filter.range.from_ms),
        Value::Integer(filter.range.to_ms),
    ];
    if let Some(backend) = &filter.backend {
        params.push(Value::Text(backend.clone()));
        sql.push_str(&format!(" AND backend = ?{}", params.len()));
    }
    if let Some(model) = &filter.model {
        params.push(Value::Text(model.clone()));
        sql.push_str(&format!(" AND model = ?{}", params.len()));
    }
    if let Some(provider) = &filter.provider {
        // Events do not carry the provider; the requests table knows which
        // backends are its.
        params.push(Value::Text(provider.clone()));
        sql.push_str(&format!(
            " AND backend IN (SELECT DISTINCT backend FROM requests WHERE provider = ?{})",
            params.len()
        ));
    }
    sql.push_str(" GROUP BY backend, model, kind, reason");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out: BTreeMap<(String, String), EventCounts> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let backend: Option<String> = row.get(0)?;
        let model: Option<String> = row.get(1)?;
        let (Some(backend), Some(model)) = (backend, model) else {
            continue;
        };
        let kind: String = row.get(2)?;
        let reason: Option<String> = row.get(3)?;
        let n = u(row, 4)?;
        let waited: f64 = row.get(5)?;
        let e = out.entry((backend, model)).or_default();
        if kind == "rejected" {
            *e.rejections
                .entry(reason.unwrap_or_else(|| "unknown".into()))
                .or_default() += n;
        } else {
            e.throttled += n;
            e.throttle_wait_ms += waited;
        }
    }
    Ok(out)
}

fn hourly(conn: &Connection, filter: &Filter) -> Result<Vec<HourBucket>, QueryError> {
    let rolled: i64 =
        conn.query_row("SELECT rolled_until_ms FROM rollup_state", [], |r| r.get(0))?;
    let from = filter.range.from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let to = filter.range.to_ms;
    let mut buckets = Vec::new();
    // Finished hours: the rollup table.
    if from < rolled {
        let (clause, params) = filter.clause("hour_ms", from, to.min(rolled));
        let sql = format!(
            "SELECT hour_ms, sum(requests),
                sum(CASE WHEN outcome = 'success' THEN requests ELSE 0 END),
                sum(CASE WHEN outcome NOT IN ('success', 'cancelled') THEN requests ELSE 0 END),
                sum(input_tokens), sum(output_tokens),
                sum(decode_tokens_per_sec_sum), sum(decode_samples)
             FROM hourly WHERE {clause} GROUP BY hour_ms ORDER BY hour_ms"
        );
        collect_hours(conn, &sql, params, true, &mut buckets)?;
    }
    // The rest: raw rows.
    let raw_from = from.max(rolled);
    if raw_from < to {
        let (clause, params) = filter.clause("started_at_ms", raw_from, to);
        let sql = format!(
            "SELECT (started_at_ms / 3600000) * 3600000 AS hour, count(*),
                sum(outcome = 'success'),
                sum(outcome NOT IN ('success', 'cancelled')),
                total(coalesce(input_tokens, 0)), total(output_tokens),
                total(decode_tokens_per_sec), count(decode_tokens_per_sec)
             FROM requests WHERE {clause} GROUP BY hour ORDER BY hour"
        );
        collect_hours(conn, &sql, params, false, &mut buckets)?;
    }
    Ok(buckets)
}

fn collect_hours(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    from_rollup: bool,
    out: &mut Vec<HourBucket>,
) -> Result<(), QueryError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let n = |row: &Row<'_>, i: usize| -> rusqlite::Result<u64> {
        Ok(row
            .get::<_, Option<f64>>(i)?
            .map_or(0, |v| v.max(0.0) as u64))
    };
    while let Some(row) = rows.next()? {
        let decode_sum: Option<f64> = row.get(6)?;
        let decode_samples = n(row, 7)?;
        out.push(HourBucket {
            hour_ms: row.get(0)?,
            requests: n(row, 1)?,
            successes: n(row, 2)?,
            failures: n(row, 3)?,
            input_tokens: n(row, 4)?,
            output_tokens: n(row, 5)?,
            mean_decode_tokens_per_sec: (decode_samples > 0)
                .then(|| decode_sum.unwrap_or(0.0) / decode_samples as f64),
            from_rollup,
        });
    }
    Ok(())
}
