//! The charging layer against the OCS simulator over TCP, through the assembled gateway
//! (`Gateway::start`): idempotency, split exactness and compensation, reservations, unknown
//! outcomes resolved by retries, and recovery from the store after a restart.

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use charging_gateway::charging::{ChargeInfo, Failure, Key, Recorded};
use charging_gateway::config::GatewayConfig;
use charging_gateway::credit_control::{
    Money, RequestType, RequestedAction, SubscriptionId, money::currency,
};
use charging_gateway::gateway::{Gateway, StartOptions};
use charging_gateway::ocs::{OcsSimConfig, SimAccount};
use charging_gateway::store::{OpState, OperationFilter, OperationRow, ReservationState, Store};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn eur(s: &str) -> Money {
    Money::new(d(s), currency("EUR").unwrap())
}

fn sub(s: &str) -> SubscriptionId {
    SubscriptionId::parse(s).unwrap()
}

fn info(reference: &str) -> ChargeInfo {
    ChargeInfo {
        description: Some("game credits".into()),
        code: None,
        reference_code: Some(reference.into()),
        merchant: None,
    }
}

const ALICE: &str = "tel:+34671999000";
const BOB: &str = "tel:+34600000001";
const CAROL: &str = "sip:carol@example.com";

fn config(style: &str, tx: &str) -> GatewayConfig {
    let mut c = GatewayConfig::from_toml(&format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"

[diameter.timers]
request_timeout = "{tx}"
reconnect_min = "100ms"
reconnect_max = "200ms"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:1"

[credit_control]
style = "{style}"
resolve_interval = "200ms"
reaper_interval = "100ms"

[http]
request_timeout = "60s"

[store]
backend = "memory"
"#
    ))
    .unwrap();
    c.ocs_sim.enabled = true;
    c
}

fn sim_config(balances: &[(&str, &str)]) -> OcsSimConfig {
    OcsSimConfig {
        listen: "127.0.0.1:0".into(),
        accounts: balances
            .iter()
            .map(|(s, b)| SimAccount {
                subscriber: (*s).into(),
                balance: d(b),
                currency: "EUR".into(),
            })
            .collect(),
        ..OcsSimConfig::default()
    }
}

fn accounts() -> Vec<(&'static str, &'static str)> {
    vec![(ALICE, "100.00"), (BOB, "5.00"), (CAROL, "20.00")]
}

async fn gateway(style: &str) -> Gateway {
    let gw = Gateway::start(config(style, "2s"), Some(sim_config(&accounts())))
        .await
        .unwrap();
    assert!(
        gw.wait_ready(Duration::from_secs(5)).await,
        "no OCS peer opened"
    );
    gw
}

fn balance(gw: &Gateway, s: &str) -> Money {
    gw.sim.as_ref().unwrap().balance(s).unwrap()
}

fn ccr_count(gw: &Gateway, session_prefix: &str) -> usize {
    gw.sim
        .as_ref()
        .unwrap()
        .journal()
        .iter()
        .filter(|e| e.session_id.contains(session_prefix))
        .count()
}

#[tokio::test]
async fn a_retry_with_the_same_reference_never_charges_twice() {
    for style in ["mscc", "command_level"] {
        let gw = gateway(style).await;
        let key = Key::new("app-1", Some("ref-1"));
        let first = gw
            .charging
            .charge(&key, &sub(ALICE), ALICE, eur("4.99"), &info("ref-1"))
            .await
            .unwrap();
        assert!(!first.replayed);
        assert_eq!(first.result_code, 2001);
        assert_eq!(balance(&gw, ALICE), eur("95.01"), "{style}");
        // The same request again: the first outcome, no second CCR.
        let again = gw
            .charging
            .charge(&key, &sub(ALICE), ALICE, eur("4.99"), &info("ref-1"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.operation_id, first.operation_id);
        assert_eq!(balance(&gw, ALICE), eur("95.01"));
        assert_eq!(ccr_count(&gw, &first.operation_id), 1);
        // The same reference with another body is refused; another app may use it.
        let other = gw
            .charging
            .charge(&key, &sub(ALICE), ALICE, eur("5.00"), &info("ref-1"))
            .await;
        assert!(matches!(other, Err(Failure::KeyReused { .. })), "{other:?}");
        let app2 = Key::new("app-2", Some("ref-1"));
        gw.charging
            .charge(&app2, &sub(ALICE), ALICE, eur("1.00"), &info("ref-1"))
            .await
            .unwrap();
        assert_eq!(balance(&gw, ALICE), eur("94.01"));
        // A denial is final too: replayed, and nothing charged.
        let deny = Key::new("app-1", Some("ref-2"));
        for _ in 0..2 {
            let r = gw
                .charging
                .charge(&deny, &sub(BOB), BOB, eur("6.00"), &info("ref-2"))
                .await;
            assert!(
                matches!(
                    r,
                    Err(Failure::Denied {
                        result_code: 4012,
                        ..
                    })
                ),
                "{style}: {r:?}"
            );
        }
        assert_eq!(balance(&gw, BOB), eur("5.00"));
        // A refund.
        let r = gw
            .charging
            .refund(
                &Key::new("app-1", Some("ref-3")),
                &sub(BOB),
                BOB,
                eur("1.25"),
                &info("ref-3"),
                Some(&first.session_id),
            )
            .await
            .unwrap();
        assert_eq!(r.result_code, 2001);
        assert_eq!(balance(&gw, BOB), eur("6.25"));
        // Every operation is on record with its Session-Id and Result-Code.
        let rows = gw
            .store
            .operations(OperationFilter {
                app: Some("app-1".into()),
                ..OperationFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|r| r.state.is_final() && !r.session_id.is_empty())
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn concurrent_duplicates_wait_for_the_first() {
    let gw = gateway("mscc").await;
    let key = Key::new("app", Some("same"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = gw.charging.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            c.charge(&key, &sub(ALICE), ALICE, eur("2.00"), &info("same"))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap().operation_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one operation for one key");
    assert_eq!(balance(&gw, ALICE), eur("98.00"));
    gw.shutdown().await;
}

#[tokio::test]
async fn hundreds_of_parallel_charges_leave_an_exact_balance() {
    let gw = gateway("mscc").await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let c = gw.charging.clone();
        tasks.push(tokio::spawn(async move {
            let k = Key::new("app", Some(&format!("p-{i}")));
            c.charge(
                &k,
                &sub(ALICE),
                ALICE,
                eur("0.33"),
                &info(&format!("p-{i}")),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Failure::Denied { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // 300 x 0.33 = 99.00 <= 100.00: every one fits.
    assert_eq!(ok, 300);
    assert_eq!(balance(&gw, ALICE), eur("1.00"));
    gw.shutdown().await;
}

#[tokio::test]
async fn split_is_exact_and_all_or_nothing() {
    let gw = gateway("mscc").await;
    let legs = vec![
        (sub(ALICE), ALICE.to_string(), 33),
        (sub(CAROL), CAROL.to_string(), 33),
        (sub(BOB), BOB.to_string(), 34),
    ];
    let key = Key::new("app", Some("split-1"));
    let done = gw
        .charging
        .charge_split(&key, eur("10.00"), &legs, &info("split-1"))
        .await
        .unwrap();
    assert_eq!(done.result_code, 2001);
    assert_eq!(balance(&gw, ALICE), eur("96.70"));
    assert_eq!(balance(&gw, CAROL), eur("16.70"));
    assert_eq!(balance(&gw, BOB), eur("1.60"));
    // Replayed, nothing moves.
    let again = gw
        .charging
        .charge_split(&key, eur("10.00"), &legs, &info("split-1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(balance(&gw, BOB), eur("1.60"));
    // Bob cannot pay his 34% of 10.00: Alice's and Carol's legs are refunded.
    let key = Key::new("app", Some("split-2"));
    let r = gw
        .charging
        .charge_split(&key, eur("10.00"), &legs, &info("split-2"))
        .await;
    match r {
        Err(Failure::SplitFailed {
            leg,
            refunded,
            unresolved,
            cause,
            ..
        }) => {
            assert_eq!(leg, 2);
            assert_eq!(refunded.len(), 2, "{refunded:?}");
            assert!(unresolved.is_empty());
            assert!(matches!(
                *cause,
                Failure::Denied {
                    result_code: 4012,
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(balance(&gw, ALICE), eur("96.70"));
    assert_eq!(balance(&gw, CAROL), eur("16.70"));
    assert_eq!(balance(&gw, BOB), eur("1.60"));
    // Bad splits never reach the OCS.
    let bad = vec![
        (sub(ALICE), ALICE.to_string(), 50),
        (sub(BOB), BOB.to_string(), 49),
    ];
    let r = gw
        .charging
        .charge_split(&Key::new("app", Some("s3")), eur("1.00"), &bad, &info("s3"))
        .await;
    assert!(matches!(r, Err(Failure::Invalid { .. })), "{r:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn reservation_lifecycle_in_both_styles() {
    for style in ["mscc", "command_level"] {
        let gw = gateway(style).await;
        let app = Key::new("app", None);
        let r = gw
            .charging
            .reserve(&app, &sub(CAROL), CAROL, eur("10.00"), &info("r"))
            .await
            .unwrap();
        let id = r.reservation_id.clone().unwrap();
        let acct = gw.sim.as_ref().unwrap().account(CAROL).unwrap();
        assert_eq!(
            (acct.balance, acct.reserved),
            (d("20.00"), d("10.00")),
            "{style}: {r:?} {:#?}",
            gw.sim.as_ref().unwrap().journal()
        );
        // Another application cannot see or touch it.
        let other = Key::new("intruder", None);
        assert!(matches!(
            gw.charging.release(&other, &id).await,
            Err(Failure::ReservationUnknown { .. })
        ));
        // Reserve 5.00 more, charge 12.00 of the 15.00, then release the rest.
        gw.charging
            .reserve_additional(&app, &id, eur("5.00"), &info("r"))
            .await
            .unwrap();
        assert_eq!(
            gw.sim.as_ref().unwrap().account(CAROL).unwrap().reserved,
            d("15.00")
        );
        let too_much = gw
            .charging
            .charge_reservation(&Key::new("app", Some("c0")), &id, eur("15.01"), &info("c0"))
            .await;
        assert!(matches!(too_much, Err(Failure::ExceedsReservation { .. })));
        let c = Key::new("app", Some("c1"));
        gw.charging
            .charge_reservation(&c, &id, eur("12.00"), &info("c1"))
            .await
            .unwrap();
        // Charging again with the same reference does not charge twice.
        let again = gw
            .charging
            .charge_reservation(&c, &id, eur("12.00"), &info("c1"))
            .await
            .unwrap();
        assert!(again.replayed);
        let acct = gw.sim.as_ref().unwrap().account(CAROL).unwrap();
        assert_eq!(
            (acct.balance, acct.reserved),
            (d("8.00"), d("3.00")),
            "{style}"
        );
        let view = gw.charging.reservation("app", &id).await.unwrap();
        assert_eq!((view.reserved, view.charged), (d("3.00"), d("12.00")));
        gw.charging.release(&app, &id).await.unwrap();
        let acct = gw.sim.as_ref().unwrap().account(CAROL).unwrap();
        assert_eq!((acct.balance, acct.reserved), (d("8.00"), d("0")));
        // Released: again is fine, other operations are refused.
        gw.charging.release(&app, &id).await.unwrap();
        let r = gw
            .charging
            .charge_reservation(&Key::new("app", Some("c2")), &id, eur("1.00"), &info("c2"))
            .await;
        assert!(matches!(r, Err(Failure::ReservationClosed { .. })), "{r:?}");
        let row = gw.store.reservation(&id).await.unwrap().unwrap();
        assert_eq!(row.state, ReservationState::Released);
        assert_eq!(row.charged, d("12.00"));
        // More than the balance: denied, nothing held.
        let r = gw
            .charging
            .reserve(&app, &sub(CAROL), CAROL, eur("8.01"), &info("r2"))
            .await;
        assert!(matches!(r, Err(Failure::Denied { .. })), "{r:?}");
        assert_eq!(gw.charging.open_reservations(), 0);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn expired_reservations_are_released() {
    let mut cfg = config("mscc", "2s");
    cfg.credit_control.reservation_ttl = Duration::from_millis(300);
    let gw = Gateway::start(cfg, Some(sim_config(&accounts())))
        .await
        .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let r = gw
        .charging
        .reserve(
            &Key::new("app", None),
            &sub(ALICE),
            ALICE,
            eur("7.00"),
            &info("x"),
        )
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    let mut expired = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if gw.store.reservation(&id).await.unwrap().unwrap().state == ReservationState::Expired {
            expired = true;
            break;
        }
    }
    assert!(expired, "the reaper released it");
    assert_eq!(
        gw.sim.as_ref().unwrap().account(ALICE).unwrap().reserved,
        d("0")
    );
    assert_eq!(balance(&gw, ALICE), eur("100.00"));
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unknown_outcome_is_never_success_and_a_retry_resolves_it() {
    let gw = Gateway::start(config("mscc", "300ms"), Some(sim_config(&accounts())))
        .await
        .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let sim = gw.sim.as_ref().unwrap();
    sim.set_faults(|f| f.latency = Duration::from_millis(800));
    let key = Key::new("app", Some("slow-1"));
    let r = gw
        .charging
        .charge(&key, &sub(ALICE), ALICE, eur("3.00"), &info("slow-1"))
        .await;
    let Err(f) = &r else {
        panic!("reported as charged: {r:?}")
    };
    assert!(f.is_unknown(), "{f}");
    let row = gw
        .store
        .operation_by_key("app", "slow-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, OpState::Unknown);
    sim.clear_faults();
    // The OCS applied it once (late); a retry learns that without charging again.
    let mut done = None;
    for _ in 0..50 {
        match gw
            .charging
            .charge(&key, &sub(ALICE), ALICE, eur("3.00"), &info("slow-1"))
            .await
        {
            Ok(d) => {
                done = Some(d);
                break;
            }
            Err(f) if f.is_unknown() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(f) => panic!("{f}"),
        }
    }
    let done = done.expect("resolved");
    assert_eq!(done.operation_id, row.id);
    assert_eq!(balance(&gw, ALICE), eur("97.00"));
    let debits = sim
        .journal()
        .iter()
        .filter(|e| e.session_id == row.session_id && e.op == "debit")
        .count();
    assert_eq!(debits, 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn nothing_reachable_is_retryable_and_charges_nothing() {
    let mut cfg = config("mscc", "1s");
    cfg.ocs_sim.enabled = false;
    let gw = Gateway::start(cfg, None).await.unwrap();
    let key = Key::new("app", Some("down-1"));
    let r = gw
        .charging
        .charge(&key, &sub(ALICE), ALICE, eur("1.00"), &info("down-1"))
        .await;
    assert!(matches!(r, Err(Failure::Unavailable { .. })), "{r:?}");
    let row = gw
        .store
        .operation_by_key("app", "down-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, OpState::Retryable);
    gw.shutdown().await;
}

/// A restart over the same store: open reservations come back and can be charged and
/// released; an operation left pending by a crash is re-sent with the T flag and applied once.
#[tokio::test]
async fn reservations_and_pending_operations_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("gw-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sim_cfg = sim_config(&accounts());
    // The simulator keeps its books (and its duplicate detection) in a journal.
    sim_cfg.journal_path = Some(dir.join("journal.jsonl"));
    let store = Store::memory();
    // First life.
    let (id, crashed) = {
        let gw = start_with(store.clone(), sim_cfg.clone()).await;
        let r = gw
            .charging
            .reserve(
                &Key::new("app", None),
                &sub(CAROL),
                CAROL,
                eur("10.00"),
                &info("r"),
            )
            .await
            .unwrap();
        let id = r.reservation_id.unwrap();
        gw.charging
            .charge_reservation(&Key::new("app", Some("c1")), &id, eur("4.00"), &info("c1"))
            .await
            .unwrap();
        // A debit recorded as pending, applied by the OCS, whose answer the crash lost.
        let session_id = gw.client.new_session_id(Some("op-crashed"));
        let recorded = Recorded {
            request_type: RequestType::Event,
            number: 0,
            subscriber: ALICE.into(),
            action: Some(RequestedAction::DirectDebiting),
            requested: Some(d("2.50")),
            used: None,
            currency: "EUR".into(),
            parameters: vec![(1, "crash-1".into())],
            style: None,
        };
        let row = OperationRow {
            id: "op-crashed".into(),
            app: "app".into(),
            key: Some("crash-1".into()),
            kind: "charge".into(),
            request_hash: "h".into(),
            parent: None,
            reservation_id: None,
            session_id: session_id.clone(),
            request_number: 0,
            subscriber: Some(ALICE.into()),
            amount: Some(d("2.50")),
            currency: Some("EUR".into()),
            reference_code: Some("crash-1".into()),
            state: OpState::Pending,
            result_code: None,
            request: recorded.to_json(),
            outcome: None,
            created_ms: 1,
            updated_ms: 1,
            lease: None,
        };
        store.begin(row).await.unwrap();
        let req = recorded.to_request(&gw.client, &session_id).unwrap();
        assert!(gw.client.send_once(&req, false).await.is_success());
        assert_eq!(balance(&gw, ALICE), eur("97.50"));
        // Crash: no outcome recorded; the connections go away.
        let Gateway { sim, node, .. } = gw;
        node.shutdown().await;
        sim.unwrap().shutdown().await;
        (id, session_id)
    };
    // Second life: a new gateway over the same store; the simulator replays its journal.
    let gw = start_with(store.clone(), sim_cfg.clone()).await;
    let view = gw.charging.reservation("app", &id).await.unwrap();
    assert_eq!(
        (view.reserved, view.charged, view.state),
        (d("6.00"), d("4.00"), "open")
    );
    // The pending debit is resolved (T flag, duplicate detected): charged once, on record.
    let mut resolved = None;
    for _ in 0..100 {
        let row = store.operation("op-crashed").await.unwrap().unwrap();
        if row.state.is_final() {
            resolved = Some(row);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = resolved.expect("resolved after the restart");
    assert_eq!(row.state, OpState::Succeeded);
    assert_eq!(balance(&gw, ALICE), eur("97.50"));
    let debits = gw
        .sim
        .as_ref()
        .unwrap()
        .journal()
        .iter()
        .filter(|e| e.session_id == crashed && e.op == "debit")
        .count();
    assert_eq!(debits, 1, "applied once");
    // The restored reservation is usable: charge 1.00 more and release.
    gw.charging
        .charge_reservation(&Key::new("app", Some("c2")), &id, eur("1.00"), &info("c2"))
        .await
        .unwrap();
    gw.charging
        .release(&Key::new("app", None), &id)
        .await
        .unwrap();
    let acct = gw.sim.as_ref().unwrap().account(CAROL).unwrap();
    assert_eq!((acct.balance, acct.reserved), (d("15.00"), d("0")));
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn start_with(store: Store, sim: OcsSimConfig) -> Gateway {
    let gw = Gateway::start_with(
        config("mscc", "2s"),
        StartOptions {
            sim: Some(sim),
            store: Some(store),
        },
    )
    .await
    .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    gw
}

/// A reservation whose validity ran out while the gateway was down is released (CCR-T) once
/// the gateway is back.
#[tokio::test]
async fn a_reservation_expired_during_a_restart_is_released() {
    let dir = std::env::temp_dir().join(format!("gw-expired-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sim_cfg = sim_config(&accounts());
    sim_cfg.journal_path = Some(dir.join("journal.jsonl"));
    let store = Store::memory();
    let mut cfg = config("mscc", "2s");
    cfg.credit_control.reservation_ttl = Duration::from_millis(400);
    let gw = Gateway::start_with(
        cfg.clone(),
        StartOptions {
            sim: Some(sim_cfg.clone()),
            store: Some(store.clone()),
        },
    )
    .await
    .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let r = gw
        .charging
        .reserve(
            &Key::new("app", None),
            &sub(BOB),
            BOB,
            eur("4.00"),
            &info("x"),
        )
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    // Down before the reaper's turn: the reservation is still open at the OCS.
    let Gateway { sim, node, .. } = gw;
    node.shutdown().await;
    let sim = sim.unwrap();
    assert_eq!(sim.account(BOB).unwrap().reserved, d("4.00"));
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gw = Gateway::start_with(
        cfg,
        StartOptions {
            sim: Some(sim_cfg),
            store: Some(store.clone()),
        },
    )
    .await
    .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let mut state = None;
    for _ in 0..100 {
        let row = store.reservation(&id).await.unwrap().unwrap();
        if row.state != ReservationState::Open {
            state = Some(row.state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, Some(ReservationState::Expired));
    let sim = gw.sim.as_ref().unwrap();
    assert_eq!(sim.account(BOB).unwrap().reserved, d("0"));
    assert_eq!(balance(&gw, BOB), eur("5.00"));
    assert!(
        sim.journal()
            .iter()
            .any(|e| e.op == "release" && e.session_id == r.session_id),
        "released with CCR-T"
    );
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A two-step payment's confirmation: one CCR-T charges the amount and releases the rest.
#[tokio::test]
async fn settle_charges_and_releases_in_one_termination() {
    let gw = gateway("mscc").await;
    let app = Key::new("app", None);
    let r = gw
        .charging
        .reserve(&app, &sub(CAROL), CAROL, eur("10.00"), &info("s"))
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    let over = gw
        .charging
        .settle(
            &Key::new("app", Some("st-0")),
            &id,
            eur("10.01"),
            &info("st-0"),
        )
        .await;
    assert!(
        matches!(over, Err(Failure::ExceedsReservation { .. })),
        "{over:?}"
    );
    let key = Key::new("app", Some("st-1"));
    gw.charging
        .settle(&key, &id, eur("7.25"), &info("st-1"))
        .await
        .unwrap();
    let acct = gw.sim.as_ref().unwrap().account(CAROL).unwrap();
    assert_eq!((acct.balance, acct.reserved), (d("12.75"), d("0")));
    let ccrs: Vec<_> = gw
        .sim
        .as_ref()
        .unwrap()
        .journal()
        .into_iter()
        .filter(|e| e.session_id == r.session_id)
        .map(|e| (e.request_number, e.op))
        .collect();
    assert_eq!(
        ccrs,
        vec![
            (0, "reserve".into()),
            (1, "commit".into()),
            (1, "release".into())
        ],
        "INITIAL, then one TERMINATION that commits and releases"
    );
    let row = gw.store.reservation(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.charged),
        (ReservationState::Released, d("7.25"))
    );
    // A retry is answered as the first; the closed reservation takes nothing more.
    assert!(
        gw.charging
            .settle(&key, &id, eur("7.25"), &info("st-1"))
            .await
            .unwrap()
            .replayed
    );
    let r = gw
        .charging
        .settle(
            &Key::new("app", Some("st-2")),
            &id,
            eur("1.00"),
            &info("st-2"),
        )
        .await;
    assert!(matches!(r, Err(Failure::ReservationClosed { .. })), "{r:?}");
    gw.shutdown().await;
}

// ---- units style ------------------------------------------------------------------------------

async fn gateway_on(style: &str, profile: &str) -> Gateway {
    let sim = OcsSimConfig {
        profile: profile.into(),
        ..sim_config(&accounts())
    };
    let gw = Gateway::start(config(style, "2s"), Some(sim))
        .await
        .unwrap();
    assert!(
        gw.wait_ready(Duration::from_secs(5)).await,
        "no OCS peer opened"
    );
    gw
}

/// In `auto` a debit refused over where its units were goes once more under a new Session-Id,
/// and the operation's record holds that second request (the one a restart would re-send),
/// not the refused one.
#[tokio::test]
async fn a_fallback_is_recorded_before_it_is_sent() {
    let gw = gateway_on("auto", "rfc4006").await;
    let done = gw
        .charging
        .charge(
            &Key::new("app", Some("fb-1")),
            &sub(ALICE),
            ALICE,
            eur("2.00"),
            &info("fb-1"),
        )
        .await
        .unwrap();
    assert_eq!(balance(&gw, ALICE), eur("98.00"));
    let row = gw
        .store
        .operation_by_key("app", "fb-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.session_id, done.session_id);
    let recorded = Recorded::from_json(&row.request).unwrap();
    assert_eq!(
        recorded.style,
        Some(charging_gateway::credit_control::UnitsStyle::CommandLevel)
    );
    // The OCS applied exactly the recorded request: its journal names that Session-Id.
    let journal = gw.sim.as_ref().unwrap().journal();
    let applied: Vec<_> = journal.iter().filter(|e| e.op == "debit").collect();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].session_id, row.session_id);
    // The refused request went under another Session-Id of the same operation.
    assert!(row.session_id.contains(&row.id), "{}", row.session_id);
    gw.shutdown().await;
}

/// A style pinned where the OCS does not take it: refused, nothing charged, and the failure
/// names the Result-Code, the Failed-AVP, the Error-Message and the key to change; stored so.
#[tokio::test]
async fn a_pinned_style_the_ocs_refuses_says_what_to_change() {
    let gw = gateway_on("mscc", "rfc4006").await;
    let f = gw
        .charging
        .charge(
            &Key::new("app", Some("pin-1")),
            &sub(ALICE),
            ALICE,
            eur("2.00"),
            &info("pin-1"),
        )
        .await
        .unwrap_err();
    let Failure::OcsError {
        result_code,
        failed_avp,
        error_message,
        hint,
        ..
    } = &f
    else {
        panic!("{f:?}")
    };
    assert_eq!(*result_code, 5005);
    assert_eq!(failed_avp.as_deref(), Some("Requested-Service-Unit"));
    assert!(
        error_message
            .as_deref()
            .is_some_and(|m| m.contains("rfc4006"))
    );
    let hint = hint.as_deref().unwrap();
    assert!(
        hint.contains("credit_control.style.events = \"command_level\""),
        "{hint}"
    );
    assert!(f.is_malformed_request());
    let text = f.to_string();
    assert!(
        text.starts_with("the OCS answered DIAMETER_MISSING_AVP (5005), Failed-AVP Requested-Service-Unit, Error-Message \""),
        "{text}"
    );
    assert_eq!(balance(&gw, ALICE), eur("100.00"));
    let row = gw
        .store
        .operation_by_key("app", "pin-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, OpState::Refused);
    assert_eq!(row.result_code, Some(5005));
    let stored = row.outcome.unwrap();
    assert!(
        stored.contains("\"failed_avp\":\"Requested-Service-Unit\""),
        "{stored}"
    );
    // The same request again is answered the same, and charges nothing.
    let again = gw
        .charging
        .charge(
            &Key::new("app", Some("pin-1")),
            &sub(ALICE),
            ALICE,
            eur("2.00"),
            &info("pin-1"),
        )
        .await
        .unwrap_err();
    assert_eq!(again, f);
    gw.shutdown().await;
}

/// Sessions: a style learnt earlier (here: from the store, command level) that the OCS refuses
/// (3GPP: MSCC only). The INITIAL goes once more in MSCC, the style is learnt anew, and the
/// reservation's UPDATE and TERMINATION go in MSCC too.
#[tokio::test]
async fn a_session_style_the_ocs_refuses_is_learnt_anew_and_kept_by_the_session() {
    use charging_gateway::credit_control::style::Evidence;
    use charging_gateway::credit_control::{LearnedStyle, RequestKind, UnitsStyle};
    let gw = gateway_on("auto", "3gpp").await;
    gw.client.styles().seed(LearnedStyle {
        ocs: "ocs.charging.local".into(),
        kind: RequestKind::Sessions,
        style: UnitsStyle::CommandLevel,
        evidence: Evidence::Accepted,
        learned_ms: 1,
    });
    let key = Key::new("app", None);
    let r = gw
        .charging
        .reserve(&key, &sub(ALICE), ALICE, eur("10.00"), &info("s-1"))
        .await
        .unwrap();
    let id = r.reservation_id.unwrap();
    let learnt = gw
        .client
        .styles()
        .known("ocs.charging.local", RequestKind::Sessions)
        .unwrap();
    assert_eq!(learnt.style, UnitsStyle::Mscc);
    assert!(matches!(learnt.evidence, Evidence::Fallback { .. }));
    gw.charging
        .charge_reservation(
            &Key::new("app", Some("s-1c")),
            &id,
            eur("4.00"),
            &info("s-1c"),
        )
        .await
        .unwrap();
    gw.charging.release(&key, &id).await.unwrap();
    assert_eq!(balance(&gw, ALICE), eur("96.00"));
    // Every step of the session went in MSCC: the profile refuses anything else.
    let journal = gw.sim.as_ref().unwrap().journal();
    assert!(journal.iter().any(|e| e.op == "commit"), "{journal:?}");
    gw.shutdown().await;
}

// ---- OCS restart while outcomes are unknown ------------------------------------------------------

/// Waits until the operation of `key` is final in the store (the resolver re-sends it).
async fn resolved(gw: &Gateway, key: &str) -> OperationRow {
    for _ in 0..100 {
        let row = gw
            .store
            .operation_by_key("app", key)
            .await
            .unwrap()
            .unwrap();
        if row.state.is_final() {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} never resolved");
}

/// A debit whose answer was lost, resolved by its T-flag re-send: by the same OCS, nothing to
/// reconcile; by an OCS that restarted (new Origin-State-Id, its duplicate detection lost)
/// meanwhile, the re-send is still made (never dropped) and the operation is recorded as
/// resolved across the restart, with both Origin-State-Ids.
#[tokio::test]
async fn an_outcome_learnt_across_an_ocs_restart_is_recorded_for_reconciliation() {
    use charging_gateway::charging::learnt;
    let mut sim_cfg = sim_config(&accounts());
    sim_cfg.origin_state_id = Some(100);
    let mut gw = Gateway::start(config("auto", "500ms"), Some(sim_cfg.clone()))
        .await
        .unwrap();
    assert!(gw.wait_ready(Duration::from_secs(5)).await);
    let charge = |gw: &Gateway, key: &'static str| {
        let charging = gw.charging.clone();
        async move {
            charging
                .charge(
                    &Key::new("app", Some(key)),
                    &sub(ALICE),
                    ALICE,
                    eur("1.00"),
                    &info(key),
                )
                .await
        }
    };
    // Seen answering with Origin-State-Id 100.
    charge(&gw, "r-0").await.unwrap();
    assert_eq!(gw.client.ocs_states().snapshot()[0].origin_state_id, 100);

    // Lost answer, resolved by the same OCS: nothing to reconcile.
    gw.sim.as_ref().unwrap().set_faults(|f| f.silent = true);
    assert!(charge(&gw, "r-1").await.unwrap_err().is_unknown());
    gw.sim.as_ref().unwrap().clear_faults();
    assert_eq!(resolved(&gw, "r-1").await.state, OpState::Succeeded);
    assert!(learnt::restarts(&gw.store, 10).await.unwrap().is_empty());
    assert_eq!(balance(&gw, ALICE), eur("98.00"));

    // Lost answer; then the OCS restarts with Origin-State-Id 200 and no memory of it.
    gw.sim.as_ref().unwrap().set_faults(|f| f.silent = true);
    assert!(charge(&gw, "r-2").await.unwrap_err().is_unknown());
    let old = gw.sim.take().unwrap();
    let addr = old.local_addr().unwrap();
    old.shutdown().await;
    sim_cfg.listen = addr.to_string();
    sim_cfg.origin_state_id = Some(200);
    let dict =
        std::sync::Arc::new(charging_gateway::diameter::dict::Dictionary::builtin().unwrap());
    let fresh = charging_gateway::ocs::OcsSim::start(sim_cfg, dict)
        .await
        .unwrap();
    let row = resolved(&gw, "r-2").await;
    // The fresh OCS applied the re-send (it had lost the first one's state): the operator is
    // told, with what is needed to reconcile it.
    assert_eq!(row.state, OpState::Succeeded);
    let restarts = learnt::restarts(&gw.store, 10).await.unwrap();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    let r = &restarts[0];
    assert_eq!(r.operation_id, row.id);
    assert_eq!(r.session_id, row.session_id);
    assert_eq!(r.ocs, "ocs.charging.local");
    assert_eq!(
        (r.origin_state_id_before, r.origin_state_id_after),
        (Some(100), 200)
    );
    assert_eq!(r.state, "succeeded");
    assert!(r.sent_ms <= r.resolved_ms);
    let applied = fresh
        .journal()
        .iter()
        .filter(|e| e.session_id == row.session_id && e.op == "debit")
        .count();
    assert_eq!(
        applied, 1,
        "the re-send was made and applied by the fresh OCS"
    );
    // A debit sent after the restart is not listed.
    charge(&gw, "r-3").await.unwrap();
    assert_eq!(learnt::restarts(&gw.store, 10).await.unwrap().len(), 1);
    let state = &gw.client.ocs_states().snapshot()[0];
    assert_eq!((state.previous, state.origin_state_id), (Some(100), 200));
    gw.shutdown().await;
    fresh.shutdown().await;
}
