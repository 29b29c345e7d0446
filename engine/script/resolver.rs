//! Where `import "x"` may load from: `scripts/x.rhai` and nothing else.

use std::path::{Path, PathBuf};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Position};

use crate::sys::files::MAX_SOURCE_BYTES;

/// A module resolver that loads `import "x"` from `scripts/x.rhai` and nothing else: no
/// absolute paths, no `..`, no file over the size cap.
pub(crate) struct ScriptsDirResolver {
    dir: PathBuf,
    inner: FileModuleResolver,
}

impl ScriptsDirResolver {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            inner: FileModuleResolver::new_with_path(dir),
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
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        let relative = Path::new(path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(self.refuse(
                path,
                "modules are imported by a name under scripts/, without `..` or a leading `/`",
                pos,
            ));
        }
        let file = self.dir.join(relative).with_extension("rhai");
        match std::fs::metadata(&file) {
            Ok(meta) if meta.len() > MAX_SOURCE_BYTES => {
                return Err(self.refuse(path, "the file is over 1 MiB", pos))
            }
            Ok(_) => {}
            Err(_) => {
                return Err(self.refuse(
                    path,
                    &format!("no file {} in the scripts folder", file.display()),
                    pos,
                ))
            }
        }
        // Resolve without a source so that a module's own imports are also taken from the
        // scripts folder, never relative to somewhere else.
        self.inner.resolve(engine, None, path, pos)
    }
}
