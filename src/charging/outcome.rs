//! What a charging operation ends in, family-independent: [`Done`] or a [`Failure`] that says
//! exactly what happened to the money. Both are stored (JSON) with the operation, so that a
//! retry with the same key is answered with the first outcome, word for word.

use serde::{Deserialize, Serialize};

use crate::credit_control::Outcome;
use crate::diameter::codec::{AvpCode, ResultCode};

/// The OCS agreed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub operation_id: String,
    /// Session-Id of the (last) CCR, for disputes; empty when none was needed.
    pub session_id: String,
    /// The effective Result-Code (2001, 2002, or 4011 when the OCS does not charge it).
    pub result_code: u32,
    /// The reservation created or used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// True when this is the stored outcome of an earlier identical request.
    #[serde(skip)]
    pub replayed: bool,
}

/// Why an operation did not succeed, and what that means for the money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "failure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    // ---- refused by the gateway: nothing sent, nothing charged --------------------------
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("the key \"{key}\" was already used for a different request")]
    KeyReused { key: String },
    #[error("unknown reservation \"{id}\"")]
    ReservationUnknown { id: String },
    #[error("reservation \"{id}\" is {state}")]
    ReservationClosed { id: String, state: String },
    #[error("reservation \"{id}\" is busy with another operation; retry")]
    ReservationBusy { id: String },
    #[error("the amount {requested} exceeds the {remaining} left in the reservation")]
    ExceedsReservation {
        requested: String,
        remaining: String,
    },
    #[error("currency {given} differs from the reservation's {expected}")]
    CurrencyMismatch { given: String, expected: String },
    #[error("too many open reservations; retry later")]
    TooManyReservations,
    // ---- refused by the OCS: nothing charged ---------------------------------------------
    #[error("{name} ({result_code})")]
    Denied { result_code: u32, name: String },
    #[error("the end user is unknown to the OCS (5030)")]
    UnknownUser,
    #[error("the OCS could not rate the request (5031){}", if *currency { ": currency not accepted" } else { "" })]
    RatingFailed { currency: bool },
    #[error("the reservation no longer exists at the OCS (5002)")]
    ReservationGone { id: String },
    #[error("the OCS granted {granted} of {requested}; nothing is reserved")]
    PartialGrant { granted: String, requested: String },
    #[error(
        "the OCS answered {name} ({result_code}){}",
        ocs_detail(failed_avp, error_message, hint)
    )]
    OcsError {
        result_code: u32,
        name: String,
        /// The Failed-AVP of the answer, by dictionary name (RFC 6733 section 7.5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_avp: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_message: Option<String>,
        /// What the operator can change (the refusal is the gateway's configuration's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    // ---- nothing reached a credit-control server: retry -----------------------------------
    #[error("no OCS available: {reason}")]
    Unavailable { reason: String },
    #[error(
        "Diameter protocol error {name} ({result_code}); no credit-control server processed it"
    )]
    ProtocolError { result_code: u32, name: String },
    #[error("no answer from the OCS in time ({reason}); nothing is reserved")]
    NotReserved { reason: String },
    // ---- the outcome is not known: never success, never "not charged" ---------------------
    #[error("outcome unknown ({reason}); retry with the same key to learn it")]
    OutcomeUnknown {
        operation_id: String,
        reason: String,
    },
    #[error("an identical request is still in progress; retry")]
    InProgress { operation_id: String },
    // ---- split charges ---------------------------------------------------------------------
    #[error("{}", split_text(leg, subscriber, cause, refunded, unresolved))]
    SplitFailed {
        /// Index of the leg that failed.
        leg: usize,
        subscriber: String,
        cause: Box<Failure>,
        /// Legs charged and then refunded.
        refunded: Vec<String>,
        /// Legs charged whose refund is not confirmed yet (kept for resolution).
        unresolved: Vec<String>,
    },
    // ---- gateway fault -------------------------------------------------------------------
    #[error("the gateway could not record the operation: {reason}")]
    Store { reason: String },
}

fn ocs_detail(
    failed_avp: &Option<String>,
    error_message: &Option<String>,
    hint: &Option<String>,
) -> String {
    let mut s = String::new();
    if let Some(a) = failed_avp {
        s.push_str(&format!(", Failed-AVP {a}"));
    }
    if let Some(m) = error_message {
        s.push_str(&format!(", Error-Message \"{}\"", m.escape_debug()));
    }
    if let Some(h) = hint {
        s.push_str(&format!(" ({h})"));
    }
    s
}

fn split_text(
    leg: &usize,
    subscriber: &str,
    cause: &Failure,
    refunded: &[String],
    unresolved: &[String],
) -> String {
    let mut s = format!("leg {leg} ({subscriber}) failed: {cause}");
    if !refunded.is_empty() {
        s.push_str(&format!("; refunded: {}", refunded.join(", ")));
    }
    if !unresolved.is_empty() {
        s.push_str(&format!(
            "; refund not yet confirmed (being retried): {}",
            unresolved.join(", ")
        ));
    }
    if refunded.is_empty() && unresolved.is_empty() {
        s.push_str("; nothing was charged");
    }
    s
}

impl Failure {
    /// An OCS refusal with nothing more than its Result-Code.
    pub fn ocs_error(result_code: u32) -> Self {
        Self::OcsError {
            result_code,
            name: result_name(result_code),
            failed_avp: None,
            error_message: None,
            hint: None,
        }
    }

    /// Nothing reached a credit-control server: a retry with the same key starts afresh.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::ProtocolError { .. }
                | Self::NotReserved { .. }
                | Self::ReservationBusy { .. }
                | Self::TooManyReservations
                | Self::InProgress { .. }
                | Self::Store { .. }
        )
    }

    /// The OCS may or may not have applied it.
    pub fn is_unknown(&self) -> bool {
        match self {
            Self::OutcomeUnknown { .. } => true,
            Self::SplitFailed { cause, .. } => cause.is_unknown(),
            _ => false,
        }
    }

    /// The Result-Code behind it, when the OCS answered.
    pub fn result_code(&self) -> Option<u32> {
        match self {
            Self::Denied { result_code, .. }
            | Self::OcsError { result_code, .. }
            | Self::ProtocolError { result_code, .. } => Some(*result_code),
            Self::UnknownUser => Some(5030),
            Self::RatingFailed { .. } => Some(5031),
            Self::ReservationGone { .. } => Some(5002),
            Self::SplitFailed { cause, .. } => cause.result_code(),
            _ => None,
        }
    }

    /// The OCS refused the request as malformed ([`malformed_code`]): the gateway's request,
    /// or its configuration, is at fault, never the API caller's; the same request again
    /// will be refused again.
    pub fn is_malformed_request(&self) -> bool {
        match self {
            Self::OcsError { result_code, .. } => malformed_code(*result_code),
            Self::SplitFailed { cause, .. } => cause.is_malformed_request(),
            _ => false,
        }
    }

    /// The Diameter name of the Result-Code, for error texts.
    pub fn result_name(&self) -> Option<String> {
        self.result_code().map(result_name)
    }
}

/// The Result-Codes by which a server says a request was malformed (RFC 6733 section 7.1.5):
/// 5001 AVP_UNSUPPORTED, 5004 INVALID_AVP_VALUE, 5005 MISSING_AVP, 5008 AVP_NOT_ALLOWED,
/// 5009 AVP_OCCURS_TOO_MANY_TIMES, 5014 INVALID_AVP_LENGTH, 5015 INVALID_MESSAGE_LENGTH,
/// 5016 INVALID_AVP_BIT_COMBO.
pub fn malformed_code(rc: u32) -> bool {
    matches!(rc, 5001 | 5004 | 5005 | 5008 | 5009 | 5014 | 5015 | 5016)
}

/// `DIAMETER_CREDIT_LIMIT_REACHED` for 4012; the number for a code without a name.
pub fn result_name(code: u32) -> String {
    ResultCode(code)
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| code.to_string())
}

/// The result every operation ends in.
pub type OpResult = Result<Done, Failure>;

/// Maps a credit-control outcome onto the charging result.
pub(crate) fn from_outcome(
    outcome: Outcome,
    operation_id: &str,
    session_id: &str,
    reservation_id: Option<&str>,
    requested: Option<String>,
) -> OpResult {
    let named = |rc: ResultCode| (rc.0, result_name(rc.0));
    match outcome {
        Outcome::Success(a) | Outcome::NotApplicable(a) => Ok(Done {
            operation_id: operation_id.to_string(),
            session_id: session_id.to_string(),
            result_code: a.effective_result().0,
            reservation_id: reservation_id.map(str::to_string),
            replayed: false,
        }),
        Outcome::Denied(rc) => {
            let (result_code, name) = named(rc);
            Err(Failure::Denied { result_code, name })
        }
        Outcome::UnknownUser => Err(Failure::UnknownUser),
        Outcome::RatingFailed { failed_avp } => Err(Failure::RatingFailed {
            currency: failed_avp
                .is_some_and(|c| c == AvpCode::CC_MONEY.0 || c == AvpCode::CURRENCY_CODE.0),
        }),
        Outcome::UnknownSession => Err(Failure::ReservationGone {
            id: reservation_id.unwrap_or_default().to_string(),
        }),
        Outcome::ProtocolError(rc) => {
            let (result_code, name) = named(rc);
            Err(Failure::ProtocolError { result_code, name })
        }
        Outcome::Unavailable(reason) => Err(Failure::Unavailable { reason }),
        Outcome::PartialGrant { granted } => Err(Failure::PartialGrant {
            granted: granted.to_string(),
            requested: requested.unwrap_or_default(),
        }),
        Outcome::Unknown { reason, .. } => Err(Failure::OutcomeUnknown {
            operation_id: operation_id.to_string(),
            reason,
        }),
        Outcome::Failed(rc) => Err(Failure::ocs_error(rc.0)),
        Outcome::Refused(r) => Err(Failure::OcsError {
            result_code: r.result.0,
            name: result_name(r.result.0),
            failed_avp: r.failed_avp,
            error_message: r.error_message,
            hint: None,
        }),
        // `Outcome` is non-exhaustive: anything new is reported as an OCS error, not success.
        #[allow(unreachable_patterns)]
        other => Err(Failure::OcsError {
            result_code: other.result_code().map(|r| r.0).unwrap_or_default(),
            name: other.to_string(),
            failed_avp: None,
            error_message: None,
            hint: None,
        }),
    }
}
