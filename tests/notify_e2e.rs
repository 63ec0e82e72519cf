//! Notifications end to end, through crashes: real HTTP -> the `gateway` process (`gateway
//! serve`, SQLite store) -> Diameter -> the OCS simulator in this test process, and the
//! gateway's outbox posting CloudEvents to a listener this test runs. The gateway is killed
//! (SIGKILL) between the commit of an event and its delivery, and right after answering an
//! asynchronous payment; after a restart every event still reaches the listener, under the
//! same id, and no payment is charged twice. On PostgreSQL, the events of an instance killed
//! before it could deliver them are delivered by another instance on the same database.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::postgres::Server;
use support::process::{GatewayProcess, TempDir, dictionaries};

const ALICE: &str = "+34671999000";
const PAY: &str = "/carrier-billing/v0.5/payments";
const TOKEN: &str = "sink-token-123";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// One request the listener got: its headers (lower-case names) and JSON body.
type Request = (HashMap<String, String>, Value);

/// What the listener received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Request>>>);

impl Received {
    fn all(&self) -> Vec<Request> {
        self.0.lock().unwrap().clone()
    }

    /// How many times each event id arrived.
    fn ids(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (_, body) in self.all() {
            *m.entry(body["id"].as_str().unwrap_or("").to_string())
                .or_insert(0) += 1;
        }
        m
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        for _ in 0..600 {
            if ok(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the listener never got it; it got {:?}", self.all());
    }
}

/// An HTTP listener on `addr` that records every request and answers 204.
async fn listener(addr: SocketAddr) -> (Received, tokio::task::JoinHandle<()>) {
    let received = Received::default();
    let sock = tokio::net::TcpListener::bind(addr).await.unwrap();
    let rec = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = sock.accept().await else {
                return;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body = body
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            rec.0.lock().unwrap().push((headers, body));
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(204)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (received, task)
}

/// A loopback address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

async fn start(dir: &Path, ocs: SocketAddr) -> GatewayProcess {
    let store = format!(
        "backend = \"sqlite\"\ndata_dir = \"{}\"",
        dir.join("data").display()
    );
    GatewayProcess::start(dir, &config("gw.charging.local", ocs, &store)).await
}

/// The gateway's configuration: its Origin-Host, the simulator's address, the `[store]` keys.
fn config(origin_host: &str, ocs: SocketAddr, store: &str) -> String {
    format!(
        r#"
[diameter]
origin_host = "{origin_host}"
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
{store}

[ocs_sim]
enabled = false

[cluster]
lease = "2s"

[notifications]
allow_http = true
allowed_networks = ["127.0.0.0/8"]
backoff_min = "100ms"
backoff_max = "500ms"
max_attempts = 1000
poll_interval = "200ms"
connect_timeout = "500ms"
request_timeout = "1s"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"

[[apps]]
id = "ops"
api_key = "ops-key"
admin = true
"#,
        dict = dictionaries().display(),
    )
}

fn shop() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("shop:shop-secret")
    )
}

async fn simulator(dir: &Path) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            journal_path: Some(dir.join("ocs-journal.jsonl")),
            accounts: vec![SimAccount {
                subscriber: format!("tel:{ALICE}"),
                balance: d("100.00"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

fn payment(reference: &str, sink: &str) -> String {
    json!({
        "amountTransaction": {
            "phoneNumber": ALICE,
            "referenceCode": reference,
            "clientCorrelator": reference,
            "paymentAmount": {
                "chargingInformation": {
                    "amount": 1.25, "currency": "EUR", "description": "Game credits"
                }
            }
        },
        "sink": sink,
        "sinkCredential": {
            "credentialType": "ACCESSTOKEN",
            "accessToken": TOKEN,
            "accessTokenExpiresUtc": "2099-01-01T00:00:00Z",
            "accessTokenType": "bearer"
        }
    })
    .to_string()
}

async fn post_payment(gw: &GatewayProcess, reference: &str, sink: &str) -> Value {
    let r = gw
        .request(
            "POST",
            PAY,
            Some(&shop()),
            &[],
            Some(payment(reference, sink)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["paymentStatus"], "processing", "{}", r.body);
    r.body
}

async fn wait_status(gw: &GatewayProcess, id: &str, want: &str) {
    let mut last = Value::Null;
    for _ in 0..400 {
        let r = gw
            .request("GET", &format!("{PAY}/{id}"), Some(&shop()), &[], None)
            .await
            .unwrap();
        if r.status == 200 && r.body["paymentStatus"] == want {
            return;
        }
        last = r.body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("payment {id} never became {want}: {last}");
}

/// The events the gateway's outbox holds for a payment (admin endpoint).
async fn events_of(gw: &GatewayProcess, id: &str) -> Vec<Value> {
    let r = gw
        .request(
            "GET",
            &format!("/admin/events?resource={id}"),
            None,
            &[("x-api-key", "ops-key")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["events"].as_array().cloned().unwrap_or_default()
}

fn debits(sim: &OcsSim) -> usize {
    sim.journal().iter().filter(|e| e.op == "debit").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_a_crash_is_delivered_after_the_restart() {
    let dir = TempDir::new("notify-crash-committed");
    let sim = simulator(&dir.0).await;
    let hook = free_addr();
    let sink = format!("http://{hook}/events");
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    let created = post_payment(&gw, "crash-1", &sink).await;
    let id = created["paymentId"].as_str().unwrap().to_string();
    wait_status(&gw, &id, "succeeded").await;
    // The completed event is committed; nobody listens, so its first attempts fail.
    let mut tried = false;
    for _ in 0..200 {
        let events = events_of(&gw, &id).await;
        if events
            .iter()
            .any(|e| e["state"] == "pending" && e["attempts"].as_u64().unwrap_or(0) >= 1)
        {
            tried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tried,
        "no failed attempt recorded: {:?}",
        events_of(&gw, &id).await
    );
    drop(gw); // SIGKILL
    let (received, _task) = listener(hook).await;
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    received
        .wait_for("the completed event", |r| {
            r.all()
                .iter()
                .any(|(_, b)| b["type"] == "org.camaraproject.carrier-billing.v0.payment-completed")
        })
        .await;
    // Give duplicates (if any) a moment, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = received.all();
    let (headers, body) = all
        .iter()
        .find(|(_, b)| b["type"] == "org.camaraproject.carrier-billing.v0.payment-completed")
        .unwrap();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["data"]["paymentId"], json!(id));
    assert!(body["data"]["paymentDate"].is_string(), "{body}");
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert!(
        headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/cloudevents+json")),
        "{headers:?}"
    );
    for (event, n) in received.ids() {
        assert!((1..=3).contains(&n), "event {event} arrived {n} times");
    }
    let stored = events_of(&gw, &id).await;
    assert!(
        stored.iter().all(|e| e["state"] == "delivered"),
        "{stored:?}"
    );
    assert_eq!(stored.len(), received.ids().len(), "{stored:?}");
    assert_eq!(debits(&sim), 1);
    assert_eq!(
        sim.balance(&format!("tel:{ALICE}")).unwrap().amount,
        d("98.75")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_payment_answered_before_a_crash_is_finished_and_told_after_the_restart() {
    let dir = TempDir::new("notify-crash-async");
    let sim = simulator(&dir.0).await;
    let hook = free_addr();
    let (received, _task) = listener(hook).await;
    let sink = format!("http://{hook}/events");
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    let created = post_payment(&gw, "crash-2", &sink).await;
    let id = created["paymentId"].as_str().unwrap().to_string();
    drop(gw); // SIGKILL right after the 201: the charge may or may not have been sent.
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    wait_status(&gw, &id, "succeeded").await;
    received
        .wait_for("the completed event", |r| {
            r.all().iter().any(|(_, b)| {
                b["type"] == "org.camaraproject.carrier-billing.v0.payment-completed"
                    && b["data"]["paymentId"] == json!(id)
            })
        })
        .await;
    // The same request again answers the payment as it stands: no second charge.
    let again = gw
        .request(
            "POST",
            PAY,
            Some(&shop()),
            &[],
            Some(payment("crash-2", &sink)),
        )
        .await
        .unwrap();
    assert!(again.status == 200 || again.status == 201, "{}", again.body);
    assert_eq!(again.body["paymentId"], json!(id), "{}", again.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(debits(&sim), 1, "{:?}", sim.journal());
    assert_eq!(
        sim.balance(&format!("tel:{ALICE}")).unwrap().amount,
        d("98.75")
    );
    for (event, n) in received.ids() {
        assert!((1..=3).contains(&n), "event {event} arrived {n} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_an_instance_killed_before_delivery_are_delivered_by_another() {
    let Some(server) = Server::shared_or_skip(
        "events_of_an_instance_killed_before_delivery_are_delivered_by_another",
    ) else {
        return;
    };
    let url = server.database("notify_cluster");
    let store = format!("backend = \"postgres\"\nurl = \"{url}\"");
    let dir = TempDir::new("notify-cluster");
    let sim = simulator(&dir.0).await;
    let ocs = sim.local_addr().unwrap();
    let hook = free_addr();
    let sink = format!("http://{hook}/events");
    let (dir_a, dir_b) = (dir.0.join("a"), dir.0.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = GatewayProcess::start(&dir_a, &config("gw1.charging.local", ocs, &store)).await;
    let b = GatewayProcess::start(&dir_b, &config("gw2.charging.local", ocs, &store)).await;
    // Ten async payments on instance A; nobody listens, so their events stay pending.
    let mut ids = Vec::new();
    for i in 0..10 {
        let created = post_payment(&a, &format!("cluster-{i}"), &sink).await;
        ids.push(created["paymentId"].as_str().unwrap().to_string());
    }
    // B sees them all succeed: one database.
    for id in &ids {
        wait_status(&b, id, "succeeded").await;
    }
    drop(a); // SIGKILL: its claims on the events it was trying run out after the lease.
    let (received, _task) = listener(hook).await;
    received
        .wait_for("every payment's completed event", |r| {
            let all = r.all();
            ids.iter().all(|id| {
                all.iter().any(|(_, body)| {
                    body["type"] == "org.camaraproject.carrier-billing.v0.payment-completed"
                        && body["data"]["paymentId"] == json!(id)
                })
            })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (event, n) in received.ids() {
        assert!((1..=3).contains(&n), "event {event} arrived {n} times");
    }
    for id in &ids {
        let stored = events_of(&b, id).await;
        assert!(
            !stored.is_empty() && stored.iter().all(|e| e["state"] == "delivered"),
            "{stored:?}"
        );
    }
    assert_eq!(debits(&sim), 10, "{:?}", sim.journal());
}
