//! Three gateway processes on one PostgreSQL database (started by the test), each with its own
//! Diameter identity and connection to the OCS simulator (in this process, so that its books
//! can be read), under a mixed load: charges whose retries go to another instance than the
//! first try, reservations opened on one instance, charged on a second and released on a
//! third. One instance is killed (SIGKILL) in the middle. At the end the simulator's ledger
//! equals the sum of the 2xx answers, no referenceCode was charged twice, and no reservation
//! is left open past its validity.
//!
//! Without PostgreSQL installed the test prints that it is skipped, or fails under `CI=true`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::RwLock;

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::postgres::Server;
use support::process::{GatewayProcess, TempDir, basic, dictionaries};

const PAYER: &str = "tel:+34671999000";
const INSTANCES: usize = 3;
const CHARGERS: usize = 6;
const RESERVERS: usize = 3;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn config(n: usize, ocs: u16, url: &str) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw{n}.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"
[diameter.timers]
request_timeout = "2s"
reconnect_min = "200ms"
reconnect_max = "1s"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:{ocs}"
[credit_control]
resolve_interval = "300ms"
reaper_interval = "300ms"
reservation_ttl = "8s"
[cluster]
lease = "2s"
[http]
listen = "127.0.0.1:0"
[store]
backend = "postgres"
url = "{url}"
[ocs_sim]
enabled = false
[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
"#,
        dict = dictionaries().display(),
    )
}

/// The instances' REST addresses; a killed one is `None`.
type Cluster = Arc<RwLock<Vec<Option<GatewayProcess>>>>;

/// POSTs `body` to instance `first`, then to the next ones in turn, until an answer that is
/// final for the caller (2xx, or a 4xx other than 409): "no answer", 409 (in progress,
/// busy) and 5xx (outcome unknown, unavailable) are retried with the same body on another
/// instance. Returns the final status and body.
async fn until_final(
    cluster: &Cluster,
    first: usize,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let auth = basic("shop", "shop-secret");
    for attempt in 0..400 {
        let i = (first + attempt) % INSTANCES;
        let answer = {
            let c = cluster.read().await;
            match &c[i] {
                Some(gw) => Some(
                    gw.request("POST", path, Some(&auth), &[], Some(body.to_string()))
                        .await,
                ),
                None => None,
            }
        };
        match answer {
            Some(Ok(a)) if a.status < 300 || (a.status < 500 && a.status != 409) => {
                return (a.status, a.body);
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{path}: no final answer for {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_lose_nothing_when_one_is_killed() {
    let Some(server) =
        Server::shared_or_skip("three_instances_on_one_database_lose_nothing_when_one_is_killed")
    else {
        return;
    };
    let url = server.database("cluster");
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: PAYER.into(),
                balance: d("100000.00"),
                currency: "EUR".into(),
            }],
            faults: charging_gateway::ocs::FaultConfig {
                // Requests in flight when the instance is killed.
                latency: Duration::from_millis(30),
                ..Default::default()
            },
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    let ocs = sim.local_addr().unwrap().port();
    let dirs: Vec<TempDir> = (0..INSTANCES)
        .map(|n| TempDir::new(&format!("cluster-{n}")))
        .collect();
    let mut procs = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        procs.push(Some(
            GatewayProcess::start(&dir.0, &config(n, ocs, &url)).await,
        ));
    }
    let cluster: Cluster = Arc::new(RwLock::new(procs));
    let stop = Arc::new(AtomicBool::new(false));

    // Chargers: each charge goes first to instance w % 3 and is retried on the others.
    let mut tasks = Vec::new();
    for w in 0..CHARGERS {
        let (cluster, stop) = (Arc::clone(&cluster), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut charged: HashMap<String, Decimal> = HashMap::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let reference = format!("w{w}-{n}");
                let amount = format!("0.{:02}", 1 + (n % 50));
                let body = json!({
                    "charge": {"description": "load", "amount": amount, "currency": "EUR"},
                    "endUserIdentifier": PAYER,
                    "referenceCode": reference,
                });
                let (status, b) =
                    until_final(&cluster, w + n, "/rest/payment/charge-amount", &body).await;
                assert_eq!(status, 204, "{reference}: {b}");
                charged.insert(reference, d(&amount));
            }
            (charged, Decimal::ZERO)
        }));
    }
    // Reservers: reserve on one instance, charge on the next, release on the third.
    for w in 0..RESERVERS {
        let (cluster, stop) = (Arc::clone(&cluster), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut used = Decimal::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("r{w}-{n}");
                let (status, b) = until_final(
                    &cluster,
                    w + n,
                    "/rest/payment/reserve-amount",
                    &json!({"charge": {"amount": "5.00", "currency": "EUR"},
                            "endUserIdentifier": PAYER}),
                )
                .await;
                if status == 400 {
                    // Refused by the gateway or the OCS: nothing reserved.
                    continue;
                }
                assert_eq!(status, 200, "{key}: {b}");
                let id = b["result"].as_str().unwrap().to_string();
                let (status, b) = until_final(
                    &cluster,
                    w + n + 1,
                    "/rest/payment/charge-reservation",
                    &json!({"charge": {"amount": "1.25", "currency": "EUR"},
                            "referenceCode": format!("{key}-c"),
                            "reservationIdentifier": id}),
                )
                .await;
                assert_eq!(status, 204, "{key} charge: {b}");
                used += d("1.25");
                let (status, b) = until_final(
                    &cluster,
                    w + n + 2,
                    "/rest/payment/release-reservation",
                    &json!({ "reservationIdentifier": id }),
                )
                .await;
                // Released, or (the instance that held it killed) left to expire: both free
                // what is left; a 400 POL2011 says it is closed already.
                assert!(
                    status == 204 || status == 400,
                    "{key} release: {status} {b}"
                );
            }
            (HashMap::new(), used)
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Instance 1 dies (SIGKILL): what it had in flight is left to the others.
    if let Some(gw) = cluster.write().await[1].take() {
        drop(gw);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    let mut charged: HashMap<String, Decimal> = HashMap::new();
    let mut used = Decimal::ZERO;
    for t in tasks {
        let (c, u) = t.await.unwrap();
        for (k, v) in c {
            assert!(charged.insert(k, v).is_none());
        }
        used += u;
    }
    let expected: Decimal = charged.values().copied().sum::<Decimal>() + used;
    assert!(charged.len() > 50, "a load: {} charges", charged.len());
    // Reservations left open (their holder killed) are released at their validity.
    for _ in 0..200 {
        if sim.open_reservations() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sim.open_reservations(), 0, "a reservation left open");
    // The ledger equals the sum of the 2xx answers.
    let balance = sim.balance(PAYER).unwrap().amount;
    assert_eq!(
        d("100000.00") - balance,
        expected,
        "the OCS charged what the 2xx answers say ({} charges, {used} on reservations)",
        charged.len()
    );
    // No referenceCode charged twice: one debit per charge at the OCS.
    let debits = sim.journal().iter().filter(|e| e.op == "debit").count();
    assert_eq!(debits, charged.len(), "debits at the OCS");
    eprintln!(
        "cluster: {} charges, {} EUR on reservations, {} debits, balance {balance}",
        charged.len(),
        used,
        debits
    );
    drop(cluster);
    sim.shutdown().await;
}
