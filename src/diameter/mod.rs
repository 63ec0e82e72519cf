//! The Diameter base protocol: wire codec and run-time dictionaries.

pub mod codec;
pub mod dict;
pub mod render;
