//! The executor driven in-process, with a scripted console instead of a terminal: the
//! boundary a daemon and tests use.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;
use crate::exec::console::{
    Attendance, AttendedAnswer, AttendedDecision, AttendedKind, Console, Signer,
};
use crate::exec::progress::SilentProgress;
use crate::journal::event::SignoffDecision;
use crate::runbook::analyze::analyze_file;
use crate::runbook::params::SecretSource;

/// Answers questions from a list, and keeps what it was asked.
struct ScriptedConsole {
    answers: Mutex<VecDeque<AttendedAnswer>>,
    asked: Mutex<Vec<Attendance>>,
}

impl ScriptedConsole {
    fn new(answers: Vec<AttendedAnswer>) -> Self {
        Self {
            answers: Mutex::new(answers.into()),
            asked: Mutex::new(Vec::new()),
        }
    }
}

impl Console for ScriptedConsole {
    fn attend(&self, question: &Attendance) -> Option<AttendedAnswer> {
        self.asked.lock().unwrap().push(question.clone());
        self.answers.lock().unwrap().pop_front()
    }

    fn interrupted(&self, _: &str, _: &str) -> Option<InterruptedChoice> {
        None
    }
}

struct NoSecrets;

impl SecretSource for NoSecrets {
    fn ask(&self, _: &str, _: Option<&str>) -> Option<String> {
        None
    }
}

/// Loads `yaml` as a runbook in a fresh folder and runs it with `console`.
fn run_with(
    yaml: &str,
    console: Option<Arc<dyn Console>>,
) -> (tempfile::TempDir, RunResult, RunView) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drill.yaml");
    std::fs::write(&path, yaml).unwrap();
    let engine = Arc::new(crate::script::build_engine(dir.path()));
    let analysis = analyze_file(&path, dir.path(), &engine);
    assert!(
        !analysis.diagnostics.has_errors(),
        "{}",
        analysis.diagnostics
    );
    let plan = analysis.plan.unwrap();
    let params = Params::resolve(&plan.runbook.params, &[], &|_| None, &NoSecrets).unwrap();
    let db = dir.path().join("journal.db");
    let journal = Journal::open(&db).unwrap();
    let request = RunRequest {
        plan,
        engine,
        params,
        operator: Operator::os_user(),
        dry_run: false,
        console,
        wait: false,
        supervision: None,
        change: None,
        db: db.clone(),
        resume: None,
        window: None,
        slot: None,
        park_on_stop: false,
        freeze_break: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime
        .block_on(run(
            request,
            journal,
            Arc::new(SilentProgress),
            AbortSignal::default(),
        ))
        .unwrap();
    let journal = Journal::open(&db).unwrap();
    let view = crate::journal::view::load_run(&journal, &result.run_id).unwrap();
    (dir, result, view)
}

const DRILL: &str = r#"
runbook: drill
title: A gate and a manual step
steps:
  - id: check
    rhai: set("ok", true);
  - id: approve
    gate:
      prompt: Approve the change
  - id: tick
    manual: Tell the service channel
"#;

#[test]
fn a_scripted_console_approves_a_gate_and_ticks_a_manual_step() {
    let console = Arc::new(ScriptedConsole::new(vec![
        AttendedAnswer {
            decision: AttendedDecision::Approve,
            comment: Some("backup checked".into()),
            signer: Signer::Runner,
        },
        AttendedAnswer {
            decision: AttendedDecision::Approve,
            comment: None,
            signer: Signer::Runner,
        },
    ]));
    let (_dir, result, view) = run_with(DRILL, Some(console.clone()));
    assert_eq!(result.status, RunStatus::Succeeded);
    assert!(result.parked.is_empty());
    let asked = console.asked.lock().unwrap();
    let kinds: Vec<AttendedKind> = asked.iter().map(|q| q.kind).collect();
    assert_eq!(kinds, [AttendedKind::Gate, AttendedKind::Manual]);
    assert!(
        asked[0].heading.contains("Approve the change"),
        "{}",
        asked[0].heading
    );
    let gate = view.step("approve").unwrap();
    assert_eq!(gate.status, Some(StepStatus::Succeeded));
    assert_eq!(gate.signoffs.len(), 1);
    assert_eq!(gate.signoffs[0].decision, SignoffDecision::Approved);
    assert_eq!(gate.signoffs[0].comment.as_deref(), Some("backup checked"));
    let tick = view.step("tick").unwrap();
    assert_eq!(tick.status, Some(StepStatus::Succeeded));
    assert_eq!(view.status, RunStatus::Succeeded);
}

#[test]
fn without_a_console_the_run_parks_at_the_gate() {
    let (_dir, result, view) = run_with(DRILL, None);
    assert_eq!(result.status, RunStatus::AwaitingSignoff);
    assert_eq!(result.parked.len(), 1);
    assert_eq!(result.parked[0].step, "approve");
    assert_eq!(result.parked[0].binding.len(), 64);
    assert_eq!(
        view.paused.as_ref().map(|p| p.step.as_str()),
        Some("approve")
    );
}

#[test]
fn a_console_that_defers_parks_the_run() {
    let console = Arc::new(ScriptedConsole::new(vec![]));
    let (_dir, result, _view) = run_with(DRILL, Some(console.clone()));
    assert_eq!(result.status, RunStatus::AwaitingSignoff);
    assert_eq!(console.asked.lock().unwrap().len(), 1);
}

#[test]
fn conditions_and_expectations_may_call_sh() {
    let yaml = r#"
runbook: drill
title: sh() in when and expect
kind: test
steps:
  - id: guarded
    when: 'sh("true").code == 0'
    rhai: set("ran", true);
    expect: 'sh("test 1 -eq 1").code == 0 && outputs.ran'
  - id: never
    when: 'sh("false").code == 0'
    rhai: set("ran", true);
"#;
    let (_dir, result, view) = run_with(yaml, None);
    assert_eq!(result.status, RunStatus::Succeeded, "{view:#?}");
    assert_eq!(
        view.step("guarded").unwrap().status,
        Some(StepStatus::Succeeded)
    );
    assert!(
        view.step("guarded")
            .unwrap()
            .expectation
            .as_ref()
            .unwrap()
            .passed
    );
    assert_eq!(
        view.step("never").unwrap().status,
        Some(StepStatus::Skipped)
    );
}
