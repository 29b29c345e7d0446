//! The channels of `channels:` in opsbook.yaml, checked once when the config is read, and one
//! try at delivering one notification to one of them: a line appended to a file, a command's
//! standard input, or a webhook POST.
//!
//! Every try ends within the channel's timeout and reads a bounded amount of what comes back.
//! What a notification holds is data: a command's argv is fixed in the config and the
//! notification reaches it on standard input; no shell is involved anywhere.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ChannelSpec, Settings};
use crate::error::{Error, Result};
use crate::printable::escape_line;
use crate::runbook::duration::{format_duration, parse_duration};

/// How long one delivery may take unless the channel says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries unless the channel says.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest timeout or backoff a channel may set.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// What is kept of a command's standard error, and of a webhook's refusal.
const MAX_REPLY_BYTES: usize = 4096;
/// What of that goes into the error.
const MAX_REPLY_CHARS: usize = 200;
/// How often a running command is checked on.
const POLL: Duration = Duration::from_millis(10);
/// How long standard error is still read after a command exited (a background child that
/// holds it open must not hold the delivery).
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// The configured channels, by name.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    channels: BTreeMap<String, Channel>,
}

impl Channels {
    /// Checks every channel of the config file; the first bad value is the error, named by
    /// its key (`channels.pager.webhook`).
    pub fn from_settings(settings: &Settings) -> Result<Channels> {
        let mut channels = BTreeMap::new();
        for (name, spec) in &settings.operations.channels {
            channels.insert(name.clone(), Channel::from_spec(settings, name, spec)?);
        }
        // A command sees no webhook's secret.
        let secrets: Vec<String> = channels
            .values()
            .filter_map(|c| match &c.kind {
                ChannelKind::Webhook { secret_env, .. } => secret_env.clone(),
                _ => None,
            })
            .collect();
        for channel in channels.values_mut() {
            channel.withheld_env.extend(secrets.iter().cloned());
        }
        Ok(Channels { channels })
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// The channel names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.channels.keys().map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// One destination for notifications.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// Environment variables a command channel's program does not get (secrets).
    withheld_env: Vec<String>,
}

/// What no notification command gets from opsbook's environment: passphrases and tokens.
const WITHHELD_ENV: &[&str] = &[
    "OPSBOOK_PASSPHRASE",
    "OPSBOOK_NEW_PASSPHRASE",
    "OPSBOOK_LISTEN_TOKEN",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// JSON lines appended to this file (absolute, or taken from the config file's folder).
    File(PathBuf),
    /// A program (an absolute path, or a bare name looked up in `PATH`) and its arguments.
    Command(Vec<String>),
    /// An `http://` or `https://` URL; `secret_env` names the variable holding the bearer token.
    Webhook {
        url: String,
        secret_env: Option<String>,
    },
}

impl Channel {
    fn from_spec(settings: &Settings, name: &str, spec: &ChannelSpec) -> Result<Channel> {
        let shown = escape_line(name);
        let bad = |field: &str, message: String| Error::ConfigValue {
            path: PathBuf::from(settings.config_name()),
            key: if field.is_empty() {
                format!("channels.{shown}")
            } else {
                format!("channels.{shown}.{field}")
            },
            message,
        };
        if !valid_name(name) {
            return Err(bad(
                "",
                "name a channel with letters, digits, `-`, `_` and `.` (at most 64)".into(),
            ));
        }
        let kind = match (&spec.file, &spec.command, &spec.webhook) {
            (Some(file), None, None) => {
                if file.as_os_str().is_empty() {
                    return Err(bad(
                        "file",
                        "name the file notifications are appended to".into(),
                    ));
                }
                ChannelKind::File(settings.config_path(file))
            }
            (None, Some(argv), None) => {
                check_argv(argv).map_err(|message| bad("command", message))?;
                ChannelKind::Command(argv.clone())
            }
            (None, None, Some(url)) => {
                check_url(url).map_err(|message| bad("webhook", message))?;
                ChannelKind::Webhook {
                    url: url.clone(),
                    secret_env: None,
                }
            }
            (None, None, None) => {
                return Err(bad(
                    "",
                    "a channel needs one of `file`, `command` or `webhook`".into(),
                ))
            }
            _ => {
                return Err(bad(
                    "",
                    "a channel takes only one of `file`, `command` or `webhook`".into(),
                ))
            }
        };
        let kind = match (kind, &spec.secret_env) {
            (kind, None) => kind,
            (ChannelKind::Webhook { url, .. }, Some(var)) => {
                if var.is_empty() || var.contains(['=', '\0']) {
                    return Err(bad(
                        "secret_env",
                        "name an environment variable, like `PD_ROUTING_KEY`".into(),
                    ));
                }
                ChannelKind::Webhook {
                    url,
                    secret_env: Some(var.clone()),
                }
            }
            (_, Some(_)) => {
                return Err(bad(
                    "secret_env",
                    "only a webhook channel sends a secret".into(),
                ))
            }
        };
        let duration = |field: &str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => match parse_duration(text) {
                Ok(d) if d.is_zero() => Err(bad(field, "must be longer than 0".into())),
                Ok(d) if d > MAX_DURATION => Err(bad(field, "must be at most 1d".into())),
                Ok(d) => Ok(d),
                Err(message) => Err(bad(field, message)),
            },
        };
        Ok(Channel {
            name: name.to_string(),
            kind,
            timeout: duration("timeout", &spec.timeout, DEFAULT_TIMEOUT)?,
            max_backoff: duration("max_backoff", &spec.max_backoff, DEFAULT_MAX_BACKOFF)?,
            withheld_env: WITHHELD_ENV.iter().map(|v| v.to_string()).collect(),
        })
    }

    /// Delivers one notification (its JSON document, already rendered) once; Err says why it
    /// failed, in one line.
    pub fn deliver(
        &self,
        id: &str,
        document: &serde_json::Value,
    ) -> std::result::Result<(), String> {
        match &self.kind {
            ChannelKind::File(path) => append_line(path, document, self.timeout),
            ChannelKind::Command(argv) => {
                run_command(argv, &self.withheld_env, id, document, self.timeout)
            }
            ChannelKind::Webhook { url, secret_env } => {
                post(url, secret_env.as_deref(), id, document, self.timeout)
            }
        }
    }

    /// What the channel is, for people: `file /var/log/x.jsonl`, `command /usr/bin/x`,
    /// `webhook https://host/path`. Never the secret, the arguments, or the URL's user
    /// information and query.
    pub fn describe(&self) -> String {
        match &self.kind {
            ChannelKind::File(path) => format!("file {}", escape_line(&path.to_string_lossy())),
            ChannelKind::Command(argv) => format!(
                "command {}",
                escape_line(argv.first().map_or("", String::as_str))
            ),
            ChannelKind::Webhook { url, .. } => format!("webhook {}", public_url(url)),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_argv(argv: &[String]) -> std::result::Result<(), String> {
    let Some(program) = argv.first() else {
        return Err(
            "give the program and its arguments, like [/usr/local/bin/notify, --json]".into(),
        );
    };
    if argv.iter().any(|a| a.contains('\0')) {
        return Err("an argument holds a NUL character".into());
    }
    let relative = program.contains('/') && !program.starts_with('/');
    if program.is_empty() || relative {
        return Err(format!(
            "`{}`: give the program as an absolute path or a bare name found in PATH",
            escape_line(program)
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    let refuse = || {
        format!(
            "`{}` is not an http:// or https:// URL",
            escape_line(&public_url(url))
        )
    };
    let uri: ureq::http::Uri = url.parse().map_err(|_| refuse())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(refuse()),
    }
}

/// `url` without its user information, query and fragment (where secrets travel).
fn public_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = match without_query.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, without_query),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let shown = match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    escape_line(&shown).into_owned()
}

/// The document as one line of JSON, ending in a newline.
fn json_line(document: &serde_json::Value) -> Vec<u8> {
    // A Value's Display is its compact JSON, which never holds a raw newline.
    let mut line = document.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The first line of `bytes`, trimmed, cut to `MAX_REPLY_CHARS` and safe to print.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.trim().lines().next().unwrap_or("").trim();
    let cut: String = line.chars().take(MAX_REPLY_CHARS).collect();
    escape_line(&cut).into_owned()
}

/// The first `MAX_REPLY_CHARS` characters of `bytes` on one line (runs of white space, line
/// ends included, become one space), safe to print.
fn opening(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<&str> = text.split_whitespace().collect();
    let cut: String = words.join(" ").chars().take(MAX_REPLY_CHARS).collect();
    escape_line(&cut).into_owned()
}

// ----- file ---------------------------------------------------------------------------------

/// Appends the document as one line. The write happens on its own thread so that a path that
/// blocks (a FIFO, a hung network mount) costs the caller no more than the timeout.
fn append_line(
    path: &Path,
    document: &serde_json::Value,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let line = json_line(document);
    let target = path.to_path_buf();
    let (done, outcome) = mpsc::channel();
    std::thread::Builder::new()
        .name("notify-file".into())
        .spawn(move || {
            let _ = done.send(write_line(&target, &line));
        })
        .map_err(|e| format!("cannot start a thread to write {}: {e}", path.display()))?;
    match outcome.recv_timeout(timeout) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "timed out after {} writing {}",
            format_duration(timeout),
            path.display()
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err(format!("the write to {} stopped", path.display()))
        }
    }
}

fn write_line(path: &Path, line: &[u8]) -> std::result::Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| format!("cannot create the folder {}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| fail("open", e))?;
    // One write(2) of the whole line with O_APPEND: lines of concurrent writers do not
    // interleave. A short write (a full disk) is finished rather than left as half a line.
    let written = file.write(line).map_err(|e| fail("write", e))?;
    if written < line.len() {
        file.write_all(&line[written..])
            .map_err(|e| fail("write", e))?;
    }
    file.sync_all().map_err(|e| fail("sync", e))
}

// ----- command ------------------------------------------------------------------------------

/// Runs `argv` with the document on standard input; delivered iff it exits 0 within `timeout`.
fn run_command(
    argv: &[String],
    withheld_env: &[String],
    id: &str,
    document: &serde_json::Value,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let shown = escape_line(program);
    let started = Instant::now();
    let mut command = Command::new(program);
    for var in withheld_env {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .env("OPSBOOK_NOTIFICATION_ID", id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout stops what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;

    // Standard input is written from a thread: a command that does not read it must not
    // block the delivery past its timeout. Its errors do not matter; the exit status does.
    let input = json_line(document);
    let stdin = child.stdin.take();
    let writer = std::thread::Builder::new()
        .name("notify-stdin".into())
        .spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input);
            }
        });
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (eof, stderr_done) = mpsc::channel::<()>();
    let reader = child.stderr.take().map(|pipe| {
        let kept = Arc::clone(&stderr);
        std::thread::Builder::new()
            .name("notify-stderr".into())
            .spawn(move || {
                read_capped_into(pipe, &kept);
                let _ = eof.send(());
            })
    });
    if let Err(e) = writer.and(reader.transpose()) {
        stop(&mut child);
        return Err(format!("cannot start a thread for {shown}: {e}"));
    }

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let elapsed = started.elapsed();
                if elapsed >= timeout {
                    stop(&mut child);
                    return Err(format!(
                        "{shown} timed out after {} and was killed",
                        format_duration(timeout)
                    ));
                }
                std::thread::sleep(POLL.min(timeout - elapsed));
            }
            Err(e) => {
                stop(&mut child);
                return Err(format!("cannot wait for {shown}: {e}"));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let _ = stderr_done.recv_timeout(DRAIN_GRACE);
    let said = {
        let kept = stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first_line(&kept)
    };
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("{shown} exited with code {code}"),
        (None, Some(signal)) => format!("{shown} was killed by signal {signal}"),
        (None, None) => format!("{shown} failed"),
    };
    if said.is_empty() {
        Err(how)
    } else {
        Err(format!("{how}: {said}"))
    }
}

/// Reads `pipe` to its end, keeping its first `MAX_REPLY_BYTES` (the rest is read and
/// dropped, so the command never blocks on a full pipe).
fn read_capped_into(mut pipe: impl Read, kept: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut kept = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let room = MAX_REPLY_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Kills the command's process group and reaps the command.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) touches no memory. The command leads its own group (process_group(0))
        // and is not reaped yet, so the group id cannot have been reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ----- webhook ------------------------------------------------------------------------------

/// POSTs the document; delivered iff the answer is 2xx. Redirects are not followed.
fn post(
    url: &str,
    secret_env: Option<&str>,
    id: &str,
    document: &serde_json::Value,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", id);
    if let Some(var) = secret_env {
        let secret = std::env::var(var)
            .map_err(|_| format!("the secret's environment variable {var} is not set"))?;
        if secret.is_empty() || secret.chars().any(|c| c.is_control()) {
            return Err(format!(
                "the secret's environment variable {var} is empty or holds control characters"
            ));
        }
        request = request.header("Authorization", format!("Bearer {secret}"));
    }
    let body = document.to_string();
    let mut response = request.send(&body).map_err(|e| match e {
        ureq::Error::Timeout(_) => format!("timed out after {}", format_duration(timeout)),
        other => first_line(other.to_string().as_bytes()),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut reply = Vec::new();
    // The global timeout still bounds this read; what it gets is all there is to say.
    let _ = response
        .body_mut()
        .as_reader()
        .take(MAX_REPLY_BYTES as u64)
        .read_to_end(&mut reply);
    Err(format!("HTTP {}: {}", status.as_u16(), opening(&reply)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::{settings, Server};
    use std::os::unix::fs::PermissionsExt;

    fn channels(yaml: &str, base: &Path) -> Result<Channels> {
        Channels::from_settings(&settings(yaml, base))
    }

    fn channel(yaml: &str, base: &Path) -> Channel {
        let all = channels(yaml, base).unwrap();
        all.get(all.names()[0]).unwrap().clone()
    }

    fn command(argv: &[&str], timeout: Duration) -> Channel {
        Channel {
            name: "cmd".into(),
            kind: ChannelKind::Command(argv.iter().map(|a| a.to_string()).collect()),
            timeout,
            max_backoff: DEFAULT_MAX_BACKOFF,
            withheld_env: Vec::new(),
        }
    }

    fn doc(id: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "topic": "run-parked", "summary": "line\nbreak"})
    }

    #[test]
    fn reads_each_kind_with_defaults_and_describes_it_without_secrets() {
        let base = Path::new("/etc/opsbook");
        let all = channels(
            r#"
channels:
  log: { file: logs/events.jsonl }
  hook: { command: [notify-send, --urgent] }
  pager: { webhook: "https://bot:pw@events.example/v2/enqueue?token=x", secret_env: PD_KEY, timeout: 2s, max_backoff: 1m }
"#,
            base,
        )
        .unwrap();
        assert_eq!(all.names(), ["hook", "log", "pager"]);
        assert!(!all.is_empty());
        let log = all.get("log").unwrap();
        assert_eq!(log.name, "log");
        assert_eq!(
            log.kind,
            ChannelKind::File(PathBuf::from("/etc/opsbook/logs/events.jsonl"))
        );
        assert_eq!(
            (log.timeout, log.max_backoff),
            (DEFAULT_TIMEOUT, DEFAULT_MAX_BACKOFF)
        );
        let pager = all.get("pager").unwrap();
        assert_eq!(
            pager.kind,
            ChannelKind::Webhook {
                url: "https://bot:pw@events.example/v2/enqueue?token=x".into(),
                secret_env: Some("PD_KEY".into())
            }
        );
        assert_eq!(
            (pager.timeout, pager.max_backoff),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        let described: Vec<String> = all
            .names()
            .iter()
            .map(|n| all.get(n).unwrap().describe())
            .collect();
        assert_eq!(
            described,
            [
                "command notify-send",
                "file /etc/opsbook/logs/events.jsonl",
                "webhook https://events.example/v2/enqueue"
            ]
        );
        assert!(all.get("nope").is_none());
        assert!(channels("{}", base).unwrap().is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("x: {}", "channels.x: a channel needs one of `file`, `command` or `webhook`"),
            (
                "x: { file: a.jsonl, webhook: 'https://h/' }",
                "channels.x: a channel takes only one of `file`, `command` or `webhook`",
            ),
            (
                "x: { command: [] }",
                "channels.x.command: give the program and its arguments, like [/usr/local/bin/notify, --json]",
            ),
            (
                "x: { command: [bin/notify] }",
                "channels.x.command: `bin/notify`: give the program as an absolute path or a bare name found in PATH",
            ),
            (
                "x: { webhook: 'ftp://host/x' }",
                "channels.x.webhook: `ftp://host/x` is not an http:// or https:// URL",
            ),
            (
                "x: { webhook: 'events.example/x' }",
                "channels.x.webhook: `events.example/x` is not an http:// or https:// URL",
            ),
            (
                "x: { file: a.jsonl, secret_env: KEY }",
                "channels.x.secret_env: only a webhook channel sends a secret",
            ),
            (
                "x: { webhook: 'https://h/', timeout: soon }",
                "channels.x.timeout: `soon` is not a duration; write it like `30s`, `10m`, `2h`, `1d` or `1h30m`",
            ),
            (
                "x: { webhook: 'https://h/', max_backoff: 0s }",
                "channels.x.max_backoff: must be longer than 0",
            ),
            (
                "x: { file: a.jsonl, timeout: 2d }",
                "channels.x.timeout: must be at most 1d",
            ),
            (
                "\"bad name\": { file: a.jsonl }",
                "channels.bad name: name a channel with letters, digits, `-`, `_` and `.` (at most 64)",
            ),
        ];
        for (yaml, expected) in cases {
            let e = channels(&format!("channels:\n  {yaml}\n"), Path::new("/srv"))
                .unwrap_err()
                .to_string();
            assert_eq!(e, format!("/srv/opsbook.yaml: {expected}"), "{yaml}");
        }
    }

    #[test]
    fn a_file_channel_appends_one_line_per_notification() {
        let dir = tempfile::tempdir().unwrap();
        let log = channel("channels:\n  log: { file: new/events.jsonl }\n", dir.path());
        log.deliver("A", &doc("A")).unwrap();
        log.deliver("B", &doc("B")).unwrap();
        let path = dir.path().join("new/events.jsonl");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", doc("A"), doc("B"))
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }

    #[test]
    fn a_command_channel_gets_the_document_on_stdin_and_the_id_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.txt");
        let out_arg = out.display().to_string();
        let cmd = command(
            &[
                "/bin/sh",
                "-c",
                "printf '%s ' \"$OPSBOOK_NOTIFICATION_ID\" >> \"$0\"; cat >> \"$0\"",
                &out_arg,
            ],
            Duration::from_secs(10),
        );
        cmd.deliver("01ID", &doc("01ID")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("01ID {}\n", doc("01ID"))
        );
    }

    #[test]
    fn a_command_channel_does_not_see_the_secrets_of_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        // HOME stands in for a secret without changing the environment (the shell would
        // make up a PATH of its own).
        let yaml = format!(
            r#"
channels:
  hook: {{ webhook: "https://events.example/", secret_env: HOME }}
  cmd: {{ command: [/bin/sh, -c, 'printf %s "${{HOME-withheld}}" > "$0"', "{}"] }}
"#,
            out.display()
        );
        let all = channels(&yaml, dir.path()).unwrap();
        all.get("cmd").unwrap().deliver("X", &doc("X")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "withheld");
    }

    #[test]
    fn a_failing_command_reports_its_exit_code_and_first_stderr_line_escaped() {
        let cmd = command(
            &[
                "/bin/sh",
                "-c",
                "cat >/dev/null; printf 'no route \\033[2J to pager\\nsecond line\\n' >&2; exit 1",
            ],
            Duration::from_secs(10),
        );
        assert_eq!(
            cmd.deliver("X", &doc("X")),
            Err("/bin/sh exited with code 1: no route \\x1b[2J to pager".into())
        );
        let killed = command(&["/bin/sh", "-c", "kill -9 $$"], Duration::from_secs(10));
        assert_eq!(
            killed.deliver("X", &doc("X")),
            Err("/bin/sh was killed by signal 9".into())
        );
        let missing = command(&["/nonexistent/notify"], Duration::from_secs(10));
        assert_eq!(
            missing.deliver("X", &doc("X")),
            Err("cannot start /nonexistent/notify: No such file or directory (os error 2)".into())
        );
    }

    #[test]
    fn a_command_that_outlives_its_timeout_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        let marker_arg = marker.display().to_string();
        // The sleep is a child of the shell: killing only the shell would leave it.
        let cmd = command(
            &["/bin/sh", "-c", "sleep 2; touch \"$0\"", &marker_arg],
            Duration::from_millis(300),
        );
        let started = Instant::now();
        assert_eq!(
            cmd.deliver("X", &doc("X")),
            Err("/bin/sh timed out after 300ms and was killed".into())
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the command's child lived on");
    }

    fn webhook(url: String, secret_env: Option<&str>, timeout: Duration) -> Channel {
        Channel {
            name: "hook".into(),
            kind: ChannelKind::Webhook {
                url,
                secret_env: secret_env.map(str::to_string),
            },
            timeout,
            max_backoff: DEFAULT_MAX_BACKOFF,
            withheld_env: Vec::new(),
        }
    }

    #[test]
    fn a_webhook_posts_json_with_idempotency_key_and_bearer_and_fails_on_non_2xx() {
        let server = Server::start(vec![(503, "busy\r\ntry later"), (307, ""), (204, "")]);
        // PATH is always set: it stands in for a secret without changing the environment.
        let path_value = std::env::var("PATH").unwrap();
        let hook = webhook(
            server.url("/hook?k=1"),
            Some("PATH"),
            Duration::from_secs(10),
        );
        assert_eq!(
            hook.deliver("ID1", &doc("ID1")),
            Err("HTTP 503: busy try later".into())
        );
        assert_eq!(hook.deliver("ID2", &doc("ID2")), Err("HTTP 307: ".into()));
        assert_eq!(hook.deliver("ID3", &doc("ID3")), Ok(()));
        let requests = server.finish();
        assert_eq!(requests.len(), 3);
        let third = &requests[2];
        assert_eq!(third.line, "POST /hook?k=1 HTTP/1.1");
        assert_eq!(third.header("content-type"), Some("application/json"));
        assert_eq!(third.header("idempotency-key"), Some("ID3"));
        assert_eq!(
            third.header("authorization"),
            Some(format!("Bearer {path_value}").as_str())
        );
        assert_eq!(third.body, doc("ID3").to_string());
    }

    #[test]
    fn a_webhook_that_never_answers_fails_within_its_timeout() {
        let server = Server::silent();
        let hook = webhook(server.url("/"), None, Duration::from_millis(500));
        let started = Instant::now();
        assert_eq!(
            hook.deliver("X", &doc("X")),
            Err("timed out after 500ms".into())
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_unset_secret_variable_fails_the_delivery_and_names_the_variable() {
        let hook = webhook(
            "http://127.0.0.1:9/".into(),
            Some("OPSBOOK_TEST_SECRET_NEVER_SET"),
            Duration::from_secs(1),
        );
        assert_eq!(
            hook.deliver("X", &doc("X")),
            Err(
                "the secret's environment variable OPSBOOK_TEST_SECRET_NEVER_SET is not set".into()
            )
        );
    }
}
