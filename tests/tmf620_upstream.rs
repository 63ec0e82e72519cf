//! TMF620 `[catalog] upstream`: the `gateway` process mirrors another TMF620 server, served
//! here by the test (the demo catalog, three entries a page, a bearer token required). The
//! mirror is served; a change upstream (a price, an offering withdrawn) arrives with the next
//! reload; an upstream failing with 500 leaves the last synced catalog in service and says so
//! in the log; `gateway catalog sync --upstream` does one sync by hand.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const BASE: &str = "/tmf-api/productCatalogManagement/v4";
const TOKEN: &str = "upstream-s3cret";
/// What the test's server sends at most per page (less than the gateway asks for).
const SERVER_PAGE: usize = 3;

#[derive(Default)]
struct Upstream {
    entries: Mutex<Vec<Value>>,
    failing: Mutex<bool>,
    /// (path, offset, authorised) of every request.
    seen: Mutex<Vec<(String, usize, bool)>>,
}

fn type_of(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "productOffering" => "ProductOffering",
        "productOfferingPrice" => "ProductOfferingPrice",
        "category" => "Category",
        "productSpecification" => "ProductSpecification",
        _ => return None,
    })
}

async fn listing(
    State(up): State<Arc<Upstream>>,
    UrlPath(segment): UrlPath<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let num = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let offset = num("offset").unwrap_or(0);
    let limit = num("limit").unwrap_or(10).min(SERVER_PAGE);
    let authorised = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {TOKEN}").as_str());
    up.seen
        .lock()
        .unwrap()
        .push((segment.clone(), offset, authorised));
    if !authorised {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    }
    if *up.failing.lock().unwrap() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "catalog database down").into_response();
    }
    let Some(kind) = type_of(&segment) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let all: Vec<Value> = up
        .entries
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["@type"] == kind)
        .cloned()
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    ([("x-total-count", all.len().to_string())], axum::Json(page)).into_response()
}

async fn serve_upstream(up: Arc<Upstream>) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/tmf-api/productCatalogManagement/v4/{segment}",
            axum::routing::get(listing),
        )
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(dir: &Path, ocs: std::net::SocketAddr, upstream: &str) -> String {
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
upstream = "{upstream}"
upstream_token = "{TOKEN}"
upstream_timeout = "5s"
reload_interval = "1s"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    )
}

async fn get(gw: &GatewayProcess, path: &str) -> Answer {
    let auth = basic("shop", "shop-secret");
    gw.request("GET", path, Some(&auth), &[], None)
        .await
        .unwrap()
}

fn ids(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a
        .body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", a.body))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Polls `path` until `done` holds for its answer (the reload runs every second).
async fn until(gw: &GatewayProcess, path: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    for _ in 0..100 {
        let a = get(gw, path).await;
        if done(&a) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = get(gw, path).await;
    panic!("{path} never changed as expected: {} {}", a.status, a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_mirrored_from_an_upstream_tmf620_server() {
    let dir = TempDir::new("tmf620-upstream");
    let demo: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/catalog/demo.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let up = Arc::new(Upstream::default());
    *up.entries.lock().unwrap() = demo.clone();
    let addr = serve_upstream(Arc::clone(&up)).await;
    let upstream_url = format!("http://{addr}{BASE}");
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    let conf = dir.0.join("gateway.toml");
    std::fs::write(
        &conf,
        config(&dir.0, sim.local_addr().unwrap(), &upstream_url),
    )
    .unwrap();
    let gw = GatewayProcess::start(&dir.0, &std::fs::read_to_string(&conf).unwrap()).await;

    // Served as upstream has it: every entry of the demo catalog, paged through.
    let want = |kind: &str| {
        let mut v: Vec<String> = demo
            .iter()
            .filter(|e| e["@type"] == kind)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let offers = get(&gw, &format!("{BASE}/productOffering?limit=100")).await;
    assert_eq!(offers.status, 200, "{}", offers.body);
    assert_eq!(ids(&offers), want("ProductOffering"));
    let prices = get(&gw, &format!("{BASE}/productOfferingPrice?limit=100")).await;
    assert_eq!(ids(&prices), want("ProductOfferingPrice"));
    let cats = get(&gw, &format!("{BASE}/category?limit=100")).await;
    assert_eq!(ids(&cats), want("Category"));
    let price = get(
        &gw,
        &format!("{BASE}/productOfferingPrice/price-sim-activation"),
    )
    .await;
    assert_eq!(price.body["price"]["value"].to_string(), "4.99");
    // The gateway's own hrefs, and the listings read page by page with the token.
    assert_eq!(
        price.body["href"],
        format!("{BASE}/productOfferingPrice/price-sim-activation")
    );
    {
        let seen = up.seen.lock().unwrap();
        assert!(seen.iter().all(|(_, _, auth)| *auth), "{seen:?}");
        let pages = seen
            .iter()
            .filter(|(s, _, _)| s == "productOffering")
            .map(|(_, o, _)| *o)
            .collect::<Vec<_>>();
        assert!(
            pages.starts_with(&[0, SERVER_PAGE]),
            "productOffering pages asked: {pages:?}"
        );
    }

    // Upstream changes: a new price, an offering withdrawn. The next reload brings both.
    {
        let mut e = up.entries.lock().unwrap();
        for x in e.iter_mut() {
            if x["id"] == "price-sim-activation" {
                x["price"]["value"] = json!(5.49);
            }
        }
        e.retain(|x| x["id"] != "po-phone-x0");
    }
    until(
        &gw,
        &format!("{BASE}/productOfferingPrice/price-sim-activation"),
        |a| a.body["price"]["value"].to_string().as_str() == "5.49",
    )
    .await;
    let gone = until(&gw, &format!("{BASE}/productOffering/po-phone-x0"), |a| {
        a.status == 404
    })
    .await;
    assert_eq!(gone.body["@type"], "Error");

    // Upstream down: the mirror keeps serving what it last synced, and the log says why.
    *up.failing.lock().unwrap() = true;
    let failures_before = up.seen.lock().unwrap().len();
    for _ in 0..50 {
        if up.seen.lock().unwrap().len() >= failures_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up.seen.lock().unwrap().len() >= failures_before + 2);
    let kept = get(
        &gw,
        &format!("{BASE}/productOfferingPrice/price-sim-activation"),
    )
    .await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.body["price"]["value"].to_string(), "5.49");
    let offers = get(&gw, &format!("{BASE}/productOffering?limit=100")).await;
    assert_eq!(offers.body.as_array().unwrap().len(), 3, "{}", offers.body);
    let (_, log) = gw.terminate_and_log();
    assert!(
        log.iter().any(|l| l.contains("catalog reload")
            && l.contains("500")
            && l.contains("the catalog is kept")),
        "no reload failure logged:\n{}",
        log.join("\n")
    );

    // By hand, with the gateway stopped: one sync, then nothing to do.
    *up.failing.lock().unwrap() = false;
    {
        let mut e = up.entries.lock().unwrap();
        e.retain(|x| x["id"] != "po-data-10gb" && x["id"] != "price-data-10gb");
    }
    let sync = || {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["catalog", "sync", "-c"])
            .arg(&conf)
            .args(["--upstream", &upstream_url])
            .output()
            .unwrap()
    };
    let out = sync();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 retired"), "{text}");
    let out = sync();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unchanged"), "{text}");
    // Without a token the upstream refuses: the command says so and changes nothing.
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace(&format!("upstream_token = \"{TOKEN}\""), ""),
    )
    .unwrap();
    let out = sync();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("401"), "{err}");
}
