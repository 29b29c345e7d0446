//! Text for comparing whole: `unindent` for runbooks and expected outputs written inline, and
//! the normalisation that replaces what changes from run to run with placeholders.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

/// Text written indented with the code, as it is meant: a first line break after the opening
/// quote is dropped, then the indentation all non-blank lines share is removed, and blank lines
/// (only spaces) become empty. Text with no common indentation and no leading line break comes
/// back unchanged, byte for byte.
///
/// ```ignore
/// ws.runbook("hello", r#"
///     runbook: hello
///     title: Hello
///     steps:
///       - id: one
///         shell: echo one
/// "#);
/// ```
pub fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .split('\n')
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    if indent == 0 {
        return text.to_string();
    }
    text.split('\n')
        .map(|line| {
            if line.trim().is_empty() {
                ""
            } else {
                &line[indent..]
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an output may hold that changes from run to run or from machine to machine, in the
/// order it is replaced. Paths come first (a temporary folder name could hold anything), then
/// times before durations (a time holds digits that look like one), then hashes and run ids.
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // RFC 3339 timestamps, and the `runs` listing's local `2026-11-28 02:55:23`.
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})",
            "[TIME]",
        ),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "[TIME]"),
        // SHA-256 hashes: a binding, a journal head (the content hash of a runbook is stable
        // and is left alone where it is shown short).
        (r"\b[0-9a-f]{64}\b", "[HASH]"),
        // Run ids: ULIDs (Crockford base 32).
        (r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "[RUN]"),
        // Durations in the JSON report and JUnit.
        (r#""duration_ms": \d+"#, r#""duration_ms": [DURATION]"#),
        (r#""seconds": [0-9.]+"#, r#""seconds": [DURATION]"#),
        (r#"time="[0-9.]*""#, r#"time="[DURATION]""#),
        // Durations for people, as the engine writes them under a minute: `850ms`, `12.3s`
        // (`4m05s` and `2h10m` are left alone: no test runs that long, and `1h30m` is also how
        // a runbook writes a timeout). The padding that right-aligns one in a column goes with it.
        (r" +\b(?:\d+ms|\d+\.\d+s)\b", " [DURATION]"),
        (r"\b(?:\d+ms|\d+\.\d+s)\b", "[DURATION]"),
    ]
    .into_iter()
    .map(|(pattern, placeholder)| (Regex::new(pattern).unwrap(), placeholder))
    .collect()
});

/// The host name and login name the engine records, as words to replace: `[HOST]`, `[USER]`.
static MACHINE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let word = |name: &str| Regex::new(&format!(r"\b{}\b", regex::escape(name))).unwrap();
    let host = hostname();
    let user = os_user();
    let mut rules = Vec::new();
    if !host.is_empty() {
        rules.push((word(&host), "[HOST]"));
    }
    if !user.is_empty() && user != host {
        rules.push((word(&user), "[USER]"));
    }
    rules
});

/// `text` with what varies replaced: the workspace folder by `[ROOT]`, the repository by
/// `[REPO]`, then times (`[TIME]`), 64-digit hashes (`[HASH]`), run ids (`[RUN]`), durations
/// (`[DURATION]`), and this machine's host and user names (`[HOST]`, `[USER]`).
pub fn normalise(root: &Path, text: &str) -> String {
    let mut out = text.to_string();
    let mut literals = Vec::new();
    if let Ok(real) = root.canonicalize() {
        literals.push((real.display().to_string(), "[ROOT]"));
    }
    literals.push((root.display().to_string(), "[ROOT]"));
    literals.push((env!("CARGO_MANIFEST_DIR").to_string(), "[REPO]"));
    for (literal, placeholder) in literals {
        out = out.replace(&literal, placeholder);
    }
    for (re, placeholder) in RULES.iter().chain(MACHINE.iter()) {
        out = re.replace_all(&out, *placeholder).into_owned();
    }
    out
}

/// This machine's name, read as the engine reads it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The login name of the user running the tests (and so the engine).
fn os_user() -> String {
    // SAFETY: getuid cannot fail; getpwuid returns a pointer into static storage or null,
    // read at once and copied.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_string();
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

/// Where `expected` and `actual` part, for a failure message: the first differing line of each.
pub fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = (0..e.len().max(a.len()))
        .find(|&i| e.get(i) != a.get(i))
        .unwrap_or(e.len().min(a.len()));
    format!(
        "first difference at line {}:\n  expected: {:?}\n  actual:   {:?}",
        at + 1,
        e.get(at),
        a.get(at)
    )
}

#[test]
fn unindent_removes_the_common_indentation_and_keeps_the_rest() {
    assert_eq!(
        unindent("\n    a:\n      - b\n\n    c\n  "),
        "a:\n  - b\n\nc\n"
    );
    assert_eq!(unindent("as is\n  kept\n"), "as is\n  kept\n");
    assert_eq!(unindent("no newline at the end"), "no newline at the end");
    assert_eq!(unindent("\n  one line"), "one line");
}

#[test]
fn normalise_replaces_what_varies_and_keeps_what_does_not() {
    let root = Path::new("/tmp/.tmpAbC123");
    assert_eq!(
        normalise(
            root,
            "run 01M8G18BQE7VFJRN7NC0DDKQNP at 2026-11-28T02:55:23.667637Z in /tmp/.tmpAbC123/runbooks\n\
             ✓ prep                     succeeded      9ms\n\
             ✗ fails                    failed       223ms — retry after 1.5s, or `1h30m`\n\
             head effa5feec6b6a9b049c8c32455ac3f328f675aa6161b74b140165b6196b8f37b (sha256 8e510eacb8d1ac3c)\n\
             timeout: 30s, 10m; last reviewed 2020-01-01; started 2026-11-28 02:55:23\n"
        ),
        "run [RUN] at [TIME] in [ROOT]/runbooks\n\
         ✓ prep                     succeeded [DURATION]\n\
         ✗ fails                    failed [DURATION] — retry after [DURATION], or `1h30m`\n\
         head [HASH] (sha256 8e510eacb8d1ac3c)\n\
         timeout: 30s, 10m; last reviewed 2020-01-01; started [TIME]\n"
    );
}
