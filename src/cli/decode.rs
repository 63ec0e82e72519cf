//! `gateway decode`: print a Diameter message read as hex (argument or stdin) or from a raw
//! binary file, with AVP names, types, flags and values, as indented text or JSON.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::diameter::dict::Dictionary;
use crate::diameter::render;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The message as hex (spaces, colons and a 0x prefix are ignored). Without it, and without
    /// --file, hex is read from standard input.
    pub hex: Vec<String>,
    /// Read the raw binary message(s) from this file instead.
    #[arg(long, short = 'f', conflicts_with = "hex")]
    pub file: Option<PathBuf>,
    /// Print JSON instead of indented text.
    #[arg(long)]
    pub json: bool,
    /// Dictionary directory (default: ./dictionaries when present, else the bundled ones).
    #[arg(long)]
    pub dict: Option<PathBuf>,
}

/// Runs the subcommand; the error is the explanation to print.
pub fn run(args: &DecodeArgs) -> Result<String, String> {
    let dict = load_dict(args.dict.as_deref())?;
    let bytes = match &args.file {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None if !args.hex.is_empty() => parse_hex(&args.hex.join(""))?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input as text: {e}"))?;
            parse_hex(&s)?
        }
    };
    if bytes.is_empty() {
        return Err("no input: give the message as hex, on standard input, or with --file".into());
    }
    let frames =
        render::split_frames(&bytes).map_err(|e| format!("cannot frame the input: {e}"))?;
    if args.json {
        let all: Vec<_> = frames.iter().map(|f| render::json(f, &dict)).collect();
        let v = if all.len() == 1 {
            all.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(all)
        };
        serde_json::to_string_pretty(&v)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else {
        Ok(frames
            .iter()
            .map(|f| render::text(f, &dict))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

fn load_dict(dir: Option<&Path>) -> Result<Dictionary, String> {
    match dir {
        Some(d) => Dictionary::load_dir(d).map_err(|e| format!("dictionary refused: {e}")),
        None if Path::new("dictionaries").is_dir() => {
            Dictionary::load_dir(Path::new("dictionaries"))
                .map_err(|e| format!("dictionary refused: {e}"))
        }
        None => Dictionary::builtin().map_err(|e| format!("bundled dictionary refused: {e}")),
    }
}

/// Hex with optional whitespace, `:` or `-` separators and `0x` prefixes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '0' && matches!(chars.peek(), Some('x' | 'X')) {
            chars.next();
            continue;
        }
        if c.is_whitespace() || c == ':' || c == '-' {
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return Err(format!(
                "not hex: {c:?} after {} hex digits (use --file for a raw binary file)",
                digits.len()
            ));
        }
        digits.push(c);
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    hex::decode(&digits).map_err(|e| format!("not hex: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("0x01 00:00-14").unwrap(), vec![1, 0, 0, 0x14]);
        assert_eq!(parse_hex("ABcd\n").unwrap(), vec![0xab, 0xcd]);
        assert!(parse_hex("abc").unwrap_err().contains("odd"));
        assert!(parse_hex("zz").unwrap_err().contains("not hex"));
    }
}
