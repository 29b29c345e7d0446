//! Text from outside — step output, names, errors, values — made safe to print on a terminal:
//! control characters become visible escapes, so output can neither move the cursor, clear
//! the screen nor fake a line, and bidirectional overrides cannot reorder what is read.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is (newlines and tabs may).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `text` with every control character but newline and tab escaped: C0 controls and DEL as
/// `\x1b`, C1 controls and bidirectional marks as `\u009b` (also valid inside JSON strings).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// One line of untrusted text: newlines and tabs escaped too.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\n' || c == '\t') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(escape(text).replace('\n', "\\n").replace('\t', "\\t"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        let table = [
            (
                "plain text\nwith lines\tand tabs",
                "plain text\nwith lines\tand tabs",
            ),
            ("\u{1b}[2J\u{1b}[H✓ succeeded", "\\x1b[2J\\x1b[H✓ succeeded"),
            ("over\rwrite", "over\\x0dwrite"),
            ("bell\u{7}", "bell\\x07"),
            ("del\u{7f}", "del\\x7f"),
            ("c1 csi \u{9b}31m", "c1 csi \\u009b31m"),
            ("evil\u{202e}txt.sh", "evil\\u202etxt.sh"),
        ];
        for (raw, shown) in table {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
        assert_eq!(escape_line("a\nb\tc\u{1b}"), "a\\nb\\tc\\x1b");
        assert!(matches!(escape("nothing to do"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_c1_controls_stay_valid_json() {
        let json = serde_json::to_string("x\u{9b}y").unwrap();
        let escaped = escape(&json);
        let back: String = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back, "x\u{9b}y");
    }
}
