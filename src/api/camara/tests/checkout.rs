//! Handler tests of the Carrier Billing Checkout flavour, on the harness of the CAMARA tests:
//! the OCS simulator over TCP, the credit-control client, `Charging` over a memory store.
//! Every answer is checked with what the simulator's books say.

use super::*;
use crate::api::camara::checkout::checkout_code;

fn purchase_body(total: &str, items: &[&str]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({"name": format!("item {i}"), "amount": {"value": num(a), "currency": "EUR", "taxIncluded": true}})
        })
        .collect();
    json!({
        "payable": {
            "type": "digital_good",
            "merchant": {"id": "merchant-1", "name": "Games Ltd", "fee": num("15.45")},
            "order": {
                "id": "order-1",
                "items": items,
                "totalAmount": {"value": num(total), "currency": "EUR", "taxIncluded": true}
            }
        }
    })
}

fn purchase_path(id: &str) -> String {
    PURCHASE.replace("{purchaseId}", id)
}

fn step_path(template: &str, id: &str) -> String {
    template.replace("{purchaseId}", id)
}

fn phone(who: &str) -> Value {
    json!({ "phoneNumber": who })
}

impl World {
    /// A purchase created for `auth` and checked: its id.
    async fn purchase(&self, auth: &Auth, total: &str) -> String {
        let r = self
            .post(PURCHASES, auth, &purchase_body(total, &[total]))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.json()["status"], "initialising");
        r.json()["id"].as_str().unwrap().to_string()
    }

    async fn purchase_status(&self, id: &str) -> String {
        let r = self.get(&purchase_path(id), &shop()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["status"].as_str().unwrap().to_string()
    }

    /// Confirm or cancel: the answer without a body.
    async fn step(&self, template: &str, id: &str) -> Resp {
        self.send(
            Method::POST,
            &step_path(template, id),
            &[(shop().0, shop().1.as_str())],
            Body::empty(),
        )
        .await
    }

    /// Confirm and cancel are both refused: the purchase reached a final status.
    async fn final_status(&self, id: &str) {
        for path in [PURCHASE_CONFIRM, PURCHASE_CANCEL] {
            let r = self.step(path, id).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (
                    StatusCode::CONFLICT,
                    checkout_code::PAYMENT_REACHED_FINAL_STATUS
                ),
                "{path}"
            );
        }
    }

    async fn prepared_purchase(&self, who: &str, total: &str) -> String {
        let id = self.purchase(&shop(), total).await;
        let r = self
            .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(who))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.json(), json!({"id": id, "status": "ready_to_confirm"}));
        id
    }
}

/// `taxIncluded` of the total and of each item as the client sends it (`None`: absent).
fn taxed_purchase(total: Option<bool>, items: &[Option<bool>]) -> Value {
    let amount = |value: &str, tax: Option<bool>| {
        let mut a = json!({"value": num(value), "currency": "EUR"});
        if let Some(t) = tax {
            a["taxIncluded"] = json!(t);
        }
        a
    };
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"name": format!("item {i}"), "amount": amount("1.00", *t)}))
        .collect();
    let sum = format!("{}.00", items.len());
    json!({"payable": {"type": "digital_good", "order": {
        "items": items, "totalAmount": amount(&sum, total)}}})
}

#[tokio::test]
async fn an_order_has_one_tax_included_for_its_total_and_items() {
    let w = world(Opts::default()).await;
    // (total, items) as sent -> the one value answered, and stored, for all of them.
    for (total, items, expected) in [
        (Some(true), vec![None, None], true),
        (Some(true), vec![Some(true), None], true),
        (Some(false), vec![None, Some(false)], false),
        (None, vec![None, Some(true), None], true),
        (None, vec![Some(false), None], false),
        (None, vec![None, None], false),
    ] {
        let case = format!("total {total:?}, items {items:?}");
        let r = w
            .post(PURCHASES, &shop(), &taxed_purchase(total, &items))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{case}: {:?}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let stored = w.get(&purchase_path(&id), &shop()).await.json();
        for v in [r.json(), stored] {
            let order = &v["payable"]["order"];
            assert_eq!(order["totalAmount"]["taxIncluded"], expected, "{case}: {v}");
            let answered = order["items"].as_array().unwrap();
            assert_eq!(answered.len(), items.len(), "{case}");
            for it in answered {
                assert_eq!(it["amount"]["taxIncluded"], expected, "{case}: {v}");
            }
        }
    }
    // A contradiction is refused, naming the item and what it contradicts; nothing created.
    let before = w.get(PURCHASES, &shop()).await.json();
    for (total, items, field, against) in [
        (
            Some(true),
            vec![None, Some(false)],
            "payable.order.items[1].amount.taxIncluded",
            "payable.order.totalAmount.taxIncluded (true)",
        ),
        (
            Some(false),
            vec![Some(true)],
            "payable.order.items[0].amount.taxIncluded",
            "payable.order.totalAmount.taxIncluded (false)",
        ),
        (
            None,
            vec![None, Some(true), Some(false)],
            "payable.order.items[2].amount.taxIncluded",
            "payable.order.items[1].amount.taxIncluded (true)",
        ),
    ] {
        let r = w
            .post(PURCHASES, &shop(), &taxed_purchase(total, &items))
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            "{:?}",
            r.body
        );
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(field) && message.contains(against),
            "{message}"
        );
    }
    assert_eq!(w.get(PURCHASES, &shop()).await.json(), before);
    assert!(w.sim().journal().is_empty());
}

#[tokio::test]
async fn a_purchase_is_created_initialising_without_any_ccr_and_read_back() {
    let w = world(Opts::default()).await;
    let body = purchase_body("65.00", &["25", "40"]);
    let r = w
        .post_with(
            PURCHASES,
            &shop(),
            &[("x-correlator", "ck-1")],
            &body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("x-correlator"), Some("ck-1"));
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    // A UUID (version 4).
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.as_bytes()[14], b'4', "{id}");
    assert_eq!(r.header("location"), Some(purchase_path(&id).as_str()));
    assert_eq!(v["status"], "initialising");
    // The payable as checked: amounts exact in the currency's minor unit.
    assert_eq!(v["payable"]["order"]["totalAmount"]["value"], num("65.00"));
    assert_eq!(
        v["payable"]["order"]["items"][0]["amount"]["value"],
        num("25.00")
    );
    assert_eq!(v["payable"]["merchant"]["id"], "merchant-1");
    assert!(v.get("notificationUrl").is_none(), "{v}");
    // Nothing was sent to the OCS.
    assert!(w.sim().journal().is_empty());
    let g = w.get(&purchase_path(&id), &shop()).await;
    assert_eq!(g.status, StatusCode::OK);
    let g = g.json();
    assert_eq!(g["status"], "initialising");
    assert_eq!(g["payable"], v["payable"]);
    assert!(g.get("paymentDate").is_none(), "{g}");
    // Stored as a resource of the caller.
    let row = w.charging.store().resource(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.app.as_str(), row.kind.as_str(), row.state.as_str()),
        ("shop", KIND_PURCHASE, "initialising")
    );
    // Another application does not see it.
    let o = w.get(&purchase_path(&id), &key("k-other")).await;
    assert_eq!(
        (o.status, o.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
    let o = w
        .post(
            &step_path(PURCHASE_PAYMENT, &id),
            &key("k-other"),
            &phone(ALICE),
        )
        .await;
    assert_eq!(o.status, StatusCode::NOT_FOUND);
    assert_eq!(w.balance(ALICE), d("100.00"));
}

#[tokio::test]
async fn listing_pages_the_callers_own_purchases() {
    let w = world(Opts::default()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(w.purchase(&shop(), "1.00").await);
        // Creation times apart: the listing is newest first.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    w.purchase(&key("k-other"), "1.00").await;
    let list = |q: &'static str| {
        let w = &w;
        async move {
            let r = w.get(&format!("{PURCHASES}{q}"), &shop()).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {:?}", r.body);
            let got: Vec<String> = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string())
                .collect();
            (
                got,
                r.header("x-total-count").unwrap().to_string(),
                r.header("content-last-key").unwrap().to_string(),
            )
        }
    };
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    // Without paging: the last 24 hours, only the caller's.
    assert_eq!(list("").await, (newest.clone(), "3".into(), "3".into()));
    assert_eq!(
        list("?perPage=2").await,
        (newest[..2].to_vec(), "3".into(), "2".into())
    );
    assert_eq!(
        list("?perPage=2&page=2").await,
        (newest[2..].to_vec(), "3".into(), "3".into())
    );
    // seek: after the first item read.
    assert_eq!(
        list("?seek=1&perPage=1").await,
        (newest[1..2].to_vec(), "3".into(), "2".into())
    );
    for (q, status, c) in [
        (
            "?page=3&perPage=2",
            StatusCode::BAD_REQUEST,
            code::OUT_OF_RANGE,
        ),
        ("?seek=3", StatusCode::BAD_REQUEST, code::OUT_OF_RANGE),
        ("?perPage=0", StatusCode::BAD_REQUEST, code::OUT_OF_RANGE),
        ("?perPage=101", StatusCode::BAD_REQUEST, code::OUT_OF_RANGE),
        ("?page=x", StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
        ("?seek=-1", StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
        (
            "?page=1&seek=0",
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
        ),
        (
            "?page=1&page=2",
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
        ),
    ] {
        let r = w.get(&format!("{PURCHASES}{q}"), &shop()).await;
        assert_eq!((r.status, r.code().as_str()), (status, c), "{q}");
    }
    let r = w.get(PURCHASES, &key("k-other")).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_one_step_payment_charges_the_total_once() {
    let w = world(Opts::default()).await;
    let id = w.purchase(&shop(), "4.99").await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"id": id, "status": "succeeded"}));
    assert_eq!(w.balance(ALICE), d("95.01"));
    let debits: Vec<_> = w
        .sim()
        .journal()
        .into_iter()
        .filter(|e| e.op == "debit")
        .collect();
    assert_eq!(debits.len(), 1);
    assert_eq!(debits[0].amount, d("4.99"));
    let g = w.get(&purchase_path(&id), &shop()).await.json();
    assert_eq!(g["status"], "succeeded");
    assert!(g["paymentDate"].is_string(), "{g}");
    assert_eq!(crate::api::datetime::assert_fixed_form(&g), 2, "{g}");
    // A second payment of the same purchase, in one step or two: 409, nothing charged.
    for path in [PURCHASE_PAYMENT, PURCHASE_PREPARE] {
        let r = w.post(&step_path(path, &id), &shop(), &phone(ALICE)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::CONFLICT, code::ALREADY_EXISTS),
            "{path}"
        );
    }
    // Confirm or cancel after it: a final status.
    w.final_status(&id).await;
    assert_eq!(w.balance(ALICE), d("95.01"));
    assert_eq!(w.journal("debit"), 1);
    // The purchase's payment is not a payment of the payments API.
    let l = w.get(PAYMENTS, &shop()).await;
    assert_eq!(l.json(), json!([]));
}

#[tokio::test]
async fn a_refusal_of_the_ocs_fails_the_purchase_and_charges_nothing() {
    let w = world(Opts::default()).await;
    // BOB has 5.00.
    let id = w.purchase(&shop(), "9.00").await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, code::PERMISSION_DENIED),
        "{:?}",
        r.body
    );
    assert_eq!(w.balance(BOB), d("5.00"));
    assert_eq!(w.journal("debit"), 0);
    assert_eq!(w.purchase_status(&id).await, "failed");
    // A new payment needs a new purchase.
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::ALREADY_EXISTS)
    );
    w.final_status(&id).await;
    // A reservation beyond the balance is refused the same way.
    let id = w.purchase(&shop(), "6.00").await;
    let r = w
        .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(w.purchase_status(&id).await, "failed");
    assert_eq!((w.balance(BOB), w.reserved(BOB)), (d("5.00"), d("0")));
    // A phone number the OCS does not know: 404, nothing charged.
    let id = w.purchase(&shop(), "1.00").await;
    let r = w
        .post(
            &step_path(PURCHASE_PAYMENT, &id),
            &shop(),
            &phone("+34699999999"),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::IDENTIFIER_NOT_FOUND)
    );
    assert_eq!(w.journal("debit"), 0);
}

#[tokio::test]
async fn prepare_then_confirm_commits_the_reservation_once() {
    let w = world(Opts::default()).await;
    let id = w.prepared_purchase(ALICE, "12.00").await;
    assert_eq!(
        (w.balance(ALICE), w.reserved(ALICE)),
        (d("100.00"), d("12.00"))
    );
    assert_eq!(w.purchase_status(&id).await, "ready_to_confirm");
    // Another prepare or a 1-step payment: the purchase has its payment.
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, code::ALREADY_EXISTS)
    );
    let r = w.step(PURCHASE_CONFIRM, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(r.body.is_empty());
    assert_eq!((w.balance(ALICE), w.reserved(ALICE)), (d("88.00"), d("0")));
    assert_eq!((w.journal("reserve"), w.journal("commit")), (1, 1));
    assert_eq!(w.purchase_status(&id).await, "succeeded");
    w.final_status(&id).await;
    assert_eq!(w.balance(ALICE), d("88.00"));
    assert_eq!(w.journal("commit"), 1);
}

#[tokio::test]
async fn prepare_then_cancel_releases_the_reservation() {
    let w = world(Opts::default()).await;
    let id = w.prepared_purchase(CAROL, "20.00").await;
    assert_eq!(w.reserved(CAROL), d("20.00"));
    let r = w.step(PURCHASE_CANCEL, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!((w.balance(CAROL), w.reserved(CAROL)), (d("50.00"), d("0")));
    assert_eq!((w.journal("release"), w.journal("commit")), (1, 0));
    assert_eq!(w.purchase_status(&id).await, "cancelled");
    w.final_status(&id).await;
    assert_eq!(w.balance(CAROL), d("50.00"));
}

#[tokio::test]
async fn confirm_or_cancel_before_prepare_is_a_failed_precondition() {
    let w = world(Opts::default()).await;
    let id = w.purchase(&shop(), "3.00").await;
    for path in [PURCHASE_CONFIRM, PURCHASE_CANCEL] {
        let r = w.step(path, &id).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (
                StatusCode::PRECONDITION_FAILED,
                checkout_code::FAILED_PRECONDITION
            ),
            "{path}"
        );
    }
    assert_eq!(w.purchase_status(&id).await, "initialising");
    assert!(w.sim().journal().is_empty());
    // An unknown purchase: 404.
    let r = w
        .step(PURCHASE_CONFIRM, "00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, code::NOT_FOUND)
    );
}

#[tokio::test]
async fn an_expired_reservation_reads_as_cancelled() {
    let w = world(Opts {
        reservation_ttl: Duration::from_millis(1),
        ..Opts::default()
    })
    .await;
    let id = w.prepared_purchase(ALICE, "30.00").await;
    w.reap_all().await;
    assert_eq!(w.reserved(ALICE), d("0"));
    let r = w.step(PURCHASE_CONFIRM, &id).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (
            StatusCode::CONFLICT,
            checkout_code::PAYMENT_REACHED_FINAL_STATUS
        )
    );
    assert_eq!(w.purchase_status(&id).await, "cancelled");
    assert_eq!(w.balance(ALICE), d("100.00"));
}

/// A world whose OCS answers `who`'s requests after the gateway stopped waiting (Tx 300 ms,
/// the answer after 1.5 s): their outcome is unknown until the faults are cleared.
async fn slow_for(who: &str) -> World {
    let w = world(Opts {
        tx: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    let k = SubscriptionId::parse(who).unwrap().key();
    w.sim().set_faults(|f| {
        f.latency_for.insert(k, Duration::from_millis(1500));
    });
    w
}

/// The OCS answers after the gateway stopped waiting: 504, the purchase `processing` (never
/// succeeded nor failed) until a read learns the outcome; charged exactly once.
#[tokio::test]
async fn an_unknown_outcome_stays_processing_until_a_read_resolves_it() {
    let w = slow_for(CAROL).await;
    let id = w.purchase(&shop(), "7.00").await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(CAROL))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::GATEWAY_TIMEOUT, code::TIMEOUT),
        "{:?}",
        r.body
    );
    assert!(r.message().contains("processing"), "{}", r.message());
    // A listing does not send anything: still processing.
    let l = w.get(PURCHASES, &shop()).await.json();
    assert_eq!(l[0]["status"], "processing", "{l}");
    // Confirm or cancel a payment whose outcome is unknown: it is not ready.
    let r = w.step(PURCHASE_CONFIRM, &id).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{:?}", r.body);
    w.sim().clear_faults();
    let mut status = String::new();
    for _ in 0..300 {
        status = w.purchase_status(&id).await;
        if status != "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    assert_eq!(w.balance(CAROL), d("43.00"), "charged exactly once");
    assert_eq!(w.journal("debit"), 1);
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(CAROL))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(w.balance(CAROL), d("43.00"));
}

/// The same payment request again after an unknown outcome learns it, and never charges twice.
#[tokio::test]
async fn a_retry_after_an_unknown_outcome_never_charges_twice() {
    let w = slow_for(CAROL).await;
    let id = w.purchase(&shop(), "2.50").await;
    let path = step_path(PURCHASE_PAYMENT, &id);
    let r = w.post(&path, &shop(), &phone(CAROL)).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);
    assert_eq!(w.purchase_status(&id).await, "processing");
    w.sim().clear_faults();
    let mut last = None;
    for _ in 0..100 {
        let r = w.post(&path, &shop(), &phone(CAROL)).await;
        if r.status == StatusCode::OK {
            last = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = last.expect("the retry never learned the outcome");
    assert_eq!(r.json(), json!({"id": id, "status": "succeeded"}));
    assert_eq!(w.balance(CAROL), d("47.50"), "charged exactly once");
    assert_eq!(w.journal("debit"), 1);
    // A retry with another phone number is another payment: refused.
    let r = w.post(&path, &shop(), &phone(ALICE)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(w.balance(ALICE), d("100.00"));
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_stored_or_charged() {
    let w = world(Opts::default()).await;
    let good = purchase_body("3.00", &["1.00", "2.00"]);
    let with = |path: &[&str], v: Value| {
        let mut b = good.clone();
        let mut at = &mut b;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                if v.is_null() {
                    at.as_object_mut().unwrap().remove(*k);
                } else {
                    at[*k] = v.clone();
                }
                break;
            }
            at = if let Ok(n) = k.parse::<usize>() {
                &mut at[n]
            } else {
                &mut at[*k]
            };
        }
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no payable", with(&["payable"], Value::Null), "payable"),
        (
            "payable not an object",
            with(&["payable"], json!([1])),
            "payable",
        ),
        (
            "no type",
            with(&["payable", "type"], Value::Null),
            "payable.type",
        ),
        (
            "another type",
            with(&["payable", "type"], json!("physical_good")),
            "payable.type",
        ),
        (
            "no order",
            with(&["payable", "order"], Value::Null),
            "payable.order",
        ),
        (
            "no items",
            with(&["payable", "order", "items"], Value::Null),
            "payable.order.items",
        ),
        (
            "empty items",
            with(&["payable", "order", "items"], json!([])),
            "payable.order.items",
        ),
        (
            "an item without a name",
            with(&["payable", "order", "items", "0", "name"], Value::Null),
            "payable.order.items[0].name",
        ),
        (
            "an item without an amount",
            with(&["payable", "order", "items", "0", "amount"], Value::Null),
            "payable.order.items[0].amount",
        ),
        (
            "an item in another currency",
            with(
                &["payable", "order", "items", "1", "amount", "currency"],
                json!("GBP"),
            ),
            "payable.order.items[1].amount.currency",
        ),
        (
            "no totalAmount",
            with(&["payable", "order", "totalAmount"], Value::Null),
            "payable.order.totalAmount",
        ),
        (
            "no value",
            with(&["payable", "order", "totalAmount", "value"], Value::Null),
            "payable.order.totalAmount.value",
        ),
        (
            "not a multiple of 0.01",
            with(&["payable", "order", "totalAmount", "value"], num("3.001")),
            "payable.order.totalAmount.value",
        ),
        (
            "a string amount",
            with(&["payable", "order", "totalAmount", "value"], json!("3.00")),
            "payable.order.totalAmount.value",
        ),
        (
            "a zero amount",
            with(&["payable", "order", "totalAmount", "value"], num("0")),
            "payable.order.totalAmount.value",
        ),
        (
            "a negative amount",
            with(
                &["payable", "order", "items", "0", "amount", "value"],
                num("-1"),
            ),
            "payable.order.items[0].amount.value",
        ),
        (
            "not the sum of the items",
            with(&["payable", "order", "totalAmount", "value"], num("4.00")),
            "payable.order.totalAmount.value",
        ),
        (
            "not ISO 4217",
            with(
                &["payable", "order", "totalAmount", "currency"],
                json!("EURO"),
            ),
            "payable.order.totalAmount.currency",
        ),
        (
            "no currency",
            with(
                &["payable", "order", "totalAmount", "currency"],
                Value::Null,
            ),
            "payable.order.totalAmount.currency",
        ),
        (
            "a merchant without id",
            with(&["payable", "merchant", "id"], Value::Null),
            "payable.merchant.id",
        ),
        (
            "a fee over 100",
            with(&["payable", "merchant", "fee"], num("101")),
            "payable.merchant.fee",
        ),
        (
            "notificationUrl over http",
            with(&["notificationUrl"], json!("http://shop.example/n")),
            "notificationUrl: http is not accepted",
        ),
        (
            "notificationUrl not a string",
            with(&["notificationUrl"], json!(5)),
            "notificationUrl: a string expected",
        ),
        (
            "notificationAuthToken without notificationUrl",
            with(&["notificationAuthToken"], json!("t-1")),
            "notificationAuthToken: only with notificationUrl",
        ),
    ];
    for (what, body, needle) in cases {
        let r = w.post(PURCHASES, &shop(), &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            "{what}: {body}"
        );
        assert!(r.message().contains(needle), "{what}: {}", r.message());
    }
    // A minor unit of 0 (JPY): 1.50 is not an amount of it.
    let mut jpy = purchase_body("1.50", &["1.50"]);
    jpy["payable"]["order"]["totalAmount"]["currency"] = json!("JPY");
    jpy["payable"]["order"]["items"][0]["amount"]["currency"] = json!("JPY");
    let r = w.post(PURCHASES, &shop(), &jpy).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // Not JSON, not an object, another content type.
    for raw in ["{", "[]", "\"x\""] {
        let r = w.post_with(PURCHASES, &shop(), &[], raw).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            "{raw}"
        );
    }
    let r = w
        .send(
            Method::POST,
            PURCHASES,
            &[
                (shop().0, shop().1.as_str()),
                ("content-type", "text/plain"),
            ],
            Body::from(good.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The application's policy: 20.00 at most, EUR only.
    let r = w
        .post(
            PURCHASES,
            &key("k-kiosk"),
            &purchase_body("25.00", &["25.00"]),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (
            StatusCode::FORBIDDEN,
            checkout_code::PURCHASE_AMOUNT_OVERPASSED
        )
    );
    let mut gbp = purchase_body("5.00", &["5.00"]);
    gbp["payable"]["order"]["totalAmount"]["currency"] = json!("GBP");
    gbp["payable"]["order"]["items"][0]["amount"]["currency"] = json!("GBP");
    let r = w.post(PURCHASES, &key("k-kiosk"), &gbp).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
    );
    // A scope the application lacks.
    let r = w.post(PURCHASES, &key("k-reader"), &good).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, code::PERMISSION_DENIED)
    );
    // No purchase was stored.
    let l = w.get(PURCHASES, &shop()).await;
    assert_eq!(l.json(), json!([]));
    // An application allowed the purchase scopes only may create and read a purchase, not pay
    // for it.
    let r = w.post(PURCHASES, &key("k-buyer"), &good).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bought = r.json()["id"].as_str().unwrap().to_string();
    let r = w
        .get(&format!("{PURCHASES}/{bought}"), &key("k-buyer"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = w
        .post(
            &step_path(PURCHASE_PAYMENT, &bought),
            &key("k-buyer"),
            &json!({"phoneNumber": "+34671999000"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, code::PERMISSION_DENIED)
    );
    // RequestPayment.
    let id = w.purchase(&shop(), "3.00").await;
    let pay = step_path(PURCHASE_PAYMENT, &id);
    let r = w.post(&pay, &shop(), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, checkout_code::PHONE_NUMBER_REQUIRED)
    );
    for bad in [
        json!({"phoneNumber": "34671999000"}),
        json!({"phoneNumber": 34671999000u64}),
        json!([]),
    ] {
        let r = w.post(&pay, &shop(), &bad).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            "{bad}"
        );
    }
    let r = w
        .post(
            &step_path(PURCHASE_PAYMENT, "not*an*id"),
            &shop(),
            &phone(ALICE),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT)
    );
    let r = w.get(&purchase_path("not*an*id"), &shop()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Nothing was charged, and the purchase is still open to pay.
    assert!(w.sim().journal().is_empty());
    assert_eq!(w.balance(ALICE), d("100.00"));
    assert_eq!(w.purchase_status(&id).await, "initialising");
    let r = w.post(&pay, &shop(), &phone(ALICE)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("97.00"));
}

#[tokio::test]
async fn an_ocs_too_busy_is_503_and_the_purchase_may_be_paid_later() {
    let w = world(Opts::default()).await;
    let id = w.purchase(&shop(), "1.00").await;
    let k = SubscriptionId::parse(ALICE).unwrap().key();
    // DIAMETER_TOO_BUSY: nothing was applied.
    w.sim().set_faults(|f| {
        f.fixed.insert(k, ResultCode(3004));
    });
    let path = step_path(PURCHASE_PAYMENT, &id);
    let r = w.post(&path, &shop(), &phone(ALICE)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE),
        "{:?}",
        r.body
    );
    assert_eq!(w.purchase_status(&id).await, "initialising");
    assert_eq!(w.balance(ALICE), d("100.00"));
    // Later, the OCS well again: the same purchase is paid, once.
    w.sim().clear_faults();
    let r = w.post(&path, &shop(), &phone(ALICE)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(w.balance(ALICE), d("99.00"));
    assert_eq!(w.journal("debit"), 1);
    assert_eq!(w.purchase_status(&id).await, "succeeded");
}

#[tokio::test]
async fn the_openapi_document_describes_the_checkout() {
    let doc = serde_json::to_value(crate::api::openapi::document()).unwrap();
    for (path, method) in [
        (PURCHASES, "post"),
        (PURCHASES, "get"),
        (PURCHASE, "get"),
        (PURCHASE_PAYMENT, "post"),
        (PURCHASE_PREPARE, "post"),
        (PURCHASE_CONFIRM, "post"),
        (PURCHASE_CANCEL, "post"),
    ] {
        let item = &doc["paths"][path][method];
        assert!(item.is_object(), "{method} {path}");
        for status in ["400", "403", "404", "409", "412", "503", "504"] {
            assert_eq!(
                item["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorInfo",
                "{path} {status}"
            );
        }
    }
    let schemas = &doc["components"]["schemas"];
    for name in [
        "CreatePurchase",
        "PurchaseCreated",
        "PurchaseInfo",
        "RequestPayment",
        "CheckoutPaymentInfo",
        "PreparePaymentInfo",
        "CheckoutMoneyAmount",
    ] {
        assert!(schemas[name].is_object(), "{name}");
    }
}

// ---- notifications (notificationUrl) ---------------------------------------------------------

/// A world whose `[notifications]` accepts http to loopback (the listeners of these tests).
async fn notifying(o: Opts) -> World {
    let request_timeout = o.request_timeout;
    let mut w = world(o).await;
    let state = ApiState::new(
        Arc::clone(&w.charging),
        Arc::new(Apps::new(&apps())),
        Arc::new(|| true),
        None,
    )
    .with_notifications(crate::config::notifications::NotificationsConfig {
        allow_http: true,
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    w.router = router(
        state,
        &HttpConfig {
            max_body_bytes: 4096,
            request_timeout,
            ..HttpConfig::default()
        },
    );
    w
}

const HOOK: &str = "http://127.0.0.1:9/shop/purchases/";
const POSTED_TO: &str = "http://127.0.0.1:9/shop/purchases/notifications";

impl World {
    /// A purchase of `total` notified to `url` (with `token`): its id.
    async fn notified_purchase(&self, total: &str, url: &str, token: Option<&str>) -> String {
        let mut body = purchase_body(total, &[total]);
        body["notificationUrl"] = json!(url);
        if let Some(t) = token {
            body["notificationAuthToken"] = json!(t);
        }
        let r = self.post(PURCHASES, &shop(), &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let v = r.json();
        // Neither is answered (the token is a secret of the client's endpoint).
        assert!(v.get("notificationUrl").is_none(), "{v}");
        assert!(v.get("notificationAuthToken").is_none(), "{v}");
        if let Some(t) = token {
            assert!(!String::from_utf8_lossy(&r.body).contains(t));
        }
        v["id"].as_str().unwrap().to_string()
    }

    /// The outbox events of the shop, oldest first.
    async fn notifications(&self) -> Vec<crate::store::EventRow> {
        let (mut rows, total) = self
            .charging
            .store()
            .events(crate::store::EventFilter {
                app: Some("shop".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), total);
        rows.reverse();
        rows
    }
}

/// Checks the recorded event `e`: `action` with `body` about purchase `id`, posted to `url`.
fn check_notification(e: &crate::store::EventRow, id: &str, action: &str, url: &str, body: Value) {
    let event_id = crate::api::camara::derived_id("ckev-", &["shop", id, action]);
    assert_eq!(e.id, event_id);
    assert_eq!(e.app, "shop");
    assert_eq!(e.kind, format!("checkout.{action}"));
    assert_eq!(e.resource.as_deref(), Some(id));
    assert_eq!(e.url, url);
    assert_eq!(
        e.headers,
        vec![("x-correlator".to_string(), event_id.clone())]
    );
    assert_eq!(e.content_type, "application/json");
    assert_eq!(e.state, crate::store::EventState::Pending);
    assert_eq!(e.attempts, 0);
    let posted: Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(posted, body, "{action}");
}

const PREPARED: &str =
    "The payment is prepared: the total amount is reserved; confirm or cancel it.";
const CHARGED: &str = "The payment is done: the total amount was charged.";

#[tokio::test]
async fn prepare_and_confirm_are_notified_once_each_with_the_token_and_payment_date() {
    let w = notifying(Opts::default()).await;
    let token = "tok en&=1";
    let id = w.notified_purchase("30.00", HOOK, Some(token)).await;
    let url = format!("{POSTED_TO}?apikey=tok+en%26%3D1");
    let read = w.get(&purchase_path(&id), &shop()).await;
    assert!(!String::from_utf8_lossy(&read.body).contains("tok en"));
    assert!(read.json().get("notificationUrl").is_none());
    // Creating the purchase is no procedure: nothing to notify.
    assert!(w.notifications().await.is_empty());

    let r = w
        .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 1);
    check_notification(
        &ev[0],
        &id,
        "prepare_payment",
        &url,
        json!({"purchaseId": id, "action": "prepare_payment", "status": "succeeded",
            "description": PREPARED}),
    );

    let r = w.step(PURCHASE_CONFIRM, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let info = w.get(&purchase_path(&id), &shop()).await.json();
    assert_eq!(info["status"], "succeeded");
    let paid = info["paymentDate"].as_str().unwrap().to_string();
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 2);
    check_notification(
        &ev[1],
        &id,
        "confirm_payment",
        &url,
        json!({"purchaseId": id, "action": "confirm_payment", "status": "succeeded",
            "description": CHARGED, "paymentDate": paid}),
    );
    assert_eq!(w.balance(ALICE), d("70.00"));
    // Reading it again, confirming or cancelling again: nothing new to tell.
    w.final_status(&id).await;
    w.get(PURCHASES, &shop()).await;
    assert_eq!(w.notifications().await, ev);
}

#[tokio::test]
async fn cancellation_one_step_payments_and_refusals_are_notified() {
    let w = notifying(Opts::default()).await;
    // Prepared, then cancelled: no token, no query.
    let id = w.notified_purchase("20.00", HOOK, None).await;
    let r = w
        .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = w.step(PURCHASE_CANCEL, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(w.purchase_status(&id).await, "cancelled");
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 2);
    check_notification(
        &ev[0],
        &id,
        "prepare_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "prepare_payment", "status": "succeeded",
            "description": PREPARED}),
    );
    check_notification(
        &ev[1],
        &id,
        "cancel_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "cancel_payment", "status": "succeeded",
            "description": "The payment was cancelled: the reservation was released and \
                nothing was charged."}),
    );

    // One step (the spec names no action of its own: the charge is confirm_payment), to a
    // URL without a trailing slash.
    let id = w
        .notified_purchase("10.00", "http://127.0.0.1:9/hook", Some("s3cr3t-tok"))
        .await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let paid = w.get(&purchase_path(&id), &shop()).await.json()["paymentDate"].clone();
    assert!(paid.is_string());
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 3);
    check_notification(
        &ev[2],
        &id,
        "confirm_payment",
        "http://127.0.0.1:9/hook/notifications?apikey=s3cr3t-tok",
        json!({"purchaseId": id, "action": "confirm_payment", "status": "succeeded",
            "description": CHARGED, "paymentDate": paid}),
    );

    // Refused by the OCS (BOB has 5.00): failed, with the reason; a new purchase is needed.
    let id = w.notified_purchase("9.00", HOOK, None).await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let refusal = r.message();
    assert_eq!(w.purchase_status(&id).await, "failed");
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 4);
    check_notification(
        &ev[3],
        &id,
        "confirm_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "confirm_payment", "status": "failed",
            "description": format!("The payment was refused: {refusal}")}),
    );
    // A second attempt on it is refused and tells nothing new.
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(w.notifications().await.len(), 4);

    // A preparation refused: prepare_payment failed.
    let id = w.notified_purchase("6.00", HOOK, None).await;
    let r = w
        .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(BOB))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let refusal = r.message();
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 5);
    check_notification(
        &ev[4],
        &id,
        "prepare_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "prepare_payment", "status": "failed",
            "description": format!("The payment was refused: {refusal}")}),
    );
    assert_eq!(w.balance(BOB), d("5.00"));
}

#[tokio::test]
async fn an_expired_reservation_is_notified_cancelled_when_the_gateway_learns_it() {
    let w = notifying(Opts {
        reservation_ttl: Duration::from_millis(1),
        ..Opts::default()
    })
    .await;
    let id = w.notified_purchase("30.00", HOOK, None).await;
    let r = w
        .post(&step_path(PURCHASE_PREPARE, &id), &shop(), &phone(ALICE))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    w.reap_all().await;
    // The read learns it, and records the notification with the purchase's new status.
    assert_eq!(w.purchase_status(&id).await, "cancelled");
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 2, "{ev:#?}");
    check_notification(
        &ev[1],
        &id,
        "cancel_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "cancel_payment", "status": "succeeded",
            "description": "The reservation ended (it expired) before a confirmation: \
                nothing was charged; the purchase is cancelled."}),
    );
    let row = w.charging.store().resource(&id).await.unwrap().unwrap();
    assert_eq!(row.state, "cancelled");
    // A confirmation now is refused, and tells nothing new.
    w.final_status(&id).await;
    assert_eq!(w.notifications().await, ev);
    assert_eq!(w.balance(ALICE), d("100.00"));
}

#[tokio::test]
async fn refused_notification_urls_create_no_purchase() {
    // The default policy: https and public addresses only.
    let strict = world(Opts::default()).await;
    let w = notifying(Opts::default()).await;
    for (world, url, needle) in [
        (
            &strict,
            json!("http://8.8.8.8/n"),
            "notificationUrl: http is not accepted",
        ),
        (
            &strict,
            json!("https://127.0.0.1/n"),
            "notificationUrl: the address 127.0.0.1 is not a public one",
        ),
        (
            &w,
            json!("http://10.0.0.1/n"),
            "notificationUrl: the address 10.0.0.1 is not a public one",
        ),
        (
            &w,
            json!("127.0.0.1/n"),
            "notificationUrl: not an absolute URL",
        ),
        (
            &w,
            json!("shop.example/notify"),
            "notificationUrl: not an absolute URL",
        ),
        (
            &w,
            json!("ftp://127.0.0.1/n"),
            "notificationUrl: scheme ftp",
        ),
        (
            &w,
            json!(["http://127.0.0.1/n"]),
            "notificationUrl: a string expected",
        ),
    ] {
        let mut body = purchase_body("1.00", &["1.00"]);
        body["notificationUrl"] = url.clone();
        body["notificationAuthToken"] = json!("t-1");
        let r = world.post(PURCHASES, &shop(), &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
            "{url}"
        );
        assert!(r.message().contains(needle), "{url}: {}", r.message());
    }
    let mut body = purchase_body("1.00", &["1.00"]);
    body["notificationUrl"] = json!(HOOK);
    body["notificationAuthToken"] = json!("a\u{7}b");
    let r = w.post(PURCHASES, &shop(), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("notificationAuthToken"),
        "{}",
        r.message()
    );
    for world in [&strict, &w] {
        let (rows, total) = world
            .charging
            .store()
            .resources(ResourceFilter::default())
            .await
            .unwrap();
        assert_eq!((rows.len(), total), (0, 0), "nothing created");
        let (events, _) = world
            .charging
            .store()
            .events(crate::store::EventFilter::default())
            .await
            .unwrap();
        assert!(events.is_empty());
    }
}

/// An outcome not known when answered (504) is notified once the gateway learns it (a read),
/// never before, and once.
#[tokio::test]
async fn an_unknown_outcome_is_notified_when_learnt_not_before() {
    let w = notifying(Opts {
        tx: Duration::from_millis(300),
        ..Opts::default()
    })
    .await;
    let k = SubscriptionId::parse(CAROL).unwrap().key();
    w.sim().set_faults(|f| {
        f.latency_for.insert(k, Duration::from_millis(1500));
    });
    let id = w.notified_purchase("7.00", HOOK, None).await;
    let r = w
        .post(&step_path(PURCHASE_PAYMENT, &id), &shop(), &phone(CAROL))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);
    assert_eq!(
        w.get(PURCHASES, &shop()).await.json()[0]["status"],
        "processing"
    );
    assert!(w.notifications().await.is_empty(), "nothing known yet");
    w.sim().clear_faults();
    let mut status = String::new();
    for _ in 0..300 {
        status = w.purchase_status(&id).await;
        if status != "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    let paid = w.get(&purchase_path(&id), &shop()).await.json()["paymentDate"].clone();
    let ev = w.notifications().await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    check_notification(
        &ev[0],
        &id,
        "confirm_payment",
        POSTED_TO,
        json!({"purchaseId": id, "action": "confirm_payment", "status": "succeeded",
            "description": CHARGED, "paymentDate": paid}),
    );
    assert_eq!(w.balance(CAROL), d("43.00"), "charged exactly once");
}
