//! `[inventory]`: the TMF639 resource inventory (MSISDNs and ICCIDs offered to customers).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[inventory]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// How long a `PATCH {"resourceStatus": "reserved"}` holds a number or SIM for its cart
    /// (renewed by the same cart reserving it again). After that anyone may take it.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// A pool imported by `gateway serve` at start when the inventory is empty (the CSV of
    /// `gateway inventory import`). Empty: none.
    pub file: PathBuf,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(15 * 60),
            file: PathBuf::new(),
        }
    }
}

/// The longest hold accepted: a day.
pub const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

impl InventoryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hold.is_zero() || self.hold > MAX_HOLD {
            return Err(bad(
                "inventory.hold",
                format!(
                    "{} is out of range: more than 0 and at most 24h",
                    humantime::format_duration(self.hold)
                ),
            ));
        }
        Ok(())
    }

    /// The pool file, when one is set.
    pub fn pool(&self) -> Option<&std::path::Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_range() {
        let c = InventoryConfig::default();
        assert_eq!(c.hold, Duration::from_secs(900));
        assert!(c.pool().is_none());
        assert!(c.validate().is_ok());
        for hold in [Duration::ZERO, Duration::from_secs(24 * 3600 + 1)] {
            let e = InventoryConfig { hold, ..c.clone() }
                .validate()
                .unwrap_err();
            assert_eq!(e.key, "inventory.hold");
        }
        let parsed: InventoryConfig =
            toml::from_str("hold = \"2m\"\nfile = \"conf/inventory/demo.csv\"").unwrap();
        assert_eq!(parsed.hold, Duration::from_secs(120));
        assert_eq!(
            parsed.pool(),
            Some(std::path::Path::new("conf/inventory/demo.csv"))
        );
        assert!(toml::from_str::<InventoryConfig>("holds = \"2m\"").is_err());
    }
}
