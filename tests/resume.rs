//! Resuming a run: after `kill -9` (an interrupted step is rerun when it is idempotent, and
//! waits for a person's decision when it is not), one driver at a time (the lease), a resume
//! that loses a race, and a runbook that changed under a parked run.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::journal::{assert_contiguous, count, events, of_kind, wait_for_event};
use crate::support::people::gate_runbook;
use crate::support::{show_json, step_view, Proc, Workspace};

/// How many lines `file` in the workspace has (0 when it does not exist).
fn lines_in(ws: &Workspace, file: &str) -> usize {
    std::fs::read_to_string(ws.path().join(file))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `first` and `last` count their runs; `slow` counts its runs and then waits until the file
/// `go` exists (at most ~30 s).
fn crash_runbook(ws: &Workspace, idempotent: bool) {
    ws.runbook(
        "crash",
        &format!(
            r#"
            runbook: crash
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
    let mut child = ws.cmd(["run", "crash", "--non-interactive"]).spawn();
    let id = wait_for_event(ws, "step_started", "slow");
    // The step's side effect happens right after it starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines_in(ws, "slow.txt") == 0 {
        assert!(Instant::now() < deadline, "slow never started its work");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill();
    let evs = events(ws, &id);
    assert!(of_kind(&evs, "run_finished").is_empty());
    assert_eq!(evs.last().unwrap().kind, "step_started");
    id
}

// ----- kill -9, then resume ------------------------------------------------------------------

#[test]
fn an_idempotent_interrupted_step_is_rerun_by_resume_and_finished_steps_are_not() {
    let ws = Workspace::new();
    crash_runbook(&ws, true);
    let id = run_and_kill(&ws);
    assert_eq!(show_json(&ws, &id)["status"], "running");
    ws.file("go", "");
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(0)
        .stdout(
            "
            run [RUN] crash v1 (resumed)
            Crash and resume — resumed by [USER]
            ✓ first                    succeeded  — done before the resume
            ✓ slow                     succeeded [DURATION]
            ✓ last                     succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
    assert_eq!(show_json(&ws, &id)["status"], "succeeded");
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
        .stdout("")
        .stderr("error: step `slow` of run [RUN] was interrupted (started, never finished) and is not idempotent: its work may be half done. Check it, then pass --rerun-interrupted, or --skip-interrupted --comment TEXT\n");
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
    .status(0)
    .stdout(
        "
        run [RUN] crash v1 (resumed)
        Crash and resume — resumed by [USER]
        ✓ first                    succeeded  — done before the resume
        ✓ slow                     succeeded  — interrupted; marked done by [USER]: checked by hand: the work was done
        ✓ last                     succeeded [DURATION]
        run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
        ",
    );
    assert_eq!(lines_in(&ws, "first.txt"), 1);
    assert_eq!(lines_in(&ws, "slow.txt"), 1, "slow ran again");
    assert_eq!(lines_in(&ws, "last.txt"), 1);
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    let slow = step_view(&view, "slow");
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

// ----- one driver at a time --------------------------------------------------------------------

#[test]
fn of_two_concurrent_resumes_one_drives_the_run_and_the_other_is_refused() {
    let ws = Workspace::new();
    crash_runbook(&ws, true);
    let id = run_and_kill(&ws);
    // Without `go`, the resumed `slow` keeps running until the test says so.
    let mut one = ws.cmd(["resume", &id, "--non-interactive"]).spawn();
    let mut two = ws.cmd(["resume", &id, "--non-interactive"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (loser, mut winner) = loop {
        if one.has_exited() {
            break (one, two);
        }
        if two.has_exited() {
            break (two, one);
        }
        assert!(Instant::now() < deadline, "neither resume stopped");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The one still running holds the lease.
    let driver = winner.child().id();
    loser.finish().status(5).stdout("").stderr(&format!(
        "error: refused: run [RUN] is being driven by process {driver} on [HOST] (lease renewed [TIME]); wait for it, or stop that process\n"
    ));
    ws.file("go", "");
    winner.finish().status(0);
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
        "
        runbook: twice
        title: Twice
        steps:
          - id: ok
            gate: { prompt: Go on? }
          - id: after
            shell: echo x >> after.txt
        ",
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
                .env_remove("OPSBOOK_CONFIG");
            for (k, v) in plain.get_envs() {
                match v {
                    Some(v) => command.env(k, v),
                    None => command.env_remove(k),
                };
            }
            let args = vec!["(strace) resume".to_string(), id.clone()];
            let proc = Proc::start(&mut command, args, ws.path().to_path_buf());
            std::thread::sleep(Duration::from_millis(300));
            proc
        } else {
            late.spawn()
        };
        let early = ws.cmd(["resume", &id]).spawn().finish();
        let late = late.finish();
        assert!(
            lines_in(&ws, "after.txt") <= 1,
            "trial {trial}: step `after` ran twice\nearly resume: {early:#?}\nlate resume: {late:#?}"
        );
        assert_eq!(count(&ws, &id, "run_finished"), 1, "trial {trial}");
        assert_eq!(
            [early.code, late.code].iter().filter(|c| **c == 0).count(),
            1,
            "trial {trial}: exactly one resume drives the run\nearly resume: {early:#?}\nlate resume: {late:#?}"
        );
    }
}

// ----- a changed runbook -------------------------------------------------------------------------

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
        .stdout("")
        .stderr("error: the runbook [ROOT]/runbooks/edited.yaml changed since run [RUN] started; a sign-off applies only to the exact text that ran\n");
    ws.cmd(["resume", &id])
        .run()
        .status(5)
        .stdout("")
        .stderr("error: refused: the runbook [ROOT]/runbooks/edited.yaml changed since run [RUN] started (sha256 4fbe29d4b295 then, 1ec370abd403 now); a run continues only with the text it started with — start a new run\n");
    assert_eq!(events(&ws, &id).len(), before);

    // Put back byte for byte, it is the same runbook again.
    std::fs::write(&path, text).unwrap();
    ws.cmd(["signoff", &id, "--approve"]).run().status(0);
    ws.cmd(["resume", &id]).run().status(0);
}
