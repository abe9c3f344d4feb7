//! Parsers for the kernel's text files the host probes read (/proc/cpuinfo, /proc/meminfo,
//! /proc/stat, /proc/net/dev, /etc/os-release). Pure functions over the text, so they are
//! tested with sample files; [`crate::host`] does the reading. None of them fails: a line
//! that does not parse is skipped, a missing figure is 0 or `None`.

/// What /proc/cpuinfo says about the processors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuInfo {
    /// Logical CPUs (`processor` entries).
    pub cores: u32,
    /// `model name` of the first processor ("" when the architecture has none).
    pub model_name: String,
    /// `cpu MHz` of the first processor.
    pub mhz: Option<f64>,
}

/// `key : value` of a cpuinfo / meminfo line, both trimmed.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(':')?;
    Some((k.trim(), v.trim()))
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for (k, v) in text.lines().filter_map(key_value) {
        match k {
            "processor" => info.cores += 1,
            "model name" if info.model_name.is_empty() => info.model_name = v.to_string(),
            "cpu MHz" if info.mhz.is_none() => {
                info.mhz = v.parse::<f64>().ok().filter(|m| m.is_finite() && *m > 0.0)
            }
            _ => {}
        }
    }
    info
}

/// What /proc/meminfo says, in KB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total_kb: i64,
    /// MemAvailable: what can be given to new work without swapping.
    pub available_kb: i64,
}

pub fn parse_meminfo(text: &str) -> MemInfo {
    let (mut total, mut available, mut free, mut buffers, mut cached) =
        (None, None, 0i64, 0i64, 0i64);
    for (k, v) in text.lines().filter_map(key_value) {
        // "16318480 kB": the unit is always kB.
        let Some(n) = v
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        match k {
            "MemTotal" => total = Some(n),
            "MemAvailable" => available = Some(n),
            "MemFree" => free = n,
            "Buffers" => buffers = n,
            "Cached" => cached = n,
            _ => {}
        }
    }
    let total_kb = total.unwrap_or(0).max(0);
    // Kernels before 3.14 have no MemAvailable: approximate it as `free` does.
    let available_kb = available
        .unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached))
        .clamp(0, total_kb);
    MemInfo {
        total_kb,
        available_kb,
    }
}

/// The aggregate `cpu` line of /proc/stat, in clock ticks since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every tick the CPUs spent (guest time is already inside user / nice).
    pub total: u64,
    /// Ticks spent idle or waiting for I/O.
    pub idle: u64,
}

pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let total = (0..8).map(at).fold(0u64, u64::saturating_add);
    Some(CpuTimes {
        total,
        idle: at(3).saturating_add(at(4)),
    })
}

/// USEDCPU and FREECPU (percent × cores) over the span between two samples; `None` when no
/// tick passed in between (nothing to divide by).
pub fn cpu_usage(prev: CpuTimes, now: CpuTimes, cores: u32) -> Option<(i64, i64)> {
    let total = now.total.checked_sub(prev.total).filter(|t| *t > 0)?;
    let idle = now.idle.saturating_sub(prev.idle).min(total);
    let capacity = i64::from(cores) * 100;
    let used = ((total - idle) as f64 / total as f64 * capacity as f64).round() as i64;
    let used = used.clamp(0, capacity);
    Some((used, capacity - used))
}

/// Received and transmitted bytes summed over every interface but the loopback.
pub fn parse_net_dev(text: &str) -> (i64, i64) {
    let (mut rx, mut tx) = (0i64, 0i64);
    // Two header lines, then "  eth0: 1234 5 ..." (the name may touch the first number).
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<&str> = fields.split_whitespace().collect();
        let n = |i: usize| {
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
        };
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        rx = rx.saturating_add(n(0));
        tx = tx.saturating_add(n(8));
    }
    (rx, tx)
}

/// `ID` and `VERSION_ID` of an os-release file ("debian", "12").
pub fn parse_os_release(text: &str) -> (String, String) {
    let (mut id, mut version) = (String::new(), String::new());
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        match k.trim() {
            "ID" => id = v,
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    (id, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
stepping\t: 0
cpu MHz\t\t: 2199.998
cache size\t: 56320 KB
flags\t\t: fpu vme de pse tsc msr: pae

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
cpu MHz\t\t: 2400.000

";

    #[test]
    fn cpuinfo_counts_processors_and_takes_the_first_model() {
        let c = parse_cpuinfo(CPUINFO);
        assert_eq!(c.cores, 2);
        assert_eq!(c.model_name, "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert_eq!(c.mhz, Some(2199.998));
        // An ARM board: no model name, no MHz.
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU part\t: 0xd08\n\nprocessor\t: 1\n";
        let c = parse_cpuinfo(arm);
        assert_eq!((c.cores, c.model_name.as_str(), c.mhz), (2, "", None));
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
        assert_eq!(parse_cpuinfo("cpu MHz : nan\n").mhz, None);
    }

    #[test]
    fn meminfo_uses_mem_available_or_approximates_it() {
        let m = parse_meminfo(
            "MemTotal:       16318480 kB\nMemFree:         1227412 kB\n\
             MemAvailable:   10745112 kB\nBuffers:          402880 kB\nCached:          8790028 kB\n",
        );
        assert_eq!(
            m,
            MemInfo {
                total_kb: 16318480,
                available_kb: 10745112
            }
        );
        let old = parse_meminfo(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nbroken line\n",
        );
        assert_eq!(old.available_kb, 350);
        // Never more available than there is.
        let odd = parse_meminfo("MemTotal: 10 kB\nMemAvailable: 20 kB\n");
        assert_eq!(odd.available_kb, 10);
        assert_eq!(parse_meminfo("garbage"), MemInfo::default());
    }

    #[test]
    fn stat_and_cpu_usage() {
        let a = parse_stat(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n",
        )
        .unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 850
            }
        );
        // 200 more ticks, 50 of them busy: a quarter of two cores.
        let b = parse_stat("cpu  130 0 70 930 70 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_usage(a, b, 2), Some((50, 150)));
        assert_eq!(cpu_usage(a, a, 2), None, "no tick passed");
        assert_eq!(cpu_usage(b, a, 2), None, "counters went back");
        // Short lines (old kernels) still parse.
        assert_eq!(
            parse_stat("cpu 1 2 3 4\n"),
            Some(CpuTimes { total: 10, idle: 4 })
        );
        assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None);
    }

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999999    1000    0    0    0     0          0         0  9999999    1000    0    0    0     0       0          0
  eth0:1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
 br0: 300 3 0 0 0 0 0 0 400 4 0 0 0 0 0 0
garbage line
";
        assert_eq!(parse_net_dev(text), (1300, 2400));
        assert_eq!(parse_net_dev(""), (0, 0));
    }

    #[test]
    fn os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                    VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n";
        assert_eq!(parse_os_release(text), ("debian".into(), "12".into()));
    }
}
