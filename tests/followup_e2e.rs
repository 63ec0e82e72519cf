//! The abandoned-cart follow-up end to end: carts written into the gateway's SQLite store
//! (as the TMF663 handlers store them), the `gateway` process (`gateway serve`) with
//! `[shop] abandoned_after = "1s"`, and a real SMTP server, Python's aiosmtpd, on a loopback
//! port chosen at run time. The mail arrives once, with the cart id and its total; the cart
//! records it; a recipient refused with 550 is a dead letter, one answered 451 is retried; a
//! checked-out cart gets nothing.
//!
//! aiosmtpd (Debian `python3-aiosmtpd`, installed by .ci/run): under `CI=true` its absence
//! fails the test; otherwise the test says it is skipped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use charging_gateway::api::tmf663::model::{self, CartDoc, Contact, Medium, Total, state};
use charging_gateway::config::StoreConfig;
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig};
use charging_gateway::store::{Store, now_ms};

mod support;
use support::process::{GatewayProcess, TempDir, dictionaries};
use support::smtp::SmtpServer;
use support::wait_for;

const ADMIN_KEY: &str = "ops-key";

fn config(dir: &Path, ocs: std::net::SocketAddr, smtp_port: u16) -> String {
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

[notifications]
backoff_min = "100ms"
backoff_max = "300ms"
max_attempts = 1000
poll_interval = "100ms"

[notifications.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Demo Shop <shop@shop.example>"
timeout = "5s"

[shop]
follow_up = true
abandoned_after = "1s"
follow_up_interval = "200ms"
shop_url = "https://shop.example/cart/{{cart}}"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"

[[apps]]
id = "ops"
api_key = "{ADMIN_KEY}"
admin = true
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    )
}

fn cart(id: &str, address: &str, updated_ms: i64) -> CartDoc {
    CartDoc {
        id: id.into(),
        items: Vec::new(),
        contact: vec![Contact {
            medium: Medium::Email,
            address: address.into(),
        }],
        related_party: Vec::new(),
        characteristic: Vec::new(),
        valid_for: None,
        total: vec![Total {
            price_type: model::ONE_TIME.into(),
            period: None,
            currency: "EUR".into(),
            amount: "12.50".parse().unwrap(),
            duty_free: "10.33".parse().unwrap(),
        }],
        follow_up: None,
        order: None,
        customer: None,
        created_ms: updated_ms,
        updated_ms,
    }
}

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        backend: "sqlite".into(),
        data_dir: dir.join("data"),
        ..StoreConfig::default()
    }
}

/// A message with its quoted-printable soft line breaks and `=XX` escapes undone (lettre
/// encodes a text with long lines so, RFC 2045 6.7); the headers come through unchanged.
fn quoted_printable_decoded(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::with_capacity(joined.len());
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn admin_event(gw: &GatewayProcess, id: &str) -> Value {
    let a = gw
        .request(
            "GET",
            &format!("/admin/events/{id}"),
            None,
            &[("x-api-key", ADMIN_KEY)],
            None,
        )
        .await
        .unwrap();
    if a.status == 200 { a.body } else { Value::Null }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_cart_is_mailed_once_and_records_it() {
    let dir = TempDir::new("followup");
    let Some(smtp) =
        SmtpServer::start_or_skip("an_abandoned_cart_is_mailed_once_and_records_it", &dir.0)
    else {
        return;
    };
    let smtp_port = smtp.port();

    // The carts, as the TMF663 handlers would have stored them an hour ago.
    let hour_ago = now_ms() - 3_600_000;
    {
        let store = Store::open(&store_config(&dir.0)).unwrap();
        for (doc, st) in [
            (cart("cart-ana", "ana@example.com", hour_ago), state::ACTIVE),
            (
                cart("cart-rej", "reject@example.com", hour_ago),
                state::ACTIVE,
            ),
            (
                cart("cart-busy", "busy@example.com", hour_ago),
                state::ACTIVE,
            ),
            (
                cart("cart-paid", "paid@example.com", hour_ago),
                state::CHECKED_OUT,
            ),
        ] {
            let due = model::follow_up_due(&doc, st);
            store
                .put_resource(model::row("shop", &doc, st, due, hour_ago))
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    }

    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    let gw = GatewayProcess::start(
        &dir.0,
        &config(&dir.0, sim.local_addr().unwrap(), smtp_port),
    )
    .await;

    // The mail arrives, with the cart id, its total and its link.
    let mail = wait_for("the mail to ana", async || {
        smtp.to("ana@example.com").into_iter().next()
    })
    .await;
    let data = quoted_printable_decoded(mail["data"].as_str().unwrap());
    assert_eq!(mail["from"], "shop@shop.example");
    assert!(
        data.contains("Subject: Your cart is waiting for you"),
        "{data}"
    );
    assert!(data.contains("cart-ana"), "{data}");
    assert!(data.contains("12.50 EUR"), "{data}");
    assert!(
        data.contains("https://shop.example/cart/cart-ana"),
        "{data}"
    );
    assert!(
        data.contains("Message-ID: <followup-cart-ana@shop.example>"),
        "{data}"
    );
    let ev = wait_for("the event delivered", async || {
        let e = admin_event(&gw, "followup-cart-ana").await;
        (e["state"] == "delivered").then_some(e)
    })
    .await;
    assert_eq!(ev["url"], "mailto:ana@example.com");
    assert_eq!(ev["resource"], "cart-ana");

    // 550: dead at once, saying why; 451: retried, still pending.
    let rej = wait_for("the refused mail dead", async || {
        let e = admin_event(&gw, "followup-cart-rej").await;
        (e["state"] == "dead").then_some(e)
    })
    .await;
    assert_eq!(rej["attempts"], 1, "{rej}");
    assert!(
        rej["lastError"].as_str().unwrap_or("").contains("550"),
        "{rej}"
    );
    let busy = wait_for("the deferred mail retried", async || {
        let e = admin_event(&gw, "followup-cart-busy").await;
        (e["attempts"].as_u64().unwrap_or(0) >= 2).then_some(e)
    })
    .await;
    assert_eq!(busy["state"], "pending", "{busy}");
    assert!(
        busy["lastError"].as_str().unwrap_or("").contains("451"),
        "{busy}"
    );

    // Several more passes: still one mail; nothing for the checked-out cart.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.to("ana@example.com").len(), 1, "{:?}", smtp.messages());
    assert!(smtp.to("paid@example.com").is_empty());
    assert!(admin_event(&gw, "followup-cart-paid").await.is_null());
    gw.stop();

    // The cart records its follow-up, and is due no more.
    let store = Store::open(&store_config(&dir.0)).unwrap();
    let row = store.resource("cart-ana").await.unwrap().unwrap();
    assert_eq!(row.due_ms, None);
    let doc: CartDoc = serde_json::from_str(&row.body).unwrap();
    let f = doc.follow_up.expect("the follow-up is recorded");
    assert_eq!(f.medium, Medium::Email);
    assert_eq!(f.event, "followup-cart-ana");
    assert!(f.sent_ms >= hour_ago);
    let paid: CartDoc =
        serde_json::from_str(&store.resource("cart-paid").await.unwrap().unwrap().body).unwrap();
    assert!(paid.follow_up.is_none());
    store.close().await.unwrap();
    sim.shutdown().await;
}
