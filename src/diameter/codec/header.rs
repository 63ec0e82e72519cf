//! The 20-byte Diameter message header (RFC 6733 section 3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |                 Message Length                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Command Flags |                  Command Code                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Application-ID                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Hop-by-Hop Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      End-to-End Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! Command Flags: R(equest) P(roxiable) E(rror) T(retransmit) r r r r
//! ```

use std::fmt;

use nom::Parser;
use nom::number::complete::{be_u8, be_u24, be_u32};

use super::error::DecodeError;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only version RFC 6733 defines ("This Version field MUST be set to 1").
pub const VERSION: u8 = 1;
/// Largest value the 24-bit Message Length field can carry.
pub const MAX_MESSAGE_LEN: u32 = 0x00FF_FFFF;

/// Command Flags (RFC 6733 section 3). Unknown bits survive a round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(pub u8);

impl CommandFlags {
    /// R: the message is a request.
    pub const REQUEST: u8 = 0x80;
    /// P: the message may be proxied, relayed or redirected.
    pub const PROXIABLE: u8 = 0x40;
    /// E: the message is a protocol error answer (section 7.2).
    pub const ERROR: u8 = 0x20;
    /// T: potentially retransmitted after a link failover.
    pub const RETRANSMIT: u8 = 0x10;
    /// The four reserved bits: "MUST be set to zero".
    pub const RESERVED: u8 = 0x0F;

    pub fn is_request(self) -> bool {
        self.0 & Self::REQUEST != 0
    }
    pub fn is_proxiable(self) -> bool {
        self.0 & Self::PROXIABLE != 0
    }
    pub fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }
    pub fn is_retransmit(self) -> bool {
        self.0 & Self::RETRANSMIT != 0
    }
    pub fn reserved(self) -> u8 {
        self.0 & Self::RESERVED
    }
    /// Returns these flags with `bit` set or cleared.
    #[must_use]
    pub fn with(self, bit: u8, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            Self(self.0 & !bit)
        }
    }
}

impl fmt::Debug for CommandFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CommandFlags {
    /// `RP--` style: one letter per set bit, `-` per clear bit, then `+r` if reserved bits are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Self::REQUEST, 'R'),
            (Self::PROXIABLE, 'P'),
            (Self::ERROR, 'E'),
            (Self::RETRANSMIT, 'T'),
        ] {
            let c = if self.0 & bit != 0 { letter } else { '-' };
            fmt::Write::write_char(f, c)?;
        }
        if self.reserved() != 0 {
            write!(f, "+r{:#x}", self.reserved())?;
        }
        Ok(())
    }
}

/// A 24-bit command code. Unknown codes are kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct CommandCode(pub u32);

impl CommandCode {
    pub const CAPABILITIES_EXCHANGE: Self = Self(257);
    pub const RE_AUTH: Self = Self(258);
    pub const ACCOUNTING: Self = Self(271);
    pub const CREDIT_CONTROL: Self = Self(272);
    pub const ABORT_SESSION: Self = Self(274);
    pub const SESSION_TERMINATION: Self = Self(275);
    pub const DEVICE_WATCHDOG: Self = Self(280);
    pub const DISCONNECT_PEER: Self = Self(282);
}

impl fmt::Display for CommandCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Application-ID of the header (also the value of *-Application-Id AVPs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct ApplicationId(pub u32);

impl ApplicationId {
    /// Diameter common messages (CER/CEA, DWR/DWA, DPR/DPA).
    pub const COMMON: Self = Self(0);
    pub const BASE_ACCOUNTING: Self = Self(3);
    /// Diameter Credit-Control (RFC 4006 / RFC 8506).
    pub const CREDIT_CONTROL: Self = Self(4);
    pub const RELAY: Self = Self(0xFFFF_FFFF);
}

impl fmt::Display for ApplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The header fields other than Version and Message Length (which the encoder computes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Header {
    pub flags: CommandFlags,
    pub code: CommandCode,
    pub application_id: ApplicationId,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
}

/// The raw header as read from the wire, before any check.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawHeader {
    pub version: u8,
    pub length: u32,
    pub header: Header,
}

impl Header {
    /// A request header; the Hop-by-Hop and End-to-End identifiers are set by the router.
    pub fn request(code: CommandCode, application_id: ApplicationId, proxiable: bool) -> Self {
        Self {
            flags: CommandFlags(CommandFlags::REQUEST).with(CommandFlags::PROXIABLE, proxiable),
            code,
            application_id,
            hop_by_hop: 0,
            end_to_end: 0,
        }
    }

    /// The answer header for this request: same code, application, identifiers and P bit
    /// (RFC 6733 section 6.2), R, E and T cleared.
    pub fn answer(&self) -> Self {
        Self {
            flags: CommandFlags(self.flags.0 & CommandFlags::PROXIABLE),
            ..*self
        }
    }

    /// The protocol-error answer header (E bit set, RFC 6733 section 7.2).
    pub fn error_answer(&self) -> Self {
        let mut h = self.answer();
        h.flags = h.flags.with(CommandFlags::ERROR, true);
        h
    }

    /// Reads the 20 header bytes without judging them. `None` when fewer than 20 bytes are given.
    pub fn peek(input: &[u8]) -> Option<RawHeader> {
        parse_raw(input).ok().map(|(_, raw)| raw)
    }

    /// Checks the flag rules of RFC 6733 section 3 that hold for every command:
    /// reserved bits clear, no E bit on a request, no T bit on an answer.
    pub fn check_flags(&self) -> Result<(), DecodeError> {
        let f = self.flags;
        let bad = f.reserved() != 0
            || (f.is_request() && f.is_error())
            || (!f.is_request() && f.is_retransmit());
        if bad {
            return Err(DecodeError::InvalidHeaderBits { flags: f.0 });
        }
        Ok(())
    }

    /// The 20 header bytes for a message of `length` octets.
    pub fn to_bytes(&self, length: u32) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let words = [
            (u32::from(VERSION) << 24) | (length & MAX_MESSAGE_LEN),
            (u32::from(self.flags.0) << 24) | (self.code.0 & 0x00FF_FFFF),
            self.application_id.0,
            self.hop_by_hop,
            self.end_to_end,
        ];
        for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        b
    }
}

/// Parses a header and checks it against the frame it came from: version 1, a length that is
/// the frame's, at least 20 and a multiple of 4, and the flag rules of [`Header::check_flags`].
pub fn parse(frame: &[u8], max_len: u32) -> Result<Header, DecodeError> {
    let Ok((_, raw)) = parse_raw(frame) else {
        return Err(DecodeError::InvalidMessageLength {
            declared: 0,
            actual: frame.len().try_into().unwrap_or(u32::MAX),
        });
    };
    check_length(raw.version, raw.length, max_len)?;
    let actual: u32 = frame.len().try_into().unwrap_or(u32::MAX);
    if raw.length != actual {
        return Err(DecodeError::InvalidMessageLength {
            declared: raw.length,
            actual,
        });
    }
    raw.header.check_flags()?;
    Ok(raw.header)
}

/// The checks a framer can make from the first four bytes, before it reserves memory.
pub fn check_length(version: u8, length: u32, max_len: u32) -> Result<(), DecodeError> {
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if length > max_len {
        return Err(DecodeError::MessageTooLong {
            declared: length,
            max: max_len,
        });
    }
    if (length as usize) < HEADER_LEN || !length.is_multiple_of(4) {
        return Err(DecodeError::InvalidMessageLength {
            declared: length,
            actual: length,
        });
    }
    Ok(())
}

fn parse_raw(input: &[u8]) -> nom::IResult<&[u8], RawHeader> {
    let (rest, (version, length, flags, code, application_id, hop_by_hop, end_to_end)) =
        (be_u8, be_u24, be_u8, be_u24, be_u32, be_u32, be_u32).parse(input)?;
    Ok((
        rest,
        RawHeader {
            version,
            length,
            header: Header {
                flags: CommandFlags(flags),
                code: CommandCode(code),
                application_id: ApplicationId(application_id),
                hop_by_hop,
                end_to_end,
            },
        },
    ))
}

/// Sets or clears the T flag in an encoded message, in place.
pub fn set_retransmit(frame: &mut [u8], on: bool) {
    if let Some(b) = frame.get_mut(4) {
        *b = if on {
            *b | CommandFlags::RETRANSMIT
        } else {
            *b & !CommandFlags::RETRANSMIT
        };
    }
}

/// Overwrites the Hop-by-Hop identifier of an encoded message, in place.
pub fn set_hop_by_hop(frame: &mut [u8], hop_by_hop: u32) {
    if let Some(b) = frame.get_mut(12..16) {
        b.copy_from_slice(&hop_by_hop.to_be_bytes());
    }
}

/// Overwrites the End-to-End identifier of an encoded message, in place.
pub fn set_end_to_end(frame: &mut [u8], end_to_end: u32) {
    if let Some(b) = frame.get_mut(16..20) {
        b.copy_from_slice(&end_to_end.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(h: &Header, len: u32) -> Vec<u8> {
        h.to_bytes(len).to_vec()
    }

    #[test]
    fn round_trip_and_layout() {
        let h = Header {
            flags: CommandFlags(0xC0),
            code: CommandCode::CREDIT_CONTROL,
            application_id: ApplicationId::CREDIT_CONTROL,
            hop_by_hop: 0x0102_0304,
            end_to_end: 0x0506_0708,
        };
        let b = bytes(&h, 20);
        assert_eq!(
            b,
            [
                1, 0, 0, 20, 0xC0, 0, 1, 0x10, 0, 0, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8
            ]
        );
        assert_eq!(parse(&b, 4096), Ok(h));
    }

    #[test]
    fn flag_rules() {
        let mut h = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true);
        assert!(h.check_flags().is_ok());
        h.flags = CommandFlags(CommandFlags::REQUEST | CommandFlags::ERROR);
        assert_eq!(
            h.check_flags(),
            Err(DecodeError::InvalidHeaderBits { flags: 0xA0 })
        );
        h.flags = CommandFlags(CommandFlags::RETRANSMIT);
        assert!(h.check_flags().is_err(), "T bit on an answer");
        h.flags = CommandFlags(CommandFlags::REQUEST | 0x01);
        assert!(h.check_flags().is_err(), "reserved bit");
        assert_eq!(
            DecodeError::InvalidHeaderBits { flags: 0x81 }
                .result_code()
                .0,
            3008
        );
    }

    #[test]
    fn length_rules() {
        let h = Header::request(CommandCode(280), ApplicationId(0), false);
        let mut b = bytes(&h, 20);
        assert!(parse(&b, 4096).is_ok());
        b[3] = 24; // declares 24 bytes, 20 present
        assert_eq!(
            parse(&b, 4096),
            Err(DecodeError::InvalidMessageLength {
                declared: 24,
                actual: 20
            })
        );
        assert_eq!(
            check_length(1, 22, 4096).map_err(|e| e.result_code().0),
            Err(5015)
        );
        assert_eq!(
            check_length(2, 20, 4096),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            check_length(1, 8192, 4096),
            Err(DecodeError::MessageTooLong { .. })
        ));
        assert!(parse(&b[..10], 4096).is_err());
    }

    #[test]
    fn answer_keeps_ids_and_p_bit() {
        let mut r = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true);
        r.flags = r.flags.with(CommandFlags::RETRANSMIT, true);
        r.hop_by_hop = 7;
        r.end_to_end = 9;
        let a = r.answer();
        assert_eq!(a.flags, CommandFlags(CommandFlags::PROXIABLE));
        assert_eq!((a.hop_by_hop, a.end_to_end), (7, 9));
        assert!(r.error_answer().flags.is_error());
        assert_eq!(format!("{}", r.flags), "RP-T");
    }

    #[test]
    fn in_place_edits() {
        let h = Header::request(CommandCode(272), ApplicationId(4), true);
        let mut b = bytes(&h, 20);
        set_retransmit(&mut b, true);
        set_hop_by_hop(&mut b, 0xAABBCCDD);
        set_end_to_end(&mut b, 0x11223344);
        let p = parse(&b, 4096).unwrap();
        assert!(p.flags.is_retransmit());
        assert_eq!((p.hop_by_hop, p.end_to_end), (0xAABBCCDD, 0x11223344));
        set_retransmit(&mut b[..3], true); // too short: no effect, no panic
    }
}
