//! The step's own outcome and outputs: `log`, `set`, `metric`, `assert`, `fail`, `skip`.

use rhai::{Dynamic, Engine};

use crate::script::context::{log_line, record_metric, runtime_error, set_output, skip_step};

use super::HostResult;

/// Outcome and outputs of the step.
pub(super) fn register(engine: &mut Engine) {
    // log("checked 4 filesystems");           a line in the step's output
    engine.register_fn("log", |message: Dynamic| log_line(&message.to_string()));
    // set("free_pct", 42.5);                  later steps read vars.<this step>.free_pct
    engine.register_fn("set", |name: &str, value: Dynamic| set_output(name, value));
    // metric("disk_free_pct", 42.5);          a numeric measurement, kept with the step
    engine.register_fn("metric", |name: &str, value: f64| {
        record_metric(name, value)
    });
    engine.register_fn("metric", |name: &str, value: i64| {
        record_metric(name, value as f64)
    });
    // assert(free >= 10, `only ${free}% free`);   fails the step when the condition is false
    engine.register_fn(
        "assert",
        |condition: bool, message: Dynamic| -> HostResult<()> {
            if condition {
                Ok(())
            } else {
                Err(runtime_error(message.to_string()))
            }
        },
    );
    engine.register_fn("assert", |condition: bool| -> HostResult<()> {
        if condition {
            Ok(())
        } else {
            Err(runtime_error("assertion failed"))
        }
    });
    // fail("backup is older than a day");     fails the step
    engine.register_fn("fail", |message: Dynamic| -> HostResult<()> {
        Err(runtime_error(message.to_string()))
    });
    // skip("no systemd on this host");        ends the step as skipped, with the reason
    engine.register_fn("skip", |reason: Dynamic| -> HostResult<()> {
        Err(skip_step(&reason.to_string()))
    });
    // now()        -> "2026-11-27T08:15:02Z"   (RFC 3339, UTC)
    engine.register_fn("now", || {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    // unix_time()  -> 1795767302               (seconds since 1970)
    engine.register_fn("unix_time", || chrono::Utc::now().timestamp());
}
