//! A plan turned into the exact sequence of things to put on the wire.
//!
//! [`Wire`] is a plain iterator of [`Step`]s, with no I/O and no clock, so what the
//! server sends for any plan is tested here without a socket. The server only
//! interprets the steps (sleeps, frames, stall, abort).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use crate::formats::{Dialect, StreamMeta};
use crate::plan::{Fault, Plan};

/// One thing for the server to do while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait, sending nothing.
    Sleep(Duration),
    /// Send a frame that carries no content (opening events, keep-alives, closing events).
    Frame(Bytes),
    /// Send a content frame carrying one output token.
    Content(Bytes),
    /// Send nothing more, ever; the stream ends only when the client leaves.
    Stall,
    /// Abort the connection without finishing the response.
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    /// Before the first content chunk, with this much wait left.
    Waiting(Duration),
    /// About to produce content chunk `next`.
    Content {
        next: u64,
    },
    /// Stalled for good, sending only keep-alives (if the plan and provider have any).
    Stalled,
    Done,
}

/// The steps of one streamed response, produced lazily so that long waits filled with
/// keep-alives and endless stalls cost no memory.
pub(crate) struct Wire {
    dialect: &'static dyn Dialect,
    meta: StreamMeta,
    plan: Plan,
    /// Steps decided but not yet handed out.
    queued: VecDeque<Step>,
    phase: Phase,
}

impl Wire {
    pub(crate) fn new(dialect: &'static dyn Dialect, meta: StreamMeta, plan: Plan) -> Self {
        Self {
            dialect,
            meta,
            plan,
            queued: VecDeque::new(),
            phase: Phase::Opening,
        }
    }

    /// The content chunk index at which the plan's fault strikes; a count past the end
    /// strikes after the last content chunk.
    fn strike_at(&self) -> Option<u64> {
        let fault = self.plan.fault?;
        fault.strikes_at().map(|at| at.min(self.plan.output_tokens))
    }

    fn keep_alive(&self) -> Option<(Duration, Bytes)> {
        let (interval, kind) = self.plan.keep_alive?;
        let frame = self.dialect.keep_alive(&self.meta, kind)?;
        Some((interval, frame))
    }

    /// Decides the next steps and the next phase.
    fn advance(&mut self) {
        match self.phase {
            Phase::Opening => {
                let frames = self.dialect.preamble(&self.meta);
                self.queued.extend(frames.into_iter().map(Step::Frame));
                self.phase = Phase::Waiting(self.plan.first_content_delay);
            }
            Phase::Waiting(left) if left.is_zero() => {
                self.phase = Phase::Content {
                    next: self.plan.start_token.min(self.plan.output_tokens),
                }
            }
            Phase::Waiting(left) => match self.keep_alive() {
                Some((interval, frame)) => {
                    let nap = interval.min(left);
                    let left = left - nap;
                    self.queued.push_back(Step::Sleep(nap));
                    // No keep-alive right before the content it would precede.
                    if !left.is_zero() {
                        self.queued.push_back(Step::Frame(frame));
                    }
                    self.phase = Phase::Waiting(left);
                }
                None => {
                    self.queued.push_back(Step::Sleep(left));
                    self.phase = Phase::Waiting(Duration::ZERO);
                }
            },
            Phase::Content { next } => self.content(next),
            Phase::Stalled => match self.keep_alive() {
                Some((interval, frame)) => {
                    self.queued.push_back(Step::Sleep(interval));
                    self.queued.push_back(Step::Frame(frame));
                }
                None => {
                    self.queued.push_back(Step::Stall);
                    self.phase = Phase::Done;
                }
            },
            Phase::Done => {}
        }
    }

    fn content(&mut self, index: u64) {
        let total = self.plan.output_tokens;
        let strike = self.strike_at();
        let striking = strike == Some(index);
        // The inter-chunk delay separates content chunks; a fault strikes after it, as
        // if the next chunk never came. Closing events follow the last chunk at once.
        if index > 0 && (index < total || striking) && !self.plan.chunk_delay.is_zero() {
            self.queued.push_back(Step::Sleep(self.plan.chunk_delay));
        }
        if striking {
            self.phase = Phase::Done;
            match self.plan.fault {
                Some(Fault::ErrorEvent { .. }) => self
                    .queued
                    .push_back(Step::Frame(self.dialect.error_event(&self.meta))),
                Some(Fault::Stall { .. }) => self.phase = Phase::Stalled,
                Some(Fault::Disconnect { .. }) => self.queued.push_back(Step::Abort),
                // Not JSON, whatever the framing: SSE `data:` lines and NDJSON
                // lines alike fail to parse.
                Some(Fault::Malformed { .. }) => self.queued.push_back(Step::Frame(
                    Bytes::from_static(b"data: {\"choices\": [ {oops\n\n"),
                )),
                Some(Fault::Truncate { .. } | Fault::Http(_)) | None => {}
            }
        } else if index == total {
            let frames = self.dialect.epilogue(&self.meta, total);
            self.queued.extend(frames.into_iter().map(Step::Frame));
            self.phase = Phase::Done;
        } else {
            let last = index + 1 == total && strike.is_none();
            self.queued
                .push_back(Step::Content(self.dialect.content(&self.meta, index, last)));
            self.phase = Phase::Content { next: index + 1 };
        }
    }
}

impl Iterator for Wire {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            if let Some(step) = self.queued.pop_front() {
                return Some(step);
            }
            if self.phase == Phase::Done {
                return None;
            }
            self.advance();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Provider;
    use crate::plan::KeepAlive;

    fn meta() -> StreamMeta {
        StreamMeta {
            id: "id".into(),
            model: "m".into(),
            created: 0,
            input_tokens: 4,
            cached_input_tokens: 0,
            include_usage: false,
            error_body: None,
        }
    }

    /// A compact picture of the steps: `S10` sleep 10 ms, `f` frame, `c` content,
    /// `stall`, `abort`; frames that are keep-alive comments show as `k`.
    fn shape(provider: Provider, plan: Plan, limit: usize) -> String {
        Wire::new(provider.dialect(), meta(), plan)
            .take(limit)
            .map(|step| match step {
                Step::Sleep(d) => format!("S{}", d.as_millis()),
                Step::Frame(b) if b.starts_with(b": keep-alive") => "k".into(),
                Step::Frame(_) => "f".into(),
                Step::Content(_) => "c".into(),
                Step::Stall => "stall".into(),
                Step::Abort => "abort".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn healthy_openai_stream_is_role_chunk_content_finish_and_done() {
        let plan = Plan::new().with_output_tokens(3).with_chunk_delay(ms(10));
        assert_eq!(shape(Provider::OpenAi, plan, 100), "f c S10 c S10 c f f");
    }

    #[test]
    fn anthropic_stream_opens_with_three_events_and_closes_with_three() {
        let plan = Plan::new().with_output_tokens(2);
        assert_eq!(shape(Provider::Anthropic, plan, 100), "f f f c c f f f");
    }

    #[test]
    fn gemini_puts_the_finish_reason_on_the_last_content_chunk() {
        let steps: Vec<_> = Wire::new(
            Provider::Gemini.dialect(),
            meta(),
            Plan::new().with_output_tokens(2),
        )
        .collect();
        assert_eq!(steps.len(), 2);
        let Step::Content(last) = &steps[1] else {
            panic!("the last step is content");
        };
        assert!(String::from_utf8_lossy(last).contains("\"finishReason\":\"STOP\""));
        let Step::Content(first) = &steps[0] else {
            panic!("the first step is content");
        };
        assert!(!String::from_utf8_lossy(first).contains("finishReason"));
    }

    #[test]
    fn gemini_empty_answer_still_carries_a_finish_reason() {
        let plan = Plan::new().with_output_tokens(0);
        assert_eq!(shape(Provider::Gemini, plan, 100), "f");
    }

    #[test]
    fn keep_alives_fill_the_first_content_wait_but_never_precede_content_directly() {
        let plan = Plan::new()
            .with_output_tokens(1)
            .with_first_content_delay(ms(25))
            .with_keep_alive(ms(10), KeepAlive::Comment);
        assert_eq!(
            shape(Provider::OpenAi, plan.clone(), 100),
            "f S10 k S10 k S5 c f f"
        );
        let exact = plan.with_first_content_delay(ms(20));
        assert_eq!(shape(Provider::OpenAi, exact, 100), "f S10 k S10 c f f");
    }

    #[test]
    fn gemini_waits_without_keep_alives() {
        let plan = Plan::new()
            .with_output_tokens(1)
            .with_first_content_delay(ms(25))
            .with_keep_alive(ms(10), KeepAlive::Comment);
        assert_eq!(shape(Provider::Gemini, plan, 100), "S25 c");
    }

    #[test]
    fn ollama_streams_one_line_per_token_then_the_done_line_and_waits_in_silence() {
        let plan = Plan::new()
            .with_output_tokens(2)
            .with_first_content_delay(ms(25))
            .with_keep_alive(ms(10), KeepAlive::Comment);
        assert_eq!(shape(Provider::Ollama, plan.clone(), 100), "S25 c c f");
        let stalled = plan.stall_after(1);
        assert_eq!(shape(Provider::Ollama, stalled, 100), "S25 c stall");
        let truncated = Plan::new().with_output_tokens(2).without_terminal_marker();
        assert_eq!(shape(Provider::Ollama, truncated, 100), "c c");
    }

    #[test]
    fn error_event_strikes_after_the_delay_and_ends_the_stream() {
        let plan = Plan::new()
            .with_output_tokens(5)
            .with_chunk_delay(ms(1))
            .error_after(2);
        assert_eq!(shape(Provider::OpenAi, plan, 100), "f c S1 c S1 f");
    }

    #[test]
    fn stall_before_first_content_never_ends() {
        let plan = Plan::new().stall_after(0);
        assert_eq!(shape(Provider::OpenAi, plan, 100), "f stall");
    }

    #[test]
    fn stall_with_keep_alive_pings_forever() {
        let plan = Plan::new()
            .stall_after(1)
            .with_keep_alive(ms(5), KeepAlive::Comment);
        assert_eq!(
            shape(Provider::Anthropic, plan, 10),
            "f f f c S5 f S5 f S5 f"
        );
    }

    #[test]
    fn disconnect_aborts_after_the_given_chunks() {
        let plan = Plan::new().with_output_tokens(4).disconnect_after(2);
        assert_eq!(shape(Provider::OpenAi, plan, 100), "f c c abort");
    }

    #[test]
    fn missing_terminal_marker_sends_all_content_and_no_closing_events() {
        let plan = Plan::new().with_output_tokens(3).without_terminal_marker();
        assert_eq!(shape(Provider::Anthropic, plan, 100), "f f f c c c");
        let steps: Vec<_> = Wire::new(
            Provider::Gemini.dialect(),
            meta(),
            Plan::new().with_output_tokens(2).without_terminal_marker(),
        )
        .collect();
        assert!(steps.iter().all(|step| match step {
            Step::Content(frame) => !String::from_utf8_lossy(frame).contains("finishReason"),
            _ => false,
        }));
    }
}
