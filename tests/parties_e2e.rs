//! Parties and accounts end to end through the `gateway` binary: an individual, its B2C
//! customer and billing account; an organization with two contact individuals and its B2B
//! customer; the same email for a second customer refused (409, nothing created); bad inputs
//! as TMF Errors; and 50 customers with one email racing through two gateway instances on
//! one PostgreSQL database: exactly one is created (skipped without PostgreSQL, failed under
//! `CI=true`).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};

mod support;
use support::postgres::Server;
use support::process::{Answer, GatewayProcess, TempDir, basic, dictionaries};

const INDIVIDUALS: &str = "/tmf-api/partyManagement/v4/individual";
const ORGANIZATIONS: &str = "/tmf-api/partyManagement/v4/organization";
const CUSTOMERS: &str = "/tmf-api/customerManagement/v4/customer";
const ACCOUNTS: &str = "/tmf-api/accountManagement/v4/billingAccount";

fn config(n: usize, ocs: std::net::SocketAddr, store: &str) -> String {
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

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
allowed_operations = ["party", "customer", "billing-account"]

[[apps]]
id = "payer"
username = "payer"
password = "payer-secret"
allowed_operations = ["charge-amount"]
"#,
        dict = dictionaries().display(),
    )
}

fn sqlite(dir: &Path) -> String {
    format!(
        "backend = \"sqlite\"\ndata_dir = \"{}\"",
        dir.join("data").display()
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

async fn send(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    ct: &str,
    body: Option<String>,
) -> Answer {
    gw.request(
        method,
        path,
        Some(&basic("shop", "shop-secret")),
        &[("content-type", ct)],
        body,
    )
    .await
    .unwrap()
}

async fn post(gw: &GatewayProcess, path: &str, body: Value) -> Answer {
    send(gw, "POST", path, "application/json", Some(body.to_string())).await
}

async fn get(gw: &GatewayProcess, path: &str) -> Answer {
    send(gw, "GET", path, "application/json", None).await
}

async fn created(gw: &GatewayProcess, path: &str, body: Value) -> String {
    let r = post(gw, path, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("{path}/{id}").as_str()));
    id
}

/// A TMF Error with `status` and `code`: its message.
fn error(r: &Answer, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["@type"], "Error", "{}", r.body);
    assert_eq!(r.body["code"], code, "{}", r.body);
    assert_eq!(r.body["status"], status.to_string(), "{}", r.body);
    r.body["message"].as_str().unwrap().to_string()
}

fn person(given: &str, email: &str, phone: &str) -> Value {
    json!({"givenName": given, "familyName": "García",
           "contactMedium": [
               {"mediumType": "email", "characteristic": {"emailAddress": email}},
               {"mediumType": "mobile", "characteristic": {"phoneNumber": phone}}]})
}

fn total(r: &Answer) -> &str {
    r.header("x-total-count").unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2c_and_b2b_customers_with_their_accounts_and_one_customer_per_email() {
    let sim = simulator().await;
    let dir = TempDir::new("parties-e2e");
    let gw = GatewayProcess::start(
        &dir.0,
        &config(1, sim.local_addr().unwrap(), &sqlite(&dir.0)),
    )
    .await;

    // B2C: an individual, its customer, its billing account paid by carrier billing.
    let ana = created(
        &gw,
        INDIVIDUALS,
        person("Ana", "ana@example.com", "+34600000001"),
    )
    .await;
    let c = created(
        &gw,
        CUSTOMERS,
        json!({"engagedParty": {"id": ana, "@referredType": "Individual"}, "status": "approved"}),
    )
    .await;
    let ba = created(
        &gw,
        ACCOUNTS,
        json!({"name": "Ana mobile", "accountType": "B2C",
               "relatedParty": [{"id": c, "role": "customer"}],
               "paymentMethod": [{"phoneNumber": "+34600000001"}],
               "creditLimit": {"unit": "EUR", "value": 150.10}}),
    )
    .await;
    let cv = get(&gw, &format!("{CUSTOMERS}/{c}")).await;
    assert_eq!(cv.status, 200);
    assert_eq!(cv.body["engagedParty"]["id"], ana.as_str());
    assert_eq!(cv.body["account"][0]["id"], ba.as_str());
    let av = get(&gw, &format!("{ACCOUNTS}/{ba}")).await;
    assert_eq!(
        av.body["creditLimit"],
        json!({"unit": "EUR", "value": 150.1})
    );
    assert_eq!(
        av.body["paymentMethod"][0]["id"],
        "carrier-billing-34600000001"
    );

    // B2B: an organization, two contact individuals, its customer.
    let org = created(
        &gw,
        ORGANIZATIONS,
        json!({"name": "Acme S.L.", "contactMedium": [{"mediumType": "email",
            "characteristic": {"emailAddress": "billing@acme.example"}}]}),
    )
    .await;
    let a = created(
        &gw,
        INDIVIDUALS,
        person("Eva", "eva@acme.example", "+34600000011"),
    )
    .await;
    let b = created(
        &gw,
        INDIVIDUALS,
        person("Luis", "luis@acme.example", "+34600000012"),
    )
    .await;
    let b2b = created(
        &gw,
        CUSTOMERS,
        json!({"engagedParty": {"id": org, "@referredType": "Organization"},
               "relatedParty": [{"id": a, "role": "contact"}, {"id": b, "role": "contact"}]}),
    )
    .await;
    let v = get(&gw, &format!("{CUSTOMERS}/{b2b}")).await.body;
    assert_eq!(v["engagedParty"]["@referredType"], "Organization");
    let contacts: Vec<&str> = v["relatedParty"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(contacts, [a.as_str(), b.as_str()]);
    created(
        &gw,
        ACCOUNTS,
        json!({"name": "Acme", "accountType": "B2B",
               "relatedParty": [{"id": b2b, "role": "owner"}]}),
    )
    .await;

    // The same email for a second customer: 409, nothing created.
    let twin = created(
        &gw,
        INDIVIDUALS,
        person("Ana", "ANA@example.com", "+34600000099"),
    )
    .await;
    let m = error(
        &post(&gw, CUSTOMERS, json!({"engagedParty": {"id": twin}})).await,
        409,
        "CONFLICT",
    );
    assert!(
        m.contains("ana@example.com is the contact of another customer"),
        "{m}"
    );
    let m = error(
        &post(
            &gw,
            CUSTOMERS,
            json!({"engagedParty": {"id": a},
            "contactMedium": [{"mediumType": "email",
                "characteristic": {"emailAddress": "billing@acme.example"}}]}),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert!(
        m.starts_with("contactMedium[0].characteristic.emailAddress"),
        "{m}"
    );
    assert_eq!(total(&get(&gw, CUSTOMERS).await), "2");
    // The twin's phone was not left claimed: its own customer, once the email is changed.
    let p = send(
        &gw,
        "PATCH",
        &format!("{INDIVIDUALS}/{twin}"),
        "application/merge-patch+json",
        Some(
            json!({"contactMedium": [{"mediumType": "mobile",
            "characteristic": {"phoneNumber": "+34600000099"}}]})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    created(&gw, CUSTOMERS, json!({"engagedParty": {"id": twin}})).await;
    assert_eq!(total(&get(&gw, CUSTOMERS).await), "3");
    assert_eq!(
        total(&get(&gw, &format!("{INDIVIDUALS}?email=ana@example.com")).await),
        "1"
    );

    // Every bad input is a TMF Error.
    let bad = [
        (
            INDIVIDUALS,
            json!({"nickname": "A"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            INDIVIDUALS,
            json!({"contactMedium": [{"mediumType": "mobile",
            "characteristic": {"phoneNumber": "600"}}]}),
            400,
            "INVALID_ARGUMENT",
        ),
        (ORGANIZATIONS, json!({}), 400, "INVALID_ARGUMENT"),
        (
            CUSTOMERS,
            json!({"engagedParty": {"id": "individual-0"}}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            ACCOUNTS,
            json!({"name": "x", "relatedParty": [{"id": c, "role": "customer"}],
            "creditLimit": {"unit": "EUR", "value": "1.00001"}}),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (path, body, status, code) in bad {
        error(&post(&gw, path, body).await, status, code);
    }
    error(
        &send(&gw, "POST", CUSTOMERS, "text/plain", Some("{}".into())).await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    error(
        &get(&gw, &format!("{CUSTOMERS}/customer-0")).await,
        404,
        "NOT_FOUND",
    );
    error(
        &get(&gw, &format!("{CUSTOMERS}?limit=1000")).await,
        400,
        "INVALID_ARGUMENT",
    );
    error(
        &send(&gw, "PUT", CUSTOMERS, "application/json", None).await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    let r = gw
        .request(
            "GET",
            ACCOUNTS,
            Some(&basic("payer", "payer-secret")),
            &[],
            None,
        )
        .await
        .unwrap();
    error(&r, 403, "PERMISSION_DENIED");
    let r = gw.request("GET", ACCOUNTS, None, &[], None).await.unwrap();
    error(&r, 401, "UNAUTHENTICATED");
    error(
        &get(&gw, "/tmf-api/customerManagement/v4/nothing").await,
        404,
        "NOT_FOUND",
    );
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_customers_with_one_email_through_two_instances_on_postgres_make_one() {
    let Some(server) =
        Server::shared_or_skip("fifty_customers_with_one_email_through_two_instances_on_postgres")
    else {
        return;
    };
    let url = server.database("parties_e2e_race");
    let sim = simulator().await;
    let store = format!("backend = \"postgres\"\nurl = \"{url}\"");
    let dirs = [TempDir::new("parties-pg-1"), TempDir::new("parties-pg-2")];
    let mut gws = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let cfg = config(n + 1, sim.local_addr().unwrap(), &store);
        gws.push(Arc::new(GatewayProcess::start(&dir.0, &cfg).await));
    }
    const RACERS: usize = 50;
    // Fifty individuals with one email (a party may share it; a customer may not).
    let mut people = Vec::new();
    for i in 0..RACERS {
        let phone = format!("+346000001{i:02}");
        people.push(
            created(
                &gws[i % 2],
                INDIVIDUALS,
                person("Ana", "race@example.com", &phone),
            )
            .await,
        );
    }
    let mut tasks = Vec::new();
    for (i, id) in people.into_iter().enumerate() {
        let gw = Arc::clone(&gws[i % 2]);
        tasks.push(tokio::spawn(async move {
            post(&gw, CUSTOMERS, json!({"engagedParty": {"id": id}})).await
        }));
    }
    let mut won = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => won.push(r.body["id"].as_str().unwrap().to_string()),
            409 => {
                let m = error(&r, 409, "CONFLICT");
                assert!(m.contains("race@example.com"), "{m}");
                refused += 1;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(refused, RACERS - 1);
    for gw in &gws {
        let l = get(gw, &format!("{CUSTOMERS}?limit=100")).await;
        assert_eq!(total(&l), "1", "{}", l.body);
        assert_eq!(l.body[0]["id"], won[0].as_str());
    }
    for gw in gws {
        match Arc::try_unwrap(gw) {
            Ok(gw) => gw.stop(),
            Err(_) => panic!("the gateway is still shared"),
        }
    }
}
