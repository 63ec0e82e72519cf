//! Run-time dictionaries: which AVPs exist, their types and flag rules, and each command's
//! grammar (RFC 6733 section 3.2 CCF), loaded from `dictionaries/*.xml` at start-up.
//!
//! ```text
//! dictionaries/*.xml --[load]--> Dictionary --(AvpTypes)--> codec: which AVPs are Grouped
//!                                           --(check)-----> 5001/5005/5008/5009/5016/3008
//!                                           --(names)-----> `gateway decode`, logs, JSON
//! ```
//!
//! The format is documented in `dictionaries/README.md`. Lookups on the decode path are an
//! array index for codes under [`DENSE_CODES`] and a hash lookup above.

mod check;
mod load;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::diameter::codec::{
    ApplicationId, AvpCode, AvpFlags, AvpTypes, CommandCode, DataType, VendorId,
};

pub use load::DictError;

/// Codes below this are looked up by array index (per vendor).
pub const DENSE_CODES: u32 = 8192;

/// Where a definition was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One AVP definition.
#[derive(Clone, Debug)]
pub struct AvpDef {
    pub name: String,
    pub code: AvpCode,
    pub vendor: VendorId,
    pub data_type: DataType,
    /// Flag bits (V, M, P) that must be set.
    pub must: AvpFlags,
    pub may: AvpFlags,
    /// Flag bits that must be clear.
    pub must_not: AvpFlags,
    /// Enumerated values, in file order.
    pub items: Vec<(i32, String)>,
    /// The members of a Grouped AVP.
    pub grammar: Option<Grammar>,
    pub origin: Origin,
}

impl AvpDef {
    /// The name of an Enumerated value.
    pub fn item_name(&self, value: i32) -> Option<&str> {
        self.items
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, n)| n.as_str())
    }

    /// The value of an Enumerated name.
    pub fn item_value(&self, name: &str) -> Option<i32> {
        self.items.iter().find(|(_, n)| n == name).map(|(v, _)| *v)
    }
}

/// A command and the grammar of its request and answer.
#[derive(Clone, Debug)]
pub struct CommandDef {
    pub code: CommandCode,
    pub application: ApplicationId,
    pub name: String,
    pub short: Option<String>,
    /// The P bit the header must carry.
    pub proxiable: bool,
    pub request: Grammar,
    pub answer: Grammar,
    pub origin: Origin,
}

impl CommandDef {
    /// "Credit-Control-Request" / "Credit-Control-Answer".
    pub fn message_name(&self, request: bool) -> String {
        format!(
            "{}-{}",
            self.name,
            if request { "Request" } else { "Answer" }
        )
    }

    /// "CCR" / "CCA".
    pub fn short_name(&self, request: bool) -> Option<String> {
        self.short
            .as_ref()
            .map(|s| format!("{s}{}", if request { 'R' } else { 'A' }))
    }
}

/// A message or Grouped grammar: the listed AVPs with their occurrence bounds.
#[derive(Clone, Debug, Default)]
pub struct Grammar {
    pub rules: Vec<Rule>,
    /// `* [ AVP ]`: AVPs not listed are allowed.
    pub any: bool,
}

/// One line of a grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Index of the AVP in the dictionary.
    pub avp: usize,
    pub min: u32,
    pub max: Option<u32>,
    /// `< AVP >`: must sit at its place at the head of the message.
    pub fixed: bool,
}

/// An application declared by a dictionary file.
#[derive(Clone, Debug)]
pub struct ApplicationDef {
    pub id: ApplicationId,
    pub name: String,
}

/// Every loaded definition, indexed for the decode path.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    avps: Vec<AvpDef>,
    ietf: Vec<Entry>,
    /// Per-vendor tables; a handful of vendors at most, so a short list beats hashing.
    dense: Vec<(u32, Vec<Entry>)>,
    sparse: FxHashMap<(u32, u32), Entry>,
    by_name: HashMap<String, usize>,
    commands: Vec<CommandDef>,
    command_index: FxHashMap<(u32, u32), usize>,
    applications: Vec<ApplicationDef>,
    vendors: HashMap<u32, String>,
    error_answer: Option<Grammar>,
}

const NONE: u32 = u32::MAX;

/// What the decode path needs of a definition, in 8 bytes: no trip to the `AvpDef`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    index: u32,
    ty: Option<DataType>,
}

const EMPTY: Entry = Entry {
    index: NONE,
    ty: None,
};

/// The dictionaries shipped in `dictionaries/`, compiled in for tests, benchmarks, fuzzing and
/// `gateway decode` without `--dict`.
pub const BUILTIN: [(&str, &str); 3] = [
    (
        "dictionaries/base.xml",
        include_str!("../../../dictionaries/base.xml"),
    ),
    (
        "dictionaries/credit_control.xml",
        include_str!("../../../dictionaries/credit_control.xml"),
    ),
    (
        "dictionaries/3gpp_ts32299.xml",
        include_str!("../../../dictionaries/3gpp_ts32299.xml"),
    ),
];

impl Dictionary {
    /// Loads every `*.xml` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, DictError> {
        load::load_dir(dir)
    }

    /// Loads named XML texts (`(file name, contents)`), as if they were files.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Self, DictError> {
        load::from_sources(sources)
    }

    /// The bundled dictionaries ([`BUILTIN`]).
    pub fn builtin() -> Result<Self, DictError> {
        Self::from_sources(&BUILTIN)
    }

    pub fn avps(&self) -> &[AvpDef] {
        &self.avps
    }

    pub fn commands(&self) -> &[CommandDef] {
        &self.commands
    }

    #[inline(always)]
    fn entry(&self, code: AvpCode, vendor: VendorId) -> Option<Entry> {
        if vendor == VendorId::IETF
            && let Some(e) = self.ietf.get(code.0 as usize)
        {
            return Some(*e);
        }
        self.entry_slow(code, vendor)
    }

    #[inline(never)]
    fn entry_slow(&self, code: AvpCode, vendor: VendorId) -> Option<Entry> {
        if code.0 < DENSE_CODES {
            if vendor == VendorId::IETF {
                return None;
            }
            let (_, table) = self.dense.iter().find(|(v, _)| *v == vendor.0)?;
            table.get(code.0 as usize).copied()
        } else {
            self.sparse.get(&(vendor.0, code.0)).copied()
        }
    }

    fn index_of(&self, code: AvpCode, vendor: VendorId) -> Option<usize> {
        self.entry(code, vendor)
            .filter(|e| e.index != NONE)
            .map(|e| e.index as usize)
    }

    /// The definition of (code, vendor); vendor 0 for AVPs without a Vendor-ID.
    pub fn avp(&self, code: AvpCode, vendor: VendorId) -> Option<&AvpDef> {
        self.index_of(code, vendor).and_then(|i| self.avps.get(i))
    }

    pub fn avp_by_name(&self, name: &str) -> Option<&AvpDef> {
        self.by_name.get(name).and_then(|i| self.avps.get(*i))
    }

    pub(crate) fn avp_at(&self, index: usize) -> Option<&AvpDef> {
        self.avps.get(index)
    }

    /// The command (code) of `application`, or of the base protocol (application 0).
    pub fn command(&self, application: ApplicationId, code: CommandCode) -> Option<&CommandDef> {
        self.command_index
            .get(&(application.0, code.0))
            .or_else(|| self.command_index.get(&(0, code.0)))
            .and_then(|i| self.commands.get(*i))
    }

    pub fn application(&self, id: ApplicationId) -> Option<&ApplicationDef> {
        self.applications.iter().find(|a| a.id == id)
    }

    pub fn vendor_name(&self, id: VendorId) -> Option<&str> {
        self.vendors.get(&id.0).map(String::as_str)
    }

    /// The grammar of answers with the E bit (RFC 6733 section 7.2).
    pub fn error_answer(&self) -> Option<&Grammar> {
        self.error_answer.as_ref()
    }

    fn insert_index(&mut self, code: u32, vendor: u32, index: u32, ty: DataType) {
        let entry = Entry {
            index,
            ty: Some(ty),
        };
        if code < DENSE_CODES {
            let table = if vendor == 0 {
                &mut self.ietf
            } else {
                let at = match self.dense.iter().position(|(v, _)| *v == vendor) {
                    Some(at) => at,
                    None => {
                        self.dense.push((vendor, Vec::new()));
                        self.dense.len() - 1
                    }
                };
                match self.dense.get_mut(at) {
                    Some((_, t)) => t,
                    None => return,
                }
            };
            if table.len() <= code as usize {
                table.resize(code as usize + 1, EMPTY);
            }
            if let Some(slot) = table.get_mut(code as usize) {
                *slot = entry;
            }
        } else {
            self.sparse.insert((vendor, code), entry);
        }
    }
}

impl AvpTypes for Dictionary {
    #[inline]
    fn data_type(&self, code: AvpCode, vendor: VendorId) -> Option<DataType> {
        self.entry(code, vendor).and_then(|e| e.ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_loads_and_knows_the_basics() {
        let d = Dictionary::builtin().unwrap();
        let sid = d.avp(AvpCode::SESSION_ID, VendorId::IETF).unwrap();
        assert_eq!(sid.name, "Session-Id");
        assert_eq!(sid.data_type, DataType::Utf8String);
        let mscc = d.avp_by_name("Multiple-Services-Credit-Control").unwrap();
        assert_eq!(mscc.code, AvpCode(456));
        assert_eq!(mscc.data_type, DataType::Grouped);
        let crt = d.avp(AvpCode::CC_REQUEST_TYPE, VendorId::IETF).unwrap();
        assert_eq!(crt.item_name(1), Some("INITIAL_REQUEST"));
        assert_eq!(crt.item_value("EVENT_REQUEST"), Some(4));
        let si = d.avp(AvpCode::SERVICE_INFORMATION, VendorId::TGPP).unwrap();
        assert_eq!(si.name, "Service-Information");
        assert!(
            d.avp(AvpCode::SERVICE_INFORMATION, VendorId::IETF)
                .is_none()
        );
        let ccr = d
            .command(ApplicationId::CREDIT_CONTROL, CommandCode::CREDIT_CONTROL)
            .unwrap();
        assert_eq!(ccr.short_name(true).as_deref(), Some("CCR"));
        // CER is found for any application through application 0.
        let cer = d
            .command(
                ApplicationId::CREDIT_CONTROL,
                CommandCode::CAPABILITIES_EXCHANGE,
            )
            .unwrap();
        assert!(!cer.proxiable);
        assert!(d.error_answer().is_some());
        assert_eq!(d.vendor_name(VendorId::TGPP), Some("3GPP"));
    }
}
