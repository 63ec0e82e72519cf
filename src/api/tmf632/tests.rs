//! TMF632 through the real router over a memory store ([`super::testing`]).

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::testing::{CUSTOMERS, INDIVIDUALS, ORGANIZATIONS, person, world};

#[tokio::test]
async fn an_individual_is_created_read_listed_patched_and_deleted() {
    let w = world().await;
    let r = w
        .post(
            INDIVIDUALS,
            person("Ana", "Ana@Example.com", "+34600000001"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    let id = r.id();
    assert!(id.starts_with("individual-"), "{id}");
    let href = format!("{INDIVIDUALS}/{id}");
    assert_eq!(r.header("location"), Some(href.as_str()));
    assert_eq!(v["href"], href);
    assert_eq!(v["@type"], "Individual");
    assert_eq!(v["status"], "initialized");
    assert_eq!(
        v["contactMedium"][1]["characteristic"]["phoneNumber"],
        "+34600000001"
    );
    // The stored row is the application's.
    let row = w.store.resource(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.app.as_str(), row.kind.as_str()),
        ("shop", "tmf632.individual")
    );

    let g = w.get(&href).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json(), v);
    let g = w.get(&format!("{href}?fields=givenName")).await;
    assert_eq!(
        g.json(),
        json!({"id": id, "href": href, "givenName": "Ana", "@type": "Individual"})
    );

    w.created(
        INDIVIDUALS,
        person("Luis", "luis@example.com", "+34600000002"),
    )
    .await;
    let l = w.get(INDIVIDUALS).await;
    assert_eq!(l.header("x-total-count"), Some("2"));
    assert_eq!(l.header("x-result-count"), Some("2"));
    let l = w.get(&format!("{INDIVIDUALS}?limit=1&offset=1")).await;
    assert_eq!(l.header("x-total-count"), Some("2"));
    assert_eq!(l.json().as_array().unwrap().len(), 1);
    // Filters: the email ignoring case, the given name.
    let l = w.get(&format!("{INDIVIDUALS}?email=ana@example.COM")).await;
    assert_eq!(l.header("x-total-count"), Some("1"));
    assert_eq!(l.json()[0]["id"], id.as_str());
    let l = w
        .get(&format!("{INDIVIDUALS}?givenName=Luis&status=initialized"))
        .await;
    assert_eq!(l.header("x-total-count"), Some("1"));
    assert_eq!(l.json()[0]["givenName"], "Luis");

    let p = w
        .merge(
            &href,
            json!({"givenName": "Ana María", "status": "validated"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(p.json()["givenName"], "Ana María");
    assert_eq!(p.json()["familyName"], "García");
    assert_eq!(w.get(&href).await.json()["status"], "validated");
    // A JSON Patch, too.
    let p = w
        .send(
            Method::PATCH,
            &href,
            "k-shop",
            Some("application/json-patch+json"),
            Some(json!([{"op": "remove", "path": "/familyName"}]).to_string()),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert!(p.json().get("familyName").is_none());

    assert_eq!(w.delete(&href).await.status, StatusCode::NO_CONTENT);
    w.get(&href).await.error(404, "NOT_FOUND");
    assert_eq!(w.get(INDIVIDUALS).await.header("x-total-count"), Some("1"));
}

#[tokio::test]
async fn an_organization_needs_a_name_and_keeps_its_contacts() {
    let w = world().await;
    let m = w
        .post(ORGANIZATIONS, json!({"tradingName": "Acme"}))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("name: required"), "{m}");
    let r = w
        .post(
            ORGANIZATIONS,
            json!({"name": "Acme S.L.", "organizationType": "company", "isLegalEntity": true,
                   "contactMedium": [{"mediumType": "email",
                       "characteristic": {"emailAddress": "billing@acme.example"}},
                       {"mediumType": "postalAddress",
                       "characteristic": {"street1": "Gran Vía 1", "city": "Madrid",
                                          "country": "ES"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let v = r.json();
    assert_eq!(v["@type"], "Organization");
    assert!(r.id().starts_with("organization-"));
    assert_eq!(v["contactMedium"][1]["characteristic"]["city"], "Madrid");
    let l = w
        .get(&format!("{ORGANIZATIONS}?organizationType=COMPANY"))
        .await;
    assert_eq!(l.header("x-total-count"), Some("1"));
}

#[tokio::test]
async fn every_bad_input_is_a_tmf_error_naming_the_member() {
    let w = world().await;
    let cases = [
        (
            json!({"givenName": "A", "nickname": "x"}),
            "nickname: not a member of Individual",
        ),
        (json!({"id": "individual-1"}), "id: assigned by the gateway"),
        (json!({"givenName": 7}), "givenName: expected a string"),
        (json!({"givenName": ""}), "givenName: 1 to 256 bytes"),
        (
            json!({"givenName": "x".repeat(257)}),
            "givenName: 1 to 256 bytes",
        ),
        (json!({"status": "alive"}), "status: \"alive\": one of"),
        (
            json!({"birthDate": "01/04/1990"}),
            "birthDate: \"01/04/1990\" is not a date",
        ),
        (
            json!({"contactMedium": [{"mediumType": "mobile",
                "characteristic": {"phoneNumber": "600000001"}}]}),
            "contactMedium[0].characteristic.phoneNumber: \"600000001\" is not an E.164",
        ),
        (
            json!({"contactMedium": [{"mediumType": "email",
                "characteristic": {"emailAddress": "ana@"}}]}),
            "contactMedium[0].characteristic.emailAddress: \"ana@\" is not an email",
        ),
        (
            json!({"contactMedium": [{"mediumType": "email",
                "characteristic": {"phoneNumber": "+34600000001"}}]}),
            "contactMedium[0].characteristic.phoneNumber: not used for this mediumType",
        ),
        (
            json!({"contactMedium": [{"mediumType": "fax", "characteristic": {}}]}),
            "contactMedium[0].mediumType: \"fax\"",
        ),
        (
            json!({"contactMedium": [{"characteristic": {}}]}),
            "contactMedium[0].mediumType: required",
        ),
        (
            json!({"contactMedium": vec![json!({"mediumType": "email",
                "characteristic": {"emailAddress": "a@b.es"}}); 11]}),
            "contactMedium: at most 10 entries",
        ),
    ];
    for (body, want) in cases {
        let m = w
            .post(INDIVIDUALS, body.clone())
            .await
            .error(400, "INVALID_ARGUMENT");
        assert!(m.starts_with(want), "{body}: {m}");
    }
    // Nothing was kept.
    assert_eq!(w.get(INDIVIDUALS).await.header("x-total-count"), Some("0"));
    let m = w
        .post(INDIVIDUALS, json!([1]))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.contains("expected a JSON object"), "{m}");
    w.send(
        Method::POST,
        INDIVIDUALS,
        "k-shop",
        Some("text/plain"),
        Some("{}".into()),
    )
    .await
    .error(415, "UNSUPPORTED_MEDIA_TYPE");
    let m = w
        .get(&format!("{INDIVIDUALS}?limit=0"))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("limit:"), "{m}");
    let m = w
        .get(&format!("{INDIVIDUALS}?colour=red"))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("colour: unsupported query parameter"), "{m}");
    w.get(&format!("{INDIVIDUALS}/no%2Fsuch"))
        .await
        .error(404, "NOT_FOUND");
    w.get(&format!("{INDIVIDUALS}/individual-0"))
        .await
        .error(404, "NOT_FOUND");
    w.send(Method::PUT, INDIVIDUALS, "k-shop", None, None)
        .await
        .error(405, "METHOD_NOT_ALLOWED");
    w.get_as("k-nobody", INDIVIDUALS)
        .await
        .error(401, "UNAUTHENTICATED");
    // A patch that changes the id, or breaks a member, is refused and changes nothing.
    let id = w.created(INDIVIDUALS, json!({"givenName": "Ana"})).await;
    let href = format!("{INDIVIDUALS}/{id}");
    let m = w
        .merge(&href, json!({"id": "individual-2"}))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("id: cannot be changed"), "{m}");
    let m = w
        .merge(&href, json!({"gender": 1}))
        .await
        .error(400, "INVALID_ARGUMENT");
    assert!(m.starts_with("gender:"), "{m}");
    w.send(
        Method::PATCH,
        &href,
        "k-shop",
        Some("text/plain"),
        Some("{}".into()),
    )
    .await
    .error(415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(w.get(&href).await.json()["givenName"], "Ana");
}

#[tokio::test]
async fn parties_are_their_applications_and_administrators_see_all() {
    let w = world().await;
    let id = w.created(INDIVIDUALS, json!({"givenName": "Ana"})).await;
    let href = format!("{INDIVIDUALS}/{id}");
    w.get_as("k-other", &href).await.error(404, "NOT_FOUND");
    assert_eq!(
        w.get_as("k-other", INDIVIDUALS)
            .await
            .header("x-total-count"),
        Some("0")
    );
    let r = w.send(Method::DELETE, &href, "k-other", None, None).await;
    r.error(404, "NOT_FOUND");
    assert_eq!(w.get_as("k-ops", &href).await.status, StatusCode::OK);
    assert_eq!(
        w.get_as("k-ops", INDIVIDUALS).await.header("x-total-count"),
        Some("1")
    );
    let m = w
        .get_as("k-payer", INDIVIDUALS)
        .await
        .error(403, "PERMISSION_DENIED");
    assert!(m.contains("allowed_operations lacks party"), "{m}");
}

#[tokio::test]
async fn a_party_engaged_by_a_customer_is_not_deleted() {
    let w = world().await;
    let id = w
        .created(
            INDIVIDUALS,
            person("Ana", "ana@example.com", "+34600000001"),
        )
        .await;
    let c = w
        .created(CUSTOMERS, json!({"engagedParty": {"id": id}}))
        .await;
    let m = w
        .delete(&format!("{INDIVIDUALS}/{id}"))
        .await
        .error(409, "INVALID_STATE");
    assert!(m.contains(&c), "{m}");
    assert_eq!(
        w.get(&format!("{INDIVIDUALS}/{id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_document_names_the_family_and_its_errors() {
    let doc = crate::api::openapi::document();
    let v = serde_json::to_value(&doc).unwrap();
    for (path, tag) in [
        ("/tmf-api/partyManagement/v4/individual", "tmf632"),
        ("/tmf-api/partyManagement/v4/organization/{id}", "tmf632"),
        ("/tmf-api/customerManagement/v4/customer", "tmf629"),
        (
            "/tmf-api/accountManagement/v4/billingAccount/{id}",
            "tmf666",
        ),
    ] {
        let item = &v["paths"][path];
        let op = item.get("get").unwrap_or_else(|| panic!("{path}: {item}"));
        assert_eq!(op["tags"], json!([tag]), "{path}");
        assert!(op["responses"]["409"].is_object(), "{path}");
    }
}
