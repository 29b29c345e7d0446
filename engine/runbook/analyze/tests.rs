//! The analyzer's diagnostics, in-process: small runbook texts, each with every problem it
//! must report, at its exact `line:col`, with its severity and its exact message.

use super::*;
use crate::diagnostic::Severity::{self, Error, Warning};

/// One case: what it shows, the runbook text (the file is `rb.yaml`, so its id is `rb`), and
/// every diagnostic expected, in order, as (line, column, severity, message).
type Case = (
    &'static str,
    &'static str,
    &'static [(usize, usize, Severity, &'static str)],
);

/// Every diagnostic of `yaml` analyzed as `rb.yaml`, as (line, column, severity, message).
fn diagnostics_of(yaml: &str) -> Vec<(usize, usize, Severity, String)> {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::script::build_engine(dir.path());
    let source = SourceFile::from_bytes(Path::new("rb.yaml"), yaml.as_bytes().to_vec()).unwrap();
    let analysis = analyze_source(source, dir.path(), &engine);
    analysis
        .diagnostics
        .0
        .into_iter()
        .map(|d| (d.line, d.column, d.severity, d.message))
        .collect()
}

fn check(cases: &[Case]) {
    for (what, yaml, expected) in cases {
        let expected: Vec<(usize, usize, Severity, String)> = expected
            .iter()
            .map(|(line, column, severity, message)| {
                (*line, *column, *severity, message.to_string())
            })
            .collect();
        assert_eq!(diagnostics_of(yaml), expected, "{what}:\n{yaml}");
    }
}

#[test]
fn a_clean_runbook_has_no_diagnostics_and_a_plan() {
    let yaml = r#"runbook: rb
title: T
params:
  host: { type: string, default: db1 }
steps:
  - id: a
    shell: ping -c1 "{{ params.host }}"
  - id: b
    when: "!dry_run"
    rhai: |
      let x = 1;
"#;
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::script::build_engine(dir.path());
    let source = SourceFile::from_bytes(Path::new("rb.yaml"), yaml.as_bytes().to_vec()).unwrap();
    let analysis = analyze_source(source, dir.path(), &engine);
    assert_eq!(analysis.diagnostics.0, Vec::new());
    let plan = analysis.plan.expect("a clean runbook has a plan");
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn unknown_keys_are_reported_at_the_key_with_what_was_meant() {
    check(&[
        (
            "a top-level key close to a known one",
            r#"runbook: rb
title: T
titel: x
steps:
  - id: a
    shell: "true"
"#,
            &[(
                3,
                1,
                Error,
                "unknown key `titel` in the runbook; did you mean `title`?",
            )],
        ),
        (
            "a step key close to a known one",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    timout: 5s
"#,
            &[(
                6,
                5,
                Error,
                "unknown key `timout` in step `a`; did you mean `timeout`?",
            )],
        ),
        (
            "a step key close to nothing lists what a step takes",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    zzz: 1
"#,
            &[(
                6,
                5,
                Error,
                "unknown key `zzz` in step `a`; step `a` takes: id, name, description, rhai, script, shell, manual, gate, parallel, when, timeout, retry, on_failure, readonly, idempotent, undo, expect",
            )],
        ),
        (
            "a gate key and a retry key, each in its own mapping",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    retry: { attempts: 2, dealy: 5s }
  - id: g
    gate:
      prompt: ok
      roles: supervisor
"#,
            &[
                (
                    6,
                    27,
                    Error,
                    "unknown key `dealy` in `retry` of step `a`; did you mean `delay`?",
                ),
                (
                    10,
                    7,
                    Error,
                    "unknown key `roles` in the gate of step `g`; did you mean `role`?",
                ),
            ],
        ),
    ]);
}

#[test]
fn wrong_types_and_values_are_reported_at_the_value() {
    check(&[
        (
            "a word for a number, a word for a boolean, a list for a mapping",
            r#"runbook: rb
title: T
version: three
steps:
  - id: a
    shell: "true"
    readonly: maybe
    retry: [1]
"#,
            &[
                (
                    3,
                    10,
                    Error,
                    "`version` must be a whole number of at least 1, not `three`",
                ),
                (7, 15, Error, "`readonly` must be true or false, not `maybe`"),
                (
                    8,
                    12,
                    Error,
                    "`retry` of step `a` must be a mapping like `{ attempts: 3, delay: 10s }`",
                ),
            ],
        ),
        (
            "a scalar for a list, a list for a scalar",
            r#"runbook: rb
title: T
tags: web
steps:
  - id: a
    shell: "true"
    name: [x]
"#,
            &[
                (3, 7, Error, "`tags` must be a list, like `[a, b]`"),
                (7, 11, Error, "`name` must be text"),
            ],
        ),
        (
            "an enum value close to an allowed one",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    on_failure: rolback
"#,
            &[(
                6,
                17,
                Error,
                "`on_failure` is `rolback`; it must be one of abort, continue, rollback; did you mean `rollback`?",
            )],
        ),
        (
            "a duration in words, and one with an unknown unit",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    timeout: 5 minutes
    retry: { attempts: 2, delay: 10sec }
"#,
            &[
                (
                    6,
                    14,
                    Error,
                    "`timeout`: `5 minutes` is not a duration; write it like `30s`, `10m`, `2h`, `1d` or `1h30m`",
                ),
                (
                    7,
                    34,
                    Error,
                    "`delay`: `10sec` is not a duration; write it like `30s`, `10m`, `2h`, `1d` or `1h30m`",
                ),
            ],
        ),
        (
            "a last_reviewed month that does not exist",
            r#"runbook: rb
title: T
last_reviewed: 2026-13-01
steps:
  - id: a
    shell: "true"
"#,
            &[(
                3,
                16,
                Error,
                "`last_reviewed` is `2026-13-01`; write the date as YYYY-MM-DD",
            )],
        ),
        (
            "a last_reviewed date in another order",
            r#"runbook: rb
title: T
last_reviewed: 01/02/2026
steps:
  - id: a
    shell: "true"
"#,
            &[(
                3,
                16,
                Error,
                "`last_reviewed` is `01/02/2026`; write the date as YYYY-MM-DD",
            )],
        ),
    ]);
}

#[test]
fn step_shape_errors_point_at_the_step_or_the_offending_key() {
    check(&[
        (
            "a duplicate id, at the second one, naming the line of the first",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
  - id: a
    shell: "false"
"#,
            &[(
                6,
                9,
                Error,
                "duplicate step id `a` (first used at line 4); step ids must be unique",
            )],
        ),
        (
            "a step with no kind, at its first key",
            r#"runbook: rb
title: T
steps:
  - id: a
    name: nothing
"#,
            &[(
                4,
                5,
                Error,
                "step `a` has no kind; give it one of: rhai, script, shell, manual, gate, parallel",
            )],
        ),
        (
            "a step with two kinds, at the second kind",
            r#"runbook: rb
title: T
steps:
  - id: a
    shell: "true"
    manual: Do it
"#,
            &[(
                6,
                5,
                Error,
                "step `a` has two kinds, `shell` and `manual`; a step does one thing, so split it into two steps",
            )],
        ),
        (
            "a step with no id",
            r#"runbook: rb
title: T
steps:
  - name: x
    shell: "true"
"#,
            &[(
                4,
                5,
                Error,
                "this step has no `id`; give every step a unique id",
            )],
        ),
    ]);
}

#[test]
fn rhai_errors_are_mapped_to_their_place_in_the_yaml_file() {
    check(&[
        (
            "a `rhai: |` block, error on its second line",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: |
      let x = 1;
      let y = ;
"#,
            &[(
                7,
                15,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a `rhai: |-` block after a blank line inside it",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: |-
      let x = 1;

      let y = ;
"#,
            &[(
                8,
                15,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a `rhai: |2` block: the extra indentation is content",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: |2
        let y = ;
"#,
            &[(
                6,
                17,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "columns count characters, not bytes",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: |
      let x = "é"; let y = ;
"#,
            &[(
                6,
                28,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a double-quoted `rhai:` flow scalar",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: "let y = ;"
"#,
            &[(
                5,
                20,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a plain `when:` flow scalar, at the offending token",
            r#"runbook: rb
title: T
steps:
  - id: a
    when: (dry_run ] 1
    shell: "true"
"#,
            &[(
                5,
                20,
                Error,
                "Rhai error in `when` of step `a`: Expecting ')' for a matching ( in this expression",
            )],
        ),
        (
            "a double-quoted `when:`, past its opening quote",
            r#"runbook: rb
title: T
steps:
  - id: a
    when: "(dry_run ]"
    shell: "true"
"#,
            &[(
                5,
                21,
                Error,
                "Rhai error in `when` of step `a`: Expecting ')' for a matching ( in this expression",
            )],
        ),
        (
            "an incomplete `when:`, just past its end",
            r#"runbook: rb
title: T
steps:
  - id: a
    when: dry_run &&
    shell: "true"
"#,
            &[(
                5,
                21,
                Error,
                "Rhai error in `when` of step `a`: Script is incomplete",
            )],
        ),
    ]);
}

/// Positions mapped through scalar content that is not the file's text: blank lines stripped
/// from the start of a block, lines folded by `>`, escapes decoded in quotes.
#[test]
fn rhai_positions_through_transformed_scalar_content() {
    check(&[
        (
            "a `rhai: |` block that starts with a blank line",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: |

      let y = ;
"#,
            &[(
                7,
                15,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a `rhai: >` folded block, error on its second line",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: >
      let x = 1;
      let y = ;
"#,
            &[(
                7,
                15,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a double-quoted `rhai:` with escapes before the error",
            r#"runbook: rb
title: T
steps:
  - id: a
    rhai: "let y = \"\\t\"; let z = ;"
"#,
            &[(
                5,
                37,
                Error,
                "Rhai error in step `a`: Syntax error: Unexpected ';'",
            )],
        ),
        (
            "a single-quoted `when:` with doubled quotes before the error",
            r#"runbook: rb
title: T
steps:
  - id: a
    when: 'dry_run == ''x'' ]'
    shell: "true"
"#,
            &[(
                5,
                29,
                Error,
                "Rhai error in `when` of step `a`: Unexpected ']'",
            )],
        ),
    ]);
}

#[test]
fn placeholders_and_params_are_checked_where_they_stand() {
    check(&[
        (
            "an unknown param in a plain command, with the param it is close to",
            r#"runbook: rb
title: T
params:
  host: { type: string }
steps:
  - id: a
    shell: ping {{ params.hots }}
"#,
            &[(
                7,
                17,
                Error,
                "`{{ params.hots }}` names no parameter of this runbook; did you mean `host`?",
            )],
        ),
        (
            "an unknown param in a double-quoted command, past the quote",
            r#"runbook: rb
title: T
params:
  host: { type: string }
steps:
  - id: a
    shell: "ping {{ params.hots }}"
"#,
            &[(
                7,
                18,
                Error,
                "`{{ params.hots }}` names no parameter of this runbook; did you mean `host`?",
            )],
        ),
        (
            "an unknown param on the second line of a `manual: |` block",
            r#"runbook: rb
title: T
params:
  host: {}
steps:
  - id: a
    manual: |
      Log in.
      Ping {{ params.hots }} now.
"#,
            &[(
                9,
                12,
                Error,
                "`{{ params.hots }}` names no parameter of this runbook; did you mean `host`?",
            )],
        ),
        (
            "a runbook without params, and a var of a later step in a gate prompt",
            r#"runbook: rb
title: T
steps:
  - id: g
    gate: { prompt: "disk at {{ vars.disk.pct }} and {{ params.x }}" }
  - id: disk
    shell: df
"#,
            &[
                (
                    5,
                    30,
                    Error,
                    "`{{ vars.disk.… }}` in step `g` names no earlier step",
                ),
                (
                    5,
                    54,
                    Error,
                    "`{{ params.x }}` names no parameter of this runbook",
                ),
            ],
        ),
        (
            "a required param with a default is a warning, and the file still plans",
            r#"runbook: rb
title: T
params:
  host: { required: true, default: db1 }
steps:
  - id: a
    shell: "true"
"#,
            &[(
                4,
                36,
                Warning,
                "parameter `host` is required and also has a default; the default is never used",
            )],
        ),
    ]);
}
