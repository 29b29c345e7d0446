//! No process a step starts outlives it: not when the engine is killed (SIGKILL included), not
//! past a timeout or a hard abort, not into a resumed run, and a kill -9 anywhere loses nothing
//! acknowledged. Real processes throughout; each test is named after what broke. Where the
//! answer could depend on cgroups, a test runs both as the host allows and with
//! `OPSBOOK_CGROUPS=off` (the keeper and the token alone).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::journal::{self, JournalEvent};
use crate::support::process::processes_with;
use crate::support::{Cmd, Output, Proc, Workspace};

/// Both ways a step's processes are held: a cgroup where the host allows it, and without.
const CGROUPS: [&str; 2] = ["auto", "off"];

// ----- helpers -------------------------------------------------------------------------------

fn pid_of(engine: &mut Proc) -> i32 {
    engine.child().id() as i32
}

/// SIGKILL to the engine (unless it has finished already), reaped; the time just before the
/// signal went, and what it printed.
fn kill(mut engine: Proc) -> (SystemTime, Output) {
    let at = SystemTime::now();
    let _ = engine.child().kill();
    let _ = engine.child().wait();
    (at, engine.finish())
}

fn send(pid: i32, signal: i32) {
    // SAFETY: kill(2) touches no memory; the pids are of processes this test started.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes (not zombies) whose environment holds `entry` as a prefix of one of its
/// `NAME=VALUE` entries.
fn holding(entry: &str) -> Vec<(i32, String)> {
    pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.state != 'Z'))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|e| e.starts_with(entry.as_bytes()))
                })
                .unwrap_or(false)
        })
        .map(|pid| (pid, cmdline(pid)))
        .collect()
}

/// Live processes of run `run`'s steps: every one carries a token that starts with the run id.
fn of_run(run: &str) -> Vec<(i32, String)> {
    holding(&format!("OPSBOOK_STEP_TOKEN={run}/"))
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

struct Stat {
    state: char,
    ppid: i32,
    session: i32,
}

/// `pid (comm) state ppid pgrp session ...`
fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
    })
}

/// Waits up to `patience` for `find` to come back empty; what it found last.
fn until_none<T>(patience: Duration, find: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + patience;
    loop {
        let found = find();
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_file(ws: &Workspace, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ws.path().join(name).exists() {
        assert!(Instant::now() < deadline, "{name} never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A number only this test process uses, for command lines to be found by.
fn marker(n: u32) -> String {
    format!("{n}{:07}", std::process::id() % 10_000_000)
}

fn with_cgroups(cmd: Cmd, cgroups: &str) -> Cmd {
    cmd.env("OPSBOOK_CGROUPS", cgroups)
}

/// Every journaled event; none when the engine was killed before it made the journal.
fn stored(ws: &Workspace) -> Vec<JournalEvent> {
    let made = ws.db().exists()
        && ws
            .journal()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 1);
    if made {
        journal::journal_events(ws)
    } else {
        Vec::new()
    }
}

fn nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn rfc3339_nanos(at: &str) -> u128 {
    let t = chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
    t.timestamp_nanos_opt().expect("a time in range") as u128
}

/// Numbers, one a line, in `name` (timestamps from `date +%s%N`).
fn stamps(ws: &Workspace, name: &str) -> Vec<u128> {
    std::fs::read_to_string(ws.path().join(name))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

// ----- 1. the engine is killed during a step -------------------------------------------------

/// Starts a step whose background child, subshell, pipeline member and `setsid` child each
/// write a file a second later, kills the engine with SIGKILL once they all run, and waits
/// well past that second.
fn kill_the_engine_during_a_step(cgroups: &str) {
    let ws = Workspace::new();
    // The two variants run at once: each has its own.
    let m = marker(if cgroups == "off" { 1 } else { 5 });
    ws.runbook(
        "late",
        &format!(
            r#"runbook: late
title: Effects that come a second late
steps:
  - id: late
    shell: |
      sh -c 'sleep 1.{m}; touch background.done' &
      ( sleep 1.{m}; touch subshell.done ) &
      setsid sh -c 'sleep 1.{m}; touch setsid.done' &
      ( sleep 1.{m}; touch pipeline.done ) | ( touch started; sleep 30.{m} )
"#
        ),
    );
    let started = Instant::now();
    let mut engine = with_cgroups(
        ws.cmd(["run", "late", "--non-interactive", "--no-progress"]),
        cgroups,
    )
    .spawn();
    let run = engine.first_line_run_id();
    wait_for_file(&ws, "started");
    // Every one of them is running (the setsid child execs its sleep last).
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&format!("sleep 1.{m}")).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the step's processes never all ran: {:?}",
            processes_with(&m)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "too slow to kill before the effects: {:?}",
        started.elapsed()
    );
    engine.kill();

    let left = until_none(Duration::from_secs(2), || of_run(&run));
    assert!(
        left.is_empty(),
        "processes of the step outlived the engine: {left:?}"
    );
    assert!(processes_with(&m).is_empty(), "{:?}", processes_with(&m));
    // Well past the second the effects waited for.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    for effect in ["background", "subshell", "pipeline", "setsid"] {
        assert!(
            !ws.path().join(format!("{effect}.done")).exists(),
            "the {effect} child wrote its file after the engine was killed (cgroups {cgroups})"
        );
    }
    assert!(processes_with(&m).is_empty(), "{:?}", processes_with(&m));
}

#[test]
fn a_killed_engine_leaves_no_child_subshell_pipeline_member_or_setsid_child_running() {
    kill_the_engine_during_a_step("auto");
}

#[test]
fn a_killed_engine_leaves_nothing_running_without_cgroups_either() {
    kill_the_engine_during_a_step("off");
}

// ----- 2. timeouts, hard aborts, the end of a step -------------------------------------------

#[test]
fn a_step_timeout_stops_a_setsid_child() {
    for cgroups in CGROUPS {
        let ws = Workspace::new();
        let m = marker(2);
        ws.runbook(
            "hang",
            &format!(
                "
                runbook: hang
                title: Hang
                steps:
                  - id: hang
                    timeout: 1s
                    shell: setsid sleep 1000.{m} & sleep 1001.{m}
                "
            ),
        );
        let started = Instant::now();
        let out = with_cgroups(ws.cmd(["run", "hang", "--non-interactive"]), cgroups)
            .run()
            .status(1)
            .stdout(
                "
                run [RUN] hang v1
                Hang — 1 step(s), operator [USER] (unverified)
                ✗ hang                     failed [DURATION] — timed out after [DURATION]; every process it started was stopped
                run [RUN] failed in [DURATION]: 0 succeeded, 1 failed. Details: opsbook show [RUN]
                ",
            )
            .stderr("");
        // SIGTERM ends a sleep at once: the keeper stops everything without the grace period
        // (let alone the engine's fallback after it).
        assert!(
            started.elapsed() < Duration::from_millis(3500),
            "{:?}",
            started.elapsed()
        );
        let left = until_none(Duration::from_secs(2), || processes_with(&m));
        assert!(
            left.is_empty(),
            "outlived the timeout (cgroups {cgroups}): {left:?}\n{out:?}"
        );
    }
}

#[test]
fn a_hard_abort_stops_a_setsid_child() {
    for cgroups in CGROUPS {
        hard_abort(cgroups);
    }
}

fn hard_abort(cgroups: &str) {
    let ws = Workspace::new();
    let m = marker(3);
    ws.runbook(
        "hang",
        &format!(
            "runbook: hang\ntitle: Hang\nsteps:\n  - id: hang\n    shell: setsid sleep 1000.{m} & sleep 1001.{m}\n"
        ),
    );
    let mut engine = with_cgroups(
        ws.cmd(["run", "hang", "--non-interactive", "--no-progress"]),
        cgroups,
    )
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&format!("1000.{m}")).is_empty()
        || processes_with(&format!("1001.{m}")).is_empty()
    {
        assert!(Instant::now() < deadline, "the step never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ctrl-C twice: stop after this step, then stop it now.
    engine.interrupt();
    std::thread::sleep(Duration::from_millis(200));
    engine.interrupt();
    let stopping = Instant::now();
    let _ = engine.finish().status(4);
    assert!(
        stopping.elapsed() < Duration::from_millis(2500),
        "{:?}",
        stopping.elapsed()
    );
    let left = until_none(Duration::from_secs(2), || processes_with(&m));
    assert!(
        left.is_empty(),
        "outlived the abort (cgroups {cgroups}): {left:?}"
    );
}

#[test]
fn a_finished_step_leaves_no_background_or_setsid_child_running() {
    for cgroups in CGROUPS {
        finished_step(cgroups);
    }
}

fn finished_step(cgroups: &str) {
    let ws = Workspace::new();
    let m = marker(4);
    ws.runbook(
        "spawner",
        &format!(
            r#"runbook: spawner
title: Starts things and ends
steps:
  - id: shell
    shell: sleep 1000.{m} & setsid sleep 1001.{m} & echo started
  - id: script
    rhai: |
      let r = sh("setsid sleep 1002.{m} & echo started");
      assert(r.code == 0, r.stderr);
"#
        ),
    );
    let started = Instant::now();
    with_cgroups(ws.cmd(["run", "spawner", "--non-interactive"]), cgroups)
        .run()
        .status(0);
    // SIGTERM ends a sleep at once: no grace period is waited out.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let left = until_none(Duration::from_secs(2), || processes_with(&m));
    assert!(
        left.is_empty(),
        "outlived their step (cgroups {cgroups}): {left:?}"
    );
}

#[test]
fn a_killed_keepers_parent_neither_stops_the_running_command_nor_the_next() {
    let ws = Workspace::new();
    ws.runbook(
        "two",
        r#"runbook: two
title: Two commands
steps:
  - id: first
    shell: |
      touch started
      while [ ! -e go ]; do sleep 0.02; done
      echo first done
  - id: second
    shell: echo second done
"#,
    );
    let mut engine = ws
        .cmd(["run", "two", "--non-interactive", "--no-progress"])
        .spawn();
    let run = engine.first_line_run_id();
    wait_for_file(&ws, "started");
    let engine_pid = pid_of(&mut engine);
    let parents: Vec<i32> = pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == engine_pid))
        .filter(|&p| cmdline(p).contains("__keepers"))
        .collect();
    assert_eq!(parents.len(), 1, "{parents:?}");
    send(parents[0], libc::SIGKILL);
    ws.file("go", "");
    let _ = engine.finish().status(0);
    let ends: Vec<Value> = journal::events(&ws, &run)
        .into_iter()
        .filter(|e| e.kind == "attempt_finished")
        .map(|e| e.body)
        .collect();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[0]["outputs"]["stdout"], "first done");
    assert_eq!(ends[1]["outputs"]["stdout"], "second done");
}

// ----- 3. resume after the keeper was killed too ---------------------------------------------

/// Runs a step that starts a `setsid` heartbeat, then kills the engine's whole process tree
/// except that heartbeat (the keeper included: nothing is left to clean up), and checks that
/// the heartbeat outlived them. The run id.
fn kill_all_but_a_setsid_child(ws: &Workspace, cgroups: &str) -> String {
    ws.runbook(
        "beat",
        r#"runbook: beat
title: A heartbeat that outlives its keeper
steps:
  - id: first
    shell: echo ran >> first.txt
  - id: work
    shell: |
      if [ -e rerun ]; then date +%s%N > rerun.started; exit 0; fi
      setsid sh -c 'while :; do date +%s%N >> heartbeat; sleep 0.02; done' &
      touch started
      sleep 30
  - id: last
    shell: echo ran >> last.txt
"#,
    );
    let mut engine = with_cgroups(
        ws.cmd(["run", "beat", "--non-interactive", "--no-progress"]),
        cgroups,
    )
    .spawn();
    let run = engine.first_line_run_id();
    wait_for_file(ws, "started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stamps(ws, "heartbeat").is_empty() {
        assert!(Instant::now() < deadline, "no heartbeat");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stopped first, so that the engine does not see its keeper die and clean up itself.
    let engine_pid = pid_of(&mut engine);
    send(engine_pid, libc::SIGSTOP);
    let mut tree = Vec::new();
    let mut parents = vec![engine_pid];
    let all: Vec<(i32, Stat)> = pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|s| (p, s)))
        .collect();
    while let Some(parent) = parents.pop() {
        for (pid, s) in all.iter().filter(|(_, s)| s.ppid == parent) {
            tree.push((*pid, s.session));
            parents.push(*pid);
        }
    }
    let engine_session = stat(engine_pid).unwrap().session;
    let escaped: Vec<i32> = tree
        .iter()
        .filter(|(_, session)| *session != engine_session)
        .map(|(pid, _)| *pid)
        .collect();
    assert!(!escaped.is_empty(), "no setsid child in {tree:?}");
    for (pid, session) in &tree {
        if *session == engine_session {
            send(*pid, libc::SIGKILL);
        }
    }
    engine.kill();
    // The heartbeat lives on, beside nothing.
    let beats = stamps(ws, "heartbeat").len();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        stamps(ws, "heartbeat").len() > beats,
        "the setsid child did not outlive its keeper; nothing to test"
    );
    assert!(!of_run(&run).is_empty());
    run
}

/// After the resume: the heartbeat stopped before the interrupted step was decided on (and
/// before its re-run started), and never beat again.
fn assert_stopped_before_the_decision(ws: &Workspace, run: &str, out: &Output) {
    let last_beat = *stamps(ws, "heartbeat").last().unwrap();
    let evs = journal::events(ws, run);
    let decided = journal::one(&evs, "interrupted_step_decided", "work");
    assert!(
        last_beat < rfc3339_nanos(&decided.at),
        "the leftover still beat after the decision\n{out:?}"
    );
    if let Some(rerun) = stamps(ws, "rerun.started").first() {
        assert!(last_beat < *rerun, "the leftover raced the re-run");
    }
    let beats = stamps(ws, "heartbeat").len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stamps(ws, "heartbeat").len(), beats, "it beat again");
    assert!(of_run(run).is_empty(), "{:?}", of_run(run));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("first.txt")).unwrap(),
        "ran\n",
        "a finished step ran again"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("last.txt")).unwrap(),
        "ran\n"
    );
}

#[test]
fn resume_kills_what_a_killed_keeper_left_before_running_the_step_again() {
    for cgroups in CGROUPS {
        let ws = Workspace::new();
        let run = kill_all_but_a_setsid_child(&ws, cgroups);
        ws.file("rerun", "");
        let out = ws
            .cmd(["resume", &run, "--non-interactive", "--rerun-interrupted"])
            .run()
            .status(0)
            // How many processes it killed depends on the moment: the heartbeat's shell, and
            // a `date` or `sleep` of it; the rest is in the journal.
            .stdout_has("that the interrupted step `work` left running");
        assert!(!stamps(&ws, "rerun.started").is_empty(), "{out:?}");
        assert_stopped_before_the_decision(&ws, &run, &out);
    }
}

#[test]
fn resume_kills_what_a_killed_keeper_left_before_marking_the_step_done() {
    for cgroups in CGROUPS {
        let ws = Workspace::new();
        let run = kill_all_but_a_setsid_child(&ws, cgroups);
        let out = ws
            .cmd([
                "resume",
                &run,
                "--non-interactive",
                "--skip-interrupted",
                "--comment",
                "checked by hand",
            ])
            .run()
            .status(0)
            // As above: the count depends on the moment.
            .stdout_has("that the interrupted step `work` left running");
        assert!(stamps(&ws, "rerun.started").is_empty(), "it ran again");
        assert_stopped_before_the_decision(&ws, &run, &out);
    }
}

// ----- 4. the kill -9 matrix -----------------------------------------------------------------

/// How far after a kill a step's effect may still be stamped: the keeper's reaction to the
/// engine's death, on a loaded machine. A process that survived would go on writing for
/// seconds.
const EFFECT_SLACK: Duration = Duration::from_millis(150);

/// A step's effects come from a background subshell and a background pipeline that write
/// every 20 ms until the step's end stops them (for at most a few seconds), and from a
/// pipeline in the foreground; each is stamped with the execution's token and the time.
fn effects(who: &str) -> String {
    format!(
        r#"e() {{ echo "$OPSBOOK_STEP_TOKEN {who}-$1 $(date +%s%N)" >> effects; }}
( i=0; while [ $i -lt 150 ]; do e sub; sleep 0.02; i=$((i+1)); done ) &
i=0; while [ $i -lt 150 ]; do e pipe; sleep 0.02; i=$((i+1)); done | cat > /dev/null &
printf 'a\nb\n' | while read x; do e fg; done
sleep 0.05
e end"#
    )
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

fn matrix_runbook() -> String {
    format!(
        r#"runbook: matrix
title: Effects from subshells and pipelines, killed anywhere
steps:
  - id: one
    shell: |
{one}  - id: two
    rhai: |
      let r = sh(`
{two}      `);
      if r.code != 0 {{ fail(r.stderr) }}
  - id: both
    parallel:
      - id: left
        shell: |
{left}      - id: right
        shell: |
{right}  - id: three
    shell: |
{three}"#,
        one = indent(&effects("one"), 6),
        two = indent(&effects("two"), 6),
        left = indent(&effects("left"), 10),
        right = indent(&effects("right"), 10),
        three = indent(&effects("three"), 6),
    )
}

/// xorshift64*: random kill points that a seed reproduces.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// One line of `effects`: the token of the execution that wrote it, and when.
struct Effect {
    token: String,
    what: String,
    at: u128,
}

fn effects_of(ws: &Workspace) -> Vec<Effect> {
    std::fs::read_to_string(ws.path().join("effects"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some(Effect {
                token: words.next()?.to_string(),
                what: words.next()?.to_string(),
                at: words.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The token of every step execution journaled so far.
fn journaled_tokens(ws: &Workspace) -> BTreeSet<String> {
    stored(ws)
        .into_iter()
        .filter(|e| e.kind == "step_started")
        .filter_map(|e| {
            let body: Value = serde_json::from_str(&e.body).ok()?;
            body["processes"]["token"].as_str().map(str::to_string)
        })
        .collect()
}

/// What a drive printed about finished steps: (step, status).
fn acknowledged(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            if !["✓", "✗", "-", "~", "!"].contains(&words.next()?) {
                return None;
            }
            let step = words.next()?;
            let status = words.next()?;
            [
                "succeeded",
                "failed",
                "skipped",
                "would-run",
                "rejected",
                "aborted",
            ]
            .contains(&status)
            .then(|| (step.to_string(), status.to_string()))
        })
        .collect()
}

/// After a kill: every line the drive printed is backed by the journal, nothing of the run's
/// steps is left running, and no effect of the killed executions came after the kill. Whether
/// the kill came during a step.
fn check_kill(
    ws: &Workspace,
    (killed_at, printed): (SystemTime, Output),
    checked: &mut BTreeSet<String>,
    context: &str,
) -> bool {
    let lines: Vec<String> = printed.stdout.lines().map(str::to_string).collect();
    let all = stored(ws);
    for (step, status) in acknowledged(&lines) {
        let backed = all.iter().any(|e| {
            e.step.as_deref() == Some(&step)
                && matches!(e.kind.as_str(), "step_finished" | "step_skipped")
                && (e.kind == "step_skipped"
                    || e.body.contains(&format!("\"status\":\"{status}\"")))
        });
        assert!(
            backed,
            "{context}: `{step} {status}` was printed but is not in the journal\n{lines:#?}"
        );
    }
    if let Some(run) = lines
        .iter()
        .find_map(|l| l.strip_prefix("run ")?.split_whitespace().next())
    {
        assert!(
            all.iter()
                .any(|e| e.run_id == run && e.kind == "run_started"),
            "{context}: run {run} was printed but is not in the journal"
        );
    }
    let runs: BTreeSet<String> = all.iter().map(|e| e.run_id.clone()).collect();
    for run in &runs {
        let left = until_none(Duration::from_secs(1), || of_run(run));
        assert!(left.is_empty(), "{context}: left running: {left:?}");
    }
    let tokens = journaled_tokens(ws);
    let new: BTreeSet<String> = tokens.difference(checked).cloned().collect();
    let limit = nanos(killed_at) + EFFECT_SLACK.as_nanos();
    for effect in effects_of(ws).iter().filter(|e| new.contains(&e.token)) {
        assert!(
            effect.at <= limit,
            "{context}: `{}` of {} came {} ms after the kill",
            effect.what,
            effect.token,
            (effect.at - nanos(killed_at)) / 1_000_000
        );
    }
    let during_a_step = effects_of(ws).iter().any(|e| new.contains(&e.token))
        && all.last().is_some_and(|e| e.kind == "step_started");
    checked.extend(new);
    during_a_step
}

/// At the end: the run succeeded, no step that had finished started again, every effect
/// belongs to a journaled execution, and the journal verifies.
fn check_done(ws: &Workspace, run: &str, context: &str) {
    let evs = journal::events(ws, run);
    let finished = journal::of_kind(&evs, "run_finished");
    assert_eq!(finished.len(), 1, "{context}: {:#?}", journal::kinds(&evs));
    assert_eq!(finished[0].body["status"], "succeeded", "{context}");
    let mut done = BTreeSet::new();
    let mut succeeded = BTreeSet::new();
    for event in &evs {
        let (Some(step), body) = (&event.step, &event.body) else {
            continue;
        };
        match event.kind.as_str() {
            "step_started" => assert!(
                !done.contains(step),
                "{context}: `{step}` started again after it finished"
            ),
            "step_finished" | "step_skipped" => {
                done.insert(step.clone());
                if body["status"] == "succeeded" {
                    succeeded.insert(step.clone());
                }
            }
            _ => {}
        }
    }
    for step in ["one", "two", "both", "left", "right", "three"] {
        assert!(
            succeeded.contains(step),
            "{context}: `{step}` did not succeed"
        );
    }
    let tokens = journaled_tokens(ws);
    for effect in effects_of(ws) {
        assert!(
            tokens.contains(&effect.token),
            "{context}: an effect from an execution the journal does not know: {}",
            effect.token
        );
    }
    let _ = ws.cmd(["audit", "verify"]).run().status(0);
    let integrity: String = ws
        .journal()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{context}");
}

#[test]
fn a_kill_9_anywhere_loses_nothing_acknowledged_and_no_effect_comes_after_it() {
    let runs: usize = std::env::var("OPSBOOK_KILL_MATRIX_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("OPSBOOK_KILL_MATRIX_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| nanos(SystemTime::now()) as u64 | 1);
    let mut random = Random(seed);
    let started = Instant::now();

    // How long an undisturbed run takes: kill points fall anywhere in it.
    let calibration = Workspace::new();
    calibration.runbook("matrix", &matrix_runbook());
    let timed = Instant::now();
    let _ = calibration
        .cmd(["run", "matrix", "--non-interactive", "--no-progress"])
        .run()
        .status(0);
    let span = timed.elapsed().as_millis() as u64;
    let run = stored(&calibration)[0].run_id.clone();
    check_done(&calibration, &run, "the undisturbed run");

    let mut decisions = BTreeMap::new();
    let mut kills = 0;
    let mut mid_step = 0;
    for i in 0..runs {
        let ws = Workspace::new();
        ws.runbook("matrix", &matrix_runbook());
        let mut checked = BTreeSet::new();
        // Every other run without cgroups: the keeper and the token alone.
        let cgroups = CGROUPS[i % 2];
        let engine = with_cgroups(
            ws.cmd(["run", "matrix", "--non-interactive", "--no-progress"]),
            cgroups,
        )
        .spawn();
        let delay = random.below(span);
        let context = format!("run {i} (seed {seed}, cgroups {cgroups}), killed {delay} ms in");
        std::thread::sleep(Duration::from_millis(delay));
        kills += 1;
        mid_step += check_kill(&ws, kill(engine), &mut checked, &context) as usize;
        let Some(run) = stored(&ws).first().map(|e| e.run_id.clone()) else {
            // Killed before the run was journaled: nothing ran, nothing to resume.
            assert!(effects_of(&ws).is_empty(), "{context}");
            continue;
        };
        // Resume until done; a resume may be killed too.
        for drive in 1.. {
            assert!(drive < 12, "{context}: still not done after {drive} drives");
            if !journal::of_kind(&journal::events(&ws, &run), "run_finished").is_empty() {
                break;
            }
            let mut args = vec!["resume", &run, "--non-interactive", "--no-progress"];
            let decision = if random.below(2) == 0 {
                args.push("--rerun-interrupted");
                "rerun"
            } else {
                args.extend(["--skip-interrupted", "--comment", "matrix"]);
                "skip"
            };
            *decisions.entry(decision).or_insert(0) += 1;
            let resumed = with_cgroups(ws.cmd(args), cgroups).spawn();
            let context = format!("{context}, drive {drive}");
            if random.below(3) == 0 {
                let delay = random.below(span);
                std::thread::sleep(Duration::from_millis(delay));
                kills += 1;
                let context = format!("{context} killed {delay} ms in");
                mid_step += check_kill(&ws, kill(resumed), &mut checked, &context) as usize;
            } else {
                let _ = resumed.finish().status(0);
            }
        }
        check_done(&ws, &run, &context);
    }
    eprintln!(
        "kill matrix: {runs} runs, {kills} kills ({mid_step} while a step worked), resumes \
         {decisions:?}, seed {seed}, {:?}",
        started.elapsed()
    );
    assert!(
        mid_step * 3 >= kills,
        "too few kills came while a step worked: {mid_step} of {kills}"
    );
}
