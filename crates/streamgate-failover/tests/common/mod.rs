//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::StreamExt;
use http::Response;
use streamgate_core::{
    testing::{ScriptBody, ScriptedService},
    BackendId, BoxError, ErrorClass, Event, MetricsSink, ProviderError, RejectReason, Rejected,
};
use tokio::time::Instant;
use tower::Service;

/// What the tests look at in the events.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Hedge {
        primary: String,
        hedge: String,
        stage: streamgate_core::HedgeStage,
        estimated_tokens: u64,
    },
    Failover {
        from: String,
        to: Option<String>,
        reason: ErrorClass,
    },
    Throttled {
        backend: String,
        waited: Duration,
    },
    Rejected {
        backend: String,
        reason: RejectReason,
    },
    Continuation {
        from: String,
        to: String,
        tokens_before: u64,
    },
    Other,
}

#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Seen>>);

impl Collect {
    pub fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl MetricsSink for Collect {
    fn record(&self, event: &Event<'_>) {
        let seen = match event {
            Event::Failover {
                from, to, reason, ..
            } => Seen::Failover {
                from: from.to_string(),
                to: to.map(ToString::to_string),
                reason: *reason,
            },
            Event::Throttled {
                backend, waited, ..
            } => Seen::Throttled {
                backend: backend.to_string(),
                waited: *waited,
            },
            Event::Rejected {
                backend, reason, ..
            } => Seen::Rejected {
                backend: backend.to_string(),
                reason: *reason,
            },
            Event::Hedge {
                primary,
                hedge,
                stage,
                estimated_tokens,
                ..
            } => Seen::Hedge {
                primary: primary.to_string(),
                hedge: hedge.to_string(),
                stage: *stage,
                estimated_tokens: *estimated_tokens,
            },
            Event::Continuation {
                from,
                to,
                tokens_before,
                ..
            } => Seen::Continuation {
                from: from.to_string(),
                to: to.to_string(),
                tokens_before: *tokens_before,
            },
            _ => Seen::Other,
        };
        self.0.lock().unwrap().push(seen);
    }
}

/// Reads a body to its end: the items, as text for the chunks and the
/// error class for error items.
pub async fn drain<S, C>(body: S) -> Vec<Result<C, ErrorClass>>
where
    S: futures::Stream<Item = Result<C, BoxError>> + Unpin,
{
    body.map(|item| item.map_err(|e| streamgate_core::classify(&*e)))
        .collect()
        .await
}

/// A scripted service whose errors carry a Retry-After.
#[derive(Clone)]
pub struct WithRetryAfter {
    pub inner: ScriptedService,
    pub after: Duration,
}

impl<Req> Service<Req> for WithRetryAfter {
    type Response = Response<ScriptBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ScriptBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let future = Service::<Req>::call(&mut self.inner, request);
        let after = self.after;
        Box::pin(async move {
            future.await.map_err(|e| {
                let class = streamgate_core::classify(&*e);
                BoxError::from(ProviderError::new(class, "slow down").with_retry_after(after))
            })
        })
    }
}

/// A gate that refuses until `until`, then passes to `inner`.
#[derive(Clone)]
pub struct RefuseUntil {
    pub backend: BackendId,
    pub reason: RejectReason,
    pub until: Option<Instant>,
    pub inner: ScriptedService,
    /// How many calls it refused.
    pub refusals: Arc<AtomicUsize>,
}

impl RefuseUntil {
    /// Refuses forever with `retry_after`.
    pub fn always(backend: &str, reason: RejectReason, inner: ScriptedService) -> Self {
        Self {
            backend: BackendId::new(backend),
            reason,
            until: None,
            inner,
            refusals: Arc::default(),
        }
    }

    /// Refuses until `until`, with the time left as `retry_after`.
    pub fn until(
        backend: &str,
        reason: RejectReason,
        until: Instant,
        inner: ScriptedService,
    ) -> Self {
        Self {
            until: Some(until),
            ..Self::always(backend, reason, inner)
        }
    }

    /// How many calls it refused.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::Relaxed)
    }
}

impl<Req> Service<Req> for RefuseUntil {
    type Response = Response<ScriptBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ScriptBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let now = Instant::now();
        let refuse = self.until.is_none_or(|until| now < until);
        if refuse {
            let retry_after = match self.until {
                Some(until) => Some(until - now),
                None => Some(Duration::from_secs(12)),
            };
            self.refusals.fetch_add(1, Ordering::Relaxed);
            let error =
                Rejected::new(self.backend.clone(), self.reason).with_retry_after(retry_after);
            return Box::pin(async move { Err(error.into()) });
        }
        let future = Service::<Req>::call(&mut self.inner, request);
        Box::pin(future)
    }
}

pub fn sink() -> (Arc<Collect>, Arc<dyn MetricsSink>) {
    let collect = Arc::new(Collect::default());
    let sink: Arc<dyn MetricsSink> = collect.clone();
    (collect, sink)
}

/// The error of a result whose success type has no `Debug`.
pub fn expect_err<T>(result: Result<T, BoxError>) -> BoxError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    }
}
