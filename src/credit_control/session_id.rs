//! Session-Id values (RFC 6733 section 8.8):
//! `<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]`.
//!
//! The high part is the gateway's start time (seconds), the low part a counter, both in
//! decimal, so ids never repeat across restarts. The optional part carries the REST resource
//! id (`gw1.operator.example;1734440000;17;pay-7Q2X`) so that logs and OCS CDRs can be joined
//! to it.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct SessionIds {
    host: String,
    high: u32,
    low: AtomicU32,
}

impl SessionIds {
    pub fn new(origin_host: &str, start_secs: u32) -> Self {
        Self {
            host: origin_host.to_string(),
            high: start_secs,
            low: AtomicU32::new(0),
        }
    }

    /// Seeded with the current time.
    pub fn from_clock(origin_host: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or_default();
        Self::new(origin_host, now)
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
}
