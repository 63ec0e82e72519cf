//! The catalog in the store, and its import: a JSON array of TMF620 resources validated as a
//! whole, then written in one transaction ([`Store::write_all`]).
//!
//! ```text
//! store row id                         kind                           state
//! tmf620.productOffering.<id>          tmf620.productOffering         active | retired
//! tmf620.productOfferingPrice.<id>     tmf620.productOfferingPrice    active | retired
//! tmf620.category.<id>                 tmf620.category                active | retired
//! tmf620.productSpecification.<id>     tmf620.productSpecification    active | retired
//! tmf620.import                        tmf620.import                  {sha256, entries, importedAt}
//! ```
//!
//! Every row's body is the TMF document as imported (numbers as written: serde_json
//! `arbitrary_precision`), with `href` set by the gateway (top level, and on the references
//! to other entries of the catalog). An import replaces the catalog: an entry no longer in
//! the file is kept, `retired` (never served; the store has no delete, and an order that
//! names it can still be explained); `--merge` keeps the others active instead. Readers go
//! to the store on every request, so every instance on one PostgreSQL serves one catalog.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::store::{ResourceFilter, ResourceRow, Store, StoreError, Write};

/// The base path of the family.
pub const BASE: &str = "/tmf-api/productCatalogManagement/v4";
/// The application recorded as the rows' owner (the catalog is everyone's to read).
pub const OWNER: &str = "catalog";
/// State of an entry served.
pub const ACTIVE: &str = "active";
/// State of an entry no longer in the imported file.
pub const RETIRED: &str = "retired";
/// Row (id and kind) of the last import's record (its content hash).
pub const IMPORT_ROW: &str = "tmf620.import";
/// Largest catalog file read.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most errors one refused import reports.
const MAX_ERRORS: usize = 50;

/// The four resources of the read side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ProductOffering,
    ProductOfferingPrice,
    Category,
    ProductSpecification,
}

/// How a filterable attribute compares with a query value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    Text,
    Bool,
    Number,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::ProductOffering,
        Kind::ProductOfferingPrice,
        Kind::Category,
        Kind::ProductSpecification,
    ];

    /// The `@type` of the resource.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::ProductOffering => "ProductOffering",
            Self::ProductOfferingPrice => "ProductOfferingPrice",
            Self::Category => "Category",
            Self::ProductSpecification => "ProductSpecification",
        }
    }

    /// The path segment of its collection.
    pub fn segment(self) -> &'static str {
        match self {
            Self::ProductOffering => "productOffering",
            Self::ProductOfferingPrice => "productOfferingPrice",
            Self::Category => "category",
            Self::ProductSpecification => "productSpecification",
        }
    }

    pub fn from_type(t: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == t)
    }

    /// The store's `kind` column.
    pub fn store_kind(self) -> String {
        format!("tmf620.{}", self.segment())
    }

    /// The store row id of the entry `id`.
    pub fn row_id(self, id: &str) -> String {
        format!("tmf620.{}.{id}", self.segment())
    }

    pub fn href(self, id: &str) -> String {
        format!("{BASE}/{}/{id}", self.segment())
    }

    /// The attribute filters a listing accepts (TMF630: `name=value`, exact match; a dotted
    /// name looks into a reference, or into each reference of an array).
    pub fn filters(self) -> &'static [(&'static str, Scalar)] {
        use Scalar::{Bool, Number, Text};
        match self {
            Self::ProductOffering => &[
                ("id", Text),
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isSellable", Bool),
                ("isBundle", Bool),
                ("@type", Text),
                ("category.id", Text),
                ("category.name", Text),
                ("productSpecification.id", Text),
                ("productOfferingPrice.id", Text),
                ("channel.id", Text),
                ("resourceCandidate.id", Text),
            ],
            Self::ProductOfferingPrice => &[
                ("id", Text),
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("priceType", Text),
                ("recurringChargePeriodType", Text),
                ("recurringChargePeriodLength", Number),
                ("isBundle", Bool),
                ("@type", Text),
                ("price.unit", Text),
                ("price.value", Number),
            ],
            Self::Category => &[
                ("id", Text),
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isRoot", Bool),
                ("parentId", Text),
                ("@type", Text),
            ],
            Self::ProductSpecification => &[
                ("id", Text),
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isBundle", Bool),
                ("brand", Text),
                ("productNumber", Text),
                ("@type", Text),
                ("resourceSpecification.id", Text),
            ],
        }
    }

    /// The references to other entries of the catalog that an import checks: member (a
    /// reference object or an array of them), and the kind they refer to.
    fn references(self) -> &'static [(&'static str, Kind)] {
        match self {
            Self::ProductOffering => &[
                ("productOfferingPrice", Kind::ProductOfferingPrice),
                ("productSpecification", Kind::ProductSpecification),
                ("category", Kind::Category),
                ("bundledProductOffering", Kind::ProductOffering),
            ],
            Self::ProductOfferingPrice => &[("bundledPopRelationship", Kind::ProductOfferingPrice)],
            Self::Category => &[("subCategory", Kind::Category)],
            Self::ProductSpecification => {
                &[("bundledProductSpecification", Kind::ProductSpecification)]
            }
        }
    }

    /// Members that must be a boolean, a string, or an integer when present (so that the
    /// filters on them mean something).
    fn typed_members(self) -> &'static [(&'static str, Scalar)] {
        use Scalar::{Bool, Number, Text};
        match self {
            Self::ProductOffering => &[
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isSellable", Bool),
                ("isBundle", Bool),
            ],
            Self::ProductOfferingPrice => &[
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("priceType", Text),
                ("recurringChargePeriodType", Text),
                ("recurringChargePeriodLength", Number),
                ("isBundle", Bool),
            ],
            Self::Category => &[
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isRoot", Bool),
                ("parentId", Text),
            ],
            Self::ProductSpecification => &[
                ("name", Text),
                ("version", Text),
                ("lifecycleStatus", Text),
                ("isBundle", Bool),
                ("brand", Text),
                ("productNumber", Text),
            ],
        }
    }
}

/// A JSON number as an exact decimal (as written: `9.99`, `1e2`), if it is one.
pub fn decimal(n: &serde_json::Number) -> Option<Decimal> {
    let s = n.to_string();
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .ok()
}

/// Whether `id` can be an entry id (and a path segment of its href).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '%'))
}

// ---- validation --------------------------------------------------------------------------

/// One thing wrong with one entry of an import file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    /// Position in the array, from 0.
    pub index: usize,
    /// The entry's `@type` and `id`, when it has them.
    pub kind: Option<&'static str>,
    pub id: Option<String>,
    /// The member at fault (`price.unit`, `productOfferingPrice[1].id`).
    pub field: String,
    pub why: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.index)?;
        match (&self.kind, &self.id) {
            (Some(k), Some(id)) => write!(f, " ({k} \"{}\")", crate::api::error::clip(id))?,
            (None, Some(id)) => write!(f, " (\"{}\")", crate::api::error::clip(id))?,
            (Some(k), None) => write!(f, " ({k})")?,
            (None, None) => {}
        }
        write!(f, ": {}: {}", self.field, self.why)
    }
}

/// Why an import was refused (nothing of it was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportError {
    /// The file as a whole: unreadable, not JSON, not an array.
    File(String),
    /// These entries are wrong (at most [`MAX_ERRORS`] reported; `more` not shown).
    Entries {
        errors: Vec<EntryError>,
        more: usize,
    },
    Store(StoreError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(why) => write!(f, "catalog refused: {why}"),
            Self::Entries { errors, more } => {
                write!(
                    f,
                    "catalog refused ({} error{}; nothing imported):",
                    errors.len() + more,
                    if errors.len() + more == 1 { "" } else { "s" }
                )?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                if *more > 0 {
                    write!(f, "\n  ... and {more} more")?;
                }
                Ok(())
            }
            Self::Store(e) => write!(f, "catalog not imported: {e}"),
        }
    }
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// One valid entry of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    pub id: String,
    pub body: Map<String, Value>,
}

struct Errors {
    list: Vec<EntryError>,
    more: usize,
}

impl Errors {
    fn push(
        &mut self,
        index: usize,
        kind: Option<Kind>,
        id: Option<&str>,
        field: &str,
        why: impl fmt::Display,
    ) {
        if self.list.len() >= MAX_ERRORS {
            self.more += 1;
            return;
        }
        self.list.push(EntryError {
            index,
            kind: kind.map(Kind::type_name),
            id: id.map(str::to_string),
            field: field.to_string(),
            why: why.to_string(),
        });
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The ids a reference member names: `(field path, id)`; a malformed reference is reported.
fn referenced_ids(
    member: &str,
    v: &Value,
    bad: &mut dyn FnMut(String, String),
) -> Vec<(String, String)> {
    let one = |field: String, r: &Value, bad: &mut dyn FnMut(String, String)| match r.get("id") {
        Some(Value::String(id)) => Some((format!("{field}.id"), id.clone())),
        Some(other) => {
            bad(
                format!("{field}.id"),
                format!("must be a string, not {}", json_type(other)),
            );
            None
        }
        None => {
            bad(
                format!("{field}.id"),
                "required (a reference names an id)".into(),
            );
            None
        }
    };
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                if r.is_object() {
                    one(format!("{member}[{i}]"), r, bad)
                } else {
                    bad(
                        format!("{member}[{i}]"),
                        format!("must be a reference object, not {}", json_type(r)),
                    );
                    None
                }
            })
            .collect(),
        Value::Object(_) => one(member.to_string(), v, bad).into_iter().collect(),
        other => {
            bad(
                member.to_string(),
                format!(
                    "must be a reference (or an array of them), not {}",
                    json_type(other)
                ),
            );
            Vec::new()
        }
    }
}

fn check_price(price: Option<&Value>, bad: &mut dyn FnMut(&str, String)) {
    let Some(price) = price else {
        bad(
            "price",
            "required: {\"value\": <number>, \"unit\": \"<ISO 4217 code>\"}".into(),
        );
        return;
    };
    let Value::Object(m) = price else {
        bad(
            "price",
            format!("must be an object, not {}", json_type(price)),
        );
        return;
    };
    match m.get("value") {
        Some(Value::Number(n)) => match decimal(n) {
            Some(d) if d.is_sign_negative() && !d.is_zero() => {
                bad(
                    "price.value",
                    format!("{n} is negative (TMF620: a positive number)"),
                );
            }
            Some(_) => {}
            None => bad("price.value", format!("{n} is not an exact decimal amount")),
        },
        Some(other) => bad(
            "price.value",
            format!("must be a JSON number, not {}", json_type(other)),
        ),
        None => bad("price.value", "required (a number)".into()),
    }
    match m.get("unit") {
        Some(Value::String(u)) => {
            if crate::credit_control::money::currency(u).is_err() {
                bad(
                    "price.unit",
                    format!(
                        "\"{}\" is not an ISO 4217 currency code",
                        crate::api::error::clip(u)
                    ),
                );
            }
        }
        Some(other) => bad(
            "price.unit",
            format!("must be a string (ISO 4217), not {}", json_type(other)),
        ),
        None => bad(
            "price.unit",
            "required (an ISO 4217 code such as EUR)".into(),
        ),
    }
}

/// Parses and validates a whole file: every entry an object with a known `@type` and a
/// unique (per type) `id`, the typed members of the right JSON type, prices with an exact
/// non-negative `price.value` and an ISO 4217 `price.unit`, and every reference to another
/// entry resolving in the file or in `existing` (the active catalog kept by a merge). Every
/// error found is reported, each naming the entry index, id and field.
pub fn parse(bytes: &[u8], existing: &HashSet<(Kind, String)>) -> Result<Vec<Entry>, ImportError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| ImportError::File(format!("not JSON: {e}")))?;
    let Value::Array(items) = doc else {
        return Err(ImportError::File(format!(
            "must be a JSON array of TMF620 resources, not {}",
            json_type(&doc)
        )));
    };
    let mut errors = Errors {
        list: Vec::new(),
        more: 0,
    };
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    let mut seen: HashMap<(Kind, String), usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(body) = item else {
            errors.push(
                index,
                None,
                None,
                "(entry)",
                format!("must be an object, not {}", json_type(&item)),
            );
            continue;
        };
        let id = match body.get("id") {
            Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
            Some(Value::String(id)) => {
                errors.push(
                    index,
                    None,
                    Some(id),
                    "id",
                    "1 to 200 visible ASCII characters, none of / ? # %",
                );
                None
            }
            Some(other) => {
                errors.push(
                    index,
                    None,
                    None,
                    "id",
                    format!("must be a string, not {}", json_type(other)),
                );
                None
            }
            None => {
                errors.push(index, None, None, "id", "required");
                None
            }
        };
        let kind = match body.get("@type") {
            Some(Value::String(t)) => match Kind::from_type(t) {
                Some(k) => Some(k),
                None => {
                    errors.push(
                        index,
                        None,
                        id.as_deref(),
                        "@type",
                        format!(
                            "\"{}\" is not one of ProductOffering, ProductOfferingPrice, Category, ProductSpecification",
                            crate::api::error::clip(t)
                        ),
                    );
                    None
                }
            },
            Some(other) => {
                errors.push(
                    index,
                    None,
                    id.as_deref(),
                    "@type",
                    format!("must be a string, not {}", json_type(other)),
                );
                None
            }
            None => {
                errors.push(index, None, id.as_deref(), "@type", "required (ProductOffering, ProductOfferingPrice, Category or ProductSpecification)");
                None
            }
        };
        let (Some(kind), Some(id)) = (kind, id) else {
            continue;
        };
        if let Some(first) = seen.get(&(kind, id.clone())) {
            errors.push(
                index,
                Some(kind),
                Some(&id),
                "id",
                format!("already used by entry {first} (ids are unique per @type)"),
            );
            continue;
        }
        seen.insert((kind, id.clone()), index);
        let before = errors.list.len() + errors.more;
        for (member, scalar) in kind.typed_members() {
            let Some(v) = body.get(*member) else { continue };
            let ok = match scalar {
                Scalar::Text => v.is_string(),
                Scalar::Bool => v.is_boolean(),
                Scalar::Number => v.as_u64().is_some(),
            };
            if !ok {
                let want = match scalar {
                    Scalar::Text => "a string",
                    Scalar::Bool => "true or false",
                    Scalar::Number => "a whole number >= 0",
                };
                errors.push(
                    index,
                    Some(kind),
                    Some(&id),
                    member,
                    format!("must be {want}, not {}", json_type(v)),
                );
            }
        }
        if kind == Kind::ProductOfferingPrice {
            check_price(body.get("price"), &mut |field, why| {
                errors.push(index, Some(kind), Some(&id), field, why);
            });
        }
        if errors.list.len() + errors.more == before {
            entries.push((index, Entry { kind, id, body }));
        }
    }
    // References, once every id of the file is known.
    for (index, e) in &entries {
        let mut refs: Vec<(String, Kind, String)> = Vec::new();
        for (member, target) in e.kind.references() {
            if let Some(v) = e.body.get(*member) {
                let mut bad = |field: String, why: String| {
                    errors.push(*index, Some(e.kind), Some(&e.id), &field, why);
                };
                for (field, id) in referenced_ids(member, v, &mut bad) {
                    refs.push((field, *target, id));
                }
            }
        }
        if e.kind == Kind::Category
            && let Some(Value::String(p)) = e.body.get("parentId")
        {
            refs.push(("parentId".into(), Kind::Category, p.clone()));
        }
        for (field, target, id) in refs {
            let key = (target, id);
            if !seen.contains_key(&key) && !existing.contains(&key) {
                errors.push(
                    *index,
                    Some(e.kind),
                    Some(&e.id),
                    &field,
                    format!(
                        "no {} \"{}\" in the file{}",
                        target.type_name(),
                        crate::api::error::clip(&key.1),
                        if existing.is_empty() {
                            ""
                        } else {
                            " or the catalog"
                        }
                    ),
                );
            }
        }
    }
    if errors.list.is_empty() {
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    } else {
        Err(ImportError::Entries {
            errors: errors.list,
            more: errors.more,
        })
    }
}

/// The document served for an entry: `href` set on it and on each reference to another entry.
fn served(e: &Entry) -> Map<String, Value> {
    // id and href first, then the document's members in the file's order.
    let mut body = Map::new();
    body.insert("id".into(), Value::String(e.id.clone()));
    body.insert("href".into(), Value::String(e.kind.href(&e.id)));
    for (k, v) in &e.body {
        if k != "id" && k != "href" {
            body.insert(k.clone(), v.clone());
        }
    }
    for (member, target) in e.kind.references() {
        let set = |r: &mut Value| {
            if let Some(m) = r.as_object_mut()
                && let Some(Value::String(id)) = m.get("id")
            {
                let href = target.href(id);
                m.insert("href".into(), Value::String(href));
            }
        };
        match body.get_mut(*member) {
            Some(Value::Array(items)) => items.iter_mut().for_each(set),
            Some(v @ Value::Object(_)) => set(v),
            _ => {}
        }
    }
    body
}

// ---- import --------------------------------------------------------------------------------

/// What to do with the entries of the catalog that the file does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// They are retired (the file is the whole catalog).
    Replace,
    /// They stay as they are; references may name them.
    Merge,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub sha256: String,
    /// Entries of the file, per `@type`.
    pub entries: Vec<(&'static str, usize)>,
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub retired: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per: Vec<String> = self
            .entries
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        write!(
            f,
            "catalog imported ({}): {} added, {} changed, {} unchanged, {} retired; sha256 {}",
            per.join(", "),
            self.added,
            self.changed,
            self.unchanged,
            self.retired,
            self.sha256
        )
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every row of one kind (active and retired).
async fn rows(store: &Store, kind: Kind) -> Result<Vec<ResourceRow>, StoreError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(kind.store_kind()),
            ascending: true,
            ..ResourceFilter::default()
        })
        .await?;
    Ok(rows)
}

/// Validates `bytes` and, when every entry is valid, writes the catalog in one transaction
/// with the record of its hash. Nothing is written when anything is wrong.
pub async fn import(
    store: &Store,
    bytes: &[u8],
    mode: Mode,
    now_ms: i64,
) -> Result<Summary, ImportError> {
    let mut stored: HashMap<String, ResourceRow> = HashMap::new();
    for kind in Kind::ALL {
        for r in rows(store, kind).await? {
            stored.insert(r.id.clone(), r);
        }
    }
    let existing: HashSet<(Kind, String)> = match mode {
        Mode::Replace => HashSet::new(),
        Mode::Merge => Kind::ALL
            .into_iter()
            .flat_map(|k| {
                let prefix = format!("tmf620.{}.", k.segment());
                stored
                    .values()
                    .filter(move |r| r.kind == k.store_kind() && r.state == ACTIVE)
                    .filter_map(move |r| r.id.strip_prefix(&prefix).map(|id| (k, id.to_string())))
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    let entries = parse(bytes, &existing)?;
    let mut summary = Summary {
        sha256: sha256_hex(bytes),
        entries: Kind::ALL
            .into_iter()
            .map(|k| {
                (
                    k.type_name(),
                    entries.iter().filter(|e| e.kind == k).count(),
                )
            })
            .collect(),
        ..Summary::default()
    };
    let mut writes = Vec::new();
    let mut in_file = HashSet::new();
    for e in &entries {
        let id = e.kind.row_id(&e.id);
        let body = Value::Object(served(e)).to_string();
        let old = stored.get(&id);
        match old {
            Some(r) if r.state == ACTIVE && r.body == body => summary.unchanged += 1,
            _ => {
                if old.is_some() {
                    summary.changed += 1;
                } else {
                    summary.added += 1;
                }
                writes.push(Write::Resource(ResourceRow {
                    id: id.clone(),
                    app: OWNER.into(),
                    kind: e.kind.store_kind(),
                    state: ACTIVE.into(),
                    parent: None,
                    due_ms: None,
                    body,
                    created_ms: old.map_or(now_ms, |r| r.created_ms),
                    updated_ms: now_ms,
                }));
            }
        }
        in_file.insert(id);
    }
    if mode == Mode::Replace {
        let mut gone: Vec<&ResourceRow> = stored
            .values()
            .filter(|r| r.state == ACTIVE && !in_file.contains(&r.id))
            .collect();
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        for r in gone {
            summary.retired += 1;
            writes.push(Write::Resource(ResourceRow {
                state: RETIRED.into(),
                updated_ms: now_ms,
                ..r.clone()
            }));
        }
    }
    let imported_at =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    writes.push(Write::Resource(ResourceRow {
        id: IMPORT_ROW.into(),
        app: OWNER.into(),
        kind: IMPORT_ROW.into(),
        state: ACTIVE.into(),
        parent: None,
        due_ms: None,
        body: json!({
            "sha256": summary.sha256,
            "entries": entries.len(),
            "mode": match mode { Mode::Replace => "replace", Mode::Merge => "merge" },
            "importedAt": imported_at,
        })
        .to_string(),
        created_ms: now_ms,
        updated_ms: now_ms,
    }));
    store.write_all(writes).await?;
    Ok(summary)
}

/// The SHA-256 recorded with the last import, if any.
pub async fn recorded_hash(store: &Store) -> Result<Option<String>, StoreError> {
    Ok(store.resource(IMPORT_ROW).await?.and_then(|r| {
        serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|b| b.get("sha256").and_then(Value::as_str).map(str::to_string))
    }))
}

/// Reads a catalog file (at most [`MAX_FILE_BYTES`]).
pub fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    let what = |e: std::io::Error| ImportError::File(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(what)?.len();
    if len > MAX_FILE_BYTES {
        return Err(ImportError::File(format!(
            "{}: {len} bytes, more than {MAX_FILE_BYTES}",
            path.display()
        )));
    }
    std::fs::read(path).map_err(what)
}

/// Where the catalog is read from: `[catalog] file` or `[catalog] upstream`.
#[derive(Clone, Debug)]
pub enum Source {
    File(std::path::PathBuf),
    Upstream(super::upstream::Upstream),
}

impl Source {
    /// The one configured (none: the catalog is what was last imported).
    pub fn of(cfg: &crate::config::catalog::CatalogConfig) -> Option<Self> {
        if let Some(base) = &cfg.upstream {
            return Some(Self::Upstream(super::upstream::Upstream {
                base: base.clone(),
                token: cfg.upstream_token.clone().filter(|t| !t.is_empty()),
                timeout: cfg.upstream_timeout,
            }));
        }
        cfg.file.clone().map(Self::File)
    }

    /// The catalog's bytes: the file, or the upstream's listings as one array.
    pub async fn read(&self) -> Result<Vec<u8>, ImportError> {
        match self {
            Self::File(path) => read_file(path),
            Self::Upstream(u) => u.fetch().await,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Upstream(u) => write!(f, "upstream {}", u.base),
        }
    }
}

/// `bytes` imported (replacing the catalog) when their content hash is not the one recorded;
/// `None` when it was already.
pub async fn import_if_changed(
    store: &Store,
    bytes: &[u8],
) -> Result<Option<Summary>, ImportError> {
    if recorded_hash(store).await?.as_deref() == Some(sha256_hex(bytes).as_str()) {
        return Ok(None);
    }
    import(store, bytes, Mode::Replace, crate::store::now_ms())
        .await
        .map(Some)
}

/// The source read and imported when it changed.
pub async fn sync(store: &Store, source: &Source) -> Result<Option<Summary>, ImportError> {
    let bytes = source.read().await?;
    import_if_changed(store, &bytes).await
}

/// Reads `source` every `every` and imports it when it changed; an invalid catalog or an
/// unreachable upstream is logged and the catalog kept. Aborted by the caller at shutdown
/// (an import is one transaction).
pub fn spawn_reload(store: Store, source: Source, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match sync(&store, &source).await {
                Ok(Some(s)) => tracing::info!(source = %source, "{s}"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(source = %source, "catalog reload: {e}; the catalog is kept")
                }
            }
        }
    })
}

// ---- reading -------------------------------------------------------------------------------

/// The active entries of one kind, oldest first (by import, then id), as served.
pub async fn list(store: &Store, kind: Kind) -> Result<Vec<Map<String, Value>>, StoreError> {
    let (rows, _) = store
        .resources(ResourceFilter {
            kind: Some(kind.store_kind()),
            state: Some(ACTIVE.into()),
            ascending: true,
            ..ResourceFilter::default()
        })
        .await?;
    rows.iter().map(document).collect()
}

/// One active entry, as served.
pub async fn get(
    store: &Store,
    kind: Kind,
    id: &str,
) -> Result<Option<Map<String, Value>>, StoreError> {
    match store.resource(&kind.row_id(id)).await? {
        Some(r) if r.kind == kind.store_kind() && r.state == ACTIVE => document(&r).map(Some),
        _ => Ok(None),
    }
}

fn document(r: &ResourceRow) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str::<Value>(&r.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) | Err(_) => Err(StoreError(format!(
            "catalog row {} is not a JSON object",
            r.id
        ))),
    }
}

/// The price of a ProductOfferingPrice document, exactly: `(value, ISO 4217 code)`.
pub fn price_of(doc: &Map<String, Value>) -> Option<(Decimal, String)> {
    let p = doc.get("price")?;
    let value = match p.get("value")? {
        Value::Number(n) => decimal(n)?,
        _ => return None,
    };
    Some((value, p.get("unit")?.as_str()?.to_string()))
}

/// `gateway serve` start: the configured source imported when it changed since the last
/// import (an invalid file stops the start: the error names the entries; an upstream that
/// cannot be read is logged and the last synced catalog served), and the periodic reload when
/// `reload_interval` is set (abort its handle at shutdown).
pub async fn start(
    store: &Store,
    cfg: &crate::config::catalog::CatalogConfig,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(source) = Source::of(cfg) else {
        return Ok(None);
    };
    match (sync(store, &source).await, &source) {
        (Ok(Some(s)), _) => tracing::info!(source = %source, "{s}"),
        (Ok(None), _) => {
            tracing::info!(source = %source, "catalog unchanged since its last import")
        }
        (Err(e), Source::File(path)) => {
            return Err(format!("catalog.file {}: {e}", path.display()));
        }
        (Err(e), Source::Upstream(_)) => tracing::warn!(
            source = %source,
            "catalog not synced at start: {e}; serving the catalog of the last sync{}",
            if cfg.reload_interval.is_some() { ", trying again at each reload" } else { "" }
        ),
    }
    Ok(cfg
        .reload_interval
        .map(|every| spawn_reload(store.clone(), source, every)))
}
