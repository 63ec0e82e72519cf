//! Helpers shared by integration tests: real external peers (freeDiameter), the gateway
//! as a separate process, and Wireshark's judgement of what went on the wire. Each test crate
//! uses only part of them.
#![allow(dead_code)]

pub mod cc_flows;
pub mod freediameter;
pub mod postgres;
pub mod process;
pub mod smtp;
pub mod wire;
