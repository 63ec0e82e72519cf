//! The wire check itself (`tests/support/wire.rs`): frames sent over a loopback TCP
//! connection during a capture, judged by Wireshark's Diameter dissector.
//!
//! ```text
//! test --(one connection per frame)--> 127.0.0.1:<run-time port> (a listener that only reads)
//!        well-formed CER, DWR, DPR                 -> dissected, not reported
//!        an AVP whose length runs past the end     -> reported (Error/Malformed)
//!        a DWR, then one with a reserved flag bit  -> the second reported (Warning/Malformed)
//!        a DWR, then one of Version 2              -> the second reported (Warning/Undecoded)
//!        a reserved flag bit at a segment's start  -> reported (not dissected as Diameter)
//!        bytes that are not Diameter at all        -> reported (not dissected as Diameter)
//! ```
//!
//! This is the proof that the interop tests' wire check can fail. Without dumpcap and tshark
//! (Debian package tshark) or the right to capture, the tests print SKIPPED, or fail under
//! `CI=true`.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::str::FromStr;

use rust_decimal::Decimal;

use charging_gateway::credit_control::money::currency;
use charging_gateway::credit_control::{
    CreditControlRequest, Money, RequestType, ServiceParameter, ServiceParameterType,
    SubscriptionId, Units, UnitsStyle,
};
use charging_gateway::diameter::codec::{AvpBuf, AvpCode, MessageBuf, VendorId};
use charging_gateway::diameter::peer::{DisconnectCause, LocalIdentity, messages};

use support::wire::{self, Finding, WIRESHARK_LIMITS, WireReport};

fn local() -> LocalIdentity {
    LocalIdentity {
        origin_host: "gw.wire.test".into(),
        origin_realm: "wire.test".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: 0,
        product_name: "charging-gateway wire check".into(),
        firmware_revision: 1,
        origin_state_id: 1,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![(10415, 4)],
        supported_vendor_ids: vec![10415],
    }
}

fn bytes(m: &MessageBuf) -> Vec<u8> {
    m.to_bytes().unwrap().to_vec()
}

/// A listener on a run-time loopback port that reads every connection to its end.
fn sink() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let accepting = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for s in accepting.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (l, port)
}

/// Each frame on a connection of its own, so that one cannot disturb the reassembly of
/// another.
fn send_each(port: u16, frames: &[Vec<u8>]) {
    for f in frames {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.write_all(f).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
}

/// The findings about the message with Hop-by-Hop id `h2h`.
fn about(report: &WireReport, h2h: u32) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.message.as_ref().is_some_and(|m| m.hop_by_hop == h2h))
        .collect()
}

#[test]
fn malformed_frames_are_reported_and_well_formed_ones_are_not() {
    let (_sink, port) = sink();
    let Some(capture) = wire::capture_or_skip(
        "malformed_frames_are_reported_and_well_formed_ones_are_not",
        &[port],
    ) else {
        return;
    };
    let me = local();
    let dwr = |h2h| bytes(&messages::dwr(&me, h2h, h2h));
    // A DWR with one more AVP (Origin-State-Id) that says it is 200 octets long: 12 are left.
    let mut past_the_end = dwr(0x201);
    past_the_end.extend_from_slice(&[0, 0, 1, 22, 0x40, 0, 0, 200, 0, 0, 0, 1]);
    let len = u32::try_from(past_the_end.len()).unwrap().to_be_bytes();
    past_the_end[1..4].copy_from_slice(&len[1..]);
    // DWRs with the last reserved command flag bit set (RFC 6733 section 3), and of version 2.
    let reserved_bit = |h2h| {
        let mut m = dwr(h2h);
        m[4] |= 0x01;
        m
    };
    let mut version_2 = dwr(0x203);
    version_2[0] = 2;
    // Wireshark only takes a TCP segment for Diameter when it starts with a version 1 header
    // and clear reserved bits: behind a good DWR in the same segment, those two are dissected
    // and flagged by the dissector; at the start of one, they are not Diameter to it at all.
    let connections = [
        bytes(&messages::cer(&me, 0x101, 0x101)),
        dwr(0x102),
        bytes(&messages::dpr(
            &me,
            DisconnectCause::Rebooting,
            0x103,
            0x103,
        )),
        past_the_end,
        [dwr(0x104), reserved_bit(0x202)].concat(),
        [dwr(0x105), version_2].concat(),
        reserved_bit(0x204),
        b"GET / HTTP/1.1\r\nHost: wire.test\r\n\r\n".to_vec(),
    ];
    send_each(port, &connections);
    let report = capture.finish();

    // The well-formed ones were dissected, and nothing is said about them.
    for (h2h, code) in [
        (0x101, 257),
        (0x102, 280),
        (0x103, 282),
        (0x104, 280),
        (0x105, 280),
    ] {
        let m: Vec<_> = report
            .messages
            .iter()
            .filter(|m| m.hop_by_hop == h2h)
            .collect();
        assert_eq!(m.len(), 1, "{h2h:#x}: {:#?}", report.messages);
        assert_eq!((m[0].code, m[0].request), (code, true));
        assert_eq!(m[0].dst_port, port);
        assert!(about(&report, h2h).is_empty(), "{:#?}", report.findings);
        if h2h <= 0x103 {
            assert!(
                report.findings.iter().all(|f| f.frame != m[0].frame),
                "{h2h:#x} is alone in its frame: {:#?}",
                report.findings
            );
        }
    }
    // 0x102, 0x104, 0x105, 0x201, 0x202, 0x203; not 0x204.
    assert_eq!(report.count(port, 280, true), 6, "{:#?}", report.messages);

    // Each broken one is reported once, by Wireshark's own expert info.
    let expect = [
        (
            0x201,
            "diameter.invalid_avp_len",
            "Error/Malformed",
            "Wrong AVP(278) length 200",
        ),
        (
            0x202,
            "diameter.reserved_bit_set",
            "Warning/Malformed",
            "Reserved bit set",
        ),
        (
            0x203,
            "diameter.version.unknown",
            "Warning/Undecoded",
            "Unknown Diameter Version (decoding as RFC 3588)",
        ),
    ];
    for (h2h, expert, class, text) in expect {
        let f = about(&report, h2h);
        assert_eq!(f.len(), 1, "{h2h:#x}: {f:#?}");
        assert_eq!(
            (
                f[0].expert.as_str(),
                f[0].class.as_str(),
                f[0].text.as_str()
            ),
            (expert, class, text)
        );
        // Readable: frame, ports, command, Hop-by-Hop id and the expert message.
        let line = f[0].to_string();
        let head = format!("frame {} (", f[0].frame);
        assert!(line.starts_with(&head), "{line}");
        assert!(line.contains(&format!("-> {port})")), "{line}");
        assert!(
            line.contains(&format!("Device-Watchdog Request (280) h2h=0x{h2h:08x}")),
            "{line}"
        );
        assert!(
            line.contains(&format!("[{class}] {text} ({expert})")),
            "{line}"
        );
    }
    // The two Wireshark would not call Diameter: the lone reserved-bit DWR and the HTTP.
    let mut not_diameter: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.expert == "not-diameter")
        .map(|f| (f.message.is_none(), f.dst_port, f.text.as_str()))
        .collect();
    not_diameter.sort();
    assert_eq!(
        not_diameter,
        [
            (
                true,
                port,
                "35 bytes of TCP payload not dissected as Diameter"
            ),
            (
                true,
                port,
                "72 bytes of TCP payload not dissected as Diameter"
            ),
        ],
        "{:#?}",
        report.findings
    );
    assert_eq!(report.findings.len(), 5, "{:#?}", report.findings);

    // What an interop test would fail with: every one of them, none of the good ones.
    let failure = report.failure(&[]).expect("the check must fail");
    for f in &report.findings {
        assert!(failure.contains(&f.to_string()), "{failure}");
    }
    assert!(failure.contains("5 findings in 5 frames"), "{failure}");
    assert!(!failure.contains("h2h=0x00000104"), "{failure}");
    // Wireshark's limitations excuse none of them.
    assert_eq!(report.unexpected(WIRESHARK_LIMITS).len(), 5);
}

fn eur(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), currency("EUR").unwrap())
}

fn ccr(kind: RequestType, number: u32) -> CreditControlRequest {
    let mut r = CreditControlRequest::new(
        "gw.wire.test;1;1;wire".into(),
        "charging.local".into(),
        "32251@3gpp.org".into(),
        kind,
        number,
    );
    r.subscription = Some(SubscriptionId::parse("tel:+34671999000").unwrap());
    r
}

/// Builder output no interop flow sends: a CCR carrying 3GPP Service-Information and a
/// Service-Parameter-Info, and a CCR UPDATE whose Requested-Service-Unit is empty. Wireshark
/// says nothing about the first; of the second it says only "Data is empty" on the empty
/// Requested-Service-Unit, the one Wireshark limitation allowed (`WIRESHARK_LIMITS`).
#[test]
fn builder_frames_pass_but_for_the_allowed_empty_requested_service_unit() {
    let (_sink, port) = sink();
    let Some(capture) = wire::capture_or_skip(
        "builder_frames_pass_but_for_the_allowed_empty_requested_service_unit",
        &[port],
    ) else {
        return;
    };
    let me = local();
    let mut initial = ccr(RequestType::Initial, 0);
    initial.style = UnitsStyle::Mscc;
    initial.requested = Some(Units::money(eur("4.99")));
    initial.service_identifier = Some(1000);
    initial.rating_group = Some(7);
    initial.service_parameters.push(ServiceParameter::new(
        ServiceParameterType::ReferenceCode,
        "ref-1",
    ));
    initial.extra.push(
        AvpBuf::grouped(
            AvpCode::SERVICE_INFORMATION,
            vec![
                AvpBuf::grouped(
                    AvpCode::PS_INFORMATION,
                    vec![
                        AvpBuf::octets(AvpCode::TGPP_CHARGING_ID, &b"\x00\x00\x00\x2a"[..])
                            .vendor(VendorId::TGPP)
                            .mandatory(false),
                    ],
                )
                .vendor(VendorId::TGPP),
            ],
        )
        .vendor(VendorId::TGPP),
    );
    let mut update = ccr(RequestType::Update, 1);
    update.style = UnitsStyle::Mscc;
    update.requested = Some(Units::default());
    update.used = Some(Units::money(eur("1.00")));
    let mut a = initial.to_message(&me).unwrap();
    a.header.hop_by_hop = 0x301;
    let mut b = update.to_message(&me).unwrap();
    b.header.hop_by_hop = 0x302;
    send_each(port, &[bytes(&a), bytes(&b)]);
    let report = capture.finish();

    assert_eq!(report.count(port, 272, true), 2, "{:#?}", report.messages);
    assert!(about(&report, 0x301).is_empty(), "{:#?}", report.findings);
    let f = about(&report, 0x302);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].expert.as_str(), f[0].text.as_str()),
        ("diameter.avp.no_data", "Data is empty")
    );
    let avp = f[0].avp.as_ref().expect("found in an AVP");
    assert_eq!((avp.code, avp.vendor), (437, 0));
    assert_eq!(avp.name, "Requested-Service-Unit");
    // Allowed, so the interop check would pass; and the allowance is still needed.
    assert!(report.unexpected(WIRESHARK_LIMITS).is_empty());
    assert!(report.failure(&[]).is_some());
    report.assert_clean(WIRESHARK_LIMITS);
}
