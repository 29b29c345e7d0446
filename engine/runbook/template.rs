//! `{{ params.NAME }}` and `{{ vars.STEP.OUTPUT }}` placeholders: finding them (for the
//! analyzer) and substituting them (for the executor), shell-quoted in commands.

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

/// How substituted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// For a shell command: each value becomes exactly one word.
    Shell,
    /// For text shown to people (manual steps, gate prompts).
    Plain,
}

/// Substitutes every placeholder with `lookup`'s value; an unresolvable one is an error.
pub fn render(
    text: &str,
    quoting: Quoting,
    lookup: impl Fn(&Placeholder) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in find(text) {
        out.push_str(&text[last..found.start]);
        let placeholder = found.placeholder?;
        let value = lookup(&placeholder)
            .ok_or_else(|| format!("`{{{{ {} }}}}` has no value", found.inner))?;
        match (quoting, &placeholder) {
            // An environment reference made by the caller, already one word: `"$NAME"`.
            (Quoting::Shell, Placeholder::Param(_)) if is_env_reference(&value) => {
                out.push_str(&value)
            }
            (Quoting::Shell, _) => out.push_str(&shell_quote(&value)),
            (Quoting::Plain, _) => out.push_str(&value),
        }
        last = found.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// `"$NAME"` with NAME a plain environment variable name.
fn is_env_reference(value: &str) -> bool {
    value
        .strip_prefix("\"$")
        .and_then(|v| v.strip_suffix('"'))
        .is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
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

    #[test]
    fn shell_rendering_keeps_a_hostile_value_one_word() {
        let rendered = render("echo {{ params.host }}", Quoting::Shell, |_| {
            Some("x; touch /tmp/pwned".into())
        })
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s|' {}", &rendered[5..]))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x; touch /tmp/pwned|");
    }

    #[test]
    fn plain_rendering_and_missing_values() {
        assert_eq!(
            render("host {{ params.h }}", Quoting::Plain, |_| Some(
                "db1".into()
            ))
            .unwrap(),
            "host db1"
        );
        assert!(render("{{ params.h }}", Quoting::Plain, |_| None)
            .unwrap_err()
            .contains("has no value"));
    }
}
