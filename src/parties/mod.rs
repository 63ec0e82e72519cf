//! Parties and accounts of the digital sales channel: the TMF632 individuals and
//! organizations, the TMF629 customers engaging them, the TMF666 billing accounts of those
//! customers, as store rows; and the one rule that decides ownership here, that an email
//! address or an MSISDN is the contact of one customer at most, as claims in the store.
//!
//! ```text
//! row id                        kind                    parent            state
//! individual-<32 hex>           tmf632.individual       -                 live | deleted
//! organization-<32 hex>         tmf632.organization     -                 live | deleted
//! customer-<32 hex>             tmf629.customer         its engagedParty  live | deleted
//! billing-account-<32 hex>      tmf666.billingAccount   its customer      live | deleted
//! party.email:<lowercased>      party.claim             the customer      held | released
//! party.msisdn:<digits>         party.claim             the customer      held | released
//! ```
//!
//! A customer's contacts are the email addresses and phone numbers of its engaged party's
//! `contactMedium` (the individual of a B2C customer, the organization of a B2B one) and of
//! its own `contactMedium`; the contact individuals of a B2B customer (`relatedParty` role
//! `contact`) are not (one person may be the contact of several companies). Each contact is
//! claimed for the customer with `Store::put_resource_if(row, None)` (the database decides:
//! of two gateway instances claiming one address, one wins) before the customer is written,
//! and released (state `released`, by compare-and-set) when it is no longer the customer's.
//! A released claim is taken again by compare-and-set on its `updated_ms`. A claim left by an
//! instance that died between the claim and its write (its customer absent, or no longer
//! having that contact) is taken over once it is [`CLAIM_GRACE_MS`] old.

pub mod claims;

use serde_json::{Map, Value};

use crate::contact::{email_ok, phone_ok};
use crate::store::{ResourceRow, Store, StoreError, Write};
pub use claims::{Claim, Holder, Key, Keyed};

/// The store kinds of the rows.
pub mod kind {
    pub const INDIVIDUAL: &str = "tmf632.individual";
    pub const ORGANIZATION: &str = "tmf632.organization";
    pub const CUSTOMER: &str = "tmf629.customer";
    pub const BILLING_ACCOUNT: &str = "tmf666.billingAccount";
    pub const CLAIM: &str = "party.claim";
}

/// The row states.
pub mod state {
    pub const LIVE: &str = "live";
    pub const DELETED: &str = "deleted";
    pub const HELD: &str = "held";
    pub const RELEASED: &str = "released";
}

/// The id prefixes (the ids are unique across kinds).
pub mod prefix {
    pub const INDIVIDUAL: &str = "individual-";
    pub const ORGANIZATION: &str = "organization-";
    pub const CUSTOMER: &str = "customer-";
    pub const BILLING_ACCOUNT: &str = "billing-account-";
}

/// How old a claim whose customer does not have it must be before another takes it over.
pub const CLAIM_GRACE_MS: i64 = 60_000;

/// Who signed up: what [`ensure_individual_customer`] makes an Individual and its B2C
/// Customer of. An email address, a phone number (E.164, `+` and 8 to 15 digits), or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

/// The Individual and the Customer a contact is linked to; `created` when this call made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub individual_id: String,
    pub customer_id: String,
    pub created: bool,
}

/// Why a party could not be made or linked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartyError {
    /// The field named is not acceptable.
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// The address is the contact of another customer (of this application or another).
    #[error("{field}: {value} is the contact of another customer")]
    Conflict { field: String, value: String },
    /// The store failed; nothing, or only released claims, were written.
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for PartyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.0)
    }
}

/// A row and its document.
#[derive(Clone, Debug)]
pub struct Stored {
    pub row: ResourceRow,
    pub doc: Map<String, Value>,
}

/// A new id with `prefix`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:032x}", fastrand::u128(..))
}

/// The row of document `doc`.
pub fn row(
    app: &str,
    kind: &str,
    id: &str,
    parent: Option<&str>,
    doc: &Map<String, Value>,
    created_ms: i64,
    updated_ms: i64,
) -> ResourceRow {
    ResourceRow {
        id: id.to_string(),
        app: app.to_string(),
        kind: kind.to_string(),
        state: state::LIVE.to_string(),
        parent: parent.map(str::to_string),
        due_ms: None,
        body: Value::Object(doc.clone()).to_string(),
        created_ms,
        updated_ms,
    }
}

/// The live row `id` of `kind`, with its document.
pub async fn load(store: &Store, kind: &str, id: &str) -> Result<Option<Stored>, StoreError> {
    match store.resource(id).await? {
        Some(row) if row.kind == kind && row.state == state::LIVE => decode(row).map(Some),
        _ => Ok(None),
    }
}

/// The document of `row`.
pub fn decode(row: ResourceRow) -> Result<Stored, StoreError> {
    match serde_json::from_str::<Value>(&row.body) {
        Ok(Value::Object(doc)) => Ok(Stored { row, doc }),
        _ => Err(StoreError(format!(
            "{} {} does not decode",
            row.kind, row.id
        ))),
    }
}

/// The `updated_ms` of a row replacing one updated at `old`: later than it, whatever the clock.
pub fn next_updated(now: i64, old: i64) -> i64 {
    now.max(old.saturating_add(1))
}

/// The customer contacts of a party's or a customer's document: each email address
/// (lowercased) and phone number (its digits) of its `contactMedium`, with the member that
/// names it (after `at`), once each.
pub fn keys_of(doc: &Map<String, Value>, at: &str) -> Vec<Keyed> {
    let mut out: Vec<Keyed> = Vec::new();
    let media = doc
        .get("contactMedium")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, m) in media.iter().enumerate() {
        let ty = m
            .get("mediumType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let c = m.get("characteristic");
        let found = match ty.as_str() {
            "email" => c
                .and_then(|c| c.get("emailAddress"))
                .and_then(Value::as_str)
                .map(|e| (Key::email(e), "emailAddress")),
            _ => c
                .and_then(|c| c.get("phoneNumber"))
                .and_then(Value::as_str)
                .map(|p| (Key::msisdn(p), "phoneNumber")),
        };
        if let Some((key, member)) = found
            && !out.iter().any(|k| k.key == key)
        {
            out.push(Keyed {
                key,
                field: format!("{at}contactMedium[{i}].characteristic.{member}"),
            });
        }
    }
    out
}

/// A customer's contacts: its engaged party's and its own.
pub fn customer_keys(
    customer: &Map<String, Value>,
    party: Option<&Map<String, Value>>,
) -> Vec<Keyed> {
    let mut keys = party
        .map(|p| keys_of(p, "engagedParty."))
        .unwrap_or_default();
    for k in keys_of(customer, "") {
        if !keys.iter().any(|o| o.key == k.key) {
            keys.push(k);
        }
    }
    keys
}

/// The contacts customer row `row` has now (its engaged party read from the store).
pub async fn current_keys(store: &Store, row: &ResourceRow) -> Result<Vec<Keyed>, StoreError> {
    let c = decode(row.clone())?;
    let party = match &row.parent {
        Some(p) => match store.resource(p).await? {
            Some(r) if r.state == state::LIVE => Some(decode(r)?.doc),
            _ => None,
        },
        None => None,
    };
    Ok(customer_keys(&c.doc, party.as_ref()))
}

/// Creates, or finds, the Individual of `contact` and its B2C Customer, for application
/// `app`: a confirmed sign-up. The same email address or phone number again gives the same
/// individual and customer (`created: false`; a contact given now and not then is not added).
/// An address that is the contact of a customer of another application, or two addresses
/// that are the contacts of two different customers, are a [`PartyError::Conflict`]. Two
/// instances signing up one address at once: the store's claim decides, both answer the one
/// customer.
pub async fn ensure_individual_customer(
    store: &Store,
    app: &str,
    contact: &Contact,
) -> Result<Linked, PartyError> {
    let (doc, keys) = sign_up(contact)?;
    if let Some(linked) = linked(store, app, &keys).await? {
        return Ok(linked);
    }
    let individual = new_id(prefix::INDIVIDUAL);
    let customer = new_id(prefix::CUSTOMER);
    let now = crate::store::now_ms();
    match claims::claim_all(store, &keys, app, &customer, &individual, now).await? {
        Ok(_) => {}
        // Another sign-up of the same address won the race (or the address is another's).
        Err(_) => {
            return linked(store, app, &keys).await?.ok_or_else(|| {
                PartyError::Store("a claim was lost and its holder is gone; retry".into())
            });
        }
    }
    let mut cust = Map::new();
    cust.insert(
        "name".into(),
        doc.get("fullName").cloned().unwrap_or_else(|| {
            Value::String(
                keys.first()
                    .map(|k| k.key.value().to_string())
                    .unwrap_or_default(),
            )
        }),
    );
    cust.insert("status".into(), Value::String("approved".into()));
    cust.insert(
        "engagedParty".into(),
        serde_json::json!({"id": individual, "@referredType": "Individual"}),
    );
    let writes = vec![
        Write::Resource(row(
            app,
            kind::INDIVIDUAL,
            &individual,
            None,
            &doc,
            now,
            now,
        )),
        Write::Resource(row(
            app,
            kind::CUSTOMER,
            &customer,
            Some(&individual),
            &cust,
            now,
            now,
        )),
    ];
    if let Err(e) = store.write_all(writes).await {
        claims::release_all(store, keys.iter().map(|k| &k.key), &customer, now).await;
        return Err(e.into());
    }
    Ok(Linked {
        individual_id: individual,
        customer_id: customer,
        created: true,
    })
}

/// The individual's document and contacts of a sign-up, checked.
fn sign_up(c: &Contact) -> Result<(Map<String, Value>, Vec<Keyed>), PartyError> {
    let invalid = |field: &str, why: &str| PartyError::Invalid {
        field: field.into(),
        why: why.into(),
    };
    let mut doc = Map::new();
    let mut media = Vec::new();
    if let Some(e) = c.email.as_deref().map(str::trim) {
        if !email_ok(e) {
            return Err(invalid("email", "not an email address (name@example.com)"));
        }
        media.push(serde_json::json!({"mediumType": "email", "preferred": true,
            "characteristic": {"emailAddress": e}}));
    }
    if let Some(p) = c.phone.as_deref().map(str::trim) {
        if !phone_ok(p) {
            return Err(invalid(
                "phone",
                "not an E.164 number: + and 8 to 15 digits",
            ));
        }
        media.push(serde_json::json!({"mediumType": "mobile",
            "preferred": c.email.is_none(), "characteristic": {"phoneNumber": p}}));
    }
    if media.is_empty() {
        return Err(invalid(
            "contact",
            "an email address or a phone number is required",
        ));
    }
    for (field, v) in [("givenName", &c.given_name), ("familyName", &c.family_name)] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            if v.len() > 256 {
                return Err(invalid(field, "at most 256 bytes"));
            }
            doc.insert(field.into(), Value::String(v.into()));
        }
    }
    let full: Vec<&str> = ["givenName", "familyName"]
        .iter()
        .filter_map(|k| doc.get(*k).and_then(Value::as_str))
        .collect();
    if !full.is_empty() {
        let full = full.join(" ");
        doc.insert("fullName".into(), Value::String(full));
    }
    doc.insert("status".into(), Value::String("validated".into()));
    doc.insert("contactMedium".into(), Value::Array(media));
    let keys = keys_of(&doc, "");
    Ok((doc, keys))
}

/// The individual and customer `keys` already belong to, if one customer of `app` holds
/// some of them and no other customer any.
async fn linked(store: &Store, app: &str, keys: &[Keyed]) -> Result<Option<Linked>, PartyError> {
    let mut found: Option<Holder> = None;
    for k in keys {
        let Some(h) = claims::holder(store, &k.key).await? else {
            continue;
        };
        let conflict = || PartyError::Conflict {
            field: if k.key.is_email() { "email" } else { "phone" }.into(),
            value: k.key.value().to_string(),
        };
        // Another application's customer, or a B2B one (the address is an organization's).
        if h.app != app || !h.party.starts_with(prefix::INDIVIDUAL) {
            return Err(conflict());
        }
        match &found {
            Some(f) if f.customer != h.customer => return Err(conflict()),
            Some(_) => {}
            None => found = Some(h),
        }
    }
    Ok(found.map(|h| Linked {
        individual_id: h.party,
        customer_id: h.customer,
        created: false,
    }))
}

#[cfg(test)]
mod tests;
