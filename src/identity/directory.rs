//! Who the customer of a confirmed sign-up is: [`CustomerDirectory`], the seam to the party
//! model (TMF632 Individual and its B2C Customer). The signature is the one the parties part
//! exposes (`parties::ensure_individual_customer`); until it is wired in, [`LocalDirectory`]
//! keeps one customer id per address in the store.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::store::{ResourceRow, Store};

/// What is known of a new customer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

/// The Individual and the Customer a contact is linked to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub individual_id: String,
    pub customer_id: String,
    /// Made now (false: found, the same email or MSISDN).
    pub created: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("party: {0}")]
pub struct PartyError(pub String);

pub type Ensured<'a> = Pin<Box<dyn Future<Output = Result<Linked, PartyError>> + Send + 'a>>;

/// Creates (or finds, for the same email or MSISDN) the Individual and its Customer.
pub trait CustomerDirectory: Send + Sync {
    fn ensure_individual_customer<'a>(
        &'a self,
        store: &'a Store,
        app: &'a str,
        contact: &'a Contact,
    ) -> Ensured<'a>;
}

pub const CUSTOMER_KIND: &str = "identity.customer";

/// The stand-in until the party model is merged: `identity.customer:<email or digits>`
/// claimed with `put_resource_if(.., None)`, holding a customer id (`cus-<hex>`) that is also
/// the individual's. The same address gives the same id on every instance.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalDirectory;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerDoc {
    customer_id: String,
}

impl CustomerDirectory for LocalDirectory {
    fn ensure_individual_customer<'a>(
        &'a self,
        store: &'a Store,
        app: &'a str,
        contact: &'a Contact,
    ) -> Ensured<'a> {
        Box::pin(async move {
            let key = contact
                .email
                .clone()
                .or_else(|| contact.phone.clone())
                .ok_or_else(|| PartyError("neither email nor phone".into()))?;
            let id = format!("{CUSTOMER_KIND}:{}", key.to_lowercase());
            let store_err = |e: crate::store::StoreError| PartyError(e.to_string());
            for _ in 0..2 {
                if let Some(r) = store.resource(&id).await.map_err(store_err)? {
                    let d: CustomerDoc = serde_json::from_str(&r.body)
                        .map_err(|e| PartyError(format!("{id}: {e}")))?;
                    return Ok(Linked {
                        individual_id: d.customer_id.clone(),
                        customer_id: d.customer_id,
                        created: false,
                    });
                }
                let cid = format!("cus-{}", super::otp::random_hex(16).map_err(PartyError)?);
                let now = crate::store::now_ms();
                let row = ResourceRow {
                    id: id.clone(),
                    app: app.to_string(),
                    kind: CUSTOMER_KIND.into(),
                    state: "active".into(),
                    parent: None,
                    due_ms: None,
                    body: serde_json::json!({"customerId": cid}).to_string(),
                    created_ms: now,
                    updated_ms: now,
                };
                if store.put_resource_if(row, None).await.map_err(store_err)? {
                    return Ok(Linked {
                        individual_id: cid.clone(),
                        customer_id: cid,
                        created: true,
                    });
                }
            }
            Err(PartyError(format!("{id}: claimed and not readable")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_one_customer() {
        let store = Store::memory();
        let c = Contact {
            email: Some("Ana@Example.com".into()),
            ..Contact::default()
        };
        let a = LocalDirectory
            .ensure_individual_customer(&store, "shop", &c)
            .await
            .unwrap();
        let b = LocalDirectory
            .ensure_individual_customer(&store, "shop", &c)
            .await
            .unwrap();
        assert!(a.created && !b.created);
        assert_eq!(a.customer_id, b.customer_id);
    }
}
