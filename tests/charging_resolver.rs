//! The charging service's background resolver (which re-sends operations left unresolved)
//! must never touch an operation this process is still working on: a reservation being made
//! is not released under the caller, and its session's request numbers stay its own.
//!
//! Regression: the operation was marked as in flight only after its row was durable and
//! unmarked before its outcome was; a resolver tick in either window "resolved" a pending
//! `reserve` by sending a CCR-T, and the OCS's duplicate detection then answered the real
//! CCR-U with that CCR-T's 5002.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use charging_gateway::charging::{ChargeInfo, Charging, ChargingSettings, Key};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_leaves_operations_in_flight_alone() {
    let dict = Arc::new(Dictionary::builtin().unwrap());
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: "tel:+34671999000".into(),
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
    // The resolver runs as often as it can, so that it meets every operation in flight.
    let charging = Charging::start(
        client,
        Store::memory(),
        None,
        ChargingSettings {
            inflight_wait: Duration::from_secs(5),
            reaper_interval: Duration::from_secs(3600),
            resolve_interval: Duration::from_millis(1),
        },
    )
    .await
    .unwrap();
    let sub = SubscriptionId::parse("tel:+34671999000").unwrap();
    let eur = currency("EUR").unwrap();
    let info = ChargeInfo {
        description: None,
        code: None,
        reference_code: None,
        merchant: None,
    };
    let key = Key::new("app", None);
    const N: usize = 40;
    for i in 0..N {
        let done = charging
            .reserve(&key, &sub, &sub.key(), Money::new(d("2.00"), eur), &info)
            .await
            .unwrap_or_else(|f| panic!("reserve {i}: {f}"));
        let id = done.reservation_id.unwrap();
        charging
            .reserve_additional(&key, &id, Money::new(d("1.00"), eur), &info)
            .await
            .unwrap_or_else(|f| panic!("reserve-additional {i} on {id}: {f}"));
    }
    assert_eq!(sim.open_reservations(), N);
    assert_eq!(charging.open_reservations(), N);
    let acct = sim.account("tel:+34671999000").unwrap();
    assert_eq!(acct.reserved, d("120.00"));
    assert_eq!(acct.balance, d("1000.00"));
    // Nothing but reservations and their updates reached the OCS.
    let ops: Vec<String> = sim.journal().iter().map(|e| e.op.clone()).collect();
    assert!(
        ops.iter().all(|o| o == "reserve" || o == "commit"),
        "{ops:?}"
    );
}
