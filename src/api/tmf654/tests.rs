//! TMF654 through `router(state).oneshot(request)` on the real path (the OCS simulator over
//! TCP, a Diameter node, the credit-control client, the charging service over a memory
//! store), and the scheduler driven by a manual clock: balances are read from the
//! simulator's books, never inferred from the gateway's answers.

use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use tower::ServiceExt;

use super::schedule::{Clock, ManualClock, to_ms};
use super::scheduler::{Scheduler, SchedulerSettings};
use super::topups::{Topups, charging_key};
use super::validate;
use crate::api::{ApiState, Apps, router};
use crate::charging::{ChargeInfo, Charging, ChargingSettings, Key};
use crate::config::{AppConfig, HttpConfig};
use crate::credit_control::{
    CcConfig, CcFailureHandling, CreditControlClient, DdFailureHandling, Money, StyleChoice,
    StyleConfig, SubscriptionId, money::currency,
};
use crate::diameter::codec::{Limits, ResultCode};
use crate::diameter::dict::Dictionary;
use crate::diameter::node::{Node, NodeConfig, PeerConfig};
use crate::diameter::peer::{LocalIdentity, PeerSettings};
use crate::diameter::router::{NoApplications, PeerSpec, RouterSettings};
use crate::ocs::{OcsSim, OcsSimConfig, SimAccount};
use crate::store::Store;

// ---- harness ---------------------------------------------------------------------------------

fn dict() -> Arc<Dictionary> {
    static D: OnceLock<Arc<Dictionary>> = OnceLock::new();
    D.get_or_init(|| Arc::new(Dictionary::builtin().unwrap()))
        .clone()
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A JSON number with exactly these digits (`json!(5.00)` would go through f64: `5.0`).
fn num(s: &str) -> Value {
    Value::Number(s.parse().unwrap())
}

const ALICE: &str = "tel:+34671999000";
const BOB: &str = "tel:+34600000001";
const GBP_USER: &str = "tel:+447700900123";
const TOPUPS: &str = "/tmf-api/prepayBalanceManagement/v4/topupBalance";
const BUCKETS: &str = "/tmf-api/prepayBalanceManagement/v4/bucket";

fn app(id: &str) -> AppConfig {
    AppConfig {
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
    }
}

fn apps() -> Vec<AppConfig> {
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
            api_key: "k-kiosk".into(),
            allowed_currencies: vec!["EUR".into()],
            max_amount: Some(d("20")),
            allowed_operations: vec!["query-balance".into()],
            ..app("kiosk")
        },
        AppConfig {
            api_key: "k-small".into(),
            allowed_currencies: vec!["EUR".into()],
            max_amount: Some(d("20")),
            ..app("small")
        },
    ]
}

struct World {
    sim: Option<OcsSim>,
    node: Node,
    cc: CcConfig,
    store: Store,
    charging: Arc<Charging>,
    router: Router,
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

    /// The TMF Error body, checked to be exactly that shape: (code, message).
    fn error(&self) -> (String, String) {
        let v = self.json();
        let o = v.as_object().unwrap_or_else(|| panic!("object: {v}"));
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["code", "reason", "message", "status", "@type"],
            "{v}"
        );
        assert_eq!(o["@type"], "Error");
        assert_eq!(o["status"], self.status.as_u16().to_string(), "{v}");
        assert_eq!(
            self.headers["content-type"], "application/json;charset=utf-8",
            "{v}"
        );
        (
            o["code"].as_str().unwrap().to_string(),
            o["message"].as_str().unwrap().to_string(),
        )
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn basic(user: &str, pw: &str) -> (&'static str, String) {
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ),
    )
}

fn shop() -> (&'static str, String) {
    basic("shop", "shop-pw")
}

fn key(k: &str) -> (&'static str, String) {
    ("x-api-key", k.to_string())
}

fn cc(tx: Duration) -> CcConfig {
    CcConfig {
        service_context_id: "payment.v1@charging.local".into(),
        destination_realm: "charging.local".into(),
        destination_host: None,
        style: StyleConfig::both(StyleChoice::Mscc),
        default_currency: currency("EUR").unwrap(),
        ccfh: CcFailureHandling::Terminate,
        ddfh: DdFailureHandling::TerminateOrBuffer,
        tx,
        service_identifier: None,
        rating_group: None,
        extra_avps: Vec::new(),
        max_sessions: 1000,
        reservation_ttl: Duration::from_secs(3600),
        resolve_interval: Duration::from_millis(100),
        resolve_attempts: 200,
    }
}

async fn world_with(sim: bool, tx: Duration) -> World {
    let sim = if sim {
        Some(
            OcsSim::start(
                OcsSimConfig {
                    listen: "127.0.0.1:0".into(),
                    accounts: [
                        (ALICE, "100.00", "EUR"),
                        (BOB, "5.00", "EUR"),
                        (GBP_USER, "50.00", "GBP"),
                    ]
                    .iter()
                    .map(|(s, b, c)| SimAccount {
                        subscriber: (*s).into(),
                        balance: d(b),
                        currency: (*c).into(),
                    })
                    .collect(),
                    ..OcsSimConfig::default()
                },
                dict(),
            )
            .await
            .unwrap(),
        )
    } else {
        None
    };
    let peers = match &sim {
        Some(s) => vec![PeerConfig {
            spec: PeerSpec {
                name: "ocs".into(),
                host: "ocs.charging.local".into(),
                realm: "charging.local".into(),
                priority: 1,
                weight: 1,
            },
            connect: Some(s.local_addr().unwrap().to_string()),
        }],
        None => vec![],
    };
    let node = Node::start(
        NodeConfig {
            local: LocalIdentity {
                origin_host: "gw.charging.local".into(),
                origin_realm: "charging.local".into(),
                host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                vendor_id: 0,
                product_name: "tmf654-test".into(),
                firmware_revision: 1,
                origin_state_id: 1,
                auth_application_ids: vec![4],
                acct_application_ids: vec![],
                vendor_specific_auth_apps: vec![],
                supported_vendor_ids: vec![10415],
            },
            listen: None,
            accept_unknown_peers: false,
            peers,
            peer_settings: PeerSettings::default(),
            router: RouterSettings {
                request_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(2),
        },
        dict(),
        Arc::new(NoApplications),
    )
    .await
    .unwrap();
    if sim.is_some() {
        for _ in 0..500 {
            if node.router().any_usable() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            node.router().any_usable(),
            "never connected to the simulator"
        );
    }
    let cc = cc(tx);
    let store = Store::memory();
    let (charging, router) = start(&node, &cc, &store).await;
    World {
        sim,
        node,
        cc,
        store,
        charging,
        router,
    }
}

/// A charging service (and its router) over `store`: a new process, as far as the gateway's
/// state goes.
async fn start(node: &Node, cc: &CcConfig, store: &Store) -> (Arc<Charging>, Router) {
    let (tx, resolutions) = tokio::sync::mpsc::unbounded_channel();
    let client = CreditControlClient::new(node.router().clone(), cc.clone(), Some(tx));
    let charging = Charging::start(
        client,
        store.clone(),
        Some(resolutions),
        ChargingSettings {
            inflight_wait: Duration::from_secs(10),
            reaper_interval: Duration::from_secs(3600),
            resolve_interval: Duration::from_millis(100),
            ..ChargingSettings::default()
        },
    )
    .await
    .unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    // Listeners on loopback (the hub tests' callbacks).
    let state = ApiState::new(
        Arc::clone(&charging),
        Arc::new(Apps::new(&apps())),
        Arc::new(move || ready.load(std::sync::atomic::Ordering::SeqCst)),
        None,
    )
    .with_notifications(crate::config::notifications::NotificationsConfig {
        allow_http: true,
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let router = router(
        state,
        &HttpConfig {
            max_body_bytes: 8192,
            request_timeout: Duration::from_secs(30),
            ..HttpConfig::default()
        },
    );
    (charging, router)
}

async fn world() -> World {
    world_with(true, Duration::from_secs(5)).await
}

impl World {
    fn sim(&self) -> &OcsSim {
        self.sim.as_ref().expect("a simulator")
    }

    fn balance(&self, who: &str) -> Decimal {
        self.sim().balance(who).unwrap().amount
    }

    fn refunds(&self) -> usize {
        self.sim()
            .journal()
            .iter()
            .filter(|e| e.op == "refund")
            .count()
    }

    /// The gateway restarted over the same store (the OCS and its books unchanged).
    async fn restart(&mut self) {
        let (charging, router) = start(&self.node, &self.cc, &self.store).await;
        self.charging = charging;
        self.router = router;
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(b.body(body.into()).unwrap())
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

    async fn post(&self, auth: &(&str, String), extra: &[(&str, &str)], body: &Value) -> Resp {
        let mut h = vec![
            (auth.0, auth.1.as_str()),
            ("content-type", "application/json;charset=utf-8"),
        ];
        h.extend_from_slice(extra);
        self.send(Method::POST, TOPUPS, &h, body.to_string()).await
    }

    async fn get(&self, path: &str, auth: &(&str, String)) -> Resp {
        self.send(
            Method::GET,
            path,
            &[(auth.0, auth.1.as_str())],
            Body::empty(),
        )
        .await
    }

    fn scheduler(&self, clock: &Arc<ManualClock>) -> Scheduler {
        Scheduler::new(
            Arc::clone(&self.charging),
            SchedulerSettings {
                interval: Duration::from_secs(1),
                retry_window: Duration::from_secs(600),
                batch: 64,
            },
            Arc::clone(clock) as Arc<dyn super::schedule::Clock>,
        )
    }
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

/// A create request checked at `now` (the scheduler tests run the engine with their clock).
fn new_topup(v: Value, now: OffsetDateTime) -> validate::NewTopup {
    validate::new_topup(serde_json::from_value(v).unwrap(), now).unwrap()
}

// ---- one-time top-ups ----------------------------------------------------------------------------

#[tokio::test]
async fn a_top_up_moves_the_balance_once_even_when_retried() {
    let w = world().await;
    let r = w
        .post(
            &shop(),
            &[("idempotency-key", "tp-req-1")],
            &topup(json!(10), "34671999000"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["amount"], json!({"amount": num("10.00"), "units": "EUR"}));
    assert!(
        String::from_utf8_lossy(&r.body).contains(r#""amount":{"amount":10.00,"units":"EUR"}"#),
        "exact digits on the wire"
    );
    assert_eq!(v["@type"], "TopupBalance");
    assert!(v["confirmationDate"].is_string() && v["requestedDate"].is_string());
    assert_eq!(crate::api::datetime::assert_fixed_form(&v), 2, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["href"], format!("{TOPUPS}/{id}"));
    assert_eq!(r.header("location"), v["href"].as_str());
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    // Echoed as given.
    assert_eq!(v["channel"], json!({"id": "web"}));
    assert_eq!(v["logicalResource"][0]["id"], "34671999000");
    assert_eq!(w.balance(ALICE), d("110.00"));
    // The same key again (e.g. the answer was lost): the same top-up, nothing more moved.
    for amount in [json!(10), json!("10.00"), json!(10.0)] {
        let again = w
            .post(
                &shop(),
                &[("idempotency-key", "tp-req-1")],
                &topup(amount, "34671999000"),
            )
            .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.json()["id"], id.as_str());
        assert_eq!(again.json()["status"], "completed");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(w.balance(ALICE), d("110.00"));
    assert_eq!(w.refunds(), 1);
    // The same key with another request: 409, nothing moved.
    let other = w
        .post(
            &shop(),
            &[("idempotency-key", "tp-req-1")],
            &topup(json!(11), "34671999000"),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert_eq!(other.error().0, "CONFLICT");
    // Keys are per application: another application's same key is its own top-up.
    let mine = w
        .post(
            &key("k-other"),
            &[("idempotency-key", "tp-req-1")],
            &topup(json!(1), "34671999000"),
        )
        .await;
    assert_eq!(mine.status, StatusCode::CREATED);
    assert_ne!(mine.json()["id"], id.as_str());
    assert_eq!(w.balance(ALICE), d("111.00"));
    // Without a key every request is a new top-up.
    for _ in 0..2 {
        let r = w
            .post(&shop(), &[], &topup(json!("0.50"), "+34671999000"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    assert_eq!(w.balance(ALICE), d("112.00"));
    assert_eq!(w.refunds(), 4);
    // Read back; another application does not see it.
    let g = w.get(&format!("{TOPUPS}/{id}"), &shop()).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);
    let g = w.get(&format!("{TOPUPS}/{id}"), &key("k-other")).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.error().0, "NOT_FOUND");
    let g = w
        .get(&format!("{TOPUPS}/{id}?fields=status"), &shop())
        .await;
    let keys: Vec<String> = g.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["id", "href", "status", "@type"]);
}

#[tokio::test]
async fn the_ocs_outcomes_map_as_documented() {
    let w = world().await;
    // 4012 / 4010 / 5003 refusals: 201 failed, reason = the Diameter name; nothing moved.
    for (rc, name) in [
        (4010, "DIAMETER_END_USER_SERVICE_DENIED (4010)"),
        (4012, "DIAMETER_CREDIT_LIMIT_REACHED (4012)"),
        (5003, "DIAMETER_AUTHORIZATION_REJECTED (5003)"),
        (5012, "DIAMETER_UNABLE_TO_COMPLY (5012)"),
    ] {
        w.sim().set_faults(|f| {
            f.fixed.insert("tel:34600000001".into(), ResultCode(rc));
        });
        let r = w.post(&shop(), &[], &topup(json!(1), "34600000001")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{rc}");
        let v = r.json();
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("failed"), Some(name))
        );
        assert!(v.get("confirmationDate").is_none());
        // A failed top-up is final: reading it says the same.
        let g = w.get(v["href"].as_str().unwrap(), &shop()).await;
        assert_eq!(g.json()["status"], "failed");
    }
    w.sim().clear_faults();
    assert_eq!(w.balance(BOB), d("5.00"));
    // 5030: 400 with the Diameter code; the attempt is kept as a failed top-up.
    let r = w.post(&shop(), &[], &topup(json!(1), "34999999999")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (code, msg) = r.error();
    assert_eq!(code, "5030");
    assert!(
        msg.contains("unknown to the OCS") && msg.contains("nothing was topped up"),
        "{msg}"
    );
    let failed = w
        .get(&format!("{TOPUPS}?status=failed"), &shop())
        .await
        .json();
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["reason"] == "DIAMETER_USER_UNKNOWN (5030)")
    );
    // 5031: a currency the account does not hold.
    let r = w.post(&shop(), &[], &topup(json!(1), "447700900123")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().0, "5031");
    assert_eq!(w.balance(GBP_USER), d("50.00"));
    assert_eq!(w.refunds(), 0);
}

#[tokio::test]
async fn an_unknown_outcome_is_created_never_completed_until_the_ocs_answers() {
    let w = world_with(true, Duration::from_millis(300)).await;
    w.sim().set_faults(|f| f.silent = true);
    let r = w
        .post(
            &shop(),
            &[("idempotency-key", "silent-1")],
            &topup(json!(2), "34671999000"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(v["status"], "created", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("outcome unknown"),
        "{v}"
    );
    assert!(v.get("confirmationDate").is_none());
    let href = v["href"].as_str().unwrap().to_string();
    // Still unknown while the OCS is silent: reading never reports it completed.
    assert_eq!(w.get(&href, &shop()).await.json()["status"], "created");
    assert_eq!(w.balance(ALICE), d("100.00"));
    // The OCS answers again: the charging resolver re-sends the recorded CCR (T flag), and a
    // read records its outcome.
    w.sim().clear_faults();
    let mut status = String::new();
    for _ in 0..200 {
        status = w.get(&href, &shop()).await.json()["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status != "created" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
    assert_eq!(w.balance(ALICE), d("102.00"));
    assert_eq!(w.refunds(), 1);
    // A retry with the key answers the completed top-up and moves nothing.
    let again = w
        .post(
            &shop(),
            &[("idempotency-key", "silent-1")],
            &topup(json!(2), "34671999000"),
        )
        .await;
    assert_eq!(again.json()["status"], "completed");
    assert_eq!(w.balance(ALICE), d("102.00"));
}

#[tokio::test]
async fn with_no_ocs_a_top_up_is_retried_by_the_scheduler_then_failed() {
    let w = world_with(false, Duration::from_millis(300)).await;
    let r = w.post(&shop(), &[], &topup(json!(3), "34671999000")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(v["status"], "created");
    assert!(
        v["reason"].as_str().unwrap().contains("no OCS available"),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let s = w.scheduler(&clock);
    // Within the retry window: tried again, still created.
    let pass = s.tick().await;
    assert_eq!((pass.due, pass.settled), (1, 0));
    let topups = Topups::new(Arc::clone(&w.charging));
    let rec = topups.get("shop", &id, clock.now()).await.unwrap();
    assert_eq!(rec.view.status.name(), "created");
    // Past it: failed, saying nothing was topped up.
    clock.set(OffsetDateTime::now_utc() + time::Duration::minutes(11));
    let pass = s.tick().await;
    assert_eq!(pass.settled, 1);
    let g = w.get(&format!("{TOPUPS}/{id}"), &shop()).await.json();
    assert_eq!(g["status"], "failed");
    assert!(
        g["reason"]
            .as_str()
            .unwrap()
            .contains("nothing was topped up"),
        "{g}"
    );
    // Nothing is due any more.
    assert_eq!(s.tick().await.due, 0);
}

#[tokio::test]
async fn bad_input_is_refused_by_name_and_moves_nothing() {
    let w = world().await;
    let good = topup(json!(1), "34671999000");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "body: not valid JSON",
        ),
        (
            "[1, 2]".into(),
            StatusCode::BAD_REQUEST,
            "body: expected a JSON object",
        ),
        ("{}".into(), StatusCode::BAD_REQUEST, "amount: required"),
        (
            with(&|v| v["amount"] = json!("10")),
            StatusCode::BAD_REQUEST,
            "amount: expected an object",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!(true)),
            StatusCode::BAD_REQUEST,
            "amount.amount: ",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!(0)),
            StatusCode::BAD_REQUEST,
            "amount.amount: must be above zero",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!(-5)),
            StatusCode::BAD_REQUEST,
            "amount.amount: must be above zero",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!("1.001")),
            StatusCode::BAD_REQUEST,
            "amount.amount: ",
        ),
        (
            with(&|v| v["amount"]["amount"] = json!("1e400")),
            StatusCode::BAD_REQUEST,
            "amount.amount: ",
        ),
        (
            with(&|v| v["amount"]["units"] = json!("EUX")),
            StatusCode::BAD_REQUEST,
            "amount.units: \"EUX\" is not an ISO 4217",
        ),
        (
            with(&|v| v["amount"]["units"] = json!(978)),
            StatusCode::BAD_REQUEST,
            "amount.units: invalid type",
        ),
        (
            with(&|v| v["logicalResource"][0]["id"] = json!("+34-abc")),
            StatusCode::BAD_REQUEST,
            "logicalResource[0].id: ",
        ),
        (
            with(&|v| v["logicalResource"] = json!("34671999000")),
            StatusCode::BAD_REQUEST,
            "logicalResource: expected an object or an array",
        ),
        (
            with(&|v| {
                v.as_object_mut().unwrap().remove("logicalResource");
            }),
            StatusCode::BAD_REQUEST,
            "logicalResource: required",
        ),
        (
            with(&|v| v["usageType"] = json!("data")),
            StatusCode::NOT_IMPLEMENTED,
            "usageType: ",
        ),
        (
            with(&|v| v["voucher"] = json!("V-123")),
            StatusCode::NOT_IMPLEMENTED,
            "voucher: ",
        ),
        (
            with(&|v| v["isAutoTopup"] = json!("yes")),
            StatusCode::BAD_REQUEST,
            "isAutoTopup: invalid type",
        ),
        (
            with(&|v| v["description"] = json!("a\u{0}b")),
            StatusCode::BAD_REQUEST,
            "description: ",
        ),
        (
            with(&|v| v["channel"] = json!("web")),
            StatusCode::BAD_REQUEST,
            "channel: expected an object",
        ),
    ];
    for (body, status, want) in &cases {
        let r = w
            .send(
                Method::POST,
                TOPUPS,
                &[
                    (shop().0, shop().1.as_str()),
                    ("content-type", "application/json"),
                ],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, *status, "{body}: {:?}", r.body);
        let (_, msg) = r.error();
        assert!(msg.starts_with(want), "{body}: {msg}");
    }
    // Media type, size, authentication, policy.
    let r = w
        .send(
            Method::POST,
            TOPUPS,
            &[
                (shop().0, shop().1.as_str()),
                ("content-type", "text/plain"),
            ],
            good.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error().0, "UNSUPPORTED_MEDIA_TYPE");
    let mut big = good.clone();
    big["description"] = json!("x".repeat(10_000));
    let r = w.post(&shop(), &[], &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.error();
    for auth in [basic("shop", "wrong"), key("k-nobody")] {
        let r = w.post(&auth, &[], &good).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.error().0, "UNAUTHENTICATED");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"tmf654\""));
    }
    let r = w.send(Method::GET, TOPUPS, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w.post(&key("k-kiosk"), &[], &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (code, msg) = r.error();
    assert_eq!(code, "PERMISSION_DENIED");
    assert!(msg.contains("topup-balance"), "{msg}");
    let r = w
        .post(&key("k-small"), &[], &topup(json!("20.01"), "34671999000"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().1.contains("20.01 EUR"));
    let mut gbp = good.clone();
    gbp["amount"]["units"] = json!("GBP");
    let r = w.post(&key("k-small"), &[], &gbp).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .post(&shop(), &[("idempotency-key", "bad key")], &good)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().1.starts_with("Idempotency-Key: "));
    // Unknown ids and queries.
    let r = w.get(&format!("{TOPUPS}/tp-nope"), &shop()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error();
    for q in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "limit=x",
        "status=done",
        "color=red",
        "limit=1&limit=2",
    ] {
        let r = w.get(&format!("{TOPUPS}?{q}"), &shop()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        r.error();
    }
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert!(w.sim().journal().is_empty(), "nothing reached the OCS");
}

#[tokio::test]
async fn listing_pages_newest_first_per_application() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        let r = w
            .post(
                &shop(),
                &[("idempotency-key", &format!("list-{i}"))],
                &topup(json!(i), "34671999000"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
        // Distinct creation times, so that the order is the creation order.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let r = w.get(&format!("{TOPUPS}?offset=1&limit=2"), &shop()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-total-count"), Some("5"));
    assert_eq!(r.header("x-result-count"), Some("2"));
    let page: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page, [ids[3].clone(), ids[2].clone()]);
    let r = w
        .get(&format!("{TOPUPS}?fields=amount,status&limit=1"), &shop())
        .await;
    let first = &r.json()[0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["id", "href", "amount", "status", "@type"]);
    assert_eq!(first["amount"]["amount"], num("5.00"));
    let r = w
        .get(&format!("{TOPUPS}?status=completed&offset=4"), &shop())
        .await;
    assert_eq!(
        (r.header("x-total-count"), r.header("x-result-count")),
        (Some("5"), Some("1"))
    );
    let r = w.get(&format!("{TOPUPS}?status=cancelled"), &shop()).await;
    assert_eq!(r.json(), json!([]));
    let r = w.get(TOPUPS, &key("k-other")).await;
    assert_eq!(
        (r.status, r.header("x-total-count")),
        (StatusCode::OK, Some("0"))
    );
    assert_eq!(w.balance(ALICE), d("115.00"));
}

#[tokio::test]
async fn the_bucket_tells_sufficiency_and_the_gateway_ledger_never_a_number() {
    let w = world().await;
    let b = w
        .get(
            &format!("{BUCKETS}?logicalResource.value=%2B34600000001&amount=5.00&units=EUR"),
            &shop(),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{:?}", b.body);
    assert_eq!(b.header("x-total-count"), Some("1"));
    let v = &b.json()[0];
    assert_eq!(v["id"], "msisdn-34600000001");
    assert_eq!(v["balanceCheck"]["result"], "ENOUGH_CREDIT");
    assert_eq!(v["balanceCheck"]["sufficient"], true);
    assert!(v.get("remainingValue").is_none(), "no invented number: {v}");
    assert_eq!(v["topupLedger"], json!({"total": [], "count": 0}));
    let b = w
        .get(
            &format!("{BUCKETS}/msisdn-34600000001?amount=5.01&units=EUR"),
            &shop(),
        )
        .await;
    assert_eq!(b.json()["balanceCheck"]["result"], "NO_CREDIT");
    assert_eq!(b.json()["balanceCheck"]["sufficient"], false);
    // Top-ups through the gateway show in its ledger (this application's), and a bucket id
    // names the subscriber of a top-up.
    for amount in ["2.50", "1.25"] {
        let r = w
            .post(&shop(), &[], &json!({"amount": {"amount": amount, "units": "EUR"}, "bucket": {"id": "msisdn-34600000001"}}))
            .await;
        assert_eq!(r.json()["status"], "completed", "{:?}", r.body);
    }
    let b = w
        .get(
            &format!("{BUCKETS}/msisdn-34600000001?amount=8.75&units=EUR"),
            &shop(),
        )
        .await;
    let v = b.json();
    assert_eq!(v["balanceCheck"]["result"], "ENOUGH_CREDIT");
    assert_eq!(
        v["topupLedger"],
        json!({"total": [{"amount": num("3.75"), "units": "EUR"}], "count": 2})
    );
    let b = w
        .get(&format!("{BUCKETS}/msisdn-34600000001"), &key("k-other"))
        .await;
    assert_eq!(b.json()["topupLedger"]["count"], 0);
    assert!(b.json().get("balanceCheck").is_none(), "no amount, no CCR");
    // A balance query moves nothing.
    assert_eq!(w.balance(BOB), d("8.75"));
    // Unknown subscriber, bad ids and parameters.
    let b = w
        .get(
            &format!("{BUCKETS}/msisdn-34999999999?amount=1&units=EUR"),
            &shop(),
        )
        .await;
    assert_eq!(b.status, StatusCode::NOT_FOUND);
    assert_eq!(b.error().0, "5030");
    for (path, status) in [
        (format!("{BUCKETS}/b-1"), StatusCode::NOT_FOUND),
        (BUCKETS.to_string(), StatusCode::BAD_REQUEST),
        (
            format!("{BUCKETS}?logicalResource.value=abc"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{BUCKETS}/msisdn-34600000001?amount=1"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{BUCKETS}/msisdn-34600000001?units=EUR"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{BUCKETS}/msisdn-34600000001?amount=0&units=EUR"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{BUCKETS}/msisdn-34600000001?amount=1&units=XXX1"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let b = w.get(&path, &shop()).await;
        assert_eq!(b.status, status, "{path}");
        b.error();
    }
    // The kiosk may query (query-balance) but not top up.
    let b = w
        .get(
            &format!("{BUCKETS}/msisdn-34600000001?amount=1&units=EUR"),
            &key("k-kiosk"),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK);
    let b = w.get(TOPUPS, &key("k-kiosk")).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_balance_query_without_an_ocs_is_503() {
    let w = world_with(false, Duration::from_millis(300)).await;
    let b = w
        .get(
            &format!("{BUCKETS}/msisdn-34600000001?amount=1&units=EUR"),
            &shop(),
        )
        .await;
    assert_eq!(b.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b.error().0, "UNAVAILABLE");
    assert_eq!(b.header("retry-after"), Some("1"));
}

// ---- automatic top-ups ----------------------------------------------------------------------------

fn monthly(start: &str, periods: Option<u32>) -> Value {
    let mut v = topup(json!(10), "34671999000");
    v["isAutoTopup"] = json!(true);
    v["recurringPeriod"] = json!("monthly");
    v["validFor"] = json!({"startDateTime": start});
    if let Some(n) = periods {
        v["numberOfPeriods"] = json!(n);
    }
    v
}

#[tokio::test]
async fn a_monthly_top_up_from_31_january_runs_each_period_once_then_completes() {
    let w = world().await;
    let jan31 = datetime!(2025-01-31 10:00 UTC);
    let clock = Arc::new(ManualClock::new(jan31));
    let topups = Topups::new(Arc::clone(&w.charging));
    let created = topups
        .create(
            "shop",
            Some("auto-1"),
            new_topup(monthly("2025-01-31T10:00:00Z", Some(3)), jan31),
            jan31,
        )
        .await
        .unwrap();
    let parent = created.record.view.id.clone();
    // Period 1 is due at once: run by the create itself.
    assert_eq!(created.record.view.status.name(), "created");
    assert_eq!(created.record.view.balance_topup.len(), 1);
    assert_eq!(w.balance(ALICE), d("110.00"));
    let s = w.scheduler(&clock);
    for (at, periods, balance) in [
        (datetime!(2025-02-28 09:59 UTC), 0, "110.00"),
        (datetime!(2025-02-28 10:00 UTC), 1, "120.00"),
        (datetime!(2025-02-28 10:00 UTC), 0, "120.00"),
        (datetime!(2025-03-30 23:00 UTC), 0, "120.00"),
        (datetime!(2025-03-31 10:00 UTC), 1, "130.00"),
        (datetime!(2025-04-30 10:00 UTC), 0, "130.00"),
        (datetime!(2026-01-31 10:00 UTC), 0, "130.00"),
    ] {
        clock.set(at);
        let pass = s.tick().await;
        assert_eq!(pass.periods, periods, "at {at}");
        assert_eq!(w.balance(ALICE), d(balance), "at {at}");
    }
    assert_eq!(w.refunds(), 3, "numberOfPeriods = 3");
    let g = w.get(&format!("{TOPUPS}/{parent}"), &shop()).await.json();
    assert_eq!(g["status"], "completed");
    assert_eq!(g["isAutoTopup"], true);
    assert_eq!(g["recurringPeriod"], "monthly");
    assert_eq!(g["numberOfPeriods"], 3);
    let children: Vec<String> = g["balanceTopup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["role"], "child");
            c["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        children,
        [
            format!("{parent}-p1"),
            format!("{parent}-p2"),
            format!("{parent}-p3")
        ]
    );
    // Each run is a top-up of its own, linked to its parent, requested at its due date.
    let mut dates = Vec::new();
    for c in &children {
        let v = w.get(&format!("{TOPUPS}/{c}"), &shop()).await.json();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["isAutoTopup"], false);
        assert_eq!(
            v["balanceTopup"],
            json!([{"id": parent, "href": format!("{TOPUPS}/{parent}"), "role": "parent"}])
        );
        dates.push(v["requestedDate"].as_str().unwrap().to_string());
    }
    assert_eq!(
        dates,
        [
            "2025-01-31T10:00:00.000Z",
            "2025-02-28T10:00:00.000Z",
            "2025-03-31T10:00:00.000Z"
        ]
    );
    // Nothing is due any more.
    assert_eq!(s.tick().await.due, 0);
}

#[tokio::test]
async fn across_a_restart_each_period_tops_up_once_and_downtime_is_caught_up_once() {
    let mut w = world().await;
    let start = datetime!(2025-01-31 10:00 UTC);
    let topups = Topups::new(Arc::clone(&w.charging));
    let created = topups
        .create(
            "shop",
            None,
            new_topup(monthly("2025-01-31T10:00:00Z", None), start),
            start,
        )
        .await
        .unwrap();
    let parent = created.record.view.id.clone();
    drop(topups);
    assert_eq!(w.balance(ALICE), d("110.00"));
    // The process stops right after period 2's CCR went out and was applied, before any
    // record of the run: what the dead process did, with the key it derives from (P, 2).
    let child = format!("{parent}-p2");
    let sub = SubscriptionId::parse("tel:+34671999000").unwrap();
    let r = w
        .charging
        .refund(
            &Key::new("shop", Some(&charging_key(&child))),
            &sub,
            &sub.key(),
            Money::new(d("10.00"), currency("EUR").unwrap()),
            &ChargeInfo {
                description: None,
                code: None,
                reference_code: Some(child.clone()),
                merchant: None,
            },
            None,
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(w.balance(ALICE), d("120.00"));
    w.restart().await;
    let clock = Arc::new(ManualClock::new(datetime!(2025-02-28 10:00 UTC)));
    let s = w.scheduler(&clock);
    let pass = s.tick().await;
    assert_eq!(pass.periods, 1);
    // Period 2 recorded as completed from the charging record: the OCS saw one top-up.
    assert_eq!(w.balance(ALICE), d("120.00"));
    assert_eq!(w.refunds(), 2);
    let v = w.get(&format!("{TOPUPS}/{child}"), &shop()).await.json();
    assert_eq!(v["status"], "completed");
    // Down from March to the end of June: periods 3 (31 Mar), 4 (30 Apr), 5 (31 May) and
    // 6 (30 Jun) each run once, in order; repeated passes run nothing more.
    w.restart().await;
    clock.set(datetime!(2025-06-30 12:00 UTC));
    let s = w.scheduler(&clock);
    assert_eq!(s.tick().await.periods, 4);
    assert_eq!(s.tick().await.periods, 0);
    assert_eq!(w.balance(ALICE), d("160.00"));
    assert_eq!(w.refunds(), 6);
    let g = w.get(&format!("{TOPUPS}/{parent}"), &shop()).await.json();
    assert_eq!(g["status"], "created", "unlimited: still running");
    assert_eq!(g["balanceTopup"].as_array().unwrap().len(), 6);
    let mut dates = Vec::new();
    for n in 3..=6 {
        let v = w
            .get(&format!("{TOPUPS}/{parent}-p{n}"), &shop())
            .await
            .json();
        dates.push(v["requestedDate"].as_str().unwrap().to_string());
    }
    assert_eq!(
        dates,
        [
            "2025-03-31T10:00:00.000Z",
            "2025-04-30T10:00:00.000Z",
            "2025-05-31T10:00:00.000Z",
            "2025-06-30T10:00:00.000Z"
        ]
    );
}

#[tokio::test]
async fn cancelling_stops_future_periods() {
    let w = world().await;
    let now = OffsetDateTime::now_utc();
    // Weekly from now: the first period runs with the request.
    let mut body = topup(json!(1), "34671999000");
    body["isAutoTopup"] = json!(true);
    body["recurringPeriod"] = json!("weekly");
    let r = w
        .post(&shop(), &[("idempotency-key", "weekly-1")], &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "created");
    assert_eq!(v["balanceTopup"][0]["role"], "child");
    let href = v["href"].as_str().unwrap().to_string();
    assert_eq!(w.balance(ALICE), d("101.00"));
    let patch = |body: Value| {
        let auth = shop();
        let w = &w;
        let href = href.clone();
        async move {
            w.send(
                Method::PATCH,
                &href,
                &[
                    (auth.0, auth.1.as_str()),
                    ("content-type", "application/merge-patch+json"),
                ],
                body.to_string(),
            )
            .await
        }
    };
    for (b, want) in [
        (json!({"status": "completed"}), "status: "),
        (json!({}), "status: required"),
        (
            json!({"status": "cancelled", "amount": {"amount": 2}}),
            "amount: cannot be changed",
        ),
    ] {
        let r = patch(b.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}");
        assert!(r.error().1.starts_with(want), "{b}");
    }
    let r = patch(json!({"status": "cancelled"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    let r = patch(json!({"status": "cancelled"})).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    // A month later nothing ran.
    let clock = Arc::new(ManualClock::new(now + time::Duration::days(31)));
    assert_eq!(w.scheduler(&clock).tick().await.periods, 0);
    assert_eq!(w.balance(ALICE), d("101.00"));
    // DELETE: the same for another automatic top-up; 204.
    let r = w
        .post(&shop(), &[("idempotency-key", "weekly-2")], &body)
        .await;
    let href2 = r.json()["href"].as_str().unwrap().to_string();
    let del = w
        .send(
            Method::DELETE,
            &href2,
            &[(shop().0, shop().1.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(w.get(&href2, &shop()).await.json()["status"], "cancelled");
    assert_eq!(w.scheduler(&clock).tick().await.periods, 0);
    assert_eq!(w.balance(ALICE), d("102.00"));
    // A one-time top-up, or a run, cannot be cancelled; unknown ids are 404.
    let one = w
        .post(&shop(), &[], &topup(json!(1), "34671999000"))
        .await
        .json();
    let del = w
        .send(
            Method::DELETE,
            one["href"].as_str().unwrap(),
            &[(shop().0, shop().1.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::CONFLICT);
    assert_eq!(del.error().0, "INVALID_STATE");
    let run = format!("{href}-p1");
    let del = w
        .send(
            Method::DELETE,
            &run,
            &[(shop().0, shop().1.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::CONFLICT);
    let del = w
        .send(
            Method::DELETE,
            &format!("{TOPUPS}/tp-nope"),
            &[(shop().0, shop().1.as_str())],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_period_without_an_answer_is_resolved_and_the_schedule_goes_on() {
    let w = world_with(true, Duration::from_millis(300)).await;
    let start = datetime!(2025-03-01 00:30 +02:00);
    let topups = Topups::new(Arc::clone(&w.charging));
    let mut body = monthly("2025-03-01T00:30:00+02:00", Some(2));
    body["recurringPeriod"] = json!("fortnightly");
    let created = topups
        .create("shop", None, new_topup(body, start), start)
        .await
        .unwrap();
    let parent = created.record.view.id.clone();
    assert_eq!(w.balance(ALICE), d("110.00"));
    // Period 2 (14 days later) finds the OCS silent: its run stays created (never
    // completed), and the parent is done with its periods.
    w.sim().set_faults(|f| f.silent = true);
    let clock = Arc::new(ManualClock::new(start + time::Duration::days(14)));
    let s = w.scheduler(&clock);
    assert_eq!(s.tick().await.periods, 1);
    let run = format!("{parent}-p2");
    let v = w.get(&format!("{TOPUPS}/{run}"), &shop()).await.json();
    assert_eq!(v["status"], "created");
    // Every period has run (its outcome pending): the schedule itself is complete.
    assert_eq!(
        w.get(&format!("{TOPUPS}/{parent}"), &shop()).await.json()["status"],
        "completed"
    );
    // The OCS answers again: later passes record the outcome (learnt by the charging
    // resolver with the T flag), and the parent completes.
    w.sim().clear_faults();
    let mut status = Value::Null;
    for _ in 0..200 {
        s.tick().await;
        status = w.get(&format!("{TOPUPS}/{run}"), &shop()).await.json()["status"].clone();
        if status != "created" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
    assert_eq!(w.balance(ALICE), d("120.00"));
    assert_eq!(w.refunds(), 2);
}

#[tokio::test]
async fn an_unknown_subscriber_stops_an_automatic_top_up() {
    let w = world().await;
    let mut body = topup(json!(1), "34999999999");
    body["isAutoTopup"] = json!(true);
    body["recurringPeriod"] = json!("weekly");
    let r = w.post(&shop(), &[], &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().0, "5030");
    let list = w
        .get(&format!("{TOPUPS}?status=failed"), &shop())
        .await
        .json();
    let parent = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["isAutoTopup"] == true)
        .unwrap();
    assert!(
        parent["reason"]
            .as_str()
            .unwrap()
            .contains("no further period runs"),
        "{parent}"
    );
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::now_utc() + time::Duration::days(8),
    ));
    assert_eq!(w.scheduler(&clock).tick().await.due, 0);
}

#[tokio::test]
async fn the_scheduler_task_runs_due_work_and_stops() {
    let w = world().await;
    let body = topup(json!(4), "34671999000");
    // A top-up left created with nothing sent (the process stopped before the CCR): the
    // running task sends it.
    let now = OffsetDateTime::now_utc();
    let new = new_topup(body, now);
    let rec = new.into_record("tp-left-over".into(), "shop", now);
    w.store
        .put_resource(crate::store::ResourceRow {
            id: rec.view.id.clone(),
            app: "shop".into(),
            kind: super::topups::KIND.into(),
            state: "created".into(),
            parent: None,
            due_ms: Some(to_ms(now)),
            body: serde_json::to_string(&rec).unwrap(),
            created_ms: to_ms(now),
            updated_ms: to_ms(now),
        })
        .await
        .unwrap();
    let handle = Scheduler::new(
        Arc::clone(&w.charging),
        SchedulerSettings {
            interval: Duration::from_millis(20),
            retry_window: Duration::from_secs(60),
            batch: 8,
        },
        Arc::new(super::schedule::SystemClock),
    )
    .spawn();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = w
            .get(&format!("{TOPUPS}/tp-left-over"), &shop())
            .await
            .json()["status"]
            .clone();
        if status != "created" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "completed");
    assert_eq!(w.balance(ALICE), d("104.00"));
    handle.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_family() {
    let doc = crate::api::openapi::document();
    let v: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
    for r in super::routes() {
        let item = &v["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(item.is_object(), "{} {}", r.method, r.path);
        for status in ["400", "401", "403", "404", "409", "500", "501"] {
            assert_eq!(
                item["responses"][status]["content"]["application/json;charset=utf-8"]["schema"]["$ref"],
                "#/components/schemas/TmfError",
                "{} {} {status}",
                r.method,
                r.path
            );
        }
        assert!(item["security"].is_array());
    }
    for name in [
        "TopupBalance",
        "TopupBalanceCreate",
        "Bucket",
        "TmfError",
        "Quantity",
    ] {
        assert!(v["components"]["schemas"][name].is_object(), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the body, no 5xx (with no OCS, a valid one is accepted as created), and every
    /// refusal is a TMF Error.
    #[test]
    fn no_body_gives_a_server_error(
        amount in prop_oneof![Just(json!(1)), Just(json!("0")), Just(json!(-1)), Just(json!("1.005")), Just(json!(null)), Just(json!([])), Just(json!("1e9")), Just(json!("abc"))],
        units in prop_oneof![Just(json!("EUR")), Just(json!("eur")), Just(json!(5)), Just(json!("JPY")), Just(json!(null))],
        lr in prop_oneof![Just(json!([{"id": "34671999000"}])), Just(json!({"value": "+34671999000"})), Just(json!([])), Just(json!("x")), Just(json!([{"value": 1}])), Just(json!(null))],
        auto in prop_oneof![Just(json!(null)), Just(json!(true)), Just(json!(false)), Just(json!(1))],
        period in prop_oneof![Just(json!(null)), Just(json!("weekly")), Just(json!("yearly"))],
        raw in ".{0,40}",
        use_raw in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = world_with(false, Duration::from_millis(100)).await;
            let body = if use_raw {
                raw.clone()
            } else {
                json!({"amount": {"amount": amount, "units": units}, "logicalResource": lr, "isAutoTopup": auto, "recurringPeriod": period}).to_string()
            };
            let r = w.send(Method::POST, TOPUPS, &[(shop().0, shop().1.as_str()), ("content-type", "application/json")], body.clone()).await;
            assert!(!r.status.is_server_error() || r.status == StatusCode::NOT_IMPLEMENTED, "{body}: {} {:?}", r.status, r.body);
            if r.status == StatusCode::CREATED {
                assert_eq!(r.json()["status"], "created");
            } else {
                r.error();
            }
        });
    }
}

mod hub;
