//! Calendar dates for the time stamps OpenNebula writes (ctime(3) style), in UTC, without a
//! date library.

/// A UTC time split into calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1-12.
    pub month: i64,
    /// 1-31.
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// 0 Sunday ... 6 Saturday.
    pub weekday: i64,
}

pub const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
pub const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    pub fn day_name(&self) -> &'static str {
        DAY_NAMES[self.weekday as usize]
    }

    pub fn month_name(&self) -> &'static str {
        MONTH_NAMES[(self.month - 1) as usize]
    }
}

/// The calendar fields of a UNIX time (proleptic Gregorian, UTC).
pub fn civil(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's algorithm: a calendar starting on March 1st of year 0, in 400-year
    // eras, so leap days fall at the end of each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7),
    }
}

/// ctime(3) without the newline, as OpenNebula's `one_util::log_time` writes it:
/// `Mon Nov 23 10:00:00 2026` (day of month padded with a space). UTC.
pub fn ctime(unix: i64) -> String {
    let c = civil(unix);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
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
    fn ctime_matches_known_dates() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        // 2026-11-23 10:00:00 UTC was a Monday.
        assert_eq!(ctime(1_795_428_000), "Mon Nov 23 10:00:00 2026");
        assert_eq!(ctime(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        // Leap day, and before the epoch.
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(ctime(-1), "Wed Dec 31 23:59:59 1969");
    }
}
