//! The top-up use cases over [`Charging`] and the store: create (one-time or automatic),
//! read (a pending outcome brought up to date from the charging record), list, cancel, the
//! periods of automatic top-ups, and the balance query. Every function takes `now`: the
//! handlers pass the wall clock, the scheduler its injected [`super::schedule::Clock`].
//!
//! ```text
//! POST  -> lock(id) -> resource `created` (due now: the background task's safety net)  durable
//!       -> Charging::refund(key "tmf654:topup:<id>")   CCR EVENT REFUND_ACCOUNT, once per key
//!       -> credit ledger entry (completed only) -> resource completed | failed | created
//! period n of parent P: child id "P-p<n>", key "tmf654:topup:P-p<n>": a restart between the
//!       CCR and the records re-runs the same key, and Charging answers the recorded outcome
//!       (or re-sends the recorded CCR with the T flag); the OCS never sees a second top-up
//! ```
//!
//! Resources of kind `tmf654.topup` carry a `due_ms` whenever the gateway still has work on
//! them: an active automatic top-up (its next period), and a top-up whose outcome is pending
//! or that reached no OCS (retried until `tmf654.retry_window` after its first attempt). The
//! scheduler runs whatever is due. One lock per resource id ([`crate::charging::locks`]:
//! in-process, and a lease in the store when several gateway instances share it) keeps
//! handlers and the schedulers of every instance from working on the same top-up at once:
//! exactly one instance runs a due period (and its charging key keeps even a second attempt
//! from crediting twice).

use std::collections::BTreeMap;
use std::sync::Arc;

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::charging::locks::Held;

use super::error::{Context, Mapped, TmfError, from_failure};
use super::model::{
    BalanceCheck, Bucket, LogicalResourceRef, Quantity, RelatedTopupBalance, TopupBalance,
    TopupLedger, TopupStatus,
};
use super::schedule::{Schedule, rfc3339, to_ms};
use super::validate::NewTopup;
use crate::charging::{ChargeInfo, Charging, Key, OpResult};
use crate::credit_control::{
    CheckBalanceResult, EventRequest, Money, Outcome, RequestedAction, ServiceParameter,
    ServiceParameterType, SubscriptionId,
};
use crate::store::{ResourceFilter, ResourceRow, Store};

/// The base path of the family.
pub const BASE: &str = "/tmf-api/prepayBalanceManagement/v4";
/// Resource kind of top-ups (one-time, automatic parents and their runs).
pub const KIND: &str = "tmf654.topup";
/// Resource kind of the ledger entries: one per completed top-up, under its bucket.
pub const CREDIT_KIND: &str = "tmf654.credit";
/// Most periods of one automatic top-up run in one pass (catching up after downtime); the
/// rest follow on the next pass.
const MAX_CATCH_UP: usize = 64;

pub fn topup_href(id: &str) -> String {
    format!("{BASE}/topupBalance/{id}")
}

pub fn bucket_href(id: &str) -> String {
    format!("{BASE}/bucket/{id}")
}

/// The gateway's bucket id of an MSISDN (digits, no `+`).
pub fn bucket_id(msisdn: &str) -> String {
    format!("msisdn-{msisdn}")
}

/// What is stored for a top-up: the TMF view and what the gateway needs to run it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub view: TopupBalance,
    pub app: String,
    /// The canonical end user (`tel:34671999000`).
    pub subscriber: String,
    pub msisdn: String,
    pub amount: Decimal,
    pub currency: String,
    /// The charging idempotency key (`tmf654:topup:<id>`).
    pub key: String,
    /// Of the create request: the same Idempotency-Key with another request is refused.
    pub request_hash: String,
    pub first_attempt_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The error answered for it (5030, 5031...), answered again to a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TmfError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_reason: Option<String>,
}

impl Record {
    fn is_final(&self) -> bool {
        self.view.status != TopupStatus::Created
    }

    /// When the gateway must next act on it.
    fn due_ms(&self, now_ms: i64) -> Option<i64> {
        match (&self.schedule, self.view.status) {
            (_, TopupStatus::Failed | TopupStatus::Cancelled | TopupStatus::Completed) => None,
            (Some(s), TopupStatus::Created) => s.next_due().or(Some(now_ms)),
            (None, TopupStatus::Created) => Some(now_ms),
        }
    }

    fn row(&self, now_ms: i64) -> ResourceRow {
        ResourceRow {
            id: self.view.id.clone(),
            app: self.app.clone(),
            kind: KIND.into(),
            state: self.view.status.name().into(),
            parent: self.parent.clone(),
            due_ms: self.due_ms(now_ms),
            body: serde_json::to_string(self).unwrap_or_default(),
            created_ms: self.first_attempt_ms,
            updated_ms: now_ms,
        }
    }

    fn decode(row: &ResourceRow) -> Result<Self, TmfError> {
        serde_json::from_str(&row.body).map_err(|e| {
            warn!(id = %row.id, error = %e, "unreadable top-up record");
            TmfError::internal(format!("the record of top-up \"{}\" is unreadable", row.id))
        })
    }
}

/// The result of a create: the record, whether it answers an earlier identical request, and
/// the error to answer instead of 201 (5030, 5031, a malformed-request refusal).
#[derive(Debug)]
pub(crate) struct Created {
    pub record: Record,
    pub replayed: bool,
}

/// What one pass of the scheduler did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Due resources looked at.
    pub due: usize,
    /// Periods of automatic top-ups run (each a child top-up).
    pub periods: usize,
    /// Pending or retried top-ups that reached a final status.
    pub settled: usize,
    /// Due resources skipped because a request was working on them.
    pub busy: usize,
}

// ---- one lock per resource id ---------------------------------------------------------------

/// How long a request waits for a top-up another request (or the scheduler) works on.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Topups {
    /// The lock of top-up `id`, across the instances sharing the store (409 after
    /// [`LOCK_WAIT`]).
    async fn lock(&self, id: &str) -> Result<Held, TmfError> {
        match self
            .charging
            .locks()
            .hold(&format!("tmf654:{id}"), LOCK_WAIT)
            .await
        {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(TmfError::conflict(
                "IN_PROGRESS",
                "another request works on this top-up; retry",
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    /// The lock of top-up `id` if nobody holds it now (here or in another instance).
    async fn try_lock(&self, id: &str) -> Option<Held> {
        self.charging
            .locks()
            .try_hold(&format!("tmf654:{id}"))
            .await
            .ok()
            .flatten()
    }
}

// ---- the use cases ---------------------------------------------------------------------------

/// Top-ups over the charging service and its store (cheap to clone).
#[derive(Clone)]
pub struct Topups {
    charging: Arc<Charging>,
    store: Store,
}

impl std::fmt::Debug for Topups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topups").finish_non_exhaustive()
    }
}

fn store_error(e: impl std::fmt::Display) -> TmfError {
    TmfError::internal(format!(
        "the gateway could not read or write its records ({e}); retry with the same \
         Idempotency-Key"
    ))
}

impl Topups {
    pub fn new(charging: Arc<Charging>) -> Self {
        let store = charging.store().clone();
        Self { charging, store }
    }

    /// Records the top-up's new state, and in the same commit the events it causes for the
    /// listeners of its application ([`super::hub`]): a create event when it is new, a state
    /// change event when its status changed. The caller holds the top-up's lock, so the
    /// status read here is the one recorded before this write.
    async fn put(&self, rec: &Record, now_ms: i64) -> Result<(), TmfError> {
        let prev = self
            .store
            .resource(&rec.view.id)
            .await
            .map_err(store_error)?
            .filter(|r| r.kind == KIND)
            .map(|r| TopupStatus::from_name(&r.state).unwrap_or(TopupStatus::Created));
        let events =
            super::hub::topup_events(&self.store, &rec.app, &rec.view, prev, now_ms).await?;
        self.store
            .put_resource_with_events(rec.row(now_ms), events)
            .await
            .map_err(store_error)
    }

    /// The caller's top-up, or 404 (another application's is not found either).
    async fn load(&self, app: &str, id: &str) -> Result<Record, TmfError> {
        let missing = || TmfError::not_found(format!("topupBalance \"{}\"", clip(id)));
        let row = self
            .store
            .resource(id)
            .await
            .map_err(store_error)?
            .filter(|r| r.kind == KIND && r.app == app)
            .ok_or_else(missing)?;
        Record::decode(&row)
    }

    /// Creates a top-up and runs it (a one-time top-up, or the periods of an automatic one
    /// that are due now). With an Idempotency-Key the id is derived from it: a retry finds
    /// the first request's top-up (and its outcome) instead of creating another.
    pub(crate) async fn create(
        &self,
        app: &str,
        idempotency_key: Option<&str>,
        new: NewTopup,
        now: OffsetDateTime,
    ) -> Result<Created, TmfError> {
        let now_ms = to_ms(now);
        let id = match idempotency_key {
            Some(k) => derived_id(app, k),
            None => random_id(now_ms),
        };
        let _held = self.lock(&id).await?;
        if let Some(row) = self.store.resource(&id).await.map_err(store_error)? {
            let rec = Record::decode(&row)?;
            if row.kind != KIND || rec.app != app || rec.request_hash != new.hash {
                return Err(TmfError::conflict(
                    "CONFLICT",
                    "Idempotency-Key: already used for a different request; nothing was \
                     topped up",
                ));
            }
            let rec = self.settle(rec, now, false, None).await?;
            return Ok(Created {
                record: rec,
                replayed: true,
            });
        }
        let rec = new.into_record(id, app, now);
        self.put(&rec, now_ms).await?;
        let rec = if rec.schedule.is_some() {
            self.run_periods(rec, now, None).await?
        } else {
            self.execute(rec, now, None).await?
        };
        Ok(Created {
            record: rec,
            replayed: false,
        })
    }

    /// The caller's top-up; a pending one is first brought up to date from its charging
    /// record (no request is sent from here: the charging resolver and the scheduler do).
    pub(crate) async fn get(
        &self,
        app: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Record, TmfError> {
        let rec = self.load(app, id).await?;
        if rec.is_final() || rec.schedule.is_some() {
            return Ok(rec);
        }
        // A request or the scheduler working on it now will record its outcome: a read does
        // not wait for that (up to Tx), it answers what is recorded.
        let Some(_held) = self.try_lock(id).await else {
            return Ok(rec);
        };
        let rec = self.load(app, id).await?;
        self.settle(rec, now, false, None).await
    }

    /// The caller's top-ups, newest first, and how many there are in all.
    pub(crate) async fn list(
        &self,
        app: &str,
        status: Option<TopupStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Record>, usize), TmfError> {
        let (rows, total) = self
            .store
            .resources(ResourceFilter {
                app: Some(app.to_string()),
                kind: Some(KIND.into()),
                state: status.map(|s| s.name().to_string()),
                offset,
                limit,
                ..ResourceFilter::default()
            })
            .await
            .map_err(store_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(Record::decode(row)?);
        }
        Ok((out, total))
    }

    /// Stops an automatic top-up: no further period runs (one running now finishes: a sent
    /// request cannot be taken back). Cancelling again answers the cancelled top-up.
    pub(crate) async fn cancel(
        &self,
        app: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Record, TmfError> {
        let _held = self.lock(id).await?;
        let mut rec = self.load(app, id).await?;
        if rec.schedule.is_none() {
            return Err(TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "topupBalance \"{}\" is a one-time top-up or a period's run ({}): only \
                     an automatic top-up can be cancelled; a top-up the OCS applied is not \
                     undone",
                    clip(id),
                    rec.view.status.name()
                ),
            ));
        }
        match rec.view.status {
            TopupStatus::Cancelled => Ok(rec),
            TopupStatus::Created => {
                rec.view.status = TopupStatus::Cancelled;
                self.put(&rec, to_ms(now)).await?;
                info!(topup = %id, "automatic top-up cancelled");
                Ok(rec)
            }
            s => Err(TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "automatic topupBalance \"{}\" is already {}: nothing left to cancel",
                    clip(id),
                    s.name()
                ),
            )),
        }
    }

    /// Sends the top-up (idempotent per key) and records what came of it.
    async fn execute(
        &self,
        rec: Record,
        now: OffsetDateTime,
        retry_window_ms: Option<i64>,
    ) -> Result<Record, TmfError> {
        let (sub, money) = subscriber_and_money(&rec)?;
        let info = ChargeInfo {
            description: rec.view.description.clone(),
            code: None,
            reference_code: Some(rec.view.id.clone()),
            merchant: None,
        };
        let key = Key::new(&rec.app, Some(&rec.key));
        let uri = rec.subscriber.clone();
        let result = self
            .charging
            .refund(&key, &sub, &uri, money, &info, None)
            .await;
        self.apply(rec, result, now, retry_window_ms).await
    }

    /// Records the outcome of a top-up's charging call.
    async fn apply(
        &self,
        mut rec: Record,
        result: OpResult,
        now: OffsetDateTime,
        retry_window_ms: Option<i64>,
    ) -> Result<Record, TmfError> {
        let now_ms = to_ms(now);
        match result {
            Ok(_) => {
                // The ledger entry first: a completed top-up always has one (written again,
                // identically, if the process stops before the top-up is recorded).
                self.store
                    .put_resource(credit_row(&rec, now_ms))
                    .await
                    .map_err(store_error)?;
                rec.view.status = TopupStatus::Completed;
                rec.view.confirmation_date = Some(rfc3339(now_ms));
                rec.view.reason = rec.client_reason.clone();
                rec.error = None;
            }
            Err(f) => match from_failure(Context::Topup, &f) {
                Mapped::Failed { reason, error, .. } => {
                    rec.view.status = TopupStatus::Failed;
                    rec.view.reason = Some(reason);
                    rec.error = error;
                }
                Mapped::Pending { reason } => {
                    rec.view.status = TopupStatus::Created;
                    rec.view.reason = Some(reason);
                }
                Mapped::Retry { reason } => {
                    let give_up = retry_window_ms.map(|w| rec.first_attempt_ms.saturating_add(w));
                    if give_up.is_some_and(|g| now_ms >= g) {
                        rec.view.status = TopupStatus::Failed;
                        rec.view.reason = Some(format!(
                            "no OCS reachable within the retry window ({f}); nothing was \
                             topped up"
                        ));
                    } else {
                        rec.view.status = TopupStatus::Created;
                        rec.view.reason = Some(reason);
                    }
                }
                // The outcome is not known either: left as it is (due), answered as an error.
                Mapped::Error(e) if matches!(f, crate::charging::Failure::Store { .. }) => {
                    return Err(e);
                }
                Mapped::Error(e) => {
                    rec.view.status = TopupStatus::Failed;
                    rec.view.reason = Some(e.message.clone());
                    rec.error = Some(e);
                }
            },
        }
        self.put(&rec, now_ms).await?;
        Ok(rec)
    }

    /// Brings a pending one-time top-up (or a period's run) up to date: a final charging
    /// outcome is recorded; when `send` (the scheduler), a top-up that reached no OCS, or
    /// whose request was never recorded, is sent again with the same key.
    async fn settle(
        &self,
        rec: Record,
        now: OffsetDateTime,
        send: bool,
        retry_window_ms: Option<i64>,
    ) -> Result<Record, TmfError> {
        if rec.is_final() || rec.schedule.is_some() {
            return Ok(rec);
        }
        let op = self
            .store
            .operation_by_key(&rec.app, &rec.key)
            .await
            .map_err(store_error)?;
        match op {
            Some(op) if op.state.is_final() => {
                let Some(result) = op
                    .outcome
                    .as_deref()
                    .and_then(|o| serde_json::from_str::<OpResult>(o).ok())
                else {
                    return Ok(rec);
                };
                self.apply(rec, result, now, None).await
            }
            // Sent, outcome not known yet: the charging resolver re-sends it (T flag).
            Some(op)
                if matches!(
                    op.state,
                    crate::store::OpState::Pending | crate::store::OpState::Unknown
                ) =>
            {
                Ok(rec)
            }
            // Nothing reached an OCS (or the process stopped before recording the request).
            _ if send => self.execute(rec, now, retry_window_ms).await,
            _ => Ok(rec),
        }
    }

    /// Runs the periods of an automatic top-up that are due at `now`, each once, in order.
    async fn run_periods(
        &self,
        mut rec: Record,
        now: OffsetDateTime,
        retry_window_ms: Option<i64>,
    ) -> Result<Record, TmfError> {
        let now_ms = to_ms(now);
        let mut ran = 0usize;
        loop {
            if rec.view.status != TopupStatus::Created {
                break;
            }
            let Some(schedule) = rec.schedule.clone() else {
                break;
            };
            let n = schedule.next;
            let Some(due) = schedule.due(n) else {
                rec.view.status = TopupStatus::Completed;
                rec.view.confirmation_date = Some(rfc3339(now_ms));
                info!(topup = %rec.view.id, periods = n - 1, "automatic top-up completed");
                break;
            };
            if due > now_ms || ran >= MAX_CATCH_UP {
                break;
            }
            let child = self.run_period(&rec, n, due, now, retry_window_ms).await?;
            ran += 1;
            if let Some(s) = rec.schedule.as_mut() {
                s.next = n + 1;
            }
            if !rec.view.balance_topup.iter().any(|b| b.id == child.view.id) {
                rec.view.balance_topup.push(RelatedTopupBalance {
                    id: child.view.id.clone(),
                    href: child.view.href.clone(),
                    role: "child".into(),
                });
            }
            if child.view.status == TopupStatus::Failed
                && child
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == "5030" || e.code == "5031")
            {
                rec.view.status = TopupStatus::Failed;
                rec.view.reason = Some(format!(
                    "period {n}: {}; no further period runs",
                    child.view.reason.as_deref().unwrap_or("failed")
                ));
                rec.error = child.error.clone();
            }
            // Progress is durable period by period.
            self.put(&rec, now_ms).await?;
        }
        self.put(&rec, now_ms).await?;
        Ok(rec)
    }

    /// Period `n` of `parent` (due at `due`): its child top-up, created and sent once.
    async fn run_period(
        &self,
        parent: &Record,
        n: u32,
        due: i64,
        now: OffsetDateTime,
        retry_window_ms: Option<i64>,
    ) -> Result<Record, TmfError> {
        let id = format!("{}-p{n}", parent.view.id);
        let _held = self.lock(&id).await?;
        if let Some(row) = self.store.resource(&id).await.map_err(store_error)? {
            // Run before (a restart between the child and the parent's progress): its
            // outcome stands, or is learnt with the same key.
            let child = Record::decode(&row)?;
            return self.settle(child, now, true, retry_window_ms).await;
        }
        let now_ms = to_ms(now);
        let mut view = parent.view.clone();
        view.id = id.clone();
        view.href = topup_href(&id);
        view.status = TopupStatus::Created;
        view.reason = parent.client_reason.clone();
        view.requested_date = rfc3339(due);
        view.confirmation_date = None;
        view.is_auto_topup = false;
        view.recurring_period = None;
        view.number_of_periods = None;
        view.valid_for = None;
        view.balance_topup = vec![RelatedTopupBalance {
            id: parent.view.id.clone(),
            href: parent.view.href.clone(),
            role: "parent".into(),
        }];
        let child = Record {
            view,
            app: parent.app.clone(),
            subscriber: parent.subscriber.clone(),
            msisdn: parent.msisdn.clone(),
            amount: parent.amount,
            currency: parent.currency.clone(),
            key: charging_key(&id),
            request_hash: parent.request_hash.clone(),
            first_attempt_ms: now_ms,
            schedule: None,
            parent: Some(parent.view.id.clone()),
            error: None,
            client_reason: parent.client_reason.clone(),
        };
        self.put(&child, now_ms).await?;
        info!(topup = %parent.view.id, period = n, child = %id, "automatic top-up period");
        self.execute(child, now, retry_window_ms).await
    }

    /// One pass over what is due at `now` (at most `batch` resources).
    pub async fn run_due(&self, now: OffsetDateTime, retry_window_ms: i64, batch: usize) -> Pass {
        let now_ms = to_ms(now);
        let mut pass = Pass::default();
        let rows = match self
            .store
            .resources(ResourceFilter {
                kind: Some(KIND.into()),
                due_before_ms: Some(now_ms),
                limit: batch,
                ..ResourceFilter::default()
            })
            .await
        {
            Ok((rows, _)) => rows,
            Err(e) => {
                warn!(error = %e, "due top-ups not readable");
                return pass;
            }
        };
        for row in rows {
            pass.due += 1;
            let Some(_held) = self.try_lock(&row.id).await else {
                pass.busy += 1;
                continue;
            };
            // Read again under the lock: a request may have moved it on.
            let row = match self.store.resource(&row.id).await {
                Ok(Some(r)) if r.due_ms.is_some_and(|d| d <= now_ms) => r,
                _ => continue,
            };
            let rec = match Record::decode(&row) {
                Ok(r) => r,
                Err(_) => {
                    // Not due again until someone looks at it (it is logged).
                    let mut r = row.clone();
                    r.due_ms = None;
                    let _ = self.store.put_resource(r).await;
                    continue;
                }
            };
            let result = if rec.schedule.is_some() {
                let before = rec.schedule.as_ref().map(|s| s.next).unwrap_or(0);
                self.run_periods(rec, now, Some(retry_window_ms))
                    .await
                    .inspect(|r| {
                        let after = r.schedule.as_ref().map(|s| s.next).unwrap_or(0);
                        pass.periods += after.saturating_sub(before) as usize;
                    })
            } else {
                self.settle(rec, now, true, Some(retry_window_ms))
                    .await
                    .inspect(|r| {
                        if r.is_final() {
                            pass.settled += 1;
                        }
                    })
            };
            if let Err(e) = result {
                warn!(topup = %row.id, error = %e, "due top-up not processed; next pass");
            }
        }
        pass
    }

    /// The caller's view of a subscriber's monetary bucket: CHECK_BALANCE for `amount` when
    /// given (RFC 8506 section 5.x: ENOUGH_CREDIT / NO_CREDIT, never a number), and the
    /// ledger of completed top-ups this application made through the gateway.
    pub(crate) async fn bucket(
        &self,
        app: &str,
        msisdn: &str,
        amount: Option<Money>,
        now: OffsetDateTime,
    ) -> Result<Bucket, TmfError> {
        let id = bucket_id(msisdn);
        let balance_check = match amount {
            Some(m) => Some(self.check_balance(app, msisdn, m, now).await?),
            None => None,
        };
        let (rows, _) = self
            .store
            .resources(ResourceFilter {
                app: Some(app.to_string()),
                kind: Some(CREDIT_KIND.into()),
                parent: Some(id.clone()),
                ..ResourceFilter::default()
            })
            .await
            .map_err(store_error)?;
        let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut count = 0;
        for row in &rows {
            match serde_json::from_str::<Quantity>(&row.body) {
                Ok(q) => {
                    *totals.entry(q.units).or_default() += q.amount;
                    count += 1;
                }
                Err(e) => warn!(entry = %row.id, error = %e, "unreadable ledger entry"),
            }
        }
        Ok(Bucket {
            href: bucket_href(&id),
            name: format!("monetary balance of {msisdn}"),
            description: "RFC 4006 credit-control gives no numeric balance: remainingValue is not \
                          returned. balanceCheck says whether the account covers the amount \
                          asked about (CHECK_BALANCE); topupLedger sums the completed top-ups \
                          this application made through the gateway."
                .into(),
            id,
            usage_type: "monetary".into(),
            logical_resource: vec![LogicalResourceRef {
                id: Some(msisdn.to_string()),
                value: Some(msisdn.to_string()),
                referred_type: Some("MSISDN".into()),
                ..LogicalResourceRef::default()
            }],
            balance_check,
            topup_ledger: TopupLedger {
                total: totals
                    .into_iter()
                    .map(|(units, amount)| Quantity { amount, units })
                    .collect(),
                count,
            },
            kind: "GatewayMonetaryBucket".into(),
            base_type: "Bucket".into(),
        })
    }

    async fn check_balance(
        &self,
        app: &str,
        msisdn: &str,
        amount: Money,
        now: OffsetDateTime,
    ) -> Result<BalanceCheck, TmfError> {
        let sub = SubscriptionId::parse(&format!("tel:+{msisdn}"))
            .map_err(|e| TmfError::invalid("logicalResource", e))?;
        let ev = EventRequest {
            subscription: sub,
            action: RequestedAction::CheckBalance,
            amount: Some(amount),
            service_identifier: None,
            parameters: vec![
                ServiceParameter::new(ServiceParameterType::Merchant, app),
                ServiceParameter::new(ServiceParameterType::Operation, "query-balance"),
            ],
            tag: Some(bucket_id(msisdn)),
        };
        let client = Arc::clone(self.charging.client());
        // Its own task: a client that hangs up does not cut the exchange.
        let charged = tokio::spawn(async move { client.event(ev).await })
            .await
            .map_err(|e| TmfError::internal(format!("balance query task failed: {e}")))?;
        let quantity = Quantity {
            amount: amount.amount,
            units: amount.currency.code().to_string(),
        };
        let checked = |result: &str, sufficient: bool| BalanceCheck {
            amount: quantity.clone(),
            result: result.to_string(),
            sufficient,
            checked_date: rfc3339(to_ms(now)),
        };
        match &charged.outcome {
            Outcome::Success(a) => match a.check_balance {
                Some(CheckBalanceResult::EnoughCredit) => Ok(checked("ENOUGH_CREDIT", true)),
                Some(CheckBalanceResult::NoCredit) => Ok(checked("NO_CREDIT", false)),
                _ => Err(TmfError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "BAD_GATEWAY",
                    "unexpected answer",
                    "the OCS answered the balance query without Check-Balance-Result",
                )),
            },
            Outcome::NotApplicable(_) => {
                Ok(checked("DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE", true))
            }
            // 4012 to a balance check is the OCS's way of saying "not enough".
            Outcome::Denied(rc) if rc.0 == 4012 => {
                Ok(checked("DIAMETER_CREDIT_LIMIT_REACHED", false))
            }
            _ => {
                let failure = crate::charging::outcome::from_outcome(
                    charged.outcome,
                    "",
                    &charged.session_id,
                    None,
                    None,
                );
                match failure {
                    Ok(_) => Err(TmfError::internal("unexpected balance query outcome")),
                    Err(f) => match from_failure(Context::BalanceQuery, &f) {
                        Mapped::Error(e) | Mapped::Failed { error: Some(e), .. } => Err(e),
                        _ => Err(TmfError::unavailable(format!("{f}; retry"))),
                    },
                }
            }
        }
    }
}

/// The charging idempotency key of top-up `id`: namespaced, so that no key of another family
/// of the same application (a Payment `referenceCode`) can name it by accident.
pub(crate) fn charging_key(id: &str) -> String {
    format!("tmf654:topup:{id}")
}

/// The top-up id of an Idempotency-Key (per application).
fn derived_id(app: &str, key: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(app.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = hex::encode(h.finalize());
    format!("tp-{}", digest.get(..32).unwrap_or(&digest))
}

fn random_id(now_ms: i64) -> String {
    format!("tp-{now_ms:x}-{:016x}", fastrand::u64(..))
}

fn subscriber_and_money(rec: &Record) -> Result<(SubscriptionId, Money), TmfError> {
    let sub = SubscriptionId::parse(&rec.subscriber)
        .map_err(|e| TmfError::internal(format!("stored subscriber unreadable: {e}")))?;
    let cur = Currency::from_code(&rec.currency)
        .ok_or_else(|| TmfError::internal("stored currency unreadable"))?;
    Ok((sub, Money::new(rec.amount, cur)))
}

fn credit_row(rec: &Record, now_ms: i64) -> ResourceRow {
    let q = Quantity {
        amount: rec.amount,
        units: rec.currency.clone(),
    };
    ResourceRow {
        id: format!("{}.credit", rec.view.id),
        app: rec.app.clone(),
        kind: CREDIT_KIND.into(),
        state: "completed".into(),
        parent: Some(bucket_id(&rec.msisdn)),
        due_ms: None,
        body: serde_json::to_string(&q).unwrap_or_default(),
        created_ms: now_ms,
        updated_ms: now_ms,
    }
}

/// A user-given value, shortened for an error message.
pub(crate) fn clip(s: &str) -> String {
    crate::api::error::clip(s)
}
