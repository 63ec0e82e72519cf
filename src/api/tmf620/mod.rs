//! TMF620 Product Catalog Management v4, read side (API.md 7.1): the catalog the gateway
//! sells from, imported from a JSON file into the store ([`catalog`]) and served to every
//! authenticated application.
//!
//! ```text
//! GET /tmf-api/productCatalogManagement/v4/productOffering[/{id}]
//! GET /tmf-api/productCatalogManagement/v4/productOfferingPrice[/{id}]
//! GET /tmf-api/productCatalogManagement/v4/category[/{id}]
//! GET /tmf-api/productCatalogManagement/v4/productSpecification[/{id}]
//!   ?fields=a,b          top-level attributes to return (id and href always)
//!   ?offset=0&limit=100  paging (limit 1 to 1000); X-Total-Count (all that match),
//!                        X-Result-Count (in this answer)
//!   ?name=value          attribute filters, exact match, ANDed ([`catalog::Kind::filters`]:
//!                        lifecycleStatus=Launched, isSellable=true, category.id=c1, ...);
//!                        any other parameter: 400 naming it
//! ```
//!
//! Errors are TMF Error bodies (the TMF654 [`TmfError`]): 400 INVALID_ARGUMENT (the parameter
//! named), 401 UNAUTHENTICATED, 404 NOT_FOUND (unknown or retired id), 500 INTERNAL (store).
//! Documents are served as imported (numbers as written), `href` set by the gateway.

pub mod catalog;
pub mod upstream;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use self::catalog::{BASE, Kind, Scalar};
use super::error::clip;
use super::tmf630::{answer, json, number, param};
use super::tmf654::TmfCaller;
use super::tmf654::error::{MEDIA_TYPE, TmfError};
use super::{Access, ApiState, Route};

/// Most entries one listing returns.
pub const MAX_LIMIT: usize = 1000;
/// Entries a listing returns without `limit`.
pub const DEFAULT_LIMIT: usize = 100;

const OFFERINGS: &str = "/tmf-api/productCatalogManagement/v4/productOffering";
const OFFERING: &str = "/tmf-api/productCatalogManagement/v4/productOffering/{id}";
const PRICES: &str = "/tmf-api/productCatalogManagement/v4/productOfferingPrice";
const PRICE: &str = "/tmf-api/productCatalogManagement/v4/productOfferingPrice/{id}";
const CATEGORIES: &str = "/tmf-api/productCatalogManagement/v4/category";
const CATEGORY: &str = "/tmf-api/productCatalogManagement/v4/category/{id}";
const SPECS: &str = "/tmf-api/productCatalogManagement/v4/productSpecification";
const SPEC: &str = "/tmf-api/productCatalogManagement/v4/productSpecification/{id}";

/// The family's routes, for [`super::routes`]; the handlers authenticate ([`TmfCaller`]).
pub fn routes() -> Vec<Route> {
    let r = |path, handler| Route {
        method: Method::GET,
        path,
        access: Access::Family,
        handler,
    };
    vec![
        r(OFFERINGS, get(list_product_offerings)),
        r(OFFERING, get(retrieve_product_offering)),
        r(PRICES, get(list_product_offering_prices)),
        r(PRICE, get(retrieve_product_offering_price)),
        r(CATEGORIES, get(list_categories)),
        r(CATEGORY, get(retrieve_category)),
        r(SPECS, get(list_product_specifications)),
        r(SPEC, get(retrieve_product_specification)),
    ]
}

// ---- the listing conventions (TMF630) --------------------------------------------------------

fn store_error(e: crate::store::StoreError) -> TmfError {
    TmfError::internal(format!("the catalog could not be read: {e}"))
}

/// The query's pairs, each given once.
fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, TmfError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| TmfError::invalid("query", e.body_text()))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(j, _)| j == k) {
            return Err(TmfError::invalid(&clip(k), "given twice"));
        }
    }
    Ok(pairs)
}

/// `fields=a,b`: the top-level attributes kept (besides `id` and `href`).
fn fields(pairs: &[(String, String)]) -> Result<Option<HashSet<String>>, TmfError> {
    let Some(f) = param(pairs, "fields") else {
        return Ok(None);
    };
    let keep: HashSet<String> = f
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(nested) = keep.iter().find(|k| k.contains('.')) {
        return Err(TmfError::invalid(
            "fields",
            format!(
                "\"{}\": only top-level attributes can be selected",
                clip(nested)
            ),
        ));
    }
    Ok(Some(keep))
}

fn select(doc: Map<String, Value>, keep: Option<&HashSet<String>>) -> Map<String, Value> {
    match keep {
        None => doc,
        Some(keep) => doc
            .into_iter()
            .filter(|(k, _)| keep.contains(k) || k == "id" || k == "href")
            .collect(),
    }
}

/// One attribute filter: the attribute path and the value asked for.
struct Filter {
    path: Vec<String>,
    want: Want,
}

enum Want {
    Text(String),
    Bool(bool),
    Number(Decimal),
}

/// The attribute filters of a listing of `kind`; a parameter that is not one is refused.
fn filters(kind: Kind, pairs: &[(String, String)]) -> Result<Vec<Filter>, TmfError> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        if matches!(k.as_str(), "fields" | "offset" | "limit") {
            continue;
        }
        let Some((_, scalar)) = kind.filters().iter().find(|(name, _)| name == k) else {
            let known: Vec<&str> = kind.filters().iter().map(|(n, _)| *n).collect();
            return Err(TmfError::invalid(
                &clip(k),
                format!(
                    "this filter cannot be applied to {} (filters: {}; and fields, offset, limit)",
                    kind.type_name(),
                    known.join(", ")
                ),
            ));
        };
        let want = match scalar {
            Scalar::Text => Want::Text(v.clone()),
            Scalar::Bool => match v.as_str() {
                "true" => Want::Bool(true),
                "false" => Want::Bool(false),
                _ => {
                    return Err(TmfError::invalid(
                        k,
                        format!("\"{}\": true or false", clip(v)),
                    ));
                }
            },
            Scalar::Number => match v.parse::<Decimal>() {
                Ok(d) => Want::Number(d),
                Err(_) => {
                    return Err(TmfError::invalid(
                        k,
                        format!("\"{}\" is not a number", clip(v)),
                    ));
                }
            },
        };
        out.push(Filter {
            path: k.split('.').map(str::to_string).collect(),
            want,
        });
    }
    Ok(out)
}

fn matches_value(v: &Value, want: &Want) -> bool {
    match (v, want) {
        (Value::String(s), Want::Text(w)) => s == w,
        (Value::Bool(b), Want::Bool(w)) => b == w,
        (Value::Number(n), Want::Number(w)) => catalog::decimal(n).is_some_and(|d| d == *w),
        _ => false,
    }
}

/// Whether the value at `path` (into objects, and into each element of an array) matches.
fn matches_path(v: &Value, path: &[String], want: &Want) -> bool {
    match (v, path.split_first()) {
        (Value::Array(items), _) => items.iter().any(|i| matches_path(i, path, want)),
        (Value::Object(m), Some((first, rest))) => m
            .get(first)
            .is_some_and(|inner| matches_path(inner, rest, want)),
        (_, None) => matches_value(v, want),
        _ => false,
    }
}

fn matches(doc: &Map<String, Value>, filters: &[Filter]) -> bool {
    filters.iter().all(|f| match f.path.split_first() {
        Some((first, rest)) => doc
            .get(first)
            .is_some_and(|v| matches_path(v, rest, &f.want)),
        None => false,
    })
}

async fn list(st: ApiState, kind: Kind, uri: Uri) -> Result<Response, TmfError> {
    let q = pairs(&uri)?;
    let offset = number(&q, "offset")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(TmfError::invalid(
            "limit",
            format!("1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
        ));
    }
    let keep = fields(&q)?;
    let filters = filters(kind, &q)?;
    let all = catalog::list(st.charging.store(), kind)
        .await
        .map_err(store_error)?;
    let matching: Vec<Map<String, Value>> =
        all.into_iter().filter(|d| matches(d, &filters)).collect();
    let total = matching.len();
    let items: Vec<Map<String, Value>> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|d| select(d, keep.as_ref()))
        .collect();
    let mut res = json(StatusCode::OK, &items);
    let h = res.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    h.insert("x-result-count", HeaderValue::from(items.len()));
    Ok(res)
}

async fn retrieve(
    st: ApiState,
    kind: Kind,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, TmfError> {
    let Path(id) = id.map_err(|e| TmfError::invalid("id", e.body_text()))?;
    let q = pairs(&uri)?;
    if let Some((k, _)) = q.iter().find(|(k, _)| k != "fields") {
        return Err(TmfError::invalid(
            &clip(k),
            "unsupported query parameter (supported: fields)",
        ));
    }
    let keep = fields(&q)?;
    let not_found = || TmfError::not_found(format!("no {} \"{}\"", kind.type_name(), clip(&id)));
    if !catalog::valid_id(&id) {
        return Err(not_found());
    }
    let doc = catalog::get(st.charging.store(), kind, &id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    Ok(json(StatusCode::OK, &select(doc, keep.as_ref())))
}

// ---- handlers --------------------------------------------------------------------------------

/// Product offerings (what can be sold), oldest import first.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productOffering", tag = "tmf620",
    params(
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return (id and href always)"),
        ("lifecycleStatus" = Option<String>, Query, description = "Exact match, e.g. Launched"),
        ("isSellable" = Option<bool>, Query, description = "true or false"),
        ("category.id" = Option<String>, Query, description = "Offerings in this category"),
        ("name" = Option<String>, Query, description = "Exact match. Also: id, version, isBundle, @type, category.name, productSpecification.id, productOfferingPrice.id, channel.id, resourceCandidate.id"),
    ),
    responses((status = 200, description = "The matching offerings", body = [ProductOffering],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_product_offerings(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, Kind::ProductOffering, uri).await)
}

/// One product offering.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productOffering/{id}", tag = "tmf620",
    params(
        ("id" = String, Path, description = "The offering's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return"),
    ),
    responses((status = 200, description = "The offering", body = ProductOffering,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_product_offering(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, Kind::ProductOffering, id, uri).await)
}

/// Product offering prices (one-time, recurring, usage), with exact amounts.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productOfferingPrice", tag = "tmf620",
    params(
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return (id and href always)"),
        ("priceType" = Option<String>, Query, description = "Exact match: oneTime, recurring, usage"),
        ("price.unit" = Option<String>, Query, description = "ISO 4217 code. Also: id, name, version, lifecycleStatus, recurringChargePeriodType, recurringChargePeriodLength, isBundle, @type, price.value (compared as decimals)"),
    ),
    responses((status = 200, description = "The matching prices", body = [ProductOfferingPrice],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_product_offering_prices(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, Kind::ProductOfferingPrice, uri).await)
}

/// One product offering price.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productOfferingPrice/{id}", tag = "tmf620",
    params(
        ("id" = String, Path, description = "The price's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return"),
    ),
    responses((status = 200, description = "The price", body = ProductOfferingPrice,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_product_offering_price(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, Kind::ProductOfferingPrice, id, uri).await)
}

/// Categories of the catalog.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/category", tag = "tmf620",
    params(
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return (id and href always)"),
        ("isRoot" = Option<bool>, Query, description = "true or false. Also: id, name, version, lifecycleStatus, parentId, @type"),
    ),
    responses((status = 200, description = "The matching categories", body = [Category],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_categories(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, Kind::Category, uri).await)
}

/// One category.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/category/{id}", tag = "tmf620",
    params(
        ("id" = String, Path, description = "The category's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return"),
    ),
    responses((status = 200, description = "The category", body = Category,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_category(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, Kind::Category, id, uri).await)
}

/// Product specifications (what an offering delivers, e.g. the MSISDN and ICCID it needs).
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productSpecification", tag = "tmf620",
    params(
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return (id and href always)"),
        ("resourceSpecification.id" = Option<String>, Query, description = "Specifications needing this resource. Also: id, name, version, lifecycleStatus, isBundle, brand, productNumber, @type"),
    ),
    responses((status = 200, description = "The matching specifications", body = [ProductSpecification],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_product_specifications(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, Kind::ProductSpecification, uri).await)
}

/// One product specification.
#[utoipa::path(
    get, path = "/tmf-api/productCatalogManagement/v4/productSpecification/{id}", tag = "tmf620",
    params(
        ("id" = String, Path, description = "The specification's id"),
        ("fields" = Option<String>, Query, description = "Comma-separated top-level attributes to return"),
    ),
    responses((status = 200, description = "The specification", body = ProductSpecification,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_product_specification(
    State(st): State<ApiState>,
    _caller: TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, Kind::ProductSpecification, id, uri).await)
}

// ---- OpenAPI ---------------------------------------------------------------------------------
// The schemas below document the attributes the gateway uses; documents are served as
// imported, so any other TMF620 attribute they carry is served too.

/// A reference to another entry (`href` set by the gateway for entries of this catalog).
#[derive(Serialize, ToSchema)]
pub struct EntityRef {
    pub id: String,
    pub href: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "@referredType")]
    pub referred_type: Option<String>,
}

/// TMF Money: `value` an exact JSON number as imported, `unit` ISO 4217.
#[derive(Serialize, ToSchema)]
pub struct Money {
    #[schema(value_type = f64, example = 9.99)]
    pub value: String,
    #[schema(example = "EUR")]
    pub unit: String,
}

/// `{startDateTime, endDateTime}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimePeriod {
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOffering {
    pub id: String,
    pub href: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub is_sellable: Option<bool>,
    pub is_bundle: Option<bool>,
    /// Free text, e.g. `Launched`.
    pub lifecycle_status: Option<String>,
    pub valid_for: Option<TimePeriod>,
    pub product_offering_price: Option<Vec<EntityRef>>,
    pub product_specification: Option<EntityRef>,
    pub category: Option<Vec<EntityRef>>,
    pub channel: Option<Vec<EntityRef>>,
    /// E.g. the MSISDN resource an offering comes with.
    #[schema(value_type = Option<Object>)]
    pub resource_candidate: Option<Value>,
    pub bundled_product_offering: Option<Vec<EntityRef>>,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOfferingPrice {
    pub id: String,
    pub href: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `oneTime`, `recurring`, `usage`, ...
    pub price_type: Option<String>,
    pub price: Money,
    /// E.g. `month`.
    pub recurring_charge_period_type: Option<String>,
    pub recurring_charge_period_length: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub unit_of_measure: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tax: Option<Vec<Value>>,
    pub lifecycle_status: Option<String>,
    pub valid_for: Option<TimePeriod>,
    pub is_bundle: Option<bool>,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    pub id: String,
    pub href: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_root: Option<bool>,
    pub parent_id: Option<String>,
    pub lifecycle_status: Option<String>,
    pub sub_category: Option<Vec<EntityRef>>,
    pub product_offering: Option<Vec<EntityRef>>,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductSpecification {
    pub id: String,
    pub href: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub product_number: Option<String>,
    pub is_bundle: Option<bool>,
    pub lifecycle_status: Option<String>,
    /// The resources a product of it needs (e.g. an MSISDN and an ICCID, TMF639).
    pub resource_specification: Option<Vec<EntityRef>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub product_spec_characteristic: Option<Vec<Value>>,
    #[serde(rename = "@type")]
    pub kind: String,
}

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        list_product_offerings,
        retrieve_product_offering,
        list_product_offering_prices,
        retrieve_product_offering_price,
        list_categories,
        retrieve_category,
        list_product_specifications,
        retrieve_product_specification,
    ),
    components(schemas(
        ProductOffering,
        ProductOfferingPrice,
        Category,
        ProductSpecification,
        EntityRef,
        Money,
        TimePeriod,
        TmfError,
    )),
    modifiers(&TmfErrors)
)]
pub struct Tmf620Doc;

/// Statuses every TMF620 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "A query parameter is invalid, or names a filter that cannot be applied \
         (INVALID_ARGUMENT, the parameter named)",
    ),
    (
        "401",
        "Authentication required (UNAUTHENTICATED): any application of [[apps]] may read the \
         catalog",
    ),
    (
        "404",
        "No such entry (NOT_FOUND): unknown, or retired by the last import",
    ),
    ("500", "The store could not be read (INTERNAL)"),
];

struct TmfErrors;

impl Modify for TmfErrors {
    fn modify(&self, doc: &mut Doc) {
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with(BASE) {
                continue;
            }
            let Some(op) = item.get.as_mut() else {
                continue;
            };
            for (status, description) in TMF_ERRORS {
                if *status == "404" && !path.ends_with("{id}") {
                    continue;
                }
                op.responses.responses.insert(
                    (*status).to_string(),
                    ResponseBuilder::new()
                        .description(*description)
                        .content(
                            MEDIA_TYPE,
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("TmfError")))
                                .build(),
                        )
                        .build()
                        .into(),
                );
            }
        }
    }
}
