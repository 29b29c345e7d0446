//! `opsbook run`: timeouts, retries, failure policies, rollback, parameters, dry runs,
//! parking, the journal's hash chain, Ctrl-C, parallel groups, conditions and outputs,
//! secrets, and the listings of runs.

use std::time::{Duration, Instant};

use crate::support::journal::{
    all_events, events, first_break, journal_bytes, kinds, of_kind, of_step, one, started_steps,
    wait_for_event,
};
use crate::support::process::{on_a_terminal, processes_with};
use crate::support::{show_json, step_view, Output, Workspace};

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
            // Tests that kill engines run beside this one, and their orphans wait for PID 1 to
            // reap them: those zombies say nothing about this machine's health.
            "-p",
            "max_zombies=100000",
        ])
        .run()
        // The exception to whole outputs: what the checks find depends on this machine.
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

fn run(ws: &Workspace, runbook: &str) -> Output {
    ws.cmd(["run", runbook, "--non-interactive"]).run()
}

// ----- 1. timeouts ---------------------------------------------------------------------------

#[test]
fn rhai_infinite_loop_times_out() {
    let ws = Workspace::new();
    ws.runbook(
        "spin",
        "
        runbook: spin
        title: Spin
        steps:
          - id: spin
            timeout: 2s
            rhai: |
              loop {}
        ",
    );
    let out = run(&ws, "spin")
        .status(1)
        .stdout(
            "
            run [RUN] spin v1
            Spin — 1 step(s), operator [USER] (unverified)
            ✗ spin                     failed [DURATION] — timed out after [DURATION]
            run [RUN] failed in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
            "
            runbook: hang
            title: Hang
            steps:
              - id: hang
                timeout: 1s
                shell: sleep {marker} & sleep {marker}
            "
        ),
    );
    let started = Instant::now();
    let child = ws.cmd(["run", "hang", "--non-interactive"]).spawn();
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
    let out = child.finish().status(1).stdout("
        run [RUN] hang v1
        Hang — 1 step(s), operator [USER] (unverified)
        ✗ hang                     failed [DURATION] — timed out after [DURATION]; every process it started was stopped
        run [RUN] failed in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
        ").stderr("");
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
    let ev = events(&ws, &out.run_id());
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
        "
        runbook: flaky
        title: Flaky
        steps:
          - id: fails
            shell: echo nope >&2; exit 7
            retry: { attempts: 3, delay: 100ms }
        ",
    );
    let out = run(&ws, "flaky")
        .status(1)
        .stdout(
            "
            run [RUN] flaky v1
            Flaky — 1 step(s), operator [USER] (unverified)
            ✗ fails                    failed [DURATION] — exit code 7: nope (after 3 attempts)
            run [RUN] failed in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
            r#"
            runbook: second
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
    let out = run(&ws, "second")
        .status(0)
        .stdout(
            "
            run [RUN] second v1
            Succeeds the second time — 1 step(s), operator [USER] (unverified)
            ✓ second                   succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
        r#"
        runbook: rb
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
    let out = run(&ws, "rb")
        .status(1)
        .stdout("
            run [RUN] rb v1
            Rolls back — 3 step(s), operator [USER] (unverified)
            ✓ prepare                  succeeded [DURATION]
            ✗ migrate                  failed [DURATION] — exit code 3
            step `migrate` failed; rolling back: cleanup, undo-announce, undo-prepare
            ✓ cleanup                  succeeded [DURATION]
            - undo-announce            skipped    — it undoes `announce`, which did not run
            ✓ undo-prepare             succeeded [DURATION]
            run [RUN] failed in [DURATION]: 1 succeeded, 1 failed, rollback: 2 of 3 steps done, 0 failed. Details: opsbook show [RUN]
            ")
        .stderr("");
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
        "
        runbook: cont
        title: Continues
        steps:
          - id: broken
            shell: exit 1
            on_failure: continue
          - id: after
            shell: echo still here
        ",
    );
    let out = run(&ws, "cont")
        .status(1)
        .stdout(
            "
            run [RUN] cont v1
            Continues — 2 step(s), operator [USER] (unverified)
            ✗ broken                   failed [DURATION] — exit code 1
            ✓ after                    succeeded [DURATION]
            run [RUN] failed in [DURATION]: 1 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
            "
            runbook: stop
            title: Stops
            steps:
              - id: broken
                shell: exit 1
              - id: later
                shell: touch '{}'
            ",
            never.display()
        ),
    );
    let out = run(&ws, "stop")
        .status(1)
        .stdout(
            "
            run [RUN] stop v1
            Stops — 2 step(s), operator [USER] (unverified)
            ✗ broken                   failed [DURATION] — exit code 1
            run [RUN] failed in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
        "
        runbook: echo
        title: Echo
        params:
          host: { type: string, required: true }
        steps:
          - id: say
            shell: echo {{ params.host }}
        ",
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
        .status(0)
        .stdout(
            "
            run [RUN] echo v1
            Echo — 1 step(s), operator [USER] (unverified)
            ✓ say                      succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
            r#"
            runbook: dry
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
        .stdout(r#"
            run [RUN] dry v1 (dry run)
            Dry — 3 step(s), operator [USER] (unverified)
            ✓ look                     succeeded [DURATION]
            ~ change                   would-run  — would run: touch '[ROOT]/changed' "${OPSBOOK_PARAM_TARGET}"  # OPSBOOK_PARAM_TARGET=db1
            ~ script                   would-run  — would run: rhai: fail("must not run");
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed, 2 would-run. Details: opsbook show [RUN]
            "#)
        .stderr("");
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
        r#"
        runbook: manual
        title: Manual
        steps:
          - id: before
            shell: "true"
          - id: tick
            manual: Post the notice in the channel
          - id: after
            shell: "true"
        "#,
    );
    // No --non-interactive: stdin is a pipe, so nobody can answer.
    let out = ws
        .cmd(["run", "manual"])
        .stdin("d\n")
        .run()
        .status(3)
        .stdout("
            run [RUN] manual v1
            Manual — 3 step(s), operator [USER] (unverified)
            ✓ before                   succeeded [DURATION]
            … tick                     parked     — manual step `tick` waits: the operator running it ticks it off (or anyone, with `opsbook signoff`)
              tick asks: Post the notice in the channel
              sign it from any terminal: opsbook signoff [RUN] --step tick --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ")
        .stderr("");
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

#[test]
fn the_journal_is_contiguous_and_hash_chained_and_an_edit_is_detected() {
    let ws = Workspace::new();
    ws.runbook(
        "chain",
        r#"
        runbook: chain
        title: Chain
        steps:
          - id: one
            shell: echo one
          - id: two
            rhai: |
              set("x", 1);
              log("two");
        "#,
    );
    let first = run(&ws, "chain")
        .status(0)
        .stdout(
            "
            run [RUN] chain v1
            Chain — 2 step(s), operator [USER] (unverified)
            ✓ one                      succeeded [DURATION]
            ✓ two                      succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 2 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("")
        .run_id();
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
    assert_eq!(all[0].raw.prev_hash, "0".repeat(64));
    for pair in all.windows(2) {
        assert_eq!(pair[1].raw.prev_hash, pair[0].raw.hash);
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
        .stdout("intact: the journal: 16 events verified; head [HASH]\n")
        .stderr("");

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
        .stdout("BROKEN: the journal: event 7: its content does not match its hash (the event was edited)\n")
        .stderr("");
    ws.cmd(["audit", "verify", &first])
        .run()
        .status(1)
        .stdout("BROKEN: run [RUN]: event 7: its content does not match its hash (the event was edited)\n")
        .stderr("");
}

// ----- 8. Ctrl-C -------------------------------------------------------------------------------

#[test]
fn ctrl_c_stops_the_run_after_the_current_step() {
    let ws = Workspace::new();
    ws.runbook(
        "slow",
        "
        runbook: slow
        title: Slow
        steps:
          - id: first
            shell: sleep 1
          - id: second
            shell: sleep 5
        ",
    );
    let mut child = ws.cmd(["run", "slow", "--non-interactive"]).spawn();
    let id = child.first_line_run_id();
    wait_for_event(&ws, "step_started", "first");
    child.interrupt();
    child
        .finish()
        .status(4)
        .stdout(
            "
            run [RUN] slow v1
            Slow — 2 step(s), operator [USER] (unverified)
            stopping after this step (Ctrl-C again to stop it now)
            ✓ first                    succeeded [DURATION]
            stopped at the operator's request before the next step
            run [RUN] aborted in [DURATION]: 1 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
        r#"
        runbook: retrying
        title: Retrying
        steps:
          - id: flaky
            shell: exit 1
            retry: { attempts: 3, delay: 5s }
          - id: later
            shell: "true"
        "#,
    );
    let mut child = ws.cmd(["run", "retrying", "--non-interactive"]).spawn();
    let id = child.first_line_run_id();
    // The first attempt failed; the engine now waits 5s before the second.
    wait_for_event(&ws, "attempt_finished", "flaky");
    child.interrupt();
    let out = child
        .finish()
        .stdout(
            "
            run [RUN] retrying v1
            Retrying — 2 step(s), operator [USER] (unverified)
            stopping after this step (Ctrl-C again to stop it now)
            ✗ flaky                    failed [DURATION] — exit code 1
            stopped at the operator's request before the next step
            run [RUN] aborted in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
    let ev = events(&ws, &id);
    assert_eq!(of_step(&ev, "attempt_finished", "flaky").len(), 1);
    assert_eq!(started_steps(&ev), ["flaky"]);
    assert_eq!(
        of_kind(&ev, "abort_requested").len(),
        1,
        "the operator's Ctrl-C is not in the journal: {:#?}",
        kinds(&ev)
    );
    out.status(4);
}

// ----- 9. parallel groups ----------------------------------------------------------------------

#[test]
fn a_parallel_group_runs_its_members_at_once() {
    let ws = Workspace::new();
    ws.runbook(
        "par",
        "
        runbook: par
        title: Parallel
        steps:
          - id: both
            parallel:
              - id: left
                shell: sleep 1
              - id: right
                shell: sleep 1
        ",
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
        r#"
        runbook: parfail
        title: Parallel failure
        steps:
          - id: group
            parallel:
              - id: good
                shell: "true"
              - id: bad
                shell: exit 2
          - id: after
            shell: "true"
        "#,
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
            r#"
            runbook: cond
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
    let out = run(&ws, "cond")
        .status(0)
        .stdout("
            run [RUN] cond v1
            Conditions — 2 step(s), operator [USER] (unverified)
            - never                    skipped    — condition `when: params.n > 5` is false
            ✓ always                   succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed, 1 skipped. Details: opsbook show [RUN]
            ")
        .stderr("");
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
        r#"
        runbook: vars
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
    let out = run(&ws, "vars")
        .status(0)
        .stdout(
            "
            run [RUN] vars v1
            Outputs — 3 step(s), operator [USER] (unverified)
            ✓ calc                     succeeded [DURATION]
            ✓ echo                     succeeded [DURATION]
            ✓ check                    succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
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
        r#"
        runbook: skip
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
    let out = run(&ws, "skip")
        .status(0)
        .stdout("
            run [RUN] skip v1
            Skips — 2 step(s), operator [USER] (unverified)
            - maybe                    skipped [DURATION] — no systemd on this host
            ✓ next                     succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed, 1 skipped. Details: opsbook show [RUN]
            ")
        .stderr("");
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
        r#"
        runbook: secret
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
        .status(1)
        .stdout(
            "
            run [RUN] secret v1
            Secret — 3 step(s), operator [USER] (unverified)
            ✓ shell-echo               succeeded [DURATION]
            ✓ rhai-log                 succeeded [DURATION]
            ✗ fails                    failed [DURATION] — bad token *** (script line 1, column 1)
            run [RUN] failed in [DURATION]: 2 succeeded, 1 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
    let id = out.run_id();
    assert!(!out.stdout.contains(&secret), "stdout:\n{}", out.stdout);
    assert!(!out.stderr.contains(&secret), "stderr:\n{}", out.stderr);
    let show = ws
        .cmd(["show", &id])
        .run()
        .status(0)
        .stdout(
            "
            run [RUN]  secret v1 — Secret
            status:   failed
            operator: [USER] (identity not verified) on [HOST]
            started:  [TIME]
            finished: [TIME]
            params:   token=***
            runbook:  [ROOT]/runbooks/secret.yaml (sha256 b1a9751867ce6686)

            ✓ shell-echo (shell)  succeeded  shell-echo
                attempt 1: succeeded, exit 0, [DURATION]
                  | token=***
                  | [stderr]
                  | env=***
            ✓ rhai-log (rhai)  succeeded  rhai-log
                attempt 1: succeeded, [DURATION]
                  outputs: copy=***
                  | the token is ***
                  | ***
            ✗ fails (rhai)  failed  fails
                bad token *** (script line 1, column 1)
                attempt 1: failed, [DURATION] — bad token *** (script line 1, column 1)

            2 succeeded, 1 failed
            ",
        )
        .stderr("");
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
        "
        runbook: quoted
        title: Quoted
        params:
          token: { type: string, secret: true, env: MY_SECRET, required: true }
        steps:
          - id: login
            shell: login --token {{ params.token }}
        ",
    );
    let out = ws
        .cmd(["run", "quoted", "--dry-run", "--non-interactive"])
        .env("MY_SECRET", &secret)
        .run()
        .status(0)
        .stdout(r#"
            run [RUN] quoted v1 (dry run)
            Quoted — 1 step(s), operator [USER] (unverified)
            ~ login                    would-run  — would run: login --token "${OPSBOOK_PARAM_TOKEN}"  # OPSBOOK_PARAM_TOKEN=***
            run [RUN] succeeded in [DURATION]: 0 succeeded, 0 failed, 1 would-run. Details: opsbook show [RUN]
            "#)
        .stderr("");
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
        r#"
        runbook: pin
        title: Pin
        params:
          pin: { type: int, secret: true, env: MY_PIN, required: true }
        steps:
          - id: use
            shell: "true"
        "#,
    );
    let out = ws
        .cmd(["run", "pin", "--non-interactive"])
        .env("MY_PIN", &secret)
        .run()
        .status(2)
        .stdout("")
        .stderr("error: parameter `pin`: must be a whole number, not `the value given`\n");
    assert!(!out.stderr.contains(&secret), "stderr: {}", out.stderr);
    assert!(!out.stdout.contains(&secret), "stdout: {}", out.stdout);
}

// ----- 12. listings --------------------------------------------------------------------------------

#[test]
fn runs_filters_by_status_and_show_refuses_an_unknown_id() {
    let ws = Workspace::new();
    ws.runbook(
        "ok",
        r#"
        runbook: ok
        title: Ok
        steps:
          - id: fine
            shell: "true"
        "#,
    );
    ws.runbook(
        "bad",
        "
        runbook: bad
        title: Bad
        steps:
          - id: broken
            shell: exit 1
        ",
    );
    let good = run(&ws, "ok").status(0).run_id();
    let failed = run(&ws, "bad").status(1).run_id();
    let failed_again = run(&ws, "bad").status(1).run_id();

    let all = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    ws.cmd(["runs", "--status", "failed"])
        .run()
        .status(0)
        .stdout(
            "
            [RUN]  bad                  v1   failed           [TIME]  [USER]
            [RUN]  bad                  v1   failed           [TIME]  [USER]
            ",
        )
        .stderr("");

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
    ws.cmd(["runs", "--status", "nonsense"])
        .run()
        .status(2)
        .stdout("")
        .stderr("error: --status nonsense: use one of running, interrupted, awaiting-signoff, awaiting-acceptance, succeeded, failed, aborted, rejected\n");

    ws.cmd(["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
        .run()
        .status(2)
        .stdout("")
        .stderr("error: no run with id `[RUN]` in the journal; `opsbook runs` lists the runs\n");
    ws.cmd(["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--json"])
        .run()
        .status(2)
        .stdout("")
        .stderr("error: no run with id `[RUN]` in the journal; `opsbook runs` lists the runs\n");
}

#[test]
fn a_reader_that_goes_away_does_not_stop_the_run() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    ws.runbook(
        "chatty",
        r#"
        runbook: chatty
        title: Chatty
        steps:
          - id: a
            shell: sleep 0.3
          - id: b
            shell: "true"
        "#,
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

#[test]
fn a_manual_step_and_a_gate_are_answered_at_the_terminal() {
    let ws = Workspace::new();
    ws.runbook(
        "attended",
        r#"
        runbook: attended
        title: Attended
        steps:
          - id: look
            manual: Look at the dashboard
          - id: approve
            gate: { prompt: Go ahead, evidence: required }
          - id: after
            shell: "true"
        "#,
    );
    // done + no comment; approve + evidence + sign as the runner.
    // The terminal echoes the answers among the prompts: the screen is searched, not compared.
    on_a_terminal(&ws, "run attended", "d\n\na\ndashboard is green\n\n")
        .status(0)
        .stdout_has("manual step look")
        .stdout_has("✓ after                    succeeded");
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
        r#"
        runbook: refused
        title: Refused
        steps:
          - id: approve
            gate: { prompt: Go ahead }
          - id: after
            shell: "true"
        "#,
    );
    on_a_terminal(&ws, "run refused", "r\nnot today\n\n")
        .status(4)
        .stdout_has("! approve                  rejected");
    let ev = all_events(&ws);
    assert_eq!(
        one(&ev, "signoff_recorded", "approve").body["decision"],
        "rejected"
    );
    assert!(started_steps(&ev).iter().all(|s| s != "after"));
}
