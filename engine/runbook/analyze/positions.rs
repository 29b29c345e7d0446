//! Positions: diagnostics at a span, load errors, and mapping a position inside a scalar
//! (a block scalar included) back to the line and column of the YAML file.

use super::*;

impl Linter<'_> {
    pub(super) fn at(span: &Span) -> (usize, usize) {
        span.start()
            .map(|m| (m.line(), m.column()))
            .unwrap_or((0, 0))
    }

    pub(super) fn error_at(&mut self, (line, column): (usize, usize), message: impl Into<String>) {
        self.diagnostics.push(
            Diagnostic::error(&self.source.path, line, column, message)
                .with_source(&self.source.text),
        );
    }

    pub(super) fn warning_at(
        &mut self,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) {
        self.diagnostics.push(
            Diagnostic::warning(&self.source.path, line, column, message)
                .with_source(&self.source.text),
        );
    }

    pub(super) fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.error_at(Self::at(span), message);
    }

    pub(super) fn load_error(&mut self, error: &LoadError) {
        let (marker, message) = match error {
            LoadError::UnexpectedAnchor(m) => (
                Some(*m),
                "YAML anchors and aliases (`&name`, `*name`) are not allowed in runbooks; write the value out".to_string(),
            ),
            LoadError::UnexpectedTag(m) => (
                Some(*m),
                "YAML tags (`!tag`) are not allowed in runbooks".to_string(),
            ),
            LoadError::MappingKeyMustBeScalar(m) => {
                (Some(*m), "a mapping key must be a plain name".to_string())
            }
            LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
                Some(*m),
                "a runbook is a YAML mapping (`runbook: id`, `title:`, `steps:` ...)".to_string(),
            ),
            LoadError::ScanError(m, e) => (Some(*m), format!("YAML syntax error: {}", scan_error_text(e))),
            LoadError::DuplicateKey(inner) => {
                let first = Self::at(inner.prev_key.span());
                (
                    inner.key.span().start().copied(),
                    format!(
                        "duplicate key `{}` (first given at line {}); keep one",
                        inner.key.as_str(),
                        first.0
                    ),
                )
            }
            #[allow(unreachable_patterns)]
            other => (None, other.to_string()),
        };
        let position = marker.map(|m| (m.line(), m.column())).unwrap_or((0, 0));
        self.error_at(position, message);
    }

    // ----- positions inside scalars -------------------------------------------------------

    pub(super) fn locate(&self, node: &MarkedScalarNode) -> ScalarLocation {
        let (line, column) = Self::at(node.span());
        let text_line = self
            .lines
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        let before: String = text_line.chars().take(column.saturating_sub(1)).collect();
        let first = text_line.chars().nth(column.saturating_sub(1));
        // marked-yaml starts a `|` or `>` block scalar at its first content line; the line
        // before it (skipping blank ones) ends with the block indicator.
        let indicator_above = self.lines[..line.saturating_sub(1).min(self.lines.len())]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| {
                let end = l
                    .trim_end()
                    .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
                end.ends_with('|') || end.ends_with('>')
            })
            .unwrap_or(false);
        let is_block = before.trim().is_empty() && indicator_above;
        ScalarLocation {
            line,
            column,
            block_indent: is_block.then(|| column.saturating_sub(1)),
            quoted: !is_block && matches!(first, Some('"') | Some('\'')),
        }
    }

    /// File position of a byte offset into a scalar's content.
    pub(super) fn map_offset(
        &self,
        location: ScalarLocation,
        content: &str,
        offset: usize,
    ) -> (usize, usize) {
        let before = &content[..offset.min(content.len())];
        let content_line = before.matches('\n').count();
        let column_in_line = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count();
        self.map_line_col(location, content_line, column_in_line)
    }

    /// File position of a Rhai position (1-based line and column) in a scalar's content.
    pub(super) fn map_position(
        &self,
        location: ScalarLocation,
        _content: &str,
        pos: Position,
    ) -> (usize, usize) {
        let line = pos.line().unwrap_or(1).max(1) - 1;
        let column = pos.position().unwrap_or(1).max(1) - 1;
        self.map_line_col(location, line, column)
    }

    pub(super) fn map_line_col(
        &self,
        location: ScalarLocation,
        content_line: usize,
        column: usize,
    ) -> (usize, usize) {
        match location.block_indent {
            Some(indent) => (location.line + content_line, indent + column + 1),
            None if content_line == 0 => (
                location.line,
                location.column + column + usize::from(location.quoted),
            ),
            None => (location.line, location.column),
        }
    }
}
