//! The simulator's profiles over real TCP with the gateway's own client and router: what an
//! OCS of each kind answers to each unit style, as the gateway sees it (Result-Code, the
//! Failed-AVP by code, the Error-Message), and that a refused request moves no money.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use charging_gateway::credit_control::{
    CcConfig, CcFailureHandling, CreditControlAnswer, CreditControlClient, DdFailureHandling,
    EventRequest, Money, RequestType, RequestedAction, StyleChoice, StyleConfig, SubscriptionId,
    Units, UnitsStyle, money::currency,
};
use charging_gateway::diameter::codec::{AvpCode, Limits, ResultCode};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{LocalIdentity, PeerSettings};
use charging_gateway::diameter::router::{
    NoApplications, PeerSpec, RequestOptions, RouterSettings,
};
use charging_gateway::ocs::{OcsSim, OcsSimConfig, Profile, SimAccount};

const SUB: &str = "tel:+34671999000";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn eur(s: &str) -> Money {
    Money::new(d(s), currency("EUR").unwrap())
}

struct World {
    sim: OcsSim,
    gw: Node,
    client: Arc<CreditControlClient>,
}

async fn world(profile: Profile) -> World {
    let dict = Arc::new(Dictionary::builtin().unwrap());
    let sim = OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            profile: profile.name().into(),
            accounts: vec![SimAccount {
                subscriber: SUB.into(),
                balance: d("10.00"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::clone(&dict),
    )
    .await
    .unwrap();
    let gw = Node::start(
        NodeConfig {
            local: LocalIdentity {
                origin_host: "gw.charging.local".into(),
                origin_realm: "charging.local".into(),
                host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                vendor_id: 0,
                product_name: "test".into(),
                firmware_revision: 1,
                origin_state_id: 1,
                auth_application_ids: vec![4],
                acct_application_ids: vec![],
                vendor_specific_auth_apps: vec![],
                supported_vendor_ids: vec![10415],
            },
            listen: None,
            accept_unknown_peers: false,
            peers: vec![PeerConfig {
                spec: PeerSpec {
                    name: "ocs".into(),
                    host: "ocs.charging.local".into(),
                    realm: "charging.local".into(),
                    priority: 1,
                    weight: 1,
                },
                connect: Some(sim.local_addr().unwrap().to_string()),
            }],
            peer_settings: PeerSettings::default(),
            router: RouterSettings {
                request_timeout: Duration::from_secs(10),
                drain_timeout: Duration::from_secs(1),
            },
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(2),
        },
        dict,
        Arc::new(NoApplications),
    )
    .await
    .unwrap();
    let client = CreditControlClient::new(
        gw.router().clone(),
        CcConfig {
            service_context_id: "payment.v1@charging.local".into(),
            destination_realm: "charging.local".into(),
            destination_host: None,
            style: StyleConfig::both(StyleChoice::Mscc),
            default_currency: currency("EUR").unwrap(),
            ccfh: CcFailureHandling::Terminate,
            ddfh: DdFailureHandling::TerminateOrBuffer,
            tx: Duration::from_secs(5),
            service_identifier: None,
            rating_group: None,
            extra_avps: Vec::new(),
            max_sessions: 100,
            reservation_ttl: Duration::from_secs(3600),
            resolve_interval: Duration::from_millis(150),
            resolve_attempts: 5,
        },
        None,
    );
    for _ in 0..300 {
        if gw.router().any_usable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gw.router().any_usable(), "never connected to the simulator");
    World { sim, gw, client }
}

impl World {
    /// One CCR-E through the router as it is, the whole answer read back.
    async fn event(
        &self,
        action: RequestedAction,
        amount: &str,
        style: UnitsStyle,
    ) -> CreditControlAnswer {
        let sid = self.client.new_session_id(Some("profile-test"));
        let mut r = self.client.base_request(&sid, RequestType::Event, 0);
        r.subscription = Some(SubscriptionId::parse(SUB).unwrap());
        r.requested_action = Some(action);
        r.requested = Some(Units::money(eur(amount)));
        r.style = style;
        let msg = r.to_message(self.gw.router().local()).unwrap();
        let answer = self
            .gw
            .router()
            .request_with(msg, RequestOptions::default())
            .await
            .expect("an answer");
        CreditControlAnswer::read(&answer, currency("EUR").unwrap()).unwrap()
    }

    fn balance(&self) -> Decimal {
        self.sim.balance(SUB).unwrap().amount
    }

    async fn stop(self) {
        self.gw.shutdown().await;
        self.sim.shutdown().await;
    }
}

#[tokio::test]
async fn rfc4006_profile_refuses_event_units_in_mscc_over_tcp() {
    let w = world(Profile::Rfc4006).await;
    let a = w
        .event(RequestedAction::DirectDebiting, "1.50", UnitsStyle::Mscc)
        .await;
    assert_eq!(a.result_code, ResultCode::MISSING_AVP);
    let failed = a.failed_avp.expect("a Failed-AVP reaches the client");
    assert_eq!(failed.code, AvpCode::REQUESTED_SERVICE_UNIT);
    let text = a
        .error_message
        .expect("an Error-Message reaches the client");
    assert!(
        text.contains("command-level Requested-Service-Unit"),
        "{text}"
    );
    assert_eq!(w.balance(), d("10.00"), "nothing debited");
    assert!(w.sim.journal().is_empty(), "nothing applied");
    // What the gateway's event path makes of it: a failure, nothing charged.
    let charged = w
        .client
        .event(EventRequest {
            subscription: SubscriptionId::parse(SUB).unwrap(),
            action: RequestedAction::DirectDebiting,
            amount: Some(eur("1.50")),
            service_identifier: None,
            parameters: Vec::new(),
            tag: None,
        })
        .await;
    // Pinned to MSCC: no second attempt; the refusal says what the OCS said.
    let refusal = charged
        .outcome
        .units_refusal()
        .unwrap_or_else(|| panic!("a units refusal: {}", charged.outcome));
    assert_eq!(refusal.result, ResultCode::MISSING_AVP);
    assert_eq!(
        refusal.failed_avp.as_deref(),
        Some("Requested-Service-Unit")
    );
    assert_eq!(refusal.origin_host, "ocs.charging.local");
    assert!(refusal.error_message.is_some());
    assert_eq!(w.balance(), d("10.00"));
    // At command level the same debit goes through, and its refund too.
    let a = w
        .event(
            RequestedAction::DirectDebiting,
            "1.50",
            UnitsStyle::CommandLevel,
        )
        .await;
    assert_eq!(a.result_code, ResultCode::SUCCESS);
    assert_eq!(w.balance(), d("8.50"));
    let a = w
        .event(
            RequestedAction::RefundAccount,
            "1.50",
            UnitsStyle::CommandLevel,
        )
        .await;
    assert_eq!(a.result_code, ResultCode::SUCCESS);
    assert_eq!(w.balance(), d("10.00"));
    w.stop().await;
}

#[tokio::test]
async fn three_gpp_profile_refuses_command_level_units_over_tcp() {
    let w = world(Profile::ThreeGpp).await;
    let a = w
        .event(
            RequestedAction::DirectDebiting,
            "2.00",
            UnitsStyle::CommandLevel,
        )
        .await;
    assert_eq!(a.result_code, ResultCode::MISSING_AVP);
    assert_eq!(
        a.failed_avp.map(|f| f.code),
        Some(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL)
    );
    assert!(a.error_message.unwrap().contains("3GPP TS 32.299"));
    assert_eq!(w.balance(), d("10.00"));
    assert!(w.sim.journal().is_empty());
    let a = w
        .event(RequestedAction::DirectDebiting, "2.00", UnitsStyle::Mscc)
        .await;
    assert_eq!(a.effective_result(), ResultCode::SUCCESS);
    assert_eq!(w.balance(), d("8.00"));
    w.stop().await;
}

#[tokio::test]
async fn any_profile_takes_both_styles_over_tcp() {
    let w = world(Profile::Any).await;
    for style in [UnitsStyle::CommandLevel, UnitsStyle::Mscc] {
        let a = w
            .event(RequestedAction::DirectDebiting, "1.00", style)
            .await;
        assert_eq!(a.effective_result(), ResultCode::SUCCESS, "{style:?}");
        assert_eq!(a.granted_money(), Some(eur("1.00")), "{style:?}");
    }
    assert_eq!(w.balance(), d("8.00"));
    w.stop().await;
}
