//! TMF629 through the real router over a memory store ([`crate::api::tmf632::testing`]):
//! B2C and B2B customers, the contact claims (409, nothing kept), their move on PATCH and
//! their release on DELETE.

use axum::http::StatusCode;
use serde_json::json;

use crate::api::tmf632::testing::{CUSTOMERS, INDIVIDUALS, ORGANIZATIONS, World, person, world};
use crate::parties::{Key, claims};

async fn claimed_by(w: &World, key: Key) -> Option<String> {
    claims::holder(&w.store, &key)
        .await
        .unwrap()
        .map(|h| h.customer)
}

async fn customers(w: &World) -> String {
    w.get(CUSTOMERS)
        .await
        .header("x-total-count")
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_b2c_customer_owns_its_individuals_contacts() {
    let w = world().await;
    let ana = w
        .created(
            INDIVIDUALS,
            person("Ana", "ana@example.com", "+34600000001"),
        )
        .await;
    let r = w
        .post(
            CUSTOMERS,
            json!({"engagedParty": {"id": ana, "@referredType": "Individual"},
                   "status": "approved"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    let id = r.id();
    assert!(id.starts_with("customer-"));
    assert_eq!(v["@type"], "Customer");
    assert_eq!(v["name"], "Ana García");
    assert_eq!(v["status"], "approved");
    assert_eq!(
        v["engagedParty"],
        json!({"id": ana, "href": format!("{INDIVIDUALS}/{ana}"),
               "@referredType": "Individual"})
    );
    assert_eq!(v["account"], json!([]));
    assert_eq!(
        claimed_by(&w, Key::email("ANA@example.com")).await,
        Some(id.clone())
    );
    assert_eq!(
        claimed_by(&w, Key::msisdn("+34600000001")).await,
        Some(id.clone())
    );

    // A second customer of the same individual: its email is the first one's.
    let m = w
        .post(CUSTOMERS, json!({"engagedParty": {"id": ana}}))
        .await
        .error(409, "CONFLICT");
    assert!(
        m.starts_with(
            "engagedParty.contactMedium[0].characteristic.emailAddress: ana@example.com is the \
             contact of another customer; nothing of this request was kept"
        ),
        "{m}"
    );
    // Another individual with the same phone, or a customer naming the email itself.
    let luis = w
        .created(
            INDIVIDUALS,
            person("Luis", "luis@example.com", "+34600000001"),
        )
        .await;
    let m = w
        .post(CUSTOMERS, json!({"engagedParty": {"id": luis}}))
        .await
        .error(409, "CONFLICT");
    assert!(m.contains("phoneNumber: +34600000001"), "{m}");
    // Luis's email was claimed before the phone was lost: released again.
    assert_eq!(claimed_by(&w, Key::email("luis@example.com")).await, None);
    let bare = w.created(INDIVIDUALS, json!({"givenName": "Eva"})).await;
    let m = w
        .post(
            CUSTOMERS,
            json!({"engagedParty": {"id": bare},
                   "contactMedium": [{"mediumType": "email",
                       "characteristic": {"emailAddress": "Ana@Example.COM"}}]}),
        )
        .await
        .error(409, "CONFLICT");
    assert!(
        m.starts_with("contactMedium[0].characteristic.emailAddress"),
        "{m}"
    );
    assert_eq!(customers(&w).await, "1");

    // Filters.
    let l = w
        .get(&format!(
            "{CUSTOMERS}?engagedParty.id={ana}&status=approved"
        ))
        .await;
    assert_eq!(l.header("x-total-count"), Some("1"));
    assert_eq!(l.json()[0]["id"], id.as_str());
}

#[tokio::test]
async fn a_b2b_customer_has_its_organizations_contacts_and_individuals_to_talk_to() {
    let w = world().await;
    let org = w
        .created(
            ORGANIZATIONS,
            json!({"name": "Acme S.L.", "contactMedium": [{"mediumType": "phone",
                "characteristic": {"phoneNumber": "+34910000000"}}]}),
        )
        .await;
    let a = w
        .created(
            INDIVIDUALS,
            person("Ana", "ana@acme.example", "+34600000001"),
        )
        .await;
    let b = w
        .created(
            INDIVIDUALS,
            person("Luis", "luis@acme.example", "+34600000002"),
        )
        .await;
    let r = w
        .post(
            CUSTOMERS,
            json!({"engagedParty": {"id": org, "@referredType": "Organization"},
                   "relatedParty": [{"id": a, "role": "contact"},
                                    {"id": b, "role": "contact", "@referredType": "Individual"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    let id = r.id();
    assert_eq!(v["name"], "Acme S.L.");
    assert_eq!(v["engagedParty"]["@referredType"], "Organization");
    assert_eq!(v["relatedParty"].as_array().unwrap().len(), 2);
    assert_eq!(v["relatedParty"][1]["role"], "contact");
    assert_eq!(
        claimed_by(&w, Key::msisdn("+34910000000")).await,
        Some(id.clone())
    );
    // The contacts' addresses are theirs: Ana may still be a B2C customer.
    assert_eq!(claimed_by(&w, Key::email("ana@acme.example")).await, None);
    w.created(CUSTOMERS, json!({"engagedParty": {"id": a}}))
        .await;
    let l = w.get(&format!("{CUSTOMERS}?relatedParty.id={b}")).await;
    assert_eq!(l.header("x-total-count"), Some("1"));

    // Bad references.
    for (body, want) in [
        (
            json!({"engagedParty": {"id": org, "@referredType": "Individual"}}),
            "engagedParty.@referredType",
        ),
        (
            json!({"engagedParty": {"id": "customer-1"}}),
            "engagedParty.id",
        ),
        (
            json!({"engagedParty": {"id": "individual-0"}}),
            "engagedParty.id: no Individual",
        ),
        (json!({}), "engagedParty: required"),
        (
            json!({"engagedParty": {"id": org}, "relatedParty": [{"id": a}]}),
            "relatedParty[0].role: required",
        ),
        (
            json!({"engagedParty": {"id": org}, "relatedParty": [{"id": org, "role": "contact"}]}),
            "relatedParty[0].id: no individual",
        ),
        (
            json!({"engagedParty": {"id": org}, "status": "gold"}),
            "status:",
        ),
        (
            json!({"engagedParty": {"id": org}, "customerType": "B2B"}),
            "customerType: not a member",
        ),
    ] {
        let m = w
            .post(CUSTOMERS, body.clone())
            .await
            .error(400, "INVALID_ARGUMENT");
        assert!(m.starts_with(want), "{body}: {m}");
    }
    // Another application's party is not one to engage.
    let m = w
        .post_as("k-other", CUSTOMERS, json!({"engagedParty": {"id": org}}))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.contains("of this application"), "{m}");
    w.get_as("k-other", &format!("{CUSTOMERS}/{id}"))
        .await
        .error(404, "NOT_FOUND");
    assert_eq!(
        w.get_as("k-ops", &format!("{CUSTOMERS}/{id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_changed_contact_moves_its_claim_and_a_deleted_customer_frees_it() {
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
    let luis = w
        .created(
            INDIVIDUALS,
            person("Luis", "luis@example.com", "+34600000002"),
        )
        .await;
    let c2 = w
        .created(CUSTOMERS, json!({"engagedParty": {"id": luis}}))
        .await;

    // Ana's new email is Luis's customer's: refused, nothing changed.
    let media = |email: &str| {
        json!({"contactMedium": [{"mediumType": "email",
            "characteristic": {"emailAddress": email}}]})
    };
    let m = w
        .merge(&format!("{INDIVIDUALS}/{ana}"), media("luis@example.com"))
        .await
        .error(409, "CONFLICT");
    assert!(
        m.starts_with("contactMedium[0].characteristic.emailAddress"),
        "{m}"
    );
    assert_eq!(
        w.get(&format!("{INDIVIDUALS}/{ana}")).await.json()["contactMedium"][0]["characteristic"]["emailAddress"],
        "ana@example.com"
    );
    assert_eq!(
        claimed_by(&w, Key::email("ana@example.com")).await,
        Some(c.clone())
    );

    // A free one: claimed for Ana's customer, the old email and the phone dropped released.
    let p = w
        .merge(&format!("{INDIVIDUALS}/{ana}"), media("ana.g@example.com"))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(
        claimed_by(&w, Key::email("ana.g@example.com")).await,
        Some(c.clone())
    );
    assert_eq!(claimed_by(&w, Key::email("ana@example.com")).await, None);
    assert_eq!(claimed_by(&w, Key::msisdn("+34600000001")).await, None);

    // The customer's own contacts move the same way.
    let p = w
        .merge(
            &format!("{CUSTOMERS}/{c}"),
            json!({"contactMedium": [{"mediumType": "sms",
                "characteristic": {"phoneNumber": "+34600000001"}}]}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(
        claimed_by(&w, Key::msisdn("+34600000001")).await,
        Some(c.clone())
    );
    let m = w
        .merge(
            &format!("{CUSTOMERS}/{c}"),
            json!({"contactMedium": [{"mediumType": "sms",
                "characteristic": {"phoneNumber": "+34600000002"}}]}),
        )
        .await
        .error(409, "CONFLICT");
    assert!(m.contains("+34600000002"), "{m}");
    assert_eq!(
        claimed_by(&w, Key::msisdn("+34600000001")).await,
        Some(c.clone())
    );
    let m = w
        .merge(&format!("{CUSTOMERS}/{c}"), json!({"id": "customer-x"}))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("id: cannot be changed"), "{m}");

    // Deleted: its contacts are free for a new customer.
    assert_eq!(
        w.delete(&format!("{CUSTOMERS}/{c2}")).await.status,
        StatusCode::NO_CONTENT
    );
    w.get(&format!("{CUSTOMERS}/{c2}"))
        .await
        .error(404, "NOT_FOUND");
    assert_eq!(claimed_by(&w, Key::email("luis@example.com")).await, None);
    let c3 = w
        .created(CUSTOMERS, json!({"engagedParty": {"id": luis}}))
        .await;
    assert_eq!(
        claimed_by(&w, Key::email("luis@example.com")).await,
        Some(c3)
    );
}
