//! What a report must not hide or garble: steps the run never reached, the real status of a
//! run whose process is gone, the custody chain and the output `show` leaves out, and
//! Markdown or HTML that command output could break out of. Each test is named after what
//! broke; the Markdown is read back with a CommonMark renderer (pulldown-cmark, with GitHub
//! tables), as a code-hosting site would show it.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use regex::Regex;
use serde_json::Value;

use crate::support::journal::wait_for_event;
use crate::support::{Output, Workspace};

// ----- helpers -------------------------------------------------------------------------------

fn report(ws: &Workspace, run_id: &str, format: &str) -> String {
    ws.cmd(["report", run_id, "--format", format])
        .run()
        .status(0)
        .stdout
}

fn report_json(ws: &Workspace, run_id: &str) -> Value {
    ws.cmd(["report", run_id, "--format", "json"])
        .run()
        .status(0)
        .json()
}

/// Replaces what changes from run to run with placeholders: run ids, times, durations, hashes, the workspace, the host and the operator.
fn normalise(ws: &Workspace, json: &Value, text: &str) -> String {
    let mut out = text.replace(&ws.path().display().to_string(), "<TMP>");
    if let Ok(real) = ws.path().canonicalize() {
        out = out.replace(&real.display().to_string(), "<TMP>");
    }
    let rules: &[(&str, &str)] = &[
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})",
            "<TIME>",
        ),
        (r"\b[0-9a-f]{64}\b", "<HASH>"),
        (r"\b[0-9a-f]{12,16}\b", "<SHORT>"),
        (r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "<RUN_ID>"),
        (r#"time="[^"]*""#, r#"time="<S>""#),
        (r"\b\d+m\d{2}s\b", "<DUR>"),
        (r"\b\d+ms\b", "<DUR>"),
        (r"\b\d+(?:\.\d+)?s\b", "<DUR>"),
    ];
    for (pattern, placeholder) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, *placeholder)
            .into_owned();
    }
    for (key, placeholder) in [("host", "<HOST>"), ("operator", "<USER>")] {
        if let Some(name) = json["run"][key].as_str().filter(|n| !n.is_empty()) {
            let word = Regex::new(&format!(r"\b{}\b", regex::escape(name))).unwrap();
            out = word.replace_all(&out, placeholder).into_owned();
        }
    }
    out
}

/// The lines of `text` from the one starting with `from` to the first blank line after it.
fn section<'a>(text: &'a str, from: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(from))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// Text as a terminal-safe report shows it: control characters and bidirectional marks
/// escaped (`\x1b`, `\u202e`), newlines and tabs kept.
fn visible(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let unsafe_char = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
        if !unsafe_char {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    out
}

/// A value that must stay on one line (a table cell, a list item): line breaks shown as ↵.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ↵ ").replace(['\n', '\r'], " ↵ ")
}

/// A Markdown document as a renderer reads it.
#[derive(Debug, Default)]
struct Markdown {
    /// Each table's rows (the header first), each row's cells as plain text.
    tables: Vec<Vec<Vec<String>>>,
    /// Each fenced code block's info string and text.
    code_blocks: Vec<(String, String)>,
    /// Each code span's text, in order.
    code_spans: Vec<String>,
    /// Each heading's plain text.
    headings: Vec<String>,
    /// Each list item's plain text (nested items separately).
    items: Vec<String>,
    /// Raw HTML anywhere: there must be none.
    html: Vec<String>,
}

fn read_markdown(md: &str) -> Markdown {
    let mut doc = Markdown::default();
    // Open containers, innermost last: the text of each is collected as it is read.
    let mut open: Vec<(&'static str, String)> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut code_block: Option<(String, String)> = None;
    let push_text = |open: &mut Vec<(&'static str, String)>, text: &str| {
        if let Some((_, t)) = open.last_mut() {
            t.push_str(text);
        }
    };
    for event in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => doc.tables.push(Vec::new()),
            Event::Start(Tag::TableHead | Tag::TableRow) => row.clear(),
            Event::End(TagEnd::TableHead | TagEnd::TableRow) => {
                doc.tables
                    .last_mut()
                    .unwrap()
                    .push(std::mem::take(&mut row));
            }
            Event::Start(Tag::TableCell) => open.push(("cell", String::new())),
            Event::End(TagEnd::TableCell) => row.push(open.pop().unwrap().1),
            Event::Start(Tag::Heading { .. }) => open.push(("heading", String::new())),
            Event::End(TagEnd::Heading(_)) => doc.headings.push(open.pop().unwrap().1),
            Event::Start(Tag::Item) => open.push(("item", String::new())),
            Event::End(TagEnd::Item) => doc.items.push(open.pop().unwrap().1),
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => "(indented)".into(),
                };
                code_block = Some((info, String::new()));
            }
            Event::End(TagEnd::CodeBlock) => doc.code_blocks.push(code_block.take().unwrap()),
            Event::Text(text) => match code_block.as_mut() {
                Some((_, block)) => block.push_str(&text),
                None => push_text(&mut open, &text),
            },
            Event::Code(code) => {
                doc.code_spans.push(code.to_string());
                push_text(&mut open, &code);
            }
            Event::SoftBreak | Event::HardBreak => push_text(&mut open, "\n"),
            Event::Html(html) | Event::InlineHtml(html) => doc.html.push(html.to_string()),
            _ => {}
        }
    }
    doc
}

/// A small deterministic generator (xorshift64*): the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces that break Markdown, HTML or a terminal when not escaped where they land.
const HOSTILE: &[&str] = &[
    "`",
    "``",
    "```",
    "````",
    "~~~",
    "|",
    "\\|",
    "\\",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "<!--",
    "-->",
    "&lt;",
    "&amp;",
    "&#x41;",
    "*",
    "**",
    "_",
    "__",
    "[a](http://x)",
    "![i](x)",
    "#",
    "# ",
    "> ",
    "- ",
    "1. ",
    "---",
    "===",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "    ",
    " ",
    "\u{1b}[31m",
    "\u{1b}]0;title\u{7}",
    "\u{7}",
    "\u{7f}",
    "\u{9b}",
    "\u{202e}",
    "{{ x }}",
    "{% if %}",
    "$(x)",
    "é",
    "word",
    "a",
    "b",
    "<",
    ">",
    "&",
    "\"",
    "'",
];

fn hostile_text(rng: &mut Rng, marker: &str) -> String {
    let mut text = marker.to_string();
    for _ in 0..(4 + rng.below(14)) {
        text.push_str(HOSTILE[rng.below(HOSTILE.len())]);
    }
    text
}

// ----- every step accounted for --------------------------------------------------------------

/// A failure that rolls back: `deploy` fails, `switch` and `notify` are never reached; the
/// rollback runs `restart` (it fails) and never reaches `restore`.
const ROLLED_BACK: &str = r#"runbook: release
title: Release with a rollback
steps:
  - id: prepare
    name: Prepare the host
    shell: echo prepared
  - id: deploy
    name: Deploy
    on_failure: rollback
    shell: echo deploying; exit 3
  - id: switch
    name: Switch traffic
    shell: echo switched
  - id: notify
    manual: Tell the users
rollback:
  - id: restore
    name: Restore the config
    shell: echo restored
  - id: restart
    name: Restart the service
    shell: exit 4
"#;

#[test]
fn steps_never_reached_after_a_rollback_appear_in_every_report() {
    let ws = Workspace::new();
    ws.runbook("release", ROLLED_BACK);
    let id = ws
        .cmd(["run", "release", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let json = report_json(&ws, &id);

    let md = normalise(&ws, &json, &report(&ws, &id, "md"));
    assert_eq!(
        section(&md, "| | Step").join("\n"),
        "\
| | Step | Kind | Status | Started | Ended | Time | Detail |
| --- | --- | --- | --- | --- | --- | --- | --- |
| ✓ | `prepare` Prepare the host | shell | succeeded | <TIME> | <TIME> | <DUR> |  |
| ✗ | `deploy` Deploy | shell | failed | <TIME> | <TIME> | <DUR> | exit code 3 |
| ○ | `switch` Switch traffic | shell | not reached |  |  |  | the run failed at \\`deploy\\` and was rolled back before it got here |
| ○ | `notify` | manual | not reached |  |  |  | the run failed at \\`deploy\\` and was rolled back before it got here |
| ✗ | `restart` Restart the service (rollback) | shell | failed | <TIME> | <TIME> | <DUR> | exit code 4 |
| ○ | `restore` Restore the config (rollback) | shell | not reached |  |  |  | the rollback stopped when \\`restart\\` failed |"
    );

    let steps: Vec<(&str, &str, bool, bool)> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["status_name"].as_str().unwrap(),
                s["reached"].as_bool().unwrap(),
                s["started_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("prepare", "succeeded", true, true),
            ("deploy", "failed", true, true),
            ("switch", "not-reached", false, false),
            ("notify", "not-reached", false, false),
            ("restart", "failed", true, true),
            ("restore", "not-reached", false, false),
        ]
    );
    assert_eq!(
        json["plan"],
        serde_json::json!({"known": true, "note": null})
    );
    assert_eq!(
        json["counts"],
        serde_json::json!({"succeeded": 1, "failed": 2, "not-reached": 3})
    );

    let junit = normalise(&ws, &json, &report(&ws, &id, "junit"));
    let cases: Vec<&str> = junit
        .lines()
        .skip_while(|l| !l.contains("<testcase "))
        .take_while(|l| !l.contains("</testsuite>"))
        .collect();
    assert_eq!(
        cases.join("\n"),
        r#"    <testcase classname="release" name="prepare: Prepare the host" time="<S>">
      <system-out>prepared
</system-out>
    </testcase>
    <testcase classname="release" name="deploy: Deploy" time="<S>">
      <failure message="exit code 3" type="step-failed">attempt 1: failed (exit 3): exit code 3
</failure>
      <system-out>deploying
</system-out>
    </testcase>
    <testcase classname="release" name="switch: Switch traffic" time="<S>">
      <skipped message="not reached: the run failed at `deploy` and was rolled back before it got here"/>
    </testcase>
    <testcase classname="release" name="notify" time="<S>">
      <skipped message="not reached: the run failed at `deploy` and was rolled back before it got here"/>
    </testcase>
    <testcase classname="release.rollback" name="restart: Restart the service" time="<S>">
      <failure message="exit code 4" type="step-failed">attempt 1: failed (exit 4): exit code 4
</failure>
    </testcase>
    <testcase classname="release.rollback" name="restore: Restore the config" time="<S>">
      <skipped message="not reached: the rollback stopped when `restart` failed"/>
    </testcase>"#
    );
    assert!(
        junit.contains(r#"tests="6" failures="2" errors="0" skipped="3""#),
        "{junit}"
    );

    let html = report(&ws, &id, "html");
    let headings: Vec<String> = Regex::new(r"<h3>(.*)</h3>")
        .unwrap()
        .captures_iter(&html)
        .map(|c| {
            let text = Regex::new("<[^>]+>").unwrap().replace_all(&c[1], "");
            normalise(&ws, &json, &text)
        })
        .collect();
    assert_eq!(
        headings,
        [
            "✓ succeeded Prepare the host (prepare, shell, <DUR>)",
            "✗ failed Deploy (deploy, shell, <DUR>)",
            "○ not reached Switch traffic (switch, shell)",
            "○ not reached notify (notify, manual)",
            "✗ failed Restart the service (restart, shell, rollback, <DUR>)",
            "○ not reached Restore the config (restore, shell, rollback)",
        ]
    );
}

/// How a run stops, and what every step after it is then.
#[test]
fn steps_never_reached_after_a_failure_a_rejection_or_a_park_are_listed_with_the_reason() {
    let ws = Workspace::new();
    ws.runbook(
        "stops",
        r#"runbook: stops
title: Stops early
params:
  how: { type: string, enum: [fail, gate] }
steps:
  - id: first
    when: 'params.how == "fail"'
    shell: exit 1
  - id: gate
    when: 'params.how == "gate"'
    gate:
      prompt: Go on?
  - id: group
    parallel:
      - id: left
        shell: echo left
      - id: right
        shell: echo right
  - id: last
    shell: echo last
"#,
    );
    let not_reached = |json: &Value| -> Vec<(String, String)> {
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status_name"] == "not-reached")
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let expect = |reason: &str| -> Vec<(String, String)> {
        let after_gate = ["group", "left", "right", "last"];
        let ids = if reason.contains("`first`") {
            &["gate", "group", "left", "right", "last"][..]
        } else {
            &after_gate[..]
        };
        ids.iter()
            .map(|id| (id.to_string(), reason.to_string()))
            .collect()
    };

    // A failure that stops the run.
    let failed = ws
        .cmd(["run", "stops", "-p", "how=fail", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let json = report_json(&ws, &failed);
    assert_eq!(
        not_reached(&json),
        expect("the run stopped when `first` failed before it got here")
    );
    // Every step once, groups left out: first, gate (skipped), left, right, last.
    assert_eq!(json["totals"]["tests"], 5, "{:#}", json["totals"]);
    assert_eq!(json["totals"]["skipped"], 4, "{:#}", json["totals"]);

    // Parked at a gate: not reached yet.
    let parked = ws
        .cmd(["run", "stops", "-p", "how=gate", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    assert_eq!(
        not_reached(&report_json(&ws, &parked)),
        expect("the run is waiting for a person at `gate` and has not got here yet")
    );

    // Rejected at the gate.
    ws.cmd(["signoff", &parked, "--reject", "--comment", "not today"])
        .run()
        .status(0);
    ws.cmd(["resume", &parked]).run().status(4);
    let json = report_json(&ws, &parked);
    assert_eq!(
        not_reached(&json),
        expect("the run was rejected at `gate` before it got here")
    );
    let junit = report(&ws, &parked, "junit");
    assert!(
        junit.contains(
            r#"<testcase classname="stops.group" name="left" time="0">
      <skipped message="not reached: the run was rejected at `gate` before it got here"/>"#
        ),
        "{junit}"
    );
}

#[test]
fn steps_never_reached_after_an_abort_are_listed() {
    let ws = Workspace::new();
    ws.runbook(
        "slow",
        r#"runbook: slow
title: Slow
steps:
  - id: wait
    shell: sleep 1
  - id: after
    shell: echo after
"#,
    );
    let mut child = ws.cmd(["run", "slow", "--no-progress"]).spawn();
    let id = child.first_line_run_id();
    wait_for_event(&ws, "step_started", "wait");
    child.interrupt();
    child.finish().status(4);
    let json = report_json(&ws, &id);
    assert_eq!(json["run"]["status"], "aborted");
    let after = &json["steps"][1];
    assert_eq!(
        (&after["id"], &after["status_name"], &after["reason"]),
        (
            &Value::from("after"),
            &Value::from("not-reached"),
            &Value::from("the run was aborted before it got here")
        )
    );
}

#[test]
fn a_changed_or_missing_runbook_file_is_said_not_guessed() {
    let ws = Workspace::new();
    ws.runbook("release", ROLLED_BACK);
    let id = ws
        .cmd(["run", "release", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let file = ws.path().join("runbooks/release.yaml");

    std::fs::write(&file, ROLLED_BACK.replace("echo switched", "echo changed")).unwrap();
    let json = report_json(&ws, &id);
    let note = json["plan"]["note"].as_str().unwrap().to_string();
    assert_eq!(json["plan"]["known"], false);
    assert_eq!(
        normalise(&ws, &json, &note),
        "The runbook file <TMP>/runbooks/release.yaml has changed since this run (its content hash is now <SHORT>, the run's was <SHORT>): the steps this run did not reach cannot be listed."
    );
    let ids: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // Only what the journal holds: the steps not reached are not guessed.
    assert_eq!(ids, ["prepare", "deploy", "restart"]);
    let md = report(&ws, &id, "md");
    assert!(md.contains("\n> The runbook file "), "{md}");
    assert!(report(&ws, &id, "html").contains("<p class=\"note\">The runbook file "));

    std::fs::remove_file(&file).unwrap();
    let json = report_json(&ws, &id);
    let note = normalise(&ws, &json, json["plan"]["note"].as_str().unwrap());
    assert!(
        note.starts_with("The runbook file is gone or unreadable (<TMP>/runbooks/release.yaml: ")
            && note.ends_with("): the steps this run did not reach cannot be listed."),
        "{note}"
    );
    let junit = report(&ws, &id, "junit");
    assert!(
        junit.contains(r#"<property name="steps_not_reached" value="The runbook file is gone"#),
        "{junit}"
    );
}

#[test]
fn counts_and_totals_disagreed_for_parallel_groups() {
    let ws = Workspace::new();
    ws.runbook(
        "checks",
        r#"runbook: checks
title: Checks in parallel
steps:
  - id: group
    on_failure: continue
    parallel:
      - id: up
        shell: "true"
      - id: down
        shell: exit 1
      - id: maybe
        when: "false"
        shell: "true"
  - id: after
    shell: "true"
"#,
    );
    let id = ws
        .cmd(["run", "checks", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let json = report_json(&ws, &id);
    assert_eq!(
        json["counts"],
        serde_json::json!({"succeeded": 2, "failed": 1, "skipped": 1})
    );
    assert_eq!(
        json["totals"],
        serde_json::json!({"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "seconds": json["totals"]["seconds"]})
    );
    let junit = report(&ws, &id, "junit");
    assert_eq!(junit.matches("<testcase ").count(), 4, "{junit}");
    assert!(
        junit.contains(r#"classname="checks.group" name="down""#),
        "{junit}"
    );
    assert!(!junit.contains(r#"name="group""#), "{junit}");
}

#[test]
fn the_json_report_said_run_steps_but_always_wrote_an_empty_list() {
    let ws = Workspace::new();
    ws.runbook("release", ROLLED_BACK);
    let id = ws
        .cmd(["run", "release", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let json = report_json(&ws, &id);
    assert_eq!(json["schema_version"], 2);
    assert!(json["run"].get("steps").is_none(), "{:#}", json["run"]);
    assert_eq!(json["steps"].as_array().unwrap().len(), 6);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("`schema_version: 2`"));
    assert!(readme.contains("Version 2 dropped `run.steps`"));
}

#[test]
fn html_and_markdown_reports_had_no_step_times() {
    let ws = Workspace::new();
    ws.runbook("release", ROLLED_BACK);
    let id = ws
        .cmd(["run", "release", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let json = report_json(&ws, &id);
    let html = normalise(&ws, &json, &report(&ws, &id, "html"));
    assert_eq!(
        html.matches(r#"<div class="meta times">Started <TIME>, ended <TIME></div>"#)
            .count(),
        3,
        "{html}"
    );
    let md = read_markdown(&report(&ws, &id, "md"));
    let steps = md.tables.last().unwrap();
    assert_eq!(steps[0][4..6], ["Started", "Ended"]);
    let clock = Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
    for row in &steps[1..] {
        let reached = row[3] != "not reached";
        assert_eq!(clock.is_match(&row[4]), reached, "{row:?}");
        assert_eq!(clock.is_match(&row[5]), reached, "{row:?}");
    }
}

#[test]
fn printed_html_pages_did_not_say_which_run_they_belong_to() {
    let ws = Workspace::new();
    ws.runbook("release", ROLLED_BACK);
    let id = ws
        .cmd(["run", "release", "--non-interactive"])
        .run()
        .status(1)
        .run_id();
    let html = report(&ws, &id, "html");
    // A table header repeats on every printed page; the page number is in the page margin.
    assert!(
        html.contains(&format!(
            "<thead><tr><td><div class=\"running-head\"><span>Run {id}</span>"
        )),
        "{html}"
    );
    assert!(html.contains("table.page > thead { display: table-header-group; }"));
    assert!(
        html.contains(r#"@bottom-right { content: "Page " counter(page) " of " counter(pages);"#)
    );
}

// ----- one status everywhere ------------------------------------------------------------------

/// Starts `runbook`, waits until its step `wait` has started, kills the process (SIGKILL):
/// the run is left marked running with no process behind it.
fn run_and_kill(ws: &Workspace, runbook: &str) -> String {
    let mut child = ws.cmd(["run", runbook, "--no-progress"]).spawn();
    let id = child.first_line_run_id();
    wait_for_event(ws, "step_started", "wait");
    child.kill();
    id
}

const LONG: &str = r#"runbook: long
title: Long step
steps:
  - id: count
    shell: seq 1 9
  - id: wait
    shell: sleep 30
  - id: after
    shell: echo after
"#;

#[test]
fn an_interrupted_run_showed_as_running_in_show_and_the_reports() {
    let ws = Workspace::new();
    ws.runbook("long", LONG);
    let id = run_and_kill(&ws, "long");
    let json = report_json(&ws, &id);
    assert_eq!(json["run"]["status"], "interrupted");
    assert_eq!(json["run"]["interrupted"], true);
    let states: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status_name"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "interrupted", "not-reached"]);

    let show = ws.cmd(["show", &id]).run().status(0).stdout;
    assert_eq!(
        normalise(&ws, &json, &show),
        "\
run <RUN_ID>  long v1 — Long step
status:   interrupted
operator: <USER> (identity not verified) on <HOST>
started:  <TIME>
runbook:  <TMP>/runbooks/long.yaml (sha256 <SHORT>)

✓ count (shell)  succeeded  count
    attempt 1: succeeded, exit 0, <DUR>
      … 4 more lines (opsbook show <RUN_ID> --full)
      | 5
      | 6
      | 7
      | 8
      | 9
↯ wait (shell)  interrupted  wait

this run was interrupted: no process drives it. Continue it with: opsbook resume <RUN_ID>
"
    );
    let show_json = ws.cmd(["show", &id, "--json"]).run().status(0).json();
    assert_eq!(
        (&show_json["status"], &show_json["interrupted"]),
        (&Value::from("running"), &Value::from(true)),
        "show --json keeps the journal's status and says it was interrupted"
    );

    let md = report(&ws, &id, "md");
    assert!(
        md.contains(&format!(
            "Run `{id}` of runbook `long` v1 — **↯ interrupted**"
        )),
        "{md}"
    );
    assert!(md.contains("| ↯ | `wait` | shell | interrupted |"), "{md}");
    let html = report(&ws, &id, "html");
    assert!(
        html.contains(r#"<span class="status interrupted">↯ interrupted</span>"#),
        "{html}"
    );
    assert!(!html.contains(">… running<"), "{html}");
    let junit = report(&ws, &id, "junit");
    assert!(
        junit.contains(r#"<property name="status" value="interrupted"/>"#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"<error message="interrupted" type="interrupted"/>"#),
        "{junit}"
    );
}

#[test]
fn show_left_out_the_custody_chain_and_lines_without_saying_so() {
    let ws = Workspace::new();
    for (i, &(name, role)) in [("ann", "supervisor"), ("bob", "operator")]
        .iter()
        .enumerate()
    {
        let mut args = vec!["operator", "add", name, "--role", role];
        if i > 0 {
            args.splice(0..0, ["--as", "ann"]);
        }
        ws.cmd(args)
            .env("OPSBOOK_PASSPHRASE", "ann-passphrase")
            .env("OPSBOOK_NEW_PASSPHRASE", &format!("{name}-passphrase"))
            .run()
            .status(0);
    }
    ws.runbook(
        "shift",
        r#"runbook: shift
title: Shift change
steps:
  - id: lines
    shell: seq 1 7
  - id: gate
    gate:
      prompt: Carry on?
"#,
    );
    let as_ann = |args: &[&str]| {
        let mut all = vec!["--as", "ann"];
        all.extend_from_slice(args);
        ws.cmd(all)
            .env("OPSBOOK_PASSPHRASE", "ann-passphrase")
            .run()
    };
    let id = as_ann(&["run", "shift", "--non-interactive"])
        .status(3)
        .run_id();
    as_ann(&["handover", &id, "--to", "bob", "--note", "yours | now"]).status(0);

    let show = ws.cmd(["show", &id]).run().status(0).stdout;
    let json = report_json(&ws, &id);
    let shown = normalise(&ws, &json, &show);
    assert!(
        shown.contains("\nhandover: <USER> → bob by <USER> at <TIME>: yours | now\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "\n    attempt 1: succeeded, exit 0, <DUR>\n      … 2 more lines (opsbook show <RUN_ID> --full)\n      | 3\n      | 4\n      | 5\n      | 6\n      | 7\n"
        ),
        "{shown}"
    );
    let full = ws.cmd(["show", &id, "--full"]).run().status(0).stdout;
    let full = normalise(&ws, &json, &full);
    assert!(
        full.contains(
            "\n    attempt 1: succeeded, exit 0, <DUR>\n      | 1\n      | 2\n      | 3\n"
        ),
        "{full}"
    );
    assert!(!full.contains("more lines"), "{full}");
    // The Markdown report keeps the note in its cell.
    let md = read_markdown(&report(&ws, &id, "md"));
    let handover: Vec<&Vec<String>> = md.tables[0]
        .iter()
        .filter(|row| row[0] == "Handover")
        .collect();
    assert_eq!(handover.len(), 1, "{:?}", md.tables[0]);
    assert_eq!(handover[0].len(), 2);
    assert!(
        handover[0][1].ends_with(": yours | now"),
        "{:?}",
        handover[0]
    );
}

// ----- Markdown that survives its content -----------------------------------------------------

/// Steps that print what breaks Markdown: each must stay in its own block.
fn hostile_run(ws: &Workspace, outputs: &[String], values: &[String]) -> (String, Output) {
    let mut yaml = String::from("runbook: hostile\ntitle: Hostile output\n");
    if !values.is_empty() {
        yaml.push_str("params:\n");
    }
    for i in 0..values.len() {
        yaml.push_str(&format!("  p{i}: {{ type: string }}\n"));
    }
    yaml.push_str("steps:\n");
    for (i, text) in outputs.iter().enumerate() {
        ws.file(&format!("in/{i}.txt"), text);
        yaml.push_str(&format!(
            "  - id: out-{i}\n    on_failure: continue\n    shell: cat in/{i}.txt\n"
        ));
    }
    for i in 0..values.len() {
        yaml.push_str(&format!(
            "  - id: val-{i}\n    on_failure: continue\n    rhai: |\n      set(\"v\", params.p{i});\n      fail(params.p{i});\n"
        ));
    }
    ws.runbook("hostile", &yaml);
    let mut args = vec![
        "run".to_string(),
        "hostile".into(),
        "--non-interactive".into(),
    ];
    for (i, v) in values.iter().enumerate() {
        args.push("-p".into());
        args.push(format!("p{i}={v}"));
    }
    let out = ws.cmd(args).run();
    let id = out.run_id();
    (id, out)
}

/// Checks that every output and value of `hostile_run` reads back exactly where it was put.
fn assert_each_stays_in_its_block(ws: &Workspace, id: &str, outputs: usize, values: usize) {
    let json = report_json(ws, id);
    let md_text = report(ws, id, "md");
    let md = read_markdown(&md_text);
    let context = || format!("--- markdown\n{md_text}\n--- read as\n{md:#?}");
    assert!(md.html.is_empty(), "raw HTML: {:?}\n{}", md.html, context());
    assert!(!md_text.contains('\u{1b}'), "a raw ESC\n{}", context());

    // The parameters table: one row per value, two cells, the value exactly.
    let params = if values > 0 { &md.tables[1][..] } else { &[] };
    assert_eq!(
        md.tables.len(),
        if values > 0 { 3 } else { 2 },
        "{}",
        context()
    );
    for (i, row) in params.iter().skip(1).enumerate() {
        let value = json["run"]["params"][format!("p{i}")].as_str().unwrap();
        assert_eq!(row.len(), 2, "{}", context());
        assert_eq!(row[0], format!("p{i}"));
        assert_eq!(
            row[1].trim(),
            one_line(&visible(value)).trim(),
            "p{i}\n{}",
            context()
        );
    }

    // The steps table: one row per step, eight cells, the reason exactly.
    let steps = md.tables.last().unwrap();
    assert_eq!(steps.len(), outputs + values + 1, "{}", context());
    let json_steps = json["steps"].as_array().unwrap();
    for (row, step) in steps[1..].iter().zip(json_steps) {
        assert_eq!(row.len(), 8, "{row:?}\n{}", context());
        assert_eq!(row[1], step["id"].as_str().unwrap(), "{}", context());
        if let Some(reason) = step["reason"].as_str() {
            assert_eq!(
                row[7].trim(),
                one_line(&visible(reason)).trim(),
                "{}",
                context()
            );
        }
    }

    // Each output in its own fenced block, exactly; and a heading for every step after it.
    let excerpts: Vec<String> = json_steps
        .iter()
        .filter_map(|s| s["attempts"][0]["excerpt"].as_str())
        .filter(|e| !e.is_empty())
        .map(|e| visible(e.strip_suffix('\n').unwrap_or(e)) + "\n")
        .collect();
    let blocks: Vec<String> = md
        .code_blocks
        .iter()
        .map(|(_, text)| text.clone())
        .collect();
    assert_eq!(blocks, excerpts, "{}", context());
    assert!(md.code_blocks.iter().all(|(info, _)| info == "text"));
    assert_eq!(
        md.headings
            .iter()
            .filter(|h| h.contains("out-") || h.contains("val-"))
            .count(),
        outputs + values,
        "{:?}\n{}",
        md.headings,
        context()
    );

    // Each value set as an output, exactly, in a code span of its own list item.
    for i in 0..values {
        let value = json["run"]["params"][format!("p{i}")].as_str().unwrap();
        let expected = one_line(&visible(value));
        let item = format!("output v = {expected}");
        assert!(
            md.items.contains(&item),
            "no list item {item:?} in {:?}\n{}",
            md.items,
            context()
        );
        assert!(md.code_spans.contains(&expected), "{}", context());
    }
}

#[test]
fn a_fence_in_step_output_closed_the_block_and_swallowed_the_next_step() {
    let ws = Workspace::new();
    let outputs = [
        "before\n```\n# not a heading\n```\nafter\n".to_string(),
        "````\n~~~\n".to_string(),
    ];
    let (id, _) = hostile_run(&ws, &outputs, &[]);
    assert_each_stays_in_its_block(&ws, &id, outputs.len(), 0);
    let md = report(&ws, &id, "md");
    assert!(
        md.contains("````text\nbefore\n```\n# not a heading\n```\nafter\n````"),
        "{md}"
    );
}

#[test]
fn a_pipe_in_a_value_shifted_the_table_columns() {
    let ws = Workspace::new();
    let values = [
        "a | b | c".to_string(),
        "ends with \\".to_string(),
        "\\|".to_string(),
    ];
    let (id, _) = hostile_run(&ws, &[], &values);
    assert_each_stays_in_its_block(&ws, &id, 0, values.len());
}

#[test]
fn html_in_command_output_became_live_html_in_the_markdown_report() {
    let ws = Workspace::new();
    let hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script> <!-- & -->";
    let (id, _) = hostile_run(&ws, &[format!("{hostile}\n")], &[hostile.to_string()]);
    assert_each_stays_in_its_block(&ws, &id, 1, 1);
    let md = report(&ws, &id, "md");
    // Outside code, as entities; inside code, as it is.
    assert!(md.contains("&lt;img src=x onerror=alert(1)&gt;"), "{md}");
    assert!(
        md.contains("- output `v` = `<img src=x onerror=alert(1)>"),
        "{md}"
    );
}

#[test]
fn values_in_code_spans_were_entity_escaped_and_shown_as_entities() {
    let ws = Workspace::new();
    let values = [
        "x < y && y > z".to_string(),
        "&lt;".to_string(),
        "a`b``c".to_string(),
    ];
    let (id, _) = hostile_run(&ws, &[], &values);
    assert_each_stays_in_its_block(&ws, &id, 0, values.len());
    let md = read_markdown(&report(&ws, &id, "md"));
    for v in &values {
        assert!(
            md.code_spans.contains(v),
            "{v:?} not shown exactly: {:?}",
            md.code_spans
        );
    }
}

#[test]
fn generated_hostile_output_stays_inside_its_block() {
    for seed in [0x9E37_79B9_7F4A_7C15_u64, 42, 7_777_777, 0xDEAD_BEEF] {
        let mut rng = Rng(seed);
        let outputs: Vec<String> = (0..6)
            .map(|i| hostile_text(&mut rng, &format!("o{i}:")) + "\n")
            .collect();
        let values: Vec<String> = (0..6)
            .map(|i| hostile_text(&mut rng, &format!("v{i}:")))
            .collect();
        let ws = Workspace::new();
        let (id, _) = hostile_run(&ws, &outputs, &values);
        assert_each_stays_in_its_block(&ws, &id, outputs.len(), values.len());
    }
}

#[test]
fn terminal_control_characters_reached_the_html_markdown_and_junit_reports() {
    let ws = Workspace::new();
    let nasty = "red \u{1b}[31m bell \u{7} csi \u{9b}2J rtl \u{202e}cba";
    let (id, _) = hostile_run(&ws, &[format!("{nasty}\n")], &[nasty.to_string()]);
    let shown = "red \\x1b[31m bell \\x07 csi \\u009b2J rtl \\u202ecba";
    for format in ["html", "md", "junit"] {
        let text = report(&ws, &id, format);
        for raw in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(!text.contains(raw), "{format}: a raw {raw:?}\n{text}");
        }
        assert!(
            text.contains(shown),
            "{format}: {shown:?} not shown\n{text}"
        );
    }
    // The JSON report keeps the exact text.
    let json = report_json(&ws, &id);
    assert_eq!(json["run"]["params"]["p0"], nasty);
}
