//! The shape of engine/: every folder is mapped in engine/README.md, each subsystem uses only
//! the ones below it in the layering, and nothing but `cli` touches `cli` or `term`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The subsystems, lowest first: a module may use only those before it in this list.
const LAYERS: &[&str] = &[
    "printable",
    "diagnostic",
    "error",
    "sys",
    "config",
    "script",
    "runbook",
    "calendar",
    "journal",
    "notify",
    "people",
    "exec",
    "schedule",
    "report",
    "term",
    "cli",
];

fn engine_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engine")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("engine/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The subsystem a source file belongs to: its top folder, or its own name at the top.
fn subsystem_of(file: &Path) -> String {
    let relative = file
        .strip_prefix(engine_dir())
        .expect("a file under engine/");
    let first = relative.components().next().expect("a path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The subsystems a file refers to through `crate::NAME`.
fn uses_of(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// Every `subsystem -> subsystem` use in engine/, with one file that shows it.
fn dependencies() -> BTreeMap<(String, String), PathBuf> {
    let mut files = Vec::new();
    rust_files(&engine_dir(), &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let from = subsystem_of(&file);
        if matches!(from.as_str(), "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        for to in uses_of(&text) {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| file.clone());
            }
        }
    }
    edges
}

#[test]
fn every_subsystem_uses_only_those_below_it() {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut wrong = Vec::new();
    for ((from, to), file) in dependencies() {
        match (rank(&from), rank(&to)) {
            (Some(f), Some(t)) if t < f => {}
            (None, _) => wrong.push(format!(
                "{from} is not in the layering ({})",
                file.display()
            )),
            (_, None) => wrong.push(format!(
                "{from} uses `crate::{to}`, which is not a subsystem ({})",
                file.display()
            )),
            _ => wrong.push(format!(
                "{from} uses {to}, which is above it ({})",
                file.display()
            )),
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn only_cli_uses_cli_and_term() {
    let offenders: Vec<String> = dependencies()
        .into_iter()
        .filter(|((from, to), _)| matches!(to.as_str(), "cli" | "term") && from != "cli")
        .map(|((from, to), file)| format!("{from} uses {to} ({})", file.display()))
        .collect();
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn there_is_no_cycle_between_subsystems() {
    let edges = dependencies();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys().copied().collect::<Vec<_>>() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("a cycle between subsystems: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_engine_map_names_every_folder_and_module() {
    let map = std::fs::read_to_string(engine_dir().join("README.md")).expect("engine/README.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(engine_dir()).expect("engine/") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let shown = if path.is_dir() {
            format!("`{name}/`")
        } else if name.ends_with(".rs") {
            format!("`{name}`")
        } else {
            continue;
        };
        if !map.contains(&shown) {
            missing.push(shown);
        }
    }
    assert!(
        missing.is_empty(),
        "engine/README.md does not map: {}",
        missing.join(", ")
    );
    for layer in LAYERS {
        assert!(
            map.contains(&format!("`{layer}")),
            "engine/README.md does not name the subsystem {layer}"
        );
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&engine_dir(), &mut files);
    let silent: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(silent.is_empty(), "no //! doc: {}", silent.join(", "));
}

#[test]
fn every_json_flag_says_what_it_prints() {
    let commands: &[&[&str]] = &[
        &["list"],
        &["runs"],
        &["show"],
        &["pending"],
        &["training"],
        &["audit", "verify"],
        &["audit", "head"],
        &["operator", "list"],
    ];
    for command in commands {
        let mut args: Vec<&str> = command.to_vec();
        args.push("--help");
        let out = std::process::Command::new(crate::support::BIN)
            .args(&args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command:?} has no --json:\n{help}"));
        assert!(
            line.trim_start().trim_start_matches("--json").trim().len() > 3,
            "{command:?}: --json has no help text: {line:?}"
        );
    }
}
