//! Checking a decoded message against its command's grammar (RFC 6733 sections 3.2, 4.1, 7.1).
//!
//! The first problem found, in message order, is reported; missing AVPs are reported after the
//! walk. RFC 6733 section 4.1: an unrecognized AVP without the M bit "MUST NOT" cause a
//! rejection, so it is skipped; one with the M bit is DIAMETER_AVP_UNSUPPORTED (5001).

use super::{AvpDef, Dictionary, Grammar};
use crate::diameter::codec::{
    Avp, AvpCode, AvpFlags, AvpIter, DataType, DecodeError, Limits, Message, VendorId,
};

impl Dictionary {
    /// Checks `msg` against the grammar of its command: header P bit (3008), every AVP's
    /// flags (5016), value (5014, 5004), known-ness (5001), place in the grammar (5008),
    /// occurrences (5009) and required AVPs (5005), down into Grouped AVPs.
    ///
    /// A command the dictionary lacks is [`DecodeError::CommandUnsupported`] (3001).
    pub fn check(&self, msg: &Message, limits: &Limits) -> Result<(), DecodeError> {
        let h = msg.header();
        let Some(cmd) = self.command(h.application_id, h.code) else {
            return Err(DecodeError::CommandUnsupported {
                code: h.code,
                application: h.application_id,
            });
        };
        if h.flags.is_proxiable() != cmd.proxiable && !h.flags.is_error() {
            return Err(DecodeError::InvalidHeaderBits { flags: h.flags.0 });
        }
        let grammar = if h.flags.is_error() {
            match self.error_answer() {
                Some(g) => g,
                None => return Ok(()),
            }
        } else if h.flags.is_request() {
            &cmd.request
        } else {
            &cmd.answer
        };
        self.check_level(msg.avps().map(Ok), grammar, 0, limits.max_depth)
    }

    fn check_level<'a>(
        &self,
        avps: impl Iterator<Item = Result<Avp<'a>, DecodeError>>,
        grammar: &Grammar,
        depth: u8,
        max_depth: u8,
    ) -> Result<(), DecodeError> {
        let mut counts = vec![0u32; grammar.rules.len()];
        let fixed = grammar.rules.iter().take_while(|r| r.fixed).count();
        for (position, avp) in avps.enumerate() {
            let avp = avp?;
            let vendor = avp.vendor_id().unwrap_or_default();
            let Some(index) = self.index_of(avp.code(), vendor) else {
                if avp.flags().is_mandatory() {
                    return Err(DecodeError::AvpUnsupported(avp.location()));
                }
                continue;
            };
            let Some(def) = self.avp_at(index) else {
                continue;
            };
            self.check_avp(&avp, def, depth, max_depth)?;
            match grammar.rules.iter().position(|r| r.avp == index) {
                None if grammar.any => {}
                None => return Err(DecodeError::AvpNotAllowed(avp.location())),
                Some(r) => {
                    let (Some(rule), Some(count)) = (grammar.rules.get(r), counts.get_mut(r))
                    else {
                        continue;
                    };
                    *count += 1;
                    if rule.max.is_some_and(|max| *count > max) {
                        return Err(DecodeError::AvpOccursTooManyTimes(avp.location()));
                    }
                    // `< AVP >`: the r-th fixed rule must be the r-th AVP of the message.
                    if rule.fixed && position != r {
                        return Err(DecodeError::AvpNotAllowed(avp.location()));
                    }
                }
            }
            if position < fixed && grammar.rules.get(position).is_some_and(|r| r.avp != index) {
                // Whatever sits where a fixed AVP belongs: report the fixed one as missing.
                return Err(self.missing(grammar, position));
            }
        }
        for (r, (rule, count)) in grammar.rules.iter().zip(&counts).enumerate() {
            if *count < rule.min {
                return Err(self.missing(grammar, r));
            }
        }
        Ok(())
    }

    fn missing(&self, grammar: &Grammar, rule: usize) -> DecodeError {
        let def = grammar.rules.get(rule).and_then(|r| self.avp_at(r.avp));
        match def {
            Some(def) => DecodeError::MissingAvp {
                code: def.code,
                vendor_id: (def.vendor != VendorId::IETF).then_some(def.vendor),
                flags: AvpFlags(def.must.0 & AvpFlags::MANDATORY),
                min_len: u8::try_from(def.data_type.min_len()).unwrap_or(u8::MAX),
            },
            None => DecodeError::TooManyAvps { max: 0 },
        }
    }

    /// Flags against the definition, then the value (Grouped: members, recursively).
    fn check_avp(
        &self,
        avp: &Avp<'_>,
        def: &AvpDef,
        depth: u8,
        max_depth: u8,
    ) -> Result<(), DecodeError> {
        let flags = avp.flags().0;
        // V follows the Vendor-ID field; M and P are checked against the definition.
        let checked = AvpFlags::MANDATORY | AvpFlags::PROTECTED | AvpFlags::VENDOR;
        let missing = def.must.0 & !flags & (AvpFlags::MANDATORY | AvpFlags::VENDOR);
        let forbidden = def.must_not.0 & flags & checked;
        if missing != 0 || forbidden != 0 {
            return Err(DecodeError::InvalidAvpBitCombo(avp.location()));
        }
        if def.data_type != DataType::Grouped {
            return avp.check_value(def.data_type);
        }
        if def.code == AvpCode::FAILED_AVP && def.vendor == VendorId::IETF {
            // RFC 6733 7.5: its members are copies of AVPs that failed somewhere (unknown
            // with M, bad flags, bad values, bad lengths): judging them again would turn the
            // report into the error.
            return Ok(());
        }
        if depth >= max_depth {
            return Err(DecodeError::TooDeep(avp.location(), max_depth));
        }
        let members: AvpIter<'_> = avp.group();
        match &def.grammar {
            Some(g) => self.check_level(members, g, depth + 1, max_depth),
            None => self.check_level(
                members,
                &Grammar {
                    rules: Vec::new(),
                    any: true,
                },
                depth + 1,
                max_depth,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diameter::codec::{
        ApplicationId, AvpBuf, AvpCode, CommandCode, DecodeError, Header, Limits, Message,
        MessageBuf, VendorId,
    };
    use crate::diameter::dict::Dictionary;

    fn dict() -> Dictionary {
        Dictionary::builtin().unwrap()
    }

    fn ccr_avps() -> Vec<AvpBuf> {
        vec![
            AvpBuf::utf8(AvpCode::SESSION_ID, "gw.example.com;1;2"),
            AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.example.com"),
            AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.com"),
            AvpBuf::utf8(AvpCode::DESTINATION_REALM, "ocs.example.com"),
            AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4),
            AvpBuf::utf8(AvpCode::SERVICE_CONTEXT_ID, "32251@3gpp.org"),
            AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 4),
            AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 0),
        ]
    }

    fn ccr(avps: Vec<AvpBuf>) -> Message {
        let mut m = MessageBuf::new(Header::request(
            CommandCode::CREDIT_CONTROL,
            ApplicationId::CREDIT_CONTROL,
            true,
        ));
        m.avps = avps;
        let d = dict();
        Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap()
    }

    fn check(avps: Vec<AvpBuf>) -> Result<(), DecodeError> {
        dict().check(&ccr(avps), &Limits::default())
    }

    #[test]
    fn a_valid_ccr_passes() {
        assert_eq!(check(ccr_avps()), Ok(()));
    }

    #[test]
    fn missing_avp_5005_with_an_example() {
        let mut avps = ccr_avps();
        avps.retain(|a| a.code != AvpCode::CC_REQUEST_NUMBER);
        let e = check(avps).unwrap_err();
        assert_eq!(e.result_code().0, 5005);
        let f = e.failed_avp(&[], 0).unwrap();
        assert_eq!(f.code, AvpCode::CC_REQUEST_NUMBER);
        assert_eq!(f.value.data_len(), 4, "zero-filled Unsigned32");
    }

    #[test]
    fn occurs_too_many_times_5009_points_at_the_excess_one() {
        let mut avps = ccr_avps();
        avps.push(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "second.example.com"));
        let msg = ccr(avps);
        let e = dict().check(&msg, &Limits::default()).unwrap_err();
        assert_eq!(e.result_code().0, 5009);
        let f = e.failed_avp(msg.frame(), 0).unwrap();
        assert_eq!(
            f.value,
            crate::diameter::codec::AvpValue::Bytes("second.example.com".into())
        );
    }

    #[test]
    fn unknown_mandatory_avp_5001_and_unknown_optional_ignored() {
        let mut avps = ccr_avps();
        avps.push(AvpBuf::unsigned32(AvpCode(999_999), 1).mandatory(false));
        assert_eq!(check(avps.clone()), Ok(()));
        avps.push(AvpBuf::unsigned32(AvpCode(999_998), 1));
        assert_eq!(check(avps).unwrap_err().result_code().0, 5001);
    }

    #[test]
    fn not_allowed_5008() {
        // CER's grammar has no `* [ AVP ]`... but CCR does; use a known AVP in a closed group:
        // Unit-Value is { Value-Digits } [ Exponent ], nothing else.
        let mut avps = ccr_avps();
        avps.push(AvpBuf::grouped(
            AvpCode::REQUESTED_SERVICE_UNIT,
            vec![AvpBuf::grouped(
                AvpCode::CC_MONEY,
                vec![AvpBuf::grouped(
                    AvpCode::UNIT_VALUE,
                    vec![
                        AvpBuf::integer64(AvpCode::VALUE_DIGITS, 5),
                        AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, 978),
                    ],
                )],
            )],
        ));
        let e = check(avps).unwrap_err();
        assert_eq!(e.result_code().0, 5008);
        assert_eq!(e.location().unwrap().code, AvpCode::CURRENCY_CODE);
    }

    #[test]
    fn bit_combo_5016() {
        let mut avps = ccr_avps();
        // Session-Id has M in must: clear it.
        avps[0] = AvpBuf::utf8(AvpCode::SESSION_ID, "gw;1;2").mandatory(false);
        assert_eq!(check(avps).unwrap_err().result_code().0, 5016);
        // A vendor-less AVP sent with a Vendor-ID of 0 (V set): V is must-not.
        let mut avps = ccr_avps();
        avps.push(AvpBuf::unsigned32(AvpCode::RATING_GROUP, 1).vendor(VendorId(0)));
        assert_eq!(check(avps).unwrap_err().result_code().0, 5016);
    }

    #[test]
    fn value_errors_5014_and_5004() {
        let mut avps = ccr_avps();
        avps[7] = AvpBuf::octets(AvpCode::CC_REQUEST_NUMBER, &b"\x00\x00\x01"[..]);
        assert_eq!(check(avps).unwrap_err().result_code().0, 5014);
        let mut avps = ccr_avps();
        avps[5] = AvpBuf::octets(AvpCode::SERVICE_CONTEXT_ID, &b"\xff\xfe"[..]);
        assert_eq!(check(avps).unwrap_err().result_code().0, 5004);
    }

    #[test]
    fn fixed_session_id_must_come_first() {
        let mut avps = ccr_avps();
        avps.swap(0, 1);
        assert!(check(avps).is_err());
    }

    #[test]
    fn proxiable_bit_against_command_3008() {
        let d = dict();
        let m = MessageBuf::new(Header::request(
            CommandCode::DEVICE_WATCHDOG,
            ApplicationId::COMMON,
            true, // DWR must not be proxiable
        ))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "a.example.com"))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "example.com"));
        let msg = Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap();
        assert_eq!(
            d.check(&msg, &Limits::default())
                .unwrap_err()
                .result_code()
                .0,
            3008
        );
    }

    #[test]
    fn unknown_command_3001() {
        let d = dict();
        let m = MessageBuf::new(Header::request(CommandCode(999), ApplicationId(4), true));
        let msg = Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap();
        assert_eq!(
            d.check(&msg, &Limits::default())
                .unwrap_err()
                .result_code()
                .0,
            3001
        );
    }
}
