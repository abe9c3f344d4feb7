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

/// `Www Mmm dd hh:mm:ss yyyy` for a Unix time, in UTC (the day of month zero-padded).
pub fn ctime(unix_seconds: i64) -> String {
    let c = one_proto::time::civil(unix_seconds);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}",
        c.day_name(),
        c.month_name(),
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.year
    )
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
