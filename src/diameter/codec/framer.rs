//! Framing Diameter messages on a byte stream (TCP) with tokio-util.
//!
//! The decoder looks at the first four octets (Version and the 24-bit Message Length), refuses a
//! version other than 1 or an impossible length *before* it reserves any memory, waits for the
//! whole message and yields it as one `Bytes` (`split_to(len).freeze()`, no copy). The message
//! parser only ever sees complete frames.
//!
//! A framing error leaves the stream unreadable (there is no way to find the next message), so
//! the connection must be closed; the error says why.

use std::io;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use super::error::DecodeError;
use super::header::{self, HEADER_LEN, MAX_MESSAGE_LEN};

/// Why the stream cannot be read further.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("framing lost: {0}")]
    Invalid(DecodeError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("cannot encode message: {0}")]
    Encode(#[from] super::error::EncodeError),
}

/// A tokio-util codec: whole `Bytes` frames in and out.
#[derive(Clone, Copy, Debug)]
pub struct DiameterFramer {
    max_len: u32,
}

impl DiameterFramer {
    /// Accepts messages of at most `max_len` octets (capped at the 24-bit maximum).
    pub fn new(max_len: u32) -> Self {
        Self {
            max_len: max_len.min(MAX_MESSAGE_LEN),
        }
    }
}

impl Default for DiameterFramer {
    fn default() -> Self {
        Self::new(super::message::Limits::default().max_message_len)
    }
}

impl Decoder for DiameterFramer {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let (version, length) = match src.get(..4) {
            Some(&[version, l0, l1, l2]) => (version, u32::from_be_bytes([0, l0, l1, l2])),
            _ => return Ok(None),
        };
        header::check_length(version, length, self.max_len).map_err(FrameError::Invalid)?;
        let len = length as usize;
        if src.len() < len {
            // The length has been checked against the limit: reserving it is bounded.
            src.reserve(len - src.len());
            return Ok(None);
        }
        debug_assert!(len >= HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for DiameterFramer {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::{ApplicationId, AvpBuf, AvpCode, CommandCode, Header, MessageBuf};
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::{FramedRead, FramedWrite};

    fn msg(n: u32) -> Bytes {
        MessageBuf::new(Header::request(CommandCode(280), ApplicationId(0), false))
            .with(AvpBuf::unsigned32(AvpCode::ORIGIN_STATE_ID, n))
            .to_bytes()
            .unwrap()
    }

    #[test]
    fn waits_for_whole_frames() {
        let m = msg(1);
        let mut f = DiameterFramer::default();
        let mut buf = BytesMut::new();
        for (i, b) in m.iter().enumerate() {
            assert_eq!(f.decode(&mut buf).unwrap(), None, "at byte {i}");
            buf.extend_from_slice(&[*b]);
        }
        assert_eq!(f.decode(&mut buf).unwrap(), Some(m));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_before_reserving() {
        let mut f = DiameterFramer::new(4096);
        // Version 2.
        let mut buf = BytesMut::from(&[2u8, 0, 0, 20][..]);
        assert!(matches!(
            f.decode(&mut buf),
            Err(FrameError::Invalid(DecodeError::UnsupportedVersion(2)))
        ));
        // 16 MiB declared, limit 4096: refused without growing the buffer.
        let mut buf = BytesMut::from(&[1u8, 0xFF, 0xFF, 0xFC][..]);
        let cap = buf.capacity();
        assert!(matches!(
            f.decode(&mut buf),
            Err(FrameError::Invalid(DecodeError::MessageTooLong { .. }))
        ));
        assert_eq!(buf.capacity(), cap);
        // Under 20 and not a multiple of 4.
        for len in [0u8, 16, 21] {
            let mut buf = BytesMut::from(&[1u8, 0, 0, len][..]);
            assert!(f.decode(&mut buf).is_err(), "length {len}");
        }
    }

    #[tokio::test]
    async fn over_a_duplex_stream() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = FramedWrite::new(a, DiameterFramer::default());
        let mut r = FramedRead::new(b, DiameterFramer::default());
        let writer = tokio::spawn(async move {
            for n in 0..100 {
                w.send(msg(n)).await.unwrap();
            }
        });
        for n in 0..100 {
            assert_eq!(r.next().await.unwrap().unwrap(), msg(n));
        }
        writer.await.unwrap();
    }
}
