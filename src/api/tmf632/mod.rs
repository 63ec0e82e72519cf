//! TMF632 Party Management v4: the individuals and organizations of the digital sales
//! channel, the parties a TMF629 customer engages (B2C: an individual; B2B: an organization,
//! with individuals as its contacts). The rows, and the claims that make an email address or
//! an MSISDN the contact of one customer, are in [`crate::parties`]; what TMF629 and TMF666
//! share with this family is in [`rest`] and [`input`].
//!
//! ```text
//! POST   /tmf-api/partyManagement/v4/individual        201 Individual, Location
//! GET    /tmf-api/partyManagement/v4/individual        200 [Individual] newest first; fields,
//!                                                      offset, limit, givenName, familyName,
//!                                                      status, email, phoneNumber
//! GET    /tmf-api/partyManagement/v4/individual/{id}   200 Individual
//! PATCH  /tmf-api/partyManagement/v4/individual/{id}   200 Individual (merge patch, JSON Patch)
//! DELETE /tmf-api/partyManagement/v4/individual/{id}   204; 409 while a customer engages it
//! ... the same for /organization (filters: name, tradingName, organizationType, status, email,
//!     phoneNumber)
//! ```
//!
//! A PATCH that changes the contact media of a party engaged by customers moves their
//! claims: the new contacts claimed first (a lost one: 409, nothing kept), then the party
//! written (compare-and-set), then the contacts it no longer has released; all under the
//! party's lock (across instances). Another application's party, a deleted one and an
//! unknown id are all 404; administrators see every application's.

pub mod input;
pub mod rest;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::{Map, Value};
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi};

use super::auth::Caller;
use super::tmf630::{self, answer, json, page, query, select, store_error};
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::tmf663::PatchBody;
use super::{ApiState, Route};
use crate::parties::{self, Key, Keyed, claims, kind, prefix, state};
use crate::store::{ResourceFilter, Store};
use input::Target;
use rest::Filter;

pub const BASE: &str = "/tmf-api/partyManagement/v4";
const INDIVIDUALS: &str = "/tmf-api/partyManagement/v4/individual";
const INDIVIDUAL: &str = "/tmf-api/partyManagement/v4/individual/{id}";
const ORGANIZATIONS: &str = "/tmf-api/partyManagement/v4/organization";
const ORGANIZATION: &str = "/tmf-api/partyManagement/v4/organization/{id}";
/// The `allowed_operations` name of every party route.
pub const PARTY_OPERATION: &str = "party";
/// Most customers one party may be engaged by whose claims a change moves.
const MAX_ENGAGED: usize = 100;

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, INDIVIDUALS, post(create_individual)),
        r(Method::GET, INDIVIDUALS, get(list_individuals)),
        r(Method::GET, INDIVIDUAL, get(retrieve_individual)),
        r(Method::PATCH, INDIVIDUAL, patch(patch_individual)),
        r(Method::DELETE, INDIVIDUAL, delete(delete_individual)),
        r(Method::POST, ORGANIZATIONS, post(create_organization)),
        r(Method::GET, ORGANIZATIONS, get(list_organizations)),
        r(Method::GET, ORGANIZATION, get(retrieve_organization)),
        r(Method::PATCH, ORGANIZATION, patch(patch_organization)),
        r(Method::DELETE, ORGANIZATION, delete(delete_organization)),
    ]
}

/// A body reader of [`input`].
type Reader = fn(&Value, Target<'_>) -> Result<Map<String, Value>, TmfError>;

/// One of the two party resources.
#[derive(Clone, Copy)]
struct Spec {
    kind: &'static str,
    prefix: &'static str,
    what: &'static str,
    read: Reader,
    filters: &'static [Filter],
}

const EMAIL: Filter = Filter {
    name: "email",
    path: &["contactMedium", "characteristic", "emailAddress"],
};
const PHONE: Filter = Filter {
    name: "phoneNumber",
    path: &["contactMedium", "characteristic", "phoneNumber"],
};

const INDIVIDUAL_SPEC: Spec = Spec {
    kind: kind::INDIVIDUAL,
    prefix: prefix::INDIVIDUAL,
    what: "individual",
    read: input::individual,
    filters: &[
        Filter {
            name: "givenName",
            path: &["givenName"],
        },
        Filter {
            name: "familyName",
            path: &["familyName"],
        },
        Filter {
            name: "status",
            path: &["status"],
        },
        EMAIL,
        PHONE,
    ],
};

const ORGANIZATION_SPEC: Spec = Spec {
    kind: kind::ORGANIZATION,
    prefix: prefix::ORGANIZATION,
    what: "organization",
    read: input::organization,
    filters: &[
        Filter {
            name: "name",
            path: &["name"],
        },
        Filter {
            name: "tradingName",
            path: &["tradingName"],
        },
        Filter {
            name: "organizationType",
            path: &["organizationType"],
        },
        Filter {
            name: "status",
            path: &["status"],
        },
        EMAIL,
        PHONE,
    ],
};

/// The href of individual or organization `id`.
pub fn href(id: &str) -> String {
    let base = if id.starts_with(prefix::ORGANIZATION) {
        ORGANIZATIONS
    } else {
        INDIVIDUALS
    };
    format!("{base}/{id}")
}

/// The party as served.
pub fn value(s: &parties::Stored) -> Value {
    let ty = if s.row.kind == kind::ORGANIZATION {
        "Organization"
    } else {
        "Individual"
    };
    rest::render(&s.doc, &s.row.id, &href(&s.row.id), ty)
}

fn permit(caller: &Caller) -> Result<(), TmfError> {
    rest::permit(caller, PARTY_OPERATION, "parties")
}

async fn create(
    st: ApiState,
    caller: Caller,
    spec: Spec,
    body: TmfBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let v: Map<String, Value> = body.parse()?;
    let doc = (spec.read)(&Value::Object(v), Target::Create)?;
    let id = parties::new_id(spec.prefix);
    tracing::Span::current().record("operation_id", id.as_str());
    let now = crate::store::now_ms();
    let row = parties::row(caller.id(), spec.kind, &id, None, &doc, now, now);
    let stored = parties::Stored {
        row: row.clone(),
        doc,
    };
    let store = st.charging.store().clone();
    rest::detached(async move {
        if store
            .put_resource_if(row, None)
            .await
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(TmfError::internal("the new id was taken; retry"))
        }
    })
    .await?;
    Ok(rest::created(&value(&stored)))
}

async fn list(st: ApiState, caller: Caller, spec: Spec, uri: Uri) -> Result<Response, TmfError> {
    permit(&caller)?;
    let (rows, total, keep) = rest::list(
        st.charging.store(),
        &caller,
        spec.kind,
        &uri,
        spec.filters,
        None,
    )
    .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|s| select(value(s), keep.as_ref()))
        .collect();
    Ok(page(&items, total))
}

async fn retrieve(
    st: ApiState,
    caller: Caller,
    spec: Spec,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, spec.what)?;
    let q = query(&uri, &["fields"])?;
    let s = rest::load(st.charging.store(), &caller, spec.kind, &id, spec.what).await?;
    Ok(json(
        StatusCode::OK,
        &select(value(&s), tmf630::fields(&q).as_ref()),
    ))
}

/// The live customers engaging party `id`.
async fn engaged(store: &Store, id: &str) -> Result<(Vec<parties::Stored>, usize), TmfError> {
    let (rows, total) = store
        .resources(ResourceFilter {
            kind: Some(kind::CUSTOMER.into()),
            state: Some(state::LIVE.into()),
            parent: Some(id.to_string()),
            limit: MAX_ENGAGED,
            ..ResourceFilter::default()
        })
        .await
        .map_err(store_error)?;
    let rows = rows
        .into_iter()
        .map(|r| parties::decode(r).map_err(store_error))
        .collect::<Result<_, _>>()?;
    Ok((rows, total))
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    spec: Spec,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, spec.what)?;
    tracing::Span::current().record("operation_id", id.as_str());
    let s = rest::detached(async move {
        let _locks = rest::lock_parties(&st, &[&id]).await?;
        let store = st.charging.store();
        let before = rest::load(store, &caller, spec.kind, &id, spec.what).await?;
        let v = rest::patched(value(&before), &body)?;
        let href = href(&id);
        let doc = (spec.read)(
            &v,
            Target::Update {
                id: &id,
                href: &href,
            },
        )?;
        let (customers, total) = engaged(store, &id).await?;
        if total > customers.len() {
            return Err(TmfError::conflict(
                "INVALID_STATE",
                format!("party {id} is engaged by more than {MAX_ENGAGED} customers"),
            ));
        }
        let now = crate::store::now_ms();
        // Each customer's new contacts claimed first; on a lost one, those made released.
        let mut made: Vec<(String, Vec<Key>)> = Vec::new();
        let mut gone: Vec<(String, Vec<Key>)> = Vec::new();
        for c in &customers {
            let old = parties::customer_keys(&c.doc, Some(&before.doc));
            let new = parties::customer_keys(&c.doc, Some(&doc));
            let fresh: Vec<Keyed> = new
                .iter()
                .filter(|k| !old.iter().any(|o| o.key == k.key))
                .map(|k| Keyed {
                    key: k.key.clone(),
                    field: k.field.trim_start_matches("engagedParty.").to_string(),
                })
                .collect();
            let out = claims::claim_all(store, &fresh, &c.row.app, &c.row.id, &id, now).await;
            match out {
                Ok(Ok(keys)) => made.push((c.row.id.clone(), keys)),
                Ok(Err(lost)) => {
                    release(store, &made, now).await;
                    return Err(rest::conflict(&lost));
                }
                Err(e) => {
                    release(store, &made, now).await;
                    return Err(store_error(e));
                }
            }
            let left: Vec<Key> = old
                .into_iter()
                .filter(|o| !new.iter().any(|k| k.key == o.key))
                .map(|o| o.key)
                .collect();
            gone.push((c.row.id.clone(), left));
        }
        let row = rest::replacement(&before.row, &doc, None);
        if let Err(e) = rest::replace(store, &before.row, row.clone()).await {
            release(store, &made, now).await;
            return Err(e);
        }
        release(store, &gone, now).await;
        Ok(parties::Stored { row, doc })
    })
    .await?;
    Ok(json(StatusCode::OK, &value(&s)))
}

async fn release(store: &Store, keys: &[(String, Vec<Key>)], now: i64) {
    for (customer, keys) in keys {
        claims::release_all(store, keys.iter(), customer, now).await;
    }
}

async fn delete_op(
    st: ApiState,
    caller: Caller,
    spec: Spec,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, spec.what)?;
    tracing::Span::current().record("operation_id", id.as_str());
    rest::detached(async move {
        let _locks = rest::lock_parties(&st, &[&id]).await?;
        let store = st.charging.store();
        let before = rest::load(store, &caller, spec.kind, &id, spec.what).await?;
        let (customers, _) = engaged(store, &id).await?;
        if let Some(c) = customers.first() {
            return Err(TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "{} {id} is the engaged party of customer {}: delete the customer first",
                    spec.what, c.row.id
                ),
            ));
        }
        rest::delete(store, &before).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- handlers --------------------------------------------------------------------------------

/// Creates an individual.
#[utoipa::path(
    post, path = "/tmf-api/partyManagement/v4/individual", tag = "tmf632",
    request_body(content = IndividualBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = IndividualBody,
        content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The individual's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_individual(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    body: TmfBody,
) -> Response {
    answer(create(st, caller, INDIVIDUAL_SPEC, body).await)
}

/// The application's individuals, newest first.
#[utoipa::path(
    get, path = "/tmf-api/partyManagement/v4/individual", tag = "tmf632",
    params(
        ("givenName" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("familyName" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("status" = Option<String>, Query, description = "initialized, validated or deceased"),
        ("email" = Option<String>, Query, description = "An email address of its contactMedium"),
        ("phoneNumber" = Option<String>, Query, description = "A phone number of its contactMedium (+E.164)"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page", body = [IndividualBody],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_individuals(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, caller, INDIVIDUAL_SPEC, uri).await)
}

/// One individual.
#[utoipa::path(
    get, path = "/tmf-api/partyManagement/v4/individual/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The individual's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return")),
    responses((status = 200, description = "The individual", body = IndividualBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_individual(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, caller, INDIVIDUAL_SPEC, id, uri).await)
}

/// Changes an individual (merge patch or JSON Patch); its customers' contact claims move.
#[utoipa::path(
    patch, path = "/tmf-api/partyManagement/v4/individual/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The individual's id")),
    request_body(content(
        (IndividualBody = "application/merge-patch+json"),
        (Vec<super::tmf663::input::JsonPatchOperation> = "application/json-patch+json"),
    )),
    responses((status = 200, description = "Changed", body = IndividualBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_individual(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Response {
    answer(patch_op(st, caller, INDIVIDUAL_SPEC, id, body).await)
}

/// Deletes an individual no customer engages.
#[utoipa::path(
    delete, path = "/tmf-api/partyManagement/v4/individual/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The individual's id")),
    responses((status = 204, description = "Deleted")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_individual(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(delete_op(st, caller, INDIVIDUAL_SPEC, id).await)
}

/// Creates an organization.
#[utoipa::path(
    post, path = "/tmf-api/partyManagement/v4/organization", tag = "tmf632",
    request_body(content = OrganizationBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = OrganizationBody,
        content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The organization's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_organization(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    body: TmfBody,
) -> Response {
    answer(create(st, caller, ORGANIZATION_SPEC, body).await)
}

/// The application's organizations, newest first.
#[utoipa::path(
    get, path = "/tmf-api/partyManagement/v4/organization", tag = "tmf632",
    params(
        ("name" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("tradingName" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("organizationType" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("status" = Option<String>, Query, description = "initialized, validated or closed"),
        ("email" = Option<String>, Query, description = "An email address of its contactMedium"),
        ("phoneNumber" = Option<String>, Query, description = "A phone number of its contactMedium (+E.164)"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page", body = [OrganizationBody],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_organizations(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, caller, ORGANIZATION_SPEC, uri).await)
}

/// One organization.
#[utoipa::path(
    get, path = "/tmf-api/partyManagement/v4/organization/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The organization's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return")),
    responses((status = 200, description = "The organization", body = OrganizationBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_organization(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, caller, ORGANIZATION_SPEC, id, uri).await)
}

/// Changes an organization (merge patch or JSON Patch); its customers' contact claims move.
#[utoipa::path(
    patch, path = "/tmf-api/partyManagement/v4/organization/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The organization's id")),
    request_body(content(
        (OrganizationBody = "application/merge-patch+json"),
        (Vec<super::tmf663::input::JsonPatchOperation> = "application/json-patch+json"),
    )),
    responses((status = 200, description = "Changed", body = OrganizationBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_organization(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Response {
    answer(patch_op(st, caller, ORGANIZATION_SPEC, id, body).await)
}

/// Deletes an organization no customer engages.
#[utoipa::path(
    delete, path = "/tmf-api/partyManagement/v4/organization/{id}", tag = "tmf632",
    params(("id" = String, Path, description = "The organization's id")),
    responses((status = 204, description = "Deleted")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_organization(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(delete_op(st, caller, ORGANIZATION_SPEC, id).await)
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// TMF632 Individual (create, answer, merge patch).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndividualBody {
    /// The gateway's (answers only).
    pub id: Option<String>,
    pub href: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub full_name: Option<String>,
    pub formatted_name: Option<String>,
    pub preferred_given_name: Option<String>,
    pub title: Option<String>,
    pub gender: Option<String>,
    pub nationality: Option<String>,
    pub country_of_birth: Option<String>,
    pub place_of_birth: Option<String>,
    /// A date (1990-04-01) or an RFC 3339 date-time.
    pub birth_date: Option<String>,
    pub death_date: Option<String>,
    /// initialized (default), validated or deceased.
    pub status: Option<String>,
    /// At most 10.
    pub contact_medium: Option<Vec<ContactMedium>>,
}

/// TMF632 Organization (create, answer, merge patch).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationBody {
    pub id: Option<String>,
    pub href: Option<String>,
    /// Required.
    pub name: String,
    pub trading_name: Option<String>,
    pub name_type: Option<String>,
    pub organization_type: Option<String>,
    pub is_legal_entity: Option<bool>,
    pub is_head_office: Option<bool>,
    /// initialized (default), validated or closed.
    pub status: Option<String>,
    /// The organization's own contacts (those of a B2B customer).
    pub contact_medium: Option<Vec<ContactMedium>>,
}

/// A contact medium: `{mediumType: email, characteristic: {emailAddress}}`, `{mediumType:
/// mobile | phone | sms, characteristic: {phoneNumber: "+34600000001"}}` or `{mediumType:
/// postalAddress, characteristic: {street1, street2, city, postCode, stateOrProvince,
/// country}}`. The email addresses and phone numbers of a customer's contacts are its alone.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactMedium {
    pub medium_type: String,
    pub preferred: Option<bool>,
    #[schema(value_type = Object)]
    pub characteristic: Value,
    #[schema(value_type = Option<Object>)]
    pub valid_for: Option<Value>,
}

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_individual,
        list_individuals,
        retrieve_individual,
        patch_individual,
        delete_individual,
        create_organization,
        list_organizations,
        retrieve_organization,
        patch_organization,
        delete_organization,
    ),
    components(schemas(IndividualBody, OrganizationBody, ContactMedium, TmfError)),
    modifiers(&TmfErrors)
)]
pub struct Tmf632Doc;

/// Statuses every TMF632 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (INVALID_ARGUMENT, the member named: contactMedium[0].characteristic.\
         phoneNumber), an unknown member",
    ),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "The application's allowed_operations lacks party (PERMISSION_DENIED)",
    ),
    ("404", "No such party of this application (NOT_FOUND)"),
    (
        "409",
        "A contact of the change is another customer's (CONFLICT), nothing kept; the party \
         is engaged by a customer (INVALID_STATE, delete); changed meanwhile (IN_PROGRESS)",
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
