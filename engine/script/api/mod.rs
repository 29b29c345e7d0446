//! The host API that runbook scripts call, grouped by area, one file each. Each function's
//! comment, with its Rhai example, is the text of the "Rhai API" section of the README.

use rhai::{Engine, EvalAltResult};

mod checks;
mod process;
mod step;

type HostResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    step::register(engine);
    process::register(engine);
    checks::register(engine);
}
