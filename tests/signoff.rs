//! Sign-offs at gates: who may sign (roles, aliases of one person, four eyes, allow-lists,
//! M-of-N approvals, evidence, passphrases), parking and signing from another terminal, the
//! binding that ties a sign-off to one run, and two decisions racing for one gate.

use crate::support::journal::{count, events, of_kind, wait_for_event};
use crate::support::people::{act, alias, binding, gate_runbook, park, signoff, team};
use crate::support::{show_json, step_view, Workspace};

// ----- who may sign --------------------------------------------------------------------------

#[test]
fn an_alias_of_an_approver_is_not_a_second_approver() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("olga", "operator"),
        ],
    );
    alias(&ws, "ann", "ann2", "supervisor", "ann");
    ws.cmd(["operator", "list"]).run().status(0).stdout(
        "
        ann                  supervisor
        ann2                 supervisor (alias of ann)
        bob                  supervisor
        olga                 operator  
        ",
    );
    let listed = ws
        .cmd(["operator", "list", "--json"])
        .run()
        .status(0)
        .json();
    let ann2 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "ann2")
        .expect("ann2 listed");
    assert_eq!(ann2["person"], "ann");

    gate_runbook(&ws, "two", ", role: supervisor, min_approvals: 2");
    let id = park(&ws, "olga", "two")
        .stdout(
            "
            run [RUN] two v1
            Gate two — 3 step(s), operator olga
            ✓ prep                     succeeded [DURATION]
            … check                    parked     — gate `check` waits: role supervisor or above, 2 different people
              check asks: Is it fine?
              sign it from any terminal: opsbook signoff [RUN] --step check --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ",
        )
        .stderr("")
        .run_id();

    signoff(&ws, "ann", &id, &["--approve"])
        .status(0)
        .stdout(
            "approved step `check` of run [RUN] as ann; 1 of 2 approvals; another person must approve\n",
        )
        .stderr("");
    signoff(&ws, "ann2", &id, &["--approve"])
        .status(5)
        .stdout("")
        .stderr(
            "error: sign-off refused: ann has already approved this step (as ann); another person must give the next approval\n",
        );
    assert_eq!(count(&ws, &id, "signoff_refused"), 1);
    // One person's approval is not two: the run parks again.
    act(&ws, "olga", ["resume", &id, "--non-interactive"])
        .run()
        .status(3)
        .stdout(
            "
            run [RUN] two v1 (resumed)
            Gate two — resumed by olga
            ✓ prep                     succeeded  — done before the resume
            … check                    parked     — gate `check` waits: role supervisor or above, 2 different people
              check asks: Is it fine?
              sign it from any terminal: opsbook signoff [RUN] --step check --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ",
        );
    assert_eq!(show_json(&ws, &id)["status"], "awaiting-signoff");

    signoff(&ws, "bob", &id, &["--approve"]).status(0).stdout(
        "approved step `check` of run [RUN] as bob; continue the run with: opsbook resume [RUN]\n",
    );
    act(&ws, "olga", ["resume", &id, "--non-interactive"])
        .run()
        .status(0)
        .stdout(
            "
            run [RUN] two v1 (resumed)
            Gate two — resumed by olga
            ✓ prep                     succeeded  — done before the resume
            ✓ check                    succeeded [DURATION] — approved by ann, bob
            ✓ after                    succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    let gate = step_view(&view, "check");
    let persons: Vec<&str> = gate["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["person"].as_str().unwrap())
        .collect();
    assert_eq!(persons, ["ann", "bob"]);
}

#[test]
fn four_eyes_refuses_the_runner_even_under_an_alias() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    alias(&ws, "ann", "ann2", "supervisor", "ann");
    gate_runbook(&ws, "fe", ", role: supervisor, four_eyes: true");
    let id = park(&ws, "ann", "fe")
        .stdout(
            "
            run [RUN] fe v1
            Gate fe — 3 step(s), operator ann
            ✓ prep                     succeeded [DURATION]
            … check                    parked     — gate `check` waits: role supervisor or above, not ann (four eyes)
              check asks: Is it fine?
              sign it from any terminal: opsbook signoff [RUN] --step check --approve [--comment TEXT] --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ",
        )
        .run_id();

    signoff(&ws, "ann", &id, &["--approve"])
        .status(5)
        .stdout("")
        .stderr("error: sign-off refused: four eyes: ann started this run (as ann), so someone else must sign\n");
    signoff(&ws, "ann2", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: four eyes: ann started this run (as ann), so someone else must sign\n");
    // Rejecting one's own gate is signing it too.
    signoff(&ws, "ann2", &id, &["--reject"])
        .status(5)
        .stderr("error: sign-off refused: four eyes: ann started this run (as ann), so someone else must sign\n");
    let evs = events(&ws, &id);
    let refused: Vec<&str> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| e.body["signer"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["ann", "ann2", "ann2"]);
    assert!(of_kind(&evs, "signoff_recorded").is_empty());

    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    assert_eq!(show_json(&ws, &id)["status"], "succeeded");
}

#[test]
fn only_the_approvers_listed_may_sign() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("cy", "supervisor"),
            ("bob", "operator"),
        ],
    );
    gate_runbook(&ws, "listed", ", approvers: [bob]");
    let id = park(&ws, "ann", "listed").run_id();

    // A supervisor outside the list, and the runner, are refused.
    signoff(&ws, "cy", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: cy is not one of the approvers of this gate (bob)\n");
    signoff(&ws, "ann", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: ann is not one of the approvers of this gate (bob)\n");
    assert_eq!(count(&ws, &id, "signoff_refused"), 2);
    signoff(&ws, "bob", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    let view = show_json(&ws, &id);
    assert_eq!(step_view(&view, "check")["signoffs"][0]["signer"], "bob");
}

#[test]
fn a_role_below_the_gates_role_is_refused() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("olga", "operator"),
            ("tim", "trainee"),
        ],
    );
    ws.runbook(
        "roles",
        "
        runbook: roles
        title: Roles
        steps:
          - id: op-gate
            gate: { prompt: An operator's call, role: operator }
          - id: sup-gate
            gate: { prompt: A supervisor's call, role: supervisor }
        ",
    );
    let id = park(&ws, "ann", "roles").run_id();

    signoff(&ws, "tim", &id, &["--approve"]).status(5).stderr(
        "error: sign-off refused: tim has the role trainee; this step needs operator or above\n",
    );
    signoff(&ws, "olga", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id, "--non-interactive"])
        .run()
        .status(3);
    signoff(&ws, "olga", &id, &["--step", "sup-gate", "--approve"])
        .status(5)
        .stderr("error: sign-off refused: olga has the role operator; this step needs supervisor or above\n");
    signoff(&ws, "tim", &id, &["--step", "sup-gate", "--reject"])
        .status(5)
        .stderr("error: sign-off refused: tim has the role trainee; this step needs supervisor or above\n");
    let evs = events(&ws, &id);
    let refused: Vec<(Option<&str>, &str)> = of_kind(&evs, "signoff_refused")
        .iter()
        .map(|e| (e.step.as_deref(), e.body["signer"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            (Some("op-gate"), "tim"),
            (Some("sup-gate"), "olga"),
            (Some("sup-gate"), "tim")
        ]
    );
    signoff(&ws, "ann", &id, &["--approve"]).status(0);
    act(&ws, "ann", ["resume", &id]).run().status(0);
    assert_eq!(show_json(&ws, &id)["status"], "succeeded");
}

#[test]
fn required_evidence_needs_a_comment() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "operator")]);
    gate_runbook(&ws, "ev", ", evidence: required, show: [prep]");
    let id = park(&ws, "ann", "ev")
        .stdout(
            "
            run [RUN] ev v1
            Gate ev — 3 step(s), operator ann
            ✓ prep                     succeeded [DURATION]
            … check                    parked     — gate `check` waits: role operator or above, with a comment as evidence
              check asks: Is it fine?
              sign it from any terminal: opsbook signoff [RUN] --step check --approve --comment EVIDENCE --as NAME
              binding [HASH]
            run [RUN] parked (1 succeeded, 0 failed); it waits for a person. Continue it with: opsbook resume [RUN]
            ",
        )
        .run_id();

    signoff(&ws, "bob", &id, &["--approve"]).status(5).stderr(
        "error: sign-off refused: this gate needs evidence: give a comment (--comment TEXT)\n",
    );
    signoff(&ws, "bob", &id, &["--approve", "--comment", "   "])
        .status(5)
        .stderr(
            "error: sign-off refused: this gate needs evidence: give a comment (--comment TEXT)\n",
        );
    assert_eq!(count(&ws, &id, "signoff_refused"), 2);
    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--comment", "restore tested at 02:00"],
    )
    .status(0);
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["comment"], "restore tested at 02:00");
    // The signer saw the shown step's outputs, and they are kept with the sign-off.
    assert_eq!(
        recorded[0].body["evidence"]["prep"]["stdout"], "prepared",
        "{:#}",
        recorded[0].body
    );
}

#[test]
fn operators_are_authenticated_disabled_and_change_passphrases() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "operator")]);
    // Only a supervisor adds operators; a passphrase needs 8 characters.
    act(&ws, "bob", ["operator", "add", "cy", "--role", "operator"])
        .env("OPSBOOK_NEW_PASSPHRASE", "cy-passphrase")
        .run()
        .status(5)
        .stdout("")
        .stderr("error: only a supervisor adds operators: act as one with --as NAME\n");
    act(&ws, "ann", ["operator", "add", "cy", "--role", "operator"])
        .env("OPSBOOK_NEW_PASSPHRASE", "short")
        .run()
        .status(2)
        .stdout("")
        .stderr("error: a passphrase needs at least 8 characters\n");
    gate_runbook(&ws, "auth", "");
    let id = park(&ws, "ann", "auth").run_id();
    ws.cmd(["--as", "bob", "signoff", &id, "--approve"])
        .env("OPSBOOK_PASSPHRASE", "not-bobs-passphrase")
        .run()
        .status(5)
        .stderr("error: wrong passphrase for `bob`\n");

    // bob changes his passphrase: the old one stops working.
    act(&ws, "bob", ["operator", "passwd"])
        .env("OPSBOOK_NEW_PASSPHRASE", "bobs-new-passphrase")
        .run()
        .status(0)
        .stdout("passphrase of bob changed\n");
    signoff(&ws, "bob", &id, &["--approve"])
        .status(5)
        .stderr("error: wrong passphrase for `bob`\n");

    act(&ws, "ann", ["operator", "disable", "bob"])
        .run()
        .status(0)
        .stdout("operator bob disabled\n");
    ws.cmd(["--as", "bob", "signoff", &id, "--approve"])
        .env("OPSBOOK_PASSPHRASE", "bobs-new-passphrase")
        .run()
        .status(5)
        .stderr("error: operator `bob` is disabled\n");
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);
    let list = ws
        .cmd(["operator", "list", "--json"])
        .run()
        .status(0)
        .json();
    let bob = list
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "bob")
        .unwrap();
    assert_eq!(bob["disabled"], true);
}

// ----- park, sign off, resume ------------------------------------------------------------------

#[test]
fn a_parked_run_is_signed_off_then_resumed_and_bindings_tie_sign_offs_to_one_run() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "flow", "");
    let first = park(&ws, "ann", "flow");
    let id = first.run_id();
    let other = park(&ws, "ann", "flow");
    let other_id = other.run_id();
    assert_ne!(binding(&first), binding(&other));
    assert_eq!(binding(&first).len(), 64);
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs[0]["status"], "awaiting-signoff");

    // The binding of another run does not sign this one.
    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--binding", &binding(&other)],
    )
    .status(5)
    .stdout("")
    .stderr("error: sign-off refused: the binding [HASH] does not belong to step `check` of run [RUN] with this runbook text and evidence\n");
    let refused = of_kind(&events(&ws, &id), "signoff_refused").len();
    assert_eq!(refused, 1);
    assert_eq!(count(&ws, &id, "signoff_recorded"), 0);

    signoff(
        &ws,
        "bob",
        &id,
        &["--approve", "--binding", &binding(&first)],
    )
    .status(0)
    .stdout(
        "approved step `check` of run [RUN] as bob; continue the run with: opsbook resume [RUN]\n",
    )
    .stderr("");

    // A late second decision changes nothing, before and after the resume.
    let before = events(&ws, &id).len();
    signoff(&ws, "ann", &id, &["--step", "check", "--reject"])
        .status(5)
        .stderr("error: step `check` of run [RUN]: already decided by bob at [TIME]: approved; nothing changed\n");
    assert_eq!(events(&ws, &id).len(), before);

    act(&ws, "ann", ["resume", &id, "--non-interactive"])
        .run()
        .status(0)
        .stdout(
            "
            run [RUN] flow v1 (resumed)
            Gate flow — resumed by ann
            ✓ prep                     succeeded  — done before the resume
            ✓ check                    succeeded [DURATION] — approved by bob
            ✓ after                    succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr("");
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    assert_eq!(step_view(&view, "after")["status"], "succeeded");
    assert_eq!(step_view(&view, "check")["status"], "succeeded");

    let before = events(&ws, &id).len();
    signoff(&ws, "bob", &id, &["--step", "check", "--reject"])
        .status(5)
        .stderr("error: step `check` of run [RUN]: already decided by bob at [TIME]: succeeded; nothing changed\n");
    assert_eq!(events(&ws, &id).len(), before);
    let evs = events(&ws, &id);
    let recorded = of_kind(&evs, "signoff_recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].body["signer"], "bob");
    assert_eq!(recorded[0].body["binding"], binding(&first).as_str());
    // The other run is untouched.
    assert_eq!(count(&ws, &other_id, "signoff_recorded"), 0);
    ws.cmd(["audit", "verify"])
        .run()
        .status(0)
        .stdout("intact: the journal: 22 events verified; head [HASH]\n");
}

// ----- from another process --------------------------------------------------------------------

#[test]
fn two_concurrent_sign_offs_decide_a_gate_exactly_once() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("cy", "supervisor"),
        ],
    );
    gate_runbook(&ws, "race", ", role: supervisor");
    for round in 0..3 {
        let id = park(&ws, "ann", "race").run_id();
        let approve = act(&ws, "bob", ["signoff", &id, "--approve"]).spawn();
        let reject = act(&ws, "cy", ["signoff", &id, "--reject"]).spawn();
        let (approve, reject) = (approve.finish(), reject.finish());
        let mut codes = [approve.code, reject.code];
        codes.sort();
        assert_eq!(
            codes,
            [0, 5],
            "round {round}: approve {approve:?}, reject {reject:?}"
        );
        let (winner, loser) = if approve.code == 0 {
            (approve, reject)
        } else {
            (reject, approve)
        };
        let decision = if winner.args.contains(&"--approve".to_string()) {
            "approved"
        } else {
            "rejected"
        };
        let signer = winner.args[1].clone();
        winner.stderr("");
        loser.stdout("").stderr(&format!(
            "error: step `check` of run [RUN]: already decided by {signer} at [TIME]: {decision}; nothing changed\n"
        ));
        let evs = events(&ws, &id);
        let recorded = of_kind(&evs, "signoff_recorded");
        assert_eq!(recorded.len(), 1, "round {round}: {recorded:?}");
        assert_eq!(recorded[0].body["decision"], decision);
        let expected_exit = if decision == "approved" { 0 } else { 4 };
        act(&ws, "ann", ["resume", &id]).run().status(expected_exit);
    }
}

#[test]
fn a_waiting_run_continues_when_someone_signs_from_another_process() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "waits", ", four_eyes: true");
    let waiting = act(&ws, "ann", ["run", "waits", "--wait"]).spawn();
    let id = wait_for_event(&ws, "step_started", "check");
    signoff(&ws, "bob", &id, &["--step", "check", "--approve"])
        .status(0)
        .stdout("approved step `check` of run [RUN] as bob; the run continues\n");
    waiting.finish().status(0).stderr("").stdout(
        "
        run [RUN] waits v1
        Gate waits — 3 step(s), operator ann
        ✓ prep                     succeeded [DURATION]
        ✓ check                    succeeded [DURATION] — approved by bob
        ✓ after                    succeeded [DURATION]
        run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
        ",
    );
    let evs = events(&ws, &id);
    assert!(
        of_kind(&evs, "run_paused").is_empty(),
        "a waiting run does not park"
    );
    assert_eq!(of_kind(&evs, "signoff_recorded").len(), 1);
    assert_eq!(show_json(&ws, &id)["status"], "succeeded");
}

#[test]
fn a_sign_off_without_a_step_finds_the_gate_a_waiting_run_waits_at() {
    let ws = Workspace::new();
    team(&ws, &[("ann", "supervisor"), ("bob", "supervisor")]);
    gate_runbook(&ws, "waits", ", four_eyes: true");
    let waiting = act(&ws, "ann", ["run", "waits", "--wait"]).spawn();
    let id = wait_for_event(&ws, "step_started", "check");
    signoff(&ws, "bob", &id, &["--approve"])
        .status(0)
        .stdout("approved step `check` of run [RUN] as bob; the run continues\n");
    waiting.finish().status(0).stderr("");
}
