//! Golden byte vectors: `tests/data/*.hex`, written by hand from RFC 6733 sections 3 and 4 and
//! the grammars of RFC 6733 section 5 and RFC 8506 sections 3 and 8 (format:
//! `tests/data/README.md`).
//!
//! For each message:
//! - the project's builders, with fixed identities, ids and timestamps, encode to exactly the
//!   golden bytes;
//! - the decoder reads back the header fields and every AVP (name, code, flags, vendor, value)
//!   listed below, and decode -> owned -> encode gives the golden bytes again;
//! - the bytes, walked by hand at the RFC offsets without the codec, hold the same header and
//!   AVPs, with lengths, padding and totals that add up;
//! - the message passes its command's grammar in the bundled dictionaries.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use bytes::Bytes;
use charging_gateway::credit_control::money::currency;
use charging_gateway::credit_control::{
    CcFailureHandling, CreditControlAnswer, CreditControlRequest, FinalUnitAction, Money,
    MsccAnswer, RequestType, RequestedAction, ServiceParameter, ServiceParameterType,
    SubscriptionId, Units, UnitsStyle,
};
use charging_gateway::diameter::codec::{
    Address, Avp, AvpBuf, AvpCode, DataType, Limits, Message, MessageBuf, ResultCode, Time,
    VendorId,
};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::peer::{Capabilities, DisconnectCause, LocalIdentity, messages};
use rust_decimal::Decimal;

// ---------------------------------------------------------------------------------------------
// Reading the .hex files

/// The bytes of `tests/data/<name>`: every hex digit outside `#` comments, in order.
fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut digits = String::new();
    for (n, line) in text.lines().enumerate() {
        let data = line.split('#').next().unwrap_or("");
        for c in data.chars().filter(|c| !c.is_whitespace()) {
            assert!(
                c.is_ascii_hexdigit(),
                "{name}:{}: {c:?} is not a hex digit",
                n + 1
            );
            digits.push(c);
        }
    }
    assert!(
        digits.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    hex::decode(&digits).unwrap()
}

// ---------------------------------------------------------------------------------------------
// What the RFC layout says each message holds

const R: u8 = 0x80;
const P: u8 = 0x40;
const M: u8 = 0x40;
const V: u8 = 0x80;
const TGPP: u32 = 10415;

#[derive(Debug)]
enum Val {
    /// UTF8String or DiameterIdentity.
    Text(&'static str),
    U32(u32),
    U64(u64),
    I32(i32),
    I64(i64),
    Octets(&'static [u8]),
    /// Address of family IPv4 or IPv6.
    Ip(&'static str),
    /// Time: the wire value (NTP seconds) and the instant it stands for.
    Time(u32, &'static str),
    Group(Vec<Exp>),
}

#[derive(Debug)]
struct Exp {
    name: &'static str,
    code: u32,
    /// The flag octet as on the wire (V, M, P).
    flags: u8,
    vendor: Option<u32>,
    value: Val,
}

fn avp(name: &'static str, code: u32, flags: u8, value: Val) -> Exp {
    Exp {
        name,
        code,
        flags,
        vendor: None,
        value,
    }
}

fn vendor_avp(name: &'static str, code: u32, vendor: u32, flags: u8, value: Val) -> Exp {
    Exp {
        name,
        code,
        flags: flags | V,
        vendor: Some(vendor),
        value,
    }
}

struct Golden {
    file: &'static str,
    flags: u8,
    code: u32,
    application: u32,
    hop_by_hop: u32,
    end_to_end: u32,
    avps: Vec<Exp>,
    /// The message as the project's builders make it.
    built: MessageBuf,
}

fn text(name: &'static str, code: u32, s: &'static str) -> Exp {
    avp(name, code, M, Val::Text(s))
}

fn u32_avp(name: &'static str, code: u32, v: u32) -> Exp {
    avp(name, code, M, Val::U32(v))
}

fn enum_avp(name: &'static str, code: u32, v: i32) -> Exp {
    avp(name, code, M, Val::I32(v))
}

fn origin(host: &'static str) -> [Exp; 2] {
    [
        text("Origin-Host", 264, host),
        text("Origin-Realm", 296, "example.net"),
    ]
}

fn capabilities(
    host: &'static str,
    ip: &'static str,
    product: &'static str,
    state: u32,
) -> Vec<Exp> {
    let [h, r] = origin(host);
    vec![
        h,
        r,
        avp("Host-IP-Address", 257, M, Val::Ip(ip)),
        u32_avp("Vendor-Id", 266, 0),
        avp("Product-Name", 269, 0, Val::Text(product)),
        u32_avp("Origin-State-Id", 278, state),
        u32_avp("Supported-Vendor-Id", 265, TGPP),
        u32_avp("Auth-Application-Id", 258, 4),
        avp(
            "Vendor-Specific-Application-Id",
            260,
            M,
            Val::Group(vec![
                u32_avp("Vendor-Id", 266, TGPP),
                u32_avp("Auth-Application-Id", 258, 4),
            ]),
        ),
        avp("Firmware-Revision", 267, 0, Val::U32(1)),
    ]
}

/// CC-Money 4.99 EUR.
fn money_499() -> Exp {
    avp(
        "CC-Money",
        413,
        M,
        Val::Group(vec![
            avp(
                "Unit-Value",
                445,
                M,
                Val::Group(vec![
                    avp("Value-Digits", 447, M, Val::I64(499)),
                    avp("Exponent", 429, M, Val::I32(-2)),
                ]),
            ),
            u32_avp("Currency-Code", 425, 978),
        ]),
    )
}

/// The AVPs every CCR here starts with (RFC 8506 section 3.1, builder order).
fn ccr_head(session: &'static str, kind: i32, number: u32) -> Vec<Exp> {
    let [h, r] = origin("gw.example.net");
    vec![
        text("Session-Id", 263, session),
        h,
        r,
        text("Destination-Realm", 283, "ocs.example.net"),
        u32_avp("Auth-Application-Id", 258, 4),
        text("Service-Context-Id", 461, "32251@3gpp.org"),
        enum_avp("CC-Request-Type", 416, kind),
        u32_avp("CC-Request-Number", 415, number),
    ]
}

fn event_timestamp(ntp: u32, at: &'static str) -> Exp {
    avp("Event-Timestamp", 55, M, Val::Time(ntp, at))
}

fn subscription_e164() -> Exp {
    avp(
        "Subscription-Id",
        443,
        M,
        Val::Group(vec![
            enum_avp("Subscription-Id-Type", 450, 0),
            text("Subscription-Id-Data", 444, "34671999000"),
        ]),
    )
}

fn reference_code() -> Exp {
    avp(
        "Service-Parameter-Info",
        440,
        M,
        Val::Group(vec![
            u32_avp("Service-Parameter-Type", 441, 1),
            avp("Service-Parameter-Value", 442, M, Val::Octets(b"ref-1")),
        ]),
    )
}

// ---------------------------------------------------------------------------------------------
// The same messages from the project's builders

fn gw() -> LocalIdentity {
    LocalIdentity {
        origin_host: "gw.example.net".into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["192.0.2.1".parse().unwrap()],
        vendor_id: 0,
        product_name: "charging-gateway".into(),
        firmware_revision: 1,
        origin_state_id: 1_700_000_000,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![(TGPP, 4)],
        supported_vendor_ids: vec![TGPP],
    }
}

fn ocs() -> LocalIdentity {
    LocalIdentity {
        origin_host: "ocs.example.net".into(),
        host_ip_addresses: vec!["192.0.2.2".parse().unwrap()],
        product_name: "ocs-sim".into(),
        origin_state_id: 7,
        ..gw()
    }
}

fn eur(amount: &str) -> Money {
    Money::new(Decimal::from_str(amount).unwrap(), currency("EUR").unwrap())
}

fn request(kind: RequestType, number: u32, session: &str) -> CreditControlRequest {
    let mut r = CreditControlRequest::new(
        session.into(),
        "ocs.example.net".into(),
        "32251@3gpp.org".into(),
        kind,
        number,
    );
    r.event_timestamp = Time::from_unix(1_700_000_000 + 60 * i64::from(number));
    r.subscription = Some(SubscriptionId::parse("tel:+34671999000").unwrap());
    r
}

fn initial_request() -> CreditControlRequest {
    let mut r = request(RequestType::Initial, 0, "gw.example.net;1700000000;1");
    r.style = UnitsStyle::Mscc;
    r.requested = Some(Units::money(eur("4.99")));
    r.service_identifier = Some(1000);
    r.rating_group = Some(7);
    r.service_parameters.push(ServiceParameter::new(
        ServiceParameterType::ReferenceCode,
        "ref-1",
    ));
    r.extra.push(
        AvpBuf::grouped(
            AvpCode::SERVICE_INFORMATION,
            vec![
                AvpBuf::grouped(
                    AvpCode::PS_INFORMATION,
                    vec![
                        AvpBuf::octets(AvpCode::TGPP_CHARGING_ID, &b"\x00\x00\x00\x2a"[..])
                            .vendor(VendorId::TGPP)
                            .mandatory(false),
                    ],
                )
                .vendor(VendorId::TGPP),
            ],
        )
        .vendor(VendorId::TGPP),
    );
    r
}

fn with_ids(mut m: MessageBuf, hop_by_hop: u32, end_to_end: u32) -> MessageBuf {
    m.header.hop_by_hop = hop_by_hop;
    m.header.end_to_end = end_to_end;
    m
}

fn ccr_initial_built() -> MessageBuf {
    with_ids(initial_request().to_message(&gw()).unwrap(), 0xa001, 0xb001)
}

fn ccr_update_built() -> MessageBuf {
    let mut r = request(RequestType::Update, 1, "gw.example.net;1700000000;1");
    r.style = UnitsStyle::Mscc;
    r.requested = Some(Units::default());
    r.used = Some(Units {
        time: Some(60),
        total_octets: Some(1_048_576),
        ..Units::default()
    });
    r.rating_group = Some(1);
    with_ids(r.to_message(&gw()).unwrap(), 0xa002, 0xb002)
}

fn ccr_termination_built() -> MessageBuf {
    let mut r = request(RequestType::Termination, 2, "gw.example.net;1700000000;1");
    r.style = UnitsStyle::CommandLevel;
    r.termination_cause = Some(1);
    r.service_identifier = Some(1000);
    r.used = Some(Units {
        time: Some(120),
        ..Units::default()
    });
    with_ids(r.to_message(&gw()).unwrap(), 0xa003, 0xb003)
}

fn ccr_event_built() -> MessageBuf {
    let mut r = request(RequestType::Event, 0, "gw.example.net;1700000000;2");
    r.style = UnitsStyle::CommandLevel;
    r.destination_host = Some("ocs.example.net".into());
    r.requested_action = Some(RequestedAction::DirectDebiting);
    r.service_identifier = Some(1000);
    r.requested = Some(Units::money(eur("4.99")));
    r.service_parameters.push(ServiceParameter::new(
        ServiceParameterType::ReferenceCode,
        "ref-1",
    ));
    with_ids(r.to_message(&gw()).unwrap(), 0xa004, 0xb004)
}

fn cca_mscc_built() -> MessageBuf {
    let mut a = CreditControlAnswer::new(&initial_request(), ResultCode::SUCCESS);
    a.mscc.push(MsccAnswer {
        result_code: Some(ResultCode::SUCCESS),
        granted: Some(Units::money(eur("4.99"))),
        validity_time: Some(3600),
        service_identifier: Some(1000),
        rating_group: Some(7),
        final_unit_action: Some(FinalUnitAction::Terminate),
    });
    a.cc_failure_handling = Some(CcFailureHandling::Continue);
    a.to_message(&ccr_initial_built().header, &ocs(), UnitsStyle::Mscc)
        .unwrap()
}

fn goldens() -> Vec<Golden> {
    let cer = messages::cer(&gw(), 1, 2);
    let dwr = messages::dwr(&gw(), 3, 4);
    let dpr = messages::dpr(&gw(), DisconnectCause::Busy, 5, 6);
    let result_2001 = || u32_avp("Result-Code", 268, 2001);
    let session_1 = "gw.example.net;1700000000;1";

    let mut cea_avps = vec![result_2001()];
    cea_avps.extend(capabilities("ocs.example.net", "192.0.2.2", "ocs-sim", 7));

    let mut dwr_avps: Vec<Exp> = origin("gw.example.net").into();
    dwr_avps.push(u32_avp("Origin-State-Id", 278, 1_700_000_000));
    let mut dwa_avps = vec![result_2001()];
    dwa_avps.extend(origin("ocs.example.net"));
    dwa_avps.push(u32_avp("Origin-State-Id", 278, 7));
    let mut dpr_avps: Vec<Exp> = origin("gw.example.net").into();
    dpr_avps.push(enum_avp("Disconnect-Cause", 273, 1));
    let mut dpa_avps = vec![result_2001()];
    dpa_avps.extend(origin("ocs.example.net"));

    let mut initial = ccr_head(session_1, 1, 0);
    initial.extend([
        u32_avp("Origin-State-Id", 278, 1_700_000_000),
        event_timestamp(0xe8fe_6f80, "2023-11-14T22:13:20Z"),
        subscription_e164(),
        enum_avp("Multiple-Services-Indicator", 455, 1),
        avp(
            "Multiple-Services-Credit-Control",
            456,
            M,
            Val::Group(vec![
                avp(
                    "Requested-Service-Unit",
                    437,
                    M,
                    Val::Group(vec![money_499()]),
                ),
                u32_avp("Service-Identifier", 439, 1000),
                u32_avp("Rating-Group", 432, 7),
            ]),
        ),
        reference_code(),
        vendor_avp(
            "Service-Information",
            873,
            TGPP,
            M,
            Val::Group(vec![vendor_avp(
                "PS-Information",
                874,
                TGPP,
                M,
                Val::Group(vec![vendor_avp(
                    "3GPP-Charging-Id",
                    2,
                    TGPP,
                    0,
                    Val::Octets(&[0, 0, 0, 0x2a]),
                )]),
            )]),
        ),
    ]);

    let mut update = ccr_head(session_1, 2, 1);
    update.extend([
        u32_avp("Origin-State-Id", 278, 1_700_000_000),
        event_timestamp(0xe8fe_6fbc, "2023-11-14T22:14:20Z"),
        subscription_e164(),
        enum_avp("Multiple-Services-Indicator", 455, 1),
        avp(
            "Multiple-Services-Credit-Control",
            456,
            M,
            Val::Group(vec![
                avp("Requested-Service-Unit", 437, M, Val::Group(vec![])),
                avp(
                    "Used-Service-Unit",
                    446,
                    M,
                    Val::Group(vec![
                        u32_avp("CC-Time", 420, 60),
                        avp("CC-Total-Octets", 421, M, Val::U64(1_048_576)),
                    ]),
                ),
                u32_avp("Rating-Group", 432, 1),
            ]),
        ),
    ]);

    let mut termination = ccr_head(session_1, 3, 2);
    termination.extend([
        u32_avp("Origin-State-Id", 278, 1_700_000_000),
        event_timestamp(0xe8fe_6ff8, "2023-11-14T22:15:20Z"),
        subscription_e164(),
        enum_avp("Termination-Cause", 295, 1),
        u32_avp("Service-Identifier", 439, 1000),
        avp(
            "Used-Service-Unit",
            446,
            M,
            Val::Group(vec![u32_avp("CC-Time", 420, 120)]),
        ),
    ]);

    let mut event = ccr_head("gw.example.net;1700000000;2", 4, 0);
    event.extend([
        text("Destination-Host", 293, "ocs.example.net"),
        u32_avp("Origin-State-Id", 278, 1_700_000_000),
        event_timestamp(0xe8fe_6f80, "2023-11-14T22:13:20Z"),
        subscription_e164(),
        enum_avp("Requested-Action", 436, 0),
        u32_avp("Service-Identifier", 439, 1000),
        avp(
            "Requested-Service-Unit",
            437,
            M,
            Val::Group(vec![money_499()]),
        ),
        reference_code(),
    ]);

    let [ocs_host, ocs_realm] = origin("ocs.example.net");
    let cca = vec![
        text("Session-Id", 263, session_1),
        result_2001(),
        ocs_host,
        ocs_realm,
        u32_avp("Auth-Application-Id", 258, 4),
        enum_avp("CC-Request-Type", 416, 1),
        u32_avp("CC-Request-Number", 415, 0),
        u32_avp("Origin-State-Id", 278, 7),
        avp(
            "Multiple-Services-Credit-Control",
            456,
            M,
            Val::Group(vec![
                avp(
                    "Granted-Service-Unit",
                    431,
                    M,
                    Val::Group(vec![money_499()]),
                ),
                u32_avp("Service-Identifier", 439, 1000),
                u32_avp("Rating-Group", 432, 7),
                u32_avp("Validity-Time", 448, 3600),
                result_2001(),
                avp(
                    "Final-Unit-Indication",
                    430,
                    M,
                    Val::Group(vec![enum_avp("Final-Unit-Action", 449, 0)]),
                ),
            ]),
        ),
        enum_avp("Credit-Control-Failure-Handling", 427, 1),
    ];

    let golden = |file, flags, code, application, ids: (u32, u32), avps, built| Golden {
        file,
        flags,
        code,
        application,
        hop_by_hop: ids.0,
        end_to_end: ids.1,
        avps,
        built,
    };
    vec![
        golden(
            "cea.hex",
            0,
            257,
            0,
            (1, 2),
            cea_avps,
            messages::cea(&ocs(), &cer.header, ResultCode::SUCCESS, None),
        ),
        golden(
            "cer.hex",
            R,
            257,
            0,
            (1, 2),
            capabilities(
                "gw.example.net",
                "192.0.2.1",
                "charging-gateway",
                1_700_000_000,
            ),
            cer,
        ),
        golden(
            "dwa.hex",
            0,
            280,
            0,
            (3, 4),
            dwa_avps,
            messages::dwa(&ocs(), &dwr.header),
        ),
        golden("dwr.hex", R, 280, 0, (3, 4), dwr_avps, dwr),
        golden(
            "dpa.hex",
            0,
            282,
            0,
            (5, 6),
            dpa_avps,
            messages::dpa(&ocs(), &dpr.header),
        ),
        golden("dpr.hex", R, 282, 0, (5, 6), dpr_avps, dpr),
        golden(
            "ccr_initial.hex",
            R | P,
            272,
            4,
            (0xa001, 0xb001),
            initial,
            ccr_initial_built(),
        ),
        golden(
            "ccr_update.hex",
            R | P,
            272,
            4,
            (0xa002, 0xb002),
            update,
            ccr_update_built(),
        ),
        golden(
            "ccr_termination.hex",
            R | P,
            272,
            4,
            (0xa003, 0xb003),
            termination,
            ccr_termination_built(),
        ),
        golden(
            "ccr_event.hex",
            R | P,
            272,
            4,
            (0xa004, 0xb004),
            event,
            ccr_event_built(),
        ),
        golden(
            "cca_mscc.hex",
            P,
            272,
            4,
            (0xa001, 0xb001),
            cca,
            cca_mscc_built(),
        ),
    ]
}

fn dict() -> Dictionary {
    Dictionary::builtin().unwrap()
}

/// The first differing offset and both byte strings around it, for a readable failure.
fn first_difference(want: &[u8], got: &[u8]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let from = at.saturating_sub(8);
    format!(
        "lengths {} (golden) and {} (encoded); first difference at offset {at}:\n  golden  {}\n  encoded {}",
        want.len(),
        got.len(),
        hex::encode(
            want.get(from..(at + 16).min(want.len()))
                .unwrap_or_default()
        ),
        hex::encode(got.get(from..(at + 16).min(got.len())).unwrap_or_default()),
    )
}

// ---------------------------------------------------------------------------------------------
// (a) the builders encode to the golden bytes

#[test]
fn builders_encode_exactly_the_golden_bytes() {
    for g in goldens() {
        let want = golden(g.file);
        let got = g.built.to_bytes().unwrap();
        assert!(
            got.as_ref() == want.as_slice(),
            "{}: the encoder disagrees with the golden vector: {}",
            g.file,
            first_difference(&want, &got)
        );
        assert_eq!(g.built.encoded_len().unwrap(), want.len(), "{}", g.file);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) the decoder reads what the RFC layout says

fn check_decoded(avp: &Avp<'_>, e: &Exp, dict: &Dictionary, path: &str) {
    let path = format!("{path}/{}", e.name);
    assert_eq!(avp.code(), AvpCode(e.code), "{path}: code");
    assert_eq!(avp.flags().0, e.flags, "{path}: flags");
    assert_eq!(avp.vendor_id().map(|v| v.0), e.vendor, "{path}: vendor");
    let def = dict
        .avp(avp.code(), avp.vendor_id().unwrap_or_default())
        .unwrap_or_else(|| panic!("{path}: not in the dictionary"));
    assert_eq!(def.name, e.name, "{path}: dictionary name");
    let ty = def.data_type;
    match &e.value {
        Val::Text(s) => {
            let got = if ty == DataType::DiameterIdentity {
                avp.identity().unwrap()
            } else {
                assert_eq!(ty, DataType::Utf8String, "{path}: type");
                avp.utf8().unwrap()
            };
            assert_eq!(got, *s, "{path}");
        }
        Val::U32(v) => {
            assert_eq!(ty, DataType::Unsigned32, "{path}: type");
            assert_eq!(avp.unsigned32().unwrap(), *v, "{path}");
        }
        Val::U64(v) => {
            assert_eq!(ty, DataType::Unsigned64, "{path}: type");
            assert_eq!(avp.unsigned64().unwrap(), *v, "{path}");
        }
        Val::I32(v) => {
            assert!(
                matches!(ty, DataType::Integer32 | DataType::Enumerated),
                "{path}: type {ty}"
            );
            assert_eq!(avp.integer32().unwrap(), *v, "{path}");
        }
        Val::I64(v) => {
            assert_eq!(ty, DataType::Integer64, "{path}: type");
            assert_eq!(avp.integer64().unwrap(), *v, "{path}");
        }
        Val::Octets(b) => {
            assert_eq!(ty, DataType::OctetString, "{path}: type");
            assert_eq!(avp.data(), *b, "{path}");
        }
        Val::Ip(ip) => {
            assert_eq!(ty, DataType::Address, "{path}: type");
            let want: IpAddr = ip.parse().unwrap();
            assert_eq!(avp.address().unwrap(), Address::Ip(want), "{path}");
        }
        Val::Time(ntp, at) => {
            assert_eq!(ty, DataType::Time, "{path}: type");
            let t = avp.time().unwrap();
            assert_eq!(t, Time(*ntp), "{path}");
            assert_eq!(t.to_string(), *at, "{path}");
        }
        Val::Group(members) => {
            assert_eq!(ty, DataType::Grouped, "{path}: type");
            let got: Vec<Avp<'_>> = avp.group().collect::<Result<_, _>>().unwrap();
            assert_eq!(got.len(), members.len(), "{path}: member count");
            for (a, m) in got.iter().zip(members) {
                check_decoded(a, m, dict, &path);
            }
        }
    }
}

#[test]
fn decoder_reads_the_header_and_every_avp() {
    let dict = dict();
    for g in goldens() {
        let bytes = Bytes::from(golden(g.file));
        let msg = Message::decode(bytes.clone(), &dict, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", g.file));
        let h = msg.header();
        assert_eq!(h.flags.0, g.flags, "{}: flags", g.file);
        assert_eq!(h.code.0, g.code, "{}: command code", g.file);
        assert_eq!(h.application_id.0, g.application, "{}: application", g.file);
        assert_eq!(h.hop_by_hop, g.hop_by_hop, "{}: hop-by-hop", g.file);
        assert_eq!(h.end_to_end, g.end_to_end, "{}: end-to-end", g.file);
        assert_eq!(msg.avps().len(), g.avps.len(), "{}: AVP count", g.file);
        for (a, e) in msg.avps().zip(&g.avps) {
            check_decoded(&a, e, &dict, g.file);
        }
        // decode -> owned -> encode reproduces the golden bytes.
        let again = msg.to_buf(&dict).unwrap().to_bytes().unwrap();
        assert_eq!(again, bytes, "{}: decode -> encode", g.file);
        // The owned form is what the builder made.
        assert_eq!(
            msg.to_buf(&dict).unwrap(),
            g.built,
            "{}: owned form",
            g.file
        );
    }
}

#[test]
fn typed_readers_understand_the_golden_messages() {
    let dict = dict();
    let decode =
        |file: &str| Message::decode(Bytes::from(golden(file)), &dict, &Limits::default()).unwrap();
    let caps = Capabilities::read(&decode("cer.hex")).unwrap();
    assert_eq!(caps.origin_host, "gw.example.net");
    assert_eq!(
        caps.host_ip_addresses,
        vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(caps.origin_state_id, Some(1_700_000_000));
    assert_eq!(caps.application_ids, vec![4, 4]);
    let caps = Capabilities::read(&decode("cea.hex")).unwrap();
    assert_eq!(caps.result_code, Some(ResultCode::SUCCESS));
    assert_eq!(caps.product_name, "ocs-sim");
    assert_eq!(
        messages::disconnect_cause(&decode("dpr.hex")),
        DisconnectCause::Busy
    );

    let eur_code = currency("EUR").unwrap();
    let cases = [
        ("ccr_initial.hex", RequestType::Initial, 0, UnitsStyle::Mscc),
        ("ccr_update.hex", RequestType::Update, 1, UnitsStyle::Mscc),
        (
            "ccr_termination.hex",
            RequestType::Termination,
            2,
            UnitsStyle::CommandLevel,
        ),
        (
            "ccr_event.hex",
            RequestType::Event,
            0,
            UnitsStyle::CommandLevel,
        ),
    ];
    for (file, kind, number, style) in cases {
        let r = CreditControlRequest::read(&decode(file), eur_code).unwrap();
        assert_eq!(
            (r.request_type, r.request_number, r.style),
            (kind, number, style),
            "{file}"
        );
        assert_eq!(
            r.subscription.as_ref().map(|s| s.data.as_str()),
            Some("34671999000")
        );
    }
    let initial = CreditControlRequest::read(&decode("ccr_initial.hex"), eur_code).unwrap();
    assert_eq!(initial.requested.and_then(|u| u.money), Some(eur("4.99")));
    assert_eq!(initial.rating_group, Some(7));
    let update = CreditControlRequest::read(&decode("ccr_update.hex"), eur_code).unwrap();
    assert_eq!(
        update.used.as_ref().and_then(|u| u.total_octets),
        Some(1_048_576)
    );
    let event = CreditControlRequest::read(&decode("ccr_event.hex"), eur_code).unwrap();
    assert_eq!(
        event.requested_action,
        Some(RequestedAction::DirectDebiting)
    );
    assert_eq!(event.destination_host.as_deref(), Some("ocs.example.net"));
    assert_eq!(
        event.parameter(ServiceParameterType::ReferenceCode),
        Some("ref-1")
    );

    let a = CreditControlAnswer::read(&decode("cca_mscc.hex"), eur_code).unwrap();
    assert_eq!(a.result_code, ResultCode::SUCCESS);
    assert_eq!(a.granted_money(), Some(eur("4.99")));
    assert_eq!(a.validity(), Some(3600));
    assert_eq!(a.mscc.len(), 1);
    assert_eq!(
        a.mscc[0].final_unit_action,
        Some(FinalUnitAction::Terminate)
    );
    assert_eq!(a.cc_failure_handling, Some(CcFailureHandling::Continue));
}

// ---------------------------------------------------------------------------------------------
// (c) the layout, walked by hand at the RFC offsets, without the codec

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// The data octets RFC 6733 section 4.2/4.3 gives for a value (Grouped excluded).
fn wire_data(v: &Val) -> Vec<u8> {
    match v {
        Val::Text(s) => s.as_bytes().to_vec(),
        Val::U32(x) => x.to_be_bytes().to_vec(),
        Val::U64(x) => x.to_be_bytes().to_vec(),
        Val::I32(x) => x.to_be_bytes().to_vec(),
        Val::I64(x) => x.to_be_bytes().to_vec(),
        Val::Octets(b) => b.to_vec(),
        Val::Time(ntp, _) => ntp.to_be_bytes().to_vec(),
        Val::Ip(ip) => match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => [&[0, 1][..], &a.octets()].concat(),
            IpAddr::V6(a) => [&[0, 2][..], &a.octets()].concat(),
        },
        Val::Group(_) => unreachable!("Grouped data is walked, not compared"),
    }
}

/// Walks `bytes` as a run of AVPs against `expected`; returns how many AVPs it read.
fn walk_by_hand(bytes: &[u8], expected: &[Exp], path: &str) -> usize {
    let mut at = 0usize;
    let mut count = 0;
    for e in expected {
        let path = format!("{path}/{}@{at}", e.name);
        assert!(bytes.len() >= at + 8, "{path}: no room for an AVP header");
        let code = be(&bytes[at..at + 4]);
        let flags = bytes[at + 4];
        let length = be(&bytes[at + 5..at + 8]) as usize;
        assert_eq!(code, e.code, "{path}: AVP Code");
        assert_eq!(flags, e.flags, "{path}: AVP Flags");
        assert_eq!(flags & 0x1f, 0, "{path}: reserved AVP flag bits");
        let (vendor, header_len) = if flags & 0x80 != 0 {
            (Some(be(&bytes[at + 8..at + 12])), 12)
        } else {
            (None, 8)
        };
        assert_eq!(vendor, e.vendor, "{path}: Vendor-ID");
        assert!(length >= header_len, "{path}: AVP Length under the header");
        let padded = length.div_ceil(4) * 4;
        assert!(
            at + padded <= bytes.len(),
            "{path}: AVP runs past its container"
        );
        let data = &bytes[at + header_len..at + length];
        match &e.value {
            Val::Group(members) => {
                // RFC 6733 4.4: the data of a Grouped AVP is its members, each padded.
                assert!(
                    length.is_multiple_of(4),
                    "{path}: a Grouped length is a multiple of 4"
                );
                count += walk_by_hand(data, members, &path);
            }
            v => assert_eq!(data, wire_data(v).as_slice(), "{path}: data"),
        }
        assert!(
            bytes[at + length..at + padded].iter().all(|b| *b == 0),
            "{path}: padding must be zero"
        );
        at += padded;
        count += 1;
    }
    assert_eq!(
        at,
        bytes.len(),
        "{path}: AVPs and their padding fill the container"
    );
    count
}

#[test]
fn layout_holds_at_the_rfc_offsets() {
    for g in goldens() {
        let b = golden(g.file);
        assert!(b.len() >= 20, "{}: shorter than a header", g.file);
        // RFC 6733 section 3: Version, Message Length, Command Flags, Command Code,
        // Application-ID, Hop-by-Hop, End-to-End.
        assert_eq!(b[0], 1, "{}: version", g.file);
        let length = be(&b[1..4]) as usize;
        assert_eq!(
            length,
            b.len(),
            "{}: Message Length is the whole message",
            g.file
        );
        assert_eq!(
            length % 4,
            0,
            "{}: Message Length is a multiple of 4",
            g.file
        );
        assert_eq!(b[4], g.flags, "{}: Command Flags", g.file);
        assert_eq!(b[4] & 0x0f, 0, "{}: reserved header bits", g.file);
        assert_eq!(be(&b[5..8]), g.code, "{}: Command Code", g.file);
        assert_eq!(be(&b[8..12]), g.application, "{}: Application-ID", g.file);
        assert_eq!(be(&b[12..16]), g.hop_by_hop, "{}: Hop-by-Hop", g.file);
        assert_eq!(be(&b[16..20]), g.end_to_end, "{}: End-to-End", g.file);
        let avps = walk_by_hand(&b[20..], &g.avps, g.file);
        assert!(avps >= g.avps.len());
    }
}

// ---------------------------------------------------------------------------------------------
// (d) the dictionary grammar

#[test]
fn golden_messages_pass_their_command_grammar() {
    let dict = dict();
    let limits = Limits::default();
    for g in goldens() {
        let msg = Message::decode(Bytes::from(golden(g.file)), &dict, &limits).unwrap();
        let cmd = dict
            .command(msg.header().application_id, msg.header().code)
            .unwrap_or_else(|| panic!("{}: command not in the dictionary", g.file));
        assert_eq!(
            cmd.proxiable,
            msg.header().flags.is_proxiable(),
            "{}",
            g.file
        );
        assert_eq!(dict.check(&msg, &limits), Ok(()), "{}", g.file);
    }
}

#[test]
fn a_golden_vector_with_one_byte_changed_is_caught() {
    // The comparisons above are only worth something if a single wrong octet fails them:
    // flip the last data octet of the CCA and the hand walk and the encoder check both see it.
    let mut b = golden("cca_mscc.hex");
    let last = b.len() - 1;
    b[last] ^= 0x02;
    let built = cca_mscc_built().to_bytes().unwrap();
    assert_ne!(built.as_ref(), b.as_slice());
    let g = goldens()
        .into_iter()
        .find(|g| g.file == "cca_mscc.hex")
        .unwrap();
    let outcome = std::panic::catch_unwind(|| walk_by_hand(&b[20..], &g.avps, "cca"));
    assert!(outcome.is_err());
}
