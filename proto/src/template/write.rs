//! Writer of the attribute syntax.
//!
//! Output: one attribute per line, single values quoted, vectors one sub-attribute per line:
//!
//! ```text
//! CPU="1"
//! DISK=[
//!   IMAGE_ID="3",
//!   TARGET="vda" ]
//! EMPTY=[ ]
//! ```
//!
//! Inside quotes a `"` is written `\"`. Since a backslash cannot be escaped, a value ending in
//! `\` cannot be quoted: it is written unquoted when it has no character that needs quotes
//! (`PATH=C:\`), and is otherwise beyond the syntax. A literal `\"` is fine (`\\"` reads back
//! as `\"`: only the backslash right before a quote is an escape).
//!
//! [`try_to_text`] refuses what the syntax cannot hold; [`to_text`] is total: for such a
//! template it returns the XML form instead (attributes in order, root `TEMPLATE`), which
//! [`Template::parse`](super::Template::parse) reads back exactly. So every template either
//! parser returns survives `Template::parse(&to_text(&t)) == Ok(t)`. Outside that guarantee
//! (templates built in code): names are written as they are (reading canonicalizes them);
//! the XML fallback cannot tell an empty vector from an empty value; names with characters
//! other than letters, digits, `_` and `-` are written with `_` in their place; and values
//! the parsers refuse (`]]>`, control characters) are written escaped, so reading them back
//! fails with a clear error.

use super::parse::{
    can_be_unquoted, is_forbidden_char, is_name_char, is_valid_name, value_problem,
};
use super::{AttrValue, Template, canonical_name};

/// A template the attribute syntax cannot represent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot write {attribute} in template syntax: {reason}")]
pub struct WriteError {
    /// The attribute (`NAME`, or `VECTOR/SUB` for a sub-attribute).
    pub attribute: String,
    pub reason: String,
}

/// Writes the attribute syntax, or the XML form if the syntax cannot hold the template.
pub fn to_text(t: &Template) -> String {
    try_to_text(t).unwrap_or_else(|_| to_xml_in_order(t))
}

/// Writes the attribute syntax; refuses names and values the syntax cannot represent.
pub fn try_to_text(t: &Template) -> Result<String, WriteError> {
    let mut out = String::new();
    for a in &t.attrs {
        check_name(&a.name, || a.name.clone())?;
        out.push_str(&a.name);
        out.push('=');
        match &a.value {
            AttrValue::Single(v) => write_value(&mut out, v, || a.name.clone())?,
            AttrValue::Vector(vec) if vec.attrs.is_empty() => out.push_str("[ ]"),
            AttrValue::Vector(vec) => {
                out.push('[');
                for (i, (n, v)) in vec.attrs.iter().enumerate() {
                    let path = || format!("{}/{n}", a.name);
                    check_name(n, path)?;
                    out.push_str(if i == 0 { "\n  " } else { ",\n  " });
                    out.push_str(n);
                    out.push('=');
                    write_value(&mut out, v, path)?;
                }
                out.push_str(" ]");
            }
        }
        out.push('\n');
    }
    Ok(out)
}

fn check_name(name: &str, path: impl Fn() -> String) -> Result<(), WriteError> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(WriteError {
        attribute: path(),
        reason: "names may only contain letters, digits, '_' and '-'".into(),
    })
}

fn write_value(out: &mut String, v: &str, path: impl Fn() -> String) -> Result<(), WriteError> {
    if let Some(reason) = value_problem(v) {
        return Err(WriteError {
            attribute: path(),
            reason,
        });
    }
    if v.ends_with('\\') {
        if can_be_unquoted(v) {
            out.push_str(v);
            return Ok(());
        }
        return Err(WriteError {
            attribute: path(),
            reason: "the value ends in '\\' and needs quotes, which it cannot have (a '\\' \
                     before the closing quote would escape it)"
                .into(),
        });
    }
    out.push('"');
    let mut last = 0;
    for (i, _) in v.match_indices('"') {
        out.push_str(&v[last..i]);
        out.push_str("\\\"");
        last = i + 1;
    }
    out.push_str(&v[last..]);
    out.push('"');
    Ok(())
}

/// The XML form with attributes in their order (unlike `Template::to_xml`, which sorts), with
/// `\r` written as a character reference so that XML's end-of-line handling keeps it.
fn to_xml_in_order(t: &Template) -> String {
    let mut out = String::from("<TEMPLATE>");
    for a in &t.attrs {
        let name = xml_name(&a.name);
        match &a.value {
            AttrValue::Single(v) => element(&mut out, &name, v),
            AttrValue::Vector(vec) => {
                if vec.attrs.is_empty() {
                    out.push_str(&format!("<{name}/>"));
                    continue;
                }
                out.push_str(&format!("<{name}>"));
                for (n, v) in &vec.attrs {
                    element(&mut out, &xml_name(n), v);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
    }
    out.push_str("</TEMPLATE>");
    out
}

/// A name that is a valid XML element name (names from the parsers already are).
fn xml_name(name: &str) -> String {
    if is_valid_name(name) && canonical_name(name) == name {
        return name.to_string();
    }
    let cleaned: String = name
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    canonical_name(if cleaned.is_empty() { "_" } else { &cleaned })
}

fn element(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_forbidden_char(c) => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}
