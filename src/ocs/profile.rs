//! Simulator profiles: how literally the simulator reads where a CCR carries its units, so that
//! the gateway (and `gateway conformance`) can be tried against the kinds of OCS met in the
//! field. RFC 8506 (RFC 4006) sections 3.1 and 5.1.2 (Multiple-Services-Credit-Control in
//! credit-control sessions), section 6 (one-time events); 3GPP TS 32.299 section 6.4.2 (the Ro
//! CCR carries its units in Multiple-Services-Credit-Control only); RFC 6733 section 7.5 (the
//! Failed-AVP of a missing AVP holds an example of it).
//!
//! ```text
//! profile   EVENT (DIRECT_DEBITING, REFUND_ACCOUNT, CHECK_BALANCE, PRICE_ENQUIRY)   INITIAL / UPDATE / TERMINATION
//! any       command level or MSCC                                                  command level or MSCC
//! rfc4006   command level only:                                                    command level or MSCC
//!             units in MSCC, or no RSU for a debit / refund,
//!             or no Service-Identifier nor RSU for a price  -> 5005
//! 3gpp      MSCC only: units at command level without MSCC,                        MSCC only (same rule)
//!             or no MSCC for a debit / refund / reservation  -> 5005
//! ```
//!
//! A refused request is answered `5005 DIAMETER_MISSING_AVP` with a Failed-AVP holding a
//! minimal example of what it lacks (a Grouped AVP with no member, an Unsigned32 of zero) and an
//! Error-Message saying what is wrong; it is not applied and nothing of it is remembered, so a
//! corrected request (in any Session-Id) is served normally.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::credit_control::{
    CreditControlAnswer, CreditControlRequest, RequestType, RequestedAction,
};
use crate::diameter::codec::{AvpBuf, AvpCode, Message, ResultCode, VendorId};

/// How the simulator reads where the units of a CCR travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Profile {
    /// Units at command level or in MSCC, for events and sessions; the answer in the request's
    /// style.
    #[default]
    #[serde(rename = "any")]
    Any,
    /// RFC 4006 read literally: an event carries its units at command level; MSCC only in
    /// sessions.
    #[serde(rename = "rfc4006")]
    Rfc4006,
    /// 3GPP TS 32.299 Ro: units inside MSCC only, for events and sessions.
    #[serde(rename = "3gpp")]
    ThreeGpp,
}

impl Profile {
    /// The profile names, as configured.
    pub const NAMES: [&'static str; 3] = ["any", "rfc4006", "3gpp"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Rfc4006 => "rfc4006",
            Self::ThreeGpp => "3gpp",
        }
    }

    /// Whether this profile serves `req`, whose units sit as `at` says; a refusal says what is
    /// missing.
    pub fn check(self, req: &CreditControlRequest, at: &Placement) -> Result<(), Refusal> {
        match self {
            Self::Any => Ok(()),
            Self::Rfc4006 => rfc4006(req, at),
            Self::ThreeGpp => three_gpp(req, at),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Self::Any),
            "rfc4006" => Ok(Self::Rfc4006),
            "3gpp" => Ok(Self::ThreeGpp),
            other => Err(format!(
                "\"{other}\" must be one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// Where a received CCR carries its units. [`CreditControlRequest::read`] takes the units from
/// either place, so the place is read from the message itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// A Requested-Service-Unit at command level.
    pub command_rsu: bool,
    /// A Used-Service-Unit at command level.
    pub command_usu: bool,
    /// A Service-Identifier at command level.
    pub command_service_identifier: bool,
    /// At least one Multiple-Services-Credit-Control.
    pub mscc: bool,
    /// A Requested- or Used-Service-Unit inside a Multiple-Services-Credit-Control.
    pub mscc_units: bool,
}

impl Placement {
    /// Reads the top-level AVPs of `msg` (and the members of its MSCCs).
    pub fn of(msg: &Message) -> Self {
        let mut p = Self::default();
        for avp in msg.avps() {
            if avp.vendor_id().is_some_and(|v| v != VendorId::IETF) {
                continue;
            }
            match avp.code() {
                AvpCode::REQUESTED_SERVICE_UNIT => p.command_rsu = true,
                AvpCode::USED_SERVICE_UNIT => p.command_usu = true,
                AvpCode::SERVICE_IDENTIFIER => p.command_service_identifier = true,
                AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL => {
                    p.mscc = true;
                    p.mscc_units |= avp.group().filter_map(Result::ok).any(|m| {
                        m.vendor_id().is_none_or(|v| v == VendorId::IETF)
                            && matches!(
                                m.code(),
                                AvpCode::REQUESTED_SERVICE_UNIT | AvpCode::USED_SERVICE_UNIT
                            )
                    });
                }
                _ => {}
            }
        }
        p
    }

    /// Units (RSU or USU) at command level.
    pub fn command_units(&self) -> bool {
        self.command_rsu || self.command_usu
    }
}

/// A request the profile refuses: `5005 DIAMETER_MISSING_AVP` with `missing` (an example of
/// the AVP it lacks) in the Failed-AVP and `message` in the Error-Message.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub missing: AvpBuf,
    pub message: String,
}

impl Refusal {
    fn new(missing: AvpBuf, message: String) -> Self {
        Self { missing, message }
    }

    /// The answer to `req`.
    pub fn answer(&self, req: &CreditControlRequest) -> CreditControlAnswer {
        let mut a = CreditControlAnswer::new(req, ResultCode::MISSING_AVP);
        a.failed_avp = Some(crate::credit_control::FailedAvp {
            code: self.missing.code,
            vendor: self.missing.vendor_id.unwrap_or_default(),
            avp: Some(self.missing.clone()),
        });
        a.error_message = Some(self.message.clone());
        a
    }
}

/// RFC 6733 section 7.5: an example of a missing Grouped AVP is its header with no member.
pub fn grouped_example(code: AvpCode) -> AvpBuf {
    AvpBuf::grouped(code, Vec::new())
}

fn rfc4006(req: &CreditControlRequest, at: &Placement) -> Result<(), Refusal> {
    if req.request_type != RequestType::Event {
        return Ok(());
    }
    let action = req
        .requested_action
        .unwrap_or(RequestedAction::DirectDebiting);
    if at.mscc_units {
        return Err(Refusal::new(
            grouped_example(AvpCode::REQUESTED_SERVICE_UNIT),
            format!(
                "profile rfc4006: an EVENT_REQUEST ({}) carries its units in a command-level \
                 Requested-Service-Unit; Multiple-Services-Credit-Control is handled in \
                 sessions (INITIAL/UPDATE/TERMINATION) only",
                action.name()
            ),
        ));
    }
    match action {
        RequestedAction::DirectDebiting | RequestedAction::RefundAccount if !at.command_rsu => {
            Err(Refusal::new(
                grouped_example(AvpCode::REQUESTED_SERVICE_UNIT),
                format!(
                    "profile rfc4006: {} needs a Requested-Service-Unit at command level",
                    action.name()
                ),
            ))
        }
        RequestedAction::PriceEnquiry if !at.command_service_identifier && !at.command_rsu => {
            Err(Refusal::new(
                AvpBuf::unsigned32(AvpCode::SERVICE_IDENTIFIER, 0),
                "profile rfc4006: PRICE_ENQUIRY names the service event in a command-level \
                 Service-Identifier (or the units to price in a command-level \
                 Requested-Service-Unit)"
                    .to_string(),
            ))
        }
        // CHECK_BALANCE needs only the Subscription-Id.
        _ => Ok(()),
    }
}

fn three_gpp(req: &CreditControlRequest, at: &Placement) -> Result<(), Refusal> {
    let what = match req.request_type {
        RequestType::Event => req
            .requested_action
            .unwrap_or(RequestedAction::DirectDebiting)
            .name(),
        t => t.name(),
    };
    if at.command_units() && !at.mscc_units {
        return Err(Refusal::new(
            grouped_example(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL),
            format!(
                "profile 3gpp: units travel inside Multiple-Services-Credit-Control (3GPP TS \
                 32.299), not at command level ({what} with a command-level {})",
                if at.command_rsu {
                    "Requested-Service-Unit"
                } else {
                    "Used-Service-Unit"
                }
            ),
        ));
    }
    let needs_units = match req.request_type {
        RequestType::Initial => true,
        RequestType::Event => matches!(
            req.requested_action
                .unwrap_or(RequestedAction::DirectDebiting),
            RequestedAction::DirectDebiting | RequestedAction::RefundAccount
        ),
        _ => false,
    };
    if needs_units && !at.mscc_units {
        return Err(Refusal::new(
            grouped_example(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL),
            format!(
                "profile 3gpp: {what} needs a Multiple-Services-Credit-Control with a \
                 Requested-Service-Unit (3GPP TS 32.299)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credit_control::{Money, SubscriptionId, Units, UnitsStyle, money::currency};
    use crate::diameter::codec::Limits;
    use crate::diameter::dict::Dictionary;
    use crate::diameter::peer::LocalIdentity;
    use rust_decimal::Decimal;

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

    /// The request as the simulator sees it: encoded, decoded, read; with its placement.
    fn received(
        t: RequestType,
        action: Option<RequestedAction>,
        units: bool,
        service_identifier: Option<u32>,
        style: UnitsStyle,
    ) -> (CreditControlRequest, Placement) {
        let mut r = CreditControlRequest::new("s;1".into(), "r".into(), "c".into(), t, 0);
        r.subscription = Some(SubscriptionId::parse("tel:+34671999000").unwrap());
        r.requested_action = action;
        if units {
            r.requested = Some(Units::money(Money::new(
                Decimal::new(1, 2),
                currency("EUR").unwrap(),
            )));
        }
        r.service_identifier = service_identifier;
        r.style = style;
        let d = Dictionary::builtin().unwrap();
        let bytes = r.to_message(&local()).unwrap().to_bytes().unwrap();
        let msg = Message::decode(bytes, &d, &Limits::default()).unwrap();
        let read = CreditControlRequest::read(&msg, currency("EUR").unwrap()).unwrap();
        (read, Placement::of(&msg))
    }

    /// The code of the AVP a refusal names, or None when served.
    fn verdict(p: Profile, r: &(CreditControlRequest, Placement)) -> Option<AvpCode> {
        p.check(&r.0, &r.1).err().map(|e| e.missing.code)
    }

    use RequestedAction::{CheckBalance, DirectDebiting, PriceEnquiry, RefundAccount};
    use UnitsStyle::{CommandLevel, Mscc};

    #[test]
    fn names_parse_and_print() {
        for n in Profile::NAMES {
            assert_eq!(n.parse::<Profile>().unwrap().name(), n);
        }
        let e = "RFC4006".parse::<Profile>().unwrap_err();
        assert!(
            e.contains("\"RFC4006\"") && e.contains("any, rfc4006, 3gpp"),
            "{e}"
        );
        assert_eq!(Profile::default(), Profile::Any);
    }

    #[test]
    fn placement_is_read_from_the_message() {
        let (_, at) = received(RequestType::Event, Some(DirectDebiting), true, None, Mscc);
        assert!(at.mscc && at.mscc_units && !at.command_units());
        let (_, at) = received(
            RequestType::Event,
            Some(DirectDebiting),
            true,
            Some(7),
            CommandLevel,
        );
        assert!(!at.mscc && at.command_rsu && at.command_service_identifier);
        // An MSCC with only a Service-Identifier carries no units.
        let (_, at) = received(RequestType::Event, Some(PriceEnquiry), false, Some(7), Mscc);
        assert!(at.mscc && !at.mscc_units && !at.command_service_identifier);
    }

    #[test]
    fn any_serves_both_styles() {
        for style in [CommandLevel, Mscc] {
            for t in [RequestType::Event, RequestType::Initial] {
                let r = received(t, Some(DirectDebiting), true, None, style);
                assert_eq!(verdict(Profile::Any, &r), None, "{t:?} {style:?}");
            }
        }
    }

    #[test]
    fn rfc4006_wants_event_units_at_command_level() {
        let rsu = Some(AvpCode::REQUESTED_SERVICE_UNIT);
        let p = Profile::Rfc4006;
        for action in [DirectDebiting, RefundAccount, CheckBalance, PriceEnquiry] {
            let r = received(RequestType::Event, Some(action), true, None, Mscc);
            assert_eq!(verdict(p, &r), rsu, "{action:?} in MSCC");
            let r = received(RequestType::Event, Some(action), true, None, CommandLevel);
            assert_eq!(verdict(p, &r), None, "{action:?} at command level");
        }
        for action in [DirectDebiting, RefundAccount] {
            let r = received(RequestType::Event, Some(action), false, None, CommandLevel);
            assert_eq!(verdict(p, &r), rsu, "{action:?} without units");
        }
        // CHECK_BALANCE needs no units; PRICE_ENQUIRY a command-level Service-Identifier.
        let r = received(RequestType::Event, Some(CheckBalance), false, None, Mscc);
        assert_eq!(verdict(p, &r), None);
        let r = received(
            RequestType::Event,
            Some(PriceEnquiry),
            false,
            Some(7),
            CommandLevel,
        );
        assert_eq!(verdict(p, &r), None);
        let r = received(RequestType::Event, Some(PriceEnquiry), false, Some(7), Mscc);
        assert_eq!(verdict(p, &r), Some(AvpCode::SERVICE_IDENTIFIER));
        // Sessions: both styles.
        for style in [CommandLevel, Mscc] {
            for t in [
                RequestType::Initial,
                RequestType::Update,
                RequestType::Termination,
            ] {
                let r = received(t, None, true, None, style);
                assert_eq!(verdict(p, &r), None, "{t:?} {style:?}");
            }
        }
    }

    #[test]
    fn three_gpp_wants_units_in_mscc() {
        let mscc = Some(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL);
        let p = Profile::ThreeGpp;
        for t in [
            RequestType::Event,
            RequestType::Initial,
            RequestType::Update,
            RequestType::Termination,
        ] {
            let r = received(t, Some(DirectDebiting), true, None, CommandLevel);
            assert_eq!(verdict(p, &r), mscc, "{t:?} at command level");
            let r = received(t, Some(DirectDebiting), true, None, Mscc);
            assert_eq!(verdict(p, &r), None, "{t:?} in MSCC");
        }
        // A debit, a refund, a reservation without any units: the MSCC is missing.
        for (t, a) in [
            (RequestType::Event, Some(DirectDebiting)),
            (RequestType::Event, Some(RefundAccount)),
            (RequestType::Initial, None),
        ] {
            let r = received(t, a, false, None, CommandLevel);
            assert_eq!(verdict(p, &r), mscc, "{t:?} {a:?}");
        }
        // A balance check and a termination without units are fine.
        let r = received(
            RequestType::Event,
            Some(CheckBalance),
            false,
            None,
            CommandLevel,
        );
        assert_eq!(verdict(p, &r), None);
        let r = received(RequestType::Termination, None, false, None, Mscc);
        assert_eq!(verdict(p, &r), None);
    }

    #[test]
    fn the_refusal_is_5005_with_an_example_and_a_message() {
        let r = received(RequestType::Event, Some(DirectDebiting), true, None, Mscc);
        let refusal = Profile::Rfc4006.check(&r.0, &r.1).unwrap_err();
        let a = refusal.answer(&r.0);
        assert_eq!(a.result_code, ResultCode::MISSING_AVP);
        let f = a.failed_avp.unwrap();
        assert_eq!(f.code, AvpCode::REQUESTED_SERVICE_UNIT);
        assert_eq!(
            f.avp.unwrap().value,
            crate::diameter::codec::AvpValue::Grouped(vec![])
        );
        let text = a.error_message.unwrap();
        assert!(
            text.contains("DIRECT_DEBITING") && text.contains("command-level"),
            "{text}"
        );
    }
}
