//! `gateway ocs-sim`: run the OCS simulator, or read its books.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::credit_control::money::with_minor_digits;
use crate::diameter::dict::Dictionary;
use crate::ocs::{Ledger, OcsSim, OcsSimConfig, Profile, read_journal};

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
            Ok(balances(&ledger))
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

/// The table of `gateway ocs-sim balances`: one line per account, sorted by subscriber, every
/// amount with its currency's minor-unit digits (`0.00`, never `0` beside `0.00`).
fn balances(ledger: &Ledger) -> String {
    let mut rows: Vec<_> = ledger.accounts().collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = format!(
        "{:<32} {:>14} {:>14} {:>14} currency\n",
        "subscriber", "balance", "reserved", "available"
    );
    for (sub, a) in rows {
        let shown = |amount| with_minor_digits(amount, a.currency);
        out.push_str(&format!(
            "{:<32} {:>14} {:>14} {:>14} {}\n",
            sub,
            shown(a.balance),
            shown(a.reserved),
            shown(a.available()),
            a.currency.code()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo configuration's accounts, one of them with money reserved: every amount of a
    /// line has the same number of decimals, the currency's.
    #[test]
    fn balances_are_written_with_the_currency_digits() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/ocs-sim.toml");
        let mut cfg = OcsSimConfig::load(&path).unwrap();
        cfg.accounts.push(crate::ocs::SimAccount {
            subscriber: "tel:+81312345678".into(),
            balance: "1500".parse().unwrap(),
            currency: "JPY".into(),
        });
        cfg.accounts.push(crate::ocs::SimAccount {
            subscriber: "tel:+96522345678".into(),
            balance: "7.5".parse().unwrap(),
            currency: "KWD".into(),
        });
        let mut ledger = cfg.ledger().unwrap();
        // A reservation of 2.5 EUR open on tel:34600000001, as the journal records it.
        ledger.replay(vec![crate::ocs::JournalEntry {
            seq: 1,
            time: "2026-12-02T10:11:28.700Z".into(),
            session_id: "gw.charging.local;1;1".into(),
            request_number: 0,
            op: "reserve".into(),
            subscriber: "tel:34600000001".into(),
            amount: "2.5".parse().unwrap(),
            currency: "EUR".into(),
            balance: "5".parse().unwrap(),
            reservation: Some("2.5".parse().unwrap()),
            result_code: 2001,
            granted: Some("2.5".parse().unwrap()),
        }]);
        let table = balances(&ledger);
        let mut lines = table.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["subscriber", "balance", "reserved", "available", "currency"]
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows.len(), cfg.accounts.len());
        let row = |sub: &str| {
            rows.iter()
                .find(|r| r[0] == sub)
                .unwrap_or_else(|| panic!("{sub} in {table}"))
                .clone()
        };
        assert_eq!(
            row("tel:34600000002"),
            ["tel:34600000002", "0.00", "0.00", "0.00", "EUR"]
        );
        assert_eq!(
            row("tel:34600000001"),
            ["tel:34600000001", "5.00", "2.50", "2.50", "EUR"]
        );
        assert_eq!(
            row("tel:34671999000"),
            ["tel:34671999000", "100000.00", "0.00", "100000.00", "EUR"]
        );
        assert_eq!(
            row("tel:81312345678"),
            ["tel:81312345678", "1500", "0", "1500", "JPY"]
        );
        assert_eq!(
            row("tel:96522345678"),
            ["tel:96522345678", "7.500", "0.000", "7.500", "KWD"]
        );
        for r in &rows {
            let digits = crate::credit_control::money::minor_unit(
                crate::credit_control::money::currency(r[4]).unwrap(),
            )
            .unwrap() as usize;
            for amount in &r[1..4] {
                let decimals = amount.split_once('.').map_or(0, |(_, f)| f.len());
                assert_eq!(decimals, digits, "{amount} in {r:?}");
            }
        }
    }
}
