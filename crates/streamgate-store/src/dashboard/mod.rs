//! The JSON API and the dashboard page, as an axum [`Router`] to mount.
//!
//! | route | answers |
//! |---|---|
//! | `GET /api/analytics/throughput` | [`ThroughputReport`] as JSON |
//! | `GET /api/analytics/recommendations` | [`Recommendations`] as JSON |
//! | `GET /api/state` | live breaker, quota and TPM state per backend from a [`PerformanceTracker`] |
//! | `GET /dashboard` | one self-contained HTML page (inline CSS, JS and SVG) polling the three above |
//!
//! The analytics routes take these query parameters, all optional:
//! `backend`, `provider`, `model`, `outcome` (`success`, `failed`,
//! `timed_out`, `cancelled`, `truncated`), `input` and `output` (size
//! categories: `unknown`, `tiny`, `small`, `medium`, `large`, `huge`), the
//! range as `from` and `to` (milliseconds since the Unix epoch) or `hours`
//! back from now (default 24; at most 720, the 30-day limit), `percentiles`
//! (a comma-separated list from 0 to 100; default `10,50,90,95,99`) and, for
//! recommendations, `min_samples`. A bad value is a 400 with
//! `{"error": "..."}`; a range over 30 days is one too.
//!
//! ```no_run
//! use std::sync::Arc;
//! use streamgate_metrics::PerformanceTracker;
//! use streamgate_store::{dashboard::Dashboard, Store};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("analytics.db")?;
//! let tracker = Arc::new(PerformanceTracker::new());
//! let app = Dashboard::new(store).tracker(tracker).router();
//! // Mount `app` in your own axum app, or serve it alone:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! streamgate_store::dashboard::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::{io, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use streamgate_core::BreakerState;
use streamgate_metrics::{PerformanceTracker, QuotaSnapshot, TrackerSnapshot};

use crate::{
    parse_category, Filter, QueryError, Recommendations, Store, StoreStats, ThroughputReport,
    TimeRange, DEFAULT_MIN_SAMPLES,
};

/// The page, with `/*EMBEDDED*/null` standing for the data of a static report.
const PAGE: &str = include_str!("page.html");
const EMBED_MARK: &str = "/*EMBEDDED*/null";

/// The percentiles the API computes when none are asked for.
pub const DEFAULT_PERCENTILES: [f64; 5] = [10.0, 50.0, 90.0, 95.0, 99.0];

/// Longest filter value accepted (backend, provider or model name): 256 bytes.
pub const MAX_FILTER_LEN: usize = 256;

/// The dashboard's data sources; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Dashboard {
    store: Store,
    tracker: Option<Arc<PerformanceTracker>>,
    min_samples: u64,
}

/// The query parameters of the analytics routes.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Params {
    /// Only this backend.
    pub backend: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only this input size category.
    pub input: Option<String>,
    /// Only this output size category.
    pub output: Option<String>,
    /// Range start, ms since the Unix epoch.
    pub from: Option<i64>,
    /// Range end (exclusive), ms since the Unix epoch.
    pub to: Option<i64>,
    /// Hours back from now, when `from` is absent.
    pub hours: Option<f64>,
    /// Comma-separated percentiles.
    pub percentiles: Option<String>,
    /// Samples a recommendation needs.
    pub min_samples: Option<u64>,
}

impl Params {
    /// The filter these parameters describe.
    pub fn filter(&self) -> Result<Filter, QueryError> {
        let range = match (self.from, self.to) {
            (Some(from), Some(to)) => TimeRange::from_epoch_ms(from, to)?,
            (Some(from), None) => TimeRange::from_epoch_ms(
                from,
                crate::row::epoch_ms(std::time::SystemTime::now()).saturating_add(1),
            )?,
            (None, _) => {
                let hours = self.hours.unwrap_or(24.0);
                if !hours.is_finite() || hours <= 0.0 {
                    return Err(QueryError::BadFilter(
                        "hours must be a positive number".into(),
                    ));
                }
                let span = Duration::try_from_secs_f64(hours * 3_600.0)
                    .map_err(|_| QueryError::BadFilter("hours is out of range".into()))?;
                TimeRange::last(span)?
            }
        };
        let mut filter = Filter::new(range);
        let text = |v: &Option<String>| -> Result<Option<String>, QueryError> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(s) if s.len() > MAX_FILTER_LEN => Err(QueryError::BadFilter(format!(
                    "filter values are at most {MAX_FILTER_LEN} bytes"
                ))),
                Some(s) => Ok(Some(s.to_owned())),
            }
        };
        filter.backend = text(&self.backend)?;
        filter.provider = text(&self.provider)?;
        filter.model = text(&self.model)?;
        filter.outcome = text(&self.outcome)?.map(|s| s.parse()).transpose()?;
        filter.input_category = text(&self.input)?.map(|s| parse_category(&s)).transpose()?;
        filter.output_category = text(&self.output)?
            .map(|s| parse_category(&s))
            .transpose()?;
        Ok(filter)
    }

    /// The percentiles asked for, or [`DEFAULT_PERCENTILES`].
    pub fn percentiles(&self) -> Result<Vec<f64>, QueryError> {
        match self.percentiles.as_deref() {
            None | Some("") => Ok(DEFAULT_PERCENTILES.to_vec()),
            Some(list) => list
                .split(',')
                .take(crate::MAX_PERCENTILES + 1)
                .map(|p| {
                    p.trim()
                        .parse::<f64>()
                        .map_err(|_| QueryError::BadPercentile(format!("{p:?} is not a number")))
                })
                .collect(),
        }
    }
}

/// Live state of one backend × model, from the tracker.
#[derive(Clone, Debug, Serialize)]
pub struct ModelState {
    /// The model.
    pub model: String,
    /// Requests started and not finished.
    pub in_flight: u64,
    /// Tokens of the requests finished in the last 60 s.
    pub tokens_per_minute: u64,
    /// Requests finished in the last 60 s.
    pub requests_per_minute: u64,
    /// The latest quota state, if any was learned.
    pub quota: Option<QuotaSnapshot>,
}

/// Live state of one backend.
#[derive(Clone, Debug, Serialize)]
pub struct BackendState {
    /// The backend.
    pub backend: String,
    /// The breaker's state after its latest transition; `None` when it has
    /// not changed state (a breaker starts closed).
    pub breaker: Option<BreakerState>,
    /// Breaker transitions seen.
    pub breaker_transitions: u64,
    /// Tokens per minute over all its models.
    pub tokens_per_minute: u64,
    /// Per model.
    pub models: Vec<ModelState>,
}

/// What `GET /api/state` returns.
#[derive(Clone, Debug, Serialize)]
pub struct LiveState {
    /// Whether a tracker is attached (without one, `backends` is empty).
    pub tracked: bool,
    /// Per backend, sorted.
    pub backends: Vec<BackendState>,
    /// What the store has done.
    pub store: StoreStats,
}

impl LiveState {
    fn new(snapshot: Option<TrackerSnapshot>, store: StoreStats) -> Self {
        let Some(snapshot) = snapshot else {
            return Self {
                tracked: false,
                backends: Vec::new(),
                store,
            };
        };
        let mut backends: Vec<BackendState> = Vec::new();
        let entry = |backends: &mut Vec<BackendState>, name: &str| -> usize {
            if let Some(i) = backends.iter().position(|b| b.backend == name) {
                return i;
            }
            backends.push(BackendState {
                backend: name.to_owned(),
                breaker: None,
                breaker_transitions: 0,
                tokens_per_minute: 0,
                models: Vec::new(),
            });
            backends.len() - 1
        };
        for key in &snapshot.keys {
            let i = entry(&mut backends, key.backend.as_str());
            let b = &mut backends[i];
            b.tokens_per_minute = b.tokens_per_minute.saturating_add(key.tokens_per_minute);
            b.models.push(ModelState {
                model: key.model.clone(),
                in_flight: key.in_flight,
                tokens_per_minute: key.tokens_per_minute,
                requests_per_minute: key.requests_per_minute,
                quota: key.quota,
            });
        }
        for breaker in snapshot.breakers.iter().filter(|b| b.model.is_none()) {
            let i = entry(&mut backends, breaker.backend.as_str());
            backends[i].breaker = Some(breaker.state);
            backends[i].breaker_transitions = breaker.transitions;
        }
        backends.sort_by(|a, b| a.backend.cmp(&b.backend));
        Self {
            tracked: true,
            backends,
            store,
        }
    }
}

/// Everything the page shows at once; a static report embeds it.
#[derive(Clone, Debug, Serialize)]
pub struct PageData {
    /// The throughput report.
    pub throughput: ThroughputReport,
    /// The recommendations.
    pub recommendations: Recommendations,
    /// The live state.
    pub state: LiveState,
}

impl Dashboard {
    /// A dashboard over `store`, without live state.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tracker: None,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }

    /// Takes live breaker, quota and TPM state from `tracker`.
    #[must_use]
    pub fn tracker(mut self, tracker: Arc<PerformanceTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Samples a recommendation needs when the request does not say
    /// (default [`DEFAULT_MIN_SAMPLES`]).
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples.max(1);
        self
    }

    /// The live state now.
    pub fn state(&self) -> LiveState {
        LiveState::new(
            self.tracker.as_ref().map(|t| t.snapshot()),
            self.store.stats(),
        )
    }

    /// Everything the page shows, for `params`.
    pub fn data(&self, params: &Params) -> Result<PageData, QueryError> {
        let filter = params.filter()?;
        Ok(PageData {
            throughput: self.store.throughput(&filter, &params.percentiles()?)?,
            recommendations: self
                .store
                .recommend(&filter, params.min_samples.unwrap_or(self.min_samples))?,
            state: self.state(),
        })
    }

    /// The dashboard page as a static file with `data` embedded: it shows
    /// the data without a server.
    pub fn static_page(data: &PageData) -> Result<String, serde_json::Error> {
        // `<` only occurs inside JSON strings, where `\u003c` means the
        // same: the data cannot close the script element.
        let json = serde_json::to_string(data)?.replace('<', "\\u003c");
        Ok(PAGE.replace(EMBED_MARK, &json))
    }

    /// The routes, ready to mount or serve.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/analytics/throughput", get(throughput))
            .route("/api/analytics/recommendations", get(recommendations))
            .route("/api/state", get(state))
            .route("/dashboard", get(page))
            .with_state(Arc::new(self))
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> io::Result<()> {
    axum::serve(listener, router).await
}

struct ApiError(QueryError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            QueryError::Sqlite(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({ "error": self.0.to_string() });
        (status, Json(body)).into_response()
    }
}

/// Runs a query off the async threads: SQLite calls block.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError),
        Err(_) => Err(ApiError(QueryError::BadFilter(
            "the query was cancelled".into(),
        ))),
    }
}

async fn throughput(
    State(d): State<Arc<Dashboard>>,
    Query(params): Query<Params>,
) -> Result<Json<ThroughputReport>, ApiError> {
    let report = blocking(move || {
        let filter = params.filter()?;
        d.store.throughput(&filter, &params.percentiles()?)
    })
    .await?;
    Ok(Json(report))
}

async fn recommendations(
    State(d): State<Arc<Dashboard>>,
    Query(params): Query<Params>,
) -> Result<Json<Recommendations>, ApiError> {
    let recs = blocking(move || {
        let filter = params.filter()?;
        d.store
            .recommend(&filter, params.min_samples.unwrap_or(d.min_samples))
    })
    .await?;
    Ok(Json(recs))
}

async fn state(State(d): State<Arc<Dashboard>>) -> Json<LiveState> {
    Json(d.state())
}

async fn page() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(PAGE.replace(EMBED_MARK, "null")),
    )
}
