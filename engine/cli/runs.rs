//! `opsbook runs` and `opsbook show`: runs as the journal has them.

use super::to_json;
use crate::config::Settings;
use crate::error::{exit, Error, Result};
use crate::journal::event::RunStatus;
use crate::journal::view::{self, RunView};
use crate::journal::Journal;
use crate::term::progress;

pub fn runs(
    settings: &Settings,
    runbook: Option<&str>,
    status: Option<&str>,
    json: bool,
) -> Result<i32> {
    let wanted_status = match status {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Error::BadValue {
                flag: "--status",
                value: s.to_string(),
                expected: "use one of running, awaiting-signoff, awaiting-acceptance, succeeded, failed, aborted, rejected".into(),
            }
        })?),
        None => None,
    };
    let journal = Journal::open(&settings.db)?;
    let mut runs: Vec<_> = view::list_runs(&journal)?
        .into_iter()
        .filter(|r| runbook.is_none_or(|id| r.runbook == id))
        .filter(|r| wanted_status.is_none_or(|s| r.status == s))
        .collect();
    // A run still marked running whose process is gone was interrupted: it needs a resume.
    for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
        r.interrupted = !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &r.id)?;
    }
    if json {
        println!("{}", to_json(&runs)?);
        return Ok(exit::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs");
    }
    for r in &runs {
        println!(
            "{}  {:<20} v{:<3} {:<16} {}  {}{}",
            r.id,
            r.runbook,
            r.version,
            if r.interrupted {
                "interrupted"
            } else {
                r.status.name()
            },
            short_time(&r.started_at),
            r.operator,
            if r.dry_run { "  (dry run)" } else { "" }
        );
    }
    Ok(exit::SUCCESS)
}

pub fn show(settings: &Settings, run: &str, json: bool) -> Result<i32> {
    let journal = Journal::open(&settings.db)?;
    let view = view::load_run(&journal, run)?;
    if json {
        println!("{}", to_json(&view)?);
    } else {
        print!("{}", render_run(&view));
        if view.status == RunStatus::Running
            && !crate::journal::lease::Lease::is_held_elsewhere(&settings.db, &view.id)?
        {
            println!(
                "\nthis run was interrupted: no process drives it. Continue it with: opsbook resume {}",
                view.id
            );
        }
    }
    Ok(exit::SUCCESS)
}

fn render_run(v: &RunView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  {} v{} — {}",
        v.id, v.runbook, v.version, v.title
    );
    let _ = writeln!(
        out,
        "status:   {}{}",
        v.status.name(),
        if v.rolled_back { " (rolled back)" } else { "" }
    );
    let verified = if v.operator_verified {
        ""
    } else {
        " (identity not verified)"
    };
    let _ = writeln!(out, "operator: {}{verified} on {}", v.operator, v.host);
    let _ = writeln!(out, "started:  {}", v.started_at);
    if let Some(f) = &v.finished_at {
        let _ = writeln!(out, "finished: {f}");
    }
    if v.dry_run {
        let _ = writeln!(out, "dry run:  only readonly steps ran");
    }
    if !v.params.is_empty() {
        let shown: Vec<String> = v
            .params
            .iter()
            .map(|(k, val)| format!("{k}={}", crate::runbook::params::value_text(val)))
            .collect();
        let _ = writeln!(out, "params:   {}", shown.join(" "));
    }
    let _ = writeln!(
        out,
        "runbook:  {} (sha256 {})",
        v.path,
        &v.content_hash[..v.content_hash.len().min(16)]
    );
    if let Some(p) = &v.paused {
        let _ = writeln!(
            out,
            "waiting:  {} (step {}, since {})",
            p.reason, p.step, p.at
        );
    }
    let _ = writeln!(out);
    for (i, s) in v.steps.iter().enumerate() {
        let superseded = v.steps[i + 1..]
            .iter()
            .any(|later| later.id == s.id && later.phase == s.phase);
        let status = match s.status {
            Some(status) => status.name(),
            None if superseded => "interrupted",
            None if v.paused.as_ref().is_some_and(|p| p.step == s.id) => "waiting",
            None => "running",
        };
        let symbol = s.status.map(progress::symbol).unwrap_or("…");
        let indent = if s.group.is_some() { "    " } else { "" };
        let phase = if s.phase == crate::journal::event::Phase::Rollback {
            " [rollback]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{indent}{symbol} {} ({}){phase}  {status}  {}",
            s.id, s.kind, s.name
        );
        if let Some(reason) = &s.reason {
            let _ = writeln!(out, "{indent}    {reason}");
        }
        if let Some(w) = &s.would_run {
            let _ = writeln!(out, "{indent}    would run: {w}");
        }
        for d in &s.decisions {
            let comment = d
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}    {} by {} at {}{comment}",
                d.decision, d.by, d.at
            );
        }
        for a in &s.attempts {
            let code = a
                .exit_code
                .map(|c| format!(", exit {c}"))
                .unwrap_or_default();
            let error = a
                .error
                .as_deref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default();
            let status = serde_json::to_value(a.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}    attempt {}: {status}{code}, {}ms{error}",
                a.attempt, a.duration_ms
            );
            if !a.outputs.is_empty() {
                let shown: Vec<String> = a
                    .outputs
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "stdout" | "exit_code"))
                    .map(|(k, val)| format!("{k}={}", crate::runbook::params::value_text(val)))
                    .collect();
                if !shown.is_empty() {
                    let _ = writeln!(out, "{indent}      outputs: {}", shown.join(" "));
                }
            }
            if !a.metrics.is_empty() {
                let shown: Vec<String> = a
                    .metrics
                    .iter()
                    .map(|(k, val)| format!("{k}={val}"))
                    .collect();
                let _ = writeln!(out, "{indent}      metrics: {}", shown.join(" "));
            }
            for line in a
                .excerpt
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let _ = writeln!(out, "{indent}      | {line}");
            }
        }
    }
    if let Some(summary) = &v.summary {
        let _ = writeln!(out, "\n{summary}");
    }
    out
}

fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}
