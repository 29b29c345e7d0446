//! When the environment fails — the journal cannot be opened or created — opsbook exits 6 and
//! names the journal and what to do; nothing runs.

use crate::support::Workspace;

#[test]
fn a_journal_whose_folder_cannot_be_created_exits_6_before_anything_runs() {
    let ws = Workspace::new();
    ws.file(
        "not-a-folder",
        "a file where the journal's folder should be\n",
    );
    ws.runbook(
        "touch",
        r#"
runbook: touch
title: Leaves a mark
steps:
  - id: mark
    shell: touch ran
"#,
    );
    let db = ws.path().join("not-a-folder/opsbook.db");
    let out = ws
        .cmd(["run", "touch"])
        .env("OPSBOOK_DB", db.to_str().unwrap())
        .run()
        .status(6);
    assert_eq!(
        out.stderr,
        format!(
            "error: journal {}: cannot create its folder {}: File exists (os error 17)\n",
            db.display(),
            ws.path().join("not-a-folder").display()
        )
    );
    assert!(
        !ws.path().join("ran").exists(),
        "the step ran without a journal"
    );
}

#[test]
fn a_journal_that_is_a_folder_exits_6_and_says_what_to_do() {
    let ws = Workspace::new();
    let db = ws.path().join("a-folder");
    std::fs::create_dir(&db).unwrap();
    ws.runbook(
        "noop",
        r#"
runbook: noop
title: Does nothing
steps:
  - id: nothing
    shell: "true"
"#,
    );
    let out = ws
        .cmd(["run", "noop"])
        .env("OPSBOOK_DB", db.to_str().unwrap())
        .run()
        .status(6);
    assert!(
        out.stderr
            .starts_with(&format!("error: journal {}: ", db.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(
            "nothing acknowledged was lost: check the file's permissions and free space, then run the command again\n"
        ),
        "{}",
        out.stderr
    );
}
