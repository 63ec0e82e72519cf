//! `[catalog]`: the TMF620 product catalog the gateway serves (read side), loaded from a JSON
//! file into the store (`src/api/tmf620/`).
//!
//! ```toml
//! [catalog]
//! file = "conf/catalog/demo.json"   # imported at `serve` start when its SHA-256 differs from
//!                                   # the one recorded with the last import
//! reload_interval = "1m"            # optional: re-read the file this often (default: never)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[catalog]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// A JSON array of TMF620 resources (`gateway catalog import` validates the same way).
    /// Imported at start (replacing the catalog) when its content hash is not the one
    /// recorded with the last import. Unset: the catalog is what was last imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Re-read `file` this often and import it when it changed (an invalid file is logged
    /// and the catalog kept). Unset: only at start.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub reload_interval: Option<Duration>,
}

impl CatalogConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(f) = &self.file
            && f.as_os_str().is_empty()
        {
            return Err(bad(
                "catalog.file",
                "must not be empty (leave it out for no file)",
            ));
        }
        if let Some(every) = self.reload_interval {
            if self.file.is_none() {
                return Err(bad("catalog.reload_interval", "needs catalog.file"));
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
        };
        assert!(ok.validate().is_ok());
        assert!(CatalogConfig::default().validate().is_ok());
        let e = CatalogConfig {
            file: None,
            reload_interval: Some(Duration::from_secs(60)),
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
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("catalog.file"), "{e}");
    }
}
