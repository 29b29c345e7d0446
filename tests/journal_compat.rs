//! Journals written before engine/ was grouped by subsystem still verify and read back the same:
//! `tests/fixtures/journal-before-layout/opsbook.db` was written by a binary built from 369773e
//! (every kind of event the command line reaches), and `expected/` holds what that binary printed
//! for it. `make.sh` in that folder regenerates both from a given binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::BIN;

// ----- helpers -------------------------------------------------------------------------------

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-before-layout")
}

fn expected_text(name: &str) -> String {
    let path = fixture().join("expected").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected_json(name: &str) -> Value {
    serde_json::from_str(&expected_text(name))
        .unwrap_or_else(|e| panic!("expected/{name} is not JSON: {e}"))
}

/// The exit code the old binary gave for each expected output (`expected/exit-codes.txt`).
fn expected_code(name: &str) -> i32 {
    let codes: BTreeMap<String, i32> = expected_text("exit-codes.txt")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(file, code)| (file.to_string(), code.trim().parse().unwrap()))
        .collect();
    *codes
        .get(name)
        .unwrap_or_else(|| panic!("expected/exit-codes.txt has no line for {name}"))
}

/// The ids of the fixture's runs, as the old binary listed them.
fn run_ids() -> Vec<String> {
    let runs = expected_json("runs.json");
    let ids: Vec<String> = runs
        .as_array()
        .expect("runs.json is a list")
        .iter()
        .map(|r| r["id"].as_str().expect("a run id").to_string())
        .collect();
    assert!(ids.len() >= 10, "the fixture has too few runs: {ids:?}");
    ids
}

/// A copy of the fixture journal and its runbooks in a temporary folder, so that nothing the
/// binary does (a -wal file, a migration) touches the fixture.
struct OldJournal {
    dir: tempfile::TempDir,
}

impl OldJournal {
    fn copy() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::copy(fixture().join("opsbook.db"), dir.path().join("opsbook.db"))
            .expect("the fixture journal copies");
        let runbooks = dir.path().join("runbooks");
        std::fs::create_dir(&runbooks).unwrap();
        for entry in std::fs::read_dir(fixture().join("runbooks")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), runbooks.join(entry.file_name())).unwrap();
        }
        Self { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("opsbook.db")
    }

    /// Runs the built binary on the copy; returns its exit code and stdout.
    fn opsbook(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("OPSBOOK_CONFIG")
            .env_remove("OPSBOOK_PASSPHRASE")
            .env("NO_COLOR", "1")
            .env("OPSBOOK_DB", self.db())
            .env("OPSBOOK_RUNBOOKS", self.dir.path().join("runbooks"))
            .stdin(Stdio::null())
            .output()
            .expect("opsbook starts");
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            eprintln!(
                "opsbook {} exited {code}; stderr:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (code, stdout)
    }

    /// Runs `args` and parses stdout as JSON, checking the exit code against the old binary's.
    #[track_caller]
    fn json(&self, args: &[&str], expected_file: &str) -> Value {
        let (code, stdout) = self.opsbook(args);
        assert_eq!(
            code,
            expected_code(expected_file),
            "opsbook {}: exit code",
            args.join(" ")
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("opsbook {}: not JSON ({e}):\n{stdout}", args.join(" ")))
    }
}

/// The first place where two JSON values differ, as a path (`$.steps[2].status`), for a readable
/// failure.
fn first_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys()) {
                let here = format!("{path}.{key}");
                match (e.get(key), a.get(key)) {
                    (Some(ev), Some(av)) => {
                        if let Some(d) = first_difference(ev, av, &here) {
                            return Some(d);
                        }
                    }
                    (Some(ev), None) => return Some(format!("{here}: missing (was {ev})")),
                    (None, Some(av)) => return Some(format!("{here}: new field ({av})")),
                    (None, None) => unreachable!(),
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                if let Some(d) = first_difference(ev, av, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (e.len() != a.len()).then(|| format!("{path}: {} items, was {}", a.len(), e.len()))
        }
        _ => (expected != actual).then(|| format!("{path}: {actual}, was {expected}")),
    }
}

#[track_caller]
fn assert_same_json(what: &str, expected: &Value, actual: &Value) {
    if let Some(difference) = first_difference(expected, actual, "$") {
        panic!(
            "{what} differs from what the binary before the layout change printed\n\
             first difference: {difference}\n--- actual\n{actual:#}"
        );
    }
    assert_eq!(expected, actual, "{what}");
}

/// The one field of a JSON report that differs between invocations: when it was generated.
#[track_caller]
fn without_generated_at(mut report: Value, what: &str) -> Value {
    let generated = report
        .get_mut("generated_at")
        .unwrap_or_else(|| panic!("{what}: no generated_at"));
    assert!(
        generated.as_str().is_some_and(|t| t.ends_with('Z')),
        "{what}: generated_at is not a UTC time: {generated}"
    );
    *generated = Value::from("<generated_at>");
    report
}

// ----- tests ---------------------------------------------------------------------------------

#[test]
fn journal_written_before_the_layout_change_still_verifies() {
    let journal = OldJournal::copy();
    let (code, stdout) = journal.opsbook(&["audit", "verify"]);
    assert_eq!(code, 0, "audit verify:\n{stdout}");
    assert_eq!(code, expected_code("audit-verify.txt"));
    assert_eq!(stdout, expected_text("audit-verify.txt"));
}

#[test]
fn runs_of_a_journal_written_before_the_layout_change_list_as_before() {
    let journal = OldJournal::copy();
    let actual = journal.json(&["runs", "--json"], "runs.json");
    // The listing is newest first now; the runs themselves must be as they were.
    let mut expected = expected_json("runs.json");
    if let Some(list) = expected.as_array_mut() {
        list.reverse();
    }
    assert_same_json("runs --json", &expected, &actual);
}

#[test]
fn each_run_of_a_journal_written_before_the_layout_change_shows_as_before() {
    let journal = OldJournal::copy();
    for id in run_ids() {
        let file = format!("show-{id}.json");
        let actual = journal.json(&["show", &id, "--json"], &file);
        assert_same_json(&format!("show {id} --json"), &expected_json(&file), &actual);
    }
}

#[test]
fn each_run_of_a_journal_written_before_the_layout_change_reports_as_before() {
    let journal = OldJournal::copy();
    for id in run_ids() {
        let file = format!("report-{id}.json");
        let what = format!("report {id} --format json");
        let actual = journal.json(&["report", &id, "--format", "json"], &file);
        assert_same_json(
            &what,
            &without_generated_at(expected_json(&file), &file),
            &without_generated_at(actual, &what),
        );
    }
}

#[test]
fn the_journal_fixture_holds_every_kind_of_event_the_command_line_reaches() {
    let journal = OldJournal::copy();
    let conn = rusqlite::Connection::open_with_flags(
        journal.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the fixture journal opens");
    let mut stmt = conn
        .prepare("SELECT DISTINCT kind FROM events ORDER BY kind")
        .unwrap();
    let kinds: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        kinds,
        [
            "abort_requested",
            "acceptance_decided",
            "attempt_finished",
            "expectation_checked",
            "gate_timed_out",
            "handed_over",
            "interrupted_step_decided",
            "operator_changed",
            "rollback_started",
            "run_finished",
            "run_paused",
            "run_resumed",
            "run_started",
            "signoff_recorded",
            "signoff_refused",
            "step_decided",
            "step_finished",
            "step_skipped",
            "step_started",
        ]
    );
}
