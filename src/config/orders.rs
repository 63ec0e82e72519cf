//! `[orders]`: the TMF622 order pipeline of the digital sales channel (`api::tmf622`).
//!
//! ```toml
//! [orders]
//! interval = "2s"            # how often due orders are looked for (retries, recovery)
//! step_attempts = 8          # a step that fails for a passing reason is tried this often
//! retry_min = "1s"           # back-off between its tries, doubling up to retry_max
//! retry_max = "1m"
//! timeout = "10s"            # each call to an external service
//! merchant = "shop"          # merchant id on the carrier-billing purchase
//!
//! [orders.external_payment]  # the "externalPayment" method ("" url: not offered)
//! url = "https://psp.example/authorizations"
//! token = "..."              # sent as Authorization: Bearer
//!
//! [[orders.tasks]]           # run after payment authorisation, in this order
//! name = "delivery"
//! url = "https://logistics.example/orders"
//! token = ""
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[orders]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Time between passes over the due orders (an order is also started at once when it is
    /// created; the passes retry steps and resume orders a stopped instance left).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Tries of a step whose failure may pass (no OCS, a 5xx or timeout of a service), then
    /// the order fails (its earlier steps compensated).
    pub step_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Each request to an external service (payment, task).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most due orders one pass takes.
    pub batch: usize,
    /// `merchant.id` of the carrier-billing purchase that pays an order.
    pub merchant: String,
    pub external_payment: ExternalPaymentConfig,
    /// External tasks, run after the payment is authorised and before the numbers are
    /// assigned, in this order.
    pub tasks: Vec<TaskConfig>,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            step_attempts: 8,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            batch: 64,
            merchant: "shop".into(),
            external_payment: ExternalPaymentConfig::default(),
            tasks: Vec::new(),
        }
    }
}

/// `[orders.external_payment]`: a payment service the gateway asks to authorise, capture
/// and void an order's amount (`paymentMethod` `externalPayment`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalPaymentConfig {
    /// Empty: the method is not offered (an order asking for it is refused).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when not empty.
    pub token: String,
}

/// `[[orders.tasks]]`: a step posted to an external service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The step's name on the order (`delivery`, `provisioning`).
    pub name: String,
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when not empty.
    #[serde(default)]
    pub token: String,
}

fn http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(bad(
            key,
            format!("{url:?}: an http or https URL with a host"),
        )),
        Err(e) => Err(bad(key, format!("{url:?}: {e}"))),
    }
}

impl OrdersConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() {
            return Err(bad("orders.interval", "must be above zero"));
        }
        if self.step_attempts == 0 {
            return Err(bad("orders.step_attempts", "at least 1"));
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return Err(bad(
                "orders.retry_min",
                "above zero and at most orders.retry_max",
            ));
        }
        if self.timeout.is_zero() {
            return Err(bad("orders.timeout", "must be above zero"));
        }
        if self.batch == 0 {
            return Err(bad("orders.batch", "at least 1"));
        }
        if self.merchant.trim().is_empty() || self.merchant.len() > 256 {
            return Err(bad("orders.merchant", "1 to 256 characters"));
        }
        if !self.external_payment.url.is_empty() {
            http_url("orders.external_payment.url", &self.external_payment.url)?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let key = format!("orders.tasks[{i}]");
            let ok_name = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(bad(
                    format!("{key}.name"),
                    "1 to 64 letters, digits, - or _",
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(bad(
                    format!("{key}.name"),
                    format!("{:?} is named twice", t.name),
                ));
            }
            http_url(&format!("{key}.url"), &t.url)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_hold_and_bad_values_are_named() {
        assert_eq!(OrdersConfig::default().validate(), Ok(()));
        let mut c = OrdersConfig::default();
        c.tasks.push(TaskConfig {
            name: "delivery".into(),
            url: "ftp://x".into(),
            token: String::new(),
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("orders.tasks[0].url"), "{e}");
        c.tasks[0].url = "http://127.0.0.1:9/x".into();
        assert_eq!(c.validate(), Ok(()));
        c.tasks.push(c.tasks[0].clone());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        let c = OrdersConfig {
            retry_max: Duration::from_millis(10),
            ..OrdersConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("orders.retry_min")
        );
    }
}
