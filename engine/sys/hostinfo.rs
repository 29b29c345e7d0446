//! Facts about the machine the engine runs on, read from the kernel (`/proc`, `statvfs`):
//! what the check helpers of the script API report.

use std::ffi::CString;
use std::path::Path;

/// Percent of the filesystem holding `path` that is free to unprivileged users.
pub fn disk_free_pct(path: &str) -> Result<f64, String> {
    let c_path = CString::new(path).map_err(|_| format!("`{path}` contains a NUL byte"))?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value for it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(format!(
            "cannot read the filesystem of `{path}`: {}",
            std::io::Error::last_os_error()
        ));
    }
    if stat.f_blocks == 0 {
        return Ok(100.0);
    }
    Ok(stat.f_bavail as f64 / stat.f_blocks as f64 * 100.0)
}

/// A mounted filesystem that holds data (pseudo filesystems left out).
pub struct Mount {
    pub device: String,
    pub mount: String,
    pub fstype: String,
}

const PSEUDO_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "bpf",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "ramfs",
    "squashfs",
    "efivarfs",
    "selinuxfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "nfsd",
    "iso9660",
];

pub fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount = unescape_mount(fields.next()?);
            let fstype = fields.next()?;
            Some(Mount {
                device: device.to_string(),
                mount,
                fstype: fstype.to_string(),
            })
        })
        .filter(|m| !PSEUDO_FILESYSTEMS.contains(&m.fstype.as_str()))
        .filter(|m| seen.insert(m.mount.clone()))
        .filter(|m| {
            // A bind mount of a single file, or an empty filesystem, has nothing to report.
            Path::new(&m.mount).is_dir()
        })
        .collect()
}

/// /proc/self/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'\\' && i + 4 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn meminfo_kib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l[key.len() + 1..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn mem_available_pct() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
    match (
        meminfo_kib(&text, "MemAvailable"),
        meminfo_kib(&text, "MemTotal"),
    ) {
        (Some(available), Some(total)) if total > 0.0 => Ok(available / total * 100.0),
        _ => Err("/proc/meminfo has no MemAvailable/MemTotal".into()),
    }
}

pub fn load_avg() -> Result<[f64; 3], String> {
    let text = std::fs::read_to_string("/proc/loadavg")
        .map_err(|e| format!("cannot read /proc/loadavg: {e}"))?;
    let mut values = text.split_whitespace().map(|v| v.parse::<f64>());
    match (values.next(), values.next(), values.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok([a, b, c]),
        _ => Err(format!("cannot parse /proc/loadavg: `{}`", text.trim())),
    }
}

pub fn uptime_secs() -> Result<f64, String> {
    let text = std::fs::read_to_string("/proc/uptime")
        .map_err(|e| format!("cannot read /proc/uptime: {e}"))?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot parse /proc/uptime: `{}`", text.trim()))
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The login name of the user running the engine.
pub fn os_user() -> String {
    // SAFETY: getuid cannot fail; getpwuid returns a pointer into static storage or null,
    // read at once and copied.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_string();
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

pub struct Process {
    pub pid: i64,
    pub ppid: i64,
    pub state: String,
    pub name: String,
}

pub fn processes() -> Vec<Process> {
    process_ids().into_iter().filter_map(process).collect()
}

/// The ids of the processes (not threads) in /proc.
pub fn process_ids() -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i64>().ok())
        .collect()
}

/// Process `pid`, while it exists.
pub fn process(pid: i64) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so it ends at the last `)`.
fn parse_stat(pid: i64, stat: &str) -> Option<Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.to_string();
    let ppid = rest.next()?.parse().ok()?;
    Some(Process {
        pid,
        ppid,
        state,
        name,
    })
}

/// Whether `command` is an executable file on PATH.
pub fn which(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if command.contains('/') {
        return false;
    }
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|dir| {
                std::fs::metadata(dir.join(command))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_process_name() {
        let p = parse_stat(42, "42 (my (odd) proc) Z 7 42 42 0 -1").unwrap();
        assert_eq!(
            (p.name.as_str(), p.state.as_str(), p.ppid),
            ("my (odd) proc", "Z", 7)
        );
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn this_host_reports_sane_values() {
        let free = disk_free_pct("/").unwrap();
        assert!((0.0..=100.0).contains(&free));
        assert!(mem_available_pct().unwrap() > 0.0);
        assert!(cpu_count() >= 1);
        assert!(which("sh"));
        assert!(!which("definitely-not-a-command-here"));
        assert!(processes()
            .iter()
            .any(|p| p.pid == std::process::id() as i64));
    }
}
