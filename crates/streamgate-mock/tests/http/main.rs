//! The mock server over real HTTP: framing, faults, rate limits and observation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod formats;
mod observation;
mod rate_limits;
mod support;
