//! Every error class of the codec and the grammar check, driven from real bytes: a frame is
//! built (or patched) to carry one fault, decoded and checked with the bundled dictionaries,
//! and the answer the gateway would send is built with `messages::decode_error_answer`,
//! encoded, decoded again and read: its Result-Code, its E bit (RFC 6733 sections 7.2 and
//! 7.1.5), its identifiers and Session-Id, and the content of its Failed-AVP (section 7.5).
//!
//! The unit tests of `src/diameter/codec/error.rs` cover the enum -> Result-Code mapping and
//! `failed_avp` on hand-made locations; those of `src/diameter/dict/check.rs` cover the
//! Result-Codes of the grammar check on a few AVPs. This file adds what they leave out: the
//! path from bytes to the answer, and the Failed-AVP of each class.

use std::sync::LazyLock;

use bytes::Bytes;
use charging_gateway::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, AvpFlags, AvpValue, CommandCode, DecodeError, Header, Limits,
    Message, MessageBuf, NoTypes, VendorId,
};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::peer::{LocalIdentity, messages};

static DICT: LazyLock<Dictionary> = LazyLock::new(|| Dictionary::builtin().unwrap());

fn dict() -> &'static Dictionary {
    &DICT
}

fn ocs() -> LocalIdentity {
    LocalIdentity {
        origin_host: "ocs.example.net".into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["192.0.2.2".parse().unwrap()],
        vendor_id: 0,
        product_name: "ocs-sim".into(),
        firmware_revision: 1,
        origin_state_id: 7,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![],
        supported_vendor_ids: vec![10415],
    }
}

const SESSION: &str = "gw.example.net;1;9";

fn subscription(members: Vec<AvpBuf>) -> AvpBuf {
    AvpBuf::grouped(AvpCode::SUBSCRIPTION_ID, members)
}

fn subscription_e164() -> AvpBuf {
    subscription(vec![
        AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0),
        AvpBuf::utf8(AvpCode::SUBSCRIPTION_ID_DATA, "34671999000"),
    ])
}

/// A CCR that passes its grammar (RFC 8506 section 3.1); faults are put into copies of it.
fn ccr_avps() -> Vec<AvpBuf> {
    vec![
        AvpBuf::utf8(AvpCode::SESSION_ID, SESSION),
        AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.example.net"),
        AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net"),
        AvpBuf::utf8(AvpCode::DESTINATION_REALM, "ocs.example.net"),
        AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4),
        AvpBuf::utf8(AvpCode::SERVICE_CONTEXT_ID, "32251@3gpp.org"),
        AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 4),
        AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 0),
        subscription_e164(),
    ]
}

fn frame_of(header: Header, avps: Vec<AvpBuf>) -> Vec<u8> {
    let mut h = header;
    h.hop_by_hop = 0x0102_0304;
    h.end_to_end = 0x0506_0708;
    MessageBuf { header: h, avps }.to_bytes().unwrap().to_vec()
}

fn ccr_header() -> Header {
    Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    )
}

fn ccr(avps: Vec<AvpBuf>) -> Vec<u8> {
    frame_of(ccr_header(), avps)
}

/// The CCR with one more AVP at the end.
fn ccr_with(extra: AvpBuf) -> Vec<u8> {
    let mut avps = ccr_avps();
    avps.push(extra);
    ccr(avps)
}

/// Sets the 24-bit length field at `at` (the AVP Length of an AVP header at `at - 5`, or the
/// Message Length at 1).
fn set_u24(frame: &mut [u8], at: usize, n: u32) {
    frame[at..at + 3].copy_from_slice(&n.to_be_bytes()[1..]);
}

/// Offsets of the top-level AVPs, found by hand (code 4, flags 1, length 3, padding to 4).
fn top_level_offsets(frame: &[u8]) -> Vec<usize> {
    let mut at = 20;
    let mut out = Vec::new();
    while at + 8 <= frame.len() {
        out.push(at);
        let len = u32::from_be_bytes([0, frame[at + 5], frame[at + 6], frame[at + 7]]) as usize;
        at += len.div_ceil(4) * 4;
    }
    out
}

/// The first error: the decoder's, else the grammar check's.
fn first_error(frame: &[u8]) -> DecodeError {
    let limits = Limits::default();
    match Message::decode(Bytes::copy_from_slice(frame), dict(), &limits) {
        Err(e) => e,
        Ok(m) => match dict().check(&m, &limits) {
            Err(e) => e,
            Ok(()) => panic!("the faulty message was accepted"),
        },
    }
}

/// What the gateway's answer to the faulty request says.
#[derive(Debug)]
struct Answer {
    result_code: u32,
    error_bit: bool,
    session_id: Option<String>,
    /// Each AVP inside each Failed-AVP, as its bytes on the wire (padding included).
    failed: Vec<Vec<u8>>,
    header: Header,
}

fn answer(frame: &[u8], e: &DecodeError) -> Option<Answer> {
    let frame = Bytes::copy_from_slice(frame);
    let a = messages::decode_error_answer(&ocs(), &frame, e, dict())?;
    let bytes = a.to_bytes().unwrap();
    // The answer as its receiver reads it: decoded with the dictionary, and re-encoded
    // byte for byte, even when its Failed-AVP holds the very fault it reports.
    let msg = Message::decode(bytes.clone(), dict(), &Limits::default()).unwrap();
    assert_eq!(msg.to_buf(dict()).unwrap().to_bytes().unwrap(), bytes);
    assert_eq!(dict().check(&msg, &Limits::default()), Ok(()));
    let mut failed = Vec::new();
    for f in msg.avps_with(AvpCode::FAILED_AVP, VendorId::IETF) {
        // Walked by hand: a member may have reserved flag bits, which the codec's iterators
        // refuse.
        let start = f.data_offset() as usize;
        let end = f.offset() as usize + f.header().length as usize;
        let mut at = start;
        while at + 8 <= end {
            let len = u32::from_be_bytes([0, bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let next = (at + (len as usize).div_ceil(4) * 4).min(end);
            failed.push(bytes[at..next].to_vec());
            at = next;
        }
    }
    Some(Answer {
        result_code: msg.result_code().unwrap().0,
        error_bit: msg.header().flags.is_error(),
        session_id: msg.session_id().map(str::to_string),
        failed,
        header: *msg.header(),
    })
}

/// Asserts the Result-Code of the error and of the answer, the E bit, the Session-Id copied
/// back, and the Failed-AVP content (`None`: no Failed-AVP at all).
fn assert_answer(frame: &[u8], result_code: u32, failed: Option<&[u8]>) -> DecodeError {
    let e = first_error(frame);
    assert_eq!(e.result_code().0, result_code, "{e}");
    let a = answer(frame, &e).expect("a request is answered");
    assert_eq!(a.result_code, result_code, "{e}");
    // The answer follows the section 7.2 grammar, so it carries the E bit: required for the
    // protocol errors (3xxx), allowed by section 7.1.5 for permanent failures (5xxx) whose
    // application grammar cannot be composed from a message that did not decode or check.
    assert!(a.error_bit, "{e}: E bit");
    let h = Header::peek(frame).unwrap().header;
    assert_eq!(
        (a.header.code, a.header.hop_by_hop, a.header.end_to_end),
        (h.code, h.hop_by_hop, h.end_to_end),
        "the answer keeps the request's command and identifiers"
    );
    assert!(!a.header.flags.is_request());
    match failed {
        None => assert!(
            a.failed.is_empty(),
            "{e}: unexpected Failed-AVP {:?}",
            a.failed
        ),
        Some(want) => assert_eq!(
            a.failed,
            vec![want.to_vec()],
            "{e}: Failed-AVP content\n want {}\n got  {:?}",
            hex::encode(want),
            a.failed.iter().map(hex::encode).collect::<Vec<_>>()
        ),
    }
    if frame.get(20..24) == Some(&[0, 0, 1, 7][..]) && frame.len() > 28 {
        // A request whose first AVP is Session-Id gets it back (RFC 6733 7.2 grammar).
        let sid = Message::decode(Bytes::copy_from_slice(frame), &NoTypes, &Limits::default())
            .ok()
            .and_then(|m| m.session_id().map(str::to_string));
        if sid.is_some() {
            assert_eq!(a.session_id, sid);
        }
    }
    e
}

fn encoded(a: &AvpBuf) -> Vec<u8> {
    a.to_vec().unwrap()
}

// ---------------------------------------------------------------------------------------------
// 5014 DIAMETER_INVALID_AVP_LENGTH

#[test]
fn avp_length_under_the_header_size_5014() {
    let mut f = ccr(ccr_avps());
    let at = top_level_offsets(&f)[1]; // Origin-Host
    set_u24(&mut f, at + 5, 4);
    // RFC 6733 7.5: the AVP header and a zero-filled payload of the minimum length for its
    // type: 1 octet for a DiameterIdentity (AVP Length 9, then padding).
    let e = assert_answer(&f, 5014, Some(&[0, 0, 1, 8, 0x40, 0, 0, 9, 0, 0, 0, 0]));
    let loc = e.location().unwrap();
    assert_eq!(
        (loc.code, loc.offset, loc.length),
        (AvpCode::ORIGIN_HOST, at as u32, 4)
    );
    // An Unsigned32 gets 4 zero octets.
    let mut f = ccr(ccr_avps());
    let at = top_level_offsets(&f)[7]; // CC-Request-Number
    set_u24(&mut f, at + 5, 7);
    assert_answer(&f, 5014, Some(&[0, 0, 1, 0x9f, 0x40, 0, 0, 12, 0, 0, 0, 0]));
}

#[test]
fn avp_length_past_the_end_of_the_message_5014() {
    let mut f = ccr(ccr_avps());
    let last = *top_level_offsets(&f).last().unwrap(); // Subscription-Id
    set_u24(&mut f, last + 5, 40 + 64);
    // A Grouped AVP: "the Grouped AVP header with an empty payload" (RFC 6733 7.1.5).
    let e = assert_answer(&f, 5014, Some(&[0, 0, 1, 0xbb, 0x40, 0, 0, 8]));
    assert_eq!(e.location().unwrap().length, 104);
    assert_eq!(e.location().unwrap().available, 40);
}

#[test]
fn member_length_past_its_group_5014() {
    // Subscription-Id in the middle of the message, its Subscription-Id-Data running past the
    // group (but not past the message).
    let mut avps = ccr_avps();
    avps.insert(8, AvpBuf::unsigned32(AvpCode::ORIGIN_STATE_ID, 1));
    avps.swap(8, 9);
    let mut f = ccr(avps);
    let group = top_level_offsets(&f)[8];
    assert_eq!(f[group..group + 4], [0, 0, 1, 0xbb]);
    let data = group + 8 + 12; // after the group header and Subscription-Id-Type
    set_u24(&mut f, data + 5, 19 + 8);
    // UTF8String: no minimum, so an empty payload.
    let e = assert_answer(&f, 5014, Some(&[0, 0, 1, 0xbc, 0x40, 0, 0, 8]));
    assert_eq!(e.location().unwrap().offset, data as u32);
}

#[test]
fn truncated_avp_header_is_zero_padded_5014() {
    // Four octets left after the last AVP: the start of an AVP header (code 263, no flags,
    // no length). RFC 6733 7.5: the partial header padded with zeros.
    let mut f = ccr(ccr_avps());
    f.extend_from_slice(&[0, 0, 1, 7]);
    let len = f.len() as u32;
    set_u24(&mut f, 1, len);
    // Code 263 is Session-Id, a UTF8String: an empty payload.
    let e = assert_answer(&f, 5014, Some(&[0, 0, 1, 7, 0, 0, 0, 8]));
    assert_eq!(e.location().unwrap().offset, len - 4);
}

#[test]
fn value_of_the_wrong_size_for_its_type_5014() {
    // CC-Request-Number (Unsigned32) with 3 octets: the AVP is sound, so it is copied whole.
    let mut avps = ccr_avps();
    let bad = AvpBuf::octets(AvpCode::CC_REQUEST_NUMBER, &b"\x00\x00\x01"[..]);
    avps[7] = bad.clone();
    assert_answer(&ccr(avps), 5014, Some(&encoded(&bad)));
    assert_eq!(encoded(&bad), [0, 0, 1, 0x9f, 0x40, 0, 0, 11, 0, 0, 1, 0]);
}

// ---------------------------------------------------------------------------------------------
// 5015 DIAMETER_INVALID_MESSAGE_LENGTH, 5011 DIAMETER_UNSUPPORTED_VERSION

#[test]
fn message_length_faults_5015_carry_no_failed_avp() {
    let header = ccr_header().to_bytes(20);
    let with_len = |declared: u32, present: usize| {
        let mut f = header.to_vec();
        f.resize(present, 0);
        set_u24(&mut f, 1, declared);
        f
    };
    let cases = [
        ("not a multiple of 4", with_len(22, 22)),
        ("more than present", with_len(24, 20)),
        ("less than present", with_len(20, 24)),
        ("under the header size", with_len(16, 20)),
        ("over the limit", with_len(0x00F0_0000, 20)),
    ];
    for (why, f) in cases {
        let e = assert_answer(&f, 5015, None);
        assert!(e.location().is_none(), "{why}");
        assert!(e.failed_avp(&f, 4).is_none(), "{why}");
    }
}

#[test]
fn a_version_other_than_1_is_5011() {
    let mut f = ccr(ccr_avps());
    f[0] = 2;
    let e = assert_answer(&f, 5011, None);
    assert_eq!(e, DecodeError::UnsupportedVersion(2));
}

// ---------------------------------------------------------------------------------------------
// 3008 DIAMETER_INVALID_HDR_BITS

#[test]
fn header_bits_3008_from_the_decoder() {
    for (why, flags) in [
        ("a reserved bit", 0xC1u8),
        ("the last reserved bit", 0xC8),
        ("E on a request", 0xE0),
    ] {
        let mut f = ccr(ccr_avps());
        f[4] = flags;
        let e = assert_answer(&f, 3008, None);
        assert_eq!(e, DecodeError::InvalidHeaderBits { flags }, "{why}");
    }
}

#[test]
fn header_bits_3008_against_the_command() {
    // DWR must not be proxiable; CCR must be (RFC 6733 5.5.1, RFC 8506 3.1).
    let dwr = frame_of(
        Header::request(CommandCode::DEVICE_WATCHDOG, ApplicationId::COMMON, true),
        vec![
            AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.example.net"),
            AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net"),
        ],
    );
    assert_answer(&dwr, 3008, None);
    let mut not_proxiable = ccr_header();
    not_proxiable.flags = not_proxiable.flags.with(0x40, false);
    let f = frame_of(not_proxiable, ccr_avps());
    let e = assert_answer(&f, 3008, None);
    assert_eq!(e, DecodeError::InvalidHeaderBits { flags: 0x80 });
    assert_eq!(answer(&f, &e).unwrap().session_id.as_deref(), Some(SESSION));
}

#[test]
fn an_answer_with_bad_bits_is_not_answered() {
    // T on an answer is 3008, but RFC 6733 7.2: no answer to an answer.
    let mut f = frame_of(ccr_header().answer(), vec![]);
    f[4] = 0x50;
    let e = first_error(&f);
    assert_eq!(e.result_code().0, 3008);
    assert!(answer(&f, &e).is_none());
}

// ---------------------------------------------------------------------------------------------
// 3009 DIAMETER_INVALID_AVP_BITS

#[test]
fn reserved_avp_flag_bit_3009_copies_the_avp_as_received() {
    let mut avps = ccr_avps();
    let mut bad = AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.example.net");
    bad.flags = AvpFlags(AvpFlags::MANDATORY | 0x01);
    avps[1] = bad.clone();
    let f = ccr(avps);
    let want = encoded(&bad);
    assert_eq!(want[4], 0x41, "the reserved bit is on the wire");
    let e = assert_answer(&f, 3009, Some(&want));
    assert_eq!(
        e.location().unwrap().offset,
        top_level_offsets(&f)[1] as u32
    );
}

#[test]
fn reserved_flag_bit_on_a_group_member_3009() {
    let mut data = AvpBuf::utf8(AvpCode::SUBSCRIPTION_ID_DATA, "34671999000");
    data.flags = AvpFlags(AvpFlags::MANDATORY | 0x10);
    let mut avps = ccr_avps();
    avps[8] = subscription(vec![
        AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0),
        data.clone(),
    ]);
    let e = assert_answer(&ccr(avps), 3009, Some(&encoded(&data)));
    assert_eq!(e.location().unwrap().code, AvpCode::SUBSCRIPTION_ID_DATA);
}

// ---------------------------------------------------------------------------------------------
// 5004 DIAMETER_INVALID_AVP_VALUE

#[test]
fn invalid_values_5004_copy_the_avp() {
    let identity = AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw example.net");
    let uri = AvpBuf::utf8(AvpCode::REDIRECT_HOST, "http://ocs.example.net");
    let rule = AvpBuf::utf8(
        AvpCode::RESTRICTION_FILTER_RULE,
        "allow in ip from any to any",
    );
    let mut with_identity = ccr_avps();
    with_identity[1] = identity.clone();
    for (why, frame, bad) in [
        (
            "DiameterIdentity with a space",
            ccr(with_identity),
            identity,
        ),
        ("DiameterURI of another scheme", ccr_with(uri.clone()), uri),
        (
            "IPFilterRule with an unknown action",
            ccr_with(rule.clone()),
            rule,
        ),
    ] {
        let e = assert_answer(&frame, 5004, Some(&encoded(&bad)));
        assert!(
            matches!(e, DecodeError::InvalidAvpValue(..)),
            "{why}: {e:?}"
        );
    }
}

#[test]
fn address_of_a_reserved_family_5004() {
    let cer = messages::cer(&ocs(), 1, 2);
    let mut avps = cer.avps.clone();
    let at = avps
        .iter()
        .position(|a| a.code == AvpCode::HOST_IP_ADDRESS)
        .unwrap();
    // Address family 0 is reserved (IANA): 2 octets of family, then 127.0.0.1.
    let bad = AvpBuf::octets(AvpCode::HOST_IP_ADDRESS, &[0u8, 0, 127, 0, 0, 1][..]);
    avps[at] = bad.clone();
    let f = frame_of(cer.header, avps);
    assert_answer(&f, 5004, Some(&encoded(&bad)));
}

#[test]
fn grouped_nesting_over_the_limit_5004() {
    // Failed-AVP (Grouped) nested 20 deep: the one at depth 16 (the limit) is reported.
    let mut layers = vec![AvpBuf::unsigned32(AvpCode::RESULT_CODE, 1)];
    for _ in 0..20 {
        let inner = layers.last().unwrap().clone();
        layers.push(AvpBuf::grouped(AvpCode::FAILED_AVP, vec![inner]));
    }
    let top = layers.last().unwrap().clone();
    let f = ccr_with(top);
    // layers[20] is at depth 0, so layers[20 - 16] is at depth 16.
    let e = assert_answer(&f, 5004, Some(&encoded(&layers[4])));
    assert!(matches!(e, DecodeError::TooDeep(_, 16)), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// 5005 DIAMETER_MISSING_AVP: an example of the AVP, zero-filled to its type's minimum length

#[test]
fn missing_top_level_avp_5005() {
    let dwr = frame_of(
        Header::request(CommandCode::DEVICE_WATCHDOG, ApplicationId::COMMON, false),
        vec![AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net")],
    );
    // Origin-Host (264), M, DiameterIdentity: at least 1 octet.
    assert_answer(&dwr, 5005, Some(&[0, 0, 1, 8, 0x40, 0, 0, 9, 0, 0, 0, 0]));
}

#[test]
fn missing_group_member_5005() {
    let mut avps = ccr_avps();
    avps[8] = subscription(vec![AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0)]);
    // Subscription-Id-Data (444), M, UTF8String: an empty payload.
    assert_answer(&ccr(avps), 5005, Some(&[0, 0, 1, 0xbc, 0x40, 0, 0, 8]));
}

#[test]
fn missing_vendor_avp_5005_carries_its_vendor_id() {
    // PS-Furnish-Charging-Information ::= { 3GPP-Charging-Id } { PS-Free-Format-Data } ...
    let furnish = AvpBuf::grouped(
        AvpCode(865),
        vec![AvpBuf::octets(AvpCode(866), &b"\x01\x02"[..]).vendor(VendorId::TGPP)],
    )
    .vendor(VendorId::TGPP);
    // 3GPP-Charging-Id (2): V (its M is only "may"), vendor 10415, OctetString: no payload.
    assert_answer(
        &ccr_with(furnish),
        5005,
        Some(&[0, 0, 0, 2, 0x80, 0, 0, 12, 0, 0, 0x28, 0xaf]),
    );
}

// ---------------------------------------------------------------------------------------------
// 5001 DIAMETER_AVP_UNSUPPORTED: an unknown AVP with the M bit

#[test]
fn unknown_mandatory_avps_5001_are_copied_whole() {
    let ietf = AvpBuf::octets(AvpCode(99_998), &b"\xde\xad\xbe"[..]);
    let vendor = AvpBuf::unsigned32(AvpCode(7), 42).vendor(VendorId(99_999));
    for bad in [ietf, vendor] {
        let e = assert_answer(&ccr_with(bad.clone()), 5001, Some(&encoded(&bad)));
        assert_eq!(e.location().unwrap().vendor_id, bad.vendor_id);
    }
}

#[test]
fn unknown_mandatory_member_5001() {
    let bad = AvpBuf::unsigned32(AvpCode(99_997), 1);
    let mscc = AvpBuf::grouped(
        AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
        vec![AvpBuf::unsigned32(AvpCode::RATING_GROUP, 1), bad.clone()],
    );
    assert_answer(&ccr_with(mscc), 5001, Some(&encoded(&bad)));
}

// ---------------------------------------------------------------------------------------------
// 5008 DIAMETER_AVP_NOT_ALLOWED

#[test]
fn avp_outside_a_closed_grammar_5008() {
    // Subscription-Id ::= { Subscription-Id-Type } { Subscription-Id-Data }, nothing else.
    let intruder = AvpBuf::unsigned32(AvpCode::RATING_GROUP, 5);
    let mut members = match subscription_e164().value {
        AvpValue::Grouped(m) => m,
        _ => unreachable!(),
    };
    members.push(intruder.clone());
    let mut avps = ccr_avps();
    avps[8] = subscription(members);
    assert_answer(&ccr(avps), 5008, Some(&encoded(&intruder)));
}

#[test]
fn vendor_avp_outside_a_closed_grammar_5008() {
    // Unit-Value ::= { Value-Digits } [ Exponent ]: a 3GPP Reporting-Reason has no place there.
    let intruder = AvpBuf::enumerated(AvpCode::REPORTING_REASON, 3).vendor(VendorId::TGPP);
    let rsu = AvpBuf::grouped(
        AvpCode::REQUESTED_SERVICE_UNIT,
        vec![AvpBuf::grouped(
            AvpCode::CC_MONEY,
            vec![AvpBuf::grouped(
                AvpCode::UNIT_VALUE,
                vec![
                    AvpBuf::integer64(AvpCode::VALUE_DIGITS, 499),
                    intruder.clone(),
                ],
            )],
        )],
    );
    let e = assert_answer(&ccr_with(rsu), 5008, Some(&encoded(&intruder)));
    assert_eq!(e.location().unwrap().vendor_id, Some(VendorId::TGPP));
}

// ---------------------------------------------------------------------------------------------
// 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES: the first instance over the maximum

#[test]
fn repeated_member_5009_reports_the_excess_instance() {
    // CC-Money ::= { Unit-Value } [ Currency-Code ]
    let second = AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, 840);
    let rsu = AvpBuf::grouped(
        AvpCode::REQUESTED_SERVICE_UNIT,
        vec![AvpBuf::grouped(
            AvpCode::CC_MONEY,
            vec![
                AvpBuf::grouped(
                    AvpCode::UNIT_VALUE,
                    vec![AvpBuf::integer64(AvpCode::VALUE_DIGITS, 499)],
                ),
                AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, 978),
                second.clone(),
            ],
        )],
    );
    assert_answer(&ccr_with(rsu), 5009, Some(&encoded(&second)));
}

#[test]
fn repeated_fixed_session_id_5009() {
    let again = AvpBuf::utf8(AvpCode::SESSION_ID, "gw.example.net;1;10");
    let e = assert_answer(&ccr_with(again.clone()), 5009, Some(&encoded(&again)));
    // The answer carries the first Session-Id, the request's own.
    let f = ccr_with(again);
    assert_eq!(answer(&f, &e).unwrap().session_id.as_deref(), Some(SESSION));
}

// ---------------------------------------------------------------------------------------------
// 5016 DIAMETER_INVALID_AVP_BIT_COMBO

#[test]
fn m_bit_that_must_not_be_set_5016() {
    // RFC 6733 4.5: Product-Name MUST NOT carry M.
    let cer = messages::cer(&ocs(), 1, 2);
    let mut avps = cer.avps.clone();
    let at = avps
        .iter()
        .position(|a| a.code == AvpCode::PRODUCT_NAME)
        .unwrap();
    avps[at] = avps[at].clone().mandatory(true);
    let bad = avps[at].clone();
    assert_answer(&frame_of(cer.header, avps), 5016, Some(&encoded(&bad)));
}

#[test]
fn m_bit_that_must_be_set_on_a_vendor_avp_5016() {
    // TS 32.299: Service-Information must carry V and M.
    let bad = AvpBuf::grouped(AvpCode::SERVICE_INFORMATION, vec![])
        .vendor(VendorId::TGPP)
        .mandatory(false);
    let e = assert_answer(&ccr_with(bad.clone()), 5016, Some(&encoded(&bad)));
    assert_eq!(encoded(&bad)[4], 0x80);
    assert_eq!(e.location().unwrap().vendor_id, Some(VendorId::TGPP));
}

// ---------------------------------------------------------------------------------------------
// 5012 DIAMETER_UNABLE_TO_COMPLY: more AVPs than the limit

#[test]
fn more_avps_than_the_limit_5012() {
    let mut avps = ccr_avps();
    avps.extend((0..5000).map(|i| AvpBuf::unsigned32(AvpCode(99_000), i).mandatory(false)));
    let e = assert_answer(&ccr(avps), 5012, None);
    assert_eq!(e, DecodeError::TooManyAvps { max: 4096 });
}

// ---------------------------------------------------------------------------------------------
// Error answers from peers: a Failed-AVP holding a broken AVP (RFC 6733 7.5) still decodes

fn answer_with_failed(member: &[u8]) -> Vec<u8> {
    let mut h = ccr_header().error_answer();
    h.hop_by_hop = 1;
    let mut f = MessageBuf::new(h)
        .with(AvpBuf::utf8(AvpCode::SESSION_ID, SESSION))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "ocs.example.net"))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.net"))
        .with(AvpBuf::unsigned32(AvpCode::RESULT_CODE, 5014))
        .to_bytes()
        .unwrap()
        .to_vec();
    // Failed-AVP (279), M, its length covering the member as given.
    let len = 8 + member.len() as u32;
    f.extend_from_slice(&[0, 0, 1, 0x17, 0x40]);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(member);
    let total = f.len() as u32;
    set_u24(&mut f, 1, total);
    f
}

#[test]
fn a_peer_answer_whose_failed_avp_copies_a_broken_avp_decodes() {
    let members: [(&str, &[u8]); 3] = [
        // "a copy of the offending AVP header" with its length past the message
        (
            "bad length",
            &[0, 0, 1, 0x9f, 0x40, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        (
            "reserved flag bits",
            &[0, 0, 1, 0x9f, 0x47, 0, 0, 12, 0, 0, 0, 1],
        ),
        ("length under the header", &[0, 0, 1, 0x9f, 0x40, 0, 0, 2]),
    ];
    for (why, member) in members {
        let f = Bytes::from(answer_with_failed(member));
        let msg = Message::decode(f.clone(), dict(), &Limits::default())
            .unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(msg.result_code().map(|r| r.0), Some(5014), "{why}");
        let failed = msg.avp(AvpCode::FAILED_AVP).unwrap();
        assert_eq!(failed.data(), member, "{why}: kept as received");
        assert_eq!(msg.to_buf(dict()).unwrap().to_bytes().unwrap(), f, "{why}");
    }
}

#[test]
fn the_same_broken_avp_in_any_other_group_is_refused() {
    // Only Failed-AVP is lenient: inside Subscription-Id the bad length is 5014 as ever.
    let mut avps = ccr_avps();
    avps[8] = subscription(vec![AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0)]);
    let mut f = ccr(avps);
    let group = *top_level_offsets(&f).last().unwrap();
    set_u24(&mut f, group + 8 + 5, 200);
    assert_eq!(first_error(&f).result_code().0, 5014);
}
