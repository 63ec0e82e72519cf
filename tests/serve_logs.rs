//! What an operator reads in the log of `gateway serve` with its embedded OCS simulator (the
//! out-of-the-box setup): started, a charge served, a peer the simulator does not know dialling
//! it, then SIGTERM. A clean run says nothing alarming (no WARN, no ERROR, no failover, no
//! watchdog DOWN), tells the simulator's lines from the gateway's (`ocs_sim{origin_host=...}`),
//! and logs the planned disconnects as what they are.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use charging_gateway::diameter::codec::Limits;
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::diameter::node::{Node, NodeConfig, PeerConfig};
use charging_gateway::diameter::peer::{LocalIdentity, PeerSettings};
use charging_gateway::diameter::router::{NoApplications, PeerSpec, RouterSettings};

mod support;
use support::process::{GatewayProcess, TempDir, basic, dictionaries};

const SIM: &str = "ocs.charging.local";
const GW: &str = "gw.charging.local";
const STRANGER: &str = "stranger.charging.local";
const SIM_SPAN: &str = "ocs_sim{origin_host=ocs.charging.local}";

fn config(dir: &Path) -> String {
    let sim = dir.join("ocs-sim.toml");
    std::fs::write(
        &sim,
        r#"
origin_host = "ocs.charging.local"
origin_realm = "charging.local"
listen = "127.0.0.1:0"
accept_unknown_peers = true

[[accounts]]
subscriber = "tel:+34671999000"
balance = "10.00"
currency = "EUR"
"#,
    )
    .unwrap();
    format!(
        r#"
[diameter]
origin_host = "{GW}"
origin_realm = "charging.local"
dictionaries = "{dict}"

[[diameter.peers]]
host = "{SIM}"
realm = "charging.local"
address = "127.0.0.1:1"

[http]
listen = "127.0.0.1:0"

[store]
backend = "memory"

[ocs_sim]
enabled = true
config = "{sim}"

[[apps]]
id = "shop"
username = "shop"
password = "shop-secret"
"#,
        dict = dictionaries().display(),
        sim = sim.display(),
    )
}

/// A Diameter node the simulator has never heard of, dialling it at `addr`.
async fn stranger(addr: &str) -> Node {
    let dict = Arc::new(Dictionary::load_dir(&dictionaries()).unwrap());
    Node::start(
        NodeConfig {
            local: LocalIdentity {
                origin_host: STRANGER.into(),
                origin_realm: "charging.local".into(),
                host_ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                vendor_id: 0,
                product_name: "stranger".into(),
                firmware_revision: 1,
                origin_state_id: 1,
                auth_application_ids: vec![4],
                acct_application_ids: vec![],
                vendor_specific_auth_apps: vec![],
                supported_vendor_ids: vec![],
            },
            listen: None,
            accept_unknown_peers: false,
            peers: vec![PeerConfig {
                spec: PeerSpec {
                    name: SIM.into(),
                    host: SIM.into(),
                    realm: "charging.local".into(),
                    priority: 1,
                    weight: 1,
                },
                connect: Some(addr.to_string()),
            }],
            peer_settings: PeerSettings::default(),
            router: RouterSettings::default(),
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(5),
        },
        dict,
        Arc::new(NoApplications),
    )
    .await
    .unwrap()
}

/// The value after `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
}

#[tokio::test]
async fn a_clean_start_and_stop_logs_nothing_alarming_and_the_simulator_apart() {
    let dir = TempDir::new("serve-logs");
    let gw = GatewayProcess::start(&dir.0, &config(&dir.0)).await;
    let r = gw
        .request(
            "POST",
            "/rest/payment/charge-amount",
            Some(&basic("shop", "shop-secret")),
            &[],
            Some(
                json!({"charge": {"description": "article", "amount": "1.50", "currency": "EUR"},
                       "endUserIdentifier": "tel:+34671999000", "referenceCode": "log-1"})
                .to_string(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A peer the simulator was not configured for, accepted (accept_unknown_peers), then gone
    // with DPR/DPA.
    let sim_addr = gw
        .log()
        .iter()
        .find(|l| l.contains("OCS simulator listening"))
        .and_then(|l| field(l, "address").map(str::to_string))
        .expect("the simulator logs its address");
    let other = stranger(&sim_addr).await;
    let mut open = false;
    for _ in 0..200 {
        open = other.router().any_usable();
        if open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(open, "the simulator never accepted the stranger");
    other.shutdown().await;
    let (status, log) = gw.terminate_and_log();
    let all = log.join("\n");
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{all}");
    assert!(log.iter().any(|l| l.contains("gateway stopped")), "{all}");

    // Nothing alarming on a clean run.
    for l in &log {
        assert!(
            !l.contains(" WARN ") && !l.contains(" ERROR "),
            "a clean start and stop warns: {l}\n{all}"
        );
        assert!(!l.contains("failover"), "{l}");
        assert!(!l.contains("watchdog=\"DOWN\""), "{l}");
    }

    // The simulator's lines are marked, the gateway's are not.
    let sim_lines: Vec<&String> = log.iter().filter(|l| l.contains(SIM_SPAN)).collect();
    assert!(sim_lines.len() >= 5, "{all}");
    for l in &log {
        let of_sim = l.contains(" charging_gateway::ocs:")
            || l.contains("listening for Diameter peers")
            || l.contains(&format!("peer{{peer={GW}}}"))
            || l.contains(&format!("peer{{peer={STRANGER}}}"));
        let of_gateway = l.contains(&format!("peer{{peer={SIM}}}"))
            || l.contains(" charging_gateway::gateway:")
            || l.contains(" charging_gateway::cli::")
            || l.contains(" charging_gateway::api");
        assert!(!(of_sim && of_gateway), "{l}");
        if of_sim {
            assert!(
                l.contains(SIM_SPAN),
                "a simulator line without its span: {l}"
            );
        }
        if of_gateway {
            assert!(
                !l.contains("ocs_sim{"),
                "a gateway line marked as the simulator's: {l}"
            );
        }
    }
    // Both sides' peers, and the charge itself, were logged at all (the checks above held on
    // something).
    for needle in [
        format!("{SIM_SPAN}:peer{{peer={GW}}}"),
        format!("peer{{peer={SIM}}}"),
        format!("{SIM_SPAN}:peer{{peer={STRANGER}}}"),
    ] {
        assert!(log.iter().any(|l| l.contains(&needle)), "{needle}\n{all}");
    }

    // The gateway is a configured peer of its own simulator; a stranger is still announced.
    let accepting: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("not in the configuration"))
        .collect();
    assert_eq!(accepting.len(), 1, "{accepting:?}");
    assert_eq!(field(accepting[0], "origin_host"), Some(STRANGER));
    assert!(accepting[0].contains(SIM_SPAN), "{}", accepting[0]);

    // Planned disconnects said as such: the gateway sent its DPR to the simulator, which
    // received it; the stranger's DPR reached the simulator too.
    let disconnected = |peer: &str, dpr: &str| {
        log.iter().any(|l| {
            l.contains(" INFO ")
                && l.contains("disconnected after DPR/DPA")
                && field(l, "peer") == Some(peer)
                && field(l, "cause") == Some("\"REBOOTING\"")
                && field(l, "dpr") == Some(&format!("\"{dpr}\""))
        })
    };
    assert!(disconnected(SIM, "sent"), "{all}");
    assert!(disconnected(GW, "received"), "{all}");
    assert!(disconnected(STRANGER, "received"), "{all}");
}
