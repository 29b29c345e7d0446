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
        // marked-yaml starts a `|` or `>` block scalar at its first non-blank content line;
        // the line before it (skipping blank ones) ends with the block indicator.
        let above = &self.lines[..line.saturating_sub(1).min(self.lines.len())];
        let indicator = above
            .iter()
            .enumerate()
            .rev()
            .find(|(_, l)| !l.trim().is_empty())
            .and_then(|(i, l)| {
                let end = l
                    .trim_end()
                    .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
                match end.chars().last() {
                    Some('|') => Some((i, false)),
                    Some('>') => Some((i, true)),
                    _ => None,
                }
            });
        let block = indicator.filter(|_| before.trim().is_empty());
        ScalarLocation {
            line,
            column,
            block_indent: block.map(|_| column.saturating_sub(1)),
            // 0-based index of the indicator line, plus one, plus one for 1-based lines.
            block_first_line: block.map(|(i, _)| i + 2).unwrap_or(line),
            folded: block.is_some_and(|(_, folded)| folded),
            quoted: block.is_none() && matches!(first, Some('"') | Some('\'')),
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

    /// File position of a 0-based line and column of a scalar's content.
    pub(super) fn map_line_col(
        &self,
        location: ScalarLocation,
        content_line: usize,
        column: usize,
    ) -> (usize, usize) {
        match location.block_indent {
            Some(indent) if location.folded => {
                self.map_folded(location, indent, content_line, column)
            }
            Some(indent) => (
                location.block_first_line + content_line,
                indent + column + 1,
            ),
            None if content_line == 0 && location.quoted => (
                location.line,
                location.column + 1 + self.raw_columns(location, column),
            ),
            None if content_line == 0 => (location.line, location.column + column),
            None => (location.line, location.column),
        }
    }

    /// How many characters of a quoted scalar's source stand for its first `column` content
    /// characters: an escape (`\"`, `\\`, `\t`, `\x41`, …) or a doubled `''` is one.
    fn raw_columns(&self, location: ScalarLocation, column: usize) -> usize {
        let text = self
            .lines
            .get(location.line - 1)
            .copied()
            .unwrap_or_default();
        let mut raw = text.chars().skip(location.column);
        let double = text.chars().nth(location.column - 1) == Some('"');
        let mut used = 0;
        for _ in 0..column {
            match raw.next() {
                Some('\\') if double => {
                    let width = match raw.next() {
                        Some('x') => 2,
                        Some('u') => 4,
                        Some('U') => 8,
                        _ => 0,
                    };
                    raw.by_ref().take(width).for_each(drop);
                    used += 2 + width;
                }
                Some('\'') if !double => {
                    raw.next();
                    used += 2;
                }
                Some(_) => used += 1,
                None => break,
            }
        }
        used
    }

    /// File position in a `>` block, whose single line breaks became spaces: each content
    /// line is a run of source lines, joined.
    fn map_folded(
        &self,
        location: ScalarLocation,
        indent: usize,
        content_line: usize,
        column: usize,
    ) -> (usize, usize) {
        let mut current = 0;
        let mut start_col = 0;
        let mut previous_blank = true;
        let mut best = (location.block_first_line, indent + 1);
        for (i, raw) in self
            .lines
            .iter()
            .enumerate()
            .skip(location.block_first_line - 1)
        {
            let file_line = i + 1;
            if raw.trim().is_empty() {
                if !previous_blank || file_line > location.block_first_line {
                    current += 1;
                }
                start_col = 0;
                previous_blank = true;
                continue;
            }
            let leading = raw.chars().take_while(|c| *c == ' ').count();
            if leading < indent {
                break;
            }
            if !previous_blank {
                start_col += 1; // the space a line break folded into
            }
            let text = &raw[indent.min(raw.len())..];
            if current == content_line && column >= start_col {
                best = (file_line, indent + (column - start_col) + 1);
            }
            start_col += text.chars().count();
            previous_blank = false;
        }
        best
    }
}
