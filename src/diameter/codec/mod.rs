//! The Diameter wire format (RFC 6733 sections 3 and 4): pure functions over bytes, no I/O.
//!
//! ```text
//! TCP bytes --[framer]--> Bytes (one whole message)
//!           --[Message::decode]--> Message: header + index of top-level AVPs (zero copy)
//!           --[Avp::group / Avp::utf8 / ...]--> members and typed values, on demand
//! MessageBuf (owned AVP tree) --[encode]--> BytesMut, lengths computed before writing
//! ```
//!
//! The codec is total: every input gives `Ok` or a [`DecodeError`] that names the Result-Code
//! (5014, 5015, 3008, 3009, 5004, ...) and the Failed-AVP an answer must carry. Lengths are
//! checked before slicing, nesting depth and AVP count are bounded by [`Limits`], and nothing is
//! allocated from a length field before it has been validated.
//!
//! RFC rules and where they are kept:
//! - header layout, version, length and flag rules (section 3): [`header`]
//! - AVP header, V/M/P flags, padding (section 4.1): [`avp`]
//! - data types (sections 4.2, 4.3), Time across 2036 (4.3.1 via RFC 4330): [`value`]
//! - Result-Codes and Failed-AVP (sections 7.1, 7.5): [`error`]

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod avp;
mod codes;
pub mod error;
pub mod framer;
pub mod header;
pub mod message;
pub mod value;

pub use avp::{
    Avp, AvpBuf, AvpCode, AvpFlags, AvpHeader, AvpIter, AvpTypes, AvpValue, Members, NoTypes,
    VendorId,
};
pub use error::{AvpLocation, DecodeError, EncodeError, ResultCode};
pub use framer::{DiameterFramer, FrameError};
pub use header::{ApplicationId, CommandCode, CommandFlags, Header};
pub use message::{Limits, Message, MessageBuf};
pub use value::{Address, DataType, DiameterUri, IpFilterRule, Time, Value};
