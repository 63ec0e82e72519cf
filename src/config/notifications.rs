//! `[notifications]`: the durable outbox's delivery to the URLs API consumers give (CAMARA
//! `sink`, checkout `notificationUrl`, TMF `/hub` callbacks), and what those URLs may reach;
//! `[notifications.smtp]`, the mail server `mailto:` events go through, and
//! `[notifications.sms]`, the operator's SMS webhook.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[notifications]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Whether this instance delivers the outbox's events (events are recorded either way;
    /// another instance on the same PostgreSQL may deliver them).
    pub deliver: bool,
    /// Accept `http://` URLs as well as `https://` (tests, a listener on a trusted network).
    pub allow_http: bool,
    /// Networks a URL may reach besides the public Internet (CIDR, `10.20.0.0/16`,
    /// `127.0.0.1/32`). Empty: public unicast addresses only; loopback, private, link-local,
    /// shared, multicast and reserved ranges are refused at registration and again when
    /// connecting (after DNS).
    pub allowed_networks: Vec<IpNet>,
    /// TCP (and TLS) connect timeout of one attempt.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-attempt timeout (connect, send, answer head).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts before an event is given up (dead letter).
    pub max_attempts: u32,
    /// First pause between attempts, doubled each time (with jitter) up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Events posted at once by this instance.
    pub concurrency: usize,
    /// How often the store is looked at for due events (an event written by this instance
    /// wakes the worker at once; this is for retries and other instances' events).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most bytes of a receiver's answer read (the rest is dropped with the connection).
    pub max_response_bytes: usize,
    /// CloudEvents `source` prefix (a URI reference). Empty: the API's own path
    /// (`/carrier-billing/v0.5/payments`).
    pub source: String,
    /// The mail server of `mailto:` events.
    pub smtp: SmtpConfig,
    /// The SMS webhook.
    pub sms: SmsConfig,
}

/// How the connection to the mail server is secured.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SmtpTls {
    /// Plain SMTP (a relay on a trusted network); no credentials allowed.
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer (no fallback
    /// to plain text: RFC 3207 downgrade protection).
    #[default]
    Starttls,
    /// TLS from the first byte (submissions, RFC 8314).
    Tls,
}

impl SmtpTls {
    /// The port used when `port` is 0: 25, 587 (submission) or 465 (submissions).
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

/// `[notifications.smtp]`: where `mailto:` events are sent (RFC 5321).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The mail server's host name (its TLS certificate must name it). Empty: no mail
    /// server; a `mailto:` event is then dead at once, or written to the log with `log`.
    pub host: String,
    /// 0: the default of `tls` (25, 587, 465).
    pub port: u16,
    pub tls: SmtpTls,
    /// AUTH credentials (both or neither; not with `tls = "none"`).
    pub username: String,
    pub password: String,
    /// The `From:` mailbox (`Shop <shop@operator.example>`); required with `host`.
    pub from: String,
    /// Connect and per-command timeout; a whole attempt is given no more than this either.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Demo only, with no `host`: a mail is written to the log at info (recipient, subject,
    /// text) and counted delivered, instead of being dead.
    pub log: bool,
    /// Demo only, with no `host`: each mail is written as an RFC 5322 `.eml` file into this
    /// directory (made at start) and counted delivered: a local mailbox a newcomer (or a
    /// script) reads the sign-up codes from. Empty: none.
    pub mailbox_dir: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 0,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            timeout: Duration::from_secs(10),
            log: false,
            mailbox_dir: String::new(),
        }
    }
}

impl SmtpConfig {
    /// Whether mail can be sent (a server, or the demo's log or mailbox).
    pub fn enabled(&self) -> bool {
        !self.host.is_empty() || self.log || !self.mailbox_dir.is_empty()
    }

    /// The port connected to.
    pub fn effective_port(&self) -> u16 {
        if self.port == 0 {
            self.tls.default_port()
        } else {
            self.port
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(bad("notifications.smtp.timeout", "must be above zero"));
        }
        if !self.from.trim().is_empty() && self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "notifications.smtp.from",
                format!(
                    "\"{}\" is not a mailbox (user@domain, or Name <user@domain>)",
                    self.from
                ),
            ));
        }
        if self.host.is_empty() {
            return Ok(());
        }
        if !self.mailbox_dir.is_empty() {
            return Err(bad(
                "notifications.smtp.mailbox_dir",
                "the demo mailbox is for a gateway without a mail server: clear host, or \
                 mailbox_dir",
            ));
        }
        if self.host.len() > 253
            || self.host.starts_with(['.', '-'])
            || !self
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(bad(
                "notifications.smtp.host",
                format!("\"{}\" is not a host name or address", self.host),
            ));
        }
        if self.from.trim().is_empty() {
            return Err(bad(
                "notifications.smtp.from",
                "the From: mailbox is required with notifications.smtp.host",
            ));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "notifications.smtp.from",
                format!(
                    "\"{}\" is not a mailbox (user@domain, or Name <user@domain>)",
                    self.from
                ),
            ));
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err(bad(
                "notifications.smtp.password",
                "give both username and password, or neither",
            ));
        }
        if !self.username.is_empty() && self.tls == SmtpTls::None {
            return Err(bad(
                "notifications.smtp.tls",
                "credentials are not sent over a plain connection: use starttls or tls",
            ));
        }
        Ok(())
    }
}

/// `[notifications.sms]`: the operator's SMS gateway, an HTTP webhook taking
/// `POST {"to": "+34600000001", "text": "..."}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// The webhook (https, or http with `notifications.allow_http`; its address must be
    /// public or in `notifications.allowed_networks`). Empty: no SMS.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: String,
}

impl SmsConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The form only; the address policy is applied by the outbox as to every URL
    /// (`notify::Destinations`), and checked once more by `gateway serve` at start.
    fn validate(&self, allow_http: bool) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Ok(());
        }
        match url::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" && !allow_http => {
                return Err(bad(
                    "notifications.sms.url",
                    "http is accepted only with notifications.allow_http = true",
                ));
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(bad(
                    "notifications.sms.url",
                    "must be an absolute http(s) URL",
                ));
            }
        }
        if self
            .token
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(bad(
                "notifications.sms.token",
                "no spaces or control characters",
            ));
        }
        Ok(())
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            deliver: true,
            allow_http: false,
            allowed_networks: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_attempts: 12,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            concurrency: 16,
            poll_interval: Duration::from_secs(1),
            max_response_bytes: 65_536,
            source: String::new(),
            smtp: SmtpConfig::default(),
            sms: SmsConfig::default(),
        }
    }
}

impl NotificationsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_timeout.is_zero() {
            return Err(bad("notifications.connect_timeout", "must be above zero"));
        }
        if self.request_timeout < self.connect_timeout {
            return Err(bad(
                "notifications.request_timeout",
                "must be at least notifications.connect_timeout",
            ));
        }
        if self.max_attempts == 0 {
            return Err(bad("notifications.max_attempts", "must be at least 1"));
        }
        if self.backoff_min.is_zero() {
            return Err(bad("notifications.backoff_min", "must be above zero"));
        }
        if self.backoff_max < self.backoff_min {
            return Err(bad(
                "notifications.backoff_max",
                "must be at least notifications.backoff_min",
            ));
        }
        if self.concurrency == 0 {
            return Err(bad("notifications.concurrency", "must be above zero"));
        }
        if self.poll_interval.is_zero() {
            return Err(bad("notifications.poll_interval", "must be above zero"));
        }
        if self.max_response_bytes == 0 {
            return Err(bad(
                "notifications.max_response_bytes",
                "must be above zero",
            ));
        }
        if self.source.len() > 512 || self.source.chars().any(char::is_control) {
            return Err(bad(
                "notifications.source",
                "at most 512 characters, no control characters",
            ));
        }
        self.smtp.validate()?;
        self.sms.validate(self.allow_http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut NotificationsConfig)) -> Result<(), ConfigError> {
        let mut n = NotificationsConfig::default();
        f(&mut n);
        n.validate()
    }

    #[test]
    fn smtp_and_sms_are_checked_naming_the_key() {
        assert!(with(|_| {}).is_ok());
        let smtp = |n: &mut NotificationsConfig| {
            n.smtp.host = "smtp.example.net".into();
            n.smtp.from = "Shop <shop@example.net>".into();
        };
        assert!(with(smtp).is_ok());
        assert_eq!(SmtpConfig::default().effective_port(), 587);
        let key = |f: fn(&mut NotificationsConfig)| with(f).unwrap_err().key;
        assert_eq!(
            key(|n| n.smtp.host = "smtp.example.net".into()),
            "notifications.smtp.from"
        );
        assert_eq!(
            key(|n| {
                n.smtp.host = "smtp.example.net".into();
                n.smtp.from = "not a mailbox".into();
            }),
            "notifications.smtp.from"
        );
        assert_eq!(
            key(|n| {
                n.smtp.host = "smtp.example.net".into();
                n.smtp.from = "shop@example.net".into();
                n.smtp.username = "shop".into();
            }),
            "notifications.smtp.password"
        );
        assert_eq!(
            key(|n| {
                n.smtp.host = "smtp.example.net".into();
                n.smtp.from = "shop@example.net".into();
                n.smtp.tls = SmtpTls::None;
                n.smtp.username = "shop".into();
                n.smtp.password = "pw".into();
            }),
            "notifications.smtp.tls"
        );
        assert_eq!(
            key(|n| n.smtp.host = "smtp example".into()),
            "notifications.smtp.host"
        );
        assert_eq!(
            key(|n| n.sms.url = "http://sms.example.net/send".into()),
            "notifications.sms.url"
        );
        assert!(
            with(|n| {
                n.allow_http = true;
                n.sms.url = "http://sms.example.net/send".into();
            })
            .is_ok()
        );
        assert_eq!(
            key(|n| n.sms.url = "sms.example.net".into()),
            "notifications.sms.url"
        );
        let parsed: SmtpConfig =
            toml::from_str("host = \"h.example\"\ntls = \"tls\"\nfrom = \"a@h.example\"").unwrap();
        assert_eq!((parsed.tls, parsed.effective_port()), (SmtpTls::Tls, 465));
        assert!(toml::from_str::<SmtpConfig>("tls = \"ssl\"").is_err());
    }
}
