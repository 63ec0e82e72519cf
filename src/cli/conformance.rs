//! `gateway conformance`: a scripted, money-neutral series of exchanges with the configured OCS
//! that says what it supports, and ends with the `[credit_control.style]` lines it needs. The
//! tool an integration team runs before anything else.
//!
//! ```text
//! CER/CEA -> DWR/DWA -> events, each style (debit, refund) -> balance check -> price enquiry
//!   -> sessions, each style (INITIAL, UPDATE, TERMINATION; what was used refunded)
//!   -> a debit re-sent with the T flag -> unknown subscriber (5030) -> unknown session (5002)
//!   -> an answer later than Tx (bundled simulator only) -> Origin-State-Id -> money -> config
//! ```
//!
//! Every CCR goes through the router as it is (`Router::request_with`), so the whole answer is
//! seen: the command- and MSCC-level Result-Codes, the Failed-AVP (named by the dictionary),
//! the Error-Message, the Origin-State-Id. The run uses the configuration `serve` reads (peers,
//! identity, `[credit_control]`), starts the bundled simulator when `[ocs_sim] enabled`, and
//! opens no store. A debit that went unanswered is re-sent once with the T flag (RFC 6733
//! section 3: same Session-Id, CC-Request-Number and End-to-End id), as the gateway does, so
//! that its outcome is known and it can be refunded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::GatewayConfig;
use crate::credit_control::money::{currency, minor_unit};
use crate::credit_control::{
    CreditControlAnswer, CreditControlClient, CreditControlRequest, Money, RequestType,
    RequestedAction, SubscriptionId, Units, UnitsStyle,
};
use crate::diameter::codec::{ApplicationId, AvpCode, Message, ResultCode, VendorId};
use crate::diameter::dict::Dictionary;
use crate::diameter::node::Node;
use crate::diameter::router::{NoApplications, PeerEntry, RequestOptions, RouteError, Router};
use crate::diameter::transport::PeerCommand;
use crate::ocs::OcsSim;

/// A subscriber no OCS should know: country code 999 is reserved by ITU-T E.164.
pub const DEFAULT_UNKNOWN_SUBSCRIBER: &str = "tel:+999000000000000";

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Gateway configuration (peers, identity, credit_control), as `serve` reads it.
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
    /// The test subscriber (tel:+34..., sip:..., imsi:...): debited and refunded.
    #[arg(long)]
    pub subscriber: String,
    /// Amount of each debit and reservation (default: the currency's smallest unit).
    #[arg(long)]
    pub amount: Option<Decimal>,
    /// ISO 4217 currency of the amount (default: credit_control.default_currency).
    #[arg(long)]
    pub currency: Option<String>,
    /// A subscriber the OCS must not know (5030 expected).
    #[arg(long, default_value = DEFAULT_UNKNOWN_SUBSCRIBER)]
    pub unknown_subscriber: String,
    /// The report as JSON on stdout (the plan then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// What the run exchanges: who, how much.
#[derive(Clone, Debug)]
pub struct Options {
    pub subscriber: SubscriptionId,
    pub amount: Money,
    pub unknown_subscriber: SubscriptionId,
}

impl Options {
    /// Debits and reservations of `amount` for `subscriber`; the default unknown subscriber.
    pub fn new(subscriber: SubscriptionId, amount: Money) -> Result<Self, String> {
        let unknown_subscriber = SubscriptionId::parse(DEFAULT_UNKNOWN_SUBSCRIBER)
            .map_err(|e| format!("--unknown-subscriber: {e}"))?;
        Ok(Self {
            subscriber,
            amount,
            unknown_subscriber,
        })
    }
}

impl Options {
    /// Checks the arguments against the configuration (default currency).
    pub fn from_args(args: &ConformanceArgs, cfg: &GatewayConfig) -> Result<Self, String> {
        let subscriber =
            SubscriptionId::parse(&args.subscriber).map_err(|e| format!("--subscriber: {e}"))?;
        let unknown_subscriber = SubscriptionId::parse(&args.unknown_subscriber)
            .map_err(|e| format!("--unknown-subscriber: {e}"))?;
        if unknown_subscriber == subscriber {
            return Err("--unknown-subscriber: must differ from --subscriber".into());
        }
        let code = args
            .currency
            .clone()
            .unwrap_or_else(|| cfg.credit_control.default_currency.clone());
        let key = if args.currency.is_some() {
            "--currency"
        } else {
            "credit_control.default_currency"
        };
        let cur = currency(&code).map_err(|e| format!("{key}: {e}"))?;
        let amount = match args.amount {
            Some(a) => a,
            None => Decimal::new(1, minor_unit(cur).map_err(|e| format!("{key}: {e}"))?),
        };
        let amount = Money::payment(amount, cur).map_err(|e| format!("--amount: {e}"))?;
        Ok(Self {
            subscriber,
            amount,
            unknown_subscriber,
        })
    }
}

/// How one step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Not as expected (explained in `meaning`).
    Fail,
    /// The OCS refused this form of request: a finding, not a failure.
    Refused,
    /// Not run (the reason in `meaning`).
    Skipped,
    /// Something learnt, nothing expected.
    Info,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Refused => "REFUSED",
            Self::Skipped => "SKIPPED",
            Self::Info => "INFO",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// A stable identifier (`cer`, `dwr`, `event_command_level`, ...).
    pub step: String,
    pub title: String,
    /// Whether the exit code depends on it.
    pub mandatory: bool,
    pub result: Verdict,
    pub sent: String,
    pub received: String,
    pub meaning: String,
    /// Milliseconds, for the timed steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
}

/// What the OCS made of one unit style.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StyleResult {
    Accepted,
    /// Refused for its form (5005, 5008, ...): the OCS does not take units so.
    Refused {
        result_code: u32,
        failed_avp: Option<String>,
        error_message: Option<String>,
    },
    /// Neither: the reason (a credit limit, an unknown subscriber, no answer...).
    Undetermined {
        why: String,
    },
    NotTried,
}

impl StyleResult {
    fn accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }

    fn short(&self) -> String {
        match self {
            Self::Refused {
                result_code,
                failed_avp,
                ..
            } => match failed_avp {
                Some(f) => format!("{result_code}, Failed-AVP {f}"),
                None => format!("{result_code}"),
            },
            Self::Undetermined { why } => why.clone(),
            Self::Accepted => "accepted".into(),
            Self::NotTried => "not tried".into(),
        }
    }
}

/// The style findings for events or sessions, and the configuration they lead to.
#[derive(Clone, Debug, Serialize)]
pub struct StyleFinding {
    pub command_level: StyleResult,
    pub mscc: StyleResult,
    /// The style to configure (None: neither works).
    pub choice: Option<UnitsStyle>,
    pub reason: String,
}

impl StyleFinding {
    fn new(kind: &str, command_level: StyleResult, mscc: StyleResult) -> Self {
        let (choice, reason) = match (command_level.accepted(), mscc.accepted()) {
            (true, true) => (
                Some(UnitsStyle::Mscc),
                "both accepted; mscc is the 3GPP Ro form".to_string(),
            ),
            (true, false) => (
                Some(UnitsStyle::CommandLevel),
                format!(
                    "the OCS refused units in MSCC for {kind} ({})",
                    mscc.short()
                ),
            ),
            (false, true) => (
                Some(UnitsStyle::Mscc),
                format!(
                    "the OCS refused units at command level for {kind} ({})",
                    command_level.short()
                ),
            ),
            (false, false) => (
                None,
                format!(
                    "no style was accepted for {kind} (command level: {}; MSCC: {})",
                    command_level.short(),
                    mscc.short()
                ),
            ),
        };
        Self {
            command_level,
            mscc,
            choice,
            reason,
        }
    }
}

/// The T-flag retransmission: what was sent twice and what was compared.
#[derive(Clone, Debug, Serialize)]
pub struct Retransmission {
    pub session_id: String,
    pub request_number: u32,
    pub end_to_end: u32,
    pub same_answer: bool,
    /// The fields of the two answers that were compared (and any that differed).
    pub compared: Vec<String>,
    pub differing: Vec<String>,
    /// Whether the debit was applied once, when the balance can be seen (the bundled
    /// simulator); None otherwise.
    pub applied_once: Option<bool>,
}

/// The money the run moved, from the OCS's answers (and the balance when it can be seen).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MoneySummary {
    pub currency: String,
    pub debited: Decimal,
    pub refunded: Decimal,
    /// Used in sessions (committed by UPDATE or TERMINATION), refunded afterwards.
    pub used_in_sessions: Decimal,
    /// debited + used - refunded: zero for a money-neutral run.
    pub net: Decimal,
    pub balance_before: Option<Decimal>,
    pub balance_after: Option<Decimal>,
    /// Money the run could not give back, each with its Session-Id.
    pub outstanding: Vec<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub subscriber: String,
    pub amount: String,
    pub plan: Vec<String>,
    pub steps: Vec<Step>,
    pub events: Option<StyleFinding>,
    pub sessions: Option<StyleFinding>,
    pub retransmission: Option<Retransmission>,
    pub money: MoneySummary,
    /// The configuration lines this OCS needs.
    pub config_lines: Vec<String>,
    /// Every mandatory step passed.
    pub passed: bool,
}

impl Report {
    /// The report as text (a table, the configuration lines, the verdict) or JSON.
    pub fn render(&self, json: bool) -> String {
        if json {
            return match serde_json::to_string_pretty(self) {
                Ok(mut s) => {
                    s.push('\n');
                    s
                }
                Err(e) => format!("{{\"error\": \"cannot render the report: {e}\"}}\n"),
            };
        }
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<u16>().ok())
            .unwrap_or(120)
            .max(60);
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::ASCII_FULL)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width)
            .set_header(vec!["#", "step", "result", "sent", "received", "meaning"]);
        for (i, s) in self.steps.iter().enumerate() {
            let title = if s.mandatory {
                s.title.clone()
            } else {
                format!("{} (optional)", s.title)
            };
            table.add_row(vec![
                (i + 1).to_string(),
                title,
                s.result.label().to_string(),
                s.sent.clone(),
                s.received.clone(),
                s.meaning.clone(),
            ]);
        }
        let mut out = format!("{table}\n\n");
        if !self.config_lines.is_empty() {
            out.push_str("The configuration this OCS needs (conf/gateway.toml):\n\n");
            for l in &self.config_lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
        let failed: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.result == Verdict::Fail)
            .map(|s| s.title.as_str())
            .collect();
        if self.passed {
            out.push_str("Result: PASS, every mandatory step passed");
            if !failed.is_empty() {
                out.push_str(&format!(" (optional steps failed: {})", failed.join(", ")));
            }
        } else {
            out.push_str(&format!("Result: FAIL ({})", failed.join(", ")));
        }
        out.push('\n');
        out
    }
}

/// `gateway conformance`: loads the configuration, starts the bundled simulator when enabled,
/// prints the plan, runs the series and returns the report.
pub async fn run(args: &ConformanceArgs) -> Result<Report, String> {
    let mut cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let opts = Options::from_args(args, &cfg)?;
    let dict = Arc::new(crate::gateway::dictionaries(&cfg)?);
    let sim = crate::gateway::start_embedded_sim(&mut cfg, &dict, None).await?;
    let json = args.json;
    let report = run_config(cfg, dict, &opts, sim.as_ref(), |plan| {
        let text = plan.join("\n");
        if json {
            eprintln!("{text}\n");
        } else {
            println!("{text}\n");
        }
    })
    .await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    report
}

/// The series against the OCS that `cfg` points at. `sim` is the simulator when this process
/// runs it (its balance is then read, and a late answer can be provoked). `announce` gets the
/// plan before anything is sent.
pub async fn run_config(
    cfg: GatewayConfig,
    dict: Arc<Dictionary>,
    opts: &Options,
    sim: Option<&OcsSim>,
    announce: impl FnOnce(&[String]),
) -> Result<Report, String> {
    let tx = cfg.diameter.timers.request_timeout;
    let mut node_cfg = cfg.node_config();
    // Only dial: a conformance run takes no connections (the gateway may be running).
    node_cfg.listen = None;
    let cc = cfg
        .credit_control
        .client_config(&dict, tx)
        .map_err(|e| format!("configuration refused: {e}"))?;
    let plan = plan(&cfg, opts, sim.is_some(), tx);
    announce(&plan);
    let node = Node::start(node_cfg, Arc::clone(&dict), Arc::new(NoApplications))
        .await
        .map_err(|e| format!("diameter node: {e}"))?;
    let client = CreditControlClient::new(node.router().clone(), cc, None);
    let mut run = Run {
        router: node.router().clone(),
        client,
        dict,
        opts,
        sim,
        tx,
        currency: opts.amount.currency,
        steps: Vec::new(),
        money: MoneySummary {
            currency: opts.amount.currency.code().to_string(),
            ..MoneySummary::default()
        },
        states: BTreeMap::new(),
        answers: 0,
        answers_with_state: 0,
        retransmission: None,
    };
    let wait = cfg.diameter.timers.connect_timeout * 2;
    let report = run.series(wait, plan).await;
    node.shutdown().await;
    Ok(report)
}

fn plan(cfg: &GatewayConfig, opts: &Options, with_sim: bool, tx: Duration) -> Vec<String> {
    let a = &opts.amount;
    let peers: Vec<String> = cfg
        .diameter
        .peers
        .iter()
        .map(|p| {
            format!(
                "{} at {}",
                p.host,
                p.address.as_deref().unwrap_or("(not dialled)")
            )
        })
        .collect();
    let mut p = vec![
        format!(
            "Conformance run against realm {} ({}), as {}.",
            cfg.credit_control.destination_realm,
            if peers.is_empty() {
                "no peer configured".to_string()
            } else {
                peers.join(", ")
            },
            cfg.diameter.origin_host
        ),
        format!(
            "Test subscriber {}, amount {a}. The series is money-neutral: every debit is followed by \
             its refund, every reservation is released, and what a session used is refunded:",
            opts.subscriber
        ),
        format!(
            "  - events, in each style (units at command level, then in MSCC): debit {a}, then refund {a}"
        ),
        format!("  - a balance check and a price enquiry for {a} (no money moves)"),
        format!(
            "  - sessions, in each style: reserve {a}, update reporting {a} used (and reserving {a} \
             again), terminate reporting nothing more; the {a} used is refunded at once"
        ),
        format!(
            "  - a debit of {a} sent twice, the second time with the T flag (it must be applied \
             once), then refunded"
        ),
        format!(
            "  - a debit of {a} for {} (5030 expected; refunded if the OCS takes it)",
            opts.unknown_subscriber
        ),
        format!(
            "  - an update of a session never opened (5002 expected; terminated if the OCS takes it)"
        ),
    ];
    if with_sim {
        p.push(format!(
            "  - a debit of {a} the bundled simulator answers later than Tx ({tx:?}), re-sent with \
             the T flag, then refunded"
        ));
    }
    p.push(
        "At most one debit is outstanding at a time; a debit that gets no answer is re-sent once \
         with the T flag to learn its outcome."
            .into(),
    );
    p
}

/// What came back for one CCR.
enum Reply {
    Answer {
        cca: Box<CreditControlAnswer>,
    },
    /// An E-bit answer (3xxx).
    Protocol {
        rc: ResultCode,
        detail: String,
    },
    /// No answer within Tx: the outcome is unknown.
    Timeout,
    /// The connection was lost with the request in flight: the outcome is unknown.
    Lost(String),
    /// Not sent, or unreadable.
    Failed(String),
}

impl Reply {
    fn answer(&self) -> Option<&CreditControlAnswer> {
        match self {
            Self::Answer { cca, .. } => Some(cca),
            _ => None,
        }
    }

    fn succeeded(&self) -> bool {
        self.answer()
            .is_some_and(|a| a.effective_result().is_success())
    }

    fn unknown(&self) -> bool {
        matches!(self, Self::Timeout | Self::Lost(_))
    }
}

/// Result-Codes that refuse the form of a request (which AVPs, where), not its substance.
fn form_refusal(rc: ResultCode) -> bool {
    matches!(rc.0, 5001 | 5004 | 5005 | 5008 | 5009 | 5014 | 5016)
}

struct Run<'a> {
    router: Arc<Router>,
    client: Arc<CreditControlClient>,
    dict: Arc<Dictionary>,
    opts: &'a Options,
    sim: Option<&'a OcsSim>,
    tx: Duration,
    currency: Currency,
    steps: Vec<Step>,
    money: MoneySummary,
    /// Origin-State-Ids seen, per Origin-Host.
    states: BTreeMap<String, BTreeSet<u32>>,
    answers: usize,
    answers_with_state: usize,
    retransmission: Option<Retransmission>,
}

impl Run<'_> {
    async fn series(&mut self, wait: Duration, plan: Vec<String>) -> Report {
        self.money.balance_before = self.balance();
        let deadline = Instant::now() + wait.max(Duration::from_secs(2));
        while !self.router.any_usable() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connected = self.cer();
        let (mut events, mut sessions) = (None, None);
        if connected {
            self.dwr().await;
            let e = self.events().await;
            self.check_balance(e.choice).await;
            self.price_enquiry(e.choice).await;
            let s = self.sessions(e.choice).await;
            self.retransmit(e.choice).await;
            self.unknown_subscriber(e.choice).await;
            self.unknown_session(s.choice).await;
            self.slow_answer(e.choice).await;
            events = Some(e);
            sessions = Some(s);
        } else {
            for (id, title) in [
                ("dwr", "DWR/DWA"),
                ("events_style", "style for events"),
                ("sessions_style", "style for sessions"),
                ("retransmission", "T-flag retransmission"),
            ] {
                self.push(
                    id,
                    title,
                    true,
                    Verdict::Skipped,
                    "",
                    "",
                    "no OCS connection (see CER/CEA)",
                );
            }
        }
        if connected {
            self.origin_state();
        }
        self.money_step(connected);
        let config_lines = match (&events, &sessions) {
            (Some(e), Some(s)) => config_lines(e, s),
            _ => Vec::new(),
        };
        let passed = self
            .steps
            .iter()
            .all(|s| !s.mandatory || matches!(s.result, Verdict::Pass | Verdict::Info));
        Report {
            subscriber: self.opts.subscriber.key(),
            amount: self.opts.amount.to_string(),
            plan,
            steps: std::mem::take(&mut self.steps),
            events,
            sessions,
            retransmission: self.retransmission.take(),
            money: self.money.clone(),
            config_lines,
            passed,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        step: &str,
        title: &str,
        mandatory: bool,
        result: Verdict,
        sent: impl Into<String>,
        received: impl Into<String>,
        meaning: impl Into<String>,
    ) -> &mut Step {
        self.steps.push(Step {
            step: step.into(),
            title: title.into(),
            mandatory,
            result,
            sent: sent.into(),
            received: received.into(),
            meaning: meaning.into(),
            elapsed_ms: None,
        });
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    fn balance(&self) -> Option<Decimal> {
        self.sim
            .and_then(|s| s.balance(&self.opts.subscriber.key()))
            .map(|m| m.amount)
    }

    fn avp_name(&self, code: AvpCode, vendor: VendorId) -> String {
        self.dict
            .avp(code, vendor)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| format!("AVP {}", code.0))
    }

    fn app_name(&self, id: u32) -> String {
        if id == ApplicationId::RELAY.0 {
            return "Relay".into();
        }
        match self.dict.application(ApplicationId(id)) {
            Some(a) => format!("{id} ({})", a.name),
            None => id.to_string(),
        }
    }

    fn vendor(&self, id: u32) -> String {
        match self.dict.vendor_name(VendorId(id)) {
            Some(n) => format!("{id} ({n})"),
            None => id.to_string(),
        }
    }

    fn usable_peer(&self) -> Option<Arc<PeerEntry>> {
        self.router.peers().into_iter().find(|p| p.is_usable())
    }

    // ---- CER/CEA, DWR/DWA ----

    fn cer(&mut self) -> bool {
        let local = self.router.local().clone();
        let sent = format!(
            "CER from {} / {}: Auth-Application-Id {}; Supported-Vendor-Id {}",
            local.origin_host,
            local.origin_realm,
            join(local.auth_application_ids.iter().map(|a| self.app_name(*a))),
            join(local.supported_vendor_ids.iter().map(|v| self.vendor(*v))),
        );
        let mut received = Vec::new();
        let mut serving = None;
        for p in self.router.peers() {
            let Some(c) = p.capabilities() else {
                received.push(format!(
                    "{}: no CEA (peer {})",
                    p.spec.name,
                    p.state().name()
                ));
                continue;
            };
            if let Some(id) = c.origin_state_id {
                self.states
                    .entry(c.origin_host.clone())
                    .or_default()
                    .insert(id);
            }
            let state = if p.is_usable() {
                String::new()
            } else {
                format!(" (peer {}, not usable)", p.state().name())
            };
            received.push(format!(
                "{}: CEA {} from {} / {}, Product-Name \"{}\", Vendor-Id {}, Firmware-Revision {}, \
                 Origin-State-Id {}, Application-Id {}, Supported-Vendor-Id {}{state}",
                p.spec.name,
                c.result_code
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "(none)".into()),
                c.origin_host,
                c.origin_realm,
                c.product_name,
                c.vendor_id,
                c.firmware_revision
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "absent".into()),
                c.origin_state_id
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "absent".into()),
                join(c.application_ids.iter().map(|a| self.app_name(*a))),
                join(c.supported_vendor_ids.iter().map(|v| self.vendor(*v))),
            ));
            if p.is_usable() && serving.is_none() {
                serving = Some(c.application_ids.contains(&ApplicationId::RELAY.0));
            }
        }
        if received.is_empty() {
            received.push("no peer is configured (diameter.peers)".into());
        }
        let (verdict, meaning) = match serving {
            Some(false) => (
                Verdict::Pass,
                "the OCS serves Diameter Credit-Control (application 4)".to_string(),
            ),
            Some(true) => (
                Verdict::Pass,
                "a relay agent (Relay application): it forwards the CCRs to the OCS".to_string(),
            ),
            None => (
                Verdict::Fail,
                "no peer is open: check diameter.peers (address, host: the Origin-Host its CEA \
                 gives), and that the OCS knows this Origin-Host; nothing else can run"
                    .to_string(),
            ),
        };
        self.push(
            "cer",
            "CER/CEA",
            true,
            verdict,
            sent,
            received.join("\n"),
            meaning,
        );
        serving.is_some()
    }

    async fn dwr(&mut self) {
        let Some(peer) = self.usable_peer() else {
            self.push(
                "dwr",
                "DWR/DWA",
                true,
                Verdict::Fail,
                "",
                "",
                "no usable peer",
            );
            return;
        };
        let before = peer.stats();
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = peer.handle().send(PeerCommand::Probe(tx)).await.is_ok();
        let went = queued && rx.await.unwrap_or(false);
        let mut answered = false;
        while went && started.elapsed() < self.tx {
            if peer.stats().dwa_received > before.dwa_received {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        let sent = format!(
            "one DWR to {} (outside the watchdog's schedule)",
            peer.spec.name
        );
        let (verdict, received, meaning) = if !went {
            (
                Verdict::Fail,
                "not sent: the peer stopped being usable".to_string(),
                "the connection went away".to_string(),
            )
        } else if answered {
            (
                Verdict::Pass,
                format!("DWA within {:.1} ms", elapsed.as_secs_f64() * 1000.0),
                "the OCS answers the watchdog (RFC 3539); timed by polling the peer's counters \
                 every millisecond"
                    .to_string(),
            )
        } else {
            (
                Verdict::Fail,
                format!("no DWA within Tx ({:?})", self.tx),
                "the OCS does not answer DWR: the gateway's watchdog would fail the connection \
                 over after Tw, then close it"
                    .to_string(),
            )
        };
        let step = self.push("dwr", "DWR/DWA", true, verdict, sent, received, meaning);
        step.elapsed_ms = answered.then_some(elapsed.as_secs_f64() * 1000.0);
    }

    // ---- exchanges ----

    fn request(
        &self,
        session_id: &str,
        t: RequestType,
        number: u32,
        style: UnitsStyle,
        subscriber: &SubscriptionId,
    ) -> CreditControlRequest {
        let mut r = self.client.base_request(session_id, t, number);
        r.style = style;
        r.subscription = Some(subscriber.clone());
        r
    }

    fn event(
        &self,
        action: RequestedAction,
        style: UnitsStyle,
        subscriber: &SubscriptionId,
    ) -> CreditControlRequest {
        let sid = self.client.new_session_id(Some("conformance"));
        let mut r = self.request(&sid, RequestType::Event, 0, style, subscriber);
        r.requested_action = Some(action);
        r.requested = Some(Units::money(self.opts.amount));
        r
    }

    async fn send(&mut self, req: &CreditControlRequest, opts: RequestOptions) -> Reply {
        let msg = match req.to_message(self.router.local()) {
            Ok(m) => m,
            Err(e) => return Reply::Failed(format!("cannot build the CCR: {e}")),
        };
        match self.router.request_with(msg, opts).await {
            Ok(answer) => {
                self.note_state(&answer);
                match CreditControlAnswer::read(&answer, self.currency) {
                    Ok(cca) => Reply::Answer { cca: Box::new(cca) },
                    Err(e) => Reply::Failed(format!("unreadable CCA: {e}")),
                }
            }
            Err(RouteError::ProtocolError { result, answer, .. }) => {
                self.note_state(&answer);
                let detail = match CreditControlAnswer::read(&answer, self.currency) {
                    Ok(a) => self.details(&a),
                    Err(_) => String::new(),
                };
                Reply::Protocol { rc: result, detail }
            }
            Err(RouteError::Timeout(_)) => Reply::Timeout,
            Err(e) if e.outcome_unknown() => Reply::Lost(e.to_string()),
            Err(e) => Reply::Failed(e.to_string()),
        }
    }

    /// Sends, and once more with the T flag (same End-to-End id) if no answer came: the
    /// outcome of a debit must be known to refund it. The note says when the re-send answered.
    async fn send_settled(&mut self, req: &CreditControlRequest) -> (Reply, Option<String>) {
        let e2e = self.router.ids().next_end_to_end();
        let first = self
            .send(
                req,
                RequestOptions {
                    end_to_end: Some(e2e),
                    ..RequestOptions::default()
                },
            )
            .await;
        if !first.unknown() {
            return (first, None);
        }
        let again = self
            .send(
                req,
                RequestOptions {
                    end_to_end: Some(e2e),
                    retransmit: true,
                    exclude: None,
                },
            )
            .await;
        (
            again,
            Some("no answer at first: re-sent with the T flag".into()),
        )
    }

    fn note_state(&mut self, answer: &Message) {
        self.answers += 1;
        let host = answer
            .avp(AvpCode::ORIGIN_HOST)
            .and_then(|a| a.identity().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(id) = answer
            .avp(AvpCode::ORIGIN_STATE_ID)
            .and_then(|a| a.unsigned32().ok())
        {
            self.answers_with_state += 1;
            self.states.entry(host).or_default().insert(id);
        }
    }

    /// Failed-AVP (by name) and Error-Message of an answer, when present.
    fn details(&self, a: &CreditControlAnswer) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &a.failed_avp {
            parts.push(format!("Failed-AVP {}", self.avp_name(f.code, f.vendor)));
        }
        if let Some(m) = &a.error_message {
            parts.push(format!("Error-Message \"{m}\""));
        }
        parts.join(", ")
    }

    fn describe_request(&self, r: &CreditControlRequest) -> String {
        let kind = match r.request_type {
            RequestType::Initial => "CCR-I".to_string(),
            RequestType::Update => "CCR-U".to_string(),
            RequestType::Termination => "CCR-T".to_string(),
            RequestType::Event => format!(
                "CCR-E {}",
                r.requested_action
                    .unwrap_or(RequestedAction::DirectDebiting)
                    .name()
            ),
        };
        let mut units = Vec::new();
        if let Some(m) = r.requested.as_ref().and_then(|u| u.money) {
            units.push(format!("RSU {m}"));
        }
        if let Some(m) = r.used.as_ref().and_then(|u| u.money) {
            units.push(format!("USU {m}"));
        }
        let place = short_place(r.style);
        if units.is_empty() {
            kind
        } else {
            format!("{kind} {} {place}", units.join(", "))
        }
    }

    fn describe_reply(&self, reply: &Reply) -> String {
        match reply {
            Reply::Answer { cca, .. } => {
                let a = cca;
                let mut s = a.result_code.to_string();
                for m in &a.mscc {
                    if let Some(rc) = m.result_code
                        && rc != a.result_code
                    {
                        s.push_str(&format!(", MSCC {rc}"));
                    }
                }
                if let Some(g) = a.granted_money() {
                    s.push_str(&format!(", granted {g}"));
                }
                if let Some(c) = a.check_balance {
                    s.push_str(&format!(", Check-Balance-Result {}", c.name()));
                }
                if let Some((cost, unit)) = &a.cost {
                    s.push_str(&format!(", Cost-Information {cost}"));
                    if let Some(u) = unit {
                        s.push_str(&format!(" {u}"));
                    }
                }
                let d = self.details(a);
                if !d.is_empty() {
                    s.push_str(", ");
                    s.push_str(&d);
                }
                s
            }
            Reply::Protocol { rc, detail } => {
                if detail.is_empty() {
                    format!("{rc} (E bit)")
                } else {
                    format!("{rc} (E bit), {detail}")
                }
            }
            Reply::Timeout => format!("no answer within Tx ({:?})", self.tx),
            Reply::Lost(why) | Reply::Failed(why) => why.clone(),
        }
    }

    /// What an answer means for a unit style.
    fn style_result(&self, reply: &Reply) -> StyleResult {
        match reply {
            Reply::Answer { cca, .. } if cca.effective_result().is_success() => {
                StyleResult::Accepted
            }
            Reply::Answer { cca, .. } if form_refusal(cca.effective_result()) => {
                StyleResult::Refused {
                    result_code: cca.effective_result().0,
                    failed_avp: cca
                        .failed_avp
                        .as_ref()
                        .map(|f| self.avp_name(f.code, f.vendor)),
                    error_message: cca.error_message.clone(),
                }
            }
            other => StyleResult::Undetermined {
                why: self.describe_reply(other),
            },
        }
    }

    /// Refunds `amount` to `subscriber` in `style` (then in the other style if refused).
    async fn refund(
        &mut self,
        amount: Money,
        subscriber: &SubscriptionId,
        style: UnitsStyle,
        why: &str,
    ) -> (bool, String) {
        let mut tried = Vec::new();
        for s in [style, other(style)] {
            let mut r = self.event(RequestedAction::RefundAccount, s, subscriber);
            r.requested = Some(Units::money(amount));
            let (reply, note) = self.send_settled(&r).await;
            tried.push(format!(
                "REFUND_ACCOUNT {amount} {}: {}{}",
                short_place(s),
                self.describe_reply(&reply),
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
            if reply.succeeded() {
                self.money.refunded += amount.amount;
                return (true, tried.join("; "));
            }
        }
        self.money.outstanding.push(format!(
            "{amount} for {subscriber} ({why}) could not be refunded"
        ));
        (false, tried.join("; "))
    }

    /// Records a confirmed debit.
    fn debited(&mut self, amount: Money) {
        self.money.debited += amount.amount;
    }

    // ---- events ----

    async fn events(&mut self) -> StyleFinding {
        let mut results = Vec::new();
        for style in [UnitsStyle::CommandLevel, UnitsStyle::Mscc] {
            results.push(self.event_style(style).await);
        }
        let mscc = results.pop().unwrap_or(StyleResult::NotTried);
        let command_level = results.pop().unwrap_or(StyleResult::NotTried);
        let f = StyleFinding::new("events", command_level, mscc);
        let verdict = if f.choice.is_some() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let line = f
            .choice
            .map(|c| format!("events = \"{}\"", style_name(c)))
            .unwrap_or_default();
        self.push(
            "events_style",
            "style for events",
            true,
            verdict,
            "the two event steps above",
            format!(
                "command level: {}; MSCC: {}",
                f.command_level.short(),
                f.mscc.short()
            ),
            if line.is_empty() {
                f.reason.clone()
            } else {
                format!("{line}: {}", f.reason)
            },
        );
        f
    }

    async fn event_style(&mut self, style: UnitsStyle) -> StyleResult {
        let sub = self.opts.subscriber.clone();
        let amount = self.opts.amount;
        let debit = self.event(RequestedAction::DirectDebiting, style, &sub);
        let (reply, note) = self.send_settled(&debit).await;
        let mut sent = self.describe_request(&debit);
        let mut received = self.describe_reply(&reply);
        if let Some(n) = note {
            received.push_str(&format!(" ({n})"));
        }
        let id = format!("event_{}", style_name(style));
        let title = format!("event debit + refund, {}", style_title(style));
        let result = self.style_result(&reply);
        if !reply.succeeded() {
            let (verdict, meaning) = match &result {
                StyleResult::Refused { .. } => (
                    Verdict::Refused,
                    format!(
                        "the OCS does not take event units {}: nothing was debited",
                        place(style)
                    ),
                ),
                _ if reply.unknown() => (
                    Verdict::Fail,
                    format!(
                        "no answer even to the T-flag re-send: {amount} may have been debited \
                         (Session-Id {})",
                        debit.session_id
                    ),
                ),
                _ => (
                    Verdict::Fail,
                    "refused for another reason than its form: the style cannot be judged (is \
                     the subscriber known, with credit for the amount, in this currency?)"
                        .to_string(),
                ),
            };
            if reply.unknown() {
                self.money.outstanding.push(format!(
                    "{amount} may have been debited (no answer, Session-Id {})",
                    debit.session_id
                ));
            }
            self.push(&id, &title, false, verdict, sent, received, meaning);
            return result;
        }
        self.debited(amount);
        let mut refund = self.event(RequestedAction::RefundAccount, style, &sub);
        refund.requested = Some(Units::money(amount));
        let (r2, note) = self.send_settled(&refund).await;
        sent.push_str(&format!("\nthen {}", self.describe_request(&refund)));
        received.push_str(&format!("\nthen {}", self.describe_reply(&r2)));
        if let Some(n) = note {
            received.push_str(&format!(" ({n})"));
        }
        if r2.succeeded() {
            self.money.refunded += amount.amount;
            self.push(
                &id,
                &title,
                false,
                Verdict::Pass,
                sent,
                received,
                format!("the OCS takes event units {}", place(style)),
            );
            return StyleResult::Accepted;
        }
        // The debit went through, its refund did not: give the money back another way.
        let refused = self.style_result(&r2);
        let (back, how) = self
            .refund(amount, &sub, other(style), "an event debit")
            .await;
        received.push_str(&format!("\nrefund in the other style: {how}"));
        let meaning = if back {
            format!(
                "debits {} are taken but not refunds: the style does not serve events (the \
                 {amount} was refunded in the other style)",
                place(style)
            )
        } else {
            format!("NOT money-neutral: {amount} debited and not refunded")
        };
        self.push(&id, &title, false, Verdict::Fail, sent, received, meaning);
        match refused {
            StyleResult::Accepted => StyleResult::Undetermined {
                why: "refund failed".into(),
            },
            r => r,
        }
    }

    async fn check_balance(&mut self, style: Option<UnitsStyle>) {
        let Some(style) = style else {
            self.push(
                "check_balance",
                "CHECK_BALANCE",
                false,
                Verdict::Skipped,
                "",
                "",
                "no event style works",
            );
            return;
        };
        let r = self.event(RequestedAction::CheckBalance, style, &self.opts.subscriber);
        let (reply, _) = self.send_settled(&r).await;
        let (verdict, meaning) = match reply.answer() {
            Some(a) if a.effective_result().is_success() && a.check_balance.is_some() => (
                Verdict::Pass,
                format!(
                    "the OCS says whether {} covers {} (no money moves)",
                    self.opts.subscriber, self.opts.amount
                ),
            ),
            Some(a) if a.effective_result().is_success() => (
                Verdict::Fail,
                "success without a Check-Balance-Result: the answer says nothing about the balance"
                    .to_string(),
            ),
            _ => (
                Verdict::Fail,
                "the OCS does not serve balance checks (TMF654 balance queries would fail)"
                    .to_string(),
            ),
        };
        let sent = self.describe_request(&r);
        let received = self.describe_reply(&reply);
        self.push(
            "check_balance",
            "CHECK_BALANCE",
            false,
            verdict,
            sent,
            received,
            meaning,
        );
    }

    async fn price_enquiry(&mut self, style: Option<UnitsStyle>) {
        let Some(style) = style else {
            self.push(
                "price_enquiry",
                "PRICE_ENQUIRY",
                false,
                Verdict::Skipped,
                "",
                "",
                "no event style works",
            );
            return;
        };
        let r = self.event(RequestedAction::PriceEnquiry, style, &self.opts.subscriber);
        let (reply, _) = self.send_settled(&r).await;
        let (verdict, meaning) = match reply.answer() {
            Some(a) if a.effective_result().is_success() && a.cost.is_some() => (
                Verdict::Pass,
                "the OCS prices the event (no money moves)".to_string(),
            ),
            Some(a) if a.effective_result().is_success() => (
                Verdict::Fail,
                "success without Cost-Information".to_string(),
            ),
            _ => (
                Verdict::Fail,
                "the OCS does not serve price enquiries".to_string(),
            ),
        };
        let mut sent = self.describe_request(&r);
        if let Some(s) = r.service_identifier {
            sent.push_str(&format!(", Service-Identifier {s}"));
        }
        let received = self.describe_reply(&reply);
        self.push(
            "price_enquiry",
            "PRICE_ENQUIRY",
            false,
            verdict,
            sent,
            received,
            meaning,
        );
    }

    // ---- sessions ----

    async fn sessions(&mut self, refund_style: Option<UnitsStyle>) -> StyleFinding {
        let mut results = Vec::new();
        for style in [UnitsStyle::CommandLevel, UnitsStyle::Mscc] {
            results.push(self.session_style(style, refund_style).await);
        }
        let mscc = results.pop().unwrap_or(StyleResult::NotTried);
        let command_level = results.pop().unwrap_or(StyleResult::NotTried);
        let f = StyleFinding::new("sessions", command_level, mscc);
        let line = f
            .choice
            .map(|c| format!("sessions = \"{}\"", style_name(c)))
            .unwrap_or_default();
        self.push(
            "sessions_style",
            "style for sessions",
            true,
            if f.choice.is_some() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            "the two session steps above",
            format!(
                "command level: {}; MSCC: {}",
                f.command_level.short(),
                f.mscc.short()
            ),
            if line.is_empty() {
                f.reason.clone()
            } else {
                format!("{line}: {}", f.reason)
            },
        );
        f
    }

    async fn session_style(
        &mut self,
        style: UnitsStyle,
        refund_style: Option<UnitsStyle>,
    ) -> StyleResult {
        let id = format!("session_{}", style_name(style));
        let title = format!("session I/U/T, {}", style_title(style));
        let sub = self.opts.subscriber.clone();
        let amount = self.opts.amount;
        let zero = Money::zero(amount.currency);
        // Report the amount as used only if it can be refunded afterwards.
        let used = if refund_style.is_some() { amount } else { zero };
        let sid = self.client.new_session_id(Some("conformance"));
        let mut sent = Vec::new();
        let mut received = Vec::new();

        let mut i = self.request(&sid, RequestType::Initial, 0, style, &sub);
        i.requested = Some(Units::money(amount));
        let (reply, _) = self.send_settled(&i).await;
        sent.push(self.describe_request(&i));
        received.push(self.describe_reply(&reply));
        let granted = reply.answer().and_then(|a| a.granted_money());
        if !reply.succeeded() {
            let result = self.style_result(&reply);
            let (verdict, meaning) = match result {
                StyleResult::Refused { .. } => (
                    Verdict::Refused,
                    format!(
                        "the OCS does not take session units {}: nothing was reserved",
                        place(style)
                    ),
                ),
                _ => (
                    Verdict::Fail,
                    "the reservation failed for another reason than its form: the style cannot \
                     be judged"
                        .to_string(),
                ),
            };
            self.push(
                &id,
                &title,
                false,
                verdict,
                sent.join("\n"),
                received.join("\n"),
                meaning,
            );
            return result;
        }
        let mut problem: Option<String> = None;
        if granted.is_none_or(|g| g.amount < amount.amount) {
            problem = Some(format!(
                "granted {} for {amount} asked",
                granted
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "nothing".into())
            ));
        }
        let mut next = 1;
        let mut committed = Decimal::ZERO;
        if problem.is_none() {
            let mut u = self.request(&sid, RequestType::Update, next, style, &sub);
            next += 1;
            u.used = Some(Units::money(used));
            u.requested = Some(Units::money(amount));
            let (reply, _) = self.send_settled(&u).await;
            sent.push(self.describe_request(&u));
            received.push(self.describe_reply(&reply));
            if reply.succeeded() {
                committed += used.amount;
            } else {
                problem = Some(format!("the UPDATE got {}", self.describe_reply(&reply)));
            }
        }
        let mut t = self.request(&sid, RequestType::Termination, next, style, &sub);
        t.used = Some(Units::money(zero));
        let (reply, _) = self.send_settled(&t).await;
        sent.push(self.describe_request(&t));
        received.push(self.describe_reply(&reply));
        if !reply.succeeded() && problem.is_none() {
            problem = Some(format!(
                "the TERMINATION got {}",
                self.describe_reply(&reply)
            ));
        }
        self.money.used_in_sessions += committed;
        let mut refunded = String::new();
        if committed > Decimal::ZERO {
            let used_money = Money::new(committed, amount.currency);
            let (back, how) = self
                .refund(
                    used_money,
                    &sub,
                    refund_style.unwrap_or(style),
                    "used in a session",
                )
                .await;
            sent.push(format!("refund of the {used_money} used"));
            received.push(how);
            refunded = if back {
                format!("; the {used_money} used was refunded")
            } else {
                format!("; NOT money-neutral: the {used_money} used could not be refunded")
            };
        }
        let (verdict, meaning) = match &problem {
            None => (
                Verdict::Pass,
                format!(
                    "the OCS takes session units {} (reserve, commit, release){refunded}",
                    place(style)
                ),
            ),
            Some(p) => (
                Verdict::Fail,
                format!("the session did not complete: {p}{refunded}"),
            ),
        };
        self.push(
            &id,
            &title,
            false,
            verdict,
            sent.join("\n"),
            received.join("\n"),
            meaning,
        );
        match problem {
            None => StyleResult::Accepted,
            Some(p) => StyleResult::Undetermined { why: p },
        }
    }

    // ---- retransmission, unknowns, Tx ----

    async fn retransmit(&mut self, style: Option<UnitsStyle>) {
        const TITLE: &str = "T-flag retransmission";
        let Some(style) = style else {
            self.push(
                "retransmission",
                TITLE,
                true,
                Verdict::Skipped,
                "",
                "",
                "no event style works: nothing to re-send",
            );
            return;
        };
        let sub = self.opts.subscriber.clone();
        let amount = self.opts.amount;
        let debit = self.event(RequestedAction::DirectDebiting, style, &sub);
        let e2e = self.router.ids().next_end_to_end();
        let before = self.balance();
        let first = self
            .send(
                &debit,
                RequestOptions {
                    end_to_end: Some(e2e),
                    ..RequestOptions::default()
                },
            )
            .await;
        let after_first = self.balance();
        let second = self
            .send(
                &debit,
                RequestOptions {
                    end_to_end: Some(e2e),
                    retransmit: true,
                    exclude: None,
                },
            )
            .await;
        let after_second = self.balance();
        let sent = format!(
            "{} (Session-Id {}, CC-Request-Number {}, End-to-End {e2e:#010x}), then the same \
             request again with the T flag",
            self.describe_request(&debit),
            debit.session_id,
            debit.request_number
        );
        let received = format!(
            "first: {}\nretransmission: {}",
            self.describe_reply(&first),
            self.describe_reply(&second)
        );
        // Applications of the debit, as far as they can be known.
        let applied = first.succeeded() || second.succeeded();
        let (a1, a2) = match (first.answer(), second.answer()) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => {
                if applied {
                    self.debited(amount);
                    let (_, how) = self
                        .refund(amount, &sub, style, "the retransmitted debit")
                        .await;
                    self.push(
                        "retransmission",
                        TITLE,
                        true,
                        Verdict::Fail,
                        sent,
                        format!("{received}\nrefund: {how}"),
                        "one of the two got no answer: duplicate detection cannot be judged",
                    );
                } else {
                    self.push(
                        "retransmission",
                        TITLE,
                        true,
                        Verdict::Fail,
                        sent,
                        received,
                        "the debit was not answered with success: duplicate detection cannot be \
                         judged",
                    );
                }
                return;
            }
        };
        let (compared, differing) = compare(&a1, &a2);
        let applied_once = match (before, after_first, after_second) {
            (Some(b0), Some(b1), Some(b2)) => Some(b1 == b0 - amount.amount && b2 == b1),
            _ => None,
        };
        let twice = matches!((after_first, after_second), (Some(b1), Some(b2)) if b2 < b1);
        let mut refunds = Vec::new();
        if a1.effective_result().is_success() {
            self.debited(amount);
            let (_, how) = self
                .refund(amount, &sub, style, "the retransmitted debit")
                .await;
            refunds.push(how);
        }
        if twice {
            self.debited(amount);
            let (_, how) = self
                .refund(amount, &sub, style, "the second application of the debit")
                .await;
            refunds.push(format!("(applied twice: refunded again) {how}"));
        }
        let same = differing.is_empty();
        let balance_text = match (before, after_first, after_second) {
            (Some(b0), Some(b1), Some(b2)) => {
                format!("; the simulator's balance {b0}, then {b1}, then {b2}")
            }
            _ => "; the balance cannot be seen through Diameter: only the answers were compared"
                .into(),
        };
        let (verdict, meaning) = if !a1.effective_result().is_success() {
            (
                Verdict::Fail,
                "the debit itself was refused: duplicate detection cannot be judged".to_string(),
            )
        } else if applied_once == Some(false) || twice {
            (
                Verdict::Fail,
                format!(
                    "the OCS applied the retransmitted debit twice{balance_text}: the gateway's \
                     T-flag re-sends would charge twice"
                ),
            )
        } else if !same {
            (
                Verdict::Fail,
                format!(
                    "the answers differ in {}{balance_text}",
                    differing.join(", ")
                ),
            )
        } else {
            (
                Verdict::Pass,
                format!(
                    "identical answers ({} fields compared){balance_text}: answered from the \
                     OCS's duplicate detection{}",
                    compared.len(),
                    if applied_once == Some(true) {
                        ", debited once"
                    } else {
                        ""
                    }
                ),
            )
        };
        let received = if refunds.is_empty() {
            received
        } else {
            format!("{received}\nrefund: {}", refunds.join("; "))
        };
        self.retransmission = Some(Retransmission {
            session_id: debit.session_id.clone(),
            request_number: debit.request_number,
            end_to_end: e2e,
            same_answer: same,
            compared,
            differing,
            applied_once,
        });
        self.push(
            "retransmission",
            TITLE,
            true,
            verdict,
            sent,
            received,
            meaning,
        );
    }

    async fn unknown_subscriber(&mut self, style: Option<UnitsStyle>) {
        const TITLE: &str = "unknown subscriber";
        let Some(style) = style else {
            self.push(
                "unknown_subscriber",
                TITLE,
                false,
                Verdict::Skipped,
                "",
                "",
                "no event style works",
            );
            return;
        };
        let who = self.opts.unknown_subscriber.clone();
        let r = self.event(RequestedAction::DirectDebiting, style, &who);
        let (reply, _) = self.send_settled(&r).await;
        let sent = format!("{} for {who}", self.describe_request(&r));
        let mut received = self.describe_reply(&reply);
        let rc = reply.answer().map(CreditControlAnswer::effective_result);
        let (verdict, meaning) = if rc == Some(ResultCode::USER_UNKNOWN) {
            (
                Verdict::Pass,
                "5030 DIAMETER_USER_UNKNOWN: the API answers \"unknown end user\"".to_string(),
            )
        } else if reply.succeeded() {
            self.debited(self.opts.amount);
            let (_, how) = self
                .refund(self.opts.amount, &who, style, "the unknown subscriber")
                .await;
            received.push_str(&format!("\nrefund: {how}"));
            (
                Verdict::Fail,
                "the OCS took a debit for a subscriber it should not know (it may create \
                 accounts): refunded; choose --unknown-subscriber"
                    .to_string(),
            )
        } else {
            (
                Verdict::Fail,
                "not 5030: the API reports this as a refusal, not as an unknown end user"
                    .to_string(),
            )
        };
        self.push(
            "unknown_subscriber",
            TITLE,
            false,
            verdict,
            sent,
            received,
            meaning,
        );
    }

    async fn unknown_session(&mut self, style: Option<UnitsStyle>) {
        const TITLE: &str = "unknown session";
        let Some(style) = style else {
            self.push(
                "unknown_session",
                TITLE,
                false,
                Verdict::Skipped,
                "",
                "",
                "no session style works",
            );
            return;
        };
        let sub = self.opts.subscriber.clone();
        let sid = self.client.new_session_id(Some("conformance-never-opened"));
        let mut u = self.request(&sid, RequestType::Update, 1, style, &sub);
        u.used = Some(Units::money(Money::zero(self.currency)));
        u.requested = Some(Units::money(self.opts.amount));
        let (reply, _) = self.send_settled(&u).await;
        let sent = format!(
            "{} in Session-Id {sid}, never opened",
            self.describe_request(&u)
        );
        let mut received = self.describe_reply(&reply);
        let rc = reply.answer().map(CreditControlAnswer::effective_result);
        let (verdict, meaning) = if rc == Some(ResultCode::UNKNOWN_SESSION_ID) {
            (
                Verdict::Pass,
                "5002 DIAMETER_UNKNOWN_SESSION_ID: a release of a reservation the OCS no longer \
                 has counts as released"
                    .to_string(),
            )
        } else if reply.succeeded() {
            let mut t = self.request(&sid, RequestType::Termination, 2, style, &sub);
            t.used = Some(Units::money(Money::zero(self.currency)));
            let (r2, _) = self.send_settled(&t).await;
            received.push_str(&format!("\nthen CCR-T: {}", self.describe_reply(&r2)));
            (
                Verdict::Fail,
                "the OCS took an update of a session it never opened (terminated again)"
                    .to_string(),
            )
        } else {
            (
                Verdict::Fail,
                "not 5002: a release of a reservation the OCS lost is reported as a failure"
                    .to_string(),
            )
        };
        self.push(
            "unknown_session",
            TITLE,
            false,
            verdict,
            sent,
            received,
            meaning,
        );
    }

    async fn slow_answer(&mut self, style: Option<UnitsStyle>) {
        const TITLE: &str = "answer later than Tx";
        let Some(sim) = self.sim else {
            self.push(
                "slow_answer",
                TITLE,
                false,
                Verdict::Skipped,
                "",
                "",
                format!(
                    "cannot be provoked from here: the OCS is not run by this process (to try it, \
                     make the OCS answer later than diameter.timers.request_timeout, Tx = {:?})",
                    self.tx
                ),
            );
            return;
        };
        let Some(style) = style else {
            self.push(
                "slow_answer",
                TITLE,
                false,
                Verdict::Skipped,
                "",
                "",
                "no event style works",
            );
            return;
        };
        let sub = self.opts.subscriber.clone();
        let amount = self.opts.amount;
        let late = self.tx + Duration::from_millis(500);
        let key = sub.key();
        sim.set_faults(|f| {
            f.latency_for.insert(key.clone(), late);
        });
        let debit = self.event(RequestedAction::DirectDebiting, style, &sub);
        let e2e = self.router.ids().next_end_to_end();
        let before = self.balance();
        let started = Instant::now();
        let first = self
            .send(
                &debit,
                RequestOptions {
                    end_to_end: Some(e2e),
                    ..RequestOptions::default()
                },
            )
            .await;
        let waited = started.elapsed();
        sim.set_faults(|f| {
            f.latency_for.remove(&key);
        });
        let again = self
            .send(
                &debit,
                RequestOptions {
                    end_to_end: Some(e2e),
                    retransmit: true,
                    exclude: None,
                },
            )
            .await;
        let after = self.balance();
        let mut received = format!(
            "{} (after {:.1} s)\nthe T-flag re-send: {}",
            self.describe_reply(&first),
            waited.as_secs_f64(),
            self.describe_reply(&again)
        );
        let timed_out = matches!(first, Reply::Timeout);
        let once = matches!((before, after), (Some(b0), Some(b1)) if b1 == b0 - amount.amount);
        if again.succeeded() || first.succeeded() {
            self.debited(amount);
            let (_, how) = self.refund(amount, &sub, style, "the late debit").await;
            received.push_str(&format!("\nrefund: {how}"));
        }
        let (verdict, meaning) = if timed_out && again.succeeded() && once {
            (
                Verdict::Pass,
                "Tx expired with the outcome unknown; the T-flag re-send learnt it: debited \
                 once (then refunded). The gateway does the same for an unanswered charge"
                    .to_string(),
            )
        } else if !timed_out {
            (
                Verdict::Fail,
                "the answer came within Tx although the simulator was told to wait".to_string(),
            )
        } else {
            (
                Verdict::Fail,
                "the T-flag re-send did not settle the unknown outcome as one debit".to_string(),
            )
        };
        let sent = format!(
            "{} with the simulator told to answer after {late:?} (Tx {:?}), then the same request \
             with the T flag",
            self.describe_request(&debit),
            self.tx
        );
        let step = self.push(
            "slow_answer",
            TITLE,
            false,
            verdict,
            sent,
            received,
            meaning,
        );
        step.elapsed_ms = Some(waited.as_secs_f64() * 1000.0);
    }

    // ---- Origin-State-Id, money ----

    fn origin_state(&mut self) {
        const TITLE: &str = "Origin-State-Id";
        let seen: Vec<String> = self
            .states
            .iter()
            .map(|(h, ids)| format!("{h}: {}", join(ids.iter().map(u32::to_string))))
            .collect();
        let changed: Vec<&String> = self
            .states
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(h, _)| h)
            .collect();
        let received = format!(
            "in {} of {} answers{}",
            self.answers_with_state,
            self.answers,
            if seen.is_empty() {
                String::new()
            } else {
                format!("; {}", seen.join("; "))
            }
        );
        let (verdict, meaning) = if self.states.is_empty() {
            (
                Verdict::Info,
                "not sent (RFC 6733 makes it optional): a restart of the OCS cannot be told \
                 from its answers"
                    .to_string(),
            )
        } else if !changed.is_empty() {
            (
                Verdict::Fail,
                format!(
                    "changed during the run ({}): the OCS restarted, its open sessions are lost",
                    join(changed.iter())
                ),
            )
        } else if self.answers_with_state < self.answers {
            (
                Verdict::Pass,
                "stable, though not in every answer".to_string(),
            )
        } else {
            (
                Verdict::Pass,
                "present and stable during the run".to_string(),
            )
        };
        self.push(
            "origin_state_id",
            TITLE,
            false,
            verdict,
            "(read from the CEA and every answer above)",
            received,
            meaning,
        );
    }

    fn money_step(&mut self, connected: bool) {
        self.money.balance_after = self.balance();
        let m = &mut self.money;
        m.net = m.debited + m.used_in_sessions - m.refunded;
        let cur = m.currency.clone();
        let sent = format!(
            "debits {} {cur}, used in sessions {} {cur}",
            m.debited, m.used_in_sessions
        );
        let mut received = format!("refunds {} {cur}; net {} {cur}", m.refunded, m.net);
        if let (Some(b0), Some(b1)) = (m.balance_before, m.balance_after) {
            received.push_str(&format!(
                "; the simulator's balance of {}: {b0} before, {b1} after",
                self.opts.subscriber
            ));
        }
        let balance_same = match (m.balance_before, m.balance_after) {
            (Some(b0), Some(b1)) => Some(b0 == b1),
            _ => None,
        };
        let neutral = m.net.is_zero() && m.outstanding.is_empty() && balance_same != Some(false);
        let meaning = if !connected {
            "nothing was sent".to_string()
        } else if neutral {
            match balance_same {
                Some(_) => "money-neutral: every debit refunded, the balance as before".to_string(),
                None => "money-neutral by the OCS's answers: every confirmed debit was refunded \
                         (the balance itself cannot be seen through Diameter)"
                    .to_string(),
            }
        } else {
            format!(
                "NOT money-neutral: {}",
                if m.outstanding.is_empty() {
                    "the balance differs".to_string()
                } else {
                    m.outstanding.join("; ")
                }
            )
        };
        self.push(
            "money",
            "money-neutral",
            true,
            if neutral {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            sent,
            received,
            meaning,
        );
    }
}

/// The fields of two answers compared, and those that differ.
fn compare(a: &CreditControlAnswer, b: &CreditControlAnswer) -> (Vec<String>, Vec<String>) {
    let checks: [(&str, bool); 8] = [
        ("Result-Code", a.result_code == b.result_code),
        (
            "effective Result-Code",
            a.effective_result() == b.effective_result(),
        ),
        ("Session-Id", a.session_id == b.session_id),
        ("CC-Request-Number", a.request_number == b.request_number),
        ("granted money", a.granted_money() == b.granted_money()),
        ("MSCC", a.mscc == b.mscc),
        ("Cost-Information", a.cost == b.cost),
        ("Origin-Host", a.origin_host == b.origin_host),
    ];
    let compared = checks.iter().map(|(n, _)| (*n).to_string()).collect();
    let differing = checks
        .iter()
        .filter(|(_, same)| !same)
        .map(|(n, _)| (*n).to_string())
        .collect();
    (compared, differing)
}

/// The `[credit_control.style]` lines for the findings.
pub fn config_lines(events: &StyleFinding, sessions: &StyleFinding) -> Vec<String> {
    let mut lines = vec!["[credit_control.style]".to_string()];
    for (kind, f) in [("events", events), ("sessions", sessions)] {
        match f.choice {
            Some(c) => lines.push(format!(
                "{:<27}# {}",
                format!("{kind} = \"{}\"", style_name(c)),
                f.reason
            )),
            None => lines.push(format!(
                "# {kind}: {} - the gateway cannot serve them on this OCS as it is",
                f.reason
            )),
        }
    }
    lines
}

fn style_name(s: UnitsStyle) -> &'static str {
    match s {
        UnitsStyle::CommandLevel => "command_level",
        UnitsStyle::Mscc => "mscc",
    }
}

fn style_title(s: UnitsStyle) -> &'static str {
    match s {
        UnitsStyle::CommandLevel => "units at command level",
        UnitsStyle::Mscc => "units in MSCC",
    }
}

fn place(s: UnitsStyle) -> &'static str {
    match s {
        UnitsStyle::CommandLevel => "at command level",
        UnitsStyle::Mscc => "in Multiple-Services-Credit-Control",
    }
}

fn short_place(s: UnitsStyle) -> &'static str {
    match s {
        UnitsStyle::CommandLevel => "at command level",
        UnitsStyle::Mscc => "in MSCC",
    }
}

fn other(s: UnitsStyle) -> UnitsStyle {
    match s {
        UnitsStyle::CommandLevel => UnitsStyle::Mscc,
        UnitsStyle::Mscc => UnitsStyle::CommandLevel,
    }
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
