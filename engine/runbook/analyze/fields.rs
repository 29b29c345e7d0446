//! Typed readers of YAML fields: known keys with "did you mean", scalars of a type,
//! booleans, enums, positive integers, durations and string lists, each reporting at its position.

use super::*;

impl Linter<'_> {
    // ----- keys and scalar types -------------------------------------------------------

    pub(super) fn check_keys(&mut self, map: &MarkedMappingNode, known: &[&str], what: &str) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = did_you_mean(key.as_str(), known.iter().copied());
                let hint = if hint.is_empty() {
                    format!("; {what} takes: {}", known.join(", "))
                } else {
                    hint
                };
                self.error(
                    key.span(),
                    format!("unknown key `{}` in {what}{hint}", key.as_str()),
                );
            }
        }
    }

    /// Where a mapping starts, for errors about the whole mapping: its first key (marked-yaml
    /// starts a block mapping's span at the first `:`).
    pub(super) fn map_span(&self, map: &MarkedMappingNode) -> Span {
        let (line, column) = Self::at(map.span());
        let flow = self
            .lines
            .get(line.saturating_sub(1))
            .and_then(|l| l.chars().nth(column.saturating_sub(1)))
            == Some('{');
        match map.keys().next() {
            Some(first) if !flow => *first.span(),
            _ => *map.span(),
        }
    }

    pub(super) fn key_span(map: &MarkedMappingNode, key: &str) -> Span {
        map.keys()
            .find(|k| k.as_str() == key)
            .map(|k| *k.span())
            .unwrap_or(*map.span())
    }

    pub(super) fn scalar<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        expected: &str,
    ) -> Option<&'n MarkedScalarNode> {
        match node.as_scalar() {
            Some(s) => Some(s),
            None => {
                self.error(node.span(), format!("`{key}` must be {expected}"));
                None
            }
        }
    }

    pub(super) fn string_value(&mut self, map: &MarkedMappingNode, key: &str) -> Option<String> {
        let node = map.get_node(key)?;
        self.scalar(node, key, "text")
            .map(|s| s.as_str().to_string())
    }

    pub(super) fn bool_value(&mut self, map: &MarkedMappingNode, key: &str) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "true or false") {
                if s.as_bool().is_none() {
                    self.error(
                        s.span(),
                        format!("`{key}` must be true or false, not `{}`", s.as_str()),
                    );
                }
            }
        }
    }

    pub(super) fn enum_value(&mut self, map: &MarkedMappingNode, key: &str, allowed: &[&str]) {
        if let Some(node) = map.get_node(key) {
            let expected = format!("one of {}", allowed.join(", "));
            if let Some(s) = self.scalar(node, key, &expected) {
                if !allowed.contains(&s.as_str()) {
                    let hint = did_you_mean(s.as_str(), allowed.iter().copied());
                    self.error(
                        s.span(),
                        format!("`{key}` is `{}`; it must be {expected}{hint}", s.as_str()),
                    );
                }
            }
        }
    }

    pub(super) fn positive_int(&mut self, map: &MarkedMappingNode, key: &str) {
        self.int_in(map, key, u32::MAX as i64);
    }

    /// A whole number from 1 to `max`.
    pub(super) fn int_in(&mut self, map: &MarkedMappingNode, key: &str, max: i64) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "a whole number") {
                match s.as_i64() {
                    Some(n) if n >= 1 && n <= max => {}
                    Some(n) if n > max => {
                        self.error(s.span(), format!("`{key}` is {n}; it may be at most {max}"))
                    }
                    _ => self.error(
                        s.span(),
                        format!(
                            "`{key}` must be a whole number of at least 1, not `{}`",
                            s.as_str()
                        ),
                    ),
                }
            }
        }
    }

    /// A duration; `0s` only where `zero` says what it means (a delay of none).
    pub(super) fn duration_value(&mut self, map: &MarkedMappingNode, key: &str) {
        self.duration_checked(map, key, true);
    }

    /// A duration that must be longer than nothing (a timeout, an interval).
    pub(super) fn nonzero_duration(&mut self, map: &MarkedMappingNode, key: &str) {
        self.duration_checked(map, key, false);
    }

    fn duration_checked(&mut self, map: &MarkedMappingNode, key: &str, zero_allowed: bool) {
        if let Some(node) = map.get_node(key) {
            if let Some(s) = self.scalar(node, key, "a duration like `30s`, `10m` or `2h`") {
                match parse_duration(s.as_str()) {
                    Err(message) => self.error(s.span(), format!("`{key}`: {message}")),
                    Ok(d) if d.is_zero() && !zero_allowed => self.error(
                        s.span(),
                        format!(
                            "`{key}` is `{}`; it must be longer than nothing (leave `{key}` out for the default)",
                            s.as_str()
                        ),
                    ),
                    Ok(_) => {}
                }
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        map: &MarkedMappingNode,
        key: &str,
    ) -> Vec<(String, Span)> {
        let Some(node) = map.get_node(key) else {
            return Vec::new();
        };
        let Some(seq) = node.as_sequence() else {
            self.error(
                node.span(),
                format!("`{key}` must be a list, like `[a, b]`"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in seq.iter() {
            if let Some(s) = self.scalar(item, key, "a list of names") {
                out.push((s.as_str().to_string(), *s.span()));
            }
        }
        out
    }
}
