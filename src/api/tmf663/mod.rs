//! TMF663 Shopping Cart v4 (API.md 7.2): the cart a customer of the digital sales channel
//! fills before checkout, priced from the TMF620 catalog, the numbers and SIMs chosen in it
//! held in the TMF639 inventory. The stored model and its prices are in [`model`].
//!
//! ```text
//! POST   /tmf-api/shoppingCart/v4/shoppingCart          201 ShoppingCart, Location
//! GET    /tmf-api/shoppingCart/v4/shoppingCart          200 [ShoppingCart] the application's, newest
//!                                                       first; fields, offset, limit, status
//! GET    /tmf-api/shoppingCart/v4/shoppingCart/{id}     200 ShoppingCart
//! PATCH  /tmf-api/shoppingCart/v4/shoppingCart/{id}     200 ShoppingCart
//!          application/merge-patch+json (or application/json): RFC 7396; an array (cartItem)
//!            is replaced whole
//!          application/json-patch+json: RFC 6902 (TMF630), atomically
//! DELETE /tmf-api/shoppingCart/v4/shoppingCart/{id}     204; its numbers released
//! ```
//!
//! A change is one path: the patch is applied to the cart's rendered document
//! ([`render::value`]), the result read again as a cart body ([`input::read`]: what the
//! gateway owns, `id`, `href`, `status`, prices, must be left alone or is recomputed), every
//! item priced from the catalog ([`model::price_item`]), the chosen resources held for the cart
//! (`Store::reserve_inventory`, decided by the database: a number goes to one cart even across
//! gateway instances; what this request newly held is released again when any of it fails),
//! then the row written, then the resources the cart no longer has released. Every POST and
//! PATCH renews the holds (`[inventory] hold`). PATCH and DELETE hold the cart's lock
//! ([`model::lock_name`]) from their read to their write; a cart checked out (an order was made
//! of it) changes no more (409). The work of a POST, PATCH or DELETE runs to its end even if the
//! client goes away (no number held for a cart that was never written).
//!
//! Another application's cart, a deleted one and an unknown id are all 404.

pub mod followup;
pub mod input;
pub mod model;
pub mod render;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::Value;
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi};

use super::auth::{Caller, Subject};
use super::error::clip;
use super::tmf630::{self, answer, fields, json, param, query, select, store_error};
use super::tmf639::Settings;
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::{ApiState, Route};
use crate::charging::locks::Held;
use crate::store::{InventoryStatus, ResourceFilter, Store};
use input::{Draft, Target};
use model::{CartDoc, CartItem, Chosen, PriceError, state};
use render::ShoppingCart;

pub const BASE: &str = "/tmf-api/shoppingCart/v4";
const CARTS: &str = "/tmf-api/shoppingCart/v4/shoppingCart";
const CART: &str = "/tmf-api/shoppingCart/v4/shoppingCart/{id}";
/// The `allowed_operations` name of every cart route.
pub const CART_OPERATION: &str = "shopping-cart";
/// Most carts one listing returns.
pub const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;
/// Largest listing offset.
pub const MAX_OFFSET: usize = 100_000;
/// Most operations of one JSON Patch.
pub const MAX_PATCH_OPS: usize = 100;
/// What a patched cart document may grow to (nesting, values) before it is read: a JSON
/// Patch `copy` doubles what it copies, so each operation is measured.
const MAX_DOC_DEPTH: usize = 64;
const MAX_DOC_VALUES: usize = 100_000;
/// How long a change waits for another change of the same cart.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, CARTS, post(create_cart)),
        r(Method::GET, CARTS, get(list_carts)),
        r(Method::GET, CART, get(retrieve_cart)),
        r(Method::PATCH, CART, patch(patch_cart)),
        r(Method::DELETE, CART, delete(delete_cart)),
    ]
}

fn permit(caller: &Caller) -> Result<(), TmfError> {
    if caller.may_call(CART_OPERATION) {
        Ok(())
    } else {
        Err(TmfError::policy(
            caller.refusal(CART_OPERATION, "shopping carts"),
        ))
    }
}

/// Runs a change to its end even if the client goes away.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, TmfError>> + Send + 'static,
) -> Result<T, TmfError> {
    tokio::spawn(work).await.map_err(|e| {
        TmfError::internal(format!(
            "the cart task failed ({e}); read the cart to learn what was kept"
        ))
    })?
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, TmfError> {
    let Path(id) = p.map_err(|e| TmfError::invalid("id", e.body_text()))?;
    tmf630::path_id("shopping cart", &id)
}

fn not_found(id: &str) -> TmfError {
    TmfError::not_found(format!("no shopping cart \"{}\"", clip(id)))
}

// ---- the cart's lock -------------------------------------------------------------------------

/// The cart's lock across instances, held from the read to the write of a change.
struct CartLock(#[allow(dead_code)] Held);

impl CartLock {
    async fn take(st: &ApiState, id: &str) -> Result<Self, TmfError> {
        match st
            .charging
            .locks()
            .hold(&model::lock_name(id), LOCK_WAIT)
            .await
        {
            Ok(Some(h)) => Ok(Self(h)),
            Ok(None) => Err(TmfError::conflict(
                "IN_PROGRESS",
                format!("another change of cart {id} is in progress; retry"),
            )),
            Err(e) => Err(TmfError::internal(format!(
                "the cart could not be locked ({e}); nothing was changed"
            ))),
        }
    }
}

// ---- the change ------------------------------------------------------------------------------

/// Where a change stands: the cart before it (none for a new cart).
struct Change<'a> {
    store: &'a Store,
    app: &'a str,
    hold: Duration,
    now: i64,
    before: Option<&'a CartDoc>,
    /// The customer a new cart is made for (a customer's token); a change keeps the cart's.
    customer: Option<String>,
}

impl Change<'_> {
    /// Prices `draft` as cart `id`, holds its resources, writes it; the document written.
    async fn apply(&self, id: &str, draft: Draft) -> Result<CartDoc, TmfError> {
        let mut items = Vec::with_capacity(draft.items.len());
        for (i, d) in draft.items.into_iter().enumerate() {
            items.push(self.item(i, d).await?);
        }
        let total = model::totals(&items).ok_or_else(|| {
            TmfError::invalid("cartTotalPrice", "a total is too large to be computed")
        })?;
        let mut doc = CartDoc {
            id: id.to_string(),
            items,
            contact: draft.contact,
            related_party: draft.related_party,
            characteristic: draft.characteristic,
            valid_for: draft.valid_for,
            total,
            follow_up: self.before.and_then(|b| b.follow_up.clone()),
            order: None,
            customer: self
                .before
                .map_or_else(|| self.customer.clone(), |b| b.customer.clone()),
            created_ms: self.before.map_or(self.now, |b| b.created_ms),
            updated_ms: self.now,
        };
        // A patch that changes nothing the customer chose is no customer change.
        if let Some(b) = self.before
            && chosen(b) == chosen(&doc)
        {
            doc.updated_ms = b.updated_ms;
        }
        let holder = model::holder(self.app, id);
        let newly = self.hold_all(&doc, &holder).await?;
        let row = model::row(
            self.app,
            &doc,
            state::ACTIVE,
            model::follow_up_due(&doc, state::ACTIVE),
            self.now,
        );
        if let Err(e) = self.store.put_resource(row).await {
            self.release(&newly, &holder).await;
            return Err(store_error(e));
        }
        if let Some(b) = self.before {
            let kept: HashSet<&str> = resources(&doc).map(|c| c.id.as_str()).collect();
            let gone: Vec<String> = resources(b)
                .filter(|c| !kept.contains(c.id.as_str()))
                .map(|c| c.id.clone())
                .collect();
            self.release(&gone, &holder).await;
        }
        Ok(doc)
    }

    async fn item(&self, i: usize, d: input::DraftItem) -> Result<CartItem, TmfError> {
        let field = format!("cartItem[{i}].productOffering.id");
        let priced = |e: PriceError| match e {
            PriceError::Store(s) => TmfError::internal(format!(
                "the catalog could not be read ({s}); nothing was changed"
            )),
            e => TmfError::invalid(&field, e),
        };
        let (name, prices) = model::price_item(self.store, &d.offering_id, d.quantity, self.now)
            .await
            .map_err(priced)?;
        let mut resources = Vec::with_capacity(d.resources.len());
        if !d.resources.is_empty() {
            let wanted = model::required_resources(self.store, &d.offering_id)
                .await
                .map_err(priced)?;
            for (id, rf) in &d.resources {
                let row = self
                    .store
                    .inventory(id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| {
                        TmfError::invalid(rf, format!("no resource {id} in the inventory (TMF639)"))
                    })?;
                if !wanted.contains(&row.category) {
                    return Err(TmfError::invalid(
                        rf,
                        format!(
                            "productOffering {} takes no {} (it asks for: {})",
                            d.offering_id,
                            row.category,
                            if wanted.is_empty() {
                                "none".to_string()
                            } else {
                                wanted.join(", ")
                            }
                        ),
                    ));
                }
                let same = resources
                    .iter()
                    .filter(|c: &&Chosen| c.category == row.category)
                    .count();
                if same >= usize::try_from(d.quantity).unwrap_or(usize::MAX) {
                    return Err(TmfError::invalid(
                        rf,
                        format!(
                            "one {} per unit: quantity {} takes at most {}",
                            row.category, d.quantity, d.quantity
                        ),
                    ));
                }
                resources.push(Chosen {
                    id: row.id,
                    category: row.category,
                    value: row.value,
                });
            }
        }
        Ok(CartItem {
            id: d.id,
            quantity: d.quantity,
            action: d.action,
            status: d.status,
            offering_id: d.offering_id,
            offering_name: name,
            resources,
            product: d.product,
            prices,
        })
    }

    /// Holds (or renews) every resource of `doc` for `holder`; those it did not hold before
    /// this change. On any refusal, those are released again and the refusal names the one.
    async fn hold_all(&self, doc: &CartDoc, holder: &str) -> Result<Vec<String>, TmfError> {
        let had: HashSet<&str> = self
            .before
            .map(|b| resources(b).map(|c| c.id.as_str()).collect())
            .unwrap_or_default();
        let ms = i64::try_from(self.hold.as_millis()).unwrap_or(i64::MAX);
        let until = self.now.saturating_add(ms);
        let mut newly = Vec::new();
        for (i, it) in doc.items.iter().enumerate() {
            for c in &it.resources {
                let won = match self
                    .store
                    .reserve_inventory(&c.id, holder, until, self.now)
                    .await
                {
                    Ok(w) => w,
                    Err(e) => {
                        self.release(&newly, holder).await;
                        return Err(store_error(e));
                    }
                };
                if !won {
                    self.release(&newly, holder).await;
                    return Err(self.refused(i, c, holder).await);
                }
                if !had.contains(c.id.as_str()) {
                    newly.push(c.id.clone());
                }
            }
        }
        Ok(newly)
    }

    /// Why resource `c` of item `i` could not be held.
    async fn refused(&self, i: usize, c: &Chosen, holder: &str) -> TmfError {
        let at = format!("cartItem[{i}].product.realizingResource");
        let row = match self.store.inventory(&c.id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return TmfError::invalid(&at, format!("no resource {} in the inventory", c.id));
            }
            Err(e) => return store_error(e),
        };
        match row.status_at(self.now) {
            InventoryStatus::Reserved if row.holder.as_deref() != Some(holder) => {
                TmfError::conflict(
                    "CONFLICT",
                    format!(
                        "{at}: {} {} is held by another cart; nothing of this request was kept",
                        row.category, c.id
                    ),
                )
            }
            InventoryStatus::PortingIn => TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "{at}: {} {} is being ported in and cannot be chosen; nothing of this \
                     request was kept",
                    row.category, c.id
                ),
            ),
            s => TmfError::conflict(
                "INVALID_STATE",
                format!(
                    "{at}: {} {} is {}; nothing of this request was kept",
                    row.category,
                    c.id,
                    s.name()
                ),
            ),
        }
    }

    async fn release(&self, ids: &[String], holder: &str) {
        release(self.store, ids, holder, self.now).await;
    }
}

async fn release(store: &Store, ids: &[String], holder: &str, now: i64) {
    for id in ids {
        match store.release_inventory(id, holder, now).await {
            Ok(_) => {}
            // The hold runs out by itself.
            Err(e) => tracing::warn!(resource = %id, holder, error = %e, "resource not released"),
        }
    }
}

fn resources(doc: &CartDoc) -> impl Iterator<Item = &Chosen> {
    doc.items.iter().flat_map(|i| &i.resources)
}

/// What the customer chose (the items without their prices, the contacts, ...).
fn chosen(doc: &CartDoc) -> Value {
    let items: Vec<Value> = doc
        .items
        .iter()
        .map(|i| {
            serde_json::json!([
                i.id,
                i.quantity,
                i.action,
                i.status,
                i.offering_id,
                i.resources,
                i.product
            ])
        })
        .collect();
    serde_json::json!([
        items,
        doc.contact,
        doc.related_party,
        doc.characteristic,
        doc.valid_for
    ])
}

// ---- handlers --------------------------------------------------------------------------------

/// Creates a cart: priced from the catalog, the chosen numbers and SIMs held for it.
#[utoipa::path(
    post, path = "/tmf-api/shoppingCart/v4/shoppingCart", tag = "tmf663",
    request_body(content = input::ShoppingCartCreate, content_type = "application/json"),
    responses((status = 201, description = "Created: priced, its resources held for \
        [inventory] hold", body = ShoppingCart, content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The cart's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_cart(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    settings: Option<Extension<Settings>>,
    body: TmfBody,
) -> Response {
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    answer(create(st, caller, Subject::customer_of(subject), settings, body).await)
}

async fn create(
    st: ApiState,
    caller: Caller,
    customer: Option<String>,
    settings: Settings,
    body: TmfBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let v: serde_json::Map<String, Value> = body.parse()?;
    let draft = input::read(&Value::Object(v), Target::Create)?;
    let id = format!("cart-{:032x}", fastrand::u128(..));
    tracing::Span::current().record("operation_id", id.as_str());
    let app = caller.id().to_string();
    let store = st.charging.store().clone();
    let doc = detached(async move {
        let change = Change {
            store: &store,
            app: &app,
            hold: settings.hold,
            now: crate::store::now_ms(),
            before: None,
            customer,
        };
        change.apply(&id, draft).await
    })
    .await?;
    let cart = render::cart(&doc, state::ACTIVE);
    let mut res = json(StatusCode::CREATED, &cart);
    if let Ok(v) = HeaderValue::from_str(&cart.href) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// The application's carts (not the deleted ones), newest first.
#[utoipa::path(
    get, path = "/tmf-api/shoppingCart/v4/shoppingCart", tag = "tmf663",
    params(
        ("status" = Option<String>, Query, description = "active or checkedOut (default: both)"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page of carts", body = [ShoppingCart],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_carts(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    uri: Uri,
) -> Response {
    answer(list(st, caller, Subject::customer_of(subject), uri).await)
}

async fn list(
    st: ApiState,
    caller: Caller,
    customer: Option<String>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let q = query(&uri, &["status", "offset", "limit", "fields"])?;
    let (offset, limit) = tmf630::paging(&q, DEFAULT_LIMIT, MAX_LIMIT)?;
    if offset > MAX_OFFSET {
        return Err(TmfError::invalid("offset", format!("at most {MAX_OFFSET}")));
    }
    let states: &[&str] = match param(&q, "status") {
        None => &[state::ACTIVE, state::CHECKED_OUT],
        Some(state::ACTIVE) => &[state::ACTIVE],
        Some(state::CHECKED_OUT) => &[state::CHECKED_OUT],
        Some(s) => {
            return Err(TmfError::invalid(
                "status",
                format!("\"{}\": active or checkedOut", clip(s)),
            ));
        }
    };
    let keep = fields(&q);
    let store = st.charging.store();
    // Newest first across the states asked: each state's first offset + limit, merged.
    let want = offset.saturating_add(limit);
    let mut rows = Vec::new();
    let mut total = 0usize;
    for s in states {
        let (mut r, n) = store
            .resources(ResourceFilter {
                app: Some(caller.id().to_string()),
                kind: Some(model::KIND_CART.into()),
                state: Some((*s).to_string()),
                parent: customer.clone(),
                limit: want,
                ..ResourceFilter::default()
            })
            .await
            .map_err(store_error)?;
        total = total.saturating_add(n);
        rows.append(&mut r);
    }
    rows.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
    let mut items = Vec::new();
    for r in rows.into_iter().skip(offset).take(limit) {
        let doc: CartDoc = serde_json::from_str(&r.body)
            .map_err(|e| TmfError::internal(format!("cart {} does not decode: {e}", r.id)))?;
        items.push(select(render::value(&doc, &r.state), keep.as_ref()));
    }
    let mut res = json(StatusCode::OK, &items);
    let h = res.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    h.insert("x-result-count", HeaderValue::from(items.len()));
    Ok(res)
}

/// One cart.
#[utoipa::path(
    get, path = "/tmf-api/shoppingCart/v4/shoppingCart/{id}", tag = "tmf663",
    params(
        ("id" = String, Path, description = "The cart id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return"),
    ),
    responses((status = 200, description = "The cart", body = ShoppingCart,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_cart(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let customer = Subject::customer_of(subject);
    answer(
        async {
            permit(&caller)?;
            let id = path_id(id)?;
            let q = query(&uri, &["fields"])?;
            let (row, doc) =
                load(st.charging.store(), caller.id(), customer.as_deref(), &id).await?;
            Ok(json(
                StatusCode::OK,
                &select(render::value(&doc, &row.state), fields(&q).as_ref()),
            ))
        }
        .await,
    )
}

async fn load(
    store: &Store,
    app: &str,
    customer: Option<&str>,
    id: &str,
) -> Result<(crate::store::ResourceRow, CartDoc), TmfError> {
    model::load_for(store, app, customer, id)
        .await
        .map_err(|e| TmfError::internal(e.to_string()))?
        .ok_or_else(|| not_found(id))
}

fn checked_out(id: &str, doc: &CartDoc) -> TmfError {
    TmfError::conflict(
        "INVALID_STATE",
        format!(
            "cart {id} is checked out, order {}: it changes no more",
            doc.order.as_deref().unwrap_or("unknown")
        ),
    )
}

/// The body of a PATCH: a merge patch or a JSON Patch, by its Content-Type.
pub enum PatchBody {
    Merge(Value),
    Json(json_patch::Patch),
}

impl<S: Send + Sync> FromRequest<S> for PatchBody {
    type Rejection = TmfError;

    async fn from_request(req: Request, state: &S) -> Result<Self, TmfError> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let json_patch = match essence.as_str() {
            "application/merge-patch+json" | "application/json" => false,
            "application/json-patch+json" => true,
            _ => {
                return Err(TmfError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "unsupported media type",
                    "Content-Type: application/merge-patch+json (or application/json), or \
                     application/json-patch+json expected",
                ));
            }
        };
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(TmfError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "payload too large",
                    "body: larger than the gateway accepts (http.max_body_bytes)",
                ));
            }
            Err(r) => return Err(TmfError::invalid("body", r.body_text())),
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TmfError::invalid("body", format!("not valid JSON: {e}")))?;
        if json_patch {
            if !value.is_array() {
                return Err(TmfError::invalid(
                    "body",
                    "a JSON Patch is an array of operations (RFC 6902)",
                ));
            }
            if value.as_array().is_some_and(|a| a.len() > MAX_PATCH_OPS) {
                return Err(TmfError::invalid(
                    "body",
                    format!("at most {MAX_PATCH_OPS} operations"),
                ));
            }
            let p: json_patch::Patch = serde_path_to_error::deserialize(value).map_err(|e| {
                let at = e.path().to_string();
                TmfError::invalid(
                    &format!("body{}", at.trim_start_matches('.').replace('.', "/")),
                    format!("not a JSON Patch operation: {}", e.into_inner()),
                )
            })?;
            Ok(Self::Json(p))
        } else if value.is_object() {
            Ok(Self::Merge(value))
        } else {
            Err(TmfError::invalid(
                "body",
                "a merge patch of a cart is a JSON object (RFC 7396)",
            ))
        }
    }
}

/// Changes a cart: its items (re-priced), contacts, parties, characteristics. The chosen
/// resources it gains are held, those it loses released, all of them renewed.
#[utoipa::path(
    patch, path = "/tmf-api/shoppingCart/v4/shoppingCart/{id}", tag = "tmf663",
    params(("id" = String, Path, description = "The cart id")),
    request_body(content(
        (input::ShoppingCartUpdate = "application/merge-patch+json"),
        (Vec<input::JsonPatchOperation> = "application/json-patch+json"),
    )),
    responses((status = 200, description = "Changed, priced again, its holds renewed",
        body = ShoppingCart, content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_cart(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    settings: Option<Extension<Settings>>,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Response {
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    answer(
        patch_op(
            st,
            caller,
            Subject::customer_of(subject),
            settings,
            id,
            body,
        )
        .await,
    )
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    customer: Option<String>,
    settings: Settings,
    id: Result<Path<String>, PathRejection>,
    body: PatchBody,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = path_id(id)?;
    tracing::Span::current().record("operation_id", id.as_str());
    let app = caller.id().to_string();
    let doc = detached(async move {
        let _lock = CartLock::take(&st, &id).await?;
        let store = st.charging.store();
        let (row, before) = load(store, &app, customer.as_deref(), &id).await?;
        if row.state != state::ACTIVE {
            return Err(checked_out(&id, &before));
        }
        let mut v = render::value(&before, &row.state);
        match &body {
            PatchBody::Merge(p) => json_patch::merge(&mut v, p),
            // Applied to a copy of the document, one operation at a time, each result
            // measured: on a failed operation the copy is dropped (all or nothing).
            PatchBody::Json(p) => {
                for (i, op) in p.0.iter().enumerate() {
                    json_patch::patch_unsafe(&mut v, std::slice::from_ref(op)).map_err(|e| {
                        TmfError::invalid(
                            &format!("body[{i}]"),
                            format!("the operation failed at \"{}\": {}", e.path, e.kind),
                        )
                    })?;
                    if !input::within(&v, MAX_DOC_DEPTH, MAX_DOC_VALUES) {
                        return Err(TmfError::invalid(
                            &format!("body[{i}]"),
                            "the cart grows too large (nesting or size)",
                        ));
                    }
                }
            }
        }
        if !v.is_object() {
            return Err(TmfError::invalid(
                "body",
                "the patched cart is not a JSON object",
            ));
        }
        let href = render::href(&id);
        let draft = input::read(
            &v,
            Target::Update {
                id: &id,
                href: &href,
                status: &row.state,
                valid_for: before.valid_for.as_ref(),
            },
        )?;
        let change = Change {
            store,
            app: &app,
            hold: settings.hold,
            now: crate::store::now_ms(),
            before: Some(&before),
            customer: None,
        };
        change.apply(&id, draft).await
    })
    .await?;
    Ok(json(StatusCode::OK, &render::cart(&doc, state::ACTIVE)))
}

/// Deletes a cart: it is never served again, its numbers and SIMs are released.
#[utoipa::path(
    delete, path = "/tmf-api/shoppingCart/v4/shoppingCart/{id}", tag = "tmf663",
    params(("id" = String, Path, description = "The cart id")),
    responses((status = 204, description = "Deleted; its resources released")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_cart(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    subject: Option<Extension<Subject>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(delete_op(st, caller, Subject::customer_of(subject), id).await)
}

async fn delete_op(
    st: ApiState,
    caller: Caller,
    customer: Option<String>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, TmfError> {
    permit(&caller)?;
    let id = path_id(id)?;
    tracing::Span::current().record("operation_id", id.as_str());
    let app = caller.id().to_string();
    detached(async move {
        let _lock = CartLock::take(&st, &id).await?;
        let store = st.charging.store();
        let (row, mut doc) = load(store, &app, customer.as_deref(), &id).await?;
        if row.state != state::ACTIVE {
            return Err(checked_out(&id, &doc));
        }
        let now = crate::store::now_ms();
        doc.updated_ms = now;
        store
            .put_resource(model::row(
                &app,
                &doc,
                state::DELETED,
                model::follow_up_due(&doc, state::DELETED),
                now,
            ))
            .await
            .map_err(store_error)?;
        let ids: Vec<String> = resources(&doc).map(|c| c.id.clone()).collect();
        release(store, &ids, &model::holder(&app, &id), now).await;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(create_cart, list_carts, retrieve_cart, patch_cart, delete_cart),
    components(schemas(
        ShoppingCart,
        render::CartItemView,
        render::OfferingRef,
        render::CartPrice,
        render::PriceRef,
        render::Price,
        render::Money,
        render::ContactMedium,
        input::ShoppingCartCreate,
        input::ShoppingCartUpdate,
        input::CartItemInput,
        input::RefInput,
        input::JsonPatchOperation,
        TmfError,
    )),
    modifiers(&TmfErrors)
)]
pub struct Tmf663Doc;

/// Statuses every TMF663 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (INVALID_ARGUMENT, the field named: cartItem[1].quantity), an \
         offering not in the catalog or not sellable, a resource not in the inventory",
    ),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "The application's allowed_operations lacks shopping-cart (PERMISSION_DENIED)",
    ),
    (
        "404",
        "No such cart of this application, or deleted (NOT_FOUND)",
    ),
    (
        "409",
        "A chosen number or SIM is held by another cart (CONFLICT) or cannot be chosen \
         (INVALID_STATE), nothing of the request kept; the cart is checked out \
         (INVALID_STATE); another change of it is in progress (IN_PROGRESS)",
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
