//! The OCSG error model (seed 002, API.md 4.4 and 9.3): Parlay X ServiceException and
//! PolicyException bodies, their HTTP statuses, and the one mapping of every charging
//! [`Failure`] onto them ([`from_failure`]).
//!
//! ```text
//! {"error": {"type": "org.csapi.schema.parlayx.common.v3_1.ServiceException",
//!            "message": "SVC0270: charge failed: DIAMETER_CREDIT_LIMIT_REACHED (4012)"}}
//!                        ^^^^^^^ Parlay X message id first, so that clients can branch on it
//! ```

use std::fmt;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::payment::Operation;
use crate::charging::Failure;

/// `error.type` of a ServiceException.
pub const SERVICE_EXCEPTION: &str = "org.csapi.schema.parlayx.common.v3_1.ServiceException";
/// `error.type` of a PolicyException.
pub const POLICY_EXCEPTION: &str = "org.csapi.schema.parlayx.common.v3_1.PolicyException";

/// The Parlay X message ids the facade answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageId {
    /// Service error: the gateway or the OCS cannot serve the request now (or authentication).
    Svc0001,
    /// Invalid input value (the field is named in the message).
    Svc0002,
    /// Invalid charging information (amount, currency, code).
    Svc0007,
    /// Charge failed: the OCS refused it.
    Svc0270,
    /// Policy error: the application's policy forbids it.
    Pol0001,
    /// Transaction expired or invalid: the reservation is closed or unknown to the OCS.
    Pol2011,
}

impl MessageId {
    pub fn code(self) -> &'static str {
        match self {
            Self::Svc0001 => "SVC0001",
            Self::Svc0002 => "SVC0002",
            Self::Svc0007 => "SVC0007",
            Self::Svc0270 => "SVC0270",
            Self::Pol0001 => "POL0001",
            Self::Pol2011 => "POL2011",
        }
    }

    /// The Parlay X text of the id.
    pub fn text(self) -> &'static str {
        match self {
            Self::Svc0001 => "service error",
            Self::Svc0002 => "invalid input value",
            Self::Svc0007 => "invalid charging information",
            Self::Svc0270 => "charge failed",
            Self::Pol0001 => "policy error",
            Self::Pol2011 => "transaction expired or invalid",
        }
    }

    /// `error.type` of the exception the id belongs to.
    pub fn exception(self) -> &'static str {
        match self {
            Self::Svc0001 | Self::Svc0002 | Self::Svc0007 | Self::Svc0270 => SERVICE_EXCEPTION,
            Self::Pol0001 | Self::Pol2011 => POLICY_EXCEPTION,
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The OCSG error body, exactly as the seed gives it: a Parlay X ServiceException or
/// PolicyException (`error.type`), its message starting with the message id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {
    "type": "org.csapi.schema.parlayx.common.v3_1.ServiceException",
    "message": "SVC0270: charge failed: DIAMETER_CREDIT_LIMIT_REACHED (4012)"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A ServiceException or PolicyException.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `org.csapi.schema.parlayx.common.v3_1.ServiceException` or `...PolicyException`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The Parlay X message id, its text, then the details: `SVC0002: invalid input value:
    /// endUserIdentifier: ...`.
    pub message: String,
}

/// An error answer: status, Parlay X id, message, and the headers it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: MessageId,
    pub message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// `"<ID>: <id text>: <detail>"`.
    pub fn new(status: StatusCode, id: MessageId, detail: impl fmt::Display) -> Self {
        Self::titled(status, id, id.text(), detail)
    }

    /// As [`ApiError::new`] with another text after the id (`SVC0270: refund failed: ...`).
    pub fn titled(
        status: StatusCode,
        id: MessageId,
        title: &str,
        detail: impl fmt::Display,
    ) -> Self {
        Self {
            status,
            id,
            message: format!("{}: {title}: {detail}", id.code()),
            headers: Vec::new(),
        }
    }

    /// 400 SVC0002 naming the field.
    pub fn invalid(field: &str, reason: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            MessageId::Svc0002,
            format!("{field}: {reason}"),
        )
    }

    /// 400 SVC0007 naming the field of the charging information.
    pub fn charging_info(field: &str, reason: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            MessageId::Svc0007,
            format!("{field}: {reason}"),
        )
    }

    /// 403 POL0001: the application's policy forbids it.
    pub fn policy(reason: impl fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, MessageId::Pol0001, reason)
    }

    /// 401 ServiceException SVC0001 with the Basic challenge (the PolicyException is kept for
    /// policy: an unauthenticated caller has no policy yet).
    pub fn unauthorized(reason: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            MessageId::Svc0001,
            format!("authentication required: {reason}"),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"payment\""),
        )
    }

    /// 503 SVC0001 with `Retry-After`.
    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, MessageId::Svc0001, detail).retry_after()
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    fn retry_after(self) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.id.exception().to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), message = %self.message, "request failed");
        } else {
            tracing::info!(status = self.status.as_u16(), message = %self.message, "request refused");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            res.headers_mut().append(name, value);
        }
        res
    }
}

/// The answer for a charging [`Failure`] of `op` (API.md 9.3). One exhaustive match: a new
/// variant does not compile until it is mapped here (and in the table test).
pub fn from_failure(op: Operation, f: &Failure) -> ApiError {
    use MessageId::*;
    let key = op.key_name();
    match f {
        Failure::Invalid { field, reason } => ApiError::invalid(field, reason),
        Failure::KeyReused { key: k } => ApiError::new(
            StatusCode::CONFLICT,
            Svc0002,
            format!(
                "{key}: \"{}\" was already used for a different request",
                clip(k)
            ),
        ),
        Failure::ReservationUnknown { id } => ApiError::invalid(
            "reservationIdentifier",
            format!("no reservation \"{}\" of this application", clip(id)),
        ),
        Failure::ReservationClosed { id, state } => ApiError::new(
            StatusCode::BAD_REQUEST,
            Pol2011,
            format!("reservationIdentifier: reservation \"{id}\" is {state}"),
        ),
        Failure::ReservationBusy { id } => ApiError::new(
            StatusCode::CONFLICT,
            Svc0001,
            format!("reservation \"{id}\" is busy with another operation; retry"),
        )
        .retry_after(),
        Failure::ExceedsReservation { .. } | Failure::CurrencyMismatch { .. } => {
            ApiError::charging_info("charge", f)
        }
        Failure::TooManyReservations => ApiError::unavailable(f),
        Failure::Denied { .. } | Failure::PartialGrant { .. } => {
            ApiError::titled(StatusCode::BAD_REQUEST, Svc0270, op.failed(), f)
        }
        Failure::UnknownUser => ApiError::invalid(op.end_user_field(), f),
        Failure::RatingFailed { .. } => ApiError::charging_info("charge", f),
        Failure::ReservationGone { id } => ApiError::new(
            StatusCode::BAD_REQUEST,
            Pol2011,
            format!(
                "reservationIdentifier: reservation \"{id}\" no longer exists at the OCS (5002)"
            ),
        ),
        Failure::OcsError { .. } if f.is_malformed_request() => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Svc0001,
            format!(
                "the OCS refused the gateway's request as malformed: {f}; nothing was charged, \
                 and the same request will be refused again until the gateway's configuration \
                 changes"
            ),
        ),
        Failure::OcsError {
            result_code: 4002 | 4003,
            ..
        } => ApiError::unavailable(format!("{f}; retry")),
        Failure::OcsError { .. } => {
            ApiError::titled(StatusCode::BAD_REQUEST, Svc0270, op.failed(), f)
        }
        Failure::Unavailable { reason } => ApiError::unavailable(format!(
            "no OCS available ({reason}); nothing was sent: retry"
        )),
        Failure::ProtocolError { .. } | Failure::NotReserved { .. } => {
            ApiError::unavailable(format!("{f}: retry"))
        }
        Failure::OutcomeUnknown { reason, .. } => {
            ApiError::unavailable(unknown_outcome(op, reason))
        }
        Failure::InProgress { .. } => ApiError::new(
            StatusCode::CONFLICT,
            Svc0001,
            format!("an identical request is still in progress; retry with the same {key}"),
        )
        .retry_after(),
        Failure::SplitFailed { leg, cause, .. } => {
            // Status and id follow the leg's own failure; the text says which leg failed and
            // what was refunded.
            let inner = from_failure(op, cause);
            let field = match inner.id {
                Svc0002 if matches!(**cause, Failure::UnknownUser) => {
                    format!("splitInfo[{leg}].endUserIdentifier: ")
                }
                _ => String::new(),
            };
            let title = match inner.id {
                Svc0270 => op.failed(),
                other => other.text(),
            };
            ApiError {
                message: format!("{}: {title}: {field}{f}", inner.id.code()),
                ..inner
            }
        }
        Failure::Store { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Svc0001,
            format!("{f}; the outcome is unknown: retry with the same {key} to learn it"),
        ),
    }
}

/// The text of an unknown outcome: never "charged", never "not charged".
pub fn unknown_outcome(op: Operation, reason: &str) -> String {
    format!(
        "the outcome is unknown ({reason}); retry with the same {} to learn it",
        op.key_name()
    )
}

/// A user-given value, shortened for an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(MAX).collect();
        c.push_str("...");
        c
    }
}
