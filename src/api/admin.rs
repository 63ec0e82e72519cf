//! Admin reads for disputes: the stored record of operations (by `referenceCode`,
//! application, reservation or state) and of reservations, as JSON. Read only; `admin = true`
//! applications only.
//!
//! ```text
//! GET /admin/operations?referenceCode=order-1[&app=shop][&reservationId=..][&state=..][&limit=100]
//! GET /admin/reservations/{id}          -> the reservation and its operations
//! ```

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, MessageId, clip};
use crate::store::{OpState, OperationFilter, OperationRow, ReservationRow};

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
