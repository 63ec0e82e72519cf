//! The charging service's idempotent frame, at its edges.
//!
//! - The background resolver (which re-sends operations left unresolved) never touches an
//!   operation this process is still working on. Regression: the operation was marked as in
//!   flight only after its row was durable and unmarked before its outcome was; a resolver
//!   tick in either window "resolved" a pending `reserve` by sending a CCR-T (a reservation
//!   released under its caller, or a 5002 the OCS's duplicate detection then replayed to the
//!   real CCR-U).
//! - A retry of a reservation operation is answered with the first outcome. Regression: the
//!   reservation's state (which the first request changed) was checked first, so a retried
//!   charge was refused as exceeding what it had itself left.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use charging_gateway::charging::{ChargeInfo, Charging, ChargingSettings, Failure, Key};
use charging_gateway::credit_control::{
    CcConfig, CcFailureHandling, CreditControlClient, DdFailureHandling, Money, SubscriptionId,
    UnitsStyle, money::currency,
};
use charging_gateway::diameter::codec::Limits;
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{LocalIdentity, PeerSettings};
use charging_gateway::diameter::router::{NoApplications, PeerSpec, RouterSettings};
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};
use charging_gateway::store::Store;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "tel:+34671999000";

struct World {
    sim: OcsSim,
    _gw: Node,
    charging: Arc<Charging>,
}

/// The simulator with ALICE holding 1000.00 EUR, a gateway node and client, and the charging
/// service whose resolver ticks every `resolve_every`.
async fn world(resolve_every: Duration) -> World {
    let dict = Arc::new(Dictionary::builtin().unwrap());
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: ALICE.into(),
                balance: d("1000.00"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::clone(&dict),
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
            peer_settings: PeerSettings::default(),
            router: RouterSettings::default(),
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(2),
        },
        Arc::clone(&dict),
        Arc::new(NoApplications),
    )
    .await
    .unwrap();
    let client = CreditControlClient::new(
        gw.router().clone(),
        CcConfig {
            service_context_id: "payment.v1@charging.local".into(),
            destination_realm: "charging.local".into(),
            destination_host: None,
            style: UnitsStyle::Mscc,
            default_currency: currency("EUR").unwrap(),
            ccfh: CcFailureHandling::Terminate,
            ddfh: DdFailureHandling::TerminateOrBuffer,
            tx: Duration::from_secs(5),
            service_identifier: None,
            rating_group: None,
            extra_avps: Vec::new(),
            max_sessions: 1000,
            reservation_ttl: Duration::from_secs(3600),
            resolve_interval: Duration::from_millis(100),
            resolve_attempts: 10,
        },
        None,
    );
    for _ in 0..500 {
        if gw.router().any_usable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gw.router().any_usable());
    let charging = Charging::start(
        client,
        Store::memory(),
        None,
        ChargingSettings {
            inflight_wait: Duration::from_secs(5),
            reaper_interval: Duration::from_secs(3600),
            resolve_interval: resolve_every,
        },
    )
    .await
    .unwrap();
    World {
        sim,
        _gw: gw,
        charging,
    }
}

fn info(reference: Option<&str>) -> ChargeInfo {
    ChargeInfo {
        description: None,
        code: None,
        reference_code: reference.map(str::to_string),
        merchant: None,
    }
}

fn eur(s: &str) -> Money {
    Money::new(d(s), currency("EUR").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_leaves_operations_in_flight_alone() {
    // The resolver runs as often as it can, so that it meets every operation in flight.
    let w = world(Duration::from_millis(1)).await;
    let sub = SubscriptionId::parse(ALICE).unwrap();
    let key = Key::new("app", None);
    const N: usize = 40;
    for i in 0..N {
        let done = w
            .charging
            .reserve(&key, &sub, &sub.key(), eur("2.00"), &info(None))
            .await
            .unwrap_or_else(|f| panic!("reserve {i}: {f}"));
        let id = done.reservation_id.unwrap();
        w.charging
            .reserve_additional(&key, &id, eur("1.00"), &info(None))
            .await
            .unwrap_or_else(|f| panic!("reserve-additional {i} on {id}: {f}"));
    }
    assert_eq!(w.sim.open_reservations(), N);
    assert_eq!(w.charging.open_reservations(), N);
    let acct = w.sim.account(ALICE).unwrap();
    assert_eq!(acct.reserved, d("120.00"));
    assert_eq!(acct.balance, d("1000.00"));
    // Nothing but reservations and their updates reached the OCS.
    let ops: Vec<String> = w.sim.journal().iter().map(|e| e.op.clone()).collect();
    assert!(
        ops.iter().all(|o| o == "reserve" || o == "commit"),
        "{ops:?}"
    );
}

#[tokio::test]
async fn a_retried_reservation_operation_gets_its_first_outcome() {
    let w = world(Duration::from_secs(3600)).await;
    let sub = SubscriptionId::parse(ALICE).unwrap();
    let id = w
        .charging
        .reserve(
            &Key::new("app", None),
            &sub,
            &sub.key(),
            eur("10.00"),
            &info(None),
        )
        .await
        .unwrap()
        .reservation_id
        .unwrap();
    let key = Key::new("app", Some("use-1"));
    let first = w
        .charging
        .charge_reservation(&key, &id, eur("8.00"), &info(Some("use-1")))
        .await
        .unwrap();
    // 2.00 left: the retry of the 8.00 charge is its first outcome, not "exceeds".
    let again = w
        .charging
        .charge_reservation(&key, &id, eur("8.00"), &info(Some("use-1")))
        .await
        .unwrap();
    assert_eq!(again.operation_id, first.operation_id);
    assert!(again.replayed);
    // The same key for another request is refused, whatever the reservation's state.
    let other = w
        .charging
        .charge_reservation(&key, &id, eur("1.00"), &info(Some("use-1")))
        .await;
    assert!(matches!(other, Err(Failure::KeyReused { .. })), "{other:?}");
    // Still so once the reservation is released.
    w.charging
        .release(&Key::new("app", None), &id)
        .await
        .unwrap();
    let late = w
        .charging
        .charge_reservation(&key, &id, eur("8.00"), &info(Some("use-1")))
        .await
        .unwrap();
    assert_eq!(late.operation_id, first.operation_id);
    assert_eq!(w.sim.account(ALICE).unwrap().balance, d("992.00"));
    assert_eq!(w.sim.open_reservations(), 0);
}
