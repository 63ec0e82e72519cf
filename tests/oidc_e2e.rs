//! External OpenID Connect tokens end to end: real HTTP -> the `gateway` process (`gateway
//! serve` with `[oidc]`) -> Diameter -> the OCS simulator in this process, with the
//! provider's key set served by this test on 127.0.0.1 (keys made here, ES256 and EdDSA).
//! A valid token works on TMF654 and CAMARA routes; wrong audience, wrong issuer, expired
//! beyond the leeway, `alg: none`, HS256 key confusion and a tampered signature are 401 in
//! each family's error model (CAMARA, TMF, OCSG); a key rotation is picked up without
//! restart; a CAMARA three-legged token binds the payment to its subscriber (API.md 1.7).

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{Answer, GatewayProcess, TempDir, dictionaries};

const ALICE: &str = "+34671999000";
const BOB: &str = "+34600000001";
const PAY: &str = "/carrier-billing/v0.5/payments";
const TOPUPS: &str = "/tmf-api/prepayBalanceManagement/v4/topupBalance";
const OCSG: &str = "/rest/payment/charge-amount";
const AUD: &str = "charging-gateway";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Signer {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

fn es256(kid: &str) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    Signer {
        kid: kid.into(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64u(&raw[1..33]), "y": b64u(&raw[33..65])}),
    }
}

fn ed25519(kid: &str) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Signer {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        enc: EncodingKey::from_ed_der(&kp.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(kp.public_key_raw())}),
    }
}

/// The test's identity provider: its issuer and the key set it serves (replaceable).
struct Provider {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
}

impl Provider {
    async fn start(keys: Value) -> Self {
        let jwks = Arc::new(Mutex::new(keys));
        let served = Arc::clone(&jwks);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/idp", l.local_addr().unwrap());
        let disco = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
        let app = axum::Router::new()
            .route(
                "/idp/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let disco = disco.clone();
                    async move { axum::Json(disco) }
                }),
            )
            .route(
                "/idp/jwks",
                axum::routing::get(move || {
                    let served = Arc::clone(&served);
                    async move { axum::Json(served.lock().unwrap().clone()) }
                }),
            );
        tokio::spawn(async move { axum::serve(l, app).await });
        Self { issuer, jwks }
    }

    fn claims(&self, extra: Value) -> Value {
        let mut c = json!({"iss": self.issuer, "aud": AUD, "azp": "client-shop",
            "sub": "c0ffee-opaque", "exp": now() + 600, "iat": now()});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }
}

fn sign(s: &Signer, claims: &Value) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.kid.clone());
    encode(&h, claims, &s.enc).unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn start(dir: &Path, ocs: std::net::SocketAddr, issuer: &str) -> GatewayProcess {
    // No jwks_url: the key set is found through the issuer's discovery document.
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
style = "mscc"

[http]
listen = "127.0.0.1:0"

[store]
backend = "sqlite"
data_dir = "{data}"

[ocs_sim]
enabled = false

[oidc]
issuer = "{issuer}"
audience = ["{AUD}"]
leeway = "60s"
refetch_interval = "1ms"

[[apps]]
id = "shop"
api_key = "shop-key"
oidc_client_id = "client-shop"
max_amount = "50.00"
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
    );
    GatewayProcess::start(dir, &config).await
}

async fn simulator(dir: &Path) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            journal_path: Some(dir.join("ocs-journal.jsonl")),
            accounts: [(ALICE, "100.00"), (BOB, "5.00")]
                .iter()
                .map(|(s, b)| SimAccount {
                    subscriber: format!("tel:{s}"),
                    balance: d(b),
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

fn balance(sim: &OcsSim, who: &str) -> Decimal {
    sim.balance(&format!("tel:{who}")).unwrap().amount
}

fn payment(who: Option<&str>, amount: &str, reference: &str) -> String {
    let mut v = json!({"amountTransaction": {"referenceCode": reference, "paymentAmount": {
        "chargingInformation": {"amount": serde_json::Number::from_str(amount).unwrap(),
            "currency": "EUR", "description": "Game credits"}}}});
    if let Some(w) = who {
        v["amountTransaction"]["phoneNumber"] = json!(w);
    }
    v.to_string()
}

async fn call(
    gw: &GatewayProcess,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<String>,
) -> Answer {
    gw.request(method, path, Some(auth), &[], body)
        .await
        .unwrap()
}

/// The token is refused with 401 in each family's own error model.
async fn refused_everywhere(gw: &GatewayProcess, token: &str, why: &str) {
    let auth = bearer(token);
    let r = call(
        gw,
        "POST",
        PAY,
        &auth,
        Some(payment(Some(ALICE), "1.00", "never")),
    )
    .await;
    assert_eq!(r.status, 401, "{why}: {}", r.body);
    assert_eq!(r.body["code"], "UNAUTHENTICATED", "{why}: CAMARA ErrorInfo");
    assert_eq!(r.body["status"], 401);
    let r = call(gw, "GET", TOPUPS, &auth, None).await;
    assert_eq!(r.status, 401, "{why}: {}", r.body);
    assert_eq!(r.body["@type"], "Error", "{why}: TMF Error");
    assert_eq!(r.body["code"], "UNAUTHENTICATED", "{why}");
    let r = call(gw, "POST", OCSG, &auth, Some("{}".into())).await;
    assert_eq!(r.status, 401, "{why}: {}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("SVC0001"),
        "{why}: OCSG ServiceException: {}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tokens_end_to_end() {
    let dir = TempDir::new("oidc");
    let (k1, k2) = (es256("k1"), ed25519("k2"));
    let idp = Provider::start(json!({"keys": [k1.jwk, k2.jwk]})).await;
    let sim = simulator(&dir.0).await;
    let gw = start(&dir.0, sim.local_addr().unwrap(), &idp.issuer).await;

    // A valid two-legged token of the shop's client: TMF654 and CAMARA serve it, with the
    // shop's policy.
    let two = bearer(&sign(&k1, &idp.claims(json!({}))));
    let r = call(&gw, "GET", TOPUPS, &two, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &gw,
        "POST",
        PAY,
        &two,
        Some(payment(Some(ALICE), "4.99", "oidc-1")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["paymentStatus"], "succeeded");
    let alice_payment = r.body["paymentId"].as_str().unwrap().to_string();
    assert_eq!(balance(&sim, ALICE), d("95.01"));
    // The shop's max_amount still applies to its tokens.
    let r = call(
        &gw,
        "POST",
        PAY,
        &two,
        Some(payment(Some(ALICE), "60.00", "oidc-big")),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    // Two-legged without phoneNumber: 422 MISSING_IDENTIFIER, as with the API key.
    let r = call(
        &gw,
        "POST",
        PAY,
        &two,
        Some(payment(None, "1.00", "oidc-2")),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (422, Some("MISSING_IDENTIFIER"))
    );
    // The API key goes on working beside tokens.
    let r = call(&gw, "GET", TOPUPS, "Bearer shop-key", None).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Refused tokens: 401 in each family's model.
    refused_everywhere(
        &gw,
        &sign(&k1, &idp.claims(json!({"aud": "someone-else"}))),
        "wrong audience",
    )
    .await;
    refused_everywhere(
        &gw,
        &sign(&k1, &idp.claims(json!({"iss": "https://other.example"}))),
        "wrong issuer",
    )
    .await;
    refused_everywhere(
        &gw,
        &sign(&k1, &idp.claims(json!({"exp": now() - 300}))),
        "expired",
    )
    .await;
    refused_everywhere(
        &gw,
        &sign(&k1, &idp.claims(json!({"azp": "client-unknown"}))),
        "unknown client",
    )
    .await;
    let body = b64u(idp.claims(json!({})).to_string().as_bytes());
    let none = format!("{}.{body}.", b64u(br#"{"alg":"none","kid":"k1"}"#));
    refused_everywhere(&gw, &none, "alg none").await;
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let secret = serde_json::to_vec(&k1.jwk).unwrap();
    let hs = encode(
        &h,
        &idp.claims(json!({})),
        &EncodingKey::from_secret(&secret).unwrap(),
    )
    .unwrap();
    refused_everywhere(&gw, &hs, "HS256 with the public key as secret").await;
    let good = sign(&k1, &idp.claims(json!({})));
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", b64u(&[9u8; 64]));
    refused_everywhere(&gw, &forged, "tampered signature").await;
    let p: Vec<&str> = good.split('.').collect();
    let lifted = b64u(
        idp.claims(json!({"phone_number": ALICE}))
            .to_string()
            .as_bytes(),
    );
    refused_everywhere(
        &gw,
        &format!("{}.{lifted}.{}", p[0], p[2]),
        "tampered claims",
    )
    .await;
    // Nothing of that was charged.
    assert_eq!(balance(&sim, ALICE), d("95.01"));

    // Key rotation: the provider publishes k3 and withdraws k1; no restart.
    let k3 = es256("k3");
    *idp.jwks.lock().unwrap() = json!({"keys": [k3.jwk, k2.jwk]});
    let rotated = bearer(&sign(&k3, &idp.claims(json!({}))));
    let r = call(&gw, "GET", TOPUPS, &rotated, None).await;
    assert_eq!(
        r.status, 200,
        "the new key is fetched on its first token: {}",
        r.body
    );
    refused_everywhere(&gw, &sign(&k1, &idp.claims(json!({}))), "withdrawn key").await;

    // Three-legged: Bob's token (EdDSA) pays for Bob; the body must not name anyone.
    let bob = bearer(&sign(&k2, &idp.claims(json!({"phone_number": BOB}))));
    for who in [BOB, ALICE] {
        let r = call(
            &gw,
            "POST",
            PAY,
            &bob,
            Some(payment(Some(who), "1.00", "oidc-3l-x")),
        )
        .await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (422, Some("UNNECESSARY_IDENTIFIER")),
            "{}",
            r.body
        );
    }
    let r = call(
        &gw,
        "POST",
        PAY,
        &bob,
        Some(payment(None, "2.00", "oidc-3l-1")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bob_payment = r.body["paymentId"].as_str().unwrap().to_string();
    assert_eq!(balance(&sim, BOB), d("3.00"), "Bob paid");
    assert_eq!(balance(&sim, ALICE), d("95.01"), "Alice did not");
    // Bob reads his payment, not Alice's (404), and lists only his.
    let r = call(&gw, "GET", &format!("{PAY}/{bob_payment}"), &bob, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["amountTransaction"]["phoneNumber"], BOB,
        "{}",
        r.body
    );
    let r = call(&gw, "GET", &format!("{PAY}/{alice_payment}"), &bob, None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let r = call(&gw, "GET", PAY, &bob, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["paymentId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bob_payment.as_str()]);
    // The application's own credentials see both.
    let r = call(&gw, "GET", PAY, "Bearer shop-key", None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2, "{}", r.body);
    let r = call(
        &gw,
        "GET",
        &format!("{PAY}/{alice_payment}"),
        &rotated,
        None,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "a two-legged token sees the application's payments"
    );
    gw.stop();
}
