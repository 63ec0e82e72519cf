//! Where the units of a request travel, per kind of request, and what the client learnt of
//! each OCS (RFC 8506 sections 8.16 and 8.18-8.19; 3GPP TS 32.299 section 6.4).
//!
//! ```text
//! RFC 4006-literal OCS, EVENT:   CCR { ..., Requested-Service-Unit { CC-Money } }
//! 3GPP Ro OCS (events, sessions): CCR { ..., Multiple-Services-Indicator,
//!                                        Multiple-Services-Credit-Control { RSU { CC-Money } } }
//! ```
//!
//! Each kind (`events`: CCR EVENT; `sessions`: INITIAL/UPDATE/TERMINATION) is `mscc`,
//! `command_level` or `auto`. In `auto` the first request of a kind goes in MSCC (the 3GPP
//! form) unless a style was learnt; an answer 5001/5004/5005/5008 whose Failed-AVP names a
//! units AVP (the OCS refused the request without applying it) makes the caller send it once
//! more, as a new request, in the other style ([`CreditControlClient::fallback`]). The style
//! that worked is recorded per OCS (its Origin-Host) in the [`StyleBook`], announced once at
//! WARN with the configuration line that pins it, and handed to a listener that keeps it in
//! the store, so that a restart or another instance does not learn it again.
//!
//! [`CreditControlClient::fallback`]: super::CreditControlClient::fallback

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::message::{FailedAvp, RequestType, UnitsStyle};
use crate::diameter::codec::{AvpCode, ResultCode, VendorId};

/// How the units style of one kind of request is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleChoice {
    /// Units inside Multiple-Services-Credit-Control (3GPP Gy/Ro).
    Mscc,
    /// Units at command level (RFC 4006 section 3.1 as written).
    CommandLevel,
    /// Learnt per OCS from its answers (MSCC until it says otherwise).
    #[default]
    Auto,
}

impl StyleChoice {
    pub const NAMES: &'static str = "mscc, command_level or auto";

    pub fn name(self) -> &'static str {
        match self {
            Self::Mscc => "mscc",
            Self::CommandLevel => "command_level",
            Self::Auto => "auto",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "mscc" => Some(Self::Mscc),
            "command_level" => Some(Self::CommandLevel),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }

    /// The fixed style, unless learnt.
    pub fn pinned(self) -> Option<UnitsStyle> {
        match self {
            Self::Mscc => Some(UnitsStyle::Mscc),
            Self::CommandLevel => Some(UnitsStyle::CommandLevel),
            Self::Auto => None,
        }
    }
}

impl From<UnitsStyle> for StyleChoice {
    fn from(s: UnitsStyle) -> Self {
        match s {
            UnitsStyle::Mscc => Self::Mscc,
            UnitsStyle::CommandLevel => Self::CommandLevel,
        }
    }
}

/// The configuration name of a units style (`mscc`, `command_level`).
pub fn style_name(s: UnitsStyle) -> &'static str {
    StyleChoice::from(s).name()
}

/// The style that is not `s`.
pub fn other(s: UnitsStyle) -> UnitsStyle {
    match s {
        UnitsStyle::Mscc => UnitsStyle::CommandLevel,
        UnitsStyle::CommandLevel => UnitsStyle::Mscc,
    }
}

/// The two kinds of request an OCS may treat differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// CCR EVENT (one-time: debit, refund, balance check, price enquiry).
    Events,
    /// CCR INITIAL, UPDATE, TERMINATION (reservations).
    Sessions,
}

impl RequestKind {
    pub const ALL: [Self; 2] = [Self::Events, Self::Sessions];

    pub fn of(t: RequestType) -> Self {
        match t {
            RequestType::Event => Self::Events,
            _ => Self::Sessions,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Sessions => "sessions",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "events" => Some(Self::Events),
            "sessions" => Some(Self::Sessions),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Events => 0,
            Self::Sessions => 1,
        }
    }
}

/// `credit_control.style`: one choice per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StyleConfig {
    pub events: StyleChoice,
    pub sessions: StyleChoice,
}

impl StyleConfig {
    /// Both kinds the same.
    pub fn both(c: StyleChoice) -> Self {
        Self {
            events: c,
            sessions: c,
        }
    }

    pub fn choice(&self, kind: RequestKind) -> StyleChoice {
        match kind {
            RequestKind::Events => self.events,
            RequestKind::Sessions => self.sessions,
        }
    }
}

impl Serialize for StyleConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StyleConfig", 2)?;
        st.serialize_field("events", &self.events)?;
        st.serialize_field("sessions", &self.sessions)?;
        st.end()
    }
}

/// `style = "auto"` (both kinds), or `[credit_control.style] events = "..."`, `sessions =
/// "..."` (a kind left out is `auto`). Errors name the member and the accepted values.
impl<'de> Deserialize<'de> for StyleConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn choice<E: serde::de::Error>(what: &str, v: &str) -> Result<StyleChoice, E> {
            StyleChoice::from_name(v).ok_or_else(|| {
                E::custom(format!(
                    "{what}\"{v}\" is not a units style: {}",
                    StyleChoice::NAMES
                ))
            })
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StyleConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{} (both kinds), or a table {{ events = ..., sessions = ... }}",
                    StyleChoice::NAMES
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StyleConfig, E> {
                choice("", v).map(StyleConfig::both)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StyleConfig, A::Error> {
                let mut out = StyleConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    match RequestKind::from_name(&key) {
                        Some(RequestKind::Events) => out.events = choice("events: ", &value)?,
                        Some(RequestKind::Sessions) => out.sessions = choice("sessions: ", &value)?,
                        None => {
                            return Err(serde::de::Error::custom(format!(
                                "unknown member \"{key}\": events or sessions"
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a style is known for an OCS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Evidence {
    /// The OCS answered a request in this style without refusing where its units were.
    Accepted,
    /// The OCS refused the other style (`refusal` says how) and accepted this one.
    Fallback { refusal: String },
}

/// A style an OCS was seen to take for one kind of request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedStyle {
    /// The OCS (Origin-Host of its answers, lower case).
    pub ocs: String,
    pub kind: RequestKind,
    pub style: UnitsStyle,
    #[serde(flatten)]
    pub evidence: Evidence,
    /// When it was learnt (ms since the epoch).
    pub learned_ms: i64,
}

impl LearnedStyle {
    /// The configuration line that pins this style.
    pub fn config_line(&self) -> String {
        format!(
            "[credit_control.style] {} = \"{}\"",
            self.kind.name(),
            style_name(self.style)
        )
    }
}

/// The AVPs that carry units or their place: a Failed-AVP naming one of them says the OCS
/// objected to where (or how) the units were sent.
pub fn is_units_avp(code: AvpCode, vendor: VendorId) -> bool {
    vendor == VendorId::IETF
        && matches!(
            code,
            AvpCode::REQUESTED_SERVICE_UNIT
                | AvpCode::USED_SERVICE_UNIT
                | AvpCode::GRANTED_SERVICE_UNIT
                | AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL
                | AvpCode::MULTIPLE_SERVICES_INDICATOR
                | AvpCode::CC_MONEY
                | AvpCode::UNIT_VALUE
                | AvpCode::VALUE_DIGITS
                | AvpCode::EXPONENT
                | AvpCode::CURRENCY_CODE
                | AvpCode::CC_TIME
                | AvpCode::CC_TOTAL_OCTETS
                | AvpCode::CC_INPUT_OCTETS
                | AvpCode::CC_OUTPUT_OCTETS
                | AvpCode::CC_SERVICE_SPECIFIC_UNITS
        )
}

/// True when an answer refused the request over where its units were: Result-Code 5001,
/// 5004, 5005 or 5008 (permanent failures: the OCS did not apply it) and a Failed-AVP naming
/// a units AVP, at its top or inside it (`members`: the AVPs inside it, first ones first).
pub fn refuses_units(
    result: ResultCode,
    failed: Option<&FailedAvp>,
    members: &[(AvpCode, VendorId)],
) -> bool {
    matches!(result.0, 5001 | 5004 | 5005 | 5008)
        && failed.is_some_and(|f| {
            is_units_avp(f.code, f.vendor) || members.iter().any(|(c, v)| is_units_avp(*c, *v))
        })
}

/// Per-OCS units styles, learnt or confirmed, with the configured choice per kind.
pub struct StyleBook {
    config: StyleConfig,
    /// Per kind: OCS (lower case) -> what is known.
    known: [DashMap<String, LearnedStyle>; 2],
    /// Per kind: the style last learnt from any OCS (0 none, 1 MSCC, 2 command level), used
    /// when the request names no Destination-Host.
    latest: [AtomicU8; 2],
    listener: Mutex<Option<mpsc::UnboundedSender<LearnedStyle>>>,
}

impl fmt::Debug for StyleBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StyleBook")
            .field("config", &self.config)
            .field("known", &(self.known[0].len() + self.known[1].len()))
            .finish()
    }
}

fn encode(s: Option<UnitsStyle>) -> u8 {
    match s {
        None => 0,
        Some(UnitsStyle::Mscc) => 1,
        Some(UnitsStyle::CommandLevel) => 2,
    }
}

fn decode(v: u8) -> Option<UnitsStyle> {
    match v {
        1 => Some(UnitsStyle::Mscc),
        2 => Some(UnitsStyle::CommandLevel),
        _ => None,
    }
}

impl StyleBook {
    pub fn new(config: StyleConfig) -> Self {
        Self {
            config,
            known: [DashMap::new(), DashMap::new()],
            latest: [AtomicU8::new(0), AtomicU8::new(0)],
            listener: Mutex::new(None),
        }
    }

    pub fn config(&self) -> StyleConfig {
        self.config
    }

    /// Whether `kind` is learnt (`auto`).
    pub fn is_auto(&self, kind: RequestKind) -> bool {
        self.config.choice(kind) == StyleChoice::Auto
    }

    /// Every style learnt from now on is also sent here (to be kept in the store).
    pub fn set_listener(&self, tx: mpsc::UnboundedSender<LearnedStyle>) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// The style of a new request of `kind` to `destination_host` (or to the realm).
    pub fn style(&self, kind: RequestKind, destination_host: Option<&str>) -> UnitsStyle {
        if let Some(s) = self.config.choice(kind).pinned() {
            return s;
        }
        if let Some(h) = destination_host
            && let Some(l) = self.known[kind.index()].get(lower(h).as_ref())
        {
            return l.style;
        }
        decode(self.latest[kind.index()].load(Ordering::Relaxed)).unwrap_or(UnitsStyle::Mscc)
    }

    /// What is known of `ocs` for `kind`.
    pub fn known(&self, ocs: &str, kind: RequestKind) -> Option<LearnedStyle> {
        self.known[kind.index()]
            .get(lower(ocs).as_ref())
            .map(|l| l.clone())
    }

    /// Everything known, sorted by OCS then kind.
    pub fn snapshot(&self) -> Vec<LearnedStyle> {
        let mut v: Vec<LearnedStyle> = self
            .known
            .iter()
            .flat_map(|m| m.iter().map(|e| e.value().clone()).collect::<Vec<_>>())
            .collect();
        v.sort_by(|a, b| (&a.ocs, a.kind.index()).cmp(&(&b.ocs, b.kind.index())));
        v
    }

    /// An answer from `ocs` took `style` for `kind` without refusing where the units were.
    /// Cheap when nothing is new (one map look-up): called on every answer in `auto`.
    pub fn accepted(&self, ocs: &str, kind: RequestKind, style: UnitsStyle, now_ms: i64) {
        if !self.is_auto(kind) || ocs.is_empty() {
            return;
        }
        let ocs = lower(ocs);
        if self.known[kind.index()]
            .get(ocs.as_ref())
            .is_some_and(|l| l.style == style)
        {
            return;
        }
        self.put(
            LearnedStyle {
                ocs: ocs.into_owned(),
                kind,
                style,
                evidence: Evidence::Accepted,
                learned_ms: now_ms,
            },
            true,
        );
    }

    /// `ocs` refused the other style (`refusal`) and accepted `style` for `kind`: logged once
    /// at WARN with the line that pins it.
    pub fn learnt(
        &self,
        ocs: &str,
        kind: RequestKind,
        style: UnitsStyle,
        refusal: String,
        now_ms: i64,
    ) {
        let l = LearnedStyle {
            ocs: ocs.to_ascii_lowercase(),
            kind,
            style,
            evidence: Evidence::Fallback { refusal },
            learned_ms: now_ms,
        };
        if let Evidence::Fallback { refusal } = &l.evidence {
            warn!(
                ocs = %l.ocs,
                kind = kind.name(),
                style = style_name(style),
                refusal = %refusal,
                "learnt the OCS's units style: it refused the other one; to pin it, configure {}",
                l.config_line()
            );
        }
        self.put(l, true);
    }

    /// A style read from the store (learnt before a restart, or by another instance).
    pub fn seed(&self, l: LearnedStyle) {
        let mut l = l;
        l.ocs = lower(&l.ocs).into_owned();
        if self.known[l.kind.index()]
            .get(&l.ocs)
            .is_some_and(|k| *k == l)
        {
            return;
        }
        info!(
            ocs = %l.ocs,
            kind = l.kind.name(),
            style = style_name(l.style),
            "units style known from the store"
        );
        self.put(l, false);
    }

    fn put(&self, l: LearnedStyle, announce: bool) {
        let kind = l.kind;
        self.latest[kind.index()].store(encode(Some(l.style)), Ordering::Relaxed);
        if announce
            && let Some(tx) = self
                .listener
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            let _ = tx.send(l.clone());
        }
        self.known[kind.index()].insert(l.ocs.clone(), l);
    }
}

/// `s` in lower case, borrowed when it already is (Origin-Hosts usually are: no allocation on
/// the answer path).
pub(crate) fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: AvpCode) -> FailedAvp {
        FailedAvp {
            code,
            vendor: VendorId::IETF,
            avp: None,
        }
    }

    fn ietf(codes: &[AvpCode]) -> Vec<(AvpCode, VendorId)> {
        codes.iter().map(|c| (*c, VendorId::IETF)).collect()
    }

    #[test]
    fn a_units_refusal_needs_a_permanent_code_and_a_units_avp() {
        let rsu = failed(AvpCode::REQUESTED_SERVICE_UNIT);
        for rc in [5001, 5004, 5005, 5008] {
            assert!(refuses_units(ResultCode(rc), Some(&rsu), &[]), "{rc}");
        }
        // Not the units: another missing AVP, or no Failed-AVP at all.
        let sub = failed(AvpCode::SUBSCRIPTION_ID);
        assert!(!refuses_units(ResultCode(5005), Some(&sub), &[]));
        assert!(!refuses_units(ResultCode(5005), None, &[]));
        // Other codes do not say where the units belong.
        for rc in [2001, 4012, 5012, 5030, 5031, 3001] {
            assert!(!refuses_units(ResultCode(rc), Some(&rsu), &[]), "{rc}");
        }
        // A member of a Grouped Failed-AVP counts.
        let mscc = failed(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL);
        let members = ietf(&[AvpCode::REQUESTED_SERVICE_UNIT]);
        assert!(refuses_units(ResultCode(5008), Some(&mscc), &members));
        let members = ietf(&[AvpCode::CC_MONEY]);
        assert!(refuses_units(ResultCode(5004), Some(&sub), &members));
        // A vendor AVP with a colliding code is not ours.
        let vendor = FailedAvp {
            vendor: VendorId::TGPP,
            ..rsu.clone()
        };
        assert!(!refuses_units(ResultCode(5005), Some(&vendor), &[]));
    }

    #[test]
    fn pinned_styles_never_change_and_auto_follows_the_ocs() {
        let book = StyleBook::new(StyleConfig {
            events: StyleChoice::Auto,
            sessions: StyleChoice::CommandLevel,
        });
        assert_eq!(book.style(RequestKind::Events, None), UnitsStyle::Mscc);
        assert_eq!(
            book.style(RequestKind::Sessions, None),
            UnitsStyle::CommandLevel
        );
        book.learnt(
            "OCS1.example",
            RequestKind::Events,
            UnitsStyle::CommandLevel,
            "5005".into(),
            1,
        );
        assert_eq!(
            book.style(RequestKind::Events, None),
            UnitsStyle::CommandLevel
        );
        assert_eq!(
            book.style(RequestKind::Events, Some("ocs1.EXAMPLE")),
            UnitsStyle::CommandLevel
        );
        // Learning never touches a pinned kind.
        book.accepted("ocs1.example", RequestKind::Sessions, UnitsStyle::Mscc, 2);
        assert_eq!(
            book.style(RequestKind::Sessions, None),
            UnitsStyle::CommandLevel
        );
        assert!(book.known("ocs1.example", RequestKind::Sessions).is_none());
        // Another OCS of the realm that accepts MSCC: requests to it by host go in MSCC.
        book.accepted("ocs2.example", RequestKind::Events, UnitsStyle::Mscc, 3);
        assert_eq!(
            book.style(RequestKind::Events, Some("ocs2.example")),
            UnitsStyle::Mscc
        );
        assert_eq!(
            book.style(RequestKind::Events, Some("ocs1.example")),
            UnitsStyle::CommandLevel
        );
        let all = book.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ocs, "ocs1.example");
        assert_eq!(
            all[0].config_line(),
            "[credit_control.style] events = \"command_level\""
        );
    }

    #[test]
    fn what_is_learnt_reaches_the_listener_once() {
        let book = StyleBook::new(StyleConfig::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        book.set_listener(tx);
        book.accepted("ocs", RequestKind::Events, UnitsStyle::Mscc, 1);
        book.accepted("ocs", RequestKind::Events, UnitsStyle::Mscc, 2);
        assert_eq!(rx.try_recv().map(|l| l.learned_ms), Ok(1));
        assert!(rx.try_recv().is_err(), "the same style again is not news");
        // A style from the store is known but not sent back to it.
        book.seed(LearnedStyle {
            ocs: "ocs".into(),
            kind: RequestKind::Sessions,
            style: UnitsStyle::CommandLevel,
            evidence: Evidence::Accepted,
            learned_ms: 5,
        });
        assert!(rx.try_recv().is_err());
        assert_eq!(
            book.style(RequestKind::Sessions, None),
            UnitsStyle::CommandLevel
        );
    }

    #[test]
    fn the_setting_reads_one_word_or_a_table_and_names_what_is_wrong() {
        #[derive(Deserialize)]
        struct W {
            style: StyleConfig,
        }
        let one: W = toml::from_str("style = \"command_level\"").unwrap();
        assert_eq!(one.style, StyleConfig::both(StyleChoice::CommandLevel));
        let table: W = toml::from_str("[style]\nevents = \"command_level\"").unwrap();
        assert_eq!(table.style.events, StyleChoice::CommandLevel);
        assert_eq!(table.style.sessions, StyleChoice::Auto);
        let e = toml::from_str::<W>("style = \"rfc4006\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"rfc4006\" is not a units style"), "{e}");
        let e = toml::from_str::<W>("style = { event = \"mscc\" }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown member \"event\""), "{e}");
        let e = toml::from_str::<W>("style = { sessions = \"x\" }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("sessions: \"x\""), "{e}");
        let back = toml::to_string(&StyleConfig::both(StyleChoice::Auto)).unwrap();
        assert!(back.contains("events = \"auto\""), "{back}");
    }
}
