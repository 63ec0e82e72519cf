//! The `gateway` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use charging_gateway::cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Diameter Gy/Ro charging gateway")]
struct Cli {
    /// Without a command: `serve` with conf/gateway.toml.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: the REST API, the Diameter peers and (by default) the bundled OCS
    /// simulator. The default command.
    Serve(cli::serve::ServeArgs),
    /// Print a Diameter message (hex argument, hex on stdin, or --file raw binary) readably.
    Decode(cli::decode::DecodeArgs),
    /// Validate the configuration and print it with environment overrides applied.
    CheckConfig(cli::check_config::CheckConfigArgs),
    /// Run the OCS simulator, or print its balances or journal.
    OcsSim(cli::ocs_sim::OcsSimArgs),
    /// Start clean: remove the SQLite store and the bundled simulator's journal that `serve`
    /// keeps between runs (with the gateway stopped).
    Reset(cli::reset::ResetArgs),
    /// Load a running gateway's Payment API and print throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// The TMF620 product catalog: `catalog import FILE` validates a JSON array of TMF620
    /// resources and writes it to the store in one transaction, replacing the catalog.
    Catalog(cli::catalog::CatalogArgs),
    /// Run a money-neutral series of exchanges against the configured OCS and print what it
    /// supports and the configuration it needs. Exit code 0: every mandatory step passed; 1:
    /// one failed; 2: the run could not start.
    Conformance(cli::conformance::ConformanceArgs),
    /// The TMF639 resource inventory: `inventory import FILE` loads MSISDNs and ICCIDs.
    Inventory(cli::inventory::InventoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Serve(cli::serve::ServeArgs::default_args()));
    init_logging(
        match &command {
            Command::Serve(args) => cli::serve::log_format(args),
            _ => None,
        },
        // The conformance report says everything; logs would only interleave with it.
        if matches!(command, Command::Conformance(_)) {
            "error"
        } else {
            "info"
        },
    );
    if let Command::Conformance(args) = &command {
        return conformance(args);
    }
    let result = match &command {
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(cli::serve::run(args))),
        Command::Decode(args) => cli::decode::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
        Command::OcsSim(args) => runtime().and_then(|rt| rt.block_on(cli::ocs_sim::run(args))),
        Command::Reset(args) => cli::reset::run(args),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(cli::bench::run(args))),
        Command::Catalog(args) => runtime().and_then(|rt| rt.block_on(cli::catalog::run(args))),
        Command::Inventory(args) => runtime().and_then(|rt| rt.block_on(cli::inventory::run(args))),
        Command::Conformance(_) => Ok(String::new()),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `gateway conformance`: the report on stdout; the exit code says whether every mandatory
/// step passed (1 when one failed, 2 when the run could not start).
fn conformance(args: &cli::conformance::ConformanceArgs) -> ExitCode {
    match runtime().and_then(|rt| rt.block_on(cli::conformance::run(args))) {
        Ok(report) => {
            print!("{}", report.render(args.json));
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("gateway conformance: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Logs to stderr; `RUST_LOG` filters (default `default_level`); `LOG_FORMAT` (`text` or
/// `json`) overrides the configured format.
fn init_logging(configured: Option<String>, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let format = std::env::var("LOG_FORMAT").ok().or(configured);
    if format.as_deref() == Some("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
