//! Handover: a parked run changes hands with a note; only its new owner resumes it, and four
//! eyes then keeps the new owner, under any of their names, from signing its gates.

use crate::support::journal::{count, events, of_kind};
use crate::support::people::{act, alias, gate_runbook, park, signoff, team};
use crate::support::{show_json, Workspace};

#[test]
fn a_handed_over_run_is_resumed_by_its_new_owner_only() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("olga", "operator"),
            ("bob", "operator"),
        ],
    );
    gate_runbook(&ws, "shift", ", role: supervisor");
    let id = park(&ws, "olga", "shift").run_id();

    act(&ws, "olga", ["handover", &id, "--to", "bob", "--note", ""])
        .run()
        .status(2)
        .stdout("")
        .stderr("error: a handover needs a note: what the next owner must know\n");
    act(
        &ws,
        "bob",
        ["handover", &id, "--to", "bob", "--note", "mine now"],
    )
    .run()
    .status(5)
    .stderr("error: run [RUN] is owned by olga; the owner or a supervisor hands it over\n");
    act(
        &ws,
        "olga",
        [
            "handover",
            &id,
            "--to",
            "bob",
            "--note",
            "gate waits for ann; then finish it",
        ],
    )
    .run()
    .status(0)
    .stdout("run [RUN] handed over from olga to bob; bob takes it on with: opsbook resume [RUN] --as bob\n")
    .stderr("");
    let evs = events(&ws, &id);
    let handed = of_kind(&evs, "handed_over");
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].body["from"], "olga");
    assert_eq!(handed[0].body["to"], "bob");
    assert_eq!(handed[0].body["by"], "olga");
    let view = show_json(&ws, &id);
    assert_eq!(view["owner"], "bob");
    assert_eq!(view["custody"].as_array().unwrap().len(), 1);
    assert_eq!(view["custody"][0]["from"], "olga");
    assert_eq!(view["custody"][0]["to"], "bob");
    assert_eq!(
        view["custody"][0]["note"],
        "gate waits for ann; then finish it"
    );

    signoff(&ws, "ann", &id, &["--approve"]).status(0);
    act(&ws, "olga", ["resume", &id])
        .run()
        .status(5)
        .stderr("error: run [RUN] is owned by bob; they resume it, or they (or a supervisor) hand it over to you first: opsbook handover [RUN] --to olga --note TEXT\n");
    assert_eq!(count(&ws, &id, "run_resumed"), 0);
    act(&ws, "bob", ["resume", &id]).run().status(0).stdout(
        "
        run [RUN] shift v1 (resumed)
        Gate shift — resumed by bob
        ✓ prep                     succeeded  — done before the resume
        ✓ check                    succeeded [DURATION] — approved by ann
        ✓ after                    succeeded [DURATION]
        run [RUN] succeeded in [DURATION]: 3 succeeded, 0 failed. Details: opsbook show [RUN]
        ",
    );
    ws.cmd(["show", &id]).run().status(0).stdout(
        "
        run [RUN]  shift v1 — Gate shift
        status:   succeeded
        operator: olga on [HOST]
        handover: olga → bob by olga at [TIME]: gate waits for ann; then finish it
        resumed:  by bob at [TIME]
        started:  [TIME]
        finished: [TIME]
        runbook:  [ROOT]/runbooks/shift.yaml (sha256 652cb3527c7fa055)

        ✓ prep (shell)  succeeded  prep
            attempt 1: succeeded, exit 0, [DURATION]
              | prepared
        ✓ check (gate)  succeeded  check
            asks: Is it fine?
            approved by ann
        ✓ after (shell)  succeeded  after
            attempt 1: succeeded, exit 0, [DURATION]
              | after

        3 succeeded, 0 failed
        ",
    );
    let view = show_json(&ws, &id);
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["resumes"][0]["by"], "bob");
}

#[test]
fn four_eyes_refuses_the_new_owner_under_another_name_after_a_handover() {
    let ws = Workspace::new();
    team(
        &ws,
        &[
            ("ann", "supervisor"),
            ("bob", "supervisor"),
            ("cy", "supervisor"),
        ],
    );
    alias(&ws, "ann", "bob2", "supervisor", "bob");
    gate_runbook(&ws, "fe", ", role: supervisor, four_eyes: true");
    let id = park(&ws, "ann", "fe").run_id();
    act(
        &ws,
        "ann",
        ["handover", &id, "--to", "bob2", "--note", "yours"],
    )
    .run()
    .status(0);
    // bob2 now runs it; bob is the same person.
    signoff(&ws, "bob2", &id, &["--approve"])
        .status(5)
        .stderr("error: sign-off refused: four eyes: bob holds this run now (it was handed over to them), so someone else must sign\n");
    signoff(&ws, "bob", &id, &["--approve"]).status(5).stderr(
        "error: sign-off refused: four eyes: bob drives this run, so someone else must sign\n",
    );
    signoff(&ws, "cy", &id, &["--approve"]).status(0);
}
