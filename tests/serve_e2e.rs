//! Slow clients against the `gateway serve` process, over real TCP on loopback, with the OCS
//! simulator in this test process (its journal and balances at hand):
//!
//! - a request whose body never arrives is answered 408 "nothing was charged" in each REST
//!   family's error model once `http.body_timeout` has passed, and nothing reached the OCS;
//! - 200 connections trickling request headers that never end (a slowloris) do not hold up
//!   another client's charge, and the server closes each of them once `http.header_timeout`
//!   has passed.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{GatewayProcess, TempDir, basic, dictionaries};

const ALICE: &str = "tel:+34671999000";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// `gateway serve` on the simulator at `ocs`, with the given `[http]` timeouts.
async fn start(dir: &Path, ocs: std::net::SocketAddr, http: &str) -> GatewayProcess {
    let config = format!(
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

[http]
listen = "127.0.0.1:0"
request_timeout = "3s"
{http}

[store]
backend = "sqlite"
data_dir = "{data}"

[ocs_sim]
enabled = false

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
admin = true
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    );
    GatewayProcess::start(dir, &config).await
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
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// A request of each family: path, extra header, and a body that the gateway accepts.
fn requests() -> [(&'static str, &'static str, &'static str, Value); 3] {
    [
        (
            "OCSG",
            "/rest/payment/charge-amount",
            "X-Family: ocsg",
            json!({"charge": {"amount": "1.00", "currency": "EUR"},
                   "endUserIdentifier": ALICE, "referenceCode": "slow-ocsg"}),
        ),
        (
            "CAMARA",
            "/carrier-billing/v0.5/payments",
            "x-correlator: slow-camara",
            json!({"amountTransaction": {"phoneNumber": "+34671999000",
                   "referenceCode": "slow-camara", "paymentAmount": {"chargingInformation":
                   {"amount": 1, "currency": "EUR", "description": "slow"}}}}),
        ),
        (
            "TMF654",
            "/tmf-api/prepayBalanceManagement/v4/topupBalance",
            "Idempotency-Key: slow-tmf",
            json!({"amount": {"amount": 1, "units": "EUR"}, "usageType": "monetary",
                   "bucket": {"id": "b-1"}, "partyAccount": {"id": "pa-9"},
                   "logicalResource": [{"id": "34671999000", "@referredType": "MSISDN"}],
                   "channel": {"id": "web"}}),
        ),
    ]
}

/// An answer read off a raw connection until the server closed it.
struct Raw {
    status: u16,
    head: String,
    body: Value,
    /// From the last byte of the request sent to the connection closed.
    waited: Duration,
}

/// Sends a request head declaring `length` body bytes and `sent` of them, then waits (at most
/// 30 s) for the answer and for the server to close the connection.
async fn stalled_request(host: &str, path: &str, header: &str, length: usize, sent: &[u8]) -> Raw {
    let mut s = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n{header}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        basic("shop", "shop-secret")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(sent).await.unwrap();
    let sent_at = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes the connection")
        .unwrap();
    let waited = sent_at.elapsed();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.into())),
        waited,
    }
}

/// The `gateway_ccr_total` lines of the gateway's metrics: CCRs it sent.
async fn ccr_metrics(gw: &GatewayProcess) -> Vec<String> {
    let auth = basic("shop", "shop-secret");
    let m = gw
        .request("GET", "/metrics", Some(&auth), &[], None)
        .await
        .unwrap();
    assert_eq!(m.status, 200);
    let text = m.body.as_str().unwrap_or_default().to_string();
    assert!(text.contains("gateway_http_requests_total"), "{text}");
    text.lines()
        .filter(|l| l.starts_with("gateway_ccr_total{"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_408_in_each_family_and_nothing_is_sent() {
    let dir = TempDir::new("slow-body");
    let sim = simulator().await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), "body_timeout = \"1s\"").await;
    let host = gw.host.clone();
    // Content-Length 100, 10 bytes sent, then nothing: all three families at once.
    let stalled = requests().map(|(family, path, header, _)| {
        let host = host.clone();
        tokio::spawn(async move {
            (
                family,
                stalled_request(&host, path, header, 100, b"{\"charge\":").await,
            )
        })
    });
    for task in stalled {
        let (family, a) = task.await.unwrap();
        assert_eq!(a.status, 408, "{family}: {} {}", a.head, a.body);
        assert!(a.head.contains("connection: close"), "{family}: {}", a.head);
        // Answered once the body timeout passed (not by the request timeout, 3 s: that
        // would be 503 or 504, "outcome unknown").
        assert!(
            a.waited >= Duration::from_secs(1),
            "{family}: {:?}",
            a.waited
        );
        let message = match family {
            "OCSG" => {
                assert_eq!(
                    a.body["error"]["type"],
                    "org.csapi.schema.parlayx.common.v3_1.ServiceException"
                );
                let m = a.body["error"]["message"].as_str().unwrap();
                assert!(m.starts_with("SVC0001: "), "{m}");
                m.to_string()
            }
            "CAMARA" => {
                assert_eq!(a.body["status"], 408);
                assert_eq!(a.body["code"], "TIMEOUT");
                assert!(a.head.contains("x-correlator: slow-camara"), "{}", a.head);
                a.body["message"].as_str().unwrap().to_string()
            }
            _ => {
                assert_eq!(a.body["status"], "408");
                assert_eq!(a.body["code"], "TIMEOUT");
                assert_eq!(a.body["@type"], "Error");
                a.body["message"].as_str().unwrap().to_string()
            }
        };
        assert!(
            message.contains("nothing was charged"),
            "{family}: {message}"
        );
        assert!(!message.contains("unknown"), "{family}: {message}");
    }
    // Nothing reached the OCS, nothing was sent, nothing was recorded.
    assert!(sim.journal().is_empty(), "{:?}", sim.journal());
    assert_eq!(sim.balance(ALICE).unwrap().amount, d("100.00"));
    assert_eq!(ccr_metrics(&gw).await, Vec::<String>::new());
    let auth = basic("shop", "shop-secret");
    let ops = gw
        .request("GET", "/admin/operations", Some(&auth), &[], None)
        .await
        .unwrap();
    assert_eq!(ops.body, json!([]), "nothing on record");
    // The same requests sent whole go through: the checks above see a request when there is
    // one.
    for (family, path, header, body) in requests() {
        let (name, value) = header.split_once(": ").unwrap();
        let a = gw
            .request(
                "POST",
                path,
                Some(&auth),
                &[(name, value)],
                Some(body.to_string()),
            )
            .await
            .unwrap();
        assert!(
            a.status == 201 || a.status == 204,
            "{family}: {} {}",
            a.status,
            a.body
        );
    }
    assert_eq!(sim.journal().len(), 3, "{:?}", sim.journal());
    assert!(!ccr_metrics(&gw).await.is_empty());
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_holds_no_charge_and_is_disconnected_after_the_header_timeout() {
    const STALLED: usize = 200;
    let header_timeout = Duration::from_secs(5);
    let dir = TempDir::new("slowloris");
    let sim = simulator().await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), "header_timeout = \"5s\"").await;
    // 200 connections that start a request and never finish its headers.
    let closed = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    let first_opened = Instant::now();
    for i in 0..STALLED {
        let opened = Instant::now();
        let s = TcpStream::connect(&gw.host).await.unwrap();
        let (mut r, mut w) = s.into_split();
        w.write_all(
            format!("POST /rest/payment/charge-amount HTTP/1.1\r\nHost: x\r\nX-Slow: {i}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        writers.push(Some(w));
        let closed = Arc::clone(&closed);
        readers.push(tokio::spawn(async move {
            // Until the server closes it (EOF, or a reset after the trickle went on).
            let mut buf = [0u8; 512];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
            (opened, Instant::now())
        }));
    }
    // Keep trickling: one more header line on each connection every 500 ms.
    let trickle = tokio::spawn(async move {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut open = 0;
            for w in &mut writers {
                if let Some(s) = w {
                    if s.write_all(format!("X-More-{n}: 1\r\n").as_bytes())
                        .await
                        .is_ok()
                    {
                        open += 1;
                    } else {
                        *w = None;
                    }
                }
            }
            if open == 0 {
                return;
            }
        }
    });
    // A normal charge meanwhile: it completes, correctly, while all 200 are still open.
    let charge = json!({"charge": {"amount": "2.50", "currency": "EUR"},
                        "endUserIdentifier": ALICE, "referenceCode": "not-held-up"});
    let a = gw
        .request(
            "POST",
            "/rest/payment/charge-amount",
            Some(&basic("shop", "shop-secret")),
            &[],
            Some(charge.to_string()),
        )
        .await
        .unwrap();
    let done = Instant::now();
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "stalled connections closed too early"
    );
    assert!(
        done.duration_since(first_opened) < header_timeout,
        "the charge waited for the stalled connections: {:?}",
        done.duration_since(first_opened)
    );
    assert_eq!(sim.balance(ALICE).unwrap().amount, d("97.50"));
    assert_eq!(sim.journal().len(), 1);
    // Each stalled connection is closed by the server, once its header timeout has passed.
    for r in readers {
        let (opened, closed_at) = tokio::time::timeout(header_timeout * 5, r)
            .await
            .expect("the server closes every stalled connection")
            .unwrap();
        let open_for = closed_at.duration_since(opened);
        assert!(open_for >= header_timeout, "closed after {open_for:?}");
    }
    trickle.abort();
    gw.stop();
    sim.shutdown().await;
}
