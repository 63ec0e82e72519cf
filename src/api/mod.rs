//! The REST layer (axum): the OCSG Payment facade, operations endpoints (health, Prometheus
//! metrics, admin reads) and the OpenAPI document generated from the handlers' own types.
//!
//! ```text
//! connection (server.rs: request head within http.header_timeout, else closed)
//! request -> trace span (method, route, app, operation_id, session_id, status)
//!         -> metrics (gateway_http_requests_total, gateway_http_request_duration_seconds)
//!         -> family headers (CAMARA x-correlator)
//!         -> body read whole within http.body_timeout (408, nothing charged)
//!         -> request timeout (503 SVC0001, outcome unknown; the operation itself goes on)
//!         -> body limit (413) -> route -> auth (401 / 403) -> handler -> Charging
//! ```
//!
//! Every answer that is not a success carries the family's error JSON, including 404, 405,
//! 413 and 415. This layer imports `charging`, `config`, `credit_control` types and the
//! store's records (admin reads); nothing below imports it.

pub mod admin;
pub mod auth;
pub mod camara;
pub mod datetime;
pub mod error;
pub mod identity;
pub mod ocs;
pub mod oidc;
pub mod openapi;
pub mod payment;
pub mod server;
#[cfg(test)]
pub(crate) mod testing;
pub mod tmf620;
pub mod tmf622;
pub mod tmf629;
pub mod tmf630;
pub mod tmf632;
pub mod tmf639;
pub mod tmf654;
pub mod tmf663;
pub mod tmf666;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;

pub use auth::{App, Apps, Caller, Subject, SubjectSource, TokenVerifier, Verdict};
pub use error::{ApiError, ErrorBody, MessageId};

use camara::error::CamaraError;
pub use payment::Operation;
use tmf654::error::TmfError;

use crate::charging::Charging;
use crate::config::HttpConfig;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub charging: Arc<Charging>,
    pub apps: Arc<Apps>,
    /// Whether the gateway can serve money-moving requests (e.g. at least one OCS peer OPEN).
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The Prometheus recorder's handle ([`install_metrics`]); `/metrics` answers 404 without.
    pub metrics: Option<PrometheusHandle>,
    /// `[notifications]`: what a consumer's notification URL may reach, the CloudEvents
    /// source. The default: https and public addresses only.
    pub notifications: Arc<crate::config::notifications::NotificationsConfig>,
}

impl ApiState {
    pub fn new(
        charging: Arc<Charging>,
        apps: Arc<Apps>,
        ready: Arc<dyn Fn() -> bool + Send + Sync>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self {
            charging,
            apps,
            ready,
            metrics,
            notifications: Arc::default(),
        }
    }

    /// With the `[notifications]` section (otherwise its defaults).
    pub fn with_notifications(
        mut self,
        cfg: crate::config::notifications::NotificationsConfig,
    ) -> Self {
        self.notifications = Arc::new(cfg);
        self
    }

    /// The destination policy of `[notifications]`.
    pub fn destinations(&self) -> crate::notify::Destinations {
        crate::notify::Destinations::from(&*self.notifications)
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("charging", &self.charging)
            .field("apps", &self.apps.len())
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone (health, the OpenAPI document).
    Public,
    /// An application of `[[apps]]`.
    App,
    /// An application with `admin = true`.
    Admin,
    /// An application of `[[apps]]`, authenticated by the family's own handlers so that a
    /// refusal is in that family's error model (CAMARA `UNAUTHENTICATED`, ...).
    Family,
}

/// One route the router serves.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<ApiState>,
}

impl Route {
    /// A route of a family that authenticates in its own handlers ([`Access::Family`]).
    pub fn family(method: Method, path: &'static str, handler: MethodRouter<ApiState>) -> Self {
        Self {
            method,
            path,
            access: Access::Family,
            handler,
        }
    }
}

/// Every route, in one table: the router is built from it and the OpenAPI test checks the
/// document against it.
pub fn routes() -> Vec<Route> {
    let r = |method: Method, path, access, handler| Route {
        method,
        path,
        access,
        handler,
    };
    let mut routes = vec![
        r(
            Method::POST,
            Operation::ChargeAmount.path(),
            Access::App,
            post(payment::charge_amount),
        ),
        r(
            Method::POST,
            Operation::RefundAmount.path(),
            Access::App,
            post(payment::refund_amount),
        ),
        r(
            Method::POST,
            Operation::ChargeSplitAmount.path(),
            Access::App,
            post(payment::charge_split_amount),
        ),
        r(
            Method::POST,
            Operation::ReserveAmount.path(),
            Access::App,
            post(payment::reserve_amount),
        ),
        r(
            Method::POST,
            Operation::ReserveAdditionalAmount.path(),
            Access::App,
            post(payment::reserve_additional_amount),
        ),
        r(
            Method::POST,
            Operation::ChargeReservation.path(),
            Access::App,
            post(payment::charge_reservation),
        ),
        r(
            Method::POST,
            Operation::ReleaseReservation.path(),
            Access::App,
            post(payment::release_reservation),
        ),
        r(Method::GET, "/health", Access::Public, get(ocs::health)),
        r(Method::GET, "/health/live", Access::Public, get(live)),
        r(Method::GET, "/health/ready", Access::Public, get(ready)),
        r(
            Method::GET,
            "/openapi.json",
            Access::Public,
            get(openapi_json),
        ),
        r(Method::GET, "/metrics", Access::Admin, get(metrics_text)),
        r(
            Method::GET,
            "/admin/operations",
            Access::Admin,
            get(admin::operations),
        ),
        r(
            Method::GET,
            "/admin/reservations/{id}",
            Access::Admin,
            get(admin::reservation),
        ),
        r(Method::GET, "/admin/ocs", Access::Admin, get(ocs::admin)),
        r(
            Method::GET,
            "/admin/events",
            Access::Admin,
            get(admin::events),
        ),
        r(
            Method::GET,
            "/admin/events/{id}",
            Access::Admin,
            get(admin::event),
        ),
        r(
            Method::POST,
            "/admin/events/{id}/retry",
            Access::Admin,
            post(admin::retry_event),
        ),
    ];
    routes.extend(camara::routes());
    routes.extend(tmf654::routes());
    routes.extend(tmf620::routes());
    routes.extend(tmf639::routes());
    routes.extend(tmf663::routes());
    routes.extend(tmf622::routes());
    routes.extend(identity::routes());
    routes.extend(tmf632::routes());
    routes.extend(tmf629::routes());
    routes.extend(tmf666::routes());
    routes
}

/// The REST router: every route of [`routes`], the body limit (`http.max_body_bytes`, 413),
/// the body read within `http.body_timeout` (408), then the request timeout
/// (`http.request_timeout`), request metrics and a tracing span per request.
pub fn router(state: ApiState, http: &HttpConfig) -> Router {
    // Routes of one path (GET and POST of a collection) share one method router, which gets
    // the 405 fallback once: axum refuses to merge two that each have one.
    let mut paths: Vec<(&'static str, MethodRouter<ApiState>)> = Vec::new();
    for route in routes() {
        let handler = match route.access {
            Access::Public | Access::Family => route.handler,
            Access::App => route.handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_app,
            )),
            Access::Admin => route.handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin,
            )),
        };
        match paths.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, m)) => *m = std::mem::take(m).merge(handler),
            None => paths.push((route.path, handler)),
        }
    }
    let mut app = Router::new();
    for (path, handler) in paths {
        app = app.route(path, handler.fallback(method_not_allowed));
    }
    let timeout = http.request_timeout;
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(middleware::from_fn_with_state(
            BodyLimits {
                timeout: http.body_timeout,
                max_bytes: http.max_body_bytes,
            },
            read_body,
        ))
        .layer(middleware::from_fn(family_headers))
        .layer(middleware::from_fn(track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!(
                        "http",
                        method = %req.method(),
                        route = route_of(req),
                        app = Empty,
                        operation_id = Empty,
                        session_id = Empty,
                        status = Empty,
                    )
                })
                .on_request(())
                // Failures are logged once, by the error answer itself.
                .on_failure(())
                .on_response(|res: &Response, latency: Duration, span: &tracing::Span| {
                    span.record("status", res.status().as_u16());
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                        "answered"
                    );
                }),
        )
        .with_state(state)
}

fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched")
}

/// Counts every request by route, method and status, with its latency.
async fn track(req: Request, next: Next) -> Response {
    let route = route_of(&req).to_string();
    // Bounded label values: a client's made-up method is "other".
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(start.elapsed().as_secs_f64());
    res
}

/// The REST family a path belongs to. The answers the router gives itself (404, 405, the
/// request timeout) carry that family's error JSON, so that a CAMARA or TMF654 client can parse
/// them like any other error of its API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// `/rest/payment/...` and the operations endpoints: the Parlay X exceptions.
    Ocsg,
    /// Carrier Billing, Carrier Billing Refund and Carrier Billing Checkout: CAMARA `ErrorInfo`.
    Camara,
    /// `/tmf-api/prepayBalanceManagement/...`, `/tmf-api/productCatalogManagement/...`,
    /// `/tmf-api/resourceInventoryManagement/...` and `/tmf-api/shoppingCart/...`: the TMF630
    /// `Error`. So are the party and account families (TMF632, TMF629, TMF666).
    Tmf654,
}

impl Family {
    fn of(path: &str) -> Self {
        let under = |base: &str| {
            path.strip_prefix(base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under(camara::PAYMENT_BASE) || under(camara::REFUND_BASE) || under(camara::CHECKOUT_BASE)
        {
            Self::Camara
        } else if under(tmf654::topups::BASE)
            || under(tmf620::catalog::BASE)
            || under(tmf639::BASE)
            || under(tmf663::BASE)
            || under(tmf622::BASE)
            || under(identity::BASE)
            || under(tmf632::BASE)
            || under(tmf629::BASE)
            || under(tmf666::BASE)
        {
            Self::Tmf654
        } else {
            Self::Ocsg
        }
    }
}

/// What [`read_body`] needs of `[http]`.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    timeout: Duration,
    max_bytes: usize,
}

/// Reads the whole request body within `http.body_timeout`, before the request timeout
/// starts and before any handler runs, so that a client slow to send its body never takes
/// the time given to the OCS, and is never told that the outcome of a request nothing was
/// sent for is unknown: 408 in the family's error model, "nothing was charged", and the
/// connection closed. The handler then reads the body from memory: one over
/// `http.max_body_bytes` is cut at the limit plus one byte and left to the handlers' own 413;
/// one that failed (the client went away, broken chunked coding) is handed on with its error,
/// as the handlers always saw it.
async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let family = Family::of(req.uri().path());
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    match tokio::time::timeout(limits.timeout, buffer(body, limits.max_bytes)).await {
        Ok(body) => next.run(Request::from_parts(parts, body)).await,
        Err(_) => body_timeout(family, limits.timeout),
    }
}

/// The body in memory: all of it, or its first `max + 1` bytes when it is larger, or what came
/// before a failure followed by the failure.
async fn buffer(mut body: Body, max: usize) -> Body {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let data = match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => data,
            // Trailers: no handler reads them.
            Ok(Err(_)) => continue,
            Err(e) => {
                let read = Ok::<_, axum::Error>(concat(chunks));
                return Body::from_stream(futures::stream::iter([read, Err(e)]));
            }
        };
        let room = max.saturating_add(1).saturating_sub(len);
        if data.len() >= room {
            chunks.push(data.slice(..room));
            break;
        }
        len += data.len();
        chunks.push(data);
    }
    Body::from(concat(chunks))
}

fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    chunks.concat().into()
}

/// 408 for a body that did not arrive within `http.body_timeout`, with `Connection: close`
/// (RFC 9110 section 15.5.9: the rest of the body may still come).
fn body_timeout(family: Family, limit: Duration) -> Response {
    let mut res = match family {
        Family::Ocsg => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            MessageId::Svc0001,
            format!(
                "the request body did not arrive within http.body_timeout ({limit:?}); nothing \
                 was charged: send the request again"
            ),
        )
        .into_response(),
        // Commonalities define no code for 408. TIMEOUT ("Request timeout exceeded.") is
        // theirs for a timeout, and the one a CAMARA client already knows; ABORTED means that
        // another operation is modifying the resource, which would send the client to wait
        // and retry for a conflict there is none of. The status (408, where the request
        // timeout answers 504) says that the request never arrived, the message that nothing
        // was charged.
        Family::Camara => CamaraError::new(
            StatusCode::REQUEST_TIMEOUT,
            camara::error::code::TIMEOUT,
            format!(
                "Request timeout exceeded. The request body did not arrive within {limit:?}; \
                 nothing was charged: send the request again."
            ),
        )
        .into_response(),
        Family::Tmf654 => TmfError::new(
            StatusCode::REQUEST_TIMEOUT,
            "TIMEOUT",
            "request timeout",
            format!(
                "the request body did not arrive within {limit:?}; nothing was charged or \
                 topped up: send the request again"
            ),
        )
        .into_response(),
    };
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Answers 503 when a request takes longer than `http.request_timeout` once its body is read
/// (504 TIMEOUT on the CAMARA paths, as Commonalities have it). The charging call runs in its
/// own task and goes on: a retry with the same key learns its outcome.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let family = Family::of(req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => match family {
            Family::Ocsg => ApiError::unavailable(format!(
                "no answer within the request timeout ({limit:?}); the outcome is unknown: retry \
                 with the same referenceCode (or Idempotency-Key) to learn it"
            ))
            .into_response(),
            Family::Camara => CamaraError::new(
                StatusCode::GATEWAY_TIMEOUT,
                camara::error::code::TIMEOUT,
                format!(
                    "Request timeout exceeded. No answer within {limit:?}; the outcome is \
                     unknown: retry with the same clientCorrelator, or read the resource, to \
                     learn it."
                ),
            )
            .into_response(),
            Family::Tmf654 => TmfError::unavailable(format!(
                "no answer within the request timeout ({limit:?}); the outcome is unknown: read \
                 the resource, or retry with the same Idempotency-Key, to learn it"
            ))
            .into_response(),
        },
    }
}

/// The request and answer headers a family's specification defines for every call: CAMARA's
/// `x-correlator`.
async fn family_headers(req: Request, next: Next) -> Response {
    match Family::of(req.uri().path()) {
        Family::Camara => camara::x_correlator(req, next).await,
        Family::Ocsg | Family::Tmf654 => next.run(req).await,
    }
}

async fn not_found(req: Request) -> Response {
    let path = error::clip(req.uri().path());
    match Family::of(req.uri().path()) {
        Family::Ocsg => ApiError::new(
            StatusCode::NOT_FOUND,
            MessageId::Svc0002,
            format!("no resource {path} (see /openapi.json)"),
        )
        .into_response(),
        Family::Camara => {
            CamaraError::not_found(format!("No resource {path} (see /openapi.json)."))
                .into_response()
        }
        Family::Tmf654 => {
            TmfError::not_found(format!("no resource {path} (see /openapi.json)")).into_response()
        }
    }
}

async fn method_not_allowed(req: Request) -> Response {
    let allowed = routes()
        .into_iter()
        .filter(|r| r.path == route_of(&req))
        .map(|r| r.method.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let what = format!("method {} not allowed here", req.method());
    let mut res = match Family::of(req.uri().path()) {
        Family::Ocsg => {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, MessageId::Svc0002, what).into_response()
        }
        Family::Camara => CamaraError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            camara::error::code::METHOD_NOT_ALLOWED,
            format!(
                "The requested method is not allowed/supported on the target resource. {what}."
            ),
        )
        .into_response(),
        Family::Tmf654 => TmfError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed",
            what,
        )
        .into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&allowed) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

/// The status body of the health endpoints.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `live`, `ready` or `not ready`.
    pub status: String,
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process runs", body = Health)))]
pub(crate) async fn live() -> Response {
    axum::Json(Health {
        status: "live".into(),
    })
    .into_response()
}

/// 200 while the gateway can serve (an OCS peer is open), 503 otherwise.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "Not ready (no OCS peer open)", body = Health)))]
pub(crate) async fn ready(State(st): State<ApiState>) -> Response {
    if (st.ready)() {
        axum::Json(Health {
            status: "ready".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health {
                status: "not ready".into(),
            }),
        )
            .into_response()
    }
}

/// The OpenAPI document of this router.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| openapi::document().to_json().unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.clone(),
    )
        .into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
    security(("basic" = []), ("apiKey" = []), ("bearer" = [])))]
pub(crate) async fn metrics_text(State(st): State<ApiState>) -> Response {
    let Some(handle) = &st.metrics else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            MessageId::Svc0001,
            "metrics are not enabled on this gateway",
        )
        .into_response();
    };
    set_open_reservations(st.charging.open_reservations());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        handle.render(),
    )
        .into_response()
}

// ---- metrics ---------------------------------------------------------------------------------

/// REST requests, by `route`, `method` and `status`.
pub const HTTP_REQUESTS: &str = "gateway_http_requests_total";
/// REST latency, by `route` (seconds, histogram).
pub const HTTP_DURATION: &str = "gateway_http_request_duration_seconds";
/// 1 while the peer (label `peer`) is OPEN, 0 otherwise.
pub const PEER_OPEN: &str = "gateway_peer_open";
/// Reservations open now.
pub const OPEN_RESERVATIONS: &str = "gateway_open_reservations";
/// Time of the store's last group commit (seconds).
pub const STORE_COMMIT: &str = "gateway_store_commit_seconds";

/// Histogram buckets, seconds (latencies, not money).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder for the process (once; later calls return the same
/// handle) and describes the gateway's metrics. The CCR counters and histograms the
/// credit-control client emits (`gateway_ccr_total`, `gateway_ccr_duration_seconds`) appear
/// through it. If another recorder was installed first, the handle renders only what this one
/// sees (nothing) and a warning is logged.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(LATENCY_BUCKETS).and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        crate::notify::outbox::EVENT_DELIVERY.to_string(),
                    ),
                    crate::notify::outbox::DELIVERY_BUCKETS,
                )
            }) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "histogram buckets refused; summaries instead");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "a metrics recorder was already installed");
            }
            describe_metrics();
            let upkeep = handle.clone();
            // Histograms are drained by upkeep; without it they grow between scrapes.
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread not started");
            }
            handle
        })
        .clone()
}

fn describe_metrics() {
    metrics::describe_counter!(HTTP_REQUESTS, "REST requests by route, method and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "REST request latency by route"
    );
    metrics::describe_counter!(
        "gateway_ccr_total",
        "Credit-Control requests by type and result"
    );
    metrics::describe_histogram!(
        "gateway_ccr_duration_seconds",
        metrics::Unit::Seconds,
        "Credit-Control request latency by type"
    );
    metrics::describe_gauge!(PEER_OPEN, "1 while the Diameter peer is OPEN, else 0");
    metrics::describe_gauge!(OPEN_RESERVATIONS, "Reservations open now");
    metrics::describe_gauge!(
        STORE_COMMIT,
        metrics::Unit::Seconds,
        "Duration of the store's last group commit"
    );
    crate::notify::outbox::describe_metrics();
    tmf663::followup::describe_metrics();
    metrics::gauge!(OPEN_RESERVATIONS).set(0.0);
    metrics::gauge!(STORE_COMMIT).set(0.0);
}

/// Sets `gateway_peer_open{peer}`.
pub fn set_peer_open(peer: &str, open: bool) {
    metrics::gauge!(PEER_OPEN, "peer" => peer.to_string()).set(if open { 1.0 } else { 0.0 });
}

/// Sets `gateway_open_reservations` (also refreshed on every scrape of `/metrics`).
pub fn set_open_reservations(n: usize) {
    metrics::gauge!(OPEN_RESERVATIONS).set(n as f64);
}

/// Sets `gateway_store_commit_seconds`.
pub fn set_store_commit_seconds(seconds: f64) {
    metrics::gauge!(STORE_COMMIT).set(seconds);
}
