//! CAMARA Carrier Billing end to end: real HTTP -> the `gateway` process (`gateway serve`) ->
//! Diameter over TCP -> the OCS simulator, which runs in this test process so that its balances
//! and journal can be read. 1-step and 2-step payments, refusals, refunds and the remaining
//! amount, idempotent retries, listings, bad input, reservation expiry, a prepared payment
//! confirmed after a hard restart of the gateway, and the Checkout flavour (purchase, then its
//! payment in one or two steps, across a restart).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, dictionaries};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "+34671999000";
const BOB: &str = "+34600000001";
const CAROL: &str = "+34600000002";

const PAY: &str = "/carrier-billing/v0.5/payments";
const REFUND: &str = "/carrier-billing-refund/v0.3/payments";
const PURCHASES: &str = "/carrier-billing-checkout/v0/purchases";

/// `gateway serve` with a SQLite store in `dir`, pointing at the simulator at `ocs`;
/// `credit_control` adds keys to that section. Waits until the REST API is ready.
async fn start(dir: &Path, ocs: std::net::SocketAddr, credit_control: &str) -> GatewayProcess {
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

[credit_control]
style = "mscc"
resolve_interval = "300ms"
{credit_control}

[http]
listen = "127.0.0.1:0"
max_body_bytes = 8192

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
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    );
    GatewayProcess::start(dir, &config).await
}

/// The CAMARA error code of an answer, after checking the body is that shape.
trait Code {
    fn code(&self) -> &str;
}

impl Code for Answer {
    fn code(&self) -> &str {
        assert_eq!(self.body["status"], json!(self.status), "{}", self.body);
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// The calls these tests make.
trait Calls {
    async fn req(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, String>;

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.req("POST", path, Some(&shop()), Some(body.to_string()), &[])
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Answer {
        self.req("GET", path, Some(&shop()), None, &[])
            .await
            .unwrap()
    }

    async fn status_of(&self, id: &str) -> String {
        let r = self.get(&format!("{PAY}/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["paymentStatus"].as_str().unwrap().to_string()
    }
}

impl Calls for GatewayProcess {
    async fn req(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, String> {
        self.request(method, path, auth, extra, body).await
    }
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
            accounts: [(ALICE, "100.00"), (BOB, "5.00"), (CAROL, "20.00")]
                .iter()
                .map(|(s, b)| SimAccount {
                    subscriber: format!("tel:{s}"),
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

fn balance(sim: &OcsSim, who: &str) -> Decimal {
    sim.balance(&format!("tel:{who}")).unwrap().amount
}

fn reserved(sim: &OcsSim, who: &str) -> Decimal {
    sim.account(&format!("tel:{who}")).unwrap().reserved
}

fn journal(sim: &OcsSim, op: &str) -> usize {
    sim.journal().iter().filter(|e| e.op == op).count()
}

fn number(s: &str) -> Value {
    Value::Number(serde_json::Number::from_str(s).unwrap())
}

fn payment(who: &str, amount: &str, reference: &str, cc: Option<&str>) -> Value {
    let mut v = json!({
        "amountTransaction": {
            "phoneNumber": who,
            "referenceCode": reference,
            "paymentAmount": {
                "chargingInformation": {
                    "amount": number(amount), "currency": "EUR", "description": "Game credits"
                },
                "chargingMetaData": {"merchantIdentifier": "eas-12345"}
            }
        }
    });
    if let Some(c) = cc {
        v["amountTransaction"]["clientCorrelator"] = json!(c);
    }
    v
}

fn partial(amount: &str, reference: &str) -> Value {
    json!({"type": "partial", "amountTransaction": {"referenceCode": reference, "refundAmount": {
        "chargingInformation": {"amount": number(amount), "currency": "EUR", "description": "refund"}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camara_payments_and_refunds_end_to_end() {
    let dir = TempDir::new("flows");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), "").await;

    // 1-step: 201 succeeded, debited once; x-correlator echoed.
    let body = payment(ALICE, "4.99", "e2e-pay-1", Some("e2e-cc-1"));
    let r = gw
        .req(
            "POST",
            PAY,
            Some(&shop()),
            Some(body.to_string()),
            &[("x-correlator", "e2e-corr-1")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("x-correlator"), Some("e2e-corr-1"));
    assert_eq!(r.body["paymentStatus"], "succeeded");
    let one = r.body["paymentId"].as_str().unwrap().to_string();
    let session = r.body["amountTransaction"]["serverReferenceCode"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    let debits: Vec<_> = sim
        .journal()
        .into_iter()
        .filter(|e| e.op == "debit")
        .collect();
    assert_eq!(debits.len(), 1);
    assert_eq!(
        (debits[0].amount, debits[0].session_id.as_str()),
        (d("4.99"), session.as_str())
    );
    // Retries with the clientCorrelator: the same payment, never charged twice.
    for _ in 0..3 {
        let r = gw.post(PAY, &body).await;
        assert_eq!(
            (r.status, r.body["paymentId"].as_str()),
            (201, Some(one.as_str()))
        );
    }
    assert_eq!(journal(&sim, "debit"), 1);
    // The same clientCorrelator for another request, the same referenceCode without one.
    let r = gw
        .post(PAY, &payment(ALICE, "5.99", "e2e-pay-1", Some("e2e-cc-1")))
        .await;
    assert_eq!((r.status, r.code()), (400, "INVALID_ARGUMENT"));
    let r = gw
        .post(PAY, &payment(ALICE, "4.99", "e2e-pay-1", None))
        .await;
    assert_eq!((r.status, r.code()), (409, "ALREADY_EXISTS"));
    assert_eq!(balance(&sim, ALICE), d("95.01"));

    // Denied by the OCS, unknown user: no payment, nothing moved.
    let r = gw.post(PAY, &payment(BOB, "6.00", "e2e-bob", None)).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "CARRIER_BILLING.PAYMENT_DENIED"),
        "{}",
        r.body
    );
    let r = gw
        .post(PAY, &payment("+34699999999", "1.00", "e2e-nobody", None))
        .await;
    assert_eq!((r.status, r.code()), (404, "IDENTIFIER_NOT_FOUND"));
    assert_eq!(balance(&sim, BOB), d("5.00"));
    // Over the application's limit: 422, nothing sent.
    let r = gw
        .post(PAY, &payment(ALICE, "50.01", "e2e-big", None))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "CARRIER_BILLING.UNAUTHORIZED_AMOUNT")
    );

    // 2-step, confirmed: reserved, then charged by the CCR-T.
    let r = gw
        .post(
            &format!("{PAY}/prepare"),
            &payment(CAROL, "8.00", "e2e-two-1", Some("e2e-two-1")),
        )
        .await;
    assert_eq!(
        (r.status, r.body["paymentStatus"].as_str()),
        (201, Some("reserved")),
        "{}",
        r.body
    );
    let two = r.body["paymentId"].as_str().unwrap().to_string();
    assert_eq!(
        (balance(&sim, CAROL), reserved(&sim, CAROL)),
        (d("20.00"), d("8.00"))
    );
    let r = gw.post(&format!("{PAY}/{two}/confirm"), &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(gw.status_of(&two).await, "succeeded");
    assert_eq!(
        (balance(&sim, CAROL), reserved(&sim, CAROL)),
        (d("12.00"), d("0"))
    );
    let r = gw.post(&format!("{PAY}/{two}/confirm"), &json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "CARRIER_BILLING.PAYMENT_CONFIRMED")
    );
    assert_eq!((journal(&sim, "reserve"), journal(&sim, "commit")), (1, 1));
    // 2-step, cancelled: reserved, then released.
    let r = gw
        .post(
            &format!("{PAY}/prepare"),
            &payment(CAROL, "5.00", "e2e-two-2", None),
        )
        .await;
    let three = r.body["paymentId"].as_str().unwrap().to_string();
    assert_eq!(reserved(&sim, CAROL), d("5.00"));
    let r = gw.post(&format!("{PAY}/{three}/cancel"), &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(gw.status_of(&three).await, "cancelled");
    assert_eq!(
        (balance(&sim, CAROL), reserved(&sim, CAROL)),
        (d("12.00"), d("0"))
    );
    let r = gw.post(&format!("{PAY}/{three}/confirm"), &json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "CARRIER_BILLING.PAYMENT_CANCELLED")
    );
    assert_eq!(journal(&sim, "commit"), 1);

    // Refunds of the 1-step payment: partial, beyond what is left, then total.
    let rr = |tail: &str| format!("{REFUND}/{one}/refunds{tail}");
    let r = gw.post(&rr(""), &partial("1.99", "e2e-rf-1")).await;
    assert_eq!(
        (r.status, r.body["refundStatus"].as_str()),
        (201, Some("succeeded")),
        "{}",
        r.body
    );
    let rf1 = r.body["refundId"].as_str().unwrap().to_string();
    assert_eq!(balance(&sim, ALICE), d("97.00"));
    let r = gw.get(&rr("/remaining-amount")).await;
    assert_eq!(
        (r.body["amount"].clone(), r.body["currency"].clone()),
        (number("3.00"), json!("EUR"))
    );
    let r = gw.post(&rr(""), &partial("3.01", "e2e-rf-2")).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "CARRIER_BILLING_REFUND.UNAUTHORIZED_AMOUNT")
    );
    let r = gw
        .post(&rr(""), &json!({"type": "total", "amountTransaction": {"referenceCode": "e2e-rf-3", "refundAmount": {}}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(balance(&sim, ALICE), d("100.00"));
    let r = gw.get(&rr("/remaining-amount")).await;
    assert_eq!(r.body["amount"], number("0.00"));
    let r = gw.post(&rr(""), &partial("0.01", "e2e-rf-4")).await;
    assert_eq!(
        (r.status, r.code()),
        (
            403,
            "CARRIER_BILLING_REFUND.PAYMENT_NOT_ELIGIBLE_FOR_REFUND"
        )
    );
    assert_eq!(balance(&sim, ALICE), d("100.00"));
    assert_eq!(journal(&sim, "refund"), 2);
    let refunds: Vec<_> = sim
        .journal()
        .into_iter()
        .filter(|e| e.op == "refund")
        .collect();
    assert_eq!(
        (refunds[0].amount, refunds[1].amount),
        (d("1.99"), d("3.00"))
    );
    let r = gw.get(&rr(&format!("/{rf1}"))).await;
    assert_eq!((r.status, r.body["type"].as_str()), (200, Some("partial")));
    let r = gw.get(&rr("")).await;
    assert_eq!((r.status, r.header("x-total-count")), (200, Some("2")));
    // A refund of a reserved-then-cancelled payment: not completed.
    let r = gw
        .post(
            &format!("{REFUND}/{three}/refunds"),
            &partial("1.00", "e2e-rf-5"),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (422, "CARRIER_BILLING_REFUND.INVALID_PAYMENT_STATUS")
    );

    // Listing: the caller's payments only, paged.
    let r = gw.get(&format!("{PAY}?perPage=2")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-total-count"), Some("3"));
    assert_eq!(r.header("content-last-key"), Some("2"));
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = gw.get(&format!("{PAY}?perPage=2&page=2")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.header("content-last-key"), Some("3"));
    let r = gw.get(&format!("{PAY}?paymentStatus=cancelled")).await;
    assert_eq!(r.body[0]["paymentId"], three.as_str());
    let r = gw
        .req("GET", PAY, None, None, &[("x-api-key", "other-key")])
        .await
        .unwrap();
    assert_eq!((r.status, r.body.clone()), (200, json!([])));
    let r = gw
        .req(
            "GET",
            &format!("{PAY}/{one}"),
            None,
            None,
            &[("x-api-key", "other-key")],
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));

    // Bad input: 4xx in the CAMARA model, nothing charged.
    let before = balance(&sim, ALICE);
    let mut wrong_type = payment(ALICE, "1.00", "b-1", None);
    wrong_type["amountTransaction"]["paymentAmount"]["chargingInformation"]["amount"] =
        json!("1.00");
    let mut bad_phone = payment(ALICE, "1.00", "b-2", None);
    bad_phone["amountTransaction"]["phoneNumber"] = json!("0034671999000");
    let mut bad_currency = payment(ALICE, "1.00", "b-3", None);
    bad_currency["amountTransaction"]["paymentAmount"]["chargingInformation"]["currency"] =
        json!("EUX");
    let mut sink = payment(ALICE, "1.00", "b-4", None);
    // A sink this gateway may not reach: loopback, under the default `[notifications]`
    // policy (public addresses only).
    sink["sink"] = json!("https://127.0.0.1:9/cb");
    for (body, status, code, what) in [
        (
            "{not json".to_string(),
            400,
            "INVALID_ARGUMENT",
            "malformed JSON",
        ),
        (
            json!({"amountTransaction": {}}).to_string(),
            400,
            "INVALID_ARGUMENT",
            "missing fields",
        ),
        (
            wrong_type.to_string(),
            400,
            "INVALID_ARGUMENT",
            "wrong type",
        ),
        (
            bad_phone.to_string(),
            400,
            "INVALID_ARGUMENT",
            "phone pattern",
        ),
        (
            payment(ALICE, "1.0001", "b-5", None).to_string(),
            400,
            "INVALID_ARGUMENT",
            "4 decimals",
        ),
        (
            payment(ALICE, "1.005", "b-6", None).to_string(),
            400,
            "INVALID_ARGUMENT",
            "beyond the minor unit",
        ),
        (
            payment(ALICE, "0", "b-7", None).to_string(),
            400,
            "INVALID_ARGUMENT",
            "zero",
        ),
        (
            payment(ALICE, "-1", "b-8", None).to_string(),
            400,
            "INVALID_ARGUMENT",
            "negative",
        ),
        (
            bad_currency.to_string(),
            400,
            "INVALID_ARGUMENT",
            "unknown currency",
        ),
        (sink.to_string(), 400, "INVALID_SINK", "sink refused"),
        (
            format!("{{\"x\": \"{}\"}}", "y".repeat(10_000)),
            413,
            "PAYLOAD_TOO_LARGE",
            "too large",
        ),
    ] {
        let r = gw
            .req("POST", PAY, Some(&shop()), Some(body), &[])
            .await
            .unwrap();
        assert_eq!((r.status, r.code()), (status, code), "{what}: {}", r.body);
    }
    let r = gw.get(&format!("{PAY}/pay-000000000000000000000000")).await;
    assert_eq!((r.status, r.code()), (404, "NOT_FOUND"));
    let r = gw
        .req("POST", PAY, None, Some(body.to_string()), &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.code()), (401, "UNAUTHENTICATED"));
    assert_eq!(balance(&sim, ALICE), before);
    assert_eq!(journal(&sim, "debit"), 1);
    // The OpenAPI document lists the family.
    let r = gw
        .req("GET", "/openapi.json", None, None, &[])
        .await
        .unwrap();
    assert!(
        r.body["paths"]["/carrier-billing/v0.5/payments/{paymentId}/confirm"]["post"].is_object()
    );
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_reservation_ends_the_payment_cancelled() {
    let dir = TempDir::new("expiry");
    let sim = simulator(&dir.0).await;
    let gw = start(
        &dir.0,
        sim.local_addr().unwrap(),
        "reservation_ttl = \"300ms\"\nreaper_interval = \"100ms\"",
    )
    .await;
    let r = gw
        .post(
            &format!("{PAY}/prepare"),
            &payment(ALICE, "15.00", "exp-1", None),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["paymentId"].as_str().unwrap().to_string();
    // The reaper releases it after its expiry; the payment then reads as cancelled.
    let mut status = String::new();
    for _ in 0..200 {
        status = gw.status_of(&id).await;
        if status != "reserved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled");
    assert_eq!(
        (balance(&sim, ALICE), reserved(&sim, ALICE)),
        (d("100.00"), d("0"))
    );
    assert_eq!(journal(&sim, "release"), 1);
    let r = gw.post(&format!("{PAY}/{id}/confirm"), &json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (409, "CARRIER_BILLING.PAYMENT_CANCELLED")
    );
    assert_eq!(journal(&sim, "commit"), 0);
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_payment_is_confirmed_after_a_restart() {
    let dir = TempDir::new("restart");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), "").await;
    let body = payment(CAROL, "9.00", "rs-1", Some("rs-cc-1"));
    let r = gw.post(&format!("{PAY}/prepare"), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["paymentId"].as_str().unwrap().to_string();
    let one = gw
        .post(PAY, &payment(CAROL, "1.00", "rs-2", Some("rs-cc-2")))
        .await;
    assert_eq!(one.status, 201);
    // A hard crash: the process is killed, nothing is flushed beyond what was acknowledged.
    drop(gw);
    let gw = start(&dir.0, sim.local_addr().unwrap(), "").await;
    assert_eq!(gw.status_of(&id).await, "reserved");
    // The retry of an acknowledged prepare is answered from the store, not reserved again.
    let r = gw.post(&format!("{PAY}/prepare"), &body).await;
    assert_eq!(
        (r.status, r.body["paymentId"].as_str()),
        (201, Some(id.as_str()))
    );
    assert_eq!(journal(&sim, "reserve"), 1);
    let r = gw.post(&format!("{PAY}/{id}/confirm"), &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(gw.status_of(&id).await, "succeeded");
    assert_eq!(
        (balance(&sim, CAROL), reserved(&sim, CAROL)),
        (d("10.00"), d("0"))
    );
    assert_eq!((journal(&sim, "commit"), journal(&sim, "debit")), (1, 1));
    // The 1-step payment and its retry survive too.
    let r = gw
        .post(PAY, &payment(CAROL, "1.00", "rs-2", Some("rs-cc-2")))
        .await;
    assert_eq!(r.body["paymentId"], one.body["paymentId"]);
    assert_eq!(journal(&sim, "debit"), 1);
    let r = gw.get(PAY).await;
    assert_eq!(r.header("x-total-count"), Some("2"));
    gw.stop();
    sim.shutdown().await;
}

fn purchase(total: &str) -> Value {
    json!({"payable": {"type": "digital_good",
        "merchant": {"id": "merchant-1", "name": "Games Ltd"},
        "order": {"id": "o-1",
            "items": [{"name": "level pack", "amount": {"value": number(total), "currency": "EUR"}}],
            "totalAmount": {"value": number(total), "currency": "EUR"}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_purchases_are_paid_end_to_end() {
    let dir = TempDir::new("checkout");
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), "").await;
    // 1-step: created initialising (no CCR), then charged once.
    let r = gw.post(PURCHASES, &purchase("4.99")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "initialising");
    let one = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(sim.journal().len(), 0);
    let r = gw
        .post(
            &format!("{PURCHASES}/{one}/payment"),
            &json!({"phoneNumber": ALICE}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"id": one, "status": "succeeded"}));
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    let r = gw
        .post(
            &format!("{PURCHASES}/{one}/payment"),
            &json!({"phoneNumber": ALICE}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("ALREADY_EXISTS"))
    );
    assert_eq!(journal(&sim, "debit"), 1);
    // A refusal (BOB has 5.00): 403, nothing charged, the purchase failed.
    let r = gw.post(PURCHASES, &purchase("9.00")).await;
    let refused = r.body["id"].as_str().unwrap().to_string();
    let r = gw
        .post(
            &format!("{PURCHASES}/{refused}/payment"),
            &json!({"phoneNumber": BOB}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{}",
        r.body
    );
    assert_eq!(balance(&sim, BOB), d("5.00"));
    // Notifications are refused (not supported yet); the application's limit (50.00).
    let mut with_url = purchase("1.00");
    with_url["notificationUrl"] = json!("https://shop.example/notify");
    let r = gw.post(PURCHASES, &with_url).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let r = gw.post(PURCHASES, &purchase("60.00")).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (
            403,
            Some("CARRIER_BILLING_CHECKOUT.PURCHASE_AMOUNT_OVERPASSED")
        )
    );
    // 2-step: prepared, the gateway killed, confirmed after the restart, committed once.
    let r = gw.post(PURCHASES, &purchase("12.00")).await;
    let two = r.body["id"].as_str().unwrap().to_string();
    let r = gw
        .post(
            &format!("{PURCHASES}/{two}/payment/prepare"),
            &json!({"phoneNumber": CAROL}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"id": two, "status": "ready_to_confirm"}));
    assert_eq!(reserved(&sim, CAROL), d("12.00"));
    drop(gw);
    let gw = start(&dir.0, sim.local_addr().unwrap(), "").await;
    let r = gw.get(&format!("{PURCHASES}/{two}")).await;
    assert_eq!(r.body["status"], "ready_to_confirm", "{}", r.body);
    let r = gw
        .req(
            "POST",
            &format!("{PURCHASES}/{two}/payment/confirm"),
            Some(&shop()),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        (balance(&sim, CAROL), reserved(&sim, CAROL)),
        (d("8.00"), d("0"))
    );
    assert_eq!(journal(&sim, "commit"), 1);
    let r = gw
        .req(
            "POST",
            &format!("{PURCHASES}/{two}/payment/cancel"),
            Some(&shop()),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (
            409,
            Some("CARRIER_BILLING_CHECKOUT.PAYMENT_REACHED_FINAL_STATUS")
        )
    );
    // The caller's purchases (the refused ones never stored), statuses read from their payments.
    let r = gw.get(PURCHASES).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-total-count"), Some("3"));
    let statuses: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "succeeded"]);
    // 404/405 on the checkout paths speak ErrorInfo.
    let r = gw
        .req("DELETE", PURCHASES, Some(&shop()), None, &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
    gw.stop();
    sim.shutdown().await;
}
