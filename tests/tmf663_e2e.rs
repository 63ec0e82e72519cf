//! TMF663 end to end through the `gateway` binary on SQLite, with the demo catalog and a pool
//! of ten numbers: a cart created, patched both ways, read, deleted (its number released);
//! then the race: 200 carts created at once, each wanting one of the ten numbers, and each
//! number ends in exactly one cart, as TMF639 itself tells.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const CARTS: &str = "/tmf-api/shoppingCart/v4/shoppingCart";
const RESOURCES: &str = "/tmf-api/resourceInventoryManagement/v4/resource";
const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/catalog/demo.json");

fn pool() -> String {
    let mut s = String::from("category,value,portedIn\n");
    for i in 0..10 {
        s.push_str(&format!("MSISDN,346001000{i:02},\n"));
    }
    s
}

fn config(dir: &Path, ocs: std::net::SocketAddr) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{ocs}"

[http]
listen = "127.0.0.1:0"

[store]
backend = "sqlite"
data_dir = "{data}"

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
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
        pool = dir.join("pool.csv").display(),
    )
}

async fn call(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> Answer {
    let auth = basic("shop", "shop-secret");
    gw.request(
        method,
        path,
        Some(&auth),
        &[("content-type", content_type)],
        body.map(|b| b.to_string()),
    )
    .await
    .unwrap()
}

fn sim(msisdn: &str) -> Value {
    json!({"productOffering": {"id": "po-prepaid-sim"},
           "product": {"realizingResource": [{"id": format!("msisdn-{msisdn}")}]}})
}

async fn number(gw: &GatewayProcess, msisdn: &str) -> Value {
    let r = call(
        gw,
        "GET",
        &format!("{RESOURCES}/msisdn-{msisdn}"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmf663_end_to_end() {
    let dir = TempDir::new("tmf663");
    let sim_ocs = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    std::fs::write(dir.0.join("pool.csv"), pool()).unwrap();
    let gw = Arc::new(
        GatewayProcess::start(&dir.0, &config(&dir.0, sim_ocs.local_addr().unwrap())).await,
    );

    // Create: priced from the catalog (3 x 4.99), the number held for the cart.
    let r = call(
        &gw,
        "POST",
        CARTS,
        "application/json",
        Some(
            json!({"cartItem": [{"quantity": 3, "productOffering": {"id": "po-prepaid-sim"},
            "product": {"productCharacteristic": [{"name": "MSISDN", "value": "+34600100000"}]}}],
            "cartTotalPrice": [{"price": {"taxIncludedAmount": {"unit": "EUR", "value": 0}}}]}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let href = format!("{CARTS}/{id}");
    assert_eq!(r.header("location"), Some(href.as_str()));
    let total = &r.body["cartTotalPrice"][0]["price"]["taxIncludedAmount"];
    assert_eq!(total["value"].to_string(), "14.97");
    assert_eq!(total["unit"], "EUR");
    let n = number(&gw, "34600100000").await;
    assert_eq!(n["resourceStatus"], "reserved");
    assert_eq!(n["relatedParty"][0]["id"], id.as_str());

    // Merge patch: the items replaced, the number changed (the old one released).
    let r = call(
        &gw,
        "PATCH",
        &href,
        "application/merge-patch+json",
        Some(json!({"cartItem": [sim("34600100001")]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["cartTotalPrice"][0]["price"]["taxIncludedAmount"]["value"].to_string(),
        "4.99"
    );
    assert_eq!(
        number(&gw, "34600100000").await["resourceStatus"],
        "available"
    );
    assert_eq!(
        number(&gw, "34600100001").await["resourceStatus"],
        "reserved"
    );

    // JSON Patch: the quantity; an id change refused.
    let r = call(
        &gw,
        "PATCH",
        &href,
        "application/json-patch+json",
        Some(json!([{"op": "replace", "path": "/cartItem/0/quantity", "value": 2}])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["cartItem"][0]["itemTotalPrice"][0]["price"]["taxIncludedAmount"]["value"]
            .to_string(),
        "9.98"
    );
    let r = call(
        &gw,
        "PATCH",
        &href,
        "application/json-patch+json",
        Some(json!([{"op": "replace", "path": "/id", "value": "cart-x"}])),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["@type"], "Error");

    // Read; delete; the number is free again.
    let r = call(&gw, "GET", &href, "application/json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["cartItem"][0]["quantity"], 2);
    let r = call(&gw, "DELETE", &href, "application/json", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        number(&gw, "34600100001").await["resourceStatus"],
        "available"
    );
    let r = call(&gw, "GET", &href, "application/json", None).await;
    assert_eq!(r.status, 404);

    // The race: 200 carts at once, cart i wanting number i % 10.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let gw = Arc::clone(&gw);
        tasks.push(tokio::spawn(async move {
            let msisdn = format!("346001000{:02}", i % 10);
            let r = call(
                &gw,
                "POST",
                CARTS,
                "application/json",
                Some(json!({"cartItem": [sim(&msisdn)]})),
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
                assert_eq!(r.body["code"], "CONFLICT", "{}", r.body);
                refused += 1;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(winners.len(), 10, "{winners:?}");
    assert!(winners.values().all(|w| w.len() == 1), "{winners:?}");
    assert_eq!(refused, 190);
    // TMF639 says the same: each number reserved for its one cart.
    for (msisdn, w) in &winners {
        let n = number(&gw, msisdn).await;
        assert_eq!(n["resourceStatus"], "reserved", "{n}");
        assert_eq!(n["relatedParty"][0]["id"], w[0].as_str(), "{n}");
    }
    // Only the winners were written.
    let r = call(
        &gw,
        "GET",
        &format!("{CARTS}?limit=100"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(r.header("x-total-count"), Some("10"));
    let listed: HashSet<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let won: HashSet<&str> = winners.values().map(|w| w[0].as_str()).collect();
    assert_eq!(listed, won);
    let a = call(
        &gw,
        "GET",
        &format!("{RESOURCES}?category=MSISDN"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(a.header("x-total-count"), Some("0"), "{}", a.body);
    match Arc::try_unwrap(gw) {
        Ok(gw) => gw.stop(),
        Err(_) => panic!("the gateway is still shared"),
    }
}
