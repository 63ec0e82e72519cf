//! `gateway check-config`: validate the configuration (and the dictionaries it names) and print
//! the effective configuration, environment overrides applied.

use std::path::PathBuf;

use clap::Args;

use crate::config::GatewayConfig;
use crate::diameter::dict::Dictionary;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
}

pub fn run(args: &CheckConfigArgs) -> Result<String, String> {
    let cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let dict = Dictionary::load_dir(&cfg.diameter.dictionaries)
        .map_err(|e| format!("configuration refused: diameter.dictionaries: {e}"))?;
    // The AVP templates resolve against the dictionaries.
    cfg.credit_control
        .client_config(&dict, cfg.diameter.timers.request_timeout)
        .map_err(|e| format!("configuration refused: {e}"))?;
    if cfg.ocs_sim.enabled {
        crate::ocs::OcsSimConfig::load(&cfg.ocs_sim.config)
            .map_err(|e| format!("configuration refused: ocs_sim.config: {e}"))?;
    }
    Ok(format!(
        "# {}: valid ({} peer(s), {} AVPs and {} commands in {})\n{}",
        args.config.display(),
        cfg.diameter.peers.len(),
        dict.avps().len(),
        dict.commands().len(),
        cfg.diameter.dictionaries.display(),
        cfg.redacted().to_toml()
    ))
}
