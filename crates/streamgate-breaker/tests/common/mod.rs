//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use http::Response;
use streamgate_core::{BoxError, BreakerState, Event, MetricsSink};
use tower::{Service, ServiceExt};

/// What the breaker reported, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Transition(Option<String>, BreakerState, BreakerState),
    Rejected(String, Option<Duration>),
}

/// A sink that keeps the breaker's events.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Seen>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    pub fn transitions(&self) -> Vec<(BreakerState, BreakerState)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Seen::Transition(_, from, to) => Some((*from, *to)),
                Seen::Rejected(..) => None,
            })
            .collect()
    }
}

impl MetricsSink for Recorder {
    fn record(&self, event: &Event<'_>) {
        let seen = match event {
            Event::BreakerTransition {
                model, from, to, ..
            } => Seen::Transition(model.map(str::to_owned), *from, *to),
            Event::Rejected {
                model, retry_after, ..
            } => Seen::Rejected((*model).to_owned(), *retry_after),
            _ => return,
        };
        self.events.lock().unwrap().push(seen);
    }
}

/// Sends one request and reads the stream to its end or first error;
/// returns how many chunks arrived.
pub async fn run<S, Req, B, C>(service: &mut S, request: Req) -> Result<usize, BoxError>
where
    S: Service<Req, Response = Response<B>, Error = BoxError>,
    B: futures::Stream<Item = Result<C, BoxError>> + Unpin,
{
    let response = service.ready().await?.call(request).await?;
    let mut body = response.into_body();
    let mut chunks = 0;
    while let Some(item) = body.next().await {
        item?;
        chunks += 1;
    }
    Ok(chunks)
}
