//! The OCS simulator: a real Diameter credit-control server (RFC 8506 server role) on the same
//! codec, peer and router code as the gateway, embeddable in-process or run as
//! `gateway ocs-sim`.
//!
//! ```text
//! CCR --Node/Router (grammar checked)--> SimHandler --faults?--> Ledger::apply --> CCA
//!                                                               \--> journal (memory + file)
//! ```
//!
//! Faults for tests: a fixed Result-Code per subscriber (3xxx sent as E-bit protocol errors),
//! latency, silence (requests never answered), and dropping every connection without DPR.
//! The [`Profile`] (`profile = "any" | "rfc4006" | "3gpp"`) says where it accepts the units of
//! a CCR; a request it refuses is answered 5005 before the ledger sees it.

pub mod ledger;
pub mod profile;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span, warn};

use crate::credit_control::{CreditControlAnswer, CreditControlRequest, Money, SubscriptionId};
use crate::diameter::codec::{ApplicationId, Limits, Message, MessageBuf, ResultCode};
use crate::diameter::dict::Dictionary;
use crate::diameter::node::{Node, NodeConfig, PeerConfig};
use crate::diameter::peer::{LocalIdentity, PeerSettings, messages};
use crate::diameter::router::{PeerSpec, RequestHandler, Router, RouterSettings};

pub use ledger::{Account, JournalEntry, Ledger, UnknownUsers};
pub use profile::{Placement, Profile, Refusal};

/// `conf/ocs-sim.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcsSimConfig {
    #[serde(default = "default_host")]
    pub origin_host: String,
    #[serde(default = "default_realm")]
    pub origin_realm: String,
    /// Where the simulator accepts Diameter connections.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Answer CERs from any host (a test OCS usually does).
    #[serde(default = "yes")]
    pub accept_unknown_peers: bool,
    /// Gateways expected to connect (optional when unknown peers are accepted).
    #[serde(default)]
    pub peers: Vec<SimPeer>,
    /// Currency of amounts without Currency-Code and of created accounts.
    #[serde(default = "default_currency")]
    pub default_currency: String,
    /// `reject` (5030) or `create`.
    #[serde(default = "default_unknown")]
    pub unknown_users: String,
    /// Where units are accepted: `any`, `rfc4006` (events at command level only) or `3gpp`
    /// (in MSCC only); see [`Profile`].
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Origin-State-Id (RFC 6733 section 8.16) in its CEAs and answers; absent: the start time
    /// in seconds, so that each start is a restart "with loss of previous state" (the
    /// duplicate detection is in memory; the books are rebuilt from the journal).
    #[serde(default)]
    pub origin_state_id: Option<u32>,
    /// Balance of accounts created for unknown users.
    #[serde(default)]
    pub initial_balance: Decimal,
    /// Validity-Time granted with reservations (s); reservations are released after 2x this.
    #[serde(default = "default_validity")]
    pub validity_time: u32,
    /// Journal file (JSON lines); replayed on start.
    #[serde(default)]
    pub journal_path: Option<PathBuf>,
    #[serde(default)]
    pub accounts: Vec<SimAccount>,
    #[serde(default)]
    pub prices: Vec<SimPrice>,
    #[serde(default)]
    pub faults: FaultConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimPeer {
    pub host: String,
    pub realm: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimAccount {
    /// `tel:34671999000`, `sip:alice@example.com`, ... (any form `SubscriptionId` parses).
    pub subscriber: String,
    pub balance: Decimal,
    pub currency: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimPrice {
    pub service_identifier: u32,
    pub amount: Decimal,
    pub currency: String,
}

/// Faults injected from the start (they can also be changed at run time).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Delay before every answer.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Receive requests but never answer them.
    pub silent: bool,
    pub fixed: Vec<FixedResult>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FixedResult {
    pub subscriber: String,
    pub result_code: u32,
}

fn default_host() -> String {
    "ocs.charging.local".into()
}
fn default_realm() -> String {
    "charging.local".into()
}
fn default_listen() -> String {
    "127.0.0.1:3868".into()
}
fn yes() -> bool {
    true
}
fn default_currency() -> String {
    "EUR".into()
}
fn default_unknown() -> String {
    "reject".into()
}
fn default_profile() -> String {
    Profile::default().name().into()
}
fn default_validity() -> u32 {
    900
}

impl Default for OcsSimConfig {
    fn default() -> Self {
        Self {
            origin_host: default_host(),
            origin_realm: default_realm(),
            listen: default_listen(),
            accept_unknown_peers: true,
            peers: Vec::new(),
            default_currency: default_currency(),
            unknown_users: default_unknown(),
            profile: default_profile(),
            origin_state_id: None,
            initial_balance: Decimal::ZERO,
            validity_time: default_validity(),
            journal_path: None,
            accounts: Vec::new(),
            prices: Vec::new(),
            faults: FaultConfig::default(),
        }
    }
}

impl OcsSimConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.ledger()
            .and(cfg.profile())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// The configured [`Profile`].
    pub fn profile(&self) -> Result<Profile, String> {
        self.profile.parse().map_err(|e| format!("profile: {e}"))
    }

    fn currency(code: &str, key: &str) -> Result<Currency, String> {
        Currency::from_code(code).ok_or_else(|| format!("{key}: unknown currency \"{code}\""))
    }

    /// The books as configured, before the journal.
    pub fn ledger(&self) -> Result<Ledger, String> {
        let default_currency = Self::currency(&self.default_currency, "default_currency")?;
        let unknown = match self.unknown_users.as_str() {
            "reject" => UnknownUsers::Reject,
            "create" => UnknownUsers::Create(self.initial_balance, default_currency),
            other => {
                return Err(format!(
                    "unknown_users: \"{other}\" must be reject or create"
                ));
            }
        };
        let mut l = Ledger::new(unknown, default_currency, self.validity_time);
        for (i, a) in self.accounts.iter().enumerate() {
            let sub = SubscriptionId::parse(&a.subscriber)
                .map_err(|e| format!("accounts[{i}].subscriber: {e}"))?;
            let cur = Self::currency(&a.currency, &format!("accounts[{i}].currency"))?;
            l.open_account(&sub.key(), a.balance, cur);
        }
        for (i, p) in self.prices.iter().enumerate() {
            let cur = Self::currency(&p.currency, &format!("prices[{i}].currency"))?;
            l.set_price(p.service_identifier, Money::new(p.amount, cur));
        }
        Ok(l)
    }
}

/// Reads a journal file (missing file: empty). A malformed line is an error naming it.
pub fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: JournalEntry = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        out.push(e);
    }
    Ok(out)
}

/// Run-time faults.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub latency: Duration,
    pub silent: bool,
    pub fixed: HashMap<String, ResultCode>,
    pub latency_for: HashMap<String, Duration>,
    /// Drop every connection (no DPR) on the next request, without applying it.
    pub close_on_next: bool,
}

struct Shared {
    ledger: Mutex<Ledger>,
    journal_file: Mutex<Option<File>>,
    faults: RwLock<Faults>,
    local: LocalIdentity,
    currency: Currency,
    profile: Profile,
    router: RwLock<Option<Arc<Router>>>,
}

/// The request handler the simulator's node runs.
struct SimHandler(Arc<Shared>);

impl RequestHandler for SimHandler {
    fn serves(&self, app: ApplicationId) -> bool {
        app == ApplicationId::CREDIT_CONTROL
    }

    fn handle(&self, request: Message) -> Pin<Box<dyn Future<Output = MessageBuf> + Send>> {
        let shared = Arc::clone(&self.0);
        Box::pin(async move { shared.answer(request).await })
    }
}

impl Shared {
    async fn answer(self: Arc<Self>, msg: Message) -> MessageBuf {
        let header = *msg.header();
        let req = match CreditControlRequest::read(&msg, self.currency) {
            Ok(r) => r,
            Err(e) => {
                return messages::error_answer(
                    &self.local,
                    &header,
                    msg.session_id(),
                    e.result_code(),
                    Some(&e.to_string()),
                    None,
                );
            }
        };
        let subscriber = req
            .subscription
            .as_ref()
            .map(SubscriptionId::key)
            .unwrap_or_default();
        let faults = self
            .faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if faults.close_on_next {
            self.faults
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .close_on_next = false;
            warn!("fault: dropping every connection");
            if let Some(r) = self
                .router
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                r.abort_connections();
            }
            return std::future::pending().await;
        }
        if faults.silent {
            return std::future::pending().await;
        }
        let delay = faults
            .latency_for
            .get(&subscriber)
            .copied()
            .unwrap_or(faults.latency);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Err(refusal) = self.profile.check(&req, &Placement::of(&msg)) {
            // Refused before the ledger: not applied, not journaled, not remembered.
            info!(session_id = %req.session_id, profile = %self.profile, reason = %refusal.message, "CCR refused by the profile");
            return self.render(&header, &msg, refusal.answer(&req), req.style);
        }
        if let Some(rc) = faults.fixed.get(&subscriber) {
            if rc.is_protocol_error() {
                return messages::error_answer(
                    &self.local,
                    &header,
                    Some(&req.session_id),
                    *rc,
                    Some("injected fault"),
                    None,
                );
            }
            let a = CreditControlAnswer::new(&req, *rc);
            return self.render(&header, &msg, a, req.style);
        }
        let applied = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.apply(&req, Instant::now())
        };
        self.persist(&applied.journaled);
        self.render(&header, &msg, applied.answer, applied.style)
    }

    fn render(
        &self,
        header: &crate::diameter::codec::Header,
        msg: &Message,
        a: CreditControlAnswer,
        style: crate::credit_control::UnitsStyle,
    ) -> MessageBuf {
        match a.to_message(header, &self.local, style) {
            Ok(m) => m,
            Err(e) => messages::error_answer(
                &self.local,
                header,
                msg.session_id(),
                ResultCode::UNABLE_TO_COMPLY,
                Some(&e.to_string()),
                None,
            ),
        }
    }

    fn persist(&self, entries: &[JournalEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut file = self.journal_file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = file.as_mut() {
            for e in entries {
                match serde_json::to_string(e) {
                    Ok(line) => {
                        if let Err(err) = writeln!(f, "{line}") {
                            warn!(error = %err, "journal write failed");
                        }
                    }
                    Err(err) => warn!(error = %err, "journal entry not serializable"),
                }
            }
            let _ = f.flush();
        }
    }
}

/// The simulator's Diameter identity (CER/CEA, every answer).
fn identity(cfg: &OcsSimConfig) -> LocalIdentity {
    LocalIdentity {
        origin_host: cfg.origin_host.clone(),
        origin_realm: cfg.origin_realm.clone(),
        host_ip_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        vendor_id: 0,
        product_name: "charging-gateway ocs-sim".into(),
        firmware_revision: 1,
        origin_state_id: cfg.origin_state_id.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1)
        }),
        auth_application_ids: vec![4],
        acct_application_ids: vec![],
        vendor_specific_auth_apps: vec![],
        supported_vendor_ids: vec![10415],
    }
}

/// A running simulator.
pub struct OcsSim {
    node: Node,
    shared: Arc<Shared>,
    supervision: tokio::task::JoinHandle<()>,
    /// `ocs_sim{origin_host}`: every line of the simulator (its node, peers, supervision) is
    /// logged inside it, apart from the gateway's when both run in one process.
    span: tracing::Span,
}

impl std::fmt::Debug for OcsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcsSim")
            .field("addr", &self.node.local_addr())
            .finish()
    }
}

impl OcsSim {
    /// Loads the books (configuration, then the journal), binds and starts answering.
    pub async fn start(cfg: OcsSimConfig, dict: Arc<Dictionary>) -> Result<Self, String> {
        let span = info_span!("ocs_sim", origin_host = %cfg.origin_host);
        Self::start_in(cfg, dict, span.clone())
            .instrument(span)
            .await
    }

    async fn start_in(
        cfg: OcsSimConfig,
        dict: Arc<Dictionary>,
        span: tracing::Span,
    ) -> Result<Self, String> {
        let mut ledger = cfg.ledger()?;
        let profile = cfg.profile()?;
        let currency = OcsSimConfig::currency(&cfg.default_currency, "default_currency")?;
        let mut journal_file = None;
        if let Some(path) = &cfg.journal_path {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let entries = read_journal(path)?;
            info!(entries = entries.len(), path = %path.display(), "journal replayed");
            ledger.replay(entries);
            journal_file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
        let mut faults = Faults {
            latency: cfg.faults.latency,
            silent: cfg.faults.silent,
            ..Faults::default()
        };
        for f in &cfg.faults.fixed {
            let key = SubscriptionId::parse(&f.subscriber)
                .map(|s| s.key())
                .unwrap_or_else(|_| f.subscriber.clone());
            faults.fixed.insert(key, ResultCode(f.result_code));
        }
        let local = identity(&cfg);
        let shared = Arc::new(Shared {
            ledger: Mutex::new(ledger),
            journal_file: Mutex::new(journal_file),
            faults: RwLock::new(faults),
            local: local.clone(),
            currency,
            profile,
            router: RwLock::new(None),
        });
        let listen: SocketAddr = cfg
            .listen
            .parse()
            .map_err(|_| format!("listen: \"{}\" is not an address:port", cfg.listen))?;
        let node_cfg = NodeConfig {
            local,
            listen: Some(listen),
            accept_unknown_peers: cfg.accept_unknown_peers,
            peers: cfg
                .peers
                .iter()
                .map(|p| PeerConfig {
                    spec: PeerSpec {
                        name: p.host.clone(),
                        host: p.host.clone(),
                        realm: p.realm.clone(),
                        priority: 1,
                        weight: 1,
                    },
                    connect: None,
                })
                .collect(),
            peer_settings: PeerSettings::default(),
            router: RouterSettings::default(),
            limits: Limits::default(),
            cer_timeout: Duration::from_secs(5),
        };
        let node = Node::start(node_cfg, dict, Arc::new(SimHandler(shared.clone())))
            .await
            .map_err(|e| format!("listen {listen}: {e}"))?;
        *shared.router.write().unwrap_or_else(|e| e.into_inner()) = Some(node.router().clone());
        let sup = shared.clone();
        let supervision = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let expired = sup
                        .ledger
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .expire(Instant::now());
                    if !expired.is_empty() {
                        info!(
                            count = expired.len(),
                            "reservations released by supervision (Tcc)"
                        );
                    }
                    sup.persist(&expired);
                }
            }
            .in_current_span(),
        );
        info!(address = %node.local_addr().map(|a| a.to_string()).unwrap_or_default(), profile = %profile, "OCS simulator listening");
        Ok(Self {
            node,
            shared,
            supervision,
            span,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.node.local_addr()
    }

    pub fn router(&self) -> &Arc<Router> {
        self.node.router()
    }

    /// The account of `subscriber` (any form `SubscriptionId` parses).
    pub fn account(&self, subscriber: &str) -> Option<Account> {
        let key = SubscriptionId::parse(subscriber).map(|s| s.key()).ok()?;
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .account(&key)
            .cloned()
    }

    /// The balance of `subscriber`.
    pub fn balance(&self, subscriber: &str) -> Option<Money> {
        self.account(subscriber)
            .map(|a| Money::new(a.balance, a.currency))
    }

    /// Every account, by subscriber key.
    pub fn accounts(&self) -> Vec<(String, Account)> {
        let l = self.shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = l.accounts().map(|(k, a)| (k.clone(), a.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .journal
            .iter()
            .cloned()
            .collect()
    }

    pub fn open_reservations(&self) -> usize {
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open_reservations()
    }

    /// Changes the faults at run time.
    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self
            .shared
            .faults
            .write()
            .unwrap_or_else(|e| e.into_inner()));
    }

    pub fn clear_faults(&self) {
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Faults::default();
    }

    /// Graceful stop: DPR to every peer.
    pub async fn shutdown(self) {
        self.supervision.abort();
        self.node.shutdown().instrument(self.span).await;
    }
}

#[cfg(test)]
mod tests {
    //! The answer path (`Shared::answer`) without a node: encoded CCRs in, encoded CCAs out,
    //! for each profile.

    use super::*;
    use crate::credit_control::{RequestType, RequestedAction, Units, UnitsStyle};
    use crate::diameter::codec::{AvpCode, AvpFlags};
    use std::str::FromStr;

    const SUB: &str = "tel:+34671999000";

    fn dict() -> Dictionary {
        Dictionary::builtin().unwrap()
    }

    fn eur(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), Currency::EUR)
    }

    fn shared(profile: Profile) -> Arc<Shared> {
        let cfg = OcsSimConfig {
            profile: profile.name().into(),
            accounts: vec![SimAccount {
                subscriber: SUB.into(),
                balance: Decimal::from_str("10.00").unwrap(),
                currency: "EUR".into(),
            }],
            ..OcsSimConfig::default()
        };
        Arc::new(Shared {
            ledger: Mutex::new(cfg.ledger().unwrap()),
            journal_file: Mutex::new(None),
            faults: RwLock::new(Faults::default()),
            local: identity(&cfg),
            currency: Currency::EUR,
            profile: cfg.profile().unwrap(),
            router: RwLock::new(None),
        })
    }

    fn ccr(
        sid: &str,
        t: RequestType,
        n: u32,
        action: Option<RequestedAction>,
        amount: &str,
        style: UnitsStyle,
    ) -> CreditControlRequest {
        let mut r =
            CreditControlRequest::new(sid.into(), "charging.local".into(), "c".into(), t, n);
        r.subscription = Some(SubscriptionId::parse(SUB).unwrap());
        r.requested_action = action;
        r.requested = Some(Units::money(eur(amount)));
        r.style = style;
        r
    }

    /// Sends `r` through the answer path; the decoded CCA and the message it came in.
    async fn exchange(s: &Arc<Shared>, r: &CreditControlRequest) -> (CreditControlAnswer, Message) {
        let d = dict();
        let mut gw = identity(&OcsSimConfig::default());
        gw.origin_host = "gw.charging.local".into();
        let bytes = r.to_message(&gw).unwrap().to_bytes().unwrap();
        let req = Message::decode(bytes, &d, &Limits::default()).unwrap();
        let answer = Arc::clone(s).answer(req).await.to_bytes().unwrap();
        let msg = Message::decode(answer, &d, &Limits::default()).unwrap();
        d.check(&msg, &Limits::default())
            .expect("the CCA follows its grammar");
        (CreditControlAnswer::read(&msg, Currency::EUR).unwrap(), msg)
    }

    /// The single AVP inside the answer's Failed-AVP: its code, flags and member count.
    fn failed_avp(msg: &Message) -> (AvpCode, AvpFlags, usize) {
        let f = msg.avp(AvpCode::FAILED_AVP).expect("a Failed-AVP");
        let inner: Vec<_> = f.group().map(Result::unwrap).collect();
        assert_eq!(inner.len(), 1, "one AVP inside the Failed-AVP");
        (inner[0].code(), inner[0].flags(), inner[0].group().count())
    }

    fn balance(s: &Shared) -> Decimal {
        s.ledger
            .lock()
            .unwrap()
            .account("tel:34671999000")
            .unwrap()
            .balance
    }

    fn journal_len(s: &Shared) -> usize {
        s.ledger.lock().unwrap().journal.len()
    }

    use RequestedAction::{DirectDebiting, RefundAccount};
    use UnitsStyle::{CommandLevel, Mscc};

    #[tokio::test]
    async fn rfc4006_refuses_event_units_in_mscc_and_applies_nothing() {
        let s = shared(Profile::Rfc4006);
        for (n, action) in [DirectDebiting, RefundAccount].into_iter().enumerate() {
            let (before, entries) = (balance(&s), journal_len(&s));
            let sid = format!("gw;1;{n}");
            let r = ccr(&sid, RequestType::Event, 0, Some(action), "1.00", Mscc);
            let (a, msg) = exchange(&s, &r).await;
            assert_eq!(a.result_code, ResultCode::MISSING_AVP, "{action:?}");
            assert!(
                !msg.header().flags.is_error(),
                "5005 is not a protocol error"
            );
            let (code, flags, members) = failed_avp(&msg);
            assert_eq!(code, AvpCode::REQUESTED_SERVICE_UNIT);
            assert!(flags.is_mandatory());
            assert_eq!(members, 0, "a minimal example: the Grouped header alone");
            let text = a.error_message.unwrap();
            assert!(
                text.contains(action.name()) && text.contains("sessions"),
                "{text}"
            );
            assert_eq!(balance(&s), before, "no money moved");
            assert_eq!(journal_len(&s), entries, "nothing journaled");
            // The same request at command level, in the same Session-Id, is served.
            let mut fixed = r.clone();
            fixed.style = CommandLevel;
            let (a, _) = exchange(&s, &fixed).await;
            assert_eq!(a.result_code, ResultCode::SUCCESS, "{action:?}");
        }
        // Debited 1.00 and refunded 1.00.
        assert_eq!(balance(&s), Decimal::from_str("10.00").unwrap());
        assert_eq!(journal_len(&s), 2);
        // And in another Session-Id, the correct form works as well.
        let r = ccr(
            "gw;2;0",
            RequestType::Event,
            0,
            Some(DirectDebiting),
            "2.50",
            CommandLevel,
        );
        assert_eq!(exchange(&s, &r).await.0.result_code, ResultCode::SUCCESS);
        assert_eq!(balance(&s), Decimal::from_str("7.50").unwrap());
    }

    #[tokio::test]
    async fn rfc4006_sessions_take_both_styles() {
        let s = shared(Profile::Rfc4006);
        for (n, style) in [CommandLevel, Mscc].into_iter().enumerate() {
            let sid = format!("gw;3;{n}");
            let i = ccr(&sid, RequestType::Initial, 0, None, "4.00", style);
            let (a, _) = exchange(&s, &i).await;
            assert_eq!(a.effective_result(), ResultCode::SUCCESS, "{style:?}");
            assert_eq!(a.granted_money(), Some(eur("4.00")));
            let mut t = ccr(&sid, RequestType::Termination, 1, None, "0", style);
            t.requested = None;
            let (a, _) = exchange(&s, &t).await;
            assert_eq!(a.effective_result(), ResultCode::SUCCESS, "{style:?}");
        }
        assert_eq!(balance(&s), Decimal::from_str("10.00").unwrap());
    }

    #[tokio::test]
    async fn three_gpp_refuses_command_level_units_and_applies_nothing() {
        let s = shared(Profile::ThreeGpp);
        let e = ccr(
            "gw;4;0",
            RequestType::Event,
            0,
            Some(DirectDebiting),
            "1.00",
            CommandLevel,
        );
        let i = ccr(
            "gw;4;1",
            RequestType::Initial,
            0,
            None,
            "3.00",
            CommandLevel,
        );
        for r in [&e, &i] {
            let (a, msg) = exchange(&s, r).await;
            assert_eq!(a.result_code, ResultCode::MISSING_AVP);
            let (code, _, members) = failed_avp(&msg);
            assert_eq!(code, AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL);
            assert_eq!(members, 0);
            let text = a.error_message.unwrap();
            assert!(
                text.contains("3GPP TS 32.299") && text.contains("command level"),
                "{text}"
            );
        }
        assert_eq!(balance(&s), Decimal::from_str("10.00").unwrap());
        assert_eq!(journal_len(&s), 0);
        assert_eq!(s.ledger.lock().unwrap().open_reservations(), 0);
        // The same requests in MSCC are served (same Session-Ids: nothing was remembered).
        for r in [&e, &i] {
            let mut fixed = r.clone();
            fixed.style = Mscc;
            let (a, msg) = exchange(&s, &fixed).await;
            assert_eq!(a.effective_result(), ResultCode::SUCCESS);
            assert!(msg.avp(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL).is_some());
        }
        let l = s.ledger.lock().unwrap();
        let acct = l.account("tel:34671999000").unwrap();
        assert_eq!(
            (acct.balance, acct.reserved),
            (
                Decimal::from_str("9.00").unwrap(),
                Decimal::from_str("3.00").unwrap()
            )
        );
    }

    #[tokio::test]
    async fn any_answers_in_the_request_style() {
        let s = shared(Profile::Any);
        for (n, style) in [CommandLevel, Mscc].into_iter().enumerate() {
            let sid = format!("gw;5;{n}");
            let r = ccr(
                &sid,
                RequestType::Event,
                0,
                Some(DirectDebiting),
                "1.00",
                style,
            );
            let (a, msg) = exchange(&s, &r).await;
            assert_eq!(a.effective_result(), ResultCode::SUCCESS, "{style:?}");
            assert_eq!(
                msg.avp(AvpCode::MULTIPLE_SERVICES_CREDIT_CONTROL).is_some(),
                style == Mscc
            );
            assert_eq!(
                msg.avp(AvpCode::GRANTED_SERVICE_UNIT).is_some(),
                style == CommandLevel
            );
        }
        assert_eq!(balance(&s), Decimal::from_str("8.00").unwrap());
    }

    #[test]
    fn a_bad_profile_is_refused_naming_the_key() {
        let cfg = OcsSimConfig {
            profile: "rfc-4006".into(),
            ..OcsSimConfig::default()
        };
        let e = cfg.profile().unwrap_err();
        assert!(e.starts_with("profile: \"rfc-4006\""), "{e}");
        let dir = std::env::temp_dir().join(format!("ocs-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sim.toml");
        std::fs::write(&path, "profile = \"nope\"\n").unwrap();
        let e = OcsSimConfig::load(&path).unwrap_err();
        assert!(
            e.contains("profile: \"nope\" must be one of any, rfc4006, 3gpp"),
            "{e}"
        );
        std::fs::write(&path, "profile = \"3gpp\"\n").unwrap();
        assert_eq!(
            OcsSimConfig::load(&path).unwrap().profile(),
            Ok(Profile::ThreeGpp)
        );
        // The gateway's own `[ocs_sim] profile` key (from its file or the environment).
        let gw = dir.join("gateway.toml");
        std::fs::write(
            &gw,
            "[diameter]\norigin_host = \"gw.example.net\"\norigin_realm = \"example.net\"\n\
             listen = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let env = |v: &str| vec![("GATEWAY__OCS_SIM__PROFILE".to_string(), v.to_string())];
        let c = crate::config::GatewayConfig::load_with_env(&gw, env("rfc4006")).unwrap();
        assert_eq!(c.ocs_sim.profile.as_deref(), Some("rfc4006"));
        let c = crate::config::GatewayConfig::load_with_env(&gw, env("3gpp")).unwrap();
        assert_eq!(c.ocs_sim.profile.as_deref(), Some("3gpp"));
        let e = crate::config::GatewayConfig::load_with_env(&gw, env("strict")).unwrap_err();
        assert_eq!(e.key, "ocs_sim.profile", "{e}");
        assert!(e.reason.contains("any, rfc4006, 3gpp"), "{e}");
        let c = crate::config::GatewayConfig::load_with_env(&gw, Vec::new()).unwrap();
        assert_eq!(
            c.ocs_sim.profile, None,
            "optional: the file's profile stands"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
