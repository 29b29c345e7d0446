//! The daemon on per-second schedules, in real time: every slot starts at most once across a
//! kill -9 and a restart and across two daemons on one journal, missed slots are journaled
//! with the policy applied, a gate in a scheduled run parks and is notified to a file and a
//! loopback webhook, and after the sign-off the daemon finishes the run by itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::http::Receiver;
use crate::support::journal::{all_events, of_kind};
use crate::support::{unindent, Proc, Workspace};

fn workspace(config: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("opsbook.yaml", &unindent(config));
    ws.runbook(
        "tick",
        r#"
        runbook: tick
        title: One quick step
        steps:
          - id: note
            shell: "true"
        "#,
    );
    ws
}

/// Starts `opsbook daemon`, and waits until it has made its journal.
fn daemon(ws: &Workspace) -> Proc {
    let proc = ws.cmd(["daemon"]).spawn();
    wait_until(Duration::from_secs(20), "the daemon's journal", || {
        rusqlite::Connection::open_with_flags(ws.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|db| {
                db.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'slot_claims'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == 1)
    });
    proc
}

/// Waits until `done` holds, for at most `limit`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds while daemon `d` runs; on a time-out, says what the daemon
/// printed and what the journal holds.
#[track_caller]
fn wait_for(d: &mut Proc, ws: &Workspace, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > Duration::from_secs(30) {
            d.terminate();
            let out = std::mem::replace(d, ws.cmd(["--version"]).spawn()).finish();
            let kinds: Vec<String> = all_events(ws)
                .iter()
                .map(|e| format!("{} {}", e.kind, e.body))
                .collect();
            panic!(
                "timed out waiting for {what}\n--- daemon stdout\n{}\n--- stderr\n{}\n--- journal\n{}",
                out.stdout,
                out.stderr,
                kinds.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each slot decision of the journal: (schedule, slot) -> decisions in order.
fn decisions(ws: &Workspace) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in of_kind(&all_events(ws), "slot_decided") {
        out.entry((
            e.body["schedule"].as_str().unwrap().to_string(),
            e.body["slot"].as_str().unwrap().to_string(),
        ))
        .or_default()
        .push(e.body["decision"].as_str().unwrap().to_string());
    }
    out
}

/// How many runs were started for each slot.
fn runs_per_slot(ws: &Workspace) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in of_kind(&all_events(ws), "run_started") {
        if let Some(slot) = e.body["slot"]["slot"].as_str() {
            *out.entry(slot.to_string()).or_default() += 1;
        }
    }
    out
}

fn started_count(ws: &Workspace) -> usize {
    runs_per_slot(ws).len()
}

#[test]
fn every_slot_starts_at_most_once_across_a_kill_and_two_daemons_and_missed_slots_are_journaled() {
    let ws = workspace(
        r#"
        schedules:
          every-second: { runbook: tick, cron: "* * * * * *", timezone: UTC, missed: skip, overlap: queue }
        "#,
    );
    let mut first = daemon(&ws);
    wait_until(Duration::from_secs(20), "three started slots", || {
        started_count(&ws) >= 3
    });
    first.kill();
    // Down for a while: the slots of these seconds are missed.
    std::thread::sleep(Duration::from_millis(3500));
    let mut second = daemon(&ws);
    let mut third = daemon(&ws);
    let before = started_count(&ws);
    wait_until(Duration::from_secs(20), "more started slots", || {
        started_count(&ws) >= before + 3
    });
    second.terminate();
    third.terminate();
    second.finish().status(0);
    third.finish().status(0);

    // No slot started twice, whoever claimed it.
    for (slot, runs) in runs_per_slot(&ws) {
        assert_eq!(runs, 1, "slot {slot} started {runs} times");
    }
    let decided = decisions(&ws);
    // Every slot has one decision (a queued slot a second one, when it starts).
    for ((_, slot), each) in &decided {
        let one = each.len() == 1 || each == &["queued", "started"];
        assert!(one, "slot {slot}: {each:?}");
    }
    let missed: Vec<_> = decided
        .iter()
        .filter(|(_, d)| d[0] == "missed")
        .map(|((_, slot), _)| slot.clone())
        .collect();
    assert!(
        missed.len() >= 2,
        "the seconds the daemon was down are journaled as missed: {decided:?}"
    );
    let reason = of_kind(&all_events(&ws), "slot_decided")
        .into_iter()
        .find(|e| e.body["decision"] == "missed")
        .map(|e| e.body["reason"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(
        reason,
        "missed while the daemon was not running; missed: skip starts nothing"
    );
    ws.cmd(["audit", "verify"]).run().status(0);
    let list = ws
        .cmd(["schedule", "list", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(list[0]["schedule"], "every-second");
    assert!(list[0]["last"]["decision"].is_string());
}

#[test]
fn run_once_catches_up_the_latest_missed_slot_and_journals_the_others() {
    let ws = workspace(
        r#"
        schedules:
          every-minute: { runbook: tick, cron: "* * * * *", timezone: UTC, missed: run-once }
        "#,
    );
    // Not within a second of a minute's start, when a slot would be on time.
    while chrono::Utc::now().timestamp() % 60 < 2 || chrono::Utc::now().timestamp() % 60 > 57 {
        std::thread::sleep(Duration::from_millis(200));
    }
    // The last slot a daemon claimed was four minutes ago: three slots fell due since.
    let minute = chrono::Utc::now().timestamp() / 60 * 60;
    let at = |m: i64| {
        chrono::DateTime::from_timestamp(minute - m * 60, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // A journal to claim in.
    ws.cmd(["run", "tick", "--dry-run"]).run().status(0);
    ws.journal()
        .execute(
            "INSERT INTO slot_claims (schedule, slot, claimed_at, claimed_by)
             VALUES ('every-minute', ?1, ?1, 'daemon:gone')",
            [at(3)],
        )
        .unwrap();
    let out = ws.cmd(["daemon", "--once"]).run().status(0);
    let decided = decisions(&ws);
    let of = |slot: String| decided.get(&("every-minute".to_string(), slot)).cloned();
    let policy = format!(
        "missed while the daemon was not running; missed: run-once starts only the latest, {}",
        at(0)
    );
    assert_eq!(
        of(at(2)),
        Some(vec!["missed".to_string()]),
        "{}",
        out.stdout
    );
    assert_eq!(of(at(1)), Some(vec!["missed".to_string()]));
    assert_eq!(of(at(0)), Some(vec!["started".to_string()]));
    let reasons: Vec<String> = of_kind(&all_events(&ws), "slot_decided")
        .into_iter()
        .filter(|e| e.body["decision"] == "missed")
        .map(|e| e.body["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, [policy.clone(), policy]);
    assert_eq!(runs_per_slot(&ws), BTreeMap::from([(at(0), 1)]));
}

#[test]
fn a_gate_in_a_scheduled_run_parks_is_notified_and_the_daemon_finishes_it_after_the_signoff() {
    let hook = Receiver::start(&[500, 500, 500]);
    let ws = Workspace::new();
    ws.file(
        "opsbook.yaml",
        &unindent(&format!(
            r#"
            schedules:
              nightly: {{ runbook: gated, cron: "* * * * * *", timezone: UTC, overlap: skip }}
            channels:
              ops-log: {{ file: notifications.jsonl }}
              hook: {{ webhook: "{}", max_backoff: 1s }}
            "#,
            hook.url
        )),
    );
    ws.runbook(
        "gated",
        r#"
        runbook: gated
        title: A gated change
        steps:
          - id: prep
            shell: touch prepared
          - id: approve
            gate: { prompt: Go ahead with the change? }
          - id: change
            shell: touch changed
        "#,
    );
    let mut d = daemon(&ws);
    // The first slot's run parks at the gate; later slots are skipped while it waits.
    wait_for(&mut d, &ws, "a parked run", || {
        of_kind(&all_events(&ws), "run_paused").len() == 1
    });
    let run = of_kind(&all_events(&ws), "run_paused")[0].run_id.clone();
    wait_until(
        Duration::from_secs(20),
        "the notification in the file",
        || {
            std::fs::read_to_string(ws.path().join("notifications.jsonl"))
                .is_ok_and(|t| t.contains(&run))
        },
    );
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(ws.path().join("notifications.jsonl"))
            .unwrap()
            .lines()
            .find(|l| l.contains("run-parked"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["topic"], "run-parked");
    assert_eq!(line["fields"]["run"], run.as_str());
    assert_eq!(line["fields"]["step"], "approve");
    assert_eq!(
        line["summary"],
        format!("run {run} of gated waits at `approve` for a sign-off: opsbook signoff {run} --step approve --approve --as NAME").as_str()
    );
    // The webhook failed three times, then took it: exactly one accepted delivery.
    wait_until(Duration::from_secs(20), "the webhook delivery", || {
        hook.received()
            .iter()
            .any(|r| r.answered == 200 && r.body.contains("run-parked"))
    });
    let parked: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|r| r.body.contains("run-parked"))
        .collect();
    assert_eq!(parked.iter().filter(|r| r.answered == 200).count(), 1);
    assert!(parked.len() >= 4, "three failures before: {parked:?}");
    let key = parked[0].header("Idempotency-Key").unwrap().to_string();
    assert!(parked
        .iter()
        .all(|r| r.header("Idempotency-Key") == Some(&key)));

    ws.cmd(["signoff", &run, "--step", "approve", "--approve"])
        .run()
        .status(0);
    wait_until(
        Duration::from_secs(20),
        "the daemon to finish the run",
        || ws.path().join("changed").exists(),
    );
    wait_until(Duration::from_secs(20), "the run's end", || {
        of_kind(&all_events(&ws), "run_finished")
            .iter()
            .any(|e| e.run_id == run)
    });
    d.terminate();
    d.finish().status(0);
    let show = crate::support::show_json(&ws, &run);
    assert_eq!(show["status"], "succeeded");
    let outbox = ws.cmd(["outbox", "list", "--pending"]).run().status(0);
    assert_eq!(outbox.stdout, "no notifications wait for delivery\n");
}

#[test]
fn sigterm_parks_a_running_scheduled_run_and_the_next_daemon_resumes_it() {
    let ws = Workspace::new();
    ws.file(
        "opsbook.yaml",
        &unindent(
            r#"
            schedules:
              slow: { runbook: two-steps, cron: "* * * * * *", timezone: UTC, overlap: skip }
            "#,
        ),
    );
    ws.runbook(
        "two-steps",
        r#"
        runbook: two-steps
        title: Two steps
        steps:
          - id: first
            shell: sleep 1
          - id: second
            shell: touch second-ran
        "#,
    );
    let mut d = daemon(&ws);
    wait_until(Duration::from_secs(20), "the first step to start", || {
        of_kind(&all_events(&ws), "step_started").len() == 1
    });
    let run = of_kind(&all_events(&ws), "step_started")[0].run_id.clone();
    d.terminate();
    let out = d.finish().status(0);
    assert!(
        out.stdout.contains("SIGTERM: starting nothing new"),
        "{}",
        out.stdout
    );
    let show = crate::support::show_json(&ws, &run);
    assert_eq!(show["status"], "parked", "{}", out.stdout);
    assert_eq!(show["paused"]["waiting_for"], "restart");
    assert!(!ws.path().join("second-ran").exists());
    // The schedule now says it will go on; the next daemon resumes it.
    let mut again = daemon(&ws);
    wait_until(Duration::from_secs(20), "the resumed run to finish", || {
        crate::support::show_json(&ws, &run)["status"] == "succeeded"
    });
    again.terminate();
    again.finish().status(0);
    assert!(ws.path().join("second-ran").exists());
}

#[test]
fn the_systemd_unit_runs_the_daemon_with_notify_and_a_watchdog() {
    let ws = Workspace::new();
    let out = ws
        .cmd(["daemon", "--print-systemd-unit", "--user", "ops"])
        .run()
        .status(0);
    let unit = ws.normalise(&out.stdout);
    assert!(unit.contains("Type=notify\n"), "{unit}");
    assert!(unit.contains("WatchdogSec=60s\n"));
    assert!(unit.contains("User=ops\n"));
    assert!(unit.contains(" daemon\n"));
}

#[test]
fn a_notification_pending_when_the_daemon_is_killed_is_delivered_after_the_restart() {
    let ws = Workspace::new();
    ws.file(
        "opsbook.yaml",
        &unindent(
            r#"
            schedules:
              nightly: { runbook: gated, cron: "* * * * * *", timezone: UTC, overlap: skip }
            channels:
              # Fails until the file `ready` exists; then appends the notification.
              pager: { command: [/bin/sh, -c, "test -e ready && cat >> delivered.jsonl"], max_backoff: 1s }
            "#,
        ),
    );
    ws.runbook(
        "gated",
        r#"
        runbook: gated
        title: A gated change
        steps:
          - id: approve
            gate: { prompt: Go ahead? }
        "#,
    );
    let mut first = daemon(&ws);
    wait_for(&mut first, &ws, "a failed delivery", || {
        !of_kind(&all_events(&ws), "notification_failed").is_empty()
    });
    first.kill();
    let pending = ws
        .cmd(["outbox", "list", "--pending", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending[0]["topic"], "run-parked");
    assert!(pending[0]["last_error"]
        .as_str()
        .unwrap()
        .starts_with("/bin/sh exited with code 1"));
    ws.file("ready", "");
    let mut second = daemon(&ws);
    wait_until(Duration::from_secs(20), "the delivery", || {
        std::fs::read_to_string(ws.path().join("delivered.jsonl")).is_ok_and(|t| !t.is_empty())
    });
    second.terminate();
    second.finish().status(0);
    let delivered = std::fs::read_to_string(ws.path().join("delivered.jsonl")).unwrap();
    assert_eq!(delivered.lines().count(), 1, "{delivered}");
    let id = pending[0]["id"].as_str().unwrap();
    assert!(delivered.contains(id));
    ws.cmd(["outbox", "list", "--pending"])
        .run()
        .status(0)
        .stdout("no notifications wait for delivery\n");
    ws.cmd(["audit", "verify"]).run().status(0);
}

#[test]
fn a_schedule_that_follows_a_window_starts_when_the_window_opens() {
    let ws = workspace(
        r#"
        windows:
          every-other-second: { schedule: "*/2 * * * * *", timezone: UTC, duration: 1s }
        schedules:
          follow: { runbook: tick, window: every-other-second }
        "#,
    );
    let mut d = daemon(&ws);
    wait_for(&mut d, &ws, "two started slots", || started_count(&ws) >= 2);
    d.terminate();
    d.finish().status(0);
    for (slot, runs) in runs_per_slot(&ws) {
        assert_eq!(runs, 1, "slot {slot}");
        let second: u32 = slot[17..19].parse().unwrap();
        assert_eq!(second % 2, 0, "slot {slot} is a window opening");
    }
    let list = ws
        .cmd(["schedule", "list", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(list[0]["when"], "when window every-other-second opens");
}

#[test]
fn a_slot_inside_a_freeze_is_skipped_naming_the_freeze_and_the_people_are_told() {
    let ws = workspace(
        r#"
        calendars:
          year-end: { file: freeze.ics }
        schedules:
          every-second: { runbook: tick, cron: "* * * * * *", timezone: UTC }
        channels:
          ops-log: { file: notifications.jsonl }
        "#,
    );
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    ws.file(
        "freeze.ics",
        &format!(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:{}\nDTEND:{}\nSUMMARY:Year-end freeze\nEND:VEVENT\nEND:VCALENDAR\n",
            stamp(now - chrono::TimeDelta::hours(1)),
            stamp(now + chrono::TimeDelta::hours(1)),
        ),
    );
    let mut d = daemon(&ws);
    wait_for(&mut d, &ws, "a skipped slot", || {
        decisions(&ws).values().any(|d| d[0] == "skipped-freeze")
    });
    wait_for(&mut d, &ws, "the notification", || {
        std::fs::read_to_string(ws.path().join("notifications.jsonl"))
            .is_ok_and(|t| t.contains("skipped-freeze"))
    });
    // Slot after slot is skipped, and the freeze is told once.
    wait_for(&mut d, &ws, "three skipped slots", || {
        decisions(&ws)
            .values()
            .filter(|d| d[0] == "skipped-freeze")
            .count()
            >= 3
    });
    d.terminate();
    d.finish().status(0);
    assert_eq!(started_count(&ws), 0);
    let told = std::fs::read_to_string(ws.path().join("notifications.jsonl")).unwrap();
    assert_eq!(told.lines().count(), 1, "{told}");
    let reason = of_kind(&all_events(&ws), "slot_decided")[0].body["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason
            .starts_with("the freeze calendar `year-end` is closed by \"Year-end freeze\" until "),
        "{reason}"
    );
}
