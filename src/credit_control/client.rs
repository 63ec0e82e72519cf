//! The credit-control client: one-time events and reservation sessions over the router, driven
//! by the RFC 8506 section 7 machines of [`super::fsm`], with a bounded session map and a
//! resolver for requests whose outcome is unknown.
//!
//! ```text
//! event(debit | refund | check | price) --CCR-E--> answer --> Outcome
//! reserve --CCR-I--> Open --update (CCR-U: USU used, RSU new)--> Open --terminate (CCR-T)--> gone
//!           \--Tx expired / connection lost--> Outcome::Unknown --resolver: same request,
//!              T flag, same End-to-End id, every `resolve_interval`--> final outcome published
//! ```
//!
//! Gateway policy beyond the RFC tables (documented in the README):
//! - a 3xxx protocol error is retried once on another peer (without the T flag: RFC 6733 says
//!   T is not set after an error answer); a second one is [`Outcome::ProtocolError`];
//! - a request never sent (no usable peer) is [`Outcome::Unavailable`] and is not buffered: a
//!   payment API reports it and the client retries, rather than charging later unseen;
//! - a request sent but not answered is [`Outcome::Unknown`]; debits under
//!   TERMINATE_OR_BUFFER, refunds, updates and terminations are then re-sent with the T flag
//!   until the OCS answers (its duplicate detection makes this safe); a reservation whose
//!   INITIAL is unknown is released with CCR-T once it resolves;
//! - a partial grant (less money than requested) releases the reservation and is
//!   [`Outcome::PartialGrant`]; so is a grant with Final-Unit-Action TERMINATE and no money.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use iso_currency::Currency;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::fsm::{AnswerClass, CcAction, CcEvent, ClientSession, ClientState, SessionKind};
use super::message::{
    CcFailureHandling, CreditControlAnswer, CreditControlRequest, DdFailureHandling,
    FinalUnitAction, RequestType, RequestedAction, ServiceParameter, Units, UnitsStyle,
};
use super::money::Money;
use super::ocs_state::OcsStates;
use super::outcome::Outcome;
use super::session_id::SessionIds;
use super::style::{RequestKind, StyleBook, StyleConfig, other, style_name};
use super::subscription::SubscriptionId;
use crate::diameter::codec::{AvpBuf, Time};
use crate::diameter::router::{RequestOptions, RouteError, Router};

/// Per-OCS settings of the client.
#[derive(Clone, Debug)]
pub struct CcConfig {
    pub service_context_id: String,
    pub destination_realm: String,
    pub destination_host: Option<String>,
    /// Where the units go, per kind of request (`auto`: learnt per OCS, see [`super::style`]).
    pub style: StyleConfig,
    /// Currency assumed for CC-Money without Currency-Code.
    pub default_currency: Currency,
    pub ccfh: CcFailureHandling,
    pub ddfh: DdFailureHandling,
    /// Tx: how long a caller waits for an answer (RFC 8506 section 13).
    pub tx: Duration,
    pub service_identifier: Option<u32>,
    pub rating_group: Option<u32>,
    /// Operator-specific AVPs added to every CCR.
    pub extra_avps: Vec<AvpBuf>,
    /// Most open reservation sessions at once.
    pub max_sessions: usize,
    /// A reservation is terminated after this even if the OCS grants longer.
    pub reservation_ttl: Duration,
    /// Pause between re-sends of a request whose outcome is unknown.
    pub resolve_interval: Duration,
    /// Re-sends before giving up (the request is then logged as unresolved).
    pub resolve_attempts: u32,
}

/// A one-time event.
#[derive(Clone, Debug)]
pub struct EventRequest {
    pub subscription: SubscriptionId,
    pub action: RequestedAction,
    /// Requested-Service-Unit money (absent for a price enquiry by service).
    pub amount: Option<Money>,
    pub service_identifier: Option<u32>,
    pub parameters: Vec<ServiceParameter>,
    /// The REST resource id, carried in the Session-Id's optional part.
    pub tag: Option<String>,
}

/// The result of an operation: the Session-Id used, the units style it was sent in and what
/// the OCS decided.
#[derive(Clone, Debug)]
pub struct Charged {
    pub session_id: String,
    pub style: UnitsStyle,
    pub outcome: Outcome,
}

/// A late outcome for a request that was reported as [`Outcome::Unknown`].
#[derive(Clone, Debug)]
pub struct Resolution {
    pub session_id: String,
    pub request_type: RequestType,
    pub request_number: u32,
    pub outcome: Outcome,
    /// The OCS whose answer resolved it (Origin-Host), when one answered.
    pub answered_by: Option<String>,
}

/// What a re-sent request came back with ([`CreditControlClient::resend`]).
#[derive(Clone, Debug)]
pub struct Resent {
    pub outcome: Outcome,
    /// The OCS that answered (Origin-Host), when one did.
    pub answered_by: Option<String>,
}

/// Why a session operation could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("no such reservation")]
    NotFound,
    #[error("another operation on this reservation is in progress")]
    Busy,
    #[error("the reservation is not open (state {0:?})")]
    NotOpen(ClientState),
    #[error("too many open reservations (limit {0})")]
    TooMany(usize),
    #[error("currency {given} differs from the reservation's {expected}")]
    Currency { given: String, expected: String },
}

/// What the session map keeps per reservation (bounded: about 300 bytes plus the strings).
#[derive(Clone, Debug)]
pub struct Reservation {
    pub session_id: String,
    pub subscription: SubscriptionId,
    pub currency: Currency,
    /// The units style of its INITIAL, kept by its UPDATEs and TERMINATION.
    pub style: UnitsStyle,
    fsm: ClientSession,
    /// Money currently reserved at the OCS (the last grant).
    pub granted: Money,
    /// Money reported as used so far.
    pub used: Money,
    pub created: SystemTime,
    /// When the reaper terminates it: min(Validity-Time, reservation TTL).
    pub expires_at: Instant,
    pub parameters: Vec<ServiceParameter>,
    busy: bool,
}

impl Reservation {
    pub fn state(&self) -> ClientState {
        self.fsm.state()
    }
}

/// A view of an open reservation, to persist and restore across restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRecord {
    pub session_id: String,
    pub subscription: SubscriptionId,
    pub granted: Money,
    pub used: Money,
    /// CC-Request-Number of the last request sent.
    pub last_request_number: u32,
    pub expires_in: Duration,
    /// The units style of the session (`None`: the client's current one for sessions).
    pub style: Option<UnitsStyle>,
}

/// Credit-control client over a router.
pub struct CreditControlClient {
    router: Arc<Router>,
    cfg: CcConfig,
    ids: SessionIds,
    sessions: DashMap<String, Reservation>,
    resolutions: Option<mpsc::UnboundedSender<Resolution>>,
    styles: StyleBook,
    ocs_states: OcsStates,
}

impl std::fmt::Debug for CreditControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditControlClient")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// How one transmission ended.
enum Exchange {
    Answer(Box<CreditControlAnswer>),
    /// 3xxx after the retry elsewhere.
    Protocol(crate::diameter::codec::ResultCode),
    /// Not sent at all.
    NotSent(String),
    /// Sent, then the connection was lost or the router gave up waiting.
    Lost(String),
    /// The answer could not be read.
    Unreadable(String),
}

impl CreditControlClient {
    /// `resolutions` receives the final outcome of every request first reported as unknown.
    pub fn new(
        router: Arc<Router>,
        cfg: CcConfig,
        resolutions: Option<mpsc::UnboundedSender<Resolution>>,
    ) -> Arc<Self> {
        let ids = SessionIds::from_clock(&router.local().origin_host);
        let styles = StyleBook::new(cfg.style);
        Arc::new(Self {
            router,
            cfg,
            ids,
            sessions: DashMap::new(),
            resolutions,
            styles,
            ocs_states: OcsStates::default(),
        })
    }

    /// The Origin-State-Id seen of each OCS (from its answers and CEAs).
    pub fn ocs_states(&self) -> &OcsStates {
        &self.ocs_states
    }

    /// `(before, after)` Origin-State-Ids when `ocs` was seen to restart after `since_ms`
    /// (ms since the epoch): a request first sent before then and resolved by it now was
    /// resolved across a restart (its duplicate detection may have been lost). What peers
    /// said in their last CEA counts too.
    pub fn restart_since(&self, ocs: &str, since_ms: i64) -> Option<(Option<u32>, u32)> {
        let now = now_ms();
        for p in self.router.peers() {
            if let Some(c) = p.capabilities()
                && let Some(osi) = c.origin_state_id
            {
                self.ocs_states.observe(&c.origin_host, osi, now);
            }
        }
        self.ocs_states.restart_since(ocs, since_ms)
    }

    /// The units styles: configured per kind, learnt per OCS.
    pub fn styles(&self) -> &StyleBook {
        &self.styles
    }

    /// The units style a new request of `kind` goes in now.
    pub fn units_style(&self, kind: RequestKind) -> UnitsStyle {
        self.styles
            .style(kind, self.cfg.destination_host.as_deref())
    }

    /// After `first` was refused over where its units were, in `auto` for `kind`: the style to
    /// send it in once more, as a new request (a new Session-Id: the refused one was not
    /// applied, and an OCS may remember its answer). `None` otherwise.
    pub fn fallback(&self, kind: RequestKind, first: &Charged) -> Option<UnitsStyle> {
        (self.styles.is_auto(kind) && first.outcome.units_refusal().is_some())
            .then(|| other(first.style))
    }

    /// What an answer says of the units style `style` for `kind`: accepted (news only the
    /// first time), or, after a fallback whose first attempt was refused as `after`, learnt.
    fn observe(
        &self,
        kind: RequestKind,
        style: UnitsStyle,
        a: &CreditControlAnswer,
        after: Option<&str>,
    ) {
        if !self.styles.is_auto(kind)
            || a.refuses_units()
            || a.effective_result().is_protocol_error()
        {
            return;
        }
        let now = now_ms();
        match after {
            Some(refusal) => {
                self.styles
                    .learnt(&a.origin_host, kind, style, refusal.to_string(), now)
            }
            None => self.styles.accepted(&a.origin_host, kind, style, now),
        }
    }

    /// The outcome of an answer, its Failed-AVP named from the dictionary.
    fn outcome_of(&self, a: CreditControlAnswer) -> Outcome {
        Outcome::from_answer_in(a, Some(self.router.dictionary()))
    }

    pub fn config(&self) -> &CcConfig {
        &self.cfg
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// A CCR with this client's common AVPs (Service-Context-Id, realm, style, Event-Timestamp,
    /// Service-Identifier, Rating-Group, the configured extra AVPs).
    pub fn base_request(
        &self,
        session_id: &str,
        request_type: RequestType,
        number: u32,
    ) -> CreditControlRequest {
        let mut r = CreditControlRequest::new(
            session_id.to_string(),
            self.cfg.destination_realm.clone(),
            self.cfg.service_context_id.clone(),
            request_type,
            number,
        );
        r.destination_host = self.cfg.destination_host.clone();
        r.event_timestamp = Time::from_unix(time::OffsetDateTime::now_utc().unix_timestamp());
        r.style = self.units_style(RequestKind::of(request_type));
        r.service_identifier = self.cfg.service_identifier;
        r.rating_group = self.cfg.rating_group;
        r.extra = self.cfg.extra_avps.clone();
        r
    }

    /// Sends once (and once more elsewhere after a protocol error), counting the exchange in
    /// the metrics (`gateway_ccr_total` by type and result, `gateway_ccr_duration_seconds`).
    async fn transmit(&self, req: &CreditControlRequest, opts: RequestOptions) -> Exchange {
        let started = Instant::now();
        let sent = self.transmit_inner(req, opts).await;
        let result: std::borrow::Cow<'static, str> = match &sent {
            Exchange::Answer(a) => a.effective_result().0.to_string().into(),
            Exchange::Protocol(rc) => rc.0.to_string().into(),
            Exchange::NotSent(_) => "not_sent".into(),
            Exchange::Lost(_) => "lost".into(),
            Exchange::Unreadable(_) => "unreadable".into(),
        };
        let kind = req.request_type.name();
        metrics::counter!("gateway_ccr_total", "type" => kind, "result" => result).increment(1);
        metrics::histogram!("gateway_ccr_duration_seconds", "type" => kind)
            .record(started.elapsed().as_secs_f64());
        sent
    }

    async fn transmit_inner(&self, req: &CreditControlRequest, opts: RequestOptions) -> Exchange {
        let msg = match req.to_message(self.router.local()) {
            Ok(m) => m,
            Err(e) => return Exchange::Unreadable(format!("cannot build the CCR: {e}")),
        };
        let mut opts = opts;
        let mut first_error = None;
        for attempt in 0..2 {
            match self.router.request_with(msg.clone(), opts).await {
                Ok(answer) => {
                    return match CreditControlAnswer::read(&answer, self.cfg.default_currency) {
                        Ok(a) => {
                            if let Some(osi) = a.origin_state_id {
                                self.ocs_states.observe(&a.origin_host, osi, now_ms());
                            }
                            Exchange::Answer(Box::new(a))
                        }
                        Err(e) => Exchange::Unreadable(format!("unreadable CCA: {e}")),
                    };
                }
                Err(RouteError::ProtocolError { result, peer, .. }) => {
                    warn!(result = %result, attempt, "protocol error from the OCS path");
                    if attempt == 0 {
                        // Retry elsewhere, as a new request: no T flag after an error answer.
                        first_error = Some(result);
                        opts = RequestOptions {
                            end_to_end: None,
                            retransmit: false,
                            exclude: Some(peer),
                        };
                        continue;
                    }
                    return Exchange::Protocol(result);
                }
                Err(
                    e @ (RouteError::NoPeer { .. }
                    | RouteError::ShuttingDown
                    | RouteError::Encode(_)),
                ) => {
                    // No other peer for the retry: the first protocol error stands.
                    return match first_error {
                        Some(rc) => Exchange::Protocol(rc),
                        None => Exchange::NotSent(e.to_string()),
                    };
                }
                Err(e) => return Exchange::Lost(e.to_string()),
            }
        }
        Exchange::NotSent("no attempt made".into())
    }

    /// Sends `req` once more as it was (same Session-Id and CC-Request-Number) with the T flag
    /// when `retransmit`, and waits at most Tx. Outside any session state: for requests
    /// recorded before a restart, or re-sent to learn an unknown outcome (the OCS's duplicate
    /// detection answers a request it has seen with its first answer).
    pub async fn send_once(&self, req: &CreditControlRequest, retransmit: bool) -> Outcome {
        self.send_once_from(req, retransmit).await.outcome
    }

    /// [`CreditControlClient::send_once`] with the T flag, saying which OCS answered.
    pub async fn resend(&self, req: &CreditControlRequest) -> Resent {
        self.send_once_from(req, true).await
    }

    async fn send_once_from(&self, req: &CreditControlRequest, retransmit: bool) -> Resent {
        let opts = RequestOptions {
            end_to_end: None,
            retransmit,
            exclude: None,
        };
        let (outcome, answered_by) =
            match tokio::time::timeout(self.cfg.tx, self.transmit(req, opts)).await {
                Err(_) => (
                    Outcome::Unknown {
                        reason: format!("no answer within Tx ({:?})", self.cfg.tx),
                        kept: false,
                    },
                    None,
                ),
                Ok(Exchange::Answer(a)) => {
                    let by = a.origin_host.clone();
                    (self.outcome_of(*a), Some(by))
                }
                Ok(Exchange::Protocol(rc)) => (Outcome::ProtocolError(rc), None),
                Ok(Exchange::NotSent(why)) => (Outcome::Unavailable(why), None),
                Ok(Exchange::Lost(why) | Exchange::Unreadable(why)) => (
                    Outcome::Unknown {
                        reason: why,
                        kept: false,
                    },
                    None,
                ),
            };
        Resent {
            outcome,
            answered_by,
        }
    }

    /// Transmits with the Tx timer: returns `None` when Tx expires first, the transmission
    /// then going on in the background and ending in `late`.
    async fn transmit_within_tx(
        self: &Arc<Self>,
        req: CreditControlRequest,
        opts: RequestOptions,
        late: impl FnOnce(Arc<Self>, Exchange) + Send + 'static,
    ) -> Option<Exchange> {
        let me = Arc::clone(self);
        let (tx, rx) = tokio::sync::oneshot::channel::<Exchange>();
        let task = tokio::spawn(
            async move {
                let sent = me.transmit(&req, opts).await;
                if let Err(sent) = tx.send(sent) {
                    // The caller stopped waiting (Tx): the late result goes to `late`.
                    late(me, sent);
                }
            }
            .in_current_span(),
        );
        match tokio::time::timeout(self.cfg.tx, rx).await {
            Ok(Ok(sent)) => Some(sent),
            Ok(Err(_)) => {
                let _ = task.await;
                Some(Exchange::Lost("transmission task ended".into()))
            }
            Err(_) => None,
        }
    }

    fn publish(&self, r: Resolution) {
        info!(session_id = %r.session_id, number = r.request_number, outcome = %r.outcome, "resolved");
        if let Some(tx) = &self.resolutions {
            let _ = tx.send(r);
        }
    }

    /// A new Session-Id with `tag` (the REST resource id) in its optional part.
    pub fn new_session_id(&self, tag: Option<&str>) -> String {
        self.ids.next(tag)
    }

    /// A one-time event (RFC 8506 Table 5): debit, refund, balance check or price enquiry.
    /// In `auto`, a request refused over where its units were is sent once more in the other
    /// style under a new Session-Id (nothing records it: for events that move no money, or
    /// callers that record none).
    pub async fn event(self: &Arc<Self>, ev: EventRequest) -> Charged {
        let session_id = self.ids.next(ev.tag.as_deref());
        let first = self.event_in(session_id, ev.clone()).await;
        match self.fallback(RequestKind::Events, &first) {
            None => first,
            Some(style) => {
                let session_id = self.ids.next(ev.tag.as_deref());
                self.event_as(session_id, ev, style, Some(&first)).await
            }
        }
    }

    /// As [`CreditControlClient::event`] without the fallback, in a Session-Id the caller
    /// chose (and recorded) with [`CreditControlClient::new_session_id`], in the current style.
    pub async fn event_in(self: &Arc<Self>, session_id: String, ev: EventRequest) -> Charged {
        let style = self.units_style(RequestKind::Events);
        self.event_as(session_id, ev, style, None).await
    }

    /// One event in `style`. `after`: the answer of the attempt this one follows, refused over
    /// where its units were (see [`CreditControlClient::fallback`]); the style is learnt if
    /// this one is accepted.
    pub async fn event_as(
        self: &Arc<Self>,
        session_id: String,
        ev: EventRequest,
        style: UnitsStyle,
        after: Option<&Charged>,
    ) -> Charged {
        let span = info_span!("cc_event", session_id = %session_id, action = ev.action.name());
        let after = self.fallback_note(RequestKind::Events, style, after);
        let me = Arc::clone(self);
        async move { me.event_inner(session_id, ev, style, after).await }
            .instrument(span)
            .await
    }

    /// A second attempt in `style` after `after`: counted and logged; its refusal's text kept
    /// to say why the style was learnt.
    fn fallback_note(
        &self,
        kind: RequestKind,
        style: UnitsStyle,
        after: Option<&Charged>,
    ) -> Option<String> {
        let first = after?;
        let refusal = first.outcome.units_refusal().map(|r| r.to_string())?;
        metrics::counter!(
            "gateway_cc_style_fallbacks_total",
            "kind" => kind.name(),
            "to" => style_name(style)
        )
        .increment(1);
        info!(
            kind = kind.name(),
            from = style_name(first.style),
            to = style_name(style),
            refused_session_id = %first.session_id,
            refusal = %refusal,
            "the OCS refused where the units were: sending the request once more in the other style"
        );
        Some(format!(
            "{refusal} to units {}",
            match first.style {
                UnitsStyle::Mscc => "in Multiple-Services-Credit-Control",
                UnitsStyle::CommandLevel => "at command level",
            }
        ))
    }

    async fn event_inner(
        self: Arc<Self>,
        session_id: String,
        ev: EventRequest,
        style: UnitsStyle,
        after: Option<String>,
    ) -> Charged {
        let now = Instant::now();
        let mut fsm = ClientSession::new(
            SessionKind::Event(ev.action),
            self.cfg.ccfh,
            self.cfg.ddfh,
            self.cfg.tx,
        );
        let number = fsm.begin(now, RequestType::Event).unwrap_or(0);
        let mut req = self.base_request(&session_id, RequestType::Event, number);
        req.style = style;
        req.subscription = Some(ev.subscription.clone());
        req.requested_action = Some(ev.action);
        req.requested = ev.amount.map(Units::money);
        if ev.service_identifier.is_some() {
            req.service_identifier = ev.service_identifier;
        }
        req.service_parameters = ev.parameters.clone();
        let e2e = self.router.ids().next_end_to_end();
        let opts = RequestOptions {
            end_to_end: Some(e2e),
            ..RequestOptions::default()
        };
        let late_req = req.clone();
        let late_fsm = fsm.clone();
        let late_after = after.clone();
        let sent = self
            .transmit_within_tx(req.clone(), opts, move |me, sent| {
                me.event_late(late_fsm, late_req, e2e, sent, late_after.as_deref());
            })
            .await;
        let outcome = match sent {
            Some(sent) => self.event_decide(&mut fsm, &req, e2e, sent, after.as_deref()),
            None => {
                let actions = fsm.on_event(Instant::now(), CcEvent::TxExpired);
                debug!(?actions, "Tx expired");
                let kept = self.keeps_unknown(ev.action, &fsm, &actions);
                Outcome::Unknown {
                    reason: format!("no answer within Tx ({:?})", self.cfg.tx),
                    kept,
                }
            }
        };
        Charged {
            session_id,
            style,
            outcome,
        }
    }

    /// Whether an unknown outcome is pursued until resolved.
    fn keeps_unknown(
        &self,
        action: RequestedAction,
        fsm: &ClientSession,
        actions: &[CcAction],
    ) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, CcAction::StoreRequest { .. }))
            || match action {
                RequestedAction::DirectDebiting => {
                    fsm.ddfh() == DdFailureHandling::TerminateOrBuffer
                }
                RequestedAction::RefundAccount => true,
                _ => false,
            }
    }

    fn event_decide(
        self: &Arc<Self>,
        fsm: &mut ClientSession,
        req: &CreditControlRequest,
        e2e: u32,
        sent: Exchange,
        after: Option<&str>,
    ) -> Outcome {
        let now = Instant::now();
        let action = req
            .requested_action
            .unwrap_or(RequestedAction::DirectDebiting);
        match sent {
            Exchange::Answer(a) => {
                self.observe(RequestKind::Events, req.style, &a, after);
                fsm.apply_overrides(&a);
                let actions = fsm.on_event(now, CcEvent::Answer(AnswerClass::of(&a)));
                debug!(?actions, result = %a.effective_result(), "answer");
                self.outcome_of(*a)
            }
            Exchange::Protocol(rc) => {
                let actions = fsm.on_event(now, CcEvent::TemporaryError);
                if actions
                    .iter()
                    .any(|a| matches!(a, CcAction::StoreRequest { .. }))
                {
                    self.spawn_resolver(req.clone(), e2e, false);
                    return Outcome::Unknown {
                        reason: format!("protocol error {rc} after Tx"),
                        kept: true,
                    };
                }
                Outcome::ProtocolError(rc)
            }
            Exchange::NotSent(why) => {
                // Never sent: not buffered (see the module documentation).
                let _ = fsm.on_event(now, CcEvent::FailureToSend);
                Outcome::Unavailable(why)
            }
            Exchange::Lost(why) | Exchange::Unreadable(why) => {
                let actions = fsm.on_event(now, CcEvent::FailureToSend);
                let kept = self.keeps_unknown(action, fsm, &actions);
                if kept {
                    self.spawn_resolver(req.clone(), e2e, true);
                }
                Outcome::Unknown { reason: why, kept }
            }
        }
    }

    /// The answer (or failure) of an event that outlived Tx.
    fn event_late(
        self: &Arc<Self>,
        mut fsm: ClientSession,
        req: CreditControlRequest,
        e2e: u32,
        sent: Exchange,
        after: Option<&str>,
    ) {
        // The caller already heard "unknown"; the FSM saw TxExpired.
        let _ = fsm.on_event(Instant::now(), CcEvent::TxExpired);
        let outcome = self.event_decide(&mut fsm, &req, e2e, sent, after);
        if !outcome.is_unknown() {
            self.publish(Resolution {
                session_id: req.session_id.clone(),
                request_type: RequestType::Event,
                request_number: req.request_number,
                outcome,
                // The first transmission's own (late) answer: nothing was re-sent.
                answered_by: None,
            });
        }
    }

    /// Re-sends `req` with the T flag and its End-to-End id until a final answer (or the
    /// attempts run out), then publishes the resolution.
    fn spawn_resolver(self: &Arc<Self>, req: CreditControlRequest, e2e: u32, t_flag: bool) {
        let me = Arc::clone(self);
        let span =
            info_span!("resolver", session_id = %req.session_id, number = req.request_number);
        tokio::spawn(
            async move {
                for attempt in 1..=me.cfg.resolve_attempts {
                    tokio::time::sleep(me.cfg.resolve_interval).await;
                    let opts = RequestOptions {
                        end_to_end: Some(e2e),
                        retransmit: t_flag || attempt > 1,
                        exclude: None,
                    };
                    match me.transmit(&req, opts).await {
                        Exchange::Answer(a) => {
                            let answered_by = Some(a.origin_host.clone());
                            let outcome = me.outcome_of(*a);
                            me.after_session_resolution(&req, &outcome);
                            me.publish(Resolution {
                                session_id: req.session_id.clone(),
                                request_type: req.request_type,
                                request_number: req.request_number,
                                outcome,
                                answered_by,
                            });
                            return;
                        }
                        Exchange::Protocol(rc) => {
                            debug!(attempt, result = %rc, "resolver: protocol error")
                        }
                        Exchange::NotSent(why)
                        | Exchange::Lost(why)
                        | Exchange::Unreadable(why) => {
                            debug!(attempt, why, "resolver: no answer yet");
                        }
                    }
                }
                warn!(
                    "unresolved after {} attempts: manual reconciliation needed",
                    me.cfg.resolve_attempts
                );
                me.publish(Resolution {
                    session_id: req.session_id.clone(),
                    request_type: req.request_type,
                    request_number: req.request_number,
                    outcome: Outcome::Unknown {
                        reason: "unresolved after all attempts".into(),
                        kept: false,
                    },
                    answered_by: None,
                });
            }
            .instrument(span),
        );
    }

    /// Session bookkeeping once an unknown session request is resolved.
    fn after_session_resolution(self: &Arc<Self>, req: &CreditControlRequest, outcome: &Outcome) {
        match req.request_type {
            RequestType::Initial => {
                // The caller was told the reservation is unknown: release whatever exists.
                if outcome.is_success() {
                    let me = Arc::clone(self);
                    let mut t = self.base_request(&req.session_id, RequestType::Termination, 1);
                    t.style = req.style;
                    t.subscription = req.subscription.clone();
                    t.used = req
                        .requested
                        .as_ref()
                        .and_then(|u| u.money)
                        .map(|m| Units::money(Money::zero(m.currency)));
                    tokio::spawn(async move {
                        let _ = me.transmit(&t, RequestOptions::default()).await;
                    });
                }
            }
            RequestType::Update => {
                let ok = outcome.is_success();
                if let Some(mut r) = self.sessions.get_mut(&req.session_id) {
                    r.busy = false;
                    if ok {
                        if let Some(a) = outcome.answer() {
                            r.fsm
                                .on_event(Instant::now(), CcEvent::Answer(AnswerClass::of(a)));
                            if let Some(m) = a.granted_money() {
                                r.granted = m;
                            }
                        }
                        if let Some(u) = req.used.as_ref().and_then(|u| u.money) {
                            r.used = Money::new(r.used.amount + u.amount, r.used.currency);
                        }
                    }
                }
                if !ok {
                    self.sessions.remove(&req.session_id);
                }
            }
            RequestType::Termination => {
                self.sessions.remove(&req.session_id);
            }
            RequestType::Event => {}
        }
    }

    /// Reserves `amount` (INITIAL, RSU money). On success the reservation stays open in the
    /// session map until [`CreditControlClient::terminate`], or its expiry. In `auto`, an
    /// INITIAL refused over where its units were is sent once more in the other style under a
    /// new Session-Id (nothing records it: for callers that record none).
    pub async fn reserve(
        self: &Arc<Self>,
        subscription: SubscriptionId,
        amount: Money,
        parameters: Vec<ServiceParameter>,
        tag: Option<&str>,
    ) -> Result<Charged, SessionError> {
        let session_id = self.ids.next(tag);
        let first = self
            .reserve_in(session_id, subscription.clone(), amount, parameters.clone())
            .await?;
        match self.fallback(RequestKind::Sessions, &first) {
            None => Ok(first),
            Some(style) => {
                let session_id = self.ids.next(tag);
                self.reserve_as(
                    session_id,
                    subscription,
                    amount,
                    parameters,
                    style,
                    Some(&first),
                )
                .await
            }
        }
    }

    /// As [`CreditControlClient::reserve`] without the fallback, in a Session-Id the caller
    /// chose, in the current style for sessions.
    pub async fn reserve_in(
        self: &Arc<Self>,
        session_id: String,
        subscription: SubscriptionId,
        amount: Money,
        parameters: Vec<ServiceParameter>,
    ) -> Result<Charged, SessionError> {
        let style = self.units_style(RequestKind::Sessions);
        self.reserve_as(session_id, subscription, amount, parameters, style, None)
            .await
    }

    /// One INITIAL in `style` (`after`: as for [`CreditControlClient::event_as`]); the
    /// session's UPDATEs and TERMINATION keep its style.
    pub async fn reserve_as(
        self: &Arc<Self>,
        session_id: String,
        subscription: SubscriptionId,
        amount: Money,
        parameters: Vec<ServiceParameter>,
        style: UnitsStyle,
        after: Option<&Charged>,
    ) -> Result<Charged, SessionError> {
        if self.sessions.len() >= self.cfg.max_sessions {
            return Err(SessionError::TooMany(self.cfg.max_sessions));
        }
        let span = info_span!("cc_reserve", session_id = %session_id);
        let after = self.fallback_note(RequestKind::Sessions, style, after);
        let me = Arc::clone(self);
        Ok(async move {
            me.reserve_inner(session_id, subscription, amount, parameters, style, after)
                .await
        }
        .instrument(span)
        .await)
    }

    async fn reserve_inner(
        self: Arc<Self>,
        session_id: String,
        subscription: SubscriptionId,
        amount: Money,
        parameters: Vec<ServiceParameter>,
        style: UnitsStyle,
        after: Option<String>,
    ) -> Charged {
        let now = Instant::now();
        let mut fsm = ClientSession::new(
            SessionKind::Session,
            self.cfg.ccfh,
            self.cfg.ddfh,
            self.cfg.tx,
        );
        let number = fsm.begin(now, RequestType::Initial).unwrap_or(0);
        let mut req = self.base_request(&session_id, RequestType::Initial, number);
        req.style = style;
        req.subscription = Some(subscription.clone());
        req.requested = Some(Units::money(amount));
        req.service_parameters = parameters.clone();
        let e2e = self.router.ids().next_end_to_end();
        let opts = RequestOptions {
            end_to_end: Some(e2e),
            ..RequestOptions::default()
        };
        let late_req = req.clone();
        let sent = self
            .transmit_within_tx(req.clone(), opts, move |me, sent| {
                // Tx expired: whatever the late answer, release anything reserved.
                let outcome = match sent {
                    Exchange::Answer(a) => me.outcome_of(*a),
                    _ => Outcome::Unknown {
                        reason: "INITIAL unanswered".into(),
                        kept: false,
                    },
                };
                me.after_session_resolution(&late_req, &outcome);
                if outcome.is_unknown() {
                    // Never answered: release blindly (a 5002 answer is harmless).
                    let mut t = me.base_request(&late_req.session_id, RequestType::Termination, 1);
                    t.style = late_req.style;
                    t.subscription = late_req.subscription.clone();
                    tokio::spawn(async move {
                        let _ = me.transmit(&t, RequestOptions::default()).await;
                    });
                }
            })
            .await;
        let outcome = match sent {
            None => {
                let _ = fsm.on_event(Instant::now(), CcEvent::TxExpired);
                Outcome::Unknown {
                    reason: format!(
                        "no answer within Tx ({:?}); any reservation will be released",
                        self.cfg.tx
                    ),
                    kept: true,
                }
            }
            Some(Exchange::Answer(a)) => {
                self.observe(RequestKind::Sessions, style, &a, after.as_deref());
                fsm.apply_overrides(&a);
                let actions = fsm.on_event(Instant::now(), CcEvent::Answer(AnswerClass::of(&a)));
                debug!(?actions, result = %a.effective_result(), "CCA-I");
                let granted = a.granted_money();
                let validity = a.validity();
                let fui_terminate = a.final_unit_action == Some(FinalUnitAction::Terminate)
                    || a.mscc
                        .iter()
                        .any(|m| m.final_unit_action == Some(FinalUnitAction::Terminate));
                let outcome = self.outcome_of(*a);
                if fsm.state() == ClientState::Open && outcome.is_success() {
                    let full = granted.is_some_and(|g| {
                        g.currency == amount.currency && g.amount >= amount.amount
                    });
                    let nothing = granted.is_none_or(|g| g.amount.is_zero());
                    if !full || (fui_terminate && nothing) {
                        // Partial grant: release and report it.
                        self.release_now(&session_id, &subscription, amount.currency, style)
                            .await;
                        return Charged {
                            session_id,
                            style,
                            outcome: Outcome::PartialGrant {
                                granted: granted.unwrap_or(Money::zero(amount.currency)),
                            },
                        };
                    }
                    let ttl = validity
                        .map(|v| Duration::from_secs(u64::from(v)))
                        .unwrap_or(self.cfg.reservation_ttl)
                        .min(self.cfg.reservation_ttl);
                    self.sessions.insert(
                        session_id.clone(),
                        Reservation {
                            session_id: session_id.clone(),
                            subscription,
                            currency: amount.currency,
                            style,
                            fsm,
                            granted: granted.unwrap_or(amount),
                            used: Money::zero(amount.currency),
                            created: SystemTime::now(),
                            expires_at: Instant::now() + ttl,
                            parameters,
                            busy: false,
                        },
                    );
                }
                outcome
            }
            Some(Exchange::Protocol(rc)) => {
                let _ = fsm.on_event(Instant::now(), CcEvent::TemporaryError);
                Outcome::ProtocolError(rc)
            }
            Some(Exchange::NotSent(why)) => {
                let _ = fsm.on_event(Instant::now(), CcEvent::FailureToSend);
                Outcome::Unavailable(why)
            }
            Some(Exchange::Lost(why) | Exchange::Unreadable(why)) => {
                let _ = fsm.on_event(Instant::now(), CcEvent::FailureToSend);
                // The OCS may hold a reservation: release it (5002 if it does not).
                let me = Arc::clone(&self);
                let (sid, sub, cur) = (session_id.clone(), subscription.clone(), amount.currency);
                tokio::spawn(async move { me.release_now(&sid, &sub, cur, style).await });
                Outcome::Unknown {
                    reason: format!("{why}; any reservation will be released"),
                    kept: true,
                }
            }
        };
        Charged {
            session_id,
            style,
            outcome,
        }
    }

    async fn release_now(
        &self,
        session_id: &str,
        subscription: &SubscriptionId,
        currency: Currency,
        style: UnitsStyle,
    ) {
        let mut t = self.base_request(session_id, RequestType::Termination, 1);
        t.style = style;
        t.subscription = Some(subscription.clone());
        t.used = Some(Units::money(Money::zero(currency)));
        let _ = self.transmit(&t, RequestOptions::default()).await;
        self.sessions.remove(session_id);
    }

    /// Takes the reservation for one operation (marks it busy), checking its state.
    fn take(&self, session_id: &str) -> Result<Reservation, SessionError> {
        let mut r = self
            .sessions
            .get_mut(session_id)
            .ok_or(SessionError::NotFound)?;
        if r.busy {
            return Err(SessionError::Busy);
        }
        if r.fsm.state() != ClientState::Open {
            return Err(SessionError::NotOpen(r.fsm.state()));
        }
        r.busy = true;
        Ok(r.clone())
    }

    /// UPDATE: reports `used` (committed by the OCS) and asks for `requested` as the new
    /// reservation (none: nothing more reserved). The reservation stays open on success.
    pub async fn update(
        self: &Arc<Self>,
        session_id: &str,
        used: Option<Money>,
        requested: Option<Money>,
        parameters: Vec<ServiceParameter>,
    ) -> Result<Outcome, SessionError> {
        let r = self.take(session_id)?;
        for m in used.iter().chain(requested.iter()) {
            if m.currency != r.currency {
                self.release_busy(session_id);
                return Err(SessionError::Currency {
                    given: m.currency.code().into(),
                    expected: r.currency.code().into(),
                });
            }
        }
        let span = info_span!("cc_update", session_id = %session_id);
        let me = Arc::clone(self);
        let sid = session_id.to_string();
        Ok(async move {
            me.session_request(sid, r, RequestType::Update, used, requested, parameters)
                .await
        }
        .instrument(span)
        .await)
    }

    /// TERMINATION: reports `used` and releases the rest; the reservation is gone afterwards.
    pub async fn terminate(
        self: &Arc<Self>,
        session_id: &str,
        used: Option<Money>,
        parameters: Vec<ServiceParameter>,
    ) -> Result<Outcome, SessionError> {
        let r = self.take(session_id)?;
        if let Some(m) = &used
            && m.currency != r.currency
        {
            self.release_busy(session_id);
            return Err(SessionError::Currency {
                given: m.currency.code().into(),
                expected: r.currency.code().into(),
            });
        }
        let span = info_span!("cc_terminate", session_id = %session_id);
        let me = Arc::clone(self);
        let sid = session_id.to_string();
        Ok(async move {
            me.session_request(sid, r, RequestType::Termination, used, None, parameters)
                .await
        }
        .instrument(span)
        .await)
    }

    fn release_busy(&self, session_id: &str) {
        if let Some(mut r) = self.sessions.get_mut(session_id) {
            r.busy = false;
        }
    }

    async fn session_request(
        self: Arc<Self>,
        session_id: String,
        mut r: Reservation,
        kind: RequestType,
        used: Option<Money>,
        requested: Option<Money>,
        parameters: Vec<ServiceParameter>,
    ) -> Outcome {
        let now = Instant::now();
        let before = r.fsm.clone();
        let number = match r.fsm.begin(now, kind) {
            Ok(n) => n,
            Err(e) => {
                warn!(%e, "not allowed");
                self.release_busy(&session_id);
                return Outcome::Failed(crate::diameter::codec::ResultCode::UNABLE_TO_COMPLY);
            }
        };
        let mut req = self.base_request(&session_id, kind, number);
        req.style = r.style;
        req.subscription = Some(r.subscription.clone());
        req.used = Some(Units::money(used.unwrap_or(Money::zero(r.currency))));
        req.requested = requested.map(Units::money);
        req.service_parameters = if parameters.is_empty() {
            r.parameters.clone()
        } else {
            parameters
        };
        let e2e = self.router.ids().next_end_to_end();
        let opts = RequestOptions {
            end_to_end: Some(e2e),
            ..RequestOptions::default()
        };
        // Commit the FSM's progress (request number) before waiting.
        if let Some(mut live) = self.sessions.get_mut(&session_id) {
            live.fsm = r.fsm.clone();
        }
        let late_req = req.clone();
        let sent = self
            .transmit_within_tx(req.clone(), opts, move |me, sent| {
                let outcome = match sent {
                    Exchange::Answer(a) => me.outcome_of(*a),
                    _ => {
                        // Still nothing: keep re-sending with the T flag until it resolves.
                        me.spawn_resolver(late_req.clone(), e2e, true);
                        return;
                    }
                };
                me.after_session_resolution(&late_req, &outcome);
                me.publish(Resolution {
                    session_id: late_req.session_id.clone(),
                    request_type: late_req.request_type,
                    request_number: late_req.request_number,
                    outcome,
                    answered_by: None,
                });
            })
            .await;
        let now = Instant::now();
        let outcome = match sent {
            None => {
                let actions = r.fsm.on_event(now, CcEvent::TxExpired);
                debug!(?actions, "Tx expired");
                // The session stays busy until the outcome resolves.
                return Outcome::Unknown {
                    reason: format!("no answer within Tx ({:?})", self.cfg.tx),
                    kept: true,
                };
            }
            Some(Exchange::Answer(a)) => {
                r.fsm.apply_overrides(&a);
                let actions = r.fsm.on_event(now, CcEvent::Answer(AnswerClass::of(&a)));
                debug!(?actions, result = %a.effective_result(), "CCA");
                if let Some(m) = a.granted_money() {
                    r.granted = m;
                } else if kind == RequestType::Update {
                    r.granted = Money::zero(r.currency);
                }
                if let Some(v) = a.validity() {
                    r.expires_at =
                        now + Duration::from_secs(u64::from(v)).min(self.cfg.reservation_ttl);
                }
                let outcome = self.outcome_of(*a);
                if outcome.is_success()
                    && let Some(u) = used
                {
                    r.used = Money::new(r.used.amount + u.amount, r.used.currency);
                }
                outcome
            }
            Some(Exchange::Protocol(rc)) => {
                let _ = r.fsm.on_event(now, CcEvent::TemporaryError);
                Outcome::ProtocolError(rc)
            }
            Some(Exchange::NotSent(why)) => {
                let _ = r.fsm.on_event(now, CcEvent::FailureToSend);
                Outcome::Unavailable(why)
            }
            Some(Exchange::Lost(why) | Exchange::Unreadable(why)) => {
                self.spawn_resolver(req, e2e, true);
                return Outcome::Unknown {
                    reason: why,
                    kept: true,
                };
            }
        };
        // Back into the map (or out of it, when the session ended).
        r.busy = false;
        let ended = r.fsm.state() == ClientState::Idle;
        let unsent = matches!(outcome, Outcome::Unavailable(_) | Outcome::ProtocolError(_));
        if ended && !unsent {
            self.sessions.remove(&session_id);
        } else {
            if unsent {
                // Nothing reached the OCS: the reservation stays as it was (gateway policy: a
                // reservation is never dropped while the OCS may still hold it).
                r.fsm = before;
            }
            self.sessions.insert(session_id, r);
        }
        outcome
    }

    /// The reservation, if open.
    pub fn reservation(&self, session_id: &str) -> Option<ReservationRecord> {
        self.sessions.get(session_id).map(|r| ReservationRecord {
            session_id: r.session_id.clone(),
            subscription: r.subscription.clone(),
            granted: r.granted,
            used: r.used,
            last_request_number: r.fsm.last_number(),
            expires_in: r.expires_at.saturating_duration_since(Instant::now()),
            style: Some(r.style),
        })
    }

    /// Puts back a reservation read from durable storage after a restart.
    pub fn restore(&self, rec: ReservationRecord) -> Result<(), SessionError> {
        if self.sessions.len() >= self.cfg.max_sessions {
            return Err(SessionError::TooMany(self.cfg.max_sessions));
        }
        let fsm = ClientSession::restored_open(
            self.cfg.ccfh,
            self.cfg.ddfh,
            self.cfg.tx,
            rec.last_request_number,
        );
        let style = rec
            .style
            .unwrap_or_else(|| self.units_style(RequestKind::Sessions));
        self.sessions.insert(
            rec.session_id.clone(),
            Reservation {
                session_id: rec.session_id,
                currency: rec.granted.currency,
                style,
                subscription: rec.subscription,
                fsm,
                granted: rec.granted,
                used: rec.used,
                created: SystemTime::now(),
                expires_at: Instant::now() + rec.expires_in,
                parameters: Vec::new(),
                busy: false,
            },
        );
        Ok(())
    }

    /// Terminates (CCR-T, nothing more used) every open reservation past its expiry; returns
    /// how many. The reaper task calls this periodically.
    pub async fn reap(self: &Arc<Self>) -> usize {
        let now = Instant::now();
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|r| !r.busy && r.fsm.state() == ClientState::Open && r.expires_at <= now)
            .map(|r| r.session_id.clone())
            .collect();
        let mut n = 0;
        for sid in due {
            info!(session_id = %sid, "reservation expired: releasing (CCR-T)");
            if self.terminate(&sid, None, Vec::new()).await.is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Starts the reaper: every `every`, expired reservations are terminated.
    pub fn spawn_reaper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.reap().await;
            }
        })
    }
}

/// Wall-clock ms since the epoch (what the store's records use).
fn now_ms() -> i64 {
    let ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ns).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one open reservation costs in the session map: the entry itself plus its strings
    /// and parameters (README: "bytes per session").
    #[test]
    fn a_reservation_is_small_and_bounded() {
        let entry = std::mem::size_of::<Reservation>() + std::mem::size_of::<String>();
        assert!(entry <= 320, "{entry} bytes");
        // The heap part: the Session-Id (key and value, at most ~130 bytes each with a 64-byte
        // tag), the subscription data (at most a SIP URI) and up to 5 parameters of at most
        // 256 bytes each; all bounded by the REST layer's input limits.
        let sub = SubscriptionId::parse("sip:alice@example.com").unwrap();
        let r = Reservation {
            session_id: "gw1.operator.example;1734440000;17;rsv-1a230ac495a8f71-2".into(),
            subscription: sub,
            currency: Currency::EUR,
            style: UnitsStyle::Mscc,
            fsm: ClientSession::restored_open(
                CcFailureHandling::Terminate,
                DdFailureHandling::TerminateOrBuffer,
                Duration::from_secs(10),
                0,
            ),
            granted: Money::zero(Currency::EUR),
            used: Money::zero(Currency::EUR),
            created: SystemTime::now(),
            expires_at: Instant::now(),
            parameters: Vec::new(),
            busy: false,
        };
        let heap = 2 * r.session_id.len() + 32;
        println!("reservation entry: {entry} bytes + about {heap} bytes of strings");
    }
}
