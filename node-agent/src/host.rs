//! The real machine, read from /proc and sysfs (no commands are run): what the Hello tells,
//! SYSTEM and USAGE monitoring, datastore space, and the facts the onboarding checks need.

use crate::probe::{self, CpuTimes};
use one_proto::agent::{DatastoreDir, HostInfo, HostSystem, HostUsage};
use one_proto::objects::host::HostDs;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The agent's crate version, sent in the Hello and as the VERSION probe attribute.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn read_trimmed(path: &str) -> String {
    read(path).trim().to_string()
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// `uname -m`: the machine the kernel runs on.
pub fn machine_arch() -> String {
    // SAFETY: uname fills the zeroed struct it is given; every field it sets is a
    // NUL-terminated string within its array, and the zeroing guarantees one otherwise.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::ARCH.to_string();
    }
    let bytes: Vec<u8> = u
        .machine
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the Hello tells about this host.
pub fn host_info() -> HostInfo {
    let (os_id, os_version) = probe::parse_os_release(&read("/etc/os-release"));
    HostInfo {
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        os_id,
        os_version,
        arch: machine_arch(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
    }
}

/// The agent's build id: the SHA-256 of its own executable, in hex (what oned compares with
/// the agent binary it ships).
pub fn build_id() -> std::io::Result<String> {
    let mut f = std::fs::File::open(std::env::current_exe()?)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// SYSTEM monitoring: what the host is. `hypervisor` is the driver's HYPERVISOR value.
pub fn system(hypervisor: &str) -> HostSystem {
    let cpu = probe::parse_cpuinfo(&read("/proc/cpuinfo"));
    let mem = probe::parse_meminfo(&read("/proc/meminfo"));
    let cores = cores(&cpu);
    let cpuspeed = cpu.mhz.map(|m| m.round() as i64).unwrap_or_else(|| {
        // Architectures without "cpu MHz" (ARM) give the frequency in sysfs, in kHz.
        read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            .parse::<i64>()
            .map_or(0, |khz| khz / 1000)
    });
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("VERSION".to_string(), AGENT_VERSION.to_string());
    let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    extra.insert("CGROUPS_VERSION".to_string(), cgroups.to_string());
    HostSystem {
        hypervisor: hypervisor.to_string(),
        totalcpu: i64::from(cores) * 100,
        cpuspeed,
        totalmemory: mem.total_kb,
        arch: machine_arch(),
        modelname: model_name(&cpu),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        extra,
    }
}

/// Logical CPUs: cpuinfo's count, else what the process may use.
fn cores(cpu: &probe::CpuInfo) -> u32 {
    if cpu.cores > 0 {
        return cpu.cores;
    }
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

fn model_name(cpu: &probe::CpuInfo) -> String {
    if cpu.model_name.is_empty() {
        "unknown".to_string()
    } else {
        cpu.model_name.clone()
    }
}

/// The CPU model /proc/cpuinfo names (the `cpu_model` check without libvirt).
pub fn cpu_model() -> String {
    model_name(&probe::parse_cpuinfo(&read("/proc/cpuinfo")))
}

/// USAGE monitoring. CPU usage is a difference of /proc/stat counters, so the sampler keeps
/// the previous reading; the first sample covers the time since the sampler was made.
pub struct UsageSampler {
    cores: u32,
    prev: Option<(Instant, CpuTimes)>,
}

/// The shortest span a CPU usage figure is measured over (a few clock ticks).
const MIN_CPU_SPAN: Duration = Duration::from_millis(200);

impl UsageSampler {
    pub fn new() -> UsageSampler {
        UsageSampler {
            cores: cores(&probe::parse_cpuinfo(&read("/proc/cpuinfo"))),
            prev: read_cpu_times().map(|t| (Instant::now(), t)),
        }
    }

    /// How long to wait before [`sample`](Self::sample) has a meaningful CPU span.
    pub fn wait_needed(&self) -> Duration {
        self.prev.map_or(MIN_CPU_SPAN, |(at, _)| {
            MIN_CPU_SPAN.saturating_sub(at.elapsed())
        })
    }

    pub fn sample(&mut self) -> HostUsage {
        let mem = probe::parse_meminfo(&read("/proc/meminfo"));
        let (netrx, nettx) = probe::parse_net_dev(&read("/proc/net/dev"));
        let now = read_cpu_times();
        let capacity = i64::from(self.cores) * 100;
        let (usedcpu, freecpu) = match (self.prev, now) {
            (Some((_, a)), Some(b)) => probe::cpu_usage(a, b, self.cores).unwrap_or((0, capacity)),
            _ => (0, capacity),
        };
        if let Some(t) = now {
            self.prev = Some((Instant::now(), t));
        }
        HostUsage {
            usedmemory: mem.total_kb - mem.available_kb,
            freememory: mem.available_kb,
            usedcpu,
            freecpu,
            netrx,
            nettx,
        }
    }
}

impl Default for UsageSampler {
    fn default() -> UsageSampler {
        UsageSampler::new()
    }
}

fn read_cpu_times() -> Option<CpuTimes> {
    probe::parse_stat(&read("/proc/stat"))
}

/// Space of the file system holding `path`, in MB.
pub fn fs_space(path: &Path) -> std::io::Result<(i64, i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs; statvfs only
    // writes into it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u128;
    let mb = |blocks: u128| i64::try_from(blocks * frsize / (1024 * 1024)).unwrap_or(i64::MAX);
    let total = mb(st.f_blocks as u128);
    let free = mb(st.f_bavail as u128);
    let used = mb((st.f_blocks as u128).saturating_sub(st.f_bfree as u128));
    Ok((total, free, used))
}

/// HOST_SHARE/DATASTORES: the space of each configured system datastore directory. A
/// directory that cannot be measured (not created yet, unreadable) is left out and logged.
pub fn datastores(dirs: &[DatastoreDir]) -> Vec<HostDs> {
    dirs.iter()
        .filter_map(|d| match fs_space(Path::new(&d.path)) {
            Ok((total_mb, free_mb, used_mb)) => Some(HostDs {
                id: d.id,
                total_mb,
                free_mb,
                used_mb,
            }),
            Err(e) => {
                tracing::warn!(ds_id = d.id, path = %d.path, error = %e, "cannot measure datastore");
                None
            }
        })
        .collect()
}

/// What the KVM device looks like from here (whether guests really run is the libvirt
/// driver's timed probe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvmDevice {
    Usable,
    Absent,
    /// It exists but cannot be opened read-write by this user.
    NoAccess(String),
}

pub fn kvm_device() -> KvmDevice {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => KvmDevice::Usable,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KvmDevice::Absent,
        Err(e) => KvmDevice::NoAccess(e.to_string()),
    }
}

/// Whether `name` is a Linux bridge on this host.
pub fn bridge_exists(name: &str) -> bool {
    // A name with a '/' or a dot-dot would look elsewhere in sysfs.
    !name.is_empty()
        && !name.contains('/')
        && name != "."
        && name != ".."
        && Path::new("/sys/class/net")
            .join(name)
            .join("bridge")
            .is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reads_sensibly() {
        let s = system("simulated");
        assert!(s.totalcpu >= 100 && s.totalcpu % 100 == 0, "{s:?}");
        assert!(s.totalmemory > 0, "{s:?}");
        assert_eq!(
            s.extra.get("VERSION").map(String::as_str),
            Some(AGENT_VERSION)
        );
        assert!(!s.arch.is_empty());
        let mut u = UsageSampler::new();
        std::thread::sleep(u.wait_needed());
        let usage = u.sample();
        assert_eq!(usage.usedcpu + usage.freecpu, s.totalcpu);
        assert_eq!(usage.usedmemory + usage.freememory, s.totalmemory);
        let (total, free, used) = fs_space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total && used <= total);
        assert!(fs_space(Path::new("/no/such/dir")).is_err());
        let info = host_info();
        assert_eq!(info.boot_id.len(), 36, "{info:?}");
        assert_eq!(build_id().unwrap().len(), 64);
        assert!(!bridge_exists("lo"));
        assert!(!bridge_exists("../../.."));
    }
}
