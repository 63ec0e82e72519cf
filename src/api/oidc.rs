//! Access tokens of an external OpenID Connect provider (`[oidc]`), as CAMARA deployments
//! issue them: a JWS verified against the provider's JSON Web Key Set.
//!
//! ```text
//! Bearer h.p.s  -> iss (unverified) == oidc.issuer ?  no: not ours (the next verifier)
//!               -> length <= max_token_bytes, header alg in oidc.algorithms (never none, HS*),
//!                  no `crit`; jku / x5u / jwk of the header are never followed
//!               -> the key: kid in the cached JWKS; unknown kid -> the JWKS fetched again
//!                  (at most once per refetch_interval); keys older than jwks_refresh are
//!                  fetched again; a failed fetch keeps the keys in hand
//!               -> signature, exp (required) and nbf within leeway, iss exact, aud one of
//!                  oidc.audience
//!               -> the application: the first of app_claims present (azp, client_id) ==
//!                  [[apps]] oidc_client_id
//!               -> phone_claim present: three-legged, bound to that MSISDN (E.164); `sub`
//!                  is never read as an MSISDN
//! ```
//!
//! The key cache is per process and only a cache: every instance fetches the same public
//! keys; nothing about ownership or money is decided here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::auth::{Apps, Subject, SubjectSource, TokenVerifier, Verdict, VerdictFuture};
use crate::config::oidc::OidcConfig;

/// Most keys taken from one key set.
pub const MAX_KEYS: usize = 64;

/// The kind of a public key, and what it may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kty {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kty {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key of the set.
struct Key {
    kid: Option<String>,
    kty: Kty,
    /// The JWK's `alg`, when it names one: the key verifies that algorithm only.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Cache {
    keys: Arc<Vec<Key>>,
    /// When the keys in hand were fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried (successful or not).
    attempted: Option<Instant>,
    /// The discovery document's `jwks_uri`, once read.
    jwks_uri: Option<String>,
}

/// The `[oidc]` token verifier.
pub struct OidcVerifier {
    cfg: OidcConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    /// One fetch at a time: concurrent requests with an unknown kid wait for the same fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.cfg.issuer)
            .finish()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `^\+[1-9][0-9]{4,14}$` (E.164, as CAMARA's `PhoneNumber`).
fn e164(s: &str) -> bool {
    let Some(d) = s.strip_prefix('+') else {
        return false;
    };
    (5..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(v.get(field)?.as_str()?.trim_end_matches('='))
        .ok()
}

/// One JWK of the set as a verification key, or None for one this gateway does not use
/// (an encryption key, a symmetric key, an unknown type, a malformed or weak one).
fn key_of(jwk: &Value) -> Option<Key> {
    let text = |f: &str| jwk.get(f).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    let alg = match text("alg") {
        None => None,
        Some(a) => Some(a.parse::<Algorithm>().ok()?),
    };
    let (kty, key) = match (text("kty")?, text("crv")) {
        ("RSA", _) => {
            let n = b64(jwk, "n")?;
            let e = b64(jwk, "e")?;
            // 2048 to 8192 bits; a small public exponent.
            let n = {
                let first = n.iter().position(|b| *b != 0)?;
                n.get(first..)?.to_vec()
            };
            if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                return None;
            }
            (Kty::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kty, len) = if crv == "P-256" {
                (Kty::P256, 32)
            } else {
                (Kty::P384, 48)
            };
            let (x, y) = (b64(jwk, "x")?, b64(jwk, "y")?);
            if x.len() != len || y.len() != len {
                return None;
            }
            (
                kty,
                DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
            )
        }
        ("OKP", Some("Ed25519")) => {
            // The verifier slices 32 bytes out of the key: exactly 32, or no key.
            if b64(jwk, "x")?.len() != 32 {
                return None;
            }
            (
                Kty::Ed25519,
                DecodingKey::from_ed_components(text("x")?).ok()?,
            )
        }
        // `oct` (HMAC) keys are never taken from a key set, nor any other type.
        _ => return None,
    };
    if alg.is_some_and(|a| !kty.fits(a)) {
        return None;
    }
    Some(Key {
        kid: text("kid").map(str::to_string),
        kty,
        alg,
        key,
    })
}

/// The verification keys of a JWKS document.
fn keys_of(doc: &Value) -> Result<Vec<Key>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the key set has no \"keys\" array")?;
    Ok(keys.iter().filter_map(key_of).take(MAX_KEYS).collect())
}

/// Why jsonwebtoken refused a token, for the 401's message.
fn reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        K::InvalidIssuer => "wrong issuer (iss)".into(),
        K::InvalidAudience => "the token is not for this gateway (aud)".into(),
        K::InvalidSignature => "the signature does not verify".into(),
        K::InvalidAlgorithm => "the algorithm does not fit the key".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        K::InvalidClaimFormat(c) => format!("the {c} claim is malformed"),
        _ => "malformed token".into(),
    }
}

impl OidcVerifier {
    /// From a valid, enabled `[oidc]` section.
    pub fn new(cfg: &OidcConfig) -> Result<Self, String> {
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|e| format!("oidc.algorithms: {a}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(cfg.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("oidc: HTTP client: {e}"))?;
        Ok(Self {
            cfg: cfg.clone(),
            algorithms,
            http,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET `url`, at most `max_jwks_bytes`, as JSON.
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut res = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{url}: HTTP {}", res.status()));
        }
        let max = self.cfg.max_jwks_bytes;
        if res.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("{url}: larger than oidc.max_jwks_bytes ({max})"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > max {
                return Err(format!("{url}: larger than oidc.max_jwks_bytes ({max})"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The key set's URL: `jwks_url`, or the discovery document's `jwks_uri`.
    async fn jwks_url(&self) -> Result<String, String> {
        if !self.cfg.jwks_url.is_empty() {
            return Ok(self.cfg.jwks_url.clone());
        }
        if let Some(u) = self.cache().jwks_uri.clone() {
            return Ok(u);
        }
        let doc = self.get_json(&self.cfg.discovery_url()).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err("the discovery document's issuer is not oidc.issuer".into());
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no jwks_uri")?
            .to_string();
        let parsed = url::Url::parse(&uri).map_err(|e| format!("jwks_uri: {e}"))?;
        if parsed.scheme() != "https" && !self.cfg.issuer.starts_with("http://") {
            return Err("jwks_uri must be https".into());
        }
        self.cache().jwks_uri = Some(uri.clone());
        Ok(uri)
    }

    /// Fetches the key set again, unless another request just did (`min_age`: the keys in
    /// hand are kept when fetched or tried more recently than that).
    async fn refresh(&self, min_age: Duration) {
        let _one = self.fetching.lock().await;
        if self
            .cache()
            .attempted
            .is_some_and(|t| t.elapsed() < min_age)
        {
            return;
        }
        self.cache().attempted = Some(Instant::now());
        let got = match self.jwks_url().await {
            Ok(url) => self.get_json(&url).await.and_then(|doc| keys_of(&doc)),
            Err(e) => Err(e),
        };
        match got {
            Ok(keys) => {
                tracing::info!(issuer = %self.cfg.issuer, keys = keys.len(), "oidc: key set fetched");
                let mut c = self.cache();
                c.keys = Arc::new(keys);
                c.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "oidc: key set not fetched; the keys in hand are kept");
            }
        }
    }

    /// The keys in hand, fetched first when none were ever fetched or they are older than
    /// `jwks_refresh`.
    async fn keys(&self) -> Arc<Vec<Key>> {
        let stale = self
            .cache()
            .fetched
            .is_none_or(|t| t.elapsed() >= self.cfg.jwks_refresh);
        if stale {
            self.refresh(self.cfg.refetch_interval.min(self.cfg.jwks_refresh))
                .await;
        }
        Arc::clone(&self.cache().keys)
    }

    /// The one key that may verify a token of `alg` with `kid`.
    fn pick(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Result<Option<usize>, String> {
        let fits = |k: &Key| k.kty.fits(alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => Ok(keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid) && fits(k))),
            None => {
                let mut it = keys.iter().enumerate().filter(|(_, k)| fits(k));
                match (it.next(), it.next()) {
                    (Some((i, _)), None) => Ok(Some(i)),
                    (None, _) => Ok(None),
                    (Some(_), Some(_)) => {
                        Err("the token names no key (kid) and the key set has several".into())
                    }
                }
            }
        }
    }

    /// Verifies one of this issuer's tokens: who acts, or why not.
    async fn check(&self, token: &str, apps: &Apps) -> Result<Subject, String> {
        if token.len() > self.cfg.max_token_bytes {
            return Err(format!(
                "longer than {} bytes (oidc.max_token_bytes)",
                self.cfg.max_token_bytes
            ));
        }
        let header = decode_header(token).map_err(|_| {
            "malformed token header (or an algorithm that is never accepted, such as none)"
                .to_string()
        })?;
        if header.crit.is_some() {
            return Err(
                "the header has critical extensions (crit), none of which are known".into(),
            );
        }
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(format!(
                "algorithm {alg:?} is not accepted (oidc.algorithms)"
            ));
        }
        let kid = header.kid.as_deref();
        let mut keys = self.keys().await;
        let mut found = Self::pick(&keys, kid, alg)?;
        if found.is_none() {
            // A rotation: the provider signs with a key published after the last fetch.
            self.refresh(self.cfg.refetch_interval).await;
            keys = Arc::clone(&self.cache().keys);
            found = Self::pick(&keys, kid, alg)?;
        }
        let Some(i) = found else {
            return Err(match kid {
                Some(k) => format!("no key \"{}\" in the provider's key set", clip(k)),
                None => "no key of the provider's key set fits the token".into(),
            });
        };
        let key = &keys.get(i).ok_or("no key")?.key;
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&self.cfg.audience);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decode::<Map<String, Value>>(token, key, &v)
        }))
        .map_err(|_| "malformed token".to_string())?
        .map_err(|e| reason(&e))?;
        let claims = decoded.claims;
        // exp and nbf again, as numbers (a claim of another type is refused, not ignored).
        let now = now_s();
        let leeway = self.cfg.leeway.as_secs();
        let number = |c: &str| claims.get(c).map(|v| v.as_f64().map(|f| f.floor() as u64));
        match number("exp") {
            Some(Some(exp)) if exp.saturating_add(leeway) > now => {}
            Some(Some(_)) => return Err("the token has expired".into()),
            _ => return Err("the exp claim is malformed".into()),
        }
        match number("nbf") {
            None => {}
            Some(Some(nbf)) if nbf <= now.saturating_add(leeway) => {}
            Some(Some(_)) => return Err("the token is not valid yet (nbf)".into()),
            Some(None) => return Err("the nbf claim is malformed".into()),
        }
        let client = self
            .cfg
            .app_claims
            .iter()
            .find_map(|c| claims.get(c))
            .ok_or_else(|| {
                format!(
                    "the token names no client ({})",
                    self.cfg.app_claims.join(", ")
                )
            })?
            .as_str()
            .ok_or("the client claim is not a string")?;
        let app = apps.by_oidc_client(client).ok_or_else(|| {
            format!(
                "client \"{}\" is no application of this gateway (oidc_client_id)",
                clip(client)
            )
        })?;
        let phone_number = match claims.get(&self.cfg.phone_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if e164(p) => Some(p.clone()),
            Some(_) => {
                return Err(format!(
                    "the {} claim is not an E.164 phone number",
                    self.cfg.phone_claim
                ));
            }
        };
        Ok(Subject {
            app,
            customer: None,
            phone_number,
            source: SubjectSource::ExternalToken,
        })
    }
}

/// A value of the token, cut for a message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

impl TokenVerifier for OidcVerifier {
    fn verify<'a>(&'a self, token: &'a str, apps: &'a Apps) -> VerdictFuture<'a> {
        Box::pin(async move {
            if super::auth::unverified_issuer(token).as_deref() != Some(self.cfg.issuer.as_str()) {
                return Verdict::NotMine;
            }
            match self.check(token, apps).await {
                Ok(s) => Verdict::Accepted(s),
                Err(why) => {
                    tracing::info!(issuer = %self.cfg.issuer, reason = %why, "oidc: token refused");
                    Verdict::Refused(why)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISS: &str = "http://127.0.0.1/idp";

    struct Signer {
        kid: String,
        alg: Algorithm,
        enc: EncodingKey,
        jwk: Value,
    }

    fn b64u(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn es256(kid: &str) -> Signer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        Signer {
            kid: kid.into(),
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": b64u(&raw[1..33]), "y": b64u(&raw[33..65])}),
        }
    }

    fn ed25519(kid: &str) -> Signer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Signer {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_der(&kp.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(kp.public_key_raw())}),
        }
    }

    fn sign(s: &Signer, claims: &Value) -> String {
        let mut h = Header::new(s.alg);
        h.kid = Some(s.kid.clone());
        encode(&h, claims, &s.enc).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": ISS, "aud": "gw", "azp": "client-shop", "sub": "opaque-1",
            "exp": now_s() + 300, "iat": now_s()});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn apps() -> Apps {
        Apps::new(&[AppConfig {
            id: "shop".into(),
            username: String::new(),
            password: String::new(),
            password_sha256: String::new(),
            api_key: "k-shop".into(),
            allowed_currencies: vec![],
            max_amount: None,
            allowed_operations: vec![],
            admin: false,
            oidc_client_id: "client-shop".into(),
        }])
    }

    /// A JWKS served on 127.0.0.1 (what it serves can be replaced), counting its fetches.
    async fn jwks(set: Value) -> (String, Arc<Mutex<Value>>, Arc<AtomicUsize>) {
        let doc = Arc::new(Mutex::new(set));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (Arc::clone(&doc), Arc::clone(&hits));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (d, h) = (Arc::clone(&d), Arc::clone(&h));
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::Json(d.lock().unwrap().clone())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, doc, hits)
    }

    fn verifier(url: &str, refetch: Duration) -> OidcVerifier {
        let cfg = OidcConfig {
            issuer: ISS.into(),
            jwks_url: url.into(),
            audience: vec!["gw".into(), "other".into()],
            refetch_interval: refetch,
            ..OidcConfig::default()
        };
        cfg.validate().unwrap();
        OidcVerifier::new(&cfg).unwrap()
    }

    async fn verdict(v: &OidcVerifier, token: &str) -> Result<Subject, String> {
        match v.verify(token, &apps()).await {
            Verdict::Accepted(s) => Ok(s),
            Verdict::Refused(w) => Err(w),
            Verdict::NotMine => Err("not mine".into()),
        }
    }

    #[tokio::test]
    async fn tokens_verified_against_the_key_set() {
        let (a, b) = (es256("k1"), ed25519("k2"));
        let (url, _, _) = jwks(json!({"keys": [a.jwk, b.jwk]})).await;
        let v = verifier(&url, Duration::from_secs(3600));
        // Valid: two-legged (no phone claim), and three-legged with the MSISDN claim.
        let s = verdict(&v, &sign(&a, &claims(json!({})))).await.unwrap();
        assert_eq!(s.app.id(), "shop");
        assert_eq!(s.source, SubjectSource::ExternalToken);
        assert!(!s.is_three_legged());
        let s = verdict(
            &v,
            &sign(
                &b,
                &claims(json!({"phone_number": "+34600000001", "aud": ["x", "other"]})),
            ),
        )
        .await
        .unwrap();
        assert_eq!(s.phone_number.as_deref(), Some("+34600000001"));
        // `client_id` when there is no `azp`.
        let mut c = claims(json!({"client_id": "client-shop"}));
        c.as_object_mut().unwrap().remove("azp");
        assert!(verdict(&v, &sign(&a, &c)).await.is_ok());
        // Within the leeway (60 s) an expired token is still taken; beyond, not.
        assert!(
            verdict(&v, &sign(&a, &claims(json!({"exp": now_s() - 30}))))
                .await
                .is_ok()
        );
        let refused = |c: Value| {
            let t = sign(&a, &claims(c));
            let v = &v;
            async move { verdict(v, &t).await.unwrap_err() }
        };
        assert!(
            refused(json!({"exp": now_s() - 120}))
                .await
                .contains("expired")
        );
        assert!(refused(json!({"nbf": now_s() + 120})).await.contains("nbf"));
        assert!(refused(json!({"exp": "tomorrow"})).await.contains("exp"));
        assert!(
            refused(json!({"aud": "someone-else"}))
                .await
                .contains("aud")
        );
        assert!(
            refused(json!({"azp": "client-unknown"}))
                .await
                .contains("client")
        );
        assert!(
            refused(json!({"phone_number": "0600"}))
                .await
                .contains("E.164")
        );
        assert!(
            refused(json!({"phone_number": 34600000001u64}))
                .await
                .contains("E.164")
        );
        let mut no_exp = claims(json!({}));
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(verdict(&v, &sign(&a, &no_exp)).await.is_err());
        // Another issuer: not this verifier's token.
        let other = sign(&a, &claims(json!({"iss": "https://elsewhere"})));
        assert!(matches!(v.verify(&other, &apps()).await, Verdict::NotMine));
        // A tampered payload or signature.
        let t = sign(&a, &claims(json!({})));
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let forged = b64u(
            claims(json!({"azp": "client-shop", "phone_number": "+34999999999"}))
                .to_string()
                .as_bytes(),
        );
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert!(
            verdict(&v, &tampered)
                .await
                .unwrap_err()
                .contains("signature")
        );
        parts[2] = b64u(&[7u8; 64]);
        assert!(
            verdict(&v, &parts.join("."))
                .await
                .unwrap_err()
                .contains("signature")
        );
        // alg none, and HS256 with the public key's bytes as the secret (key confusion).
        let none_header = b64u(br#"{"alg":"none","kid":"k1"}"#);
        let body = b64u(claims(json!({})).to_string().as_bytes());
        assert!(
            verdict(&v, &format!("{none_header}.{body}."))
                .await
                .is_err()
        );
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let secret = serde_json::to_vec(&a.jwk).unwrap();
        let hs = encode(
            &h,
            &claims(json!({})),
            &EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert!(verdict(&v, &hs).await.unwrap_err().contains("not accepted"));
        // A key id nobody published.
        let c = es256("k9");
        assert!(
            verdict(&v, &sign(&c, &claims(json!({}))))
                .await
                .unwrap_err()
                .contains("k9")
        );
        // Too long.
        let long = sign(&a, &claims(json!({"pad": "x".repeat(9000)})));
        assert!(verdict(&v, &long).await.unwrap_err().contains("longer"));
    }

    #[tokio::test]
    async fn a_rotation_is_picked_up_and_refetches_are_bounded() {
        let (old, new) = (es256("old"), es256("new"));
        let (url, doc, hits) = jwks(json!({"keys": [old.jwk]})).await;
        // Unknown kids refetch at most once per hour here: after the first fetch, none.
        let slow = verifier(&url, Duration::from_secs(3600));
        assert!(
            verdict(&slow, &sign(&old, &claims(json!({}))))
                .await
                .is_ok()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        for _ in 0..5 {
            assert!(
                verdict(&slow, &sign(&new, &claims(json!({}))))
                    .await
                    .is_err()
            );
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "made-up kids do not flood the provider"
        );
        // The provider rotates: the new key is served, the old one removed.
        *doc.lock().unwrap() = json!({"keys": [new.jwk]});
        let quick = verifier(&url, Duration::from_millis(1));
        assert!(
            verdict(&quick, &sign(&new, &claims(json!({}))))
                .await
                .is_ok()
        );
        let fetched = hits.load(Ordering::SeqCst);
        // The old key is gone from the set: its tokens are refused.
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            verdict(&quick, &sign(&old, &claims(json!({}))))
                .await
                .is_err()
        );
        assert!(
            hits.load(Ordering::SeqCst) > fetched,
            "the unknown kid fetched again"
        );
    }

    #[test]
    fn unusable_keys_are_left_out_without_panic() {
        let short = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        let enc = json!({"kty": "OKP", "crv": "Ed25519", "use": "enc", "x": b64u(&[1u8; 32])});
        let weak_rsa = json!({"kty": "RSA", "n": b64u(&[0xff; 64]), "e": "AQAB"});
        let ec_bad = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        let wrong_alg =
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "ES256", "x": b64u(&[1u8; 32])});
        let junk = json!({"kty": 5});
        let doc = json!({"keys": [short, oct, enc, weak_rsa, ec_bad, wrong_alg, junk, "x", null]});
        assert!(keys_of(&doc).unwrap().is_empty());
        assert!(keys_of(&json!({"nokeys": []})).is_err());
        let ok =
            json!({"keys": [{"kty": "RSA", "n": b64u(&[0xc5; 256]), "e": "AQAB", "kid": "r"}]});
        let keys = keys_of(&ok).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].kty.fits(Algorithm::RS256) && !keys[0].kty.fits(Algorithm::ES256));
        assert!(e164("+34600000001") && !e164("34600000001") && !e164("+0123456") && !e164("+12"));
    }
}
