//! Where templates come from: a file, standard input, `$EDITOR`, or command-line options
//! (`onevm create --cpu 1 --memory 512 --disk img --nic net`), as in OpenNebula's CLI.

use crate::error::{CliError, CliResult};
use clap::Args;
use std::io::Read;
use std::path::Path;

/// Reads a template file.
pub fn read_file(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::msg(format!("Cannot read {}: {e}", path.display())))
}

/// Standard input, when something is waiting there (not a terminal, data or end of file
/// ready right now), as OpenNebula's CLI checks it; "" otherwise.
pub fn read_stdin() -> CliResult<String> {
    // SAFETY: isatty and poll only read the state of fd 0; pollfd is ours.
    let ready = unsafe {
        if libc::isatty(0) == 1 {
            false
        } else {
            let mut fds = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut fds, 1, 0) == 1 && fds.revents & (libc::POLLIN | libc::POLLHUP) != 0
        }
    };
    if !ready {
        return Ok(String::new());
    }
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    Ok(s)
}

/// A file if given, else standard input if it holds something; `None` for neither.
pub fn file_or_stdin(path: Option<&Path>) -> CliResult<Option<String>> {
    if let Some(p) = path {
        return Ok(Some(read_file(p)?));
    }
    let s = read_stdin()?;
    Ok(if s.trim().is_empty() { None } else { Some(s) })
}

/// Opens `$EDITOR` (default `vi`) on `initial` and returns what was saved.
pub fn editor(initial: &str) -> CliResult<String> {
    let path = std::env::temp_dir().join(format!("one_cli-{}.tmpl", std::process::id()));
    std::fs::write(&path, initial)?;
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let result = match status {
        Ok(s) if s.success() => std::fs::read_to_string(&path).map_err(CliError::from),
        _ => Err(CliError::msg("Editor not defined")),
    };
    let _ = std::fs::remove_file(&path);
    result
}

/// The options that write a VM template (`onevm create`, `onetemplate create`,
/// `onetemplate instantiate`).
#[derive(Args, Debug, Clone, Default)]
pub struct TemplateOpts {
    /// Name for the new VM or template
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// CPU percentage reserved for the VM (1=100% one CPU)
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<f64>,
    /// Number of virtualized CPUs
    #[arg(long, value_name = "VCPU")]
    pub vcpu: Option<u32>,
    /// Architecture of the VM, e.g.: i386 or x86_64
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Memory in MB; add 'g' for GB (8g=8192, 0.5g=512)
    #[arg(long, value_name = "MEMORY", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// Disks to attach (IMAGE[:KEY=VALUE...] or USER[IMAGE], comma-separated)
    #[arg(long, value_name = "IMAGES", value_delimiter = ',')]
    pub disk: Vec<String>,
    /// Networks to attach (NETWORK[:KEY=VALUE...], USER[NETWORK] or auto, comma-separated)
    #[arg(long, value_name = "NETWORKS", value_delimiter = ',')]
    pub nic: Vec<String>,
    /// Raw string to add to the template
    #[arg(long, value_name = "STRING")]
    pub raw: Option<String>,
    /// Add a VNC server to the VM
    #[arg(long)]
    pub vnc: bool,
    /// VNC password
    #[arg(long = "vnc-password", value_name = "PASSWORD")]
    pub vnc_password: Option<String>,
    /// VNC IP to listen on (default 0.0.0.0)
    #[arg(long = "vnc-listen", value_name = "IP")]
    pub vnc_listen: Option<String>,
    /// VNC keyboard layout
    #[arg(long = "vnc-keymap", value_name = "KEYMAP")]
    pub vnc_keymap: Option<String>,
    /// Add an SSH public key to the context (the file's, or $USER[SSH_PUBLIC_KEY])
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub ssh: Option<String>,
    /// Add network contextualization parameters
    #[arg(long = "net_context")]
    pub net_context: bool,
    /// Context lines (KEY=VALUE, comma-separated)
    #[arg(long, value_name = "LINES", value_delimiter = ',')]
    pub context: Vec<String>,
    /// Boot device list, e.g. disk0,nic0
    #[arg(long, value_name = "DEVICES")]
    pub boot: Option<String>,
    /// Only print the template
    #[arg(long)]
    pub dry: bool,
}

/// `512`, `512m`, `0.5g` -> MB.
fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("gb").or_else(|| t.strip_suffix('g')) {
        (n, 1024.0)
    } else if let Some(n) = t.strip_suffix("mb").or_else(|| t.strip_suffix('m')) {
        (n, 1.0)
    } else {
        (t.as_str(), 1.0)
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(|v| (v * mult).floor() as u64)
        .ok_or_else(|| "Memory value malformed".to_string())
}

fn q(v: &str) -> String {
    v.replace('"', "\\\"")
}

impl TemplateOpts {
    /// Whether any option that writes template content was given (the name alone is not).
    pub fn has_content(&self) -> bool {
        self.cpu.is_some()
            || self.vcpu.is_some()
            || self.arch.is_some()
            || self.memory.is_some()
            || !self.disk.is_empty()
            || !self.nic.is_empty()
            || self.raw.is_some()
            || self.vnc
            || self.ssh.is_some()
            || self.net_context
            || !self.context.is_empty()
            || self.boot.is_some()
    }

    /// The template these options describe, in OpenNebula's syntax.
    pub fn template(&self, with_name: bool) -> CliResult<String> {
        let mut t = String::new();
        if with_name && let Some(n) = &self.name {
            t.push_str(&format!("NAME=\"{}\"\n", q(n)));
        }
        if self.arch.is_some() || self.boot.is_some() {
            let mut lines = Vec::new();
            if let Some(a) = &self.arch {
                lines.push(format!("  ARCH = \"{}\"", q(a)));
            }
            if let Some(b) = &self.boot {
                lines.push(format!("  BOOT = \"{}\"", q(b)));
            }
            t.push_str(&format!("OS = [\n{} ]\n", lines.join(",\n")));
        }
        if let Some(c) = self.cpu {
            t.push_str(&format!("CPU={}\n", crate::fmt::trim_float(c)));
        }
        if let Some(v) = self.vcpu {
            t.push_str(&format!("VCPU={v}\n"));
        }
        if let Some(m) = self.memory {
            t.push_str(&format!("MEMORY={m}\n"));
        }
        if let Some(r) = &self.raw {
            t.push_str(r);
            t.push('\n');
        }
        t.push_str(&disk_net(&self.disk, "DISK", "IMAGE")?);
        t.push_str(&disk_net(&self.nic, "NIC", "NETWORK")?);
        if self.vnc {
            let listen = self.vnc_listen.as_deref().unwrap_or("0.0.0.0");
            t.push_str(&format!(
                "GRAPHICS=[ TYPE=\"vnc\", LISTEN=\"{}\"",
                q(listen)
            ));
            if let Some(p) = &self.vnc_password {
                t.push_str(&format!(", PASSWD=\"{}\"", q(p)));
            }
            if let Some(k) = &self.vnc_keymap {
                t.push_str(&format!(", KEYMAP=\"{}\"", q(k)));
            }
            t.push_str(" ]\n");
        }
        let mut context: Vec<String> = self.context.iter().map(|l| format!(" {l}")).collect();
        if let Some(ssh) = &self.ssh {
            let key = if ssh.is_empty() {
                "$USER[SSH_PUBLIC_KEY]".to_string()
            } else {
                read_file(Path::new(ssh))?.trim().to_string()
            };
            context.push(format!("  SSH_PUBLIC_KEY=\"{}\"", q(&key)));
        }
        if self.net_context {
            context.push("  NETWORK=\"YES\"".into());
        }
        if !context.is_empty() {
            t.push_str(&format!("CONTEXT=[\n{}\n]\n", context.join(",\n")));
        }
        Ok(t)
    }
}

/// `DISK=[ IMAGE_ID=3 ]` / `NIC=[ NETWORK="net", IP="10.0.0.5" ]` lines from
/// `OBJECT[:KEY=VALUE...]` and `USER[OBJECT]` items.
fn disk_net(items: &[String], section: &str, name: &str) -> CliResult<String> {
    let mut t = String::new();
    for item in items {
        let mut parts = item.split(':');
        let obj = parts.next().unwrap_or_default();
        // A value may hold ':' (KEY=a:b): pieces without '=' continue the previous one.
        let mut extra: Vec<String> = Vec::new();
        for p in parts {
            match extra.last_mut() {
                Some(last) if !p.contains('=') => {
                    last.push(':');
                    last.push_str(p);
                }
                _ => extra.push(p.to_string()),
            }
        }
        let (user, object) = match obj.split_once('[') {
            Some((u, rest)) if rest.ends_with(']') && !u.is_empty() => {
                (Some(u), &rest[..rest.len() - 1])
            }
            Some(_) => {
                return Err(CliError::msg(format!(
                    "{}{} \"{obj}\" malformed",
                    &section[..1],
                    section[1..].to_ascii_lowercase()
                )));
            }
            None => (None, obj),
        };
        if object.is_empty() {
            return Err(CliError::msg(format!(
                "{}{} \"{obj}\" malformed",
                &section[..1],
                section[1..].to_ascii_lowercase()
            )));
        }
        t.push_str(&format!("{section}=[\n"));
        let mut lines: Vec<String> = Vec::new();
        let extra_lines = extra.iter().map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            format!("  {}=\"{}\"", k.to_ascii_uppercase(), q(v))
        });
        if section == "NIC" && ["auto", "dummy"].contains(&object.to_ascii_lowercase().as_str()) {
            lines.extend(extra_lines);
            lines.push(format!("  NETWORK_MODE=\"{object}\""));
        } else {
            if let Some(u) = user {
                lines.push(format!("  {name}_UNAME=\"{}\"", q(u)));
            }
            lines.extend(extra_lines);
            if object.bytes().all(|b| b.is_ascii_digit()) {
                lines.push(format!("  {name}_ID={object}"));
            } else {
                lines.push(format!("  {name}=\"{}\"", q(object)));
            }
        }
        t.push_str(&lines.join(",\n"));
        t.push_str("\n]\n");
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512"), Ok(512));
        assert_eq!(parse_memory("0.5g"), Ok(512));
        assert_eq!(parse_memory("8GB"), Ok(8192));
        assert_eq!(parse_memory("100m"), Ok(100));
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn template_from_options_parses() {
        let o = TemplateOpts {
            name: Some("x".into()),
            cpu: Some(1.0),
            memory: Some(512),
            disk: vec![
                "img:size=1000:target=vda".into(),
                "alice[other]".into(),
                "3".into(),
            ],
            nic: vec!["net:ip=10.0.0.5".into(), "auto".into()],
            vnc: true,
            net_context: true,
            ..TemplateOpts::default()
        };
        let text = o.template(true).unwrap();
        let t = oca::Template::parse(&text).unwrap();
        assert_eq!(t.get("NAME"), Some("x"));
        assert_eq!(t.get("CPU"), Some("1"));
        let disks: Vec<_> = t.vectors("DISK").collect();
        assert_eq!(disks[0].get("IMAGE"), Some("img"));
        assert_eq!(disks[0].get("SIZE"), Some("1000"));
        assert_eq!(disks[1].get("IMAGE_UNAME"), Some("alice"));
        assert_eq!(disks[2].get("IMAGE_ID"), Some("3"));
        let nics: Vec<_> = t.vectors("NIC").collect();
        assert_eq!(nics[0].get("IP"), Some("10.0.0.5"));
        assert_eq!(nics[1].get("NETWORK_MODE"), Some("auto"));
        assert_eq!(t.vector("GRAPHICS").unwrap().get("TYPE"), Some("vnc"));
        assert_eq!(t.vector("CONTEXT").unwrap().get("NETWORK"), Some("YES"));
        assert!(o.has_content());
        assert!(disk_net(&["a[b".into()], "DISK", "IMAGE").is_err());
    }
}
