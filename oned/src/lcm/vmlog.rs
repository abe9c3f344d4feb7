//! The VM log, `<data dir>/vms/<id>/vm.log`, in OpenNebula's line format
//! (`Mon Nov 23 10:00:00 2026 [Z0][VM][I]: New LCM state is PROLOG`), and the time stamps of
//! ERROR messages.

use std::io::Write;
use std::path::Path;

/// `Mon Nov 23 10:00:00 2026` (UTC) for a UNIX time.
pub fn ctime(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        d,
        h,
        m,
        s,
        year
    )
}

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
    fn ctime_matches_known_dates() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        // 2026-11-23 10:00:00 UTC was a Monday.
        assert_eq!(ctime(1_795_428_000), "Mon Nov 23 10:00:00 2026");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

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
