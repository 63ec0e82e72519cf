//! The Diameter base protocol: wire codec, run-time dictionaries, identifiers and peers.

pub mod codec;
pub mod dict;
pub mod ids;
pub mod node;
pub mod peer;
pub mod render;
pub mod router;
pub mod transport;
