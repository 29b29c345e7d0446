//! The template filters, registered in one place, one small function each.

use std::collections::HashMap;

use serde_json::Value;
use tera::Tera;

/// The template filters, one small function each.
pub(super) fn register_filters(tera: &mut Tera) {
    tera.register_filter("duration", duration_filter);
    tera.register_filter("short", short_filter);
    tera.register_filter("symbol", symbol_filter);
    tera.register_filter("text", text_filter);
    tera.register_filter("md_cell", md_cell_filter);
}

/// `{{ text | md_cell }}`: safe inside a Markdown table cell or inline code: no pipes, no
/// line breaks, no raw HTML.
fn md_cell_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = crate::runbook::params::value_text(value);
    let cell = text
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("\r\n", " ↵ ")
        .replace('\n', " ↵ ");
    Ok(Value::from(cell))
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

/// `{{ hash | short }}`: the first 12 characters.
fn short_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let text = value.as_str().unwrap_or_default();
    Ok(Value::from(text.chars().take(12).collect::<String>()))
}

/// `{{ status | symbol }}`: ✓ ✗ - ~ ! for people and for greyscale print.
fn symbol_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let symbol = match value.as_str().unwrap_or_default() {
        "succeeded" => "✓",
        "failed" => "✗",
        "skipped" => "–",
        "would-run" => "~",
        "rejected" | "aborted" => "!",
        "interrupted" => "↯",
        _ => "…",
    };
    Ok(Value::from(symbol))
}

/// `{{ value | text }}`: strings as they are, anything else as JSON.
fn text_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::from(crate::runbook::params::value_text(value)))
}
