//! The CAMARA error model (Commonalities r3.3 `ErrorInfo`, the Carrier Billing v0.5 and
//! Carrier Billing Refund v0.3 responses) and the one mapping of every charging [`Failure`]
//! onto it ([`from_failure`]), with what the failure means for the REST resource ([`effect`]).
//!
//! ```text
//! {"status": 403, "code": "CARRIER_BILLING.PAYMENT_DENIED",
//!  "message": "Payment denied by business. The OCS answered DIAMETER_CREDIT_LIMIT_REACHED (4012)."}
//! ```
//!
//! `status` repeats the HTTP status; `code` is a CAMARA code (generic, or prefixed by the API:
//! `CARRIER_BILLING.`, `CARRIER_BILLING_REFUND.`); `message` is the specification's text for the
//! code, followed by what the gateway knows more.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::charging::Failure;

/// The CAMARA codes the gateway answers with.
pub mod code {
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const OUT_OF_RANGE: &str = "OUT_OF_RANGE";
    /// `sink` refused (scheme, address, name that does not resolve to allowed addresses).
    pub const INVALID_SINK: &str = "INVALID_SINK";
    /// `sinkCredential.credentialType` other than `ACCESSTOKEN`.
    pub const INVALID_CREDENTIAL: &str = "INVALID_CREDENTIAL";
    /// `sinkCredential.accessTokenType` other than `bearer`, or a token already expired.
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const IDENTIFIER_NOT_FOUND: &str = "IDENTIFIER_NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
    pub const ABORTED: &str = "ABORTED";
    pub const CONFLICT: &str = "CONFLICT";
    /// Not a CAMARA code: Commonalities define none for 413.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const SERVICE_NOT_APPLICABLE: &str = "SERVICE_NOT_APPLICABLE";
    pub const MISSING_IDENTIFIER: &str = "MISSING_IDENTIFIER";
    pub const UNNECESSARY_IDENTIFIER: &str = "UNNECESSARY_IDENTIFIER";
    pub const INTERNAL: &str = "INTERNAL";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const PAYMENT_DENIED: &str = "CARRIER_BILLING.PAYMENT_DENIED";
    pub const PAYMENT_CONFIRMED: &str = "CARRIER_BILLING.PAYMENT_CONFIRMED";
    pub const PAYMENT_CANCELLED: &str = "CARRIER_BILLING.PAYMENT_CANCELLED";
    pub const UNAUTHORIZED_AMOUNT: &str = "CARRIER_BILLING.UNAUTHORIZED_AMOUNT";
    pub const INVALID_DATE_RANGE: &str = "CARRIER_BILLING.INVALID_DATE_RANGE";
    pub const TOO_MANY_MATCHING_RECORDS: &str = "CARRIER_BILLING.TOO_MANY_MATCHING_RECORDS";
    pub const REFUND_DENIED: &str = "CARRIER_BILLING_REFUND.REFUND_DENIED";
    pub const PAYMENT_NOT_ELIGIBLE_FOR_REFUND: &str =
        "CARRIER_BILLING_REFUND.PAYMENT_NOT_ELIGIBLE_FOR_REFUND";
    pub const REFUND_UNAUTHORIZED_AMOUNT: &str = "CARRIER_BILLING_REFUND.UNAUTHORIZED_AMOUNT";
    pub const REFUND_USER_AMOUNT_THRESHOLD_OVERPASSED: &str =
        "CARRIER_BILLING_REFUND.USER_AMOUNT_THRESHOLD_OVERPASSED";
    pub const INVALID_PAYMENT_STATUS: &str = "CARRIER_BILLING_REFUND.INVALID_PAYMENT_STATUS";
    pub const TAXES_MANAGEMENT_MISMATCH: &str = "CARRIER_BILLING_REFUND.TAXES_MANAGEMENT_MISMATCH";
    pub const REFUND_DETAILS_MISMATCH: &str = "CARRIER_BILLING_REFUND.REFUND_DETAILS_MISMATCH";
    pub const REFUND_INVALID_DATE_RANGE: &str = "CARRIER_BILLING_REFUND.INVALID_DATE_RANGE";
    pub const REFUND_TOO_MANY_MATCHING_RECORDS: &str =
        "CARRIER_BILLING_REFUND.TOO_MANY_MATCHING_RECORDS";
}

/// The error body of every CAMARA answer that is not a success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": 400, "code": "INVALID_ARGUMENT",
    "message": "Client specified an invalid argument, request body or query param. amountTransaction.phoneNumber: does not match ^\\+[1-9][0-9]{4,14}$"}))]
pub struct ErrorInfo {
    /// The HTTP status.
    pub status: u16,
    /// A CAMARA code (`INVALID_ARGUMENT`, `CARRIER_BILLING.PAYMENT_DENIED`, ...).
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CamaraError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    retry_after: bool,
    challenge: bool,
}

impl CamaraError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: false,
            challenge: false,
        }
    }

    /// 400 INVALID_ARGUMENT: the specification's text, then the detail.
    pub fn invalid(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
            format!("Client specified an invalid argument, request body or query param. {detail}"),
        )
    }

    /// 400 INVALID_ARGUMENT for a required property that is absent.
    pub fn missing(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
            format!("Expected property is missing: {path}."),
        )
    }

    /// 400 INVALID_ARGUMENT: the currency is not ISO 4217 or not allowed.
    pub fn currency(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
            format!("Currency is unknown or not authorized. {detail}"),
        )
    }

    /// 400 OUT_OF_RANGE.
    pub fn out_of_range(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::OUT_OF_RANGE,
            format!("Client specified an invalid range. {detail}"),
        )
    }

    /// 401 UNAUTHENTICATED with the Basic challenge.
    pub fn unauthenticated(detail: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHENTICATED,
            format!(
                "Request not authenticated due to missing, invalid, or expired credentials. \
                 A new authentication is required. {detail}"
            ),
        );
        e.challenge = true;
        e
    }

    /// 403 PERMISSION_DENIED.
    pub fn permission(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            code::PERMISSION_DENIED,
            format!("Client does not have sufficient permissions to perform this action. {detail}"),
        )
    }

    /// 404 NOT_FOUND.
    pub fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("The specified resource is not found. {detail}"),
        )
    }

    /// 503 UNAVAILABLE with `Retry-After`.
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            format!("Service Unavailable. {detail}"),
        )
        .retry()
    }

    /// 500 INTERNAL.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            format!("Unknown server error. {detail}"),
        )
    }

    fn retry(mut self) -> Self {
        self.retry_after = true;
        self
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            status: self.status.as_u16(),
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }

    /// The answer stored with a resource, as it was given.
    pub fn from_info(i: &ErrorInfo) -> Self {
        Self::new(
            StatusCode::from_u16(i.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &i.code,
            i.message.clone(),
        )
    }
}

impl fmt::Display for CamaraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for CamaraError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(status = self.status.as_u16(), code = %self.code, message = %self.message, "request refused");
        }
        let body = serde_json::to_vec(&self.info()).unwrap_or_default();
        let mut res = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"carrier-billing\""),
            );
        }
        res
    }
}

/// The operation a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// createPayment: CCR EVENT, DIRECT_DEBITING.
    Create,
    /// preparePayment: CCR INITIAL.
    Prepare,
    /// confirmPayment: CCR TERMINATION, USU = the amount.
    Confirm,
    /// cancelPayment: CCR TERMINATION, USU 0.
    Cancel,
    /// createRefund: CCR EVENT, REFUND_ACCOUNT.
    Refund,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Self::Create,
        Self::Prepare,
        Self::Confirm,
        Self::Cancel,
        Self::Refund,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Prepare => "prepare",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Refund => "refund",
        }
    }
}

/// What a failure means for the resource the operation was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Definitively refused (by the OCS, or by the gateway before sending): a payment or refund
    /// being created is not created (sync mode); a confirmation leaves the payment `denied`.
    Refused,
    /// Nothing was applied and nothing is pending (no OCS reached, or the gateway could not
    /// act): a creation leaves no resource, a confirmation or cancellation leaves the payment
    /// `reserved`. A retry may succeed.
    NotApplied,
    /// The OCS may or may not have applied it: the resource stays `processing` until a GET or
    /// a retry with the same key learns the outcome (never reported as done nor as refused).
    Unknown,
    /// The reservation behind a two-step payment no longer exists (expired, released, unknown
    /// to the OCS): the payment is `cancelled`.
    ReservationEnded,
}

/// Result-Codes that say the gateway's own request was malformed or could not be handled:
/// never the client's fault (its input is validated first).
fn gateway_fault(rc: u32) -> bool {
    crate::charging::outcome::malformed_code(rc) || rc == 5012
}

/// What `f` means for the resource of `step`. One exhaustive match, next to [`from_failure`].
pub fn effect(step: Step, f: &Failure) -> Effect {
    match f {
        Failure::Invalid { .. }
        | Failure::KeyReused { .. }
        | Failure::ExceedsReservation { .. }
        | Failure::CurrencyMismatch { .. } => Effect::NotApplied,
        Failure::ReservationUnknown { .. } | Failure::ReservationClosed { .. } => match step {
            Step::Confirm | Step::Cancel => Effect::ReservationEnded,
            _ => Effect::NotApplied,
        },
        Failure::ReservationGone { .. } => match step {
            Step::Confirm | Step::Cancel => Effect::ReservationEnded,
            _ => Effect::Refused,
        },
        Failure::ReservationBusy { .. }
        | Failure::TooManyReservations
        | Failure::Unavailable { .. }
        | Failure::ProtocolError { .. }
        | Failure::NotReserved { .. } => Effect::NotApplied,
        Failure::Denied { .. }
        | Failure::UnknownUser
        | Failure::RatingFailed { .. }
        | Failure::PartialGrant { .. } => Effect::Refused,
        Failure::OcsError { result_code, .. } => {
            if gateway_fault(*result_code) || (4000..5000).contains(result_code) {
                Effect::NotApplied
            } else {
                Effect::Refused
            }
        }
        Failure::OutcomeUnknown { .. } | Failure::InProgress { .. } | Failure::Store { .. } => {
            Effect::Unknown
        }
        Failure::SplitFailed { cause, .. } => effect(step, cause),
    }
}

/// The answer for a charging failure of `step` (API.md 9.1). One exhaustive match: a new
/// [`Failure`] variant does not compile until it is mapped here (and in the table test).
///
/// Failures whose [`effect`] is [`Effect::Unknown`] are mapped too (504 TIMEOUT, 409 ABORTED,
/// 500 INTERNAL), but the handlers answer them with the resource in `processing` (201 for a
/// creation, 202 for a confirmation or cancellation) instead: something was sent and a
/// resource exists, whose outcome a GET or a retry with the same key learns.
pub fn from_failure(step: Step, f: &Failure) -> CamaraError {
    use StatusCode as S;
    let refund = step == Step::Refund;
    let denied = |detail: String| {
        if refund {
            CamaraError::new(
                S::FORBIDDEN,
                code::REFUND_DENIED,
                format!("Refund denied by business. {detail}"),
            )
        } else if step == Step::Cancel {
            CamaraError::permission(detail)
        } else {
            CamaraError::new(
                S::FORBIDDEN,
                code::PAYMENT_DENIED,
                format!("Payment denied by business. {detail}"),
            )
        }
    };
    let unauthorized_amount = |detail: String| {
        if refund {
            CamaraError::new(
                S::UNPROCESSABLE_ENTITY,
                code::REFUND_UNAUTHORIZED_AMOUNT,
                format!("Unauthorized amount requested. {detail}"),
            )
        } else {
            CamaraError::new(
                S::UNPROCESSABLE_ENTITY,
                code::UNAUTHORIZED_AMOUNT,
                format!("Unauthorized amount requested. {detail}"),
            )
        }
    };
    let cancelled = |detail: String| {
        CamaraError::new(
            S::CONFLICT,
            code::PAYMENT_CANCELLED,
            format!("Payment has been cancelled. {detail}"),
        )
    };
    let ocs = |name: &str, rc: u32| format!("The OCS answered {name} ({rc}).");
    match f {
        Failure::Invalid { field, reason } => CamaraError::invalid(format!("{field}: {reason}")),
        Failure::KeyReused { .. } => CamaraError::new(
            S::BAD_REQUEST,
            code::INVALID_ARGUMENT,
            "clientCorrelator already exist on server.",
        ),
        Failure::ReservationUnknown { .. } | Failure::ReservationClosed { .. } => match step {
            Step::Confirm | Step::Cancel => {
                cancelled("Its reservation has ended (expired or released).".into())
            }
            _ => CamaraError::internal(format!("unexpected reservation state: {f}")),
        },
        Failure::ReservationGone { .. } => match step {
            Step::Confirm | Step::Cancel => {
                cancelled("The OCS no longer knows its reservation (5002).".into())
            }
            _ => CamaraError::internal(format!("unexpected answer: {f}")),
        },
        Failure::ReservationBusy { .. } => CamaraError::new(
            S::CONFLICT,
            code::ABORTED,
            "Concurrency conflict. Another operation on this payment is in progress; retry.",
        )
        .retry(),
        Failure::ExceedsReservation { .. } => unauthorized_amount(f.to_string()),
        Failure::CurrencyMismatch { .. } => CamaraError::currency(f),
        Failure::TooManyReservations => CamaraError::unavailable(format!("{f}.")),
        Failure::Denied {
            result_code: 4012,
            name,
        } if refund => CamaraError::new(
            S::UNPROCESSABLE_ENTITY,
            code::REFUND_USER_AMOUNT_THRESHOLD_OVERPASSED,
            format!(
                "Unauthorized refund request. Accumulated user mobile payments overpass account \
                 amount threshold. {}",
                ocs(name, 4012)
            ),
        ),
        Failure::Denied { result_code, name } => denied(ocs(name, *result_code)),
        Failure::UnknownUser if refund => CamaraError::new(
            S::FORBIDDEN,
            code::PAYMENT_NOT_ELIGIBLE_FOR_REFUND,
            "Payment not eligible for refund. The OCS does not know the phone number (5030).",
        ),
        Failure::UnknownUser => CamaraError::new(
            S::NOT_FOUND,
            code::IDENTIFIER_NOT_FOUND,
            "phoneNumber not found. The OCS does not know it (5030).",
        ),
        Failure::RatingFailed { currency: true } => {
            CamaraError::currency("The OCS could not rate it in this currency (5031).")
        }
        Failure::RatingFailed { currency: false } if refund => {
            unauthorized_amount("The OCS could not rate it (5031).".into())
        }
        Failure::RatingFailed { currency: false } => CamaraError::new(
            S::UNPROCESSABLE_ENTITY,
            code::SERVICE_NOT_APPLICABLE,
            "The service is not available for the provided identifier. The OCS could not rate \
             it (5031).",
        ),
        Failure::PartialGrant { .. } => denied(format!("{f}.")),
        Failure::OcsError { result_code, .. } if gateway_fault(*result_code) => {
            CamaraError::internal(format!(
                "The OCS could not process the gateway's request: {}; nothing was charged, and \
                 the same request will be refused again until the gateway's configuration \
                 changes.",
                f.to_string().trim_start_matches("the OCS answered ")
            ))
        }
        Failure::OcsError {
            result_code: 4001,
            name,
            ..
        } => CamaraError::permission(ocs(name, 4001)),
        Failure::OcsError {
            result_code, name, ..
        } if (4000..5000).contains(result_code) => CamaraError::unavailable(format!(
            "{} Nothing was charged; retry.",
            ocs(name, *result_code)
        )),
        Failure::OcsError {
            result_code, name, ..
        } => denied(ocs(name, *result_code)),
        Failure::Unavailable { reason } => CamaraError::unavailable(format!(
            "No OCS available ({reason}); nothing was sent: retry."
        )),
        Failure::ProtocolError { .. } | Failure::NotReserved { .. } => {
            CamaraError::unavailable(format!("{f}: retry."))
        }
        Failure::OutcomeUnknown { reason, .. } => CamaraError::new(
            S::GATEWAY_TIMEOUT,
            code::TIMEOUT,
            format!(
                "Request timeout exceeded. The outcome is unknown ({reason}); retry with the same \
                 clientCorrelator, or read the resource, to learn it."
            ),
        ),
        Failure::InProgress { .. } => CamaraError::new(
            S::CONFLICT,
            code::ABORTED,
            "Concurrency conflict. An identical request is still in progress; retry.",
        )
        .retry(),
        Failure::SplitFailed { cause, .. } => from_failure(step, cause),
        Failure::Store { reason } => CamaraError::internal(format!(
            "The gateway could not record the operation ({reason}); the outcome is unknown: \
             retry with the same clientCorrelator, or read the resource, to learn it."
        )),
    }
}
