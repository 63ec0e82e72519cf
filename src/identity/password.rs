//! Passwords and one-time codes kept as Argon2id hashes (RFC 9106), PHC strings
//! (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`): the cost travels with each hash, so a
//! change of `[identity] argon2_*` applies to new hashes and old ones still verify.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::identity::IdentityConfig;

/// Longest password accepted (bytes): Argon2 takes any length, the bound keeps a request's
/// cost bounded.
pub const MAX_PASSWORD: usize = 256;
/// Shortest password accepted (characters).
pub const MIN_PASSWORD: usize = 8;

/// The hasher of the configured cost.
#[derive(Clone, Debug)]
pub struct Hasher {
    params: Params,
}

impl Hasher {
    /// With `[identity] argon2_*` (validated by the configuration loader; a refused cost
    /// falls back to the crate's defaults).
    pub fn new(cfg: &IdentityConfig) -> Self {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .unwrap_or_default();
        Self { params }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string of `secret`, with a fresh 16-byte salt from the OS.
    pub fn hash(&self, secret: &[u8]) -> Result<String, String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        self.argon2()
            .hash_password(secret, &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    /// Whether `secret` is the one `phc` was made of (the comparison is the crate's, in
    /// constant time). A malformed stored hash verifies nothing.
    pub fn verify(&self, secret: &[u8], phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(h) => self.argon2().verify_password(secret, &h).is_ok(),
            Err(_) => false,
        }
    }
}

/// A password's form: 400 naming `field` otherwise.
pub fn check(password: &str) -> Result<(), &'static str> {
    if password.len() > MAX_PASSWORD {
        return Err("at most 256 bytes");
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err("at least 8 characters");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn cheap() -> IdentityConfig {
    IdentityConfig {
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        ..IdentityConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let h = Hasher::new(&cheap());
        let phc = h.hash(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(h.verify(b"correct horse", &phc));
        assert!(!h.verify(b"correct horsf", &phc));
        assert!(!h.verify(b"correct horse", "not a hash"));
        // Two hashes of one secret differ (salted).
        assert_ne!(phc, h.hash(b"correct horse").unwrap());
        // A hash made at another cost still verifies.
        let other = Hasher::new(&IdentityConfig {
            argon2_memory_kib: 16,
            ..cheap()
        });
        assert!(h.verify(b"correct horse", &other.hash(b"correct horse").unwrap()));
    }

    #[test]
    fn password_bounds() {
        assert!(check("short").is_err());
        assert!(check("long enough").is_ok());
        assert!(check(&"x".repeat(257)).is_err());
    }
}
