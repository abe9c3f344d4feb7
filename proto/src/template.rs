//! OpenNebula's template language: an ordered multimap of attributes, each a single value
//! (`NAME = "value"`) or a vector of sub-attributes (`NAME = [ A = "x", B = "y" ]`).
//!
//! Templates arrive in two forms (fact sheet §6): the attribute syntax, and XML (any string
//! starting with `<`; the root element's name is ignored). [`Template::parse`] accepts both.
//! XML output sorts attributes by name (stable, so repeated names keep their order), as oned does.

use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

mod parse;
mod write;

pub use parse::TemplateError;
pub use write::WriteError;

/// One attribute's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrValue {
    Single(String),
    Vector(Vector),
}

/// A vector attribute's sub-attributes, in insertion order (names are unique).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vector {
    pub attrs: Vec<(String, String)>,
}

impl Vector {
    pub fn new() -> Self {
        Vector::default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets (replacing) a sub-attribute; the name is canonicalized.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let pos = self
            .attrs
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.attrs.remove(pos).1)
    }

    /// Merges `other` into self: its sub-attributes replace ours of the same name.
    pub fn merge(&mut self, other: &Vector) {
        for (n, v) in &other.attrs {
            self.set(n, v.clone());
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

/// An ordered multimap of attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub attrs: Vec<Attribute>,
}

/// Upper-cases a name and prefixes `ONE_` where OpenNebula does (a first character that is not
/// a letter or `_`, or a name starting with `XML`).
pub fn canonical_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    let first_ok = upper
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || upper.starts_with("XML") {
        format!("ONE_{upper}")
    } else {
        upper
    }
}

impl Template {
    pub fn new() -> Self {
        Template::default()
    }

    /// Parses either form: XML when the first non-blank character is `<`, else attribute syntax.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.trim_start().starts_with('<') {
            parse::parse_xml(text)
        } else {
            parse::parse_text(text)
        }
    }

    /// Writes the attribute syntax, or the XML form when the syntax cannot hold a value (a
    /// value ending in `\` that needs quotes); [`Template::parse`] reads either back.
    pub fn to_text(&self) -> String {
        write::to_text(self)
    }

    /// Writes the attribute syntax, refusing what it cannot represent (see `template/write.rs`).
    pub fn try_to_text(&self) -> Result<String, WriteError> {
        write::try_to_text(self)
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// The first single value named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find_map(|a| match &a.value {
            AttrValue::Single(v) if a.name.eq_ignore_ascii_case(name) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The first vector named `name`.
    pub fn vector(&self, name: &str) -> Option<&Vector> {
        self.attrs.iter().find_map(|a| match &a.value {
            AttrValue::Vector(v) if a.name.eq_ignore_ascii_case(name) => Some(v),
            _ => None,
        })
    }

    pub fn vector_mut(&mut self, name: &str) -> Option<&mut Vector> {
        self.attrs.iter_mut().find_map(|a| match &mut a.value {
            AttrValue::Vector(v) if a.name.eq_ignore_ascii_case(name) => Some(v),
            _ => None,
        })
    }

    pub fn vectors<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Vector> + 'a {
        self.attrs.iter().filter_map(move |a| match &a.value {
            AttrValue::Vector(v) if a.name.eq_ignore_ascii_case(name) => Some(v),
            _ => None,
        })
    }

    pub fn vectors_mut<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a mut Vector> + 'a {
        self.attrs
            .iter_mut()
            .filter_map(move |a| match &mut a.value {
                AttrValue::Vector(v) if a.name.eq_ignore_ascii_case(name) => Some(v),
                _ => None,
            })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Replaces every attribute named `name` with one single value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical_name(name);
        let value = AttrValue::Single(value.into());
        self.replace(name, value);
    }

    /// Replaces every attribute named `name` with one vector.
    pub fn set_vector(&mut self, name: &str, value: Vector) {
        let name = canonical_name(name);
        self.replace(name, AttrValue::Vector(value));
    }

    fn replace(&mut self, name: String, value: AttrValue) {
        match self.attrs.iter().position(|a| a.name == name) {
            Some(pos) => {
                self.attrs[pos].value = value;
                let mut i = 0;
                self.attrs.retain(|a| {
                    i += 1;
                    i - 1 == pos || a.name != name
                });
            }
            None => self.attrs.push(Attribute { name, value }),
        }
    }

    /// Appends an attribute (repeated names are allowed: `DISK`, `NIC`, ...).
    pub fn push(&mut self, name: &str, value: AttrValue) {
        self.attrs.push(Attribute {
            name: canonical_name(name),
            value,
        });
    }

    /// Removes every attribute named `name`, returning them.
    pub fn remove(&mut self, name: &str) -> Vec<AttrValue> {
        let mut out = Vec::new();
        self.attrs.retain(|a| {
            if a.name.eq_ignore_ascii_case(name) {
                out.push(a.value.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// OpenNebula's update mode 1 (merge): every name present in `other` replaces ours.
    pub fn merge(&mut self, other: &Template) {
        let mut seen: Vec<&str> = Vec::new();
        for a in &other.attrs {
            if !seen.contains(&a.name.as_str()) {
                seen.push(&a.name);
                self.remove(&a.name);
            }
        }
        self.attrs.extend(other.attrs.iter().cloned());
    }

    /// Writes `<ROOT>...</ROOT>` with attributes sorted by name (stable) and vector
    /// sub-attributes sorted by name, as oned emits templates.
    pub fn write_xml(&self, w: &mut XmlWriter, root: &str) {
        if self.attrs.is_empty() {
            w.empty(root);
            return;
        }
        w.open(root);
        self.write_xml_body(w);
        w.close(root);
    }

    /// Writes the attributes without a surrounding element.
    pub fn write_xml_body(&self, w: &mut XmlWriter) {
        let mut order: Vec<&Attribute> = self.attrs.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        for a in order {
            write_attr_xml(w, &a.name, &a.value);
        }
    }

    pub fn to_xml(&self, root: &str) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w, root);
        w.finish()
    }
}

/// Writes one attribute as XML (`<NAME>v</NAME>` or `<NAME><A>x</A>...</NAME>`).
pub fn write_attr_xml(w: &mut XmlWriter, name: &str, value: &AttrValue) {
    match value {
        AttrValue::Single(v) => {
            w.text(name, v);
        }
        AttrValue::Vector(vec) => {
            if vec.attrs.is_empty() {
                w.empty(name);
                return;
            }
            w.open(name);
            let mut subs: Vec<&(String, String)> = vec.attrs.iter().collect();
            subs.sort_by(|a, b| a.0.cmp(&b.0));
            for (n, v) in subs {
                w.text(n, v);
            }
            w.close(name);
        }
    }
}

#[cfg(test)]
mod accessor_tests {
    use super::*;

    #[test]
    fn set_replaces_all_and_merge_replaces_by_name() {
        let mut t = Template::new();
        t.push("disk", AttrValue::Single("a".into()));
        t.push("DISK", AttrValue::Single("b".into()));
        t.set("cpu", "1");
        t.set("Disk", "c");
        assert_eq!(t.attrs.len(), 2);
        assert_eq!(t.get("DISK"), Some("c"));
        let mut other = Template::new();
        other.set("CPU", "2");
        other.set("MEMORY", "128");
        t.merge(&other);
        assert_eq!(t.get("CPU"), Some("2"));
        assert_eq!(t.get("MEMORY"), Some("128"));
        assert_eq!(t.get("DISK"), Some("c"));
    }

    #[test]
    fn xml_is_sorted_and_escaped() {
        let mut t = Template::new();
        t.set("ZED", "1");
        let mut v = Vector::new();
        v.set("b", "x<y");
        v.set("a", "2");
        t.set_vector("NIC", v);
        t.set("ALPHA", "a&b");
        assert_eq!(
            t.to_xml("TEMPLATE"),
            "<TEMPLATE><ALPHA>a&amp;b</ALPHA><NIC><A>2</A><B>x&lt;y</B></NIC><ZED>1</ZED></TEMPLATE>"
        );
        assert_eq!(Template::new().to_xml("TEMPLATE"), "<TEMPLATE/>");
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("disk"), "DISK");
        assert_eq!(canonical_name("1abc"), "ONE_1ABC");
        assert_eq!(canonical_name("xmlthing"), "ONE_XMLTHING");
        assert_eq!(canonical_name("_x"), "_X");
    }
}
