//! `[identity]`: self-registration of the shop's customers (one-time codes by mail or SMS),
//! their passwords, the access and refresh tokens, and the abuse limits (`src/identity/`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[identity]`. Every limit is counted in the store, so it holds across instances.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// `iss` of the access tokens.
    pub issuer: String,
    /// The HS256 key of the access tokens (at least 32 bytes). Empty: one is generated at the
    /// first start and kept in the store, the same for every instance.
    pub signing_key: String,
    /// Life of an access token.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Life of a session (its refresh tokens).
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// Life of a one-time code.
    #[serde(with = "humantime_serde")]
    pub code_ttl: Duration,
    /// Wrong codes a sign-up tolerates (per code sent); then it takes a new code.
    pub max_attempts: u32,
    /// Codes one sign-up may be sent (the first and the resends).
    pub max_sends: u32,
    /// Shortest time between two codes to one address (429 with Retry-After before).
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Sign-ups per address per `limit_window` (429 beyond).
    pub signup_limit: u32,
    /// Sign-ins per address per `limit_window` (429 beyond).
    pub signin_limit: u32,
    /// Sign-ups, resends and sign-ins per application per `limit_window` (429 beyond).
    pub app_limit: u32,
    /// The fixed window of the limits above.
    #[serde(with = "humantime_serde")]
    pub limit_window: Duration,
    /// Failed sign-ins in a row after which an address is locked.
    pub max_failed_signins: u32,
    /// How long a locked address stays locked.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Argon2id cost: memory (KiB), iterations, lanes. The defaults are the argon2 crate's
    /// (19 MiB, 2, 1: OWASP's minimum); tests may lower them.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// The code's mail: subject and text; `{code}` and `{minutes}` are replaced.
    pub code_subject: String,
    pub code_text: String,
    /// The code's SMS text.
    pub code_sms_text: String,
    /// The mail sent instead of a code when the address already has an account.
    pub registered_subject: String,
    pub registered_text: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuer: "charging-gateway".into(),
            signing_key: String::new(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(10 * 60),
            max_attempts: 5,
            max_sends: 4,
            resend_interval: Duration::from_secs(30),
            signup_limit: 5,
            signin_limit: 20,
            app_limit: 10_000,
            limit_window: Duration::from_secs(3600),
            max_failed_signins: 5,
            lockout: Duration::from_secs(15 * 60),
            argon2_memory_kib: argon2::Params::DEFAULT_M_COST,
            argon2_iterations: argon2::Params::DEFAULT_T_COST,
            argon2_parallelism: argon2::Params::DEFAULT_P_COST,
            code_subject: "Your confirmation code".into(),
            code_text: "Hello,\n\nyour confirmation code is {code}. It is valid for {minutes} \
                        minutes.\n\nIf you did not sign up, ignore this message.\n"
                .into(),
            code_sms_text: "Your confirmation code is {code} (valid {minutes} min).".into(),
            registered_subject: "You already have an account".into(),
            registered_text: "Hello,\n\nsomeone (perhaps you) tried to sign up again with this \
                              address. You already have an account: sign in with your \
                              password.\n\nIf it was not you, ignore this message.\n"
                .into(),
        }
    }
}

impl IdentityConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.trim().is_empty() {
            return Err(bad("identity.issuer", "must not be empty"));
        }
        if !self.signing_key.is_empty() && self.signing_key.len() < 32 {
            return Err(bad(
                "identity.signing_key",
                "at least 32 bytes (or empty: generated and kept in the store)",
            ));
        }
        for (key, d) in [
            ("identity.access_ttl", self.access_ttl),
            ("identity.refresh_ttl", self.refresh_ttl),
            ("identity.code_ttl", self.code_ttl),
            ("identity.limit_window", self.limit_window),
            ("identity.lockout", self.lockout),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be above zero"));
            }
        }
        for (key, n) in [
            ("identity.max_attempts", self.max_attempts),
            ("identity.max_sends", self.max_sends),
            ("identity.signup_limit", self.signup_limit),
            ("identity.signin_limit", self.signin_limit),
            ("identity.app_limit", self.app_limit),
            ("identity.max_failed_signins", self.max_failed_signins),
        ] {
            if n == 0 {
                return Err(bad(key, "must be above zero"));
            }
        }
        if argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err(bad(
                "identity.argon2_memory_kib",
                "the Argon2 cost is refused (memory >= 8 x parallelism KiB, iterations >= 1, \
                 parallelism >= 1)",
            ));
        }
        for (key, t) in [
            ("identity.code_text", &self.code_text),
            ("identity.code_sms_text", &self.code_sms_text),
        ] {
            if !t.contains("{code}") {
                return Err(bad(key, "must contain {code}"));
            }
        }
        for (key, t) in [
            ("identity.code_subject", &self.code_subject),
            ("identity.registered_subject", &self.registered_subject),
        ] {
            if t.chars().any(char::is_control) {
                return Err(bad(key, "one line, no control characters"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        IdentityConfig::default().validate().unwrap();
        let bad = |c: IdentityConfig| c.validate().unwrap_err().key;
        let d = IdentityConfig::default;
        assert_eq!(
            bad(IdentityConfig {
                signing_key: "short".into(),
                ..d()
            }),
            "identity.signing_key"
        );
        assert_eq!(
            bad(IdentityConfig {
                code_text: "no code here".into(),
                ..d()
            }),
            "identity.code_text"
        );
        assert_eq!(
            bad(IdentityConfig {
                max_attempts: 0,
                ..d()
            }),
            "identity.max_attempts"
        );
        assert_eq!(
            bad(IdentityConfig {
                argon2_memory_kib: 1,
                ..d()
            }),
            "identity.argon2_memory_kib"
        );
    }
}
