//! The review schedule of a runbook: `review_every` after `last_reviewed`, computed in one
//! place for `check`, `list` and the runbook documents.

use std::time::Duration;

use chrono::NaiveDate;

use crate::runbook::duration::parse_duration;
use crate::runbook::Runbook;

/// When a runbook is next due for review, and whether that date has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewStatus {
    pub due: Option<NaiveDate>,
    pub overdue: bool,
}

impl ReviewStatus {
    /// The status on `today`; a runbook without both fields (or with unreadable ones, which
    /// `check` reports) has no due date and is never overdue.
    pub fn of(runbook: &Runbook, today: NaiveDate) -> Self {
        let last = runbook.last_reviewed.as_deref().and_then(parse_date);
        let every = runbook
            .review_every
            .as_deref()
            .and_then(|e| parse_duration(e).ok());
        match (last, every) {
            (Some(last), Some(every)) => Self::from_dates(last, every, today),
            _ => Self {
                due: None,
                overdue: false,
            },
        }
    }

    pub fn from_dates(last_reviewed: NaiveDate, every: Duration, today: NaiveDate) -> Self {
        let due = last_reviewed + chrono::Duration::seconds(every.as_secs() as i64);
        Self {
            due: Some(due),
            overdue: due < today,
        }
    }
}

/// `last_reviewed` is a calendar date, `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Today in the local time zone: the day a person reading the warning lives in.
pub fn today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn due_is_last_review_plus_interval_and_overdue_only_after_it() {
        let every = Duration::from_secs(90 * 86_400);
        let table = [
            ("2026-01-01", "2026-03-31", "2026-04-01", false),
            ("2026-01-01", "2026-04-01", "2026-04-01", false),
            ("2026-01-01", "2026-04-02", "2026-04-01", true),
        ];
        for (last, today, due, overdue) in table {
            let status = ReviewStatus::from_dates(date(last), every, date(today));
            assert_eq!(status.due, Some(date(due)), "{last} + 90d");
            assert_eq!(status.overdue, overdue, "{last} on {today}");
        }
    }
}
