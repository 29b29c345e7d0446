//! Commands and processes: `sh`, `which`, `processes`.

use rhai::{Array, Dynamic, Engine, Map};

use crate::script::context::run_shell_from_script;
use crate::sys::hostinfo;

use super::HostResult;

/// Commands.
pub(super) fn register(engine: &mut Engine) {
    // let r = sh("systemctl is-active nginx");  r.code, r.stdout, r.stderr
    // Runs under the step's timeout; a non-zero code does not fail the step by itself.
    engine.register_fn("sh", |command: &str| -> HostResult<Map> {
        run_shell_from_script(command)
    });
    // which("chronyc") -> true when it is an executable on PATH
    engine.register_fn("which", |command: &str| hostinfo::which(command));
    // processes() -> [#{pid, ppid, state, name}, ...]   ("Z" is a zombie)
    engine.register_fn("processes", || -> Array {
        hostinfo::processes()
            .into_iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("pid".into(), p.pid.into());
                m.insert("ppid".into(), p.ppid.into());
                m.insert("state".into(), p.state.into());
                m.insert("name".into(), p.name.into());
                Dynamic::from_map(m)
            })
            .collect()
    });
}
