//! Reading a TMF629 Customer body (create, or the patched document). Pure.
//!
//! ```text
//! member            read as
//! id, href          the gateway's (refused on create; unchanged on update)
//! name              text (default: the engaged party's name)
//! status            initialized (default), approved, validated, suspended or closed
//! statusReason      text
//! engagedParty      required {id, @referredType?: Individual | Organization}
//! contactMedium[]   as TMF632 (the customer's own contacts, claimed for it)
//! relatedParty[]    {id, role: contact, @referredType?: Individual}, at most 20
//! validFor          TimePeriod
//! account[]         the gateway's (the billing accounts naming the customer): ignored
//! ```

use serde_json::{Map, Value};

use crate::api::error::clip;
use crate::api::tmf632::input::{
    Reference, Target, array, contact_media, object, one_of, owned, reference, text, valid_for,
};
use crate::api::tmf654::error::TmfError;

/// Most contact individuals of one customer.
pub const MAX_CONTACT_PARTIES: usize = 20;

/// The customer statuses.
pub const STATUSES: &[&str] = &[
    "initialized",
    "approved",
    "validated",
    "suspended",
    "closed",
];

/// A checked customer body: its document (without the references), the engaged party and
/// the contact individuals, each with the member naming it.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub doc: Map<String, Value>,
    pub party: Reference,
    pub contacts: Vec<(Reference, String)>,
}

pub fn read(body: &Value, target: Target<'_>) -> Result<Draft, TmfError> {
    let mut doc = Map::new();
    let mut party = None;
    let mut contacts = Vec::new();
    for (k, v) in object(body, "body")? {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" | "href" => owned(k, v, target)?,
            "name" | "statusReason" => {
                doc.insert(k.clone(), text(v, k)?);
            }
            "status" => {
                doc.insert(k.clone(), one_of(v, k, STATUSES)?);
            }
            "engagedParty" => {
                let r = reference(v, k)?;
                match r.referred_type.as_deref() {
                    None | Some("Individual" | "Organization") => {}
                    Some(t) => {
                        return Err(TmfError::invalid(
                            "engagedParty.@referredType",
                            format!("\"{}\": Individual or Organization", clip(t)),
                        ));
                    }
                }
                party = Some(r);
            }
            "contactMedium" => {
                doc.insert(k.clone(), contact_media(v, k)?);
            }
            "relatedParty" => {
                for (i, p) in array(v, k, MAX_CONTACT_PARTIES)?.iter().enumerate() {
                    let at = format!("relatedParty[{i}]");
                    let r = reference(p, &at)?;
                    if !r
                        .role
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case("contact"))
                    {
                        return Err(TmfError::invalid(
                            &format!("{at}.role"),
                            "required: contact (the individuals to talk to)",
                        ));
                    }
                    if r.referred_type
                        .as_deref()
                        .is_some_and(|t| t != "Individual")
                    {
                        return Err(TmfError::invalid(
                            &format!("{at}.@referredType"),
                            "a contact is an Individual",
                        ));
                    }
                    if contacts
                        .iter()
                        .any(|(c, _): &(Reference, String)| c.id == r.id)
                    {
                        return Err(TmfError::invalid(&format!("{at}.id"), "given twice"));
                    }
                    contacts.push((r, format!("{at}.id")));
                }
            }
            "validFor" => {
                doc.insert(k.clone(), valid_for(v, k)?);
            }
            "account" => {}
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &clip(k),
                    "not a member of Customer (name, status, statusReason, engagedParty, \
                     contactMedium, relatedParty, validFor)",
                ));
            }
        }
    }
    let party = party.ok_or_else(|| {
        TmfError::invalid(
            "engagedParty",
            "required: {\"id\": \"<individual or organization id>\"}",
        )
    })?;
    doc.entry("status")
        .or_insert_with(|| Value::String("initialized".into()));
    Ok(Draft {
        doc,
        party,
        contacts,
    })
}
