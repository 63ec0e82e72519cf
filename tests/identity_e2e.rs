//! Self-registration end to end through the `gateway` binary: a real SMTP server (Python's
//! aiosmtpd on a loopback port chosen at run time) receives the codes; the test reads the
//! code from the mail, confirms, signs in, refreshes, signs out; wrong and expired codes,
//! a registered address answered as a new one, rate limits and lockout (429, Retry-After).
//!
//! aiosmtpd (Debian `python3-aiosmtpd`): under `CI=true` its absence fails the test;
//! otherwise the test says it is skipped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, SimAccount};

mod support;
use support::process::{GatewayProcess, TempDir, basic, dictionaries};
use support::smtp::SmtpServer;

/// The six digits after "code is " in a mail.
fn code_in(mail: &str) -> Option<String> {
    let i = mail.find("code is ")? + 8;
    let c = mail.get(i..i + 6)?;
    c.bytes().all(|b| b.is_ascii_digit()).then(|| c.to_string())
}

fn config(dir: &Path, ocs: std::net::SocketAddr, smtp_port: u16, code_ttl: &str) -> String {
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
poll_interval = "100ms"

[notifications.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Demo Shop <shop@shop.example>"
timeout = "5s"

[identity]
code_ttl = "{code_ttl}"
signup_limit = 3
max_failed_signins = 3
resend_interval = "1h"
argon2_memory_kib = 64
argon2_iterations = 1
argon2_parallelism = 1

[catalog]
file = "{catalog}"

[inventory]
hold = "10m"
file = "{pool}"

[orders]
interval = "200ms"
retry_min = "100ms"
retry_max = "500ms"
timeout = "60s"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
"#,
        dict = dictionaries().display(),
        data = dir.join("data").display(),
        catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/catalog/demo.json"),
        pool = dir.join("pool.csv").display(),
    )
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct World {
    _dir: TempDir,
    smtp: SmtpServer,
    gw: GatewayProcess,
    sim: OcsSim,
}

/// The phone that pays in the shop tests: 100.00 EUR at the OCS.
const PAYER: &str = "+34671999000";
/// The TMF639 pool: two MSISDNs, two ICCIDs (Luhn-valid).
const POOL: &str = "category,value,portedIn\n\
    MSISDN,34600100001,false\nMSISDN,34600100002,false\n\
    ICCID,8934071000000000014,false\nICCID,8934071000000000022,false\n";

async fn world(name: &str, code_ttl: &str) -> Option<World> {
    let dir = TempDir::new(name);
    let smtp = SmtpServer::start_or_skip(name, &dir.0)?;
    let smtp_port = smtp.port();
    std::fs::write(dir.0.join("pool.csv"), POOL).unwrap();
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: vec![SimAccount {
                subscriber: format!("tel:{PAYER}"),
                balance: "100.00".parse().unwrap(),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap();
    let gw = GatewayProcess::start(
        &dir.0,
        &config(&dir.0, sim.local_addr().unwrap(), smtp_port, code_ttl),
    )
    .await;
    Some(World {
        _dir: dir,
        smtp,
        gw,
        sim,
    })
}

impl World {
    async fn post(&self, path: &str, body: Value) -> support::process::Answer {
        let auth = basic("shop", "shop-secret");
        self.gw
            .request("POST", path, Some(&auth), &[], Some(body.to_string()))
            .await
            .unwrap()
    }

    async fn me(&self, access: &str) -> support::process::Answer {
        let auth = format!("Bearer {access}");
        self.gw
            .request("GET", "/identity/v1/me", Some(&auth), &[], None)
            .await
            .unwrap()
    }

    /// The `n`th mail to `address` (0: the first), once it arrived.
    async fn mail(&self, address: &str, n: usize) -> String {
        wait_for(&format!("mail {n} to {address}"), || {
            self.smtp.texts_to(address).into_iter().nth(n)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_confirm_sign_in_refresh_sign_out() {
    let Some(w) = world("identity_flow", "10m").await else {
        return;
    };
    let ana = "ana@example.com";
    let up = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": "Ana@Example.com", "password": "secret-pw-1", "givenName": "Ana"}),
        )
        .await;
    assert_eq!(up.status, 202, "{:?}", up.body);
    assert_eq!(up.body, json!({"status": "code sent"}));
    let mail = w.mail(ana, 0).await;
    assert!(mail.contains("Subject: Your confirmation code"), "{mail}");
    let code = code_in(&mail).expect("a code in the mail");
    // The code is in no log line (a real mail server is configured).
    assert!(!w.gw.log().iter().any(|l| l.contains(&code)));

    // A wrong code: 400, the field named.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let r = w
        .post(
            "/identity/v1/confirm-sign-up",
            json!({"email": ana, "code": wrong, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "INVALID_CODE");
    assert!(r.body["message"].as_str().unwrap().starts_with("code:"));
    let r = w
        .post(
            "/identity/v1/confirm-sign-up",
            json!({"email": ana, "code": code, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "confirmed");

    // Sign-in: wrong password and unknown address answer alike.
    let bad1 = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": ana, "password": "not-the-password"}),
        )
        .await;
    let bad2 = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": "nobody@example.com", "password": "not-the-password"}),
        )
        .await;
    assert_eq!((bad1.status, bad2.status), (401, 401));
    assert_eq!(bad1.body, bad2.body);
    let t = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": ana, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(t.body["tokenType"], "Bearer");
    assert_eq!(t.body["expiresIn"], 900);
    let access = t.body["accessToken"].as_str().unwrap().to_string();
    let refresh = t.body["refreshToken"].as_str().unwrap().to_string();
    let me = w.me(&access).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["email"], ana);
    assert_eq!(me.body["givenName"], "Ana");
    assert_eq!(me.body["claims"]["app"], "shop");
    assert_eq!(me.body["claims"]["iss"], "charging-gateway");
    assert!(
        me.body["claims"]["sub"]
            .as_str()
            .unwrap()
            .starts_with("usr-")
    );
    // The confirmed sign-up is a TMF629 customer of a TMF632 individual (B2C).
    let cid = me.body["claims"]["cid"].as_str().unwrap().to_string();
    let auth = basic("shop", "shop-secret");
    let customer =
        w.gw.request(
            "GET",
            &format!("/tmf-api/customerManagement/v4/customer/{cid}"),
            Some(&auth),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(customer.status, 200, "{}", customer.body);
    assert_eq!(customer.body["engagedParty"]["@referredType"], "Individual");
    let individual = customer.body["engagedParty"]["id"].as_str().unwrap();
    let person =
        w.gw.request(
            "GET",
            &format!("/tmf-api/partyManagement/v4/individual/{individual}"),
            Some(&auth),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(person.status, 200, "{}", person.body);
    assert_eq!(person.body["givenName"], "Ana");
    assert_eq!(w.me("not-a-token").await.status, 401);

    // Refresh: new tokens; the old refresh token is refused, and its reuse revokes the
    // session, so the new access token is refused too.
    let t2 = w
        .post("/identity/v1/refresh", json!({"refreshToken": refresh}))
        .await;
    assert_eq!(t2.status, 200, "{:?}", t2.body);
    let access2 = t2.body["accessToken"].as_str().unwrap().to_string();
    assert_ne!(t2.body["refreshToken"].as_str().unwrap(), refresh);
    assert_eq!(w.me(&access2).await.status, 200);
    let again = w
        .post("/identity/v1/refresh", json!({"refreshToken": refresh}))
        .await;
    assert_eq!(again.status, 401);
    assert_eq!(w.me(&access2).await.status, 401);

    // Sign-out: the access token is refused after.
    let t3 = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": ana, "password": "secret-pw-1"}),
        )
        .await;
    let access3 = t3.body["accessToken"].as_str().unwrap().to_string();
    assert_eq!(w.me(&access3).await.status, 200);
    let out = w
        .post(
            "/identity/v1/sign-out",
            json!({"refreshToken": t3.body["refreshToken"]}),
        )
        .await;
    assert_eq!(out.status, 204, "{:?}", out.body);
    assert_eq!(w.me(&access3).await.status, 401);

    // A second sign-up for the registered address answers as a new one does; the mailbox
    // is told it has an account, and gets no code.
    let dup = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": ana, "password": "attacker-pw-1"}),
        )
        .await;
    let new = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": "new@example.com", "password": "secret-pw-2"}),
        )
        .await;
    assert_eq!((dup.status, &dup.body), (new.status, &new.body));
    let told = w.mail(ana, 1).await;
    assert!(told.contains("You already have an account"), "{told}");
    assert!(code_in(&told).is_none());
    let still = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": ana, "password": "attacker-pw-1"}),
        )
        .await;
    assert_eq!(still.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_lock_a_sign_up_and_limits_answer_429() {
    let Some(w) = world("identity_limits", "10m").await else {
        return;
    };
    let bob = "bob@example.com";
    let r = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": bob, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 202);
    let code = code_in(&w.mail(bob, 0).await).unwrap();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        let r = w
            .post(
                "/identity/v1/confirm-sign-up",
                json!({"email": bob, "code": wrong, "password": "secret-pw-1"}),
            )
            .await;
        assert_eq!(r.status, 400);
    }
    // max_attempts (5) used up: the right code is refused, the same answer.
    let r = w
        .post(
            "/identity/v1/confirm-sign-up",
            json!({"email": bob, "code": code, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "INVALID_CODE");
    // A resend: a new code, which confirms.
    let r = w.post("/identity/v1/resend", json!({"email": bob})).await;
    assert_eq!(r.status, 202);
    let code2 = code_in(&w.mail(bob, 1).await).unwrap();
    let r = w
        .post(
            "/identity/v1/confirm-sign-up",
            json!({"email": bob, "code": code2, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Another resend within resend_interval (1h): 429 with Retry-After.
    let r = w.post("/identity/v1/resend", json!({"email": bob})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["code"], "TOO_MANY_REQUESTS");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&secs), "{secs}");

    // signup_limit = 3 per address per window: the fourth is 429.
    for _ in 0..3 {
        let r = w
            .post(
                "/identity/v1/sign-up",
                json!({"email": "carl@example.com", "password": "secret-pw-1"}),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let r = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": "carl@example.com", "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());

    // max_failed_signins = 3: then even the right password waits for the lockout.
    for _ in 0..3 {
        let r = w
            .post(
                "/identity/v1/sign-in",
                json!({"email": bob, "password": "wrong-password"}),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": bob, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((800..=900).contains(&secs), "{secs}");

    // Bad input: 400 naming the field.
    let r = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": "not-an-address", "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().starts_with("email:"));
    let r = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": "dan@example.com", "password": "short"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().starts_with("password:"));
    // Without application credentials: 401.
    let r =
        w.gw.request(
            "POST",
            "/identity/v1/sign-up",
            None,
            &[],
            Some(json!({"email": "dan@example.com", "password": "secret-pw-1"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused() {
    let Some(w) = world("identity_expiry", "1s").await else {
        return;
    };
    let eve = "eve@example.com";
    let r = w
        .post(
            "/identity/v1/sign-up",
            json!({"email": eve, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 202);
    let sent = Instant::now();
    let code = code_in(&w.mail(eve, 0).await).unwrap();
    // Past the code's life (code_ttl = 1s).
    if let Some(rest) = Duration::from_millis(1500).checked_sub(sent.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let r = w
        .post(
            "/identity/v1/confirm-sign-up",
            json!({"email": eve, "code": code, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "INVALID_CODE");
    let r = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": eve, "password": "secret-pw-1"}),
        )
        .await;
    assert_eq!(r.status, 401);
}

impl World {
    /// Signs `email` up, confirms it with the code from its mail, signs in: the access token.
    async fn customer_token(&self, email: &str) -> String {
        let pw = "secret-pw-9";
        let r = self
            .post(
                "/identity/v1/sign-up",
                json!({"email": email, "password": pw}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let code = code_in(&self.mail(email, 0).await).expect("a code");
        let r = self
            .post(
                "/identity/v1/confirm-sign-up",
                json!({"email": email, "code": code, "password": pw}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = self
            .post(
                "/identity/v1/sign-in",
                json!({"email": email, "password": pw}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["accessToken"].as_str().unwrap().to_string()
    }

    async fn with_token(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> support::process::Answer {
        let auth = format!("Bearer {token}");
        self.gw
            .request(
                method,
                path,
                Some(&auth),
                &[("content-type", "application/json")],
                body.map(|b| b.to_string()),
            )
            .await
            .unwrap()
    }
}

/// The shop's APIs with a customer's access token act for that customer only: a cart made
/// with Ana's token is Ana's (Bea's token: 404, and not in Bea's list), while the shop's own
/// application credentials still see every cart of the application; a signed-out token is
/// refused in the family's error model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_token_acts_for_that_customer_only() {
    let Some(w) = world("identity_tokens", "10m").await else {
        return;
    };
    let carts = "/tmf-api/shoppingCart/v4/shoppingCart";
    let ana = w.customer_token("ana@example.com").await;
    let bea = w.customer_token("bea@example.com").await;
    let contact = json!({"contactMedium": [{"mediumType": "email",
        "characteristic": {"emailAddress": "ana@example.com"}}]});
    let made = w.with_token("POST", carts, &ana, Some(contact)).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["id"].as_str().unwrap().to_string();
    let one = format!("{carts}/{id}");
    assert_eq!(w.with_token("GET", &one, &ana, None).await.status, 200);
    // Bea: not found, to read, change or delete; her list is empty.
    let other = w.with_token("GET", &one, &bea, None).await;
    assert_eq!(other.status, 404, "{:?}", other.body);
    assert_eq!(other.body["@type"], "Error");
    let patch = w
        .with_token("PATCH", &one, &bea, Some(json!({"characteristic": []})))
        .await;
    assert_eq!(patch.status, 404);
    assert_eq!(w.with_token("DELETE", &one, &bea, None).await.status, 404);
    let list = w.with_token("GET", carts, &bea, None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, json!([]));
    assert_eq!(list.header("x-total-count"), Some("0"));
    // Ana's list has it; the application's credentials (back office) see it too.
    let list = w.with_token("GET", carts, &ana, None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{:?}", list.body);
    assert_eq!(list.body[0]["id"], id.as_str());
    let auth = basic("shop", "shop-secret");
    let back =
        w.gw.request("GET", &one, Some(&auth), &[], None)
            .await
            .unwrap();
    assert_eq!(back.status, 200);
    // Signed out: Ana's token is refused, a TMF Error 401.
    let t = w
        .post(
            "/identity/v1/sign-in",
            json!({"email": "ana@example.com", "password": "secret-pw-9"}),
        )
        .await;
    let (access, refresh) = (
        t.body["accessToken"].as_str().unwrap().to_string(),
        t.body["refreshToken"].as_str().unwrap().to_string(),
    );
    assert_eq!(w.with_token("GET", &one, &access, None).await.status, 200);
    let out = w
        .post("/identity/v1/sign-out", json!({"refreshToken": refresh}))
        .await;
    assert_eq!(out.status, 204);
    let refused = w.with_token("GET", &one, &access, None).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.body["@type"], "Error");
}

/// Issue 13 "done when": a newcomer signs up, confirms with the mailed code, signs in, fills
/// a cart with a SIM and a number and checks out with the access token alone. The order is
/// the customer's (its relatedParty, its listings), another customer does not see it, and
/// the token reaches nothing but the shop: no money movement of its own, no other customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_customer_buys_a_number_with_the_token() {
    let Some(w) = world("identity_shop", "10m").await else {
        return;
    };
    let (carts, orders) = (
        "/tmf-api/shoppingCart/v4/shoppingCart",
        "/tmf-api/productOrderingManagement/v4/productOrder",
    );
    let customers = "/tmf-api/customerManagement/v4/customer";
    let ana = w.customer_token("ana@example.com").await;
    let bea = w.customer_token("bea@example.com").await;
    let me = w.me(&ana).await;
    let cid = me.body["claims"]["cid"].as_str().unwrap().to_string();
    assert!(cid.starts_with("customer-"), "{:?}", me.body);

    // The available numbers, read with the token (TMF639 is the shop's too).
    let free = w
        .with_token(
            "GET",
            "/tmf-api/resourceInventoryManagement/v4/resource?resourceStatus=available",
            &ana,
            None,
        )
        .await;
    assert_eq!(free.status, 200, "{:?}", free.body);
    let item = json!({"productOffering": {"id": "po-prepaid-sim"},
        "product": {"realizingResource": [{"id": "msisdn-34600100001"},
                                          {"id": "iccid-8934071000000000014"}]}});
    let cart = w
        .with_token("POST", carts, &ana, Some(json!({"cartItem": [item]})))
        .await;
    assert_eq!(cart.status, 201, "{:?}", cart.body);
    let cart_id = cart.body["id"].as_str().unwrap().to_string();
    let checkout = json!({"shoppingCart": {"id": cart_id},
        "paymentMethod": {"@type": "carrierBilling", "phoneNumber": PAYER}});
    // Bea cannot check out Ana's cart: it is not hers (404, nothing changed).
    let theirs = w
        .with_token("POST", orders, &bea, Some(checkout.clone()))
        .await;
    assert_eq!(theirs.status, 404, "{:?}", theirs.body);
    assert_eq!(theirs.body["@type"], "Error");
    let made = w
        .with_token("POST", orders, &ana, Some(checkout.clone()))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let order_id = made.body["id"].as_str().unwrap().to_string();
    let one = format!("{orders}/{order_id}");
    let done = support::wait_for("the order ended", async || {
        let o = w.with_token("GET", &one, &ana, None).await;
        assert_eq!(o.status, 200, "{:?}", o.body);
        matches!(o.body["state"].as_str(), Some("completed" | "failed")).then_some(o.body)
    })
    .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert!(
        done["relatedParty"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == cid.as_str() && p["role"] == "customer"),
        "{done}"
    );
    // Charged once at the OCS: 4.99 EUR of the payer's 100.00.
    let left = w.sim.account(&format!("tel:{PAYER}")).unwrap().balance;
    assert_eq!(left.to_string(), "95.01");
    // The number is the order's.
    let n = w
        .with_token(
            "GET",
            "/tmf-api/resourceInventoryManagement/v4/resource/msisdn-34600100001",
            &ana,
            None,
        )
        .await;
    assert_eq!(n.body["usageState"], "active", "{:?}", n.body);
    assert_eq!(n.body["relatedParty"][0]["id"], order_id.as_str());
    // The same checkout again: the same order, not a second charge.
    let again = w.with_token("POST", orders, &ana, Some(checkout)).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["id"], order_id.as_str());

    // Ana's listing has the order; Bea's is empty and Ana's order is 404 to her.
    let list = w.with_token("GET", orders, &ana, None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "{:?}", list.body);
    let list = w.with_token("GET", orders, &bea, None).await;
    assert_eq!(list.body, json!([]));
    assert_eq!(list.header("x-total-count"), Some("0"));
    assert_eq!(w.with_token("GET", &one, &bea, None).await.status, 404);
    // The back office (the application's credentials) sees it.
    let auth = basic("shop", "shop-secret");
    let back =
        w.gw.request("GET", &one, Some(&auth), &[], None)
            .await
            .unwrap();
    assert_eq!(back.status, 200);

    // TMF629 with the token: her own customer only; no creating or deleting customers.
    let mine = w.with_token("GET", customers, &ana, None).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body.as_array().unwrap().len(), 1, "{:?}", mine.body);
    assert_eq!(mine.body[0]["id"], cid.as_str());
    let own = format!("{customers}/{cid}");
    assert_eq!(w.with_token("GET", &own, &ana, None).await.status, 200);
    let other = w.with_token("GET", &own, &bea, None).await;
    assert_eq!(other.status, 404, "{:?}", other.body);
    let renamed = w
        .with_token("PATCH", &own, &ana, Some(json!({"name": "Ana Shop"})))
        .await;
    assert_eq!(renamed.status, 200, "{:?}", renamed.body);
    assert_eq!(renamed.body["name"], "Ana Shop");
    let moved = w
        .with_token(
            "PATCH",
            &own,
            &ana,
            Some(json!({"engagedParty": {"id": "ind-someone-else"}})),
        )
        .await;
    assert_eq!(moved.status, 403, "{:?}", moved.body);
    assert_eq!(
        w.with_token("PATCH", &own, &bea, Some(json!({"name": "x"})))
            .await
            .status,
        404
    );
    let made = w
        .with_token(
            "POST",
            customers,
            &ana,
            Some(json!({"engagedParty": {"id": "ind-x"}})),
        )
        .await;
    assert_eq!(made.status, 403, "{:?}", made.body);
    assert_eq!(w.with_token("DELETE", &own, &ana, None).await.status, 403);

    // Outside the shop the token is refused: no charge of a subscriber, no balance, no
    // parties (each in its family's error model).
    let charge = w
        .with_token(
            "POST",
            "/rest/payment/charge-amount",
            &ana,
            Some(
                json!({"endUserIdentifier": format!("tel:{PAYER}"), "referenceCode": "r-ana-1",
                "charge": {"amount": "1.00", "currency": "EUR", "description": "not hers"}}),
            ),
        )
        .await;
    assert_eq!(charge.status, 403, "{:?}", charge.body);
    let bucket = w
        .with_token(
            "GET",
            "/tmf-api/prepayBalanceManagement/v4/bucket?logicalResource.value=34671999000",
            &ana,
            None,
        )
        .await;
    assert_eq!(bucket.status, 403, "{:?}", bucket.body);
    let parties = w
        .with_token("GET", "/tmf-api/partyManagement/v4/individual", &ana, None)
        .await;
    assert_eq!(parties.status, 403, "{:?}", parties.body);
    assert_eq!(
        w.sim
            .account(&format!("tel:{PAYER}"))
            .unwrap()
            .balance
            .to_string(),
        "95.01"
    );
}
