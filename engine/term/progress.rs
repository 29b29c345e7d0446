//! What the operator sees while a run goes: on a terminal, an overall bar (step n of N) and a
//! spinner per running step with its elapsed time and latest output line (indicatif, which
//! limits its own redraw rate); elsewhere, or with `NO_COLOR`/`--no-progress`, plain lines.
//! Both print one line per finished step to stdout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::progress::{FinishedStep, Progress};
use crate::printable;
use crate::report::text::symbol;
use crate::runbook::duration::format_duration;

/// One line to stdout. A reader that went away (`opsbook run x | head -1`) must not stop a
/// run halfway: the journal is the record, so a failed write is dropped.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", printable::escape(line));
}

/// The one line printed for a finished step.
pub fn step_line(step: &FinishedStep) -> String {
    let mut line = format!(
        "{} {:<24} {:<10}",
        symbol(step.status),
        step.id,
        step.status.name()
    );
    if let Some(d) = step.duration {
        line.push_str(&format!(" {:>7}", format_duration(d)));
    }
    if step.name != step.id {
        line.push_str(&format!("  {}", step.name));
    }
    if let Some(detail) = step.detail.filter(|d| !d.is_empty()) {
        line.push_str(&format!(" — {}", first_line(detail, 300)));
    }
    line
}

fn first_line(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max_chars {
        format!("{}…", line.chars().take(max_chars).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Chooses the display: bars when stderr is a terminal and nothing asks for plain output.
pub fn choose(no_progress: bool) -> Box<dyn Progress> {
    use std::io::IsTerminal;
    let plain = no_progress
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var("TERM").is_ok_and(|t| t == "dumb")
        || !std::io::stderr().is_terminal();
    if plain {
        Box::new(PlainProgress)
    } else {
        Box::new(TerminalProgress::new())
    }
}

pub struct PlainProgress;

impl Progress for PlainProgress {
    fn run_started(&self, header: &str, _: usize) {
        say(header);
    }
    fn step_started(&self, _: &str, _: &str) {}
    fn step_line(&self, _: &str, _: &str) {}
    fn step_finished(&self, step: &FinishedStep) {
        say(&step_line(step));
    }
    fn step_parked(&self, _: &str, line: &str) {
        say(line);
    }
    fn message(&self, text: &str) {
        say(text);
    }
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
    fn finish(&self) {}
}

pub struct TerminalProgress {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl TerminalProgress {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] step {pos}/{len} {elapsed}")
                .expect("a valid template literal")
                .progress_chars("=> "),
        );
        overall.set_prefix("opsbook");
        Self {
            multi,
            overall,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn println(&self, text: &str) {
        self.multi.suspend(|| say(text));
    }
}

impl Progress for TerminalProgress {
    fn run_started(&self, header: &str, total_steps: usize) {
        self.println(header);
        self.overall.set_length(total_steps as u64);
    }

    fn step_started(&self, id: &str, name: &str) {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("  {spinner} {prefix} {elapsed:>4} {wide_msg}")
                .expect("a valid template literal"),
        );
        spinner.set_prefix(printable::escape_line(name).into_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut running) = self.running.lock() {
            running.insert(id.to_string(), spinner);
        }
    }

    fn step_line(&self, id: &str, line: &str) {
        if let Ok(running) = self.running.lock() {
            if let Some(spinner) = running.get(id) {
                spinner.set_message(printable::escape_line(&first_line(line, 200)).into_owned());
            }
        }
    }

    fn step_finished(&self, step: &FinishedStep) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(spinner) = running.remove(step.id) {
                spinner.finish_and_clear();
                self.multi.remove(&spinner);
            }
        }
        self.println(&step_line(step));
        if step.advances {
            self.overall.inc(1);
        }
    }

    fn step_parked(&self, id: &str, line: &str) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(spinner) = running.remove(id) {
                spinner.finish_and_clear();
                self.multi.remove(&spinner);
            }
        }
        self.println(line);
    }

    fn message(&self, text: &str) {
        self.println(text);
    }

    fn suspend(&self, f: &mut dyn FnMut()) {
        self.multi.suspend(f)
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
