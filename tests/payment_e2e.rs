//! End to end: real HTTP -> the `gateway` process (`gateway serve`) -> Diameter over TCP -> the
//! OCS simulator, which runs in this test process so that its balances and journal can be
//! read. Every operation of the Payment API, idempotency, a concurrency test on one account,
//! and a restart of the gateway process with a reservation open.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;

mod support;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};
use support::process::{GatewayProcess, TempDir, basic, dictionaries};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "tel:+34671999000";
const BOB: &str = "tel:+34600000001";
const CAROL: &str = "sip:carol@example.com";

/// The gateway's configuration for these tests: the simulator at `ocs`, SQLite in `dir`.
fn config(dir: &Path, ocs: std::net::SocketAddr) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[diameter.timers]
request_timeout = "2s"
reconnect_min = "200ms"
reconnect_max = "1s"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{ocs}"

[credit_control]
style = "mscc"
resolve_interval = "300ms"

[http]
listen = "127.0.0.1:0"

[store]
backend = "sqlite"
data_dir = "{data}"

[ocs_sim]
enabled = false

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
max_amount = "50.00"

[[apps]]
id = "other"
api_key = "other-key"
admin = true
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    )
}

async fn start(dir: &Path, ocs: std::net::SocketAddr) -> GatewayProcess {
    GatewayProcess::start(dir, &config(dir, ocs)).await
}

/// The calls these tests make, answering (status, body).
trait Calls {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
    ) -> Result<(u16, Value), String>;

    async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        self.call("GET", path, None, None).await
    }

    async fn pay(&self, op: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/rest/payment/{op}"),
            Some(&basic("shop", "shop-secret")),
            Some(body.to_string()),
        )
        .await
        .unwrap()
    }
}

impl Calls for GatewayProcess {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
    ) -> Result<(u16, Value), String> {
        let a = self.request(method, path, auth, &[], body).await?;
        Ok((a.status, a.body))
    }
}

async fn simulator(dir: &Path) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            journal_path: Some(dir.join("ocs-journal.jsonl")),
            accounts: [(ALICE, "100.00"), (BOB, "5.00"), (CAROL, "20.00")]
                .iter()
                .map(|(s, b)| SimAccount {
                    subscriber: (*s).into(),
                    balance: d(b),
                    currency: "EUR".into(),
                })
                .collect(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

fn charge(amount: &str, user: &str, reference: &str) -> Value {
    json!({
        "charge": {"description": "game credits", "amount": amount, "code": "G1", "currency": "EUR"},
        "endUserIdentifier": user,
        "referenceCode": reference,
    })
}

fn balance(sim: &OcsSim, s: &str) -> Decimal {
    sim.balance(s).unwrap().amount
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_end_to_end() {
    let dir = TempDir::new("ops");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;

    // charge-amount: 204, the OCS debited it, and the journal has one debit for it.
    let (s, body) = gw
        .pay("charge-amount", charge("4.99", ALICE, "e2e-1"))
        .await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    // The same referenceCode again: the first outcome, nothing charged twice.
    let (s, _) = gw
        .pay("charge-amount", charge("4.99", ALICE, "e2e-1"))
        .await;
    assert_eq!(s, 204);
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    let debits = sim.journal().iter().filter(|e| e.op == "debit").count();
    assert_eq!(debits, 1);
    // The same referenceCode with another amount: refused, nothing charged.
    let (s, body) = gw
        .pay("charge-amount", charge("5.00", ALICE, "e2e-1"))
        .await;
    assert!(s == 409 || s == 400, "{s} {body}");
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    // Refused by the OCS for lack of credit: SVC0270, balance untouched.
    let (s, body) = gw.pay("charge-amount", charge("6.00", BOB, "e2e-2")).await;
    assert_eq!(s, 400, "{body}");
    assert!(message(&body).starts_with("SVC0270"), "{body}");
    assert!(
        message(&body).contains("DIAMETER_CREDIT_LIMIT_REACHED"),
        "{body}"
    );
    assert_eq!(
        body["error"]["type"],
        "org.csapi.schema.parlayx.common.v3_1.ServiceException"
    );
    assert_eq!(balance(&sim, BOB), d("5.00"));
    // Unknown end user: SVC0002.
    let (s, body) = gw
        .pay("charge-amount", charge("1.00", "tel:+34999999999", "e2e-3"))
        .await;
    assert_eq!(s, 400);
    assert!(message(&body).starts_with("SVC0002"), "{body}");
    // Over the application's limit: PolicyException, nothing sent.
    let (s, body) = gw
        .pay("charge-amount", charge("50.01", ALICE, "e2e-4"))
        .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(
        body["error"]["type"],
        "org.csapi.schema.parlayx.common.v3_1.PolicyException"
    );
    // refund-amount.
    let (s, body) = gw.pay("refund-amount", charge("1.25", BOB, "e2e-5")).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(balance(&sim, BOB), d("6.25"));
    // charge-split-amount: exact shares; all or nothing.
    let split = |reference: &str| {
        json!({
            "charge": {"description": "conference", "amount": "10.00", "currency": "EUR"},
            "referenceCode": reference,
            "splitInfo": [
                {"endUserIdentifier": ALICE, "percent": 33},
                {"endUserIdentifier": CAROL, "percent": 33},
                {"endUserIdentifier": BOB, "percent": 34}
            ]
        })
    };
    let (s, body) = gw.pay("charge-split-amount", split("e2e-6")).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(balance(&sim, ALICE), d("91.71"));
    assert_eq!(balance(&sim, CAROL), d("16.70"));
    assert_eq!(balance(&sim, BOB), d("2.85"));
    // Bob cannot pay 3.40 now: the other legs are refunded and the answer says so.
    let (s, body) = gw.pay("charge-split-amount", split("e2e-7")).await;
    assert_eq!(s, 400, "{body}");
    assert!(message(&body).contains("refunded"), "{body}");
    assert_eq!(balance(&sim, ALICE), d("91.71"));
    assert_eq!(balance(&sim, CAROL), d("16.70"));
    assert_eq!(balance(&sim, BOB), d("2.85"));
    // Reservations: reserve, reserve more, charge part, release the rest.
    let (s, body) = gw
        .pay(
            "reserve-amount",
            json!({"charge": {"description": "ride", "amount": "8.00", "currency": "EUR"}, "endUserIdentifier": CAROL}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let id = body["result"].as_str().unwrap().to_string();
    assert_eq!(sim.account(CAROL).unwrap().reserved, d("8.00"));
    let (s, body) = gw
        .pay(
            "reserve-additional-amount",
            json!({"charge": {"description": "ride", "amount": "2.00", "currency": "EUR"}, "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(sim.account(CAROL).unwrap().reserved, d("10.00"));
    let (s, body) = gw
        .pay(
            "charge-reservation",
            json!({"charge": {"description": "ride", "amount": "7.50", "currency": "EUR"}, "referenceCode": "e2e-8", "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = gw
        .pay("release-reservation", json!({"reservationIdentifier": id}))
        .await;
    assert_eq!(s, 204, "{body}");
    let acct = sim.account(CAROL).unwrap();
    assert_eq!((acct.balance, acct.reserved), (d("9.20"), d("0")));
    // The reservation is gone for further charges.
    let (s, body) = gw
        .pay(
            "charge-reservation",
            json!({"charge": {"amount": "1.00", "currency": "EUR"}, "referenceCode": "e2e-9", "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    // Authentication: none, wrong, and another application's key.
    let (s, _) = gw
        .call(
            "POST",
            "/rest/payment/charge-amount",
            None,
            Some(charge("1.00", ALICE, "e2e-10").to_string()),
        )
        .await
        .unwrap();
    assert_eq!(s, 401);
    let (s, _) = gw
        .call(
            "POST",
            "/rest/payment/charge-amount",
            Some(&basic("shop", "wrong")),
            Some(charge("1.00", ALICE, "e2e-10").to_string()),
        )
        .await
        .unwrap();
    assert_eq!(s, 401);
    // Bad input never reaches the OCS: a clear 4xx each, nothing charged.
    let before = balance(&sim, ALICE);
    for (body, what) in [
        ("{not json".to_string(), "malformed JSON"),
        (json!({"charge": {"amount": "1.00", "currency": "EUR"}}).to_string(), "missing fields"),
        (charge("0", ALICE, "b1").to_string(), "zero"),
        (charge("-1.00", ALICE, "b2").to_string(), "negative"),
        (charge("1.001", ALICE, "b3").to_string(), "over-precise"),
        (
            charge("1.00", ALICE, "b4").to_string().replace("EUR", "EUX"),
            "unknown currency",
        ),
        (charge("1.00", "mailto:x", "b5").to_string(), "malformed end user"),
        (
            json!({"charge": {"amount": true, "currency": "EUR"}, "endUserIdentifier": ALICE, "referenceCode": "b6"}).to_string(),
            "wrong type",
        ),
    ] {
        let (s, v) = gw
            .call(
                "POST",
                "/rest/payment/charge-amount",
                Some(&basic("shop", "shop-secret")),
                Some(body),
            )
            .await
            .unwrap();
        assert!((400..500).contains(&s), "{what}: {s} {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
    let (s, _) = gw
        .call(
            "POST",
            "/rest/payment/charge-amount",
            Some(&basic("shop", "shop-secret")),
            Some(format!(
                r#"{{"charge":{{"amount":"1.00","currency":"EUR","description":"{}"}},"endUserIdentifier":"{ALICE}","referenceCode":"big"}}"#,
                "x".repeat(200_000)
            )),
        )
        .await
        .unwrap();
    assert_eq!(s, 413);
    assert_eq!(balance(&sim, ALICE), before);
    // Operations endpoints.
    assert_eq!(gw.get("/health/live").await.unwrap().0, 200);
    let (s, doc) = gw.get("/openapi.json").await.unwrap();
    assert_eq!(s, 200);
    assert!(doc["paths"]["/rest/payment/charge-amount"].is_object());
    let (s, metrics) = gw
        .call("GET", "/metrics", Some(&basic("shop", "shop-secret")), None)
        .await
        .unwrap();
    assert_eq!(s, 403, "metrics need an admin application: {metrics}");
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_parallel_charges_on_one_account_are_exact() {
    let dir = TempDir::new("conc");
    let sim = simulator(&dir.0).await;
    let gw = Arc::new(start(&dir.0, sim.local_addr().unwrap()).await);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let gw = Arc::clone(&gw);
        tasks.push(tokio::spawn(async move {
            // Every tenth request is sent twice: retries must not charge twice.
            let body = charge("0.30", ALICE, &format!("conc-{i}"));
            let (s, v) = gw.pay("charge-amount", body.clone()).await;
            if i % 10 == 0 {
                let (s2, _) = gw.pay("charge-amount", body).await;
                assert_eq!(s2, s);
            }
            (s, v)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!(s == 204 || s == 400, "{s} {v}");
        if s == 204 {
            ok += 1;
        }
    }
    // 300 x 0.30 = 90.00 <= 100.00: all succeed; the balance is exact.
    assert_eq!(ok, 300);
    assert_eq!(balance(&sim, ALICE), d("10.00"));
    let debits = sim.journal().iter().filter(|e| e.op == "debit").count();
    assert_eq!(debits, 300);
    match Arc::try_unwrap(gw) {
        Ok(gw) => gw.stop(),
        Err(_) => panic!("still shared"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_survives_a_restart_of_the_gateway() {
    let dir = TempDir::new("restart");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    let (s, body) = gw
        .pay(
            "reserve-amount",
            json!({"charge": {"amount": "12.00", "currency": "EUR"}, "endUserIdentifier": CAROL}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let id = body["result"].as_str().unwrap().to_string();
    let (s, _) = gw
        .pay(
            "charge-reservation",
            json!({"charge": {"amount": "2.00", "currency": "EUR"}, "referenceCode": "r-1", "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 204);
    // A hard crash: no graceful shutdown, nothing flushed beyond what was acknowledged.
    drop(gw);
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    // The retry of an acknowledged charge is answered from the store, not charged again.
    let (s, _) = gw
        .pay(
            "charge-reservation",
            json!({"charge": {"amount": "2.00", "currency": "EUR"}, "referenceCode": "r-1", "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, body) = gw
        .pay(
            "charge-reservation",
            json!({"charge": {"amount": "3.00", "currency": "EUR"}, "referenceCode": "r-2", "reservationIdentifier": id}),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let (s, body) = gw
        .pay("release-reservation", json!({"reservationIdentifier": id}))
        .await;
    assert_eq!(s, 204, "{body}");
    let acct = sim.account(CAROL).unwrap();
    assert_eq!((acct.balance, acct.reserved), (d("15.00"), d("0")));
    gw.stop();
    sim.shutdown().await;
}

/// SIGTERM while a charge is in flight: the charge finishes (204), the process says DPR
/// (REBOOTING) to the OCS and exits cleanly, and the outcome is on record for a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_finishes_in_flight_requests_and_says_goodbye() {
    use charging_gateway::diameter::peer::DisconnectCause;
    let dir = TempDir::new("stop");
    let sim = simulator(&dir.0).await;
    let gw = Arc::new(start(&dir.0, sim.local_addr().unwrap()).await);
    sim.set_faults(|f| f.latency = Duration::from_millis(700));
    let g = Arc::clone(&gw);
    let inflight = tokio::spawn(async move {
        g.pay("charge-amount", charge("2.00", ALICE, "stop-1"))
            .await
    });
    // Stop once the charge is recorded (pending: its CCR is out, its answer 700 ms away).
    let mut recorded = false;
    for _ in 0..200 {
        let (s, v) = gw
            .call(
                "GET",
                "/admin/operations?referenceCode=stop-1&app=shop",
                Some("Bearer other-key"),
                None,
            )
            .await
            .unwrap();
        if s == 200 && v.as_array().is_some_and(|a| !a.is_empty()) {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(recorded, "the charge reached the gateway");
    gw.terminate();
    let (s, body) = inflight.await.unwrap();
    assert_eq!(s, 204, "the request in flight finishes: {body}");
    let Ok(gw) = Arc::try_unwrap(gw) else {
        panic!("still shared")
    };
    let status = gw.wait_exit().expect("the gateway exits");
    assert!(status.success(), "{status}");
    assert_eq!(balance(&sim, ALICE), d("98.00"));
    let said_goodbye = sim.router().peers().iter().any(|p| {
        let st = p.stats();
        st.dpr_received >= 1 && st.last_dpr_cause == Some(DisconnectCause::Rebooting)
    });
    assert!(said_goodbye, "DPR with REBOOTING reached the OCS");
    // A clean stop leaves the records in the database file alone: its write-ahead log was
    // checkpointed and removed (the retry below reads them back).
    let wal = dir.0.join("data").join("gateway.sqlite3-wal");
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_bytes, 0, "{} left behind", wal.display());
    // The outcome was flushed: a new process answers the retry from the store.
    sim.clear_faults();
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    let (s, _) = gw
        .pay("charge-amount", charge("2.00", ALICE, "stop-1"))
        .await;
    assert_eq!(s, 204);
    assert_eq!(balance(&sim, ALICE), d("98.00"), "not charged twice");
    gw.stop();
    sim.shutdown().await;
}
