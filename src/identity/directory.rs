//! Who the customer of a confirmed sign-up is: [`CustomerDirectory`], the seam to the party
//! model (TMF632 Individual and its B2C Customer). The signature is the one the parties part
//! exposes (`parties::ensure_individual_customer`), implemented by [`PartiesDirectory`].

use std::future::Future;
use std::pin::Pin;

use crate::store::Store;

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

/// The party model: [`crate::parties::ensure_individual_customer`] makes (or finds, for the
/// same email or MSISDN) the TMF632 Individual and its B2C TMF629 Customer; the uniqueness of
/// the address is a claim in the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct PartiesDirectory;

impl CustomerDirectory for PartiesDirectory {
    fn ensure_individual_customer<'a>(
        &'a self,
        store: &'a Store,
        app: &'a str,
        contact: &'a Contact,
    ) -> Ensured<'a> {
        Box::pin(async move {
            let c = crate::parties::Contact {
                email: contact.email.clone(),
                phone: contact.phone.clone(),
                given_name: contact.given_name.clone(),
                family_name: contact.family_name.clone(),
            };
            crate::parties::ensure_individual_customer(store, app, &c)
                .await
                .map(|l| Linked {
                    individual_id: l.individual_id,
                    customer_id: l.customer_id,
                    created: l.created,
                })
                .map_err(|e| PartyError(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_address_one_individual_and_customer() {
        let store = Store::memory();
        let c = Contact {
            email: Some("Ana@Example.com".into()),
            given_name: Some("Ana".into()),
            ..Contact::default()
        };
        let a = PartiesDirectory
            .ensure_individual_customer(&store, "shop", &c)
            .await
            .unwrap();
        let b = PartiesDirectory
            .ensure_individual_customer(&store, "shop", &c)
            .await
            .unwrap();
        assert!(a.created && !b.created);
        assert_eq!(
            (a.customer_id.clone(), a.individual_id.clone()),
            (b.customer_id, b.individual_id)
        );
        // They are the TMF629 customer and TMF632 individual rows.
        let (rows, _) = store
            .resources(crate::store::ResourceFilter::default())
            .await
            .unwrap();
        assert!(
            rows.iter()
                .any(|r| r.id.contains(&a.customer_id) && r.kind.contains("customer")),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .any(|r| r.id.contains(&a.individual_id) && r.kind.contains("individual")),
            "{rows:?}"
        );
    }
}
