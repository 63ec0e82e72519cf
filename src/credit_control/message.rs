//! Typed Credit-Control-Request and Credit-Control-Answer (RFC 8506 sections 3.1, 3.2), built
//! and read in both styles: units at command level (RFC 4006 style) or inside
//! Multiple-Services-Credit-Control (3GPP Gy/Ro style).
//!
//! ```text
//! CCR: Session-Id, Origin-*, Destination-Realm, Auth-Application-Id 4, Service-Context-Id,
//!      CC-Request-Type, CC-Request-Number, Event-Timestamp, Subscription-Id, [Requested-Action]
//!      command level: [Service-Identifier] [RSU] [USU]        MSCC: Multiple-Services-Indicator,
//!                                                            MSCC { [RSU] [USU] Service-Identifier
//!                                                                   [Rating-Group] }
//!      *Service-Parameter-Info { Type, Value }, operator AVPs from templates
//! CCA: Result-Code, [GSU] or MSCC { [GSU] [Validity-Time] [Result-Code] [FUI] },
//!      [CCFH] [DDFH] [Validity-Time] [Check-Balance-Result] [Cost-Information]
//! ```

use bytes::Bytes;
use iso_currency::Currency;
use thiserror::Error;

use super::money::{Money, MoneyError};
use super::subscription::{SubscriptionId, SubscriptionType};
use crate::diameter::codec::{
    Avp, AvpBuf, AvpCode, DecodeError, Header, Message, MessageBuf, ResultCode, Time, VendorId,
};
use crate::diameter::dict::Dictionary;
use crate::diameter::peer::LocalIdentity;

macro_rules! enumerated {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vm])* $variant = $value,)* }

        impl $name {
            pub fn value(self) -> i32 { self as i32 }
            pub fn from_value(v: i32) -> Option<Self> {
                match v { $($value => Some(Self::$variant),)* _ => None }
            }
            /// The RFC name.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
    };
}

enumerated!(
    /// CC-Request-Type (RFC 8506 section 8.3).
    RequestType {
        Initial = 1, "INITIAL_REQUEST";
        Update = 2, "UPDATE_REQUEST";
        Termination = 3, "TERMINATION_REQUEST";
        Event = 4, "EVENT_REQUEST";
    }
);

enumerated!(
    /// Requested-Action (RFC 8506 section 8.41).
    RequestedAction {
        DirectDebiting = 0, "DIRECT_DEBITING";
        RefundAccount = 1, "REFUND_ACCOUNT";
        CheckBalance = 2, "CHECK_BALANCE";
        PriceEnquiry = 3, "PRICE_ENQUIRY";
    }
);

enumerated!(
    /// Credit-Control-Failure-Handling (RFC 8506 section 8.14).
    CcFailureHandling {
        Terminate = 0, "TERMINATE";
        Continue = 1, "CONTINUE";
        RetryAndTerminate = 2, "RETRY_AND_TERMINATE";
    }
);

enumerated!(
    /// Direct-Debiting-Failure-Handling (RFC 8506 section 8.15).
    DdFailureHandling {
        TerminateOrBuffer = 0, "TERMINATE_OR_BUFFER";
        Continue = 1, "CONTINUE";
    }
);

enumerated!(
    /// Check-Balance-Result (RFC 8506 section 8.6).
    CheckBalanceResult {
        EnoughCredit = 0, "ENOUGH_CREDIT";
        NoCredit = 1, "NO_CREDIT";
    }
);

enumerated!(
    /// Final-Unit-Action (RFC 8506 section 8.35).
    FinalUnitAction {
        Terminate = 0, "TERMINATE";
        Redirect = 1, "REDIRECT";
        RestrictAccess = 2, "RESTRICT_ACCESS";
    }
);

/// Where the units travel: at command level (RFC 4006 style) or inside one
/// Multiple-Services-Credit-Control (3GPP Gy/Ro style). Chosen per OCS.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum UnitsStyle {
    CommandLevel,
    #[default]
    Mscc,
}

/// The Service-Parameter-Type values this gateway sends (RFC 8506 section 8.44 lets the owner
/// of the Service-Context-Id number them; this is the gateway's registry, documented in the
/// README and agreed with the OCS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceParameterType {
    /// The client's reference for disputes (`referenceCode`).
    ReferenceCode = 1,
    /// The merchant or application charging (`merchantIdentifier`, application id).
    Merchant = 2,
    /// Text for the bill (`description`).
    Description = 3,
    /// Tax amount, decimal text.
    TaxAmount = 4,
    /// "true" / "false": whether the amount includes tax.
    TaxIncluded = 5,
    /// Session-Id of the charge a refund refers to.
    OriginalSessionId = 6,
    /// Purchase category code.
    PurchaseCategory = 7,
    /// Charging code from a contract (OCSG `charge.code`).
    ChargingCode = 8,
    /// The REST operation (`charge-amount`, `refund-amount`, ...).
    Operation = 9,
}

impl ServiceParameterType {
    pub fn value(self) -> u32 {
        self as u32
    }

    /// Every registered type with its name and meaning (for the README and `gateway`).
    pub const REGISTRY: [(u32, &'static str, &'static str); 9] = [
        (
            1,
            "reference-code",
            "client reference for disputes (referenceCode)",
        ),
        (2, "merchant", "merchant or application identifier"),
        (3, "description", "text for the bill"),
        (4, "tax-amount", "tax amount, decimal text"),
        (5, "tax-included", "\"true\" or \"false\""),
        (
            6,
            "original-session-id",
            "Session-Id of the charge a refund refers to",
        ),
        (7, "purchase-category", "purchase category code"),
        (8, "charging-code", "charging code from a contract"),
        (9, "operation", "REST operation that caused the request"),
    ];
}

/// One Service-Parameter-Info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceParameter {
    pub kind: u32,
    pub value: Bytes,
}

impl ServiceParameter {
    pub fn new(kind: ServiceParameterType, value: &str) -> Self {
        Self {
            kind: kind.value(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    fn to_avp(&self) -> AvpBuf {
        AvpBuf::grouped(
            AvpCode::SERVICE_PARAMETER_INFO,
            vec![
                AvpBuf::unsigned32(AvpCode::SERVICE_PARAMETER_TYPE, self.kind),
                AvpBuf::octets(AvpCode::SERVICE_PARAMETER_VALUE, self.value.clone()),
            ],
        )
    }
}

/// The contents of a Requested-, Used- or Granted-Service-Unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Units {
    pub money: Option<Money>,
    pub time: Option<u32>,
    pub total_octets: Option<u64>,
    pub service_specific: Option<u64>,
}

impl Units {
    pub fn money(m: Money) -> Self {
        Self {
            money: Some(m),
            ..Self::default()
        }
    }

    fn to_avp(&self, code: AvpCode) -> Result<AvpBuf, MoneyError> {
        let mut members = Vec::new();
        if let Some(t) = self.time {
            members.push(AvpBuf::unsigned32(AvpCode::CC_TIME, t));
        }
        if let Some(m) = &self.money {
            members.push(m.to_avp()?);
        }
        if let Some(o) = self.total_octets {
            members.push(AvpBuf::unsigned64(AvpCode::CC_TOTAL_OCTETS, o));
        }
        if let Some(u) = self.service_specific {
            members.push(AvpBuf::unsigned64(AvpCode::CC_SERVICE_SPECIFIC_UNITS, u));
        }
        Ok(AvpBuf::grouped(code, members))
    }

    fn read(avp: &Avp<'_>, currency: Currency) -> Result<Self, ReadError> {
        let mut u = Self::default();
        for m in avp.group() {
            let m = m?;
            if m.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                continue;
            }
            match m.code() {
                AvpCode::CC_MONEY => u.money = Some(Money::from_avp(&m, currency)?),
                AvpCode::CC_TIME => u.time = Some(m.unsigned32()?),
                AvpCode::CC_TOTAL_OCTETS => u.total_octets = Some(m.unsigned64()?),
                AvpCode::CC_SERVICE_SPECIFIC_UNITS => u.service_specific = Some(m.unsigned64()?),
                _ => {}
            }
        }
        Ok(u)
    }
}

/// Why a CCR or CCA cannot be read; maps to the Result-Code a server answers with.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Money(#[from] MoneyError),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl ReadError {
    /// The Result-Code a server should answer with.
    pub fn result_code(&self) -> ResultCode {
        match self {
            Self::Decode(e) => e.result_code(),
            Self::Money(MoneyError::UnknownCurrencyCode(_)) => ResultCode::RATING_FAILED,
            Self::Money(_) | Self::Invalid(_) => ResultCode::INVALID_AVP_VALUE,
            Self::Missing(_) => ResultCode::MISSING_AVP,
        }
    }
}

/// A Credit-Control-Request.
#[derive(Clone, Debug, PartialEq)]
pub struct CreditControlRequest {
    pub session_id: String,
    pub destination_realm: String,
    pub destination_host: Option<String>,
    pub service_context_id: String,
    pub request_type: RequestType,
    pub request_number: u32,
    pub event_timestamp: Option<Time>,
    pub subscription: Option<SubscriptionId>,
    pub requested_action: Option<RequestedAction>,
    pub requested: Option<Units>,
    pub used: Option<Units>,
    pub service_identifier: Option<u32>,
    pub rating_group: Option<u32>,
    pub service_parameters: Vec<ServiceParameter>,
    pub termination_cause: Option<i32>,
    pub style: UnitsStyle,
    /// Operator-specific AVPs (from configuration templates), appended as they are.
    pub extra: Vec<AvpBuf>,
    /// Origin-Host of the sender (read side only; the builder uses the local identity).
    pub origin_host: String,
}

impl CreditControlRequest {
    /// A request with the mandatory fields and nothing else.
    pub fn new(
        session_id: String,
        destination_realm: String,
        service_context_id: String,
        request_type: RequestType,
        request_number: u32,
    ) -> Self {
        Self {
            session_id,
            destination_realm,
            destination_host: None,
            service_context_id,
            request_type,
            request_number,
            event_timestamp: None,
            subscription: None,
            requested_action: None,
            requested: None,
            used: None,
            service_identifier: None,
            rating_group: None,
            service_parameters: Vec::new(),
            termination_cause: None,
            style: UnitsStyle::default(),
            extra: Vec::new(),
            origin_host: String::new(),
        }
    }

    /// The CCR message (RFC 8506 section 3.1 order). Hop-by-Hop and End-to-End ids are set by
    /// the router.
    pub fn to_message(&self, local: &LocalIdentity) -> Result<MessageBuf, MoneyError> {
        let mut m = MessageBuf::new(Header::request(
            crate::diameter::codec::CommandCode::CREDIT_CONTROL,
            crate::diameter::codec::ApplicationId::CREDIT_CONTROL,
            true,
        ));
        m.push(AvpBuf::utf8(AvpCode::SESSION_ID, &self.session_id));
        m.push(AvpBuf::utf8(AvpCode::ORIGIN_HOST, &local.origin_host));
        m.push(AvpBuf::utf8(AvpCode::ORIGIN_REALM, &local.origin_realm));
        m.push(AvpBuf::utf8(
            AvpCode::DESTINATION_REALM,
            &self.destination_realm,
        ));
        m.push(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4));
        m.push(AvpBuf::utf8(
            AvpCode::SERVICE_CONTEXT_ID,
            &self.service_context_id,
        ));
        m.push(AvpBuf::enumerated(
            AvpCode::CC_REQUEST_TYPE,
            self.request_type.value(),
        ));
        m.push(AvpBuf::unsigned32(
            AvpCode::CC_REQUEST_NUMBER,
            self.request_number,
        ));
        if let Some(h) = &self.destination_host {
            m.push(AvpBuf::utf8(AvpCode::DESTINATION_HOST, h));
        }
        m.push(AvpBuf::unsigned32(
            AvpCode::ORIGIN_STATE_ID,
            local.origin_state_id,
        ));
        if let Some(t) = self.event_timestamp {
            m.push(AvpBuf::time(AvpCode::EVENT_TIMESTAMP, t));
        }
        if let Some(s) = &self.subscription {
            m.push(s.to_avp());
        }
        if let Some(c) = self.termination_cause {
            m.push(AvpBuf::enumerated(AvpCode::TERMINATION_CAUSE, c));
        }
        if let Some(a) = self.requested_action {
            m.push(AvpBuf::enumerated(AvpCode::REQUESTED_ACTION, a.value()));
        }
        match self.style {
            UnitsStyle::CommandLevel => {
                if let Some(s) = self.service_identifier {
                    m.push(AvpBuf::unsigned32(AvpCode::SERVICE_IDENTIFIER, s));
                }
                if let Some(r) = &self.requested {
                    m.push(r.to_avp(AvpCode::REQUESTED_SERVICE_UNIT)?);
                }
                if let Some(u) = &self.used {
                    m.push(u.to_avp(AvpCode::USED_SERVICE_UNIT)?);
                }
            }
            UnitsStyle::Mscc => {
                m.push(AvpBuf::enumerated(AvpCode::MULTIPLE_SERVICES_INDICATOR, 1));
                let mut mscc = Vec::new();
                if let Some(r) = &self.requested {
                    mscc.push(r.to_avp(AvpCode::REQUESTED_SERVICE_UNIT)?);
                }
                if let Some(u) = &self.used {
                    mscc.push(u.to_avp(AvpCode::USED_SERVICE_UNIT)?);
                }
                if let Some(s) = self.service_identifier {
                    mscc.push(AvpBuf::unsigned32(AvpCode::SERVICE_IDENTIFIER, s));
                }
                if let Some(r) = self.rating_group {
                    mscc.push(AvpBuf::unsigned32(AvpCode::RATING_GROUP, r));
                }
                if !mscc.is_empty() {
                    m.push(AvpBuf::grouped(
                        AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
                        mscc,
                    ));
                }
            }
        }
        for p in &self.service_parameters {
            m.push(p.to_avp());
        }
        for a in &self.extra {
            m.push(a.clone());
        }
        Ok(m)
    }

    /// Reads a received CCR (server side), in either style. Amounts without Currency-Code take
    /// `currency`.
    pub fn read(msg: &Message, currency: Currency) -> Result<Self, ReadError> {
        let mut r = Self::new(
            String::new(),
            String::new(),
            String::new(),
            RequestType::Event,
            0,
        );
        let mut have_type = false;
        let mut have_number = false;
        let mut mscc_style = false;
        for avp in msg.avps() {
            if avp.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                continue;
            }
            match avp.code() {
                AvpCode::SESSION_ID => r.session_id = avp.utf8()?.to_string(),
                AvpCode::ORIGIN_HOST => r.origin_host = avp.identity()?.to_string(),
                AvpCode::DESTINATION_REALM => r.destination_realm = avp.identity()?.to_string(),
                AvpCode::DESTINATION_HOST => r.destination_host = Some(avp.identity()?.to_string()),
                AvpCode::SERVICE_CONTEXT_ID => r.service_context_id = avp.utf8()?.to_string(),
                AvpCode::CC_REQUEST_TYPE => {
                    r.request_type = RequestType::from_value(avp.enumerated()?)
                        .ok_or(ReadError::Invalid("CC-Request-Type"))?;
                    have_type = true;
                }
                AvpCode::CC_REQUEST_NUMBER => {
                    r.request_number = avp.unsigned32()?;
                    have_number = true;
                }
                AvpCode::EVENT_TIMESTAMP => r.event_timestamp = Some(avp.time()?),
                AvpCode::SUBSCRIPTION_ID if r.subscription.is_none() => {
                    let mut kind = None;
                    let mut data = None;
                    for m in avp.group() {
                        let m = m?;
                        match m.code() {
                            AvpCode::SUBSCRIPTION_ID_TYPE => {
                                kind = SubscriptionType::from_value(m.enumerated()?)
                            }
                            AvpCode::SUBSCRIPTION_ID_DATA => data = Some(m.utf8()?.to_string()),
                            _ => {}
                        }
                    }
                    match (kind, data) {
                        (Some(kind), Some(data)) => {
                            r.subscription = Some(SubscriptionId { kind, data })
                        }
                        _ => return Err(ReadError::Invalid("Subscription-Id")),
                    }
                }
                AvpCode::REQUESTED_ACTION => {
                    r.requested_action = Some(
                        RequestedAction::from_value(avp.enumerated()?)
                            .ok_or(ReadError::Invalid("Requested-Action"))?,
                    );
                }
                AvpCode::TERMINATION_CAUSE => r.termination_cause = Some(avp.enumerated()?),
                AvpCode::SERVICE_IDENTIFIER => r.service_identifier = Some(avp.unsigned32()?),
                AvpCode::REQUESTED_SERVICE_UNIT => r.requested = Some(Units::read(&avp, currency)?),
                AvpCode::USED_SERVICE_UNIT => r.used = Some(Units::read(&avp, currency)?),
                AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL => {
                    mscc_style = true;
                    for m in avp.group() {
                        let m = m?;
                        if m.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                            continue;
                        }
                        match m.code() {
                            AvpCode::REQUESTED_SERVICE_UNIT => {
                                r.requested = Some(Units::read(&m, currency)?)
                            }
                            AvpCode::USED_SERVICE_UNIT => {
                                // Several USUs (one per reporting reason) add up.
                                let u = Units::read(&m, currency)?;
                                r.used = Some(add_used(r.used.take(), u));
                            }
                            AvpCode::SERVICE_IDENTIFIER => {
                                r.service_identifier = Some(m.unsigned32()?)
                            }
                            AvpCode::RATING_GROUP => r.rating_group = Some(m.unsigned32()?),
                            _ => {}
                        }
                    }
                }
                AvpCode::MULTIPLE_SERVICES_INDICATOR => mscc_style = true,
                AvpCode::SERVICE_PARAMETER_INFO => {
                    let mut kind = None;
                    let mut value = None;
                    for m in avp.group() {
                        let m = m?;
                        match m.code() {
                            AvpCode::SERVICE_PARAMETER_TYPE => kind = Some(m.unsigned32()?),
                            AvpCode::SERVICE_PARAMETER_VALUE => {
                                value = Some(Bytes::copy_from_slice(m.data()))
                            }
                            _ => {}
                        }
                    }
                    if let (Some(kind), Some(value)) = (kind, value) {
                        r.service_parameters.push(ServiceParameter { kind, value });
                    }
                }
                _ => {}
            }
        }
        if r.session_id.is_empty() {
            return Err(ReadError::Missing("Session-Id"));
        }
        if !have_type {
            return Err(ReadError::Missing("CC-Request-Type"));
        }
        if !have_number {
            return Err(ReadError::Missing("CC-Request-Number"));
        }
        r.style = if mscc_style {
            UnitsStyle::Mscc
        } else {
            UnitsStyle::CommandLevel
        };
        Ok(r)
    }

    /// The value of a Service-Parameter-Info of this type, as text.
    pub fn parameter(&self, kind: ServiceParameterType) -> Option<&str> {
        self.service_parameters
            .iter()
            .find(|p| p.kind == kind.value())
            .and_then(ServiceParameter::text)
    }
}

fn add_used(prev: Option<Units>, next: Units) -> Units {
    let Some(mut p) = prev else {
        return next;
    };
    p.money = match (p.money, next.money) {
        (Some(a), Some(b)) if a.currency == b.currency => {
            Some(Money::new(a.amount + b.amount, a.currency))
        }
        (a, b) => a.or(b),
    };
    p.time = p.time.map_or(next.time, |t| {
        Some(t.saturating_add(next.time.unwrap_or(0)))
    });
    p.total_octets = p.total_octets.map_or(next.total_octets, |t| {
        Some(t.saturating_add(next.total_octets.unwrap_or(0)))
    });
    p.service_specific = p.service_specific.map_or(next.service_specific, |t| {
        Some(t.saturating_add(next.service_specific.unwrap_or(0)))
    });
    p
}

/// The AVP a Failed-AVP names.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAvp {
    pub code: AvpCode,
    pub vendor: VendorId,
    /// The whole AVP, when building an answer.
    pub avp: Option<AvpBuf>,
}

/// What one Multiple-Services-Credit-Control of an answer says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MsccAnswer {
    pub result_code: Option<ResultCode>,
    pub granted: Option<Units>,
    pub validity_time: Option<u32>,
    pub service_identifier: Option<u32>,
    pub rating_group: Option<u32>,
    pub final_unit_action: Option<FinalUnitAction>,
}

/// A Credit-Control-Answer.
#[derive(Clone, Debug, PartialEq)]
pub struct CreditControlAnswer {
    pub session_id: String,
    pub result_code: ResultCode,
    pub origin_host: String,
    pub request_type: RequestType,
    pub request_number: u32,
    /// Command-level Granted-Service-Unit.
    pub granted: Option<Units>,
    pub mscc: Vec<MsccAnswer>,
    pub validity_time: Option<u32>,
    pub final_unit_action: Option<FinalUnitAction>,
    pub cc_failure_handling: Option<CcFailureHandling>,
    pub dd_failure_handling: Option<DdFailureHandling>,
    pub check_balance: Option<CheckBalanceResult>,
    /// Cost-Information: the cost and its unit text.
    pub cost: Option<(Money, Option<String>)>,
    /// The first AVP inside Failed-AVP: read side, its code and vendor; build side, the AVP
    /// to report (RFC 6733 section 7.5).
    pub failed_avp: Option<FailedAvp>,
    /// Read side: the AVPs inside the Failed-AVP's AVP when it is one of the Grouped AVPs of
    /// RFC 8506 (depth first, at most [`FAILED_MEMBERS`]), so that a caller can tell what in
    /// it the OCS objected to.
    pub failed_avp_members: Vec<(AvpCode, VendorId)>,
    pub error_message: Option<String>,
    /// Read side: the answering node's Origin-State-Id (RFC 6733 section 8.16), if sent.
    pub origin_state_id: Option<u32>,
}

/// Most members of a Failed-AVP kept by [`CreditControlAnswer::read`].
pub const FAILED_MEMBERS: usize = 16;

/// The RFC 8506 Grouped AVPs whose members a Failed-AVP is read into.
fn cc_grouped(code: AvpCode) -> bool {
    matches!(
        code,
        AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL
            | AvpCode::REQUESTED_SERVICE_UNIT
            | AvpCode::USED_SERVICE_UNIT
            | AvpCode::GRANTED_SERVICE_UNIT
            | AvpCode::CC_MONEY
            | AvpCode::UNIT_VALUE
            | AvpCode::COST_INFORMATION
            | AvpCode::SUBSCRIPTION_ID
            | AvpCode::SERVICE_PARAMETER_INFO
            | AvpCode::FINAL_UNIT_INDICATION
            | AvpCode::USER_EQUIPMENT_INFO
    )
}

/// The members of `avp` (depth first, bounded in depth and count), when it is an RFC 8506
/// Grouped AVP; malformed members end the walk.
fn grouped_members(avp: &Avp<'_>, depth: usize, out: &mut Vec<(AvpCode, VendorId)>) {
    if depth == 0 || avp.vendor_id().is_some_and(|v| v != VendorId::IETF) || !cc_grouped(avp.code())
    {
        return;
    }
    for m in avp.group() {
        let Ok(m) = m else { return };
        if out.len() >= FAILED_MEMBERS {
            return;
        }
        out.push((m.code(), m.vendor_id().unwrap_or_default()));
        grouped_members(&m, depth - 1, out);
    }
}

impl CreditControlAnswer {
    /// An answer with a Result-Code and nothing else, for `request`.
    pub fn new(request: &CreditControlRequest, result_code: ResultCode) -> Self {
        Self {
            session_id: request.session_id.clone(),
            result_code,
            origin_host: String::new(),
            request_type: request.request_type,
            request_number: request.request_number,
            granted: None,
            mscc: Vec::new(),
            validity_time: None,
            final_unit_action: None,
            cc_failure_handling: None,
            dd_failure_handling: None,
            check_balance: None,
            cost: None,
            failed_avp: None,
            failed_avp_members: Vec::new(),
            error_message: None,
            origin_state_id: None,
        }
    }

    /// The most severe of the command-level and MSCC-level Result-Codes: a permanent failure
    /// beats a transient one, which beats success (RFC 8506: a MSCC Result-Code applies to its
    /// service; for a single-service payment any failure fails the operation).
    pub fn effective_result(&self) -> ResultCode {
        let rank = |rc: ResultCode| match rc.class() {
            5 => 4,
            4 => 3,
            3 => 2,
            2 => 1,
            _ => 0,
        };
        let mut worst = self.result_code;
        for m in &self.mscc {
            if let Some(rc) = m.result_code
                && rank(rc) > rank(worst)
            {
                worst = rc;
            }
        }
        worst
    }

    /// The money granted: command-level GSU, or the sum of the MSCC GSUs in one currency.
    pub fn granted_money(&self) -> Option<Money> {
        if let Some(m) = self.granted.as_ref().and_then(|g| g.money) {
            return Some(m);
        }
        let mut total: Option<Money> = None;
        for g in self.mscc.iter().filter_map(|m| m.granted.as_ref()?.money) {
            total = Some(match total {
                Some(t) if t.currency == g.currency => Money::new(t.amount + g.amount, t.currency),
                Some(t) => t,
                None => g,
            });
        }
        total
    }

    /// True when the OCS refused the request over where its units were (5001, 5004, 5005 or
    /// 5008 with a Failed-AVP naming a units AVP; see [`super::style::refuses_units`]).
    pub fn refuses_units(&self) -> bool {
        super::style::refuses_units(
            self.effective_result(),
            self.failed_avp.as_ref(),
            &self.failed_avp_members,
        )
    }

    /// The Failed-AVP by dictionary name, with what it holds:
    /// `Multiple-Services-Credit-Control (holding Requested-Service-Unit, CC-Money)`.
    pub fn failed_avp_text(&self, dict: Option<&Dictionary>) -> Option<String> {
        let f = self.failed_avp.as_ref()?;
        let name = |code: AvpCode, vendor: VendorId| -> String {
            match dict.and_then(|d| d.avp(code, vendor)) {
                Some(def) => def.name.clone(),
                None if vendor == VendorId::IETF => format!("AVP {}", code.0),
                None => format!("AVP {} (vendor {})", code.0, vendor.0),
            }
        };
        let mut s = name(f.code, f.vendor);
        if !self.failed_avp_members.is_empty() {
            let inner: Vec<String> = self
                .failed_avp_members
                .iter()
                .map(|(c, v)| name(*c, *v))
                .collect();
            s.push_str(&format!(" (holding {})", inner.join(", ")));
        }
        Some(s)
    }

    /// Validity-Time: command level, else the first MSCC that has one.
    pub fn validity(&self) -> Option<u32> {
        self.validity_time
            .or_else(|| self.mscc.iter().find_map(|m| m.validity_time))
    }

    /// Reads a received CCA (client side). Amounts without Currency-Code take `currency`.
    pub fn read(msg: &Message, currency: Currency) -> Result<Self, ReadError> {
        let mut a = Self {
            session_id: String::new(),
            result_code: ResultCode(0),
            origin_host: String::new(),
            request_type: RequestType::Event,
            request_number: 0,
            granted: None,
            mscc: Vec::new(),
            validity_time: None,
            final_unit_action: None,
            cc_failure_handling: None,
            dd_failure_handling: None,
            check_balance: None,
            cost: None,
            failed_avp: None,
            failed_avp_members: Vec::new(),
            error_message: None,
            origin_state_id: None,
        };
        a.result_code = msg.result_code().ok_or(ReadError::Missing("Result-Code"))?;
        for avp in msg.avps() {
            if avp.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                continue;
            }
            match avp.code() {
                AvpCode::SESSION_ID => a.session_id = avp.utf8()?.to_string(),
                AvpCode::ORIGIN_HOST => a.origin_host = avp.identity()?.to_string(),
                AvpCode::ORIGIN_STATE_ID => a.origin_state_id = avp.unsigned32().ok(),
                AvpCode::CC_REQUEST_TYPE => {
                    if let Some(t) = RequestType::from_value(avp.enumerated()?) {
                        a.request_type = t;
                    }
                }
                AvpCode::CC_REQUEST_NUMBER => a.request_number = avp.unsigned32()?,
                AvpCode::GRANTED_SERVICE_UNIT => a.granted = Some(Units::read(&avp, currency)?),
                AvpCode::VALIDITY_TIME => a.validity_time = Some(avp.unsigned32()?),
                AvpCode::FINAL_UNIT_INDICATION => a.final_unit_action = final_unit_action(&avp)?,
                AvpCode::CREDIT_CONTROL_FAILURE_HANDLING => {
                    a.cc_failure_handling = CcFailureHandling::from_value(avp.enumerated()?);
                }
                AvpCode::DIRECT_DEBITING_FAILURE_HANDLING => {
                    a.dd_failure_handling = DdFailureHandling::from_value(avp.enumerated()?);
                }
                AvpCode::CHECK_BALANCE_RESULT => {
                    a.check_balance = CheckBalanceResult::from_value(avp.enumerated()?)
                }
                AvpCode::COST_INFORMATION => a.cost = Some(cost_information(&avp, currency)?),
                AvpCode::FAILED_AVP => {
                    if let Some(f) = avp.group().next().and_then(Result::ok) {
                        a.failed_avp = Some(FailedAvp {
                            code: f.code(),
                            vendor: f.vendor_id().unwrap_or_default(),
                            avp: None,
                        });
                        grouped_members(&f, 4, &mut a.failed_avp_members);
                    }
                }
                AvpCode::ERROR_MESSAGE => a.error_message = avp.utf8().ok().map(str::to_string),
                AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL => {
                    let mut m = MsccAnswer::default();
                    for x in avp.group() {
                        let x = x?;
                        if x.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                            continue;
                        }
                        match x.code() {
                            AvpCode::RESULT_CODE => {
                                m.result_code = Some(ResultCode(x.unsigned32()?))
                            }
                            AvpCode::GRANTED_SERVICE_UNIT => {
                                m.granted = Some(Units::read(&x, currency)?)
                            }
                            AvpCode::VALIDITY_TIME => m.validity_time = Some(x.unsigned32()?),
                            AvpCode::SERVICE_IDENTIFIER => {
                                m.service_identifier = Some(x.unsigned32()?)
                            }
                            AvpCode::RATING_GROUP => m.rating_group = Some(x.unsigned32()?),
                            AvpCode::FINAL_UNIT_INDICATION => {
                                m.final_unit_action = final_unit_action(&x)?
                            }
                            _ => {}
                        }
                    }
                    a.mscc.push(m);
                }
                _ => {}
            }
        }
        Ok(a)
    }

    /// The CCA message for a request with header `request` (server side). `style` places the
    /// grant at command level or in one MSCC (with its own Result-Code).
    pub fn to_message(
        &self,
        request: &Header,
        local: &LocalIdentity,
        style: UnitsStyle,
    ) -> Result<MessageBuf, MoneyError> {
        let mut m = MessageBuf::new(request.answer());
        m.push(AvpBuf::utf8(AvpCode::SESSION_ID, &self.session_id));
        m.push(AvpBuf::unsigned32(AvpCode::RESULT_CODE, self.result_code.0));
        m.push(AvpBuf::utf8(AvpCode::ORIGIN_HOST, &local.origin_host));
        m.push(AvpBuf::utf8(AvpCode::ORIGIN_REALM, &local.origin_realm));
        m.push(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4));
        m.push(AvpBuf::enumerated(
            AvpCode::CC_REQUEST_TYPE,
            self.request_type.value(),
        ));
        m.push(AvpBuf::unsigned32(
            AvpCode::CC_REQUEST_NUMBER,
            self.request_number,
        ));
        m.push(AvpBuf::unsigned32(
            AvpCode::ORIGIN_STATE_ID,
            local.origin_state_id,
        ));
        if let Some(text) = &self.error_message {
            m.push(AvpBuf::utf8(AvpCode::ERROR_MESSAGE, text).mandatory(false));
        }
        if let Some(avp) = self.failed_avp.as_ref().and_then(|f| f.avp.clone()) {
            m.push(AvpBuf::grouped(AvpCode::FAILED_AVP, vec![avp]));
        }
        match style {
            UnitsStyle::CommandLevel => {
                if let Some(g) = &self.granted {
                    m.push(g.to_avp(AvpCode::GRANTED_SERVICE_UNIT)?);
                }
            }
            UnitsStyle::Mscc => {
                for x in &self.mscc {
                    let mut members = Vec::new();
                    if let Some(g) = &x.granted {
                        members.push(g.to_avp(AvpCode::GRANTED_SERVICE_UNIT)?);
                    }
                    if let Some(s) = x.service_identifier {
                        members.push(AvpBuf::unsigned32(AvpCode::SERVICE_IDENTIFIER, s));
                    }
                    if let Some(r) = x.rating_group {
                        members.push(AvpBuf::unsigned32(AvpCode::RATING_GROUP, r));
                    }
                    if let Some(v) = x.validity_time {
                        members.push(AvpBuf::unsigned32(AvpCode::VALIDITY_TIME, v));
                    }
                    if let Some(rc) = x.result_code {
                        members.push(AvpBuf::unsigned32(AvpCode::RESULT_CODE, rc.0));
                    }
                    if let Some(f) = x.final_unit_action {
                        members.push(AvpBuf::grouped(
                            AvpCode::FINAL_UNIT_INDICATION,
                            vec![AvpBuf::enumerated(AvpCode::FINAL_UNIT_ACTION, f.value())],
                        ));
                    }
                    m.push(AvpBuf::grouped(
                        AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
                        members,
                    ));
                }
            }
        }
        if let Some((cost, unit)) = &self.cost {
            let (digits, exponent) = cost.unit_value()?;
            let mut members = vec![
                AvpBuf::grouped(
                    AvpCode::UNIT_VALUE,
                    vec![
                        AvpBuf::integer64(AvpCode::VALUE_DIGITS, digits),
                        AvpBuf::integer32(AvpCode::EXPONENT, exponent),
                    ],
                ),
                AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, u32::from(cost.currency.numeric())),
            ];
            if let Some(u) = unit {
                members.push(AvpBuf::utf8(AvpCode::COST_UNIT, u));
            }
            m.push(AvpBuf::grouped(AvpCode::COST_INFORMATION, members));
        }
        if let Some(c) = self.check_balance {
            m.push(AvpBuf::enumerated(AvpCode::CHECK_BALANCE_RESULT, c.value()));
        }
        if let Some(v) = self.validity_time {
            m.push(AvpBuf::unsigned32(AvpCode::VALIDITY_TIME, v));
        }
        if let Some(f) = self.cc_failure_handling {
            m.push(AvpBuf::enumerated(
                AvpCode::CREDIT_CONTROL_FAILURE_HANDLING,
                f.value(),
            ));
        }
        if let Some(f) = self.dd_failure_handling {
            m.push(AvpBuf::enumerated(
                AvpCode::DIRECT_DEBITING_FAILURE_HANDLING,
                f.value(),
            ));
        }
        Ok(m)
    }
}

fn final_unit_action(avp: &Avp<'_>) -> Result<Option<FinalUnitAction>, ReadError> {
    for m in avp.group() {
        let m = m?;
        if m.code() == AvpCode::FINAL_UNIT_ACTION && m.vendor_id().is_none() {
            return Ok(FinalUnitAction::from_value(m.enumerated()?));
        }
    }
    Ok(None)
}

fn cost_information(
    avp: &Avp<'_>,
    currency: Currency,
) -> Result<(Money, Option<String>), ReadError> {
    // Cost-Information ::= { Unit-Value } { Currency-Code } [ Cost-Unit ]: the same shape as
    // CC-Money plus a unit, so CC-Money's reader applies.
    let money = Money::from_avp(avp, currency)?;
    let mut unit = None;
    for m in avp.group() {
        let m = m?;
        if m.code() == AvpCode::COST_UNIT {
            unit = Some(m.utf8()?.to_string());
        }
    }
    Ok((money, unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credit_control::money::currency;
    use crate::diameter::codec::Limits;
    use crate::diameter::dict::Dictionary;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn local() -> LocalIdentity {
        LocalIdentity {
            origin_host: "gw.example.net".into(),
            origin_realm: "example.net".into(),
            host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            vendor_id: 0,
            product_name: "t".into(),
            firmware_revision: 1,
            origin_state_id: 5,
            auth_application_ids: vec![4],
            acct_application_ids: vec![],
            vendor_specific_auth_apps: vec![],
            supported_vendor_ids: vec![],
        }
    }

    fn eur(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), currency("EUR").unwrap())
    }

    fn ccr(style: UnitsStyle) -> CreditControlRequest {
        let mut r = CreditControlRequest::new(
            "gw.example.net;1;2;pay-1".into(),
            "ocs.example.net".into(),
            "payment@example.net".into(),
            RequestType::Event,
            0,
        );
        r.event_timestamp = Time::from_unix(1_700_000_000);
        r.subscription = Some(SubscriptionId::parse("tel:+34671999000").unwrap());
        r.requested_action = Some(RequestedAction::DirectDebiting);
        r.requested = Some(Units::money(eur("4.99")));
        r.service_identifier = Some(1000);
        r.rating_group = Some(7);
        r.style = style;
        r.service_parameters.push(ServiceParameter::new(
            ServiceParameterType::ReferenceCode,
            "ref-1",
        ));
        r
    }

    fn decode(m: &MessageBuf) -> Message {
        let d = Dictionary::builtin().unwrap();
        let msg = Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap();
        d.check(&msg, &Limits::default()).unwrap();
        msg
    }

    /// What a Failed-AVP holds is read bounded (depth 4, at most [`FAILED_MEMBERS`] members) and
    /// named from the dictionary; members that do not parse end the walk, never the read.
    #[test]
    fn a_failed_avp_is_read_bounded_and_named() {
        let r = ccr(UnitsStyle::Mscc);
        let h = Header::request(
            crate::diameter::codec::CommandCode::CREDIT_CONTROL,
            crate::diameter::codec::ApplicationId::CREDIT_CONTROL,
            true,
        );
        let answer = |failed: AvpBuf| {
            let mut a = CreditControlAnswer::new(&r, ResultCode::MISSING_AVP);
            a.failed_avp = Some(FailedAvp {
                code: failed.code,
                vendor: VendorId::IETF,
                avp: Some(failed),
            });
            let m = a.to_message(&h, &local(), UnitsStyle::Mscc).unwrap();
            let d = Dictionary::builtin().unwrap();
            let msg = Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap();
            CreditControlAnswer::read(&msg, currency("EUR").unwrap()).unwrap()
        };
        let rsu = || AvpBuf::grouped(AvpCode::REQUESTED_SERVICE_UNIT, vec![]);
        let a = answer(AvpBuf::grouped(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            vec![rsu()],
        ));
        assert!(a.refuses_units());
        let dict = Dictionary::builtin().unwrap();
        assert_eq!(
            a.failed_avp_text(Some(&dict)).as_deref(),
            Some("Multiple-Services-Credit-Control (holding Requested-Service-Unit)")
        );
        assert_eq!(
            a.failed_avp_text(None).as_deref(),
            Some("AVP 456 (holding AVP 437)")
        );
        // Deep: MSCC in MSCC, 12 levels (the codec bounds it at 16); wide: 100 members.
        let mut deep = rsu();
        for _ in 0..12 {
            deep = AvpBuf::grouped(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL, vec![deep]);
        }
        assert_eq!(answer(deep).failed_avp_members.len(), 4);
        let wide = AvpBuf::grouped(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            (0..100).map(|_| rsu()).collect(),
        );
        assert_eq!(answer(wide).failed_avp_members.len(), FAILED_MEMBERS);
        // A Grouped AVP whose payload is not AVPs: nothing read inside, the answer still is.
        let junk = AvpBuf::octets(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x40, 0x00, 0xff, 0xff]),
        );
        let a = answer(junk);
        assert_eq!(a.result_code, ResultCode::MISSING_AVP);
        assert!(a.failed_avp_members.is_empty());
    }

    #[test]
    fn ccr_round_trip_in_both_styles() {
        for style in [UnitsStyle::CommandLevel, UnitsStyle::Mscc] {
            let r = ccr(style);
            let msg = decode(&r.to_message(&local()).unwrap());
            let back = CreditControlRequest::read(&msg, currency("EUR").unwrap()).unwrap();
            assert_eq!(back.style, style);
            assert_eq!(back.requested, r.requested);
            assert_eq!(back.subscription, r.subscription);
            assert_eq!(back.requested_action, Some(RequestedAction::DirectDebiting));
            assert_eq!(
                back.parameter(ServiceParameterType::ReferenceCode),
                Some("ref-1")
            );
            assert_eq!(back.service_identifier, Some(1000));
            if style == UnitsStyle::Mscc {
                assert_eq!(back.rating_group, Some(7));
            }
        }
    }

    #[test]
    fn cca_round_trip_and_most_severe_result() {
        let r = ccr(UnitsStyle::Mscc);
        let mut a = CreditControlAnswer::new(&r, ResultCode::SUCCESS);
        a.mscc.push(MsccAnswer {
            result_code: Some(ResultCode::CREDIT_LIMIT_REACHED),
            granted: Some(Units::money(eur("0"))),
            validity_time: Some(60),
            ..MsccAnswer::default()
        });
        a.dd_failure_handling = Some(DdFailureHandling::Continue);
        let h = Header::request(
            crate::diameter::codec::CommandCode::CREDIT_CONTROL,
            crate::diameter::codec::ApplicationId(4),
            true,
        );
        let msg = decode(&a.to_message(&h, &local(), UnitsStyle::Mscc).unwrap());
        let back = CreditControlAnswer::read(&msg, currency("EUR").unwrap()).unwrap();
        assert_eq!(back.result_code, ResultCode::SUCCESS);
        assert_eq!(back.effective_result(), ResultCode::CREDIT_LIMIT_REACHED);
        assert_eq!(back.validity(), Some(60));
        assert_eq!(back.dd_failure_handling, Some(DdFailureHandling::Continue));
        assert_eq!(back.granted_money(), Some(eur("0")));
    }

    #[test]
    fn used_units_in_several_usus_add_up() {
        let a = Units::money(eur("1.25"));
        let b = Units::money(eur("2.50"));
        assert_eq!(add_used(Some(a), b).money, Some(eur("3.75")));
    }
}
