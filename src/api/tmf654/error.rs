//! The TMF Error model (TMF630 / TMF654 v4: `{code, reason, message, status, @type}`) and the
//! one mapping of every charging [`Failure`] onto a top-up's status or an error answer
//! ([`from_failure`]), API.md 9.4, recommended column.
//!
//! ```text
//! {"code": "5030", "reason": "DIAMETER_USER_UNKNOWN", "status": "400", "@type": "Error",
//!  "message": "logicalResource: the subscriber 34671999000 is unknown to the OCS; nothing was topped up"}
//!   code    a Diameter Result-Code when the OCS gave one, else a gateway code (INVALID_ARGUMENT, ...)
//!   status  the HTTP status, as text (TMF630)
//! ```

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::charging::Failure;

/// The media type of every TMF654 answer.
pub const MEDIA_TYPE: &str = "application/json;charset=utf-8";

/// A TMF error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "INVALID_ARGUMENT", "reason": "invalid argument",
    "message": "amount.units: \"EUX\" is not an ISO 4217 currency code", "status": "400",
    "@type": "Error"}))]
pub struct TmfError {
    /// A Diameter Result-Code (`"5030"`) when the OCS gave one, else one of INVALID_ARGUMENT,
    /// UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, CONFLICT, IN_PROGRESS, INVALID_STATE,
    /// PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, NOT_IMPLEMENTED, INTERNAL, UNAVAILABLE,
    /// TIMEOUT (408: the request body did not arrive in time).
    pub code: String,
    /// Short text: the Diameter result name, or what the code means.
    pub reason: String,
    /// What is wrong (the field named) and what happened to the money.
    pub message: String,
    /// The HTTP status, as text.
    pub status: String,
    #[serde(rename = "@type")]
    pub kind: String,
}

impl TmfError {
    pub fn new(
        status: StatusCode,
        code: impl Into<String>,
        reason: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            code: code.into(),
            reason: reason.into(),
            message: message.to_string(),
            status: status.as_u16().to_string(),
            kind: "Error".into(),
        }
    }

    pub fn http_status(&self) -> StatusCode {
        self.status
            .parse::<u16>()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400 INVALID_ARGUMENT naming the field.
    pub fn invalid(field: &str, why: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "invalid argument",
            format!("{field}: {why}"),
        )
    }

    /// 501: understood, and not something RFC 4006 credit-control can do here.
    pub fn not_implemented(field: &str, why: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            "not implemented",
            format!("{field}: {why}"),
        )
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not found", what)
    }

    pub fn conflict(code: &str, what: impl fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, code, "conflict", what)
    }

    pub fn policy(what: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "forbidden by the application's policy",
            what,
        )
    }

    pub fn unauthenticated(what: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "authentication required",
            what,
        )
    }

    pub fn internal(what: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
            what,
        )
    }

    pub fn unavailable(what: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "service unavailable",
            what,
        )
    }
}

impl fmt::Display for TmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.status, self.code, self.message)
    }
}

impl IntoResponse for TmfError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), code = %self.code, message = %self.message, "request refused");
        }
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
            body,
        )
            .into_response();
        // The headers follow from the status (so that a stored error answers the same).
        let h = res.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tmf654\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

/// What a charging call is for: the same [`Failure`] means different things to a top-up and
/// to a balance query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A top-up (CCR EVENT, REFUND_ACCOUNT).
    Topup,
    /// A balance sufficiency query (CCR EVENT, CHECK_BALANCE): nothing moves.
    BalanceQuery,
}

/// What becomes of a top-up (or a query) after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// The OCS refused it; nothing was topped up: `status: failed` with `reason`, answered
    /// 201 (the recommended column of API.md 9.4), or with `error` when the refusal is the
    /// client's input (5030, 5031: 400).
    Failed {
        reason: String,
        error: Option<TmfError>,
        /// Also stop an automatic top-up's later periods (the subscriber or currency will not
        /// become valid by waiting).
        permanent: bool,
    },
    /// The outcome is not known (no answer in time, connection lost after sending, or an
    /// identical request still in flight): `status: created`, never completed; resolved
    /// through the charging layer's idempotency (GET, background task).
    Pending { reason: String },
    /// Nothing reached a credit-control server: `status: created`, retried by the
    /// background task with the same key (`tmf654.retry_window`), then failed.
    Retry { reason: String },
    /// An error answer; the top-up is left as it is.
    Error(TmfError),
}

fn diameter(f: &Failure) -> (String, String) {
    match f.result_code() {
        Some(rc) => (rc.to_string(), crate::charging::result_name(rc)),
        None => (String::new(), String::new()),
    }
}

/// The one mapping of every charging [`Failure`] (API.md 9.4, recommended column). A new
/// variant does not compile until it is mapped here and in the table test.
pub fn from_failure(ctx: Context, f: &Failure) -> Mapped {
    let top = ctx == Context::Topup;
    let failed = |reason: String| Mapped::Failed {
        reason,
        error: None,
        permanent: false,
    };
    let with_code = |status: StatusCode, message: String| {
        let (code, reason) = diameter(f);
        Mapped::Error(TmfError::new(status, code, reason, message))
    };
    let nothing = if top {
        "nothing was topped up"
    } else {
        "a balance query moves no money"
    };
    match f {
        Failure::Invalid { field, reason } => Mapped::Error(TmfError::invalid(field, reason)),
        Failure::KeyReused { .. } => Mapped::Error(TmfError::conflict(
            "CONFLICT",
            "Idempotency-Key: already used for a different request; nothing was topped up",
        )),
        // Reservations are never part of a top-up or a query: reaching these is a gateway
        // fault, reported as such (nothing was topped up by them).
        Failure::ReservationUnknown { .. }
        | Failure::ReservationClosed { .. }
        | Failure::ExceedsReservation { .. }
        | Failure::CurrencyMismatch { .. }
        | Failure::ReservationGone { .. }
        | Failure::PartialGrant { .. } => {
            Mapped::Error(TmfError::internal(format!("unexpected outcome: {f}")))
        }
        Failure::ReservationBusy { .. } | Failure::TooManyReservations => {
            Mapped::Error(TmfError::unavailable(format!("{f}; {nothing}: retry")))
        }
        Failure::Denied { name, result_code } => match ctx {
            Context::Topup => failed(format!("{name} ({result_code})")),
            Context::BalanceQuery => with_code(
                StatusCode::FORBIDDEN,
                format!("the OCS refused the balance query: {f}"),
            ),
        },
        Failure::UnknownUser => {
            let error = TmfError::new(
                if top {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NOT_FOUND
                },
                "5030",
                "DIAMETER_USER_UNKNOWN",
                format!("logicalResource: the subscriber is unknown to the OCS (5030); {nothing}"),
            );
            match ctx {
                Context::Topup => Mapped::Failed {
                    reason: "DIAMETER_USER_UNKNOWN (5030)".into(),
                    error: Some(error),
                    permanent: true,
                },
                Context::BalanceQuery => Mapped::Error(error),
            }
        }
        Failure::RatingFailed { currency } => {
            let what = if *currency {
                "amount.units: the OCS does not accept this currency for the subscriber's account"
            } else {
                "amount: the OCS could not rate the request"
            };
            let error = TmfError::new(
                StatusCode::BAD_REQUEST,
                "5031",
                "DIAMETER_RATING_FAILED",
                format!("{what} (5031); {nothing}"),
            );
            match ctx {
                Context::Topup => Mapped::Failed {
                    reason: "DIAMETER_RATING_FAILED (5031)".into(),
                    error: Some(error),
                    permanent: true,
                },
                Context::BalanceQuery => Mapped::Error(error),
            }
        }
        Failure::OcsError { result_code, .. } if f.is_malformed_request() => {
            let message = format!(
                "the OCS refused the gateway's request as malformed: {f}; the same request will \
                 be refused again until the gateway's configuration changes"
            );
            match ctx {
                Context::Topup => Mapped::Failed {
                    reason: format!("{f}"),
                    error: Some(TmfError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        result_code.to_string(),
                        crate::charging::result_name(*result_code),
                        format!("{message}; {nothing}"),
                    )),
                    permanent: false,
                },
                Context::BalanceQuery => with_code(StatusCode::INTERNAL_SERVER_ERROR, message),
            }
        }
        Failure::OcsError {
            name, result_code, ..
        } => match ctx {
            Context::Topup => failed(format!("{name} ({result_code})")),
            Context::BalanceQuery => with_code(
                StatusCode::BAD_GATEWAY,
                format!("the OCS answered {name} ({result_code})"),
            ),
        },
        Failure::Unavailable { .. }
        | Failure::ProtocolError { .. }
        | Failure::NotReserved { .. } => match ctx {
            Context::Topup => Mapped::Retry {
                reason: format!("{f}; nothing was topped up yet: the gateway retries"),
            },
            Context::BalanceQuery => Mapped::Error(TmfError::unavailable(format!("{f}; retry"))),
        },
        Failure::OutcomeUnknown { reason, .. } => match ctx {
            Context::Topup => Mapped::Pending {
                reason: format!(
                    "outcome unknown ({reason}): the gateway learns it from the OCS; never \
                     reported completed until the OCS confirms"
                ),
            },
            Context::BalanceQuery => Mapped::Error(TmfError::unavailable(format!(
                "no answer from the OCS ({reason}); {nothing}: retry"
            ))),
        },
        Failure::InProgress { .. } => match ctx {
            Context::Topup => Mapped::Pending {
                reason: "an identical request is still in progress".into(),
            },
            Context::BalanceQuery => {
                Mapped::Error(TmfError::unavailable(format!("{f}; {nothing}")))
            }
        },
        // Not produced for one event; its cause decides.
        Failure::SplitFailed { cause, .. } => from_failure(ctx, cause),
        Failure::Store { .. } => Mapped::Error(TmfError::internal(format!(
            "{f}; the outcome is unknown: retry with the same Idempotency-Key, or read the \
             top-up, to learn it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(m: &Mapped) -> String {
        match m {
            Mapped::Failed { error: Some(e), .. } => format!("failed+{}", e.status),
            Mapped::Failed { error: None, .. } => "failed".into(),
            Mapped::Pending { .. } => "created".into(),
            Mapped::Retry { .. } => "retry".into(),
            Mapped::Error(e) => e.status.clone(),
        }
    }

    fn code(m: &Mapped) -> String {
        match m {
            Mapped::Failed { error: Some(e), .. } | Mapped::Error(e) => e.code.clone(),
            _ => String::new(),
        }
    }

    /// Every variant, with what a top-up and a balance query answer. A new variant must be
    /// added here (and to `from_failure`, which does not compile without it).
    #[test]
    fn every_failure_maps_as_documented() {
        let s = String::new;
        let table: Vec<(Failure, &str, &str, &str, &str)> = vec![
            // failure, top-up status, top-up code, query status, query code
            (
                Failure::Invalid {
                    field: "amount".into(),
                    reason: "x".into(),
                },
                "400",
                "INVALID_ARGUMENT",
                "400",
                "INVALID_ARGUMENT",
            ),
            (
                Failure::KeyReused { key: "k".into() },
                "409",
                "CONFLICT",
                "409",
                "CONFLICT",
            ),
            (
                Failure::ReservationUnknown { id: s() },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::ReservationClosed {
                    id: s(),
                    state: s(),
                },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::ReservationBusy { id: s() },
                "503",
                "UNAVAILABLE",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::ExceedsReservation {
                    requested: s(),
                    remaining: s(),
                },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::CurrencyMismatch {
                    given: s(),
                    expected: s(),
                },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::TooManyReservations,
                "503",
                "UNAVAILABLE",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::Denied {
                    result_code: 4012,
                    name: "DIAMETER_CREDIT_LIMIT_REACHED".into(),
                },
                "failed",
                "",
                "403",
                "4012",
            ),
            (
                Failure::Denied {
                    result_code: 4010,
                    name: "DIAMETER_END_USER_SERVICE_DENIED".into(),
                },
                "failed",
                "",
                "403",
                "4010",
            ),
            (
                Failure::Denied {
                    result_code: 5003,
                    name: "DIAMETER_AUTHORIZATION_REJECTED".into(),
                },
                "failed",
                "",
                "403",
                "5003",
            ),
            (Failure::UnknownUser, "failed+400", "5030", "404", "5030"),
            (
                Failure::RatingFailed { currency: true },
                "failed+400",
                "5031",
                "400",
                "5031",
            ),
            (
                Failure::RatingFailed { currency: false },
                "failed+400",
                "5031",
                "400",
                "5031",
            ),
            (
                Failure::ReservationGone { id: s() },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::PartialGrant {
                    granted: s(),
                    requested: s(),
                },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
            (
                Failure::ocs_error(5005),
                "failed+500",
                "5005",
                "500",
                "5005",
            ),
            (Failure::ocs_error(5012), "failed", "", "502", "5012"),
            (
                Failure::Unavailable { reason: s() },
                "retry",
                "",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::ProtocolError {
                    result_code: 3002,
                    name: "DIAMETER_UNABLE_TO_DELIVER".into(),
                },
                "retry",
                "",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::NotReserved { reason: s() },
                "retry",
                "",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::OutcomeUnknown {
                    operation_id: s(),
                    reason: "Tx".into(),
                },
                "created",
                "",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::InProgress { operation_id: s() },
                "created",
                "",
                "503",
                "UNAVAILABLE",
            ),
            (
                Failure::SplitFailed {
                    leg: 0,
                    subscriber: s(),
                    cause: Box::new(Failure::UnknownUser),
                    refunded: vec![],
                    unresolved: vec![],
                },
                "failed+400",
                "5030",
                "404",
                "5030",
            ),
            (
                Failure::Store { reason: s() },
                "500",
                "INTERNAL",
                "500",
                "INTERNAL",
            ),
        ];
        for (f, t_status, t_code, q_status, q_code) in &table {
            let t = from_failure(Context::Topup, f);
            assert_eq!(status(&t), *t_status, "top-up {f:?}");
            assert_eq!(code(&t), *t_code, "top-up {f:?}");
            let q = from_failure(Context::BalanceQuery, f);
            assert_eq!(status(&q), *q_status, "query {f:?}");
            assert_eq!(code(&q), *q_code, "query {f:?}");
            // Never "completed" for an unknown outcome; the body is the TMF shape.
            if let Mapped::Error(e) | Mapped::Failed { error: Some(e), .. } = &t {
                let v = serde_json::to_value(e).unwrap();
                let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    ["code", "reason", "message", "status", "@type"],
                    "{v}"
                );
                assert_eq!(v["@type"], "Error");
                assert!(!e.message.is_empty());
            }
        }
        // A failed top-up names the Diameter result in `reason`; 5030 and 5031 also stop an
        // automatic top-up.
        match from_failure(
            Context::Topup,
            &Failure::Denied {
                result_code: 4012,
                name: "DIAMETER_CREDIT_LIMIT_REACHED".into(),
            },
        ) {
            Mapped::Failed {
                reason, permanent, ..
            } => {
                assert_eq!(reason, "DIAMETER_CREDIT_LIMIT_REACHED (4012)");
                assert!(!permanent);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_failure(Context::Topup, &Failure::UnknownUser),
            Mapped::Failed {
                permanent: true,
                ..
            }
        ));
        // Unauthenticated answers carry the Basic challenge.
        let e = TmfError::unauthenticated("x").into_response();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(e.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(e.headers()[header::CONTENT_TYPE], MEDIA_TYPE);
    }
}
