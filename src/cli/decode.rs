//! `gateway decode`: print a Diameter message read as hex (argument or stdin) or from a raw
//! binary file, with AVP names, types, flags and values, as indented text or JSON.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::diameter::dict::Dictionary;
use crate::diameter::render;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The message as hex: plain (spaces, ':', '-', ',', 0x prefixes and # comments allowed)
    /// or a dump of xxd, hexdump -C, od -Ax or Wireshark. Without it, and without --file, the
    /// same is read from standard input.
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
        None if !args.hex.is_empty() => parse_hex(&args.hex.join(" "))?,
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

/// Reads a message written as text, in one of the two forms engineers paste. What is accepted,
/// exactly:
///
/// - **Plain hex**: hex digits (either case) in groups of any size, separated by whitespace
///   (newlines included), `:`, `-` or `,`; a group may start with `0x`; `#` starts a comment
///   that runs to the end of its line. The groups carry no meaning: the bytes are all the
///   digits in order, so there must be an even number of them. Wireshark's "Copy as a Hex
///   Stream", `xxd -p`, `od -An -tx1` and the golden vectors of `tests/data/*.hex` are in this
///   form.
/// - **A dump**: every line starts with its offset in hex, then its bytes, then maybe an ASCII
///   column, which is ignored. `xxd` (offset with a colon, groups of 2, 4, ... digits:
///   `00000000: 0100 005c ...  ...\...`), `hexdump -C` (`00000000  01 00 00 5c ...
///   |...\...|`, its last line the bare length), Wireshark's "Copy Bytes as Hex + ASCII
///   Dump" and "...as Hex Dump" (`0000   01 00 00 5c ...   ...\...`) and `od -Ax -tx1`. The
///   text is read as a dump when its first line (comments aside) starts with an offset of 4
///   to 8 zeros: a Diameter message starts with its version, 01, never with 00. The bytes of
///   a line end at a `|`, at a gap of three spaces or more (or a tab), in `xxd`'s layout at a
///   gap of two, or at the end of the line; every word before that must be bytes (2 digits;
///   `xxd`: any even number). Each offset must count the bytes of the lines before it, so a
///   missing line, a `*` for squeezed repeated lines (`hexdump` and `od` without `-v`) or
///   octal offsets (`od` without `-A`) are refused rather than decoded wrongly. Whole lines
///   starting with `#` are comments; text after the bytes of a line is ignored.
///
/// A refusal names the line and column (from 1).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let first = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let word = first.split(char::is_whitespace).next().unwrap_or_default();
    let (offset, colon) = match word.strip_suffix(':') {
        Some(w) => (w, true),
        None => (word, false),
    };
    if (4..=8).contains(&offset.len()) && offset.bytes().all(|b| b == b'0') {
        parse_dump(text, colon)
    } else {
        parse_plain(text)
    }
}

/// Plain hex; see [`parse_hex`].
fn parse_plain(text: &str) -> Result<Vec<u8>, String> {
    let mut nibbles: Vec<u8> = Vec::with_capacity(text.len());
    let mut last = (0, 0);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut group_start = true;
        let mut chars = line.chars().enumerate().peekable();
        while let Some((j, c)) = chars.next() {
            let col = j + 1;
            if c == '#' {
                break;
            }
            if c.is_whitespace() || matches!(c, ':' | '-' | ',') {
                group_start = true;
                continue;
            }
            if c == '*' {
                return Err(format!(
                    "line {n}, column {col}: '*' stands for repeated lines left out (od and \
                     hexdump squeeze them): dump again with -v"
                ));
            }
            if group_start && c == '0' && matches!(chars.peek(), Some((_, 'x' | 'X'))) {
                chars.next();
                if !chars.peek().is_some_and(|(_, d)| d.is_ascii_hexdigit()) {
                    return Err(format!(
                        "line {n}, column {col}: 0x without hex digits after it"
                    ));
                }
                group_start = false;
                continue;
            }
            group_start = false;
            match c.to_digit(16) {
                // A hex digit is below 16: it fits.
                Some(d) => nibbles.push(d as u8),
                None => {
                    return Err(format!(
                        "line {n}, column {col}: {c:?} is not a hex digit (hex may be grouped \
                         with spaces, ':', '-' or ',', carry 0x and # comments, or be a dump of \
                         xxd, hexdump -C, od -Ax or Wireshark; --file reads a raw binary file)"
                    ));
                }
            }
            last = (n, col);
        }
    }
    if !nibbles.len().is_multiple_of(2) {
        let (n, col) = last;
        return Err(format!(
            "odd number of hex digits ({}): one is missing or extra (the last one is on line \
             {n}, column {col})",
            nibbles.len()
        ));
    }
    Ok(nibbles
        .chunks_exact(2)
        .map(|p| p.iter().fold(0u8, |acc, d| (acc << 4) | d))
        .collect())
}

/// A dump with an offset column; `xxd` says whether the offsets end with a colon (`xxd`'s
/// layout). See [`parse_hex`].
fn parse_dump(text: &str, xxd: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut end_line = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let chars: Vec<char> = line.chars().collect();
        let Some(start) = chars.iter().position(|c| !c.is_whitespace()) else {
            continue;
        };
        let rest = chars.get(start..).unwrap_or_default();
        match rest.first() {
            Some('#') => continue,
            Some('*') => {
                return Err(format!(
                    "line {n}: '*' stands for repeated lines left out (hexdump and od squeeze \
                     them): dump again with -v"
                ));
            }
            _ => {}
        }
        if let Some(end) = end_line {
            return Err(format!(
                "line {n}: bytes after line {end}, which held only the final offset"
            ));
        }
        let word_len = rest
            .iter()
            .position(|c| c.is_whitespace())
            .unwrap_or(rest.len());
        let word: String = rest.iter().take(word_len).collect();
        let (digits, colon) = match word.strip_suffix(':') {
            Some(w) => (w, true),
            None => (word.as_str(), false),
        };
        let offset = (!digits.is_empty()
            && digits.len() <= 16
            && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(digits, 16).ok())
        .flatten();
        let Some(offset) = offset.filter(|_| colon == xxd) else {
            let layout = if xxd {
                "xxd's 00000010:"
            } else {
                "00000010, as on line 1"
            };
            return Err(format!(
                "line {n}, column {}: {word:?} is not an offset ({layout}): every line of a \
                 dump starts with its offset in hex",
                start + 1
            ));
        };
        let before = out.len() as u64;
        if offset != before {
            return Err(format!(
                "line {n}: offset {digits} (0x{offset:x}) but the lines before hold 0x{before:x} \
                 bytes: a line is missing, or the offsets are not hex (od prints octal ones \
                 without -Ax)"
            ));
        }
        let bytes = dump_bytes(rest.get(word_len..).unwrap_or_default(), xxd)
            .map_err(|(col, why)| format!("line {n}, column {}: {why}", start + word_len + col))?;
        if bytes.is_empty() {
            // hexdump -C and od end with the total length alone on a line.
            end_line = Some(n);
        }
        out.extend(bytes);
    }
    Ok(out)
}

/// The bytes of one dump line after its offset, up to its ASCII column. An error gives the
/// column (from 1, within `text`) and the reason.
fn dump_bytes(text: &[char], xxd: bool) -> Result<Vec<u8>, (usize, String)> {
    let mut bytes = Vec::new();
    let mut i = 0;
    loop {
        let gap_start = i;
        let mut wide = false;
        while let Some(c) = text.get(i).filter(|c| c.is_whitespace()) {
            wide |= *c == '\t';
            i += 1;
        }
        let gap = i - gap_start;
        if text.get(i).is_none_or(|c| *c == '|') {
            break;
        }
        // The ASCII column: after a wide gap, or xxd's two spaces, once bytes were read.
        if !bytes.is_empty() && (wide || gap >= 3 || (xxd && gap >= 2)) {
            break;
        }
        let len = text
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|c| c.is_whitespace())
            .unwrap_or(text.len() - i);
        let word: String = text.iter().skip(i).take(len).collect();
        let hex = word.chars().all(|c| c.is_ascii_hexdigit());
        if hex && (word.len() == 2 || (xxd && word.len().is_multiple_of(2))) {
            // Hex digits are ASCII: every pair is a byte.
            bytes.extend(hex::decode(&word).map_err(|e| (i + 1, e.to_string()))?);
        } else if hex && word.len().is_multiple_of(2) {
            return Err((
                i + 1,
                format!(
                    "{word:?}: groups of {} digits after an offset without ':' are hexdump's \
                     default 16-bit words, in the machine's byte order: dump with hexdump -C or \
                     xxd",
                    word.len()
                ),
            ));
        } else {
            return Err((
                i + 1,
                format!("{word:?} is not a byte in hex (two digits, as the rest of the dump)"),
            ));
        }
        i += len;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DWR of `conf/examples/dwr.bin` (92 bytes, from an independent encoder): every dump
    /// below is of it.
    const DWR: &[u8] = include_bytes!("../../conf/examples/dwr.bin");

    /// Bytes whose ASCII column looks like hex, holds `#`, `|` and double spaces, and whose
    /// length (31) is odd: the dumps' column rules are all exercised.
    const TRICKY: &[u8] = b"ca fe # 01 02 beef|x|  00 11\x01\x02\x03";

    #[test]
    fn plain_hex_forms() {
        assert_eq!(
            parse_hex("0x01 00:00-14,0X2a").unwrap(),
            [1, 0, 0, 0x14, 0x2a]
        );
        assert_eq!(parse_hex("ABcd\r\n").unwrap(), [0xab, 0xcd]);
        // Groups carry no meaning; comments run to the end of the line.
        assert_eq!(
            parse_hex("# a comment\n0 1 0000 5c # Message Length\n\n  8  0\n").unwrap(),
            [1, 0, 0, 0x5c, 0x80]
        );
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_hex("# only a comment\n\n").unwrap(), Vec::<u8>::new());
        // Wireshark's "Copy as a Hex Stream", and xxd -p (real output, 60 digits a line).
        let stream: String = DWR.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_hex(&stream).unwrap(), DWR);
        let xxd_p = "\
0100005c80000118000000001a2b3c035d6e7f0300000108400000206374
6630312e636c69656e742e6578616d706c652e6e6574000001284000001a
636c69656e742e6578616d706c652e6e65740000000001164000000c0000
0001
";
        assert_eq!(parse_hex(xxd_p).unwrap(), DWR);
    }

    #[test]
    fn the_golden_vectors_read_as_they_are_written() {
        // tests/data/*.hex: one AVP a line, groups, comments after '#'.
        let bytes = parse_hex(include_str!("../../tests/data/ccr_event.hex")).unwrap();
        assert_eq!(bytes.len(), 396);
        assert_eq!(bytes.get(..4), Some(&[0x01, 0x00, 0x01, 0x8c][..]));
        // The last AVP: "ref-1" and its 3 bytes of padding.
        assert_eq!(bytes.get(388..), Some(&b"ref-1\0\0\0"[..]));
    }

    #[test]
    fn od_without_offsets() {
        // od -An -tx1 conf/examples/dwr.bin
        let od = "\
 01 00 00 5c 80 00 01 18 00 00 00 00 1a 2b 3c 03
 5d 6e 7f 03 00 00 01 08 40 00 00 20 63 74 66 30
 31 2e 63 6c 69 65 6e 74 2e 65 78 61 6d 70 6c 65
 2e 6e 65 74 00 00 01 28 40 00 00 1a 63 6c 69 65
 6e 74 2e 65 78 61 6d 70 6c 65 2e 6e 65 74 00 00
 00 00 01 16 40 00 00 0c 00 00 00 01
";
        assert_eq!(parse_hex(od).unwrap(), DWR);
    }

    #[test]
    fn xxd_dumps() {
        // xxd conf/examples/dwr.bin
        let xxd = r"00000000: 0100 005c 8000 0118 0000 0000 1a2b 3c03  ...\.........+<.
00000010: 5d6e 7f03 0000 0108 4000 0020 6374 6630  ]n......@.. ctf0
00000020: 312e 636c 6965 6e74 2e65 7861 6d70 6c65  1.client.example
00000030: 2e6e 6574 0000 0128 4000 001a 636c 6965  .net...(@...clie
00000040: 6e74 2e65 7861 6d70 6c65 2e6e 6574 0000  nt.example.net..
00000050: 0000 0116 4000 000c 0000 0001            ....@.......
";
        assert_eq!(parse_hex(xxd).unwrap(), DWR);
        // xxd -g1 -c 32, and xxd -u -g4 (the last two lines of it after the first three).
        let xxd_g1 = r"00000000: 01 00 00 5c 80 00 01 18 00 00 00 00 1a 2b 3c 03 5d 6e 7f 03 00 00 01 08 40 00 00 20 63 74 66 30  ...\.........+<.]n......@.. ctf0
00000020: 31 2e 63 6c 69 65 6e 74 2e 65 78 61 6d 70 6c 65 2e 6e 65 74 00 00 01 28 40 00 00 1a 63 6c 69 65  1.client.example.net...(@...clie
00000040: 6e 74 2e 65 78 61 6d 70 6c 65 2e 6e 65 74 00 00 00 00 01 16 40 00 00 0c 00 00 00 01              nt.example.net......@.......
";
        assert_eq!(parse_hex(xxd_g1).unwrap(), DWR);
        let xxd_g4 = r"00000000: 0100005C 80000118 00000000 1A2B3C03  ...\.........+<.
00000010: 5D6E7F03 00000108 40000020 63746630  ]n......@.. ctf0
00000020: 312E636C 69656E74 2E657861 6D706C65  1.client.example
00000030: 2E6E6574 00000128 4000001A 636C6965  .net...(@...clie
00000040: 6E742E65 78616D70 6C652E6E 65740000  nt.example.net..
00000050: 00000116 4000000C 00000001           ....@.......
";
        assert_eq!(parse_hex(xxd_g4).unwrap(), DWR);
        // xxd of TRICKY: the ASCII column after two spaces is not read, hex-like as it is.
        let tricky = "\
00000000: 6361 2066 6520 2320 3031 2030 3220 6265  ca fe # 01 02 be
00000010: 6566 7c78 7c20 2030 3020 3131 0102 03    ef|x|  00 11...
";
        assert_eq!(parse_hex(tricky).unwrap(), TRICKY);
    }

    #[test]
    fn hexdump_canonical_dumps() {
        // hexdump -C conf/examples/dwr.bin
        let hd = r"00000000  01 00 00 5c 80 00 01 18  00 00 00 00 1a 2b 3c 03  |...\.........+<.|
00000010  5d 6e 7f 03 00 00 01 08  40 00 00 20 63 74 66 30  |]n......@.. ctf0|
00000020  31 2e 63 6c 69 65 6e 74  2e 65 78 61 6d 70 6c 65  |1.client.example|
00000030  2e 6e 65 74 00 00 01 28  40 00 00 1a 63 6c 69 65  |.net...(@...clie|
00000040  6e 74 2e 65 78 61 6d 70  6c 65 2e 6e 65 74 00 00  |nt.example.net..|
00000050  00 00 01 16 40 00 00 0c  00 00 00 01              |....@.......|
0000005c
";
        assert_eq!(parse_hex(hd).unwrap(), DWR);
        let tricky = "\
00000000  63 61 20 66 65 20 23 20  30 31 20 30 32 20 62 65  |ca fe # 01 02 be|
00000010  65 66 7c 78 7c 20 20 30  30 20 31 31 01 02 03     |ef|x|  00 11...|
0000001f
";
        assert_eq!(parse_hex(tricky).unwrap(), TRICKY);
        // od -Ax -tx1: the same layout without an ASCII column, the length last.
        let od = "\
000000 63 61 20 66 65 20 23 20 30 31 20 30 32 20 62 65
000010 65 66 7c 78 7c 20 20 30 30 20 31 31 01 02 03
00001f
";
        assert_eq!(parse_hex(od).unwrap(), TRICKY);
        // Indented, as pasted into a mail, with a comment line.
        let indented: String = format!("# captured on gw1\n{}", hd.replace('\n', "\n    "));
        assert_eq!(parse_hex(&indented).unwrap(), DWR);
    }

    #[test]
    fn wireshark_dumps() {
        // Wireshark's "Copy Bytes as Hex + ASCII Dump", written from its format
        // (ui/qt/utils/data_printer.cpp, hexTextDump): "%04x" offset, two spaces, " %02x" per
        // byte (16 a line), three spaces, the last line padded by three spaces per missing
        // byte, then the bytes as ASCII (printable ones as they are, others as '.').
        let ws = r"0000   01 00 00 5c 80 00 01 18 00 00 00 00 1a 2b 3c 03   ...\.........+<.
0010   5d 6e 7f 03 00 00 01 08 40 00 00 20 63 74 66 30   ]n......@.. ctf0
0020   31 2e 63 6c 69 65 6e 74 2e 65 78 61 6d 70 6c 65   1.client.example
0030   2e 6e 65 74 00 00 01 28 40 00 00 1a 63 6c 69 65   .net...(@...clie
0040   6e 74 2e 65 78 61 6d 70 6c 65 2e 6e 65 74 00 00   nt.example.net..
0050   00 00 01 16 40 00 00 0c 00 00 00 01               ....@.......
";
        assert_eq!(parse_hex(ws).unwrap(), DWR);
        // "...as Hex Dump": the same without the ASCII column.
        let hex_only: String = ws
            .lines()
            .map(|l| format!("{}\n", l.get(..54).unwrap_or(l).trim_end()))
            .collect();
        assert!(hex_only.starts_with("0000   01 00 00 5c"));
        assert!(!hex_only.contains('+'));
        assert_eq!(parse_hex(&hex_only).unwrap(), DWR);
        let tricky = "\
0000   63 61 20 66 65 20 23 20 30 31 20 30 32 20 62 65   ca fe # 01 02 be
0010   65 66 7c 78 7c 20 20 30 30 20 31 31 01 02 03      ef|x|  00 11...
";
        assert_eq!(parse_hex(tricky).unwrap(), TRICKY);
    }

    #[test]
    fn refusals_name_the_line_and_column() {
        let e = parse_hex("0100\n00 5z").unwrap_err();
        assert!(
            e.starts_with("line 2, column 5: 'z' is not a hex digit"),
            "{e}"
        );
        // The README's old example, elided with "...".
        let e = parse_hex("0100009cc0000110...").unwrap_err();
        assert!(e.starts_with("line 1, column 17: '.'"), "{e}");
        let e = parse_hex("01 00 0\n# the end").unwrap_err();
        assert!(e.contains("odd number of hex digits (5)"), "{e}");
        assert!(e.contains("line 1, column 7"), "{e}");
        let e = parse_hex("01 0x\n").unwrap_err();
        assert!(e.starts_with("line 1, column 4: 0x without"), "{e}");
        // od -An squeezes repeated lines into '*' unless -v.
        let e = parse_hex(" 01 00 00 5c\n*\n").unwrap_err();
        assert!(
            e.starts_with("line 2, column 1: '*'") && e.contains("-v"),
            "{e}"
        );
    }

    #[test]
    fn dumps_that_would_decode_wrongly_are_refused() {
        // hexdump -C squeezing a repeated line.
        let squeezed = "\
00000000  01 00 00 5c 80 00 01 18  00 00 00 00 1a 2b 3c 03  |...\\.........+<.|
*
00000020  31 2e 63 6c 69 65 6e 74  2e 65 78 61 6d 70 6c 65  |1.client.example|
";
        let e = parse_hex(squeezed).unwrap_err();
        assert!(e.starts_with("line 2: '*'") && e.contains("-v"), "{e}");
        // A line left out.
        let missing = "\
0000   01 00 00 5c 80 00 01 18 00 00 00 00 1a 2b 3c 03   ...\\.........+<.
0020   31 2e 63 6c 69 65 6e 74 2e 65 78 61 6d 70 6c 65   1.client.example
";
        let e = parse_hex(missing).unwrap_err();
        assert!(
            e.starts_with("line 2: offset 0020 (0x20) but the lines before hold 0x10"),
            "{e}"
        );
        // od -tx1 (real output): octal offsets.
        let octal = "\
0000000 01 00 00 5c 80 00 01 18 00 00 00 00 1a 2b 3c 03
0000020 5d 6e 7f 03 00 00 01 08 40 00 00 20 63 74 66 30
";
        let e = parse_hex(octal).unwrap_err();
        assert!(e.contains("octal"), "{e}");
        // hexdump without -C (real output): little-endian 16-bit words.
        let words = "\
0000000 0001 5c00 0080 1801 0000 0000 2b1a 033c
0000010 6e5d 037f 0000 0801 0040 2000 7463 3066
";
        let e = parse_hex(words).unwrap_err();
        assert!(
            e.starts_with("line 1, column 9: \"0001\"") && e.contains("hexdump -C"),
            "{e}"
        );
        // A bad byte inside the bytes, and a line without an offset.
        let e = parse_hex("0000   01 00 0g 5c\n").unwrap_err();
        assert!(
            e.starts_with("line 1, column 14: \"0g\" is not a byte"),
            "{e}"
        );
        let e = parse_hex("00000000: 0100 005c\n0100 005c\n").unwrap_err();
        assert!(
            e.starts_with("line 2, column 1: \"0100\" is not an offset"),
            "{e}"
        );
        // Mixed layouts, and bytes after the final offset.
        let e = parse_hex("00000000: 0100 005c\n00000004  80 00\n").unwrap_err();
        assert!(e.starts_with("line 2, column 1"), "{e}");
        let e = parse_hex("000000 01 00\n000002\n000002 5c\n").unwrap_err();
        assert!(e.starts_with("line 3: bytes after line 2"), "{e}");
    }
}
