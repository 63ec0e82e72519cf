//! The TMF654 v4 bodies the gateway reads and writes (API.md 5.2, 5.3), also the OpenAPI
//! schemas. Input is read leniently where TM Forum's own artefacts disagree (API.md 5.2:
//! `logicalResource` as an array or one object, `nrOfPeriods` for `numberOfPeriods`, amounts
//! as JSON numbers or strings) and strictly everywhere else: a wrong type is a 400 naming the
//! field. Amounts are exact decimals, written back as JSON numbers with the same digits.

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

use super::schedule::RecurringPeriod;
use crate::api::payment::Amount;

/// TMF `Quantity`: an amount and its units (an ISO 4217 code for money).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quantity {
    /// Exact: written as a JSON number with the digits of the currency's minor unit.
    #[serde(serialize_with = "exact_number", deserialize_with = "exact_amount")]
    #[schema(value_type = f64, example = 10.00)]
    pub amount: Decimal,
    #[schema(example = "EUR")]
    pub units: String,
}

/// A decimal as a JSON number carrying exactly its digits (serde_json `arbitrary_precision`).
pub fn exact_number<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    let n: serde_json::Number = d.to_string().parse().map_err(S::Error::custom)?;
    n.serialize(s)
}

fn exact_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Amount::deserialize(d).map(|a| a.0)
}

/// A quantity as a client sends it: both parts optional here, so that a missing one is
/// reported by name.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct QuantityInput {
    /// A JSON number or a string holding one, read exactly (never through binary floating
    /// point); above zero, with no more decimals than the currency's ISO 4217 minor unit.
    #[schema(value_type = f64, required = true, example = 10)]
    pub amount: Option<Amount>,
    /// An ISO 4217 alphabetic code (`EUR`). Units of other usage types (MB, SMS) are not
    /// accepted: see `usageType`.
    #[schema(required = true, example = "EUR")]
    pub units: Option<String>,
}

/// TMF `BucketRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BucketRef {
    /// A bucket id of this gateway (`msisdn-34671999000`, from GET /bucket) names the
    /// subscriber; any other id is kept as the client's reference.
    #[schema(required = true, example = "msisdn-34671999000")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        rename = "@referredType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub referred_type: Option<String>,
}

/// TMF `PartyAccountRef` (kept as the client's reference: the gateway has no account
/// inventory, so it never names the subscriber).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartyAccountRef {
    #[schema(required = true, example = "pa-9")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// TMF `LogicalResourceRef`: an MSISDN when `@referredType` (or `name`) is `MSISDN`, or
/// when neither is given; the number is `value`, else `id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogicalResourceRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "34671999000")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "+34671999000")]
    pub value: Option<String>,
    #[serde(
        rename = "@referredType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(example = "MSISDN")]
    pub referred_type: Option<String>,
}

/// TMF `TimePeriod` (RFC 3339 date-times; answered with milliseconds, in the offset sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimePeriod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2025-01-31T10:00:00.000Z")]
    pub start_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<String>,
}

/// TMF `RelatedTopupBalance`: the link between an automatic top-up and the top-up of each
/// period. On the parent, every run is listed with `role: child`; on a run, its parent
/// with `role: parent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelatedTopupBalance {
    pub id: String,
    pub href: String,
    /// `parent` or `child`.
    pub role: String,
}

/// The status of a top-up (TMF `ActionStatusType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TopupStatus {
    /// Accepted, not finished: the outcome is pending (or not known yet), or, for an automatic
    /// top-up, periods are still to run.
    Created,
    /// Refused (`reason` names the Diameter result); nothing was topped up.
    Failed,
    /// An automatic top-up stopped by PATCH or DELETE: no further period runs.
    Cancelled,
    /// The OCS confirmed the top-up (2001), or every period of an automatic top-up has run.
    Completed,
}

impl TopupStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "completed" => Self::Completed,
            _ => return None,
        })
    }
}

/// Body of `POST /topupBalance` (TMF `TopupBalance_Create`). Unknown members are ignored.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopupBalanceCreate {
    /// Required: the amount to add (money: `units` is an ISO 4217 code).
    #[serde(default, deserialize_with = "object")]
    #[schema(required = true)]
    pub amount: Option<QuantityInput>,
    /// `monetary` (the default when absent). `voice`, `data`, `sms` and `other` are answered
    /// 501: RFC 4006 could carry them (CC-Time, CC-Total-Octets, CC-Service-Specific-Units)
    /// but their bucket-to-service mapping is OCS-specific and not configured here.
    #[schema(example = "monetary")]
    pub usage_type: Option<String>,
    /// The target bucket: a gateway bucket id names the subscriber (see `logicalResource`).
    #[serde(default, deserialize_with = "object")]
    pub bucket: Option<BucketRef>,
    /// The account owning the bucket (echoed; it does not name the subscriber).
    #[serde(default, deserialize_with = "object")]
    pub party_account: Option<PartyAccountRef>,
    /// The subscriber's MSISDN: an array (TMF654 v4) or one object (TM Forum's Postman
    /// collection). One of `logicalResource` or a gateway `bucket.id` is required.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schema(value_type = Vec<LogicalResourceRef>)]
    pub logical_resource: Option<Vec<LogicalResourceRef>>,
    /// Runs every `recurringPeriod`, `numberOfPeriods` times (absent: until cancelled), from
    /// `validFor.startDateTime` (absent: now) until `validFor.endDateTime` (absent: no end).
    pub is_auto_topup: Option<bool>,
    pub recurring_period: Option<String>,
    /// 1 to 10000; the pre-v4 name `nrOfPeriods` is accepted.
    #[serde(alias = "nrOfPeriods")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub number_of_periods: Option<i64>,
    /// For an automatic top-up, the window of its periods. Not accepted on a one-time
    /// top-up (501): a balance expiry cannot be expressed in RFC 4006 credit-control.
    #[serde(default, deserialize_with = "object")]
    pub valid_for: Option<TimePeriod>,
    /// Not accepted (501): a voucher cannot be expressed in RFC 4006 credit-control.
    pub voucher: Option<String>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
    /// Echoed. The gateway only credits the OCS account; collecting the payment is the
    /// caller's business.
    #[schema(value_type = Option<Object>)]
    pub payment_method: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub channel: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub requestor: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub product: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub related_party: Option<Value>,
}

/// A top-up (TMF `TopupBalance`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopupBalance {
    #[schema(example = "tp-1945e0c1a2b-7f3a9c0d12e4b6a8")]
    pub id: String,
    #[schema(
        example = "/tmf-api/prepayBalanceManagement/v4/topupBalance/tp-1945e0c1a2b-7f3a9c0d12e4b6a8"
    )]
    pub href: String,
    pub amount: Quantity,
    pub usage_type: String,
    pub status: TopupStatus,
    /// The client's text; on a failed or pending top-up, the cause (API.md 9.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub requested_date: String,
    /// When the OCS confirmed it (or the last period of an automatic top-up ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_date: Option<String>,
    pub is_auto_topup: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring_period: Option<RecurringPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_periods: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<TimePeriod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical_resource: Vec<LogicalResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_account: Option<PartyAccountRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payment_method: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub channel: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub requestor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub product: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub related_party: Option<Value>,
    /// An automatic top-up's runs (`role: child`), or a run's parent (`role: parent`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub balance_topup: Vec<RelatedTopupBalance>,
    #[serde(rename = "@type")]
    #[schema(example = "TopupBalance")]
    pub kind: String,
}

/// Body of `PATCH /topupBalance/{id}`: only `status: cancelled` (of an automatic top-up).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct TopupBalanceUpdate {
    #[schema(required = true, example = "cancelled")]
    pub status: Option<String>,
}

/// The answer of a balance sufficiency query: what CHECK_BALANCE said for an amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceCheck {
    /// The amount asked about.
    pub amount: Quantity,
    /// `ENOUGH_CREDIT` or `NO_CREDIT` (RFC 8506 Check-Balance-Result), or the Diameter name
    /// of another answer (`DIAMETER_CREDIT_CONTROL_NOT_APPLICABLE`).
    #[schema(example = "ENOUGH_CREDIT")]
    pub result: String,
    /// Whether the account covers the amount now (no reservation is made).
    pub sufficient: bool,
    pub checked_date: String,
}

/// What the gateway itself recorded: the completed top-ups it made for this subscriber for
/// the calling application (not the balance: other channels move it too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopupLedger {
    /// Per currency.
    pub total: Vec<Quantity>,
    pub count: usize,
}

/// A subscriber's monetary bucket (TMF `Bucket`), as far as RFC 4006 can tell: no
/// `remainingValue` (CHECK_BALANCE answers only ENOUGH_CREDIT / NO_CREDIT for an amount), a
/// `balanceCheck` when an amount was asked about, and the gateway's own `topupLedger`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    #[schema(example = "msisdn-34671999000")]
    pub id: String,
    pub href: String,
    pub name: String,
    pub description: String,
    pub usage_type: String,
    pub logical_resource: Vec<LogicalResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_check: Option<BalanceCheck>,
    pub topup_ledger: TopupLedger,
    #[serde(rename = "@type")]
    #[schema(example = "GatewayMonetaryBucket")]
    pub kind: String,
    #[serde(rename = "@baseType")]
    #[schema(example = "Bucket")]
    pub base_type: String,
}

/// An optional field that must be a JSON object (serde's derive would also read a struct
/// from an array of its fields in order, which no client means).
pub fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => member(v)
            .map(Some)
            .map_err(|(path, e)| D::Error::custom(nested("", &path, &e))),
        Some(other) => Err(D::Error::custom(format!(
            "expected an object, found {}",
            kind(&other)
        ))),
    }
}

/// `logicalResource`: an array of objects, or one object.
fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<LogicalResourceRef>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => member(v)
            .map(|r| Some(vec![r]))
            .map_err(|(path, e)| D::Error::custom(nested("", &path, &e))),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len().min(16));
            for (i, item) in items.into_iter().enumerate() {
                if !item.is_object() {
                    return Err(D::Error::custom(format!(
                        "[{i}]: expected an object, found {}",
                        kind(&item)
                    )));
                }
                out.push(
                    member(item).map_err(|(path, e)| {
                        D::Error::custom(nested(&format!("[{i}]"), &path, &e))
                    })?,
                );
            }
            Ok(Some(out))
        }
        Some(other) => Err(D::Error::custom(format!(
            "expected an object or an array of objects, found {}",
            kind(&other)
        ))),
    }
}

/// A member object, or the path of its wrong field and why.
fn member<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().to_string())
    })
}

/// The message of an error inside a member: `\u{1}<path below the member>\u{1}<why>`, so that
/// [`field_error`] can name the whole path (`amount.units`) however deep it is.
fn nested(index: &str, path: &str, why: &str) -> String {
    let below = if path == "." || path.is_empty() {
        index.to_string()
    } else {
        format!("{index}.{path}")
    };
    match why.strip_prefix('\u{1}') {
        // Already nested deeper: its path goes below this one.
        Some(rest) => match rest.split_once('\u{1}') {
            Some((deeper, why)) => format!("\u{1}{below}{deeper}\u{1}{why}"),
            None => format!("\u{1}{below}\u{1}{rest}"),
        },
        None => format!("\u{1}{below}\u{1}{why}"),
    }
}

/// The field and the reason of a deserialisation error at `path` (`amount`) whose message
/// may carry the path inside a member (see [`nested`]): (`amount.units`, `invalid type: ...`).
pub fn field_error(path: &str, why: &str) -> (String, String) {
    let path = if path == "." { "" } else { path };
    match why
        .strip_prefix('\u{1}')
        .and_then(|r| r.split_once('\u{1}'))
    {
        Some((below, why)) => {
            let below = if path.is_empty() {
                below.trim_start_matches('.')
            } else {
                below
            };
            (format!("{path}{below}"), why.to_string())
        }
        None => (path.to_string(), why.to_string()),
    }
}

/// What a JSON value is, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn quantities_are_exact_both_ways() {
        let q: Quantity = serde_json::from_str(r#"{"amount": 10.10, "units": "EUR"}"#).unwrap();
        assert_eq!(q.amount, Decimal::from_str("10.10").unwrap());
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"amount":10.10,"units":"EUR"}"#
        );
        let q: Quantity =
            serde_json::from_str(r#"{"amount": "0.1000000000000000055511151231", "units": "EUR"}"#)
                .unwrap();
        assert_eq!(q.amount.to_string(), "0.1000000000000000055511151231");
    }

    #[test]
    fn logical_resource_in_both_shapes_and_bad_members_named() {
        let one: TopupBalanceCreate =
            serde_json::from_str(r#"{"logicalResource": {"value": "34671999000"}}"#).unwrap();
        assert_eq!(
            one.logical_resource.unwrap()[0].value.as_deref(),
            Some("34671999000")
        );
        let many: TopupBalanceCreate = serde_json::from_str(
            r#"{"logicalResource": [{"id": "1", "@referredType": "ICCID"}, {"id": "34671999000"}]}"#,
        )
        .unwrap();
        assert_eq!(many.logical_resource.unwrap().len(), 2);
        for (body, want) in [
            (
                r#"{"logicalResource": 5}"#,
                "expected an object or an array",
            ),
            (r#"{"logicalResource": [5]}"#, "[0]: expected an object"),
            (
                r#"{"logicalResource": [{"id": 5}]}"#,
                "logicalResource[0].id: invalid type",
            ),
            (
                r#"{"amount": [1, "EUR"]}"#,
                "amount: expected an object, found an array",
            ),
            (
                r#"{"amount": {"amount": true}}"#,
                "amount.amount: expected a decimal",
            ),
            (
                r#"{"amount": {"units": 978}}"#,
                "amount.units: invalid type",
            ),
            (r#"{"bucket": {"id": []}}"#, "bucket.id: invalid type"),
        ] {
            let mut de = serde_json::Deserializer::from_str(body);
            let e = serde_path_to_error::deserialize::<_, TopupBalanceCreate>(&mut de).unwrap_err();
            let (field, why) = field_error(&e.path().to_string(), &e.inner().to_string());
            let text = format!("{field}: {why}");
            assert!(text.contains(want), "{body}: {text}");
        }
        let aliased: TopupBalanceCreate = serde_json::from_str(r#"{"nrOfPeriods": 3}"#).unwrap();
        assert_eq!(aliased.number_of_periods, Some(3));
    }
}
