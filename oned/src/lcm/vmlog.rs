//! The VM log, `<data dir>/vms/<id>/vm.log`, in OpenNebula's line format
//! (`Mon Nov 23 10:00:00 2026 [Z0][VM][I]: New LCM state is PROLOG`), and the time stamps of
//! ERROR messages.

use std::io::Write;
use std::path::Path;

pub use one_proto::time::ctime;

/// Severity letter of a log line.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Info,
    Error,
}

/// Appends lines to the VM's log. Best effort: the log is for people, a failure to write it
/// is logged and does not stop the lifecycle.
pub fn append(vms_dir: &Path, vm_id: i64, module: &str, level: Level, lines: &[String], now: i64) {
    let dir = vms_dir.join(vm_id.to_string());
    let res = std::fs::create_dir_all(&dir).and_then(|_| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("vm.log"))?;
        let stamp = ctime(now);
        let l = match level {
            Level::Info => 'I',
            Level::Error => 'E',
        };
        let mut buf = String::new();
        for line in lines {
            buf.push_str(&format!("{stamp} [Z0][{module}][{l}]: {line}\n"));
        }
        f.write_all(buf.as_bytes())
    });
    if let Err(e) = res {
        tracing::warn!(vm = vm_id, error = %e, "cannot write vm.log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines() {
        let dir = std::env::temp_dir().join(format!("vmlog-{}", std::process::id()));
        append(
            &dir,
            3,
            "VM",
            Level::Info,
            &["New state is ACTIVE".into()],
            0,
        );
        append(&dir, 3, "LCM", Level::Error, &["boom".into()], 0);
        let text = std::fs::read_to_string(dir.join("3/vm.log")).unwrap();
        assert_eq!(
            text,
            "Thu Jan  1 00:00:00 1970 [Z0][VM][I]: New state is ACTIVE\nThu Jan  1 00:00:00 1970 [Z0][LCM][E]: boom\n"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
