//! Input checks of the TMF654 routes: the body (media type, size, JSON object, fields by
//! name), the subscriber, the amount, the schedule, the Idempotency-Key and the query
//! parameters. Everything is checked before a request reaches the charging layer: a client
//! fault is a 4xx (or a 501 for what RFC 4006 cannot express) and moves no money.
//!
//! How the subscriber (MSISDN) is found:
//! 1. `logicalResource` (an array, or one object): the entries whose `@referredType` (or
//!    `name`) is `MSISDN`, or that name no type; the number is `value`, else `id`
//!    (`34671999000`, `+34671999000` or `tel:+34671999000`: E.164, 5 to 15 digits, not
//!    starting with 0). Several entries must name the same number.
//! 2. else `bucket.id` when it is a bucket id of this gateway (`msisdn-34671999000`, as
//!    GET /bucket gives); with a `logicalResource` too, both must name the same number.
//! 3. `partyAccount` never names a subscriber (the gateway has no account inventory); it is
//!    echoed, like a `bucket.id` of another form.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use iso_currency::Currency;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::TmfError;
use super::model::{
    LogicalResourceRef, TimePeriod, TopupBalance, TopupBalanceCreate, TopupStatus, field_error,
    kind,
};
use super::schedule::{RecurringPeriod, Schedule, rfc3339, to_ms};
use super::topups::{Record, charging_key, topup_href};
use crate::api::error::clip;
use crate::credit_control::money::{self, MoneyError};
use crate::credit_control::{Money, SubscriptionId};

/// Longest Idempotency-Key.
pub const MAX_KEY: usize = 256;
/// Longest `description` / `reason`.
pub const MAX_TEXT: usize = 1024;
/// Longest reference id or MSISDN text.
const MAX_ID: usize = 256;
/// Most periods of an automatic top-up.
pub const MAX_PERIODS: i64 = 10_000;
/// How far in the past `validFor.startDateTime` may be (clock skew; older starts would make
/// the first request run many periods at once).
const MAX_START_AGE_MS: i64 = 24 * 3600 * 1000;

// ---- the body --------------------------------------------------------------------------------

/// A request body: `application/json` (any parameters, e.g. `;charset=utf-8`) or
/// `application/merge-patch+json`, else 415; within `http.max_body_bytes`, else 413.
pub struct TmfBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for TmfBody {
    type Rejection = TmfError;

    async fn from_request(req: Request, state: &S) -> Result<Self, TmfError> {
        if !is_json(req.headers()) {
            return Err(TmfError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "unsupported media type",
                "Content-Type: application/json;charset=utf-8 expected",
            ));
        }
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(TmfError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "payload too large",
                "body: larger than the gateway accepts (http.max_body_bytes)",
            )),
            Err(r) => Err(TmfError::invalid("body", r.body_text())),
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
        || essence.eq_ignore_ascii_case("application/merge-patch+json")
}

impl TmfBody {
    /// The body as `T`: a JSON object, each wrong member named (`amount.units: invalid
    /// type: ...`). Unknown members are ignored unless `T` refuses them
    /// (`#[serde(deny_unknown_fields)]`, as TMF622's order body does).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, TmfError> {
        let value: Value = serde_json::from_slice(&self.0)
            .map_err(|e| TmfError::invalid("body", format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(TmfError::invalid(
                "body",
                format!("expected a JSON object, found {}", kind(&value)),
            ));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let (field, why) = field_error(&e.path().to_string(), &e.into_inner().to_string());
            if field.is_empty() {
                TmfError::invalid("body", why)
            } else {
                TmfError::invalid(&field, why)
            }
        })
    }
}

/// The optional `Idempotency-Key` header: 1 to 256 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, TmfError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        TmfError::invalid(
            "Idempotency-Key",
            format!("1 to {MAX_KEY} visible ASCII characters expected"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_KEY || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

// ---- fields ----------------------------------------------------------------------------------

fn text(
    field: &str,
    v: Option<String>,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, TmfError> {
    let Some(v) = v else { return Ok(None) };
    if v.trim().is_empty() {
        return Err(TmfError::invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(TmfError::invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(TmfError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(v))
}

/// The digits of an MSISDN given as `34671999000`, `+34671999000` or `tel:+34671999000`.
pub fn msisdn(field: &str, v: &str) -> Result<String, TmfError> {
    let bad =
        |why: &str| TmfError::invalid(field, format!("\"{}\" is not an MSISDN: {why}", clip(v)));
    let t = v.trim();
    let t = t
        .strip_prefix("tel:")
        .or_else(|| t.strip_prefix("TEL:"))
        .unwrap_or(t);
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("E.164 digits expected (optionally after + or tel:+)"));
    }
    if !(5..=15).contains(&digits.len()) {
        return Err(bad("an E.164 number has 5 to 15 digits"));
    }
    if digits.starts_with('0') {
        return Err(bad("an E.164 number starts with a country code (not 0)"));
    }
    Ok(digits.to_string())
}

/// The MSISDN of a gateway bucket id (`msisdn-34671999000`), if it is one.
pub fn bucket_msisdn(id: &str) -> Option<Result<String, TmfError>> {
    let digits = id.strip_prefix("msisdn-")?;
    Some(msisdn("bucket.id", digits))
}

fn is_msisdn_entry(r: &LogicalResourceRef) -> bool {
    match (&r.referred_type, &r.name) {
        (Some(t), _) => t.eq_ignore_ascii_case("msisdn"),
        (None, Some(n)) => n.eq_ignore_ascii_case("msisdn"),
        (None, None) => true,
    }
}

/// The MSISDN digits of a top-up's subscriber (see the module documentation).
fn subscriber(
    resources: &[LogicalResourceRef],
    bucket: Option<&str>,
    party_account: bool,
) -> Result<String, TmfError> {
    let mut found: Option<(String, String)> = None;
    for (i, r) in resources.iter().enumerate() {
        if !is_msisdn_entry(r) {
            continue;
        }
        let (field, raw) = match (&r.value, &r.id) {
            (Some(v), _) => (format!("logicalResource[{i}].value"), v),
            (None, Some(id)) => (format!("logicalResource[{i}].id"), id),
            (None, None) => {
                return Err(TmfError::invalid(
                    &format!("logicalResource[{i}]"),
                    "an MSISDN entry needs value (or id) holding the number",
                ));
            }
        };
        if raw.len() > MAX_ID {
            return Err(TmfError::invalid(&field, "too long"));
        }
        let digits = msisdn(&field, raw)?;
        match &found {
            Some((d, at)) if *d != digits => {
                return Err(TmfError::invalid(
                    &field,
                    format!("names {digits}, but {at} names {d}: one subscriber per top-up"),
                ));
            }
            Some(_) => {}
            None => found = Some((digits, field)),
        }
    }
    let from_bucket = match bucket.and_then(bucket_msisdn) {
        Some(r) => Some(r?),
        None => None,
    };
    match (found, from_bucket) {
        (Some((d, _)), Some(b)) if d != b => Err(TmfError::invalid(
            "bucket.id",
            format!("is the bucket of {b}, but logicalResource names {d}"),
        )),
        (Some((d, _)), _) => Ok(d),
        (None, Some(b)) => Ok(b),
        (None, None) => Err(TmfError::invalid(
            "logicalResource",
            format!(
                "required: the subscriber's MSISDN (logicalResource with @referredType MSISDN \
                 and value), or a bucket id of this gateway (msisdn-<number>, from GET \
                 /bucket){}",
                if party_account {
                    "; a partyAccount alone does not name a subscriber"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// A checked amount: positive, exact in the currency's minor unit, encodable as CC-Money;
/// canonical (`10`, `10.0` and `10.00` EUR are one amount, and one request).
pub fn amount(
    field: &str,
    value: Option<rust_decimal::Decimal>,
    units: Option<String>,
) -> Result<Money, TmfError> {
    let Some(value) = value else {
        return Err(TmfError::invalid(&format!("{field}.amount"), "required"));
    };
    let Some(units) = units else {
        return Err(TmfError::invalid(
            &format!("{field}.units"),
            "required (an ISO 4217 currency code)",
        ));
    };
    let currency = currency(&format!("{field}.units"), &units)?;
    let money = Money::payment(value, currency).map_err(|e| {
        let f = format!("{field}.amount");
        match e {
            MoneyError::NotPositive => TmfError::invalid(&f, "must be above zero"),
            other => TmfError::invalid(&f, other),
        }
    })?;
    money
        .unit_value()
        .map_err(|e| TmfError::invalid(&format!("{field}.amount"), e))?;
    let mut canonical = money.amount;
    if let Ok(minor) = money::minor_unit(currency) {
        // Cannot overflow: the normalised mantissa fits an i64 and the scale grows by at
        // most the minor unit (<= 4).
        canonical.rescale(minor);
    }
    Ok(Money::new(canonical, currency))
}

pub fn currency(field: &str, units: &str) -> Result<Currency, TmfError> {
    money::currency(units).map_err(|_| {
        TmfError::invalid(
            field,
            format!("\"{}\" is not an ISO 4217 currency code", clip(units)),
        )
    })
}

fn date_time(field: &str, v: &str) -> Result<OffsetDateTime, TmfError> {
    OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
        TmfError::invalid(
            field,
            format!("\"{}\" is not an RFC 3339 date-time", clip(v)),
        )
    })
}

fn object_or_none(field: &str, v: &Option<Value>) -> Result<(), TmfError> {
    match v {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(TmfError::invalid(
            field,
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

fn objects_or_none(field: &str, v: &Option<Value>) -> Result<(), TmfError> {
    match v {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(TmfError::invalid(
                        &format!("{field}[{i}]"),
                        format!("expected an object, found {}", kind(item)),
                    ));
                }
            }
            Ok(())
        }
        Some(other) => Err(TmfError::invalid(
            field,
            format!("expected an array of objects, found {}", kind(other)),
        )),
    }
}

fn reference_id(field: &str, id: &Option<String>) -> Result<(), TmfError> {
    match id {
        None => Err(TmfError::invalid(field, "required")),
        Some(s) => text(field, Some(s.clone()), MAX_ID, false).map(|_| ()),
    }
}

// ---- the create request ---------------------------------------------------------------------

/// The schedule asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recurring {
    pub period: RecurringPeriod,
    pub periods: Option<u32>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

/// A checked create request.
#[derive(Clone, Debug)]
pub(crate) struct NewTopup {
    pub msisdn: String,
    pub subscriber: SubscriptionId,
    pub money: Money,
    pub recurring: Option<Recurring>,
    /// The view's client-given parts (the server's are filled in by `into_record`).
    pub view: TopupBalance,
    pub client_reason: Option<String>,
    /// Of the canonical request: an Idempotency-Key reused for another request is refused.
    pub hash: String,
}

/// Checks a create request at `now`.
pub(crate) fn new_topup(
    req: TopupBalanceCreate,
    now: OffsetDateTime,
) -> Result<NewTopup, TmfError> {
    match req.usage_type.as_deref() {
        None | Some("monetary") => {}
        Some(u @ ("voice" | "data" | "sms" | "other")) => {
            return Err(TmfError::not_implemented(
                "usageType",
                format!(
                    "\"{u}\" top-ups are not supported: this gateway tops up monetary balances \
                     (CC-Money); units of other usage types need an OCS-specific bucket mapping"
                ),
            ));
        }
        Some(other) => {
            return Err(TmfError::invalid(
                "usageType",
                format!(
                    "\"{}\" is not a usage type (monetary, voice, data, sms, other)",
                    clip(other)
                ),
            ));
        }
    }
    if req.voucher.is_some() {
        return Err(TmfError::not_implemented(
            "voucher",
            "voucher top-ups are not supported: RFC 4006 credit-control has no voucher; pay \
             by other means and send the amount",
        ));
    }
    let Some(q) = req.amount else {
        return Err(TmfError::invalid(
            "amount",
            "required (an object with amount and units)",
        ));
    };
    let money = amount("amount", q.amount.map(|a| a.0), q.units)?;
    if let Some(b) = &req.bucket {
        reference_id("bucket.id", &b.id)?;
    }
    if let Some(p) = &req.party_account {
        reference_id("partyAccount.id", &p.id)?;
    }
    let resources = req.logical_resource.clone().unwrap_or_default();
    if resources.len() > 16 {
        return Err(TmfError::invalid("logicalResource", "at most 16 entries"));
    }
    let digits = subscriber(
        &resources,
        req.bucket.as_ref().and_then(|b| b.id.as_deref()),
        req.party_account.is_some(),
    )?;
    let subscriber = SubscriptionId::parse(&format!("tel:+{digits}"))
        .map_err(|e| TmfError::invalid("logicalResource", e))?;
    let description = text("description", req.description, MAX_TEXT, true)?;
    let client_reason = text("reason", req.reason, MAX_TEXT, true)?;
    object_or_none("paymentMethod", &req.payment_method)?;
    object_or_none("channel", &req.channel)?;
    object_or_none("requestor", &req.requestor)?;
    objects_or_none("product", &req.product)?;
    objects_or_none("relatedParty", &req.related_party)?;
    let recurring = recurring(
        req.is_auto_topup.unwrap_or(false),
        req.recurring_period.as_deref(),
        req.number_of_periods,
        req.valid_for.as_ref(),
        now,
    )?;
    let view = TopupBalance {
        id: String::new(),
        href: String::new(),
        amount: super::model::Quantity {
            amount: money.amount,
            units: money.currency.code().to_string(),
        },
        usage_type: "monetary".into(),
        status: TopupStatus::Created,
        reason: client_reason.clone(),
        description,
        requested_date: String::new(),
        confirmation_date: None,
        is_auto_topup: recurring.is_some(),
        recurring_period: recurring.as_ref().map(|r| r.period),
        number_of_periods: recurring.as_ref().and_then(|r| r.periods),
        // Echoed in the one form of every date-time (milliseconds, the client's offset kept).
        valid_for: recurring.as_ref().and_then(|r| {
            req.valid_for.as_ref().map(|_| TimePeriod {
                start_date_time: r.start.map(crate::api::datetime::format),
                end_date_time: r.end.map(crate::api::datetime::format),
            })
        }),
        logical_resource: resources,
        bucket: req.bucket,
        party_account: req.party_account,
        payment_method: req.payment_method,
        channel: req.channel,
        requestor: req.requestor,
        product: req.product,
        related_party: req.related_party,
        balance_topup: Vec::new(),
        kind: "TopupBalance".into(),
    };
    let hash = {
        let canonical = serde_json::json!({
            "subscriber": subscriber.key(),
            "amount": money.amount.to_string(),
            "currency": money.currency.code(),
            "recurring": recurring.as_ref().map(|r| (
                r.period.name(),
                r.periods,
                r.start.map(to_ms),
                r.end.map(to_ms),
            )),
            "view": &view,
        });
        hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()))
    };
    Ok(NewTopup {
        msisdn: digits,
        subscriber,
        money,
        recurring,
        view,
        client_reason,
        hash,
    })
}

fn recurring(
    auto: bool,
    period: Option<&str>,
    periods: Option<i64>,
    valid_for: Option<&TimePeriod>,
    now: OffsetDateTime,
) -> Result<Option<Recurring>, TmfError> {
    if !auto {
        if period.is_some() {
            return Err(TmfError::invalid(
                "recurringPeriod",
                "only with isAutoTopup: true",
            ));
        }
        if periods.is_some() {
            return Err(TmfError::invalid(
                "numberOfPeriods",
                "only with isAutoTopup: true",
            ));
        }
        if valid_for.is_some() {
            return Err(TmfError::not_implemented(
                "validFor",
                "a validity (expiry) of a one-time top-up cannot be expressed in RFC 4006 \
                 credit-control; validFor is accepted with isAutoTopup: true (the window of \
                 its periods)",
            ));
        }
        return Ok(None);
    }
    let Some(p) = period else {
        return Err(TmfError::invalid(
            "recurringPeriod",
            "required with isAutoTopup: true (weekly, fortnightly or monthly)",
        ));
    };
    let period = RecurringPeriod::from_name(p).ok_or_else(|| {
        TmfError::invalid(
            "recurringPeriod",
            format!("\"{}\": weekly, fortnightly or monthly", clip(p)),
        )
    })?;
    let periods = match periods {
        None => None,
        Some(n) if (1..=MAX_PERIODS).contains(&n) => u32::try_from(n).ok(),
        Some(n) => {
            return Err(TmfError::invalid(
                "numberOfPeriods",
                format!("{n}: 1 to {MAX_PERIODS} (absent: until cancelled)"),
            ));
        }
    };
    let start = match valid_for.and_then(|v| v.start_date_time.as_deref()) {
        Some(s) => Some(date_time("validFor.startDateTime", s)?),
        None => None,
    };
    let end = match valid_for.and_then(|v| v.end_date_time.as_deref()) {
        Some(s) => Some(date_time("validFor.endDateTime", s)?),
        None => None,
    };
    let now_ms = to_ms(now);
    if let Some(s) = start
        && to_ms(s) < now_ms - MAX_START_AGE_MS
    {
        return Err(TmfError::invalid(
            "validFor.startDateTime",
            "more than 24 hours in the past: an automatic top-up starts now or later",
        ));
    }
    if let Some(e) = end {
        let first = start.map(to_ms).unwrap_or(now_ms);
        if to_ms(e) <= first {
            return Err(TmfError::invalid(
                "validFor.endDateTime",
                "must be after the start (validFor.startDateTime, or now)",
            ));
        }
    }
    Ok(Some(Recurring {
        period,
        periods,
        start,
        end,
    }))
}

impl NewTopup {
    /// The record of a new top-up `id` of `app`, created at `now`.
    pub(crate) fn into_record(self, id: String, app: &str, now: OffsetDateTime) -> Record {
        let now_ms = to_ms(now);
        let mut view = self.view;
        view.href = topup_href(&id);
        view.requested_date = rfc3339(now_ms);
        view.status = TopupStatus::Created;
        let schedule = self.recurring.map(|r| {
            let start = r.start.unwrap_or(now);
            Schedule {
                period: r.period,
                start_ms: to_ms(start),
                offset_s: start.offset().whole_seconds(),
                periods: r.periods,
                end_ms: r.end.map(to_ms),
                next: 1,
            }
        });
        Record {
            key: charging_key(&id),
            view: TopupBalance { id, ..view },
            app: app.to_string(),
            subscriber: self.subscriber.key(),
            msisdn: self.msisdn,
            amount: self.money.amount,
            currency: self.money.currency.code().to_string(),
            request_hash: self.hash,
            first_attempt_ms: now_ms,
            schedule,
            parent: None,
            error: None,
            client_reason: self.client_reason,
        }
    }
}

/// The bucket's subscriber of `GET /bucket/{id}`.
pub fn bucket_path_id(id: &str) -> Result<String, TmfError> {
    match bucket_msisdn(id) {
        Some(Ok(d)) => Ok(d),
        _ => Err(TmfError::not_found(format!(
            "bucket \"{}\" (bucket ids are msisdn-<E.164 number>)",
            clip(id)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn req(v: Value) -> TopupBalanceCreate {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: Value) -> TmfError {
        new_topup(req(v), datetime!(2025-01-31 10:00 UTC)).unwrap_err()
    }

    fn ok(v: Value) -> NewTopup {
        new_topup(req(v), datetime!(2025-01-31 10:00 UTC)).unwrap()
    }

    #[test]
    fn msisdns_and_buckets() {
        for good in [
            "34671999000",
            "+34671999000",
            "tel:+34671999000",
            " 34671999000 ",
        ] {
            assert_eq!(msisdn("f", good).unwrap(), "34671999000", "{good}");
        }
        for bad in [
            "",
            "+",
            "3467199900a",
            "0034671999000",
            "1234",
            "1234567890123456",
            "tel:",
        ] {
            let e = msisdn("f", bad).unwrap_err();
            assert_eq!(e.status, "400", "{bad}");
            assert!(e.message.starts_with("f: "), "{}", e.message);
        }
        assert_eq!(bucket_path_id("msisdn-34671999000").unwrap(), "34671999000");
        assert_eq!(bucket_path_id("b-1").unwrap_err().status, "404");
        assert_eq!(bucket_path_id("msisdn-x").unwrap_err().status, "404");
    }

    #[test]
    fn the_subscriber_is_found_as_documented() {
        let m = |v: Value| ok(v).msisdn;
        let amount = serde_json::json!({"amount": 10, "units": "EUR"});
        // API.md 6.3 D: array, @referredType MSISDN, number in id.
        assert_eq!(
            m(
                serde_json::json!({"amount": amount, "usageType": "monetary",
                "bucket": {"id": "b-1"}, "partyAccount": {"id": "pa-9"},
                "logicalResource": [{"id": "34671999000", "@referredType": "MSISDN"}]})
            ),
            "34671999000"
        );
        // One object with value (TM Forum's Postman shape); other types ignored.
        assert_eq!(
            m(serde_json::json!({"amount": amount,
                "logicalResource": {"value": "+34671999000", "name": "MSISDN"}})),
            "34671999000"
        );
        assert_eq!(
            m(serde_json::json!({"amount": amount, "logicalResource": [
                {"id": "8934071234567890123", "@referredType": "ICCID"},
                {"value": "tel:+34671999000", "id": "lr-1"}]})),
            "34671999000"
        );
        // A gateway bucket id alone.
        assert_eq!(
            m(serde_json::json!({"amount": amount, "bucket": {"id": "msisdn-34600000001"}})),
            "34600000001"
        );
        for (v, field) in [
            (serde_json::json!({"amount": amount}), "logicalResource"),
            (
                serde_json::json!({"amount": amount, "partyAccount": {"id": "pa-9"}}),
                "logicalResource",
            ),
            (
                serde_json::json!({"amount": amount, "logicalResource": [{"id": "34671999000"}, {"id": "34600000001"}]}),
                "logicalResource[1].id",
            ),
            (
                serde_json::json!({"amount": amount, "logicalResource": [{"id": "34671999000"}], "bucket": {"id": "msisdn-34600000001"}}),
                "bucket.id",
            ),
            (
                serde_json::json!({"amount": amount, "logicalResource": [{"@referredType": "MSISDN"}]}),
                "logicalResource[0]",
            ),
            (
                serde_json::json!({"amount": amount, "logicalResource": [{"value": "not-a-number"}]}),
                "logicalResource[0].value",
            ),
            (
                serde_json::json!({"amount": amount, "bucket": {"name": "x"}, "logicalResource": [{"id": "34671999000"}]}),
                "bucket.id",
            ),
        ] {
            let e = err(v.clone());
            assert_eq!(e.status, "400", "{v}");
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{v}: {}",
                e.message
            );
        }
    }

    #[test]
    fn amounts_are_exact_and_canonical() {
        let lr = serde_json::json!([{"id": "34671999000"}]);
        let t = ok(
            serde_json::json!({"amount": {"amount": "10", "units": "EUR"}, "logicalResource": lr}),
        );
        assert_eq!(t.money.amount.to_string(), "10.00");
        let same = ok(
            serde_json::json!({"amount": {"amount": 10.0, "units": "EUR"}, "logicalResource": lr}),
        );
        assert_eq!(t.hash, same.hash, "10 and 10.0 EUR are one request");
        let jpy = ok(
            serde_json::json!({"amount": {"amount": 500, "units": "JPY"}, "logicalResource": lr}),
        );
        assert_eq!(jpy.money.amount.to_string(), "500");
        for (amount, field, want) in [
            (
                serde_json::json!({"amount": 0, "units": "EUR"}),
                "amount.amount",
                "above zero",
            ),
            (
                serde_json::json!({"amount": -1, "units": "EUR"}),
                "amount.amount",
                "above zero",
            ),
            (
                serde_json::json!({"amount": "1.001", "units": "EUR"}),
                "amount.amount",
                "more decimals",
            ),
            (serde_json::json!({"amount": 1, "units": "JPY"}), "", ""),
            (
                serde_json::json!({"amount": "1.5", "units": "JPY"}),
                "amount.amount",
                "more decimals",
            ),
            (
                serde_json::json!({"amount": 1, "units": "EUX"}),
                "amount.units",
                "ISO 4217",
            ),
            (
                serde_json::json!({"amount": 1, "units": "MB"}),
                "amount.units",
                "ISO 4217",
            ),
            (
                serde_json::json!({"units": "EUR"}),
                "amount.amount",
                "required",
            ),
            (serde_json::json!({"amount": 1}), "amount.units", "required"),
            (
                serde_json::json!({"amount": "99999999999999999999", "units": "EUR"}),
                "amount.amount",
                "too large",
            ),
        ] {
            let v = serde_json::json!({"amount": amount, "logicalResource": lr});
            if field.is_empty() {
                ok(v);
                continue;
            }
            let e = err(v.clone());
            assert_eq!(e.status, "400", "{v}");
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{v}: {}",
                e.message
            );
            assert!(e.message.contains(want), "{v}: {}", e.message);
        }
    }

    #[test]
    fn what_rfc_4006_cannot_do_is_501() {
        let lr = serde_json::json!([{"id": "34671999000"}]);
        let amount = serde_json::json!({"amount": 1, "units": "EUR"});
        for (v, field) in [
            (
                serde_json::json!({"amount": {"amount": 100, "units": "MB"}, "usageType": "data", "logicalResource": lr}),
                "usageType",
            ),
            (
                serde_json::json!({"amount": amount, "usageType": "sms", "logicalResource": lr}),
                "usageType",
            ),
            (
                serde_json::json!({"amount": amount, "voucher": "V-1", "logicalResource": lr}),
                "voucher",
            ),
            (
                serde_json::json!({"amount": amount, "validFor": {"endDateTime": "2026-01-01T00:00:00Z"}, "logicalResource": lr}),
                "validFor",
            ),
        ] {
            let e = err(v.clone());
            assert_eq!(
                (e.status.as_str(), e.code.as_str()),
                ("501", "NOT_IMPLEMENTED"),
                "{v}"
            );
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{}",
                e.message
            );
        }
        let e =
            err(serde_json::json!({"amount": amount, "usageType": "gold", "logicalResource": lr}));
        assert_eq!(e.status, "400");
    }

    #[test]
    fn schedules() {
        let base = |extra: Value| {
            let mut v = serde_json::json!({"amount": {"amount": 5, "units": "EUR"}, "logicalResource": [{"id": "34671999000"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let t = ok(base(
            serde_json::json!({"isAutoTopup": true, "recurringPeriod": "monthly",
            "numberOfPeriods": 12, "validFor": {"startDateTime": "2025-01-31T10:00:00Z"}}),
        ));
        assert_eq!(
            t.view.valid_for,
            Some(TimePeriod {
                start_date_time: Some("2025-01-31T10:00:00.000Z".into()),
                end_date_time: None,
            }),
            "echoed in the one form: milliseconds always"
        );
        let r = t.recurring.unwrap();
        assert_eq!((r.period, r.periods), (RecurringPeriod::Monthly, Some(12)));
        assert_eq!(r.start, Some(datetime!(2025-01-31 10:00 UTC)));
        // Any precision and offset in; milliseconds out, the client's offset kept.
        let t = ok(base(
            serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly",
            "validFor": {"startDateTime": "2025-01-31T11:30:00.5+01:00",
                         "endDateTime": "2025-06-30T23:59:59.123456Z"}}),
        ));
        assert_eq!(
            t.view.valid_for,
            Some(TimePeriod {
                start_date_time: Some("2025-01-31T11:30:00.500+01:00".into()),
                end_date_time: Some("2025-06-30T23:59:59.123Z".into()),
            })
        );
        let rec = t.into_record("t-1".into(), "shop", datetime!(2025-01-31 10:00:00.7 UTC));
        assert_eq!(rec.view.requested_date, "2025-01-31T10:00:00.700Z");
        let body = serde_json::to_value(&rec.view).unwrap();
        assert_eq!(crate::api::datetime::assert_fixed_form(&body), 3, "{body}");
        assert!(
            ok(base(
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly"})
            ))
            .recurring
            .unwrap()
            .periods
            .is_none()
        );
        for (extra, field) in [
            (serde_json::json!({"isAutoTopup": true}), "recurringPeriod"),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "daily"}),
                "recurringPeriod",
            ),
            (
                serde_json::json!({"recurringPeriod": "weekly"}),
                "recurringPeriod",
            ),
            (serde_json::json!({"numberOfPeriods": 2}), "numberOfPeriods"),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "numberOfPeriods": 0}),
                "numberOfPeriods",
            ),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "nrOfPeriods": -3}),
                "numberOfPeriods",
            ),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "numberOfPeriods": 10001}),
                "numberOfPeriods",
            ),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "validFor": {"startDateTime": "tomorrow"}}),
                "validFor.startDateTime",
            ),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "validFor": {"startDateTime": "2025-01-01T00:00:00Z"}}),
                "validFor.startDateTime",
            ),
            (
                serde_json::json!({"isAutoTopup": true, "recurringPeriod": "weekly", "validFor": {"startDateTime": "2025-03-01T00:00:00Z", "endDateTime": "2025-02-01T00:00:00Z"}}),
                "validFor.endDateTime",
            ),
        ] {
            let e = err(base(extra.clone()));
            assert_eq!(e.status, "400", "{extra}");
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{extra}: {}",
                e.message
            );
        }
    }
}
