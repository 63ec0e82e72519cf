//! TMF654 end to end: real HTTP -> the `gateway` process (`gateway serve`) -> Diameter over
//! TCP -> the OCS simulator, which runs in this test process so that its balances, journal
//! and faults are at hand. Top-ups that move the balance exactly once even when retried,
//! the failure mapping, listing and pagination, bad input, balance sufficiency, an
//! automatic top-up cancelled, and a top-up whose outcome was unknown when the gateway
//! process was killed, resolved by the restarted process.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::codec::ResultCode;
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const ALICE: &str = "tel:+34671999000";
const BOB: &str = "tel:+34600000001";
const BASE: &str = "/tmf-api/prepayBalanceManagement/v4";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The TMF Error code of an answer, after checking the body is that shape.
trait Code {
    fn code(&self) -> String;
}

impl Code for Answer {
    fn code(&self) -> String {
        for k in ["code", "reason", "message", "status", "@type"] {
            assert!(self.body.get(k).is_some(), "{k} in {}", self.body);
        }
        assert_eq!(self.body["status"], self.status.to_string());
        self.body["code"].as_str().unwrap().to_string()
    }
}

/// `gateway serve` with a SQLite store in `dir`, pointing at the simulator at `ocs`.
async fn start(dir: &Path, ocs: std::net::SocketAddr) -> GatewayProcess {
    let config = format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[diameter.timers]
request_timeout = "1s"
reconnect_min = "200ms"
reconnect_max = "1s"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{ocs}"

[credit_control]
style = "mscc"
resolve_interval = "200ms"

[http]
listen = "127.0.0.1:0"

[store]
backend = "sqlite"
data_dir = "{data}"

[ocs_sim]
enabled = false

[tmf654]
scheduler_interval = "200ms"
retry_window = "1m"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
max_amount = "50.00"

[[apps]]
id = "other"
api_key = "other-key"
allowed_operations = ["query-balance"]
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    );
    GatewayProcess::start(dir, &config).await
}

/// A request of the application "shop" under the TMF654 base path.
trait Shop {
    async fn shop(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer;
}

impl Shop for GatewayProcess {
    async fn shop(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut h: Vec<(&str, &str)> = key.iter().map(|k| ("idempotency-key", *k)).collect();
        if body.is_some() {
            h.push(("content-type", "application/json;charset=utf-8"));
        }
        self.request(
            method,
            &format!("{BASE}{path}"),
            Some(&basic("shop", "shop-secret")),
            &h,
            body.map(|b| b.to_string()),
        )
        .await
        .unwrap()
    }
}

async fn simulator(dir: &Path) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            journal_path: Some(dir.join("ocs-journal.jsonl")),
            accounts: [(ALICE, "100.00"), (BOB, "5.00")]
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

fn balance(sim: &OcsSim, s: &str) -> Decimal {
    sim.balance(s).unwrap().amount
}

fn refunds(sim: &OcsSim) -> usize {
    sim.journal().iter().filter(|e| e.op == "refund").count()
}

fn topup(amount: Value, msisdn: &str) -> Value {
    json!({
        "amount": {"amount": amount, "units": "EUR"},
        "usageType": "monetary",
        "bucket": {"id": "b-1"},
        "partyAccount": {"id": "pa-9"},
        "logicalResource": [{"id": msisdn, "@referredType": "MSISDN"}],
        "channel": {"id": "web"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmf654_end_to_end() {
    let dir = TempDir::new("ops");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;

    // A top-up (API.md 6.3 D): 201 completed; the OCS credited exactly 10.00 once.
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            Some("e2e-1"),
            Some(topup(json!(10), "34671999000")),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "completed");
    assert!(a.body["confirmationDate"].is_string());
    let id = a.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("{BASE}/topupBalance/{id}").as_str())
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(balance(&sim, ALICE), d("110.00"));
    // Retried (the answer lost), several times and at once: the same top-up, no second credit.
    let mut retries = Vec::new();
    for _ in 0..4 {
        retries.push(gw.shop(
            "POST",
            "/topupBalance",
            Some("e2e-1"),
            Some(topup(json!("10.00"), "34671999000")),
        ));
    }
    for r in futures::future::join_all(retries).await {
        assert_eq!(
            (r.status, r.body["id"].as_str()),
            (201, Some(id.as_str())),
            "{}",
            r.body
        );
    }
    assert_eq!(balance(&sim, ALICE), d("110.00"));
    assert_eq!(refunds(&sim), 1);
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            Some("e2e-1"),
            Some(topup(json!(9), "34671999000")),
        )
        .await;
    assert_eq!((a.status, a.code()), (409, "CONFLICT".to_string()));
    let a = gw
        .shop("GET", &format!("/topupBalance/{id}"), None, None)
        .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("completed"))
    );

    // Failures, as documented: refused -> 201 failed with the Diameter name; unknown
    // subscriber -> 400 5030; nothing credited.
    sim.set_faults(|f| {
        f.fixed.insert("tel:34600000001".into(), ResultCode(4010));
    });
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            None,
            Some(topup(json!(1), "34600000001")),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["status"], "failed");
    assert_eq!(a.body["reason"], "DIAMETER_END_USER_SERVICE_DENIED (4010)");
    sim.clear_faults();
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            None,
            Some(topup(json!(1), "34999999999")),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "5030".to_string()));
    assert_eq!(balance(&sim, BOB), d("5.00"));

    // Bad input: a clear 4xx (or 501) naming the field; nothing reaches the OCS.
    let journal = sim.journal().len();
    let good = topup(json!(1), "34671999000");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    for (body, status, field) in [
        ("{not json".to_string(), 400, "body"),
        (
            json!({"logicalResource": [{"id": "34671999000"}]}).to_string(),
            400,
            "amount",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!("abc")),
            400,
            "amount.amount",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!(0)),
            400,
            "amount.amount",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!(-1)),
            400,
            "amount.amount",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!("0.001")),
            400,
            "amount.amount",
        ),
        (
            with(&|v| v["amount"]["units"] = json!("EUX")),
            400,
            "amount.units",
        ),
        (
            with(&|v| v["logicalResource"][0]["id"] = json!("0034671999000")),
            400,
            "logicalResource[0].id",
        ),
        (with(&|v| v["isAutoTopup"] = json!(1)), 400, "isAutoTopup"),
        (with(&|v| v["usageType"] = json!("voice")), 501, "usageType"),
        (with(&|v| v["amount"]["amount"] = json!("50.01")), 403, ""),
    ] {
        let a = gw
            .request(
                "POST",
                &format!("{BASE}/topupBalance"),
                Some(&basic("shop", "shop-secret")),
                &[],
                Some(body.clone()),
            )
            .await
            .unwrap();
        assert_eq!(a.status, status, "{body}: {}", a.body);
        a.code();
        assert!(
            a.body["message"].as_str().unwrap().starts_with(field),
            "{body}: {}",
            a.body
        );
    }
    let a = gw
        .request(
            "POST",
            &format!("{BASE}/topupBalance"),
            None,
            &[],
            Some(good.to_string()),
        )
        .await
        .unwrap();
    assert_eq!((a.status, a.code()), (401, "UNAUTHENTICATED".to_string()));
    assert_eq!(sim.journal().len(), journal, "nothing reached the OCS");

    // Listing: newest first, paginated, with the counts.
    for i in 0..3 {
        let a = gw
            .shop(
                "POST",
                "/topupBalance",
                Some(&format!("page-{i}")),
                Some(topup(json!("0.10"), "34671999000")),
            )
            .await;
        assert_eq!(a.body["status"], "completed");
    }
    let a = gw
        .shop(
            "GET",
            "/topupBalance?status=completed&offset=1&limit=2",
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-total-count"), Some("4"));
    assert_eq!(a.header("x-result-count"), Some("2"));
    assert_eq!(a.body.as_array().unwrap().len(), 2);
    let a = gw
        .shop("GET", "/topupBalance?fields=status", None, None)
        .await;
    assert_eq!(
        a.header("x-total-count"),
        Some("6"),
        "completed, failed and the 5030 attempt"
    );
    assert!(
        a.body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("amount").is_none())
    );
    assert_eq!(balance(&sim, ALICE), d("110.30"));

    // Balance sufficiency: the OCS's ENOUGH_CREDIT / NO_CREDIT for an amount; no number.
    let a = gw
        .shop(
            "GET",
            "/bucket?logicalResource.value=34600000001&amount=5.00&units=EUR",
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body[0]["balanceCheck"]["result"], "ENOUGH_CREDIT");
    assert!(a.body[0].get("remainingValue").is_none());
    let a = gw
        .shop(
            "GET",
            "/bucket/msisdn-34600000001?amount=5.01&units=EUR",
            None,
            None,
        )
        .await;
    assert_eq!(
        (
            a.body["balanceCheck"]["result"].as_str(),
            a.body["balanceCheck"]["sufficient"].as_bool()
        ),
        (Some("NO_CREDIT"), Some(false))
    );
    let a = gw
        .shop("GET", "/bucket/msisdn-34671999000", None, None)
        .await;
    assert_eq!(a.body["topupLedger"]["count"], 4);
    assert_eq!(a.body["topupLedger"]["total"][0]["units"], "EUR");
    assert_eq!(
        a.body["topupLedger"]["total"][0]["amount"].to_string(),
        "10.30"
    );
    let a = gw
        .request(
            "GET",
            &format!("{BASE}/bucket/msisdn-34671999000?amount=1&units=EUR"),
            None,
            &[("x-api-key", "other-key")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        a.status, 200,
        "query-balance is allowed to the other application"
    );
    assert_eq!(a.body["topupLedger"]["count"], 0, "its own ledger");
    let a = gw
        .request(
            "GET",
            &format!("{BASE}/topupBalance"),
            None,
            &[("x-api-key", "other-key")],
            None,
        )
        .await
        .unwrap();
    assert_eq!((a.status, a.code()), (403, "PERMISSION_DENIED".to_string()));
    assert_eq!(balance(&sim, BOB), d("5.00"), "queries move nothing");

    // An automatic top-up: the first period runs with the request; DELETE stops it.
    let mut auto = topup(json!(2), "34600000001");
    auto["isAutoTopup"] = json!(true);
    auto["recurringPeriod"] = json!("monthly");
    auto["numberOfPeriods"] = json!(12);
    let a = gw
        .shop("POST", "/topupBalance", Some("auto-1"), Some(auto))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "created");
    assert_eq!(a.body["balanceTopup"][0]["role"], "child");
    let parent = a.body["id"].as_str().unwrap().to_string();
    assert_eq!(balance(&sim, BOB), d("7.00"));
    let run = gw
        .shop("GET", &format!("/topupBalance/{parent}-p1"), None, None)
        .await;
    assert_eq!(run.body["status"], "completed");
    assert_eq!(run.body["balanceTopup"][0]["role"], "parent");
    let a = gw
        .shop("DELETE", &format!("/topupBalance/{parent}"), None, None)
        .await;
    assert_eq!(a.status, 204);
    let a = gw
        .shop("GET", &format!("/topupBalance/{parent}"), None, None)
        .await;
    assert_eq!(a.body["status"], "cancelled");
    let a = gw
        .shop("DELETE", &format!("/topupBalance/{id}"), None, None)
        .await;
    assert_eq!((a.status, a.code()), (409, "INVALID_STATE".to_string()));

    // The OpenAPI document lists the family.
    let a = gw
        .request("GET", "/openapi.json", None, &[], None)
        .await
        .unwrap();
    assert!(a.body["paths"][format!("{BASE}/topupBalance")]["post"].is_object());
    assert!(a.body["paths"][format!("{BASE}/bucket/{{id}}")]["get"].is_object());
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_survives_a_crash_and_credits_once() {
    let dir = TempDir::new("crash");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    // The OCS applies the top-up but answers after the gateway's Tx (1 s): the gateway
    // cannot know whether it was applied. 201 created, never completed.
    sim.set_faults(|f| f.latency = Duration::from_millis(1500));
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            Some("crash-1"),
            Some(topup(json!("7.50"), "34671999000")),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "created");
    assert!(a.body.get("confirmationDate").is_none());
    let id = a.body["id"].as_str().unwrap().to_string();
    // The gateway is killed while it does not know; the OCS did apply it.
    drop(gw);
    for _ in 0..200 {
        if balance(&sim, ALICE) != d("100.00") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(balance(&sim, ALICE), d("107.50"));
    sim.clear_faults();
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    // The restarted gateway re-sends the recorded request (T flag, same Session-Id and
    // number): the OCS knows it as a duplicate and answers its first answer. Completed, and
    // credited once.
    let mut status = Value::Null;
    for _ in 0..200 {
        let a = gw
            .shop("GET", &format!("/topupBalance/{id}"), None, None)
            .await;
        status = a.body["status"].clone();
        if status != "created" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
    let a = gw
        .shop(
            "POST",
            "/topupBalance",
            Some("crash-1"),
            Some(topup(json!("7.50"), "34671999000")),
        )
        .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (201, Some("completed"))
    );
    assert_eq!(balance(&sim, ALICE), d("107.50"));
    assert_eq!(refunds(&sim), 1);
    gw.stop();
    sim.shutdown().await;
}
