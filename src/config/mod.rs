//! Configuration: `conf/gateway.toml` read with the `config` crate, overridden by environment
//! variables, validated once at start-up. A bad value is refused with its key and the reason.
//!
//! Environment overrides use the prefix `GATEWAY` and `__` between keys, e.g.
//! `GATEWAY__DIAMETER__ORIGIN_HOST=gw1.operator.example` or
//! `GATEWAY__DIAMETER__TIMERS__WATCHDOG_INTERVAL=10s`. Lists of plain values are comma-separated
//! (`GATEWAY__DIAMETER__HOST_IP_ADDRESSES=10.0.0.1,10.0.0.2`); peers are configured in the file.

pub mod catalog;
pub mod identity;
pub mod inventory;
pub mod notifications;
pub mod oidc;
pub mod orders;
pub mod postgres;
pub mod service;
pub mod shop;

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use service::{
    AppConfig, AvpTemplate, ClusterConfig, CreditControlConfig, EmbeddedSimConfig, HttpConfig,
    STORE_BACKENDS, StoreConfig, Tmf654Config,
};

use crate::diameter::codec::Limits;
use crate::diameter::node::{NodeConfig, PeerConfig};
use crate::diameter::peer::{LocalIdentity, PeerSettings};
use crate::diameter::router::{PeerSpec, RouterSettings};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub diameter: DiameterConfig,
    #[serde(default)]
    pub credit_control: CreditControlConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub ocs_sim: EmbeddedSimConfig,
    #[serde(default)]
    pub tmf654: Tmf654Config,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub notifications: notifications::NotificationsConfig,
    #[serde(default)]
    pub catalog: catalog::CatalogConfig,
    #[serde(default)]
    pub inventory: inventory::InventoryConfig,
    #[serde(default)]
    pub orders: orders::OrdersConfig,
    /// The digital sales channel's background work (abandoned-cart follow-up).
    #[serde(default)]
    pub shop: shop::ShopConfig,
    /// Self-registration, sign-in and tokens of the shop's customers.
    #[serde(default)]
    pub identity: identity::IdentityConfig,
    /// External OpenID Connect access tokens (issuer, JWKS, audience).
    #[serde(default)]
    pub oidc: oidc::OidcConfig,
    /// Applications allowed to call the REST API.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// `[diameter]`: identity, peers, timers and limits of the Diameter node.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiameterConfig {
    /// Origin-Host of this gateway (an FQDN).
    pub origin_host: String,
    /// Origin-Realm of this gateway.
    pub origin_realm: String,
    /// Host-IP-Address values advertised in CER/CEA.
    #[serde(default = "default_host_ips")]
    pub host_ip_addresses: Vec<IpAddr>,
    #[serde(default = "default_product")]
    pub product_name: String,
    /// Vendor-Id of this product in CER/CEA (0: none).
    #[serde(default)]
    pub vendor_id: u32,
    #[serde(default = "default_firmware")]
    pub firmware_revision: u32,
    /// Auth-Application-Id values advertised (4: Diameter Credit-Control).
    #[serde(default = "default_auth_apps")]
    pub auth_application_ids: Vec<u32>,
    /// Vendor-Specific-Application-Id entries to advertise as well.
    #[serde(default)]
    pub vendor_specific_applications: Vec<VendorApplication>,
    /// Supported-Vendor-Id values (10415: 3GPP).
    #[serde(default = "default_vendors")]
    pub supported_vendor_ids: Vec<u32>,
    /// Directory of dictionary XML files.
    #[serde(default = "default_dictionaries")]
    pub dictionaries: PathBuf,
    /// Address to accept peer connections on (empty: do not listen).
    #[serde(default)]
    pub listen: String,
    /// Accept CERs from hosts that are not configured peers (else 3010 and close).
    #[serde(default)]
    pub accept_unknown_peers: bool,
    #[serde(default)]
    pub timers: Timers,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub peers: Vec<PeerEntryConfig>,
}

/// A Vendor-Specific-Application-Id to advertise.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VendorApplication {
    pub vendor_id: u32,
    pub auth_application_id: u32,
}

/// `[diameter.timers]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    /// RFC 3539 Twinit: at least 6 s (30 s by default).
    #[serde(with = "humantime_serde")]
    pub watchdog_interval: Duration,
    /// Each watchdog interval is Tw plus or minus up to this (RFC 3539: 2 s).
    #[serde(with = "humantime_serde")]
    pub watchdog_jitter: Duration,
    /// Longest wait for the TCP connection, then for the CEA.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Tx: longest wait for an answer (RFC 8506 section 13: 10 s).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a DPA (or for the peer to close after ours).
    #[serde(with = "humantime_serde")]
    pub disconnect_timeout: Duration,
    /// First reconnect delay; doubles on each failure up to `reconnect_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Wait before dialling a peer that sent DPR with BUSY or DO_NOT_WANT_TO_TALK_TO_YOU.
    #[serde(with = "humantime_serde")]
    pub dpr_hold_off: Duration,
    /// On shutdown, longest wait for in-flight answers before DPR.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Longest wait for the CER on an accepted connection.
    #[serde(with = "humantime_serde")]
    pub cer_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            watchdog_interval: Duration::from_secs(30),
            watchdog_jitter: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            dpr_hold_off: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(5),
            cer_timeout: Duration::from_secs(5),
        }
    }
}

/// `[diameter.limits]`: what a received message may cost.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_length: u32,
    pub max_grouped_depth: u8,
    pub max_avps: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_message_length: l.max_message_len,
            max_grouped_depth: l.max_depth,
            max_avps: l.max_avps,
        }
    }
}

/// `[[diameter.peers]]`: one OCS (or agent) this gateway talks to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerEntryConfig {
    /// The peer's Origin-Host (what its CER/CEA must say; Destination-Host matches it).
    pub host: String,
    /// The realm it serves.
    pub realm: String,
    /// `host:port` to dial; absent for a peer that dials in.
    #[serde(default)]
    pub address: Option<String>,
    /// Lower is preferred.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Share of traffic among peers of equal priority.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_host_ips() -> Vec<IpAddr> {
    vec![IpAddr::from([127, 0, 0, 1])]
}
fn default_product() -> String {
    "charging-gateway".into()
}
fn default_firmware() -> u32 {
    1
}
fn default_auth_apps() -> Vec<u32> {
    vec![4]
}
fn default_vendors() -> Vec<u32> {
    vec![10415]
}
fn default_dictionaries() -> PathBuf {
    PathBuf::from("dictionaries")
}
fn default_priority() -> u32 {
    1
}
fn default_weight() -> u32 {
    100
}

/// A refused configuration: the key and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl GatewayConfig {
    /// This instance's name among the gateways sharing its store (`cluster.instance_id`, else
    /// its Origin-Host).
    pub fn instance_id(&self) -> String {
        if self.cluster.instance_id.is_empty() {
            self.diameter.origin_host.clone()
        } else {
            self.cluster.instance_id.clone()
        }
    }

    /// Reads `path`, applies `GATEWAY__...` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`GatewayConfig::load`], with the environment given (tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(bad(
                "",
                format!("configuration file {} not found", path.display()),
            ));
        }
        let vars: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("GATEWAY__"))
            .collect();
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("GATEWAY")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("diameter.host_ip_addresses")
                    .with_list_parse_key("diameter.auth_application_ids")
                    .with_list_parse_key("diameter.supported_vendor_ids")
                    .with_list_parse_key("notifications.allowed_networks")
                    .try_parsing(true)
                    .source(Some(vars)),
            )
            .build()
            .map_err(|e| from_config_error(&e))?;
        let cfg: Self = built.try_deserialize().map_err(|e| from_config_error(&e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no environment), and validates.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| from_config_error(&e))?;
        let cfg: Self = built.try_deserialize().map_err(|e| from_config_error(&e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// The same with secrets (passwords, API keys) masked, for printing and logs.
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        c.store.url = c.store.redacted_url();
        for secret in [
            &mut c.notifications.smtp.password,
            &mut c.notifications.sms.token,
        ] {
            if !secret.is_empty() {
                *secret = "***".into();
            }
        }
        for a in &mut c.apps {
            for secret in [&mut a.password, &mut a.password_sha256, &mut a.api_key] {
                if !secret.is_empty() {
                    *secret = "***".into();
                }
            }
        }
        c
    }

    /// Every rule a value must follow beyond its type.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.catalog.validate()?;
        let d = &self.diameter;
        fqdn("diameter.origin_host", &d.origin_host)?;
        fqdn("diameter.origin_realm", &d.origin_realm)?;
        if d.host_ip_addresses.is_empty() {
            return Err(bad(
                "diameter.host_ip_addresses",
                "at least one address is required (CER: 1* Host-IP-Address)",
            ));
        }
        if d.product_name.trim().is_empty() {
            return Err(bad("diameter.product_name", "must not be empty"));
        }
        if d.auth_application_ids.is_empty() && d.vendor_specific_applications.is_empty() {
            return Err(bad(
                "diameter.auth_application_ids",
                "advertise at least one application (4: Credit-Control)",
            ));
        }
        if d.supported_vendor_ids.contains(&0) {
            return Err(bad(
                "diameter.supported_vendor_ids",
                "0 is not allowed (RFC 6733 5.3.6)",
            ));
        }
        if !d.listen.is_empty() && d.listen.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "diameter.listen",
                format!("\"{}\" is not an address:port", d.listen),
            ));
        }
        let t = &d.timers;
        if t.watchdog_interval < Duration::from_secs(6) {
            return Err(bad(
                "diameter.timers.watchdog_interval",
                "RFC 3539: Tw must not be below 6 s",
            ));
        }
        if t.watchdog_jitter > t.watchdog_interval / 2 {
            return Err(bad(
                "diameter.timers.watchdog_jitter",
                "must be at most half of watchdog_interval",
            ));
        }
        for (key, v) in [
            ("connect_timeout", t.connect_timeout),
            ("request_timeout", t.request_timeout),
            ("disconnect_timeout", t.disconnect_timeout),
            ("reconnect_min", t.reconnect_min),
            ("cer_timeout", t.cer_timeout),
        ] {
            if v.is_zero() {
                return Err(bad(format!("diameter.timers.{key}"), "must be above zero"));
            }
        }
        if t.reconnect_max < t.reconnect_min {
            return Err(bad(
                "diameter.timers.reconnect_max",
                "must be at least reconnect_min",
            ));
        }
        let l = &d.limits;
        if !(1024..=crate::diameter::codec::header::MAX_MESSAGE_LEN).contains(&l.max_message_length)
        {
            return Err(bad(
                "diameter.limits.max_message_length",
                "must be between 1024 and 16777215",
            ));
        }
        if l.max_grouped_depth == 0 || l.max_grouped_depth > 64 {
            return Err(bad(
                "diameter.limits.max_grouped_depth",
                "must be between 1 and 64",
            ));
        }
        if l.max_avps == 0 {
            return Err(bad("diameter.limits.max_avps", "must be above zero"));
        }
        if d.peers.is_empty() && d.listen.is_empty() {
            return Err(bad(
                "diameter.peers",
                "configure at least one peer, or a listen address",
            ));
        }
        for (i, p) in d.peers.iter().enumerate() {
            let key = |f: &str| format!("diameter.peers[{i}].{f}");
            fqdn(&key("host"), &p.host)?;
            fqdn(&key("realm"), &p.realm)?;
            if p.host.eq_ignore_ascii_case(&d.origin_host) {
                return Err(bad(
                    key("host"),
                    "a peer cannot have this gateway's own Origin-Host",
                ));
            }
            if d.peers[..i]
                .iter()
                .any(|q| q.host.eq_ignore_ascii_case(&p.host))
            {
                return Err(bad(
                    key("host"),
                    format!("\"{}\" is configured twice", p.host),
                ));
            }
            if let Some(a) = &p.address {
                let resolves = a
                    .to_socket_addrs()
                    .map(|mut it| it.next().is_some())
                    .unwrap_or(false);
                if !resolves {
                    return Err(bad(
                        key("address"),
                        format!("\"{a}\" is not a reachable host:port"),
                    ));
                }
            }
            if p.weight == 0 {
                return Err(bad(key("weight"), "must be above zero"));
            }
        }
        self.inventory.validate()?;
        self.orders.validate()?;
        self.shop.validate()?;
        self.identity.validate()?;
        self.oidc.validate()?;
        service::validate_service(self)
    }

    /// The Diameter node this configuration describes.
    pub fn node_config(&self) -> NodeConfig {
        let d = &self.diameter;
        let t = &d.timers;
        NodeConfig {
            local: LocalIdentity {
                origin_host: d.origin_host.clone(),
                origin_realm: d.origin_realm.clone(),
                host_ip_addresses: d.host_ip_addresses.clone(),
                vendor_id: d.vendor_id,
                product_name: d.product_name.clone(),
                firmware_revision: d.firmware_revision,
                origin_state_id: origin_state_id(),
                auth_application_ids: d.auth_application_ids.clone(),
                acct_application_ids: Vec::new(),
                vendor_specific_auth_apps: d
                    .vendor_specific_applications
                    .iter()
                    .map(|v| (v.vendor_id, v.auth_application_id))
                    .collect(),
                supported_vendor_ids: d.supported_vendor_ids.clone(),
            },
            listen: d.listen.parse().ok(),
            accept_unknown_peers: d.accept_unknown_peers,
            peers: d
                .peers
                .iter()
                .map(|p| PeerConfig {
                    spec: PeerSpec {
                        name: p.host.clone(),
                        host: p.host.clone(),
                        realm: p.realm.clone(),
                        priority: p.priority,
                        weight: p.weight,
                    },
                    connect: p.address.clone(),
                })
                .collect(),
            peer_settings: PeerSettings {
                name: String::new(),
                initiator: true,
                watchdog_interval: t.watchdog_interval,
                watchdog_jitter: t.watchdog_jitter,
                connect_timeout: t.connect_timeout,
                disconnect_timeout: t.disconnect_timeout,
                reconnect_min: t.reconnect_min,
                reconnect_max: t.reconnect_max,
                dpr_hold_off: t.dpr_hold_off,
                seed: 0,
            },
            router: RouterSettings {
                request_timeout: t.request_timeout,
                drain_timeout: t.drain_timeout,
            },
            limits: Limits {
                max_message_len: d.limits.max_message_length,
                max_depth: d.limits.max_grouped_depth,
                max_avps: d.limits.max_avps,
            },
            cer_timeout: t.cer_timeout,
        }
    }
}

/// Origin-State-Id: changes on every start (seconds since the epoch, RFC 6733 section 8.16).
fn origin_state_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

pub(crate) fn fqdn(key: &str, v: &str) -> Result<(), ConfigError> {
    crate::diameter::codec::value::identity(v.as_bytes())
        .map(|_| ())
        .map_err(|_| {
            bad(
                key,
                format!(
                    "\"{v}\" is not a DiameterIdentity (an FQDN: letters, digits, '-', '_', '.')"
                ),
            )
        })
}

/// The `config` crate names the key in its messages ("... for key `diameter.x`"): keep it.
fn from_config_error(e: &config::ConfigError) -> ConfigError {
    let text = e.to_string();
    if let Some(start) = text.find("for key `") {
        let rest = &text[start + 9..];
        if let Some(end) = rest.find('`') {
            let key = rest[..end].to_string();
            let reason = text[..start].trim().to_string();
            return bad(key, reason);
        }
    }
    if let Some(field) = text.strip_prefix("unknown field `")
        && let Some(end) = field.find('`')
    {
        return bad(field[..end].to_string(), text.clone());
    }
    bad("", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[diameter]
origin_host = "gw.example.net"
origin_realm = "example.net"

[[diameter.peers]]
host = "ocs1.example.net"
realm = "example.net"
address = "127.0.0.1:3868"
priority = 1
weight = 60

[[diameter.peers]]
host = "ocs2.example.net"
realm = "example.net"
address = "127.0.0.1:3869"
priority = 1
weight = 40
"#;

    #[test]
    fn good_file_and_defaults() {
        let c = GatewayConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.diameter.timers.watchdog_interval, Duration::from_secs(30));
        assert_eq!(c.diameter.auth_application_ids, vec![4]);
        let n = c.node_config();
        assert_eq!(n.peers.len(), 2);
        assert_eq!(n.peers[1].spec.weight, 40);
        assert_eq!(n.router.request_timeout, Duration::from_secs(10));
        // The printed configuration reads back to the same thing.
        let again = GatewayConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    fn refused(text: &str) -> ConfigError {
        GatewayConfig::from_toml(text).expect_err("must be refused")
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = refused(&GOOD.replace("gw.example.net", "gw example"));
        assert_eq!(e.key, "diameter.origin_host");
        let e = refused(&format!(
            "{GOOD}\n[diameter.timers]\nwatchdog_interval = \"2s\"\n"
        ));
        assert_eq!(e.key, "diameter.timers.watchdog_interval", "{e}");
        let e = refused(&GOOD.replace("weight = 40", "weight = 0"));
        assert_eq!(e.key, "diameter.peers[1].weight");
        let e = refused(&GOOD.replace(
            "priority = 1\nweight = 60",
            "priority = \"high\"\nweight = 60",
        ));
        assert!(e.key.contains("priority"), "{e}");
        let e = refused(&GOOD.replace("127.0.0.1:3869", "nowhere"));
        assert_eq!(e.key, "diameter.peers[1].address");
        let e = refused(&GOOD.replace("ocs2.example.net", "ocs1.example.net"));
        assert!(e.reason.contains("twice"), "{e}");
        let e = refused(&GOOD.replace("origin_realm", "origin_relm"));
        assert!(e.to_string().contains("origin_relm"), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, GOOD).unwrap();
        let env = vec![
            (
                "GATEWAY__DIAMETER__ORIGIN_HOST".to_string(),
                "gw9.example.net".to_string(),
            ),
            (
                "GATEWAY__DIAMETER__TIMERS__WATCHDOG_INTERVAL".to_string(),
                "10s".to_string(),
            ),
            (
                "GATEWAY__DIAMETER__HOST_IP_ADDRESSES".to_string(),
                "10.0.0.1,10.0.0.2".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__ALLOWED_NETWORKS".to_string(),
                "127.0.0.0/8,10.20.0.0/16".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMTP__HOST".to_string(),
                "mail.example.net".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMTP__PORT".to_string(),
                "2525".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMTP__FROM".to_string(),
                "Shop <shop@example.net>".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMTP__PASSWORD".to_string(),
                "12345".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMTP__USERNAME".to_string(),
                "shop".to_string(),
            ),
            (
                "GATEWAY__NOTIFICATIONS__SMS__URL".to_string(),
                "https://sms.example.net/send".to_string(),
            ),
            ("GATEWAY__SHOP__FOLLOW_UP".to_string(), "true".to_string()),
            (
                "GATEWAY__SHOP__ABANDONED_AFTER".to_string(),
                "90m".to_string(),
            ),
            (
                "GATEWAY__SHOP__SHOP_URL".to_string(),
                "https://shop.example.net/cart/{cart}".to_string(),
            ),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        let c = GatewayConfig::load_with_env(&path, env).unwrap();
        assert_eq!(
            c.notifications.allowed_networks,
            vec![
                "127.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
                "10.20.0.0/16".parse().unwrap()
            ]
        );
        assert_eq!(c.diameter.origin_host, "gw9.example.net");
        // Nested tables: [notifications.smtp], [notifications.sms], [shop]; a password of
        // digits stays a string.
        let smtp = &c.notifications.smtp;
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.from.as_str()),
            ("mail.example.net", 2525, "Shop <shop@example.net>")
        );
        assert_eq!(smtp.password, "12345");
        assert_eq!(smtp.tls, notifications::SmtpTls::Starttls);
        assert_eq!(c.notifications.sms.url, "https://sms.example.net/send");
        assert!(c.shop.follow_up);
        assert_eq!(c.shop.abandoned_after, Duration::from_secs(5400));
        assert_eq!(c.redacted().notifications.smtp.password, "***");
        assert_eq!(c.diameter.timers.watchdog_interval, Duration::from_secs(10));
        assert_eq!(c.diameter.host_ip_addresses.len(), 2);
        let e = GatewayConfig::load_with_env(
            &path,
            vec![(
                "GATEWAY__DIAMETER__TIMERS__REQUEST_TIMEOUT".to_string(),
                "soon".to_string(),
            )],
        )
        .unwrap_err();
        assert!(e.key.contains("request_timeout"), "{e}");
        // The store is pointed at PostgreSQL from the environment alone.
        let url = "postgresql://gw:s3cret@127.0.0.1:5432/gateway";
        let c = GatewayConfig::load_with_env(
            &path,
            vec![
                (
                    "GATEWAY__STORE__BACKEND".to_string(),
                    "postgres".to_string(),
                ),
                ("GATEWAY__STORE__URL".to_string(), url.to_string()),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.store.backend.as_str(), c.store.url.as_str()),
            ("postgres", url)
        );
        let e = GatewayConfig::load_with_env(
            &path,
            vec![(
                "GATEWAY__STORE__BACKEND".to_string(),
                "postgres".to_string(),
            )],
        )
        .unwrap_err();
        assert_eq!(e.key, "store.url", "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(GatewayConfig::load(&dir.join("missing.toml")).is_err());
    }
}
