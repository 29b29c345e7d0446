//! What a hostile value cannot do: become shell code through a placeholder, reach a step that
//! does not use it. Each test is named after what broke.

use crate::support::people::add_operator;
use crate::support::Workspace;

#[test]
fn a_parameter_inside_double_quotes_is_not_run_as_code() {
    let ws = Workspace::new();
    ws.runbook(
        "deploy",
        r#"
runbook: deploy
title: Says what it deploys
params:
  v: { type: string, required: true }
steps:
  - id: announce
    shell: echo "Deploying {{ params.v }} now" > said
"#,
    );
    ws.cmd(["run", "deploy", "-p", "v=$(touch pwned) `touch pwned2`"])
        .run()
        .status(0);
    assert!(!ws.path().join("pwned").exists(), "$(…) in a value ran");
    assert!(!ws.path().join("pwned2").exists(), "`…` in a value ran");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("said")).unwrap(),
        "Deploying $(touch pwned) `touch pwned2` now\n"
    );
}

#[test]
fn one_commands_output_does_not_inject_into_the_next() {
    let ws = Workspace::new();
    ws.runbook(
        "chain",
        r#"
runbook: chain
title: Passes output along
steps:
  - id: first
    shell: printf '%s' '$(touch pwned); touch pwned'
  - id: second
    shell: echo "got {{ vars.first.stdout }}" > got; echo {{ vars.first.stdout }} >> got
"#,
    );
    ws.cmd(["run", "chain"]).run().status(0);
    assert!(!ws.path().join("pwned").exists(), "step output ran as code");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("got")).unwrap(),
        "got $(touch pwned); touch pwned\n$(touch pwned); touch pwned\n"
    );
}

#[test]
fn check_refuses_a_placeholder_inside_single_quotes_at_its_position() {
    let ws = Workspace::new();
    ws.runbook(
        "quoted",
        r#"runbook: quoted
title: Single quotes
params:
  v: { type: string }
steps:
  - id: say
    shell: echo 'value={{ params.v }}'
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    let path = ws.path().join("runbooks/quoted.yaml");
    assert!(
        out.stderr.contains(&format!(
            "{}:7:24: error: `{{{{ params.v }}}}` in the command of step `say` is inside single quotes, where a value cannot be passed safely; move it outside, or into double quotes",
            path.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn a_secret_reaches_only_the_steps_that_use_it() {
    let ws = Workspace::new();
    ws.runbook(
        "secretive",
        r#"
runbook: secretive
title: One step uses the token
params:
  token: { type: string, secret: true, env: MY_TOKEN, required: true }
steps:
  - id: uses
    shell: test "{{ params.token }}" = "s3cret-value" && env > uses.env
  - id: other
    shell: env > other.env
"#,
    );
    ws.cmd(["run", "secretive"])
        .env("MY_TOKEN", "s3cret-value")
        .run()
        .status(0);
    let uses = std::fs::read_to_string(ws.path().join("uses.env")).unwrap();
    let other = std::fs::read_to_string(ws.path().join("other.env")).unwrap();
    assert!(uses.contains("OPSBOOK_PARAM_TOKEN=s3cret-value"), "{uses}");
    assert!(
        !other.contains("s3cret-value"),
        "the secret reached a step that does not use it:\n{other}"
    );
    assert!(!other.contains("MY_TOKEN="), "{other}");
}

#[test]
fn escape_sequences_in_step_output_and_names_do_not_reach_the_terminal() {
    let ws = Workspace::new();
    ws.runbook(
        "spoof",
        r#"
runbook: spoof
title: Clears the screen and fakes a line
steps:
  - id: fake
    name: "Innocent \e]0;title\a name"
    shell: printf '\033[2J\033[H\342\234\223 deploy succeeded\r\n\302\23331m'; exit 3
"#,
    );
    let run = ws.cmd(["run", "spoof"]).run().status(1);
    let id = run.run_id();
    let show = ws.cmd(["show", &id]).run().status(0);
    for (what, text) in [("run", &run.stdout), ("show", &show.stdout)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\r'),
            "{what} printed raw control characters: {text:?}"
        );
    }
    assert!(
        show.stdout
            .contains("| \\x1b[2J\\x1b[H✓ deploy succeeded\n      | \\u009b31m\n"),
        "{}",
        show.stdout
    );
    assert!(
        run.stdout.contains("Innocent \\x1b]0;title\\x07 name"),
        "{}",
        run.stdout
    );
}

const SECRET_AFTER_GATE: &str = r#"
runbook: deploy-key
title: Uses a token after approval
params:
  token: { type: string, secret: true, env: DEPLOY_TOKEN }
steps:
  - id: approve
    gate:
      prompt: Deploy?
  - id: push
    shell: test -n "{{ params.token }}"
"#;

#[test]
fn a_run_whose_later_step_needs_a_missing_secret_is_refused_before_it_starts() {
    let ws = Workspace::new();
    ws.runbook("deploy-key", SECRET_AFTER_GATE);
    ws.cmd(["run", "deploy-key", "--non-interactive"])
        .run()
        .status(2)
        .stderr_has("parameter `token`: is secret and step `push` needs it, but it has no value: set the environment variable DEPLOY_TOKEN");
    assert!(!ws.db().exists(), "a run was started");
}

#[test]
fn a_resume_without_the_secret_is_refused_and_the_run_still_waits() {
    let ws = Workspace::new();
    ws.runbook("deploy-key", SECRET_AFTER_GATE);
    let id = ws
        .cmd(["run", "deploy-key", "--non-interactive"])
        .env("DEPLOY_TOKEN", "t0ken-value")
        .run()
        .status(3)
        .run_id();
    ws.cmd(["signoff", &id, "--approve"]).run().status(0);
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(2)
        .stderr_has("set the environment variable DEPLOY_TOKEN");
    let show = ws.cmd(["show", &id, "--json"]).run().status(0).json();
    assert_eq!(show["status"], "awaiting-signoff", "{show:#}");
    ws.cmd(["resume", &id, "--non-interactive"])
        .env("DEPLOY_TOKEN", "t0ken-value")
        .run()
        .status(0);
}

const SCRIPTED_GATE: &str = r#"
runbook: scripted
title: A gate, then a script file and a module
steps:
  - id: approve
    gate:
      prompt: Run the cleanup?
  - id: clean
    script: cleanup.rhai
  - id: report
    rhai: |
      import "helpers" as h;
      set("said", h::word());
"#;

/// Parks `scripted` at its gate and signs it: what the sign-off binds.
fn parked_and_signed(ws: &Workspace) -> String {
    ws.runbook("scripted", SCRIPTED_GATE)
        .script("cleanup.rhai", "log(\"cleaning\");\n")
        .script("helpers.rhai", "fn word() { \"tidy\" }\n");
    let id = ws
        .cmd(["run", "scripted", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    ws.cmd(["signoff", &id, "--approve"]).run().status(0);
    id
}

#[test]
fn a_script_file_swapped_after_a_signoff_does_not_run_on_resume() {
    let ws = Workspace::new();
    let id = parked_and_signed(&ws);
    ws.script("cleanup.rhai", "sh(\"touch swapped\");\n");
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(5)
        .stderr_has("changed since run");
    assert!(!ws.path().join("swapped").exists());
}

#[test]
fn an_imported_module_swapped_after_a_signoff_does_not_run_on_resume() {
    let ws = Workspace::new();
    let id = parked_and_signed(&ws);
    ws.script(
        "helpers.rhai",
        "fn word() { sh(\"touch swapped\"); \"x\" }\n",
    );
    ws.cmd(["resume", &id, "--non-interactive"])
        .run()
        .status(5)
        .stderr_has("changed since run");
    assert!(!ws.path().join("swapped").exists());
    // Put back as it was, the run goes on.
    ws.script("helpers.rhai", "fn word() { \"tidy\" }\n");
    ws.cmd(["resume", &id, "--non-interactive"]).run().status(0);
}

#[test]
fn a_symbolic_link_out_of_the_scripts_folder_is_refused() {
    let ws = Workspace::new();
    ws.file("elsewhere/evil.rhai", "fn word() { \"evil\" }\n");
    std::os::unix::fs::symlink(
        ws.path().join("elsewhere/evil.rhai"),
        ws.path().join("scripts/helpers.rhai"),
    )
    .unwrap();
    ws.runbook(
        "linked",
        r#"runbook: linked
title: Imports a linked module
steps:
  - id: say
    rhai: |
      import "helpers" as h;
      log(h::word());
"#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stderr_has("leads out of the scripts folder");
}

const MAINTENANCE: &str = r#"
runbook: maintenance
title: Maintenance with approval
params:
  host: { type: string, default: db1 }
steps:
  - id: approve
    gate:
      prompt: Approve the maintenance of {{ params.host }}
  - id: notify
    manual: Tell the {{ params.host }} users it is done
"#;

#[test]
fn what_a_gate_asked_is_journaled_and_shown_with_its_signoff() {
    let ws = Workspace::new();
    ws.runbook("maintenance", MAINTENANCE);
    let run = ws
        .cmd(["run", "maintenance", "--non-interactive"])
        .run()
        .status(3);
    assert!(
        run.stdout
            .contains("  approve asks: Approve the maintenance of db1\n"),
        "{}",
        run.stdout
    );
    let id = run.run_id();
    ws.cmd(["signoff", &id, "--approve", "--comment", "checked"])
        .run()
        .status(0);
    ws.cmd(["resume", &id, "--non-interactive"]).run().status(3);
    let show = ws.cmd(["show", &id]).run().status(0);
    assert!(
        show.stdout
            .contains("(gate)  succeeded  approve\n    asks: Approve the maintenance of db1\n"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("(manual)  waiting  notify\n    asks: Tell the db1 users it is done\n"),
        "{}",
        show.stdout
    );
    let json = ws.cmd(["show", &id, "--json"]).run().status(0).json();
    assert_eq!(json["steps"][0]["asks"], "Approve the maintenance of db1");
}

#[test]
fn a_signoff_with_a_wrong_passphrase_is_journaled_among_the_refusals() {
    let ws = Workspace::new();
    ws.runbook("maintenance", MAINTENANCE);
    ws.cmd(["operator", "add", "ann"])
        .env("OPSBOOK_NEW_PASSPHRASE", "ann-passphrase")
        .run()
        .status(0);
    let id = ws
        .cmd(["run", "maintenance", "--non-interactive", "--as", "ann"])
        .env("OPSBOOK_PASSPHRASE", "ann-passphrase")
        .run()
        .status(3)
        .run_id();
    ws.cmd(["signoff", &id, "--approve", "--as", "ann"])
        .env("OPSBOOK_PASSPHRASE", "guessed-wrong")
        .run()
        .status(5)
        .stderr_has("wrong passphrase for `ann`");
    let json = ws.cmd(["show", &id, "--json"]).run().status(0).json();
    let refusals = json["steps"][0]["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1, "{json:#}");
    assert_eq!(refusals[0]["by"], "ann");
    assert_eq!(refusals[0]["comment"], "wrong passphrase for `ann`");
}

#[test]
fn audit_verify_of_a_run_names_the_other_run_whose_event_was_edited() {
    let ws = Workspace::new();
    ws.runbook("maintenance", MAINTENANCE);
    let a = ws
        .cmd(["run", "maintenance", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    let b = ws
        .cmd(["run", "maintenance", "--non-interactive", "--concurrent"])
        .run()
        .status(3)
        .run_id();
    ws.cmd(["signoff", &a, "--approve"]).run().status(0);
    ws.cmd(["resume", &a, "--non-interactive"]).run().status(3);
    let edited: i64 = {
        let db = ws.journal();
        let seq: i64 = db
            .query_row(
                "SELECT seq FROM events WHERE run_id = ?1 AND kind = 'run_started'",
                [&b],
                |r| r.get(0),
            )
            .unwrap();
        db.execute(
            "UPDATE events SET body = replace(body, 'db1', 'db2') WHERE seq = ?1",
            [seq],
        )
        .unwrap();
        seq
    };
    let out = ws.cmd(["audit", "verify", &a]).run().status(1);
    assert_eq!(
        out.stdout,
        format!("BROKEN: run {a}: event {edited}: event {edited} belongs to run {b}, not this one: its content does not match its hash (the event was edited); this run's own events follow it in the chain, which no longer vouches for them\n")
    );
    let out = ws.cmd(["audit", "verify", &b]).run().status(1);
    assert_eq!(
        out.stdout,
        format!("BROKEN: run {b}: event {edited}: its content does not match its hash (the event was edited)\n")
    );
}

#[test]
fn an_unreadable_value_in_the_journal_is_a_break_not_a_database_error() {
    let ws = Workspace::new();
    ws.runbook("maintenance", MAINTENANCE);
    ws.cmd(["run", "maintenance", "--non-interactive"])
        .run()
        .status(3);
    ws.journal()
        .execute("UPDATE events SET at = X'00FF' WHERE seq = 2", [])
        .unwrap();
    let out = ws.cmd(["audit", "verify"]).run().status(1);
    assert!(
        out.stdout
            .starts_with("BROKEN: the journal: event 2: its stored values cannot be read ("),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn a_supervisor_inserted_straight_into_the_directory_is_refused_and_reported() {
    let ws = Workspace::new();
    ws.runbook("maintenance", MAINTENANCE);
    add_operator(&ws, "ann", "supervisor", None);
    // Copy ann's row as a new supervisor, bypassing opsbook (and its journal).
    ws.journal()
        .execute(
            "INSERT INTO operators (name, person, role, os_user, passphrase_hash, disabled, created_at)
             SELECT 'mallory', 'mallory', 'supervisor', NULL, passphrase_hash, 0, created_at
             FROM operators WHERE name = 'ann'",
            [],
        )
        .unwrap();
    ws.cmd(["run", "maintenance", "--as", "mallory", "--non-interactive"])
        .env("OPSBOOK_PASSPHRASE", "ann-passphrase")
        .run()
        .status(5)
        .stderr_has("the operator directory was changed outside opsbook (operator `mallory` is in the directory but was never added through opsbook)");
    let out = ws.cmd(["audit", "verify"]).run().status(1);
    assert!(
        out.stdout.ends_with(
            "BROKEN: the operator directory: operator `mallory` is in the directory but was never added through opsbook\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn a_role_raised_outside_opsbook_is_refused() {
    let ws = Workspace::new();
    add_operator(&ws, "ann", "supervisor", None);
    add_operator(&ws, "tim", "trainee", Some("ann"));
    ws.journal()
        .execute(
            "UPDATE operators SET role = 'supervisor' WHERE name = 'tim'",
            [],
        )
        .unwrap();
    ws.cmd(["operator", "list"])
        .run()
        .status(5)
        .stderr_has("operator `tim`: the role in the directory differs from the journal");
}

#[test]
fn the_last_active_supervisor_cannot_be_disabled_and_a_disabled_operator_can_be_enabled() {
    let ws = Workspace::new();
    add_operator(&ws, "ann", "supervisor", None);
    add_operator(&ws, "bob", "operator", Some("ann"));
    let as_ann = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--as", "ann"]);
        ws.cmd(&all)
            .env("OPSBOOK_PASSPHRASE", "ann-passphrase")
            .run()
    };
    as_ann(&["operator", "disable", "ann"])
        .status(5)
        .stderr_has("`ann` is the last active supervisor");
    as_ann(&["operator", "disable", "bob"]).status(0);
    as_ann(&["operator", "enable", "bob"])
        .status(0)
        .stdout_has("operator bob enabled");
    ws.cmd(["audit", "verify"]).run().status(0);
}

#[test]
fn data_nested_deeper_than_the_stack_ends_the_step_not_the_engine() {
    let ws = Workspace::new();
    ws.runbook(
        "nested",
        r#"
runbook: nested
title: Nests an array very deep
steps:
  - id: nest
    timeout: 3s
    rhai: |
      let a = [];
      for i in 0..20000 { a = [a]; }
      set("deep", a);
  - id: after
    shell: touch after
"#,
    );
    let out = ws.cmd(["run", "nested"]).run().status(1);
    let id = out.run_id();
    let show = ws.cmd(["show", &id, "--json"]).run().status(0).json();
    assert_eq!(show["status"], "failed", "{show:#}");
    assert_eq!(show["steps"][0]["status"], "failed");
    assert!(!ws.path().join("after").exists());
}

#[test]
fn outputs_nested_deeper_than_64_levels_are_refused_with_a_clear_error() {
    let ws = Workspace::new();
    ws.runbook(
        "nested",
        r#"
runbook: nested
title: Nests an output
steps:
  - id: nest
    rhai: |
      let a = [];
      for i in 0..100 { a = [a]; }
      set("deep", a);
"#,
    );
    let out = ws.cmd(["run", "nested"]).run().status(1);
    assert!(
        out.stdout
            .contains("set(\"deep\", ..): the value nests deeper than 64 levels"),
        "{}",
        out.stdout
    );
}
