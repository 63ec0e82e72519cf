//! `[catalog]`: the TMF620 product catalog the gateway serves (read side), loaded from a JSON
//! file into the store (`src/api/tmf620/`).
//!
//! ```toml
//! [catalog]
//! file = "conf/catalog/demo.json"   # imported at `serve` start when its SHA-256 differs from
//!                                   # the one recorded with the last import
//! reload_interval = "1m"            # optional: re-read the file this often (default: never)
//! # or, instead of file, mirror another TMF620 server:
//! # upstream = "https://catalog.example/tmf-api/productCatalogManagement/v4"
//! # upstream_token = ""             # Authorization: Bearer <token> ("": none)
//! # upstream_timeout = "30s"        # each request
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[catalog]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// A JSON array of TMF620 resources (`gateway catalog import` validates the same way).
    /// Imported at start (replacing the catalog) when its content hash is not the one
    /// recorded with the last import. Unset: the catalog is what was last imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Re-read `file` (or `upstream`) this often and import it when it changed (an invalid
    /// catalog or an unreachable upstream is logged and the catalog kept). Unset: only at
    /// start.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub reload_interval: Option<Duration>,
    /// Instead of `file`: the base URL of another TMF620 server (`.../productCatalogManagement/v4`)
    /// whose four listings are mirrored (`src/api/tmf620/upstream.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Bearer token for `upstream` (or GATEWAY__CATALOG__UPSTREAM_TOKEN).
    #[serde(skip_serializing)]
    pub upstream_token: Option<String>,
    /// Each request to `upstream`.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            file: None,
            reload_interval: None,
            upstream: None,
            upstream_token: None,
            upstream_timeout: Duration::from_secs(30),
        }
    }
}

impl CatalogConfig {
    /// Checked with the whole configuration at load (and by a command that changes it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(f) = &self.file
            && f.as_os_str().is_empty()
        {
            return Err(bad(
                "catalog.file",
                "must not be empty (leave it out for no file)",
            ));
        }
        if let Some(u) = &self.upstream {
            if self.file.is_some() {
                return Err(bad(
                    "catalog.upstream",
                    "give catalog.file or catalog.upstream, not both",
                ));
            }
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => {
                    return Err(bad(
                        "catalog.upstream",
                        "an http(s) URL of a TMF620 server (.../productCatalogManagement/v4)",
                    ));
                }
            }
            if self.upstream_timeout.is_zero() {
                return Err(bad("catalog.upstream_timeout", "must be more than 0"));
            }
        }
        if let Some(every) = self.reload_interval {
            if self.file.is_none() && self.upstream.is_none() {
                return Err(bad(
                    "catalog.reload_interval",
                    "needs catalog.file or catalog.upstream",
                ));
            }
            if every < Duration::from_secs(1) {
                return Err(bad("catalog.reload_interval", "must be at least 1s"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_needs_a_file_and_a_sane_interval() {
        let ok = CatalogConfig {
            file: Some("conf/catalog/demo.json".into()),
            reload_interval: Some(Duration::from_secs(60)),
            ..CatalogConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(CatalogConfig::default().validate().is_ok());
        let e = CatalogConfig {
            file: None,
            reload_interval: Some(Duration::from_secs(60)),
            ..CatalogConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("catalog.reload_interval"), "{e}");
        let e = CatalogConfig {
            reload_interval: Some(Duration::from_millis(10)),
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("at least 1s"), "{e}");
        let e = CatalogConfig {
            file: Some(PathBuf::new()),
            reload_interval: None,
            ..CatalogConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("catalog.file"), "{e}");
    }

    #[test]
    fn an_upstream_is_an_http_url_instead_of_a_file() {
        let up = CatalogConfig {
            upstream: Some("https://catalog.example/tmf-api/productCatalogManagement/v4".into()),
            reload_interval: Some(Duration::from_secs(300)),
            ..CatalogConfig::default()
        };
        assert!(up.validate().is_ok());
        let both = CatalogConfig {
            file: Some("conf/catalog/demo.json".into()),
            ..up.clone()
        };
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        for bad_url in ["catalog.example", "ftp://catalog.example/x", "http://"] {
            let e = CatalogConfig {
                upstream: Some(bad_url.into()),
                ..up.clone()
            }
            .validate()
            .unwrap_err();
            assert!(e.to_string().contains("catalog.upstream"), "{bad_url}: {e}");
        }
        let e = CatalogConfig {
            upstream_timeout: Duration::ZERO,
            ..up
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("upstream_timeout"), "{e}");
    }
}
