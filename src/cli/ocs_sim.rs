//! `gateway ocs-sim`: run the OCS simulator, or read its books.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::diameter::dict::Dictionary;
use crate::ocs::{OcsSim, OcsSimConfig, Profile, read_journal};

#[derive(Debug, Args)]
pub struct OcsSimArgs {
    /// Simulator configuration.
    #[arg(long, short = 'c', default_value = "conf/ocs-sim.toml", global = true)]
    pub config: PathBuf,
    /// Where units are accepted: any, rfc4006 (events at command level only) or 3gpp (in MSCC
    /// only); overrides the file's `profile`.
    #[arg(long, global = true)]
    pub profile: Option<Profile>,
    #[command(subcommand)]
    pub command: Option<OcsSimCommand>,
}

#[derive(Debug, Subcommand)]
pub enum OcsSimCommand {
    /// Run the simulator in the foreground until Ctrl-C (the default).
    Run,
    /// Print every account: balance, reserved and available, from the configuration and the
    /// journal file (works while the simulator runs, or after).
    Balances,
    /// Print the journal of applied operations.
    Journal,
}

pub async fn run(args: &OcsSimArgs) -> Result<String, String> {
    let mut cfg = OcsSimConfig::load(&args.config)?;
    if let Some(p) = args.profile {
        cfg.profile = p.name().into();
    }
    match args.command.as_ref().unwrap_or(&OcsSimCommand::Run) {
        OcsSimCommand::Run => {
            let dict = Arc::new(Dictionary::builtin().map_err(|e| e.to_string())?);
            let sim = OcsSim::start(cfg, dict).await?;
            tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
            sim.shutdown().await;
            Ok(String::new())
        }
        OcsSimCommand::Balances => {
            let mut ledger = cfg.ledger()?;
            if let Some(path) = &cfg.journal_path {
                ledger.replay(read_journal(path)?);
            }
            let mut rows: Vec<_> = ledger.accounts().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = format!(
                "{:<32} {:>14} {:>14} {:>14} currency\n",
                "subscriber", "balance", "reserved", "available"
            );
            for (sub, a) in rows {
                out.push_str(&format!(
                    "{:<32} {:>14} {:>14} {:>14} {}\n",
                    sub,
                    a.balance,
                    a.reserved,
                    a.available(),
                    a.currency.code()
                ));
            }
            Ok(out)
        }
        OcsSimCommand::Journal => {
            let Some(path) = &cfg.journal_path else {
                return Err("journal_path is not set in the configuration".into());
            };
            let mut out = String::new();
            for e in read_journal(path)? {
                out.push_str(&serde_json::to_string(&e).map_err(|e| e.to_string())?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}
