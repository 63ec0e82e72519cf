//! The OCSG RESTful Payment facade (seed 002; API.md 4.4, 6.2): seven `POST` operations under
//! `/rest/payment/`, JSON bodies as the seed gives them, mapped onto [`Charging`].
//!
//! ```text
//! POST /rest/payment/charge-amount        {charge, endUserIdentifier, referenceCode}      204
//! POST /rest/payment/refund-amount        {charge, endUserIdentifier, referenceCode}      204
//! POST /rest/payment/charge-split-amount  {charge, referenceCode, splitInfo[]}            204
//! POST /rest/payment/reserve-amount       {charge, endUserIdentifier}                     200 {"result": id}
//! POST /rest/payment/reserve-additional-amount {charge, reservationIdentifier}            204
//! POST /rest/payment/charge-reservation   {charge, referenceCode, reservationIdentifier}  204
//! POST /rest/payment/release-reservation  {reservationIdentifier}                         204
//! charge = {description, amount ("BigDecimal": JSON string or number), code, currency}
//! ```
//!
//! Every request is checked whole before anything reaches [`Charging`]: a client fault is a
//! 4xx and charges nothing. Rules beyond the seed (documented in the README):
//! - `charging` is accepted as an alias of `charge` (OCSG 6.1);
//! - `charge.amount` is required: charging by `code` alone needs a price the gateway does not
//!   have, so a `code` without an amount is refused with SVC0007 (the code is passed to the
//!   OCS as Service-Parameter-Info with the amount);
//! - `charge.currency` defaults to the reservation's currency on reservation operations and to
//!   `credit_control.default_currency` elsewhere;
//! - the idempotency key is `referenceCode`; the three operations without one honour an
//!   optional `Idempotency-Key` header. Keys are per application.
//! - the charging call runs in its own task: a client that hangs up, or the request timeout,
//!   never cuts an operation between its record and its outcome.

use std::future::Future;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iso_currency::Currency;
use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::Instrument;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, MessageId, clip, from_failure};
use crate::charging::{ChargeInfo, Charging, Done, Key, OpResult, split};
use crate::credit_control::money::{self, MoneyError};
use crate::credit_control::{Money, SubscriptionId};

/// The seven operations (their names are [`crate::config::service::OPERATIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    ChargeAmount,
    RefundAmount,
    ChargeSplitAmount,
    ReserveAmount,
    ReserveAdditionalAmount,
    ChargeReservation,
    ReleaseReservation,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Self::ChargeAmount,
        Self::RefundAmount,
        Self::ChargeSplitAmount,
        Self::ReserveAmount,
        Self::ReserveAdditionalAmount,
        Self::ChargeReservation,
        Self::ReleaseReservation,
    ];

    /// The name in policies (`allowed_operations`) and in the path.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChargeAmount => "charge-amount",
            Self::RefundAmount => "refund-amount",
            Self::ChargeSplitAmount => "charge-split-amount",
            Self::ReserveAmount => "reserve-amount",
            Self::ReserveAdditionalAmount => "reserve-additional-amount",
            Self::ChargeReservation => "charge-reservation",
            Self::ReleaseReservation => "release-reservation",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::ChargeAmount => "/rest/payment/charge-amount",
            Self::RefundAmount => "/rest/payment/refund-amount",
            Self::ChargeSplitAmount => "/rest/payment/charge-split-amount",
            Self::ReserveAmount => "/rest/payment/reserve-amount",
            Self::ReserveAdditionalAmount => "/rest/payment/reserve-additional-amount",
            Self::ChargeReservation => "/rest/payment/charge-reservation",
            Self::ReleaseReservation => "/rest/payment/release-reservation",
        }
    }

    /// What identifies a retry of this operation.
    pub fn key_name(self) -> &'static str {
        match self {
            Self::ReserveAmount | Self::ReserveAdditionalAmount | Self::ReleaseReservation => {
                "Idempotency-Key"
            }
            _ => "referenceCode",
        }
    }

    /// The text after SVC0270 when the OCS refuses.
    pub fn failed(self) -> &'static str {
        match self {
            Self::RefundAmount => "refund failed",
            Self::ReserveAmount | Self::ReserveAdditionalAmount => "reservation failed",
            Self::ReleaseReservation => "release failed",
            _ => "charge failed",
        }
    }

    /// The field naming the end user (5030 names it).
    pub fn end_user_field(self) -> &'static str {
        match self {
            Self::ChargeSplitAmount => "splitInfo",
            Self::ReserveAdditionalAmount | Self::ChargeReservation | Self::ReleaseReservation => {
                "reservationIdentifier"
            }
            _ => "endUserIdentifier",
        }
    }
}

// ---- limits ----------------------------------------------------------------------------------

/// Longest `referenceCode` and `Idempotency-Key`.
pub const MAX_KEY: usize = 256;
/// Longest `charge.description`.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest `charge.code`.
pub const MAX_CODE: usize = 256;
/// Longest `reservationIdentifier`.
pub const MAX_RESERVATION_ID: usize = 128;
/// Most entries in `splitInfo`.
pub const MAX_SPLIT: usize = 100;
/// Longest amount text.
const MAX_AMOUNT_TEXT: usize = 64;

// ---- bodies ----------------------------------------------------------------------------------

/// An amount: "BigDecimal" in the seed. Sent as a JSON string (`"4.99"`) or a JSON number
/// (`4.99`), read exactly (never through binary floating point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(pub Decimal);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json keeps a number's text (feature `arbitrary_precision`): `Value` carries it.
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(D::Error::custom(format!(
                    "expected a decimal number or a string holding one, found {}",
                    json_kind(&other)
                )));
            }
        };
        parse_decimal(&text).map(Amount).map_err(D::Error::custom)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"))
                    .format(Some(SchemaFormat::Custom("decimal".into()))),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .description(Some(
                "Amount (\"BigDecimal\"): a JSON string or number, read exactly; above zero and \
                 with no more decimals than the currency's ISO 4217 minor unit",
            ))
            .examples([serde_json::json!("4.99")])
            .into()
    }
}

impl ToSchema for Amount {}

/// Parses a decimal exactly: `12.34`, `-1`, `1E+3` (Java's BigDecimal may print exponents).
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let bad = || format!("\"{}\" is not a decimal number", clip(text));
    if text.is_empty() || text.len() > MAX_AMOUNT_TEXT {
        return Err(bad());
    }
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if digits(&mut i) == 0 {
        return Err(bad());
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return Err(bad());
        }
    }
    let mantissa_end = i;
    let mut exponent = 0i64;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let n = digits(&mut i);
        if n == 0 || n > 3 {
            return Err(bad());
        }
        let e: i64 = text
            .get(start..i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        exponent = if negative { -e } else { e };
    }
    if i != b.len() {
        return Err(bad());
    }
    let too_big = || format!("\"{}\" is out of range", clip(text));
    let mantissa = text.get(..mantissa_end).ok_or_else(bad)?;
    let base = Decimal::from_str_exact(mantissa).map_err(|_| too_big())?;
    if exponent == 0 {
        return Ok(base);
    }
    // base x 10^exponent, exactly, or refused.
    let scale = i64::from(base.scale()) - exponent;
    if scale >= 0 {
        let scale = u32::try_from(scale).map_err(|_| too_big())?;
        Decimal::try_from_i128_with_scale(base.mantissa(), scale).map_err(|_| too_big())
    } else {
        let factor = u32::try_from(-scale)
            .ok()
            .and_then(|p| 10i128.checked_pow(p))
            .ok_or_else(too_big)?;
        let m = base.mantissa().checked_mul(factor).ok_or_else(too_big)?;
        Decimal::try_from_i128_with_scale(m, 0).map_err(|_| too_big())
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `T` read from a JSON object only: serde's derive also reads a struct from an array of its
/// fields in order, which no client means.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Obj)
    }
}

/// An optional object field (`null` or absent: `None`).
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Obj<T>>::deserialize(d)?.map(|Obj(t)| t))
}

/// An optional array of objects.
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<Obj<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|Obj(t)| t).collect()))
}

/// A percentage of a split: a whole number from 1 to 100 (JSON number, or a string holding one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Percent(pub u32);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(D::Error::custom(format!(
                    "expected a whole number from 1 to 100, found {}",
                    json_kind(other)
                )));
            }
        };
        match text.parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) && !text.starts_with('+') => Ok(Percent(p)),
            _ => Err(D::Error::custom(format!(
                "\"{}\" is not a whole number from 1 to 100",
                clip(&text)
            ))),
        }
    }
}

impl PartialSchema for Percent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(100))
            .description(Some(
                "Whole percentage (\"Integer\"; a string holding one is accepted); the \
                 percentages of a split add up to 100",
            ))
            .into()
    }
}

impl ToSchema for Percent {}

/// `charge` (alias `charging`): the Parlay X ChargingInformation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargingInformation {
    /// Text for information and billing (at most 1024 characters).
    #[schema(max_length = 1024, example = "Premium article")]
    pub description: Option<String>,
    /// The amount. Required: a `code` alone is refused (SVC0007).
    #[schema(required = true, nullable = false)]
    pub amount: Option<Amount>,
    /// A charging code from a contract; passed to the OCS with the amount.
    #[schema(max_length = 256)]
    pub code: Option<String>,
    /// ISO 4217 alphabetic code; defaults to the reservation's currency (reservation
    /// operations) or the gateway's default currency.
    #[schema(example = "EUR", min_length = 3, max_length = 3)]
    pub currency: Option<String>,
}

/// Body of `charge-amount` and `refund-amount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmountRequest {
    #[serde(alias = "charging", default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charge: Option<ChargingInformation>,
    /// `tel:+34671999000`, `sip:alice@example.com`, `imsi:...`, `nai:...`, `private:...`.
    #[schema(
        required = true,
        nullable = false,
        example = "tel:+34671999000",
        max_length = 256
    )]
    pub end_user_identifier: Option<String>,
    /// Unique per application: the idempotency key (a retry with it never charges twice).
    #[schema(
        required = true,
        nullable = false,
        example = "order-2024-0001",
        max_length = 256
    )]
    pub reference_code: Option<String>,
}

/// One end user of a split.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitShare {
    #[schema(required = true, nullable = false, example = "tel:+34671999000")]
    pub end_user_identifier: Option<String>,
    #[schema(required = true, nullable = false)]
    pub percent: Option<Percent>,
}

/// Body of `charge-split-amount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitRequest {
    #[serde(alias = "charging", default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charge: Option<ChargingInformation>,
    #[schema(required = true, nullable = false, max_length = 256)]
    pub reference_code: Option<String>,
    /// 1 to 100 end users, each once; percentages add up to 100. Shares are exact in the
    /// currency's minor unit (largest remainder).
    #[schema(required = true, nullable = false, min_items = 1, max_items = 100)]
    #[serde(default, deserialize_with = "objects")]
    pub split_info: Option<Vec<SplitShare>>,
}

/// Body of `reserve-amount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    #[serde(alias = "charging", default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charge: Option<ChargingInformation>,
    #[schema(
        required = true,
        nullable = false,
        example = "tel:+34671999000",
        max_length = 256
    )]
    pub end_user_identifier: Option<String>,
}

/// Body of `reserve-additional-amount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveAdditionalRequest {
    #[serde(alias = "charging", default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charge: Option<ChargingInformation>,
    /// The `result` of `reserve-amount`.
    #[schema(required = true, nullable = false, max_length = 128)]
    pub reservation_identifier: Option<String>,
}

/// Body of `charge-reservation`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeReservationRequest {
    #[serde(alias = "charging", default, deserialize_with = "object")]
    #[schema(required = true, nullable = false)]
    pub charge: Option<ChargingInformation>,
    #[schema(required = true, nullable = false, max_length = 256)]
    pub reference_code: Option<String>,
    #[schema(required = true, nullable = false, max_length = 128)]
    pub reservation_identifier: Option<String>,
}

/// Body of `release-reservation`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    #[schema(required = true, nullable = false, max_length = 128)]
    pub reservation_identifier: Option<String>,
}

/// Answer of `reserve-amount`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct ReserveResult {
    /// The reservation identifier, for the other reservation operations.
    pub result: String,
}

// ---- the body extractor ---------------------------------------------------------------------

/// A request body: `Content-Type: application/json` (else 415) within the size limit (else
/// 413), parsed later by [`JsonBody::parse`] into the operation's type.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                MessageId::Svc0002,
                "Content-Type: application/json expected",
            ));
        }
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                MessageId::Svc0002,
                "body: larger than the gateway accepts (http.max_body_bytes)",
            )),
            Err(r) => Err(ApiError::invalid("body", r.body_text())),
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl JsonBody {
    /// The body as `T`; an error names the field (`splitInfo[1].percent`). Fields of the
    /// charging information give SVC0007, the others SVC0002. Unknown fields are ignored.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let mut de = serde_json::Deserializer::from_slice(&self.0);
        let value: T = match serde_path_to_error::deserialize(&mut de) {
            Ok(Obj(v)) => v,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(ApiError::invalid(
                        "body",
                        format!("not valid JSON: {inner}"),
                    ));
                }
                if path == "." {
                    return Err(ApiError::invalid("body", inner));
                }
                return Err(field_error(&path, &inner.to_string()));
            }
        };
        de.end()
            .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
        Ok(value)
    }
}

fn field_error(path: &str, reason: &str) -> ApiError {
    if path.starts_with("charge") || path.starts_with("charging") {
        ApiError::charging_info(path, reason)
    } else {
        ApiError::invalid(path, reason)
    }
}

// ---- validation ------------------------------------------------------------------------------

/// A checked charge: exact money and the texts for the OCS.
#[derive(Clone, Debug)]
struct Charge {
    money: Money,
    description: Option<String>,
    code: Option<String>,
}

impl Charge {
    fn info(&self, reference_code: Option<String>) -> ChargeInfo {
        ChargeInfo {
            description: self.description.clone(),
            code: self.code.clone(),
            reference_code,
            merchant: None,
        }
    }
}

/// Checks `charge`: amount present, positive, exact in the currency, encodable as CC-Money.
fn charge(c: Option<ChargingInformation>, default_currency: Currency) -> Result<Charge, ApiError> {
    let Some(c) = c else {
        return Err(ApiError::charging_info(
            "charge",
            "required (an object with amount and currency)",
        ));
    };
    let description = text_field("charge.description", c.description, MAX_DESCRIPTION, true)?;
    let code = text_field("charge.code", c.code, MAX_CODE, false)?;
    let Some(Amount(amount)) = c.amount else {
        let why = if code.is_some() {
            "required: charging by code alone is not supported, give the amount with the code"
        } else {
            "required"
        };
        return Err(ApiError::charging_info("charge.amount", why));
    };
    let currency = match c.currency {
        None => default_currency,
        Some(code) => money::currency(&code)
            .map_err(|_| ApiError::charging_info("charge.currency", unknown_currency(&code)))?,
    };
    let money = Money::payment(amount, currency).map_err(|e| match e {
        MoneyError::NotPositive => ApiError::charging_info("charge.amount", "must be above zero"),
        other => ApiError::charging_info("charge.amount", other),
    })?;
    money
        .unit_value()
        .map_err(|e| ApiError::charging_info("charge.amount", e))?;
    // Canonical: exactly the currency's minor unit (`10`, `10.0` and `10.00` EUR are one
    // amount, and one request for idempotency). Cannot overflow: the normalised mantissa
    // fits an i64 and the scale grows by at most the minor unit (<= 4).
    let mut canonical = money.amount;
    if let Ok(minor) = money::minor_unit(currency) {
        canonical.rescale(minor);
    }
    Ok(Charge {
        money: Money::new(canonical, currency),
        description,
        code,
    })
}

fn unknown_currency(code: &str) -> String {
    format!(
        "\"{}\" is not an ISO 4217 alphabetic currency code",
        clip(code)
    )
}

/// An optional text: not empty, at most `max` characters, no control characters (except
/// line breaks and tabs where `multiline`).
fn text_field(
    field: &str,
    v: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    check_text(field, &v, max, multiline, field.starts_with("charge"))?;
    Ok(Some(v))
}

fn check_text(
    field: &str,
    v: &str,
    max: usize,
    multiline: bool,
    charging: bool,
) -> Result<(), ApiError> {
    let err = |why: String| {
        if charging {
            ApiError::charging_info(field, why)
        } else {
            ApiError::invalid(field, why)
        }
    };
    if v.trim().is_empty() {
        return Err(err("must not be empty".into()));
    }
    if v.chars().count() > max {
        return Err(err(format!("longer than {max} characters")));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(err("must not contain control characters".into()));
    }
    Ok(())
}

/// A required text field.
fn required(field: &str, v: Option<String>, max: usize) -> Result<String, ApiError> {
    let Some(v) = v else {
        return Err(ApiError::invalid(field, "required"));
    };
    check_text(field, &v, max, false, false)?;
    Ok(v)
}

/// A checked end user: the Subscription-Id and its canonical URI (`tel:34671999000`).
#[derive(Clone, Debug)]
struct EndUser {
    sub: SubscriptionId,
    uri: String,
}

fn end_user(field: &str, v: Option<String>) -> Result<EndUser, ApiError> {
    let v = required(field, v, 256)?;
    let sub = SubscriptionId::parse(&v).map_err(|e| ApiError::invalid(field, e))?;
    let uri = sub.key();
    Ok(EndUser { sub, uri })
}

fn reservation_id(v: Option<String>) -> Result<String, ApiError> {
    let v = required("reservationIdentifier", v, MAX_RESERVATION_ID)?;
    if !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "reservationIdentifier",
            "not a reservation identifier of this gateway",
        ));
    }
    Ok(v)
}

/// The optional `Idempotency-Key` header: 1 to 256 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let field = "Idempotency-Key";
    let s = v
        .to_str()
        .map_err(|_| ApiError::invalid(field, "visible ASCII expected"))?;
    if s.is_empty() || s.len() > MAX_KEY || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            format!("1 to {MAX_KEY} visible ASCII characters expected"),
        ));
    }
    Ok(Some(s.to_string()))
}

// ---- running an operation --------------------------------------------------------------------

/// Runs a charging call in its own task (so that a dropped request never cuts it in half) and
/// maps its outcome; records the Session-Id and operation id on the request's span.
async fn run<F>(op: Operation, call: F) -> Result<Done, ApiError>
where
    F: Future<Output = OpResult> + Send + 'static,
{
    let span = tracing::Span::current();
    let result = match tokio::spawn(call.instrument(span.clone())).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "charging task failed");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                MessageId::Svc0001,
                super::error::unknown_outcome(op, "internal error"),
            ));
        }
    };
    match result {
        Ok(done) => {
            if !done.session_id.is_empty() {
                span.record("session_id", done.session_id.as_str());
            }
            if !done.operation_id.is_empty() {
                span.record("operation_id", done.operation_id.as_str());
            }
            if done.replayed {
                tracing::info!("replayed the outcome of an earlier identical request");
            }
            Ok(done)
        }
        Err(f) => {
            if let crate::charging::Failure::OutcomeUnknown { operation_id, .. }
            | crate::charging::Failure::InProgress { operation_id } = &f
                && !operation_id.is_empty()
            {
                span.record("operation_id", operation_id.as_str());
            }
            Err(from_failure(op, &f))
        }
    }
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

fn default_currency(st: &ApiState) -> Currency {
    st.charging.client().config().default_currency
}

/// The currency of a reservation the caller owns (for a charge without `currency`).
async fn reservation_currency(charging: &Charging, app: &str, id: &str) -> Option<Currency> {
    let view = charging.reservation(app, id).await?;
    Currency::from_code(&view.currency)
}

// ---- handlers --------------------------------------------------------------------------------

/// Charges an amount to an end user's account (CCR EVENT, DIRECT_DEBITING).
#[utoipa::path(
    post, path = "/rest/payment/charge-amount", tag = "payment",
    request_body(content = AmountRequest, content_type = "application/json"),
    responses((status = 204, description = "Charged (the OCS confirmed; recorded durably)"))
)]
pub(crate) async fn charge_amount(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: JsonBody,
) -> Response {
    answer(amount_op(st, caller, body, Operation::ChargeAmount).await)
}

/// Refunds an amount to an end user's account (CCR EVENT, REFUND_ACCOUNT).
#[utoipa::path(
    post, path = "/rest/payment/refund-amount", tag = "payment",
    request_body(content = AmountRequest, content_type = "application/json"),
    responses((status = 204, description = "Refunded (the OCS confirmed; recorded durably)"))
)]
pub(crate) async fn refund_amount(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: JsonBody,
) -> Response {
    answer(amount_op(st, caller, body, Operation::RefundAmount).await)
}

async fn amount_op(
    st: ApiState,
    caller: Caller,
    body: JsonBody,
    op: Operation,
) -> Result<Response, ApiError> {
    caller.permit(op)?;
    let req: AmountRequest = body.parse()?;
    let charge = charge(req.charge, default_currency(&st))?;
    let user = end_user("endUserIdentifier", req.end_user_identifier)?;
    let reference = required("referenceCode", req.reference_code, MAX_KEY)?;
    caller.permit_money(op, &charge.money)?;
    let key = Key::new(caller.id(), Some(&reference));
    let info = charge.info(Some(reference));
    let charging = Arc::clone(&st.charging);
    run(op, async move {
        if op == Operation::RefundAmount {
            charging
                .refund(&key, &user.sub, &user.uri, charge.money, &info, None)
                .await
        } else {
            charging
                .charge(&key, &user.sub, &user.uri, charge.money, &info)
                .await
        }
    })
    .await?;
    Ok(no_content())
}

/// Charges an amount split among end users by whole percentages, all or nothing (legs charged
/// before a failing one are refunded).
#[utoipa::path(
    post, path = "/rest/payment/charge-split-amount", tag = "payment",
    request_body(content = SplitRequest, content_type = "application/json"),
    responses((status = 204, description = "Every share charged"))
)]
pub(crate) async fn charge_split_amount(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: JsonBody,
) -> Response {
    answer(split_op(st, caller, body).await)
}

async fn split_op(st: ApiState, caller: Caller, body: JsonBody) -> Result<Response, ApiError> {
    let op = Operation::ChargeSplitAmount;
    caller.permit(op)?;
    let req: SplitRequest = body.parse()?;
    let charge = charge(req.charge, default_currency(&st))?;
    let reference = required("referenceCode", req.reference_code, MAX_KEY)?;
    let Some(shares) = req.split_info else {
        return Err(ApiError::invalid("splitInfo", "required"));
    };
    if shares.is_empty() || shares.len() > MAX_SPLIT {
        return Err(ApiError::invalid(
            "splitInfo",
            format!("1 to {MAX_SPLIT} end users expected"),
        ));
    }
    let mut legs: Vec<(SubscriptionId, String, u32)> = Vec::with_capacity(shares.len());
    for (i, s) in shares.into_iter().enumerate() {
        let user = end_user(
            &format!("splitInfo[{i}].endUserIdentifier"),
            s.end_user_identifier,
        )?;
        let Some(Percent(p)) = s.percent else {
            return Err(ApiError::invalid(
                &format!("splitInfo[{i}].percent"),
                "required",
            ));
        };
        if let Some(j) = legs.iter().position(|l| l.1 == user.uri) {
            return Err(ApiError::invalid(
                &format!("splitInfo[{i}].endUserIdentifier"),
                format!("{} is already listed at splitInfo[{j}]", user.uri),
            ));
        }
        legs.push((user.sub, user.uri, p));
    }
    let percents: Vec<u32> = legs.iter().map(|l| l.2).collect();
    split::split(charge.money, &percents).map_err(|e| ApiError::invalid("splitInfo", e))?;
    caller.permit_money(op, &charge.money)?;
    let key = Key::new(caller.id(), Some(&reference));
    let info = charge.info(Some(reference));
    let charging = Arc::clone(&st.charging);
    run(op, async move {
        charging
            .charge_split(&key, charge.money, &legs, &info)
            .await
    })
    .await?;
    Ok(no_content())
}

/// Reserves an amount on an end user's account (CCR INITIAL).
#[utoipa::path(
    post, path = "/rest/payment/reserve-amount", tag = "payment",
    request_body(content = ReserveRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Optional: a retry with the same key answers the same reservation")),
    responses((status = 200, description = "Reserved", body = ReserveResult))
)]
pub(crate) async fn reserve_amount(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Response {
    answer(reserve_op(st, caller, headers, body).await)
}

async fn reserve_op(
    st: ApiState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let op = Operation::ReserveAmount;
    caller.permit(op)?;
    let idem = idempotency_key(&headers)?;
    let req: ReserveRequest = body.parse()?;
    let charge = charge(req.charge, default_currency(&st))?;
    let user = end_user("endUserIdentifier", req.end_user_identifier)?;
    caller.permit_money(op, &charge.money)?;
    let key = Key::new(caller.id(), idem.as_deref());
    let info = charge.info(None);
    let charging = Arc::clone(&st.charging);
    let done = run(op, async move {
        charging
            .reserve(&key, &user.sub, &user.uri, charge.money, &info)
            .await
    })
    .await?;
    let Some(result) = done.reservation_id else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            MessageId::Svc0001,
            "the reservation has no identifier",
        ));
    };
    Ok((StatusCode::OK, axum::Json(ReserveResult { result })).into_response())
}

/// Reserves an additional amount on a reservation (CCR UPDATE).
#[utoipa::path(
    post, path = "/rest/payment/reserve-additional-amount", tag = "payment",
    request_body(content = ReserveAdditionalRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Optional: a retry with the same key never reserves twice")),
    responses((status = 204, description = "The reservation grew by the amount"))
)]
pub(crate) async fn reserve_additional_amount(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Response {
    answer(
        reservation_op(
            st,
            caller,
            headers,
            body,
            Operation::ReserveAdditionalAmount,
        )
        .await,
    )
}

/// Charges an amount against a reservation (CCR UPDATE; the reservation stays open).
#[utoipa::path(
    post, path = "/rest/payment/charge-reservation", tag = "payment",
    request_body(content = ChargeReservationRequest, content_type = "application/json"),
    responses((status = 204, description = "Charged against the reservation"))
)]
pub(crate) async fn charge_reservation(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Response {
    answer(reservation_op(st, caller, headers, body, Operation::ChargeReservation).await)
}

async fn reservation_op(
    st: ApiState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
    op: Operation,
) -> Result<Response, ApiError> {
    caller.permit(op)?;
    let (charge_in, reference, rid) = if op == Operation::ChargeReservation {
        let req: ChargeReservationRequest = body.parse()?;
        let reference = required("referenceCode", req.reference_code, MAX_KEY)?;
        (req.charge, Some(reference), req.reservation_identifier)
    } else {
        let req: ReserveAdditionalRequest = body.parse()?;
        (
            req.charge,
            idempotency_key(&headers)?,
            req.reservation_identifier,
        )
    };
    let rid = reservation_id(rid)?;
    let currency = reservation_currency(&st.charging, caller.id(), &rid)
        .await
        .unwrap_or_else(|| default_currency(&st));
    let charge = charge(charge_in, currency)?;
    caller.permit_money(op, &charge.money)?;
    let key = Key::new(caller.id(), reference.as_deref());
    let info = charge.info(if op == Operation::ChargeReservation {
        reference.clone()
    } else {
        None
    });
    let charging = Arc::clone(&st.charging);
    run(op, async move {
        if op == Operation::ChargeReservation {
            charging
                .charge_reservation(&key, &rid, charge.money, &info)
                .await
        } else {
            charging
                .reserve_additional(&key, &rid, charge.money, &info)
                .await
        }
    })
    .await?;
    Ok(no_content())
}

/// Releases what is left of a reservation (CCR TERMINATION); releasing again succeeds.
#[utoipa::path(
    post, path = "/rest/payment/release-reservation", tag = "payment",
    request_body(content = ReleaseRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Optional: identifies retries of the release")),
    responses((status = 204, description = "Released; the remainder returned to the account"))
)]
pub(crate) async fn release_reservation(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Response {
    answer(release_op(st, caller, headers, body).await)
}

async fn release_op(
    st: ApiState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let op = Operation::ReleaseReservation;
    caller.permit(op)?;
    let idem = idempotency_key(&headers)?;
    let req: ReleaseRequest = body.parse()?;
    let rid = reservation_id(req.reservation_identifier)?;
    let key = Key::new(caller.id(), idem.as_deref());
    let charging = Arc::clone(&st.charging);
    run(op, async move { charging.release(&key, &rid).await }).await?;
    Ok(no_content())
}
