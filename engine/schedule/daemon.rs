//! The daemon: it starts every slot that falls due (each claimed in the journal first, so a
//! slot starts at most once across restarts and across daemons sharing a journal), journals
//! one decision per slot, resumes the runs it parked once they are signed or their window
//! opens again, notifies the people a parked run waits for, and delivers the outbox.
//!
//! Runs are driven by child processes of the `opsbook` binary (`run --slot ... --park-on-stop
//! --non-interactive`), each with its own lease, so a run that fails or hangs never takes the
//! daemon with it. SIGTERM (or Ctrl-C): start nothing new, pass the stop to the runs (each
//! parks after its current step, to be resumed when the daemon starts again), wait, exit 0.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::calendar::{Calendars, Windows};
use crate::config::{MissedPolicy, OverlapPolicy, Settings};
use crate::error::{Error, Result};
use crate::exec::request::{inside_freeze, Timing};
use crate::journal::event::{RunStatus, SlotDecision, WaitingFor};
use crate::journal::lease::Lease;
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::notify::channel::Channels;
use crate::notify::outbox::{self, Notification};
use crate::notify::route::Routes;
use crate::runbook::library;
use crate::schedule::slots::{self, parse_instant};
use crate::schedule::{instant, systemd, Schedule, Schedules, MAX_SLOTS_PER_LOOK};

/// A slot found after this long is late: the daemon was not running when it fell due.
const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// How often the daemon looks at its schedules, children and outbox.
const TICK: Duration = Duration::from_millis(200);
/// How often it looks for parked runs to resume or to notify about.
const LOOK_AT_RUNS: Duration = Duration::from_secs(1);
/// Late slots journaled one by one; beyond this, one decision says how many more there were.
const MAX_MISSED_DECISIONS: usize = 100;
/// Runs driven at once unless the config says otherwise.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;

pub struct DaemonOptions {
    /// Start what is due now, wait for those runs to finish or park, deliver, and exit.
    pub once: bool,
    /// The `opsbook` binary the runs are driven by.
    pub program: PathBuf,
    /// The global options children get (`--db`, `--runbooks`, `--config`, `--as`).
    pub global_args: Vec<OsString>,
}

/// Something the daemon says: a line for its log.
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// A run this daemon drives in a child process.
struct Driven {
    schedule: String,
    slot: Option<DateTime<Utc>>,
    /// Known once the child prints it (a new run), or from the start (a resume).
    run: Arc<Mutex<Option<String>>>,
    /// The child's last line on stderr: why it did not start, when it did not.
    last_error: Arc<Mutex<String>>,
    child: Child,
    resumed: bool,
}

struct Daemon<'a> {
    settings: &'a Settings,
    options: &'a DaemonOptions,
    windows: Windows,
    calendars: Calendars,
    schedules: Schedules,
    channels: Channels,
    routes: Routes,
    journal: Journal,
    say: Say,
    max_runs: usize,
    /// Per schedule: slots up to here have been looked at.
    cursors: HashMap<String, DateTime<Utc>>,
    /// Slots claimed as queued, waiting for the schedule's previous run (overlap: queue) or
    /// for room (max_concurrent_runs), oldest first.
    queued: VecDeque<(String, DateTime<Utc>, bool)>,
    driven: Vec<Driven>,
    /// This daemon's lease key: its claims carry it, so that another daemon reconciles them
    /// only once this one is gone.
    claimer: String,
    /// Runs this daemon resumed for a sign-off already seen (not again for the same one).
    resumed_for: HashSet<String>,
    /// Per schedule: the last decision told about a slot that did not start, and why.
    last_failure: HashMap<String, String>,
    stopping: bool,
}

/// Runs the daemon until it is stopped (or, with `once`, until what was due has run).
pub fn run(settings: &Settings, options: DaemonOptions, say: Say) -> Result<i32> {
    let windows = Windows::from_settings(settings)?;
    let calendars = Calendars::from_settings(settings)?;
    let schedules = Schedules::from_settings(settings, &windows)?;
    let channels = Channels::from_settings(settings)?;
    let routes = Routes::from_settings(settings, &channels)?;
    let journal = Journal::open(&settings.db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the runtime", e))?;
    let max_runs = settings
        .operations
        .max_concurrent_runs
        .unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS)
        .max(1);
    let mut daemon = Daemon {
        settings,
        options: &options,
        windows,
        calendars,
        schedules,
        channels,
        routes,
        journal,
        say,
        max_runs,
        cursors: HashMap::new(),
        queued: VecDeque::new(),
        driven: Vec::new(),
        resumed_for: HashSet::new(),
        claimer: format!("daemon:{}", ulid::Ulid::new()),
        last_failure: HashMap::new(),
        stopping: false,
    };
    let code = runtime.block_on(daemon.main());
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

impl Daemon<'_> {
    async fn main(&mut self) -> Result<i32> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| Error::io("cannot listen for SIGTERM", e))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| Error::io("cannot listen for SIGINT", e))?;
        let started = Utc::now();
        let mut lease = Lease::acquire(&self.settings.db, &self.claimer)?;
        lease.keep_renewed();
        self.reconcile_claims()?;
        self.init_cursors(started)?;
        (self.say)(&format!(
            "opsbook daemon: {} schedule(s), {} channel(s), journal {}",
            self.schedules.schedules.len(),
            self.channels.names().len(),
            self.settings.db.display()
        ));
        for name in self.channels.names() {
            if let Some(channel) = self.channels.get(name) {
                (self.say)(&format!(
                    "  channel {}: {}",
                    channel.name,
                    channel.describe()
                ));
            }
        }
        for schedule in self.schedules.iter() {
            let next = self
                .next_slot(schedule, started)
                .map_or_else(|| "none".into(), instant);
            (self.say)(&format!(
                "  {} runs {} {}; next {}{}",
                schedule.name,
                schedule.runbook,
                schedule.describe(),
                next,
                if schedule.enabled { "" } else { " (disabled)" }
            ));
        }
        let deliverer = Deliverer::start(&self.settings.db, &self.channels, self.say.clone())?;
        systemd::ready();
        let watchdog = systemd::watchdog_interval();
        let mut last_alive = std::time::Instant::now();
        let mut last_look = None::<std::time::Instant>;
        loop {
            let now = Utc::now();
            if !self.stopping {
                self.start_due(now).await?;
                self.start_queued().await?;
                if last_look.is_none_or(|t| t.elapsed() >= LOOK_AT_RUNS) {
                    self.reconcile_claims()?;
                    self.look_at_runs(now).await?;
                    last_look = Some(std::time::Instant::now());
                }
            }
            self.reap().await?;
            if let Some(interval) = watchdog {
                if last_alive.elapsed() >= interval {
                    systemd::alive();
                    last_alive = std::time::Instant::now();
                }
            }
            if (self.stopping || self.options.once) && self.driven.is_empty() {
                if self.options.once && !self.stopping {
                    // The runs it started may have parked: their people are told before it
                    // exits.
                    self.look_at_runs(Utc::now()).await?;
                }
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = terminate.recv() => self.stop("SIGTERM"),
                _ = interrupt.recv() => self.stop("SIGINT"),
            }
        }
        systemd::stopping();
        // A last round for what was queued last; what fails waits for the next start.
        deliverer.finish();
        let pending = outbox::list(&mut self.journal, true)?.len();
        (self.say)(&format!(
            "opsbook daemon stopped{}",
            if pending > 0 {
                format!("; {pending} notification(s) wait in the outbox for the next start")
            } else {
                String::new()
            }
        ));
        Ok(0)
    }

    /// Starts nothing new from now on; the runs being driven park after their current step.
    fn stop(&mut self, why: &str) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        (self.say)(&format!(
            "{why}: starting nothing new; {} run(s) park after their current step",
            self.driven.len()
        ));
        for driven in &self.driven {
            if let Some(pid) = driven.child.id() {
                // SAFETY: kill(2) with a pid of our own child that has not been reaped (it is
                // still in `driven`), and a valid signal number.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
    }

    /// Slots claimed by a daemon that is gone, without a decision (it stopped between
    /// claiming and recording): each gets its decision now, once, whoever reconciles it.
    fn reconcile_claims(&mut self) -> Result<()> {
        for claim in slots::undecided_claims(&self.journal)? {
            if claim.claimed_by == self.claimer
                || Lease::is_held_elsewhere(self.journal.path(), &claim.claimed_by)?
            {
                continue;
            }
            let (decision, reason) = match &claim.run {
                Some(_) => (
                    SlotDecision::Started,
                    "started (recorded later: the daemon that started it stopped before it could)",
                ),
                None => (
                    SlotDecision::NotStarted,
                    "claimed, but the daemon that claimed it stopped before its run started; a slot never starts twice",
                ),
            };
            slots::decide_once(
                &mut self.journal,
                &claim.schedule,
                &claim.slot,
                decision,
                reason,
                claim.run.clone(),
            )?;
        }
        Ok(())
    }

    fn init_cursors(&mut self, started: DateTime<Utc>) -> Result<()> {
        for schedule in self.schedules.iter() {
            let from =
                slots::last_claimed(&self.journal, &schedule.name)?.unwrap_or(started - ON_TIME);
            self.cursors.insert(schedule.name.clone(), from);
        }
        Ok(())
    }

    fn next_slot(&self, schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        schedule.next_after(&self.windows, after)
    }

    /// Every slot that fell due since the last look: on time, it starts; late (the daemon
    /// was not running), the missed policy decides.
    async fn start_due(&mut self, now: DateTime<Utc>) -> Result<()> {
        let names: Vec<String> = self.schedules.schedules.keys().cloned().collect();
        for name in names {
            let Some(from) = self.cursors.get(&name).copied() else {
                continue;
            };
            if from >= now {
                continue;
            }
            let (due, enabled, missed_policy) = {
                let Some(schedule) = self.schedules.get(&name) else {
                    continue;
                };
                (
                    schedule.slots_between(&self.windows, from, now, MAX_SLOTS_PER_LOOK),
                    schedule.enabled,
                    schedule.missed,
                )
            };
            let cursor = if due.len() == MAX_SLOTS_PER_LOOK {
                due.last().copied().unwrap_or(now)
            } else {
                now
            };
            self.cursors.insert(name.clone(), cursor);
            if due.is_empty() || !enabled {
                continue;
            }
            let (on_time, late): (Vec<_>, Vec<_>) =
                due.into_iter().partition(|slot| *slot >= now - ON_TIME);
            let catch_up = match (missed_policy, on_time.is_empty(), late.last()) {
                (MissedPolicy::RunOnce, true, Some(latest)) => Some(*latest),
                _ => None,
            };
            self.journal_missed(&name, &late, catch_up, missed_policy)?;
            if let Some(slot) = catch_up {
                let startable = self
                    .schedules
                    .get(&name)
                    .is_some_and(|s| s.still_startable(&self.windows, slot, now));
                if startable {
                    self.start_slot(&name, slot, true).await?;
                } else {
                    slots::claim_and_decide(
                        &mut self.journal,
                        &self.claimer,
                        &name,
                        slot,
                        SlotDecision::WindowClosed,
                        "missed while the daemon was not running; missed: run-once, but its window has closed (or passed its cutoff) since",
                    )?;
                }
            }
            for slot in on_time {
                self.start_slot(&name, slot, false).await?;
            }
        }
        Ok(())
    }

    /// Journals late slots as missed, each with the policy applied.
    fn journal_missed(
        &mut self,
        schedule: &str,
        late: &[DateTime<Utc>],
        catch_up: Option<DateTime<Utc>>,
        policy: MissedPolicy,
    ) -> Result<()> {
        let missed: Vec<_> = late.iter().filter(|s| Some(**s) != catch_up).collect();
        let why = match (policy, catch_up) {
            (MissedPolicy::Skip, _) => {
                "missed while the daemon was not running; missed: skip starts nothing".to_string()
            }
            (MissedPolicy::RunOnce, Some(latest)) => format!(
                "missed while the daemon was not running; missed: run-once starts only the latest, {}",
                instant(latest)
            ),
            (MissedPolicy::RunOnce, None) => {
                "missed while the daemon was not running; missed: run-once, but a slot fell due on time since".to_string()
            }
        };
        let (each, rest) = missed.split_at(missed.len().min(MAX_MISSED_DECISIONS));
        for slot in each {
            slots::claim_and_decide(
                &mut self.journal,
                &self.claimer,
                schedule,
                **slot,
                SlotDecision::Missed,
                &why,
            )?;
        }
        if let Some(latest) = missed.last() {
            let summary = format!(
                "{} slot(s) from {} missed; {why}",
                missed.len(),
                instant(*missed[0])
            );
            (self.say)(&format!("{schedule}: {summary}"));
            self.notify_decision(schedule, **latest, SlotDecision::Missed, &summary)?;
        }
        if let (Some(first), Some(last)) = (rest.first(), rest.last()) {
            slots::claim_and_decide(
                &mut self.journal,
                &self.claimer,
                schedule,
                **last,
                SlotDecision::Missed,
                &format!(
                    "{why} (and {} more slots from {} missed with it)",
                    rest.len() - 1,
                    instant(**first)
                ),
            )?;
        }
        Ok(())
    }

    /// Decides on one due slot: skipped (freeze, overlap, closed window), queued, or started.
    async fn start_slot(&mut self, name: &str, slot: DateTime<Utc>, late: bool) -> Result<()> {
        let Some(schedule) = self.schedules.get(name) else {
            return Ok(());
        };
        let overlap = schedule.overlap;
        if let Some(previous) = self.unfinished_run_of(name)? {
            match overlap {
                OverlapPolicy::Skip => {
                    self.decide_new(
                        name,
                        slot,
                        SlotDecision::SkippedOverlap,
                        &format!("run {previous} of this schedule has not finished; overlap: skip"),
                    )?;
                }
                OverlapPolicy::Queue => {
                    if self.decide_new(
                        name,
                        slot,
                        SlotDecision::Queued,
                        &format!("run {previous} of this schedule has not finished; overlap: queue starts it after that run"),
                    )? {
                        self.queued.push_back((name.to_string(), slot, late));
                    }
                }
            }
            return Ok(());
        }
        if let Some(refusal) = self.refusal(name)? {
            let (decision, reason) = refusal;
            self.decide_new(name, slot, decision, &reason)?;
            return Ok(());
        }
        if self.driven.len() >= self.max_runs {
            if self.decide_new(
                name,
                slot,
                SlotDecision::Queued,
                &format!(
                    "{} runs are being driven, as many as max_concurrent_runs allows; it starts when one ends",
                    self.driven.len()
                ),
            )? {
                self.queued.push_back((name.to_string(), slot, late));
            }
            return Ok(());
        }
        if !slots::claim(&mut self.journal, &self.claimer, name, slot)? {
            // Another daemon on this journal has it.
            return Ok(());
        }
        self.spawn_start(name, slot)
    }

    /// Claims a slot with its decision; false when another daemon claimed it first.
    fn decide_new(
        &mut self,
        name: &str,
        slot: DateTime<Utc>,
        decision: SlotDecision,
        reason: &str,
    ) -> Result<bool> {
        let claimed = slots::claim_and_decide(
            &mut self.journal,
            &self.claimer,
            name,
            slot,
            decision,
            reason,
        )?;
        if claimed && decision != SlotDecision::Queued {
            (self.say)(&format!(
                "{name} {}: {} — {reason}",
                instant(slot),
                decision.name()
            ));
            // A slot skipped because the previous run still goes is routine; a freeze or a
            // closed window is worth telling.
            if decision != SlotDecision::SkippedOverlap {
                self.notify_decision(name, slot, decision, reason)?;
            }
        }
        Ok(claimed)
    }

    /// Why a schedule's runbook may not start now: a freeze, or its window closed.
    fn refusal(&mut self, name: &str) -> Result<Option<(SlotDecision, String)>> {
        let Some(schedule) = self.schedules.get(name) else {
            return Ok(None);
        };
        let loaded = match library::resolve(self.settings, &schedule.runbook)
            .and_then(|path| library::load(self.settings, &path))
        {
            Ok(loaded) => loaded,
            // The run itself says what is wrong with the runbook, in the journal.
            Err(_) => return Ok(None),
        };
        let timing = Timing {
            windows: &self.windows,
            calendars: &self.calendars,
            config: self.settings.config_name(),
            now: Utc::now(),
        };
        if let Some(freeze) = timing.freeze_for(&loaded.plan, false) {
            return Ok(Some((
                SlotDecision::SkippedFreeze,
                inside_freeze(&freeze)
                    .to_string()
                    .trim_start_matches("refused to start: ")
                    .to_string(),
            )));
        }
        match timing.window_for(&loaded.plan, false, false) {
            Err(e @ Error::OutsideWindow { .. }) => Ok(Some((
                SlotDecision::WindowClosed,
                e.to_string()
                    .trim_start_matches("refused to start: ")
                    .to_string(),
            ))),
            _ => Ok(None),
        }
    }

    /// The run of `schedule` that has not finished (driven now, or parked), if any.
    fn unfinished_run_of(&self, schedule: &str) -> Result<Option<String>> {
        if let Some(driven) = self.driven.iter().find(|d| d.schedule == schedule) {
            return Ok(Some(
                driven
                    .run
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .unwrap_or_else(|| "(still starting)".into()),
            ));
        }
        for (run, of) in slots::unfinished_scheduled_runs(&self.journal)? {
            if of != schedule {
                continue;
            }
            let view = view::load_run(&self.journal, &run)?;
            if !is_finished(view.status) {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// Queued slots whose schedule is free again, while there is room.
    async fn start_queued(&mut self) -> Result<()> {
        let mut still = VecDeque::new();
        while let Some((name, slot, late)) = self.queued.pop_front() {
            let busy = self.unfinished_run_of(&name)?.is_some();
            if busy || self.driven.len() >= self.max_runs {
                still.push_back((name, slot, late));
                continue;
            }
            if let Some((decision, reason)) = self.refusal(&name)? {
                slots::decide(&mut self.journal, &name, slot, decision, &reason, None)?;
                continue;
            }
            self.spawn_start(&name, slot)?;
        }
        self.queued = still;
        Ok(())
    }

    /// Starts the run of a claimed slot in a child process.
    fn spawn_start(&mut self, name: &str, slot: DateTime<Utc>) -> Result<()> {
        let Some(schedule) = self.schedules.get(name) else {
            return Ok(());
        };
        let mut args: Vec<OsString> = self.options.global_args.clone();
        args.extend(
            [
                "--no-progress",
                "run",
                &schedule.runbook,
                "--non-interactive",
                "--park-on-stop",
                "--slot",
                &format!("{name}@{}", instant(slot)),
            ]
            .map(OsString::from),
        );
        for (key, value) in &schedule.params {
            args.push("-p".into());
            args.push(format!("{key}={value}").into());
        }
        let driven = self.spawn(name, Some(slot), args, None)?;
        self.driven.push(driven);
        Ok(())
    }

    /// Runs `opsbook ARGS`, echoing its lines and catching the run id on its first line.
    fn spawn(
        &self,
        schedule: &str,
        slot: Option<DateTime<Utc>>,
        args: Vec<OsString>,
        run: Option<String>,
    ) -> Result<Driven> {
        let mut child = Command::new(&self.options.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                Error::io(
                    format!("cannot start {}", self.options.program.display()),
                    e,
                )
            })?;
        let resumed = run.is_some();
        let run = Arc::new(Mutex::new(run));
        let last_error = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let run = run.clone();
            echo(stdout, schedule, self.say.clone(), move |line| {
                // A new run says its id first: `run ULID ...`.
                if let Some(id) = line
                    .strip_prefix("run ")
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    if let Ok(mut run) = run.lock() {
                        if run.is_none() {
                            *run = Some(id.to_string());
                        }
                    }
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let last_error = last_error.clone();
            echo(stderr, schedule, self.say.clone(), move |line| {
                if !line.trim().is_empty() {
                    if let Ok(mut last) = last_error.lock() {
                        *last = line.to_string();
                    }
                }
            });
        }
        Ok(Driven {
            schedule: schedule.to_string(),
            slot,
            run,
            last_error,
            child,
            resumed,
        })
    }

    /// Children that have exited: a new run's slot gets its decision.
    async fn reap(&mut self) -> Result<()> {
        let mut index = 0;
        while index < self.driven.len() {
            let exited = self.driven[index]
                .child
                .try_wait()
                .map_err(|e| Error::io("cannot wait for a run's process", e))?;
            let Some(status) = exited else {
                index += 1;
                continue;
            };
            let driven = self.driven.swap_remove(index);
            // Let the echo tasks take the last lines.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let run = driven.run.lock().ok().and_then(|r| r.clone());
            if driven.resumed {
                continue;
            }
            let Some(slot) = driven.slot else { continue };
            match run {
                Some(run) => {
                    // It starts again: the next failure is news.
                    self.last_failure.remove(&driven.schedule);
                    slots::decide(
                        &mut self.journal,
                        &driven.schedule,
                        slot,
                        SlotDecision::Started,
                        "started",
                        Some(run),
                    )?;
                }
                None => {
                    let why = driven
                        .last_error
                        .lock()
                        .map(|e| e.clone())
                        .unwrap_or_default();
                    let reason = format!(
                        "its run did not start (exit {}): {}",
                        status.code().unwrap_or(-1),
                        if why.is_empty() {
                            "no reason given"
                        } else {
                            &why
                        }
                    );
                    slots::decide(
                        &mut self.journal,
                        &driven.schedule,
                        slot,
                        SlotDecision::NotStarted,
                        &reason,
                        None,
                    )?;
                    (self.say)(&format!(
                        "{} {}: not-started — {reason}",
                        driven.schedule,
                        instant(slot)
                    ));
                    self.notify_decision(
                        &driven.schedule,
                        slot,
                        SlotDecision::NotStarted,
                        &reason,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The runs of schedules that wait: notify who they wait for (once per pause), and resume
    /// those that were signed, whose window opened again, or that the daemon parked when it
    /// stopped.
    async fn look_at_runs(&mut self, now: DateTime<Utc>) -> Result<()> {
        let driven: HashSet<String> = self
            .driven
            .iter()
            .filter_map(|d| d.run.lock().ok().and_then(|r| r.clone()))
            .collect();
        let mut seen = HashSet::new();
        for (run, schedule) in slots::unfinished_scheduled_runs(&self.journal)? {
            if driven.contains(&run) || !seen.insert(run.clone()) {
                continue;
            }
            let view = view::load_run(&self.journal, &run)?;
            if !view.status.is_paused() {
                continue;
            }
            let Some(pause) = view.paused.clone() else {
                continue;
            };
            let resume_now = match pause.waiting_for {
                WaitingFor::Restart => true,
                WaitingFor::Window => self.window_reopened(&view, &pause.at, now),
                WaitingFor::Signoff | WaitingFor::Operator | WaitingFor::Countersign => {
                    self.notify_parked(&schedule, &view)?;
                    let key = format!("{run}@{}", view.events);
                    signed_since_pause(&self.journal, &run)? && !self.resumed_for.contains(&key)
                }
            };
            if !resume_now || self.options.once && pause.waiting_for != WaitingFor::Restart {
                continue;
            }
            if Lease::is_held_elsewhere(self.journal.path(), &run)? {
                continue;
            }
            self.resumed_for.insert(format!("{run}@{}", view.events));
            (self.say)(&format!(
                "{schedule}: resuming run {run} ({})",
                match pause.waiting_for {
                    WaitingFor::Restart => "parked when the daemon stopped",
                    WaitingFor::Window => "its window is open again",
                    _ => "signed",
                }
            ));
            let mut args = self.options.global_args.clone();
            args.extend(
                [
                    "--no-progress",
                    "resume",
                    &run,
                    "--non-interactive",
                    "--park-on-stop",
                ]
                .map(OsString::from),
            );
            let driven = self.spawn(&schedule, None, args, Some(run.clone()))?;
            self.driven.push(driven);
        }
        Ok(())
    }

    /// Whether the window a run parked for has opened again since it parked.
    fn window_reopened(&self, view: &RunView, paused_at: &str, now: DateTime<Utc>) -> bool {
        let (Some(name), Some(paused_at)) = (&view.window, parse_instant(paused_at)) else {
            return false;
        };
        self.windows
            .get(name)
            .and_then(|w| w.open_at(now))
            .is_some_and(|o| o.opens > paused_at && now < o.last_start)
    }

    /// Queues a notification that `view` waits for a person, once per pause.
    fn notify_parked(&mut self, schedule: &str, view: &RunView) -> Result<()> {
        let Some(pause) = &view.paused else {
            return Ok(());
        };
        let key = format!("run-parked:{}:{}", view.id, pause.at);
        if notified(&self.journal, &key)? {
            return Ok(());
        }
        let asks = view
            .steps
            .iter()
            .rev()
            .find(|s| s.id == pause.step)
            .map(|s| s.asks.clone())
            .unwrap_or_default();
        let notification = Notification {
            topic: "run-parked".into(),
            summary: format!(
                "run {} of {} waits at `{}` for a sign-off: opsbook signoff {} --step {} --approve --as NAME",
                view.id, view.runbook, pause.step, view.id, pause.step
            ),
            fields: BTreeMap::from([
                ("key".to_string(), key),
                ("run".to_string(), view.id.clone()),
                ("runbook".to_string(), view.runbook.clone()),
                ("schedule".to_string(), schedule.to_string()),
                ("step".to_string(), pause.step.clone()),
                ("waiting_for".to_string(), pause.waiting_for.name().to_string()),
            ]),
            details: serde_json::json!({
                "reason": pause.reason,
                "asks": asks,
                "paused_at": pause.at,
            }),
        };
        outbox::queue(
            &mut self.journal,
            &notification,
            &self.routes,
            &self.channels,
        )?;
        Ok(())
    }

    /// Queues a notification of a slot that did not start. The same decision for the same
    /// reason, slot after slot (a freeze, a broken runbook), is told once until it changes or
    /// a slot starts again.
    fn notify_decision(
        &mut self,
        schedule: &str,
        slot: DateTime<Utc>,
        decision: SlotDecision,
        reason: &str,
    ) -> Result<()> {
        let told = format!("{}: {reason}", decision.name());
        if self.last_failure.get(schedule) == Some(&told) {
            return Ok(());
        }
        self.last_failure.insert(schedule.to_string(), told);
        let runbook = self
            .schedules
            .get(schedule)
            .map(|s| s.runbook.clone())
            .unwrap_or_default();
        let notification = Notification {
            topic: "slot-decided".into(),
            summary: format!(
                "schedule {schedule} ({runbook}) at {}: {} — {reason}",
                instant(slot),
                decision.name()
            ),
            fields: BTreeMap::from([
                ("schedule".to_string(), schedule.to_string()),
                ("runbook".to_string(), runbook),
                ("decision".to_string(), decision.name().to_string()),
            ]),
            details: serde_json::json!({ "slot": instant(slot), "reason": reason }),
        };
        outbox::queue(
            &mut self.journal,
            &notification,
            &self.routes,
            &self.channels,
        )?;
        Ok(())
    }
}

/// Delivers the outbox on a thread of its own, with its own connection to the journal, so
/// that a slow channel (up to its timeout, for each notification) never delays a slot.
struct Deliverer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deliverer {
    fn start(db: &std::path::Path, channels: &Channels, say: Say) -> Result<Self> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if channels.is_empty() {
            return Ok(Self { stop, thread: None });
        }
        let mut journal = Journal::open(db)?;
        let channels = channels.clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("outbox".into())
            .spawn(move || loop {
                // Read before the round: the round after a stop request is the last.
                let last = stopping.load(std::sync::atomic::Ordering::SeqCst);
                match outbox::deliver_due(&mut journal, &channels, Utc::now()) {
                    Ok(round) if round.failed > 0 => say(&format!(
                        "outbox: {} delivered, {} failed and wait to be tried again (opsbook outbox list --pending)",
                        round.delivered, round.failed
                    )),
                    Ok(_) => {}
                    Err(e) => say(&format!("outbox: {e}")),
                }
                if last {
                    break;
                }
                std::thread::sleep(TICK);
            })
            .map_err(|e| Error::io("cannot start the outbox thread", e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Runs one last round and waits for it.
    fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Echoes a child's lines to the daemon's log, tagged with its schedule, after `look` has
/// seen each.
fn echo(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    schedule: &str,
    say: Say,
    mut look: impl FnMut(&str) + Send + 'static,
) {
    let tag = schedule.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            look(&line);
            say(&format!("[{tag}] {line}"));
        }
    });
}

/// Whether a run's status is final.
fn is_finished(status: RunStatus) -> bool {
    !matches!(
        status,
        RunStatus::Running | RunStatus::AwaitingSignoff | RunStatus::Parked
    )
}

/// Whether a notification with this `key` field was queued already.
fn notified(journal: &Journal, key: &str) -> Result<bool> {
    journal
        .connection_ref()
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE json_extract(payload, '$.fields.key') = ?1)",
            [key],
            |r| r.get(0),
        )
        .map_err(|e| journal.error(e))
}

/// Whether a sign-off was recorded after the run's last pause.
fn signed_since_pause(journal: &Journal, run: &str) -> Result<bool> {
    let events = journal.run_events(run)?;
    let last_pause = events.iter().rposition(|e| e.kind == "run_paused");
    Ok(last_pause.is_some_and(|i| events[i..].iter().any(|e| e.kind == "signoff_recorded")))
}

/// What the schedules are due to do, for `schedule list`.
#[derive(Debug, serde::Serialize)]
pub struct ScheduleState {
    pub schedule: String,
    pub runbook: String,
    pub when: String,
    pub enabled: bool,
    pub missed: &'static str,
    pub overlap: &'static str,
    pub next: Option<String>,
    pub last: Option<slots::Decided>,
}

/// Each schedule with its next slot after `now` and its last decision.
pub fn states(settings: &Settings, now: DateTime<Utc>) -> Result<Vec<ScheduleState>> {
    let windows = Windows::from_settings(settings)?;
    let schedules = Schedules::from_settings(settings, &windows)?;
    let decisions = match Journal::open_read_only(&settings.db) {
        Ok(journal) => slots::decisions(&journal)?,
        Err(Error::NoJournal { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(schedules
        .iter()
        .map(|s| ScheduleState {
            schedule: s.name.clone(),
            runbook: s.runbook.clone(),
            when: s.describe(),
            enabled: s.enabled,
            missed: match s.missed {
                MissedPolicy::Skip => "skip",
                MissedPolicy::RunOnce => "run-once",
            },
            overlap: match s.overlap {
                OverlapPolicy::Skip => "skip",
                OverlapPolicy::Queue => "queue",
            },
            next: s
                .enabled
                .then(|| s.next_after(&windows, now))
                .flatten()
                .map(instant),
            last: decisions
                .iter()
                .rev()
                .find(|d| d.schedule == s.name)
                .cloned(),
        })
        .collect())
}
