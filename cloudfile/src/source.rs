//! Reading cloud files: YAML or TOML, one file or a directory of them, into one tree of
//! [`Node`]s that remember where each value was written (file, line, column), so every later
//! error can say where.
//!
//! Both formats end up the same: a scalar is its text as written (`64`, `0.1`, `true`), a
//! list, or a map whose keys keep their position. Documents of a directory are merged section
//! by section (a name declared twice is an error naming both places); then the chosen
//! environment's overrides are merged in and `${variables}` are replaced.

use crate::error::{Diag, Diags};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    /// 1-based.
    pub line: u32,
    /// 1-based.
    pub column: u32,
}

impl Pos {
    pub fn new(file: &Arc<str>, line: usize, column: usize) -> Pos {
        Pos {
            file: file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// A position for values that were not written in a file (command-line variables).
    pub fn synthetic(what: &str) -> Pos {
        Pos {
            file: Arc::from(what),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

impl Serialize for Pos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Pos", 3)?;
        st.serialize_field("file", &*self.file)?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("column", &self.column)?;
        st.end()
    }
}

/// A map key and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// One value of a cloud file.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// YAML's `~` / empty value.
    Null,
    /// Any scalar, as its text.
    Scalar(String),
    List(Vec<Node>),
    /// Entries in the order written (TOML tables: in key order).
    Map(Vec<(Key, Node)>),
}

impl Node {
    pub fn what(&self) -> &'static str {
        match self.value {
            Value::Null => "an empty value",
            Value::Scalar(_) => "a single value",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// By extension: `.yaml` / `.yml` / `.toml`.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// Parses one document. `name` is how errors name the file.
pub fn parse(name: &str, text: &str, format: Format) -> Result<Node, Diags> {
    let file: Arc<str> = Arc::from(name);
    let root = match format {
        Format::Yaml => parse_yaml(&file, text)?,
        Format::Toml => parse_toml(&file, text)?,
    };
    match root.value {
        Value::Map(_) => Ok(root),
        // An empty YAML file is an empty cloud file.
        Value::Null => Ok(Node {
            pos: root.pos,
            value: Value::Map(Vec::new()),
        }),
        _ => Err(Diag::new(&root.pos, "a cloud file must be a mapping of sections").into()),
    }
}

fn parse_yaml(file: &Arc<str>, text: &str) -> Result<Node, Diags> {
    use marked_yaml::{LoadError, LoaderOptions};
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // The loader is not expected to panic, but a cloud file must never crash the command:
    // whatever it does with odd input becomes an error at the start of the file.
    let parsed =
        std::panic::catch_unwind(|| marked_yaml::parse_yaml_with_options(0, text, options));
    let at = |m: &marked_yaml::Marker| Pos::new(file, m.line(), m.column());
    match parsed {
        Err(_) => Err(Diag::new(&Pos::new(file, 1, 1), "unreadable YAML").into()),
        Ok(Ok(node)) => Ok(convert_yaml(file, &node)),
        Ok(Err(e)) => {
            let diag = match &e {
                LoadError::TopLevelMustBeMapping(m) => {
                    Diag::new(&at(m), "a cloud file must be a mapping of sections")
                }
                LoadError::TopLevelMustBeSequence(m) => Diag::new(&at(m), "unexpected list"),
                LoadError::UnexpectedAnchor(m) => Diag::new(
                    &at(m),
                    "YAML anchors and aliases are not accepted in cloud files",
                ),
                LoadError::MappingKeyMustBeScalar(m) => {
                    Diag::new(&at(m), "a key must be a single value")
                }
                LoadError::UnexpectedTag(m) => {
                    Diag::new(&at(m), "YAML tags are not accepted in cloud files")
                }
                LoadError::ScanError(m, scan) => {
                    Diag::new(&at(m), format!("invalid YAML: {}", scan_message(scan)))
                }
                LoadError::DuplicateKey(inner) => {
                    let key = &inner.key;
                    let first = inner.prev_key.span().start().map(at);
                    let pos = key
                        .span()
                        .start()
                        .map(at)
                        .unwrap_or_else(|| Pos::new(file, 1, 1));
                    Diag::new(
                        &pos,
                        format!(
                            "duplicate key {:?}{}",
                            key.as_str(),
                            first.map_or(String::new(), |p| format!(" (first at line {})", p.line))
                        ),
                    )
                }
            };
            Err(diag.into())
        }
    }
}

fn scan_message(e: &impl fmt::Display) -> String {
    // yaml-rust's Display adds " at line L column C", which the position already says.
    let s = e.to_string();
    match s.find(" at byte ").or_else(|| s.find(" at line ")) {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn convert_yaml(file: &Arc<str>, node: &marked_yaml::Node) -> Node {
    use marked_yaml::Node as Y;
    let pos = node
        .span()
        .start()
        .map(|m| Pos::new(file, m.line(), m.column()))
        .unwrap_or_else(|| Pos::new(file, 1, 1));
    let value = match node {
        Y::Scalar(s) => {
            let text = s.as_str();
            // A plain `~` or `null` is YAML's null; an empty value too.
            if s.may_coerce() && (text.is_empty() || text == "~" || text == "null") {
                Value::Null
            } else {
                Value::Scalar(text.to_owned())
            }
        }
        Y::Sequence(seq) => Value::List(seq.iter().map(|n| convert_yaml(file, n)).collect()),
        Y::Mapping(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    let kpos = k
                        .span()
                        .start()
                        .map(|m| Pos::new(file, m.line(), m.column()))
                        .unwrap_or_else(|| pos_clone(file));
                    (
                        Key {
                            name: k.as_str().to_owned(),
                            pos: kpos,
                        },
                        convert_yaml(file, v),
                    )
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

fn pos_clone(file: &Arc<str>) -> Pos {
    Pos::new(file, 1, 1)
}

/// Line and column (1-based) of a byte offset.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    fn at(&self, file: &Arc<str>, text: &str, offset: usize) -> Pos {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset.min(text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Pos::new(file, line, column)
    }
}

fn parse_toml(file: &Arc<str>, text: &str) -> Result<Node, Diags> {
    let lines = Lines::new(text);
    match toml::de::DeTable::parse(text) {
        Ok(table) => {
            let pos = lines.at(file, text, table.span().start);
            Ok(Node {
                pos,
                value: convert_toml_table(file, text, &lines, table.get_ref()),
            })
        }
        Err(e) => {
            let pos = e
                .span()
                .map_or_else(|| Pos::new(file, 1, 1), |s| lines.at(file, text, s.start));
            Err(Diag::new(&pos, format!("invalid TOML: {}", e.message().trim())).into())
        }
    }
}

fn convert_toml_table(
    file: &Arc<str>,
    text: &str,
    lines: &Lines,
    table: &toml::de::DeTable<'_>,
) -> Value {
    Value::Map(
        table
            .iter()
            .map(|(k, v)| {
                (
                    Key {
                        name: k.get_ref().to_string(),
                        pos: lines.at(file, text, k.span().start),
                    },
                    convert_toml(file, text, lines, v),
                )
            })
            .collect(),
    )
}

fn convert_toml(
    file: &Arc<str>,
    text: &str,
    lines: &Lines,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
) -> Node {
    use toml::de::DeValue as T;
    let pos = lines.at(file, text, v.span().start);
    let value = match v.get_ref() {
        T::String(s) => Value::Scalar(s.to_string()),
        T::Integer(i) => Value::Scalar(match i.radix() {
            10 => i.as_str().replace('_', ""),
            r => i64::from_str_radix(&i.as_str().replace('_', ""), r)
                .map_or_else(|_| i.to_string(), |n| n.to_string()),
        }),
        T::Float(f) => Value::Scalar(f.as_str().replace('_', "")),
        T::Boolean(b) => Value::Scalar(b.to_string()),
        T::Datetime(d) => Value::Scalar(d.to_string()),
        T::Array(a) => Value::List(
            a.iter()
                .map(|x| convert_toml(file, text, lines, x))
                .collect(),
        ),
        T::Table(t) => convert_toml_table(file, text, lines, t),
    };
    Node { pos, value }
}

/// The cloud file documents found at `path`: the file itself, or every `*.yaml`, `*.yml`
/// and `*.toml` below the directory (sorted by path; hidden files and directories skipped).
pub fn files_at(path: &Path) -> Result<Vec<PathBuf>, Diags> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Diags::from(Diag::new(
            &Pos::synthetic(&path.display().to_string()),
            format!("cannot read: {e}"),
        ))
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    walk(path, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(Diag::new(
            &Pos::synthetic(&path.display().to_string()),
            "no cloud file (*.yaml, *.yml, *.toml) in this directory",
        )
        .into());
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Diags> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diags::from(Diag::new(
            &Pos::synthetic(&dir.display().to_string()),
            format!("cannot read the directory: {e}"),
        ))
    })?;
    for entry in entries.flatten() {
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if Format::of(&p).is_some() {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads and parses every document at `path` (see [`files_at`]).
pub fn load_documents(path: &Path) -> Result<Vec<Node>, Diags> {
    let mut docs = Vec::new();
    let mut diags = Diags::default();
    for f in files_at(path)? {
        let name = f.display().to_string();
        let format = Format::of(&f).unwrap_or(Format::Yaml);
        match std::fs::read_to_string(&f) {
            Err(e) => diags.push(Diag::new(
                &Pos::synthetic(&name),
                format!("cannot read: {e}"),
            )),
            Ok(text) => match parse(&name, &text, format) {
                Ok(doc) => docs.push(doc),
                Err(d) => diags.extend(d),
            },
        }
    }
    diags.into_result(docs)
}

/// Sections whose entries are a list (concatenated across documents); every other section is
/// a mapping of names (merged, a name twice is an error) and `cloud` is a single value.
const LIST_SECTIONS: &[&str] = &["acls"];

/// Merges the documents of a directory into one, section by section.
pub fn merge_documents(docs: Vec<Node>) -> Result<Node, Diags> {
    let mut iter = docs.into_iter();
    let Some(mut root) = iter.next() else {
        return Err(Diag::new(&Pos::synthetic("cloud file"), "no document").into());
    };
    let mut diags = Diags::default();
    for doc in iter {
        let Value::Map(entries) = doc.value else {
            continue;
        };
        for (k, v) in entries {
            merge_section(&mut root, k, v, &mut diags);
        }
    }
    diags.into_result(root)
}

fn merge_section(root: &mut Node, k: Key, v: Node, diags: &mut Diags) {
    let Value::Map(sections) = &mut root.value else {
        return;
    };
    let Some((first_key, existing)) = sections.iter_mut().find(|(x, _)| x.name == k.name) else {
        sections.push((k, v));
        return;
    };
    match (&mut existing.value, v.value) {
        (Value::List(a), Value::List(b)) if LIST_SECTIONS.contains(&k.name.as_str()) => a.extend(b),
        (Value::Map(a), Value::Map(b)) => {
            for (name, node) in b {
                if let Some((prev, _)) = a.iter().find(|(x, _)| x.name == name.name) {
                    diags.push(Diag::new(
                        &name.pos,
                        format!(
                            "{} {:?} is declared twice (also at {})",
                            section_noun(&k.name),
                            name.name,
                            prev.pos
                        ),
                    ));
                } else {
                    a.push((name, node));
                }
            }
        }
        (Value::Scalar(a), Value::Scalar(b)) if *a == b => {}
        _ => diags.push(Diag::new(
            &k.pos,
            format!(
                "section {:?} is also given at {}, differently",
                k.name, first_key.pos
            ),
        )),
    }
}

/// What an entry of a section is called in messages.
pub fn section_noun(section: &str) -> &str {
    match section {
        "clusters" => "cluster",
        "host_groups" => "host group",
        "hosts" => "host",
        "datastores" => "datastore",
        "security_groups" => "security group",
        "networks" => "network",
        "images" => "image",
        "templates" => "template",
        "vms" => "VM set",
        "users" => "user",
        "groups" => "group",
        "variables" => "variable",
        "environments" => "environment",
        "external" => "external section",
        other => other,
    }
}

/// Merges `over` into `base`: mappings entry by entry (recursively), anything else replaced.
pub fn deep_merge(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(a), Value::Map(b)) => {
            for (k, v) in b {
                match a.iter_mut().find(|(x, _)| x.name == k.name) {
                    Some((_, existing)) => deep_merge(existing, v),
                    None => a.push((k, v)),
                }
            }
        }
        (_, other) => {
            base.value = other;
            base.pos = over.pos;
        }
    }
}

/// Replaces `${name}` in every scalar below `node` with the variable's value (`$${` writes a
/// literal `${`). A name that is not a variable is an error at the scalar's position.
pub fn interpolate(
    node: &mut Node,
    vars: &std::collections::BTreeMap<String, String>,
    diags: &mut Diags,
) {
    match &mut node.value {
        Value::Scalar(s) => {
            if s.contains('$') {
                match substitute(s, vars) {
                    Ok(v) => *s = v,
                    Err(m) => diags.push(Diag::new(&node.pos, m)),
                }
            }
        }
        Value::List(items) => {
            for n in items {
                interpolate(n, vars, diags);
            }
        }
        Value::Map(entries) => {
            for (_, n) in entries {
                interpolate(n, vars, diags);
            }
        }
        Value::Null => {}
    }
}

fn substitute(
    s: &str,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let name = tail[..end].trim();
            let value = vars.get(name).ok_or_else(|| {
                if vars.is_empty() {
                    format!("unknown variable {name:?} (the file declares no variables)")
                } else {
                    format!(
                        "unknown variable {name:?} (declared: {})",
                        vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            })?;
            out.push_str(value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(d: &Diags) -> u32 {
        d.items[0].pos.line
    }

    #[test]
    fn yaml_positions_and_scalars() {
        let doc = parse(
            "a.yaml",
            "cloud: lab\nnetworks:\n  net:\n    template: {DNS: 1.1.1.1, MTU: 1500}\n  other: ~\n",
            Format::Yaml,
        )
        .unwrap();
        let net = doc.get("networks").unwrap().get("net").unwrap();
        assert_eq!(net.pos.line, 4);
        let mtu = net.get("template").unwrap().get("MTU").unwrap();
        assert_eq!(mtu.value, Value::Scalar("1500".into()));
        assert_eq!(
            doc.get("networks").unwrap().get("other").unwrap().value,
            Value::Null
        );
        assert_eq!(doc.get("cloud").unwrap().pos.to_string(), "a.yaml:1:8");
    }

    #[test]
    fn yaml_errors_have_lines() {
        let e = parse(
            "a.yaml",
            "cloud: x\nclusters:\n  a: {}\n  a: {}\n",
            Format::Yaml,
        )
        .unwrap_err();
        assert_eq!(line_of(&e), 4);
        assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
        let e = parse("a.yaml", "cloud: x\n  bad: [\n", Format::Yaml).unwrap_err();
        assert!(e.to_string().starts_with("a.yaml:"), "{e}");
        let e = parse("a.yaml", "- 1\n- 2\n", Format::Yaml).unwrap_err();
        assert!(e.to_string().contains("mapping"), "{e}");
        let e = parse("a.yaml", "a: &x 1\nb: *x\n", Format::Yaml).unwrap_err();
        assert!(e.to_string().contains("anchors"), "{e}");
        // An alias to nothing must be an error, not a crash.
        assert!(parse("a.yaml", "b: *x\n", Format::Yaml).is_err());
    }

    #[test]
    fn toml_positions_and_scalars() {
        let doc = parse(
            "a.toml",
            "cloud = \"lab\"\n\n[networks.net.template]\nMTU = 1500\nCPU = 0.5\nHEX = 0x10\nON = true\n",
            Format::Toml,
        )
        .unwrap();
        let t = doc
            .get("networks")
            .unwrap()
            .get("net")
            .unwrap()
            .get("template")
            .unwrap();
        assert_eq!(t.get("MTU").unwrap().value, Value::Scalar("1500".into()));
        assert_eq!(t.get("MTU").unwrap().pos.line, 4);
        assert_eq!(t.get("CPU").unwrap().value, Value::Scalar("0.5".into()));
        assert_eq!(t.get("HEX").unwrap().value, Value::Scalar("16".into()));
        assert_eq!(t.get("ON").unwrap().value, Value::Scalar("true".into()));
        let e = parse("a.toml", "cloud = \"x\"\ncloud = \"y\"\n", Format::Toml).unwrap_err();
        assert_eq!(line_of(&e), 2);
    }

    #[test]
    fn merging_documents_finds_duplicates() {
        let a = parse(
            "a.yaml",
            "cloud: lab\nnetworks:\n  n1: {}\nacls: [x]\n",
            Format::Yaml,
        )
        .unwrap();
        let b = parse(
            "b.yaml",
            "cloud: lab\nnetworks:\n  n2: {}\n  n1: {}\nacls: [y]\n",
            Format::Yaml,
        )
        .unwrap();
        let e = merge_documents(vec![a.clone(), b]).unwrap_err();
        assert_eq!(e.items[0].pos.to_string(), "b.yaml:4:3");
        assert!(e.to_string().contains("also at a.yaml:3:3"), "{e}");
        let c = parse("c.yaml", "networks:\n  n3: {}\nacls: [z]\n", Format::Yaml).unwrap();
        let m = merge_documents(vec![a, c]).unwrap();
        assert_eq!(m.get("networks").unwrap().as_map().unwrap().len(), 2);
        assert!(matches!(&m.get("acls").unwrap().value, Value::List(l) if l.len() == 2));
    }

    #[test]
    fn variables() {
        let vars = [("n".to_string(), "3".to_string())].into_iter().collect();
        assert_eq!(substitute("x-${n}-${ n }", &vars).unwrap(), "x-3-3");
        assert_eq!(substitute("$${n} $5", &vars).unwrap(), "${n} $5");
        assert!(
            substitute("${m}", &vars)
                .unwrap_err()
                .contains("declared: n")
        );
        assert!(substitute("${n", &vars).is_err());
    }
}
