//! An object document as JSON, YAML or indented XML, the way OpenNebula's Ruby CLI prints it
//! with `-j`, `-y` and `-x`.
//!
//! The Ruby CLI turns the XML into a hash: an element with text becomes a string, an element
//! with children a map keyed by the children's names (in the order names first appear), an
//! empty element `{}`, and a name repeated among siblings an array. It then consults the
//! object's XSD so that elements the schema declares repeatable (a VM's DISK, a pool's VM)
//! are arrays even when there is only one; [`repeated_paths`] holds those paths, read off
//! OpenNebula's XSDs. Every value stays a string, as in the XML.

use crate::dom::Element;
use std::fmt::Write;

/// Paths (below the root, `/`-separated) that OpenNebula's XSDs declare with
/// `maxOccurs="unbounded"` for the document whose root is `root`, as the Ruby CLI's check
/// finds them (it follows elements defined inline and `ref`s, not named types such as IDS).
pub fn repeated_paths(root: &str) -> &'static [&'static str] {
    match root {
        "VM" => &[
            "MONITORING/DISK_SIZE",
            "TEMPLATE/DISK",
            "TEMPLATE/NIC",
            "TEMPLATE/NIC_ALIAS",
            "TEMPLATE/PCI",
            "TEMPLATE/SECURITY_GROUP_RULE",
            "TEMPLATE/SNAPSHOT",
            "TEMPLATE/SCHED_ACTION",
            "HISTORY_RECORDS/HISTORY",
            "SNAPSHOTS",
            "SNAPSHOTS/SNAPSHOT",
        ],
        "VM_POOL" => &[
            "VM",
            "VM/TEMPLATE/DISK",
            "VM/TEMPLATE/NIC",
            "VM/HISTORY_RECORDS/HISTORY",
        ],
        "HOST" => &[
            "HOST_SHARE/DATASTORES/DS",
            "HOST_SHARE/PCI_DEVICES/PCI",
            "HOST_SHARE/NUMA_NODES/NODE",
            "HOST_SHARE/NUMA_NODES/NODE/CORE",
            "HOST_SHARE/NUMA_NODES/NODE/HUGEPAGE",
            "MONITORING/NUMA_NODE",
            "MONITORING/NUMA_NODE/HUGEPAGE",
        ],
        "HOST_POOL" => &[
            "HOST",
            "HOST/HOST_SHARE/DATASTORES/DS",
            "HOST/HOST_SHARE/PCI_DEVICES/PCI",
            "HOST/HOST_SHARE/NUMA_NODES/NODE",
            "HOST/HOST_SHARE/NUMA_NODES/NODE/CORE",
            "HOST/HOST_SHARE/NUMA_NODES/NODE/HUGEPAGE",
            "HOST/MONITORING/NUMA_NODE",
            "HOST/MONITORING/NUMA_NODE/HUGEPAGE",
        ],
        "IMAGE" => &["SNAPSHOTS/SNAPSHOT", "BACKUP_INCREMENTS/INCREMENT"],
        "IMAGE_POOL" => &[
            "IMAGE",
            "IMAGE/SNAPSHOTS/SNAPSHOT",
            "IMAGE/BACKUP_INCREMENTS/INCREMENT",
        ],
        "VNET" => &["AR_POOL/AR", "AR_POOL/AR/LEASES/LEASE"],
        "VNET_POOL" => &["VNET", "VNET/AR_POOL/AR"],
        "VMTEMPLATE_POOL" => &["VMTEMPLATE"],
        "DATASTORE_POOL" => &["DATASTORE"],
        "USER" => &["GROUPS/ID", "LOGIN_TOKEN"],
        "GROUP" => &["VLAN_RULES/RULE"],
        "CLUSTER_POOL" => &["CLUSTER"],
        "ACL_POOL" => &["ACL"],
        "HOOK" => &["HOOKLOG/HOOK_EXECUTION_RECORD"],
        "HOOK_POOL" => &["HOOK", "HOOK/HOOKLOG/HOOK_EXECUTION_RECORD"],
        _ => &[],
    }
}

/// Children grouped by name, in the order each name first appears.
fn grouped<'d>(e: Element<'d>) -> Vec<(&'d str, Vec<Element<'d>>)> {
    let mut groups: Vec<(&str, Vec<Element>)> = Vec::new();
    for c in e.children() {
        match groups.iter_mut().find(|(n, _)| *n == c.name()) {
            Some((_, v)) => v.push(c),
            None => groups.push((c.name(), vec![c])),
        }
    }
    groups
}

fn is_repeated(arrays: &[&str], path: &str) -> bool {
    arrays.contains(&path)
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    }
}

/// The document as `JSON.pretty_generate` prints the Ruby CLI's hash: `{"VM": {...}}`.
pub fn to_json(root: Element<'_>) -> String {
    let arrays = repeated_paths(root.name());
    let mut out = String::with_capacity(4096);
    out.push_str("{\n  ");
    json_string(&mut out, root.name());
    out.push_str(": ");
    json_value(&mut out, root, arrays, "", 1);
    out.push_str("\n}");
    out
}

fn json_string(out: &mut String, s: &str) {
    // serde_json's escaping is JSON's; writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).expect("a str serializes"));
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn json_value(out: &mut String, e: Element<'_>, arrays: &[&str], path: &str, level: usize) {
    if !e.has_children() {
        if e.text().is_empty() {
            out.push_str("{}");
        } else {
            json_string(out, e.text());
        }
        return;
    }
    out.push_str("{\n");
    let groups = grouped(e);
    for (i, (name, elems)) in groups.iter().enumerate() {
        let p = child_path(path, name);
        indent(out, level + 1);
        json_string(out, name);
        out.push_str(": ");
        if elems.len() > 1 || is_repeated(arrays, &p) {
            out.push_str("[\n");
            for (j, c) in elems.iter().enumerate() {
                indent(out, level + 2);
                json_value(out, *c, arrays, &p, level + 2);
                if j + 1 < elems.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level + 1);
            out.push(']');
        } else {
            json_value(out, elems[0], arrays, &p, level + 1);
        }
        if i + 1 < groups.len() {
            out.push(',');
        }
        out.push('\n');
    }
    indent(out, level);
    out.push('}');
}

/// The document as YAML with the same structure as [`to_json`] (a `---` document whose one
/// key is the root element).
pub fn to_yaml(root: Element<'_>) -> String {
    let arrays = repeated_paths(root.name());
    let mut out = String::with_capacity(4096);
    out.push_str("---\n");
    yaml_entry(&mut out, root.name(), &[root], arrays, "", 0, false);
    out
}

/// Writes `name: value` (or a sequence) at `level`; `first_in_item` means the key follows a
/// `- ` already written.
fn yaml_entry(
    out: &mut String,
    name: &str,
    elems: &[Element<'_>],
    arrays: &[&str],
    path: &str,
    level: usize,
    first_in_item: bool,
) {
    if !first_in_item {
        indent(out, level);
    }
    yaml_scalar(out, name);
    out.push(':');
    if elems.len() > 1 || (!path.is_empty() && is_repeated(arrays, path)) {
        out.push('\n');
        for c in elems {
            // Psych writes sequence items at the key's own indentation.
            indent(out, level);
            out.push_str("- ");
            yaml_item(out, *c, arrays, path, level + 1);
        }
        return;
    }
    let e = elems[0];
    if !e.has_children() {
        out.push(' ');
        if e.text().is_empty() {
            out.push_str("{}");
        } else {
            yaml_scalar(out, e.text());
        }
        out.push('\n');
        return;
    }
    out.push('\n');
    yaml_map_body(out, e, arrays, path, level + 1, false);
}

/// A sequence item after `- `: a scalar, `{}`, or a map whose first key shares the line.
fn yaml_item(out: &mut String, e: Element<'_>, arrays: &[&str], path: &str, level: usize) {
    if !e.has_children() {
        if e.text().is_empty() {
            out.push_str("{}");
        } else {
            yaml_scalar(out, e.text());
        }
        out.push('\n');
        return;
    }
    yaml_map_body(out, e, arrays, path, level, true);
}

fn yaml_map_body(
    out: &mut String,
    e: Element<'_>,
    arrays: &[&str],
    path: &str,
    level: usize,
    first_in_item: bool,
) {
    for (i, (name, elems)) in grouped(e).iter().enumerate() {
        let p = child_path(path, name);
        yaml_entry(out, name, elems, arrays, &p, level, first_in_item && i == 0);
    }
}

/// A YAML scalar: plain when YAML would read it back as the same string, otherwise quoted.
fn yaml_scalar(out: &mut String, s: &str) {
    if s.contains(['\n', '\r', '\t']) || s.chars().any(|c| c.is_control()) {
        // Double quotes with JSON-style escapes are valid YAML.
        json_string(out, s);
    } else if needs_quotes(s) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        out.push_str(s);
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') {
        return true;
    }
    let first = s.chars().next().expect("not empty");
    if "-?:,[]{}#&*!|>'\"%@`~".contains(first) {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | ".nan" | ".inf"
    ) {
        return true;
    }
    // Anything YAML 1.1 may read as a number (ints, floats, octal, hex, sexagesimal, dates).
    let numberish = s
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.eE_:xXoObB".contains(c) || c.is_ascii_hexdigit());
    numberish && s.chars().any(|c| c.is_ascii_digit())
}

/// The document indented by two spaces per level, one element per line (`-x`).
pub fn to_pretty_xml(root: Element<'_>) -> String {
    let mut out = String::with_capacity(4096);
    xml_element(&mut out, root, 0);
    out
}

fn xml_element(out: &mut String, e: Element<'_>, level: usize) {
    indent(out, level);
    if e.has_children() {
        let _ = writeln!(out, "<{}>", e.name());
        for c in e.children() {
            xml_element(out, c, level + 1);
        }
        indent(out, level);
        let _ = writeln!(out, "</{}>", e.name());
    } else if e.text().is_empty() {
        let _ = writeln!(out, "<{}/>", e.name());
    } else {
        out.push('<');
        out.push_str(e.name());
        out.push('>');
        one_proto::xml::escape_into(out, e.text());
        out.push_str("</");
        out.push_str(e.name());
        out.push_str(">\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dom::Document;

    const VM: &str = "<VM><ID>7</ID><NAME>web 1</NAME><LOCK/><TEMPLATE><CPU>1</CPU>\
        <DISK><DISK_ID>0</DISK_ID></DISK><NIC><IP>10.0.0.1</IP></NIC><NIC><IP>10.0.0.2</IP></NIC>\
        </TEMPLATE><USER_TEMPLATE><NOTE>a: b</NOTE><LIST>yes</LIST></USER_TEMPLATE></VM>";

    #[test]
    fn json_follows_the_ruby_cli() {
        let doc = Document::parse(VM).unwrap();
        let json = to_json(doc.root());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["VM"]["ID"], "7");
        assert_eq!(v["VM"]["LOCK"], serde_json::json!({}));
        // DISK is repeatable in vm.xsd: an array even alone; NIC repeated: an array.
        assert_eq!(v["VM"]["TEMPLATE"]["DISK"][0]["DISK_ID"], "0");
        assert_eq!(v["VM"]["TEMPLATE"]["NIC"][1]["IP"], "10.0.0.2");
        assert_eq!(v["VM"]["TEMPLATE"]["CPU"], "1");
        assert!(
            json.starts_with("{\n  \"VM\": {\n    \"ID\": \"7\",\n"),
            "{json}"
        );
        // Keys keep document order.
        let keys: Vec<_> = v["VM"].as_object().unwrap().keys().cloned().collect();
        assert!(keys.contains(&"USER_TEMPLATE".to_string()));
    }

    #[test]
    fn yaml_has_the_same_structure() {
        let doc = Document::parse(VM).unwrap();
        let yaml = to_yaml(doc.root());
        assert!(
            yaml.starts_with("---\nVM:\n  ID: '7'\n  NAME: web 1\n  LOCK: {}\n"),
            "{yaml}"
        );
        assert!(yaml.contains("    DISK:\n    - DISK_ID: '0'\n"), "{yaml}");
        assert!(yaml.contains("NOTE: 'a: b'"), "{yaml}");
        assert!(yaml.contains("LIST: 'yes'"), "{yaml}");
    }

    #[test]
    fn scalars_are_quoted_when_yaml_would_misread_them() {
        for (s, quoted) in [
            ("web-1", false),
            ("-x", true),
            ("0", true),
            ("1.5", true),
            ("0x1f", true),
            ("", true),
            ("true", true),
            ("NO", true),
            ("10.0.0.1", true),
            ("runn", false),
            ("02:00:0a:00:00:01", true),
            ("a #b", true),
        ] {
            assert_eq!(needs_quotes(s), quoted, "{s:?}");
        }
    }

    #[test]
    fn pretty_xml_indents() {
        let doc = Document::parse("<A><B>x&amp;</B><C/><D><E>1</E></D></A>").unwrap();
        assert_eq!(
            to_pretty_xml(doc.root()),
            "<A>\n  <B>x&amp;</B>\n  <C/>\n  <D>\n    <E>1</E>\n  </D>\n</A>\n"
        );
    }
}
