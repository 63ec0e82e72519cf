//! Hop-by-Hop and End-to-End identifiers (RFC 6733 section 3).
//!
//! Hop-by-Hop ids are "normally a monotonically increasing number, whose start value was
//! randomly generated"; one counter serves every connection of the node, which keeps them
//! unique per connection too. End-to-End ids "MAY set the high order 12 bits to contain the low
//! order 12 bits of current time, and the low order 20 bits to a random value", then increase:
//! unique for far longer than the 4 minutes the RFC asks, across restarts.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct Ids {
    hop_by_hop: AtomicU32,
    end_to_end: AtomicU32,
}

impl Ids {
    /// `start_secs` is the node's start time (Unix seconds), `seed` any random value.
    pub fn new(start_secs: u64, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let high = ((start_secs & 0xFFF) as u32) << 20;
        Self {
            hop_by_hop: AtomicU32::new(rng.u32(..)),
            end_to_end: AtomicU32::new(high | (rng.u32(..) & 0x000F_FFFF)),
        }
    }

    /// Seeded from the clock and the OS: what a running node uses.
    pub fn from_clock() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self::new(now, fastrand::u64(..))
    }

    pub fn next_hop_by_hop(&self) -> u32 {
        self.hop_by_hop.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_end_to_end(&self) -> u32 {
        self.end_to_end.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_high_bits_carry_the_start_time() {
        let ids = Ids::new(0x1234_5ABC, 9);
        let e = ids.next_end_to_end();
        assert_eq!(e >> 20, 0xABC);
        assert_eq!(ids.next_end_to_end(), e.wrapping_add(1));
        let h = ids.next_hop_by_hop();
        assert_eq!(ids.next_hop_by_hop(), h.wrapping_add(1));
    }
}
