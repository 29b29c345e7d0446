//! What operators expect around runs: `pending` (what waits for a person), `runs` newest
//! first with `--since`/`--limit`/`--status interrupted`, and one run of a runbook at a time.

use std::time::{Duration, Instant};

use crate::support::Workspace;

const GATED: &str = r#"
runbook: gated
title: Waits for approval
steps:
  - id: approve
    gate:
      prompt: Approve the maintenance of {{ params.host }}
  - id: done
    shell: "true"
params:
  host: { type: string, default: db1 }
"#;

#[test]
fn pending_lists_a_parked_gate_with_who_may_sign_and_its_binding() {
    let ws = Workspace::new();
    ws.runbook("gated", GATED);
    let id = ws
        .cmd(["run", "gated", "--non-interactive"])
        .run()
        .status(3)
        .run_id();
    let list = ws.cmd(["pending", "--json"]).run().status(0).json();
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    let item = &items[0];
    assert_eq!(item["run"], id.as_str());
    assert_eq!(item["runbook"], "gated");
    assert_eq!(item["step"], "approve");
    assert_eq!(item["kind"], "gate");
    assert_eq!(item["binding"].as_str().unwrap().len(), 64);
    assert!(
        item["who_may_sign"].as_str().unwrap().contains("operator"),
        "{item:#}"
    );
    let text = ws.cmd(["pending"]).run().status(0);
    assert!(
        text.stdout.contains(&format!(
            "    sign: opsbook signoff {id} --step approve --approve --binding {} --as NAME",
            &item["binding"].as_str().unwrap()[..16]
        )),
        "{}",
        text.stdout
    );
    // Signed and resumed, nothing waits any more.
    ws.cmd(["signoff", &id, "--approve"]).run().status(0);
    ws.cmd(["resume", &id, "--non-interactive"]).run().status(0);
    ws.cmd(["pending"])
        .run()
        .status(0)
        .stdout_has("nothing waits for a person");
}

#[test]
fn runs_are_listed_newest_first_and_can_be_limited_and_dated() {
    let ws = Workspace::new();
    ws.runbook("gated", GATED);
    let ids: Vec<String> = (0..3)
        .map(|_| {
            ws.cmd(["run", "gated", "--non-interactive"])
                .run()
                .status(3)
                .run_id()
        })
        .collect();
    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs", "--json"];
        all.extend_from_slice(args);
        ws.cmd(&all)
            .run()
            .status(0)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(&[]), newest_first);
    assert_eq!(listed(&["--limit", "2"]), newest_first[..2].to_vec());
    assert_eq!(listed(&["--since", "1h"]), newest_first);
    assert_eq!(
        listed(&["--since", "2999-01-01T00:00:00Z"]),
        Vec::<String>::new()
    );
    ws.cmd(["runs", "--since", "yesterday"])
        .run()
        .status(2)
        .stderr_has("--since yesterday: give a duration back from now");
}

#[test]
fn a_second_run_of_a_runbook_is_refused_while_one_runs_unless_concurrent() {
    let ws = Workspace::new();
    ws.runbook(
        "slow",
        r#"
runbook: slow
title: Takes a while
steps:
  - id: wait
    shell: sleep 3
"#,
    );
    let mut first = ws.cmd(["run", "slow", "--no-progress"]).command();
    let mut first = first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run is journaled as running.
    let started = Instant::now();
    while running_runs(&ws) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ws.cmd(["run", "slow"])
        .run()
        .status(5)
        .stderr_has("runbook `slow` is running now");
    let second = ws.cmd(["run", "slow", "--concurrent", "--dry-run"]).run();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(first.wait().unwrap().success());
}

/// How many runs are being driven now (none while the journal does not exist yet).
fn running_runs(ws: &Workspace) -> usize {
    let out = ws.cmd(["runs", "--status", "running", "--json"]).run();
    if out.code != 0 {
        return 0;
    }
    out.json().as_array().map_or(0, |a| a.len())
}

#[test]
fn an_interrupted_run_is_listed_by_status_interrupted() {
    let ws = Workspace::new();
    ws.runbook(
        "long",
        r#"
runbook: long
title: Long step
steps:
  - id: wait
    shell: sleep 30
"#,
    );
    let mut child = ws
        .cmd(["run", "long", "--no-progress"])
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while running_runs(&ws) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let interrupted = ws
        .cmd(["runs", "--status", "interrupted", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(interrupted.as_array().unwrap().len(), 1, "{interrupted:#}");
    let running = ws
        .cmd(["runs", "--status", "running", "--json"])
        .run()
        .status(0)
        .json();
    assert_eq!(running.as_array().unwrap().len(), 0, "{running:#}");
}
