//! `opsbook window` and `opsbook calendar`: when maintenance windows open and close, and
//! whether the freeze calendars let changes happen, now or at `--at TIME`.

use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::calendar::{Calendars, Windows};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::exec::request::span;
use crate::schedule::instant;

#[derive(Debug, Subcommand)]
pub enum WindowCommand {
    /// Every window of the config: schedule, zone, duration, cutoff, state now
    List {
        /// The instant to look at, RFC 3339 [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The next openings of a window
    Next {
        name: String,
        /// How many openings
        #[arg(long, default_value_t = 5, value_name = "N")]
        count: usize,
        /// Count from this instant, RFC 3339 [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Whether a window (or every window) is open, until when, and the next transition
    Status {
        name: Option<String>,
        /// The instant to look at, RFC 3339 [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Open or closed, why (which freeze event of which calendar), and the next transition
    Status {
        /// The instant to look at, RFC 3339 [default: now]
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// `--at TIME`, or now.
pub fn instant_arg(at: Option<&str>) -> Result<DateTime<Utc>> {
    match at {
        None => Ok(Utc::now()),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| Error::BadValue {
                flag: "--at",
                value: text.to_string(),
                expected:
                    "an RFC 3339 instant, such as 2026-12-24T22:00:00Z or 2026-12-24T22:00:00+01:00"
                        .into(),
            }),
    }
}

pub fn window(settings: &Settings, command: WindowCommand) -> Result<i32> {
    let windows = Windows::from_settings(settings)?;
    match command {
        WindowCommand::List { at, json } => {
            let at = instant_arg(at.as_deref())?;
            let statuses: Vec<_> = windows.iter().map(|w| w.status(at)).collect();
            if json {
                outln!("{}", super::to_json(&statuses)?);
                return Ok(0);
            }
            if windows.is_empty() {
                outln!(
                    "no maintenance windows: define them under `windows:` in {}",
                    settings.config_name()
                );
                return Ok(0);
            }
            for (window, status) in windows.iter().zip(&statuses) {
                outln!(
                    "{:<20} {:<8} {}",
                    window.name,
                    status.state,
                    window.describe()
                );
            }
            Ok(0)
        }
        WindowCommand::Next {
            name,
            count,
            at,
            json,
        } => {
            let at = instant_arg(at.as_deref())?;
            let window = find(&windows, &name, settings)?;
            let mut openings = Vec::new();
            let mut after = at;
            while openings.len() < count.min(1000) {
                let Some(next) = window.next_opening(after) else {
                    break;
                };
                after = next.opens;
                openings.push(next);
            }
            if json {
                outln!("{}", super::to_json(&openings)?);
                return Ok(0);
            }
            if openings.is_empty() {
                outln!("window {name} does not open again ({})", window.describe());
            }
            for o in openings {
                outln!(
                    "opens {}  last start {}  closes {}",
                    instant(o.opens),
                    instant(o.last_start),
                    instant(o.closes)
                );
            }
            Ok(0)
        }
        WindowCommand::Status { name, at, json } => {
            let at = instant_arg(at.as_deref())?;
            let chosen: Vec<_> = match &name {
                Some(name) => vec![find(&windows, name, settings)?],
                None => windows.iter().collect(),
            };
            let statuses: Vec<_> = chosen.iter().map(|w| w.status(at)).collect();
            if json {
                match name {
                    Some(_) => outln!("{}", super::to_json(&statuses[0])?),
                    None => outln!("{}", super::to_json(&statuses)?),
                }
                return Ok(0);
            }
            if statuses.is_empty() {
                outln!(
                    "no maintenance windows: define them under `windows:` in {}",
                    settings.config_name()
                );
            }
            for s in statuses {
                let line = match (s.state, s.closes_at, s.next_transition) {
                    ("open", Some(closes), _) => format!(
                        "{}: open since {}, closes {} ({} left); no step starts after {}",
                        s.window,
                        s.opens_at.map(instant).unwrap_or_default(),
                        instant(closes),
                        span(closes - at),
                        s.last_start.map(instant).unwrap_or_default()
                    ),
                    ("disabled", _, _) => format!("{}: disabled", s.window),
                    (_, _, Some(next)) => format!(
                        "{}: closed; opens {} (in {})",
                        s.window,
                        instant(next),
                        span(next - at)
                    ),
                    _ => format!("{}: closed; it does not open again", s.window),
                };
                outln!("{line}");
            }
            Ok(0)
        }
    }
}

fn find<'a>(
    windows: &'a Windows,
    name: &str,
    settings: &Settings,
) -> Result<&'a crate::calendar::Window> {
    windows.get(name).ok_or_else(|| Error::BadValue {
        flag: "window",
        value: name.to_string(),
        expected: if windows.is_empty() {
            format!(
                "a window defined under `windows:` in {} (it defines none)",
                settings.config_name()
            )
        } else {
            format!("one of: {}", windows.names().join(", "))
        },
    })
}

pub fn calendar(settings: &Settings, command: CalendarCommand) -> Result<i32> {
    let CalendarCommand::Status { at, json } = command;
    let at = instant_arg(at.as_deref())?;
    let calendars = Calendars::from_settings(settings)?;
    let state = calendars.state_at(at);
    if json {
        outln!("{}", super::to_json(&state)?);
        return Ok(0);
    }
    if calendars.is_empty() {
        outln!(
            "open: no freeze calendars (define them under `calendars:` in {})",
            settings.config_name()
        );
        return Ok(0);
    }
    outln!("{}", state.state);
    for one in &state.calendars {
        let file = calendars
            .file_of(&one.calendar)
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        let why = one
            .reason
            .as_ref()
            .map(|r| {
                let until = r
                    .until
                    .map(|u| format!(" until {}", instant(u)))
                    .unwrap_or_default();
                format!(": \"{}\"{until}", r.event)
            })
            .unwrap_or_default();
        outln!("  {}{file}: {}{why}", one.calendar, one.state);
    }
    if let Some(next) = state.next_transition {
        outln!("next transition {} (in {})", instant(next), span(next - at));
    }
    Ok(0)
}
