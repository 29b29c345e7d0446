//! Running under systemd: the unit `opsbook daemon --print-systemd-unit` writes (Type=notify,
//! a watchdog, and the sandboxing an unattended engine should run with), and the readiness,
//! watchdog and stopping notices the daemon sends. Outside systemd the notices do nothing.

use std::path::Path;
use std::time::Duration;

/// The unit for a daemon run by `program` with the given global options; `writes_home`:
/// the journal lives under a home folder, which the unit must then leave writable.
pub fn unit(program: &Path, options: &[String], user: &str, writes_home: bool) -> String {
    let mut exec = shell_words(program.display().to_string());
    for option in options {
        exec.push(' ');
        exec.push_str(&shell_words(option.clone()));
    }
    format!(
        "# opsbook daemon: starts scheduled runbooks in their maintenance windows, resumes
# the runs it parked once they are signed, and delivers notifications.
# Install: save as /etc/systemd/system/opsbook.service, then
#   systemctl daemon-reload && systemctl enable --now opsbook
[Unit]
Description=opsbook daemon: scheduled runbooks and maintenance windows
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec} daemon
# SIGTERM: start nothing new; running steps finish, their runs park and resume on restart.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=15min
Restart=on-failure
RestartSec=5s
WatchdogSec=60s
User={user}
StateDirectory=opsbook
WorkingDirectory=/var/lib/opsbook
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
{protect_home}ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictRealtime=yes

[Install]
WantedBy=multi-user.target
",
        protect_home = if writes_home {
            "# ProtectHome is off: the journal lives under a home folder.\n"
        } else {
            "ProtectHome=read-only\n"
        }
    )
}

/// A word of `ExecStart=` quoted the way systemd reads it, when it needs quoting.
fn shell_words(word: String) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:@,+".contains(c));
    if plain {
        word
    } else {
        format!(
            "\"{}\"",
            word.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
                .replace('%', "%%")
        )
    }
}

/// Tells systemd the daemon is ready.
pub fn ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Tells systemd the daemon is alive.
pub fn alive() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}

/// How often to say alive: half the watchdog interval, when systemd set one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_quotes_what_systemd_would_split_or_expand() {
        let unit = unit(
            Path::new("/usr/local/bin/opsbook"),
            &["--config".into(), "/etc/opsbook/my ops.yaml".into()],
            "opsbook",
            false,
        );
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/opsbook --config \"/etc/opsbook/my ops.yaml\" daemon\n"
        ));
        assert!(unit.contains("Type=notify\n"));
        assert!(unit.contains("WatchdogSec=60s\n"));
        assert!(unit.contains("ProtectHome=read-only\n"));
        assert_eq!(shell_words("50%$HOME".into()), "\"50%%$$HOME\"");
    }
}
