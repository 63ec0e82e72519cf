//! The peer state machine of RFC 6733 section 5.6, for both roles, with the RFC 3539 watchdog.
//!
//! ```text
//!            Start                 I-Rcv-Conn-Ack            I-Rcv-CEA
//!  Closed ----------> Wait-Conn-Ack --------------> Wait-I-CEA ---------> I-Open
//!    |                    | R-Conn-CER                  | R-Conn-CER: elect
//!    | R-Conn-CER         v                             v
//!    |            Wait-Conn-Ack/Elect --I-Rcv-Conn-Ack--> Wait-Returns --win/I-Disc--> R-Open
//!    +------------------------------------------------------------------------------> R-Open
//!  I-Open / R-Open --Stop: DPR / Rcv-DPR: DPA--> Closing --DPA / Peer-Disc / Timeout--> Closed
//! ```
//!
//! Sans-IO (as quinn-proto's `Connection`): every input carries `now`; the owner drains
//! [`PeerFsm::poll_action`] and sleeps until [`PeerFsm::poll_timeout`]. No clock is read and no
//! socket touched here. The connections are named, not held: [`Conn::Initiator`] (dialled by
//! this node), [`Conn::Responder`] (accepted), and [`Conn::Incoming`] (an accepted connection
//! whose CER has just been handed to this peer, not yet kept or refused).
//!
//! Beyond the RFC table: after a failure an initiator reconnects with exponential back-off and
//! jitter; after a peer's DPR with BUSY or DO_NOT_WANT_TO_TALK_TO_YOU ("SHOULD NOT attempt
//! reconnection", section 5.4.3) it waits the configured hold-off instead.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::messages::{self, Capabilities, DisconnectCause, LocalIdentity};
use super::watchdog::{Watchdog, WatchdogOutput, WatchdogState};
use crate::diameter::codec::{CommandCode, Limits, Message, MessageBuf, ResultCode};
use crate::diameter::dict::Dictionary;
use crate::diameter::ids::Ids;

/// The states of RFC 6733 section 5.6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    Closed,
    WaitConnAck,
    WaitICea,
    WaitConnAckElect,
    WaitReturns,
    ROpen,
    IOpen,
    Closing,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "Closed",
            Self::WaitConnAck => "Wait-Conn-Ack",
            Self::WaitICea => "Wait-I-CEA",
            Self::WaitConnAckElect => "Wait-Conn-Ack/Elect",
            Self::WaitReturns => "Wait-Returns",
            Self::ROpen => "R-Open",
            Self::IOpen => "I-Open",
            Self::Closing => "Closing",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, Self::ROpen | Self::IOpen)
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which transport connection an event or action concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conn {
    /// The connection this node dialled.
    Initiator,
    /// The accepted connection kept for this peer.
    Responder,
    /// An accepted connection whose CER was just handed over, not yet kept or refused.
    Incoming,
}

/// What the driver must do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Action {
    /// Dial the peer (I-Snd-Conn-Req); report [`PeerFsm::connected`] or
    /// [`PeerFsm::connect_failed`].
    Connect,
    /// Keep the [`Conn::Incoming`] connection as the [`Conn::Responder`] one (R-Accept),
    /// closing any previous responder connection.
    AcceptIncoming,
    /// Write these bytes on the connection.
    Send(Conn, Bytes),
    /// Close the connection (after writing what was queued before this action).
    Close(Conn),
    /// A message for the application (anything but CER/CEA/DWR/DWA/DPR/DPA).
    Deliver(Message),
    /// The peer is now usable for routing (`true`: failback) or not (`false`: failover; move
    /// its pending requests elsewhere).
    Usable(bool),
}

/// Counts of the base-protocol exchanges one peer took part in (RFC 6733 sections 5.4, 5.5):
/// what health checks, metrics and interoperability tests read to know which side watched the
/// connection and how it was closed. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerStats {
    /// Capabilities exchanges completed (CEA received with success, or CEA sent).
    pub opened: u64,
    /// DWRs this node sent (its own watchdog fired, or [`PeerFsm::probe`]).
    pub dwr_sent: u64,
    /// DWAs received for them.
    pub dwa_received: u64,
    /// DWRs the peer sent (its watchdog fired), each answered with a DWA.
    pub dwr_received: u64,
    /// DPRs this node sent (graceful stop).
    pub dpr_sent: u64,
    /// DPAs received for them.
    pub dpa_received: u64,
    /// DPRs the peer sent, each answered with a DPA.
    pub dpr_received: u64,
    /// Disconnect-Cause of the last DPR received.
    pub last_dpr_cause: Option<DisconnectCause>,
}

/// Timing and policy of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    /// Name used in logs (the configured host, or the address).
    pub name: String,
    /// Whether this node dials the peer (and so reconnects).
    pub initiator: bool,
    /// RFC 3539 Twinit.
    pub watchdog_interval: Duration,
    pub watchdog_jitter: Duration,
    /// Longest wait for the TCP connection and then for the CEA.
    pub connect_timeout: Duration,
    /// Longest wait for a DPA, or for the peer to close after our DPA.
    pub disconnect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Wait before dialling again after a DPR with BUSY or DO_NOT_WANT_TO_TALK_TO_YOU.
    pub dpr_hold_off: Duration,
    /// Seed of the jitter generators (tests fix it).
    pub seed: u64,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            name: "peer".into(),
            initiator: true,
            watchdog_interval: Duration::from_secs(30),
            watchdog_jitter: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            disconnect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            dpr_hold_off: Duration::from_secs(300),
            seed: 0,
        }
    }
}

/// Timers are data (quinn's `TimerTable`): one deadline per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Wait-Conn-Ack, Wait-I-CEA, Wait-Conn-Ack/Elect and Wait-Returns "Timeout".
    Handshake = 0,
    /// Closing "Timeout".
    Closing = 1,
    /// Next dial after a failure.
    Reconnect = 2,
}

const TIMERS: [Timer; 3] = [Timer::Handshake, Timer::Closing, Timer::Reconnect];

/// One peer: its RFC 6733 state, its watchdog, its timers and the actions it asks for.
pub struct PeerFsm {
    local: Arc<LocalIdentity>,
    settings: PeerSettings,
    dict: Arc<Dictionary>,
    limits: Limits,
    ids: Arc<Ids>,
    state: PeerState,
    /// The open connection, once in I-Open or R-Open.
    active: Option<Conn>,
    /// Connections that exist: the initiator (dialled or being dialled), the responder.
    has_initiator: bool,
    has_responder: bool,
    /// The CER of the responder connection, held during an election until its CEA is sent.
    held_cer: Option<Message>,
    watchdog: Watchdog,
    timers: [Option<Instant>; 3],
    actions: VecDeque<Action>,
    peer: Option<Capabilities>,
    usable: bool,
    stopped: bool,
    /// No dialling before this instant (after a DPR with BUSY or DO_NOT_WANT_TO_TALK_TO_YOU).
    held: Option<Instant>,
    backoff: Duration,
    rng: fastrand::Rng,
    stats: PeerStats,
    /// While `Closing`: the agreed disconnect under way (its cause, and who sent the DPR).
    agreed: Option<(DisconnectCause, DprFrom)>,
}

/// Which side asked for a disconnect (section 5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DprFrom {
    Us,
    Peer,
}

impl DprFrom {
    fn name(self) -> &'static str {
        match self {
            Self::Us => "sent",
            Self::Peer => "received",
        }
    }
}

impl fmt::Debug for PeerFsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerFsm")
            .field("name", &self.settings.name)
            .field("state", &self.state)
            .field("watchdog", &self.watchdog.state())
            .finish()
    }
}

impl PeerFsm {
    pub fn new(
        local: Arc<LocalIdentity>,
        settings: PeerSettings,
        dict: Arc<Dictionary>,
        limits: Limits,
        ids: Arc<Ids>,
    ) -> Self {
        let watchdog = Watchdog::new(
            settings.watchdog_interval,
            settings.watchdog_jitter,
            settings.seed,
        );
        let backoff = settings.reconnect_min;
        let rng = fastrand::Rng::with_seed(settings.seed ^ 0x9E37_79B9_7F4A_7C15);
        Self {
            local,
            settings,
            dict,
            limits,
            ids,
            state: PeerState::Closed,
            active: None,
            has_initiator: false,
            has_responder: false,
            held_cer: None,
            watchdog,
            timers: [None; 3],
            actions: VecDeque::new(),
            peer: None,
            usable: false,
            stopped: false,
            held: None,
            backoff,
            rng,
            stats: PeerStats::default(),
            agreed: None,
        }
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    pub fn watchdog_state(&self) -> WatchdogState {
        self.watchdog.state()
    }

    /// Open and watchdog OKAY: requests may be routed here.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// What the peer said in its CER or CEA.
    pub fn peer_capabilities(&self) -> Option<&Capabilities> {
        self.peer.as_ref()
    }

    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// Counts of CER/CEA, DWR/DWA and DPR/DPA exchanges so far.
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Sends one DWR now, outside the watchdog's schedule (an operator's probe of a usable
    /// connection). Its DWA is handled like any other (RFC 3539 section 3.4.1: traffic
    /// restarts Tw) and counted in [`PeerStats::dwa_received`]. False, and nothing sent, when
    /// the peer is not usable.
    pub fn probe(&mut self) -> bool {
        let Some(conn) = self.active.filter(|_| self.usable) else {
            return false;
        };
        let dwr = messages::dwr(
            &self.local,
            self.ids.next_hop_by_hop(),
            self.ids.next_end_to_end(),
        );
        self.stats.dwr_sent += 1;
        self.send_buf(conn, &dwr);
        true
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must call [`PeerFsm::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(self.watchdog.deadline())
            .min()
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        if let Some(slot) = self.timers.get_mut(t as usize) {
            *slot = at;
        }
    }

    fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers.get(t as usize).copied().flatten()
    }

    fn goto(&mut self, now: Instant, next: PeerState) {
        if next == self.state {
            return;
        }
        let prev = self.state;
        self.state = next;
        info!(peer = %self.settings.name, from = %prev, to = %next, "peer state");
        if next.is_open() {
            self.stats.opened += 1;
            self.set_timer(Timer::Handshake, None);
            self.backoff = self.settings.reconnect_min;
            let out = self.watchdog.connection_up(now);
            self.apply_watchdog(now, out);
        } else if prev.is_open() {
            let out = self.watchdog.connection_down(now);
            self.apply_watchdog(now, out);
            self.set_usable(false);
        }
        if next == PeerState::Closed {
            if self.agreed.take().is_some() {
                // A planned end (DPR/DPA): the next connection is a fresh one.
                self.watchdog.reset();
            }
            self.set_timer(Timer::Handshake, None);
            self.set_timer(Timer::Closing, None);
            self.active = None;
            self.held_cer = None;
            self.schedule_reconnect(now, None);
        }
    }

    fn set_usable(&mut self, usable: bool) {
        if self.usable != usable {
            self.usable = usable;
            self.actions.push_back(Action::Usable(usable));
        }
    }

    fn apply_watchdog(&mut self, now: Instant, out: WatchdogOutput) {
        if out.failover {
            if self.state.is_open() {
                // OKAY -> SUSPECT: the connection is up but its DWR went unanswered.
                warn!(peer = %self.settings.name, watchdog = self.watchdog.state().name(), "no answer to DWR: out of routing");
            } else {
                // Leaving an open state: a disconnect both sides agreed on (DPR/DPA, logged as
                // such), or a lost connection (logged where it was seen). Nothing more to say.
                debug!(peer = %self.settings.name, state = %self.state, "out of routing");
            }
            self.set_usable(false);
        }
        if out.send_dwr
            && let Some(conn) = self.active
        {
            let dwr = messages::dwr(
                &self.local,
                self.ids.next_hop_by_hop(),
                self.ids.next_end_to_end(),
            );
            self.stats.dwr_sent += 1;
            self.send_buf(conn, &dwr);
        }
        if out.failback && self.state.is_open() {
            info!(peer = %self.settings.name, "failback: peer usable");
            self.set_usable(true);
        }
        if out.close
            && let Some(conn) = self.active
        {
            warn!(peer = %self.settings.name, "watchdog: no answer for 2 Tw, closing");
            self.disconnect(conn);
            self.goto(now, PeerState::Closed);
        }
    }

    fn schedule_reconnect(&mut self, now: Instant, hold: Option<Duration>) {
        if !self.settings.initiator || self.stopped {
            self.set_timer(Timer::Reconnect, None);
            return;
        }
        let delay = match hold {
            Some(d) => d,
            None => {
                let base = self.backoff;
                self.backoff = (self.backoff * 2).min(self.settings.reconnect_max);
                // +/- 25% jitter so that many gateways do not reconnect in step.
                let quarter = base.as_millis() as u64 / 4;
                let jitter = if quarter > 0 {
                    self.rng.u64(0..=quarter * 2)
                } else {
                    0
                };
                (base + Duration::from_millis(jitter))
                    .saturating_sub(Duration::from_millis(quarter))
            }
        };
        debug!(peer = %self.settings.name, delay_ms = delay.as_millis() as u64, "reconnect scheduled");
        self.set_timer(Timer::Reconnect, Some(now + delay));
    }

    fn send_buf(&mut self, conn: Conn, m: &MessageBuf) {
        match m.to_bytes() {
            Ok(b) => self.actions.push_back(Action::Send(conn, b)),
            Err(e) => warn!(peer = %self.settings.name, error = %e, "cannot encode"),
        }
    }

    fn disconnect(&mut self, conn: Conn) {
        match conn {
            Conn::Initiator => self.has_initiator = false,
            Conn::Responder => self.has_responder = false,
            Conn::Incoming => {}
        }
        self.actions.push_back(Action::Close(conn));
    }

    // ---- events from the application --------------------------------------------------

    /// Start: the application wants a connection to this peer.
    pub fn start(&mut self, now: Instant) {
        self.stopped = false;
        if self.state == PeerState::Closed && self.settings.initiator {
            self.set_timer(Timer::Reconnect, None);
            self.dial(now);
        }
    }

    fn dial(&mut self, now: Instant) {
        self.has_initiator = true;
        self.actions.push_back(Action::Connect);
        self.set_timer(Timer::Handshake, Some(now + self.settings.connect_timeout));
        self.goto(now, PeerState::WaitConnAck);
    }

    /// Stop: close gracefully with a DPR carrying `cause` (the caller has drained in-flight
    /// requests first, or given up waiting).
    pub fn stop(&mut self, now: Instant, cause: DisconnectCause) {
        self.stopped = true;
        self.set_timer(Timer::Reconnect, None);
        match (self.state, self.active) {
            (s, Some(conn)) if s.is_open() => {
                let dpr = messages::dpr(
                    &self.local,
                    cause,
                    self.ids.next_hop_by_hop(),
                    self.ids.next_end_to_end(),
                );
                self.stats.dpr_sent += 1;
                info!(peer = %self.settings.name, cause = cause.name(), "disconnecting: DPR sent");
                self.send_buf(conn, &dpr);
                self.set_timer(Timer::Closing, Some(now + self.settings.disconnect_timeout));
                self.goto(now, PeerState::Closing);
                self.agreed = Some((cause, DprFrom::Us));
            }
            (PeerState::Closing | PeerState::Closed, _) => {}
            _ => {
                self.close_all();
                self.goto(now, PeerState::Closed);
            }
        }
    }

    fn close_all(&mut self) {
        if self.has_initiator {
            self.disconnect(Conn::Initiator);
        }
        if self.has_responder {
            self.disconnect(Conn::Responder);
        }
    }

    /// Send-Message: an application message. Refused (given back) unless the peer is usable.
    pub fn send(&mut self, frame: Bytes) -> Result<(), Bytes> {
        match self.active {
            Some(conn) if self.usable => {
                self.actions.push_back(Action::Send(conn, frame));
                Ok(())
            }
            _ => Err(frame),
        }
    }

    /// Send an answer to a request this peer delivered: allowed in any open state, and while
    /// closing, so that in-flight requests still get their answers.
    pub fn send_answer(&mut self, frame: Bytes) -> Result<(), Bytes> {
        match self.active {
            Some(conn) if self.state.is_open() || self.state == PeerState::Closing => {
                self.actions.push_back(Action::Send(conn, frame));
                Ok(())
            }
            _ => Err(frame),
        }
    }

    // ---- events from the transport ----------------------------------------------------

    /// I-Rcv-Conn-Ack: the dialled TCP connection is up.
    pub fn connected(&mut self, now: Instant) {
        match self.state {
            PeerState::WaitConnAck => {
                self.send_cer();
                self.set_timer(Timer::Handshake, Some(now + self.settings.connect_timeout));
                self.goto(now, PeerState::WaitICea);
            }
            PeerState::WaitConnAckElect => {
                self.send_cer();
                self.goto(now, PeerState::WaitReturns);
                self.elect(now);
            }
            _ => {
                // A late connection nobody waits for.
                self.disconnect(Conn::Initiator);
            }
        }
    }

    fn send_cer(&mut self) {
        let cer = messages::cer(
            &self.local,
            self.ids.next_hop_by_hop(),
            self.ids.next_end_to_end(),
        );
        self.send_buf(Conn::Initiator, &cer);
    }

    /// I-Rcv-Conn-Nack: dialling failed (refused, unreachable, or the connect timeout).
    pub fn connect_failed(&mut self, now: Instant) {
        self.has_initiator = false;
        match self.state {
            PeerState::WaitConnAck => self.goto(now, PeerState::Closed),
            PeerState::WaitConnAckElect => {
                // R-Snd-CEA: the responder connection wins by default.
                self.send_held_cea(now);
                self.goto(now, PeerState::ROpen);
            }
            _ => {}
        }
    }

    /// R-Conn-CER: an accepted connection's first message, a CER naming this peer.
    pub fn incoming_cer(&mut self, now: Instant, frame: Bytes) {
        let cer = match Message::decode(frame.clone(), &*self.dict, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                if let Some(a) = messages::decode_error_answer(&self.local, &frame, &e, &*self.dict)
                {
                    self.send_buf(Conn::Incoming, &a);
                }
                self.actions.push_back(Action::Close(Conn::Incoming));
                return;
            }
        };
        // An R-Conn-CER in any state other than these is refused (R-Reject).
        if !matches!(
            self.state,
            PeerState::Closed | PeerState::WaitConnAck | PeerState::WaitICea
        ) {
            debug!(peer = %self.settings.name, state = %self.state, "second connection refused");
            self.actions.push_back(Action::Close(Conn::Incoming));
            return;
        }
        // Process-CER: a CER that cannot be used is answered and the connection closed.
        let caps = match Capabilities::read(&cer) {
            Ok(c) => c,
            Err(e) => {
                let a = messages::cea(
                    &self.local,
                    cer.header(),
                    e.result_code(),
                    Some(&e.to_string()),
                );
                self.send_buf(Conn::Incoming, &a);
                self.actions.push_back(Action::Close(Conn::Incoming));
                return;
            }
        };
        if caps.common_applications(&self.local).is_empty() {
            warn!(peer = %self.settings.name, apps = ?caps.application_ids, "CER: no common application (5010)");
            let a = messages::cea(
                &self.local,
                cer.header(),
                ResultCode::NO_COMMON_APPLICATION,
                Some("no application in common"),
            );
            self.send_buf(Conn::Incoming, &a);
            self.actions.push_back(Action::Close(Conn::Incoming));
            return;
        }
        self.peer = Some(caps);
        self.actions.push_back(Action::AcceptIncoming);
        self.has_responder = true;
        self.held_cer = Some(cer);
        match self.state {
            PeerState::Closed => {
                self.send_held_cea(now);
                self.goto(now, PeerState::ROpen);
            }
            PeerState::WaitConnAck => {
                self.goto(now, PeerState::WaitConnAckElect);
            }
            PeerState::WaitICea => {
                self.goto(now, PeerState::WaitReturns);
                self.elect(now);
            }
            _ => {}
        }
    }

    fn send_held_cea(&mut self, now: Instant) {
        if let Some(cer) = self.held_cer.take() {
            let a = messages::cea(&self.local, cer.header(), ResultCode::SUCCESS, None);
            self.send_buf(Conn::Responder, &a);
            self.active = Some(Conn::Responder);
        }
        let _ = now;
    }

    /// RFC 6733 section 5.6.4: the local node wins when its Origin-Host succeeds the peer's,
    /// compared as octets with ASCII case folded. The winner closes the connection it dialled.
    fn elect(&mut self, now: Instant) {
        let Some(peer) = &self.peer else {
            return;
        };
        let ours = self.local.origin_host.to_ascii_lowercase();
        let theirs = peer.origin_host.to_ascii_lowercase();
        if ours.as_bytes() > theirs.as_bytes() {
            info!(peer = %self.settings.name, "election won: keeping the responder connection");
            self.disconnect(Conn::Initiator);
            self.send_held_cea(now);
            self.goto(now, PeerState::ROpen);
        } else {
            debug!(peer = %self.settings.name, "election lost: waiting for our CEA");
        }
    }

    /// Peer-Disc on `conn`.
    pub fn disconnected(&mut self, now: Instant, conn: Conn) {
        match conn {
            Conn::Initiator => self.has_initiator = false,
            Conn::Responder => self.has_responder = false,
            Conn::Incoming => return,
        }
        use PeerState::*;
        match (self.state, conn) {
            (WaitICea, Conn::Initiator) => self.goto(now, Closed),
            (WaitConnAck, Conn::Initiator) => self.goto(now, Closed),
            (WaitConnAckElect, Conn::Responder) => {
                self.held_cer = None;
                self.goto(now, WaitConnAck);
            }
            (WaitReturns, Conn::Initiator) => {
                self.send_held_cea(now);
                self.goto(now, ROpen);
            }
            (WaitReturns, Conn::Responder) => {
                self.held_cer = None;
                self.goto(now, WaitICea);
            }
            (IOpen, Conn::Initiator) | (ROpen, Conn::Responder) => {
                warn!(peer = %self.settings.name, "connection lost");
                self.goto(now, Closed);
            }
            (Closing, c) if Some(c) == self.active => {
                match self.agreed {
                    // Section 5.4: the DPA's sender waits for the DPR's sender to close.
                    Some((cause, DprFrom::Peer)) => {
                        self.log_agreed_disconnect(cause, DprFrom::Peer)
                    }
                    Some((cause, DprFrom::Us)) => {
                        info!(peer = %self.settings.name, cause = cause.name(), "disconnected: the peer closed before its DPA");
                    }
                    None => {}
                }
                self.goto(now, Closed);
            }
            _ => {}
        }
    }

    /// A frame received on `conn`.
    pub fn received(&mut self, now: Instant, conn: Conn, frame: Bytes) {
        let msg = match Message::decode(frame.clone(), &*self.dict, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                warn!(peer = %self.settings.name, error = %e, "undecodable message");
                if let Some(a) = messages::decode_error_answer(&self.local, &frame, &e, &*self.dict)
                {
                    self.send_buf(conn, &a);
                } else if matches!(self.state, PeerState::WaitICea) && conn == Conn::Initiator {
                    // I-Rcv-Non-CEA: Error.
                    self.disconnect(Conn::Initiator);
                    self.goto(now, PeerState::Closed);
                }
                return;
            }
        };
        let h = *msg.header();
        let request = h.flags.is_request();
        match (h.code, request) {
            (CommandCode::CAPABILITIES_EXCHANGE, false) => self.on_cea(now, conn, &msg),
            (CommandCode::CAPABILITIES_EXCHANGE, true) => {
                // A CER on a connection already past its exchange.
                let a = messages::error_answer(
                    &self.local,
                    &h,
                    None,
                    ResultCode::UNABLE_TO_COMPLY,
                    Some("capabilities already exchanged on this connection"),
                    None,
                );
                self.send_buf(conn, &a);
            }
            _ if Some(conn) != self.active => {
                if self.state == PeerState::WaitICea && conn == Conn::Initiator {
                    warn!(peer = %self.settings.name, code = h.code.0, "message before CEA");
                    self.disconnect(Conn::Initiator);
                    self.goto(now, PeerState::Closed);
                } else {
                    debug!(peer = %self.settings.name, code = h.code.0, "message on a connection not in use");
                }
            }
            (CommandCode::DEVICE_WATCHDOG, true) => {
                self.stats.dwr_received += 1;
                let a = messages::dwa(&self.local, &h);
                self.send_buf(conn, &a);
                let (out, _) = self.watchdog.on_message(now, false);
                self.apply_watchdog(now, out);
            }
            (CommandCode::DEVICE_WATCHDOG, false) => {
                self.stats.dwa_received += 1;
                let (out, _) = self.watchdog.on_message(now, true);
                self.apply_watchdog(now, out);
            }
            (CommandCode::DISCONNECT_PEER, true) => {
                let cause = messages::disconnect_cause(&msg);
                info!(peer = %self.settings.name, cause = cause.name(), "DPR received");
                self.stats.dpr_received += 1;
                self.stats.last_dpr_cause = Some(cause);
                let a = messages::dpa(&self.local, &h);
                self.send_buf(conn, &a);
                self.set_timer(Timer::Closing, Some(now + self.settings.disconnect_timeout));
                self.goto(now, PeerState::Closing);
                self.agreed = Some((cause, DprFrom::Peer));
                self.hold_for(now, cause);
            }
            (CommandCode::DISCONNECT_PEER, false) => {
                if self.state == PeerState::Closing {
                    self.stats.dpa_received += 1;
                    if let Some((cause, from)) = self.agreed {
                        self.log_agreed_disconnect(cause, from);
                    }
                    self.disconnect(conn);
                    self.goto(now, PeerState::Closed);
                }
            }
            _ => {
                if self.state.is_open() || self.state == PeerState::Closing {
                    let (out, thrown) = self.watchdog.on_message(now, false);
                    self.apply_watchdog(now, out);
                    // RFC 3539 3.4.1 throws away non-DWA messages in REOPEN: the node that
                    // reopened a connection does not trust it yet. On a connection the peer
                    // dialled, the peer made that judgement and sent a request anyway;
                    // throwing it away would only leave it waiting for its Tx. Requests on an
                    // accepted connection are therefore served; our own traffic still waits
                    // for the three DWAs.
                    let served = h.flags.is_request() && conn == Conn::Responder;
                    if thrown && !served {
                        debug!(peer = %self.settings.name, code = h.code.0, "REOPEN: message thrown away");
                    } else {
                        self.actions.push_back(Action::Deliver(msg));
                    }
                }
            }
        }
    }

    /// The planned end of a connection (section 5.4), said as such: no failover, no watchdog.
    fn log_agreed_disconnect(&self, cause: DisconnectCause, from: DprFrom) {
        info!(peer = %self.settings.name, cause = cause.name(), dpr = from.name(), "disconnected after DPR/DPA");
    }

    /// After a peer's DPR: a REBOOTING peer may be dialled again after the usual back-off; a
    /// BUSY or DO_NOT_WANT_TO_TALK_TO_YOU one only after the hold-off.
    fn hold_for(&mut self, now: Instant, cause: DisconnectCause) {
        if matches!(
            cause,
            DisconnectCause::Busy | DisconnectCause::DoNotWantToTalkToYou
        ) {
            self.hold_until(now + self.settings.dpr_hold_off);
        }
    }

    fn hold_until(&mut self, at: Instant) {
        self.held = Some(at);
    }

    fn on_cea(&mut self, now: Instant, conn: Conn, msg: &Message) {
        if conn != Conn::Initiator
            || !matches!(self.state, PeerState::WaitICea | PeerState::WaitReturns)
        {
            debug!(peer = %self.settings.name, "unexpected CEA ignored");
            return;
        }
        let caps = match Capabilities::read(msg) {
            Ok(c) => c,
            Err(e) => {
                warn!(peer = %self.settings.name, error = %e, "unreadable CEA");
                self.disconnect(Conn::Initiator);
                self.goto(now, PeerState::Closed);
                return;
            }
        };
        let result = caps.result_code.unwrap_or(ResultCode(0));
        if !result.is_success() {
            warn!(peer = %self.settings.name, result = %result, "CEA refused the connection");
            self.disconnect(Conn::Initiator);
            self.goto(now, PeerState::Closed);
            return;
        }
        if caps.common_applications(&self.local).is_empty() {
            warn!(peer = %self.settings.name, apps = ?caps.application_ids, "CEA: no common application");
            self.disconnect(Conn::Initiator);
            self.goto(now, PeerState::Closed);
            return;
        }
        info!(
            peer = %self.settings.name,
            origin_host = %caps.origin_host,
            product = %caps.product_name,
            "capabilities exchanged"
        );
        self.peer = Some(caps);
        if self.state == PeerState::WaitReturns {
            // I-Rcv-CEA in Wait-Returns: R-Disc.
            self.held_cer = None;
            self.disconnect(Conn::Responder);
        }
        self.active = Some(Conn::Initiator);
        self.goto(now, PeerState::IOpen);
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for t in TIMERS {
            if self.timer(t).is_some_and(|at| at <= now) {
                self.set_timer(t, None);
                self.on_timer(now, t);
            }
        }
        if self.watchdog.deadline().is_some_and(|at| at <= now) {
            let out = self.watchdog.on_timeout(now);
            self.apply_watchdog(now, out);
        }
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::Handshake => {
                if matches!(
                    self.state,
                    PeerState::WaitConnAck
                        | PeerState::WaitICea
                        | PeerState::WaitConnAckElect
                        | PeerState::WaitReturns
                ) {
                    warn!(peer = %self.settings.name, state = %self.state, "handshake timed out");
                    self.close_all();
                    self.goto(now, PeerState::Closed);
                }
            }
            Timer::Closing => {
                if self.state == PeerState::Closing {
                    match self.agreed {
                        Some((cause, DprFrom::Us)) => {
                            info!(peer = %self.settings.name, cause = cause.name(), "disconnected: no DPA within the disconnect timeout");
                        }
                        Some((cause, DprFrom::Peer)) => {
                            info!(peer = %self.settings.name, cause = cause.name(), "disconnected after DPR/DPA: the peer did not close, closed here");
                        }
                        None => debug!(peer = %self.settings.name, "closing timed out"),
                    }
                    self.close_all();
                    self.goto(now, PeerState::Closed);
                }
            }
            Timer::Reconnect => {
                if self.state == PeerState::Closed && !self.stopped {
                    if let Some(at) = self.held.filter(|at| *at > now) {
                        self.set_timer(Timer::Reconnect, Some(at));
                        return;
                    }
                    self.held = None;
                    self.dial(now);
                }
            }
        }
    }
}
