//! The `gateway` command line: one module per subcommand, called by `main.rs`.

pub mod decode;
