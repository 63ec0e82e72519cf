//! CAMARA Carrier Billing **Checkout** (the legacy purchase model, v0.7.0, archived as
//! `reference/camara/carrier-billing-checkout-legacy.yaml`; API.md 3, 6.2, 9.2): a purchase
//! first, then its payment, in one step or two.
//!
//! ```text
//! POST /carrier-billing-checkout/v0/purchases                    no CCR           201 initialising
//! GET  /carrier-billing-checkout/v0/purchases[/{purchaseId}]     the caller's (page, perPage, seek)
//! POST .../purchases/{purchaseId}/payment          CCR EVENT DIRECT_DEBITING   200 succeeded
//! POST .../purchases/{purchaseId}/payment/prepare  CCR INITIAL (reserve)       200 ready_to_confirm
//! POST .../purchases/{purchaseId}/payment/confirm  CCR TERMINATION USU=amount  202 -> succeeded
//! POST .../purchases/{purchaseId}/payment/cancel   CCR TERMINATION USU=0       202 -> cancelled
//! ```
//!
//! A purchase is a [`ResourceRow`] of kind `camara.checkout.purchase`. Its payment **is** a
//! payment of the payments API ([`PaymentDoc`], 1-step or 2-step flow), bound to the purchase
//! (`PaymentDoc::purchase`) and kept under the kinds `camara.checkout.payment[.void]`, with
//! an id derived from the application and the purchase: charging, idempotency, restarts,
//! reservation expiry and the resolution of unknown outcomes are the payments' own code. The
//! purchase's status is read from its payment:
//!
//! ```text
//!   no payment (or nothing sent)         initialising
//!   payment processing (outcome unknown)  processing     never succeeded/failed until learnt
//!   reserved                             ready_to_confirm
//!   succeeded | cancelled                succeeded | cancelled
//!   refused by the OCS (or denied)        failed          a new purchase is needed
//! ```
//!
//! Answers: an OCS refusal is 403 (PERMISSION_DENIED; 404 IDENTIFIER_NOT_FOUND for an unknown
//! subscriber), no OCS 503, an outcome not known 504 TIMEOUT with the purchase `processing`
//! (a GET or the same request again learns it; nothing is charged twice).
//!
//! Notifications: a purchase created with `notificationUrl` (checked against
//! `[notifications]`: https unless `allow_http`, public addresses or `allowed_networks`) gets
//! a `Notification` posted to `{notificationUrl}/notifications` (the spec's callback
//! expression; a trailing `/` of the URL's path is not doubled) for each payment procedure's
//! outcome, through the durable outbox, written in the same commit as the purchase's new
//! status:
//!
//! ```text
//!   preparePayment  reserved -> prepare_payment succeeded    refused -> prepare_payment failed
//!   createPayment   charged  -> confirm_payment succeeded    refused -> confirm_payment failed
//!     (one step: the spec names no action of its own; the charge is what confirm does)
//!   confirmPayment  charged  -> confirm_payment succeeded    refused, or the reservation
//!                                                            ended -> confirm_payment failed
//!   cancelPayment, or the reservation ended (expiry)  -> cancel_payment succeeded
//! ```
//!
//! `paymentDate` when the amount was charged. Each action is notified once per purchase
//! (the purchase records which were); an outcome learnt later (an unknown outcome resolved,
//! an expiry) is notified when the gateway learns it: by the same request again, by a read of
//! the purchase, or by the next payment request on it. `notificationAuthToken` is sent as
//! the spec's `apiKey` security scheme says: the query parameter `apikey` of the callback
//! (`securitySchemes.apiKey: {in: query, name: apikey}`); it is kept with the purchase and
//! never answered. `x-correlator` is the event's stable id. `preparePayment` never answers `paymentOtp` (optional in
//! the definition): no OTP validation is configured. This gateway's tokens are 2-legged, so
//! `phoneNumber` is required in `RequestPayment` (else 403
//! `CARRIER_BILLING_CHECKOUT.PHONE_NUMBER_REQUIRED`).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{CamaraError, code};
use super::list::{self, ListQuery, Names};
use super::model::{self, MAX_DESCRIPTION, MAX_KEY, Num, object, objects};
use super::payments::{
    CHECKOUT_KINDS, Flow, PaymentDoc, Pending, Place, Refresh, Status, load_in, read_in, refresh,
    run, save, store_err,
};
use super::{
    Body, Client, KIND_PURCHASE, KeyGuard, answer, derived_id, location, path_id, request_hash,
    rfc3339, scope,
};
use crate::api::ApiState;
use crate::credit_control::Money;
use crate::store::{EventRow, EventState, ResourceFilter, ResourceRow, now_ms};

/// The checkout's own codes (API.md 3.2).
pub mod checkout_code {
    pub const PURCHASE_AMOUNT_OVERPASSED: &str =
        "CARRIER_BILLING_CHECKOUT.PURCHASE_AMOUNT_OVERPASSED";
    pub const PHONE_NUMBER_REQUIRED: &str = "CARRIER_BILLING_CHECKOUT.PHONE_NUMBER_REQUIRED";
    pub const PAYMENT_REACHED_FINAL_STATUS: &str =
        "CARRIER_BILLING_CHECKOUT.PAYMENT_REACHED_FINAL_STATUS";
    pub const FAILED_PRECONDITION: &str = "FAILED_PRECONDITION";
}

/// The last 24 hours: what `getPurchases` lists without any paging parameter.
const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;

// ---- requests --------------------------------------------------------------------------------

/// Body of `createPurchase` (`CreatePurchase`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePurchase {
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub payable: Option<PayableInput>,
    /// Where the outcome of each payment procedure is notified: `POST
    /// {notificationUrl}/notifications`. https (public addresses only, unless the gateway's
    /// `[notifications]` allows more).
    #[schema(value_type = Option<String>, example = "https://notifications-service.com/purchases")]
    pub notification_url: Option<serde_json::Value>,
    /// Only with `notificationUrl`: sent with every notification as the query parameter
    /// `apikey` (the spec's apiKey scheme); never answered.
    #[schema(value_type = Option<String>)]
    pub notification_auth_token: Option<serde_json::Value>,
}

/// `PolymorphicPayable`: only `DigitalGood` (`type: digital_good`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayableInput {
    #[serde(rename = "type")]
    #[schema(required = true, nullable = false, example = "digital_good")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "object")]
    pub merchant: Option<MarketMerchantInput>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub order: Option<MarketOrderInput>,
}

/// `MarketMerchant`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketMerchantInput {
    #[schema(required = true, nullable = false)]
    pub id: Option<String>,
    pub name: Option<String>,
    /// Percentage, 0 to 100, at most 2 decimals.
    pub fee: Option<Num>,
}

/// `MarketOrder`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrderInput {
    pub id: Option<String>,
    #[serde(default, deserialize_with = "objects")]
    #[schema(required = true, nullable = false, min_items = 1, max_items = 100)]
    pub items: Option<Vec<MarketOrderItemInput>>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub total_amount: Option<MoneyAmountInput>,
}

/// `MarketOrderItem`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrderItemInput {
    #[schema(required = true, nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub amount: Option<MoneyAmountInput>,
}

/// `MoneyAmount`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoneyAmountInput {
    /// Above zero, multipleOf 0.01 and within the currency's minor unit.
    #[schema(required = true, nullable = false)]
    pub value: Option<Num>,
    /// ISO 4217 alphabetic code.
    #[schema(required = true, nullable = false, example = "EUR")]
    pub currency: Option<String>,
    /// Default false. One value for an order: an item without it takes the total's (or, when
    /// the total has none, the items'); an item contradicting it is refused (400).
    pub tax_included: Option<bool>,
}

/// Body of `createPayment` and `preparePayment` (`RequestPayment`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestPayment {
    /// E.164 with `+`. Required here: this gateway's tokens carry no phone number.
    #[schema(example = "+34671999000", pattern = r"^\+[1-9][0-9]{4,14}$")]
    pub phone_number: Option<String>,
}

// ---- canonical forms: stored and answered ----------------------------------------------------

/// `MoneyAmount`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CheckoutMoneyAmount)]
pub struct MoneyAmount {
    pub value: Num,
    #[schema(example = "EUR")]
    pub currency: String,
    pub tax_included: bool,
}

/// `MarketMerchant`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketMerchant {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Num>,
}

/// `MarketOrderItem`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrderItem {
    pub name: String,
    pub amount: MoneyAmount,
}

/// `MarketOrder`, checked: the items add up to `totalAmount`, all in its currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub items: Vec<MarketOrderItem>,
    pub total_amount: MoneyAmount,
}

/// `DigitalGood`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitalGood {
    /// `digital_good`.
    #[serde(rename = "type")]
    #[schema(example = "digital_good")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<MarketMerchant>,
    pub order: MarketOrder,
}

/// `PurchaseCreated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseCreated {
    pub payable: DigitalGood,
    /// A UUID.
    pub id: String,
    /// `initialising`.
    #[schema(example = "initialising")]
    pub status: String,
}

/// `PurchaseInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseInfo {
    pub payable: DigitalGood,
    pub id: String,
    /// `initialising`, `ready_to_confirm`, `processing`, `succeeded`, `failed`, `cancelled`.
    #[schema(example = "succeeded")]
    pub status: String,
    /// When its payment was created (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_creation_date: Option<String>,
    /// When the amount was charged (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_date: Option<String>,
}

/// `PaymentInfo` (createPayment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CheckoutPaymentInfo)]
pub struct PaymentInfo {
    /// The purchase's id.
    pub id: String,
    /// `succeeded` (a refusal is an error answer; the purchase is then `failed`).
    #[schema(example = "succeeded")]
    pub status: String,
}

/// `PreparePaymentInfo` (preparePayment). `paymentOtp` is optional in the definition and never
/// given: no OTP validation is configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreparePaymentInfo {
    pub id: String,
    /// `ready_to_confirm`.
    #[schema(example = "ready_to_confirm")]
    pub status: String,
}

/// A purchase's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseStatus {
    Initialising,
    ReadyToConfirm,
    Processing,
    Succeeded,
    Failed,
    Cancelled,
}

impl PurchaseStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Initialising => "initialising",
            Self::ReadyToConfirm => "ready_to_confirm",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a purchase whose payment (row and document) is `payment`.
    pub fn of(payment: Option<&(ResourceRow, PaymentDoc)>) -> Self {
        match payment {
            None => Self::Initialising,
            Some((row, _)) if row.kind != CHECKOUT_KINDS.shown && row.state == "refused" => {
                Self::Failed
            }
            // Nothing was sent: a new attempt may be made.
            Some((row, _)) if row.kind != CHECKOUT_KINDS.shown => Self::Initialising,
            Some((_, doc)) => Self::of_shown(doc),
        }
    }

    /// The status of a purchase whose payment is shown as `doc`.
    pub fn of_shown(doc: &PaymentDoc) -> Self {
        match doc.status {
            Status::Processing => Self::Processing,
            Status::Reserved | Status::PendingValidation => Self::ReadyToConfirm,
            Status::Succeeded => Self::Succeeded,
            Status::Denied => Self::Failed,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// The stored document of a purchase (`ResourceRow::body`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseDoc {
    pub id: String,
    pub payable: DigitalGood,
    pub created_ms: i64,
    /// Where its notifications go, if the client asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyTarget>,
    /// The actions notified so far (each once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
}

/// A purchase's notification target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyTarget {
    /// `{notificationUrl}/notifications`, checked.
    pub url: String,
    /// `notificationAuthToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl PurchaseDoc {
    /// The id of this purchase's payment (one per purchase and application).
    fn payment_id(&self, app: &str) -> String {
        derived_id("ckpay-", &[app, "checkout", &self.id])
    }

    /// What its payment charges, in the payments' own terms.
    fn payment_amount(&self) -> model::PaymentAmount {
        let order = &self.payable.order;
        let description = match &order.id {
            Some(o) => format!("purchase {} (order {o})", self.id),
            None => format!("purchase {}", self.id),
        };
        model::PaymentAmount {
            charging_information: model::ChargingInformation {
                amount: order.total_amount.value,
                currency: order.total_amount.currency.clone(),
                description,
                is_tax_included: Some(order.total_amount.tax_included),
                tax_amount: None,
            },
            charging_meta_data: self
                .payable
                .merchant
                .as_ref()
                .map(|m| model::ChargingMetaData {
                    merchant_name: m.name.clone(),
                    merchant_identifier: Some(m.id.clone()),
                    fee: m.fee,
                    ..model::ChargingMetaData::default()
                }),
            payment_details: None,
        }
    }

    fn info(&self, payment: Option<&(ResourceRow, PaymentDoc)>) -> PurchaseInfo {
        let doc = payment
            .filter(|(row, _)| row.kind == CHECKOUT_KINDS.shown)
            .map(|(_, d)| d);
        PurchaseInfo {
            payable: self.payable.clone(),
            id: self.id.clone(),
            status: PurchaseStatus::of(payment).name().to_string(),
            payment_creation_date: doc.map(|d| rfc3339(d.created_ms)),
            payment_date: doc.and_then(|d| d.payment_ms).map(rfc3339),
        }
    }
}

// ---- checks ----------------------------------------------------------------------------------

/// A `MoneyAmount`: multipleOf 0.01, above zero, exact in an ISO 4217 currency; with the
/// `taxIncluded` the client sent, if it sent one (the caller settles the order's).
fn money_amount(
    path: &str,
    m: Option<MoneyAmountInput>,
) -> Result<(MoneyAmount, Money, Option<bool>), CamaraError> {
    let Some(m) = m else {
        return Err(CamaraError::missing(path));
    };
    let cur = model::currency(&format!("{path}.currency"), m.currency)?;
    let value = format!("{path}.value");
    if let Some(v) = m.value {
        model::decimals(&value, v, 2)?;
    }
    let money = model::amount(&value, m.value, cur)?;
    Ok((
        MoneyAmount {
            value: Num(money.amount),
            currency: cur.code().to_string(),
            tax_included: m.tax_included.unwrap_or(false),
        },
        money,
        m.tax_included,
    ))
}

/// The order's `taxIncluded`, one for the total and every item: the items add up to the total,
/// so either they all include taxes or none does. The total's value when the client gave it,
/// else the first item's that gave one, else the schema's default (false). An item (or, with
/// the total silent, an item after the first) that says otherwise contradicts it: 400 naming
/// both. `given[i]` is what item `i` sent.
fn tax_basis(op: &str, total: Option<bool>, given: &[Option<bool>]) -> Result<bool, CamaraError> {
    let (basis, from) = match (total, given.iter().position(Option::is_some)) {
        (Some(t), _) => (t, format!("{op}.totalAmount.taxIncluded")),
        (None, Some(i)) => (
            given.get(i).copied().flatten().unwrap_or(false),
            format!("{op}.items[{i}].amount.taxIncluded"),
        ),
        (None, None) => return Ok(false),
    };
    for (i, g) in given.iter().enumerate() {
        if let Some(v) = g
            && *v != basis
        {
            return Err(CamaraError::invalid(format!(
                "{op}.items[{i}].amount.taxIncluded: {v} contradicts {from} ({basis}): the items \
                 add up to the total, so they include taxes exactly when it does"
            )));
        }
    }
    Ok(basis)
}

/// `payable`, checked: a digital good whose items add up to its total.
pub fn digital_good(
    path: &str,
    p: Option<PayableInput>,
) -> Result<(DigitalGood, Money), CamaraError> {
    let Some(p) = p else {
        return Err(CamaraError::missing(path));
    };
    match p.kind.as_deref() {
        Some("digital_good") => {}
        None => return Err(CamaraError::missing(&format!("{path}.type"))),
        Some(other) => {
            return Err(CamaraError::invalid(format!(
                "{path}.type: \"{}\" is not a payable of this API (digital_good)",
                crate::api::error::clip(other)
            )));
        }
    }
    let merchant = match p.merchant {
        None => None,
        Some(m) => Some(MarketMerchant {
            id: model::text(&format!("{path}.merchant.id"), m.id, MAX_KEY)?,
            name: model::opt_text(&format!("{path}.merchant.name"), m.name, MAX_KEY)?,
            fee: model::fee(&format!("{path}.merchant.fee"), m.fee)?,
        }),
    };
    let op = format!("{path}.order");
    let Some(o) = p.order else {
        return Err(CamaraError::missing(&op));
    };
    let id = model::opt_text(&format!("{op}.id"), o.id, MAX_KEY)?;
    let (mut total_amount, total, total_tax) =
        money_amount(&format!("{op}.totalAmount"), o.total_amount)?;
    let Some(inputs) = o.items else {
        return Err(CamaraError::missing(&format!("{op}.items")));
    };
    if inputs.is_empty() || inputs.len() > model::MAX_ITEMS {
        return Err(CamaraError::invalid(format!(
            "{op}.items: 1 to {} items expected",
            model::MAX_ITEMS
        )));
    }
    let mut items = Vec::with_capacity(inputs.len());
    let mut taxes = Vec::with_capacity(inputs.len());
    let mut sum = Decimal::ZERO;
    for (i, it) in inputs.into_iter().enumerate() {
        let ip = format!("{op}.items[{i}]");
        let name = model::text(&format!("{ip}.name"), it.name, MAX_DESCRIPTION)?;
        let (amount, m, tax) = money_amount(&format!("{ip}.amount"), it.amount)?;
        if m.currency != total.currency {
            return Err(CamaraError::invalid(format!(
                "{ip}.amount.currency: {} differs from the totalAmount's {}",
                m.currency.code(),
                total.currency.code()
            )));
        }
        sum = sum
            .checked_add(m.amount)
            .ok_or_else(|| CamaraError::invalid(format!("{op}.items: the sum is too large")))?;
        items.push(MarketOrderItem { name, amount });
        taxes.push(tax);
    }
    if sum != total.amount {
        return Err(CamaraError::invalid(format!(
            "{op}.totalAmount.value: {} is not the sum of the items ({sum})",
            total.amount
        )));
    }
    let tax_included = tax_basis(&op, total_tax, &taxes)?;
    total_amount.tax_included = tax_included;
    for it in &mut items {
        it.amount.tax_included = tax_included;
    }
    Ok((
        DigitalGood {
            kind: "digital_good".into(),
            merchant,
            order: MarketOrder {
                id,
                items,
                total_amount,
            },
        },
        total,
    ))
}

/// The application's policy on what it may sell: its currencies (400, as the payments API),
/// its largest amount (403 PURCHASE_AMOUNT_OVERPASSED).
fn policy(client: &Client, total: &Money) -> Result<(), CamaraError> {
    let app = client.id();
    let cur: Currency = total.currency;
    if !client.0.may_use_currency(cur.code()) {
        return Err(CamaraError::currency(format!(
            "Application \"{app}\" may not sell in {}.",
            cur.code()
        )));
    }
    if let Some(max) = client.0.max_amount()
        && total.amount > max
    {
        return Err(CamaraError::new(
            StatusCode::FORBIDDEN,
            checkout_code::PURCHASE_AMOUNT_OVERPASSED,
            format!(
                "Purchase amount overpasses applicable regulation. {total} is above the limit of \
                 application \"{app}\" ({max} per purchase)."
            ),
        ));
    }
    Ok(())
}

/// A new purchase id: a random (version 4) UUID.
fn new_purchase_id() -> String {
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{n:032x}");
    let part = |a: usize, b: usize| h.get(a..b).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

// ---- errors ----------------------------------------------------------------------------------

fn final_status(status: PurchaseStatus) -> CamaraError {
    CamaraError::new(
        StatusCode::CONFLICT,
        checkout_code::PAYMENT_REACHED_FINAL_STATUS,
        format!(
            "Payment already reached a final status. No further actions can be performed. The \
             purchase is {}.",
            status.name()
        ),
    )
}

fn precondition(detail: impl std::fmt::Display) -> CamaraError {
    CamaraError::new(
        StatusCode::PRECONDITION_FAILED,
        checkout_code::FAILED_PRECONDITION,
        format!("Request cannot be executed in the current system state. {detail}"),
    )
}

fn already_exists(status: PurchaseStatus) -> CamaraError {
    CamaraError::new(
        StatusCode::CONFLICT,
        code::ALREADY_EXISTS,
        format!(
            "A specified resource duplicate entry found. This purchase already has a payment \
             (the purchase is {}); a new payment needs a new purchase.",
            status.name()
        ),
    )
}

/// The OCS's answer is not known: the purchase stays `processing`.
fn unknown() -> CamaraError {
    CamaraError::new(
        StatusCode::GATEWAY_TIMEOUT,
        code::TIMEOUT,
        "Request timeout exceeded. The OCS's answer is not known yet: the purchase stays \
         processing. Read the purchase, or send this request again, to learn the outcome \
         (nothing is charged twice).",
    )
}

/// A payments answer in the checkout's terms (API.md 9.2): a refusal by business is 403
/// PERMISSION_DENIED; a reservation that ended is a final status.
fn checkout_error(e: CamaraError) -> CamaraError {
    if e.code == code::PAYMENT_DENIED {
        CamaraError::new(StatusCode::FORBIDDEN, code::PERMISSION_DENIED, e.message)
    } else if e.code == code::PAYMENT_CANCELLED {
        CamaraError::new(
            StatusCode::CONFLICT,
            checkout_code::PAYMENT_REACHED_FINAL_STATUS,
            format!(
                "Payment already reached a final status. No further actions can be performed. \
                 {}",
                e.message
            ),
        )
    } else {
        e
    }
}

// ---- notifications ---------------------------------------------------------------------------

/// Most characters of a `notificationAuthToken`.
const MAX_TOKEN: usize = 1024;
/// The path the client implements under its `notificationUrl` (the spec's callback
/// `{$request.body#/notificationUrl}/notifications`).
const NOTIFICATIONS_PATH: &str = "/notifications";
/// The query parameter of the spec's `apiKey` security scheme (`in: query`).
pub const API_KEY_PARAM: &str = "apikey";

/// `notificationUrl` and `notificationAuthToken`, checked (400 INVALID_ARGUMENT naming the
/// member and the reason).
async fn notify_target(
    st: &ApiState,
    url: Option<serde_json::Value>,
    token: Option<serde_json::Value>,
) -> Result<Option<NotifyTarget>, CamaraError> {
    let text = |name: &str, v: Option<serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CamaraError::invalid(format!("{name}: a string expected"))),
    };
    let url = text("notificationUrl", url)?;
    let token = text("notificationAuthToken", token)?;
    let Some(url) = url else {
        if token.is_some() {
            return Err(CamaraError::invalid(
                "notificationAuthToken: only with notificationUrl (the token is sent with the \
                 notifications)",
            ));
        }
        return Ok(None);
    };
    if let Some(t) = &token
        && (t.is_empty() || t.chars().count() > MAX_TOKEN || t.chars().any(char::is_control))
    {
        return Err(CamaraError::invalid(format!(
            "notificationAuthToken: 1 to {MAX_TOKEN} characters, no control characters"
        )));
    }
    let mut u = st
        .destinations()
        .check(&url, st.notifications.connect_timeout)
        .await
        .map_err(|e| CamaraError::invalid(format!("notificationUrl: {e}")))?;
    let path = format!("{}{NOTIFICATIONS_PATH}", u.path().trim_end_matches('/'));
    u.set_path(&path);
    Ok(Some(NotifyTarget {
        url: u.to_string(),
        token,
    }))
}

/// The procedures a notification tells of (`Notification.action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Prepare,
    Confirm,
    Cancel,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Prepare => "prepare_payment",
            Self::Confirm => "confirm_payment",
            Self::Cancel => "cancel_payment",
        }
    }
}

/// One notification to send.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Note {
    action: Action,
    succeeded: bool,
    description: String,
    payment_ms: Option<i64>,
}

/// `Notification`, as posted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification<'a> {
    purchase_id: &'a str,
    action: &'a str,
    status: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_date: Option<String>,
}

/// What a payment kept at `place` as `doc` tells, first things first; `hint`: the procedure
/// whose outcome this is, when a request just ran one.
fn notes(place: Place, doc: &PaymentDoc, hint: Option<Pending>) -> Vec<Note> {
    let note = |action, succeeded, description: String, payment_ms| Note {
        action,
        succeeded,
        description,
        payment_ms,
    };
    let refused_at = doc.refusal.as_ref().map(|(p, _)| *p);
    let refusal = || match &doc.refusal {
        Some((_, e)) => format!("The payment was refused: {}", e.message),
        None => "The payment was refused.".to_string(),
    };
    let failed_action = |p: Option<Pending>| match (p, doc.flow) {
        (Some(Pending::Prepare), _) | (None, Flow::TwoStep) => Action::Prepare,
        _ => Action::Confirm,
    };
    match place {
        Place::NotSent => Vec::new(),
        Place::Refused => vec![note(failed_action(refused_at), false, refusal(), None)],
        Place::Shown => {
            let mut out = Vec::new();
            let prepared = doc.flow == Flow::TwoStep
                && match doc.status {
                    Status::Reserved | Status::Succeeded | Status::Cancelled => true,
                    Status::Processing => {
                        matches!(doc.pending, Some(Pending::Confirm | Pending::Cancel))
                    }
                    Status::Denied => refused_at == Some(Pending::Confirm),
                    Status::PendingValidation => false,
                };
            if prepared {
                out.push(note(
                    Action::Prepare,
                    true,
                    "The payment is prepared: the total amount is reserved; confirm or cancel \
                     it."
                    .into(),
                    None,
                ));
            }
            match doc.status {
                Status::Succeeded => out.push(note(
                    Action::Confirm,
                    true,
                    "The payment is done: the total amount was charged.".into(),
                    doc.payment_ms,
                )),
                Status::Denied => out.push(note(
                    failed_action(refused_at.or(Some(Pending::Confirm))),
                    false,
                    refusal(),
                    None,
                )),
                Status::Cancelled => out.push(match hint {
                    Some(Pending::Confirm) => note(
                        Action::Confirm,
                        false,
                        "The reservation ended before the confirmation (it expired or was \
                         released): nothing was charged; the purchase is cancelled."
                            .into(),
                        None,
                    ),
                    Some(Pending::Cancel) => note(
                        Action::Cancel,
                        true,
                        "The payment was cancelled: the reservation was released and nothing \
                         was charged."
                            .into(),
                        None,
                    ),
                    _ => note(
                        Action::Cancel,
                        true,
                        "The reservation ended (it expired) before a confirmation: nothing \
                         was charged; the purchase is cancelled."
                            .into(),
                        None,
                    ),
                }),
                Status::Processing | Status::Reserved | Status::PendingValidation => {}
            }
            out
        }
    }
}

/// [`notes`] not recorded for purchase `p` yet (each action is notified once; a purchase
/// whose confirmation was notified is not notified a cancellation as well).
fn due_notes(p: &PurchaseDoc, place: Place, doc: &PaymentDoc, hint: Option<Pending>) -> Vec<Note> {
    let done = |a: Action| p.notified.iter().any(|n| n == a.name());
    notes(place, doc, hint)
        .into_iter()
        .filter(|n| {
            let superseded = n.action == Action::Cancel && done(Action::Confirm);
            !done(n.action) && !superseded
        })
        .collect()
}

/// The outbox event posting `note` about purchase `purchase` of `app` to `target`: a stable
/// id per purchase and action (also its `x-correlator`), the token as `?apikey=`.
fn notification_event(
    app: &str,
    purchase: &str,
    target: &NotifyTarget,
    note: &Note,
    now: i64,
) -> Result<EventRow, CamaraError> {
    let id = derived_id("ckev-", &[app, purchase, note.action.name()]);
    let mut url = url::Url::parse(&target.url).map_err(|e| {
        CamaraError::internal(format!("purchase {purchase}: notification URL: {e}"))
    })?;
    if let Some(t) = &target.token {
        url.query_pairs_mut().append_pair(API_KEY_PARAM, t);
    }
    let body = serde_json::to_string(&Notification {
        purchase_id: purchase,
        action: note.action.name(),
        status: if note.succeeded {
            "succeeded"
        } else {
            "failed"
        },
        description: &note.description,
        payment_date: note.payment_ms.map(rfc3339),
    })
    .map_err(|e| CamaraError::internal(format!("purchase {purchase}: notification: {e}")))?;
    Ok(EventRow {
        kind: format!("checkout.{}", note.action.name()),
        app: app.to_string(),
        resource: Some(purchase.to_string()),
        url: url.to_string(),
        headers: vec![("x-correlator".into(), id.clone())],
        content_type: "application/json".into(),
        body,
        state: EventState::Pending,
        attempts: 0,
        next_ms: now,
        last_error: None,
        lease: None,
        created_ms: now,
        updated_ms: now,
        delivered_ms: None,
        id,
    })
}

// ---- storage ---------------------------------------------------------------------------------

/// The purchase `id` of `app` (404 NOT_FOUND otherwise).
async fn load_purchase(st: &ApiState, app: &str, id: &str) -> Result<PurchaseDoc, CamaraError> {
    let row = st.charging.store().resource(id).await.map_err(store_err)?;
    match row {
        Some(r) if r.app == app && r.kind == KIND_PURCHASE => serde_json::from_str(&r.body)
            .map_err(|e| CamaraError::internal(format!("purchase {id}: unreadable record: {e}"))),
        _ => Err(CamaraError::not_found(format!("No purchase \"{id}\"."))),
    }
}

/// Records the purchase with `status` (the row's state; what is shown is always read from
/// its payment), and `events` in the same commit.
async fn save_purchase(
    st: &ApiState,
    app: &str,
    p: &PurchaseDoc,
    status: PurchaseStatus,
    events: Vec<EventRow>,
) -> Result<(), CamaraError> {
    let body = serde_json::to_string(p)
        .map_err(|e| CamaraError::internal(format!("purchase {}: {e}", p.id)))?;
    st.charging
        .store()
        .put_resource_with_events(
            ResourceRow {
                id: p.id.clone(),
                app: app.to_string(),
                kind: KIND_PURCHASE.into(),
                state: status.name().into(),
                parent: None,
                due_ms: None,
                body,
                created_ms: p.created_ms,
                updated_ms: now_ms(),
            },
            events,
        )
        .await
        .map_err(store_err)
}

/// Records purchase `id` of `app` with `status`, and in the same commit the notifications
/// its payment (`payment`: where it is kept, and its document) calls for that were not
/// recorded before; `hint` is the procedure whose outcome this is, when a request ran one.
/// The caller holds the payment's lock. Nothing is written when nothing changed.
async fn record_purchase(
    st: &ApiState,
    app: &str,
    id: &str,
    status: PurchaseStatus,
    payment: Option<(Place, &PaymentDoc)>,
    hint: Option<Pending>,
) -> Result<(), CamaraError> {
    let row = st.charging.store().resource(id).await.map_err(store_err)?;
    let Some(row) = row.filter(|r| r.app == app && r.kind == KIND_PURCHASE) else {
        return Err(CamaraError::not_found(format!("No purchase \"{id}\".")));
    };
    let mut p: PurchaseDoc = serde_json::from_str(&row.body)
        .map_err(|e| CamaraError::internal(format!("purchase {id}: unreadable record: {e}")))?;
    let notes = match (&p.notify, payment) {
        (Some(_), Some((place, doc))) => due_notes(&p, place, doc, hint),
        _ => Vec::new(),
    };
    if notes.is_empty() && row.state == status.name() {
        return Ok(());
    }
    let now = now_ms();
    let mut events = Vec::with_capacity(notes.len());
    if let Some(target) = &p.notify {
        for n in &notes {
            events.push(notification_event(app, &p.id, target, n, now)?);
        }
    }
    p.notified
        .extend(notes.iter().map(|n| n.action.name().to_string()));
    save_purchase(st, app, &p, status, events).await
}

/// Where a payment document is kept, from its row.
fn place_of(row: &ResourceRow) -> Place {
    if row.kind == CHECKOUT_KINDS.shown {
        Place::Shown
    } else if row.state == "refused" {
        Place::Refused
    } else {
        Place::NotSent
    }
}

/// After a read: the notifications the payment's state calls for that are not recorded yet
/// (an outcome learnt by the read, a reservation that expired), recorded with the purchase's
/// status when nobody works on the payment now (that request records them otherwise). A
/// failure is logged, not answered: the read's answer does not depend on it, and the next
/// look at the purchase records them.
async fn observe(
    st: &ApiState,
    app: &str,
    p: &PurchaseDoc,
    payment: Option<&(ResourceRow, PaymentDoc)>,
) {
    let Some((row, doc)) = payment else { return };
    if p.notify.is_none() || due_notes(p, place_of(row), doc, None).is_empty() {
        return;
    }
    let pid = p.payment_id(app);
    let Some(_lock) = KeyGuard::try_lock(st, &pid).await else {
        return;
    };
    let result = async {
        let Some((row, doc)) = load_in(st, app, &pid, CHECKOUT_KINDS).await? else {
            return Ok(());
        };
        let status = PurchaseStatus::of(Some(&(row.clone(), doc.clone())));
        record_purchase(st, app, &p.id, status, Some((place_of(&row), &doc)), None).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(purchase = %p.id, error = %e.message, "checkout notification not recorded; next read");
    }
}

/// The purchase's payment, brought up to date (`how`) when nobody is working on it.
async fn payment_of(
    st: &ApiState,
    app: &str,
    p: &PurchaseDoc,
    how: Refresh,
) -> Result<Option<(ResourceRow, PaymentDoc)>, CamaraError> {
    let pid = p.payment_id(app);
    let found = load_in(st, app, &pid, CHECKOUT_KINDS).await?;
    let Some((row, doc)) = &found else {
        return Ok(None);
    };
    if row.kind != CHECKOUT_KINDS.shown
        || !matches!(doc.status, Status::Processing | Status::Reserved)
    {
        return Ok(found);
    }
    match read_in(st, app, &pid, how, CHECKOUT_KINDS).await {
        // It turned out never to have been sent.
        Err(e) if e.status == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    load_in(st, app, &pid, CHECKOUT_KINDS).await
}

/// One background pass over the purchases that asked to be notified and whose payment may
/// have moved without a request (a reservation that expired, an unknown outcome the
/// resolver settled): each is read as `GET /purchases/{id}` reads it, so that its
/// notification is recorded (in the purchase's commit) without the client having to look.
/// Returns how many were looked at.
pub(crate) async fn recover_due(st: &ApiState) -> usize {
    let mut seen = 0;
    for status in [PurchaseStatus::ReadyToConfirm, PurchaseStatus::Processing] {
        let rows = st
            .charging
            .store()
            .resources(ResourceFilter {
                kind: Some(KIND_PURCHASE.into()),
                state: Some(status.name().into()),
                ascending: true,
                limit: RECOVERY_BATCH,
                ..ResourceFilter::default()
            })
            .await;
        let rows = match rows {
            Ok((rows, _)) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "checkout recovery: purchases not read");
                continue;
            }
        };
        for r in rows {
            let Ok(p) = serde_json::from_str::<PurchaseDoc>(&r.body) else {
                continue;
            };
            if p.notify.is_none() {
                continue;
            }
            seen += 1;
            match payment_of(st, &r.app, &p, Refresh::Full).await {
                Ok(payment) => observe(st, &r.app, &p, payment.as_ref()).await,
                Err(e) => {
                    tracing::warn!(purchase = %r.id, error = %e.message, "checkout recovery: purchase not brought up to date");
                }
            }
        }
    }
    seen
}

/// Most purchases of one status a recovery pass looks at.
const RECOVERY_BATCH: usize = 100;

// ---- the order pipeline's door (api::tmf622) ---------------------------------------------------

/// Opens purchase `id` of `app` for `payable` (a `CreatePurchase.payable`, checked as
/// createPurchase checks it, the application's currency and amount policy included), once:
/// the same id again finds the purchase as it is. The TMF622 order pipeline pays its orders
/// through this, with an id derived from the order, so that a step run again after a restart
/// finds what the first run made.
pub(crate) async fn open_for_order(
    st: &ApiState,
    caller: &crate::api::Caller,
    id: &str,
    payable: serde_json::Value,
) -> Result<(), CamaraError> {
    let app = caller.id();
    let _lock = KeyGuard::lock(st, &format!("purchase:{id}")).await?;
    if st
        .charging
        .store()
        .resource(id)
        .await
        .map_err(store_err)?
        .is_some_and(|r| r.app == app && r.kind == KIND_PURCHASE)
    {
        return Ok(());
    }
    let input: PayableInput = serde_json::from_value(payable)
        .map_err(|e| CamaraError::invalid(format!("payable: {e}")))?;
    let (payable, total) = digital_good("payable", Some(input))?;
    policy(&Client(caller.clone(), None), &total)?;
    let p = PurchaseDoc {
        id: id.to_string(),
        payable,
        created_ms: now_ms(),
        notify: None,
        notified: Vec::new(),
    };
    save_purchase(st, app, &p, PurchaseStatus::Initialising, Vec::new()).await
}

/// The status of purchase `id` of `app`, brought up to date (an unknown outcome asked
/// again, an expiry applied).
pub(crate) async fn status_for_order(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<PurchaseStatus, CamaraError> {
    let p = load_purchase(st, app, id).await?;
    let payment = payment_of(st, app, &p, Refresh::Full).await?;
    observe(st, app, &p, payment.as_ref()).await;
    Ok(PurchaseStatus::of(payment.as_ref()))
}

/// Prepares the payment of purchase `id` on `phone` (CCR INITIAL, the amount reserved), as
/// preparePayment does; a run again learns the first run's outcome and never reserves twice
/// (the purchase's one payment, its charging key from the purchase). Ok: `ready_to_confirm`.
pub(crate) async fn authorize_for_order(
    st: &ApiState,
    app: &str,
    id: &str,
    phone: &str,
) -> Result<PurchaseStatus, CamaraError> {
    match status_for_order(st, app, id).await? {
        PurchaseStatus::Initialising | PurchaseStatus::Processing => {}
        done => return Ok(done),
    }
    if !model::valid_phone(phone) {
        return Err(CamaraError::invalid(
            "phoneNumber: must match ^\\+[1-9][0-9]{4,14}$",
        ));
    }
    let (_, doc) = pay_as(st, app, id, phone.to_string(), Flow::TwoStep).await?;
    Ok(PurchaseStatus::of_shown(&doc))
}

/// Confirms (`capture`) or cancels the prepared payment of purchase `id`, as confirmPayment
/// / cancelPayment do; done already: its status.
pub(crate) async fn settle_for_order(
    st: &ApiState,
    app: &str,
    id: &str,
    capture: bool,
) -> Result<PurchaseStatus, CamaraError> {
    match status_for_order(st, app, id).await? {
        PurchaseStatus::ReadyToConfirm | PurchaseStatus::Processing => {}
        // Never prepared (the order failed before its payment): nothing to cancel.
        PurchaseStatus::Initialising if !capture => return Ok(PurchaseStatus::Initialising),
        done => return Ok(done),
    }
    let p = if capture {
        Pending::Confirm
    } else {
        Pending::Cancel
    };
    settle(st, app, id, p).await?;
    status_for_order(st, app, id).await
}

// ---- handlers --------------------------------------------------------------------------------

/// createPurchase: no CCR; the purchase is `initialising`.
#[utoipa::path(
    post, path = super::PURCHASES, tag = "camara-checkout", operation_id = "createPurchase",
    request_body(content = CreatePurchase, content_type = "application/json"),
    params(("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 201, description = "Created (`initialising`); nothing charged yet",
        body = PurchaseCreated))
)]
pub(crate) async fn create_purchase(
    State(st): State<ApiState>,
    client: Client,
    body: Body,
) -> Response {
    answer(
        async {
            client.require(scope::PURCHASE_WRITE)?;
            let req: CreatePurchase = body.parse()?;
            let (payable, total) = digital_good("payable", req.payable)?;
            let notify =
                notify_target(&st, req.notification_url, req.notification_auth_token).await?;
            policy(&client, &total)?;
            let p = PurchaseDoc {
                id: new_purchase_id(),
                payable,
                created_ms: now_ms(),
                notify,
                notified: Vec::new(),
            };
            tracing::Span::current().record("operation_id", p.id.as_str());
            save_purchase(
                &st,
                client.id(),
                &p,
                PurchaseStatus::Initialising,
                Vec::new(),
            )
            .await?;
            Ok((
                StatusCode::CREATED,
                [location(&super::PURCHASE.replace("{purchaseId}", &p.id))],
                axum::Json(PurchaseCreated {
                    payable: p.payable,
                    id: p.id,
                    status: PurchaseStatus::Initialising.name().into(),
                }),
            )
                .into_response())
        }
        .await,
    )
}

/// getPurchaseInfo.
#[utoipa::path(
    get, path = super::PURCHASE, tag = "camara-checkout", operation_id = "getPurchaseInfo",
    params(
        ("purchaseId" = String, Path, description = "From createPurchase"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "The purchase; an unknown outcome is resolved first",
        body = PurchaseInfo))
)]
pub(crate) async fn get_purchase(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            client.require(scope::PURCHASE_READ)?;
            let id = path_id("purchaseId", &id)?;
            let app = client.id();
            let p = load_purchase(&st, app, &id).await?;
            let payment = payment_of(&st, app, &p, Refresh::Full).await?;
            observe(&st, app, &p, payment.as_ref()).await;
            Ok(axum::Json(p.info(payment.as_ref())).into_response())
        }
        .await,
    )
}

const NAMES: Names = Names {
    date: "purchaseCreationDate",
    status: "status",
    statuses: &[],
    invalid_date_range: code::INVALID_ARGUMENT,
    too_many: code::INVALID_ARGUMENT,
};

/// `page`, `perPage`, `seek` (the position of the last item read: the page starts after it);
/// with none of them, the purchases of the last 24 hours.
fn purchases_query(uri: &Uri) -> Result<ListQuery, CamaraError> {
    let pairs = list::query_pairs(uri)?;
    let mut q = ListQuery::first_page();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &pairs {
        let k = k.as_str();
        if !matches!(k, "page" | "perPage" | "seek") {
            continue;
        }
        if seen.contains(&k) {
            return Err(CamaraError::invalid(format!("{k}: given more than once")));
        }
        seen.push(k);
        if k == "seek" {
            q.seek = Some(v.parse().map_err(|_| {
                CamaraError::invalid(format!(
                    "seek: \"{}\" is not a whole number",
                    crate::api::error::clip(v)
                ))
            })?);
        } else {
            q.paging(k, v)?;
        }
    }
    if seen.contains(&"page") && seen.contains(&"seek") {
        return Err(CamaraError::invalid(
            "page, seek: give one of them, not both",
        ));
    }
    if seen.is_empty() {
        q.from_ms = Some(now_ms().saturating_sub(DEFAULT_WINDOW_MS));
    }
    Ok(q)
}

/// getPurchases: the caller's purchases, newest first.
#[utoipa::path(
    get, path = super::PURCHASES, tag = "camara-checkout", operation_id = "getPurchases",
    params(
        ("x-correlator" = Option<String>, Header, description = "Echoed"),
        ("page" = Option<usize>, Query, description = "From 1 (default 1)"),
        ("perPage" = Option<usize>, Query, description = "1 to 100 (default 10)"),
        ("seek" = Option<usize>, Query, description = "Position of the last item read (instead of page)")),
    responses((status = 200, description = "One page (without page, perPage and seek: the last \
        24 hours); headers X-Total-Count and Content-Last-Key (position of the page's last item)",
        body = Vec<PurchaseInfo>))
)]
pub(crate) async fn get_purchases(
    State(st): State<ApiState>,
    client: Client,
    uri: Uri,
) -> Response {
    answer(
        async {
            client.require(scope::PURCHASE_READ)?;
            let q = purchases_query(&uri)?;
            let app = client.id();
            let page = list::list(
                st.charging.store(),
                app,
                KIND_PURCHASE,
                None,
                &q,
                &NAMES,
                |_| None,
            )
            .await?;
            let mut items = Vec::with_capacity(page.rows.len());
            for r in &page.rows {
                let p: PurchaseDoc = serde_json::from_str(&r.body).map_err(|e| {
                    CamaraError::internal(format!("purchase {}: unreadable record: {e}", r.id))
                })?;
                let payment = payment_of(&st, app, &p, Refresh::Cheap).await?;
                observe(&st, app, &p, payment.as_ref()).await;
                items.push(p.info(payment.as_ref()));
            }
            Ok(list::answer(&items, page.total, page.offset))
        }
        .await,
    )
}

/// The answer of a payment request once its payment is as `doc` says.
fn paid(purchase: &PurchaseDoc, doc: &PaymentDoc, flow: Flow) -> Result<Response, CamaraError> {
    let id = purchase.id.clone();
    match (doc.status, flow) {
        (Status::Processing, _) => Err(unknown()),
        (Status::Succeeded, Flow::OneStep) => Ok(axum::Json(PaymentInfo {
            id,
            status: PurchaseStatus::Succeeded.name().into(),
        })
        .into_response()),
        (Status::Reserved, Flow::TwoStep) => Ok(axum::Json(PreparePaymentInfo {
            id,
            status: PurchaseStatus::ReadyToConfirm.name().into(),
        })
        .into_response()),
        (Status::Denied, _) => Err(match &doc.refusal {
            Some((_, e)) => checkout_error(CamaraError::from_info(e)),
            None => final_status(PurchaseStatus::Failed),
        }),
        (Status::Cancelled, _) => Err(final_status(PurchaseStatus::Cancelled)),
        _ => Err(already_exists(PurchaseStatus::of_shown(doc))),
    }
}

async fn pay(
    st: ApiState,
    client: Client,
    id: String,
    body: Body,
    flow: Flow,
) -> Result<Response, CamaraError> {
    client.require(scope::CHECKOUT_PAYMENT_WRITE)?;
    let id = path_id("purchaseId", &id)?;
    let req: RequestPayment = body.parse()?;
    let phone = match req.phone_number {
        Some(n) if model::valid_phone(&n) => n,
        Some(_) => {
            return Err(CamaraError::invalid(
                "phoneNumber: must match ^\\+[1-9][0-9]{4,14}$",
            ));
        }
        None => {
            return Err(CamaraError::new(
                StatusCode::FORBIDDEN,
                checkout_code::PHONE_NUMBER_REQUIRED,
                "Phone Number is required. This gateway's access is 2-legged: the token \
                 carries no phone number, so phoneNumber is required.",
            ));
        }
    };
    let app = client.id().to_string();
    let (purchase, doc) = pay_as(&st, &app, &id, phone, flow).await?;
    paid(&purchase, &doc, flow)
}

/// The payment of purchase `id` on `phone` (checked), as createPayment / preparePayment make
/// it: the purchase and its payment as they stand after (an OCS refusal is the error).
async fn pay_as(
    st: &ApiState,
    app: &str,
    id: &str,
    phone: String,
    flow: Flow,
) -> Result<(PurchaseDoc, PaymentDoc), CamaraError> {
    let (st, app) = (st.clone(), app.to_string());
    let purchase = load_purchase(&st, &app, id).await?;
    let pid = purchase.payment_id(&app);
    tracing::Span::current().record("operation_id", pid.as_str());
    let _lock = KeyGuard::lock(&st, &pid).await?;
    let p = match flow {
        Flow::OneStep => Pending::Create,
        Flow::TwoStep => Pending::Prepare,
    };
    let hash = request_hash("camara.checkout.payment", &(flow, &phone, &purchase.id));
    let mut attempt = 1;
    if let Some(found) = load_in(&st, &app, &pid, CHECKOUT_KINDS).await? {
        let status = PurchaseStatus::of(Some(&found));
        let (row, doc) = found;
        if row.kind != CHECKOUT_KINDS.shown {
            if row.state == "refused" {
                return Err(already_exists(status));
            }
            // The earlier request sent nothing: this is a new attempt.
            attempt = doc.attempt.saturating_add(1);
        } else if doc.status == Status::Processing && doc.pending == Some(p) && doc.hash == hash {
            // The same request, whose outcome was not known: learn it (never sent twice).
            let earlier = doc.attempt;
            match refresh(&st, &app, doc, Refresh::Full).await? {
                Some(doc) => {
                    let status = PurchaseStatus::of_shown(&doc);
                    let shown = Some((Place::Shown, &doc));
                    record_purchase(&st, &app, &purchase.id, status, shown, Some(p)).await?;
                    return Ok((purchase, doc));
                }
                None => attempt = earlier.saturating_add(1),
            }
        } else {
            // Whatever its state tells that was not notified yet (an outcome learnt since).
            let kept = Some((place_of(&row), &doc));
            record_purchase(&st, &app, &purchase.id, status, kept, None).await?;
            return Err(already_exists(status));
        }
    }
    let doc = PaymentDoc {
        id: pid,
        flow,
        status: Status::Processing,
        pending: Some(p),
        hash,
        attempt,
        client_correlator: None,
        reference_code: purchase.id.clone(),
        phone_number: phone,
        payment_amount: purchase.payment_amount(),
        reservation_id: None,
        server_reference_code: None,
        created_ms: now_ms(),
        payment_ms: None,
        refusal: None,
        purchase: Some(purchase.id.clone()),
    };
    // Durable before the CCR: a restart or a read finds it and resolves it.
    save(&st, &app, &doc, Place::Shown).await?;
    let (doc, place, error) = run(&st, &app, doc, p, true).await?;
    let status = match place {
        Place::Shown => PurchaseStatus::of_shown(&doc),
        Place::Refused => PurchaseStatus::Failed,
        Place::NotSent => PurchaseStatus::Initialising,
    };
    record_purchase(
        &st,
        &app,
        &purchase.id,
        status,
        Some((place, &doc)),
        Some(p),
    )
    .await?;
    if let Some(e) = error {
        return Err(checkout_error(e));
    }
    Ok((purchase, doc))
}

/// createPayment: the purchase paid in one step (CCR EVENT, DIRECT_DEBITING of totalAmount).
#[utoipa::path(
    post, path = super::PURCHASE_PAYMENT, tag = "camara-checkout", operation_id = "createCheckoutPayment",
    request_body(content = RequestPayment, content_type = "application/json"),
    params(
        ("purchaseId" = String, Path, description = "From createPurchase"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "Charged: `succeeded`. A refusal is 403/404 and the \
        purchase `failed`; an unknown outcome 504 with the purchase `processing`",
        body = PaymentInfo))
)]
pub(crate) async fn create_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    answer(pay(st, client, id, body, Flow::OneStep).await)
}

/// preparePayment: totalAmount reserved (CCR INITIAL).
#[utoipa::path(
    post, path = super::PURCHASE_PREPARE, tag = "camara-checkout", operation_id = "prepareCheckoutPayment",
    request_body(content = RequestPayment, content_type = "application/json"),
    params(
        ("purchaseId" = String, Path, description = "From createPurchase"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 200, description = "Reserved: `ready_to_confirm` (no paymentOtp: no OTP \
        validation here)", body = PreparePaymentInfo))
)]
pub(crate) async fn prepare_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    answer(pay(st, client, id, body, Flow::TwoStep).await)
}

/// Confirm or cancel (`p`) the prepared payment of a purchase.
async fn second_step(
    st: ApiState,
    client: Client,
    id: String,
    p: Pending,
) -> Result<Response, CamaraError> {
    client.require(scope::CHECKOUT_PAYMENT_WRITE)?;
    let id = path_id("purchaseId", &id)?;
    settle(&st, client.id(), &id, p).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Confirms or cancels (`p`) the prepared payment of purchase `id`, as confirmPayment /
/// cancelPayment do (Ok: done).
async fn settle(st: &ApiState, app: &str, id: &str, p: Pending) -> Result<(), CamaraError> {
    let (st, app) = (st.clone(), app.to_string());
    let purchase = load_purchase(&st, &app, id).await?;
    let pid = purchase.payment_id(&app);
    tracing::Span::current().record("operation_id", pid.as_str());
    let _lock = KeyGuard::lock(&st, &pid).await?;
    let not_prepared =
        || precondition("The purchase has no prepared payment (it is initialising).");
    let found = load_in(&st, &app, &pid, CHECKOUT_KINDS).await?;
    let doc = match found {
        None => return Err(not_prepared()),
        Some((row, _)) if row.kind != CHECKOUT_KINDS.shown && row.state == "refused" => {
            return Err(final_status(PurchaseStatus::Failed));
        }
        Some((row, _)) if row.kind != CHECKOUT_KINDS.shown => return Err(not_prepared()),
        Some((_, doc)) => doc,
    };
    let Some(mut doc) = refresh(&st, &app, doc, Refresh::Full).await? else {
        return Err(not_prepared());
    };
    let status = PurchaseStatus::of_shown(&doc);
    match (doc.status, doc.pending) {
        (Status::Reserved, _) => {
            doc.status = Status::Processing;
            doc.pending = Some(p);
            // Durable before the CCR-T.
            save(&st, &app, &doc, Place::Shown).await?;
        }
        // A retry of the operation in flight resolves it.
        (Status::Processing, Some(q)) if q == p => {}
        (Status::Processing, Some(Pending::Confirm | Pending::Cancel)) => {
            return Err(CamaraError::new(
                StatusCode::CONFLICT,
                code::ALREADY_EXISTS,
                "Another payment confirmation or cancellation has been triggered for the same \
                 purchase; its outcome is not known yet.",
            ));
        }
        (Status::Processing | Status::PendingValidation, _) => {
            return Err(precondition(
                "The purchase's payment is not ready_to_confirm yet (its preparation's outcome is \
                 not known).",
            ));
        }
        (Status::Succeeded | Status::Cancelled | Status::Denied, _) => {
            // An outcome learnt since (an expiry) is notified, if it was not.
            let shown = Some((Place::Shown, &doc));
            record_purchase(&st, &app, &purchase.id, status, shown, None).await?;
            return Err(final_status(status));
        }
    }
    let (doc, _, error) = run(&st, &app, doc, p, false).await?;
    let status = PurchaseStatus::of_shown(&doc);
    record_purchase(
        &st,
        &app,
        &purchase.id,
        status,
        Some((Place::Shown, &doc)),
        Some(p),
    )
    .await?;
    if let Some(e) = error {
        return Err(checkout_error(e));
    }
    if doc.status == Status::Processing {
        return Err(unknown());
    }
    Ok(())
}

/// confirmPayment: the reservation charged (CCR TERMINATION, USU = totalAmount).
#[utoipa::path(
    post, path = super::PURCHASE_CONFIRM, tag = "camara-checkout", operation_id = "confirmCheckoutPayment",
    params(
        ("purchaseId" = String, Path, description = "From createPurchase"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 202, description = "Confirmed: the purchase is `succeeded`"))
)]
pub(crate) async fn confirm_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    answer(second_step(st, client, id, Pending::Confirm).await)
}

/// cancelPayment: the reservation released (CCR TERMINATION, USU 0).
#[utoipa::path(
    post, path = super::PURCHASE_CANCEL, tag = "camara-checkout", operation_id = "cancelCheckoutPayment",
    params(
        ("purchaseId" = String, Path, description = "From createPurchase"),
        ("x-correlator" = Option<String>, Header, description = "Echoed")),
    responses((status = 202, description = "Cancelled: the purchase is `cancelled`"))
)]
pub(crate) async fn cancel_payment(
    State(st): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    answer(second_step(st, client, id, Pending::Cancel).await)
}
