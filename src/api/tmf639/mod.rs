//! TMF639 Resource Inventory Management v4 (API.md 7.4): the MSISDNs and SIMs (ICCIDs) a
//! customer picks from at checkout, held for a cart and assigned to an order.
//!
//! ```text
//! GET   /tmf-api/resourceInventoryManagement/v4/resource?category=MSISDN&value=*777*&limit=10
//!         200 [Resource]  available ones by default, in a random order; X-Total-Count
//! GET   /tmf-api/resourceInventoryManagement/v4/resource/{id}    200 Resource
//! PATCH /tmf-api/resourceInventoryManagement/v4/resource/{id}
//!         {"resourceStatus": "reserved", "relatedParty": [{"id": "<cart>"}]}   200 held for
//!             [inventory] hold (renewed by the same cart); 409 held by another cart
//!         {"resourceStatus": "available", "relatedParty": [{"id": "<cart>"}]}  200 released
//!         {"usageState": "active", "relatedParty": [{"id": "<cart or order>"}]}  admin only:
//!             reserved -> assigned (the cart's hold must still run), portingIn -> active
//! ```
//!
//! The store keeps a status TMF639 has no single field for; each renders as:
//!
//! ```text
//! status      resourceStatus  usageState  administrativeState  relatedParty
//! available   available       idle        unlocked             -
//! reserved    reserved        idle        unlocked             the cart (role reservedFor)
//! assigned    reserved        active      unlocked             the order (role owner)
//! portingIn   standby         idle        locked               -  (tagged at import)
//! active      available       active      unlocked             the customer (role owner)
//! ```
//!
//! and the characteristic `inventoryState` carries the status itself (the listing's
//! `resourceStatus` filter takes these five names). A reservation that ran out is available
//! to everyone (nothing needs to sweep it). Whether a cart gets a number is decided by the
//! database, one conditional UPDATE ([`crate::store::Write::Reserve`]), so it holds across
//! gateway instances on one PostgreSQL. A cart is named per application: the holder recorded
//! is `<app>/<cart>`, and another application sees that a resource is held, not by whom.

pub mod import;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, patch};
use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi, ToSchema};

use super::auth::Caller;
use super::error::clip;
use super::tmf630::{self, answer, json, param, query, select, store_error};
use super::tmf654::TmfCaller;
use super::tmf654::error::TmfError;
use super::tmf654::validate::TmfBody;
use super::{ApiState, Route};
use crate::store::{InventoryFilter, InventoryRow, InventoryStatus, Store, StoreError};

pub const BASE: &str = "/tmf-api/resourceInventoryManagement/v4";
const RESOURCES: &str = "/tmf-api/resourceInventoryManagement/v4/resource";
const RESOURCE: &str = "/tmf-api/resourceInventoryManagement/v4/resource/{id}";
/// Most resources one listing returns.
pub const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;

/// What the handlers need of `[inventory]`, given to the router as an [`Extension`]
/// (without one: the defaults, a 15-minute hold and a fresh random order every listing).
#[derive(Clone, Debug)]
pub struct Settings {
    pub hold: Duration,
    /// Seeds the order of available resources (tests): the same seed, the same order.
    pub seed: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hold: crate::config::inventory::InventoryConfig::default().hold,
            seed: None,
        }
    }
}

impl From<&crate::config::inventory::InventoryConfig> for Settings {
    fn from(c: &crate::config::inventory::InventoryConfig) -> Self {
        Self {
            hold: c.hold,
            seed: None,
        }
    }
}

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::GET, RESOURCES, get(list_resources)),
        r(Method::GET, RESOURCE, get(retrieve_resource)),
        r(Method::PATCH, RESOURCE, patch(patch_resource)),
    ]
}

/// The holder recorded for `party` (a cart or order id) of application `app`.
pub fn holder_key(app: &str, party: &str) -> String {
    format!("{app}/{party}")
}

/// Assigns inventory resource `id` for good to `app`'s `order`, made of the `cart` that
/// reserved it (the checkout pipeline calls this once the order is paid): true when the cart
/// holds it and the hold still runs (or it is the order's already), false otherwise.
pub async fn assign(
    store: &Store,
    app: &str,
    cart: &str,
    order: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let (holder, owner) = (holder_key(app, cart), holder_key(app, order));
    store
        .assign_inventory(id, &holder, &owner, crate::store::now_ms())
        .await
}

// ---- model -----------------------------------------------------------------------------------

/// A TMF639 Resource: an MSISDN (`LogicalResource`) or a SIM (`PhysicalResource`, ICCID).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    pub href: String,
    /// `MSISDN` or `ICCID`.
    pub category: String,
    pub name: String,
    /// The number (E.164 digits) or the ICCID.
    pub value: String,
    /// `available`, `reserved` or `standby` (see the module table).
    pub resource_status: String,
    /// `locked` (a number being ported in) or `unlocked`.
    pub administrative_state: String,
    pub operational_state: String,
    /// `idle`, or `active` once assigned.
    pub usage_state: String,
    pub resource_characteristic: Vec<Characteristic>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_party: Vec<RelatedParty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Note>,
    #[serde(rename = "@type")]
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Characteristic {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RelatedParty {
    /// The cart or order (as the application named it).
    pub id: String,
    /// `reservedFor` (a hold) or `owner` (assigned).
    pub role: String,
    #[serde(rename = "@referredType")]
    pub referred_type: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Note {
    pub text: String,
    /// When the hold runs out (RFC 3339).
    pub date: String,
}

/// `PATCH /resource/{id}` (merge patch): a hold, its release, or (administrators) an
/// assignment. The cart is the first `relatedParty` (or the text of the first `note`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUpdate {
    /// `reserved` (hold) or `available` (release).
    pub resource_status: Option<String>,
    /// `active`: assign (administrators only).
    pub usage_state: Option<String>,
    pub related_party: Option<Vec<PartyInput>>,
    pub note: Option<Vec<NoteInput>>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct PartyInput {
    /// The cart or order id: 1 to 128 visible ASCII characters, no `/`.
    pub id: String,
    pub role: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct NoteInput {
    pub text: String,
}

fn render(r: &InventoryRow, caller: &Caller, now_ms: i64) -> Result<Resource, TmfError> {
    let status = r.status_at(now_ms);
    let (resource_status, usage, admin) = match status {
        InventoryStatus::Available => ("available", "idle", "unlocked"),
        InventoryStatus::Reserved => ("reserved", "idle", "unlocked"),
        InventoryStatus::Assigned => ("reserved", "active", "unlocked"),
        InventoryStatus::PortingIn => ("standby", "idle", "locked"),
        InventoryStatus::Active => ("available", "active", "unlocked"),
    };
    let extra: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&r.body).map_err(|e| {
            TmfError::internal(format!(
                "inventory resource {:?}: its characteristics do not decode: {e}",
                r.id
            ))
        })?;
    let mut chars = vec![
        Characteristic {
            name: "inventoryState".into(),
            value: status.name().into(),
        },
        Characteristic {
            name: "portedIn".into(),
            value: r.ported_in.to_string(),
        },
    ];
    for (name, v) in extra {
        chars.push(Characteristic {
            name,
            value: match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
        });
    }
    // The holder, to its own application (the cart's id) and administrators (`<app>/<cart>`
    // of another application's cart) only.
    let own =
        r.holder
            .as_deref()
            .and_then(|h| match h.strip_prefix(&format!("{}/", caller.id())) {
                Some(cart) => Some(cart.to_string()),
                None => caller.0.is_admin().then(|| h.to_string()),
            });
    let mut related_party = Vec::new();
    let mut note = Vec::new();
    if status != InventoryStatus::Available || r.status == InventoryStatus::Active {
        if let Some(id) = own {
            let held = status == InventoryStatus::Reserved;
            related_party.push(RelatedParty {
                id,
                role: if held { "reservedFor" } else { "owner" }.into(),
                referred_type: if held { "ShoppingCart" } else { "ProductOrder" }.into(),
            });
        }
        if status == InventoryStatus::Reserved
            && let Some(until) = r.hold_until_ms
        {
            let date = super::datetime::format_ms(until);
            note.push(Note {
                text: format!("held until {date}"),
                date,
            });
        }
    }
    let msisdn = r.category == "MSISDN";
    Ok(Resource {
        id: r.id.clone(),
        href: format!("{RESOURCES}/{}", r.id),
        category: r.category.clone(),
        name: format!("{} {}", r.category, r.value),
        value: r.value.clone(),
        resource_status: resource_status.into(),
        administrative_state: admin.into(),
        operational_state: "enable".into(),
        usage_state: usage.into(),
        resource_characteristic: chars,
        related_party,
        note,
        kind: if msisdn {
            "LogicalResource"
        } else {
            "PhysicalResource"
        }
        .into(),
    })
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, TmfError> {
    let Path(id) = p.map_err(|e| TmfError::invalid("id", e.body_text()))?;
    tmf630::path_id("resource", &id)
}

/// `category`: MSISDN, or ICCID (SIM accepted).
fn category(v: &str) -> Result<&'static str, TmfError> {
    match v.to_ascii_uppercase().as_str() {
        "MSISDN" => Ok("MSISDN"),
        "ICCID" | "SIM" => Ok("ICCID"),
        _ => Err(TmfError::invalid(
            "category",
            format!("\"{}\": MSISDN or ICCID", clip(v)),
        )),
    }
}

/// `value`: digits, with `*` (any run) and `?` (one digit) for a vanity search; a leading
/// `+` is dropped. As a SQL LIKE pattern.
fn value_pattern(v: &str) -> Result<String, TmfError> {
    let t = v.strip_prefix('+').unwrap_or(v);
    if t.is_empty()
        || t.len() > 24
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'?')
    {
        return Err(TmfError::invalid(
            "value",
            format!(
                "\"{}\": digits, with * (any digits) and ? (one digit), e.g. *777*",
                clip(v)
            ),
        ));
    }
    Ok(t.replace('*', "%").replace('?', "_"))
}

// ---- handlers --------------------------------------------------------------------------------

/// Resources of the inventory. Without `resourceStatus`: the available ones, in a random
/// order (so that customers are not all offered the same numbers); other statuses by value.
#[utoipa::path(
    get, path = "/tmf-api/resourceInventoryManagement/v4/resource", tag = "tmf639",
    params(
        ("category" = Option<String>, Query, description = "MSISDN or ICCID"),
        ("resourceStatus" = Option<String>, Query, description = "available (default), reserved, assigned, portingIn or active"),
        ("value" = Option<String>, Query, description = "The value, or a pattern: * any digits, ? one digit (vanity numbers: *777*)"),
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 10, at most 100)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
    ),
    responses((status = 200, description = "The page of resources", body = [Resource],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_resources(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    settings: Option<Extension<Settings>>,
    uri: Uri,
) -> Response {
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    answer(list(st, caller, &settings, uri).await)
}

async fn list(
    st: ApiState,
    caller: Caller,
    settings: &Settings,
    uri: Uri,
) -> Result<Response, TmfError> {
    let q = query(
        &uri,
        &[
            "category",
            "resourceStatus",
            "value",
            "offset",
            "limit",
            "fields",
        ],
    )?;
    let (offset, limit) = tmf630::paging(&q, DEFAULT_LIMIT, MAX_LIMIT)?;
    let category = param(&q, "category").map(category).transpose()?;
    let status = match param(&q, "resourceStatus") {
        None => InventoryStatus::Available,
        Some(s) => InventoryStatus::from_name(s).ok_or_else(|| {
            TmfError::invalid(
                "resourceStatus",
                format!(
                    "\"{}\": available, reserved, assigned, portingIn or active",
                    clip(s)
                ),
            )
        })?,
    };
    let pattern = param(&q, "value").map(value_pattern).transpose()?;
    let keep: Option<HashSet<String>> = param(&q, "fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let now = crate::store::now_ms();
    let random = status == InventoryStatus::Available;
    let filter = InventoryFilter {
        category: category.map(str::to_string),
        status: Some(status),
        pattern,
        now_ms: now,
        // The random order is of every match: the page is cut after shuffling.
        offset: if random { 0 } else { offset },
        limit: if random { 0 } else { limit },
    };
    let (mut rows, total) = st
        .charging
        .store()
        .inventory_list(filter)
        .await
        .map_err(store_error)?;
    if random {
        let mut rng = match settings.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        rng.shuffle(&mut rows);
        rows = rows.into_iter().skip(offset).take(limit).collect();
    }
    let items = rows
        .iter()
        .map(|r| {
            render(r, &caller, now)
                .map(|v| select(serde_json::to_value(v).unwrap_or_default(), keep.as_ref()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut res = json(StatusCode::OK, &items);
    let h = res.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    h.insert("x-result-count", HeaderValue::from(items.len()));
    Ok(res)
}

/// One resource.
#[utoipa::path(
    get, path = "/tmf-api/resourceInventoryManagement/v4/resource/{id}", tag = "tmf639",
    params(
        ("id" = String, Path, description = "msisdn-<digits> or iccid-<digits>"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return"),
    ),
    responses((status = 200, description = "The resource", body = Resource,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_resource(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(
        async {
            let id = path_id(id)?;
            let q = query(&uri, &["fields"])?;
            let keep: Option<HashSet<String>> = param(&q, "fields").map(|f| {
                f.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
            let row = read(st.charging.store(), &id).await?;
            let v = render(&row, &caller, crate::store::now_ms())?;
            Ok(json(
                StatusCode::OK,
                &select(serde_json::to_value(v).unwrap_or_default(), keep.as_ref()),
            ))
        }
        .await,
    )
}

async fn read(store: &Store, id: &str) -> Result<InventoryRow, TmfError> {
    store
        .inventory(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| TmfError::not_found(format!("no resource \"{}\"", clip(id))))
}

/// Holds a resource for a cart (`resourceStatus: reserved`), releases it (`available`), or
/// (administrators) assigns it (`usageState: active`).
#[utoipa::path(
    patch, path = "/tmf-api/resourceInventoryManagement/v4/resource/{id}", tag = "tmf639",
    params(("id" = String, Path, description = "msisdn-<digits> or iccid-<digits>")),
    request_body(content = ResourceUpdate, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Held (until the note's date), released or \
        assigned", body = Resource, content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_resource(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    settings: Option<Extension<Settings>>,
    id: Result<Path<String>, PathRejection>,
    body: TmfBody,
) -> Response {
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    answer(patch_op(st, caller, &settings, id, body).await)
}

/// The cart or order the patch names.
fn party(u: &ResourceUpdate) -> Result<String, TmfError> {
    let (field, id) = match (&u.related_party, &u.note) {
        (Some(p), _) => match p.first() {
            Some(first) => ("relatedParty[0].id", first.id.as_str()),
            None => return Err(TmfError::invalid("relatedParty", "the cart is required")),
        },
        (None, Some(n)) => match n.first() {
            Some(first) => ("note[0].text", first.text.as_str()),
            None => return Err(TmfError::invalid("note", "the cart is required")),
        },
        (None, None) => {
            return Err(TmfError::invalid(
                "relatedParty",
                "required: [{\"id\": \"<cart id>\"}] (or a note whose text is the cart id)",
            ));
        }
    };
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(TmfError::invalid(
            field,
            format!("\"{}\": 1 to 128 visible ASCII characters, no /", clip(id)),
        ));
    }
    Ok(id.to_string())
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    settings: &Settings,
    id: Result<Path<String>, PathRejection>,
    body: TmfBody,
) -> Result<Response, TmfError> {
    let id = path_id(id)?;
    let members: serde_json::Map<String, serde_json::Value> = body.parse()?;
    if let Some(k) = members.keys().find(|k| {
        !matches!(
            k.as_str(),
            "resourceStatus" | "usageState" | "relatedParty" | "note"
        ) && !k.starts_with('@')
    }) {
        return Err(TmfError::invalid(
            &clip(k),
            "cannot be changed: only resourceStatus (reserved, available), usageState \
             (active) with relatedParty or note naming the cart",
        ));
    }
    let update: ResourceUpdate = body.parse()?;
    let store = st.charging.store();
    let now = crate::store::now_ms();
    let conflict = |row: &InventoryRow, holder: &str| -> TmfError {
        match row.status_at(now) {
            InventoryStatus::Reserved if row.holder.as_deref() != Some(holder) => {
                TmfError::conflict(
                    "CONFLICT",
                    format!("resource {} is held by another cart", row.id),
                )
            }
            s => TmfError::conflict(
                "INVALID_STATE",
                format!("resource {} is {}", row.id, s.name()),
            ),
        }
    };
    match (
        update.resource_status.as_deref(),
        update.usage_state.as_deref(),
    ) {
        (Some("reserved"), None | Some("idle")) => {
            let holder = holder_key(caller.id(), &party(&update)?);
            let hold = i64::try_from(settings.hold.as_millis()).unwrap_or(i64::MAX);
            let won = store
                .reserve_inventory(&id, &holder, now.saturating_add(hold), now)
                .await
                .map_err(store_error)?;
            let row = read(store, &id).await?;
            if !won {
                return Err(conflict(&row, &holder));
            }
            Ok(json(StatusCode::OK, &render(&row, &caller, now)?))
        }
        (Some("available"), None | Some("idle")) => {
            let holder = holder_key(caller.id(), &party(&update)?);
            let won = store
                .release_inventory(&id, &holder, now)
                .await
                .map_err(store_error)?;
            let row = read(store, &id).await?;
            // Nothing held (or a hold that ran out and was taken by nobody): already released.
            if !won && row.status_at(now) != InventoryStatus::Available {
                return Err(conflict(&row, &holder));
            }
            Ok(json(StatusCode::OK, &render(&row, &caller, now)?))
        }
        (None | Some("reserved" | "standby" | "available"), Some("active")) => {
            if !caller.0.is_admin() {
                return Err(TmfError::policy(format!(
                    "application \"{}\" may not assign resources (admin = true; orders \
                     assign them at checkout)",
                    caller.id()
                )));
            }
            let party = party(&update)?;
            let row = read(store, &id).await?;
            let won = if matches!(
                row.status,
                InventoryStatus::PortingIn | InventoryStatus::Active
            ) {
                store
                    .activate_inventory(&id, &party, now)
                    .await
                    .map_err(store_error)?
            } else {
                // The cart's own key: an administrator assigns the hold an application made,
                // named `<app>/<cart>`, or its own cart.
                let holder = if party.contains('/') {
                    party.clone()
                } else {
                    match &row.holder {
                        Some(h) if h.rsplit_once('/').is_some_and(|(_, p)| p == party) => h.clone(),
                        _ => holder_key(caller.id(), &party),
                    }
                };
                store
                    .assign_inventory(&id, &holder, &holder, now)
                    .await
                    .map_err(store_error)?
            };
            let row = read(store, &id).await?;
            if !won {
                return Err(TmfError::conflict(
                    "INVALID_STATE",
                    format!(
                        "resource {} is {}: only a resource reserved by that cart (its hold \
                         running) or being ported in can be assigned",
                        row.id,
                        row.status_at(now).name()
                    ),
                ));
            }
            Ok(json(StatusCode::OK, &render(&row, &caller, now)?))
        }
        (None, None) => Err(TmfError::invalid(
            "resourceStatus",
            "required: reserved (hold for the cart) or available (release)",
        )),
        (Some(s), None | Some("idle")) => Err(TmfError::invalid(
            "resourceStatus",
            format!("\"{}\": only reserved or available can be set", clip(s)),
        )),
        (_, Some(u)) => Err(TmfError::invalid(
            "usageState",
            format!(
                "\"{}\": only active (assign; administrators) can be set",
                clip(u)
            ),
        )),
    }
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(list_resources, retrieve_resource, patch_resource),
    components(schemas(
        Resource,
        Characteristic,
        RelatedParty,
        Note,
        ResourceUpdate,
        PartyInput,
        NoteInput,
        TmfError,
    )),
    modifiers(&TmfErrors)
)]
pub struct Tmf639Doc;

/// Statuses every TMF639 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input (INVALID_ARGUMENT, the field named)"),
    ("401", "Authentication required (UNAUTHENTICATED)"),
    (
        "403",
        "Assigning needs an administrator application (PERMISSION_DENIED)",
    ),
    ("404", "No such resource (NOT_FOUND)"),
    (
        "409",
        "Held by another cart (CONFLICT), or not in a state that allows it (INVALID_STATE)",
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

struct TmfErrors;

impl Modify for TmfErrors {
    fn modify(&self, doc: &mut Doc) {
        tmf630::document_errors(doc, BASE, TMF_ERRORS);
    }
}

/// Imports the `[inventory] file` pool when the inventory is empty (`gateway serve` at
/// start); how many were imported (0: the inventory had resources, no file is set, or the
/// file does not exist: a warning). A file that does not parse is an error.
pub async fn load_pool(
    store: &Store,
    cfg: &crate::config::inventory::InventoryConfig,
) -> Result<usize, String> {
    let Some(path) = cfg.pool() else {
        return Ok(0);
    };
    let (_, total) = store
        .inventory_list(InventoryFilter {
            limit: 1,
            ..InventoryFilter::default()
        })
        .await
        .map_err(|e| format!("inventory: {e}"))?;
    if total > 0 {
        return Ok(0);
    }
    // A checkout without the demo pool (a copy of conf/gateway.toml alone) still serves.
    if !path.exists() {
        tracing::warn!(file = %path.display(), "inventory.file not found: no pool imported");
        return Ok(0);
    }
    import::import_file(store, path)
        .await
        .map_err(|e| format!("inventory.file: {e}"))
}
