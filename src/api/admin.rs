//! Admin reads for disputes: the stored record of operations (by `referenceCode`,
//! application, reservation or state) and of reservations, as JSON. Read only; `admin = true`
//! applications only.
//!
//! ```text
//! GET /admin/operations?referenceCode=order-1[&app=shop][&reservationId=..][&state=..][&limit=100]
//! GET /admin/reservations/{id}          -> the reservation and its operations
//! GET /admin/events[?state=dead][&resource=..][&app=..][&limit=100]  -> {total, events}
//! GET /admin/events/{id}                -> one outbox event (header names, not values)
//! POST /admin/events/{id}/retry         -> a dead or pending event sent again from now
//! ```
//!
//! The outbox routes show an event's header names only: their values carry the consumers'
//! credentials (`Authorization`).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, MessageId, clip};
use crate::store::{
    EventFilter, EventRow, EventState, OpState, OperationFilter, OperationRow, ReservationRow,
};

/// Most records one listing returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// Filters of `GET /admin/operations` (all optional, combined with AND).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OperationQuery {
    /// The `referenceCode` the application sent.
    pub reference_code: Option<String>,
    /// The application id.
    pub app: Option<String>,
    /// Operations on this reservation.
    pub reservation_id: Option<String>,
    /// `pending`, `succeeded`, `refused`, `unknown` or `retryable`.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// One stored operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    pub id: String,
    pub app: String,
    /// The idempotency key (`referenceCode` or `Idempotency-Key`).
    pub key: Option<String>,
    /// `charge`, `refund`, `split`, `split-leg`, `compensation`, `reserve`,
    /// `reserve-additional`, `charge-reservation`, `release`.
    pub kind: String,
    /// `pending`, `succeeded`, `refused`, `unknown`, `retryable`.
    pub state: String,
    pub reference_code: Option<String>,
    pub reservation_id: Option<String>,
    /// The split this leg belongs to, or the leg a compensation refunds.
    pub parent: Option<String>,
    /// Diameter Session-Id of the CCR.
    pub session_id: String,
    pub request_number: u32,
    pub subscriber: Option<String>,
    #[schema(value_type = Option<String>, example = "4.99")]
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    /// Result-Code of the answer, once one came.
    pub result_code: Option<u32>,
    /// The recorded request (what is re-sent with the T flag if needed).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The outcome as the gateway reported it.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<OperationRow> for OperationRecord {
    fn from(r: OperationRow) -> Self {
        let json = |s: &str| {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
        };
        Self {
            request: json(&r.request),
            outcome: r.outcome.as_deref().map(json),
            id: r.id,
            app: r.app,
            key: r.key,
            kind: r.kind,
            state: r.state.name().to_string(),
            reference_code: r.reference_code,
            reservation_id: r.reservation_id,
            parent: r.parent,
            session_id: r.session_id,
            request_number: r.request_number,
            subscriber: r.subscriber,
            amount: r.amount,
            currency: r.currency,
            result_code: r.result_code,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

/// A stored reservation and its operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationRecord {
    pub id: String,
    pub app: String,
    pub session_id: String,
    pub subscriber: String,
    pub currency: String,
    /// Money reserved at the OCS now.
    #[schema(value_type = String, example = "10.00")]
    pub reserved: Decimal,
    /// Money charged against it so far.
    #[schema(value_type = String, example = "4.99")]
    pub charged: Decimal,
    pub last_request_number: u32,
    /// `open`, `released`, `expired`, `gone`.
    pub state: String,
    pub expires_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub operations: Vec<OperationRecord>,
}

impl ReservationRecord {
    fn new(r: ReservationRow, operations: Vec<OperationRecord>) -> Self {
        Self {
            id: r.id,
            app: r.app,
            session_id: r.session_id,
            subscriber: r.subscriber,
            currency: r.currency,
            reserved: r.reserved,
            charged: r.charged,
            last_request_number: r.last_request_number,
            state: r.state.name().to_string(),
            expires_ms: r.expires_ms,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            operations,
        }
    }
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, MessageId::Svc0001, e)
}

/// Stored operations matching the filters, newest first.
#[utoipa::path(get, path = "/admin/operations", tag = "admin",
    params(OperationQuery),
    responses((status = 200, description = "Matching operations", body = [OperationRecord])),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn operations(State(st): State<ApiState>, uri: Uri) -> Response {
    let q = match axum::extract::Query::<OperationQuery>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => return ApiError::invalid("query", e.body_text()).into_response(),
    };
    let state = match q.state.as_deref().map(|s| (s, OpState::from_name(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return ApiError::invalid(
                "state",
                format!(
                    "\"{}\": pending, succeeded, refused, unknown or retryable",
                    clip(s)
                ),
            )
            .into_response();
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return ApiError::invalid("limit", format!("1 to {MAX_LIMIT}")).into_response();
    }
    let filter = OperationFilter {
        app: q.app,
        reference_code: q.reference_code,
        reservation_id: q.reservation_id,
        state,
        limit,
    };
    match st.charging.store().operations(filter).await {
        Ok(rows) => axum::Json(
            rows.into_iter()
                .map(OperationRecord::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// A stored reservation (any application's) and its operations.
#[utoipa::path(get, path = "/admin/reservations/{id}", tag = "admin",
    params(("id" = String, Path, description = "The reservation identifier")),
    responses(
        (status = 200, description = "The reservation", body = ReservationRecord),
        (status = 404, description = "No such reservation", body = super::ErrorBody)),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn reservation(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let store = st.charging.store();
    let row = match store.reservation(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                MessageId::Svc0002,
                format!("reservationIdentifier: no reservation \"{}\"", clip(&id)),
            )
            .into_response();
        }
        Err(e) => return store_error(e).into_response(),
    };
    let ops = match store
        .operations(OperationFilter {
            reservation_id: Some(id),
            limit: MAX_LIMIT,
            ..OperationFilter::default()
        })
        .await
    {
        Ok(o) => o,
        Err(e) => return store_error(e).into_response(),
    };
    axum::Json(ReservationRecord::new(
        row,
        ops.into_iter().map(OperationRecord::from).collect(),
    ))
    .into_response()
}

/// Filters of `GET /admin/events` (all optional, combined with AND).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// Events about this resource (a payment id, a top-up id).
    pub resource: Option<String>,
    /// The application id.
    pub app: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Who is delivering an event, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventLease {
    /// The gateway instance (`cluster.instance_id`).
    pub owner: String,
    /// Milliseconds since the Unix epoch.
    pub until_ms: i64,
}

/// One outbox event, as stored, without its header values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// The stable id (the CloudEvent `id`; also sent as `X-Event-Id`).
    pub id: String,
    pub app: String,
    /// The event type.
    pub kind: String,
    /// The resource it is about.
    pub resource: Option<String>,
    /// Where it is posted (credentials in its query shown as `***`).
    pub url: String,
    /// The names of the extra request headers (values withheld: they carry credentials).
    pub headers: Vec<String>,
    pub content_type: String,
    /// The body as posted (JSON when it is JSON, else the text).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// `pending`, `delivered`, `dead`.
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is next due, while pending (ms since the epoch).
    pub next_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub lease: Option<EventLease>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the receiver took it.
    pub delivered_ms: Option<i64>,
}

impl From<EventRow> for EventRecord {
    fn from(e: EventRow) -> Self {
        Self {
            body: serde_json::from_str(&e.body)
                .unwrap_or_else(|_| serde_json::Value::String(e.body.clone())),
            headers: e.headers.into_iter().map(|(n, _)| n).collect(),
            lease: e.lease.map(|l| EventLease {
                owner: l.owner,
                until_ms: l.until_ms,
            }),
            id: e.id,
            app: e.app,
            kind: e.kind,
            resource: e.resource,
            // A checkout token travels in the URL (`?apikey=`, the spec's apiKey scheme).
            url: crate::notify::redact_url(&e.url),
            content_type: e.content_type,
            state: e.state.name().to_string(),
            attempts: e.attempts,
            next_ms: e.next_ms,
            last_error: e.last_error,
            created_ms: e.created_ms,
            updated_ms: e.updated_ms,
            delivered_ms: e.delivered_ms,
        }
    }
}

/// A page of outbox events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// How many match in all.
    pub total: usize,
    /// At most `limit` of them, newest first.
    pub events: Vec<EventRecord>,
}

fn no_event(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        MessageId::Svc0002,
        format!("eventId: no event \"{}\"", clip(id)),
    )
}

/// Outbox events matching the filters, newest first, with how many match in all.
#[utoipa::path(get, path = "/admin/events", tag = "admin",
    params(EventQuery),
    responses((status = 200, description = "Matching events", body = EventList)),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn events(State(st): State<ApiState>, uri: Uri) -> Response {
    let q = match axum::extract::Query::<EventQuery>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => return ApiError::invalid("query", e.body_text()).into_response(),
    };
    let state = match q.state.as_deref().map(|s| (s, EventState::from_name(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return ApiError::invalid(
                "state",
                format!("\"{}\": pending, delivered or dead", clip(s)),
            )
            .into_response();
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return ApiError::invalid("limit", format!("1 to {MAX_LIMIT}")).into_response();
    }
    let filter = EventFilter {
        app: q.app,
        state,
        resource: q.resource,
        limit,
    };
    match st.charging.store().events(filter).await {
        Ok((rows, total)) => axum::Json(EventList {
            total,
            events: rows.into_iter().map(EventRecord::from).collect(),
        })
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// One outbox event (any application's).
#[utoipa::path(get, path = "/admin/events/{id}", tag = "admin",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event", body = EventRecord),
        (status = 404, description = "No such event", body = super::ErrorBody)),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn event(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    match st.charging.store().event(&id).await {
        Ok(Some(e)) => axum::Json(EventRecord::from(e)).into_response(),
        Ok(None) => no_event(&id).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// Sends a dead (or pending) event again: pending, due now, attempts from 0, lease cleared.
/// A delivered event is not sent again (409), nor one an instance is posting now (409).
#[utoipa::path(post, path = "/admin/events/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event, pending again", body = EventRecord),
        (status = 404, description = "No such event", body = super::ErrorBody),
        (status = 409, description = "The event was delivered, or is being posted now", body = super::ErrorBody)),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn retry_event(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let store = st.charging.store();
    let mut e = match store.event(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return no_event(&id).into_response(),
        Err(e) => return store_error(e).into_response(),
    };
    let now = crate::store::now_ms();
    if e.state == EventState::Delivered {
        return ApiError::new(
            StatusCode::CONFLICT,
            MessageId::Svc0002,
            format!("eventId: event \"{}\" was delivered already", clip(&id)),
        )
        .into_response();
    }
    if e.state == EventState::Pending
        && let Some(l) = e.lease.as_ref().filter(|l| l.until_ms > now)
    {
        return ApiError::new(
            StatusCode::CONFLICT,
            MessageId::Svc0001,
            format!(
                "eventId: event \"{}\" is being posted by instance \"{}\" now; retry later",
                clip(&id),
                clip(&l.owner)
            ),
        )
        .into_response();
    }
    e.state = EventState::Pending;
    e.next_ms = now;
    e.attempts = 0;
    e.lease = None;
    e.updated_ms = now;
    match store.put_event(e.clone()).await {
        Ok(()) => axum::Json(EventRecord::from(e)).into_response(),
        Err(e) => store_error(e).into_response(),
    }
}
