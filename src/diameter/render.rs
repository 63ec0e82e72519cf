//! Human- and machine-readable renderings of received messages: indented text and JSON, with
//! AVP names, types, flags and values from the dictionary.
//!
//! Rendering never fails once the header can be read: an AVP the dictionary does not know is
//! shown as hex, a value that does not decode as its type is shown as hex with the reason, and
//! a malformed stretch of AVPs is shown as hex after the error that stopped the walk.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};

use super::codec::header::{HEADER_LEN, RawHeader};
use super::codec::{Avp, AvpIter, DataType, DecodeError, Limits, Message, Value, VendorId};
use super::dict::Dictionary;

/// Why a buffer cannot be rendered at all: its framing is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error(
        "only {0} bytes: a Diameter message starts with a 20-byte header (version, length, flags, command code, application id, hop-by-hop and end-to-end ids)"
    )]
    ShortHeader(usize),
    #[error(
        "version byte is {0}, not 1: this is not the start of a Diameter message (or the input is offset)"
    )]
    Version(u8),
    #[error(
        "the header declares a length of {declared} bytes but a message is at least 20 bytes and a multiple of 4"
    )]
    BadLength { declared: u32 },
    #[error(
        "the header declares {declared} bytes but only {available} follow: the message is truncated"
    )]
    Truncated { declared: u32, available: usize },
}

/// Splits a buffer into messages by their declared lengths.
pub fn split_frames(mut input: &[u8]) -> Result<Vec<&[u8]>, FramingError> {
    let mut frames = Vec::new();
    while !input.is_empty() {
        let Some(raw) = crate::diameter::codec::Header::peek(input) else {
            return Err(FramingError::ShortHeader(input.len()));
        };
        if raw.version != 1 {
            return Err(FramingError::Version(raw.version));
        }
        let len = raw.length as usize;
        if len < HEADER_LEN || !len.is_multiple_of(4) {
            return Err(FramingError::BadLength {
                declared: raw.length,
            });
        }
        let Some(frame) = input.get(..len) else {
            return Err(FramingError::Truncated {
                declared: raw.length,
                available: input.len(),
            });
        };
        frames.push(frame);
        input = input.get(len..).unwrap_or_default();
    }
    Ok(frames)
}

/// Renders one framed message as indented text.
pub fn text(frame: &[u8], dict: &Dictionary) -> String {
    let mut out = String::new();
    let Some(raw) = crate::diameter::codec::Header::peek(frame) else {
        return format!("{}\n", FramingError::ShortHeader(frame.len()));
    };
    let h = raw.header;
    let (name, short) = command_names(dict, &raw);
    let _ = writeln!(
        out,
        "{name}{short} code={} app={}{} flags={} length={} hop-by-hop={:#010x} end-to-end={:#010x}",
        h.code.0,
        h.application_id.0,
        dict.application(h.application_id)
            .map(|a| format!(" ({})", a.name))
            .unwrap_or_default(),
        h.flags,
        raw.length,
        h.hop_by_hop,
        h.end_to_end,
    );
    if let Err(e) = h.check_flags() {
        let _ = writeln!(out, "  !! {e}");
    }
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    text_avps(&mut out, AvpIter::new(body, HEADER_LEN as u32), dict, 1);
    if let Some(note) = grammar_note(frame, dict) {
        let _ = writeln!(out, "  !! grammar: {note}");
    }
    out
}

/// Renders one framed message as JSON.
pub fn json(frame: &[u8], dict: &Dictionary) -> Json {
    let Some(raw) = crate::diameter::codec::Header::peek(frame) else {
        return json!({ "error": FramingError::ShortHeader(frame.len()).to_string() });
    };
    let h = raw.header;
    let (name, _) = command_names(dict, &raw);
    let cmd = dict.command(h.application_id, h.code);
    let mut header = Map::new();
    header.insert("version".into(), json!(raw.version));
    header.insert("length".into(), json!(raw.length));
    header.insert(
        "flags".into(),
        json!({
            "request": h.flags.is_request(),
            "proxiable": h.flags.is_proxiable(),
            "error": h.flags.is_error(),
            "retransmit": h.flags.is_retransmit(),
            "reserved": h.flags.reserved(),
        }),
    );
    header.insert("command_code".into(), json!(h.code.0));
    header.insert("command".into(), json!(name));
    if let Some(s) = cmd.and_then(|c| c.short_name(h.flags.is_request())) {
        header.insert("short".into(), json!(s));
    }
    header.insert("application_id".into(), json!(h.application_id.0));
    if let Some(a) = dict.application(h.application_id) {
        header.insert("application".into(), json!(a.name));
    }
    header.insert("hop_by_hop".into(), json!(h.hop_by_hop));
    header.insert("end_to_end".into(), json!(h.end_to_end));
    let mut errors = Vec::new();
    if let Err(e) = h.check_flags() {
        errors.push(json!({ "result_code": e.result_code().0, "message": e.to_string() }));
    }
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    let avps = json_avps(AvpIter::new(body, HEADER_LEN as u32), dict, 1, &mut errors);
    let mut out = Map::new();
    out.insert("header".into(), Json::Object(header));
    out.insert("avps".into(), Json::Array(avps));
    if let Some(note) = grammar_note(frame, dict) {
        errors.push(json!({ "grammar": note }));
    }
    if !errors.is_empty() {
        out.insert("errors".into(), Json::Array(errors));
    }
    Json::Object(out)
}

fn command_names(dict: &Dictionary, raw: &RawHeader) -> (String, String) {
    let h = raw.header;
    match dict.command(h.application_id, h.code) {
        Some(c) => (
            c.message_name(h.flags.is_request()),
            c.short_name(h.flags.is_request())
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
        ),
        None => (
            format!(
                "Unknown-Command-{}",
                if h.flags.is_request() {
                    "Request"
                } else {
                    "Answer"
                }
            ),
            String::new(),
        ),
    }
}

/// What the dictionary's grammar check says, when the message is structurally sound.
fn grammar_note(frame: &[u8], dict: &Dictionary) -> Option<String> {
    let limits = Limits {
        max_message_len: crate::diameter::codec::header::MAX_MESSAGE_LEN,
        ..Limits::default()
    };
    let msg = Message::decode(bytes::Bytes::copy_from_slice(frame), dict, &limits).ok()?;
    dict.check(&msg, &limits)
        .err()
        .map(|e| format!("{} ({}): {e}", e.result_code(), e.result_code().0))
}

fn avp_title(avp: &Avp<'_>, dict: &Dictionary) -> String {
    let vendor = avp.vendor_id().unwrap_or_default();
    let def = dict.avp(avp.code(), vendor);
    let mut s = match def {
        Some(d) => format!("{} ({}", d.name, avp.code().0),
        None => format!("AVP ({}", avp.code().0),
    };
    if let Some(v) = avp.vendor_id() {
        let _ = write!(s, " vendor {}", v.0);
        if let Some(n) = dict.vendor_name(v) {
            let _ = write!(s, " {n}");
        }
    }
    let _ = write!(s, ") [{}]", avp.flags());
    s
}

fn text_avps(out: &mut String, iter: AvpIter<'_>, dict: &Dictionary, depth: usize) {
    let indent = "  ".repeat(depth);
    let mut iter = iter;
    for item in iter.by_ref() {
        let avp = match item {
            Ok(a) => a,
            Err(e) => {
                let _ = writeln!(out, "{indent}!! {e} ({})", e.result_code());
                break;
            }
        };
        let title = avp_title(&avp, dict);
        let vendor = avp.vendor_id().unwrap_or_default();
        let Some(def) = dict.avp(avp.code(), vendor) else {
            let _ = writeln!(
                out,
                "{indent}{title} unknown, {} bytes: {}",
                avp.data().len(),
                hex::encode(avp.data())
            );
            continue;
        };
        if def.data_type == DataType::Grouped {
            if depth > usize::from(Limits::default().max_depth) {
                let _ = writeln!(
                    out,
                    "{indent}{title} Grouped, nested too deep to show: {}",
                    hex::encode(avp.data())
                );
                continue;
            }
            let _ = writeln!(out, "{indent}{title} Grouped");
            text_avps(out, avp.group(), dict, depth + 1);
            continue;
        }
        let shown = match avp.value(def.data_type) {
            Ok(v) => show(&v, def),
            Err(e) => format!("{} !! {e}", hex::encode(avp.data())),
        };
        let _ = writeln!(out, "{indent}{title} {}: {shown}", def.data_type);
    }
    let rest = iter.remaining();
    if !rest.is_empty() && rest.len() < 1 << 16 {
        let _ = writeln!(
            out,
            "{indent}!! unread {} bytes: {}",
            rest.len(),
            hex::encode(rest)
        );
    } else if !rest.is_empty() {
        let _ = writeln!(out, "{indent}!! unread {} bytes", rest.len());
    }
}

/// A value as text; Enumerated values with their names, octets as hex (and text if printable).
fn show(v: &Value<'_>, def: &crate::diameter::dict::AvpDef) -> String {
    match v {
        Value::OctetString(b) => octets(b),
        Value::Integer32(n) => n.to_string(),
        Value::Integer64(n) => n.to_string(),
        Value::Unsigned32(n) => n.to_string(),
        Value::Unsigned64(n) => n.to_string(),
        Value::Float32(n) => n.to_string(),
        Value::Float64(n) => n.to_string(),
        Value::Grouped(_) => String::from("(grouped)"),
        Value::Address(a) => a.to_string(),
        Value::Time(t) => format!("{t} (NTP {})", t.0),
        Value::Utf8String(s) | Value::DiameterIdentity(s) => format!("{s:?}"),
        Value::DiameterUri(u) => u.to_string(),
        Value::Enumerated(n) => match def.item_name(*n) {
            Some(name) => format!("{n} ({name})"),
            None => format!("{n} (not a listed value)"),
        },
        Value::IpFilterRule(r) => format!("{:?}", r.text),
    }
}

fn octets(b: &[u8]) -> String {
    let printable = !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c));
    if printable {
        format!("{} ({:?})", hex::encode(b), String::from_utf8_lossy(b))
    } else {
        hex::encode(b)
    }
}

fn json_avps(
    iter: AvpIter<'_>,
    dict: &Dictionary,
    depth: usize,
    errors: &mut Vec<Json>,
) -> Vec<Json> {
    let mut out = Vec::new();
    let mut iter = iter;
    for item in iter.by_ref() {
        let avp = match item {
            Ok(a) => a,
            Err(e) => {
                errors.push(error_json(&e));
                break;
            }
        };
        let vendor = avp.vendor_id().unwrap_or(VendorId::IETF);
        let def = dict.avp(avp.code(), vendor);
        let mut o = Map::new();
        if let Some(d) = def {
            o.insert("name".into(), json!(d.name));
        }
        o.insert("code".into(), json!(avp.code().0));
        o.insert("vendor_id".into(), json!(avp.vendor_id().map(|v| v.0)));
        o.insert("flags".into(), json!(avp.flags().to_string()));
        o.insert("length".into(), json!(avp.header().length));
        match def {
            None => {
                o.insert("type".into(), json!("unknown"));
                o.insert("hex".into(), json!(hex::encode(avp.data())));
            }
            Some(d) if d.data_type == DataType::Grouped => {
                o.insert("type".into(), json!("Grouped"));
                if depth > usize::from(Limits::default().max_depth) {
                    o.insert("hex".into(), json!(hex::encode(avp.data())));
                } else {
                    o.insert(
                        "avps".into(),
                        Json::Array(json_avps(avp.group(), dict, depth + 1, errors)),
                    );
                }
            }
            Some(d) => {
                o.insert("type".into(), json!(d.data_type.name()));
                match avp.value(d.data_type) {
                    Ok(v) => {
                        o.insert("value".into(), value_json(&v));
                        if let Value::Enumerated(n) = v
                            && let Some(name) = d.item_name(n)
                        {
                            o.insert("enum".into(), json!(name));
                        }
                    }
                    Err(e) => {
                        o.insert("hex".into(), json!(hex::encode(avp.data())));
                        o.insert("error".into(), json!(e.to_string()));
                    }
                }
            }
        }
        out.push(Json::Object(o));
    }
    let rest = iter.remaining();
    if !rest.is_empty() {
        errors.push(json!({ "unread_hex": hex::encode(rest) }));
    }
    out
}

fn error_json(e: &DecodeError) -> Json {
    json!({ "result_code": e.result_code().0, "message": e.to_string() })
}

fn value_json(v: &Value<'_>) -> Json {
    match v {
        Value::OctetString(b) => json!(hex::encode(b)),
        Value::Integer32(n) | Value::Enumerated(n) => json!(n),
        Value::Integer64(n) => json!(n),
        Value::Unsigned32(n) => json!(n),
        Value::Unsigned64(n) => json!(n),
        Value::Float32(n) => json!(n),
        Value::Float64(n) => json!(n),
        Value::Address(a) => json!(a.to_string()),
        Value::Time(t) => json!(t.to_string()),
        Value::Utf8String(s) | Value::DiameterIdentity(s) => json!(s),
        Value::DiameterUri(u) => json!(u.to_string()),
        Value::IpFilterRule(r) => json!(r.text),
        Value::Grouped(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::{ApplicationId, AvpBuf, AvpCode, CommandCode, Header, MessageBuf};

    fn sample() -> Vec<u8> {
        let mut h = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true);
        h.hop_by_hop = 0x22;
        MessageBuf::new(h)
            .with(AvpBuf::utf8(AvpCode::SESSION_ID, "gw;1;2"))
            .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 2))
            .with(AvpBuf::grouped(
                AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
                vec![AvpBuf::unsigned32(AvpCode::RATING_GROUP, 7)],
            ))
            .with(AvpBuf::octets(AvpCode(99_999), &b"\x0a\x0b"[..]).vendor(VendorId(5)))
            .to_bytes()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn text_shows_names_types_flags_values() {
        let d = Dictionary::builtin().unwrap();
        let t = text(&sample(), &d);
        assert!(
            t.starts_with("Credit-Control-Request (CCR) code=272 app=4"),
            "{t}"
        );
        assert!(
            t.contains("  Session-Id (263) [-M-] UTF8String: \"gw;1;2\""),
            "{t}"
        );
        assert!(
            t.contains("CC-Request-Type (416) [-M-] Enumerated: 2 (UPDATE_REQUEST)"),
            "{t}"
        );
        assert!(t.contains("  Multiple-Services-Credit-Control (456) [-M-] Grouped\n    Rating-Group (432) [-M-] Unsigned32: 7"), "{t}");
        assert!(
            t.contains("AVP (99999 vendor 5) [VM-] unknown, 2 bytes: 0a0b"),
            "{t}"
        );
    }

    #[test]
    fn json_has_the_same_facts() {
        let d = Dictionary::builtin().unwrap();
        let j = json(&sample(), &d);
        assert_eq!(j["header"]["short"], "CCR");
        assert_eq!(j["avps"][1]["enum"], "UPDATE_REQUEST");
        assert_eq!(j["avps"][2]["avps"][0]["value"], 7);
        assert_eq!(j["avps"][3]["hex"], "0a0b");
    }

    #[test]
    fn broken_avps_are_shown_not_fatal() {
        let d = Dictionary::builtin().unwrap();
        let mut b = sample();
        // Corrupt the length of the MSCC member so it runs past its group.
        let mscc_member_len_at = 20 + 16 + 12 + 8 + 5;
        b[mscc_member_len_at + 2] = 200;
        let t = text(&b, &d);
        assert!(
            t.contains("!! AVP 432 at offset 56: invalid AVP length 200"),
            "{t}"
        );
        assert!(
            t.contains("AVP (99999 vendor 5)"),
            "the walk resumes after the group: {t}"
        );
    }

    #[test]
    fn framing_errors_explain() {
        assert!(matches!(
            split_frames(&[1, 0, 0]),
            Err(FramingError::ShortHeader(3))
        ));
        let mut b = sample();
        b[0] = 2;
        assert_eq!(split_frames(&b), Err(FramingError::Version(2)));
        let b = sample();
        assert!(matches!(
            split_frames(&b[..30]),
            Err(FramingError::Truncated { .. })
        ));
        let two = [sample(), sample()].concat();
        assert_eq!(split_frames(&two).unwrap().len(), 2);
    }
}
