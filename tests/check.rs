//! `opsbook check`, and the same analysis before `opsbook run`: every mistake of a runbook at
//! its `file:line:col`, all at once, with exit 2 and nothing run; hostile input refused quickly;
//! Rhai errors mapped into the YAML or the script file; parameters checked before step 1.
//!
//! The diagnostics are compared whole: the position, the message, the excerpt and the caret are
//! what a person fixing the file reads.

use crate::support::journal::event_count;
use crate::support::{unindent, Workspace};

#[test]
fn the_shipped_library_is_valid() {
    let library = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    Workspace::new()
        .cmd(["--runbooks", &library, "check"])
        .run()
        .status(0)
        .stdout("2 runbook(s) valid (scripts folders checked: 1)\n")
        .stderr("");
}

/// A valid one-step runbook.
fn trivial(id: &str) -> String {
    unindent(&format!(
        r#"
        runbook: {id}
        title: Trivial {id}
        steps:
          - id: only
            shell: "true"
        "#
    ))
}

// ----- every mistake at once, and nothing runs ---------------------------------------------------

/// Nine mistakes, each on its own line.
const MANY_MISTAKES: &str = r#"
    runbook: broken
    title: Every kind of mistake at once
    params:
      port: { type: int, default: eighty }
      host: { type: string, default: DB_1, pattern: '^[a-z0-9.-]+$' }
    steps:
      - id: leave-mark
        shell: touch "$WS/marker"
      - id: wait
        shell: "true"
        tiemout: 5s
      - id: wait
        shell: echo again
      - id: both
        shell: echo one
        rhai: |
          log("two");
      - id: slow
        shell: echo {{ params.nope }}
        timeout: 10x
      - id: compute
        rhai: |
          let y = ;
      - id: external
        script: missing.rhai
    "#;

#[test]
fn every_mistake_is_reported_at_once_at_its_line_and_column() {
    let ws = Workspace::new();
    let yaml = MANY_MISTAKES.replace("$WS", &ws.path().display().to_string());
    ws.runbook("broken", &yaml);
    // Sorted by line, the report reads top to bottom like the file. `let y = ;`: the `;` is
    // column 9 of the script, column 15 of the file.
    let diagnostics = "
        [ROOT]/runbooks/broken.yaml:4:31: error: `default` of parameter `port`: `eighty` is not an int
          |
        4 |   port: { type: int, default: eighty }
          |                               ^
        [ROOT]/runbooks/broken.yaml:5:34: error: `default` of parameter `host` is `DB_1`, which does not match its pattern `^[a-z0-9.-]+$`
          |
        5 |   host: { type: string, default: DB_1, pattern: '^[a-z0-9.-]+$' }
          |                                  ^
        [ROOT]/runbooks/broken.yaml:11:5: error: unknown key `tiemout` in step `wait`; did you mean `timeout`?
           |
        11 |     tiemout: 5s
           |     ^
        [ROOT]/runbooks/broken.yaml:12:9: error: duplicate step id `wait` (first used at line 9); step ids must be unique
           |
        12 |   - id: wait
           |         ^
        [ROOT]/runbooks/broken.yaml:16:5: error: step `both` has two kinds, `shell` and `rhai`; a step does one thing, so split it into two steps
           |
        16 |     rhai: |
           |     ^
        [ROOT]/runbooks/broken.yaml:19:17: error: `{{ params.nope }}` names no parameter of this runbook
           |
        19 |     shell: echo {{ params.nope }}
           |                 ^
        [ROOT]/runbooks/broken.yaml:20:14: error: `timeout`: `10x` is not a duration; write it like `30s`, `10m`, `2h`, `1d` or `1h30m`
           |
        20 |     timeout: 10x
           |              ^
        [ROOT]/runbooks/broken.yaml:23:15: error: Rhai error in step `compute`: Syntax error: Unexpected ';'
           |
        23 |       let y = ;
           |               ^
        [ROOT]/runbooks/broken.yaml:25:13: error: step `external`: script file `missing.rhai` not found; scripts live in [ROOT]/scripts
           |
        25 |     script: missing.rhai
           |             ^
        ";
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("9 error(s) in 1 runbook file(s) checked\n")
        .stderr(diagnostics);

    // `run` analyzes first: the same errors, exit 2, no run id, and step 1 never ran.
    ws.cmd(["run", "broken"])
        .run()
        .status(2)
        .stdout("")
        .stderr(diagnostics);
    assert!(!ws.path().join("marker").exists(), "the first step ran");
    assert_eq!(event_count(&ws), 0, "a refused run journals nothing");

    // The control: the same first step in a valid runbook does leave its mark and events.
    let fixed = r#"
        runbook: fixed
        title: Fixed
        steps:
          - id: leave-mark
            shell: touch "$WS/marker"
        "#;
    ws.runbook(
        "fixed",
        &fixed.replace("$WS", &ws.path().display().to_string()),
    );
    ws.cmd(["run", "fixed"]).run().status(0);
    assert!(ws.path().join("marker").exists());
    assert!(event_count(&ws) > 0);
}

#[test]
fn a_rhai_error_deep_in_a_block_is_mapped_to_its_own_line() {
    let ws = Workspace::new();
    ws.runbook(
        "deep",
        "
        runbook: deep
        title: Deep
        steps:
          - id: compute
            rhai: |
              let x = 1;
              let y = ;
        ",
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/runbooks/deep.yaml:7:15: error: Rhai error in step `compute`: Syntax error: Unexpected ';'
              |
            7 |       let y = ;
              |               ^
            ");
}

#[test]
fn a_placeholder_deep_in_a_block_is_mapped_to_its_own_line() {
    let ws = Workspace::new();
    ws.runbook(
        "deep",
        "
        runbook: deep
        title: Deep
        steps:
          - id: say
            shell: |
              echo one
              echo {{ params.nope }}
        ",
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/runbooks/deep.yaml:7:12: error: `{{ params.nope }}` names no parameter of this runbook
              |
            7 |       echo {{ params.nope }}
              |            ^
            ");
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_have_positions() {
    let ws = Workspace::new();
    ws.runbook(
        "dup",
        r#"
        runbook: dup
        title: One
        title: Two
        steps:
          - id: s
            shell: "true"
        "#,
    );
    ws.runbook(
        "unclosed",
        r#"
        runbook: unclosed
        title: T
        steps:
          - id: s
            shell: "true
        "#,
    );
    ws.runbook(
        "indent",
        "
        runbook: indent
        title: T
        steps:
          - id: s
             shell: x
        ",
    );
    // yaml-rust's own "at byte N line L column C" is not repeated after ours.
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("3 error(s) in 3 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/dup.yaml:3:1: error: duplicate key `title` (first given at line 2); keep one
              |
            3 | title: Two
              | ^
            [ROOT]/runbooks/indent.yaml:5:11: error: YAML syntax error: mapping values are not allowed in this context
              |
            5 |      shell: x
              |           ^
            [ROOT]/runbooks/unclosed.yaml:5:12: error: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream
              |
            5 |     shell: "true
              |            ^
            "#);
}

#[test]
fn a_report_reads_exactly_like_this() {
    let ws = Workspace::new();
    ws.runbook(
        "typo",
        r#"
        runbook: typo
        title: A runbook with two typos
        steps:
          - id: wait
            shell: "true"
            tiemout: 5s
          - id: notify
            name: Tell the channel
            manual: Post the notice
            on_failure: contiune
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 1 runbook file(s) checked\n")
        .stderr(
            "
            [ROOT]/runbooks/typo.yaml:6:5: error: unknown key `tiemout` in step `wait`; did you mean `timeout`?
              |
            6 |     tiemout: 5s
              |     ^
            [ROOT]/runbooks/typo.yaml:10:17: error: `on_failure` is `contiune`; it must be one of abort, continue, rollback; did you mean `continue`?
               |
            10 |     on_failure: contiune
               |                 ^
            ",
        );
}

// ----- hostile input -------------------------------------------------------------------------

#[test]
fn billion_laughs_is_refused_quickly() {
    let ws = Workspace::new();
    let mut yaml = unindent(
        r#"
        runbook: laughs
        title: Laughs
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        "#,
    );
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        yaml.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    yaml.push_str("steps:\n  - id: s\n    shell: \"true\"\n");
    ws.runbook("laughs", &yaml);

    // The caret sits on line 3, where the first anchor is.
    let refused = r#"
        [ROOT]/runbooks/laughs.yaml:3:7: error: YAML anchors and aliases (`&name`, `*name`) are not allowed in runbooks; write the value out
          |
        3 | a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
          |       ^
        "#;
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr(refused);
    ws.cmd(["run", "laughs"])
        .run()
        .status(2)
        .stdout("")
        .stderr(refused);
    assert_eq!(event_count(&ws), 0);
}

#[test]
fn a_50_mb_runbook_is_refused_before_parsing() {
    let ws = Workspace::new();
    // Valid YAML with an unknown key near the top: parsing it would report `nmae`.
    let mut yaml = unindent(
        r#"
        runbook: huge
        title: Huge
        steps:
          - id: s
            nmae: x
            shell: "true"
        "#,
    );
    let padding = format!("# {}\n", "x".repeat(1021));
    yaml.reserve(50 * 1024 * 1024);
    while yaml.len() < 50 * 1024 * 1024 {
        yaml.push_str(&padding);
    }
    let size = yaml.len();
    ws.file("runbooks/huge.yaml", &yaml);
    drop(yaml);

    let refused = format!(
        "[ROOT]/runbooks/huge.yaml: error: is {size} bytes; runbooks and scripts are limited to 1048576 bytes (1 MiB): split it, or move data out of it\n"
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr(&refused);
    ws.cmd(["run", "huge"])
        .run()
        .status(2)
        .stdout("")
        .stderr(&refused);
}

#[test]
fn the_size_cap_is_exactly_one_mib() {
    let ws = Workspace::new();
    let pad_to = |id: &str, len: usize| {
        // A comment line fills the file up to `len` bytes exactly.
        let mut yaml = trivial(id);
        let fill = len - yaml.len() - 2;
        yaml.push('#');
        yaml.push_str(&"x".repeat(fill));
        yaml.push('\n');
        assert_eq!(yaml.len(), len);
        yaml
    };
    ws.file("runbooks/at-cap.yaml", &pad_to("at-cap", 1024 * 1024));
    ws.cmd(["check"])
        .run()
        .status(0)
        .stdout("1 runbook(s) valid (scripts folders checked: 1)\n")
        .stderr("");
    // One byte more is refused (checked on its own: parsing 1 MiB is the slow part here).
    ws.file(
        "runbooks/over-cap.yaml",
        &pad_to("over-cap", 1024 * 1024 + 1),
    );
    let over = ws.path().join("runbooks/over-cap.yaml");
    ws.cmd(["check", &over.display().to_string()])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr(
            "[ROOT]/runbooks/over-cap.yaml: error: is 1048577 bytes; runbooks and scripts are \
             limited to 1048576 bytes (1 MiB): split it, or move data out of it\n",
        );
}

// ----- Rhai: conditions, script files, imports ---------------------------------------------------

#[test]
fn a_rhai_error_in_when_is_mapped_into_the_yaml() {
    let ws = Workspace::new();
    ws.runbook(
        "cond",
        r#"
        runbook: cond
        title: Conditions
        steps:
          - id: quoted
            when: "dry_run &&"
            shell: "true"
          - id: plain
            when: params.x > > 1
            shell: "true"
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 1 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/cond.yaml:5:22: error: Rhai error in `when` of step `quoted`: Script is incomplete
              |
            5 |     when: "dry_run &&"
              |                      ^
            [ROOT]/runbooks/cond.yaml:8:22: error: Rhai error in `when` of step `plain`: Unexpected '>'
              |
            8 |     when: params.x > > 1
              |                      ^
            "#);
}

#[test]
fn a_rhai_error_in_a_script_file_is_reported_in_that_file() {
    let ws = Workspace::new();
    ws.script(
        "tidy.rhai",
        "
        // tidy up
        let a = 1;
        let b = a +;
        ",
    );
    ws.runbook(
        "tidy",
        "
        runbook: tidy
        title: Tidy
        steps:
          - id: tidy-up
            script: tidy.rhai
        ",
    );
    // The excerpt is the script's line, not a line of the runbook.
    let diagnostic = "
        [ROOT]/scripts/tidy.rhai:3:12: error: Rhai error (script of step `tidy-up`): Syntax error: Unexpected ';'
          |
        3 | let b = a +;
          |            ^
        ";
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr(diagnostic);
    ws.cmd(["run", "tidy"])
        .run()
        .status(2)
        .stdout("")
        .stderr(diagnostic);
    assert_eq!(event_count(&ws), 0);
}

#[test]
fn a_broken_script_file_is_one_error() {
    let ws = Workspace::new();
    ws.script("tidy.rhai", "let b = 1 +;\n");
    ws.runbook(
        "tidy",
        "
        runbook: tidy
        title: Tidy
        steps:
          - id: tidy-up
            script: tidy.rhai
        ",
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/scripts/tidy.rhai:1:12: error: Rhai error (script of step `tidy-up`): Syntax error: Unexpected ';'
              |
            1 | let b = 1 +;
              |            ^
            ");
}

#[test]
fn a_broken_script_nobody_uses_is_still_an_error() {
    let ws = Workspace::new();
    ws.runbook("fine", &trivial("fine"));
    ws.script("unused.rhai", "fn f( {\n");
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/scripts/unused.rhai:1:7: error: Rhai error: Syntax error: Expecting ')' to close the parameters list of function 'f'
              |
            1 | fn f( {
              |       ^
            ");
}

#[test]
fn imports_cannot_leave_the_scripts_folder() {
    let ws = Workspace::new();
    // A module right beside scripts/: reachable as `../outside` if escapes were allowed.
    ws.file("outside.rhai", "fn hello() { 1 }\n");
    ws.file("lib/inner.rhai", "fn hello() { 1 }\n");
    ws.script("good.rhai", "fn hello() { 1 }\n");
    ws.script(
        "sneaky.rhai",
        r#"
        import "../outside" as o;
        o::hello();
        "#,
    );
    ws.runbook(
        "escape",
        r#"
        runbook: escape
        title: Escapes
        steps:
          - id: up
            rhai: |
              import "../outside" as o;
          - id: sideways
            rhai: |
              import "../lib/inner" as i;
          - id: absolute
            rhai: "import \"/etc/passwd\" as p;"
          - id: allowed
            rhai: |
              import "good" as g;
              g::hello();
          - id: up-file
            script: ../outside.rhai
          - id: sneaky
            script: sneaky.rhai
        "#,
    );
    // Four errors in the runbook, and the import in a script file is refused too, reported in
    // that file; the step `allowed` imports from scripts/ and is fine.
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("5 error(s) in 1 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/escape.yaml:6:7: error: Rhai error in step `up`: module not found: ../outside (modules are imported by a name under scripts/, without `..` or a leading `/`)
              |
            6 |       import "../outside" as o;
              |       ^
            [ROOT]/runbooks/escape.yaml:9:7: error: Rhai error in step `sideways`: module not found: ../lib/inner (modules are imported by a name under scripts/, without `..` or a leading `/`)
              |
            9 |       import "../lib/inner" as i;
              |       ^
            [ROOT]/runbooks/escape.yaml:11:12: error: Rhai error in step `absolute`: module not found: /etc/passwd (modules are imported by a name under scripts/, without `..` or a leading `/`)
               |
            11 |     rhai: "import \"/etc/passwd\" as p;"
               |            ^
            [ROOT]/runbooks/escape.yaml:17:13: error: `script: ../outside.rhai` must name a file inside the scripts folder, without `..` or a leading `/`
               |
            17 |     script: ../outside.rhai
               |             ^
            [ROOT]/scripts/sneaky.rhai:1:1: error: Rhai error (script of step `sneaky`): module not found: ../outside (modules are imported by a name under scripts/, without `..` or a leading `/`)
              |
            1 | import "../outside" as o;
              | ^
            "#);
    ws.cmd(["run", "escape"]).run().status(2);
    assert_eq!(event_count(&ws), 0);
}

#[test]
fn a_missing_module_is_an_error() {
    let ws = Workspace::new();
    ws.script(
        "main.rhai",
        r#"
        import "gone" as g;
        g::f();
        "#,
    );
    ws.runbook(
        "mods",
        r#"
        runbook: mods
        title: Modules
        steps:
          - id: inline
            rhai: |
              import "nowhere" as n;
          - id: from-file
            script: main.rhai
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 1 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/mods.yaml:6:7: error: Rhai error in step `inline`: module not found: nowhere (no file [ROOT]/scripts/nowhere.rhai in the scripts folder)
              |
            6 |       import "nowhere" as n;
              |       ^
            [ROOT]/scripts/main.rhai:1:1: error: Rhai error (script of step `from-file`): module not found: gone (no file [ROOT]/scripts/gone.rhai in the scripts folder)
              |
            1 | import "gone" as g;
              | ^
            "#);
}

#[test]
fn a_missing_module_is_reported_at_its_import() {
    let ws = Workspace::new();
    ws.script(
        "main.rhai",
        r#"
        // main

        import "gone" as g;
        "#,
    );
    ws.runbook(
        "mods",
        r#"
        runbook: mods
        title: Modules
        steps:
          - id: inline
            rhai: "let a = 1; import \"nowhere\" as n;"
          - id: from-file
            script: main.rhai
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 1 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/mods.yaml:5:23: error: Rhai error in step `inline`: module not found: nowhere (no file [ROOT]/scripts/nowhere.rhai in the scripts folder)
              |
            5 |     rhai: "let a = 1; import \"nowhere\" as n;"
              |                       ^
            [ROOT]/scripts/main.rhai:3:1: error: Rhai error (script of step `from-file`): module not found: gone (no file [ROOT]/scripts/gone.rhai in the scripts folder)
              |
            3 | import "gone" as g;
              | ^
            "#);
}

// ----- parameters on `run` -----------------------------------------------------------------------

const PARAMS: &str = r#"
    runbook: vacuum
    title: Vacuum
    params:
      host:     { type: string, required: true, pattern: '^[a-z0-9.-]+$', description: Database host }
      min_free: { type: int, default: 20 }
      mode:     { type: string, enum: [fast, safe], default: safe }
      password: { type: string, secret: true, env: PGPASSWORD }
    steps:
      - id: leave-mark
        shell: touch "$WS/marker"
    "#;

#[test]
fn bad_parameters_are_refused_before_step_one() {
    let ws = Workspace::new();
    ws.runbook(
        "vacuum",
        &PARAMS.replace("$WS", &ws.path().display().to_string()),
    );
    // The secret's value is never echoed back.
    let cases: &[(&[&str], &str)] = &[
        (
            &["-p", "hots=db1"],
            "error: parameter `hots`: the runbook has no such parameter; did you mean `host`?\n",
        ),
        (
            &["-p", "host=db1", "-p", "zzzz=1"],
            "error: parameter `zzzz`: the runbook has no such parameter; it takes: host, min_free, mode, password\n",
        ),
        (
            &["-p", "host=db1", "-p", "min_free=lots"],
            "error: parameter `min_free`: must be a whole number, not `lots`\n",
        ),
        (
            &["-p", "host=DB_1"],
            "error: parameter `host`: `DB_1` does not match the pattern `^[a-z0-9.-]+$`\n",
        ),
        (
            &["-p", "host=db1", "-p", "mode=fats"],
            "error: parameter `mode`: `fats` is not one of: fast, safe; did you mean `fast`?\n",
        ),
        (
            &[],
            "error: parameter `host`: is required (Database host): pass -p host=VALUE\n",
        ),
        (
            &["-p", "host=db1", "-p", "password=hunter2"],
            "error: parameter `password`: is secret and is never taken from the command line (it would show in shell history and process lists); set the environment variable PGPASSWORD, or answer the prompt on a terminal\n",
        ),
        (
            &["-p", "host"],
            "error: `-p host` is not KEY=VALUE; write it like `-p host=db1`\n",
        ),
        (
            &["-p", "=db1"],
            "error: `-p =db1` is not KEY=VALUE; write it like `-p host=db1`\n",
        ),
        (
            &["-p", "host=db1", "-p", "host=db2"],
            "error: parameter `host`: is given twice; give it once\n",
        ),
    ];
    for (args, refused) in cases {
        let mut argv = vec!["run", "vacuum", "--non-interactive"];
        argv.extend_from_slice(args);
        ws.cmd(argv).run().status(2).stdout("").stderr(refused);
    }
    assert!(!ws.path().join("marker").exists(), "a step ran");
    assert_eq!(event_count(&ws), 0);

    // The control: good values run the step.
    ws.cmd([
        "run",
        "vacuum",
        "--non-interactive",
        "-p",
        "host=db1",
        "-p",
        "mode=fast",
    ])
    .run()
    .status(0);
    assert!(ws.path().join("marker").exists());
}

#[test]
fn an_enum_value_with_spaces_is_not_let_through() {
    let ws = Workspace::new();
    ws.runbook(
        "modes",
        r#"
        runbook: modes
        title: Modes
        params:
          mode: { type: string, enum: [fast, safe], default: safe }
        steps:
          - id: show
            rhai: |
              assert(params.mode == "fast" || params.mode == "safe", `mode is "${params.mode}"`);
        "#,
    );
    let out = ws
        .cmd(["run", "modes", "--non-interactive", "-p", "mode= fast"])
        .run();
    // Either refused as bad input, or trimmed so that the step sees an allowed value.
    if out.code == 2 {
        out.stdout("").stderr(
            "error: parameter `mode`: ` fast` is not one of: fast, safe; did you mean `fast`?\n",
        );
    } else {
        out.status(0);
    }
}

// ----- unknown runbooks ----------------------------------------------------------------------

#[test]
fn an_unknown_runbook_id_suggests_the_nearest() {
    let ws = Workspace::new();
    ws.runbook("host-health", &trivial("host-health"));
    ws.runbook("disk-cleanup", &trivial("disk-cleanup"));
    ws.cmd(["run", "host-helth"])
        .run()
        .status(2)
        .stdout("")
        .stderr(
            "error: unknown runbook `host-helth` in [ROOT]/runbooks; did you mean `host-health`?\n",
        );
    ws.cmd(["run", "zzzzzzzz"])
        .run()
        .status(2)
        .stdout("")
        .stderr(
        "error: unknown runbook `zzzzzzzz` in [ROOT]/runbooks; `opsbook list` shows the library\n",
    );
    ws.cmd(["run", "./runbooks/host-helth.yaml"])
        .run()
        .status(2)
        .stdout("")
        .stderr("error: ./runbooks/host-helth.yaml: no such runbook file\n");
    assert_eq!(event_count(&ws), 0);
}

// ----- warnings, and the whole library -------------------------------------------------------

#[test]
fn an_overdue_review_is_a_warning_not_an_error() {
    let ws = Workspace::new();
    ws.runbook(
        "old",
        r#"
        runbook: old
        title: Old
        review_every: 30d
        last_reviewed: 2020-01-01
        steps:
          - id: only
            shell: "true"
        "#,
    );
    ws.runbook(
        "current",
        r#"
        runbook: current
        title: Current
        review_every: 100000d
        last_reviewed: 2020-01-01
        steps:
          - id: only
            shell: "true"
        "#,
    );
    let warning = "
        [ROOT]/runbooks/old.yaml:4:16: warning: review overdue: last reviewed 2020-01-01, due every 30d (since 2020-01-31); review the runbook and update `last_reviewed`
          |
        4 | last_reviewed: 2020-01-01
          |                ^
        ";
    ws.cmd(["check"])
        .run()
        .status(0)
        .stdout("2 runbook(s) valid, 1 warning(s) (scripts folders checked: 1)\n")
        .stderr(warning);

    // A warning does not stop a run; it is shown on stderr.
    ws.cmd(["run", "old"])
        .run()
        .status(0)
        .stdout(
            "
            run [RUN] old v1
            Old — 1 step(s), operator [USER] (unverified)
            ✓ only                     succeeded [DURATION]
            run [RUN] succeeded in [DURATION]: 1 succeeded, 0 failed. Details: opsbook show [RUN]
            ",
        )
        .stderr(warning);
}

#[test]
fn check_without_a_path_checks_the_whole_library() {
    let ws = Workspace::new();
    ws.runbook("alpha", &trivial("alpha"));
    ws.runbook("omega", &trivial("omega"));
    ws.runbook(
        "middle",
        r#"
        runbook: middle
        title: Middle
        steps:
          - id: only
            shel: "true"
        "#,
    );
    ws.file("runbooks/NOTES.md", "not a runbook: {{ nope\n");
    // Only the broken file is reported; NOTES.md is not a runbook.
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 3 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/middle.yaml:4:5: error: step `only` has no kind; give it one of: rhai, script, shell, manual, gate, parallel
              |
            4 |   - id: only
              |     ^
            [ROOT]/runbooks/middle.yaml:5:5: error: unknown key `shel` in step `only`; did you mean `shell`?
              |
            5 |     shel: "true"
              |     ^
            "#);

    // Naming the good files checks only them.
    let alpha = ws.path().join("runbooks/alpha.yaml");
    let omega = ws.path().join("runbooks/omega.yaml");
    ws.cmd([
        "check",
        &alpha.display().to_string(),
        &omega.display().to_string(),
    ])
    .run()
    .status(0)
    .stdout("2 runbook(s) valid (scripts folders checked: 1)\n")
    .stderr("");
}

// ----- strictness ----------------------------------------------------------------------------

#[test]
fn strict_about_steps_gates_retries_and_groups() {
    let ws = Workspace::new();
    ws.runbook(
        "strict",
        r#"
        runbook: strict
        title: Strict
        steps:
          - id: sign
            gate: { role: supervisor }
          - id: boom
            shell: "true"
            on_failure: explode
          - id: again
            shell: "true"
            retry: { delay: 10s }
          - id: group
            parallel:
              - id: p1
                shell: "true"
              - id: p2
                manual: Look at the dashboard
              - id: p3
                gate: { prompt: Sign here }
          - id: tested
            shell: "true"
            expect: "exit_code == 0"
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("6 error(s) in 1 runbook file(s) checked\n")
        .stderr(r#"
            [ROOT]/runbooks/strict.yaml:5:11: error: the gate of step `sign` needs a `prompt` saying what the signer confirms
              |
            5 |     gate: { role: supervisor }
              |           ^
            [ROOT]/runbooks/strict.yaml:8:17: error: `on_failure` is `explode`; it must be one of abort, continue, rollback
              |
            8 |     on_failure: explode
              |                 ^
            [ROOT]/runbooks/strict.yaml:11:12: error: `retry` of step `again` needs `attempts`
               |
            11 |     retry: { delay: 10s }
               |            ^
            [ROOT]/runbooks/strict.yaml:17:17: error: step `p2` is a manual step inside a parallel group; it needs a person and must run on its own
               |
            17 |         manual: Look at the dashboard
               |                 ^
            [ROOT]/runbooks/strict.yaml:19:15: error: step `p3` is a gate inside a parallel group; gates need a person and run on their own, outside the group
               |
            19 |         gate: { prompt: Sign here }
               |               ^
            [ROOT]/runbooks/strict.yaml:22:13: error: `expect` is for test scripts; add `kind: test` to the runbook or remove it from step `tested`
               |
            22 |     expect: "exit_code == 0"
               |             ^
            "#);

    // In a test script the same `expect` is allowed.
    ws.runbook(
        "tested",
        r#"
        runbook: tested
        title: Tested
        kind: test
        steps:
          - id: tested
            shell: "true"
            expect: "exit_code == 0"
        "#,
    );
    ws.cmd([
        "check",
        &ws.path().join("runbooks/tested.yaml").display().to_string(),
    ])
    .run()
    .status(0)
    .stdout("1 runbook(s) valid (scripts folders checked: 1)\n")
    .stderr("");
}

#[test]
fn undo_must_name_a_step() {
    let ws = Workspace::new();
    ws.runbook(
        "undo",
        r#"
        runbook: undo
        title: Undo
        steps:
          - id: deploy
            shell: "true"
        rollback:
          - id: undo-deploy
            shell: "true"
            undo: deplyo
        "#,
    );
    let diagnostic = "
        [ROOT]/runbooks/undo.yaml:9:11: error: `undo: deplyo` names no step of this runbook; did you mean `deploy`?
          |
        9 |     undo: deplyo
          |           ^
        ";
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("1 error(s) in 1 runbook file(s) checked\n")
        .stderr(diagnostic);
    ws.cmd(["run", "undo"])
        .run()
        .status(2)
        .stdout("")
        .stderr(diagnostic);
    assert_eq!(event_count(&ws), 0);
}

#[test]
fn undo_naming_a_missing_step_is_reported_with_the_other_errors() {
    let ws = Workspace::new();
    ws.runbook(
        "undo",
        r#"
        runbook: undo
        title: Undo
        steps:
          - id: deploy
            shell: "true"
            tiemout: 5s
        rollback:
          - id: undo-deploy
            shell: "true"
            undo: deplyo
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("2 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/runbooks/undo.yaml:6:5: error: unknown key `tiemout` in step `deploy`; did you mean `timeout`?
              |
            6 |     tiemout: 5s
              |     ^
            [ROOT]/runbooks/undo.yaml:10:11: error: `undo: deplyo` names no step of this runbook; did you mean `deploy`?
               |
            10 |     undo: deplyo
               |           ^
            ");
}

#[test]
fn a_missing_key_is_reported_at_its_mapping() {
    let ws = Workspace::new();
    ws.runbook(
        "blocks",
        r#"
        runbook: blocks
        steps:
          - id: sign
            gate:
              role: supervisor
          - name: no id
            shell: "true"
        "#,
    );
    ws.cmd(["check"])
        .run()
        .status(2)
        .stdout("3 error(s) in 1 runbook file(s) checked\n")
        .stderr("
            [ROOT]/runbooks/blocks.yaml:1:1: error: the runbook has no `title`; add it at the top level
              |
            1 | runbook: blocks
              | ^
            [ROOT]/runbooks/blocks.yaml:5:7: error: the gate of step `sign` needs a `prompt` saying what the signer confirms
              |
            5 |       role: supervisor
              |       ^
            [ROOT]/runbooks/blocks.yaml:6:5: error: this step has no `id`; give every step a unique id
              |
            6 |   - name: no id
              |     ^
            ");
}
