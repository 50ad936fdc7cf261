//! The `[shared_state]` section (features `config` and `redis`): its
//! checks, its secrets, and replicas built from one file sharing state
//! through a real `redis-server` (started by the test on a free loopback
//! port), against the mock provider over loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../crates/streamgate-redis/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{eventually, RedisServer};
use futures::StreamExt;
use streamgate::config::{Config, Runtime, SharedStateConfig};
use streamgate::core::BackendId;
use streamgate::mock::{MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::ChatRequest;
use streamgate::redis::Fleet;
use tower::ServiceExt;

/// A bound for a loopback Redis on a loaded machine, not a measurement.
const TIMEOUT: Duration = Duration::from_secs(2);

fn with_section(keys: &str) -> String {
    format!(
        "[shared_state]\n{keys}\n[[backends]]\nname = \"a\"\nprovider = \"ollama\"\n\
         base_url = \"http://127.0.0.1:1\"\n"
    )
}

#[test]
fn shared_state_settings_are_checked_with_their_path() {
    let cases = [
        (
            "redis_url_env = \"redis://:pw@host:6379\"",
            "shared_state.redis_url_env: must be the name of an environment variable, not the url",
        ),
        (
            "prefix = \"\"",
            "shared_state.prefix: the key prefix must not be empty",
        ),
        ("timeout = \"0s\"", "shared_state.timeout: must be above 0"),
        (
            "connect_timeout = \"0s\"",
            "shared_state.connect_timeout: must be above 0",
        ),
        (
            "window = \"10ms\"",
            "shared_state.window: must be at least 60ms",
        ),
        (
            "reservation_ttl = \"0s\"",
            "shared_state.reservation_ttl: must be at least 1ms",
        ),
        (
            "queue_capacity = 0",
            "shared_state.queue_capacity: must be above 0",
        ),
        (
            "backoff = { first = \"0s\", max = \"1s\" }",
            "shared_state.backoff.first: must be above 0",
        ),
        (
            "backoff = { first = \"2s\", max = \"1s\" }",
            "shared_state.backoff.max: must be at least the first wait",
        ),
        (
            "backoff = { first = \"1s\" }",
            "shared_state.backoff: missing field `max`",
        ),
        (
            "url = \"redis://localhost\"",
            "shared_state.url: unknown key `url`; expected one of redis_url_env, prefix, \
             timeout, connect_timeout, window, reservation_ttl, queue_capacity, backoff",
        ),
        (
            "timout = \"5ms\"",
            "shared_state.timout: unknown key `timout` (did you mean `timeout`?)",
        ),
    ];
    for (keys, expected) in cases {
        let error = Config::from_toml_str(&with_section(keys)).unwrap_err();
        assert_eq!(error.to_string(), expected, "{keys}");
    }
}

#[test]
fn an_unset_url_variable_fails_the_build_with_its_name() {
    let config = Config::from_toml_str(&with_section(
        "redis_url_env = \"STREAMGATE_TEST_NEVER_SET_9C1E\"",
    ))
    .unwrap();
    let error = Backends::from_config(&config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "shared_state.redis_url_env: environment variable STREAMGATE_TEST_NEVER_SET_9C1E is not set"
    );
    let error = Runtime::with_secrets(&config, |_| Some(String::new())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "shared_state.redis_url_env: environment variable STREAMGATE_TEST_NEVER_SET_9C1E is empty"
    );
}

#[test]
fn a_fleet_built_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let config = Config::from_toml_str(&with_section("")).unwrap();
    let error =
        Runtime::with_secrets(&config, |_| Some("redis://127.0.0.1:1/".into())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "shared_state: needs a tokio runtime: build the router inside one"
    );
}

#[tokio::test]
async fn a_password_in_the_url_is_never_shown() {
    let config = Config::from_toml_str(&with_section("")).unwrap();
    let invalid = Runtime::with_secrets(&config, |_| {
        Some("redis://:hunter2-secret@127.0.0.1:notaport/".into())
    })
    .unwrap_err();
    let shown = format!("{invalid} {invalid:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(invalid.path(), "shared_state.redis_url_env");
    assert!(shown.contains("REDIS_URL"), "{shown}");

    let runtime = Runtime::with_secrets(&config, |_| {
        Some("redis://:hunter2-secret@127.0.0.1:1/".into())
    })
    .unwrap();
    let backends = Backends::from_config_with(&config, &runtime).unwrap();
    let fleet = runtime.fleet().unwrap();
    let shown = format!(
        "{runtime:?} {fleet:?} {} {backends:?} {}",
        fleet.url(),
        backends.effective_config().unwrap()
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redis_url_env = \"REDIS_URL\""), "{shown}");
}

#[test]
fn the_printed_defaults_are_the_fleet_builders_own() {
    let url = "redis://127.0.0.1:1/";
    let bare = SharedStateConfig::default();
    assert_eq!(
        format!("{:?}", bare.effective().configure(Fleet::builder(url))),
        format!("{:?}", bare.configure(Fleet::builder(url))),
    );
    assert_eq!(
        format!("{:?}", bare.configure(Fleet::builder(url))),
        format!("{:?}", Fleet::builder(url))
    );
    let printed = bare.to_string();
    for line in [
        "redis_url_env = \"REDIS_URL\"",
        "prefix = \"streamgate\"",
        "timeout = \"5ms\"",
        "connect_timeout = \"100ms\"",
        "queue_capacity = 1024",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
}

async fn send(
    router: &streamgate::failover::Failover<ChatRequest, streamgate::providers::ChatChunk>,
) -> Result<(), BoxError> {
    let response = router
        .clone()
        .oneshot(ChatRequest::new("gpt-4o-mini").with_user("hi"))
        .await?;
    let mut body = response.into_body();
    while let Some(chunk) = body.next().await {
        chunk?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_built_from_one_file_share_what_they_learn_unless_a_backend_opts_out() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let limited = || {
        MockServer::start_with_plan(
            Plan::new()
                .fail_with_status(429)
                .with_retry_after(Duration::from_secs(30)),
        )
    };
    let (shared, own) = (limited().await.unwrap(), limited().await.unwrap());
    let text = format!(
        r#"
        [shared_state]
        redis_url_env = "FLEET_URL"
        prefix = "config-test"
        timeout = "2s"
        connect_timeout = "2s"

        [[backends]]
        name = "shared"
        provider = "openai-compatible"
        base_url = "{}/v1"

        [[backends]]
        name = "own"
        provider = "openai-compatible"
        base_url = "{}/v1"
        shared_state = false
        "#,
        shared.url(),
        own.url()
    );
    let config = Config::from_toml_str(&text).unwrap();
    // Two replicas: each its own runtime (and Redis connection) and router.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let url = redis.url();
        let runtime = Runtime::with_secrets(&config, move |_| Some(url.clone())).unwrap();
        let fleet = runtime.fleet().unwrap().clone();
        tokio::time::timeout(TIMEOUT * 5, fleet.connected())
            .await
            .expect("the fleet connects");
        let router = Backends::from_config_with(&config, &runtime)
            .unwrap()
            .build()
            .unwrap();
        replicas.push((runtime, router));
    }

    // The first replica calls both backends and learns both are limited.
    assert!(send(&replicas[0].1).await.is_err());
    assert_eq!((shared.requests().len(), own.requests().len()), (1, 1));

    let (other, router) = &replicas[1];
    let now = tokio::time::Instant::now;
    let shared_id = BackendId::new("shared");
    eventually(
        "the other replica learns of the shared backend's 429",
        || {
            other
                .quota("shared")
                .unwrap()
                .check(&shared_id, "gpt-4o-mini", 0, now())
                .is_err()
        },
    )
    .await;
    // It refuses the shared backend without a call, and calls its own.
    assert!(send(router).await.is_err());
    assert_eq!(
        (shared.requests().len(), own.requests().len()),
        (1, 2),
        "only the backend that opted out was called again"
    );
}
