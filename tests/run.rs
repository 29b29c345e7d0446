//! `opsbook run`: timeouts, retries, failure policies, rollback, parameters, dry runs,
//! parking, the journal's hash chain, Ctrl-C, parallel groups, conditions and outputs,
//! secrets, and the listings of runs.

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{expected_hash, journal_events, JournalEvent, Output, Workspace};

#[test]
fn host_health_runs_on_this_machine() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ws = Workspace::new();
    let out = ws
        .cmd([
            "--runbooks",
            &format!("{root}/runbooks"),
            "run",
            "host-health",
        ])
        .run()
        .status(0)
        .stdout_has("✓ disk")
        .stdout_has("succeeded in");
    let id = out.run_id();
    ws.cmd(["show", &id])
        .run()
        .status(0)
        .stdout_has("status:   succeeded");
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
}

// ----- helpers -------------------------------------------------------------------------------

/// One journaled event, as stored.
#[derive(Debug, Clone)]
struct Ev {
    seq: i64,
    run_id: String,
    run_seq: i64,
    at: String,
    kind: String,
    step: Option<String>,
    body: Value,
    prev_hash: String,
    hash: String,
    /// The row as stored, for recomputing its hash.
    raw: JournalEvent,
}

impl Ev {
    fn at(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .unwrap_or_else(|e| panic!("event {} has a bad timestamp {:?}: {e}", self.seq, self.at))
    }
}

/// Every event of the journal, in `seq` order.
fn all_events(ws: &Workspace) -> Vec<Ev> {
    journal_events(ws)
        .into_iter()
        .map(|raw| Ev {
            seq: raw.seq,
            run_id: raw.run_id.clone(),
            run_seq: raw.run_seq,
            at: raw.at.clone(),
            kind: raw.kind.clone(),
            step: raw.step.clone(),
            body: serde_json::from_str(&raw.body).unwrap_or(Value::Null),
            prev_hash: raw.prev_hash.clone(),
            hash: raw.hash.clone(),
            raw,
        })
        .collect()
}

/// The events of one run, in order.
fn events(ws: &Workspace, run_id: &str) -> Vec<Ev> {
    all_events(ws)
        .into_iter()
        .filter(|e| e.run_id == run_id)
        .collect()
}

fn of_kind<'a>(events: &'a [Ev], kind: &str) -> Vec<&'a Ev> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn of_step<'a>(events: &'a [Ev], kind: &str, step: &str) -> Vec<&'a Ev> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.step.as_deref() == Some(step))
        .collect()
}

/// The one event of `kind` for `step`.
#[track_caller]
fn one<'a>(events: &'a [Ev], kind: &str, step: &str) -> &'a Ev {
    let found = of_step(events, kind, step);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} for step {step}, got {found:#?}\nall events: {:#?}",
        kinds(events)
    );
    found[0]
}

/// `kind step` of each event, for assertion messages.
fn kinds(events: &[Ev]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.kind, e.step.as_deref().unwrap_or("")))
        .collect()
}

fn started_steps(events: &[Ev]) -> Vec<String> {
    of_kind(events, "step_started")
        .iter()
        .filter_map(|e| e.step.clone())
        .collect()
}

fn show_json(ws: &Workspace, id: &str) -> Value {
    ws.cmd(["show", id, "--json"]).run().status(0).json()
}

/// The step of `show --json` with this id (the last one, should it appear twice).
#[track_caller]
fn step_view<'a>(show: &'a Value, id: &str) -> &'a Value {
    show["steps"]
        .as_array()
        .expect("steps is an array")
        .iter()
        .rev()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {show:#}"))
}

/// Waits (up to 10s) until the run has journaled a `kind` event for `step`.
#[track_caller]
fn wait_for(ws: &Workspace, run_id: &str, kind: &str, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = events(ws, run_id);
        if !of_step(&ev, kind, step).is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} for {step}: {:#?}",
            kinds(&ev)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the run id from the first line of a spawned `opsbook run`.
fn first_line_run_id(stdout: &mut impl BufRead) -> String {
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    first_line
        .strip_prefix("run ")
        .and_then(|r| r.split_whitespace().next())
        .filter(|id| id.len() == 26)
        .unwrap_or_else(|| panic!("no run id in {first_line:?}"))
        .to_string()
}

/// Sends SIGINT (Ctrl-C) to a child process.
fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    let sent = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Waits for a spawned child: exit code, stdout (after what was read) and stderr.
fn finish(mut child: std::process::Child, mut stdout: impl Read) -> (Option<i32>, String) {
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    let status = child.wait().unwrap();
    (
        status.code(),
        format!("--- stdout\n{text}--- stderr\n{stderr}"),
    )
}

fn run(ws: &Workspace, runbook: &str) -> Output {
    ws.cmd(["run", runbook, "--non-interactive"]).run()
}

/// Processes whose command line contains `marker` (NULs read as spaces), with that line.
fn processes_with(marker: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if line.contains(marker) {
                found.push((name, line));
            }
        }
    }
    found
}

// ----- 1. timeouts ---------------------------------------------------------------------------

#[test]
fn rhai_infinite_loop_times_out() {
    let ws = Workspace::new();
    ws.runbook(
        "spin",
        "runbook: spin\ntitle: Spin\nsteps:\n  - id: spin\n    timeout: 2s\n    rhai: |\n      loop {}\n",
    );
    let out = run(&ws, "spin").status(1);
    let ev = events(&ws, &out.run_id());
    let attempt = one(&ev, "attempt_finished", "spin");
    assert_eq!(attempt.body["status"], "timed-out", "{:#}", attempt.body);
    let ms = attempt.body["duration_ms"].as_u64().unwrap();
    assert!(
        (1900..10_000).contains(&ms),
        "the loop ran {ms}ms under a 2s timeout"
    );
    let finished = one(&ev, "step_finished", "spin");
    assert_eq!(finished.body["status"], "failed");
    assert!(
        finished.body["reason"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{:#}",
        finished.body
    );
}

#[test]
fn shell_timeout_kills_the_command_and_its_children() {
    let ws = Workspace::new();
    // A marker no other process on the machine has in its command line.
    let marker = format!("60.{}7531", std::process::id());
    ws.runbook(
        "hang",
        &format!(
            "runbook: hang\ntitle: Hang\nsteps:\n  - id: hang\n    timeout: 1s\n    shell: sleep {marker} & sleep {marker}\n"
        ),
    );
    let started = Instant::now();
    let child = ws
        .cmd(["run", "hang", "--non-interactive"])
        .command()
        .spawn()
        .unwrap();
    // Both sleeps (and the shell running them) appear while the step runs.
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_millis(900) {
        seen = processes_with(&marker);
        if seen.iter().filter(|(_, l)| l.starts_with("sleep ")).count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.iter().filter(|(_, l)| l.starts_with("sleep ")).count() >= 2,
        "the step's processes never showed up: {seen:?}"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run took {:?}",
        started.elapsed()
    );
    // Killed processes may take a moment to be reaped.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut left = processes_with(&marker);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with(&marker);
    }
    assert!(left.is_empty(), "still running after the timeout: {left:?}");
    let id = stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    let ev = events(&ws, &id);
    let attempt = one(&ev, "attempt_finished", "hang");
    assert_eq!(attempt.body["status"], "timed-out", "{:#}", attempt.body);
    let ms = attempt.body["duration_ms"].as_u64().unwrap();
    assert!((900..10_000).contains(&ms), "the step ran {ms}ms");
    assert_eq!(one(&ev, "step_finished", "hang").body["status"], "failed");
}

// ----- 2. retries ----------------------------------------------------------------------------

#[test]
fn a_failing_step_is_tried_as_often_as_retry_says() {
    let ws = Workspace::new();
    ws.runbook(
        "flaky",
        "runbook: flaky\ntitle: Flaky\nsteps:\n  - id: fails\n    shell: echo nope >&2; exit 7\n    retry: { attempts: 3, delay: 100ms }\n",
    );
    let out = run(&ws, "flaky").status(1);
    let ev = events(&ws, &out.run_id());
    let attempts = of_step(&ev, "attempt_finished", "fails");
    let numbers: Vec<_> = attempts.iter().map(|a| a.body["attempt"].clone()).collect();
    assert_eq!(numbers, [1, 2, 3], "{:#?}", kinds(&ev));
    for a in &attempts {
        assert_eq!(a.body["status"], "failed");
        assert_eq!(a.body["exit_code"], 7);
    }
    // The delay is kept between attempts.
    for pair in attempts.windows(2) {
        let gap = pair[1].at() - pair[0].at();
        assert!(
            gap >= chrono::Duration::milliseconds(100),
            "attempts only {gap} apart"
        );
    }
    assert_eq!(of_kind(&ev, "step_started").len(), 1);
    let finished = one(&ev, "step_finished", "fails");
    assert_eq!(finished.body["status"], "failed");
    assert_eq!(finished.body["attempts"], 3);
}

#[test]
fn a_step_that_succeeds_on_its_second_attempt_succeeds() {
    let ws = Workspace::new();
    let counter = ws.path().join("counter");
    ws.runbook(
        "second",
        &format!(
            r#"runbook: second
title: Succeeds the second time
steps:
  - id: second
    retry: {{ attempts: 3, delay: 100ms }}
    shell: |
      n=$(cat '{c}' 2>/dev/null || echo 0)
      n=$((n + 1))
      echo "$n" > '{c}'
      test "$n" -ge 2
"#,
            c = counter.display()
        ),
    );
    let out = run(&ws, "second").status(0);
    let ev = events(&ws, &out.run_id());
    let attempts = of_step(&ev, "attempt_finished", "second");
    let statuses: Vec<_> = attempts.iter().map(|a| a.body["status"].clone()).collect();
    assert_eq!(statuses, ["failed", "succeeded"]);
    let finished = one(&ev, "step_finished", "second");
    assert_eq!(finished.body["status"], "succeeded");
    assert_eq!(finished.body["attempts"], 2);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "2");
    let show = show_json(&ws, &out.run_id());
    assert_eq!(show["status"], "succeeded");
    assert_eq!(
        step_view(&show, "second")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

// ----- 3. failure policies and rollback --------------------------------------------------------

#[test]
fn rollback_runs_in_reverse_and_skips_undo_of_steps_that_never_ran() {
    let ws = Workspace::new();
    ws.runbook(
        "rb",
        r#"runbook: rb
title: Rolls back
steps:
  - id: prepare
    shell: "true"
  - id: migrate
    shell: exit 3
    on_failure: rollback
  - id: announce
    shell: "true"
rollback:
  - id: undo-prepare
    undo: prepare
    shell: "true"
  - id: undo-announce
    undo: announce
    shell: "true"
  - id: cleanup
    shell: "true"
"#,
    );
    let out = run(&ws, "rb").status(1);
    let ev = events(&ws, &out.run_id());
    assert_eq!(
        started_steps(&ev),
        ["prepare", "migrate", "cleanup", "undo-prepare"],
        "{:#?}",
        kinds(&ev)
    );
    let rollback_started: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == "step_started" && e.body["phase"] == "rollback")
        .map(|e| e.step.clone().unwrap())
        .collect();
    assert_eq!(rollback_started, ["cleanup", "undo-prepare"]);

    let rb = of_kind(&ev, "rollback_started");
    assert_eq!(rb.len(), 1, "{:#?}", kinds(&ev));
    assert_eq!(rb[0].body["failed_step"], "migrate");
    assert_eq!(
        rb[0].body["steps"],
        serde_json::json!(["cleanup", "undo-announce", "undo-prepare"])
    );
    // It comes after the failure and before any rollback step.
    let failed_at = one(&ev, "step_finished", "migrate").seq;
    let first_rollback = one(&ev, "step_started", "cleanup").seq;
    assert!(failed_at < rb[0].seq && rb[0].seq < first_rollback);

    let skipped = one(&ev, "step_skipped", "undo-announce");
    assert_eq!(skipped.body["phase"], "rollback");
    let reason = skipped.body["reason"].as_str().unwrap();
    assert!(
        reason.contains("announce") && reason.contains("did not run"),
        "{reason}"
    );
    // Reverse order holds for the skipped step too: between cleanup and undo-prepare.
    assert!(one(&ev, "step_finished", "cleanup").seq < skipped.seq);
    assert!(skipped.seq < one(&ev, "step_started", "undo-prepare").seq);
    for step in ["cleanup", "undo-prepare"] {
        assert_eq!(one(&ev, "step_finished", step).body["status"], "succeeded");
    }
    let finished = of_kind(&ev, "run_finished");
    assert_eq!(finished[0].body["status"], "failed");
    assert_eq!(finished[0].body["exit_code"], 1);
    let show = show_json(&ws, &out.run_id());
    assert_eq!(show["rolled_back"], true);
    assert_eq!(show["status"], "failed");
}

#[test]
fn on_failure_continue_goes_on_and_the_run_still_fails() {
    let ws = Workspace::new();
    ws.runbook(
        "cont",
        r#"runbook: cont
title: Continues
steps:
  - id: broken
    shell: exit 1
    on_failure: continue
  - id: after
    shell: echo still here
"#,
    );
    let out = run(&ws, "cont").status(1);
    let ev = events(&ws, &out.run_id());
    assert_eq!(started_steps(&ev), ["broken", "after"]);
    assert_eq!(one(&ev, "step_finished", "broken").body["status"], "failed");
    assert_eq!(
        one(&ev, "step_finished", "after").body["status"],
        "succeeded"
    );
    assert!(of_kind(&ev, "rollback_started").is_empty());
    assert_eq!(of_kind(&ev, "run_finished")[0].body["status"], "failed");
}

#[test]
fn on_failure_abort_is_the_default_and_stops_the_run() {
    let ws = Workspace::new();
    let never = ws.path().join("never");
    ws.runbook(
        "stop",
        &format!(
            "runbook: stop\ntitle: Stops\nsteps:\n  - id: broken\n    shell: exit 1\n  - id: later\n    shell: touch '{}'\n",
            never.display()
        ),
    );
    let out = run(&ws, "stop").status(1);
    let ev = events(&ws, &out.run_id());
    assert_eq!(started_steps(&ev), ["broken"]);
    assert!(of_step(&ev, "step_skipped", "later").is_empty());
    assert!(!never.exists());
    assert_eq!(of_kind(&ev, "run_finished")[0].body["status"], "failed");
}

// ----- 4. parameters are one shell word --------------------------------------------------------

#[test]
fn a_hostile_param_stays_one_word_in_a_shell_command() {
    let ws = Workspace::new();
    let pwned = ws.path().join("pwned");
    let value = format!("a; touch {}", pwned.display());
    ws.runbook(
        "echo",
        "runbook: echo\ntitle: Echo\nparams:\n  host: { type: string, required: true }\nsteps:\n  - id: say\n    shell: echo {{ params.host }}\n",
    );
    let out = ws
        .cmd([
            "run",
            "echo",
            "--non-interactive",
            "-p",
            &format!("host={value}"),
        ])
        .run()
        .status(0);
    assert!(!pwned.exists(), "the parameter ran as a command");
    let ev = events(&ws, &out.run_id());
    let attempt = one(&ev, "attempt_finished", "say");
    assert_eq!(attempt.body["outputs"]["stdout"], value.as_str());
    assert_eq!(
        step_view(&show_json(&ws, &out.run_id()), "say")["attempts"][0]["outputs"]["stdout"],
        value.as_str()
    );
}

// ----- 5. dry runs -----------------------------------------------------------------------------

#[test]
fn dry_run_runs_only_readonly_steps_and_records_what_the_others_would_do() {
    let ws = Workspace::new();
    let looked = ws.path().join("looked");
    let changed = ws.path().join("changed");
    ws.runbook(
        "dry",
        &format!(
            r#"runbook: dry
title: Dry
params:
  target: {{ type: string, default: db1 }}
steps:
  - id: look
    readonly: true
    shell: touch '{looked}'
  - id: change
    shell: touch '{changed}' {{{{ params.target }}}}
  - id: script
    rhai: |
      fail("must not run");
"#,
            looked = looked.display(),
            changed = changed.display()
        ),
    );
    let out = ws
        .cmd(["run", "dry", "--dry-run", "--non-interactive"])
        .run()
        .status(0)
        .stdout_has("(dry run)");
    assert!(looked.exists(), "the readonly step did not run");
    assert!(!changed.exists(), "a step that is not readonly ran");
    let id = out.run_id();
    let ev = events(&ws, &id);
    assert_eq!(started_steps(&ev), ["look"]);
    assert_eq!(of_kind(&ev, "attempt_finished").len(), 1);
    let show = show_json(&ws, &id);
    assert_eq!(show["dry_run"], true);
    assert_eq!(step_view(&show, "look")["status"], "succeeded");
    let change = step_view(&show, "change");
    assert_eq!(change["status"], "would-run");
    assert_eq!(
        change["would_run"],
        format!(
            "touch '{}' \"${{OPSBOOK_PARAM_TARGET}}\"  # OPSBOOK_PARAM_TARGET=db1",
            changed.display()
        )
        .as_str()
    );
    let script = step_view(&show, "script");
    assert_eq!(script["status"], "would-run");
    assert!(
        script["would_run"]
            .as_str()
            .unwrap()
            .contains("must not run"),
        "{script:#}"
    );
}

// ----- 6. parking ------------------------------------------------------------------------------

#[test]
fn a_manual_step_without_a_terminal_parks_the_run() {
    let ws = Workspace::new();
    ws.runbook(
        "manual",
        "runbook: manual\ntitle: Manual\nsteps:\n  - id: before\n    shell: \"true\"\n  - id: tick\n    manual: Post the notice in the channel\n  - id: after\n    shell: \"true\"\n",
    );
    // No --non-interactive: stdin is a pipe, so nobody can answer.
    let out = ws.cmd(["run", "manual"]).stdin("d\n").run().status(3);
    let id = out.run_id();
    let ev = events(&ws, &id);
    let paused = one(&ev, "run_paused", "tick");
    assert_eq!(paused.body["waiting_for"], "operator");
    assert!(of_kind(&ev, "run_finished").is_empty());
    assert!(of_kind(&ev, "step_decided").is_empty());
    assert!(!started_steps(&ev).contains(&"after".to_string()));
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "awaiting-signoff");
    let show = show_json(&ws, &id);
    assert_eq!(show["paused"]["step"], "tick");
}

// ----- 7. the hash chain -------------------------------------------------------------------------

/// The chain recomputed from the stored columns: the seq of the first event that breaks it.
fn first_break(events: &[Ev]) -> Option<i64> {
    let mut prev = "0".repeat(64);
    for (expected_seq, e) in (1..).zip(events) {
        if e.seq != expected_seq || e.prev_hash != prev {
            return Some(expected_seq);
        }
        let hash = expected_hash(&e.raw);
        if hash != e.hash {
            return Some(e.seq);
        }
        prev = hash;
    }
    None
}

#[test]
fn the_journal_is_contiguous_and_hash_chained_and_an_edit_is_detected() {
    let ws = Workspace::new();
    ws.runbook(
        "chain",
        "runbook: chain\ntitle: Chain\nsteps:\n  - id: one\n    shell: echo one\n  - id: two\n    rhai: |\n      set(\"x\", 1);\n      log(\"two\");\n",
    );
    let first = run(&ws, "chain").status(0).run_id();
    let second = run(&ws, "chain").status(0).run_id();
    let all = all_events(&ws);
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    for id in [&first, &second] {
        let run_seqs: Vec<i64> = all
            .iter()
            .filter(|e| &e.run_id == id)
            .map(|e| e.run_seq)
            .collect();
        assert!(run_seqs.len() >= 8, "{run_seqs:?}");
        assert_eq!(run_seqs, (1..=run_seqs.len() as i64).collect::<Vec<_>>());
    }
    // The events of each run are together: the first run's, then the second's.
    assert_eq!(
        all.iter().take_while(|e| e.run_id == first).count(),
        events(&ws, &first).len()
    );
    assert_eq!(all[0].prev_hash, "0".repeat(64));
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for e in &all {
        assert_eq!(e.body["event"], e.kind.as_str(), "event {}", e.seq);
    }
    assert_eq!(
        first_break(&all),
        None,
        "the stored chain does not recompute"
    );
    ws.cmd(["audit", "verify"])
        .run()
        .status(0)
        .stdout_has("intact");

    // Edit one byte of one body: the step id in the first run's step_finished of `two`.
    let target = all
        .iter()
        .find(|e| {
            e.run_id == first && e.kind == "step_finished" && e.step.as_deref() == Some("two")
        })
        .unwrap();
    let edited = target.raw.body.replacen("\"two\"", "\"twO\"", 1);
    assert_eq!(edited.len(), target.raw.body.len());
    assert_ne!(edited, target.raw.body);
    {
        let conn = ws.journal();
        let changed = conn
            .execute(
                "UPDATE events SET body = ?1 WHERE seq = ?2",
                rusqlite::params![edited, target.seq],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    assert_eq!(first_break(&all_events(&ws)), Some(target.seq));
    ws.cmd(["audit", "verify"])
        .run()
        .status(1)
        .stdout_has(&format!("event {}:", target.seq));
    ws.cmd(["audit", "verify", &first])
        .run()
        .status(1)
        .stdout_has(&format!("event {}:", target.seq));
}

// ----- 8. Ctrl-C -------------------------------------------------------------------------------

#[test]
fn ctrl_c_stops_the_run_after_the_current_step() {
    let ws = Workspace::new();
    ws.runbook(
        "slow",
        "runbook: slow\ntitle: Slow\nsteps:\n  - id: first\n    shell: sleep 1\n  - id: second\n    shell: sleep 5\n",
    );
    let mut child = ws
        .cmd(["run", "slow", "--non-interactive"])
        .command()
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let id = first_line_run_id(&mut stdout);
    wait_for(&ws, &id, "step_started", "first");
    interrupt(&child);
    let (code, output) = finish(child, stdout);
    assert_eq!(code, Some(4), "{output}");
    let ev = events(&ws, &id);
    assert_eq!(started_steps(&ev), ["first"], "{:#?}", kinds(&ev));
    // The current step was let finish.
    let first = one(&ev, "attempt_finished", "first");
    assert_eq!(first.body["status"], "succeeded");
    assert!(first.body["duration_ms"].as_u64().unwrap() >= 1000);
    let aborts = of_kind(&ev, "abort_requested");
    assert_eq!(aborts.len(), 1, "{:#?}", kinds(&ev));
    assert!(aborts[0].seq > one(&ev, "step_finished", "first").seq);
    let finished = of_kind(&ev, "run_finished");
    assert_eq!(finished[0].body["status"], "aborted");
    assert_eq!(finished[0].body["exit_code"], 4);
    assert_eq!(show_json(&ws, &id)["abort_requested"], true);
}

#[test]
fn ctrl_c_during_a_retry_delay_is_journaled_as_an_abort() {
    let ws = Workspace::new();
    ws.runbook(
        "retrying",
        "runbook: retrying\ntitle: Retrying\nsteps:\n  - id: flaky\n    shell: exit 1\n    retry: { attempts: 3, delay: 5s }\n  - id: later\n    shell: \"true\"\n",
    );
    let mut child = ws
        .cmd(["run", "retrying", "--non-interactive"])
        .command()
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let id = first_line_run_id(&mut stdout);
    // The first attempt failed; the engine now waits 5s before the second.
    wait_for(&ws, &id, "attempt_finished", "flaky");
    interrupt(&child);
    let (code, output) = finish(child, stdout);
    let ev = events(&ws, &id);
    assert_eq!(of_step(&ev, "attempt_finished", "flaky").len(), 1);
    assert_eq!(started_steps(&ev), ["flaky"]);
    assert_eq!(
        of_kind(&ev, "abort_requested").len(),
        1,
        "the operator's Ctrl-C is not in the journal: {:#?}",
        kinds(&ev)
    );
    assert_eq!(code, Some(4), "{output}");
}

// ----- 9. parallel groups ----------------------------------------------------------------------

#[test]
fn a_parallel_group_runs_its_members_at_once() {
    let ws = Workspace::new();
    ws.runbook(
        "par",
        "runbook: par\ntitle: Parallel\nsteps:\n  - id: both\n    parallel:\n      - id: left\n        shell: sleep 1\n      - id: right\n        shell: sleep 1\n",
    );
    let out = run(&ws, "par").status(0);
    let ev = events(&ws, &out.run_id());
    for member in ["left", "right"] {
        let started = one(&ev, "step_started", member);
        assert_eq!(started.body["group"], "both");
        let ms = one(&ev, "attempt_finished", member).body["duration_ms"]
            .as_u64()
            .unwrap();
        assert!(ms >= 1000, "{member} slept only {ms}ms");
    }
    // Both start before either finishes.
    let last_start = ["left", "right"]
        .iter()
        .map(|m| one(&ev, "step_started", m).seq)
        .max()
        .unwrap();
    let first_finish = ["left", "right"]
        .iter()
        .map(|m| one(&ev, "step_finished", m).seq)
        .min()
        .unwrap();
    assert!(last_start < first_finish, "{:#?}", kinds(&ev));
    // The group takes about as long as one member, not two.
    let group_time = one(&ev, "step_finished", "both").at() - one(&ev, "step_started", "both").at();
    assert!(
        group_time >= chrono::Duration::milliseconds(1000)
            && group_time < chrono::Duration::milliseconds(1800),
        "the group took {group_time}"
    );
    assert_eq!(
        one(&ev, "step_finished", "both").body["status"],
        "succeeded"
    );
}

#[test]
fn a_parallel_group_with_a_failing_member_fails() {
    let ws = Workspace::new();
    ws.runbook(
        "parfail",
        "runbook: parfail\ntitle: Parallel failure\nsteps:\n  - id: group\n    parallel:\n      - id: good\n        shell: \"true\"\n      - id: bad\n        shell: exit 2\n  - id: after\n    shell: \"true\"\n",
    );
    let out = run(&ws, "parfail").status(1);
    let ev = events(&ws, &out.run_id());
    assert_eq!(
        one(&ev, "step_finished", "good").body["status"],
        "succeeded"
    );
    assert_eq!(one(&ev, "step_finished", "bad").body["status"], "failed");
    let group = one(&ev, "step_finished", "group");
    assert_eq!(group.body["status"], "failed");
    assert!(group.body["reason"].as_str().unwrap().contains("failed"));
    assert!(of_step(&ev, "step_started", "after").is_empty());
    assert_eq!(of_kind(&ev, "run_finished")[0].body["status"], "failed");
}

// ----- 10. conditions, outputs and skips -------------------------------------------------------

#[test]
fn when_false_skips_the_step_with_the_reason() {
    let ws = Workspace::new();
    let never = ws.path().join("never");
    ws.runbook(
        "cond",
        &format!(
            r#"runbook: cond
title: Conditions
params:
  n: {{ type: int, default: 3 }}
steps:
  - id: never
    when: "params.n > 5"
    shell: touch '{}'
  - id: always
    when: "params.n == 3"
    shell: "true"
"#,
            never.display()
        ),
    );
    let out = run(&ws, "cond").status(0);
    assert!(!never.exists());
    let ev = events(&ws, &out.run_id());
    assert_eq!(started_steps(&ev), ["always"]);
    let skipped = one(&ev, "step_skipped", "never");
    let reason = skipped.body["reason"].as_str().unwrap();
    assert!(
        reason.contains("params.n > 5") && reason.contains("false"),
        "{reason}"
    );
    let show = show_json(&ws, &out.run_id());
    assert_eq!(step_view(&show, "never")["status"], "skipped");
    assert_eq!(step_view(&show, "never")["reason"], reason);
}

#[test]
fn outputs_set_in_rhai_reach_later_shell_and_rhai_steps() {
    let ws = Workspace::new();
    ws.runbook(
        "vars",
        r#"runbook: vars
title: Outputs
steps:
  - id: calc
    rhai: |
      set("x", 42);
  - id: echo
    shell: echo "x is {{ vars.calc.x }}"
  - id: check
    rhai: |
      let x = vars.calc.x;
      assert(x == 42, `vars.calc.x is ${x}`);
      set("y", x + 1);
      set("seen", vars.echo.stdout);
"#,
    );
    let out = run(&ws, "vars").status(0);
    let ev = events(&ws, &out.run_id());
    assert_eq!(
        one(&ev, "attempt_finished", "calc").body["outputs"]["x"],
        42
    );
    assert_eq!(
        one(&ev, "attempt_finished", "echo").body["outputs"]["stdout"],
        "x is 42"
    );
    let check = &one(&ev, "attempt_finished", "check").body;
    assert_eq!(check["status"], "succeeded", "{check:#}");
    assert_eq!(check["outputs"]["y"], 43);
    assert_eq!(check["outputs"]["seen"], "x is 42");
}

#[test]
fn skip_in_rhai_ends_the_step_skipped_with_the_reason() {
    let ws = Workspace::new();
    ws.runbook(
        "skip",
        r#"runbook: skip
title: Skips
steps:
  - id: maybe
    rhai: |
      skip("no systemd on this host");
      fail("not reached");
  - id: next
    shell: "true"
"#,
    );
    let out = run(&ws, "skip").status(0);
    let ev = events(&ws, &out.run_id());
    let attempt = one(&ev, "attempt_finished", "maybe");
    assert_eq!(attempt.body["status"], "skipped");
    let finished = one(&ev, "step_finished", "maybe");
    assert_eq!(finished.body["status"], "skipped");
    assert_eq!(finished.body["reason"], "no systemd on this host");
    assert_eq!(
        one(&ev, "step_finished", "next").body["status"],
        "succeeded"
    );
    assert_eq!(of_kind(&ev, "run_finished")[0].body["status"], "succeeded");
}

// ----- 11. secrets -------------------------------------------------------------------------------

#[test]
fn a_secret_never_reaches_the_journal_or_the_output() {
    let ws = Workspace::new();
    let secret = format!("Sup3r-s3cret-{}", std::process::id());
    ws.runbook(
        "secret",
        r#"runbook: secret
title: Secret
params:
  token: { type: string, secret: true, env: MY_SECRET, required: true }
steps:
  - id: shell-echo
    shell: echo "token={{ params.token }}"; echo "env=$OPSBOOK_PARAM_TOKEN" >&2
  - id: rhai-log
    rhai: |
      log(`the token is ${params.token}`);
      print(params.token);
      set("copy", params.token);
  - id: fails
    rhai: |
      fail(`bad token ${params.token}`);
"#,
    );
    let out = ws
        .cmd(["run", "secret", "--non-interactive"])
        .env("MY_SECRET", &secret)
        .run()
        .status(1);
    let id = out.run_id();
    assert!(!out.stdout.contains(&secret), "stdout:\n{}", out.stdout);
    assert!(!out.stderr.contains(&secret), "stderr:\n{}", out.stderr);
    let show = ws.cmd(["show", &id]).run().status(0);
    assert!(!show.stdout.contains(&secret), "{}", show.stdout);
    let show_json = ws.cmd(["show", &id, "--json"]).run().status(0);
    assert!(!show_json.stdout.contains(&secret), "{}", show_json.stdout);

    let ev = events(&ws, &id);
    assert_eq!(
        one(&ev, "attempt_finished", "shell-echo").body["outputs"]["stdout"],
        "token=***"
    );
    let logged = &one(&ev, "attempt_finished", "rhai-log").body;
    assert!(
        logged["excerpt"]
            .as_str()
            .unwrap()
            .contains("the token is ***"),
        "{logged:#}"
    );
    assert_eq!(logged["outputs"]["copy"], "***");
    assert_eq!(ev[0].body["params"]["token"], "***");

    // The failure reason is shown, masked.
    assert!(out.stdout.contains("bad token ***"), "{}", out.stdout);

    // Every byte the journal left on disk (database, WAL, shared memory).
    let on_disk = journal_bytes(&ws);
    assert!(
        !contains(&on_disk, secret.as_bytes()),
        "the secret is in the journal files"
    );
    assert!(contains(&on_disk, b"token=***"));
}

/// The bytes of every journal file: the database, and its -wal and -shm files if present.
fn journal_bytes(ws: &Workspace) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(ws.path()).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("opsbook.db")
        {
            bytes.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no journal files in {:?}", ws.path());
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn dry_run_masks_a_secret_that_needs_shell_quoting() {
    let ws = Workspace::new();
    // Quotes, spaces and `$` are common in passwords; quoting rewrites them in the command.
    let secret = format!("it's a $ecret {}", std::process::id());
    ws.runbook(
        "quoted",
        r#"runbook: quoted
title: Quoted
params:
  token: { type: string, secret: true, env: MY_SECRET, required: true }
steps:
  - id: login
    shell: login --token {{ params.token }}
"#,
    );
    let out = ws
        .cmd(["run", "quoted", "--dry-run", "--non-interactive"])
        .env("MY_SECRET", &secret)
        .run()
        .status(0);
    let ev = events(&ws, &out.run_id());
    let would_run = one(&ev, "step_skipped", "login").body["would_run"]
        .as_str()
        .unwrap()
        .to_string();
    // Any spelling of the secret that the shell turns back into it is a leak.
    let words = ["it", "s a", "ecret"];
    assert!(
        !words.iter().all(|w| would_run.contains(w)),
        "would_run holds the quoted secret: {would_run}"
    );
    // A secret never enters a command line: the command reads it from its environment.
    assert_eq!(
        would_run,
        r#"login --token "${OPSBOOK_PARAM_TOKEN}"  # OPSBOOK_PARAM_TOKEN=***"#
    );
    assert!(!out.stdout.contains("$ecret"), "stdout: {}", out.stdout);
}

#[test]
fn a_bad_secret_value_is_not_echoed() {
    let ws = Workspace::new();
    let secret = format!("98x{}", std::process::id());
    ws.runbook(
        "pin",
        "runbook: pin\ntitle: Pin\nparams:\n  pin: { type: int, secret: true, env: MY_PIN, required: true }\nsteps:\n  - id: use\n    shell: \"true\"\n",
    );
    let out = ws
        .cmd(["run", "pin", "--non-interactive"])
        .env("MY_PIN", &secret)
        .run()
        .status(2)
        .stderr_has("pin");
    assert!(!out.stderr.contains(&secret), "stderr: {}", out.stderr);
    assert!(!out.stdout.contains(&secret), "stdout: {}", out.stdout);
}

// ----- 12. listings --------------------------------------------------------------------------------

#[test]
fn runs_filters_by_status_and_show_refuses_an_unknown_id() {
    let ws = Workspace::new();
    ws.runbook(
        "ok",
        "runbook: ok\ntitle: Ok\nsteps:\n  - id: fine\n    shell: \"true\"\n",
    );
    ws.runbook(
        "bad",
        "runbook: bad\ntitle: Bad\nsteps:\n  - id: broken\n    shell: exit 1\n",
    );
    let good = run(&ws, "ok").status(0).run_id();
    let failed = run(&ws, "bad").status(1).run_id();
    let failed_again = run(&ws, "bad").status(1).run_id();

    let all = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(all.as_array().unwrap().len(), 3);

    let listed = ws
        .cmd(["runs", "--status", "failed", "--json"])
        .run()
        .status(0)
        .json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(ids, [failed_again.as_str(), failed.as_str()]);
    for r in listed.as_array().unwrap() {
        assert_eq!(r["status"], "failed");
        assert_eq!(r["runbook"], "bad");
        assert_eq!(r["exit_code"], 1);
    }
    let succeeded = ws
        .cmd(["runs", "--status", "succeeded", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(succeeded.as_array().unwrap().len(), 1);
    assert_eq!(succeeded[0]["id"], good.as_str());
    let none = ws
        .cmd(["runs", "--status", "aborted", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(none, serde_json::json!([]));
    ws.cmd(["runs", "--status", "nonsense"]).run().status(2);

    ws.cmd(["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
        .run()
        .status(2)
        .stderr_has("no run with id");
    ws.cmd(["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--json"])
        .run()
        .status(2);
}

#[test]
fn a_reader_that_goes_away_does_not_stop_the_run() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    ws.runbook(
        "chatty",
        "runbook: chatty\ntitle: Chatty\nsteps:\n  - id: a\n    shell: sleep 0.3\n  - id: b\n    shell: \"true\"\n",
    );
    let mut child = ws.cmd(["run", "chatty"]).command().spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    // The reader is gone (like `| head -1`); the run must still finish and be journaled.
    let status = child.wait().unwrap();
    assert!(first.starts_with("run "), "{first}");
    assert_eq!(status.code(), Some(0));
    let finished: i64 = ws
        .journal()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'run_finished'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(finished, 1);
}

/// Runs `opsbook ARGS` on a terminal (script(1) gives it one) and types `answers` into it.
fn run_on_a_terminal(ws: &Workspace, args: &str, answers: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} {args} --no-progress", crate::support::BIN),
            "/dev/null",
        ])
        .current_dir(ws.path())
        .env("OPSBOOK_DB", ws.db())
        .env("OPSBOOK_RUNBOOKS", ws.path().join("runbooks"))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_manual_step_and_a_gate_are_answered_at_the_terminal() {
    let ws = Workspace::new();
    ws.runbook(
        "attended",
        "runbook: attended\ntitle: Attended\nsteps:\n  - id: look\n    manual: Look at the dashboard\n  - id: approve\n    gate: { prompt: Go ahead, evidence: required }\n  - id: after\n    shell: \"true\"\n",
    );
    // done + no comment; approve + evidence + sign as the runner.
    let (code, screen) = run_on_a_terminal(&ws, "run attended", "d\n\na\ndashboard is green\n\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("manual step look"), "{screen}");
    let ev = all_events(&ws);
    // Ticking a manual step off is a sign-off by the runner: "approved" means done.
    assert_eq!(
        one(&ev, "signoff_recorded", "look").body["decision"],
        "approved"
    );
    let signed = one(&ev, "signoff_recorded", "approve");
    assert_eq!(signed.body["decision"], "approved");
    assert_eq!(signed.body["comment"], "dashboard is green");
    assert_eq!(of_kind(&ev, "run_finished")[0].body["status"], "succeeded");
}

#[test]
fn a_gate_rejected_at_the_terminal_ends_the_run_rejected() {
    let ws = Workspace::new();
    ws.runbook(
        "refused",
        "runbook: refused\ntitle: Refused\nsteps:\n  - id: approve\n    gate: { prompt: Go ahead }\n  - id: after\n    shell: \"true\"\n",
    );
    let (code, screen) = run_on_a_terminal(&ws, "run refused", "r\nnot today\n\n");
    assert_eq!(code, Some(4), "{screen}");
    let ev = all_events(&ws);
    assert_eq!(
        one(&ev, "signoff_recorded", "approve").body["decision"],
        "rejected"
    );
    assert!(started_steps(&ev).iter().all(|s| s != "after"));
}
