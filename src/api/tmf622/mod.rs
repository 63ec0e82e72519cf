//! TMF622 Product Ordering v4 (API.md 7.3, 7.5): checkout of a TMF663 shopping cart. The
//! order is made of the cart and paid by the customer's chosen method; its pipeline
//! ([`pipeline`]) holds the numbers, takes the payment, runs the operator's tasks and
//! assigns the numbers.
//!
//! ```text
//! POST /tmf-api/productOrderingManagement/v4/productOrder
//!        {"shoppingCart": {"id": "<cart>"},
//!         "paymentMethod": {"@type": "carrierBilling", "phoneNumber": "+34671999000"}
//!                        | {"@type": "externalPayment", "token": "<psp token>"},
//!         "externalId"?, "description"?, "relatedParty"?}
//!        201 ProductOrder (acknowledged; the pipeline starts at once)
//!        the cart is checkedOut in the same commit; the same cart again: 200, the same
//!        order (another paymentMethod: 409)
//! GET  /tmf-api/productOrderingManagement/v4/productOrder[?state=&offset=&limit=&fields=]
//! GET  /tmf-api/productOrderingManagement/v4/productOrder/{id}
//!        state acknowledged -> inProgress -> completed | failed | rejected (why: `note`)
//! ```
//!
//! `paymentMethod` is this gateway's extension (TMF622 v4 has only `payment` references,
//! which the answer carries: the CAMARA checkout purchase that paid it). Each order shows its
//! pipeline (`orderPipeline`: every step, its state, tries and result).

pub mod notify;
pub mod pipeline;

#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use self::pipeline::{OrderDoc, OrderState, PaymentMethod, Pipeline};
use super::auth::{Caller, Subject};
use super::tmf630::{self, answer, json, number_of, store_error};
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::tmf663::model::{self as cart, LinePrice, Total};
use super::{ApiState, Route};
use crate::store::{ResourceFilter, Write, now_ms};

pub const BASE: &str = "/tmf-api/productOrderingManagement/v4";
const ORDERS: &str = "/tmf-api/productOrderingManagement/v4/productOrder";
const ORDER: &str = "/tmf-api/productOrderingManagement/v4/productOrder/{id}";
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// How long order creation waits for the cart's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, ORDERS, post(create_order)),
        r(Method::GET, ORDERS, get(list_orders)),
        r(Method::GET, ORDER, get(retrieve_order)),
    ]
}

pub fn href(id: &str) -> String {
    format!("{ORDERS}/{id}")
}

// ---- create ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOrder {
    shopping_cart: Option<Ref>,
    payment_method: Option<Value>,
    external_id: Option<Value>,
    description: Option<String>,
    #[serde(default)]
    related_party: Vec<Map<String, Value>>,
    /// TMF622 fields the order is made from the cart instead: refused with a reason.
    product_order_item: Option<Value>,
    order_total_price: Option<Value>,
    #[serde(rename = "@type")]
    kind: Option<String>,
    #[serde(rename = "@baseType")]
    base_type: Option<String>,
    #[serde(rename = "@schemaLocation")]
    schema_location: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Ref {
    id: Option<String>,
    #[serde(flatten)]
    _rest: Map<String, Value>,
}

fn payment_method(v: Option<Value>) -> Result<PaymentMethod, TmfError> {
    let field = "paymentMethod";
    let Some(Value::Object(m)) = v else {
        return Err(TmfError::invalid(
            field,
            "required: {\"@type\": \"carrierBilling\", \"phoneNumber\": \"+...\"} or \
             {\"@type\": \"externalPayment\", \"token\": \"...\"}",
        ));
    };
    let text = |k: &str| match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(TmfError::invalid(
            &format!("{field}.{k}"),
            "a string of 1 to 256 characters",
        )),
    };
    let kind = text("@type")?;
    for k in m.keys() {
        if !matches!(k.as_str(), "@type" | "phoneNumber" | "token" | "name") {
            return Err(TmfError::invalid(
                &format!("{field}.{}", super::error::clip(k)),
                "unknown member (@type, phoneNumber, token, name)",
            ));
        }
    }
    match kind.as_deref() {
        Some("carrierBilling" | "CarrierBilling") => {
            let phone = text("phoneNumber")?.ok_or_else(|| {
                TmfError::invalid(
                    &format!("{field}.phoneNumber"),
                    "required for carrierBilling",
                )
            })?;
            if !crate::api::camara::model::valid_phone(&phone) {
                return Err(TmfError::invalid(
                    &format!("{field}.phoneNumber"),
                    "an E.164 number: ^\\+[1-9][0-9]{4,14}$",
                ));
            }
            Ok(PaymentMethod::CarrierBilling {
                phone_number: phone,
            })
        }
        Some("externalPayment" | "ExternalPayment") => Ok(PaymentMethod::ExternalPayment {
            token: text("token")?,
        }),
        Some(other) => Err(TmfError::invalid(
            &format!("{field}.@type"),
            format!(
                "\"{}\": carrierBilling or externalPayment",
                super::error::clip(other)
            ),
        )),
        None => Err(TmfError::invalid(
            &format!("{field}.@type"),
            "required: carrierBilling or externalPayment",
        )),
    }
}

/// Creates a product order from a cart.
#[utoipa::path(
    post, path = "/tmf-api/productOrderingManagement/v4/productOrder", tag = "tmf622",
    request_body(content = ProductOrderCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, `acknowledged`: the pipeline runs; read it \
            again to follow its state", body = Object),
        (status = 200, description = "The cart was checked out by this order already (the \
            same request again)", body = Object),
        (status = 422, description = "paymentMethod not offered (INVALID_ARGUMENT)", body = TmfError)),
)]
pub(crate) async fn create_order(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    pipeline: Option<Extension<Pipeline>>,
    body: TmfBody,
) -> Response {
    let customer = Subject::customer_of(subject);
    answer(
        async {
            permit(&caller)?;
            create(
                st,
                caller.id(),
                customer.as_deref(),
                pipeline.map(|Extension(p)| p),
                body,
            )
            .await
        }
        .await,
    )
}

/// Orders are the checkout of carts: the `shopping-cart` operation.
fn permit(caller: &Caller) -> Result<(), TmfError> {
    if caller.may_call(super::tmf663::CART_OPERATION) {
        Ok(())
    } else {
        Err(TmfError::policy(
            caller.refusal(super::tmf663::CART_OPERATION, "product orders"),
        ))
    }
}

async fn create(
    st: ApiState,
    app: &str,
    customer: Option<&str>,
    pipeline: Option<Pipeline>,
    body: TmfBody,
) -> Result<Response, TmfError> {
    let req: CreateOrder = body.parse()?;
    if req.product_order_item.is_some() || req.order_total_price.is_some() {
        return Err(TmfError::invalid(
            "productOrderItem",
            "an order is made of a shopping cart here: give shoppingCart.id (the items and \
             prices are the cart's, priced from the catalog)",
        ));
    }
    if let Some(k) = req.kind.as_deref().filter(|k| *k != "ProductOrder") {
        return Err(TmfError::invalid(
            "@type",
            format!("\"{}\": ProductOrder", super::error::clip(k)),
        ));
    }
    let _ = (&req.base_type, &req.schema_location);
    let cart_id = req
        .shopping_cart
        .and_then(|r| r.id)
        .ok_or_else(|| TmfError::invalid("shoppingCart.id", "required"))?;
    let cart_id = tmf630::path_id("shopping cart", &cart_id)
        .map_err(|_| TmfError::invalid("shoppingCart.id", "not a cart id of this gateway"))?;
    let payment = payment_method(req.payment_method)?;
    let external_id = match req.external_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 256 => Some(s),
        Some(_) => {
            return Err(TmfError::invalid(
                "externalId",
                "a string of at most 256 characters",
            ));
        }
    };
    if req.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(TmfError::invalid("description", "at most 1024 characters"));
    }
    let cfg = pipeline
        .as_ref()
        .map(|p| p.config().clone())
        .unwrap_or_default();
    if matches!(payment, PaymentMethod::ExternalPayment { .. })
        && cfg.external_payment.url.is_empty()
    {
        return Err(TmfError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_ARGUMENT",
            "payment method not offered",
            "paymentMethod: externalPayment is not offered by this gateway (no \
             [orders.external_payment] url); use carrierBilling",
        ));
    }
    let store = st.charging.store();
    let Some(_lock) = st
        .charging
        .locks()
        .hold(&cart::lock_name(&cart_id), LOCK_WAIT)
        .await
        .map_err(store_error)?
    else {
        return Err(TmfError::conflict(
            "IN_PROGRESS",
            "the cart is being changed; retry",
        ));
    };
    let (row, c) = cart::load_for(store, app, customer, &cart_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| TmfError::not_found(format!("no shopping cart \"{cart_id}\"")))?;
    if row.state == cart::state::CHECKED_OUT {
        let existing = match &c.order {
            Some(o) => pipeline::load(&st, app, o).await.map_err(store_error)?,
            None => None,
        };
        return match existing {
            Some((_, o)) if o.payment == payment => Ok(json(StatusCode::OK, &render(&o))),
            Some((_, o)) => Err(TmfError::conflict(
                "CONFLICT",
                format!(
                    "the cart was checked out already, by order {} with another paymentMethod",
                    o.id
                ),
            )),
            None => Err(TmfError::conflict(
                "CONFLICT",
                "the cart was checked out already",
            )),
        };
    }
    if !c.items.iter().any(cart::CartItem::counts) {
        return Err(TmfError::invalid(
            "shoppingCart",
            "the cart has no active item to order",
        ));
    }
    let now = now_ms();
    let mut order = pipeline::from_cart(new_id(), &c, payment, pipeline::plan(&cfg, now), now);
    order.external_id = external_id;
    order.description = req.description;
    if !req.related_party.is_empty() {
        order.related_party = req.related_party.into_iter().map(Value::Object).collect();
    }
    let mut checked_out = c;
    checked_out.order = Some(order.id.clone());
    store
        .write_all(vec![
            Write::Resource(cart::row(
                app,
                &checked_out,
                cart::state::CHECKED_OUT,
                None,
                now,
            )),
            Write::Resource(pipeline::row(app, &order, Some(now))),
        ])
        .await
        .map_err(store_error)?;
    tracing::info!(order = %order.id, cart = %cart_id, "order created");
    if let Some(p) = pipeline {
        p.kick(&order.id);
    }
    let mut res = json(StatusCode::CREATED, &render(&order));
    if let Ok(v) = HeaderValue::from_str(&href(&order.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

fn new_id() -> String {
    let n = fastrand::u128(..);
    let h = format!("{n:032x}");
    let part = |a: usize, b: usize| h.get(a..b).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

// ---- read ------------------------------------------------------------------------------------

/// One product order, with its pipeline.
#[utoipa::path(
    get, path = "/tmf-api/productOrderingManagement/v4/productOrder/{id}", tag = "tmf622",
    params(
        ("id" = String, Path, description = "From the creation"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return"),
    ),
    responses((status = 200, description = "The order", body = Object)),
)]
pub(crate) async fn retrieve_order(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let customer = Subject::customer_of(subject);
    answer(
        async {
            permit(&caller)?;
            let q = tmf630::query(&uri, &["fields"])?;
            let id = tmf630::path_id("product order", &id)?;
            let (_, doc) = pipeline::load_for(&st, caller.id(), customer.as_deref(), &id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| TmfError::not_found(format!("no product order \"{id}\"")))?;
            let keep = tmf630::fields(&q);
            Ok(json(
                StatusCode::OK,
                &tmf630::select(render(&doc), keep.as_ref()),
            ))
        }
        .await,
    )
}

/// The caller's product orders, newest first.
#[utoipa::path(
    get, path = "/tmf-api/productOrderingManagement/v4/productOrder", tag = "tmf622",
    params(
        ("state" = Option<String>, Query, description = "acknowledged, inProgress, completed, failed, rejected"),
        ("offset" = Option<usize>, Query, description = "Skip this many"),
        ("limit" = Option<usize>, Query, description = "1 to 100 (default 10)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return"),
    ),
    responses((status = 200, description = "Orders; X-Total-Count, X-Result-Count", body = Vec<Object>)),
)]
pub(crate) async fn list_orders(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    uri: Uri,
) -> Response {
    let customer = Subject::customer_of(subject);
    answer(
        async {
            permit(&caller)?;
            let q = tmf630::query(&uri, &["state", "offset", "limit", "fields"])?;
            let (offset, limit) = tmf630::paging(&q, DEFAULT_LIMIT, MAX_LIMIT)?;
            let state = match tmf630::param(&q, "state") {
                None => None,
                Some(s) => Some(OrderState::from_name(s).ok_or_else(|| {
                    TmfError::invalid(
                        "state",
                        "acknowledged, inProgress, completed, failed or rejected",
                    )
                })?),
            };
            let keep = tmf630::fields(&q);
            let (rows, total) = st
                .charging
                .store()
                .resources(ResourceFilter {
                    app: Some(caller.id().to_string()),
                    kind: Some(pipeline::KIND_ORDER.into()),
                    state: state.map(|s| s.name().to_string()),
                    parent: customer.clone(),
                    offset,
                    limit,
                    ..ResourceFilter::default()
                })
                .await
                .map_err(store_error)?;
            let items = rows
                .iter()
                .map(|r| {
                    serde_json::from_str::<OrderDoc>(&r.body)
                        .map(|d| tmf630::select(render(&d), keep.as_ref()))
                        .map_err(|e| TmfError::internal(format!("order {}: {e}", r.id)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(tmf630::page(&items, total))
        }
        .await,
    )
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// What a product order is created with (the document's view of it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct ProductOrderCreate {
    /// The cart to check out: `{"id": "<cart id>"}`.
    #[schema(value_type = Object)]
    shopping_cart: (),
    /// `{"@type": "carrierBilling", "phoneNumber": "+34671999000"}` or `{"@type":
    /// "externalPayment", "token": "..."}` (this gateway's extension).
    #[schema(value_type = Object)]
    payment_method: (),
    external_id: Option<String>,
    description: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    related_party: (),
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_order, list_orders, retrieve_order),
    components(schemas(ProductOrderCreate, TmfError)),
    modifiers(&Errors)
)]
pub struct Tmf622Doc;

/// Statuses every TMF622 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input (INVALID_ARGUMENT, the field named)"),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "The application may not call this operation (PERMISSION_DENIED)",
    ),
    ("404", "No such order or cart (NOT_FOUND)"),
    (
        "409",
        "The cart is checked out by another order, or being changed (CONFLICT, IN_PROGRESS)",
    ),
    (
        "413",
        "Body larger than http.max_body_bytes (PAYLOAD_TOO_LARGE)",
    ),
    (
        "415",
        "Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE)",
    ),
    ("500", "Gateway fault (INTERNAL): the store failed"),
];

struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        tmf630::document_errors(doc, BASE, TMF_ERRORS);
    }
}

// ---- rendering ---------------------------------------------------------------------------------

fn money(value: rust_decimal::Decimal, unit: &str) -> Value {
    json!({"unit": unit, "value": number_of(value)})
}

fn price(
    name: &str,
    price_type: &str,
    period: Option<&str>,
    amount: rust_decimal::Decimal,
    duty_free: rust_decimal::Decimal,
    rate: Option<rust_decimal::Decimal>,
    unit: &str,
) -> Value {
    let mut p = json!({
        "taxIncludedAmount": money(amount, unit),
        "dutyFreeAmount": money(duty_free, unit),
    });
    if let (Some(r), Value::Object(m)) = (rate, &mut p) {
        m.insert("taxRate".into(), number_of(r));
    }
    let mut v = json!({"name": name, "priceType": price_type, "price": p});
    if let (Some(period), Value::Object(m)) = (period, &mut v) {
        m.insert("recurringChargePeriod".into(), Value::String(period.into()));
    }
    v
}

fn line(p: &LinePrice, total: bool) -> Value {
    let amount = if total { p.total } else { p.unit };
    let mut v = price(
        &p.name,
        &p.price_type,
        p.period.as_deref(),
        amount,
        cart::duty_free(amount, p.tax_rate, &p.currency),
        p.tax_rate,
        &p.currency,
    );
    if let Value::Object(m) = &mut v {
        m.insert(
            "productOfferingPrice".into(),
            json!({"id": p.price_id,
                   "href": crate::api::tmf620::catalog::Kind::ProductOfferingPrice.href(&p.price_id)}),
        );
    }
    v
}

fn total(t: &Total) -> Value {
    price(
        "total",
        &t.price_type,
        t.period.as_deref(),
        t.amount,
        t.duty_free,
        None,
        &t.currency,
    )
}

/// The order as TMF622 shows it.
/// The order's related parties: those given, and the customer whose token made it.
fn related_party(o: &OrderDoc) -> Vec<Value> {
    let mut parties = o.related_party.clone();
    if let Some(c) = &o.customer
        && !parties
            .iter()
            .any(|p| p.get("id").and_then(Value::as_str) == Some(c.as_str()))
    {
        parties.push(json!({
            "id": c,
            "href": crate::api::tmf629::href(c),
            "role": "customer",
            "@referredType": "Customer",
        }));
    }
    parties
}

pub fn render(o: &OrderDoc) -> Value {
    let item_state = match o.state {
        OrderState::Completed => "completed",
        OrderState::Failed => "failed",
        OrderState::Rejected => "rejected",
        OrderState::Acknowledged => "acknowledged",
        OrderState::InProgress => "inProgress",
    };
    let items: Vec<Value> = o
        .items
        .iter()
        .map(|i| {
            let resources: Vec<Value> = i
                .resources
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "href": format!("{}/resource/{}", crate::api::tmf639::BASE, r.id),
                        "value": r.value,
                        "name": format!("{} {}", r.category, r.value),
                        "@referredType": if r.category == "ICCID" { "PhysicalResource" } else { "LogicalResource" },
                    })
                })
                .collect();
            let mut product = match &i.product {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            product.insert("realizingResource".into(), Value::Array(resources));
            json!({
                "id": i.id,
                "quantity": i.quantity,
                "action": i.action,
                "state": item_state,
                "productOffering": {
                    "id": i.offering_id,
                    "name": i.offering_name,
                    "href": crate::api::tmf620::catalog::Kind::ProductOffering.href(&i.offering_id),
                },
                "product": product,
                "itemPrice": i.prices.iter().map(|p| line(p, false)).collect::<Vec<_>>(),
                "itemTotalPrice": i.prices.iter().map(|p| line(p, true)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let payment_done = o
        .steps
        .iter()
        .find(|s| s.kind == pipeline::StepKind::AuthorizePayment)
        .is_some_and(|s| s.attempts > 0);
    let payment: Vec<Value> = match (&o.payment, &o.charge, payment_done) {
        (PaymentMethod::CarrierBilling { .. }, Some(_), true) => vec![json!({
            "id": o.purchase_id(),
            "href": format!("/carrier-billing-checkout/v0/purchases/{}", o.purchase_id()),
            "name": "carrier billing",
            "@referredType": "Purchase",
        })],
        _ => Vec::new(),
    };
    let steps: Vec<Value> = o
        .steps
        .iter()
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .collect();
    let mut v = json!({
        "id": o.id,
        "href": href(&o.id),
        "@type": "ProductOrder",
        "state": o.state.name(),
        "creationDate": crate::api::datetime::format_ms(o.created_ms),
        "orderDate": crate::api::datetime::format_ms(o.created_ms),
        "lastUpdate": crate::api::datetime::format_ms(o.updated_ms),
        "productOrderItem": items,
        "orderTotalPrice": o.total.iter().map(total).collect::<Vec<_>>(),
        "paymentMethod": o.payment,
        "payment": payment,
        "relatedParty": related_party(o),
        "shoppingCart": {"id": o.cart, "href": format!("/tmf-api/shoppingCart/v4/shoppingCart/{}", o.cart)},
        "orderPipeline": steps,
    });
    if let Value::Object(m) = &mut v {
        if let Some(t) = o.completed_ms {
            m.insert(
                "completionDate".into(),
                Value::String(crate::api::datetime::format_ms(t)),
            );
        }
        if let Some(e) = &o.external_id {
            m.insert("externalId".into(), Value::String(e.clone()));
        }
        if let Some(d) = &o.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(f) = &o.failure {
            m.insert(
                "note".into(),
                json!([{"text": f, "author": "gateway", "date": crate::api::datetime::format_ms(o.updated_ms)}]),
            );
        }
        if let Some(c) = &o.charge {
            m.insert("charge".into(), money(c.amount, &c.currency));
        }
    }
    v
}
