//! Shared pieces of the streamgate benchmarks.
//!
//! - [`BareService`]: an in-memory streaming client that answers at once
//!   with a [`BenchStream`] of [`BenchChunk`]s, allocating nothing, so that
//!   whatever a layer adds stands out against it.
//! - [`drive`]: runs one request (ready, call, resolve, drain the body) on
//!   the current thread with a no-op waker; nothing here waits.
//! - [`CountingAllocator`]: a global allocator that counts allocations, for
//!   the allocations-per-request and per-chunk figures.
//! - [`cpu`]: CPU time of the process or of some of its threads, read from
//!   `/proc`, for the end-to-end overhead.
//! - [`paired`]: the median and confidence interval of paired ratios, for
//!   the end-to-end overhead measured in alternating rounds.
#![deny(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    future::{ready, Future, Ready},
    pin::{pin, Pin},
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll, Waker},
};

use futures_core::Stream;
use http::Response;
use streamgate_core::{BoxError, Chunk, LlmRequest, Usage};
use tower_service::Service;

pub mod cpu;
pub mod paired;

/// One item of the in-memory stream. `Copy` and small, so producing one
/// costs next to nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchChunk {
    /// A role-only chunk, as OpenAI sends first: not content.
    Role,
    /// One token of text.
    Token(u32),
    /// The final usage report, as OpenAI sends with `include_usage`.
    Usage(Usage),
}

impl Chunk for BenchChunk {
    fn is_content(&self) -> bool {
        matches!(self, BenchChunk::Token(_))
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            BenchChunk::Usage(usage) => Some(*usage),
            _ => None,
        }
    }

    fn output_tokens(&self) -> Option<u64> {
        self.is_content().then_some(1)
    }
}

/// The request the benchmarks send: a model and an estimate, no allocation.
#[derive(Clone, Copy, Debug)]
pub struct BenchRequest {
    /// The model name.
    pub model: &'static str,
    /// Estimated tokens (prompt plus expected output).
    pub estimated_tokens: u64,
}

impl BenchRequest {
    /// A request for `gpt-4o-mini` estimated at 100 tokens.
    pub const fn new() -> Self {
        Self {
            model: "gpt-4o-mini",
            estimated_tokens: 100,
        }
    }
}

impl Default for BenchRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmRequest for BenchRequest {
    fn model(&self) -> &str {
        self.model
    }

    fn estimated_tokens(&self) -> u64 {
        self.estimated_tokens
    }
}

/// A stream shaped like a real chat completion: a role chunk, `tokens` text
/// chunks, then a usage chunk. Always ready.
#[derive(Clone, Copy, Debug)]
pub struct BenchStream {
    next: u32,
    tokens: u32,
    /// Answer `Pending` (waking at once) before every chunk, as a stream
    /// reading a socket does, so per-chunk timer and waker work shows.
    pending_between: bool,
    /// Whether the last poll answered `Pending`.
    yielded: bool,
}

impl BenchStream {
    /// A stream of `tokens` text chunks between a role and a usage chunk.
    pub const fn new(tokens: u32) -> Self {
        Self {
            next: 0,
            tokens,
            pending_between: false,
            yielded: false,
        }
    }

    /// The same stream, answering `Pending` once before every chunk (and
    /// waking its task at once), as a socket does between frames.
    pub const fn pending_between_chunks(mut self) -> Self {
        self.pending_between = true;
        self
    }

    /// How many chunks the whole stream yields.
    pub const fn len(&self) -> u64 {
        self.tokens as u64 + 2
    }

    /// Whether the stream yields nothing (never: there is always a role and
    /// a usage chunk).
    pub const fn is_empty(&self) -> bool {
        false
    }
}

impl Stream for BenchStream {
    type Item = Result<BenchChunk, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pending_between && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        let n = self.next;
        let chunk = match n {
            0 => BenchChunk::Role,
            n if n <= self.tokens => BenchChunk::Token(n),
            n if n == self.tokens + 1 => BenchChunk::Usage(Usage::new(100, u64::from(self.tokens))),
            _ => return Poll::Ready(None),
        };
        self.next = n + 1;
        Poll::Ready(Some(Ok(chunk)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.tokens + 2).saturating_sub(self.next) as usize;
        (left, Some(left))
    }
}

/// The bare in-memory client: answers every request at once with a
/// [`BenchStream`]. Allocates nothing per request or per chunk.
#[derive(Clone, Copy, Debug)]
pub struct BareService {
    tokens: u32,
    pending_between: bool,
}

impl BareService {
    /// A client whose every answer has `tokens` text chunks.
    pub const fn new(tokens: u32) -> Self {
        Self {
            tokens,
            pending_between: false,
        }
    }

    /// A client whose streams answer `Pending` once before every chunk
    /// (see [`BenchStream::pending_between_chunks`]).
    pub const fn pending_between_chunks(tokens: u32) -> Self {
        Self {
            tokens,
            pending_between: true,
        }
    }

    /// Chunks per answer (text plus the role and usage chunks).
    pub const fn chunks_per_response(&self) -> u64 {
        BenchStream::new(self.tokens).len()
    }
}

impl<Req> Service<Req> for BareService {
    type Response = Response<BenchStream>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Req) -> Self::Future {
        let stream = BenchStream::new(self.tokens);
        let stream = if self.pending_between {
            stream.pending_between_chunks()
        } else {
            stream
        };
        ready(Ok(Response::new(stream)))
    }
}

/// Polls `future` to completion on this thread with a no-op waker.
///
/// Everything the benchmarks drive this way is ready at once (in-memory
/// client, limits far away), so nothing should ever wait. If something does,
/// it is polled again after `yield_now`, at most [`MAX_POLLS`] times, and
/// `None` tells the caller that the benchmark measured a wait.
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    let mut waits = 0;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        // A stream that answered `Pending` and woke itself at once (see
        // [`BenchStream::pending_between_chunks`]) is polled again straight
        // away; anything else is a wait.
        if WOKEN.with(|woken| woken.replace(false)) {
            continue;
        }
        waits += 1;
        if waits >= MAX_POLLS {
            return None;
        }
        std::thread::yield_now();
    }
}

/// Records that the future being driven on this thread woke itself.
struct SelfWake;

impl std::task::Wake for SelfWake {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        // Woken from another thread (never, in these benchmarks) the flag
        // of that thread is set, and this one counts a wait.
        let _ = WOKEN.try_with(|woken| woken.set(true));
    }
}

thread_local! {
    /// Set when the future [`block_on`] drives wakes itself.
    static WOKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// One waker per thread, so driving a request allocates nothing.
    static WAKER: Waker = Waker::from(std::sync::Arc::new(SelfWake));
}

/// How often [`block_on`] polls a future before giving up on it.
pub const MAX_POLLS: u32 = 10_000;

/// One whole request through `service`: ready, call, resolve the response,
/// drain the body. Returns the chunks received.
pub async fn request<S, Req, B, C, E>(service: &mut S, request: Req) -> Result<u64, BoxError>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    let response = service.call(request).await.map_err(Into::into)?;
    let mut body = pin!(response.into_body());
    let mut chunks = 0;
    while let Some(item) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        std::hint::black_box(item.map_err(Into::into)?);
        chunks += 1;
    }
    Ok(chunks)
}

/// [`request`], driven to completion on this thread with [`block_on`]; an
/// error if it had to wait.
pub fn drive<S, Req, B, C, E>(service: &mut S, req: Req) -> Result<u64, BoxError>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Stream<Item = Result<C, E>>,
    E: Into<BoxError>,
{
    block_on(request(service, req)).unwrap_or_else(|| {
        Err("the request waited, which an in-memory benchmark must not do".into())
    })
}

/// A global allocator that counts allocations (and reallocations) and the
/// bytes asked for, then defers to the system allocator.
///
/// Install it with `#[global_allocator]` in a benchmark binary of its own, so
/// that the shared counter never slows the timing benchmarks.
#[derive(Debug)]
pub struct CountingAllocator {
    allocations: AtomicU64,
    bytes: AtomicU64,
}

impl CountingAllocator {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Allocations (including reallocations) so far.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Bytes asked for so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn count(&self, size: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size as u64, Ordering::Relaxed);
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// Counting allocations needs a `GlobalAlloc`, which is an unsafe trait; the
// implementation only counts and forwards to `System` with the caller's
// arguments unchanged, so `System`'s contract is the one upheld.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        // SAFETY: same layout as given to us; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bare_service_streams_role_tokens_then_usage() {
        let mut service = BareService::new(3);
        assert_eq!(drive(&mut service, BenchRequest::new()).unwrap(), 5);
        assert_eq!(service.chunks_per_response(), 5);
    }

    #[test]
    fn only_tokens_are_content_and_usage_is_reported_last() {
        let chunks: Vec<BenchChunk> = block_on(async {
            let mut body = pin!(BenchStream::new(2));
            let mut out = Vec::new();
            while let Some(Ok(chunk)) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await
            {
                out.push(chunk);
            }
            out
        })
        .unwrap();
        let content: Vec<bool> = chunks.iter().map(Chunk::is_content).collect();
        assert_eq!(content, [false, true, true, false]);
        assert_eq!(chunks[3].usage(), Some(Usage::new(100, 2)));
    }
}
