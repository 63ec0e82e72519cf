//! The `gateway` command line: one module per subcommand, called by `main.rs`.

pub mod bench;
pub mod catalog;
pub mod check_config;
pub mod conformance;
pub mod decode;
pub mod inventory;
pub mod ocs_sim;
pub mod reset;
pub mod serve;
