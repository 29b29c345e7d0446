//! `opsbook check`, and the same analysis before `opsbook run`: every mistake of a runbook at
//! its `file:line:col`, all at once, with exit 2 and nothing run; hostile input refused quickly;
//! Rhai errors mapped into the YAML or the script file; parameters checked before step 1.

use crate::support::{Output, Workspace};

#[test]
fn the_shipped_library_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    Workspace::new()
        .cmd(["--runbooks", &format!("{root}/runbooks"), "check"])
        .run()
        .status(0)
        .stdout_has("valid");
}

// ----- helpers -------------------------------------------------------------------------------

/// `text` with the workspace's temporary path written as `$WS`.
fn normalised(ws: &Workspace, text: &str) -> String {
    text.replace(&ws.path().display().to_string(), "$WS")
}

/// The header lines of the diagnostics on stderr (`path:line:col: error: message`), normalised.
fn diagnostics(ws: &Workspace, out: &Output, severity: &str) -> Vec<String> {
    let marker = format!(": {severity}: ");
    normalised(ws, &out.stderr)
        .lines()
        .filter(|l| l.contains(&marker))
        .map(str::to_string)
        .collect()
}

/// Asserts there is a diagnostic headed `$WS/<at>: ` (e.g. `at` = `runbooks/x.yaml:3:5: error`)
/// whose message contains every phrase.
#[track_caller]
fn assert_diagnostic(ws: &Workspace, out: &Output, at: &str, phrases: &[&str]) {
    let (place, _) = at
        .rsplit_once(": ")
        .unwrap_or_else(|| panic!("`at` is `path:line:col: severity`, not {at:?}"));
    let prefix = format!("$WS/{at}: ");
    let found: Vec<String> = diagnostics(ws, out, "error")
        .into_iter()
        .chain(diagnostics(ws, out, "warning"))
        .filter(|l| l.contains(&prefix))
        .collect();
    assert!(
        !found.is_empty(),
        "no diagnostic at {place} ({prefix:?})\n--- exit {}\n--- stderr (normalised)\n{}",
        out.code,
        normalised(ws, &out.stderr)
    );
    for phrase in phrases {
        assert!(
            found.iter().any(|l| l.contains(phrase)),
            "the diagnostic at {place} lacks {phrase:?}:\n{}",
            found.join("\n")
        );
    }
}

#[track_caller]
fn assert_error_count(ws: &Workspace, out: &Output, expected: usize) {
    let errors = diagnostics(ws, out, "error");
    assert_eq!(
        errors.len(),
        expected,
        "expected {expected} error diagnostic(s), got:\n{}",
        errors.join("\n")
    );
}

#[track_caller]
fn assert_stderr_lacks(out: &Output, text: &str) {
    assert!(
        !out.stderr.contains(text),
        "stderr has {text:?}\n--- stderr\n{}",
        out.stderr
    );
}

/// How many events the journal holds (0 when the run never opened it).
fn journal_events(ws: &Workspace) -> i64 {
    if !ws.db().exists() {
        return 0;
    }
    let db = ws.journal();
    let has_table: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if has_table == 0 {
        return 0;
    }
    db.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// A valid one-step runbook.
fn trivial(id: &str) -> String {
    format!("runbook: {id}\ntitle: Trivial {id}\nsteps:\n  - id: only\n    shell: \"true\"\n")
}

// ----- 1. every mistake at once, and nothing runs --------------------------------------------

/// Nine mistakes, each on its own line (line numbers are asserted in the test below).
const MANY_MISTAKES: &str = r#"runbook: broken
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
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("9 error(s) in 1 runbook file(s) checked");
    let rb = "runbooks/broken.yaml";
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:4:31: error"),
        &["`default` of parameter `port`", "`eighty`", "int"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:5:34: error"),
        &[
            "`default` of parameter `host` is `DB_1`",
            "does not match its pattern `^[a-z0-9.-]+$`",
        ],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:11:5: error"),
        &[
            "unknown key `tiemout` in step `wait`",
            "did you mean `timeout`?",
        ],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:12:9: error"),
        &["duplicate step id `wait`", "first used at line 9"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:16:5: error"),
        &["step `both` has two kinds, `shell` and `rhai`"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:19:17: error"),
        &["`{{ params.nope }}` names no parameter of this runbook"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:20:14: error"),
        &["`timeout`", "`10x` is not a duration", "`30s`"],
    );
    // `let y = ;`: the `;` is column 9 of the script, column 15 of the file.
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:23:15: error"),
        &["Rhai error in step `compute`", "Unexpected ';'"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:25:13: error"),
        &["step `external`", "script file `missing.rhai` not found"],
    );
    assert_error_count(&ws, &out, 9);

    // Sorted by line: the report reads top to bottom like the file.
    let lines: Vec<usize> = diagnostics(&ws, &out, "error")
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);

    // `run` analyzes first: the same errors, exit 2, and step 1 never ran.
    let run = ws.cmd(["run", "broken"]).run().status(2);
    assert!(
        run.stdout.is_empty(),
        "a refused run prints no run id:\n{}",
        run.stdout
    );
    assert_diagnostic(
        &ws,
        &run,
        &format!("{rb}:11:5: error"),
        &["did you mean `timeout`?"],
    );
    assert_diagnostic(
        &ws,
        &run,
        &format!("{rb}:25:13: error"),
        &["`missing.rhai` not found"],
    );
    assert_error_count(&ws, &run, 9);
    assert!(!ws.path().join("marker").exists(), "the first step ran");
    assert_eq!(journal_events(&ws), 0, "a refused run journals nothing");

    // The control: the same first step in a valid runbook does leave its mark and events.
    let fixed = r#"runbook: fixed
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
    assert!(journal_events(&ws) > 0);
}

#[test]
fn a_rhai_error_deep_in_a_block_is_mapped_to_its_own_line() {
    let ws = Workspace::new();
    ws.runbook(
        "deep",
        r#"runbook: deep
title: Deep
steps:
  - id: compute
    rhai: |
      let x = 1;
      let y = ;
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/deep.yaml:7:15: error",
        &["Rhai error in step `compute`", "Unexpected ';'"],
    );
}

#[test]
fn a_placeholder_deep_in_a_block_is_mapped_to_its_own_line() {
    let ws = Workspace::new();
    ws.runbook(
        "deep",
        r#"runbook: deep
title: Deep
steps:
  - id: say
    shell: |
      echo one
      echo {{ params.nope }}
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/deep.yaml:7:12: error",
        &["`{{ params.nope }}` names no parameter"],
    );
}

#[test]
fn yaml_syntax_errors_and_duplicate_keys_have_positions() {
    let ws = Workspace::new();
    ws.runbook(
        "dup",
        "runbook: dup\ntitle: One\ntitle: Two\nsteps:\n  - id: s\n    shell: \"true\"\n",
    );
    ws.runbook(
        "unclosed",
        "runbook: unclosed\ntitle: T\nsteps:\n  - id: s\n    shell: \"true\n",
    );
    ws.runbook(
        "indent",
        "runbook: indent\ntitle: T\nsteps:\n  - id: s\n     shell: x\n",
    );
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("3 error(s) in 3 runbook file(s) checked");
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/dup.yaml:3:1: error",
        &["duplicate key `title` (first given at line 2)"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/unclosed.yaml:5:12: error",
        &["YAML syntax error", "quoted scalar"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/indent.yaml:5:11: error",
        &["YAML syntax error", "mapping values are not allowed"],
    );
    // yaml-rust's own "at byte N line L column C" is not repeated after ours.
    assert_stderr_lacks(&out, " at byte ");
}

// ----- 2. the exact text of a report ---------------------------------------------------------

#[test]
fn a_report_reads_exactly_like_this() {
    let ws = Workspace::new();
    ws.runbook(
        "typo",
        "runbook: typo
title: A runbook with two typos
steps:
  - id: wait
    shell: \"true\"
    tiemout: 5s
  - id: notify
    name: Tell the channel
    manual: Post the notice
    on_failure: contiune
",
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_eq!(
        normalised(&ws, &out.stderr),
        "\
$WS/runbooks/typo.yaml:6:5: error: unknown key `tiemout` in step `wait`; did you mean `timeout`?
  |
6 |     tiemout: 5s
  |     ^
$WS/runbooks/typo.yaml:10:17: error: `on_failure` is `contiune`; it must be one of abort, continue, rollback; did you mean `continue`?
   |
10 |     on_failure: contiune
   |                 ^
"
    );
    assert_eq!(out.stdout, "2 error(s) in 1 runbook file(s) checked\n");
}

// ----- 3. hostile input ----------------------------------------------------------------------

#[test]
fn billion_laughs_is_refused_quickly() {
    let ws = Workspace::new();
    let mut yaml = String::from("runbook: laughs\ntitle: Laughs\n");
    yaml.push_str(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
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

    let out = ws.cmd(["check"]).run().status(2);
    // The caret sits on line 3, where the first anchor is.
    assert!(
        normalised(&ws, &out.stderr).starts_with("$WS/runbooks/laughs.yaml:3:"),
        "{}",
        out.stderr
    );
    let out =
        out.stderr_has("YAML anchors and aliases (`&name`, `*name`) are not allowed in runbooks");
    assert_error_count(&ws, &out, 1);

    let run = ws.cmd(["run", "laughs"]).run().status(2);
    run.stderr_has("anchors and aliases");
    assert_eq!(journal_events(&ws), 0);
}

#[test]
fn a_50_mb_runbook_is_refused_before_parsing() {
    let ws = Workspace::new();
    // Valid YAML with an unknown key near the top: parsing it would report `nmae`.
    let mut yaml = String::from(
        "runbook: huge\ntitle: Huge\nsteps:\n  - id: s\n    nmae: x\n    shell: \"true\"\n",
    );
    let padding = format!("# {}\n", "x".repeat(1021));
    yaml.reserve(50 * 1024 * 1024);
    while yaml.len() < 50 * 1024 * 1024 {
        yaml.push_str(&padding);
    }
    let size = yaml.len();
    ws.runbook("huge", &yaml);
    drop(yaml);

    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stderr_has("/runbooks/huge.yaml: error: is ")
        .stderr_has(&format!("is {size} bytes"))
        .stderr_has("limited to 1048576 bytes (1 MiB)");
    assert_stderr_lacks(&out, "nmae");
    assert_error_count(&ws, &out, 1);

    let run = ws.cmd(["run", "huge"]).run().status(2);
    let run = run.stderr_has("(1 MiB)");
    assert_stderr_lacks(&run, "nmae");
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
    ws.runbook("at-cap", &pad_to("at-cap", 1024 * 1024));
    ws.cmd(["check"])
        .run()
        .status(0)
        .stdout_has("1 runbook(s) valid");
    // One byte more is refused (checked on its own: parsing 1 MiB is the slow part here).
    ws.runbook("over-cap", &pad_to("over-cap", 1024 * 1024 + 1));
    let over = ws.path().join("runbooks/over-cap.yaml");
    let out = ws
        .cmd(["check", &over.display().to_string()])
        .run()
        .status(2)
        .stdout_has("1 error(s) in 1 runbook file(s) checked");
    assert_eq!(
        normalised(&ws, &out.stderr),
        "$WS/runbooks/over-cap.yaml: error: is 1048577 bytes; runbooks and scripts are limited \
         to 1048576 bytes (1 MiB): split it, or move data out of it\n"
    );
}

// ----- 4. Rhai: conditions, script files, imports --------------------------------------------

#[test]
fn a_rhai_error_in_when_is_mapped_into_the_yaml() {
    let ws = Workspace::new();
    ws.runbook(
        "cond",
        r#"runbook: cond
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
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/cond.yaml:5:22: error",
        &["Rhai error in `when` of step `quoted`", "incomplete"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/cond.yaml:8:22: error",
        &["Rhai error in `when` of step `plain`", "Unexpected '>'"],
    );
    assert_error_count(&ws, &out, 2);
}

#[test]
fn a_rhai_error_in_a_script_file_is_reported_in_that_file() {
    let ws = Workspace::new();
    ws.script("tidy.rhai", "// tidy up\nlet a = 1;\nlet b = a +;\n");
    ws.runbook(
        "tidy",
        "runbook: tidy\ntitle: Tidy\nsteps:\n  - id: tidy-up\n    script: tidy.rhai\n",
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "scripts/tidy.rhai:3:12: error",
        &["Rhai error (script of step `tidy-up`)", "Unexpected ';'"],
    );
    // The excerpt is the script's line, not a line of the runbook.
    let out = out.stderr_has("3 | let b = a +;\n  |            ^");
    assert_stderr_lacks(&out, "tidy.yaml:");
    ws.cmd(["run", "tidy"])
        .run()
        .status(2)
        .stderr_has("tidy.rhai:3:12: error: Rhai error (script of step `tidy-up`)");
    assert_eq!(journal_events(&ws), 0);
}

#[test]
fn a_broken_script_file_is_one_error() {
    let ws = Workspace::new();
    ws.script("tidy.rhai", "let b = 1 +;\n");
    ws.runbook(
        "tidy",
        "runbook: tidy\ntitle: Tidy\nsteps:\n  - id: tidy-up\n    script: tidy.rhai\n",
    );
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("1 error(s) in 1 runbook file(s) checked");
    assert_error_count(&ws, &out, 1);
}

#[test]
fn a_broken_script_nobody_uses_is_still_an_error() {
    let ws = Workspace::new();
    ws.runbook("fine", &trivial("fine"));
    ws.script("unused.rhai", "fn f( {\n");
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("1 error(s) in 1 runbook file(s) checked");
    let out = out.stderr_has("/scripts/unused.rhai:1:");
    assert_stderr_lacks(&out, "fine.yaml");
}

#[test]
fn imports_cannot_leave_the_scripts_folder() {
    let ws = Workspace::new();
    // A module right beside scripts/: reachable as `../outside` if escapes were allowed.
    ws.file("outside.rhai", "fn hello() { 1 }\n");
    ws.file("lib/inner.rhai", "fn hello() { 1 }\n");
    ws.script("good.rhai", "fn hello() { 1 }\n");
    ws.script("sneaky.rhai", "import \"../outside\" as o;\no::hello();\n");
    ws.runbook(
        "escape",
        r#"runbook: escape
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
    let out = ws.cmd(["check"]).run().status(2);
    let refused = "modules are imported by a name under scripts/, without `..` or a leading `/`";
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/escape.yaml:6:7: error",
        &["Rhai error in step `up`", "../outside", refused],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/escape.yaml:9:7: error",
        &["step `sideways`", "../lib/inner", refused],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/escape.yaml:11:12: error",
        &["step `absolute`", "/etc/passwd", refused],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/escape.yaml:17:13: error",
        &["`script: ../outside.rhai` must name a file inside the scripts folder"],
    );
    // From a script file, the import is refused too, and reported in that file.
    let stderr = normalised(&ws, &out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("$WS/scripts/sneaky.rhai")
                && l.contains("script of step `sneaky`")
                && l.contains(refused)),
        "{stderr}"
    );
    let in_runbook = diagnostics(&ws, &out, "error")
        .iter()
        .filter(|l| l.starts_with("$WS/runbooks/escape.yaml:"))
        .count();
    assert_eq!(in_runbook, 4, "{stderr}");
    assert_stderr_lacks(&out, "`allowed`");
    ws.cmd(["run", "escape"]).run().status(2);
    assert_eq!(journal_events(&ws), 0);
}

#[test]
fn a_missing_module_is_an_error() {
    let ws = Workspace::new();
    ws.script("main.rhai", "import \"gone\" as g;\ng::f();\n");
    ws.runbook(
        "mods",
        r#"runbook: mods
title: Modules
steps:
  - id: inline
    rhai: |
      import "nowhere" as n;
  - id: from-file
    script: main.rhai
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/mods.yaml:6:7: error",
        &[
            "Rhai error in step `inline`",
            "module not found: nowhere",
            "scripts/nowhere.rhai",
        ],
    );
    let stderr = normalised(&ws, &out.stderr);
    assert!(
        stderr.contains("$WS/scripts/main.rhai")
            && stderr.contains("Rhai error (script of step `from-file`): module not found: gone"),
        "{stderr}"
    );
}

#[test]
fn a_missing_module_is_reported_at_its_import() {
    let ws = Workspace::new();
    ws.script("main.rhai", "// main\n\nimport \"gone\" as g;\n");
    ws.runbook(
        "mods",
        r#"runbook: mods
title: Modules
steps:
  - id: inline
    rhai: "let a = 1; import \"nowhere\" as n;"
  - id: from-file
    script: main.rhai
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/mods.yaml:5:23: error",
        &["module not found: nowhere"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "scripts/main.rhai:3:1: error",
        &["module not found: gone"],
    );
}

// ----- 5. parameters on `run` ----------------------------------------------------------------

const PARAMS: &str = r#"runbook: vacuum
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
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["-p", "hots=db1"],
            &[
                "parameter `hots`",
                "no such parameter",
                "did you mean `host`?",
            ],
        ),
        (
            &["-p", "host=db1", "-p", "zzzz=1"],
            &[
                "parameter `zzzz`",
                "it takes: host, min_free, mode, password",
            ],
        ),
        (
            &["-p", "host=db1", "-p", "min_free=lots"],
            &["parameter `min_free`", "must be a whole number, not `lots`"],
        ),
        (
            &["-p", "host=DB_1"],
            &[
                "parameter `host`",
                "`DB_1` does not match the pattern `^[a-z0-9.-]+$`",
            ],
        ),
        (
            &["-p", "host=db1", "-p", "mode=fats"],
            &[
                "parameter `mode`",
                "`fats` is not one of: fast, safe",
                "did you mean `fast`?",
            ],
        ),
        (
            &[],
            &[
                "parameter `host`",
                "is required (Database host)",
                "pass -p host=VALUE",
            ],
        ),
        (
            &["-p", "host=db1", "-p", "password=hunter2"],
            &[
                "parameter `password`",
                "is secret and is never taken from the command line",
                "PGPASSWORD",
            ],
        ),
        (
            &["-p", "host"],
            &["`-p host` is not KEY=VALUE", "`-p host=db1`"],
        ),
        (&["-p", "=db1"], &["`-p =db1` is not KEY=VALUE"]),
        (
            &["-p", "host=db1", "-p", "host=db2"],
            &["parameter `host`", "given twice"],
        ),
    ];
    for (args, phrases) in cases {
        let mut argv = vec!["run", "vacuum", "--non-interactive"];
        argv.extend_from_slice(args);
        let mut out = ws.cmd(argv.clone()).run().status(2);
        for phrase in *phrases {
            out = out.stderr_has(phrase);
        }
        assert!(
            out.stdout.is_empty(),
            "{argv:?} started a run:\n{}",
            out.stdout
        );
        // The secret's value is never echoed back.
        assert_stderr_lacks(&out, "hunter2");
    }
    assert!(!ws.path().join("marker").exists(), "a step ran");
    assert_eq!(journal_events(&ws), 0);

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
        r#"runbook: modes
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
    assert!(out.code == 0 || out.code == 2, "{out:?}");
    if out.code == 2 {
        out.stderr_has("parameter `mode`");
    }
}

// ----- 6. unknown runbooks -------------------------------------------------------------------

#[test]
fn an_unknown_runbook_id_suggests_the_nearest() {
    let ws = Workspace::new();
    ws.runbook("host-health", &trivial("host-health"));
    ws.runbook("disk-cleanup", &trivial("disk-cleanup"));
    let out = ws
        .cmd(["run", "host-helth"])
        .run()
        .status(2)
        .stderr_has("unknown runbook `host-helth`")
        .stderr_has("did you mean `host-health`?");
    assert_stderr_lacks(&out, "disk-cleanup");
    assert!(out.stdout.is_empty());

    ws.cmd(["run", "zzzzzzzz"])
        .run()
        .status(2)
        .stderr_has("unknown runbook `zzzzzzzz`")
        .stderr_has("`opsbook list` shows the library");
    ws.cmd(["run", "./runbooks/host-helth.yaml"])
        .run()
        .status(2)
        .stderr_has("./runbooks/host-helth.yaml: no such runbook file");
    assert_eq!(journal_events(&ws), 0);
}

// ----- 7. warnings, and the whole library ----------------------------------------------------

#[test]
fn an_overdue_review_is_a_warning_not_an_error() {
    let ws = Workspace::new();
    ws.runbook(
        "old",
        r#"runbook: old
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
        r#"runbook: current
title: Current
review_every: 100000d
last_reviewed: 2020-01-01
steps:
  - id: only
    shell: "true"
"#,
    );
    let out = ws
        .cmd(["check"])
        .run()
        .status(0)
        .stdout_has("2 runbook(s) valid, 1 warning(s)");
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/old.yaml:4:16: warning",
        &[
            "review overdue",
            "last reviewed 2020-01-01",
            "due every 30d",
            "since 2020-01-31",
            "update `last_reviewed`",
        ],
    );
    assert_error_count(&ws, &out, 0);
    assert_stderr_lacks(&out, "current.yaml");

    // A warning does not stop a run; it is shown on stderr.
    ws.cmd(["run", "old"])
        .run()
        .status(0)
        .stderr_has("warning: review overdue");
}

#[test]
fn check_without_a_path_checks_the_whole_library() {
    let ws = Workspace::new();
    ws.runbook("alpha", &trivial("alpha"));
    ws.runbook("omega", &trivial("omega"));
    ws.runbook(
        "middle",
        "runbook: middle\ntitle: Middle\nsteps:\n  - id: only\n    shel: \"true\"\n",
    );
    ws.file("runbooks/NOTES.md", "not a runbook: {{ nope\n");
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("2 error(s) in 3 runbook file(s) checked");
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/middle.yaml:5:5: error",
        &["unknown key `shel` in step `only`", "did you mean `shell`?"],
    );
    let out = out.stderr_has("step `only` has no kind; give it one of: rhai, script, shell");
    for good in ["alpha.yaml", "omega.yaml", "NOTES.md"] {
        assert_stderr_lacks(&out, good);
    }

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
    .stdout_has("2 runbook(s) valid");
}

// ----- 8. strictness -------------------------------------------------------------------------

#[test]
fn strict_about_steps_gates_retries_and_groups() {
    let ws = Workspace::new();
    ws.runbook(
        "strict",
        r#"runbook: strict
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
    let out = ws
        .cmd(["check"])
        .run()
        .status(2)
        .stdout_has("6 error(s) in 1 runbook file(s) checked");
    let rb = "runbooks/strict.yaml";
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:5:11: error"),
        &["the gate of step `sign` needs a `prompt`"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:8:17: error"),
        &[
            "`on_failure` is `explode`",
            "it must be one of abort, continue, rollback",
        ],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:11:12: error"),
        &["`retry` of step `again` needs `attempts`"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:17:17: error"),
        &["step `p2` is a manual step inside a parallel group"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:19:15: error"),
        &["step `p3` is a gate inside a parallel group"],
    );
    assert_diagnostic(
        &ws,
        &out,
        &format!("{rb}:22:13: error"),
        &[
            "`expect` is for test scripts",
            "`kind: test`",
            "step `tested`",
        ],
    );

    // In a test script the same `expect` is allowed.
    ws.runbook(
        "tested",
        r#"runbook: tested
title: Tested
kind: test
steps:
  - id: tested
    shell: "true"
    expect: "exit_code == 0"
"#,
    );
    let out = ws
        .cmd([
            "check",
            &ws.path().join("runbooks/tested.yaml").display().to_string(),
        ])
        .run();
    assert_error_count(&ws, &out, 0);
}

#[test]
fn undo_must_name_a_step() {
    let ws = Workspace::new();
    ws.runbook(
        "undo",
        r#"runbook: undo
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
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/undo.yaml:9:11: error",
        &[
            "`undo: deplyo` names no step of this runbook",
            "did you mean `deploy`?",
        ],
    );
    assert_error_count(&ws, &out, 1);
    ws.cmd(["run", "undo"]).run().status(2);
    assert_eq!(journal_events(&ws), 0);
}

#[test]
fn undo_naming_a_missing_step_is_reported_with_the_other_errors() {
    let ws = Workspace::new();
    ws.runbook(
        "undo",
        r#"runbook: undo
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
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(&ws, &out, "runbooks/undo.yaml:6:5: error", &["tiemout"]);
    let out = out.stderr_has("`undo: deplyo` names no step");
    assert_error_count(&ws, &out, 2);
}

#[test]
fn a_missing_key_is_reported_at_its_mapping() {
    let ws = Workspace::new();
    ws.runbook(
        "blocks",
        r#"runbook: blocks
steps:
  - id: sign
    gate:
      role: supervisor
  - name: no id
    shell: "true"
"#,
    );
    let out = ws.cmd(["check"]).run().status(2);
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/blocks.yaml:1:1: error",
        &["the runbook has no `title`"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/blocks.yaml:5:7: error",
        &["the gate of step `sign` needs a `prompt`"],
    );
    assert_diagnostic(
        &ws,
        &out,
        "runbooks/blocks.yaml:6:5: error",
        &["this step has no `id`"],
    );
}
