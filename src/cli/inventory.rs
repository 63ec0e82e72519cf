//! `gateway inventory import FILE`: loads a pool of MSISDNs and ICCIDs (the CSV of
//! [`crate::api::tmf639::import`]) into the store the configuration names. Idempotent: a
//! resource already there keeps its status, holder and hold (only its characteristics are
//! replaced), so a pool can be imported again, or grown, while the gateway serves. The whole
//! file is checked before anything is written (an error names the line), then written in one
//! transaction.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::GatewayConfig;
use crate::store::{InventoryFilter, InventoryStatus, Store};

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: InventoryCommand,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Import a CSV pool (header `category,value[,portedIn][,characteristic...]`).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Configuration file (its [store] is written to).
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
}

pub async fn run(args: &InventoryArgs) -> Result<String, String> {
    match &args.command {
        InventoryCommand::Import(a) => import(a).await,
    }
}

async fn import(args: &ImportArgs) -> Result<String, String> {
    let cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    if cfg.store.backend == "memory" {
        return Err(
            "store.backend = \"memory\": nothing imported would survive this command".into(),
        );
    }
    let store = Store::open(&cfg.store).map_err(|e| e.to_string())?;
    let result = async {
        let n = crate::api::tmf639::import::import_file(&store, &args.file).await?;
        let count = |status| {
            let store = store.clone();
            async move {
                store
                    .inventory_list(InventoryFilter {
                        status,
                        now_ms: crate::store::now_ms(),
                        limit: 1,
                        ..InventoryFilter::default()
                    })
                    .await
                    .map(|(_, total)| total)
                    .map_err(|e| e.to_string())
            }
        };
        let all = count(None).await?;
        let available = count(Some(InventoryStatus::Available)).await?;
        Ok::<_, String>(format!(
            "imported {n} resources from {} into the {} store: {all} in the inventory, \
             {available} available\n",
            args.file.display(),
            store.backend_name()
        ))
    }
    .await;
    let closed = store.close().await.map_err(|e| e.to_string());
    let out = result?;
    closed?;
    Ok(out)
}
