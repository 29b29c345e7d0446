//! Freeze calendars ([`Calendars`]): whether changes may start at an instant, and why not,
//! as AWS Change Calendar answers it ([`CalendarState`]).
//!
//! - A calendar **open by default** is closed while any of its events is in progress (a
//!   change freeze); one **closed by default** is open only while one of its events is in
//!   progress (change days).
//! - Several calendars combine: open only when all are open.
//! - `next_transition` is the first instant after `at` at which the combined state changes.
//!   Events that overlap or follow one another without a gap make one closed (or open)
//!   stretch. It is looked for at most [`HORIZON_DAYS`] ahead and is `None` beyond.
//! - No calendar configured: always open.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::ics::{self, Event, Span};
use crate::config::{Openness, Settings};
use crate::error::{Error, Result};

/// How far ahead the next transition is looked for.
pub const HORIZON_DAYS: i64 = 366;

/// How far back events are looked at to say since when a calendar is closed.
pub const LOOKBACK_DAYS: i64 = 366;

/// The word for "closed by default" in a [`FreezeReason`].
pub const CLOSED_BY_DEFAULT: &str = "closed by default";

/// One freeze calendar: an iCalendar file and whether it is open or closed by default.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub name: String,
    pub path: PathBuf,
    pub default: Openness,
    events: Vec<Event>,
}

/// The calendars the config file declares, in name order.
#[derive(Debug, Clone, Default)]
pub struct Calendars {
    calendars: Vec<Calendar>,
}

/// The calendars' combined state at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CalendarState {
    /// `open` or `closed`.
    pub state: &'static str,
    pub at: DateTime<Utc>,
    /// Why it is closed: each calendar that is closed and the event that closes it (or
    /// "closed by default").
    pub reasons: Vec<FreezeReason>,
    /// When the combined state next changes; `None` beyond [`HORIZON_DAYS`].
    pub next_transition: Option<DateTime<Utc>>,
    pub calendars: Vec<OneCalendarState>,
}

/// What closes one calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreezeReason {
    pub calendar: String,
    /// The event's `SUMMARY`, or "closed by default".
    pub event: String,
    /// The event's instance; for "closed by default", the end of the last event and the
    /// start of the next (`None`: not within a year).
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The event's `CATEGORIES`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// One calendar's own state at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OneCalendarState {
    pub calendar: String,
    /// `open` or `closed`: the state while no event is in progress.
    pub default: &'static str,
    pub state: &'static str,
    pub reason: Option<FreezeReason>,
    pub next_transition: Option<DateTime<Utc>>,
}

/// A stretch of time a calendar is closed; `None` is a bound not known within the span
/// looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stretch {
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Stretch {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= at) && self.until.is_none_or(|until| at < until)
    }
}

impl Calendars {
    /// Reads every calendar of `settings`; file paths are relative to the config file.
    pub fn from_settings(settings: &Settings) -> Result<Calendars> {
        let config = settings.config_name();
        let mut calendars = Vec::new();
        for (name, spec) in &settings.operations.calendars {
            let path = settings.config_path(&spec.file);
            let events = ics::read(&path).map_err(|e| match e {
                // The file could not be read at all: say which setting names it.
                Error::Calendar {
                    path,
                    line: None,
                    message,
                } => Error::Calendar {
                    path,
                    line: None,
                    message: format!("{message} (calendars.{name}.file in {config})"),
                },
                other => other,
            })?;
            calendars.push(Calendar {
                name: name.clone(),
                path,
                default: spec.default,
                events,
            });
        }
        Ok(Calendars { calendars })
    }

    /// The combined state at `at`.
    pub fn state_at(&self, at: DateTime<Utc>) -> CalendarState {
        let lo = at - TimeDelta::days(LOOKBACK_DAYS);
        let hi = at + TimeDelta::days(HORIZON_DAYS);
        let mut all_closed = Vec::new();
        let mut reasons = Vec::new();
        let mut states = Vec::new();
        for calendar in &self.calendars {
            let (closed, one) = calendar.state_at(at, lo, hi);
            if let Some(reason) = &one.reason {
                reasons.push(reason.clone());
            }
            all_closed.extend(closed);
            states.push(one);
        }
        let (closed, next_transition) = evaluate(merge(all_closed), at, hi);
        CalendarState {
            state: if closed { "closed" } else { "open" },
            at,
            reasons,
            next_transition,
            calendars: states,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }

    /// The file a calendar is read from.
    pub fn file_of(&self, name: &str) -> Option<&std::path::Path> {
        self.calendars
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.path.as_path())
    }
}

impl Calendar {
    /// The stretches this calendar is closed in `[lo, hi)` (merged), and its state at `at`.
    fn state_at(
        &self,
        at: DateTime<Utc>,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> (Vec<Stretch>, OneCalendarState) {
        let mut instances: Vec<(Span, &Event)> = self
            .events
            .iter()
            .flat_map(|event| event.spans(lo, hi).into_iter().map(move |s| (s, event)))
            .collect();
        instances.sort_by_key(|(span, _)| *span);
        let busy = merge(
            instances
                .iter()
                .map(|(span, _)| Stretch {
                    from: Some(span.start),
                    until: Some(span.end),
                })
                .collect(),
        );
        let closed = match self.default {
            Openness::Open => busy,
            Openness::Closed => complement(&busy),
        };
        let (is_closed, next_transition) = evaluate(closed.clone(), at, hi);
        let reason = match (is_closed, self.default) {
            (false, _) => None,
            // The event in progress that ends last; on a tie, the first in the file.
            (true, Openness::Open) => instances
                .iter()
                .filter(|(span, _)| span.start <= at && at < span.end)
                .fold(None, |best: Option<&(Span, &Event)>, current| match best {
                    Some(b) if b.0.end >= current.0.end => Some(b),
                    _ => Some(current),
                })
                .map(|(span, event)| FreezeReason {
                    calendar: self.name.clone(),
                    event: event.title(),
                    from: Some(span.start),
                    until: Some(span.end),
                    categories: event.categories.clone(),
                }),
            (true, Openness::Closed) => {
                closed
                    .iter()
                    .find(|s| s.contains(at))
                    .map(|s| FreezeReason {
                        calendar: self.name.clone(),
                        event: CLOSED_BY_DEFAULT.to_string(),
                        from: s.from,
                        until: s.until.filter(|until| *until < hi),
                        categories: Vec::new(),
                    })
            }
        };
        let state = OneCalendarState {
            calendar: self.name.clone(),
            default: match self.default {
                Openness::Open => "open",
                Openness::Closed => "closed",
            },
            state: if is_closed { "closed" } else { "open" },
            reason,
            next_transition,
        };
        (closed, state)
    }
}

/// Stretches sorted and merged: overlapping ones and ones that touch (one ends where the next
/// begins) become one.
fn merge(mut stretches: Vec<Stretch>) -> Vec<Stretch> {
    // `None` as a start is the earliest: Option orders None first.
    stretches.sort_by_key(|s| s.from);
    let mut merged: Vec<Stretch> = Vec::with_capacity(stretches.len());
    for s in stretches {
        match merged.last_mut() {
            // `None` as an end is the latest.
            Some(last)
                if last.until.is_none() || s.from.zip(last.until).is_some_and(|(f, u)| f <= u) =>
            {
                last.until = match (last.until, s.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push(s),
        }
    }
    merged
}

/// The time between merged busy stretches, open at both ends.
fn complement(busy: &[Stretch]) -> Vec<Stretch> {
    let mut gaps = Vec::with_capacity(busy.len() + 1);
    let mut from = None;
    for b in busy {
        if from.is_some() || b.from.is_some() {
            gaps.push(Stretch {
                from,
                until: b.from,
            });
        }
        match b.until {
            Some(until) => from = Some(until),
            None => return gaps,
        }
    }
    gaps.push(Stretch { from, until: None });
    gaps
}

/// Whether `at` falls in one of the merged `closed` stretches, and when that next changes
/// (`None` at or beyond `hi`).
fn evaluate(
    closed: Vec<Stretch>,
    at: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> (bool, Option<DateTime<Utc>>) {
    let within = |t: Option<DateTime<Utc>>| t.filter(|t| *t < hi);
    if let Some(now) = closed.iter().find(|s| s.contains(at)) {
        return (true, within(now.until));
    }
    let next = closed
        .iter()
        .filter_map(|s| s.from)
        .filter(|from| *from > at)
        .min();
    (false, within(next))
}

#[cfg(test)]
mod tests {
    use crate::calendar::utc;
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::config::{CalendarSpec, Operations};

    fn calendar(name: &str, default: Openness, events: &str) -> Calendar {
        let text = format!("BEGIN:VCALENDAR\n{events}END:VCALENDAR\n");
        Calendar {
            name: name.into(),
            path: PathBuf::from(format!("{name}.ics")),
            default,
            events: ics::parse(&text, Path::new("test.ics")).expect("a valid calendar"),
        }
    }

    fn event(summary: &str, start: &str, end: &str) -> String {
        format!("BEGIN:VEVENT\nSUMMARY:{summary}\nDTSTART:{start}\nDTEND:{end}\nEND:VEVENT\n")
    }

    fn holidays() -> Calendar {
        calendar(
            "holidays",
            Openness::Open,
            &event("Christmas freeze", "20261224T000000Z", "20261227T000000Z"),
        )
    }

    /// Open only 08:00-18:00 UTC each day of December 2026.
    fn change_days() -> Calendar {
        calendar(
            "change-days",
            Openness::Closed,
            "BEGIN:VEVENT\nSUMMARY:Change hours\nDTSTART:20261201T080000Z\nDTEND:20261201T180000Z\nRRULE:FREQ=DAILY;UNTIL=20261231T235959Z\nEND:VEVENT\n",
        )
    }

    fn both() -> Calendars {
        Calendars {
            calendars: vec![change_days(), holidays()],
        }
    }

    fn one(
        calendar: &str,
        default: &'static str,
        reason: Option<FreezeReason>,
        next: Option<&str>,
    ) -> OneCalendarState {
        OneCalendarState {
            calendar: calendar.into(),
            default,
            state: if reason.is_some() { "closed" } else { "open" },
            reason,
            next_transition: next.map(utc),
        }
    }

    fn reason(
        calendar: &str,
        event: &str,
        from: Option<&str>,
        until: Option<&str>,
    ) -> FreezeReason {
        FreezeReason {
            calendar: calendar.into(),
            event: event.into(),
            from: from.map(utc),
            until: until.map(utc),
            categories: Vec::new(),
        }
    }

    #[test]
    fn open_while_every_calendar_is_open_until_the_first_closes() {
        let at = utc("2026-12-22T12:00:00Z");
        assert_eq!(
            both().state_at(at),
            CalendarState {
                state: "open",
                at,
                reasons: vec![],
                next_transition: Some(utc("2026-12-22T18:00:00Z")),
                calendars: vec![
                    one("change-days", "closed", None, Some("2026-12-22T18:00:00Z")),
                    one("holidays", "open", None, Some("2026-12-24T00:00:00Z")),
                ],
            }
        );
    }

    #[test]
    fn a_calendar_closed_by_default_closes_between_its_events() {
        let at = utc("2026-12-22T20:00:00Z");
        let closed = reason(
            "change-days",
            "closed by default",
            Some("2026-12-22T18:00:00Z"),
            Some("2026-12-23T08:00:00Z"),
        );
        assert_eq!(
            both().state_at(at),
            CalendarState {
                state: "closed",
                at,
                reasons: vec![closed.clone()],
                next_transition: Some(utc("2026-12-23T08:00:00Z")),
                calendars: vec![
                    one(
                        "change-days",
                        "closed",
                        Some(closed),
                        Some("2026-12-23T08:00:00Z")
                    ),
                    one("holidays", "open", None, Some("2026-12-24T00:00:00Z")),
                ],
            }
        );
    }

    #[test]
    fn a_freeze_and_the_nights_around_it_make_one_closed_stretch() {
        let at = utc("2026-12-25T12:00:00Z");
        let christmas = reason(
            "holidays",
            "Christmas freeze",
            Some("2026-12-24T00:00:00Z"),
            Some("2026-12-27T00:00:00Z"),
        );
        // Closed from 23 Dec 18:00 (change hours end) through the freeze, whose end on
        // the 27th at 00:00 falls in the night: open again at 08:00.
        assert_eq!(
            both().state_at(at),
            CalendarState {
                state: "closed",
                at,
                reasons: vec![christmas.clone()],
                next_transition: Some(utc("2026-12-27T08:00:00Z")),
                calendars: vec![
                    one("change-days", "closed", None, Some("2026-12-25T18:00:00Z")),
                    one(
                        "holidays",
                        "open",
                        Some(christmas.clone()),
                        Some("2026-12-27T00:00:00Z")
                    ),
                ],
            }
        );
        let night = utc("2026-12-26T20:00:00Z");
        assert_eq!(
            both().state_at(night).reasons,
            [
                reason(
                    "change-days",
                    "closed by default",
                    Some("2026-12-26T18:00:00Z"),
                    Some("2026-12-27T08:00:00Z")
                ),
                christmas,
            ]
        );
    }

    #[test]
    fn back_to_back_and_overlapping_events_merge_in_next_transition() {
        let calendars = Calendars {
            calendars: vec![calendar(
                "holidays",
                Openness::Open,
                &[
                    event("Christmas freeze", "20261224T000000Z", "20261227T000000Z"),
                    event("Year-end freeze", "20261227T000000Z", "20270103T000000Z"),
                    event("Audit", "20270102T000000Z", "20270105T000000Z"),
                ]
                .concat(),
            )],
        };
        let state = calendars.state_at(utc("2026-12-25T00:00:00Z"));
        assert_eq!(state.state, "closed");
        assert_eq!(state.next_transition, Some(utc("2027-01-05T00:00:00Z")));
        assert_eq!(
            state.reasons,
            [reason(
                "holidays",
                "Christmas freeze",
                Some("2026-12-24T00:00:00Z"),
                Some("2026-12-27T00:00:00Z")
            )]
        );
        // Where two are in progress, the reason is the one that ends last.
        assert_eq!(
            calendars.state_at(utc("2027-01-02T12:00:00Z")).reasons,
            [reason(
                "holidays",
                "Audit",
                Some("2027-01-02T00:00:00Z"),
                Some("2027-01-05T00:00:00Z")
            )]
        );
        let before = calendars.state_at(utc("2026-12-01T00:00:00Z"));
        assert_eq!(before.state, "open");
        assert_eq!(before.next_transition, Some(utc("2026-12-24T00:00:00Z")));
    }

    #[test]
    fn no_calendars_is_always_open() {
        let at = utc("2026-12-25T00:00:00Z");
        let calendars = Calendars::default();
        assert!(calendars.is_empty());
        assert_eq!(
            calendars.state_at(at),
            CalendarState {
                state: "open",
                at,
                reasons: vec![],
                next_transition: None,
                calendars: vec![],
            }
        );
    }

    #[test]
    fn transitions_beyond_a_year_are_not_looked_for() {
        let far = Calendars {
            calendars: vec![calendar(
                "far",
                Openness::Open,
                &event("Migration", "20280101T000000Z", "20280102T000000Z"),
            )],
        };
        let state = far.state_at(utc("2026-06-01T00:00:00Z"));
        assert_eq!((state.state, state.next_transition), ("open", None));

        let never = Calendars {
            calendars: vec![calendar("never", Openness::Closed, "")],
        };
        assert_eq!(
            never.state_at(utc("2026-06-01T00:00:00Z")).reasons,
            [reason("never", "closed by default", None, None)]
        );
    }

    fn settings(base: PathBuf, calendars: BTreeMap<String, CalendarSpec>) -> Settings {
        Settings {
            db: PathBuf::from("opsbook.db"),
            runbooks: PathBuf::from("runbooks"),
            scripts: None,
            reports_dir: None,
            config_file: Some(base.join("opsbook.yaml")),
            config_base: base,
            operations: Operations {
                calendars,
                ..Operations::default()
            },
        }
    }

    #[test]
    fn calendars_from_settings_read_files_relative_to_the_config() {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut specs = BTreeMap::new();
        specs.insert(
            "holidays".to_string(),
            CalendarSpec {
                file: PathBuf::from("calendars/holidays.ics"),
                default: Openness::Open,
            },
        );
        let calendars = Calendars::from_settings(&settings(base.clone(), specs.clone()))
            .expect("a valid calendar");
        assert!(calendars.file_of("holidays").is_some());
        let state = calendars.state_at(utc("2026-12-25T12:00:00Z"));
        assert_eq!(
            state.reasons,
            [FreezeReason {
                categories: vec!["FREEZE".into()],
                ..reason(
                    "holidays",
                    "Christmas change freeze",
                    Some("2026-12-24T00:00:00Z"),
                    Some("2026-12-28T00:00:00Z")
                )
            }]
        );
        assert_eq!(state.next_transition, Some(utc("2026-12-28T00:00:00Z")));
        assert_eq!(
            calendars.state_at(utc("2026-12-18T16:00:00Z")).reasons,
            [reason(
                "holidays",
                "No deploys on Friday afternoons, please",
                Some("2026-12-18T15:00:00Z"),
                Some("2026-12-18T23:59:00Z")
            )]
        );

        specs.insert(
            "missing".to_string(),
            CalendarSpec {
                file: PathBuf::from("calendars/missing.ics"),
                default: Openness::Open,
            },
        );
        let message = Calendars::from_settings(&settings(base.clone(), specs))
            .expect_err("a missing file")
            .to_string();
        let path = base.join("calendars/missing.ics");
        assert!(
            message.starts_with(&format!(
                "{}: cannot read the calendar file: ",
                path.display()
            )),
            "{message}"
        );
        assert!(
            message.ends_with(&format!(
                " (calendars.missing.file in {})",
                base.join("opsbook.yaml").display()
            )),
            "{message}"
        );
    }
}
