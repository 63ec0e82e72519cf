//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the regression test that
//! replays their seeds and crash inputs (`tests/fuzz_replay.rs`). Each one panics only when an
//! invariant of the codec is broken, which is what the fuzzer hunts for.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::diameter::codec::{Limits, Message};
use crate::diameter::dict::Dictionary;
use crate::diameter::render;

fn dict() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(|| match Dictionary::builtin() {
        Ok(d) => d,
        // The bundled dictionaries are tested; a fuzz run cannot proceed without them.
        Err(e) => panic!("bundled dictionary refused: {e}"),
    })
}

fn limits() -> Limits {
    Limits {
        max_message_len: 1 << 16,
        max_depth: 16,
        max_avps: 4096,
    }
}

/// Decode, check against the grammar, render and build the Failed-AVP of any error.
pub fn decode_message(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    match Message::decode(frame, dict(), &limits()) {
        Ok(msg) => {
            if let Err(e) = dict().check(&msg, &limits()) {
                let _ = e.result_code();
                let _ = e.failed_avp(msg.frame(), 8);
            }
            for avp in msg.avps() {
                let _ = avp.utf8();
                let _ = avp.address();
                let _ = avp.uri();
                let _ = avp.ip_filter_rule();
                let _ = avp.time().map(|t| t.to_string());
            }
        }
        Err(e) => {
            let _ = e.failed_avp(data, 8);
        }
    }
    if let Ok(frames) = render::split_frames(data) {
        for f in frames {
            let _ = render::text(f, dict());
            let _ = render::json(f, dict());
        }
    }
}

/// decode -> owned -> encode -> decode: whatever decodes must re-encode, decode again to the
/// same owned message, and re-encode to the same bytes.
pub fn round_trip(data: &[u8]) {
    let Ok(first) = Message::decode(Bytes::copy_from_slice(data), dict(), &limits()) else {
        return;
    };
    let Ok(owned) = first.to_buf(dict()) else {
        return;
    };
    let bytes = match owned.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("a decoded message failed to encode: {e}"),
    };
    // Padding restored on a last Grouped member may make the message a few bytes longer.
    let relaxed = Limits {
        max_message_len: crate::diameter::codec::header::MAX_MESSAGE_LEN,
        ..limits()
    };
    let second = match Message::decode(bytes.clone(), dict(), &relaxed) {
        Ok(m) => m,
        Err(e) => panic!("re-encoded message does not decode: {e}"),
    };
    let owned2 = match second.to_buf(dict()) {
        Ok(o) => o,
        Err(e) => panic!("re-encoded message does not convert: {e}"),
    };
    assert_eq!(
        owned, owned2,
        "decode -> encode -> decode changed the message"
    );
    match owned2.to_bytes() {
        Ok(again) => assert_eq!(bytes, again, "encoding is not stable"),
        Err(e) => panic!("second encode failed: {e}"),
    }
}

/// Load arbitrary text as a dictionary file, alone and beside the bundled base and
/// credit-control files (names resolved across files, duplicates found). The large 3GPP file
/// is left out: parsing its 170 KB again for every input would hold the fuzzer to a few dozen
/// inputs a second, and it adds no code path the two others do not reach.
pub fn load_dictionary(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Dictionary::from_sources(&[("fuzz.xml", text)]) {
        let _ = d.avps().len();
    }
    let mut sources: Vec<(&str, &str)> = crate::diameter::dict::BUILTIN
        .iter()
        .filter(|(name, _)| !name.contains("3gpp"))
        .copied()
        .collect();
    sources.push(("fuzz.xml", text));
    let _ = Dictionary::from_sources(&sources);
}
