//! The claims of customer contacts: one row per email address (`party.email:<lowercased>`)
//! or MSISDN (`party.msisdn:<digits>`), held by one customer, decided by the database.
//!
//! ```text
//! claim:   put_resource_if(held row, None)        won -> Made
//!          lost: read it   held by this customer  -> Ours
//!                          held by another        -> Lost(holder), unless stale (taken over)
//!                          released               -> compare-and-set to held -> Made
//! release: read it; held by this customer -> compare-and-set to released
//! ```

use serde_json::{Value, json};

use super::{CLAIM_GRACE_MS, kind, next_updated, state};
use crate::store::{ResourceRow, Store, StoreError};

/// A customer contact: an email address (lowercased) or an MSISDN (digits, no `+`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Email(String),
    Msisdn(String),
}

impl Key {
    pub fn email(address: &str) -> Self {
        Self::Email(address.trim().to_lowercase())
    }

    /// The digits of an E.164 number (`+`, `tel:`, spaces and dashes left out).
    pub fn msisdn(number: &str) -> Self {
        Self::Msisdn(number.chars().filter(char::is_ascii_digit).collect())
    }

    /// The claim's row id.
    pub fn row_id(&self) -> String {
        match self {
            Self::Email(e) => format!("party.email:{e}"),
            Self::Msisdn(d) => format!("party.msisdn:{d}"),
        }
    }

    pub fn is_email(&self) -> bool {
        matches!(self, Self::Email(_))
    }

    /// The address as claimed (`+` and the digits for an MSISDN).
    pub fn value(&self) -> String {
        match self {
            Self::Email(e) => e.clone(),
            Self::Msisdn(d) => format!("+{d}"),
        }
    }
}

/// A contact and the member of the request that names it (for a 409).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    pub key: Key,
    pub field: String,
}

/// The customer (and its engaged party) holding a claim, and its application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub app: String,
    pub customer: String,
    pub party: String,
}

/// The outcome of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// This call made it (to be released if what it was made for is not written).
    Made,
    /// The customer held it already.
    Ours,
    /// Another customer holds it.
    Lost(Holder),
}

/// A claim lost: which contact, and who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub keyed: Keyed,
    pub holder: Holder,
}

fn claim_row(key: &Key, h: &Holder, created_ms: i64, updated_ms: i64) -> ResourceRow {
    ResourceRow {
        id: key.row_id(),
        app: h.app.clone(),
        kind: kind::CLAIM.into(),
        state: state::HELD.into(),
        parent: Some(h.customer.clone()),
        due_ms: None,
        body: json!({"customer": h.customer, "party": h.party, "contact": key.value()}).to_string(),
        created_ms,
        updated_ms,
    }
}

fn holder_of(row: &ResourceRow) -> Holder {
    let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
    let s = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Holder {
        app: row.app.clone(),
        customer: row.parent.clone().unwrap_or_else(|| s("customer")),
        party: s("party"),
    }
}

/// Who holds `key` now, if anyone (a stale claim is no one's: the next claim takes it over).
pub async fn holder(store: &Store, key: &Key) -> Result<Option<Holder>, StoreError> {
    let Some(cur) = store
        .resource(&key.row_id())
        .await?
        .filter(|r| r.kind == kind::CLAIM && r.state == state::HELD)
    else {
        return Ok(None);
    };
    let h = holder_of(&cur);
    if stale(store, key, &cur, &h, crate::store::now_ms()).await? {
        return Ok(None);
    }
    Ok(Some(h))
}

/// Claims `key` for `customer` (engaging `party`) of `app`.
pub async fn claim(
    store: &Store,
    key: &Key,
    app: &str,
    customer: &str,
    party: &str,
    now: i64,
) -> Result<Claim, StoreError> {
    let me = Holder {
        app: app.into(),
        customer: customer.into(),
        party: party.into(),
    };
    // Each round is lost only to another writer of the same row that won its own round.
    for _ in 0..16 {
        if store
            .put_resource_if(claim_row(key, &me, now, now), None)
            .await?
        {
            return Ok(Claim::Made);
        }
        let Some(cur) = store.resource(&key.row_id()).await? else {
            continue;
        };
        if cur.kind != kind::CLAIM {
            return Err(StoreError(format!("row {} is not a claim", cur.id)));
        }
        if cur.state == state::HELD {
            let h = holder_of(&cur);
            if h.customer == customer {
                return Ok(Claim::Ours);
            }
            if !stale(store, key, &cur, &h, now).await? {
                return Ok(Claim::Lost(h));
            }
        }
        let next = claim_row(key, &me, cur.created_ms, next_updated(now, cur.updated_ms));
        if store.put_resource_if(next, Some(cur.updated_ms)).await? {
            return Ok(Claim::Made);
        }
    }
    Err(StoreError(format!(
        "the claim of {} is contended; retry",
        key.value()
    )))
}

/// Whether the held claim `cur` is left over: its customer deleted, or, once
/// [`CLAIM_GRACE_MS`] old, its customer absent or no longer having the contact.
async fn stale(
    store: &Store,
    key: &Key,
    cur: &ResourceRow,
    h: &Holder,
    now: i64,
) -> Result<bool, StoreError> {
    let old = cur.updated_ms.saturating_add(CLAIM_GRACE_MS) < now;
    match store.resource(&h.customer).await? {
        None => Ok(old),
        Some(c) if c.kind != kind::CUSTOMER || c.state != state::LIVE => Ok(true),
        Some(c) if old => Ok(!super::current_keys(store, &c)
            .await?
            .iter()
            .any(|k| k.key == *key)),
        Some(_) => Ok(false),
    }
}

/// Claims every key for `customer`: the keys this call made, or (having released those) the
/// first one lost.
pub async fn claim_all(
    store: &Store,
    keys: &[Keyed],
    app: &str,
    customer: &str,
    party: &str,
    now: i64,
) -> Result<Result<Vec<Key>, Lost>, StoreError> {
    let mut made = Vec::new();
    for k in keys {
        match claim(store, &k.key, app, customer, party, now).await {
            Ok(Claim::Made) => made.push(k.key.clone()),
            Ok(Claim::Ours) => {}
            Ok(Claim::Lost(holder)) => {
                release_all(store, made.iter(), customer, now).await;
                return Ok(Err(Lost {
                    keyed: k.clone(),
                    holder,
                }));
            }
            Err(e) => {
                release_all(store, made.iter(), customer, now).await;
                return Err(e);
            }
        }
    }
    Ok(Ok(made))
}

/// Releases `key` if `customer` holds it; whether it did.
pub async fn release(
    store: &Store,
    key: &Key,
    customer: &str,
    now: i64,
) -> Result<bool, StoreError> {
    for _ in 0..16 {
        let Some(cur) = store.resource(&key.row_id()).await? else {
            return Ok(false);
        };
        if cur.kind != kind::CLAIM
            || cur.state != state::HELD
            || holder_of(&cur).customer != customer
        {
            return Ok(false);
        }
        let mut next = cur.clone();
        next.state = state::RELEASED.into();
        next.updated_ms = next_updated(now, cur.updated_ms);
        if store.put_resource_if(next, Some(cur.updated_ms)).await? {
            return Ok(true);
        }
    }
    Err(StoreError(format!(
        "the claim of {} is contended; not released",
        key.value()
    )))
}

/// Releases each of `keys` `customer` holds; a failure is logged (the claim is then taken
/// over once stale).
pub async fn release_all<'a>(
    store: &Store,
    keys: impl Iterator<Item = &'a Key>,
    customer: &str,
    now: i64,
) {
    for k in keys {
        if let Err(e) = release(store, k, customer, now).await {
            tracing::warn!(claim = %k.row_id(), customer, error = %e, "claim not released");
        }
    }
}
