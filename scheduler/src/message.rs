//! SCHED_MESSAGE text as OpenNebula writes it: `<ctime-style date> : <message>`, e.g.
//! `Mon Nov 23 10:00:00 2026 : No host fits VM 7: ...`. The date is UTC.

/// `message` prefixed with the date of `unix_seconds`.
pub fn stamp(unix_seconds: i64, message: &str) -> String {
    format!("{} : {message}", ctime(unix_seconds))
}

/// The message without its date prefix, for comparing two messages (a message without the
/// prefix is returned whole).
pub fn strip_stamp(text: &str) -> &str {
    match text.split_once(" : ") {
        Some((date, rest)) if looks_like_date(date) => rest,
        _ => text,
    }
}

fn looks_like_date(s: &str) -> bool {
    // "Mon Nov 23 10:00:00 2026": five fields, a time in the fourth.
    let f: Vec<&str> = s.split_whitespace().collect();
    f.len() == 5 && f[3].len() == 8 && f[3].matches(':').count() == 2
}

/// `Www Mmm dd hh:mm:ss yyyy` for a Unix time, in UTC.
pub fn ctime(unix_seconds: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        y
    )
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01, proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift to a calendar starting on March 1st of year 0, in 400-year eras, so leap days
    // fall at the end of each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_format() {
        assert_eq!(ctime(0), "Thu Jan 01 00:00:00 1970");
        // 2026-11-23 10:00:00 UTC was a Monday.
        assert_eq!(ctime(1_795_428_000), "Mon Nov 23 10:00:00 2026");
        // Leap day.
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(ctime(-1), "Wed Dec 31 23:59:59 1969");
    }

    #[test]
    fn stamp_and_strip() {
        let s = stamp(1_795_428_000, "No host fits VM 7: x : y");
        assert_eq!(s, "Mon Nov 23 10:00:00 2026 : No host fits VM 7: x : y");
        assert_eq!(strip_stamp(&s), "No host fits VM 7: x : y");
        assert_eq!(strip_stamp("plain : text"), "plain : text");
        assert_eq!(strip_stamp(""), "");
    }
}
