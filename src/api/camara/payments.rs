//! Payments (carrier-billing v0.5.0): the 1-step and 2-step flows, their state machine, the
//! reads, and the stored document behind each payment.
//!
//! ```text
//! request -> checks (schema, amounts, currency, policy)      nothing stored, nothing sent
//!         -> lock (payment id, then referenceCode)           one operation per payment here
//!         -> existing? same clientCorrelator + body: the payment as it is (resolved if needed)
//!                      other body: 400;  same referenceCode, no clientCorrelator: 409
//!         -> ResourceRow processing  (durable)  -> Charging (CCR, idempotent per key)
//!         -> ResourceRow final state (durable)  -> answer
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::error::{CamaraError, Effect, ErrorInfo, Step, code, effect, from_failure};
use super::events::{self, Notify};
use super::list::{self, ListQuery, Names};
use super::model::{
    self, AmountTransaction, CreatePayment, MAX_KEY, Payment, PaymentAmount, PhoneNumberInput,
};
use super::{
    Body, Client, KIND_CHECKOUT_PAYMENT, KIND_CHECKOUT_PAYMENT_VOID, KIND_PAYMENT,
    KIND_PAYMENT_VOID, KIND_REFERENCE, KeyGuard, answer, derived_id, location, path_id,
    request_hash, rfc3339, scope,
};
use crate::api::ApiState;
use crate::charging::{ChargeInfo, Failure, Key, OpResult};
use crate::credit_control::{Money, SubscriptionId};
use crate::store::{ResourceFilter, ResourceRow, now_ms};

/// A payment's status (`paymentStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Processing,
    PendingValidation,
    Reserved,
    Succeeded,
    Denied,
    Cancelled,
}

impl Status {
    pub const NAMES: &'static [&'static str] = &[
        "processing",
        "pending_validation",
        "denied",
        "reserved",
        "succeeded",
        "cancelled",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::PendingValidation => "pending_validation",
            Self::Reserved => "reserved",
            Self::Succeeded => "succeeded",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
        }
    }
}

/// 1-step (createPayment) or 2-step (preparePayment, then confirm or cancel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    OneStep,
    TwoStep,
}

/// The operation of a payment in flight (while `processing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    Create,
    Prepare,
    Confirm,
    Cancel,
}

impl Pending {
    fn step(self) -> Step {
        match self {
            Self::Create => Step::Create,
            Self::Prepare => Step::Prepare,
            Self::Confirm => Step::Confirm,
            Self::Cancel => Step::Cancel,
        }
    }
}

/// What an action on a payment in a given state leads to (API.md 1.4, 10): go on, or the
/// refusal of 1.6. Exhaustive over states: the table the handlers follow.
pub fn transition(
    status: Status,
    pending: Option<Pending>,
    action: Pending,
) -> Result<(), CamaraError> {
    use Pending::*;
    let confirmed = || {
        CamaraError::new(
            StatusCode::CONFLICT,
            code::PAYMENT_CONFIRMED,
            "Payment has been confirmed.",
        )
    };
    let cancelled = || {
        CamaraError::new(
            StatusCode::CONFLICT,
            code::PAYMENT_CANCELLED,
            "Payment has been cancelled.",
        )
    };
    match (status, action) {
        (Status::Reserved, Confirm | Cancel) => Ok(()),
        // A retry of the operation in flight resolves it.
        (Status::Processing, a) if pending == Some(a) => Ok(()),
        (Status::Processing, _) => Err(match pending {
            Some(Confirm) => CamaraError::new(
                StatusCode::CONFLICT,
                code::ALREADY_EXISTS,
                "The resource that a client tried to create already exists. A confirmation of \
                 this payment is in progress; its outcome is not known yet.",
            ),
            Some(Cancel) => CamaraError::new(
                StatusCode::CONFLICT,
                code::ALREADY_EXISTS,
                "The resource that a client tried to create already exists. A cancellation of \
                 this payment is in progress; its outcome is not known yet.",
            ),
            _ => CamaraError::new(
                StatusCode::CONFLICT,
                code::ABORTED,
                "Concurrency conflict. The payment is still being prepared; retry.",
            ),
        }),
        (Status::Succeeded, _) => Err(confirmed()),
        (Status::Cancelled, _) => Err(cancelled()),
        (Status::Denied, Confirm) => Err(CamaraError::new(
            StatusCode::FORBIDDEN,
            code::PAYMENT_DENIED,
            "Payment denied by business. The payment was denied before.",
        )),
        (Status::Denied, _) => Err(CamaraError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            "A specified resource duplicate entry found. The payment was denied: there is \
             nothing to cancel.",
        )),
        (Status::PendingValidation | Status::Reserved, _) => Err(CamaraError::new(
            StatusCode::CONFLICT,
            code::CONFLICT,
            "The payment is not in a state this operation applies to.",
        )),
    }
}

/// The stored document of a payment (`ResourceRow::body`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDoc {
    pub id: String,
    pub flow: Flow,
    pub status: Status,
    /// What is in flight while `processing`.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// Hash of the canonical request (a `clientCorrelator` reused for another one: 400).
    pub hash: String,
    /// Which attempt of the creation (a new one after a creation that created nothing): part of
    /// the charging key.
    pub attempt: u32,
    #[serde(default)]
    pub client_correlator: Option<String>,
    pub reference_code: String,
    pub phone_number: String,
    pub payment_amount: PaymentAmount,
    #[serde(default)]
    pub reservation_id: Option<String>,
    /// Diameter Session-Id of the charge or reservation (`serverReferenceCode`; a refund's
    /// Service-Parameter-Info 6).
    #[serde(default)]
    pub server_reference_code: Option<String>,
    pub created_ms: i64,
    #[serde(default)]
    pub payment_ms: Option<i64>,
    /// The answer that refused it, and to which step.
    #[serde(default)]
    pub refusal: Option<(Pending, ErrorInfo)>,
    /// The checkout purchase this is the payment of (`carrier-billing-checkout`): then it is
    /// kept under the checkout's kinds, out of the payments API's sight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<String>,
}

impl PaymentDoc {
    pub fn view(&self) -> Payment {
        self.view_with(None)
    }

    /// The answer's form, with the `sink` of its notifications (async mode).
    pub fn view_with(&self, notify: Option<&Notify>) -> Payment {
        Payment {
            payment_id: self.id.clone(),
            amount_transaction: AmountTransaction {
                phone_number: self.phone_number.clone(),
                client_correlator: self.client_correlator.clone(),
                payment_amount: self.payment_amount.clone(),
                reference_code: self.reference_code.clone(),
                resource_url: Some(format!("urn:payments:{}", self.id)),
                server_reference_code: self.server_reference_code.clone(),
            },
            payment_status: self.status.name().to_string(),
            payment_creation_date: rfc3339(self.created_ms),
            payment_date: self.payment_ms.map(rfc3339),
            sink: notify.map(|n| n.sink.clone()),
        }
    }

    /// The amount, exactly as checked on the way in.
    pub fn money(&self) -> Result<Money, CamaraError> {
        let ci = &self.payment_amount.charging_information;
        let cur = iso_currency::Currency::from_code(&ci.currency)
            .ok_or_else(|| CamaraError::internal(format!("payment {}: bad currency", self.id)))?;
        Ok(Money::new(ci.amount.0, cur))
    }

    pub fn subscriber(&self) -> Result<SubscriptionId, CamaraError> {
        SubscriptionId::parse(&self.phone_number)
            .map_err(|e| CamaraError::internal(format!("payment {}: {e}", self.id)))
    }

    pub fn merchant(&self) -> Option<String> {
        self.payment_amount
            .charging_meta_data
            .as_ref()
            .and_then(|m| m.merchant_identifier.clone())
    }

    fn info(&self) -> ChargeInfo {
        ChargeInfo {
            description: Some(self.payment_amount.charging_information.description.clone()),
            code: None,
            reference_code: Some(self.reference_code.clone()),
            merchant: self.merchant(),
        }
    }

    /// Where this payment's rows are kept.
    pub(crate) fn kinds(&self) -> Kinds {
        if self.purchase.is_some() {
            CHECKOUT_KINDS
        } else {
            PAYMENT_KINDS
        }
    }

    /// The `Charging` key of a step: one outcome per key and application.
    fn charging_key(&self, p: Pending) -> String {
        match p {
            Pending::Create => format!("camara:{}:create:{}", self.id, self.attempt),
            Pending::Prepare => format!("camara:{}:prepare:{}", self.id, self.attempt),
            Pending::Confirm => format!("camara:{}:confirm", self.id),
            Pending::Cancel => format!("camara:{}:cancel", self.id),
        }
    }
}

/// The resource kinds of a family's payments: shown, and requests that created nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub shown: &'static str,
    pub void: &'static str,
}

/// The payments of the payments API (`/carrier-billing/v0.5/payments`).
pub(crate) const PAYMENT_KINDS: Kinds = Kinds {
    shown: KIND_PAYMENT,
    void: KIND_PAYMENT_VOID,
};

/// The payments of checkout purchases (`/carrier-billing-checkout/v0/purchases/{id}/payment`).
pub(crate) const CHECKOUT_KINDS: Kinds = Kinds {
    shown: KIND_CHECKOUT_PAYMENT,
    void: KIND_CHECKOUT_PAYMENT_VOID,
};

/// Where a payment document is kept: shown (`camara.payment`), or a request that created
/// nothing (`camara.payment.void`: `refused`, or `not_sent`); the checkout's kinds likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Shown,
    Refused,
    NotSent,
}

pub(crate) fn store_err(e: crate::store::StoreError) -> CamaraError {
    CamaraError::internal(format!("the gateway's store failed: {e}"))
}

/// The payment `id` of `app` with its row, shown or void.
pub(crate) async fn load(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<Option<(ResourceRow, PaymentDoc)>, CamaraError> {
    load_in(st, app, id, PAYMENT_KINDS).await
}

/// The payment `id` of `app` among `kinds`, with its row, shown or void.
pub(crate) async fn load_in(
    st: &ApiState,
    app: &str,
    id: &str,
    kinds: Kinds,
) -> Result<Option<(ResourceRow, PaymentDoc)>, CamaraError> {
    let Some(row) = st.charging.store().resource(id).await.map_err(store_err)? else {
        return Ok(None);
    };
    if row.app != app || (row.kind != kinds.shown && row.kind != kinds.void) {
        return Ok(None);
    }
    let doc: PaymentDoc = serde_json::from_str(&row.body)
        .map_err(|e| CamaraError::internal(format!("payment {id}: unreadable record: {e}")))?;
    Ok(Some((row, doc)))
}

/// The payment `id` of `app` if it is shown, brought up to date (with its subscription:
/// a change writes its event); 404 NOT_FOUND otherwise. The caller holds its lock.
pub(crate) async fn current(st: &ApiState, app: &str, id: &str) -> Result<PaymentDoc, CamaraError> {
    let not_found = || CamaraError::not_found(format!("No payment \"{id}\"."));
    let (doc, notify) = match load(st, app, id).await? {
        Some((row, doc)) if row.kind == KIND_PAYMENT => (doc, notify_of(&row)),
        _ => return Err(not_found()),
    };
    refresh_n(st, app, doc, Refresh::Full, notify.as_ref())
        .await?
        .ok_or_else(not_found)
}

/// The payment `id` of `app` if it is shown (404 NOT_FOUND otherwise).
pub(crate) async fn load_shown(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<PaymentDoc, CamaraError> {
    load_shown_in(st, app, id, PAYMENT_KINDS).await
}

/// The payment `id` of `app` among `kinds` if it is shown (404 NOT_FOUND otherwise).
pub(crate) async fn load_shown_in(
    st: &ApiState,
    app: &str,
    id: &str,
    kinds: Kinds,
) -> Result<PaymentDoc, CamaraError> {
    match load_in(st, app, id, kinds).await? {
        Some((row, doc)) if row.kind == kinds.shown => Ok(doc),
        _ => Err(CamaraError::not_found(format!("No payment \"{id}\"."))),
    }
}

/// The notification subscription stored beside a payment document in its row (async mode).
/// It is kept out of [`PaymentDoc`] (whose form the checkout shares) under the body's
/// `notify` property.
pub(crate) fn notify_of(row: &ResourceRow) -> Option<Notify> {
    #[derive(Deserialize)]
    struct Side {
        #[serde(default)]
        notify: Option<Notify>,
    }
    serde_json::from_str::<Side>(&row.body)
        .ok()
        .and_then(|s| s.notify)
}

/// The row's body: the document, and the subscription beside it.
fn body_of(doc: &PaymentDoc, notify: Option<&Notify>) -> Result<String, CamaraError> {
    let bad = |e: serde_json::Error| CamaraError::internal(format!("payment {}: {e}", doc.id));
    let Some(n) = notify else {
        return serde_json::to_string(doc).map_err(bad);
    };
    let mut v = serde_json::to_value(doc).map_err(bad)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("notify".into(), serde_json::to_value(n).map_err(bad)?);
    }
    serde_json::to_string(&v).map_err(bad)
}

/// Records `doc` where `place` says. Without the subscription at hand (the checkout's calls),
/// a payment of the payments API keeps the one stored with it; no event is written.
pub(crate) async fn save(
    st: &ApiState,
    app: &str,
    doc: &PaymentDoc,
    place: Place,
) -> Result<(), CamaraError> {
    let notify = stored_notify(st, doc).await?;
    save_n(st, app, doc, place, notify.as_ref(), None).await
}

/// The subscription stored with `doc`'s row (none for the checkout's payments).
async fn stored_notify(st: &ApiState, doc: &PaymentDoc) -> Result<Option<Notify>, CamaraError> {
    if doc.purchase.is_some() {
        return Ok(None);
    }
    Ok(st
        .charging
        .store()
        .resource(&doc.id)
        .await
        .map_err(store_err)?
        .as_ref()
        .and_then(notify_of))
}

/// What a payment's state was before a change: its status and the operation then pending.
pub(crate) type Before = (Status, Option<Pending>);

/// Records `doc` where `place` says; with a subscription, and when the status changed from
/// `before`, with the event that tells it, in the same transaction. An async payment that is
/// still `processing` or `reserved` is due for the recovery pass (after [`events::ASYNC_GRACE`],
/// at its reservation's expiry).
async fn save_n(
    st: &ApiState,
    app: &str,
    doc: &PaymentDoc,
    place: Place,
    notify: Option<&Notify>,
    before: Option<Before>,
) -> Result<(), CamaraError> {
    let kinds = doc.kinds();
    let (kind, state) = match place {
        Place::Shown => (kinds.shown, doc.status.name()),
        Place::Refused => (kinds.void, "refused"),
        Place::NotSent => (kinds.void, "not_sent"),
    };
    let body = body_of(doc, notify)?;
    let now = now_ms();
    let grace = now.saturating_add(events::ms(events::ASYNC_GRACE));
    let due_ms = match (notify, place, doc.status) {
        (Some(_), Place::Shown, Status::Processing) => Some(grace),
        (Some(_), Place::Shown, Status::Reserved) => {
            let expires = match &doc.reservation_id {
                Some(rid) => st
                    .charging
                    .reservation(app, rid)
                    .await
                    .map(|v| v.expires_ms),
                None => None,
            };
            Some(expires.unwrap_or(grace).max(grace))
        }
        _ => None,
    };
    let events = match (notify, before) {
        (Some(n), Some((status, pending))) if place == Place::Shown && status != doc.status => {
            events::payment_event(st, app, n, doc, pending, now)
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    st.charging
        .store()
        .put_resource_with_events(
            ResourceRow {
                id: doc.id.clone(),
                app: app.to_string(),
                kind: kind.to_string(),
                state: state.to_string(),
                parent: None,
                due_ms,
                body,
                created_ms: doc.created_ms,
                updated_ms: now,
            },
            events,
        )
        .await
        .map_err(store_err)
}

/// Runs the charging operation of `p` for `doc` in its own task: a client that hangs up never
/// cuts it between its record and its outcome.
async fn call(st: &ApiState, app: &str, doc: &PaymentDoc, p: Pending) -> OpResult {
    let prepared = (|| -> Result<_, CamaraError> { Ok((doc.subscriber()?, doc.money()?)) })();
    let (sub, money) = match prepared {
        Ok(v) => v,
        Err(e) => {
            return Err(Failure::Invalid {
                field: "payment".into(),
                reason: e.message,
            });
        }
    };
    let charging = Arc::clone(&st.charging);
    let key = Key::new(app, Some(&doc.charging_key(p)));
    let uri = sub.key();
    let info = doc.info();
    let rid = doc.reservation_id.clone().unwrap_or_default();
    let span = tracing::Span::current();
    let task = async move {
        match p {
            Pending::Create => charging.charge(&key, &sub, &uri, money, &info).await,
            Pending::Prepare => charging.reserve(&key, &sub, &uri, money, &info).await,
            Pending::Confirm => charging.settle(&key, &rid, money, &info).await,
            Pending::Cancel => charging.release(&key, &rid).await,
        }
    };
    let result = match tokio::spawn(task.instrument(span.clone())).await {
        Ok(r) => r,
        Err(e) => Err(Failure::OutcomeUnknown {
            operation_id: String::new(),
            reason: format!("the charging task failed: {e}"),
        }),
    };
    if let Ok(done) = &result
        && !done.session_id.is_empty()
    {
        span.record("session_id", done.session_id.as_str());
    }
    result
}

/// The document after `result` of `p`, where it is kept, and the answer's error if any
/// (`None`: answer with the payment). `fresh`: the outcome of the request that created the
/// payment (a refusal then creates nothing, in sync mode); otherwise the payment was shown as
/// `processing` and a refusal makes it `denied`.
///
/// `retry` (async mode, within [`events::ASYNC_GIVE_UP`]): a creation that reached no OCS
/// stays `processing`, to be driven again, instead of `denied`.
fn apply(
    mut doc: PaymentDoc,
    p: Pending,
    result: OpResult,
    fresh: bool,
    retry: bool,
) -> (PaymentDoc, Place, Option<CamaraError>) {
    let step = p.step();
    match result {
        Ok(done) => {
            doc.pending = None;
            match p {
                Pending::Create | Pending::Prepare => {
                    if !done.session_id.is_empty() {
                        doc.server_reference_code = Some(done.session_id);
                    }
                    if p == Pending::Create {
                        doc.status = Status::Succeeded;
                        doc.payment_ms = Some(now_ms());
                    } else {
                        doc.status = Status::Reserved;
                        doc.reservation_id = done.reservation_id.or(doc.reservation_id);
                    }
                }
                Pending::Confirm => {
                    doc.status = Status::Succeeded;
                    doc.payment_ms = Some(now_ms());
                }
                Pending::Cancel => doc.status = Status::Cancelled,
            }
            (doc, Place::Shown, None)
        }
        Err(f) => {
            let e = from_failure(step, &f);
            match (effect(step, &f), p) {
                (Effect::Unknown, _) => (doc, Place::Shown, None),
                (Effect::NotApplied, Pending::Create | Pending::Prepare)
                    if retry && !fresh && f.is_retryable() =>
                {
                    (doc, Place::Shown, None)
                }
                (effect, Pending::Create | Pending::Prepare) => {
                    if fresh {
                        let place = if effect == Effect::Refused {
                            doc.refusal = Some((p, e.info()));
                            Place::Refused
                        } else {
                            Place::NotSent
                        };
                        (doc, place, Some(e))
                    } else {
                        doc.status = Status::Denied;
                        doc.pending = None;
                        doc.refusal = Some((p, e.info()));
                        (doc, Place::Shown, Some(e))
                    }
                }
                (Effect::ReservationEnded, _) => {
                    doc.status = Status::Cancelled;
                    doc.pending = None;
                    let e = (p == Pending::Confirm).then_some(e);
                    (doc, Place::Shown, e)
                }
                (Effect::Refused, Pending::Confirm) => {
                    doc.status = Status::Denied;
                    doc.pending = None;
                    doc.refusal = Some((p, e.info()));
                    (doc, Place::Shown, Some(e))
                }
                (Effect::Refused | Effect::NotApplied, _) => {
                    // Nothing happened to the reservation: still reserved (a read finds it
                    // cancelled if the OCS ended it).
                    doc.status = Status::Reserved;
                    doc.pending = None;
                    (doc, Place::Shown, Some(e))
                }
            }
        }
    }
}

/// Runs `p` for `doc` ([`call`]), and records its outcome ([`apply`], `fresh` as there)
/// durably before anyone answers.
pub(crate) async fn run(
    st: &ApiState,
    app: &str,
    doc: PaymentDoc,
    p: Pending,
    fresh: bool,
) -> Result<(PaymentDoc, Place, Option<CamaraError>), CamaraError> {
    let notify = stored_notify(st, &doc).await?;
    run_n(st, app, doc, p, fresh, notify.as_ref()).await
}

/// [`run`] with the payment's subscription: the outcome's event is written with it.
async fn run_n(
    st: &ApiState,
    app: &str,
    doc: PaymentDoc,
    p: Pending,
    fresh: bool,
    notify: Option<&Notify>,
) -> Result<(PaymentDoc, Place, Option<CamaraError>), CamaraError> {
    let before = (doc.status, doc.pending);
    let result = call(st, app, &doc, p).await;
    let retry = notify.is_some()
        && now_ms().saturating_sub(doc.created_ms) < events::ms(events::ASYNC_GIVE_UP);
    let (doc, place, error) = apply(doc, p, result, fresh, retry);
    save_n(st, app, &doc, place, notify, Some(before)).await?;
    Ok((doc, place, error))
}

/// How much work a read may do to bring a payment up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Resolve an operation in flight, sending its request again if needed (GET one, retry).
    Full,
    /// Only what the store already knows (listings).
    Cheap,
}

/// Brings `doc` up to date: a reservation the reaper released (expiry) or the OCS forgot makes
/// it `cancelled`; an operation left `processing` is resolved through `Charging` (its stored
/// outcome, or its request sent again with the T flag). The caller holds the payment's lock.
/// `None`: the payment turned out never to have been created.
pub(crate) async fn refresh(
    st: &ApiState,
    app: &str,
    doc: PaymentDoc,
    how: Refresh,
) -> Result<Option<PaymentDoc>, CamaraError> {
    let notify = stored_notify(st, &doc).await?;
    refresh_n(st, app, doc, how, notify.as_ref()).await
}

/// [`refresh`] with the payment's subscription. In async mode a creation that never reached
/// `Charging` (the process stopped in between) is driven now ([`Refresh::Full`]) rather than
/// dropped: the payment was shown.
pub(crate) async fn refresh_n(
    st: &ApiState,
    app: &str,
    mut doc: PaymentDoc,
    how: Refresh,
    notify: Option<&Notify>,
) -> Result<Option<PaymentDoc>, CamaraError> {
    let before = (doc.status, doc.pending);
    match doc.status {
        Status::Reserved => {
            let open = match &doc.reservation_id {
                Some(rid) => st
                    .charging
                    .reservation(app, rid)
                    .await
                    .is_some_and(|v| v.state == "open"),
                None => false,
            };
            if !open {
                tracing::info!(payment = %doc.id, "reservation ended (expired or released): cancelled");
                doc.status = Status::Cancelled;
                save_n(st, app, &doc, Place::Shown, notify, Some(before)).await?;
            }
            Ok(Some(doc))
        }
        Status::Processing => {
            let Some(p) = doc.pending else {
                return Ok(Some(doc));
            };
            let op = st
                .charging
                .store()
                .operation_by_key(app, &doc.charging_key(p))
                .await
                .map_err(store_err)?;
            match (&op, p) {
                // Async: shown `processing` already; its own task, or this, sends it.
                (None, Pending::Create | Pending::Prepare) if notify.is_some() => {
                    if how == Refresh::Cheap {
                        return Ok(Some(doc));
                    }
                }
                // Never reached Charging (the gateway stopped in between): nothing was sent.
                (None, Pending::Create | Pending::Prepare) => {
                    save_n(st, app, &doc, Place::NotSent, notify, None).await?;
                    return Ok(None);
                }
                (None, Pending::Confirm) => {
                    doc.status = Status::Reserved;
                    doc.pending = None;
                    save_n(st, app, &doc, Place::Shown, notify, Some(before)).await?;
                    return Box::pin(refresh_n(st, app, doc, how, notify)).await;
                }
                // A release may be repeated safely.
                (None, Pending::Cancel) => {}
                (Some(op), _) if how == Refresh::Cheap && !op.state.is_final() => {
                    return Ok(Some(doc));
                }
                (Some(_), _) => {}
            }
            let (doc, place, _) = run_n(st, app, doc, p, false, notify).await?;
            Ok((place == Place::Shown).then_some(doc))
        }
        _ => Ok(Some(doc)),
    }
}

// ---- creation --------------------------------------------------------------------------------

/// The canonical request: what makes two requests the same.
#[derive(Serialize)]
struct Canonical<'a> {
    flow: Flow,
    phone_number: &'a str,
    client_correlator: Option<&'a str>,
    reference_code: &'a str,
    payment_amount: &'a PaymentAmount,
    /// Async mode's sink (absent in sync mode: the hashes of sync requests are unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    sink: Option<&'a str>,
}

fn created(doc: &PaymentDoc, notify: Option<&Notify>) -> Response {
    (
        StatusCode::CREATED,
        [location(&format!("{}/{}", super::PAYMENTS, doc.id))],
        axum::Json(doc.view_with(notify)),
    )
        .into_response()
}

fn already_exists(detail: impl std::fmt::Display) -> CamaraError {
    CamaraError::new(
        StatusCode::CONFLICT,
        code::ALREADY_EXISTS,
        format!("The resource that a client tried to create already exists. {detail}"),
    )
}

fn correlator_reused() -> CamaraError {
    CamaraError::new(
        StatusCode::BAD_REQUEST,
        code::INVALID_ARGUMENT,
        "clientCorrelator already exist on server. It was used for a different request.",
    )
}

/// The answer for a payment found under the same key with the same request: its current
/// state (async mode: whatever it is, `denied` included, as the first answer created it).
async fn replay(
    st: &ApiState,
    app: &str,
    doc: PaymentDoc,
    notify: Option<Notify>,
) -> Result<Response, CamaraError> {
    let Some(doc) = refresh_n(st, app, doc, Refresh::Full, notify.as_ref()).await? else {
        return Err(CamaraError::unavailable(
            "The earlier request with this key was interrupted before anything was sent: retry.",
        ));
    };
    match &doc.refusal {
        Some((Pending::Create | Pending::Prepare, e))
            if doc.status == Status::Denied && notify.is_none() =>
        {
            Err(CamaraError::from_info(e))
        }
        _ => Ok(created(&doc, notify.as_ref())),
    }
}

async fn create(
    st: ApiState,
    client: Client,
    body: Body,
    flow: Flow,
) -> Result<Response, CamaraError> {
    client.require(scope::PAYMENTS_CREATE)?;
    let req: CreatePayment = body.parse()?;
    let Some(at) = req.amount_transaction else {
        return Err(CamaraError::missing("amountTransaction"));
    };
    let Some(pa) = at.payment_amount else {
        return Err(CamaraError::missing("amountTransaction.paymentAmount"));
    };
    let base = "amountTransaction.paymentAmount";
    let (ci, money) = model::charging_information(
        &format!("{base}.chargingInformation"),
        pa.charging_information,
    )?;
    let meta = model::meta_data(&format!("{base}.chargingMetaData"), pa.charging_meta_data)?;
    let details = model::payment_details(
        &format!("{base}.paymentDetails"),
        pa.payment_details,
        money.currency,
    )?;
    let reference = model::text(
        "amountTransaction.referenceCode",
        at.reference_code,
        MAX_KEY,
    )?;
    let cc = model::opt_text(
        "amountTransaction.clientCorrelator",
        at.client_correlator,
        MAX_KEY,
    )?;
    let phone = match (client.bound_phone(), at.phone_number) {
        // API.md 1.7: a three-legged token names the subscriber; the body must not.
        (Some(_), Some(_)) => return Err(unnecessary_identifier("amountTransaction.phoneNumber")),
        (Some(bound), None) => bound.to_string(),
        (None, Some(p)) if model::valid_phone(&p) => p,
        (None, Some(_)) => {
            return Err(CamaraError::invalid(
                "amountTransaction.phoneNumber: must match ^\\+[1-9][0-9]{4,14}$",
            ));
        }
        (None, None) => {
            return Err(CamaraError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code::MISSING_IDENTIFIER,
                "The phone number cannot be identified. This gateway's access is 2-legged: \
                 amountTransaction.phoneNumber is required.",
            ));
        }
    };
    let app = client.id().to_string();
    let code_ = money.currency.code();
    if !client.0.may_use_currency(code_) {
        return Err(CamaraError::currency(format!(
            "Application \"{app}\" may not pay in {code_}."
        )));
    }
    if let Some(max) = client.0.max_amount()
        && money.amount > max
    {
        return Err(CamaraError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code::UNAUTHORIZED_AMOUNT,
            format!(
                "Unauthorized amount requested. {money} is above the limit of application \
                 \"{app}\" ({max} per payment)."
            ),
        ));
    }
    // Async mode: the sink and its credential, checked before anything is stored or sent.
    let notify = events::subscription(&st, req.sink, req.sink_credential).await?;
    let payment_amount = PaymentAmount {
        charging_information: ci,
        charging_meta_data: meta,
        payment_details: details,
    };
    let hash = request_hash(
        "camara.payment",
        &Canonical {
            flow,
            phone_number: &phone,
            client_correlator: cc.as_deref(),
            reference_code: &reference,
            payment_amount: &payment_amount,
            sink: notify.as_ref().map(|n| n.sink.as_str()),
        },
    );
    let id = match &cc {
        Some(c) => derived_id("pay-", &[&app, "payment", "cc", c]),
        None => derived_id("pay-", &[&app, "payment", "ref", &reference]),
    };
    let marker = derived_id("cbref-", &[&app, "payment", &reference]);
    tracing::Span::current().record("operation_id", id.as_str());
    let _id_lock = KeyGuard::lock(&st, &id).await?;
    let _ref_lock = KeyGuard::lock(&st, &marker).await?;

    let mut attempt = 1;
    if let Some((row, doc)) = load(&st, &app, &id).await? {
        let shown = row.kind == KIND_PAYMENT;
        let stored = notify_of(&row);
        match (shown, cc.is_some()) {
            (true, true) if doc.hash == hash => return replay(&st, &app, doc, stored).await,
            (true, true) => return Err(correlator_reused()),
            (true, false)
                if doc.hash == hash
                    && doc.status == Status::Processing
                    && matches!(doc.pending, Some(Pending::Create | Pending::Prepare)) =>
            {
                // No clientCorrelator, but this is the request whose outcome was unknown.
                return replay(&st, &app, doc, stored).await;
            }
            (true, false) => {
                return Err(already_exists(format!(
                    "referenceCode \"{reference}\" is payment {id}."
                )));
            }
            (false, true) if row.state == "refused" && doc.hash == hash => {
                return Err(match &doc.refusal {
                    Some((_, e)) => CamaraError::from_info(e),
                    None => CamaraError::internal("a refused request without its answer"),
                });
            }
            (false, true) if row.state == "refused" => return Err(correlator_reused()),
            // A request that created nothing: this one is a new attempt.
            (false, _) => attempt = doc.attempt.saturating_add(1),
        }
    }
    let store = st.charging.store();
    if let Some(m) = store.resource(&marker).await.map_err(store_err)?
        && let Some(owner) = m.parent.filter(|o| *o != id)
        && let Some((orow, _)) = load(&st, &app, &owner).await?
        && orow.kind == KIND_PAYMENT
    {
        return Err(already_exists(format!(
            "referenceCode \"{reference}\" is payment {owner}."
        )));
    }
    let now = now_ms();
    store
        .put_resource(ResourceRow {
            id: marker.clone(),
            app: app.clone(),
            kind: KIND_REFERENCE.into(),
            state: "held".into(),
            parent: Some(id.clone()),
            due_ms: None,
            body: "{}".into(),
            created_ms: now,
            updated_ms: now,
        })
        .await
        .map_err(store_err)?;
    let p = match flow {
        Flow::OneStep => Pending::Create,
        Flow::TwoStep => Pending::Prepare,
    };
    let doc = PaymentDoc {
        id: id.clone(),
        flow,
        status: Status::Processing,
        pending: Some(p),
        hash,
        attempt,
        client_correlator: cc,
        reference_code: reference,
        phone_number: phone,
        payment_amount,
        reservation_id: None,
        server_reference_code: None,
        created_ms: now,
        payment_ms: None,
        refusal: None,
        purchase: None,
    };
    // Durable before the CCR (and, in async mode, before the answer): a restart finds it and
    // resolves it.
    save_n(&st, &app, &doc, Place::Shown, notify.as_ref(), None).await?;
    if let Some(n) = notify {
        // Async mode: 201 processing now; the outcome comes as an event.
        let task = drive(st.clone(), app.clone(), id.clone());
        tokio::spawn(task.instrument(tracing::Span::current()));
        return Ok(created(&doc, Some(&n)));
    }
    let (doc, _, error) = run_n(&st, &app, doc, p, true, None).await?;
    match error {
        Some(e) => Err(e),
        None => Ok(created(&doc, None)),
    }
}

/// The background work of an async creation: once the request that created the payment let
/// go of its lock, its operation is run and the outcome recorded with its event. A failure
/// here (store, lock) leaves the payment `processing` and due for [`recover_due`].
async fn drive(st: ApiState, app: String, id: String) {
    let _lock = match KeyGuard::lock(&st, &id).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(payment = %id, error = %e.message, "async payment left to the recovery pass");
            return;
        }
    };
    let loaded = match load(&st, &app, &id).await {
        Ok(Some((row, doc))) if row.kind == KIND_PAYMENT && doc.status == Status::Processing => {
            (doc, notify_of(&row))
        }
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(payment = %id, error = %e.message, "async payment left to the recovery pass");
            return;
        }
    };
    let (doc, notify) = loaded;
    if let Err(e) = refresh_n(&st, &app, doc, Refresh::Full, notify.as_ref()).await {
        tracing::warn!(payment = %id, error = %e.message, "async payment left to the recovery pass");
    }
}

/// The recovery pass over async payments ([`events::recover`]): those due (left `processing`,
/// a reservation past its expiry), each under its lock if nobody holds it. Returns how many
/// were looked at.
pub(crate) async fn recover_due(st: &ApiState, now: i64) -> usize {
    let due = st
        .charging
        .store()
        .resources(ResourceFilter {
            kind: Some(KIND_PAYMENT.into()),
            due_before_ms: Some(now),
            ascending: true,
            limit: RECOVERY_BATCH,
            ..ResourceFilter::default()
        })
        .await;
    let rows = match due {
        Ok((rows, _)) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "CAMARA recovery: payments not read");
            return 0;
        }
    };
    let mut seen = 0;
    for r in rows {
        let Some(_lock) = KeyGuard::try_lock(st, &r.id).await else {
            continue;
        };
        seen += 1;
        if let Err(e) = recover_one(st, &r.app, &r.id).await {
            tracing::warn!(payment = %r.id, error = %e.message, "CAMARA recovery: payment not brought up to date");
        }
    }
    seen
}

/// Most resources of a kind one recovery pass looks at.
const RECOVERY_BATCH: usize = 100;

/// One due payment, under its lock: read again, then brought up to date (driven, if its
/// operation is not final); one still `reserved` is due again at its expiry.
async fn recover_one(st: &ApiState, app: &str, id: &str) -> Result<(), CamaraError> {
    let Some((row, doc)) = load(st, app, id).await? else {
        return Ok(());
    };
    let notify = notify_of(&row);
    if row.kind != KIND_PAYMENT
        || notify.is_none()
        || !matches!(doc.status, Status::Processing | Status::Reserved)
    {
        return Ok(());
    }
    if let Some(doc) = refresh_n(st, app, doc, Refresh::Full, notify.as_ref()).await?
        && doc.status == Status::Reserved
    {
        // Still open: due again at its expiry (or after the grace, if past it).
        save_n(st, app, &doc, Place::Shown, notify.as_ref(), None).await?;
    }
    Ok(())
}

// ---- handlers --------------------------------------------------------------------------------

/// createPayment: a 1-step payment (CCR EVENT, DIRECT_DEBITING).
#[utoipa::path(
    post, path = super::PAYMENTS, tag = "camara-payment", operation_id = "createPayment",
    request_body(content = CreatePayment, content_type = "application/json"),
    params(("x-correlator" = Option<String>, Header, description = "Echoed; ^[a-zA-Z0-9-_:;.\\/<>{}]{0,256}$")),
    responses(
        (status = 201, description = "Charged (`succeeded`); `processing` when the OCS's answer \
            is not known yet (GET it, or retry with the same clientCorrelator)", body = Payment),
    )
)]
pub(crate) async fn create_payment(
    State(st): State<ApiState>,
    client: Client,
    body: Body,
) -> Response {
    answer(create(st, client, body, Flow::OneStep).await)
}

/// preparePayment: step 1 of a 2-step payment (CCR INITIAL: the amount is reserved).
#[utoipa::path(
    post, path = super::PAYMENTS_PREPARE, tag = "camara-payment", operation_id = "preparePayment",
    request_body(content = CreatePayment, content_type = "application/json"),
    params(("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 201, description = "Reserved (`reserved`)", body = Payment))
)]
pub(crate) async fn prepare_payment(
    State(st): State<ApiState>,
    client: Client,
    body: Body,
) -> Response {
    answer(create(st, client, body, Flow::TwoStep).await)
}

/// 422 UNNECESSARY_IDENTIFIER: the body names a subscriber while the access token is bound to
/// one (API.md 1.7: even the same one).
pub(crate) fn unnecessary_identifier(field: &str) -> CamaraError {
    CamaraError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code::UNNECESSARY_IDENTIFIER,
        format!(
            "The phone number is already identified by the access token. {field} must not be \
             given with a three-legged token."
        ),
    )
}

/// A payment of another subscriber than the one a three-legged token is bound to is not
/// found (API.md 1.7).
pub(crate) fn visible(client: &Client, doc: &PaymentDoc) -> Result<(), CamaraError> {
    match client.bound_phone() {
        Some(bound) if bound != doc.phone_number => Err(CamaraError::not_found(format!(
            "No payment \"{}\".",
            doc.id
        ))),
        _ => Ok(()),
    }
}

async fn second_step(
    st: ApiState,
    client: Client,
    id: String,
    body: Body,
    p: Pending,
) -> Result<Response, CamaraError> {
    client.require(scope::PAYMENTS_WRITE)?;
    let id = path_id("paymentId", &id)?;
    let req: PhoneNumberInput = body.parse()?;
    if client.bound_phone().is_some() && req.phone_number.is_some() {
        return Err(unnecessary_identifier("phoneNumber"));
    }
    if let Some(n) = &req.phone_number
        && !model::valid_phone(n)
    {
        return Err(CamaraError::invalid(
            "phoneNumber: must match ^\\+[1-9][0-9]{4,14}$",
        ));
    }
    tracing::Span::current().record("operation_id", id.as_str());
    let app = client.id().to_string();
    let _lock = KeyGuard::lock(&st, &id).await?;
    let (doc, notify) = match load(&st, &app, &id).await? {
        Some((row, doc)) if row.kind == KIND_PAYMENT => (doc, notify_of(&row)),
        _ => return Err(CamaraError::not_found(format!("No payment \"{id}\"."))),
    };
    visible(&client, &doc)?;
    if let Some(n) = &req.phone_number
        && *n != doc.phone_number
    {
        return Err(CamaraError::not_found(format!(
            "No payment \"{id}\" for this phoneNumber."
        )));
    }
    let Some(mut doc) = refresh_n(&st, &app, doc, Refresh::Full, notify.as_ref()).await? else {
        return Err(CamaraError::not_found(format!("No payment \"{id}\".")));
    };
    transition(doc.status, doc.pending, p)?;
    if doc.status == Status::Reserved {
        doc.status = Status::Processing;
        doc.pending = Some(p);
        // Durable before the CCR-T.
        save_n(&st, &app, &doc, Place::Shown, notify.as_ref(), None).await?;
    }
    let (_, _, error) = run_n(&st, &app, doc, p, false, notify.as_ref()).await?;
    match error {
        Some(e) => Err(e),
        None => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

/// confirmPayment: step 2 (CCR TERMINATION charging the reserved amount).
#[utoipa::path(
    post, path = super::PAYMENT_CONFIRM, tag = "camara-payment", operation_id = "confirmPayment",
    request_body(content = PhoneNumberInput, content_type = "application/json"),
    params(
        ("paymentId" = String, Path, description = "From preparePayment"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 202, description = "Confirmed: the payment is `succeeded` (or \
        `processing` while the OCS's answer is not known)"))
)]
pub(crate) async fn confirm_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    answer(second_step(st, client, id, body, Pending::Confirm).await)
}

/// cancelPayment: step 2 (CCR TERMINATION releasing the reservation).
#[utoipa::path(
    post, path = super::PAYMENT_CANCEL, tag = "camara-payment", operation_id = "cancelPayment",
    request_body(content = PhoneNumberInput, content_type = "application/json"),
    params(
        ("paymentId" = String, Path, description = "From preparePayment"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 202, description = "Cancelled: the payment is `cancelled`"))
)]
pub(crate) async fn cancel_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    answer(second_step(st, client, id, body, Pending::Cancel).await)
}

/// Reads a payment for `app`, brought up to date when nobody is working on it.
pub(crate) async fn read(
    st: &ApiState,
    app: &str,
    id: &str,
    how: Refresh,
) -> Result<PaymentDoc, CamaraError> {
    read_in(st, app, id, how, PAYMENT_KINDS).await
}

/// [`read`] among `kinds`.
pub(crate) async fn read_in(
    st: &ApiState,
    app: &str,
    id: &str,
    how: Refresh,
    kinds: Kinds,
) -> Result<PaymentDoc, CamaraError> {
    read_with(st, app, id, how, kinds).await.map(|(doc, _)| doc)
}

/// [`read_in`], with the payment's subscription.
pub(crate) async fn read_with(
    st: &ApiState,
    app: &str,
    id: &str,
    how: Refresh,
    kinds: Kinds,
) -> Result<(PaymentDoc, Option<Notify>), CamaraError> {
    let shown = |found: Option<(ResourceRow, PaymentDoc)>| match found {
        Some((row, doc)) if row.kind == kinds.shown => Ok((notify_of(&row), doc)),
        _ => Err(CamaraError::not_found(format!("No payment \"{id}\"."))),
    };
    let (notify, doc) = shown(load_in(st, app, id, kinds).await?)?;
    if !matches!(doc.status, Status::Processing | Status::Reserved) {
        return Ok((doc, notify));
    }
    let Some(_lock) = KeyGuard::try_lock(st, id).await else {
        return Ok((doc, notify));
    };
    // Read again under the lock: an operation may have finished meanwhile.
    let (notify, doc) = shown(load_in(st, app, id, kinds).await?)?;
    let doc = refresh_n(st, app, doc, how, notify.as_ref())
        .await?
        .ok_or_else(|| CamaraError::not_found(format!("No payment \"{id}\".")))?;
    Ok((doc, notify))
}

/// retrievePayment.
#[utoipa::path(
    get, path = super::PAYMENT, tag = "camara-payment", operation_id = "retrievePayment",
    params(
        ("paymentId" = String, Path, description = "A payment of the caller"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "The payment", body = Payment))
)]
pub(crate) async fn retrieve_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            client.require(scope::PAYMENTS_READ)?;
            let id = path_id("paymentId", &id)?;
            let (doc, notify) =
                read_with(&st, client.id(), &id, Refresh::Full, PAYMENT_KINDS).await?;
            visible(&client, &doc)?;
            Ok(axum::Json(doc.view_with(notify.as_ref())).into_response())
        }
        .await,
    )
}

pub(crate) const NAMES: Names = Names {
    date: "paymentCreationDate",
    status: "paymentStatus",
    statuses: Status::NAMES,
    invalid_date_range: code::INVALID_DATE_RANGE,
    too_many: code::TOO_MANY_MATCHING_RECORDS,
};

/// retrievePayments: the caller's payments, newest first unless `order=asc`.
#[utoipa::path(
    get, path = super::PAYMENTS, tag = "camara-payment", operation_id = "retrievePayments",
    params(
        ("x-correlator" = Option<String>, Header, description = "Echoed"),
        ("page" = Option<usize>, Query, description = "From 1 (default 1)"),
        ("perPage" = Option<usize>, Query, description = "1 to 100 (default 10)"),
        ("paymentCreationDate.gte" = Option<String>, Query, description = "RFC 3339 with zone"),
        ("paymentCreationDate.lte" = Option<String>, Query, description = "RFC 3339 with zone (default: now when .gte is given)"),
        ("order" = Option<String>, Query, description = "desc (default) or asc, by paymentCreationDate"),
        ("paymentStatus" = Option<Vec<String>>, Query, description = "Repeated or comma-separated"),
        ("merchantIdentifier" = Option<String>, Query, description = "chargingMetaData.merchantIdentifier")),
    responses((status = 200, description = "One page; headers X-Total-Count (all that match) and \
        Content-Last-Key (position from 1 of the page's last item)", body = Vec<Payment>))
)]
pub(crate) async fn retrieve_payments(
    State(st): State<ApiState>,
    client: Client,
    uri: Uri,
) -> Response {
    answer(
        async {
            client.require(scope::PAYMENTS_READ)?;
            let q = ListQuery::parse(&uri, &NAMES)?;
            let app = client.id();
            bring_up_to_date(&st, app).await?;
            // A three-legged token: that subscriber's payments only.
            let bound = client.bound_phone().map(str::to_string);
            let of_subscriber = move |r: &ResourceRow| {
                serde_json::from_str::<PaymentDoc>(&r.body)
                    .is_ok_and(|d| Some(d.phone_number.as_str()) == bound.as_deref())
            };
            let keep: Option<&(dyn Fn(&ResourceRow) -> bool + Send + Sync)> =
                match client.bound_phone() {
                    Some(_) => Some(&of_subscriber),
                    None => None,
                };
            let page = list::list_where(
                st.charging.store(),
                app,
                KIND_PAYMENT,
                None,
                &q,
                &NAMES,
                |r| {
                    serde_json::from_str::<PaymentDoc>(&r.body)
                        .ok()
                        .and_then(|d| d.merchant())
                },
                keep,
            )
            .await?;
            let mut items = Vec::with_capacity(page.rows.len());
            for r in &page.rows {
                let d: PaymentDoc = serde_json::from_str(&r.body).map_err(|e| {
                    CamaraError::internal(format!("payment {}: unreadable record: {e}", r.id))
                })?;
                items.push(d.view_with(notify_of(r).as_ref()));
            }
            Ok(list::answer(&items, page.total, page.offset))
        }
        .await,
    )
}

/// Before a listing: the caller's `reserved` and `processing` payments brought up to date from
/// what is known without sending anything (expired reservations, outcomes already recorded),
/// so that the status filter and the totals see current states.
async fn bring_up_to_date(st: &ApiState, app: &str) -> Result<(), CamaraError> {
    for state in ["reserved", "processing"] {
        let (rows, _) = st
            .charging
            .store()
            .resources(ResourceFilter {
                app: Some(app.to_string()),
                kind: Some(KIND_PAYMENT.into()),
                state: Some(state.into()),
                limit: list::MAX_SCAN,
                ..ResourceFilter::default()
            })
            .await
            .map_err(store_err)?;
        for r in rows {
            read(st, app, &r.id, Refresh::Cheap)
                .await
                .map(|_| ())
                .or_else(|e| {
                    if e.status == StatusCode::NOT_FOUND {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }
    }
    Ok(())
}
