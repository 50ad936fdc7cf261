//! Declarative configuration: loading, validation errors with their
//! paths, printing the effective configuration, and what it builds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use streamgate::breaker::Breaker;
use streamgate::config::{
    BackendConfig, BreakerConfig, Config, ConfigError, Format, MetricsConfig, PacingConfig,
    ProviderKind, QuotaConfig, RouterConfig, Runtime, StoreConfig, Toggle,
};
use streamgate::core::testing::{Script, ScriptedService, TestRequest};
use streamgate::core::{BreakerState, ErrorClass};
use streamgate::failover::Failover;
use streamgate::mock::{MockConfig, MockServer, Plan};
use streamgate::prelude::*;
use streamgate::providers::{ChatChunk, ChatRequest};
use streamgate::quota::PacingLayer;
use tower::ServiceExt;

const FULL: &str = r#"
[router]
strategy = { weighted = [3, 1] }
hedge = { delay = "learned", budget = 0.05, percentile = 0.9, floor = "250ms", min_samples = 10 }
retries = 2
backoff = { base = "100ms", max = "2s", max_retry_after = "5s" }
context_length = "stop"
wait_when_unavailable = "15s"
first_content_timeout = "20s"
last_attempt_extra = "10s"

[metrics]
tracker = true
tracker_min_samples = 5
prometheus = true
tracing = true
opentelemetry = false
opentelemetry_meter = "gateway"
model_cap = 16

[store]
path = "analytics.db"
queue_capacity = 500
batch_size = 64
maintenance_interval = "30s"
max_age = "7days"
max_rows = 100000

[[backends]]
name = "openai"
provider = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "MY_OPENAI_KEY"
models = { "gpt-4o" = "gpt-4o-2024-08-06", "*" = "gpt-4o-mini" }
connect_timeout = "5s"
include_usage = false
first_content_timeout = "15s"
idle_timeout = "30s"
total_timeout = "5m"
tpm_budget = 30000
min_throughput = 600
throughput_probe = { chunks = 8, window = "500ms", min_tokens_per_sec = 20.0 }

[backends.breaker]
failures_within = { failures = 5, window = "1m30s" }
consecutive_failures = 4
failure_rate = 0.5
slow_call_rate = { rate = 0.8, threshold = "8s" }
minimum_calls = 20
time_window = "2m"
open_wait = { initial = "1s", multiplier = 3.0, max = "1m" }
half_open_probes = 2
half_open_max_wait = "off"
minimum_open = "2s"
max_wait = "20m"
honor_retry_after = false
counted_classes = ["server", "timeout"]

[backends.quota]
default_cooldown = "20s"
min_cooldown = "200ms"
zero_allowance_cooldown = "2h"
max_wait = "30m"
freshness = "2m"
model_cap = 100
predictive = true

[backends.pacing]
requests_per_minute = 500
tokens_per_minute = 100000
request_burst = 25
token_burst = 20000

[[backends]]
name = "azure"
provider = "azure"
base_url = "https://my-resource.openai.azure.com"
deployment = "gpt-4o"
api_version = "2024-10-21"
breaker = "off"
quota = "off"
"#;

/// The same configuration as [`FULL`], by hand in YAML.
const FULL_YAML: &str = r#"
router:
  strategy: { weighted: [3, 1] }
  hedge: { delay: learned, budget: 0.05, percentile: 0.9, floor: 250ms, min_samples: 10 }
  retries: 2
  backoff: { base: 100ms, max: 2s, max_retry_after: 5s }
  context_length: stop
  wait_when_unavailable: 15s
  first_content_timeout: 20s
  last_attempt_extra: 10s
metrics:
  tracker: true
  tracker_min_samples: 5
  prometheus: true
  tracing: true
  opentelemetry: false
  opentelemetry_meter: gateway
  model_cap: 16
store:
  path: analytics.db
  queue_capacity: 500
  batch_size: 64
  maintenance_interval: 30s
  max_age: 7days
  max_rows: 100000
backends:
  - name: openai
    provider: openai
    base_url: https://api.openai.com/v1
    api_key_env: MY_OPENAI_KEY
    models: { gpt-4o: gpt-4o-2024-08-06, "*": gpt-4o-mini }
    connect_timeout: 5s
    include_usage: false
    first_content_timeout: 15s
    idle_timeout: 30s
    total_timeout: 5m
    tpm_budget: 30000
    min_throughput: 600
    throughput_probe: { chunks: 8, window: 500ms, min_tokens_per_sec: 20.0 }
    breaker:
      failures_within: { failures: 5, window: 1m30s }
      consecutive_failures: 4
      failure_rate: 0.5
      slow_call_rate: { rate: 0.8, threshold: 8s }
      minimum_calls: 20
      time_window: 2m
      open_wait: { initial: 1s, multiplier: 3.0, max: 1m }
      half_open_probes: 2
      half_open_max_wait: "off"
      minimum_open: 2s
      max_wait: 20m
      honor_retry_after: false
      counted_classes: [server, timeout]
    quota:
      default_cooldown: 20s
      min_cooldown: 200ms
      zero_allowance_cooldown: 2h
      max_wait: 30m
      freshness: 2m
      model_cap: 100
      predictive: true
    pacing:
      requests_per_minute: 500
      tokens_per_minute: 100000
      request_burst: 25
      token_burst: 20000
  - name: azure
    provider: azure
    base_url: https://my-resource.openai.azure.com
    deployment: gpt-4o
    api_version: "2024-10-21"
    breaker: "off"
    quota: "off"
"#;

/// The same configuration as [`FULL`], by hand in JSON.
const FULL_JSON: &str = r#"{
  "router": {
    "strategy": { "weighted": [3, 1] },
    "hedge": {
      "delay": "learned", "budget": 0.05, "percentile": 0.9, "floor": "250ms", "min_samples": 10
    },
    "retries": 2,
    "backoff": { "base": "100ms", "max": "2s", "max_retry_after": "5s" },
    "context_length": "stop",
    "wait_when_unavailable": "15s",
    "first_content_timeout": "20s",
    "last_attempt_extra": "10s"
  },
  "metrics": {
    "tracker": true, "tracker_min_samples": 5, "prometheus": true, "tracing": true,
    "opentelemetry": false, "opentelemetry_meter": "gateway", "model_cap": 16
  },
  "store": {
    "path": "analytics.db", "queue_capacity": 500, "batch_size": 64,
    "maintenance_interval": "30s", "max_age": "7days", "max_rows": 100000
  },
  "backends": [
    {
      "name": "openai", "provider": "openai", "base_url": "https://api.openai.com/v1",
      "api_key_env": "MY_OPENAI_KEY",
      "models": { "gpt-4o": "gpt-4o-2024-08-06", "*": "gpt-4o-mini" },
      "connect_timeout": "5s", "include_usage": false,
      "first_content_timeout": "15s", "idle_timeout": "30s", "total_timeout": "5m",
      "tpm_budget": 30000, "min_throughput": 600,
      "throughput_probe": { "chunks": 8, "window": "500ms", "min_tokens_per_sec": 20.0 },
      "breaker": {
        "failures_within": { "failures": 5, "window": "1m30s" },
        "consecutive_failures": 4, "failure_rate": 0.5,
        "slow_call_rate": { "rate": 0.8, "threshold": "8s" },
        "minimum_calls": 20, "time_window": "2m",
        "open_wait": { "initial": "1s", "multiplier": 3.0, "max": "1m" },
        "half_open_probes": 2, "half_open_max_wait": "off", "minimum_open": "2s", "max_wait": "20m",
        "honor_retry_after": false, "counted_classes": ["server", "timeout"]
      },
      "quota": {
        "default_cooldown": "20s", "min_cooldown": "200ms", "zero_allowance_cooldown": "2h",
        "max_wait": "30m", "freshness": "2m", "model_cap": 100, "predictive": true
      },
      "pacing": {
        "requests_per_minute": 500, "tokens_per_minute": 100000,
        "request_burst": 25, "token_burst": 20000
      }
    },
    {
      "name": "azure", "provider": "azure", "base_url": "https://my-resource.openai.azure.com",
      "deployment": "gpt-4o", "api_version": "2024-10-21", "breaker": "off", "quota": "off"
    }
  ]
}"#;

fn full() -> Config {
    Config::from_toml_str(FULL).unwrap()
}

/// What each builder is given for `config`, as its `Debug` shows it: the
/// router's, and each backend's breaker, pacing and store builders.
fn builders(config: &Config) -> Vec<String> {
    let mut out = vec![format!(
        "{:?}",
        config
            .router
            .configure(Failover::<ChatRequest, ChatChunk>::builder())
    )];
    for backend in &config.backends {
        // An absent section is the builder's defaults, as `Backend` uses them.
        let breaker = match &backend.breaker {
            Some(Toggle::On(b)) => format!("{:?}", b.configure(Breaker::builder("b"))),
            None => format!(
                "{:?}",
                BreakerConfig::default().configure(Breaker::builder("b"))
            ),
            Some(Toggle::Off) => "off".to_owned(),
        };
        let pacing = backend.pacing.as_ref().map(|p| {
            format!(
                "{:?}",
                p.configure(PacingLayer::builder(BackendId::new("b")))
            )
        });
        out.push(format!("{breaker} {pacing:?}"));
    }
    if let Some(store) = &config.store {
        out.push(format!(
            "{:?}",
            store.configure(streamgate::store::Store::builder(&store.path))
        ));
    }
    out
}

fn reload(text: &str, format: Format) -> Config {
    Config::parse(text, format).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn toml_yaml_and_json_load_the_same_configuration() {
    let toml = full();
    assert_eq!(Config::from_yaml_str(FULL_YAML).unwrap(), toml);
    assert_eq!(Config::from_json_str(FULL_JSON).unwrap(), toml);
    assert_eq!(toml.backends.len(), 2);
    assert_eq!(toml.router.retries, Some(2));
}

/// [`FULL`] with every option the weighted strategy leaves out: the
/// sticky strategy and its session key, and (with the `redis` feature)
/// shared state, which one backend opts out of.
fn full_variants() -> Vec<String> {
    let sticky = FULL.replace(
        "strategy = { weighted = [3, 1] }",
        "strategy = \"sticky\"\nsession_key = \"metadata.session_id\"",
    );
    // Continuation needs a backend that can continue: a third one.
    let continuation = FULL.replace(
        "strategy = { weighted = [3, 1] }",
        "strategy = { weighted = [3, 1, 1] }\ncontinuation = { max = 2, total = \"1m\" }",
    )
        + "\n[[backends]]\nname = \"deepseek\"\nprovider = \"openai-compatible\"\n\
           base_url = \"https://api.deepseek.com/beta\"\napi_key_env = \"DEEPSEEK_KEY\"\n\
           continuation = \"assistant_prefix\"\n";
    let mut variants = vec![FULL.to_owned(), sticky, continuation];
    if cfg!(feature = "redis") {
        let shared = FULL.replace(
            "breaker = \"off\"\n",
            "breaker = \"off\"\nshared_state = false\n",
        ) + "\n[shared_state]\nredis_url_env = \"FLEET_URL\"\nprefix = \"gateway\"\n\
               timeout = \"20ms\"\nconnect_timeout = \"1s\"\nwindow = \"30s\"\n\
               reservation_ttl = \"5m\"\nqueue_capacity = 64\n\
               backoff = { first = \"50ms\", max = \"5s\" }\n";
        variants.push(shared);
    }
    variants
}

/// The secrets of the tests: a key for every variable, and a URL for the
/// fleet's (nothing listens there; the fleet connects in the background).
fn test_secrets(name: &str) -> Option<String> {
    Some(match name {
        "FLEET_URL" | "REDIS_URL" => "redis://127.0.0.1:1/".to_owned(),
        _ => format!("key-of-{name}"),
    })
}

#[tokio::test]
async fn every_option_round_trips_through_the_router_and_its_printed_configuration() {
    let dir = std::env::temp_dir().join(format!("streamgate-round-trip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for text in full_variants() {
        let mut config = Config::from_toml_str(&text).unwrap();
        config.store = config.store.map(|mut store| {
            store.path = dir.join("analytics.db");
            store
        });
        let expected = config.effective();
        assert_eq!(expected.effective(), expected, "effective is a fixed point");

        // Config → router → its printed configuration → the same config.
        let runtime = Runtime::with_secrets(&config, test_secrets).unwrap();
        let backends = Backends::from_config_with(&config, &runtime).unwrap();
        let described = backends.effective_config().unwrap();
        assert_eq!(described, expected);
        for (printed, format) in [
            (described.to_string(), Format::Toml),
            (described.to_toml().unwrap(), Format::Toml),
            (described.to_yaml().unwrap(), Format::Yaml),
            (described.to_json().unwrap(), Format::Json),
        ] {
            let reloaded = reload(&printed, format);
            assert_eq!(reloaded, expected, "{format:?}\n{printed}");
            // The same calls on every builder as the original configuration.
            assert_eq!(builders(&reloaded), builders(&config), "{format:?}");
            // And the router it builds prints the same again.
            let again = Backends::from_config_with(&reloaded, &runtime).unwrap();
            assert_eq!(again.effective_config().unwrap(), expected, "{format:?}");
        }
        backends.build().unwrap();
        // As given (without defaults) it prints back to itself too.
        assert_eq!(reload(&config.to_toml().unwrap(), Format::Toml), config);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_router_prints_the_defaults_that_applied() {
    let config = Config::from_toml_str(&backend("")).unwrap();
    let backends = Backends::from_config(&config).unwrap();
    let printed = backends.effective_config().unwrap().to_string();
    for line in [
        "strategy = \"ordered\"",
        "retries = 0",
        "base_url = \"http://localhost:11434\"",
        "api_key_env = \"off\"",
        "minimum_calls = 10",
        "open_wait = \"30s\"",
        "default_cooldown = \"10s\"",
        "tracker = false",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
}

#[test]
fn a_chain_made_or_extended_in_code_says_why_it_cannot_print_itself() {
    let client = || ScriptedService::new(Script::new().text("hello"));
    let error = Backends::<TestRequest, _>::new()
        .backend(Backend::new("a", client()))
        .effective_config()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "this chain was made in code: only a chain from `Backends::from_config` \
         describes its backends"
    );
    let config = Config::from_toml_str(&backend("")).unwrap();
    let server = || {
        streamgate::providers::ollama::Ollama::builder()
            .base_url("http://127.0.0.1:1")
            .build()
            .unwrap()
    };
    let extended = Backends::from_config(&config)
        .unwrap()
        .backend(Backend::new("extra", server()));
    assert_eq!(
        extended.effective_config().unwrap_err().to_string(),
        "backends[1]: backend \"extra\" was added in code: its provider and client are not known"
    );
    let rerouted = Backends::from_config(&config)
        .unwrap()
        .failover(|f| f.retries(2));
    assert_eq!(
        rerouted.effective_config().unwrap_err().to_string(),
        "router: replaced in code: its settings are not known"
    );
}

#[test]
fn the_defaults_printed_are_the_builders_own() {
    // A configuration that sets nothing and its effective form make the
    // same builder calls: the filled-in values are the builders' defaults.
    let mut bare = Config::new(vec![
        BackendConfig::new("a", ProviderKind::Ollama),
        BackendConfig::new("b", ProviderKind::OpenAiCompatible),
    ]);
    bare.backends[1].base_url = Some("http://127.0.0.1:1/v1".into());
    bare.backends[0].breaker = Some(Toggle::On(BreakerConfig::default()));
    bare.backends[1].pacing = Some(PacingConfig::default());
    bare.store = Some(StoreConfig::new("analytics.db"));
    let effective = bare.effective();
    assert_eq!(builders(&effective), builders(&bare));
    for delay in ["learned", "2s"] {
        bare.router = toml::from_str(&format!("hedge = {{ delay = \"{delay}\" }}")).unwrap();
        assert_eq!(builders(&bare.effective()), builders(&bare), "{delay}");
    }
    assert_eq!(
        effective
            .store
            .as_ref()
            .map(|s| (s.queue_capacity, s.batch_size, s.max_rows)),
        Some((
            Some(streamgate::store::DEFAULT_QUEUE_CAPACITY),
            Some(streamgate::store::DEFAULT_BATCH_SIZE),
            Some(streamgate::store::DEFAULT_MAX_ROWS)
        ))
    );
    let store = effective.store.unwrap();
    assert_eq!(store.max_age, Some(streamgate::store::DEFAULT_MAX_AGE));
    assert_eq!(
        store.maintenance_interval,
        Some(streamgate::store::DEFAULT_MAINTENANCE_INTERVAL)
    );
    // The pacing burst printed is the one the limiter would pick.
    let mut pacing = PacingConfig::default();
    pacing.requests_per_minute = Some(360);
    pacing.tokens_per_minute = Some(5);
    let pacing = pacing.effective();
    assert_eq!(
        (pacing.request_burst, pacing.token_burst),
        (Some(36), Some(1))
    );
}

#[test]
fn each_layer_prints_its_effective_settings() {
    let breaker = BreakerConfig::default().to_string();
    assert!(breaker.contains("minimum_calls = 10"), "{breaker}");
    assert!(breaker.contains("open_wait = \"30s\""), "{breaker}");
    assert!(breaker.contains("half_open_max_wait = \"2m\""), "{breaker}");
    let quota = QuotaConfig::default().to_string();
    assert!(quota.contains("default_cooldown = \"10s\""), "{quota}");
    let router = RouterConfig::default().to_string();
    assert!(router.contains("retries = 0"), "{router}");
    assert!(router.contains("base = \"250ms\""), "{router}");
    let metrics = MetricsConfig::default().to_string();
    assert!(metrics.contains("tracker = false"), "{metrics}");
    let backend = BackendConfig::new("openai", ProviderKind::OpenAi).to_string();
    assert!(
        backend.contains("api_key_env = \"OPENAI_API_KEY\""),
        "{backend}"
    );
    assert!(
        backend.contains("base_url = \"https://api.openai.com/v1\""),
        "{backend}"
    );
}

fn error(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(config) => panic!("accepted:\n{config}"),
        Err(error) => error,
    }
}

/// A configuration of one backend `name = "a"` with `extra` keys.
fn backend(extra: &str) -> String {
    format!("[[backends]]\nname = \"a\"\nprovider = \"ollama\"\n{extra}\n")
}

/// The same, with a `[backends.section]` table.
fn section(section: &str, keys: &str) -> String {
    format!("{}[backends.{section}]\n{keys}\n", backend(""))
}

#[track_caller]
fn assert_error(text: &str, expected: &str) {
    assert_eq!(error(text).to_string(), expected, "\n{text}");
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion_when_one_is_close() {
    assert_error(
        "[router]\nretires = 1\n",
        "router.retires: unknown key `retires` (did you mean `retries`?)",
    );
    assert_error(
        &section("breaker", "failur_rate = 0.5"),
        "backends[0].breaker.failur_rate: unknown key `failur_rate` (did you mean `failure_rate`?)",
    );
    let far = error(&backend("colour = \"red\"")).to_string();
    assert!(
        far.starts_with(
            "backends[0].colour: unknown key `colour`; expected one of name, provider,"
        ),
        "{far}"
    );
    assert_error(
        "[[backends]]\nname = \"a\"\nprovider = \"antropic\"\n",
        "backends[0].provider: unknown value `antropic` (did you mean `anthropic`?)",
    );
    assert_error(
        "[metrics]\ntraker = true\n",
        "metrics.traker: unknown key `traker` (did you mean `tracker`?)",
    );
}

#[test]
fn wrong_types_and_durations_name_the_setting() {
    assert_error(
        &backend("first_content_timeout = \"20 parsecs\""),
        "backends[0].first_content_timeout: \"20 parsecs\" is not a duration (unknown time unit \
         \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, \
         years (and few variations)); write e.g. \"250ms\", \"20s\" or \"1m30s\"",
    );
    assert_error(
        &backend("tpm_budget = \"lots\""),
        "backends[0].tpm_budget: invalid type: string \"lots\", expected u64",
    );
    assert_error(
        &backend("first_content_timeout = 20"),
        "backends[0].first_content_timeout: invalid type: integer `20`, expected a duration such \
         as \"250ms\", \"20s\" or \"1m30s\"",
    );
    let syntax = error("[router\n").to_string();
    assert!(syntax.starts_with("invalid TOML: "), "{syntax}");
    let yaml = Config::from_yaml_str("backends: [")
        .unwrap_err()
        .to_string();
    assert!(yaml.starts_with("invalid YAML: "), "{yaml}");
    let json = Config::from_json_str("{").unwrap_err().to_string();
    assert!(json.starts_with("invalid JSON: "), "{json}");
}

#[test]
fn breaker_settings_are_checked_by_the_breaker_with_their_path() {
    let cases = [
        (
            "failure_rate = 150",
            "backends[0].breaker.failure_rate: 150: must be a fraction above 0 and at most 1",
        ),
        (
            "failure_rate = 50",
            "backends[0].breaker.failure_rate: 50: must be a fraction above 0 and at most 1 \
             (0.5 for half), not a percentage",
        ),
        (
            "slow_call_rate = { rate = 0.5, threshold = \"0s\" }",
            "backends[0].breaker.slow_call_rate: threshold must be longer than zero",
        ),
        (
            "slow_call_rate = { rate = 2, threshold = \"1s\" }",
            "backends[0].breaker.slow_call_rate: 2: must be a fraction above 0 and at most 1 \
             (0.5 for half), not a percentage",
        ),
        (
            "minimum_calls = 0",
            "backends[0].breaker.minimum_calls: 0: must be at least 1",
        ),
        (
            "count_window = 0",
            "backends[0].breaker.count_window: 0: must hold 1 to 100000 calls",
        ),
        (
            "failure_rate = 0.5\ncount_window = 5\nminimum_calls = 6",
            "backends[0].breaker.minimum_calls: 6: must not exceed the count window, or the rate \
             is never judged",
        ),
        (
            "time_window = \"0s\"",
            "backends[0].breaker.time_window: must span 1 to 3600 seconds",
        ),
        (
            "time_window = \"1500ms\"",
            "backends[0].breaker.time_window: must be whole seconds",
        ),
        (
            "time_window = \"1m\"\ncount_window = 10",
            "backends[0].breaker.time_window: give count_window or time_window, not both",
        ),
        (
            "consecutive_failures = 0",
            "backends[0].breaker.consecutive_failures: 0: must be at least 1",
        ),
        (
            "failures_within = { failures = 0, window = \"1m\" }",
            "backends[0].breaker.failures_within: must count 1 to 10000 failures",
        ),
        (
            "failures_within = { failures = 3, window = \"0s\" }",
            "backends[0].breaker.failures_within: window must be longer than zero",
        ),
        (
            "open_wait = \"0s\"",
            "backends[0].breaker.open_wait: must be longer than zero",
        ),
        (
            "open_wait = { initial = \"2s\", multiplier = 0.5, max = \"10s\" }",
            "backends[0].breaker.open_wait: multiplier must be a finite number of at least 1",
        ),
        (
            "open_wait = { initial = \"20s\", max = \"10s\" }",
            "backends[0].breaker.open_wait: max must not be shorter than the initial wait",
        ),
        (
            "half_open_probes = 0",
            "backends[0].breaker.half_open_probes: 0: must be at least 1",
        ),
        (
            "half_open_max_wait = \"0s\"",
            "backends[0].breaker.half_open_max_wait: must be longer than zero",
        ),
        (
            "minimum_open = \"0s\"",
            "backends[0].breaker.minimum_open: must be longer than zero",
        ),
        (
            "counted_classes = [\"servr\"]",
            "backends[0].breaker.counted_classes[0]: unknown value `servr` (did you mean `server`?)",
        ),
    ];
    for (keys, expected) in cases {
        assert_error(&section("breaker", keys), expected);
    }
}

#[test]
fn the_second_backends_mistake_names_its_index() {
    let text = format!(
        "{}[[backends]]\nname = \"b\"\nprovider = \"ollama\"\nbreaker = {{ failure_rate = 150 }}\n",
        backend("")
    );
    assert_error(
        &text,
        "backends[1].breaker.failure_rate: 150: must be a fraction above 0 and at most 1",
    );
}

#[test]
fn timeout_settings_are_checked_by_the_timeout_layer_with_their_path() {
    let cases = [
        (
            backend("first_content_timeout = \"0s\""),
            "backends[0].first_content_timeout: first-content deadline must be greater than zero",
        ),
        (
            backend("first_content_timeout = \"1s\"\nidle_timeout = \"0s\""),
            "backends[0].idle_timeout: idle deadline must be greater than zero",
        ),
        (
            backend("first_content_timeout = \"10s\"\ntotal_timeout = \"5s\""),
            "backends[0].total_timeout: total deadline (5 s) is shorter than the first-content \
             deadline (10 s)",
        ),
        (
            backend("idle_timeout = \"5s\""),
            "backends[0].first_content_timeout: idle and total timeouts need a first-content \
             timeout (here or in [router])",
        ),
        (
            format!("[router]\nfirst_content_timeout = \"0s\"\n{}", backend("")),
            "router.first_content_timeout: first-content deadline must be greater than zero",
        ),
    ];
    for (text, expected) in cases {
        assert_error(&text, expected);
    }
}

#[test]
fn quota_pacing_and_tpm_settings_are_checked_by_their_builders() {
    let cases = [
        (
            section("quota", "min_cooldown = \"0s\""),
            "backends[0].quota.min_cooldown: minimum cooldown must not be zero",
        ),
        (
            section("quota", "default_cooldown = \"10ms\""),
            "backends[0].quota.default_cooldown: default cooldown must not be below the minimum \
             cooldown",
        ),
        (
            section("quota", "max_wait = \"400days\""),
            "backends[0].quota.max_wait: maximum wait must be at most a year",
        ),
        (
            section("quota", "zero_allowance_cooldown = \"10ms\""),
            "backends[0].quota.zero_allowance_cooldown: zero-allowance cooldown must not be below \
             the minimum cooldown",
        ),
        (
            section("quota", "default_cooldown = \"400days\""),
            "backends[0].quota.default_cooldown: default cooldown must be at most a year",
        ),
        (
            section("quota", "model_cap = 0"),
            "backends[0].quota.model_cap: model cap must be at least 1",
        ),
        (
            section("quota", "freshness = \"0s\""),
            "backends[0].quota.freshness: freshness must not be zero",
        ),
        (
            section("pacing", "request_burst = 5"),
            "backends[0].pacing: a burst needs a limit",
        ),
        (
            section("pacing", "requests_per_minute = 0"),
            "backends[0].pacing: limits must be at least 1",
        ),
        (
            section("pacing", "requests_per_minute = 10\nrequest_burst = 11"),
            "backends[0].pacing: burst must be between 1 and the limit",
        ),
        (
            format!("{}quota = \"off\"\n[backends.pacing]\n", backend("")),
            "backends[0].pacing: pacing needs a requests or tokens limit, or a tracker to learn \
             them from",
        ),
        (
            backend("tpm_budget = 0"),
            "backends[0].tpm_budget: max tokens per minute must be above 0",
        ),
        (
            backend("throughput_probe = { chunks = 0, window = \"1s\", min_tokens_per_sec = 5 }"),
            "backends[0].throughput_probe.chunks: probe chunks must be at least 1",
        ),
        (
            backend("throughput_probe = { chunks = 4, window = \"2m\", min_tokens_per_sec = 5 }"),
            "backends[0].throughput_probe.window: probe window must be above 0 and at most 60 s",
        ),
        (
            backend("throughput_probe = { chunks = 4, window = \"1s\", min_tokens_per_sec = -1 }"),
            "backends[0].throughput_probe.min_tokens_per_sec: probe floor -1 is not a positive \
             number of tokens per second",
        ),
        (
            backend("min_throughput = 0"),
            "backends[0].min_throughput: minimum throughput must be above 0 tokens per minute",
        ),
    ];
    for (text, expected) in cases {
        assert_error(&text, expected);
    }
}

#[test]
fn router_settings_are_checked_by_the_router_with_their_path() {
    let cases = [
        ("retries = 11", "router.retries: retries must be at most 10"),
        (
            "backoff = { base = \"5s\", max = \"1s\" }",
            "router.backoff.base: backoff base must not exceed its maximum",
        ),
        (
            "backoff = { max = \"2h\" }",
            "router.backoff: backoff maximum and max retry-after must be at most 1 hour",
        ),
        (
            "wait_when_unavailable = \"2h\"",
            "router.wait_when_unavailable: wait when unavailable must be at most 1 hour",
        ),
        (
            "last_attempt_extra = \"5s\"",
            "router.last_attempt_extra: last-attempt extra time needs a first-content timeout",
        ),
        (
            "strategy = { weighted = [1, 2, 3] }",
            "router.strategy: weighted strategy has 3 weights for 1 backends",
        ),
        (
            "strategy = { weighted = [0] }",
            "router.strategy: weighted strategy needs at least one weight above 0",
        ),
        (
            "strategy = \"random\"",
            "router.strategy: unknown value `random`; expected one of ordered, round_robin, \
             weighted, least_time_to_first_content, power_of_two_choices, sticky",
        ),
        (
            "hedge = { delay = \"2s\", budget = 1.5 }",
            "router.hedge.budget: hedge budget 1.5 is not a share in (0, 1]",
        ),
        (
            "hedge = { delay = \"0s\" }",
            "router.hedge.delay: hedge delay must be above 0",
        ),
        (
            "hedge = { delay = \"learned\", percentile = 1.0 }",
            "router.hedge.percentile: hedge percentile 1 is not a fraction in (0, 1)",
        ),
        (
            "hedge = { delay = \"learned\", floor = \"0s\" }",
            "router.hedge.floor: hedge floor must be above 0",
        ),
        (
            "hedge = { delay = \"learned\", min_samples = 0 }",
            "router.hedge.min_samples: hedge min samples must be between 1 and 32",
        ),
        (
            "hedge = { delay = \"2s\", percentile = 0.9 }",
            "router.hedge.percentile: only with delay = \"learned\"",
        ),
        (
            "hedge = { delay = \"soon\" }",
            "router.hedge.delay: \"soon\" is not a duration (expected number at 0); write e.g. \
             \"250ms\", \"20s\" or \"1m30s\"",
        ),
        (
            "context_length = \"retry\"",
            "router.context_length: unknown value `retry`; expected one of next_backend, stop",
        ),
    ];
    for (keys, expected) in cases {
        assert_error(&format!("[router]\n{keys}\n{}", backend("")), expected);
    }
}

#[test]
fn continuation_settings_are_checked_with_their_path() {
    let able = backend("continuation = \"final_assistant\"");
    let cases = [
        (
            format!("[router]\ncontinuation = {{}}\n{}", backend("")),
            "router.continuation: no backend can continue a stream: give the ones that can a \
             `continuation` mechanism, e.g. continuation = \"final_assistant\"",
        ),
        (
            format!("[router]\ncontinuation = {{ max = 9 }}\n{able}"),
            "router.continuation.max: continuation max must be 1 to 8",
        ),
        (
            format!("[router]\ncontinuation = {{ total = \"0s\" }}\n{able}"),
            "router.continuation.total: continuation total must be above 0",
        ),
        (
            format!("[router]\ncontinuation = {{ maxx = 2 }}\n{able}"),
            "router.continuation.maxx: unknown key `maxx` (did you mean `max`?)",
        ),
        (
            backend("continuation = \"model_turn\""),
            "backends[0].continuation: only for provider gemini or vertex, not ollama",
        ),
        (
            backend("continuation = \"assistant_prefix\""),
            "backends[0].continuation: only for provider openai-compatible, not ollama",
        ),
        (
            backend("continuation = \"prefix\""),
            "backends[0].continuation: unknown value `prefix`; expected one of final_assistant, \
             assistant_prefix, continue_final_message, model_turn",
        ),
    ];
    for (text, expected) in cases {
        assert_error(&text, expected);
    }
}

#[tokio::test]
async fn a_configured_continuation_finishes_a_cut_stream_on_the_backend_that_can() {
    let cut = MockServer::start_with_plan(Plan::new().with_output_tokens(8).disconnect_after(3))
        .await
        .unwrap();
    let able = MockServer::start_with_plan(Plan::new().with_output_tokens(8).honouring_prefill())
        .await
        .unwrap();
    let text = format!(
        "[router]\ncontinuation = {{}}\n\
         [[backends]]\nname = \"cut\"\nprovider = \"openai-compatible\"\nbase_url = \"{}/v1\"\n\
         api_key_env = \"off\"\n\
         [[backends]]\nname = \"able\"\nprovider = \"openai-compatible\"\nbase_url = \"{}/v1\"\n\
         api_key_env = \"off\"\ncontinuation = \"final_assistant\"\n",
        cut.url(),
        able.url()
    );
    let config = Config::from_toml_str(&text).unwrap();
    let router = Backends::from_config(&config).unwrap().build().unwrap();
    let response = router
        .oneshot(ChatRequest::new("m").with_user("hi"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut got = String::new();
    while let Some(chunk) = body.next().await {
        got.push_str(&chunk.unwrap().text);
    }
    assert_eq!(got, streamgate::mock::expected_text(8));
    assert_eq!((cut.served(), able.served()), (1, 1));
}

#[test]
fn backends_providers_and_sinks_are_checked_with_their_path() {
    let two = |second: &str| format!("{}[[backends]]\n{second}\n", backend(""));
    let cases = [
        ("".to_owned(), "backends: at least one backend is needed"),
        (
            two("name = \"a\"\nprovider = \"ollama\""),
            "backends[1].name: backend names must be unique (\"a\" is taken)",
        ),
        (
            two("name = \"\"\nprovider = \"ollama\""),
            "backends[1].name: must not be empty",
        ),
        (two("name = \"b\""), "backends[1]: missing field `provider`"),
        (
            two("name = \"b\"\nprovider = \"openai\"\ndeployment = \"x\""),
            "backends[1].deployment: only for provider azure, not openai",
        ),
        (
            two("name = \"b\"\nprovider = \"anthropic\"\ninclude_usage = false"),
            "backends[1].include_usage: only for provider openai or openai-compatible, not \
             anthropic",
        ),
        (
            two("name = \"b\"\nprovider = \"gemini\"\nproject = \"p\""),
            "backends[1].project: only for provider vertex, not gemini",
        ),
        (
            two("name = \"b\"\nprovider = \"openai\"\nregion = \"us-east-1\""),
            "backends[1].region: only for provider bedrock, not openai",
        ),
        (
            two("name = \"b\"\nprovider = \"vertex\"\nproject = \"p\"\napi_key_env = \"K\""),
            "backends[1].location: provider vertex needs a location",
        ),
        (
            two("name = \"b\"\nprovider = \"azure\""),
            "backends[1].base_url: provider azure needs a base_url",
        ),
        (
            two("name = \"b\"\nprovider = \"openai-compatible\""),
            "backends[1].base_url: provider openai-compatible needs a base_url",
        ),
        (
            two("name = \"b\"\nprovider = \"vertex\"\nlocation = \"global\"\napi_key_env = \"K\""),
            "backends[1].project: provider vertex needs a project",
        ),
        (
            two("name = \"b\"\nprovider = \"vertex\"\nproject = \"p\"\nlocation = \"global\""),
            "backends[1].api_key_env: provider vertex needs the variable of an express-mode api \
             key (for access tokens, build the client in code)",
        ),
        (
            two("name = \"b\"\nprovider = \"openai\"\napi_key_env = \"sk-proj-1234\""),
            "backends[1].api_key_env: must be the name of an environment variable, not the key",
        ),
        (
            format!("[metrics]\nmodel_cap = 0\n{}", backend("")),
            "metrics.model_cap: model cap must be at least 1",
        ),
        (
            format!("[metrics]\ntracker_min_samples = 0\n{}", backend("")),
            "metrics.tracker_min_samples: minimum samples must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        assert_error(&text, expected);
    }
}

#[test]
fn store_settings_are_checked_by_the_store_before_any_file_is_opened() {
    let path = std::env::temp_dir().join(format!("streamgate-config-{}.db", std::process::id()));
    let cases = [
        (
            "max_age = \"1m\"",
            "store.max_age: invalid store configuration: maximum age must be at least one hour",
        ),
        (
            "queue_capacity = 0",
            "store.queue_capacity: invalid store configuration: queue capacity must be at least 1",
        ),
        (
            "batch_size = 0",
            "store.batch_size: invalid store configuration: batch size must be at least 1",
        ),
        (
            "maintenance_interval = \"0s\"",
            "store.maintenance_interval: invalid store configuration: maintenance interval must \
             be at least 1 ms",
        ),
        (
            "max_rows = 0",
            "store.max_rows: invalid store configuration: maximum rows must be at least 1",
        ),
    ];
    for (keys, expected) in cases {
        let text = format!(
            "[store]\npath = {:?}\n{keys}\n{}",
            path.display().to_string(),
            backend("")
        );
        let config = Config::from_toml_str(&text).unwrap();
        let error = Runtime::new(&config).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
    assert!(!path.exists());
}

#[test]
fn an_unset_key_variable_fails_the_build_with_its_name() {
    let config = Config::from_toml_str(
        "[[backends]]\nname = \"a\"\nprovider = \"anthropic\"\n\
         api_key_env = \"STREAMGATE_TEST_NEVER_SET_4F2A\"\n",
    )
    .unwrap();
    let error = Backends::from_config(&config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "backends[0].api_key_env: environment variable STREAMGATE_TEST_NEVER_SET_4F2A is not set"
    );
    let empty = Runtime::with_secrets(&config, |_| Some(" ".into())).unwrap();
    let error = Backends::from_config_with(&config, &empty).unwrap_err();
    assert_eq!(
        error.to_string(),
        "backends[0].api_key_env: environment variable STREAMGATE_TEST_NEVER_SET_4F2A is empty"
    );
}

#[test]
fn a_key_that_cannot_be_sent_is_reported_without_the_key() {
    let config = Config::from_toml_str(
        "[[backends]]\nname = \"a\"\nprovider = \"openai\"\napi_key_env = \"SECRET_KEY\"\n",
    )
    .unwrap();
    let runtime = Runtime::with_secrets(&config, |_| Some("sk-very-secret\n".into())).unwrap();
    let error = Backends::from_config_with(&config, &runtime).unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert_eq!(error.path(), "backends[0].api_key_env");
    assert!(shown.contains("SECRET_KEY"), "{shown}");
}

#[test]
fn an_invalid_base_url_is_reported_by_the_client_at_its_path() {
    let config = Config::from_toml_str(&backend("base_url = \"ftp://example.com\"")).unwrap();
    let error = Backends::from_config(&config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "backends[0].base_url: invalid base url \"ftp://example.com\""
    );
}

#[test]
fn the_shipped_demo_configuration_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml");
    let config = Config::from_path(path).unwrap();
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["fast", "bursty", "steady"]);
    let runtime = Runtime::with_secrets(&config, |_| Some("demo".into())).unwrap();
    assert!(runtime.tracker().is_some());
    Backends::from_config_with(&config, &runtime)
        .unwrap()
        .build()
        .unwrap();
    // Its printed form loads back to the same configuration.
    assert_eq!(
        Config::from_toml_str(&config.to_string()).unwrap(),
        config.effective()
    );
}

#[test]
fn a_file_is_read_in_the_format_its_extension_says() {
    let dir = std::env::temp_dir().join(format!("streamgate-config-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("gateway.toml", FULL),
        ("gateway.yaml", FULL_YAML),
        ("gateway.json", FULL_JSON),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        assert_eq!(Config::from_path(&path).unwrap(), full(), "{name}");
    }
    let error = Config::from_path(dir.join("gateway.ini")).unwrap_err();
    assert!(error
        .message()
        .ends_with("the extension must be .toml, .yaml, .yml or .json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_breaker_section_configures_the_breaker_the_builder_would() {
    // `consecutive_failures = 2` with the default trigger off: two failures
    // in a row open it, and an open breaker refuses without calling.
    let config: BreakerConfig =
        toml::from_str("failures_within = \"off\"\nconsecutive_failures = 2\nopen_wait = \"5s\"")
            .unwrap();
    let client = ScriptedService::new(Script::new().fail_call(ErrorClass::Server));
    let breaker = config.configure(Breaker::builder("a")).build().unwrap();
    let service = Backend::new("a", client.clone())
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(service
            .clone()
            .oneshot(TestRequest::new("m"))
            .await
            .is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let refused = service
        .clone()
        .oneshot(TestRequest::new("m"))
        .await
        .err()
        .unwrap();
    assert_eq!(classify(refused.as_ref()), ErrorClass::Rejected);
    assert_eq!(client.probe().calls(), 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test]
async fn a_configured_router_fails_over_maps_models_and_sends_the_key_over_http() {
    let failing =
        MockServer::start(MockConfig::new().with_sequence([Plan::new().fail_with_status(500)]))
            .await
            .unwrap();
    let healthy = MockServer::start_with_plan(Plan::new().with_output_tokens(4))
        .await
        .unwrap();
    let text = format!(
        r#"
        [metrics]
        tracker = true

        [[backends]]
        name = "primary"
        provider = "openai"
        base_url = "{}/v1"
        api_key_env = "PRIMARY_KEY"
        first_content_timeout = "10s"

        [[backends]]
        name = "secondary"
        provider = "anthropic"
        base_url = "{}/v1"
        api_key_env = "SECONDARY_KEY"
        models = {{ "gpt-4o" = "claude-haiku-4-5" }}
        first_content_timeout = "10s"
        "#,
        failing.url(),
        healthy.url()
    );
    let config = Config::from_toml_str(&text).unwrap();
    let runtime = Runtime::with_secrets(&config, |name| Some(format!("key-of-{name}"))).unwrap();
    let router = Backends::from_config_with(&config, &runtime)
        .unwrap()
        .build()
        .unwrap();
    let response = router
        .oneshot(ChatRequest::new("gpt-4o").with_user("hi"))
        .await
        .unwrap();
    let report = response
        .extensions()
        .get::<FailoverReport>()
        .unwrap()
        .clone();
    assert_eq!(report.served_by.as_str(), "secondary");
    let chunks: Vec<_> = response.into_body().collect().await;
    assert!(chunks.iter().all(Result::is_ok));

    let first = failing.request(0).unwrap().request;
    assert_eq!(
        first.headers.get("authorization").unwrap(),
        "Bearer key-of-PRIMARY_KEY"
    );
    let second = healthy.request(0).unwrap().request;
    assert_eq!(second.model, "claude-haiku-4-5");
    assert_eq!(
        second.headers.get("x-api-key").unwrap(),
        "key-of-SECONDARY_KEY"
    );
    let snapshot = runtime.tracker().unwrap().snapshot();
    assert_eq!(snapshot.session.output_tokens, 4);
    assert!(snapshot.key("secondary", "claude-haiku-4-5").is_some());
    assert!(runtime.quota("primary").is_some());
}

/// The README's complete example file.
fn readme_example() -> String {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## Configuration").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    section[start..][..section[start..].find("```").unwrap()].to_owned()
}

#[tokio::test]
async fn the_readmes_complete_example_loads_and_builds() {
    let mut text = readme_example();
    if !cfg!(feature = "redis") {
        let error = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "shared_state: needs the `redis` feature (streamgate = { features = [\"redis\"] })"
        );
        let start = text.find("[shared_state]").unwrap();
        let end = start + text[start..].find("[[backends]]").unwrap();
        text.replace_range(start..end, "");
        text = text.replace("shared_state = false", "");
    }
    let mut config = match Config::from_toml_str(&text) {
        Ok(config) => config,
        Err(error) if !cfg!(feature = "bedrock") => {
            assert_eq!(
                error.to_string(),
                "backends[3].provider: bedrock needs the `bedrock` feature"
            );
            let without = text.replace("provider = \"bedrock\"", "provider = \"ollama\"");
            let without = without.replace("region = \"eu-central-1\"", "");
            Config::from_toml_str(&without).unwrap()
        }
        Err(error) => panic!("{error}"),
    };
    assert_eq!(config.backends.len(), 5);
    assert_eq!(
        config.effective(),
        Config::from_toml_str(&config.to_string()).unwrap()
    );
    // Built without the store (it would open a file) and the Bedrock
    // backend (it signs with the environment's AWS credentials).
    config.store = None;
    config
        .backends
        .retain(|b| b.provider != ProviderKind::Bedrock && b.name != "bedrock");
    let runtime = Runtime::with_secrets(&config, test_secrets).unwrap();
    let backends = Backends::from_config_with(&config, &runtime).unwrap();
    assert_eq!(backends.effective_config().unwrap(), config.effective());
    backends.build().unwrap();
}

#[test]
fn a_sticky_router_needs_a_session_key_field_and_only_it_takes_one() {
    let router = |keys: &str| format!("[router]\n{keys}\n{}", backend(""));
    assert_error(
        &router("strategy = \"sticky\""),
        "router.session_key: the sticky strategy needs the request field that holds the \
         session key, e.g. \"user\" or \"metadata.session_id\"",
    );
    assert_error(
        &router("session_key = \"user\""),
        "router.session_key: only with strategy = \"sticky\"",
    );
    assert_error(
        &router("strategy = \"sticky\"\nsession_key = \"metadata..id\""),
        "router.session_key: \"metadata..id\" is not a field path; write e.g. \"user\" or \
         \"metadata.session_id\"",
    );
    assert_error(
        &router("strategy = \"stiky\""),
        "router.strategy: unknown value `stiky` (did you mean `sticky`?)",
    );
}

#[tokio::test]
async fn a_sticky_router_keeps_each_session_on_one_backend_over_http() {
    let mut mocks = Vec::new();
    let mut text =
        "[router]\nstrategy = \"sticky\"\nsession_key = \"metadata.session_id\"\n".to_owned();
    for name in ["a", "b", "c"] {
        let mock = MockServer::start_with_plan(Plan::new().with_output_tokens(2))
            .await
            .unwrap();
        text.push_str(&format!(
            "[[backends]]\nname = \"{name}\"\nprovider = \"openai-compatible\"\n\
             base_url = \"{}/v1\"\n",
            mock.url()
        ));
        mocks.push(mock);
    }
    let config = Config::from_toml_str(&text).unwrap();
    let router = Backends::from_config(&config).unwrap().build().unwrap();
    let served_by = |session: Option<serde_json::Value>| {
        let router = router.clone();
        async move {
            let mut request = ChatRequest::new("m").with_user("hi");
            if let Some(session) = session {
                request.extra.insert(
                    "metadata".into(),
                    serde_json::json!({ "session_id": session }),
                );
            }
            let response = router.oneshot(request).await.unwrap();
            let report = response
                .extensions()
                .get::<FailoverReport>()
                .unwrap()
                .clone();
            let chunks: Vec<_> = response.into_body().collect().await;
            assert!(chunks.iter().all(Result::is_ok));
            report.served_by.as_str().to_owned()
        }
    };
    let sessions: Vec<serde_json::Value> = ["alice", "bob", "carol", "dave", "erin", "frank"]
        .into_iter()
        .map(serde_json::Value::from)
        .chain([serde_json::Value::from(42)])
        .collect();
    let mut chosen = std::collections::BTreeSet::new();
    for session in &sessions {
        let first = served_by(Some(session.clone())).await;
        for _ in 0..3 {
            assert_eq!(served_by(Some(session.clone())).await, first, "{session}");
        }
        chosen.insert(first);
    }
    assert!(
        chosen.len() > 1,
        "the sessions spread over the backends: {chosen:?}"
    );
    // A request without the field is routed in order.
    assert_eq!(served_by(None).await, "a");
    // The key is sent on as part of the body.
    let sent = mocks
        .iter()
        .flat_map(|mock| mock.requests())
        .filter(|r| r.request.body.get("metadata").is_some())
        .count();
    assert_eq!(sent, sessions.len() * 4);
}

#[test]
fn a_backends_shared_state_key_needs_the_section() {
    assert_error(
        &backend("shared_state = false"),
        "backends[0].shared_state: only with a [shared_state] section",
    );
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_shared_state_section_needs_the_redis_feature() {
    assert_error(
        &format!("[shared_state]\nprefix = \"gateway\"\n{}", backend("")),
        "shared_state: needs the `redis` feature (streamgate = { features = [\"redis\"] })",
    );
}
