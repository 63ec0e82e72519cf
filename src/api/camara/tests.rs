//! Handler tests of the CAMARA family through `router(state).oneshot(request)` on the real
//! path: the OCS simulator over TCP, a Diameter node, the credit-control client, `Charging`
//! over a memory store. Balances and reservations are read from the simulator's books.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::error::{Effect, Step, code, effect, from_failure};
use super::payments::{Pending, Status, transition};
use super::*;
use crate::api::{ApiState, Apps, router};
use crate::charging::{Charging, Failure};
use crate::config::{AppConfig, HttpConfig};
use crate::credit_control::SubscriptionId;
use crate::diameter::codec::ResultCode;
use crate::ocs::OcsSim;
use crate::store::{OperationFilter, ResourceFilter, Store};

// ---- harness (the pattern of src/api/tests.rs) -----------------------------------------------

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "+34671999000";
const BOB: &str = "+34600000001";
const CAROL: &str = "+34600000002";
const GRACE: &str = "+447700900123";

fn tel(p: &str) -> String {
    format!("tel:{p}")
}

fn apps() -> Vec<AppConfig> {
    let app = |id: &str| AppConfig {
        id: id.into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: String::new(),
        allowed_currencies: vec![],
        max_amount: None,
        allowed_operations: vec![],
        admin: false,
        oidc_client_id: String::new(),
    };
    vec![
        AppConfig {
            username: "shop".into(),
            password: "shop-pw".into(),
            api_key: "k-shop".into(),
            ..app("shop")
        },
        AppConfig {
            api_key: "k-other".into(),
            ..app("other")
        },
        AppConfig {
            api_key: "k-reader".into(),
            allowed_operations: vec![scope::PAYMENTS_READ.into()],
            ..app("reader")
        },
        AppConfig {
            api_key: "k-buyer".into(),
            allowed_operations: vec![scope::PURCHASE_WRITE.into(), scope::PURCHASE_READ.into()],
            ..app("buyer")
        },
        AppConfig {
            api_key: "k-kiosk".into(),
            allowed_currencies: vec!["EUR".into()],
            max_amount: Some(d("20")),
            ..app("kiosk")
        },
    ]
}

struct Opts {
    tx: Duration,
    reservation_ttl: Duration,
    store: Option<Store>,
    request_timeout: Duration,
    /// `[notifications]` (else its defaults: https, public addresses only).
    notifications: Option<crate::config::notifications::NotificationsConfig>,
    /// No simulator and no reachable peer: every CCR fails before it is sent.
    no_ocs: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            tx: Duration::from_secs(5),
            reservation_ttl: Duration::from_secs(3600),
            store: None,
            request_timeout: Duration::from_secs(20),
            notifications: None,
            no_ocs: false,
        }
    }
}

struct World {
    gw: crate::gateway::Gateway,
    charging: Arc<Charging>,
    router: Router,
    state: ApiState,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The CAMARA code, after checking the body is exactly `ErrorInfo` and its `status` is the
    /// HTTP status.
    fn code(&self) -> String {
        let v = self.json();
        let o = v.as_object().expect("an object");
        assert_eq!(o.len(), 3, "status, code, message: {v}");
        assert_eq!(o["status"], json!(self.status.as_u16()), "{v}");
        assert!(!o["message"].as_str().unwrap().is_empty(), "{v}");
        o["code"].as_str().unwrap().to_string()
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Auth = (&'static str, String);

fn shop() -> Auth {
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("shop:shop-pw")
        ),
    )
}

fn key(k: &str) -> Auth {
    ("x-api-key", k.to_string())
}

async fn world(o: Opts) -> World {
    let accounts: Vec<_> = [
        (ALICE, "100.00", "EUR"),
        (BOB, "5.00", "EUR"),
        (CAROL, "50.00", "EUR"),
        (GRACE, "50.00", "GBP"),
    ]
    .iter()
    .map(|(s, b, c)| (tel(s), d(b), *c))
    .collect();
    let gw = crate::gateway::testing::start(crate::gateway::testing::TestGateway {
        accounts: (!o.no_ocs).then_some(accounts.as_slice()),
        tx: o.tx,
        reservation_ttl: o.reservation_ttl,
        // Reservations are reaped by the tests themselves (`Charging::reap`).
        reaper_interval: Duration::from_secs(3600),
        store: o.store,
    })
    .await;
    let charging = Arc::clone(&gw.charging);
    let mut state = ApiState::new(
        Arc::clone(&charging),
        Arc::new(Apps::new(&apps())),
        Arc::new(|| true),
        None,
    );
    if let Some(n) = o.notifications {
        state = state.with_notifications(n);
    }
    let router = router(
        state.clone(),
        &HttpConfig {
            max_body_bytes: 4096,
            request_timeout: o.request_timeout,
            ..HttpConfig::default()
        },
    );
    World {
        gw,
        charging,
        router,
        state,
    }
}

impl World {
    fn sim(&self) -> &OcsSim {
        self.gw.sim.as_ref().expect("a simulator")
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn post_with(&self, path: &str, auth: &Auth, extra: &[(&str, &str)], body: &str) -> Resp {
        let mut h = vec![
            (auth.0, auth.1.as_str()),
            ("content-type", "application/json"),
        ];
        h.extend_from_slice(extra);
        self.send(Method::POST, path, &h, Body::from(body.to_string()))
            .await
    }

    async fn post(&self, path: &str, auth: &Auth, body: &Value) -> Resp {
        self.post_with(path, auth, &[], &body.to_string()).await
    }

    async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.send(
            Method::GET,
            path,
            &[(auth.0, auth.1.as_str())],
            Body::empty(),
        )
        .await
    }

    fn balance(&self, who: &str) -> Decimal {
        self.sim().balance(&tel(who)).unwrap().amount
    }

    fn reserved(&self, who: &str) -> Decimal {
        self.sim().account(&tel(who)).unwrap().reserved
    }

    /// Journal entries of the simulator with this operation (`debit`, `refund`, `reserve`,
    /// `commit`, `release`).
    fn journal(&self, op: &str) -> usize {
        self.sim().journal().iter().filter(|e| e.op == op).count()
    }

    async fn pay(&self, body: &Value) -> Resp {
        self.post(PAYMENTS, &shop(), body).await
    }

    /// A payment made and checked: its id.
    async fn paid(&self, who: &str, amount: &str, reference: &str) -> String {
        let r = self
            .pay(&payment(who, amount, reference, Some(reference)))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.json()["paymentId"].as_str().unwrap().to_string()
    }

    async fn prepared(&self, who: &str, amount: &str, reference: &str) -> String {
        let r = self
            .post(
                PAYMENTS_PREPARE,
                &shop(),
                &payment(who, amount, reference, Some(reference)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.json()["paymentStatus"], "reserved");
        r.json()["paymentId"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> String {
        let r = self.get(&pay_path(id), &shop()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["paymentStatus"].as_str().unwrap().to_string()
    }
}

fn payment(who: &str, amount: &str, reference: &str, cc: Option<&str>) -> Value {
    let mut v = json!({
        "amountTransaction": {
            "phoneNumber": who,
            "referenceCode": reference,
            "paymentAmount": {
                "chargingInformation": {
                    "amount": serde_json::Number::from_str(amount).unwrap(),
                    "currency": "EUR",
                    "description": "Game credits"
                },
                "chargingMetaData": {"merchantIdentifier": "eas-12345", "serviceId": "games-online"}
            }
        }
    });
    if let Some(c) = cc {
        v["amountTransaction"]["clientCorrelator"] = json!(c);
    }
    v
}

fn pay_path(id: &str) -> String {
    PAYMENT.replace("{paymentId}", id)
}

fn confirm_path(id: &str) -> String {
    PAYMENT_CONFIRM.replace("{paymentId}", id)
}

fn cancel_path(id: &str) -> String {
    PAYMENT_CANCEL.replace("{paymentId}", id)
}

fn refunds_path(id: &str) -> String {
    REFUNDS.replace("{paymentId}", id)
}

fn partial(amount: &str, reference: &str, cc: Option<&str>) -> Value {
    let mut v = json!({
        "type": "partial",
        "reason": "customer request",
        "amountTransaction": {
            "referenceCode": reference,
            "refundAmount": {
                "chargingInformation": {
                    "amount": serde_json::Number::from_str(amount).unwrap(),
                    "currency": "EUR",
                    "description": "partial refund"
                }
            }
        }
    });
    if let Some(c) = cc {
        v["amountTransaction"]["clientCorrelator"] = json!(c);
    }
    v
}

fn total(reference: &str) -> Value {
    json!({"type": "total", "amountTransaction": {"referenceCode": reference, "refundAmount": {}}})
}

async fn remaining(w: &World, id: &str) -> Value {
    let r = w
        .get(&REMAINING_AMOUNT.replace("{paymentId}", id), &shop())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.json()["amount"].clone()
}

fn num(s: &str) -> Value {
    Value::Number(serde_json::Number::from_str(s).unwrap())
}

// ---- 1-step payments --------------------------------------------------------------------------

#[tokio::test]
async fn a_one_step_payment_is_charged_and_answered_201_succeeded() {
    let w = world(Opts::default()).await;
    let r = w
        .post_with(
            PAYMENTS,
            &shop(),
            &[("x-correlator", "7d6f1c2e-0b7e-4d5c-9a35-2f0f7f1f1a10")],
            &payment(ALICE, "4.99", "ref-pay-001", Some("req-001")).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.header("x-correlator"),
        Some("7d6f1c2e-0b7e-4d5c-9a35-2f0f7f1f1a10")
    );
    let v = r.json();
    let id = v["paymentId"].as_str().unwrap().to_string();
    assert!(id.starts_with("pay-"), "{v}");
    assert_eq!(r.header("location"), Some(pay_path(&id).as_str()));
    assert_eq!(v["paymentStatus"], "succeeded");
    let at = &v["amountTransaction"];
    assert_eq!(at["phoneNumber"], ALICE);
    assert_eq!(at["clientCorrelator"], "req-001");
    assert_eq!(at["referenceCode"], "ref-pay-001");
    assert_eq!(at["resourceURL"], format!("urn:payments:{id}"));
    // The exact amount, a JSON number, in the currency's minor unit.
    assert_eq!(
        at["paymentAmount"]["chargingInformation"]["amount"],
        num("4.99")
    );
    assert_eq!(
        at["paymentAmount"]["chargingMetaData"]["merchantIdentifier"],
        "eas-12345"
    );
    let session = at["serverReferenceCode"].as_str().unwrap().to_string();
    assert!(session.starts_with("gw.charging.local;"), "{session}");
    assert!(v["paymentDate"].is_string());
    // paymentCreationDate and paymentDate, in the one form.
    assert_eq!(crate::api::datetime::assert_fixed_form(&v), 2, "{v}");
    // The OCS debited it once, in that session.
    assert_eq!(w.balance(ALICE), d("95.01"));
    let debits: Vec<_> = w
        .sim()
        .journal()
        .into_iter()
        .filter(|e| e.op == "debit")
        .collect();
    assert_eq!(debits.len(), 1);
    assert_eq!(debits[0].session_id, session);
    assert_eq!(debits[0].amount, d("4.99"));
    // Read back: the same payment.
    let g = w.get(&pay_path(&id), &shop()).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);
    // Stored as a resource, durable record of the payment.
    let row = w.charging.store().resource(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.app.as_str(), row.kind.as_str(), row.state.as_str()),
        ("shop", KIND_PAYMENT, "succeeded")
    );
    // 4.990 is the same amount (the same request for idempotency).
    let r = w
        .pay(&payment(ALICE, "4.990", "ref-pay-001", Some("req-001")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["paymentId"], id.as_str());
    assert_eq!(w.balance(ALICE), d("95.01"));
}

#[tokio::test]
async fn refusals_of_the_ocs_create_no_payment() {
    let w = world(Opts::default()).await;
    // Bob has 5.00: DIAMETER_CREDIT_LIMIT_REACHED.
    let body = payment(BOB, "6.00", "too-much", Some("cc-too-much"));
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.code(), code::PAYMENT_DENIED);
    assert!(r.message().starts_with("Payment denied by business."));
    assert!(r.message().contains("DIAMETER_CREDIT_LIMIT_REACHED (4012)"));
    assert_eq!(w.balance(BOB), d("5.00"));
    // The same request again: the same answer, from the record (no second CCR).
    let ccrs = w.stored_ops().await;
    let again = w.pay(&body).await;
    assert_eq!((again.status, again.code()), (r.status, r.code()));
    assert_eq!(w.stored_ops().await, ccrs);
    // No payment exists (sync mode).
    let l = w.get(PAYMENTS, &shop()).await;
    assert_eq!(l.json(), json!([]));
    assert_eq!(l.header("x-total-count"), Some("0"));
    // An unknown phone number: 404 IDENTIFIER_NOT_FOUND.
    let r = w.pay(&payment("+34699999999", "1.00", "who", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), code::IDENTIFIER_NOT_FOUND);
    // Other Result-Codes, as the simulator is told to answer.
    let cases: &[(u32, u16, &str)] = &[
        (4010, 403, code::PAYMENT_DENIED),
        (5003, 403, code::PAYMENT_DENIED),
        (5031, 422, code::SERVICE_NOT_APPLICABLE),
        (3004, 503, code::UNAVAILABLE),
        (5005, 500, code::INTERNAL),
        (5012, 500, code::INTERNAL),
    ];
    for (i, (rc, status, want)) in cases.iter().enumerate() {
        let k = SubscriptionId::parse(CAROL).unwrap().key();
        w.sim().set_faults(|f| {
            f.fixed.insert(k, ResultCode(*rc));
        });
        let r = w
            .pay(&payment(CAROL, "1.00", &format!("f-{i}"), None))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (*status, *want),
            "{rc}"
        );
    }
    w.sim().clear_faults();
    assert_eq!(w.balance(CAROL), d("50.00"));
    // A request refused before anything was sent keeps nothing: the same reference is free.
    let r = w.pay(&payment(CAROL, "1.00", "f-3", None)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(w.balance(CAROL), d("49.00"));
}

impl World {
    /// Runs the reaper until no reservation is open (the background reaper's first round may
    /// be the one that releases it; either way it is released once).
    async fn reap_all(&self) {
        for _ in 0..200 {
            self.charging.reap().await;
            if self.charging.open_reservations() == 0 && self.sim().open_reservations() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("reservations still open");
    }

    async fn stored_ops(&self) -> usize {
        self.charging
            .store()
            .operations(OperationFilter::default())
            .await
            .unwrap()
            .len()
    }
}

// ---- idempotency -----------------------------------------------------------------------------

#[tokio::test]
async fn client_correlator_and_reference_code_rules() {
    let w = world(Opts::default()).await;
    let body = payment(ALICE, "10.00", "order-1", Some("cc-1"));
    let first = w.pay(&body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let id = first.json()["paymentId"].as_str().unwrap().to_string();
    // The same clientCorrelator and body: the same payment, charged once.
    for _ in 0..3 {
        let r = w.pay(&body).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.json()["paymentId"], id.as_str());
    }
    assert_eq!(w.balance(ALICE), d("90.00"));
    assert_eq!(w.journal("debit"), 1);
    // The same clientCorrelator, another body: 400 INVALID_ARGUMENT, the text of the spec.
    let r = w
        .pay(&payment(ALICE, "11.00", "order-1", Some("cc-1")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), code::INVALID_ARGUMENT);
    assert!(
        r.message()
            .starts_with("clientCorrelator already exist on server.")
    );
    // A prepare with a 1-step payment's clientCorrelator is another request too.
    let r = w.post(PAYMENTS_PREPARE, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The same referenceCode with another clientCorrelator, or without one: 409.
    let r = w
        .pay(&payment(ALICE, "10.00", "order-1", Some("cc-2")))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::ALREADY_EXISTS)
    );
    let plain = payment(ALICE, "3.00", "order-2", None);
    assert_eq!(w.pay(&plain).await.status, StatusCode::CREATED);
    let r = w.pay(&plain).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::ALREADY_EXISTS)
    );
    assert_eq!(w.balance(ALICE), d("87.00"));
    // Another application's keys never collide with these.
    let r = w
        .post(
            PAYMENTS,
            &key("k-other"),
            &payment(ALICE, "10.00", "order-1", Some("cc-1")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(r.json()["paymentId"], id.as_str());
    assert_eq!(w.balance(ALICE), d("77.00"));
    // ... nor can it read them.
    let r = w.get(&pay_path(&id), &key("k-other")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
}

#[tokio::test]
async fn concurrent_retries_charge_once() {
    let w = Arc::new(world(Opts::default()).await);
    let body = payment(CAROL, "2.50", "burst", Some("cc-burst"));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let w = Arc::clone(&w);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = w.pay(&body).await;
            (r.status, r.json()["paymentId"].clone())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, id) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED);
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(w.balance(CAROL), d("47.50"));
    assert_eq!(w.journal("debit"), 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_processing_and_a_read_resolves_it() {
    let w = world(Opts {
        tx: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    let k = SubscriptionId::parse(CAROL).unwrap().key();
    // The OCS applies the debit after the gateway stopped waiting (Tx).
    w.sim().set_faults(|f| {
        f.latency_for.insert(k, Duration::from_millis(1500));
    });
    let body = payment(CAROL, "7.00", "slow-1", Some("cc-slow"));
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Never "succeeded" nor "denied" while the outcome is unknown.
    assert_eq!(r.json()["paymentStatus"], "processing");
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    w.sim().clear_faults();
    let mut status = String::new();
    for _ in 0..300 {
        status = w.status(&id).await;
        if status != "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    assert_eq!(w.balance(CAROL), d("43.00"), "charged exactly once");
    // A retry with the clientCorrelator now answers the outcome.
    let r = w.pay(&body).await;
    assert_eq!(r.json()["paymentStatus"], "succeeded");
    assert_eq!(w.balance(CAROL), d("43.00"));
    assert_eq!(w.journal("debit"), 1);
}

/// The gateway's own request timeout on a CAMARA path is 504 TIMEOUT in `ErrorInfo`; the
/// payment goes on, and a retry with the clientCorrelator learns it, charged once.
#[tokio::test]
async fn the_request_timeout_is_504_timeout_and_a_retry_learns_the_outcome() {
    let w = world(Opts {
        request_timeout: Duration::from_millis(100),
        ..Opts::default()
    })
    .await;
    let k = SubscriptionId::parse(CAROL).unwrap().key();
    w.sim().set_faults(|f| {
        f.latency_for.insert(k, Duration::from_millis(600));
    });
    let body = payment(CAROL, "3.00", "late-1", Some("cc-late"));
    let r = w
        .post_with(
            PAYMENTS,
            &shop(),
            &[("x-correlator", "late:1")],
            &body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);
    assert_eq!(r.header("x-correlator"), Some("late:1"));
    let v = r.json();
    assert_eq!(v["status"], 504, "{v}");
    assert_eq!(v["code"], code::TIMEOUT, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Request timeout exceeded.") && m.contains("unknown")),
        "{v}"
    );
    w.sim().clear_faults();
    let mut last = None;
    for _ in 0..100 {
        let r = w.pay(&body).await;
        if r.status == StatusCode::CREATED && r.json()["paymentStatus"] == "succeeded" {
            last = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last.is_some(), "the retry never learned the outcome");
    assert_eq!(w.balance(CAROL), d("47.00"), "charged exactly once");
    assert_eq!(w.journal("debit"), 1);
}

// ---- 2-step payments -------------------------------------------------------------------------

#[tokio::test]
async fn prepare_then_confirm_charges_the_reservation() {
    let w = world(Opts::default()).await;
    let id = w.prepared(ALICE, "12.00", "two-1").await;
    assert_eq!(
        (w.balance(ALICE), w.reserved(ALICE)),
        (d("100.00"), d("12.00"))
    );
    assert_eq!(w.status(&id).await, "reserved");
    let r = w
        .post_with(
            &confirm_path(&id),
            &shop(),
            &[("x-correlator", "c-1")],
            "{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-correlator"), Some("c-1"));
    assert_eq!((w.balance(ALICE), w.reserved(ALICE)), (d("88.00"), d("0")));
    let g = w.get(&pay_path(&id), &shop()).await.json();
    assert_eq!(g["paymentStatus"], "succeeded");
    assert!(g["paymentDate"].is_string());
    assert_eq!((w.journal("reserve"), w.journal("commit")), (1, 1));
    // Illegal transitions now, nothing more charged.
    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CONFIRMED)
    );
    let r = w.post(&cancel_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CONFIRMED)
    );
    assert_eq!(w.balance(ALICE), d("88.00"));
    // A 1-step payment cannot be confirmed either.
    let one = w.paid(ALICE, "1.00", "one-1").await;
    let r = w.post(&confirm_path(&one), &shop(), &json!({})).await;
    assert_eq!(r.code(), code::PAYMENT_CONFIRMED);
    // The phone number, when given, must be the payment's.
    let id2 = w.prepared(ALICE, "1.00", "two-2").await;
    let r = w
        .post(&confirm_path(&id2), &shop(), &json!({"phoneNumber": BOB}))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
    let r = w
        .post(&confirm_path(&id2), &shop(), &json!({"phoneNumber": ALICE}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    // Unknown and malformed ids.
    let r = w
        .post(
            &confirm_path("pay-000000000000000000000000"),
            &shop(),
            &json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
    let r = w.post(&confirm_path("pay%20x"), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
    );
}

#[tokio::test]
async fn prepare_then_cancel_releases_the_reservation() {
    let w = world(Opts::default()).await;
    let id = w.prepared(CAROL, "20.00", "two-c").await;
    assert_eq!(w.reserved(CAROL), d("20.00"));
    let r = w.post(&cancel_path(&id), &shop(), &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!((w.balance(CAROL), w.reserved(CAROL)), (d("50.00"), d("0")));
    assert_eq!(w.status(&id).await, "cancelled");
    let r = w.post(&cancel_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CANCELLED)
    );
    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CANCELLED)
    );
    assert_eq!(w.balance(CAROL), d("50.00"));
    assert_eq!(w.journal("commit"), 0);
    // A reservation the OCS refuses: 403, no payment.
    let r = w
        .post(
            PAYMENTS_PREPARE,
            &shop(),
            &payment(BOB, "9.00", "two-d", None),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, code::PAYMENT_DENIED)
    );
    assert_eq!(w.reserved(BOB), d("0"));
}

#[tokio::test]
async fn an_expired_reservation_reads_as_cancelled() {
    let w = world(Opts {
        reservation_ttl: Duration::from_millis(1),
        ..Opts::default()
    })
    .await;
    let id = w.prepared(ALICE, "30.00", "exp-1").await;
    assert_eq!(w.reserved(ALICE), d("30.00"));
    // Past its expiry (1 ms), the reaper releases it (CCR-T): cancelled, nothing charged.
    w.reap_all().await;
    assert_eq!(w.reserved(ALICE), d("0"));
    assert_eq!(w.status(&id).await, "cancelled");
    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CANCELLED)
    );
    assert_eq!(w.balance(ALICE), d("100.00"));
    // Listing sees it cancelled too.
    let l = w
        .get(&format!("{PAYMENTS}?paymentStatus=cancelled"), &shop())
        .await;
    assert_eq!(l.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_confirmation_after_the_reaper_ran_is_refused_and_cancelled() {
    let w = world(Opts {
        reservation_ttl: Duration::from_millis(1),
        ..Opts::default()
    })
    .await;
    let id = w.prepared(CAROL, "5.00", "exp-2").await;
    w.reap_all().await;
    // No read in between: the confirmation itself finds the reservation gone.
    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::PAYMENT_CANCELLED)
    );
    assert_eq!(w.status(&id).await, "cancelled");
    assert_eq!(w.balance(CAROL), d("50.00"));
}

// ---- refunds ---------------------------------------------------------------------------------

#[tokio::test]
async fn partial_and_total_refunds_never_exceed_the_payment() {
    let w = world(Opts::default()).await;
    let id = w.paid(ALICE, "40.00", "pay-r").await;
    assert_eq!(w.balance(ALICE), d("60.00"));
    assert_eq!(remaining(&w, &id).await, num("40.00"));
    // Partial: 10.00 back.
    let r = w
        .post(
            &refunds_path(&id),
            &shop(),
            &partial("10.00", "rf-1", Some("rcc-1")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["refundStatus"], "succeeded");
    assert_eq!(v["type"], "partial");
    assert_eq!(v["reason"], "customer request");
    // refundCreationDate and refundDate, in the one form.
    assert_eq!(crate::api::datetime::assert_fixed_form(&v), 2, "{v}");
    assert_eq!(
        v["amountTransaction"]["refundAmount"]["chargingInformation"]["amount"],
        num("10.00")
    );
    let rf1 = v["refundId"].as_str().unwrap().to_string();
    assert_eq!(w.balance(ALICE), d("70.00"));
    assert_eq!(remaining(&w, &id).await, num("30.00"));
    // The refund names the payment's Session-Id (Service-Parameter-Info 6).
    let session =
        w.get(&pay_path(&id), &shop()).await.json()["amountTransaction"]["serverReferenceCode"]
            .as_str()
            .unwrap()
            .to_string();
    let ops = w
        .charging
        .store()
        .operations(OperationFilter::default())
        .await
        .unwrap();
    let refund_op = ops.iter().find(|o| o.kind == "refund").unwrap();
    let req: Value = serde_json::from_str(&refund_op.request).unwrap();
    assert!(
        req["parameters"]
            .as_array()
            .unwrap()
            .contains(&json!([6, session])),
        "{req}"
    );
    // Its retry: the same refund, nothing refunded twice.
    let r = w
        .post(
            &refunds_path(&id),
            &shop(),
            &partial("10.00", "rf-1", Some("rcc-1")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["refundId"], rf1.as_str());
    assert_eq!(w.balance(ALICE), d("70.00"));
    // More than what is left: refused, nothing sent.
    let r = w
        .post(&refunds_path(&id), &shop(), &partial("30.01", "rf-2", None))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            code::REFUND_UNAUTHORIZED_AMOUNT
        )
    );
    // Another currency: 400.
    let mut usd = partial("1.00", "rf-3", None);
    usd["amountTransaction"]["refundAmount"]["chargingInformation"]["currency"] = json!("USD");
    let r = w.post(&refunds_path(&id), &shop(), &usd).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
    );
    // Total: what is left, 30.00. (Created a moment later than the first, for the order.)
    tokio::time::sleep(Duration::from_millis(2)).await;
    let r = w.post(&refunds_path(&id), &shop(), &total("rf-4")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["type"], "total");
    let rf4 = r.json()["refundId"].as_str().unwrap().to_string();
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert_eq!(remaining(&w, &id).await, num("0.00"));
    // Nothing more.
    for body in [partial("0.01", "rf-5", None), total("rf-6")] {
        let r = w.post(&refunds_path(&id), &shop(), &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, code::PAYMENT_NOT_ELIGIBLE_FOR_REFUND)
        );
    }
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert_eq!(w.journal("refund"), 2);
    // The payment's refunds, one by one and listed.
    let r = w
        .get(&format!("{}/{rf1}", refunds_path(&id)), &shop())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["refundId"], rf1.as_str());
    let l = w
        .get(&format!("{}?order=asc", refunds_path(&id)), &shop())
        .await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(l.header("x-total-count"), Some("2"));
    let ids: Vec<String> = l
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["refundId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![rf1.clone(), rf4.clone()]);
    let r = w
        .get(
            &format!("{}/rf-000000000000000000000000", refunds_path(&id)),
            &shop(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
    // The same referenceCode again: 409.
    let other = w.paid(ALICE, "5.00", "pay-r2").await;
    let r = w
        .post(
            &refunds_path(&other),
            &shop(),
            &partial("1.00", "rf-1", None),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::ALREADY_EXISTS)
    );
}

#[tokio::test]
async fn refunds_need_a_completed_payment_of_the_caller() {
    let w = world(Opts::default()).await;
    let reserved = w.prepared(ALICE, "5.00", "rsv-r").await;
    let r = w
        .post(
            &refunds_path(&reserved),
            &shop(),
            &partial("1.00", "x-1", None),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            code::INVALID_PAYMENT_STATUS
        )
    );
    let paid = w.paid(ALICE, "5.00", "paid-r").await;
    let r = w
        .post(
            &refunds_path(&paid),
            &key("k-other"),
            &partial("1.00", "x-2", None),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
    let r = w
        .post(
            &refunds_path("pay-000000000000000000000000"),
            &shop(),
            &total("x-3"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Tax handling must be the payment's.
    let mut taxed = partial("1.00", "x-4", None);
    taxed["amountTransaction"]["refundAmount"]["chargingInformation"]["isTaxIncluded"] =
        json!(true);
    let r = w.post(&refunds_path(&paid), &shop(), &taxed).await;
    assert_eq!(r.code(), code::TAXES_MANAGEMENT_MISMATCH);
    // refundDetails must match the payment's items.
    let mut detailed = partial("1.00", "x-5", None);
    detailed["amountTransaction"]["refundAmount"]["refundDetails"] =
        json!([{"paymentItemId": "i-1", "amount": 1.00, "currency": "EUR", "description": "x"}]);
    let r = w.post(&refunds_path(&paid), &shop(), &detailed).await;
    assert_eq!(r.code(), code::REFUND_DETAILS_MISMATCH);
    let mut total_with_amount = total("x-6");
    total_with_amount["amountTransaction"]["refundAmount"] =
        partial("1.00", "x", None)["amountTransaction"]["refundAmount"].clone();
    let r = w
        .post(&refunds_path(&paid), &shop(), &total_with_amount)
        .await;
    assert_eq!(r.code(), code::INVALID_ARGUMENT);
    assert_eq!(w.balance(ALICE), d("95.00"));
    assert_eq!(w.journal("refund"), 0);
}

#[tokio::test]
async fn refund_details_are_checked_per_item() {
    let w = world(Opts::default()).await;
    let mut body = payment(ALICE, "10.00", "items", None);
    body["amountTransaction"]["paymentAmount"]["paymentDetails"] = json!([
        {"id": "game", "amount": 6.00, "currency": "EUR", "description": "game"},
        {"id": "dlc", "amount": 4.00, "currency": "EUR", "description": "dlc"}
    ]);
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let item = |reference: &str, item: &str, amount: &str| {
        let mut v = partial(amount, reference, None);
        v["amountTransaction"]["refundAmount"]["refundDetails"] = json!([
            {"paymentItemId": item, "amount": num(amount), "currency": "EUR", "description": "x"}
        ]);
        v
    };
    let r = w
        .post(&refunds_path(&id), &shop(), &item("i-1", "dlc", "3.00"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // 1.00 of the dlc is left, though 7.00 of the payment is.
    let r = w
        .post(&refunds_path(&id), &shop(), &item("i-2", "dlc", "1.50"))
        .await;
    assert_eq!(r.code(), code::REFUND_DETAILS_MISMATCH);
    let r = w
        .post(&refunds_path(&id), &shop(), &item("i-3", "nope", "1.00"))
        .await;
    assert_eq!(r.code(), code::REFUND_DETAILS_MISMATCH);
    let r = w
        .post(&refunds_path(&id), &shop(), &item("i-4", "game", "6.00"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(remaining(&w, &id).await, num("1.00"));
    assert_eq!(w.balance(ALICE), d("99.00"));
}

// ---- listing ---------------------------------------------------------------------------------

#[tokio::test]
async fn listing_pages_filters_and_orders_the_callers_payments() {
    let w = world(Opts::default()).await;
    let mut ids = Vec::new();
    // Creation times a few ms apart: the orders asserted below are by creation date.
    let tick = || tokio::time::sleep(Duration::from_millis(2));
    for i in 0..5 {
        ids.push(w.paid(CAROL, "1.00", &format!("l-{i}")).await);
        tick().await;
    }
    let reserved = w.prepared(CAROL, "2.00", "l-r").await;
    tick().await;
    let mut other_merchant = payment(CAROL, "1.00", "l-m", None);
    other_merchant["amountTransaction"]["paymentAmount"]["chargingMetaData"]["merchantIdentifier"] =
        json!("m-2");
    let r = w.pay(&other_merchant).await;
    let m2 = r.json()["paymentId"].as_str().unwrap().to_string();
    // Another application's payment is never listed.
    w.post(
        PAYMENTS,
        &key("k-other"),
        &payment(CAROL, "1.00", "l-x", None),
    )
    .await;
    let list = |q: String| {
        let w = &w;
        async move {
            let r = w.get(&format!("{PAYMENTS}{q}"), &shop()).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            let ids: Vec<String> = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["paymentId"].as_str().unwrap().to_string())
                .collect();
            (
                ids,
                r.header("x-total-count").unwrap().to_string(),
                r.header("content-last-key").unwrap().to_string(),
            )
        }
    };
    let (all, total, last) = list(String::new()).await;
    assert_eq!((total.as_str(), last.as_str(), all.len()), ("7", "7", 7));
    // Newest first by default.
    assert_eq!(all.first(), Some(&m2));
    let (p1, t, k) = list("?perPage=3&page=1".into()).await;
    let (p3, _, k3) = list("?perPage=3&page=3".into()).await;
    assert_eq!((p1.len(), t.as_str(), k.as_str()), (3, "7", "3"));
    assert_eq!((p3.len(), k3.as_str()), (1, "7"));
    assert_eq!(p3, vec![ids[0].clone()]);
    let (asc, _, _) = list("?order=asc&perPage=2".into()).await;
    assert_eq!(asc, vec![ids[0].clone(), ids[1].clone()]);
    let (r, t, _) = list("?paymentStatus=reserved".into()).await;
    assert_eq!((r, t.as_str()), (vec![reserved.clone()], "1"));
    let (rs, t, _) = list("?paymentStatus=reserved&paymentStatus=cancelled".into()).await;
    assert_eq!((rs, t.as_str()), (vec![reserved.clone()], "1"));
    let (rs, t, _) = list("?paymentStatus=reserved,succeeded&perPage=2&page=4".into()).await;
    assert_eq!((rs.len(), t.as_str()), (1, "7"));
    let (m, t, _) = list("?merchantIdentifier=m-2".into()).await;
    assert_eq!((m, t.as_str()), (vec![m2.clone()], "1"));
    let (none, t, _) = list("?paymentCreationDate.lte=2000-01-01T00:00:00Z".into()).await;
    assert_eq!((none.len(), t.as_str()), (0, "0"));
    let (some, _, _) = list("?paymentCreationDate.gte=2000-01-01T00:00:00%2B01:00".into()).await;
    assert_eq!(some.len(), 7);
    // Refused parameters.
    for (q, status, want) in [
        ("?page=0", 400, code::OUT_OF_RANGE),
        ("?perPage=101", 400, code::OUT_OF_RANGE),
        ("?page=9", 400, code::OUT_OF_RANGE),
        ("?page=x", 400, code::INVALID_ARGUMENT),
        ("?order=up", 400, code::INVALID_ARGUMENT),
        ("?paymentStatus=paid", 400, code::INVALID_ARGUMENT),
        (
            "?paymentCreationDate.gte=yesterday",
            400,
            code::INVALID_ARGUMENT,
        ),
        (
            "?paymentCreationDate.gte=2026-01-01T00:00:00",
            400,
            code::INVALID_ARGUMENT,
        ),
        (
            "?paymentCreationDate.gte=2026-01-02T00:00:00Z&paymentCreationDate.lte=2026-01-01T00:00:00Z",
            400,
            code::INVALID_DATE_RANGE,
        ),
    ] {
        let r = w.get(&format!("{PAYMENTS}{q}"), &shop()).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (status, want),
            "{q}"
        );
    }
}

// ---- bad input and access ----------------------------------------------------------------------

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_charged() {
    let w = world(Opts::default()).await;
    let good = payment(ALICE, "1.00", "bad", Some("bad"));
    let with = |path: &[&str], v: Value| {
        let mut b = good.clone();
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        b.to_string()
    };
    let ci = ["amountTransaction", "paymentAmount", "chargingInformation"];
    let ci_field = |f: &'static str| -> Vec<&'static str> {
        let mut v = ci.to_vec();
        v.push(f);
        v
    };
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "{not json".into(),
            400,
            code::INVALID_ARGUMENT,
            "malformed JSON",
        ),
        ("[]".into(), 400, code::INVALID_ARGUMENT, "an array"),
        (
            "{}".into(),
            400,
            code::INVALID_ARGUMENT,
            "no amountTransaction",
        ),
        (
            with(&ci_field("amount"), json!("1.00")),
            400,
            code::INVALID_ARGUMENT,
            "amount as a string",
        ),
        (
            with(&ci_field("amount"), json!(0)),
            400,
            code::INVALID_ARGUMENT,
            "zero",
        ),
        (
            with(&ci_field("amount"), num("-1.00")),
            400,
            code::INVALID_ARGUMENT,
            "negative",
        ),
        (
            with(&ci_field("amount"), num("1.0001")),
            400,
            code::INVALID_ARGUMENT,
            "4 decimals",
        ),
        (
            with(&ci_field("amount"), num("1.001")),
            400,
            code::INVALID_ARGUMENT,
            "3 decimals in EUR",
        ),
        (
            with(&ci_field("amount"), num("1e30")),
            400,
            code::INVALID_ARGUMENT,
            "too large",
        ),
        (
            with(&ci_field("currency"), json!("EUX")),
            400,
            code::INVALID_ARGUMENT,
            "unknown currency",
        ),
        (
            with(&ci_field("currency"), json!(978)),
            400,
            code::INVALID_ARGUMENT,
            "currency as a number",
        ),
        (
            with(&ci_field("description"), json!("")),
            400,
            code::INVALID_ARGUMENT,
            "empty description",
        ),
        (
            with(&ci_field("description"), Value::Null),
            400,
            code::INVALID_ARGUMENT,
            "no description",
        ),
        (
            with(&ci_field("taxAmount"), num("-1")),
            400,
            code::INVALID_ARGUMENT,
            "negative tax",
        ),
        (
            with(&["amountTransaction", "phoneNumber"], json!("34671999000")),
            400,
            code::INVALID_ARGUMENT,
            "no +",
        ),
        (
            with(&["amountTransaction", "phoneNumber"], json!("+0671999000")),
            400,
            code::INVALID_ARGUMENT,
            "leading 0",
        ),
        (
            with(&["amountTransaction", "phoneNumber"], json!("+3467")),
            400,
            code::INVALID_ARGUMENT,
            "too short",
        ),
        (
            with(
                &["amountTransaction", "phoneNumber"],
                json!("+3467199900012345"),
            ),
            400,
            code::INVALID_ARGUMENT,
            "too long",
        ),
        (
            with(&["amountTransaction", "phoneNumber"], json!(34671999000u64)),
            400,
            code::INVALID_ARGUMENT,
            "a number",
        ),
        (
            with(&["amountTransaction", "phoneNumber"], Value::Null),
            422,
            code::MISSING_IDENTIFIER,
            "no phone",
        ),
        (
            with(&["amountTransaction", "referenceCode"], Value::Null),
            400,
            code::INVALID_ARGUMENT,
            "no referenceCode",
        ),
        (
            with(&["amountTransaction", "paymentAmount"], json!([])),
            400,
            code::INVALID_ARGUMENT,
            "array amount",
        ),
        (
            with(&["sink"], json!("http://merchant.example.com/cb")),
            400,
            code::INVALID_SINK,
            "sink over http",
        ),
        (
            with(
                &[
                    "amountTransaction",
                    "paymentAmount",
                    "chargingMetaData",
                    "fee",
                ],
                num("101"),
            ),
            400,
            code::INVALID_ARGUMENT,
            "fee",
        ),
    ];
    for (body, status, want, what) in &cases {
        let r = w.post_with(PAYMENTS, &shop(), &[], body).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (*status, *want),
            "{what}: {:?}",
            r.body
        );
    }
    let r = w
        .post_with(
            PAYMENTS,
            &shop(),
            &[],
            &with(&["sink"], json!("http://x.example/cb")),
        )
        .await;
    assert!(
        r.message().contains("http is not accepted"),
        "{}",
        r.message()
    );
    let r = w
        .post_with(
            PAYMENTS,
            &shop(),
            &[],
            &with(&ci_field("amount"), json!("1.00")),
        )
        .await;
    assert!(
        r.message()
            .contains("amountTransaction.paymentAmount.chargingInformation.amount"),
        "{}",
        r.message()
    );
    // The wrong media type, a body too large, a malformed x-correlator.
    let r = w
        .send(
            Method::POST,
            PAYMENTS,
            &[(shop().0, &shop().1), ("content-type", "text/plain")],
            Body::from(good.to_string()),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (415, code::UNSUPPORTED_MEDIA_TYPE)
    );
    let big = with(&ci_field("description"), json!("x".repeat(5000)));
    let r = w.post_with(PAYMENTS, &shop(), &[], &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.code();
    let r = w
        .post_with(
            PAYMENTS,
            &shop(),
            &[("x-correlator", "bad correlator!")],
            &good.to_string(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, code::INVALID_ARGUMENT)
    );
    assert_eq!(r.header("x-correlator"), None);
    // Nothing was charged or recorded.
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert_eq!(w.stored_ops().await, 0);
    let (rows, _) = w
        .charging
        .store()
        .resources(ResourceFilter::default())
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    // A valid one goes through.
    assert_eq!(w.pay(&good).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn authentication_and_application_policy() {
    let w = world(Opts::default()).await;
    let body = payment(ALICE, "1.00", "auth", None).to_string();
    for h in [
        vec![("content-type", "application/json")],
        vec![("content-type", "application/json"), ("x-api-key", "nope")],
        vec![
            ("content-type", "application/json"),
            ("authorization", "Basic c2hvcDp3cm9uZw=="),
        ],
    ] {
        let r = w
            .send(Method::POST, PAYMENTS, &h, Body::from(body.clone()))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, code::UNAUTHENTICATED)
        );
        assert!(r.header("www-authenticate").is_some());
    }
    let r = w
        .send(
            Method::GET,
            PAYMENTS,
            &[("authorization", "Bearer k-shop"), ("x-correlator", "abc")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-correlator"), Some("abc"));
    // A reader may list but not pay.
    assert_eq!(
        w.get(PAYMENTS, &key("k-reader")).await.status,
        StatusCode::OK
    );
    let r = w.post_with(PAYMENTS, &key("k-reader"), &[], &body).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (403, code::PERMISSION_DENIED)
    );
    let r = w
        .post(&refunds_path("pay-1"), &key("k-reader"), &total("t"))
        .await;
    assert_eq!(r.code(), code::PERMISSION_DENIED);
    // The kiosk: EUR only, 20 at most.
    let r = w
        .post(
            PAYMENTS,
            &key("k-kiosk"),
            &payment(ALICE, "20.01", "k-1", None),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (422, code::UNAUTHORIZED_AMOUNT)
    );
    let mut gbp = payment(GRACE, "1.00", "k-2", None);
    gbp["amountTransaction"]["paymentAmount"]["chargingInformation"]["currency"] = json!("GBP");
    let r = w.post(PAYMENTS, &key("k-kiosk"), &gbp).await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, code::INVALID_ARGUMENT)
    );
    assert!(
        r.message()
            .starts_with("Currency is unknown or not authorized.")
    );
    // The shop may pay in GBP.
    assert_eq!(w.pay(&gbp).await.status, StatusCode::CREATED);
    assert_eq!(w.sim().balance(&tel(GRACE)).unwrap().amount, d("49.00"));
    assert_eq!(w.balance(ALICE), d("100.00"));
    // Methods not served on a CAMARA path.
    let r = w
        .send(
            Method::DELETE,
            PAYMENTS,
            &[(shop().0, &shop().1)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

// ---- tables ----------------------------------------------------------------------------------

fn every_failure() -> Vec<Failure> {
    let denied = |rc: u32, name: &str| Failure::Denied {
        result_code: rc,
        name: name.into(),
    };
    let ocs = |rc: u32| Failure::OcsError {
        result_code: rc,
        name: format!("RC{rc}"),
        failed_avp: None,
        error_message: None,
        hint: None,
    };
    vec![
        Failure::Invalid {
            field: "f".into(),
            reason: "r".into(),
        },
        Failure::KeyReused { key: "k".into() },
        Failure::ReservationUnknown { id: "r".into() },
        Failure::ReservationClosed {
            id: "r".into(),
            state: "expired".into(),
        },
        Failure::ReservationBusy { id: "r".into() },
        Failure::ExceedsReservation {
            requested: "2".into(),
            remaining: "1".into(),
        },
        Failure::CurrencyMismatch {
            given: "USD".into(),
            expected: "EUR".into(),
        },
        Failure::TooManyReservations,
        denied(4010, "DIAMETER_END_USER_SERVICE_DENIED"),
        denied(4012, "DIAMETER_CREDIT_LIMIT_REACHED"),
        denied(5003, "DIAMETER_AUTHORIZATION_REJECTED"),
        Failure::UnknownUser,
        Failure::RatingFailed { currency: true },
        Failure::RatingFailed { currency: false },
        Failure::ReservationGone { id: "r".into() },
        Failure::PartialGrant {
            granted: "1".into(),
            requested: "2".into(),
        },
        ocs(4001),
        ocs(4002),
        ocs(5005),
        ocs(5012),
        ocs(5006),
        Failure::Unavailable {
            reason: "no peer".into(),
        },
        Failure::ProtocolError {
            result_code: 3004,
            name: "DIAMETER_TOO_BUSY".into(),
        },
        Failure::NotReserved { reason: "r".into() },
        Failure::OutcomeUnknown {
            operation_id: "o".into(),
            reason: "Tx".into(),
        },
        Failure::InProgress {
            operation_id: "o".into(),
        },
        Failure::SplitFailed {
            leg: 0,
            subscriber: "s".into(),
            cause: Box::new(denied(4012, "DIAMETER_CREDIT_LIMIT_REACHED")),
            refunded: vec![],
            unresolved: vec![],
        },
        Failure::Store {
            reason: "disk".into(),
        },
    ]
}

/// One row per failure: (status, code, effect) for create, prepare, confirm, cancel, refund.
type Row = [(u16, &'static str, Effect); 5];

#[test]
fn every_failure_maps_to_a_camara_answer_and_an_effect() {
    use Effect::*;
    use code::*;
    let same = |s: u16, c: &'static str, e: Effect| [(s, c, e); 5];
    let by_step = |payment: (u16, &'static str, Effect),
                   cancel: (u16, &'static str, Effect),
                   refund: (u16, &'static str, Effect)|
     -> Row { [payment, payment, payment, cancel, refund] };
    let ended = |create: (u16, &'static str, Effect)| -> Row {
        [
            create,
            create,
            (409, PAYMENT_CANCELLED, ReservationEnded),
            (409, PAYMENT_CANCELLED, ReservationEnded),
            create,
        ]
    };
    let expected: Vec<Row> = vec![
        same(400, INVALID_ARGUMENT, NotApplied),
        same(400, INVALID_ARGUMENT, NotApplied),
        ended((500, INTERNAL, NotApplied)),
        ended((500, INTERNAL, NotApplied)),
        same(409, ABORTED, NotApplied),
        by_step(
            (422, UNAUTHORIZED_AMOUNT, NotApplied),
            (422, UNAUTHORIZED_AMOUNT, NotApplied),
            (422, REFUND_UNAUTHORIZED_AMOUNT, NotApplied),
        ),
        same(400, INVALID_ARGUMENT, NotApplied),
        same(503, UNAVAILABLE, NotApplied),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (403, REFUND_DENIED, Refused),
        ),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (422, REFUND_USER_AMOUNT_THRESHOLD_OVERPASSED, Refused),
        ),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (403, REFUND_DENIED, Refused),
        ),
        by_step(
            (404, IDENTIFIER_NOT_FOUND, Refused),
            (404, IDENTIFIER_NOT_FOUND, Refused),
            (403, PAYMENT_NOT_ELIGIBLE_FOR_REFUND, Refused),
        ),
        same(400, INVALID_ARGUMENT, Refused),
        by_step(
            (422, SERVICE_NOT_APPLICABLE, Refused),
            (422, SERVICE_NOT_APPLICABLE, Refused),
            (422, REFUND_UNAUTHORIZED_AMOUNT, Refused),
        ),
        ended((500, INTERNAL, Refused)),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (403, REFUND_DENIED, Refused),
        ),
        same(403, PERMISSION_DENIED, NotApplied),
        same(503, UNAVAILABLE, NotApplied),
        same(500, INTERNAL, NotApplied),
        same(500, INTERNAL, NotApplied),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (403, REFUND_DENIED, Refused),
        ),
        same(503, UNAVAILABLE, NotApplied),
        same(503, UNAVAILABLE, NotApplied),
        same(503, UNAVAILABLE, NotApplied),
        same(504, TIMEOUT, Unknown),
        same(409, ABORTED, Unknown),
        by_step(
            (403, PAYMENT_DENIED, Refused),
            (403, PERMISSION_DENIED, Refused),
            (422, REFUND_USER_AMOUNT_THRESHOLD_OVERPASSED, Refused),
        ),
        same(500, INTERNAL, Unknown),
    ];
    let failures = every_failure();
    assert_eq!(failures.len(), expected.len());
    for (f, row) in failures.iter().zip(&expected) {
        for (step, (status, c, e)) in Step::ALL.iter().zip(row) {
            let err = from_failure(*step, f);
            assert_eq!(
                (err.status.as_u16(), err.code.as_str(), effect(*step, f)),
                (*status, *c, *e),
                "{f:?} on {}",
                step.name()
            );
            assert!(!err.message.is_empty());
        }
    }
    // Every variant is in the table (the mapping is one exhaustive match; this keeps the table
    // complete as variants are added).
    let names: std::collections::BTreeSet<String> = failures
        .iter()
        .map(|f| {
            format!("{f:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 21, "{names:?}");
}

#[test]
fn the_payment_state_machine() {
    use Pending::*;
    let all = [
        Status::Processing,
        Status::PendingValidation,
        Status::Reserved,
        Status::Succeeded,
        Status::Denied,
        Status::Cancelled,
    ];
    let code_of = |s: Status, p: Option<Pending>, a: Pending| match transition(s, p, a) {
        Ok(()) => "go".to_string(),
        Err(e) => format!("{} {}", e.status.as_u16(), e.code),
    };
    for s in all {
        for a in [Confirm, Cancel] {
            let want = match (s, a) {
                (Status::Reserved, _) => "go",
                (Status::Processing, _) => "409 CARRIER_BILLING.PAYMENT_CONFIRMED",
                (Status::Succeeded, _) => "409 CARRIER_BILLING.PAYMENT_CONFIRMED",
                (Status::Cancelled, _) => "409 CARRIER_BILLING.PAYMENT_CANCELLED",
                (Status::Denied, Confirm) => "403 CARRIER_BILLING.PAYMENT_DENIED",
                (Status::Denied, _) => "409 CONFLICT",
                (Status::PendingValidation, _) => "409 CONFLICT",
            };
            if s == Status::Processing {
                continue;
            }
            assert_eq!(code_of(s, None, a), want, "{s:?} {a:?}");
        }
    }
    // While an operation is in flight: its retry goes on, anything else is refused.
    assert_eq!(code_of(Status::Processing, Some(Confirm), Confirm), "go");
    assert_eq!(code_of(Status::Processing, Some(Cancel), Cancel), "go");
    assert_eq!(
        code_of(Status::Processing, Some(Confirm), Cancel),
        "409 ALREADY_EXISTS"
    );
    assert_eq!(
        code_of(Status::Processing, Some(Cancel), Confirm),
        "409 ALREADY_EXISTS"
    );
    assert_eq!(
        code_of(Status::Processing, Some(Prepare), Confirm),
        "409 ABORTED"
    );
}

#[test]
fn correlators_phone_numbers_and_ids() {
    for ok in [
        "",
        "abc",
        "7d6f1c2e-0b7e-4d5c-9a35-2f0f7f1f1a10",
        "a:b;c.d/e<f>{g}_h",
    ] {
        assert!(valid_correlator(ok), "{ok}");
    }
    for bad in ["a b", "é", "a,b", "a\"b", &"x".repeat(257)] {
        assert!(!valid_correlator(bad), "{bad}");
    }
    for ok in ["+34671999000", "+12345", "+123456789012345"] {
        assert!(model::valid_phone(ok), "{ok}");
    }
    for bad in [
        "34671999000",
        "+0123456",
        "+1234",
        "+1234567890123456",
        "+3467a",
        "+",
        "",
    ] {
        assert!(!model::valid_phone(bad), "{bad}");
    }
    assert!(valid_id("pay-0123abcd") && !valid_id("{paymentId}") && !valid_id(""));
    assert_eq!(
        derived_id("pay-", &["a", "b"]),
        derived_id("pay-", &["a", "b"])
    );
    assert_ne!(
        derived_id("pay-", &["ab", ""]),
        derived_id("pay-", &["a", "b"])
    );
    assert_eq!(derived_id("pay-", &["a"]).len(), 28);
}

#[test]
fn times_have_one_form() {
    // Whole tenths and whole seconds keep three digits (`.7Z` and `28Z` before).
    assert_eq!(rfc3339(1_796_206_288_700), "2026-12-02T10:11:28.700Z");
    assert_eq!(rfc3339(1_796_206_288_703), "2026-12-02T10:11:28.703Z");
    assert_eq!(rfc3339(1_796_206_288_000), "2026-12-02T10:11:28.000Z");
    assert_eq!(
        parse_rfc3339("2026-12-02T10:11:28.7Z"),
        Some(1_796_206_288_700)
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_family() {
    let doc = serde_json::to_value(crate::api::openapi::document()).unwrap();
    for r in routes() {
        let item = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(item.is_object(), "{} {}", r.method, r.path);
        for status in ["400", "401", "403", "404", "409", "422", "500", "503"] {
            assert_eq!(
                item["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorInfo",
                "{} {status}",
                r.path
            );
        }
        assert!(item["security"].is_array());
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "ErrorInfo",
        "CreatePayment",
        "Payment",
        "CamaraChargingInformation",
        "CreateRefund",
        "Refund",
        "PaymentRemainingAmount",
        "DecimalNumber",
    ] {
        assert!(schemas[name].is_object(), "{name}");
    }
    // The OCSG schema of the same name is untouched.
    assert!(schemas["ChargingInformation"]["properties"]["code"].is_object());
    assert!(
        doc["paths"][PAYMENTS]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            == "#/components/schemas/CreatePayment"
    );
}

mod checkout;
mod notify;
