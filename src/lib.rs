//! A Diameter Gy/Ro charging gateway: REST front ends turned into Credit-Control exchanges
//! (RFC 6733, RFC 4006 / RFC 8506, 3GPP TS 32.299) with an Online Charging System.
//!
//! See `ARCHITECTURE.md` for the map of the code.

pub mod api;
pub mod charging;
pub mod cli;
pub mod config;
pub mod contact;
pub mod credit_control;
pub mod diameter;
pub mod fuzzing;
pub mod gateway;
pub mod identity;
pub mod notify;
pub mod ocs;
pub mod parties;
pub mod store;
