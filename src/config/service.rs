//! The service sections of `conf/gateway.toml`: the credit-control client, the REST server,
//! the store, the embedded OCS simulator and the API applications.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};
use crate::credit_control::{CcConfig, CcFailureHandling, DdFailureHandling, StyleConfig};
use crate::diameter::codec::{AvpBuf, AvpFlags, AvpValue, DataType, Time, VendorId};
use crate::diameter::dict::Dictionary;

/// `[credit_control]`: how CCRs are built and what to do when the OCS does not answer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CreditControlConfig {
    /// Service-Context-Id (RFC 8506 8.42), agreed with the OCS.
    pub service_context_id: String,
    /// Destination-Realm of every CCR.
    pub destination_realm: String,
    /// Destination-Host ("" = any host of the realm).
    pub destination_host: String,
    /// Where the units go, per kind of request (`events`, `sessions`): `mscc` (inside
    /// Multiple-Services-Credit-Control, 3GPP Gy/Ro), `command_level` (RFC 4006 as written) or
    /// `auto` (learnt per OCS from its answers). One word sets both kinds.
    pub style: StyleConfig,
    /// Currency assumed for CC-Money without Currency-Code.
    pub default_currency: String,
    /// Credit-Control-Failure-Handling until a CCA says otherwise.
    pub ccfh: CcFailureHandling,
    /// Direct-Debiting-Failure-Handling until a CCA says otherwise.
    pub ddfh: DdFailureHandling,
    /// Service-Identifier sent with every request (0 = none).
    pub service_identifier: u32,
    /// Rating-Group sent in the MSCC (0 = none).
    pub rating_group: u32,
    /// Most reservations open at once.
    pub max_sessions: usize,
    /// A reservation is released after this even if the OCS grants longer.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// How often expired reservations are released.
    #[serde(with = "humantime_serde")]
    pub reaper_interval: Duration,
    /// Pause between re-sends (T flag) of a request whose outcome is unknown.
    #[serde(with = "humantime_serde")]
    pub resolve_interval: Duration,
    /// Re-sends before a request is left for manual reconciliation.
    pub resolve_attempts: u32,
    /// Operator-specific AVPs added to every CCR, by dictionary name.
    pub extra_avps: Vec<AvpTemplate>,
}

impl Default for CreditControlConfig {
    fn default() -> Self {
        Self {
            service_context_id: "payment.v1@charging.local".into(),
            destination_realm: "charging.local".into(),
            destination_host: String::new(),
            style: StyleConfig::default(),
            default_currency: "EUR".into(),
            ccfh: CcFailureHandling::Terminate,
            ddfh: DdFailureHandling::TerminateOrBuffer,
            service_identifier: 0,
            rating_group: 0,
            max_sessions: 100_000,
            reservation_ttl: Duration::from_secs(900),
            reaper_interval: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            resolve_attempts: 120,
            extra_avps: Vec::new(),
        }
    }
}

/// One AVP of a template: a name from the dictionaries and either a value (text, parsed by the
/// AVP's type) or members (Grouped).
///
/// ```toml
/// [[credit_control.extra_avps]]
/// avp = "Service-Information"
/// members = [ { avp = "PS-Information", members = [ { avp = "3GPP-Charging-Id", value = "0x0000004d" } ] } ]
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AvpTemplate {
    pub avp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<AvpTemplate>,
}

impl AvpTemplate {
    /// The AVP this template describes; `key` names it in errors.
    pub fn build(&self, dict: &Dictionary, key: &str) -> Result<AvpBuf, ConfigError> {
        let def = dict.avp_by_name(&self.avp).ok_or_else(|| {
            bad(
                format!("{key}.avp"),
                format!("\"{}\" is not in the dictionaries", self.avp),
            )
        })?;
        let value = match (def.data_type, &self.value) {
            (DataType::Grouped, None) => {
                let mut members = Vec::with_capacity(self.members.len());
                for (i, m) in self.members.iter().enumerate() {
                    members.push(m.build(dict, &format!("{key}.members[{i}]"))?);
                }
                AvpValue::Grouped(members)
            }
            (DataType::Grouped, Some(_)) => {
                return Err(bad(
                    format!("{key}.value"),
                    format!("{} is Grouped: give members, not a value", self.avp),
                ));
            }
            (_, None) => {
                return Err(bad(
                    format!("{key}.value"),
                    format!("{} needs a value", self.avp),
                ));
            }
            (ty, Some(text)) => {
                if !self.members.is_empty() {
                    return Err(bad(
                        format!("{key}.members"),
                        format!("{} is not Grouped", self.avp),
                    ));
                }
                parse_value(ty, def, text).map_err(|why| bad(format!("{key}.value"), why))?
            }
        };
        let mut flags = def.must.0 & (AvpFlags::MANDATORY | AvpFlags::PROTECTED);
        if def.vendor != VendorId::IETF {
            flags |= AvpFlags::VENDOR;
        }
        Ok(AvpBuf {
            code: def.code,
            flags: AvpFlags(flags),
            vendor_id: (def.vendor != VendorId::IETF).then_some(def.vendor),
            value,
        })
    }
}

fn parse_value(
    ty: DataType,
    def: &crate::diameter::dict::AvpDef,
    text: &str,
) -> Result<AvpValue, String> {
    let num = |t: &str| t.trim().to_string();
    let bad_num = |t: &str| format!("\"{t}\" is not a valid {}", ty.name());
    Ok(match ty {
        DataType::Integer32 => AvpValue::Integer32(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Integer64 => AvpValue::Integer64(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Unsigned32 => AvpValue::Unsigned32(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Unsigned64 => AvpValue::Unsigned64(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Float32 => AvpValue::Float32(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Float64 => AvpValue::Float64(num(text).parse().map_err(|_| bad_num(text))?),
        DataType::Enumerated => {
            let v = match def.item_value(text) {
                Some(v) => v,
                None => num(text).parse().map_err(|_| {
                    format!("\"{text}\" is neither a value of {} nor a number", def.name)
                })?,
            };
            AvpValue::Integer32(v)
        }
        DataType::OctetString => match text.strip_prefix("0x") {
            Some(h) => AvpValue::Bytes(
                hex::decode(h)
                    .map_err(|e| format!("\"{text}\": bad hex ({e})"))?
                    .into(),
            ),
            None => AvpValue::Bytes(bytes::Bytes::copy_from_slice(text.as_bytes())),
        },
        DataType::Utf8String | DataType::DiameterIdentity | DataType::DiameterUri => {
            AvpValue::Bytes(bytes::Bytes::copy_from_slice(text.as_bytes()))
        }
        DataType::IpFilterRule => AvpValue::Bytes(bytes::Bytes::copy_from_slice(text.as_bytes())),
        DataType::Address => {
            let ip: std::net::IpAddr = text
                .trim()
                .parse()
                .map_err(|_| format!("\"{text}\" is not an IP address"))?;
            AvpBuf::address(def.code, ip).value
        }
        DataType::Time => {
            let t = time::OffsetDateTime::parse(
                text.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| format!("\"{text}\" is not an RFC 3339 time"))?;
            let t = Time::from_unix(t.unix_timestamp())
                .ok_or_else(|| format!("\"{text}\" is outside the NTP eras Diameter can carry"))?;
            AvpBuf::time(def.code, t).value
        }
        DataType::Grouped => return Err("Grouped AVPs take members".into()),
    })
}

impl CreditControlConfig {
    /// The client settings; the extra AVPs are resolved against `dict`.
    pub fn client_config(&self, dict: &Dictionary, tx: Duration) -> Result<CcConfig, ConfigError> {
        let default_currency = iso_currency::Currency::from_code(&self.default_currency)
            .ok_or_else(|| {
                bad(
                    "credit_control.default_currency",
                    format!("\"{}\" is not an ISO 4217 code", self.default_currency),
                )
            })?;
        let mut extra = Vec::with_capacity(self.extra_avps.len());
        for (i, t) in self.extra_avps.iter().enumerate() {
            let avp = t.build(dict, &format!("credit_control.extra_avps[{i}]"))?;
            avp.checked_len().map_err(|e| {
                bad(
                    format!("credit_control.extra_avps[{i}]"),
                    format!("cannot be encoded: {e}"),
                )
            })?;
            extra.push(avp);
        }
        Ok(CcConfig {
            service_context_id: self.service_context_id.clone(),
            destination_realm: self.destination_realm.clone(),
            destination_host: (!self.destination_host.is_empty())
                .then(|| self.destination_host.clone()),
            style: self.style,
            default_currency,
            ccfh: self.ccfh,
            ddfh: self.ddfh,
            tx,
            service_identifier: (self.service_identifier != 0).then_some(self.service_identifier),
            rating_group: (self.rating_group != 0).then_some(self.rating_group),
            extra_avps: extra,
            max_sessions: self.max_sessions,
            reservation_ttl: self.reservation_ttl,
            resolve_interval: self.resolve_interval,
            resolve_attempts: self.resolve_attempts,
        })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let k = |f: &str| format!("credit_control.{f}");
        let sc = &self.service_context_id;
        if !sc.contains('@') || sc.starts_with('@') || sc.ends_with('@') {
            return Err(bad(
                k("service_context_id"),
                format!("\"{sc}\" must read service-context@domain (RFC 8506 8.42)"),
            ));
        }
        super::fqdn(&k("destination_realm"), &self.destination_realm)?;
        if !self.destination_host.is_empty() {
            super::fqdn(&k("destination_host"), &self.destination_host)?;
        }
        if iso_currency::Currency::from_code(&self.default_currency).is_none() {
            return Err(bad(
                k("default_currency"),
                format!("\"{}\" is not an ISO 4217 code", self.default_currency),
            ));
        }
        if self.max_sessions == 0 {
            return Err(bad(k("max_sessions"), "must be above zero"));
        }
        for (key, v) in [
            ("reservation_ttl", self.reservation_ttl),
            ("reaper_interval", self.reaper_interval),
            ("resolve_interval", self.resolve_interval),
        ] {
            if v.is_zero() {
                return Err(bad(k(key), "must be above zero"));
            }
        }
        Ok(())
    }
}

/// `[http]`: the REST server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Largest request body accepted (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest a client may take to send a request's head (request line and headers) from
    /// the moment the server waits for it (a new connection, or a kept-alive one after its
    /// last answer); then the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest a client may take to send a request's body once its head is read; then 408,
    /// nothing charged.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Longest a request may take once its body is read (must exceed the Diameter Tx).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for in-flight REST requests on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `text` or `json` log lines.
    pub log_format: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            log_format: "text".into(),
        }
    }
}

/// `[store]`: where records are kept.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (embedded, the default), `postgres` (a PostgreSQL database at `url`) or
    /// `memory` (nothing durable: tests only).
    pub backend: String,
    /// Directory of the SQLite file (`gateway.sqlite3`).
    pub data_dir: PathBuf,
    /// The PostgreSQL connection string (backend `postgres`): a URL,
    /// `postgresql://user:password@host:5432/dbname`, or libpq's `key=value` form.
    pub url: String,
    /// Most writes committed in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            data_dir: PathBuf::from("data"),
            url: String::new(),
            max_batch: 1024,
        }
    }
}

/// The store backends `store.backend` may name.
pub const STORE_BACKENDS: &[&str] = &["sqlite", "postgres", "memory"];

impl StoreConfig {
    /// `store.url` parsed as PostgreSQL connection parameters, with how the connection is
    /// secured (`sslmode`, `sslrootcert`: see [`super::postgres`]), or the reason it cannot be
    /// used: absent, unparsable, naming no host, an unknown `sslmode`, an unreadable or empty
    /// `sslrootcert` file (named), or a root certificate with `sslmode=disable`.
    pub fn postgres(&self) -> Result<super::postgres::PostgresTarget, ConfigError> {
        super::postgres::target(&self.url)
    }

    /// [`StoreConfig::url`] with any password masked, for printing and logs.
    pub fn redacted_url(&self) -> String {
        mask_password(&self.url)
    }
}

/// `url` with the password of its user-info (`user:password@`) and any `password=` parameter
/// replaced by `***`.
fn mask_password(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    // The URL form: scheme://[user[:password]@]host...
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(after) = url.strip_prefix(scheme) {
            let authority_end = after.find(['/', '?']).unwrap_or(after.len());
            let (authority, tail) = after.split_at(authority_end);
            out.push_str(scheme);
            match authority.rfind('@') {
                Some(at) => {
                    let (userinfo, host) = authority.split_at(at);
                    match userinfo.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            rest = tail;
            break;
        }
    }
    // `password=value` as a URL query parameter or a key=value pair (value possibly quoted).
    while let Some(i) = rest.find("password") {
        let (head, from) = rest.split_at(i);
        out.push_str(head);
        let after_word = &from["password".len()..];
        let trimmed = after_word.trim_start();
        let starts_word = head.is_empty() || head.ends_with([' ', '&', '?', '\t']);
        match trimmed.strip_prefix('=') {
            Some(value) if starts_word => {
                let value = value.trim_start();
                let end = if let Some(quoted) = value.strip_prefix('\'') {
                    // Up to the closing quote (backslash escapes one character).
                    let mut escaped = false;
                    quoted
                        .char_indices()
                        .find(|&(_, c)| {
                            let close = c == '\'' && !escaped;
                            escaped = c == '\\' && !escaped;
                            close
                        })
                        .map_or(value.len(), |(j, _)| j + 2)
                } else {
                    value.find([' ', '&', '\t']).unwrap_or(value.len())
                };
                out.push_str("password=***");
                rest = value.get(end..).unwrap_or_default();
            }
            _ => {
                out.push_str("password");
                rest = after_word;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `[ocs_sim]`: the bundled OCS simulator, started in-process by `gateway serve`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSimConfig {
    /// Start it (the default, so that the gateway works out of the box). Set to false when the
    /// peers are a real OCS.
    pub enabled: bool,
    /// Its configuration file (accounts, prices, faults).
    pub config: PathBuf,
    /// Overrides the file's `profile` (where it accepts units): `any`, `rfc4006` or `3gpp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Default for EmbeddedSimConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            config: PathBuf::from("conf/ocs-sim.toml"),
            profile: None,
        }
    }
}

impl EmbeddedSimConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.profile {
            p.parse::<crate::ocs::Profile>()
                .map_err(|e| bad("ocs_sim.profile", e))?;
        }
        Ok(())
    }
}

/// `[cluster]`: several gateway instances on one store (PostgreSQL). Each instance has its own
/// Diameter identity and peer connections; what decides money or ownership is decided in the
/// store, under leases that an instance renews while it lives.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This instance's name in the leases it holds ("": `diameter.origin_host`, which each
    /// instance must have of its own anyway).
    pub instance_id: String,
    /// How long a lease holds without being renewed: after an instance dies, its unresolved
    /// operations, in-flight reservation steps and locked resources wait this long before
    /// another instance takes them over. Renewed every third of it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance_id: String::new(),
            lease: Duration::from_secs(30),
        }
    }
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.lease < Duration::from_secs(1) {
            return Err(bad(
                "cluster.lease",
                "must be at least 1s (it is renewed every third of it)",
            ));
        }
        if self.instance_id.len() > 128 || self.instance_id.chars().any(char::is_control) {
            return Err(bad(
                "cluster.instance_id",
                "at most 128 characters, no control characters",
            ));
        }
        Ok(())
    }
}

/// `[tmf654]`: the TMF654 Prepay Balance Management family's background work.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Tmf654Config {
    /// How often the scheduler looks for due work: periods of automatic top-ups, top-ups
    /// whose outcome is pending, top-ups that reached no OCS. A period runs at most this long
    /// after it is due.
    #[serde(with = "humantime_serde")]
    pub scheduler_interval: Duration,
    /// How long a top-up that reached no OCS (no peer, protocol error) is retried with the
    /// same key before it is failed ("nothing was topped up").
    #[serde(with = "humantime_serde")]
    pub retry_window: Duration,
    /// Most due top-ups handled in one pass (the rest wait for the next).
    pub scheduler_batch: usize,
}

impl Default for Tmf654Config {
    fn default() -> Self {
        Self {
            scheduler_interval: Duration::from_secs(10),
            retry_window: Duration::from_secs(900),
            scheduler_batch: 256,
        }
    }
}

impl Tmf654Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.scheduler_interval.is_zero() {
            return Err(bad("tmf654.scheduler_interval", "must be above zero"));
        }
        if self.retry_window < self.scheduler_interval {
            return Err(bad(
                "tmf654.retry_window",
                "must be at least tmf654.scheduler_interval (one retry)",
            ));
        }
        if self.scheduler_batch == 0 {
            return Err(bad("tmf654.scheduler_batch", "must be above zero"));
        }
        Ok(())
    }
}

/// `[[apps]]`: an application allowed to call the REST API, and its policy.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The application's id (records and logs carry it).
    pub id: String,
    /// HTTP Basic user name (as OCSG applications authenticate).
    #[serde(default)]
    pub username: String,
    /// HTTP Basic password, in clear.
    #[serde(default)]
    pub password: String,
    /// Or: its SHA-256, hex (preferred in production files).
    #[serde(default)]
    pub password_sha256: String,
    /// API key, sent as `X-API-Key` (or `Authorization: Bearer`).
    #[serde(default)]
    pub api_key: String,
    /// Currencies it may charge in (empty: any).
    #[serde(default)]
    pub allowed_currencies: Vec<String>,
    /// Largest amount of one operation (absent: no limit).
    #[serde(default)]
    pub max_amount: Option<Decimal>,
    /// Operations it may call, e.g. `charge-amount` (empty: all).
    #[serde(default)]
    pub allowed_operations: Vec<String>,
    /// May read `/metrics` and the admin endpoints.
    #[serde(default)]
    pub admin: bool,
    /// The client id an `[oidc]` provider issues this application's access tokens to (the
    /// token's `azp` / `client_id`): such a token authenticates this application, with its
    /// policy. Empty: none.
    #[serde(default)]
    pub oidc_client_id: String,
}

/// Every REST operation an application can be allowed.
pub const OPERATIONS: &[&str] = &[
    "charge-amount",
    "refund-amount",
    "charge-split-amount",
    "reserve-amount",
    "reserve-additional-amount",
    "charge-reservation",
    "release-reservation",
    // CAMARA Carrier Billing (src/api/camara): the scopes of the CAMARA definitions.
    "carrier-billing:payments:create",
    "carrier-billing:payments:write",
    "carrier-billing:payments:read",
    "carrier-billing-refund:refunds:create",
    "carrier-billing-refund:refunds:read",
    // CAMARA Carrier Billing Checkout (src/api/camara/checkout.rs): its scopes.
    "carrier-billing-checkout-purchase-digital-good-user-write",
    "carrier-billing-checkout-purchase-digital-good-user-read",
    "carrier-billing-checkout-payment-user-write",
    // TMF654: POST / GET / PATCH / DELETE /topupBalance, and GET /bucket (CHECK_BALANCE).
    "topup-balance",
    "query-balance",
    // TMF663 shopping carts (every method), self-registration (/identity/v1).
    "shopping-cart",
    "identity",
    // TMF632 individual / organization, TMF629 customer, TMF666 billingAccount (every method).
    "party",
    "customer",
    "billing-account",
];

pub(super) fn validate_service(c: &super::GatewayConfig) -> Result<(), ConfigError> {
    c.credit_control.validate()?;
    c.cluster.validate()?;
    c.notifications.validate()?;
    c.tmf654.validate()?;
    c.ocs_sim.validate()?;
    if c.http.listen.parse::<SocketAddr>().is_err() {
        return Err(bad(
            "http.listen",
            format!("\"{}\" is not an address:port", c.http.listen),
        ));
    }
    if c.http.max_body_bytes < 256 {
        return Err(bad("http.max_body_bytes", "must be at least 256"));
    }
    for (key, v) in [
        ("http.header_timeout", c.http.header_timeout),
        ("http.body_timeout", c.http.body_timeout),
    ] {
        if v.is_zero() {
            return Err(bad(key, "must be above zero"));
        }
    }
    if c.http.request_timeout <= c.diameter.timers.request_timeout {
        return Err(bad(
            "http.request_timeout",
            "must be longer than diameter.timers.request_timeout (Tx)",
        ));
    }
    if !matches!(c.http.log_format.as_str(), "text" | "json") {
        return Err(bad("http.log_format", "must be text or json"));
    }
    if !STORE_BACKENDS.contains(&c.store.backend.as_str()) {
        return Err(bad(
            "store.backend",
            format!(
                "\"{}\": one of {}",
                c.store.backend,
                STORE_BACKENDS.join(", ")
            ),
        ));
    }
    if c.store.backend == "postgres" {
        c.store.postgres()?;
    }
    if c.store.max_batch == 0 {
        return Err(bad("store.max_batch", "must be above zero"));
    }
    for (i, a) in c.apps.iter().enumerate() {
        let key = |f: &str| format!("apps[{i}].{f}");
        if a.id.trim().is_empty() {
            return Err(bad(key("id"), "must not be empty"));
        }
        if c.apps[..i].iter().any(|b| b.id == a.id) {
            return Err(bad(key("id"), format!("\"{}\" is configured twice", a.id)));
        }
        let basic = !a.username.is_empty();
        if basic && a.password.is_empty() && a.password_sha256.is_empty() {
            return Err(bad(key("password"), "a username needs a password"));
        }
        if !a.password_sha256.is_empty()
            && (a.password_sha256.len() != 64 || hex::decode(&a.password_sha256).is_err())
        {
            return Err(bad(key("password_sha256"), "64 hex digits expected"));
        }
        if !basic && a.api_key.is_empty() && a.oidc_client_id.is_empty() {
            return Err(bad(
                key("username"),
                "give a username and password, an api_key, or an oidc_client_id",
            ));
        }
        if basic && c.apps[..i].iter().any(|b| b.username == a.username) {
            return Err(bad(key("username"), "used by another application"));
        }
        if !a.api_key.is_empty() && c.apps[..i].iter().any(|b| b.api_key == a.api_key) {
            return Err(bad(key("api_key"), "used by another application"));
        }
        if !a.oidc_client_id.is_empty()
            && c.apps[..i]
                .iter()
                .any(|b| b.oidc_client_id == a.oidc_client_id)
        {
            return Err(bad(key("oidc_client_id"), "used by another application"));
        }
        for (j, cur) in a.allowed_currencies.iter().enumerate() {
            if iso_currency::Currency::from_code(cur).is_none() {
                return Err(bad(
                    key(&format!("allowed_currencies[{j}]")),
                    format!("\"{cur}\" is not an ISO 4217 code"),
                ));
            }
        }
        if a.max_amount.is_some_and(|m| m <= Decimal::ZERO) {
            return Err(bad(key("max_amount"), "must be above zero"));
        }
        for (j, op) in a.allowed_operations.iter().enumerate() {
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(bad(
                    key(&format!("allowed_operations[{j}]")),
                    format!("\"{op}\" is not an operation ({})", OPERATIONS.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::builtin().unwrap()
    }

    #[test]
    fn templates_resolve_by_dictionary_name() {
        let t: AvpTemplate = toml::from_str(
            r#"
avp = "Service-Information"
members = [ { avp = "PS-Information", members = [ { avp = "3GPP-Charging-Id", value = "0x0000004d" } ] } ]
"#,
        )
        .unwrap();
        let avp = t.build(&dict(), "x").unwrap();
        assert_eq!(avp.code.0, 873);
        assert_eq!(avp.vendor_id, Some(VendorId(10415)));
        let AvpValue::Grouped(ps) = &avp.value else {
            panic!("grouped")
        };
        let AvpValue::Grouped(id) = &ps[0].value else {
            panic!("grouped")
        };
        assert_eq!(id[0].value, AvpValue::Bytes(vec![0, 0, 0, 0x4d].into()));
        // Enumerated by name, numbers by type.
        let e = AvpTemplate {
            avp: "Subscription-Id-Type".into(),
            value: Some("END_USER_SIP_URI".into()),
            members: vec![],
        };
        assert_eq!(e.build(&dict(), "x").unwrap().value, AvpValue::Integer32(2));
    }

    const BASE: &str = r#"
[diameter]
origin_host = "gw.example.net"
origin_realm = "example.net"
[[diameter.peers]]
host = "ocs.example.net"
realm = "example.net"
address = "127.0.0.1:3868"
"#;

    fn with(extra: &str) -> Result<super::super::GatewayConfig, ConfigError> {
        super::super::GatewayConfig::from_toml(&format!("{BASE}\n{extra}"))
    }

    #[test]
    fn service_sections_default_and_refuse_by_key() {
        let c = with("").unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.body_timeout, Duration::from_secs(10));
        assert_eq!(c.store.backend, "sqlite");
        assert!(c.ocs_sim.enabled);
        assert_eq!(c.credit_control.ddfh, DdFailureHandling::TerminateOrBuffer);
        let app = r#"
[[apps]]
id = "a"
username = "u"
password = "p"
allowed_currencies = ["EUR"]
"#;
        assert_eq!(with(app).unwrap().apps.len(), 1);
        assert_eq!(c.tmf654, Tmf654Config::default());
        let t = with("[tmf654]\nscheduler_interval = \"250ms\"\nretry_window = \"1m\"").unwrap();
        assert_eq!(t.tmf654.scheduler_interval, Duration::from_millis(250));
        let ops = with(&format!(
            "{app}allowed_operations = [\"topup-balance\", \"query-balance\"]"
        ));
        assert_eq!(ops.unwrap().apps[0].allowed_operations.len(), 2);
        for (text, key) in [
            ("[http]\nlisten = \"here\"", "http.listen"),
            ("[http]\nrequest_timeout = \"5s\"", "http.request_timeout"),
            ("[http]\nheader_timeout = \"0s\"", "http.header_timeout"),
            ("[http]\nbody_timeout = \"0ms\"", "http.body_timeout"),
            ("[store]\nbackend = \"oracle\"", "store.backend"),
            (
                "[credit_control]\nservice_context_id = \"payment\"",
                "credit_control.service_context_id",
            ),
            (
                "[credit_control]\ndefault_currency = \"EURO\"",
                "credit_control.default_currency",
            ),
            (
                &app.replace("[\"EUR\"]", "[\"XYZ\"]"),
                "apps[0].allowed_currencies[0]",
            ),
            (&app.replace("password = \"p\"", ""), "apps[0].password"),
            (
                &format!("{app}allowed_operations = [\"steal\"]"),
                "apps[0].allowed_operations[0]",
            ),
            (&format!("{app}{app}"), "apps[1].id"),
            (&format!("{app}max_amount = \"-1\""), "apps[0].max_amount"),
            (
                "[tmf654]\nscheduler_interval = \"0s\"",
                "tmf654.scheduler_interval",
            ),
            (
                "[tmf654]\nscheduler_interval = \"1m\"\nretry_window = \"10s\"",
                "tmf654.retry_window",
            ),
            ("[tmf654]\nscheduler_batch = 0", "tmf654.scheduler_batch"),
        ] {
            let e = with(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
        // The enumerations read as their RFC names.
        let e = with("[credit_control]\nccfh = \"SOMETIMES\"").unwrap_err();
        assert!(
            e.to_string().contains("ccfh") || e.key.contains("ccfh"),
            "{e}"
        );
    }

    #[test]
    fn the_postgres_store_needs_a_usable_url() {
        let pg = |url: &str| with(&format!("[store]\nbackend = \"postgres\"\n{url}"));
        let c = pg("url = \"postgresql://gateway:pw@127.0.0.1:5433/gateway\"").unwrap();
        assert_eq!(c.store.backend, "postgres");
        let p = c.store.postgres().unwrap().config;
        assert_eq!(p.get_ports(), [5433]);
        assert_eq!(p.get_dbname(), Some("gateway"));
        assert_eq!(p.get_password(), Some(&b"pw"[..]));
        // libpq's key=value form, and a Unix socket directory, are connection strings too.
        pg("url = \"host=/run/postgresql dbname=gateway user=gw sslmode=disable\"").unwrap();
        for (url, why) in [
            ("", "needs a connection URL"),
            ("url = \"   \"", "needs a connection URL"),
            (
                "url = \"postgresql://127.0.0.1:port/gateway\"",
                "not a PostgreSQL connection",
            ),
            (
                "url = \"mysql://127.0.0.1/gateway\"",
                "not a PostgreSQL connection",
            ),
            ("url = \"dbname=gateway\"", "names no host"),
            (
                "url = \"postgresql://127.0.0.1/gateway?sslmode=allow\"",
                "sslmode \"allow\"",
            ),
        ] {
            let e = pg(url).expect_err(url);
            assert_eq!(e.key, "store.url", "{url}: {e}");
            assert!(e.reason.contains(why), "{url}: {e}");
        }
        // Only the postgres backend needs it; other backend names are refused by name.
        assert!(with("[store]\nurl = \"nonsense\"").is_ok());
        let e = with("[store]\nbackend = \"postgresql\"").unwrap_err();
        assert_eq!(e.key, "store.backend");
        assert!(e.reason.contains("sqlite, postgres, memory"), "{e}");
    }

    #[test]
    fn store_url_passwords_are_masked() {
        for (url, masked) in [
            (
                "postgresql://gw:s3cret@db.example:5432/gateway",
                "postgresql://gw:***@db.example:5432/gateway",
            ),
            ("postgres://gw@db/gateway", "postgres://gw@db/gateway"),
            (
                "postgresql://db/gateway?user=gw&password=s3cret&sslmode=disable",
                "postgresql://db/gateway?user=gw&password=***&sslmode=disable",
            ),
            (
                "host=db user=mypassword password=s3cret dbname=gateway",
                "host=db user=mypassword password=*** dbname=gateway",
            ),
            (
                "host=db password = 'it\\'s secret' dbname=gateway",
                "host=db password=*** dbname=gateway",
            ),
            ("", ""),
        ] {
            let store = StoreConfig {
                url: url.into(),
                ..StoreConfig::default()
            };
            assert_eq!(store.redacted_url(), masked, "{url}");
        }
        let c = with(
            "[store]\nbackend = \"postgres\"\nurl = \"postgresql://gw:s3cret@127.0.0.1/gateway\"",
        )
        .unwrap();
        let text = c.redacted().to_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("postgresql://gw:***@127.0.0.1/gateway"),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let c =
            with("[[apps]]\nid = \"a\"\nusername = \"u\"\npassword = \"hunter2\"\napi_key = \"k\"")
                .unwrap();
        let text = c.redacted().to_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"));
    }

    #[test]
    fn bad_templates_name_the_key() {
        let unknown = AvpTemplate {
            avp: "No-Such-AVP".into(),
            value: Some("1".into()),
            members: vec![],
        };
        assert_eq!(unknown.build(&dict(), "t").unwrap_err().key, "t.avp");
        let bad_num = AvpTemplate {
            avp: "Service-Identifier".into(),
            value: Some("many".into()),
            members: vec![],
        };
        assert_eq!(bad_num.build(&dict(), "t").unwrap_err().key, "t.value");
        let nested = AvpTemplate {
            avp: "Service-Information".into(),
            value: None,
            members: vec![bad_num],
        };
        assert_eq!(
            nested.build(&dict(), "t").unwrap_err().key,
            "t.members[0].value"
        );
    }
}
