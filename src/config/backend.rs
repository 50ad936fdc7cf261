//! `[[backends]]`: one backend, its provider client and its layers, as the
//! `Backend` builder stacks them.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    breaker::BreakerConfig,
    quota::{PacingConfig, QuotaConfig},
    value::{optional_duration, Toggle},
    ConfigError,
};

/// One backend. Keys are `Backend` builder methods (timeouts, breaker,
/// quota, pacing, TPM gates) and the provider client's settings (base URL,
/// key, provider-specific keys).
///
/// The API key is never in the file: `api_key_env` names the environment
/// variable that holds it, read when the router is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The backend's name (unique): in metrics, errors and the failover
    /// report.
    pub name: String,
    /// Which client speaks to it.
    pub provider: ProviderKind,
    /// Where requests go (default: the provider's public endpoint; required
    /// for `azure` and `openai-compatible`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the API key (default per provider:
    /// `OPENAI_API_KEY`, `AZURE_OPENAI_API_KEY`, `ANTHROPIC_API_KEY`,
    /// `GEMINI_API_KEY`; none for `ollama`, `openai-compatible` and
    /// `bedrock`, which signs with the AWS credentials of the environment);
    /// `"off"` sends no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<Toggle<String>>,
    /// Model names to send instead of the ones requested, e.g.
    /// `{ "gpt-4o" = "gpt-4o-2024-08-06" }`; the key `"*"` maps every other
    /// model. Every layer keys on the mapped name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
    /// Connect timeout of the HTTP client.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// `openai`, `openai-compatible`: ask for the usage chunk (default
    /// true; some older compatible servers reject it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// `azure`: the deployment (default: the v1 API, where the model names
    /// the deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// `azure`: the `api-version` of deployment URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `vertex`: the Google Cloud project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `vertex`: the location (`us-central1`, …, or `global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `bedrock`: the AWS region (default `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The first content chunk must arrive within this long of the call.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_content_timeout: Option<Duration>,
    /// The longest gap between two content chunks.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// The longest whole stream.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_timeout: Option<Duration>,
    /// The circuit breaker (on by default); `"off"` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Toggle<BreakerConfig>>,
    /// The quota gate (on by default); `"off"` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Toggle<QuotaConfig>>,
    /// Pacing (off unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<PacingConfig>,
    /// The TPM budget gate: tokens per minute, in flight included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_budget: Option<u64>,
    /// The minimum throughput: output tokens per minute of streaming time
    /// below which the router tries the backend after the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput: Option<u64>,
    /// The throughput probe before commit (off unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_probe: Option<ProbeConfig>,
    /// How this backend continues another backend's stream that failed
    /// after content, when the router's `continuation` is on (off unless
    /// given): `"final_assistant"` (Anthropic, Bedrock, Ollama,
    /// OpenAI-compatible servers that continue a final assistant message),
    /// `"assistant_prefix"` (OpenAI-compatible servers taking
    /// `"prefix": true`, e.g. DeepSeek, Mistral), `"continue_final_message"`
    /// (vLLM), `"model_turn"` (Gemini, Vertex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<PrefillConfig>,
    /// Whether this backend shares its TPM budget, quota knowledge and
    /// breaker state through `[shared_state]` (default true when that
    /// section is given; only with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_state: Option<bool>,
}

/// `throughput_probe = { chunks = 8, window = "500ms", min_tokens_per_sec = 20.0 }`:
/// the router holds up to `chunks` content chunks after the first, or
/// `window`, and fails over when they came slower than
/// `min_tokens_per_sec` (`streamgate::failover::ThroughputProbe`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProbeConfig {
    /// Content chunks held after the first, at most.
    pub chunks: usize,
    /// How long the stream is held, at most.
    #[serde(with = "super::value::duration")]
    pub window: Duration,
    /// The slowest acceptable start.
    pub min_tokens_per_sec: f64,
}

impl ProbeConfig {
    /// The probe.
    pub fn probe(&self) -> streamgate_failover::ThroughputProbe {
        streamgate_failover::ThroughputProbe::new(self.chunks, self.window, self.min_tokens_per_sec)
    }
}

/// How a backend takes a partial answer to continue it
/// ([`Prefill`](streamgate_core::Prefill)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrefillConfig {
    /// A final assistant message.
    FinalAssistant,
    /// A final assistant message with `"prefix": true`.
    AssistantPrefix,
    /// `"continue_final_message": true` (vLLM).
    ContinueFinalMessage,
    /// A final `model` turn (Gemini).
    ModelTurn,
}

impl PrefillConfig {
    /// The mechanism.
    pub fn prefill(self) -> streamgate_core::Prefill {
        use streamgate_core::Prefill;
        match self {
            Self::FinalAssistant => Prefill::FinalAssistant,
            Self::AssistantPrefix => Prefill::AssistantPrefix,
            Self::ContinueFinalMessage => Prefill::ContinueFinalMessage,
            Self::ModelTurn => Prefill::ModelTurn,
        }
    }

    /// The configuration of `how`, if a file can name it.
    pub(crate) fn of(how: streamgate_core::Prefill) -> Option<Self> {
        use streamgate_core::Prefill;
        Some(match how {
            Prefill::FinalAssistant => Self::FinalAssistant,
            Prefill::AssistantPrefix => Self::AssistantPrefix,
            Prefill::ContinueFinalMessage => Self::ContinueFinalMessage,
            Prefill::ModelTurn => Self::ModelTurn,
            _ => return None,
        })
    }

    /// The providers whose client sends this mechanism.
    fn providers(self) -> &'static [ProviderKind] {
        use ProviderKind as P;
        match self {
            Self::FinalAssistant => &[P::Anthropic, P::Bedrock, P::Ollama, P::OpenAiCompatible],
            Self::AssistantPrefix | Self::ContinueFinalMessage => &[P::OpenAiCompatible],
            Self::ModelTurn => &[P::Gemini, P::Vertex],
        }
    }
}

/// The provider client of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProviderKind {
    /// OpenAI Chat Completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// The OpenAI Responses API.
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
    /// Any OpenAI-compatible server (Groq, OpenRouter, Mistral, vLLM, …):
    /// Chat Completions at `base_url`.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Azure OpenAI: `base_url` is the resource endpoint.
    #[serde(rename = "azure")]
    Azure,
    /// Anthropic Messages.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Gemini (`streamGenerateContent`).
    #[serde(rename = "gemini")]
    Gemini,
    /// Gemini on Vertex AI, with an express-mode API key.
    #[serde(rename = "vertex")]
    Vertex,
    /// Ollama's native `/api/chat`.
    #[serde(rename = "ollama")]
    Ollama,
    /// Amazon Bedrock `ConverseStream` (feature `bedrock`).
    #[serde(rename = "bedrock")]
    Bedrock,
}

impl ProviderKind {
    /// The name used in files and as the store's provider column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::OpenAiResponses => "openai-responses",
            Self::OpenAiCompatible => "openai-compatible",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::Ollama => "ollama",
            Self::Bedrock => "bedrock",
        }
    }

    /// The environment variable the key is read from unless
    /// `api_key_env` says otherwise.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        match self {
            Self::OpenAi | Self::OpenAiResponses => Some("OPENAI_API_KEY"),
            Self::Azure => Some("AZURE_OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Gemini => Some("GEMINI_API_KEY"),
            Self::Vertex | Self::OpenAiCompatible | Self::Ollama | Self::Bedrock => None,
        }
    }

    /// The provider's public endpoint, when it has one fixed URL.
    pub fn default_base_url(self) -> Option<&'static str> {
        use streamgate_providers::client::Provider;
        match self {
            Self::OpenAi => {
                Some(<streamgate_providers::openai::OpenAiChat as Provider>::DEFAULT_BASE_URL)
            }
            Self::OpenAiResponses => {
                Some(<streamgate_providers::openai::OpenAiResponses as Provider>::DEFAULT_BASE_URL)
            }
            Self::Anthropic => {
                Some(<streamgate_providers::anthropic::Anthropic as Provider>::DEFAULT_BASE_URL)
            }
            Self::Gemini => {
                Some(<streamgate_providers::gemini::Gemini as Provider>::DEFAULT_BASE_URL)
            }
            Self::Ollama => {
                Some(<streamgate_providers::ollama::Ollama as Provider>::DEFAULT_BASE_URL)
            }
            Self::OpenAiCompatible | Self::Azure | Self::Vertex | Self::Bedrock => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BackendConfig {
    /// A backend called `name` on `provider`, every other key absent.
    pub fn new(name: impl Into<String>, provider: ProviderKind) -> Self {
        Self {
            name: name.into(),
            provider,
            base_url: None,
            api_key_env: None,
            models: BTreeMap::new(),
            connect_timeout: None,
            include_usage: None,
            deployment: None,
            api_version: None,
            project: None,
            location: None,
            region: None,
            first_content_timeout: None,
            idle_timeout: None,
            total_timeout: None,
            breaker: None,
            quota: None,
            pacing: None,
            tpm_budget: None,
            min_throughput: None,
            throughput_probe: None,
            continuation: None,
            shared_state: None,
        }
    }

    /// The variable the key is read from, if any.
    pub fn key_variable(&self) -> Option<&str> {
        match &self.api_key_env {
            Some(Toggle::Off) => None,
            Some(Toggle::On(name)) => Some(name),
            None => self.provider.default_api_key_env(),
        }
    }

    /// Every key filled in with its default: the provider's base URL and
    /// key variable, the breaker's and the quota tracker's settings.
    pub fn effective(&self) -> Self {
        let mut effective = self.clone();
        if effective.base_url.is_none() {
            effective.base_url = self.provider.default_base_url().map(str::to_owned);
        }
        if effective.api_key_env.is_none() {
            effective.api_key_env = Some(match self.provider.default_api_key_env() {
                Some(name) => Toggle::On(name.to_owned()),
                None => Toggle::Off,
            });
        }
        if matches!(
            self.provider,
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible
        ) && effective.include_usage.is_none()
        {
            effective.include_usage = Some(true);
        }
        if self.provider == ProviderKind::Azure && self.api_version.is_none() {
            effective.api_version =
                Some(streamgate_providers::openai::AZURE_API_VERSION.to_owned());
        }
        effective.breaker = Some(match &self.breaker {
            Some(Toggle::Off) => Toggle::Off,
            Some(Toggle::On(b)) => Toggle::On(b.effective()),
            None => Toggle::On(BreakerConfig::default().effective()),
        });
        effective.quota = Some(match &self.quota {
            Some(Toggle::Off) => Toggle::Off,
            Some(Toggle::On(q)) => Toggle::On(q.effective()),
            None => Toggle::On(QuotaConfig::default().effective()),
        });
        effective.pacing = self.pacing.as_ref().map(PacingConfig::effective);
        effective
    }

    /// Checks what no builder sees: that each provider-specific key belongs
    /// to this provider, and the keys a provider cannot do without.
    pub(crate) fn check(&self, path: &str) -> Result<(), ConfigError> {
        use ProviderKind as P;
        let err =
            |key: &str, message: String| Err(ConfigError::new(format!("{path}.{key}"), message));
        if self.name.is_empty() {
            return err("name", "must not be empty".to_owned());
        }
        let only = |key: &str, given: bool, providers: &[ProviderKind]| {
            if given && !providers.contains(&self.provider) {
                let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
                err(
                    key,
                    format!(
                        "only for provider {}, not {}",
                        names.join(" or "),
                        self.provider
                    ),
                )
            } else {
                Ok(())
            }
        };
        only(
            "include_usage",
            self.include_usage.is_some(),
            &[P::OpenAi, P::OpenAiCompatible],
        )?;
        only("deployment", self.deployment.is_some(), &[P::Azure])?;
        if let Some(how) = self.continuation {
            only("continuation", true, how.providers())?;
        }
        only("api_version", self.api_version.is_some(), &[P::Azure])?;
        only("project", self.project.is_some(), &[P::Vertex])?;
        only("location", self.location.is_some(), &[P::Vertex])?;
        only("region", self.region.is_some(), &[P::Bedrock])?;
        let needs_url = matches!(self.provider, P::Azure | P::OpenAiCompatible);
        if needs_url && self.base_url.is_none() {
            return err(
                "base_url",
                format!("provider {} needs a base_url", self.provider),
            );
        }
        if self.provider == P::Vertex {
            if self.project.is_none() {
                return err("project", "provider vertex needs a project".to_owned());
            }
            if self.location.is_none() {
                return err("location", "provider vertex needs a location".to_owned());
            }
            if self.key_variable().is_none() {
                return err(
                    "api_key_env",
                    "provider vertex needs the variable of an express-mode api key \
                     (for access tokens, build the client in code)"
                        .to_owned(),
                );
            }
        }
        if self.provider == P::Bedrock && !cfg!(feature = "bedrock") {
            return err("provider", "bedrock needs the `bedrock` feature".to_owned());
        }
        if let Some(Toggle::On(name)) = &self.api_key_env {
            if !is_variable_name(name) {
                return err(
                    "api_key_env",
                    "must be the name of an environment variable, not the key".to_owned(),
                );
            }
        }
        if let Some(breaker) = self.breaker.as_ref().and_then(Toggle::as_on) {
            breaker.check(&format!("{path}.breaker"))?;
        }
        Ok(())
    }
}

/// Whether `name` follows the shell's rule for a variable name; a pasted
/// key (`sk-…`) or URL (`redis://…`) breaks it.
pub(crate) fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for BackendConfig {
    /// The effective settings, as TOML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print_toml(&self.effective(), f)
    }
}
