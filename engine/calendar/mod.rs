//! When work may happen: maintenance windows (a cron schedule in a time zone, a duration and
//! a cutoff) and freeze calendars (iCalendar files whose events close, or open, them).
