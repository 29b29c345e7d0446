//! Runs as text for a terminal: the `show` page of a run, and the symbol of a step status
//! that the progress lines use.

use crate::journal::event::{RunStatus, StepStatus};
use crate::journal::view::{RunView, StepState};

/// The symbol of a finished step on a terminal.
pub fn symbol(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
        StepStatus::WouldRun => "~",
        StepStatus::Rejected | StepStatus::Aborted => "!",
    }
}

/// How `opsbook show` prints a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShowOptions {
    /// The run is marked running but no process drives it.
    pub interrupted: bool,
    /// Every output line the journal kept for an attempt, not only the last ones.
    pub full: bool,
}

/// Output lines of an attempt `show` prints without `--full`.
const TAIL_LINES: usize = 5;

/// `opsbook show`: one run, step by step, as text.
pub fn render_run(v: &RunView, options: ShowOptions) -> String {
    use std::fmt::Write;
    let interrupted = options.interrupted && v.status == RunStatus::Running;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  {} v{} — {}",
        v.id, v.runbook, v.version, v.title
    );
    let _ = writeln!(
        out,
        "status:   {}{}",
        if interrupted {
            "interrupted"
        } else {
            v.status.name()
        },
        if v.rolled_back { " (rolled back)" } else { "" }
    );
    let verified = if v.operator_verified {
        ""
    } else {
        " (identity not verified)"
    };
    let _ = writeln!(out, "operator: {}{verified} on {}", v.operator, v.host);
    for h in &v.custody {
        let _ = writeln!(
            out,
            "handover: {} → {} by {} at {}: {}",
            h.from, h.to, h.by, h.at, h.note
        );
    }
    for r in &v.resumes {
        let _ = writeln!(out, "resumed:  by {} at {}", r.by, r.at);
    }
    let _ = writeln!(out, "started:  {}", v.started_at);
    if let Some(f) = &v.finished_at {
        let _ = writeln!(out, "finished: {f}");
    }
    if v.dry_run {
        let _ = writeln!(out, "dry run:  only readonly steps ran");
    }
    if let Some(slot) = &v.slot {
        let _ = writeln!(out, "schedule: {} (slot {})", slot.schedule, slot.slot);
    }
    if let Some(f) = &v.freeze_broken {
        let _ = writeln!(
            out,
            "freeze:   broke \"{}\" of calendar {}, approved by {} at {}: {}",
            f.freeze, f.calendar, f.approved_by, f.at, f.reason
        );
    }
    if let Some(p) = v.paused.as_ref().filter(|_| v.status == RunStatus::Parked) {
        let _ = writeln!(out, "parked:   before `{}`: {}", p.step, p.reason);
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
        let state = match v.step_state(i) {
            StepState::Running if interrupted => StepState::Interrupted,
            state => state,
        };
        let status = state.name();
        let symbol = match state {
            StepState::Finished(status) => symbol(status),
            StepState::Interrupted => "↯",
            StepState::Waiting | StepState::Running => "…",
        };
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
        if let Some(asks) = &s.asks {
            let _ = writeln!(
                out,
                "{indent}    asks: {}",
                asks.replace('\n', &format!("\n{indent}          "))
            );
        }
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
            let lines: Vec<&str> = a.excerpt.lines().collect();
            let hidden = if options.full {
                0
            } else {
                lines.len().saturating_sub(TAIL_LINES)
            };
            if hidden > 0 {
                let _ = writeln!(
                    out,
                    "{indent}      … {hidden} more line{} (opsbook show {} --full)",
                    if hidden == 1 { "" } else { "s" },
                    v.id
                );
            }
            for line in &lines[hidden..] {
                let _ = writeln!(out, "{indent}      | {line}");
            }
        }
    }
    if let Some(summary) = &v.summary {
        let _ = writeln!(out, "\n{summary}");
    }
    out
}

pub fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}
