//! The order pipeline on the real path: the OCS simulator over TCP, the credit-control
//! client, `Charging` over a memory store, the demo catalog and inventory. Balances are read
//! from the simulator's books, numbers from the store.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::pipeline::{OrderState, Pipeline, StepState};
use crate::api::tmf663::model::{self as cart, CartDoc, Chosen};
use crate::api::{ApiState, Apps, router};
use crate::config::orders::OrdersConfig;
use crate::config::{AppConfig, HttpConfig};
use crate::store::{InventoryStatus, now_ms};

const RICH: &str = "+34671999000";
const POOR: &str = "+34600000001";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

struct World {
    gw: crate::gateway::Gateway,
    state: ApiState,
    pipeline: Pipeline,
    router: axum::Router,
}

async fn world() -> World {
    let accounts = vec![
        (format!("tel:{RICH}"), d("100.00"), "EUR"),
        (format!("tel:{POOR}"), d("1.00"), "EUR"),
    ];
    let gw = crate::gateway::testing::start(crate::gateway::testing::TestGateway {
        accounts: Some(accounts.as_slice()),
        tx: Duration::from_secs(5),
        reservation_ttl: Duration::from_secs(3600),
        reaper_interval: Duration::from_secs(3600),
        store: None,
    })
    .await;
    let store = gw.charging.store().clone();
    let catalog = std::fs::read("conf/catalog/demo.json").unwrap();
    crate::api::tmf620::catalog::import(
        &store,
        &catalog,
        crate::api::tmf620::catalog::Mode::Replace,
        now_ms(),
    )
    .await
    .unwrap();
    let csv = std::fs::read_to_string("conf/inventory/demo.csv").unwrap();
    let rows = crate::api::tmf639::import::parse_csv("demo.csv", &csv, now_ms()).unwrap();
    store.import_inventory(rows).await.unwrap();
    let app = AppConfig {
        id: "shop".into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: "k-shop".into(),
        allowed_currencies: vec![],
        max_amount: None,
        allowed_operations: vec![],
        admin: false,
        oidc_client_id: String::new(),
    };
    // Mail by the demo's log sender: the order's notification is an outbox event.
    let mut notifications = crate::config::notifications::NotificationsConfig::default();
    notifications.smtp.log = true;
    let state = ApiState::new(
        Arc::clone(&gw.charging),
        Arc::new(Apps::new(&[app])),
        Arc::new(|| true),
        None,
    )
    .with_notifications(notifications);
    let cfg = OrdersConfig {
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        ..OrdersConfig::default()
    };
    let pipeline = Pipeline::new(state.clone(), cfg, Duration::from_secs(900));
    let router =
        router(state.clone(), &HttpConfig::default()).layer(axum::Extension(pipeline.clone()));
    World {
        gw,
        state,
        pipeline,
        router,
    }
}

impl World {
    fn balance(&self, who: &str) -> Decimal {
        let sim = self.gw.sim.as_ref().unwrap();
        sim.balance(&format!("tel:{who}")).unwrap().amount
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", "k-shop");
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A cart of the prepaid SIM with the number `msisdn` chosen (held for it).
    async fn cart_with(&self, id: &str, msisdn: &str) -> String {
        let store = self.gw.charging.store();
        let (name, prices) = cart::price_item(store, "po-prepaid-sim", 1, now_ms())
            .await
            .unwrap();
        let rid = format!("msisdn-{msisdn}");
        let holder = cart::holder("shop", id);
        assert!(
            store
                .reserve_inventory(&rid, &holder, now_ms() + 600_000, now_ms())
                .await
                .unwrap()
        );
        // And a SIM: the first of the demo pool's still available.
        let (sims, _) = store
            .inventory_list(crate::store::InventoryFilter {
                category: Some("ICCID".into()),
                status: Some(InventoryStatus::Available),
                now_ms: now_ms(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut sim = None;
        for r in sims {
            if store
                .reserve_inventory(&r.id, &holder, now_ms() + 600_000, now_ms())
                .await
                .unwrap()
            {
                sim = Some(r);
                break;
            }
        }
        let sim = sim.expect("a SIM left in the demo pool");
        let items = vec![cart::CartItem {
            id: "01".into(),
            quantity: 1,
            action: "add".into(),
            status: "active".into(),
            offering_id: "po-prepaid-sim".into(),
            offering_name: name,
            resources: vec![
                Chosen {
                    id: rid,
                    category: "MSISDN".into(),
                    value: msisdn.into(),
                },
                Chosen {
                    id: sim.id,
                    category: "ICCID".into(),
                    value: sim.value,
                },
            ],
            product: None,
            prices,
        }];
        let doc = CartDoc {
            id: id.into(),
            total: cart::totals(&items).unwrap(),
            items,
            contact: vec![cart::Contact {
                medium: cart::Medium::Email,
                address: "ana@example.com".into(),
            }],
            related_party: Vec::new(),
            characteristic: Vec::new(),
            valid_for: None,
            follow_up: None,
            order: None,
            customer: None,
            created_ms: now_ms(),
            updated_ms: now_ms(),
        };
        store
            .put_resource(cart::row("shop", &doc, cart::state::ACTIVE, None, now_ms()))
            .await
            .unwrap();
        id.to_string()
    }

    async fn order(&self, cart: &str, phone: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/tmf-api/productOrderingManagement/v4/productOrder",
            Some(json!({
                "shoppingCart": {"id": cart},
                "paymentMethod": {"@type": "carrierBilling", "phoneNumber": phone},
            })),
        )
        .await
    }

    /// The order once it reached a final state (the pipeline's passes driven here).
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..200 {
            self.pipeline.pass().await;
            let (s, o) = self
                .send(
                    Method::GET,
                    &format!("/tmf-api/productOrderingManagement/v4/productOrder/{id}"),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{o}");
            let state = o["state"].as_str().unwrap().to_string();
            if OrderState::from_name(&state).is_some_and(OrderState::is_final) {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("order {id} never ended");
    }

    async fn number(&self, msisdn: &str) -> crate::store::InventoryRow {
        self.gw
            .charging
            .store()
            .inventory(&format!("msisdn-{msisdn}"))
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test]
async fn a_paid_order_charges_the_one_time_price_once_and_assigns_the_number() {
    let w = world().await;
    let before = w.balance(RICH);
    let c = w.cart_with("cart-1", "34600100001").await;
    let (s, o) = w.order(&c, RICH).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["state"], "acknowledged");
    let id = o["id"].as_str().unwrap().to_string();
    let o = w.settled(&id).await;
    assert_eq!(o["state"], "completed", "{o}");
    // 4.99 one-time (the monthly fee is not charged at checkout), exactly.
    assert_eq!(before - w.balance(RICH), d("4.99"));
    let n = w.number("34600100001").await;
    assert_eq!(n.status, InventoryStatus::Assigned);
    // Now the order's (TMF639 shows it as the owner).
    assert_eq!(n.holder.as_deref(), Some(format!("shop/{id}").as_str()));
    let steps = o["orderPipeline"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["state"] == "done"), "{o}");
    assert_eq!(o["payment"][0]["id"], format!("{id}-pay"));
    // The same checkout again: the same order, nothing charged again; more passes change
    // nothing either.
    let (s, again) = w.order(&c, RICH).await;
    assert_eq!((s, &again["id"]), (StatusCode::OK, &o["id"]));
    w.pipeline.pass().await;
    assert_eq!(before - w.balance(RICH), d("4.99"));
    // The customer is told once, by mail.
    let ev =
        w.gw.charging
            .store()
            .event(&format!("order-{id}"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(ev.url, "mailto:ana@example.com");
    assert!(
        ev.body.contains("34600100001") && ev.body.contains("4.99 EUR"),
        "{}",
        ev.body
    );
    // The cart is checked out: it names its order.
    let (row, doc) = cart::load(w.gw.charging.store(), "shop", &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, cart::state::CHECKED_OUT);
    assert_eq!(doc.order.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_refused_payment_fails_the_order_releases_the_number_and_reopens_the_cart() {
    let w = world().await;
    let before = w.balance(POOR);
    let c = w.cart_with("cart-2", "34600100002").await;
    let (s, o) = w.order(&c, POOR).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let o = w.settled(o["id"].as_str().unwrap()).await;
    assert_eq!(o["state"], "failed", "{o}");
    let why = o["note"][0]["text"].as_str().unwrap();
    assert!(why.starts_with("authorizePayment:"), "{why}");
    assert_eq!(w.balance(POOR), before);
    let id = o["id"].as_str().unwrap();
    let told =
        w.gw.charging
            .store()
            .event(&format!("order-{id}"))
            .await
            .unwrap();
    assert_eq!(told, None, "a failed order is not announced as complete");
    let steps = o["orderPipeline"].as_array().unwrap();
    let state_of = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["state"].clone())
            .unwrap()
    };
    assert_eq!(state_of("reserveResources"), "compensated");
    assert_eq!(state_of("authorizePayment"), "failed");
    assert_eq!(state_of("capturePayment"), "pending");
    let n = w.number("34600100002").await;
    assert_eq!((n.status, n.holder), (InventoryStatus::Available, None));
    let (row, doc) = cart::load(w.gw.charging.store(), "shop", &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, cart::state::ACTIVE);
    assert_eq!(doc.order, None);
    // Paid another way, it goes through (the number is held again by the pipeline).
    let (s, o) = w.order(&c, RICH).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let o = w.settled(o["id"].as_str().unwrap()).await;
    assert_eq!(o["state"], "completed", "{o}");
}

#[tokio::test]
async fn a_number_taken_by_another_cart_rejects_nothing_is_charged() {
    let w = world().await;
    let before = w.balance(RICH);
    let c = w.cart_with("cart-3", "34600100003").await;
    // Its hold is lost and another cart takes the number.
    let store = w.gw.charging.store();
    let rid = "msisdn-34600100003";
    assert!(
        store
            .release_inventory(rid, "shop/cart-3", now_ms())
            .await
            .unwrap()
    );
    assert!(
        store
            .reserve_inventory(rid, "shop/other", now_ms() + 600_000, now_ms())
            .await
            .unwrap()
    );
    let (_, o) = w.order(&c, RICH).await;
    let o = w.settled(o["id"].as_str().unwrap()).await;
    assert_eq!(o["state"], "failed", "{o}");
    assert!(o["note"][0]["text"].as_str().unwrap().contains(rid), "{o}");
    assert_eq!(w.balance(RICH), before);
    assert_eq!(
        w.number("34600100003").await.holder.as_deref(),
        Some("shop/other")
    );
}

#[tokio::test]
async fn a_step_recorded_running_is_run_again_without_paying_twice() {
    let w = world().await;
    let before = w.balance(RICH);
    let c = w.cart_with("cart-4", "34600100004").await;
    // Created without the pipeline's kick (as if the instance stopped at once).
    let router = router(w.state.clone(), &HttpConfig::default());
    let req = Request::builder()
        .method(Method::POST)
        .uri("/tmf-api/productOrderingManagement/v4/productOrder")
        .header("x-api-key", "k-shop")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"shoppingCart": {"id": c},
                   "paymentMethod": {"@type": "carrierBilling", "phoneNumber": RICH}})
            .to_string(),
        ))
        .unwrap();
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let id = serde_json::from_slice::<Value>(&bytes).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Run it to completion, then put the capture back to `running` as a stop mid-step
    // would leave it: the next pass runs it again and learns it was done.
    let o = w.settled(&id).await;
    assert_eq!(o["state"], "completed", "{o}");
    let store = w.gw.charging.store();
    let (row, mut doc) = super::pipeline::load(&w.state, "shop", &id)
        .await
        .unwrap()
        .unwrap();
    for s in doc
        .steps
        .iter_mut()
        .skip_while(|s| s.name != "authorizePayment")
    {
        s.state = StepState::Running;
    }
    doc.state = OrderState::InProgress;
    doc.completed_ms = None;
    let mut r = super::pipeline::row("shop", &doc, Some(now_ms()));
    r.created_ms = row.created_ms;
    store.put_resource(r).await.unwrap();
    let o = w.settled(&id).await;
    assert_eq!(o["state"], "completed", "{o}");
    assert_eq!(before - w.balance(RICH), d("4.99"));
}

#[tokio::test]
async fn bad_orders_are_tmf_errors() {
    let w = world().await;
    let path = "/tmf-api/productOrderingManagement/v4/productOrder";
    for (body, status) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (
            json!({"shoppingCart": {"id": "nope"}, "paymentMethod": {"@type": "carrierBilling", "phoneNumber": RICH}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"shoppingCart": {"id": "c"}, "paymentMethod": {"@type": "cash"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"shoppingCart": {"id": "c"}, "paymentMethod": {"@type": "carrierBilling", "phoneNumber": "12"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"shoppingCart": {"id": "c"}, "paymentMethod": {"@type": "externalPayment"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"productOrderItem": [], "paymentMethod": {"@type": "carrierBilling", "phoneNumber": RICH}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"shoppingCart": {"id": "c"}, "paymentMethod": {"@type": "carrierBilling", "phoneNumber": RICH}, "bogus": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, e) = w.send(Method::POST, path, Some(body.clone())).await;
        assert_eq!(s, status, "{body} -> {e}");
        assert_eq!(e["@type"], "Error", "{e}");
    }
    let (s, e) = w.send(Method::GET, &format!("{path}/a%2Fb"), None).await;
    assert_eq!((s, &e["@type"]), (StatusCode::NOT_FOUND, &json!("Error")));
    let (s, e) = w.send(Method::GET, &format!("{path}?limit=0"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, list) = w.send(Method::GET, path, None).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));
}
