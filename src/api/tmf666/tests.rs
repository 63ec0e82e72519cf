//! TMF666 through the real router over a memory store ([`crate::api::tmf632::testing`]).

use axum::http::StatusCode;
use serde_json::json;

use crate::api::tmf632::testing::{ACCOUNTS, CUSTOMERS, INDIVIDUALS, person, world};

#[tokio::test]
async fn a_billing_account_bills_its_customer_exactly() {
    let w = world().await;
    let ana = w
        .created(
            INDIVIDUALS,
            person("Ana", "ana@example.com", "+34600000001"),
        )
        .await;
    let c = w
        .created(CUSTOMERS, json!({"engagedParty": {"id": ana}}))
        .await;
    let r = w
        .post(
            ACCOUNTS,
            json!({"name": "Ana's mobile", "accountType": "B2C",
                   "relatedParty": [{"id": c, "role": "customer", "@referredType": "Customer"}],
                   "paymentMethod": [{"phoneNumber": "+34600000001",
                                      "@referredType": "CarrierBilling"}],
                   "creditLimit": {"unit": "EUR", "value": 150.10}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    let id = r.id();
    assert!(id.starts_with("billing-account-"));
    assert_eq!(v["@type"], "BillingAccount");
    assert_eq!(v["state"], "active");
    assert_eq!(v["relatedParty"][0]["id"], c.as_str());
    assert_eq!(v["relatedParty"][0]["name"], "Ana García");
    assert_eq!(v["paymentMethod"][0]["id"], "carrier-billing-34600000001");
    // Exact: the JSON text of the value.
    assert_eq!(v["creditLimit"]["value"].to_string(), "150.1");
    assert!(v["lastModified"].as_str().unwrap().ends_with('Z'), "{v}");
    // The customer lists it.
    let cv = w.get(&format!("{CUSTOMERS}/{c}")).await.json();
    assert_eq!(cv["account"][0]["id"], id.as_str());
    assert_eq!(cv["account"][0]["@referredType"], "BillingAccount");
    // A customer with an account is not deleted.
    w.delete(&format!("{CUSTOMERS}/{c}"))
        .await
        .error(409, "INVALID_STATE");

    let href = format!("{ACCOUNTS}/{id}");
    let p = w
        .merge(
            &href,
            json!({"state": "suspended",
            "creditLimit": {"unit": "EUR", "value": "0.0001"}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(p.json()["state"], "suspended");
    assert_eq!(p.json()["creditLimit"]["value"].to_string(), "0.0001");
    let l = w
        .get(&format!("{ACCOUNTS}?relatedParty.id={c}&state=suspended"))
        .await;
    assert_eq!(l.header("x-total-count"), Some("1"));
    w.get_as("k-other", &href).await.error(404, "NOT_FOUND");

    assert_eq!(w.delete(&href).await.status, StatusCode::NO_CONTENT);
    w.get(&href).await.error(404, "NOT_FOUND");
    assert_eq!(
        w.get(&format!("{CUSTOMERS}/{c}")).await.json()["account"],
        json!([])
    );
    assert_eq!(
        w.delete(&format!("{CUSTOMERS}/{c}")).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn every_bad_account_is_a_tmf_error_naming_the_member() {
    let w = world().await;
    let ana = w
        .created(
            INDIVIDUALS,
            person("Ana", "ana@example.com", "+34600000001"),
        )
        .await;
    let c = w
        .created(CUSTOMERS, json!({"engagedParty": {"id": ana}}))
        .await;
    let base = |extra: serde_json::Value| {
        let mut b = json!({"name": "A", "relatedParty": [{"id": c, "role": "customer"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, want) in [
        (
            json!({"relatedParty": [{"id": c, "role": "customer"}]}),
            "name: required",
        ),
        (json!({"name": "A"}), "relatedParty: required"),
        (
            base(json!({"relatedParty": [{"id": c, "role": "payer"}]})),
            "relatedParty[0].role",
        ),
        (
            base(json!({"relatedParty": [{"id": "customer-0", "role": "customer"}]})),
            "relatedParty[0].id: no customer",
        ),
        (
            base(json!({"creditLimit": {"unit": "EUR", "value": -1}})),
            "creditLimit.value",
        ),
        (
            base(json!({"creditLimit": {"unit": "EUR", "value": 1.23456}})),
            "creditLimit.value",
        ),
        (
            base(json!({"creditLimit": {"unit": "EUX", "value": 1}})),
            "creditLimit.unit",
        ),
        (
            base(json!({"creditLimit": {"value": 1}})),
            "creditLimit.unit: required",
        ),
        (
            base(json!({"paymentMethod": [{"phoneNumber": "34600000001"}]})),
            "paymentMethod[0].phoneNumber",
        ),
        (
            base(
                json!({"paymentMethod": [{"@referredType": "Voucher", "phoneNumber": "+34600000001"}]}),
            ),
            "paymentMethod[0].@referredType",
        ),
        (
            base(json!({"paymentMethod": [{}]})),
            "paymentMethod[0].phoneNumber: required",
        ),
        (base(json!({"state": "open"})), "state:"),
        (
            base(json!({"accountBalance": []})),
            "accountBalance: not a member",
        ),
    ] {
        let m = w
            .post(ACCOUNTS, body.clone())
            .await
            .error(400, "INVALID_ARGUMENT");
        assert!(m.starts_with(want), "{body}: {m}");
    }
    assert_eq!(w.get(ACCOUNTS).await.header("x-total-count"), Some("0"));
    let m = w
        .get_as("k-payer", ACCOUNTS)
        .await
        .error(403, "PERMISSION_DENIED");
    assert!(m.contains("billing-account"), "{m}");
}
