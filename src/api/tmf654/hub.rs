//! TMF654 event listeners (TMF630 hub pattern): an application registers a `callback`, with
//! an optional `query` filter, and the gateway posts the events of **its own** top-ups there
//! through the durable outbox.
//!
//! ```text
//! POST   /tmf-api/prepayBalanceManagement/v4/hub        {callback, query?}  201 {id, callback, query} + Location
//! GET    /tmf-api/prepayBalanceManagement/v4/hub/{id}                       200 {id, callback, query}
//! DELETE /tmf-api/prepayBalanceManagement/v4/hub/{id}                       204 (404 unknown)
//!
//! top-up created          -> TopupBalanceCreateEvent       } one outbox event per matching hub
//! top-up status changed   -> TopupBalanceStateChangeEvent  } of the top-up's application, written
//!   (API, scheduler, periods of automatic top-ups)         } with the top-up's new state (one commit)
//! ```
//!
//! A hub is a [`ResourceRow`] of kind `tmf654.hub` (state `active`, or `deleted` once
//! unregistered), so every instance on one PostgreSQL sees the same listeners. Listeners are
//! read at the time of each state change: one registered later receives later events only.
//! The callback is checked against `[notifications]` (https unless `allow_http`; public
//! addresses or `allowed_networks`, names by what they resolve to) at registration, and again
//! by the delivery worker for every connection.
//!
//! `query`: `&`-separated `name=value[,value...]` terms, all of which must hold (values of
//! one term: any of them). `eventType=TopupBalanceCreateEvent,TopupBalanceStateChangeEvent`;
//! a top-level attribute of the top-up as GET shows it (`status=completed`,
//! `usageType=monetary`, `isAutoTopup=true`, ...; `event.topupBalance.status` is the same
//! term, and `state` is read as `status`), or one of `amount.units`, `amount.amount`,
//! `bucket.id`, `partyAccount.id`. Anything else is refused (400 naming it).

use std::collections::HashSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use utoipa::ToSchema;

use super::error::TmfError;
use super::model::{TopupBalance, TopupStatus};
use super::schedule::rfc3339;
use super::topups::{BASE, clip};
use super::validate::TmfBody;
use super::{TOPUP_OPERATION, TmfCaller, answer, json, path_id, permit};
use crate::api::ApiState;
use crate::store::{EventRow, EventState, ResourceFilter, ResourceRow, Store};

/// Resource kind of the listeners.
pub const KIND_HUB: &str = "tmf654.hub";
pub(crate) const HUB: &str = "/tmf-api/prepayBalanceManagement/v4/hub";
pub(crate) const HUB_ID: &str = "/tmf-api/prepayBalanceManagement/v4/hub/{id}";
const ACTIVE: &str = "active";
const DELETED: &str = "deleted";
/// Longest `query` accepted.
const MAX_QUERY: usize = 1024;
/// Most active listeners of one application.
pub const MAX_HUBS: usize = 100;
/// Content type of the posted events.
pub const EVENT_CONTENT_TYPE: &str = "application/json";

/// The events of top-ups.
pub const CREATE_EVENT: &str = "TopupBalanceCreateEvent";
pub const STATE_CHANGE_EVENT: &str = "TopupBalanceStateChangeEvent";
const EVENT_TYPES: [&str; 2] = [CREATE_EVENT, STATE_CHANGE_EVENT];

/// Attributes a query may filter on (the JSON names of `TopupBalance`, dotted into objects).
const ATTRIBUTES: &[&str] = &[
    "id",
    "href",
    "status",
    "usageType",
    "reason",
    "description",
    "requestedDate",
    "confirmationDate",
    "isAutoTopup",
    "recurringPeriod",
    "numberOfPeriods",
    "@type",
    "amount.amount",
    "amount.units",
    "bucket.id",
    "partyAccount.id",
];

pub fn hub_href(id: &str) -> String {
    format!("{BASE}/hub/{id}")
}

// ---- the query -------------------------------------------------------------------------------

/// A parsed `query`: every term must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `eventType` values (any of them), if given.
    types: Option<Vec<String>>,
    /// (attribute path, accepted values).
    attributes: Vec<(String, Vec<String>)>,
}

impl Filter {
    /// Parses a hub `query` (see the module documentation); the error names the term.
    pub fn parse(query: &str) -> Result<Self, TmfError> {
        let mut f = Self::default();
        let q = query.trim().trim_start_matches('?');
        if q.is_empty() {
            return Ok(f);
        }
        if q.len() > MAX_QUERY {
            return Err(TmfError::invalid(
                "query",
                format!("longer than {MAX_QUERY} characters"),
            ));
        }
        let mut seen: HashSet<String> = HashSet::new();
        for term in q.split('&') {
            if term.is_empty() {
                continue;
            }
            let Some((raw_name, raw_value)) = term.split_once('=') else {
                return Err(TmfError::invalid(
                    "query",
                    format!(
                        "\"{}\": name=value expected (e.g. eventType={STATE_CHANGE_EVENT} or \
                         status=completed)",
                        clip(term)
                    ),
                ));
            };
            let name = decode(raw_name);
            let value = decode(raw_value);
            let values: Vec<String> = value
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() {
                return Err(TmfError::invalid(
                    "query",
                    format!("\"{}\": no value", clip(term)),
                ));
            }
            let key = canonical(&name).ok_or_else(|| {
                TmfError::invalid(
                    "query",
                    format!(
                        "\"{}\" cannot be filtered on: eventType, or an attribute of \
                         TopupBalance ({})",
                        clip(&name),
                        ATTRIBUTES.join(", ")
                    ),
                )
            })?;
            if !seen.insert(key.clone()) {
                return Err(TmfError::invalid(
                    "query",
                    format!("\"{}\": given twice (list values with commas)", clip(&name)),
                ));
            }
            if key == "eventType" {
                if let Some(bad) = values.iter().find(|v| !EVENT_TYPES.contains(&v.as_str())) {
                    return Err(TmfError::invalid(
                        "query",
                        format!(
                            "eventType \"{}\": not an event this gateway sends ({})",
                            clip(bad),
                            EVENT_TYPES.join(", ")
                        ),
                    ));
                }
                f.types = Some(values);
            } else {
                if key == "status"
                    && let Some(bad) = values.iter().find(|v| TopupStatus::from_name(v).is_none())
                {
                    return Err(TmfError::invalid(
                        "query",
                        format!(
                            "status \"{}\": created, failed, cancelled or completed",
                            clip(bad)
                        ),
                    ));
                }
                f.attributes.push((key, values));
            }
        }
        Ok(f)
    }

    /// Whether an event of `event_type` about `resource` (the top-up as GET shows it) passes.
    pub fn matches(&self, event_type: &str, resource: &serde_json::Value) -> bool {
        if let Some(types) = &self.types
            && !types.iter().any(|t| t == event_type)
        {
            return false;
        }
        self.attributes.iter().all(|(path, values)| {
            let mut v = resource;
            for seg in path.split('.') {
                match v.get(seg) {
                    Some(next) => v = next,
                    None => return false,
                }
            }
            values.iter().any(|want| scalar_is(v, want))
        })
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The attribute (or `eventType`) a query name stands for.
fn canonical(name: &str) -> Option<String> {
    let name = name.trim();
    if name == "eventType" {
        return Some(name.to_string());
    }
    let attr = name.strip_prefix("event.topupBalance.").unwrap_or(name);
    let attr = if attr == "state" { "status" } else { attr };
    ATTRIBUTES.contains(&attr).then(|| attr.to_string())
}

fn scalar_is(v: &serde_json::Value, want: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == want,
        serde_json::Value::Bool(b) => want == if *b { "true" } else { "false" },
        serde_json::Value::Number(n) => {
            let have = n.to_string();
            have == want
                || matches!(
                    (have.parse::<Decimal>(), want.parse::<Decimal>()),
                    (Ok(a), Ok(b)) if a == b
                )
        }
        serde_json::Value::Array(items) => items.iter().any(|i| scalar_is(i, want)),
        _ => false,
    }
}

// ---- storage ---------------------------------------------------------------------------------

/// What is stored for a listener (`ResourceRow::body`), and answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscription {
    pub id: String,
    /// Where the events are posted.
    #[schema(example = "https://listener.example.com/tmf654/events")]
    pub callback: String,
    /// The filter, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "eventType=TopupBalanceStateChangeEvent&status=completed")]
    pub query: Option<String>,
}

/// Body of `POST /hub` (`EventSubscriptionInput`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct EventSubscriptionInput {
    #[schema(required = true, nullable = false)]
    pub callback: Option<String>,
    pub query: Option<String>,
}

fn store_error(e: impl std::fmt::Display) -> TmfError {
    TmfError::internal(format!(
        "the gateway could not read or write its records ({e}); retry"
    ))
}

fn decode_hub(row: &ResourceRow) -> Option<EventSubscription> {
    match serde_json::from_str(&row.body) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(hub = %row.id, error = %e, "unreadable hub record");
            None
        }
    }
}

/// The active listeners of `app`, oldest first.
async fn active(store: &Store, app: &str) -> Result<Vec<ResourceRow>, TmfError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            app: Some(app.to_string()),
            kind: Some(KIND_HUB.into()),
            state: Some(ACTIVE.into()),
            ascending: true,
            ..ResourceFilter::default()
        })
        .await
        .map_err(store_error)?;
    Ok(rows)
}

fn hex_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    format!("{prefix}{}", digest.get(..32).unwrap_or(&digest))
}

/// The TMF event envelope of one event about a top-up.
fn envelope(
    event_id: &str,
    event_type: &str,
    view: &TopupBalance,
    resource: &serde_json::Value,
    at_ms: i64,
) -> serde_json::Value {
    let time = rfc3339(at_ms);
    let (title, description) = if event_type == CREATE_EVENT {
        (
            "TopupBalance created",
            format!("topupBalance {} created ({})", view.id, view.status.name()),
        )
    } else {
        (
            "TopupBalance state change",
            format!("topupBalance {} is {}", view.id, view.status.name()),
        )
    };
    serde_json::json!({
        "eventId": event_id,
        "eventTime": time,
        "eventType": event_type,
        "correlationId": view.id,
        "domain": "prepayBalanceManagement",
        "title": title,
        "description": description,
        "timeOcurred": time,
        "event": {"topupBalance": resource},
    })
}

/// The outbox events the new state `view` of a top-up of `app` causes, `prev` being the
/// status recorded before (`None`: it is new): a create event when it is new, a state change
/// event when its status changed; one per active listener of `app` whose query matches.
/// `at_ms` is when it happened (the clock of the caller: the scheduler's is injected).
pub(crate) async fn topup_events(
    store: &Store,
    app: &str,
    view: &TopupBalance,
    prev: Option<TopupStatus>,
    at_ms: i64,
) -> Result<Vec<EventRow>, TmfError> {
    let event_type = match prev {
        None => CREATE_EVENT,
        Some(p) if p != view.status => STATE_CHANGE_EVENT,
        Some(_) => return Ok(Vec::new()),
    };
    let hubs = active(store, app).await?;
    if hubs.is_empty() {
        return Ok(Vec::new());
    }
    let resource = serde_json::to_value(view)
        .map_err(|e| TmfError::internal(format!("top-up not serialisable: {e}")))?;
    // The same event for every listener: its id is the top-up, the event and the status.
    let event_id = hex_id("ev-", &[&view.id, event_type, view.status.name()]);
    let body = envelope(&event_id, event_type, view, &resource, at_ms).to_string();
    let now = crate::store::now_ms();
    let mut out = Vec::new();
    for row in &hubs {
        let Some(hub) = decode_hub(row) else {
            continue;
        };
        let filter = match Filter::parse(hub.query.as_deref().unwrap_or_default()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(hub = %hub.id, error = %e.message, "hub query unreadable: skipped");
                continue;
            }
        };
        if !filter.matches(event_type, &resource) {
            continue;
        }
        out.push(EventRow {
            id: hex_id("tmfev-", &[&hub.id, &event_id]),
            app: app.to_string(),
            kind: event_type.to_string(),
            resource: Some(view.id.clone()),
            url: hub.callback.clone(),
            headers: Vec::new(),
            content_type: EVENT_CONTENT_TYPE.into(),
            body: body.clone(),
            state: EventState::Pending,
            attempts: 0,
            next_ms: now,
            last_error: None,
            lease: None,
            created_ms: now,
            updated_ms: now,
            delivered_ms: None,
        });
    }
    Ok(out)
}

// ---- handlers --------------------------------------------------------------------------------

fn new_hub_id() -> String {
    format!("hub-{:032x}", fastrand::u128(..))
}

/// Registers a listener for the caller's top-up events.
#[utoipa::path(
    post, path = "/tmf-api/prepayBalanceManagement/v4/hub", tag = "tmf654",
    request_body(content = EventSubscriptionInput, content_type = "application/json;charset=utf-8"),
    responses((status = 201, description = "Registered: TopupBalanceCreateEvent and \
        TopupBalanceStateChangeEvent of this application's top-ups that match `query` are \
        posted to `callback` (application/json) from now on",
        body = EventSubscription, content_type = "application/json;charset=utf-8",
        headers(("Location" = String, description = "The listener's href")))),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn register(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    body: TmfBody,
) -> Response {
    answer(
        async {
            permit(&caller, TOPUP_OPERATION)?;
            let members: serde_json::Map<String, serde_json::Value> = body.parse()?;
            if let Some(k) = members
                .keys()
                .find(|k| !matches!(k.as_str(), "callback" | "query") && !k.starts_with('@'))
            {
                return Err(TmfError::invalid(
                    &clip(k),
                    "unknown member (an EventSubscriptionInput has callback and query)",
                ));
            }
            let input: EventSubscriptionInput = body.parse()?;
            let Some(callback) = input.callback.filter(|c| !c.trim().is_empty()) else {
                return Err(TmfError::invalid("callback", "required"));
            };
            let query = input.query.filter(|q| !q.trim().is_empty());
            if let Some(q) = &query {
                Filter::parse(q)?;
            }
            st.destinations()
                .check(&callback, st.notifications.connect_timeout)
                .await
                .map_err(|e| TmfError::invalid("callback", e))?;
            let store = st.charging.store();
            let app = caller.id();
            if active(store, app).await?.len() >= MAX_HUBS {
                return Err(TmfError::conflict(
                    "CONFLICT",
                    format!(
                        "application \"{app}\" has {MAX_HUBS} listeners already: delete one first"
                    ),
                ));
            }
            let hub = EventSubscription {
                id: new_hub_id(),
                callback,
                query,
            };
            let now = crate::store::now_ms();
            let body = serde_json::to_string(&hub)
                .map_err(|e| TmfError::internal(format!("listener not serialisable: {e}")))?;
            store
                .put_resource(ResourceRow {
                    id: hub.id.clone(),
                    app: app.to_string(),
                    kind: KIND_HUB.into(),
                    state: ACTIVE.into(),
                    parent: None,
                    due_ms: None,
                    body,
                    created_ms: now,
                    updated_ms: now,
                })
                .await
                .map_err(store_error)?;
            tracing::info!(hub = %hub.id, app, "tmf654 listener registered");
            let mut res = json(StatusCode::CREATED, &hub);
            if let Ok(v) = HeaderValue::from_str(&hub_href(&hub.id)) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        .await,
    )
}

/// The caller's active listener `id` and its row, or 404.
async fn load(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<(ResourceRow, EventSubscription), TmfError> {
    let missing = || TmfError::not_found(format!("hub \"{}\"", clip(id)));
    let row = st
        .charging
        .store()
        .resource(id)
        .await
        .map_err(store_error)?
        .filter(|r| r.kind == KIND_HUB && r.app == app && r.state == ACTIVE)
        .ok_or_else(missing)?;
    let hub = decode_hub(&row).ok_or_else(missing)?;
    Ok((row, hub))
}

/// One of the caller's listeners.
#[utoipa::path(
    get, path = "/tmf-api/prepayBalanceManagement/v4/hub/{id}", tag = "tmf654",
    params(("id" = String, Path, description = "The listener's id")),
    responses((status = 200, description = "The listener", body = EventSubscription,
        content_type = "application/json;charset=utf-8")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn retrieve(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(
        async {
            permit(&caller, TOPUP_OPERATION)?;
            let id = path_id(id)?;
            let (_, hub) = load(&st, caller.id(), &id).await?;
            Ok(json(StatusCode::OK, &hub))
        }
        .await,
    )
}

/// Unregisters a listener: no event is posted to it from now on (events already recorded
/// for it are still delivered).
#[utoipa::path(
    delete, path = "/tmf-api/prepayBalanceManagement/v4/hub/{id}", tag = "tmf654",
    params(("id" = String, Path, description = "The listener's id")),
    responses((status = 204, description = "Unregistered")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = []))
)]
pub(crate) async fn unregister(
    State(st): State<ApiState>,
    TmfCaller(caller): TmfCaller,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    answer(
        async {
            permit(&caller, TOPUP_OPERATION)?;
            let id = path_id(id)?;
            let (mut row, _) = load(&st, caller.id(), &id).await?;
            row.state = DELETED.into();
            row.updated_ms = crate::store::now_ms();
            st.charging
                .store()
                .put_resource(row)
                .await
                .map_err(store_error)?;
            tracing::info!(hub = %id, app = caller.id(), "tmf654 listener deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_parse_or_are_refused_by_name() {
        let f = Filter::parse("eventType=TopupBalanceStateChangeEvent&status=completed").unwrap();
        let done = json!({"status": "completed", "amount": {"amount": 10, "units": "EUR"}});
        let created = json!({"status": "created"});
        assert!(f.matches(STATE_CHANGE_EVENT, &done));
        assert!(!f.matches(CREATE_EVENT, &done));
        assert!(!f.matches(STATE_CHANGE_EVENT, &created));
        let f =
            Filter::parse("event.topupBalance.state=completed,failed&amount.units=EUR").unwrap();
        assert!(f.matches(CREATE_EVENT, &done));
        assert!(!f.matches(CREATE_EVENT, &created));
        let f = Filter::parse("amount.amount=10.00").unwrap();
        assert!(f.matches(CREATE_EVENT, &done));
        assert!(Filter::parse("").unwrap().matches(CREATE_EVENT, &created));
        assert!(
            Filter::parse("eventType=TopupBalanceCreateEvent,TopupBalanceStateChangeEvent").is_ok()
        );
        for (bad, needle) in [
            (
                "eventType=TopupBalanceDeleteEvent",
                "TopupBalanceDeleteEvent",
            ),
            ("colour=red", "colour"),
            ("status=done", "done"),
            ("status", "name=value"),
            ("status=", "no value"),
            ("status=created&state=failed", "given twice"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert_eq!(e.status, "400", "{bad}");
            assert!(e.message.starts_with("query: "), "{bad}: {}", e.message);
            assert!(e.message.contains(needle), "{bad}: {}", e.message);
        }
    }
}
