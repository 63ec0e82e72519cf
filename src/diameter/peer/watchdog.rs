//! The transport watchdog of RFC 3539 section 3.4 (used by RFC 6733 section 5.5 with DWR/DWA).
//!
//! ```text
//!            conn up (first)                 timer & pending
//! INITIAL ----------------------> OKAY ----------------------> SUSPECT
//!                                  ^  \ timer & !pending:          |  any message: failback
//!                                  |   send DWR, pending           |  timer: close
//!                 3rd DWA: failback|                               v
//!                               REOPEN <------ conn up -------- DOWN
//!                 (DWR every Tw; two late DWAs: close, DOWN)
//! ```
//!
//! Sans-IO: the caller passes `now`, and reads [`Watchdog::deadline`] to know when to call
//! [`Watchdog::on_timeout`]. `SetWatchdog()` of the RFC is `Tw = Twinit +/- jitter`.

use std::time::{Duration, Instant};

/// The watchdog states of RFC 3539 section 3.4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchdogState {
    /// No connection has been up yet.
    Initial,
    /// The connection answers: traffic may flow.
    Okay,
    /// A DWR went unanswered for Tw: traffic fails over to other peers.
    Suspect,
    /// The connection is closed.
    Down,
    /// A new connection after a failure: DWRs probe it, traffic waits for three DWAs.
    Reopen,
}

impl WatchdogState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Initial => "INITIAL",
            Self::Okay => "OKAY",
            Self::Suspect => "SUSPECT",
            Self::Down => "DOWN",
            Self::Reopen => "REOPEN",
        }
    }
}

/// What the watchdog asks of its connection, in the order given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchdogOutput {
    pub send_dwr: bool,
    /// Stop routing to this peer and move its pending requests elsewhere (`Failover()`).
    pub failover: bool,
    /// Routing to this peer may resume (`Failback()`).
    pub failback: bool,
    pub close: bool,
}

/// DWAs a reopened connection must return before traffic resumes (RFC 3539 section 3.4.1).
pub const REOPEN_DWAS: i32 = 3;

#[derive(Clone, Debug)]
pub struct Watchdog {
    state: WatchdogState,
    pending: bool,
    num_dwa: i32,
    tw: Duration,
    jitter: Duration,
    deadline: Option<Instant>,
    rng: fastrand::Rng,
}

impl Watchdog {
    /// `tw` is Twinit (RFC 3539: at least 6 s; 30 s by default); each interval is drawn from
    /// `tw - jitter ..= tw + jitter` with a generator seeded by `seed`.
    pub fn new(tw: Duration, jitter: Duration, seed: u64) -> Self {
        Self {
            state: WatchdogState::Initial,
            pending: false,
            num_dwa: 0,
            tw,
            jitter: jitter.min(tw / 2),
            deadline: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Back to INITIAL after a disconnect both sides agreed on (DPR/DPA, RFC 6733 section
    /// 5.4): the connection did not fail, so the next one is trusted on its CEA, as the first
    /// was, rather than probed through REOPEN (which is for connections that failed: RFC 3539
    /// section 3.4.1 enters it from DOWN).
    pub fn reset(&mut self) {
        self.state = WatchdogState::Initial;
        self.pending = false;
        self.num_dwa = 0;
        self.deadline = None;
    }

    pub fn state(&self) -> WatchdogState {
        self.state
    }

    /// When [`Watchdog::on_timeout`] must be called, if at all.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether requests may be routed over the connection.
    pub fn is_usable(&self) -> bool {
        self.state == WatchdogState::Okay
    }

    fn set_watchdog(&mut self, now: Instant) {
        let jitter_ms = self.jitter.as_millis() as i64;
        let offset = if jitter_ms > 0 {
            self.rng.i64(-jitter_ms..=jitter_ms)
        } else {
            0
        };
        let tw = if offset >= 0 {
            self.tw + Duration::from_millis(offset.unsigned_abs())
        } else {
            self.tw
                .saturating_sub(Duration::from_millis(offset.unsigned_abs()))
        };
        self.deadline = Some(now + tw);
    }

    /// The transport connection (and, for Diameter, the CER/CEA exchange) is up.
    pub fn connection_up(&mut self, now: Instant) -> WatchdogOutput {
        let mut out = WatchdogOutput::default();
        match self.state {
            WatchdogState::Initial => {
                self.set_watchdog(now);
                self.pending = false;
                self.state = WatchdogState::Okay;
                out.failback = true;
            }
            _ => {
                // DOWN -> REOPEN: probe before trusting the connection.
                self.num_dwa = 0;
                out.send_dwr = true;
                self.set_watchdog(now);
                self.pending = true;
                self.state = WatchdogState::Reopen;
            }
        }
        out
    }

    /// The connection is gone (closed by either side or by [`WatchdogOutput::close`]).
    pub fn connection_down(&mut self, _now: Instant) -> WatchdogOutput {
        let mut out = WatchdogOutput::default();
        if matches!(self.state, WatchdogState::Okay) {
            out.failover = true;
        }
        if self.state != WatchdogState::Initial {
            self.state = WatchdogState::Down;
        }
        self.pending = false;
        self.deadline = None;
        out
    }

    /// A message arrived. Returns the actions and whether the message must be thrown away
    /// (RFC 3539: non-DWA messages are discarded in REOPEN).
    pub fn on_message(&mut self, now: Instant, is_dwa: bool) -> (WatchdogOutput, bool) {
        let mut out = WatchdogOutput::default();
        let mut throw_away = false;
        match self.state {
            WatchdogState::Okay => {
                if is_dwa {
                    self.pending = false;
                }
                self.set_watchdog(now);
            }
            WatchdogState::Suspect => {
                if is_dwa {
                    self.pending = false;
                }
                out.failback = true;
                self.set_watchdog(now);
                self.state = WatchdogState::Okay;
            }
            WatchdogState::Reopen => {
                if is_dwa {
                    self.pending = false;
                    self.num_dwa += 1;
                    if self.num_dwa >= REOPEN_DWAS {
                        out.failback = true;
                        self.state = WatchdogState::Okay;
                        self.set_watchdog(now);
                    }
                } else {
                    throw_away = true;
                }
            }
            WatchdogState::Initial | WatchdogState::Down => {}
        }
        (out, throw_away)
    }

    /// Call when `now` has reached [`Watchdog::deadline`].
    pub fn on_timeout(&mut self, now: Instant) -> WatchdogOutput {
        let mut out = WatchdogOutput::default();
        if self.deadline.is_none_or(|d| now < d) {
            return out;
        }
        match self.state {
            WatchdogState::Okay => {
                if self.pending {
                    out.failover = true;
                    self.state = WatchdogState::Suspect;
                } else {
                    out.send_dwr = true;
                    self.pending = true;
                }
                self.set_watchdog(now);
            }
            WatchdogState::Suspect => {
                out.close = true;
                self.state = WatchdogState::Down;
                self.deadline = None;
            }
            WatchdogState::Reopen => {
                if !self.pending {
                    out.send_dwr = true;
                    self.pending = true;
                    self.set_watchdog(now);
                } else if self.num_dwa < 0 {
                    out.close = true;
                    self.state = WatchdogState::Down;
                    self.deadline = None;
                } else {
                    self.num_dwa = -1;
                    self.set_watchdog(now);
                }
            }
            WatchdogState::Initial | WatchdogState::Down => {
                self.deadline = None;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TW: Duration = Duration::from_secs(30);

    fn wd() -> Watchdog {
        Watchdog::new(TW, Duration::ZERO, 1)
    }

    #[test]
    fn okay_sends_dwr_when_idle_then_suspect_then_down() {
        let t0 = Instant::now();
        let mut w = wd();
        assert!(w.connection_up(t0).failback);
        assert_eq!(w.state(), WatchdogState::Okay);
        assert_eq!(w.deadline(), Some(t0 + TW));
        // Nothing before the deadline.
        assert_eq!(
            w.on_timeout(t0 + TW - Duration::from_millis(1)),
            WatchdogOutput::default()
        );
        let o = w.on_timeout(t0 + TW);
        assert!(o.send_dwr && !o.failover);
        // No DWA: SUSPECT at 2 Tw, failover.
        let o = w.on_timeout(t0 + 2 * TW);
        assert!(o.failover);
        assert_eq!(w.state(), WatchdogState::Suspect);
        assert!(!w.is_usable());
        // Still nothing: DOWN at 3 Tw, close.
        let o = w.on_timeout(t0 + 3 * TW);
        assert!(o.close);
        assert_eq!(w.state(), WatchdogState::Down);
        assert_eq!(w.deadline(), None);
    }

    #[test]
    fn traffic_defers_the_dwr_and_dwa_clears_pending() {
        let t0 = Instant::now();
        let mut w = wd();
        w.connection_up(t0);
        w.on_message(t0 + Duration::from_secs(20), false);
        assert_eq!(w.deadline(), Some(t0 + Duration::from_secs(50)));
        assert!(w.on_timeout(t0 + Duration::from_secs(50)).send_dwr);
        w.on_message(t0 + Duration::from_secs(51), true);
        // Pending cleared: the next expiry sends another DWR instead of SUSPECT.
        let o = w.on_timeout(t0 + Duration::from_secs(81));
        assert!(o.send_dwr && !o.failover);
    }

    #[test]
    fn suspect_recovers_on_any_message() {
        let t0 = Instant::now();
        let mut w = wd();
        w.connection_up(t0);
        w.on_timeout(t0 + TW);
        w.on_timeout(t0 + 2 * TW);
        assert_eq!(w.state(), WatchdogState::Suspect);
        let (o, thrown) = w.on_message(t0 + 2 * TW + Duration::from_secs(1), false);
        assert!(o.failback && !thrown);
        assert!(w.is_usable());
    }

    #[test]
    fn reopen_needs_three_dwas() {
        let t0 = Instant::now();
        let mut w = wd();
        w.connection_up(t0);
        w.connection_down(t0 + Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(10);
        let o = w.connection_up(t1);
        assert!(o.send_dwr && !o.failback);
        assert_eq!(w.state(), WatchdogState::Reopen);
        assert!(!w.is_usable());
        // Application traffic is thrown away in REOPEN.
        assert!(w.on_message(t1, false).1);
        // DWA 1 (answer to the immediate DWR).
        assert!(!w.on_message(t1 + Duration::from_millis(5), true).0.failback);
        // Timer: DWR 2, DWA 2.
        assert!(w.on_timeout(t1 + TW).send_dwr);
        assert!(!w.on_message(t1 + TW, true).0.failback);
        // Timer: DWR 3, DWA 3 -> OKAY.
        assert!(w.on_timeout(t1 + 2 * TW).send_dwr);
        let (o, _) = w.on_message(t1 + 2 * TW, true);
        assert!(o.failback);
        assert_eq!(w.state(), WatchdogState::Okay);
    }

    #[test]
    fn reopen_gives_up_after_two_silent_intervals() {
        let t0 = Instant::now();
        let mut w = wd();
        w.connection_up(t0);
        w.connection_down(t0);
        w.connection_up(t0);
        // DWR pending, first expiry: NumDWA = -1, keep waiting.
        assert_eq!(w.on_timeout(t0 + TW), WatchdogOutput::default());
        assert_eq!(w.state(), WatchdogState::Reopen);
        // Second expiry still pending: close.
        assert!(w.on_timeout(t0 + 2 * TW).close);
        assert_eq!(w.state(), WatchdogState::Down);
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_reproducible() {
        let t0 = Instant::now();
        let jitter = Duration::from_secs(2);
        let mut a = Watchdog::new(TW, jitter, 42);
        let mut b = Watchdog::new(TW, jitter, 42);
        for i in 0..50 {
            let now = t0 + Duration::from_secs(i * 100);
            a.connection_down(now);
            b.connection_down(now);
            a.state = WatchdogState::Initial;
            b.state = WatchdogState::Initial;
            a.connection_up(now);
            b.connection_up(now);
            let d = a.deadline().unwrap() - now;
            assert!(d >= TW - jitter && d <= TW + jitter, "{d:?}");
            assert_eq!(a.deadline(), b.deadline());
        }
    }
}
