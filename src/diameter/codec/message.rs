//! Whole messages: [`Message`], a checked view over a received frame, and [`MessageBuf`], an
//! owned message that encodes in one pass into a `BytesMut`.
//!
//! ```text
//! +----------------------+------------+------------+-----+
//! | header (20 octets)   | AVP (pad4) | AVP (pad4) | ... |   Message Length covers it all
//! +----------------------+------------+------------+-----+
//! ```
//!
//! Decoding checks the header, then walks every AVP, descending into those the dictionary
//! says are Grouped, within the [`Limits`]. Only the top-level AVP headers are kept (one
//! allocation); members and typed values are read again on demand from the shared frame.

use bytes::{Bytes, BytesMut};

use super::avp::{Avp, AvpBuf, AvpCode, AvpHeader, AvpTypes, VendorId, Writer, try_for_each_avp};
use super::error::{DecodeError, EncodeError, ResultCode};
use super::header::{self, HEADER_LEN, Header, MAX_MESSAGE_LEN};
use super::value::DataType;

/// Bounds on what a received message may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest Message Length accepted (the framer refuses longer ones before buffering them).
    pub max_message_len: u32,
    /// Deepest nesting of Grouped AVPs (a member of a top-level Grouped AVP is at depth 1).
    pub max_depth: u8,
    /// Most AVPs in one message, members of Grouped AVPs included.
    pub max_avps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: 1 << 20,
            max_depth: 16,
            max_avps: 4096,
        }
    }
}

/// Where a top-level AVP sits in the frame.
#[derive(Clone, Copy, Debug)]
struct Slot {
    header: AvpHeader,
    offset: u32,
}

/// A received message whose structure has been checked. Cheap to clone (the frame is shared).
#[derive(Clone, Debug)]
pub struct Message {
    frame: Bytes,
    header: Header,
    avps: Vec<Slot>,
}

impl Message {
    /// Checks `frame` (one whole message, as the framer yields it) and indexes its top-level
    /// AVPs. `types` tells which AVPs are Grouped, so that their members are checked too.
    pub fn decode<T: AvpTypes + ?Sized>(
        frame: Bytes,
        types: &T,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        let header = header::parse(&frame, limits.max_message_len.min(MAX_MESSAGE_LEN))?;
        let body = frame.get(HEADER_LEN..).unwrap_or_default();
        let mut avps = Vec::with_capacity(16);
        let mut walk = Walk {
            types,
            limits,
            count: 0,
        };
        try_for_each_avp(body, HEADER_LEN as u32, |avp| {
            walk.visit(&avp, 0)?;
            avps.push(Slot {
                header: *avp.header(),
                offset: avp.offset(),
            });
            Ok(())
        })?;
        Ok(Self {
            frame,
            header,
            avps,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The bytes as received: re-encoding a decoded message is exactly this.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    pub fn is_request(&self) -> bool {
        self.header.flags.is_request()
    }

    /// The top-level AVPs, in order.
    pub fn avps(&self) -> impl ExactSizeIterator<Item = Avp<'_>> + '_ {
        self.avps.iter().map(|s| self.view(s))
    }

    fn view(&self, s: &Slot) -> Avp<'_> {
        let start = s.offset as usize + s.header.header_len();
        let end = s.offset as usize + s.header.length as usize;
        // The slot was built from this frame, so the range is inside it; `unwrap_or_default`
        // keeps this total anyway.
        let data = self.frame.get(start..end).unwrap_or_default();
        Avp::from_parts(s.header, data, s.offset)
    }

    /// The first top-level AVP with this code and no Vendor-ID (or vendor 0).
    pub fn avp(&self, code: AvpCode) -> Option<Avp<'_>> {
        self.vendor_avp(code, VendorId::IETF)
    }

    /// The first top-level AVP with this code and vendor.
    pub fn vendor_avp(&self, code: AvpCode, vendor: VendorId) -> Option<Avp<'_>> {
        self.avps().find(|a| a.is(code, vendor))
    }

    /// Every top-level AVP with this code and vendor.
    pub fn avps_with(&self, code: AvpCode, vendor: VendorId) -> impl Iterator<Item = Avp<'_>> + '_ {
        self.avps().filter(move |a| a.is(code, vendor))
    }

    /// Session-Id, if present and valid UTF-8.
    pub fn session_id(&self) -> Option<&str> {
        self.avp(AvpCode::SESSION_ID).and_then(|a| a.utf8().ok())
    }

    /// Result-Code, or the Experimental-Result-Code inside Experimental-Result.
    pub fn result_code(&self) -> Option<ResultCode> {
        if let Some(rc) = self.avp(AvpCode::RESULT_CODE) {
            return rc.unsigned32().ok().map(ResultCode);
        }
        let er = self.avp(AvpCode::EXPERIMENTAL_RESULT)?;
        er.group()
            .filter_map(Result::ok)
            .find(|m| m.is(AvpCode::EXPERIMENTAL_RESULT_CODE, VendorId::IETF))
            .and_then(|m| m.unsigned32().ok())
            .map(ResultCode)
    }

    /// An owned copy; OctetString-like values share the frame rather than copy it.
    pub fn to_buf(&self, types: &dyn AvpTypes) -> Result<MessageBuf, DecodeError> {
        let mut avps = Vec::with_capacity(self.avps.len());
        for a in self.avps() {
            avps.push(a.to_buf(&self.frame, types)?);
        }
        Ok(MessageBuf {
            header: self.header,
            avps,
        })
    }
}

struct Walk<'d, T: ?Sized> {
    types: &'d T,
    limits: &'d Limits,
    count: u32,
}

impl<T: AvpTypes + ?Sized> Walk<'_, T> {
    /// Counts `avp` and, if it is Grouped, checks its members one level deeper. Only Grouped
    /// AVPs cost a call: the members of one group are visited in a loop.
    #[inline]
    fn visit(&mut self, avp: &Avp<'_>, depth: u8) -> Result<(), DecodeError> {
        self.count += 1;
        if self.count > self.limits.max_avps {
            return Err(DecodeError::TooManyAvps {
                max: self.limits.max_avps,
            });
        }
        let vendor = avp.vendor_id().unwrap_or_default();
        if self.types.data_type(avp.code(), vendor) != Some(DataType::Grouped) {
            return Ok(());
        }
        if depth >= self.limits.max_depth {
            return Err(too_deep(avp, self.limits.max_depth));
        }
        match self.members(avp.data(), avp.data_offset(), depth + 1) {
            // RFC 6733 7.5: a Failed-AVP carries a copy of what another node could not
            // process: an AVP with reserved flag bits (3009), or "the offending AVP header"
            // with its bad length (5014). Refusing the whole answer for it would lose the
            // Result-Code the answer exists to deliver, so a malformed payload is kept as it
            // is. Its own length was checked; depth and count limits still apply to what
            // was walked before the malformed member.
            Err(DecodeError::InvalidAvpLength(_) | DecodeError::InvalidAvpBits(_))
                if avp.is(AvpCode::FAILED_AVP, VendorId::IETF) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    #[inline(never)]
    fn members(&mut self, data: &[u8], base: u32, depth: u8) -> Result<(), DecodeError> {
        try_for_each_avp(data, base, |member| self.visit(&member, depth))
    }
}

#[cold]
fn too_deep(avp: &Avp<'_>, max: u8) -> DecodeError {
    DecodeError::TooDeep(avp.location(), max)
}

/// A message to encode.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageBuf {
    pub header: Header,
    pub avps: Vec<AvpBuf>,
}

impl MessageBuf {
    pub fn new(header: Header) -> Self {
        Self {
            header,
            avps: Vec::new(),
        }
    }

    /// Appends an AVP (builder style).
    #[must_use]
    pub fn with(mut self, avp: AvpBuf) -> Self {
        self.avps.push(avp);
        self
    }

    pub fn push(&mut self, avp: AvpBuf) {
        self.avps.push(avp);
    }

    /// The first top-level AVP with this code and vendor.
    pub fn avp(&self, code: AvpCode, vendor: VendorId) -> Option<&AvpBuf> {
        self.avps
            .iter()
            .find(|a| a.code == code && a.vendor_id.unwrap_or_default() == vendor)
    }

    /// The encoded length, after checking every length field can express it.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let mut len = HEADER_LEN;
        for a in &self.avps {
            len = len.saturating_add(a.checked_len()?);
        }
        if len > MAX_MESSAGE_LEN as usize {
            return Err(EncodeError::MessageTooLong(len));
        }
        Ok(len)
    }

    /// Appends the encoded message to `dst`. One pass measures every AVP (checking the 24-bit
    /// length fields); the exact size is then reserved and zero-filled once, and a second pass
    /// writes every field (padding is already zero), filling in each Grouped length after its
    /// members.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self
            .avps
            .iter()
            .fold(HEADER_LEN, |sum, a| sum.saturating_add(a.wire_len()));
        if len > MAX_MESSAGE_LEN as usize {
            // Some length field cannot express its size: say which.
            return Err(self
                .encoded_len()
                .err()
                .unwrap_or(EncodeError::MessageTooLong(len)));
        }
        let start = dst.len();
        if start == 0 && dst.capacity() < len {
            // A fresh buffer (the common case): one zeroed allocation of the exact size,
            // cheaper than growing an empty `BytesMut` and then filling it.
            *dst = BytesMut::zeroed(len);
        } else {
            dst.resize(start + len, 0);
        }
        let out = dst.get_mut(start..).unwrap_or_default();
        let mut w = Writer::new(out);
        w.put_array(self.header.to_bytes(len as u32));
        AvpBuf::write_all(&self.avps, &mut w);
        debug_assert_eq!(w.position(), len);
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        self.encode(&mut b)?;
        Ok(b.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::avp::{AvpValue, NoTypes};
    use crate::diameter::codec::header::{ApplicationId, CommandCode};

    /// Knows two Grouped AVPs and one number, like a tiny dictionary.
    struct TwoGroups;
    impl AvpTypes for TwoGroups {
        fn data_type(&self, code: AvpCode, _: VendorId) -> Option<DataType> {
            match code.0 {
                456 | 437 => Some(DataType::Grouped),
                421 => Some(DataType::Unsigned64),
                _ => None,
            }
        }
    }

    fn sample() -> MessageBuf {
        let mut h = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true);
        h.hop_by_hop = 1;
        h.end_to_end = 2;
        MessageBuf::new(h)
            .with(AvpBuf::utf8(AvpCode::SESSION_ID, "gw;1;2"))
            .with(AvpBuf::grouped(
                AvpCode(456),
                vec![AvpBuf::grouped(
                    AvpCode(437),
                    vec![AvpBuf::unsigned64(AvpCode(421), 1000)],
                )],
            ))
    }

    #[test]
    fn encode_then_decode() {
        let m = sample();
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes.len(), m.encoded_len().unwrap());
        let d = Message::decode(bytes.clone(), &TwoGroups, &Limits::default()).unwrap();
        assert_eq!(d.session_id(), Some("gw;1;2"));
        assert_eq!(d.avps().len(), 2);
        assert_eq!(d.to_buf(&TwoGroups).unwrap(), m);
        // Without a dictionary the grouped payload stays opaque but the bytes are the same.
        let d2 = Message::decode(bytes.clone(), &NoTypes, &Limits::default()).unwrap();
        assert_eq!(d2.to_buf(&NoTypes).unwrap().to_bytes().unwrap(), bytes);
    }

    #[test]
    fn depth_and_count_limits() {
        let bytes = sample().to_bytes().unwrap();
        let shallow = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        assert!(matches!(
            Message::decode(bytes.clone(), &TwoGroups, &shallow),
            Err(DecodeError::TooDeep(_, 1))
        ));
        let few = Limits {
            max_avps: 3,
            ..Limits::default()
        };
        assert_eq!(
            Message::decode(bytes.clone(), &TwoGroups, &few).unwrap_err(),
            DecodeError::TooManyAvps { max: 3 }
        );
        assert!(
            Message::decode(bytes, &NoTypes, &few).is_ok(),
            "members are not walked without a dictionary"
        );
    }

    #[test]
    fn bad_member_inside_a_group_is_found() {
        let mut bytes = BytesMut::from(&sample().to_bytes().unwrap()[..]);
        // The Unsigned64 member's length field (innermost AVP header at offset 20+16+8+8).
        let at = 20 + 16 + 8 + 8 + 5;
        bytes[at..at + 3].copy_from_slice(&[0, 0, 200]);
        let e = Message::decode(bytes.freeze(), &TwoGroups, &Limits::default()).unwrap_err();
        match e {
            DecodeError::InvalidAvpLength(loc) => {
                assert_eq!(loc.code, AvpCode(421));
                assert_eq!(loc.offset, 52);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn result_code_and_experimental_result() {
        let h = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true).answer();
        let m = MessageBuf::new(h).with(AvpBuf::grouped(
            AvpCode::EXPERIMENTAL_RESULT,
            vec![
                AvpBuf::unsigned32(AvpCode::VENDOR_ID, 10415),
                AvpBuf::unsigned32(AvpCode::EXPERIMENTAL_RESULT_CODE, 5030),
            ],
        ));
        let d = Message::decode(m.to_bytes().unwrap(), &NoTypes, &Limits::default()).unwrap();
        assert_eq!(d.result_code(), Some(ResultCode::USER_UNKNOWN));
    }

    #[test]
    fn too_long_for_the_length_field() {
        let big = AvpBuf::new(
            AvpCode(1),
            AvpValue::Bytes(Bytes::from(vec![0u8; MAX_MESSAGE_LEN as usize])),
        );
        let m = MessageBuf::new(Header::default()).with(big);
        assert!(matches!(
            m.encoded_len(),
            Err(EncodeError::AvpTooLong(1, _))
        ));
        let half = AvpBuf::new(
            AvpCode(1),
            AvpValue::Bytes(Bytes::from(vec![0u8; 9_000_000])),
        );
        assert!(matches!(
            m.encode(&mut BytesMut::new()),
            Err(EncodeError::AvpTooLong(1, _))
        ));
        let m = MessageBuf::new(Header::default())
            .with(half.clone())
            .with(half.clone());
        assert!(matches!(
            m.encoded_len(),
            Err(EncodeError::MessageTooLong(_))
        ));
        let mut out = BytesMut::new();
        assert!(matches!(
            m.encode(&mut out),
            Err(EncodeError::MessageTooLong(_))
        ));
        assert!(out.is_empty(), "nothing written on an error");
        // Members that fit, in a group that does not: the group is named.
        let m = MessageBuf::new(Header::default())
            .with(AvpBuf::grouped(AvpCode(456), vec![half.clone(), half]));
        assert!(matches!(
            m.encode(&mut BytesMut::new()),
            Err(EncodeError::AvpTooLong(456, _))
        ));
    }
}
