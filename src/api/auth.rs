//! Who calls, and what they may do: HTTP Basic (as OCSG applications authenticate), an API
//! key (`X-API-Key: <key>` or `Authorization: Bearer <key>`), checked against the `[[apps]]`
//! of the configuration, or an access token (`Authorization: Bearer <JWT>`) one of the token
//! verifiers accepts (`[oidc]`: an external OpenID Connect provider); then the application's
//! policy.
//!
//! ```text
//! Authorization: Basic base64(user:password)   -> sha256(password) == password_sha256
//!                                                 (or sha256 of the clear `password`)
//! X-API-Key: k  |  Authorization: Bearer k      -> sha256(k) == sha256(api_key)
//!   every comparison in constant time, over digests of equal length
//! Authorization: Bearer h.p.s (a JWS)           -> the verifier of its issuer (iss): signature,
//!                                                 exp/nbf, aud -> the [[apps]] entry it names,
//!                                                 and the subscriber it is bound to (3-legged)
//!   no verifier claims it                       -> tried as an API key, as before
//! none / wrong  -> 401 ServiceException SVC0001, WWW-Authenticate: Basic realm="payment"
//! policy        -> 403 PolicyException POL0001 (operation, currency, largest amount, admin)
//! ```
//!
//! A 401 carries a ServiceException (SVC0001, "authentication required"): the PolicyException
//! is kept for what an identified application's policy forbids. Each family answers the same
//! refusal in its own error model (CAMARA `UNAUTHENTICATED`, TMF `Error`). The authentication
//! leaves a [`Subject`] in the request's extensions: the application, and the subscriber or
//! customer a token is bound to. The admin endpoints take the application's own credentials
//! only, never a token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use super::payment::Operation;
use crate::config::AppConfig;
use crate::credit_control::Money;

type Digest32 = [u8; 32];

/// An application allowed to call the API, with its policy.
#[derive(Debug)]
pub struct App {
    id: String,
    username: String,
    password: Option<Digest32>,
    api_key: Option<Digest32>,
    currencies: Vec<String>,
    max_amount: Option<Decimal>,
    operations: Vec<String>,
    admin: bool,
    oidc_client_id: String,
    /// A user's token acts for the application within these operations only (none: the
    /// application's own credentials, `allowed_operations` alone decides).
    user_scope: Option<&'static [&'static str]>,
}

impl App {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

/// The configured applications, and the verifiers of the access tokens they may present.
#[derive(Default)]
pub struct Apps {
    apps: Vec<Arc<App>>,
    verifiers: Vec<Arc<dyn TokenVerifier>>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apps")
            .field("apps", &self.apps)
            .field("verifiers", &self.verifiers.len())
            .finish()
    }
}

/// How the request's [`Subject`] was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectSource {
    /// HTTP Basic: the application's user name and password.
    Basic,
    /// The application's API key (`X-API-Key` or `Authorization: Bearer`).
    ApiKey,
    /// An access token of the external OpenID Connect provider (`[oidc]`).
    ExternalToken,
    /// An access token the gateway issued itself (`[identity]`).
    GatewayToken,
}

/// Who acts in a request: the application (whose policy applies), and, for a token bound to
/// a user, that user's customer and subscriber. A request extension, beside [`Caller`].
#[derive(Clone, Debug)]
pub struct Subject {
    pub app: Caller,
    /// The customer (TMF629 id) the token's user is, if any.
    pub customer: Option<String>,
    /// The MSISDN (E.164) a three-legged token is bound to: the request acts for that
    /// subscriber only.
    pub phone_number: Option<String>,
    pub source: SubjectSource,
}

impl Subject {
    /// The application's own credentials (Basic or API key): not bound to a user.
    pub fn of_app(app: Caller, source: SubjectSource) -> Self {
        Self {
            app,
            customer: None,
            phone_number: None,
            source,
        }
    }

    /// The customer a request's customer token acts for (none: the application's own
    /// credentials, or no token bound to a customer).
    pub fn customer_of(subject: Option<axum::Extension<Subject>>) -> Option<String> {
        subject.and_then(|axum::Extension(s)| s.customer)
    }

    /// A token bound to a subscriber (CAMARA three-legged).
    pub fn is_three_legged(&self) -> bool {
        self.phone_number.is_some()
    }
}

/// What a [`TokenVerifier`] says of a bearer token.
#[derive(Debug)]
pub enum Verdict {
    /// Not one of this verifier's tokens (another issuer): the next verifier is asked.
    NotMine,
    /// A valid token: who acts.
    Accepted(Subject),
    /// One of this verifier's tokens, refused (signature, expiry, audience, ...): 401 with
    /// this reason.
    Refused(String),
}

/// The future a [`TokenVerifier`] answers with.
pub type VerdictFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// Verifies the bearer tokens of one issuer: the external OpenID Connect provider
/// ([`super::oidc::OidcVerifier`]), the gateway's own sign-in tokens. Given the token (the
/// header's text after `Bearer `, a JWS in compact form) and the applications, to map the
/// token's client to its `[[apps]]` entry ([`Apps::by_id`], [`Apps::by_oidc_client`]).
/// [`unverified_issuer`] tells, without trusting it, whose token it claims to be.
pub trait TokenVerifier: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str, apps: &'a Apps) -> VerdictFuture<'a>;
}

/// Longest bearer token looked at as a JWT (bytes); verifiers bound it further.
pub const MAX_JWT_BYTES: usize = 64 * 1024;

/// Whether `token` has the shape of a JWS in compact form: three base64url segments (the
/// last may be empty, as in an unsecured `alg: none` token, which every verifier refuses).
pub fn looks_like_jwt(token: &str) -> bool {
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => {
            token.len() <= MAX_JWT_BYTES
                && !h.is_empty()
                && !p.is_empty()
                && b64(h)
                && b64(p)
                && b64(s)
        }
        _ => false,
    }
}

/// The `iss` claim of a JWT, read WITHOUT verifying anything: only to tell which verifier
/// the token is for.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if !looks_like_jwt(token) {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

/// The authenticated application of a request (a request extension).
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<App>);

fn sha256(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// Equality without an early exit: the time does not depend on where the digests differ.
fn ct_eq(a: &Digest32, b: &Digest32) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl Apps {
    /// From the `[[apps]]` sections (validated by the configuration loader; a credential that
    /// cannot be read is left out, so it authenticates nobody).
    pub fn new(apps: &[AppConfig]) -> Self {
        let apps = apps
            .iter()
            .map(|a| {
                let password = if !a.password_sha256.is_empty() {
                    hex::decode(&a.password_sha256)
                        .ok()
                        .and_then(|d| Digest32::try_from(d.as_slice()).ok())
                } else if !a.password.is_empty() {
                    Some(sha256(a.password.as_bytes()))
                } else {
                    None
                };
                Arc::new(App {
                    id: a.id.clone(),
                    username: a.username.clone(),
                    password: password.filter(|_| !a.username.is_empty()),
                    api_key: (!a.api_key.is_empty()).then(|| sha256(a.api_key.as_bytes())),
                    currencies: a.allowed_currencies.clone(),
                    max_amount: a.max_amount,
                    operations: a.allowed_operations.clone(),
                    admin: a.admin,
                    oidc_client_id: a.oidc_client_id.clone(),
                    user_scope: None,
                })
            })
            .collect();
        Self {
            apps,
            verifiers: Vec::new(),
        }
    }

    /// With one more token verifier (asked after those before it).
    pub fn with_verifier(mut self, v: Arc<dyn TokenVerifier>) -> Self {
        self.verifiers.push(v);
        self
    }

    /// The application an `[oidc]` provider issues tokens to as `client_id`.
    pub fn by_oidc_client(&self, client_id: &str) -> Option<Caller> {
        if client_id.is_empty() {
            return None;
        }
        self.apps
            .iter()
            .find(|a| a.oidc_client_id == client_id)
            .cloned()
            .map(Caller)
    }

    /// Who the request's credentials name: an application's own credentials (as
    /// [`Apps::authenticate`]) or a bearer token a verifier accepts; or the 401 to answer.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Subject, ApiError> {
        if let Some(token) = self.bearer_jwt(headers) {
            for v in &self.verifiers {
                match v.verify(token, self).await {
                    Verdict::NotMine => continue,
                    Verdict::Accepted(s) => return Ok(s),
                    Verdict::Refused(why) => {
                        return Err(ApiError::unauthorized(format!("invalid token: {why}")));
                    }
                }
            }
            // No verifier knows it: an API key that happens to look like a JWT.
        }
        self.authenticate(headers)
            .map(|caller| Subject::of_app(caller, credential_source(headers)))
    }

    /// The bearer token of `Authorization`, when it is shaped as a JWT and some verifier is
    /// configured (`X-API-Key` wins, as in [`Apps::authenticate`]).
    fn bearer_jwt<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        if self.verifiers.is_empty() || headers.contains_key("x-api-key") {
            return None;
        }
        let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        let token = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && looks_like_jwt(token)).then_some(token)
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The application with this id (background work done for it: the order pipeline).
    pub fn by_id(&self, id: &str) -> Option<Caller> {
        self.apps.iter().find(|a| a.id == id).cloned().map(Caller)
    }

    /// The application the request's credentials name, or the 401 to answer.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if let Some(key) = headers.get("x-api-key") {
            return self.by_api_key(key.as_bytes());
        }
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "send HTTP Basic credentials or an API key (X-API-Key)",
            ));
        };
        let auth = auth.as_bytes();
        let (scheme, rest) = match auth.iter().position(|b| *b == b' ') {
            Some(i) => (
                auth.get(..i).unwrap_or_default(),
                auth.get(i + 1..).unwrap_or_default(),
            ),
            None => (auth, &[][..]),
        };
        let rest = rest.trim_ascii();
        if scheme.eq_ignore_ascii_case(b"basic") {
            self.by_basic(rest)
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            self.by_api_key(rest)
        } else {
            Err(ApiError::unauthorized(
                "the Authorization scheme must be Basic or Bearer",
            ))
        }
    }

    fn by_api_key(&self, key: &[u8]) -> Result<Caller, ApiError> {
        let presented = sha256(key);
        let mut found = None;
        // Every application is compared: the time does not tell which one matched.
        for app in &self.apps {
            if let Some(k) = &app.api_key
                && ct_eq(k, &presented)
                && found.is_none()
            {
                found = Some(Arc::clone(app));
            }
        }
        found
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("unknown API key"))
    }

    fn by_basic(&self, encoded: &[u8]) -> Result<Caller, ApiError> {
        let bad = || ApiError::unauthorized("invalid user name or password");
        let decoded = STANDARD.decode(encoded).map_err(|_| bad())?;
        let colon = decoded.iter().position(|b| *b == b':').ok_or_else(bad)?;
        let (user, password) = (
            decoded.get(..colon).unwrap_or_default(),
            decoded.get(colon + 1..).unwrap_or_default(),
        );
        let presented = sha256(password);
        let mut found = None;
        for app in &self.apps {
            let same_user = !app.username.is_empty() && app.username.as_bytes() == user;
            let matches = app.password.as_ref().is_some_and(|p| ct_eq(p, &presented));
            if same_user && matches && found.is_none() {
                found = Some(Arc::clone(app));
            }
        }
        found.map(Caller).ok_or_else(bad)
    }
}

/// What a shop customer's access token may call (`[identity]` tokens): its carts and the
/// orders made of them (`shopping-cart`), its own customer (`customer`), its session
/// (`identity`). Never money movements for an arbitrary subscriber, parties or accounts:
/// those take the application's own credentials.
pub const CUSTOMER_SCOPE: &[&str] = &["shopping-cart", "customer", "identity"];

impl Caller {
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The application as a user's token acts for it: its policy, and only the operations of
    /// `scope` besides (a 403 in each family's error model for the others).
    pub fn for_user(&self, scope: &'static [&'static str]) -> Caller {
        let a = &self.0;
        Caller(Arc::new(App {
            id: a.id.clone(),
            username: a.username.clone(),
            password: None,
            api_key: None,
            currencies: a.currencies.clone(),
            max_amount: a.max_amount,
            operations: a.operations.clone(),
            admin: false,
            oidc_client_id: a.oidc_client_id.clone(),
            user_scope: Some(scope),
        }))
    }

    /// Why the caller may not use `what` (the operation `name`), for a 403.
    pub fn refusal(&self, name: &str, what: &str) -> String {
        if self.is_user() {
            let op = if what == name {
                String::new()
            } else {
                format!(" ({name})")
            };
            format!(
                "a customer's access token may not use {what}{op}: it is for the shop ({}); \
                 use the application's credentials",
                self.0.user_scope.unwrap_or_default().join(", ")
            )
        } else {
            format!(
                "application \"{}\" may not use {what} (allowed_operations lacks {name})",
                self.0.id
            )
        }
    }

    /// A user's token (not the application's own credentials).
    pub fn is_user(&self) -> bool {
        self.0.user_scope.is_some()
    }

    /// `allowed_operations` (empty: all) and a user token's scope let `name` be called.
    fn allows(&self, name: &str) -> bool {
        let ops = &self.0.operations;
        (ops.is_empty() || ops.iter().any(|o| o == name))
            && self.0.user_scope.is_none_or(|s| s.contains(&name))
    }

    /// The application may call `op` (`allowed_operations`, empty: all).
    pub fn permit(&self, op: Operation) -> Result<(), ApiError> {
        if !self.allows(op.name()) {
            return Err(ApiError::policy(if self.is_user() {
                self.refusal(op.name(), op.name())
            } else {
                format!("application \"{}\" may not call {}", self.0.id, op.name())
            }));
        }
        Ok(())
    }

    /// The application may move `money` in one `op` (`allowed_currencies`, `max_amount`; for a
    /// split, `money` is the total).
    pub fn permit_money(&self, op: Operation, money: &Money) -> Result<(), ApiError> {
        let code = money.currency.code();
        let cur = &self.0.currencies;
        if !cur.is_empty() && !cur.iter().any(|c| c == code) {
            return Err(ApiError::policy(format!(
                "application \"{}\" may not charge in {code} (allowed: {})",
                self.0.id,
                cur.join(", ")
            )));
        }
        if let Some(max) = self.0.max_amount
            && money.amount > max
        {
            let what = if op == Operation::ChargeSplitAmount {
                "the total"
            } else {
                "the amount"
            };
            return Err(ApiError::policy(format!(
                "{what} {money} is above the limit of application \"{}\" ({max} per operation)",
                self.0.id
            )));
        }
        Ok(())
    }
}

/// Policy questions for families whose operations are not OCSG [`Operation`]s (CAMARA, ...):
/// the family answers a refusal in its own error model.
impl Caller {
    /// `allowed_operations` lets the application call the operation named `name` (empty: all).
    pub fn may_call(&self, name: &str) -> bool {
        self.allows(name)
    }

    /// `allowed_currencies` lets the application move money in `code` (empty: any).
    pub fn may_use_currency(&self, code: &str) -> bool {
        let cur = &self.0.currencies;
        cur.is_empty() || cur.iter().any(|c| c == code)
    }

    /// `max_amount`: the largest amount of one operation, if limited.
    pub fn max_amount(&self) -> Option<Decimal> {
        self.0.max_amount
    }
}

/// Which of an application's own credentials [`Apps::authenticate`] took.
fn credential_source(headers: &HeaderMap) -> SubjectSource {
    if headers.contains_key("x-api-key") {
        return SubjectSource::ApiKey;
    }
    match headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) {
        Some(v)
            if v.get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"basic ")) =>
        {
            SubjectSource::Basic
        }
        _ => SubjectSource::ApiKey,
    }
}

/// Middleware of the payment routes: authenticates, and hands the [`Caller`] (and the
/// [`Subject`]) to the handler.
pub(crate) async fn require_app(
    State(st): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    match st.apps.identify(req.headers()).await {
        Ok(subject) => {
            tracing::Span::current().record("app", subject.app.id());
            req.extensions_mut().insert(subject.app.clone());
            req.extensions_mut().insert(subject);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Middleware of `/metrics` and `/admin/...`: an application with `admin = true`.
pub(crate) async fn require_admin(
    State(st): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    match st.apps.authenticate(req.headers()) {
        Ok(caller) if caller.0.admin => {
            tracing::Span::current().record("app", caller.id());
            let source = credential_source(req.headers());
            req.extensions_mut()
                .insert(Subject::of_app(caller.clone(), source));
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(caller) => ApiError::policy(format!(
            "application \"{}\" is not an administrator (admin = true)",
            caller.id()
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn apps() -> Apps {
        Apps::new(&[
            AppConfig {
                id: "shop".into(),
                username: "shop".into(),
                password: "s3cret".into(),
                password_sha256: String::new(),
                api_key: "k-shop".into(),
                allowed_currencies: vec!["EUR".into()],
                max_amount: Some(Decimal::new(50, 0)),
                allowed_operations: vec!["charge-amount".into()],
                admin: false,
                oidc_client_id: String::new(),
            },
            AppConfig {
                id: "ops".into(),
                username: "ops".into(),
                password: String::new(),
                password_sha256: hex::encode(sha256(b"admin-pw")),
                api_key: String::new(),
                allowed_currencies: vec![],
                max_amount: None,
                allowed_operations: vec![],
                admin: true,
                oidc_client_id: String::new(),
            },
        ])
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, pw: &str) -> HeaderMap {
        with(
            "authorization",
            &format!("Basic {}", STANDARD.encode(format!("{user}:{pw}"))),
        )
    }

    #[test]
    fn credentials() {
        let a = apps();
        assert_eq!(
            a.authenticate(&basic("shop", "s3cret")).unwrap().id(),
            "shop"
        );
        assert_eq!(
            a.authenticate(&basic("ops", "admin-pw")).unwrap().id(),
            "ops"
        );
        assert_eq!(
            a.authenticate(&with("x-api-key", "k-shop")).unwrap().id(),
            "shop"
        );
        assert_eq!(
            a.authenticate(&with("authorization", "Bearer k-shop"))
                .unwrap()
                .id(),
            "shop"
        );
        assert_eq!(
            a.authenticate(&with("authorization", "bearer k-shop"))
                .unwrap()
                .id(),
            "shop",
            "the scheme is case-insensitive"
        );
        for h in [
            HeaderMap::new(),
            basic("shop", "wrong"),
            basic("ops", "s3cret"),
            basic("nobody", "s3cret"),
            basic("shop", ""),
            with("authorization", "Basic !!!"),
            with("authorization", "Basic"),
            with("authorization", "Digest abc"),
            with("x-api-key", "k-other"),
            with("x-api-key", ""),
            with(
                "authorization",
                &format!("Basic {}", STANDARD.encode("shop")),
            ),
        ] {
            let e = a.authenticate(&h).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{h:?}");
            assert!(e.message.starts_with("SVC0001: "), "{}", e.message);
        }
    }

    #[test]
    fn policy() {
        let a = apps();
        let shop = a.authenticate(&basic("shop", "s3cret")).unwrap();
        let eur = crate::credit_control::money::currency("EUR").unwrap();
        let usd = crate::credit_control::money::currency("USD").unwrap();
        assert!(shop.permit(Operation::ChargeAmount).is_ok());
        let e = shop.permit(Operation::RefundAmount).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
        assert!(
            e.message.starts_with("POL0001: policy error: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("refund-amount"));
        assert!(
            shop.permit_money(
                Operation::ChargeAmount,
                &Money::new(Decimal::new(50, 0), eur)
            )
            .is_ok()
        );
        let e = shop
            .permit_money(
                Operation::ChargeAmount,
                &Money::new(Decimal::new(5001, 2), eur),
            )
            .unwrap_err();
        assert!(e.message.contains("50.01 EUR"), "{}", e.message);
        let e = shop
            .permit_money(
                Operation::ChargeSplitAmount,
                &Money::new(Decimal::new(51, 0), eur),
            )
            .unwrap_err();
        assert!(e.message.contains("the total"), "{}", e.message);
        let e = shop
            .permit_money(Operation::ChargeAmount, &Money::new(Decimal::ONE, usd))
            .unwrap_err();
        assert!(e.message.contains("USD"), "{}", e.message);
        let ops = a.authenticate(&basic("ops", "admin-pw")).unwrap();
        for op in Operation::ALL {
            assert!(ops.permit(op).is_ok());
        }
        // The same policy, asked by name (other families).
        assert!(shop.may_call("charge-amount") && !shop.may_call("refund-amount"));
        assert!(ops.may_call("carrier-billing:payments:create"));
        assert!(shop.may_use_currency("EUR") && !shop.may_use_currency("USD"));
        assert!(ops.may_use_currency("USD"));
        assert_eq!(shop.max_amount(), Some(Decimal::new(50, 0)));
        assert_eq!(ops.max_amount(), None);
        assert!(ops.0.is_admin() && !shop.0.is_admin());
        // A customer's token of "ops" (every operation allowed): the shop's only, never
        // an administrator; "shop" (charge-amount only) by token: nothing of the shop.
        let user = ops.for_user(CUSTOMER_SCOPE);
        assert!(user.is_user() && !ops.is_user() && !user.0.is_admin());
        assert!(user.may_call("shopping-cart") && user.may_call("customer"));
        assert!(!user.may_call("charge-amount") && !user.may_call("party"));
        assert!(!user.may_call("carrier-billing:payments:create"));
        assert!(user.permit(Operation::ChargeAmount).is_err());
        let user = shop.for_user(CUSTOMER_SCOPE);
        assert!(!user.may_call("charge-amount") && !user.may_call("shopping-cart"));
    }

    #[test]
    fn constant_time_equality() {
        let a = sha256(b"a");
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!ct_eq(&a, &b));
    }
}
