//! Deterministic tests of the peer state machine: a manual clock (`t0 + n seconds`), scripted
//! peer messages, and assertions on the actions asked of the transport.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::fsm::{Action, Conn, PeerFsm, PeerSettings, PeerState};
use super::messages::{self, DisconnectCause, LocalIdentity};
use super::watchdog::WatchdogState;
use crate::diameter::codec::{
    ApplicationId, AvpBuf, AvpCode, CommandCode, Header, Limits, Message, MessageBuf, ResultCode,
};
use crate::diameter::dict::Dictionary;
use crate::diameter::ids::Ids;

const TW: Duration = Duration::from_secs(30);

fn identity(host: &str) -> LocalIdentity {
    LocalIdentity {
        origin_host: host.into(),
        origin_realm: "example.net".into(),
        host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        vendor_id: 0,
        product_name: "test".into(),
        firmware_revision: 1,
        origin_state_id: 1,
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![],
        supported_vendor_ids: vec![10415],
    }
}

fn dict() -> Arc<Dictionary> {
    static D: std::sync::OnceLock<Arc<Dictionary>> = std::sync::OnceLock::new();
    D.get_or_init(|| Arc::new(Dictionary::builtin().unwrap()))
        .clone()
}

fn settings(initiator: bool) -> PeerSettings {
    PeerSettings {
        name: "ocs".into(),
        initiator,
        watchdog_interval: TW,
        watchdog_jitter: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        disconnect_timeout: Duration::from_secs(5),
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(8),
        dpr_hold_off: Duration::from_secs(300),
        seed: 7,
    }
}

fn fsm(host: &str, initiator: bool) -> PeerFsm {
    PeerFsm::new(
        Arc::new(identity(host)),
        settings(initiator),
        dict(),
        Limits::default(),
        Arc::new(Ids::new(0, 1)),
    )
}

fn drain(f: &mut PeerFsm) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn decode(b: &Bytes) -> Message {
    Message::decode(b.clone(), &*dict(), &Limits::default()).unwrap()
}

/// The messages sent on `conn` among `actions`, decoded.
fn sent(actions: &[Action], conn: Conn) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c, b) if *c == conn => Some(decode(b)),
            _ => None,
        })
        .collect()
}

fn has(actions: &[Action], want: &Action) -> bool {
    actions.iter().any(|a| match (a, want) {
        (Action::Connect, Action::Connect) | (Action::AcceptIncoming, Action::AcceptIncoming) => {
            true
        }
        (Action::Close(x), Action::Close(y)) => x == y,
        (Action::Usable(x), Action::Usable(y)) => x == y,
        _ => false,
    })
}

fn bytes(m: &MessageBuf) -> Bytes {
    m.to_bytes().unwrap()
}

fn cea_from(remote: &LocalIdentity, cer: &Message, result: ResultCode) -> Bytes {
    bytes(&messages::cea(remote, cer.header(), result, None))
}

/// Drives an initiator to I-Open; returns the clock.
fn open_initiator(f: &mut PeerFsm, t0: Instant) {
    f.start(t0);
    assert!(has(&drain(f), &Action::Connect));
    f.connected(t0);
    let a = drain(f);
    let cer = sent(&a, Conn::Initiator).pop().expect("CER sent");
    assert_eq!(cer.header().code, CommandCode::CAPABILITIES_EXCHANGE);
    assert!(cer.header().flags.is_request());
    f.received(
        t0,
        Conn::Initiator,
        cea_from(&identity("ocs.example.net"), &cer, ResultCode::SUCCESS),
    );
    assert_eq!(f.state(), PeerState::IOpen);
    assert!(has(&drain(f), &Action::Usable(true)));
}

#[test]
fn initiator_opens_after_cer_cea() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    assert_eq!(f.state(), PeerState::Closed);
    open_initiator(&mut f, t0);
    assert!(f.is_usable());
    assert_eq!(
        f.peer_capabilities().unwrap().origin_host,
        "ocs.example.net"
    );
    assert_eq!(f.watchdog_state(), WatchdogState::Okay);
    assert!(f.send(Bytes::from_static(b"x")).is_ok());
}

#[test]
fn cea_with_an_error_closes_and_backs_off_exponentially() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..5 {
        f.start(now);
        f.connected(now);
        let cer = sent(&drain(&mut f), Conn::Initiator).pop().unwrap();
        f.received(
            now,
            Conn::Initiator,
            cea_from(
                &identity("ocs.example.net"),
                &cer,
                ResultCode::NO_COMMON_APPLICATION,
            ),
        );
        assert_eq!(f.state(), PeerState::Closed);
        assert!(has(&drain(&mut f), &Action::Close(Conn::Initiator)));
        let at = f.poll_timeout().expect("reconnect scheduled");
        delays.push(at - now);
        // The reconnect timer dials again by itself.
        f.handle_timeout(at);
        assert!(has(&drain(&mut f), &Action::Connect));
        assert_eq!(f.state(), PeerState::WaitConnAck);
        now = at;
    }
    // 1 s, 2 s, 4 s, 8 s, 8 s, each within +/- 25%.
    for (d, base) in delays.iter().zip([1u64, 2, 4, 8, 8]) {
        let base = Duration::from_secs(base);
        assert!(
            *d >= base * 3 / 4 && *d <= base * 5 / 4,
            "{d:?} vs {base:?}"
        );
    }
}

#[test]
fn connect_failure_and_handshake_timeout() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    f.start(t0);
    drain(&mut f);
    f.connect_failed(t0);
    assert_eq!(f.state(), PeerState::Closed);
    // Dial again, connect, but no CEA ever arrives: Wait-I-CEA times out after 5 s.
    f.handle_timeout(f.poll_timeout().unwrap());
    f.connected(t0 + Duration::from_secs(2));
    drain(&mut f);
    assert_eq!(f.state(), PeerState::WaitICea);
    f.handle_timeout(t0 + Duration::from_secs(6));
    assert_eq!(f.state(), PeerState::WaitICea, "not yet");
    f.handle_timeout(t0 + Duration::from_secs(7));
    assert_eq!(f.state(), PeerState::Closed);
    assert!(has(&drain(&mut f), &Action::Close(Conn::Initiator)));
}

#[test]
fn a_message_other_than_cea_first_is_an_error() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    f.start(t0);
    f.connected(t0);
    drain(&mut f);
    let dwr = messages::dwr(&identity("ocs.example.net"), 1, 1);
    f.received(t0, Conn::Initiator, bytes(&dwr));
    assert_eq!(f.state(), PeerState::Closed);
}

#[test]
fn responder_accepts_a_cer_with_a_common_application() {
    let t0 = Instant::now();
    let mut f = fsm("ocs.example.net", false);
    let cer = messages::cer(&identity("gw.example.net"), 11, 12);
    f.incoming_cer(t0, bytes(&cer));
    let a = drain(&mut f);
    assert!(has(&a, &Action::AcceptIncoming));
    let cea = sent(&a, Conn::Responder).pop().unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(cea.header().hop_by_hop, 11);
    assert_eq!(f.state(), PeerState::ROpen);
    assert!(f.is_usable());
}

#[test]
fn responder_refuses_without_common_application_5010() {
    let t0 = Instant::now();
    let mut f = fsm("ocs.example.net", false);
    let mut other = identity("gw.example.net");
    other.auth_application_ids = vec![16_777_238];
    f.incoming_cer(t0, bytes(&messages::cer(&other, 1, 1)));
    let a = drain(&mut f);
    let cea = sent(&a, Conn::Incoming).pop().unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::NO_COMMON_APPLICATION));
    assert!(has(&a, &Action::Close(Conn::Incoming)));
    assert!(!has(&a, &Action::AcceptIncoming));
    assert_eq!(f.state(), PeerState::Closed);
    assert_eq!(f.poll_timeout(), None, "a responder does not dial");
}

#[test]
fn a_second_connection_is_rejected_when_open() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    f.incoming_cer(
        t0,
        bytes(&messages::cer(&identity("ocs.example.net"), 1, 1)),
    );
    let a = drain(&mut f);
    assert!(has(&a, &Action::Close(Conn::Incoming)));
    assert_eq!(f.state(), PeerState::IOpen);
}

#[test]
fn watchdog_okay_suspect_down_then_reopen_after_three_dwas() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    let ocs = identity("ocs.example.net");
    // Idle for Tw: DWR.
    f.handle_timeout(t0 + TW);
    let dwr = sent(&drain(&mut f), Conn::Initiator)
        .pop()
        .expect("DWR after Tw");
    assert_eq!(dwr.header().code, CommandCode::DEVICE_WATCHDOG);
    // No DWA for another Tw: SUSPECT, failover.
    f.handle_timeout(t0 + 2 * TW);
    assert!(has(&drain(&mut f), &Action::Usable(false)));
    assert_eq!(f.watchdog_state(), WatchdogState::Suspect);
    assert!(
        f.send(Bytes::from_static(b"x")).is_err(),
        "nothing is sent to a suspect peer"
    );
    // Still nothing: DOWN, connection closed.
    f.handle_timeout(t0 + 3 * TW);
    assert!(has(&drain(&mut f), &Action::Close(Conn::Initiator)));
    assert_eq!(f.state(), PeerState::Closed);
    assert_eq!(f.watchdog_state(), WatchdogState::Down);
    // Reconnect: CER/CEA again, then REOPEN with an immediate DWR; not usable yet.
    let t1 = f.poll_timeout().unwrap();
    f.handle_timeout(t1);
    f.connected(t1);
    let cer = sent(&drain(&mut f), Conn::Initiator).pop().unwrap();
    f.received(
        t1,
        Conn::Initiator,
        cea_from(&ocs, &cer, ResultCode::SUCCESS),
    );
    assert_eq!(f.state(), PeerState::IOpen);
    assert_eq!(f.watchdog_state(), WatchdogState::Reopen);
    let a = drain(&mut f);
    assert!(!has(&a, &Action::Usable(true)));
    assert!(!f.is_usable());
    let mut dwr = sent(&a, Conn::Initiator)
        .pop()
        .expect("immediate DWR in REOPEN");
    for round in 1..=3 {
        let now = t1 + TW * (round - 1);
        if round > 1 {
            f.handle_timeout(now);
            dwr = sent(&drain(&mut f), Conn::Initiator)
                .pop()
                .expect("DWR each Tw");
        }
        f.received(
            now,
            Conn::Initiator,
            bytes(&messages::dwa(&ocs, dwr.header())),
        );
        let usable = f.is_usable();
        assert_eq!(usable, round == 3, "round {round}");
    }
    assert!(has(&drain(&mut f), &Action::Usable(true)));
    assert_eq!(f.watchdog_state(), WatchdogState::Okay);
}

#[test]
fn dwr_from_the_peer_is_answered_and_counts_as_traffic() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    let ocs = identity("ocs.example.net");
    let t = t0 + Duration::from_secs(20);
    f.received(t, Conn::Initiator, bytes(&messages::dwr(&ocs, 77, 78)));
    let dwa = sent(&drain(&mut f), Conn::Initiator).pop().unwrap();
    assert_eq!(dwa.header().code, CommandCode::DEVICE_WATCHDOG);
    assert!(!dwa.header().flags.is_request());
    assert_eq!(dwa.header().hop_by_hop, 77);
    // The watchdog timer restarted at t: no DWR at t0 + Tw.
    f.handle_timeout(t0 + TW);
    assert!(sent(&drain(&mut f), Conn::Initiator).is_empty());
}

#[test]
fn application_messages_are_delivered() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    )
    .answer();
    h.hop_by_hop = 5;
    let cca = MessageBuf::new(h).with(AvpBuf::utf8(AvpCode::SESSION_ID, "s"));
    f.received(t0, Conn::Initiator, bytes(&cca));
    let a = drain(&mut f);
    assert!(matches!(&a[..], [Action::Deliver(m)] if m.header().hop_by_hop == 5));
}

#[test]
fn undecodable_request_is_answered_with_its_result_code() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    // A request whose only AVP claims 200 bytes.
    let mut b = bytes(
        &MessageBuf::new(Header::request(CommandCode(272), ApplicationId(4), true))
            .with(AvpBuf::unsigned32(AvpCode::CC_REQUEST_NUMBER, 0)),
    )
    .to_vec();
    b[27] = 200;
    f.received(t0, Conn::Initiator, Bytes::from(b));
    let ans = sent(&drain(&mut f), Conn::Initiator)
        .pop()
        .expect("answered");
    assert_eq!(ans.result_code(), Some(ResultCode::INVALID_AVP_LENGTH));
    assert!(ans.header().flags.is_error());
    assert!(ans.avp(AvpCode::FAILED_AVP).is_some());
    assert_eq!(f.state(), PeerState::IOpen);
}

#[test]
fn local_stop_sends_dpr_and_closes_on_dpa_without_reconnecting() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    f.stop(t0, DisconnectCause::Rebooting);
    let a = drain(&mut f);
    assert!(has(&a, &Action::Usable(false)));
    let dpr = sent(&a, Conn::Initiator).pop().unwrap();
    assert_eq!(dpr.header().code, CommandCode::DISCONNECT_PEER);
    assert_eq!(messages::disconnect_cause(&dpr), DisconnectCause::Rebooting);
    assert_eq!(f.state(), PeerState::Closing);
    f.received(
        t0,
        Conn::Initiator,
        bytes(&messages::dpa(&identity("ocs.example.net"), dpr.header())),
    );
    assert!(has(&drain(&mut f), &Action::Close(Conn::Initiator)));
    assert_eq!(f.state(), PeerState::Closed);
    assert_eq!(f.poll_timeout(), None, "stopped: no reconnect");
}

#[test]
fn local_stop_gives_up_waiting_for_the_dpa() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    f.stop(t0, DisconnectCause::Rebooting);
    drain(&mut f);
    f.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(f.state(), PeerState::Closed);
    assert!(has(&drain(&mut f), &Action::Close(Conn::Initiator)));
}

#[test]
fn peer_dpr_is_answered_and_its_cause_sets_the_reconnect_delay() {
    let ocs = identity("ocs.example.net");
    for (cause, min_wait) in [
        (DisconnectCause::Rebooting, Duration::from_millis(750)),
        (DisconnectCause::Busy, Duration::from_secs(300)),
        (
            DisconnectCause::DoNotWantToTalkToYou,
            Duration::from_secs(300),
        ),
    ] {
        let t0 = Instant::now();
        let mut f = fsm("gw.example.net", true);
        open_initiator(&mut f, t0);
        f.received(
            t0,
            Conn::Initiator,
            bytes(&messages::dpr(&ocs, cause, 3, 4)),
        );
        let a = drain(&mut f);
        let dpa = sent(&a, Conn::Initiator).pop().expect("DPA");
        assert_eq!(dpa.header().code, CommandCode::DISCONNECT_PEER);
        assert_eq!(dpa.header().hop_by_hop, 3);
        assert!(has(&a, &Action::Usable(false)));
        assert_eq!(f.state(), PeerState::Closing);
        // The sender of the DPA waits for the peer to close.
        f.disconnected(t0, Conn::Initiator);
        assert_eq!(f.state(), PeerState::Closed);
        // Walk the timers: the first dial must not come before `min_wait`.
        let now = loop {
            let at = f.poll_timeout().expect("a reconnect is scheduled");
            f.handle_timeout(at);
            if has(&drain(&mut f), &Action::Connect) {
                break at;
            }
        };
        assert!(
            now - t0 >= min_wait,
            "{cause:?}: dialled after {:?}",
            now - t0
        );
        if cause != DisconnectCause::Rebooting {
            assert!(
                now - t0 <= Duration::from_secs(301),
                "{cause:?}: {:?}",
                now - t0
            );
        } else {
            assert!(
                now - t0 < Duration::from_secs(2),
                "REBOOTING uses the normal back-off"
            );
        }
    }
}

/// After an agreed disconnect (the OCS's DPR REBOOTING, our DPA) the connection did not fail:
/// the next one carries traffic as soon as its CEA says so, without three watchdog rounds in
/// REOPEN (which follows a failed connection: see the test above).
#[test]
fn after_an_agreed_disconnect_the_next_connection_is_usable_on_its_cea() {
    let ocs = identity("ocs.example.net");
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    open_initiator(&mut f, t0);
    f.received(
        t0,
        Conn::Initiator,
        bytes(&messages::dpr(&ocs, DisconnectCause::Rebooting, 3, 4)),
    );
    drain(&mut f);
    f.disconnected(t0, Conn::Initiator);
    assert_eq!(f.state(), PeerState::Closed);
    assert_eq!(f.watchdog_state(), WatchdogState::Initial);
    let at = loop {
        let at = f.poll_timeout().expect("a reconnect is scheduled");
        f.handle_timeout(at);
        if has(&drain(&mut f), &Action::Connect) {
            break at;
        }
    };
    f.connected(at);
    let cer = sent(&drain(&mut f), Conn::Initiator).pop().unwrap();
    f.received(
        at,
        Conn::Initiator,
        cea_from(&ocs, &cer, ResultCode::SUCCESS),
    );
    assert_eq!(f.state(), PeerState::IOpen);
    assert_eq!(f.watchdog_state(), WatchdogState::Okay);
    assert!(has(&drain(&mut f), &Action::Usable(true)));
    assert!(f.is_usable());
}

#[test]
fn election_lost_waits_for_the_cea_then_drops_the_responder() {
    // Our host "a..." precedes the peer's "b...": we lose and keep our dialled connection.
    let t0 = Instant::now();
    let mut f = fsm("a.example.net", true);
    let peer = identity("b.example.net");
    f.start(t0);
    drain(&mut f);
    f.connected(t0);
    let cer = sent(&drain(&mut f), Conn::Initiator).pop().unwrap();
    assert_eq!(f.state(), PeerState::WaitICea);
    f.incoming_cer(t0, bytes(&messages::cer(&peer, 1, 1)));
    let a = drain(&mut f);
    assert!(has(&a, &Action::AcceptIncoming));
    assert!(sent(&a, Conn::Responder).is_empty(), "loser holds its CEA");
    assert_eq!(f.state(), PeerState::WaitReturns);
    f.received(
        t0,
        Conn::Initiator,
        cea_from(&peer, &cer, ResultCode::SUCCESS),
    );
    let a = drain(&mut f);
    assert!(has(&a, &Action::Close(Conn::Responder)));
    assert_eq!(f.state(), PeerState::IOpen);
}

#[test]
fn election_won_closes_the_dialled_connection() {
    // Our host "z..." succeeds the peer's: we keep the responder connection.
    let t0 = Instant::now();
    let mut f = fsm("z.example.net", true);
    f.start(t0);
    drain(&mut f);
    f.connected(t0);
    drain(&mut f);
    f.incoming_cer(t0, bytes(&messages::cer(&identity("B.EXAMPLE.NET"), 9, 9)));
    let a = drain(&mut f);
    assert!(has(&a, &Action::Close(Conn::Initiator)));
    let cea = sent(&a, Conn::Responder)
        .pop()
        .expect("winner answers the CER");
    assert_eq!(cea.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(f.state(), PeerState::ROpen);
}

#[test]
fn election_while_still_connecting() {
    let t0 = Instant::now();
    // Wait-Conn-Ack + R-Conn-CER -> Wait-Conn-Ack/Elect; then the dial fails -> R-Open.
    let mut f = fsm("a.example.net", true);
    f.start(t0);
    drain(&mut f);
    f.incoming_cer(t0, bytes(&messages::cer(&identity("b.example.net"), 1, 1)));
    assert_eq!(f.state(), PeerState::WaitConnAckElect);
    drain(&mut f);
    f.connect_failed(t0);
    let a = drain(&mut f);
    assert_eq!(sent(&a, Conn::Responder).len(), 1, "R-Snd-CEA");
    assert_eq!(f.state(), PeerState::ROpen);
    // Same start, but the dial succeeds: CER sent, election held (lost: we are "a").
    let mut f = fsm("a.example.net", true);
    f.start(t0);
    drain(&mut f);
    f.incoming_cer(t0, bytes(&messages::cer(&identity("b.example.net"), 1, 1)));
    drain(&mut f);
    f.connected(t0);
    let a = drain(&mut f);
    assert_eq!(sent(&a, Conn::Initiator).len(), 1, "I-Snd-CER");
    assert_eq!(f.state(), PeerState::WaitReturns);
    // The peer (the winner) closes its dialled connection, our responder one.
    f.disconnected(t0, Conn::Responder);
    assert_eq!(f.state(), PeerState::WaitICea);
}

#[test]
fn responder_connection_loss_and_no_dial() {
    let t0 = Instant::now();
    let mut f = fsm("ocs.example.net", false);
    f.incoming_cer(t0, bytes(&messages::cer(&identity("gw.example.net"), 1, 1)));
    drain(&mut f);
    f.disconnected(t0, Conn::Responder);
    assert_eq!(f.state(), PeerState::Closed);
    assert!(has(&drain(&mut f), &Action::Usable(false)));
    assert_eq!(f.poll_timeout(), None);
}

/// A request/answer pair as the OCS side sees it: a CCR from the gateway, and a CCA.
fn ccr(hop_by_hop: u32) -> MessageBuf {
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    );
    h.hop_by_hop = hop_by_hop;
    MessageBuf::new(h).with(AvpBuf::utf8(AvpCode::SESSION_ID, "s"))
}

#[test]
fn responder_in_reopen_serves_requests_but_throws_away_answers() {
    let t0 = Instant::now();
    let mut f = fsm("ocs.example.net", false);
    let gw = identity("gw.example.net");
    f.incoming_cer(t0, bytes(&messages::cer(&gw, 1, 1)));
    drain(&mut f);
    f.disconnected(t0, Conn::Responder);
    drain(&mut f);
    // The gateway dials again: the responder's watchdog is in REOPEN (RFC 3539 3.4.1).
    let t1 = t0 + Duration::from_secs(1);
    f.incoming_cer(t1, bytes(&messages::cer(&gw, 2, 2)));
    drain(&mut f);
    assert_eq!(f.state(), PeerState::ROpen);
    assert_eq!(f.watchdog_state(), WatchdogState::Reopen);
    assert!(!f.is_usable(), "our own traffic waits for three DWAs");
    // A request the gateway chose to send is served, not left to time out.
    f.received(t1, Conn::Responder, bytes(&ccr(9)));
    let a = drain(&mut f);
    assert!(
        matches!(&a[..], [Action::Deliver(m)] if m.header().hop_by_hop == 9),
        "{a:?}"
    );
    // An answer (to nothing we sent on this connection) is still thrown away.
    let mut h = Header::request(
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        true,
    )
    .answer();
    h.hop_by_hop = 10;
    let cca = MessageBuf::new(h).with(AvpBuf::utf8(AvpCode::SESSION_ID, "s"));
    f.received(t1, Conn::Responder, bytes(&cca));
    assert!(
        !drain(&mut f)
            .iter()
            .any(|a| matches!(a, Action::Deliver(_)))
    );
}

#[test]
fn stats_count_each_side_of_the_base_protocol_exchanges() {
    use super::fsm::PeerStats;
    let t0 = Instant::now();
    let ocs = identity("ocs.example.net");
    let mut f = fsm("gw.example.net", true);
    assert_eq!(f.stats(), PeerStats::default());
    open_initiator(&mut f, t0);
    assert_eq!(f.stats().opened, 1);
    // Our watchdog fires: DWR sent, then its DWA.
    f.handle_timeout(t0 + TW);
    let dwr = sent(&drain(&mut f), Conn::Initiator).pop().expect("DWR");
    f.received(
        t0 + TW,
        Conn::Initiator,
        bytes(&messages::dwa(&ocs, dwr.header())),
    );
    // The peer's watchdog fires: its DWR, answered.
    f.received(
        t0 + TW,
        Conn::Initiator,
        bytes(&messages::dwr(&ocs, 41, 42)),
    );
    drain(&mut f);
    let s = f.stats();
    assert_eq!(
        (s.dwr_sent, s.dwa_received, s.dwr_received),
        (1, 1, 1),
        "{s:?}"
    );
    // Our DPR and its DPA.
    f.stop(t0 + TW, DisconnectCause::Rebooting);
    let dpr = sent(&drain(&mut f), Conn::Initiator).pop().expect("DPR");
    f.received(
        t0 + TW,
        Conn::Initiator,
        bytes(&messages::dpa(&ocs, dpr.header())),
    );
    let s = f.stats();
    assert_eq!((s.dpr_sent, s.dpa_received, s.dpr_received), (1, 1, 0));
    assert_eq!(s.last_dpr_cause, None);
    // A peer's DPR, with its cause.
    let mut g = fsm("gw.example.net", true);
    open_initiator(&mut g, t0);
    g.received(
        t0,
        Conn::Initiator,
        bytes(&messages::dpr(&ocs, DisconnectCause::Busy, 5, 6)),
    );
    let s = g.stats();
    assert_eq!(
        (s.dpr_received, s.last_dpr_cause),
        (1, Some(DisconnectCause::Busy))
    );
    assert_eq!((s.dpr_sent, s.dwr_received), (0, 0));
}

#[test]
fn a_probe_sends_one_dwr_on_a_usable_connection_only() {
    let t0 = Instant::now();
    let mut f = fsm("gw.example.net", true);
    assert!(!f.probe(), "closed: nothing to probe");
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.stats().dwr_sent, 0);
    open_initiator(&mut f, t0);
    assert!(f.probe());
    let dwr = sent(&drain(&mut f), Conn::Initiator);
    assert_eq!(dwr.len(), 1, "one DWR");
    assert_eq!(dwr[0].header().code, CommandCode::DEVICE_WATCHDOG);
    assert!(dwr[0].header().flags.is_request());
    assert_eq!(f.stats().dwr_sent, 1);
    // Its DWA is counted; the connection stays OKAY and usable.
    let dwa = bytes(&messages::dwa(
        &identity("ocs.example.net"),
        dwr[0].header(),
    ));
    let t1 = t0 + Duration::from_secs(10);
    f.received(t1, Conn::Initiator, dwa);
    assert_eq!(f.stats().dwa_received, 1);
    assert_eq!(f.watchdog_state(), WatchdogState::Okay);
    assert!(f.is_usable());
    // The DWA was traffic: the watchdog's own DWR comes Tw after it, not Tw after t0.
    f.handle_timeout(t0 + TW);
    assert!(sent(&drain(&mut f), Conn::Initiator).is_empty());
    f.handle_timeout(t1 + TW);
    let own = sent(&drain(&mut f), Conn::Initiator);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].header().code, CommandCode::DEVICE_WATCHDOG);
    assert_eq!(f.stats().dwr_sent, 2);
}
