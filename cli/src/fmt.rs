//! Value formatting as OpenNebula's CLI does it: sizes (`512M`, `1.5G`), times
//! (`11/23 10:04:05`), durations (`  0d 02h13m`), yes/no.

use std::ffi::CStr;

const SUFFIXES: [&str; 4] = ["K", "M", "G", "T"];

/// A size in `unit` (`K`, `M`, `G`) with the largest suffix that keeps it above 1024, one
/// decimal when needed: 131072 K is `128M`, 1536 M is `1.5G`. `kilobytes` prints the bare
/// number, as `-k` asks.
pub fn unit(value: f64, unit: &str, kilobytes: bool) -> String {
    if kilobytes {
        return trim_float(value);
    }
    let mut i = SUFFIXES.iter().position(|s| *s == unit).unwrap_or(0);
    let mut v = value;
    while v > 1024.0 && i < 3 {
        v /= 1024.0;
        i += 1;
    }
    let v = (v * 10.0).round() / 10.0;
    format!("{}{}", trim_float(v), SUFFIXES[i])
}

/// [`unit`] for an integer amount.
pub fn unit_i(value: i64, u: &str) -> String {
    unit(value as f64, u, false)
}

/// `3` for 3.0, `1.5` for 1.5 (Ruby's `to_i if integral`).
pub fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Local time of an epoch with a strftime format; `-` for 0.
pub fn strftime(epoch: i64, format: &str) -> String {
    if epoch == 0 {
        return "-".into();
    }
    let t: libc::time_t = epoch as libc::time_t;
    // SAFETY: localtime_r writes into the tm we own; strftime writes at most buf.len() bytes
    // into buf and NUL-terminates; format is a valid NUL-terminated string.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return epoch.to_string();
        }
        let fmt = std::ffi::CString::new(format).unwrap_or_default();
        let mut buf = [0 as libc::c_char; 128];
        let n = libc::strftime(buf.as_mut_ptr(), buf.len(), fmt.as_ptr(), &tm);
        if n == 0 {
            return epoch.to_string();
        }
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

/// OpenNebula's `time_to_str`: `11/23 10:04:05`, `-` for 0.
pub fn time(epoch: i64) -> String {
    strftime(epoch, "%m/%d %H:%M:%S")
}

/// `time_to_str` without seconds: `11/23 10:04`.
pub fn time_short(epoch: i64) -> String {
    strftime(epoch, "%m/%d %H:%M")
}

/// Ruby's `Time#ctime`: `Mon Nov 23 10:04:05 2026`.
pub fn ctime(epoch: i64) -> String {
    strftime(epoch, "%a %b %e %H:%M:%S %Y")
}

/// OpenNebula's `period_to_str`: `%3dd %02dh%02dm` (and `%02ds` with seconds).
pub fn period(seconds: i64, with_seconds: bool) -> String {
    let s = seconds.max(0);
    let (days, rest) = (s / 86_400, s % 86_400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, secs) = (rest / 60, rest % 60);
    if with_seconds {
        format!("{days:3}d {hours:02}h{minutes:02}m{secs:02}s")
    } else {
        format!("{days:3}d {hours:02}h{minutes:02}m")
    }
}

/// OpenNebula's `short_period_to_str`: `%3dh%02dm%02ds`.
pub fn short_period(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{:3}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
}

/// `Yes` / `No` as `show` prints booleans.
pub fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `%-80s`: a section title padded to 80 columns, as `show` prints them.
pub fn title(s: &str) -> String {
    format!("{s:<80}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_like_opennebula() {
        assert_eq!(unit_i(128, "M"), "128M");
        assert_eq!(unit_i(1024, "M"), "1024M");
        assert_eq!(unit_i(2048, "M"), "2G");
        assert_eq!(unit_i(1536, "M"), "1.5G");
        assert_eq!(unit_i(131_072, "K"), "128M");
        assert_eq!(unit_i(0, "M"), "0M");
        assert_eq!(unit_i(3 * 1024 * 1024 * 1024, "K"), "3T");
        assert_eq!(unit(131_072.0, "K", true), "131072");
    }

    #[test]
    fn periods() {
        assert_eq!(period(0, false), "  0d 00h00m");
        assert_eq!(period(90_061, false), "  1d 01h01m");
        assert_eq!(period(90_061, true), "  1d 01h01m01s");
        assert_eq!(short_period(3725), "  1h02m05s");
        assert_eq!(time(0), "-");
    }
}
