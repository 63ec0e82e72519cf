//! Handler tests through `router(state).oneshot(request)`, on the real path: the in-process
//! OCS simulator over TCP, a Diameter node and credit-control client, the charging service
//! over a memory store. Balances are read from the simulator's books.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use proptest::prelude::*;
use rust_decimal::Decimal;
use tower::ServiceExt;

use super::error::{POLICY_EXCEPTION, SERVICE_EXCEPTION, from_failure};
use super::*;
use crate::charging::{Charging, Failure};
use crate::config::{AppConfig, HttpConfig};
use crate::diameter::codec::ResultCode;
use crate::ocs::OcsSim;
use crate::store::{
    Backend, OperationFilter, OperationRow, ReservationRow, Store, StoreError, StoreSettings,
    Write, Written,
};

// ---- harness ---------------------------------------------------------------------------------

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const ALICE: &str = "tel:+34671999000";
const BOB: &str = "tel:+34600000001";
const CAROL: &str = "tel:+34600000002";
const DAVE: &str = "sip:dave@example.com";

fn sha_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn app_configs() -> Vec<AppConfig> {
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
            username: "other".into(),
            password_sha256: sha_hex("other-pw"),
            ..app("other")
        },
        AppConfig {
            api_key: "k-kiosk".into(),
            allowed_currencies: vec!["EUR".into()],
            max_amount: Some(d("20")),
            allowed_operations: vec!["charge-amount".into(), "charge-split-amount".into()],
            ..app("kiosk")
        },
        AppConfig {
            username: "ops".into(),
            password_sha256: sha_hex("ops-pw"),
            admin: true,
            oidc_client_id: String::new(),
            ..app("ops")
        },
    ]
}

struct Opts {
    /// Start the simulator (else the gateway has no peer: every CCR is unavailable).
    sim: bool,
    tx: Duration,
    request_timeout: Duration,
    max_body: usize,
    store: Option<Store>,
    metrics: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            sim: true,
            tx: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_body: 4096,
            store: None,
            metrics: false,
        }
    }
}

struct World {
    gw: crate::gateway::Gateway,
    charging: Arc<Charging>,
    router: Router,
    ready: Arc<AtomicBool>,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The error message, after checking the body is exactly the seed's error shape.
    fn error(&self) -> (String, String) {
        let v = self.json();
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 1, "only `error`: {v}");
        let e = obj["error"].as_object().expect("error object");
        assert_eq!(e.len(), 2, "type and message: {v}");
        let kind = e["type"].as_str().unwrap().to_string();
        assert!(
            kind == SERVICE_EXCEPTION || kind == POLICY_EXCEPTION,
            "{kind}"
        );
        (kind, e["message"].as_str().unwrap().to_string())
    }

    fn message(&self) -> String {
        self.error().1
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Auth = (&'static str, String);

fn basic(user: &str, pw: &str) -> Auth {
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ),
    )
}

fn shop() -> Auth {
    basic("shop", "shop-pw")
}

fn ops() -> Auth {
    basic("ops", "ops-pw")
}

async fn world(o: Opts) -> World {
    let accounts: Vec<_> = [
        (ALICE, "100.00"),
        (BOB, "5.00"),
        (CAROL, "50.00"),
        (DAVE, "20.00"),
    ]
    .iter()
    .map(|(s, b)| (s.to_string(), d(b), "EUR"))
    .collect();
    let gw = crate::gateway::testing::start(crate::gateway::testing::TestGateway {
        accounts: o.sim.then_some(accounts.as_slice()),
        tx: o.tx,
        reservation_ttl: Duration::from_secs(3600),
        reaper_interval: Duration::from_secs(3600),
        store: o.store,
    })
    .await;
    let charging = Arc::clone(&gw.charging);
    let ready = Arc::new(AtomicBool::new(true));
    let r = Arc::clone(&ready);
    let state = ApiState::new(
        Arc::clone(&charging),
        Arc::new(Apps::new(&app_configs())),
        Arc::new(move || r.load(Ordering::SeqCst)),
        o.metrics.then(install_metrics),
    );
    let router = router(
        state,
        &HttpConfig {
            max_body_bytes: o.max_body,
            request_timeout: o.request_timeout,
            ..HttpConfig::default()
        },
    );
    World {
        gw,
        charging,
        router,
        ready,
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

    /// POST a JSON body as `auth`.
    async fn post(&self, path: &str, auth: &Auth, body: &str) -> Resp {
        self.post_with(path, auth, &[], body).await
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

    async fn get(&self, path: &str, auth: Option<&Auth>) -> Resp {
        let h: Vec<(&str, &str)> = auth.iter().map(|a| (a.0, a.1.as_str())).collect();
        self.send(Method::GET, path, &h, Body::empty()).await
    }

    fn balance(&self, who: &str) -> Decimal {
        self.sim().balance(who).unwrap().amount
    }

    fn balances(&self) -> Vec<Decimal> {
        [ALICE, BOB, CAROL, DAVE]
            .iter()
            .map(|w| self.balance(w))
            .collect()
    }

    async fn stored_operations(&self) -> Vec<OperationRow> {
        self.charging
            .store()
            .operations(OperationFilter::default())
            .await
            .unwrap()
    }

    /// A reservation of `amount` EUR on `who`; its identifier.
    async fn reserve(&self, who: &str, amount: &str) -> String {
        let r = self
            .post(
                "/rest/payment/reserve-amount",
                &shop(),
                &format!(
                    r#"{{"charge": {{"description": "hold", "amount": "{amount}", "currency": "EUR"}},
                        "endUserIdentifier": "{who}"}}"#
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["result"].as_str().unwrap().to_string()
    }
}

fn charge_body(who: &str, amount: &str, reference: &str) -> String {
    format!(
        r#"{{"charge": {{"description": "Premium article", "amount": "{amount}", "code": "ART-1", "currency": "EUR"}},
            "endUserIdentifier": "{who}", "referenceCode": "{reference}"}}"#
    )
}

const CHARGE: &str = "/rest/payment/charge-amount";
const REFUND: &str = "/rest/payment/refund-amount";
const SPLIT: &str = "/rest/payment/charge-split-amount";
const RESERVE: &str = "/rest/payment/reserve-amount";
const RESERVE_MORE: &str = "/rest/payment/reserve-additional-amount";
const CHARGE_RESERVATION: &str = "/rest/payment/charge-reservation";
const RELEASE: &str = "/rest/payment/release-reservation";

/// Retries `body` until the answer is not a 503 / 409 (an unknown outcome being resolved).
async fn until_resolved(w: &World, path: &str, body: &str) -> Resp {
    for _ in 0..300 {
        let r = w.post(path, &shop(), body).await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE && r.status != StatusCode::CONFLICT {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never resolved");
}

// ---- charge and refund -----------------------------------------------------------------------

#[tokio::test]
async fn charge_amount_moves_the_balance_and_answers_204() {
    let w = world(Opts::default()).await;
    let r = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "4.99", "order-1"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(w.balance(ALICE), d("95.01"));
    let ops = w.stored_operations().await;
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].app, "shop");
    assert_eq!(ops[0].key.as_deref(), Some("order-1"));
    assert_eq!(ops[0].subscriber.as_deref(), Some("tel:34671999000"));
}

#[tokio::test]
async fn amounts_as_json_numbers_are_exact() {
    let w = world(Opts::default()).await;
    // 0.1 and 0.2 are not representable in binary floating point: the balance must still
    // move by exactly 0.30.
    for (i, amount) in ["0.1", "0.2"].iter().enumerate() {
        let body = format!(
            r#"{{"charge": {{"amount": {amount}, "currency": "EUR"}},
                "endUserIdentifier": "{ALICE}", "referenceCode": "num-{i}"}}"#
        );
        let r = w.post(CHARGE, &shop(), &body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    assert_eq!(w.balance(ALICE), d("99.70"));
    // Exponent notation (Java's BigDecimal.toString) is read exactly too.
    let body = format!(
        r#"{{"charge": {{"amount": "1.5E+1", "currency": "EUR"}},
            "endUserIdentifier": "{ALICE}", "referenceCode": "exp"}}"#
    );
    assert_eq!(
        w.post(CHARGE, &shop(), &body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(w.balance(ALICE), d("84.70"));
}

#[tokio::test]
async fn charging_is_an_alias_of_charge_and_currency_defaults() {
    let w = world(Opts::default()).await;
    let body = format!(
        r#"{{"charging": {{"description": "OCSG 6.1 style", "amount": "2.50"}},
            "endUserIdentifier": "{DAVE}", "referenceCode": "alias-1"}}"#
    );
    let r = w.post(CHARGE, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(DAVE), d("17.50"));
}

#[tokio::test]
async fn refund_amount_credits_the_account() {
    let w = world(Opts::default()).await;
    let r = w
        .post(REFUND, &shop(), &charge_body(BOB, "1.25", "refund-1"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(BOB), d("6.25"));
}

#[tokio::test]
async fn a_refused_charge_moves_nothing() {
    let w = world(Opts::default()).await;
    let r = w
        .post(CHARGE, &shop(), &charge_body(BOB, "5.01", "too-much"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (kind, msg) = r.error();
    assert_eq!(kind, SERVICE_EXCEPTION);
    assert_eq!(
        msg,
        "SVC0270: charge failed: DIAMETER_CREDIT_LIMIT_REACHED (4012)"
    );
    assert_eq!(w.balance(BOB), d("5.00"));
    // The refusal is final: the same request is answered the same, without a second CCR.
    let journal = w.sim().journal().len();
    let again = w
        .post(CHARGE, &shop(), &charge_body(BOB, "5.01", "too-much"))
        .await;
    assert_eq!(again.message(), msg);
    assert_eq!(w.sim().journal().len(), journal);
}

#[tokio::test]
async fn an_idempotent_retry_charges_once() {
    let w = world(Opts::default()).await;
    let body = charge_body(CAROL, "10.00", "once");
    for _ in 0..3 {
        let r = w.post(CHARGE, &shop(), &body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(w.balance(CAROL), d("40.00"));
    let debits = w.sim().journal().iter().filter(|e| e.op == "debit").count();
    assert_eq!(debits, 1);
    // Equivalent spellings of the same request are the same request.
    let same = r#"{"charge": {"description": "Premium article", "amount": 10, "code": "ART-1", "currency": "EUR"},
            "endUserIdentifier": "tel:34600000002", "referenceCode": "once"}"#;
    assert_eq!(
        w.post(CHARGE, &shop(), same).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(w.balance(CAROL), d("40.00"));
}

#[tokio::test]
async fn concurrent_duplicates_charge_once() {
    let w = world(Opts::default()).await;
    let body = charge_body(CAROL, "3.00", "race");
    let auth = shop();
    let (a, b, c) = tokio::join!(
        w.post(CHARGE, &auth, &body),
        w.post(CHARGE, &auth, &body),
        w.post(CHARGE, &auth, &body)
    );
    for r in [a, b, c] {
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    assert_eq!(w.balance(CAROL), d("47.00"));
}

#[tokio::test]
async fn the_same_reference_code_with_another_body_is_refused() {
    let w = world(Opts::default()).await;
    let first = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "ref-x"))
        .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let other = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "2.00", "ref-x"))
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    let msg = other.message();
    assert!(
        msg.starts_with("SVC0002: invalid input value: referenceCode: \"ref-x\""),
        "{msg}"
    );
    // A refund with a charge's referenceCode is another request too.
    let refund = w
        .post(REFUND, &shop(), &charge_body(ALICE, "1.00", "ref-x"))
        .await;
    assert_eq!(refund.status, StatusCode::CONFLICT);
    assert_eq!(w.balance(ALICE), d("99.00"));
}

#[tokio::test]
async fn reference_codes_of_two_applications_never_collide() {
    let w = world(Opts::default()).await;
    let a = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "shared"))
        .await;
    let b = w
        .post(
            CHARGE,
            &basic("other", "other-pw"),
            &charge_body(ALICE, "2.00", "shared"),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(b.status, StatusCode::NO_CONTENT, "{:?}", b.body);
    assert_eq!(w.balance(ALICE), d("97.00"));
    let apps: BTreeSet<String> = w
        .stored_operations()
        .await
        .into_iter()
        .map(|o| o.app)
        .collect();
    assert_eq!(
        apps,
        BTreeSet::from(["other".to_string(), "shop".to_string()])
    );
}

// ---- split -----------------------------------------------------------------------------------

fn split_body(total: &str, reference: &str, shares: &[(&str, &str)]) -> String {
    let shares: Vec<String> = shares
        .iter()
        .map(|(u, p)| format!(r#"{{"endUserIdentifier": "{u}", "percent": {p}}}"#))
        .collect();
    format!(
        r#"{{"charge": {{"description": "conference", "amount": "{total}", "currency": "EUR"}},
            "referenceCode": "{reference}", "splitInfo": [{}]}}"#,
        shares.join(", ")
    )
}

#[tokio::test]
async fn a_split_charges_exact_shares() {
    let w = world(Opts::default()).await;
    // 10.00 at 33/33/34: 3.30 + 3.30 + 3.40.
    let r = w
        .post(
            SPLIT,
            &shop(),
            &split_body(
                "10.00",
                "split-1",
                &[(ALICE, "33"), (CAROL, "33"), (DAVE, "34")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("96.70"));
    assert_eq!(w.balance(CAROL), d("46.70"));
    assert_eq!(w.balance(DAVE), d("16.60"));
    // 0.10 at 33/33/34: 3.3 + 3.3 + 3.4 cents, the cent left over goes to the largest
    // remainder (the last share): 0.03 + 0.03 + 0.04, adding up to exactly 0.10.
    let r = w
        .post(
            SPLIT,
            &shop(),
            &split_body(
                "0.10",
                "split-2",
                &[(ALICE, "33"), (CAROL, "33"), (DAVE, "\"34\"")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("96.67"));
    assert_eq!(w.balance(CAROL), d("46.67"));
    assert_eq!(w.balance(DAVE), d("16.56"));
}

#[tokio::test]
async fn a_failed_split_leg_refunds_the_charged_ones() {
    let w = world(Opts::default()).await;
    // Bob holds 5.00: his half of 20.00 is refused after Alice's half was charged.
    let r = w
        .post(
            SPLIT,
            &shop(),
            &split_body("20.00", "split-fail", &[(ALICE, "50"), (BOB, "50")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.message();
    assert!(
        msg.starts_with("SVC0270: charge failed: leg 1 (tel:34600000001) failed: "),
        "{msg}"
    );
    assert!(
        msg.contains("DIAMETER_CREDIT_LIMIT_REACHED (4012)"),
        "{msg}"
    );
    assert!(
        msg.contains("refunded: leg 0 (tel:34671999000, 10.00 EUR)"),
        "{msg}"
    );
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert_eq!(w.balance(BOB), d("5.00"));
    let ops: Vec<String> = w.sim().journal().iter().map(|e| e.op.clone()).collect();
    assert_eq!(ops, ["debit", "refund"]);
}

#[tokio::test]
async fn a_split_failing_on_the_first_leg_charges_nothing() {
    let w = world(Opts::default()).await;
    let r = w
        .post(
            SPLIT,
            &shop(),
            &split_body("20.00", "split-first", &[(BOB, "60"), (ALICE, "40")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("nothing was charged"),
        "{}",
        r.message()
    );
    assert_eq!(
        w.balances(),
        [d("100.00"), d("5.00"), d("50.00"), d("20.00")]
    );
}

// ---- reservations ----------------------------------------------------------------------------

#[tokio::test]
async fn a_reservation_lives_reserves_more_is_charged_and_released() {
    let w = world(Opts::default()).await;
    let id = w.reserve(ALICE, "10.00").await;
    assert_eq!(w.sim().account(ALICE).unwrap().reserved, d("10"));
    let more = format!(
        r#"{{"charge": {{"amount": "5", "currency": "EUR"}}, "reservationIdentifier": "{id}"}}"#
    );
    let r = w.post(RESERVE_MORE, &shop(), &more).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(r.body.is_empty());
    assert_eq!(w.sim().account(ALICE).unwrap().reserved, d("15"));
    let charge = format!(
        r#"{{"charge": {{"description": "use", "amount": "12.00"}}, "referenceCode": "use-1",
            "reservationIdentifier": "{id}"}}"#
    );
    let r = w.post(CHARGE_RESERVATION, &shop(), &charge).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    // A retry of the charge against the reservation is answered, not charged again.
    let again = w.post(CHARGE_RESERVATION, &shop(), &charge).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{:?}", again.body);
    let release = format!(r#"{{"reservationIdentifier": "{id}"}}"#);
    let r = w.post(RELEASE, &shop(), &release).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("88.00"));
    let acct = w.sim().account(ALICE).unwrap();
    assert_eq!(acct.reserved, Decimal::ZERO);
    assert_eq!(w.sim().open_reservations(), 0);
    // Releasing again succeeds again.
    assert_eq!(
        w.post(RELEASE, &shop(), &release).await.status,
        StatusCode::NO_CONTENT
    );
    // A charge on the released reservation: it is closed (POL2011).
    let late = charge.replace("use-1", "use-2");
    let r = w.post(CHARGE_RESERVATION, &shop(), &late).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (kind, msg) = r.error();
    assert_eq!(kind, POLICY_EXCEPTION);
    assert!(
        msg.starts_with("POL2011: transaction expired or invalid: reservationIdentifier"),
        "{msg}"
    );
    assert_eq!(w.balance(ALICE), d("88.00"));
}

#[tokio::test]
async fn reserve_amount_with_an_idempotency_key_answers_the_same_reservation() {
    let w = world(Opts::default()).await;
    let body = format!(
        r#"{{"charge": {{"amount": "3.00", "currency": "EUR"}}, "endUserIdentifier": "{CAROL}"}}"#
    );
    let key = [("idempotency-key", "hold-77")];
    let a = w.post_with(RESERVE, &shop(), &key, &body).await;
    let b = w.post_with(RESERVE, &shop(), &key, &body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), b.json());
    assert_eq!(w.sim().open_reservations(), 1);
    assert_eq!(w.sim().account(CAROL).unwrap().reserved, d("3"));
    // Without a key, each call is a new reservation.
    let c = w.post(RESERVE, &shop(), &body).await;
    assert_ne!(c.json(), a.json());
    assert_eq!(w.sim().open_reservations(), 2);
}

#[tokio::test]
async fn charging_more_than_reserved_is_refused() {
    let w = world(Opts::default()).await;
    let id = w.reserve(ALICE, "5.00").await;
    let body = format!(
        r#"{{"charge": {{"amount": "5.01", "currency": "EUR"}}, "referenceCode": "over",
            "reservationIdentifier": "{id}"}}"#
    );
    let r = w.post(CHARGE_RESERVATION, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().starts_with(
            "SVC0007: invalid charging information: charge: the amount 5.01 EUR exceeds"
        ),
        "{}",
        r.message()
    );
    let wrong_currency = body
        .replace("5.01", "1.00")
        .replace("\"EUR\"", "\"USD\"")
        .replace("over", "usd");
    let r = w.post(CHARGE_RESERVATION, &shop(), &wrong_currency).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("SVC0007: "), "{}", r.message());
    assert_eq!(w.balance(ALICE), d("100.00"));
}

#[tokio::test]
async fn an_unknown_reservation_is_named() {
    let w = world(Opts::default()).await;
    let body = r#"{"charge": {"amount": "1.00", "currency": "EUR"}, "referenceCode": "x",
        "reservationIdentifier": "rsv-nope"}"#;
    for path in [CHARGE_RESERVATION, RESERVE_MORE] {
        let r = w.post(path, &shop(), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            r.message()
                .starts_with("SVC0002: invalid input value: reservationIdentifier: "),
            "{}",
            r.message()
        );
    }
    let r = w
        .post(RELEASE, &shop(), r#"{"reservationIdentifier": "rsv-nope"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Another application's reservation is unknown to this one.
    let id = w.reserve(ALICE, "1.00").await;
    let r = w
        .post(
            RELEASE,
            &basic("other", "other-pw"),
            &format!(r#"{{"reservationIdentifier": "{id}"}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("reservationIdentifier"));
    assert!(w.sim().journal().iter().all(|e| e.op == "reserve"));
}

// ---- OCS refusals and failures ---------------------------------------------------------------

fn fault(w: &World, who: &str, rc: u32) {
    let key = crate::credit_control::SubscriptionId::parse(who)
        .unwrap()
        .key();
    w.sim().set_faults(|f| {
        f.fixed.insert(key, ResultCode(rc));
    });
}

#[tokio::test]
async fn ocs_refusals_map_to_parlay_x_errors() {
    let w = world(Opts::default()).await;
    let cases: &[(u32, u16, &str)] = &[
        (
            4010,
            400,
            "SVC0270: charge failed: DIAMETER_END_USER_SERVICE_DENIED (4010)",
        ),
        (
            5003,
            400,
            "SVC0270: charge failed: DIAMETER_AUTHORIZATION_REJECTED (5003)",
        ),
        (
            5012,
            400,
            "SVC0270: charge failed: the OCS answered DIAMETER_UNABLE_TO_COMPLY (5012)",
        ),
        (
            5030,
            400,
            "SVC0002: invalid input value: endUserIdentifier: the end user is unknown to the OCS (5030)",
        ),
        (
            5031,
            400,
            "SVC0007: invalid charging information: charge: the OCS could not rate the request (5031)",
        ),
        (
            3004,
            503,
            "SVC0001: service error: Diameter protocol error DIAMETER_TOO_BUSY (3004)",
        ),
        (
            5005,
            500,
            "SVC0001: service error: the OCS refused the gateway's request as malformed",
        ),
    ];
    for (i, (rc, status, prefix)) in cases.iter().enumerate() {
        fault(&w, CAROL, *rc);
        let r = w
            .post(
                CHARGE,
                &shop(),
                &charge_body(CAROL, "1.00", &format!("f-{i}")),
            )
            .await;
        assert_eq!(r.status.as_u16(), *status, "{rc}: {:?}", r.body);
        assert!(r.message().starts_with(prefix), "{rc}: {}", r.message());
    }
    assert_eq!(w.balance(CAROL), d("50.00"));
    // An unknown subscriber, without a fault.
    w.sim().clear_faults();
    let r = w
        .post(
            CHARGE,
            &shop(),
            &charge_body("tel:+34699999999", "1.00", "who"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message()
            .starts_with("SVC0002: invalid input value: endUserIdentifier: "),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn a_reservation_the_ocs_forgot_is_pol2011() {
    let w = world(Opts::default()).await;
    let id = w.reserve(CAROL, "5.00").await;
    fault(&w, CAROL, 5002);
    let body = format!(
        r#"{{"charge": {{"amount": "1.00", "currency": "EUR"}}, "referenceCode": "gone",
            "reservationIdentifier": "{id}"}}"#
    );
    let r = w.post(CHARGE_RESERVATION, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (kind, msg) = r.error();
    assert_eq!(kind, POLICY_EXCEPTION);
    assert!(
        msg.starts_with("POL2011: transaction expired or invalid: reservationIdentifier: "),
        "{msg}"
    );
    assert!(msg.contains("(5002)"), "{msg}");
}

#[tokio::test]
async fn an_unknown_outcome_says_so_and_a_retry_resolves_it() {
    let w = world(Opts {
        tx: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    let key = crate::credit_control::SubscriptionId::parse(CAROL)
        .unwrap()
        .key();
    // The OCS applies the debit after the gateway stopped waiting (Tx).
    w.sim().set_faults(|f| {
        f.latency_for.insert(key, Duration::from_millis(1500));
    });
    let body = charge_body(CAROL, "7.00", "slow-1");
    let r = w.post(CHARGE, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let msg = r.message();
    assert!(
        msg.starts_with("SVC0001: service error: the outcome is unknown"),
        "{msg}"
    );
    assert!(
        msg.contains("retry with the same referenceCode to learn it"),
        "{msg}"
    );
    for wrong in ["not charged", "was charged", "nothing was", "refunded"] {
        assert!(!msg.contains(wrong), "{msg}");
    }
    assert_eq!(r.header("retry-after"), Some("1"));
    w.sim().clear_faults();
    let r = until_resolved(&w, CHARGE, &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(CAROL), d("43.00"), "charged exactly once");
}

#[tokio::test]
async fn the_request_timeout_answers_unknown_and_the_charge_goes_on() {
    let w = world(Opts {
        request_timeout: Duration::from_millis(100),
        ..Opts::default()
    })
    .await;
    let key = crate::credit_control::SubscriptionId::parse(DAVE)
        .unwrap()
        .key();
    w.sim().set_faults(|f| {
        f.latency_for.insert(key, Duration::from_millis(600));
    });
    let body = charge_body(DAVE, "2.00", "late-1");
    let r = w.post(CHARGE, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.message().contains("the outcome is unknown"),
        "{}",
        r.message()
    );
    w.sim().clear_faults();
    // The dropped request did not cut the operation: it completes, and a retry learns it.
    let r = until_resolved(&w, CHARGE, &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(DAVE), d("18.00"));
}

#[tokio::test]
async fn no_ocs_is_503_and_not_ready() {
    let w = world(Opts {
        sim: false,
        ..Opts::default()
    })
    .await;
    let r = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "nopeer"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.message()
            .starts_with("SVC0001: service error: no OCS available"),
        "{}",
        r.message()
    );
    let r = w
        .post(
            RESERVE,
            &shop(),
            r#"{"charge": {"amount": "1"}, "endUserIdentifier": "tel:+34671999000"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
}

/// A store whose writes all fail.
struct BrokenDisk;

impl Backend for BrokenDisk {
    fn apply(&mut self, _: &[Write]) -> Result<Vec<Written>, StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn operation(&mut self, _: &str) -> Result<Option<OperationRow>, StoreError> {
        Ok(None)
    }
    fn operation_by_key(&mut self, _: &str, _: &str) -> Result<Option<OperationRow>, StoreError> {
        Ok(None)
    }
    fn operations(&mut self, _: &OperationFilter) -> Result<Vec<OperationRow>, StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn unresolved(&mut self) -> Result<Vec<OperationRow>, StoreError> {
        Ok(vec![])
    }
    fn reservation(&mut self, _: &str) -> Result<Option<ReservationRow>, StoreError> {
        Ok(None)
    }
    fn open_reservations(&mut self) -> Result<Vec<ReservationRow>, StoreError> {
        Ok(vec![])
    }
    fn resource(&mut self, _: &str) -> Result<Option<crate::store::ResourceRow>, StoreError> {
        Ok(None)
    }
    fn resources(
        &mut self,
        _: &crate::store::ResourceFilter,
    ) -> Result<(Vec<crate::store::ResourceRow>, usize), StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn event(&mut self, _: &str) -> Result<Option<crate::store::EventRow>, StoreError> {
        Ok(None)
    }
    fn events(
        &mut self,
        _: &crate::store::EventFilter,
    ) -> Result<(Vec<crate::store::EventRow>, usize), StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn due_events(&mut self, _: i64, _: usize) -> Result<Vec<crate::store::EventRow>, StoreError> {
        Ok(vec![])
    }
    fn inventory(&mut self, _: &str) -> Result<Option<crate::store::InventoryRow>, StoreError> {
        Err(StoreError("disk full".into()))
    }
    fn inventory_list(
        &mut self,
        _: &crate::store::InventoryFilter,
    ) -> Result<(Vec<crate::store::InventoryRow>, usize), StoreError> {
        Err(StoreError("disk full".into()))
    }
}

#[tokio::test]
async fn a_store_failure_is_500_and_charges_nothing() {
    let store = Store::start(BrokenDisk, "broken", StoreSettings::default()).unwrap();
    let w = world(Opts {
        store: Some(store),
        ..Opts::default()
    })
    .await;
    let r = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "disk"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let msg = r.message();
    assert!(
        msg.starts_with("SVC0001: service error: the gateway could not record the operation"),
        "{msg}"
    );
    assert!(msg.contains("retry with the same referenceCode"), "{msg}");
    assert_eq!(w.balance(ALICE), d("100.00"));
    let r = w
        .get("/admin/operations?referenceCode=disk", Some(&ops()))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
}

// ---- bad input -------------------------------------------------------------------------------

/// Every class of bad input: a 4xx in the error JSON, naming the field, and nothing reaches
/// the OCS or the store.
#[tokio::test]
async fn bad_input_is_refused_before_charging() {
    let w = world(Opts {
        max_body: 16 * 1024,
        ..Opts::default()
    })
    .await;
    let ok = charge_body(ALICE, "1.00", "r1");
    let long_ref = "r".repeat(257);
    let long_desc = "d".repeat(1025);
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(20_000));
    let amount = |a: &str| {
        format!(
            r#"{{"charge": {{"amount": {a}, "currency": "EUR"}}, "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
        )
    };
    let with = |field: &str, value: &str| {
        format!(
            r#"{{"charge": {{"amount": "1.00", "currency": "EUR"}}, "endUserIdentifier": "{ALICE}", "referenceCode": "r", {field}}}"#
        )
        .replace("__", value)
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        // syntax
        (
            CHARGE,
            r#"{"charge": "#.into(),
            400,
            "SVC0002: invalid input value: body: not valid JSON",
        ),
        (
            CHARGE,
            format!("{ok} trailing"),
            400,
            "SVC0002: invalid input value: body: not valid JSON",
        ),
        (CHARGE, "".into(), 400, "SVC0002: invalid input value: body"),
        (
            CHARGE,
            "[1, 2]".into(),
            400,
            "SVC0002: invalid input value: body",
        ),
        (
            CHARGE,
            "null".into(),
            400,
            "SVC0002: invalid input value: body",
        ),
        // types
        (
            CHARGE,
            ok.replace(&format!("\"{ALICE}\""), "5"),
            400,
            "SVC0002: invalid input value: endUserIdentifier: invalid type",
        ),
        (
            CHARGE,
            ok.replace("\"r1\"", "[\"r1\"]"),
            400,
            "SVC0002: invalid input value: referenceCode: invalid type",
        ),
        (
            CHARGE,
            amount("true"),
            400,
            "SVC0007: invalid charging information: charge.amount: expected a decimal",
        ),
        (
            CHARGE,
            amount("true").replace("\"charge\"", "\"charging\""),
            400,
            "SVC0007: invalid charging information: charging.amount: expected a decimal",
        ),
        (
            CHARGE,
            format!(
                r#"{{"charge": ["x", "1.00"], "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
            ),
            400,
            "SVC0007: invalid charging information: charge: invalid type: sequence, expected a JSON object",
        ),
        (
            CHARGE,
            amount("{\"v\": 1}"),
            400,
            "SVC0007: invalid charging information: charge.amount: expected a decimal",
        ),
        (
            CHARGE,
            format!(
                r#"{{"charge": "1.00", "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
            ),
            400,
            "SVC0007: invalid charging information: charge: invalid type",
        ),
        (
            CHARGE,
            ok.replace("\"EUR\"", "978"),
            400,
            "SVC0007: invalid charging information: charge.currency: invalid type",
        ),
        // missing fields
        (
            CHARGE,
            format!(r#"{{"charge": {{"amount": "1.00"}}, "endUserIdentifier": "{ALICE}"}}"#),
            400,
            "SVC0002: invalid input value: referenceCode: required",
        ),
        (
            CHARGE,
            r#"{"charge": {"amount": "1.00"}, "referenceCode": "r"}"#.into(),
            400,
            "SVC0002: invalid input value: endUserIdentifier: required",
        ),
        (
            CHARGE,
            format!(r#"{{"endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#),
            400,
            "SVC0007: invalid charging information: charge: required",
        ),
        (
            CHARGE,
            format!(
                r#"{{"charging": null, "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
            ),
            400,
            "SVC0007: invalid charging information: charge: required",
        ),
        (
            CHARGE,
            format!(
                r#"{{"charge": {{"code": "ART-1", "currency": "EUR"}}, "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
            ),
            400,
            "SVC0007: invalid charging information: charge.amount: required: charging by code alone is not supported",
        ),
        (
            CHARGE,
            format!(
                r#"{{"charge": {{"description": "x"}}, "endUserIdentifier": "{ALICE}", "referenceCode": "r"}}"#
            ),
            400,
            "SVC0007: invalid charging information: charge.amount: required",
        ),
        // amounts
        (
            CHARGE,
            amount("\"0\""),
            400,
            "SVC0007: invalid charging information: charge.amount: must be above zero",
        ),
        (
            CHARGE,
            amount("0.00"),
            400,
            "SVC0007: invalid charging information: charge.amount: must be above zero",
        ),
        (
            CHARGE,
            amount("\"-1.00\""),
            400,
            "SVC0007: invalid charging information: charge.amount: must be above zero",
        ),
        (
            CHARGE,
            amount("-0.5"),
            400,
            "SVC0007: invalid charging information: charge.amount: must be above zero",
        ),
        (
            CHARGE,
            amount("\"1.001\""),
            400,
            "SVC0007: invalid charging information: charge.amount: 1.001 has more decimals than EUR allows (2)",
        ),
        (
            CHARGE,
            amount("0.0001"),
            400,
            "SVC0007: invalid charging information: charge.amount: 0.0001 has more decimals",
        ),
        (
            CHARGE,
            amount("\"1.5\"").replace("EUR", "JPY"),
            400,
            "SVC0007: invalid charging information: charge.amount: 1.5 has more decimals than JPY allows (0)",
        ),
        (
            CHARGE,
            amount("\"abc\""),
            400,
            "SVC0007: invalid charging information: charge.amount: \"abc\" is not a decimal number",
        ),
        (
            CHARGE,
            amount("\"\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("\" 1.00\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("\"1.2.3\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("\"NaN\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("\"0x10\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("\"1.\""),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("1e400"),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        (
            CHARGE,
            amount("1e30"),
            400,
            "SVC0007: invalid charging information: charge.amount: \"1e+30\" is out of range",
        ),
        (
            CHARGE,
            amount("\"99999999999999999999.99\""),
            400,
            "SVC0007: invalid charging information: charge.amount: the amount 99999999999999999999.99 is too large",
        ),
        (
            CHARGE,
            amount(&format!("\"{}\"", "9".repeat(80))),
            400,
            "SVC0007: invalid charging information: charge.amount",
        ),
        // currencies
        (
            CHARGE,
            ok.replace("\"EUR\"", "\"EURO\""),
            400,
            "SVC0007: invalid charging information: charge.currency: \"EURO\" is not an ISO 4217",
        ),
        (
            CHARGE,
            ok.replace("\"EUR\"", "\"eur\""),
            400,
            "SVC0007: invalid charging information: charge.currency",
        ),
        (
            CHARGE,
            ok.replace("\"EUR\"", "\"\""),
            400,
            "SVC0007: invalid charging information: charge.currency",
        ),
        (
            CHARGE,
            ok.replace("\"EUR\"", "\"XAU\""),
            400,
            "SVC0007: invalid charging information: charge.amount: currency XAU has no minor unit",
        ),
        // end users
        (
            CHARGE,
            charge_body("tel:abc", "1.00", "r"),
            400,
            "SVC0002: invalid input value: endUserIdentifier: invalid end-user identifier \"tel:abc\"",
        ),
        (
            CHARGE,
            charge_body("mailto:a@b", "1.00", "r"),
            400,
            "SVC0002: invalid input value: endUserIdentifier",
        ),
        (
            CHARGE,
            charge_body("34671999000", "1.00", "r"),
            400,
            "SVC0002: invalid input value: endUserIdentifier",
        ),
        (
            CHARGE,
            charge_body("", "1.00", "r"),
            400,
            "SVC0002: invalid input value: endUserIdentifier: must not be empty",
        ),
        (
            CHARGE,
            charge_body(&format!("sip:{}@x", "a".repeat(300)), "1.00", "r"),
            400,
            "SVC0002: invalid input value: endUserIdentifier: longer than 256",
        ),
        // strings
        (
            CHARGE,
            charge_body(ALICE, "1.00", ""),
            400,
            "SVC0002: invalid input value: referenceCode: must not be empty",
        ),
        (
            CHARGE,
            charge_body(ALICE, "1.00", "   "),
            400,
            "SVC0002: invalid input value: referenceCode: must not be empty",
        ),
        (
            CHARGE,
            charge_body(ALICE, "1.00", &long_ref),
            400,
            "SVC0002: invalid input value: referenceCode: longer than 256 characters",
        ),
        (
            CHARGE,
            charge_body(ALICE, "1.00", "a\\u0000b"),
            400,
            "SVC0002: invalid input value: referenceCode: must not contain control characters",
        ),
        (
            CHARGE,
            ok.replace("Premium article", &long_desc),
            400,
            "SVC0007: invalid charging information: charge.description: longer than 1024 characters",
        ),
        (
            CHARGE,
            ok.replace("\"ART-1\"", "\"\""),
            400,
            "SVC0007: invalid charging information: charge.code: must not be empty",
        ),
        (
            CHARGE,
            with("\"charging\": __", "{}"),
            400,
            "SVC0002: invalid input value: body: duplicate field `charge`",
        ),
        // split
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "50.5"), (CAROL, "49.5")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].percent: \"50.5\" is not a whole number from 1 to 100",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "50"), (CAROL, "40")]),
            400,
            "SVC0002: invalid input value: splitInfo: the percentages add up to 90, not 100",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "0"), (CAROL, "100")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].percent",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "101")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].percent",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "-50"), (CAROL, "150")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].percent",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "true")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].percent: expected a whole number",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[]),
            400,
            "SVC0002: invalid input value: splitInfo: 1 to 100 end users expected",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "50"), ("tel:34671999000", "50")]),
            400,
            "SVC0002: invalid input value: splitInfo[1].endUserIdentifier: tel:34671999000 is already listed at splitInfo[0]",
        ),
        (
            SPLIT,
            split_body("0.01", "s", &[(ALICE, "50"), (CAROL, "50")]),
            400,
            "SVC0002: invalid input value: splitInfo: entry 1: 50% of 0.01 is less than one minor unit of EUR",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[("tel:x", "100")]),
            400,
            "SVC0002: invalid input value: splitInfo[0].endUserIdentifier",
        ),
        (
            SPLIT,
            r#"{"charge": {"amount": "1"}, "referenceCode": "s", "splitInfo": [{"percent": 100}]}"#
                .into(),
            400,
            "SVC0002: invalid input value: splitInfo[0].endUserIdentifier: required",
        ),
        (
            SPLIT,
            r#"{"charge": {"amount": "1"}, "referenceCode": "s"}"#.into(),
            400,
            "SVC0002: invalid input value: splitInfo: required",
        ),
        (
            SPLIT,
            r#"{"charge": {"amount": "1"}, "referenceCode": "s", "splitInfo": {}}"#.into(),
            400,
            "SVC0002: invalid input value: splitInfo: invalid type",
        ),
        (
            SPLIT,
            split_body("1.00", "s", &[(ALICE, "1"); 101]),
            400,
            "SVC0002: invalid input value: splitInfo: 1 to 100 end users expected",
        ),
        // reservations
        (
            RELEASE,
            r#"{}"#.into(),
            400,
            "SVC0002: invalid input value: reservationIdentifier: required",
        ),
        (
            RELEASE,
            r#"{"reservationIdentifier": "rsv 1"}"#.into(),
            400,
            "SVC0002: invalid input value: reservationIdentifier: not a reservation identifier",
        ),
        (
            RELEASE,
            format!(r#"{{"reservationIdentifier": "{}"}}"#, "r".repeat(129)),
            400,
            "SVC0002: invalid input value: reservationIdentifier: longer than 128",
        ),
        (
            RELEASE,
            r#"{"reservationIdentifier": 7}"#.into(),
            400,
            "SVC0002: invalid input value: reservationIdentifier: invalid type",
        ),
        (
            CHARGE_RESERVATION,
            r#"{"charge": {"amount": "1"}, "reservationIdentifier": "rsv-1"}"#.into(),
            400,
            "SVC0002: invalid input value: referenceCode: required",
        ),
        (
            RESERVE_MORE,
            r#"{"reservationIdentifier": "rsv-1"}"#.into(),
            400,
            "SVC0007: invalid charging information: charge: required",
        ),
        (
            RESERVE,
            r#"{"charge": {"amount": "1"}}"#.into(),
            400,
            "SVC0002: invalid input value: endUserIdentifier: required",
        ),
        (
            RESERVE,
            format!(
                r#"{{"charge": {{"amount": "1"}}, "endUserIdentifier": "{ALICE}", "charge": {{}}}}"#
            ),
            400,
            "SVC0002: invalid input value: body: duplicate field `charge`",
        ),
        // size
        (
            CHARGE,
            big,
            413,
            "SVC0002: invalid input value: body: larger than the gateway accepts",
        ),
    ];
    for (path, body, status, prefix) in &cases {
        let r = w.post(path, &shop(), body).await;
        assert_eq!(
            r.status.as_u16(),
            *status,
            "{path} {body}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.message();
        assert!(
            msg.starts_with(prefix),
            "{path} {body}:\n  got  {msg}\n  want {prefix}"
        );
    }
    // Headers.
    let idem_bad = [("idempotency-key", "")];
    let r = w
        .post_with(
            RESERVE,
            &shop(),
            &idem_bad,
            r#"{"charge": {"amount": "1"}, "endUserIdentifier": "tel:+34671999000"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message()
            .starts_with("SVC0002: invalid input value: Idempotency-Key")
    );
    let long = "k".repeat(257);
    let idem_long = [("idempotency-key", long.as_str())];
    let r = w
        .post_with(
            RELEASE,
            &shop(),
            &idem_long,
            r#"{"reservationIdentifier": "rsv-1"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
    ] {
        let mut h = vec![(shop().0, shop().1)];
        if let Some(ct) = ct {
            h.push(("content-type", ct.to_string()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = w
            .send(Method::POST, CHARGE, &h, Body::from(ok.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(
            r.message()
                .starts_with("SVC0002: invalid input value: Content-Type")
        );
    }
    // A body without Content-Length over the limit (streamed) is 413 too.
    let stream = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1000]))),
    );
    let h = [
        (shop().0, shop().1),
        ("content-type", "application/json".to_string()),
    ];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = w
        .send(Method::POST, CHARGE, &h, Body::from_stream(stream))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.error();
    // Nothing reached the OCS or the store.
    assert!(w.sim().journal().is_empty(), "{:?}", w.sim().journal());
    assert!(w.stored_operations().await.is_empty());
    assert_eq!(
        w.balances(),
        [d("100.00"), d("5.00"), d("50.00"), d("20.00")]
    );
    // charge-then-charging with the right content works (the world is sound).
    let charset = [("content-type", "application/json; charset=utf-8")];
    let auth = shop();
    let h = [(auth.0, auth.1.as_str()), charset[0]];
    let r = w.send(Method::POST, CHARGE, &h, Body::from(ok)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let w = world(Opts::default()).await;
    let body = format!(
        r#"{{"charge": {{"amount": "1.00", "currency": "EUR", "taxAmount": 0.2, "extra": {{"a": [1, 2]}}}},
            "endUserIdentifier": "{ALICE}", "referenceCode": "extra", "clientCorrelator": "c-1", "x": null}}"#
    );
    let r = w.post(CHARGE, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("99.00"));
}

#[tokio::test]
async fn wrong_methods_and_paths_answer_in_the_error_json() {
    let w = world(Opts::default()).await;
    for path in [CHARGE, RELEASE] {
        let h = [(shop().0, shop().1)];
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for m in [Method::GET, Method::PUT, Method::DELETE] {
            let r = w.send(m.clone(), path, &h, Body::empty()).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            assert!(
                r.message()
                    .starts_with("SVC0002: invalid input value: method"),
                "{}",
                r.message()
            );
            assert_eq!(r.header("allow"), Some("POST"));
            assert_eq!(r.headers.get_all("allow").iter().count(), 1);
        }
    }
    let r = w
        .send(Method::POST, "/health/live", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    let odd = Method::from_bytes(b"BREW").unwrap();
    let r = w.send(odd, CHARGE, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = w
        .post("/rest/payment/charge-everything", &shop(), "{}")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.message().starts_with("SVC0002: "));
}

/// The router's own answers (404, 405) on the CAMARA and TMF654 paths carry that family's
/// error JSON, not the Parlay X one, so that a client of either API can parse them.
#[tokio::test]
async fn router_errors_on_each_family_speak_its_error_json() {
    let w = world(Opts::default()).await;
    // CAMARA: ErrorInfo {status, code, message}.
    let camara = [
        (
            Method::DELETE,
            "/carrier-billing/v0.5/payments",
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Some("POST, GET"),
        ),
        (
            Method::GET,
            "/carrier-billing/v0.5/nothing-here",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
        (
            Method::PUT,
            "/carrier-billing-refund/v0.3/payments/p-1/refunds/r-1",
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Some("GET"),
        ),
        (
            Method::DELETE,
            "/carrier-billing-checkout/v0/purchases",
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Some("POST, GET"),
        ),
        (
            Method::GET,
            "/carrier-billing-checkout/v0/purchases/p-1/payment",
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Some("POST"),
        ),
        (
            Method::GET,
            "/carrier-billing-checkout/v0/nothing-here",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
    ];
    for (m, path, status, code, allow) in camara {
        let r = w
            .send(
                m.clone(),
                path,
                &[("x-correlator", "corr-1")],
                Body::empty(),
            )
            .await;
        assert_eq!(r.header("x-correlator"), Some("corr-1"), "{m} {path}");
        assert_eq!(r.status, status, "{m} {path}");
        let v = r.json();
        assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
        assert_eq!(v["status"], status.as_u16(), "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert_eq!(r.header("allow"), allow, "{m} {path}");
    }
    // TMF654: the TMF630 Error {code, reason, message, status, @type}.
    let tmf = [
        (
            Method::PUT,
            "/tmf-api/prepayBalanceManagement/v4/topupBalance",
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            Some("POST, GET"),
        ),
        (
            Method::GET,
            "/tmf-api/prepayBalanceManagement/v4/usageVolume",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
    ];
    for (m, path, status, code, allow) in tmf {
        let r = w.send(m.clone(), path, &[], Body::empty()).await;
        assert_eq!(r.status, status, "{m} {path}");
        let v = r.json();
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status.as_u16().to_string(), "{v}");
        assert_eq!(v["@type"], "Error", "{v}");
        assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert_eq!(r.header("allow"), allow, "{m} {path}");
    }
    // A path that only starts like a family's is not in it.
    let r = w
        .send(
            Method::GET,
            "/carrier-billing/v0.55/payments",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.message().starts_with("SVC0002: "), "{}", r.message());
}

// ---- access ----------------------------------------------------------------------------------

#[tokio::test]
async fn authentication_basic_api_key_and_bearer() {
    let w = world(Opts::default()).await;
    let body = charge_body(ALICE, "1.00", "auth");
    // Nothing, a wrong password, an unknown key: 401 with the challenge.
    for h in [
        vec![("content-type", "application/json")],
        vec![("content-type", "application/json"), ("x-api-key", "nope")],
    ] {
        let r = w
            .send(Method::POST, CHARGE, &h, Body::from(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"payment\"")
        );
        let (kind, msg) = r.error();
        assert_eq!(kind, SERVICE_EXCEPTION);
        assert!(
            msg.starts_with("SVC0001: service error: authentication required"),
            "{msg}"
        );
    }
    let r = w.post(CHARGE, &basic("shop", "wrong"), &body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Unauthenticated: nothing is parsed, nothing charged.
    assert!(w.stored_operations().await.is_empty());
    let r = w.post(CHARGE, &("x-api-key", "k-shop".into()), &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = w
        .post(
            CHARGE,
            &("authorization", "Bearer k-shop".into()),
            &charge_body(ALICE, "1.00", "auth-2"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = w
        .post(
            CHARGE,
            &basic("other", "other-pw"),
            &charge_body(ALICE, "1.00", "auth-3"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "password_sha256");
    assert_eq!(w.balance(ALICE), d("97.00"));
}

#[tokio::test]
async fn application_policy_is_pol0001() {
    let w = world(Opts::default()).await;
    let kiosk: Auth = ("x-api-key", "k-kiosk".into());
    let cases = [
        (
            REFUND,
            charge_body(ALICE, "1.00", "p1"),
            "may not call refund-amount",
        ),
        (
            RESERVE,
            format!(r#"{{"charge": {{"amount": "1"}}, "endUserIdentifier": "{ALICE}"}}"#),
            "may not call reserve-amount",
        ),
        (
            CHARGE,
            charge_body(ALICE, "1.00", "p2").replace("EUR", "USD"),
            "may not charge in USD",
        ),
        (
            CHARGE,
            charge_body(ALICE, "20.01", "p3"),
            "the amount 20.01 EUR is above the limit of application \"kiosk\" (20 per operation)",
        ),
        (
            SPLIT,
            split_body("30.00", "p4", &[(ALICE, "50"), (CAROL, "50")]),
            "the total 30.00 EUR is above the limit",
        ),
    ];
    for (path, body, reason) in &cases {
        let r = w.post(path, &kiosk, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        let (kind, msg) = r.error();
        assert_eq!(kind, POLICY_EXCEPTION);
        assert!(msg.starts_with("POL0001: policy error: "), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }
    assert!(w.sim().journal().is_empty());
    assert!(w.stored_operations().await.is_empty());
    // Within its policy, the kiosk charges.
    let r = w
        .post(CHARGE, &kiosk, &charge_body(ALICE, "20.00", "p5"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(w.balance(ALICE), d("80.00"));
}

#[tokio::test]
async fn admin_routes_need_an_admin_application() {
    let w = world(Opts {
        metrics: true,
        ..Opts::default()
    })
    .await;
    for path in [
        "/metrics",
        "/admin/operations?referenceCode=x",
        "/admin/reservations/rsv-1",
        "/admin/events",
        "/admin/events/ev-1",
    ] {
        let r = w.get(path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"payment\"")
        );
        let r = w.get(path, Some(&shop())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            r.message()
                .starts_with("POL0001: policy error: application \"shop\" is not an administrator")
        );
    }
    // The one admin route that changes something: sending an event again.
    let r = w.post("/admin/events/ev-1/retry", &shop(), "{}").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
}

// ---- operations endpoints --------------------------------------------------------------------

#[tokio::test]
async fn health_live_and_ready() {
    let w = world(Opts::default()).await;
    let r = w.get("/health/live", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "live");
    assert_eq!(w.get("/health/ready", None).await.status, StatusCode::OK);
    w.ready.store(false, Ordering::SeqCst);
    let r = w.get("/health/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "not ready");
    assert_eq!(w.get("/health/live", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_show_rest_and_ccr_series() {
    let w = world(Opts {
        metrics: true,
        ..Opts::default()
    })
    .await;
    let r = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "m-1"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    w.post(CHARGE, &shop(), &charge_body(ALICE, "-1", "m-2"))
        .await;
    set_peer_open("ocs", true);
    let r = w.get("/metrics", Some(&ops())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has(
            r#"gateway_http_requests_total{route="/rest/payment/charge-amount",method="POST",status="204"}"#
        ),
        "{text}"
    );
    assert!(has(
        r#"gateway_http_requests_total{route="/rest/payment/charge-amount",method="POST",status="400"}"#
    ));
    assert!(
        has(r#"gateway_http_request_duration_seconds_bucket{route="/rest/payment/charge-amount""#),
        "{text}"
    );
    assert!(has("gateway_ccr_total{"), "{text}");
    assert!(has("gateway_ccr_duration_seconds_bucket{"), "{text}");
    assert!(has(r#"gateway_peer_open{peer="ocs"} 1"#), "{text}");
    assert!(has("gateway_open_reservations "), "{text}");
    assert!(has("gateway_store_commit_seconds"), "{text}");
    // Without a recorder handle, /metrics is not there.
    let w2 = world(Opts::default()).await;
    assert_eq!(
        w2.get("/metrics", Some(&ops())).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_reads_the_stored_records() {
    let w = world(Opts::default()).await;
    w.post(CHARGE, &shop(), &charge_body(ALICE, "4.99", "dispute-1"))
        .await;
    w.post(
        CHARGE,
        &basic("other", "other-pw"),
        &charge_body(CAROL, "1.00", "dispute-1"),
    )
    .await;
    let r = w
        .get(
            "/admin/operations?referenceCode=dispute-1&app=shop",
            Some(&ops()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let op = &list[0];
    assert_eq!(op["app"], "shop");
    assert_eq!(op["kind"], "charge");
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["referenceCode"], "dispute-1");
    assert_eq!(op["subscriber"], "tel:34671999000");
    assert_eq!(d(op["amount"].as_str().unwrap()), d("4.99"));
    assert_eq!(op["resultCode"], 2001);
    assert!(
        op["sessionId"]
            .as_str()
            .unwrap()
            .starts_with("gw.charging.local;")
    );
    assert!(op["request"].is_object());
    let all = w
        .get("/admin/operations?referenceCode=dispute-1", Some(&ops()))
        .await
        .json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let id = w.reserve(DAVE, "3.00").await;
    let r = w
        .get(&format!("/admin/reservations/{id}"), Some(&ops()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["state"], "open");
    assert_eq!(v["app"], "shop");
    assert_eq!(d(v["reserved"].as_str().unwrap()), d("3"));
    assert_eq!(v["operations"].as_array().unwrap().len(), 1);
    let r = w.get("/admin/reservations/rsv-none", Some(&ops())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for bad in [
        "/admin/operations?state=lost",
        "/admin/operations?limit=0",
        "/admin/operations?limit=x",
    ] {
        let r = w.get(bad, Some(&ops())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        r.error();
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let w = world(Opts {
        sim: false,
        metrics: true,
        ..Opts::default()
    })
    .await;
    let r = w.get("/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, served);
    for route in routes() {
        // Each is really served: not 404 / 405 with its method.
        let path = route.path.replace("{id}", "rsv-1");
        let auth = ops();
        let h = [
            (auth.0, auth.1.as_str()),
            ("content-type", "application/json"),
        ];
        let r = w
            .send(route.method.clone(), &path, &h, Body::from("{}"))
            .await;
        assert!(
            // A made-up id is not found, by a route that is served.
            r.status != StatusCode::NOT_FOUND || route.path.contains("{id}"),
            "{} {path}: {}",
            route.method,
            r.status
        );
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let item = &paths[route.path][route.method.as_str().to_lowercase()];
        if route.path.starts_with("/rest/payment/") {
            let schema = &item["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert!(
                schema
                    .as_str()
                    .unwrap()
                    .starts_with("#/components/schemas/"),
                "{path}"
            );
            for status in ["400", "401", "403", "409", "413", "415", "500", "503"] {
                let body =
                    &item["responses"][status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(body, "#/components/schemas/ErrorBody", "{path} {status}");
            }
            let ok = if route.path.ends_with("reserve-amount") {
                "200"
            } else {
                "204"
            };
            assert!(item["responses"][ok].is_object(), "{path}");
            assert!(item["security"].is_array(), "{path}");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "AmountRequest",
        "SplitRequest",
        "SplitShare",
        "ReserveRequest",
        "ReserveAdditionalRequest",
        "ChargeReservationRequest",
        "ReleaseRequest",
        "ReserveResult",
        "ChargingInformation",
        "Amount",
        "Percent",
        "OperationRecord",
        "ReservationRecord",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let required = schemas["AmountRequest"]["required"].as_array().unwrap();
    for f in ["charge", "endUserIdentifier", "referenceCode"] {
        assert!(required.contains(&serde_json::json!(f)), "{f}");
    }
    assert!(doc["components"]["securitySchemes"]["basic"].is_object());
}

// ---- tracing ---------------------------------------------------------------------------------

/// Collects the fields of `http` spans.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().to_string(), format!("{v:?}"));
    }
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>>
    tracing_subscriber::Layer<S> for Spans
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "http" {
            let mut m = HashMap::new();
            attrs.record(&mut Fields(&mut m));
            self.0.lock().unwrap().insert(id.into_u64(), m);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(m) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(m));
        }
    }
}

#[tokio::test]
async fn each_request_has_a_span_tied_to_its_session_id() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let w = world(Opts::default()).await;
    // Another test's thread may register the `http` span's callsite while no subscriber is
    // installed and cache "never" for it after this subscriber came: once a request has
    // registered it for sure, recompute every callsite's interest with this subscriber in place.
    let _ = w.get("/health/live", None).await;
    tracing::callsite::rebuild_interest_cache();
    let r = w
        .post(CHARGE, &shop(), &charge_body(ALICE, "1.00", "traced"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let ops = w.stored_operations().await;
    let all = spans.0.lock().unwrap().clone();
    let span = all
        .values()
        .find(|s| s.get("route").map(String::as_str) == Some(CHARGE))
        .expect("an http span for the charge");
    assert_eq!(span["method"], "POST");
    assert_eq!(span["status"], "204");
    assert_eq!(span["app"], "shop");
    assert_eq!(span["session_id"], ops[0].session_id);
    assert_eq!(span["operation_id"], ops[0].id);
}

// ---- the failure table -----------------------------------------------------------------------

/// Index of each variant: a new variant does not compile until it is listed here, and the table
/// test below fails until it covers it.
fn variant(f: &Failure) -> usize {
    match f {
        Failure::Invalid { .. } => 0,
        Failure::KeyReused { .. } => 1,
        Failure::ReservationUnknown { .. } => 2,
        Failure::ReservationClosed { .. } => 3,
        Failure::ReservationBusy { .. } => 4,
        Failure::ExceedsReservation { .. } => 5,
        Failure::CurrencyMismatch { .. } => 6,
        Failure::TooManyReservations => 7,
        Failure::Denied { .. } => 8,
        Failure::UnknownUser => 9,
        Failure::RatingFailed { .. } => 10,
        Failure::ReservationGone { .. } => 11,
        Failure::PartialGrant { .. } => 12,
        Failure::OcsError { .. } => 13,
        Failure::Unavailable { .. } => 14,
        Failure::ProtocolError { .. } => 15,
        Failure::NotReserved { .. } => 16,
        Failure::OutcomeUnknown { .. } => 17,
        Failure::InProgress { .. } => 18,
        Failure::SplitFailed { .. } => 19,
        Failure::Store { .. } => 20,
    }
}
const VARIANTS: usize = 21;

#[test]
fn every_failure_maps_to_a_status_and_a_parlay_x_id() {
    use Operation as O;
    let denied = |rc: u32, name: &str| Failure::Denied {
        result_code: rc,
        name: name.into(),
    };
    let ocs = |rc: u32, name: &str| Failure::OcsError {
        result_code: rc,
        name: name.into(),
        failed_avp: None,
        error_message: None,
        hint: None,
    };
    let s = |v: &str| v.to_string();
    let table: Vec<(Failure, Operation, u16, &str, &str)> = vec![
        (
            Failure::Invalid {
                field: s("splitInfo"),
                reason: s("bad"),
            },
            O::ChargeSplitAmount,
            400,
            "SVC0002",
            "SVC0002: invalid input value: splitInfo: bad",
        ),
        (
            Failure::KeyReused { key: s("k1") },
            O::ChargeAmount,
            409,
            "SVC0002",
            "SVC0002: invalid input value: referenceCode: \"k1\" was already used for a different request",
        ),
        (
            Failure::KeyReused { key: s("k1") },
            O::ReserveAmount,
            409,
            "SVC0002",
            "SVC0002: invalid input value: Idempotency-Key: \"k1\"",
        ),
        (
            Failure::ReservationUnknown { id: s("rsv-1") },
            O::ChargeReservation,
            400,
            "SVC0002",
            "SVC0002: invalid input value: reservationIdentifier: no reservation \"rsv-1\"",
        ),
        (
            Failure::ReservationClosed {
                id: s("rsv-1"),
                state: s("released"),
            },
            O::ChargeReservation,
            400,
            "POL2011",
            "POL2011: transaction expired or invalid: reservationIdentifier: reservation \"rsv-1\" is released",
        ),
        (
            Failure::ReservationBusy { id: s("rsv-1") },
            O::ReleaseReservation,
            409,
            "SVC0001",
            "SVC0001: service error: reservation \"rsv-1\" is busy",
        ),
        (
            Failure::ExceedsReservation {
                requested: s("5 EUR"),
                remaining: s("4 EUR"),
            },
            O::ChargeReservation,
            400,
            "SVC0007",
            "SVC0007: invalid charging information: charge: the amount 5 EUR exceeds the 4 EUR left",
        ),
        (
            Failure::CurrencyMismatch {
                given: s("USD"),
                expected: s("EUR"),
            },
            O::ReserveAdditionalAmount,
            400,
            "SVC0007",
            "SVC0007: invalid charging information: charge: currency USD differs",
        ),
        (
            Failure::TooManyReservations,
            O::ReserveAmount,
            503,
            "SVC0001",
            "SVC0001: service error: too many open reservations",
        ),
        (
            denied(4012, "DIAMETER_CREDIT_LIMIT_REACHED"),
            O::ChargeAmount,
            400,
            "SVC0270",
            "SVC0270: charge failed: DIAMETER_CREDIT_LIMIT_REACHED (4012)",
        ),
        (
            denied(4010, "DIAMETER_END_USER_SERVICE_DENIED"),
            O::RefundAmount,
            400,
            "SVC0270",
            "SVC0270: refund failed: DIAMETER_END_USER_SERVICE_DENIED (4010)",
        ),
        (
            denied(5003, "DIAMETER_AUTHORIZATION_REJECTED"),
            O::ReserveAmount,
            400,
            "SVC0270",
            "SVC0270: reservation failed: DIAMETER_AUTHORIZATION_REJECTED (5003)",
        ),
        (
            Failure::UnknownUser,
            O::ChargeAmount,
            400,
            "SVC0002",
            "SVC0002: invalid input value: endUserIdentifier: the end user is unknown to the OCS (5030)",
        ),
        (
            Failure::RatingFailed { currency: true },
            O::ChargeAmount,
            400,
            "SVC0007",
            "SVC0007: invalid charging information: charge: the OCS could not rate the request (5031): currency not accepted",
        ),
        (
            Failure::ReservationGone { id: s("rsv-1") },
            O::ReserveAdditionalAmount,
            400,
            "POL2011",
            "POL2011: transaction expired or invalid: reservationIdentifier: reservation \"rsv-1\" no longer exists at the OCS (5002)",
        ),
        (
            Failure::PartialGrant {
                granted: s("5 EUR"),
                requested: s("10 EUR"),
            },
            O::ReserveAmount,
            400,
            "SVC0270",
            "SVC0270: reservation failed: the OCS granted 5 EUR of 10 EUR; nothing is reserved",
        ),
        (
            ocs(5012, "DIAMETER_UNABLE_TO_COMPLY"),
            O::ChargeAmount,
            400,
            "SVC0270",
            "SVC0270: charge failed: the OCS answered DIAMETER_UNABLE_TO_COMPLY (5012)",
        ),
        (
            ocs(5004, "DIAMETER_INVALID_AVP_VALUE"),
            O::ChargeAmount,
            500,
            "SVC0001",
            "SVC0001: service error: the OCS refused the gateway's request as malformed",
        ),
        (
            ocs(5005, "DIAMETER_MISSING_AVP"),
            O::ChargeAmount,
            500,
            "SVC0001",
            "SVC0001: ",
        ),
        (
            ocs(4002, "DIAMETER_OUT_OF_SPACE"),
            O::ChargeAmount,
            503,
            "SVC0001",
            "SVC0001: service error: ",
        ),
        (
            Failure::Unavailable {
                reason: s("no usable peer"),
            },
            O::ChargeAmount,
            503,
            "SVC0001",
            "SVC0001: service error: no OCS available (no usable peer); nothing was sent: retry",
        ),
        (
            Failure::ProtocolError {
                result_code: 3004,
                name: s("DIAMETER_TOO_BUSY"),
            },
            O::ChargeAmount,
            503,
            "SVC0001",
            "SVC0001: service error: Diameter protocol error DIAMETER_TOO_BUSY (3004); no credit-control server processed it",
        ),
        (
            Failure::NotReserved { reason: s("Tx") },
            O::ReserveAmount,
            503,
            "SVC0001",
            "SVC0001: service error: no answer from the OCS in time (Tx); nothing is reserved",
        ),
        (
            Failure::OutcomeUnknown {
                operation_id: s("op-1"),
                reason: s("no answer within Tx"),
            },
            O::ChargeAmount,
            503,
            "SVC0001",
            "SVC0001: service error: the outcome is unknown (no answer within Tx); retry with the same referenceCode to learn it",
        ),
        (
            Failure::OutcomeUnknown {
                operation_id: s("op-1"),
                reason: s("lost"),
            },
            O::ReleaseReservation,
            503,
            "SVC0001",
            "SVC0001: service error: the outcome is unknown (lost); retry with the same Idempotency-Key to learn it",
        ),
        (
            Failure::InProgress {
                operation_id: s("op-1"),
            },
            O::ChargeAmount,
            409,
            "SVC0001",
            "SVC0001: service error: an identical request is still in progress; retry with the same referenceCode",
        ),
        (
            Failure::SplitFailed {
                leg: 1,
                subscriber: s("tel:34600000001"),
                cause: Box::new(denied(4012, "DIAMETER_CREDIT_LIMIT_REACHED")),
                refunded: vec![s("leg 0 (tel:34671999000, 10.00 EUR)")],
                unresolved: vec![],
            },
            O::ChargeSplitAmount,
            400,
            "SVC0270",
            "SVC0270: charge failed: leg 1 (tel:34600000001) failed: DIAMETER_CREDIT_LIMIT_REACHED (4012); refunded: leg 0 (tel:34671999000, 10.00 EUR)",
        ),
        (
            Failure::SplitFailed {
                leg: 0,
                subscriber: s("tel:34699999999"),
                cause: Box::new(Failure::UnknownUser),
                refunded: vec![],
                unresolved: vec![],
            },
            O::ChargeSplitAmount,
            400,
            "SVC0002",
            "SVC0002: invalid input value: splitInfo[0].endUserIdentifier: leg 0 (tel:34699999999) failed: the end user is unknown to the OCS (5030); nothing was charged",
        ),
        (
            Failure::SplitFailed {
                leg: 1,
                subscriber: s("tel:34600000001"),
                cause: Box::new(Failure::Unavailable {
                    reason: s("no peer"),
                }),
                refunded: vec![],
                unresolved: vec![s("leg 0 (tel:34671999000, 1.00 EUR)")],
            },
            O::ChargeSplitAmount,
            503,
            "SVC0001",
            "SVC0001: service error: leg 1 (tel:34600000001) failed: no OCS available: no peer; refund not yet confirmed (being retried): leg 0",
        ),
        (
            Failure::Store {
                reason: s("disk full"),
            },
            O::ChargeAmount,
            500,
            "SVC0001",
            "SVC0001: service error: the gateway could not record the operation: disk full; the outcome is unknown: retry with the same referenceCode",
        ),
    ];
    let mut covered = [false; VARIANTS];
    for (failure, op, status, id, prefix) in &table {
        covered[variant(failure)] = true;
        let e = from_failure(*op, failure);
        assert_eq!(e.status.as_u16(), *status, "{failure:?}");
        assert_eq!(e.id.code(), *id, "{failure:?}");
        assert!(
            e.message.starts_with(prefix),
            "{failure:?}:\n  got  {}\n  want {prefix}",
            e.message
        );
        let want_kind = if id.starts_with("POL") {
            POLICY_EXCEPTION
        } else {
            SERVICE_EXCEPTION
        };
        assert_eq!(e.body().error.kind, want_kind);
        if *status == 503 {
            let res = e.clone().into_response();
            assert_eq!(res.headers()["retry-after"], "1");
        }
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !covered[*i]).collect();
    assert!(missing.is_empty(), "variants without a row: {missing:?}");
    // An unknown outcome is never phrased as charged or not charged, for any operation.
    for op in Operation::ALL {
        let e = from_failure(
            op,
            &Failure::OutcomeUnknown {
                operation_id: s("o"),
                reason: s("r"),
            },
        );
        assert!(e.message.contains("the outcome is unknown"));
        assert!(e.message.contains(&format!("the same {}", op.key_name())));
        assert!(
            !e.message.contains("charged") && !e.message.contains("nothing"),
            "{}",
            e.message
        );
    }
}

#[test]
fn operation_names_are_the_configured_ones() {
    let names: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
    // The OCSG operations come first; other families' names follow.
    assert_eq!(
        names,
        crate::config::service::OPERATIONS[..Operation::ALL.len()]
    );
    for op in Operation::ALL {
        assert_eq!(op.path(), format!("/rest/payment/{}", op.name()));
    }
}

#[test]
fn decimals_are_parsed_exactly() {
    use super::payment::parse_decimal;
    for (text, want) in [
        ("4.99", "4.99"),
        ("0.1", "0.1"),
        ("-1", "-1"),
        ("100", "100"),
        ("1.5E+1", "15"),
        ("1e2", "100"),
        ("12.5e-1", "1.25"),
        (
            "0.000000000000000000000000001",
            "0.000000000000000000000000001",
        ),
        (
            "79228162514264337593543950335",
            "79228162514264337593543950335",
        ),
    ] {
        assert_eq!(parse_decimal(text).unwrap(), d(want), "{text}");
    }
    for bad in [
        "",
        "+1",
        ".5",
        "1.",
        "1..2",
        "1,5",
        " 1",
        "1 ",
        "0x1",
        "NaN",
        "inf",
        "1e",
        "1e+",
        "1e1000",
        "1e99",
        "1e-99",
        "79228162514264337593543950336",
        "--1",
        "1-",
        "0.00000000000000000000000000001",
    ] {
        assert!(parse_decimal(bad).is_err(), "{bad:?} accepted");
    }
}

// ---- property: no input gives a 5xx ----------------------------------------------------------

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "1.5",
            "4.99",
            "1e400",
            "1E-7",
            "0.001",
            "12345678901234567890123",
            "3",
            "50",
            "100",
            "101",
        ])
        .prop_map(|n| serde_json::from_str::<Value>(n).unwrap_or(Value::Null)),
        prop::sample::select(vec![
            "",
            " ",
            "1.00",
            "-0",
            "0",
            "4.999",
            "EUR",
            "JPY",
            "XAU",
            "eur",
            "tel:+34671999000",
            "tel:abc",
            "sip:a@b",
            "rsv-1",
            "\u{0}",
            "💶",
            "1e5",
            "NaN",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "charge",
                        "charging",
                        "description",
                        "amount",
                        "code",
                        "currency",
                        "endUserIdentifier",
                        "referenceCode",
                        "splitInfo",
                        "percent",
                        "reservationIdentifier",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// A body shaped like a request, with any value in any field.
fn body_like() -> impl Strategy<Value = String> {
    (
        json_value(),
        json_value(),
        json_value(),
        json_value(),
        json_value(),
    )
        .prop_map(|(amount, currency, user, reference, rest)| {
            serde_json::json!({
                "charge": {"description": "x", "amount": amount, "currency": currency},
                "endUserIdentifier": user,
                "referenceCode": reference,
                "reservationIdentifier": rest.clone(),
                "splitInfo": [{"endUserIdentifier": "tel:+34671999000", "percent": rest}],
            })
            .to_string()
        })
}

fn any_body() -> impl Strategy<Value = String> {
    prop_oneof![
        body_like(),
        json_value().prop_map(|v| v.to_string()),
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,300}",
    ]
}

#[test]
fn no_body_on_any_route_gives_a_5xx_other_than_unavailable() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let w = rt.block_on(world(Opts {
        sim: false,
        max_body: 1024,
        ..Opts::default()
    }));
    let paths: Vec<&str> = Operation::ALL.iter().map(|o| o.path()).collect();
    let config = ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(path in prop::sample::select(paths), body in any_body(), idem in prop::option::of("[ -~]{0,8}"))| {
        let r = rt.block_on(async {
            let mut extra = vec![];
            if let Some(k) = &idem {
                extra.push(("idempotency-key", k.as_str()));
            }
            w.post_with(path, &shop(), &extra, &body).await
        });
        // A valid body reaches Charging, whose OCS is unreachable: 503 "no OCS available".
        // Anything else must be a client error; every answer is the error JSON (or success).
        if r.status.is_server_error() {
            prop_assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{} {}: {:?}", path, body, r.body);
            let msg = r.message();
            prop_assert!(msg.starts_with("SVC0001: ") && msg.contains("no OCS available"), "{}", msg);
        } else {
            prop_assert!(r.status.is_client_error(), "{} {}: {}", path, body, r.status);
            r.error();
        }
    });
}

// ---- the body read before the request timeout (read_body) -------------------------------------

mod body_read {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::routing::post;
    use futures::StreamExt;
    use http_body_util::BodyExt;

    use super::*;

    /// A router with only `read_body` in front of a handler that records that it ran and
    /// echoes the body it got (or the error reading it).
    fn app(max_bytes: usize, ran: Arc<AtomicBool>) -> Router {
        let handler = move |body: Body| async move {
            ran.store(true, Ordering::SeqCst);
            match body.collect().await {
                Ok(b) => (StatusCode::OK, b.to_bytes()).into_response(),
                Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        };
        let limits = BodyLimits {
            timeout: Duration::from_millis(300),
            max_bytes,
        };
        Router::new()
            .route("/{*path}", post(handler))
            .layer(middleware::from_fn_with_state(limits, read_body))
    }

    async fn send(app: Router, path: &str, body: Body) -> (StatusCode, HeaderMap, Bytes) {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .body(body)
            .unwrap();
        let res = app.oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    /// 10 bytes, then nothing ever again.
    fn stalled() -> Body {
        let first =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"charge\":"))]);
        Body::from_stream(first.chain(futures::stream::pending()))
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_408_in_the_family_model_and_no_handler_runs() {
        for (path, check) in [
            (
                "/rest/payment/charge-amount",
                (|v: &serde_json::Value| {
                    assert_eq!(v["error"]["type"], SERVICE_EXCEPTION);
                    v["error"]["message"].as_str().unwrap().to_string()
                }) as fn(&serde_json::Value) -> String,
            ),
            ("/carrier-billing/v0.5/payments", |v| {
                assert_eq!(
                    (v["status"].as_u64(), v["code"].as_str()),
                    (Some(408), Some("TIMEOUT"))
                );
                v["message"].as_str().unwrap().to_string()
            }),
            ("/tmf-api/prepayBalanceManagement/v4/topupBalance", |v| {
                assert_eq!(
                    (v["status"].as_str(), v["code"].as_str()),
                    (Some("408"), Some("TIMEOUT"))
                );
                v["message"].as_str().unwrap().to_string()
            }),
        ] {
            let ran = Arc::new(AtomicBool::new(false));
            let (status, headers, body) = send(app(4096, Arc::clone(&ran)), path, stalled()).await;
            assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{path}");
            assert_eq!(headers.get("connection").unwrap(), "close", "{path}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let message = check(&v);
            assert!(
                message.contains("nothing was charged") && message.contains("300ms"),
                "{message}"
            );
            assert!(!ran.load(Ordering::SeqCst), "{path}: the handler ran");
        }
    }

    #[tokio::test]
    async fn the_handler_gets_the_body_whole_cut_past_the_limit_or_with_its_error() {
        let ran = Arc::new(AtomicBool::new(false));
        // Whole, in several chunks.
        let chunks = futures::stream::iter(
            ["{\"a\":", " 1", "}"]
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes()))),
        );
        let (status, _, body) =
            send(app(64, Arc::clone(&ran)), "/x", Body::from_stream(chunks)).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"{\"a\": 1}"[..]));
        // Exactly at the limit: whole; one byte more: cut at the limit plus one, so that the
        // extractors' own limit answers 413.
        let (_, _, body) = send(app(8, Arc::clone(&ran)), "/x", Body::from("12345678")).await;
        assert_eq!(&body[..], b"12345678");
        let over = futures::stream::iter(
            (0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"abcd"))),
        );
        let (_, _, body) = send(app(9, Arc::clone(&ran)), "/x", Body::from_stream(over)).await;
        assert_eq!(&body[..], b"abcdabcdab");
        // A body that fails reaches the handler as what came before and the failure.
        let failing = futures::stream::iter([
            Ok(Bytes::from_static(b"{\"a\"")),
            Err(std::io::Error::other("the client went away")),
        ]);
        let (status, _, body) =
            send(app(64, Arc::clone(&ran)), "/x", Body::from_stream(failing)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            String::from_utf8_lossy(&body).contains("the client went away"),
            "{body:?}"
        );
        // No body at all: straight through.
        let (status, _, body) = send(app(64, ran), "/x", Body::empty()).await;
        assert_eq!((status, body.len()), (StatusCode::OK, 0));
    }
}

/// Every policy name a family checks can be written in `allowed_operations` (the configuration
/// refuses names it does not know).
#[test]
fn every_family_policy_name_is_a_configurable_operation() {
    let ops = crate::config::service::OPERATIONS;
    for name in [
        super::tmf663::CART_OPERATION,
        super::identity::OPERATION,
        super::tmf632::PARTY_OPERATION,
        super::tmf629::CUSTOMER_OPERATION,
        super::tmf666::ACCOUNT_OPERATION,
        super::tmf654::TOPUP_OPERATION,
        super::tmf654::QUERY_OPERATION,
    ] {
        assert!(
            ops.contains(&name),
            "{name} is not in config::service::OPERATIONS"
        );
    }
}
