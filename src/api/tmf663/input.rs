//! Reading a ShoppingCart body: the client's create body, or the cart's rendered document
//! after a patch was applied to it (one path for both, so that every change is checked the
//! same way). Pure: no store, no clock.
//!
//! ```text
//! member              create                     update (the patched document)
//! id, href            refused (the gateway's)    must be the cart's (absent: recomputed)
//! status              absent or "active"         must be the cart's
//! validFor            kept as given              must be unchanged (ShoppingCart_Update has none)
//! cartTotalPrice, creationDate, lastUpdate, @type, @baseType, @schemaLocation: ignored (the gateway's)
//! cartItem[]          id? quantity? action? status? productOffering {id} product? (itemPrice,
//!                     itemTotalPrice ignored)
//! contactMedium[]     {mediumType: email, characteristic: {emailAddress}}
//!                     {mediumType: sms | mobile | phone, characteristic: {phoneNumber: +E.164}}
//! relatedParty[], characteristic[]   kept as given, their members typed
//! anything else       400 naming it
//! ```
//!
//! The chosen resources of an item are its `product.realizingResource[].id` (TMF639 ids) and
//! its `product.productCharacteristic[]` named `MSISDN` or `ICCID` (the number as `value`);
//! both are taken out of the product kept, and rendered back as `realizingResource`.

use crate::contact::{email_ok, phone_ok};
use serde_json::{Map, Value};

use super::model::{Contact, MAX_ITEMS, MAX_QUANTITY, MAX_RESOURCES, Medium};
use crate::api::error::clip;
use crate::api::tmf630::{self, array, object, string};
use crate::api::tmf654::error::TmfError;
use crate::api::tmf654::model::kind;

/// Most contact media, related parties and characteristics of one cart.
pub const MAX_CONTACTS: usize = 10;
pub const MAX_PARTIES: usize = 20;
pub const MAX_CHARACTERISTICS: usize = 50;
/// Longest id or short text member.
const MAX_ID: usize = 256;
/// Longest client-given item id.
const MAX_ITEM_ID: usize = 32;
/// Deepest nesting of a value kept as given (a product, a characteristic's value).
pub const MAX_KEPT_DEPTH: usize = 32;

/// What a body is read against.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A new cart.
    Create,
    /// The cart `id` as it stands (the patched document must keep what the gateway owns).
    Update {
        id: &'a str,
        href: &'a str,
        status: &'a str,
        valid_for: Option<&'a Value>,
    },
}

/// A checked cart body, not yet priced nor its resources held.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub items: Vec<DraftItem>,
    pub contact: Vec<Contact>,
    pub related_party: Vec<Value>,
    pub characteristic: Vec<Value>,
    pub valid_for: Option<Value>,
}

/// A checked cart item.
#[derive(Clone, Debug, PartialEq)]
pub struct DraftItem {
    pub id: String,
    pub quantity: u32,
    pub action: String,
    pub status: String,
    pub offering_id: String,
    /// The product as given, without the chosen resources.
    pub product: Option<Value>,
    /// The chosen resources: TMF639 id, and the member that named it (for errors).
    pub resources: Vec<(String, String)>,
}

/// Reads `body` (a JSON object) as a cart for `target`.
pub fn read(body: &Value, target: Target<'_>) -> Result<Draft, TmfError> {
    let top = object(body, "body")?;
    let mut draft = Draft {
        items: Vec::new(),
        contact: Vec::new(),
        related_party: Vec::new(),
        characteristic: Vec::new(),
        valid_for: None,
    };
    let mut items: &[Value] = &[];
    for (k, v) in top {
        // An absent member and a null one are the same (a merge patch removes with null).
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" | "href" => owned(k, v, target)?,
            "status" => status(v, target)?,
            "cartItem" => items = array(v, "cartItem", MAX_ITEMS)?,
            "contactMedium" => {
                for (i, c) in array(v, k, MAX_CONTACTS)?.iter().enumerate() {
                    draft
                        .contact
                        .push(contact(c, &format!("contactMedium[{i}]"))?);
                }
            }
            "relatedParty" => {
                for (i, p) in array(v, k, MAX_PARTIES)?.iter().enumerate() {
                    draft
                        .related_party
                        .push(party(p, &format!("relatedParty[{i}]"))?);
                }
            }
            "characteristic" => {
                for (i, c) in array(v, k, MAX_CHARACTERISTICS)?.iter().enumerate() {
                    draft
                        .characteristic
                        .push(characteristic(c, &format!("characteristic[{i}]"))?);
                }
            }
            "validFor" => draft.valid_for = Some(valid_for(v, "validFor")?),
            "cartTotalPrice" | "creationDate" | "lastUpdate" => {}
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &clip(k),
                    "not a member of ShoppingCart (cartItem, contactMedium, relatedParty, \
                     characteristic, validFor)",
                ));
            }
        }
    }
    if let Target::Update { valid_for, .. } = target
        && draft.valid_for.as_ref() != valid_for
    {
        return Err(TmfError::invalid(
            "validFor",
            "set when the cart is created: it cannot be changed (ShoppingCart_Update has none)",
        ));
    }
    for (i, v) in items.iter().enumerate() {
        draft.items.push(item(v, i)?);
    }
    number_items(&mut draft.items)?;
    // One resource goes to one item.
    for (i, it) in draft.items.iter().enumerate() {
        for (id, field) in &it.resources {
            if let Some(j) = draft.items[..i]
                .iter()
                .position(|o| o.resources.iter().any(|(r, _)| r == id))
            {
                return Err(TmfError::invalid(
                    field,
                    format!("resource {id} is chosen for cartItem[{j}] already"),
                ));
            }
        }
    }
    Ok(draft)
}

/// `id` and `href`: the gateway's.
fn owned(k: &str, v: &Value, target: Target<'_>) -> Result<(), TmfError> {
    match target {
        Target::Create => Err(TmfError::invalid(
            k,
            "assigned by the gateway: leave it out of a new cart",
        )),
        Target::Update { id, href, .. } => {
            let own = if k == "id" { id } else { href };
            match v.as_str() {
                Some(s) if s == own => Ok(()),
                _ => Err(TmfError::invalid(
                    k,
                    format!("cannot be changed (the cart's is \"{own}\")"),
                )),
            }
        }
    }
}

fn status(v: &Value, target: Target<'_>) -> Result<(), TmfError> {
    let own = match target {
        Target::Create => super::model::state::ACTIVE,
        Target::Update { status, .. } => status,
    };
    match v.as_str() {
        Some(s) if s == own => Ok(()),
        _ => Err(TmfError::invalid(
            "status",
            format!("set by the gateway (the cart is \"{own}\"); checkout changes it"),
        )),
    }
}

/// Item ids: the client's (unique), then "01", "02", ... for the others, skipping taken ones.
fn number_items(items: &mut [DraftItem]) -> Result<(), TmfError> {
    for (i, it) in items.iter().enumerate() {
        if !it.id.is_empty() && items[..i].iter().any(|o| o.id == it.id) {
            return Err(TmfError::invalid(
                &format!("cartItem[{i}].id"),
                format!("\"{}\" is the id of another item", it.id),
            ));
        }
    }
    let mut next = 1usize;
    for i in 0..items.len() {
        if !items[i].id.is_empty() {
            continue;
        }
        let id = loop {
            let id = format!("{next:02}");
            next += 1;
            if !items.iter().any(|o| o.id == id) {
                break id;
            }
        };
        items[i].id = id;
    }
    Ok(())
}

fn item(v: &Value, i: usize) -> Result<DraftItem, TmfError> {
    let at = format!("cartItem[{i}]");
    let m = object(v, &at)?;
    let mut it = DraftItem {
        id: String::new(),
        quantity: 1,
        action: "add".into(),
        status: "active".into(),
        offering_id: String::new(),
        product: None,
        resources: Vec::new(),
    };
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" => {
                let s = string(v, &field)?;
                if s.is_empty()
                    || s.len() > MAX_ITEM_ID
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return Err(TmfError::invalid(
                        &field,
                        format!(
                            "\"{}\": 1 to {MAX_ITEM_ID} letters, digits, -, _ or .",
                            clip(s)
                        ),
                    ));
                }
                it.id = s.to_string();
            }
            "quantity" => {
                it.quantity = v
                    .as_u64()
                    .and_then(|q| u32::try_from(q).ok())
                    .filter(|q| (1..=MAX_QUANTITY).contains(q))
                    .ok_or_else(|| {
                        TmfError::invalid(
                            &field,
                            format!("{}: a whole number from 1 to {MAX_QUANTITY}", show(v)),
                        )
                    })?;
            }
            "action" => {
                it.action = one_of(v, &field, &["add", "modify", "delete", "noChange"])?;
            }
            "status" => it.status = one_of(v, &field, &["active", "saveForLater"])?,
            "productOffering" => it.offering_id = offering(v, &field)?,
            "product" => {
                let (product, resources) = product(v, &field)?;
                it.product = product;
                it.resources = resources;
            }
            "itemPrice" | "itemTotalPrice" => {}
            _ if k.starts_with('@') => {}
            "cartItem" | "cartItemRelationship" | "itemTerm" | "note" | "priceAlteration" => {
                return Err(TmfError::invalid(
                    &field,
                    "not supported by this gateway (one level of items, catalog prices only)",
                ));
            }
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of CartItem (id, quantity, action, status, productOffering, \
                     product)",
                ));
            }
        }
    }
    if it.offering_id.is_empty() {
        return Err(TmfError::invalid(
            &format!("{at}.productOffering"),
            "required: {\"id\": \"<TMF620 productOffering id>\"}",
        ));
    }
    Ok(it)
}

fn offering(v: &Value, at: &str) -> Result<String, TmfError> {
    let m = object(v, at)?;
    let mut id = None;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "id" => {
                let s = string(v, &field)?;
                if !crate::api::tmf620::catalog::valid_id(s) {
                    return Err(TmfError::invalid(
                        &field,
                        format!("\"{}\" is not a catalog id", clip(s)),
                    ));
                }
                id = Some(s.to_string());
            }
            // The gateway's (rendered from the catalog).
            "href" | "name" => {
                string(v, &field)?;
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of ProductOfferingRef (id, href, name)",
                ));
            }
        }
    }
    id.ok_or_else(|| {
        TmfError::invalid(
            &format!("{at}.id"),
            "required: the TMF620 productOffering id",
        )
    })
}

/// The product kept (without the chosen resources) and the resources chosen in it.
#[allow(clippy::type_complexity)]
fn product(v: &Value, at: &str) -> Result<(Option<Value>, Vec<(String, String)>), TmfError> {
    let m = object(v, at)?;
    let mut kept = Map::new();
    let mut chosen: Vec<(String, String)> = Vec::new();
    let mut choose = |id: String, field: String| -> Result<(), TmfError> {
        if !chosen.iter().any(|(c, _)| *c == id) {
            if chosen.len() >= MAX_RESOURCES {
                return Err(TmfError::invalid(
                    &field,
                    format!("at most {MAX_RESOURCES} resources per item"),
                ));
            }
            chosen.push((id, field));
        }
        Ok(())
    };
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "realizingResource" | "productCharacteristic" if v.is_null() => {}
            "realizingResource" => {
                for (i, r) in array(v, &field, MAX_RESOURCES)?.iter().enumerate() {
                    let rf = format!("{field}[{i}]");
                    choose(resource_ref(r, &rf)?, format!("{rf}.id"))?;
                }
            }
            "productCharacteristic" => {
                let mut rest = Vec::new();
                let all = array(v, &field, MAX_CHARACTERISTICS)?;
                for (i, c) in all.iter().enumerate() {
                    let cf = format!("{field}[{i}]");
                    let c = characteristic(c, &cf)?;
                    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                    match name.to_ascii_uppercase().as_str() {
                        cat @ ("MSISDN" | "ICCID") => {
                            let vf = format!("{cf}.value");
                            let number = resource_number(cat, c.get("value"), &vf)?;
                            choose(format!("{}-{number}", cat.to_ascii_lowercase()), vf)?;
                        }
                        _ => rest.push(c),
                    }
                }
                if !rest.is_empty() || all.is_empty() {
                    kept.insert(k.clone(), Value::Array(rest));
                }
            }
            _ => {
                kept.insert(k.clone(), v.clone());
            }
        }
    }
    let kept = Value::Object(kept);
    if !within(&kept, MAX_KEPT_DEPTH, usize::MAX) {
        return Err(TmfError::invalid(
            at,
            format!("nested deeper than {MAX_KEPT_DEPTH} levels"),
        ));
    }
    Ok((
        (kept.as_object().is_some_and(|m| !m.is_empty())).then_some(kept),
        chosen,
    ))
}

/// `realizingResource[i]`: a TMF639 resource of this gateway, by id.
fn resource_ref(v: &Value, at: &str) -> Result<String, TmfError> {
    let m = object(v, at)?;
    let mut id = None;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "id" => {
                let s = string(v, &field)?;
                let ok = ["msisdn-", "iccid-"].iter().any(|p| {
                    s.strip_prefix(p).is_some_and(|d| {
                        !d.is_empty() && d.len() <= 22 && d.bytes().all(|b| b.is_ascii_digit())
                    })
                });
                if !ok {
                    return Err(TmfError::invalid(
                        &field,
                        format!(
                            "\"{}\" is not a TMF639 resource id (msisdn-<digits> or \
                             iccid-<digits>)",
                            clip(s)
                        ),
                    ));
                }
                id = Some(s.to_string());
            }
            // The gateway's (rendered from the inventory).
            "href" | "name" | "value" => {
                string(v, &field)?;
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of a resource reference (id, href, name, value)",
                ));
            }
        }
    }
    id.ok_or_else(|| {
        TmfError::invalid(
            &format!("{at}.id"),
            "required: the TMF639 resource id (msisdn-<digits>)",
        )
    })
}

/// The digits of an MSISDN (E.164, `+` and `tel:` allowed) or an ICCID characteristic value.
fn resource_number(cat: &str, v: Option<&Value>, at: &str) -> Result<String, TmfError> {
    let text = match v {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        Some(other) => {
            return Err(TmfError::invalid(
                at,
                format!("expected the number as a string, found {}", kind(other)),
            ));
        }
        None => return Err(TmfError::invalid(at, "required: the number chosen")),
    };
    let digits = if cat == "MSISDN" {
        let t = text.strip_prefix("tel:").unwrap_or(&text);
        t.strip_prefix('+').unwrap_or(t)
    } else {
        text.as_str()
    };
    let (min, max) = if cat == "MSISDN" { (8, 15) } else { (18, 22) };
    if digits.len() < min || digits.len() > max || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TmfError::invalid(
            at,
            format!("\"{}\": {min} to {max} digits", clip(&text)),
        ));
    }
    Ok(digits.to_string())
}

fn contact(v: &Value, at: &str) -> Result<Contact, TmfError> {
    let m = object(v, at)?;
    let mut medium = None;
    let mut chars = None;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "mediumType" => {
                let s = string(v, &field)?;
                medium = Some(match s.to_ascii_lowercase().as_str() {
                    "email" => Medium::Email,
                    "sms" | "mobile" | "phone" => Medium::Sms,
                    _ => {
                        return Err(TmfError::invalid(
                            &field,
                            format!("\"{}\": email, sms, mobile or phone", clip(s)),
                        ));
                    }
                });
            }
            "characteristic" => chars = Some(object(v, &field)?),
            "preferred" => {
                if !v.is_boolean() {
                    return Err(TmfError::invalid(
                        &field,
                        format!("expected a boolean, found {}", kind(v)),
                    ));
                }
            }
            "validFor" => {
                valid_for(v, &field)?;
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of ContactMedium (mediumType, characteristic, preferred)",
                ));
            }
        }
    }
    let medium = medium.ok_or_else(|| {
        TmfError::invalid(
            &format!("{at}.mediumType"),
            "required: email, sms, mobile or phone",
        )
    })?;
    let want = match medium {
        Medium::Email => "emailAddress",
        Medium::Sms => "phoneNumber",
    };
    let cf = format!("{at}.characteristic");
    let chars =
        chars.ok_or_else(|| TmfError::invalid(&cf, format!("required: {{\"{want}\": ...}}")))?;
    let mut address = None;
    for (k, v) in chars {
        let field = format!("{cf}.{}", clip(k));
        if k == want {
            let s = string(v, &field)?;
            let ok = match medium {
                Medium::Email => email_ok(s),
                Medium::Sms => phone_ok(s),
            };
            if !ok {
                let form = match medium {
                    Medium::Email => "an email address (name@example.com)",
                    Medium::Sms => "an E.164 number: + and 8 to 15 digits",
                };
                return Err(TmfError::invalid(
                    &field,
                    format!("\"{}\" is not {form}", clip(s)),
                ));
            }
            address = Some(s.to_string());
        } else if k == "contactType" {
            string(v, &field)?;
        } else if !k.starts_with('@') {
            return Err(TmfError::invalid(
                &field,
                format!("not used for mediumType {medium:?} (only {want})"),
            ));
        }
    }
    let address = address.ok_or_else(|| TmfError::invalid(&format!("{cf}.{want}"), "required"))?;
    Ok(Contact { medium, address })
}

/// `relatedParty[i]`: `{id, name?, role?, href?, @referredType?}`, kept as given.
fn party(v: &Value, at: &str) -> Result<Value, TmfError> {
    let m = object(v, at)?;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "id" | "name" | "role" | "href" => {
                short(v, &field)?;
            }
            _ if k.starts_with('@') => {
                short(v, &field)?;
            }
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of RelatedParty (id, name, role, href, @referredType)",
                ));
            }
        }
    }
    match m.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(v.clone()),
        _ => Err(TmfError::invalid(&format!("{at}.id"), "required")),
    }
}

/// `characteristic[i]` (of the cart or a product): `{name, value, valueType?, id?}`, kept.
fn characteristic(v: &Value, at: &str) -> Result<Value, TmfError> {
    let m = object(v, at)?;
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        match k.as_str() {
            "name" | "valueType" | "id" => {
                short(v, &field)?;
            }
            "value" => {
                if !within(v, MAX_KEPT_DEPTH, usize::MAX) {
                    return Err(TmfError::invalid(
                        &field,
                        format!("nested deeper than {MAX_KEPT_DEPTH} levels"),
                    ));
                }
            }
            _ if k.starts_with('@') => {
                short(v, &field)?;
            }
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of Characteristic (name, value, valueType, id)",
                ));
            }
        }
    }
    match m.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => {}
        _ => return Err(TmfError::invalid(&format!("{at}.name"), "required")),
    }
    if !m.contains_key("value") {
        return Err(TmfError::invalid(&format!("{at}.value"), "required"));
    }
    Ok(v.clone())
}

/// `validFor`, checked; kept as given.
fn valid_for(v: &Value, at: &str) -> Result<Value, TmfError> {
    tmf630::valid_for(v, at)?;
    Ok(v.clone())
}

/// Whether `v` is nested at most `depth` levels and holds at most `values` values.
pub fn within(v: &Value, depth: usize, values: usize) -> bool {
    let mut budget = values;
    bounded(v, depth, &mut budget)
}

/// Whether `v` is nested at most `depth` levels and has at most `budget` values (counted
/// down). Never recurses deeper than `depth` + 1, whatever `v` is.
fn bounded(v: &Value, depth: usize, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match v {
        Value::Array(a) => depth > 0 && a.iter().all(|x| bounded(x, depth - 1, budget)),
        Value::Object(m) => depth > 0 && m.values().all(|x| bounded(x, depth - 1, budget)),
        _ => true,
    }
}

// ---- typed members ---------------------------------------------------------------------------

/// A string of at most 256 bytes.
fn short<'a>(v: &'a Value, at: &str) -> Result<&'a str, TmfError> {
    let s = string(v, at)?;
    if s.len() > MAX_ID {
        return Err(TmfError::invalid(at, format!("at most {MAX_ID} bytes")));
    }
    Ok(s)
}

fn one_of(v: &Value, at: &str, names: &[&str]) -> Result<String, TmfError> {
    tmf630::one_of(v, at, names).map(str::to_string)
}

/// A value, short, for an error message.
fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => clip(&n.to_string()),
        Value::String(s) => format!("\"{}\"", clip(s)),
        other => kind(other).to_string(),
    }
}

// ---- the bodies, as the OpenAPI document describes them --------------------------------------

/// `POST /shoppingCart` (TMF663 ShoppingCart_Create). Prices are the gateway's: a client's
/// `cartTotalPrice`, `itemPrice` and `itemTotalPrice` are ignored.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShoppingCartCreate {
    /// At most 50 items.
    pub cart_item: Vec<CartItemInput>,
    /// `{mediumType: "email", characteristic: {emailAddress}}` or `{mediumType: "sms" |
    /// "mobile" | "phone", characteristic: {phoneNumber: "+34600000001"}}`: where the
    /// follow-up of an abandoned cart goes.
    #[schema(value_type = Option<Vec<Object>>)]
    pub contact_medium: Option<Vec<Value>>,
    /// `{id, name?, role?, href?, @referredType?}`, kept as given.
    #[schema(value_type = Option<Vec<Object>>)]
    pub related_party: Option<Vec<Value>>,
    /// `{name, value, valueType?}`, kept as given.
    #[schema(value_type = Option<Vec<Object>>)]
    pub characteristic: Option<Vec<Value>>,
    /// `{startDateTime?, endDateTime?}` (RFC 3339), kept as given; set at creation only.
    #[schema(value_type = Option<Object>)]
    pub valid_for: Option<Value>,
}

/// `PATCH /shoppingCart/{id}` as a merge patch (TMF663 ShoppingCart_Update): an array given
/// replaces the cart's whole array; `id` and `href` cannot change, nor `validFor`.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShoppingCartUpdate {
    pub cart_item: Option<Vec<CartItemInput>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub contact_medium: Option<Vec<Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub related_party: Option<Vec<Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub characteristic: Option<Vec<Value>>,
}

/// One item of a cart body.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItemInput {
    /// Unique in the cart; "01", "02", ... when none is given.
    pub id: Option<String>,
    /// 1 to 99 (default 1).
    pub quantity: Option<u32>,
    /// add (default), modify, delete or noChange.
    pub action: Option<String>,
    /// active (default) or saveForLater.
    pub status: Option<String>,
    /// The TMF620 productOffering (its `id`).
    pub product_offering: RefInput,
    /// ProductRefOrValue, kept as given. The chosen resources: `realizingResource[]`
    /// (`{id: "msisdn-34600100001"}`, TMF639 ids) and/or `productCharacteristic[]` named
    /// `MSISDN` or `ICCID` with the number as `value`; at most 4, one per unit.
    #[schema(value_type = Option<Object>)]
    pub product: Option<Value>,
}

/// A reference by id.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RefInput {
    pub id: String,
}

/// One RFC 6902 operation (`application/json-patch+json`), applied to the cart's document
/// as GET gives it; all or none are applied.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JsonPatchOperation {
    /// add, remove, replace, move, copy or test.
    pub op: String,
    /// A JSON Pointer into the cart (`/cartItem/0/quantity`).
    pub path: String,
    /// For move and copy.
    pub from: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}
