//! Reading dictionary XML files (format: `dictionaries/README.md`).
//!
//! Two passes: every file is read into definitions whose grammar rules still name AVPs by
//! name; then names are resolved across all files. Every refusal names the file, the line and
//! the reason.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use roxmltree::{Document, Node, ParsingOptions};

use super::{ApplicationDef, AvpDef, CommandDef, Dictionary, Grammar, NONE, Origin, Rule};
use crate::diameter::codec::{ApplicationId, AvpCode, AvpFlags, CommandCode, DataType, VendorId};

/// A dictionary file that cannot be used: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictError {
    pub file: String,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file, self.reason)
        }
    }
}

impl std::error::Error for DictError {}

/// Largest dictionary file accepted (a guard against reading something that is not one).
const MAX_FILE_LEN: u64 = 16 << 20;

pub(super) fn load_dir(dir: &Path) -> Result<Dictionary, DictError> {
    let err = |reason: String| DictError {
        file: dir.display().to_string(),
        line: 0,
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| err(format!("cannot read directory: {e}")))?
            .path();
        if path.extension().is_some_and(|x| x == "xml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(err("no *.xml dictionary file found".into()));
    }
    let mut texts = Vec::with_capacity(paths.len());
    for p in &paths {
        let name = p.display().to_string();
        let ferr = |reason: String| DictError {
            file: name.clone(),
            line: 0,
            reason,
        };
        let len = std::fs::metadata(p).map_err(|e| ferr(e.to_string()))?.len();
        if len > MAX_FILE_LEN {
            return Err(ferr(format!(
                "file of {len} bytes is over the {MAX_FILE_LEN}-byte limit"
            )));
        }
        let text = std::fs::read_to_string(p).map_err(|e| ferr(format!("cannot read: {e}")))?;
        texts.push((name, text));
    }
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    from_sources(&refs)
}

pub(super) fn from_sources(sources: &[(&str, &str)]) -> Result<Dictionary, DictError> {
    let mut loader = Loader::default();
    for (name, text) in sources {
        loader.file(name, text)?;
    }
    loader.finish()
}

/// A rule before names are resolved.
struct PendingRule {
    avp: String,
    min: u32,
    max: Option<u32>,
    fixed: bool,
    origin: Origin,
}

#[derive(Default)]
struct PendingGrammar {
    rules: Vec<PendingRule>,
    any: bool,
}

struct PendingAvp {
    def: AvpDef,
    grammar: Option<PendingGrammar>,
}

struct PendingCommand {
    def: CommandDef,
    request: PendingGrammar,
    answer: PendingGrammar,
}

#[derive(Default)]
struct Loader {
    avps: Vec<PendingAvp>,
    commands: Vec<PendingCommand>,
    applications: Vec<(ApplicationDef, Origin)>,
    vendors: HashMap<u32, (String, Origin)>,
    error_answer: Option<(PendingGrammar, Origin)>,
}

/// Reading one file.
struct FileCtx {
    name: Arc<str>,
    /// Byte offset of the start of each line, for line numbers in O(log n) (roxmltree's own
    /// `text_pos_at` scans from the start of the text on every call).
    line_starts: Vec<usize>,
}

impl FileCtx {
    fn new(name: &str, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: Arc::from(name),
            line_starts,
        }
    }

    fn line(&self, node: Node<'_, '_>) -> u32 {
        let at = node.range().start;
        let line = self.line_starts.partition_point(|start| *start <= at);
        u32::try_from(line).unwrap_or(u32::MAX)
    }

    fn origin(&self, node: Node<'_, '_>) -> Origin {
        Origin {
            file: self.name.clone(),
            line: self.line(node),
        }
    }

    fn error(&self, node: Node<'_, '_>, reason: impl Into<String>) -> DictError {
        DictError {
            file: self.name.to_string(),
            line: self.line(node),
            reason: reason.into(),
        }
    }

    fn attr<'n>(&self, node: Node<'n, '_>, name: &str) -> Result<&'n str, DictError> {
        node.attribute(name).ok_or_else(|| {
            self.error(
                node,
                format!("<{}> needs the attribute {name}", node.tag_name().name()),
            )
        })
    }

    fn number<T: TryFrom<i64>>(
        &self,
        node: Node<'_, '_>,
        name: &str,
        text: &str,
    ) -> Result<T, DictError> {
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => text.trim().parse::<i64>(),
        };
        parsed
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| {
                self.error(
                    node,
                    format!("{name}=\"{text}\" is not a valid number here"),
                )
            })
    }

    fn bool_attr(&self, node: Node<'_, '_>, name: &str, default: bool) -> Result<bool, DictError> {
        match node.attribute(name) {
            None => Ok(default),
            Some("true" | "yes" | "1") => Ok(true),
            Some("false" | "no" | "0") => Ok(false),
            Some(v) => Err(self.error(node, format!("{name}=\"{v}\" must be true or false"))),
        }
    }

    fn flags(&self, node: Node<'_, '_>, name: &str) -> Result<AvpFlags, DictError> {
        let mut bits = 0u8;
        for c in node.attribute(name).unwrap_or("").chars() {
            bits |= match c.to_ascii_uppercase() {
                'V' => AvpFlags::VENDOR,
                'M' => AvpFlags::MANDATORY,
                'P' => AvpFlags::PROTECTED,
                ',' | ' ' | '-' => 0,
                other => {
                    return Err(self.error(
                        node,
                        format!("{name}: unknown flag '{other}' (use V, M, P)"),
                    ));
                }
            };
        }
        Ok(AvpFlags(bits))
    }
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

impl Loader {
    fn file(&mut self, name: &str, text: &str) -> Result<(), DictError> {
        let opts = ParsingOptions {
            allow_dtd: false,
            nodes_limit: 1 << 20,
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, opts).map_err(|e| DictError {
            file: name.to_string(),
            line: e.pos().row,
            reason: format!("not well-formed XML: {e}"),
        })?;
        let ctx = FileCtx::new(name, text);
        let root = doc.root_element();
        if root.tag_name().name() != "diameter" {
            return Err(ctx.error(root, "the root element must be <diameter>"));
        }
        for node in elements(root) {
            match node.tag_name().name() {
                "vendor" => self.vendor(&ctx, node)?,
                "application" => self.application(&ctx, node)?,
                "avp" => self.avp(&ctx, node)?,
                "error-answer" => {
                    if let Some((_, first)) = &self.error_answer {
                        return Err(
                            ctx.error(node, format!("<error-answer> already defined at {first}"))
                        );
                    }
                    self.error_answer = Some((grammar(&ctx, node)?, ctx.origin(node)));
                }
                other => {
                    return Err(
                        ctx.error(node, format!("unexpected element <{other}> in <diameter>"))
                    );
                }
            }
        }
        Ok(())
    }

    fn vendor(&mut self, ctx: &FileCtx, node: Node<'_, '_>) -> Result<(), DictError> {
        let id: u32 = ctx.number(node, "id", ctx.attr(node, "id")?)?;
        let name = ctx.attr(node, "name")?.to_string();
        if let Some((existing, at)) = self.vendors.get(&id) {
            if *existing != name {
                return Err(ctx.error(
                    node,
                    format!("vendor {id} already defined as \"{existing}\" at {at}"),
                ));
            }
            return Ok(());
        }
        self.vendors.insert(id, (name, ctx.origin(node)));
        Ok(())
    }

    fn application(&mut self, ctx: &FileCtx, node: Node<'_, '_>) -> Result<(), DictError> {
        let id = ApplicationId(ctx.number(node, "id", ctx.attr(node, "id")?)?);
        let name = ctx.attr(node, "name")?.to_string();
        if let Some(t) = node.attribute("type")
            && t != "auth"
            && t != "acct"
        {
            return Err(ctx.error(node, format!("type=\"{t}\" must be auth or acct")));
        }
        if let Some((_, at)) = self.applications.iter().find(|(a, _)| a.id == id) {
            return Err(ctx.error(
                node,
                format!("application {} already defined at {at}", id.0),
            ));
        }
        self.applications
            .push((ApplicationDef { id, name }, ctx.origin(node)));
        for child in elements(node) {
            match child.tag_name().name() {
                "vendor" => self.vendor(ctx, child)?,
                "avp" => self.avp(ctx, child)?,
                "command" => self.command(ctx, child, id)?,
                other => {
                    return Err(ctx.error(
                        child,
                        format!("unexpected element <{other}> in <application>"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn command(
        &mut self,
        ctx: &FileCtx,
        node: Node<'_, '_>,
        application: ApplicationId,
    ) -> Result<(), DictError> {
        let code: u32 = ctx.number(node, "code", ctx.attr(node, "code")?)?;
        if code > 0x00FF_FFFF {
            return Err(ctx.error(node, format!("command code {code} does not fit in 24 bits")));
        }
        let name = ctx.attr(node, "name")?.to_string();
        let short = node.attribute("short").map(str::to_string);
        let proxiable = ctx.bool_attr(node, "proxiable", true)?;
        let mut request = None;
        let mut answer = None;
        for child in elements(node) {
            let slot = match child.tag_name().name() {
                "request" => &mut request,
                "answer" => &mut answer,
                other => {
                    return Err(
                        ctx.error(child, format!("unexpected element <{other}> in <command>"))
                    );
                }
            };
            if slot.is_some() {
                return Err(ctx.error(child, format!("<{}> given twice", child.tag_name().name())));
            }
            *slot = Some(grammar(ctx, child)?);
        }
        let (Some(request), Some(answer)) = (request, answer) else {
            return Err(ctx.error(
                node,
                format!("command \"{name}\" needs both <request> and <answer>"),
            ));
        };
        if let Some(first) = self
            .commands
            .iter()
            .find(|c| c.def.code.0 == code && c.def.application == application)
        {
            return Err(ctx.error(
                node,
                format!(
                    "command {code} of application {} already defined at {}",
                    application.0, first.def.origin
                ),
            ));
        }
        self.commands.push(PendingCommand {
            def: CommandDef {
                code: CommandCode(code),
                application,
                name,
                short,
                proxiable,
                request: Grammar::default(),
                answer: Grammar::default(),
                origin: ctx.origin(node),
            },
            request,
            answer,
        });
        Ok(())
    }

    fn avp(&mut self, ctx: &FileCtx, node: Node<'_, '_>) -> Result<(), DictError> {
        let name = ctx.attr(node, "name")?.to_string();
        if name.is_empty() || name == "AVP" {
            return Err(ctx.error(node, format!("\"{name}\" cannot be an AVP name")));
        }
        let code = AvpCode(ctx.number(node, "code", ctx.attr(node, "code")?)?);
        let vendor = VendorId(match node.attribute("vendor-id") {
            Some(v) => ctx.number(node, "vendor-id", v)?,
            None => 0,
        });
        let must = ctx.flags(node, "must")?;
        let may = ctx.flags(node, "may")?;
        let must_not = ctx.flags(node, "must-not")?;
        let here = |reason: String| ctx.error(node, format!("avp \"{name}\": {reason}"));
        if must.0 & must_not.0 != 0 {
            return Err(here("a flag is in both must and must-not".into()));
        }
        if must.is_vendor() != (vendor != VendorId::IETF) {
            return Err(here(
                "V in must and a non-zero vendor-id go together (one is missing)".into(),
            ));
        }
        let mut data_nodes = elements(node).filter(|c| c.tag_name().name() == "data");
        let (Some(data), None) = (data_nodes.next(), data_nodes.next()) else {
            return Err(here("needs exactly one <data type=...> element".into()));
        };
        if let Some(other) = elements(node).find(|c| c.tag_name().name() != "data") {
            return Err(ctx.error(
                other,
                format!("unexpected element <{}> in <avp>", other.tag_name().name()),
            ));
        }
        let type_name = ctx.attr(data, "type")?;
        let data_type = DataType::from_name(type_name)
            .ok_or_else(|| here(format!("unknown data type \"{type_name}\"")))?;
        let mut items = Vec::new();
        let mut group = None;
        match data_type {
            DataType::Grouped => {
                group = Some(grammar(ctx, data)?);
            }
            DataType::Enumerated => {
                for item in elements(data) {
                    if item.tag_name().name() != "item" {
                        return Err(
                            ctx.error(item, "only <item> elements belong in Enumerated data")
                        );
                    }
                    let v: i32 = ctx.number(item, "code", ctx.attr(item, "code")?)?;
                    let n = ctx.attr(item, "name")?.to_string();
                    if items.iter().any(|(x, _)| *x == v) {
                        return Err(ctx.error(item, format!("value {v} listed twice")));
                    }
                    items.push((v, n));
                }
            }
            _ => {
                if let Some(child) = elements(data).next() {
                    return Err(ctx.error(
                        child,
                        format!(
                            "a {type_name} AVP has no <{}> elements",
                            child.tag_name().name()
                        ),
                    ));
                }
            }
        }
        if let Some(first) = self
            .avps
            .iter()
            .find(|a| a.def.code == code && a.def.vendor == vendor)
        {
            return Err(here(format!(
                "code {} vendor {} already defined as \"{}\" at {}",
                code.0, vendor.0, first.def.name, first.def.origin
            )));
        }
        if let Some(first) = self.avps.iter().find(|a| a.def.name == name) {
            return Err(here(format!(
                "name already defined at {}",
                first.def.origin
            )));
        }
        self.avps.push(PendingAvp {
            def: AvpDef {
                name,
                code,
                vendor,
                data_type,
                must,
                may,
                must_not,
                items,
                grammar: None,
                origin: ctx.origin(node),
            },
            grammar: group,
        });
        Ok(())
    }

    fn finish(self) -> Result<Dictionary, DictError> {
        let mut dict = Dictionary::default();
        for (index, a) in self.avps.iter().enumerate() {
            dict.by_name.insert(a.def.name.clone(), index);
        }
        let resolve = |g: &PendingGrammar| -> Result<Grammar, DictError> {
            let mut rules: Vec<Rule> = Vec::with_capacity(g.rules.len());
            for r in &g.rules {
                let Some(&avp) = dict.by_name.get(&r.avp) else {
                    return Err(DictError {
                        file: r.origin.file.to_string(),
                        line: r.origin.line,
                        reason: format!(
                            "rule names \"{}\", which no dictionary file defines",
                            r.avp
                        ),
                    });
                };
                if rules.iter().any(|x| x.avp == avp) {
                    return Err(DictError {
                        file: r.origin.file.to_string(),
                        line: r.origin.line,
                        reason: format!("\"{}\" has two rules in one grammar", r.avp),
                    });
                }
                rules.push(Rule {
                    avp,
                    min: r.min,
                    max: r.max,
                    fixed: r.fixed,
                });
            }
            Ok(Grammar { rules, any: g.any })
        };
        let mut avps = Vec::with_capacity(self.avps.len());
        for a in &self.avps {
            let mut def = a.def.clone();
            def.grammar = a.grammar.as_ref().map(&resolve).transpose()?;
            avps.push(def);
        }
        let mut commands = Vec::with_capacity(self.commands.len());
        for c in &self.commands {
            let mut def = c.def.clone();
            def.request = resolve(&c.request)?;
            def.answer = resolve(&c.answer)?;
            commands.push(def);
        }
        dict.error_answer = self
            .error_answer
            .as_ref()
            .map(|(g, _)| resolve(g))
            .transpose()?;
        for (i, a) in avps.iter().enumerate() {
            let index = u32::try_from(i)
                .ok()
                .filter(|i| *i != NONE)
                .ok_or_else(|| DictError {
                    file: a.origin.file.to_string(),
                    line: a.origin.line,
                    reason: "too many AVP definitions".into(),
                })?;
            dict.insert_index(a.code.0, a.vendor.0, index, a.data_type);
        }
        for (i, c) in commands.iter().enumerate() {
            dict.command_index.insert((c.application.0, c.code.0), i);
        }
        dict.avps = avps;
        dict.commands = commands;
        dict.applications = self.applications.into_iter().map(|(a, _)| a).collect();
        dict.vendors = self.vendors.into_iter().map(|(k, (n, _))| (k, n)).collect();
        Ok(dict)
    }
}

/// Reads the `<rule>` children of a grammar element.
fn grammar(ctx: &FileCtx, node: Node<'_, '_>) -> Result<PendingGrammar, DictError> {
    let mut g = PendingGrammar::default();
    let mut fixed_done = false;
    for r in elements(node) {
        if r.tag_name().name() != "rule" {
            return Err(ctx.error(
                r,
                format!(
                    "unexpected element <{}>; a grammar holds <rule> elements",
                    r.tag_name().name()
                ),
            ));
        }
        let avp = ctx.attr(r, "avp")?;
        if avp == "AVP" {
            g.any = true;
            continue;
        }
        let required = ctx.bool_attr(r, "required", false)?;
        let min = match r.attribute("min") {
            Some(m) => ctx.number(r, "min", m)?,
            None => u32::from(required),
        };
        let max = match r.attribute("max") {
            Some("*") | None => None,
            Some(m) => Some(ctx.number::<u32>(r, "max", m)?),
        };
        if max.is_some_and(|m| m < min || m == 0) {
            return Err(ctx.error(
                r,
                format!("rule \"{avp}\": max must be at least min and above 0"),
            ));
        }
        if required && min == 0 {
            return Err(ctx.error(r, format!("rule \"{avp}\": required with min=\"0\"")));
        }
        let fixed = ctx.bool_attr(r, "fixed", false)?;
        if fixed && fixed_done {
            return Err(ctx.error(r, format!("rule \"{avp}\": fixed rules must come first")));
        }
        if fixed && (min != 1 || max != Some(1)) {
            return Err(ctx.error(
                r,
                format!("rule \"{avp}\": a fixed rule is required with max=\"1\""),
            ));
        }
        fixed_done |= !fixed;
        g.rules.push(PendingRule {
            avp: avp.to_string(),
            min,
            max,
            fixed,
            origin: ctx.origin(r),
        });
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0"?>
<diameter>
  <vendor id="10415" name="3GPP"/>
  <application id="0" name="Base">
    <command code="280" short="DW" name="Device-Watchdog" proxiable="false">
      <request><rule avp="Origin-Host" required="true" max="1"/></request>
      <answer><rule avp="Origin-Host" required="true" max="1"/><rule avp="AVP"/></answer>
    </command>
  </application>
  <avp name="Origin-Host" code="264" must="M" may="P" must-not="V">
    <data type="DiameterIdentity"/>
  </avp>
  <avp name="Acme-Group" code="9000" vendor-id="10415" must="V,M">
    <data type="Grouped"><rule avp="Origin-Host" max="1"/></data>
  </avp>
</diameter>
"#;

    fn load(text: &str) -> Result<Dictionary, DictError> {
        from_sources(&[("test.xml", text)])
    }

    #[test]
    fn good_file() {
        let d = load(GOOD).unwrap();
        assert_eq!(d.avps().len(), 2);
        let g = d.avp(AvpCode(9000), VendorId(10415)).unwrap();
        assert_eq!(g.grammar.as_ref().unwrap().rules.len(), 1);
        assert_eq!(g.origin.line, 13);
        let dw = d.command(ApplicationId(0), CommandCode(280)).unwrap();
        assert!(dw.answer.any && !dw.request.any);
    }

    fn refused(text: &str) -> DictError {
        load(text).expect_err("must be refused")
    }

    #[test]
    fn refusals_name_file_line_and_reason() {
        let e = refused(&GOOD.replace("DiameterIdentity", "Float16"));
        assert_eq!(e.file, "test.xml");
        assert_eq!(e.line, 10);
        assert!(e.reason.contains("unknown data type \"Float16\""), "{e}");
        assert_eq!(
            e.to_string(),
            "test.xml:10: avp \"Origin-Host\": unknown data type \"Float16\""
        );

        let e = refused(&GOOD.replace(
            "<rule avp=\"Origin-Host\" max=\"1\"/>",
            "<rule avp=\"Nope\"/>",
        ));
        assert_eq!(e.line, 14);
        assert!(e.reason.contains("\"Nope\""));

        let e = refused(
            &GOOD
                .replace("code=\"9000\"", "code=\"264\" ")
                .replace("vendor-id=\"10415\" must=\"V,M\"", "must=\"M\""),
        );
        assert!(e.reason.contains("already defined"), "{e}");

        let e = refused(&GOOD.replace("must=\"V,M\"", "must=\"M\""));
        assert!(e.reason.contains("vendor-id"), "{e}");

        let e = refused(&GOOD.replace("<diameter>\n  <vendor", "<diameter>\n  <vendr"));
        assert!(e.reason.contains("<vendr>"), "{e}");

        let e =
            refused("<diameter><avp name=\"x\" code=\"1\"><data type=\"Unsigned32\"/></diameter>");
        assert!(e.reason.contains("not well-formed"), "{e}");
        assert_eq!(e.line, 1);

        let e = refused(&GOOD.replace("code=\"280\"", "code=\"16777216\""));
        assert!(e.reason.contains("24 bits"), "{e}");

        let e = refused(&GOOD.replace(
            "must=\"M\" may=\"P\" must-not=\"V\"",
            "must=\"M\" must-not=\"M\"",
        ));
        assert!(e.reason.contains("both must and must-not"), "{e}");

        let e = refused(&GOOD.replace("code=\"264\"", "code=\"-1\""));
        assert!(e.reason.contains("not a valid number"), "{e}");

        let e = refused(&GOOD.replace("max=\"1\"/></data>", "min=\"3\" max=\"2\"/></data>"));
        assert!(e.reason.contains("max must be"), "{e}");

        let e = refused("<other/>");
        assert!(e.reason.contains("root element"), "{e}");
    }

    #[test]
    fn duplicate_across_files_names_both_places() {
        let other = r#"<diameter><avp name="Host-Again" code="264" must="M"><data type="UTF8String"/></avp></diameter>"#;
        let e = from_sources(&[("a.xml", GOOD), ("b.xml", other)]).unwrap_err();
        assert_eq!(e.file, "b.xml");
        assert!(e.reason.contains("a.xml:10"), "{e}");
    }

    #[test]
    fn directory_loading() {
        let dir = std::env::temp_dir().join(format!("dict-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.xml"), GOOD).unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let d = load_dir(&dir).unwrap();
        assert_eq!(d.avps().len(), 2);
        std::fs::write(dir.join("b.xml"), "<diameter><avp/></diameter>").unwrap();
        let e = load_dir(&dir).unwrap_err();
        assert!(e.file.ends_with("b.xml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load_dir(&dir).is_err());
    }
}
