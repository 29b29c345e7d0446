//! Sign-off and resume: who may sign a gate (roles, aliases, four eyes, allow-lists, evidence),
//! parking and resuming, bindings, concurrent decisions, `kill -9` and leases, gate timeouts,
//! supervised training runs and qualification, handover, test scripts' expectations, and
//! runbooks that changed under a parked run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Cmd, Output, Workspace};

// ----- helpers -------------------------------------------------------------------------------

fn passphrase(name: &str) -> String {
    format!("{name}-passphrase")
}

/// Registers operators in order, each `(name, role)`: the first needs nobody and becomes a
/// supervisor; the others are added by the first.
fn team(ws: &Workspace, members: &[(&str, &str)]) {
    let first = members[0].0;
    for (i, (name, role)) in members.iter().enumerate() {
        let args = ["operator", "add", name, "--role", role];
        let cmd = if i == 0 {
            ws.cmd(args)
        } else {
            act(ws, first, args)
        };
        cmd.env("OPSBOOK_NEW_PASSPHRASE", &passphrase(name))
            .run()
            .status(0);
    }
}

/// Registers `name` as another name of the person behind `of`, added by the supervisor `by`.
fn alias(ws: &Workspace, by: &str, name: &str, role: &str, of: &str) {
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
fn act<I, S>(ws: &Workspace, name: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut all = vec!["--as".to_string(), name.to_string()];
    all.extend(args.into_iter().map(|a| a.as_ref().to_string()));
    ws.cmd(all).env("OPSBOOK_PASSPHRASE", &passphrase(name))
}

/// A spawned `opsbook`: no stdin, output piped; killed and reaped if the test ends first, so
/// that a failing test leaves no process behind.
struct Proc(Option<Child>);

impl Proc {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is still held")
    }

    fn has_exited(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_some()
    }

    /// Waits for the end: exit code (-1 when killed by a signal), stdout, stderr.
    fn finish(mut self) -> (i32, String, String) {
        let child = self.0.take().expect("the process is still held");
        let out = child.wait_with_output().expect("opsbook finishes");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(cmd: Cmd) -> Proc {
    let mut command: Command = cmd.command();
    command.stdin(Stdio::null());
    Proc(Some(command.spawn().expect("opsbook starts")))
}

/// One journaled event.
#[derive(Debug, Clone)]
struct Ev {
    run_seq: i64,
    at: String,
    kind: String,
    step: Option<String>,
    body: Value,
}

/// The events of one run, in journal order.
fn events(ws: &Workspace, run_id: &str) -> Vec<Ev> {
    let conn = ws.journal();
    let mut stmt = conn
        .prepare("SELECT run_seq, at, kind, step, body FROM events WHERE run_id = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([run_id], |r| {
        let body: String = r.get(4)?;
        Ok(Ev {
            run_seq: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            step: r.get(3)?,
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        })
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

fn of_kind<'a>(events: &'a [Ev], kind: &str) -> Vec<&'a Ev> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn count(ws: &Workspace, run_id: &str, kind: &str) -> usize {
    of_kind(&events(ws, run_id), kind).len()
}

/// Waits until an event of `kind` for `step` is in the journal (the run's id need not be
/// known yet); returns its run id.
fn wait_for_event(ws: &Workspace, kind: &str, step: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if ws.db().exists() {
            let found: Option<String> = rusqlite::Connection::open(ws.db())
                .and_then(|conn| {
                    conn.busy_timeout(Duration::from_secs(5))?;
                    conn.query_row(
                        "SELECT run_id FROM events WHERE kind = ?1 AND step = ?2 LIMIT 1",
                        [kind, step],
                        |r| r.get(0),
                    )
                })
                .ok();
            if let Some(run_id) = found {
                return run_id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event for step {step} within 15s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn show(ws: &Workspace, run_id: &str) -> Value {
    ws.cmd(["show", run_id, "--json"]).run().status(0).json()
}

/// The latest record of a step in `show --json`.
fn step_of<'a>(show: &'a Value, id: &str) -> &'a Value {
    show["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .rev()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {show:#}"))
}

/// The binding hash printed when a run parks (`  binding <hex>`).
fn binding(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("binding "))
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|| panic!("no binding line in\n{}", out.stdout))
}

/// A runbook: a shell step, then one gate with the given extra keys (YAML flow entries).
fn gate_runbook(ws: &Workspace, id: &str, gate_keys: &str) {
    ws.runbook(
        id,
        &format!(
            "runbook: {id}\ntitle: Gate {id}\nsteps:\n  - id: prep\n    shell: echo prepared\n  - id: check\n    gate: {{ prompt: Is it fine?{gate_keys} }}\n  - id: after\n    shell: echo after\n"
        ),
    );
}

/// Parks a run of `runbook` as `runner` and returns its output.
fn park(ws: &Workspace, runner: &str, runbook: &str) -> Output {
    act(ws, runner, ["run", runbook, "--non-interactive"])
        .run()
        .status(3)
        .stdout_has("parked")
}

fn signoff(ws: &Workspace, signer: &str, run_id: &str, extra: &[&str]) -> Output {
    let mut args = vec!["signoff", run_id];
    args.extend_from_slice(extra);
    act(ws, signer, args).run()
}

/// Asserts the run's `run_seq` values are 1, 2, 3, ... without gaps or repeats.
#[track_caller]
fn assert_contiguous(ws: &Workspace, run_id: &str) {
    let seqs: Vec<i64> = events(ws, run_id).iter().map(|e| e.run_seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "run_seq of run {run_id} is not contiguous");
}

fn lines_in(ws: &Workspace, file: &str) -> usize {
    std::fs::read_to_string(ws.path().join(file))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

// ----- 1. who may sign ------------------------------------------------------------------------

#[test]
fn a_trainee_cannot_sign_their_own_gate_and_the_supervisor_can() {
    let ws = Workspace::new();
    team(&ws, &[("sue", "supervisor"), ("tim", "trainee")]);
    // role trainee: the role is not why tim is refused.
    gate_runbook(&ws, "own", ", role: trainee");
    let run = act(
        &ws,
        "tim",
        ["run", "own", "--supervisor", "sue", "--trainee"],
    )
    .run()
    .status(3);
    let id = run.run_id();

    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr_has("trainee");
    let evs = events(&ws, &id);
    let refused = of_kind(&evs, "signoff_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].body["signer"], "tim");
    assert_eq!(refused[0].step.as_deref(), Some("check"));
    assert!(of_kind(&evs, "signoff_recorded").is_empty());

    signoff(&ws, "sue", &id, &["--approve"]).status(0);
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["signer"], "sue");
    assert_eq!(recorded[0].body["decision"], "approved");
    assert_eq!(recorded[0].body["auth"], "passphrase");
}

#[test]
fn an_alias_of_an_approver_is_not_a_second_approver() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("olga", "operator"),
        ],
    );
    alias(&ws, "ann", "ann2", "supervisor", "ann");
    let listed = ws
        .cmd(["operator", "list", "--json"])
        .run()
        .status(0)
        .json();
    let ann2 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "ann2")
        .expect("ann2 listed");
    assert_eq!(ann2["person"], "ann");

    gate_runbook(&ws, "two", ", role: supervisor, min_approvals: 2");
    let id = park(&ws, "olga", "two").run_id();

    signoff(&ws, "ann", &id, &["--approve"])
        .status(0)
        .stdout_has("1 of 2 approvals");
    signoff(&ws, "ann2", &id, &["--approve"])
        .status(5)
        .stderr_has("already approved");
    assert_eq!(count(&ws, &id, "signoff_refused"), 1);
    // One person's approval is not two: the run parks again.
    act(&ws, "olga", ["resume", &id, "--non-interactive"])
        .run()
        .status(3);
    assert_eq!(show(&ws, &id)["status"], "awaiting-signoff");

    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    act(&ws, "olga", ["resume", &id, "--non-interactive"])
        .run()
        .status(0);
    let view = show(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    let gate = step_of(&view, "check");
    let persons: Vec<&str> = gate["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["person"].as_str().unwrap())
        .collect();
    assert_eq!(persons, ["ann", "bob"]);
}

#[test]
fn four_eyes_refuses_the_runner_even_under_an_alias() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    alias(&ws, "ann", "ann2", "supervisor", "ann");
    gate_runbook(&ws, "fe", ", role: supervisor, four_eyes: true");
    let id = park(&ws, "ann", "fe").stdout_has("four eyes").run_id();

    signoff(&ws, "ann", &id, &["--approve"])
        .status(5)
        .stderr_has("four eyes");
    signoff(&ws, "ann2", &id, &["--approve"])
        .status(5)
        .stderr_has("four eyes");
    // Rejecting one's own gate is signing it too.
    signoff(&ws, "ann2", &id, &["--reject"])
        .status(5)
        .stderr_has("four eyes");
    let evs = events(&ws, &id);
    let refused: Vec<&str> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| e.body["signer"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["ann", "ann2", "ann2"]);
    assert!(of_kind(&evs, "signoff_recorded").is_empty());

    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    assert_eq!(show(&ws, &id)["status"], "succeeded");
}

#[test]
fn only_the_approvers_listed_may_sign() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("cy", "supervisor"),
            ("bob", "operator"),
        ],
    );
    gate_runbook(&ws, "listed", ", approvers: [bob]");
    let id = park(&ws, "ann", "listed").run_id();

    // A supervisor outside the list, and the runner, are refused.
    signoff(&ws, "cy", &id, &["--approve"])
        .status(5)
        .stderr_has("not one of the approvers");
    signoff(&ws, "ann", &id, &["--approve"])
        .status(5)
        .stderr_has("not one of the approvers");
    assert_eq!(count(&ws, &id, "signoff_refused"), 2);
    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    let view = show(&ws, &id);
    assert_eq!(step_of(&view, "check")["signoffs"][0]["signer"], "bob");
}

#[test]
fn a_role_below_the_gates_role_is_refused() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("olga", "operator"),
            ("tim", "trainee"),
        ],
    );
    ws.runbook(
        "roles",
        "runbook: roles\ntitle: Roles\nsteps:\n  - id: op-gate\n    gate: { prompt: An operator's call, role: operator }\n  - id: sup-gate\n    gate: { prompt: A supervisor's call, role: supervisor }\n",
    );
    let id = park(&ws, "ann", "roles").run_id();

    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr_has("role trainee");
    signoff(&ws, "olga", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id, "--non-interactive"])
        .run()
        .status(3);
    signoff(&ws, "olga", &id, &["--step", "sup-gate", "--approve"])
        .status(5)
        .stderr_has("role operator");
    signoff(&ws, "tim", &id, &["--step", "sup-gate", "--reject"])
        .status(5)
        .stderr_has("role trainee");
    let evs = events(&ws, &id);
    let refused: Vec<(Option<&str>, &str)> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| (e.step.as_deref(), e.body["signer"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (Some("op-gate"), "tim"),
            (Some("sup-gate"), "olga"),
            (Some("sup-gate"), "tim")
        ]
    );
    signoff(&ws, "ann", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    assert_eq!(show(&ws, &id)["status"], "succeeded");
}

#[test]
fn required_evidence_needs_a_comment() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "operator")]);
    gate_runbook(&ws, "ev", ", evidence: required, show: [prep]");
    let id = park(&ws, "ann", "ev").stdout_has("comment").run_id();

    signoff(&ws, "bob", &id, &["--approve"])
        .status(5)
        .stderr_has("evidence");
    signoff(&ws, "bob", &id, &["--approve", "--comment", "   "])
        .status(5)
        .stderr_has("evidence");
    assert_eq!(count(&ws, &id, "signoff_refused"), 2);
    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--comment", "restore tested at 02:00"],
    )
    .status(0);
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["comment"], "restore tested at 02:00");
    // The signer saw the shown step's outputs, and they are kept with the sign-off.
    assert_eq!(
        recorded[0].body["evidence"]["prep"]["stdout"], "prepared",
        "{:#}",
        recorded[0].body
    );
}

#[test]
fn operators_are_authenticated_disabled_and_change_passphrases() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "operator")]);
    // Only a supervisor adds operators; a passphrase needs 8 characters.
    act(&ws, "bob", ["operator", "add", "cy", "--role", "operator"])
        .env("OPSBOOK_NEW_PASSPHRASE", "cy-passphrase")
        .run()
        .status(5);
    act(&ws, "ann", ["operator", "add", "cy", "--role", "operator"])
        .env("OPSBOOK_NEW_PASSPHRASE", "short")
        .run()
        .status(2)
        .stderr_has("8");
    gate_runbook(&ws, "auth", "");
    let id = park(&ws, "ann", "auth").run_id();
    ws.cmd(["--as", "bob", "signoff", &id, "--approve"])
        .env("OPSBOOK_PASSPHRASE", "not-bobs-passphrase")
        .run()
        .status(5)
        .stderr_has("wrong passphrase");

    // bob changes his passphrase: the old one stops working.
    act(&ws, "bob", ["operator", "passwd"])
        .env("OPSBOOK_NEW_PASSPHRASE", "bobs-new-passphrase")
        .run()
        .status(0);
    signoff(&ws, "bob", &id, &["--approve"])
        .status(5)
        .stderr_has("wrong passphrase");

    act(&ws, "ann", ["operator", "disable", "bob"])
        .run()
        .status(0);
    ws.cmd(["--as", "bob", "signoff", &id, "--approve"])
        .env("OPSBOOK_PASSPHRASE", "bobs-new-passphrase")
        .run()
        .status(5)
        .stderr_has("disabled");
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);
    let list = ws
        .cmd(["operator", "list", "--json"])
        .run()
        .status(0)
        .json();
    let bob = list
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "bob")
        .unwrap();
    assert_eq!(bob["disabled"], true);
}

// ----- 2. park, sign off, resume ----------------------------------------------------------------

#[test]
fn a_parked_run_is_signed_off_then_resumed_and_bindings_tie_sign_offs_to_one_run() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "flow", "");
    let first = park(&ws, "ann", "flow");
    let id = first.run_id();
    let other = park(&ws, "ann", "flow");
    let other_id = other.run_id();
    assert_ne!(binding(&first), binding(&other));
    assert_eq!(binding(&first).len(), 64);
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs[0]["status"], "awaiting-signoff");

    // The binding of another run does not sign this one.
    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--binding", &binding(&other)],
    )
    .status(5)
    .stderr_has("binding");
    let refused = of_kind(&events(&ws, &id), "signoff_refused").len();
    assert_eq!(refused, 1);
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);

    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--binding", &binding(&first)],
    )
    .status(0)
    .stdout_has("opsbook resume");

    // A late second decision changes nothing, before and after the resume.
    let before = events(&ws, &id).len();
    signoff(&ws, "ann", &id, &["--step", "check", "--reject"])
        .status(5)
        .stderr_has("already decided");
    assert_eq!(events(&ws, &id).len(), before);

    act(&ws, "ann", ["resume", &id, "--non-interactive"])
        .run()
        .status(0)
        .stdout_has("resumed");
    let view = show(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    assert_eq!(step_of(&view, "after")["status"], "succeeded");
    assert_eq!(step_of(&view, "check")["status"], "succeeded");

    let before = events(&ws, &id).len();
    signoff(&ws, "bob", &id, &["--step", "check", "--reject"])
        .status(5)
        .stderr_has("already decided");
    assert_eq!(events(&ws, &id).len(), before);
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["signer"], "bob");
    assert_eq!(recorded[0].body["binding"], binding(&first).as_str());
    // The other run is untouched.
    assert_eq!(count(&ws, &other_id, "signoff_recorded"), 0);
    ws.cmd(["audit", "verify"]).run().status(0);
}

// ----- 3. concurrent sign-offs ----------------------------------------------------------------

#[test]
fn two_concurrent_sign_offs_decide_a_gate_exactly_once() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("cy", "supervisor"),
        ],
    );
    gate_runbook(&ws, "race", ", role: supervisor");
    for round in 0..3 {
        let id = park(&ws, "ann", "race").run_id();
        let approve = spawn(act(&ws, "bob", ["signoff", &id, "--approve"]));
        let reject = spawn(act(&ws, "cy", ["signoff", &id, "--reject"]));
        let (a_code, _, a_err) = approve.finish();
        let (r_code, _, r_err) = reject.finish();
        let mut codes = [a_code, r_code];
        codes.sort();
        assert_eq!(
            codes,
            [0, 5],
            "round {round}: approve {a_code} ({a_err}), reject {r_code} ({r_err})"
        );
        let loser_err = if a_code == 5 { &a_err } else { &r_err };
        assert!(
            loser_err.contains("already decided"),
            "round {round}: {loser_err}"
        );
        let evs = events(&ws, &id);
        let recorded = of_kind(&evs, "signoff_recorded");
        assert_eq!(recorded.len(), 1, "round {round}: {recorded:?}");
        let winner = if a_code == 0 { "approved" } else { "rejected" };
        assert_eq!(recorded[0].body["decision"], winner);
        let expected_exit = if a_code == 0 { 0 } else { 4 };
        act(&ws, "ann", ["resume", &id]).run().status(expected_exit);
    }
}

// ----- 4. kill -9 and resume ----------------------------------------------------------------------

/// `first` and `last` count their runs; `slow` counts its runs and then waits until the file
/// `go` exists (at most ~30 s).
fn crash_runbook(ws: &Workspace, idempotent: bool) {
    ws.runbook(
        "crash",
        &format!(
            r#"runbook: crash
title: Crash and resume
steps:
  - id: first
    shell: echo x >> first.txt
  - id: slow
    idempotent: {idempotent}
    shell: |
      echo x >> slow.txt
      i=0
      while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
  - id: last
    shell: echo x >> last.txt
"#
        ),
    );
}

/// Starts `crash`, waits until `slow` has started, and kills the engine with SIGKILL.
fn run_and_kill(ws: &Workspace) -> String {
    let mut child = spawn(ws.cmd(["run", "crash", "--non-interactive"]));
    let id = wait_for_event(ws, "step_started", "slow");
    // The step's side effect happens right after it starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines_in(ws, "slow.txt") == 0 {
        assert!(Instant::now() < deadline, "slow never started its work");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.child().kill().expect("SIGKILL");
    // Reaped, so that its pid is gone (a zombie would still look alive).
    let status = child.child().wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let evs = events(ws, &id);
    assert!(of_kind(&evs, "run_finished").is_empty());
    assert_eq!(evs.last().unwrap().kind, "step_started");
    id
}

#[test]
fn an_idempotent_interrupted_step_is_rerun_by_resume_and_finished_steps_are_not() {
    let ws = Workspace::new();
    crash_runbook(&ws, true);
    let id = run_and_kill(&ws);
    assert_eq!(show(&ws, &id)["status"], "running");
    ws.file("go", "");
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(0)
        .stdout_has("done before the resume");
    assert_eq!(lines_in(&ws, "first.txt"), 1, "first ran again");
    assert_eq!(lines_in(&ws, "slow.txt"), 2, "slow was not rerun");
    assert_eq!(lines_in(&ws, "last.txt"), 1);
    let evs = events(&ws, &id);
    let decided = of_kind(&evs, "interrupted_step_decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].body["decision"], "rerun");
    assert_eq!(decided[0].step.as_deref(), Some("slow"));
    let first_started = evs
        .iter()
        .filter(|e| e.kind == "step_started" && e.step.as_deref() == Some("first"))
        .count();
    assert_eq!(first_started, 1);
    assert_eq!(show(&ws, &id)["status"], "succeeded");
    ws.cmd(["audit", "verify"]).run().status(0);
    assert_contiguous(&ws, &id);
}

#[test]
fn a_non_idempotent_interrupted_step_waits_for_a_decision_then_is_rerun() {
    let ws = Workspace::new();
    crash_runbook(&ws, false);
    let id = run_and_kill(&ws);
    let before = events(&ws, &id).len();
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(2)
        .stderr_has("`slow`")
        .stderr_has("--rerun-interrupted");
    assert_eq!(
        events(&ws, &id).len(),
        before,
        "a refused resume journals nothing"
    );
    assert_eq!(lines_in(&ws, "slow.txt"), 1);

    ws.file("go", "");
    ws.cmd(["resume", &id, "--non-interactive", "--rerun-interrupted"])
        .run()
        .status(0);
    assert_eq!(lines_in(&ws, "first.txt"), 1);
    assert_eq!(lines_in(&ws, "slow.txt"), 2);
    assert_eq!(lines_in(&ws, "last.txt"), 1);
    let evs = events(&ws, &id);
    let decided = of_kind(&evs, "interrupted_step_decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].body["decision"], "rerun");
    ws.cmd(["audit", "verify"]).run().status(0);
    assert_contiguous(&ws, &id);
}

#[test]
fn a_non_idempotent_interrupted_step_can_be_marked_done_without_running() {
    let ws = Workspace::new();
    crash_runbook(&ws, false);
    let id = run_and_kill(&ws);
    ws.cmd([
        "resume",
        &id,
        "--non-interactive",
        "--skip-interrupted",
        "--comment",
        "checked by hand: the work was done",
    ])
    .run()
    .status(0);
    assert_eq!(lines_in(&ws, "first.txt"), 1);
    assert_eq!(lines_in(&ws, "slow.txt"), 1, "slow ran again");
    assert_eq!(lines_in(&ws, "last.txt"), 1);
    let view = show(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    let slow = step_of(&view, "slow");
    assert_eq!(slow["status"], "succeeded");
    assert!(
        slow["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("checked by hand"),
        "{slow:#}"
    );
    let evs = events(&ws, &id);
    let decided = of_kind(&evs, "interrupted_step_decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].body["decision"], "marked-done");
    assert_eq!(
        decided[0].body["comment"],
        "checked by hand: the work was done"
    );
    ws.cmd(["audit", "verify"]).run().status(0);
    assert_contiguous(&ws, &id);
}

#[test]
fn of_two_concurrent_resumes_one_drives_the_run_and_the_other_is_refused() {
    let ws = Workspace::new();
    crash_runbook(&ws, true);
    let id = run_and_kill(&ws);
    // Without `go`, the resumed `slow` keeps running until the test says so.
    let mut one = spawn(ws.cmd(["resume", &id, "--non-interactive"]));
    let mut two = spawn(ws.cmd(["resume", &id, "--non-interactive"]));
    let deadline = Instant::now() + Duration::from_secs(15);
    let (loser, winner) = loop {
        if one.has_exited() {
            break (one, two);
        }
        if two.has_exited() {
            break (two, one);
        }
        assert!(Instant::now() < deadline, "neither resume stopped");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (code, _, err) = loser.finish();
    assert_eq!(code, 5, "the second resume: {err}");
    assert!(err.contains("being driven"), "{err}");
    ws.file("go", "");
    let (code, out, err) = winner.finish();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lines_in(&ws, "slow.txt"), 2, "slow ran more than once more");
    assert_eq!(lines_in(&ws, "last.txt"), 1);
    assert_eq!(count(&ws, &id, "run_resumed"), 1);
    ws.cmd(["audit", "verify"]).run().status(0);
    assert_contiguous(&ws, &id);
}

/// A resume that read the run just before another resume finished it must not drive it again
/// (a late resume used to re-run every step after the one it saw, and journal a second
/// run_finished). With strace, the late resume's second open of the journal (its lease) is held
/// back for a second, which makes that interleaving certain; without strace, it is tried 40
/// times, and may miss it.
#[test]
fn a_resume_that_loses_the_race_never_drives_a_finished_run_again() {
    let ws = Workspace::new();
    ws.runbook(
        "twice",
        "runbook: twice\ntitle: Twice\nsteps:\n  - id: ok\n    gate: { prompt: Go on? }\n  - id: after\n    shell: echo x >> after.txt\n",
    );
    let strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let trials = if strace { 1 } else { 40 };
    for trial in 0..trials {
        let _ = std::fs::remove_file(ws.path().join("after.txt"));
        let id = ws
            .cmd(["run", "twice", "--non-interactive"])
            .run()
            .status(3)
            .run_id();
        ws.cmd(["signoff", &id, "--approve"]).run().status(0);
        let late = ws.cmd(["resume", &id]);
        let late = if strace {
            let plain = late.command();
            let mut command = Command::new("strace");
            command
                .args(["-qq", "-f", "-o", "/dev/null", "-P"])
                .arg(ws.db())
                .args(["-e", "trace=openat"])
                .args(["-e", "inject=openat:delay_enter=1000000:when=2"])
                .arg(plain.get_program())
                .args(plain.get_args())
                .current_dir(ws.path())
                .env_remove("OPSBOOK_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in plain.get_envs() {
                match v {
                    Some(v) => command.env(k, v),
                    None => command.env_remove(k),
                };
            }
            let proc = Proc(Some(command.spawn().expect("strace starts")));
            std::thread::sleep(Duration::from_millis(300));
            proc
        } else {
            spawn(late)
        };
        let early = spawn(ws.cmd(["resume", &id]));
        let (early_code, early_out, early_err) = early.finish();
        let (late_code, late_out, late_err) = late.finish();
        assert!(
            lines_in(&ws, "after.txt") <= 1,
            "trial {trial}: step `after` ran twice\nearly resume: exit {early_code}\n{early_out}{early_err}\nlate resume: exit {late_code}\n{late_out}{late_err}"
        );
        assert_eq!(count(&ws, &id, "run_finished"), 1, "trial {trial}");
        assert_eq!(
            [early_code, late_code].iter().filter(|c| **c == 0).count(),
            1,
            "trial {trial}: exactly one resume drives the run"
        );
    }
}

// ----- 5. gate timeouts -----------------------------------------------------------------------

#[test]
fn a_gate_that_times_out_while_waiting_ends_rejected() {
    let ws = Workspace::new();
    gate_runbook(&ws, "late", ", timeout: 2s");
    let started = Instant::now();
    let out = ws.cmd(["run", "late", "--wait"]).run().status(4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    let id = out.run_id();
    let evs = events(&ws, &id);
    let timed_out = of_kind(&evs, "gate_timed_out");
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].body["action"], "reject");
    assert!(of_kind(&evs, "signoff_recorded").is_empty());
    let view = show(&ws, &id);
    assert_eq!(view["status"], "rejected");
    assert_eq!(step_of(&view, "check")["status"], "rejected");
    assert!(view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["id"] != "after"));
}

#[test]
fn a_sign_off_after_the_deadline_is_refused_and_resume_ends_the_run_rejected() {
    let ws = Workspace::new();
    gate_runbook(&ws, "late", ", timeout: 2s");
    let id = ws
        .cmd(["run", "late", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    let started = of_kind(&events(&ws, &id), "step_started")
        .into_iter()
        .find(|e| e.step.as_deref() == Some("check"))
        .map(|e| chrono::DateTime::parse_from_rfc3339(&e.at).unwrap())
        .unwrap();
    let deadline = started + chrono::Duration::milliseconds(2100);
    let left = (deadline.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    std::thread::sleep(left);

    ws.cmd(["signoff", &id, "--approve"])
        .run()
        .status(5)
        .stderr_has("timed out");
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);
    ws.cmd(["resume", &id]).run().status(4);
    let evs = events(&ws, &id);
    assert_eq!(of_kind(&evs, "gate_timed_out").len(), 1);
    assert!(of_kind(&evs, "signoff_recorded").is_empty());
    let view = show(&ws, &id);
    assert_eq!(view["status"], "rejected");
    assert_eq!(step_of(&view, "check")["status"], "rejected");
    // Still no approval can come in.
    ws.cmd(["signoff", &id, "--step", "check", "--approve"])
        .run()
        .status(5);
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);
}

#[test]
fn a_parked_gate_past_its_deadline_ends_by_its_on_timeout_policy_when_resumed() {
    let ws = Workspace::new();
    gate_runbook(&ws, "abort", ", timeout: 1s, on_timeout: abort");
    let id = ws
        .cmd(["run", "abort", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    std::thread::sleep(Duration::from_millis(1200));
    // Nobody tried to sign: the resume finds the deadline passed.
    ws.cmd(["resume", &id, "--wait"]).run().status(4);
    let evs = events(&ws, &id);
    let timed_out = of_kind(&evs, "gate_timed_out");
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].body["action"], "abort");
    let view = show(&ws, &id);
    assert_eq!(view["status"], "aborted");
    assert_eq!(step_of(&view, "check")["status"], "aborted");
}

#[test]
fn a_waiting_run_continues_when_someone_signs_from_another_process() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "waits", ", four_eyes: true");
    let waiting = spawn(act(&ws, "ann", ["run", "waits", "--wait"]));
    let id = wait_for_event(&ws, "step_started", "check");
    signoff(&ws, "bob", &id, &["--step", "check", "--approve"]).status(0);
    let (code, out, err) = waiting.finish();
    assert_eq!(code, 0, "{out}{err}");
    let evs = events(&ws, &id);
    assert!(
        of_kind(&evs, "run_paused").is_empty(),
        "a waiting run does not park"
    );
    assert_eq!(of_kind(&evs, "signoff_recorded").len(), 1);
    assert_eq!(show(&ws, &id)["status"], "succeeded");
}

#[test]
fn a_sign_off_without_a_step_finds_the_gate_a_waiting_run_waits_at() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "waits", ", four_eyes: true");
    let waiting = spawn(act(&ws, "ann", ["run", "waits", "--wait"]));
    let id = wait_for_event(&ws, "step_started", "check");
    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    let (code, out, err) = waiting.finish();
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_gates_deadline_survives_a_kill_and_a_resume() {
    let ws = Workspace::new();
    gate_runbook(&ws, "deadline", ", timeout: 2s");
    let mut run = spawn(ws.cmd(["run", "deadline", "--wait"]));
    let id = wait_for_event(&ws, "step_started", "check");
    std::thread::sleep(Duration::from_millis(1000));
    run.child().kill().expect("SIGKILL");
    run.child().wait().unwrap();
    ws.cmd(["resume", &id, "--wait"]).run().status(4);
    let evs = events(&ws, &id);
    let gate_started: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.kind == "step_started" && e.step.as_deref() == Some("check"))
        .collect();
    assert_eq!(
        gate_started.len(),
        1,
        "the gate is re-entered, not restarted"
    );
    let timed_out = of_kind(&evs, "gate_timed_out");
    assert_eq!(timed_out.len(), 1);
    let at = |e: &Ev| chrono::DateTime::parse_from_rfc3339(&e.at).unwrap();
    let waited = at(timed_out[0]) - at(gate_started[0]);
    assert!(
        waited >= chrono::Duration::milliseconds(2000)
            && waited < chrono::Duration::milliseconds(2800),
        "the gate timed out {waited:?} after it started; its deadline was 2s"
    );
    assert_eq!(show(&ws, &id)["status"], "rejected");
    assert_contiguous(&ws, &id);
}

// ----- 6. supervised training runs ------------------------------------------------------------

/// One supervised run of `drill` by tim under sue, signed by sue; returns its id.
fn supervised_drill(ws: &Workspace) -> String {
    let id = act(ws, "tim", ["run", "drill", "--supervisor", "sue"])
        .run()
        .status(3)
        .run_id();
    signoff(ws, "sue", &id, &["--approve"]).status(0);
    act(ws, "tim", ["resume", &id]).run().status(3);
    signoff(ws, "sue", &id, &["--approve"]).status(0);
    act(ws, "tim", ["resume", &id])
        .run()
        .status(3)
        .stdout_has("awaits acceptance");
    id
}

#[test]
fn a_trainee_runs_under_a_supervisor_until_qualified() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("sue", "supervisor"),
            ("tim", "trainee"),
            ("olga", "operator"),
        ],
    );
    ws.runbook(
        "drill",
        "runbook: drill\ntitle: Drill\nqualification: { supervised_runs: 2 }\nsteps:\n  - id: look\n    shell: echo looked\n  - id: approve-it\n    gate: { prompt: Go on?, role: operator }\n  - id: tick\n    manual: Tick the box\n",
    );
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr_has("2 more needed");

    // Run 1, step by step: tim's own sign-offs are refused, sue's count.
    let id = act(
        &ws,
        "tim",
        ["run", "drill", "--supervisor", "sue", "--trainee"],
    )
    .run()
    .status(3)
    .stdout_has("supervisor sue");
    let id = id.run_id();
    signoff(&ws, "tim", &id, &["--approve"]).status(5);
    signoff(&ws, "olga", &id, &["--approve"])
        .status(5)
        .stderr_has("supervisor sue");
    signoff(&ws, "sue", &id, &["--approve"]).status(0);
    act(&ws, "tim", ["resume", &id]).run().status(3);
    assert_eq!(show(&ws, &id)["paused"]["step"], "tick");
    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr_has("trainee");
    signoff(&ws, "sue", &id, &["--approve"]).status(0);
    act(&ws, "tim", ["resume", &id]).run().status(3);
    let view = show(&ws, &id);
    assert_eq!(view["status"], "awaiting-acceptance");
    assert_eq!(view["outcome"], "succeeded");
    let evs = events(&ws, &id);
    let signers: Vec<(&str, &str)> = of_kind(&evs, "signoff_recorded")
        .iter()
        .map(|e| {
            (
                e.step.as_deref().unwrap(),
                e.body["signer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(signers, [("approve-it", "sue"), ("tick", "sue")]);
    let refused: Vec<&str> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| e.body["signer"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["tim", "olga", "tim"]);
    // Only the supervisor accepts.
    signoff(&ws, "tim", &id, &["--accept"]).status(5);
    signoff(&ws, "sue", &id, &["--accept"]).status(0);
    assert_eq!(show(&ws, &id)["status"], "succeeded");
    signoff(&ws, "sue", &id, &["--reject-run"])
        .status(5)
        .stderr_has("already decided");

    let record = ws.cmd(["training", "tim", "--json"]).run().status(0).json();
    assert_eq!(record[0]["supervised_runs"], 1);
    assert_eq!(record[0]["accepted"], 1);
    assert_eq!(record[0]["qualified"], false);
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr_has("1 more needed");

    // Run 2 is rejected by the supervisor: it does not count.
    let rejected = supervised_drill(&ws);
    signoff(
        &ws,
        "sue",
        &rejected,
        &["--reject-run", "--comment", "too hasty"],
    )
    .status(0);
    assert_eq!(show(&ws, &rejected)["status"], "rejected");
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr_has("1 more needed");

    // Run 3 is accepted: tim is qualified and runs it unsupervised.
    let accepted = supervised_drill(&ws);
    signoff(&ws, "sue", &accepted, &["--accept"]).status(0);
    let record = ws.cmd(["training", "tim", "--json"]).run().status(0).json();
    assert_eq!(record.as_array().unwrap().len(), 1, "{record:#}");
    assert_eq!(record[0]["runbook"], "drill");
    assert_eq!(record[0]["supervised_runs"], 3);
    assert_eq!(record[0]["accepted"], 2);
    assert_eq!(record[0]["rejected"], 1);
    assert_eq!(record[0]["awaiting"], 0);
    assert_eq!(record[0]["qualified"], true);
    let alone = act(&ws, "tim", ["run", "drill", "--non-interactive"])
        .run()
        .status(3);
    let alone_id = alone.run_id();
    let alone_events = events(&ws, &alone_id);
    let started = &of_kind(&alone_events, "run_started")[0].body;
    assert!(started.get("supervisor").is_none(), "{started:#}");
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs.as_array().unwrap().len(), 4);
}

// ----- 7. handover ----------------------------------------------------------------------------

#[test]
fn a_handed_over_run_is_resumed_by_its_new_owner_only() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("olga", "operator"),
            ("bob", "operator"),
        ],
    );
    gate_runbook(&ws, "shift", ", role: supervisor");
    let id = park(&ws, "olga", "shift").run_id();

    act(&ws, "olga", ["handover", &id, "--to", "bob", "--note", ""])
        .run()
        .status(2);
    act(
        &ws,
        "bob",
        ["handover", &id, "--to", "bob", "--note", "mine now"],
    )
    .run()
    .status(5)
    .stderr_has("owned by olga");
    act(
        &ws,
        "olga",
        [
            "handover",
            &id,
            "--to",
            "bob",
            "--note",
            "gate waits for ann; then finish it",
        ],
    )
    .run()
    .status(0);
    let evs = events(&ws, &id);
    let handed = of_kind(&evs, "handed_over");
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body["from"], "olga");
    assert_eq!(handed[0].body["to"], "bob");
    assert_eq!(handed[0].body["by"], "olga");
    let view = show(&ws, &id);
    assert_eq!(view["owner"], "bob");
    assert_eq!(view["custody"].as_array().unwrap().len(), 1);
    assert_eq!(view["custody"][0]["from"], "olga");
    assert_eq!(view["custody"][0]["to"], "bob");
    assert_eq!(
        view["custody"][0]["note"],
        "gate waits for ann; then finish it"
    );

    signoff(&ws, "ann", &id, &["--approve"]).status(0);
    act(&ws, "olga", ["resume", &id])
        .run()
        .status(5)
        .stderr_has("owned by bob");
    assert_eq!(count(&ws, &id, "run_resumed"), 0);
    act(&ws, "bob", ["resume", &id]).run().status(0);
    let view = show(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["resumes"][0]["by"], "bob");
}

#[test]
fn four_eyes_refuses_the_new_owner_under_another_name_after_a_handover() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("cy", "supervisor"),
        ],
    );
    alias(&ws, "ann", "bob2", "supervisor", "bob");
    gate_runbook(&ws, "fe", ", role: supervisor, four_eyes: true");
    let id = park(&ws, "ann", "fe").run_id();
    act(
        &ws,
        "ann",
        ["handover", &id, "--to", "bob2", "--note", "yours"],
    )
    .run()
    .status(0);
    // bob2 now runs it; bob is the same person.
    signoff(&ws, "bob2", &id, &["--approve"])
        .status(5)
        .stderr_has("four eyes");
    signoff(&ws, "bob", &id, &["--approve"])
        .status(5)
        .stderr_has("four eyes");
    signoff(&ws, "cy", &id, &["--approve"]).status(0);
}

// ----- 8. test scripts ------------------------------------------------------------------------

#[test]
fn a_test_script_reports_each_expectation_and_fails_on_a_miss() {
    let ws = Workspace::new();
    ws.runbook(
        "expectations",
        r#"runbook: expectations
title: Expectations
kind: test
steps:
  - id: meets
    rhai: set("x", 42);
    expect: outputs.x == 42
  - id: misses
    rhai: set("x", 41);
    expect: outputs.x == 42
"#,
    );
    let out = ws
        .cmd(["run", "expectations"])
        .run()
        .status(1)
        .stdout_has("expectations: 1 of 2 passed");
    let id = out.run_id();
    let evs = events(&ws, &id);
    let checked: Vec<(&str, bool)> = of_kind(&evs, "expectation_checked")
        .iter()
        .map(|e| {
            (
                e.step.as_deref().unwrap(),
                e.body["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(checked, [("meets", true), ("misses", false)]);
    let view = show(&ws, &id);
    assert_eq!(view["status"], "failed");
    assert_eq!(step_of(&view, "meets")["status"], "succeeded");
    assert_eq!(step_of(&view, "misses")["status"], "failed");
}

// ----- 9. a changed runbook -------------------------------------------------------------------

#[test]
fn a_run_does_not_resume_or_take_sign_offs_after_its_runbook_changed() {
    let ws = Workspace::new();
    gate_runbook(&ws, "edited", "");
    let id = ws
        .cmd(["run", "edited", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    let path = ws.path().join("runbooks/edited.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("echo after", "echo changed")).unwrap();
    let before = events(&ws, &id).len();
    ws.cmd(["signoff", &id, "--approve"])
        .run()
        .status(5)
        .stderr_has("changed");
    ws.cmd(["resume", &id])
        .run()
        .status(5)
        .stderr_has("changed");
    assert_eq!(events(&ws, &id).len(), before);

    // Put back byte for byte, it is the same runbook again.
    std::fs::write(&path, text).unwrap();
    ws.cmd(["signoff", &id, "--approve"]).run().status(0);
    ws.cmd(["resume", &id]).run().status(0);
}
