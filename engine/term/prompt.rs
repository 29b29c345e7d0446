//! Asking the person at the terminal: whether there is one, choices, free text, and secrets
//! without echo. Prompts go to stderr so stdout stays the run's record.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::people::directory::Passphrases;
use crate::runbook::params::SecretSource;
use crate::sys::files;

/// True when a person can answer: standard input and standard error are terminals.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Set when the question being asked is withdrawn (the operator pressed Ctrl-C): a waiting
/// read gives up instead of taking the next line typed.
static WITHDRAWN: AtomicBool = AtomicBool::new(false);

/// Withdraws the question being asked, if any.
pub fn withdraw() {
    WITHDRAWN.store(true, Ordering::SeqCst);
}

/// A new question may be asked.
pub fn reset_withdrawn() {
    WITHDRAWN.store(false, Ordering::SeqCst);
}

/// Waits until standard input has a line to read, or the question is withdrawn (false).
fn wait_for_input() -> bool {
    loop {
        if WITHDRAWN.load(Ordering::SeqCst) {
            return false;
        }
        let mut fds = [libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
        if ready > 0 {
            return true;
        }
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // Not pollable (a file, say): just read it.
            return true;
        }
    }
}

/// Reads one line; None at end of input, or when the question is withdrawn.
pub fn ask_line(question: &str) -> Option<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    read_line_unbuffered().map(|line| line.trim().to_string())
}

/// Reads one line from standard input a byte at a time, so that nothing typed after it is
/// held in a buffer where a withdrawn question could swallow it; None at end of input or
/// when the question is withdrawn.
fn read_line_unbuffered() -> Option<String> {
    let mut bytes = Vec::new();
    loop {
        if !wait_for_input() {
            eprintln!();
            return None;
        }
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a valid one-byte buffer.
        let n = unsafe { libc::read(libc::STDIN_FILENO, (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 if byte == b'\n' => break,
            1 => bytes.push(byte),
            0 if bytes.is_empty() => return None,
            0 => break,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Asks until the answer starts with one of `choices` (case-insensitive); None at end of input.
pub fn ask_choice(question: &str, choices: &[char]) -> Option<char> {
    loop {
        let answer = ask_line(question)?;
        if let Some(c) = answer.chars().next().map(|c| c.to_ascii_lowercase()) {
            if choices.contains(&c) {
                return Some(c);
            }
        }
        let listed: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
        eprintln!("  please answer {}", listed.join(" / "));
    }
}

/// Asks for a non-empty line (a reason, a comment); None at end of input.
pub fn ask_required(question: &str) -> Option<String> {
    loop {
        let answer = ask_line(question)?;
        if !answer.is_empty() {
            return Some(answer);
        }
        eprintln!("  an answer is required");
    }
}

/// Secrets typed at the terminal, never echoed.
pub struct TerminalSecrets;

impl SecretSource for TerminalSecrets {
    fn ask(&self, name: &str, description: Option<&str>) -> Option<String> {
        if !is_interactive() {
            return None;
        }
        let about = description.map(|d| format!(" ({d})")).unwrap_or_default();
        rpassword::prompt_password(format!("{name}{about}: ")).ok()
    }
}

/// Passphrases for `--as`: `--passphrase-file`, else `OPSBOOK_PASSPHRASE`, else a hidden
/// prompt on the terminal.
#[derive(Debug, Clone, Default)]
pub struct TerminalPassphrases {
    /// `--passphrase-file`.
    pub file: Option<std::path::PathBuf>,
    /// The environment variable read where there is no file: `OPSBOOK_PASSPHRASE` for the
    /// operator, `OPSBOOK_APPROVER_PASSPHRASE` for a second person approving on the spot.
    pub env: &'static str,
}

/// A passphrase file holds one line; anything larger is not a passphrase file.
const MAX_PASSPHRASE_FILE_BYTES: u64 = 4096;

impl Passphrases for TerminalPassphrases {
    fn passphrase(&self, name: &str) -> Result<String> {
        if let Some(path) = &self.file {
            let bytes = files::read_capped(path, MAX_PASSPHRASE_FILE_BYTES)
                .map_err(|problem| Error::file(path, problem.describe("the passphrase file")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::file(path, "the passphrase file is not UTF-8 text"))?;
            return Ok(text.trim_end_matches(['\n', '\r']).to_string());
        }
        if let Ok(value) = std::env::var(self.env) {
            return Ok(value);
        }
        if is_interactive() {
            return rpassword::prompt_password(format!("passphrase for {name}: ")).map_err(|e| {
                Error::PassphraseUnreadable {
                    problem: e.to_string(),
                }
            });
        }
        Err(Error::PassphraseNeeded {
            name: name.to_string(),
        })
    }
}
