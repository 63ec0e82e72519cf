//! Session-Id values (RFC 6733 section 8.8):
//! `<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]`.
//!
//! The high part is the process's start time (seconds), the low part a counter, both in
//! decimal. The optional part carries the REST resource id
//! (`gw1.operator.example;1734440000;17;pay-7Q2X`) so that logs and OCS CDRs can be joined to
//! it.
//!
//! Uniqueness (section 8.8: "globally and eternally unique"): an OCS detects duplicates by
//! Session-Id and CC-Request-Number, so two requests sharing both get one answer and one
//! charge. Every generator made by [`SessionIds::from_clock`] in a process therefore draws
//! from one process-wide counter under one high part: several credit-control clients on the
//! same Origin-Host (one per OCS, or made one after the other) never hand out the same id.
//! The counter starts at a random value, so that a restart within the same second does not
//! reuse the previous run's ids either.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct SessionIds {
    host: String,
    high: u32,
    low: Arc<AtomicU32>,
}

/// The process-wide high part and counter of [`SessionIds::from_clock`].
fn process_ids() -> &'static (u32, Arc<AtomicU32>) {
    static IDS: OnceLock<(u32, Arc<AtomicU32>)> = OnceLock::new();
    IDS.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or_default();
        // Room for 2^31 ids before the counter wraps back to where it started.
        (now, Arc::new(AtomicU32::new(fastrand::u32(..1 << 31))))
    })
}

impl SessionIds {
    /// A generator with its own counter from 0 (tests and tools; two of them with the same
    /// host and start give the same ids).
    pub fn new(origin_host: &str, start_secs: u32) -> Self {
        Self {
            host: origin_host.to_string(),
            high: start_secs,
            low: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The generator for live traffic: the process's start time and its one shared counter.
    pub fn from_clock(origin_host: &str) -> Self {
        let (high, low) = process_ids();
        Self {
            host: origin_host.to_string(),
            high: *high,
            low: Arc::clone(low),
        }
    }

    /// A new Session-Id; `tag` (the REST resource id) goes in the optional part, reduced to
    /// characters that cannot break the format (`;` and controls removed, at most 64).
    pub fn next(&self, tag: Option<&str>) -> String {
        let low = self.low.fetch_add(1, Ordering::Relaxed);
        match tag.map(sanitize).filter(|t| !t.is_empty()) {
            Some(t) => format!("{};{};{};{}", self.host, self.high, low, t),
            None => format!("{};{};{}", self.host, self.high, low),
        }
    }
}

fn sanitize(tag: &str) -> String {
    tag.chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';')
        .take(64)
        .collect()
}

/// The optional part of a Session-Id built by [`SessionIds::next`], if any.
pub fn tag_of(session_id: &str) -> Option<&str> {
    session_id.splitn(4, ';').nth(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_uniqueness() {
        let ids = SessionIds::new("gw1.operator.example", 1_734_440_000);
        let a = ids.next(Some("pay-7Q2X"));
        let b = ids.next(None);
        assert_eq!(a, "gw1.operator.example;1734440000;0;pay-7Q2X");
        assert_eq!(b, "gw1.operator.example;1734440000;1");
        assert_eq!(tag_of(&a), Some("pay-7Q2X"));
        assert_eq!(tag_of(&b), None);
        let c = ids.next(Some("bad;id\nwith stuff"));
        assert_eq!(tag_of(&c), Some("badidwithstuff"));
    }

    #[test]
    fn generators_on_the_same_host_never_collide() {
        // Two clients on one Origin-Host (one per OCS, or one made after the other within the
        // same second) used to start the same counter at 0 under the same high part: their
        // first ids were equal, and an OCS took the second request for a duplicate.
        let a = SessionIds::from_clock("gw1.operator.example");
        let b = SessionIds::from_clock("gw1.operator.example");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(a.next(None)));
            assert!(seen.insert(b.next(Some("pay-1"))));
            assert!(seen.insert(b.next(None)));
        }
        assert_eq!(seen.len(), 1500);
    }
}
