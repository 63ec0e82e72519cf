//! `[notifications]`: the durable outbox's delivery to the URLs API consumers give (CAMARA
//! `sink`, checkout `notificationUrl`, TMF `/hub` callbacks), and what those URLs may reach.

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
        Ok(())
    }
}
