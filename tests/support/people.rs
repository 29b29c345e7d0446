//! People: operators registered with known passphrases, commands acting as one of them, a run
//! parked at a gate and signed.

use super::{Cmd, Output, Workspace};

/// The passphrase every test operator `name` gets: `<name>-passphrase`.
pub fn passphrase(name: &str) -> String {
    format!("{name}-passphrase")
}

/// Adds `name` with `role` and the passphrase `<name>-passphrase`, as the supervisor `by`
/// (nobody for the first operator, who becomes a supervisor by itself).
pub fn add_operator(ws: &Workspace, name: &str, role: &str, by: Option<&str>) {
    let args = ["operator", "add", name, "--role", role];
    match by {
        Some(by) => act(ws, by, args),
        None => ws.cmd(args),
    }
    .env("OPSBOOK_NEW_PASSPHRASE", &passphrase(name))
    .run()
    .status(0);
}

/// Registers operators in order, each `(name, role)`: the first needs nobody and becomes a
/// supervisor; the others are added by the first.
pub fn team(ws: &Workspace, members: &[(&str, &str)]) {
    let first = members[0].0;
    for (i, (name, role)) in members.iter().enumerate() {
        add_operator(ws, name, role, (i > 0).then_some(first));
    }
}

/// Registers `name` as another name of the person behind `of`, added by the supervisor `by`.
pub fn alias(ws: &Workspace, by: &str, name: &str, role: &str, of: &str) {
    act(
        ws,
        by,
        ["operator", "add", name, "--role", role, "--alias-of", of],
    )
    .env("OPSBOOK_NEW_PASSPHRASE", &passphrase(name))
    .run()
    .status(0);
}

/// A command acting as operator `name`, with their passphrase.
pub fn act<I, S>(ws: &Workspace, name: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut all = vec!["--as".to_string(), name.to_string()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_string()));
    ws.cmd(all).env("OPSBOOK_PASSPHRASE", &passphrase(name))
}

/// A runbook: a shell step `prep`, a gate `check` asking "Is it fine?" with the given extra
/// keys (YAML flow entries, each after a comma), and a shell step `after`.
pub fn gate_runbook(ws: &Workspace, id: &str, gate_keys: &str) {
    ws.runbook(
        id,
        &format!(
            r#"
            runbook: {id}
            title: Gate {id}
            steps:
              - id: prep
                shell: echo prepared
              - id: check
                gate: {{ prompt: Is it fine?{gate_keys} }}
              - id: after
                shell: echo after
            "#
        ),
    );
}

/// Parks a run of `runbook` as `runner` (exit 3) and returns its output.
pub fn park(ws: &Workspace, runner: &str, runbook: &str) -> Output {
    act(ws, runner, ["run", runbook, "--non-interactive"])
        .run()
        .status(3)
        .stdout_has("parked")
}

/// `opsbook signoff RUN EXTRA...` as `signer`.
#[must_use = "assert the sign-off's exit status"]
pub fn signoff(ws: &Workspace, signer: &str, run_id: &str, extra: &[&str]) -> Output {
    let mut args = vec!["signoff", run_id];
    args.extend_from_slice(extra);
    act(ws, signer, args).run()
}

/// The binding hash printed when a run parks (`  binding <hex>`).
#[track_caller]
pub fn binding(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("binding "))
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|| panic!("no binding line in\n{}", out.stdout))
}
