//! The peer task over `tokio::io::duplex` with a scripted peer: CER/CEA, requests and answers
//! multiplexed on one connection, DWR answered, DPR on shutdown, and the router's handling of
//! requests it cannot serve.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use charging_gateway::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, CommandCode, DiameterFramer, Header, Limits, Message,
    MessageBuf, ResultCode,
};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::ids::Ids;
use charging_gateway::diameter::peer::{
    DisconnectCause, LocalIdentity, PeerFsm, PeerSettings, PeerState, messages,
};
use charging_gateway::diameter::router::{
    NoApplications, PeerSpec, RouteError, Router, RouterEvents, RouterSettings,
};
use charging_gateway::diameter::transport::{BoxIo, Connector, PeerEvents, spawn_peer};

fn identity(host: &str) -> LocalIdentity {
    LocalIdentity {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
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

/// Hands the test one end of a fresh duplex pipe per dial.
struct DuplexConnector {
    tx: mpsc::UnboundedSender<DuplexStream>,
}

impl Connector for DuplexConnector {
    fn connect(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send>> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let sent = self.tx.send(theirs);
        Box::pin(async move {
            sent.map_err(|_| io::Error::other("test gone"))?;
            Ok(Box::new(ours) as BoxIo)
        })
    }
}

struct Harness {
    router: Arc<Router>,
    dials: mpsc::UnboundedReceiver<DuplexStream>,
    states: Arc<Mutex<Vec<PeerState>>>,
}

/// Records states, forwards everything to the router.
struct Recording {
    inner: RouterEvents,
    states: Arc<Mutex<Vec<PeerState>>>,
}

impl PeerEvents for Recording {
    fn deliver(&self, peer: usize, message: Message) {
        self.inner.deliver(peer, message)
    }
    fn opened(&self, peer: usize, caps: &charging_gateway::diameter::peer::Capabilities) {
        self.inner.opened(peer, caps)
    }
    fn usable(&self, peer: usize, usable: bool) {
        self.inner.usable(peer, usable)
    }
    fn refused(&self, peer: usize, frame: Bytes) {
        self.inner.refused(peer, frame)
    }
    fn state(&self, peer: usize, state: PeerState) {
        self.states.lock().unwrap().push(state);
        self.inner.state(peer, state)
    }
}

fn harness(tw: Duration) -> Harness {
    let local = Arc::new(identity("gw.example.net"));
    let ids = Arc::new(Ids::new(0, 3));
    let d = dict();
    let router = Router::new(
        local.clone(),
        ids.clone(),
        d.clone(),
        Limits::default(),
        RouterSettings {
            request_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
        },
        Arc::new(NoApplications),
    );
    let (tx, dials) = mpsc::unbounded_channel();
    let settings = PeerSettings {
        name: "ocs".into(),
        initiator: true,
        watchdog_interval: tw,
        watchdog_jitter: Duration::ZERO,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        ..PeerSettings::default()
    };
    let fsm = PeerFsm::new(local, settings, d, Limits::default(), ids);
    let states = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(Recording {
        inner: RouterEvents(router.clone()),
        states: states.clone(),
    });
    router.add_peer_with(
        PeerSpec {
            name: "ocs".into(),
            host: "ocs.example.net".into(),
            realm: "example.net".into(),
            priority: 1,
            weight: 1,
        },
        false,
        |index| {
            spawn_peer(
                index,
                fsm,
                Some(Arc::new(DuplexConnector { tx }) as Arc<dyn Connector>),
                events,
                1 << 20,
            )
        },
    );
    Harness {
        router,
        dials,
        states,
    }
}

type Wire = Framed<DuplexStream, DiameterFramer>;

async fn recv(wire: &mut Wire) -> Message {
    let frame = tokio::time::timeout(Duration::from_secs(5), wire.next())
        .await
        .expect("a frame in time")
        .expect("stream open")
        .expect("valid framing");
    Message::decode(frame, &*dict(), &Limits::default()).unwrap()
}

async fn send(wire: &mut Wire, m: &MessageBuf) {
    wire.send(m.to_bytes().unwrap()).await.unwrap();
}

/// Accepts the gateway's dial and completes CER/CEA.
async fn accept(h: &mut Harness) -> Wire {
    let io = tokio::time::timeout(Duration::from_secs(5), h.dials.recv())
        .await
        .unwrap()
        .unwrap();
    let mut wire = Framed::new(io, DiameterFramer::default());
    let cer = recv(&mut wire).await;
    assert_eq!(cer.header().code, CommandCode::CAPABILITIES_EXCHANGE);
    let cea = messages::cea(
        &identity("ocs.example.net"),
        cer.header(),
        ResultCode::SUCCESS,
        None,
    );
    send(&mut wire, &cea).await;
    wire
}

async fn wait_usable(router: &Router) {
    for _ in 0..500 {
        if router.any_usable() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("peer never became usable");
}

fn ccr(n: u32) -> MessageBuf {
    MessageBuf::new(Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    ))
    .with(AvpBuf::utf8(
        AvpCode::SESSION_ID,
        &format!("gw.example.net;1;{n}"),
    ))
    .with(AvpBuf::utf8(AvpCode::DESTINATION_REALM, "example.net"))
    .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, n))
}

fn cca_for(req: &Message, rc: ResultCode) -> MessageBuf {
    MessageBuf::new(req.header().answer())
        .with(AvpBuf::utf8(AvpCode::SESSION_ID, req.session_id().unwrap()))
        .with(AvpBuf::unsigned32(AvpCode::RESULT_CODE, rc.0))
}

#[tokio::test]
async fn one_connection_multiplexes_many_requests_answered_out_of_order() {
    let mut h = harness(Duration::from_secs(30));
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    let n = 2000u32;
    let router = h.router.clone();
    let client = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            let r = router.clone();
            tasks.push(tokio::spawn(async move { (i, r.request(ccr(i)).await) }));
        }
        let mut ok = 0;
        for t in tasks {
            let (i, res) = t.await.unwrap();
            let ans = res.expect("answer");
            assert_eq!(
                ans.session_id().unwrap(),
                format!("gw.example.net;1;{i}"),
                "answer matched to its request"
            );
            ok += 1;
        }
        ok
    });
    // Read every request, then answer them in reverse order.
    let mut reqs = Vec::new();
    while reqs.len() < n as usize {
        let m = recv(&mut wire).await;
        if m.header().code == CommandCode::CREDIT_CONTROL {
            reqs.push(m);
        }
    }
    let hops: std::collections::HashSet<u32> = reqs.iter().map(|m| m.header().hop_by_hop).collect();
    assert_eq!(
        hops.len(),
        n as usize,
        "hop-by-hop ids unique on the connection"
    );
    for r in reqs.iter().rev() {
        wire.feed(cca_for(r, ResultCode::SUCCESS).to_bytes().unwrap())
            .await
            .unwrap();
    }
    wire.flush().await.unwrap();
    assert_eq!(client.await.unwrap(), n);
    assert_eq!(h.router.pending_count(), 0);
}

#[tokio::test]
async fn e_bit_answers_are_reported_apart() {
    let mut h = harness(Duration::from_secs(30));
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    let router = h.router.clone();
    let pending = tokio::spawn(async move { router.request(ccr(1)).await });
    let req = recv(&mut wire).await;
    let err = messages::error_answer(
        &identity("ocs.example.net"),
        req.header(),
        req.session_id(),
        ResultCode::UNABLE_TO_DELIVER,
        None,
        None,
    );
    send(&mut wire, &err).await;
    match pending.await.unwrap() {
        Err(RouteError::ProtocolError { result, .. }) => {
            assert_eq!(result, ResultCode::UNABLE_TO_DELIVER)
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn dwr_is_sent_when_idle_and_answered_dwr_keeps_it_open() {
    let tw = Duration::from_millis(300);
    let mut h = harness(tw);
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    for _ in 0..3 {
        let dwr = recv(&mut wire).await;
        assert_eq!(dwr.header().code, CommandCode::DEVICE_WATCHDOG);
        assert!(dwr.header().flags.is_request());
        send(
            &mut wire,
            &messages::dwa(&identity("ocs.example.net"), dwr.header()),
        )
        .await;
    }
    assert!(h.router.any_usable());
    // The peer's own DWR is answered.
    send(
        &mut wire,
        &messages::dwr(&identity("ocs.example.net"), 42, 43),
    )
    .await;
    loop {
        let m = recv(&mut wire).await;
        if m.header().hop_by_hop == 42 {
            assert!(!m.header().flags.is_request());
            assert_eq!(m.result_code(), Some(ResultCode::SUCCESS));
            break;
        }
        // An interleaved DWR of ours: answer it.
        send(
            &mut wire,
            &messages::dwa(&identity("ocs.example.net"), m.header()),
        )
        .await;
    }
}

#[tokio::test]
async fn unanswered_watchdog_closes_and_the_pending_request_fails_as_unknown() {
    let tw = Duration::from_millis(200);
    let mut h = harness(tw);
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    let router = h.router.clone();
    let pending = tokio::spawn(async move { router.request(ccr(9)).await });
    let _req = recv(&mut wire).await;
    // Never answer anything again: SUSPECT after 2 Tw, DOWN after 3 Tw, connection closed.
    let started = std::time::Instant::now();
    let res = pending.await.unwrap();
    assert!(
        matches!(res, Err(RouteError::PeerLost { attempts: 1 })),
        "{res:?}"
    );
    assert!(res.unwrap_err().outcome_unknown());
    assert!(started.elapsed() < Duration::from_secs(4));
    // The gateway dials again (back-off 50 ms).
    let _again = accept(&mut h).await;
    let states = h.states.lock().unwrap().clone();
    assert!(states.contains(&PeerState::Closed));
}

#[tokio::test]
async fn requests_for_unserved_applications_are_answered_3007() {
    let mut h = harness(Duration::from_secs(30));
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    // The OCS sends a RAR (application 4) to a node serving nothing.
    let rar = MessageBuf::new({
        let mut hd = Header::request(CommandCode::RE_AUTH, ApplicationId::CREDIT_CONTROL, true);
        hd.hop_by_hop = 777;
        hd
    })
    .with(AvpBuf::utf8(AvpCode::SESSION_ID, "s;1;1"));
    send(&mut wire, &rar).await;
    let ans = recv(&mut wire).await;
    assert_eq!(ans.header().hop_by_hop, 777);
    assert!(ans.header().flags.is_error());
    assert_eq!(ans.result_code(), Some(ResultCode::APPLICATION_UNSUPPORTED));
    assert_eq!(ans.session_id(), Some("s;1;1"));
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_answers_then_sends_dpr() {
    let mut h = harness(Duration::from_secs(30));
    let mut wire = accept(&mut h).await;
    wait_usable(&h.router).await;
    let router = h.router.clone();
    let pending = tokio::spawn(async move { router.request(ccr(5)).await });
    let req = recv(&mut wire).await;
    let router = h.router.clone();
    let shutdown = tokio::spawn(async move { router.shutdown().await });
    // New requests are refused at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        h.router.request(ccr(6)).await,
        Err(RouteError::ShuttingDown)
    ));
    // No DPR while the request is in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), wire.next())
            .await
            .is_err()
    );
    send(&mut wire, &cca_for(&req, ResultCode::SUCCESS)).await;
    assert!(pending.await.unwrap().is_ok());
    let dpr = recv(&mut wire).await;
    assert_eq!(dpr.header().code, CommandCode::DISCONNECT_PEER);
    assert_eq!(messages::disconnect_cause(&dpr), DisconnectCause::Rebooting);
    send(
        &mut wire,
        &messages::dpa(&identity("ocs.example.net"), dpr.header()),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    // The gateway closed the connection after the DPA.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), wire.next())
            .await
            .unwrap()
            .is_none()
    );
}
