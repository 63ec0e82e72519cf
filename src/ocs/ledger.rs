//! The simulator's books: accounts, reservations, duplicate detection and the journal.
//!
//! RFC 8506 server semantics (section 5, Table 6):
//! - EVENT DIRECT_DEBITING debits, REFUND_ACCOUNT credits, CHECK_BALANCE reports, PRICE_ENQUIRY
//!   prices; nothing is reserved.
//! - INITIAL reserves the requested money; UPDATE debits the used money and replaces the
//!   reservation with the newly requested one; TERMINATION debits the used money and releases
//!   the rest ("the server MUST refund the reserved credit amount not used").
//! - A reservation left alone past Tcc (2 x Validity-Time) is released.
//! - (Session-Id, CC-Request-Number) already answered: the same answer, nothing applied again.
//!
//! Every applied operation is journaled with the resulting balance and reservation, so that the
//! books can be rebuilt from the journal alone.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::profile::grouped_example;
use crate::credit_control::{
    CheckBalanceResult, CreditControlAnswer, CreditControlRequest, FailedAvp, Money, MsccAnswer,
    RequestType, RequestedAction, Units, UnitsStyle,
};
use crate::diameter::codec::{AvpCode, ResultCode, VendorId};

/// Journal entries kept in memory (the most recent ones; the file keeps all of them).
pub const MAX_JOURNAL_IN_MEMORY: usize = 100_000;

/// Answers remembered for duplicate detection, per generation (two generations are kept:
/// at least this many of the most recent requests are recognised).
pub const DEDUP_GENERATION: usize = 100_000;

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub balance: Decimal,
    pub currency: Currency,
    /// Sum of the open reservations.
    pub reserved: Decimal,
}

impl Account {
    pub fn available(&self) -> Decimal {
        self.balance - self.reserved
    }
}

#[derive(Clone, Debug)]
struct Reservation {
    subscriber: String,
    amount: Decimal,
    last_number: u32,
    expires: Instant,
}

/// What to do with a subscriber the books do not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnknownUsers {
    /// DIAMETER_USER_UNKNOWN (5030).
    Reject,
    /// Open an account with this balance.
    Create(Decimal, Currency),
}

/// A journal line: one applied operation and the state it left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    pub session_id: String,
    pub request_number: u32,
    /// debit, refund, reserve, commit, release, expire.
    pub op: String,
    pub subscriber: String,
    /// The amount moved (debited, credited, reserved, committed or released).
    pub amount: Decimal,
    pub currency: String,
    pub balance: Decimal,
    /// The session's reservation after the operation (None: closed).
    pub reservation: Option<Decimal>,
    pub result_code: u32,
    /// Money granted in the answer.
    pub granted: Option<Decimal>,
}

/// A cached answer for duplicate detection.
#[derive(Clone, Debug)]
struct Answered {
    answer: CreditControlAnswer,
    style: UnitsStyle,
}

/// Duplicate detection with bounded memory and no pause: two generations of a map sized once;
/// when the current one is full it becomes the previous one (the older previous one is
/// dropped on another thread), so no insert ever rehashes a large map.
#[derive(Debug)]
struct Dedup {
    current: HashMap<(String, u32), Arc<Answered>>,
    previous: HashMap<(String, u32), Arc<Answered>>,
    generation: usize,
}

impl Dedup {
    fn new(generation: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation: generation.max(1),
        }
    }

    fn get(&self, key: &(String, u32)) -> Option<&Arc<Answered>> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    fn insert(&mut self, key: (String, u32), value: Arc<Answered>) {
        if self.current.len() >= self.generation && !self.current.contains_key(&key) {
            let fresh = HashMap::with_capacity(self.generation);
            let full = std::mem::replace(&mut self.current, fresh);
            let old = std::mem::replace(&mut self.previous, full);
            // Freeing a generation's entries takes a while: not under the ledger's lock.
            let _ = std::thread::Builder::new()
                .name("ocs-dedup-drop".into())
                .spawn(move || drop(old));
        } else if self.current.capacity() == 0 {
            self.current.reserve(self.generation);
        }
        self.current.insert(key, value);
    }
}

/// The books.
#[derive(Debug)]
pub struct Ledger {
    accounts: HashMap<String, Account>,
    reservations: HashMap<String, Reservation>,
    answered: Dedup,
    pub(crate) journal: VecDeque<JournalEntry>,
    seq: u64,
    unknown_users: UnknownUsers,
    default_currency: Currency,
    validity: u32,
    prices: HashMap<u32, Money>,
}

/// The answer to apply, and its style.
pub struct Applied {
    pub answer: CreditControlAnswer,
    pub style: UnitsStyle,
    /// Journal lines this request added (to persist).
    pub journaled: Vec<JournalEntry>,
    pub duplicate: bool,
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Ledger {
    pub fn new(unknown_users: UnknownUsers, default_currency: Currency, validity: u32) -> Self {
        Self {
            accounts: HashMap::new(),
            reservations: HashMap::new(),
            answered: Dedup::new(DEDUP_GENERATION),
            journal: VecDeque::new(),
            seq: 0,
            unknown_users,
            default_currency,
            validity,
            prices: HashMap::new(),
        }
    }

    pub fn open_account(&mut self, subscriber: &str, balance: Decimal, currency: Currency) {
        self.accounts.insert(
            subscriber.to_string(),
            Account {
                balance,
                currency,
                reserved: Decimal::ZERO,
            },
        );
    }

    pub fn set_price(&mut self, service_identifier: u32, price: Money) {
        self.prices.insert(service_identifier, price);
    }

    pub fn account(&self, subscriber: &str) -> Option<&Account> {
        self.accounts.get(subscriber)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&String, &Account)> {
        self.accounts.iter()
    }

    pub fn open_reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Rebuilds the books from journal lines (after the configured accounts were opened).
    pub fn replay(&mut self, entries: Vec<JournalEntry>) {
        let validity = Duration::from_secs(u64::from(self.validity) * 2);
        for e in entries {
            let currency = Currency::from_code(&e.currency).unwrap_or(self.default_currency);
            let acct = self
                .accounts
                .entry(e.subscriber.clone())
                .or_insert(Account {
                    balance: e.balance,
                    currency,
                    reserved: Decimal::ZERO,
                });
            acct.balance = e.balance;
            let before = self
                .reservations
                .get(&e.session_id)
                .map(|r| r.amount)
                .unwrap_or_default();
            match e.reservation {
                Some(amount) => {
                    acct.reserved += amount - before;
                    self.reservations.insert(
                        e.session_id.clone(),
                        Reservation {
                            subscriber: e.subscriber.clone(),
                            amount,
                            last_number: e.request_number,
                            expires: Instant::now() + validity,
                        },
                    );
                }
                None => {
                    acct.reserved -= before;
                    self.reservations.remove(&e.session_id);
                }
            }
            // Rebuild duplicate detection for applied requests.
            let mut req = CreditControlRequest::new(
                e.session_id.clone(),
                String::new(),
                String::new(),
                RequestType::Event,
                e.request_number,
            );
            req.request_type = match e.op.as_str() {
                "reserve" => RequestType::Initial,
                "commit" if e.reservation.is_some() => RequestType::Update,
                "commit" | "release" => RequestType::Termination,
                _ => RequestType::Event,
            };
            let mut a = CreditControlAnswer::new(&req, ResultCode(e.result_code));
            a.granted = e.granted.map(|g| Units::money(Money::new(g, currency)));
            self.remember(&e.session_id, e.request_number, a, UnitsStyle::CommandLevel);
            self.seq = self.seq.max(e.seq);
            if self.journal.len() >= MAX_JOURNAL_IN_MEMORY {
                self.journal.pop_front();
            }
            self.journal.push_back(e);
        }
    }

    fn remember(
        &mut self,
        session_id: &str,
        number: u32,
        answer: CreditControlAnswer,
        style: UnitsStyle,
    ) {
        self.answered.insert(
            (session_id.to_string(), number),
            Arc::new(Answered { answer, style }),
        );
    }

    fn journal(
        &mut self,
        req: &CreditControlRequest,
        op: &str,
        subscriber: &str,
        amount: Decimal,
        result: ResultCode,
        granted: Option<Decimal>,
    ) -> JournalEntry {
        self.seq += 1;
        let acct = self.accounts.get(subscriber);
        let entry = JournalEntry {
            seq: self.seq,
            time: now_text(),
            session_id: req.session_id.clone(),
            request_number: req.request_number,
            op: op.to_string(),
            subscriber: subscriber.to_string(),
            amount,
            currency: acct.map(|a| a.currency.code()).unwrap_or("XXX").to_string(),
            balance: acct.map(|a| a.balance).unwrap_or_default(),
            reservation: self.reservations.get(&req.session_id).map(|r| r.amount),
            result_code: result.0,
            granted,
        };
        if self.journal.len() >= MAX_JOURNAL_IN_MEMORY {
            self.journal.pop_front();
        }
        self.journal.push_back(entry.clone());
        entry
    }

    /// Releases reservations past their supervision time; returns the journal lines.
    pub fn expire(&mut self, now: Instant) -> Vec<JournalEntry> {
        let due: Vec<String> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        self.release_expired(due)
    }

    fn expire_session(&mut self, session_id: &str, now: Instant) -> Vec<JournalEntry> {
        match self.reservations.get(session_id) {
            Some(r) if r.expires <= now => self.release_expired(vec![session_id.to_string()]),
            _ => Vec::new(),
        }
    }

    fn release_expired(&mut self, due: Vec<String>) -> Vec<JournalEntry> {
        let mut out = Vec::new();
        for sid in due {
            if let Some(r) = self.reservations.remove(&sid) {
                if let Some(a) = self.accounts.get_mut(&r.subscriber) {
                    a.reserved -= r.amount;
                }
                let req = CreditControlRequest::new(
                    sid.clone(),
                    String::new(),
                    String::new(),
                    RequestType::Termination,
                    r.last_number,
                );
                out.push(self.journal(
                    &req,
                    "expire",
                    &r.subscriber,
                    r.amount,
                    ResultCode::SUCCESS,
                    None,
                ));
            }
        }
        out
    }

    /// Applies one CCR and returns the answer.
    pub fn apply(&mut self, req: &CreditControlRequest, now: Instant) -> Applied {
        let style = req.style;
        if let Some(prev) = self
            .answered
            .get(&(req.session_id.clone(), req.request_number))
        {
            return Applied {
                answer: prev.answer.clone(),
                style: prev.style,
                journaled: Vec::new(),
                duplicate: true,
            };
        }
        // This session's reservation, if past Tcc, is released first (the others are left to
        // the periodic supervision: no scan of every reservation per request).
        let mut journaled = self.expire_session(&req.session_id, now);
        let answer = self.decide(req, now, &mut journaled);
        self.remember(&req.session_id, req.request_number, answer.clone(), style);
        Applied {
            answer,
            style,
            journaled,
            duplicate: false,
        }
    }

    fn fail(
        req: &CreditControlRequest,
        rc: ResultCode,
        failed: Option<FailedAvp>,
    ) -> CreditControlAnswer {
        let mut a = CreditControlAnswer::new(req, rc);
        a.failed_avp = failed;
        if req.style == UnitsStyle::Mscc && matches!(rc.0, 4010 | 4012 | 5031) {
            // 3GPP style: the service-level failure travels in the MSCC.
            a.result_code = ResultCode::SUCCESS;
            a.mscc.push(MsccAnswer {
                result_code: Some(rc),
                service_identifier: req.service_identifier,
                rating_group: req.rating_group,
                ..MsccAnswer::default()
            });
        }
        a
    }

    fn success(
        &self,
        req: &CreditControlRequest,
        granted: Option<Money>,
        validity: Option<u32>,
    ) -> CreditControlAnswer {
        let mut a = CreditControlAnswer::new(req, ResultCode::SUCCESS);
        let units = granted.map(Units::money);
        match req.style {
            UnitsStyle::CommandLevel => {
                a.granted = units;
                a.validity_time = validity;
            }
            UnitsStyle::Mscc => a.mscc.push(MsccAnswer {
                result_code: Some(ResultCode::SUCCESS),
                granted: units,
                validity_time: validity,
                service_identifier: req.service_identifier,
                rating_group: req.rating_group,
                final_unit_action: None,
            }),
        }
        a
    }

    fn decide(
        &mut self,
        req: &CreditControlRequest,
        now: Instant,
        journaled: &mut Vec<JournalEntry>,
    ) -> CreditControlAnswer {
        let money_avp = |m: &Money| FailedAvp {
            code: AvpCode::CC_MONEY,
            vendor: VendorId::IETF,
            avp: m.to_avp().ok(),
        };
        // Subscriber: from the request, or from the session for UPDATE / TERMINATION.
        let subscriber = match (&req.subscription, self.reservations.get(&req.session_id)) {
            (Some(s), _) => s.key(),
            (None, Some(r)) => r.subscriber.clone(),
            (None, None) => {
                return Self::fail(
                    req,
                    ResultCode::MISSING_AVP,
                    Some(FailedAvp {
                        code: AvpCode::SUBSCRIPTION_ID,
                        vendor: VendorId::IETF,
                        avp: Some(grouped_example(AvpCode::SUBSCRIPTION_ID)),
                    }),
                );
            }
        };
        if !self.accounts.contains_key(&subscriber) {
            match self.unknown_users.clone() {
                UnknownUsers::Reject
                    if !matches!(
                        req.request_type,
                        RequestType::Update | RequestType::Termination
                    ) =>
                {
                    return Self::fail(req, ResultCode::USER_UNKNOWN, None);
                }
                UnknownUsers::Create(balance, currency) => {
                    self.open_account(&subscriber, balance, currency)
                }
                UnknownUsers::Reject => {}
            }
        }
        let Some(currency) = self.accounts.get(&subscriber).map(|a| a.currency) else {
            return Self::fail(req, ResultCode::USER_UNKNOWN, None);
        };
        let requested = req.requested.as_ref().and_then(|u| u.money);
        let used = req.used.as_ref().and_then(|u| u.money);
        for m in requested.iter().chain(used.iter()) {
            if m.currency != currency {
                return Self::fail(req, ResultCode::RATING_FAILED, Some(money_avp(m)));
            }
            if m.amount < Decimal::ZERO {
                return Self::fail(req, ResultCode::INVALID_AVP_VALUE, Some(money_avp(m)));
            }
        }
        // RFC 6733 section 7.5: the Failed-AVP of a missing AVP holds an example of it.
        let missing_money = || FailedAvp {
            code: AvpCode::REQUESTED_SERVICE_UNIT,
            vendor: VendorId::IETF,
            avp: Some(grouped_example(AvpCode::REQUESTED_SERVICE_UNIT)),
        };
        match req.request_type {
            RequestType::Event => {
                let action = req
                    .requested_action
                    .unwrap_or(RequestedAction::DirectDebiting);
                match action {
                    RequestedAction::DirectDebiting => {
                        let Some(m) = requested else {
                            return Self::fail(req, ResultCode::MISSING_AVP, Some(missing_money()));
                        };
                        let acct = self.accounts.get_mut(&subscriber);
                        match acct {
                            Some(a) if a.available() >= m.amount => {
                                a.balance -= m.amount;
                                journaled.push(self.journal(
                                    req,
                                    "debit",
                                    &subscriber,
                                    m.amount,
                                    ResultCode::SUCCESS,
                                    Some(m.amount),
                                ));
                                self.success(req, Some(m), None)
                            }
                            _ => Self::fail(req, ResultCode::CREDIT_LIMIT_REACHED, None),
                        }
                    }
                    RequestedAction::RefundAccount => {
                        let Some(m) = requested else {
                            return Self::fail(req, ResultCode::MISSING_AVP, Some(missing_money()));
                        };
                        if let Some(a) = self.accounts.get_mut(&subscriber) {
                            a.balance += m.amount;
                        }
                        journaled.push(self.journal(
                            req,
                            "refund",
                            &subscriber,
                            m.amount,
                            ResultCode::SUCCESS,
                            Some(m.amount),
                        ));
                        self.success(req, Some(m), None)
                    }
                    RequestedAction::CheckBalance => {
                        let enough = match (requested, self.accounts.get(&subscriber)) {
                            (Some(m), Some(a)) => a.available() >= m.amount,
                            (None, Some(a)) => a.available() > Decimal::ZERO,
                            _ => false,
                        };
                        let mut a = CreditControlAnswer::new(req, ResultCode::SUCCESS);
                        a.check_balance = Some(if enough {
                            CheckBalanceResult::EnoughCredit
                        } else {
                            CheckBalanceResult::NoCredit
                        });
                        a
                    }
                    RequestedAction::PriceEnquiry => {
                        let price = req
                            .service_identifier
                            .and_then(|s| self.prices.get(&s).copied())
                            .or(requested);
                        match price {
                            Some(p) => {
                                let mut a = CreditControlAnswer::new(req, ResultCode::SUCCESS);
                                a.cost = Some((p, Some("per event".into())));
                                a
                            }
                            None => Self::fail(req, ResultCode::RATING_FAILED, None),
                        }
                    }
                }
            }
            RequestType::Initial => {
                let Some(m) = requested else {
                    return Self::fail(req, ResultCode::MISSING_AVP, Some(missing_money()));
                };
                if self.reservations.contains_key(&req.session_id) {
                    return Self::fail(req, ResultCode::UNABLE_TO_COMPLY, None);
                }
                let Some(a) = self.accounts.get_mut(&subscriber) else {
                    return Self::fail(req, ResultCode::USER_UNKNOWN, None);
                };
                if a.available() < m.amount {
                    return Self::fail(req, ResultCode::CREDIT_LIMIT_REACHED, None);
                }
                a.reserved += m.amount;
                self.reservations.insert(
                    req.session_id.clone(),
                    Reservation {
                        subscriber: subscriber.clone(),
                        amount: m.amount,
                        last_number: req.request_number,
                        expires: now + Duration::from_secs(u64::from(self.validity) * 2),
                    },
                );
                journaled.push(self.journal(
                    req,
                    "reserve",
                    &subscriber,
                    m.amount,
                    ResultCode::SUCCESS,
                    Some(m.amount),
                ));
                self.success(req, Some(m), Some(self.validity))
            }
            RequestType::Update | RequestType::Termination => {
                let Some(r) = self.reservations.get(&req.session_id).cloned() else {
                    return Self::fail(req, ResultCode::UNKNOWN_SESSION_ID, None);
                };
                if req.request_number <= r.last_number {
                    // An older request number that is not a known duplicate.
                    return Self::fail(req, ResultCode::INVALID_AVP_VALUE, None);
                }
                let used_amount = used.map(|u| u.amount).unwrap_or_default();
                let Some(acct) = self.accounts.get_mut(&r.subscriber) else {
                    return Self::fail(req, ResultCode::USER_UNKNOWN, None);
                };
                // The reservation covers the use; beyond it, only what else is available.
                if used_amount > r.amount + acct.available() {
                    return Self::fail(req, ResultCode::CREDIT_LIMIT_REACHED, None);
                }
                acct.reserved -= r.amount;
                acct.balance -= used_amount;
                if req.request_type == RequestType::Termination {
                    self.reservations.remove(&req.session_id);
                    if used_amount > Decimal::ZERO {
                        journaled.push(self.journal(
                            req,
                            "commit",
                            &r.subscriber,
                            used_amount,
                            ResultCode::SUCCESS,
                            None,
                        ));
                    }
                    let released = (r.amount - used_amount).max(Decimal::ZERO);
                    journaled.push(self.journal(
                        req,
                        "release",
                        &r.subscriber,
                        released,
                        ResultCode::SUCCESS,
                        None,
                    ));
                    return self.success(req, None, None);
                }
                // UPDATE: the new request replaces the reservation.
                let new_amount = requested.map(|m| m.amount).unwrap_or_default();
                let available = acct.available();
                let grant = new_amount.min(available.max(Decimal::ZERO));
                acct.reserved += grant;
                self.reservations.insert(
                    req.session_id.clone(),
                    Reservation {
                        amount: grant,
                        last_number: req.request_number,
                        expires: now + Duration::from_secs(u64::from(self.validity) * 2),
                        ..r.clone()
                    },
                );
                journaled.push(self.journal(
                    req,
                    "commit",
                    &r.subscriber,
                    used_amount,
                    ResultCode::SUCCESS,
                    Some(grant),
                ));
                if requested.is_some() && grant < new_amount {
                    return Self::fail(req, ResultCode::CREDIT_LIMIT_REACHED, None);
                }
                self.success(req, Some(Money::new(grant, currency)), Some(self.validity))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credit_control::SubscriptionId;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn eur() -> Currency {
        Currency::from_code("EUR").unwrap()
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::new(UnknownUsers::Reject, eur(), 900);
        l.open_account("tel:34671999000", d("10.00"), eur());
        l
    }

    fn req(sid: &str, t: RequestType, n: u32) -> CreditControlRequest {
        let mut r = CreditControlRequest::new(sid.into(), "r".into(), "c".into(), t, n);
        r.subscription = Some(SubscriptionId::parse("tel:+34671999000").unwrap());
        r.style = UnitsStyle::CommandLevel;
        r
    }

    fn money(s: &str) -> Option<Units> {
        Some(Units::money(Money::new(d(s), eur())))
    }

    #[test]
    fn debit_refund_and_limit() {
        let mut l = ledger();
        let now = Instant::now();
        let mut r = req("s1", RequestType::Event, 0);
        r.requested_action = Some(RequestedAction::DirectDebiting);
        r.requested = money("4.99");
        assert_eq!(l.apply(&r, now).answer.result_code, ResultCode::SUCCESS);
        assert_eq!(l.account("tel:34671999000").unwrap().balance, d("5.01"));
        let mut r2 = r.clone();
        r2.session_id = "s2".into();
        r2.requested = money("5.02");
        assert_eq!(
            l.apply(&r2, now).answer.result_code,
            ResultCode::CREDIT_LIMIT_REACHED
        );
        let mut rf = req("s3", RequestType::Event, 0);
        rf.requested_action = Some(RequestedAction::RefundAccount);
        rf.requested = money("0.99");
        l.apply(&rf, now);
        assert_eq!(l.account("tel:34671999000").unwrap().balance, d("6.00"));
        assert_eq!(l.journal.len(), 2);
    }

    #[test]
    fn duplicate_detection_keeps_the_last_generations() {
        let mut d = Dedup::new(3);
        let a = |n: u32| {
            let r = req("s", RequestType::Event, n);
            Arc::new(Answered {
                answer: CreditControlAnswer::new(&r, ResultCode::SUCCESS),
                style: UnitsStyle::CommandLevel,
            })
        };
        for n in 0..8 {
            d.insert(("s".into(), n), a(n));
        }
        // Generations of 3: 6 and 7 are current, 3..=5 previous, 0..=2 forgotten.
        for n in 0..3 {
            assert!(d.get(&("s".into(), n)).is_none(), "{n}");
        }
        for n in 3..8 {
            assert!(d.get(&("s".into(), n)).is_some(), "{n}");
        }
        assert!(d.current.capacity() >= 3, "sized once");
    }

    #[test]
    fn duplicates_are_not_applied_twice() {
        let mut l = ledger();
        let now = Instant::now();
        let mut r = req("s1", RequestType::Event, 0);
        r.requested_action = Some(RequestedAction::DirectDebiting);
        r.requested = money("1.00");
        let first = l.apply(&r, now);
        let again = l.apply(&r, now);
        assert!(again.duplicate);
        assert_eq!(again.answer, first.answer);
        assert_eq!(l.account("tel:34671999000").unwrap().balance, d("9.00"));
    }

    #[test]
    fn reservation_lifecycle() {
        let mut l = ledger();
        let now = Instant::now();
        let mut i = req("s", RequestType::Initial, 0);
        i.requested = money("6.00");
        assert_eq!(
            l.apply(&i, now)
                .answer
                .granted
                .unwrap()
                .money
                .unwrap()
                .amount,
            d("6.00")
        );
        let a = l.account("tel:34671999000").unwrap();
        assert_eq!((a.balance, a.available()), (d("10.00"), d("4.00")));
        let mut u = req("s", RequestType::Update, 1);
        u.used = money("2.50");
        u.requested = money("3.50");
        l.apply(&u, now);
        let a = l.account("tel:34671999000").unwrap();
        assert_eq!((a.balance, a.reserved), (d("7.50"), d("3.50")));
        let mut t = req("s", RequestType::Termination, 2);
        t.used = money("1.00");
        l.apply(&t, now);
        let a = l.account("tel:34671999000").unwrap();
        assert_eq!((a.balance, a.reserved), (d("6.50"), d("0")));
        assert_eq!(
            l.apply(&req("gone", RequestType::Update, 1), now)
                .answer
                .result_code,
            ResultCode::UNKNOWN_SESSION_ID
        );
    }

    #[test]
    fn expiry_and_replay_rebuild_the_books() {
        let mut l = ledger();
        let now = Instant::now();
        let mut i = req("s", RequestType::Initial, 0);
        i.requested = money("3.00");
        l.apply(&i, now);
        let mut e = req("e", RequestType::Event, 0);
        e.requested_action = Some(RequestedAction::DirectDebiting);
        e.requested = money("1.00");
        l.apply(&e, now);
        let journal: Vec<_> = l.journal.iter().cloned().collect();
        let mut again = ledger();
        again.replay(journal);
        let a = again.account("tel:34671999000").unwrap();
        assert_eq!((a.balance, a.reserved), (d("9.00"), d("3.00")));
        assert!(again.apply(&e, now).duplicate, "dedup survives the replay");
        let expired = l.expire(now + Duration::from_secs(1801));
        assert_eq!(expired.len(), 1);
        assert_eq!(l.account("tel:34671999000").unwrap().reserved, d("0"));
    }
}
