//! Running the external tools the drivers use (qemu-img, mkfs, ip, nft, genisoimage, ...):
//! the command line and its stderr end up in the error, so a failure says what was run and
//! what the tool answered.

use crate::{Error, Result};
use std::process::{Command, Output};

/// The command as a user would type it (program and arguments, space separated).
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr (or stdout,
/// or the exit status when both are empty). Answers the output of a successful run.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let name = display(cmd);
    let out = cmd.output().map_err(|e| Error::Command {
        cmd: name.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            "not installed on this host".to_string()
        } else {
            e.to_string()
        },
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    if detail.is_empty() {
        detail = out.status.to_string();
    }
    Err(Error::Command { cmd: name, detail })
}

/// Like [`run`], answering stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_says_what_ran_and_what_it_answered() {
        let err = run(Command::new("sh").args(["-c", "echo nope >&2; exit 3"])).unwrap_err();
        assert_eq!(err.to_string(), "sh -c echo nope >&2; exit 3 failed: nope");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let err = run(&mut Command::new("one-rs-no-such-tool")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "one-rs-no-such-tool failed: not installed on this host"
        );
    }
}
