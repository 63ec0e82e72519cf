//! The OpenAPI 3 document, generated (utoipa) from the handlers and the body types they parse,
//! so that it matches the code; served at `/openapi.json`.
//!
//! ```text
//! family (tag)       paths                                      error body (component)
//! payment            /rest/payment/<operation>                  ErrorBody (ServiceException / PolicyException)
//! camara-payment     /carrier-billing/v0.5/payments...          ErrorInfo
//! camara-refund      /carrier-billing-refund/v0.3/...           ErrorInfo
//! camara-checkout    /carrier-billing-checkout/v0/purchases...  ErrorInfo
//! tmf654             /tmf-api/prepayBalanceManagement/v4/...    TmfError
//! tmf620             /tmf-api/productCatalogManagement/v4/...   TmfError (read only)
//! tmf639             /tmf-api/resourceInventoryManagement/v4/... TmfError
//! tmf663             /tmf-api/shoppingCart/v4/...               TmfError
//! tmf622             /tmf-api/productOrderingManagement/v4/...   TmfError
//! tmf632             /tmf-api/partyManagement/v4/...            TmfError
//! tmf629             /tmf-api/customerManagement/v4/...         TmfError
//! tmf666             /tmf-api/accountManagement/v4/...          TmfError
//! admin              /metrics, /admin/...                       ErrorBody
//! operations         /health/..., /openapi.json                 Health (the readiness 503)
//! ```
//!
//! Every operation carries exactly one family tag ([`FAMILIES`], which also gives the tags'
//! descriptions), and each error status it documents carries its family's error body. The
//! payment operations all answer the same error statuses: a modifier adds them to every
//! `/rest/payment/` path rather than repeating them on each handler (the CAMARA and TMF654
//! parts do the same for theirs, the admin routes here).

use utoipa::openapi::path::Operation as PathOperation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "charging-gateway REST API",
        description = "REST front ends over Diameter Credit-Control (RFC 4006 / RFC 8506, \
            3GPP Gy/Ro) with an OCS: a 2xx means the OCS confirmed and the record is durable. \
            Three API families, each with its own error model (every operation is tagged with \
            its family; each error response names that family's body):\n\n\
            - OCSG RESTful Payment (tag `payment`, /rest/payment/): Parlay X 3.0 Payment \
            semantics. Errors: `ErrorBody`, a Parlay X ServiceException or PolicyException whose \
            message starts with the message id (SVC0001, SVC0002, SVC0007, SVC0270, POL0001, \
            POL2011).\n\
            - CAMARA Carrier Billing v0.5.0, Carrier Billing Refund v0.3.0 and Carrier Billing \
            Checkout v0.7.0, sync mode (tags `camara-payment`, `camara-refund`, \
            `camara-checkout`). Errors: CAMARA `ErrorInfo` {status, code, message}; \
            x-correlator echoed.\n\
            - TMF654 Prepay Balance Management v4 (tag `tmf654`): top-ups and balance \
            sufficiency. Errors: TMF `TmfError` {code, reason, message, status, @type}, code the \
            Diameter Result-Code when the OCS gave one.\n\
            - TMF620 Product Catalog Management v4, read side (tag `tmf620`): offerings, \
            prices, categories, specifications imported from a file; any authenticated \
            application reads. Errors: `TmfError`.\n\n\
            - TMF639 Resource Inventory Management v4 (tag `tmf639`): MSISDNs and SIMs offered \
            at checkout, held for a cart and assigned to an order. Errors: TMF `TmfError`.\n\n\
            - TMF663 Shopping Cart v4 (tag `tmf663`): carts priced from the catalog, the \
            numbers chosen held in the inventory; merge patch and JSON Patch. Errors: TMF \
            `TmfError`.\n\n\
            - TMF622 Product Ordering Management v4 (tag `tmf622`): checkout of a shopping cart, \
            paid by carrier billing through the OCS, run as a durable pipeline. Errors: TMF \
            `TmfError`.\n\n\
            - Self-registration (tag `identity`, /identity/v1/): sign-up with a one-time code, \
            sign-in with a JWT access token and a rotating refresh token, sign-out. Errors: TMF \
            `TmfError`.\n\n\
            - TMF632 Party Management v4, TMF629 Customer Management v4 and TMF666 Account \
            Management v4 (tags `tmf632`, `tmf629`, `tmf666`): individuals, organizations, \
            their B2C and B2B customers (an email address or phone number is the contact of \
            one customer) and billing accounts. Errors: TMF `TmfError`.\n\n\
            And the gateway's own endpoints: `admin` (metrics, stored records; admin \
            applications; errors as OCSG `ErrorBody`) and `operations` (health, this document; \
            no authentication; the readiness probe's 503 is its `Health` body)."
    ),
    paths(
        super::payment::charge_amount,
        super::payment::refund_amount,
        super::payment::charge_split_amount,
        super::payment::reserve_amount,
        super::payment::reserve_additional_amount,
        super::payment::charge_reservation,
        super::payment::release_reservation,
        super::live,
        super::ready,
        super::openapi_json,
        super::metrics_text,
        super::admin::operations,
        super::admin::reservation,
        super::admin::events,
        super::admin::event,
        super::admin::retry_event,
        super::ocs::health,
        super::ocs::admin,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &PaymentErrors, &AdminErrors)
)]
pub struct ApiDoc;

/// A family of operations: its tag, what it is (the tag's description), and the component
/// schema of its error answers.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub tag: &'static str,
    pub description: &'static str,
    pub error_schema: &'static str,
}

/// Every family of the document, in the order of its tags.
pub const FAMILIES: &[Family] = &[
    Family {
        tag: "payment",
        description: "OCSG RESTful Payment (Parlay X 3.0 Payment): /rest/payment/<operation>; \
            HTTP Basic or X-API-Key. Errors: ErrorBody, a Parlay X ServiceException (SVC0001, \
            SVC0002, SVC0007, SVC0270) or PolicyException (POL0001, POL2011).",
        error_schema: "ErrorBody",
    },
    Family {
        tag: "camara-payment",
        description: "CAMARA Carrier Billing v0.5.0 (sync mode): /carrier-billing/v0.5/payments. \
            Errors: CAMARA ErrorInfo {status, code, message}.",
        error_schema: "ErrorInfo",
    },
    Family {
        tag: "camara-refund",
        description: "CAMARA Carrier Billing Refund v0.3.0 (sync mode): \
            /carrier-billing-refund/v0.3/payments/{paymentId}/refunds. Errors: CAMARA ErrorInfo.",
        error_schema: "ErrorInfo",
    },
    Family {
        tag: "camara-checkout",
        description: "CAMARA Carrier Billing Checkout v0.7.0 (legacy purchase model, sync, no \
            notifications): /carrier-billing-checkout/v0/purchases. Errors: CAMARA ErrorInfo.",
        error_schema: "ErrorInfo",
    },
    Family {
        tag: "tmf654",
        description: "TMF654 Prepay Balance Management v4: monetary top-ups (CCR EVENT \
            REFUND_ACCOUNT), automatic top-ups, balance sufficiency (CHECK_BALANCE). Errors: \
            TMF Error bodies (TmfError) {code, reason, message, status, @type}; code is the \
            Diameter Result-Code when the OCS gave one.",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf620",
        description: "TMF620 Product Catalog Management v4, read side: productOffering, \
            productOfferingPrice, category, productSpecification (TMF630 fields, offset, \
            limit, attribute filters; X-Total-Count, X-Result-Count). Any authenticated \
            application reads. Errors: TMF Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf639",
        description: "TMF639 Resource Inventory Management v4: the MSISDNs and SIMs (ICCIDs) \
            offered at checkout, listed in a random order, held for a cart (PATCH \
            resourceStatus reserved / available), assigned to an order. Errors: TMF Error \
            bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf663",
        description: "TMF663 Shopping Cart v4: carts of the digital sales channel, priced \
            from the TMF620 catalog by the gateway (client prices ignored), the MSISDNs and \
            SIMs chosen in them held in the TMF639 inventory for [inventory] hold; PATCH as \
            merge patch or JSON Patch (RFC 6902). Errors: TMF Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf622",
        description: "TMF622 Product Ordering Management v4: checkout of a TMF663 shopping \
            cart, paid by carrier billing (a CAMARA checkout purchase through the OCS) or an \
            external payment service; a durable pipeline (validate, reserve numbers, authorise \
            the payment, tasks, assign numbers, capture, notify) with compensations. Errors: \
            TMF Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "identity",
        description: "Self-registration of the shop's customers: sign-up with a one-time \
            code by mail or SMS, confirmation, sign-in with a short-lived access token (JWT, \
            HS256) and a rotating refresh token, sign-out; called with the shop front end's \
            application credentials (GET /identity/v1/me with the access token). Errors: TMF \
            Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf632",
        description: "TMF632 Party Management v4: individuals and organizations (contact \
            media: email, E.164 phone, postal address); merge patch or JSON Patch. Errors: TMF \
            Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf629",
        description: "TMF629 Customer Management v4: customers of an individual (B2C) or an \
            organization (B2B, individuals as contacts); an email address or phone number is \
            the contact of one customer (409 CONFLICT otherwise, decided by the store). \
            Errors: TMF Error bodies (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "tmf666",
        description: "TMF666 Account Management v4: billing accounts of customers (carrier \
            billing payment methods, exact credit limit). Errors: TMF Error bodies \
            (TmfError).",
        error_schema: "TmfError",
    },
    Family {
        tag: "admin",
        description: "Metrics and stored records (disputes); admin applications only. Errors: \
            the OCSG ErrorBody (SVC0001, SVC0002, POL0001).",
        error_schema: "ErrorBody",
    },
    Family {
        tag: "operations",
        description: "Health and this API description; no authentication. /health/ready \
            answers 503 with its Health body ({\"status\": \"not ready\"}) while no OCS \
            peer is open.",
        error_schema: "Health",
    },
];

/// The document.
pub fn document() -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::camara::openapi());
    doc.merge(super::tmf654::Tmf654Doc::openapi());
    doc.merge(super::tmf620::Tmf620Doc::openapi());
    doc.merge(super::tmf639::Tmf639Doc::openapi());
    doc.merge(super::tmf663::Tmf663Doc::openapi());
    doc.merge(super::tmf622::Tmf622Doc::openapi());
    doc.merge(super::identity::IdentityDoc::openapi());
    doc.merge(super::tmf632::Tmf632Doc::openapi());
    doc.merge(super::tmf629::Tmf629Doc::openapi());
    doc.merge(super::tmf666::Tmf666Doc::openapi());
    doc.tags = Some(
        FAMILIES
            .iter()
            .map(|f| {
                utoipa::openapi::tag::TagBuilder::new()
                    .name(f.tag)
                    .description(Some(f.description))
                    .build()
            })
            .collect(),
    );
    doc
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Statuses every payment operation may answer with the error body.
pub const PAYMENT_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (SVC0002, field named), invalid charging information (SVC0007), refused \
         by the OCS (SVC0270), reservation expired or closed (POL2011); nothing charged",
    ),
    (
        "401",
        "Authentication required (SVC0001); WWW-Authenticate: Basic realm=\"payment\"",
    ),
    (
        "403",
        "The application's policy forbids it (POL0001: operation, currency, amount)",
    ),
    (
        "409",
        "referenceCode / Idempotency-Key used for another request (SVC0002), or the same \
         request or reservation is busy (SVC0001)",
    ),
    ("413", "Body larger than http.max_body_bytes (SVC0002)"),
    ("415", "Content-Type is not application/json (SVC0002)"),
    (
        "500",
        "Gateway fault (SVC0001): the record could not be written; retry with the same key",
    ),
    (
        "503",
        "No OCS available, protocol error, or the outcome is unknown (SVC0001): retry with the \
         same referenceCode / Idempotency-Key",
    ),
];

struct PaymentErrors;

impl Modify for PaymentErrors {
    fn modify(&self, doc: &mut Doc) {
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/rest/payment/") {
                continue;
            }
            let Some(op) = item.post.as_mut() else {
                continue;
            };
            add_errors(op, &error);
            op.security = Some(vec![
                utoipa::openapi::security::SecurityRequirement::new("basic", Vec::<String>::new()),
                utoipa::openapi::security::SecurityRequirement::new("apiKey", Vec::<String>::new()),
                utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            ]);
        }
    }
}

/// What the admin routes answer besides their result, with the OCSG error body: the same
/// authentication as the payment operations, then the admin check (`auth::require_admin`).
const ADMIN_ERRORS: &[(&str, &str, &str)] = &[
    (
        "/admin/operations",
        "400",
        "A query parameter is invalid (SVC0002, the parameter named)",
    ),
    ("", "401", "Authentication required (SVC0001)"),
    (
        "",
        "403",
        "The application is not an administrator (POL0001: admin = true)",
    ),
    (
        "/admin/reservations/{id}",
        "404",
        "No such reservation (SVC0002)",
    ),
    (
        "/admin/events",
        "400",
        "A query parameter is invalid (SVC0002, the parameter named)",
    ),
    ("/admin/events/{id}", "404", "No such event (SVC0002)"),
    ("/admin/events/{id}/retry", "404", "No such event (SVC0002)"),
    (
        "/admin/events/{id}/retry",
        "409",
        "The event was delivered already (SVC0002), or an instance is posting it now \
         (SVC0001)",
    ),
    (
        "/metrics",
        "404",
        "Metrics are not enabled on this gateway (SVC0001)",
    ),
    ("/admin/", "500", "The store could not be read (SVC0001)"),
];

struct AdminErrors;

impl Modify for AdminErrors {
    fn modify(&self, doc: &mut Doc) {
        for (path, item) in doc.paths.paths.iter_mut() {
            if !(path.starts_with("/admin/") || path == "/metrics") {
                continue;
            }
            // A prefix ending in '/' (or empty) covers every path under it; any other names
            // one path.
            for op in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                for (prefix, status, description) in ADMIN_ERRORS {
                    let covers = if prefix.is_empty() || prefix.ends_with('/') {
                        path.starts_with(prefix)
                    } else {
                        path == prefix
                    };
                    if !covers {
                        continue;
                    }
                    op.responses.responses.insert(
                        (*status).to_string(),
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build()
                            .into(),
                    );
                }
            }
        }
    }
}

fn add_errors(op: &mut PathOperation, error: &dyn Fn() -> utoipa::openapi::Content) {
    for (status, description) in PAYMENT_ERRORS {
        op.responses.responses.insert(
            (*status).to_string(),
            ResponseBuilder::new()
                .description(*description)
                .content("application/json", error())
                .build()
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// The family each served path belongs to, from its path alone (independent of the tags
    /// the handlers declare), and the error body that family answers with.
    fn family_of(path: &str) -> (&'static str, &'static str) {
        if path.starts_with("/rest/payment/") {
            ("payment", "ErrorBody")
        } else if path.starts_with("/carrier-billing/") {
            ("camara-payment", "ErrorInfo")
        } else if path.starts_with("/carrier-billing-refund/") {
            ("camara-refund", "ErrorInfo")
        } else if path.starts_with("/carrier-billing-checkout/") {
            ("camara-checkout", "ErrorInfo")
        } else if path.starts_with("/tmf-api/prepayBalanceManagement/") {
            ("tmf654", "TmfError")
        } else if path.starts_with("/tmf-api/productCatalogManagement/") {
            ("tmf620", "TmfError")
        } else if path.starts_with("/tmf-api/resourceInventoryManagement/") {
            ("tmf639", "TmfError")
        } else if path.starts_with("/tmf-api/shoppingCart/") {
            ("tmf663", "TmfError")
        } else if path.starts_with("/tmf-api/productOrderingManagement/") {
            ("tmf622", "TmfError")
        } else if path.starts_with("/identity/") {
            ("identity", "TmfError")
        } else if path.starts_with("/tmf-api/partyManagement/") {
            ("tmf632", "TmfError")
        } else if path.starts_with("/tmf-api/customerManagement/") {
            ("tmf629", "TmfError")
        } else if path.starts_with("/tmf-api/accountManagement/") {
            ("tmf666", "TmfError")
        } else if path.starts_with("/admin/") || path == "/metrics" {
            ("admin", "ErrorBody")
        } else if path == "/health" {
            // The operator's view answers 503 with the same view while not ready.
            ("operations", "OcsView")
        } else if path.starts_with("/health/") || path == "/openapi.json" {
            ("operations", "Health")
        } else {
            panic!("{path}: a path of no known family")
        }
    }

    #[test]
    fn every_operation_is_in_one_described_family_with_its_error_body() {
        let doc: Value = serde_json::from_str(&document().to_json().unwrap()).unwrap();
        let tags: Vec<(&str, &str)> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap(),
                    t["description"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let families: BTreeSet<&str> = tags.iter().map(|t| t.0).collect();
        assert_eq!(families.len(), tags.len(), "a tag listed twice: {tags:?}");
        for (name, description) in &tags {
            assert!(
                description.len() > 40,
                "{name} is not described: {description:?}"
            );
        }
        let schemas = &doc["components"]["schemas"];
        let mut used = BTreeSet::new();
        let mut operations = 0;
        let mut errors_of = std::collections::BTreeMap::<&str, usize>::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let (family, error) = family_of(path);
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{} {path}", method.to_uppercase());
                operations += 1;
                let own: Vec<&str> = op["tags"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: no tags"))
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| families.contains(t))
                    .collect();
                assert_eq!(own, [family], "{at}: exactly one family tag, its own");
                used.insert(family);
                if family != "operations" {
                    // Every other family authenticates: its refusals are documented too
                    // (the catalog has no policy: any application may read it, so no 403).
                    let refusals: &[&str] = if family == "tmf620" {
                        &["401"]
                    } else {
                        &["401", "403"]
                    };
                    for status in refusals {
                        assert!(op["responses"][status].is_object(), "{at}: no {status}");
                    }
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    if !(status.starts_with('4') || status.starts_with('5')) {
                        continue;
                    }
                    *errors_of.entry(family).or_default() += 1;
                    let content = response["content"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{at} {status}: no body documented"));
                    assert!(!content.is_empty(), "{at} {status}");
                    for (media, c) in content {
                        assert_eq!(
                            c["schema"]["$ref"],
                            format!("#/components/schemas/{error}"),
                            "{at} {status} {media}: not the {family} error body"
                        );
                    }
                }
            }
        }
        // Every family described is one that operations use, and the reverse.
        assert_eq!(used, families);
        assert_eq!(
            operations,
            crate::api::routes().len(),
            "one per route served"
        );
        // ... and each of them documents errors (so the checks above held on something).
        assert_eq!(errors_of.keys().copied().collect::<BTreeSet<_>>(), families);
        // Each family's error body is a component, with the shape its family defines.
        assert!(
            schemas["ErrorBody"]["properties"]["error"]["$ref"]
                == "#/components/schemas/ErrorDetail"
        );
        assert!(schemas["ErrorDetail"]["properties"]["type"].is_object());
        for field in ["status", "code", "message"] {
            assert!(
                schemas["ErrorInfo"]["properties"][field].is_object(),
                "ErrorInfo.{field}"
            );
        }
        for field in ["code", "reason", "message", "status", "@type"] {
            assert!(
                schemas["TmfError"]["properties"][field].is_object(),
                "TmfError.{field}"
            );
        }
        assert!(schemas["Health"]["properties"]["status"].is_object());
        // The description of the whole document names every family and its error model.
        let info = doc["info"]["description"].as_str().unwrap();
        for needle in [
            "OCSG",
            "ServiceException",
            "PolicyException",
            "CAMARA",
            "ErrorInfo",
            "Refund",
            "Checkout",
            "TMF654",
            "TmfError",
        ] {
            assert!(
                info.contains(needle),
                "info.description does not say {needle}"
            );
        }
        for f in FAMILIES {
            assert!(
                info.contains(&format!("`{}`", f.tag)),
                "info.description: {}",
                f.tag
            );
        }
    }
}
