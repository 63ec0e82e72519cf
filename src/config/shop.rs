//! `[shop]`: the digital sales channel's background work: the one follow-up of an abandoned
//! shopping cart (TMF663), by email (`[notifications.smtp]`) or SMS (`[notifications.sms]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["{cart}", "{total}", "{url}"];

/// `[shop]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShopConfig {
    /// Whether this instance looks for abandoned carts (any number of instances may: each
    /// cart is followed up once).
    pub follow_up: bool,
    /// A cart untouched by its customer this long (while active, with a contact) is
    /// abandoned.
    #[serde(with = "humantime_serde")]
    pub abandoned_after: Duration,
    /// How often the store is looked at for abandoned carts.
    #[serde(with = "humantime_serde")]
    pub follow_up_interval: Duration,
    /// Most carts followed up in one pass (the rest wait for the next).
    pub batch: usize,
    /// The link to the cart in the message (`{url}`): `{cart}` in it is replaced by the
    /// cart id (`https://shop.example/cart/{cart}`). Required when a template uses `{url}`.
    pub shop_url: String,
    /// The mail's subject (one line).
    pub subject: String,
    /// The mail's text (plain text).
    pub text: String,
    /// The SMS text.
    pub sms_text: String,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            follow_up: false,
            abandoned_after: Duration::from_secs(24 * 3600),
            follow_up_interval: Duration::from_secs(60),
            batch: 100,
            shop_url: String::new(),
            subject: "Your cart is waiting for you".into(),
            text: "Hello,\n\nyou left something in your cart {cart} ({total}). It is kept for \
                   you: {url}\n\nThis is the only reminder we send about this cart.\n"
                .into(),
            sms_text: "Your cart {cart} ({total}) is waiting for you: {url}".into(),
        }
    }
}

/// Longest template accepted (characters).
pub const MAX_TEMPLATE: usize = 4096;

impl ShopConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.abandoned_after.is_zero() {
            return Err(bad("shop.abandoned_after", "must be above zero"));
        }
        if self.follow_up_interval.is_zero() {
            return Err(bad("shop.follow_up_interval", "must be above zero"));
        }
        if self.batch == 0 {
            return Err(bad("shop.batch", "must be above zero"));
        }
        for (key, t) in [
            ("shop.subject", &self.subject),
            ("shop.text", &self.text),
            ("shop.sms_text", &self.sms_text),
        ] {
            if t.trim().is_empty() || t.chars().count() > MAX_TEMPLATE {
                return Err(bad(key, "must not be empty, at most 4096 characters"));
            }
        }
        if self.subject.chars().any(char::is_control) {
            return Err(bad("shop.subject", "one line, no control characters"));
        }
        if !self.shop_url.is_empty() {
            let sample = self.shop_url.replace("{cart}", "cart-1");
            match url::Url::parse(&sample) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(bad(
                        "shop.shop_url",
                        "must be an absolute http(s) URL ({cart} may stand for the cart id)",
                    ));
                }
            }
        }
        let uses_url = [&self.subject, &self.text, &self.sms_text]
            .iter()
            .any(|t| t.contains("{url}"));
        if self.follow_up && uses_url && self.shop_url.is_empty() {
            return Err(bad(
                "shop.shop_url",
                "required with shop.follow_up = true: the message links to the cart ({url})",
            ));
        }
        Ok(())
    }

    /// The link to cart `id`.
    pub fn cart_url(&self, id: &str) -> String {
        self.shop_url.replace("{cart}", id)
    }
}

/// `template` with `{cart}`, `{total}` and `{url}` replaced (in one pass: a value containing
/// a placeholder is not expanded again).
pub fn render(template: &str, cart: &str, total: &str, url: &str) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let hit = [("{cart}", cart), ("{total}", total), ("{url}", url)]
            .into_iter()
            .find(|(p, _)| tail.starts_with(p));
        match hit {
            Some((p, v)) => {
                out.push_str(v);
                rest = &tail[p.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_follow_up_needs_the_shop_url() {
        let c = ShopConfig::default();
        assert!(!c.follow_up);
        assert_eq!(c.abandoned_after, Duration::from_secs(86_400));
        assert_eq!(c.follow_up_interval, Duration::from_secs(60));
        assert!(c.validate().is_ok());
        let on = ShopConfig {
            follow_up: true,
            ..c.clone()
        };
        assert_eq!(on.validate().unwrap_err().key, "shop.shop_url");
        let on = ShopConfig {
            shop_url: "https://shop.example/cart/{cart}".into(),
            ..on
        };
        assert!(on.validate().is_ok());
        assert_eq!(on.cart_url("c-1"), "https://shop.example/cart/c-1");
        for (bad_cfg, key) in [
            (
                ShopConfig {
                    abandoned_after: Duration::ZERO,
                    ..c.clone()
                },
                "shop.abandoned_after",
            ),
            (
                ShopConfig {
                    batch: 0,
                    ..c.clone()
                },
                "shop.batch",
            ),
            (
                ShopConfig {
                    subject: "two\nlines".into(),
                    ..c.clone()
                },
                "shop.subject",
            ),
            (
                ShopConfig {
                    shop_url: "shop.example/cart".into(),
                    ..c.clone()
                },
                "shop.shop_url",
            ),
        ] {
            assert_eq!(bad_cfg.validate().unwrap_err().key, key);
        }
        let parsed: ShopConfig = toml::from_str(
            "follow_up = true\nabandoned_after = \"2h\"\nshop_url = \"https://s.example/\"",
        )
        .unwrap();
        assert_eq!(parsed.abandoned_after, Duration::from_secs(7200));
        assert_eq!(parsed.batch, 100);
        assert!(toml::from_str::<ShopConfig>("follow_upp = true").is_err());
    }

    #[test]
    fn render_replaces_each_placeholder_once() {
        assert_eq!(
            render(
                "{cart}: {total} at {url} {other} {",
                "c1",
                "5 EUR",
                "{cart}"
            ),
            "c1: 5 EUR at {cart} {other} {"
        );
        assert_eq!(render("no placeholders", "a", "b", "c"), "no placeholders");
    }
}
