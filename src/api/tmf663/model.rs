//! The shopping cart as the store keeps it, and its prices: what the REST handlers
//! (`api::tmf663`), the abandoned-cart follow-up (`tmf663::followup`) and the order pipeline
//! (`api::tmf622`) share.
//!
//! ```text
//! store row: id = cart id, kind tmf663.cart, app = the caller's application
//!   state  active       the customer is filling it (items, numbers held for it)
//!          checkedOut   an order was made of it (CartDoc::order); it changes no more
//!          deleted      DELETE: never served again, its numbers released (the store has no delete)
//!   due_ms when the abandoned-cart follow-up is due (updated + [shop] abandoned_after), none once
//!          sent or when the cart has no contact or is no longer active
//!   body   CartDoc (JSON)
//! ```
//!
//! Prices come from the TMF620 catalog in the store, never from the client: each
//! `productOfferingPrice` of the offering, `price.value` as tax included (`taxRate` from its
//! first `tax` entry), times the quantity, exactly (rust_decimal). `cartTotalPrice` is one
//! entry per `(priceType, recurringChargePeriod, currency)` of the active items; the
//! one-time total is what checkout charges.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::tmf620::catalog::{self, Kind};
use crate::store::{ResourceRow, Store, StoreError};

/// Store kind of a cart row.
pub const KIND_CART: &str = "tmf663.cart";

/// A cart's row state (`ResourceRow::state`).
pub mod state {
    pub const ACTIVE: &str = "active";
    pub const CHECKED_OUT: &str = "checkedOut";
    pub const DELETED: &str = "deleted";
}

/// `priceType` of the prices checkout charges.
pub const ONE_TIME: &str = "oneTime";

/// Most items one cart holds, most resources one item holds, largest quantity.
pub const MAX_ITEMS: usize = 50;
pub const MAX_RESOURCES: usize = 4;
pub const MAX_QUANTITY: u32 = 99;

/// A cart, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartDoc {
    pub id: String,
    /// In the client's order.
    pub items: Vec<CartItem>,
    /// Where the follow-up of an abandoned cart goes (TMF `contactMedium`).
    #[serde(default)]
    pub contact: Vec<Contact>,
    /// TMF `relatedParty`, as given (`{id, name, role, @referredType}` objects).
    #[serde(default)]
    pub related_party: Vec<Value>,
    /// TMF `characteristic`, as given.
    #[serde(default)]
    pub characteristic: Vec<Value>,
    /// TMF `validFor`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<Value>,
    /// Computed from `items` by [`totals`] on every change.
    pub total: Vec<Total>,
    /// The abandoned-cart follow-up, once sent (sent at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
    /// The TMF622 order made of it, once checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The customer (TMF629 id) whose access token made the cart: only that customer's token
    /// sees it (the application's own credentials see all of its carts). Also the row's
    /// `parent`, so that a customer's listing is a store query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub created_ms: i64,
    /// Last change by the customer (what "untouched" is measured from).
    pub updated_ms: i64,
}

/// One way to reach the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub medium: Medium,
    /// An email address, or an E.164 number (`+34600000001`).
    pub address: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Medium {
    Email,
    Sms,
}

/// The follow-up sent for an abandoned cart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    pub sent_ms: i64,
    pub medium: Medium,
    /// The outbox event that carries it (`GET /admin/events/{id}`).
    pub event: String,
}

/// One item of a cart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    /// `"01"`, `"02"`, ... when the client gives none.
    pub id: String,
    pub quantity: u32,
    /// TMF `action`: `add` | `modify` | `delete` | `noChange`.
    pub action: String,
    /// TMF `status`: `active` | `saveForLater` (only active items are priced into the total
    /// and ordered).
    pub status: String,
    pub offering_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offering_name: Option<String>,
    /// The inventory resources chosen for this item (held for the cart).
    #[serde(default)]
    pub resources: Vec<Chosen>,
    /// TMF `product` (ProductRefOrValue) as given, without the chosen resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Value>,
    /// From the catalog, one per productOfferingPrice of the offering.
    pub prices: Vec<LinePrice>,
}

impl CartItem {
    /// Whether the item counts in the total and goes into an order.
    pub fn counts(&self) -> bool {
        self.status == "active" && self.action != "delete"
    }
}

/// An inventory resource chosen for an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chosen {
    /// The TMF639 resource id (`msisdn-34600123456`).
    pub id: String,
    /// `MSISDN` or `ICCID`.
    pub category: String,
    pub value: String,
}

/// One catalog price of an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinePrice {
    /// The ProductOfferingPrice id.
    pub price_id: String,
    pub name: String,
    /// `oneTime`, `recurring`, `usage`, ... as the catalog says.
    pub price_type: String,
    /// `recurringChargePeriodType` (`month`), for recurring prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    pub currency: String,
    /// One unit, tax included.
    pub unit: Decimal,
    /// Percent (21 = 21 %), when the catalog gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_rate: Option<Decimal>,
    /// `unit` x quantity, tax included.
    pub total: Decimal,
}

/// One entry of `cartTotalPrice`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Total {
    pub price_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    pub currency: String,
    /// Tax included.
    pub amount: Decimal,
    /// Sum of the lines' duty-free amounts ([`duty_free`]).
    pub duty_free: Decimal,
}

/// Why an item cannot be priced (each is a TMF Error for the client).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("productOffering {0} is not in the catalog")]
    UnknownOffering(String),
    #[error("productOffering {0} is not sellable (isSellable false, or outside its validFor)")]
    NotSellable(String),
    #[error("productOffering {0} has no price in the catalog")]
    NoPrice(String),
    #[error("productOfferingPrice {0} has no usable price (price.value and price.unit)")]
    BadPrice(String),
    #[error("the catalog could not be read: {0}")]
    Store(String),
}

impl From<StoreError> for PriceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.0)
    }
}

/// An offering's name and prices for `quantity` units, from the catalog, at `now_ms`.
pub async fn price_item(
    store: &Store,
    offering_id: &str,
    quantity: u32,
    now_ms: i64,
) -> Result<(Option<String>, Vec<LinePrice>), PriceError> {
    let offering = catalog::get(store, Kind::ProductOffering, offering_id)
        .await?
        .ok_or_else(|| PriceError::UnknownOffering(offering_id.into()))?;
    if !sellable(&offering, now_ms) {
        return Err(PriceError::NotSellable(offering_id.into()));
    }
    let refs: Vec<&str> = offering
        .get("productOfferingPrice")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if refs.is_empty() {
        return Err(PriceError::NoPrice(offering_id.into()));
    }
    let mut prices = Vec::with_capacity(refs.len());
    for id in refs {
        let doc = catalog::get(store, Kind::ProductOfferingPrice, id)
            .await?
            .ok_or_else(|| PriceError::BadPrice(id.into()))?;
        prices.push(line_price(id, &doc, quantity).ok_or_else(|| PriceError::BadPrice(id.into()))?);
    }
    let name = offering
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((name, prices))
}

/// The resource categories an offering asks to be chosen (`resourceCandidate` naming
/// `MSISDN` or `ICCID`, one object or an array of them).
pub async fn required_resources(
    store: &Store,
    offering_id: &str,
) -> Result<Vec<String>, PriceError> {
    let offering = catalog::get(store, Kind::ProductOffering, offering_id)
        .await?
        .ok_or_else(|| PriceError::UnknownOffering(offering_id.into()))?;
    let one = |v: &Value| {
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .filter(|c| c == "MSISDN" || c == "ICCID")
    };
    Ok(match offering.get("resourceCandidate") {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    })
}

fn sellable(offering: &Map<String, Value>, now_ms: i64) -> bool {
    if offering.get("isSellable").and_then(Value::as_bool) == Some(false) {
        return false;
    }
    let Some(valid) = offering.get("validFor") else {
        return true;
    };
    let at = |k: &str| {
        valid
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    };
    at("startDateTime").is_none_or(|s| s <= now_ms) && at("endDateTime").is_none_or(|e| now_ms < e)
}

fn line_price(id: &str, doc: &Map<String, Value>, quantity: u32) -> Option<LinePrice> {
    let (unit, currency) = catalog::price_of(doc)?;
    if unit.is_sign_negative() || iso_currency::Currency::from_code(&currency).is_none() {
        return None;
    }
    let price_type = doc
        .get("priceType")
        .and_then(Value::as_str)
        .unwrap_or(ONE_TIME)
        .to_string();
    let period = (price_type == "recurring")
        .then(|| {
            doc.get("recurringChargePeriodType")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten();
    let tax_rate = doc
        .get("tax")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.get("taxRate"))
        .and_then(|r| match r {
            Value::Number(n) => catalog::decimal(n),
            _ => None,
        })
        .filter(|r| !r.is_sign_negative());
    Some(LinePrice {
        price_id: id.into(),
        name: doc
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string(),
        price_type,
        period,
        total: unit.checked_mul(Decimal::from(quantity))?,
        currency,
        unit,
        tax_rate,
    })
}

/// The amount without tax of a tax-included `amount` at `rate` percent, rounded to the
/// currency's minor unit (half away from zero); `amount` itself without a rate.
pub fn duty_free(amount: Decimal, rate: Option<Decimal>, currency: &str) -> Decimal {
    let Some(rate) = rate.filter(|r| !r.is_zero()) else {
        return amount;
    };
    let digits = iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from);
    let divisor = Decimal::ONE + rate / Decimal::ONE_HUNDRED;
    amount.checked_div(divisor).map_or(amount, |d| {
        d.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero)
    })
}

/// `cartTotalPrice` of `items`: the active ones, one entry per price type, period and
/// currency, in the order first met. None when a sum overflows.
pub fn totals(items: &[CartItem]) -> Option<Vec<Total>> {
    let mut out: Vec<Total> = Vec::new();
    for p in items.iter().filter(|i| i.counts()).flat_map(|i| &i.prices) {
        let free = duty_free(p.total, p.tax_rate, &p.currency);
        match out.iter_mut().find(|t| {
            t.price_type == p.price_type && t.period == p.period && t.currency == p.currency
        }) {
            Some(t) => {
                t.amount = t.amount.checked_add(p.total)?;
                t.duty_free = t.duty_free.checked_add(free)?;
            }
            None => out.push(Total {
                price_type: p.price_type.clone(),
                period: p.period.clone(),
                currency: p.currency.clone(),
                amount: p.total,
                duty_free: free,
            }),
        }
    }
    Some(out)
}

/// What checkout charges: the one-time totals (one per currency).
pub fn one_time(totals: &[Total]) -> Vec<(Decimal, &str)> {
    totals
        .iter()
        .filter(|t| t.price_type == ONE_TIME && !t.amount.is_zero())
        .map(|t| (t.amount, t.currency.as_str()))
        .collect()
}

/// The holder recorded on the inventory for cart `cart` of application `app` (the same
/// key TMF639's PATCH records, so a number held through either API is the cart's).
pub fn holder(app: &str, cart: &str) -> String {
    crate::api::tmf639::holder_key(app, cart)
}

/// The name of the lock ([`crate::charging::locks`], held across instances) that every
/// writer of cart `id` holds from its read to its write: the REST handlers, the follow-up,
/// the order pipeline taking the cart.
pub fn lock_name(id: &str) -> String {
    format!("tmf663.cart:{id}")
}

/// The row's `due_ms` for the abandoned-cart follow-up: the last change by the customer,
/// while the cart is active, has a contact and was never followed up; none otherwise. The
/// follow-up looks for carts with `due_ms <= now - abandoned_after`.
pub fn follow_up_due(doc: &CartDoc, state: &str) -> Option<i64> {
    (state == state::ACTIVE && !doc.contact.is_empty() && doc.follow_up.is_none())
        .then_some(doc.updated_ms)
}

/// A cart of `app`, if it exists and is not deleted.
pub async fn load(
    store: &Store,
    app: &str,
    id: &str,
) -> Result<Option<(ResourceRow, CartDoc)>, StoreError> {
    load_for(store, app, None, id).await
}

/// [`load`], and when `customer` is given (a customer's access token), only that customer's
/// cart: another customer's is not found.
pub async fn load_for(
    store: &Store,
    app: &str,
    customer: Option<&str>,
    id: &str,
) -> Result<Option<(ResourceRow, CartDoc)>, StoreError> {
    match store.resource(id).await? {
        Some(r) if r.kind == KIND_CART && r.app == app && r.state != state::DELETED => {
            let doc: CartDoc = serde_json::from_str(&r.body)
                .map_err(|e| StoreError(format!("cart {id} unreadable: {e}")))?;
            if customer.is_some_and(|c| doc.customer.as_deref() != Some(c)) {
                return Ok(None);
            }
            Ok(Some((r, doc)))
        }
        _ => Ok(None),
    }
}

/// The row that stores `doc` in `state`, follow-up due at `due_ms`.
pub fn row(app: &str, doc: &CartDoc, state: &str, due_ms: Option<i64>, now_ms: i64) -> ResourceRow {
    ResourceRow {
        id: doc.id.clone(),
        app: app.into(),
        kind: KIND_CART.into(),
        state: state.into(),
        parent: doc.customer.clone(),
        due_ms,
        body: serde_json::to_string(doc).unwrap_or_default(),
        created_ms: doc.created_ms,
        updated_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        t: &str,
        period: Option<&str>,
        cur: &str,
        total: &str,
        rate: Option<&str>,
    ) -> LinePrice {
        LinePrice {
            price_id: "p".into(),
            name: "p".into(),
            price_type: t.into(),
            period: period.map(str::to_string),
            currency: cur.into(),
            unit: total.parse().unwrap(),
            tax_rate: rate.map(|r| r.parse().unwrap()),
            total: total.parse().unwrap(),
        }
    }

    fn item(status: &str, action: &str, prices: Vec<LinePrice>) -> CartItem {
        CartItem {
            id: "01".into(),
            quantity: 1,
            action: action.into(),
            status: status.into(),
            offering_id: "po".into(),
            offering_name: None,
            resources: Vec::new(),
            product: None,
            prices,
        }
    }

    #[test]
    fn totals_are_exact_and_grouped_by_type_period_and_currency() {
        let items = vec![
            item(
                "active",
                "add",
                vec![
                    line(ONE_TIME, None, "EUR", "4.99", Some("21")),
                    line("recurring", Some("month"), "EUR", "9.99", Some("21")),
                ],
            ),
            item(
                "active",
                "add",
                vec![line(ONE_TIME, None, "EUR", "0.01", None)],
            ),
            item(
                "saveForLater",
                "add",
                vec![line(ONE_TIME, None, "EUR", "100", None)],
            ),
            item(
                "active",
                "delete",
                vec![line(ONE_TIME, None, "EUR", "100", None)],
            ),
        ];
        let t = totals(&items).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].amount, "5.00".parse::<Decimal>().unwrap());
        // 4.99 / 1.21 = 4.1239.. -> 4.12, plus 0.01 without tax.
        assert_eq!(t[0].duty_free, "4.13".parse::<Decimal>().unwrap());
        assert_eq!(t[1].period.as_deref(), Some("month"));
        assert_eq!(one_time(&t), vec![("5.00".parse().unwrap(), "EUR")]);
    }

    #[test]
    fn duty_free_rounds_to_the_currency_minor_unit() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(duty_free(d("121"), Some(d("21")), "EUR"), d("100"));
        assert_eq!(duty_free(d("1000"), Some(d("10")), "JPY"), d("909"));
        assert_eq!(duty_free(d("9.99"), None, "EUR"), d("9.99"));
    }

    #[test]
    fn a_cart_document_survives_the_store() {
        let doc = CartDoc {
            id: "c1".into(),
            items: vec![item(
                "active",
                "add",
                vec![line(ONE_TIME, None, "EUR", "4.99", None)],
            )],
            contact: vec![Contact {
                medium: Medium::Email,
                address: "a@example.com".into(),
            }],
            related_party: Vec::new(),
            characteristic: Vec::new(),
            valid_for: None,
            total: Vec::new(),
            follow_up: None,
            order: None,
            customer: None,
            created_ms: 1,
            updated_ms: 2,
        };
        let r = row("app", &doc, state::ACTIVE, Some(5), 3);
        let back: CartDoc = serde_json::from_str(&r.body).unwrap();
        assert_eq!(back, doc);
        assert_eq!(r.due_ms, Some(5));
    }
}
