//! Generates the fuzz seeds in `fuzz/seeds/<target>/` from the library's own builders, so that
//! the fuzzer starts from realistic messages and dictionary files.
//!
//! `REGENERATE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds` (re)writes them; otherwise this test
//! fails when a committed seed is missing or differs from what the code generates now.

use std::collections::BTreeMap;
use std::path::PathBuf;

use charging_gateway::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, CommandCode, Header, MessageBuf, ResultCode, Time, VendorId,
};
use charging_gateway::diameter::dict::BUILTIN;
use charging_gateway::diameter::peer::{DisconnectCause, LocalIdentity, messages};

fn local(host: &str) -> LocalIdentity {
    LocalIdentity {
        origin_host: host.into(),
        origin_realm: "operator.example".into(),
        host_ip_addresses: vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        vendor_id: 0,
        product_name: "charging-gateway".into(),
        firmware_revision: 1,
        origin_state_id: 1_700_000_000,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![(10415, 4)],
        supported_vendor_ids: vec![10415],
    }
}

fn money(digits: i64, exponent: i32) -> AvpBuf {
    AvpBuf::grouped(
        AvpCode::CC_MONEY,
        vec![
            AvpBuf::grouped(
                AvpCode::UNIT_VALUE,
                vec![
                    AvpBuf::integer64(AvpCode::VALUE_DIGITS, digits),
                    AvpBuf::integer32(AvpCode::EXPONENT, exponent),
                ],
            ),
            AvpBuf::unsigned32(AvpCode::CURRENCY_CODE, 978),
        ],
    )
}

fn ccr(kind: i32, number: u32) -> MessageBuf {
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    );
    h.hop_by_hop = 0x1000 + number;
    h.end_to_end = 0x2000 + number;
    let mut m = MessageBuf::new(h)
        .with(AvpBuf::utf8(
            AvpCode::SESSION_ID,
            "gw.operator.example;1700000000;1;pay-1",
        ))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "gw.operator.example"))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "operator.example"))
        .with(AvpBuf::utf8(
            AvpCode::DESTINATION_REALM,
            "ocs.operator.example",
        ))
        .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
        .with(AvpBuf::utf8(AvpCode::SERVICE_CONTEXT_ID, "32251@3gpp.org"))
        .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, kind))
        .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, number))
        .with(AvpBuf::time(
            AvpCode::EVENT_TIMESTAMP,
            Time::from_unix(1_700_000_000).unwrap(),
        ))
        .with(AvpBuf::grouped(
            AvpCode::SUBSCRIPTION_ID,
            vec![
                AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, 0),
                AvpBuf::utf8(AvpCode::SUBSCRIPTION_ID_DATA, "34671999000"),
            ],
        ));
    if kind == 4 {
        m.push(AvpBuf::enumerated(AvpCode::REQUESTED_ACTION, 0));
        m.push(AvpBuf::grouped(
            AvpCode::REQUESTED_SERVICE_UNIT,
            vec![money(1234, -2)],
        ));
    } else {
        m.push(AvpBuf::enumerated(AvpCode::MULTIPLE_SERVICES_INDICATOR, 1));
        for rg in 1..=2 {
            m.push(AvpBuf::grouped(
                AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
                vec![
                    AvpBuf::grouped(AvpCode::REQUESTED_SERVICE_UNIT, vec![money(500, -2)]),
                    AvpBuf::grouped(AvpCode::USED_SERVICE_UNIT, vec![money(250, -2)]),
                    AvpBuf::unsigned32(AvpCode::RATING_GROUP, rg),
                    AvpBuf::enumerated(AvpCode::REPORTING_REASON, 3).vendor(VendorId::TGPP),
                ],
            ));
        }
    }
    m.push(
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
    m.push(
        AvpBuf::octets(AvpCode(99_999), &b"opaque"[..])
            .vendor(VendorId(99_999))
            .mandatory(false),
    );
    m
}

fn cca() -> MessageBuf {
    let req = ccr(2, 1);
    let mut m = MessageBuf::new(req.header.answer())
        .with(AvpBuf::utf8(
            AvpCode::SESSION_ID,
            "gw.operator.example;1700000000;1;pay-1",
        ))
        .with(AvpBuf::unsigned32(
            AvpCode::RESULT_CODE,
            ResultCode::SUCCESS.0,
        ))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_HOST, "ocs.operator.example"))
        .with(AvpBuf::utf8(AvpCode::ORIGIN_REALM, "operator.example"))
        .with(AvpBuf::unsigned32(AvpCode::AUTH_APPLICATION_ID, 4))
        .with(AvpBuf::enumerated(AvpCode::CC_REQUEST_TYPE, 2))
        .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 1));
    for rg in 1..=2 {
        m.push(AvpBuf::grouped(
            AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL,
            vec![
                AvpBuf::grouped(AvpCode::GRANTED_SERVICE_UNIT, vec![money(500, -2)]),
                AvpBuf::unsigned32(AvpCode::RATING_GROUP, rg),
                AvpBuf::unsigned32(AvpCode::VALIDITY_TIME, 3600),
                AvpBuf::unsigned32(AvpCode::RESULT_CODE, 2001),
            ],
        ));
    }
    m
}

/// Valid and deliberately broken frames for the `decode` and `round_trip` targets.
fn message_seeds() -> BTreeMap<String, Vec<u8>> {
    let gw = local("gw.operator.example");
    let ocs = local("ocs.operator.example");
    let cer = messages::cer(&gw, 1, 2);
    let mut valid: Vec<(&str, MessageBuf)> = vec![
        (
            "cea",
            messages::cea(&ocs, &cer.header, ResultCode::SUCCESS, None),
        ),
        ("cer", cer),
        ("dwr", messages::dwr(&gw, 3, 4)),
        ("dwa", messages::dwa(&ocs, &messages::dwr(&gw, 3, 4).header)),
        ("dpr", messages::dpr(&gw, DisconnectCause::Rebooting, 5, 6)),
        (
            "dpa",
            messages::dpa(
                &ocs,
                &messages::dpr(&gw, DisconnectCause::Rebooting, 5, 6).header,
            ),
        ),
        ("ccr_initial", ccr(1, 0)),
        ("ccr_update", ccr(2, 1)),
        ("ccr_termination", ccr(3, 2)),
        ("ccr_event", ccr(4, 0)),
        ("cca_mscc", cca()),
    ];
    valid.push((
        "error_answer_3001",
        messages::error_answer(
            &ocs,
            &ccr(4, 0).header,
            Some("s;1;2"),
            ResultCode::COMMAND_UNSUPPORTED,
            Some("x"),
            None,
        ),
    ));
    let mut out = BTreeMap::new();
    for (name, m) in &valid {
        out.insert(format!("{name}.bin"), m.to_bytes().unwrap().to_vec());
    }
    let update = ccr(2, 1).to_bytes().unwrap().to_vec();
    // Truncated: the header promises more than there is.
    out.insert(
        "broken_truncated.bin".into(),
        update[..update.len() / 2].to_vec(),
    );
    // The first AVP's length runs past the end.
    let mut b = update.clone();
    b[25..28].copy_from_slice(&[0x00, 0xff, 0xf0]);
    out.insert("broken_avp_length.bin".into(), b);
    // A reserved AVP flag bit.
    let mut b = update.clone();
    b[24] |= 0x01;
    out.insert("broken_avp_reserved_bit.bin".into(), b);
    // A reserved header bit and the E bit on a request.
    let mut b = update.clone();
    b[4] |= 0x21;
    out.insert("broken_header_bits.bin".into(), b);
    // Failed-AVP (Grouped) nested 24 deep: over the depth limit.
    let mut deep = AvpBuf::unsigned32(AvpCode::RESULT_CODE, 1);
    for _ in 0..24 {
        deep = AvpBuf::grouped(AvpCode::FAILED_AVP, vec![deep]);
    }
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    );
    h.hop_by_hop = 9;
    out.insert(
        "broken_deep_nesting.bin".into(),
        MessageBuf::new(h).with(deep).to_bytes().unwrap().to_vec(),
    );
    out
}

fn dictionary_seeds() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (name, text) in BUILTIN {
        let file = name.rsplit('/').next().unwrap_or(name);
        out.insert(file.to_string(), text.as_bytes().to_vec());
    }
    let small = r#"<?xml version="1.0"?>
<diameter>
  <vendor id="99999" name="Acme"/>
  <application id="16777999" name="Acme Charging" type="auth">
    <command code="8388700" short="AC" name="Acme-Charge">
      <request><rule avp="Session-Id" required="true" max="1" fixed="true"/><rule avp="Acme-Rate" max="1"/><rule avp="AVP"/></request>
      <answer><rule avp="Session-Id" required="true" max="1" fixed="true"/><rule avp="AVP"/></answer>
    </command>
  </application>
  <avp name="Acme-Rate" code="1" vendor-id="99999" must="V,M" may="P">
    <data type="Enumerated"><item code="0" name="LOW"/><item code="1" name="HIGH"/></data>
  </avp>
  <avp name="Acme-Group" code="2" vendor-id="99999" must="V">
    <data type="Grouped"><rule avp="Acme-Rate" min="1" max="2"/></data>
  </avp>
</diameter>
"#;
    out.insert("acme_valid.xml".into(), small.as_bytes().to_vec());
    out.insert(
        "acme_bad_type.xml".into(),
        small.replace("Enumerated", "Float16").into_bytes(),
    );
    out.insert(
        "acme_unresolved_rule.xml".into(),
        small
            .replace("avp=\"Acme-Rate\" min", "avp=\"Nope\" min")
            .into_bytes(),
    );
    out.insert("not_xml.xml".into(), b"<diameter><avp name=".to_vec());
    out
}

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds")
        .join(target)
}

fn sync(target: &str, seeds: &BTreeMap<String, Vec<u8>>) {
    let dir = seeds_dir(target);
    if std::env::var("REGENERATE_FUZZ_SEEDS").as_deref() == Ok("1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, bytes) in seeds {
        match std::fs::read(dir.join(name)) {
            Ok(on_disk) if &on_disk == bytes => {}
            Ok(_) => stale.push(format!("{target}/{name} differs")),
            Err(_) => stale.push(format!("{target}/{name} missing")),
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz seeds out of date ({}); run REGENERATE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds",
        stale.join(", ")
    );
}

#[test]
fn seeds_are_current() {
    let messages = message_seeds();
    sync("decode", &messages);
    sync("round_trip", &messages);
    sync("dictionary", &dictionary_seeds());
}
