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

use charging_gateway::charging::{ChargeInfo, Charging, Failure, Key};
use charging_gateway::config::GatewayConfig;
use charging_gateway::credit_control::{Money, SubscriptionId, money::currency};
use charging_gateway::gateway::Gateway;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "tel:+34671999000";

struct World {
    gw: Gateway,
    charging: Arc<Charging>,
}

impl World {
    fn sim(&self) -> &OcsSim {
        self.gw.sim.as_ref().unwrap()
    }
}

/// The assembled gateway with its simulator (ALICE holding 1000.00 EUR), the charging
/// service's resolver ticking every `resolve_every`, the reaper out of the way.
async fn world(resolve_every: Duration) -> World {
    let mut cfg = GatewayConfig::from_toml(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:1"
[credit_control]
reaper_interval = "1h"
[store]
backend = "memory"
"#,
    )
    .unwrap();
    cfg.credit_control.resolve_interval = resolve_every;
    let sim = OcsSimConfig {
        listen: "127.0.0.1:0".into(),
        accounts: vec![SimAccount {
            subscriber: ALICE.into(),
            balance: d("1000.00"),
            currency: "EUR".into(),
        }],
        ..OcsSimConfig::default()
    };
    let gw = Gateway::start(cfg, Some(sim)).await.unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let charging = Arc::clone(&gw.charging);
    World { gw, charging }
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
    assert_eq!(w.sim().open_reservations(), N);
    assert_eq!(w.charging.open_reservations(), N);
    let acct = w.sim().account(ALICE).unwrap();
    assert_eq!(acct.reserved, d("120.00"));
    assert_eq!(acct.balance, d("1000.00"));
    // Nothing but reservations and their updates reached the OCS.
    let ops: Vec<String> = w.sim().journal().iter().map(|e| e.op.clone()).collect();
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
    assert_eq!(w.sim().account(ALICE).unwrap().balance, d("992.00"));
    assert_eq!(w.sim().open_reservations(), 0);
}
