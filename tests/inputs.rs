//! Inputs that used to slip through: a mistyped journal path, a run id that is a pattern, a
//! report path that cannot be written, a byte-order mark, a zero timeout, a runaway retry, a
//! runbook document in a run-report format, an empty change id.

use crate::support::Workspace;

const ONE_STEP: &str = r#"
runbook: one
title: One step
steps:
  - id: mark
    shell: touch marked
"#;

#[test]
fn a_mistyped_journal_path_is_refused_not_created() {
    let ws = Workspace::new();
    let typo = ws.path().join("opsbok.db");
    for args in [vec!["runs"], vec!["audit", "verify"], vec!["show", "01ABC"]] {
        let out = ws
            .cmd(&args)
            .env("OPSBOOK_DB", typo.to_str().unwrap())
            .run()
            .status(2);
        assert_eq!(
            out.stderr,
            format!(
                "error: no journal at {}: check --db or OPSBOOK_DB (the first run of a runbook creates the journal)\n",
                typo.display()
            ),
            "{args:?}"
        );
        assert!(!typo.exists(), "{args:?} created the journal");
    }
}

#[test]
fn reading_commands_leave_the_journal_file_as_it_was() {
    let ws = Workspace::new();
    ws.runbook("one", ONE_STEP);
    let id = ws.cmd(["run", "one"]).run().status(0).run_id();
    ws.cmd(["runs"]).run().status(0);
    let before = std::fs::read(ws.db()).unwrap();
    ws.cmd(["audit", "verify"]).run().status(0);
    ws.cmd(["show", &id]).run().status(0);
    ws.cmd(["report", &id, "--format", "json"]).run().status(0);
    assert!(
        std::fs::read(ws.db()).unwrap() == before,
        "a reading command wrote the journal"
    );
}

#[test]
fn a_run_id_prefix_is_not_a_pattern() {
    let ws = Workspace::new();
    ws.runbook("one", ONE_STEP);
    ws.cmd(["run", "one"]).run().status(0);
    for pattern in ["%", "_", "0%"] {
        ws.cmd(["show", pattern])
            .run()
            .status(2)
            .stderr_has(&format!("no run with id `{pattern}`"));
    }
}

#[test]
fn a_report_path_that_cannot_be_written_fails_before_step_1() {
    let ws = Workspace::new();
    ws.runbook("one", ONE_STEP);
    ws.file("not-a-folder", "a file where a folder should be\n");
    let out = ws
        .cmd(["run", "one", "--report", "not-a-folder/report.html"])
        .run()
        .status(2);
    assert!(
        out.stderr
            .starts_with("error: not-a-folder/report.html: the report cannot be written there: "),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("marked").exists(), "the run started");
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_key() {
    let ws = Workspace::new();
    ws.runbook("one", &format!("\u{feff}{}", ONE_STEP.trim_start()));
    ws.cmd(["check"]).run().status(0);
    ws.cmd(["run", "one"]).run().status(0);
}

#[test]
fn a_zero_timeout_and_a_runaway_retry_are_refused_by_check() {
    let ws = Workspace::new();
    ws.runbook(
        "loose",
        r#"runbook: loose
title: Loose limits
steps:
  - id: forever
    shell: "true"
    timeout: 0s
    retry: { attempts: 1000000 }
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    let file = ws.path().join("runbooks/loose.yaml");
    for expected in [
        format!("{}:6:14: error: `timeout` is `0s`; it must be longer than nothing (leave `timeout` out for the default)", file.display()),
        format!("{}:7:24: error: `attempts` is 1000000; it may be at most 100", file.display()),
    ] {
        assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
    }
}

#[test]
fn runbook_documents_are_not_written_as_junit_or_json() {
    let ws = Workspace::new();
    ws.runbook("one", ONE_STEP);
    for format in ["junit", "json"] {
        ws.cmd(["docs", "one", "--format", format])
            .run()
            .status(2)
            .stderr_has("runbook documents are md or html");
    }
}

#[test]
fn an_empty_change_id_does_not_satisfy_change_control() {
    let ws = Workspace::new();
    ws.runbook(
        "guarded",
        r#"
runbook: guarded
title: Changes production
change: required
steps:
  - id: mark
    shell: touch marked
"#,
    );
    for change in ["", "  "] {
        ws.cmd(["run", "guarded", "--change", change])
            .run()
            .status(5)
            .stderr_has("needs an approved change request");
    }
    assert!(!ws.path().join("marked").exists());
}

#[test]
fn files_a_user_points_at_must_be_regular_files_under_a_cap() {
    let ws = Workspace::new();
    ws.runbook("one", ONE_STEP);
    let id = ws.cmd(["run", "one"]).run().status(0).run_id();
    ws.cmd(["report", &id, "--format", "html", "--template", "/dev/zero"])
        .run()
        .status(2)
        .stderr_has("error: /dev/zero: the template is not a regular file");
    ws.cmd(["--config", "/dev/zero", "runs"])
        .run()
        .status(2)
        .stderr_has("error: /dev/zero: the config file is not a regular file");
    ws.cmd([
        "operator",
        "add",
        "ann",
        "--new-passphrase-file",
        "/dev/zero",
    ])
    .run()
    .status(2)
    .stderr_has("error: /dev/zero: the passphrase file is not a regular file");
    ws.cmd(["operator", "add", "ann"])
        .env("OPSBOOK_NEW_PASSPHRASE", "ann-passphrase")
        .run()
        .status(0);
    ws.cmd([
        "signoff",
        &id,
        "--approve",
        "--as",
        "ann",
        "--passphrase-file",
        "/dev/zero",
    ])
    .run()
    .status(2)
    .stderr_has("error: /dev/zero: the passphrase file is not a regular file");
    let big = ws.path().join("big.tera");
    std::fs::write(&big, vec![b'x'; 2 * 1024 * 1024]).unwrap();
    ws.cmd([
        "report",
        &id,
        "--format",
        "html",
        "--template",
        big.to_str().unwrap(),
    ])
    .run()
    .status(2)
    .stderr_has("the template is 2097152 bytes, over the limit of 1048576 bytes");
}
