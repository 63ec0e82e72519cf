//! Interoperability with a real peer: freeDiameter (`freeDiameterd`, Debian package
//! freediameterd 1.2.1) started by the test on a loopback port chosen at run time.
//!
//! ```text
//! base protocol:  gw-i (dials, Tw 1 s) ----> freeDiameterd <---- dials (ConnectPeer) gw-r (Tw 30 s)
//!                 CER/CEA, our DWRs, a CCR      (acl_wl, relay)   CER/CEA, its DWRs (Tw 6 s),
//!                 it does not serve, our DPR                      its DPR on SIGTERM
//! relay:          gateway ---------> freeDiameterd -----------------------> OCS simulator
//!                 gw.operator.test   fd.relay.test (acl_wl, rt_default)     ocs.charging.local
//!                 realm operator.test  realm relay.test, ConnectPeer ------> realm charging.local
//! ```
//!
//! Only 127.0.0.1, ports chosen at run time; freeDiameterd is killed when its handle drops
//! (panics included) and its configuration directory removed. Without `freeDiameterd` the
//! tests print that they are skipped, or fail under `CI=true`. `FD_SHOW_LOG=1` prints
//! freeDiameter's log (it is printed anyway when a test fails).
//!
//! Each run is also captured on the loopback, both connections, from before freeDiameter
//! starts (`support::wire`), and fails on any frame Wireshark's Diameter dissector marks
//! malformed or warns about (beyond `WIRESHARK_LIMITS`).

mod support;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use charging_gateway::credit_control::{
    CcConfig, CcFailureHandling, CreditControlClient, CreditControlRequest, DdFailureHandling,
    EventRequest, Money, Outcome, RequestType, RequestedAction, StyleConfig, SubscriptionId,
    UnitsStyle, money::currency,
};
use charging_gateway::diameter::codec::{ApplicationId, AvpCode, Limits, ResultCode};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{DisconnectCause, LocalIdentity, PeerSettings, PeerState};
use charging_gateway::diameter::router::{
    NoApplications, PeerEntry, PeerSpec, RouteError, Router, RouterSettings,
};
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount, SimPrice};

use support::cc_flows::{eur, event};

use support::freediameter::{FdConfig, FdPeer, FreeDiameterd, Install};
use support::wire::{self, Capture, WIRESHARK_LIMITS};

fn dict() -> Arc<Dictionary> {
    static D: std::sync::OnceLock<Arc<Dictionary>> = std::sync::OnceLock::new();
    D.get_or_init(|| Arc::new(Dictionary::builtin().unwrap()))
        .clone()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn sub(s: &str) -> SubscriptionId {
    SubscriptionId::parse(s).unwrap()
}

fn identity(host: &str, realm: &str) -> LocalIdentity {
    LocalIdentity {
        origin_host: host.into(),
        origin_realm: realm.into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: 0,
        product_name: "charging-gateway interop".into(),
        firmware_revision: 1,
        origin_state_id: 1,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![],
        supported_vendor_ids: vec![10415],
    }
}

/// A gateway node with one peer: dialled at `connect`, or waiting for it on `listen`.
async fn gateway(
    host: &str,
    realm: &str,
    peer: PeerSpec,
    connect: Option<String>,
    listen: Option<SocketAddr>,
    tw: Duration,
) -> Node {
    Node::start(
        NodeConfig {
            local: identity(host, realm),
            listen,
            accept_unknown_peers: false,
            peers: vec![PeerConfig {
                spec: peer,
                connect,
            }],
            peer_settings: PeerSettings {
                watchdog_interval: tw,
                watchdog_jitter: tw / 10,
                connect_timeout: Duration::from_secs(3),
                disconnect_timeout: Duration::from_secs(3),
                // freeDiameter may close a connection redialled within about half a second of
                // a drop: never come back sooner than that.
                reconnect_min: Duration::from_secs(1),
                reconnect_max: Duration::from_secs(2),
                ..PeerSettings::default()
            },
            router: RouterSettings {
                request_timeout: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(3),
        },
        dict(),
        Arc::new(NoApplications),
    )
    .await
    .unwrap()
}

fn spec(host: &str, realm: &str) -> PeerSpec {
    PeerSpec {
        name: host.into(),
        host: host.into(),
        realm: realm.into(),
        priority: 1,
        weight: 1,
    }
}

fn only_peer(r: &Router) -> Arc<PeerEntry> {
    let peers = r.peers();
    assert_eq!(peers.len(), 1, "one peer expected");
    peers[0].clone()
}

/// Waits (generously) for `cond`; fails naming `what` when it never holds.
async fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The wire check of a finished run: nothing Wireshark's Diameter dissector flags beyond
/// `WIRESHARK_LIMITS`, and on each `(port, leg, commands)` every command seen both as a
/// request and as an answer (so the check judged both directions of that connection).
fn check_wire(capture: Option<Capture>, legs: &[(u16, &str, &[u32])]) {
    let Some(capture) = capture else { return };
    let report = capture.finish();
    eprintln!(
        "wire check ({}): {} Diameter messages on ports {:?}, {} findings, {} not allowed",
        report.version,
        report.messages.len(),
        report.ports,
        report.findings.len(),
        report.unexpected(WIRESHARK_LIMITS).len()
    );
    report.assert_clean(WIRESHARK_LIMITS);
    for (port, leg, commands) in legs {
        for code in *commands {
            for request in [true, false] {
                assert!(
                    report.count(*port, *code, request) > 0,
                    "wire check: no {} of command {code} on {leg} (port {port}) in {:#?}",
                    if request { "request" } else { "answer" },
                    report.on_port(*port).collect::<Vec<_>>()
                );
            }
        }
    }
}

fn cc_config(realm: &str, host: Option<&str>, style: UnitsStyle) -> CcConfig {
    CcConfig {
        service_context_id: "payment.v1@charging.local".into(),
        destination_realm: realm.into(),
        destination_host: host.map(str::to_string),
        style: StyleConfig::both(style.into()),
        default_currency: currency("EUR").unwrap(),
        ccfh: CcFailureHandling::Terminate,
        ddfh: DdFailureHandling::TerminateOrBuffer,
        tx: Duration::from_secs(5),
        service_identifier: Some(1000),
        rating_group: Some(1),
        extra_avps: Vec::new(),
        max_sessions: 1000,
        reservation_ttl: Duration::from_secs(3600),
        resolve_interval: Duration::from_millis(200),
        resolve_attempts: 10,
    }
}

const FD_HOST: &str = "fd.interop.test";
const FD_REALM: &str = "interop.test";
const GW_I: &str = "gw-i.interop.test";
const GW_R: &str = "gw-r.interop.test";

/// CER/CEA both ways, DWR/DWA driven by either side's watchdog, a CCR freeDiameter does not
/// serve answered with 3007 and an E bit, DPR/DPA when the gateway stops, and freeDiameter's
/// DPR when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_protocol_with_freediameter() {
    let Some(install) = Install::find_or_skip("base_protocol_with_freediameter") else {
        return;
    };
    assert!(install.version.starts_with("freeDiameter"), "{install:?}");
    eprintln!("interop with {}", install.version);
    // gw-r waits for freeDiameter to dial it; its own Tw is long, so freeDiameter's (6 s, the
    // least it accepts) fires first and every DWR on that connection is freeDiameter's.
    let gw_r = gateway(
        GW_R,
        FD_REALM,
        spec(FD_HOST, FD_REALM),
        None,
        Some("127.0.0.1:0".parse().unwrap()),
        Duration::from_secs(30),
    )
    .await;
    let gw_r_port = gw_r.local_addr().unwrap().port();
    // Everything on both connections is captured from before freeDiameter starts.
    let (mut fd, capture) = FreeDiameterd::start_with(
        &install,
        &FdConfig {
            identity: FD_HOST.into(),
            realm: FD_REALM.into(),
            tw_timer: 6,
            tc_timer: 2,
            whitelist: vec![GW_I.into()],
            connect_peers: vec![FdPeer {
                identity: GW_R.into(),
                realm: Some(FD_REALM.into()),
                port: gw_r_port,
            }],
            routes: Vec::new(),
        },
        |fd_port| wire::capture_or_skip("base_protocol_with_freediameter", &[fd_port, gw_r_port]),
    )
    .await;
    // gw-i dials freeDiameter; its Tw is short, so it is the one sending DWRs there.
    let gw_i = gateway(
        GW_I,
        FD_REALM,
        spec(FD_HOST, FD_REALM),
        Some(format!("127.0.0.1:{}", fd.port)),
        None,
        Duration::from_secs(1),
    )
    .await;
    let (ri, rr) = (gw_i.router().clone(), gw_r.router().clone());
    let (pi, pr) = (only_peer(&ri), only_peer(&rr));

    // CER/CEA: the gateway dialled (I-Open) and was dialled (R-Open).
    let long = Duration::from_secs(15);
    wait_for("gw-i open and usable", long, || pi.is_usable()).await;
    wait_for("gw-r open and usable", long, || pr.is_usable()).await;
    assert_eq!(pi.state(), PeerState::IOpen);
    assert_eq!(pr.state(), PeerState::ROpen);
    for p in [&pi, &pr] {
        let caps = p.capabilities().expect("capabilities recorded");
        assert_eq!(caps.origin_host, FD_HOST);
        assert_eq!(caps.origin_realm, FD_REALM);
        assert!(
            caps.product_name.contains("freeDiameter"),
            "{}",
            caps.product_name
        );
        // A relay agent advertises the Relay application (RFC 6733 section 5.3).
        assert!(
            caps.application_ids.contains(&ApplicationId::RELAY.0),
            "{:?}",
            caps.application_ids
        );
    }
    // gw-i read freeDiameter's CEA, gw-r its CER.
    assert_eq!(
        pi.capabilities().unwrap().result_code,
        Some(ResultCode::SUCCESS)
    );
    assert_eq!(pr.capabilities().unwrap().result_code, None);

    // DWR/DWA: gw-i's watchdog (Tw 1 s) is answered by freeDiameter; freeDiameter's watchdog
    // (Tw 6 s, +/- 2 s) is answered by gw-r.
    wait_for("gw-i: two DWAs for its DWRs", long, || {
        pi.stats().dwa_received >= 2
    })
    .await;
    wait_for("gw-r: a DWR from freeDiameter", long, || {
        pr.stats().dwr_received >= 1
    })
    .await;
    let si = pi.stats();
    assert!(si.dwr_sent >= si.dwa_received, "{si:?}");
    assert!(pi.is_usable() && pr.is_usable(), "both still OKAY");
    assert_eq!((si.opened, pr.stats().opened), (1, 1), "no reconnection");

    // The connection drops without DPR: gw-i redials after its back-off (never within the
    // half second in which freeDiameter may still refuse it), exchanges CER/CEA again, and
    // carries traffic only after three DWAs (RFC 3539 REOPEN).
    ri.abort_connections();
    wait_for("gw-i: the drop noticed", long, || {
        pi.state() == PeerState::Closed
    })
    .await;
    // No DWA can arrive from here until the new connection is up.
    let dwas_before = pi.stats().dwa_received;
    wait_for("gw-i: reopened", long, || pi.stats().opened == 2).await;
    wait_for("gw-i: usable again after REOPEN", long, || pi.is_usable()).await;
    let s = pi.stats();
    assert!(s.dwa_received >= dwas_before + 3, "three DWAs first: {s:?}");
    assert_eq!(pi.state(), PeerState::IOpen);
    // freeDiameter probes the reopened connection with DWRs of its own, and gw-i answers
    // them while still in REOPEN.
    assert!(s.dwr_received >= 1, "{s:?}");

    // A CCR for freeDiameter itself (Destination-Host): it serves no credit-control
    // application, so it answers DIAMETER_APPLICATION_UNSUPPORTED with the E bit.
    let mut ccr = CreditControlRequest::new(
        "gw-i.interop.test;1;1;interop".into(),
        FD_REALM.into(),
        "payment.v1@charging.local".into(),
        RequestType::Event,
        0,
    );
    ccr.destination_host = Some(FD_HOST.into());
    ccr.subscription = Some(sub("tel:+34671999000"));
    ccr.requested_action = Some(RequestedAction::DirectDebiting);
    ccr.requested = Some(charging_gateway::credit_control::Units::money(eur("1.00")));
    let msg = ccr.to_message(ri.local()).unwrap();
    match ri.request(msg).await {
        Err(RouteError::ProtocolError { result, answer, .. }) => {
            assert_eq!(result, ResultCode::APPLICATION_UNSUPPORTED);
            let h = answer.header();
            assert!(h.flags.is_error() && !h.flags.is_request(), "{h:?}");
            // freeDiameter 1.2.1's "generic error format" answer clears the P bit that RFC 6733
            // section 6.2 says to copy from the request; the gateway does not judge answers by
            // it, and takes the answer all the same.
            assert_eq!(h.application_id, ApplicationId::CREDIT_CONTROL);
            assert_eq!(answer.session_id(), Some("gw-i.interop.test;1;1;interop"));
            let origin = answer.avp(AvpCode::ORIGIN_HOST).unwrap();
            assert_eq!(origin.identity().unwrap().to_string(), FD_HOST);
        }
        other => panic!("expected a 3007 protocol error, got {other:?}"),
    }
    // The credit-control client reports it as a protocol error, at once (no other peer to
    // retry on), not as a timeout.
    let client = CreditControlClient::new(
        ri.clone(),
        cc_config(FD_REALM, Some(FD_HOST), UnitsStyle::Mscc),
        None,
    );
    let r = client
        .event(EventRequest {
            subscription: sub("tel:+34671999000"),
            action: RequestedAction::DirectDebiting,
            amount: Some(eur("1.00")),
            service_identifier: None,
            parameters: Vec::new(),
            tag: None,
        })
        .await;
    assert_eq!(
        r.outcome,
        Outcome::ProtocolError(ResultCode::APPLICATION_UNSUPPORTED)
    );
    assert_eq!(ri.pending_count(), 0);

    // DPR/DPA: the gateway's shutdown says REBOOTING and gets freeDiameter's DPA.
    gw_i.shutdown().await;
    let si = pi.stats();
    assert_eq!((si.dpr_sent, si.dpa_received), (1, 1), "{si:?}");
    assert_eq!(pi.state(), PeerState::Closed);

    // freeDiameter stopping (SIGTERM) sends DPR to gw-r, which answers and closes.
    let status = fd.terminate(Duration::from_secs(10)).await;
    assert!(status.is_some(), "freeDiameterd did not exit on SIGTERM");
    wait_for("gw-r: freeDiameter's DPR", long, || {
        pr.stats().dpr_received == 1
    })
    .await;
    wait_for("gw-r: peer closed", long, || {
        pr.state() == PeerState::Closed
    })
    .await;
    assert_eq!(
        pr.stats().last_dpr_cause,
        Some(DisconnectCause::Rebooting),
        "{:?}",
        pr.stats()
    );
    gw_r.shutdown().await;

    if std::env::var_os("FD_SHOW_LOG").is_some() {
        eprintln!("{}", fd.log());
    }
    // freeDiameter's side of the story, from its log (core and dbg_msg_dumps lines).
    assert!(
        !fd.log_lines(&["SND to 'gw-r.interop.test'", "Device-Watchdog-Request"])
            .is_empty(),
        "freeDiameter's own DWR to gw-r"
    );
    assert!(
        !fd.log_lines(&["Peer 'gw-i.interop.test' sent a DPR with cause: REBOOTING"])
            .is_empty(),
        "freeDiameter saw the gateway's DPR"
    );
    assert!(
        !fd.log_lines(&["SND to 'gw-i.interop.test'", "Disconnect-Peer-Answer"])
            .is_empty(),
        "freeDiameter answered it"
    );
    // The only errors it logged are the CCRs for an application it does not serve: nothing
    // in the gateway's CER, DWR, DWA, DPR, DPA or CCR upset its parser.
    let errors = fd.log_lines(&["ERROR"]);
    assert!(
        errors
            .iter()
            .all(|l| l.contains("'Application unsupported' from 'gw-i.interop.test'")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    // Wireshark's view of every message of both connections, both ways.
    check_wire(
        capture,
        &[
            (fd.port, "gw-i <-> freeDiameter", &[257, 280, 272, 282]),
            (gw_r_port, "freeDiameter <-> gw-r", &[257, 280, 282]),
        ],
    );
}

// ---- credit control through freeDiameter as a relay ------------------------------------

const RELAY_HOST: &str = "fd.relay.test";
const RELAY_REALM: &str = "relay.test";
const OCS_HOST: &str = "ocs.charging.local";
const OCS_REALM: &str = "charging.local";
const GW_HOST: &str = "gw.operator.test";
const GW_REALM: &str = "operator.test";

/// Gateway -> freeDiameterd (relay) -> OCS simulator. The gateway knows only the relay, whose
/// realm is not the OCS's; the simulator knows only the relay (it accepts the relay's CER).
struct RelayWorld {
    sim: OcsSim,
    gw: Node,
    client: Arc<CreditControlClient>,
    fd: FreeDiameterd,
    /// Both legs (gateway <-> relay on the relay's port, relay <-> simulator on the
    /// simulator's), captured from before freeDiameter starts; checked in `stop`.
    capture: Option<Capture>,
}

async fn relay_world(install: &Install, style: UnitsStyle) -> RelayWorld {
    let sim = OcsSim::start(
        OcsSimConfig {
            origin_host: OCS_HOST.into(),
            origin_realm: OCS_REALM.into(),
            listen: "127.0.0.1:0".into(),
            accounts: [
                ("tel:+34671999000", "100.00"),
                ("tel:+34600000001", "5.00"),
                ("sip:alice@example.com", "20.00"),
            ]
            .iter()
            .map(|(s, b)| SimAccount {
                subscriber: (*s).into(),
                balance: d(b),
                currency: "EUR".into(),
            })
            .collect(),
            prices: vec![SimPrice {
                service_identifier: 1000,
                amount: d("0.99"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        dict(),
    )
    .await
    .unwrap();
    let sim_port = sim.local_addr().unwrap().port();
    let (fd, capture) = FreeDiameterd::start_with(
        install,
        &FdConfig {
            identity: RELAY_HOST.into(),
            realm: RELAY_REALM.into(),
            tw_timer: 30,
            tc_timer: 2,
            whitelist: vec![GW_HOST.into()],
            connect_peers: vec![FdPeer {
                identity: OCS_HOST.into(),
                realm: Some(OCS_REALM.into()),
                port: sim_port,
            }],
            // Requests for the OCS's realm go to the OCS (freeDiameter's own realm routing
            // would find it too; the rule makes the route explicit).
            routes: vec![format!("dr=\"{OCS_REALM}\" : \"{OCS_HOST}\" += 100 ;")],
        },
        |fd_port| wire::capture_or_skip(&format!("relay world ({style:?})"), &[fd_port, sim_port]),
    )
    .await;
    let gw = gateway(
        GW_HOST,
        GW_REALM,
        spec(RELAY_HOST, RELAY_REALM),
        Some(format!("127.0.0.1:{}", fd.port)),
        None,
        Duration::from_secs(30),
    )
    .await;
    let client =
        CreditControlClient::new(gw.router().clone(), cc_config(OCS_REALM, None, style), None);
    let long = Duration::from_secs(15);
    wait_for("the relay connected to the simulator", long, || {
        sim.router().any_usable()
    })
    .await;
    wait_for("the gateway connected to the relay", long, || {
        gw.router().any_usable()
    })
    .await;
    RelayWorld {
        sim,
        gw,
        client,
        fd,
        capture,
    }
}

impl RelayWorld {
    /// Every CCR went to the relay and every CCA came back from it; the simulator's only peer
    /// is the relay; freeDiameter logged each request forwarded to the OCS.
    fn assert_all_through_the_relay(&self, ccrs: u64) {
        let relay = only_peer(self.gw.router());
        assert_eq!(relay.spec.host, RELAY_HOST);
        assert_eq!(relay.sent.load(std::sync::atomic::Ordering::Relaxed), ccrs);
        assert_eq!(
            relay.answered.load(std::sync::atomic::Ordering::Relaxed),
            ccrs
        );
        let sim_peers = self.sim.router().peers();
        assert!(
            sim_peers
                .iter()
                .all(|p| p.spec.host.eq_ignore_ascii_case(RELAY_HOST)),
            "{:?}",
            sim_peers.iter().map(|p| &p.spec.host).collect::<Vec<_>>()
        );
        let forwarded = self
            .fd
            .log_lines(&[&format!("SND to '{OCS_HOST}'"), "4/272"])
            .len() as u64;
        assert_eq!(forwarded, ccrs, "CCRs freeDiameter forwarded to the OCS");
    }

    /// Stops everything, then checks what went on the wire on both legs.
    async fn stop(self) {
        if std::env::var("FD_SHOW_LOG").is_ok() {
            eprintln!("{}", self.fd.log());
        }
        let (relay_port, sim_port) = (self.fd.port, self.sim.local_addr().unwrap().port());
        self.gw.shutdown().await;
        self.sim.shutdown().await;
        drop(self.fd);
        check_wire(
            self.capture,
            &[
                (relay_port, "gateway <-> freeDiameter", &[257, 272]),
                (sim_port, "freeDiameter <-> simulator", &[257, 272]),
            ],
        );
    }
}

/// (op, subscriber, amount, balance, reservation) of every journal line, in order.
fn journal(sim: &OcsSim) -> Vec<(String, String, Decimal, Decimal, Option<Decimal>)> {
    sim.journal()
        .into_iter()
        .map(|e| (e.op, e.subscriber, e.amount, e.balance, e.reservation))
        .collect()
}

fn line(
    op: &str,
    subscriber: &str,
    amount: &str,
    balance: &str,
    reservation: Option<&str>,
) -> (String, String, Decimal, Decimal, Option<Decimal>) {
    (
        op.into(),
        sub(subscriber).key(),
        d(amount),
        d(balance),
        reservation.map(d),
    )
}

const STYLES: [UnitsStyle; 2] = [UnitsStyle::Mscc, UnitsStyle::CommandLevel];

/// The event flows of `tests/credit_control.rs` (debit, denial, refund, balance check, price
/// enquiry, unknown user, wrong currency), in both unit styles, through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_control_events_through_a_freediameter_relay() {
    let Some(install) = Install::find_or_skip("credit_control_events_through_a_freediameter_relay")
    else {
        return;
    };
    for style in STYLES {
        let w = relay_world(&install, style).await;
        let c = w.client.clone();
        let mut debit = event(
            "tel:+34671999000",
            RequestedAction::DirectDebiting,
            Some(eur("4.99")),
        );
        debit.tag = Some("pay-1".into());
        let r = c.event(debit).await;
        assert!(r.session_id.ends_with(";pay-1"), "{}", r.session_id);
        let a = match &r.outcome {
            Outcome::Success(a) => a,
            other => panic!("{style:?}: {other}"),
        };
        assert_eq!(a.granted_money(), Some(eur("4.99")));
        assert_eq!(
            a.origin_host, OCS_HOST,
            "answered by the OCS, not the relay"
        );
        assert_eq!(a.session_id, r.session_id);
        assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("95.01")));
        let r = c
            .event(event(
                "tel:+34600000001",
                RequestedAction::DirectDebiting,
                Some(eur("5.01")),
            ))
            .await;
        assert_eq!(
            r.outcome,
            Outcome::Denied(ResultCode::CREDIT_LIMIT_REACHED),
            "{style:?}"
        );
        assert_eq!(w.sim.balance("tel:+34600000001"), Some(eur("5.00")));
        support::cc_flows::refund_check_and_price(&c, &w.sim, style).await;
        let r = c
            .event(event(
                "tel:+34999999999",
                RequestedAction::DirectDebiting,
                Some(eur("1")),
            ))
            .await;
        assert_eq!(r.outcome, Outcome::UnknownUser);
        let gbp = Money::new(d("1.00"), currency("GBP").unwrap());
        let r = c
            .event(event(
                "tel:+34671999000",
                RequestedAction::DirectDebiting,
                Some(gbp),
            ))
            .await;
        assert_eq!(
            r.outcome,
            Outcome::RatingFailed {
                failed_avp: Some(AvpCode::CC_MONEY.0)
            },
            "{style:?}: the Failed-AVP crosses the relay"
        );
        // Nothing else moved; the books say exactly what happened.
        assert_eq!(w.sim.balance("tel:+34600000001"), Some(eur("6.25")));
        assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("95.01")));
        assert_eq!(
            journal(&w.sim),
            vec![
                line("debit", "tel:+34671999000", "4.99", "95.01", None),
                line("refund", "tel:+34600000001", "1.25", "6.25", None),
            ],
            "{style:?}"
        );
        w.assert_all_through_the_relay(8);
        w.stop().await;
    }
}

/// The reservation flows of `tests/credit_control.rs` (INITIAL, UPDATE with and without used
/// units, TERMINATION, a denied INITIAL), in both unit styles, through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_through_a_freediameter_relay() {
    let Some(install) = Install::find_or_skip("reservations_through_a_freediameter_relay") else {
        return;
    };
    for style in STYLES {
        let w = relay_world(&install, style).await;
        let c = w.client.clone();
        let r = c
            .reserve(
                sub("sip:alice@example.com"),
                eur("10.00"),
                vec![],
                Some("res-1"),
            )
            .await
            .unwrap();
        assert!(r.outcome.is_success(), "{style:?}: {}", r.outcome);
        let sid = r.session_id.clone();
        let acct = w.sim.account("sip:alice@example.com").unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("20.00"), d("10.00")));
        let rec = c.reservation(&sid).unwrap();
        assert_eq!(rec.granted, eur("10.00"));
        assert_eq!(rec.last_request_number, 0);
        let o = c
            .update(&sid, Some(eur("3.00")), Some(eur("7.00")), vec![])
            .await
            .unwrap();
        assert!(o.is_success(), "{style:?}: {o}");
        let acct = w.sim.account("sip:alice@example.com").unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("17.00"), d("7.00")));
        let rec = c.reservation(&sid).unwrap();
        assert_eq!(
            (rec.used, rec.granted, rec.last_request_number),
            (eur("3.00"), eur("7.00"), 1)
        );
        let o = c
            .update(&sid, None, Some(eur("12.00")), vec![])
            .await
            .unwrap();
        assert!(o.is_success(), "{style:?}: {o}");
        assert_eq!(
            w.sim.account("sip:alice@example.com").unwrap().reserved,
            d("12.00")
        );
        let o = c.terminate(&sid, Some(eur("1.50")), vec![]).await.unwrap();
        assert!(o.is_success(), "{style:?}: {o}");
        let acct = w.sim.account("sip:alice@example.com").unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("15.50"), d("0")));
        assert!(c.reservation(&sid).is_none());
        let r = c
            .reserve(sub("sip:alice@example.com"), eur("15.51"), vec![], None)
            .await
            .unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Denied(ResultCode::CREDIT_LIMIT_REACHED),
            "{style:?}"
        );
        assert_eq!(c.open_sessions(), 0);
        assert_eq!(w.sim.open_reservations(), 0);
        let alice = "sip:alice@example.com";
        assert_eq!(
            journal(&w.sim),
            vec![
                line("reserve", alice, "10.00", "20.00", Some("10.00")),
                line("commit", alice, "3.00", "17.00", Some("7.00")),
                line("commit", alice, "0", "17.00", Some("12.00")),
                line("commit", alice, "1.50", "15.50", None),
                line("release", alice, "10.50", "15.50", None),
            ],
            "{style:?}"
        );
        assert!(
            w.sim.journal().iter().all(|e| e.session_id == sid),
            "one session"
        );
        w.assert_all_through_the_relay(5);
        w.stop().await;
    }
}

/// Through the relay: a Destination-Host behind it, a realm it cannot reach, a protocol error
/// from the OCS, and a debit whose answer is lost, re-sent with the T flag and applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_destination_host_errors_and_retransmission() {
    let Some(install) = Install::find_or_skip("relay_destination_host_errors_and_retransmission")
    else {
        return;
    };
    let w = relay_world(&install, UnitsStyle::Mscc).await;
    let router = w.gw.router().clone();
    let debit = |amount: &str| {
        event(
            "tel:+34671999000",
            RequestedAction::DirectDebiting,
            Some(eur(amount)),
        )
    };
    // Destination-Host names the OCS, which only the relay reaches.
    let to_host = CreditControlClient::new(
        router.clone(),
        cc_config(OCS_REALM, Some(OCS_HOST), UnitsStyle::Mscc),
        None,
    );
    let r = to_host.event(debit("1.00")).await;
    assert!(r.outcome.is_success(), "{}", r.outcome);
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("99.00")));
    // A realm the relay has no route to: its 3002, with the E bit, reported at once.
    let nowhere = CreditControlClient::new(
        router.clone(),
        cc_config("nowhere.test", None, UnitsStyle::Mscc),
        None,
    );
    let r = nowhere.event(debit("1.00")).await;
    assert_eq!(
        r.outcome,
        Outcome::ProtocolError(ResultCode::UNABLE_TO_DELIVER)
    );
    // A protocol error from the OCS crosses the relay as it is.
    let key = sub("tel:+34671999000").key();
    w.sim.set_faults(|f| {
        f.fixed.insert(key.clone(), ResultCode::TOO_BUSY);
    });
    let r = w.client.event(debit("1.00")).await;
    assert_eq!(r.outcome, Outcome::ProtocolError(ResultCode::TOO_BUSY));
    w.sim.clear_faults();
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("99.00")));
    // The OCS receives a debit but its answer never comes (Tx expires): the outcome is
    // unknown, the request is re-sent with the T flag and the same End-to-End id through the
    // relay until answered, and the OCS applies it once.
    let (tx, mut resolutions) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = cc_config(OCS_REALM, None, UnitsStyle::Mscc);
    cfg.tx = Duration::from_millis(300);
    let impatient = CreditControlClient::new(router.clone(), cfg, Some(tx));
    w.sim.set_faults(|f| f.silent = true);
    let r = impatient.event(debit("2.50")).await;
    assert!(
        matches!(r.outcome, Outcome::Unknown { kept: true, .. }),
        "{}",
        r.outcome
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.sim.clear_faults();
    let res = tokio::time::timeout(Duration::from_secs(20), resolutions.recv())
        .await
        .expect("a resolution in time")
        .expect("channel open");
    assert_eq!(res.session_id, r.session_id);
    assert!(res.outcome.is_success(), "{}", res.outcome);
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("96.50")));
    let applied: Vec<_> = w
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.session_id == r.session_id)
        .collect();
    assert_eq!(applied.len(), 1, "applied exactly once: {applied:?}");
    assert!(
        !w.fd
            .log_lines(&[&format!("SND to '{OCS_HOST}'"), "4/272 f:RP-T"])
            .is_empty(),
        "the relay forwarded the re-sent request with its T flag"
    );
    w.stop().await;
}
