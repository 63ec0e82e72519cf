//! The pool file of `gateway inventory import` and `[inventory] file`: CSV, one resource a
//! line, validated whole before anything is written.
//!
//! ```text
//! # comment lines and blank lines are skipped
//! category,value,portedIn,tier          <- header: category and value first; portedIn and
//! MSISDN,34600100001,false,standard        any further columns (characteristics) optional
//! MSISDN,+34600777777,,gold             <- E.164 digits (a leading + is dropped), 5-15
//! MSISDN,34600200001,true,              <- tagged ported in: imported as portingIn
//! ICCID,8934070000000000015,,           <- 19-20 digits, Luhn check digit last
//! ```
//!
//! No quoting: a value holds no comma. An error names the line (`pool.csv:12: ...`).

use std::collections::HashMap;

use crate::store::{InventoryRow, InventoryStatus};

/// The two categories and how a resource id is made of a value.
pub const CATEGORIES: [&str; 2] = ["MSISDN", "ICCID"];

/// `msisdn-<digits>`, `iccid-<digits>`.
pub fn resource_id(category: &str, value: &str) -> String {
    format!("{}-{value}", category.to_ascii_lowercase())
}

/// The digits of an MSISDN (E.164: 5 to 15 digits, a country code first, an optional `+`).
pub fn msisdn(v: &str) -> Result<String, String> {
    let digits = v.strip_prefix('+').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not an MSISDN: E.164 digits expected"));
    }
    if !(5..=15).contains(&digits.len()) {
        return Err(format!(
            "{v:?} is not an MSISDN: an E.164 number has 5 to 15 digits"
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "{v:?} is not an MSISDN: an E.164 number starts with a country code (not 0)"
        ));
    }
    Ok(digits.to_string())
}

/// An ICCID: 19 or 20 digits whose last is the Luhn check digit of the others.
pub fn iccid(v: &str) -> Result<String, String> {
    if !v.bytes().all(|b| b.is_ascii_digit()) || !(19..=20).contains(&v.len()) {
        return Err(format!("{v:?} is not an ICCID: 19 or 20 digits expected"));
    }
    if !luhn(v) {
        return Err(format!(
            "{v:?} is not an ICCID: its last digit is not the Luhn check digit"
        ));
    }
    Ok(v.to_string())
}

/// Whether the digits of `v` pass the Luhn check (the last digit checks the others).
pub fn luhn(v: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in v.bytes().rev().enumerate() {
        let d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    !v.is_empty() && sum.is_multiple_of(10)
}

fn flag(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => Some(false),
        "true" | "yes" | "1" => Some(true),
        _ => None,
    }
}

/// The rows of a pool file (`name` names it in errors), stamped `now_ms`.
pub fn parse_csv(name: &str, text: &str, now_ms: i64) -> Result<Vec<InventoryRow>, String> {
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = |why: String| format!("{name}:{n}: {why}");
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(columns) = &header else {
            if cells.first() != Some(&"category") || cells.get(1) != Some(&"value") {
                return Err(at(format!(
                    "the header \"category,value[,portedIn][,characteristic...]\" expected \
                     first, found {:?}",
                    clip(line)
                )));
            }
            for (j, c) in cells.iter().enumerate() {
                let ok = !c.is_empty()
                    && c.len() <= 64
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return Err(at(format!(
                        "column {}: {:?} is not a column name (letters, digits, _ . -)",
                        j + 1,
                        clip(c)
                    )));
                }
                if cells[..j].contains(c) {
                    return Err(at(format!("column {c:?} given twice")));
                }
            }
            header = Some(cells.iter().map(|c| c.to_string()).collect());
            continue;
        };
        if cells.len() != columns.len() {
            return Err(at(format!(
                "{} values, the header has {} columns",
                cells.len(),
                columns.len()
            )));
        }
        let category = match cells[0].to_ascii_uppercase().as_str() {
            "MSISDN" => "MSISDN",
            "ICCID" | "SIM" => "ICCID",
            _ => {
                return Err(at(format!(
                    "category: {:?}: MSISDN or ICCID",
                    clip(cells[0])
                )));
            }
        };
        let value = if category == "MSISDN" {
            msisdn(cells[1])
        } else {
            iccid(cells[1])
        }
        .map_err(|e| at(format!("value: {e}")))?;
        let mut ported_in = false;
        let mut body = serde_json::Map::new();
        for (c, v) in columns.iter().zip(&cells).skip(2) {
            if c == "portedIn" {
                ported_in =
                    flag(v).ok_or_else(|| at(format!("portedIn: {:?}: true or false", clip(v))))?;
            } else if !v.is_empty() {
                if v.chars().any(char::is_control) || v.len() > 256 {
                    return Err(at(format!(
                        "{c}: at most 256 characters, no control character"
                    )));
                }
                body.insert(c.clone(), serde_json::Value::String(v.to_string()));
            }
        }
        if ported_in && category != "MSISDN" {
            return Err(at("portedIn: only an MSISDN is ported in".into()));
        }
        let id = resource_id(category, &value);
        if let Some(first) = seen.insert(id.clone(), n) {
            return Err(at(format!("{category} {value} is on line {first} already")));
        }
        rows.push(InventoryRow {
            id,
            category: category.to_string(),
            value,
            status: if ported_in {
                InventoryStatus::PortingIn
            } else {
                InventoryStatus::Available
            },
            holder: None,
            hold_until_ms: None,
            ported_in,
            body: serde_json::Value::Object(body).to_string(),
            created_ms: now_ms,
            updated_ms: now_ms,
        });
    }
    if header.is_none() {
        return Err(format!("{name}: no header line (category,value,...)"));
    }
    Ok(rows)
}

/// Reads and imports the pool file `path` into `store` (one transaction); the number of
/// resources in the file.
pub async fn import_file(
    store: &crate::store::Store,
    path: &std::path::Path,
) -> Result<usize, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let rows = parse_csv(&name, &text, crate::store::now_ms())?;
    let n = rows.len();
    store
        .import_inventory(rows)
        .await
        .map_err(|e| format!("{name}: not imported: {e}"))?;
    Ok(n)
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_iccids() {
        assert_eq!(msisdn("+34600100001").unwrap(), "34600100001");
        for bad in ["", "+", "3460a", "0034600", "1234", "1234567890123456"] {
            assert!(msisdn(bad).is_err(), "{bad}");
        }
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert_eq!(iccid("8934070000000000015").unwrap(), "8934070000000000015");
        assert!(iccid("8934070000000000016").unwrap_err().contains("Luhn"));
        assert!(
            iccid("893407000000000001")
                .unwrap_err()
                .contains("19 or 20")
        );
        assert!(iccid("89340700000000000x7").is_err());
    }

    #[test]
    fn a_pool_file() {
        let text = "# demo\n\ncategory,value,portedIn,tier\nMSISDN,+34600777777,,gold\n\
                    msisdn,34600200001,true,\nSIM,8934070000000000015,no,\n";
        let rows = parse_csv("p.csv", text, 5).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].id, "msisdn-34600777777");
        assert_eq!(rows[0].body, r#"{"tier":"gold"}"#);
        assert_eq!(rows[0].status, InventoryStatus::Available);
        assert_eq!(rows[1].status, InventoryStatus::PortingIn);
        assert!(rows[1].ported_in);
        assert_eq!(rows[2].category, "ICCID");
        assert_eq!(rows[2].body, "{}");
        assert_eq!(rows[2].created_ms, 5);
    }

    #[test]
    fn errors_name_the_line() {
        let h = "category,value,portedIn\n";
        for (text, want) in [
            ("value,category\n", "p.csv:1: the header"),
            ("category,value,bad col\n", "p.csv:1: column 3"),
            (&format!("{h}MSISDN,123\n") as &str, "p.csv:2: 2 values"),
            (&format!("{h}IMSI,34600100001,\n"), "p.csv:2: category"),
            (&format!("{h}MSISDN,0600100001,\n"), "p.csv:2: value"),
            (
                &format!("{h}ICCID,8934070000000000016,\n"),
                "p.csv:2: value",
            ),
            (
                &format!("{h}MSISDN,34600100001,maybe\n"),
                "p.csv:2: portedIn",
            ),
            (
                &format!("{h}ICCID,8934070000000000015,true\n"),
                "p.csv:2: portedIn",
            ),
            (
                &format!("{h}MSISDN,34600100001,\n# x\nMSISDN,+34600100001,\n"),
                "p.csv:4: MSISDN 34600100001 is on line 2",
            ),
            ("# only a comment\n", "p.csv: no header"),
        ] {
            let e = parse_csv("p.csv", text, 0).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}
