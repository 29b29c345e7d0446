//! When work may happen: maintenance windows (a cron schedule in a time zone, a duration and
//! a cutoff) and freeze calendars (iCalendar files whose events close, or open, them).
//!
//! - `cron`: a cron expression in an IANA time zone, its fires as UTC instants, and the rule
//!   for the nights the clocks change.
//! - `freeze`: freeze calendars, open or closed by default, combined as AWS Change Calendar
//!   combines them, with the reasons they are closed and when that next changes.
//! - `ics`: the RFC 5545 subset freeze calendars are read from (events, their recurrences
//!   and exceptions), expanded over a bounded span.
//! - `window`: maintenance windows (the AWS SSM fields: schedule, zone, duration, cutoff,
//!   offset days, start/end, enabled), their occurrences and their state at an instant.
//!
//! Every search here is bounded (in years ahead, and in fires or occurrences looked at), so a
//! schedule that fires rarely or never costs a bounded time and answers `None`.

pub mod cron;
pub mod freeze;
pub mod ics;
pub mod window;

pub use cron::CronSchedule;
pub use freeze::{Calendars, FreezeReason};
pub use window::{Window, Windows};

/// An RFC 3339 instant written in a test, in UTC.
#[cfg(test)]
pub(crate) fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("a test instant")
        .with_timezone(&chrono::Utc)
}
