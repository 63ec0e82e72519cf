//! The gateway on PostgreSQL, end to end: `gateway serve` as a separate process with
//! `[store] backend = "postgres"` pointed at a PostgreSQL server this test starts
//! (`support::postgres`), the OCS simulator in this process. A charge is durable in the
//! database, survives a hard kill of the gateway, and its retry is not charged twice;
//! `check-config` validates the store keys and masks the password.
//!
//! Without PostgreSQL installed the tests print that they are skipped, or fail under `CI=true`.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::postgres::{PASSWORD, Server};
use support::process::{GatewayProcess, TempDir, basic, dictionaries};

const ALICE: &str = "tel:+34671999000";

/// The gateway's configuration: the simulator at `ocs` (port 0: none), the store at `url`.
fn config(ocs: u16, url: &str) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:{ocs}"
[http]
listen = "127.0.0.1:0"
[store]
backend = "postgres"
url = "{url}"
[ocs_sim]
enabled = false
[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
[[apps]]
id = "auditor"
api_key = "auditor-key"
admin = true
"#,
        dict = dictionaries().display(),
    )
}

async fn charge(gw: &GatewayProcess, amount: &str, reference: &str) -> (u16, Value) {
    let body = json!({
        "charge": {"description": "game credits", "amount": amount, "currency": "EUR"},
        "endUserIdentifier": ALICE,
        "referenceCode": reference,
    });
    let a = gw
        .request(
            "POST",
            "/rest/payment/charge-amount",
            Some(&basic("shop", "shop-secret")),
            &[],
            Some(body.to_string()),
        )
        .await
        .unwrap();
    (a.status, a.body)
}

async fn simulator() -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: ALICE.into(),
                balance: Decimal::from_str("100.00").unwrap(),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// The rows of `sql` (text columns) read straight from the database, off the async runtime
/// (the synchronous client runs its own).
async fn select(url: &str, sql: &'static str) -> Vec<Vec<String>> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_durable_in_postgres_across_a_crash() {
    let Some(server) = Server::shared_or_skip("charges_are_durable_in_postgres_across_a_crash")
    else {
        return;
    };
    let url = server.database("e2e");
    let dir = TempDir::new("pg");
    let sim = simulator().await;
    let ocs = sim.local_addr().unwrap().port();
    let gw = GatewayProcess::start(&dir.0, &config(ocs, &url)).await;
    let (s, body) = charge(&gw, "4.99", "pg-1").await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(sim.balance(ALICE).unwrap().amount.to_string(), "95.01");
    // In the database, exact, before the answer came.
    let rows = select(
        &url,
        "SELECT amount::text, state, app FROM operations WHERE reference_code = 'pg-1'",
    )
    .await;
    assert_eq!(rows, vec![vec!["4.99", "succeeded", "shop"]]);
    // A hard crash (SIGKILL), then a new process on the same database.
    drop(gw);
    let gw = GatewayProcess::start(&dir.0, &config(ocs, &url)).await;
    let (s, body) = charge(&gw, "4.99", "pg-1").await;
    assert_eq!(s, 204, "the retry is answered from the store: {body}");
    let (s, body) = charge(&gw, "5.00", "pg-1").await;
    assert_eq!(s, 409, "the same reference with another amount: {body}");
    assert_eq!(
        sim.balance(ALICE).unwrap().amount.to_string(),
        "95.01",
        "not charged twice"
    );
    let debits = sim.journal().iter().filter(|e| e.op == "debit").count();
    assert_eq!(debits, 1);
    // The admin API reads it back from PostgreSQL.
    let a = gw
        .request(
            "GET",
            "/admin/operations?referenceCode=pg-1&app=shop",
            Some("Bearer auditor-key"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let ops = a.body.as_array().cloned().unwrap_or_default();
    assert_eq!(ops.len(), 1, "{}", a.body);
    assert_eq!(ops[0]["amount"], "4.99", "{}", a.body);
    // A second charge after the restart lands beside the first.
    let (s, body) = charge(&gw, "0.10", "pg-2").await;
    assert_eq!(s, 204, "{body}");
    let rows = select(
        &url,
        "SELECT reference_code, amount::text FROM operations ORDER BY seq",
    )
    .await;
    assert_eq!(rows, vec![vec!["pg-1", "4.99"], vec!["pg-2", "0.10"]]);
    gw.stop();
    sim.shutdown().await;
}

/// `check-config` with the store on PostgreSQL: the URL is required (named by its key), may
/// come from the environment, and is printed with its password masked.
#[test]
fn check_config_validates_the_postgres_store() {
    let dir = TempDir::new("pg-check");
    let file = dir.0.join("gateway.toml");
    let text = config(3868, "");
    let check = |path: &Path, env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check-config", "--config"])
            .arg(path)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    std::fs::write(&file, &text).unwrap();
    let (ok, out) = check(&file, &[]);
    assert!(
        !ok && out.contains("store.url") && out.contains("needs a connection URL"),
        "{out}"
    );
    let url = format!("postgresql://gateway:{PASSWORD}@127.0.0.1:5432/gateway");
    let (ok, out) = check(&file, &[("GATEWAY__STORE__URL", &url)]);
    assert!(ok, "{out}");
    assert!(
        out.contains("postgresql://gateway:***@127.0.0.1:5432/gateway") && !out.contains(PASSWORD),
        "{out}"
    );
    let (ok, out) = check(
        &file,
        &[("GATEWAY__STORE__URL", "postgresql://127.0.0.1:port/gateway")],
    );
    assert!(
        !ok && out.contains("store.url") && out.contains("invalid value for option `port`"),
        "{out}"
    );
    // TLS: the CA file is read when the configuration is, and named when it cannot be.
    let missing = dir.0.join("no-such-ca.pem");
    let tls = |ca: &Path| format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let (ok, out) = check(&file, &[("GATEWAY__STORE__URL", &tls(&missing))]);
    assert!(
        !ok && out.contains("store.url")
            && out.contains(&format!("sslrootcert {}: cannot read", missing.display())),
        "{out}"
    );
    let junk = dir.0.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (ok, out) = check(&file, &[("GATEWAY__STORE__URL", &tls(&junk))]);
    assert!(!ok && out.contains(&junk.display().to_string()), "{out}");
    let (ok, out) = check(
        &file,
        &[(
            "GATEWAY__STORE__URL",
            &format!("{url}?sslmode=verify-everything"),
        )],
    );
    assert!(
        !ok && out.contains("sslmode \"verify-everything\""),
        "{out}"
    );
}

/// `gateway_cc_style_fallbacks_total` summed, from the admin application's /metrics.
async fn fallbacks(gw: &GatewayProcess) -> u64 {
    let a = gw
        .request(
            "GET",
            "/metrics",
            None,
            &[("x-api-key", "auditor-key")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("gateway_cc_style_fallbacks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The units style one instance learnt from an RFC 4006-literal OCS is in the database: a
/// second instance (its own Diameter identity and connection) on the same PostgreSQL starts
/// from it and sends its first event at command level, without a fallback of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_uses_the_units_style_the_first_learnt() {
    let Some(server) =
        Server::shared_or_skip("a_second_instance_uses_the_units_style_the_first_learnt")
    else {
        return;
    };
    let url = server.database("styles");
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            profile: "rfc4006".into(),
            accounts: vec![SimAccount {
                subscriber: ALICE.into(),
                balance: Decimal::from_str("100.00").unwrap(),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    let ocs = sim.local_addr().unwrap().port();
    let one = TempDir::new("pg-style-1");
    let a = GatewayProcess::start(&one.0, &config(ocs, &url)).await;
    let (status, body) = charge(&a, "1.00", "style-a").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(fallbacks(&a).await, 1, "the first instance learnt it");
    let two = TempDir::new("pg-style-2");
    let b = GatewayProcess::start(
        &two.0,
        &config(ocs, &url).replace("gw.charging.local", "gw2.charging.local"),
    )
    .await;
    let (status, body) = charge(&b, "2.00", "style-b").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        fallbacks(&b).await,
        0,
        "the second instance did not learn it again"
    );
    let view = b
        .request(
            "GET",
            "/admin/ocs",
            None,
            &[("x-api-key", "auditor-key")],
            None,
        )
        .await
        .unwrap();
    let learnt = &view.body["learntStyles"];
    assert!(
        learnt
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "events"
                && l["style"] == "command_level"
                && l["how"] == "fallback"),
        "{learnt}"
    );
    assert_eq!(
        sim.balance(ALICE).unwrap().amount,
        Decimal::from_str("97.00").unwrap()
    );
    b.stop();
    a.stop();
    sim.shutdown().await;
}
