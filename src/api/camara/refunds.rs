//! Refunds (carrier-billing-refund v0.3.0): total or partial refunds of a `succeeded` payment,
//! one CCR EVENT with REFUND_ACCOUNT each, Service-Parameter-Info 6 carrying the payment's
//! Session-Id; never more than the amount not refunded yet.
//!
//! ```text
//! remaining = payment amount - (refunds succeeded + refunds processing)      (API.md 2)
//! total:   refunds `remaining`; then no refund is possible (403 PAYMENT_NOT_ELIGIBLE_FOR_REFUND)
//! partial: amount <= remaining (else 422 UNAUTHORIZED_AMOUNT); refundDetails <= each item left
//! ```
//!
//! Refunds of one payment are created one at a time (the payment's lock), so two concurrent
//! refunds can never both take the same remainder.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::error::{CamaraError, Effect, ErrorInfo, Step, code, effect, from_failure};
use super::events::{self, Notify};
use super::list::{self, ListQuery, Names};
use super::model::{
    self, CreateRefund, MAX_KEY, Num, PaymentRemainingAmount, Refund, RefundAmount, RefundMetaData,
    RefundTransaction,
};
use super::payments::{self, PaymentDoc, Refresh, Status as PaymentStatus};
use super::{
    Body, Client, KIND_REFERENCE, KIND_REFUND, KIND_REFUND_VOID, KeyGuard, answer, derived_id,
    location, path_id, request_hash, rfc3339, scope,
};
use crate::api::ApiState;
use crate::charging::{ChargeInfo, Failure, Key, OpResult};
use crate::credit_control::Money;
use crate::store::{ResourceFilter, ResourceRow, now_ms};

/// A refund's status (`refundStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Processing,
    Succeeded,
    Denied,
}

impl Status {
    pub const NAMES: &'static [&'static str] = &["processing", "denied", "succeeded"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Denied => "denied",
        }
    }

    /// Counts against the amount left to refund.
    fn holds(self) -> bool {
        matches!(self, Self::Processing | Self::Succeeded)
    }
}

/// `total` or `partial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Total,
    Partial,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Partial => "partial",
        }
    }
}

/// The stored document of a refund.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundDoc {
    pub id: String,
    pub payment_id: String,
    pub kind: Kind,
    pub status: Status,
    pub hash: String,
    pub attempt: u32,
    #[serde(default)]
    pub client_correlator: Option<String>,
    pub reference_code: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// What is refunded (for a total refund: what was left).
    pub amount: Num,
    pub refund_amount: RefundAmount,
    pub created_ms: i64,
    #[serde(default)]
    pub refund_ms: Option<i64>,
    #[serde(default)]
    pub server_reference_code: Option<String>,
    #[serde(default)]
    pub refusal: Option<ErrorInfo>,
    /// Async mode: where its outcome is posted, with what token (never shown but `sink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

impl RefundDoc {
    pub fn view(&self) -> Refund {
        Refund {
            refund_id: self.id.clone(),
            refund_status: self.status.name().to_string(),
            refund_creation_date: rfc3339(self.created_ms),
            refund_date: self.refund_ms.map(rfc3339),
            kind: self.kind.name().to_string(),
            reason: self.reason.clone(),
            amount_transaction: RefundTransaction {
                client_correlator: self.client_correlator.clone(),
                refund_amount: self.refund_amount.clone(),
                reference_code: self.reference_code.clone(),
            },
            sink: self.notify.as_ref().map(|n| n.sink.clone()),
        }
    }

    fn merchant(&self) -> Option<String> {
        self.refund_amount
            .charging_meta_data
            .as_ref()
            .and_then(|m| m.merchant_identifier.clone())
    }

    fn charging_key(&self) -> String {
        format!("camara:{}:refund:{}", self.id, self.attempt)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Shown,
    Refused,
    NotSent,
}

fn store_err(e: crate::store::StoreError) -> CamaraError {
    CamaraError::internal(format!("the gateway's store failed: {e}"))
}

async fn load(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<Option<(ResourceRow, RefundDoc)>, CamaraError> {
    let Some(row) = st.charging.store().resource(id).await.map_err(store_err)? else {
        return Ok(None);
    };
    if row.app != app || (row.kind != KIND_REFUND && row.kind != KIND_REFUND_VOID) {
        return Ok(None);
    }
    let doc: RefundDoc = serde_json::from_str(&row.body)
        .map_err(|e| CamaraError::internal(format!("refund {id}: unreadable record: {e}")))?;
    Ok(Some((row, doc)))
}

/// Records `doc` where `place` says; in async mode, when its status changed from `before`,
/// with the event that tells it, in the same transaction (and, while `processing`, due for
/// the recovery pass after [`events::ASYNC_GRACE`]).
async fn save(
    st: &ApiState,
    app: &str,
    doc: &RefundDoc,
    place: Place,
    before: Option<Status>,
) -> Result<(), CamaraError> {
    let (kind, state) = match place {
        Place::Shown => (KIND_REFUND, doc.status.name()),
        Place::Refused => (KIND_REFUND_VOID, "refused"),
        Place::NotSent => (KIND_REFUND_VOID, "not_sent"),
    };
    let body = serde_json::to_string(doc)
        .map_err(|e| CamaraError::internal(format!("refund {}: {e}", doc.id)))?;
    let now = now_ms();
    let shown = place == Place::Shown;
    let due_ms = (shown && doc.notify.is_some() && doc.status == Status::Processing)
        .then(|| now.saturating_add(events::ms(events::ASYNC_GRACE)));
    let events = match (&doc.notify, before) {
        (Some(n), Some(b)) if shown && b != doc.status => {
            events::refund_event(st, app, n, doc, now)
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
                parent: Some(doc.payment_id.clone()),
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

/// The shown refunds of a payment.
async fn refunds_of(
    st: &ApiState,
    app: &str,
    payment: &str,
) -> Result<Vec<RefundDoc>, CamaraError> {
    let (rows, _) = st
        .charging
        .store()
        .resources(ResourceFilter {
            app: Some(app.to_string()),
            kind: Some(KIND_REFUND.into()),
            parent: Some(payment.to_string()),
            ..ResourceFilter::default()
        })
        .await
        .map_err(store_err)?;
    rows.iter()
        .map(|r| {
            serde_json::from_str(&r.body).map_err(|e| {
                CamaraError::internal(format!("refund {}: unreadable record: {e}", r.id))
            })
        })
        .collect()
}

/// What is left to refund of `payment`, given its refunds.
fn remaining(payment: &PaymentDoc, refunds: &[RefundDoc]) -> Decimal {
    let taken: Decimal = refunds
        .iter()
        .filter(|r| r.status.holds())
        .map(|r| r.amount.0)
        .sum();
    payment.payment_amount.charging_information.amount.0 - taken
}

/// The REFUND_ACCOUNT of `doc` (its own task: a dropped request never cuts it in half).
async fn call(st: &ApiState, app: &str, payment: &PaymentDoc, doc: &RefundDoc) -> OpResult {
    let prepared = (|| -> Result<_, CamaraError> {
        let m = payment.money()?;
        Ok((payment.subscriber()?, Money::new(doc.amount.0, m.currency)))
    })();
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
    let key = Key::new(app, Some(&doc.charging_key()));
    let uri = sub.key();
    let description = doc
        .refund_amount
        .charging_information
        .as_ref()
        .map(|c| c.description.clone())
        .or_else(|| doc.reason.clone())
        .unwrap_or_else(|| format!("refund of payment {}", payment.id));
    let info = ChargeInfo {
        description: Some(description),
        code: None,
        reference_code: Some(doc.reference_code.clone()),
        merchant: doc.merchant().or_else(|| payment.merchant()),
    };
    let original = payment.server_reference_code.clone();
    let span = tracing::Span::current();
    let task = async move {
        charging
            .refund(&key, &sub, &uri, money, &info, original.as_deref())
            .await
    };
    match tokio::spawn(task.instrument(span)).await {
        Ok(r) => r,
        Err(e) => Err(Failure::OutcomeUnknown {
            operation_id: String::new(),
            reason: format!("the charging task failed: {e}"),
        }),
    }
}

/// The refund after `result`. `fresh`: the outcome of the request that creates it (a refusal
/// then creates nothing, in sync mode). Async mode: a refusal is `denied` (the refund was
/// shown); one that reached no OCS stays `processing` within [`events::ASYNC_GIVE_UP`].
fn apply(
    mut doc: RefundDoc,
    result: OpResult,
    fresh: bool,
) -> (RefundDoc, Place, Option<CamaraError>) {
    let retry = doc.notify.is_some()
        && now_ms().saturating_sub(doc.created_ms) < events::ms(events::ASYNC_GIVE_UP);
    match result {
        Ok(done) => {
            doc.status = Status::Succeeded;
            doc.refund_ms = Some(now_ms());
            if !done.session_id.is_empty() {
                doc.server_reference_code = Some(done.session_id);
            }
            (doc, Place::Shown, None)
        }
        Err(f) => {
            let e = from_failure(Step::Refund, &f);
            match effect(Step::Refund, &f) {
                Effect::Unknown => (doc, Place::Shown, None),
                Effect::NotApplied if retry && !fresh && f.is_retryable() => {
                    (doc, Place::Shown, None)
                }
                eff if fresh => {
                    let place = if eff == Effect::Refused {
                        doc.refusal = Some(e.info());
                        Place::Refused
                    } else {
                        Place::NotSent
                    };
                    (doc, place, Some(e))
                }
                _ => {
                    doc.status = Status::Denied;
                    doc.refusal = Some(e.info());
                    (doc, Place::Shown, Some(e))
                }
            }
        }
    }
}

/// A `processing` refund resolved through `Charging` (the caller holds the payment's lock).
async fn refresh(
    st: &ApiState,
    app: &str,
    payment: &PaymentDoc,
    doc: RefundDoc,
    how: Refresh,
) -> Result<Option<RefundDoc>, CamaraError> {
    if doc.status != Status::Processing {
        return Ok(Some(doc));
    }
    let op = st
        .charging
        .store()
        .operation_by_key(app, &doc.charging_key())
        .await
        .map_err(store_err)?;
    match op {
        // Async: shown `processing` already; its own task, or this, sends it.
        None if doc.notify.is_some() => {
            if how == Refresh::Cheap {
                return Ok(Some(doc));
            }
        }
        None => {
            // Never reached Charging: nothing was sent.
            save(st, app, &doc, Place::NotSent, None).await?;
            return Ok(None);
        }
        Some(op) if how == Refresh::Cheap && !op.state.is_final() => return Ok(Some(doc)),
        Some(_) => {}
    }
    let before = doc.status;
    let result = call(st, app, payment, &doc).await;
    let (doc, place, _) = apply(doc, result, false);
    save(st, app, &doc, place, Some(before)).await?;
    Ok((place == Place::Shown).then_some(doc))
}

/// The refunds of `payment` with the `processing` ones brought up to date from what is known
/// (the caller holds the payment's lock, or reads without writing when it could not take it).
async fn current_refunds(
    st: &ApiState,
    app: &str,
    payment: &PaymentDoc,
    locked: bool,
    how: Refresh,
) -> Result<Vec<RefundDoc>, CamaraError> {
    let mut out = Vec::new();
    for r in refunds_of(st, app, &payment.id).await? {
        if locked {
            if let Some(r) = refresh(st, app, payment, r, how).await? {
                out.push(r);
            }
        } else {
            out.push(r);
        }
    }
    Ok(out)
}

// ---- creation --------------------------------------------------------------------------------

#[derive(Serialize)]
struct Canonical<'a> {
    payment_id: &'a str,
    kind: Kind,
    reason: Option<&'a str>,
    client_correlator: Option<&'a str>,
    reference_code: &'a str,
    refund_amount: &'a RefundAmount,
    /// Async mode's sink (absent in sync mode: the hashes of sync requests are unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    sink: Option<&'a str>,
}

fn created(doc: &RefundDoc) -> Response {
    (
        StatusCode::CREATED,
        [location(&format!(
            "{}/{}",
            super::REFUNDS.replace("{paymentId}", &doc.payment_id),
            doc.id
        ))],
        axum::Json(doc.view()),
    )
        .into_response()
}

fn unprocessable(code: &str, message: impl Into<String>) -> CamaraError {
    CamaraError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

async fn create(
    st: ApiState,
    client: Client,
    payment_id: String,
    body: Body,
) -> Result<Response, CamaraError> {
    client.require(scope::REFUNDS_CREATE)?;
    let payment_id = path_id("paymentId", &payment_id)?;
    let req: CreateRefund = body.parse()?;
    let kind = match req.kind.as_deref() {
        Some("total") => Kind::Total,
        Some("partial") => Kind::Partial,
        Some(other) => {
            return Err(CamaraError::invalid(format!(
                "type: \"{}\" is not total or partial",
                crate::api::error::clip(other)
            )));
        }
        None => return Err(CamaraError::missing("type")),
    };
    let reason = model::opt_text("reason", req.reason, model::MAX_DESCRIPTION)?;
    let Some(at) = req.amount_transaction else {
        return Err(CamaraError::missing("amountTransaction"));
    };
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
    let Some(ra) = at.refund_amount else {
        return Err(CamaraError::missing("amountTransaction.refundAmount"));
    };
    let base = "amountTransaction.refundAmount";
    let meta =
        model::meta_data(&format!("{base}.chargingMetaData"), ra.charging_meta_data)?.map(|m| {
            RefundMetaData {
                merchant_identifier: m.merchant_identifier,
            }
        });
    let (charging_information, money, details) = match kind {
        Kind::Total => {
            if ra.charging_information.is_some() || ra.refund_details.is_some() {
                return Err(CamaraError::invalid(format!(
                    "{base}: a total refund takes no chargingInformation nor refundDetails (it \
                     refunds what is left of the payment)"
                )));
            }
            (None, None, None)
        }
        Kind::Partial => {
            let (ci, money) = model::charging_information(
                &format!("{base}.chargingInformation"),
                ra.charging_information,
            )?;
            let details = model::refund_details(
                &format!("{base}.refundDetails"),
                ra.refund_details,
                money.currency,
            )?;
            (Some(ci), Some(money), details)
        }
    };
    let app = client.id().to_string();
    if let (Some(max), Some(m)) = (client.0.max_amount(), &money)
        && m.amount > max
    {
        return Err(unprocessable(
            code::REFUND_UNAUTHORIZED_AMOUNT,
            format!(
                "Unauthorized amount requested. {m} is above the limit of application \
                 \"{app}\" ({max} per refund)."
            ),
        ));
    }
    // Async mode: the sink and its credential, checked before anything is stored or sent.
    let notify = events::subscription(&st, req.sink, req.sink_credential).await?;
    let refund_amount = RefundAmount {
        charging_information,
        charging_meta_data: meta,
        refund_details: details,
    };
    let hash = request_hash(
        "camara.refund",
        &Canonical {
            payment_id: &payment_id,
            kind,
            reason: reason.as_deref(),
            client_correlator: cc.as_deref(),
            reference_code: &reference,
            refund_amount: &refund_amount,
            sink: notify.as_ref().map(|n| n.sink.as_str()),
        },
    );
    let id = match &cc {
        Some(c) => derived_id("rf-", &[&app, "refund", &payment_id, "cc", c]),
        None => derived_id("rf-", &[&app, "refund", &payment_id, "ref", &reference]),
    };
    let marker = derived_id("cbref-", &[&app, "refund", &reference]);
    tracing::Span::current().record("operation_id", id.as_str());
    let _payment_lock = KeyGuard::lock(&st, &payment_id).await?;
    let _ref_lock = KeyGuard::lock(&st, &marker).await?;

    let payment = payments::current(&st, &app, &payment_id).await?;
    payments::visible(&client, &payment)?;

    let mut attempt = 1;
    if let Some((row, doc)) = load(&st, &app, &id).await? {
        let shown = row.kind == KIND_REFUND;
        let same = doc.hash == hash;
        match (shown, cc.is_some()) {
            (true, true) if same => {
                let doc = refresh(&st, &app, &payment, doc, Refresh::Full).await?;
                return match doc {
                    Some(d) if d.status == Status::Denied && d.notify.is_none() => Err(d
                        .refusal
                        .as_ref()
                        .map(CamaraError::from_info)
                        .unwrap_or_else(|| CamaraError::internal("denied without its answer"))),
                    Some(d) => Ok(created(&d)),
                    None => Err(CamaraError::unavailable(
                        "The earlier request with this key was interrupted before anything \
                         was sent: retry.",
                    )),
                };
            }
            (true, true) | (false, true) if !same && row.state != "not_sent" => {
                return Err(CamaraError::new(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_ARGUMENT,
                    "clientCorrelator already exist on server. It was used for a different \
                     request.",
                ));
            }
            (false, true) if row.state == "refused" => {
                return Err(doc
                    .refusal
                    .as_ref()
                    .map(CamaraError::from_info)
                    .unwrap_or_else(|| CamaraError::internal("refused without its answer")));
            }
            (true, false) => {
                return Err(CamaraError::new(
                    StatusCode::CONFLICT,
                    code::ALREADY_EXISTS,
                    format!(
                        "The resource that a client tried to create already exists. \
                         referenceCode \"{reference}\" is refund {id}."
                    ),
                ));
            }
            _ => attempt = doc.attempt.saturating_add(1),
        }
    }
    let store = st.charging.store();
    if let Some(m) = store.resource(&marker).await.map_err(store_err)?
        && let Some(owner) = m.parent.filter(|o| *o != id)
        && let Some(orow) = store.resource(&owner).await.map_err(store_err)?
        && orow.kind == KIND_REFUND
        && orow.app == app
    {
        return Err(CamaraError::new(
            StatusCode::CONFLICT,
            code::ALREADY_EXISTS,
            format!(
                "The resource that a client tried to create already exists. referenceCode \
                 \"{reference}\" is refund {owner}."
            ),
        ));
    }

    // The payment: completed, and something left to refund.
    if payment.status != PaymentStatus::Succeeded {
        return Err(unprocessable(
            code::INVALID_PAYMENT_STATUS,
            format!(
                "Payment is not yet completed. It is {}.",
                payment.status.name()
            ),
        ));
    }
    let refunds = current_refunds(&st, &app, &payment, true, Refresh::Full).await?;
    let not_eligible = |why: &str| {
        CamaraError::new(
            StatusCode::FORBIDDEN,
            code::PAYMENT_NOT_ELIGIBLE_FOR_REFUND,
            format!("Payment not eligible for refund. {why}"),
        )
    };
    if refunds
        .iter()
        .any(|r| r.kind == Kind::Total && r.status.holds())
    {
        return Err(not_eligible("It was refunded in total."));
    }
    let left = remaining(&payment, &refunds);
    let pci = &payment.payment_amount.charging_information;
    let amount = match (kind, &refund_amount.charging_information, money) {
        (Kind::Total, _, _) => {
            if left <= Decimal::ZERO {
                return Err(not_eligible("Nothing is left to refund."));
            }
            left
        }
        (Kind::Partial, Some(ci), Some(m)) => {
            if ci.currency != pci.currency {
                return Err(CamaraError::currency(format!(
                    "The payment is in {}, not {}.",
                    pci.currency, ci.currency
                )));
            }
            if ci.is_tax_included.unwrap_or(false) != pci.is_tax_included.unwrap_or(false) {
                return Err(unprocessable(
                    code::TAXES_MANAGEMENT_MISMATCH,
                    "Inconsistent isTaxIncluded value with regards to related payment.",
                ));
            }
            if m.amount > left {
                return Err(unprocessable(
                    code::REFUND_UNAUTHORIZED_AMOUNT,
                    format!(
                        "Unauthorized amount requested. {m} is more than the {left} {} left to \
                         refund.",
                        pci.currency
                    ),
                ));
            }
            if let Some(items) = &refund_amount.refund_details {
                check_details(&payment, &refunds, items, m.amount)?;
            }
            m.amount
        }
        (Kind::Partial, _, _) => {
            return Err(CamaraError::missing(
                "amountTransaction.refundAmount.chargingInformation",
            ));
        }
    };
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
    let doc = RefundDoc {
        id,
        payment_id: payment.id.clone(),
        kind,
        status: Status::Processing,
        hash,
        attempt,
        client_correlator: cc,
        reference_code: reference,
        reason,
        amount: Num(amount),
        refund_amount,
        created_ms: now,
        refund_ms: None,
        server_reference_code: None,
        refusal: None,
        notify,
    };
    // Durable (and counted against the remainder) before the CCR, and in async mode before
    // the answer.
    save(&st, &app, &doc, Place::Shown, None).await?;
    if doc.notify.is_some() {
        // Async mode: 201 processing now; the outcome comes as an event.
        let task = drive(
            st.clone(),
            app.clone(),
            doc.payment_id.clone(),
            doc.id.clone(),
        );
        tokio::spawn(task.instrument(tracing::Span::current()));
        return Ok(created(&doc));
    }
    let before = doc.status;
    let result = call(&st, &app, &payment, &doc).await;
    let (doc, place, error) = apply(doc, result, true);
    save(&st, &app, &doc, place, Some(before)).await?;
    match error {
        Some(e) => Err(e),
        None => Ok(created(&doc)),
    }
}

/// The background work of an async refund, once the request let go of the payment's lock.
async fn drive(st: ApiState, app: String, payment_id: String, id: String) {
    let _lock = match KeyGuard::lock(&st, &payment_id).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(refund = %id, error = %e.message, "async refund left to the recovery pass");
            return;
        }
    };
    if let Err(e) = recover_one(&st, &app, &payment_id, &id).await {
        tracing::warn!(refund = %id, error = %e.message, "async refund left to the recovery pass");
    }
}

/// One async refund, under its payment's lock: read again and, while `processing`, driven.
async fn recover_one(
    st: &ApiState,
    app: &str,
    payment_id: &str,
    id: &str,
) -> Result<(), CamaraError> {
    let doc = match load(st, app, id).await? {
        Some((row, d))
            if row.kind == KIND_REFUND
                && d.status == Status::Processing
                && d.notify.is_some()
                && d.payment_id == payment_id =>
        {
            d
        }
        _ => return Ok(()),
    };
    let payment = payments::load_shown(st, app, payment_id).await?;
    refresh(st, app, &payment, doc, Refresh::Full).await?;
    Ok(())
}

/// The recovery pass over async refunds ([`events::recover`]): those left `processing` past
/// the grace, each under its payment's lock if nobody holds it.
pub(crate) async fn recover_due(st: &ApiState, now: i64) -> usize {
    let due = st
        .charging
        .store()
        .resources(ResourceFilter {
            kind: Some(KIND_REFUND.into()),
            due_before_ms: Some(now),
            ascending: true,
            limit: 100,
            ..ResourceFilter::default()
        })
        .await;
    let rows = match due {
        Ok((rows, _)) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "CAMARA recovery: refunds not read");
            return 0;
        }
    };
    let mut seen = 0;
    for r in rows {
        let Some(payment_id) = r.parent.clone() else {
            continue;
        };
        let Some(_lock) = KeyGuard::try_lock(st, &payment_id).await else {
            continue;
        };
        seen += 1;
        if let Err(e) = recover_one(st, &r.app, &payment_id, &r.id).await {
            tracing::warn!(refund = %r.id, error = %e.message, "CAMARA recovery: refund not brought up to date");
        }
    }
    seen
}

/// `refundDetails`: items of the payment's `paymentDetails`, each within what is left of it,
/// adding up to the refund's amount.
fn check_details(
    payment: &PaymentDoc,
    refunds: &[RefundDoc],
    items: &[model::RefundItem],
    amount: Decimal,
) -> Result<(), CamaraError> {
    let mismatch = |why: String| {
        unprocessable(
            code::REFUND_DETAILS_MISMATCH,
            format!(
                "Inconsistent refundDetails information with regards to related payment. {why}"
            ),
        )
    };
    let Some(paid) = &payment.payment_amount.payment_details else {
        return Err(mismatch("The payment has no paymentDetails.".into()));
    };
    let sum: Decimal = items.iter().map(|i| i.amount.0).sum();
    if sum != amount {
        return Err(mismatch(format!(
            "The items add up to {sum}, not to the amount {amount}."
        )));
    }
    for (i, it) in items.iter().enumerate() {
        let Some(p) = paid.iter().find(|p| p.id == it.payment_item_id) else {
            return Err(mismatch(format!(
                "refundDetails[{i}].paymentItemId: no item \"{}\" in the payment.",
                it.payment_item_id
            )));
        };
        let before: Decimal = refunds
            .iter()
            .filter(|r| r.status.holds())
            .filter_map(|r| r.refund_amount.refund_details.as_ref())
            .flatten()
            .chain(items.iter().take(i))
            .filter(|x| x.payment_item_id == it.payment_item_id)
            .map(|x| x.amount.0)
            .sum();
        if before + it.amount.0 > p.amount.0 {
            return Err(mismatch(format!(
                "refundDetails[{i}]: {} is more than the {} left of item \"{}\".",
                it.amount,
                p.amount.0 - before,
                p.id
            )));
        }
    }
    Ok(())
}

/// createRefund.
#[utoipa::path(
    post, path = super::REFUNDS, tag = "camara-refund", operation_id = "createRefund",
    request_body(content = CreateRefund, content_type = "application/json"),
    params(
        ("paymentId" = String, Path, description = "A `succeeded` payment of the caller"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 201, description = "Refunded (`succeeded`; `processing` while the OCS's \
        answer is not known)", body = Refund))
)]
pub(crate) async fn create_refund(
    State(st): State<ApiState>,
    client: Client,
    Path(payment_id): Path<String>,
    body: Body,
) -> Response {
    answer(create(st, client, payment_id, body).await)
}

/// The payment (of the caller) and its refunds, brought up to date when nobody is working on
/// the payment.
async fn payment_and_refunds(
    st: &ApiState,
    app: &str,
    payment_id: &str,
    how: Refresh,
) -> Result<(PaymentDoc, Vec<RefundDoc>), CamaraError> {
    let payment = payments::load_shown(st, app, payment_id).await?;
    let lock = KeyGuard::try_lock(st, payment_id).await;
    let payment = match &lock {
        Some(_) => payments::load_shown(st, app, payment_id).await?,
        None => payment,
    };
    let refunds = current_refunds(st, app, &payment, lock.is_some(), how).await?;
    Ok((payment, refunds))
}

/// retrieveRefund.
#[utoipa::path(
    get, path = super::REFUND, tag = "camara-refund", operation_id = "retrieveRefund",
    params(
        ("paymentId" = String, Path, description = "The refunded payment"),
        ("refundId" = String, Path, description = "From createRefund"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "The refund", body = Refund))
)]
pub(crate) async fn retrieve_refund(
    State(st): State<ApiState>,
    client: Client,
    Path((payment_id, refund_id)): Path<(String, String)>,
) -> Response {
    answer(
        async {
            client.require(scope::REFUNDS_READ)?;
            let payment_id = path_id("paymentId", &payment_id)?;
            let refund_id = path_id("refundId", &refund_id)?;
            let app = client.id();
            let payment = payments::load_shown(&st, app, &payment_id).await?;
            payments::visible(&client, &payment)?;
            let not_found = || CamaraError::not_found(format!("No refund \"{refund_id}\"."));
            let doc = match load(&st, app, &refund_id).await? {
                Some((row, d)) if row.kind == KIND_REFUND && d.payment_id == payment_id => d,
                _ => return Err(not_found()),
            };
            let doc = match (doc.status, KeyGuard::try_lock(&st, &payment_id).await) {
                (Status::Processing, Some(_lock)) => {
                    let fresh = load(&st, app, &refund_id).await?.ok_or_else(not_found)?.1;
                    refresh(&st, app, &payment, fresh, Refresh::Full)
                        .await?
                        .ok_or_else(not_found)?
                }
                _ => doc,
            };
            Ok(axum::Json(doc.view()).into_response())
        }
        .await,
    )
}

const NAMES: Names = Names {
    date: "refundCreationDate",
    status: "refundStatus",
    statuses: Status::NAMES,
    invalid_date_range: code::REFUND_INVALID_DATE_RANGE,
    too_many: code::REFUND_TOO_MANY_MATCHING_RECORDS,
};

/// retrieveRefunds: a payment's refunds.
#[utoipa::path(
    get, path = super::REFUNDS, tag = "camara-refund", operation_id = "retrieveRefunds",
    params(
        ("paymentId" = String, Path, description = "A payment of the caller"),
        ("x-correlator" = Option<String>, Header, description = "Echoed"),
        ("page" = Option<usize>, Query, description = "From 1 (default 1)"),
        ("perPage" = Option<usize>, Query, description = "1 to 100 (default 10)"),
        ("refundCreationDate.gte" = Option<String>, Query, description = "RFC 3339 with zone"),
        ("refundCreationDate.lte" = Option<String>, Query, description = "RFC 3339 with zone"),
        ("order" = Option<String>, Query, description = "desc (default) or asc"),
        ("refundStatus" = Option<Vec<String>>, Query, description = "processing, denied, succeeded"),
        ("merchantIdentifier" = Option<String>, Query, description = "refundAmount.chargingMetaData.merchantIdentifier")),
    responses((status = 200, description = "One page; X-Total-Count, Content-Last-Key", body = Vec<Refund>))
)]
pub(crate) async fn retrieve_refunds(
    State(st): State<ApiState>,
    client: Client,
    Path(payment_id): Path<String>,
    uri: Uri,
) -> Response {
    answer(
        async {
            client.require(scope::REFUNDS_READ)?;
            let payment_id = path_id("paymentId", &payment_id)?;
            let q = ListQuery::parse(&uri, &NAMES)?;
            let app = client.id();
            let (payment, _) = payment_and_refunds(&st, app, &payment_id, Refresh::Cheap).await?;
            payments::visible(&client, &payment)?;
            let page = list::list(
                st.charging.store(),
                app,
                KIND_REFUND,
                Some(&payment_id),
                &q,
                &NAMES,
                |r| {
                    serde_json::from_str::<RefundDoc>(&r.body)
                        .ok()
                        .and_then(|d| d.merchant())
                },
            )
            .await?;
            let mut items = Vec::with_capacity(page.rows.len());
            for r in &page.rows {
                let d: RefundDoc = serde_json::from_str(&r.body).map_err(|e| {
                    CamaraError::internal(format!("refund {}: unreadable record: {e}", r.id))
                })?;
                items.push(d.view());
            }
            Ok(list::answer(&items, page.total, page.offset))
        }
        .await,
    )
}

/// retrievePaymentRemainingAmount.
#[utoipa::path(
    get, path = super::REMAINING_AMOUNT, tag = "camara-refund",
    operation_id = "retrievePaymentRemainingAmount",
    params(
        ("paymentId" = String, Path, description = "A payment of the caller"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "Not refunded yet (refunds `processing` count as \
        refunded until they end)", body = PaymentRemainingAmount))
)]
pub(crate) async fn retrieve_remaining_amount(
    State(st): State<ApiState>,
    client: Client,
    Path(payment_id): Path<String>,
) -> Response {
    answer(
        async {
            client.require(scope::REFUNDS_READ)?;
            let payment_id = path_id("paymentId", &payment_id)?;
            let app = client.id();
            let (payment, refunds) =
                payment_and_refunds(&st, app, &payment_id, Refresh::Full).await?;
            payments::visible(&client, &payment)?;
            let pci = &payment.payment_amount.charging_information;
            let left = if payment.status == PaymentStatus::Succeeded {
                remaining(&payment, &refunds)
            } else {
                Decimal::ZERO
            };
            let mut left = left.max(Decimal::ZERO);
            if let Some(minor) = iso_currency::Currency::from_code(&pci.currency)
                .and_then(|c| crate::credit_control::money::minor_unit(c).ok())
            {
                left.rescale(minor);
            }
            Ok(axum::Json(PaymentRemainingAmount {
                amount: Num(left),
                currency: pci.currency.clone(),
                description: if payment.status == PaymentStatus::Succeeded {
                    "Amount not refunded so far".into()
                } else {
                    format!(
                        "The payment is {}: nothing can be refunded",
                        payment.status.name()
                    )
                },
                is_tax_included: pci.is_tax_included,
            })
            .into_response())
        }
        .await,
    )
}
