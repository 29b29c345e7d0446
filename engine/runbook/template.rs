//! `{{ params.NAME }}` and `{{ vars.STEP.OUTPUT }}` placeholders: finding them (for the
//! analyzer) and substituting them (for the executor).
//!
//! In a shell command no value ever becomes shell code: each placeholder becomes a reference
//! to an environment variable that holds the value (`"${OPSBOOK_PARAM_HOST}"` where the
//! command is unquoted, `${OPSBOOK_PARAM_HOST}` inside double quotes or an unquoted here-
//! document), and the value travels in the command's environment. The shell expands a
//! variable's value without reading it again as code, whatever it holds. Where no reference
//! can be expanded safely — inside single quotes, `$'…'`, backquotes, `$((…))`, a comment or
//! a quoted here-document — the placeholder is refused, by `check` at its position.

use std::sync::OnceLock;

use regex::Regex;

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    Param(String),
    Var { step: String, output: String },
    RunId,
    DryRun,
}

/// One `{{ ... }}` in a text: its byte range and what it names (or why it names nothing).
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub inner: String,
    pub placeholder: Result<Placeholder, String>,
}

fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    // The pattern is a literal; it is checked by the unit tests below.
    PATTERN.get_or_init(|| Regex::new(r"\{\{\s*(.*?)\s*\}\}").expect("valid regex literal"))
}

pub fn find(text: &str) -> Vec<Found> {
    pattern()
        .captures_iter(text)
        .map(|c| {
            let whole = c.get(0).expect("group 0 always matches");
            let inner = c[1].to_string();
            Found {
                start: whole.start(),
                end: whole.end(),
                placeholder: parse(&inner),
                inner,
            }
        })
        .collect()
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse(inner: &str) -> Result<Placeholder, String> {
    let parts: Vec<&str> = inner.split('.').collect();
    match parts.as_slice() {
        ["params", name] if is_name(name) => Ok(Placeholder::Param(name.to_string())),
        ["vars", step, output] if is_name(step) && is_name(output) => Ok(Placeholder::Var {
            step: step.to_string(),
            output: output.to_string(),
        }),
        ["run_id"] => Ok(Placeholder::RunId),
        ["dry_run"] => Ok(Placeholder::DryRun),
        _ => Err(format!(
            "`{{{{ {inner} }}}}` is not a placeholder opsbook knows; use {{{{ params.NAME }}}}, {{{{ vars.STEP.OUTPUT }}}}, {{{{ run_id }}}} or {{{{ dry_run }}}}"
        )),
    }
}

/// Substitutes every placeholder of a text shown to people (a manual step, a gate prompt)
/// with `lookup`'s value; an unresolvable one is an error.
pub fn render_text(
    text: &str,
    lookup: impl Fn(&Placeholder) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in find(text) {
        out.push_str(&text[last..found.start]);
        let placeholder = found.placeholder?;
        let value = lookup(&placeholder)
            .ok_or_else(|| format!("`{{{{ {} }}}}` has no value", found.inner))?;
        out.push_str(&value);
        last = found.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Where in a shell command a byte is, as far as expanding a variable there goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellContext {
    /// Outside quotes: a reference must be double-quoted to stay one word.
    Unquoted,
    /// Inside `"…"` or an unquoted here-document: `${NAME}` expands as it is.
    DoubleQuoted,
    /// Inside `'…'`, `$'…'`, `` `…` ``, `$((…))`, a comment or a quoted here-document:
    /// nothing can be expanded safely (or at all).
    Unsafe(&'static str),
}

/// A shell command with its placeholders replaced by environment references, and what each
/// reference holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    pub command: String,
    /// Environment variable name and the placeholder whose value it carries, in order.
    pub bindings: Vec<(String, Placeholder)>,
}

/// The environment variable that carries a placeholder's value into a command.
pub fn env_name_of(placeholder: &Placeholder) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    match placeholder {
        Placeholder::Param(name) => format!("OPSBOOK_PARAM_{}", clean(name)),
        Placeholder::Var { step, output } => {
            format!("OPSBOOK_VAR_{}__{}", clean(step), clean(output))
        }
        Placeholder::RunId => "OPSBOOK_RUN_ID".into(),
        Placeholder::DryRun => "OPSBOOK_DRY_RUN".into(),
    }
}

/// Replaces each placeholder of a shell command with a reference to the environment variable
/// that will carry its value; an unknown placeholder, or one where no reference is safe, is an
/// error naming its byte offset.
pub fn shell_command(text: &str) -> Result<ShellCommand, (usize, String)> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut bindings: Vec<(String, Placeholder)> = Vec::new();
    let mut last = 0;
    for found in find(text) {
        out.push_str(&text[last..found.start]);
        let placeholder = found.placeholder.map_err(|e| (found.start, e))?;
        let mut name = env_name_of(&placeholder);
        // Two placeholders that clean to one name (`a-b` and `a_b`) get distinct names.
        if bindings
            .iter()
            .any(|(n, p)| *n == name && *p != placeholder)
        {
            let mut n = 2;
            while bindings.iter().any(|(b, _)| *b == format!("{name}_{n}")) {
                n += 1;
            }
            name = format!("{name}_{n}");
        }
        match context_at(text, found.start) {
            ShellContext::Unquoted => out.push_str(&format!("\"${{{name}}}\"")),
            ShellContext::DoubleQuoted => out.push_str(&format!("${{{name}}}")),
            ShellContext::Unsafe(place) => {
                return Err((
                    found.start,
                    format!(
                        "`{{{{ {} }}}}` is {place}, where a value cannot be passed safely; move it outside, or into double quotes",
                        found.inner
                    ),
                ))
            }
        }
        if !bindings.iter().any(|(n, _)| *n == name) {
            bindings.push((name, placeholder));
        }
        last = found.end;
    }
    out.push_str(&text[last..]);
    Ok(ShellCommand {
        command: out,
        bindings,
    })
}

/// Where the scan of a command is: at the top level or inside `$(…)` (with the depth of the
/// parentheses opened there), or inside double quotes.
#[derive(Clone, Copy, PartialEq)]
enum Frame {
    Command(u32),
    Double,
}

/// The expansions that work alike inside double quotes and outside — backquotes, `$((…))`
/// and `$(…)` — when one starts at `i`: where the scan goes on, or the unsafe context that
/// `offset` lies in. None when none starts at `i`.
fn expansion_at(
    text: &str,
    i: usize,
    offset: usize,
    stack: &mut Vec<Frame>,
) -> Option<Result<usize, ShellContext>> {
    let rest = &text[i..];
    if rest.starts_with('`') {
        return Some(past_backquotes(text, i, offset));
    }
    if rest.starts_with("$((") {
        return Some(match skip_arithmetic(text, i) {
            Some(end) if end <= offset => Ok(end),
            _ => Err(ShellContext::Unsafe(
                "inside an arithmetic expansion $((…))",
            )),
        });
    }
    if rest.starts_with("$(") {
        stack.push(Frame::Command(0));
        return Some(Ok(i + 2));
    }
    None
}

/// The shell context at byte `offset` of `text` (POSIX sh quoting, command substitution,
/// arithmetic, comments and here-documents; placeholders are opaque).
pub fn context_at(text: &str, offset: usize) -> ShellContext {
    let bytes = text.as_bytes();
    let mut stack = vec![Frame::Command(0)];
    // Here-documents whose bodies start at the next newline: (delimiter, quoted, strip tabs).
    let mut pending_heredocs: Vec<(String, bool, bool)> = Vec::new();
    let mut i = 0;
    let mut word_start = true;
    while i < bytes.len() {
        if i >= offset {
            break;
        }
        // Placeholders are opaque to the scan.
        if text[i..].starts_with("{{") {
            if let Some(end) = text[i..].find("}}") {
                i += end + 2;
                word_start = false;
                continue;
            }
        }
        let top = *stack.last().expect("the stack never empties");
        let c = bytes[i];
        match top {
            Frame::Double => match c {
                b'\\' => i += 2,
                b'"' => {
                    stack.pop();
                    i += 1;
                }
                b'`' | b'$' => match expansion_at(text, i, offset, &mut stack) {
                    Some(Ok(next)) => {
                        word_start = next == i + 2;
                        i = next;
                    }
                    Some(Err(context)) => return context,
                    None => i += 1,
                },
                _ => i += 1,
            },
            Frame::Command(depth) => {
                match c {
                    b'\\' => {
                        i += 2;
                        word_start = false;
                    }
                    b'\'' => {
                        match text[i + 1..].find('\'') {
                            Some(end) if i + 1 + end < offset => i += end + 2,
                            _ => return ShellContext::Unsafe("inside single quotes"),
                        }
                        word_start = false;
                    }
                    b'"' => {
                        stack.push(Frame::Double);
                        i += 1;
                        word_start = false;
                    }
                    b'$' if text[i..].starts_with("$'") => match text[i + 2..].find('\'') {
                        Some(end) if i + 2 + end < offset => i += end + 3,
                        _ => return ShellContext::Unsafe("inside $'…' quotes"),
                    },
                    b'`' | b'$' => match expansion_at(text, i, offset, &mut stack) {
                        Some(Ok(next)) => {
                            // Inside `$(` a new command starts; after the others a word
                            // goes on.
                            word_start = next == i + 2 && text[i..].starts_with("$(");
                            i = next;
                        }
                        Some(Err(context)) => return context,
                        None => {
                            i += 1;
                            word_start = false;
                        }
                    },
                    b'(' => {
                        if let Some(Frame::Command(d)) = stack.last_mut() {
                            *d += 1;
                        }
                        i += 1;
                        word_start = true;
                    }
                    b')' => {
                        if depth == 0 && stack.len() > 1 {
                            stack.pop();
                        } else if let Some(Frame::Command(d)) = stack.last_mut() {
                            *d = d.saturating_sub(1);
                        }
                        i += 1;
                        word_start = false;
                    }
                    b'#' if word_start => match text[i..].find('\n') {
                        Some(end) if i + end < offset => i += end,
                        _ => return ShellContext::Unsafe("inside a comment"),
                    },
                    b'<' if text[i..].starts_with("<<") && !text[i..].starts_with("<<<") => {
                        let (heredoc, next) = heredoc_operator(text, i);
                        if let Some(h) = heredoc {
                            pending_heredocs.push(h);
                        }
                        i = next;
                        word_start = true;
                    }
                    b'\n' if !pending_heredocs.is_empty() => {
                        // The bodies follow, one after another.
                        i += 1;
                        for (delimiter, quoted, strip_tabs) in std::mem::take(&mut pending_heredocs)
                        {
                            let (body_end, after) = heredoc_body(text, i, &delimiter, strip_tabs);
                            if offset < body_end {
                                return if quoted {
                                    ShellContext::Unsafe("inside a quoted here-document")
                                } else {
                                    ShellContext::DoubleQuoted
                                };
                            }
                            i = after;
                        }
                        word_start = true;
                    }
                    b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' => {
                        i += 1;
                        word_start = true;
                    }
                    _ => {
                        i += 1;
                        word_start = false;
                    }
                }
            }
        }
    }
    match stack.last() {
        Some(Frame::Double) => ShellContext::DoubleQuoted,
        _ => ShellContext::Unquoted,
    }
}

/// Skips the backquoted command substitution at `start` when it closes before `offset`;
/// otherwise `offset` is inside it.
fn past_backquotes(text: &str, start: usize, offset: usize) -> Result<usize, ShellContext> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'`' if i < offset => return Ok(i + 1),
            b'`' => break,
            _ => i += 1,
        }
    }
    Err(ShellContext::Unsafe("inside backquotes"))
}

/// The end of the `$((…))` starting at `start`, after its closing `))`.
fn skip_arithmetic(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0i32;
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads a `<<WORD` / `<<-WORD` / `<<'WORD'` operator at `start`: the delimiter, whether it
/// was quoted (a literal body), whether tabs are stripped, and where the word ends.
fn heredoc_operator(text: &str, start: usize) -> (Option<(String, bool, bool)>, usize) {
    let mut i = start + 2;
    let bytes = text.as_bytes();
    let strip_tabs = bytes.get(i) == Some(&b'-');
    if strip_tabs {
        i += 1;
    }
    while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    let mut word = String::new();
    let mut quoted = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\'' | b'"' => {
                quoted = true;
                let close = b;
                i += 1;
                while let Some(&q) = bytes.get(i) {
                    i += 1;
                    if q == close {
                        break;
                    }
                    word.push(q as char);
                }
            }
            b'\\' => {
                quoted = true;
                if let Some(&q) = bytes.get(i + 1) {
                    word.push(q as char);
                }
                i += 2;
            }
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
            _ => {
                word.push(b as char);
                i += 1;
            }
        }
    }
    if word.is_empty() {
        (None, i)
    } else {
        (Some((word, quoted, strip_tabs)), i)
    }
}

/// Where a here-document body that starts at `start` ends (the start of its delimiter line),
/// and where the text after the delimiter line begins.
fn heredoc_body(text: &str, start: usize, delimiter: &str, strip_tabs: bool) -> (usize, usize) {
    let mut line_start = start;
    while line_start < text.len() {
        let line_end = text[line_start..]
            .find('\n')
            .map(|e| line_start + e)
            .unwrap_or(text.len());
        let line = &text[line_start..line_end];
        let line = if strip_tabs {
            line.trim_start_matches('\t')
        } else {
            line
        };
        if line == delimiter {
            return (line_start, (line_end + 1).min(text.len()));
        }
        line_start = line_end + 1;
    }
    (text.len(), text.len())
}

/// POSIX-shell quoting: the value arrives as one argument, whatever it holds.
pub fn shell_quote(value: &str) -> String {
    use shell_quote::{QuoteRefExt, Sh};
    let quoted: Vec<u8> = value.quoted(Sh);
    String::from_utf8_lossy(&quoted).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind() {
        let found = find("a {{ params.host }} b {{vars.disk.free}} {{ run_id }} {{ nope }}");
        let kinds: Vec<_> = found.iter().map(|f| f.placeholder.clone()).collect();
        assert_eq!(kinds[0], Ok(Placeholder::Param("host".into())));
        assert_eq!(
            kinds[1],
            Ok(Placeholder::Var {
                step: "disk".into(),
                output: "free".into()
            })
        );
        assert_eq!(kinds[2], Ok(Placeholder::RunId));
        assert!(kinds[3].as_ref().unwrap_err().contains("`{{ nope }}`"));
    }

    /// Runs `command` bound as a shell step would be, with `value` for every placeholder,
    /// and returns its stdout.
    fn run_bound(command: &str, value: &str) -> String {
        let bound = shell_command(command).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&bound.command)
            .envs(bound.bindings.iter().map(|(name, _)| (name, value)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_hostile_value_is_never_read_as_shell_code_whatever_the_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let hostile = format!(
            "$(touch {0}) `touch {0}`; touch {0} \" ' ${{IFS}}",
            marker.display()
        );
        let commands = [
            "printf '%s|' {{ params.v }}",
            "printf '%s|' \"Deploying {{ params.v }} now\"",
            "printf '%s|' \"$(printf '%s' {{ params.v }})\"",
            "printf '%s|' \"$(printf '%s' \"{{ vars.prev.stdout }}\")\"",
            "cat <<EOF\n{{ params.v }}|\nEOF",
            "x={{ params.v }}; printf '%s|' \"$x\"",
        ];
        for command in commands {
            let out = run_bound(command, &hostile);
            assert!(!marker.exists(), "{command} ran the value as code");
            assert!(out.contains(&hostile), "{command} printed {out:?}");
        }
    }

    #[test]
    fn shell_contexts_decide_how_a_placeholder_is_referenced() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("echo {{ params.a }}", Ok("echo \"${OPSBOOK_PARAM_A}\"")),
            (
                "echo \"x {{ params.a }} y\"",
                Ok("echo \"x ${OPSBOOK_PARAM_A} y\""),
            ),
            (
                "echo 'q' {{ params.a }}",
                Ok("echo 'q' \"${OPSBOOK_PARAM_A}\""),
            ),
            (
                "echo `date` {{ params.a }}",
                Ok("echo `date` \"${OPSBOOK_PARAM_A}\""),
            ),
            (
                "echo $(echo {{ params.a }})",
                Ok("echo $(echo \"${OPSBOOK_PARAM_A}\")"),
            ),
            (
                "echo \"$(echo \"{{ params.a }}\")\"",
                Ok("echo \"$(echo \"${OPSBOOK_PARAM_A}\")\""),
            ),
            (
                "echo $((1+2)) {{ params.a }}",
                Ok("echo $((1+2)) \"${OPSBOOK_PARAM_A}\""),
            ),
            (
                "cat <<EOF\n{{ params.a }}\nEOF\necho {{ params.a }}",
                Ok("cat <<EOF\n${OPSBOOK_PARAM_A}\nEOF\necho \"${OPSBOOK_PARAM_A}\""),
            ),
            (
                "echo {{ vars.find-files.stdout }}",
                Ok("echo \"${OPSBOOK_VAR_FIND_FILES__STDOUT}\""),
            ),
            (
                "echo {{ params.a-b }} {{ params.a_b }}",
                Ok("echo \"${OPSBOOK_PARAM_A_B}\" \"${OPSBOOK_PARAM_A_B_2}\""),
            ),
            ("echo '{{ params.a }}'", Err("inside single quotes")),
            ("echo $'{{ params.a }}'", Err("inside $'…' quotes")),
            ("echo `echo {{ params.a }}`", Err("inside backquotes")),
            ("echo \"`echo {{ params.a }}`\"", Err("inside backquotes")),
            (
                "echo $(( {{ params.a }} + 1 ))",
                Err("inside an arithmetic expansion $((…))"),
            ),
            ("true # {{ params.a }}", Err("inside a comment")),
            (
                "cat <<'EOF'\n{{ params.a }}\nEOF",
                Err("inside a quoted here-document"),
            ),
        ];
        for (command, expected) in table {
            let got = shell_command(command);
            match expected {
                Ok(bound) => assert_eq!(
                    got.as_ref()
                        .map(|c| c.command.as_str())
                        .map_err(|e| e.1.clone()),
                    Ok(*bound),
                    "{command}"
                ),
                Err(place) => {
                    let message = got.expect_err(command).1;
                    assert!(message.contains(place), "{command}: {message}");
                }
            }
        }
    }

    #[test]
    fn plain_rendering_and_missing_values() {
        assert_eq!(
            render_text("host {{ params.h }}", |_| Some("db1".into())).unwrap(),
            "host db1"
        );
        assert!(render_text("{{ params.h }}", |_| None)
            .unwrap_err()
            .contains("has no value"));
    }
}
