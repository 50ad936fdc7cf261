//! The one timer of a request: the sleep and the deadlines it serves, in
//! one allocation that the response future hands to the body.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Waker},
};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::deadline::{Deadline, Schedule};

/// The request's timer, boxed once at `call()`: the response future and the
/// body move only the pointer.
#[pin_project]
pub(crate) struct Timer {
    #[pin]
    sleep: Sleep,
    /// The deadline in force: what expires, and what is reported then.
    deadline: Deadline,
    /// Where `sleep` is set. Never later than `deadline`: when content moves
    /// the deadline later, the sleep is left where it was and moved on when
    /// it fires (see `poll_expired`), so a steady stream costs no timer
    /// update per chunk.
    armed_at: Instant,
    schedule: Schedule,
    /// A content chunk was handed out since the deadline was last moved; the
    /// idle gap restarts at the next wait. Moving it lazily (only when the
    /// inner stream is pending) keeps back-to-back chunks free of timer work.
    rearm: bool,
    /// The waker the sleep holds since it was last polled. While the task's
    /// waker is the same one, the sleep will wake it when it fires, so a
    /// wait only asks whether it has fired instead of polling it again.
    registered: Option<Waker>,
}

impl Timer {
    /// The timer of a request called with `schedule`, set at its
    /// first-content deadline.
    pub(crate) fn new(schedule: Schedule) -> Pin<Box<Self>> {
        let deadline = schedule.before_content();
        Box::pin(Self {
            sleep: tokio::time::sleep_until(deadline.at),
            deadline,
            armed_at: deadline.at,
            schedule,
            rearm: false,
            registered: None,
        })
    }

    /// The deadline in force.
    pub(crate) fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Whether anything is enforced after the first content.
    pub(crate) fn watches_body(&self) -> bool {
        self.schedule.watches_body()
    }

    /// Content was handed out: the idle gap restarts at the next wait.
    #[inline]
    pub(crate) fn content(self: Pin<&mut Self>) {
        *self.project().rearm = true;
    }

    /// Whether the sleep has fired at its instant; registers `cx` to be
    /// woken when it does.
    #[inline]
    pub(crate) fn poll_sleep(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if let Some(waker) = this.registered {
            if waker.will_wake(cx.waker()) {
                return this.sleep.is_elapsed();
            }
        }
        if this.sleep.poll(cx).is_ready() {
            return true;
        }
        *this.registered = Some(cx.waker().clone());
        false
    }

    /// Moves the deadline after content if needed, then waits on the sleep:
    /// whether the deadline in force has expired.
    pub(crate) fn poll_expired(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.as_mut().project();
        if *this.rearm {
            *this.rearm = false;
            if let Some(next) = this.schedule.after_content(Instant::now()) {
                *this.deadline = next;
                if next.at < *this.armed_at {
                    // Earlier (an idle gap shorter than the first-content
                    // wait): the sleep must move now.
                    self.as_mut().arm(next.at);
                }
            }
        }
        loop {
            if !self.as_mut().poll_sleep(cx) {
                return false;
            }
            if self.armed_at >= self.deadline.at {
                return true;
            }
            // The sleep fired at an older, earlier deadline: move it on to
            // the one in force and wait again.
            let at = self.deadline.at;
            self.as_mut().arm(at);
        }
    }

    /// Sets the sleep to `at`, in place: no allocation. The next wait polls
    /// it again, which registers the waker anew.
    fn arm(self: Pin<&mut Self>, at: Instant) {
        let this = self.project();
        *this.armed_at = at;
        *this.registered = None;
        this.sleep.reset(at);
    }
}
