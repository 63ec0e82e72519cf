//! Reading the bodies of the party and account families (TMF632 Individual and
//! Organization here, the readers TMF629 and TMF666 share): the client's create body, or the
//! resource's rendered document after a merge patch was applied to it (one path for both).
//! Pure: no store, no clock. Each reader gives the document to store: the members it knows,
//! checked and bounded; an unknown member is a 400 naming it.
//!
//! ```text
//! member              create                     update (the patched document)
//! id, href            refused (the gateway's)    must be the resource's
//! @type, @baseType, @schemaLocation: ignored (the gateway's)
//! contactMedium[]     {mediumType: email, characteristic: {emailAddress}}
//!                     {mediumType: mobile | phone | sms, characteristic: {phoneNumber: +E.164}}
//!                     {mediumType: postalAddress, characteristic: {street1, street2, city,
//!                      postCode, stateOrProvince, country}}; preferred?, validFor?
//! ```

use serde_json::{Map, Value};

use crate::api::error::clip;
use crate::api::tmf630;
use crate::api::tmf654::error::TmfError;
use crate::api::tmf654::model::kind;
use crate::contact::{email_ok, phone_ok};

/// Most contact media of one party or customer.
pub const MAX_CONTACTS: usize = 10;
/// Longest text member.
pub const MAX_TEXT: usize = 256;

/// What a body is read against.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Create,
    /// The resource `id` at `href` as it stands.
    Update {
        id: &'a str,
        href: &'a str,
    },
}

/// Reads a TMF632 Individual body.
pub fn individual(body: &Value, target: Target<'_>) -> Result<Map<String, Value>, TmfError> {
    let mut doc = Map::new();
    for (k, v) in object(body, "body")? {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" | "href" => owned(k, v, target)?,
            "givenName" | "familyName" | "middleName" | "fullName" | "formattedName"
            | "preferredGivenName" | "title" | "gender" | "nationality" | "countryOfBirth"
            | "placeOfBirth" => {
                doc.insert(k.clone(), text(v, k)?);
            }
            "birthDate" | "deathDate" => {
                doc.insert(k.clone(), date(v, k)?);
            }
            "status" => {
                doc.insert(
                    k.clone(),
                    one_of(v, k, &["initialized", "validated", "deceased"])?,
                );
            }
            "contactMedium" => {
                doc.insert(k.clone(), contact_media(v, k)?);
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &clip(k),
                    "not a member of Individual (givenName, familyName, middleName, fullName, \
                     formattedName, preferredGivenName, title, gender, nationality, \
                     countryOfBirth, placeOfBirth, birthDate, deathDate, status, contactMedium)",
                ));
            }
        }
    }
    doc.entry("status")
        .or_insert_with(|| Value::String("initialized".into()));
    Ok(doc)
}

/// Reads a TMF632 Organization body (`name` required).
pub fn organization(body: &Value, target: Target<'_>) -> Result<Map<String, Value>, TmfError> {
    let mut doc = Map::new();
    for (k, v) in object(body, "body")? {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" | "href" => owned(k, v, target)?,
            "name" | "tradingName" | "nameType" | "organizationType" => {
                doc.insert(k.clone(), text(v, k)?);
            }
            "isLegalEntity" | "isHeadOffice" => {
                if !v.is_boolean() {
                    return Err(TmfError::invalid(
                        k,
                        format!("expected a boolean, found {}", kind(v)),
                    ));
                }
                doc.insert(k.clone(), v.clone());
            }
            "status" => {
                doc.insert(
                    k.clone(),
                    one_of(v, k, &["initialized", "validated", "closed"])?,
                );
            }
            "contactMedium" => {
                doc.insert(k.clone(), contact_media(v, k)?);
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &clip(k),
                    "not a member of Organization (name, tradingName, nameType, \
                     organizationType, isLegalEntity, isHeadOffice, status, contactMedium)",
                ));
            }
        }
    }
    if !doc.contains_key("name") {
        return Err(TmfError::invalid(
            "name",
            "required: the organization's name",
        ));
    }
    doc.entry("status")
        .or_insert_with(|| Value::String("initialized".into()));
    Ok(doc)
}

// ---- shared members --------------------------------------------------------------------------

/// `id` and `href`: the gateway's.
pub fn owned(k: &str, v: &Value, target: Target<'_>) -> Result<(), TmfError> {
    match target {
        Target::Create => Err(TmfError::invalid(
            k,
            "assigned by the gateway: leave it out of a new resource",
        )),
        Target::Update { id, href } => {
            let own = if k == "id" { id } else { href };
            match v.as_str() {
                Some(s) if s == own => Ok(()),
                _ => Err(TmfError::invalid(
                    k,
                    format!("cannot be changed (it is \"{own}\")"),
                )),
            }
        }
    }
}

/// `contactMedium`: at most [`MAX_CONTACTS`], each checked.
pub fn contact_media(v: &Value, at: &str) -> Result<Value, TmfError> {
    let mut out = Vec::new();
    for (i, c) in array(v, at, MAX_CONTACTS)?.iter().enumerate() {
        out.push(contact_medium(c, &format!("{at}[{i}]"))?);
    }
    Ok(Value::Array(out))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Medium {
    Email,
    Phone,
    Postal,
}

fn contact_medium(v: &Value, at: &str) -> Result<Value, TmfError> {
    let m = object(v, at)?;
    let mut out = Map::new();
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
                    "mobile" | "phone" | "sms" | "telephone" => Medium::Phone,
                    "postaladdress" => Medium::Postal,
                    _ => {
                        return Err(TmfError::invalid(
                            &field,
                            format!(
                                "\"{}\": email, mobile, phone, sms or postalAddress",
                                clip(s)
                            ),
                        ));
                    }
                });
                out.insert(k.clone(), v.clone());
            }
            "characteristic" => chars = Some(object(v, &field)?),
            "preferred" => {
                if !v.is_boolean() {
                    return Err(TmfError::invalid(
                        &field,
                        format!("expected a boolean, found {}", kind(v)),
                    ));
                }
                out.insert(k.clone(), v.clone());
            }
            "validFor" => {
                out.insert(k.clone(), valid_for(v, &field)?);
            }
            _ if k.starts_with('@') => {}
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of ContactMedium (mediumType, characteristic, preferred, \
                     validFor)",
                ));
            }
        }
    }
    let medium = medium.ok_or_else(|| {
        TmfError::invalid(
            &format!("{at}.mediumType"),
            "required: email, mobile, phone, sms or postalAddress",
        )
    })?;
    let cf = format!("{at}.characteristic");
    let chars = chars.ok_or_else(|| TmfError::invalid(&cf, "required"))?;
    let allowed: &[&str] = match medium {
        Medium::Email => &["emailAddress", "contactType"],
        Medium::Phone => &["phoneNumber", "contactType"],
        Medium::Postal => &[
            "street1",
            "street2",
            "city",
            "postCode",
            "stateOrProvince",
            "country",
            "contactType",
        ],
    };
    let mut kept = Map::new();
    for (k, v) in chars {
        let field = format!("{cf}.{}", clip(k));
        if v.is_null() || k.starts_with('@') {
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return Err(TmfError::invalid(
                &field,
                format!("not used for this mediumType (only {})", allowed.join(", ")),
            ));
        }
        let s = short(v, &field)?;
        let ok = match k.as_str() {
            "emailAddress" => email_ok(s),
            "phoneNumber" => phone_ok(s),
            _ => true,
        };
        if !ok {
            let form = if k == "emailAddress" {
                "an email address (name@example.com)"
            } else {
                "an E.164 number: + and 8 to 15 digits"
            };
            return Err(TmfError::invalid(
                &field,
                format!("\"{}\" is not {form}", clip(s)),
            ));
        }
        kept.insert(k.clone(), Value::String(s.to_string()));
    }
    let need = match medium {
        Medium::Email => Some("emailAddress"),
        Medium::Phone => Some("phoneNumber"),
        Medium::Postal => None,
    };
    match need {
        Some(n) if !kept.contains_key(n) => {
            return Err(TmfError::invalid(&format!("{cf}.{n}"), "required"));
        }
        None if kept.keys().all(|k| k == "contactType") => {
            return Err(TmfError::invalid(
                &cf,
                "required: at least one of street1, city, postCode, country",
            ));
        }
        _ => {}
    }
    out.insert("characteristic".into(), Value::Object(kept));
    Ok(Value::Object(out))
}

/// `validFor`: `{startDateTime?, endDateTime?}` in RFC 3339, the end after the start.
pub fn valid_for(v: &Value, at: &str) -> Result<Value, TmfError> {
    tmf630::valid_for(v, at).map(Value::Object)
}

/// A date (`1990-04-01`) or an RFC 3339 date-time.
pub fn date(v: &Value, at: &str) -> Result<Value, TmfError> {
    let s = string(v, at)?;
    let rfc = time::format_description::well_known::Rfc3339;
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let ok = time::OffsetDateTime::parse(s, &rfc).is_ok() || time::Date::parse(s, &day).is_ok();
    if !ok {
        return Err(TmfError::invalid(
            at,
            format!(
                "\"{}\" is not a date (1990-04-01) nor an RFC 3339 date-time",
                clip(s)
            ),
        ));
    }
    Ok(v.clone())
}

/// A reference `{id, href?, name?, role?, @referredType?}`: its id (1 to 64 letters, digits
/// and `-`), role and referred type; href and name are the gateway's (left out).
pub fn reference(v: &Value, at: &str) -> Result<Reference, TmfError> {
    let m = object(v, at)?;
    let mut r = Reference::default();
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "id" => {
                let s = string(v, &field)?;
                if s.is_empty()
                    || s.len() > 64
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(TmfError::invalid(
                        &field,
                        format!("\"{}\" is not an id of this gateway", clip(s)),
                    ));
                }
                r.id = s.to_string();
            }
            "role" => r.role = Some(short(v, &field)?.to_string()),
            "@referredType" => r.referred_type = Some(short(v, &field)?.to_string()),
            "href" | "name" | "@type" | "@baseType" | "@schemaLocation" => {
                short(v, &field)?;
            }
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of a reference (id, href, name, role, @referredType)",
                ));
            }
        }
    }
    if r.id.is_empty() {
        return Err(TmfError::invalid(&format!("{at}.id"), "required"));
    }
    Ok(r)
}

/// A checked reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reference {
    pub id: String,
    pub role: Option<String>,
    pub referred_type: Option<String>,
}

// ---- typed members ---------------------------------------------------------------------------

pub use crate::api::tmf630::{array, object, string};

/// A string of 1 to [`MAX_TEXT`] bytes.
pub fn short<'a>(v: &'a Value, at: &str) -> Result<&'a str, TmfError> {
    let s = string(v, at)?;
    if s.trim().is_empty() || s.len() > MAX_TEXT {
        return Err(TmfError::invalid(at, format!("1 to {MAX_TEXT} bytes")));
    }
    Ok(s)
}

/// [`short`], as a value.
pub fn text(v: &Value, at: &str) -> Result<Value, TmfError> {
    short(v, at).map(|s| Value::String(s.to_string()))
}

pub fn one_of(v: &Value, at: &str, names: &[&str]) -> Result<Value, TmfError> {
    tmf630::one_of(v, at, names).map(|s| Value::String(s.to_string()))
}
