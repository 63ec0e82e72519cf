//! TMF629 Customer Management v4: the customers of the digital sales channel. A customer
//! engages a party: an individual (B2C) or an organization (B2B, its `relatedParty` the
//! individuals to talk to, role `contact`); its `account` are the TMF666 billing accounts
//! naming it. The email addresses and phone numbers of its engaged party's and its own
//! `contactMedium` are claimed for it in the store ([`crate::parties`]): the same address
//! cannot make a second customer (409 CONFLICT naming the member, nothing kept), even from
//! two gateway instances at once.
//!
//! ```text
//! POST   /tmf-api/customerManagement/v4/customer        201 Customer, Location
//! GET    /tmf-api/customerManagement/v4/customer        200 [Customer] newest first; fields,
//!                                                       offset, limit, status, name,
//!                                                       engagedParty.id, relatedParty.id
//! GET    /tmf-api/customerManagement/v4/customer/{id}   200 Customer
//! PATCH  /tmf-api/customerManagement/v4/customer/{id}   200 Customer (merge patch, JSON Patch);
//!                                                       new contacts claimed, then written,
//!                                                       then the old released
//! DELETE /tmf-api/customerManagement/v4/customer/{id}   204, its contacts released; 409 while
//!                                                       a billing account names it
//! ```

pub mod input;

#[cfg(test)]
mod tests;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi};

use super::auth::{Caller, Subject};
use super::tmf630::{self, answer, json, page, query, select, store_error};
use super::tmf632::input::Target;
use super::tmf632::rest::{self, Filter};
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::tmf663::PatchBody;
use super::{ApiState, Route};
use crate::parties::{self, Key, Stored, claims, kind, prefix, state};
use crate::store::{ResourceFilter, Store};

pub const BASE: &str = "/tmf-api/customerManagement/v4";
const CUSTOMERS: &str = "/tmf-api/customerManagement/v4/customer";
const CUSTOMER: &str = "/tmf-api/customerManagement/v4/customer/{id}";
/// The `allowed_operations` name of every customer route.
pub const CUSTOMER_OPERATION: &str = "customer";
/// Most billing accounts a customer's `account` lists.
const MAX_ACCOUNTS: usize = 50;

const FILTERS: &[Filter] = &[
    Filter {
        name: "status",
        path: &["status"],
    },
    Filter {
        name: "name",
        path: &["name"],
    },
    Filter {
        name: "engagedParty.id",
        path: &["engagedParty", "id"],
    },
    Filter {
        name: "relatedParty.id",
        path: &["relatedParty", "id"],
    },
];

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, CUSTOMERS, post(create_customer)),
        r(Method::GET, CUSTOMERS, get(list_customers)),
        r(Method::GET, CUSTOMER, get(retrieve_customer)),
        r(Method::PATCH, CUSTOMER, patch(patch_customer)),
        r(Method::DELETE, CUSTOMER, delete(delete_customer)),
    ]
}

pub fn href(id: &str) -> String {
    format!("{CUSTOMERS}/{id}")
}

fn permit(caller: &Caller) -> Result<(), TmfError> {
    rest::permit(caller, CUSTOMER_OPERATION, "customers")
}

/// What only the application's own credentials may do (`what`), never a customer's token.
fn back_office(caller: &Caller, what: &str) -> Result<(), TmfError> {
    if caller.is_user() {
        return Err(TmfError::policy(format!(
            "a customer's access token may not {what}: use the application's credentials"
        )));
    }
    Ok(())
}

/// A customer's token sees its own customer only: another is 404, as if it did not exist.
fn mine(own: Option<&str>, id: &str) -> Result<(), TmfError> {
    match own {
        Some(c) if c != id => Err(rest::not_found("customer", id)),
        _ => Ok(()),
    }
}

/// The customer as served: its `account` the live billing accounts naming it.
pub async fn value(store: &Store, s: &Stored) -> Result<Value, TmfError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(kind::BILLING_ACCOUNT.into()),
            state: Some(state::LIVE.into()),
            parent: Some(s.row.id.clone()),
            ascending: true,
            limit: MAX_ACCOUNTS,
            ..ResourceFilter::default()
        })
        .await
        .map_err(store_error)?;
    let accounts: Vec<Value> = rows
        .into_iter()
        .filter_map(|r| parties::decode(r).ok())
        .map(|a| {
            let mut m = json!({"id": a.row.id, "href": super::tmf666::href(&a.row.id),
                "@referredType": "BillingAccount"});
            if let Some(n) = a.doc.get("name") {
                m["name"] = n.clone();
            }
            m
        })
        .collect();
    let mut v = rest::render(&s.doc, &s.row.id, &href(&s.row.id), "Customer");
    if let Value::Object(m) = &mut v {
        m.insert("account".into(), Value::Array(accounts));
    }
    Ok(v)
}

/// The party a reference names: kind by its id.
fn party_kind(id: &str) -> Option<(&'static str, &'static str)> {
    if id.starts_with(prefix::INDIVIDUAL) {
        Some((kind::INDIVIDUAL, "Individual"))
    } else if id.starts_with(prefix::ORGANIZATION) {
        Some((kind::ORGANIZATION, "Organization"))
    } else {
        None
    }
}

/// The draft's references resolved: the engaged party, and the document to store.
async fn resolve(
    store: &Store,
    caller: &Caller,
    draft: input::Draft,
) -> Result<(Stored, Map<String, Value>), TmfError> {
    let r = &draft.party;
    let Some((pk, ty)) = party_kind(&r.id) else {
        return Err(TmfError::invalid(
            "engagedParty.id",
            format!(
                "\"{}\" is not an individual nor an organization of this gateway",
                super::error::clip(&r.id)
            ),
        ));
    };
    if r.referred_type.as_deref().is_some_and(|t| t != ty) {
        return Err(TmfError::invalid(
            "engagedParty.@referredType",
            format!("{} is an {ty}", r.id),
        ));
    }
    let party = rest::referenced(store, caller, pk, &r.id, ty, "engagedParty.id").await?;
    let mut doc = draft.doc;
    doc.insert(
        "engagedParty".into(),
        json!({"id": r.id, "href": super::tmf632::href(&r.id), "@referredType": ty}),
    );
    if !doc.contains_key("name") {
        let name = party
            .doc
            .get("name")
            .or_else(|| party.doc.get("fullName"))
            .cloned()
            .unwrap_or_else(|| {
                let n: Vec<&str> = ["givenName", "familyName"]
                    .iter()
                    .filter_map(|k| party.doc.get(*k).and_then(Value::as_str))
                    .collect();
                Value::String(if n.is_empty() {
                    r.id.clone()
                } else {
                    n.join(" ")
                })
            });
        doc.insert("name".into(), name);
    }
    let mut contacts = Vec::new();
    for (c, at) in &draft.contacts {
        rest::referenced(store, caller, kind::INDIVIDUAL, &c.id, "individual", at).await?;
        contacts.push(json!({"id": c.id, "href": super::tmf632::href(&c.id),
            "role": "contact", "@referredType": "Individual"}));
    }
    if !contacts.is_empty() {
        doc.insert("relatedParty".into(), Value::Array(contacts));
    }
    Ok((party, doc))
}

async fn create(st: ApiState, caller: Caller, body: TmfBody) -> Result<Response, TmfError> {
    permit(&caller)?;
    back_office(&caller, "create customers")?;
    let v: Map<String, Value> = body.parse()?;
    let draft = input::read(&Value::Object(v), Target::Create)?;
    let id = parties::new_id(prefix::CUSTOMER);
    tracing::Span::current().record("operation_id", id.as_str());
    let s = rest::detached({
        let st = st.clone();
        async move {
            let _locks = rest::lock_parties(&st, &[&draft.party.id]).await?;
            let store = st.charging.store();
            let (party, doc) = resolve(store, &caller, draft).await?;
            let keys = parties::customer_keys(&doc, Some(&party.doc));
            let now = crate::store::now_ms();
            let made = match claims::claim_all(store, &keys, caller.id(), &id, &party.row.id, now)
                .await
                .map_err(store_error)?
            {
                Ok(made) => made,
                Err(lost) => return Err(rest::conflict(&lost)),
            };
            let row = parties::row(
                caller.id(),
                kind::CUSTOMER,
                &id,
                Some(&party.row.id),
                &doc,
                now,
                now,
            );
            let written = store.put_resource_if(row.clone(), None).await;
            if !matches!(written, Ok(true)) {
                claims::release_all(store, made.iter(), &id, now).await;
                return Err(match written {
                    Err(e) => store_error(e),
                    _ => TmfError::internal("the new id was taken; retry"),
                });
            }
            Ok(Stored { row, doc })
        }
    })
    .await?;
    Ok(rest::created(&value(st.charging.store(), &s).await?))
}

async fn list(
    st: ApiState,
    caller: Caller,
    own: Option<String>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let store = st.charging.store();
    let (rows, total, keep) = rest::list(
        store,
        &caller,
        kind::CUSTOMER,
        &uri,
        FILTERS,
        own.as_deref(),
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for s in &rows {
        items.push(select(value(store, s).await?, keep.as_ref()));
    }
    Ok(page(&items, total))
}

async fn retrieve(
    st: ApiState,
    caller: Caller,
    own: Option<String>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, "customer")?;
    mine(own.as_deref(), &id)?;
    let q = query(&uri, &["fields"])?;
    let store = st.charging.store();
    let s = rest::load(store, &caller, kind::CUSTOMER, &id, "customer").await?;
    Ok(json(
        StatusCode::OK,
        &select(value(store, &s).await?, tmf630::fields(&q).as_ref()),
    ))
}

/// The engaged party a patched customer document names (for its lock).
fn engaged_id(v: &Value) -> Option<String> {
    v.get("engagedParty")
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    own: Option<String>,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, "customer")?;
    mine(own.as_deref(), &id)?;
    tracing::Span::current().record("operation_id", id.as_str());
    let s = rest::detached({
        let st = st.clone();
        async move {
            let store = st.charging.store();
            let first = rest::load(store, &caller, kind::CUSTOMER, &id, "customer").await?;
            let old_party = first.row.parent.clone().unwrap_or_default();
            let new_party =
                engaged_id(&rest::patched(value(store, &first).await?, &body)?).unwrap_or_default();
            let _locks = rest::lock_parties(&st, &[&old_party, &new_party]).await?;
            // Read again under the locks.
            let before = rest::load(store, &caller, kind::CUSTOMER, &id, "customer").await?;
            if before.row.parent != first.row.parent {
                return Err(TmfError::conflict(
                    "IN_PROGRESS",
                    format!("customer {id} was changed meanwhile; retry"),
                ));
            }
            let was = value(store, &before).await?;
            let v = rest::patched(was.clone(), &body)?;
            if caller.is_user() {
                for m in ["engagedParty", "relatedParty"] {
                    if v.get(m) != was.get(m) {
                        return Err(TmfError::policy(format!(
                            "{m} of a customer is changed with the application's credentials, \
                             not with a customer's access token"
                        )));
                    }
                }
            }
            let href = href(&id);
            let draft = input::read(
                &v,
                Target::Update {
                    id: &id,
                    href: &href,
                },
            )?;
            let (party, doc) = resolve(store, &caller, draft).await?;
            let old = parties::current_keys(store, &before.row)
                .await
                .map_err(store_error)?;
            let new = parties::customer_keys(&doc, Some(&party.doc));
            let fresh: Vec<_> = new
                .iter()
                .filter(|k| !old.iter().any(|o| o.key == k.key))
                .cloned()
                .collect();
            let now = crate::store::now_ms();
            let made =
                match claims::claim_all(store, &fresh, &before.row.app, &id, &party.row.id, now)
                    .await
                    .map_err(store_error)?
                {
                    Ok(made) => made,
                    Err(lost) => return Err(rest::conflict(&lost)),
                };
            let row = rest::replacement(&before.row, &doc, Some(&party.row.id));
            if let Err(e) = rest::replace(store, &before.row, row.clone()).await {
                claims::release_all(store, made.iter(), &id, now).await;
                return Err(e);
            }
            let gone: Vec<Key> = old
                .into_iter()
                .filter(|o| !new.iter().any(|k| k.key == o.key))
                .map(|o| o.key)
                .collect();
            claims::release_all(store, gone.iter(), &id, now).await;
            Ok(Stored { row, doc })
        }
    })
    .await?;
    Ok(json(StatusCode::OK, &value(st.charging.store(), &s).await?))
}

async fn delete_op(
    st: ApiState,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    back_office(&caller, "delete customers")?;
    let id = rest::path_id(id, "customer")?;
    tracing::Span::current().record("operation_id", id.as_str());
    rest::detached(async move {
        let store = st.charging.store();
        let first = rest::load(store, &caller, kind::CUSTOMER, &id, "customer").await?;
        let party = first.row.parent.clone().unwrap_or_default();
        let _locks = rest::lock_parties(&st, &[&party]).await?;
        let before = rest::load(store, &caller, kind::CUSTOMER, &id, "customer").await?;
        let (accounts, _) = store
            .resources(ResourceFilter {
                kind: Some(kind::BILLING_ACCOUNT.into()),
                state: Some(state::LIVE.into()),
                parent: Some(id.clone()),
                limit: 1,
                ..ResourceFilter::default()
            })
            .await
            .map_err(store_error)?;
        if let Some(a) = accounts.first() {
            return Err(TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "billing account {} names customer {id}: delete it first",
                    a.id
                ),
            ));
        }
        let keys = parties::current_keys(store, &before.row)
            .await
            .map_err(store_error)?;
        rest::delete(store, &before).await?;
        let now = crate::store::now_ms();
        claims::release_all(store, keys.iter().map(|k| &k.key), &id, now).await;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- handlers --------------------------------------------------------------------------------

/// Creates a customer of an individual (B2C) or an organization (B2B); its contacts are
/// claimed for it.
#[utoipa::path(
    post, path = "/tmf-api/customerManagement/v4/customer", tag = "tmf629",
    request_body(content = CustomerBody, content_type = "application/json"),
    responses((status = 201, description = "Created; its contacts are its own", body = CustomerBody,
        content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The customer's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_customer(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    body: TmfBody,
) -> Response {
    answer(create(st, caller, body).await)
}

/// The application's customers, newest first.
#[utoipa::path(
    get, path = "/tmf-api/customerManagement/v4/customer", tag = "tmf629",
    params(
        ("status" = Option<String>, Query, description = "initialized, approved, validated, suspended or closed"),
        ("name" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("engagedParty.id" = Option<String>, Query, description = "The individual or organization"),
        ("relatedParty.id" = Option<String>, Query, description = "A contact individual"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page", body = [CustomerBody],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_customers(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    uri: Uri,
) -> Response {
    answer(list(st, caller, Subject::customer_of(subject), uri).await)
}

/// One customer.
#[utoipa::path(
    get, path = "/tmf-api/customerManagement/v4/customer/{id}", tag = "tmf629",
    params(("id" = String, Path, description = "The customer's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return")),
    responses((status = 200, description = "The customer", body = CustomerBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_customer(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, caller, Subject::customer_of(subject), id, uri).await)
}

/// Changes a customer (merge patch or JSON Patch); its contact claims move with it.
#[utoipa::path(
    patch, path = "/tmf-api/customerManagement/v4/customer/{id}", tag = "tmf629",
    params(("id" = String, Path, description = "The customer's id")),
    request_body(content(
        (CustomerBody = "application/merge-patch+json"),
        (Vec<super::tmf663::input::JsonPatchOperation> = "application/json-patch+json"),
    )),
    responses((status = 200, description = "Changed", body = CustomerBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_customer(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Response {
    answer(patch_op(st, caller, Subject::customer_of(subject), id, body).await)
}

/// Deletes a customer no billing account names; its contacts are released.
#[utoipa::path(
    delete, path = "/tmf-api/customerManagement/v4/customer/{id}", tag = "tmf629",
    params(("id" = String, Path, description = "The customer's id")),
    responses((status = 204, description = "Deleted; its contacts free again")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_customer(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(delete_op(st, caller, id).await)
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// TMF629 Customer (create, answer, merge patch).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerBody {
    /// The gateway's (answers only).
    pub id: Option<String>,
    pub href: Option<String>,
    /// Default: the engaged party's name.
    pub name: Option<String>,
    /// initialized (default), approved, validated, suspended or closed.
    pub status: Option<String>,
    pub status_reason: Option<String>,
    /// Required: `{id, @referredType?}`, an Individual (B2C) or an Organization (B2B) of the
    /// application.
    #[schema(value_type = Object)]
    pub engaged_party: Value,
    /// The customer's own contacts (claimed for it, as its engaged party's are).
    pub contact_medium: Option<Vec<super::tmf632::ContactMedium>>,
    /// `{id, role: "contact", @referredType?: "Individual"}`: the individuals to talk to.
    #[schema(value_type = Option<Vec<Object>>)]
    pub related_party: Option<Vec<Value>>,
    /// The gateway's (answers only): the TMF666 billing accounts naming the customer.
    #[schema(value_type = Option<Vec<Object>>)]
    pub account: Option<Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub valid_for: Option<Value>,
}

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_customer,
        list_customers,
        retrieve_customer,
        patch_customer,
        delete_customer
    ),
    components(schemas(CustomerBody, TmfError)),
    modifiers(&TmfErrors)
)]
pub struct Tmf629Doc;

/// Statuses every TMF629 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (INVALID_ARGUMENT, the member named: engagedParty.id), an unknown \
         member, a party not of this application",
    ),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "The application's allowed_operations lacks customer (PERMISSION_DENIED)",
    ),
    ("404", "No such customer of this application (NOT_FOUND)"),
    (
        "409",
        "An email address or phone number is the contact of another customer (CONFLICT, the \
         member named), nothing kept; a billing account names it (INVALID_STATE, delete); \
         changed meanwhile (IN_PROGRESS)",
    ),
    (
        "413",
        "Body larger than http.max_body_bytes (PAYLOAD_TOO_LARGE)",
    ),
    ("415", "Content-Type not accepted (UNSUPPORTED_MEDIA_TYPE)"),
    ("500", "Gateway fault (INTERNAL): the store failed"),
];

struct TmfErrors;

impl Modify for TmfErrors {
    fn modify(&self, doc: &mut Doc) {
        tmf630::document_errors(doc, BASE, TMF_ERRORS);
    }
}
