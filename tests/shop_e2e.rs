//! The digital sales channel end to end through the `gateway` binary: the TMF620 catalog
//! browsed, a TMF663 cart filled with a prepaid SIM (an MSISDN and an ICCID of the TMF639
//! pool), the cart checked out by a TMF622 order paid by carrier billing through the
//! Diameter OCS simulator (in this process, so that its books can be read). Then a payment
//! the OCS refuses, bad requests, an order whose gateway is killed (SIGKILL) while an
//! external task hangs, and the race for ten numbers through two instances on one
//! PostgreSQL database (skipped without PostgreSQL, failed under `CI=true`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::postgres::Server;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const OFFERINGS: &str = "/tmf-api/productCatalogManagement/v4/productOffering";
const CARTS: &str = "/tmf-api/shoppingCart/v4/shoppingCart";
const RESOURCES: &str = "/tmf-api/resourceInventoryManagement/v4/resource";
const ORDERS: &str = "/tmf-api/productOrderingManagement/v4/productOrder";
const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/catalog/demo.json");
const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

/// 100.00 EUR at the OCS.
const RICH: &str = "+34671999000";
/// 1.00 EUR at the OCS: the SIM's 4.99 is refused (DIAMETER_CREDIT_LIMIT_REACHED).
const POOR: &str = "+34600000002";

/// The pool: twenty MSISDNs, ten ICCIDs (Luhn-valid, from conf/inventory/demo.csv).
fn msisdns() -> Vec<String> {
    (1..=20).map(|i| format!("346001000{i:02}")).collect()
}

const ICCIDS: [&str; 10] = [
    "8934071000000000014",
    "8934071000000000022",
    "8934071000000000030",
    "8934071000000000048",
    "8934071000000000055",
    "8934071000000000063",
    "8934071000000000071",
    "8934071000000000089",
    "8934071000000000097",
    "8934071000000000105",
];

fn pool() -> String {
    let mut s = String::from("category,value,portedIn\n");
    for m in msisdns() {
        s.push_str(&format!("MSISDN,{m},false\n"));
    }
    for i in ICCIDS {
        s.push_str(&format!("ICCID,{i},false\n"));
    }
    s
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The gateway's configuration: instance `n`, `store` the `[store]` keys, `tasks` any
/// `[[orders.tasks]]`.
fn config(n: usize, dir: &Path, ocs: SocketAddr, store: &str, tasks: &str) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw{n}.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{ocs}"

[http]
listen = "127.0.0.1:0"

[store]
{store}

[ocs_sim]
enabled = false

[catalog]
file = "{CATALOG}"

[inventory]
hold = "10m"
file = "{pool}"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"

[orders]
interval = "200ms"
retry_min = "100ms"
retry_max = "500ms"
timeout = "60s"
{tasks}
"#,
        dict = dictionaries().display(),
        pool = dir.join("pool.csv").display(),
    )
}

fn sqlite(dir: &Path) -> String {
    format!(
        "backend = \"sqlite\"\ndata_dir = \"{}\"",
        dir.join("data").display()
    )
}

async fn simulator() -> OcsSim {
    let account = |who: &str, balance: &str| SimAccount {
        subscriber: format!("tel:{who}"),
        balance: d(balance),
        currency: "EUR".into(),
    };
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![account(RICH, "100.00"), account(POOR, "1.00")],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// (balance, reserved) of `who` at the OCS.
fn books(sim: &OcsSim, who: &str) -> (Decimal, Decimal) {
    let a = sim.account(&format!("tel:{who}")).unwrap();
    (a.balance, a.reserved)
}

async fn send(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<String>,
) -> Answer {
    let auth = basic("shop", "shop-secret");
    gw.request(
        method,
        path,
        Some(&auth),
        &[("content-type", content_type)],
        body,
    )
    .await
    .unwrap()
}

async fn call(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> Answer {
    send(gw, method, path, content_type, body.map(|b| b.to_string())).await
}

async fn get(gw: &GatewayProcess, path: &str) -> Answer {
    call(gw, "GET", path, JSON, None).await
}

/// A cart item: the prepaid SIM with MSISDN `msisdn` and (when given) SIM `iccid`.
fn sim_item(msisdn: &str, iccid: Option<&str>) -> Value {
    let mut chosen = vec![json!({"id": format!("msisdn-{msisdn}")})];
    if let Some(i) = iccid {
        chosen.push(json!({"id": format!("iccid-{i}")}));
    }
    json!({"productOffering": {"id": "po-prepaid-sim"},
           "product": {"realizingResource": chosen}})
}

async fn new_cart(gw: &GatewayProcess, msisdn: &str, iccid: &str) -> String {
    let r = call(
        gw,
        "POST",
        CARTS,
        JSON,
        Some(json!({"cartItem": [sim_item(msisdn, Some(iccid))]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn checkout(cart: &str, phone: &str) -> Value {
    json!({"shoppingCart": {"id": cart},
           "paymentMethod": {"@type": "carrierBilling", "phoneNumber": phone}})
}

async fn resource(gw: &GatewayProcess, id: &str) -> Value {
    let r = get(gw, &format!("{RESOURCES}/{id}")).await;
    assert_eq!(r.status, 200, "{id}: {}", r.body);
    r.body
}

/// The TMF639 view of resource `id` assigned to order `order`.
async fn assert_owned(gw: &GatewayProcess, id: &str, order: &str) {
    let n = resource(gw, id).await;
    assert_eq!(n["usageState"], "active", "{n}");
    assert_eq!(n["resourceStatus"], "reserved", "{n}");
    assert_eq!(
        n["relatedParty"],
        json!([{"id": order, "role": "owner", "@referredType": "ProductOrder"}]),
        "{n}"
    );
}

async fn assert_available(gw: &GatewayProcess, id: &str) {
    let n = resource(gw, id).await;
    assert_eq!(n["resourceStatus"], "available", "{n}");
    assert_eq!(n["usageState"], "idle", "{n}");
    assert!(n.get("relatedParty").is_none(), "{n}");
}

/// The `priceType` entry of a `cartTotalPrice` / `orderTotalPrice`: (value, unit).
fn total_of(prices: &Value, price_type: &str) -> (String, String) {
    let t = prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["priceType"] == price_type)
        .unwrap_or_else(|| panic!("no {price_type} total in {prices}"));
    let m = &t["price"]["taxIncludedAmount"];
    (
        m["value"].to_string(),
        m["unit"].as_str().unwrap().to_string(),
    )
}

fn step<'a>(order: &'a Value, name: &str) -> &'a Value {
    order["orderPipeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {order}"))
}

/// Reads order `id` until `done` holds (at most 20 s).
async fn order_until(
    gw: &GatewayProcess,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = get(gw, &format!("{ORDERS}/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if done(&r.body) {
            return r.body;
        }
        last = r.body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("order {id} never {what}: {last}");
}

async fn order_final(gw: &GatewayProcess, id: &str) -> Value {
    order_until(gw, id, "ended", |o| {
        matches!(
            o["state"].as_str(),
            Some("completed" | "failed" | "rejected")
        )
    })
    .await
}

/// A TMF Error body with `status` and `code`, its reason and message given.
fn assert_error(r: &Answer, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["@type"], "Error", "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert_eq!(r.body["status"], status.to_string(), "{}", r.body);
    assert!(
        r.body["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.body
    );
    assert!(
        r.body["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.body
    );
}

fn message(r: &Answer) -> &str {
    r.body["message"].as_str().unwrap_or_default()
}

/// The simulator, a scratch directory with the pool, and one gateway on SQLite.
struct Shop {
    sim: OcsSim,
    dir: TempDir,
    config: String,
}

impl Shop {
    async fn new(tag: &str, tasks: &str) -> Self {
        let sim = simulator().await;
        let dir = TempDir::new(tag);
        std::fs::write(dir.0.join("pool.csv"), pool()).unwrap();
        let config = config(1, &dir.0, sim.local_addr().unwrap(), &sqlite(&dir.0), tasks);
        Self { sim, dir, config }
    }

    async fn gateway(&self) -> GatewayProcess {
        GatewayProcess::start(&self.dir.0, &self.config).await
    }
}

// ---- 1-3: browse, cart, checkout; a refused payment ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_fill_a_cart_check_out_and_a_refused_payment() {
    let shop = Shop::new("shop-checkout", "").await;
    let gw = shop.gateway().await;
    let sim = &shop.sim;
    let m = msisdns();

    // The catalog: the four demo offerings, names only with fields=.
    let r = get(&gw, &format!("{OFFERINGS}?fields=name")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-total-count"), Some("4"));
    let offers = r.body.as_array().unwrap();
    for o in offers {
        let keys: BTreeSet<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["href", "id", "name"]), "{o}");
    }
    let offer = offers
        .iter()
        .find(|o| o["id"] == "po-prepaid-sim")
        .expect("the SIM is offered");
    assert_eq!(
        offer,
        &json!({"id": "po-prepaid-sim", "href": format!("{OFFERINGS}/po-prepaid-sim"),
                "name": "Prepaid SIM with a new number"})
    );

    // The available numbers and SIMs: the whole pool.
    let r = get(&gw, &format!("{RESOURCES}?category=MSISDN&limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-total-count"), Some("20"));
    let listed: BTreeSet<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .inspect(|n| {
            assert_eq!(n["category"], "MSISDN", "{n}");
            assert_eq!(n["resourceStatus"], "available", "{n}");
        })
        .map(|n| n["value"].as_str().unwrap())
        .collect();
    assert_eq!(listed, m.iter().map(String::as_str).collect());
    let r = get(&gw, &format!("{RESOURCES}?category=ICCID&limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-total-count"), Some("10"));
    let listed: BTreeSet<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .inspect(|n| assert_eq!(n["resourceStatus"], "available", "{n}"))
        .map(|n| n["value"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ICCIDS.into_iter().collect());

    // A cart: the SIM with a number and a SIM card, both held for it.
    let r = call(
        &gw,
        "POST",
        CARTS,
        JSON,
        Some(json!({"cartItem": [sim_item(&m[0], Some(ICCIDS[0]))]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cart = r.body["id"].as_str().unwrap().to_string();
    let href = format!("{CARTS}/{cart}");
    assert_eq!(r.header("location"), Some(href.as_str()));
    assert_eq!(r.body["status"], "active");
    for id in [format!("msisdn-{}", m[0]), format!("iccid-{}", ICCIDS[0])] {
        let n = resource(&gw, &id).await;
        assert_eq!(n["resourceStatus"], "reserved", "{n}");
        assert_eq!(
            n["relatedParty"],
            json!([{"id": cart, "role": "reservedFor", "@referredType": "ShoppingCart"}]),
            "{n}"
        );
    }

    // Another number (merge patch): the first one is free again.
    let r = call(
        &gw,
        "PATCH",
        &href,
        MERGE,
        Some(json!({"cartItem": [sim_item(&m[1], Some(ICCIDS[0]))]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_available(&gw, &format!("msisdn-{}", m[0])).await;
    assert_eq!(
        resource(&gw, &format!("msisdn-{}", m[1])).await["relatedParty"][0]["id"],
        cart.as_str()
    );
    assert_eq!(
        resource(&gw, &format!("iccid-{}", ICCIDS[0])).await["resourceStatus"],
        "reserved"
    );

    // Read: 4.99 EUR once (9.99 a month is not charged at checkout).
    let r = get(&gw, &href).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        total_of(&r.body["cartTotalPrice"], "oneTime"),
        ("4.99".into(), "EUR".into())
    );
    assert_eq!(
        total_of(&r.body["cartTotalPrice"], "recurring"),
        ("9.99".into(), "EUR".into())
    );
    let chosen: Vec<&str> = r.body["cartItem"][0]["product"]["realizingResource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        chosen,
        [format!("msisdn-{}", m[1]), format!("iccid-{}", ICCIDS[0])]
    );

    // Checkout, paid by carrier billing: acknowledged at once, then completed.
    let (rich, _) = books(sim, RICH);
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart, RICH))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["state"], "acknowledged", "{}", r.body);
    assert_eq!(r.body["shoppingCart"]["id"], cart.as_str());
    let order = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("{ORDERS}/{order}").as_str())
    );
    let o = order_final(&gw, &order).await;
    assert_eq!(o["state"], "completed", "{o}");
    let steps: Vec<(&str, &str)> = o["orderPipeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("validate", "done"),
            ("reserveResources", "done"),
            ("authorizePayment", "done"),
            ("assignResources", "done"),
            ("capturePayment", "done"),
            ("notify", "done")
        ]
    );
    assert_eq!(o["charge"], json!({"unit": "EUR", "value": 4.99}));
    assert_eq!(o["payment"][0]["id"], format!("{order}-pay"));
    assert_eq!(
        total_of(&o["orderTotalPrice"], "oneTime"),
        ("4.99".into(), "EUR".into())
    );
    assert_eq!(books(sim, RICH), (rich - d("4.99"), Decimal::ZERO));
    assert_eq!(sim.open_reservations(), 0);
    assert_owned(&gw, &format!("msisdn-{}", m[1]), &order).await;
    assert_owned(&gw, &format!("iccid-{}", ICCIDS[0]), &order).await;
    assert_available(&gw, &format!("msisdn-{}", m[0])).await;
    let r = get(&gw, &href).await;
    assert_eq!(r.body["status"], "checkedOut", "{}", r.body);
    // A checked-out cart changes no more.
    let r = call(
        &gw,
        "PATCH",
        &href,
        MERGE,
        Some(json!({"cartItem": [sim_item(&m[2], None)]})),
    )
    .await;
    assert_error(&r, 409, "INVALID_STATE");
    assert_available(&gw, &format!("msisdn-{}", m[2])).await;

    // The same checkout again: the same order, nothing charged again; another payer: 409.
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart, RICH))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], order.as_str());
    assert_eq!(r.body["state"], "completed");
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart, POOR))).await;
    assert_error(&r, 409, "CONFLICT");
    assert!(message(&r).contains(&order), "{}", r.body);
    // Some passes of the pipeline later.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(books(sim, RICH), (rich - d("4.99"), Decimal::ZERO));
    let r = get(&gw, ORDERS).await;
    assert_eq!(r.header("x-total-count"), Some("1"), "{}", r.body);

    // A payer the OCS refuses: failed, why in the note, nothing held or charged, the cart
    // active again.
    let cart2 = new_cart(&gw, &m[2], ICCIDS[1]).await;
    let (rich, poor) = (books(sim, RICH), books(sim, POOR));
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart2, POOR))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let refused = r.body["id"].as_str().unwrap().to_string();
    let o = order_final(&gw, &refused).await;
    assert_eq!(o["state"], "failed", "{o}");
    let note = o["note"][0]["text"].as_str().unwrap_or_default();
    assert!(note.starts_with("authorizePayment: "), "{o}");
    assert_eq!(step(&o, "authorizePayment")["state"], "failed", "{o}");
    assert_eq!(step(&o, "reserveResources")["state"], "compensated", "{o}");
    assert_eq!(step(&o, "assignResources")["state"], "pending", "{o}");
    // The refused purchase stays on record: "failed" at the CAMARA checkout API.
    assert_eq!(o["payment"][0]["id"], format!("{refused}-pay"), "{o}");
    let href = o["payment"][0]["href"].as_str().unwrap();
    let p = get(&gw, href).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["status"], "failed", "{}", p.body);
    assert_eq!(books(sim, POOR), poor);
    assert_eq!(books(sim, RICH), rich);
    assert_eq!(sim.open_reservations(), 0);
    assert_available(&gw, &format!("msisdn-{}", m[2])).await;
    assert_available(&gw, &format!("iccid-{}", ICCIDS[1])).await;
    let r = get(&gw, &format!("{CARTS}/{cart2}")).await;
    assert_eq!(r.body["status"], "active", "{}", r.body);

    // The reopened cart checks out with another payer: a new order, charged once.
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart2, RICH))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let second = r.body["id"].as_str().unwrap().to_string();
    assert_ne!(second, refused);
    let o = order_final(&gw, &second).await;
    assert_eq!(o["state"], "completed", "{o}");
    assert_eq!(books(sim, RICH), (rich.0 - d("4.99"), Decimal::ZERO));
    assert_eq!(books(sim, POOR), poor);
    assert_owned(&gw, &format!("msisdn-{}", m[2]), &second).await;
    assert_owned(&gw, &format!("iccid-{}", ICCIDS[1]), &second).await;
    gw.stop();
}

// ---- 5: bad requests -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_tmf_errors_and_change_nothing() {
    let shop = Shop::new("shop-errors", "").await;
    let gw = shop.gateway().await;
    let sim = &shop.sim;
    let m = msisdns();
    let rich = books(sim, RICH);

    // An offering the catalog does not have: 400, the field named.
    let r = call(
        &gw,
        "POST",
        CARTS,
        JSON,
        Some(json!({"cartItem": [{"productOffering": {"id": "po-nope"}}]})),
    )
    .await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(
        message(&r).starts_with("cartItem[0].productOffering.id: ")
            && message(&r).contains("po-nope"),
        "{}",
        r.body
    );

    // A number another cart holds: 409, and the SIM asked for with it is not kept either.
    let holder = new_cart(&gw, &m[0], ICCIDS[0]).await;
    let r = call(
        &gw,
        "POST",
        CARTS,
        JSON,
        Some(json!({"cartItem": [sim_item(&m[0], Some(ICCIDS[1]))]})),
    )
    .await;
    assert_error(&r, 409, "CONFLICT");
    assert!(
        message(&r).contains(&format!("msisdn-{}", m[0])) && message(&r).contains("another cart"),
        "{}",
        r.body
    );
    assert_available(&gw, &format!("iccid-{}", ICCIDS[1])).await;
    assert_eq!(
        resource(&gw, &format!("msisdn-{}", m[0])).await["relatedParty"][0]["id"],
        holder.as_str()
    );

    // A price given by the client is ignored: the catalog's is charged.
    let cheap = json!({"price": {"taxIncludedAmount": {"unit": "EUR", "value": 0.01}},
                       "priceType": "oneTime", "name": "mine"});
    let mut item = sim_item(&m[1], Some(ICCIDS[1]));
    item["itemPrice"] = json!([cheap]);
    item["itemTotalPrice"] = json!([cheap]);
    let r = call(
        &gw,
        "POST",
        CARTS,
        JSON,
        Some(json!({"cartItem": [item], "cartTotalPrice": [cheap]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cheap_cart = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        total_of(&r.body["cartTotalPrice"], "oneTime"),
        ("4.99".into(), "EUR".into())
    );
    assert_eq!(
        r.body["cartItem"][0]["itemPrice"][0]["price"]["taxIncludedAmount"]["value"].to_string(),
        "4.99"
    );

    // An order of a cart that does not exist: 404.
    let r = call(
        &gw,
        "POST",
        ORDERS,
        JSON,
        Some(checkout("no-such-cart", RICH)),
    )
    .await;
    assert_error(&r, 404, "NOT_FOUND");
    assert!(message(&r).contains("no-such-cart"), "{}", r.body);

    // Malformed JSON, to the order and to the cart: 400.
    let r = send(
        &gw,
        "POST",
        ORDERS,
        JSON,
        Some(r#"{"shoppingCart": {"id": "#.into()),
    )
    .await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(
        message(&r).starts_with("body: not valid JSON"),
        "{}",
        r.body
    );
    let r = send(&gw, "POST", CARTS, JSON, Some("{cartItem: []}".into())).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(
        message(&r).starts_with("body: not valid JSON"),
        "{}",
        r.body
    );
    // Not JSON at all: 415.
    let r = send(
        &gw,
        "POST",
        ORDERS,
        "text/plain",
        Some("order please".into()),
    )
    .await;
    assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");

    // Payment methods: an unknown @type, none, a phone number that is not E.164: 400; an
    // external payment this gateway does not offer: 422.
    let mut body = checkout(&cheap_cart, RICH);
    body["paymentMethod"] = json!({"@type": "bitcoin", "phoneNumber": RICH});
    let r = call(&gw, "POST", ORDERS, JSON, Some(body.clone())).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(
        message(&r).starts_with("paymentMethod.@type: "),
        "{}",
        r.body
    );
    assert!(message(&r).contains("bitcoin"), "{}", r.body);
    body.as_object_mut().unwrap().remove("paymentMethod");
    let r = call(&gw, "POST", ORDERS, JSON, Some(body.clone())).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(message(&r).starts_with("paymentMethod: "), "{}", r.body);
    body["paymentMethod"] = json!({"@type": "carrierBilling", "phoneNumber": "0034671999000"});
    let r = call(&gw, "POST", ORDERS, JSON, Some(body.clone())).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(
        message(&r).starts_with("paymentMethod.phoneNumber: "),
        "{}",
        r.body
    );
    body["paymentMethod"] = json!({"@type": "externalPayment", "token": "tok"});
    let r = call(&gw, "POST", ORDERS, JSON, Some(body.clone())).await;
    assert_error(&r, 422, "INVALID_ARGUMENT");
    // Items and prices of the client's own: refused (an order is made of a cart).
    let mut body = checkout(&cheap_cart, RICH);
    body["orderTotalPrice"] = json!([cheap]);
    let r = call(&gw, "POST", ORDERS, JSON, Some(body)).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(message(&r).starts_with("productOrderItem: "), "{}", r.body);
    // A member TMF622 does not have: 400, named.
    let mut body = checkout(&cheap_cart, RICH);
    body["discount"] = json!("50%");
    let r = call(&gw, "POST", ORDERS, JSON, Some(body)).await;
    assert_error(&r, 400, "INVALID_ARGUMENT");
    assert!(message(&r).contains("discount"), "{}", r.body);

    // None of it made an order, took money or checked a cart out.
    let r = get(&gw, ORDERS).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-total-count"), Some("0"), "{}", r.body);
    assert_eq!(books(sim, RICH), rich);
    let r = get(&gw, &format!("{CARTS}/{cheap_cart}")).await;
    assert_eq!(r.body["status"], "active", "{}", r.body);
    gw.stop();
}

// ---- 4: the gateway killed while an order's task hangs ---------------------------------------

/// `[[orders.tasks]]` "delivery": answers 200, or (while `hang`) never answers. Records
/// each request's Idempotency-Key and body.
#[derive(Default)]
struct TaskService {
    hang: AtomicBool,
    calls: Mutex<Vec<(String, Value)>>,
}

async fn delivery(
    axum::extract::State(s): axum::extract::State<Arc<TaskService>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.calls.lock().unwrap().push((key, body));
    if s.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    axum::Json(json!({"status": "accepted", "trackingId": "T-1"}))
}

async fn task_service(s: Arc<TaskService>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/delivery", axum::routing::post(delivery))
        .with_state(s);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cut_by_a_hard_kill_completes_after_the_restart_paid_once() {
    let service = Arc::new(TaskService::default());
    service.hang.store(true, Ordering::SeqCst);
    let (addr, server) = task_service(Arc::clone(&service)).await;
    let tasks =
        format!("[[orders.tasks]]\nname = \"delivery\"\nurl = \"http://{addr}/delivery\"\n");
    let shop = Shop::new("shop-restart", &tasks).await;
    let sim = &shop.sim;
    let m = msisdns();
    let gw = shop.gateway().await;

    let cart = new_cart(&gw, &m[0], ICCIDS[0]).await;
    let (rich, _) = books(sim, RICH);
    let r = call(&gw, "POST", ORDERS, JSON, Some(checkout(&cart, RICH))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order = r.body["id"].as_str().unwrap().to_string();
    let o = order_until(&gw, &order, "reached its delivery task", |o| {
        step(o, "delivery")["state"] == "running"
    })
    .await;
    assert_eq!(o["state"], "inProgress", "{o}");
    assert_eq!(step(&o, "authorizePayment")["state"], "done", "{o}");
    assert_eq!(step(&o, "assignResources")["state"], "pending", "{o}");
    // The request is at the service, unanswered.
    for _ in 0..100 {
        if !service.calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(service.calls.lock().unwrap().len(), 1);
    // Authorised: 4.99 reserved at the OCS, nothing charged yet.
    assert_eq!(books(sim, RICH), (rich, d("4.99")));

    // Killed in the middle of the task; the service answers from now on.
    gw.kill();
    service.hang.store(false, Ordering::SeqCst);
    let gw = shop.gateway().await;
    let o = order_final(&gw, &order).await;
    assert_eq!(o["state"], "completed", "{o}");
    let delivery = step(&o, "delivery");
    assert_eq!(delivery["state"], "done", "{o}");
    assert!(delivery["attempts"].as_u64().unwrap() >= 2, "{o}");
    assert_eq!(delivery["result"]["status"], 200, "{o}");
    assert_eq!(delivery["result"]["answer"]["trackingId"], "T-1", "{o}");
    assert_eq!(step(&o, "authorizePayment")["attempts"], 1, "{o}");
    assert_eq!(step(&o, "capturePayment")["state"], "done", "{o}");
    // Charged exactly once, nothing left reserved.
    assert_eq!(books(sim, RICH), (rich - d("4.99"), Decimal::ZERO));
    assert_eq!(sim.open_reservations(), 0);
    assert_owned(&gw, &format!("msisdn-{}", m[0]), &order).await;
    assert_owned(&gw, &format!("iccid-{}", ICCIDS[0]), &order).await;
    // The service was asked again with the same key: it can tell the retry.
    let calls = service.calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "{calls:?}");
    for (key, body) in &calls {
        assert_eq!(key, &format!("{order}-delivery-perform"));
        assert_eq!(body["action"], "perform", "{body}");
        assert_eq!(body["task"], "delivery", "{body}");
        assert_eq!(body["order"]["id"], order.as_str(), "{body}");
    }
    // Later passes change nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(books(sim, RICH), (rich - d("4.99"), Decimal::ZERO));
    gw.stop();
    server.abort();
}

// ---- 6: the race for ten numbers on PostgreSQL, two instances --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_give_each_number_to_one_cart() {
    let Some(server) =
        Server::shared_or_skip("two_instances_on_postgres_give_each_number_to_one_cart")
    else {
        return;
    };
    let url = server.database("shop_race");
    let sim = simulator().await;
    let store = format!("backend = \"postgres\"\nurl = \"{url}\"");
    let dirs = [TempDir::new("shop-pg-1"), TempDir::new("shop-pg-2")];
    let mut gws = Vec::new();
    // One after the other: the first imports the catalog and the pool.
    for (n, dir) in dirs.iter().enumerate() {
        std::fs::write(dir.0.join("pool.csv"), pool()).unwrap();
        let cfg = config(n + 1, &dir.0, sim.local_addr().unwrap(), &store, "");
        gws.push(Arc::new(GatewayProcess::start(&dir.0, &cfg).await));
    }
    let m = msisdns();
    const CARTS_RACING: usize = 150;
    let mut tasks = Vec::new();
    for i in 0..CARTS_RACING {
        let gw = Arc::clone(&gws[i % 2]);
        let msisdn = m[i % 10].clone();
        tasks.push(tokio::spawn(async move {
            let r = call(
                &gw,
                "POST",
                CARTS,
                JSON,
                Some(json!({"cartItem": [sim_item(&msisdn, None)]})),
            )
            .await;
            (msisdn, r)
        }));
    }
    let mut winners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused = 0;
    for t in tasks {
        let (msisdn, r) = t.await.unwrap();
        match r.status {
            201 => winners
                .entry(msisdn)
                .or_default()
                .push(r.body["id"].as_str().unwrap().to_string()),
            409 => {
                assert_error(&r, 409, "CONFLICT");
                assert!(message(&r).contains(&msisdn), "{}", r.body);
                refused += 1;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(winners.len(), 10, "{winners:?}");
    assert!(winners.values().all(|w| w.len() == 1), "{winners:?}");
    assert_eq!(refused, CARTS_RACING - 10);
    // Each number held for its one cart, as either instance tells; the cart has it.
    for (i, (msisdn, w)) in winners.iter().enumerate() {
        let gw = &gws[i % 2];
        let n = resource(gw, &format!("msisdn-{msisdn}")).await;
        assert_eq!(n["resourceStatus"], "reserved", "{n}");
        assert_eq!(n["relatedParty"][0]["id"], w[0].as_str(), "{n}");
        let c = get(&gws[(i + 1) % 2], &format!("{CARTS}/{}", w[0])).await;
        assert_eq!(c.status, 200, "{}", c.body);
        assert_eq!(c.body["status"], "active");
        assert_eq!(
            c.body["cartItem"][0]["product"]["realizingResource"],
            json!([{"id": format!("msisdn-{msisdn}"),
                    "href": format!("{RESOURCES}/msisdn-{msisdn}"),
                    "@referredType": "LogicalResource",
                    "name": format!("MSISDN {msisdn}"), "value": msisdn}]),
            "{}",
            c.body
        );
    }
    // Only the winners were written; the other ten numbers are still offered.
    for gw in &gws {
        let r = get(gw, &format!("{CARTS}?limit=100")).await;
        assert_eq!(r.header("x-total-count"), Some("10"), "{}", r.body);
        let listed: BTreeSet<&str> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let won: BTreeSet<&str> = winners.values().map(|w| w[0].as_str()).collect();
        assert_eq!(listed, won);
        let r = get(gw, &format!("{RESOURCES}?category=MSISDN&limit=100")).await;
        assert_eq!(r.header("x-total-count"), Some("10"), "{}", r.body);
        let free: BTreeSet<&str> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["value"].as_str().unwrap())
            .collect();
        assert_eq!(free, m[10..].iter().map(String::as_str).collect());
    }
    for gw in gws {
        match Arc::try_unwrap(gw) {
            Ok(gw) => gw.stop(),
            Err(_) => panic!("the gateway is still shared"),
        }
    }
}
