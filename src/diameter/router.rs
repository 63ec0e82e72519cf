//! Request routing (RFC 6733 sections 6.1, 2.7), pending requests and failover (RFC 3539).
//!
//! ```text
//! request(msg) --select peer--> pending[hop-by-hop] --PeerCommand::Send--> peer task
//!      ^                              |                                         |
//!      |   answer / E-bit answer      |   peer fails over or closes:            |
//!      +------------------------------+   same End-to-End, T flag, other peer --+
//! ```
//!
//! - Selection: Destination-Host when that peer is usable, else the peers serving
//!   Destination-Realm that advertised the application; the lowest priority value wins,
//!   weights share the load among equals. When no usable peer serves the realm, the request
//!   goes to a relay agent: a peer that advertised the Relay application (0xffffffff, RFC 6733
//!   sections 2.8.1 and 5.3) forwards requests for realms other than its own, so it is the
//!   route for every realm no direct peer serves (section 2.7: the default route), whatever
//!   realm it belongs to itself.
//! - A request sent again (failover, or refused by a peer that became unusable) goes to a
//!   peer chosen by the same rules for its own Destination-Host and Destination-Realm, never
//!   to a peer of another realm that is not a relay.
//! - Hop-by-Hop ids come from one node-wide counter, so a request keeps its id when it is sent
//!   again on another connection (it is still unique there), and answers are matched by id
//!   and by the peer they must come from.
//! - A request is sent again at most once, with the T flag and the same End-to-End id,
//!   when its peer fails over (watchdog SUSPECT) or its connection is lost. If no other peer
//!   can take it, it waits while its connection still exists, and fails as
//!   [`RouteError::PeerLost`] (outcome unknown) when the connection goes.
//! - Requests this node receives and cannot serve are answered (3001, 3007, or the
//!   dictionary's finding), never dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use thiserror::Error;
use tokio::sync::{Notify, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{
    ApplicationId, AvpBuf, AvpCode, CommandFlags, DecodeError, EncodeError, Limits, Message,
    MessageBuf, ResultCode, VendorId, header,
};
use super::dict::Dictionary;
use super::ids::Ids;
use super::peer::{Capabilities, DisconnectCause, LocalIdentity, PeerState, PeerStats, messages};
use super::transport::{PeerCommand, PeerEvents, PeerHandle};

/// Why a request got no application answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No usable peer serves the destination: nothing was sent.
    #[error("no usable peer for realm {realm:?} and application {application}")]
    NoPeer {
        realm: Option<String>,
        application: u32,
    },
    /// The answer did not come within the request timeout: the outcome is unknown.
    #[error("no answer within {0:?}: outcome unknown")]
    Timeout(Duration),
    /// The connection carrying the request was lost and no other peer could take it: the
    /// outcome is unknown.
    #[error(
        "peer connection lost with the request in flight (sent {attempts} time(s)): outcome unknown"
    )]
    PeerLost { attempts: u8 },
    /// A protocol-error answer (E bit, 3xxx): reported apart from application results.
    /// `peer` is the index of the peer that sent it (to retry elsewhere).
    #[error("protocol error answer {result}")]
    ProtocolError {
        result: ResultCode,
        answer: Message,
        peer: usize,
    },
    /// The node is shutting down and takes no new requests.
    #[error("shutting down")]
    ShuttingDown,
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
}

impl RouteError {
    /// True when the request may have been processed by the server (no answer was received
    /// after it was sent): a charging layer must neither report success nor failure.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::PeerLost { .. })
    }
}

/// Serves requests that peers send to this node.
pub trait RequestHandler: Send + Sync + 'static {
    /// Whether this handler serves `application` (others get 3007).
    fn serves(&self, application: ApplicationId) -> bool;
    /// Answers a request that passed the dictionary checks.
    fn handle(&self, request: Message) -> Pin<Box<dyn Future<Output = MessageBuf> + Send>>;
}

/// A node that serves no application: every request gets 3007 or 3001.
#[derive(Debug, Default)]
pub struct NoApplications;

impl RequestHandler for NoApplications {
    fn serves(&self, _: ApplicationId) -> bool {
        false
    }
    fn handle(&self, _: Message) -> Pin<Box<dyn Future<Output = MessageBuf> + Send>> {
        Box::pin(async { MessageBuf::new(Default::default()) })
    }
}

/// Static description of a peer in the peer table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub name: String,
    /// Expected Origin-Host; also what Destination-Host is matched against.
    pub host: String,
    /// The realm this peer serves (realm-based routing).
    pub realm: String,
    /// Lower is preferred.
    pub priority: u32,
    /// Share of traffic among peers of equal priority.
    pub weight: u32,
}

/// A peer table entry: the spec plus what is known at run time.
#[derive(Debug)]
pub struct PeerEntry {
    pub spec: PeerSpec,
    handle: PeerHandle,
    usable: AtomicBool,
    state: AtomicU8,
    applications: RwLock<Vec<u32>>,
    capabilities: RwLock<Option<Capabilities>>,
    stats: Mutex<PeerStats>,
    pub sent: AtomicU64,
    pub answered: AtomicU64,
}

impl PeerEntry {
    pub fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    pub fn state(&self) -> PeerState {
        state_from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn handle(&self) -> &PeerHandle {
        &self.handle
    }

    /// What the peer said in its last CER or CEA (None before the first exchange).
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.capabilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The peer's base-protocol counters (DWR/DWA, DPR/DPA), as last reported by its task.
    pub fn stats(&self) -> PeerStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serves(&self, app: ApplicationId) -> bool {
        if app == ApplicationId::COMMON {
            return true;
        }
        let apps = self.applications.read().unwrap_or_else(|e| e.into_inner());
        apps.contains(&app.0) || apps.contains(&ApplicationId::RELAY.0)
    }

    /// Whether the peer advertised the Relay application: a relay agent, which forwards
    /// requests for any realm.
    pub fn is_relay(&self) -> bool {
        self.applications
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ApplicationId::RELAY.0)
    }
}

fn state_to_u8(s: PeerState) -> u8 {
    match s {
        PeerState::Closed => 0,
        PeerState::WaitConnAck => 1,
        PeerState::WaitICea => 2,
        PeerState::WaitConnAckElect => 3,
        PeerState::WaitReturns => 4,
        PeerState::ROpen => 5,
        PeerState::IOpen => 6,
        PeerState::Closing => 7,
    }
}

fn state_from_u8(v: u8) -> PeerState {
    match v {
        1 => PeerState::WaitConnAck,
        2 => PeerState::WaitICea,
        3 => PeerState::WaitConnAckElect,
        4 => PeerState::WaitReturns,
        5 => PeerState::ROpen,
        6 => PeerState::IOpen,
        7 => PeerState::Closing,
        _ => PeerState::Closed,
    }
}

struct Pending {
    peer: usize,
    frame: Bytes,
    attempts: u8,
    /// Destination-Host and Destination-Realm, to route it again to the same destination.
    destination: Arc<Destination>,
    tx: oneshot::Sender<Result<Message, RouteError>>,
}

/// Where a request is going (its Destination-Host and Destination-Realm AVPs).
#[derive(Debug, Default)]
struct Destination {
    host: Option<String>,
    realm: Option<String>,
}

/// How to send one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Use this End-to-End id (a retransmission keeps its original one); else a new one.
    pub end_to_end: Option<u32>,
    /// Set the T flag: the request may have been received before (RFC 6733 section 3).
    pub retransmit: bool,
    /// Do not send it to this peer (retry elsewhere after a protocol error).
    pub exclude: Option<usize>,
}

/// The router's tunables.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// Tx: longest wait for an answer (RFC 8506 section 13 recommends 10 s).
    pub request_timeout: Duration,
    /// Longest wait, on shutdown, for in-flight requests to be answered before DPR.
    pub drain_timeout: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The peer table and the pending-request map, shared by every task.
pub struct Router {
    local: Arc<LocalIdentity>,
    ids: Arc<Ids>,
    dict: Arc<Dictionary>,
    limits: Limits,
    settings: RouterSettings,
    peers: RwLock<Vec<Arc<PeerEntry>>>,
    pending: DashMap<u32, Pending>,
    handler: Arc<dyn RequestHandler>,
    accepting: AtomicBool,
    drained: Notify,
    rng: Mutex<fastrand::Rng>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("origin_host", &self.local.origin_host)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Router {
    pub fn new(
        local: Arc<LocalIdentity>,
        ids: Arc<Ids>,
        dict: Arc<Dictionary>,
        limits: Limits,
        settings: RouterSettings,
        handler: Arc<dyn RequestHandler>,
    ) -> Arc<Self> {
        Arc::new(Self {
            local,
            ids,
            dict,
            limits,
            settings,
            peers: RwLock::new(Vec::new()),
            pending: DashMap::new(),
            handler,
            accepting: AtomicBool::new(true),
            drained: Notify::new(),
            rng: Mutex::new(fastrand::Rng::new()),
        })
    }

    pub fn local(&self) -> &Arc<LocalIdentity> {
        &self.local
    }

    pub fn ids(&self) -> &Arc<Ids> {
        &self.ids
    }

    pub fn dictionary(&self) -> &Arc<Dictionary> {
        &self.dict
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }

    /// Adds a peer to the table. `spawn` gets the peer's index (what [`PeerEvents`] calls
    /// carry) and returns the handle of the task it started. When `unique_host` is set and a
    /// peer with that host exists, nothing is added and its index is returned.
    pub fn add_peer_with(
        &self,
        spec: PeerSpec,
        unique_host: bool,
        spawn: impl FnOnce(usize) -> PeerHandle,
    ) -> usize {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if unique_host
            && let Some(i) = peers
                .iter()
                .position(|p| p.spec.host.eq_ignore_ascii_case(&spec.host))
        {
            return i;
        }
        let index = peers.len();
        let handle = spawn(index);
        peers.push(Arc::new(PeerEntry {
            spec,
            handle,
            usable: AtomicBool::new(false),
            state: AtomicU8::new(0),
            applications: RwLock::new(Vec::new()),
            capabilities: RwLock::new(None),
            stats: Mutex::new(PeerStats::default()),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }));
        index
    }

    pub fn peers(&self) -> Vec<Arc<PeerEntry>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn peer(&self, index: usize) -> Option<Arc<PeerEntry>> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .cloned()
    }

    /// The index of the configured peer whose Origin-Host is `host` (case-insensitive).
    pub fn peer_by_host(&self, host: &str) -> Option<usize> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .position(|p| p.spec.host.eq_ignore_ascii_case(host))
    }

    /// Whether at least one peer is usable (readiness).
    pub fn any_usable(&self) -> bool {
        self.peers().iter().any(|p| p.is_usable())
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Records the applications a peer advertised in its CER or CEA.
    pub fn set_capabilities(&self, index: usize, caps: &Capabilities) {
        if let Some(p) = self.peer(index) {
            let mut apps = p.applications.write().unwrap_or_else(|e| e.into_inner());
            *apps = caps.application_ids.clone();
            drop(apps);
            *p.capabilities.write().unwrap_or_else(|e| e.into_inner()) = Some(caps.clone());
        }
    }

    /// Chooses a usable peer: Destination-Host first, else realm, priority, weight.
    fn select(
        &self,
        host: Option<&str>,
        realm: Option<&str>,
        app: ApplicationId,
        exclude: Option<usize>,
    ) -> Option<usize> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let ok = |i: usize, p: &PeerEntry| Some(i) != exclude && p.is_usable() && p.serves(app);
        if let Some(h) = host
            && let Some(i) = peers
                .iter()
                .enumerate()
                .position(|(i, p)| ok(i, p) && p.spec.host.eq_ignore_ascii_case(h))
        {
            return Some(i);
        }
        let usable = || peers.iter().enumerate().filter(|(i, p)| ok(*i, p));
        let mut candidates: Vec<(usize, &Arc<PeerEntry>)> = usable()
            .filter(|(_, p)| realm.is_none_or(|r| p.spec.realm.eq_ignore_ascii_case(r)))
            .collect();
        if candidates.is_empty() && realm.is_some() {
            // No usable peer serves the realm: relay agents are the route to it.
            candidates = usable().filter(|(_, p)| p.is_relay()).collect();
        }
        let best = candidates.iter().map(|(_, p)| p.spec.priority).min()?;
        let tier: Vec<_> = candidates
            .into_iter()
            .filter(|(_, p)| p.spec.priority == best)
            .collect();
        let total: u64 = tier
            .iter()
            .map(|(_, p)| u64::from(p.spec.weight.max(1)))
            .sum();
        let mut pick = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .u64(0..total.max(1));
        for (i, p) in &tier {
            let w = u64::from(p.spec.weight.max(1));
            if pick < w {
                return Some(*i);
            }
            pick -= w;
        }
        tier.first().map(|(i, _)| *i)
    }

    /// Sends `msg` (a request; its Hop-by-Hop and End-to-End ids are set here) and waits for
    /// the answer. E-bit answers come back as [`RouteError::ProtocolError`].
    pub async fn request(&self, msg: MessageBuf) -> Result<Message, RouteError> {
        self.request_with(msg, RequestOptions::default()).await
    }

    /// [`Router::request`] with options: a given End-to-End id, the T flag, a peer to avoid.
    pub async fn request_with(
        &self,
        mut msg: MessageBuf,
        opts: RequestOptions,
    ) -> Result<Message, RouteError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(RouteError::ShuttingDown);
        }
        let hop = self.ids.next_hop_by_hop();
        let e2e = opts
            .end_to_end
            .unwrap_or_else(|| self.ids.next_end_to_end());
        msg.header.hop_by_hop = hop;
        msg.header.end_to_end = e2e;
        msg.header.flags = msg
            .header
            .flags
            .with(CommandFlags::RETRANSMIT, opts.retransmit);
        let destination = Arc::new(Destination {
            host: avp_text(&msg, AvpCode::DESTINATION_HOST),
            realm: avp_text(&msg, AvpCode::DESTINATION_REALM),
        });
        let app = msg.header.application_id;
        let session_id = avp_text(&msg, AvpCode::SESSION_ID).unwrap_or_default();
        let frame = msg.to_bytes()?;
        let span =
            info_span!("request", hop_by_hop = hop, end_to_end = e2e, session_id = %session_id);
        async move {
            let Some(peer) = self.select(
                destination.host.as_deref(),
                destination.realm.as_deref(),
                app,
                opts.exclude,
            ) else {
                return Err(RouteError::NoPeer {
                    realm: destination.realm.clone(),
                    application: app.0,
                });
            };
            let (tx, rx) = oneshot::channel();
            self.pending.insert(
                hop,
                Pending {
                    peer,
                    frame: frame.clone(),
                    attempts: 1,
                    destination,
                    tx,
                },
            );
            self.dispatch(hop, peer, frame);
            let timeout = self.settings.request_timeout;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(RouteError::PeerLost { attempts: 1 }),
                Err(_) => {
                    if self.pending.remove(&hop).is_some() {
                        self.notify_if_drained();
                    }
                    warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
                    Err(RouteError::Timeout(timeout))
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Hands the frame to the peer task; if the task is gone, treats it like a refusal.
    fn dispatch(&self, hop: u32, peer: usize, frame: Bytes) {
        let Some(entry) = self.peer(peer) else {
            return;
        };
        entry.sent.fetch_add(1, Ordering::Relaxed);
        debug!(peer = %entry.spec.name, hop_by_hop = hop, "sending");
        if let Err(PeerCommand::Send(frame)) = entry.handle.try_send(PeerCommand::Send(frame)) {
            self.reroute_unsent(peer, frame);
        }
    }

    /// A request that never left: another peer may take it as a first transmission.
    fn reroute_unsent(&self, from: usize, frame: Bytes) {
        let Some(raw) = header::Header::peek(&frame) else {
            return;
        };
        let hop = raw.header.hop_by_hop;
        let Some((_, pending)) = self.pending.remove(&hop) else {
            return;
        };
        let d = pending.destination.clone();
        let target = self.select(
            d.host.as_deref(),
            d.realm.as_deref(),
            raw.header.application_id,
            Some(from),
        );
        match target {
            Some(peer) => {
                self.pending.insert(hop, Pending { peer, ..pending });
                self.dispatch(hop, peer, frame);
            }
            None => {
                let _ = pending.tx.send(Err(RouteError::NoPeer {
                    realm: d.realm.clone(),
                    application: raw.header.application_id.0,
                }));
                self.notify_if_drained();
            }
        }
    }

    /// Moves the requests pending on `peer` to other peers, once each, with the T flag.
    /// With `connection_gone`, those that cannot move fail; otherwise they stay.
    fn fail_over(&self, peer: usize, connection_gone: bool) {
        let hops: Vec<u32> = self
            .pending
            .iter()
            .filter(|e| e.value().peer == peer)
            .map(|e| *e.key())
            .collect();
        if hops.is_empty() {
            return;
        }
        info!(
            peer,
            requests = hops.len(),
            connection_gone,
            "failover of pending requests"
        );
        for hop in hops {
            let Some((_, p)) = self.pending.remove(&hop) else {
                continue;
            };
            let app = header::Header::peek(&p.frame)
                .map(|h| h.header.application_id)
                .unwrap_or_default();
            let target = if p.attempts < 2 {
                let d = &p.destination;
                self.select(d.host.as_deref(), d.realm.as_deref(), app, Some(peer))
            } else {
                None
            };
            match target {
                Some(to) => {
                    let mut frame = p.frame.to_vec();
                    header::set_retransmit(&mut frame, true);
                    let frame = Bytes::from(frame);
                    debug!(hop_by_hop = hop, from = peer, to, "re-sent with the T flag");
                    self.pending.insert(
                        hop,
                        Pending {
                            peer: to,
                            frame: frame.clone(),
                            attempts: p.attempts + 1,
                            destination: p.destination,
                            tx: p.tx,
                        },
                    );
                    self.dispatch(hop, to, frame);
                }
                None if connection_gone => {
                    let _ = p.tx.send(Err(RouteError::PeerLost {
                        attempts: p.attempts,
                    }));
                }
                None => {
                    // Still connected (SUSPECT): the answer may yet come.
                    self.pending.insert(hop, p);
                }
            }
        }
        self.notify_if_drained();
    }

    fn on_answer(&self, peer: usize, msg: Message) {
        let hop = msg.header().hop_by_hop;
        let Some((_, p)) = self.pending.remove_if(&hop, |_, p| p.peer == peer) else {
            debug!(
                peer,
                hop_by_hop = hop,
                "answer with an unknown Hop-by-Hop id discarded"
            );
            return;
        };
        if let Some(e) = self.peer(peer) {
            e.answered.fetch_add(1, Ordering::Relaxed);
        }
        let result = if msg.header().flags.is_error() {
            let result = msg.result_code().unwrap_or(ResultCode::UNABLE_TO_COMPLY);
            Err(RouteError::ProtocolError {
                result,
                answer: msg,
                peer,
            })
        } else {
            Ok(msg)
        };
        let _ = p.tx.send(result);
        self.notify_if_drained();
    }

    fn on_request(self: &Arc<Self>, peer: usize, msg: Message) {
        let router = Arc::clone(self);
        let span = info_span!(
            "incoming",
            peer,
            hop_by_hop = msg.header().hop_by_hop,
            end_to_end = msg.header().end_to_end,
            session_id = %msg.session_id().unwrap_or_default()
        );
        tokio::spawn(
            async move {
                let answer = router.answer(msg).await;
                match answer.to_bytes() {
                    Ok(frame) => {
                        if let Some(entry) = router.peer(peer) {
                            let _ = entry.handle.try_send(PeerCommand::Answer(frame));
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot encode answer"),
                }
            }
            .instrument(span),
        );
    }

    /// The answer to an incoming request: the handler's, or an error answer, with the
    /// request's Proxy-Info AVPs (RFC 6733 section 6.2: "Any Proxy-Info AVPs in the request
    /// MUST be added to the answer message, in the same order they were present in the
    /// request"; a proxy between the gateway and the OCS relies on them to route answers
    /// back or to restore its state).
    async fn answer(&self, msg: Message) -> MessageBuf {
        let proxy_info: Vec<AvpBuf> = msg
            .avps_with(AvpCode::PROXY_INFO, VendorId::IETF)
            .filter_map(|a| a.to_buf(msg.frame(), &*self.dict).ok())
            .collect();
        let mut answer = self.answer_without_proxy_info(msg).await;
        let has_own = answer
            .avps
            .iter()
            .any(|a| a.code == AvpCode::PROXY_INFO && a.vendor_id.is_none());
        if !has_own {
            answer.avps.extend(proxy_info);
        }
        answer
    }

    async fn answer_without_proxy_info(&self, msg: Message) -> MessageBuf {
        let h = *msg.header();
        let error = |rc: ResultCode, text: &str, failed| {
            messages::error_answer(&self.local, &h, msg.session_id(), rc, Some(text), failed)
        };
        if !self.handler.serves(h.application_id) {
            return error(
                ResultCode::APPLICATION_UNSUPPORTED,
                "application not supported by this node",
                None,
            );
        }
        if let Err(e) = self.dict.check(&msg, &self.limits) {
            let failed = e.failed_avp(msg.frame(), 4);
            return match e {
                DecodeError::CommandUnsupported { .. } => error(
                    ResultCode::COMMAND_UNSUPPORTED,
                    "command not supported",
                    None,
                ),
                e => error(e.result_code(), &e.to_string(), failed),
            };
        }
        self.handler.handle(msg).await
    }

    fn notify_if_drained(&self) {
        if self.pending.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Drops every peer connection without DPR (fault injection for tests and simulators).
    pub fn abort_connections(&self) {
        for p in self.peers() {
            let _ = p.handle.try_send(PeerCommand::Abort);
        }
    }

    /// Graceful shutdown: no new requests; in-flight ones get until the drain timeout; then
    /// every peer is sent a DPR with REBOOTING and closed.
    pub async fn shutdown(&self) {
        self.accepting.store(false, Ordering::Release);
        let drain = async {
            while !self.pending.is_empty() {
                let notified = self.drained.notified();
                if self.pending.is_empty() {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(self.settings.drain_timeout, drain)
            .await
            .is_err()
        {
            warn!(
                pending = self.pending.len(),
                "drain timeout: disconnecting with requests in flight"
            );
        }
        let mut waits = Vec::new();
        for p in self.peers() {
            let (tx, rx) = oneshot::channel();
            if p.handle
                .send(PeerCommand::Stop(DisconnectCause::Rebooting, tx))
                .await
                .is_ok()
            {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
    }
}

fn avp_text(msg: &MessageBuf, code: AvpCode) -> Option<String> {
    msg.avp(code, VendorId::IETF).and_then(|a| match &a.value {
        super::codec::AvpValue::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    })
}

impl Router {
    fn on_usable(&self, peer: usize, usable: bool) {
        if let Some(p) = self.peer(peer) {
            p.usable.store(usable, Ordering::Release);
            info!(peer = %p.spec.name, usable, "peer routing state");
        }
        if !usable {
            self.fail_over(peer, false);
        }
    }

    fn on_state(&self, peer: usize, state: PeerState) {
        if let Some(p) = self.peer(peer) {
            p.state.store(state_to_u8(state), Ordering::Release);
        }
        if state == PeerState::Closed {
            self.fail_over(peer, true);
        }
    }
}

/// The [`PeerEvents`] the node gives peer tasks.
pub struct RouterEvents(pub Arc<Router>);

impl PeerEvents for RouterEvents {
    fn deliver(&self, peer: usize, message: Message) {
        if message.is_request() {
            self.0.on_request(peer, message);
        } else {
            self.0.on_answer(peer, message);
        }
    }
    fn opened(&self, peer: usize, caps: &Capabilities) {
        self.0.set_capabilities(peer, caps);
    }
    fn usable(&self, peer: usize, usable: bool) {
        self.0.on_usable(peer, usable);
    }
    fn refused(&self, peer: usize, frame: Bytes) {
        self.0.reroute_unsent(peer, frame);
    }
    fn state(&self, peer: usize, state: PeerState) {
        self.0.on_state(peer, state);
    }
    fn stats(&self, peer: usize, stats: &PeerStats) {
        if let Some(p) = self.0.peer(peer) {
            *p.stats.lock().unwrap_or_else(|e| e.into_inner()) = *stats;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::{CommandCode, Header};
    use tokio::sync::mpsc;

    const CC: ApplicationId = ApplicationId::CREDIT_CONTROL;

    fn local() -> LocalIdentity {
        LocalIdentity {
            origin_host: "gw.operator.test".into(),
            origin_realm: "operator.test".into(),
            host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            vendor_id: 0,
            product_name: "test".into(),
            firmware_revision: 1,
            origin_state_id: 1,
            auth_application_ids: vec![4],
            acct_application_ids: vec![],
            vendor_specific_auth_apps: vec![],
            supported_vendor_ids: vec![],
        }
    }

    fn dict() -> Arc<Dictionary> {
        static D: std::sync::OnceLock<Arc<Dictionary>> = std::sync::OnceLock::new();
        D.get_or_init(|| Arc::new(Dictionary::builtin().unwrap()))
            .clone()
    }

    /// Serves credit control with a bare 2001 answer.
    struct Success;

    impl RequestHandler for Success {
        fn serves(&self, app: ApplicationId) -> bool {
            app == CC
        }
        fn handle(&self, request: Message) -> Pin<Box<dyn Future<Output = MessageBuf> + Send>> {
            let mut a = MessageBuf::new(request.header().answer());
            a.push(AvpBuf::utf8(
                AvpCode::SESSION_ID,
                request.session_id().unwrap_or_default(),
            ));
            a.push(AvpBuf::unsigned32(
                AvpCode::RESULT_CODE,
                ResultCode::SUCCESS.0,
            ));
            Box::pin(async move { a })
        }
    }

    /// (host, realm, priority, advertised applications) per peer; all usable.
    fn router(peers: &[(&str, &str, u32, u32)]) -> (Arc<Router>, Vec<mpsc::Receiver<PeerCommand>>) {
        let r = Router::new(
            Arc::new(local()),
            Arc::new(Ids::new(0, 1)),
            dict(),
            Limits::default(),
            RouterSettings::default(),
            Arc::new(Success),
        );
        let mut rxs = Vec::new();
        for (host, realm, priority, app) in peers {
            let (handle, rx) = PeerHandle::detached(16);
            rxs.push(rx);
            let i = r.add_peer_with(
                PeerSpec {
                    name: (*host).into(),
                    host: (*host).into(),
                    realm: (*realm).into(),
                    priority: *priority,
                    weight: 1,
                },
                false,
                |_| handle,
            );
            r.set_capabilities(
                i,
                &Capabilities {
                    origin_host: (*host).into(),
                    origin_realm: (*realm).into(),
                    host_ip_addresses: vec![],
                    vendor_id: 0,
                    product_name: "peer".into(),
                    origin_state_id: None,
                    firmware_revision: None,
                    application_ids: vec![*app],
                    supported_vendor_ids: vec![],
                    result_code: Some(ResultCode::SUCCESS),
                },
            );
            r.on_usable(i, true);
        }
        (r, rxs)
    }

    const RELAY: u32 = ApplicationId::RELAY.0;

    #[test]
    fn a_realm_no_direct_peer_serves_is_routed_to_a_relay_agent() {
        let (r, _rx) = router(&[
            ("ocs1.a.test", "a.test", 1, 4),
            ("dra.relay.test", "relay.test", 1, RELAY),
            ("ocs2.b.test", "b.test", 1, 4),
        ]);
        assert!(r.peers()[1].is_relay() && !r.peers()[0].is_relay());
        // Direct peers of the realm first, even with a relay around.
        assert_eq!(r.select(None, Some("a.test"), CC, None), Some(0));
        assert_eq!(r.select(None, Some("b.test"), CC, None), Some(2));
        // A realm only the relay can reach, with or without a Destination-Host behind it.
        assert_eq!(r.select(None, Some("c.test"), CC, None), Some(1));
        assert_eq!(
            r.select(Some("ocs9.c.test"), Some("c.test"), CC, None),
            Some(1)
        );
        // The direct peer of a.test down: the relay is the alternate route, never the OCS of
        // another realm.
        r.on_usable(0, false);
        assert_eq!(r.select(None, Some("a.test"), CC, None), Some(1));
        r.on_usable(1, false);
        assert_eq!(r.select(None, Some("a.test"), CC, None), None);
        assert_eq!(r.select(None, Some("c.test"), CC, None), None);
    }

    fn ccr(realm: &str) -> MessageBuf {
        MessageBuf::new(Header::request(CommandCode::CREDIT_CONTROL, CC, true))
            .with(AvpBuf::utf8(AvpCode::SESSION_ID, "gw.operator.test;1;1"))
            .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.operator.test"))
            .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "operator.test"))
            .with(AvpBuf::utf8(AvpCode::DESTINATION_REALM, realm))
            .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
            .with(AvpBuf::utf8(AvpCode::SERVICE_CONTEXT_ID, "32251@3gpp.org"))
            .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 4))
            .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 0))
    }

    fn sent(rx: &mut mpsc::Receiver<PeerCommand>) -> Option<Bytes> {
        match rx.try_recv() {
            Ok(PeerCommand::Send(frame)) => Some(frame),
            _ => None,
        }
    }

    #[tokio::test]
    async fn failover_keeps_the_destination_realm() {
        // ocs2 serves another realm with a better priority than ocs3 of the request's realm:
        // the re-sent request must still go to ocs3.
        let (r, mut rx) = router(&[
            ("ocs1.a.test", "a.test", 1, 4),
            ("ocs2.b.test", "b.test", 1, 4),
            ("ocs3.a.test", "a.test", 2, 4),
        ]);
        let task = tokio::spawn({
            let r = r.clone();
            async move { r.request(ccr("a.test")).await }
        });
        let first = loop {
            if let Some(f) = sent(&mut rx[0]) {
                break f;
            }
            tokio::task::yield_now().await;
        };
        r.on_usable(0, false);
        let again = sent(&mut rx[2]).expect("re-sent to the other peer of a.test");
        assert!(sent(&mut rx[1]).is_none(), "never to the peer of b.test");
        let (h1, h2) = (Header::peek(&first).unwrap(), Header::peek(&again).unwrap());
        assert!(!h1.header.flags.is_retransmit() && h2.header.flags.is_retransmit());
        assert_eq!(h1.header.end_to_end, h2.header.end_to_end);
        let answer = MessageBuf::new(h2.header.answer())
            .with(AvpBuf::utf8(AvpCode::SESSION_ID, "gw.operator.test;1;1"))
            .with(AvpBuf::unsigned32(AvpCode::RESULT_CODE, 2001));
        let answer =
            Message::decode(answer.to_bytes().unwrap(), &*dict(), &Limits::default()).unwrap();
        r.on_answer(2, answer);
        let got = task.await.unwrap().unwrap();
        assert_eq!(got.result_code(), Some(ResultCode::SUCCESS));
    }

    fn proxy_info(host: &str, state: &'static [u8]) -> AvpBuf {
        AvpBuf::grouped(
            AvpCode::PROXY_INFO,
            vec![
                AvpBuf::utf8(AvpCode::PROXY_HOST, host),
                AvpBuf::octets(AvpCode::PROXY_STATE, Bytes::from_static(state)),
            ],
        )
    }

    /// The Proxy-Host values of an answer's Proxy-Info AVPs, in order.
    fn proxy_hosts(answer: &MessageBuf) -> Vec<String> {
        let bytes = answer.to_bytes().unwrap();
        let m = Message::decode(bytes, &*dict(), &Limits::default()).unwrap();
        m.avps_with(AvpCode::PROXY_INFO, VendorId::IETF)
            .map(|p| {
                let host = p
                    .group()
                    .filter_map(Result::ok)
                    .find(|a| a.code() == AvpCode::PROXY_HOST)
                    .unwrap();
                host.identity().unwrap().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_carry_the_requests_proxy_info_in_order() {
        let (r, _rx) = router(&[]);
        let decode = |m: MessageBuf| {
            Message::decode(m.to_bytes().unwrap(), &*dict(), &Limits::default()).unwrap()
        };
        let with_proxies = |mut m: MessageBuf| {
            m.push(proxy_info("dra1.relay.test", b"s1"));
            m.push(proxy_info("dra2.relay.test", b"s2"));
            m
        };
        // The handler's answer.
        let a = r.answer(decode(with_proxies(ccr("operator.test")))).await;
        let rc = a
            .avp(AvpCode::RESULT_CODE, VendorId::IETF)
            .map(|r| &r.value);
        assert_eq!(
            rc,
            Some(&crate::diameter::codec::AvpValue::Unsigned32(2001))
        );
        assert_eq!(proxy_hosts(&a), ["dra1.relay.test", "dra2.relay.test"]);
        // An error answer of the router itself (application not served: 3007).
        let mut other = with_proxies(ccr("operator.test"));
        other.header.application_id = ApplicationId(16_777_238);
        let a = r.answer(decode(other)).await;
        assert!(a.header.flags.is_error());
        assert_eq!(proxy_hosts(&a), ["dra1.relay.test", "dra2.relay.test"]);
        // Without Proxy-Info in the request, none in the answer.
        let a = r.answer(decode(ccr("operator.test"))).await;
        assert!(proxy_hosts(&a).is_empty());
    }
}
