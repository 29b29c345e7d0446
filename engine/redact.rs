//! Keeping secrets out of everything that persists or is shown: every occurrence of a secret
//! parameter's value (and of each line of a multi-line one) becomes `***`.

use serde_json::Value;

pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking `1` or `a` everywhere would destroy the
/// record and protect nothing.
const MIN_SECRET_LEN: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is masked whole.
    needles: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            let lines = secret.lines().map(str::trim).map(str::to_string);
            for candidate in std::iter::once(secret.clone()).chain(lines) {
                if candidate.chars().count() >= MIN_SECRET_LEN && !needles.contains(&candidate) {
                    needles.push(candidate);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }

    /// Masks every string (keys included) inside a JSON value.
    pub fn value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.value(&mut v);
                    map.insert(self.text(&k), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_whole_values_and_each_line() {
        let r = Redactor::new(["hunter22".to_string(), "line-one\nline-two".to_string()]);
        assert_eq!(r.text("pw=hunter22;"), "pw=***;");
        assert_eq!(r.text("got line-two only"), "got *** only");
        let mut v = serde_json::json!({"a": ["x hunter22 y"], "hunter22": 1});
        r.value(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x *** y"], "***": 1}));
    }

    #[test]
    fn tiny_values_are_not_masked() {
        assert_eq!(Redactor::new(["a".to_string()]).text("a cat"), "a cat");
    }
}
