//! Access tokens (JWT, RFC 7519, HS256) and refresh tokens.
//!
//! ```text
//! access:  header.{"iss","sub": user id,"app","cid": customer id,"sid": session id,
//!                  "exp","iat","jti"}.HMAC-SHA256   (refused once its session is revoked)
//! refresh: rt.<session id>.<generation>.<32 random bytes, hex>
//!          the session row keeps sha256(secret) of its current generation only; a refresh
//!          moves it on (compare-and-set), so an older generation presented again is a reuse:
//!          the session is revoked
//! ```

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserClaims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The `[[apps]]` id the shop front end signed in with.
    pub app: String,
    /// The customer id.
    pub cid: String,
    /// The session id.
    pub sid: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is malformed, its signature or issuer is wrong, or it expired")]
    Invalid,
    #[error("the session of the token is signed out")]
    Revoked,
    #[error("{0}")]
    Store(String),
}

const PREFIX: &str = "rt";

/// Signs `claims`.
pub fn sign(key: &[u8], claims: &UserClaims) -> Result<String, String> {
    let key = EncodingKey::from_secret(key).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).map_err(|e| e.to_string())
}

/// The claims of a token signed with `key` by `issuer`, not expired at `now_s`.
pub fn decode(key: &[u8], issuer: &str, token: &str, now_s: i64) -> Result<UserClaims, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Invalid);
    }
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    // `exp` is checked below against the caller's clock (the crate's own check, against the
    // system's, is off so that the two cannot disagree).
    v.validate_exp = false;
    let key = DecodingKey::from_secret(key).map_err(|_| TokenError::Invalid)?;
    let data =
        jsonwebtoken::decode::<UserClaims>(token, &key, &v).map_err(|_| TokenError::Invalid)?;
    if data.claims.exp <= now_s {
        return Err(TokenError::Invalid);
    }
    Ok(data.claims)
}

/// A refresh token's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub session: String,
    pub generation: u64,
    pub secret: String,
}

impl Refresh {
    pub fn new(session: &str, generation: u64) -> Result<Self, String> {
        Ok(Self {
            session: session.to_string(),
            generation,
            secret: super::otp::random_hex(32)?,
        })
    }

    pub fn text(&self) -> String {
        format!(
            "{PREFIX}.{}.{}.{}",
            self.session, self.generation, self.secret
        )
    }

    /// The token a client presents, if it has the form.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 256 {
            return None;
        }
        let mut it = s.split('.');
        let (p, session, generation, secret) = (it.next()?, it.next()?, it.next()?, it.next()?);
        if p != PREFIX || it.next().is_some() || session.is_empty() || secret.len() != 64 {
            return None;
        }
        if !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        Some(Self {
            session: session.to_string(),
            generation: generation.parse().ok()?,
            secret: secret.to_string(),
        })
    }

    /// What the session row keeps of it.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// Whether it is the one whose digest is `stored` (constant time).
    pub fn matches(&self, stored: &str) -> bool {
        let d = self.digest();
        d.len() == stored.len() && bool::from(d.as_bytes().ct_eq(stored.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> UserClaims {
        UserClaims {
            iss: "gw".into(),
            sub: "usr-1".into(),
            app: "shop".into(),
            cid: "cus-1".into(),
            sid: "ses-1".into(),
            exp,
            iat: exp - 900,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_token_decodes_with_its_key_and_issuer_only() {
        let now = crate::store::now_ms() / 1000;
        let key = [7u8; 32];
        let t = sign(&key, &claims(now + 900)).unwrap();
        assert_eq!(decode(&key, "gw", &t, now).unwrap(), claims(now + 900));
        assert_eq!(decode(&[8u8; 32], "gw", &t, now), Err(TokenError::Invalid));
        assert_eq!(decode(&key, "other", &t, now), Err(TokenError::Invalid));
        assert_eq!(decode(&key, "gw", &t, now + 900), Err(TokenError::Invalid));
        let expired = sign(&key, &claims(now - 10)).unwrap();
        assert_eq!(decode(&key, "gw", &expired, now), Err(TokenError::Invalid));
        assert_eq!(decode(&key, "gw", "a.b.c", now), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_round_trip_and_compare() {
        let r = Refresh::new("ses-1", 3).unwrap();
        let p = Refresh::parse(&r.text()).unwrap();
        assert_eq!(p, r);
        assert!(p.matches(&r.digest()));
        assert!(!Refresh::new("ses-1", 3).unwrap().matches(&r.digest()));
        assert!(Refresh::parse("rt.ses-1.x.abc").is_none());
        assert!(Refresh::parse("nope").is_none());
    }
}
