//! The keeper: the small process every command runs under, so that no process a step starts
//! outlives it. The engine starts it from its own binary as
//! `opsbook __keep-step GRACE_MS CGROUP PROGRAM [ARG]...` (a subcommand `--help` does not list),
//! and the keeper
//! - makes itself a child subreaper: every descendant orphaned on the way (a background job, a
//!   double fork, a `setsid` daemon) is re-parented to it, so the keeper's descendants are
//!   exactly the processes the command started;
//! - starts the program (`/bin/sh -c COMMAND`) in a process group of its own and, where the
//!   engine gave one, in the step's cgroup;
//! - watches its standard input, one end of a socket pair whose other end only the engine holds
//!   (close-on-exec everywhere else): end of file there means the engine is gone, however it
//!   died, since the kernel closes a dead process's descriptors;
//! - when the program exits, or the engine asks it to stop (SIGTERM, on a timeout or a hard
//!   abort), stops every remaining descendant: SIGTERM to the program's group, its descendants
//!   and its cgroup, then SIGKILL to whatever is left after the grace period, reaping them all;
//!   when the engine is gone, SIGKILL at once;
//! - and writes back on the socket how the program ended (`exit N`, `signal N`, or `error TEXT`
//!   when it could not start), so the engine reads the same status as if it had run it itself.
//!
//! The keeper does not rely on PR_SET_PDEATHSIG: that fires when the *thread* that forked it
//! ends, not the engine process.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys::containment::{self, cgroup};

/// The hidden subcommand that runs a keeper.
pub const SUBCOMMAND: &str = "__keep-step";

/// How long the keeper keeps killing a descendant that will not die (stuck in the kernel)
/// before it reports anyway.
const KILL_PATIENCE: Duration = Duration::from_secs(10);
/// How often the keeper looks again for what is left, while it kills.
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// How the program ended, as the keeper reports it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Exit(i32),
    Signal(i32),
    /// It could not be started.
    Error(String),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Report::Exit(code) => format!("exit {code}\n"),
            Report::Signal(signal) => format!("signal {signal}\n"),
            Report::Error(text) => format!("error {}\n", text.replace('\n', " ")),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (word, rest) = text.trim_end_matches('\n').split_once(' ')?;
        match word {
            "exit" => rest.parse().ok().map(Report::Exit),
            "signal" => rest.parse().ok().map(Report::Signal),
            "error" => Some(Report::Error(rest.to_string())),
            _ => None,
        }
    }
}

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The binary keepers are started from: this one, unless an embedder named another
/// ([`use_program`]) because its own binary has no keeper subcommand.
pub fn program() -> &'static Path {
    PROGRAM.get_or_init(default_program)
}

/// Starts keepers from `path`, an `opsbook` binary, instead of this process's own binary. Only
/// the first call counts, and only before the first command runs.
pub fn use_program(path: PathBuf) {
    let _ = PROGRAM.set(path);
}

#[cfg(not(test))]
fn default_program() -> PathBuf {
    // The running binary itself, even if its file was replaced since it started.
    PathBuf::from("/proc/self/exe")
}

/// Unit tests run in a test binary without the subcommand: they use the `opsbook` binary cargo
/// builds beside it (`target/<profile>/deps/..`).
#[cfg(test)]
fn default_program() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let program = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("opsbook"))
        .expect("a test binary in target/<profile>/deps");
    assert!(
        program.exists(),
        "{} is missing: build the binary first (cargo build)",
        program.display()
    );
    program
}

/// The keeper's `main`: `args` are those after the subcommand. Returns the exit code: the
/// program's own, 128 + the signal that ended it, or 127 when it could not start.
pub fn main(args: &[OsString]) -> i32 {
    let report = match Keeper::start(args) {
        Ok(keeper) => match keeper.run() {
            Some(report) => report,
            // The engine is gone: nobody to tell.
            None => return 128 + libc::SIGKILL,
        },
        Err(e) => Report::Error(e.to_string()),
    };
    // Standard input is the engine's socket.
    // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps it open.
    let mut engine = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let _ = engine.write_all(report.line().as_bytes());
    match report {
        Report::Exit(code) => code,
        Report::Signal(signal) => 128 + signal,
        Report::Error(_) => 127,
    }
}

/// What woke the keeper up.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    EngineGone,
    Stop,
    Child,
    Timeout,
}

struct Keeper {
    grace: Duration,
    cgroup: Option<PathBuf>,
    /// The program's pid, which is also its process group's id.
    program: i32,
    /// Its status, once reaped; until then its zombie keeps the group id from being reused.
    status: Option<Report>,
    signals: OwnedFd,
    me: i32,
}

impl Keeper {
    fn start(args: &[OsString]) -> io::Result<Self> {
        let [grace_ms, cgroup_path, program, program_args @ ..] = args else {
            return Err(io::Error::other(format!(
                "usage: opsbook {SUBCOMMAND} GRACE_MS CGROUP PROGRAM [ARG]..."
            )));
        };
        let grace = grace_ms
            .to_str()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
            .ok_or_else(|| io::Error::other("GRACE_MS is not a number"))?;
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (signals, mask) = signal_fd()?;
        let mut cgroup = (!cgroup_path.is_empty()).then(|| PathBuf::from(cgroup_path));
        let joined = match cgroup.as_deref().map(cgroup::create) {
            Some(Ok(procs)) => spawn(program, program_args, mask, Some(&procs)).ok(),
            _ => None,
        };
        let child = match joined {
            Some(child) => child,
            // Without a cgroup (none given, not allowed, not joinable), the subreaper and the
            // token still hold every process.
            None => {
                if let Some(path) = cgroup.take() {
                    cgroup::remove(&path);
                }
                spawn(program, program_args, mask, None)?
            }
        };
        Ok(Self {
            grace,
            cgroup,
            program: child.id() as i32,
            status: None,
            signals,
            me: std::process::id() as i32,
        })
    }

    /// Runs until the program and everything it started are gone; the report, or None when
    /// the engine is gone.
    fn run(mut self) -> Option<Report> {
        loop {
            match self.wait(true, None) {
                Wake::EngineGone => {
                    self.kill_all();
                    return None;
                }
                Wake::Stop => {
                    self.signal_all(libc::SIGTERM);
                    break;
                }
                Wake::Child if self.program_exited() => {
                    // While its zombie holds the group id, the group can be signalled safely.
                    self.signal_group(libc::SIGTERM);
                    self.reap();
                    if self.has_children() {
                        self.signal_all(libc::SIGTERM);
                    }
                    break;
                }
                Wake::Child | Wake::Timeout => {}
            }
        }
        let deadline = Instant::now() + self.grace;
        loop {
            self.reap();
            if !self.has_children() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill_all();
                break;
            }
            if self.wait(true, Some(left)) == Wake::EngineGone {
                self.kill_all();
                return None;
            }
        }
        if let Some(path) = &self.cgroup {
            cgroup::remove(path);
        }
        Some(self.status.unwrap_or(Report::Signal(libc::SIGKILL)))
    }

    /// Waits for a signal or, when `engine` is set, the engine's socket; at most `timeout`.
    fn wait(&self, engine: bool, timeout: Option<Duration>) -> Wake {
        let mut fds = [
            libc::pollfd {
                // poll(2) skips a negative descriptor.
                fd: if engine { 0 } else { -1 },
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
            libc::pollfd {
                fd: self.signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as i32);
        // SAFETY: poll(2) on an array of two pollfd that lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return Wake::Timeout;
        }
        if fds[0].revents != 0 && engine_gone() {
            return Wake::EngineGone;
        }
        let mut wake = Wake::Timeout;
        if fds[1].revents != 0 {
            for signal in self.drain_signals() {
                wake = match signal as i32 {
                    libc::SIGCHLD if wake != Wake::Stop => Wake::Child,
                    libc::SIGCHLD => wake,
                    _ => Wake::Stop,
                };
            }
        }
        wake
    }

    fn drain_signals(&self) -> Vec<u32> {
        let mut signals = Vec::new();
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads whole signalfd_siginfo records into a buffer of that size; the
        // descriptor is non-blocking, so the loop ends when none is pending.
        while unsafe { libc::read(self.signals.as_raw_fd(), info.as_mut_ptr().cast(), size) }
            == size as isize
        {
            signals.push(unsafe { info.assume_init_ref() }.ssi_signo);
        }
        signals
    }

    /// Whether the program has exited; it is left a zombie, and the other children that exited
    /// are reaped.
    fn program_exited(&self) -> bool {
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: waitid(2) writes one siginfo_t; WNOWAIT leaves the child waitable.
            let r = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: zeroed before the call and written by it on success.
            let pid = unsafe { info.assume_init_ref().si_pid() };
            if r != 0 || pid == 0 {
                return false;
            }
            if pid == self.program {
                return true;
            }
            // SAFETY: reaps the child that waitid just said has exited.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }

    /// Reaps every child that has exited, keeping the program's status.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) writes one int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid == self.program {
                self.status = Some(if libc::WIFSIGNALED(status) {
                    Report::Signal(libc::WTERMSIG(status))
                } else {
                    Report::Exit(libc::WEXITSTATUS(status))
                });
            }
        }
    }

    /// Whether any descendant is left (a subreaper's descendants are all its children or
    /// theirs, so it has one while it has a child).
    fn has_children(&self) -> bool {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: as in program_exited; ECHILD means no child at all.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        !(r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
    }

    /// Signals the program's process group, while the program is not yet reaped (so the group
    /// id is still its own).
    fn signal_group(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) touches no memory.
            unsafe {
                libc::kill(-self.program, signal);
                if signal == libc::SIGTERM {
                    // A stopped process acts on SIGTERM only once continued.
                    libc::kill(-self.program, libc::SIGCONT);
                }
            }
        }
    }

    /// Signals everything the program started: its group, every descendant of the keeper, and
    /// everything in the cgroup.
    fn signal_all(&self, signal: i32) {
        self.signal_group(signal);
        for (pid, parent) in containment::descendants(self.me) {
            if containment::signal_if(pid, signal, || containment::parent_of(pid) == Some(parent))
                && signal == libc::SIGTERM
            {
                containment::signal_if(pid, libc::SIGCONT, || true);
            }
        }
        if let Some(path) = &self.cgroup {
            if signal == libc::SIGKILL {
                cgroup::kill(path);
            } else {
                cgroup::signal(path, signal);
            }
        }
    }

    /// SIGKILL to everything left, again and again until nothing is (or patience runs out).
    fn kill_all(&mut self) {
        let until = Instant::now() + KILL_PATIENCE;
        loop {
            self.signal_all(libc::SIGKILL);
            self.reap();
            if !self.has_children() || Instant::now() >= until {
                return;
            }
            // Woken early by a child's end; the engine's socket no longer matters.
            self.wait(false, Some(LOOK_AGAIN));
        }
    }
}

/// Starts `program` with `args` in a process group of its own, standard input from /dev/null,
/// the signal mask the keeper started with (std passes the current one on), and into a cgroup
/// by writing to its `procs` file, if given.
fn spawn(
    program: &OsString,
    args: &[OsString],
    mask: libc::sigset_t,
    procs: Option<&std::fs::File>,
) -> io::Result<std::process::Child> {
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).process_group(0);
    let procs = procs.map(|f| f.as_raw_fd());
    // SAFETY: runs in the child between fork and exec and only calls sigprocmask(2) on a copy
    // of a set made before the fork, and write(2) on a descriptor opened before it (it outlives
    // the spawn): async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(procs) = procs {
                if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Whether the engine's end of the socket is closed (read gives end of file or an error).
fn engine_gone() -> bool {
    let mut byte = [0u8; 64];
    // SAFETY: fd 0 is the socket; ManuallyDrop keeps it open.
    let mut engine = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    !matches!(engine.read(&mut byte), Ok(n) if n > 0)
}

/// A descriptor that reads SIGCHLD, SIGTERM, SIGINT and SIGHUP, which are blocked from now on,
/// and the signal mask from before, for the program.
fn signal_fd() -> io::Result<(OwnedFd, libc::sigset_t)> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    let mut before = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the set is initialised by sigemptyset before use and `before` by sigprocmask;
    // the keeper is single-threaded, so sigprocmask blocks the signals for the whole process.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), before.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fd), before.assume_init()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_back() {
        for report in [
            Report::Exit(0),
            Report::Exit(3),
            Report::Signal(9),
            Report::Error("no such file".into()),
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
        assert_eq!(Report::parse(""), None);
        assert_eq!(Report::parse("exit x\n"), None);
    }
}
