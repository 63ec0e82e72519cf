//! Helpers shared by integration tests: real external peers (freeDiameter) and the gateway
//! as a separate process. Each test crate uses only part of them.
#![allow(dead_code)]

pub mod cc_flows;
pub mod freediameter;
pub mod postgres;
pub mod process;
