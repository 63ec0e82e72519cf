//! The TMF663 `ShoppingCart` document of a stored cart ([`CartDoc`]): what GET answers and
//! what a PATCH is applied to. Every array member is present (empty when there is nothing)
//! so that a JSON Patch can append to it (`/cartItem/-`,
//! `/cartItem/0/product/realizingResource/-`).
//!
//! ```text
//! cartItem[].itemPrice       one CartPrice per catalog price, for one unit
//! cartItem[].itemTotalPrice  the same, times the quantity
//! cartTotalPrice             one per (priceType, recurringChargePeriod, currency) of the
//!                            active items (model::totals)
//! price.taxIncludedAmount    the catalog's price.value; dutyFreeAmount from taxRate (model::duty_free)
//! ```
//!
//! Amounts are exact JSON numbers written from the decimal's digits (serde_json
//! `arbitrary_precision`), never through a float.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Number, Value, json};
use utoipa::ToSchema;

use super::model::{CartDoc, CartItem, Chosen, Contact, LinePrice, Medium, Total, duty_free};
use crate::api::tmf620::catalog::Kind;

/// A TMF663 ShoppingCart.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShoppingCart {
    pub id: String,
    pub href: String,
    /// `active`, or `checkedOut` once an order was made of it.
    pub status: String,
    pub cart_item: Vec<CartItemView>,
    /// Computed by the gateway from the catalog; a client's value is ignored.
    pub cart_total_price: Vec<CartPrice>,
    pub contact_medium: Vec<ContactMedium>,
    #[schema(value_type = Vec<Object>)]
    pub related_party: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub characteristic: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub valid_for: Option<Value>,
    /// RFC 3339.
    pub creation_date: String,
    /// RFC 3339: the last change by the customer.
    pub last_update: String,
    #[serde(rename = "@type")]
    pub kind: String,
}

/// One item of a cart.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItemView {
    pub id: String,
    pub quantity: u32,
    /// `add`, `modify`, `delete` or `noChange`.
    pub action: String,
    /// `active` or `saveForLater` (only active items count in the total).
    pub status: String,
    pub product_offering: OfferingRef,
    /// The ProductRefOrValue as given, with the chosen resources as `realizingResource`
    /// (`{id, href, value, name, @referredType}`, TMF639).
    #[schema(value_type = Object)]
    pub product: Value,
    pub item_price: Vec<CartPrice>,
    pub item_total_price: Vec<CartPrice>,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OfferingRef {
    pub id: String,
    /// The TMF620 href.
    pub href: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "@referredType")]
    pub referred_type: String,
}

/// A TMF663 CartPrice.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartPrice {
    pub name: String,
    /// `oneTime`, `recurring`, ... as the catalog says.
    pub price_type: String,
    /// `month`, ... for recurring prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_charge_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_offering_price: Option<PriceRef>,
    pub price: Price,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PriceRef {
    pub id: String,
    pub href: String,
    pub name: String,
}

/// A TMF Price.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    pub tax_included_amount: Money,
    pub duty_free_amount: Money,
    /// Percent (21 = 21 %), when the catalog gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub tax_rate: Option<Number>,
}

/// A TMF Money: the value an exact decimal number.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Money {
    /// ISO 4217.
    pub unit: String,
    /// Exact (the catalog's digits), e.g. 14.97.
    #[schema(value_type = f64)]
    pub value: Number,
}

/// A TMF ContactMedium: `email` with `emailAddress`, or `sms` with `phoneNumber`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactMedium {
    pub medium_type: String,
    #[schema(value_type = Object)]
    pub characteristic: Value,
}

/// The href of cart `id`.
pub fn href(id: &str) -> String {
    format!("{}/{id}", super::CARTS)
}

/// The document of `doc`, stored in row state `state`.
pub fn cart(doc: &CartDoc, state: &str) -> ShoppingCart {
    ShoppingCart {
        id: doc.id.clone(),
        href: href(&doc.id),
        status: state.to_string(),
        cart_item: doc.items.iter().map(item).collect(),
        cart_total_price: doc.total.iter().map(total).collect(),
        contact_medium: doc.contact.iter().map(contact).collect(),
        related_party: doc.related_party.clone(),
        characteristic: doc.characteristic.clone(),
        valid_for: doc.valid_for.clone(),
        creation_date: crate::api::datetime::format_ms(doc.created_ms),
        last_update: crate::api::datetime::format_ms(doc.updated_ms),
        kind: "ShoppingCart".into(),
    }
}

/// The document as JSON (what a patch is applied to).
pub fn value(doc: &CartDoc, state: &str) -> Value {
    // A struct of strings, numbers and JSON values: serialising it cannot fail.
    serde_json::to_value(cart(doc, state)).unwrap_or_default()
}

fn item(it: &CartItem) -> CartItemView {
    let mut product = match &it.product {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    product.insert(
        "realizingResource".into(),
        Value::Array(it.resources.iter().map(resource).collect()),
    );
    CartItemView {
        id: it.id.clone(),
        quantity: it.quantity,
        action: it.action.clone(),
        status: it.status.clone(),
        product_offering: OfferingRef {
            id: it.offering_id.clone(),
            href: Kind::ProductOffering.href(&it.offering_id),
            name: it.offering_name.clone(),
            referred_type: "ProductOffering".into(),
        },
        product: Value::Object(product),
        item_price: it.prices.iter().map(|p| line(p, p.unit)).collect(),
        item_total_price: it.prices.iter().map(|p| line(p, p.total)).collect(),
        kind: "CartItem".into(),
    }
}

fn resource(c: &Chosen) -> Value {
    let logical = c.category == "MSISDN";
    json!({
        "id": c.id,
        "href": format!("{}/resource/{}", crate::api::tmf639::BASE, c.id),
        "name": format!("{} {}", c.category, c.value),
        "value": c.value,
        "@referredType": if logical { "LogicalResource" } else { "PhysicalResource" },
    })
}

fn line(p: &LinePrice, amount: Decimal) -> CartPrice {
    CartPrice {
        name: p.name.clone(),
        price_type: p.price_type.clone(),
        recurring_charge_period: p.period.clone(),
        product_offering_price: Some(PriceRef {
            id: p.price_id.clone(),
            href: Kind::ProductOfferingPrice.href(&p.price_id),
            name: p.name.clone(),
        }),
        price: Price {
            tax_included_amount: money(amount, &p.currency),
            duty_free_amount: money(duty_free(amount, p.tax_rate, &p.currency), &p.currency),
            tax_rate: p.tax_rate.map(number),
        },
        kind: "CartPrice".into(),
    }
}

fn total(t: &Total) -> CartPrice {
    let name = match &t.period {
        Some(p) => format!("Total {} ({p})", t.price_type),
        None => format!("Total {}", t.price_type),
    };
    CartPrice {
        name,
        price_type: t.price_type.clone(),
        recurring_charge_period: t.period.clone(),
        product_offering_price: None,
        price: Price {
            tax_included_amount: money(t.amount, &t.currency),
            duty_free_amount: money(t.duty_free, &t.currency),
            tax_rate: None,
        },
        kind: "CartPrice".into(),
    }
}

fn contact(c: &Contact) -> ContactMedium {
    let (medium, characteristic) = match c.medium {
        Medium::Email => ("email", json!({"emailAddress": c.address})),
        Medium::Sms => ("sms", json!({"phoneNumber": c.address})),
    };
    ContactMedium {
        medium_type: medium.into(),
        characteristic,
    }
}

fn money(amount: Decimal, currency: &str) -> Money {
    Money {
        unit: currency.to_string(),
        value: number(amount),
    }
}

/// The decimal as an exact JSON number (its own digits: `14.97`, `9.990`).
pub fn number(d: Decimal) -> Number {
    // A Decimal prints as an optional `-`, digits and at most one `.`: always a JSON number
    // (with arbitrary_precision, kept as written). The fallback is never taken.
    Number::from_str(&d.to_string()).unwrap_or_else(|_| Number::from(0))
}
