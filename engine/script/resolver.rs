//! Where `import "x"` may load from: `scripts/x.rhai` and nothing else — no absolute path, no
//! `..`, no symbolic link that leads out of the scripts folder, no file over the size cap —
//! and a record of every file loaded with the SHA-256 of its content, so that what a run is
//! bound to includes every module it uses.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, Position, Scope};
use sha2::{Digest, Sha256};

use crate::sys::files::{self, MAX_SOURCE_BYTES};

thread_local! {
    /// Files loaded on this thread since `record_loads` began: path relative to the scripts
    /// folder, and content hash.
    static LOADED: RefCell<Option<BTreeMap<String, String>>> = const { RefCell::new(None) };
}

/// Starts recording the modules loaded on this thread (compiling resolves imports at once).
pub fn record_loads() {
    LOADED.with(|l| *l.borrow_mut() = Some(BTreeMap::new()));
}

/// The modules loaded on this thread since `record_loads`, and stops recording.
pub fn take_loads() -> BTreeMap<String, String> {
    LOADED.with(|l| l.borrow_mut().take().unwrap_or_default())
}

/// Notes a file the run depends on (a `script:` file read by the analyzer, or a module).
pub fn note_load(relative: &str, content_hash: &str) {
    LOADED.with(|l| {
        if let Some(map) = l.borrow_mut().as_mut() {
            map.insert(relative.to_string(), content_hash.to_string());
        }
    });
}

/// Why a file under the scripts folder may not be used, if it may not.
pub fn check_inside(dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err("name a file inside the scripts folder, without `..` or a leading `/`".into());
    }
    let file = dir.join(rel);
    let (Ok(real_dir), Ok(real_file)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&file))
    else {
        return Err(format!("no file {} in the scripts folder", file.display()));
    };
    if !real_file.starts_with(&real_dir) {
        return Err(format!(
            "{} leads out of the scripts folder (to {}); a symbolic link may only point inside it",
            file.display(),
            real_file.display()
        ));
    }
    Ok(real_file)
}

/// A module resolver that loads `import "x"` from `scripts/x.rhai` and nothing else.
pub(crate) struct ScriptsDirResolver {
    dir: PathBuf,
}

impl ScriptsDirResolver {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn refuse(&self, path: &str, why: &str, pos: Position) -> Box<EvalAltResult> {
        EvalAltResult::ErrorModuleNotFound(format!("{path} ({why})"), pos).into()
    }
}

impl rhai::ModuleResolver for ScriptsDirResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<Module>, Box<EvalAltResult>> {
        let relative = format!("{path}.rhai");
        let file =
            match check_inside(&self.dir, &relative) {
                Ok(file) => file,
                Err(why) if why.starts_with("name a file") => return Err(self.refuse(
                    path,
                    "modules are imported by a name under scripts/, without `..` or a leading `/`",
                    pos,
                )),
                Err(why) => return Err(self.refuse(path, &why, pos)),
            };
        let bytes =
            files::read_capped(&file, MAX_SOURCE_BYTES).map_err(|problem| match problem {
                files::ReadProblem::TooLarge { .. } => {
                    self.refuse(path, "the file is over 1 MiB", pos)
                }
                other => self.refuse(path, &format!("{}: {other}", file.display()), pos),
            })?;
        note_load(&relative, &hex::encode(Sha256::digest(&bytes)));
        let text = String::from_utf8(bytes)
            .map_err(|_| self.refuse(path, "the file is not UTF-8 text", pos))?;
        // The module's own imports come back here: also from the scripts folder only.
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_string(),
                Box::new(e.into()),
                pos,
            ))
        })?;
        ast.set_source(path);
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))?;
        Ok(module.into())
    }
}
