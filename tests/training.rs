//! Training: a trainee runs under a supervisor who signs for them and accepts or rejects the
//! run; accepted runs count towards the qualification a runbook asks for; test scripts
//! (`kind: test`) check each step's expectation.

use crate::support::journal::{events, of_kind};
use crate::support::people::{act, gate_runbook, signoff, team};
use crate::support::{show_json, step_view, Workspace};

#[test]
fn a_trainee_cannot_sign_their_own_gate_and_the_supervisor_can() {
    let ws = Workspace::new();
    team(&ws, &[("sue", "supervisor"), ("tim", "trainee")]);
    // role trainee: the role is not why tim is refused.
    gate_runbook(&ws, "own", ", role: trainee");
    let run = act(
        &ws,
        "tim",
        ["run", "own", "--supervisor", "sue", "--trainee"],
    )
    .run()
    .status(3)
    .stdout("
        run [RUN] own v1
        Gate own — 3 step(s), operator tim
        ✓ prep                     succeeded [DURATION]
        … check                    parked     — gate `check` waits: the supervisor sue (a training run)
          check asks: Is it fine?
          sign it from any terminal: opsbook signoff [RUN] --step check --approve [--comment TEXT] --as NAME
          binding [HASH]
        run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
        ")
    .stderr("");
    let id = run.run_id();

    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: tim is the trainee on this run and cannot sign their own steps; the supervisor sue signs\n");
    let evs = events(&ws, &id);
    let refused = of_kind(&evs, "signoff_refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].body["signer"], "tim");
    assert_eq!(refused[0].step.as_deref(), Some("check"));
    assert!(of_kind(&evs, "signoff_recorded").is_empty());

    signoff(&ws, "sue", &id, &["--approve"]).status(0).stdout(
        "approved step `check` of run [RUN] as sue; continue the run with: opsbook resume [RUN]\n",
    );
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["signer"], "sue");
    assert_eq!(recorded[0].body["decision"], "approved");
    assert_eq!(recorded[0].body["auth"], "passphrase");
}

/// One supervised run of `drill` by tim under sue, signed by sue; returns its id.
fn supervised_drill(ws: &Workspace) -> String {
    let id = act(ws, "tim", ["run", "drill", "--supervisor", "sue"])
        .run()
        .status(3)
        .run_id();
    signoff(ws, "sue", &id, &["--approve"]).status(0);
    act(ws, "tim", ["resume", &id]).run().status(3);
    signoff(ws, "sue", &id, &["--approve"]).status(0);
    act(ws, "tim", ["resume", &id])
        .run()
        .status(3)
        .stdout("
            run [RUN] drill v1 (resumed)
            Drill — resumed by tim
            ✓ look                     succeeded  — done before the resume
            ✓ approve-it               succeeded  — done before the resume
            ✓ tick                     succeeded [DURATION] — done, signed by sue
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. It awaits acceptance by the supervisor sue: opsbook signoff [RUN] --accept (or --reject-run) --as sue
            ");
    id
}

#[test]
fn a_trainee_runs_under_a_supervisor_until_qualified() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("sue", "supervisor"),
            ("tim", "trainee"),
            ("olga", "operator"),
        ],
    );
    ws.runbook(
        "drill",
        "
        runbook: drill
        title: Drill
        qualification: { supervised_runs: 2 }
        steps:
          - id: look
            shell: echo looked
          - id: approve-it
            gate: { prompt: Go on?, role: operator }
          - id: tick
            manual: Tick the box
        ",
    );
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr("error: refused to start: tim is a trainee with 0 of 2 accepted supervised runs of `drill`: 2 more needed before running it unsupervised (run it with --supervisor NAME)\n");

    // Run 1, step by step: tim's own sign-offs are refused, sue's count.
    let id = act(
        &ws,
        "tim",
        ["run", "drill", "--supervisor", "sue", "--trainee"],
    )
    .run()
    .status(3)
    .stdout("
        run [RUN] drill v1
        Drill — 3 step(s), operator tim
        ✓ look                     succeeded [DURATION]
        … approve-it               parked     — gate `approve-it` waits: the supervisor sue (a training run)
          approve-it asks: Go on?
          sign it from any terminal: opsbook signoff [RUN] --step approve-it --approve [--comment TEXT] --as NAME
          binding [HASH]
        run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
        ");
    let id = id.run_id();
    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: tim is the trainee on this run and cannot sign their own steps; the supervisor sue signs\n");
    signoff(&ws, "olga", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: this is a supervised training run: only the supervisor sue signs, not olga\n");
    signoff(&ws, "sue", &id, &["--approve"]).status(0);
    act(&ws, "tim", ["resume", &id])
        .run()
        .status(3)
        .stdout("
            run [RUN] drill v1 (resumed)
            Drill — resumed by tim
            ✓ look                     succeeded  — done before the resume
            ✓ approve-it               succeeded [DURATION] — approved by sue
            … tick                     parked     — manual step `tick` waits: the supervisor sue (a training run)
              tick asks: Tick the box
              sign it from any terminal: opsbook signoff [RUN] --step tick --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (2 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ");
    assert_eq!(show_json(&ws, &id)["paused"]["step"], "tick");
    signoff(&ws, "tim", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: tim is the trainee on this run and cannot sign their own steps; the supervisor sue signs\n");
    signoff(&ws, "sue", &id, &["--approve"]).status(0).stdout(
        "approved step `tick` of run [RUN] as sue; continue the run with: opsbook resume [RUN]\n",
    );
    act(&ws, "tim", ["resume", &id])
        .run()
        .status(3)
        .stdout("
            run [RUN] drill v1 (resumed)
            Drill — resumed by tim
            ✓ look                     succeeded  — done before the resume
            ✓ approve-it               succeeded  — done before the resume
            ✓ tick                     succeeded [DURATION] — done, signed by sue
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. It awaits acceptance by the supervisor sue: opsbook signoff [RUN] --accept (or --reject-run) --as sue
            ");
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "awaiting-acceptance");
    assert_eq!(view["outcome"], "succeeded");
    let evs = events(&ws, &id);
    let signers: Vec<(&str, &str)> = of_kind(&evs, "signoff_recorded")
        .iter()
        .map(|e| {
            (
                e.step.as_deref().unwrap(),
                e.body["signer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(signers, [("approve-it", "sue"), ("tick", "sue")]);
    let refused: Vec<&str> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| e.body["signer"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["tim", "olga", "tim"]);
    // Only the supervisor accepts.
    signoff(&ws, "tim", &id, &["--accept"])
        .status(5)
        .stderr("error: only the supervisor sue accepts or rejects this training run, not tim\n");
    signoff(&ws, "sue", &id, &["--accept"])
        .status(0)
        .stdout("training run [RUN] accepted by sue\n");
    assert_eq!(show_json(&ws, &id)["status"], "succeeded");
    signoff(&ws, "sue", &id, &["--reject-run"])
        .status(5)
        .stderr(
        "error: training run [RUN]: already decided by sue at [TIME]: accepted; nothing changed\n",
    );

    let record = ws.cmd(["training", "tim", "--json"]).run().status(0).json();
    assert_eq!(record[0]["supervised_runs"], 1);
    assert_eq!(record[0]["accepted"], 1);
    assert_eq!(record[0]["qualified"], false);
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr("error: refused to start: tim is a trainee with 1 of 2 accepted supervised runs of `drill`: 1 more needed before running it unsupervised (run it with --supervisor NAME)\n");

    // Run 2 is rejected by the supervisor: it does not count.
    let rejected = supervised_drill(&ws);
    signoff(
        &ws,
        "sue",
        &rejected,
        &["--reject-run", "--comment", "too hasty"],
    )
    .status(0)
    .stdout("training run [RUN] rejected by sue\n");
    assert_eq!(show_json(&ws, &rejected)["status"], "rejected");
    act(&ws, "tim", ["run", "drill"])
        .run()
        .status(5)
        .stderr("error: refused to start: tim is a trainee with 1 of 2 accepted supervised runs of `drill`: 1 more needed before running it unsupervised (run it with --supervisor NAME)\n");

    // Run 3 is accepted: tim is qualified and runs it unsupervised.
    let accepted = supervised_drill(&ws);
    signoff(&ws, "sue", &accepted, &["--accept"]).status(0);
    let record = ws.cmd(["training", "tim", "--json"]).run().status(0).json();
    assert_eq!(record.as_array().unwrap().len(), 1, "{record:#}");
    assert_eq!(record[0]["runbook"], "drill");
    assert_eq!(record[0]["supervised_runs"], 3);
    assert_eq!(record[0]["accepted"], 2);
    assert_eq!(record[0]["rejected"], 1);
    assert_eq!(record[0]["awaiting"], 0);
    assert_eq!(record[0]["qualified"], true);
    // The day the last supervised run started (UTC).
    let last = &record[0]["last_run"].as_str().unwrap()[..10];
    let line = format!(
        "tim              drill                    3 supervised, 2 accepted, 1 rejected, 0 awaiting; last {last}; qualified (2 needed)\n"
    );
    ws.cmd(["training", "tim"]).run().status(0).stdout(&line);
    ws.cmd(["training"]).run().status(0).stdout(&line);
    let alone = act(&ws, "tim", ["run", "drill", "--non-interactive"])
        .run()
        .status(3)
        .stdout("
            run [RUN] drill v1
            Drill — 3 step(s), operator tim
            ✓ look                     succeeded [DURATION]
            … approve-it               parked     — gate `approve-it` waits: role operator or above
              approve-it asks: Go on?
              sign it from any terminal: opsbook signoff [RUN] --step approve-it --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ");
    let alone_id = alone.run_id();
    let alone_events = events(&ws, &alone_id);
    let started = &of_kind(&alone_events, "run_started")[0].body;
    assert!(started.get("supervisor").is_none(), "{started:#}");
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs.as_array().unwrap().len(), 4);
}

#[test]
fn a_test_script_reports_each_expectation_and_fails_on_a_miss() {
    let ws = Workspace::new();
    ws.runbook(
        "expectations",
        r#"
        runbook: expectations
        title: Expectations
        kind: test
        steps:
          - id: meets
            rhai: set("x", 42);
            expect: outputs.x == 42
          - id: misses
            rhai: set("x", 41);
            expect: outputs.x == 42
        "#,
    );
    let out = ws
        .cmd(["run", "expectations"])
        .run()
        .status(1)
        .stdout(r#"
            run [RUN] expectations v1
            Expectations — 2 step(s), operator [USER] (unverified)
            ✓ meets                    succeeded [DURATION]
            ✗ misses                   failed [DURATION] — expectation `outputs.x == 42` not met: outputs were {"x":41}
            run [RUN] failed in [DURATION]: 1 succeeded, 1 failed, expectations: 1 of 2 passed. Details: opsbook show [RUN]
            "#);
    let id = out.run_id();
    let evs = events(&ws, &id);
    let checked: Vec<(&str, bool)> = of_kind(&evs, "expectation_checked")
        .iter()
        .map(|e| {
            (
                e.step.as_deref().unwrap(),
                e.body["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(checked, [("meets", true), ("misses", false)]);
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "failed");
    assert_eq!(step_view(&view, "meets")["status"], "succeeded");
    assert_eq!(step_view(&view, "misses")["status"], "failed");
}
