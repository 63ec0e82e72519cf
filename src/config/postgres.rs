//! `store.url` for the PostgreSQL store: the connection parameters, and how the connection is
//! secured (libpq's `sslmode` and `sslrootcert`, which the client library does not read; the
//! store does TLS with rustls).
//!
//! ```text
//! sslmode       sslrootcert absent          sslrootcert=<file> / system
//! disable       plain TCP                   refused (nothing would be verified)
//! prefer (dft)  TLS if the server offers    verify-full: TLS required, never plain
//!               it, certificate unchecked;
//!               else plain
//! require       TLS, certificate unchecked  verify-ca (libpq's rule)
//! verify-ca     TLS, chain to the system    TLS, chain to the file's CAs
//!               roots
//! verify-full   verify-ca + host name       verify-ca + host name
//! ```

use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{ConfigError, bad};

/// How the store's connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTls {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// TLS when the server offers it, with any certificate (against passive eavesdropping
    /// only); plain when it does not.
    Prefer,
    /// TLS, with any certificate.
    Require,
    /// TLS, with a certificate that chains to a trusted root; any host name.
    VerifyCa,
    /// TLS, with a certificate that chains to a trusted root and names the host connected to.
    VerifyFull,
}

impl PgTls {
    /// The `sslmode` word.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The trust roots of a verified connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgRoots {
    /// The operating system's store (`sslrootcert=system`, or none given).
    System,
    /// The CA certificates of `sslrootcert=<file>` (PEM), read when the configuration is.
    File {
        path: PathBuf,
        certificates: Vec<CertificateDer<'static>>,
    },
}

/// `store.url` as the store connects with it.
#[derive(Clone, Debug)]
pub struct PostgresTarget {
    /// The connection parameters, without `sslmode` and `sslrootcert`; its own `ssl_mode` is
    /// what the client library does with the TLS connector it is given.
    pub config: tokio_postgres::Config,
    /// The effective mode (after the rules of the table in this module's documentation).
    pub tls: PgTls,
    /// Used by `verify-ca` and `verify-full`.
    pub roots: PgRoots,
}

/// Parses `url` (`store.url`).
pub fn target(url: &str) -> Result<PostgresTarget, ConfigError> {
    let key = "store.url";
    if url.trim().is_empty() {
        return Err(bad(
            key,
            "store.backend \"postgres\" needs a connection URL, e.g. \
             postgresql://gateway:password@127.0.0.1:5432/gateway",
        ));
    }
    let (rest, sslmode, rootcert) = split_tls(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The client's error says "invalid connection string"; its source, why.
        let why = std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
        bad(
            key,
            format!("not a PostgreSQL connection string ({e}{why})"),
        )
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(bad(
            key,
            "names no host (host name, address or socket directory)",
        ));
    }
    let asked = match sslmode.as_deref() {
        None | Some("prefer") => PgTls::Prefer,
        Some("disable") => PgTls::Disable,
        Some("require") => PgTls::Require,
        Some("verify-ca") => PgTls::VerifyCa,
        Some("verify-full") => PgTls::VerifyFull,
        Some(other) => {
            return Err(bad(
                key,
                format!(
                    "sslmode {other:?}: one of disable, prefer, require, verify-ca, verify-full"
                ),
            ));
        }
    };
    let roots = match rootcert.as_deref() {
        None | Some("system") => PgRoots::System,
        Some(path) => PgRoots::File {
            path: PathBuf::from(path),
            certificates: certificates(path).map_err(|why| bad(key, why))?,
        },
    };
    let file = matches!(roots, PgRoots::File { .. });
    let tls = match (asked, file) {
        (PgTls::Disable, true) => {
            return Err(bad(
                key,
                "sslrootcert is set but sslmode=disable: nothing would be verified; use \
                 sslmode=verify-full",
            ));
        }
        // A root certificate given: never plain, never unchecked.
        (PgTls::Prefer, true) => PgTls::VerifyFull,
        (PgTls::Require, true) => PgTls::VerifyCa,
        (mode, _) => mode,
    };
    config.ssl_mode(match tls {
        PgTls::Disable => tokio_postgres::config::SslMode::Disable,
        PgTls::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    Ok(PostgresTarget { config, tls, roots })
}

/// The CA certificates of a PEM file, or why there are none.
fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: cannot read: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {path}: not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "sslrootcert {path}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks)"
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certificates.iter().cloned());
    if added == 0 {
        return Err(format!(
            "sslrootcert {path}: none of its {ignored} certificates is a usable CA certificate"
        ));
    }
    Ok(certificates)
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their values. Either form:
/// a URL (`postgresql://...?sslmode=verify-full&sslrootcert=/etc/ca.pem`, values
/// percent-decoded) or libpq's `key=value` pairs (values possibly single-quoted, with
/// backslash escapes). What this does not read is left for the client library to refuse.
fn split_tls(url: &str) -> (String, Option<String>, Option<String>) {
    let mut sslmode = None;
    let mut rootcert = None;
    let mut take = |k: &str, v: String| match k {
        "sslmode" => {
            sslmode = Some(v);
            true
        }
        "sslrootcert" => {
            rootcert = Some(v);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
                        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        !take(&k, v.into_owned())
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        let mut rest = String::with_capacity(url.len());
        for (k, v, raw) in pairs(url) {
            if !take(k, v) {
                rest.push_str(raw);
                rest.push(' ');
            }
        }
        rest
    };
    (rest, sslmode, rootcert)
}

/// libpq's `key = value` pairs: the key, the value unquoted, and the pair as written. Stops
/// at anything else (the client library then reads and refuses the rest).
fn pairs(s: &str) -> Vec<(&str, String, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let start = rest.trim_start();
        if start.is_empty() {
            return out;
        }
        let Some(eq) = start.find('=') else {
            // Not a pair: kept as written.
            out.push(("", String::new(), start));
            return out;
        };
        let key = start[..eq].trim_end();
        let after = start[eq + 1..].trim_start();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = if after.starts_with('\'') {
            chars.next();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            end
        } else {
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    c if c.is_whitespace() => {
                        end = i;
                        break;
                    }
                    c => value.push(c),
                }
            }
            end
        };
        let consumed = start.len() - after.len() + end;
        out.push((key, value, &start[..consumed]));
        rest = &start[consumed..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_either_form() {
        let (rest, mode, root) =
            split_tls("postgresql://gw@db:5432/g?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(rest, "postgresql://gw@db:5432/g");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));
        let (rest, mode, root) =
            split_tls("postgresql://gw@db/g?connect_timeout=3&sslmode=require&user=x");
        assert_eq!(rest, "postgresql://gw@db/g?connect_timeout=3&user=x");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);
        let (rest, mode, root) = split_tls(
            "host=db dbname=g sslmode = verify-ca sslrootcert='/etc/my ca\\'s.pem' user=gw",
        );
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>(),
            ["host=db", "dbname=g", "user=gw"]
        );
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/etc/my ca's.pem"));
        // Nothing to take: the string as it was (the client reads it).
        assert_eq!(split_tls("host=db").0.trim(), "host=db");
        assert_eq!(split_tls("postgresql://db/g").0, "postgresql://db/g");
    }

    #[test]
    fn sslmode_and_sslrootcert_give_the_effective_mode() {
        let dir = std::env::temp_dir().join(format!("cgw-pgtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["db.example".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let ca = ca.display().to_string();
        let mode = |url: &str| target(url).map(|t| (t.tls, t.roots));
        let base = "postgresql://gw@db.example/g";
        assert_eq!(
            mode(base).unwrap(),
            (PgTls::Prefer, PgRoots::System),
            "libpq's default"
        );
        for (query, want) in [
            ("sslmode=disable", PgTls::Disable),
            ("sslmode=prefer", PgTls::Prefer),
            ("sslmode=require", PgTls::Require),
            ("sslmode=verify-ca", PgTls::VerifyCa),
            ("sslmode=verify-full", PgTls::VerifyFull),
            ("sslmode=verify-full&sslrootcert=system", PgTls::VerifyFull),
        ] {
            let (tls, roots) = mode(&format!("{base}?{query}")).unwrap();
            assert_eq!((tls, roots), (want, PgRoots::System), "{query}");
        }
        // A root certificate given: never plain, never unchecked.
        for (sslmode, want) in [
            ("prefer", PgTls::VerifyFull),
            ("require", PgTls::VerifyCa),
            ("verify-ca", PgTls::VerifyCa),
            ("verify-full", PgTls::VerifyFull),
        ] {
            let t = target(&format!("{base}?sslmode={sslmode}&sslrootcert={ca}")).unwrap();
            assert_eq!(t.tls, want, "{sslmode}");
            assert!(
                matches!(&t.roots, PgRoots::File { certificates, .. } if certificates.len() == 1)
            );
            assert_eq!(
                t.config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        }
        for (url, why) in [
            (format!("{base}?sslmode=verify"), "one of disable, prefer"),
            (
                format!("{base}?sslmode=disable&sslrootcert={ca}"),
                "nothing would be verified",
            ),
            (
                format!("{base}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
                "sslrootcert /nonexistent/ca.pem: cannot read",
            ),
            (
                format!("{base}?sslmode=verify-full&sslrootcert={}", dir.display()),
                "cannot read",
            ),
        ] {
            let e = target(&url).expect_err(&url);
            assert_eq!(e.key, "store.url");
            assert!(e.reason.contains(why), "{url}: {e}");
        }
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = target(&format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            junk.display()
        ))
        .unwrap_err();
        assert!(e.reason.contains("no certificate in it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
