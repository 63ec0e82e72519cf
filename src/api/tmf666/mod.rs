//! TMF666 Account Management v4: the billing accounts of TMF629 customers: the customer
//! billed (`relatedParty`, role `customer` or `owner`), how (`paymentMethod`: carrier billing
//! to a phone number), `accountType`, `state` and an exact `creditLimit`.
//!
//! ```text
//! POST   /tmf-api/accountManagement/v4/billingAccount        201 BillingAccount, Location
//! GET    /tmf-api/accountManagement/v4/billingAccount        200 [BillingAccount] newest first;
//!                                                            fields, offset, limit, state,
//!                                                            accountType, name, relatedParty.id
//! GET    /tmf-api/accountManagement/v4/billingAccount/{id}   200 BillingAccount
//! PATCH  /tmf-api/accountManagement/v4/billingAccount/{id}   200 (merge patch, JSON Patch;
//!                                                            compare-and-set)
//! DELETE /tmf-api/accountManagement/v4/billingAccount/{id}   204
//! ```
//!
//! The customer must be a live customer the caller sees; the account is then listed in the
//! customer's `account`. Another application's account is 404; administrators see all.

pub mod input;

#[cfg(test)]
mod tests;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi};

use super::auth::Caller;
use super::tmf630::{self, answer, json, page, query, select, store_error};
use super::tmf632::input::Target;
use super::tmf632::rest::{self, Filter};
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::tmf663::PatchBody;
use super::{ApiState, Route};
use crate::parties::{self, Stored, kind, prefix};
use crate::store::Store;

pub const BASE: &str = "/tmf-api/accountManagement/v4";
const ACCOUNTS: &str = "/tmf-api/accountManagement/v4/billingAccount";
const ACCOUNT: &str = "/tmf-api/accountManagement/v4/billingAccount/{id}";
/// The `allowed_operations` name of every billing account route.
pub const ACCOUNT_OPERATION: &str = "billing-account";

const FILTERS: &[Filter] = &[
    Filter {
        name: "state",
        path: &["state"],
    },
    Filter {
        name: "accountType",
        path: &["accountType"],
    },
    Filter {
        name: "name",
        path: &["name"],
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
        r(Method::POST, ACCOUNTS, post(create_account)),
        r(Method::GET, ACCOUNTS, get(list_accounts)),
        r(Method::GET, ACCOUNT, get(retrieve_account)),
        r(Method::PATCH, ACCOUNT, patch(patch_account)),
        r(Method::DELETE, ACCOUNT, delete(delete_account)),
    ]
}

pub fn href(id: &str) -> String {
    format!("{ACCOUNTS}/{id}")
}

fn permit(caller: &Caller) -> Result<(), TmfError> {
    rest::permit(caller, ACCOUNT_OPERATION, "billing accounts")
}

/// The account as served.
pub fn value(s: &Stored) -> Value {
    let mut v = rest::render(&s.doc, &s.row.id, &href(&s.row.id), "BillingAccount");
    if let Value::Object(m) = &mut v {
        m.insert(
            "lastModified".into(),
            Value::String(super::datetime::format_ms(s.row.updated_ms)),
        );
    }
    v
}

/// The draft's customer resolved: the document to store and the customer's id.
async fn resolve(
    store: &Store,
    caller: &Caller,
    draft: input::Draft,
) -> Result<(Map<String, Value>, String), TmfError> {
    let c = &draft.customer;
    let customer = rest::referenced(
        store,
        caller,
        kind::CUSTOMER,
        &c.id,
        "customer",
        "relatedParty[0].id",
    )
    .await?;
    let mut doc = draft.doc;
    let mut party = json!({"id": c.id, "href": super::tmf629::href(&c.id),
        "role": c.role.as_deref().unwrap_or("customer").to_ascii_lowercase(),
        "@referredType": "Customer"});
    if let Some(n) = customer.doc.get("name") {
        party["name"] = n.clone();
    }
    doc.insert("relatedParty".into(), Value::Array(vec![party]));
    Ok((doc, customer.row.id))
}

async fn create(st: ApiState, caller: Caller, body: TmfBody) -> Result<Response, TmfError> {
    permit(&caller)?;
    let v: Map<String, Value> = body.parse()?;
    let draft = input::read(&Value::Object(v), Target::Create)?;
    let id = parties::new_id(prefix::BILLING_ACCOUNT);
    tracing::Span::current().record("operation_id", id.as_str());
    let s = rest::detached(async move {
        let store = st.charging.store();
        let (doc, customer) = resolve(store, &caller, draft).await?;
        let now = crate::store::now_ms();
        let row = parties::row(
            caller.id(),
            kind::BILLING_ACCOUNT,
            &id,
            Some(&customer),
            &doc,
            now,
            now,
        );
        if !store
            .put_resource_if(row.clone(), None)
            .await
            .map_err(store_error)?
        {
            return Err(TmfError::internal("the new id was taken; retry"));
        }
        Ok(Stored { row, doc })
    })
    .await?;
    Ok(rest::created(&value(&s)))
}

async fn list(st: ApiState, caller: Caller, uri: Uri) -> Result<Response, TmfError> {
    permit(&caller)?;
    let (rows, total, keep) = rest::list(
        st.charging.store(),
        &caller,
        kind::BILLING_ACCOUNT,
        &uri,
        FILTERS,
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
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, "billing account")?;
    let q = query(&uri, &["fields"])?;
    let s = rest::load(
        st.charging.store(),
        &caller,
        kind::BILLING_ACCOUNT,
        &id,
        "billing account",
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &select(value(&s), tmf630::fields(&q).as_ref()),
    ))
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, "billing account")?;
    tracing::Span::current().record("operation_id", id.as_str());
    let s = rest::detached(async move {
        let store = st.charging.store();
        let before = rest::load(
            store,
            &caller,
            kind::BILLING_ACCOUNT,
            &id,
            "billing account",
        )
        .await?;
        let v = rest::patched(value(&before), &body)?;
        let href = href(&id);
        let draft = input::read(
            &v,
            Target::Update {
                id: &id,
                href: &href,
            },
        )?;
        let (doc, customer) = resolve(store, &caller, draft).await?;
        let row = rest::replacement(&before.row, &doc, Some(&customer));
        rest::replace(store, &before.row, row.clone()).await?;
        Ok(Stored { row, doc })
    })
    .await?;
    Ok(json(StatusCode::OK, &value(&s)))
}

async fn delete_op(
    st: ApiState,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = rest::path_id(id, "billing account")?;
    tracing::Span::current().record("operation_id", id.as_str());
    rest::detached(async move {
        let store = st.charging.store();
        let before = rest::load(
            store,
            &caller,
            kind::BILLING_ACCOUNT,
            &id,
            "billing account",
        )
        .await?;
        rest::delete(store, &before).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- handlers --------------------------------------------------------------------------------

/// Creates a billing account of a customer.
#[utoipa::path(
    post, path = "/tmf-api/accountManagement/v4/billingAccount", tag = "tmf666",
    request_body(content = BillingAccountBody, content_type = "application/json"),
    responses((status = 201, description = "Created", body = BillingAccountBody,
        content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The account's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_account(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    body: TmfBody,
) -> Response {
    answer(create(st, caller, body).await)
}

/// The application's billing accounts, newest first.
#[utoipa::path(
    get, path = "/tmf-api/accountManagement/v4/billingAccount", tag = "tmf666",
    params(
        ("state" = Option<String>, Query, description = "active, suspended or closed"),
        ("accountType" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("name" = Option<String>, Query, description = "Equal (ignoring ASCII case)"),
        ("relatedParty.id" = Option<String>, Query, description = "The customer"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page", body = [BillingAccountBody],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_accounts(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, caller, uri).await)
}

/// One billing account.
#[utoipa::path(
    get, path = "/tmf-api/accountManagement/v4/billingAccount/{id}", tag = "tmf666",
    params(("id" = String, Path, description = "The account's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return")),
    responses((status = 200, description = "The account", body = BillingAccountBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_account(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, caller, id, uri).await)
}

/// Changes a billing account (merge patch or JSON Patch).
#[utoipa::path(
    patch, path = "/tmf-api/accountManagement/v4/billingAccount/{id}", tag = "tmf666",
    params(("id" = String, Path, description = "The account's id")),
    request_body(content(
        (BillingAccountBody = "application/merge-patch+json"),
        (Vec<super::tmf663::input::JsonPatchOperation> = "application/json-patch+json"),
    )),
    responses((status = 200, description = "Changed", body = BillingAccountBody,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_account(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Response {
    answer(patch_op(st, caller, id, body).await)
}

/// Deletes a billing account.
#[utoipa::path(
    delete, path = "/tmf-api/accountManagement/v4/billingAccount/{id}", tag = "tmf666",
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 204, description = "Deleted")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_account(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(delete_op(st, caller, id).await)
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// TMF666 BillingAccount (create, answer, merge patch).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingAccountBody {
    /// The gateway's (answers only).
    pub id: Option<String>,
    pub href: Option<String>,
    /// Required.
    pub name: String,
    pub account_type: Option<String>,
    pub description: Option<String>,
    /// active (default), suspended or closed.
    pub state: Option<String>,
    /// Required, exactly one: `{id: "<customer id>", role: "customer" | "owner",
    /// @referredType?: "Customer"}`.
    #[schema(value_type = Vec<Object>)]
    pub related_party: Vec<Value>,
    /// At most 5: `{phoneNumber: "+34600000001", @referredType?: "CarrierBilling", name?}`;
    /// the id is the gateway's (`carrier-billing-34600000001`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub payment_method: Option<Vec<Value>>,
    /// `{unit: "EUR", value: 150.00}`: exact, 0 to 1e12, at most 4 decimals.
    #[schema(value_type = Option<Object>)]
    pub credit_limit: Option<Value>,
    /// The gateway's (answers only): RFC 3339.
    pub last_modified: Option<String>,
}

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(create_account, list_accounts, retrieve_account, patch_account, delete_account),
    components(schemas(BillingAccountBody, TmfError)),
    modifiers(&TmfErrors)
)]
pub struct Tmf666Doc;

/// Statuses every TMF666 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (INVALID_ARGUMENT, the member named: creditLimit.value), an unknown \
         member, a customer not of this application",
    ),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "The application's allowed_operations lacks billing-account (PERMISSION_DENIED)",
    ),
    (
        "404",
        "No such billing account of this application (NOT_FOUND)",
    ),
    ("409", "Changed meanwhile (IN_PROGRESS): read it and retry"),
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
