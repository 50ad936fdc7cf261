//! Type-erased streaming services, for routers that hold different clients.

use std::pin::Pin;

use futures_core::Stream;
use http::Response;
use tower::{util::BoxCloneSyncService, Service, ServiceExt};

use crate::BoxError;

/// A boxed stream of chunks.
pub type BoxBody<C> = Pin<Box<dyn Stream<Item = Result<C, BoxError>> + Send + 'static>>;

/// A boxed, cloneable streaming service: what a failover router holds when
/// its backends are different client types or stacks.
pub type BoxStreamingService<Req, C> = BoxCloneSyncService<Req, Response<BoxBody<C>>, BoxError>;

/// Boxes a streaming service and its body into a [`BoxStreamingService`].
///
/// Costs one allocation per request for the body (and tower's one for the
/// future).
pub fn boxed<S, Req, B, C, E>(service: S) -> BoxStreamingService<Req, C>
where
    S: Service<Req, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Stream<Item = Result<C, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    C: 'static,
    Req: 'static,
{
    let service = service
        .map_response(|response: Response<B>| {
            response.map(|body| -> BoxBody<C> { Box::pin(ErrInto { body }) })
        })
        .map_err(Into::into);
    BoxCloneSyncService::new(service)
}

#[pin_project::pin_project]
struct ErrInto<B> {
    #[pin]
    body: B,
}

impl<B, C, E> Stream for ErrInto<B>
where
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    type Item = Result<C, BoxError>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.project()
            .body
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(Into::into)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.body.size_hint()
    }
}
