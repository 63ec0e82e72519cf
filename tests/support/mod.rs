//! Helpers shared by integration tests that drive real external peers.

pub mod freediameter;
