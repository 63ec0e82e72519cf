//! The `gateway` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use charging_gateway::cli;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Diameter Gy/Ro charging gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a Diameter message (hex argument, hex on stdin, or --file raw binary) readably.
    Decode(cli::decode::DecodeArgs),
    /// Validate the configuration and print it with environment overrides applied.
    CheckConfig(cli::check_config::CheckConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Decode(args) => cli::decode::run(args),
        Command::CheckConfig(args) => cli::check_config::run(args),
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
