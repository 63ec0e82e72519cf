//! The OpenAPI 3 document, generated (utoipa) from the handlers and the body types they parse,
//! so that it matches the code; served at `/openapi.json`.
//!
//! The payment operations all answer the same error statuses (400, 401, 403, 409, 413, 415,
//! 500, 503 with the ServiceException / PolicyException body): a modifier adds them to every
//! `/rest/payment/` path rather than repeating them on each handler.

use utoipa::openapi::path::Operation as PathOperation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "charging-gateway REST API",
        description = "OCSG RESTful Payment facade (Parlay X 3.0 Payment semantics) over Diameter \
            Credit-Control (RFC 4006 / RFC 8506, 3GPP Gy/Ro), and the gateway's operations \
            endpoints. Errors are Parlay X ServiceException / PolicyException bodies whose \
            message starts with the message id (SVC0001, SVC0002, SVC0007, SVC0270, POL0001, \
            POL2011)."
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
        super::ocs::health,
        super::ocs::admin,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &PaymentErrors),
    tags(
        (name = "payment", description = "OCSG RESTful Payment: /rest/payment/<operation>"),
        (name = "operations", description = "Health and the API description"),
        (name = "admin", description = "Metrics and stored records; admin applications only"),
    )
)]
pub struct ApiDoc;

/// The document.
pub fn document() -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::camara::openapi());
    doc.merge(super::tmf654::Tmf654Doc::openapi());
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
