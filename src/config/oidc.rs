//! `[oidc]`: access tokens of an external OpenID Connect provider (as CAMARA deployments have
//! them), accepted by every REST family beside the applications' own credentials.
//!
//! ```toml
//! [oidc]
//! issuer = "https://idp.operator.example"        # `iss`, compared exactly; empty: no [oidc]
//! jwks_url = "https://idp.operator.example/jwks" # empty: from issuer/.well-known/openid-configuration
//! audience = ["charging-gateway"]                # `aud` must name one of them
//! algorithms = ["RS256", "ES256", "EdDSA"]       # never `none`, never HS*
//! leeway = "60s"                                 # clock skew on exp/nbf, at most 5m
//! jwks_refresh = "10m"                           # keys fetched again when older
//! app_claims = ["azp", "client_id"]              # the first present names [[apps]] oidc_client_id
//! phone_claim = "phone_number"                   # present: a 3-legged token for that MSISDN
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// The algorithms a token may be signed with (asymmetric only: a JWKS publishes public keys,
/// and an HMAC key would have to be secret).
pub const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Largest `leeway` accepted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// `[oidc]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider's issuer identifier (`iss` of its tokens, compared exactly). Empty: no
    /// external tokens are accepted.
    pub issuer: String,
    /// Where its JSON Web Key Set is. Empty: the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration` (whose `issuer` must be `issuer`).
    pub jwks_url: String,
    /// Accepted audiences: a token's `aud` must contain one of them.
    pub audience: Vec<String>,
    /// Accepted signature algorithms (of [`ALGORITHMS`]).
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most 5 minutes).
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// The keys are fetched again when older than this.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// A token signed with a key id not in the cache fetches the keys again, at most once per
    /// this interval (a rotation is picked up; a flood of made-up key ids is not a flood of
    /// fetches).
    #[serde(with = "humantime_serde")]
    pub refetch_interval: Duration,
    /// Time allowed to fetch the discovery document or the key set.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Largest key set (or discovery document) read, bytes.
    pub max_jwks_bytes: usize,
    /// Longest token accepted, bytes.
    pub max_token_bytes: usize,
    /// The claims naming the client the token was issued to, tried in order; the first present
    /// is matched against `[[apps]] oidc_client_id`, whose policy then applies.
    pub app_claims: Vec<String>,
    /// The claim carrying the subscriber's MSISDN (E.164, `+` and digits). A token with it is
    /// three-legged: it acts for that subscriber only. `sub` is never read as an MSISDN.
    pub phone_claim: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            jwks_url: String::new(),
            audience: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            leeway: Duration::from_secs(60),
            jwks_refresh: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            max_jwks_bytes: 256 * 1024,
            max_token_bytes: 8 * 1024,
            app_claims: vec!["azp".into(), "client_id".into()],
            phone_claim: "phone_number".into(),
        }
    }
}

/// An http(s) URL the gateway may fetch keys from: https, or plain http to a loopback host
/// (a provider beside the gateway, a test).
fn fetchable(key: &str, text: &str) -> Result<(), ConfigError> {
    let u = url::Url::parse(text).map_err(|e| bad(key, format!("not a URL: {e}")))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(bad(
            key,
            "must be an https URL (plain http only to a loopback host)",
        )),
    }
}

impl OidcConfig {
    /// Whether external tokens are accepted.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// The discovery document's URL (RFC 8414 / OpenID Connect Discovery 1.0 section 4).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        fetchable("oidc.issuer", &self.issuer)?;
        if !self.jwks_url.is_empty() {
            fetchable("oidc.jwks_url", &self.jwks_url)?;
        }
        if self.audience.is_empty() || self.audience.iter().any(|a| a.trim().is_empty()) {
            return Err(bad(
                "oidc.audience",
                "name at least one audience (a token's aud must contain one), none empty",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(bad("oidc.algorithms", "name at least one algorithm"));
        }
        for (i, a) in self.algorithms.iter().enumerate() {
            if !ALGORITHMS.contains(&a.as_str()) {
                return Err(bad(
                    format!("oidc.algorithms[{i}]"),
                    format!(
                        "\"{a}\" is not accepted (one of {}; never none, never HS*: a JWKS \
                         holds public keys)",
                        ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if self.leeway > MAX_LEEWAY {
            return Err(bad("oidc.leeway", "at most 5m"));
        }
        for (key, d) in [
            ("oidc.jwks_refresh", self.jwks_refresh),
            ("oidc.refetch_interval", self.refetch_interval),
            ("oidc.fetch_timeout", self.fetch_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be above zero"));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_jwks_bytes) {
            return Err(bad("oidc.max_jwks_bytes", "between 1024 and 16777216"));
        }
        if !(512..=64 * 1024).contains(&self.max_token_bytes) {
            return Err(bad("oidc.max_token_bytes", "between 512 and 65536"));
        }
        if self.app_claims.is_empty() || self.app_claims.iter().any(|c| c.trim().is_empty()) {
            return Err(bad(
                "oidc.app_claims",
                "name at least one claim (e.g. azp, client_id), none empty",
            ));
        }
        if self.phone_claim.trim().is_empty() {
            return Err(bad(
                "oidc.phone_claim",
                "must not be empty (e.g. phone_number)",
            ));
        }
        if self.phone_claim == "sub" {
            return Err(bad(
                "oidc.phone_claim",
                "sub is never an MSISDN (CAMARA forbids personal data in sub)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            audience: vec!["gw".into()],
            ..OidcConfig::default()
        }
    }

    #[test]
    fn defaults_and_refusals() {
        assert!(OidcConfig::default().validate().is_ok(), "off by default");
        assert!(!OidcConfig::default().enabled());
        assert!(on().validate().is_ok());
        assert_eq!(
            on().discovery_url(),
            "https://idp.example/.well-known/openid-configuration"
        );
        let cases: Vec<(OidcConfig, &str)> = vec![
            (
                OidcConfig {
                    issuer: "http://idp.example".into(),
                    ..on()
                },
                "oidc.issuer",
            ),
            (
                OidcConfig {
                    jwks_url: "ftp://idp.example/k".into(),
                    ..on()
                },
                "oidc.jwks_url",
            ),
            (
                OidcConfig {
                    audience: vec![],
                    ..on()
                },
                "oidc.audience",
            ),
            (
                OidcConfig {
                    algorithms: vec!["ES256".into(), "HS256".into()],
                    ..on()
                },
                "oidc.algorithms[1]",
            ),
            (
                OidcConfig {
                    algorithms: vec!["none".into()],
                    ..on()
                },
                "oidc.algorithms[0]",
            ),
            (
                OidcConfig {
                    leeway: Duration::from_secs(301),
                    ..on()
                },
                "oidc.leeway",
            ),
            (
                OidcConfig {
                    refetch_interval: Duration::ZERO,
                    ..on()
                },
                "oidc.refetch_interval",
            ),
            (
                OidcConfig {
                    phone_claim: "sub".into(),
                    ..on()
                },
                "oidc.phone_claim",
            ),
            (
                OidcConfig {
                    app_claims: vec![],
                    ..on()
                },
                "oidc.app_claims",
            ),
            (
                OidcConfig {
                    max_token_bytes: 10,
                    ..on()
                },
                "oidc.max_token_bytes",
            ),
        ];
        for (c, key) in cases {
            assert_eq!(c.validate().unwrap_err().key, key);
        }
        // Plain http to a loopback provider (a test, a sidecar) is accepted.
        let local = OidcConfig {
            issuer: "http://127.0.0.1:8080/realms/x".into(),
            jwks_url: "http://localhost:8080/jwks".into(),
            ..on()
        };
        assert!(local.validate().is_ok());
    }
}
