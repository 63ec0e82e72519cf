//! Decode errors and the Result-Code each one obliges an answer to carry (RFC 6733 section 7).
//!
//! Every error is `Copy` and small. Those about one AVP carry an [`AvpLocation`]: where the AVP
//! sits in the frame, so that [`DecodeError::failed_avp`] can build the Failed-AVP content that
//! RFC 6733 section 7.5 asks for.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use super::avp::{AvpBuf, AvpCode, AvpFlags, AvpTypes, AvpValue, VendorId};
use super::value::DataType;

/// A Result-Code value (RFC 6733 section 7.1, RFC 8506 section 9). Unknown values are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ResultCode(pub u32);

impl ResultCode {
    pub const MULTI_ROUND_AUTH: Self = Self(1001);
    pub const SUCCESS: Self = Self(2001);
    pub const LIMITED_SUCCESS: Self = Self(2002);
    pub const COMMAND_UNSUPPORTED: Self = Self(3001);
    pub const UNABLE_TO_DELIVER: Self = Self(3002);
    pub const REALM_NOT_SERVED: Self = Self(3003);
    pub const TOO_BUSY: Self = Self(3004);
    pub const LOOP_DETECTED: Self = Self(3005);
    pub const REDIRECT_INDICATION: Self = Self(3006);
    pub const APPLICATION_UNSUPPORTED: Self = Self(3007);
    pub const INVALID_HDR_BITS: Self = Self(3008);
    pub const INVALID_AVP_BITS: Self = Self(3009);
    pub const UNKNOWN_PEER: Self = Self(3010);
    pub const AUTHENTICATION_REJECTED: Self = Self(4001);
    pub const OUT_OF_SPACE: Self = Self(4002);
    pub const ELECTION_LOST: Self = Self(4003);
    pub const END_USER_SERVICE_DENIED: Self = Self(4010);
    pub const CREDIT_CONTROL_NOT_APPLICABLE: Self = Self(4011);
    pub const CREDIT_LIMIT_REACHED: Self = Self(4012);
    pub const AVP_UNSUPPORTED: Self = Self(5001);
    pub const UNKNOWN_SESSION_ID: Self = Self(5002);
    pub const AUTHORIZATION_REJECTED: Self = Self(5003);
    pub const INVALID_AVP_VALUE: Self = Self(5004);
    pub const MISSING_AVP: Self = Self(5005);
    pub const RESOURCES_EXCEEDED: Self = Self(5006);
    pub const CONTRADICTING_AVPS: Self = Self(5007);
    pub const AVP_NOT_ALLOWED: Self = Self(5008);
    pub const AVP_OCCURS_TOO_MANY_TIMES: Self = Self(5009);
    pub const NO_COMMON_APPLICATION: Self = Self(5010);
    pub const UNSUPPORTED_VERSION: Self = Self(5011);
    pub const UNABLE_TO_COMPLY: Self = Self(5012);
    pub const INVALID_BIT_IN_HEADER: Self = Self(5013);
    pub const INVALID_AVP_LENGTH: Self = Self(5014);
    pub const INVALID_MESSAGE_LENGTH: Self = Self(5015);
    pub const INVALID_AVP_BIT_COMBO: Self = Self(5016);
    pub const NO_COMMON_SECURITY: Self = Self(5017);
    pub const USER_UNKNOWN: Self = Self(5030);
    pub const RATING_FAILED: Self = Self(5031);

    /// The class of RFC 6733 section 7.1: 1 informational, 2 success, 3 protocol error,
    /// 4 transient failure, 5 permanent failure (0 for values outside 1000..=5999).
    pub fn class(self) -> u32 {
        match self.0 {
            1000..=5999 => self.0 / 1000,
            _ => 0,
        }
    }

    pub fn is_success(self) -> bool {
        self.class() == 2
    }

    /// Protocol errors (3xxx) travel in answers with the E bit.
    pub fn is_protocol_error(self) -> bool {
        self.class() == 3
    }

    /// The RFC name (`DIAMETER_CREDIT_LIMIT_REACHED`), or `None` for values this build does not know.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1001 => "DIAMETER_MULTI_ROUND_AUTH",
            2001 => "DIAMETER_SUCCESS",
            2002 => "DIAMETER_LIMITED_SUCCESS",
            3001 => "DIAMETER_COMMAND_UNSUPPORTED",
            3002 => "DIAMETER_UNABLE_TO_DELIVER",
            3003 => "DIAMETER_REALM_NOT_SERVED",
            3004 => "DIAMETER_TOO_BUSY",
            3005 => "DIAMETER_LOOP_DETECTED",
            3006 => "DIAMETER_REDIRECT_INDICATION",
            3007 => "DIAMETER_APPLICATION_UNSUPPORTED",
            3008 => "DIAMETER_INVALID_HDR_BITS",
            3009 => "DIAMETER_INVALID_AVP_BITS",
            3010 => "DIAMETER_UNKNOWN_PEER",
            4001 => "DIAMETER_AUTHENTICATION_REJECTED",
            4002 => "DIAMETER_OUT_OF_SPACE",
            4003 => "ELECTION_LOST",
            4010 => "DIAMETER_END_USER_SERVICE_DENIED",
            4011 => "DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE",
            4012 => "DIAMETER_CREDIT_LIMIT_REACHED",
            5001 => "DIAMETER_AVP_UNSUPPORTED",
            5002 => "DIAMETER_UNKNOWN_SESSION_ID",
            5003 => "DIAMETER_AUTHORIZATION_REJECTED",
            5004 => "DIAMETER_INVALID_AVP_VALUE",
            5005 => "DIAMETER_MISSING_AVP",
            5006 => "DIAMETER_RESOURCES_EXCEEDED",
            5007 => "DIAMETER_CONTRADICTING_AVPS",
            5008 => "DIAMETER_AVP_NOT_ALLOWED",
            5009 => "DIAMETER_AVP_OCCURS_TOO_MANY_TIMES",
            5010 => "DIAMETER_NO_COMMON_APPLICATION",
            5011 => "DIAMETER_UNSUPPORTED_VERSION",
            5012 => "DIAMETER_UNABLE_TO_COMPLY",
            5013 => "DIAMETER_INVALID_BIT_IN_HEADER",
            5014 => "DIAMETER_INVALID_AVP_LENGTH",
            5015 => "DIAMETER_INVALID_MESSAGE_LENGTH",
            5016 => "DIAMETER_INVALID_AVP_BIT_COMBO",
            5017 => "DIAMETER_NO_COMMON_SECURITY",
            5030 => "DIAMETER_USER_UNKNOWN",
            5031 => "DIAMETER_RATING_FAILED",
            _ => return None,
        })
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({})", n, self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Where an offending AVP sits: enough to name it and to copy it into a Failed-AVP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AvpLocation {
    pub code: AvpCode,
    pub flags: AvpFlags,
    pub vendor_id: Option<VendorId>,
    /// Offset of the AVP header from the start of the frame.
    pub offset: u32,
    /// The AVP Length field as received (it may be the faulty part).
    pub length: u32,
    /// Bytes actually present from `offset` to the end of the enclosing message or group.
    pub available: u32,
}

impl fmt::Display for AvpLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AVP {}", self.code.0)?;
        if let Some(v) = self.vendor_id {
            write!(f, " (vendor {})", v.0)?;
        }
        write!(f, " at offset {}", self.offset)
    }
}

/// Everything that can be wrong with a received message, from framing to grammar.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("unsupported Diameter version {0} (only 1 exists)")]
    UnsupportedVersion(u8),
    #[error(
        "invalid message length: header says {declared}, {actual} bytes present (must be >= 20 and a multiple of 4)"
    )]
    InvalidMessageLength { declared: u32, actual: u32 },
    #[error("message of {declared} bytes is over the configured limit of {max}")]
    MessageTooLong { declared: u32, max: u32 },
    #[error(
        "invalid header flags {flags:#04x} (reserved bits, E on a request or T on an answer, or P against the command)"
    )]
    InvalidHeaderBits { flags: u8 },
    #[error("{0}: invalid AVP length {len}", len = .0.length)]
    InvalidAvpLength(AvpLocation),
    #[error("{0}: invalid AVP flags {flags:#04x}", flags = .0.flags.0)]
    InvalidAvpBits(AvpLocation),
    #[error("{0}: invalid value: {1}")]
    InvalidAvpValue(AvpLocation, &'static str),
    #[error("{0}: Grouped AVPs nested deeper than the limit of {1}")]
    TooDeep(AvpLocation, u8),
    #[error("more than {max} AVPs in one message")]
    TooManyAvps { max: u32 },
    #[error("{0}: unknown AVP with the M bit")]
    AvpUnsupported(AvpLocation),
    #[error("missing required AVP {code}{vendor}", code = .code.0, vendor = VendorSuffix(*.vendor_id))]
    MissingAvp {
        code: AvpCode,
        vendor_id: Option<VendorId>,
        flags: AvpFlags,
        /// Minimum payload length of the AVP's data type (the Failed-AVP is zero-filled to it).
        min_len: u8,
    },
    #[error("{0}: AVP not allowed here")]
    AvpNotAllowed(AvpLocation),
    #[error("{0}: AVP occurs more times than allowed")]
    AvpOccursTooManyTimes(AvpLocation),
    #[error("{0}: M, V or P flag against the AVP's definition")]
    InvalidAvpBitCombo(AvpLocation),
    #[error("command {code} of application {application} is not in the dictionary", code = .code.0, application = .application.0)]
    CommandUnsupported {
        code: super::CommandCode,
        application: super::ApplicationId,
    },
}

struct VendorSuffix(Option<VendorId>);

impl fmt::Display for VendorSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, " (vendor {})", v.0),
            None => Ok(()),
        }
    }
}

impl DecodeError {
    /// The Result-Code an answer to the offending request must carry.
    pub fn result_code(&self) -> ResultCode {
        match self {
            Self::UnsupportedVersion(_) => ResultCode::UNSUPPORTED_VERSION,
            Self::InvalidMessageLength { .. } | Self::MessageTooLong { .. } => {
                ResultCode::INVALID_MESSAGE_LENGTH
            }
            Self::InvalidHeaderBits { .. } => ResultCode::INVALID_HDR_BITS,
            Self::InvalidAvpLength(_) => ResultCode::INVALID_AVP_LENGTH,
            Self::InvalidAvpBits(_) => ResultCode::INVALID_AVP_BITS,
            Self::InvalidAvpValue(..) | Self::TooDeep(..) => ResultCode::INVALID_AVP_VALUE,
            Self::TooManyAvps { .. } => ResultCode::UNABLE_TO_COMPLY,
            Self::AvpUnsupported(_) => ResultCode::AVP_UNSUPPORTED,
            Self::MissingAvp { .. } => ResultCode::MISSING_AVP,
            Self::AvpNotAllowed(_) => ResultCode::AVP_NOT_ALLOWED,
            Self::AvpOccursTooManyTimes(_) => ResultCode::AVP_OCCURS_TOO_MANY_TIMES,
            Self::InvalidAvpBitCombo(_) => ResultCode::INVALID_AVP_BIT_COMBO,
            Self::CommandUnsupported { .. } => ResultCode::COMMAND_UNSUPPORTED,
        }
    }

    /// True when the answer is a protocol error and must carry the E bit (3xxx).
    pub fn is_protocol_error(&self) -> bool {
        self.result_code().is_protocol_error()
    }

    /// The offending AVP, if the error is about one.
    pub fn location(&self) -> Option<&AvpLocation> {
        match self {
            Self::InvalidAvpLength(l)
            | Self::InvalidAvpBits(l)
            | Self::InvalidAvpValue(l, _)
            | Self::TooDeep(l, _)
            | Self::AvpUnsupported(l)
            | Self::AvpNotAllowed(l)
            | Self::AvpOccursTooManyTimes(l)
            | Self::InvalidAvpBitCombo(l) => Some(l),
            _ => None,
        }
    }

    /// The AVP to put inside the Failed-AVP of the answer (RFC 6733 section 7.5), built from the
    /// frame the error was found in:
    /// - the offending AVP copied whole when its length is sound;
    /// - when its length runs past its container or is under the header size, its header
    ///   (zero-padded to a full header) with a zero-filled payload of `min_payload` bytes;
    /// - for a missing AVP, an example of it with a zero-filled payload of the minimum length.
    pub fn failed_avp(&self, frame: &[u8], min_payload: usize) -> Option<AvpBuf> {
        if let Self::MissingAvp {
            code,
            vendor_id,
            flags,
            min_len,
        } = *self
        {
            return Some(AvpBuf {
                code,
                flags: flags.without_vendor(),
                vendor_id,
                value: AvpValue::Bytes(Bytes::from(vec![0u8; usize::from(min_len)])),
            });
        }
        let loc = self.location()?;
        let header_len = if loc.vendor_id.is_some() { 12 } else { 8 };
        let sound = loc.length as usize >= header_len && loc.length <= loc.available;
        let value = if sound {
            let start = loc.offset as usize + header_len;
            let end = loc.offset as usize + loc.length as usize;
            match frame.get(start..end) {
                Some(data) => Bytes::copy_from_slice(data),
                None => Bytes::from(vec![0u8; min_payload]),
            }
        } else {
            Bytes::from(vec![0u8; min_payload])
        };
        Some(AvpBuf {
            code: loc.code,
            flags: loc.flags.without_vendor(),
            vendor_id: loc.vendor_id,
            value: AvpValue::Bytes(value),
        })
    }
}

impl DecodeError {
    /// [`DecodeError::failed_avp`] with the zero-filled payload sized from the offending
    /// AVP's data type, as RFC 6733 section 7.5 asks ("the minimum required length for the
    /// payloads data type"): 4 octets for an Unsigned32, 8 for an Unsigned64, none for a
    /// Grouped AVP ("the Grouped AVP header with an empty payload"), an OctetString or an AVP
    /// `types` does not know.
    pub fn failed_avp_typed(&self, frame: &[u8], types: &dyn AvpTypes) -> Option<AvpBuf> {
        let min = self
            .location()
            .and_then(|l| types.data_type(l.code, l.vendor_id.unwrap_or_default()))
            .map_or(0, DataType::min_len);
        self.failed_avp(frame, min)
    }
}

/// Errors of the encoder: only sizes that the 24-bit length fields cannot express.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("AVP {0} would be {1} bytes, over the 24-bit AVP Length limit")]
    AvpTooLong(u32, usize),
    #[error("message would be {0} bytes, over the 24-bit Message Length limit")]
    MessageTooLong(usize),
    #[error("value out of range for its data type: {0}")]
    OutOfRange(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(offset: u32, length: u32, available: u32) -> AvpLocation {
        AvpLocation {
            code: AvpCode(416),
            flags: AvpFlags(AvpFlags::MANDATORY),
            vendor_id: None,
            offset,
            length,
            available,
        }
    }

    #[test]
    fn every_class_maps_to_its_result_code() {
        let l = loc(0, 12, 12);
        let cases: [(DecodeError, u32); 14] = [
            (DecodeError::UnsupportedVersion(2), 5011),
            (
                DecodeError::InvalidMessageLength {
                    declared: 21,
                    actual: 21,
                },
                5015,
            ),
            (
                DecodeError::MessageTooLong {
                    declared: 9,
                    max: 1,
                },
                5015,
            ),
            (DecodeError::InvalidHeaderBits { flags: 0xA0 }, 3008),
            (DecodeError::InvalidAvpLength(l), 5014),
            (DecodeError::InvalidAvpBits(l), 3009),
            (DecodeError::InvalidAvpValue(l, "x"), 5004),
            (DecodeError::TooDeep(l, 4), 5004),
            (DecodeError::TooManyAvps { max: 3 }, 5012),
            (DecodeError::AvpUnsupported(l), 5001),
            (
                DecodeError::MissingAvp {
                    code: AvpCode(263),
                    vendor_id: None,
                    flags: AvpFlags(0x40),
                    min_len: 0,
                },
                5005,
            ),
            (DecodeError::AvpNotAllowed(l), 5008),
            (DecodeError::AvpOccursTooManyTimes(l), 5009),
            (DecodeError::InvalidAvpBitCombo(l), 5016),
        ];
        for (e, code) in cases {
            assert_eq!(e.result_code().0, code, "{e}");
        }
        assert!(DecodeError::InvalidAvpBits(l).is_protocol_error());
        assert!(!DecodeError::InvalidAvpLength(l).is_protocol_error());
    }

    #[test]
    fn failed_avp_copies_a_sound_avp() {
        // one AVP 416, M, length 12, value 1
        let frame = [0, 0, 1, 0xA0, 0x40, 0, 0, 12, 0, 0, 0, 1];
        let e = DecodeError::InvalidAvpValue(loc(0, 12, 12), "x");
        let f = e.failed_avp(&frame, 4).unwrap();
        assert_eq!(f.code, AvpCode(416));
        assert_eq!(f.value, AvpValue::Bytes(Bytes::from_static(&[0, 0, 0, 1])));
    }

    #[test]
    fn failed_avp_zero_fills_a_broken_length() {
        let frame = [0, 0, 1, 0xA0, 0x40, 0, 0, 200, 0, 0, 0, 1];
        let e = DecodeError::InvalidAvpLength(loc(0, 200, 12));
        let f = e.failed_avp(&frame, 4).unwrap();
        assert_eq!(f.value, AvpValue::Bytes(Bytes::from_static(&[0; 4])));
        let missing = DecodeError::MissingAvp {
            code: AvpCode(263),
            vendor_id: Some(VendorId(10415)),
            flags: AvpFlags(0xC0),
            min_len: 0,
        };
        let f = missing.failed_avp(&[], 0).unwrap();
        assert_eq!(f.vendor_id, Some(VendorId(10415)));
        assert_eq!(f.value, AvpValue::Bytes(Bytes::new()));
    }

    #[test]
    fn result_code_names_and_classes() {
        assert_eq!(
            ResultCode(4012).to_string(),
            "DIAMETER_CREDIT_LIMIT_REACHED (4012)"
        );
        assert_eq!(ResultCode(4012).class(), 4);
        assert_eq!(ResultCode(77).class(), 0);
        assert_eq!(ResultCode(9999).to_string(), "9999");
    }
}
