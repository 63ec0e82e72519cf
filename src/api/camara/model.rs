//! The bodies of the CAMARA operations, as the definitions name them (carrier-billing v0.5.0,
//! carrier-billing-refund v0.3.0), their checks, and the canonical forms the gateway stores,
//! hashes (idempotency) and answers with.
//!
//! Amounts are JSON numbers (`type: number, multipleOf: 0.001`), read exactly: serde_json keeps
//! a number's text (`arbitrary_precision`) and it is parsed into a `Decimal`, never a float. A
//! string where a number is expected is a wrong type (400), as the schema says.

use std::fmt;

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use super::error::CamaraError;
use crate::api::payment::parse_decimal;
use crate::credit_control::Money;
use crate::credit_control::money::{self, MoneyError};

/// Longest `referenceCode`, `clientCorrelator` and identifier texts.
pub const MAX_KEY: usize = 256;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most `paymentDetails` / `refundDetails` items.
pub const MAX_ITEMS: usize = 100;

// ---- JSON helpers ----------------------------------------------------------------------------

/// `T` read from a JSON object only (serde's derive also reads a struct from an array).
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Obj)
    }
}

/// An optional object property.
pub(crate) fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<Obj<T>>::deserialize(d)?.map(|Obj(t)| t))
}

/// An optional array of objects.
pub(crate) fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<Obj<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|Obj(t)| t).collect()))
}

/// A decimal number: a JSON number in requests and answers, read and written exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Num(pub Decimal);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => parse_decimal(&n.to_string())
                .map(Num)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected a number, found {}",
                match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                }
            ))),
        }
    }
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // With `arbitrary_precision` a Number is its text: the digits go out as they are.
        match self.0.to_string().parse::<serde_json::Number>() {
            Ok(n) => n.serialize(s),
            Err(_) => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl PartialSchema for Num {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(SchemaFormat::Custom("decimal".into())))
            .multiple_of(Some(0.001))
            .description(Some(
                "A decimal number (JSON number), read exactly: at most 3 decimals and no more \
                 than the currency's ISO 4217 minor unit",
            ))
            .examples([serde_json::json!(4.99)])
            .into()
    }
}

impl ToSchema for Num {
    fn name() -> std::borrow::Cow<'static, str> {
        "DecimalNumber".into()
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// ---- requests --------------------------------------------------------------------------------

/// Body of `createPayment` (`CreatePayment`) and `preparePayment`
/// (`BodyAmountReservationTransactionForReserveInput`): the same shape.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePayment {
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub amount_transaction: Option<AmountTransactionInput>,
    /// Async mode: the payment is answered `processing` (201) and its outcome is posted to this
    /// URL as CloudEvents (`https`; its addresses must be public ones or in
    /// `notifications.allowed_networks`, else 400 INVALID_SINK).
    #[schema(value_type = Option<String>, format = UriTemplate, example = "https://endpoint.example.com/sink")]
    pub sink: Option<serde_json::Value>,
    /// Only with `sink`: `{"credentialType": "ACCESSTOKEN", "accessToken": "...",
    /// "accessTokenExpiresUtc": "...", "accessTokenType": "bearer"}`, sent as
    /// `Authorization: Bearer <accessToken>` with every event (never shown in answers).
    #[schema(value_type = Option<Object>)]
    pub sink_credential: Option<serde_json::Value>,
}

/// `AmountTransactionInput` / `AmountReservationTransactionForReserveInput`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmountTransactionInput {
    /// E.164 with `+`: `^\+[1-9][0-9]{4,14}$`. Required: this gateway's tokens are 2-legged.
    #[schema(example = "+34671999000", pattern = r"^\+[1-9][0-9]{4,14}$")]
    pub phone_number: Option<String>,
    /// The idempotency key (SHOULD be present): the same one with the same body is answered
    /// with the same payment and never charges twice.
    #[schema(example = "req-12f2pgh448gh2hvrfrv", max_length = 256)]
    pub client_correlator: Option<String>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub payment_amount: Option<PaymentAmountInput>,
    /// The merchant's reference, unique per application.
    #[schema(
        required = true,
        nullable = false,
        example = "ref-pay-834tfr2rA3v8r8vr3rv",
        max_length = 256
    )]
    pub reference_code: Option<String>,
}

/// `PaymentAmountForCharge` / `PaymentAmountForReserve`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAmountInput {
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charging_information: Option<ChargingInformationInput>,
    #[serde(default, deserialize_with = "object")]
    pub charging_meta_data: Option<ChargingMetaDataInput>,
    #[serde(default, deserialize_with = "objects")]
    #[schema(min_items = 1, max_items = 100)]
    pub payment_details: Option<Vec<PaymentItemInput>>,
}

/// `ChargingInformation`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargingInformationInput {
    /// Above zero, at most 3 decimals and the currency's minor unit.
    #[schema(required = true, nullable = false)]
    pub amount: Option<Num>,
    /// ISO 4217 alphabetic code.
    #[schema(required = true, nullable = false, example = "EUR")]
    pub currency: Option<String>,
    /// Billing text.
    #[schema(
        required = true,
        nullable = false,
        example = "FIFA EA Sports 24",
        max_length = 1024
    )]
    pub description: Option<String>,
    pub is_tax_included: Option<bool>,
    /// At least 0, at most 3 decimals.
    pub tax_amount: Option<Num>,
}

/// `ChargingMetaData` (all optional).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargingMetaDataInput {
    pub merchant_name: Option<String>,
    /// Sent to the OCS as Service-Parameter-Info 2 (merchant); the application id otherwise.
    pub merchant_identifier: Option<String>,
    /// Percentage for the requester, 0 to 100, at most 2 decimals.
    pub fee: Option<Num>,
    pub purchase_category_code: Option<String>,
    pub channel: Option<String>,
    pub service_id: Option<String>,
    pub product_id: Option<String>,
}

/// `PaymentItem`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentItemInput {
    #[schema(required = true, nullable = false)]
    pub id: Option<String>,
    #[schema(required = true, nullable = false)]
    pub amount: Option<Num>,
    #[schema(required = true, nullable = false)]
    pub currency: Option<String>,
    #[schema(required = true, nullable = false)]
    pub description: Option<String>,
    pub is_tax_included: Option<bool>,
    pub tax_amount: Option<Num>,
}

/// Body of `confirmPayment` and `cancelPayment` (`PhoneNumber`; the body is required, `{}` is
/// fine).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberInput {
    /// When given, the payment's phone number.
    #[schema(example = "+34671999000", pattern = r"^\+[1-9][0-9]{4,14}$")]
    pub phone_number: Option<String>,
}

/// Body of `createRefund` (`CreateRefund`, discriminated by `type`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRefund {
    /// `total` (the amount not refunded yet; no refund after it) or `partial`.
    #[serde(rename = "type")]
    #[schema(required = true, nullable = false, example = "partial")]
    pub kind: Option<String>,
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub amount_transaction: Option<RefundTransactionInput>,
    /// Async mode: the refund is answered `processing` (201) and its outcome is posted here
    /// (as for payments).
    #[schema(value_type = Option<String>, format = UriTemplate)]
    pub sink: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub sink_credential: Option<serde_json::Value>,
}

/// `AmountTransactionTotalRefund` / `AmountTransactionPartialRefund`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundTransactionInput {
    #[schema(max_length = 256)]
    pub client_correlator: Option<String>,
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub refund_amount: Option<RefundAmountInput>,
    #[schema(required = true, nullable = false, max_length = 256)]
    pub reference_code: Option<String>,
}

/// `RefundAmountTotalRefund` (only `chargingMetaData`) / `RefundAmountPartialRefund`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundAmountInput {
    /// Required for a partial refund, absent for a total one.
    #[serde(default, deserialize_with = "object")]
    pub charging_information: Option<ChargingInformationInput>,
    #[serde(default, deserialize_with = "object")]
    pub charging_meta_data: Option<ChargingMetaDataInput>,
    #[serde(default, deserialize_with = "objects")]
    pub refund_details: Option<Vec<RefundItemInput>>,
}

/// `RefundItem`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundItemInput {
    #[schema(required = true, nullable = false)]
    pub payment_item_id: Option<String>,
    #[schema(required = true, nullable = false)]
    pub amount: Option<Num>,
    #[schema(required = true, nullable = false)]
    pub currency: Option<String>,
    #[schema(required = true, nullable = false)]
    pub description: Option<String>,
    pub is_tax_included: Option<bool>,
    pub tax_amount: Option<Num>,
}

// ---- canonical (checked) forms: stored, hashed, answered --------------------------------------

/// `ChargingInformation`, checked: the amount exact in the currency's minor unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CamaraChargingInformation)]
pub struct ChargingInformation {
    pub amount: Num,
    #[schema(example = "EUR")]
    pub currency: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_tax_included: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_amount: Option<Num>,
}

/// `ChargingMetaData`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargingMetaData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Num>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_category_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
}

/// `PaymentItem`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentItem {
    pub id: String,
    pub amount: Num,
    pub currency: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_tax_included: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_amount: Option<Num>,
}

/// `PaymentAmountForCharge` / `PaymentAmountForReserve`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAmount {
    pub charging_information: ChargingInformation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging_meta_data: Option<ChargingMetaData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_details: Option<Vec<PaymentItem>>,
}

/// `AmountTransaction` (answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmountTransaction {
    #[schema(example = "+34671999000")]
    pub phone_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub payment_amount: PaymentAmount,
    pub reference_code: String,
    /// `urn:payments:<paymentId>`.
    #[serde(
        rename = "resourceURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_url: Option<String>,
    /// The Diameter Session-Id of the charge (or reservation): the OCS's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_reference_code: Option<String>,
}

/// `Payment` / `PaymentCreated` / `BodyAmountReservationTransactionForReserve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    #[schema(example = "pay-5f1c0e9a7d2b4c3e8a6f1d20")]
    pub payment_id: String,
    pub amount_transaction: AmountTransaction,
    /// `processing`, `reserved`, `succeeded`, `denied` or `cancelled` (`pending_validation`
    /// never: no OTP validation here).
    #[schema(example = "succeeded")]
    pub payment_status: String,
    /// RFC 3339, UTC.
    pub payment_creation_date: String,
    /// When the amount was charged (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_date: Option<String>,
    /// Where the payment's events are posted (async mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// `RefundAmount*`, checked (a total refund has only `chargingMetaData`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundAmount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging_information: Option<ChargingInformation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging_meta_data: Option<RefundMetaData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_details: Option<Vec<RefundItem>>,
}

/// The refund's `ChargingMetaData` (only `merchantIdentifier`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundMetaData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_identifier: Option<String>,
}

/// `RefundItem`, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundItem {
    pub payment_item_id: String,
    pub amount: Num,
    pub currency: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_tax_included: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_amount: Option<Num>,
}

/// `AmountTransactionTotalRefund` / `AmountTransactionPartialRefund` (answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundTransaction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_correlator: Option<String>,
    pub refund_amount: RefundAmount,
    pub reference_code: String,
}

/// `Refund` (`TotalRefund` / `PartialRefund`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub refund_id: String,
    /// `processing` or `succeeded` (`denied` only for a refund shown as `processing` first).
    pub refund_status: String,
    pub refund_creation_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_date: Option<String>,
    /// `total` or `partial`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub amount_transaction: RefundTransaction,
    /// Where the refund's events are posted (async mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// `PaymentRemainingAmount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRemainingAmount {
    /// Not refunded yet (a refund still `processing` counts as refunded); 0: all refunded.
    pub amount: Num,
    pub currency: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_tax_included: Option<bool>,
}

// ---- checks ----------------------------------------------------------------------------------

/// `^\+[1-9][0-9]{4,14}$`.
pub fn valid_phone(v: &str) -> bool {
    let b = v.as_bytes();
    b.first() == Some(&b'+')
        && b.get(1).is_some_and(|c| (b'1'..=b'9').contains(c))
        && (6..=16).contains(&b.len())
        && b.iter().skip(1).all(u8::is_ascii_digit)
}

/// A required text: present, not blank, at most `max` characters, no control characters.
pub fn text(path: &str, v: Option<String>, max: usize) -> Result<String, CamaraError> {
    let Some(v) = v else {
        return Err(CamaraError::missing(path));
    };
    opt_text(path, Some(v), max).map(|v| v.unwrap_or_default())
}

/// An optional text with the same rules.
pub fn opt_text(path: &str, v: Option<String>, max: usize) -> Result<Option<String>, CamaraError> {
    let Some(v) = v else { return Ok(None) };
    if v.trim().is_empty() {
        return Err(CamaraError::invalid(format!("{path}: must not be empty")));
    }
    if v.chars().count() > max {
        return Err(CamaraError::invalid(format!(
            "{path}: longer than {max} characters"
        )));
    }
    if v.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(CamaraError::invalid(format!(
            "{path}: must not contain control characters"
        )));
    }
    Ok(Some(v))
}

/// A number with at most `decimals` decimals.
pub(crate) fn decimals(path: &str, n: Num, decimals: u32) -> Result<Decimal, CamaraError> {
    let d = n.0.normalize();
    if d.scale() > decimals {
        return Err(CamaraError::invalid(format!(
            "{path}: {} has more than {decimals} decimals (multipleOf {})",
            n.0,
            Decimal::new(1, decimals)
        )));
    }
    Ok(d)
}

/// The ISO 4217 currency of `code`.
pub fn currency(path: &str, code: Option<String>) -> Result<Currency, CamaraError> {
    let Some(code) = code else {
        return Err(CamaraError::missing(path));
    };
    money::currency(&code).map_err(|_| {
        CamaraError::currency(format!(
            "{path}: \"{}\" is not an ISO 4217 alphabetic code.",
            crate::api::error::clip(&code)
        ))
    })
}

/// An amount to charge or refund: above zero, at most 3 decimals, exact in the currency,
/// encodable as CC-Money; canonical (scaled to the minor unit: 4.99, 4.990 are one amount).
pub fn amount(path: &str, n: Option<Num>, cur: Currency) -> Result<Money, CamaraError> {
    let Some(n) = n else {
        return Err(CamaraError::missing(path));
    };
    let d = decimals(path, n, 3)?;
    let m = Money::payment(d, cur).map_err(|e| match e {
        MoneyError::NotPositive => {
            CamaraError::invalid(format!("{path}: must be above zero (minimum 0.001)"))
        }
        other => CamaraError::invalid(format!("{path}: {other}")),
    })?;
    m.unit_value()
        .map_err(|e| CamaraError::invalid(format!("{path}: {e}")))?;
    let mut canonical = m.amount;
    if let Ok(minor) = money::minor_unit(cur) {
        canonical.rescale(minor);
    }
    Ok(Money::new(canonical, cur))
}

/// A tax amount: at least 0, at most 3 decimals, exact in the currency.
fn tax(path: &str, n: Option<Num>, cur: Currency) -> Result<Option<Num>, CamaraError> {
    let Some(n) = n else { return Ok(None) };
    let d = decimals(path, n, 3)?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(CamaraError::invalid(format!(
            "{path}: must not be negative"
        )));
    }
    let minor = money::minor_unit(cur).unwrap_or(3);
    if d.scale() > minor {
        return Err(CamaraError::invalid(format!(
            "{path}: {d} has more decimals than {} allows ({minor})",
            cur.code()
        )));
    }
    Ok(Some(Num(d)))
}

/// `chargingInformation`, checked; `money` is its amount.
pub fn charging_information(
    path: &str,
    c: Option<ChargingInformationInput>,
) -> Result<(ChargingInformation, Money), CamaraError> {
    let Some(c) = c else {
        return Err(CamaraError::missing(path));
    };
    let cur = currency(&format!("{path}.currency"), c.currency)?;
    let money = amount(&format!("{path}.amount"), c.amount, cur)?;
    let description = text(
        &format!("{path}.description"),
        c.description,
        MAX_DESCRIPTION,
    )?;
    let tax_amount = tax(&format!("{path}.taxAmount"), c.tax_amount, cur)?;
    Ok((
        ChargingInformation {
            amount: Num(money.amount),
            currency: cur.code().to_string(),
            description,
            is_tax_included: c.is_tax_included,
            tax_amount,
        },
        money,
    ))
}

/// `chargingMetaData`, checked.
pub fn meta_data(
    path: &str,
    m: Option<ChargingMetaDataInput>,
) -> Result<Option<ChargingMetaData>, CamaraError> {
    let Some(m) = m else { return Ok(None) };
    let t = |name: &str, v| opt_text(&format!("{path}.{name}"), v, MAX_KEY);
    let fee = fee(&format!("{path}.fee"), m.fee)?;
    Ok(Some(ChargingMetaData {
        merchant_name: t("merchantName", m.merchant_name)?,
        merchant_identifier: t("merchantIdentifier", m.merchant_identifier)?,
        fee,
        purchase_category_code: t("purchaseCategoryCode", m.purchase_category_code)?,
        channel: t("channel", m.channel)?,
        service_id: t("serviceId", m.service_id)?,
        product_id: t("productId", m.product_id)?,
    }))
}

/// A fee: a percentage from 0 to 100, at most 2 decimals.
pub fn fee(path: &str, f: Option<Num>) -> Result<Option<Num>, CamaraError> {
    let Some(f) = f else { return Ok(None) };
    let d = decimals(path, f, 2)?;
    if d < Decimal::ZERO || d > Decimal::ONE_HUNDRED {
        return Err(CamaraError::invalid(format!(
            "{path}: a percentage from 0 to 100"
        )));
    }
    Ok(Some(Num(d)))
}

/// `paymentDetails`, checked: 1 to 100 items, distinct ids, the payment's currency.
pub fn payment_details(
    path: &str,
    items: Option<Vec<PaymentItemInput>>,
    cur: Currency,
) -> Result<Option<Vec<PaymentItem>>, CamaraError> {
    let Some(items) = items else { return Ok(None) };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(CamaraError::invalid(format!(
            "{path}: 1 to {MAX_ITEMS} items expected"
        )));
    }
    let mut out: Vec<PaymentItem> = Vec::with_capacity(items.len());
    for (i, it) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let id = text(&format!("{p}.id"), it.id, MAX_KEY)?;
        if out.iter().any(|o| o.id == id) {
            return Err(CamaraError::invalid(format!(
                "{p}.id: \"{id}\" is listed twice"
            )));
        }
        let c = currency(&format!("{p}.currency"), it.currency)?;
        if c != cur {
            return Err(CamaraError::invalid(format!(
                "{p}.currency: {} differs from the payment's {}",
                c.code(),
                cur.code()
            )));
        }
        let m = amount(&format!("{p}.amount"), it.amount, c)?;
        out.push(PaymentItem {
            id,
            amount: Num(m.amount),
            currency: c.code().to_string(),
            description: text(&format!("{p}.description"), it.description, MAX_DESCRIPTION)?,
            is_tax_included: it.is_tax_included,
            tax_amount: tax(&format!("{p}.taxAmount"), it.tax_amount, c)?,
        });
    }
    Ok(Some(out))
}

/// `refundDetails`, checked (items of the refund's currency; matched to the payment later).
pub fn refund_details(
    path: &str,
    items: Option<Vec<RefundItemInput>>,
    cur: Currency,
) -> Result<Option<Vec<RefundItem>>, CamaraError> {
    let Some(items) = items else { return Ok(None) };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(CamaraError::invalid(format!(
            "{path}: 1 to {MAX_ITEMS} items expected"
        )));
    }
    let mut out: Vec<RefundItem> = Vec::with_capacity(items.len());
    for (i, it) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let id = text(&format!("{p}.paymentItemId"), it.payment_item_id, MAX_KEY)?;
        let c = currency(&format!("{p}.currency"), it.currency)?;
        if c != cur {
            return Err(CamaraError::invalid(format!(
                "{p}.currency: {} differs from the refund's {}",
                c.code(),
                cur.code()
            )));
        }
        let m = amount(&format!("{p}.amount"), it.amount, c)?;
        out.push(RefundItem {
            payment_item_id: id,
            amount: Num(m.amount),
            currency: c.code().to_string(),
            description: text(&format!("{p}.description"), it.description, MAX_DESCRIPTION)?,
            is_tax_included: it.is_tax_included,
            tax_amount: tax(&format!("{p}.taxAmount"), it.tax_amount, c)?,
        });
    }
    Ok(Some(out))
}

/// `sink` / `sinkCredential` where async mode is not offered (kept for the families that do
/// not send notifications): either is refused with a 400 that says so (never silently
/// ignored: the client would wait for notifications that never come). The payments and refunds
/// APIs accept them ([`super::events::subscription`]).
pub fn no_sink(
    sink: &Option<serde_json::Value>,
    cred: &Option<serde_json::Value>,
) -> Result<(), CamaraError> {
    no_callback(
        &[sink, cred],
        "sink: asynchronous mode (notifications to a sink) is not supported by this \
         gateway; send the request without sink and sinkCredential (the answer carries the \
         outcome)",
    )
}

/// Refuses a request carrying any of the callback properties `props` (not null) with 400
/// INVALID_ARGUMENT and `detail`: notifications are not sent by this gateway.
pub fn no_callback(props: &[&Option<serde_json::Value>], detail: &str) -> Result<(), CamaraError> {
    if props
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_null()))
    {
        return Err(CamaraError::invalid(detail));
    }
    Ok(())
}
