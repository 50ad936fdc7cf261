//! What can go wrong while building a stack.

use std::{error::Error, fmt};

use streamgate_core::BackendId;

/// A [`Backend`](crate::Backend) or [`Backends`](crate::Backends) was given
/// settings that cannot work. Each variant wraps the error of the crate that
/// checked the setting, with the backend it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A deadline of the timeout layer.
    Timeout {
        /// The backend.
        backend: BackendId,
        /// What the timeout crate said.
        source: streamgate_timeout::ConfigError,
    },
    /// An idle or total deadline was set without a first-content deadline,
    /// which every timeout layer needs.
    MissingFirstContentTimeout {
        /// The backend.
        backend: BackendId,
    },
    /// A minimum throughput of 0 tokens per minute, which no backend can
    /// be below.
    ZeroMinThroughput {
        /// The backend.
        backend: BackendId,
    },
    /// A setting of the circuit breaker.
    Breaker {
        /// The backend.
        backend: BackendId,
        /// What the breaker crate said.
        source: streamgate_breaker::ConfigError,
    },
    /// A setting of the quota tracker or of pacing.
    Quota {
        /// The backend.
        backend: BackendId,
        /// What the quota crate said.
        source: streamgate_quota::ConfigError,
    },
    /// A setting of the TPM budget gate.
    Tpm {
        /// The backend.
        backend: BackendId,
        /// What the failover crate said.
        source: streamgate_failover::ConfigError,
    },
    /// A setting of the failover router (no backends, duplicate names, …).
    Failover {
        /// What the failover crate said.
        source: streamgate_failover::ConfigError,
    },
}

impl BuildError {
    /// The backend whose settings are wrong; `None` for the router's own.
    pub fn backend(&self) -> Option<&BackendId> {
        match self {
            Self::Timeout { backend, .. }
            | Self::MissingFirstContentTimeout { backend }
            | Self::ZeroMinThroughput { backend }
            | Self::Breaker { backend, .. }
            | Self::Quota { backend, .. }
            | Self::Tpm { backend, .. } => Some(backend),
            Self::Failover { .. } => None,
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { backend, source } => write!(f, "backend {backend}: {source}"),
            Self::MissingFirstContentTimeout { backend } => write!(
                f,
                "backend {backend}: idle and total timeouts need a first-content timeout"
            ),
            Self::ZeroMinThroughput { backend } => write!(
                f,
                "backend {backend}: minimum throughput must be above 0 tokens per minute"
            ),
            Self::Breaker { backend, source } => write!(f, "backend {backend}: {source}"),
            Self::Quota { backend, source } => write!(f, "backend {backend}: {source}"),
            Self::Tpm { backend, source } => write!(f, "backend {backend}: {source}"),
            Self::Failover { source } => write!(f, "failover: {source}"),
        }
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Timeout { source, .. } => Some(source),
            Self::Breaker { source, .. } => Some(source),
            Self::Quota { source, .. } => Some(source),
            Self::Tpm { source, .. } | Self::Failover { source } => Some(source),
            Self::MissingFirstContentTimeout { .. } | Self::ZeroMinThroughput { .. } => None,
        }
    }
}
