//! Requests through the whole stack over loopback land in the store with
//! every column that has a source filled in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::TempDir;
use futures::StreamExt;
use rusqlite::{types::ValueRef, Connection};
use streamgate::mock::{MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{openai::OpenAiChat, ChatRequest};
use streamgate_store::Store;
use tower::ServiceExt;

/// Columns that stay NULL for a reason, by outcome: a success has no error
/// class and no timeout kind; a failure before any content has no timings
/// after the call, no usage and no speeds.
fn may_be_null(outcome: &str, column: &str) -> bool {
    match outcome {
        "success" => matches!(column, "class" | "timeout_kind"),
        _ => matches!(
            column,
            "timeout_kind"
                | "time_to_first_chunk_ms"
                | "time_to_first_content_ms"
                | "output_duration_ms"
                | "input_tokens"
                | "cached_input_tokens"
                | "reasoning_tokens"
                | "decode_tokens_per_sec"
                | "end_to_end_tokens_per_sec"
                | "burst_tokens_per_sec"
        ),
    }
}

#[tokio::test]
async fn requests_through_the_full_stack_land_with_every_sourced_column_populated() {
    let dir = TempDir::new("full-stack");
    let store = Store::builder(dir.db())
        .provider("flaky", "openai")
        .provider("healthy", "openai-compatible")
        .build()
        .unwrap();
    let plan = Plan::new()
        .with_output_tokens(12)
        .with_input_tokens(1_500)
        .with_cached_input_tokens(200)
        .with_chunk_delay(Duration::from_millis(2));
    // Flaky fails its first request (before any content), then streams.
    let flaky = MockServer::start(
        MockConfig::new()
            .with_sequence([Plan::new().fail_with_status(500)])
            .with_plan(plan.clone()),
    )
    .await
    .unwrap();
    let healthy = MockServer::start_with_plan(plan).await.unwrap();
    let client = |url: String| {
        OpenAiChat::builder()
            .base_url(format!("{url}/v1"))
            .build()
            .unwrap()
    };
    let router = Backends::new()
        .backend(
            Backend::new("flaky", client(flaky.url().to_string()))
                .first_content_timeout(Duration::from_secs(10)),
        )
        .backend(
            Backend::new("healthy", client(healthy.url().to_string()))
                .first_content_timeout(Duration::from_secs(10)),
        )
        .metrics(Arc::new(store.clone()))
        .build()
        .unwrap();

    let requests = 3;
    for _ in 0..requests {
        let request = ChatRequest::new("mock-model").with_user("Name three rivers, please.");
        let mut body = router.clone().oneshot(request).await.unwrap().into_body();
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    }
    store.flush().await;

    let conn = Connection::open(dir.db()).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM requests ORDER BY id").unwrap();
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let outcome_at = columns.iter().position(|c| c == "outcome").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let (mut successes, mut failures) = (0, 0);
    while let Some(row) = rows.next().unwrap() {
        let outcome = row.get::<_, String>(outcome_at).unwrap();
        for (i, column) in columns.iter().enumerate() {
            let null = matches!(row.get_ref(i).unwrap(), ValueRef::Null);
            assert!(
                !null || may_be_null(&outcome, column),
                "{column} is NULL in a {outcome} row"
            );
        }
        let get = |name: &str| {
            row.get_ref(columns.iter().position(|c| c == name).unwrap())
                .unwrap()
        };
        match outcome.as_str() {
            "success" => {
                successes += 1;
                let provider = match get("backend").as_str().unwrap() {
                    "healthy" => "openai-compatible",
                    _ => "openai",
                };
                assert_eq!(get("provider").as_str().unwrap(), provider);
                assert_eq!(get("model").as_str().unwrap(), "mock-model");
                assert_eq!(get("output_tokens").as_i64().unwrap(), 12);
                assert_eq!(get("input_tokens").as_i64().unwrap(), 1_500);
                assert_eq!(get("cached_input_tokens").as_i64().unwrap(), 200);
                assert!(get("decode_tokens_per_sec").as_f64().unwrap() > 0.0);
                assert_eq!(get("input_category").as_str().unwrap(), "tiny");
                assert_eq!(get("output_category").as_str().unwrap(), "tiny");
            }
            _ => {
                failures += 1;
                assert_eq!(get("backend").as_str().unwrap(), "flaky");
                assert_eq!(get("provider").as_str().unwrap(), "openai");
                assert_eq!(get("class").as_str().unwrap(), "server");
            }
        }
    }
    assert_eq!(successes, requests);
    assert_eq!(failures, 1);
    // The failover was kept as an event too.
    let failovers: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'failover' AND backend = 'flaky'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failovers, 1);
    assert_eq!(store.stats().dropped, 0);
}
