//! Gates with a `timeout`: a gate never approves by timing out; it ends by its `on_timeout`
//! policy (reject, or abort) whether the run waits, is parked, or was killed and resumed.

use std::time::{Duration, Instant};

use crate::support::journal::{
    assert_contiguous, count, events, of_kind, one, wait_for_event, Event,
};
use crate::support::people::gate_runbook;
use crate::support::{show_json, step_view, Workspace};

#[test]
fn a_gate_that_times_out_while_waiting_ends_rejected() {
    let ws = Workspace::new();
    gate_runbook(&ws, "late", ", timeout: 2s");
    let started = Instant::now();
    let out = ws
        .cmd(["run", "late", "--wait"])
        .run()
        .status(4)
        .stdout(
            "
            run [RUN] late v1
            Gate late — 3 step(s), operator [USER] (unverified)
            ✓ prep                     succeeded [DURATION]
            ! check                    rejected   — timed out waiting for a sign-off (reject); a gate never approves by timing out
            run [RUN] rejected in [DURATION]: 1 succeeded, 0 failed, 1 rejected. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "rejected");
    assert_eq!(step_view(&view, "check")["status"], "rejected");
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
    let started = one(&events(&ws, &id), "step_started", "check").at();
    let deadline = started + chrono::Duration::milliseconds(2100);
    let left = (deadline.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    std::thread::sleep(left);

    ws.cmd(["signoff", &id, "--approve"])
        .run()
        .status(5)
        .stdout("")
        .stderr("error: step `check` of run [RUN] timed out waiting for a sign-off and is rejected; a gate never approves by timing out (resume the run to end it)\n");
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);
    ws.cmd(["resume", &id]).run().status(4).stdout(
        "
        run [RUN] late v1 (resumed)
        Gate late — resumed by [USER]
        ✓ prep                     succeeded  — done before the resume
        ! check                    rejected   — timed out waiting for a sign-off (reject); a gate never approves by timing out
        run [RUN] rejected in [DURATION]: 1 succeeded, 0 failed, 1 rejected. Details: opsbook show [RUN]
        ",
    );
    let evs = events(&ws, &id);
    assert_eq!(of_kind(&evs, "gate_timed_out").len(), 1);
    assert!(of_kind(&evs, "signoff_recorded").is_empty());
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "rejected");
    assert_eq!(step_view(&view, "check")["status"], "rejected");
    // Still no approval can come in.
    ws.cmd(["signoff", &id, "--step", "check", "--approve"])
        .run()
        .status(5)
        .stderr("error: step `check` of run [RUN]: already decided: rejected; nothing changed\n");
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
    ws.cmd(["resume", &id, "--wait"])
        .run()
        .status(4)
        .stdout(
            "
            run [RUN] abort v1 (resumed)
            Gate abort — resumed by [USER]
            ✓ prep                     succeeded  — done before the resume
            ! check                    aborted    — timed out waiting for a sign-off (abort); a gate never approves by timing out
            run [RUN] aborted in [DURATION]: 1 succeeded, 0 failed, 1 aborted. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
    let evs = events(&ws, &id);
    let timed_out = of_kind(&evs, "gate_timed_out");
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].body["action"], "abort");
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "aborted");
    assert_eq!(step_view(&view, "check")["status"], "aborted");
}

#[test]
fn a_gates_deadline_survives_a_kill_and_a_resume() {
    let ws = Workspace::new();
    gate_runbook(&ws, "deadline", ", timeout: 2s");
    let mut run = ws.cmd(["run", "deadline", "--wait"]).spawn();
    let id = wait_for_event(&ws, "step_started", "check");
    std::thread::sleep(Duration::from_millis(1000));
    run.kill();
    ws.cmd(["resume", &id, "--wait"]).run().status(4);
    let evs = events(&ws, &id);
    let gate_started: Vec<&Event> = evs
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
    let waited = timed_out[0].at() - gate_started[0].at();
    assert!(
        waited >= chrono::Duration::milliseconds(2000)
            && waited < chrono::Duration::milliseconds(2800),
        "the gate timed out {waited:?} after it started; its deadline was 2s"
    );
    assert_eq!(show_json(&ws, &id)["status"], "rejected");
    assert_contiguous(&ws, &id);
}
