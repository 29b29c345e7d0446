//! Holding every process a step starts, so that none outlives the step: each carries the
//! step's token in its environment (`OPSBOOK_STEP_TOKEN`) and, where the host lets the engine
//! create cgroups, sits in a cgroup of the step's own. While a command runs, its keeper
//! (`keeper.rs`) holds its processes as their subreaper. The token and the cgroup are what still
//! find them once the keeper itself is gone (killed together with the engine): the engine looks
//! for them when a keeper ends without a status, and resume does before an interrupted step is
//! run again or marked done.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys::hostinfo;

/// The environment variable that marks a step's processes.
pub const TOKEN_VAR: &str = "OPSBOOK_STEP_TOKEN";
/// `OPSBOOK_CGROUPS=off` keeps the engine from creating cgroups (where another manager owns the
/// tree): the keeper and the token then hold a step's processes alone.
pub const CGROUPS_VAR: &str = "OPSBOOK_CGROUPS";

/// How long leftovers are looked for and killed before giving up on the stragglers (a process
/// stuck in the kernel dies when it returns from there).
const LEFTOVER_PATIENCE: Duration = Duration::from_secs(5);
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// What marks and holds every process of one execution of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containment {
    /// `RUN/STEP/RANDOM`: unique to this execution of the step.
    pub token: String,
    /// The step's cgroup, where the host allows one (the keeper creates it).
    pub cgroup: Option<PathBuf>,
}

impl Containment {
    /// A fresh mark for step `step` of run `run`.
    pub fn new(run: &str, step: &str) -> Self {
        let random = ulid::Ulid::new().to_string();
        Self {
            cgroup: cgroup::base().map(|base| base.join(cgroup_name(&random))),
            token: format!("{run}/{step}/{random}"),
        }
    }

    /// The mark a step's start recorded. A cgroup that is not the one a step of this token
    /// would have (an edited record, say `/sys/fs/cgroup/system.slice`) is left alone: only a
    /// step's own cgroup is ever killed.
    pub fn recorded(token: String, cgroup: Option<&str>) -> Self {
        let random = token.rsplit('/').next().unwrap_or_default();
        let cgroup = cgroup.map(PathBuf::from).filter(|path| {
            path.is_absolute()
                && path
                    .components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
                && !random.is_empty()
                && path.file_name() == Some(cgroup_name(random).as_ref())
        });
        Self { token, cgroup }
    }

    /// The `NAME=VALUE` entry the step's processes carry in their environment.
    fn entry(&self) -> String {
        format!("{TOKEN_VAR}={}", self.token)
    }

    /// Kills (SIGKILL) every process that carries the token or sits in the cgroup, until none
    /// is left, and removes the cgroup; returns how many processes were killed. For when the
    /// keeper is gone: it would otherwise have done this itself.
    pub fn kill_leftovers(&self) -> usize {
        let entry = self.entry();
        let me = std::process::id() as i32;
        let mut killed = BTreeSet::new();
        let until = Instant::now() + LEFTOVER_PATIENCE;
        loop {
            let mut found = Vec::new();
            if let Some(path) = &self.cgroup {
                found.extend(cgroup::kill(path));
            }
            for pid in hostinfo::process_ids().into_iter().map(|p| p as i32) {
                if pid != me && signal_if(pid, libc::SIGKILL, || environ_has(pid, entry.as_bytes()))
                {
                    found.push(pid);
                }
            }
            // A process killed a moment ago may still be on its way out: look until none is.
            let done = found.is_empty() || Instant::now() >= until;
            killed.extend(found);
            if done {
                break;
            }
            std::thread::sleep(LOOK_AGAIN);
        }
        if let Some(path) = &self.cgroup {
            cgroup::remove(path);
        }
        killed.len()
    }
}

/// Whether process `pid` has `entry` (`NAME=VALUE`) in its environment. A process whose
/// environment cannot be read (gone, a zombie, another user's) does not.
fn environ_has(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environ| environ.split(|b| *b == 0).any(|e| e == entry))
        .unwrap_or(false)
}

fn cgroup_name(random: &str) -> String {
    format!("opsbook-{random}")
}

/// The live descendants of process `root` (not `root` itself), each with its parent, from the
/// parents /proc gives.
pub fn descendants(root: i32) -> Vec<(i32, i32)> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in hostinfo::processes() {
        if p.state != "Z" {
            children
                .entry(p.ppid as i32)
                .or_default()
                .push(p.pid as i32);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for &child in children.get(&parent).into_iter().flatten() {
            found.push((child, parent));
            next.push(child);
        }
    }
    found
}

/// The parent of process `pid`, while it lives.
pub fn parent_of(pid: i32) -> Option<i32> {
    hostinfo::process(pid as i64).map(|p| p.ppid as i32)
}

/// Sends `signal` to process `pid` if `still_it()` holds once the process is pinned by a pidfd,
/// so that a pid that was freed and reused in between is never signalled. Whether it was sent.
pub fn signal_if(pid: i32, signal: i32, still_it: impl FnOnce() -> bool) -> bool {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return false; // gone
        }
        // Before Linux 5.3: no pinning, the check and kill(2).
        // SAFETY: kill(2) touches no memory.
        return still_it() && unsafe { libc::kill(pid, signal) } == 0;
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: pidfd_send_signal(2) with no siginfo and no flags touches no memory of ours.
    still_it()
        && unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        } == 0
}

/// A step's cgroup (version 2): created under the engine's own cgroup when that is writable.
pub mod cgroup {
    use super::*;

    /// The engine's own cgroup, when the engine may create cgroups in it and move processes
    /// out of it; None otherwise, or with `OPSBOOK_CGROUPS=off`. Looked up once per process.
    pub fn base() -> Option<PathBuf> {
        static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
        BASE.get_or_init(find_base).clone()
    }

    fn find_base() -> Option<PathBuf> {
        if std::env::var(CGROUPS_VAR).is_ok_and(|v| v == "off") {
            return None;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let dir = mounts.lines().find_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
            let (fields, rest) = line.split_once(" - ")?;
            if rest.split(' ').next() != Some("cgroup2") {
                return None;
            }
            let fields: Vec<&str> = fields.split(' ').collect();
            let (root, mountpoint) = (fields.get(3)?, fields.get(4)?);
            let relative = Path::new(own).strip_prefix(root).ok()?;
            Some(Path::new(&unescape(mountpoint)).join(relative))
        })?;
        // A new cgroup is made in it, and the step's first process moved there from it.
        (writable(&dir) && writable(&dir.join("cgroup.procs"))).then_some(dir)
    }

    /// Mount points write space, tab, newline and backslash as octal escapes.
    fn unescape(field: &str) -> String {
        field
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    }

    fn writable(path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: access(2) reads the NUL-terminated path and nothing else.
        unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
    }

    /// Creates the cgroup (it may exist already, from an earlier command of the step) and opens
    /// the file that moves a process into it.
    pub fn create(path: &Path) -> io::Result<std::fs::File> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
    }

    /// The processes in the cgroup and in every cgroup below it.
    pub fn procs(path: &Path) -> Vec<i32> {
        let mut pids: Vec<i32> = std::fs::read_to_string(path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        for child in subgroups(path) {
            pids.extend(procs(&child));
        }
        pids
    }

    fn subgroups(path: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(path)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in the cgroup; returns them.
    pub fn signal(path: &Path, signal: i32) -> Vec<i32> {
        let pids = procs(path);
        for &pid in &pids {
            // The pid was read from the cgroup a moment ago; a process cannot leave it.
            signal_if(pid, signal, || true);
        }
        pids
    }

    /// Kills every process in the cgroup at once (`cgroup.kill`, Linux 5.14), or one by one
    /// where the kernel is older; returns them.
    pub fn kill(path: &Path) -> Vec<i32> {
        let pids = procs(path);
        if pids.is_empty() {
            return pids;
        }
        let killed_at_once = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"))
            .is_ok();
        if !killed_at_once {
            signal(path, libc::SIGKILL);
        }
        pids
    }

    /// Removes the cgroup and any below it, killing what is still in them; gives up after a
    /// few seconds (a process stuck in the kernel keeps its cgroup until it dies).
    pub fn remove(path: &Path) {
        let until = Instant::now() + LEFTOVER_PATIENCE;
        loop {
            for child in subgroups(path) {
                remove(&child);
            }
            match std::fs::remove_dir(path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) if Instant::now() < until => {
                    kill(path);
                    std::thread::sleep(LOOK_AGAIN);
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_the_run_and_step_and_is_unique() {
        let a = Containment::new("01RUN", "deploy");
        let b = Containment::new("01RUN", "deploy");
        assert!(a.token.starts_with("01RUN/deploy/"), "{}", a.token);
        assert_ne!(a.token, b.token);
        assert_eq!(a.entry(), format!("OPSBOOK_STEP_TOKEN={}", a.token));
    }

    #[test]
    fn only_a_steps_own_cgroup_is_taken_from_the_record() {
        let token = "01RUN/deploy/01RANDOM".to_string();
        let own = "/sys/fs/cgroup/x/opsbook-01RANDOM";
        assert_eq!(
            Containment::recorded(token.clone(), Some(own)).cgroup,
            Some(PathBuf::from(own))
        );
        for other in [
            "/sys/fs/cgroup/system.slice",
            "/sys/fs/cgroup/opsbook-01OTHER",
            "/sys/fs/cgroup/opsbook-01RANDOM/../..",
            "sys/fs/cgroup/opsbook-01RANDOM",
        ] {
            assert_eq!(
                Containment::recorded(token.clone(), Some(other)).cgroup,
                None
            );
        }
    }

    #[test]
    fn a_process_is_found_by_the_token_in_its_environment_and_killed() {
        let mark = Containment {
            token: format!("test/{}/{}", std::process::id(), ulid::Ulid::new()),
            cgroup: None,
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(TOKEN_VAR, &mark.token)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        // The environment is readable once the child has exec'd.
        while !environ_has(pid, mark.entry().as_bytes()) {
            assert!(Instant::now() < deadline, "the token never showed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(mark.kill_leftovers(), 1);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn descendants_follow_parents() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found = descendants(me);
            if found.iter().any(|&(_, parent)| parent == pid) {
                break found;
            }
            assert!(Instant::now() < deadline, "the grandchild never showed");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(found.contains(&(pid, me)), "{found:?}");
        assert_eq!(parent_of(pid), Some(me));
        for (p, _) in found.iter().filter(|(_, parent)| *parent == pid) {
            signal_if(*p, libc::SIGKILL, || true);
        }
        child.wait().unwrap();
    }
}
