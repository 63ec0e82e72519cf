//! CAMARA notifications (async mode): the `sink` and `sinkCredential` of a request checked,
//! the CloudEvents 1.0 a payment's or refund's state changes cause (carrier-billing v0.5.0 and
//! carrier-billing-refund v0.3.0 callbacks, API.md 1.5 and 2), and the recovery pass that
//! finishes async resources a stopped process left `processing`.
//!
//! ```text
//! request: sink (Destinations::check: https, public or allowed addresses)  else 400 INVALID_SINK
//!          sinkCredential: credentialType ACCESSTOKEN                      else 400 INVALID_CREDENTIAL
//!                          accessTokenType bearer, not expired              else 400 INVALID_TOKEN
//!                          accessToken, accessTokenExpiresUtc               else 400 INVALID_ARGUMENT
//! state change -> ResourceRow + EventRow (one transaction) -> outbox worker POSTs
//!     Content-Type: application/cloudevents+json, Authorization: Bearer <accessToken>
//!     {"id","source","specversion":"1.0","type","time","datacontenttype":"application/json","data"}
//! ```
//!
//! An event written after the sink's token expired is recorded `dead` (never posted: the
//! receiver would refuse it, and the specification says the client stops receiving
//! notifications then); an operator may still send it again.

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{CamaraError, code};
use super::payments::{PaymentDoc, Pending, Status};
use super::refunds::{RefundDoc, Status as RefundStatus};
use super::{PAYMENTS, REFUNDS, parse_rfc3339, rfc3339};
use crate::api::ApiState;
use crate::store::{EventRow, EventState, now_ms};

/// `type` of the payment events (carrier-billing v0.5.0 `CloudEvent` discriminator).
pub const PAYMENT_PENDING_VALIDATION: &str =
    "org.camaraproject.carrier-billing.v0.payment-pending-validation";
pub const PAYMENT_RESERVED: &str = "org.camaraproject.carrier-billing.v0.payment-reserved";
pub const PAYMENT_COMPLETED: &str = "org.camaraproject.carrier-billing.v0.payment-completed";
pub const PAYMENT_CANCELLED: &str = "org.camaraproject.carrier-billing.v0.payment-cancelled";
pub const PAYMENT_DENIED: &str = "org.camaraproject.carrier-billing.v0.payment-denied";
/// `type` of the refund events (carrier-billing-refund v0.3.0).
pub const REFUND_COMPLETED: &str = "org.camaraproject.carrier-billing-refund.v0.refund-completed";
pub const REFUND_DENIED: &str = "org.camaraproject.carrier-billing-refund.v0.refund-denied";

/// `Content-Type` of every event (structured mode).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Longest access token accepted.
pub const MAX_TOKEN: usize = 4096;

/// How long an async resource may stay `processing` before the recovery pass looks at it
/// (its own task normally ends it within one Tx).
pub const ASYNC_GRACE: Duration = Duration::from_secs(10);

/// How long an async creation whose CCR reached no OCS (nothing applied: no peer, protocol
/// error) is tried again before it is `denied`.
pub const ASYNC_GIVE_UP: Duration = Duration::from_secs(600);

/// Where a resource's events go and with what credential (kept in its stored row, never shown:
/// answers carry only `sink`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub sink: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
}

/// An `ACCESSTOKEN` sink credential (bearer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub access_token: String,
    /// `accessTokenExpiresUtc`, ms since the epoch.
    pub expires_ms: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

fn invalid_sink(reason: impl std::fmt::Display) -> CamaraError {
    CamaraError::new(
        StatusCode::BAD_REQUEST,
        code::INVALID_SINK,
        format!("sink not valid for the specified protocol. {reason}"),
    )
}

fn invalid_token(detail: impl std::fmt::Display) -> CamaraError {
    CamaraError::new(
        StatusCode::BAD_REQUEST,
        code::INVALID_TOKEN,
        format!("Only bearer token is supported. {detail}"),
    )
}

/// The subscription of a request: `None` without `sink` (sync mode). Checked before anything
/// is stored or sent; the sink's name is resolved (within `notifications.connect_timeout`) and
/// every address it gives must be allowed.
pub async fn subscription(
    st: &ApiState,
    sink: Option<Value>,
    credential: Option<Value>,
) -> Result<Option<Notify>, CamaraError> {
    let sink = sink.filter(|v| !v.is_null());
    let credential = credential.filter(|v| !v.is_null());
    let Some(sink) = sink else {
        if credential.is_some() {
            return Err(CamaraError::invalid(
                "sinkCredential: given without sink (it is the credential for the sink)",
            ));
        }
        return Ok(None);
    };
    let Value::String(sink) = sink else {
        return Err(invalid_sink("sink must be a string (an https URL)."));
    };
    // The form first (no DNS for a credential that is refused anyway).
    let policy = st.destinations();
    policy.parse(&sink).map_err(invalid_sink)?;
    let credential = match credential {
        None => None,
        Some(c) => Some(parse_credential(c, now_ms())?),
    };
    policy
        .check(&sink, st.notifications.connect_timeout)
        .await
        .map_err(invalid_sink)?;
    Ok(Some(Notify { sink, credential }))
}

/// `sinkCredential` (API.md 1.2): only `ACCESSTOKEN` with a `bearer` token that has not
/// expired at `now`.
pub fn parse_credential(c: Value, now: i64) -> Result<Credential, CamaraError> {
    let Value::Object(m) = c else {
        return Err(CamaraError::invalid(
            "sinkCredential: a JSON object expected",
        ));
    };
    match m.get("credentialType") {
        None | Some(Value::Null) => {
            return Err(CamaraError::missing("sinkCredential.credentialType"));
        }
        Some(Value::String(t)) if t == "ACCESSTOKEN" => {}
        Some(_) => {
            return Err(CamaraError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_CREDENTIAL,
                "Only Access token is supported",
            ));
        }
    }
    match m.get("accessTokenType") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        None | Some(Value::Null) => {
            return Err(invalid_token(
                "sinkCredential.accessTokenType is missing (bearer expected).",
            ));
        }
        Some(_) => {
            return Err(invalid_token(
                "sinkCredential.accessTokenType must be bearer.",
            ));
        }
    }
    let token = match m.get("accessToken") {
        None | Some(Value::Null) => return Err(CamaraError::missing("sinkCredential.accessToken")),
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(CamaraError::invalid(
                "sinkCredential.accessToken: a string expected",
            ));
        }
    };
    // It goes into an HTTP header as it is: visible ASCII only (RFC 6750 b64token and more).
    if token.is_empty() || token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CamaraError::invalid(format!(
            "sinkCredential.accessToken: 1 to {MAX_TOKEN} visible ASCII characters expected"
        )));
    }
    let expires = match m.get("accessTokenExpiresUtc") {
        None | Some(Value::Null) => {
            return Err(CamaraError::missing("sinkCredential.accessTokenExpiresUtc"));
        }
        Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| {
            CamaraError::invalid(
                "sinkCredential.accessTokenExpiresUtc: an RFC 3339 date-time with its zone \
                 expected",
            )
        })?,
        Some(_) => {
            return Err(CamaraError::invalid(
                "sinkCredential.accessTokenExpiresUtc: a string expected",
            ));
        }
    };
    if expires <= now {
        return Err(invalid_token(format!(
            "The access token expired at {} (sinkCredential.accessTokenExpiresUtc): no \
             notification could be delivered with it.",
            rfc3339(expires)
        )));
    }
    Ok(Credential {
        access_token: token,
        expires_ms: expires,
    })
}

/// A fresh random (version 4) UUID: an event's stable id.
pub fn uuid() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    let h = hex::encode(b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// The CloudEvent `source`: `notifications.source` (a prefix) followed by the API path of the
/// collection the resource is in.
fn source(st: &ApiState, path: &str) -> String {
    let prefix = st.notifications.source.trim_end_matches('/');
    format!("{prefix}{path}")
}

/// One event of `resource` to `n.sink`, structured CloudEvents JSON.
#[allow(clippy::too_many_arguments)]
fn event(
    st: &ApiState,
    app: &str,
    n: &Notify,
    resource: &str,
    path: &str,
    kind: &str,
    data: Value,
    now: i64,
) -> EventRow {
    let id = uuid();
    let body = json!({
        "id": id,
        "source": source(st, path),
        "specversion": "1.0",
        "type": kind,
        "time": rfc3339(now),
        "datacontenttype": "application/json",
        "data": data,
    });
    let mut headers = Vec::new();
    let mut state = EventState::Pending;
    let mut last_error = None;
    if let Some(c) = &n.credential {
        headers.push((
            "Authorization".to_string(),
            format!("Bearer {}", c.access_token),
        ));
        if c.expires_ms <= now {
            state = EventState::Dead;
            last_error = Some(format!(
                "not sent: the sink's access token expired at {} (accessTokenExpiresUtc)",
                rfc3339(c.expires_ms)
            ));
            tracing::info!(
                resource,
                kind,
                "sink token expired: event recorded dead, not sent"
            );
        }
    }
    EventRow {
        id,
        app: app.to_string(),
        kind: kind.to_string(),
        resource: Some(resource.to_string()),
        url: n.sink.clone(),
        headers,
        content_type: CONTENT_TYPE.to_string(),
        body: body.to_string(),
        state,
        attempts: 0,
        next_ms: now,
        last_error,
        lease: None,
        created_ms: now,
        updated_ms: now,
        delivered_ms: None,
    }
}

/// The event of a payment that reached `doc.status` from a step `before` (the operation that
/// was pending, if one was): reserved (after a prepare), completed, cancelled, denied. `None`
/// for `processing`, and for `reserved` reached again after a confirmation or cancellation
/// that changed nothing.
pub(crate) fn payment_event(
    st: &ApiState,
    app: &str,
    n: &Notify,
    doc: &PaymentDoc,
    before: Option<Pending>,
    now: i64,
) -> Option<EventRow> {
    let mut data = serde_json::Map::new();
    data.insert("paymentId".into(), json!(doc.id));
    let (kind, status, description) = match doc.status {
        Status::Processing => return None,
        Status::Reserved if before != Some(Pending::Prepare) => return None,
        Status::Reserved => (
            PAYMENT_RESERVED,
            "succeeded",
            "The amount is reserved: confirm or cancel the payment.".to_string(),
        ),
        Status::PendingValidation => (
            PAYMENT_PENDING_VALIDATION,
            "succeeded",
            "The payment waits for its validation.".to_string(),
        ),
        Status::Succeeded => {
            let date = doc.payment_ms.unwrap_or(now);
            data.insert("paymentDate".into(), json!(rfc3339(date)));
            (
                PAYMENT_COMPLETED,
                "succeeded",
                "The payment is completed: the amount is charged.".to_string(),
            )
        }
        Status::Cancelled if before == Some(Pending::Cancel) => (
            PAYMENT_CANCELLED,
            "succeeded",
            "The payment is cancelled: its reservation is released.".to_string(),
        ),
        Status::Cancelled => (
            PAYMENT_CANCELLED,
            "failed",
            "The payment is cancelled: its reservation ended (expired, or released by the \
             operator) before it was confirmed."
                .to_string(),
        ),
        Status::Denied => {
            let reason = doc
                .refusal
                .as_ref()
                .map(|(_, e)| e.message.clone())
                .unwrap_or_else(|| "Payment denied by business.".into());
            data.insert("denialReason".into(), json!(reason));
            (
                PAYMENT_DENIED,
                "failed",
                "The payment is denied: nothing is charged.".to_string(),
            )
        }
    };
    data.insert("status".into(), json!(status));
    data.insert("description".into(), json!(description));
    Some(event(
        st,
        app,
        n,
        &doc.id,
        PAYMENTS,
        kind,
        Value::Object(data),
        now,
    ))
}

/// The event of a refund that reached `doc.status`: completed or denied.
pub(crate) fn refund_event(
    st: &ApiState,
    app: &str,
    n: &Notify,
    doc: &RefundDoc,
    now: i64,
) -> Option<EventRow> {
    let mut data = serde_json::Map::new();
    data.insert("paymentId".into(), json!(doc.payment_id));
    data.insert("refundId".into(), json!(doc.id));
    let kind = match doc.status {
        RefundStatus::Processing => return None,
        RefundStatus::Succeeded => {
            data.insert("status".into(), json!("succeeded"));
            data.insert(
                "description".into(),
                json!("The refund is completed: the amount is given back."),
            );
            data.insert(
                "refundDate".into(),
                json!(rfc3339(doc.refund_ms.unwrap_or(now))),
            );
            REFUND_COMPLETED
        }
        RefundStatus::Denied => {
            data.insert("status".into(), json!("failed"));
            data.insert(
                "description".into(),
                json!("The refund is denied: nothing is given back."),
            );
            let reason = doc
                .refusal
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_else(|| "Refund denied by business.".into());
            data.insert("denialReason".into(), json!(reason));
            REFUND_DENIED
        }
    };
    let path = REFUNDS.replace("{paymentId}", &doc.payment_id);
    Some(event(
        st,
        app,
        n,
        &doc.id,
        &path,
        kind,
        Value::Object(data),
        now,
    ))
}

// ---- recovery --------------------------------------------------------------------------------

/// One recovery pass: every async payment and refund whose time has come (left `processing`
/// past [`ASYNC_GRACE`], a reservation past its expiry) is brought to its state, under its
/// lock (a resource another request or instance works on is left to it): an operation with a
/// final outcome gets the resource's final state and its event in one transaction; one never
/// begun, retryable or unknown is driven again under the same charging key (at most one
/// charge). Checkout purchases with a `notificationUrl` whose payment may have moved on its
/// own are read, so that their notification is recorded. Returns how many were looked at.
pub async fn recover(st: &ApiState) -> usize {
    recover_at(st, now_ms()).await
}

/// [`recover`] of what is due at `now` (ms since the epoch; tests look ahead).
pub async fn recover_at(st: &ApiState, now: i64) -> usize {
    let payments = super::payments::recover_due(st, now).await;
    let refunds = super::refunds::recover_due(st, now).await;
    let purchases = super::checkout::recover_due(st).await;
    payments + refunds + purchases
}

/// Runs [`recover`] now and then every `every`, until the handle is aborted.
pub fn spawn_recovery(st: ApiState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let n = recover(&st).await;
            if n > 0 {
                tracing::debug!(resources = n, "CAMARA recovery pass");
            }
        }
    })
}

/// Milliseconds of a duration, for `due_ms` arithmetic.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
