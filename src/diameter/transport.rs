//! The I/O edge of a peer: one tokio task drives one [`PeerFsm`] over real connections.
//!
//! ```text
//!            commands (send, answer, incoming connection, stop)
//!   router ---------------------------------------------------> peer task --- PeerFsm
//!     ^                                                            |   ^
//!     |  deliver(message), usable(bool), refused(frame)            |   | frames (FramedRead)
//!     +------------------------------------------------------------+   |
//!                                               writer task per connection: coalesces queued
//!                                               frames into one write, then flushes
//! ```
//!
//! Reading and writing are decoupled: a slow peer fills its writer queue, never the peer task.
//! When a queue is full the connection is treated as broken (the watchdog would conclude the
//! same, later).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tracing::{Instrument, debug, info_span, warn};

use super::codec::{DiameterFramer, Message};
use super::peer::{Action, Capabilities, Conn, DisconnectCause, PeerFsm, PeerState, PeerStats};

/// A byte stream a peer talks over: TCP in production, `tokio::io::duplex` in tests.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// How to dial a peer.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;
}

/// Dials a TCP address with a timeout; Nagle is off (Diameter messages are small and latency
/// matters more than packet count; the writer task already coalesces).
#[derive(Clone, Debug)]
pub struct TcpConnector {
    pub address: String,
    pub timeout: Duration,
}

impl Connector for TcpConnector {
    fn connect(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> {
        let address = self.address.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// What the peer task tells its owner (the router).
pub trait PeerEvents: Send + Sync + 'static {
    /// An application message (request or answer) arrived from the peer.
    fn deliver(&self, peer: usize, message: Message);
    /// The capabilities exchange succeeded (called before the first `usable(true)`).
    fn opened(&self, peer: usize, caps: &Capabilities) {
        let _ = (peer, caps);
    }
    /// The peer became usable for routing, or stopped being so (failover).
    fn usable(&self, peer: usize, usable: bool);
    /// A frame given with [`PeerCommand::Send`] could not be sent (peer not usable).
    fn refused(&self, peer: usize, frame: Bytes);
    /// The state machine changed state (for health and metrics).
    fn state(&self, peer: usize, state: PeerState) {
        let _ = (peer, state);
    }
    /// The base-protocol counters changed (a DWR, DWA, DPR or DPA went by).
    fn stats(&self, peer: usize, stats: &PeerStats) {
        let _ = (peer, stats);
    }
}

/// Commands to a peer task.
#[non_exhaustive]
pub enum PeerCommand {
    /// An application request (refused unless the peer is usable).
    Send(Bytes),
    /// An answer to a request this peer delivered.
    Answer(Bytes),
    /// An accepted connection whose first frame is a CER naming this peer.
    Incoming(BoxIo, Bytes),
    /// Begin dialling (initiators start by themselves when spawned).
    Start,
    /// DPR with this cause, then close; the sender learns when the peer is closed.
    Stop(DisconnectCause, oneshot::Sender<()>),
    /// Drop every connection at once, without DPR (fault injection: a crashed peer). An
    /// initiator dials again after its back-off.
    Abort,
    /// Send one DWR now ([`PeerFsm::probe`]); the sender learns whether it went out.
    Probe(oneshot::Sender<bool>),
}

/// The handle the router keeps.
#[derive(Clone, Debug)]
pub struct PeerHandle {
    tx: mpsc::Sender<PeerCommand>,
}

impl PeerHandle {
    /// Queue a command; fails only when the peer task has ended.
    pub fn try_send(&self, cmd: PeerCommand) -> Result<(), PeerCommand> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
        })
    }

    pub async fn send(&self, cmd: PeerCommand) -> Result<(), PeerCommand> {
        self.tx.send(cmd).await.map_err(|e| e.0)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A handle whose commands land in the returned receiver, with no task behind it (router
    /// tests play the peer by hand).
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (Self, mpsc::Receiver<PeerCommand>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }
}

/// Frames queued per connection before it is considered stuck.
const WRITE_QUEUE: usize = 65_536;
/// Commands queued per peer task.
const COMMAND_QUEUE: usize = 65_536;

struct Connection {
    reader: FramedRead<ReadHalf<BoxIo>, DiameterFramer>,
    writer: mpsc::Sender<Bytes>,
}

impl Connection {
    fn new(io: BoxIo, max_len: u32, peer: &str) -> Self {
        let (r, w) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(w, rx).instrument(info_span!("writer", peer = %peer)));
        Self {
            reader: FramedRead::new(r, DiameterFramer::new(max_len)),
            writer: tx,
        }
    }
}

/// Writes queued frames, coalescing whatever is waiting into one buffer per write.
async fn write_loop(mut w: WriteHalf<BoxIo>, mut rx: mpsc::Receiver<Bytes>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&buf).await {
            debug!(error = %e, "write failed");
            return;
        }
        buf.clear();
    }
    // The sender side closed the connection: flush and shut down (FIN) politely.
    let _ = w.shutdown().await;
}

/// Spawns the task driving `fsm`. `index` names the peer in [`PeerEvents`] calls.
pub fn spawn_peer(
    index: usize,
    fsm: PeerFsm,
    connector: Option<Arc<dyn Connector>>,
    events: Arc<dyn PeerEvents>,
    max_message_len: u32,
) -> PeerHandle {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let name = fsm.settings().name.clone();
    let task = PeerTask {
        index,
        fsm,
        connector,
        events,
        max_len: max_message_len,
        initiator: None,
        responder: None,
        incoming: None,
        connecting: None,
        rx,
        stop_waiters: Vec::new(),
        last_state: PeerState::Closed,
        last_stats: PeerStats::default(),
    };
    tokio::spawn(task.run().instrument(info_span!("peer", peer = %name)));
    PeerHandle { tx }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>>;

struct PeerTask {
    index: usize,
    fsm: PeerFsm,
    connector: Option<Arc<dyn Connector>>,
    events: Arc<dyn PeerEvents>,
    max_len: u32,
    initiator: Option<Connection>,
    responder: Option<Connection>,
    incoming: Option<Connection>,
    connecting: Option<Connecting>,
    rx: mpsc::Receiver<PeerCommand>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    last_state: PeerState,
    last_stats: PeerStats,
}

enum Wake {
    Frame(Conn, Option<Result<Bytes, super::codec::FrameError>>),
    Connected(io::Result<BoxIo>),
    Command(Option<PeerCommand>),
    Timer,
}

async fn next_frame(c: &mut Option<Connection>) -> Option<Result<Bytes, super::codec::FrameError>> {
    match c {
        Some(c) => c.reader.next().await,
        None => std::future::pending().await,
    }
}

impl PeerTask {
    async fn run(mut self) {
        if self.fsm.settings().initiator && self.connector.is_some() {
            self.fsm.start(Instant::now().into_std());
        }
        loop {
            self.apply_actions();
            let stats = self.fsm.stats();
            if stats != self.last_stats {
                self.last_stats = stats;
                self.events.stats(self.index, &stats);
            }
            let state = self.fsm.state();
            if state != self.last_state {
                self.last_state = state;
                self.events.state(self.index, state);
                if state == PeerState::Closed {
                    for w in self.stop_waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
            let deadline = self.fsm.poll_timeout();
            let wake = tokio::select! {
                f = next_frame(&mut self.initiator) => Wake::Frame(Conn::Initiator, f),
                f = next_frame(&mut self.responder) => Wake::Frame(Conn::Responder, f),
                r = async {
                    match self.connecting.as_mut() {
                        Some(c) => c.await,
                        None => std::future::pending().await,
                    }
                } => Wake::Connected(r),
                c = self.rx.recv() => Wake::Command(c),
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Timer,
            };
            let now = Instant::now().into_std();
            match wake {
                Wake::Frame(conn, Some(Ok(frame))) => self.fsm.received(now, conn, frame),
                Wake::Frame(conn, Some(Err(e))) => {
                    warn!(error = %e, "framing error: closing the connection");
                    self.drop_conn(conn);
                    self.fsm.disconnected(now, conn);
                }
                Wake::Frame(conn, None) => {
                    debug!(?conn, "connection closed by the peer");
                    self.drop_conn(conn);
                    self.fsm.disconnected(now, conn);
                }
                Wake::Connected(Ok(io)) => {
                    self.connecting = None;
                    let name = self.fsm.settings().name.clone();
                    self.initiator = Some(Connection::new(io, self.max_len, &name));
                    self.fsm.connected(now);
                }
                Wake::Connected(Err(e)) => {
                    self.connecting = None;
                    debug!(error = %e, "connect failed");
                    self.fsm.connect_failed(now);
                }
                Wake::Command(Some(cmd)) => self.command(now, cmd),
                Wake::Command(None) => {
                    // The router is gone: close quietly.
                    self.fsm.stop(now, DisconnectCause::Rebooting);
                    self.apply_actions();
                    return;
                }
                Wake::Timer => self.fsm.handle_timeout(now),
            }
        }
    }

    fn command(&mut self, now: std::time::Instant, cmd: PeerCommand) {
        match cmd {
            PeerCommand::Send(frame) => {
                if let Err(frame) = self.fsm.send(frame) {
                    self.events.refused(self.index, frame);
                }
            }
            PeerCommand::Answer(frame) => {
                if self.fsm.send_answer(frame).is_err() {
                    debug!("answer dropped: the connection is gone");
                }
            }
            PeerCommand::Incoming(io, cer) => {
                let name = self.fsm.settings().name.clone();
                self.incoming = Some(Connection::new(io, self.max_len, &name));
                self.fsm.incoming_cer(now, cer);
                // Whatever was not accepted is closed with the actions applied next.
            }
            PeerCommand::Start => self.fsm.start(now),
            PeerCommand::Probe(sent) => {
                let _ = sent.send(self.fsm.probe());
            }
            PeerCommand::Abort => {
                for conn in [Conn::Initiator, Conn::Responder] {
                    if self.slot(conn).is_some() {
                        self.drop_conn(conn);
                        self.fsm.disconnected(now, conn);
                    }
                }
            }
            PeerCommand::Stop(cause, done) => {
                self.stop_waiters.push(done);
                self.fsm.stop(now, cause);
                if self.fsm.state() == PeerState::Closed {
                    for w in self.stop_waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
        }
    }

    fn slot(&mut self, conn: Conn) -> &mut Option<Connection> {
        match conn {
            Conn::Initiator => &mut self.initiator,
            Conn::Responder => &mut self.responder,
            Conn::Incoming => &mut self.incoming,
        }
    }

    fn drop_conn(&mut self, conn: Conn) {
        // Dropping the writer's sender makes the writer flush, shut down and end.
        *self.slot(conn) = None;
    }

    fn apply_actions(&mut self) {
        while let Some(action) = self.fsm.poll_action() {
            match action {
                Action::Connect => match &self.connector {
                    Some(c) => self.connecting = Some(c.connect()),
                    None => {
                        let now = Instant::now().into_std();
                        self.fsm.connect_failed(now);
                    }
                },
                Action::AcceptIncoming => {
                    self.responder = self.incoming.take();
                }
                Action::Send(conn, frame) => {
                    let full = match self.slot(conn) {
                        Some(c) => c.writer.try_send(frame).is_err(),
                        None => false,
                    };
                    if full {
                        warn!(?conn, "write queue full or closed: closing the connection");
                        self.drop_conn(conn);
                        let now = Instant::now().into_std();
                        self.fsm.disconnected(now, conn);
                    }
                }
                Action::Close(conn) => self.drop_conn(conn),
                Action::Deliver(msg) => self.events.deliver(self.index, msg),
                Action::Usable(u) => {
                    if u && let Some(caps) = self.fsm.peer_capabilities() {
                        self.events.opened(self.index, caps);
                    }
                    self.events.usable(self.index, u);
                }
            }
        }
    }
}
