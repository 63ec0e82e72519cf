//! TMF663 through `router(state).oneshot(request)` on the real router, over a memory store
//! holding the demo catalog (`conf/catalog/demo.json`) and a small inventory pool. Holds
//! are read back from the store's inventory rows.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::{Extension, Router};
use serde_json::{Value, json};

use super::model::{self, CartDoc, state};
use crate::api::testing::Resp;
use crate::api::tmf620::catalog::{self, Mode};
use crate::api::tmf639::Settings;
use crate::api::{ApiState, Apps, router};
use crate::config::{AppConfig, HttpConfig};
use crate::store::{InventoryStatus, Store};

const DEMO: &[u8] = include_bytes!("../../../conf/catalog/demo.json");
const CARTS: &str = "/tmf-api/shoppingCart/v4/shoppingCart";
const POOL: &str = "category,value,portedIn,tier\n\
    MSISDN,34600100001,,\nMSISDN,34600100002,,\nMSISDN,34600100003,,\n\
    MSISDN,34699100001,true,\nICCID,8934070000000000015,,\n";

fn app(id: &str, key: &str, ops: &[&str]) -> AppConfig {
    AppConfig {
        id: id.into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: key.into(),
        allowed_currencies: vec![],
        max_amount: None,
        allowed_operations: ops.iter().map(|s| s.to_string()).collect(),
        admin: false,
        oidc_client_id: String::new(),
    }
}

struct World {
    _gw: crate::gateway::Gateway,
    store: Store,
    router: Router,
}

async fn world() -> World {
    let store = Store::memory();
    let gw = crate::gateway::testing::start(crate::gateway::testing::TestGateway {
        accounts: None,
        tx: Duration::from_secs(1),
        reservation_ttl: Duration::from_secs(3600),
        reaper_interval: Duration::from_secs(3600),
        store: Some(store.clone()),
    })
    .await;
    catalog::import(&store, DEMO, Mode::Replace, 1_000)
        .await
        .unwrap();
    let rows = crate::api::tmf639::import::parse_csv("pool", POOL, crate::store::now_ms()).unwrap();
    store.import_inventory(rows).await.unwrap();
    let state = ApiState::new(
        Arc::clone(&gw.charging),
        Arc::new(Apps::new(&[
            app("shop", "k-shop", &[]),
            app("other", "k-other", &[]),
            app("payer", "k-payer", &["payment"]),
        ])),
        Arc::new(|| true),
        None,
    );
    let router = router(state, &HttpConfig::default()).layer(Extension(Settings {
        hold: Duration::from_secs(600),
        seed: None,
    }));
    World {
        _gw: gw,
        store,
        router,
    }
}

impl World {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Resp {
        crate::api::testing::send(&self.router, method, uri, key, content_type, body).await
    }

    async fn create_as(&self, key: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            CARTS,
            key,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }

    async fn create(&self, body: Value) -> Resp {
        self.create_as("k-shop", body).await
    }

    async fn get_as(&self, key: &str, uri: &str) -> Resp {
        self.send(Method::GET, uri, key, None, None).await
    }

    async fn merge(&self, id: &str, body: Value) -> Resp {
        self.send(
            Method::PATCH,
            &format!("{CARTS}/{id}"),
            "k-shop",
            Some("application/merge-patch+json"),
            Some(body.to_string()),
        )
        .await
    }

    async fn json_patch(&self, id: &str, ops: Value) -> Resp {
        self.send(
            Method::PATCH,
            &format!("{CARTS}/{id}"),
            "k-shop",
            Some("application/json-patch+json"),
            Some(ops.to_string()),
        )
        .await
    }

    async fn delete_as(&self, key: &str, id: &str) -> Resp {
        self.send(Method::DELETE, &format!("{CARTS}/{id}"), key, None, None)
            .await
    }

    /// The inventory status of `id` now, and its holder.
    async fn held(&self, id: &str) -> (InventoryStatus, Option<String>) {
        let r = self.store.inventory(id).await.unwrap().unwrap();
        let s = r.status_at(crate::store::now_ms());
        (
            s,
            (s == InventoryStatus::Reserved)
                .then_some(r.holder)
                .flatten(),
        )
    }

    async fn doc(&self, id: &str) -> (String, CartDoc) {
        let r = self.store.resource(id).await.unwrap().unwrap();
        (r.state, serde_json::from_str(&r.body).unwrap())
    }
}

fn sim(quantity: u32, msisdn: Option<&str>) -> Value {
    let mut it = json!({"quantity": quantity, "productOffering": {"id": "po-prepaid-sim"}});
    if let Some(m) = msisdn {
        it["product"] = json!({"realizingResource": [{"id": format!("msisdn-{m}")}]});
    }
    it
}

/// The money of a CartPrice, as the JSON text of its value (exact) and its unit.
fn money(p: &Value, which: &str) -> (String, String) {
    let m = &p["price"][which];
    (
        m["value"].to_string(),
        m["unit"].as_str().unwrap().to_string(),
    )
}

fn eur(v: &str) -> (String, String) {
    (v.to_string(), "EUR".to_string())
}

fn id_of(r: &Resp) -> String {
    r.json()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_cart_is_priced_exactly_from_the_catalog_and_its_number_held() {
    let w = world().await;
    let r = w
        .create(json!({
            "cartItem": [sim(3, Some("34600100001"))],
            "contactMedium": [{"mediumType": "email",
                "characteristic": {"emailAddress": "ana@example.com"}}],
            "relatedParty": [{"id": "cust-1", "role": "customer"}],
            "@type": "ShoppingCart"
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    let id = v["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("{CARTS}/{id}").as_str()));
    assert_eq!(v["href"], format!("{CARTS}/{id}"));
    assert_eq!(v["@type"], "ShoppingCart");
    assert_eq!(v["status"], "active");
    let item = &v["cartItem"][0];
    assert_eq!(item["id"], "01");
    assert_eq!(item["action"], "add");
    assert_eq!(item["status"], "active");
    assert_eq!(
        item["productOffering"]["href"],
        "/tmf-api/productCatalogManagement/v4/productOffering/po-prepaid-sim"
    );
    assert_eq!(
        item["productOffering"]["name"],
        "Prepaid SIM with a new number"
    );
    let unit = &item["itemPrice"];
    assert_eq!(money(&unit[0], "taxIncludedAmount"), eur("4.99"));
    assert_eq!(unit[0]["priceType"], "oneTime");
    assert_eq!(
        unit[0]["productOfferingPrice"]["id"],
        "price-sim-activation"
    );
    assert_eq!(money(&unit[1], "taxIncludedAmount"), eur("9.99"));
    assert_eq!(unit[1]["recurringChargePeriod"], "month");
    let tot = &item["itemTotalPrice"];
    assert_eq!(money(&tot[0], "taxIncludedAmount"), eur("14.97"));
    // 14.97 / 1.21 = 12.3719...
    assert_eq!(money(&tot[0], "dutyFreeAmount"), eur("12.37"));
    assert_eq!(tot[0]["price"]["taxRate"].to_string(), "21");
    assert_eq!(money(&tot[1], "taxIncludedAmount"), eur("29.97"));
    let cart = &v["cartTotalPrice"];
    assert_eq!(cart.as_array().unwrap().len(), 2);
    assert_eq!(cart[0]["priceType"], "oneTime");
    assert_eq!(money(&cart[0], "taxIncludedAmount"), eur("14.97"));
    assert_eq!(cart[1]["recurringChargePeriod"], "month");
    assert_eq!(money(&cart[1], "taxIncludedAmount"), eur("29.97"));
    // The number: shown with its TMF639 href, held for this cart.
    let res = &item["product"]["realizingResource"][0];
    assert_eq!(res["id"], "msisdn-34600100001");
    assert_eq!(res["value"], "34600100001");
    assert_eq!(res["@referredType"], "LogicalResource");
    assert_eq!(
        res["href"],
        "/tmf-api/resourceInventoryManagement/v4/resource/msisdn-34600100001"
    );
    assert_eq!(
        w.held("msisdn-34600100001").await,
        (InventoryStatus::Reserved, Some(format!("shop/{id}")))
    );
    assert_eq!(
        v["contactMedium"][0]["characteristic"]["emailAddress"],
        "ana@example.com"
    );
    assert_eq!(v["relatedParty"][0]["id"], "cust-1");
    assert!(crate::api::datetime::is_fixed_form(
        v["lastUpdate"].as_str().unwrap()
    ));
    for (path, date) in crate::api::datetime::date_times(&v) {
        assert!(crate::api::datetime::is_fixed_form(&date), "{path}: {date}");
    }
    // Stored as the shared model says, the follow-up due (it has a contact).
    let (st, doc) = w.doc(id).await;
    assert_eq!(st, state::ACTIVE);
    assert_eq!(doc.total, model::totals(&doc.items).unwrap());
    assert_eq!(
        model::one_time(&doc.total),
        vec![("14.97".parse().unwrap(), "EUR")]
    );
    let row = w.store.resource(id).await.unwrap().unwrap();
    assert_eq!(row.due_ms, Some(doc.updated_ms));
    assert_eq!(row.kind, model::KIND_CART);
    // GET answers the same document.
    let g = w.get_as("k-shop", &format!("{CARTS}/{id}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);
}

#[tokio::test]
async fn client_prices_are_ignored_and_the_msisdn_can_be_a_characteristic() {
    let w = world().await;
    let r = w
        .create(json!({
            "cartTotalPrice": [{"price": {"taxIncludedAmount": {"unit": "EUR", "value": 0.01}}}],
            "cartItem": [{
                "productOffering": {"id": "po-prepaid-sim", "name": "cheap"},
                "itemPrice": [{"price": {"taxIncludedAmount": {"unit": "EUR", "value": 0}}}],
                "itemTotalPrice": [],
                "product": {"productCharacteristic": [
                    {"name": "MSISDN", "value": "+34600100002"},
                    {"name": "colour", "value": "blue"}
                ]}
            }]
        }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    assert_eq!(
        money(&v["cartTotalPrice"][0], "taxIncludedAmount"),
        eur("4.99")
    );
    let item = &v["cartItem"][0];
    assert_eq!(
        item["productOffering"]["name"],
        "Prepaid SIM with a new number"
    );
    assert_eq!(
        money(&item["itemPrice"][0], "taxIncludedAmount"),
        eur("4.99")
    );
    assert_eq!(
        item["product"]["productCharacteristic"],
        json!([{"name": "colour", "value": "blue"}])
    );
    assert_eq!(
        item["product"]["realizingResource"][0]["id"],
        "msisdn-34600100002"
    );
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Reserved
    );
}

#[tokio::test]
async fn a_merge_patch_replaces_the_items_and_releases_the_number_dropped() {
    let w = world().await;
    let r = w
        .create(json!({"cartItem": [sim(1, Some("34600100001")), sim(1, None)]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = id_of(&r);
    let before = w.doc(&id).await.1;
    let p = w
        .merge(
            &id,
            json!({"cartItem": [
                {"productOffering": {"id": "po-data-10gb"}, "quantity": 2},
                sim(1, Some("34600100003"))
            ]}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    let v = p.json();
    let items = v["cartItem"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the array is replaced whole");
    assert_eq!(items[0]["productOffering"]["id"], "po-data-10gb");
    assert_eq!(items[0]["id"], "01");
    assert_eq!(
        money(&items[0]["itemTotalPrice"][0], "taxIncludedAmount"),
        eur("10.00")
    );
    // 2 x 5.00 + 4.99 one time; 9.99 a month.
    assert_eq!(
        money(&v["cartTotalPrice"][0], "taxIncludedAmount"),
        eur("14.99")
    );
    assert_eq!(
        money(&v["cartTotalPrice"][1], "taxIncludedAmount"),
        eur("9.99")
    );
    assert_eq!(
        w.held("msisdn-34600100001").await.0,
        InventoryStatus::Available
    );
    assert_eq!(
        w.held("msisdn-34600100003").await,
        (InventoryStatus::Reserved, Some(format!("shop/{id}")))
    );
    let after = w.doc(&id).await.1;
    assert_eq!(after.created_ms, before.created_ms);
    assert!(after.updated_ms >= before.updated_ms);
    // Other members are left as they were; null removes one.
    let p = w
        .merge(
            &id,
            json!({"characteristic": [{"name": "gift", "value": true}]}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(p.json()["cartItem"].as_array().unwrap().len(), 2);
    let p = w.merge(&id, json!({"characteristic": null})).await;
    assert_eq!(p.json()["characteristic"], json!([]));
}

#[tokio::test]
async fn a_json_patch_adds_replaces_and_removes() {
    let w = world().await;
    let id = id_of(&w.create(json!({"cartItem": [sim(1, None)]})).await);
    // add: a second item, and a number to the first.
    let p = w
        .json_patch(
            &id,
            json!([
                {"op": "add", "path": "/cartItem/-",
                 "value": {"productOffering": {"id": "po-phone-x1"}}},
                {"op": "add", "path": "/cartItem/0/product/realizingResource/-",
                 "value": {"id": "msisdn-34600100002"}}
            ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    let v = p.json();
    assert_eq!(v["cartItem"][1]["id"], "02");
    assert_eq!(
        money(&v["cartTotalPrice"][0], "taxIncludedAmount"),
        eur("303.99")
    );
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Reserved
    );
    // replace: a quantity; test guards it.
    let p = w
        .json_patch(
            &id,
            json!([
                {"op": "test", "path": "/cartItem/1/quantity", "value": 1},
                {"op": "replace", "path": "/cartItem/1/quantity", "value": 2}
            ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(
        money(
            &p.json()["cartItem"][1]["itemTotalPrice"][0],
            "taxIncludedAmount"
        ),
        eur("598.00")
    );
    // A failed test applies nothing.
    let p = w
        .json_patch(
            &id,
            json!([
                {"op": "remove", "path": "/cartItem/1"},
                {"op": "test", "path": "/cartItem/0/quantity", "value": 7}
            ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.client_error().starts_with("body[1]: "), "{}", p.json());
    assert_eq!(w.doc(&id).await.1.items.len(), 2);
    // remove: the number (released) and the phone.
    let p = w
        .json_patch(
            &id,
            json!([
                {"op": "remove", "path": "/cartItem/0/product/realizingResource/0"},
                {"op": "remove", "path": "/cartItem/1"}
            ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    let v = p.json();
    assert_eq!(v["cartItem"].as_array().unwrap().len(), 1);
    assert_eq!(v["cartItem"][0]["product"]["realizingResource"], json!([]));
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Available
    );
    // Server-owned members a patch sets are recomputed, not taken.
    let p = w
        .json_patch(
            &id,
            json!([{"op": "replace", "path": "/cartTotalPrice", "value": []},
                   {"op": "replace", "path": "/cartItem/0/itemPrice/0/price/taxIncludedAmount/value",
                    "value": 0}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(
        money(&p.json()["cartTotalPrice"][0], "taxIncludedAmount"),
        eur("4.99")
    );
    assert_eq!(
        money(
            &p.json()["cartItem"][0]["itemPrice"][0],
            "taxIncludedAmount"
        ),
        eur("4.99")
    );
}

#[tokio::test]
async fn the_id_href_status_and_valid_for_cannot_be_patched() {
    let w = world().await;
    let id = id_of(
        &w.create(json!({"cartItem": [], "validFor": {"endDateTime": "2030-01-01T00:00:00Z"}}))
            .await,
    );
    for (body, field) in [
        (
            json!([{"op": "replace", "path": "/id", "value": "cart-x"}]),
            "id: ",
        ),
        (
            json!([{"op": "replace", "path": "/href", "value": "/x"}]),
            "href: ",
        ),
        (
            json!([{"op": "replace", "path": "/status", "value": "checkedOut"}]),
            "status: ",
        ),
        (json!([{"op": "remove", "path": "/validFor"}]), "validFor: "),
    ] {
        let p = w.json_patch(&id, body.clone()).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(p.client_error().starts_with(field), "{body}: {}", p.json());
    }
    let p = w.merge(&id, json!({"id": "cart-other"})).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.client_error().starts_with("id: "));
    // Naming the cart's own id is no change.
    let p = w.merge(&id, json!({"id": id})).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(p.json()["id"], id.as_str());
    // A new cart gets its id from the gateway.
    let r = w.create(json!({"id": "mine", "cartItem": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.client_error().starts_with("id: "));
}

#[tokio::test]
async fn another_applications_cart_a_deleted_one_and_unknown_ids_are_404() {
    let w = world().await;
    let id = id_of(&w.create(json!({"cartItem": [sim(1, None)]})).await);
    let uri = format!("{CARTS}/{id}");
    assert_eq!(
        w.get_as("k-other", &uri).await.status,
        StatusCode::NOT_FOUND
    );
    let p = w
        .send(
            Method::PATCH,
            &uri,
            "k-other",
            Some("application/merge-patch+json"),
            Some("{}".into()),
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    p.client_error();
    assert_eq!(
        w.delete_as("k-other", &id).await.status,
        StatusCode::NOT_FOUND
    );
    for bad in ["cart-nope", "a%2Fb", "x".repeat(65).as_str()] {
        let r = w.get_as("k-shop", &format!("{CARTS}/{bad}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        r.client_error();
    }
    // Listing: the application's own carts only, newest first, paged.
    let id2 = id_of(&w.create(json!({"cartItem": []})).await);
    let _o = w.create_as("k-other", json!({"cartItem": []})).await;
    let l = w.get_as("k-shop", &format!("{CARTS}?limit=1")).await;
    assert_eq!(l.status, StatusCode::OK);
    assert_eq!(l.header("x-total-count"), Some("2"));
    assert_eq!(l.header("x-result-count"), Some("1"));
    let ids = |r: &Resp| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = w.get_as("k-shop", CARTS).await;
    let mut both = ids(&all);
    assert_eq!(both.len(), 2);
    assert_eq!(ids(&l), both[..1]);
    let next = w
        .get_as("k-shop", &format!("{CARTS}?offset=1&limit=1"))
        .await;
    assert_eq!(ids(&next), both[1..]);
    both.sort();
    let mut want = vec![id.clone(), id2.clone()];
    want.sort();
    assert_eq!(both, want);
    let f = w.get_as("k-shop", &format!("{CARTS}?fields=status")).await;
    let first = &f.json()[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["@type", "href", "id", "status"]);
    // Deleted: 404 everywhere, gone from the listing.
    assert_eq!(
        w.delete_as("k-shop", &id).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(w.get_as("k-shop", &uri).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.delete_as("k-shop", &id).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.merge(&id, json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ids(&w.get_as("k-shop", CARTS).await), [id2]);
    assert_eq!(w.doc(&id).await.0, state::DELETED);
}

#[tokio::test]
async fn a_number_held_by_another_cart_is_409_and_nothing_of_the_request_is_kept() {
    let w = world().await;
    let first = id_of(
        &w.create(json!({"cartItem": [sim(1, Some("34600100001"))]}))
            .await,
    );
    // The second cart asks for a free number and the held one: 409, the free one not kept.
    let r = w
        .create(json!({"cartItem": [sim(1, Some("34600100002")), sim(1, Some("34600100001"))]}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let m = r.client_error();
    assert_eq!(r.json()["code"], "CONFLICT");
    assert!(
        m.contains("cartItem[1]") && m.contains("msisdn-34600100001"),
        "{m}"
    );
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Available
    );
    let (_, total) = w
        .store
        .resources(crate::store::ResourceFilter {
            kind: Some(model::KIND_CART.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(total, 1, "no second cart written");
    // Through another application: the same.
    let r = w
        .create_as(
            "k-other",
            json!({"cartItem": [sim(1, Some("34600100001"))]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // A PATCH of another cart: 409, the cart unchanged and its own number still held.
    let second = id_of(
        &w.create(json!({"cartItem": [sim(1, Some("34600100003"))]}))
            .await,
    );
    let before = w.doc(&second).await.1;
    let p = w
        .json_patch(
            &second,
            json!([
                {"op": "add", "path": "/cartItem/-", "value": sim(1, Some("34600100002"))},
                {"op": "add", "path": "/cartItem/-", "value": sim(1, Some("34600100001"))}
            ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.json());
    assert_eq!(w.doc(&second).await.1, before);
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Available
    );
    assert_eq!(
        w.held("msisdn-34600100003").await,
        (InventoryStatus::Reserved, Some(format!("shop/{second}")))
    );
    assert_eq!(
        w.held("msisdn-34600100001").await,
        (InventoryStatus::Reserved, Some(format!("shop/{first}")))
    );
    // A ported-in number is never to be had.
    let r = w
        .create(json!({"cartItem": [sim(1, Some("34699100001"))]}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.client_error().contains("ported in"));
}

#[tokio::test]
async fn delete_releases_the_numbers_for_another_cart() {
    let w = world().await;
    let id = id_of(&w.create(json!({"cartItem": [sim(2, None)]})).await);
    let p = w
        .merge(
            &id,
            json!({"cartItem": [{"quantity": 2, "productOffering": {"id": "po-prepaid-sim"},
                "product": {"realizingResource": [
                    {"id": "msisdn-34600100001"}, {"id": "msisdn-34600100002"}]}}]}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    let r = w
        .create_as(
            "k-other",
            json!({"cartItem": [sim(1, Some("34600100002"))]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let d = w.delete_as("k-shop", &id).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.body.is_empty());
    assert_eq!(
        w.held("msisdn-34600100001").await.0,
        InventoryStatus::Available
    );
    assert_eq!(
        w.held("msisdn-34600100002").await.0,
        InventoryStatus::Available
    );
    let (st, doc) = w.doc(&id).await;
    assert_eq!(st, state::DELETED);
    assert_eq!(
        doc.items[0].resources.len(),
        2,
        "the record keeps what it had"
    );
    assert_eq!(w.store.resource(&id).await.unwrap().unwrap().due_ms, None);
    let r = w
        .create_as(
            "k-other",
            json!({"cartItem": [sim(1, Some("34600100002"))]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let other = id_of(&r);
    assert_eq!(
        w.held("msisdn-34600100002").await,
        (InventoryStatus::Reserved, Some(format!("other/{other}")))
    );
}

#[tokio::test]
async fn a_checked_out_cart_refuses_patch_and_delete() {
    let w = world().await;
    let id = id_of(
        &w.create(json!({"cartItem": [sim(1, Some("34600100001"))]}))
            .await,
    );
    let (_, mut doc) = w.doc(&id).await;
    doc.order = Some("ord-42".into());
    w.store
        .put_resource(model::row(
            "shop",
            &doc,
            state::CHECKED_OUT,
            None,
            crate::store::now_ms(),
        ))
        .await
        .unwrap();
    let p = w.merge(&id, json!({"cartItem": []})).await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    let m = p.client_error();
    assert!(m.contains("checked out, order ord-42"), "{m}");
    let d = w.delete_as("k-shop", &id).await;
    assert_eq!(d.status, StatusCode::CONFLICT);
    assert!(d.client_error().contains("ord-42"));
    assert_eq!(
        w.held("msisdn-34600100001").await.0,
        InventoryStatus::Reserved
    );
    let g = w.get_as("k-shop", &format!("{CARTS}/{id}")).await;
    assert_eq!(g.json()["status"], "checkedOut");
    let l = w
        .get_as("k-shop", &format!("{CARTS}?status=checkedOut"))
        .await;
    assert_eq!(l.header("x-total-count"), Some("1"));
    let l = w.get_as("k-shop", &format!("{CARTS}?status=active")).await;
    assert_eq!(l.header("x-total-count"), Some("0"));
}

#[tokio::test]
async fn every_bad_input_is_a_tmf_error_naming_the_field() {
    let w = world().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "body: "),
        (json!({"cartItem": {}}), "cartItem: "),
        (json!({"cartItem": [{}]}), "cartItem[0].productOffering: "),
        (
            json!({"cartItem": [sim(1, None), {"quantity": 0, "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[1].quantity: ",
        ),
        (
            json!({"cartItem": [{"quantity": 100, "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[0].quantity: ",
        ),
        (
            json!({"cartItem": [{"quantity": 1.5, "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[0].quantity: ",
        ),
        (
            json!({"cartItem": [{"quantity": "2", "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[0].quantity: ",
        ),
        (
            json!({"cartItem": [{"action": "buy", "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[0].action: ",
        ),
        (
            json!({"cartItem": [{"status": "later", "productOffering": {"id": "po-prepaid-sim"}}]}),
            "cartItem[0].status: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-nope"}}]}),
            "cartItem[0].productOffering.id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": 7}}]}),
            "cartItem[0].productOffering.id: ",
        ),
        (
            json!({"cartItem": [{"id": "a", "productOffering": {"id": "po-phone-x1"}},
                             {"id": "a", "productOffering": {"id": "po-phone-x1"}}]}),
            "cartItem[1].id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-phone-x1"}, "colour": "red"}]}),
            "cartItem[0].colour: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-phone-x1"}, "cartItem": []}]}),
            "cartItem[0].cartItem: ",
        ),
        (
            json!({"cartItem": [sim(1, Some("34600999999"))]}),
            "cartItem[0].product.realizingResource[0].id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-prepaid-sim"},
                "product": {"realizingResource": [{"id": "router-1"}]}}]}),
            "cartItem[0].product.realizingResource[0].id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-phone-x1"},
                "product": {"realizingResource": [{"id": "msisdn-34600100001"}]}}]}),
            "cartItem[0].product.realizingResource[0].id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-prepaid-sim"},
                "product": {"realizingResource": [{"id": "msisdn-34600100001"},
                    {"id": "msisdn-34600100002"}]}}]}),
            "cartItem[0].product.realizingResource[1].id: ",
        ),
        (
            json!({"cartItem": [{"productOffering": {"id": "po-prepaid-sim"},
                "product": {"productCharacteristic": [{"name": "MSISDN", "value": "12ab"}]}}]}),
            "cartItem[0].product.productCharacteristic[0].value: ",
        ),
        (
            json!({"cartItem": [sim(1, Some("34600100001")), sim(1, Some("34600100001"))]}),
            "cartItem[1].product.realizingResource[0].id: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "email",
                "characteristic": {"emailAddress": "not-an-address"}}]}),
            "contactMedium[0].characteristic.emailAddress: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "email",
                "characteristic": {"emailAddress": "a..b@example.com"}}]}),
            "contactMedium[0].characteristic.emailAddress: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "sms",
                "characteristic": {"phoneNumber": "34600100001"}}]}),
            "contactMedium[0].characteristic.phoneNumber: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "sms",
                "characteristic": {"phoneNumber": "+3460"}}]}),
            "contactMedium[0].characteristic.phoneNumber: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "pigeon", "characteristic": {}}]}),
            "contactMedium[0].mediumType: ",
        ),
        (
            json!({"contactMedium": [{"mediumType": "email"}]}),
            "contactMedium[0].characteristic: ",
        ),
        (
            json!({"relatedParty": [{"name": "x"}]}),
            "relatedParty[0].id: ",
        ),
        (json!({"relatedParty": [{"id": 1}]}), "relatedParty[0].id: "),
        (
            json!({"characteristic": [{"value": 1}]}),
            "characteristic[0].name: ",
        ),
        (
            json!({"validFor": {"startDateTime": "yesterday"}}),
            "validFor.startDateTime: ",
        ),
        (
            json!({"validFor": {"startDateTime": "2030-01-02T00:00:00Z",
                "endDateTime": "2030-01-01T00:00:00Z"}}),
            "validFor.endDateTime: ",
        ),
        (json!({"status": "checkedOut"}), "status: "),
        (json!({"shippingAddress": {}}), "shippingAddress: "),
        (
            json!({"cartItem": (0..51).map(|_| sim(1, None)).collect::<Vec<_>>()}),
            "cartItem: ",
        ),
    ];
    for (body, field) in cases {
        let r = w.create(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json());
        let m = r.client_error();
        assert!(m.starts_with(field), "{body}: {m}");
    }
    // Nothing was held by any of them.
    for n in ["34600100001", "34600100002"] {
        assert_eq!(
            w.held(&format!("msisdn-{n}")).await.0,
            InventoryStatus::Available
        );
    }
    // Not JSON, wrong media types, wrong patches.
    let r = w
        .send(
            Method::POST,
            CARTS,
            "k-shop",
            Some("application/json"),
            Some("{".into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.client_error();
    let r = w
        .send(
            Method::POST,
            CARTS,
            "k-shop",
            Some("text/plain"),
            Some("{}".into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    r.client_error();
    let id = id_of(&w.create(json!({"cartItem": []})).await);
    let uri = format!("{CARTS}/{id}");
    for (ct, body, status) in [
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "application/merge-patch+json",
            "[1]",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/merge-patch+json",
            "nope",
            StatusCode::BAD_REQUEST,
        ),
        ("application/json-patch+json", "{}", StatusCode::BAD_REQUEST),
        (
            "application/json-patch+json",
            "[{\"op\": \"frob\", \"path\": \"/\"}]",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json-patch+json",
            "[{\"op\": \"remove\", \"path\": \"/cartItem/9\"}]",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json-patch+json",
            "[{\"op\": \"replace\", \"path\": \"\", \"value\": 1}]",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json-patch+json",
            "[{\"op\": \"add\", \"path\": \"/cartItem/-\", \"value\": {\"quantity\": -1}}]",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = w
            .send(Method::PATCH, &uri, "k-shop", Some(ct), Some(body.into()))
            .await;
        assert_eq!(
            r.status,
            status,
            "{ct} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.client_error();
    }
    // Query parameters, authentication, policy.
    for q in [
        "?limit=0",
        "?limit=101",
        "?offset=-1",
        "?status=deleted",
        "?sort=id",
        "?limit=1&limit=2",
    ] {
        let r = w.get_as("k-shop", &format!("{CARTS}{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        r.client_error();
    }
    let r = w.get_as("k-nobody", CARTS).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    r.client_error();
    let r = w.create_as("k-payer", json!({"cartItem": []})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    r.client_error();
    // The router's own answers under the base path are TMF Errors too.
    let r = w
        .send(
            Method::PUT,
            &uri,
            "k-shop",
            Some("application/json"),
            Some("{}".into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["@type"], "Error");
    let r = w.get_as("k-shop", "/tmf-api/shoppingCart/v4/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.client_error();
}

#[tokio::test]
async fn hostile_bodies_never_make_a_5xx() {
    let w = world().await;
    let id = id_of(&w.create(json!({"cartItem": [sim(1, None)]})).await);
    let mut rng = fastrand::Rng::with_seed(7);
    let atoms = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!("x"),
        json!([]),
        json!({}),
        json!("msisdn-34600100001"),
        json!({"id": "msisdn-34600100001"}),
        json!({"id": "po-prepaid-sim"}),
        json!([{"name": "MSISDN", "value": "34600100002"}]),
        json!(99),
        json!(18446744073709551616u128 as f64),
    ];
    let keys = [
        "cartItem",
        "productOffering",
        "product",
        "realizingResource",
        "productCharacteristic",
        "quantity",
        "id",
        "href",
        "contactMedium",
        "characteristic",
        "mediumType",
        "validFor",
        "relatedParty",
        "status",
        "action",
        "@type",
    ];
    fn grow(rng: &mut fastrand::Rng, atoms: &[Value], keys: &[&str], depth: u32) -> Value {
        match rng.u8(..4) {
            _ if depth == 0 => atoms[rng.usize(..atoms.len())].clone(),
            0 => Value::Array(
                (0..rng.usize(..3))
                    .map(|_| grow(rng, atoms, keys, depth - 1))
                    .collect(),
            ),
            1 | 2 => Value::Object(
                (0..rng.usize(..4))
                    .map(|_| {
                        (
                            keys[rng.usize(..keys.len())].to_string(),
                            grow(rng, atoms, keys, depth - 1),
                        )
                    })
                    .collect(),
            ),
            _ => atoms[rng.usize(..atoms.len())].clone(),
        }
    }
    for i in 0..300 {
        let body = grow(&mut rng, &atoms, &keys, 5);
        let r = if i % 2 == 0 {
            w.create(body.clone()).await
        } else {
            w.merge(&id, body.clone()).await
        };
        assert!(
            r.status.is_success() || r.status.is_client_error(),
            "{body}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if !r.status.is_success() {
            r.client_error();
        }
    }
}

#[tokio::test]
async fn patches_and_kept_values_are_bounded_and_nothing_is_kept_of_a_refused_one() {
    let w = world().await;
    let id = id_of(&w.create(json!({"cartItem": [sim(1, None)]})).await);
    let (_, before) = w.doc(&id).await;

    // Too many operations in one JSON Patch.
    let ops: Vec<Value> = (0..=super::MAX_PATCH_OPS)
        .map(|_| json!({"op": "test", "path": "/id", "value": id}))
        .collect();
    let r = w.json_patch(&id, Value::Array(ops)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.client_error().contains("operations"),
        "{}",
        r.client_error()
    );

    // `copy` doubling the document at each step: refused at the operation that overgrows it,
    // not after building the whole thing.
    let mut ops = vec![json!({"op": "add", "path": "/characteristic", "value": [
        {"name": "x", "value": [[[[[["leaf"]]]]]]}
    ]})];
    for _ in 0..40 {
        ops.push(
            json!({"op": "copy", "from": "/characteristic", "path": "/characteristic/0/value/-"}),
        );
    }
    let r = w.json_patch(&id, Value::Array(ops)).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let msg = r.client_error();
    assert!(msg.contains("too large") || msg.contains("nested"), "{msg}");

    // A characteristic value nested beyond what is kept.
    let mut deep = json!("leaf");
    for _ in 0..(super::input::MAX_KEPT_DEPTH + 2) {
        deep = json!([deep]);
    }
    let r = w
        .merge(
            &id,
            json!({"characteristic": [{"name": "deep", "value": deep}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.client_error().contains("nested deeper"),
        "{}",
        r.client_error()
    );

    // None of the refused changes touched the stored cart.
    let (state, after) = w.doc(&id).await;
    assert_eq!(state, super::model::state::ACTIVE);
    assert_eq!(after.characteristic, before.characteristic);
    assert_eq!(after.items.len(), before.items.len());

    // A listing offset past the bound is a TMF error, not a scan.
    let r = w
        .get_as(
            "k-shop",
            &format!("{CARTS}?offset={}", super::MAX_OFFSET + 1),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.client_error();
}
