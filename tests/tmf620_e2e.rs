//! TMF620 end to end: the `gateway` process (`gateway serve`) with `[catalog] file` set to
//! the demo catalog, browsed over real HTTP; then `gateway catalog import` (a refused file,
//! then a smaller one replacing the catalog) and a restart that serves what was imported;
//! and the configured file imported again when it differs from the last import.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const BASE: &str = "/tmf-api/productCatalogManagement/v4";

fn config(dir: &Path, ocs: std::net::SocketAddr, catalog: Option<&Path>) -> String {
    let catalog = catalog
        .map(|f| format!("[catalog]\nfile = \"{}\"\n", f.display()))
        .unwrap_or_default();
    format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[diameter.timers]
reconnect_min = "200ms"
reconnect_max = "1s"

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

{catalog}
[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
allowed_operations = ["topup-balance"]
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    )
}

async fn simulator() -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

async fn get(gw: &GatewayProcess, path: &str) -> Answer {
    gw.request("GET", path, Some(&basic("shop", "shop-secret")), &[], None)
        .await
        .unwrap()
}

fn ids(a: &Answer) -> Vec<&str> {
    a.body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", a.body))
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

fn count(a: &Answer, name: &str) -> usize {
    a.header(name).unwrap().parse().unwrap()
}

fn gateway(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_demo_catalog_is_served_imported_and_replaced() {
    let dir = TempDir::new("tmf620");
    let sim = simulator().await;
    let ocs = sim.local_addr().unwrap();
    let demo = dir.0.join("demo.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/catalog/demo.json"),
        &demo,
    )
    .unwrap();

    // 1. Out of the box: the configured file is imported at start and browsed.
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0, ocs, Some(&demo))).await;
    let all = get(&gw, &format!("{BASE}/productOffering")).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(count(&all, "x-total-count"), 4);
    assert_eq!(count(&all, "x-result-count"), 4);
    let sellable = get(
        &gw,
        &format!("{BASE}/productOffering?isSellable=true&lifecycleStatus=Launched&fields=name"),
    )
    .await;
    assert_eq!(
        ids(&sellable),
        ["po-data-10gb", "po-phone-x1", "po-prepaid-sim"]
    );
    assert_eq!(
        sellable.body[2],
        json!({"id": "po-prepaid-sim", "href": format!("{BASE}/productOffering/po-prepaid-sim"),
               "name": "Prepaid SIM with a new number"})
    );
    let page = get(&gw, &format!("{BASE}/productOffering?offset=1&limit=2")).await;
    assert_eq!(ids(&page), ["po-phone-x0", "po-phone-x1"]);
    assert_eq!(count(&page, "x-total-count"), 4);
    assert_eq!(count(&page, "x-result-count"), 2);
    let devices = get(
        &gw,
        &format!("{BASE}/productOffering?category.id=mobile-devices"),
    )
    .await;
    assert_eq!(ids(&devices), ["po-phone-x0", "po-phone-x1"]);
    // The offering's prices, followed by their hrefs, exact as written in the file.
    let sim_offer = get(&gw, &format!("{BASE}/productOffering/po-prepaid-sim")).await;
    assert_eq!(sim_offer.status, 200);
    let mut prices = Vec::new();
    for r in sim_offer.body["productOfferingPrice"].as_array().unwrap() {
        let p = get(&gw, r["href"].as_str().unwrap()).await;
        assert_eq!(p.status, 200, "{}", p.body);
        prices.push((
            p.body["priceType"].as_str().unwrap().to_string(),
            p.body["price"]["value"].to_string(),
            p.body["price"]["unit"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        prices,
        [
            ("oneTime".to_string(), "4.99".to_string(), "EUR".to_string()),
            (
                "recurring".to_string(),
                "9.99".to_string(),
                "EUR".to_string()
            ),
        ]
    );
    let spec = get(
        &gw,
        sim_offer.body["productSpecification"]["href"]
            .as_str()
            .unwrap(),
    )
    .await;
    let needs: Vec<&str> = spec.body["resourceSpecification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(needs, ["MSISDN", "ICCID"]);
    let bundle = get(&gw, &format!("{BASE}/productOfferingPrice/price-data-10gb")).await;
    assert_eq!(bundle.body["price"]["value"].to_string(), "5.00");
    // Errors are TMF Error bodies.
    let missing = get(&gw, &format!("{BASE}/category/nope")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], "NOT_FOUND");
    assert_eq!(missing.body["@type"], "Error");
    let bad = get(&gw, &format!("{BASE}/productOffering?colour=red")).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["message"].as_str().unwrap().starts_with("colour:"),
        "{}",
        bad.body
    );
    let anon = gw
        .request("GET", &format!("{BASE}/productOffering"), None, &[], None)
        .await
        .unwrap();
    assert_eq!(anon.status, 401);
    assert_eq!(anon.body["code"], "UNAUTHENTICATED");
    let (_, log) = gw.terminate_and_log();
    assert!(
        log.iter()
            .any(|l| l.contains("catalog imported (4 ProductOffering")),
        "{log:#?}"
    );

    // 2. The import command: a refused file writes nothing and names what is wrong.
    let cfg_path = dir.0.join("gateway.toml");
    let cfg = cfg_path.to_str().unwrap();
    let broken = dir.0.join("broken.json");
    std::fs::write(
        &broken,
        json!([
            {"@type": "ProductOfferingPrice", "id": "p1", "price": {"value": "1.00", "unit": "EUR"}},
            {"@type": "ProductOffering", "id": "o1", "productOfferingPrice": [{"id": "p9"}]},
        ])
        .to_string(),
    )
    .unwrap();
    let (ok, _, err) = gateway(&["catalog", "import", broken.to_str().unwrap(), "-c", cfg]);
    assert!(!ok);
    assert!(
        err.contains("entry 0 (ProductOfferingPrice \"p1\"): price.value: must be a JSON number"),
        "{err}"
    );
    assert!(
        err.contains(
            "entry 1 (ProductOffering \"o1\"): productOfferingPrice[0].id: no ProductOfferingPrice \"p9\""
        ),
        "{err}"
    );
    // A valid, smaller file replaces the catalog.
    let smaller = dir.0.join("smaller.json");
    let text = r#"[
      {"@type": "ProductOfferingPrice", "id": "price-esim", "priceType": "oneTime",
       "price": {"value": 0.50, "unit": "EUR"}},
      {"@type": "ProductOffering", "id": "po-esim", "name": "eSIM", "isSellable": true,
       "lifecycleStatus": "Launched", "productOfferingPrice": [{"id": "price-esim"}]}
    ]"#;
    std::fs::write(&smaller, text).unwrap();
    let (ok, out, err) = gateway(&["catalog", "import", smaller.to_str().unwrap(), "-c", cfg]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("2 added, 0 changed, 0 unchanged, 14 retired"),
        "{out}"
    );

    // 3. Without [catalog] file, a restart serves what was imported.
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0, ocs, None)).await;
    let all = get(&gw, &format!("{BASE}/productOffering")).await;
    assert_eq!(ids(&all), ["po-esim"]);
    let p = get(&gw, &format!("{BASE}/productOfferingPrice/price-esim")).await;
    assert_eq!(p.body["price"]["value"].to_string(), "0.50");
    let gone = get(&gw, &format!("{BASE}/productOffering/po-prepaid-sim")).await;
    assert_eq!(gone.status, 404, "retired");
    gw.stop();

    // 4. With the file again: its hash is not the last import's, so it is imported.
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0, ocs, Some(&demo))).await;
    let all = get(&gw, &format!("{BASE}/productOffering")).await;
    assert_eq!(count(&all, "x-total-count"), 4);
    let gone = get(&gw, &format!("{BASE}/productOffering/po-esim")).await;
    assert_eq!(gone.status, 404);
    let cats: Value = get(&gw, &format!("{BASE}/category?isRoot=true")).await.body;
    assert_eq!(cats[0]["id"], "mobile");
    gw.stop();
}
