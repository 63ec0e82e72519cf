//! What a Credit-Control exchange means for a charge: the Result-Code classes of RFC 8506 and
//! RFC 6733, each with one documented outcome.
//!
//! | Result-Code | class | outcome |
//! |---|---|---|
//! | 2001, 2002 | success | [`Outcome::Success`]: the OCS agreed (charged, refunded, reserved) |
//! | 4011 CREDIT_CONTROL_NOT_APPLICABLE | success without charging | [`Outcome::NotApplicable`] |
//! | 4010 END_USER_SERVICE_DENIED, 4012 CREDIT_LIMIT_REACHED, 5003 AUTHORIZATION_REJECTED | denied | [`Outcome::Denied`]: nothing charged |
//! | 5030 USER_UNKNOWN | unknown user | [`Outcome::UnknownUser`]: nothing charged |
//! | 5031 RATING_FAILED | rating failed | [`Outcome::RatingFailed`]: nothing charged |
//! | 5002 UNKNOWN_SESSION_ID | unknown session | [`Outcome::UnknownSession`]: the reservation is gone |
//! | other 4xxx / 5xxx | refused | [`Outcome::Refused`]: nothing charged; what the OCS said (Failed-AVP, Error-Message) kept |
//! | 3xxx (E bit), after one retry elsewhere | protocol | [`Outcome::ProtocolError`]: no server processed it |
//! | no peer to send to | unavailable | [`Outcome::Unavailable`]: nothing sent |
//! | 2001 with less money granted than reserved for | partial grant | [`Outcome::PartialGrant`]: released |
//! | Tx expired, connection lost after sending | unknown | [`Outcome::Unknown`]: never reported as charged or as not charged; kept for resolution |

use std::fmt;

use super::message::CreditControlAnswer;
use crate::diameter::codec::ResultCode;
use crate::diameter::dict::Dictionary;

/// What an answer said beyond its Result-Code (RFC 6733 section 7.5), for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub result: ResultCode,
    /// The OCS that answered (its Origin-Host).
    pub origin_host: String,
    /// The Failed-AVP by dictionary name, with what it holds.
    pub failed_avp: Option<String>,
    pub error_message: Option<String>,
    /// The Failed-AVP names a units AVP: the OCS objected to where the units were.
    pub units: bool,
}

impl fmt::Display for Refusal {
    /// `DIAMETER_MISSING_AVP (5005), Failed-AVP Requested-Service-Unit, Error-Message "..."`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.result)?;
        if let Some(a) = &self.failed_avp {
            write!(f, ", Failed-AVP {a}")?;
        }
        if let Some(m) = &self.error_message {
            write!(f, ", Error-Message \"{}\"", m.escape_debug())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// 2001 / 2002: the OCS did what was asked.
    Success(Box<CreditControlAnswer>),
    /// 4011: allowed, and the OCS does not charge it.
    NotApplicable(Box<CreditControlAnswer>),
    /// 4010, 4012, 5003: refused by the OCS; nothing charged.
    Denied(ResultCode),
    /// 5030: the subscriber is unknown to the OCS.
    UnknownUser,
    /// 5031: the OCS could not rate the request (e.g. currency); `failed_avp` names the AVP.
    RatingFailed { failed_avp: Option<u32> },
    /// 5002: the session (reservation) is unknown to the OCS.
    UnknownSession,
    /// Another permanent or transient failure; nothing charged.
    Failed(ResultCode),
    /// Another permanent or transient failure the OCS answered (4xxx, 5xxx), with what its
    /// answer said about it; nothing charged.
    Refused(Box<Refusal>),
    /// A protocol error (3xxx, E bit) that remained after one retry elsewhere: no
    /// credit-control server processed the request.
    ProtocolError(ResultCode),
    /// No usable peer: nothing was sent.
    Unavailable(String),
    /// The OCS granted less than asked for a reservation (or nothing, with Final-Unit-Action
    /// TERMINATE): the reservation was released; nothing is reserved.
    PartialGrant { granted: super::money::Money },
    /// Sent but not answered (Tx expired or the connection was lost): the OCS may or may not
    /// have applied it. Kept for resolution when `kept` (re-sent with the T flag until an
    /// answer arrives).
    Unknown { reason: String, kept: bool },
}

impl Outcome {
    /// The outcome an answer's (effective) Result-Code gives.
    pub fn from_answer(answer: CreditControlAnswer) -> Self {
        Self::from_answer_in(answer, None)
    }

    /// [`Outcome::from_answer`], naming a Failed-AVP from `dict`.
    pub fn from_answer_in(answer: CreditControlAnswer, dict: Option<&Dictionary>) -> Self {
        let rc = answer.effective_result();
        match rc.0 {
            2001 | 2002 => Self::Success(Box::new(answer)),
            4011 => Self::NotApplicable(Box::new(answer)),
            4010 | 4012 | 5003 => Self::Denied(rc),
            5030 => Self::UnknownUser,
            5031 => Self::RatingFailed {
                failed_avp: answer.failed_avp.as_ref().map(|f| f.code.0),
            },
            5002 => Self::UnknownSession,
            _ if rc.is_protocol_error() => Self::ProtocolError(rc),
            _ => Self::Refused(Box::new(Refusal {
                result: rc,
                failed_avp: answer.failed_avp_text(dict),
                units: answer.refuses_units(),
                origin_host: answer.origin_host,
                error_message: answer.error_message,
            })),
        }
    }

    /// The refusal, when the OCS refused the request over where its units were.
    pub fn units_refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) if r.units => Some(r),
            _ => None,
        }
    }

    /// True when the OCS confirmed the operation.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success(_))
    }

    /// True when nothing is known about whether the OCS applied it.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }

    /// The Result-Code behind this outcome, if one was received.
    pub fn result_code(&self) -> Option<ResultCode> {
        match self {
            Self::Success(a) | Self::NotApplicable(a) => Some(a.effective_result()),
            Self::Denied(rc) | Self::Failed(rc) | Self::ProtocolError(rc) => Some(*rc),
            Self::Refused(r) => Some(r.result),
            Self::UnknownUser => Some(ResultCode::USER_UNKNOWN),
            Self::RatingFailed { .. } => Some(ResultCode::RATING_FAILED),
            Self::UnknownSession => Some(ResultCode::UNKNOWN_SESSION_ID),
            Self::Unavailable(_) | Self::Unknown { .. } | Self::PartialGrant { .. } => None,
        }
    }

    /// The answer, for the two outcomes that carry one.
    pub fn answer(&self) -> Option<&CreditControlAnswer> {
        match self {
            Self::Success(a) | Self::NotApplicable(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Success(a) => write!(f, "success ({})", a.effective_result()),
            Self::NotApplicable(_) => write!(f, "credit control not applicable (4011)"),
            Self::Denied(rc) => write!(f, "denied: {rc}"),
            Self::UnknownUser => write!(f, "unknown user (5030)"),
            Self::RatingFailed { .. } => write!(f, "rating failed (5031)"),
            Self::UnknownSession => write!(f, "unknown session (5002)"),
            Self::Failed(rc) => write!(f, "failed: {rc}"),
            Self::Refused(r) => write!(f, "refused: {r}"),
            Self::ProtocolError(rc) => write!(f, "protocol error: {rc}"),
            Self::Unavailable(why) => write!(f, "unavailable: {why}"),
            Self::PartialGrant { granted } => write!(f, "partial grant of {granted}: released"),
            Self::Unknown { reason, kept } => {
                write!(
                    f,
                    "outcome unknown ({reason}){}",
                    if *kept { ", kept for resolution" } else { "" }
                )
            }
        }
    }
}
