//! The credit-control client state machines of RFC 8506 section 7 (Tables 3, 4 and 5), sans-IO.
//!
//! ```text
//!  session:  Idle --CCR-I--> PendingI --ok--> Open --CCR-U--> PendingU --ok--> Open
//!                                               \--CCR-T--> PendingT --any--> Idle
//!  event:    Idle --CCR-E--> PendingE --answer / failure / Tx--> Idle (or PendingE, or stored)
//!            Idle --stored request--> PendingB --answer--> Idle (request deleted)
//! ```
//!
//! The machine speaks the RFC's vocabulary: events are an answer (classified), a temporary
//! error (3002, 3004, 3005), a failure to send, or the Tx timer; actions are "grant service",
//! "terminate service", "indicate service error", "store request (with the T flag)" and
//! "delete request". The charging layer maps them to outcomes (see [`super::client`]).
//! Credit-Control-Failure-Handling and Direct-Debiting-Failure-Handling come from the
//! configuration and are overridden by any CCA that carries them (RFC 8506 sections 8.14, 8.15).

use std::time::{Duration, Instant};

use thiserror::Error;

use super::message::{
    CcFailureHandling, CreditControlAnswer, DdFailureHandling, RequestType, RequestedAction,
};

/// The client states of RFC 8506 section 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    Idle,
    PendingI,
    Open,
    PendingU,
    PendingT,
    PendingE,
    PendingB,
}

/// How an answer's effective Result-Code counts in the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerClass {
    /// 2001, 2002.
    Success,
    /// 4011 CREDIT_CONTROL_NOT_APPLICABLE.
    NotApplicable,
    /// 4010 END_USER_SERVICE_DENIED.
    ServiceDenied,
    /// 5030 USER_UNKNOWN.
    UserUnknown,
    /// Any other failure ("failed answer").
    Failed,
}

impl AnswerClass {
    pub fn of(answer: &CreditControlAnswer) -> Self {
        match answer.effective_result().0 {
            2001 | 2002 => Self::Success,
            4011 => Self::NotApplicable,
            4010 => Self::ServiceDenied,
            5030 => Self::UserUnknown,
            _ => Self::Failed,
        }
    }
}

/// Inputs of the machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcEvent {
    Answer(AnswerClass),
    /// DIAMETER_TOO_BUSY, UNABLE_TO_DELIVER or LOOP_DETECTED (after any retry elsewhere).
    TemporaryError,
    /// The request could not be delivered: no peer, or its connection was lost.
    FailureToSend,
    TxExpired,
}

/// Outputs of the machines (the RFC's actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcAction {
    GrantService,
    TerminateService,
    IndicateError,
    /// Keep the request for later sending; `t_flag`: re-send it with the T flag.
    StoreRequest {
        t_flag: bool,
    },
    DeleteStoredRequest,
}

/// What the session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// Session-based charging (INITIAL, UPDATE, TERMINATION): a reservation.
    Session,
    /// One-time event with its Requested-Action.
    Event(RequestedAction),
}

/// A request the state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("{request:?} not allowed in state {state:?}")]
pub struct NotAllowed {
    pub state: ClientState,
    pub request: RequestType,
}

/// One credit-control session on the client side.
#[derive(Clone, Debug)]
pub struct ClientSession {
    state: ClientState,
    kind: SessionKind,
    /// CC-Request-Number of the request in flight (or of the last one sent).
    number: u32,
    sent_any: bool,
    ccfh: CcFailureHandling,
    ddfh: DdFailureHandling,
    tx: Duration,
    tx_deadline: Option<Instant>,
    stored: bool,
}

impl ClientSession {
    pub fn new(
        kind: SessionKind,
        ccfh: CcFailureHandling,
        ddfh: DdFailureHandling,
        tx: Duration,
    ) -> Self {
        Self {
            state: ClientState::Idle,
            kind,
            number: 0,
            sent_any: false,
            ccfh,
            ddfh,
            tx,
            tx_deadline: None,
            stored: false,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    pub fn ccfh(&self) -> CcFailureHandling {
        self.ccfh
    }

    pub fn ddfh(&self) -> DdFailureHandling {
        self.ddfh
    }

    /// CC-Request-Number of the last request begun.
    pub fn last_number(&self) -> u32 {
        self.number
    }

    /// An Open session read back from storage after a restart; its last request had
    /// `last_number`.
    pub fn restored_open(
        ccfh: CcFailureHandling,
        ddfh: DdFailureHandling,
        tx: Duration,
        last_number: u32,
    ) -> Self {
        Self {
            state: ClientState::Open,
            kind: SessionKind::Session,
            number: last_number,
            sent_any: true,
            ccfh,
            ddfh,
            tx,
            tx_deadline: None,
            stored: false,
        }
    }

    /// Whether a request is kept for resolution.
    pub fn has_stored_request(&self) -> bool {
        self.stored
    }

    /// The Tx deadline while a request is pending and its timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tx_deadline
    }

    fn tx_running(&self) -> bool {
        self.tx_deadline.is_some()
    }

    /// Starts a request of `request_type` and returns its CC-Request-Number (RFC 8506 8.2:
    /// 0 for INITIAL and EVENT, then +1 for each UPDATE and the TERMINATION).
    pub fn begin(&mut self, now: Instant, request_type: RequestType) -> Result<u32, NotAllowed> {
        use ClientState::*;
        let next = match (self.state, request_type, self.kind) {
            (Idle, RequestType::Initial, SessionKind::Session) if !self.sent_any => PendingI,
            (Open, RequestType::Update, SessionKind::Session) => PendingU,
            (Open, RequestType::Termination, SessionKind::Session) => PendingT,
            (Idle, RequestType::Event, SessionKind::Event(_)) if !self.sent_any => PendingE,
            _ => {
                return Err(NotAllowed {
                    state: self.state,
                    request: request_type,
                });
            }
        };
        self.number = match request_type {
            RequestType::Initial | RequestType::Event => 0,
            _ => self.number + 1,
        };
        self.sent_any = true;
        self.state = next;
        self.tx_deadline = Some(now + self.tx);
        Ok(self.number)
    }

    /// Idle with a stored request: send it again (PendingB). Returns its CC-Request-Number.
    pub fn begin_stored(&mut self, now: Instant) -> Option<u32> {
        if self.state != ClientState::Idle || !self.stored {
            return None;
        }
        self.state = ClientState::PendingB;
        self.tx_deadline = Some(now + self.tx);
        Some(self.number)
    }

    /// A CCA's failure-handling AVPs override the configured ones for this session.
    pub fn apply_overrides(&mut self, answer: &CreditControlAnswer) {
        if let Some(f) = answer.cc_failure_handling {
            self.ccfh = f;
        }
        if let Some(f) = answer.dd_failure_handling {
            self.ddfh = f;
        }
    }

    /// Tx has expired if `now` reached its deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<CcAction> {
        if self.tx_deadline.is_some_and(|d| now >= d) {
            self.on_event(now, CcEvent::TxExpired)
        } else {
            Vec::new()
        }
    }

    /// Feeds an event; returns the actions to take, in order.
    pub fn on_event(&mut self, _now: Instant, ev: CcEvent) -> Vec<CcAction> {
        use AnswerClass as A;
        use CcAction::*;
        use CcEvent::*;
        use ClientState::*;
        let tx_running = self.tx_running();
        let continue_ = self.ccfh == CcFailureHandling::Continue;
        let (next, actions): (ClientState, Vec<CcAction>) = match (self.state, ev) {
            // ---- Table 3: first interrogation with CCR (PendingI) ----------------------
            (PendingI, Answer(A::Success)) => (Open, vec![]),
            (PendingI, FailureToSend | TemporaryError) => {
                if continue_ {
                    (Idle, vec![GrantService])
                } else {
                    (Idle, vec![TerminateService])
                }
            }
            (PendingI, TxExpired) => match self.ccfh {
                CcFailureHandling::Terminate => (Idle, vec![TerminateService]),
                _ => (PendingI, vec![GrantService]),
            },
            (PendingI, Answer(A::ServiceDenied | A::UserUnknown)) => (Idle, vec![TerminateService]),
            (PendingI, Answer(A::NotApplicable)) => (Idle, vec![GrantService]),
            (PendingI, Answer(A::Failed)) => {
                if continue_ {
                    (Idle, vec![GrantService])
                } else {
                    (Idle, vec![TerminateService])
                }
            }
            // ---- Table 4: intermediate and final interrogations ------------------------
            (PendingU, Answer(A::Success)) => (Open, vec![]),
            (PendingU, FailureToSend | TemporaryError) => {
                if continue_ {
                    (Idle, vec![GrantService])
                } else {
                    (Idle, vec![TerminateService])
                }
            }
            (PendingU, TxExpired) => match self.ccfh {
                CcFailureHandling::Terminate => (Idle, vec![TerminateService]),
                _ => (PendingU, vec![GrantService]),
            },
            (PendingU, Answer(A::ServiceDenied)) => (Idle, vec![TerminateService]),
            (PendingU, Answer(A::NotApplicable)) => (Idle, vec![GrantService]),
            (PendingU, Answer(A::Failed | A::UserUnknown)) => {
                if continue_ {
                    (Idle, vec![GrantService])
                } else {
                    (Idle, vec![TerminateService])
                }
            }
            (PendingT, Answer(_) | FailureToSend | TemporaryError) => (Idle, vec![]),
            // Tx is not in Table 4 for PendingT: keep waiting for the answer.
            (PendingT, TxExpired) => (PendingT, vec![]),
            // ---- Table 5: one-time events ------------------------------------------------
            (PendingE, ev) => self.event_row(ev, tx_running),
            (PendingB, Answer(_)) => {
                self.stored = false;
                (Idle, vec![DeleteStoredRequest])
            }
            (PendingB, FailureToSend | TemporaryError | TxExpired) => (Idle, vec![]),
            // Anything else is not in the tables: ignored.
            (s, _) => (s, vec![]),
        };
        // Tx stops on an answer, a failure, or its own expiry.
        self.tx_deadline = None;
        self.state = next;
        if actions.iter().any(|a| matches!(a, StoreRequest { .. })) {
            self.stored = true;
        }
        actions
    }

    /// Table 5 rows for PendingE.
    fn event_row(&mut self, ev: CcEvent, tx_running: bool) -> (ClientState, Vec<CcAction>) {
        use AnswerClass as A;
        use CcAction::*;
        use CcEvent::*;
        use ClientState::*;
        let SessionKind::Event(action) = self.kind else {
            return (self.state, vec![]);
        };
        let terminate_or_buffer = self.ddfh == DdFailureHandling::TerminateOrBuffer;
        match (action, ev) {
            (_, Answer(A::Success)) => (Idle, vec![GrantService]),
            (RequestedAction::CheckBalance | RequestedAction::PriceEnquiry, _) => {
                (Idle, vec![IndicateError])
            }
            (RequestedAction::DirectDebiting, Answer(A::ServiceDenied | A::UserUnknown)) => {
                if tx_running {
                    (Idle, vec![TerminateService])
                } else {
                    (Idle, vec![])
                }
            }
            (RequestedAction::DirectDebiting, Answer(A::NotApplicable)) => {
                (Idle, vec![GrantService])
            }
            (
                RequestedAction::DirectDebiting,
                FailureToSend | TemporaryError | Answer(A::Failed),
            ) if !terminate_or_buffer => (Idle, vec![GrantService]),
            (RequestedAction::DirectDebiting, Answer(A::Failed)) => {
                if tx_running {
                    (Idle, vec![TerminateService])
                } else {
                    (Idle, vec![])
                }
            }
            (RequestedAction::DirectDebiting, TemporaryError) => {
                if tx_running {
                    (Idle, vec![TerminateService])
                } else {
                    (Idle, vec![StoreRequest { t_flag: false }])
                }
            }
            (RequestedAction::DirectDebiting, TxExpired) => (PendingE, vec![GrantService]),
            (RequestedAction::DirectDebiting, FailureToSend) => {
                (Idle, vec![StoreRequest { t_flag: true }])
            }
            (RequestedAction::RefundAccount, Answer(_)) => {
                (Idle, vec![IndicateError, DeleteStoredRequest])
            }
            (RequestedAction::RefundAccount, FailureToSend | TxExpired) => {
                (Idle, vec![StoreRequest { t_flag: true }])
            }
            (RequestedAction::RefundAccount, TemporaryError) => {
                (Idle, vec![StoreRequest { t_flag: false }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnswerClass as A;
    use CcAction::*;
    use CcEvent::*;
    use ClientState::*;

    const TX: Duration = Duration::from_secs(5);

    fn session(ccfh: CcFailureHandling) -> ClientSession {
        ClientSession::new(
            SessionKind::Session,
            ccfh,
            DdFailureHandling::TerminateOrBuffer,
            TX,
        )
    }

    fn event(action: RequestedAction, ddfh: DdFailureHandling) -> ClientSession {
        ClientSession::new(
            SessionKind::Event(action),
            CcFailureHandling::Terminate,
            ddfh,
            TX,
        )
    }

    #[test]
    fn numbering_follows_rfc_8506_8_2() {
        let t = Instant::now();
        let mut s = session(CcFailureHandling::Terminate);
        assert_eq!(s.begin(t, RequestType::Initial), Ok(0));
        s.on_event(t, Answer(A::Success));
        assert_eq!(s.begin(t, RequestType::Update), Ok(1));
        s.on_event(t, Answer(A::Success));
        assert_eq!(s.begin(t, RequestType::Update), Ok(2));
        s.on_event(t, Answer(A::Success));
        assert_eq!(s.begin(t, RequestType::Termination), Ok(3));
        s.on_event(t, Answer(A::Success));
        assert_eq!(s.state(), Idle);
        assert!(
            s.begin(t, RequestType::Initial).is_err(),
            "a session is not reused"
        );
        let mut e = event(
            RequestedAction::DirectDebiting,
            DdFailureHandling::TerminateOrBuffer,
        );
        assert_eq!(e.begin(t, RequestType::Event), Ok(0));
        assert!(
            e.begin(t, RequestType::Event).is_err(),
            "one request at a time"
        );
    }

    #[test]
    fn table_3_pending_i() {
        let t = Instant::now();
        let cases: &[(CcFailureHandling, CcEvent, ClientState, &[CcAction])] = &[
            (CcFailureHandling::Terminate, Answer(A::Success), Open, &[]),
            (
                CcFailureHandling::Continue,
                FailureToSend,
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Continue,
                TemporaryError,
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Terminate,
                FailureToSend,
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::RetryAndTerminate,
                TemporaryError,
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Terminate,
                TxExpired,
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Continue,
                TxExpired,
                PendingI,
                &[GrantService],
            ),
            (
                CcFailureHandling::RetryAndTerminate,
                TxExpired,
                PendingI,
                &[GrantService],
            ),
            (
                CcFailureHandling::Continue,
                Answer(A::ServiceDenied),
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Continue,
                Answer(A::UserUnknown),
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Terminate,
                Answer(A::NotApplicable),
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Continue,
                Answer(A::Failed),
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Terminate,
                Answer(A::Failed),
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::RetryAndTerminate,
                Answer(A::Failed),
                Idle,
                &[TerminateService],
            ),
        ];
        for (ccfh, ev, state, actions) in cases {
            let mut s = session(*ccfh);
            s.begin(t, RequestType::Initial).unwrap();
            let got = s.on_event(t, *ev);
            assert_eq!((s.state(), &got[..]), (*state, *actions), "{ccfh:?} {ev:?}");
        }
    }

    #[test]
    fn a_late_answer_after_tx_still_opens_the_session() {
        let t = Instant::now();
        let mut s = session(CcFailureHandling::Continue);
        s.begin(t, RequestType::Initial).unwrap();
        assert_eq!(s.handle_timeout(t + TX - Duration::from_millis(1)), vec![]);
        assert_eq!(s.handle_timeout(t + TX), vec![GrantService]);
        assert_eq!(s.poll_timeout(), None, "Tx stops once expired");
        s.on_event(t + TX * 2, Answer(A::Success));
        assert_eq!(s.state(), Open);
    }

    #[test]
    fn table_4_pending_u_and_t() {
        let t = Instant::now();
        let open = |ccfh| {
            let mut s = session(ccfh);
            s.begin(t, RequestType::Initial).unwrap();
            s.on_event(t, Answer(A::Success));
            s
        };
        let cases: &[(CcFailureHandling, CcEvent, ClientState, &[CcAction])] = &[
            (CcFailureHandling::Terminate, Answer(A::Success), Open, &[]),
            (
                CcFailureHandling::Continue,
                FailureToSend,
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Terminate,
                TemporaryError,
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Terminate,
                TxExpired,
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Continue,
                TxExpired,
                PendingU,
                &[GrantService],
            ),
            (
                CcFailureHandling::RetryAndTerminate,
                TxExpired,
                PendingU,
                &[GrantService],
            ),
            (
                CcFailureHandling::Continue,
                Answer(A::ServiceDenied),
                Idle,
                &[TerminateService],
            ),
            (
                CcFailureHandling::Terminate,
                Answer(A::NotApplicable),
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::Continue,
                Answer(A::Failed),
                Idle,
                &[GrantService],
            ),
            (
                CcFailureHandling::RetryAndTerminate,
                Answer(A::Failed),
                Idle,
                &[TerminateService],
            ),
        ];
        for (ccfh, ev, state, actions) in cases {
            let mut s = open(*ccfh);
            s.begin(t, RequestType::Update).unwrap();
            let got = s.on_event(t, *ev);
            assert_eq!((s.state(), &got[..]), (*state, *actions), "{ccfh:?} {ev:?}");
        }
        for ev in [
            Answer(A::Success),
            Answer(A::Failed),
            FailureToSend,
            TemporaryError,
        ] {
            let mut s = open(CcFailureHandling::Terminate);
            s.begin(t, RequestType::Termination).unwrap();
            assert_eq!(s.on_event(t, ev), vec![]);
            assert_eq!(s.state(), Idle, "{ev:?}");
        }
        let mut s = open(CcFailureHandling::Terminate);
        s.begin(t, RequestType::Termination).unwrap();
        s.on_event(t, TxExpired);
        assert_eq!(s.state(), PendingT, "keeps waiting after Tx");
    }

    #[test]
    fn table_5_direct_debiting() {
        let t = Instant::now();
        use DdFailureHandling::{Continue, TerminateOrBuffer};
        let cases: &[(DdFailureHandling, bool, CcEvent, ClientState, &[CcAction])] = &[
            // (DDFH, Tx expired first?, event, next state, actions)
            (
                TerminateOrBuffer,
                false,
                Answer(A::Success),
                Idle,
                &[GrantService],
            ),
            (
                TerminateOrBuffer,
                false,
                Answer(A::ServiceDenied),
                Idle,
                &[TerminateService],
            ),
            (
                TerminateOrBuffer,
                false,
                Answer(A::UserUnknown),
                Idle,
                &[TerminateService],
            ),
            (
                TerminateOrBuffer,
                false,
                Answer(A::NotApplicable),
                Idle,
                &[GrantService],
            ),
            (Continue, false, FailureToSend, Idle, &[GrantService]),
            (Continue, false, TemporaryError, Idle, &[GrantService]),
            (Continue, false, Answer(A::Failed), Idle, &[GrantService]),
            (
                TerminateOrBuffer,
                false,
                Answer(A::Failed),
                Idle,
                &[TerminateService],
            ),
            (
                TerminateOrBuffer,
                false,
                TemporaryError,
                Idle,
                &[TerminateService],
            ),
            (
                TerminateOrBuffer,
                false,
                TxExpired,
                PendingE,
                &[GrantService],
            ),
            (Continue, false, TxExpired, PendingE, &[GrantService]),
            (
                TerminateOrBuffer,
                false,
                FailureToSend,
                Idle,
                &[StoreRequest { t_flag: true }],
            ),
            (
                TerminateOrBuffer,
                true,
                TemporaryError,
                Idle,
                &[StoreRequest { t_flag: false }],
            ),
            (TerminateOrBuffer, true, Answer(A::Failed), Idle, &[]),
            (TerminateOrBuffer, true, Answer(A::ServiceDenied), Idle, &[]),
            (
                TerminateOrBuffer,
                true,
                Answer(A::Success),
                Idle,
                &[GrantService],
            ),
        ];
        for (ddfh, expired, ev, state, actions) in cases {
            let mut s = event(RequestedAction::DirectDebiting, *ddfh);
            s.begin(t, RequestType::Event).unwrap();
            if *expired {
                assert_eq!(s.handle_timeout(t + TX), vec![GrantService]);
                assert_eq!(s.state(), PendingE);
            }
            let got = s.on_event(t + TX, *ev);
            assert_eq!(
                (s.state(), &got[..]),
                (*state, *actions),
                "{ddfh:?} expired={expired} {ev:?}"
            );
        }
    }

    #[test]
    fn table_5_refund_and_queries_and_buffered() {
        let t = Instant::now();
        let tob = DdFailureHandling::TerminateOrBuffer;
        let mut r = event(RequestedAction::RefundAccount, tob);
        r.begin(t, RequestType::Event).unwrap();
        assert_eq!(
            r.on_event(t, Answer(A::Failed)),
            vec![IndicateError, DeleteStoredRequest]
        );
        let mut r = event(RequestedAction::RefundAccount, tob);
        r.begin(t, RequestType::Event).unwrap();
        assert_eq!(
            r.on_event(t, TxExpired),
            vec![StoreRequest { t_flag: true }]
        );
        assert!(r.has_stored_request());
        // The stored request goes out again (PendingB) and is deleted on any answer.
        assert_eq!(r.begin_stored(t), Some(0));
        assert_eq!(r.state(), PendingB);
        assert_eq!(r.on_event(t, FailureToSend), vec![]);
        assert_eq!(r.state(), Idle);
        assert!(
            r.has_stored_request(),
            "still stored after a failed attempt"
        );
        r.begin_stored(t).unwrap();
        assert_eq!(r.on_event(t, Answer(A::Success)), vec![DeleteStoredRequest]);
        assert!(!r.has_stored_request());
        let mut r = event(RequestedAction::RefundAccount, tob);
        r.begin(t, RequestType::Event).unwrap();
        assert_eq!(
            r.on_event(t, TemporaryError),
            vec![StoreRequest { t_flag: false }]
        );
        for action in [RequestedAction::CheckBalance, RequestedAction::PriceEnquiry] {
            for ev in [FailureToSend, TemporaryError, TxExpired, Answer(A::Failed)] {
                let mut q = event(action, tob);
                q.begin(t, RequestType::Event).unwrap();
                assert_eq!(q.on_event(t, ev), vec![IndicateError], "{action:?} {ev:?}");
                assert_eq!(q.state(), Idle);
            }
        }
    }

    #[test]
    fn cca_overrides_failure_handling() {
        let mut s = session(CcFailureHandling::Terminate);
        let req = super::super::message::CreditControlRequest::new(
            "s".into(),
            "r".into(),
            "c".into(),
            RequestType::Initial,
            0,
        );
        let mut a = CreditControlAnswer::new(&req, crate::diameter::codec::ResultCode::SUCCESS);
        a.cc_failure_handling = Some(CcFailureHandling::Continue);
        a.dd_failure_handling = Some(DdFailureHandling::Continue);
        s.apply_overrides(&a);
        assert_eq!(s.ccfh(), CcFailureHandling::Continue);
        assert_eq!(s.ddfh(), DdFailureHandling::Continue);
    }
}
