//! A cron schedule in a time zone ([`CronSchedule`]): parsing a 5- or 6-field expression
//! with an IANA zone, and finding its fires as UTC instants, with a stated rule for the
//! nights the clocks change.
//!
//! # Daylight saving
//!
//! Expressions are matched against the wall clock of the schedule's zone, evaluated by
//! croner. When the clocks change:
//!
//! - **A fixed-time schedule** fires at wall-clock times it names outright: its second,
//!   minute and hour fields hold numbers, lists or ranges, no `*` and no step (`30 1 * * *`,
//!   `0 1,13 * * *`, `0,30 1 * * *`). This is ISC/Vixie cron's rule.
//!   - In a **gap** (spring forward: 01:30 does not exist in London on 2026-03-29) it fires
//!     once, at the first instant after the gap (02:00 BST = 01:00 UTC). Several times in
//!     the same gap (`0,30 1 * * *`) make one fire there.
//!   - In an **overlap** (fall back: 01:30 happens twice in London on 2026-10-25) it fires
//!     once, at the first of the two (01:30 BST = 00:30 UTC).
//! - **An interval schedule** (`*/15 * * * *`, `0 * * * *`: a `*` or a step in the second,
//!   minute or hour field) follows the wall clock as it is: fires inside a gap do not
//!   happen, and both copies of a repeated hour fire. In UTC that reads as a steady
//!   rhythm: `*/15` fires every 15 minutes through both nights.
//!
//! croner applies the fixed-time rule only when each of the three fields holds exactly one
//! value, and treats `0,30 1 * * *` or `0 1,2 * * *` as interval schedules: they would skip
//! the spring-forward night and run twice on the fall-back one. So a schedule that names up
//! to [`MAX_FIXED_TIMES`] times of day is evaluated here as that many single-time
//! expressions, each under croner's fixed-time rule, and their fires merged.
//!
//! Every search is bounded: croner gives up at the year 5000, and an expression that
//! matches no date at all (`0 0 30 2 *`) is refused when it is parsed.

use std::path::Path;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};

/// The most wall-clock times of day a schedule may name and still be evaluated as
/// fixed-time; beyond it (`0 0-59 * * *` names 60) it is an interval schedule.
pub const MAX_FIXED_TIMES: usize = 48;

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    timezone: Tz,
    /// What is evaluated: the expression itself, or one single-time expression per time of
    /// day a fixed-time schedule names (see the module doc).
    crons: Vec<Cron>,
}

impl CronSchedule {
    /// Parses `expr`: 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds
    /// first); `L`, `#`, `W`, names (`SUN`, `JAN`) and nicknames (`@daily`) as croner reads
    /// them. `timezone` is an IANA name; `None` is UTC.
    ///
    /// `what` names the setting in errors (`windows.nightly.schedule`); a bad time zone is
    /// reported against its sibling `timezone` (`windows.nightly.timezone`).
    pub fn parse(expr: &str, timezone: Option<&str>, what: &str, config: &Path) -> Result<Self> {
        let bad = |message: String| Error::ConfigValue {
            path: config.to_path_buf(),
            key: what.to_string(),
            message,
        };
        let timezone = parse_timezone(timezone, &sibling_key(what, "timezone"), config)?;
        let text = expr.trim();
        if text.is_empty() {
            return Err(bad(
                "the schedule is empty; write a cron expression like `0 22 * * SUN` (minute hour day-of-month month day-of-week)".into(),
            ));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !text.starts_with('@') && !(5..=6).contains(&fields.len()) {
            return Err(bad(format!(
                "`{text}` has {} fields; write 5 (minute hour day-of-month month day-of-week, e.g. `0 22 * * SUN`) or 6 (seconds first)",
                fields.len()
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text).map_err(|e| {
            bad(format!(
                "`{text}` is not a valid cron expression ({}); write it like `0 22 * * SUN` (minute hour day-of-month month day-of-week)",
                e.to_string().trim_end_matches('.')
            ))
        })?;
        // Without a year field a pattern repeats every 400 years, so one that matches
        // nothing from 2000 up to croner's limit (the year 5000) matches no date at all.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if let Some(reference) = reference {
            if cron.find_next_occurrence(&reference, true).is_err() {
                return Err(bad(format!(
                    "`{text}` matches no date, so it would never fire; check its day-of-month, month and day-of-week fields"
                )));
            }
        }
        let crons = split_fixed_times(&parser, &cron, &fields).unwrap_or_else(|| vec![cron]);
        Ok(Self {
            text: text.to_string(),
            timezone,
            crons,
        })
    }

    /// The first fire strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fires fall on whole seconds: the first one after `after` is the first one after
        // the start of its second.
        let start = whole_second(after).with_timezone(&self.timezone);
        self.crons
            .iter()
            .filter_map(|cron| cron.find_next_occurrence(&start, false).ok())
            .map(|fire| fire.with_timezone(&Utc))
            .min()
    }

    /// The latest fire at or before `at`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = whole_second(at).with_timezone(&self.timezone);
        self.crons
            .iter()
            .filter_map(|cron| cron.find_previous_occurrence(&start, true).ok())
            .map(|fire| fire.with_timezone(&Utc))
            .max()
    }

    /// Fires in `(from, to]`, oldest first, at most `limit` of them.
    pub fn fires_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut cursor = from;
        while fires.len() < limit {
            match self.next_after(cursor) {
                Some(fire) if fire <= to => {
                    fires.push(fire);
                    cursor = fire;
                }
                _ => break,
            }
        }
        fires
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }
}

/// Reads an IANA time zone name; `None` is UTC. `key` names the setting in the error.
pub fn parse_timezone(name: Option<&str>, key: &str, config: &Path) -> Result<Tz> {
    let Some(name) = name else {
        return Ok(Tz::UTC);
    };
    name.trim().parse::<Tz>().map_err(|_| Error::ConfigValue {
        path: config.to_path_buf(),
        key: key.to_string(),
        message: format!(
            "\"{name}\" is not an IANA time zone name (e.g. Europe/London){}",
            did_you_mean(name, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
        ),
    })
}

/// `windows.nightly.schedule` → `windows.nightly.timezone`.
pub(crate) fn sibling_key(key: &str, sibling: &str) -> String {
    match key.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.{sibling}"),
        None => sibling.to_string(),
    }
}

/// The instant a wall-clock time in `tz` names, by the same rule as fixed-time fires: the
/// first of two in an overlap, the first instant after the gap for one that does not exist.
/// `None` only when no instant within a day after `local` exists (beyond chrono's range).
pub(crate) fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(instant) = tz.from_local_datetime(&local).earliest() {
        return Some(instant.with_timezone(&Utc));
    }
    // In a gap. Zones change their offset on whole minutes, so the first whole minute that
    // exists is where the gap ends. Gaps last an hour or two (a day when Samoa crossed the
    // date line): look a day ahead at most.
    let mut wall = local.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..=24 * 60 {
        wall = wall.checked_add_signed(TimeDelta::minutes(1))?;
        if let Some(instant) = tz.from_local_datetime(&wall).earliest() {
            return Some(instant.with_timezone(&Utc));
        }
    }
    None
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    // Rounding a UTC instant down to a whole second fails only beyond chrono's range, where
    // no schedule fires anyway; keep the instant then.
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

/// For an expression whose second, minute and hour fields name fixed values (no `*`, no
/// step) and at most [`MAX_FIXED_TIMES`] times of day in all: one single-time expression per
/// time of day, each of which croner evaluates as a fixed-time job. `None` otherwise, and
/// for a single time of day, which croner already treats as fixed.
fn split_fixed_times(parser: &CronParser, cron: &Cron, fields: &[&str]) -> Option<Vec<Cron>> {
    let (time_fields, date_fields) = match fields.len() {
        5 => (&fields[..2], &fields[2..]),
        6 => (&fields[..3], &fields[3..]),
        _ => return None, // a nickname: @hourly is an interval, the rest name one time
    };
    if time_fields
        .iter()
        .any(|field| field.contains('*') || field.contains('/'))
    {
        return None;
    }
    let pattern = &cron.pattern;
    let (seconds, minutes, hours) = (
        pattern.seconds.values(),
        pattern.minutes.values(),
        pattern.hours.values(),
    );
    let count = seconds.len() * minutes.len() * hours.len();
    if count <= 1 || count > MAX_FIXED_TIMES {
        return None;
    }
    let date = date_fields.join(" ");
    let mut crons = Vec::with_capacity(count);
    for hour in &hours {
        for minute in &minutes {
            for second in &seconds {
                // The date fields already parsed in the whole expression, and the time
                // fields are numbers croner gave back; should this still fail, evaluate
                // the expression as croner classifies it.
                let one = parser
                    .parse(&format!("{second} {minute} {hour} {date}"))
                    .ok()?;
                crons.push(one);
            }
        }
    }
    Some(crons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::utc;

    fn schedule(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(
            expr,
            Some(tz),
            "windows.w.schedule",
            Path::new("opsbook.yaml"),
        )
        .expect("a valid schedule")
    }

    fn error(expr: &str, tz: Option<&str>) -> String {
        CronSchedule::parse(
            expr,
            tz,
            "windows.nightly.schedule",
            Path::new("opsbook.yaml"),
        )
        .expect_err("an invalid schedule")
        .to_string()
    }

    fn fires(s: &CronSchedule, from: &str, to: &str) -> Vec<String> {
        s.fires_between(utc(from), utc(to), 100)
            .into_iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    /// Every fire is found again backwards: `last_at_or_before` agrees with `next_after`.
    fn assert_backwards_agrees(s: &CronSchedule, from: &str, to: &str) {
        let all = s.fires_between(utc(from), utc(to), 100);
        for pair in all.windows(2) {
            assert_eq!(s.last_at_or_before(pair[1]), Some(pair[1]));
            assert_eq!(
                s.last_at_or_before(pair[1] - TimeDelta::seconds(1)),
                Some(pair[0]),
                "before {}",
                pair[1]
            );
        }
    }

    #[test]
    fn london_fixed_time_fires_once_after_the_spring_gap_and_once_in_the_autumn_overlap() {
        let s = schedule("30 1 * * *", "Europe/London");
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
            [
                "2026-03-28T01:30:00+00:00", // 01:30 GMT
                "2026-03-29T01:00:00+00:00", // 01:30 does not exist: 02:00 BST
                "2026-03-30T00:30:00+00:00", // 01:30 BST
                "2026-03-31T00:30:00+00:00",
            ]
        );
        assert_eq!(
            fires(&s, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
            [
                "2026-10-24T00:30:00+00:00", // 01:30 BST
                "2026-10-25T00:30:00+00:00", // the first 01:30 (BST) only
                "2026-10-26T01:30:00+00:00", // 01:30 GMT
            ]
        );
        assert_backwards_agrees(&s, "2026-03-26T12:00:00Z", "2026-04-01T12:00:00Z");
        assert_backwards_agrees(&s, "2026-10-22T12:00:00Z", "2026-10-28T12:00:00Z");
    }

    #[test]
    fn new_york_fixed_time_fires_once_after_the_spring_gap_and_once_in_the_autumn_overlap() {
        let s = schedule("30 2 * * *", "America/New_York");
        assert_eq!(
            fires(&s, "2026-03-06T12:00:00Z", "2026-03-09T12:00:00Z"),
            [
                "2026-03-07T07:30:00+00:00", // 02:30 EST
                "2026-03-08T07:00:00+00:00", // 02:30 does not exist: 03:00 EDT
                "2026-03-09T06:30:00+00:00", // 02:30 EDT
            ]
        );
        let s = schedule("30 1 * * *", "America/New_York");
        assert_eq!(
            fires(&s, "2026-10-31T00:00:00Z", "2026-11-02T12:00:00Z"),
            [
                "2026-10-31T05:30:00+00:00", // 01:30 EDT
                "2026-11-01T05:30:00+00:00", // the first 01:30 (EDT) only
                "2026-11-02T06:30:00+00:00", // 01:30 EST
            ]
        );
        assert_backwards_agrees(&s, "2026-10-30T12:00:00Z", "2026-11-04T12:00:00Z");
        assert_backwards_agrees(
            &schedule("30 2 * * *", "America/New_York"),
            "2026-03-05T12:00:00Z",
            "2026-03-11T12:00:00Z",
        );
    }

    #[test]
    fn wildcard_minutes_skip_the_gap_and_run_in_both_copies_of_the_repeated_hour() {
        let s = schedule("*/15 * * * *", "Europe/London");
        // 00:45 GMT, then 02:00 BST: the wall clock has no 01:00-01:59; in UTC the rhythm holds.
        assert_eq!(
            fires(&s, "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"),
            [
                "2026-03-29T00:45:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T01:15:00+00:00",
                "2026-03-29T01:30:00+00:00",
            ]
        );
        // 01:00, 01:15, 01:30, 01:45 BST and again in GMT: eight fires in two real hours.
        assert_eq!(
            fires(&s, "2026-10-24T23:50:00Z", "2026-10-25T02:00:00Z"),
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T00:15:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T00:45:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:15:00+00:00",
                "2026-10-25T01:30:00+00:00",
                "2026-10-25T01:45:00+00:00",
                "2026-10-25T02:00:00+00:00",
            ]
        );
        assert_backwards_agrees(&s, "2026-10-24T23:50:00Z", "2026-10-25T02:30:00Z");

        let s = schedule("*/30 * * * *", "America/New_York");
        assert_eq!(
            fires(&s, "2026-03-08T06:00:00Z", "2026-03-08T07:30:00Z"),
            [
                "2026-03-08T06:30:00+00:00", // 01:30 EST
                "2026-03-08T07:00:00+00:00", // 03:00 EDT: 02:00 and 02:30 do not exist
                "2026-03-08T07:30:00+00:00",
            ]
        );
        assert_eq!(
            fires(&s, "2026-11-01T04:50:00Z", "2026-11-01T07:00:00Z"),
            [
                "2026-11-01T05:00:00+00:00", // 01:00 EDT
                "2026-11-01T05:30:00+00:00", // 01:30 EDT
                "2026-11-01T06:00:00+00:00", // 01:00 EST
                "2026-11-01T06:30:00+00:00", // 01:30 EST
                "2026-11-01T07:00:00+00:00", // 02:00 EST
            ]
        );
        assert_backwards_agrees(&s, "2026-11-01T04:00:00Z", "2026-11-01T08:00:00Z");
    }

    #[test]
    fn several_fixed_times_follow_the_fixed_time_rule_not_the_interval_rule() {
        // croner alone skips both on 2026-03-29 and runs 01:00 twice on 2026-10-25.
        let s = schedule("0,30 1 * * *", "Europe/London");
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-29T01:00:00+00:00", // both fall in the gap: one fire after it
                "2026-03-30T00:00:00+00:00",
                "2026-03-30T00:30:00+00:00",
            ]
        );
        let s = schedule("0 1,2 * * *", "Europe/London");
        assert_eq!(
            fires(&s, "2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
            [
                "2026-10-25T00:00:00+00:00", // 01:00 BST; not again at 01:00 GMT
                "2026-10-25T02:00:00+00:00", // 02:00 GMT
            ]
        );
        assert_backwards_agrees(&s, "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z");
    }

    #[test]
    fn six_fields_take_seconds_first() {
        let s = schedule("15 30 22 * * *", "UTC");
        assert_eq!(
            s.next_after(utc("2026-06-01T22:30:15Z")),
            Some(utc("2026-06-02T22:30:15Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-06-01T22:30:14.999Z")),
            Some(utc("2026-06-01T22:30:15Z"))
        );
        assert_eq!(
            s.last_at_or_before(utc("2026-06-01T22:30:15.5Z")),
            Some(utc("2026-06-01T22:30:15Z"))
        );
        let s = schedule("*/20 * * * * *", "UTC");
        assert_eq!(
            fires(&s, "2026-06-01T00:00:00Z", "2026-06-01T00:01:00Z"),
            [
                "2026-06-01T00:00:20+00:00",
                "2026-06-01T00:00:40+00:00",
                "2026-06-01T00:01:00+00:00",
            ]
        );
    }

    #[test]
    fn next_is_strictly_after_and_last_is_at_or_before() {
        let s = schedule("0 22 * * SUN", "Europe/London");
        let fire = utc("2026-06-07T21:00:00Z"); // Sunday 22:00 BST
        assert_eq!(s.next_after(fire - TimeDelta::seconds(1)), Some(fire));
        assert_eq!(s.next_after(fire), Some(utc("2026-06-14T21:00:00Z")));
        assert_eq!(s.last_at_or_before(fire), Some(fire));
        assert_eq!(
            s.last_at_or_before(fire - TimeDelta::seconds(1)),
            Some(utc("2026-05-31T21:00:00Z"))
        );
        assert_eq!(s.expression(), "0 22 * * SUN");
        assert_eq!(s.timezone(), chrono_tz::Europe::London);
    }

    #[test]
    fn l_hash_and_w_work_as_croner_reads_them() {
        let cases = [
            ("0 22 * * TUE#2", "2026-12-08T22:00:00+00:00"), // second Tuesday
            ("0 0 L * *", "2026-12-31T00:00:00+00:00"),      // last day of the month
            ("0 0 * * 5#L", "2026-12-25T00:00:00+00:00"),    // last Friday
            ("0 0 5W * *", "2026-12-04T00:00:00+00:00"),     // the 5th is a Saturday
        ];
        for (expr, next) in cases {
            let s = schedule(expr, "UTC");
            assert_eq!(
                s.next_after(utc("2026-12-01T00:00:00Z"))
                    .map(|t| t.to_rfc3339()),
                Some(next.to_string()),
                "{expr}"
            );
        }
    }

    #[test]
    fn limit_caps_the_fires() {
        let s = schedule("* * * * *", "UTC");
        assert_eq!(
            s.fires_between(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"), 3),
            [
                utc("2026-01-01T00:01:00Z"),
                utc("2026-01-01T00:02:00Z"),
                utc("2026-01-01T00:03:00Z"),
            ]
        );
    }

    #[test]
    fn no_time_zone_means_utc() {
        let s = CronSchedule::parse("0 3 * * *", None, "schedules.s.cron", Path::new("o.yaml"))
            .expect("valid");
        assert_eq!(s.timezone(), Tz::UTC);
        assert_eq!(
            s.next_after(utc("2026-06-01T00:00:00Z")),
            Some(utc("2026-06-01T03:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_setting_and_say_what_to_write() {
        assert_eq!(
            error("0 22 * * SUN", Some("Mars/Olympus")),
            "opsbook.yaml: windows.nightly.timezone: \"Mars/Olympus\" is not an IANA time zone name (e.g. Europe/London)"
        );
        assert_eq!(
            error("0 22 * * SUN", Some("Europe/Londn")),
            "opsbook.yaml: windows.nightly.timezone: \"Europe/Londn\" is not an IANA time zone name (e.g. Europe/London); did you mean `Europe/London`?"
        );
        assert_eq!(
            error("0 22 * *", None),
            "opsbook.yaml: windows.nightly.schedule: `0 22 * *` has 4 fields; write 5 (minute hour day-of-month month day-of-week, e.g. `0 22 * * SUN`) or 6 (seconds first)"
        );
        assert_eq!(
            error("0 0 22 * * SUN 2026", None),
            "opsbook.yaml: windows.nightly.schedule: `0 0 22 * * SUN 2026` has 7 fields; write 5 (minute hour day-of-month month day-of-week, e.g. `0 22 * * SUN`) or 6 (seconds first)"
        );
        assert_eq!(
            error("  ", None),
            "opsbook.yaml: windows.nightly.schedule: the schedule is empty; write a cron expression like `0 22 * * SUN` (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(
            error("60 22 * * *", None),
            "opsbook.yaml: windows.nightly.schedule: `60 22 * * *` is not a valid cron expression (Component error: Number out of bounds); write it like `0 22 * * SUN` (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(
            error("0 0 30 2 *", None),
            "opsbook.yaml: windows.nightly.schedule: `0 0 30 2 *` matches no date, so it would never fire; check its day-of-month, month and day-of-week fields"
        );
    }

    #[test]
    fn a_search_past_croners_horizon_ends_with_none() {
        let s = schedule("0 0 29 2 +MON", "UTC"); // 29 February on a Monday
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2044-02-29T00:00:00Z"))
        );
        assert_eq!(s.next_after(utc("4999-12-31T00:00:00Z")), None);
    }
}
