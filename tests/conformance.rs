//! `gateway conformance` against the OCS simulator in each profile (started here, on a port
//! chosen at run time): the style findings and the configuration lines, a money-neutral
//! series (the simulator's balance the same before and after), and a T-flag retransmission
//! answered from the duplicate cache (one debit in the journal). Then through the built
//! binary with `--json`, the simulator embedded by the configuration.

mod support;

use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::Value;

use charging_gateway::cli::conformance::{Options, Report, StyleResult, Verdict, run_config};
use charging_gateway::config::GatewayConfig;
use charging_gateway::credit_control::{Money, SubscriptionId, UnitsStyle, money::currency};
use charging_gateway::diameter::dict::Dictionary;
use charging_gateway::ocs::{OcsSim, OcsSimConfig, Profile, SimAccount};

use support::process::TempDir;

const SUB: &str = "tel:+34671999000";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn gateway_toml(peer: &str, sim: &str) -> String {
    format!(
        r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
[diameter.timers]
request_timeout = "1s"
connect_timeout = "2s"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "{peer}"
[credit_control]
destination_realm = "charging.local"
[http]
request_timeout = "5s"
[store]
backend = "memory"
{sim}
"#
    )
}

async fn start_sim(profile: Profile) -> OcsSim {
    OcsSim::start(
        OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            profile: profile.name().into(),
            accounts: vec![SimAccount {
                subscriber: SUB.into(),
                balance: d("20.00"),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        },
        Arc::new(Dictionary::builtin().unwrap()),
    )
    .await
    .unwrap()
}

/// A run against a simulator in `profile`; the report and the simulator.
async fn run(profile: Profile, amount: &str) -> (Report, OcsSim) {
    let sim = start_sim(profile).await;
    let addr = sim.local_addr().unwrap().to_string();
    let cfg = GatewayConfig::from_toml(&gateway_toml(&addr, "[ocs_sim]\nenabled = false")).unwrap();
    let opts = Options::new(
        SubscriptionId::parse(SUB).unwrap(),
        Money::new(d(amount), currency("EUR").unwrap()),
    )
    .unwrap();
    let mut announced = Vec::new();
    let report = run_config(
        cfg,
        Arc::new(Dictionary::builtin().unwrap()),
        &opts,
        Some(&sim),
        |plan| announced = plan.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(announced, report.plan);
    assert!(
        announced
            .iter()
            .any(|l| l.contains("money-neutral") && l.contains("tel:34671999000")),
        "the plan says what it will do, to whom: {announced:?}"
    );
    (report, sim)
}

fn step<'a>(r: &'a Report, id: &str) -> &'a charging_gateway::cli::conformance::Step {
    r.steps
        .iter()
        .find(|s| s.step == id)
        .unwrap_or_else(|| panic!("no step {id}: {:#?}", r.steps))
}

/// What every profile must show: money-neutral, the retransmission applied once, every
/// mandatory step passed.
fn common_checks(r: &Report, sim: &OcsSim) {
    for s in &r.steps {
        assert!(
            !(s.mandatory && s.result != Verdict::Pass),
            "mandatory step {} is {:?}: {s:#?}",
            s.step,
            s.result
        );
    }
    assert!(r.passed);
    // Money-neutral: the simulator's own books.
    assert_eq!(sim.balance(SUB).unwrap().amount, d("20.00"));
    assert_eq!(r.money.net, Decimal::ZERO);
    assert_eq!(r.money.balance_before, Some(d("20.00")));
    assert_eq!(r.money.balance_after, Some(d("20.00")));
    assert!(r.money.debited > Decimal::ZERO, "money really moved");
    assert_eq!(sim.open_reservations(), 0, "every reservation released");
    // The T-flag retransmission: one debit in the journal for its Session-Id.
    let rt = r
        .retransmission
        .as_ref()
        .expect("a retransmission was made");
    assert!(rt.same_answer, "{rt:?}");
    assert_eq!(rt.applied_once, Some(true));
    let journal = sim.journal();
    let debits = journal
        .iter()
        .filter(|e| e.session_id == rt.session_id && e.op == "debit")
        .count();
    assert_eq!(debits, 1, "applied once: {journal:#?}");
    // Every debit of the run has its refund.
    let sum = |op: &str| -> Decimal {
        journal
            .iter()
            .filter(|e| e.op == op)
            .map(|e| e.amount)
            .sum()
    };
    assert_eq!(sum("debit") + sum("commit"), sum("refund"));
    // The unknowns and the late answer.
    assert_eq!(step(r, "unknown_subscriber").result, Verdict::Pass);
    assert_eq!(step(r, "unknown_session").result, Verdict::Pass);
    assert_eq!(step(r, "slow_answer").result, Verdict::Pass);
    assert_eq!(step(r, "origin_state_id").result, Verdict::Pass);
    assert_eq!(step(r, "dwr").result, Verdict::Pass);
}

#[tokio::test]
async fn any_profile_takes_both_styles() {
    let (r, sim) = run(Profile::Any, "0.01").await;
    common_checks(&r, &sim);
    let e = r.events.as_ref().unwrap();
    assert_eq!(
        (&e.command_level, &e.mscc),
        (&StyleResult::Accepted, &StyleResult::Accepted)
    );
    assert_eq!(e.choice, Some(UnitsStyle::Mscc));
    assert_eq!(r.sessions.as_ref().unwrap().choice, Some(UnitsStyle::Mscc));
    assert_eq!(
        r.config_lines,
        vec![
            "[credit_control.style]",
            "events = \"mscc\"            # both accepted; mscc is the 3GPP Ro form",
            "sessions = \"mscc\"          # both accepted; mscc is the 3GPP Ro form",
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rfc4006_profile_needs_command_level_events() {
    let (r, sim) = run(Profile::Rfc4006, "0.05").await;
    common_checks(&r, &sim);
    let e = r.events.as_ref().unwrap();
    assert_eq!(e.command_level, StyleResult::Accepted);
    match &e.mscc {
        StyleResult::Refused {
            result_code,
            failed_avp,
            error_message,
        } => {
            assert_eq!(*result_code, 5005);
            assert_eq!(failed_avp.as_deref(), Some("Requested-Service-Unit"));
            assert!(error_message.as_deref().unwrap().contains("sessions"));
        }
        other => panic!("MSCC events must be refused: {other:?}"),
    }
    assert_eq!(step(&r, "event_mscc").result, Verdict::Refused);
    assert_eq!(e.choice, Some(UnitsStyle::CommandLevel));
    let s = r.sessions.as_ref().unwrap();
    assert_eq!(
        (&s.command_level, &s.mscc),
        (&StyleResult::Accepted, &StyleResult::Accepted)
    );
    assert_eq!(
        r.config_lines,
        vec![
            "[credit_control.style]",
            "events = \"command_level\"   # the OCS refused units in MSCC for events (5005, \
             Failed-AVP Requested-Service-Unit)",
            "sessions = \"mscc\"          # both accepted; mscc is the 3GPP Ro form",
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn three_gpp_profile_needs_mscc_everywhere() {
    let (r, sim) = run(Profile::ThreeGpp, "0.01").await;
    common_checks(&r, &sim);
    for f in [r.events.as_ref().unwrap(), r.sessions.as_ref().unwrap()] {
        assert_eq!(f.mscc, StyleResult::Accepted);
        assert!(
            matches!(
                &f.command_level,
                StyleResult::Refused { result_code: 5005, failed_avp: Some(n), .. }
                    if n == "Multiple-Services-Credit-Control"
            ),
            "{:?}",
            f.command_level
        );
        assert_eq!(f.choice, Some(UnitsStyle::Mscc));
    }
    assert_eq!(step(&r, "session_command_level").result, Verdict::Refused);
    assert_eq!(
        r.config_lines,
        vec![
            "[credit_control.style]",
            "events = \"mscc\"            # the OCS refused units at command level for events \
             (5005, Failed-AVP Multiple-Services-Credit-Control)",
            "sessions = \"mscc\"          # the OCS refused units at command level for sessions \
             (5005, Failed-AVP Multiple-Services-Credit-Control)",
        ]
    );
    // The text report carries the table, the lines and the verdict.
    let text = r.render(false);
    assert!(text.contains("T-flag retransmission"), "{text}");
    assert!(text.contains("[credit_control.style]"));
    assert!(text.contains("Result: PASS"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_without_credit_fails_the_style_steps_and_says_why() {
    let sim = start_sim(Profile::Any).await;
    let addr = sim.local_addr().unwrap().to_string();
    let cfg = GatewayConfig::from_toml(&gateway_toml(&addr, "[ocs_sim]\nenabled = false")).unwrap();
    let opts = Options::new(
        SubscriptionId::parse(SUB).unwrap(),
        Money::new(d("25.00"), currency("EUR").unwrap()),
    )
    .unwrap();
    let r = run_config(
        cfg,
        Arc::new(Dictionary::builtin().unwrap()),
        &opts,
        None,
        |_| {},
    )
    .await
    .unwrap();
    assert!(!r.passed);
    let e = step(&r, "events_style");
    assert_eq!(e.result, Verdict::Fail);
    assert!(e.received.contains("CREDIT_LIMIT_REACHED"), "{e:?}");
    assert!(
        step(&r, "event_command_level")
            .meaning
            .contains("credit for the amount"),
        "the likely cause is named"
    );
    // Without the simulator in this process: no late answer, no balance.
    assert_eq!(step(&r, "slow_answer").result, Verdict::Skipped);
    assert_eq!(r.money.balance_before, None);
    assert_eq!(sim.balance(SUB).unwrap().amount, d("20.00"));
    assert!(
        r.config_lines
            .iter()
            .any(|l| l.starts_with("# events: no style"))
    );
    sim.shutdown().await;
}

/// The built binary, the simulator embedded by `[ocs_sim]` with its profile set from the
/// environment; `--json` parsed.
fn binary(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("conformance")
        .arg("-c")
        .arg(dir.0.join("gateway.toml"))
        .args(args)
        .current_dir(&dir.0)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the gateway binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), json, stderr)
}

fn write_config(dir: &TempDir, peer: &str, sim_enabled: bool) {
    let sim = dir.0.join("ocs-sim.toml");
    std::fs::write(
        &sim,
        format!(
            "origin_host = \"ocs.charging.local\"\norigin_realm = \"charging.local\"\n\
             listen = \"127.0.0.1:0\"\nprofile = \"any\"\n\
             [[accounts]]\nsubscriber = \"{SUB}\"\nbalance = \"20.00\"\ncurrency = \"EUR\"\n"
        ),
    )
    .unwrap();
    let section = format!(
        "[ocs_sim]\nenabled = {sim_enabled}\nconfig = \"{}\"\n",
        sim.display()
    );
    // The dictionaries of this checkout (the run's working directory is the scratch one).
    let text = gateway_toml(peer, &section).replace(
        "origin_realm = \"charging.local\"\n",
        &format!(
            "origin_realm = \"charging.local\"\ndictionaries = \"{}\"\n",
            support::process::dictionaries().display()
        ),
    );
    std::fs::write(dir.0.join("gateway.toml"), text).unwrap();
}

#[test]
fn the_binary_reports_json_and_its_exit_code() {
    let dir = TempDir::new("conformance");
    // The embedded simulator: its peer address is replaced by where it really listens.
    write_config(&dir, "127.0.0.1:1", true);
    let (code, j, stderr) = binary(
        &dir,
        &["--subscriber", SUB, "--json"],
        &[("GATEWAY__OCS_SIM__PROFILE", "rfc4006")],
    );
    assert_eq!(code, Some(0), "stderr: {stderr}\njson: {j:#}");
    assert!(
        stderr.contains("money-neutral"),
        "the plan goes to stderr: {stderr}"
    );
    assert_eq!(j["passed"], true);
    assert_eq!(j["events"]["choice"], "command_level");
    assert_eq!(j["events"]["mscc"]["result"], "refused");
    assert_eq!(j["events"]["mscc"]["failed_avp"], "Requested-Service-Unit");
    assert_eq!(j["sessions"]["choice"], "mscc");
    let lines: Vec<&str> = j["config_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines[0], "[credit_control.style]");
    assert!(
        lines[1].starts_with("events = \"command_level\""),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("sessions = \"mscc\""), "{lines:?}");
    assert_eq!(j["money"]["balance_before"], "20.00");
    assert_eq!(j["money"]["balance_after"], "20.00");
    assert_eq!(j["retransmission"]["applied_once"], true);
    let steps = j["steps"].as_array().unwrap();
    let result = |id: &str| {
        steps
            .iter()
            .find(|s| s["step"] == id)
            .map(|s| s["result"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(result("slow_answer").as_deref(), Some("pass"));
    assert_eq!(result("event_mscc").as_deref(), Some("refused"));

    // No OCS there: CER/CEA fails, nothing else runs, exit code 1, still a report.
    write_config(&dir, "127.0.0.1:1", false);
    let (code, j, _) = binary(&dir, &["--subscriber", SUB, "--json"], &[]);
    assert_eq!(code, Some(1));
    assert_eq!(j["passed"], false);
    assert_eq!(j["steps"][0]["step"], "cer");
    assert_eq!(j["steps"][0]["result"], "fail");
    assert_eq!(j["money"]["debited"], "0");

    // A run that cannot start: exit code 2, the reason on stderr, no stack trace.
    let (code, _, stderr) = binary(&dir, &["--subscriber", "nobody"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--subscriber"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (code, _, stderr) = binary(
        &dir,
        &["--subscriber", SUB],
        &[("GATEWAY__OCS_SIM__PROFILE", "strict")],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("ocs_sim.profile"), "{stderr}");
}
