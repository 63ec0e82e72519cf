//! AVPs (RFC 6733 section 4): the borrowed view [`Avp`] over a received frame, the iterator
//! [`AvpIter`] that walks a message body or a Grouped payload, and the owned [`AvpBuf`] that the
//! encoder writes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           AVP Code                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V M P r r r r r|                  AVP Length                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Vendor-ID (opt)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Data ...          (AVP Length excludes the padding to 4 bytes)
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! Every length is checked before it is used to slice; the iterator never reads past its
//! container and stops for good after the first error.

use std::fmt;
use std::net::IpAddr;

use bytes::Bytes;

use super::error::{AvpLocation, DecodeError, EncodeError};
use super::value::{self, Address, DataType, DiameterUri, IpFilterRule, Time, Value, ValueError};

/// AVP header length without, and with, the Vendor-ID field.
pub const AVP_HEADER_LEN: usize = 8;
pub const AVP_HEADER_LEN_VENDOR: usize = 12;
/// Largest value of the 24-bit AVP Length field.
pub const MAX_AVP_LEN: usize = 0x00FF_FFFF;

/// An AVP code. Open: any value survives a round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct AvpCode(pub u32);

/// A Vendor-ID (IANA SMI Network Management Private Enterprise Code).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct VendorId(pub u32);

impl VendorId {
    pub const IETF: Self = Self(0);
    /// 3GPP, owner of the TS 32.299 AVPs.
    pub const TGPP: Self = Self(10415);
}

/// The AVP Flags octet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AvpFlags(pub u8);

impl AvpFlags {
    /// V: the Vendor-ID field is present.
    pub const VENDOR: u8 = 0x80;
    /// M: the receiver must understand the AVP or reject the message (5001).
    pub const MANDATORY: u8 = 0x40;
    /// P: reserved for end-to-end security (deprecated by RFC 6733, still on the wire).
    pub const PROTECTED: u8 = 0x20;
    /// The five reserved bits ("an unrecognized bit SHOULD be considered an error").
    pub const RESERVED: u8 = 0x1F;

    pub fn is_vendor(self) -> bool {
        self.0 & Self::VENDOR != 0
    }
    pub fn is_mandatory(self) -> bool {
        self.0 & Self::MANDATORY != 0
    }
    pub fn is_protected(self) -> bool {
        self.0 & Self::PROTECTED != 0
    }
    /// The flags with V cleared: V is derived from the presence of a Vendor-ID when encoding.
    #[must_use]
    pub fn without_vendor(self) -> Self {
        Self(self.0 & !Self::VENDOR)
    }
}

impl fmt::Debug for AvpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for AvpFlags {
    /// `VM-` style, then `+r` and the reserved bits if any are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Self::VENDOR, 'V'),
            (Self::MANDATORY, 'M'),
            (Self::PROTECTED, 'P'),
        ] {
            let c = if self.0 & bit != 0 { letter } else { '-' };
            fmt::Write::write_char(f, c)?;
        }
        if self.0 & Self::RESERVED != 0 {
            write!(f, "+r{:#x}", self.0 & Self::RESERVED)?;
        }
        Ok(())
    }
}

/// An AVP header as read from the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AvpHeader {
    pub code: AvpCode,
    pub flags: AvpFlags,
    /// The AVP Length field: header plus data, without padding.
    pub length: u32,
    pub vendor_id: Option<VendorId>,
}

impl AvpHeader {
    pub fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            AVP_HEADER_LEN_VENDOR
        } else {
            AVP_HEADER_LEN
        }
    }
}

/// A received AVP: its header and a slice of the frame holding its data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Avp<'a> {
    header: AvpHeader,
    data: &'a [u8],
    /// Offset of the AVP header from the start of the frame.
    offset: u32,
}

impl fmt::Debug for Avp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Avp")
            .field("code", &self.header.code.0)
            .field("flags", &self.header.flags)
            .field("vendor_id", &self.header.vendor_id.map(|v| v.0))
            .field("data", &HexSlice(self.data))
            .finish()
    }
}

struct HexSlice<'a>(&'a [u8]);

impl fmt::Debug for HexSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<'a> Avp<'a> {
    pub(crate) fn from_parts(header: AvpHeader, data: &'a [u8], offset: u32) -> Self {
        Self {
            header,
            data,
            offset,
        }
    }

    pub fn header(&self) -> &AvpHeader {
        &self.header
    }
    pub fn code(&self) -> AvpCode {
        self.header.code
    }
    pub fn flags(&self) -> AvpFlags {
        self.header.flags
    }
    pub fn vendor_id(&self) -> Option<VendorId> {
        self.header.vendor_id
    }
    /// The data field, without padding.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Offset of this AVP's header from the start of the frame.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// True when this AVP is (code, vendor); vendor 0 also matches an AVP without the V bit.
    pub fn is(&self, code: AvpCode, vendor: VendorId) -> bool {
        self.header.code == code && self.header.vendor_id.unwrap_or(VendorId::IETF) == vendor
    }

    /// Where this AVP sits, for errors and Failed-AVP.
    pub fn location(&self) -> AvpLocation {
        AvpLocation {
            code: self.header.code,
            flags: self.header.flags,
            vendor_id: self.header.vendor_id,
            offset: self.offset,
            length: self.header.length,
            available: self.header.length,
        }
    }

    fn typed<T>(&self, r: Result<T, ValueError>) -> Result<T, DecodeError> {
        r.map_err(|e| match e {
            ValueError::Length => DecodeError::InvalidAvpLength(self.location()),
            ValueError::Invalid(why) => DecodeError::InvalidAvpValue(self.location(), why),
        })
    }

    pub fn unsigned32(&self) -> Result<u32, DecodeError> {
        self.typed(value::unsigned32(self.data))
    }
    pub fn unsigned64(&self) -> Result<u64, DecodeError> {
        self.typed(value::unsigned64(self.data))
    }
    pub fn integer32(&self) -> Result<i32, DecodeError> {
        self.typed(value::integer32(self.data))
    }
    pub fn integer64(&self) -> Result<i64, DecodeError> {
        self.typed(value::integer64(self.data))
    }
    pub fn float32(&self) -> Result<f32, DecodeError> {
        self.typed(value::float32(self.data))
    }
    pub fn float64(&self) -> Result<f64, DecodeError> {
        self.typed(value::float64(self.data))
    }
    /// Enumerated is an Integer32 on the wire.
    pub fn enumerated(&self) -> Result<i32, DecodeError> {
        self.integer32()
    }
    pub fn utf8(&self) -> Result<&'a str, DecodeError> {
        self.typed(value::utf8(self.data))
    }
    pub fn identity(&self) -> Result<&'a str, DecodeError> {
        self.typed(value::identity(self.data))
    }
    pub fn address(&self) -> Result<Address<'a>, DecodeError> {
        self.typed(value::address(self.data))
    }
    pub fn time(&self) -> Result<Time, DecodeError> {
        self.typed(value::time(self.data))
    }
    pub fn uri(&self) -> Result<DiameterUri<'a>, DecodeError> {
        self.typed(value::uri(self.data))
    }
    pub fn ip_filter_rule(&self) -> Result<IpFilterRule<'a>, DecodeError> {
        self.typed(value::ip_filter_rule(self.data))
    }

    /// The AVPs inside this one, read as a Grouped payload, each as a `Result`: for data that
    /// has not been checked (the first malformed member is an `Err`, then the iterator ends).
    pub fn group(&self) -> AvpIter<'a> {
        AvpIter::new(self.data, self.data_offset())
    }

    /// The members of a Grouped AVP of a message that [`Message::decode`] accepted (with the
    /// same dictionary), where they are known to be well-formed. On malformed bytes the
    /// iteration simply ends; use [`Avp::group`] to learn why.
    ///
    /// [`Message::decode`]: super::Message::decode
    pub fn members(&self) -> Members<'a> {
        Members {
            buf: self.data,
            pos: 0,
            base: self.data_offset(),
        }
    }

    /// Offset of the data field from the start of the frame.
    pub fn data_offset(&self) -> u32 {
        self.offset.saturating_add(self.header.header_len() as u32)
    }

    /// The value decoded as `ty`. Grouped yields an iterator over the members.
    pub fn value(&self, ty: DataType) -> Result<Value<'a>, DecodeError> {
        Ok(match ty {
            DataType::OctetString => Value::OctetString(self.data),
            DataType::Integer32 => Value::Integer32(self.integer32()?),
            DataType::Integer64 => Value::Integer64(self.integer64()?),
            DataType::Unsigned32 => Value::Unsigned32(self.unsigned32()?),
            DataType::Unsigned64 => Value::Unsigned64(self.unsigned64()?),
            DataType::Float32 => Value::Float32(self.float32()?),
            DataType::Float64 => Value::Float64(self.float64()?),
            DataType::Grouped => Value::Grouped(self.group()),
            DataType::Address => Value::Address(self.address()?),
            DataType::Time => Value::Time(self.time()?),
            DataType::Utf8String => Value::Utf8String(self.utf8()?),
            DataType::DiameterIdentity => Value::DiameterIdentity(self.identity()?),
            DataType::DiameterUri => Value::DiameterUri(self.uri()?),
            DataType::Enumerated => Value::Enumerated(self.enumerated()?),
            DataType::IpFilterRule => Value::IpFilterRule(self.ip_filter_rule()?),
        })
    }

    /// Checks the value against its data type (and, for Grouped, that the members are
    /// well-formed AVPs) without building anything.
    pub fn check_value(&self, ty: DataType) -> Result<(), DecodeError> {
        match self.value(ty)? {
            Value::Grouped(members) => {
                for m in members {
                    m?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An owned copy. `frame` must be the buffer this AVP was read from (its data is then
    /// shared, not copied); `types` says which AVPs are Grouped and which are numbers.
    ///
    /// A Grouped AVP whose payload is not a run of well-formed AVPs (only a Failed-AVP can be
    /// so in a decoded message), or that is nested deeper than [`TO_BUF_MAX_DEPTH`], is kept
    /// as its raw bytes, so that it still re-encodes exactly as received.
    pub fn to_buf(&self, frame: &Bytes, types: &dyn AvpTypes) -> Result<AvpBuf, DecodeError> {
        Ok(self.owned_at(frame, types, 0))
    }

    fn owned_at(self, frame: &Bytes, types: &dyn AvpTypes, depth: usize) -> AvpBuf {
        let ty = types.data_type(self.header.code, self.header.vendor_id.unwrap_or_default());
        let value = match ty {
            Some(DataType::Grouped) if depth < TO_BUF_MAX_DEPTH => {
                let mut members = Vec::new();
                let mut sound = true;
                for m in self.group() {
                    match m {
                        Ok(m) => members.push(m.owned_at(frame, types, depth + 1)),
                        Err(_) => {
                            sound = false;
                            break;
                        }
                    }
                }
                if sound {
                    AvpValue::Grouped(members)
                } else {
                    AvpValue::Bytes(share(frame, self.data))
                }
            }
            Some(DataType::Integer32 | DataType::Enumerated) => match self.integer32() {
                Ok(v) => AvpValue::Integer32(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            Some(DataType::Integer64) => match self.integer64() {
                Ok(v) => AvpValue::Integer64(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            Some(DataType::Unsigned32) => match self.unsigned32() {
                Ok(v) => AvpValue::Unsigned32(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            Some(DataType::Unsigned64) => match self.unsigned64() {
                Ok(v) => AvpValue::Unsigned64(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            Some(DataType::Float32) => match self.float32() {
                Ok(v) => AvpValue::Float32(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            Some(DataType::Float64) => match self.float64() {
                Ok(v) => AvpValue::Float64(v),
                Err(_) => AvpValue::Bytes(share(frame, self.data)),
            },
            _ => AvpValue::Bytes(share(frame, self.data)),
        };
        AvpBuf {
            code: self.header.code,
            flags: self.header.flags.without_vendor(),
            vendor_id: self.header.vendor_id,
            value,
        }
    }
}

/// Grouped AVPs nested deeper than this are kept as raw bytes by [`Avp::to_buf`], which
/// bounds its recursion whatever the [`Limits`](super::Limits) of the decode were (their
/// depth is a `u8`, so this is never reached for a message the decoder walked whole).
pub const TO_BUF_MAX_DEPTH: usize = 256;

/// A zero-copy slice of `frame` when `data` lies inside it, a copy otherwise.
fn share(frame: &Bytes, data: &[u8]) -> Bytes {
    let start = frame.as_ptr() as usize;
    let at = data.as_ptr() as usize;
    if data.is_empty() {
        return Bytes::new();
    }
    match at.checked_sub(start) {
        Some(off) if off.saturating_add(data.len()) <= frame.len() => {
            frame.slice(off..off + data.len())
        }
        _ => Bytes::copy_from_slice(data),
    }
}

/// What the codec needs to know of a dictionary: the data type of an AVP, if known.
/// Vendor 0 stands for "no Vendor-ID".
pub trait AvpTypes {
    fn data_type(&self, code: AvpCode, vendor: VendorId) -> Option<DataType>;
}

/// A dictionary that knows nothing: every AVP is opaque.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTypes;

impl AvpTypes for NoTypes {
    fn data_type(&self, _: AvpCode, _: VendorId) -> Option<DataType> {
        None
    }
}

/// Walks consecutive AVPs in a message body or a Grouped payload.
///
/// Yields `Err` once at the first malformed AVP and then ends.
#[derive(Clone, Debug)]
pub struct AvpIter<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the frame, for error locations.
    base: u32,
    done: bool,
}

impl<'a> AvpIter<'a> {
    /// Iterates the AVPs of `buf`, whose first byte sits at `base` in its frame.
    pub fn new(buf: &'a [u8], base: u32) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            done: false,
        }
    }

    /// The part of the buffer not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Offset in the frame of the next AVP to read.
    pub fn offset(&self) -> u32 {
        self.base.saturating_add(self.pos as u32)
    }
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<Avp<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.remaining();
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.offset();
        match parse_avp(rest, offset) {
            Some((avp, consumed)) => {
                self.pos = self.pos.saturating_add(consumed);
                Some(Ok(avp))
            }
            None => {
                self.done = true;
                Some(Err(diagnose(rest, offset)))
            }
        }
    }
}

impl std::iter::FusedIterator for AvpIter<'_> {}

/// Iterator over the members of a checked Grouped AVP (see [`Avp::members`]).
#[derive(Clone, Debug)]
pub struct Members<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = Avp<'a>;

    #[inline]
    fn next(&mut self) -> Option<Avp<'a>> {
        let rest = self.buf.get(self.pos..)?;
        let offset = self.base.saturating_add(self.pos as u32);
        let (avp, consumed) = parse_avp(rest, offset)?;
        self.pos = self.pos.saturating_add(consumed);
        Some(avp)
    }
}

impl std::iter::FusedIterator for Members<'_> {}

/// Calls `f` on each AVP of `buf` (whose first byte sits at `base` in the frame), stopping at
/// the first error, its own or `f`'s. The decoder's walk: no `Result` is built per AVP.
#[inline]
pub(crate) fn try_for_each_avp<'a>(
    buf: &'a [u8],
    base: u32,
    mut f: impl FnMut(Avp<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut rest = buf;
    let mut offset = base;
    // `offset` cannot wrap: frames are at most 2^24 octets.
    while !rest.is_empty() {
        let Some((avp, consumed)) = parse_avp(rest, offset) else {
            return Err(diagnose(rest, offset));
        };
        f(avp)?;
        rest = rest.get(consumed..).unwrap_or_default();
        offset = offset.wrapping_add(consumed as u32);
    }
    Ok(())
}

/// Reads the AVP at the start of `rest` (which runs to the end of its container). Returns the
/// AVP and the number of bytes it takes with its padding (never more than `rest.len()`).
///
/// RFC 6733 section 4.4 has a Grouped length include its members' padding; a last member
/// whose padding is missing is accepted since its length is still inside the container.
///
/// This is the innermost loop of decoding, so the fixed 8 (or 12) header octets are read as
/// arrays (`split_first_chunk`) rather than through nom's byte-wise number parsers, which cost
/// several nanoseconds per AVP here (profiled with `cargo bench --bench codec`). The errors are
/// built out of line.
#[cfg(test)]
pub(crate) fn read_avp(rest: &[u8], offset: u32) -> Result<(Avp<'_>, usize), DecodeError> {
    match parse_avp(rest, offset) {
        Some(found) => Ok(found),
        None => Err(diagnose(rest, offset)),
    }
}

/// The fast path: `None` when anything is wrong, [`diagnose`] then says what. Returning an
/// `Option` (whose niche is the data pointer) keeps the hot loop free of the wide error enum.
#[inline(always)]
fn parse_avp(rest: &[u8], offset: u32) -> Option<(Avp<'_>, usize)> {
    let ([c0, c1, c2, c3, flags, l0, l1, l2], after) = rest.split_first_chunk::<8>()?;
    let flags = AvpFlags(*flags);
    let length = u32::from_be_bytes([0, *l0, *l1, *l2]);
    let (vendor_id, header_len) = if flags.is_vendor() {
        let v = after.first_chunk::<4>()?;
        (
            Some(VendorId(u32::from_be_bytes(*v))),
            AVP_HEADER_LEN_VENDOR,
        )
    } else {
        (None, AVP_HEADER_LEN)
    };
    let len = length as usize;
    if len < header_len || flags.0 & AvpFlags::RESERVED != 0 {
        return None;
    }
    let data = rest.get(header_len..len)?;
    let header = AvpHeader {
        code: AvpCode(u32::from_be_bytes([*c0, *c1, *c2, *c3])),
        flags,
        length,
        vendor_id,
    };
    Some((
        Avp {
            header,
            data,
            offset,
        },
        padded(len).min(rest.len()),
    ))
}

/// What is wrong with the AVP at the start of `rest`, once [`parse_avp`] has refused it:
/// a length problem first (5014), else reserved flag bits (3009).
#[cold]
#[inline(never)]
fn diagnose(rest: &[u8], offset: u32) -> DecodeError {
    let Some(([_, _, _, _, flags, l0, l1, l2], after)) = rest.split_first_chunk::<8>() else {
        return bad_length(rest, offset, 0, None);
    };
    let flags = AvpFlags(*flags);
    let length = u32::from_be_bytes([0, *l0, *l1, *l2]);
    let (vendor_id, header_len) = if flags.is_vendor() {
        match after.first_chunk::<4>() {
            Some(v) => (
                Some(VendorId(u32::from_be_bytes(*v))),
                AVP_HEADER_LEN_VENDOR,
            ),
            None => return bad_length(rest, offset, length, None),
        }
    } else {
        (None, AVP_HEADER_LEN)
    };
    let len = length as usize;
    if len < header_len || len > rest.len() {
        return bad_length(rest, offset, length, vendor_id);
    }
    DecodeError::InvalidAvpBits(location(rest, offset, length, vendor_id))
}

/// 5014 for the AVP at the start of `rest`. RFC 6733 7.5: with fewer than 8 octets, the
/// partial header is reported padded with zeros.
#[cold]
fn bad_length(rest: &[u8], offset: u32, length: u32, vendor_id: Option<VendorId>) -> DecodeError {
    DecodeError::InvalidAvpLength(location(rest, offset, length, vendor_id))
}

#[cold]
fn location(rest: &[u8], offset: u32, length: u32, vendor_id: Option<VendorId>) -> AvpLocation {
    AvpLocation {
        code: AvpCode(partial_u32(rest)),
        flags: AvpFlags(rest.get(4).copied().unwrap_or(0)),
        vendor_id,
        offset,
        length,
        available: rest.len().try_into().unwrap_or(u32::MAX),
    }
}

/// The first four bytes as a big-endian number, zero-filled when fewer are present.
fn partial_u32(b: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    for (dst, src) in word.iter_mut().zip(b) {
        *dst = *src;
    }
    u32::from_be_bytes(word)
}

/// `n` rounded up to a multiple of 4.
#[inline]
pub(crate) fn padded(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A cursor over a zero-filled output buffer whose size was computed beforehand. Writes past
/// the end are dropped rather than panicking; the encoder sizes the buffer so none happen.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Copies `bytes` at the cursor. The cursor cannot overflow: buffers are at most 2^24 octets.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        if let Some((dst, _)) = self
            .buf
            .get_mut(self.pos..)
            .and_then(|rest| rest.split_at_mut_checked(bytes.len()))
        {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }

    /// Copies a fixed-size array at the cursor (no length check beyond the bounds check).
    #[inline]
    pub(crate) fn put_array<const N: usize>(&mut self, bytes: [u8; N]) {
        if let Some(dst) = self
            .buf
            .get_mut(self.pos..)
            .and_then(|rest| rest.first_chunk_mut::<N>())
        {
            *dst = bytes;
        }
        self.pos += N;
    }

    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// Overwrites the 24-bit length field at `at` (an AVP's or the message's), already
    /// written; `len` has been checked to fit.
    #[inline]
    pub(crate) fn patch_u24(&mut self, at: usize, len: usize) {
        if let Some(dst) = self
            .buf
            .get_mut(at..)
            .and_then(|rest| rest.first_chunk_mut::<3>())
        {
            let [_, l0, l1, l2] = (len as u32).to_be_bytes();
            *dst = [l0, l1, l2];
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }
}

/// The value of an owned AVP. Every OctetString-derived type (UTF8String, DiameterIdentity,
/// Address, Time, URI, IPFilterRule, and unknown AVPs) is held as its wire bytes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AvpValue {
    Bytes(Bytes),
    Integer32(i32),
    Integer64(i64),
    Unsigned32(u32),
    Unsigned64(u64),
    Float32(f32),
    Float64(f64),
    Grouped(Vec<AvpBuf>),
}

impl PartialEq for AvpValue {
    /// Floats compare by bit pattern, so that NaN payloads round-trip in tests.
    fn eq(&self, other: &Self) -> bool {
        use AvpValue::*;
        match (self, other) {
            (Bytes(a), Bytes(b)) => a == b,
            (Integer32(a), Integer32(b)) => a == b,
            (Integer64(a), Integer64(b)) => a == b,
            (Unsigned32(a), Unsigned32(b)) => a == b,
            (Unsigned64(a), Unsigned64(b)) => a == b,
            (Float32(a), Float32(b)) => a.to_bits() == b.to_bits(),
            (Float64(a), Float64(b)) => a.to_bits() == b.to_bits(),
            (Grouped(a), Grouped(b)) => a == b,
            _ => false,
        }
    }
}

impl AvpValue {
    /// Length of the data field, without padding.
    pub fn data_len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::Integer32(_) | Self::Unsigned32(_) | Self::Float32(_) => 4,
            Self::Integer64(_) | Self::Unsigned64(_) | Self::Float64(_) => 8,
            Self::Grouped(members) => members.iter().map(AvpBuf::encoded_len).sum(),
        }
    }
}

/// An AVP to encode. The V flag is derived from `vendor_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct AvpBuf {
    pub code: AvpCode,
    pub flags: AvpFlags,
    pub vendor_id: Option<VendorId>,
    pub value: AvpValue,
}

impl AvpBuf {
    /// An IETF AVP with the M bit set, the common case on Gy/Ro.
    pub fn new(code: AvpCode, value: AvpValue) -> Self {
        Self {
            code,
            flags: AvpFlags(AvpFlags::MANDATORY),
            vendor_id: None,
            value,
        }
    }

    /// Sets the Vendor-ID (and so the V bit).
    #[must_use]
    pub fn vendor(mut self, vendor: VendorId) -> Self {
        self.vendor_id = Some(vendor);
        self
    }

    /// Sets or clears the M bit.
    #[must_use]
    pub fn mandatory(mut self, on: bool) -> Self {
        self.flags = if on {
            AvpFlags(self.flags.0 | AvpFlags::MANDATORY)
        } else {
            AvpFlags(self.flags.0 & !AvpFlags::MANDATORY)
        };
        self
    }

    pub fn unsigned32(code: AvpCode, v: u32) -> Self {
        Self::new(code, AvpValue::Unsigned32(v))
    }
    pub fn unsigned64(code: AvpCode, v: u64) -> Self {
        Self::new(code, AvpValue::Unsigned64(v))
    }
    pub fn integer32(code: AvpCode, v: i32) -> Self {
        Self::new(code, AvpValue::Integer32(v))
    }
    pub fn integer64(code: AvpCode, v: i64) -> Self {
        Self::new(code, AvpValue::Integer64(v))
    }
    pub fn enumerated(code: AvpCode, v: i32) -> Self {
        Self::new(code, AvpValue::Integer32(v))
    }
    pub fn float32(code: AvpCode, v: f32) -> Self {
        Self::new(code, AvpValue::Float32(v))
    }
    pub fn float64(code: AvpCode, v: f64) -> Self {
        Self::new(code, AvpValue::Float64(v))
    }
    pub fn octets(code: AvpCode, v: impl Into<Bytes>) -> Self {
        Self::new(code, AvpValue::Bytes(v.into()))
    }
    /// UTF8String (also DiameterIdentity and DiameterURI, which are ASCII text on the wire).
    pub fn utf8(code: AvpCode, v: &str) -> Self {
        Self::new(code, AvpValue::Bytes(Bytes::copy_from_slice(v.as_bytes())))
    }
    /// UTF8String from a static string: no copy.
    pub fn utf8_static(code: AvpCode, v: &'static str) -> Self {
        Self::new(code, AvpValue::Bytes(Bytes::from_static(v.as_bytes())))
    }
    pub fn address(code: AvpCode, ip: IpAddr) -> Self {
        Self::new(code, AvpValue::Bytes(value::encode_address(ip)))
    }
    pub fn time(code: AvpCode, t: Time) -> Self {
        Self::new(
            code,
            AvpValue::Bytes(Bytes::copy_from_slice(&t.0.to_be_bytes())),
        )
    }
    pub fn grouped(code: AvpCode, members: Vec<AvpBuf>) -> Self {
        Self::new(code, AvpValue::Grouped(members))
    }

    pub fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            AVP_HEADER_LEN_VENDOR
        } else {
            AVP_HEADER_LEN
        }
    }

    /// Bytes this AVP takes on the wire, padding included.
    pub fn encoded_len(&self) -> usize {
        padded(self.header_len().saturating_add(self.value.data_len()))
    }

    /// Checks that this AVP and every member fit the 24-bit length fields, returning the
    /// encoded length with padding. Encoding runs this once over the whole message before it
    /// writes, so it is kept lean: leaves inline, the walk over members out of line.
    #[inline]
    pub fn checked_len(&self) -> Result<usize, EncodeError> {
        let data = match &self.value {
            AvpValue::Grouped(members) => Self::checked_members_len(members)?,
            v => v.data_len(),
        };
        let len = self.header_len().saturating_add(data);
        if len > MAX_AVP_LEN {
            return Err(EncodeError::AvpTooLong(self.code.0, len));
        }
        Ok(padded(len))
    }

    #[inline(never)]
    fn checked_members_len(members: &[AvpBuf]) -> Result<usize, EncodeError> {
        let mut sum = 0usize;
        for m in members {
            sum = sum.saturating_add(m.checked_len()?);
        }
        Ok(sum)
    }

    /// The encoding pass's measure: the encoded length with padding, or `usize::MAX` when this
    /// AVP or a member is over the 24-bit AVP Length limit (the saturating sums carry that up).
    /// It returns in a register, where [`AvpBuf::checked_len`] returns a `Result` through
    /// memory; the caller asks `checked_len` which AVP is at fault only on the rare failure.
    #[inline]
    pub(crate) fn wire_len(&self) -> usize {
        let data = match &self.value {
            AvpValue::Grouped(members) => Self::members_wire_len(members),
            v => v.data_len(),
        };
        let len = self.header_len().saturating_add(data);
        if len > MAX_AVP_LEN {
            usize::MAX
        } else {
            padded(len)
        }
    }

    #[inline(never)]
    fn members_wire_len(members: &[AvpBuf]) -> usize {
        members
            .iter()
            .fold(0usize, |sum, m| sum.saturating_add(m.wire_len()))
    }

    /// Writes `avps` into `w`, whose buffer is zero-filled: padding is skipped, not written.
    /// The caller has checked the lengths ([`AvpBuf::wire_len`]); a Grouped AVP's length is
    /// filled in once its members are written. One loop per level, calling itself only for
    /// Grouped members, so that a leaf AVP costs no function call.
    #[inline(never)]
    pub(crate) fn write_all(avps: &[AvpBuf], w: &mut Writer<'_>) {
        for a in avps {
            match &a.value {
                AvpValue::Unsigned32(v) => a.write_word(w, v.to_be_bytes()),
                AvpValue::Integer32(v) => a.write_word(w, v.to_be_bytes()),
                AvpValue::Float32(v) => a.write_word(w, v.to_be_bytes()),
                AvpValue::Unsigned64(v) => a.write_dword(w, v.to_be_bytes()),
                AvpValue::Integer64(v) => a.write_dword(w, v.to_be_bytes()),
                AvpValue::Float64(v) => a.write_dword(w, v.to_be_bytes()),
                AvpValue::Bytes(b) => {
                    let len = a.write_header(w, b.len());
                    w.put(b);
                    w.skip(padded(len) - len);
                }
                AvpValue::Grouped(members) => {
                    let start = w.position();
                    a.write_header(w, 0);
                    Self::write_all(members, w);
                    // Members are padded, so the group needs no padding of its own.
                    w.patch_u24(start + 5, w.position() - start);
                }
            }
        }
    }

    /// The first two header words: code, then flags (V from the Vendor-ID) and AVP Length.
    #[inline(always)]
    fn header_words(&self, data_len: usize) -> ([u8; 4], [u8; 4]) {
        let vendor_bit = if self.vendor_id.is_some() {
            AvpFlags::VENDOR
        } else {
            0
        };
        let flags = (self.flags.0 & !AvpFlags::VENDOR) | vendor_bit;
        let len = self.header_len() + data_len;
        (
            self.code.0.to_be_bytes(),
            ((u32::from(flags) << 24) | (len as u32 & 0x00FF_FFFF)).to_be_bytes(),
        )
    }

    /// A 4-octet value (no padding): header and value in one write.
    #[inline(always)]
    fn write_word(&self, w: &mut Writer<'_>, [d0, d1, d2, d3]: [u8; 4]) {
        let ([c0, c1, c2, c3], [f, l0, l1, l2]) = self.header_words(4);
        match self.vendor_id {
            None => w.put_array([c0, c1, c2, c3, f, l0, l1, l2, d0, d1, d2, d3]),
            Some(v) => {
                let [v0, v1, v2, v3] = v.0.to_be_bytes();
                w.put_array([
                    c0, c1, c2, c3, f, l0, l1, l2, v0, v1, v2, v3, d0, d1, d2, d3,
                ]);
            }
        }
    }

    /// An 8-octet value (no padding): header and value in one write.
    #[inline(always)]
    fn write_dword(&self, w: &mut Writer<'_>, value: [u8; 8]) {
        let ([c0, c1, c2, c3], [f, l0, l1, l2]) = self.header_words(8);
        let [d0, d1, d2, d3, d4, d5, d6, d7] = value;
        match self.vendor_id {
            None => w.put_array([
                c0, c1, c2, c3, f, l0, l1, l2, d0, d1, d2, d3, d4, d5, d6, d7,
            ]),
            Some(v) => {
                let [v0, v1, v2, v3] = v.0.to_be_bytes();
                w.put_array([
                    c0, c1, c2, c3, f, l0, l1, l2, v0, v1, v2, v3, d0, d1, d2, d3, d4, d5, d6, d7,
                ]);
            }
        }
    }

    /// Writes the 8- or 12-octet header for `data_len` octets of data; returns the AVP Length.
    #[inline(always)]
    fn write_header(&self, w: &mut Writer<'_>, data_len: usize) -> usize {
        let len = self.header_len() + data_len;
        let ([c0, c1, c2, c3], [f, l0, l1, l2]) = self.header_words(data_len);
        match self.vendor_id {
            None => w.put_array([c0, c1, c2, c3, f, l0, l1, l2]),
            Some(v) => {
                let [v0, v1, v2, v3] = v.0.to_be_bytes();
                w.put_array([c0, c1, c2, c3, f, l0, l1, l2, v0, v1, v2, v3]);
            }
        }
        len
    }

    /// This AVP alone, encoded (for a Failed-AVP payload, or tests).
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let len = self.checked_len()?;
        let mut v = vec![0u8; len];
        Self::write_all(std::slice::from_ref(self), &mut Writer::new(&mut v));
        Ok(v)
    }

    /// Finds the first member (for Grouped values) with this code and vendor.
    pub fn member(&self, code: AvpCode, vendor: VendorId) -> Option<&AvpBuf> {
        match &self.value {
            AvpValue::Grouped(m) => m
                .iter()
                .find(|a| a.code == code && a.vendor_id.unwrap_or_default() == vendor),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(a: &AvpBuf) -> Vec<u8> {
        a.to_vec().unwrap()
    }

    #[test]
    fn unsigned32_layout() {
        let b = enc(&AvpBuf::unsigned32(AvpCode(416), 1));
        assert_eq!(b, [0, 0, 1, 0xA0, 0x40, 0, 0, 12, 0, 0, 0, 1]);
    }

    #[test]
    fn vendor_avp_layout_and_padding() {
        let a = AvpBuf::octets(AvpCode(2), &b"\x01\x02\x03"[..])
            .vendor(VendorId::TGPP)
            .mandatory(false);
        let b = enc(&a);
        // code 2, flags V, length 12 + 3 = 15, vendor 10415, 3 data bytes, 1 pad byte
        assert_eq!(
            b,
            [0, 0, 0, 2, 0x80, 0, 0, 15, 0, 0, 0x28, 0xAF, 1, 2, 3, 0]
        );
        let (avp, used) = read_avp(&b, 0).unwrap();
        assert_eq!(used, 16);
        assert_eq!(avp.vendor_id(), Some(VendorId::TGPP));
        assert_eq!(avp.data(), &[1, 2, 3]);
    }

    #[test]
    fn grouped_round_trip() {
        let g = AvpBuf::grouped(
            AvpCode(413),
            vec![
                AvpBuf::grouped(
                    AvpCode(445),
                    vec![
                        AvpBuf::integer64(AvpCode(447), 1234),
                        AvpBuf::integer32(AvpCode(429), -2),
                    ],
                ),
                AvpBuf::unsigned32(AvpCode(425), 978),
            ],
        );
        let b = enc(&g);
        assert_eq!(b.len(), g.encoded_len());
        let (avp, _) = read_avp(&b, 0).unwrap();
        let members: Vec<_> = avp.group().collect::<Result<_, _>>().unwrap();
        assert_eq!(members.len(), 2);
        let uv: Vec<_> = members[0].group().collect::<Result<_, _>>().unwrap();
        assert_eq!(uv[0].integer64(), Ok(1234));
        assert_eq!(uv[1].integer32(), Ok(-2));
        assert_eq!(members[1].unsigned32(), Ok(978));
        // offsets are absolute: the first member starts right after the outer header
        assert_eq!(members[0].offset(), 8);
    }

    #[test]
    fn hostile_lengths_are_errors() {
        // length below the header size
        let b = [0, 0, 1, 0xA0, 0x40, 0, 0, 4, 0, 0, 0, 0];
        assert!(matches!(
            read_avp(&b, 0),
            Err(DecodeError::InvalidAvpLength(_))
        ));
        // length beyond the container
        let b = [0, 0, 1, 0xA0, 0x40, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
        assert!(matches!(
            read_avp(&b, 0),
            Err(DecodeError::InvalidAvpLength(_))
        ));
        // V bit but no room for the Vendor-ID
        let b = [0, 0, 1, 0xA0, 0xC0, 0, 0, 8];
        assert!(matches!(
            read_avp(&b, 0),
            Err(DecodeError::InvalidAvpLength(_))
        ));
        // V bit and a length under 12
        let b = [0, 0, 1, 0xA0, 0xC0, 0, 0, 10, 0, 0, 0, 0];
        assert!(matches!(
            read_avp(&b, 0),
            Err(DecodeError::InvalidAvpLength(_))
        ));
        // truncated header
        let e = read_avp(&[0, 0, 1], 40).unwrap_err();
        let loc = e.location().unwrap();
        assert_eq!((loc.code, loc.offset), (AvpCode(0x100), 40));
        // reserved flag bits
        let b = [0, 0, 1, 0xA0, 0x41, 0, 0, 12, 0, 0, 0, 1];
        assert!(matches!(
            read_avp(&b, 0),
            Err(DecodeError::InvalidAvpBits(_))
        ));
    }

    #[test]
    fn iterator_stops_after_an_error() {
        let mut b = enc(&AvpBuf::unsigned32(AvpCode(1), 1));
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 99]);
        let items: Vec<_> = AvpIter::new(&b, 20).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1].unwrap_err().location().unwrap().offset, 32);
    }

    #[test]
    fn typed_accessors_check_lengths() {
        let b = enc(&AvpBuf::octets(AvpCode(1), &b"\x00\x00\x01"[..]));
        let (avp, _) = read_avp(&b, 0).unwrap();
        assert!(matches!(
            avp.unsigned32(),
            Err(DecodeError::InvalidAvpLength(_))
        ));
        let b = enc(&AvpBuf::octets(AvpCode(1), &b"\xff\xfe"[..]));
        let (avp, _) = read_avp(&b, 0).unwrap();
        assert!(matches!(avp.utf8(), Err(DecodeError::InvalidAvpValue(..))));
    }

    #[test]
    fn last_member_without_padding_is_accepted() {
        // Grouped of length 8 + 9: one member of length 9 whose padding is missing.
        let b = [
            0, 0, 1, 0xBB, 0x40, 0, 0, 17, 0, 0, 0, 1, 0, 0, 0, 9, 7, 0, 0, 0,
        ];
        let (g, used) = read_avp(&b, 0).unwrap();
        assert_eq!(used, 20);
        let m: Vec<_> = g.group().collect::<Result<_, _>>().unwrap();
        assert_eq!(m[0].data(), &[7]);
    }
}
