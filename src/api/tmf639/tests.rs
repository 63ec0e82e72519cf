//! TMF639 through `router(state).oneshot(request)` on the real router over a memory store
//! (no OCS: the inventory needs none). Outcomes are read back from the store.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::{Extension, Router};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::Settings;
use crate::api::{ApiState, Apps, router};
use crate::charging::{Charging, ChargingSettings};
use crate::config::{AppConfig, HttpConfig};
use crate::credit_control::{
    CcConfig, CcFailureHandling, CreditControlClient, DdFailureHandling, StyleChoice, StyleConfig,
    money::currency,
};
use crate::diameter::codec::Limits;
use crate::diameter::dict::Dictionary;
use crate::diameter::node::{Node, NodeConfig};
use crate::diameter::peer::{LocalIdentity, PeerSettings};
use crate::diameter::router::{NoApplications, RouterSettings};
use crate::store::{InventoryStatus, Store};

const RESOURCES: &str = "/tmf-api/resourceInventoryManagement/v4/resource";

fn dict() -> Arc<Dictionary> {
    static D: OnceLock<Arc<Dictionary>> = OnceLock::new();
    D.get_or_init(|| Arc::new(Dictionary::builtin().unwrap()))
        .clone()
}

fn app(id: &str, key: &str, admin: bool) -> AppConfig {
    AppConfig {
        id: id.into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: key.into(),
        allowed_currencies: vec![],
        max_amount: None,
        allowed_operations: vec![],
        admin,
        oidc_client_id: String::new(),
    }
}

struct World {
    _node: Node,
    store: Store,
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
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

const POOL: &str = "category,value,portedIn,tier\n\
    MSISDN,34600100001,,standard\nMSISDN,34600100002,,standard\nMSISDN,34600100003,,\n\
    MSISDN,34600777777,,gold\nMSISDN,34600177700,,silver\nMSISDN,34600100004,,\n\
    MSISDN,34600100005,,\nMSISDN,34600100006,,\nMSISDN,34600200001,true,\n\
    ICCID,8934070000000000015,,\n";

async fn world(settings: Settings) -> World {
    let node = Node::start(
        NodeConfig {
            local: LocalIdentity {
                origin_host: "gw.charging.local".into(),
                origin_realm: "charging.local".into(),
                host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                vendor_id: 0,
                product_name: "tmf639-test".into(),
                firmware_revision: 1,
                origin_state_id: 1,
                auth_application_ids: vec![4],
                acct_application_ids: vec![],
                vendor_specific_auth_apps: vec![],
                supported_vendor_ids: vec![10415],
            },
            listen: None,
            accept_unknown_peers: false,
            peers: vec![],
            peer_settings: PeerSettings::default(),
            router: RouterSettings {
                request_timeout: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(1),
        },
        dict(),
        Arc::new(NoApplications),
    )
    .await
    .unwrap();
    let cc = CcConfig {
        service_context_id: "payment.v1@charging.local".into(),
        destination_realm: "charging.local".into(),
        destination_host: None,
        style: StyleConfig::both(StyleChoice::Mscc),
        default_currency: currency("EUR").unwrap(),
        ccfh: CcFailureHandling::Terminate,
        ddfh: DdFailureHandling::TerminateOrBuffer,
        tx: Duration::from_secs(1),
        service_identifier: None,
        rating_group: None,
        extra_avps: Vec::new(),
        max_sessions: 10,
        reservation_ttl: Duration::from_secs(3600),
        resolve_interval: Duration::from_millis(100),
        resolve_attempts: 2,
    };
    let store = Store::memory();
    let rows = super::import::parse_csv("pool", POOL, crate::store::now_ms()).unwrap();
    store.import_inventory(rows).await.unwrap();
    let client = CreditControlClient::new(node.router().clone(), cc, None);
    let charging = Charging::start(client, store.clone(), None, ChargingSettings::default())
        .await
        .unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let apps = vec![
        app("shop", "k-shop", false),
        app("other", "k-other", false),
        app("ops", "k-ops", true),
    ];
    let state = ApiState::new(
        Arc::clone(&charging),
        Arc::new(Apps::new(&apps)),
        Arc::new(move || ready.load(std::sync::atomic::Ordering::SeqCst)),
        None,
    );
    let router = router(state, &HttpConfig::default()).layer(Extension(settings));
    World {
        _node: node,
        store,
        router,
    }
}

fn seeded(seed: u64) -> Settings {
    Settings {
        seed: Some(seed),
        ..Settings::default()
    }
}

impl World {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/merge-patch+json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Some("k-shop"), None).await
    }

    async fn patch(&self, id: &str, key: &str, body: Value) -> Resp {
        self.call(
            Method::PATCH,
            &format!("{RESOURCES}/{id}"),
            Some(key),
            Some(body),
        )
        .await
    }
}

fn values(r: &Resp) -> Vec<String> {
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap().to_string())
        .collect()
}

fn reserve(cart: &str) -> Value {
    json!({"resourceStatus": "reserved", "relatedParty": [{"id": cart, "role": "reservedFor"}]})
}

fn release(cart: &str) -> Value {
    json!({"resourceStatus": "available", "relatedParty": [{"id": cart}]})
}

#[tokio::test]
async fn listing_available_numbers_in_a_seeded_random_order() {
    let w = world(seeded(7)).await;
    let uri = format!("{RESOURCES}?category=MSISDN&limit=100");
    let a = w.get(&uri).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.headers["x-total-count"], "8");
    assert_eq!(a.headers["x-result-count"], "8");
    let first = values(&a);
    // The ported-in number is not offered; every available one is, once.
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "34600100001",
            "34600100002",
            "34600100003",
            "34600100004",
            "34600100005",
            "34600100006",
            "34600177700",
            "34600777777"
        ]
    );
    assert_ne!(first, sorted, "not shuffled");
    // The same seed: the same order. Another: another order.
    assert_eq!(values(&w.get(&uri).await), first);
    let w2 = world(seeded(8)).await;
    assert_ne!(values(&w2.get(&uri).await), first);
    // A page of the shuffled list.
    let page = w
        .get(&format!("{RESOURCES}?category=MSISDN&limit=3&offset=2"))
        .await;
    assert_eq!(values(&page), first[2..5]);
    assert_eq!(page.headers["x-total-count"], "8");
    // One resource rendered.
    let r = &a.json()[0];
    assert_eq!(r["resourceStatus"], "available");
    assert_eq!(r["usageState"], "idle");
    assert_eq!(r["@type"], "LogicalResource");
    assert_eq!(
        r["href"],
        format!("{RESOURCES}/msisdn-{}", r["value"].as_str().unwrap())
    );
    // Without a seed (the default settings) the order is random, the set the same.
    let w3 = world(Settings::default()).await;
    let mut any = values(&w3.get(&uri).await);
    any.sort();
    assert_eq!(any, sorted);
}

#[tokio::test]
async fn vanity_patterns_categories_statuses_and_fields() {
    let w = world(seeded(1)).await;
    let mut v = values(&w.get(&format!("{RESOURCES}?value=*777*")).await);
    v.sort();
    assert_eq!(v, ["34600177700", "34600777777"]);
    assert_eq!(
        values(&w.get(&format!("{RESOURCES}?value=%2B346007777??")).await),
        ["34600777777"]
    );
    assert_eq!(
        values(&w.get(&format!("{RESOURCES}?category=ICCID")).await),
        ["8934070000000000015"]
    );
    let sims = w.get(&format!("{RESOURCES}?category=SIM")).await.json();
    assert_eq!(sims[0]["@type"], "PhysicalResource");
    let ported = w
        .get(&format!("{RESOURCES}?resourceStatus=portingIn"))
        .await
        .json();
    assert_eq!(ported[0]["value"], "34600200001");
    assert_eq!(ported[0]["resourceStatus"], "standby");
    assert_eq!(ported[0]["administrativeState"], "locked");
    let chars = ported[0]["resourceCharacteristic"].as_array().unwrap();
    assert!(chars.contains(&json!({"name": "portedIn", "value": "true"})));
    assert!(chars.contains(&json!({"name": "inventoryState", "value": "portingIn"})));
    let slim = w
        .get(&format!("{RESOURCES}?value=34600777777&fields=value"))
        .await
        .json();
    let keys: Vec<&String> = slim[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "href", "value", "@type"]);
    let gold = w.get(&format!("{RESOURCES}/msisdn-34600777777")).await;
    assert_eq!(gold.status, StatusCode::OK);
    assert!(
        gold.json()["resourceCharacteristic"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "tier", "value": "gold"}))
    );
}

#[tokio::test]
async fn bad_input_is_a_tmf_error_naming_the_field() {
    let w = world(seeded(1)).await;
    for (uri, field) in [
        (format!("{RESOURCES}?category=IMSI"), "category"),
        (format!("{RESOURCES}?resourceStatus=free"), "resourceStatus"),
        (format!("{RESOURCES}?value=77a"), "value"),
        (format!("{RESOURCES}?limit=0"), "limit"),
        (format!("{RESOURCES}?limit=101"), "limit"),
        (format!("{RESOURCES}?offset=-1"), "offset"),
        (format!("{RESOURCES}?colour=red"), "colour"),
        (format!("{RESOURCES}?limit=1&limit=2"), "limit"),
    ] {
        let r = w.get(&uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let e = r.json();
        assert_eq!(e["@type"], "Error");
        assert_eq!(e["code"], "INVALID_ARGUMENT");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{uri}: {e}"
        );
    }
    let id = "msisdn-34600100001";
    for (body, field) in [
        (json!({"resourceStatus": "reserved"}), "relatedParty"),
        (
            json!({"resourceStatus": "reserved", "relatedParty": []}),
            "relatedParty",
        ),
        (
            json!({"resourceStatus": "reserved", "relatedParty": [{"id": "a/b"}]}),
            "relatedParty[0].id",
        ),
        (
            json!({"resourceStatus": "reserved", "relatedParty": [{"id": 7}]}),
            "relatedParty[0].id",
        ),
        (
            json!({"resourceStatus": "suspended", "relatedParty": [{"id": "c"}]}),
            "resourceStatus",
        ),
        (
            json!({"usageState": "busy", "relatedParty": [{"id": "c"}]}),
            "usageState",
        ),
        (json!({"value": "34699999999"}), "value"),
        (json!({}), "resourceStatus"),
    ] {
        let r = w.patch(id, "k-shop", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let m = r.json()["message"].as_str().unwrap().to_string();
        assert!(m.starts_with(&format!("{field}: ")), "{body}: {m}");
    }
    // Nothing was held by any of them.
    let row = w.store.inventory(id).await.unwrap().unwrap();
    assert_eq!(row.status, InventoryStatus::Available);
    // Unknown resources, no credentials.
    assert_eq!(
        w.get(&format!("{RESOURCES}/msisdn-1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.get(&format!("{RESOURCES}/a%20b")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.patch("msisdn-1", "k-shop", reserve("c")).await.status,
        StatusCode::NOT_FOUND
    );
    let anon = w.call(Method::GET, RESOURCES, None, None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.json()["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn reserve_conflict_release_and_assign() {
    let w = world(seeded(1)).await;
    let id = "msisdn-34600777777";
    let r = w.patch(id, "k-shop", reserve("cart-1")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    assert_eq!(body["resourceStatus"], "reserved");
    assert_eq!(
        body["relatedParty"],
        json!([{"id": "cart-1", "role": "reservedFor", "@referredType": "ShoppingCart"}])
    );
    assert!(
        body["note"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("held until ")
    );
    let row = w.store.inventory(id).await.unwrap().unwrap();
    assert_eq!(row.status, InventoryStatus::Reserved);
    assert_eq!(row.holder.as_deref(), Some("shop/cart-1"));
    let hold = row.hold_until_ms.unwrap() - crate::store::now_ms();
    assert!((14 * 60_000..=15 * 60_000).contains(&hold), "{hold}");
    // No longer offered; another cart (of this app or another) gets 409.
    let offered = values(&w.get(&format!("{RESOURCES}?value=*777*")).await);
    assert_eq!(offered, ["34600177700"]);
    let r = w.patch(id, "k-shop", reserve("cart-2")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["code"], "CONFLICT");
    let r = w.patch(id, "k-other", reserve("cart-1")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Another application sees it held, not by whom.
    let seen = w
        .call(
            Method::GET,
            &format!("{RESOURCES}/{id}"),
            Some("k-other"),
            None,
        )
        .await;
    assert_eq!(seen.json()["resourceStatus"], "reserved");
    assert!(seen.json().get("relatedParty").is_none());
    // An administrator sees whose cart it is.
    let seen = w
        .call(
            Method::GET,
            &format!("{RESOURCES}/{id}"),
            Some("k-ops"),
            None,
        )
        .await;
    assert_eq!(seen.json()["relatedParty"][0]["id"], "shop/cart-1");
    // The same cart again: renewed (200). Release by another cart: 409; by the holder: 200.
    assert_eq!(
        w.patch(id, "k-shop", reserve("cart-1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.patch(id, "k-shop", release("cart-2")).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        w.patch(id, "k-other", release("cart-1")).await.status,
        StatusCode::CONFLICT
    );
    let r = w.patch(id, "k-shop", release("cart-1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["resourceStatus"], "available");
    assert_eq!(w.store.inventory(id).await.unwrap().unwrap().holder, None);
    // Releasing what is free: nothing to do, 200.
    assert_eq!(
        w.patch(id, "k-shop", release("cart-1")).await.status,
        StatusCode::OK
    );
    // A cart named by a note.
    let r = w
        .patch(
            id,
            "k-other",
            json!({"resourceStatus": "reserved", "note": [{"text": "cart-9"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Assignment: administrators only, of the cart's hold.
    let assign = json!({"usageState": "active", "relatedParty": [{"id": "cart-9"}]});
    let r = w.patch(id, "k-other", assign.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .patch(
            id,
            "k-ops",
            json!({"usageState": "active", "relatedParty": [{"id": "cart-8"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = w.patch(id, "k-ops", assign.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["usageState"], "active");
    assert_eq!(r.json()["relatedParty"][0]["role"], "owner");
    let row = w.store.inventory(id).await.unwrap().unwrap();
    assert_eq!(row.status, InventoryStatus::Assigned);
    assert_eq!(row.holder.as_deref(), Some("other/cart-9"));
    // Assigned: not reserved, not released by anyone.
    assert_eq!(
        w.patch(id, "k-shop", reserve("cart-1")).await.json()["code"],
        "INVALID_STATE"
    );
    assert_eq!(
        w.patch(id, "k-other", release("cart-9")).await.status,
        StatusCode::CONFLICT
    );
    // The function the checkout calls: the same rule.
    assert!(
        w.patch("msisdn-34600100001", "k-shop", reserve("cart-3"))
            .await
            .status
            .is_success()
    );
    assert!(
        !super::assign(&w.store, "shop", "cart-4", "order-4", "msisdn-34600100001")
            .await
            .unwrap()
    );
    assert!(
        super::assign(&w.store, "shop", "cart-3", "order-3", "msisdn-34600100001")
            .await
            .unwrap()
    );
    // Now the order's: shown as its owner, and the cart can no longer give it back.
    let got = w
        .store
        .inventory("msisdn-34600100001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.holder.as_deref(), Some("shop/order-3"));
    assert!(
        super::assign(&w.store, "shop", "cart-3", "order-3", "msisdn-34600100001")
            .await
            .unwrap()
    );
    // A ported-in number: portingIn -> active by an administrator; never reserved.
    let p = "msisdn-34600200001";
    assert_eq!(
        w.patch(p, "k-shop", reserve("cart-1")).await.status,
        StatusCode::CONFLICT
    );
    let r = w
        .patch(
            p,
            "k-ops",
            json!({"usageState": "active", "relatedParty": [{"id": "order-7"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["resourceStatus"], "available");
    assert_eq!(r.json()["administrativeState"], "unlocked");
    assert_eq!(
        w.store.inventory(p).await.unwrap().unwrap().status,
        InventoryStatus::Active
    );
}

#[tokio::test]
async fn an_expired_hold_lets_another_cart_take_it() {
    let w = world(Settings {
        hold: Duration::from_millis(300),
        seed: Some(1),
    })
    .await;
    let id = "msisdn-34600100002";
    assert_eq!(
        w.patch(id, "k-shop", reserve("cart-1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        w.patch(id, "k-other", reserve("cart-2")).await.status,
        StatusCode::CONFLICT
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Listed as available again, and taken by the other cart.
    let r = w.get(&format!("{RESOURCES}/{id}")).await.json();
    assert_eq!(r["resourceStatus"], "available");
    assert_eq!(
        w.patch(id, "k-other", reserve("cart-2")).await.status,
        StatusCode::OK
    );
    let row = w.store.inventory(id).await.unwrap().unwrap();
    assert_eq!(row.holder.as_deref(), Some("other/cart-2"));
    // The first cart lost it: its release is refused.
    assert_eq!(
        w.patch(id, "k-shop", release("cart-1")).await.status,
        StatusCode::CONFLICT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_carts_racing_through_the_api_for_one_number() {
    let w = Arc::new(world(seeded(1)).await);
    let id = "msisdn-34600100003";
    let mut tasks = Vec::new();
    for i in 0..200 {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            w.patch(id, "k-shop", reserve(&format!("cart-{i}")))
                .await
                .status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(ok, 1);
}
