//! The units style in `auto` (the default) end to end: real HTTP -> the `gateway` process ->
//! Diameter over TCP -> the OCS simulator (in this test process, so that its books can be
//! read) in each of its profiles. Every API family's one-shot and session flows succeed with
//! exact money; against an RFC 4006-literal OCS the event style is learnt once (one fallback,
//! shown in /admin/ocs, /health and the metric), and after a restart it is known from the
//! store and not learnt again.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, dictionaries};

const ALICE: &str = "+34671999000";
const BOB: &str = "+34600000001";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn number(s: &str) -> Value {
    Value::Number(serde_json::Number::from_str(s).unwrap())
}

fn shop() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("shop:shop-secret")
    )
}

async fn simulator(profile: &str) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            profile: profile.into(),
            accounts: [ALICE, BOB]
                .iter()
                .map(|s| SimAccount {
                    subscriber: format!("tel:{s}"),
                    balance: d("100.00"),
                    currency: "EUR".into(),
                })
                .collect(),
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// `gateway serve` with no `credit_control.style` (so `auto` for both kinds), SQLite in
/// `dir`, pointing at the simulator at `ocs`.
async fn start(dir: &Path, ocs: std::net::SocketAddr) -> GatewayProcess {
    start_with(dir, ocs, "").await
}

/// As [`start`], with `credit_control` keys.
async fn start_with(dir: &Path, ocs: std::net::SocketAddr, credit_control: &str) -> GatewayProcess {
    let config = format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
dictionaries = "{dict}"

[diameter.timers]
request_timeout = "2s"
reconnect_min = "200ms"
reconnect_max = "1s"

[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{ocs}"

[credit_control]
{credit_control}

[http]
listen = "127.0.0.1:0"

[store]
backend = "sqlite"
data_dir = "{data}"

[ocs_sim]
enabled = false

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
admin = true
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    );
    GatewayProcess::start(dir, &config).await
}

async fn post(gw: &GatewayProcess, path: &str, body: Value, extra: &[(&str, &str)]) -> Answer {
    gw.request("POST", path, Some(&shop()), extra, Some(body.to_string()))
        .await
        .unwrap()
}

async fn get(gw: &GatewayProcess, path: &str) -> Answer {
    gw.request("GET", path, Some(&shop()), &[], None)
        .await
        .unwrap()
}

fn expect(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
}

/// The OCSG facade: charge, refund, split, and a reservation charged and released. Returns
/// the net debit of (ALICE, BOB).
async fn ocsg(gw: &GatewayProcess, tag: &str) -> (Decimal, Decimal) {
    let p = "/rest/payment";
    let a = post(gw, &format!("{p}/charge-amount"), json!({"charge": {"amount": "4.99", "currency": "EUR", "description": "article"}, "endUserIdentifier": format!("tel:{ALICE}"), "referenceCode": format!("{tag}-c")}), &[]).await;
    expect(&a, 204, "charge-amount");
    let a = post(gw, &format!("{p}/refund-amount"), json!({"charge": {"amount": "1.99", "currency": "EUR", "description": "refund"}, "endUserIdentifier": format!("tel:{ALICE}"), "referenceCode": format!("{tag}-r")}), &[]).await;
    expect(&a, 204, "refund-amount");
    let a = post(gw, &format!("{p}/charge-split-amount"), json!({"charge": {"amount": "10.00", "currency": "EUR", "description": "split"}, "referenceCode": format!("{tag}-s"), "splitInfo": [{"endUserIdentifier": format!("tel:{ALICE}"), "percent": 50}, {"endUserIdentifier": format!("tel:{BOB}"), "percent": 50}]}), &[]).await;
    expect(&a, 204, "charge-split-amount");
    let a = post(gw, &format!("{p}/reserve-amount"), json!({"charge": {"amount": "10.00", "currency": "EUR", "description": "parking"}, "endUserIdentifier": format!("tel:{ALICE}")}), &[]).await;
    expect(&a, 200, "reserve-amount");
    let rsv = a.body["result"].as_str().unwrap().to_string();
    let a = post(gw, &format!("{p}/reserve-additional-amount"), json!({"charge": {"amount": "5.00", "currency": "EUR", "description": "more"}, "reservationIdentifier": rsv}), &[]).await;
    expect(&a, 204, "reserve-additional-amount");
    let a = post(gw, &format!("{p}/charge-reservation"), json!({"charge": {"amount": "12.00", "currency": "EUR", "description": "used"}, "referenceCode": format!("{tag}-u"), "reservationIdentifier": rsv}), &[]).await;
    expect(&a, 204, "charge-reservation");
    let a = post(
        gw,
        &format!("{p}/release-reservation"),
        json!({ "reservationIdentifier": rsv }),
        &[],
    )
    .await;
    expect(&a, 204, "release-reservation");
    (d("4.99") - d("1.99") + d("5.00") + d("12.00"), d("5.00"))
}

/// CAMARA: a 1-step payment and a refund of part of it, a 2-step payment confirmed. Returns
/// ALICE's net debit.
async fn camara(gw: &GatewayProcess, tag: &str) -> Decimal {
    let pay = |amount: &str, reference: String| {
        json!({"amountTransaction": {"phoneNumber": ALICE, "referenceCode": reference,
            "paymentAmount": {"chargingInformation": {"amount": number(amount), "currency": "EUR", "description": "credits"}}}})
    };
    let a = post(
        gw,
        "/carrier-billing/v0.5/payments",
        pay("2.00", format!("{tag}-p1")),
        &[],
    )
    .await;
    expect(&a, 201, "createPayment");
    assert_eq!(a.body["paymentStatus"], "succeeded", "{}", a.body);
    let id = a.body["paymentId"].as_str().unwrap().to_string();
    let a = post(gw, &format!("/carrier-billing-refund/v0.3/payments/{id}/refunds"), json!({"type": "partial", "amountTransaction": {"referenceCode": format!("{tag}-rf"), "refundAmount": {"chargingInformation": {"amount": number("0.50"), "currency": "EUR", "description": "partial"}}}}), &[]).await;
    expect(&a, 201, "createRefund");
    assert_eq!(a.body["refundStatus"], "succeeded", "{}", a.body);
    let a = post(
        gw,
        "/carrier-billing/v0.5/payments/prepare",
        pay("3.00", format!("{tag}-p2")),
        &[],
    )
    .await;
    expect(&a, 201, "preparePayment");
    assert_eq!(a.body["paymentStatus"], "reserved", "{}", a.body);
    let id = a.body["paymentId"].as_str().unwrap().to_string();
    let a = post(
        gw,
        &format!("/carrier-billing/v0.5/payments/{id}/confirm"),
        json!({}),
        &[],
    )
    .await;
    expect(&a, 202, "confirmPayment");
    let a = get(gw, &format!("/carrier-billing/v0.5/payments/{id}")).await;
    assert_eq!(a.body["paymentStatus"], "succeeded", "{}", a.body);
    d("2.00") - d("0.50") + d("3.00")
}

/// The checkout flavour: a purchase paid in one step, another in two. ALICE's debit.
async fn checkout(gw: &GatewayProcess) -> Decimal {
    let base = "/carrier-billing-checkout/v0/purchases";
    let order = json!({"payable": {"type": "digital_good", "order": {"items": [{"name": "pack", "amount": {"value": number("3.99"), "currency": "EUR"}}], "totalAmount": {"value": number("3.99"), "currency": "EUR"}}}});
    let phone = json!({ "phoneNumber": ALICE });
    let a = post(gw, base, order.clone(), &[]).await;
    expect(&a, 201, "createPurchase");
    let one = a.body["id"].as_str().unwrap().to_string();
    let a = post(gw, &format!("{base}/{one}/payment"), phone.clone(), &[]).await;
    expect(&a, 200, "purchase payment");
    assert_eq!(a.body["status"], "succeeded", "{}", a.body);
    let a = post(gw, base, order, &[]).await;
    let two = a.body["id"].as_str().unwrap().to_string();
    let a = post(gw, &format!("{base}/{two}/payment/prepare"), phone, &[]).await;
    expect(&a, 200, "purchase prepare");
    assert_eq!(a.body["status"], "ready_to_confirm", "{}", a.body);
    let a = gw
        .request(
            "POST",
            &format!("{base}/{two}/payment/confirm"),
            Some(&shop()),
            &[],
            None,
        )
        .await
        .unwrap();
    expect(&a, 202, "purchase confirm");
    d("7.98")
}

/// TMF654: a top-up and a balance query. ALICE's credit (a negative debit).
async fn tmf654(gw: &GatewayProcess, tag: &str) -> Decimal {
    let base = "/tmf-api/prepayBalanceManagement/v4";
    let key = format!("{tag}-topup");
    let a = post(gw, &format!("{base}/topupBalance"), json!({"amount": {"amount": 10, "units": "EUR"}, "logicalResource": [{"id": "34671999000", "@referredType": "MSISDN"}]}), &[("Idempotency-Key", key.as_str())]).await;
    expect(&a, 201, "topupBalance");
    assert_eq!(a.body["status"], "completed", "{}", a.body);
    let a = get(
        gw,
        &format!("{base}/bucket/msisdn-34671999000?amount=1.00&units=EUR"),
    )
    .await;
    expect(&a, 200, "bucket");
    assert_eq!(
        a.body["balanceCheck"]["result"], "ENOUGH_CREDIT",
        "{}",
        a.body
    );
    -d("10.00")
}

/// Every family once; checks the money in the simulator's books.
async fn every_family(gw: &GatewayProcess, sim: &OcsSim, tag: &str) {
    let balance = |who: &str| sim.balance(&format!("tel:{who}")).unwrap().amount;
    let (alice0, bob0) = (balance(ALICE), balance(BOB));
    let (a, b) = ocsg(gw, tag).await;
    let debit = a + camara(gw, tag).await + checkout(gw).await + tmf654(gw, tag).await;
    assert_eq!(balance(ALICE), alice0 - debit, "ALICE's books ({tag})");
    assert_eq!(balance(BOB), bob0 - b, "BOB's books ({tag})");
}

/// The learnt styles (kind -> (style, how)) that /admin/ocs reports for the simulator.
async fn learnt(gw: &GatewayProcess) -> Vec<(String, String, String, Value)> {
    let a = get(gw, "/admin/ocs").await;
    expect(&a, 200, "/admin/ocs");
    a.body["learntStyles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["ocs"], "ocs.charging.local", "{l}");
            (
                l["kind"].as_str().unwrap().to_string(),
                l["style"].as_str().unwrap().to_string(),
                l["how"].as_str().unwrap().to_string(),
                l.clone(),
            )
        })
        .collect()
}

/// The value of `gateway_cc_style_fallbacks_total` for `kind`, 0 when absent.
async fn fallbacks(gw: &GatewayProcess, kind: &str) -> u64 {
    let a = get(gw, "/metrics").await;
    expect(&a, 200, "/metrics");
    let text = a.body.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter(|l| {
            l.starts_with("gateway_cc_style_fallbacks_total{")
                && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn against_an_rfc4006_ocs_every_family_works_and_the_event_style_is_learnt_once() {
    let sim = simulator("rfc4006").await;
    let dir = TempDir::new("style-rfc4006");
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    every_family(&gw, &sim, "a").await;
    // The first event was refused (5005, Failed-AVP Requested-Service-Unit) and sent once
    // more at command level; every event after it went at command level at once.
    assert_eq!(fallbacks(&gw, "events").await, 1);
    assert_eq!(fallbacks(&gw, "sessions").await, 0);
    let styles = learnt(&gw).await;
    let events = styles
        .iter()
        .find(|s| s.0 == "events")
        .expect("events learnt");
    assert_eq!(
        (events.1.as_str(), events.2.as_str()),
        ("command_level", "fallback")
    );
    let refusal = events.3["refusal"].as_str().unwrap();
    assert!(
        refusal.contains("DIAMETER_MISSING_AVP (5005)")
            && refusal.contains("Failed-AVP Requested-Service-Unit")
            && refusal.contains("in Multiple-Services-Credit-Control"),
        "{refusal}"
    );
    assert_eq!(
        events.3["configLine"],
        "[credit_control.style] events = \"command_level\""
    );
    let sessions = styles
        .iter()
        .find(|s| s.0 == "sessions")
        .expect("sessions known");
    assert_eq!(
        (sessions.1.as_str(), sessions.2.as_str()),
        ("mscc", "accepted")
    );
    // /health says the same to anyone.
    let h = gw.request("GET", "/health", None, &[], None).await.unwrap();
    expect(&h, 200, "/health");
    assert_eq!(h.body["configuredStyle"]["events"], "auto");
    assert_eq!(h.body["learntStyles"].as_array().unwrap().len(), 2);
    assert_eq!(h.body["peers"][0]["state"], "I-Open", "{}", h.body);
    // Nothing refused reached the books: the simulator's journal has no refused debit, and
    // the ledger matched every 2xx above.
    gw.stop();

    // A restart: the style comes from the store; nothing is learnt again.
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    let styles = learnt(&gw).await;
    assert!(
        styles
            .iter()
            .any(|s| s.0 == "events" && s.1 == "command_level" && s.2 == "fallback"),
        "{styles:?}"
    );
    every_family(&gw, &sim, "b").await;
    assert_eq!(
        fallbacks(&gw, "events").await,
        0,
        "learnt before the restart"
    );
    gw.stop();
    sim.shutdown().await;
}

#[tokio::test]
async fn against_a_3gpp_ocs_every_family_works_in_mscc_without_a_fallback() {
    let sim = simulator("3gpp").await;
    let dir = TempDir::new("style-3gpp");
    let gw = start(&dir.0, sim.local_addr().unwrap()).await;
    every_family(&gw, &sim, "a").await;
    assert_eq!(fallbacks(&gw, "events").await, 0);
    assert_eq!(fallbacks(&gw, "sessions").await, 0);
    let styles = learnt(&gw).await;
    for kind in ["events", "sessions"] {
        let s = styles.iter().find(|s| s.0 == kind).expect("known");
        assert_eq!((s.1.as_str(), s.2.as_str()), ("mscc", "accepted"), "{kind}");
    }
    gw.stop();
    sim.shutdown().await;
}

/// The OCS replaced by one of the other kind while the gateway runs on what it learnt: the
/// learnt style is refused, the request goes once more in the other style, and the style is
/// learnt anew.
#[tokio::test]
async fn a_learnt_style_the_ocs_no_longer_takes_is_learnt_anew() {
    let dir = TempDir::new("style-relearn");
    let rfc = simulator("rfc4006").await;
    let gw = start(&dir.0, rfc.local_addr().unwrap()).await;
    every_family(&gw, &rfc, "a").await;
    gw.stop();
    rfc.shutdown().await;
    // Now a 3GPP OCS: events must go in MSCC again.
    let tgpp = simulator("3gpp").await;
    let gw = start(&dir.0, tgpp.local_addr().unwrap()).await;
    every_family(&gw, &tgpp, "b").await;
    assert_eq!(fallbacks(&gw, "events").await, 1);
    let styles = learnt(&gw).await;
    let events = styles.iter().find(|s| s.0 == "events").unwrap();
    assert_eq!((events.1.as_str(), events.2.as_str()), ("mscc", "fallback"));
    assert!(
        events.3["refusal"]
            .as_str()
            .unwrap()
            .contains("Failed-AVP Multiple-Services-Credit-Control"),
        "{}",
        events.3
    );
    gw.stop();
    tgpp.shutdown().await;
}

/// A style pinned where the OCS does not take it: every family answers a 500 in its own error
/// model that names the Result-Code, the Failed-AVP and the key to change, with no
/// Retry-After (the same request will be refused again); nothing is charged.
#[tokio::test]
async fn a_pinned_style_the_ocs_refuses_is_a_500_that_says_what_to_change() {
    let sim = simulator("rfc4006").await;
    let dir = TempDir::new("style-pinned");
    let gw = start_with(&dir.0, sim.local_addr().unwrap(), "style = \"mscc\"").await;
    let named = |a: &Answer, text: &str| {
        assert_eq!(a.status, 500, "{}", a.body);
        assert!(a.header("retry-after").is_none(), "no Retry-After");
        for part in [
            "DIAMETER_MISSING_AVP (5005)",
            "Failed-AVP Requested-Service-Unit",
            "Error-Message",
            "credit_control.style.events = \"command_level\"",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    };
    let a = post(&gw, "/rest/payment/charge-amount", json!({"charge": {"amount": "1.00", "currency": "EUR"}, "endUserIdentifier": format!("tel:{ALICE}"), "referenceCode": "pin-c"}), &[]).await;
    let m = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(m.starts_with("SVC0001: "), "{m}");
    named(&a, m);
    let a = post(&gw, "/carrier-billing/v0.5/payments", json!({"amountTransaction": {"phoneNumber": ALICE, "referenceCode": "pin-p", "paymentAmount": {"chargingInformation": {"amount": 1, "currency": "EUR", "description": "x"}}}}), &[]).await;
    assert_eq!(a.body["code"], "INTERNAL", "{}", a.body);
    named(&a, a.body["message"].as_str().unwrap_or_default());
    let a = post(&gw, "/tmf-api/prepayBalanceManagement/v4/topupBalance", json!({"amount": {"amount": 1, "units": "EUR"}, "logicalResource": [{"id": "34671999000", "@referredType": "MSISDN"}]}), &[]).await;
    assert_eq!(a.body["code"], "5005", "{}", a.body);
    named(&a, a.body["message"].as_str().unwrap_or_default());
    assert_eq!(
        sim.balance(&format!("tel:{ALICE}")).unwrap().amount,
        d("100.00")
    );
    assert!(sim.journal().is_empty(), "nothing applied");
    // Reservations work in MSCC against this OCS (it takes MSCC in sessions).
    let a = post(&gw, "/rest/payment/reserve-amount", json!({"charge": {"amount": "1.00", "currency": "EUR"}, "endUserIdentifier": format!("tel:{ALICE}")}), &[]).await;
    expect(&a, 200, "reserve-amount");
    gw.stop();
    sim.shutdown().await;
}
