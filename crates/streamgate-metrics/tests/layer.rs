//! The measuring layer on paused time: exact formulas, cancellation, failure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use http::Response;
use streamgate_core::{
    testing::{Script, ScriptedService, TestChunk, TestRequest},
    BoxError, ErrorClass, Event, MetricsSink, Outcome, StreamTimeout, TimeoutKind, Usage,
};
use streamgate_metrics::MetricsLayer;
use tower::{Layer, ServiceExt};

/// A completed record, copied out of the borrowed event.
#[derive(Clone, Debug, PartialEq)]
struct Done {
    model: String,
    estimated_tokens: u64,
    time_to_first_chunk: Option<Duration>,
    time_to_first_content: Option<Duration>,
    duration: Duration,
    output_duration: Option<Duration>,
    usage: Option<Usage>,
    output_tokens: u64,
    decode: Option<f64>,
    end_to_end: Option<f64>,
    burst: Option<f64>,
    chunks: u64,
    outcome: Outcome,
}

#[derive(Default)]
struct Capture {
    kinds: Mutex<Vec<&'static str>>,
    done: Mutex<Vec<Done>>,
}

impl MetricsSink for Capture {
    fn record(&self, event: &Event<'_>) {
        let kind = match event {
            Event::RequestStarted { .. } => "started",
            Event::FirstChunk { .. } => "first_chunk",
            Event::FirstContent { .. } => "first_content",
            Event::Completed(r) => {
                self.done.lock().unwrap().push(Done {
                    model: r.model.to_owned(),
                    estimated_tokens: r.estimated_tokens,
                    time_to_first_chunk: r.time_to_first_chunk,
                    time_to_first_content: r.time_to_first_content,
                    duration: r.duration,
                    output_duration: r.output_duration,
                    usage: r.usage,
                    output_tokens: r.output_tokens(),
                    decode: r.decode_tokens_per_sec(),
                    end_to_end: r.end_to_end_tokens_per_sec(),
                    burst: r.burst_tokens_per_sec,
                    chunks: r.chunks,
                    outcome: r.outcome,
                });
                "completed"
            }
            _ => "other",
        };
        self.kinds.lock().unwrap().push(kind);
    }
}

impl Capture {
    fn only(&self) -> Done {
        let done = self.done.lock().unwrap();
        assert_eq!(done.len(), 1, "exactly one completed record");
        done[0].clone()
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.kinds.lock().unwrap().clone()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs one request to the end of its stream and returns what was recorded.
async fn run(script: Script) -> (Arc<Capture>, Vec<Result<TestChunk, BoxError>>) {
    let capture = Arc::new(Capture::default());
    let service = MetricsLayer::new("b", capture.clone()).layer(ScriptedService::new(script));
    let items = match service
        .oneshot(TestRequest::new("m").with_estimate(42))
        .await
    {
        Ok(response) => response.into_body().collect().await,
        Err(error) => vec![Err(error)],
    };
    (capture, items)
}

#[tokio::test(start_paused = true)]
async fn every_measure_is_exact_on_paused_time() {
    let script = Script::new()
        .headers_after(ms(100))
        .meta("role")
        .wait(ms(200))
        .tokens(11, ms(100))
        .usage(Usage::new(10, 11));
    let (capture, items) = run(script).await;
    assert_eq!(items.len(), 13);
    let done = capture.only();
    assert_eq!(done.model, "m");
    assert_eq!(done.estimated_tokens, 42);
    assert_eq!(done.time_to_first_chunk, Some(ms(100)));
    assert_eq!(done.time_to_first_content, Some(ms(400)));
    assert_eq!(done.duration, ms(1400));
    assert_eq!(done.output_duration, Some(ms(1000)));
    assert_eq!(done.usage, Some(Usage::new(10, 11)));
    assert_eq!(done.output_tokens, 11);
    assert_eq!(done.decode, Some(10.0));
    assert_eq!(done.end_to_end, Some(11.0 / 1.4));
    // Eleven tokens 100 ms apart: at most ten fall in one second.
    assert_eq!(done.burst, Some(10.0));
    assert_eq!(done.chunks, 13);
    assert_eq!(done.outcome, Outcome::Success);
    assert_eq!(
        capture.kinds(),
        ["started", "first_chunk", "first_content", "completed"]
    );
}

#[tokio::test(start_paused = true)]
async fn zero_output_tokens_give_no_throughput() {
    let (capture, _) = run(Script::new()
        .meta("role")
        .wait(ms(300))
        .usage(Usage::new(5, 0)))
    .await;
    let done = capture.only();
    assert_eq!(done.output_tokens, 0);
    assert_eq!(done.time_to_first_content, None);
    assert_eq!(done.output_duration, None);
    assert_eq!(done.decode, None);
    assert_eq!(done.end_to_end, None);
    assert_eq!(done.burst, None);
    assert_eq!(done.duration, ms(300));
    assert_eq!(done.outcome, Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn one_output_token_has_end_to_end_but_no_decode_speed() {
    let (capture, _) = run(Script::new().wait(ms(500)).text("a")).await;
    let done = capture.only();
    assert_eq!(done.output_tokens, 1);
    assert_eq!(done.output_duration, Some(Duration::ZERO));
    assert_eq!(done.decode, None);
    assert_eq!(done.end_to_end, Some(2.0));
    assert_eq!(done.burst, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn without_reported_usage_the_streamed_count_is_used() {
    let (capture, _) = run(Script::new().tokens(4, ms(250))).await;
    let done = capture.only();
    assert_eq!(done.usage, None);
    assert_eq!(done.output_tokens, 4);
    assert_eq!(done.duration, ms(1000));
    assert_eq!(done.output_duration, Some(ms(750)));
    assert_eq!(done.decode, Some(4.0));
    assert_eq!(done.end_to_end, Some(4.0));
}

#[tokio::test(start_paused = true)]
async fn usage_reported_only_at_the_end_wins_over_the_streamed_count() {
    let (capture, _) = run(Script::new().tokens(3, ms(100)).usage(Usage::new(7, 30))).await;
    let done = capture.only();
    assert_eq!(done.usage, Some(Usage::new(7, 30)));
    assert_eq!(done.output_tokens, 30);
    assert_eq!(done.decode, Some(29.0 / 0.2));
    assert_eq!(done.end_to_end, Some(100.0));
}

#[tokio::test(start_paused = true)]
async fn cumulative_usage_reports_merge_field_wise() {
    let start = Usage {
        input_tokens: 100,
        output_tokens: 1,
        cached_input_tokens: 80,
        reasoning_tokens: 0,
    };
    let end = Usage {
        input_tokens: 100,
        output_tokens: 20,
        cached_input_tokens: 0,
        reasoning_tokens: 5,
    };
    let (capture, _) = run(Script::new().usage(start).tokens(2, ms(100)).usage(end)).await;
    let done = capture.only();
    assert_eq!(
        done.usage,
        Some(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cached_input_tokens: 80,
            reasoning_tokens: 5,
        })
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_stream_records_exactly_one_cancelled() {
    let capture = Arc::new(Capture::default());
    let client = ScriptedService::new(Script::new().tokens(10, ms(100)));
    let service = MetricsLayer::new("b", capture.clone()).layer(client.clone());
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    let mut body = response.into_body();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    drop(body);
    let done = capture.only();
    assert_eq!(done.outcome, Outcome::Cancelled);
    assert_eq!(done.chunks, 2);
    assert_eq!(done.duration, ms(200));
    assert_eq!(client.probe().bodies_dropped(), 1);
    assert_eq!(
        capture.kinds(),
        ["started", "first_chunk", "first_content", "completed"]
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_future_records_exactly_one_cancelled() {
    let capture = Arc::new(Capture::default());
    let client = ScriptedService::new(Script::new().headers_after(ms(1000)).text("a"));
    let service = MetricsLayer::new("b", capture.clone()).layer(client);
    let result = tokio::time::timeout(ms(250), service.oneshot(TestRequest::new("m"))).await;
    assert!(result.is_err());
    let done = capture.only();
    assert_eq!(done.outcome, Outcome::Cancelled);
    assert_eq!(done.duration, ms(250));
    assert_eq!(done.time_to_first_chunk, None);
    assert_eq!(capture.kinds(), ["started", "completed"]);
}

#[tokio::test(start_paused = true)]
async fn failing_stream_records_the_class_after_the_chunks_it_got() {
    let (capture, items) = run(Script::new().tokens(2, ms(100)).fail(ErrorClass::Server)).await;
    assert!(items.last().unwrap().is_err());
    let done = capture.only();
    assert_eq!(done.outcome, Outcome::Failed(ErrorClass::Server));
    assert_eq!(done.chunks, 2);
    assert_eq!(done.output_tokens, 2);
}

#[tokio::test(start_paused = true)]
async fn failing_call_and_truncation_have_their_own_outcomes() {
    let (capture, _) = run(Script::new().fail_call(ErrorClass::RateLimited)).await;
    let done = capture.only();
    assert_eq!(done.outcome, Outcome::Failed(ErrorClass::RateLimited));
    assert_eq!(done.time_to_first_chunk, None);
    assert_eq!(capture.kinds(), ["started", "completed"]);

    let (capture, _) = run(Script::new().text("a").fail(ErrorClass::Truncated)).await;
    assert_eq!(capture.only().outcome, Outcome::Truncated);
}

#[tokio::test(start_paused = true)]
async fn timeout_below_records_timed_out_with_its_kind() {
    let capture = Arc::new(Capture::default());
    let client = tower::service_fn(|_: TestRequest| async {
        tokio::time::sleep(ms(30)).await;
        Err::<Response<futures::stream::Empty<Result<TestChunk, BoxError>>>, BoxError>(
            StreamTimeout {
                kind: TimeoutKind::FirstContent,
                after: ms(30),
            }
            .into(),
        )
    });
    let service = MetricsLayer::new("b", capture.clone()).layer(client);
    assert!(service.oneshot(TestRequest::new("m")).await.is_err());
    let done = capture.only();
    assert_eq!(done.outcome, Outcome::TimedOut(TimeoutKind::FirstContent));
    assert_eq!(done.duration, ms(30));
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_the_failure_class() {
    let capture = Arc::new(Capture::default());
    let client = ScriptedService::new(Script::new().fail_call(ErrorClass::Server));
    let service = MetricsLayer::builder("b")
        .sink(capture.clone())
        .classifier(|_: &(dyn std::error::Error + 'static)| ErrorClass::Overloaded)
        .build()
        .unwrap()
        .layer(client);
    assert!(service.oneshot(TestRequest::new("m")).await.is_err());
    assert_eq!(
        capture.only().outcome,
        Outcome::Failed(ErrorClass::Overloaded)
    );
}

#[tokio::test(start_paused = true)]
async fn body_stays_unpin_for_layers_that_commit() {
    fn assert_unpin<T: Unpin>(_: &T) {}
    let capture = Arc::new(Capture::default());
    let service =
        MetricsLayer::new("b", capture).layer(ScriptedService::new(Script::new().text("a")));
    let response = service.oneshot(TestRequest::new("m")).await.unwrap();
    assert_unpin(response.body());
}
