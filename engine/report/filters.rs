//! The template filters, registered in one place, one small function each.
//!
//! Markdown has three places a value can land, each with its own rule (CommonMark and its
//! GitHub tables): running text (`md_cell`: every character that could start markup
//! backslash-escaped, `<`, `>` and `&` as entities, no line breaks), a code span (`md_code`:
//! nothing escaped, since nothing is interpreted there, fenced by more backticks than the
//! value holds in a row) and a fenced block (`md_fence`: the same, one line per line).

use std::collections::HashMap;

use serde_json::Value;
use tera::Tera;

/// The template filters, one small function each.
pub(super) fn register_filters(tera: &mut Tera) {
    tera.register_filter("duration", duration_filter);
    tera.register_filter("short", short_filter);
    tera.register_filter("symbol", symbol_filter);
    tera.register_filter("label", label_filter);
    tera.register_filter("millis", millis_filter);
    tera.register_filter("text", text_filter);
    tera.register_filter("md_cell", md_cell_filter);
    tera.register_filter("md_code", md_code_filter);
    tera.register_filter("md_fence", md_fence_filter);
}

/// Line breaks in a value that must stay on one line: shown, not obeyed.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ↵ ").replace(['\n', '\r'], " ↵ ")
}

/// `{{ text | md_cell }}`: running text in a Markdown table cell, list item or heading:
/// nothing in it is markup, and it stays on its line.
fn md_cell_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(md_text(&crate::runbook::params::value_text(
        value,
    ))))
}

pub(crate) fn md_text(text: &str) -> String {
    let chars: Vec<char> = one_line(text).chars().collect();
    let mut out = String::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' => {
                // A run of them is markup only where it can open or close emphasis; a run
                // between spaces (a masked secret, `***`) is shown as it is.
                let end = (i..chars.len())
                    .find(|&j| chars[j] != c)
                    .unwrap_or(chars.len());
                let before = i.checked_sub(1).map(|j| chars[j]);
                let after = chars.get(end).copied();
                let escape = if can_be_emphasis(before, after) {
                    "\\"
                } else {
                    ""
                };
                for _ in i..end {
                    out.push_str(escape);
                    out.push(c);
                }
                i = end;
                continue;
            }
            // Every ASCII punctuation character may be backslash-escaped; these are the ones
            // that can start or end markup mid-line (code, links, tables, strikethrough, ...).
            '\\' | '`' | '[' | ']' | '|' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Whether a run of `*` or `_` between `before` and `after` (None: the edge of the value,
/// taken as the space the templates put there) is left- or right-flanking in CommonMark's
/// terms, the only runs that can open or close emphasis.
fn can_be_emphasis(before: Option<char>, after: Option<char>) -> bool {
    let space = |c: Option<char>| c.is_none_or(char::is_whitespace);
    let punctuation =
        |c: Option<char>| c.is_some_and(|c| !c.is_alphanumeric() && !c.is_whitespace());
    let left = !space(after) && (!punctuation(after) || space(before) || punctuation(before));
    let right = !space(before) && (!punctuation(before) || space(after) || punctuation(after));
    left || right
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut current) = (0, 0);
    for ch in text.chars() {
        current = if ch == c { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest
}

/// `{{ value | md_code }}`: a code span holding the value exactly; `cell=true` inside a table
/// (where a `|` must still be escaped, and is shown without its backslash).
fn md_code_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let cell = args.get("cell").and_then(Value::as_bool).unwrap_or(false);
    Ok(Value::from(md_code(
        &crate::runbook::params::value_text(value),
        cell,
    )))
}

pub(crate) fn md_code(text: &str, cell: bool) -> String {
    let mut text = one_line(text);
    if cell {
        text = text.replace('|', "\\|");
    }
    if text.is_empty() {
        return "` `".into();
    }
    let fence = "`".repeat(longest_run(&text, '`') + 1);
    // One space each side is taken off again by the renderer: it keeps a backtick at either
    // end from joining the fence, and spaces at both ends from being trimmed.
    let pad = text.starts_with('`')
        || text.ends_with('`')
        || (text.starts_with(' ') && text.ends_with(' ') && text.trim() != "");
    let space = if pad { " " } else { "" };
    format!("{fence}{space}{text}{space}{fence}")
}

/// `{{ text | md_fence(info="text") }}`: a fenced code block holding the text exactly, its
/// fence longer than any run of backticks in it, so that no line of it can close the block.
fn md_fence_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let info = args.get("info").and_then(Value::as_str).unwrap_or("");
    Ok(Value::from(md_fence(
        &crate::runbook::params::value_text(value),
        info,
    )))
}

pub(crate) fn md_fence(text: &str, info: &str) -> String {
    let fence = "`".repeat((longest_run(text, '`') + 1).max(3));
    let body = text.strip_suffix('\n').unwrap_or(text);
    format!("{fence}{info}\n{body}\n{fence}")
}

/// `{{ ms | duration }}`: 850ms, 12.3s, 4m05s.
fn duration_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let ms = value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))
        .unwrap_or(0)
        .max(0);
    Ok(Value::from(crate::runbook::duration::format_duration(
        std::time::Duration::from_millis(ms as u64),
    )))
}

/// `{{ at | millis }}`: an RFC 3339 time in UTC to the millisecond (`2026-11-27T08:15:02.318Z`).
fn millis_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let Some(text) = value.as_str() else {
        return Ok(Value::from(""));
    };
    Ok(Value::from(
        match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(at) => at
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            Err(_) => text.to_string(),
        },
    ))
}

/// `{{ hash | short }}`: the first 12 characters.
fn short_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = value.as_str().unwrap_or_default();
    Ok(Value::from(text.chars().take(12).collect::<String>()))
}

/// `{{ status | symbol }}`: ✓ ✗ – ~ ! ↯ ○ … for people and for greyscale print.
fn symbol_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let symbol = match value.as_str().unwrap_or_default() {
        "succeeded" => "✓",
        "failed" => "✗",
        "skipped" => "–",
        "would-run" => "~",
        "rejected" | "aborted" => "!",
        "interrupted" => "↯",
        "not-reached" => "○",
        "parked" => "⏸",
        _ => "…",
    };
    Ok(Value::from(symbol))
}

/// `{{ status | label }}`: a status as words (`not-reached` → `not reached`).
fn label_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(
        crate::runbook::params::value_text(value).replace('-', " "),
    ))
}

/// `{{ value | text }}`: strings as they are, anything else as JSON.
fn text_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(crate::runbook::params::value_text(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_values_are_escaped_for_where_they_land() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (value, as running text, as a code span in a list, as a code span in a table)
            ("plain", "plain", "`plain`", "`plain`"),
            ("a|b", "a\\|b", "`a|b`", "`a\\|b`"),
            (
                "<img src=x onerror=alert(1)>",
                "&lt;img src=x onerror=alert(1)&gt;",
                "`<img src=x onerror=alert(1)>`",
                "`<img src=x onerror=alert(1)>`",
            ),
            ("&lt;", "&amp;lt;", "`&lt;`", "`&lt;`"),
            ("a`b", "a\\`b", "``a`b``", "``a`b``"),
            ("`x`", "\\`x\\`", "`` `x` ``", "`` `x` ``"),
            ("``` x", "\\`\\`\\` x", "```` ``` x ````", "```` ``` x ````"),
            (" both ", " both ", "`  both  `", "`  both  `"),
            ("", "", "` `", "` `"),
            (
                "two\nlines",
                "two ↵ lines",
                "`two ↵ lines`",
                "`two ↵ lines`",
            ),
            ("token ***", "token ***", "`token ***`", "`token ***`"),
            ("a**b", "a\\*\\*b", "`a**b`", "`a**b`"),
            (
                "*em* _em_ [l](u) # ~~s~~",
                "\\*em\\* \\_em\\_ \\[l\\](u) \\# \\~\\~s\\~\\~",
                "`*em* _em_ [l](u) # ~~s~~`",
                "`*em* _em_ [l](u) # ~~s~~`",
            ),
        ];
        for (value, text, code, cell) in cases {
            assert_eq!(&md_text(value), text, "text of {value:?}");
            assert_eq!(&md_code(value, false), code, "code of {value:?}");
            assert_eq!(&md_code(value, true), cell, "cell code of {value:?}");
        }
    }

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_inside() {
        assert_eq!(md_fence("a\n", "text"), "```text\na\n```");
        assert_eq!(md_fence("```\nb", "text"), "````text\n```\nb\n````");
        assert_eq!(md_fence("x `````` y", ""), "```````\nx `````` y\n```````");
    }
}
