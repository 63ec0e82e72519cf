//! Self-registration of the shop's customers: sign-up with a one-time code sent through the
//! outbox, confirmation, sign-in with a short-lived access token (JWT) and a rotating refresh
//! token, sign-out. Every decision is taken in the store (several instances share it):
//! uniqueness of an address, attempts, sends, sessions, limits, lockouts.
//!
//! ```text
//! identity.email:<lowercased> | identity.phone:<E.164 digits>      (the address row)
//!   pending   {userId, passwordHash, codeId, attempts, sends, sentMs, expiresMs, ...}
//!   confirmed {userId}
//!   claimed with put_resource_if(.., None); every later change by compare-and-set
//! identity.code:<id>      {codeHash}   written with its outbox event, in one transaction
//! identity.user:<id>      {app, email, phone, passwordHash, customerId}
//! identity.session:<id>   active | revoked {userId, app, customerId, generation, refreshSha256}
//! identity.signing-key    the HS256 key every instance uses (claimed once)
//! ```
//!
//! Sending a code: the address row is moved on first (it names the new code row), then the
//! code row and its event are written together. An instance stopped between the two leaves
//! an address naming a code that does not exist: no code confirms it, and a resend (or a new
//! sign-up) sends a fresh one.
//!
//! Uniform answers: a sign-up (or resend) answers the same whether the address is new,
//! pending or registered; a registered address is sent "you already have an account"
//! instead of a code. A wrong, expired or exhausted code, and an unknown address, answer the
//! same 400; a wrong password, an unknown or unconfirmed address, the same 401. Each path
//! runs one Argon2 verification, so the time does not tell them apart either.
//!
//! The confirmation takes the password of the sign-up with the code. So a sign-up made by
//! someone else for your address (while you sign up too) can never become your account with
//! their password: a later sign-up for a pending address replaces the pending password and
//! code (within `max_sends` and `resend_interval`), and only who knows both the mailbox and the
//! password confirms. A pending sign-up whose code expired is taken over whole by the next
//! sign-up (new user id, counters from zero): an address typed by mistake does not block its
//! owner.

pub mod directory;
pub mod limits;
pub mod otp;
pub mod password;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::config::identity::IdentityConfig;
use crate::config::notifications::SmsConfig;
use crate::notify::mail::{self, MailBody};
use crate::store::{EventRow, EventState, ResourceRow, Store, StoreError};
pub use directory::{Contact, CustomerDirectory, Linked, PartiesDirectory, PartyError};
pub use limits::LimitError;
use limits::next_updated;
use password::Hasher;
pub use token::{TokenError, UserClaims};

pub const ADDRESS_KIND: &str = "identity.address";
pub const CODE_KIND: &str = "identity.code";
pub const USER_KIND: &str = "identity.user";
pub const SESSION_KIND: &str = "identity.session";
pub const KEY_ID: &str = "identity.signing-key";
/// The outbox event kinds.
pub const CODE_EVENT: &str = "identity.code";
pub const REGISTERED_EVENT: &str = "identity.registered";
const PENDING: &str = "pending";
const CONFIRMED: &str = "confirmed";
const ACTIVE: &str = "active";
const REVOKED: &str = "revoked";
/// Longest email address (RFC 5321 4.5.3.1.3 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest name.
pub const MAX_NAME: usize = 128;

/// What the identity handlers share (cheap to clone).
#[derive(Clone)]
pub struct IdentityState {
    pub store: Store,
    pub cfg: Arc<IdentityConfig>,
    /// Mail can be sent (`[notifications.smtp]` host, or its demo `log`).
    pub email: bool,
    /// The SMS webhook, if configured.
    pub sms: Option<SmsConfig>,
    pub directory: Arc<dyn CustomerDirectory>,
    hasher: Hasher,
    key: Arc<OnceCell<Vec<u8>>>,
    dummy: Arc<OnceCell<String>>,
}

impl std::fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityState")
            .field("issuer", &self.cfg.issuer)
            .field("email", &self.email)
            .field("sms", &self.sms.is_some())
            .finish()
    }
}

/// A refusal of the identity operations (mapped onto TMF Errors by `api::identity`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// 400 naming the field.
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    /// 400: the code is wrong, expired, used up, or the address unknown (one answer).
    #[error("the code is wrong or has expired")]
    BadCode,
    /// 401: unknown address, unconfirmed, or wrong password (one answer).
    #[error("wrong address or password")]
    BadCredentials,
    /// 401: the refresh token is unknown, revoked or was used already.
    #[error("the refresh token is not valid")]
    BadRefresh,
    /// 429.
    #[error("too many requests; retry after {0} s")]
    Limited(u64),
    /// 503: no channel to send codes to such an address.
    #[error("{0}")]
    NoChannel(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<LimitError> for IdentityError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited(s) => Self::Limited(s),
            LimitError::Store(e) => e.into(),
        }
    }
}

/// Where codes go: an email address (mail) or a phone number (SMS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Email(String),
    Phone(String),
}

impl Address {
    /// The address row's id.
    pub fn row_id(&self) -> String {
        match self {
            Self::Email(e) => format!("identity.email:{e}"),
            Self::Phone(p) => format!("identity.phone:{p}"),
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::Email(e) | Self::Phone(e) => e,
        }
    }
}

/// An email address, lowercased; 400 naming `field` otherwise.
pub fn email(field: &'static str, s: &str) -> Result<String, IdentityError> {
    let s = s.trim();
    let bad = |why: &str| IdentityError::Invalid {
        field,
        why: why.into(),
    };
    if s.is_empty() || s.len() > MAX_EMAIL {
        return Err(bad("an email address of 1 to 254 characters"));
    }
    let lower = s.to_lowercase();
    if crate::contact::email_ok(&lower) {
        Ok(lower)
    } else {
        Err(bad("not an email address"))
    }
}

/// A phone number in E.164 (`+` and 8 to 15 digits; spaces allowed), as its digits with `+`.
pub fn phone(field: &'static str, s: &str) -> Result<String, IdentityError> {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    if crate::contact::phone_ok(&compact) {
        Ok(compact)
    } else {
        Err(IdentityError::Invalid {
            field,
            why: "a phone number in E.164 form (+ and 8 to 15 digits)".into(),
        })
    }
}

/// A sign-up request, its input checked.
#[derive(Clone, Debug, Default)]
pub struct SignUp {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

impl SignUp {
    /// The address codes go to: the email address when there is one, else the phone number.
    pub fn address(&self) -> Result<Address, IdentityError> {
        match (&self.email, &self.phone) {
            (Some(e), _) => Ok(Address::Email(e.clone())),
            (None, Some(p)) => Ok(Address::Phone(p.clone())),
            (None, None) => Err(IdentityError::Invalid {
                field: "email",
                why: "give email or phoneNumber".into(),
            }),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressDoc {
    user_id: String,
    app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_id: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    sends: u32,
    #[serde(default)]
    sent_ms: i64,
    #[serde(default)]
    expires_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeDoc {
    address: String,
    code_hash: String,
}

/// A user row's document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserDoc {
    pub id: String,
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The address confirmed by the code (`email` or `phone`).
    pub confirmed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    pub customer_id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    password_hash: String,
    pub created_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDoc {
    user_id: String,
    app: String,
    customer_id: String,
    generation: u64,
    refresh_sha256: String,
    expires_ms: i64,
}

/// What sign-in and refresh give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub claims: UserClaims,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn internal(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Internal(e.to_string())
}

fn row(
    id: &str,
    app: &str,
    kind: &str,
    state: &str,
    body: String,
    created: i64,
    updated: i64,
) -> ResourceRow {
    ResourceRow {
        id: id.to_string(),
        app: app.to_string(),
        kind: kind.into(),
        state: state.into(),
        parent: None,
        due_ms: None,
        body,
        created_ms: created,
        updated_ms: updated,
    }
}

/// A message to an address: by mail (subject, text) or by SMS.
struct Message {
    subject: String,
    text: String,
    sms: String,
}

/// The few characters of a template that are replaced.
fn render(t: &str, code: &str, minutes: u64) -> String {
    t.replace("{minutes}", &minutes.to_string())
        .replace("{code}", code)
}

impl IdentityState {
    pub fn new(
        store: Store,
        cfg: IdentityConfig,
        notifications: &crate::config::notifications::NotificationsConfig,
    ) -> Self {
        Self {
            store,
            hasher: Hasher::new(&cfg),
            cfg: Arc::new(cfg),
            email: notifications.smtp.enabled(),
            sms: notifications
                .sms
                .enabled()
                .then(|| notifications.sms.clone()),
            directory: Arc::new(PartiesDirectory),
            key: Arc::new(OnceCell::new()),
            dummy: Arc::new(OnceCell::new()),
        }
    }

    /// With another customer directory (the party model's).
    pub fn with_directory(mut self, d: Arc<dyn CustomerDirectory>) -> Self {
        self.directory = d;
        self
    }

    async fn hash(&self, secret: String) -> Result<String, IdentityError> {
        let h = self.hasher.clone();
        tokio::task::spawn_blocking(move || h.hash(secret.as_bytes()))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Verifies `secret` against `phc`, or against a hash of nothing when there is none (the
    /// same work either way).
    async fn verify(&self, secret: String, phc: Option<String>) -> Result<bool, IdentityError> {
        let real = phc.is_some();
        let phc = match phc {
            Some(p) => p,
            None => self
                .dummy
                .get_or_try_init(|| self.hash("not a password of anyone".into()))
                .await?
                .clone(),
        };
        let h = self.hasher.clone();
        let ok = tokio::task::spawn_blocking(move || h.verify(secret.as_bytes(), &phc))
            .await
            .map_err(internal)?;
        Ok(ok && real)
    }

    /// The HS256 key: `[identity] signing_key`, else the one in the store (made by the first
    /// instance that needed it).
    pub async fn signing_key(&self) -> Result<&[u8], IdentityError> {
        self.key
            .get_or_try_init(|| async {
                if !self.cfg.signing_key.is_empty() {
                    return Ok(self.cfg.signing_key.as_bytes().to_vec());
                }
                for _ in 0..3 {
                    if let Some(r) = self.store.resource(KEY_ID).await? {
                        let v: serde_json::Value =
                            serde_json::from_str(&r.body).map_err(internal)?;
                        return v["key"]
                            .as_str()
                            .and_then(|k| hex::decode(k).ok())
                            .filter(|k| k.len() >= 32)
                            .ok_or_else(|| internal("identity.signing-key: unreadable"));
                    }
                    let key = otp::random_hex(32).map_err(internal)?;
                    let now = crate::store::now_ms();
                    let r = row(
                        KEY_ID,
                        "",
                        "identity.key",
                        ACTIVE,
                        json!({"key": key}).to_string(),
                        now,
                        now,
                    );
                    self.store.put_resource_if(r, None).await?;
                }
                Err(internal("identity.signing-key: not claimed"))
            })
            .await
            .map(Vec::as_slice)
    }

    fn channel(&self, a: &Address) -> Result<(), IdentityError> {
        match a {
            Address::Email(_) if !self.email => Err(IdentityError::NoChannel(
                "no [notifications.smtp] configured: codes cannot be sent to email addresses"
                    .into(),
            )),
            Address::Phone(_) if self.sms.is_none() => Err(IdentityError::NoChannel(
                "no [notifications.sms] configured: codes cannot be sent to phone numbers".into(),
            )),
            _ => Ok(()),
        }
    }

    fn event(
        &self,
        app: &str,
        id: String,
        kind: &str,
        to: &Address,
        m: Message,
        now: i64,
    ) -> EventRow {
        let Message { subject, text, sms } = m;
        let (url, headers, body) = match (to, &self.sms) {
            (Address::Phone(p), Some(s)) => {
                let headers = if s.token.is_empty() {
                    Vec::new()
                } else {
                    vec![("Authorization".into(), format!("Bearer {}", s.token))]
                };
                (
                    s.url.clone(),
                    headers,
                    json!({"to": p, "text": sms}).to_string(),
                )
            }
            _ => {
                let b = MailBody { subject, text };
                (
                    mail::mailto(to.text()),
                    Vec::new(),
                    serde_json::to_string(&b).unwrap_or_default(),
                )
            }
        };
        EventRow {
            id,
            app: app.to_string(),
            kind: kind.into(),
            resource: Some(to.row_id()),
            url,
            headers,
            content_type: mail::CONTENT_TYPE.into(),
            body,
            state: EventState::Pending,
            attempts: 0,
            next_ms: now,
            last_error: None,
            lease: None,
            created_ms: now,
            updated_ms: now,
            delivered_ms: None,
        }
    }

    /// Writes code row `code_id` for `to` and its message, in one transaction.
    async fn send_code(
        &self,
        app: &str,
        to: &Address,
        code_id: &str,
        now: i64,
    ) -> Result<(), IdentityError> {
        let code = otp::generate().map_err(internal)?;
        let doc = CodeDoc {
            address: to.row_id(),
            code_hash: self.hash(code.clone()).await?,
        };
        let minutes = self.cfg.code_ttl.as_secs().div_ceil(60);
        let c = &self.cfg;
        let ev = self.event(
            app,
            format!("identity-code-{code_id}"),
            CODE_EVENT,
            to,
            Message {
                subject: render(&c.code_subject, &code, minutes),
                text: render(&c.code_text, &code, minutes),
                sms: render(&c.code_sms_text, &code, minutes),
            },
            now,
        );
        let r = row(
            &format!("{CODE_KIND}:{code_id}"),
            app,
            CODE_KIND,
            ACTIVE,
            serde_json::to_string(&doc).map_err(internal)?,
            now,
            now,
        );
        self.store.put_resource_with_events(r, vec![ev]).await?;
        Ok(())
    }

    async fn address(
        &self,
        a: &Address,
    ) -> Result<Option<(ResourceRow, AddressDoc)>, IdentityError> {
        let Some(r) = self.store.resource(&a.row_id()).await? else {
            return Ok(None);
        };
        let d: AddressDoc = serde_json::from_str(&r.body).map_err(internal)?;
        Ok(Some((r, d)))
    }

    fn address_row(
        &self,
        a: &Address,
        state: &str,
        d: &AddressDoc,
        created: i64,
        updated: i64,
    ) -> Result<ResourceRow, IdentityError> {
        let mut r = row(
            &a.row_id(),
            &d.app,
            ADDRESS_KIND,
            state,
            serde_json::to_string(d).map_err(internal)?,
            created,
            updated,
        );
        r.due_ms = (state == PENDING).then_some(d.expires_ms);
        Ok(r)
    }

    /// `POST /sign-up`: the same answer (Ok) whatever the address's state; see the module
    /// docs. Limits: `signup_limit` per address, `app_limit` per application.
    pub async fn sign_up(&self, app: &str, s: SignUp, now: i64) -> Result<(), IdentityError> {
        let to = s.address()?;
        password::check(&s.password).map_err(|why| IdentityError::Invalid {
            field: "password",
            why: why.into(),
        })?;
        self.channel(&to)?;
        let c = &self.cfg;
        limits::hit(&self.store, "app", app, c.app_limit, c.limit_window, now).await?;
        limits::hit(
            &self.store,
            "signup",
            to.text(),
            c.signup_limit,
            c.limit_window,
            now,
        )
        .await?;
        // Hashed before the address is read: every path costs the same.
        let password_hash = self.hash(s.password.clone()).await?;
        for _ in 0..limits::CAS_TRIES {
            let current = self.address(&to).await?;
            let code_id = otp::random_hex(16).map_err(internal)?;
            let fresh = AddressDoc {
                user_id: format!("usr-{}", otp::random_hex(16).map_err(internal)?),
                app: app.to_string(),
                password_hash: Some(password_hash.clone()),
                code_id: Some(code_id.clone()),
                attempts: 0,
                sends: 1,
                sent_ms: now,
                expires_ms: now.saturating_add(ms(c.code_ttl)),
                email: s.email.clone(),
                phone: s.phone.clone(),
                given_name: s.given_name.clone(),
                family_name: s.family_name.clone(),
            };
            let (next, expected, created) = match current {
                None => (fresh, None, now),
                Some((r, _)) if r.state == CONFIRMED => {
                    // Registered: a "you already have an account" message instead of a code.
                    let ev = self.event(
                        &r.app,
                        format!("identity-registered-{code_id}"),
                        REGISTERED_EVENT,
                        &to,
                        Message {
                            subject: c.registered_subject.clone(),
                            text: c.registered_text.clone(),
                            sms: c.registered_text.clone(),
                        },
                        now,
                    );
                    self.store.put_event(ev).await?;
                    return Ok(());
                }
                // Expired: taken over whole.
                Some((r, d)) if d.expires_ms <= now => {
                    (fresh, Some(r.updated_ms), r.created_ms.min(now))
                }
                Some((r, d)) => {
                    // Pending: the new password and a new code, within the send limits.
                    if d.sends >= c.max_sends || now - d.sent_ms < ms(c.resend_interval) {
                        return Ok(());
                    }
                    let next = AddressDoc {
                        user_id: d.user_id.clone(),
                        sends: d.sends + 1,
                        ..fresh
                    };
                    (next, Some(r.updated_ms), r.created_ms)
                }
            };
            let updated = expected.map_or(now, |t| next_updated(now, t));
            let r = self.address_row(&to, PENDING, &next, created, updated)?;
            if self.store.put_resource_if(r, expected).await? {
                self.send_code(app, &to, &code_id, now).await?;
                return Ok(());
            }
        }
        Err(IdentityError::Limited(1))
    }

    /// `POST /resend`: a new code for a pending sign-up (at most `max_sends` codes, one per
    /// `resend_interval` per address: 429 with Retry-After before). The same answer for any
    /// address.
    pub async fn resend(&self, app: &str, to: &Address, now: i64) -> Result<(), IdentityError> {
        self.channel(to)?;
        let c = &self.cfg;
        limits::hit(&self.store, "app", app, c.app_limit, c.limit_window, now).await?;
        limits::hit(&self.store, "resend", to.text(), 1, c.resend_interval, now).await?;
        for _ in 0..limits::CAS_TRIES {
            let Some((r, d)) = self.address(to).await? else {
                return Ok(());
            };
            if r.state != PENDING || d.sends >= c.max_sends || d.app != app {
                return Ok(());
            }
            let code_id = otp::random_hex(16).map_err(internal)?;
            let next = AddressDoc {
                code_id: Some(code_id.clone()),
                attempts: 0,
                sends: d.sends + 1,
                sent_ms: now,
                expires_ms: now.saturating_add(ms(c.code_ttl)),
                ..d
            };
            let updated = next_updated(now, r.updated_ms);
            let row = self.address_row(to, PENDING, &next, r.created_ms, updated)?;
            if self.store.put_resource_if(row, Some(r.updated_ms)).await? {
                self.send_code(app, to, &code_id, now).await?;
                return Ok(());
            }
        }
        Err(IdentityError::Limited(1))
    }

    /// `POST /confirm-sign-up`: the code and the password of the sign-up. Every failure is
    /// [`IdentityError::BadCode`]; a wrong code counts against `max_attempts`.
    pub async fn confirm(
        &self,
        app: &str,
        to: &Address,
        code: &str,
        password: &str,
        now: i64,
    ) -> Result<UserDoc, IdentityError> {
        let c = &self.cfg;
        if !otp::well_formed(code) || password.len() > password::MAX_PASSWORD {
            return Err(IdentityError::BadCode);
        }
        for _ in 0..limits::CAS_TRIES {
            let current = self.address(to).await?;
            let usable = current.as_ref().filter(|(r, d)| {
                r.state == PENDING
                    && d.app == app
                    && d.attempts < c.max_attempts
                    && d.expires_ms > now
            });
            let Some((r, d)) = usable else {
                // Unknown, registered, expired or used up: the same work, the same answer.
                self.verify(code.into(), None).await?;
                self.verify(password.into(), None).await?;
                return Err(IdentityError::BadCode);
            };
            let code_row = match &d.code_id {
                Some(id) => self.store.resource(&format!("{CODE_KIND}:{id}")).await?,
                None => None,
            };
            let code_hash = code_row
                .and_then(|r| serde_json::from_str::<CodeDoc>(&r.body).ok())
                .filter(|cd| cd.address == to.row_id())
                .map(|cd| cd.code_hash);
            let code_ok = self.verify(code.into(), code_hash).await?;
            let password_ok = self
                .verify(password.into(), d.password_hash.clone())
                .await?;
            if !(code_ok && password_ok) {
                let next = AddressDoc {
                    attempts: d.attempts + 1,
                    ..d.clone()
                };
                let row = self.address_row(
                    to,
                    PENDING,
                    &next,
                    r.created_ms,
                    next_updated(now, r.updated_ms),
                )?;
                if self.store.put_resource_if(row, Some(r.updated_ms)).await? {
                    return Err(IdentityError::BadCode);
                }
                continue;
            }
            // The user first (a stop after it leaves the address pending: confirm again).
            let contact = Contact {
                email: d.email.clone(),
                phone: d.phone.clone(),
                given_name: d.given_name.clone(),
                family_name: d.family_name.clone(),
            };
            let linked = self
                .directory
                .ensure_individual_customer(&self.store, app, &contact)
                .await
                .map_err(internal)?;
            let user = UserDoc {
                id: d.user_id.clone(),
                app: app.to_string(),
                email: d.email.clone(),
                phone: d.phone.clone(),
                confirmed: match to {
                    Address::Email(_) => "email".into(),
                    Address::Phone(_) => "phone".into(),
                },
                given_name: d.given_name.clone(),
                family_name: d.family_name.clone(),
                customer_id: linked.customer_id,
                password_hash: d.password_hash.clone().unwrap_or_default(),
                created_ms: now,
            };
            let uid = format!("{USER_KIND}:{}", user.id);
            let urow = row(
                &uid,
                app,
                USER_KIND,
                ACTIVE,
                serde_json::to_string(&user).map_err(internal)?,
                now,
                now,
            );
            self.store.put_resource_if(urow, None).await?;
            let done = AddressDoc {
                user_id: d.user_id.clone(),
                app: app.to_string(),
                ..AddressDoc::default()
            };
            let arow = self.address_row(
                to,
                CONFIRMED,
                &done,
                r.created_ms,
                next_updated(now, r.updated_ms),
            )?;
            if self.store.put_resource_if(arow, Some(r.updated_ms)).await? {
                return self
                    .user(&d.user_id)
                    .await?
                    .ok_or_else(|| internal("the user row is gone"));
            }
            // Another confirmation (the same code) got there first.
            if let Some((r2, d2)) = self.address(to).await?
                && r2.state == CONFIRMED
                && d2.user_id == d.user_id
            {
                return self
                    .user(&d.user_id)
                    .await?
                    .ok_or_else(|| internal("the user row is gone"));
            }
        }
        Err(IdentityError::BadCode)
    }

    /// The user with this id.
    pub async fn user(&self, id: &str) -> Result<Option<UserDoc>, IdentityError> {
        match self.store.resource(&format!("{USER_KIND}:{id}")).await? {
            Some(r) => Ok(Some(serde_json::from_str(&r.body).map_err(internal)?)),
            None => Ok(None),
        }
    }

    /// `POST /sign-in`: tokens for the right password of a confirmed address of this
    /// application. Limits: `signin_limit` per address, `app_limit` per application; after
    /// `max_failed_signins` failures the address is locked for `lockout` (429).
    pub async fn sign_in(
        &self,
        app: &str,
        to: &Address,
        password: &str,
        now: i64,
    ) -> Result<Tokens, IdentityError> {
        let c = &self.cfg;
        if password.len() > password::MAX_PASSWORD {
            return Err(IdentityError::BadCredentials);
        }
        limits::hit(&self.store, "app", app, c.app_limit, c.limit_window, now).await?;
        limits::hit(
            &self.store,
            "signin",
            to.text(),
            c.signin_limit,
            c.limit_window,
            now,
        )
        .await?;
        limits::check_lockout(&self.store, &to.row_id(), now).await?;
        let user = match self.address(to).await? {
            Some((r, d)) if r.state == CONFIRMED => self.user(&d.user_id).await?,
            _ => None,
        }
        .filter(|u| u.app == app);
        let ok = self
            .verify(
                password.into(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        let Some(user) = user.filter(|_| ok) else {
            limits::fail(
                &self.store,
                &to.row_id(),
                c.max_failed_signins,
                c.lockout,
                now,
            )
            .await?;
            return Err(IdentityError::BadCredentials);
        };
        limits::succeed(&self.store, &to.row_id(), now).await?;
        let sid = format!("ses-{}", otp::random_hex(16).map_err(internal)?);
        let refresh = token::Refresh::new(&sid, 0).map_err(internal)?;
        let doc = SessionDoc {
            user_id: user.id.clone(),
            app: app.to_string(),
            customer_id: user.customer_id.clone(),
            generation: 0,
            refresh_sha256: refresh.digest(),
            expires_ms: now.saturating_add(ms(c.refresh_ttl)),
        };
        let srow = self.session_row(&sid, ACTIVE, &doc, now, now)?;
        if !self.store.put_resource_if(srow, None).await? {
            return Err(internal("a session id was drawn twice"));
        }
        self.tokens(&sid, &doc, &refresh, now).await
    }

    fn session_row(
        &self,
        sid: &str,
        state: &str,
        d: &SessionDoc,
        created: i64,
        updated: i64,
    ) -> Result<ResourceRow, IdentityError> {
        let mut r = row(
            &format!("{SESSION_KIND}:{sid}"),
            &d.app,
            SESSION_KIND,
            state,
            serde_json::to_string(d).map_err(internal)?,
            created,
            updated,
        );
        r.parent = Some(format!("{USER_KIND}:{}", d.user_id));
        r.due_ms = Some(d.expires_ms);
        Ok(r)
    }

    async fn tokens(
        &self,
        sid: &str,
        d: &SessionDoc,
        refresh: &token::Refresh,
        now: i64,
    ) -> Result<Tokens, IdentityError> {
        let ttl = self.cfg.access_ttl.as_secs().max(1);
        let iat = now / 1000;
        let claims = UserClaims {
            iss: self.cfg.issuer.clone(),
            sub: d.user_id.clone(),
            app: d.app.clone(),
            cid: d.customer_id.clone(),
            sid: sid.to_string(),
            exp: iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            iat,
            jti: otp::random_hex(16).map_err(internal)?,
        };
        let key = self.signing_key().await?;
        Ok(Tokens {
            access_token: token::sign(key, &claims).map_err(internal)?,
            expires_in: ttl,
            refresh_token: refresh.text(),
            claims,
        })
    }

    async fn session(&self, sid: &str) -> Result<Option<(ResourceRow, SessionDoc)>, IdentityError> {
        let Some(r) = self
            .store
            .resource(&format!("{SESSION_KIND}:{sid}"))
            .await?
        else {
            return Ok(None);
        };
        let d: SessionDoc = serde_json::from_str(&r.body).map_err(internal)?;
        Ok(Some((r, d)))
    }

    async fn revoke(
        &self,
        r: &ResourceRow,
        d: &SessionDoc,
        now: i64,
    ) -> Result<bool, IdentityError> {
        let sid =
            r.id.trim_start_matches(&format!("{SESSION_KIND}:"))
                .to_string();
        let row = self.session_row(
            &sid,
            REVOKED,
            d,
            r.created_ms,
            next_updated(now, r.updated_ms),
        )?;
        Ok(self.store.put_resource_if(row, Some(r.updated_ms)).await?)
    }

    /// `POST /refresh`: new tokens; the refresh token presented is spent (the session moves
    /// to its next generation). A spent one presented again revokes the session.
    pub async fn refresh(
        &self,
        app: &str,
        presented: &str,
        now: i64,
    ) -> Result<Tokens, IdentityError> {
        let Some(p) = token::Refresh::parse(presented) else {
            return Err(IdentityError::BadRefresh);
        };
        for _ in 0..limits::CAS_TRIES {
            let Some((r, d)) = self.session(&p.session).await? else {
                return Err(IdentityError::BadRefresh);
            };
            if r.state != ACTIVE || d.app != app || d.expires_ms <= now {
                return Err(IdentityError::BadRefresh);
            }
            if p.generation < d.generation {
                // A spent token: whoever holds it is not the session's holder any more.
                if self.revoke(&r, &d, now).await? {
                    tracing::warn!(session = %p.session, "refresh token reused: session revoked");
                    return Err(IdentityError::BadRefresh);
                }
                continue;
            }
            if p.generation != d.generation || !p.matches(&d.refresh_sha256) {
                return Err(IdentityError::BadRefresh);
            }
            let next = token::Refresh::new(&p.session, d.generation + 1).map_err(internal)?;
            let nd = SessionDoc {
                generation: d.generation + 1,
                refresh_sha256: next.digest(),
                ..d.clone()
            };
            let row = self.session_row(
                &p.session,
                ACTIVE,
                &nd,
                r.created_ms,
                next_updated(now, r.updated_ms),
            )?;
            if self.store.put_resource_if(row, Some(r.updated_ms)).await? {
                return self.tokens(&p.session, &nd, &next, now).await;
            }
        }
        Err(IdentityError::BadRefresh)
    }

    /// `POST /sign-out`: the session of the refresh token is revoked (its access tokens are
    /// refused from now on). A session revoked already: done.
    pub async fn sign_out(
        &self,
        app: &str,
        presented: &str,
        now: i64,
    ) -> Result<(), IdentityError> {
        let Some(p) = token::Refresh::parse(presented) else {
            return Err(IdentityError::BadRefresh);
        };
        for _ in 0..limits::CAS_TRIES {
            let Some((r, d)) = self.session(&p.session).await? else {
                return Err(IdentityError::BadRefresh);
            };
            if d.app != app || p.generation > d.generation {
                return Err(IdentityError::BadRefresh);
            }
            if p.generation == d.generation && !p.matches(&d.refresh_sha256) {
                return Err(IdentityError::BadRefresh);
            }
            if r.state == REVOKED {
                return Ok(());
            }
            if self.revoke(&r, &d, now).await? {
                return Ok(());
            }
        }
        Err(IdentityError::BadRefresh)
    }
}

/// The claims of a valid access token whose session is still active.
pub async fn verify_access_token(
    st: &IdentityState,
    token: &str,
) -> Result<UserClaims, TokenError> {
    verify_access_token_at(st, token, crate::store::now_ms()).await
}

/// [`verify_access_token`] at `now` (ms since the epoch).
pub async fn verify_access_token_at(
    st: &IdentityState,
    token: &str,
    now: i64,
) -> Result<UserClaims, TokenError> {
    let key = st
        .signing_key()
        .await
        .map_err(|e| TokenError::Store(e.to_string()))?;
    let claims = token::decode(key, &st.cfg.issuer, token, now / 1000)?;
    match st.session(&claims.sid).await {
        Ok(Some((r, d))) if r.state == ACTIVE && d.user_id == claims.sub && d.expires_ms > now => {
            Ok(claims)
        }
        Ok(_) => Err(TokenError::Revoked),
        Err(e) => Err(TokenError::Store(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
