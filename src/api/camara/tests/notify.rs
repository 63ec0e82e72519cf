//! Async mode and notifications of the CAMARA payments and refunds, on the harness of the
//! CAMARA tests: the events are read back from the store's outbox (what the delivery worker
//! posts), with their full bodies, headers and order; money from the simulator's books.

use super::*;
use crate::api::camara::events::{self, CONTENT_TYPE};
use crate::charging::{ChargeInfo, Key};
use crate::config::notifications::NotificationsConfig;
use crate::credit_control::Money;
use crate::store::{EventFilter, EventRow, EventState, ResourceRow};

const SINK: &str = "http://127.0.0.1:9/camara/sink";
const TOKEN: &str = "tok-5f1c.0e9a~7d2b";

fn loopback() -> NotificationsConfig {
    NotificationsConfig {
        allow_http: true,
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NotificationsConfig::default()
    }
}

async fn async_world() -> World {
    world(Opts {
        notifications: Some(loopback()),
        ..Opts::default()
    })
    .await
}

fn credential() -> Value {
    json!({
        "credentialType": "ACCESSTOKEN",
        "accessToken": TOKEN,
        "accessTokenExpiresUtc": "2099-12-31T23:59:59Z",
        "accessTokenType": "bearer"
    })
}

/// `body` with `sink` and `sinkCredential`.
fn with_sink(mut body: Value) -> Value {
    body["sink"] = json!(SINK);
    body["sinkCredential"] = credential();
    body
}

impl World {
    /// The events of `resource`, oldest first.
    async fn events_of(&self, resource: &str) -> Vec<EventRow> {
        let (mut v, _) = self
            .charging
            .store()
            .events(EventFilter {
                resource: Some(resource.to_string()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        v.reverse();
        v
    }

    async fn all_events(&self) -> usize {
        self.charging
            .store()
            .events(EventFilter::default())
            .await
            .unwrap()
            .1
    }

    /// Waits (up to 10 s) until `resource` has `n` events.
    async fn wait_events(&self, resource: &str, n: usize) -> Vec<EventRow> {
        for _ in 0..500 {
            let v = self.events_of(resource).await;
            if v.len() >= n {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{resource}: {n} events expected, got {:?}",
            self.events_of(resource).await
        );
    }

    async fn resources(&self) -> Vec<ResourceRow> {
        self.charging
            .store()
            .resources(ResourceFilter::default())
            .await
            .unwrap()
            .0
    }
}

/// Checks everything of a CloudEvent row but its `data`, which it returns.
fn check_event(e: &EventRow, kind: &str, source: &str, resource: &str) -> Value {
    assert_eq!(e.kind, kind);
    assert_eq!(e.app, "shop");
    assert_eq!(e.resource.as_deref(), Some(resource));
    assert_eq!(e.url, SINK);
    assert_eq!(e.content_type, CONTENT_TYPE);
    assert_eq!(
        e.headers,
        vec![("Authorization".to_string(), format!("Bearer {TOKEN}"))]
    );
    assert_eq!(e.state, EventState::Pending);
    assert_eq!(e.attempts, 0);
    // A UUID (version 4).
    let id = e.id.as_bytes();
    assert_eq!(id.len(), 36, "{}", e.id);
    assert!(
        [8, 13, 18, 23].iter().all(|&i| id[i] == b'-') && id[14] == b'4',
        "{}",
        e.id
    );
    let v: Value = serde_json::from_str(&e.body).unwrap();
    let o = v.as_object().unwrap();
    let mut keys: Vec<_> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "data",
            "datacontenttype",
            "id",
            "source",
            "specversion",
            "time",
            "type"
        ]
    );
    assert_eq!(o["id"], e.id.as_str());
    assert_eq!(o["source"], source);
    assert_eq!(o["specversion"], "1.0");
    assert_eq!(o["type"], kind);
    assert_eq!(o["datacontenttype"], "application/json");
    let t = o["time"].as_str().unwrap();
    assert!(parse_rfc3339(t).is_some(), "{t}");
    o["data"].clone()
}

// ---- payments --------------------------------------------------------------------------------

#[tokio::test]
async fn an_async_payment_is_201_processing_then_completed_by_an_event() {
    let w = async_world().await;
    let body = with_sink(payment(ALICE, "4.99", "async-1", Some("cc-async-1")));
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["paymentStatus"], "processing");
    assert_eq!(v["sink"], SINK);
    assert!(v.get("paymentDate").is_none(), "{v}");
    assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN));
    let id = v["paymentId"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(pay_path(&id).as_str()));

    let evs = w.wait_events(&id, 1).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    let data = check_event(
        &evs[0],
        events::PAYMENT_COMPLETED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    let g = w.get(&pay_path(&id), &shop()).await;
    let p = g.json();
    assert_eq!(p["paymentStatus"], "succeeded", "{p}");
    assert_eq!(p["sink"], SINK);
    assert!(!String::from_utf8_lossy(&g.body).contains(TOKEN));
    assert_eq!(
        data,
        json!({
            "paymentId": id,
            "status": "succeeded",
            "description": "The payment is completed: the amount is charged.",
            "paymentDate": p["paymentDate"],
        })
    );
    assert!(p["paymentDate"].is_string());
    assert_eq!(
        p["amountTransaction"]["paymentAmount"]["chargingInformation"]["amount"],
        num("4.99"),
        "the exact amount, through the stored body"
    );
    assert_eq!(w.balance(ALICE), d("95.01"));
    assert_eq!(w.journal("debit"), 1);

    // A replay answers the payment as it is now: no second charge, no second event.
    let again = w.pay(&body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["paymentStatus"], "succeeded");
    assert_eq!(again.json()["paymentId"], id.as_str());
    assert_eq!(w.balance(ALICE), d("95.01"));
    assert_eq!(w.events_of(&id).await.len(), 1);
    // The same correlator with another sink is another request.
    let mut other = body.clone();
    other["sink"] = json!("http://127.0.0.1:9/other");
    let r = w.pay(&other).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
    );
    // Without a credential: the events carry no Authorization.
    let mut bare = payment(CAROL, "1.00", "async-bare", Some("cc-bare"));
    bare["sink"] = json!(SINK);
    let r = w.pay(&bare).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bid = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&bid, 1).await;
    assert!(evs[0].headers.is_empty(), "{:?}", evs[0].headers);
    // Sync mode writes no event.
    let sid = w.paid(ALICE, "1.00", "sync-1").await;
    assert!(w.events_of(&sid).await.is_empty());
    assert_eq!(w.status(&sid).await, "succeeded");
    assert!(
        w.get(&pay_path(&sid), &shop())
            .await
            .json()
            .get("sink")
            .is_none()
    );
}

#[tokio::test]
async fn an_async_two_step_payment_tells_reserved_completed_and_cancelled() {
    let w = async_world().await;
    let r = w
        .post(
            PAYMENTS_PREPARE,
            &shop(),
            &with_sink(payment(ALICE, "30.00", "async-prep", Some("cc-prep"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["paymentStatus"], "processing");
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&id, 1).await;
    let data = check_event(
        &evs[0],
        events::PAYMENT_RESERVED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    assert_eq!(
        data,
        json!({"paymentId": id, "status": "succeeded",
               "description": "The amount is reserved: confirm or cancel the payment."})
    );
    assert_eq!(w.status(&id).await, "reserved");
    assert_eq!(w.reserved(ALICE), d("30.00"));

    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let evs = w.events_of(&id).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[0].kind, events::PAYMENT_RESERVED, "in order");
    let data = check_event(
        &evs[1],
        events::PAYMENT_COMPLETED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    let p = w.get(&pay_path(&id), &shop()).await.json();
    assert_eq!(p["paymentStatus"], "succeeded");
    assert_eq!(data["paymentDate"], p["paymentDate"]);
    assert_eq!(data["status"], "succeeded");
    assert_eq!(w.balance(ALICE), d("70.00"));
    // A second confirmation is refused and tells nothing.
    let r = w.post(&confirm_path(&id), &shop(), &json!({})).await;
    assert_eq!(r.code(), code::PAYMENT_CONFIRMED);
    assert_eq!(w.events_of(&id).await.len(), 2);

    // Prepare, then cancel.
    let r = w
        .post(
            PAYMENTS_PREPARE,
            &shop(),
            &with_sink(payment(CAROL, "10.00", "async-cancel", Some("cc-cancel"))),
        )
        .await;
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    w.wait_events(&id, 1).await;
    let r = w.post(&cancel_path(&id), &shop(), &json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let evs = w.events_of(&id).await;
    let kinds: Vec<_> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [events::PAYMENT_RESERVED, events::PAYMENT_CANCELLED]);
    let data = check_event(
        &evs[1],
        events::PAYMENT_CANCELLED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    assert_eq!(
        data,
        json!({"paymentId": id, "status": "succeeded",
               "description": "The payment is cancelled: its reservation is released."})
    );
    assert_eq!(w.status(&id).await, "cancelled");
    assert_eq!(w.balance(CAROL), d("50.00"));
    assert_eq!(w.reserved(CAROL), d("0"));
}

#[tokio::test]
async fn an_expired_async_reservation_tells_cancelled() {
    let w = world(Opts {
        notifications: Some(loopback()),
        reservation_ttl: Duration::from_millis(1),
        ..Opts::default()
    })
    .await;
    let r = w
        .post(
            PAYMENTS_PREPARE,
            &shop(),
            &with_sink(payment(ALICE, "5.00", "async-exp", Some("cc-exp"))),
        )
        .await;
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    w.wait_events(&id, 1).await;
    w.reap_all().await;
    // Nobody reads it: the recovery pass notices the expiry.
    let later = crate::store::now_ms() + 60_000;
    assert_eq!(events::recover_at(&w.state, later).await, 1);
    let evs = w.events_of(&id).await;
    let kinds: Vec<_> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [events::PAYMENT_RESERVED, events::PAYMENT_CANCELLED]);
    let data = check_event(
        &evs[1],
        events::PAYMENT_CANCELLED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    assert_eq!(data["status"], "failed");
    assert_eq!(w.status(&id).await, "cancelled");
    // Once: a later pass and a read find nothing to tell.
    assert_eq!(events::recover_at(&w.state, later).await, 0);
    assert_eq!(w.events_of(&id).await.len(), 2);
    assert_eq!(w.balance(ALICE), d("100.00"));
}

#[tokio::test]
async fn a_refused_async_payment_is_denied_with_its_reason() {
    let w = async_world().await;
    // Bob has 5.00: DIAMETER_CREDIT_LIMIT_REACHED; sync mode would answer 403.
    let body = with_sink(payment(BOB, "6.00", "async-deny", Some("cc-deny")));
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["paymentStatus"], "processing");
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&id, 1).await;
    let data = check_event(
        &evs[0],
        events::PAYMENT_DENIED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    assert_eq!(
        data,
        json!({
            "paymentId": id,
            "status": "failed",
            "description": "The payment is denied: nothing is charged.",
            "denialReason": "Payment denied by business. The OCS answered \
                DIAMETER_CREDIT_LIMIT_REACHED (4012).",
        })
    );
    let p = w.get(&pay_path(&id), &shop()).await.json();
    assert_eq!(p["paymentStatus"], "denied");
    assert!(p.get("paymentDate").is_none());
    assert_eq!(w.balance(BOB), d("5.00"));
    // The replay answers the payment, denied (it exists), without another CCR.
    let ops = w.stored_ops().await;
    let again = w.pay(&body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["paymentStatus"], "denied");
    assert_eq!(w.stored_ops().await, ops);
    // It is listed.
    let l = w
        .get(&format!("{PAYMENTS}?paymentStatus=denied"), &shop())
        .await;
    assert_eq!(l.json().as_array().unwrap().len(), 1);

    // An unknown subscriber (sync: 404 IDENTIFIER_NOT_FOUND).
    let r = w
        .pay(&with_sink(payment(
            "+34699999999",
            "1.00",
            "async-who",
            None,
        )))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&id, 1).await;
    let data = check_event(
        &evs[0],
        events::PAYMENT_DENIED,
        "/carrier-billing/v0.5/payments",
        &id,
    );
    assert_eq!(
        data["denialReason"],
        "phoneNumber not found. The OCS does not know it (5030)."
    );
    assert_eq!(w.status(&id).await, "denied");
    assert_eq!(w.journal("debit"), 0);

    // A refused preparation likewise.
    let r = w
        .post(
            PAYMENTS_PREPARE,
            &shop(),
            &with_sink(payment(BOB, "9.00", "async-prep-deny", None)),
        )
        .await;
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&id, 1).await;
    assert_eq!(evs[0].kind, events::PAYMENT_DENIED);
    assert_eq!(w.status(&id).await, "denied");
    assert_eq!(w.reserved(BOB), d("0"));
}

// ---- refunds ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_async_refund_is_201_processing_then_completed_by_an_event() {
    let w = async_world().await;
    let pid = w.paid(ALICE, "20.00", "to-refund").await;
    let body = with_sink(partial("5.00", "rf-async-1", Some("cc-rf-1")));
    let r = w.post(&refunds_path(&pid), &shop(), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["refundStatus"], "processing");
    assert_eq!(v["sink"], SINK);
    assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN));
    let rid = v["refundId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&rid, 1).await;
    let data = check_event(
        &evs[0],
        events::REFUND_COMPLETED,
        &format!("/carrier-billing-refund/v0.3/payments/{pid}/refunds"),
        &rid,
    );
    let g = w
        .get(&format!("{}/{rid}", refunds_path(&pid)), &shop())
        .await
        .json();
    assert_eq!(g["refundStatus"], "succeeded", "{g}");
    assert_eq!(g["sink"], SINK);
    assert_eq!(
        data,
        json!({
            "paymentId": pid,
            "refundId": rid,
            "status": "succeeded",
            "description": "The refund is completed: the amount is given back.",
            "refundDate": g["refundDate"],
        })
    );
    assert!(g["refundDate"].is_string());
    assert_eq!(w.balance(ALICE), d("85.00"));
    assert_eq!(remaining(&w, &pid).await, num("15.00"));
    // The replay: the refund as it is, no second refund.
    let again = w.post(&refunds_path(&pid), &shop(), &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json()["refundStatus"], "succeeded");
    assert_eq!(w.balance(ALICE), d("85.00"));
    assert_eq!(w.journal("refund"), 1);
    assert_eq!(w.events_of(&rid).await.len(), 1);
}

// ---- refused sinks ---------------------------------------------------------------------------

#[tokio::test]
async fn refused_sinks_and_credentials_are_400_and_create_nothing() {
    let strict = world(Opts::default()).await;
    let loose = world(Opts {
        notifications: Some(NotificationsConfig {
            allow_http: true,
            ..NotificationsConfig::default()
        }),
        ..Opts::default()
    })
    .await;
    let w = async_world().await;
    let cred = |f: &dyn Fn(&mut Value)| {
        let mut c = credential();
        f(&mut c);
        c
    };
    let base = payment(ALICE, "1.00", "bad-sink", Some("cc-bad-sink"));
    let body = |sink: Value, c: Option<Value>| {
        let mut b = base.clone();
        b["sink"] = sink;
        if let Some(c) = c {
            b["sinkCredential"] = c;
        }
        b
    };
    let cases: Vec<(&World, Value, &str, &str)> = vec![
        (
            &strict,
            body(json!(SINK), Some(credential())),
            code::INVALID_SINK,
            "http is not accepted",
        ),
        (
            &strict,
            body(json!("https://127.0.0.1/cb"), None),
            code::INVALID_SINK,
            "127.0.0.1 is not a public one",
        ),
        (
            &loose,
            body(json!("http://10.0.0.1/cb"), None),
            code::INVALID_SINK,
            "10.0.0.1 is not a public one",
        ),
        (
            &w,
            body(json!("http://user:pw@127.0.0.1:9/cb"), None),
            code::INVALID_SINK,
            "user information",
        ),
        (
            &w,
            body(json!("ftp://127.0.0.1/cb"), None),
            code::INVALID_SINK,
            "scheme ftp",
        ),
        (&w, body(json!(42), None), code::INVALID_SINK, "a string"),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| c["credentialType"] = json!("PLAIN"))),
            ),
            code::INVALID_CREDENTIAL,
            "Only Access token is supported",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| c["credentialType"] = json!("REFRESHTOKEN"))),
            ),
            code::INVALID_CREDENTIAL,
            "Only Access token is supported",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| {
                    c.as_object_mut().unwrap().remove("accessTokenType");
                })),
            ),
            code::INVALID_TOKEN,
            "Only bearer token is supported",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| c["accessTokenType"] = json!("mac"))),
            ),
            code::INVALID_TOKEN,
            "Only bearer token is supported",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| {
                    c.as_object_mut().unwrap().remove("accessToken");
                })),
            ),
            code::INVALID_ARGUMENT,
            "sinkCredential.accessToken",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| {
                    c.as_object_mut().unwrap().remove("accessTokenExpiresUtc");
                })),
            ),
            code::INVALID_ARGUMENT,
            "sinkCredential.accessTokenExpiresUtc",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| {
                    c["accessTokenExpiresUtc"] = json!("2020-01-01T00:00:00Z");
                })),
            ),
            code::INVALID_TOKEN,
            "expired",
        ),
        (
            &w,
            body(
                json!(SINK),
                Some(cred(&|c| c["accessToken"] = json!("two words"))),
            ),
            code::INVALID_ARGUMENT,
            "sinkCredential.accessToken",
        ),
        (
            &w,
            {
                let mut b = base.clone();
                b["sinkCredential"] = credential();
                b
            },
            code::INVALID_ARGUMENT,
            "given without sink",
        ),
    ];
    for (i, (world, b, want, text)) in cases.iter().enumerate() {
        for path in [PAYMENTS, PAYMENTS_PREPARE] {
            let r = world.post(path, &shop(), b).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (StatusCode::BAD_REQUEST, *want),
                "case {i} {path}: {:?}",
                r.body
            );
            assert!(r.message().contains(text), "case {i}: {}", r.message());
        }
    }
    // The token type is case-insensitive.
    let ok = body(
        json!(SINK),
        Some(cred(&|c| c["accessTokenType"] = json!("Bearer"))),
    );
    let r = w.pay(&ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    w.wait_events(&id, 1).await;

    // Refunds: the same checks.
    let pid = strict.paid(CAROL, "10.00", "rf-bad-sink").await;
    let mut rb = partial("1.00", "rf-bad", None);
    rb["sink"] = json!(SINK);
    let r = strict.post(&refunds_path(&pid), &shop(), &rb).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_SINK)
    );
    rb["sinkCredential"] = cred(&|c| c["credentialType"] = json!("PLAIN"));
    let r = strict.post(&refunds_path(&pid), &shop(), &rb).await;
    assert_eq!(r.code(), code::INVALID_SINK, "the sink is checked first");

    // Nothing was created, stored or sent.
    for (world, paid) in [(&strict, 1), (&loose, 0)] {
        assert_eq!(world.all_events().await, 0);
        assert_eq!(world.journal("debit"), paid);
        assert_eq!(world.journal("reserve"), 0);
        assert_eq!(world.journal("refund"), 0);
    }
    assert_eq!(strict.balance(CAROL), d("40.00"));
    assert_eq!(strict.balance(ALICE), d("100.00"));
    // In `w`: only the one accepted payment.
    let rows = w.resources().await;
    let shown: Vec<_> = rows.iter().filter(|r| r.kind == KIND_PAYMENT).collect();
    assert_eq!(shown.len(), 1, "{rows:?}");
    assert_eq!(w.all_events().await, 1);
    assert_eq!(w.balance(ALICE), d("99.00"));
}

// ---- a restart -------------------------------------------------------------------------------

#[tokio::test]
async fn a_restart_finishes_async_payments_and_tells_them_once() {
    let store = Store::memory();
    // The first process reaches no OCS: its async payments stay `processing` (nothing was
    // applied) and due for a later pass; then it stops.
    let a = world(Opts {
        notifications: Some(loopback()),
        no_ocs: true,
        store: Some(store.clone()),
        ..Opts::default()
    })
    .await;
    let body1 = with_sink(payment(ALICE, "3.00", "restart-1", Some("cc-restart-1")));
    let r = a.pay(&body1).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["paymentStatus"], "processing");
    let id1 = r.json()["paymentId"].as_str().unwrap().to_string();
    let r = a
        .pay(&with_sink(payment(
            CAROL,
            "2.00",
            "restart-2",
            Some("cc-restart-2"),
        )))
        .await;
    let id2 = r.json()["paymentId"].as_str().unwrap().to_string();
    // Its own tasks ran: each payment's CCR was recorded as never sent (retryable).
    for _ in 0..250 {
        let ops = a
            .charging
            .store()
            .operations(OperationFilter::default())
            .await
            .unwrap();
        if ops.len() == 2
            && ops
                .iter()
                .all(|o| o.state == crate::store::OpState::Retryable)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.status(&id1).await, "processing");
    assert!(a.events_of(&id1).await.is_empty());
    drop(a);

    // A fresh process over the same store.
    let b = world(Opts {
        notifications: Some(loopback()),
        store: Some(store.clone()),
        ..Opts::default()
    })
    .await;
    // The second payment's CCR did reach the OCS before the stop (here: b's charging sends it
    // under the payment's own key), its outcome recorded, but not the payment's: the pass
    // must take the recorded outcome, not charge again.
    let key = Key::new("shop", Some(&format!("camara:{id2}:create:1")));
    let sub = SubscriptionId::parse(CAROL).unwrap();
    let info = ChargeInfo {
        description: Some("Game credits".into()),
        code: None,
        reference_code: Some("restart-2".into()),
        merchant: Some("eas-12345".into()),
    };
    let done = b
        .charging
        .charge(
            &key,
            &sub,
            &sub.key(),
            Money::new(d("2.00"), iso_currency::Currency::EUR),
            &info,
        )
        .await
        .unwrap();
    assert!(!done.replayed);
    assert_eq!(b.balance(CAROL), d("48.00"));

    // Two recovery passes at once (as two instances would run them; the payment's lock, in
    // the store on PostgreSQL, is what keeps them apart): each payment is finished once.
    // (Two gateways over one memory store would share one instance id and resend each
    // other's operations, which a shared PostgreSQL store with distinct ids does not.)
    let later = crate::store::now_ms() + 60_000;
    let other = b.state.clone();
    let (nb, nc) = tokio::join!(
        events::recover_at(&b.state, later),
        events::recover_at(&other, later)
    );
    assert!(nb + nc >= 2, "{nb} + {nc}");
    for id in [&id1, &id2] {
        let evs = b.events_of(id).await;
        assert_eq!(evs.len(), 1, "{id}: {evs:?}");
        let data = check_event(
            &evs[0],
            events::PAYMENT_COMPLETED,
            "/carrier-billing/v0.5/payments",
            id,
        );
        let p = b.get(&pay_path(id), &shop()).await.json();
        assert_eq!(p["paymentStatus"], "succeeded", "{p}");
        assert_eq!(data["paymentDate"], p["paymentDate"]);
    }
    // Each charged exactly once.
    assert_eq!(b.journal("debit"), 2);
    assert_eq!(
        (b.balance(ALICE), b.balance(CAROL)),
        (d("97.00"), d("48.00"))
    );
    // Later passes find nothing due; a replay answers the outcome.
    assert_eq!(events::recover_at(&b.state, later).await, 0);
    let r = b.pay(&body1).await;
    assert_eq!(r.json()["paymentStatus"], "succeeded");
    assert_eq!(b.all_events().await, 2);
}

#[test]
fn event_ids_are_version_4_uuids() {
    let a = events::uuid();
    let b = events::uuid();
    assert_ne!(a, b);
    for u in [a, b] {
        assert_eq!(u.len(), 36);
        let parts: Vec<_> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
        assert_eq!(u.as_bytes()[14], b'4', "{u}");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
    }
}

#[tokio::test]
async fn an_event_after_the_token_expired_is_recorded_dead() {
    let c = events::parse_credential(credential(), 0).unwrap();
    assert!(
        !format!("{c:?}").contains(TOKEN),
        "the token is never logged"
    );
    let w = async_world().await;
    // The OCS answers after the sink's token expired.
    let k = SubscriptionId::parse(CAROL).unwrap().key();
    w.sim().set_faults(|f| {
        f.latency_for.insert(k, Duration::from_millis(1200));
    });
    let expires = crate::api::datetime::format_ms(crate::store::now_ms() + 400);
    let mut body = payment(CAROL, "2.00", "late-token", Some("cc-late"));
    body["sink"] = json!(SINK);
    body["sinkCredential"] = credential();
    body["sinkCredential"]["accessTokenExpiresUtc"] = json!(expires);
    let r = w.pay(&body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["paymentId"].as_str().unwrap().to_string();
    let evs = w.wait_events(&id, 1).await;
    assert_eq!(evs[0].kind, events::PAYMENT_COMPLETED);
    assert_eq!(evs[0].state, EventState::Dead, "never posted");
    assert!(
        evs[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("access token expired")),
        "{:?}",
        evs[0].last_error
    );
    // The payment itself is done.
    assert_eq!(w.status(&id).await, "succeeded");
    assert_eq!(w.balance(CAROL), d("48.00"));
}
