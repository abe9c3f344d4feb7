//! Pieces of `show` output: `KEY : value` lines, permission masks, templates printed the
//! way OpenNebula prints them (`CPU="1"`, `DISK=[\n  IMAGE_ID="3" ]`), and documents as
//! `-x` / `-j` / `-y` ask.

use crate::args::FormatOpts;
use crate::error::CliResult;
use crate::fmt::title;
use crate::table::header;
use oca::dom::Document;
use oca::{AttrValue, Permissions, Template};
use std::io::Write;

/// `%-{width}s: %s`, right-trimmed like nothing else: OpenNebula pads values too, so
/// `%-20s` after the colon leaves trailing blanks, which are kept.
pub fn kv(out: &mut dyn Write, width: usize, key: &str, value: &str) -> std::io::Result<()> {
    writeln!(out, "{key:<width$}: {value}")
}

/// Like [`kv`] with the value padded to 20 columns (`%-Ns: %-20s`).
pub fn kv20(out: &mut dyn Write, width: usize, key: &str, value: &str) -> std::io::Result<()> {
    writeln!(out, "{key:<width$}: {value:<20}")
}

/// A section title, as `CLIHelper.print_header('%-80s' % title, underline)`.
pub fn section(out: &mut dyn Write, text: &str, underline: bool) -> std::io::Result<()> {
    header(out, &title(text), underline)
}

/// The PERMISSIONS section's three lines.
pub fn permissions(out: &mut dyn Write, width: usize, p: &Permissions) -> std::io::Result<()> {
    section(out, "PERMISSIONS", false)?;
    for (i, who) in ["OWNER", "GROUP", "OTHER"].iter().enumerate() {
        kv20(out, width, who, &p.mask(i))?;
    }
    Ok(())
}

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\\\""))
}

/// A template as OpenNebula's `template_like_str`: one attribute per line, vectors over
/// several lines (`indent`) or on one, empty values left out, names in `skip` left out.
pub fn template_str(t: &Template, skip: &[&str], indent: bool) -> String {
    let (enter, tab) = if indent { ("\n", "  ") } else { ("", " ") };
    let mut lines = Vec::new();
    for a in &t.attrs {
        if skip.contains(&a.name.as_str()) {
            continue;
        }
        match &a.value {
            AttrValue::Single(v) => {
                if !v.is_empty() {
                    lines.push(format!("{}={}", a.name, quoted(v)));
                }
            }
            AttrValue::Vector(vec) => {
                let subs: Vec<String> = vec
                    .attrs
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("{tab}{k}={}", quoted(v)))
                    .collect();
                lines.push(format!(
                    "{}=[{enter}{} ]",
                    a.name,
                    subs.join(&format!(",{enter}"))
                ));
            }
        }
    }
    lines.join("\n")
}

/// Prints a document (an object or a pool) as `-x`, `-j` or `-y` asks.
pub fn document(out: &mut dyn Write, xml: &str, f: &FormatOpts) -> CliResult<()> {
    let doc = Document::parse(xml)?;
    let text = if f.json {
        oca::render::to_json(doc.root()) + "\n"
    } else if f.yaml {
        oca::render::to_yaml(doc.root())
    } else {
        oca::render::to_pretty_xml(doc.root())
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_print_like_opennebula() {
        let t = Template::parse(
            "CPU=1\nDISK=[IMAGE_ID=3,TARGET=vda]\nEMPTY=\"\"\nNOTE=\"say \\\"hi\\\"\"\nNIC=[NETWORK=a]",
        )
        .unwrap();
        assert_eq!(
            template_str(&t, &["NIC"], true),
            "CPU=\"1\"\nDISK=[\n  IMAGE_ID=\"3\",\n  TARGET=\"vda\" ]\nNOTE=\"say \\\"hi\\\"\""
        );
        assert_eq!(
            template_str(&t, &["CPU", "NOTE"], false),
            "DISK=[ IMAGE_ID=\"3\", TARGET=\"vda\" ]\nNIC=[ NETWORK=\"a\" ]"
        );
    }
}
