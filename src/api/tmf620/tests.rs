//! TMF620 through `router(state).oneshot(request)` on the real router, over a memory store
//! holding the demo catalog (`conf/catalog/demo.json`) imported by [`catalog::import`]; and
//! the import's validation, one test per class of error.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::catalog::Source;
use super::catalog::{self, ImportError, Kind, Mode};
use crate::api::{ApiState, Apps, router};
use crate::config::{AppConfig, HttpConfig};
use crate::store::Store;

const DEMO: &[u8] = include_bytes!("../../../conf/catalog/demo.json");
const BASE: &str = "/tmf-api/productCatalogManagement/v4";

fn app(id: &str, key: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: key.into(),
        allowed_currencies: vec!["GBP".into()],
        max_amount: None,
        // Any application reads the catalog, whatever its policy.
        allowed_operations: vec!["query-balance".into()],
        admin: false,
        oidc_client_id: String::new(),
    }
}

struct World {
    _gw: crate::gateway::Gateway,
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
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn count(&self, name: &str) -> usize {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    }

    /// The ids of a listing, in order.
    fn ids(&self) -> Vec<String> {
        self.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The TMF Error code and message, after checking the body is that shape.
    fn error(&self) -> (String, String) {
        let v = self.json();
        for k in ["code", "reason", "message", "status", "@type"] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        assert_eq!(v["status"], self.status.as_u16().to_string());
        assert_eq!(v["@type"], "Error");
        (
            v["code"].as_str().unwrap().to_string(),
            v["message"].as_str().unwrap().to_string(),
        )
    }
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
    let state = ApiState::new(
        Arc::clone(&gw.charging),
        Arc::new(Apps::new(&[app("shop", "k-shop"), app("kiosk", "k-kiosk")])),
        Arc::new(|| true),
        None,
    );
    let router = router(state, &HttpConfig::default());
    World {
        _gw: gw,
        store,
        router,
    }
}

impl World {
    async fn get_as(&self, key: Option<&str>, path: &str) -> Resp {
        let mut req = Request::get(path);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
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

    async fn get(&self, path: &str) -> Resp {
        self.get_as(Some("k-shop"), path).await
    }
}

// ---- reading ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_routers_own_answers_under_the_catalog_are_tmf_errors() {
    let w = world().await;
    let r = w.get(&format!("{BASE}/productOrdering")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = r.json();
    assert_eq!(e["@type"], "Error", "{e}");
    assert_eq!(e["status"], "404", "{e}");
    assert_eq!(e["code"], "NOT_FOUND", "{e}");
}

#[tokio::test]
async fn every_collection_lists_the_demo_catalog_with_its_counts() {
    let w = world().await;
    for (segment, n) in [
        ("productOffering", 4),
        ("productOfferingPrice", 4),
        ("category", 3),
        ("productSpecification", 3),
    ] {
        let r = w.get(&format!("{BASE}/{segment}")).await;
        assert_eq!(r.status, StatusCode::OK, "{segment}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json;charset=utf-8")
        );
        assert_eq!(r.count("x-total-count"), n, "{segment}");
        assert_eq!(r.count("x-result-count"), n, "{segment}");
        for e in r.json().as_array().unwrap() {
            let id = e["id"].as_str().unwrap();
            assert_eq!(e["href"], format!("{BASE}/{segment}/{id}"), "{e}");
        }
    }
    // Oldest import first, then by id: the order is stable.
    let r = w.get(&format!("{BASE}/productOffering")).await;
    assert_eq!(
        r.ids(),
        [
            "po-data-10gb",
            "po-phone-x0",
            "po-phone-x1",
            "po-prepaid-sim"
        ]
    );
}

#[tokio::test]
async fn an_entry_is_served_as_imported_with_hrefs_and_exact_prices() {
    let w = world().await;
    let r = w
        .get(&format!("{BASE}/productOffering/po-prepaid-sim"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let o = r.json();
    let keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys[..4],
        ["id", "href", "@type", "name"],
        "id and href first, then the file's order"
    );
    assert_eq!(o["name"], "Prepaid SIM with a new number");
    assert_eq!(o["isSellable"], true);
    assert_eq!(
        o["productOfferingPrice"][1]["href"],
        format!("{BASE}/productOfferingPrice/price-sim-monthly")
    );
    assert_eq!(
        o["productSpecification"]["href"],
        format!("{BASE}/productSpecification/spec-prepaid-sim")
    );
    assert_eq!(
        o["category"][0]["href"],
        format!("{BASE}/category/mobile-plans")
    );
    // Numbers as written in the file (5.00 stays 5.00, never 5.0 or 4.9900000001).
    let r = w
        .get(&format!("{BASE}/productOfferingPrice/price-data-10gb"))
        .await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains(r#""price":{"value":5.00,"unit":"EUR"}"#),
        "{text}"
    );
    let doc = catalog::get(&w.store, Kind::ProductOfferingPrice, "price-sim-activation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        catalog::price_of(&doc),
        Some((Decimal::from_str("4.99").unwrap(), "EUR".to_string()))
    );
    // The specification that needs an MSISDN and an ICCID.
    let r = w
        .get(&format!(
            "{BASE}/productSpecification?resourceSpecification.id=ICCID"
        ))
        .await;
    assert_eq!(r.ids(), ["spec-prepaid-sim"]);
    let s = &r.json()[0];
    let needs: Vec<&str> = s["resourceSpecification"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(needs, ["MSISDN", "ICCID"]);
}

#[tokio::test]
async fn fields_keep_the_attributes_named_and_id_and_href() {
    let w = world().await;
    let r = w
        .get(&format!(
            "{BASE}/productOffering?fields=name,lifecycleStatus&limit=1"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = &r.json()[0];
    let keys: HashSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "href", "name", "lifecycleStatus"]),
        "{e}"
    );
    let r = w.get(&format!("{BASE}/category/mobile?fields=name")).await;
    assert_eq!(
        r.json(),
        json!({"id": "mobile", "href": format!("{BASE}/category/mobile"), "name": "Mobile"})
    );
    // An attribute no entry has: only id and href.
    let r = w
        .get(&format!("{BASE}/category/mobile?fields=nothing"))
        .await;
    assert_eq!(r.json().as_object().unwrap().len(), 2);
    let r = w
        .get(&format!("{BASE}/category?fields=subCategory.id"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().1.starts_with("fields:"), "{}", r.error().1);
}

#[tokio::test]
async fn attribute_filters_match_exactly_and_combine() {
    let w = world().await;
    let list = |q: &str| format!("{BASE}/productOffering?{q}");
    let r = w.get(&list("lifecycleStatus=Launched")).await;
    assert_eq!(r.ids(), ["po-data-10gb", "po-phone-x1", "po-prepaid-sim"]);
    assert_eq!(r.count("x-total-count"), 3);
    let r = w.get(&list("isSellable=false")).await;
    assert_eq!(r.ids(), ["po-phone-x0"]);
    let r = w.get(&list("category.id=mobile-devices")).await;
    assert_eq!(r.ids(), ["po-phone-x0", "po-phone-x1"]);
    let r = w
        .get(&list("category.id=mobile-devices&isSellable=true"))
        .await;
    assert_eq!(r.ids(), ["po-phone-x1"]);
    let r = w.get(&list("channel.id=app")).await;
    assert_eq!(r.ids(), ["po-data-10gb"]);
    let r = w
        .get(&list("productOfferingPrice.id=price-sim-monthly"))
        .await;
    assert_eq!(r.ids(), ["po-prepaid-sim"]);
    // Exact: no prefix or case folding.
    let r = w.get(&list("lifecycleStatus=launched")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.count("x-total-count"), 0);
    assert_eq!(r.json(), json!([]));
    let r = w.get(&list("name=Phone%20X1%20128%20GB")).await;
    assert_eq!(r.ids(), ["po-phone-x1"]);
    // Prices: by type, and by value compared as decimals (5 is 5.00).
    let prices = |q: &str| format!("{BASE}/productOfferingPrice?{q}");
    let r = w.get(&prices("priceType=recurring")).await;
    assert_eq!(r.ids(), ["price-sim-monthly"]);
    let r = w.get(&prices("price.value=5")).await;
    assert_eq!(r.ids(), ["price-data-10gb"]);
    let r = w.get(&prices("price.unit=EUR&priceType=oneTime")).await;
    assert_eq!(r.count("x-total-count"), 3);
    let r = w.get(&format!("{BASE}/category?isRoot=true")).await;
    assert_eq!(r.ids(), ["mobile"]);
    let r = w.get(&format!("{BASE}/category?parentId=mobile")).await;
    assert_eq!(r.ids(), ["mobile-devices", "mobile-plans"]);
}

#[tokio::test]
async fn paging_counts_all_that_match_and_returns_the_page() {
    let w = world().await;
    let r = w
        .get(&format!("{BASE}/productOffering?offset=1&limit=2"))
        .await;
    assert_eq!(r.ids(), ["po-phone-x0", "po-phone-x1"]);
    assert_eq!(r.count("x-total-count"), 4);
    assert_eq!(r.count("x-result-count"), 2);
    let r = w
        .get(&format!("{BASE}/productOffering?offset=3&limit=1000"))
        .await;
    assert_eq!(r.ids(), ["po-prepaid-sim"]);
    assert_eq!(r.count("x-result-count"), 1);
    let r = w.get(&format!("{BASE}/productOffering?offset=10")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.count("x-total-count"), 4);
    assert_eq!(r.count("x-result-count"), 0);
    let r = w
        .get(&format!(
            "{BASE}/productOffering?lifecycleStatus=Launched&offset=2&limit=5"
        ))
        .await;
    assert_eq!(r.ids(), ["po-prepaid-sim"]);
    assert_eq!(r.count("x-total-count"), 3);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let w = world().await;
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("colour=red", "colour"),
        ("productSpecification=spec-phone-x1", "productSpecification"),
        ("priceType=oneTime", "priceType"),
        ("isSellable=yes", "isSellable"),
        ("limit=1&limit=2", "limit"),
    ] {
        let r = w.get(&format!("{BASE}/productOffering?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        let (code, message) = r.error();
        assert_eq!(code, "INVALID_ARGUMENT", "{q}");
        assert!(message.starts_with(&format!("{field}:")), "{q}: {message}");
    }
    let r = w.get(&format!("{BASE}/productOffering?colour=red")).await;
    assert!(r.error().1.contains("cannot be applied"), "{}", r.error().1);
    let r = w
        .get(&format!("{BASE}/productOfferingPrice?price.value=cheap"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().1.starts_with("price.value:"));
    let r = w
        .get(&format!("{BASE}/productOffering/po-phone-x1?limit=1"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().1.starts_with("limit:"));
}

#[tokio::test]
async fn unknown_ids_are_404_and_other_kinds_do_not_answer_for_each_other() {
    let w = world().await;
    for path in [
        format!("{BASE}/productOffering/nope"),
        // A price's id is not an offering's.
        format!("{BASE}/productOffering/price-sim-monthly"),
        format!("{BASE}/category/po-phone-x1"),
        format!("{BASE}/productSpecification/%25%00"),
    ] {
        let r = w.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error().0, "NOT_FOUND", "{path}");
    }
    let r = w.get(&format!("{BASE}/productOffering/nope")).await;
    assert!(r.error().1.contains("ProductOffering \"nope\""));
}

#[tokio::test]
async fn reading_needs_an_application_any_application() {
    let w = world().await;
    let r = w.get_as(None, &format!("{BASE}/productOffering")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error().0, "UNAUTHENTICATED");
    assert!(r.header("www-authenticate").is_some());
    let r = w
        .get_as(Some("wrong"), &format!("{BASE}/category/mobile"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The kiosk may only query balances (allowed_operations), and still reads the catalog.
    let r = w
        .get_as(Some("k-kiosk"), &format!("{BASE}/productOffering"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.count("x-total-count"), 4);
}

// ---- import ----------------------------------------------------------------------------------

fn refused(v: Value) -> Vec<catalog::EntryError> {
    match catalog::parse(v.to_string().as_bytes(), &HashSet::new()) {
        Err(ImportError::Entries { errors, .. }) => errors,
        other => panic!("not refused by entry: {other:?}"),
    }
}

fn price(id: &str, value: Value, unit: Value) -> Value {
    json!({"@type": "ProductOfferingPrice", "id": id, "priceType": "oneTime",
           "price": {"value": value, "unit": unit}})
}

/// The one error of a file, as printed.
fn one(v: Value) -> String {
    let errors = refused(v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

#[test]
fn the_demo_catalog_is_valid() {
    let entries = catalog::parse(DEMO, &HashSet::new()).unwrap();
    assert_eq!(entries.len(), 14);
}

#[test]
fn a_file_that_is_not_an_array_of_json_is_refused_whole() {
    for bytes in [&b"{not json"[..], br#"{"@type": "Category"}"#, b""] {
        match catalog::parse(bytes, &HashSet::new()) {
            Err(ImportError::File(why)) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(catalog::parse(b"[]", &HashSet::new()).unwrap(), vec![]);
}

#[test]
fn entries_need_an_object_a_known_type_and_a_usable_id() {
    assert_eq!(
        one(json!([42])),
        "entry 0: (entry): must be an object, not a number"
    );
    assert_eq!(one(json!([{"@type": "Category"}])), "entry 0: id: required");
    assert_eq!(
        one(json!([{"@type": "Category", "id": 7}])),
        "entry 0: id: must be a string, not a number"
    );
    assert!(
        one(json!([{"@type": "Category", "id": "a/b"}]))
            .starts_with("entry 0 (\"a/b\"): id: 1 to 200 visible ASCII")
    );
    assert!(
        one(json!([{"@type": "Product", "id": "p1"}]))
            .starts_with("entry 0 (\"p1\"): @type: \"Product\" is not one of ProductOffering")
    );
    assert!(one(json!([{"id": "p1"}])).starts_with("entry 0 (\"p1\"): @type: required"));
}

#[test]
fn ids_are_unique_per_type() {
    let e = one(json!([
        {"@type": "Category", "id": "c1"},
        {"@type": "ProductSpecification", "id": "c1"},
        {"@type": "Category", "id": "c1"},
    ]));
    assert_eq!(
        e,
        "entry 2 (Category \"c1\"): id: already used by entry 0 (ids are unique per @type)"
    );
}

#[test]
fn prices_need_an_exact_non_negative_value_and_an_iso_4217_unit() {
    let n = |s: &str| Value::Number(s.parse().unwrap());
    assert!(
        catalog::parse(
            json!([
                price("p", n("0"), json!("EUR")),
                price("q", n("1e2"), json!("JPY"))
            ])
            .to_string()
            .as_bytes(),
            &HashSet::new()
        )
        .is_ok()
    );
    assert_eq!(
        one(json!([price("p1", json!("9.99"), json!("EUR"))])),
        "entry 0 (ProductOfferingPrice \"p1\"): price.value: must be a JSON number, not a string"
    );
    assert_eq!(
        one(json!([price("p1", n("9.99"), json!("EUX"))])),
        "entry 0 (ProductOfferingPrice \"p1\"): price.unit: \"EUX\" is not an ISO 4217 currency code"
    );
    assert!(
        one(json!([price("p1", n("-1.50"), json!("EUR"))]))
            .contains("price.value: -1.50 is negative")
    );
    assert!(
        one(json!([price("p1", n("9.99"), Value::Null)])).contains("price.unit: must be a string")
    );
    assert!(
        one(json!([{"@type": "ProductOfferingPrice", "id": "p1"}]))
            .starts_with("entry 0 (ProductOfferingPrice \"p1\"): price: required")
    );
    assert!(
        one(json!([{"@type": "ProductOfferingPrice", "id": "p1", "price": {"unit": "EUR"}}]))
            .contains("price.value: required")
    );
    // Too many digits for an exact decimal.
    assert!(one(json!([price("p1", n("1e40"), json!("EUR"))])).contains("not an exact decimal"));
}

#[test]
fn filterable_members_must_have_their_type() {
    assert_eq!(
        one(json!([{"@type": "ProductOffering", "id": "o1", "isSellable": "yes"}])),
        "entry 0 (ProductOffering \"o1\"): isSellable: must be true or false, not a string"
    );
    assert!(
        one(json!([{"@type": "Category", "id": "c1", "name": ["x"]}]))
            .contains("name: must be a string, not an array")
    );
}

#[test]
fn references_must_resolve_in_the_file_or_the_kept_catalog() {
    let file = json!([
        {"@type": "ProductOffering", "id": "o1",
         "productOfferingPrice": [{"id": "p1"}, {"id": "p2"}],
         "productSpecification": {"id": "s1"},
         "category": [{"name": "no id"}]},
        price("p1", json!(1), json!("EUR")),
        {"@type": "Category", "id": "c2", "parentId": "c9"},
    ]);
    let errors: Vec<String> = refused(file.clone())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "entry 0 (ProductOffering \"o1\"): category[0].id: required (a reference names an id)",
            "entry 0 (ProductOffering \"o1\"): productOfferingPrice[1].id: no ProductOfferingPrice \"p2\" in the file",
            "entry 0 (ProductOffering \"o1\"): productSpecification.id: no ProductSpecification \"s1\" in the file",
            "entry 2 (Category \"c2\"): parentId: no Category \"c9\" in the file",
        ]
    );
    // With the catalog kept (a merge), entries of the store count too.
    let kept: HashSet<(Kind, String)> = [
        (Kind::ProductOfferingPrice, "p2".to_string()),
        (Kind::ProductSpecification, "s1".to_string()),
        (Kind::Category, "c9".to_string()),
    ]
    .into();
    match catalog::parse(file.to_string().as_bytes(), &kept) {
        Err(ImportError::Entries { errors, .. }) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "category[0].id");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let errors = refused(json!([
        {"@type": "Nope", "id": "a"},
        price("p1", json!("1"), json!("EUX")),
        7,
    ]));
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(
        errors.iter().map(|e| e.index).collect::<Vec<_>>(),
        [0, 1, 1, 2]
    );
}

#[tokio::test]
async fn an_import_replaces_the_catalog_and_retires_what_it_no_longer_has() {
    let w = world().await;
    let smaller = json!([
        {"@type": "Category", "id": "mobile", "name": "Mobile (renamed)", "isRoot": true},
        price("price-phone-x1", Value::Number("279.00".parse().unwrap()), json!("EUR")),
        {"@type": "ProductOffering", "id": "po-phone-x1", "name": "Phone X1", "isSellable": true,
         "lifecycleStatus": "Launched", "category": [{"id": "mobile"}],
         "productOfferingPrice": [{"id": "price-phone-x1"}]},
    ]);
    let s = catalog::import(
        &w.store,
        smaller.to_string().as_bytes(),
        Mode::Replace,
        2_000,
    )
    .await
    .unwrap();
    assert_eq!((s.added, s.changed, s.unchanged, s.retired), (0, 3, 0, 11));
    let r = w.get(&format!("{BASE}/productOffering")).await;
    assert_eq!(r.ids(), ["po-phone-x1"]);
    assert_eq!(r.count("x-total-count"), 1);
    let r = w
        .get(&format!("{BASE}/productOffering/po-prepaid-sim"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "retired: not served");
    let r = w.get(&format!("{BASE}/category/mobile")).await;
    assert_eq!(r.json()["name"], "Mobile (renamed)");
    assert!(
        r.json().get("subCategory").is_none(),
        "the whole document replaced"
    );
    let r = w
        .get(&format!("{BASE}/productOfferingPrice/price-phone-x1"))
        .await;
    assert!(String::from_utf8_lossy(&r.body).contains(r#""value":279.00"#));
    // The same file again changes nothing; the demo again brings the rest back.
    let s = catalog::import(
        &w.store,
        smaller.to_string().as_bytes(),
        Mode::Replace,
        3_000,
    )
    .await
    .unwrap();
    assert_eq!((s.added, s.changed, s.unchanged, s.retired), (0, 0, 3, 0));
    let s = catalog::import(&w.store, DEMO, Mode::Replace, 4_000)
        .await
        .unwrap();
    assert_eq!((s.changed, s.unchanged, s.retired), (14, 0, 0));
    let r = w.get(&format!("{BASE}/productOffering")).await;
    assert_eq!(r.count("x-total-count"), 4);
}

#[tokio::test]
async fn a_refused_import_writes_nothing_and_a_merge_keeps_the_rest() {
    let w = world().await;
    let bad = json!([
        {"@type": "Category", "id": "only"},
        {"@type": "ProductOffering", "id": "o1", "category": [{"id": "ghost"}]},
    ]);
    let hash = catalog::recorded_hash(&w.store).await.unwrap();
    let e = catalog::import(&w.store, bad.to_string().as_bytes(), Mode::Replace, 2_000)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("entry 1 (ProductOffering \"o1\"): category[0].id: no Category \"ghost\""),
        "{e}"
    );
    assert_eq!(catalog::recorded_hash(&w.store).await.unwrap(), hash);
    let r = w.get(&format!("{BASE}/category")).await;
    assert_eq!(r.count("x-total-count"), 3, "the catalog is as it was");
    // A merge: one more offering, in a category the store already has.
    let more = json!([
        {"@type": "ProductOffering", "id": "po-esim", "name": "eSIM", "isSellable": true,
         "lifecycleStatus": "Launched", "category": [{"id": "mobile-plans"}]},
    ]);
    let s = catalog::import(&w.store, more.to_string().as_bytes(), Mode::Merge, 2_000)
        .await
        .unwrap();
    assert_eq!((s.added, s.retired), (1, 0));
    let r = w
        .get(&format!("{BASE}/productOffering?category.id=mobile-plans"))
        .await;
    assert_eq!(r.ids(), ["po-data-10gb", "po-prepaid-sim", "po-esim"]);
    let r = w.get(&format!("{BASE}/productOffering/po-esim")).await;
    assert_eq!(
        r.json()["category"][0]["href"],
        format!("{BASE}/category/mobile-plans")
    );
}

#[tokio::test]
async fn the_configured_file_is_imported_only_when_its_hash_changed() {
    let store = Store::memory();
    let dir = std::env::temp_dir().join(format!("gw-tmf620-{}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalog.json");
    std::fs::write(&file, DEMO).unwrap();
    let s = catalog::sync(&store, &Source::File(file.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.added, 14);
    assert_eq!(
        catalog::recorded_hash(&store).await.unwrap().as_deref(),
        Some(catalog::sha256_hex(DEMO).as_str())
    );
    assert!(
        catalog::sync(&store, &Source::File(file.clone()))
            .await
            .unwrap()
            .is_none()
    );
    std::fs::write(&file, b"[]").unwrap();
    let s = catalog::sync(&store, &Source::File(file.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.retired, 14);
    std::fs::write(&file, b"[1]").unwrap();
    assert!(
        catalog::sync(&store, &Source::File(file.clone()))
            .await
            .is_err()
    );
    let missing = catalog::sync(&store, &Source::File(dir.join("absent.json"))).await;
    assert!(matches!(missing, Err(ImportError::File(_))), "{missing:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_reload_task_imports_a_changed_file_and_keeps_the_catalog_on_a_bad_one() {
    let store = Store::memory();
    let dir = std::env::temp_dir().join(format!("gw-tmf620-reload-{}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalog.json");
    std::fs::write(&file, DEMO).unwrap();
    catalog::sync(&store, &Source::File(file.clone()))
        .await
        .unwrap();
    let task = catalog::spawn_reload(
        store.clone(),
        Source::File(file.clone()),
        Duration::from_millis(50),
    );
    let offerings = |store: Store| async move {
        catalog::list(&store, Kind::ProductOffering)
            .await
            .unwrap()
            .len()
    };
    // A bad file: logged, the catalog kept.
    std::fs::write(&file, b"[{\"@type\": \"Nope\"}]").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(offerings(store.clone()).await, 4);
    // A changed, valid one: imported by the next pass.
    std::fs::write(
        &file,
        json!([{"@type": "ProductOffering", "id": "po-only", "name": "Only"}]).to_string(),
    )
    .unwrap();
    let mut seen = 0;
    for _ in 0..100 {
        seen = offerings(store.clone()).await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1);
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
