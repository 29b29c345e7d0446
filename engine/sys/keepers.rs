//! The keepers' parent: one small process per engine, started from the engine's own binary
//! (`opsbook __keepers`, a subcommand `--help` does not list) when the first command runs, that
//! forks a keeper (`keeper.rs`) for every command. Starting a process from the engine's binary
//! costs milliseconds, most of them the dynamic loader relocating all of it; forking this
//! small single-threaded process costs a fraction of one, so the engine pays the first once
//! instead of per command.
//!
//! For each command the engine sends it three descriptors on a socket only the two of them
//! hold: the keeper's end of a socket pair that links keeper and engine (the request goes out
//! on it, the report comes back, and end of file tells each side the other is gone), and the
//! write ends of the command's stdout and stderr pipes. When the engine's end of its own socket
//! closes, however the engine ended, it waits for its keepers and exits; each of them reads end
//! of file on its link at that same moment, if it has not finished yet, and kills its
//! command's processes first.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sys::keeper;

/// The hidden subcommand that runs the keepers' parent.
pub const SUBCOMMAND: &str = "__keepers";

/// The descriptors sent for one command.
const FDS: usize = 3;

/// What the engine holds of one command's keeper: its end of the link, and the read ends of
/// the command's stdout and stderr.
pub struct Launched {
    pub link: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The keepers' parent as the engine holds it.
struct Parent {
    socket: OwnedFd,
    process: std::process::Child,
}

static PARENT: Mutex<Option<Parent>> = Mutex::new(None);

/// Has a keeper forked for one command; the engine's ends. The keepers' parent is started the
/// first time, and again if it has gone (someone killed it).
pub fn launch() -> io::Result<Launched> {
    let (link, keepers_link) = pair(libc::SOCK_STREAM)?;
    let (stdout, keepers_stdout) = pipe()?;
    let (stderr, keepers_stderr) = pipe()?;
    let sent = [&keepers_link, &keepers_stdout, &keepers_stderr];
    let mut parent = PARENT.lock().unwrap_or_else(|p| p.into_inner());
    if send_to(&mut parent, &sent).is_err() {
        // It has gone (killed, say): start another.
        if let Some(mut gone) = parent.take() {
            let _ = gone.process.kill();
            let _ = gone.process.wait();
        }
        send_to(&mut parent, &sent)?;
    }
    Ok(Launched {
        link,
        stdout,
        stderr,
    })
}

/// Sends `fds` to the keepers' parent, started first if there is none.
fn send_to(parent: &mut Option<Parent>, fds: &[&OwnedFd; FDS]) -> io::Result<()> {
    let parent = match parent {
        Some(parent) => parent,
        None => parent.insert(start()?),
    };
    send(&parent.socket, fds)
}

/// Ends the keepers' parent, once the engine has no more commands to run: it waits for its
/// keepers to finish (each kills what is left of its command first) and exits, and is reaped
/// here rather than left to whichever process adopts orphans.
pub fn stop() {
    let parent = PARENT.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(Parent {
        socket,
        mut process,
    }) = parent
    else {
        return;
    };
    drop(socket);
    let until = Instant::now() + STOP_PATIENCE;
    while Instant::now() < until {
        if !matches!(process.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long `stop` waits for the keepers' parent before leaving it to finish on its own.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The binary the keepers' parent is started from: this one, unless an embedder named another
/// ([`use_program`]) because its own binary has no such subcommand.
fn program() -> &'static Path {
    PROGRAM.get_or_init(default_program)
}

/// Starts the keepers' parent from `path`, an `opsbook` binary, instead of this process's own
/// binary. Only the first call counts, and only before the first command runs.
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

fn start() -> io::Result<Parent> {
    let (socket, theirs) = pair(libc::SOCK_SEQPACKET)?;
    let process = std::process::Command::new(program())
        .arg0("opsbook")
        .arg(SUBCOMMAND)
        .stdin(Stdio::from(theirs))
        // The engine's own output is the engine's: whoever reads it sees its end when the
        // engine ends. A keeper's is its command's.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the engine's group: a Ctrl-C at the terminal is the engine's to handle.
        .process_group(0)
        .spawn()?;
    Ok(Parent { socket, process })
}

/// The keepers' parent's `main`: forks a keeper for each set of descriptors the engine sends,
/// until the engine is gone.
pub fn main() -> i32 {
    // SAFETY: signal(2) with constants: the keepers it forks are reaped by the kernel; prctl(2)
    // with a NUL-terminated name: `ps` shows what the process is (started from
    // /proc/self/exe, it would be named `exe`).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_NAME, c"opsbook-keepers".as_ptr());
    }
    loop {
        let fds = match receive(0) {
            Ok(Some(fds)) => fds,
            // The engine is gone, or done: once every keeper has finished, so is this.
            Ok(None) => {
                // SAFETY: waitpid(2) with no status pointer; with SIGCHLD ignored it returns
                // (ECHILD) once no child is left.
                while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
                return 0;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return 1,
        };
        let Ok([link, stdout, stderr]) = <[OwnedFd; FDS]>::try_from(fds) else {
            continue;
        };
        // SAFETY: this process is single-threaded, so the child may do anything the parent
        // could; it never returns here.
        match unsafe { libc::fork() } {
            0 => std::process::exit(keeper::main(link, stdout, stderr)),
            -1 => {
                let report = keeper::Report::Error(format!(
                    "cannot start a keeper: {}",
                    io::Error::last_os_error()
                ));
                // SAFETY: write(2) from a buffer that lives across the call.
                let line = report.line();
                unsafe { libc::write(link.as_raw_fd(), line.as_ptr().cast(), line.len()) };
            }
            // The keeper holds them now.
            _ => drop((link, stdout, stderr)),
        }
    }
}

/// A connected pair of Unix sockets, close-on-exec.
fn pair(kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe, close-on-exec: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for the control message that carries the descriptors.
const CONTROL: usize = 64;

/// Sends `fds` in one message (with a byte, as a message needs one).
fn send(socket: &OwnedFd, fds: &[&OwnedFd; FDS]) -> io::Result<()> {
    let raw: [i32; FDS] = fds.map(|fd| fd.as_raw_fd());
    let mut byte = [b'k'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; CONTROL / 8];
    // SAFETY: the header points at the buffers above, which live across the call; the control
    // message is laid out with the CMSG macros inside a buffer large enough for it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of_val(&raw) as u32) as usize;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(&raw) as u32) as usize;
        std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(header).cast(), FDS);
        if libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message's descriptors (close-on-exec); None at end of file.
fn receive(socket: i32) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = MaybeUninit::<[u64; CONTROL / 8]>::zeroed();
    // SAFETY: as in `send`; the descriptors are read from the control messages the kernel
    // wrote, within the length it reported.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL;
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(None);
        }
        let mut fds = Vec::new();
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<i32>();
                let count = ((*header).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
        Ok(Some(fds))
    }
}
