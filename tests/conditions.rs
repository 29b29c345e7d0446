//! `when:` and `expect:` expressions that run commands through `sh()`: evaluated on the same
//! path as scripts, so they work from the command line as they do in a step.

use crate::support::Workspace;

#[test]
fn when_calling_sh_decides_whether_a_step_runs() {
    let ws = Workspace::new();
    ws.runbook(
        "guarded",
        r#"
runbook: guarded
title: Steps guarded by commands
steps:
  - id: runs
    when: 'sh("true").code == 0'
    rhai: set("ran", true);
  - id: skipped
    when: 'sh("false").code == 0'
    rhai: set("ran", true);
"#,
    );
    let out = ws.cmd(["run", "guarded"]).run().status(0);
    let id = out.run_id();
    let show = ws.cmd(["show", &id]).run().status(0);
    assert!(
        show.stdout.contains("✓ runs (rhai)  succeeded"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("- skipped (rhai)  skipped  skipped\n    condition `when: sh(\"false\").code == 0` is false"),
        "{}",
        show.stdout
    );
}

#[test]
fn expect_calling_sh_judges_a_test_step() {
    let ws = Workspace::new();
    ws.runbook(
        "probe",
        r#"
runbook: probe
title: A test script whose expectations run commands
kind: test
steps:
  - id: marker
    shell: echo ready > marker
    expect: 'sh("grep -q ready marker").code == 0'
  - id: missing
    shell: "true"
    expect: 'sh("test -e no-such-file").code == 0'
    on_failure: continue
"#,
    );
    let out = ws.cmd(["run", "probe"]).run().status(1);
    let id = out.run_id();
    let report = ws
        .cmd(["report", &id, "--format", "json"])
        .run()
        .status(0)
        .json();
    let steps = report["steps"].as_array().unwrap();
    let passed: Vec<(String, bool)> = steps
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["expectation"]["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        passed,
        [("marker".to_string(), true), ("missing".to_string(), false)]
    );
}
