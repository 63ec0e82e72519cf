//! What a notification URL may reach: `https` (or `http` when allowed), and addresses that are
//! public unicast ones or inside `notifications.allowed_networks`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

use crate::config::notifications::NotificationsConfig;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// The destination policy (cheap to clone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destinations {
    allow_http: bool,
    allowed: Vec<IpNet>,
}

/// Why a URL is refused, in words for the API consumer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DestinationError(pub String);

fn refuse(s: impl Into<String>) -> DestinationError {
    DestinationError(s.into())
}

impl From<&NotificationsConfig> for Destinations {
    fn from(c: &NotificationsConfig) -> Self {
        Self {
            allow_http: c.allow_http,
            allowed: c.allowed_networks.clone(),
        }
    }
}

impl Destinations {
    /// `https` only, public addresses only (the default policy).
    pub fn public_https() -> Self {
        Self::default()
    }

    /// A policy that also accepts `http` and the given networks (tests: loopback).
    pub fn new(allow_http: bool, allowed: Vec<IpNet>) -> Self {
        Self {
            allow_http,
            allowed,
        }
    }

    /// The URL's form: absolute, `https` (or `http` when allowed), a host, no user
    /// information, no fragment, at most [`MAX_URL_LEN`] characters. An address literal is
    /// checked here too; a name is checked by [`Destinations::check`].
    pub fn parse(&self, url: &str) -> Result<Url, DestinationError> {
        if url.len() > MAX_URL_LEN {
            return Err(refuse(format!("longer than {MAX_URL_LEN} characters")));
        }
        let u = Url::parse(url).map_err(|e| refuse(format!("not an absolute URL ({e})")))?;
        match u.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(refuse(
                    "http is not accepted: use an https URL (the notification carries your \
                     token)",
                ));
            }
            other => return Err(refuse(format!("scheme {other}: use an https URL"))),
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(refuse(
                "user information in the URL is not accepted (give the token as a credential)",
            ));
        }
        if u.fragment().is_some() {
            return Err(refuse("a fragment (#...) is not accepted"));
        }
        match u.host() {
            None => return Err(refuse("the URL names no host")),
            Some(Host::Ipv4(a)) => self.address(IpAddr::V4(a))?,
            Some(Host::Ipv6(a)) => self.address(IpAddr::V6(a))?,
            Some(Host::Domain(_)) => {}
        }
        Ok(u)
    }

    /// [`Destinations::parse`], then every address the host name resolves to (within
    /// `timeout`) must be allowed: a name that resolves to nothing, or to one refused
    /// address, is refused.
    pub async fn check(&self, url: &str, timeout: Duration) -> Result<Url, DestinationError> {
        let u = self.parse(url)?;
        if let Some(Host::Domain(name)) = u.host() {
            let port = u.port_or_known_default().unwrap_or(443);
            let addrs = tokio::time::timeout(timeout, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| refuse(format!("the name {name} did not resolve in time")))?
                .map_err(|e| refuse(format!("the name {name} does not resolve ({e})")))?;
            let mut any = false;
            for a in addrs {
                any = true;
                self.address(a.ip())?;
            }
            if !any {
                return Err(refuse(format!("the name {name} resolves to no address")));
            }
        }
        Ok(u)
    }

    /// Whether `ip` may be reached: inside an allowed network, or a public unicast address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }

    fn address(&self, ip: IpAddr) -> Result<(), DestinationError> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(refuse(format!(
                "the address {ip} is not a public one and not in notifications.allowed_networks"
            )))
        }
    }
}

/// `url` as it may be shown (admin endpoints, errors): the values of query parameters that
/// look like credentials (`apikey`, `token`, `access_token`, `secret`, `password`, `sig`, ...)
/// replaced by `***`. A URL that does not parse loses its whole query.
pub fn redact_url(url: &str) -> String {
    let secret = |name: &str| {
        let n = name.to_ascii_lowercase();
        [
            "key",
            "token",
            "secret",
            "password",
            "passwd",
            "auth",
            "sig",
            "credential",
        ]
        .iter()
        .any(|s| n.contains(s))
    };
    match Url::parse(url) {
        Ok(mut u) => {
            if u.query().is_none() {
                return u.to_string();
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secret(&k) {
                        "***".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
            u.to_string()
        }
        Err(_) => url.split('?').next().unwrap_or_default().to_string(),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A globally routable unicast address (RFC 6890 special-purpose ranges excluded).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => public_v4(a),
        IpAddr::V6(a) => public_v6(a),
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || b0 == 0 // "this network"
        || (b0 == 100 && (64..128).contains(&b1)) // shared address space (CGNAT)
        || (b0 == 192 && b1 == 0 && b2 == 0) // IETF protocol assignments
        || (b0 == 198 && (b1 == 18 || b1 == 19)) // benchmarking
        || b0 >= 240) // reserved
}

fn public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let first = s.first().copied().unwrap_or(0);
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && s.get(1).copied().unwrap_or(0) == 0x0db8) // documentation
        || (first == 0x0064 && s.get(1).copied().unwrap_or(0) == 0xff9b) // NAT64
        || (first == 0x2002) // 6to4: wraps an IPv4 address of any kind
        || s.iter().take(6).all(|x| *x == 0)) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Destinations {
        Destinations::new(true, vec!["127.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn default_policy_takes_public_https_only() {
        let d = Destinations::public_https();
        assert!(
            d.parse("https://203.0.113.9/x").is_err(),
            "documentation range"
        );
        assert!(d.parse("https://8.8.8.8/hook").is_ok());
        assert!(d.parse("https://[2a00:1450:4001::1]/hook").is_ok());
        for bad in [
            "http://8.8.8.8/hook",
            "ftp://8.8.8.8/x",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://user:pw@8.8.8.8/x",
            "https://8.8.8.8/x#frag",
            "/relative",
            "https://",
        ] {
            assert!(d.parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!("https://8.8.8.8/{}", "a".repeat(MAX_URL_LEN));
        assert!(d.parse(&long).is_err());
    }

    #[test]
    fn credentials_in_a_query_are_not_shown() {
        assert_eq!(
            redact_url("https://shop.example/cb/notifications?apikey=s3cr3t&lang=es"),
            "https://shop.example/cb/notifications?apikey=***&lang=es"
        );
        assert_eq!(
            redact_url("https://shop.example/cb?access_token=a&X-Sig=b"),
            "https://shop.example/cb?access_token=***&X-Sig=***"
        );
        assert_eq!(
            redact_url("https://shop.example/cb"),
            "https://shop.example/cb"
        );
        assert_eq!(redact_url("not a url?apikey=x"), "not a url");
    }

    #[test]
    fn allowed_networks_open_what_they_name() {
        let d = loopback();
        assert!(d.parse("http://127.0.0.1:8080/hook").is_ok());
        assert!(d.parse("http://[::ffff:127.0.0.1]:8080/hook").is_ok());
        assert!(d.parse("http://10.0.0.1/hook").is_err());
        assert!(d.allows("127.0.0.1".parse().unwrap()));
        assert!(!d.allows("::1".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let d = Destinations::new(true, Vec::new());
        let e = d
            .check("http://localhost:9/hook", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.0.contains("not a public one"), "{e}");
        assert!(
            loopback()
                .check("http://127.0.0.1:9/hook", Duration::from_secs(5))
                .await
                .is_ok()
        );
        let e = d
            .check("https://no-such-host.invalid/hook", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.0.contains("does not resolve"), "{e}");
    }
}
