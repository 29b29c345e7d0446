//! Problems found in a runbook or script, each pointing at `file:line:col` with the offending
//! line and a caret, and the "did you mean" suggestions that go with them.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem at one place in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based; 0 when the problem is about the whole file.
    pub column: usize,
    pub severity: Severity,
    pub message: String,
    /// The text of `line`, for the excerpt under the message.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn error(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            column,
            severity: Severity::Error,
            message: message.into(),
            source_line: None,
        }
    }

    pub fn warning(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, line, column, message)
        }
    }

    /// Attaches the offending line of `source` so that `Display` can show it with a caret.
    pub fn with_source(mut self, source: &str) -> Self {
        if self.line > 0 {
            self.source_line = source.lines().nth(self.line - 1).map(str::to_string);
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            return write!(f, "{}: {label}: {}", self.path.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {label}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string().len();
            let caret_pad: String = text
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {caret_pad}^",
                "", self.line, text, ""
            )?;
        }
        Ok(())
    }
}

/// All problems found in one check, errors and warnings, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The candidate closest to `name`, when it is close enough to be what was meant.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(distance, c)| *distance <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_line_and_caret() {
        let source = "runbook: x\nsteps:\n  - idd: a\n";
        let d =
            Diagnostic::error(Path::new("rb.yaml"), 3, 5, "unknown key `idd`").with_source(source);
        assert_eq!(
            d.to_string(),
            "rb.yaml:3:5: error: unknown key `idd`\n  |\n3 |   - idd: a\n  |     ^"
        );
    }

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(suggest("tiemout", ["timeout", "retry"]), Some("timeout"));
        assert_eq!(suggest("shel", ["shell", "rhai"]), Some("shell"));
        assert_eq!(suggest("banana", ["timeout", "retry"]), None);
    }
}
