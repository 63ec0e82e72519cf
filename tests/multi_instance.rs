//! Several gateway instances on one store, in one process: each its own Diameter identity,
//! node, client and charging, all on the same store and in front of the same OCS simulator
//! over TCP. What decides money is decided in the store: a reservation opened through one
//! instance is stepped and released through the others with consecutive request numbers, two
//! instances stepping it at once never send the same number, an operation in flight on one is
//! left to it, and what an instance that stopped left unresolved or open is taken over by
//! another once its lease runs out. (The same across processes on PostgreSQL, with one of them
//! killed: `tests/cluster_postgres.rs`.)

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use charging_gateway::charging::{ChargeInfo, Failure, Key};
use charging_gateway::config::GatewayConfig;
use charging_gateway::credit_control::{Money, SubscriptionId, money::currency};
use charging_gateway::gateway::{Gateway, StartOptions};
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};
use charging_gateway::store::{OpState, ReservationState, Store};

const ALICE: &str = "tel:+34671999000";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn eur(s: &str) -> Money {
    Money::new(d(s), currency("EUR").unwrap())
}

fn info(r: &str) -> ChargeInfo {
    ChargeInfo {
        description: Some("multi".into()),
        code: None,
        reference_code: Some(r.into()),
        merchant: None,
    }
}

async fn simulator() -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: ALICE.into(),
                balance: d("100.00"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        std::sync::Arc::new(charging_gateway::diameter::dict::Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// Instance `n` (Origin-Host `gw<n>.charging.local`) on `store`, dialling `sim`.
async fn instance(n: u32, sim: &OcsSim, store: &Store, tx: &str) -> Gateway {
    let cfg = GatewayConfig::from_toml(&format!(
        r#"
[diameter]
origin_host = "gw{n}.charging.local"
origin_realm = "charging.local"
[diameter.timers]
request_timeout = "{tx}"
reconnect_min = "100ms"
reconnect_max = "200ms"
drain_timeout = "100ms"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{addr}"
[credit_control]
resolve_interval = "200ms"
reaper_interval = "100ms"
reservation_ttl = "1h"
[cluster]
lease = "1s"
[store]
backend = "memory"
[ocs_sim]
enabled = false
"#,
        addr = sim.local_addr().unwrap()
    ))
    .unwrap();
    let gw = Gateway::start_with(
        cfg,
        StartOptions {
            sim: None,
            store: Some(store.clone()),
        },
    )
    .await
    .unwrap();
    assert!(
        gw.wait_ready(Duration::from_secs(5)).await,
        "gw{n} not ready"
    );
    gw
}

fn alice() -> SubscriptionId {
    SubscriptionId::parse(ALICE).unwrap()
}

/// The request numbers the OCS applied for `session_id`, in order.
fn numbers(sim: &OcsSim, session_id: &str) -> Vec<u32> {
    sim.journal()
        .iter()
        .filter(|e| e.session_id == session_id)
        .map(|e| e.request_number)
        .collect()
}

#[tokio::test]
async fn a_reservation_opened_on_one_instance_is_stepped_on_the_others() {
    let sim = simulator().await;
    let store = Store::memory();
    let a = instance(1, &sim, &store, "2s").await;
    let b = instance(2, &sim, &store, "2s").await;
    let c = instance(3, &sim, &store, "2s").await;
    let app = Key::new("app", None);
    let r = a
        .charging
        .reserve(&app, &alice(), ALICE, eur("10.00"), &info("rsv"))
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    b.charging
        .charge_reservation(&Key::new("app", Some("c1")), &id, eur("4.00"), &info("c1"))
        .await
        .unwrap();
    // Instance A's view is behind (B stepped it): the store decides, A catches up.
    let mut charged = None;
    for _ in 0..3 {
        match a
            .charging
            .charge_reservation(&Key::new("app", Some("c2")), &id, eur("1.00"), &info("c2"))
            .await
        {
            Ok(done) => {
                charged = Some(done);
                break;
            }
            Err(Failure::ReservationBusy { .. }) => continue,
            Err(f) => panic!("{f}"),
        }
    }
    charged.expect("A steps it after catching up");
    c.charging.release(&app, &id).await.unwrap();
    let row = store.reservation(&id).await.unwrap().unwrap();
    assert_eq!(row.state, ReservationState::Released);
    assert_eq!(row.charged, d("5.00"));
    assert_eq!(row.pending, None);
    assert_eq!(
        sim.balance(ALICE).unwrap().amount,
        d("95.00"),
        "5.00 charged, the rest released"
    );
    // INITIAL, then each instance's step with the next number: none sent twice.
    assert_eq!(numbers(&sim, &r.session_id), vec![0, 1, 2, 3]);
    for gw in [a, b, c] {
        gw.shutdown().await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn two_instances_stepping_one_reservation_at_once_never_send_the_same_number() {
    let sim = simulator().await;
    let store = Store::memory();
    let a = instance(1, &sim, &store, "2s").await;
    let b = instance(2, &sim, &store, "2s").await;
    let r = a
        .charging
        .reserve(
            &Key::new("app", None),
            &alice(),
            ALICE,
            eur("50.00"),
            &info("race"),
        )
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    // B takes it up first (so both have it), then both step it at once, many times.
    b.charging
        .charge_reservation(
            &Key::new("app", Some("pre")),
            &id,
            eur("0.01"),
            &info("pre"),
        )
        .await
        .unwrap();
    let mut charged = d("0.01");
    for round in 0..20 {
        let ka = Key::new("app", Some(&format!("a{round}")));
        let kb = Key::new("app", Some(&format!("b{round}")));
        let (ia, ib) = (info(&format!("a{round}")), info(&format!("b{round}")));
        let (ra, rb) = tokio::join!(
            a.charging.charge_reservation(&ka, &id, eur("0.01"), &ia),
            b.charging.charge_reservation(&kb, &id, eur("0.01"), &ib),
        );
        for r in [ra, rb] {
            match r {
                Ok(_) => charged += d("0.01"),
                Err(Failure::ReservationBusy { .. }) => {}
                Err(f) => panic!("round {round}: {f}"),
            }
        }
    }
    let applied = numbers(&sim, &r.session_id);
    let mut sorted = applied.clone();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        applied.len(),
        "a number sent twice: {applied:?}"
    );
    assert!(
        applied.windows(2).all(|w| w[1] == w[0] + 1),
        "not consecutive: {applied:?}"
    );
    let row = store.reservation(&id).await.unwrap().unwrap();
    let committed: Decimal = sim
        .journal()
        .iter()
        .filter(|e| e.session_id == r.session_id && e.op == "commit")
        .map(|e| e.amount)
        .sum();
    assert_eq!(
        committed, charged,
        "the OCS charged what the API said it did"
    );
    assert_eq!(row.charged, charged);
    assert_eq!(row.last_request_number, *applied.last().unwrap());
    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn what_a_stopped_instance_left_is_taken_over_after_its_lease() {
    let sim = simulator().await;
    let store = Store::memory();
    let a = instance(1, &sim, &store, "500ms").await;
    let b = instance(2, &sim, &store, "500ms").await;
    // A reservation A opened, and a charge A sent whose answer never came.
    let r = a
        .charging
        .reserve(
            &Key::new("app", None),
            &alice(),
            ALICE,
            eur("10.00"),
            &info("left"),
        )
        .await
        .unwrap();
    let rsv = r.reservation_id.unwrap();
    sim.set_faults(|f| f.silent = true);
    let key = Key::new("app", Some("lost-1"));
    let lost = a
        .charging
        .charge(&key, &alice(), ALICE, eur("3.00"), &info("lost-1"))
        .await
        .unwrap_err();
    assert!(lost.is_unknown(), "{lost}");
    // While A lives, a retry through B is told it is in progress, and nothing is sent.
    let busy = b
        .charging
        .charge(&key, &alice(), ALICE, eur("3.00"), &info("lost-1"))
        .await
        .unwrap_err();
    assert!(matches!(busy, Failure::InProgress { .. }), "{busy}");
    // A stops (its leases are no longer renewed); the OCS answers again.
    a.shutdown().await;
    sim.clear_faults();
    // B's resolver claims the operation once A's lease ran out and learns its outcome.
    let mut row = None;
    for _ in 0..60 {
        let o = store
            .operation_by_key("app", "lost-1")
            .await
            .unwrap()
            .unwrap();
        if o.state.is_final() {
            row = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = row.expect("resolved by B");
    assert_eq!(row.state, OpState::Succeeded);
    assert_eq!(row.lease.unwrap().owner, "gw2.charging.local");
    let debits = sim
        .journal()
        .iter()
        .filter(|e| e.session_id == row.session_id && e.op == "debit")
        .count();
    assert_eq!(debits, 1, "applied once");
    // The retry through B now answers the outcome.
    b.charging
        .charge(&key, &alice(), ALICE, eur("3.00"), &info("lost-1"))
        .await
        .unwrap();
    // A's open reservation stays usable through B.
    b.charging
        .charge_reservation(
            &Key::new("app", Some("after")),
            &rsv,
            eur("2.00"),
            &info("after"),
        )
        .await
        .unwrap();
    b.charging
        .release(&Key::new("app", None), &rsv)
        .await
        .unwrap();
    assert_eq!(sim.balance(ALICE).unwrap().amount, d("95.00"));
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reservation_of_a_stopped_instance_is_released_at_its_expiry_by_another() {
    let sim = simulator().await;
    let store = Store::memory();
    let a = instance(1, &sim, &store, "2s").await;
    let r = a
        .charging
        .reserve(
            &Key::new("app", None),
            &alice(),
            ALICE,
            eur("10.00"),
            &info("exp"),
        )
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    a.shutdown().await;
    // Expired while its instance is gone.
    let mut row = store.reservation(&id).await.unwrap().unwrap();
    row.expires_ms = 1;
    store.put_reservation(row).await.unwrap();
    let b = instance(2, &sim, &store, "2s").await;
    let mut state = None;
    for _ in 0..60 {
        let r = store.reservation(&id).await.unwrap().unwrap();
        if r.state != ReservationState::Open {
            state = Some(r.state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, Some(ReservationState::Expired));
    assert_eq!(sim.open_reservations(), 0);
    assert_eq!(sim.balance(ALICE).unwrap().amount, d("100.00"));
    b.shutdown().await;
    sim.shutdown().await;
}
