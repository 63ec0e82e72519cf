//! The credit-control client against the OCS simulator over real TCP: every flow in both unit
//! styles, failure handling under Tx expiry for each CCFH / DDFH value, faults, and a property
//! test that balances move by exactly the successful credits and debits.

mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use charging_gateway::credit_control::{
    CcConfig, CcFailureHandling, CreditControlClient, DdFailureHandling, EventRequest, Money,
    Outcome, RequestedAction, Resolution, ServiceParameter, ServiceParameterType, StyleConfig,
    SubscriptionId, UnitsStyle, money::currency,
};
use charging_gateway::diameter::codec::{AvpCode, Limits, ResultCode};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{LocalIdentity, PeerSettings};
use charging_gateway::diameter::router::{NoApplications, PeerSpec, RouterSettings};
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount, SimPrice};

use support::cc_flows::{eur, event};

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

struct World {
    sim: OcsSim,
    gw: Node,
    client: Arc<CreditControlClient>,
    resolutions: mpsc::UnboundedReceiver<Resolution>,
}

struct Opts {
    style: UnitsStyle,
    tx: Duration,
    ccfh: CcFailureHandling,
    ddfh: DdFailureHandling,
    validity: u32,
    accounts: Vec<(&'static str, &'static str)>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            style: UnitsStyle::Mscc,
            tx: Duration::from_secs(5),
            ccfh: CcFailureHandling::Terminate,
            ddfh: DdFailureHandling::TerminateOrBuffer,
            validity: 900,
            accounts: vec![
                ("tel:+34671999000", "100.00"),
                ("tel:+34600000001", "5.00"),
                ("sip:alice@example.com", "20.00"),
            ],
        }
    }
}

async fn world(o: Opts) -> World {
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            validity_time: o.validity,
            accounts: o
                .accounts
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
    let gw = Node::start(
        NodeConfig {
            local: LocalIdentity {
                origin_host: "gw.charging.local".into(),
                origin_realm: "charging.local".into(),
                host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                vendor_id: 0,
                product_name: "test".into(),
                firmware_revision: 1,
                origin_state_id: 1,
                auth_application_ids: vec![4],
                acct_application_ids: vec![],
                vendor_specific_auth_apps: vec![],
                supported_vendor_ids: vec![10415],
            },
            listen: None,
            accept_unknown_peers: false,
            peers: vec![PeerConfig {
                spec: PeerSpec {
                    name: "ocs".into(),
                    host: "ocs.charging.local".into(),
                    realm: "charging.local".into(),
                    priority: 1,
                    weight: 1,
                },
                connect: Some(sim.local_addr().unwrap().to_string()),
            }],
            peer_settings: PeerSettings {
                // A reopened connection carries traffic after three watchdog round trips
                // (RFC 3539): a short Tw keeps the reconnect tests quick.
                watchdog_interval: Duration::from_millis(200),
                watchdog_jitter: Duration::from_millis(20),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_millis(200),
                ..PeerSettings::default()
            },
            router: RouterSettings {
                request_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(2),
        },
        dict(),
        Arc::new(NoApplications),
    )
    .await
    .unwrap();
    let (tx, resolutions) = mpsc::unbounded_channel();
    let client = CreditControlClient::new(
        gw.router().clone(),
        CcConfig {
            service_context_id: "payment.v1@charging.local".into(),
            destination_realm: "charging.local".into(),
            destination_host: None,
            style: StyleConfig::both(o.style.into()),
            default_currency: currency("EUR").unwrap(),
            ccfh: o.ccfh,
            ddfh: o.ddfh,
            tx: o.tx,
            service_identifier: Some(1000),
            rating_group: Some(1),
            extra_avps: Vec::new(),
            max_sessions: 10_000,
            reservation_ttl: Duration::from_secs(3600),
            resolve_interval: Duration::from_millis(150),
            resolve_attempts: 40,
        },
        Some(tx),
    );
    for _ in 0..300 {
        if gw.router().any_usable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        gw.router().any_usable(),
        "gateway never connected to the simulator"
    );
    World {
        sim,
        gw,
        client,
        resolutions,
    }
}

fn debit(s: &str, amount: Money) -> EventRequest {
    EventRequest {
        subscription: sub(s),
        action: RequestedAction::DirectDebiting,
        amount: Some(amount),
        service_identifier: None,
        parameters: vec![ServiceParameter::new(
            ServiceParameterType::ReferenceCode,
            "ref-1",
        )],
        tag: Some("pay-1".into()),
    }
}

async fn next_resolution(w: &mut World) -> Resolution {
    tokio::time::timeout(Duration::from_secs(10), w.resolutions.recv())
        .await
        .expect("a resolution in time")
        .expect("channel open")
}

const STYLES: [UnitsStyle; 2] = [UnitsStyle::Mscc, UnitsStyle::CommandLevel];

#[tokio::test]
async fn event_debit_refund_check_and_price_in_both_styles() {
    for style in STYLES {
        let w = world(Opts {
            style,
            ..Opts::default()
        })
        .await;
        let c = w.client.clone();
        let r = c.event(debit("tel:+34671999000", eur("4.99"))).await;
        assert!(r.session_id.ends_with(";pay-1"), "{}", r.session_id);
        let a = match &r.outcome {
            Outcome::Success(a) => a,
            other => panic!("{style:?}: {other}"),
        };
        assert_eq!(a.granted_money(), Some(eur("4.99")));
        assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("95.01")));
        // Refused for lack of credit: MSCC style carries 4012 inside the MSCC (command level
        // 2001), command-level style at command level; both are a denial.
        let r = c.event(debit("tel:+34600000001", eur("5.01"))).await;
        assert_eq!(
            r.outcome,
            Outcome::Denied(ResultCode::CREDIT_LIMIT_REACHED),
            "{style:?}"
        );
        assert_eq!(w.sim.balance("tel:+34600000001"), Some(eur("5.00")));
        support::cc_flows::refund_check_and_price(&c, &w.sim, style).await;
        // Nothing else moved.
        assert_eq!(w.sim.balance("tel:+34600000001"), Some(eur("6.25")));
        w.gw.shutdown().await;
        w.sim.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_currency() {
    let w = world(Opts::default()).await;
    let r = w.client.event(debit("tel:+34999999999", eur("1"))).await;
    assert_eq!(r.outcome, Outcome::UnknownUser);
    let gbp = Money::new(d("1.00"), currency("GBP").unwrap());
    let r = w.client.event(debit("tel:+34671999000", gbp)).await;
    assert_eq!(
        r.outcome,
        Outcome::RatingFailed {
            failed_avp: Some(AvpCode::CC_MONEY.0)
        }
    );
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("100.00")));
}

#[tokio::test]
async fn reservation_lifecycle_in_both_styles() {
    for style in STYLES {
        let w = world(Opts {
            style,
            ..Opts::default()
        })
        .await;
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
        // Charge 3.00 against it; keep the remaining 7.00 reserved.
        let o = c
            .update(&sid, Some(eur("3.00")), Some(eur("7.00")), vec![])
            .await
            .unwrap();
        assert!(o.is_success(), "{o}");
        let acct = w.sim.account("sip:alice@example.com").unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("17.00"), d("7.00")));
        let rec = c.reservation(&sid).unwrap();
        assert_eq!(
            (rec.used, rec.granted, rec.last_request_number),
            (eur("3.00"), eur("7.00"), 1)
        );
        // Reserve 5.00 more (7 + 5 = 12 > 10 left available? 17 - 0 = 17 available): granted.
        let o = c
            .update(&sid, None, Some(eur("12.00")), vec![])
            .await
            .unwrap();
        assert!(o.is_success(), "{o}");
        assert_eq!(
            w.sim.account("sip:alice@example.com").unwrap().reserved,
            d("12.00")
        );
        // Release: charge 1.50 more, the rest goes back.
        let o = c.terminate(&sid, Some(eur("1.50")), vec![]).await.unwrap();
        assert!(o.is_success(), "{o}");
        let acct = w.sim.account("sip:alice@example.com").unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("15.50"), d("0")));
        assert!(
            c.reservation(&sid).is_none(),
            "terminated sessions leave the map"
        );
        assert!(c.update(&sid, None, None, vec![]).await.is_err());
        // A reservation beyond the balance is denied.
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
    }
}

#[tokio::test]
async fn a_reservation_the_ocs_forgot_is_5002_and_expired_ones_are_reaped() {
    let w = world(Opts {
        validity: 1,
        ..Opts::default()
    })
    .await;
    let c = w.client.clone();
    let r = c
        .reserve(sub("tel:+34671999000"), eur("2.00"), vec![], None)
        .await
        .unwrap();
    assert!(r.outcome.is_success());
    // The simulator releases it after Tcc = 2 x Validity-Time.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(w.sim.open_reservations(), 0);
    let o = c
        .update(&r.session_id, Some(eur("1.00")), None, vec![])
        .await
        .unwrap();
    assert_eq!(o, Outcome::UnknownSession);
    assert!(c.reservation(&r.session_id).is_none());
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("100.00")));
    // The client's own reaper terminates a reservation past its validity.
    let r = c
        .reserve(sub("tel:+34671999000"), eur("2.00"), vec![], None)
        .await
        .unwrap();
    assert!(r.outcome.is_success());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.reap().await, 1);
    assert_eq!(c.open_sessions(), 0);
    assert_eq!(w.sim.open_reservations(), 0);
}

#[tokio::test]
async fn tx_expiry_on_a_debit_under_each_ddfh() {
    for ddfh in [
        DdFailureHandling::TerminateOrBuffer,
        DdFailureHandling::Continue,
    ] {
        let mut w = world(Opts {
            tx: Duration::from_millis(200),
            ddfh,
            ..Opts::default()
        })
        .await;
        w.sim.set_faults(|f| f.latency = Duration::from_millis(600));
        let r = w.client.event(debit("tel:+34671999000", eur("1.00"))).await;
        match &r.outcome {
            Outcome::Unknown { kept, .. } => {
                assert_eq!(
                    *kept,
                    ddfh == DdFailureHandling::TerminateOrBuffer,
                    "{ddfh:?}"
                );
            }
            other => panic!("{ddfh:?}: expected unknown, got {other}"),
        }
        // The late answer resolves it; the OCS applied it once.
        let res = next_resolution(&mut w).await;
        assert_eq!(res.session_id, r.session_id);
        assert!(res.outcome.is_success(), "{ddfh:?}: {}", res.outcome);
        assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("99.00")));
    }
}

#[tokio::test]
async fn unanswered_debit_is_resent_with_the_t_flag_and_applied_once() {
    let mut w = world(Opts {
        tx: Duration::from_millis(200),
        ..Opts::default()
    })
    .await;
    // The OCS applies the debit but its answers are lost for a while (latency beyond the
    // router's patience is modelled by silence, then recovery).
    w.sim.set_faults(|f| f.silent = true);
    let r = w.client.event(debit("tel:+34671999000", eur("2.50"))).await;
    assert!(
        matches!(r.outcome, Outcome::Unknown { kept: true, .. }),
        "{}",
        r.outcome
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.sim.clear_faults();
    let res = next_resolution(&mut w).await;
    assert!(res.outcome.is_success(), "{}", res.outcome);
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("97.50")));
    let applied: Vec<_> = w
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.session_id == r.session_id)
        .collect();
    assert_eq!(applied.len(), 1, "applied exactly once");
}

#[tokio::test]
async fn tx_expiry_on_a_reservation_releases_it_under_each_ccfh() {
    for ccfh in [
        CcFailureHandling::Terminate,
        CcFailureHandling::Continue,
        CcFailureHandling::RetryAndTerminate,
    ] {
        let w = world(Opts {
            tx: Duration::from_millis(200),
            ccfh,
            ..Opts::default()
        })
        .await;
        w.sim.set_faults(|f| f.latency = Duration::from_millis(500));
        let r = w
            .client
            .reserve(sub("tel:+34671999000"), eur("30.00"), vec![], None)
            .await
            .unwrap();
        assert!(r.outcome.is_unknown(), "{ccfh:?}: {}", r.outcome);
        assert!(
            w.client.reservation(&r.session_id).is_none(),
            "not usable by the caller"
        );
        // The late CCA-I reserved 30.00; the client releases it with CCR-T.
        let mut released = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let a = w.sim.account("tel:+34671999000").unwrap();
            if a.reserved.is_zero() && w.sim.journal().iter().any(|e| e.op == "release") {
                released = true;
                break;
            }
        }
        assert!(released, "{ccfh:?}: reservation not released");
        assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("100.00")));
    }
}

#[tokio::test]
async fn tx_expiry_on_an_update_resolves_and_applies_once() {
    let mut w = world(Opts {
        tx: Duration::from_millis(200),
        ..Opts::default()
    })
    .await;
    let c = w.client.clone();
    let r = c
        .reserve(sub("tel:+34671999000"), eur("10.00"), vec![], None)
        .await
        .unwrap();
    assert!(r.outcome.is_success());
    w.sim.set_faults(|f| f.latency = Duration::from_millis(500));
    let o = c
        .update(&r.session_id, Some(eur("4.00")), Some(eur("6.00")), vec![])
        .await
        .unwrap();
    assert!(o.is_unknown(), "{o}");
    assert!(
        c.update(&r.session_id, None, None, vec![]).await
            == Err(charging_gateway::credit_control::SessionError::Busy),
        "busy until resolved"
    );
    let res = next_resolution(&mut w).await;
    assert!(res.outcome.is_success(), "{}", res.outcome);
    w.sim.clear_faults();
    let rec = c.reservation(&r.session_id).unwrap();
    assert_eq!((rec.used, rec.granted), (eur("4.00"), eur("6.00")));
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("96.00")));
    let o = c.terminate(&r.session_id, None, vec![]).await.unwrap();
    assert!(o.is_success(), "{o}");
    assert_eq!(w.sim.account("tel:+34671999000").unwrap().reserved, d("0"));
}

#[tokio::test]
async fn faults_fixed_codes_protocol_errors_and_dropped_connections() {
    let mut w = world(Opts {
        tx: Duration::from_secs(2),
        ..Opts::default()
    })
    .await;
    let key = sub("tel:+34671999000").key();
    w.sim.set_faults(|f| {
        f.fixed
            .insert(key.clone(), ResultCode::END_USER_SERVICE_DENIED);
    });
    let r = w.client.event(debit("tel:+34671999000", eur("1"))).await;
    assert_eq!(
        r.outcome,
        Outcome::Denied(ResultCode::END_USER_SERVICE_DENIED)
    );
    w.sim.set_faults(|f| {
        f.fixed.insert(key.clone(), ResultCode::TOO_BUSY);
    });
    let r = w.client.event(debit("tel:+34671999000", eur("1"))).await;
    assert_eq!(
        r.outcome,
        Outcome::ProtocolError(ResultCode::TOO_BUSY),
        "one peer: nowhere else to retry"
    );
    w.sim.clear_faults();
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("100.00")));
    // The OCS drops the connection while the debit is in flight: unknown, kept, resolved after
    // the gateway reconnects.
    w.sim.set_faults(|f| f.close_on_next = true);
    let r = w.client.event(debit("tel:+34671999000", eur("3"))).await;
    assert!(
        matches!(r.outcome, Outcome::Unknown { kept: true, .. }),
        "{}",
        r.outcome
    );
    let res = next_resolution(&mut w).await;
    assert!(res.outcome.is_success(), "{}", res.outcome);
    assert_eq!(w.sim.balance("tel:+34671999000"), Some(eur("97.00")));
    // No peer at all: nothing sent, nothing buffered.
    w.gw.router().abort_connections();
    w.sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = w.client.event(debit("tel:+34671999000", eur("1"))).await;
    assert!(
        matches!(r.outcome, Outcome::Unavailable(_)),
        "{}",
        r.outcome
    );
}

#[derive(Clone, Debug)]
enum Op {
    Debit(usize, u32),
    Refund(usize, u32),
    /// Reserve, charge part of it, release.
    Session(usize, u32, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 1u32..4000).prop_map(|(a, c)| Op::Debit(a, c)),
        (0usize..3, 1u32..2000).prop_map(|(a, c)| Op::Refund(a, c)),
        (0usize..3, 1u32..3000, 0u32..3000).prop_map(|(a, r, u)| Op::Session(a, r, u)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the sequence, each balance ends at its start plus the successful credits minus
    /// the successful debits, exactly (cents, no float).
    #[test]
    fn balances_move_by_exactly_the_successful_operations(
        ops in proptest::collection::vec(op(), 1..25),
        style in prop_oneof![Just(UnitsStyle::Mscc), Just(UnitsStyle::CommandLevel)],
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let subs = ["tel:+34671999000", "tel:+34600000001", "sip:alice@example.com"];
            let w = world(Opts { style, ..Opts::default() }).await;
            let mut expected = [d("100.00"), d("5.00"), d("20.00")];
            let cents = |c: u32| Decimal::new(i64::from(c), 2);
            for op in ops {
                match op {
                    Op::Debit(a, c) => {
                        let r = w.client.event(debit(subs[a], Money::new(cents(c), currency("EUR").unwrap()))).await;
                        match r.outcome {
                            Outcome::Success(_) => expected[a] -= cents(c),
                            Outcome::Denied(_) => {}
                            other => panic!("debit: {other}"),
                        }
                    }
                    Op::Refund(a, c) => {
                        let r = w.client.event(event(subs[a], RequestedAction::RefundAccount, Some(Money::new(cents(c), currency("EUR").unwrap())))).await;
                        assert!(r.outcome.is_success(), "refund: {}", r.outcome);
                        expected[a] += cents(c);
                    }
                    Op::Session(a, reserve, use_) => {
                        let r = w.client.reserve(sub(subs[a]), Money::new(cents(reserve), currency("EUR").unwrap()), vec![], None).await.unwrap();
                        if !r.outcome.is_success() {
                            continue;
                        }
                        let used = cents(use_.min(reserve));
                        let o = w.client.terminate(&r.session_id, Some(Money::new(used, currency("EUR").unwrap())), vec![]).await.unwrap();
                        assert!(o.is_success(), "terminate: {o}");
                        expected[a] -= used;
                    }
                }
            }
            for (i, s) in subs.iter().enumerate() {
                let acct = w.sim.account(s).unwrap();
                assert_eq!(acct.balance, expected[i], "{s}");
                assert_eq!(acct.reserved, Decimal::ZERO, "{s}");
            }
            w.gw.shutdown().await;
            w.sim.shutdown().await;
        });
    }
}
