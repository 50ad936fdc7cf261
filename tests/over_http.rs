//! The builders over real HTTP: provider clients against the mock server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use streamgate::core::keyed::DEFAULT_MODEL_CAP;
use streamgate::core::scoreboard::Scoreboard;
use streamgate::core::BreakerState;
use streamgate::failover::{Abandoned, FailoverBuilder};
use streamgate::mock::{expected_text, MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{anthropic::Anthropic, openai::OpenAiChat, ChatChunk, ChatRequest};
use tower::ServiceExt;

#[tokio::test]
async fn a_429_fails_over_then_the_quota_gate_skips_the_backend_without_calling_it() {
    let limited = MockServer::start(
        MockConfig::new().with_sequence([Plan::new()
            .fail_with_status(429)
            .with_retry_after(Duration::from_secs(30))]),
    )
    .await
    .unwrap();
    let healthy = MockServer::start_with_plan(Plan::new().with_output_tokens(5))
        .await
        .unwrap();
    let tracker = Arc::new(PerformanceTracker::new());
    let router = Backends::new()
        .backend(
            Backend::new(
                "limited",
                OpenAiChat::builder()
                    .base_url(format!("{}/v1", limited.url()))
                    .build()
                    .unwrap(),
            )
            .first_content_timeout(Duration::from_secs(10)),
        )
        .backend(
            Backend::new(
                "healthy",
                Anthropic::builder()
                    .base_url(format!("{}/v1", healthy.url()))
                    .api_key("test")
                    .build()
                    .unwrap(),
            )
            .first_content_timeout(Duration::from_secs(10)),
        )
        .metrics(tracker.clone())
        .build()
        .unwrap();

    let mut reports = Vec::new();
    for _ in 0..2 {
        let request = ChatRequest::new("mock-model").with_user("hello");
        let response = router.clone().oneshot(request).await.unwrap();
        reports.push(
            response
                .extensions()
                .get::<FailoverReport>()
                .cloned()
                .unwrap(),
        );
        let mut text = String::new();
        let mut body = response.into_body();
        while let Some(chunk) = body.next().await {
            text.push_str(&chunk.unwrap().text);
        }
        assert_eq!(text, expected_text(5));
    }

    // The 429 is a failure before the first token: the caller never saw it.
    assert_eq!(reports[0].served_by.as_str(), "healthy");
    assert_eq!(reports[0].skipped[0].class, ErrorClass::RateLimited);
    // Its retry-after was learned: the second request skipped the backend
    // at the quota gate, which sits outside its breaker.
    assert_eq!(reports[1].served_by.as_str(), "healthy");
    assert_eq!(
        reports[1].skipped[0].rejected,
        Some(RejectReason::QuotaExhausted)
    );
    assert_eq!(limited.served(), 1);
    assert_eq!(healthy.served(), 2);

    let snapshot = tracker.snapshot();
    let key = snapshot.key("limited", "mock-model").unwrap();
    assert_eq!(key.failures.get("rate_limited"), Some(&1));
    assert_eq!(key.rejections.get("quota_exhausted"), Some(&1));
    assert_eq!(snapshot.key("healthy", "mock-model").unwrap().successes, 2);
}

#[tokio::test]
async fn over_http_the_routers_deadline_opens_the_breaker_of_a_silent_backend() {
    let silent = MockServer::start_with_plan(Plan::new().stall_after(0))
        .await
        .unwrap();
    let healthy = MockServer::start_with_plan(Plan::new().with_output_tokens(3))
        .await
        .unwrap();
    let client = |server: &MockServer| {
        OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()
            .unwrap()
    };
    let breaker = Breaker::new("silent");
    // Lateness off (a late backend would go last for 30 s), so that every
    // request tries the silent backend first until its breaker opens.
    let board = Scoreboard::with_settings(DEFAULT_MODEL_CAP, Duration::ZERO);
    let router = Backends::new()
        .scoreboard(&board)
        .backend(Backend::new("silent", client(&silent)).circuit_breaker(breaker.clone()))
        // Its own deadline wins over the router's, which the silent backend
        // inherits.
        .backend(
            Backend::new("healthy", client(&healthy))
                .first_content_timeout(Duration::from_secs(10)),
        )
        .failover(|f| f.first_content_timeout(Duration::from_millis(50)))
        .build()
        .unwrap();
    for _ in 0..4 {
        let request = ChatRequest::new("mock-model").with_user("hello");
        let response = router.clone().oneshot(request).await.unwrap();
        let report = response
            .extensions()
            .get::<FailoverReport>()
            .cloned()
            .unwrap();
        assert_eq!(report.served_by.as_str(), "healthy");
        let mut text = String::new();
        let mut body = response.into_body();
        while let Some(chunk) = body.next().await {
            text.push_str(&chunk.unwrap().text);
        }
        assert_eq!(text, expected_text(3));
    }
    // Three cut attempts were timeouts to the breaker: the fourth request
    // skipped the silent backend without calling it.
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(silent.served(), 3);
}

/// Backends `cut` (OpenAI Chat, 8 tokens, the stream cut after 3) and
/// `second` (able to continue per `how`, its server `whole`): the caller's
/// text, the continuation log, and the body `whole` received.
async fn continued_over_http<S, B, E>(
    second: Backend<S, ChatRequest>,
    how: Prefill,
    whole: &MockServer,
) -> (String, Option<ContinuationLog>, serde_json::Value)
where
    S: tower::Service<ChatRequest, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: futures::Stream<Item = Result<ChatChunk, E>> + Unpin + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let fault = Plan::new().with_output_tokens(8).disconnect_after(3);
    continued_after(fault, second, how, whole).await
}

/// [`continued_over_http`] with the first stream's `fault`.
async fn continued_after<S, B, E>(
    fault: Plan,
    second: Backend<S, ChatRequest>,
    how: Prefill,
    whole: &MockServer,
) -> (String, Option<ContinuationLog>, serde_json::Value)
where
    S: tower::Service<ChatRequest, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: futures::Stream<Item = Result<ChatChunk, E>> + Unpin + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let cut = MockServer::start_with_plan(fault).await.unwrap();
    let first = Backend::new(
        "cut",
        OpenAiChat::builder()
            .base_url(format!("{}/v1", cut.url()))
            .build()
            .unwrap(),
    );
    let router = Backends::new()
        .backend(
            first
                .first_content_timeout(Duration::from_secs(10))
                .idle_timeout(Duration::from_millis(200)),
        )
        .backend(
            second
                .first_content_timeout(Duration::from_secs(10))
                .continuation(how),
        )
        .failover(|f| f.continuation(Continuation::new()))
        .build()
        .unwrap();
    let request = ChatRequest::new("mock-model").with_user("hello");
    let response = router.oneshot(request).await.unwrap();
    let log = response.extensions().get::<ContinuationLog>().cloned();
    let mut text = String::new();
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        text.push_str(&chunk.unwrap().text);
    }
    let sent = whole.wait_for_request(0).await.request.body;
    (text, log, sent)
}

#[tokio::test]
async fn a_cut_stream_continues_on_anthropic_with_a_final_assistant_prefill() {
    // The mock answers from the start whatever the prefill: the repeat is
    // dropped.
    let whole = MockServer::start_with_plan(Plan::new().with_output_tokens(8))
        .await
        .unwrap();
    let anthropic = Anthropic::builder()
        .base_url(format!("{}/v1", whole.url()))
        .api_key("test")
        .build()
        .unwrap();
    let (text, log, sent) = continued_over_http(
        Backend::new("whole", anthropic),
        Prefill::FinalAssistant,
        &whole,
    )
    .await;
    assert_eq!(text, expected_text(8));
    let log = log.unwrap();
    assert_eq!(log.continued().len(), 1);
    assert_eq!(log.continued()[0].dropped_bytes, expected_text(3).len());
    // Trailing whitespace left out, as Anthropic requires.
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &serde_json::json!({"role": "assistant", "content": expected_text(3).trim_end()})
    );
}

#[tokio::test]
async fn a_cut_stream_continues_on_an_openai_compatible_server_with_a_prefix_message() {
    let whole = MockServer::start_with_plan(Plan::new().with_output_tokens(8))
        .await
        .unwrap();
    let openai = OpenAiChat::builder()
        .base_url(format!("{}/v1", whole.url()))
        .build()
        .unwrap();
    let (text, _, sent) = continued_over_http(
        Backend::new("whole", openai),
        Prefill::AssistantPrefix,
        &whole,
    )
    .await;
    assert_eq!(text, expected_text(8));
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &serde_json::json!({"role": "assistant", "content": expected_text(3), "prefix": true})
    );
}

#[tokio::test]
async fn each_mid_stream_fault_is_continued_with_the_exact_text() {
    for (name, fault) in [
        ("cut", Plan::new().disconnect_after(3)),
        ("stall", Plan::new().stall_after(3)),
        ("error event", Plan::new().error_after(3)),
    ] {
        let whole =
            MockServer::start_with_plan(Plan::new().with_output_tokens(8).honouring_prefill())
                .await
                .unwrap();
        let anthropic = Anthropic::builder()
            .base_url(format!("{}/v1", whole.url()))
            .api_key("test")
            .build()
            .unwrap();
        let (text, log, _) = continued_after(
            fault.with_output_tokens(8),
            Backend::new("whole", anthropic),
            Prefill::FinalAssistant,
            &whole,
        )
        .await;
        assert_eq!(text, expected_text(8), "{name}");
        let continued = log.unwrap().continued();
        assert_eq!(continued.len(), 1, "{name}");
        // Honoured: nothing repeated.
        assert_eq!(continued[0].dropped_bytes, 0, "{name}");
        // The prefill is the three tokens received, trailing space left out.
        let sent = whole.wait_for_request(0).await.request.body;
        assert_eq!(
            sent["messages"].as_array().unwrap().last().unwrap()["content"],
            serde_json::json!(expected_text(3).trim_end()),
            "{name}"
        );
    }
}

/// OpenAI Chat backends over `servers` in order, each after the first able
/// to continue with a prefix message (with its idle deadline, if given),
/// up to `max` continuations: the caller's text, the error item's class,
/// and the continuation log.
async fn continued_across(
    servers: &[(&MockServer, Option<Duration>)],
    max: u32,
) -> (String, Option<ErrorClass>, ContinuationLog) {
    let mut backends = Backends::new();
    for (i, (server, idle)) in servers.iter().enumerate() {
        let client = OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()
            .unwrap();
        let mut backend =
            Backend::new(format!("b{i}"), client).first_content_timeout(Duration::from_secs(10));
        if let Some(idle) = idle {
            backend = backend.idle_timeout(*idle);
        }
        if i > 0 {
            backend = backend.continuation(Prefill::AssistantPrefix);
        }
        backends = backends.backend(backend);
    }
    let router = backends
        .failover(move |f| f.continuation(Continuation::new().max(max)))
        .build()
        .unwrap();
    let request = ChatRequest::new("mock-model").with_user("hello");
    let response = router.oneshot(request).await.unwrap();
    let log = response
        .extensions()
        .get::<ContinuationLog>()
        .cloned()
        .unwrap();
    let (mut text, mut error) = (String::new(), None);
    let mut body = response.into_body();
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => text.push_str(&chunk.text),
            Err(e) => {
                assert!(error.is_none(), "two error items");
                error = Some(classify(&*e));
            }
        }
    }
    (text, error, log)
}

#[tokio::test]
async fn over_http_a_continuation_cut_in_turn_continues_again_only_within_the_maximum() {
    for max in [1, 2] {
        let first =
            MockServer::start_with_plan(Plan::new().with_output_tokens(8).disconnect_after(3))
                .await
                .unwrap();
        // Continues from token 3, and is cut after token 5 in turn.
        let second = MockServer::start_with_plan(
            Plan::new()
                .with_output_tokens(8)
                .honouring_prefill()
                .disconnect_after(5),
        )
        .await
        .unwrap();
        let third =
            MockServer::start_with_plan(Plan::new().with_output_tokens(8).honouring_prefill())
                .await
                .unwrap();
        let (text, error, log) =
            continued_across(&[(&first, None), (&second, None), (&third, None)], max).await;
        let continued = log.continued();
        if max == 1 {
            assert_eq!(
                (text, error),
                (expected_text(5), Some(ErrorClass::Network)),
                "max 1"
            );
            assert_eq!(continued.len(), 1);
            assert_eq!(log.abandoned(), Some(Abandoned::MaxReached));
            assert_eq!(third.served(), 0);
        } else {
            assert_eq!((text, error), (expected_text(8), None), "max 2");
            assert_eq!(continued.len(), 2);
            assert_eq!(continued[1].from.as_str(), "b1");
            assert_eq!(continued[1].to.as_str(), "b2");
            // The third was given everything received, from both streams.
            let sent = third.wait_for_request(0).await.request.body;
            assert_eq!(
                sent["messages"].as_array().unwrap().last().unwrap(),
                &serde_json::json!({"role": "assistant", "content": expected_text(5), "prefix": true})
            );
        }
    }
}

#[tokio::test]
async fn over_http_a_continuation_that_stalls_before_its_overlap_is_known_gives_the_original_error()
{
    let first = MockServer::start_with_plan(Plan::new().with_output_tokens(8).disconnect_after(3))
        .await
        .unwrap();
    // Ignores the prefill: repeats two of the three tokens received (the
    // overlap still undecided, held back), then goes silent.
    let second = MockServer::start_with_plan(Plan::new().with_output_tokens(8).stall_after(2))
        .await
        .unwrap();
    let (text, error, log) = continued_across(
        &[(&first, None), (&second, Some(Duration::from_millis(100)))],
        1,
    )
    .await;
    // Nothing held reached the caller; the error is the first stream's cut,
    // not the continuation's timeout.
    assert_eq!((text, error), (expected_text(3), Some(ErrorClass::Network)));
    assert_eq!(log.abandoned(), Some(Abandoned::Failed));
    assert!(log.continued().is_empty());
    assert_eq!(second.served(), 1);
}

#[tokio::test]
async fn over_http_round_robin_spreads_and_least_ttfc_avoids_the_slow_backend() {
    let start = |delay_ms: u64| {
        MockServer::start_with_plan(
            Plan::new()
                .with_first_content_delay(Duration::from_millis(delay_ms))
                .with_output_tokens(3),
        )
    };
    let client = |server: &MockServer| {
        OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()
            .unwrap()
    };
    let read_all = |router: Failover<ChatRequest, streamgate::providers::ChatChunk>| async move {
        let response = router
            .oneshot(ChatRequest::new("mock-model").with_user("hello"))
            .await
            .unwrap();
        let mut body = response.into_body();
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    };

    let servers = [
        start(0).await.unwrap(),
        start(0).await.unwrap(),
        start(0).await.unwrap(),
    ];
    let router = Backends::new()
        .backend(Backend::new("a", client(&servers[0])))
        .backend(Backend::new("b", client(&servers[1])))
        .backend(Backend::new("c", client(&servers[2])))
        .failover(|f| f.strategy(Strategy::RoundRobin))
        .build()
        .unwrap();
    for _ in 0..9 {
        read_all(router.clone()).await;
    }
    assert_eq!(
        servers.iter().map(MockServer::served).collect::<Vec<_>>(),
        [3, 3, 3]
    );

    // One backend far slower to first content: after one exploring request
    // each, least time to first content never picks it again.
    let servers = [start(400).await.unwrap(), start(0).await.unwrap()];
    let router = Backends::new()
        .backend(Backend::new("slow", client(&servers[0])))
        .backend(Backend::new("fast", client(&servers[1])))
        .failover(|f| f.strategy(Strategy::LeastTimeToFirstContent))
        .build()
        .unwrap();
    for _ in 0..6 {
        read_all(router.clone()).await;
    }
    assert_eq!((servers[0].served(), servers[1].served()), (1, 5));
}

#[tokio::test]
async fn over_http_weighted_p2c_and_sticky_choose_as_documented() {
    let start = || MockServer::start_with_plan(Plan::new().with_output_tokens(2));
    let client = |server: &MockServer| {
        OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()
            .unwrap()
    };
    let served_by = |router: Failover<ChatRequest, streamgate::providers::ChatChunk>,
                     model: &'static str| async move {
        let response = router
            .oneshot(ChatRequest::new(model).with_user("hello"))
            .await
            .unwrap();
        let by = response
            .extensions()
            .get::<FailoverReport>()
            .unwrap()
            .served_by
            .clone();
        let mut body = response.into_body();
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
        by
    };
    let three = || async {
        [
            start().await.unwrap(),
            start().await.unwrap(),
            start().await.unwrap(),
        ]
    };
    let router_over =
        |servers: &[MockServer; 3],
         configure: fn(
            FailoverBuilder<ChatRequest, streamgate::providers::ChatChunk>,
        )
            -> FailoverBuilder<ChatRequest, streamgate::providers::ChatChunk>| {
            Backends::new()
                .backend(Backend::new("a", client(&servers[0])))
                .backend(Backend::new("b", client(&servers[1])))
                .backend(Backend::new("c", client(&servers[2])))
                .failover(configure)
                .build()
                .unwrap()
        };

    // Weighted: a weight of 0 is never the first choice.
    let servers = three().await;
    let router = router_over(&servers, |f| f.strategy(Strategy::Weighted(vec![1, 1, 0])));
    for _ in 0..12 {
        served_by(router.clone(), "mock-model").await;
    }
    assert_eq!(servers[2].served(), 0);
    assert_eq!(servers[0].served() + servers[1].served(), 12);

    // Power of two choices: every request is served, by one of the three.
    let servers = three().await;
    let router = router_over(&servers, |f| f.strategy(Strategy::PowerOfTwoChoices));
    for _ in 0..12 {
        served_by(router.clone(), "mock-model").await;
    }
    assert_eq!(servers.iter().map(MockServer::served).sum::<u64>(), 12);

    // Sticky on the model name: one session, one backend.
    let servers = three().await;
    let router = router_over(&servers, |f| {
        f.strategy(Strategy::Sticky)
            .session_key(|request: &ChatRequest| Some(request.model.clone()))
    });
    let home = served_by(router.clone(), "session-7").await;
    for _ in 0..5 {
        assert_eq!(served_by(router.clone(), "session-7").await, home);
    }
    assert_eq!(servers.iter().filter(|s| s.served() > 0).count(), 1);
}

/// Counts what one backend's guards report: starts, ends by outcome, and
/// refusals.
#[derive(Default)]
struct GuardEvents(std::sync::Mutex<Vec<String>>);

impl MetricsSink for GuardEvents {
    fn record(&self, event: &streamgate::core::Event<'_>) {
        use streamgate::core::Event;
        let entry = match event {
            Event::RequestStarted { .. } => "started".to_owned(),
            Event::Completed(record) => format!("completed {}", record.outcome.as_str()),
            Event::Rejected { reason, .. } => format!("rejected {}", reason.as_str()),
            _ => return,
        };
        self.0.lock().unwrap().push(entry);
    }
}

#[tokio::test]
async fn over_http_the_fused_guards_end_each_call_once_and_report_a_refusal_once() {
    let server = MockServer::start(
        MockConfig::new().with_sequence([
            Plan::new().with_output_tokens(3),
            Plan::new()
                .fail_with_status(429)
                .with_retry_after(Duration::from_secs(30)),
        ]),
    )
    .await
    .unwrap();
    let events = Arc::new(GuardEvents::default());
    let backend = Backend::new(
        "openai",
        OpenAiChat::builder()
            .base_url(format!("{}/v1", server.url()))
            .build()
            .unwrap(),
    )
    .first_content_timeout(Duration::from_secs(10))
    .tpm_budget(1_000_000)
    .metrics(events.clone())
    .build()
    .unwrap();

    let request = || ChatRequest::new("mock-model").with_user("hello");
    // Served: one start, one clean end.
    let response = backend.clone().oneshot(request()).await.unwrap();
    let chunks: Vec<_> = response.into_body().collect().await;
    assert!(chunks.iter().all(Result::is_ok));
    // Rate limited: the quota gate learns the 30 s; the call fails once.
    let Err(error) = backend.clone().oneshot(request()).await else {
        panic!("a 429 is an error");
    };
    assert_eq!(classify(&*error), ErrorClass::RateLimited);
    // Refused by the quota gate, inside the same guard layer as metrics and
    // TPM: reported once, recorded once, the server never called.
    let Err(error) = backend.clone().oneshot(request()).await else {
        panic!("refused");
    };
    let rejected = error.downcast_ref::<Rejected>().expect("a rejection");
    assert_eq!(rejected.reason, RejectReason::QuotaExhausted);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "started",
            "completed success",
            "started",
            "completed rate_limited",
            "started",
            "rejected quota_exhausted",
            "completed rejected",
        ]
    );
}
