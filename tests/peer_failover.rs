//! Failover under load with two in-process OCS peers over real TCP (RFC 6733 5.5.4, RFC 3539).
//!
//! OCS A sits behind a proxy that can go silent (it keeps the connection but forwards nothing,
//! like a hung host); OCS B is direct. While requests stream in, A goes silent. Then:
//! every request gets exactly one final outcome; those A had taken are sent once more to B with
//! the T flag and their End-to-End id; no request reaches A once its watchdog has given up.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use charging_gateway::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, CommandCode, DiameterFramer, Header, Limits, Message,
    MessageBuf, ResultCode,
};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{LocalIdentity, PeerSettings};
use charging_gateway::diameter::router::{PeerSpec, RequestHandler, RouterSettings};

const TW: Duration = Duration::from_millis(300);

fn identity(host: &str) -> LocalIdentity {
    LocalIdentity {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: 0,
        product_name: "failover-test".into(),
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

fn peer_settings() -> PeerSettings {
    PeerSettings {
        watchdog_interval: TW,
        watchdog_jitter: Duration::ZERO,
        connect_timeout: Duration::from_millis(500),
        disconnect_timeout: Duration::from_millis(500),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_millis(400),
        ..PeerSettings::default()
    }
}

/// What an OCS saw: (End-to-End id, T flag) per request.
type Seen = Arc<Mutex<Vec<(u32, bool)>>>;

/// Answers every CCR with DIAMETER_SUCCESS and records it.
struct Ocs {
    host: &'static str,
    seen: Seen,
}

impl RequestHandler for Ocs {
    fn serves(&self, app: ApplicationId) -> bool {
        app == ApplicationId::CREDIT_CONTROL
    }
    fn handle(&self, req: Message) -> Pin<Box<dyn Future<Output = MessageBuf> + Send>> {
        let h = *req.header();
        self.seen
            .lock()
            .unwrap()
            .push((h.end_to_end, h.flags.is_retransmit()));
        let mut ans = MessageBuf::new(h.answer())
            .with(AvpBuf::utf8(
                AvpCode::SESSION_ID,
                req.session_id().unwrap_or_default(),
            ))
            .with(AvpBuf::unsigned32(
                AvpCode::RESULT_CODE,
                ResultCode::SUCCESS.0,
            ))
            .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, self.host))
            .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net"))
            .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4));
        for code in [AvpCode::CC_REQUEST_TYPE, AvpCode::CC_REQUEST_NUMBER] {
            if let Some(a) = req.avp(code) {
                ans.push(AvpBuf::unsigned32(code, a.unsigned32().unwrap_or(0)));
            }
        }
        Box::pin(async move { ans })
    }
}

async fn ocs(host: &'static str) -> (Node, Seen) {
    let seen: Seen = Arc::default();
    let cfg = NodeConfig {
        local: identity(host),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        accept_unknown_peers: false,
        peers: vec![PeerConfig {
            spec: PeerSpec {
                name: "gw".into(),
                host: "gw.example.net".into(),
                realm: "example.net".into(),
                priority: 1,
                weight: 1,
            },
            connect: None,
        }],
        peer_settings: peer_settings(),
        router: RouterSettings::default(),
        limits: Limits::default(),
        cer_timeout: Duration::from_secs(2),
    };
    let handler = Arc::new(Ocs {
        host,
        seen: seen.clone(),
    });
    (Node::start(cfg, dict(), handler).await.unwrap(), seen)
}

/// CCRs from the gateway seen by the proxy: (arrival, End-to-End id, forwarded to the OCS?).
type CcrLog = Arc<Mutex<Vec<(Instant, u32, bool)>>>;

/// A TCP proxy that can go silent: it then keeps both connections open but forwards nothing,
/// and records the End-to-End ids of the CCRs the gateway still sends it.
struct Proxy {
    addr: SocketAddr,
    dead: Arc<AtomicBool>,
    ccrs: CcrLog,
}

async fn proxy(to: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dead = Arc::new(AtomicBool::new(false));
    let ccrs: CcrLog = Arc::default();
    let (d, c) = (dead.clone(), ccrs.clone());
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(to).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, d.clone(), Some(c.clone())));
            tokio::spawn(pump(sr, cw, d.clone(), None));
        }
    });
    Proxy { addr, dead, ccrs }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dead: Arc<AtomicBool>,
    log: Option<CcrLog>,
) {
    use tokio_util::codec::Decoder;
    let mut framer = DiameterFramer::default();
    let mut buf = BytesMut::new();
    loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(frame)) = framer.decode(&mut buf) {
            let silent = dead.load(Ordering::SeqCst);
            if let Some(log) = &log
                && let Some(raw) = Header::peek(&frame)
                && raw.header.code == CommandCode::CREDIT_CONTROL
            {
                log.lock()
                    .unwrap()
                    .push((Instant::now(), raw.header.end_to_end, !silent));
            }
            if !silent && to.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
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
    .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.example.net"))
    .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net"))
    .with(AvpBuf::utf8(AvpCode::DESTINATION_REALM, "example.net"))
    .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
    .with(AvpBuf::utf8(
        AvpCode::SERVICE_CONTEXT_ID,
        "test@example.net",
    ))
    .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 4))
    .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_fails_over_to_the_other_exactly_once() {
    let (ocs_a, seen_a) = ocs("ocs-a.example.net").await;
    let (ocs_b, seen_b) = ocs("ocs-b.example.net").await;
    let px = proxy(ocs_a.local_addr().unwrap()).await;
    let peer = |host: &str, addr: SocketAddr| PeerConfig {
        spec: PeerSpec {
            name: host.into(),
            host: host.into(),
            realm: "example.net".into(),
            priority: 1,
            weight: 1,
        },
        connect: Some(addr.to_string()),
    };
    let gw = Node::start(
        NodeConfig {
            local: identity("gw.example.net"),
            listen: None,
            accept_unknown_peers: false,
            peers: vec![
                peer("ocs-a.example.net", px.addr),
                peer("ocs-b.example.net", ocs_b.local_addr().unwrap()),
            ],
            peer_settings: peer_settings(),
            router: RouterSettings {
                request_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(2),
        },
        dict(),
        Arc::new(charging_gateway::diameter::router::NoApplications),
    )
    .await
    .unwrap();
    let router = gw.router().clone();
    // Both peers open.
    let t = Instant::now();
    while router.peers().iter().filter(|p| p.is_usable()).count() < 2 {
        assert!(t.elapsed() < Duration::from_secs(5), "peers did not open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 60 requests every 50 ms for 1.5 s; A goes silent after 0.4 s.
    let total = 30 * 60;
    let mut tasks = Vec::with_capacity(total);
    let started = Instant::now();
    let mut silenced_at = None;
    for batch in 0..30u32 {
        if batch == 8 {
            px.dead.store(true, Ordering::SeqCst);
            silenced_at = Some(Instant::now());
        }
        for i in 0..60u32 {
            let r = router.clone();
            let n = batch * 60 + i;
            tasks.push(tokio::spawn(async move { r.request(ccr(n)).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let silenced_at = silenced_at.unwrap();
    let mut answers = Vec::with_capacity(total);
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    let elapsed = started.elapsed();

    // Exactly one final outcome each, all successful: B took over what A could not answer.
    assert_eq!(answers.len(), total);
    let mut e2e_answered = std::collections::HashSet::new();
    for a in &answers {
        let m = a.as_ref().unwrap_or_else(|e| panic!("request failed: {e}"));
        assert_eq!(m.result_code(), Some(ResultCode::SUCCESS));
        assert!(
            e2e_answered.insert(m.header().end_to_end),
            "one answer per request"
        );
    }

    let at_proxy = px.ccrs.lock().unwrap().clone();
    let b = seen_b.lock().unwrap().clone();
    let a = seen_a.lock().unwrap().clone();
    let sent_to_a: std::collections::HashSet<u32> = at_proxy.iter().map(|(_, e, _)| *e).collect();
    let unanswered_by_a: std::collections::HashSet<u32> = at_proxy
        .iter()
        .filter(|(_, _, forwarded)| !forwarded)
        .map(|(_, e, _)| *e)
        .collect();
    assert!(
        !unanswered_by_a.is_empty(),
        "the test must catch requests in flight to A"
    );
    // Requests that reached A before it went silent were answered by A and never re-sent.
    for (e2e, t) in &a {
        assert!(!t, "A received a first transmission only");
        assert!(
            !b.iter().any(|(x, _)| x == e2e),
            "answered by A, not re-sent: {e2e:#x}"
        );
    }
    // Every request B saw twice-sent carries the T flag; first transmissions do not.
    let mut retransmitted = 0;
    for (e2e, t) in &b {
        if sent_to_a.contains(e2e) {
            assert!(t, "re-sent request {e2e:#x} lacks the T flag");
            retransmitted += 1;
        } else {
            assert!(!t, "first transmission {e2e:#x} carries the T flag");
        }
    }
    assert_eq!(
        retransmitted,
        unanswered_by_a.len(),
        "each stuck request re-sent exactly once"
    );
    assert_eq!(
        a.len() + b.len(),
        total,
        "B never saw a request twice, A and B cover all"
    );
    let _ = silenced_at;
    eprintln!(
        "{total} requests in {elapsed:?}: A answered {}, {} stuck at A re-sent to B with T, B answered {} in all",
        a.len(),
        retransmitted,
        b.len()
    );

    // Once A is down (the watchdog closed it; the gateway now redials a silent host), nothing
    // is routed to it: a second wave all goes to B.
    let a_entry = router
        .peers()
        .into_iter()
        .find(|p| p.spec.host == "ocs-a.example.net")
        .unwrap();
    let t = Instant::now();
    while a_entry.state().is_open() {
        assert!(t.elapsed() < Duration::from_secs(10), "A never went down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!a_entry.is_usable());
    let before = px.ccrs.lock().unwrap().len();
    let mut wave = Vec::new();
    for n in 0..300u32 {
        let r = router.clone();
        wave.push(tokio::spawn(
            async move { r.request(ccr(100_000 + n)).await },
        ));
    }
    for w in wave {
        let m = w.await.unwrap().expect("served by B");
        assert_eq!(m.result_code(), Some(ResultCode::SUCCESS));
    }
    assert_eq!(
        px.ccrs.lock().unwrap().len(),
        before,
        "a request was sent to the dead peer"
    );

    gw.shutdown().await;
    ocs_a.shutdown().await;
    ocs_b.shutdown().await;
}
