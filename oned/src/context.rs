//! CONTEXT variables: OpenNebula's `$VARIABLE` substitution at VM creation, and the ETHn_*
//! network context of `NETWORK = "YES"`.
//!
//! Syntax (as OpenNebula's `vm_var` lexer reads it; names are case-insensitive):
//!
//! * `$NAME`, `$UID`, `$UNAME`, `$GID`, `$GNAME`: the VM's owner and name; `$TEMPLATE`: the
//!   VM document, base64; `$ATTR`: a single attribute of the VM template, else of its user
//!   template (`$VMID`, `$MEMORY`, `$TEMPLATE_ID`, any user attribute).
//! * `$VEC[SUB]` / `$VEC[SUB, KEY = "value"]`: SUB of the first vector VEC of the VM template
//!   (the first whose KEY equals value); `value` is quoted or alphanumeric.
//! * `$NETWORK[ATTR, NETWORK_ID|NETWORK|NIC_ID = v]`: ATTR of the address range the matching
//!   NIC leased from, else of the network's template. `$IMAGE[ATTR, IMAGE_ID|IMAGE = v]`: of
//!   the image of the matching DISK. `$USER[ATTR]`: of the owner's user template.
//!   `ATTR = TEMPLATE` gives the whole object document, base64.
//! * A variable that resolves to nothing becomes the empty string.
//! * `\$` is not a variable: it is kept as written (backslash included, as OpenNebula does:
//!   the guest's shell later reads `\$` as a literal `$`).
//! * A `$` not followed by a name is a syntax error (write `\$`), as in OpenNebula.
//!
//! The character right after a variable (or `]`) ends it and is copied, except a `$`, which
//! starts the next variable.

use base64::Engine;
use one_proto::template::{AttrValue, Template, Vector};

/// Objects a variable may read besides the VM itself.
pub trait Lookup {
    /// ATTR of the owner's user template (`TEMPLATE` = the user document, base64).
    fn user_attr(&self, uid: i64, attr: &str) -> Option<String>;
    /// ATTR of address range `ar_id` of network `vnet_id`, else of the network's template
    /// (`TEMPLATE` = the network document, base64).
    fn vnet_attr(&self, vnet_id: i64, ar_id: i64, attr: &str) -> Option<String>;
    /// ATTR of an image's template (`TEMPLATE` = the image document, base64).
    fn image_attr(&self, image_id: i64, attr: &str) -> Option<String>;
}

/// The VM whose variables are resolved.
pub struct Scope<'a> {
    pub vmid: i64,
    pub name: &'a str,
    pub uid: i64,
    pub uname: &'a str,
    pub gid: i64,
    pub gname: &'a str,
    /// The VM template (TEMPLATE) as built so far: DISK/NIC already expanded.
    pub template: &'a Template,
    pub user_template: &'a Template,
    pub lookup: &'a dyn Lookup,
    /// The VM document for `$TEMPLATE` (built only when asked for).
    pub document: &'a dyn Fn() -> String,
}

/// A parsed `$...` reference.
#[derive(Debug, PartialEq, Eq)]
enum Var {
    Single(String),
    Vector {
        name: String,
        sub: String,
        filter: Option<(String, String)>,
    },
}

/// Substitutes every variable of `text`. The error reads like OpenNebula's
/// ("Error parsing: <text>. <reason> at line L, column C").
pub fn substitute(text: &str, scope: &Scope<'_>) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                // `\$` and `\x` are copied verbatim: no substitution after a backslash.
                out.push('\\');
                if let Some(&c) = chars.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            '$' => {
                let mut p = Parser {
                    chars: &chars,
                    pos: i + 1,
                };
                let var = p.variable().map_err(|(pos, reason)| {
                    let (line, col) = line_col(&chars, pos);
                    format!("Error parsing: {text}. {reason} at line {line}, column {col}")
                })?;
                out.push_str(&resolve(&var, scope));
                i = p.pos;
                // The character that ends a variable is copied unless it starts another one.
                if let Some(&c) = chars.get(i)
                    && c != '$'
                {
                    out.push(c);
                    i += 1;
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn line_col(chars: &[char], pos: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for c in &chars[..pos.min(chars.len())] {
        if *c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

struct Parser<'c> {
    chars: &'c [char],
    pos: usize,
}

type ParseError = (usize, String);

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn word(&mut self, what: &str, allow_underscore: bool) -> Result<String, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || (allow_underscore && c == '_') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            let found = match self.peek() {
                Some(c) => format!("'{c}'"),
                None => "the end of the value".to_string(),
            };
            return Err((start, format!("expected {what}, found {found}")));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            let found = match self.peek() {
                Some(f) => format!("'{f}'"),
                None => "the end of the value".to_string(),
            };
            Err((self.pos, format!("expected {what}, found {found}")))
        }
    }

    /// After the `$`: `NAME`, `NAME[SUB]` or `NAME[SUB, KEY = value]`.
    fn variable(&mut self) -> Result<Var, ParseError> {
        let name = self
            .word(
                "a variable name after '$' (write \\$ for a literal $)",
                true,
            )?
            .to_ascii_uppercase();
        if self.peek() != Some('[') {
            return Ok(Var::Single(name));
        }
        self.pos += 1;
        self.blanks();
        let sub = self
            .word("an attribute name after '['", true)?
            .to_ascii_uppercase();
        self.blanks();
        let filter = if self.peek() == Some(',') {
            self.pos += 1;
            self.blanks();
            let key = self
                .word("an attribute name after ','", true)?
                .to_ascii_uppercase();
            self.blanks();
            self.expect('=', "'='")?;
            self.blanks();
            let value = if self.peek() == Some('"') {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '"') {
                    self.pos += 1;
                }
                let v: String = self.chars[start..self.pos].iter().collect();
                self.expect('"', "a closing '\"'")?;
                v
            } else {
                self.word("a quoted or alphanumeric value after '='", false)?
            };
            self.blanks();
            Some((key, value))
        } else {
            None
        };
        self.expect(']', "']'")?;
        Ok(Var::Vector { name, sub, filter })
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn resolve(var: &Var, scope: &Scope<'_>) -> String {
    match var {
        Var::Single(name) => match name.as_str() {
            "TEMPLATE" => b64(&(scope.document)()),
            "UID" => scope.uid.to_string(),
            "UNAME" => scope.uname.to_string(),
            "GID" => scope.gid.to_string(),
            "GNAME" => scope.gname.to_string(),
            "NAME" => scope.name.to_string(),
            _ => scope
                .template
                .get(name)
                .filter(|v| !v.is_empty())
                .or_else(|| scope.user_template.get(name))
                .unwrap_or("")
                .to_string(),
        },
        Var::Vector { name, sub, filter } => {
            let filter = filter.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
            match name.as_str() {
                "NETWORK" => match filter {
                    Some((key, value)) => network_attr(scope, sub, key, value),
                    None => None,
                },
                "IMAGE" => match filter {
                    Some((key, value)) => image_attr(scope, sub, key, value),
                    None => None,
                },
                "USER" => scope.lookup.user_attr(scope.uid, sub),
                _ => {
                    let mut vectors = scope.template.vectors(name);
                    let found = match filter {
                        None => vectors.next(),
                        Some((key, value)) => vectors.find(|v| v.get(key) == Some(value)),
                    };
                    found.and_then(|v| v.get(sub)).map(str::to_string)
                }
            }
            .unwrap_or_default()
        }
    }
}

/// The (NETWORK_ID, AR_ID) of the NIC (or NIC_ALIAS) whose `key` is `value`.
fn nic_lease(template: &Template, key: &str, value: &str) -> Option<(i64, i64)> {
    let ids = |v: &Vector| -> Option<(i64, i64)> {
        let net = v.get("NETWORK_ID")?.trim().parse().ok()?;
        let ar = v.get("AR_ID")?.trim().parse().ok()?;
        Some((net, ar))
    };
    let from = |name: &str| {
        template
            .vectors(name)
            .find(|v| v.get(key) == Some(value))
            .and_then(ids)
    };
    from("NIC").or_else(|| from("NIC_ALIAS"))
}

fn network_attr(scope: &Scope<'_>, attr: &str, key: &str, value: &str) -> Option<String> {
    if !matches!(key, "NETWORK" | "NETWORK_ID" | "NIC_ID") {
        return None;
    }
    let (vnet, ar) = nic_lease(scope.template, key, value)?;
    scope.lookup.vnet_attr(vnet, ar, attr)
}

fn image_attr(scope: &Scope<'_>, attr: &str, key: &str, value: &str) -> Option<String> {
    if !matches!(key, "IMAGE" | "IMAGE_ID") {
        return None;
    }
    // Only images the VM uses: the DISK proves the owner could use it.
    let image_id: i64 = scope
        .template
        .vectors("DISK")
        .find(|d| d.get(key) == Some(value))?
        .get("IMAGE_ID")?
        .trim()
        .parse()
        .ok()?;
    scope.lookup.image_attr(image_id, attr)
}

/// One ETHn_* variable: its name suffix, the NIC attribute it copies (with an alternative),
/// and whether an empty value falls back to the address range and the network template.
struct NetVar {
    context: &'static str,
    nic: &'static str,
    nic_alt: Option<&'static str>,
    ar_lookup: bool,
}

const fn nv(
    context: &'static str,
    nic: &'static str,
    alt: Option<&'static str>,
    ar: bool,
) -> NetVar {
    NetVar {
        context,
        nic,
        nic_alt: alt,
        ar_lookup: ar,
    }
}

/// OpenNebula's network context variables (IPv4 then IPv6 sets).
const NETWORK_VARS: &[NetVar] = &[
    nv("IP", "IP", None, false),
    nv("MAC", "MAC", None, false),
    nv("MASK", "NETWORK_MASK", None, true),
    nv("NETWORK", "NETWORK_ADDRESS", None, true),
    nv("GATEWAY", "GATEWAY", None, true),
    nv("DNS", "DNS", None, true),
    nv("SEARCH_DOMAIN", "SEARCH_DOMAIN", None, true),
    nv("MTU", "GUEST_MTU", None, true),
    nv("METRIC", "METRIC", None, true),
    nv("METHOD", "METHOD", None, true),
    nv("VLAN_ID", "VLAN_ID", None, true),
    nv("VROUTER_IP", "VROUTER_IP", None, false),
    nv("VROUTER_MANAGEMENT", "VROUTER_MANAGEMENT", None, false),
    nv("EXTERNAL", "EXTERNAL", None, false),
    nv("ROUTES", "ROUTES", None, true),
    nv("IP6", "IP6_GLOBAL", Some("IP6"), false),
    nv("IP6_ULA", "IP6_ULA", None, false),
    nv("IP6_GATEWAY", "GATEWAY6", None, true),
    nv("IP6_METRIC", "IP6_METRIC", None, true),
    nv("IP6_METHOD", "IP6_METHOD", None, true),
    nv("IP6_PREFIX_LENGTH", "PREFIX_LENGTH", None, true),
    nv(
        "VROUTER_IP6",
        "VROUTER_IP6_GLOBAL",
        Some("VROUTER_IP6"),
        false,
    ),
];

/// OpenNebula's boolean reading of an attribute: "YES" (any case) is true.
pub fn is_yes(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("YES"))
}

/// Adds ETHn_* (and ETHn_ALIASm_*) variables for every leased NIC and NIC_ALIAS when the
/// context has NETWORK = "YES". Values come from the NIC, else (for the ar_lookup ones) from
/// its address range, then its network's template; missing values are written empty.
/// NICs in NETWORK_MODE = "auto" are skipped: they get a network only when scheduled.
pub fn add_network_context(context: &mut Vector, scope: &Scope<'_>) {
    if !is_yes(context.get("NETWORK")) {
        return;
    }
    let nics = scope
        .template
        .attrs
        .iter()
        .filter(|a| a.name == "NIC" || a.name == "NIC_ALIAS");
    for a in nics {
        let AttrValue::Vector(nic) = &a.value else {
            continue;
        };
        if nic
            .get("NETWORK_MODE")
            .is_some_and(|m| m.eq_ignore_ascii_case("AUTO"))
        {
            continue;
        }
        let nic_id = nic.get("NIC_ID").unwrap_or("");
        let prefix = if a.name == "NIC" {
            format!("ETH{nic_id}_")
        } else {
            format!(
                "ETH{}_ALIAS{}_",
                nic.get("PARENT_ID").unwrap_or(""),
                nic.get("ALIAS_ID").unwrap_or("")
            )
        };
        for var in NETWORK_VARS {
            let mut value = nic.get(var.nic).unwrap_or("").to_string();
            if value.is_empty()
                && let Some(alt) = var.nic_alt
            {
                value = nic.get(alt).unwrap_or("").to_string();
            }
            if value.is_empty() && var.ar_lookup {
                value = network_attr(scope, var.nic, "NIC_ID", nic_id).unwrap_or_default();
            }
            context.set(&format!("{prefix}{}", var.context), value);
        }
    }
}

/// Parses FILES_DS: `$FILE[IMAGE_ID=3] $FILE[IMAGE="init.sh", IMAGE_UNAME="oneadmin"]`, each
/// `$FILE` as a vector of `IMAGE_ID`, or `IMAGE` with an optional `IMAGE_UNAME` /
/// `IMAGE_UID` (the attributes a DISK names its image with). Anything else (a path, another
/// variable) is refused: a VM never names a host path itself.
pub fn parse_files_ds(text: &str) -> Result<Vec<Vector>, String> {
    let bad = |why: &str| format!("Error parsing FILES_DS {text:?}: {why}");
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let body = rest
            .strip_prefix("$FILE[")
            .ok_or_else(|| bad("only $FILE[...] references are allowed"))?;
        let end = body.find(']').ok_or_else(|| bad("missing ]"))?;
        let mut attrs = Vector::new();
        for part in body[..end].split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("each $FILE attribute is NAME=VALUE"))?;
            let k = k.trim().to_ascii_uppercase();
            let v = v.trim().trim_matches('"').to_string();
            if !matches!(
                k.as_str(),
                "IMAGE_ID" | "IMAGE" | "IMAGE_UNAME" | "IMAGE_UID"
            ) {
                return Err(bad(&format!("unknown $FILE attribute {k}")));
            }
            attrs.attrs.push((k, v));
        }
        if attrs.get("IMAGE_ID").is_none() && attrs.get("IMAGE").is_none() {
            return Err(bad("a $FILE needs IMAGE_ID or IMAGE"));
        }
        out.push(attrs);
        rest = body[end + 1..].trim_start();
    }
    Ok(out)
}

/// FILES_DS as the drivers read it (OpenNebula's form): `'SOURCE':'NAME'` per file, space
/// separated.
pub fn files_ds_value(files: &[(String, String)]) -> String {
    files
        .iter()
        .map(|(source, name)| format!("'{source}':'{name}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resolves a CONTEXT vector: substitutes the variables of every value, then adds the
/// network context. FILES_DS is left as written.
pub fn resolve_context(context: &Vector, scope: &Scope<'_>) -> Result<Vector, String> {
    let mut out = Vector::new();
    for (name, value) in &context.attrs {
        let v = if name == "FILES_DS" {
            value.clone()
        } else {
            substitute(value, scope)?
        };
        out.attrs.push((name.clone(), v));
    }
    add_network_context(&mut out, scope);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        users: HashMap<(i64, &'static str), &'static str>,
        /// (vnet, ar, attr) → value; ar -1 = network template.
        vnets: HashMap<(i64, i64, &'static str), &'static str>,
        images: HashMap<(i64, &'static str), &'static str>,
    }

    impl Lookup for Fake {
        fn user_attr(&self, uid: i64, attr: &str) -> Option<String> {
            self.users
                .iter()
                .find(|((u, a), _)| *u == uid && *a == attr)
                .map(|(_, v)| v.to_string())
        }
        fn vnet_attr(&self, vnet: i64, ar: i64, attr: &str) -> Option<String> {
            let get = |ar: i64| {
                self.vnets
                    .iter()
                    .find(|((n, r, a), _)| *n == vnet && *r == ar && *a == attr)
                    .map(|(_, v)| v.to_string())
            };
            get(ar).or_else(|| get(-1))
        }
        fn image_attr(&self, image: i64, attr: &str) -> Option<String> {
            self.images
                .iter()
                .find(|((i, a), _)| *i == image && *a == attr)
                .map(|(_, v)| v.to_string())
        }
    }

    fn vector(pairs: &[(&str, &str)]) -> Vector {
        let mut v = Vector::new();
        for (n, val) in pairs {
            v.set(n, *val);
        }
        v
    }

    fn vm_template() -> Template {
        let mut t = Template::new();
        t.set("VMID", "42");
        t.set("MEMORY", "512");
        t.push(
            "NIC",
            AttrValue::Vector(vector(&[
                ("NIC_ID", "0"),
                ("NETWORK", "public"),
                ("NETWORK_ID", "3"),
                ("AR_ID", "0"),
                ("IP", "10.0.0.5"),
                ("MAC", "02:00:0a:00:00:05"),
            ])),
        );
        t.push(
            "NIC",
            AttrValue::Vector(vector(&[
                ("NIC_ID", "1"),
                ("NETWORK", "private"),
                ("NETWORK_ID", "4"),
                ("AR_ID", "1"),
                ("IP", "192.168.1.9"),
                ("MAC", "02:00:c0:a8:01:09"),
                ("GATEWAY", "192.168.1.254"),
            ])),
        );
        t.push(
            "NIC_ALIAS",
            AttrValue::Vector(vector(&[
                ("NIC_ID", "2"),
                ("PARENT_ID", "0"),
                ("ALIAS_ID", "0"),
                ("NETWORK_ID", "4"),
                ("AR_ID", "1"),
                ("IP", "192.168.1.10"),
            ])),
        );
        t.push(
            "DISK",
            AttrValue::Vector(vector(&[
                ("DISK_ID", "0"),
                ("IMAGE_ID", "7"),
                ("IMAGE", "ubuntu"),
                ("TARGET", "vda"),
            ])),
        );
        t.push(
            "DISK",
            AttrValue::Vector(vector(&[
                ("DISK_ID", "1"),
                ("TYPE", "swap"),
                ("TARGET", "vdb"),
            ])),
        );
        t
    }

    fn fake() -> Fake {
        let mut f = Fake::default();
        f.users
            .insert((5, "SSH_PUBLIC_KEY"), "ssh-ed25519 AAAA alice");
        f.vnets.insert((3, -1, "GATEWAY"), "10.0.0.1");
        f.vnets.insert((3, 0, "DNS"), "10.0.0.2");
        f.vnets.insert((3, -1, "DNS"), "8.8.8.8");
        f.vnets.insert((3, -1, "NETWORK_MASK"), "255.255.255.0");
        f.vnets.insert((4, 1, "NETWORK_MASK"), "255.255.0.0");
        f.images.insert((7, "DISTRO"), "ubuntu-24.04");
        f
    }

    fn with_scope<R>(f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let t = vm_template();
        let mut u = Template::new();
        u.set("ROLE", "web");
        u.set("MEMORY", "shadowed");
        let lookup = fake();
        let doc = || "<VM><ID>42</ID></VM>".to_string();
        let scope = Scope {
            vmid: 42,
            name: "web-42",
            uid: 5,
            uname: "alice",
            gid: 1,
            gname: "users",
            template: &t,
            user_template: &u,
            lookup: &lookup,
            document: &doc,
        };
        f(&scope)
    }

    fn sub(text: &str) -> Result<String, String> {
        with_scope(|s| substitute(text, s))
    }

    #[test]
    fn files_ds_references_parse_and_nothing_else_is_allowed() {
        let refs: Vec<_> =
            parse_files_ds(r#" $FILE[IMAGE_ID=3] $FILE[IMAGE="init.sh", IMAGE_UNAME="ann"]"#)
                .unwrap()
                .into_iter()
                .map(|v| v.attrs)
                .collect();
        assert_eq!(
            refs,
            vec![
                vec![("IMAGE_ID".to_string(), "3".to_string())],
                vec![
                    ("IMAGE".to_string(), "init.sh".to_string()),
                    ("IMAGE_UNAME".to_string(), "ann".to_string())
                ],
            ]
        );
        assert!(parse_files_ds("").unwrap().is_empty());
        for bad in [
            "'/etc/shadow':'x'",
            "$FILE[IMAGE_ID=3",
            "$FILE[PATH=/etc/passwd]",
            "$FILE[IMAGE_UNAME=ann]",
            "$FILE[IMAGE_ID=3] /etc/hosts",
        ] {
            assert!(parse_files_ds(bad).is_err(), "{bad}");
        }
        assert_eq!(
            files_ds_value(&[
                ("/ds/2/ab".into(), "init.sh".into()),
                ("/ds/2/cd".into(), "k".into())
            ]),
            "'/ds/2/ab':'init.sh' '/ds/2/cd':'k'"
        );
    }

    #[test]
    fn simple_variables() {
        assert_eq!(sub("$NAME").unwrap(), "web-42");
        assert_eq!(sub("$uname/$UID:$GNAME/$GID").unwrap(), "alice/5:users/1");
        assert_eq!(sub("vm $VMID has $MEMORY MB").unwrap(), "vm 42 has 512 MB");
        // The VM template wins over the user template; user attributes are found too.
        assert_eq!(sub("$ROLE").unwrap(), "web");
        assert_eq!(sub("[$NOPE]").unwrap(), "[]");
        assert_eq!(sub("no variables").unwrap(), "no variables");
        assert_eq!(
            sub("$TEMPLATE").unwrap(),
            base64::engine::general_purpose::STANDARD.encode("<VM><ID>42</ID></VM>")
        );
    }

    #[test]
    fn adjacent_and_terminated_variables() {
        assert_eq!(sub("$NAME$VMID").unwrap(), "web-4242");
        assert_eq!(sub("$NAME.local").unwrap(), "web-42.local");
        assert_eq!(sub("$NAME-$VMID!").unwrap(), "web-42-42!");
    }

    #[test]
    fn escaped_dollar_is_kept_verbatim() {
        assert_eq!(sub("echo \\$HOME").unwrap(), "echo \\$HOME");
        assert_eq!(sub("a\\b $NAME").unwrap(), "a\\b web-42");
    }

    #[test]
    fn vector_variables() {
        assert_eq!(sub("$NIC[IP]").unwrap(), "10.0.0.5");
        assert_eq!(sub("$NIC[IP, NETWORK=\"private\"]").unwrap(), "192.168.1.9");
        assert_eq!(
            sub("$nic[ ip , network = private ]").unwrap(),
            "192.168.1.9"
        );
        assert_eq!(sub("$NIC[MAC, NIC_ID=1]").unwrap(), "02:00:c0:a8:01:09");
        assert_eq!(sub("$NIC[IP, NETWORK=\"none\"]").unwrap(), "");
        assert_eq!(sub("$DISK[TARGET, TYPE=\"swap\"]").unwrap(), "vdb");
        assert_eq!(
            sub("$USER[SSH_PUBLIC_KEY]").unwrap(),
            "ssh-ed25519 AAAA alice"
        );
        assert_eq!(sub("$USER[NOTHING]").unwrap(), "");
    }

    #[test]
    fn network_and_image_variables() {
        // The address range first, then the network template.
        assert_eq!(sub("$NETWORK[DNS, NETWORK_ID=3]").unwrap(), "10.0.0.2");
        assert_eq!(
            sub("$NETWORK[GATEWAY, NETWORK=\"public\"]").unwrap(),
            "10.0.0.1"
        );
        assert_eq!(
            sub("$NETWORK[NETWORK_MASK, NIC_ID=\"1\"]").unwrap(),
            "255.255.0.0"
        );
        // Only networks the VM uses, and only by those keys.
        assert_eq!(sub("$NETWORK[GATEWAY, NETWORK_ID=9]").unwrap(), "");
        assert_eq!(sub("$NETWORK[GATEWAY, IP=\"10.0.0.5\"]").unwrap(), "");
        assert_eq!(sub("$NETWORK[GATEWAY]").unwrap(), "");
        assert_eq!(
            sub("$IMAGE[DISTRO, IMAGE=\"ubuntu\"]").unwrap(),
            "ubuntu-24.04"
        );
        assert_eq!(sub("$IMAGE[DISTRO, IMAGE_ID=7]").unwrap(), "ubuntu-24.04");
        assert_eq!(sub("$IMAGE[DISTRO, IMAGE_ID=8]").unwrap(), "");
    }

    #[test]
    fn syntax_errors_are_readable() {
        let e = sub("pa$ word").unwrap_err();
        assert!(
            e.starts_with("Error parsing: pa$ word. expected a variable name after '$'"),
            "{e}"
        );
        assert!(e.ends_with("at line 1, column 4"), "{e}");
        assert!(
            sub("cost 5$")
                .unwrap_err()
                .contains("found the end of the value")
        );
        assert!(sub("$NIC[IP").unwrap_err().contains("expected ']'"));
        assert!(
            sub("$NIC[IP, NETWORK]")
                .unwrap_err()
                .contains("expected '='")
        );
        assert!(
            sub("$NIC[IP, NETWORK=\"x]")
                .unwrap_err()
                .contains("closing '\"'")
        );
        let e = sub("line1\n$[").unwrap_err();
        assert!(e.ends_with("at line 2, column 2"), "{e}");
    }

    #[test]
    fn network_context_per_nic_and_alias() {
        with_scope(|s| {
            let ctx = vector(&[
                ("NETWORK", "YES"),
                ("ETH0_IP", "user value"),
                ("SET_HOSTNAME", "$NAME"),
            ]);
            let out = resolve_context(&ctx, s).unwrap();
            assert_eq!(out.get("SET_HOSTNAME"), Some("web-42"));
            // Generated values replace the user's.
            assert_eq!(out.get("ETH0_IP"), Some("10.0.0.5"));
            assert_eq!(out.get("ETH0_MAC"), Some("02:00:0a:00:00:05"));
            // NIC, then AR, then network template.
            assert_eq!(out.get("ETH0_GATEWAY"), Some("10.0.0.1"));
            assert_eq!(out.get("ETH0_DNS"), Some("10.0.0.2"));
            assert_eq!(out.get("ETH0_MASK"), Some("255.255.255.0"));
            assert_eq!(out.get("ETH1_GATEWAY"), Some("192.168.1.254"));
            assert_eq!(out.get("ETH1_MASK"), Some("255.255.0.0"));
            // Empty values are still written.
            assert_eq!(out.get("ETH1_DNS"), Some(""));
            assert_eq!(out.get("ETH0_IP6"), Some(""));
            assert_eq!(out.get("ETH0_ALIAS0_IP"), Some("192.168.1.10"));
            assert_eq!(out.get("ETH0_ALIAS0_MASK"), Some("255.255.0.0"));
            assert!(out.get("ETH2_IP").is_none());
        });
    }

    #[test]
    fn no_network_context_unless_asked() {
        with_scope(|s| {
            let ctx = vector(&[
                ("NETWORK", "no"),
                ("A", "$VMID"),
                ("FILES_DS", "$FILE[IMAGE_ID=3]"),
            ]);
            let out = resolve_context(&ctx, s).unwrap();
            assert_eq!(out.attrs.len(), 3);
            assert_eq!(out.get("A"), Some("42"));
            assert_eq!(out.get("FILES_DS"), Some("$FILE[IMAGE_ID=3]"));
        });
    }

    #[test]
    fn auto_nics_get_no_context() {
        let mut t = Template::new();
        t.push(
            "NIC",
            AttrValue::Vector(vector(&[("NIC_ID", "0"), ("NETWORK_MODE", "auto")])),
        );
        let lookup = Fake::default();
        let doc = String::new;
        let u = Template::new();
        let scope = Scope {
            vmid: 1,
            name: "x",
            uid: 0,
            uname: "oneadmin",
            gid: 0,
            gname: "oneadmin",
            template: &t,
            user_template: &u,
            lookup: &lookup,
            document: &doc,
        };
        let mut ctx = vector(&[("NETWORK", "YES")]);
        add_network_context(&mut ctx, &scope);
        assert_eq!(ctx.attrs.len(), 1);
    }
}
