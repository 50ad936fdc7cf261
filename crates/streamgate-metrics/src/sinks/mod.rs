//! Sinks for the metrics ecosystem, and fan-out to several sinks.

mod facade;
mod fanout;
#[cfg(feature = "opentelemetry")]
mod otel;
mod tracing;

pub use facade::MetricsFacadeSink;
pub use fanout::Fanout;
#[cfg(feature = "opentelemetry")]
pub use otel::OpenTelemetrySink;
pub use tracing::TracingSink;

use streamgate_core::{ErrorClass, Outcome, RejectReason};

/// Whether a finished request was an operation, one that reached the
/// provider. A request a gate refused is not: a layer above the gate reports
/// it as [`Outcome::Failed`]`(`[`ErrorClass::Rejected`]`)`, and every sink
/// leaves it out of its operation metrics, counting the gate's own
/// [`Event::Rejected`](streamgate_core::Event::Rejected) instead (see the
/// crate docs, "Rejections").
pub(crate) fn is_operation(record: &streamgate_core::RequestRecord<'_>) -> bool {
    record.outcome != Outcome::Failed(ErrorClass::Rejected)
}

/// Distinct `error.type` values an outcome can have: the error classes, then
/// timeout, cancelled and truncated.
pub(crate) const OUTCOME_SLOTS: usize = ErrorClass::ALL.len() + 3;

/// The slot of a non-successful outcome's `error.type`; `None` for success.
pub(crate) fn outcome_slot(outcome: Outcome) -> Option<usize> {
    let n = ErrorClass::ALL.len();
    match outcome {
        Outcome::Success => None,
        Outcome::Failed(class) => Some(
            ErrorClass::ALL
                .iter()
                .position(|c| *c == class)
                .unwrap_or(n - 1),
        ),
        Outcome::TimedOut(_) => Some(n),
        Outcome::Cancelled => Some(n + 1),
        Outcome::Truncated => Some(n + 2),
    }
}

/// Distinct rejection reasons the sinks keep apart (unknown ones share the
/// last slot).
pub(crate) const REJECT_SLOTS: usize = 4;

pub(crate) fn reject_slot(reason: RejectReason) -> usize {
    match reason {
        RejectReason::CircuitOpen => 0,
        RejectReason::QuotaExhausted => 1,
        RejectReason::TpmBudget => 2,
        _ => 3,
    }
}

/// The time per output chunk of a request: output duration over the chunks
/// after the first content chunk's. `None` with fewer than two chunks.
pub(crate) fn time_per_output_chunk(record: &streamgate_core::RequestRecord<'_>) -> Option<f64> {
    let output = record.output_duration?;
    let gaps = record.chunks.checked_sub(1).filter(|&g| g > 0)?;
    Some(output.as_secs_f64() / gaps as f64)
}
