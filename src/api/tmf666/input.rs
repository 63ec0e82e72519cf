//! Reading a TMF666 BillingAccount body (create, or the patched document). Pure.
//!
//! ```text
//! member            read as
//! id, href          the gateway's (refused on create; unchanged on update)
//! name              required text
//! accountType, description   text
//! state             active (default), suspended or closed
//! relatedParty[]    exactly one: {id: <customer>, role: customer | owner, @referredType?: Customer}
//! paymentMethod[]   at most 5: {phoneNumber: +E.164, @referredType?: CarrierBilling, name?, id?}
//!                   (carrier billing: charged to that number through the OCS); the id is
//!                   carrier-billing-<digits>
//! creditLimit       {unit: ISO 4217, value: 0 to 1e12, at most 4 decimals} (exact)
//! lastModified      the gateway's: ignored
//! ```

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use crate::api::error::clip;
use crate::api::tmf630::number_of;
use crate::api::tmf632::input::{
    Reference, Target, array, object, one_of, owned, reference, short, string, text,
};
use crate::api::tmf654::error::TmfError;
use crate::api::tmf654::model::kind;
use crate::contact::phone_ok;

/// Most payment methods of one account.
pub const MAX_PAYMENT_METHODS: usize = 5;
/// The largest credit limit.
pub const MAX_CREDIT_LIMIT: i64 = 1_000_000_000_000;
/// Most decimals of a credit limit.
pub const MAX_SCALE: u32 = 4;

/// A checked account body: its document (without the customer reference) and the customer.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub doc: Map<String, Value>,
    pub customer: Reference,
}

pub fn read(body: &Value, target: Target<'_>) -> Result<Draft, TmfError> {
    let mut doc = Map::new();
    let mut customer = None;
    for (k, v) in object(body, "body")? {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" | "href" => owned(k, v, target)?,
            "name" | "accountType" | "description" => {
                doc.insert(k.clone(), text(v, k)?);
            }
            "state" => {
                doc.insert(k.clone(), one_of(v, k, &["active", "suspended", "closed"])?);
            }
            "relatedParty" => {
                let all = array(v, k, 10)?;
                for (i, p) in all.iter().enumerate() {
                    let at = format!("relatedParty[{i}]");
                    let r = reference(p, &at)?;
                    let role = r.role.as_deref().unwrap_or_default().to_ascii_lowercase();
                    if role != "customer" && role != "owner" {
                        return Err(TmfError::invalid(
                            &format!("{at}.role"),
                            "customer or owner: the TMF629 customer the account bills (no \
                             other party is kept)",
                        ));
                    }
                    if r.referred_type.as_deref().is_some_and(|t| t != "Customer") {
                        return Err(TmfError::invalid(
                            &format!("{at}.@referredType"),
                            "Customer",
                        ));
                    }
                    if customer.is_some() {
                        return Err(TmfError::invalid(&at, "one customer per account"));
                    }
                    customer = Some(r);
                }
            }
            "paymentMethod" => {
                let mut out = Vec::new();
                for (i, p) in array(v, k, MAX_PAYMENT_METHODS)?.iter().enumerate() {
                    let m = payment_method(p, &format!("paymentMethod[{i}]"))?;
                    if out.iter().any(|o: &Value| o["id"] == m["id"]) {
                        return Err(TmfError::invalid(
                            &format!("paymentMethod[{i}]"),
                            "given twice",
                        ));
                    }
                    out.push(m);
                }
                doc.insert(k.clone(), Value::Array(out));
            }
            "creditLimit" => {
                doc.insert(k.clone(), money(v, k)?);
            }
            "lastModified" => {}
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &clip(k),
                    "not a member of BillingAccount (name, accountType, description, state, \
                     relatedParty, paymentMethod, creditLimit)",
                ));
            }
        }
    }
    if !doc.contains_key("name") {
        return Err(TmfError::invalid("name", "required: the account's name"));
    }
    let customer = customer.ok_or_else(|| {
        TmfError::invalid(
            "relatedParty",
            "required: [{\"id\": \"<customer id>\", \"role\": \"customer\"}]",
        )
    })?;
    doc.entry("state")
        .or_insert_with(|| Value::String("active".into()));
    Ok(Draft { doc, customer })
}

/// A carrier billing payment method: the phone number charged.
fn payment_method(v: &Value, at: &str) -> Result<Value, TmfError> {
    let m = object(v, at)?;
    let mut phone = None;
    let mut name = None;
    let mut id = None;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "phoneNumber" => {
                let s = string(v, &field)?;
                if !phone_ok(s) {
                    return Err(TmfError::invalid(
                        &field,
                        format!(
                            "\"{}\" is not an E.164 number: + and 8 to 15 digits",
                            clip(s)
                        ),
                    ));
                }
                phone = Some(s.to_string());
            }
            "@referredType" => {
                if string(v, &field)? != "CarrierBilling" {
                    return Err(TmfError::invalid(
                        &field,
                        "CarrierBilling (the only payment method of this gateway)",
                    ));
                }
            }
            "name" => name = Some(short(v, &field)?.to_string()),
            "id" => id = Some(short(v, &field)?.to_string()),
            "href" | "@type" | "@baseType" | "@schemaLocation" => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of a carrier billing PaymentMethodRef (phoneNumber, name, \
                     id, @referredType)",
                ));
            }
        }
    }
    let phone = phone.ok_or_else(|| {
        TmfError::invalid(
            &format!("{at}.phoneNumber"),
            "required: the number carrier billing charges (+E.164)",
        )
    })?;
    let own = format!("carrier-billing-{}", phone.trim_start_matches('+'));
    if let Some(id) = id
        && id != own
    {
        return Err(TmfError::invalid(
            &format!("{at}.id"),
            format!("the gateway's (\"{own}\" for this number)"),
        ));
    }
    Ok(json!({
        "id": own,
        "name": name.unwrap_or_else(|| format!("Carrier billing {phone}")),
        "phoneNumber": phone,
        "@referredType": "CarrierBilling",
    }))
}

/// TMF Money `{unit, value}`: exact.
fn money(v: &Value, at: &str) -> Result<Value, TmfError> {
    let m = object(v, at)?;
    let mut unit = None;
    let mut value = None;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "unit" => {
                let s = string(v, &field)?;
                if iso_currency::Currency::from_code(s).is_none() {
                    return Err(TmfError::invalid(
                        &field,
                        format!("\"{}\" is not an ISO 4217 currency code", clip(s)),
                    ));
                }
                unit = Some(s.to_string());
            }
            "value" => {
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(TmfError::invalid(
                            &field,
                            format!("expected a number, found {}", kind(other)),
                        ));
                    }
                };
                let d = Decimal::from_str_exact(text.trim())
                    .ok()
                    .filter(|d| {
                        !d.is_sign_negative()
                            && *d <= Decimal::from(MAX_CREDIT_LIMIT)
                            && d.normalize().scale() <= MAX_SCALE
                    })
                    .ok_or_else(|| {
                        TmfError::invalid(
                            &field,
                            format!(
                                "\"{}\": an amount from 0 to {MAX_CREDIT_LIMIT} with at most \
                                 {MAX_SCALE} decimals",
                                clip(&text)
                            ),
                        )
                    })?;
                value = Some(d);
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of Money (unit, value)",
                ));
            }
        }
    }
    let unit = unit.ok_or_else(|| TmfError::invalid(&format!("{at}.unit"), "required"))?;
    let value = value.ok_or_else(|| TmfError::invalid(&format!("{at}.value"), "required"))?;
    Ok(json!({"unit": unit, "value": number_of(value)}))
}
