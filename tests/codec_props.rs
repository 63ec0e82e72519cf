//! Property tests of the codec (RFC 6733 sections 3 and 4).
//!
//! - Generated messages (header flags that keep the section 3 rules, random identifiers, AVP
//!   trees with Grouped nesting, vendor AVPs, unknown AVPs with and without a Vendor-ID, every
//!   data type of sections 4.2 and 4.3) survive encode -> decode unchanged, and their typed
//!   values read back as their types.
//! - Any valid message bytes (built here by a minimal serializer of their own, independent of
//!   the codec's encoder, with arbitrary data in non-Grouped AVPs, wrong sizes for their type
//!   included) decode and re-encode byte for byte.
//! - Arbitrary and mutated bytes never make decoding, checking, rendering or the round trip
//!   panic, and every refusal names one of the Result-Codes a malformed frame can earn.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use bytes::Bytes;
use charging_gateway::diameter::codec::{
    ApplicationId, Avp, AvpBuf, AvpCode, AvpFlags, AvpTypes, AvpValue, CommandCode, CommandFlags,
    DataType, DecodeError, Header, Limits, Message, MessageBuf, NoTypes, VendorId,
};
use charging_gateway::diameter::dict::{BUILTIN, Dictionary};
use charging_gateway::fuzzing;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// A vendor of this test's own, for the data types the bundled dictionaries do not use.
const PROPS_VENDOR: u32 = 4242;
const PROPS_XML: &str = r#"<?xml version="1.0"?>
<diameter>
  <vendor id="4242" name="Props"/>
  <avp name="Props-Float32" code="1" vendor-id="4242" must="V" may="M,P" must-not="-">
    <data type="Float32"/>
  </avp>
  <avp name="Props-Float64" code="2" vendor-id="4242" must="V" may="M,P" must-not="-">
    <data type="Float64"/>
  </avp>
  <avp name="Props-Group" code="3" vendor-id="4242" must="V" may="M,P" must-not="-">
    <data type="Grouped"><rule avp="AVP"/></data>
  </avp>
</diameter>
"#;

static DICT: LazyLock<Dictionary> = LazyLock::new(|| {
    let mut sources: Vec<(&str, &str)> = BUILTIN.to_vec();
    sources.push(("props.xml", PROPS_XML));
    Dictionary::from_sources(&sources).unwrap()
});

/// Every defined AVP as (code, vendor, type).
static KNOWN: LazyLock<Vec<(u32, u32, DataType)>> = LazyLock::new(|| {
    DICT.avps()
        .iter()
        .map(|d| (d.code.0, d.vendor.0, d.data_type))
        .collect()
});

static GROUPED: LazyLock<Vec<(u32, u32)>> = LazyLock::new(|| {
    KNOWN
        .iter()
        .filter(|(_, _, t)| *t == DataType::Grouped)
        .map(|(c, v, _)| (*c, *v))
        .collect()
});

/// (code, vendor) pairs.
type Avps = Vec<(u32, u32)>;

/// Every data type but Grouped, each with the AVPs that have it.
static SCALARS: LazyLock<Vec<(DataType, Avps)>> = LazyLock::new(|| {
    ALL_TYPES
        .iter()
        .filter(|t| **t != DataType::Grouped)
        .map(|t| {
            let avps = KNOWN
                .iter()
                .filter(|(_, _, ty)| ty == t)
                .map(|(c, v, _)| (*c, *v))
                .collect();
            (*t, avps)
        })
        .collect()
});

const ALL_TYPES: [DataType; 15] = [
    DataType::OctetString,
    DataType::Integer32,
    DataType::Integer64,
    DataType::Unsigned32,
    DataType::Unsigned64,
    DataType::Float32,
    DataType::Float64,
    DataType::Grouped,
    DataType::Address,
    DataType::Time,
    DataType::Utf8String,
    DataType::DiameterIdentity,
    DataType::DiameterUri,
    DataType::Enumerated,
    DataType::IpFilterRule,
];

fn dict() -> &'static Dictionary {
    &DICT
}

fn vendor_of(v: u32) -> Option<VendorId> {
    (v != 0).then_some(VendorId(v))
}

// ---------------------------------------------------------------------------------------------
// Generators

/// M and P in any combination; V is derived from the Vendor-ID, reserved bits stay clear.
fn avp_flags() -> impl Strategy<Value = AvpFlags> {
    prop_oneof![
        Just(AvpFlags(0)),
        Just(AvpFlags(AvpFlags::MANDATORY)),
        Just(AvpFlags(AvpFlags::PROTECTED)),
        Just(AvpFlags(AvpFlags::MANDATORY | AvpFlags::PROTECTED)),
    ]
}

fn fqdn() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,3}"
}

fn bytes_of(s: String) -> AvpValue {
    AvpValue::Bytes(Bytes::from(s.into_bytes()))
}

/// A valid value of `ty` (RFC 6733 sections 4.2, 4.3), as the owned form holds it.
fn value_of(ty: DataType) -> BoxedStrategy<AvpValue> {
    match ty {
        DataType::Integer32 | DataType::Enumerated => {
            any::<i32>().prop_map(AvpValue::Integer32).boxed()
        }
        DataType::Integer64 => any::<i64>().prop_map(AvpValue::Integer64).boxed(),
        DataType::Unsigned32 => any::<u32>().prop_map(AvpValue::Unsigned32).boxed(),
        DataType::Unsigned64 => any::<u64>().prop_map(AvpValue::Unsigned64).boxed(),
        // Any bit pattern, NaNs included: the owned form compares floats by bits.
        DataType::Float32 => any::<u32>()
            .prop_map(|b| AvpValue::Float32(f32::from_bits(b)))
            .boxed(),
        DataType::Float64 => any::<u64>()
            .prop_map(|b| AvpValue::Float64(f64::from_bits(b)))
            .boxed(),
        DataType::OctetString => vec(any::<u8>(), 0..24)
            .prop_map(|v| AvpValue::Bytes(Bytes::from(v)))
            .boxed(),
        DataType::Utf8String => "\\PC{0,12}".prop_map(bytes_of).boxed(),
        DataType::DiameterIdentity => fqdn().prop_map(bytes_of).boxed(),
        DataType::DiameterUri => (
            any::<bool>(),
            fqdn(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(prop_oneof!["tcp", "sctp", "udp"]),
            proptest::option::of(prop_oneof!["diameter", "radius", "tacacs\\+"]),
        )
            .prop_map(|(secure, host, port, transport, protocol)| {
                let mut s = format!("{}://{host}", if secure { "aaas" } else { "aaa" });
                if let Some(p) = port {
                    s.push_str(&format!(":{p}"));
                }
                if let Some(t) = transport {
                    s.push_str(&format!(";transport={t}"));
                }
                if let Some(p) = protocol {
                    s.push_str(&format!(";protocol={p}"));
                }
                bytes_of(s)
            })
            .boxed(),
        DataType::Address => prop_oneof![
            any::<[u8; 4]>().prop_map(|o| [&[0, 1][..], &Ipv4Addr::from(o).octets()].concat()),
            any::<[u8; 16]>().prop_map(|o| [&[0, 2][..], &Ipv6Addr::from(o).octets()].concat()),
            // E.164 (family 8), kept as received.
            "[0-9]{1,15}".prop_map(|d| [&[0, 8][..], d.as_bytes()].concat()),
        ]
        .prop_map(|v| AvpValue::Bytes(Bytes::from(v)))
        .boxed(),
        DataType::Time => any::<u32>()
            .prop_map(|t| AvpValue::Bytes(Bytes::copy_from_slice(&t.to_be_bytes())))
            .boxed(),
        DataType::IpFilterRule => (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just("ip".to_string()),
                any::<u8>().prop_map(|p| p.to_string())
            ],
            any::<[u8; 4]>(),
            0u8..=32,
            proptest::option::of(1u16..=65535),
        )
            .prop_map(|(permit, inbound, proto, src, bits, port)| {
                let mut s = format!(
                    "{} {} {proto} from {}/{bits} to assigned",
                    if permit { "permit" } else { "deny" },
                    if inbound { "in" } else { "out" },
                    Ipv4Addr::from(src),
                );
                if let Some(p) = port {
                    s.push_str(&format!(" {p}"));
                }
                bytes_of(s)
            })
            .boxed(),
        // Grouped values are built by the recursive strategy.
        _ => Just(AvpValue::Grouped(Vec::new())).boxed(),
    }
}

/// A known, non-Grouped AVP of any data type, with a valid value.
fn known_scalar() -> impl Strategy<Value = AvpBuf> {
    (0..SCALARS.len()).prop_flat_map(|t| {
        let (ty, avps) = &SCALARS[t];
        (
            proptest::sample::select(avps.clone()),
            avp_flags(),
            value_of(*ty),
        )
            .prop_map(|((code, vendor), flags, value)| AvpBuf {
                code: AvpCode(code),
                flags,
                vendor_id: vendor_of(vendor),
                value,
            })
    })
}

/// An AVP no dictionary here defines, with or without a Vendor-ID (and with the M bit or
/// not: decoding keeps it either way; only the grammar check refuses an unknown M AVP).
fn unknown_avp() -> impl Strategy<Value = AvpBuf> {
    (
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        avp_flags(),
        vec(any::<u8>(), 0..20),
    )
        .prop_filter("must be unknown", |(code, vendor, _, _)| {
            dict()
                .data_type(AvpCode(*code), VendorId(vendor.unwrap_or(0)))
                .is_none()
        })
        .prop_map(|(code, vendor, flags, data)| AvpBuf {
            code: AvpCode(code),
            flags,
            vendor_id: vendor.map(VendorId),
            value: AvpValue::Bytes(Bytes::from(data)),
        })
}

/// AVP trees: leaves of every type and unknown AVPs, Grouped AVPs (IETF and vendor) up to
/// four levels deep.
fn avp_tree() -> impl Strategy<Value = AvpBuf> {
    let leaf = prop_oneof![4 => known_scalar(), 1 => unknown_avp()];
    leaf.prop_recursive(4, 64, 6, |inner| {
        (
            proptest::sample::select(GROUPED.clone()),
            avp_flags(),
            vec(inner, 0..6),
        )
            .prop_map(|((code, vendor), flags, members)| AvpBuf {
                code: AvpCode(code),
                flags,
                vendor_id: vendor_of(vendor),
                value: AvpValue::Grouped(members),
            })
    })
}

/// Header flags that keep RFC 6733 section 3: reserved bits clear, E only on answers, T only
/// on requests.
fn command_flags() -> impl Strategy<Value = CommandFlags> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(request, proxiable, e_or_t)| {
        let mut f = CommandFlags(0)
            .with(CommandFlags::REQUEST, request)
            .with(CommandFlags::PROXIABLE, proxiable);
        if request {
            f = f.with(CommandFlags::RETRANSMIT, e_or_t);
        } else {
            f = f.with(CommandFlags::ERROR, e_or_t);
        }
        f
    })
}

fn header() -> impl Strategy<Value = Header> {
    (
        command_flags(),
        0u32..=0x00FF_FFFF,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(flags, code, app, hop_by_hop, end_to_end)| Header {
            flags,
            code: CommandCode(code),
            application_id: ApplicationId(app),
            hop_by_hop,
            end_to_end,
        })
}

fn message() -> impl Strategy<Value = MessageBuf> {
    (header(), vec(avp_tree(), 0..10)).prop_map(|(header, avps)| MessageBuf { header, avps })
}

/// Checks that each decoded AVP of a known type holds a valid value of it, and counts them.
fn check_typed(avp: &Avp<'_>, types: &mut [bool; 15]) -> Result<(), TestCaseError> {
    let vendor = avp.vendor_id().unwrap_or_default();
    let Some(ty) = dict().data_type(avp.code(), vendor) else {
        return Ok(());
    };
    if let Some(i) = ALL_TYPES.iter().position(|t| *t == ty) {
        types[i] = true;
    }
    prop_assert!(
        avp.check_value(ty).is_ok(),
        "AVP {} ({ty}) does not read back as its type: {:?}",
        avp.code().0,
        avp.check_value(ty)
    );
    if ty == DataType::Grouped {
        for m in avp.group() {
            check_typed(&m.unwrap(), types)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A minimal serializer of its own (RFC 6733 sections 3, 4.1, 4.4), for raw valid inputs.

#[derive(Clone, Debug)]
enum RawBody {
    Data(Vec<u8>),
    Group(Vec<RawAvp>),
}

#[derive(Clone, Debug)]
struct RawAvp {
    code: u32,
    /// M and P bits; V is set when `vendor` is.
    flags: u8,
    vendor: Option<u32>,
    body: RawBody,
}

fn put_u24(out: &mut [u8], n: usize) {
    out.copy_from_slice(&(n as u32).to_be_bytes()[1..]);
}

fn put_avp(out: &mut Vec<u8>, a: &RawAvp) {
    let start = out.len();
    out.extend_from_slice(&a.code.to_be_bytes());
    out.push(a.flags | if a.vendor.is_some() { 0x80 } else { 0 });
    out.extend_from_slice(&[0, 0, 0]);
    if let Some(v) = a.vendor {
        out.extend_from_slice(&v.to_be_bytes());
    }
    match &a.body {
        RawBody::Data(d) => out.extend_from_slice(d),
        RawBody::Group(members) => members.iter().for_each(|m| put_avp(out, m)),
    }
    let len = out.len() - start;
    put_u24(&mut out[start + 5..start + 8], len);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

fn raw_message(h: &Header, avps: &[RawAvp]) -> Vec<u8> {
    let mut out = vec![1, 0, 0, 0, h.flags.0, 0, 0, 0];
    put_u24(&mut out[5..8], h.code.0 as usize);
    out.extend_from_slice(&h.application_id.0.to_be_bytes());
    out.extend_from_slice(&h.hop_by_hop.to_be_bytes());
    out.extend_from_slice(&h.end_to_end.to_be_bytes());
    avps.iter().for_each(|a| put_avp(&mut out, a));
    let len = out.len();
    put_u24(&mut out[1..4], len);
    out
}

/// Raw AVP trees: any AVP that is not Grouped carries arbitrary data (a known Unsigned32
/// with 3 octets, an Address with a bad family, bad UTF-8: decoding does not judge values,
/// and re-encoding must keep them as they came).
fn raw_avp_tree() -> impl Strategy<Value = RawAvp> {
    let code_vendor = prop_oneof![
        proptest::sample::select(KNOWN.clone()).prop_map(|(c, v, _)| (c, (v != 0).then_some(v))),
        (any::<u32>(), proptest::option::of(any::<u32>())),
    ]
    .prop_filter("not Grouped", |(c, v)| {
        dict().data_type(AvpCode(*c), VendorId(v.unwrap_or(0))) != Some(DataType::Grouped)
    });
    let leaf =
        (code_vendor, 0u8..4, vec(any::<u8>(), 0..20)).prop_map(|((code, vendor), f, d)| RawAvp {
            code,
            flags: f << 5,
            vendor,
            body: RawBody::Data(d),
        });
    leaf.prop_recursive(4, 64, 6, |inner| {
        (
            proptest::sample::select(GROUPED.clone()),
            0u8..4,
            vec(inner, 0..6),
        )
            .prop_map(|((code, vendor), f, members)| RawAvp {
                code,
                flags: f << 5,
                vendor: (vendor != 0).then_some(vendor),
                body: RawBody::Group(members),
            })
    })
}

/// The Result-Codes a frame that is not well formed can earn from `Message::decode`.
fn is_decode_result_code(e: &DecodeError) -> bool {
    matches!(
        e.result_code().0,
        5011 | 5015 | 3008 | 5014 | 3009 | 5004 | 5012
    )
}

proptest! {
    // 256 cases each by default; PROPTEST_CASES=5000 for a longer run.
    #[test]
    fn encode_then_decode_gives_the_message_back(m in message()) {
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), m.encoded_len().unwrap());
        let d = Message::decode(bytes.clone(), dict(), &Limits::default()).unwrap();
        prop_assert_eq!(d.header(), &m.header);
        prop_assert_eq!(d.avps().len(), m.avps.len());
        let back = d.to_buf(dict()).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        let mut seen = [false; 15];
        for a in d.avps() {
            check_typed(&a, &mut seen)?;
        }
    }

    #[test]
    fn valid_bytes_decode_and_encode_byte_for_byte(
        h in header(),
        avps in vec(raw_avp_tree(), 0..10),
    ) {
        let raw = Bytes::from(raw_message(&h, &avps));
        let d = Message::decode(raw.clone(), dict(), &Limits::default()).unwrap();
        prop_assert_eq!(d.header(), &h);
        prop_assert_eq!(d.avps().len(), avps.len());
        prop_assert_eq!(d.to_buf(dict()).unwrap().to_bytes().unwrap(), raw.clone());
        // Without a dictionary every AVP is opaque, and the bytes are still the same.
        let opaque = Message::decode(raw.clone(), &NoTypes, &Limits::default()).unwrap();
        prop_assert_eq!(opaque.to_buf(&NoTypes).unwrap().to_bytes().unwrap(), raw);
    }

    #[test]
    fn header_flags_are_accepted_exactly_when_the_rfc_allows_them(flags in any::<u8>()) {
        let h = Header {
            flags: CommandFlags(flags),
            ..Header::default()
        };
        let bytes = MessageBuf::new(h).to_bytes().unwrap();
        let f = CommandFlags(flags);
        let allowed = f.reserved() == 0
            && !(f.is_request() && f.is_error())
            // T only on requests.
            && (f.is_request() || !f.is_retransmit());
        match Message::decode(bytes, &NoTypes, &Limits::default()) {
            Ok(m) => prop_assert!(allowed && m.header().flags == f),
            Err(e) => {
                prop_assert!(!allowed);
                prop_assert_eq!(e, DecodeError::InvalidHeaderBits { flags });
                prop_assert_eq!(e.result_code().0, 3008);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..600)) {
        fuzzing::decode_message(&data);
        fuzzing::round_trip(&data);
        if let Err(e) = Message::decode(Bytes::from(data.clone()), dict(), &Limits::default()) {
            prop_assert!(is_decode_result_code(&e), "{e:?}");
            let _ = e.failed_avp(&data, 8);
        }
    }

    #[test]
    fn arbitrary_bodies_behind_a_sound_header_never_panic(
        h in header(),
        words in vec(any::<[u8; 4]>(), 0..100),
    ) {
        // A header whose length is right, so that the decoder reaches the AVPs.
        let mut data = raw_message(&h, &[]);
        data.extend(words.iter().flatten());
        let len = data.len();
        put_u24(&mut data[1..4], len);
        fuzzing::decode_message(&data);
        fuzzing::round_trip(&data);
        if let Err(e) = Message::decode(Bytes::from(data.clone()), dict(), &Limits::default()) {
            prop_assert!(is_decode_result_code(&e), "{e:?}");
            if let Some(loc) = e.location() {
                prop_assert!((loc.offset as usize) < len, "location past the frame");
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(),
        edits in vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let mut data = m.to_bytes().unwrap().to_vec();
        for (at, xor) in &edits {
            let i = at.index(data.len());
            data[i] ^= xor;
        }
        fuzzing::decode_message(&data);
        fuzzing::round_trip(&data);
        match Message::decode(Bytes::from(data.clone()), dict(), &Limits::default()) {
            Ok(d) => {
                // Whatever still decodes re-encodes, and the re-encoding decodes to the same
                // message. (Not always to the same bytes: a shortened AVP Length can turn a
                // data octet into padding, which the encoder writes as zero.)
                let owned = d.to_buf(dict()).unwrap();
                let again = owned.to_bytes().unwrap();
                let relaxed = Limits { max_message_len: 0x00FF_FFFF, ..Limits::default() };
                let d2 = Message::decode(again, dict(), &relaxed).unwrap();
                prop_assert_eq!(d2.to_buf(dict()).unwrap(), owned);
            }
            Err(e) => prop_assert!(is_decode_result_code(&e), "{e:?}"),
        }
    }
}

/// The generators are only as good as their reach: every data type must be drawn.
#[test]
fn generators_cover_every_data_type() {
    for (ty, avps) in SCALARS.iter() {
        assert!(!avps.is_empty(), "no AVP of type {ty} to generate");
    }
    assert!(GROUPED.iter().any(|(_, v)| *v == VendorId::TGPP.0));
    assert!(GROUPED.iter().any(|(_, v)| *v == PROPS_VENDOR));
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = vec(avp_tree(), 20..30);
    let mut seen = [false; 15];
    let mut vendor = false;
    let mut unknown = false;
    for _ in 0..64 {
        let avps = strategy.new_tree(&mut runner).unwrap().current();
        let m = MessageBuf {
            header: Header::default(),
            avps,
        };
        let d = Message::decode(m.to_bytes().unwrap(), dict(), &Limits::default()).unwrap();
        for a in d.avps() {
            check_typed(&a, &mut seen).unwrap();
            vendor |= a.vendor_id().is_some();
            unknown |= dict()
                .data_type(a.code(), a.vendor_id().unwrap_or_default())
                .is_none();
        }
    }
    for (ty, hit) in ALL_TYPES.iter().zip(seen) {
        assert!(hit, "no {ty} AVP was generated");
    }
    assert!(vendor && unknown);
}
