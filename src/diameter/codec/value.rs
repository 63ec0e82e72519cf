//! The AVP data types of RFC 6733 sections 4.2 (basic) and 4.3 (derived), decoded on demand
//! from a data slice.
//!
//! ```text
//! Address:  | AddressType (2, IANA family: 1 IPv4, 2 IPv6, ...) | address ... |
//! Time:     | seconds since 1900-01-01 UTC, NTP era rules (4)                |
//! URI:      aaa://host.example.com:3868;transport=tcp;protocol=diameter
//! ```
//!
//! Time follows the SNTP rule RFC 6733 requires for the 2036 wrap (RFC 4330 section 3): a value
//! with the top bit set counts from 1900, one without it counts from 2036-02-07T06:28:16Z, so
//! the format covers 1968-01-20T03:14:08Z to 2104-02-26T09:42:23Z.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use nom::branch::alt;
use nom::bytes::complete::{tag_no_case, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{all_consuming, map_res, opt, value};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::avp::AvpIter;

/// Why a data field does not hold a value of its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ValueError {
    /// Wrong size for the type (5014).
    Length,
    /// Right size, wrong content (5004).
    Invalid(&'static str),
}

/// The data types of RFC 6733 section 4.2 and 4.3.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DataType {
    OctetString,
    Integer32,
    Integer64,
    Unsigned32,
    Unsigned64,
    Float32,
    Float64,
    Grouped,
    Address,
    Time,
    Utf8String,
    DiameterIdentity,
    DiameterUri,
    Enumerated,
    IpFilterRule,
}

impl DataType {
    /// The name used in RFC 6733 and in dictionary files.
    pub fn name(self) -> &'static str {
        match self {
            Self::OctetString => "OctetString",
            Self::Integer32 => "Integer32",
            Self::Integer64 => "Integer64",
            Self::Unsigned32 => "Unsigned32",
            Self::Unsigned64 => "Unsigned64",
            Self::Float32 => "Float32",
            Self::Float64 => "Float64",
            Self::Grouped => "Grouped",
            Self::Address => "Address",
            Self::Time => "Time",
            Self::Utf8String => "UTF8String",
            Self::DiameterIdentity => "DiameterIdentity",
            Self::DiameterUri => "DiameterURI",
            Self::Enumerated => "Enumerated",
            Self::IpFilterRule => "IPFilterRule",
        }
    }

    /// Parses a dictionary type name. `QoSFilterRule` (RFC 7155) is read as an OctetString.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "OctetString" | "QoSFilterRule" => Self::OctetString,
            "Integer32" => Self::Integer32,
            "Integer64" => Self::Integer64,
            "Unsigned32" => Self::Unsigned32,
            "Unsigned64" => Self::Unsigned64,
            "Float32" => Self::Float32,
            "Float64" => Self::Float64,
            "Grouped" => Self::Grouped,
            "Address" => Self::Address,
            "Time" => Self::Time,
            "UTF8String" => Self::Utf8String,
            "DiameterIdentity" => Self::DiameterIdentity,
            "DiameterURI" => Self::DiameterUri,
            "Enumerated" => Self::Enumerated,
            "IPFilterRule" => Self::IpFilterRule,
            _ => return None,
        })
    }

    /// The smallest payload a value of this type can have: what a Failed-AVP for a missing
    /// or badly sized AVP is zero-filled to (RFC 6733 section 7.5).
    pub fn min_len(self) -> usize {
        match self {
            Self::Integer32 | Self::Unsigned32 | Self::Float32 | Self::Enumerated | Self::Time => 4,
            Self::Integer64 | Self::Unsigned64 | Self::Float64 => 8,
            Self::Address => 6,
            Self::DiameterIdentity => 1,
            Self::DiameterUri => 7,
            _ => 0,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded value, borrowing from the frame.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value<'a> {
    OctetString(&'a [u8]),
    Integer32(i32),
    Integer64(i64),
    Unsigned32(u32),
    Unsigned64(u64),
    Float32(f32),
    Float64(f64),
    Grouped(AvpIter<'a>),
    Address(Address<'a>),
    Time(Time),
    Utf8String(&'a str),
    DiameterIdentity(&'a str),
    DiameterUri(DiameterUri<'a>),
    Enumerated(i32),
    IpFilterRule(IpFilterRule<'a>),
}

fn fixed<const N: usize>(data: &[u8]) -> Result<[u8; N], ValueError> {
    data.try_into().map_err(|_| ValueError::Length)
}

pub fn unsigned32(data: &[u8]) -> Result<u32, ValueError> {
    fixed(data).map(u32::from_be_bytes)
}
pub fn unsigned64(data: &[u8]) -> Result<u64, ValueError> {
    fixed(data).map(u64::from_be_bytes)
}
pub fn integer32(data: &[u8]) -> Result<i32, ValueError> {
    fixed(data).map(i32::from_be_bytes)
}
pub fn integer64(data: &[u8]) -> Result<i64, ValueError> {
    fixed(data).map(i64::from_be_bytes)
}
pub fn float32(data: &[u8]) -> Result<f32, ValueError> {
    fixed(data).map(f32::from_be_bytes)
}
pub fn float64(data: &[u8]) -> Result<f64, ValueError> {
    fixed(data).map(f64::from_be_bytes)
}

pub fn utf8(data: &[u8]) -> Result<&str, ValueError> {
    std::str::from_utf8(data).map_err(|_| ValueError::Invalid("not valid UTF-8"))
}

/// DiameterIdentity (RFC 6733 4.3.1): an FQDN or realm in its ASCII form. Letters, digits,
/// `-`, `_` and `.`, not empty, at most 255 octets.
pub fn identity(data: &[u8]) -> Result<&str, ValueError> {
    if data.is_empty() || data.len() > 255 {
        return Err(ValueError::Invalid(
            "DiameterIdentity must be 1 to 255 octets",
        ));
    }
    if !data.iter().all(|b| is_fqdn_byte(*b)) {
        return Err(ValueError::Invalid(
            "DiameterIdentity must be an FQDN (letters, digits, '-', '_', '.')",
        ));
    }
    // All bytes are ASCII, so this cannot fail; it is still checked rather than assumed.
    std::str::from_utf8(data).map_err(|_| ValueError::Invalid("not ASCII"))
}

fn is_fqdn_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Address (RFC 6733 4.3.1): a 2-octet IANA address family followed by the address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Address<'a> {
    Ip(IpAddr),
    /// Another family (E.164 is 8), kept as it was received.
    Other {
        family: u16,
        bytes: &'a [u8],
    },
}

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Other { family: 8, bytes } if bytes.iter().all(u8::is_ascii_digit) => {
                write!(f, "E.164 {}", String::from_utf8_lossy(bytes))
            }
            Self::Other { family, bytes } => {
                write!(f, "family {family}: ")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

pub fn address(data: &[u8]) -> Result<Address<'_>, ValueError> {
    let (family, rest) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(ValueError::Length),
    };
    match family {
        1 => {
            let o: [u8; 4] = rest.try_into().map_err(|_| ValueError::Length)?;
            Ok(Address::Ip(IpAddr::V4(Ipv4Addr::from(o))))
        }
        2 => {
            let o: [u8; 16] = rest.try_into().map_err(|_| ValueError::Length)?;
            Ok(Address::Ip(IpAddr::V6(Ipv6Addr::from(o))))
        }
        0 | 65535 => Err(ValueError::Invalid("reserved address family")),
        _ => Ok(Address::Other {
            family,
            bytes: rest,
        }),
    }
}

pub(crate) fn encode_address(ip: IpAddr) -> Bytes {
    let mut b = BytesMut::with_capacity(18);
    match ip {
        IpAddr::V4(v4) => {
            b.put_u16(1);
            b.put_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b.put_u16(2);
            b.put_slice(&v6.octets());
        }
    }
    b.freeze()
}

/// Seconds from 1900-01-01 to 1970-01-01.
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
/// Unix time of NTP era 1's start, 2036-02-07T06:28:16Z.
const ERA1_UNIX: i64 = (1i64 << 32) - NTP_UNIX_OFFSET;

/// A Time value as carried on the wire (RFC 6733 4.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Time(pub u32);

impl Time {
    /// The earliest instant the format can express under the SNTP rule (1968-01-20T03:14:08Z).
    pub const MIN_UNIX: i64 = (1i64 << 31) - NTP_UNIX_OFFSET;
    /// The latest (2104-02-26T09:42:23Z).
    pub const MAX_UNIX: i64 = ERA1_UNIX + (1i64 << 31) - 1;

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        let secs = i64::from(self.0);
        if self.0 & 0x8000_0000 != 0 {
            secs - NTP_UNIX_OFFSET
        } else {
            secs + ERA1_UNIX
        }
    }

    /// The wire value for a Unix time, or `None` outside 1968..2104.
    pub fn from_unix(secs: i64) -> Option<Self> {
        if !(Self::MIN_UNIX..=Self::MAX_UNIX).contains(&secs) {
            return None;
        }
        let ntp = secs.checked_add(NTP_UNIX_OFFSET)?.rem_euclid(1i64 << 32);
        u32::try_from(ntp).ok().map(Self)
    }

    pub fn from_offset_datetime(t: time::OffsetDateTime) -> Option<Self> {
        Self::from_unix(t.unix_timestamp())
    }

    pub fn to_offset_datetime(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp(self.unix()).ok()
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_offset_datetime().and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        match text {
            Some(t) => f.write_str(&t),
            None => write!(f, "{}", self.unix()),
        }
    }
}

pub fn time(data: &[u8]) -> Result<Time, ValueError> {
    fixed(data).map(|b| Time(u32::from_be_bytes(b)))
}

/// Transport of a DiameterURI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UriTransport {
    Tcp,
    Sctp,
    Udp,
}

/// AAA protocol of a DiameterURI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AaaProtocol {
    Diameter,
    Radius,
    TacacsPlus,
}

/// DiameterURI (RFC 6733 4.3.1):
/// `"aaa://" FQDN [ ":" port ] [ ";transport=" tcp|sctp|udp ] [ ";protocol=" diameter|radius|tacacs+ ]`,
/// or `aaas://` for the secure variant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DiameterUri<'a> {
    pub secure: bool,
    pub fqdn: &'a str,
    pub port: Option<u16>,
    pub transport: Option<UriTransport>,
    pub protocol: Option<AaaProtocol>,
}

impl DiameterUri<'_> {
    /// The port, or the RFC default (3868 for aaa, 5658 for aaas).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5658 } else { 3868 })
    }
}

impl fmt::Display for DiameterUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.secure { "aaas" } else { "aaa" },
            self.fqdn
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(t) = self.transport {
            let t = match t {
                UriTransport::Tcp => "tcp",
                UriTransport::Sctp => "sctp",
                UriTransport::Udp => "udp",
            };
            write!(f, ";transport={t}")?;
        }
        if let Some(p) = self.protocol {
            let p = match p {
                AaaProtocol::Diameter => "diameter",
                AaaProtocol::Radius => "radius",
                AaaProtocol::TacacsPlus => "tacacs+",
            };
            write!(f, ";protocol={p}")?;
        }
        Ok(())
    }
}

pub fn uri(data: &[u8]) -> Result<DiameterUri<'_>, ValueError> {
    let text = std::str::from_utf8(data).map_err(|_| ValueError::Invalid("URI is not ASCII"))?;
    all_consuming(parse_uri)
        .parse(text)
        .map(|(_, u)| u)
        .map_err(|_| {
            ValueError::Invalid(
                "not a DiameterURI (aaa://host[:port][;transport=..][;protocol=..])",
            )
        })
}

fn parse_uri(i: &str) -> IResult<&str, DiameterUri<'_>> {
    let (i, secure) = alt((
        value(true, tag_no_case("aaas://")),
        value(false, tag_no_case("aaa://")),
    ))
    .parse(i)?;
    let (i, fqdn) = take_while1(|c: char| c.is_ascii() && is_fqdn_byte(c as u8)).parse(i)?;
    let (i, port) = opt(preceded(char(':'), map_res(digit1, str::parse::<u16>))).parse(i)?;
    let (i, transport) = opt(preceded(
        tag_no_case(";transport="),
        alt((
            value(UriTransport::Tcp, tag_no_case("tcp")),
            value(UriTransport::Sctp, tag_no_case("sctp")),
            value(UriTransport::Udp, tag_no_case("udp")),
        )),
    ))
    .parse(i)?;
    let (i, protocol) = opt(preceded(
        tag_no_case(";protocol="),
        alt((
            value(AaaProtocol::Diameter, tag_no_case("diameter")),
            value(AaaProtocol::Radius, tag_no_case("radius")),
            value(AaaProtocol::TacacsPlus, tag_no_case("tacacs+")),
        )),
    ))
    .parse(i)?;
    Ok((
        i,
        DiameterUri {
            secure,
            fqdn,
            port,
            transport,
            protocol,
        },
    ))
}

/// IPFilterRule (RFC 6733 4.3.1): `action dir proto from src to dst [options]`.
///
/// The fields up to the destination are parsed and checked; the options (`frag`,
/// `ipoptions`, `tcpflags`, ...) are kept as text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpFilterRule<'a> {
    pub permit: bool,
    /// `true` for `in` (from the terminal), `false` for `out`.
    pub inbound: bool,
    /// `ip` (any protocol) or an IP protocol number.
    pub protocol: Option<u8>,
    pub src: FilterEndpoint<'a>,
    pub dst: FilterEndpoint<'a>,
    pub options: &'a str,
    pub text: &'a str,
}

/// One side of an IPFilterRule: `[!] any|assigned|addr[/bits] [ports]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FilterEndpoint<'a> {
    pub negated: bool,
    pub address: &'a str,
    pub ports: Option<&'a str>,
}

impl fmt::Display for IpFilterRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

pub fn ip_filter_rule(data: &[u8]) -> Result<IpFilterRule<'_>, ValueError> {
    let text =
        std::str::from_utf8(data).map_err(|_| ValueError::Invalid("IPFilterRule is not ASCII"))?;
    let invalid = ValueError::Invalid("not an IPFilterRule (action dir proto from src to dst)");
    let mut words = text.split_ascii_whitespace().peekable();
    let permit = match words.next() {
        Some("permit") => true,
        Some("deny") => false,
        _ => return Err(invalid),
    };
    let inbound = match words.next() {
        Some("in") => true,
        Some("out") => false,
        _ => return Err(invalid),
    };
    let protocol = match words.next() {
        Some("ip") => None,
        Some(n) => Some(n.parse::<u8>().map_err(|_| invalid)?),
        None => return Err(invalid),
    };
    if words.next() != Some("from") {
        return Err(invalid);
    }
    let src = endpoint(&mut words, Some("to")).ok_or(invalid)?;
    if words.next() != Some("to") {
        return Err(invalid);
    }
    let dst = endpoint(&mut words, None).ok_or(invalid)?;
    let options = match words.next() {
        Some(first) => {
            // Everything from the first option word to the end, as received.
            let start = (first.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            text.get(start..).unwrap_or_default()
        }
        None => "",
    };
    Ok(IpFilterRule {
        permit,
        inbound,
        protocol,
        src,
        dst,
        options,
        text,
    })
}

fn endpoint<'a>(
    words: &mut std::iter::Peekable<std::str::SplitAsciiWhitespace<'a>>,
    stop: Option<&str>,
) -> Option<FilterEndpoint<'a>> {
    let mut word = words.next()?;
    let mut negated = false;
    if word == "!" {
        negated = true;
        word = words.next()?;
    } else if let Some(w) = word.strip_prefix('!') {
        negated = true;
        word = w;
    }
    if !is_filter_address(word) {
        return None;
    }
    let ports = match words.peek() {
        Some(p) if Some(*p) != stop && is_port_list(p) => words.next(),
        _ => None,
    };
    Some(FilterEndpoint {
        negated,
        address: word,
        ports,
    })
}

fn is_filter_address(w: &str) -> bool {
    if w == "any" || w == "assigned" {
        return true;
    }
    let (addr, bits) = match w.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (w, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= max))
}

fn is_port_list(w: &str) -> bool {
    w.split(',').all(|part| {
        let mut ends = part.splitn(2, '-');
        ends.all(|p| p.parse::<u16>().is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes() {
        assert_eq!(unsigned32(&[0, 0, 1, 0]), Ok(256));
        assert_eq!(unsigned32(&[0, 0, 1]), Err(ValueError::Length));
        assert_eq!(integer64(&[0xFF; 8]), Ok(-1));
        assert_eq!(float32(&1.5f32.to_be_bytes()), Ok(1.5));
        assert_eq!(float64(&[0; 7]), Err(ValueError::Length));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address(&[0, 1, 127, 0, 0, 1]),
            Ok(Address::Ip("127.0.0.1".parse().unwrap()))
        );
        let v6 = encode_address("::1".parse().unwrap());
        assert_eq!(address(&v6), Ok(Address::Ip("::1".parse().unwrap())));
        assert_eq!(address(&[0, 1, 1, 2, 3]), Err(ValueError::Length));
        assert_eq!(address(&[0]), Err(ValueError::Length));
        assert!(matches!(address(&[0, 0, 1]), Err(ValueError::Invalid(_))));
        let e164 = address(b"\x00\x0834671999000").unwrap();
        assert_eq!(e164.to_string(), "E.164 34671999000");
    }

    #[test]
    fn time_across_the_2036_wrap() {
        // 1900 epoch era 0: 2024-01-01T00:00:00Z
        let t = Time::from_unix(1_704_067_200).unwrap();
        assert_eq!(t.0, (1_704_067_200i64 + NTP_UNIX_OFFSET) as u32);
        assert_eq!(t.unix(), 1_704_067_200);
        // The last second of era 0 and the first of era 1.
        let last = Time(u32::MAX);
        assert_eq!(last.unix(), ERA1_UNIX - 1);
        assert_eq!(last.to_string(), "2036-02-07T06:28:15Z");
        let first = Time(0);
        assert_eq!(first.unix(), ERA1_UNIX);
        assert_eq!(first.to_string(), "2036-02-07T06:28:16Z");
        assert_eq!(Time::from_unix(ERA1_UNIX), Some(Time(0)));
        // 2040-01-01 sits in era 1 with the top bit clear.
        let t2040 = Time::from_unix(2_208_988_800).unwrap();
        assert_eq!(t2040.0 & 0x8000_0000, 0);
        assert_eq!(t2040.unix(), 2_208_988_800);
        assert_eq!(t2040.to_string(), "2040-01-01T00:00:00Z");
        // Outside 1968..2104: not representable.
        assert_eq!(Time::from_unix(Time::MIN_UNIX - 1), None);
        assert_eq!(Time::from_unix(Time::MAX_UNIX + 1), None);
        assert_eq!(
            Time::from_unix(Time::MAX_UNIX).map(Time::unix),
            Some(Time::MAX_UNIX)
        );
        assert_eq!(
            Time::from_unix(Time::MIN_UNIX).map(Time::unix),
            Some(Time::MIN_UNIX)
        );
    }

    #[test]
    fn identities() {
        assert_eq!(
            identity(b"ocs1.operator.example"),
            Ok("ocs1.operator.example")
        );
        assert!(identity(b"").is_err());
        assert!(identity(b"bad host").is_err());
        assert!(identity("caf\u{e9}.example".as_bytes()).is_err());
    }

    #[test]
    fn uris() {
        let u = uri(b"aaa://host.example.com:6666;transport=tcp;protocol=diameter").unwrap();
        assert!(!u.secure);
        assert_eq!(u.fqdn, "host.example.com");
        assert_eq!(u.port, Some(6666));
        assert_eq!(u.transport, Some(UriTransport::Tcp));
        assert_eq!(u.protocol, Some(AaaProtocol::Diameter));
        assert_eq!(
            u.to_string(),
            "aaa://host.example.com:6666;transport=tcp;protocol=diameter"
        );
        let s = uri(b"aaas://host.example.com").unwrap();
        assert_eq!(s.port_or_default(), 5658);
        assert_eq!(
            uri(b"aaa://h;protocol=radius").unwrap().protocol,
            Some(AaaProtocol::Radius)
        );
        assert!(uri(b"http://host").is_err());
        assert!(uri(b"aaa://host:99999").is_err());
        assert!(uri(b"aaa://host;transport=quic").is_err());
        assert!(uri(b"aaa://").is_err());
    }

    #[test]
    fn ip_filter_rules() {
        let r =
            ip_filter_rule(b"permit out 17 from 10.0.0.0/8 53 to any 1000-2000,3000 frag").unwrap();
        assert!(r.permit && !r.inbound);
        assert_eq!(r.protocol, Some(17));
        assert_eq!(r.src.address, "10.0.0.0/8");
        assert_eq!(r.src.ports, Some("53"));
        assert_eq!(r.dst.address, "any");
        assert_eq!(r.dst.ports, Some("1000-2000,3000"));
        assert_eq!(r.options, "frag");
        let r = ip_filter_rule(b"deny in ip from !192.168.1.1 to assigned").unwrap();
        assert!(r.src.negated);
        assert_eq!(r.options, "");
        assert!(ip_filter_rule(b"allow in ip from any to any").is_err());
        assert!(ip_filter_rule(b"permit in ip from 1.2.3.4/40 to any").is_err());
        assert!(ip_filter_rule(b"permit in ip from any").is_err());
        assert!(ip_filter_rule(b"permit in 300 from any to any").is_err());
    }

    #[test]
    fn type_names() {
        for t in [
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
        ] {
            assert_eq!(DataType::from_name(t.name()), Some(t));
        }
        assert_eq!(DataType::from_name("Float16"), None);
    }
}
