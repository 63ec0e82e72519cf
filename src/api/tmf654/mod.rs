//! TMF654 Prepay Balance Management v4 (API.md 5, 9.4): monetary top-ups as CCR EVENT
//! REFUND_ACCOUNT through [`crate::charging::Charging::refund`], automatic (recurring)
//! top-ups run by a scheduler, and what RFC 4006 can honestly say about a balance.
//!
//! ```text
//! POST   /tmf-api/prepayBalanceManagement/v4/topupBalance        201 TopupBalance (completed | failed | created)
//! GET    /tmf-api/prepayBalanceManagement/v4/topupBalance        200 [TopupBalance]  X-Total-Count, X-Result-Count
//! GET    /tmf-api/prepayBalanceManagement/v4/topupBalance/{id}   200 TopupBalance
//! PATCH  /tmf-api/prepayBalanceManagement/v4/topupBalance/{id}   200 {"status": "cancelled"} stops an automatic top-up
//! DELETE /tmf-api/prepayBalanceManagement/v4/topupBalance/{id}   204 the same
//! GET    /tmf-api/prepayBalanceManagement/v4/bucket?logicalResource.value=<MSISDN>[&amount=&units=]  200 [Bucket]
//! GET    /tmf-api/prepayBalanceManagement/v4/bucket/{id}[?amount=&units=]                            200 Bucket
//! POST   /tmf-api/prepayBalanceManagement/v4/hub   {callback, query?}   201 a listener of this application's top-up events
//! GET    /tmf-api/prepayBalanceManagement/v4/hub/{id}                    200 the listener
//! DELETE /tmf-api/prepayBalanceManagement/v4/hub/{id}                    204 unregistered
//! ```
//!
//! Every top-up creation and status change (requests, the scheduler, the periods of automatic
//! top-ups) is recorded with its events (`TopupBalanceCreateEvent`,
//! `TopupBalanceStateChangeEvent`) for the listeners of its application in one commit
//! ([`hub`]); the durable outbox delivers them.
//!
//! Top-up outcomes (API.md 9.4, recommended column): 2001 -> 201 `completed`; 4010, 4012,
//! 5003 and other refusals -> 201 `failed` with the Diameter name in `reason`; 5030, 5031 ->
//! 400 Error (the top-up is kept as `failed`); no answer in time, or no OCS reachable ->
//! 201 `created`, never `completed` until the OCS confirms: the outcome is learnt through the
//! charging layer's idempotency (GET, and the scheduler). [`error::from_failure`] is the one
//! mapping. Authentication is the gateway's (`[[apps]]`: Basic, X-API-Key, Bearer), refused
//! in the TMF Error model; policy by the operation names `topup-balance` and
//! `query-balance`, `allowed_currencies` and `max_amount` (per top-up, per period).

pub mod error;
pub mod hub;
pub mod model;
pub mod schedule;
pub mod scheduler;
pub mod topups;
pub mod validate;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use time::OffsetDateTime;
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi};

use self::error::TmfError;
use self::model::{
    BalanceCheck, Bucket, BucketRef, LogicalResourceRef, PartyAccountRef, Quantity, QuantityInput,
    RelatedTopupBalance, TimePeriod, TopupBalance, TopupBalanceCreate, TopupBalanceUpdate,
    TopupLedger, TopupStatus,
};
use self::schedule::RecurringPeriod;
use self::topups::{BASE, Topups};
use self::validate::{TmfBody, idempotency_key};
use super::auth::Caller;
use super::tmf630::{self, answer, fields, json, number, param, query, select};
use super::{ApiState, Route};
use crate::api::payment::parse_decimal;
use crate::credit_control::Money;

pub use self::schedule::{Clock, ManualClock, SystemClock};
pub use self::scheduler::{Scheduler, SchedulerHandle, SchedulerSettings};

/// Policy name of creating, reading and cancelling top-ups.
pub const TOPUP_OPERATION: &str = "topup-balance";
/// Policy name of the balance queries (they send CHECK_BALANCE to the OCS).
pub const QUERY_OPERATION: &str = "query-balance";
/// Most top-ups one listing returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

const TOPUPS: &str = "/tmf-api/prepayBalanceManagement/v4/topupBalance";
const TOPUP: &str = "/tmf-api/prepayBalanceManagement/v4/topupBalance/{id}";
const BUCKETS: &str = "/tmf-api/prepayBalanceManagement/v4/bucket";
const BUCKET: &str = "/tmf-api/prepayBalanceManagement/v4/bucket/{id}";

/// The family's routes, for [`super::routes`]. Their handlers authenticate (the
/// [`TmfCaller`] extractor), so that a refusal is a TMF Error.
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, TOPUPS, post(create_topup)),
        r(Method::GET, TOPUPS, get(list_topups)),
        r(Method::GET, TOPUP, get(retrieve_topup)),
        r(Method::PATCH, TOPUP, patch(patch_topup)),
        r(Method::DELETE, TOPUP, delete(delete_topup)),
        r(Method::GET, BUCKETS, get(list_buckets)),
        r(Method::GET, BUCKET, get(retrieve_bucket)),
        r(Method::POST, hub::HUB, post(hub::register)),
        r(Method::GET, hub::HUB_ID, get(hub::retrieve)),
        r(Method::DELETE, hub::HUB_ID, delete(hub::unregister)),
    ]
}

// ---- authentication and policy ---------------------------------------------------------------

/// The authenticated application, or a 401 TMF Error (with the Basic challenge).
pub struct TmfCaller(pub Caller);

impl FromRequestParts<ApiState> for TmfCaller {
    type Rejection = TmfError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, TmfError> {
        match st.apps.identify(&parts.headers).await {
            Ok(subject) => {
                tracing::Span::current().record("app", subject.app.id());
                let caller = subject.app.clone();
                parts.extensions.insert(subject);
                Ok(Self(caller))
            }
            Err(e) => {
                let why = e
                    .message
                    .split_once("authentication required: ")
                    .map(|(_, w)| w.to_string())
                    .unwrap_or(e.message);
                Err(TmfError::unauthenticated(why))
            }
        }
    }
}

fn permit(caller: &Caller, op: &str) -> Result<(), TmfError> {
    if caller.may_call(op) {
        Ok(())
    } else {
        Err(TmfError::policy(caller.refusal(op, op)))
    }
}

fn permit_money(caller: &Caller, money: &Money) -> Result<(), TmfError> {
    let code = money.currency.code();
    if !caller.may_use_currency(code) {
        return Err(TmfError::policy(format!(
            "application \"{}\" may not top up in {code} (allowed_currencies)",
            caller.id()
        )));
    }
    if let Some(max) = caller.max_amount()
        && money.amount > max
    {
        return Err(TmfError::policy(format!(
            "the amount {money} is above the limit of application \"{}\" ({max} per top-up)",
            caller.id()
        )));
    }
    Ok(())
}

/// Runs `work` in its own task (a client hanging up never cuts a top-up between its record
/// and its outcome).
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, TmfError>> + Send + 'static,
) -> Result<T, TmfError> {
    tokio::spawn(work).await.map_err(|e| {
        TmfError::internal(format!(
            "the top-up task failed ({e}); read the top-up to learn its outcome"
        ))
    })?
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, TmfError> {
    let Path(id) = p.map_err(|e| TmfError::invalid("id", e.body_text()))?;
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(TmfError::not_found(format!(
            "no resource \"{}\"",
            super::error::clip(&id)
        )));
    }
    Ok(id)
}

// ---- top-ups ---------------------------------------------------------------------------------

/// Tops up a subscriber's monetary balance (CCR EVENT, REFUND_ACCOUNT), once, or every
/// `recurringPeriod` with `isAutoTopup`.
#[utoipa::path(
    post, path = "/tmf-api/prepayBalanceManagement/v4/topupBalance", tag = "tmf654",
    request_body(content = TopupBalanceCreate, content_type = "application/json;charset=utf-8"),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Optional, 1 to 256 visible ASCII characters, per application: a retry \
            with the same key and request answers the same top-up (never a second one); with \
            another request, 409")),
    responses(
        (status = 201, description = "Accepted: `completed` (the OCS confirmed), `failed` (the \
            OCS refused; `reason` names the Diameter result; nothing was topped up) or \
            `created` (outcome not known yet, or no OCS reachable: the gateway resolves it; \
            read it again). For an automatic top-up, the parent (`created` while periods are \
            to run) listing the runs made so far in `balanceTopup`.",
            body = TopupBalance, content_type = "application/json;charset=utf-8",
            headers(("Location" = String, description = "The top-up's href"))),
    ),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn create_topup(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    headers: HeaderMap,
    body: TmfBody,
) -> Response {
    answer(create(st, caller, headers, body).await)
}

async fn create(
    st: ApiState,
    caller: Caller,
    headers: HeaderMap,
    body: TmfBody,
) -> Result<Response, TmfError> {
    permit(&caller, TOPUP_OPERATION)?;
    let key = idempotency_key(&headers)?;
    let req: TopupBalanceCreate = body.parse()?;
    let now = OffsetDateTime::now_utc();
    let new = validate::new_topup(req, now)?;
    permit_money(&caller, &new.money)?;
    let topups = Topups::new(Arc::clone(&st.charging));
    let app = caller.id().to_string();
    let created =
        detached(async move { topups.create(&app, key.as_deref(), new, now).await }).await?;
    let rec = created.record;
    tracing::Span::current().record("operation_id", rec.view.id.as_str());
    if rec.view.status == TopupStatus::Failed
        && let Some(e) = rec.error
    {
        return Err(e);
    }
    let mut res = json(StatusCode::CREATED, &rec.view);
    if let Ok(v) = HeaderValue::from_str(&rec.view.href) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if created.replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// The caller's top-ups, newest first (automatic top-ups and each of their runs included).
#[utoipa::path(
    get, path = "/tmf-api/prepayBalanceManagement/v4/topupBalance", tag = "tmf654",
    params(
        ("offset" = Option<usize>, Query, description = "Skip this many (default 0)"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return (id, href and @type always)"),
        ("status" = Option<TopupStatus>, Query, description = "Only top-ups with this status"),
    ),
    responses((status = 200, description = "The page of top-ups", body = [TopupBalance],
        content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "How many match in all"),
            ("X-Result-Count" = usize, description = "How many are in this answer")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_topups(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    uri: Uri,
) -> Response {
    answer(list(st, caller, uri).await)
}

async fn list(st: ApiState, caller: Caller, uri: Uri) -> Result<Response, TmfError> {
    permit(&caller, TOPUP_OPERATION)?;
    let q = query(&uri, &["offset", "limit", "fields", "status"])?;
    let offset = number(&q, "offset")?.unwrap_or(0);
    let limit = number(&q, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(TmfError::invalid(
            "limit",
            format!("1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
        ));
    }
    let status = match param(&q, "status") {
        None => None,
        Some(s) => Some(TopupStatus::from_name(s).ok_or_else(|| {
            TmfError::invalid(
                "status",
                format!(
                    "\"{}\": created, failed, cancelled or completed",
                    super::error::clip(s)
                ),
            )
        })?),
    };
    let keep = fields(&q);
    let (records, total) = Topups::new(Arc::clone(&st.charging))
        .list(caller.id(), status, offset, limit)
        .await?;
    let items: Vec<serde_json::Value> = records
        .into_iter()
        .map(|r| {
            select(
                serde_json::to_value(&r.view).unwrap_or_default(),
                keep.as_ref(),
            )
        })
        .collect();
    let mut res = json(StatusCode::OK, &items);
    let h = res.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    h.insert("x-result-count", HeaderValue::from(items.len()));
    Ok(res)
}

/// One of the caller's top-ups; a pending one is brought up to date first (from the
/// charging record: no request is sent by reading).
#[utoipa::path(
    get, path = "/tmf-api/prepayBalanceManagement/v4/topupBalance/{id}", tag = "tmf654",
    params(
        ("id" = String, Path, description = "The top-up id"),
        ("fields" = Option<String>, Query, description = "Comma-separated members to return"),
    ),
    responses((status = 200, description = "The top-up", body = TopupBalance,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_topup(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(retrieve(st, caller, id, uri).await)
}

async fn retrieve(
    st: ApiState,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Response, TmfError> {
    permit(&caller, TOPUP_OPERATION)?;
    let id = path_id(id)?;
    let q = query(&uri, &["fields"])?;
    let topups = Topups::new(Arc::clone(&st.charging));
    let app = caller.id().to_string();
    let now = OffsetDateTime::now_utc();
    let rec = detached(async move { topups.get(&app, &id, now).await }).await?;
    let keep = fields(&q);
    Ok(json(
        StatusCode::OK,
        &select(
            serde_json::to_value(&rec.view).unwrap_or_default(),
            keep.as_ref(),
        ),
    ))
}

/// Cancels an automatic top-up (`{"status": "cancelled"}`): no further period runs.
#[utoipa::path(
    patch, path = "/tmf-api/prepayBalanceManagement/v4/topupBalance/{id}", tag = "tmf654",
    params(("id" = String, Path, description = "The automatic top-up's id")),
    request_body(content = TopupBalanceUpdate, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Cancelled (again: the same answer)", body = TopupBalance,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn patch_topup(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    body: TmfBody,
) -> Response {
    answer(patch_op(st, caller, id, body).await)
}

async fn patch_op(
    st: ApiState,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: TmfBody,
) -> Result<Response, TmfError> {
    permit(&caller, TOPUP_OPERATION)?;
    let id = path_id(id)?;
    let members: serde_json::Map<String, serde_json::Value> = body.parse()?;
    if let Some(k) = members
        .keys()
        .find(|k| k.as_str() != "status" && !k.starts_with('@'))
    {
        return Err(TmfError::invalid(
            &super::error::clip(k),
            "cannot be changed: only status (cancelled) can",
        ));
    }
    let update: TopupBalanceUpdate = body.parse()?;
    match update.status.as_deref() {
        Some("cancelled") => {}
        None => return Err(TmfError::invalid("status", "required (cancelled)")),
        Some(other) => {
            return Err(TmfError::invalid(
                "status",
                format!(
                    "\"{}\": only cancelled can be set (to stop an automatic top-up)",
                    super::error::clip(other)
                ),
            ));
        }
    }
    let rec = cancel(&st, &caller, id).await?;
    Ok(json(StatusCode::OK, &rec.view))
}

/// Cancels an automatic top-up, as PATCH `{"status": "cancelled"}` does.
#[utoipa::path(
    delete, path = "/tmf-api/prepayBalanceManagement/v4/topupBalance/{id}", tag = "tmf654",
    params(("id" = String, Path, description = "The automatic top-up's id")),
    responses((status = 204, description = "Cancelled: no further period runs")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn delete_topup(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(
        async {
            permit(&caller, TOPUP_OPERATION)?;
            let id = path_id(id)?;
            cancel(&st, &caller, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn cancel(st: &ApiState, caller: &Caller, id: String) -> Result<topups::Record, TmfError> {
    let topups = Topups::new(Arc::clone(&st.charging));
    let app = caller.id().to_string();
    let now = OffsetDateTime::now_utc();
    detached(async move { topups.cancel(&app, &id, now).await }).await
}

// ---- buckets ---------------------------------------------------------------------------------

/// `amount` and `units` of a balance query, both or neither.
fn query_amount(q: &[(String, String)]) -> Result<Option<Money>, TmfError> {
    match (param(q, "amount"), param(q, "units")) {
        (None, None) => Ok(None),
        (a, u) => {
            let value = match a {
                Some(a) => Some(parse_decimal(a).map_err(|e| TmfError::invalid("amount", e))?),
                None => None,
            };
            validate::amount("query", value, u.map(str::to_string)).map(Some)
        }
    }
}

/// The subscriber's monetary bucket: `logicalResource.value` (or `logicalResource.id`) is
/// required; with `amount` and `units`, the OCS is asked whether the account covers it.
#[utoipa::path(
    get, path = "/tmf-api/prepayBalanceManagement/v4/bucket", tag = "tmf654",
    params(
        ("logicalResource.value" = Option<String>, Query, description = "The subscriber's MSISDN (required, or logicalResource.id)"),
        ("logicalResource.id" = Option<String>, Query, description = "The same, as an id"),
        ("amount" = Option<String>, Query, description = "With units: ask the OCS (CHECK_BALANCE) whether the account covers this amount; nothing is reserved or charged"),
        ("units" = Option<String>, Query, description = "ISO 4217 code of amount"),
    ),
    responses((status = 200, description = "The subscriber's bucket (one). No remainingValue: \
        RFC 4006 gives no numeric balance", body = [Bucket], content_type = "application/json;charset=utf-8",
        headers(
            ("X-Total-Count" = usize, description = "1"),
            ("X-Result-Count" = usize, description = "1")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn list_buckets(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    uri: Uri,
) -> Response {
    answer(
        async {
            permit(&caller, QUERY_OPERATION)?;
            let q = query(
                &uri,
                &[
                    "logicalResource.value",
                    "logicalResource.id",
                    "amount",
                    "units",
                ],
            )?;
            let (field, raw) = match (
                param(&q, "logicalResource.value"),
                param(&q, "logicalResource.id"),
            ) {
                (Some(v), _) => ("logicalResource.value", v),
                (None, Some(v)) => ("logicalResource.id", v),
                (None, None) => {
                    return Err(TmfError::invalid(
                        "logicalResource.value",
                        "required: the subscriber's MSISDN (the gateway cannot list every \
                         subscriber's bucket)",
                    ));
                }
            };
            let digits = validate::msisdn(field, raw)?;
            let amount = query_amount(&q)?;
            let b = bucket(&st, &caller, digits, amount).await?;
            let mut res = json(StatusCode::OK, &[b]);
            res.headers_mut()
                .insert("x-total-count", HeaderValue::from(1));
            res.headers_mut()
                .insert("x-result-count", HeaderValue::from(1));
            Ok(res)
        }
        .await,
    )
}

/// A bucket by id (`msisdn-<number>`); with `amount` and `units`, the OCS is asked whether
/// the account covers it.
#[utoipa::path(
    get, path = "/tmf-api/prepayBalanceManagement/v4/bucket/{id}", tag = "tmf654",
    params(
        ("id" = String, Path, description = "msisdn-<E.164 number>, e.g. msisdn-34671999000"),
        ("amount" = Option<String>, Query, description = "With units: CHECK_BALANCE for this amount"),
        ("units" = Option<String>, Query, description = "ISO 4217 code of amount"),
    ),
    responses((status = 200, description = "The bucket. No remainingValue: RFC 4006 gives no \
        numeric balance", body = Bucket, content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve_bucket(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    answer(
        async {
            permit(&caller, QUERY_OPERATION)?;
            let id = path_id(id)?;
            let digits = validate::bucket_path_id(&id)?;
            let q = query(&uri, &["amount", "units"])?;
            let amount = query_amount(&q)?;
            let b = bucket(&st, &caller, digits, amount).await?;
            Ok(json(StatusCode::OK, &b))
        }
        .await,
    )
}

async fn bucket(
    st: &ApiState,
    caller: &Caller,
    digits: String,
    amount: Option<Money>,
) -> Result<Bucket, TmfError> {
    let topups = Topups::new(Arc::clone(&st.charging));
    let app = caller.id().to_string();
    let now = OffsetDateTime::now_utc();
    detached(async move { topups.bucket(&app, &digits, amount, now).await }).await
}

// ---- OpenAPI ---------------------------------------------------------------------------------

/// The family's part of the OpenAPI document (merged into [`super::openapi::document`]).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_topup,
        list_topups,
        retrieve_topup,
        patch_topup,
        delete_topup,
        list_buckets,
        retrieve_bucket,
        hub::register,
        hub::retrieve,
        hub::unregister,
    ),
    components(schemas(
        hub::EventSubscription,
        hub::EventSubscriptionInput,
        TopupBalance,
        TopupBalanceCreate,
        TopupBalanceUpdate,
        TopupStatus,
        Quantity,
        QuantityInput,
        BucketRef,
        PartyAccountRef,
        LogicalResourceRef,
        TimePeriod,
        RelatedTopupBalance,
        RecurringPeriod,
        Bucket,
        BalanceCheck,
        TopupLedger,
        TmfError,
    )),
    // Its tag (tmf654) is described with every family's in `api::openapi::FAMILIES`.
    modifiers(&TmfErrors)
)]
pub struct Tmf654Doc;

/// Statuses every TMF654 route may answer with a TMF Error.
pub const TMF_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input (the field named; nothing topped up), or the OCS does not know the \
         subscriber (code 5030) or cannot rate the amount (5031)",
    ),
    (
        "401",
        "Authentication required (UNAUTHENTICATED); WWW-Authenticate: Basic realm=\"tmf654\"",
    ),
    (
        "403",
        "The application's policy forbids it (PERMISSION_DENIED: operation, currency, amount)",
    ),
    (
        "404",
        "No such top-up of this application, or no such bucket (NOT_FOUND; 5030 on a bucket query)",
    ),
    (
        "409",
        "Idempotency-Key used for another request (CONFLICT), or the top-up cannot be \
         cancelled (INVALID_STATE)",
    ),
    (
        "413",
        "Body larger than http.max_body_bytes (PAYLOAD_TOO_LARGE)",
    ),
    (
        "415",
        "Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE)",
    ),
    (
        "500",
        "Gateway fault (INTERNAL): the record could not be written; retry with the same \
         Idempotency-Key to learn the outcome",
    ),
    (
        "501",
        "Not expressible in RFC 4006 here (NOT_IMPLEMENTED): non-monetary usageType, voucher, \
         validFor on a one-time top-up",
    ),
    (
        "503",
        "No OCS available for a balance query (UNAVAILABLE): retry",
    ),
];

struct TmfErrors;

impl Modify for TmfErrors {
    fn modify(&self, doc: &mut Doc) {
        tmf630::document_errors(doc, BASE, TMF_ERRORS);
    }
}
