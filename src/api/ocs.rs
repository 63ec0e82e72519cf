//! What the gateway knows of its OCSs, for the operator: each peer connection (state and what
//! its CER/CEA said), the units style configured per kind of request and the style learnt per
//! OCS (how, and when), each OCS's Origin-State-Id (and its last change: a restart), and the
//! operations resolved across an OCS restart, to reconcile.
//!
//! ```text
//! GET /health       (anyone)  status, peers, units styles, OCS states
//! GET /admin/ocs    (admin)   the same, and the operations resolved across an OCS restart
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use crate::charging::learnt;
use crate::credit_control::style::{Evidence, style_name};

/// One peer connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    /// The configured name.
    pub name: String,
    /// Its Origin-Host (as configured; what its CEA said is in `capabilities`).
    pub host: String,
    pub realm: String,
    /// RFC 6733 section 5.6 state (`I-Open`, `Closed`, ...).
    pub state: String,
    /// Carries requests now (open, and its watchdog OKAY).
    pub usable: bool,
    /// What its last CER or CEA said; absent before the first exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<CapabilitiesView>,
}

/// The capabilities a peer advertised (RFC 6733 section 5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesView {
    pub origin_host: String,
    pub origin_realm: String,
    pub product_name: String,
    pub vendor_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_revision: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_state_id: Option<u32>,
    /// Auth-, Acct- and Vendor-Specific application ids (4: credit-control, 4294967295: relay).
    pub application_ids: Vec<u32>,
    pub supported_vendor_ids: Vec<u32>,
}

/// The units style of one kind of request at one OCS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearntStyleView {
    /// The OCS (Origin-Host of its answers).
    pub ocs: String,
    /// `events` or `sessions`.
    pub kind: String,
    /// `mscc` or `command_level`.
    pub style: String,
    /// `accepted` (it took this style), or `fallback` (it refused the other one first).
    pub how: String,
    /// For `fallback`: what the OCS answered to the other style.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// RFC 3339.
    pub learnt_at: String,
    /// The configuration line that pins it.
    pub config_line: String,
}

/// `credit_control.style` as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfiguredStyle {
    /// `mscc`, `command_level` or `auto`.
    pub events: String,
    pub sessions: String,
}

/// The Origin-State-Id of an OCS (RFC 6733 section 8.16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OcsStateView {
    pub ocs: String,
    pub origin_state_id: u32,
    /// Before its last change (a restart), when one was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    /// RFC 3339: when that change was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// An operation whose unknown outcome was learnt from an OCS that had restarted since it was
/// sent: the OCS may have lost its duplicate detection and applied the re-sent request again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcrossRestartView {
    pub operation_id: String,
    pub app: String,
    pub kind: String,
    pub session_id: String,
    pub request_number: u32,
    pub ocs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_state_id_before: Option<u32>,
    pub origin_state_id_after: u32,
    /// RFC 3339.
    pub sent_at: String,
    pub resolved_at: String,
    /// The operation's recorded state (`succeeded`, `refused`, ...).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_code: Option<u32>,
}

/// What `GET /health` and `GET /admin/ocs` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OcsView {
    /// `ready` (an OCS peer carries requests) or `not ready`.
    pub status: String,
    pub peers: Vec<PeerView>,
    pub configured_style: ConfiguredStyle,
    /// Per OCS and kind: the style in use (`auto`) and why.
    pub learnt_styles: Vec<LearntStyleView>,
    pub ocs_states: Vec<OcsStateView>,
    /// `GET /admin/ocs` only: the operations resolved across an OCS restart, newest first
    /// (at most 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_across_restart: Option<Vec<AcrossRestartView>>,
}

/// The view of `st`'s OCSs now.
pub fn view(st: &ApiState) -> OcsView {
    let client = st.charging.client();
    let peers = client
        .router()
        .peers()
        .iter()
        .map(|p| PeerView {
            name: p.spec.name.clone(),
            host: p.spec.host.clone(),
            realm: p.spec.realm.clone(),
            state: p.state().name().into(),
            usable: p.is_usable(),
            capabilities: p.capabilities().map(|c| CapabilitiesView {
                origin_host: c.origin_host,
                origin_realm: c.origin_realm,
                product_name: c.product_name,
                vendor_id: c.vendor_id,
                firmware_revision: c.firmware_revision,
                origin_state_id: c.origin_state_id,
                application_ids: c.application_ids,
                supported_vendor_ids: c.supported_vendor_ids,
            }),
        })
        .collect();
    let config = client.styles().config();
    let learnt_styles = client
        .styles()
        .snapshot()
        .into_iter()
        .map(|l| LearntStyleView {
            config_line: l.config_line(),
            ocs: l.ocs,
            kind: l.kind.name().into(),
            style: style_name(l.style).into(),
            how: match &l.evidence {
                Evidence::Accepted => "accepted".into(),
                Evidence::Fallback { .. } => "fallback".into(),
            },
            refusal: match l.evidence {
                Evidence::Accepted => None,
                Evidence::Fallback { refusal } => Some(refusal),
            },
            learnt_at: super::camara::rfc3339(l.learned_ms),
        })
        .collect();
    let ocs_states = client
        .ocs_states()
        .snapshot()
        .into_iter()
        .map(|s| OcsStateView {
            ocs: s.ocs,
            origin_state_id: s.origin_state_id,
            previous: s.previous,
            restarted_at: s.changed_ms.map(super::camara::rfc3339),
        })
        .collect();
    OcsView {
        status: if (st.ready)() { "ready" } else { "not ready" }.into(),
        peers,
        configured_style: ConfiguredStyle {
            events: config.events.name().into(),
            sessions: config.sessions.name().into(),
        },
        learnt_styles,
        ocs_states,
        resolved_across_restart: None,
    }
}

/// The gateway's view of its OCSs: 200 while ready, 503 otherwise (same body).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Ready: an OCS peer carries requests", body = OcsView),
        (status = 503, description = "Not ready", body = OcsView)))]
pub(crate) async fn health(State(st): State<ApiState>) -> Response {
    let v = view(&st);
    let status = if v.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(v)).into_response()
}

/// The OCS peers, the units styles configured and learnt, the OCSs' states, and the
/// operations resolved across an OCS restart (admin applications).
#[utoipa::path(get, path = "/admin/ocs", tag = "admin",
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])),
    responses((status = 200, description = "What the gateway knows of its OCSs", body = OcsView)))]
pub(crate) async fn admin(State(st): State<ApiState>) -> Response {
    let mut v = view(&st);
    let restarts = match learnt::restarts(st.charging.store(), super::admin::MAX_LIMIT).await {
        Ok(r) => r,
        Err(e) => {
            return super::error::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                super::error::MessageId::Svc0001,
                e,
            )
            .into_response();
        }
    };
    v.resolved_across_restart = Some(
        restarts
            .into_iter()
            .map(|r| AcrossRestartView {
                sent_at: super::camara::rfc3339(r.sent_ms),
                resolved_at: super::camara::rfc3339(r.resolved_ms),
                operation_id: r.operation_id,
                app: r.app,
                kind: r.kind,
                session_id: r.session_id,
                request_number: r.request_number,
                ocs: r.ocs,
                origin_state_id_before: r.origin_state_id_before,
                origin_state_id_after: r.origin_state_id_after,
                state: r.state,
                result_code: r.result_code,
            })
            .collect(),
    );
    axum::Json(v).into_response()
}
