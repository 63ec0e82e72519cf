//! TMF639 end to end through the `gateway` binary: `gateway serve` importing its
//! `[inventory] file` into an empty SQLite store, numbers listed and held over real HTTP,
//! `gateway inventory import` run beside the serving process (a re-import keeps the holds),
//! a bad pool refused with its line named, and a hold that runs out taken by another cart.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const RESOURCES: &str = "/tmf-api/resourceInventoryManagement/v4/resource";

const POOL: &str = "category,value,portedIn,tier\n\
    MSISDN,34600100001,,\nMSISDN,34600100002,,\nMSISDN,34600100003,,\n\
    MSISDN,34600777777,,gold\nMSISDN,34699100001,true,\nICCID,8934070000000000015,,\n";

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

[inventory]
hold = "1s"
file = "{pool}"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"

[[apps]]
id = "other"
api_key = "other-key"
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
        pool = dir.join("pool.csv").display(),
    )
}

async fn call(
    gw: &GatewayProcess,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let auth = basic("shop", "shop-secret");
    let (auth, headers): (Option<&str>, Vec<(&str, &str)>) = match who {
        "shop" => (Some(&auth), vec![]),
        _ => (None, vec![("x-api-key", "other-key")]),
    };
    let mut headers = headers;
    if body.is_some() {
        headers.push(("content-type", "application/merge-patch+json"));
    }
    gw.request(method, path, auth, &headers, body.map(|b| b.to_string()))
        .await
        .unwrap()
}

fn reserve(cart: &str) -> Value {
    json!({"resourceStatus": "reserved", "relatedParty": [{"id": cart}]})
}

fn import(dir: &Path, file: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["inventory", "import"])
        .arg(dir.join(file))
        .arg("-c")
        .arg(dir.join("gateway.toml"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmf639_end_to_end() {
    let dir = TempDir::new("tmf639");
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    std::fs::write(dir.0.join("pool.csv"), POOL).unwrap();
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0, sim.local_addr().unwrap())).await;
    assert!(
        gw.log()
            .iter()
            .any(|l| l.contains("inventory pool imported") && l.contains("resources=6")),
        "{:?}",
        gw.log()
    );

    // The pool served: the four available MSISDNs (not the ported-in one), random order.
    let a = call(
        &gw,
        "shop",
        "GET",
        &format!("{RESOURCES}?category=MSISDN"),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-total-count"), Some("4"));
    let mut got: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["34600100001", "34600100002", "34600100003", "34600777777"]
    );
    let vanity = call(
        &gw,
        "shop",
        "GET",
        &format!("{RESOURCES}?value=*777*"),
        None,
    )
    .await;
    assert_eq!(vanity.body.as_array().unwrap().len(), 1);
    let id = vanity.body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "msisdn-34600777777");

    // Held for cart-1; another application's cart is refused with a TMF Error.
    let r = call(
        &gw,
        "shop",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(reserve("cart-1")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resourceStatus"], "reserved");
    let r = call(
        &gw,
        "other",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(reserve("cart-2")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["code"], "CONFLICT");
    assert_eq!(r.body["@type"], "Error");
    let r = call(
        &gw,
        "other",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(json!({"resourceStatus": "reserved"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("relatedParty: "),
        "{}",
        r.body
    );

    // A re-import (grown by one number) beside the serving process keeps the hold.
    std::fs::write(
        dir.0.join("more.csv"),
        format!("{POOL}MSISDN,34600100004,,\n"),
    )
    .unwrap();
    let out = import(&dir.0, "more.csv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 7 resources"), "{stdout}");
    assert!(stdout.contains("7 in the inventory"), "{stdout}");
    let r = call(&gw, "shop", "GET", &format!("{RESOURCES}/{id}"), None).await;
    assert_eq!(r.body["resourceStatus"], "reserved");
    assert_eq!(r.body["relatedParty"][0]["id"], "cart-1");
    let r = call(
        &gw,
        "shop",
        "GET",
        &format!("{RESOURCES}/msisdn-34600100004"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    // A bad pool: refused, its line named, nothing of it written.
    std::fs::write(
        dir.0.join("bad.csv"),
        "category,value\nMSISDN,34600100009\nICCID,8934070000000000016\n",
    )
    .unwrap();
    let out = import(&dir.0, "bad.csv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.csv:3: value:") && stderr.contains("Luhn"),
        "{stderr}"
    );
    let r = call(
        &gw,
        "shop",
        "GET",
        &format!("{RESOURCES}/msisdn-34600100009"),
        None,
    )
    .await;
    assert_eq!(r.status, 404);

    // The hold (1 s) runs out: another cart takes the number; the first cannot release it.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = call(
        &gw,
        "other",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(reserve("cart-2")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let release = json!({"resourceStatus": "available", "relatedParty": [{"id": "cart-1"}]});
    let r = call(
        &gw,
        "shop",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(release),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let release = json!({"resourceStatus": "available", "relatedParty": [{"id": "cart-2"}]});
    let r = call(
        &gw,
        "other",
        "PATCH",
        &format!("{RESOURCES}/{id}"),
        Some(release),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resourceStatus"], "available");

    // A restart on the same store does not import the pool again (it is not empty).
    gw.stop();
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0, sim.local_addr().unwrap())).await;
    assert!(
        !gw.log()
            .iter()
            .any(|l| l.contains("inventory pool imported"))
    );
    let a = call(
        &gw,
        "shop",
        "GET",
        &format!("{RESOURCES}?category=MSISDN"),
        None,
    )
    .await;
    assert_eq!(a.header("x-total-count"), Some("5"));
    gw.stop();
}
