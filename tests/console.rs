//! At the terminal: Ctrl-C at a prompt, SIGTERM during the last step, who is offered as the
//! signer under four eyes, evidence kept after a refusal, and gates that cannot be enforced
//! without registered operators. Runs drive the real binary on a terminal (script(1)).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::people::add_operator;
use crate::support::process::spawn_on_a_terminal;
use crate::support::{journal_events, Workspace};

/// Types `text` into the terminal after `pause`.
fn type_in(child: &mut std::process::Child, pause: Duration, text: &str) {
    std::thread::sleep(pause);
    // The run may have ended already (a Ctrl-C stops it): then nothing more is typed.
    let stdin = child.stdin.as_mut().unwrap();
    let _ = stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush());
}

fn finish(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn body(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("an event body is JSON")
}

#[test]
fn ctrl_c_at_a_manual_step_prompt_stops_the_run_and_takes_no_further_answer() {
    let ws = Workspace::new();
    ws.runbook(
        "checklist",
        r#"
runbook: checklist
title: A checklist
steps:
  - id: look
    manual: Look at the dashboard
  - id: after
    shell: touch after
"#,
    );
    let mut child = spawn_on_a_terminal(&ws, "run checklist", &[]);
    type_in(&mut child, Duration::from_millis(1500), "\x03");
    type_in(&mut child, Duration::from_millis(700), "d\n");
    let (code, screen) = finish(child);
    assert_eq!(code, Some(4), "{screen}");
    assert!(
        screen.contains("stopping after this step (Ctrl-C again to stop it now)"),
        "{screen}"
    );
    let events = journal_events(&ws);
    assert!(
        !events.iter().any(|e| e.kind == "signoff_recorded"),
        "the answer typed after Ctrl-C was taken"
    );
    assert!(!ws.path().join("after").exists());
}

#[test]
fn sigterm_during_the_last_step_is_journaled() {
    let ws = Workspace::new();
    ws.runbook(
        "last",
        r#"
runbook: last
title: One slow step
steps:
  - id: slow
    shell: sleep 1.5
"#,
    );
    let child = ws
        .cmd(["run", "last", "--no-progress"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let step_started = || {
        rusqlite::Connection::open(ws.db())
            .and_then(|db| {
                db.query_row(
                    "SELECT COUNT(*) FROM events WHERE kind = 'step_started'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n > 0)
    };
    while !step_started() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to the child process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("a stop was requested during the last step: every step had run, nothing was left to stop"),
        "{stdout}"
    );
    let kinds: Vec<String> = journal_events(&ws).into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"abort_requested".to_string()), "{kinds:?}");
}

#[test]
fn under_four_eyes_the_runner_is_not_offered_as_the_signer() {
    let ws = Workspace::new();
    add_operator(&ws, "ann", "supervisor", None);
    add_operator(&ws, "bob", "operator", Some("ann"));
    ws.runbook(
        "paired",
        r#"
runbook: paired
title: Needs a second person
steps:
  - id: approve
    gate: { prompt: Go ahead, four_eyes: true }
"#,
    );
    let mut child = spawn_on_a_terminal(
        &ws,
        "run paired --as ann",
        &[("OPSBOOK_PASSPHRASE", "ann-passphrase")],
    );
    type_in(&mut child, Duration::from_millis(1200), "a\n");
    type_in(&mut child, Duration::from_millis(300), "\n");
    type_in(&mut child, Duration::from_millis(300), "bob\n");
    type_in(&mut child, Duration::from_millis(500), "bob-passphrase\n");
    let (code, screen) = finish(child);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("signing as (four eyes: another operator than ann): "),
        "{screen}"
    );
    assert!(!screen.contains("Enter for ann"), "{screen}");
    let signed: Vec<_> = journal_events(&ws)
        .into_iter()
        .filter(|e| e.kind == "signoff_recorded")
        .collect();
    assert_eq!(signed.len(), 1);
    assert_eq!(body(&signed[0].body)["signer"], "bob");
}

#[test]
fn evidence_given_before_a_refusal_is_offered_again() {
    let ws = Workspace::new();
    add_operator(&ws, "ann", "supervisor", None);
    add_operator(&ws, "bob", "operator", Some("ann"));
    ws.runbook(
        "evidenced",
        r#"
runbook: evidenced
title: A supervisor signs with evidence
steps:
  - id: approve
    gate: { prompt: Backups restored?, role: supervisor, evidence: required }
"#,
    );
    let mut child = spawn_on_a_terminal(
        &ws,
        "run evidenced --as bob",
        &[("OPSBOOK_PASSPHRASE", "bob-passphrase")],
    );
    // bob signs himself: refused (role). Then Enter keeps the evidence, and ann signs.
    type_in(&mut child, Duration::from_millis(1200), "a\n");
    type_in(
        &mut child,
        Duration::from_millis(300),
        "restore test of 02:00 passed\n",
    );
    type_in(&mut child, Duration::from_millis(300), "\n");
    type_in(&mut child, Duration::from_millis(600), "a\n");
    type_in(&mut child, Duration::from_millis(300), "\n");
    type_in(&mut child, Duration::from_millis(300), "ann\n");
    type_in(&mut child, Duration::from_millis(500), "ann-passphrase\n");
    let (code, screen) = finish(child);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("evidence (required, Enter to keep \"restore test of 02:00 passed\"): "),
        "{screen}"
    );
    let signed: Vec<_> = journal_events(&ws)
        .into_iter()
        .filter(|e| e.kind == "signoff_recorded")
        .collect();
    assert_eq!(signed.len(), 1);
    assert_eq!(body(&signed[0].body)["signer"], "ann");
    assert_eq!(
        body(&signed[0].body)["comment"],
        "restore test of 02:00 passed"
    );
}

#[test]
fn gates_that_need_identities_are_flagged_when_no_operators_are_registered() {
    let ws = Workspace::new();
    ws.runbook(
        "strict",
        r#"
runbook: strict
title: Supervisor gate
steps:
  - id: approve
    gate: { prompt: Go, role: supervisor }
"#,
    );
    let warning = format!(
        "warning: runbook `strict`: no operators are registered in {}, so its gates (approve) cannot be enforced: anyone signs as the unverified OS user; register operators with `opsbook operator add`",
        ws.db().display()
    );
    ws.cmd(["check"]).run().status(0).stderr_has(&warning);
    ws.cmd(["run", "strict", "--non-interactive"])
        .run()
        .status(3)
        .stderr_has(&warning);
}
