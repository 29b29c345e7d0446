//! Unattended work: the schedules of the config (a runbook started when its maintenance window
//! opens, or on a cron of its own), the slots they fall due at, the journal's record of what
//! became of every slot, and the daemon that starts them, resumes what it parked, and
//! notifies the people a run waits for.

pub mod daemon;
pub mod slots;
pub mod systemd;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::calendar::{CronSchedule, Windows};
use crate::config::{MissedPolicy, OverlapPolicy, Settings};
use crate::error::{Error, Result};

/// How many due slots one look at a schedule considers: a daemon down for a long time does
/// not walk through years of per-second slots.
pub const MAX_SLOTS_PER_LOOK: usize = 1000;

/// When a schedule falls due.
#[derive(Debug)]
pub enum Trigger {
    /// When the named maintenance window opens.
    Window(String),
    Cron(CronSchedule),
}

/// One schedule of the config, checked.
#[derive(Debug)]
pub struct Schedule {
    pub name: String,
    pub runbook: String,
    /// As `KEY=VALUE` assignments, in name order.
    pub params: Vec<(String, String)>,
    pub trigger: Trigger,
    pub missed: MissedPolicy,
    pub overlap: OverlapPolicy,
    pub enabled: bool,
}

impl Schedule {
    /// The slots that fall due in (from, to], oldest first, at most `limit`.
    pub fn slots_between(
        &self,
        windows: &Windows,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        match &self.trigger {
            Trigger::Cron(cron) => cron.fires_between(from, to, limit),
            Trigger::Window(name) => windows
                .get(name)
                .map(|w| {
                    w.openings_between(from, to, limit)
                        .into_iter()
                        .map(|o| o.opens)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The first slot after `after`.
    pub fn next_after(&self, windows: &Windows, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.trigger {
            Trigger::Cron(cron) => cron.next_after(after),
            Trigger::Window(name) => windows
                .get(name)
                .and_then(|w| w.next_opening(after))
                .map(|o| o.opens),
        }
    }

    /// Whether a slot is still worth starting at `now`: a window's slot while its window is
    /// open and before its cutoff; a cron slot always (its runbook's own window is checked
    /// when it starts).
    pub fn still_startable(
        &self,
        windows: &Windows,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        match &self.trigger {
            Trigger::Cron(_) => true,
            Trigger::Window(name) => windows
                .get(name)
                .and_then(|w| w.open_at(now))
                .is_some_and(|o| o.opens == slot && now < o.last_start),
        }
    }

    pub fn describe(&self) -> String {
        match &self.trigger {
            Trigger::Window(name) => format!("when window {name} opens"),
            Trigger::Cron(cron) => format!("cron {} {}", cron.expression(), cron.timezone()),
        }
    }
}

/// The schedules of the config, by name.
#[derive(Debug, Default)]
pub struct Schedules {
    pub schedules: BTreeMap<String, Schedule>,
}

impl Schedules {
    pub fn from_settings(settings: &Settings, windows: &Windows) -> Result<Self> {
        let config = settings
            .config_file
            .clone()
            .unwrap_or_else(|| "opsbook.yaml".into());
        let bad = |key: String, message: String| Error::ConfigValue {
            path: config.clone(),
            key,
            message,
        };
        let mut schedules = BTreeMap::new();
        for (name, spec) in &settings.operations.schedules {
            let key = |field: &str| format!("schedules.{name}.{field}");
            let trigger = match (&spec.window, &spec.cron) {
                (Some(window), None) => {
                    if spec.timezone.is_some() {
                        return Err(bad(
                            key("timezone"),
                            "a schedule that follows a window takes the window's time zone: remove `timezone`".into(),
                        ));
                    }
                    if windows.get(window).is_none() {
                        return Err(bad(
                            key("window"),
                            format!("no window `{window}` is defined under `windows:`"),
                        ));
                    }
                    Trigger::Window(window.clone())
                }
                (None, Some(cron)) => Trigger::Cron(CronSchedule::parse(
                    cron,
                    spec.timezone.as_deref(),
                    &key("cron"),
                    &config,
                )?),
                (Some(_), Some(_)) => {
                    return Err(bad(
                        name.clone(),
                        "give either `window` (start when it opens) or `cron`, not both".into(),
                    ))
                }
                (None, None) => {
                    return Err(bad(
                        name.clone(),
                        "say when it runs: `window: NAME` (when the window opens) or `cron: \"*/15 * * * *\"`".into(),
                    ))
                }
            };
            if spec.runbook.trim().is_empty() {
                return Err(bad(key("runbook"), "name the runbook to start".into()));
            }
            let mut params = Vec::new();
            for (param, value) in &spec.params {
                let text = match value {
                    serde_yaml::Value::String(s) => s.clone(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(bad(
                            format!("schedules.{name}.params.{param}"),
                            "a parameter is a string, a number or a boolean".into(),
                        ))
                    }
                };
                params.push((param.clone(), text));
            }
            schedules.insert(
                name.clone(),
                Schedule {
                    name: name.clone(),
                    runbook: spec.runbook.clone(),
                    params,
                    trigger,
                    missed: spec.missed,
                    overlap: spec.overlap,
                    enabled: spec.enabled,
                },
            );
        }
        Ok(Self { schedules })
    }

    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }
}

/// An instant as the journal and the command line write it: RFC 3339, UTC, to the second.
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
