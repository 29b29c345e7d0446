//! Maintenance windows ([`Window`], all of them in [`Windows`]): when one opens (a cron
//! schedule in a time zone, moved by `offset_days`), how long it stays open, the cutoff after
//! which no step starts, the dates it is active between, and its state at an instant
//! ([`WindowStatus`]). The fields are AWS SSM maintenance windows' renamed for people.
//!
//! - An **occurrence** opens at a fire of the schedule, or `offset_days` later at the same
//!   wall-clock time in the window's zone (`0 22 * * TUE#2` with `offset_days: 2` opens on
//!   the Thursday after Patch Tuesday at 22:00), and closes `duration` later. No step starts
//!   after `closes - cutoff` ([`Occurrence::last_start`]).
//! - An occurrence counts when its opening lies within `[start, end]`; one that opened
//!   before `end` stays open past it.
//! - The clocks changing: fires follow the rule of [`super::cron`]; an opening moved by
//!   `offset_days` onto a wall-clock time that does not exist opens at the end of the gap,
//!   and one that happens twice opens at the first.
//! - A disabled window is never open.
//!
//! Searches look at most [`HORIZON_DAYS`] ahead and at most [`MAX_FIRES_LOOKED_AT`] fires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

use super::cron::{resolve_local, CronSchedule};
use crate::config::{Settings, WindowSpec};
use crate::error::{Error, Result};
use crate::runbook::duration::parse_duration;

/// How far ahead a window's next opening is looked for: five years.
pub const HORIZON_DAYS: i64 = 5 * 366;

/// The most fires one search looks at.
pub const MAX_FIRES_LOOKED_AT: usize = 100_000;

/// The longest a window may last (AWS allows 24 hours).
const MAX_DURATION_DAYS: i64 = 7;

/// The most days an opening may follow its fire (AWS allows 1 to 6).
const MAX_OFFSET_DAYS: u32 = 6;

/// The most occurrences that overlap one another a status follows to find when the window
/// really closes.
const MAX_CHAINED: usize = 1_000;

/// A maintenance window, checked and ready to evaluate.
#[derive(Debug, Clone)]
pub struct Window {
    pub name: String,
    cron: CronSchedule,
    duration: TimeDelta,
    cutoff: TimeDelta,
    offset_days: u32,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    enabled: bool,
    /// The duration and cutoff as written, for [`Window::describe`].
    duration_text: String,
    cutoff_text: Option<String>,
}

/// One time a window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
    /// `closes - cutoff`: no step starts after this.
    pub last_start: DateTime<Utc>,
}

/// A window's state at an instant, as `opsbook windows` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowStatus {
    pub window: String,
    /// `open`, `closed` or `disabled`.
    pub state: &'static str,
    pub at: DateTime<Utc>,
    /// The occurrence open at `at`, or else the next one.
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    pub last_start: Option<DateTime<Utc>>,
    /// While open: the seconds until `closes_at`.
    pub remaining_seconds: Option<i64>,
    /// Open: when it closes (later than `closes_at` when the next occurrence opens before
    /// this one closes). Closed: when it next opens. `None`: not within the horizon.
    pub next_transition: Option<DateTime<Utc>>,
}

impl Window {
    /// Checks `spec`, the window `name` of the config file `config`: the schedule and time
    /// zone, a duration above 0 and at most 7 days, a cutoff shorter than the duration,
    /// `offset_days` 0 to 6, and `start`/`end` as RFC 3339 or a date (midnight in the
    /// window's zone), `start` before `end`.
    pub fn compile(name: &str, spec: &WindowSpec, config: &Path) -> Result<Window> {
        let key = |field: &str| format!("windows.{name}.{field}");
        let bad = |field: &str, message: String| Error::ConfigValue {
            path: config.to_path_buf(),
            key: key(field),
            message,
        };
        let cron = CronSchedule::parse(
            &spec.schedule,
            spec.timezone.as_deref(),
            &key("schedule"),
            config,
        )?;

        let duration_text = spec.duration.trim().to_string();
        let duration = parse_duration(&duration_text).map_err(|e| bad("duration", e))?;
        let duration = TimeDelta::from_std(duration)
            .ok()
            .filter(|d| *d > TimeDelta::zero() && *d <= TimeDelta::days(MAX_DURATION_DAYS))
            .ok_or_else(|| {
                bad(
                    "duration",
                    format!("`{duration_text}` is not a window length: give more than 0 and at most {MAX_DURATION_DAYS}d (e.g. 4h)"),
                )
            })?;

        let cutoff_text = spec.cutoff.as_ref().map(|c| c.trim().to_string());
        let cutoff = match &cutoff_text {
            None => TimeDelta::zero(),
            Some(text) => {
                let cutoff = parse_duration(text).map_err(|e| bad("cutoff", e))?;
                TimeDelta::from_std(cutoff)
                    .ok()
                    .filter(|c| *c < duration)
                    .ok_or_else(|| {
                        bad(
                            "cutoff",
                            format!("`{text}` is not shorter than the window's duration `{duration_text}`, so no step could ever start; give a shorter cutoff (e.g. 30m)"),
                        )
                    })?
            }
        };

        let offset_days = spec.offset_days.unwrap_or(0);
        if offset_days > MAX_OFFSET_DAYS {
            return Err(bad(
                "offset_days",
                format!("{offset_days} is out of range: a window opens 0 to {MAX_OFFSET_DAYS} days after its schedule fires"),
            ));
        }

        let tz = cron.timezone();
        let bound = |field: &str, text: &Option<String>| -> Result<Option<DateTime<Utc>>> {
            let Some(text) = text else { return Ok(None) };
            let text = text.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|date| resolve_local(tz, date.and_time(NaiveTime::MIN)))
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        field,
                        format!("\"{text}\" is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a date (2026-01-01)"),
                    )
                })
        };
        let start = bound("start", &spec.start)?;
        let end = bound("end", &spec.end)?;
        if let (Some(start), Some(end)) = (start, end) {
            if start >= end {
                return Err(bad(
                    "end",
                    format!(
                        "{} is not after start {}, so the window would never open",
                        end.to_rfc3339(),
                        start.to_rfc3339()
                    ),
                ));
            }
        }

        Ok(Window {
            name: name.to_string(),
            cron,
            duration,
            cutoff,
            offset_days,
            start,
            end,
            enabled: spec.enabled,
            duration_text,
            cutoff_text,
        })
    }

    /// The occurrence open at `at` (`opens <= at < closes`), if any. When several overlap,
    /// the one that opened last (it closes last).
    pub fn open_at(&self, at: DateTime<Utc>) -> Option<Occurrence> {
        if !self.enabled {
            return None;
        }
        let latest = self.end.map_or(at, |end| end.min(at));
        if self.start.is_some_and(|start| latest < start) {
            return None;
        }
        let margin = self.margin();
        let shift = self.shift();
        // Openings in (at - duration, latest] come from fires in this range.
        let first_fire = at - self.duration - shift - margin;
        let mut best: Option<(DateTime<Utc>, DateTime<Utc>)> = None; // (opening, fire)
        let mut fire = self.cron.last_at_or_before(latest - shift + margin);
        for _ in 0..MAX_FIRES_LOOKED_AT {
            let Some(f) = fire else { break };
            // Fires further back than twice the margin open earlier than the best so far.
            if f < first_fire || best.is_some_and(|(_, bf)| f < bf - margin - margin) {
                break;
            }
            if let Some(opens) = self.opening_of(f) {
                let counts = opens <= latest
                    && at < opens + self.duration
                    && self.start.is_none_or(|start| opens >= start);
                if counts && best.is_none_or(|(bo, _)| opens > bo) {
                    best = Some((opens, f));
                }
            }
            fire = self.cron.last_at_or_before(f - TimeDelta::seconds(1));
        }
        best.map(|(opens, _)| self.occurrence(opens))
    }

    /// The first occurrence that opens strictly after `after` (within [`HORIZON_DAYS`]).
    pub fn next_opening(&self, after: DateTime<Utc>) -> Option<Occurrence> {
        let horizon = after + TimeDelta::days(HORIZON_DAYS);
        self.openings_between(after, horizon, 1).into_iter().next()
    }

    /// Occurrences opening in `(from, to]`, oldest first, at most `limit`.
    pub fn openings_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<Occurrence> {
        if !self.enabled || limit == 0 {
            return Vec::new();
        }
        let to = self.end.map_or(to, |end| end.min(to));
        let margin = self.margin();
        let shift = self.shift();
        // Openings stay within `margin` of their fire moved by `shift`, so the fires that
        // can open in (from, to] lie in (from - shift - margin, to - shift + margin].
        let mut found = BTreeSet::new();
        let mut fire = self.cron.next_after(from - shift - margin);
        for _ in 0..MAX_FIRES_LOOKED_AT {
            let Some(f) = fire else { break };
            if f > to - shift + margin {
                break;
            }
            // Later fires open after `f - margin + shift`: once the `limit` earliest found
            // all come before that, no later fire changes them.
            if found.len() == limit
                && found
                    .last()
                    .is_some_and(|last: &DateTime<Utc>| *last < f + shift - margin)
            {
                break;
            }
            if let Some(opens) = self.opening_of(f) {
                let counts =
                    opens > from && opens <= to && self.start.is_none_or(|start| opens >= start);
                if counts {
                    found.insert(opens);
                    if found.len() > limit {
                        found.pop_last();
                    }
                }
            }
            fire = self.cron.next_after(f);
        }
        found
            .into_iter()
            .map(|opens| self.occurrence(opens))
            .collect()
    }

    /// The window's state at `at`.
    pub fn status(&self, at: DateTime<Utc>) -> WindowStatus {
        let mut status = WindowStatus {
            window: self.name.clone(),
            state: "disabled",
            at,
            opens_at: None,
            closes_at: None,
            last_start: None,
            remaining_seconds: None,
            next_transition: None,
        };
        if !self.enabled {
            return status;
        }
        let (state, occurrence) = match self.open_at(at) {
            Some(open) => ("open", Some(open)),
            None => ("closed", self.next_opening(at)),
        };
        status.state = state;
        if let Some(occurrence) = occurrence {
            status.opens_at = Some(occurrence.opens);
            status.closes_at = Some(occurrence.closes);
            status.last_start = Some(occurrence.last_start);
            if state == "open" {
                status.remaining_seconds = Some((occurrence.closes - at).num_seconds());
                status.next_transition = self.closes_after(occurrence);
            } else {
                status.next_transition = Some(occurrence.opens);
            }
        }
        status
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `0 22 * * SUN Europe/London for 4h, cutoff 30m`, then any offset, bounds and
    /// `disabled`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} {} for {}",
            self.cron.expression(),
            self.cron.timezone().name(),
            self.duration_text
        );
        if let Some(cutoff) = &self.cutoff_text {
            text.push_str(&format!(", cutoff {cutoff}"));
        }
        match self.offset_days {
            0 => {}
            1 => text.push_str(", opening 1 day after each fire"),
            n => text.push_str(&format!(", opening {n} days after each fire")),
        }
        if let Some(start) = self.start {
            text.push_str(&format!(
                ", from {}",
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if let Some(end) = self.end {
            text.push_str(&format!(
                ", until {}",
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if !self.enabled {
            text.push_str(", disabled");
        }
        text
    }

    fn occurrence(&self, opens: DateTime<Utc>) -> Occurrence {
        let closes = opens + self.duration;
        Occurrence {
            opens,
            closes,
            last_start: closes - self.cutoff,
        }
    }

    /// When the window opened by `fire` opens: the fire itself, or `offset_days` later at
    /// the same wall-clock time.
    fn opening_of(&self, fire: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.offset_days == 0 {
            return Some(fire);
        }
        let tz = self.cron.timezone();
        let wall = fire.with_timezone(&tz).naive_local();
        let moved = wall.checked_add_days(Days::new(u64::from(self.offset_days)))?;
        resolve_local(tz, moved)
    }

    /// `offset_days` as a span of real time, exact but for the clocks changing in between.
    fn shift(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.offset_days))
    }

    /// How far an opening moved by `offset_days` may stray from `fire + shift()`: the
    /// clocks changing in between (an hour or two) and a gap's end (another hour or two).
    fn margin(&self) -> TimeDelta {
        if self.offset_days == 0 {
            TimeDelta::zero()
        } else {
            TimeDelta::hours(6)
        }
    }

    /// When the window, open with `occurrence`, closes: later than its end when the next
    /// occurrences open before the previous ones close. `None` when they keep it open for
    /// more than [`MAX_CHAINED`] occurrences.
    fn closes_after(&self, occurrence: Occurrence) -> Option<DateTime<Utc>> {
        let mut closes = occurrence.closes;
        let mut last_opened = occurrence.opens;
        for _ in 0..MAX_CHAINED {
            match self.openings_between(last_opened, closes, 1).first() {
                Some(next) => {
                    closes = closes.max(next.closes);
                    last_opened = next.opens;
                }
                None => return Some(closes),
            }
        }
        None
    }
}

/// The windows the config file declares, by name.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    windows: BTreeMap<String, Window>,
}

impl Windows {
    /// Compiles every window of `settings`; the first error names its key.
    pub fn from_settings(settings: &Settings) -> Result<Windows> {
        let config = settings.config_name();
        let mut windows = BTreeMap::new();
        for (name, spec) in &settings.operations.windows {
            let window = Window::compile(name, spec, Path::new(&config))?;
            windows.insert(name.clone(), window);
        }
        Ok(Windows { windows })
    }

    pub fn get(&self, name: &str) -> Option<&Window> {
        self.windows.get(name)
    }

    /// The windows in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Window> {
        self.windows.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.windows.keys().map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::calendar::utc;
    use std::path::PathBuf;

    use super::*;
    use crate::config::Operations;

    fn spec(schedule: &str, timezone: &str, duration: &str, cutoff: Option<&str>) -> WindowSpec {
        WindowSpec {
            schedule: schedule.into(),
            timezone: Some(timezone.into()),
            duration: duration.into(),
            cutoff: cutoff.map(str::to_string),
            offset_days: None,
            start: None,
            end: None,
            enabled: true,
        }
    }

    fn compile(spec: &WindowSpec) -> Window {
        Window::compile("sunday-night", spec, Path::new("opsbook.yaml")).expect("a valid window")
    }

    fn error(spec: &WindowSpec) -> String {
        Window::compile("nightly", spec, Path::new("/etc/opsbook.yaml"))
            .expect_err("an invalid window")
            .to_string()
    }

    fn occurrence(opens: &str, closes: &str, last_start: &str) -> Occurrence {
        Occurrence {
            opens: utc(opens),
            closes: utc(closes),
            last_start: utc(last_start),
        }
    }

    fn sunday_night() -> Window {
        compile(&spec("0 22 * * SUN", "Europe/London", "4h", Some("30m")))
    }

    #[test]
    fn closed_before_open_inside_open_after_cutoff_and_closed_after_the_end() {
        let w = sunday_night();
        // Sunday 2026-06-07 22:00 BST is 21:00 UTC; it spans midnight into Monday.
        let june_7 = occurrence(
            "2026-06-07T21:00:00Z",
            "2026-06-08T01:00:00Z",
            "2026-06-08T00:30:00Z",
        );
        let june_14 = occurrence(
            "2026-06-14T21:00:00Z",
            "2026-06-15T01:00:00Z",
            "2026-06-15T00:30:00Z",
        );
        assert_eq!(w.open_at(utc("2026-06-07T20:59:59Z")), None);
        assert_eq!(w.next_opening(utc("2026-06-07T20:59:59Z")), Some(june_7));
        assert_eq!(w.open_at(utc("2026-06-07T21:00:00Z")), Some(june_7));
        assert_eq!(w.open_at(utc("2026-06-07T23:59:00Z")), Some(june_7));
        // After the cutoff: still open, but past its last start.
        assert_eq!(w.open_at(utc("2026-06-08T00:45:00Z")), Some(june_7));
        assert_eq!(w.open_at(utc("2026-06-08T01:00:00Z")), None);
        assert_eq!(w.next_opening(utc("2026-06-07T21:00:00Z")), Some(june_14));

        assert_eq!(
            w.status(utc("2026-06-08T00:45:00Z")),
            WindowStatus {
                window: "sunday-night".into(),
                state: "open",
                at: utc("2026-06-08T00:45:00Z"),
                opens_at: Some(utc("2026-06-07T21:00:00Z")),
                closes_at: Some(utc("2026-06-08T01:00:00Z")),
                last_start: Some(utc("2026-06-08T00:30:00Z")),
                remaining_seconds: Some(15 * 60),
                next_transition: Some(utc("2026-06-08T01:00:00Z")),
            }
        );
        assert_eq!(
            w.status(utc("2026-06-08T01:00:00Z")),
            WindowStatus {
                window: "sunday-night".into(),
                state: "closed",
                at: utc("2026-06-08T01:00:00Z"),
                opens_at: Some(utc("2026-06-14T21:00:00Z")),
                closes_at: Some(utc("2026-06-15T01:00:00Z")),
                last_start: Some(utc("2026-06-15T00:30:00Z")),
                remaining_seconds: None,
                next_transition: Some(utc("2026-06-14T21:00:00Z")),
            }
        );
    }

    #[test]
    fn status_serialises_as_the_cli_prints_it() {
        let json = serde_json::to_value(sunday_night().status(utc("2026-06-07T22:00:00Z")))
            .expect("serialisable");
        assert_eq!(
            json,
            serde_json::json!({
                "window": "sunday-night",
                "state": "open",
                "at": "2026-06-07T22:00:00Z",
                "opens_at": "2026-06-07T21:00:00Z",
                "closes_at": "2026-06-08T01:00:00Z",
                "last_start": "2026-06-08T00:30:00Z",
                "remaining_seconds": 10800,
                "next_transition": "2026-06-08T01:00:00Z"
            })
        );
    }

    #[test]
    fn a_window_spanning_midnight_is_open_on_the_next_day() {
        let w = compile(&spec("0 23 * * *", "UTC", "3h", None));
        assert_eq!(
            w.open_at(utc("2026-01-02T01:30:00Z")),
            Some(occurrence(
                "2026-01-01T23:00:00Z",
                "2026-01-02T02:00:00Z",
                "2026-01-02T02:00:00Z"
            ))
        );
        assert_eq!(w.open_at(utc("2026-01-02T02:00:00Z")), None);
    }

    #[test]
    fn offset_days_open_two_days_after_patch_tuesday() {
        let mut s = spec("0 22 * * TUE#2", "Europe/London", "4h", Some("1h"));
        s.offset_days = Some(2);
        let w = compile(&s);
        // The second Tuesday of December 2026 is the 8th: the window opens Thursday the 10th.
        let december = occurrence(
            "2026-12-10T22:00:00Z",
            "2026-12-11T02:00:00Z",
            "2026-12-11T01:00:00Z",
        );
        assert_eq!(w.next_opening(utc("2026-12-01T00:00:00Z")), Some(december));
        assert_eq!(w.next_opening(utc("2026-12-09T00:00:00Z")), Some(december));
        assert_eq!(w.open_at(utc("2026-12-08T22:30:00Z")), None);
        assert_eq!(w.open_at(utc("2026-12-11T01:59:59Z")), Some(december));
        assert_eq!(
            w.openings_between(utc("2026-09-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"), 10)
                .iter()
                .map(|o| o.opens.to_rfc3339())
                .collect::<Vec<_>>(),
            [
                "2026-09-10T21:00:00+00:00", // Tue 8 Sep + 2, BST
                "2026-10-15T21:00:00+00:00", // Tue 13 Oct + 2
                "2026-11-12T22:00:00+00:00", // Tue 10 Nov + 2, GMT
                "2026-12-10T22:00:00+00:00",
            ]
        );
    }

    #[test]
    fn an_offset_onto_the_spring_gap_opens_when_the_gap_ends() {
        let mut s = spec("30 1 * * SAT", "Europe/London", "1h", None);
        s.offset_days = Some(1);
        let w = compile(&s);
        // Saturday 28 March 01:30 GMT + 1 day = Sunday 01:30, which does not exist: 02:00 BST.
        assert_eq!(
            w.next_opening(utc("2026-03-27T00:00:00Z")),
            Some(occurrence(
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
                "2026-03-29T02:00:00Z"
            ))
        );
    }

    #[test]
    fn a_window_on_the_spring_forward_night_opens_once_at_the_end_of_the_gap() {
        let w = compile(&spec("30 1 * * *", "Europe/London", "2h", Some("15m")));
        assert_eq!(
            w.openings_between(utc("2026-03-28T12:00:00Z"), utc("2026-03-30T12:00:00Z"), 10),
            [
                occurrence(
                    "2026-03-29T01:00:00Z",
                    "2026-03-29T03:00:00Z",
                    "2026-03-29T02:45:00Z"
                ),
                occurrence(
                    "2026-03-30T00:30:00Z",
                    "2026-03-30T02:30:00Z",
                    "2026-03-30T02:15:00Z"
                ),
            ]
        );
        assert_eq!(
            w.open_at(utc("2026-03-29T00:59:59Z")),
            None,
            "not open before the gap ends"
        );
    }

    #[test]
    fn start_and_end_bound_the_openings_and_an_open_occurrence_outlives_the_end() {
        let mut s = spec("0 22 * * *", "Europe/London", "4h", None);
        s.start = Some("2026-06-10".into()); // midnight BST: 2026-06-09T23:00:00Z
        s.end = Some("2026-06-30T00:00:00Z".into());
        let w = compile(&s);
        let openings = w.openings_between(
            utc("2026-06-01T00:00:00Z"),
            utc("2026-08-01T00:00:00Z"),
            100,
        );
        assert_eq!(openings.len(), 20);
        assert_eq!(openings[0].opens, utc("2026-06-10T21:00:00Z"));
        assert_eq!(openings[19].opens, utc("2026-06-29T21:00:00Z"));
        // 9 June's opening (21:00) came before the start: it does not count.
        assert_eq!(w.open_at(utc("2026-06-09T23:30:00Z")), None);
        assert_eq!(
            w.next_opening(utc("2026-06-01T00:00:00Z")).map(|o| o.opens),
            Some(utc("2026-06-10T21:00:00Z"))
        );
        // The last occurrence opened before the end and stays open past it.
        assert_eq!(
            w.open_at(utc("2026-06-30T00:30:00Z")).map(|o| o.opens),
            Some(utc("2026-06-29T21:00:00Z"))
        );
        assert_eq!(w.next_opening(utc("2026-06-29T21:00:00Z")), None);
        assert_eq!(
            w.status(utc("2026-07-01T00:00:00Z")),
            WindowStatus {
                window: "sunday-night".into(),
                state: "closed",
                at: utc("2026-07-01T00:00:00Z"),
                opens_at: None,
                closes_at: None,
                last_start: None,
                remaining_seconds: None,
                next_transition: None,
            }
        );
    }

    #[test]
    fn a_disabled_window_is_never_open() {
        let mut s = spec("* * * * *", "UTC", "1h", None);
        s.enabled = false;
        let w = compile(&s);
        let at = utc("2026-06-01T12:00:00Z");
        assert!(!w.enabled());
        assert_eq!(w.open_at(at), None);
        assert_eq!(w.next_opening(at), None);
        assert_eq!(
            w.status(at),
            WindowStatus {
                window: "sunday-night".into(),
                state: "disabled",
                at,
                opens_at: None,
                closes_at: None,
                last_start: None,
                remaining_seconds: None,
                next_transition: None,
            }
        );
    }

    #[test]
    fn overlapping_occurrences_keep_the_window_open_until_the_last_closes() {
        let w = compile(&spec("0 0,1 * * *", "UTC", "90m", None));
        let status = w.status(utc("2026-06-01T00:30:00Z"));
        assert_eq!(status.closes_at, Some(utc("2026-06-01T01:30:00Z")));
        assert_eq!(status.next_transition, Some(utc("2026-06-01T02:30:00Z")));
        // Between 01:00 and 01:30 both are open: the later one is the one reported.
        assert_eq!(
            w.open_at(utc("2026-06-01T01:15:00Z")).map(|o| o.opens),
            Some(utc("2026-06-01T01:00:00Z"))
        );
        // Open all the time: no transition within the bound.
        let always = compile(&spec("0 * * * *", "UTC", "2h", None));
        assert_eq!(
            always.status(utc("2026-06-01T00:30:00Z")).next_transition,
            None
        );
    }

    #[test]
    fn describe_says_when_for_how_long_and_the_cutoff() {
        assert_eq!(
            sunday_night().describe(),
            "0 22 * * SUN Europe/London for 4h, cutoff 30m"
        );
        let mut s = spec("0 22 * * TUE#2", "Europe/London", "4h", None);
        s.offset_days = Some(2);
        s.end = Some("2027-01-01T00:00:00Z".into());
        s.enabled = false;
        assert_eq!(
            compile(&s).describe(),
            "0 22 * * TUE#2 Europe/London for 4h, opening 2 days after each fire, until 2027-01-01T00:00:00Z, disabled"
        );
    }

    #[test]
    fn config_errors_name_the_key_and_say_what_to_give() {
        let good = spec("0 22 * * SUN", "Europe/London", "4h", Some("30m"));
        let with = |change: &dyn Fn(&mut WindowSpec)| {
            let mut s = good.clone();
            change(&mut s);
            error(&s)
        };
        assert_eq!(
            with(&|s| s.timezone = Some("Mars/Olympus".into())),
            "/etc/opsbook.yaml: windows.nightly.timezone: \"Mars/Olympus\" is not an IANA time zone name (e.g. Europe/London)"
        );
        assert_eq!(
            with(&|s| s.schedule = "0 0 30 2 *".into()),
            "/etc/opsbook.yaml: windows.nightly.schedule: `0 0 30 2 *` matches no date, so it would never fire; check its day-of-month, month and day-of-week fields"
        );
        assert_eq!(
            with(&|s| s.duration = "4 hours".into()),
            "/etc/opsbook.yaml: windows.nightly.duration: `4 hours` is not a duration; write it like `30s`, `10m`, `2h`, `1d` or `1h30m`"
        );
        assert_eq!(
            with(&|s| s.duration = "0s".into()),
            "/etc/opsbook.yaml: windows.nightly.duration: `0s` is not a window length: give more than 0 and at most 7d (e.g. 4h)"
        );
        assert_eq!(
            with(&|s| s.duration = "8d".into()),
            "/etc/opsbook.yaml: windows.nightly.duration: `8d` is not a window length: give more than 0 and at most 7d (e.g. 4h)"
        );
        assert_eq!(
            with(&|s| s.cutoff = Some("4h".into())),
            "/etc/opsbook.yaml: windows.nightly.cutoff: `4h` is not shorter than the window's duration `4h`, so no step could ever start; give a shorter cutoff (e.g. 30m)"
        );
        assert_eq!(
            with(&|s| s.offset_days = Some(7)),
            "/etc/opsbook.yaml: windows.nightly.offset_days: 7 is out of range: a window opens 0 to 6 days after its schedule fires"
        );
        assert_eq!(
            with(&|s| s.start = Some("2026-13-01".into())),
            "/etc/opsbook.yaml: windows.nightly.start: \"2026-13-01\" is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a date (2026-01-01)"
        );
        assert_eq!(
            with(&|s| {
                s.start = Some("2026-02-01".into());
                s.end = Some("2026-01-01T00:00:00Z".into());
            }),
            "/etc/opsbook.yaml: windows.nightly.end: 2026-01-01T00:00:00+00:00 is not after start 2026-02-01T00:00:00+00:00, so the window would never open"
        );
    }

    fn settings(windows: BTreeMap<String, WindowSpec>) -> Settings {
        Settings {
            db: PathBuf::from("opsbook.db"),
            runbooks: PathBuf::from("runbooks"),
            scripts: None,
            reports_dir: None,
            config_file: Some(PathBuf::from("/srv/ops/opsbook.yaml")),
            config_base: PathBuf::from("/srv/ops"),
            operations: Operations {
                windows,
                ..Operations::default()
            },
        }
    }

    #[test]
    fn windows_from_settings_by_name() {
        let mut specs = BTreeMap::new();
        specs.insert("sunday-night".to_string(), sunday_night_spec());
        specs.insert(
            "patch".to_string(),
            spec("0 22 * * TUE#2", "UTC", "2h", None),
        );
        let windows = Windows::from_settings(&settings(specs.clone())).expect("valid");
        assert_eq!(windows.names(), ["patch", "sunday-night"]);
        assert!(!windows.is_empty());
        assert_eq!(
            windows.get("sunday-night").map(Window::describe),
            Some("0 22 * * SUN Europe/London for 4h, cutoff 30m".to_string())
        );
        assert_eq!(windows.iter().count(), 2);
        assert!(windows.get("nightly").is_none());
        assert!(Windows::from_settings(&settings(BTreeMap::new()))
            .expect("valid")
            .is_empty());

        specs.insert(
            "nightly".to_string(),
            spec("0 2 * * *", "Mars/Olympus", "1h", None),
        );
        assert_eq!(
            Windows::from_settings(&settings(specs))
                .expect_err("a bad zone")
                .to_string(),
            "/srv/ops/opsbook.yaml: windows.nightly.timezone: \"Mars/Olympus\" is not an IANA time zone name (e.g. Europe/London)"
        );
    }

    fn sunday_night_spec() -> WindowSpec {
        spec("0 22 * * SUN", "Europe/London", "4h", Some("30m"))
    }
}
