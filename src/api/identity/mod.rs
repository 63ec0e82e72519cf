//! Self-registration REST routes (`src/identity/` does the work): called by the shop front
//! end with its application credentials (`[[apps]]`: the user belongs to that application),
//! except `GET /me`, which takes the user's access token. Errors: the TMF Error body.
//!
//! ```text
//! POST /identity/v1/sign-up          {email | phoneNumber, password, givenName?, familyName?}
//!                                    202 {"status": "code sent"}   (whatever the address's state)
//! POST /identity/v1/resend           {email | phoneNumber}          202 the same
//! POST /identity/v1/confirm-sign-up  {email | phoneNumber, code, password}
//!                                    200 {"status": "confirmed"}  | 400 INVALID_CODE
//! POST /identity/v1/sign-in          {email | phoneNumber, password}
//!                                    200 {accessToken, tokenType: Bearer, expiresIn, refreshToken}
//!                                    | 401 (one answer for every reason) | 429 Retry-After
//! POST /identity/v1/refresh          {refreshToken}  200 the same, a new refresh token
//! POST /identity/v1/sign-out         {refreshToken}  204
//! GET  /identity/v1/me               Authorization: Bearer <accessToken>  200 claims and user
//! ```

use axum::Extension;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi as Doc;
use utoipa::{Modify, OpenApi, ToSchema};

use super::Route;
use super::auth::Caller;
use super::tmf630;
use super::tmf654::TmfCaller;
use super::tmf654::error::{MEDIA_TYPE, TmfError};
use super::tmf654::validate::TmfBody;
use crate::identity::{self, Address, IdentityError, IdentityState, SignUp, Tokens, UserClaims};

pub const BASE: &str = "/identity/v1";
const SIGN_UP: &str = "/identity/v1/sign-up";
const RESEND: &str = "/identity/v1/resend";
const CONFIRM: &str = "/identity/v1/confirm-sign-up";
const SIGN_IN: &str = "/identity/v1/sign-in";
const REFRESH: &str = "/identity/v1/refresh";
const SIGN_OUT: &str = "/identity/v1/sign-out";
const ME: &str = "/identity/v1/me";
/// The `allowed_operations` name of the routes called with application credentials.
pub const OPERATION: &str = "identity";

/// The family's routes, for [`super::routes`].
pub fn routes() -> Vec<Route> {
    let r = Route::family;
    vec![
        r(Method::POST, SIGN_UP, post(sign_up)),
        r(Method::POST, RESEND, post(resend)),
        r(Method::POST, CONFIRM, post(confirm)),
        r(Method::POST, SIGN_IN, post(sign_in)),
        r(Method::POST, REFRESH, post(refresh)),
        r(Method::POST, SIGN_OUT, post(sign_out)),
        r(Method::GET, ME, get(me)),
    ]
}

// ---- bodies ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignUpBody {
    /// Where the code goes (preferred to `phoneNumber` when both are given).
    pub email: Option<String>,
    /// E.164 (`+34671234567`): the code goes by SMS when no `email` is given.
    pub phone_number: Option<String>,
    /// 8 to 256 bytes.
    pub password: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressBody {
    pub email: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmBody {
    pub email: Option<String>,
    pub phone_number: Option<String>,
    /// The six digits sent.
    pub code: String,
    /// The password given at sign-up.
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInBody {
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// The answer to a sign-up, a resend, a confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `code sent` or `confirmed`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub claims: UserClaims,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

// ---- mapping ---------------------------------------------------------------------------------

fn error(e: IdentityError) -> Response {
    let bearer = |e: TmfError| {
        let mut r = e.into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"identity\""),
        );
        r
    };
    match e {
        IdentityError::Invalid { field, why } => TmfError::invalid(field, why).into_response(),
        IdentityError::BadCode => TmfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CODE",
            "invalid code",
            "code: wrong or expired (after too many wrong codes the sign-up takes a new one: \
             resend)",
        )
        .into_response(),
        IdentityError::BadCredentials => {
            bearer(TmfError::unauthenticated("wrong address or password"))
        }
        IdentityError::BadRefresh => bearer(TmfError::unauthenticated(
            "refreshToken: not valid (unknown, spent, signed out or expired)",
        )),
        IdentityError::Limited(s) => {
            let mut r = TmfError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "too many requests",
                format!("too many requests for this address or application; retry after {s} s"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        IdentityError::NoChannel(m) => TmfError::unavailable(m).into_response(),
        IdentityError::Internal(m) => TmfError::internal(format!("identity: {m}")).into_response(),
    }
}

/// A refusal on its way out (boxed: a `Response` is large).
type Refusal = Box<Response>;

fn refuse(e: IdentityError) -> Refusal {
    Box::new(error(e))
}

fn tmf(e: TmfError) -> Refusal {
    Box::new(e.into_response())
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
        body,
    )
        .into_response()
}

fn tokens(t: Tokens) -> Response {
    let mut r = json(
        StatusCode::OK,
        &TokenAnswer {
            access_token: t.access_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
        },
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn code_sent() -> Response {
    json(
        StatusCode::ACCEPTED,
        &Status {
            status: "code sent".into(),
        },
    )
}

fn state(st: Option<Extension<IdentityState>>) -> Result<IdentityState, Refusal> {
    st.map(|Extension(s)| s).ok_or_else(|| {
        tmf(TmfError::unavailable(
            "self-registration is not set up on this gateway",
        ))
    })
}

/// What every route taking a body does first: the application permitted, the state set up,
/// the body read as `B`.
fn begin<B: serde::de::DeserializeOwned>(
    caller: &Caller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Result<(IdentityState, B), Refusal> {
    permit(caller)?;
    let st = state(st)?;
    let b: B = body.parse().map_err(tmf)?;
    Ok((st, b))
}

fn permit(caller: &Caller) -> Result<(), Refusal> {
    if caller.may_call(OPERATION) {
        Ok(())
    } else {
        Err(tmf(TmfError::policy(
            caller.refusal(OPERATION, "self-registration"),
        )))
    }
}

fn optional(
    field: &'static str,
    v: Option<String>,
    f: fn(&'static str, &str) -> Result<String, IdentityError>,
) -> Result<Option<String>, Refusal> {
    v.filter(|s| !s.trim().is_empty())
        .map(|s| f(field, &s))
        .transpose()
        .map_err(refuse)
}

fn address(email: Option<String>, phone: Option<String>) -> Result<Address, Refusal> {
    let email = optional("email", email, identity::email)?;
    let phone = optional("phoneNumber", phone, identity::phone)?;
    match (email, phone) {
        (Some(e), _) => Ok(Address::Email(e)),
        (None, Some(p)) => Ok(Address::Phone(p)),
        (None, None) => Err(tmf(TmfError::invalid("email", "give email or phoneNumber"))),
    }
}

fn name(field: &'static str, v: Option<String>) -> Result<Option<String>, Refusal> {
    match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > identity::MAX_NAME || s.chars().any(char::is_control) => {
            Err(tmf(TmfError::invalid(
                field,
                "at most 128 characters, no control characters",
            )))
        }
        other => Ok(other),
    }
}

fn run<T>(r: Result<T, Refusal>) -> Response
where
    T: IntoResponse,
{
    match r {
        Ok(v) => v.into_response(),
        Err(e) => *e,
    }
}

// ---- handlers --------------------------------------------------------------------------------

/// Sign-up: a one-time code to the address (or, for a registered one, a message saying so).
#[utoipa::path(post, path = "/identity/v1/sign-up", tag = "identity", request_body = SignUpBody,
    responses((status = 202, description = "The same answer whatever the address's state",
        body = Status)),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn sign_up(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, SignUpBody) = begin(&caller, st, body)?;
        let s = SignUp {
            email: optional("email", b.email, identity::email)?,
            phone: optional("phoneNumber", b.phone_number, identity::phone)?,
            password: b.password,
            given_name: name("givenName", b.given_name)?,
            family_name: name("familyName", b.family_name)?,
        };
        let now = crate::store::now_ms();
        st.sign_up(caller.id(), s, now).await.map_err(refuse)?;
        Ok(code_sent())
    }
    .await)
}

/// A new code for a pending sign-up.
#[utoipa::path(post, path = "/identity/v1/resend", tag = "identity", request_body = AddressBody,
    responses((status = 202, description = "The same answer for any address", body = Status)),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn resend(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, AddressBody) = begin(&caller, st, body)?;
        let to = address(b.email, b.phone_number)?;
        st.resend(caller.id(), &to, crate::store::now_ms())
            .await
            .map_err(refuse)?;
        Ok(code_sent())
    }
    .await)
}

/// Confirms a sign-up with its code and password.
#[utoipa::path(post, path = "/identity/v1/confirm-sign-up", tag = "identity",
    request_body = ConfirmBody,
    responses((status = 200, description = "Confirmed: sign in now", body = Status)),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn confirm(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, ConfirmBody) = begin(&caller, st, body)?;
        let to = address(b.email, b.phone_number)?;
        st.confirm(
            caller.id(),
            &to,
            b.code.trim(),
            &b.password,
            crate::store::now_ms(),
        )
        .await
        .map_err(refuse)?;
        Ok(json(
            StatusCode::OK,
            &Status {
                status: "confirmed".into(),
            },
        ))
    }
    .await)
}

/// Sign-in: an access token and a refresh token.
#[utoipa::path(post, path = "/identity/v1/sign-in", tag = "identity", request_body = SignInBody,
    responses((status = 200, description = "Signed in", body = TokenAnswer)),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn sign_in(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, SignInBody) = begin(&caller, st, body)?;
        let to = address(b.email, b.phone_number)?;
        let t = st
            .sign_in(caller.id(), &to, &b.password, crate::store::now_ms())
            .await
            .map_err(refuse)?;
        Ok(tokens(t))
    }
    .await)
}

/// New tokens for a refresh token (which is spent).
#[utoipa::path(post, path = "/identity/v1/refresh", tag = "identity", request_body = RefreshBody,
    responses((status = 200, description = "New tokens", body = TokenAnswer)),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn refresh(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, RefreshBody) = begin(&caller, st, body)?;
        let t = st
            .refresh(caller.id(), &b.refresh_token, crate::store::now_ms())
            .await
            .map_err(refuse)?;
        Ok(tokens(t))
    }
    .await)
}

/// Signs out: the session is revoked, its access tokens refused from now on.
#[utoipa::path(post, path = "/identity/v1/sign-out", tag = "identity", request_body = RefreshBody,
    responses((status = 204, description = "Signed out")),
    security(("basic" = []), ("apiKey" = [])))]
pub(crate) async fn sign_out(
    TmfCaller(caller): TmfCaller,
    st: Option<Extension<IdentityState>>,
    body: TmfBody,
) -> Response {
    run(async {
        let (st, b): (IdentityState, RefreshBody) = begin(&caller, st, body)?;
        st.sign_out(caller.id(), &b.refresh_token, crate::store::now_ms())
            .await
            .map_err(refuse)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await)
}

/// The signed-in user: the access token's claims and the user's contact.
#[utoipa::path(get, path = "/identity/v1/me", tag = "identity",
    responses((status = 200, description = "The user", body = Me)),
    security(("bearer" = [])))]
pub(crate) async fn me(st: Option<Extension<IdentityState>>, headers: HeaderMap) -> Response {
    run(async {
        let st = state(st)?;
        let bad = || {
            let mut r = TmfError::unauthenticated(
                "Authorization: Bearer <accessToken> (valid, not expired, not signed out)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"identity\""),
            );
            Box::new(r)
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
            .ok_or_else(bad)?;
        let claims = match identity::verify_access_token(&st, &token).await {
            Ok(c) => c,
            Err(identity::TokenError::Store(m)) => {
                return Err(tmf(TmfError::internal(format!("identity: {m}"))));
            }
            Err(_) => return Err(bad()),
        };
        tracing::Span::current().record("app", claims.app.as_str());
        let user = st
            .user(&claims.sub)
            .await
            .map_err(refuse)?
            .ok_or_else(bad)?;
        Ok(json(
            StatusCode::OK,
            &Me {
                claims,
                email: user.email,
                phone_number: user.phone,
                given_name: user.given_name,
                family_name: user.family_name,
            },
        ))
    }
    .await)
}

// ---- OpenAPI ---------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    paths(sign_up, resend, confirm, sign_in, refresh, sign_out, me),
    components(schemas(SignUpBody, AddressBody, ConfirmBody, SignInBody, RefreshBody, Status,
        TokenAnswer, Me, UserClaims, TmfError)),
    modifiers(&Errors)
)]
pub struct IdentityDoc;

/// Statuses every identity route may answer with a TMF Error.
pub const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Invalid input, the field named (INVALID_ARGUMENT); a wrong or expired code \
         (INVALID_CODE, one answer for every reason)",
    ),
    (
        "401",
        "No or wrong application credentials; wrong address or password (one answer); a \
         refresh or access token not valid (UNAUTHENTICATED)",
    ),
    (
        "403",
        "The application's allowed_operations lacks identity (PERMISSION_DENIED)",
    ),
    (
        "429",
        "Too many sign-ups, resends or sign-ins for the address or application, or the \
         address is locked after failed sign-ins (TOO_MANY_REQUESTS, Retry-After: seconds)",
    ),
    ("500", "Gateway fault (INTERNAL): the store failed"),
    (
        "503",
        "No channel configured for such addresses ([notifications.smtp] / [notifications.sms])",
    ),
];

struct Errors;

impl Modify for Errors {
    fn modify(&self, doc: &mut Doc) {
        tmf630::document_errors(doc, BASE, ERRORS);
    }
}

/// The gateway's own access tokens as a credential of every family: a token of
/// `[identity] issuer` acts for its application and its customer (`Subject::customer`), until
/// it expires or its session is signed out.
pub struct IdentityVerifier(pub IdentityState);

impl crate::api::auth::TokenVerifier for IdentityVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        apps: &'a crate::api::auth::Apps,
    ) -> crate::api::auth::VerdictFuture<'a> {
        use crate::api::auth::{Subject, SubjectSource, Verdict};
        Box::pin(async move {
            if crate::api::auth::unverified_issuer(token).as_deref()
                != Some(self.0.cfg.issuer.as_str())
            {
                return Verdict::NotMine;
            }
            match crate::identity::verify_access_token(&self.0, token).await {
                Ok(c) => match apps.by_id(&c.app) {
                    Some(app) => Verdict::Accepted(Subject {
                        app: app.for_user(crate::api::auth::CUSTOMER_SCOPE),
                        customer: Some(c.cid),
                        phone_number: None,
                        source: SubjectSource::GatewayToken,
                    }),
                    None => Verdict::Refused(format!(
                        "the token's application \"{}\" is not configured",
                        crate::api::error::clip(&c.app)
                    )),
                },
                Err(crate::identity::TokenError::Revoked) => {
                    Verdict::Refused("the session of this access token is signed out".into())
                }
                Err(crate::identity::TokenError::Store(e)) => {
                    Verdict::Refused(format!("the access token could not be checked: {e}"))
                }
                Err(_) => Verdict::Refused("invalid or expired access token".into()),
            }
        })
    }
}
