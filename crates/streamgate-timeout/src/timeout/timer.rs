//! The one timer of a request: the sleep and the deadlines it serves, in
//! one allocation that the response future hands to the body, made only
//! when the request first waits.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Waker},
};

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::deadline::{Deadline, Schedule};

/// The request's timer, boxed once, at the first wait: the response future
/// and the body move only the pointer.
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
    fn new(schedule: Schedule) -> Pin<Box<Self>> {
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

    /// Content was handed out: the idle gap restarts at the next wait.
    #[inline]
    fn content(self: Pin<&mut Self>) {
        *self.project().rearm = true;
    }

    /// Whether the sleep has fired at its instant; registers `cx` to be
    /// woken when it does.
    #[inline]
    fn poll_sleep(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
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
    fn poll_expired(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
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

/// A request's deadlines, and its [`Timer`] once something has waited.
///
/// Nothing is allocated or registered with the runtime while every poll is
/// ready: a deadline only matters to a wait, and the first wait makes the
/// timer, set where it would have been set at `call()`. A response over a
/// socket waits for its head, so it makes the timer there, as before; an
/// answer that is ready at once (a cache, an in-memory client, a refusal
/// further down) makes none.
pub(crate) struct LazyTimer {
    schedule: Schedule,
    timer: Option<Pin<Box<Timer>>>,
    /// Content was handed out before the timer was made.
    content: bool,
}

impl LazyTimer {
    /// The deadlines of a request called with `schedule`; no timer yet.
    pub(crate) fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            timer: None,
            content: false,
        }
    }

    /// Whether anything is enforced after the first content.
    pub(crate) fn watches_body(&self) -> bool {
        self.schedule.watches_body()
    }

    /// The deadline in force: before the timer is made, the first-content
    /// one until content, then none yet (the idle gap starts at the next
    /// wait).
    pub(crate) fn deadline(&self) -> Option<Deadline> {
        match &self.timer {
            Some(timer) => Some(timer.deadline),
            None if self.content => None,
            None => Some(self.schedule.before_content()),
        }
    }

    /// Content was handed out: the idle gap restarts at the next wait.
    #[inline]
    pub(crate) fn content(&mut self) {
        match &mut self.timer {
            Some(timer) => timer.as_mut().content(),
            None => self.content = true,
        }
    }

    /// The timer, made at the first call.
    fn timer(&mut self) -> Pin<&mut Timer> {
        let (schedule, content) = (self.schedule, self.content);
        self.timer
            .get_or_insert_with(|| {
                let mut timer = Timer::new(schedule);
                if content {
                    timer.as_mut().content();
                }
                timer
            })
            .as_mut()
    }

    /// Whether the first-content (or total) deadline has passed; registers
    /// `cx` to be woken when it does.
    pub(crate) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer().poll_sleep(cx)
    }

    /// Whether the deadline in force after content has expired; registers
    /// `cx` to be woken when it does.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer().poll_expired(cx)
    }

    /// The error of the deadline that expired, once a `poll_*` said so (the
    /// timer is made by then).
    pub(crate) fn error(&self) -> streamgate_core::StreamTimeout {
        match &self.timer {
            Some(timer) => timer.deadline.error(),
            None => self.schedule.before_content().error(),
        }
    }
}
