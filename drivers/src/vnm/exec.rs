//! How the network drivers reach the kernel: the `ip` and `nft` tools (and a sysctl read),
//! behind one small trait so that the unit tests can check the exact commands against a
//! model of the kernel ([`super::fake`]) and the real tests can work inside a throwaway
//! network namespace.

use crate::{Error, Result, cmd};
use std::io::Write;
use std::process::{Command, Stdio};

/// The host's network stack as the drivers use it.
pub trait Exec: Send + Sync {
    /// Runs `ip ARGS`, answering its stdout. A failure is [`Error::Command`] with the
    /// command line and what `ip` said.
    fn ip(&self, args: &[String]) -> Result<String>;

    /// Loads `script` with `nft -f -` (one transaction: all of it or nothing), or with
    /// `check_only` has the kernel validate it without applying it (`nft -c -f -`).
    fn nft(&self, script: &str, check_only: bool) -> Result<()>;

    /// `nft -j list table bridge TABLE`: the table as JSON; Ok(None) when it does not exist.
    fn nft_list(&self, table: &str) -> Result<Option<String>>;

    /// A sysctl's value (`net.bridge.bridge-nf-call-iptables`), None when it does not exist.
    fn sysctl(&self, name: &str) -> Option<String>;

    /// Loads a kernel module (`modprobe NAME`); Ok(false) when it cannot be loaded.
    fn modprobe(&self, name: &str) -> bool;
}

/// The real tools, in this process's network namespace or in a named one (`ip -n NS`,
/// `ip netns exec NS nft`): the tests and benchmarks work inside throwaway namespaces.
#[derive(Clone, Debug, Default)]
pub struct System {
    pub netns: Option<String>,
}

impl System {
    pub fn new() -> System {
        System { netns: None }
    }

    pub fn in_netns(name: impl Into<String>) -> System {
        System {
            netns: Some(name.into()),
        }
    }

    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) if program == "ip" => {
                let mut c = Command::new("ip");
                c.args(["-n", ns]);
                c
            }
            Some(ns) => {
                // nsenter rather than `ip netns exec`: the network namespace is all these
                // tools need, and remounting /sys for each call costs milliseconds.
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

impl Exec for System {
    fn ip(&self, args: &[String]) -> Result<String> {
        cmd::stdout(self.command("ip").args(args))
    }

    fn nft(&self, script: &str, check_only: bool) -> Result<()> {
        let mut c = self.command("nft");
        if check_only {
            c.arg("-c");
        }
        c.args(["-f", "-"]);
        run_with_stdin(&mut c, script)
    }

    fn nft_list(&self, table: &str) -> Result<Option<String>> {
        match cmd::stdout(
            self.command("nft")
                .args(["-j", "list", "table", "bridge", table]),
        ) {
            Ok(out) => Ok(Some(out)),
            Err(e)
                if is_missing(&e)
                    || matches!(&e, Error::Command { detail, .. } if detail.contains("No such file")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn sysctl(&self, name: &str) -> Option<String> {
        match &self.netns {
            // /proc/sys/net is the reader's namespace: read it from inside.
            Some(_) => cmd::stdout(self.command("sysctl").args(["-n", name]))
                .ok()
                .map(|s| s.trim().to_string()),
            None => {
                let path = format!("/proc/sys/{}", name.replace('.', "/"));
                std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
            }
        }
    }

    fn modprobe(&self, name: &str) -> bool {
        cmd::run(Command::new("modprobe").arg(name)).is_ok()
    }
}

/// Runs `cmd` with `input` on its stdin; errors as [`cmd::run`]'s (the command line and its
/// stderr).
fn run_with_stdin(c: &mut Command, input: &str) -> Result<()> {
    let name = cmd::display(c);
    let fail = |detail: String| Error::Command {
        cmd: name.clone(),
        detail,
    };
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                "not installed on this host".into()
            } else {
                e.to_string()
            })
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits early closes the pipe; its stderr says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.is_empty() {
        detail = out.status.to_string();
    }
    Err(fail(detail))
}

/// Whether an `ip` failure says the object already exists (a concurrent creation won).
pub fn is_exists(e: &Error) -> bool {
    matches!(e, Error::Command { detail, .. } if detail.contains("File exists"))
}

/// Whether an `ip` failure says the device is not there.
pub fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Command { detail, .. }
        if detail.contains("does not exist") || detail.contains("Cannot find device"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_reaches_the_tool_and_failures_carry_stderr() {
        run_with_stdin(
            Command::new("sh").args(["-c", "read l; [ \"$l\" = hi ]"]),
            "hi\n",
        )
        .unwrap();
        let e = run_with_stdin(
            Command::new("sh").args(["-c", "cat >/dev/null; echo bad rule >&2; exit 1"]),
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().ends_with("failed: bad rule"), "{e}");
    }

    #[test]
    fn exists_and_missing_are_told_apart() {
        let e = |d: &str| Error::Command {
            cmd: "ip link add".into(),
            detail: d.into(),
        };
        assert!(is_exists(&e("RTNETLINK answers: File exists")));
        assert!(is_missing(&e("Device \"x\" does not exist.")));
        assert!(!is_exists(&e("RTNETLINK answers: Invalid argument")));
    }
}
