//! Keeping secrets out of everything that persists or is shown: every occurrence of a secret
//! parameter's value becomes `***` — raw, each line of a multi-line one, base64 (standard and
//! URL-safe, padded or not), percent-encoded (URL) and shell-quoted. A string a script builds
//! around a secret still contains it, so it is masked too.

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
            let lines: Vec<String> = secret.lines().map(str::trim).map(str::to_string).collect();
            for value in std::iter::once(secret.clone()).chain(lines) {
                if value.chars().count() < MIN_SECRET_LEN {
                    continue;
                }
                for candidate in encodings(&value) {
                    if !candidate.is_empty() && !needles.contains(&candidate) {
                        needles.push(candidate);
                    }
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

/// The forms a secret is commonly written in.
fn encodings(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let bytes = value.as_bytes();
    let mut forms = vec![
        value.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        crate::runbook::template::shell_quote(value),
    ];
    // RFC 3986 leaves the unreserved `-`, `_`, `.` and `~` as they are, as URL libraries do.
    const UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    forms.push(percent_encoding::utf8_percent_encode(value, UNRESERVED_KEPT).to_string());
    // Form encoding writes spaces as `+`; some encoders write hex digits in lower case.
    for i in [5, forms.len() - 1] {
        forms.push(forms[i].replace("%20", "+"));
        forms.push(lower_hex_escapes(&forms[i]));
    }
    forms.sort();
    forms.dedup();
    forms
}

/// `%7E` → `%7e`: the same percent-encoding with lower-case hex digits.
fn lower_hex_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_forms_that_keep_unreserved_characters_are_masked() {
        let secret = "p-a_s.s~w rd/1";
        let redactor = Redactor::new([secret.to_string()]);
        for encoded in [
            "p-a_s.s~w%20rd%2F1",
            "p-a_s.s~w+rd%2F1",
            "p-a_s.s~w%20rd%2f1",
            "p%2Da%5Fs%2Es%7Ew%20rd%2F1",
        ] {
            let line = format!("GET /login?token={encoded}&x=1");
            assert_eq!(
                redactor.text(&line),
                format!("GET /login?token={MASK}&x=1"),
                "{encoded}"
            );
        }
    }

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
    fn masks_encoded_forms() {
        let r = Redactor::new(["s3cr3t value/x".to_string()]);
        for text in [
            "Basic czNjcjN0IHZhbHVlL3g=",
            "u=czNjcjN0IHZhbHVlL3g",
            "q=s3cr3t%20value%2Fx",
            "q=s3cr3t+value%2Fx",
            "q=s3cr3t%20value%2fx",
            "echo 's3cr3t value/x'",
        ] {
            assert!(!r.text(text).contains("3t"), "{text} -> {}", r.text(text));
        }
    }

    #[test]
    fn tiny_values_are_not_masked() {
        assert_eq!(Redactor::new(["a".to_string()]).text("a cat"), "a cat");
    }
}
