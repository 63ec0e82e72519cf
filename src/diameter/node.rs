//! A Diameter node: the local identity, the peer table with one task per peer, the router, and
//! (optionally) a listener for peers that dial in (RFC 6733 section 5.6.1).
//!
//! ```text
//! listener: accept -> read the first frame (must be a CER, within a timeout)
//!            -> Origin-Host of a configured peer?  hand the connection to that peer's task
//!            -> unknown and allowed?               a responder peer entry is created for it
//!            -> unknown and refused?               CEA 3010 DIAMETER_UNKNOWN_PEER, close
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use super::codec::header;
use super::codec::{CommandCode, Limits, Message, ResultCode};
use super::dict::Dictionary;
use super::ids::Ids;
use super::peer::{Capabilities, LocalIdentity, PeerFsm, PeerSettings, messages};
use super::router::{PeerSpec, RequestHandler, Router, RouterEvents, RouterSettings};
use super::transport::{BoxIo, Connector, PeerCommand, PeerEvents, TcpConnector, spawn_peer};

/// One configured peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub spec: PeerSpec,
    /// `host:port` to dial; `None` for a peer that dials in.
    pub connect: Option<String>,
}

/// Everything a node needs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub local: LocalIdentity,
    /// Where to accept peer connections, if anywhere.
    pub listen: Option<SocketAddr>,
    /// Answer CERs from hosts not in `peers` with success (else 3010 and close).
    pub accept_unknown_peers: bool,
    pub peers: Vec<PeerConfig>,
    /// Timers and policy for every peer (`name` and `initiator` are set per peer).
    pub peer_settings: PeerSettings,
    pub router: RouterSettings,
    pub limits: Limits,
    /// Longest wait for the CER on an accepted connection.
    pub cer_timeout: Duration,
}

/// A running node.
pub struct Node {
    router: Arc<Router>,
    events: Arc<RouterEvents>,
    local_addr: Option<SocketAddr>,
    listener: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

struct Shared {
    router: Arc<Router>,
    events: Arc<RouterEvents>,
    settings: PeerSettings,
    accept_unknown: bool,
    cer_timeout: Duration,
    /// The span the node was started in (the simulator's `ocs_sim`): its listener and the peers
    /// it creates run in it, so that their lines say whose they are.
    span: Span,
}

impl Node {
    /// Binds the listener (if any), spawns a task per configured peer (dialling ones start at
    /// once) and returns. Every task of the node runs in the caller's current span.
    pub async fn start(
        cfg: NodeConfig,
        dict: Arc<Dictionary>,
        handler: Arc<dyn RequestHandler>,
    ) -> io::Result<Self> {
        let local = Arc::new(cfg.local);
        let ids = Arc::new(Ids::from_clock());
        let router = Router::new(
            local.clone(),
            ids.clone(),
            dict.clone(),
            cfg.limits,
            cfg.router.clone(),
            handler,
        );
        let events = Arc::new(RouterEvents(router.clone()));
        for p in &cfg.peers {
            let settings = PeerSettings {
                name: p.spec.name.clone(),
                initiator: p.connect.is_some(),
                seed: fastrand::u64(..),
                ..cfg.peer_settings.clone()
            };
            let connector = p.connect.as_ref().map(|address| {
                Arc::new(TcpConnector {
                    address: address.clone(),
                    timeout: cfg.peer_settings.connect_timeout,
                }) as Arc<dyn Connector>
            });
            let fsm = PeerFsm::new(
                local.clone(),
                settings,
                dict.clone(),
                cfg.limits,
                ids.clone(),
            );
            let events = events.clone() as Arc<dyn PeerEvents>;
            router.add_peer_with(p.spec.clone(), false, |index| {
                spawn_peer(index, fsm, connector, events, cfg.limits.max_message_len)
            });
        }
        let mut local_addr = None;
        let mut listener_task = None;
        if let Some(addr) = cfg.listen {
            let listener = TcpListener::bind(addr).await?;
            local_addr = Some(listener.local_addr()?);
            info!(address = %local_addr.map(|a| a.to_string()).unwrap_or_default(), "listening for Diameter peers");
            let shared = Arc::new(Shared {
                router: router.clone(),
                events: events.clone(),
                settings: cfg.peer_settings.clone(),
                accept_unknown: cfg.accept_unknown_peers,
                cer_timeout: cfg.cer_timeout,
                span: Span::current(),
            });
            listener_task = Some(tokio::spawn(
                accept_loop(listener, shared).in_current_span(),
            ));
        }
        Ok(Self {
            router,
            events,
            local_addr,
            listener: listener_task,
        })
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The listener's bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops accepting connections, drains in-flight requests, sends DPR (REBOOTING) to every
    /// peer and waits for them to close.
    pub async fn shutdown(self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
        self.router.shutdown().await;
        drop(self.events);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(
            async move {
                if let Err(e) = incoming(Box::new(stream), &shared).await {
                    debug!(error = %e, "incoming connection dropped");
                }
            }
            .instrument(info_span!("incoming", from = %from)),
        );
    }
}

/// Reads exactly one frame (no read-ahead: the connection is handed over afterwards).
async fn read_frame(io: &mut BoxIo, max_len: u32) -> io::Result<Bytes> {
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await?;
    let [version, l0, l1, l2] = head;
    let length = u32::from_be_bytes([0, l0, l1, l2]);
    header::check_length(version, length, max_len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut buf = BytesMut::with_capacity(length as usize);
    buf.extend_from_slice(&head);
    buf.resize(length as usize, 0);
    io.read_exact(buf.get_mut(4..).unwrap_or_default()).await?;
    Ok(buf.freeze())
}

async fn incoming(mut io: BoxIo, shared: &Shared) -> io::Result<()> {
    let router = &shared.router;
    let limits = *router.limits();
    let frame = tokio::time::timeout(
        shared.cer_timeout,
        read_frame(&mut io, limits.max_message_len),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no CER in time"))??;
    let msg = Message::decode(frame.clone(), &**router.dictionary(), &limits)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let h = *msg.header();
    if h.code != CommandCode::CAPABILITIES_EXCHANGE || !h.flags.is_request() {
        // RFC 6733 5.6.1: anything but a CER first closes the connection.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first message is not a CER",
        ));
    }
    let caps = match Capabilities::read(&msg) {
        Ok(c) => c,
        Err(e) => {
            let cea = messages::cea(router.local(), &h, e.result_code(), Some(&e.to_string()));
            return reply_and_close(io, &cea).await;
        }
    };
    let index = match router.peer_by_host(&caps.origin_host) {
        Some(i) => i,
        None if shared.accept_unknown => {
            info!(origin_host = %caps.origin_host, "accepting a peer not in the configuration");
            // The peer outlives this connection: its task belongs to the node.
            shared.span.in_scope(|| add_dynamic_peer(shared, &caps))
        }
        None => {
            warn!(origin_host = %caps.origin_host, "CER from an unknown peer refused (3010)");
            let cea = messages::cea(
                router.local(),
                &h,
                ResultCode::UNKNOWN_PEER,
                Some("unknown peer"),
            );
            return reply_and_close(io, &cea).await;
        }
    };
    let Some(peer) = router.peers().get(index).cloned() else {
        return Ok(());
    };
    if peer
        .handle()
        .send(PeerCommand::Incoming(io, frame))
        .await
        .is_err()
    {
        debug!("peer task gone");
    }
    Ok(())
}

fn add_dynamic_peer(shared: &Shared, caps: &Capabilities) -> usize {
    let router = &shared.router;
    let settings = PeerSettings {
        name: caps.origin_host.clone(),
        initiator: false,
        seed: fastrand::u64(..),
        ..shared.settings.clone()
    };
    let fsm = PeerFsm::new(
        router.local().clone(),
        settings,
        router.dictionary().clone(),
        *router.limits(),
        router.ids().clone(),
    );
    let events = shared.events.clone() as Arc<dyn PeerEvents>;
    let max_len = router.limits().max_message_len;
    router.add_peer_with(
        PeerSpec {
            name: caps.origin_host.clone(),
            host: caps.origin_host.clone(),
            realm: caps.origin_realm.clone(),
            priority: u32::MAX,
            weight: 1,
        },
        true,
        |index| spawn_peer(index, fsm, None, events, max_len),
    )
}

async fn reply_and_close(mut io: BoxIo, answer: &super::codec::MessageBuf) -> io::Result<()> {
    let bytes = answer
        .to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    io.write_all(&bytes).await?;
    io.shutdown().await?;
    Ok(())
}
