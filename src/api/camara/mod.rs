//! CAMARA Carrier Billing (payments, v0.5.0), Carrier Billing Refund (v0.3.0) and the legacy
//! Carrier Billing Checkout (v0.7.0, purchases: see [`checkout`]), sync and async modes,
//! over [`Charging`](crate::charging::Charging): the definitions of
//! `reference/camara/carrier-billing-v0.5.yaml` and `carrier-billing-refund-v0.3.yaml`, with the
//! Commonalities r3.3 error model (API.md sections 1, 2, 6.2, 9.1, 10).
//!
//! ```text
//! POST /carrier-billing/v0.5/payments                     1-step: CCR EVENT DIRECT_DEBITING   201 succeeded
//! POST /carrier-billing/v0.5/payments/prepare             2-step: CCR INITIAL                 201 reserved
//! POST /carrier-billing/v0.5/payments/{paymentId}/confirm CCR TERMINATION, USU = the amount   202 -> succeeded
//! POST /carrier-billing/v0.5/payments/{paymentId}/cancel  CCR TERMINATION, USU 0              202 -> cancelled
//! GET  /carrier-billing/v0.5/payments[/{paymentId}]       the caller's payments (page, perPage, filters)
//! POST /carrier-billing-refund/v0.3/payments/{paymentId}/refunds   CCR EVENT REFUND_ACCOUNT   201 succeeded
//! GET  /carrier-billing-refund/v0.3/payments/{paymentId}/refunds[/{refundId}|/remaining-amount]
//! POST|GET /carrier-billing-checkout/v0/purchases[/{purchaseId}]  purchases (checkout.rs), no CCR
//! POST /carrier-billing-checkout/v0/purchases/{purchaseId}/payment[/prepare|/confirm|/cancel]
//!                                                 the purchase's payment: a payment as above
//! ```
//!
//! Every payment and refund is a [`ResourceRow`](crate::store::ResourceRow) (kinds
//! `camara.payment`, `camara.refund`), written `processing` before its CCR and with its final
//! state after, both durably; the money-moving operations behind it are `Charging`'s, keyed per
//! application by the resource id (itself derived from the application and its
//! `clientCorrelator`, else its `referenceCode`), so that a retry or a read after a restart
//! learns the outcome instead of charging again. The payment states (API.md 1.4, 10):
//!
//! ```text
//!   create:  processing --2001--> succeeded        refused: no payment (sync), or denied once shown
//!   prepare: processing --2001--> reserved         outcome unknown: stays processing (201)
//!   confirm: reserved --> processing --2001--> succeeded | denied | reserved (nothing sent)
//!   cancel:  reserved --> processing --2001--> cancelled | reserved (nothing sent)
//!   expiry:  reserved --(reaper released the reservation)--> cancelled (seen when read)
//! ```
//!
//! Modes (API.md 1.4, 9.1): without `sink`, sync: the answer carries the outcome and a
//! refusal creates nothing. With `sink` (and `sinkCredential`), async ([`events`]): createPayment,
//! preparePayment and createRefund answer 201 `processing` once the resource is durable, the
//! CCR runs in a task of its own, and the outcome is a CloudEvent posted to the sink by the
//! outbox (`succeeded`/`reserved`, or `denied` with `denialReason` where sync mode answers
//! 403/404/422); confirm and cancel answer as in sync mode and write their event too; a
//! reservation's expiry writes `payment-cancelled`. Errors of the request itself (400, 401,
//! 409, ...) are answered before anything is created, in both modes. [`events::recover`]
//! finishes async resources a stopped process left `processing` (and notices expired
//! reservations). `validatePayment` (OTP) is not offered, so no payment is ever
//! `pending_validation`.

pub mod checkout;
pub mod error;
pub mod events;
mod list;
pub mod model;
mod payments;
mod refunds;

#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use super::auth::Caller;
use super::{ApiState, Route};
use crate::charging::locks::Held;
use error::CamaraError;

/// A path of the Carrier Billing API: its base (`servers[0].url` of carrier-billing v0.5.0,
/// without `{apiRoot}`) and `$tail`.
macro_rules! payment_path {
    ($tail:literal) => {
        concat!("/carrier-billing/v0.5", $tail)
    };
}

/// A path of the Carrier Billing Refund API (base: `servers[0].url` of carrier-billing-refund
/// v0.3.0).
macro_rules! refund_path {
    ($tail:literal) => {
        concat!("/carrier-billing-refund/v0.3", $tail)
    };
}

/// A path of the Carrier Billing Checkout API (legacy purchase model; base: `servers[0].url`
/// of carrier-billing-checkout v0.7.0).
macro_rules! checkout_path {
    ($tail:literal) => {
        concat!("/carrier-billing-checkout/v0", $tail)
    };
}

/// Base path of the Carrier Billing Checkout API.
pub const CHECKOUT_BASE: &str = checkout_path!("");
pub const PURCHASES: &str = checkout_path!("/purchases");
pub const PURCHASE: &str = checkout_path!("/purchases/{purchaseId}");
pub const PURCHASE_PAYMENT: &str = checkout_path!("/purchases/{purchaseId}/payment");
pub const PURCHASE_PREPARE: &str = checkout_path!("/purchases/{purchaseId}/payment/prepare");
pub const PURCHASE_CONFIRM: &str = checkout_path!("/purchases/{purchaseId}/payment/confirm");
pub const PURCHASE_CANCEL: &str = checkout_path!("/purchases/{purchaseId}/payment/cancel");

/// Base path of the Carrier Billing API.
pub const PAYMENT_BASE: &str = payment_path!("");
/// Base path of the Carrier Billing Refund API.
pub const REFUND_BASE: &str = refund_path!("");
pub const PAYMENTS: &str = payment_path!("/payments");
pub const PAYMENTS_PREPARE: &str = payment_path!("/payments/prepare");
pub const PAYMENT: &str = payment_path!("/payments/{paymentId}");
pub const PAYMENT_CONFIRM: &str = payment_path!("/payments/{paymentId}/confirm");
pub const PAYMENT_CANCEL: &str = payment_path!("/payments/{paymentId}/cancel");
pub const REFUNDS: &str = refund_path!("/payments/{paymentId}/refunds");
pub const REFUND: &str = refund_path!("/payments/{paymentId}/refunds/{refundId}");
pub const REMAINING_AMOUNT: &str = refund_path!("/payments/{paymentId}/refunds/remaining-amount");

/// Resource kind of a payment shown to its application.
pub const KIND_PAYMENT: &str = "camara.payment";
/// A payment request that created no payment (refused in sync mode, or nothing sent): kept
/// so that a retry with the same `clientCorrelator` is answered the same.
pub const KIND_PAYMENT_VOID: &str = "camara.payment.void";
/// A refund shown to its application.
pub const KIND_REFUND: &str = "camara.refund";
/// A refund request that created no refund.
pub const KIND_REFUND_VOID: &str = "camara.refund.void";
/// A checkout purchase (`carrier-billing-checkout`).
pub const KIND_PURCHASE: &str = "camara.checkout.purchase";
/// The payment of a checkout purchase: a payment document like the payments API's, bound to
/// its purchase, under its own kind (the payments API does not show it).
pub const KIND_CHECKOUT_PAYMENT: &str = "camara.checkout.payment";
/// A checkout payment request that created no payment.
pub const KIND_CHECKOUT_PAYMENT_VOID: &str = "camara.checkout.payment.void";
/// Which payment or refund holds a `referenceCode` (the row's `parent`).
pub const KIND_REFERENCE: &str = "camara.reference";

/// The CAMARA scopes, used as operation names in `[[apps]] allowed_operations`.
pub mod scope {
    pub const PAYMENTS_CREATE: &str = "carrier-billing:payments:create";
    pub const PAYMENTS_WRITE: &str = "carrier-billing:payments:write";
    pub const PAYMENTS_READ: &str = "carrier-billing:payments:read";
    pub const REFUNDS_CREATE: &str = "carrier-billing-refund:refunds:create";
    pub const REFUNDS_READ: &str = "carrier-billing-refund:refunds:read";
    /// Checkout (API.md 3.1): createPurchase.
    pub const PURCHASE_WRITE: &str = "carrier-billing-checkout-purchase-digital-good-user-write";
    /// Checkout: getPurchases, getPurchaseInfo.
    pub const PURCHASE_READ: &str = "carrier-billing-checkout-purchase-digital-good-user-read";
    /// Checkout: createPayment, preparePayment, confirmPayment, cancelPayment.
    pub const CHECKOUT_PAYMENT_WRITE: &str = "carrier-billing-checkout-payment-user-write";
    pub const ALL: [&str; 8] = [
        PAYMENTS_CREATE,
        PAYMENTS_WRITE,
        PAYMENTS_READ,
        REFUNDS_CREATE,
        REFUNDS_READ,
        PURCHASE_WRITE,
        PURCHASE_READ,
        CHECKOUT_PAYMENT_WRITE,
    ];
}

/// The family's routes, for the gateway's route table.
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, PAYMENTS, post(payments::create_payment)),
        r(Method::GET, PAYMENTS, get(payments::retrieve_payments)),
        r(
            Method::POST,
            PAYMENTS_PREPARE,
            post(payments::prepare_payment),
        ),
        r(Method::GET, PAYMENT, get(payments::retrieve_payment)),
        r(
            Method::POST,
            PAYMENT_CONFIRM,
            post(payments::confirm_payment),
        ),
        r(Method::POST, PAYMENT_CANCEL, post(payments::cancel_payment)),
        r(Method::POST, REFUNDS, post(refunds::create_refund)),
        r(Method::GET, REFUNDS, get(refunds::retrieve_refunds)),
        r(
            Method::GET,
            REMAINING_AMOUNT,
            get(refunds::retrieve_remaining_amount),
        ),
        r(Method::GET, REFUND, get(refunds::retrieve_refund)),
        r(Method::POST, PURCHASES, post(checkout::create_purchase)),
        r(Method::GET, PURCHASES, get(checkout::get_purchases)),
        r(Method::GET, PURCHASE, get(checkout::get_purchase)),
        r(
            Method::POST,
            PURCHASE_PAYMENT,
            post(checkout::create_payment),
        ),
        r(
            Method::POST,
            PURCHASE_PREPARE,
            post(checkout::prepare_payment),
        ),
        r(
            Method::POST,
            PURCHASE_CONFIRM,
            post(checkout::confirm_payment),
        ),
        r(
            Method::POST,
            PURCHASE_CANCEL,
            post(checkout::cancel_payment),
        ),
    ]
}

// ---- x-correlator ----------------------------------------------------------------------------

/// `x-correlator` (Commonalities `XCorrelator`): `^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$`.
pub fn valid_correlator(v: &str) -> bool {
    v.len() <= 256
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b':' | b';' | b'.' | b'/' | b'<' | b'>' | b'{' | b'}'
                )
        })
}

/// Refuses a malformed `x-correlator` (400 INVALID_ARGUMENT) and echoes a valid, non-empty one
/// in the answer, whatever it is. The router runs it around every request to a CAMARA path,
/// outside the request timeout, so that the router's own answers (404, 405, 504) echo it too.
pub(crate) async fn x_correlator(req: Request, next: Next) -> Response {
    let given = match req.headers().get("x-correlator") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if valid_correlator(s) => (!s.is_empty()).then(|| v.clone()),
            _ => {
                return CamaraError::invalid(
                    "x-correlator: must match ^[a-zA-Z0-9-_:;.\\/<>{}]{0,256}$",
                )
                .into_response();
            }
        },
    };
    let mut res = next.run(req).await;
    if let Some(v) = given {
        res.headers_mut().insert("x-correlator", v);
    }
    res
}

// ---- the caller ------------------------------------------------------------------------------

/// The authenticated application (HTTP Basic, `X-API-Key`, `Authorization: Bearer` with a key
/// or an access token, as for every family), and the subscriber a three-legged token is bound
/// to (API.md 1.7: the MSISDN of the token, never one of the body); a refusal is 401
/// UNAUTHENTICATED in the CAMARA model.
#[derive(Clone, Debug)]
pub struct Client(pub Caller, pub Option<String>);

impl FromRequestParts<ApiState> for Client {
    type Rejection = CamaraError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, CamaraError> {
        match st.apps.identify(&parts.headers).await {
            Ok(subject) => {
                tracing::Span::current().record("app", subject.app.id());
                let client = Self(subject.app.clone(), subject.phone_number.clone());
                parts.extensions.insert(subject);
                Ok(client)
            }
            Err(e) => {
                // The reason, without the OCSG message id in front.
                let reason = e
                    .message
                    .split_once("authentication required: ")
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_default();
                Err(CamaraError::unauthenticated(reason))
            }
        }
    }
}

impl Client {
    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// The MSISDN a three-legged token binds the request to (None: two-legged, the body
    /// names the subscriber).
    pub fn bound_phone(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// 403 PERMISSION_DENIED unless `allowed_operations` grants the scope.
    pub fn require(&self, scope: &str) -> Result<(), CamaraError> {
        if self.0.may_call(scope) {
            Ok(())
        } else {
            Err(CamaraError::permission(self.0.refusal(scope, scope)))
        }
    }
}

// ---- request bodies --------------------------------------------------------------------------

/// A JSON body: `Content-Type: application/json` (else 415), within `http.max_body_bytes`
/// (else 413), parsed by [`Body::parse`].
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = CamaraError;

    async fn from_request(req: Request, state: &S) -> Result<Self, CamaraError> {
        if !is_json(req.headers()) {
            return Err(CamaraError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error::code::UNSUPPORTED_MEDIA_TYPE,
                "The server refuses to accept the request because the payload format is in an \
                 unsupported format. Content-Type: application/json expected.",
            ));
        }
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(CamaraError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                error::code::PAYLOAD_TOO_LARGE,
                "The request body is larger than the gateway accepts (http.max_body_bytes).",
            )),
            Err(r) => Err(CamaraError::invalid(format!("body: {}", r.body_text()))),
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or_default().trim())
        .is_some_and(|e| e.eq_ignore_ascii_case("application/json"))
}

impl Body {
    /// The body as `T` (a JSON object); an error names the property (`amountTransaction.
    /// paymentAmount.chargingInformation.amount`). Unknown properties are ignored.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CamaraError> {
        let mut de = serde_json::Deserializer::from_slice(&self.0);
        let value: T = match serde_path_to_error::deserialize(&mut de) {
            Ok(model::Obj(v)) => v,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(CamaraError::invalid(format!(
                        "body: not valid JSON: {inner}"
                    )));
                }
                if path == "." {
                    return Err(CamaraError::invalid(format!("body: {inner}")));
                }
                return Err(CamaraError::invalid(format!("{path}: {inner}")));
            }
        };
        de.end()
            .map_err(|e| CamaraError::invalid(format!("body: not valid JSON: {e}")))?;
        Ok(value)
    }
}

// ---- identifiers and locks -------------------------------------------------------------------

/// A resource id of this gateway: what `pay-`/`rf-` ids are made of (anything else is refused
/// as an argument, before any lookup).
pub fn valid_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `prefix` + 24 hex digits of SHA-256 over the parts (NUL-separated): stable ids, so that a
/// retry with the same key finds its resource in one read.
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    format!("{prefix}{}", digest.get(..24).unwrap_or(&digest))
}

/// SHA-256 (hex) of a canonical request.
pub fn request_hash(kind: &str, body: &impl serde::Serialize) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// How long a request waits for the lock of a payment another request works on.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// One operation at a time per payment (and per `referenceCode`): the checks of a request
/// (key used? amount left?) and its first durable write are one step, across the gateway
/// instances sharing the store ([`crate::charging::locks`]).
pub struct KeyGuard(#[allow(dead_code)] Held);

impl KeyGuard {
    /// The lock of `key`, waiting for it (409 `ABORTED` after [`LOCK_WAIT`]).
    pub async fn lock(st: &ApiState, key: &str) -> Result<Self, CamaraError> {
        match st
            .charging
            .locks()
            .hold(&format!("camara:{key}"), LOCK_WAIT)
            .await
        {
            Ok(Some(h)) => Ok(Self(h)),
            Ok(None) => Err(CamaraError::new(
                StatusCode::CONFLICT,
                error::code::ABORTED,
                "Another operation on this payment is in progress; retry.",
            )),
            Err(e) => Err(CamaraError::internal(format!(
                "The gateway could not lock the payment: {e}."
            ))),
        }
    }

    /// The lock if nobody holds it now (reads do not wait for an operation in flight).
    pub async fn try_lock(st: &ApiState, key: &str) -> Option<Self> {
        match st.charging.locks().try_hold(&format!("camara:{key}")).await {
            Ok(h) => h.map(Self),
            Err(e) => {
                tracing::warn!(key, error = %e, "lock not taken");
                None
            }
        }
    }
}

// ---- times -----------------------------------------------------------------------------------

/// RFC 3339 in UTC, always with milliseconds: `2026-12-01T10:00:00.120Z` (the one form of
/// every body, [`crate::api::datetime`]).
pub fn rfc3339(ms: i64) -> String {
    crate::api::datetime::format_ms(ms)
}

/// An RFC 3339 date-time with its zone (`Z` or `+hh:mm`), in ms since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

// ---- OpenAPI ---------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    paths(
        payments::create_payment,
        payments::retrieve_payments,
        payments::prepare_payment,
        payments::retrieve_payment,
        payments::confirm_payment,
        payments::cancel_payment,
        refunds::create_refund,
        refunds::retrieve_refunds,
        refunds::retrieve_remaining_amount,
        refunds::retrieve_refund,
        checkout::create_purchase,
        checkout::get_purchases,
        checkout::get_purchase,
        checkout::create_payment,
        checkout::prepare_payment,
        checkout::confirm_payment,
        checkout::cancel_payment,
    ),
    components(schemas(error::ErrorInfo)),
    // Its tags (camara-payment, camara-refund, camara-checkout) are described with every
    // family's in `api::openapi::FAMILIES`.
    modifiers(&CamaraErrors)
)]
struct CamaraDoc;

/// This family's part of the gateway's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    CamaraDoc::openapi()
}

/// Statuses every CAMARA operation may answer with `ErrorInfo`.
const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "INVALID_ARGUMENT (schema, amounts, currency, clientCorrelator reused for another \
         request, sink), OUT_OF_RANGE, CARRIER_BILLING.INVALID_DATE_RANGE, \
         CARRIER_BILLING.TOO_MANY_MATCHING_RECORDS (and the CARRIER_BILLING_REFUND. ones)",
    ),
    ("401", "UNAUTHENTICATED"),
    (
        "403",
        "PERMISSION_DENIED (application policy; checkout: refused by the OCS), \
         CARRIER_BILLING.PAYMENT_DENIED, CARRIER_BILLING_REFUND.REFUND_DENIED, \
         CARRIER_BILLING_REFUND.PAYMENT_NOT_ELIGIBLE_FOR_REFUND, \
         CARRIER_BILLING_CHECKOUT.PURCHASE_AMOUNT_OVERPASSED, \
         CARRIER_BILLING_CHECKOUT.PHONE_NUMBER_REQUIRED",
    ),
    (
        "404",
        "NOT_FOUND (payment, refund, purchase), IDENTIFIER_NOT_FOUND (phoneNumber)",
    ),
    (
        "409",
        "ALREADY_EXISTS (referenceCode), CARRIER_BILLING.PAYMENT_CONFIRMED, \
         CARRIER_BILLING.PAYMENT_CANCELLED, ABORTED (concurrent operation), CONFLICT, \
         CARRIER_BILLING_CHECKOUT.PAYMENT_REACHED_FINAL_STATUS (checkout confirm/cancel)",
    ),
    (
        "412",
        "FAILED_PRECONDITION (checkout: confirm or cancel of a purchase that is not \
         ready_to_confirm)",
    ),
    (
        "413",
        "PAYLOAD_TOO_LARGE (not a CAMARA code): body over http.max_body_bytes",
    ),
    ("415", "UNSUPPORTED_MEDIA_TYPE"),
    (
        "422",
        "MISSING_IDENTIFIER, SERVICE_NOT_APPLICABLE, CARRIER_BILLING.UNAUTHORIZED_AMOUNT, \
         CARRIER_BILLING_REFUND.UNAUTHORIZED_AMOUNT, INVALID_PAYMENT_STATUS, \
         TAXES_MANAGEMENT_MISMATCH, REFUND_DETAILS_MISMATCH, USER_AMOUNT_THRESHOLD_OVERPASSED",
    ),
    ("500", "INTERNAL"),
    (
        "503",
        "UNAVAILABLE (no OCS reached; nothing charged): retry",
    ),
    (
        "504",
        "TIMEOUT (no answer within http.request_timeout; the outcome is unknown): retry with \
         the same clientCorrelator, or read the resource",
    ),
];

struct CamaraErrors;

impl utoipa::Modify for CamaraErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        for (_, item) in doc.paths.paths.iter_mut() {
            for op in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                for (status, description) in ERRORS {
                    op.responses.responses.insert(
                        (*status).to_string(),
                        ResponseBuilder::new()
                            .description(*description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorInfo")))
                                    .build(),
                            )
                            .build()
                            .into(),
                    );
                }
                op.security = Some(vec![
                    SecurityRequirement::new("basic", Vec::<String>::new()),
                    SecurityRequirement::new("apiKey", Vec::<String>::new()),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ]);
            }
        }
    }
}

/// Shared by the handlers: the payment a path names, read for `client` (404 otherwise).
pub(crate) fn path_id(name: &str, v: &str) -> Result<String, CamaraError> {
    if valid_id(v) {
        Ok(v.to_string())
    } else {
        Err(CamaraError::invalid(format!(
            "{name}: not an identifier of this gateway (1 to 64 of A-Z a-z 0-9 - _)"
        )))
    }
}

/// The answer of a handler.
pub(crate) fn answer(r: Result<Response, CamaraError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `Location` of a created resource.
pub(crate) fn location(path: &str) -> (header::HeaderName, HeaderValue) {
    (
        header::LOCATION,
        HeaderValue::from_str(path).unwrap_or_else(|_| HeaderValue::from_static("/")),
    )
}
