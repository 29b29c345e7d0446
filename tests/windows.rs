//! Maintenance windows and freeze calendars: their state at chosen instants (both daylight
//! saving transitions in two zones), runs refused outside a window or inside a freeze, a
//! supervisor's approval to break a freeze, and go/no-go from a step's history.

use serde_json::json;

use crate::support::journal::{all_events, of_kind};
use crate::support::people::{act, passphrase, team};
use crate::support::Workspace;

fn with_config(config: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("opsbook.yaml", &crate::support::unindent(config));
    ws
}

fn status_at(ws: &Workspace, window: &str, at: &str) -> serde_json::Value {
    ws.cmd(["window", "status", window, "--at", at, "--json"])
        .run()
        .status(0)
        .json()
}

#[test]
fn window_status_before_inside_after_the_cutoff_and_after_the_end() {
    let ws = with_config(
        r#"
        windows:
          sunday-night: { schedule: "0 22 * * SUN", timezone: Europe/London, duration: 4h, cutoff: 30m }
        "#,
    );
    // 2026-11-29 is a Sunday; London is on GMT, so 22:00 local is 22:00Z.
    assert_eq!(
        status_at(&ws, "sunday-night", "2026-11-29T21:00:00Z"),
        json!({
            "window": "sunday-night", "state": "closed", "at": "2026-11-29T21:00:00Z",
            "opens_at": "2026-11-29T22:00:00Z", "closes_at": "2026-11-30T02:00:00Z",
            "last_start": "2026-11-30T01:30:00Z", "remaining_seconds": null,
            "next_transition": "2026-11-29T22:00:00Z"
        })
    );
    assert_eq!(
        status_at(&ws, "sunday-night", "2026-11-30T01:00:00Z"),
        json!({
            "window": "sunday-night", "state": "open", "at": "2026-11-30T01:00:00Z",
            "opens_at": "2026-11-29T22:00:00Z", "closes_at": "2026-11-30T02:00:00Z",
            "last_start": "2026-11-30T01:30:00Z", "remaining_seconds": 3600,
            "next_transition": "2026-11-30T02:00:00Z"
        })
    );
    // Past the cutoff the window is still open (running steps finish), but nothing starts.
    let after_cutoff = status_at(&ws, "sunday-night", "2026-11-30T01:45:00Z");
    assert_eq!(after_cutoff["state"], "open");
    assert_eq!(after_cutoff["remaining_seconds"], 900);
    let after_end = status_at(&ws, "sunday-night", "2026-11-30T02:00:00Z");
    assert_eq!(after_end["state"], "closed");
    assert_eq!(after_end["next_transition"], "2026-12-06T22:00:00Z");

    let out = ws
        .cmd([
            "window",
            "status",
            "sunday-night",
            "--at",
            "2026-11-30T01:00:00Z",
        ])
        .run()
        .status(0);
    assert_eq!(
        out.stdout,
        "sunday-night: open since 2026-11-29T22:00:00Z, closes 2026-11-30T02:00:00Z (1h 00m left); no step starts after 2026-11-30T01:30:00Z\n",
    );
}

/// The opening instants `window next` gives from `at`.
fn openings(ws: &Workspace, window: &str, at: &str, count: usize) -> Vec<String> {
    let next = ws
        .cmd([
            "window",
            "next",
            window,
            "--at",
            at,
            "--count",
            &count.to_string(),
            "--json",
        ])
        .run()
        .status(0)
        .json();
    next.as_array()
        .unwrap()
        .iter()
        .map(|o| o["opens"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_window_on_a_daylight_saving_night_opens_once_in_both_directions_and_zones() {
    let ws = with_config(
        r#"
        windows:
          london: { schedule: "30 1 * * *", timezone: Europe/London, duration: 1h }
          new-york: { schedule: "30 2 * * *", timezone: America/New_York, duration: 1h }
          new-york-fall: { schedule: "30 1 * * *", timezone: America/New_York, duration: 1h }
        "#,
    );
    // London springs forward on 2026-03-29: 01:30 does not exist; the window opens once,
    // right after the gap (02:00 BST = 01:00Z).
    assert_eq!(
        openings(&ws, "london", "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
    // It falls back on 2026-10-25: 01:30 happens twice; the window opens once, at the first.
    assert_eq!(
        openings(&ws, "london", "2026-10-24T12:00:00Z", 3),
        [
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-27T01:30:00Z"
        ]
    );
    // New York springs forward on 2026-03-08 (02:30 does not exist) and falls back on
    // 2026-11-01 (01:30 twice).
    assert_eq!(
        openings(&ws, "new-york", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    assert_eq!(
        openings(&ws, "new-york-fall", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    // Inside the spring-forward window, status agrees.
    assert_eq!(
        status_at(&ws, "london", "2026-03-29T01:10:00Z")["state"],
        "open"
    );
}

#[test]
fn a_bad_window_is_named_with_its_key() {
    let ws = with_config(
        r#"
        windows:
          nightly: { schedule: "0 2 * * *", timezone: Mars/Olympus, duration: 1h }
        "#,
    );
    let out = ws.cmd(["window", "list"]).run().status(2);
    assert!(
        out.stderr
            .contains("opsbook.yaml: windows.nightly.timezone:"),
        "{}",
        out.stderr
    );
}

const CLOSED_WINDOW: &str = r#"
windows:
  new-year: { schedule: "0 0 1 1 *", timezone: UTC, duration: 1h }
"#;

#[test]
fn a_runbook_outside_its_window_is_refused_saying_when_it_next_opens() {
    let ws = with_config(CLOSED_WINDOW);
    ws.runbook(
        "patch",
        r#"
        runbook: patch
        title: Patch
        window: new-year
        steps:
          - id: change
            shell: touch changed
        "#,
    );
    let out = ws.cmd(["run", "patch"]).run().status(5);
    let next_year = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap()
        + 1;
    assert!(
        out.stderr.contains(&format!(
            "refused to start: runbook `patch` runs in maintenance window `new-year`, which is closed; it next opens at {next_year}-01-01T00:00:00Z ("
        )),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("changed").exists());
    // A dry run changes nothing, so it may run at any time.
    ws.cmd(["run", "patch", "--dry-run"]).run().status(0);
    // A window the config does not define is bad input.
    ws.runbook(
        "typo",
        r#"
        runbook: typo
        title: Typo
        window: new-yaer
        steps:
          - id: change
            shell: "true"
        "#,
    );
    ws.cmd(["run", "typo"]).run().status(2).stderr(
        "error: runbook `typo` runs in maintenance window `new-yaer`, which opsbook.yaml does not define (it defines: new-year)\n",
    );
}

/// A freeze calendar whose one event spans now.
fn frozen_workspace() -> Workspace {
    let ws = with_config(
        r#"
        calendars:
          year-end: { file: calendars/year-end.ics, default: open }
        "#,
    );
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    ws.file(
        "calendars/year-end.ics",
        &format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:freeze-1\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Year-end change freeze\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            stamp(now - chrono::TimeDelta::days(1)),
            stamp(now + chrono::TimeDelta::days(1)),
        ),
    );
    ws.runbook(
        "restart",
        r#"
        runbook: restart
        title: Restart
        steps:
          - id: look
            shell: "true"
            readonly: true
          - id: change
            shell: touch changed
        "#,
    );
    ws.runbook(
        "survey",
        r#"
        runbook: survey
        title: Survey
        steps:
          - id: look
            shell: "true"
            readonly: true
        "#,
    );
    ws
}

#[test]
fn a_run_inside_a_freeze_is_refused_unless_it_changes_nothing() {
    let ws = frozen_workspace();
    let out = ws.cmd(["run", "restart"]).run().status(5);
    assert!(
        out.stderr.contains(
            "refused to start: the freeze calendar `year-end` is closed by \"Year-end change freeze\" until "
        ),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("changed").exists());
    ws.cmd(["run", "restart", "--dry-run"]).run().status(0);
    ws.cmd(["run", "survey"]).run().status(0);
    let state = ws
        .cmd(["calendar", "status", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(state["state"], "closed");
    assert_eq!(state["reasons"][0]["calendar"], "year-end");
    assert_eq!(state["reasons"][0]["event"], "Year-end change freeze");
}

#[test]
fn breaking_a_freeze_needs_another_person_who_is_a_supervisor_and_is_journaled() {
    let ws = frozen_workspace();
    team(
        &ws,
        &[
            ("sam", "supervisor"),
            ("olga", "operator"),
            ("tom", "operator"),
        ],
    );
    let break_it = |approver: &str| {
        act(
            &ws,
            "olga",
            [
                "run",
                "restart",
                "--break-freeze",
                "--reason",
                "INC-42: disk full on db1",
                "--approved-by",
                approver,
            ],
        )
        .env("OPSBOOK_APPROVER_PASSPHRASE", &passphrase(approver))
        .run()
    };
    break_it("tom").status(5).stderr(
        "the freeze \"Year-end change freeze\" of calendar year-end is in force: tom approves breaking it\nerror: refused to break the freeze: tom is operator, and only a supervisor may approve it\n",
    );
    assert!(!ws.path().join("changed").exists());
    let out = break_it("sam").status(0);
    let run = out.run_id();
    assert!(ws.path().join("changed").exists());
    let events = all_events(&ws);
    let show = ws.cmd(["show", &run]).run().status(0);
    assert!(
        show.stdout.contains(
            "freeze:   broke \"Year-end change freeze\" of calendar year-end, approved by sam at "
        ),
        "{}",
        show.stdout
    );
    let report = ws.cmd(["report", &run, "--format", "md"]).run().status(0);
    assert!(
        report.stdout.contains(
            "| Freeze broken | calendar year-end (“Year-end change freeze”), approved by sam at "
        ),
        "{}",
        report.stdout
    );
    let broken = of_kind(&events, "freeze_broken");
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].run_id, run);
    assert_eq!(
        broken[0].body,
        json!({
            "event": "freeze_broken", "calendar": "year-end", "freeze": "Year-end change freeze",
            "reason": "INC-42: disk full on db1", "by": "olga", "approved_by": "sam"
        })
    );
}

#[test]
fn go_no_go_parks_a_step_whose_history_says_it_will_not_fit() {
    // A window that opens every second and stays open one second: always open, never more
    // than a second left.
    let ws = with_config(
        r#"
        windows:
          tight: { schedule: "* * * * * *", timezone: UTC, duration: 1s }
        "#,
    );
    ws.runbook(
        "slow",
        r#"
        runbook: slow
        title: Slow
        window: tight
        steps:
          - id: slow
            shell: sleep 1.1
        "#,
    );
    for _ in 0..5 {
        ws.cmd(["run", "slow"]).run().status(0);
    }
    let out = ws.cmd(["run", "slow"]).run().status(3);
    let run = out.run_id();
    assert!(
        out.stdout.contains(
            "parked before `slow`: `slow` usually takes 1s (p95 of 5 runs); 0s remain in tight"
        ),
        "{}",
        out.stdout
    );
    let show = crate::support::show_json(&ws, &run);
    assert_eq!(show["status"], "parked");
    assert_eq!(show["window_checks"][0]["verdict"], "no-go");
    // The estimate can be overridden (and that is journaled); the cutoff could not be.
    let out = ws
        .cmd(["run", "slow", "--ignore-window-history"])
        .run()
        .status(0);
    let show = crate::support::show_json(&ws, &out.run_id());
    assert_eq!(show["window_checks"][0]["verdict"], "overridden");
}

#[test]
fn check_reads_the_config_and_warns_of_a_window_it_does_not_define() {
    let ws = with_config(
        r#"
        windows:
          nightly: { schedule: "0 2 * * *", duration: 1h }
        schedules:
          vacuum: { runbook: pg-vacuum, window: nightly }
        "#,
    );
    ws.runbook(
        "patch",
        r#"
        runbook: patch
        title: Patch
        window: weekly
        steps:
          - id: change
            shell: "true"
        "#,
    );
    ws.cmd(["check"]).run().status(2).stderr(
        "error: opsbook.yaml: schedules.vacuum.runbook: unknown runbook `pg-vacuum` in [ROOT]/runbooks; `opsbook list` shows the library\n",
    );
    ws.file(
        "opsbook.yaml",
        "windows:\n  nightly: { schedule: \"0 2 * * *\", duration: 1h }\n",
    );
    ws.cmd(["check"]).run().status(0).stderr(
        "warning: runbook `patch` runs in maintenance window `weekly`, which opsbook.yaml does not define: it will refuse to start until the window is defined\n",
    );
}
