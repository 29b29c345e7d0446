//! Reading freeze calendars: the subset of iCalendar (RFC 5545) that says when events happen.
//!
//! Read: the `VEVENT`s of a file that begins with `BEGIN:VCALENDAR`; in each, `DTSTART`,
//! `DTEND` or `DURATION`, `RRULE`, `EXDATE`, `RECURRENCE-ID`, `STATUS`, `SUMMARY`,
//! `CATEGORIES` and `UID`. Other components (`VTIMEZONE`, `VTODO`, `VALARM`, ...) and other
//! properties (`RDATE` among them) are skipped. Lines are unfolded (a line break followed by a
//! space or a tab continues the line, after CRLF or LF), and parameters read
//! (`DTSTART;TZID=Europe/London:20261224T000000`, `DTSTART;VALUE=DATE:20261224`).
//!
//! Times:
//! - `...Z` is UTC; with `TZID` it is that IANA zone's wall clock (a `VTIMEZONE` in the file is
//!   not read: the name must be an IANA one). A wall-clock time that happens twice is the
//!   first; one that does not exist is read with the offset from before the gap (RFC 5545
//!   3.3.5: New York's 02:30 on the spring-forward night is 03:30 EDT).
//! - **Floating** times (no `Z`, no `TZID`) and **dates** are taken in UTC: an all-day event on
//!   24 December is closed from 00:00 to 24:00 UTC.
//! - An event ends at `DTEND`, or `DURATION` after its start (`P1D`, `PT4H`, `P1DT12H`, `P2W`;
//!   days and weeks are calendar days of the event's zone, hours to seconds exact time). A
//!   date `DTSTART` without either lasts one day; a date-time one lasts no time at all.
//!   A `DTEND` in the zone of `DTSTART` keeps its wall-clock distance in every instance of a
//!   recurring event (Friday 18:00 to Monday 08:00 stays that across a clock change, as
//!   calendar programs show it); one in another zone is an exact length.
//!
//! Recurrences: `RRULE`s are expanded with the `rrule` crate; `DTSTART` is always the first
//! instance; `EXDATE`s (several properties, comma lists) remove instances; a `VEVENT` with a
//! `RECURRENCE-ID` replaces that instance of the event with its `UID`. `STATUS:CANCELLED`
//! events close nothing. Expansion is bounded: an event's instances are looked at up to the
//! end of the span asked about, at most [`MAX_INSTANCES_LOOKED_AT`] of them (a rule firing
//! every minute for years is not a freeze calendar).

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use rrule::{RRule, RRuleSet, Unvalidated};

use crate::error::{Error, Result};
use crate::sys::files::read_capped;

/// A calendar file is at most 4 MiB.
pub const MAX_ICS_BYTES: u64 = 4 * 1024 * 1024;

/// The most instances of one event looked at for one question.
pub const MAX_INSTANCES_LOOKED_AT: usize = 100_000;

/// One `VEVENT` (a recurring one stands for all its instances).
#[derive(Debug, Clone)]
pub struct Event {
    pub uid: Option<String>,
    /// `SUMMARY`, unescaped.
    pub summary: Option<String>,
    pub categories: Vec<String>,
    /// The line of its `BEGIN:VEVENT`.
    pub line: usize,
    start: Moment,
    end: Length,
    /// The rules, expanded from `DTSTART`; `None` for a single event.
    recurrence: Option<RRuleSet>,
    exdates: BTreeSet<DateTime<Utc>>,
    /// The instance of another event (same `UID`) this one replaces.
    recurrence_id: Option<DateTime<Utc>>,
    cancelled: bool,
}

/// One instance of an event: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A `DTSTART`-like value: a wall-clock time in a zone (UTC for `Z`, floating and dates).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Moment {
    tz: Tz,
    wall: NaiveDateTime,
    date: bool,
}

/// How an instance's end follows from its start: `wall` on the wall clock of the event's zone,
/// then `exact` real time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Length {
    wall: TimeDelta,
    exact: TimeDelta,
}

impl Event {
    /// `SUMMARY`, or where the event is when it has none.
    pub fn title(&self) -> String {
        self.summary
            .clone()
            .unwrap_or_else(|| format!("untitled event (line {})", self.line))
    }

    /// The instances that overlap `[from, to)`: starting before `to` and ending after
    /// `from`, oldest first. Zero-length instances and cancelled events have none.
    pub fn spans(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        let mut spans = Vec::new();
        if self.cancelled {
            return spans;
        }
        let Some(first) = self.start.instant() else {
            return spans;
        };
        let mut consider = |start: DateTime<Utc>| {
            if self.exdates.contains(&start) {
                return;
            }
            if let Some(end) = self.end_of(start) {
                if start < to && end > from && end > start {
                    spans.push(Span { start, end });
                }
            }
        };
        consider(first);
        let Some(set) = &self.recurrence else {
            return spans;
        };
        for start in set.into_iter().take(MAX_INSTANCES_LOOKED_AT) {
            let start = start.with_timezone(&Utc);
            if start >= to {
                break;
            }
            if start != first {
                consider(start);
            }
        }
        spans
    }

    /// The end of the instance starting at `start`.
    fn end_of(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.start.tz;
        let wall = start
            .with_timezone(&tz)
            .naive_local()
            .checked_add_signed(self.end.wall)?;
        resolve(tz, wall)?.checked_add_signed(self.end.exact)
    }
}

/// Reads the calendar file at `path` (at most [`MAX_ICS_BYTES`]).
pub fn read(path: &Path) -> Result<Vec<Event>> {
    let bad = |line: Option<usize>, message: String| Error::Calendar {
        path: path.to_path_buf(),
        line,
        message,
    };
    let bytes = read_capped(path, MAX_ICS_BYTES)
        .map_err(|problem| bad(None, problem.describe("the calendar file")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| bad(None, "the calendar file is not UTF-8 text".into()))?;
    parse(&text, path)
}

/// Reads the events of the iCalendar text `text`; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Event>> {
    let bad = |line: usize, message: String| Error::Calendar {
        path: path.to_path_buf(),
        line: Some(line),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = unfold(text);
    match lines.first() {
        Some((_, first)) if first.eq_ignore_ascii_case("BEGIN:VCALENDAR") => {}
        Some((line, _)) => {
            return Err(bad(
                *line,
                "not an iCalendar file: it does not begin with BEGIN:VCALENDAR".into(),
            ))
        }
        None => {
            return Err(bad(
                1,
                "not an iCalendar file: it is empty, and a calendar begins with BEGIN:VCALENDAR"
                    .into(),
            ))
        }
    }

    let mut open: Vec<(String, usize)> = Vec::new(); // component names and their lines
    let mut events = Vec::new();
    let mut event: Option<Draft> = None;
    for (number, text) in &lines {
        let number = *number;
        let property = Property::parse(text).map_err(|m| bad(number, m))?;
        match property.name.as_str() {
            "BEGIN" => {
                let component = property.value.to_ascii_uppercase();
                if open.is_empty() && component != "VCALENDAR" {
                    return Err(bad(
                        number,
                        format!("BEGIN:{component} outside BEGIN:VCALENDAR ... END:VCALENDAR"),
                    ));
                }
                if component == "VEVENT" && open.len() == 1 {
                    event = Some(Draft::new(number));
                }
                open.push((component, number));
            }
            "END" => {
                let component = property.value.to_ascii_uppercase();
                match open.pop() {
                    Some((begun, _)) if begun == component => {}
                    Some((begun, line)) => {
                        return Err(bad(
                            number,
                            format!("END:{component} does not close BEGIN:{begun} of line {line}"),
                        ))
                    }
                    None => {
                        return Err(bad(
                            number,
                            format!("END:{component} without a BEGIN:{component}"),
                        ))
                    }
                }
                if component == "VEVENT" && open.len() == 1 {
                    if let Some(draft) = event.take() {
                        events.push(draft.finish().map_err(|(line, m)| bad(line, m))?);
                    }
                }
            }
            _ if open.is_empty() => {
                return Err(bad(
                    number,
                    format!(
                        "{} outside BEGIN:VCALENDAR ... END:VCALENDAR",
                        property.name
                    ),
                ))
            }
            // A property of the event itself, not of an alarm inside it.
            _ if open.len() == 2 && open[1].0 == "VEVENT" => {
                if let Some(draft) = event.as_mut() {
                    draft.take(&property, number).map_err(|m| bad(number, m))?;
                }
            }
            _ => {}
        }
    }
    if let Some((component, line)) = open.pop() {
        return Err(bad(
            line,
            format!("BEGIN:{component} is never closed (END:{component} is missing)"),
        ));
    }

    // An instance moved or cancelled by a RECURRENCE-ID event is no longer the rule's.
    let replaced: Vec<(String, DateTime<Utc>)> = events
        .iter()
        .filter_map(|e| Some((e.uid.clone()?, e.recurrence_id?)))
        .collect();
    for (uid, instance) in replaced {
        for master in events.iter_mut() {
            if master.recurrence_id.is_none() && master.uid.as_deref() == Some(uid.as_str()) {
                master.exdates.insert(instance);
            }
        }
    }
    Ok(events)
}

/// Logical lines with the number of the physical line each begins on; blank lines dropped.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some((_, line))) => line.push_str(rest),
            _ if raw.trim().is_empty() => {}
            _ => lines.push((index + 1, raw.to_string())),
        }
    }
    lines
}

/// One content line: `NAME;PARAM=VALUE:VALUE`.
struct Property {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Property {
    fn parse(line: &str) -> std::result::Result<Property, String> {
        let not_a_property = || {
            format!(
                "`{}` is not an iCalendar property (NAME:VALUE or NAME;PARAM=VALUE:VALUE)",
                shorten(line)
            )
        };
        let name_end = line.find([';', ':']).ok_or_else(not_a_property)?;
        let name = line[..name_end].trim().to_ascii_uppercase();
        if name.is_empty() {
            return Err(not_a_property());
        }
        let mut params = Vec::new();
        let mut rest = &line[name_end..];
        while let Some(after) = rest.strip_prefix(';') {
            let eq = after.find('=').ok_or_else(not_a_property)?;
            let param = after[..eq].trim().to_ascii_uppercase();
            let mut value = String::new();
            let mut tail = &after[eq + 1..];
            // A value, or several separated by commas, each possibly quoted.
            loop {
                if let Some(quoted) = tail.strip_prefix('"') {
                    let close = quoted.find('"').ok_or_else(not_a_property)?;
                    value.push_str(&quoted[..close]);
                    tail = &quoted[close + 1..];
                } else {
                    let stop = tail.find([',', ';', ':']).unwrap_or(tail.len());
                    value.push_str(&tail[..stop]);
                    tail = &tail[stop..];
                }
                match tail.strip_prefix(',') {
                    Some(more) => {
                        value.push(',');
                        tail = more;
                    }
                    None => break,
                }
            }
            params.push((param, value));
            rest = tail;
        }
        let value = rest.strip_prefix(':').ok_or_else(not_a_property)?;
        Ok(Property {
            name,
            params,
            value: value.to_string(),
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An event being read.
struct Draft {
    line: usize,
    uid: Option<String>,
    summary: Option<String>,
    categories: Vec<String>,
    start: Option<Moment>,
    /// DTEND, with its line.
    dtend: Option<(Moment, usize)>,
    /// DURATION: calendar days, exact time.
    duration: Option<(TimeDelta, TimeDelta)>,
    rrules: Vec<(String, usize)>,
    exdates: Vec<DateTime<Utc>>,
    recurrence_id: Option<DateTime<Utc>>,
    cancelled: bool,
}

impl Draft {
    fn new(line: usize) -> Self {
        Draft {
            line,
            uid: None,
            summary: None,
            categories: Vec::new(),
            start: None,
            dtend: None,
            duration: None,
            rrules: Vec::new(),
            exdates: Vec::new(),
            recurrence_id: None,
            cancelled: false,
        }
    }

    fn take(&mut self, property: &Property, line: usize) -> std::result::Result<(), String> {
        let name = property.name.as_str();
        match name {
            "DTSTART" => {
                if self.start.is_some() {
                    return Err("a second DTSTART in one VEVENT".into());
                }
                self.start = Some(moment(property)?);
            }
            "DTEND" | "DURATION" if self.dtend.is_some() || self.duration.is_some() => {
                return Err(format!(
                    "{name}: a VEVENT ends by DTEND or by DURATION, once, not both"
                ));
            }
            "DTEND" => self.dtend = Some((moment(property)?, line)),
            "DURATION" => {
                self.duration = Some(duration(&property.value)?);
            }
            "RRULE" => self.rrules.push((property.value.clone(), line)),
            "EXDATE" => {
                for value in property.value.split(',') {
                    let one = Property {
                        name: property.name.clone(),
                        params: property.params.clone(),
                        value: value.trim().to_string(),
                    };
                    let m = moment(&one)?;
                    self.exdates
                        .push(m.instant().ok_or_else(|| out_of_range(&one))?);
                }
            }
            "RECURRENCE-ID" => {
                let m = moment(property)?;
                self.recurrence_id = Some(m.instant().ok_or_else(|| out_of_range(property))?);
            }
            "STATUS" => self.cancelled = property.value.trim().eq_ignore_ascii_case("CANCELLED"),
            "SUMMARY" => self.summary = Some(unescape(&property.value)),
            "UID" => self.uid = Some(property.value.trim().to_string()),
            "CATEGORIES" => self.categories.extend(
                split_unescaped(&property.value)
                    .into_iter()
                    .map(|c| unescape(c).trim().to_string())
                    .filter(|c| !c.is_empty()),
            ),
            _ => {}
        }
        Ok(())
    }

    /// The event, or the line and message of what is wrong with it.
    fn finish(self) -> std::result::Result<Event, (usize, String)> {
        let start = self.start.ok_or_else(|| {
            (
                self.line,
                "this VEVENT has no DTSTART; give each event a start, e.g. DTSTART:20261224T000000Z"
                    .to_string(),
            )
        })?;
        let first = start.instant().ok_or_else(|| {
            (
                self.line,
                "this VEVENT's DTSTART is out of the range of dates opsbook handles".to_string(),
            )
        })?;
        let end = match (self.dtend, self.duration) {
            (Some((dtend, line)), _) => {
                let same_clock = dtend.tz == start.tz && dtend.date == start.date;
                let length = if same_clock {
                    Length {
                        wall: dtend.wall - start.wall,
                        exact: TimeDelta::zero(),
                    }
                } else {
                    let end = dtend.instant().ok_or_else(|| {
                        (
                            line,
                            "DTEND is out of the range of dates opsbook handles".into(),
                        )
                    })?;
                    Length {
                        wall: TimeDelta::zero(),
                        exact: end - first,
                    }
                };
                if length.wall < TimeDelta::zero() || length.exact < TimeDelta::zero() {
                    return Err((
                        line,
                        format!("DTEND {} is before DTSTART {}", show(&dtend), show(&start)),
                    ));
                }
                length
            }
            (None, Some((wall, exact))) => Length { wall, exact },
            (None, None) if start.date => Length {
                wall: TimeDelta::days(1),
                exact: TimeDelta::zero(),
            },
            (None, None) => Length {
                wall: TimeDelta::zero(),
                exact: TimeDelta::zero(),
            },
        };

        let recurrence = if self.rrules.is_empty() {
            None
        } else {
            let dtstart = first.with_timezone(&rrule::Tz::Tz(start.tz));
            let mut set = RRuleSet::new(dtstart).limit();
            for (text, line) in &self.rrules {
                set = set.rrule(rule(text, &start, dtstart).map_err(|m| (*line, m))?);
            }
            Some(set)
        };

        Ok(Event {
            uid: self.uid,
            summary: self.summary,
            categories: self.categories,
            line: self.line,
            start,
            end,
            recurrence,
            exdates: self.exdates.into_iter().collect(),
            recurrence_id: self.recurrence_id,
            cancelled: self.cancelled,
        })
    }
}

/// An `RRULE` value checked against the event's start. `UNTIL` is read here rather than by
/// the `rrule` crate, which would take a time without `Z` in the machine's own zone: a date
/// means the end of that day, a time without `Z` the event's zone.
fn rule(
    text: &str,
    start: &Moment,
    dtstart: DateTime<rrule::Tz>,
) -> std::result::Result<RRule, String> {
    let rejected = |e: rrule::RRuleError| format!("RRULE {}: {e}", text.trim());
    let mut until = None;
    let mut parts = Vec::new();
    for part in text.trim().split(';') {
        match part.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("UNTIL") => {
                let value = value.trim();
                let (wall, date) = wall_clock(value)
                    .ok_or_else(|| format!("RRULE {}: UNTIL {}", text.trim(), not_a_date(value)))?;
                let instant = if value.ends_with(['Z', 'z']) {
                    Some(Utc.from_utc_datetime(&wall))
                } else if date {
                    // The whole day: every instance that starts on it.
                    resolve(start.tz, wall + TimeDelta::days(1)).map(|t| t - TimeDelta::seconds(1))
                } else {
                    resolve(start.tz, wall)
                };
                until = Some(instant.ok_or_else(|| {
                    format!(
                        "RRULE {}: UNTIL is out of the range of dates opsbook handles",
                        text.trim()
                    )
                })?);
            }
            _ => parts.push(part),
        }
    }
    let mut parsed: RRule<Unvalidated> = parts.join(";").parse().map_err(rejected)?;
    if let Some(until) = until {
        parsed = parsed.until(until.with_timezone(&rrule::Tz::UTC));
    }
    parsed.validate(dtstart).map_err(rejected)
}

impl Moment {
    fn instant(&self) -> Option<DateTime<Utc>> {
        resolve(self.tz, self.wall)
    }
}

/// The instant a wall-clock time of `tz` names, as RFC 5545 reads one: the first of two, and
/// one in a gap with the offset from before the gap.
fn resolve(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = tz.from_local_datetime(&wall).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    // The offset before the gap is the one of the last wall-clock minute that exists before
    // it; gaps last hours, at most a day.
    let mut before = wall;
    for _ in 0..=24 * 60 {
        before = before.checked_sub_signed(TimeDelta::minutes(1))?;
        if let Some(t) = tz.from_local_datetime(&before).earliest() {
            let offset = t.naive_local() - t.naive_utc();
            return Some(Utc.from_utc_datetime(&(wall - offset)));
        }
    }
    None
}

/// A `DTSTART`, `DTEND`, `EXDATE` or `RECURRENCE-ID` value with its `TZID` and `VALUE`.
fn moment(property: &Property) -> std::result::Result<Moment, String> {
    let value = property.value.trim();
    let (wall, date) =
        wall_clock(value).ok_or_else(|| format!("{} {}", property.name, not_a_date(value)))?;
    if property
        .param("VALUE")
        .is_some_and(|v| v.eq_ignore_ascii_case("DATE"))
        && !date
    {
        return Err(format!(
            "{} \"{value}\" has a time, but VALUE=DATE says it is a date (write 20261224)",
            property.name
        ));
    }
    let utc = value.ends_with(['Z', 'z']);
    let tz = match property.param("TZID") {
        Some(name) if !utc && !date => name.trim().parse::<Tz>().map_err(|_| {
            format!("unknown TZID \"{name}\": name an IANA time zone (e.g. Europe/London)")
        })?,
        _ => Tz::UTC,
    };
    Ok(Moment { tz, wall, date })
}

/// `20261224` (a date: midnight, `true`), `20261224T180000` or `20261224T180000Z`.
fn wall_clock(value: &str) -> Option<(NaiveDateTime, bool)> {
    let value = value.strip_suffix(['Z', 'z']).unwrap_or(value);
    if value.len() == 8 {
        let date = NaiveDate::parse_from_str(value, "%Y%m%d").ok()?;
        return Some((date.and_time(NaiveTime::MIN), true));
    }
    if value.len() != 15 {
        return None;
    }
    let wall = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok()?;
    Some((wall, false))
}

fn not_a_date(value: &str) -> String {
    format!(
        "\"{value}\" is not an iCalendar date or date-time (20261224, 20261224T180000, or 20261224T180000Z for UTC)"
    )
}

fn out_of_range(property: &Property) -> String {
    format!(
        "{} \"{}\" is out of the range of dates opsbook handles",
        property.name, property.value
    )
}

/// An RFC 5545 duration: calendar days (weeks and days) and exact time (hours, minutes,
/// seconds).
fn duration(text: &str) -> std::result::Result<(TimeDelta, TimeDelta), String> {
    let text = text.trim();
    let value = text.to_ascii_uppercase();
    let bad = || {
        format!("DURATION \"{text}\" is not an iCalendar duration (e.g. P1D, PT4H, P1DT12H, P2W)")
    };
    if value.starts_with('-') {
        return Err(format!(
            "DURATION \"{text}\" is negative: an event cannot end before it starts"
        ));
    }
    let value = value.strip_prefix('+').unwrap_or(&value);
    let mut rest = value.strip_prefix('P').ok_or_else(bad)?;
    let (mut days, mut seconds) = (0i64, 0i64);
    let mut in_time = false;
    let mut any = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('T') {
            if in_time {
                return Err(bad());
            }
            in_time = true;
            rest = after;
            continue;
        }
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let mut after = rest[digits..].chars();
        let unit = after.next();
        let (per_day, per_second) = match (unit, in_time) {
            (Some('W'), false) => (7, 0),
            (Some('D'), false) => (1, 0),
            (Some('H'), true) => (0, 3600),
            (Some('M'), true) => (0, 60),
            (Some('S'), true) => (0, 1),
            _ => return Err(bad()),
        };
        days = number
            .checked_mul(per_day)
            .and_then(|d| d.checked_add(days))
            .ok_or_else(bad)?;
        seconds = number
            .checked_mul(per_second)
            .and_then(|s| s.checked_add(seconds))
            .ok_or_else(bad)?;
        any = true;
        rest = after.as_str();
    }
    let too_long = || format!("DURATION \"{text}\" is too long for opsbook");
    if !any {
        return Err(bad());
    }
    Ok((
        TimeDelta::try_days(days).ok_or_else(too_long)?,
        TimeDelta::try_seconds(seconds).ok_or_else(too_long)?,
    ))
}

/// `SUMMARY` text: `\,` `\;` `\\` and `\n` (or `\N`) undone.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A list value split at its commas, but not at escaped ones (`\,`).
fn split_unescaped(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut begin = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                parts.push(&text[begin..i]);
                begin = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[begin..]);
    parts
}

fn show(m: &Moment) -> String {
    if m.date {
        m.wall.format("%Y%m%d").to_string()
    } else if m.tz == Tz::UTC {
        m.wall.format("%Y%m%dT%H%M%S").to_string()
    } else {
        format!("{} {}", m.wall.format("%Y%m%dT%H%M%S"), m.tz.name())
    }
}

/// A line cut for a message.
fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::utc;

    /// A calendar around `events` (CRLF line ends, as RFC 5545 writes them).
    fn calendar(events: &str) -> String {
        format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
    }

    fn events(text: &str) -> Vec<Event> {
        parse(text, Path::new("freeze.ics")).expect("a valid calendar")
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("freeze.ics"))
            .expect_err("an invalid calendar")
            .to_string()
    }

    /// Every instance in 2020-2030, as RFC 3339 pairs.
    fn spans(event: &Event) -> Vec<(String, String)> {
        event
            .spans(utc("2020-01-01T00:00:00Z"), utc("2030-01-01T00:00:00Z"))
            .into_iter()
            .map(|s| (s.start.to_rfc3339(), s.end.to_rfc3339()))
            .collect()
    }

    fn pair(start: &str, end: &str) -> (String, String) {
        (start.to_string(), end.to_string())
    }

    #[test]
    fn folded_lines_escaped_text_categories_and_uid() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             UID:freeze-1@example.com\n\
             DTSTART:20261224T000000Z\n\
             DTEND:20261227T000000Z\n\
             SUMMARY:Christmas freeze\\, all\n \\; sites\\nno deploys \\\\o/\n\
             CATEGORIES:FREEZE,Change\\, control\n\
             CATEGORIES:holiday\n\
             X-UNKNOWN;X-PARAM=\"a:b;c\":ignored\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.uid.as_deref(), Some("freeze-1@example.com"));
        assert_eq!(
            e.summary.as_deref(),
            Some("Christmas freeze, all; sites\nno deploys \\o/")
        );
        assert_eq!(e.categories, ["FREEZE", "Change, control", "holiday"]);
        assert_eq!(e.line, 4);
        assert_eq!(
            spans(e),
            [pair(
                "2026-12-24T00:00:00+00:00",
                "2026-12-27T00:00:00+00:00"
            )]
        );
    }

    #[test]
    fn a_tab_continues_a_line_and_lf_line_ends_work_too() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026\n\t1224T000000Z\nSUMMARY:A\n\t B\nEND:VEVENT\nEND:VCALENDAR\n";
        let e = &events(text)[0];
        assert_eq!(e.summary.as_deref(), Some("A B"));
        assert_eq!(
            spans(e),
            Vec::<(String, String)>::new(),
            "a date-time start without an end lasts no time"
        );
        assert_eq!(e.start.instant(), Some(utc("2026-12-24T00:00:00Z")));
    }

    #[test]
    fn tzid_times_are_that_zones_wall_clock() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             DTSTART;TZID=Europe/London:20261224T180000\n\
             DTEND;TZID=\"Europe/London\":20261227T080000\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             DTSTART;TZID=America/New_York:20260701T090000\n\
             DTEND:20260701T150000Z\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(
            spans(&events[0]),
            [pair(
                "2026-12-24T18:00:00+00:00",
                "2026-12-27T08:00:00+00:00"
            )]
        );
        assert_eq!(
            spans(&events[1]),
            [pair(
                "2026-07-01T13:00:00+00:00",
                "2026-07-01T15:00:00+00:00"
            )]
        );
    }

    #[test]
    fn a_tzid_time_in_the_gap_takes_the_offset_from_before_it() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             DTSTART;TZID=America/New_York:20260308T023000\n\
             DURATION:PT1H\n\
             END:VEVENT\n",
        );
        // RFC 5545 3.3.5: 02:30 read as EST is 07:30 UTC (03:30 EDT).
        assert_eq!(
            spans(&events(&text)[0]),
            [pair(
                "2026-03-08T07:30:00+00:00",
                "2026-03-08T08:30:00+00:00"
            )]
        );
    }

    #[test]
    fn dates_are_whole_utc_days_and_floating_times_are_utc() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             DTSTART;VALUE=DATE:20261224\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             DTSTART;VALUE=DATE:20261224\n\
             DTEND;VALUE=DATE:20261227\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             DTSTART:20261231T220000\n\
             DTEND:20270101T020000\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(
            spans(&events[0]),
            [pair(
                "2026-12-24T00:00:00+00:00",
                "2026-12-25T00:00:00+00:00"
            )]
        );
        assert_eq!(
            spans(&events[1]),
            [pair(
                "2026-12-24T00:00:00+00:00",
                "2026-12-27T00:00:00+00:00"
            )]
        );
        assert_eq!(
            spans(&events[2]),
            [pair(
                "2026-12-31T22:00:00+00:00",
                "2027-01-01T02:00:00+00:00"
            )]
        );
    }

    #[test]
    fn durations_days_are_calendar_days_and_hours_are_exact() {
        let text = calendar(
            "BEGIN:VEVENT\nDTSTART:20260601T000000Z\nDURATION:P1D\nEND:VEVENT\n\
             BEGIN:VEVENT\nDTSTART:20260601T000000Z\nDURATION:PT4H\nEND:VEVENT\n\
             BEGIN:VEVENT\nDTSTART:20260601T000000Z\nDURATION:P1DT12H30M15S\nEND:VEVENT\n\
             BEGIN:VEVENT\nDTSTART:20260601T000000Z\nDURATION:P2W\nEND:VEVENT\n\
             BEGIN:VEVENT\nDTSTART;TZID=Europe/London:20260328T120000\nDURATION:P1D\nEND:VEVENT\n\
             BEGIN:VEVENT\nDTSTART;TZID=Europe/London:20260328T120000\nDURATION:PT24H\nEND:VEVENT\n",
        );
        let ends: Vec<String> = events(&text)
            .iter()
            .map(|e| spans(e)[0].1.clone())
            .collect();
        assert_eq!(
            ends,
            [
                "2026-06-02T00:00:00+00:00",
                "2026-06-01T04:00:00+00:00",
                "2026-06-02T12:30:15+00:00",
                "2026-06-15T00:00:00+00:00",
                "2026-03-29T11:00:00+00:00", // noon BST the next day: 23 hours
                "2026-03-29T12:00:00+00:00", // 24 hours: 13:00 BST
            ]
        );
    }

    #[test]
    fn weekly_rule_with_exdates_skips_the_excluded_weeks() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             SUMMARY:Friday freeze\n\
             DTSTART;TZID=Europe/London:20261002T180000\n\
             DTEND;TZID=Europe/London:20261005T080000\n\
             RRULE:FREQ=WEEKLY;BYDAY=FR;UNTIL=20261106T235959Z\n\
             EXDATE;TZID=Europe/London:20261009T180000,20261016T180000\n\
             EXDATE;TZID=Europe/London:20261106T180000\n\
             END:VEVENT\n",
        );
        assert_eq!(
            spans(&events(&text)[0]),
            [
                pair("2026-10-02T17:00:00+00:00", "2026-10-05T07:00:00+00:00"),
                // Across the clocks going back: still Friday 18:00 to Monday 08:00.
                pair("2026-10-23T17:00:00+00:00", "2026-10-26T08:00:00+00:00"),
                pair("2026-10-30T18:00:00+00:00", "2026-11-02T08:00:00+00:00"),
            ]
        );
    }

    #[test]
    fn until_as_a_date_includes_that_day_and_count_limits() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             DTSTART;VALUE=DATE:20261201\n\
             RRULE:FREQ=WEEKLY;UNTIL=20261215\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             DTSTART:20261201T100000Z\n\
             DURATION:PT1H\n\
             RRULE:FREQ=DAILY;COUNT=2\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(
            spans(&events[0]),
            [
                pair("2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"),
                pair("2026-12-08T00:00:00+00:00", "2026-12-09T00:00:00+00:00"),
                pair("2026-12-15T00:00:00+00:00", "2026-12-16T00:00:00+00:00"),
            ]
        );
        assert_eq!(
            spans(&events[1]),
            [
                pair("2026-12-01T10:00:00+00:00", "2026-12-01T11:00:00+00:00"),
                pair("2026-12-02T10:00:00+00:00", "2026-12-02T11:00:00+00:00"),
            ]
        );
    }

    #[test]
    fn spans_are_only_those_overlapping_the_span_asked_about() {
        let text = calendar(
            "BEGIN:VEVENT\nDTSTART:20200106T000000Z\nDURATION:P1D\nRRULE:FREQ=WEEKLY\nEND:VEVENT\n",
        );
        let e = &events(&text)[0];
        assert_eq!(
            e.spans(utc("2026-06-01T12:00:00Z"), utc("2026-06-15T00:00:00Z")),
            [
                Span {
                    start: utc("2026-06-01T00:00:00Z"),
                    end: utc("2026-06-02T00:00:00Z"),
                },
                Span {
                    start: utc("2026-06-08T00:00:00Z"),
                    end: utc("2026-06-09T00:00:00Z"),
                },
            ]
        );
    }

    #[test]
    fn a_rule_firing_every_minute_for_years_is_looked_at_only_so_far() {
        let text = calendar(
            "BEGIN:VEVENT\nDTSTART:20000101T000000Z\nDURATION:PT1M\nRRULE:FREQ=MINUTELY\nEND:VEVENT\n",
        );
        let e = &events(&text)[0];
        // 100,000 minutes after 2000-01-01 is in March 2000: 2026 is never reached.
        assert_eq!(
            e.spans(utc("2026-06-01T00:00:00Z"), utc("2026-06-02T00:00:00Z")),
            []
        );
    }

    #[test]
    fn a_recurrence_id_moves_one_instance_and_cancelled_events_close_nothing() {
        let text = calendar(
            "BEGIN:VEVENT\n\
             UID:weekly\n\
             DTSTART:20261207T000000Z\n\
             DURATION:PT2H\n\
             RRULE:FREQ=WEEKLY;COUNT=3\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             UID:weekly\n\
             RECURRENCE-ID:20261214T000000Z\n\
             DTSTART:20261215T000000Z\n\
             DURATION:PT2H\n\
             END:VEVENT\n\
             BEGIN:VEVENT\n\
             UID:gone\n\
             STATUS:CANCELLED\n\
             DTSTART:20261207T000000Z\n\
             DURATION:PT2H\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(
            spans(&events[0]),
            [
                pair("2026-12-07T00:00:00+00:00", "2026-12-07T02:00:00+00:00"),
                pair("2026-12-21T00:00:00+00:00", "2026-12-21T02:00:00+00:00"),
            ]
        );
        assert_eq!(
            spans(&events[1]),
            [pair(
                "2026-12-15T00:00:00+00:00",
                "2026-12-15T02:00:00+00:00"
            )]
        );
        assert_eq!(spans(&events[2]), []);
    }

    #[test]
    fn other_components_and_alarms_are_skipped() {
        let text = calendar(
            "BEGIN:VTIMEZONE\n\
             TZID:Europe/London\n\
             BEGIN:STANDARD\n\
             DTSTART:19701025T020000\n\
             END:STANDARD\n\
             END:VTIMEZONE\n\
             BEGIN:VTODO\n\
             DTSTART:20261201T000000Z\n\
             SUMMARY:not an event\n\
             END:VTODO\n\
             BEGIN:VEVENT\n\
             DTSTART:20261224T000000Z\n\
             DURATION:P1D\n\
             SUMMARY:Christmas\n\
             BEGIN:VALARM\n\
             TRIGGER:-PT15M\n\
             SUMMARY:alarm text\n\
             DTSTART:20000101T000000Z\n\
             END:VALARM\n\
             END:VEVENT\n",
        );
        let events = events(&text);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].title(), "Christmas");
        assert_eq!(
            spans(&events[0]),
            [pair(
                "2026-12-24T00:00:00+00:00",
                "2026-12-25T00:00:00+00:00"
            )]
        );
    }

    #[test]
    fn an_event_without_summary_is_named_by_its_line() {
        let text = calendar("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nEND:VEVENT\n");
        assert_eq!(events(&text)[0].title(), "untitled event (line 4)");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                calendar("BEGIN:VEVENT\nSUMMARY:no start\nEND:VEVENT\n"),
                "freeze.ics:4: this VEVENT has no DTSTART; give each event a start, e.g. DTSTART:20261224T000000Z",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:2026-12-24\nEND:VEVENT\n"),
                "freeze.ics:5: DTSTART \"2026-12-24\" is not an iCalendar date or date-time (20261224, 20261224T180000, or 20261224T180000Z for UTC)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261324T000000Z\nEND:VEVENT\n"),
                "freeze.ics:5: DTSTART \"20261324T000000Z\" is not an iCalendar date or date-time (20261224, 20261224T180000, or 20261224T180000Z for UTC)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART;TZID=Mars/Olympus:20261224T000000\nEND:VEVENT\n"),
                "freeze.ics:5: unknown TZID \"Mars/Olympus\": name an IANA time zone (e.g. Europe/London)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nRRULE:FREQ=FORTNIGHTLY\nEND:VEVENT\n"),
                "freeze.ics:6: RRULE FREQ=FORTNIGHTLY: RRule parsing error: `FORTNIGHTLY` is not a valid frequency.",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nEND:VTODO\n"),
                "freeze.ics:6: END:VTODO does not close BEGIN:VEVENT of line 4",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\n"),
                "freeze.ics:6: END:VCALENDAR does not close BEGIN:VEVENT of line 4",
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261224T000000Z\n".to_string(),
                "freeze.ics:2: BEGIN:VEVENT is never closed (END:VEVENT is missing)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nDTEND:20261223T000000Z\nEND:VEVENT\n"),
                "freeze.ics:6: DTEND 20261223T000000 is before DTSTART 20261224T000000",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nDURATION:P1D\nDTEND:20261225T000000Z\nEND:VEVENT\n"),
                "freeze.ics:7: DTEND: a VEVENT ends by DTEND or by DURATION, once, not both",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nDURATION:P1H\nEND:VEVENT\n"),
                "freeze.ics:6: DURATION \"P1H\" is not an iCalendar duration (e.g. P1D, PT4H, P1DT12H, P2W)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nDURATION:-P1D\nEND:VEVENT\n"),
                "freeze.ics:6: DURATION \"-P1D\" is negative: an event cannot end before it starts",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224T000000\nEND:VEVENT\n"),
                "freeze.ics:5: DTSTART \"20261224T000000\" has a time, but VALUE=DATE says it is a date (write 20261224)",
            ),
            (
                calendar("BEGIN:VEVENT\nDTSTART:20261224T000000Z\nEXDATE:20261231T000000Z,tomorrow\nEND:VEVENT\n"),
                "freeze.ics:6: EXDATE \"tomorrow\" is not an iCalendar date or date-time (20261224, 20261224T180000, or 20261224T180000Z for UTC)",
            ),
            (
                calendar("BEGIN:VEVENT\nthis is not a property\nEND:VEVENT\n"),
                "freeze.ics:5: `this is not a property` is not an iCalendar property (NAME:VALUE or NAME;PARAM=VALUE:VALUE)",
            ),
            (
                "runbooks: runbooks/\n".to_string(),
                "freeze.ics:1: not an iCalendar file: it does not begin with BEGIN:VCALENDAR",
            ),
            (
                String::new(),
                "freeze.ics:1: not an iCalendar file: it is empty, and a calendar begins with BEGIN:VCALENDAR",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(error(&text), message);
        }
    }

    #[test]
    fn an_rrule_the_rrule_crate_rejects_passes_its_reason_on() {
        let text = calendar(
            "BEGIN:VEVENT\nDTSTART:20261224T000000Z\nRRULE:FREQ=DAILY;UNTIL=20251224T000000Z\nEND:VEVENT\n",
        );
        assert_eq!(
            error(&text),
            "freeze.ics:6: RRULE FREQ=DAILY;UNTIL=20251224T000000Z: RRule validation error: `UNTIL` is `2025-12-24T00:00:00+00:00`, but `DTSTART` (`2026-12-24T00:00:00+00:00`) is later. That should not be happening."
        );
    }

    #[test]
    fn reading_a_missing_or_huge_file_says_so() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("missing.ics");
        let message = read(&missing).expect_err("missing").to_string();
        assert!(
            message.starts_with(&format!(
                "{}: cannot read the calendar file: ",
                missing.display()
            )),
            "{message}"
        );
        let huge = dir.path().join("huge.ics");
        let file = std::fs::File::create(&huge).expect("create");
        file.set_len(MAX_ICS_BYTES + 1).expect("grow");
        assert_eq!(
            read(&huge).expect_err("too large").to_string(),
            format!(
                "{}: the calendar file is 4194305 bytes, over the limit of 4194304 bytes",
                huge.display()
            )
        );
    }
}
