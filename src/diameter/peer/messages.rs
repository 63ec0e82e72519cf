//! The base-protocol messages a peer exchanges on its own (RFC 6733 sections 5.3-5.5, 7.2):
//! CER/CEA, DWR/DWA, DPR/DPA, and protocol-error answers. Building and reading them.

use std::net::IpAddr;

use bytes::Bytes;

use crate::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, AvpTypes, CommandCode, DecodeError, Header, Message,
    MessageBuf, ResultCode, VendorId,
};

/// What this node says about itself in CER/CEA and every answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIdentity {
    pub origin_host: String,
    pub origin_realm: String,
    /// Host-IP-Address values (at least one).
    pub host_ip_addresses: Vec<IpAddr>,
    pub vendor_id: u32,
    pub product_name: String,
    pub firmware_revision: u32,
    /// Changes on every restart (RFC 6733 section 8.16), so that peers can drop stale state.
    pub origin_state_id: u32,
    pub auth_application_ids: Vec<u32>,
    pub acct_application_ids: Vec<u32>,
    /// (Vendor-Id, Auth-Application-Id) pairs sent as Vendor-Specific-Application-Id.
    pub vendor_specific_auth_apps: Vec<(u32, u32)>,
    pub supported_vendor_ids: Vec<u32>,
}

impl LocalIdentity {
    /// Every application id this node supports (auth, acct and vendor-specific).
    pub fn application_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.auth_application_ids
            .iter()
            .chain(&self.acct_application_ids)
            .copied()
            .chain(self.vendor_specific_auth_apps.iter().map(|(_, a)| *a))
    }
}

/// Disconnect-Cause (RFC 6733 section 5.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// A reboot is imminent: the receiver MAY reconnect.
    Rebooting,
    /// Resources are short: the receiver SHOULD NOT reconnect.
    Busy,
    /// No traffic expected: the receiver SHOULD NOT reconnect.
    DoNotWantToTalkToYou,
    /// A value the RFC does not define.
    Other(i32),
}

impl DisconnectCause {
    pub fn value(self) -> i32 {
        match self {
            Self::Rebooting => 0,
            Self::Busy => 1,
            Self::DoNotWantToTalkToYou => 2,
            Self::Other(v) => v,
        }
    }

    pub fn from_value(v: i32) -> Self {
        match v {
            0 => Self::Rebooting,
            1 => Self::Busy,
            2 => Self::DoNotWantToTalkToYou,
            v => Self::Other(v),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rebooting => "REBOOTING",
            Self::Busy => "BUSY",
            Self::DoNotWantToTalkToYou => "DO_NOT_WANT_TO_TALK_TO_YOU",
            Self::Other(_) => "UNKNOWN",
        }
    }
}

/// What a received CER or CEA says about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub origin_host: String,
    pub origin_realm: String,
    pub host_ip_addresses: Vec<IpAddr>,
    pub vendor_id: u32,
    pub product_name: String,
    pub origin_state_id: Option<u32>,
    pub firmware_revision: Option<u32>,
    /// Auth-, Acct- and Vendor-Specific application ids, in message order.
    pub application_ids: Vec<u32>,
    pub supported_vendor_ids: Vec<u32>,
    /// Result-Code of a CEA.
    pub result_code: Option<ResultCode>,
}

impl Capabilities {
    /// Reads a CER or CEA. Missing mandatory identity AVPs are a 5005 error.
    pub fn read(msg: &Message) -> Result<Self, DecodeError> {
        let mut caps = Self {
            origin_host: String::new(),
            origin_realm: String::new(),
            host_ip_addresses: Vec::new(),
            vendor_id: 0,
            product_name: String::new(),
            origin_state_id: None,
            firmware_revision: None,
            application_ids: Vec::new(),
            supported_vendor_ids: Vec::new(),
            result_code: None,
        };
        let mut have_host = false;
        let mut have_realm = false;
        for avp in msg.avps() {
            if avp.vendor_id().is_some() {
                continue;
            }
            match avp.code() {
                AvpCode::ORIGIN_HOST => {
                    caps.origin_host = avp.identity()?.to_string();
                    have_host = true;
                }
                AvpCode::ORIGIN_REALM => {
                    caps.origin_realm = avp.identity()?.to_string();
                    have_realm = true;
                }
                AvpCode::HOST_IP_ADDRESS => {
                    if let crate::diameter::codec::Address::Ip(ip) = avp.address()? {
                        caps.host_ip_addresses.push(ip);
                    }
                }
                AvpCode::VENDOR_ID => caps.vendor_id = avp.unsigned32()?,
                AvpCode::PRODUCT_NAME => caps.product_name = avp.utf8()?.to_string(),
                AvpCode::ORIGIN_STATE_ID => caps.origin_state_id = Some(avp.unsigned32()?),
                AvpCode::FIRMWARE_REVISION => caps.firmware_revision = Some(avp.unsigned32()?),
                AvpCode::AUTH_APPLICATION_ID | AvpCode::ACCT_APPLICATION_ID => {
                    caps.application_ids.push(avp.unsigned32()?);
                }
                AvpCode::VENDOR_SPECIFIC_APPLICATION_ID => {
                    for m in avp.group() {
                        let m = m?;
                        if m.vendor_id().is_none()
                            && matches!(
                                m.code(),
                                AvpCode::AUTH_APPLICATION_ID | AvpCode::ACCT_APPLICATION_ID
                            )
                        {
                            caps.application_ids.push(m.unsigned32()?);
                        }
                    }
                }
                AvpCode::SUPPORTED_VENDOR_ID => caps.supported_vendor_ids.push(avp.unsigned32()?),
                AvpCode::RESULT_CODE => caps.result_code = Some(ResultCode(avp.unsigned32()?)),
                _ => {}
            }
        }
        let missing = |code: AvpCode| DecodeError::MissingAvp {
            code,
            vendor_id: None,
            flags: crate::diameter::codec::AvpFlags(crate::diameter::codec::AvpFlags::MANDATORY),
            min_len: 1,
        };
        if !have_host {
            return Err(missing(AvpCode::ORIGIN_HOST));
        }
        if !have_realm {
            return Err(missing(AvpCode::ORIGIN_REALM));
        }
        Ok(caps)
    }

    /// RFC 6733 section 5.3: the intersection of application ids, where a relay (0xffffffff)
    /// on either side has every application in common.
    pub fn common_applications(&self, local: &LocalIdentity) -> Vec<u32> {
        let relay = ApplicationId::RELAY.0;
        let ours: Vec<u32> = local.application_ids().collect();
        if self.application_ids.contains(&relay) {
            return ours;
        }
        if ours.contains(&relay) {
            return self.application_ids.clone();
        }
        let mut common: Vec<u32> = ours
            .into_iter()
            .filter(|a| self.application_ids.contains(a))
            .collect();
        common.sort_unstable();
        common.dedup();
        common
    }
}

fn identity_avps(local: &LocalIdentity, m: &mut MessageBuf) {
    m.push(AvpBuf::utf8(AvpCode::ORIGIN_HOST, &local.origin_host));
    m.push(AvpBuf::utf8(AvpCode::ORIGIN_REALM, &local.origin_realm));
}

fn capability_avps(local: &LocalIdentity, m: &mut MessageBuf) {
    identity_avps(local, m);
    for ip in &local.host_ip_addresses {
        m.push(AvpBuf::address(AvpCode::HOST_IP_ADDRESS, *ip));
    }
    m.push(AvpBuf::unsigned32(AvpCode::VENDOR_ID, local.vendor_id));
    // RFC 6733 section 4.5: Product-Name and Firmware-Revision MUST NOT carry the M bit.
    m.push(AvpBuf::utf8(AvpCode::PRODUCT_NAME, &local.product_name).mandatory(false));
    m.push(AvpBuf::unsigned32(
        AvpCode::ORIGIN_STATE_ID,
        local.origin_state_id,
    ));
    for v in &local.supported_vendor_ids {
        m.push(AvpBuf::unsigned32(AvpCode::SUPPORTED_VENDOR_ID, *v));
    }
    for a in &local.auth_application_ids {
        m.push(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, *a));
    }
    for a in &local.acct_application_ids {
        m.push(AvpBuf::unsigned32(AvpCode::ACCT_APPLICATION_ID, *a));
    }
    for (vendor, app) in &local.vendor_specific_auth_apps {
        m.push(AvpBuf::grouped(
            AvpCode::VENDOR_SPECIFIC_APPLICATION_ID,
            vec![
                AvpBuf::unsigned32(AvpCode::VENDOR_ID, *vendor),
                AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, *app),
            ],
        ));
    }
    m.push(
        AvpBuf::unsigned32(AvpCode::FIRMWARE_REVISION, local.firmware_revision).mandatory(false),
    );
}

fn request(code: CommandCode, hop_by_hop: u32, end_to_end: u32) -> MessageBuf {
    let mut h = Header::request(code, ApplicationId::COMMON, false);
    h.hop_by_hop = hop_by_hop;
    h.end_to_end = end_to_end;
    MessageBuf::new(h)
}

/// CER (RFC 6733 section 5.3.1).
pub fn cer(local: &LocalIdentity, hop_by_hop: u32, end_to_end: u32) -> MessageBuf {
    let mut m = request(CommandCode::CAPABILITIES_EXCHANGE, hop_by_hop, end_to_end);
    capability_avps(local, &mut m);
    m
}

/// CEA (RFC 6733 section 5.3.2) answering `cer` with `result`.
pub fn cea(
    local: &LocalIdentity,
    cer: &Header,
    result: ResultCode,
    error: Option<&str>,
) -> MessageBuf {
    let mut m = MessageBuf::new(if result.is_protocol_error() {
        cer.error_answer()
    } else {
        cer.answer()
    });
    m.push(AvpBuf::unsigned32(AvpCode::RESULT_CODE, result.0));
    capability_avps(local, &mut m);
    if let Some(text) = error {
        m.push(AvpBuf::utf8(AvpCode::ERROR_MESSAGE, text).mandatory(false));
    }
    m
}

/// DWR (RFC 6733 section 5.5.1).
pub fn dwr(local: &LocalIdentity, hop_by_hop: u32, end_to_end: u32) -> MessageBuf {
    let mut m = request(CommandCode::DEVICE_WATCHDOG, hop_by_hop, end_to_end);
    identity_avps(local, &mut m);
    m.push(AvpBuf::unsigned32(
        AvpCode::ORIGIN_STATE_ID,
        local.origin_state_id,
    ));
    m
}

/// DWA (RFC 6733 section 5.5.2).
pub fn dwa(local: &LocalIdentity, dwr: &Header) -> MessageBuf {
    let mut m = MessageBuf::new(dwr.answer());
    m.push(AvpBuf::unsigned32(
        AvpCode::RESULT_CODE,
        ResultCode::SUCCESS.0,
    ));
    identity_avps(local, &mut m);
    m.push(AvpBuf::unsigned32(
        AvpCode::ORIGIN_STATE_ID,
        local.origin_state_id,
    ));
    m
}

/// DPR (RFC 6733 section 5.4.1).
pub fn dpr(
    local: &LocalIdentity,
    cause: DisconnectCause,
    hop_by_hop: u32,
    end_to_end: u32,
) -> MessageBuf {
    let mut m = request(CommandCode::DISCONNECT_PEER, hop_by_hop, end_to_end);
    identity_avps(local, &mut m);
    m.push(AvpBuf::enumerated(AvpCode::DISCONNECT_CAUSE, cause.value()));
    m
}

/// DPA (RFC 6733 section 5.4.2).
pub fn dpa(local: &LocalIdentity, dpr: &Header) -> MessageBuf {
    let mut m = MessageBuf::new(dpr.answer());
    m.push(AvpBuf::unsigned32(
        AvpCode::RESULT_CODE,
        ResultCode::SUCCESS.0,
    ));
    identity_avps(local, &mut m);
    m
}

/// The Disconnect-Cause of a DPR (REBOOTING when absent or unreadable).
pub fn disconnect_cause(dpr: &Message) -> DisconnectCause {
    dpr.avp(AvpCode::DISCONNECT_CAUSE)
        .and_then(|a| a.enumerated().ok())
        .map_or(DisconnectCause::Rebooting, DisconnectCause::from_value)
}

/// An answer in the grammar of RFC 6733 section 7.2, with the E bit, for a request this node
/// cannot process: 3001, 3007, or a decode error with its Failed-AVP. Section 7.1.5 allows this
/// grammar for permanent (5xxx) errors when the command's own grammar cannot be composed.
pub fn error_answer(
    local: &LocalIdentity,
    request: &Header,
    session_id: Option<&str>,
    result: ResultCode,
    message: Option<&str>,
    failed_avp: Option<AvpBuf>,
) -> MessageBuf {
    let mut m = MessageBuf::new(request.error_answer());
    if let Some(sid) = session_id {
        m.push(AvpBuf::utf8(AvpCode::SESSION_ID, sid));
    }
    identity_avps(local, &mut m);
    m.push(AvpBuf::unsigned32(AvpCode::RESULT_CODE, result.0));
    if let Some(text) = message {
        m.push(AvpBuf::utf8(AvpCode::ERROR_MESSAGE, text).mandatory(false));
    }
    if let Some(f) = failed_avp {
        m.push(AvpBuf::grouped(AvpCode::FAILED_AVP, vec![f]));
    }
    m
}

/// The answer to a request whose decoding failed with `error`, built from the raw frame (the
/// header is read without judging it; Session-Id is copied when it can be found). `types`
/// sizes the zero-filled payload of a Failed-AVP whose length was broken (RFC 6733 7.5).
pub fn decode_error_answer(
    local: &LocalIdentity,
    frame: &Bytes,
    error: &DecodeError,
    types: &dyn AvpTypes,
) -> Option<MessageBuf> {
    let raw = Header::peek(frame)?;
    if !raw.header.flags.is_request() {
        return None;
    }
    let session_id = crate::diameter::codec::AvpIter::new(frame.get(20..).unwrap_or_default(), 20)
        .next()
        .and_then(Result::ok)
        .filter(|a| a.is(AvpCode::SESSION_ID, VendorId::IETF))
        .and_then(|a| a.utf8().ok().map(str::to_string));
    let failed = error.failed_avp_typed(frame, types);
    Some(error_answer(
        local,
        &raw.header,
        session_id.as_deref(),
        error.result_code(),
        Some(&error.to_string()),
        failed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::Limits;
    use crate::diameter::dict::Dictionary;

    pub(crate) fn local() -> LocalIdentity {
        LocalIdentity {
            origin_host: "gw.example.net".into(),
            origin_realm: "example.net".into(),
            host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            vendor_id: 0,
            product_name: "charging-gateway".into(),
            firmware_revision: 1,
            origin_state_id: 7,
            auth_application_ids: vec![4],
            acct_application_ids: vec![],
            vendor_specific_auth_apps: vec![(10415, 4)],
            supported_vendor_ids: vec![10415],
        }
    }

    fn decode(m: &MessageBuf) -> Message {
        let d = Dictionary::builtin().unwrap();
        let msg = Message::decode(m.to_bytes().unwrap(), &d, &Limits::default()).unwrap();
        d.check(&msg, &Limits::default()).unwrap();
        msg
    }

    #[test]
    fn cer_and_cea_pass_their_grammar_and_read_back() {
        let l = local();
        let cer_msg = decode(&cer(&l, 1, 2));
        let caps = Capabilities::read(&cer_msg).unwrap();
        assert_eq!(caps.origin_host, "gw.example.net");
        assert_eq!(caps.application_ids, vec![4, 4]);
        assert_eq!(caps.supported_vendor_ids, vec![10415]);
        assert_eq!(caps.origin_state_id, Some(7));
        let cea_msg = decode(&cea(&l, cer_msg.header(), ResultCode::SUCCESS, None));
        let caps = Capabilities::read(&cea_msg).unwrap();
        assert_eq!(caps.result_code, Some(ResultCode::SUCCESS));
        assert_eq!(cea_msg.header().hop_by_hop, 1);
    }

    #[test]
    fn watchdog_and_disconnect_messages_pass_their_grammar() {
        let l = local();
        let dwr_msg = decode(&dwr(&l, 5, 6));
        decode(&dwa(&l, dwr_msg.header()));
        let dpr_msg = decode(&dpr(&l, DisconnectCause::Busy, 9, 9));
        assert_eq!(disconnect_cause(&dpr_msg), DisconnectCause::Busy);
        decode(&dpa(&l, dpr_msg.header()));
    }

    #[test]
    fn common_applications_and_relay() {
        let l = local();
        let mut caps = Capabilities::read(&decode(&cer(&l, 1, 1))).unwrap();
        assert_eq!(caps.common_applications(&l), vec![4]);
        caps.application_ids = vec![16_777_238];
        assert!(caps.common_applications(&l).is_empty());
        caps.application_ids = vec![ApplicationId::RELAY.0];
        assert!(!caps.common_applications(&l).is_empty());
    }

    #[test]
    fn error_answers() {
        let l = local();
        let req = Header::request(CommandCode::CREDIT_CONTROL, ApplicationId(4), true);
        let a = decode(&error_answer(
            &l,
            &req,
            Some("s;1;2"),
            ResultCode::COMMAND_UNSUPPORTED,
            None,
            None,
        ));
        assert!(a.header().flags.is_error());
        assert_eq!(a.result_code(), Some(ResultCode::COMMAND_UNSUPPORTED));
        assert_eq!(a.session_id(), Some("s;1;2"));
    }
}
