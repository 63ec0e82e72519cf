//! `gateway catalog import FILE`: validates a JSON array of TMF620 resources and writes it to
//! the configured store in one transaction, replacing the catalog (entries no longer in the
//! file are retired; `--merge` keeps them). Nothing is written when any entry is wrong: every
//! error is printed with the entry's index, id and field. A running gateway serves the new
//! catalog at once (it reads the store on every request).
//!
//! `gateway catalog sync` reads the configured source once (`[catalog] upstream`: another
//! TMF620 server's listings; or `[catalog] file`) and imports it when its hash changed.
//!
//! With `[catalog] file` set, `gateway serve` imports that file at start whenever its hash is
//! not the one recorded with the last import: the configured file wins over a manual import.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::api::tmf620::catalog::{self, Mode, Source};
use crate::config::GatewayConfig;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Validate FILE (a JSON array of ProductOffering, ProductOfferingPrice, Category and
    /// ProductSpecification) and write it to the store, replacing the catalog.
    Import(ImportArgs),
    /// Read the configured source (`[catalog] upstream`, another TMF620 server, or
    /// `[catalog] file`) once and import it when it changed since the last import.
    Sync(SyncArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Configuration file (its `[catalog]` is read, its `[store]` written to).
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
    /// This TMF620 base URL instead of the configured source
    /// (`https://.../tmf-api/productCatalogManagement/v4`).
    #[arg(long)]
    pub upstream: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The catalog file.
    pub file: PathBuf,
    /// Configuration file (its `[store]` is written to).
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
    /// Keep the entries the file does not have (references may name them) instead of
    /// retiring them.
    #[arg(long)]
    pub merge: bool,
    /// Validate only; write nothing.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: &CatalogArgs) -> Result<String, String> {
    match &args.command {
        CatalogCommand::Import(a) => import(a).await,
        CatalogCommand::Sync(a) => sync(a).await,
    }
}

async fn open_store(cfg: &GatewayConfig) -> Result<Store, String> {
    if cfg.store.backend == "memory" {
        return Err(
            "store.backend is memory: an import would not outlive this command; set \
             [catalog] file or upstream instead (read by `gateway serve` at start)"
                .into(),
        );
    }
    let store_cfg = cfg.store.clone();
    tokio::task::spawn_blocking(move || Store::open(&store_cfg))
        .await
        .map_err(|e| format!("the store could not be opened: {e}"))?
        .map_err(|e| format!("the store could not be opened: {e}"))
}

async fn sync(args: &SyncArgs) -> Result<String, String> {
    let mut cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    if let Some(u) = &args.upstream {
        cfg.catalog.upstream = Some(u.clone());
        cfg.catalog.file = None;
        cfg.catalog
            .validate()
            .map_err(|e| format!("--upstream: {e}"))?;
    }
    let source = Source::of(&cfg.catalog)
        .ok_or("no catalog source: set [catalog] upstream or file, or give --upstream")?;
    let store = open_store(&cfg).await?;
    let result = catalog::sync(&store, &source).await;
    let closed = store.close().await;
    let summary = result.map_err(|e| e.to_string())?;
    let text = match summary {
        Some(s) => s.to_string(),
        None => "catalog unchanged since its last import".into(),
    };
    closed.map_err(|e| format!("{text}, but closing the store failed: {e}"))?;
    Ok(format!("{source}: {text}\n"))
}

async fn import(args: &ImportArgs) -> Result<String, String> {
    let bytes = catalog::read_file(&args.file).map_err(|e| e.to_string())?;
    if args.check {
        let entries = catalog::parse(&bytes, &Default::default()).map_err(|e| e.to_string())?;
        return Ok(format!(
            "{}: {} entries, valid (nothing written)\n",
            args.file.display(),
            entries.len()
        ));
    }
    let cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let store = open_store(&cfg).await?;
    let mode = if args.merge {
        Mode::Merge
    } else {
        Mode::Replace
    };
    let result = catalog::import(&store, &bytes, mode, crate::store::now_ms()).await;
    let closed = store.close().await;
    let summary = result.map_err(|e| e.to_string())?;
    closed.map_err(|e| format!("{summary}, but closing the store failed: {e}"))?;
    Ok(format!("{}: {summary}\n", args.file.display()))
}
