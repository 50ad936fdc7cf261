//! Mid-stream continuation, on paused time: a stream that fails after
//! content continues on another backend and the caller reads one stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{drain, sink, Seen};
use futures::StreamExt;
use http::Response;
use streamgate_core::{
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    BoxBody, BoxError, ErrorClass, Prefill, Usage,
};
use streamgate_failover::{
    Abandoned, Continuation, ContinuationLog, Failover, FailoverBody, FailoverBuilder,
};
use streamgate_providers::{ChatChunk, ToolCallDelta};
use streamgate_timeout::FirstChunkTimeoutLayer;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A scripted backend that keeps the requests it was sent.
#[derive(Clone)]
struct Recorded {
    service: ScriptedService,
    requests: Arc<Mutex<Vec<TestRequest>>>,
}

impl Recorded {
    fn new(script: Script) -> Self {
        Self {
            service: ScriptedService::new(script),
            requests: Arc::default(),
        }
    }

    fn requests(&self) -> Vec<TestRequest> {
        self.requests.lock().unwrap().clone()
    }

    fn add(
        &self,
        router: FailoverBuilder<TestRequest, TestChunk>,
        id: &'static str,
    ) -> FailoverBuilder<TestRequest, TestChunk> {
        let (service, requests) = (self.service.clone(), self.requests.clone());
        router.service(
            id,
            tower::service_fn(move |request: TestRequest| {
                requests.lock().unwrap().push(request.clone());
                service.clone().oneshot(request)
            }),
        )
    }
}

/// "Hello wor", then a network cut.
fn cut() -> Script {
    Script::new()
        .text("Hello ")
        .text("wor")
        .fail(ErrorClass::Network)
}

fn request() -> TestRequest {
    TestRequest::new("m")
}

/// `primary` then `fallback` (which continues with a prefix), continuation on.
fn router(
    primary: &Recorded,
    fallback: &Recorded,
    continuation: Continuation,
) -> FailoverBuilder<TestRequest, TestChunk> {
    let router = primary.add(Failover::builder(), "primary");
    fallback
        .add(router, "fallback")
        .continues_with("fallback", Prefill::AssistantPrefix)
        .continuation(continuation)
}

/// The caller's text, the error class of an error item, and the log.
async fn read(
    router: Failover<TestRequest, TestChunk>,
) -> (String, Option<ErrorClass>, ContinuationLog) {
    let response = router.oneshot(request()).await.unwrap();
    let log = response
        .extensions()
        .get::<ContinuationLog>()
        .unwrap()
        .clone();
    let (text, error) = text_of(response).await;
    (text, error, log)
}

async fn text_of(response: Response<FailoverBody<TestChunk>>) -> (String, Option<ErrorClass>) {
    let mut text = String::new();
    let mut error = None;
    for item in drain(response.into_body()).await {
        match item {
            Ok(TestChunk::Text(t)) => text.push_str(t),
            Ok(_) => {}
            Err(class) => {
                assert!(error.is_none(), "two error items");
                error = Some(class);
            }
        }
    }
    (text, error)
}

#[tokio::test(start_paused = true)]
async fn a_cut_stream_continues_on_the_next_backend_with_the_text_so_far() {
    let primary = Recorded::new(cut());
    let fallback = Recorded::new(Script::new().text("ld").text("!"));
    let (events, sink) = sink();
    let router = router(&primary, &fallback, Continuation::new())
        .sink(sink)
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(text, "Hello world!");
    assert_eq!(error, None);
    let sent = fallback.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].prefill,
        Some(("Hello wor".to_owned(), Prefill::AssistantPrefix))
    );
    assert_eq!(primary.requests()[0].prefill, None);
    let continued = log.continued();
    assert_eq!(continued.len(), 1);
    assert_eq!(continued[0].from.as_str(), "primary");
    assert_eq!(continued[0].to.as_str(), "fallback");
    assert_eq!(continued[0].tokens_before, 2);
    assert_eq!(continued[0].dropped_bytes, 0);
    assert_eq!(log.abandoned(), None);
    assert!(events.seen().contains(&Seen::Continuation {
        from: "primary".into(),
        to: "fallback".into(),
        tokens_before: 2,
    }));
}

#[tokio::test(start_paused = true)]
async fn without_continuation_the_error_item_stands() {
    let primary = Recorded::new(cut());
    let fallback = Recorded::new(Script::new().text("ld!"));
    let router = fallback
        .add(primary.add(Failover::builder(), "primary"), "fallback")
        .continues_with("fallback", Prefill::AssistantPrefix)
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    assert!(response.extensions().get::<ContinuationLog>().is_none());
    assert_eq!(
        text_of(response).await,
        ("Hello wor".to_owned(), Some(ErrorClass::Network))
    );
    assert!(fallback.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_repeats_the_answer_has_the_repeat_dropped() {
    let primary = Recorded::new(cut());
    // Ignores the prefill: the whole answer again, split elsewhere.
    let fallback = Recorded::new(Script::new().text("Hel").text("lo w").text("orld!"));
    let router = router(&primary, &fallback, Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(text, "Hello world!");
    assert_eq!(error, None);
    assert_eq!(log.continued()[0].dropped_bytes, "Hello wor".len());
}

#[tokio::test(start_paused = true)]
async fn an_overlap_that_cannot_be_established_gives_the_original_error() {
    let primary = Recorded::new(cut());
    // Starts like the answer, then says something else.
    let fallback = Recorded::new(Script::new().text("Hello ").text("there"));
    let router = router(&primary, &fallback, Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(text, "Hello wor");
    assert_eq!(error, Some(ErrorClass::Network));
    assert_eq!(log.abandoned(), Some(Abandoned::OverlapUnknown));
    assert!(log.continued().is_empty());
    assert_eq!(fallback.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn whitespace_left_out_of_an_anthropic_prefill_is_not_doubled() {
    let primary = Recorded::new(Script::new().text("Hello ").fail(ErrorClass::Overloaded));
    let fallback = Recorded::new(Script::new().text(" world"));
    let router = primary.add(Failover::builder(), "primary");
    let router = fallback
        .add(router, "fallback")
        .continues_with("fallback", Prefill::FinalAssistant)
        .continuation(Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(text, "Hello world");
    assert_eq!(error, None);
    assert_eq!(
        fallback.requests()[0].prefill,
        Some(("Hello".to_owned(), Prefill::FinalAssistant))
    );
    assert_eq!(log.continued()[0].dropped_bytes, 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_that_is_not_retryable_is_not_continued() {
    let primary = Recorded::new(Script::new().text("Hello").fail(ErrorClass::ContentFilter));
    let fallback = Recorded::new(Script::new().text(" world"));
    let router = router(&primary, &fallback, Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(
        (text.as_str(), error),
        ("Hello", Some(ErrorClass::ContentFilter))
    );
    assert_eq!(log.abandoned(), Some(Abandoned::NotRetryable));
    assert!(fallback.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_backend_without_a_mechanism_is_never_chosen() {
    let primary = Recorded::new(cut());
    let plain = Recorded::new(Script::new().text("ld!"));
    let able = Recorded::new(Script::new().text("ld!"));
    let router = primary.add(Failover::builder(), "primary");
    let router = plain.add(router, "plain");
    let router = able
        .add(router, "able")
        .continues_with("able", Prefill::ContinueFinalMessage)
        .continuation(Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!((text.as_str(), error), ("Hello world!", None));
    assert!(plain.requests().is_empty());
    assert_eq!(log.continued()[0].to.as_str(), "able");
}

#[tokio::test(start_paused = true)]
async fn no_backend_able_to_continue_leaves_the_error() {
    let primary = Recorded::new(cut());
    let plain = Recorded::new(Script::new().text("ld!"));
    let router = plain
        .add(primary.add(Failover::builder(), "primary"), "plain")
        .continuation(Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!(
        (text.as_str(), error),
        ("Hello wor", Some(ErrorClass::Network))
    );
    assert_eq!(log.abandoned(), Some(Abandoned::NoBackend));
}

#[tokio::test(start_paused = true)]
async fn continuations_stop_at_the_maximum() {
    for (max, expected, error) in [
        (1, "Hello world", Some(ErrorClass::Truncated)),
        (2, "Hello world!", None),
    ] {
        let primary = Recorded::new(cut());
        // Continues, then is cut in turn.
        let second = Recorded::new(Script::new().text("ld").fail(ErrorClass::Truncated));
        let third = Recorded::new(Script::new().text("!"));
        let router = router(&primary, &second, Continuation::new().max(max));
        let router = third
            .add(router, "third")
            .continues_with("third", Prefill::AssistantPrefix)
            .build()
            .unwrap();
        let (text, got, log) = read(router).await;
        assert_eq!((text.as_str(), got), (expected, error), "max {max}");
        assert_eq!(log.continued().len(), max as usize);
        if max == 1 {
            assert_eq!(log.abandoned(), Some(Abandoned::MaxReached));
            assert!(third.requests().is_empty());
        } else {
            // The third continues from everything received.
            assert_eq!(
                third.requests()[0].prefill,
                Some(("Hello world".to_owned(), Prefill::AssistantPrefix))
            );
            assert_eq!(log.continued()[1].from.as_str(), "fallback");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_continuing_backend_must_start_within_its_first_content_deadline() {
    // An idle timeout of the first stream (a timeout error item).
    let primary = Recorded::new(Script::new().text("Hello ").fail(ErrorClass::Timeout));
    let fallback = Recorded::new(Script::new().wait(MS(5_000)).text("world"));
    let router = router(&primary, &fallback, Continuation::new())
        .first_content_timeout(MS(1_000))
        .build()
        .unwrap();
    let started = Instant::now();
    let (text, error, log) = read(router).await;
    assert_eq!(
        (text.as_str(), error),
        ("Hello ", Some(ErrorClass::Timeout))
    );
    assert_eq!(log.abandoned(), Some(Abandoned::Failed));
    // The fallback was given its deadline, no more.
    assert_eq!(started.elapsed(), MS(1_000));
    assert_eq!(fallback.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_continuation_that_stalls_before_its_overlap_is_known_gives_the_original_error() {
    let primary = Recorded::new(cut());
    // Repeats the start of the received text, then goes silent: the rule
    // is still undecided, the repeat held back, when the idle deadline cuts.
    let fallback = ScriptedService::new(Script::new().text("Hel").stall());
    let idle = FirstChunkTimeoutLayer::builder(MS(5_000))
        .idle(MS(500))
        .build()
        .unwrap();
    let router = primary
        .add(Failover::builder(), "primary")
        .service("fallback", idle.layer(fallback.clone()))
        .continues_with("fallback", Prefill::AssistantPrefix)
        .continuation(Continuation::new())
        .build()
        .unwrap();
    let started = Instant::now();
    let (text, error, log) = read(router).await;
    // Nothing of the held text reached the caller, and the error is the
    // first stream's, not the continuation's timeout.
    assert_eq!(
        (text.as_str(), error),
        ("Hello wor", Some(ErrorClass::Network))
    );
    assert_eq!(log.abandoned(), Some(Abandoned::Failed));
    assert!(log.continued().is_empty());
    assert_eq!(fallback.probe().calls(), 1);
    assert_eq!(started.elapsed(), MS(500));
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_bounds_continuations() {
    // Fails 3 s into the request: past the total of 2 s, no continuation.
    let late = Recorded::new(
        Script::new()
            .text("Hello ")
            .wait(MS(3_000))
            .fail(ErrorClass::Network),
    );
    let fallback = Recorded::new(Script::new().text("world"));
    let first = router(&late, &fallback, Continuation::new().total(MS(2_000)))
        .build()
        .unwrap();
    let (text, error, log) = read(first).await;
    assert_eq!(
        (text.as_str(), error),
        ("Hello ", Some(ErrorClass::Network))
    );
    assert_eq!(log.abandoned(), Some(Abandoned::Deadline));
    assert!(fallback.requests().is_empty());

    // Fails at 1 s: the continuation gets the 1 s left, not its own 5 s.
    let early = Recorded::new(
        Script::new()
            .text("Hello ")
            .wait(MS(1_000))
            .fail(ErrorClass::Network),
    );
    let slow = Recorded::new(Script::new().wait(MS(4_000)).text("world"));
    let second = router(&early, &slow, Continuation::new().total(MS(2_000)))
        .first_content_timeout(MS(5_000))
        .build()
        .unwrap();
    let started = Instant::now();
    let (text, error, _) = read(second).await;
    assert_eq!(
        (text.as_str(), error),
        ("Hello ", Some(ErrorClass::Network))
    );
    assert_eq!(started.elapsed(), MS(2_000));
}

#[tokio::test(start_paused = true)]
async fn usage_is_the_sum_of_both_attempts() {
    let primary = Recorded::new(
        Script::new()
            .usage(Usage::new(10, 0))
            .text("Hello ")
            .fail(ErrorClass::Network),
    );
    // The prefill counts as input of the second attempt.
    let fallback = Recorded::new(
        Script::new()
            .text("world")
            .usage(Usage::new(12, 1))
            .usage(Usage::new(12, 3)),
    );
    let router = router(&primary, &fallback, Continuation::new())
        .build()
        .unwrap();
    let (text, error, log) = read(router).await;
    assert_eq!((text.as_str(), error), ("Hello world", None));
    assert_eq!(log.usage(), Some(Usage::new(22, 3)));
}

#[tokio::test(start_paused = true)]
async fn content_other_than_text_is_never_continued() {
    let primary = Recorded::new(
        Script::new()
            .step(streamgate_core::testing::Step::Chunk(TestChunk::Tokens(3)))
            .fail(ErrorClass::Network),
    );
    let fallback = Recorded::new(Script::new().text("world"));
    let router = router(&primary, &fallback, Continuation::new())
        .build()
        .unwrap();
    let (_, error, log) = read(router).await;
    assert_eq!(error, Some(ErrorClass::Network));
    assert_eq!(log.abandoned(), Some(Abandoned::NotText));
    assert!(fallback.requests().is_empty());
}

type Chat = Response<BoxBody<ChatChunk>>;

/// A stream of chat chunks, then a network error.
fn chat_backend(
    chunks: Vec<ChatChunk>,
    fail: bool,
    calls: Arc<Mutex<Vec<TestRequest>>>,
) -> impl tower::Service<
    TestRequest,
    Response = Chat,
    Error = BoxError,
    Future = std::future::Ready<Result<Chat, BoxError>>,
> + Clone {
    tower::service_fn(move |request: TestRequest| {
        calls.lock().unwrap().push(request);
        let mut items: Vec<Result<ChatChunk, BoxError>> = chunks.iter().cloned().map(Ok).collect();
        if fail {
            items.push(Err(streamgate_core::ProviderError::new(
                ErrorClass::Network,
                "connection reset",
            )
            .into()));
        }
        let body: BoxBody<ChatChunk> = Box::pin(futures::stream::iter(items));
        std::future::ready(Ok(Response::new(body)))
    })
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_in_progress_is_never_continued() {
    let mut call = ChatChunk::default();
    call.tool_calls.push(ToolCallDelta {
        index: 0,
        id: Some("call_1".into()),
        name: Some("get_weather".into()),
        arguments: "{\"city\": \"Par".into(),
    });
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let router = Failover::builder()
        .service(
            "primary",
            chat_backend(vec![ChatChunk::text("Let me look. "), call], true, first),
        )
        .service(
            "fallback",
            chat_backend(vec![ChatChunk::text("is")], false, second.clone()),
        )
        .continues_with("fallback", Prefill::FinalAssistant)
        .continuation(Continuation::new())
        .build()
        .unwrap();
    let response = router.oneshot(request()).await.unwrap();
    let log = response
        .extensions()
        .get::<ContinuationLog>()
        .unwrap()
        .clone();
    let items: Vec<_> = response.into_body().collect().await;
    assert_eq!(items.len(), 3);
    assert!(items[2].is_err());
    assert_eq!(log.abandoned(), Some(Abandoned::ToolCall));
    assert!(second.lock().unwrap().is_empty());
}
